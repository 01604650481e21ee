import AsyncHTTPClient
import DistillModels
import DistillServer
import DistillTensor
import Foundation
import NIOCore

/// A soak test of the server (`distill bench soak`): `clients` clients send requests for
/// `seconds`, each request drawn at random — a streaming chat request read to the end, one the
/// client hangs up on after a few events, a non-streaming one, or a malformed one (bad JSON, a
/// wrong type, a value out of range, an unknown model) — while the server's resident memory is
/// sampled. Every valid request must be answered (200 and `[DONE]` or a whole reply), every
/// malformed one refused with a 4xx, none with a 5xx.
public enum ServerSoak {
    public struct Options: Sendable {
        public var clients = 64
        public var seconds = 300.0
        public var maxTokens = 16
        public var maxBatch = 64
        public var seed: UInt64 = 1

        public init(clients: Int = 64, seconds: Double = 300) {
            self.clients = clients
            self.seconds = seconds
        }
    }

    public struct Result: Codable, Sendable {
        public var clients: Int
        public var seconds: Double
        /// Streaming requests read to `[DONE]`, non-streaming ones answered whole.
        public var completed: Int
        /// Streaming requests the client hung up on after a few events (as planned).
        public var disconnected: Int
        /// Malformed requests refused with a 4xx (as they should be).
        public var refused: Int
        /// Valid requests that did not get their answer, malformed ones that were not refused.
        public var failures: Int
        public var serverErrors: Int
        public var failureMessages: [String]
        public var generatedTokens: Int
        /// Resident memory (MB) after the warm-up, the largest seen, and at the end.
        public var residentStartMB: Double
        public var residentMaxMB: Double
        public var residentEndMB: Double
        public var serverBatches: Int
        public var joinedRunning: Int
    }

    /// The malformed bodies (and why each is wrong); each must get a 4xx.
    static let malformed: [(String, String)] = [
        ("{\"messages\": [", "truncated JSON"),
        ("[1, 2, 3]", "not an object"),
        ("{\"messages\": \"hi\"}", "messages is a string"),
        ("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": -5}", "negative max_tokens"),
        ("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"temperature\": \"hot\"}", "temperature is a string"),
        ("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"n\": 100000}", "n too large"),
        ("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"model\": \"no-such-model\"}", "unknown model"),
        ("", "empty body"),
    ]

    final class Tally: @unchecked Sendable {
        let lock = NSLock()
        var completed = 0, disconnected = 0, refused = 0, failures = 0, serverErrors = 0, tokens = 0
        var residentMax = 0
        var messages: [String] = []
        func fail(_ m: String) {
            lock.withLock {
                failures += 1
                if messages.count < 10 { messages.append(m) }
            }
        }
    }

    public static func run(model: PretrainedModel, options o: Options,
                           progress: @escaping @Sendable (String) -> Void = { _ in }) async throws -> Result {
        let server = try OpenAIServer(model: model, maxBatch: o.maxBatch, batchWindow: 0.005)
        defer { server.stopGeneration() }
        let running = try await server.start()
        var config = HTTPClient.Configuration()
        config.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: o.clients + 8)
        config.timeout = .init(connect: .seconds(10))
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        let chat = model.chatTemplate != nil
        let url = running.baseURL + (chat ? "/v1/chat/completions" : "/v1/completions")
        let tally = Tally()
        // Warm-up: one request of each valid kind.
        await oneRequest(kind: 0, http: http, url: url, chat: chat, index: 0, maxTokens: o.maxTokens, tally: Tally())
        let start = DispatchTime.now().uptimeNanoseconds
        let deadline = start + UInt64(o.seconds * 1e9)
        let residentStart = ProcessMemory.residentBytes()
        tally.residentMax = residentStart
        let sampler = Task {
            var last = DispatchTime.now().uptimeNanoseconds
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: 250_000_000)
                let rss = ProcessMemory.residentBytes()
                tally.lock.withLock { tally.residentMax = Swift.max(tally.residentMax, rss) }
                let now = DispatchTime.now().uptimeNanoseconds
                if now - last > 30_000_000_000 {
                    last = now
                    let t = tally.lock.withLock { (tally.completed, tally.disconnected, tally.refused, tally.failures) }
                    progress(String(format: "%.0f s: %d completed, %d hung up, %d refused, %d failures; resident %.0f MB",
                                    Double(now - start) / 1e9, t.0, t.1, t.2, t.3, Double(rss) / 1e6))
                }
            }
        }
        await withTaskGroup(of: Void.self) { group in
            for c in 0..<o.clients {
                group.addTask {
                    var rng = RandomGenerator(seed: o.seed &+ UInt64(c) &* 7919)
                    var i = 0
                    while DispatchTime.now().uptimeNanoseconds < deadline {
                        let kind = Int(rng.next() % 10)
                        await oneRequest(kind: kind, http: http, url: url, chat: chat, index: c * 100_000 + i, maxTokens: o.maxTokens,
                                         tally: tally, hangUpAfter: 1 + Int(rng.next() % 4))
                        i += 1
                    }
                }
            }
        }
        sampler.cancel()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        try await http.shutdown()
        await running.shutdown()
        let end = ProcessMemory.residentBytes()
        return tally.lock.withLock {
            Result(clients: o.clients, seconds: seconds, completed: tally.completed, disconnected: tally.disconnected,
                   refused: tally.refused, failures: tally.failures, serverErrors: tally.serverErrors, failureMessages: tally.messages,
                   generatedTokens: tally.tokens, residentStartMB: Double(residentStart) / 1e6, residentMaxMB: Double(Swift.max(tally.residentMax, end)) / 1e6,
                   residentEndMB: Double(end) / 1e6, serverBatches: server.batchCount, joinedRunning: server.joinedRunningCount)
        }
    }

    /// One request of `kind`: 0–4 streaming read to the end, 5–6 streaming hung up on after
    /// `hangUpAfter` events, 7 non-streaming, 8–9 malformed.
    static func oneRequest(kind: Int, http: HTTPClient, url: String, chat: Bool, index: Int, maxTokens: Int, tally: Tally,
                           hangUpAfter: Int = 2) async {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        let bad = kind >= 8 ? malformed[index % malformed.count] : nil
        let stream = kind <= 6
        if let bad {
            request.body = .bytes(Data(bad.0.utf8))
        } else {
            var o = ServerBenchmark.Options(clients: 1, maxTokens: maxTokens)
            o.temperature = 0.8
            var body = ServerBenchmark.body(chat: chat, model: "", index: index, maxTokens: maxTokens, options: o)
            body["model"] = nil
            body["stream"] = stream
            if !stream { body["stream_options"] = nil }
            request.body = .bytes((try? JSONSerialization.data(withJSONObject: body)) ?? Data())
        }
        do {
            let response = try await http.execute(request, timeout: .seconds(600))
            let status = response.status.code
            if status >= 500 { tally.lock.withLock { tally.serverErrors += 1 } }
            if let bad {
                _ = try await response.body.collect(upTo: 1 << 20)
                if (400..<500).contains(status) { tally.lock.withLock { tally.refused += 1 } } else { tally.fail("\(bad.1): HTTP \(status)") }
                return
            }
            guard status == 200 else {
                let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
                return tally.fail("HTTP \(status): \(text.prefix(200))")
            }
            if !stream {
                let data = Data(buffer: try await response.body.collect(upTo: 16 << 20))
                guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let usage = obj["usage"] as? [String: Any],
                      let n = usage["completion_tokens"] as? Int else { return tally.fail("a reply without usage") }
                tally.lock.withLock { tally.completed += 1; tally.tokens += n }
                return
            }
            var events = 0, done = false, text = ""
            for try await buffer in response.body {
                text += String(buffer: buffer)
                while let r = text.range(of: "\n\n") {
                    let event = text[..<r.lowerBound]
                    text.removeSubrange(..<r.upperBound)
                    events += 1
                    if event.hasSuffix("[DONE]") { done = true }
                    if event.contains("\"error\"") { tally.fail("an error event: \(event.prefix(200))") }
                }
                if kind >= 5 && events >= hangUpAfter && !done {
                    // Hang up mid-stream: leaving the loop drops the body (the connection closes).
                    tally.lock.withLock { tally.disconnected += 1 }
                    return
                }
            }
            if done { tally.lock.withLock { tally.completed += 1; tally.tokens += max(0, events - 2) } } else { tally.fail("the stream ended without [DONE]") }
        } catch {
            tally.fail("\(error)")
        }
    }
}
