import AsyncHTTPClient
import DistillModels
import DistillNN
import DistillServer
import DistillTensor
import Foundation
import NIOCore

/// Serving throughput (`distill bench serve`): the server runs in this process on loopback and
/// `clients` streaming requests go to it twice — all at once (they share generation batches), then
/// one at a time — through AsyncHTTPClient, reading the server-sent events as a client would. With
/// `Options.stagger`, the requests also arrive spread out in time, once at a server with
/// continuous batching and once at one with static batching.
///
/// Each request is a chat request (a completions request for a model without a chat template)
/// with its own prompt, `max_tokens`, `ignore_eos` (so every request generates exactly
/// `max_tokens`, unless `stopAtEOS`), `stream_options.include_usage` and a seed. Generated
/// tokens are the final usage chunk's `completion_tokens`; time to first token is the time to the
/// first event with text; latency is the time to `[DONE]`.
public enum ServerBenchmark {
    public struct Options: Sendable {
        /// Requests (and, in the concurrent phase, clients at once).
        public var clients = 32
        public var maxTokens = 32
        /// The server's `maxBatch` (nil: `clients`, so that all of them can share one batch).
        public var maxBatch: Int?
        /// The server's batch window, seconds.
        public var batchWindow = 0.005
        public var temperature = 0.0
        /// Let requests end at the model's end-of-sequence token (by default they run to `maxTokens`).
        public var stopAtEOS = false
        /// A short request first, not counted (loads weights into caches, opens a connection).
        public var warmup = true
        /// When set, two more phases: request i starts i × `stagger` seconds after the first, sent
        /// once to a server with continuous batching and once to one with static batching.
        public var stagger: Double?

        public init(clients: Int = 32, maxTokens: Int = 32) {
            self.clients = clients
            self.maxTokens = maxTokens
        }
    }

    /// One request as the client saw it.
    public struct RequestResult: Codable, Sendable {
        /// Nil when the request failed.
        public var error: String?
        /// Generated tokens (the server's usage count).
        public var tokens: Int
        /// Events that carried text.
        public var textEvents: Int
        /// Seconds from sending to the first text; nil when none came.
        public var timeToFirstToken: Double?
        /// Seconds from sending to the end of the stream.
        public var latency: Double
    }

    /// Nearest-rank percentiles.
    public struct Percentiles: Codable, Sendable {
        public var p50: Double
        public var p95: Double
        public var max: Double

        init(_ values: [Double]) {
            let v = values.sorted()
            func rank(_ p: Double) -> Double {
                guard !v.isEmpty else { return .nan }
                return v[Swift.max(0, Swift.min(v.count - 1, Int((p * Double(v.count)).rounded(.up)) - 1))]
            }
            p50 = rank(0.5)
            p95 = rank(0.95)
            self.max = v.last ?? .nan
        }
    }

    public struct Phase: Codable, Sendable {
        /// "concurrent", "sequential", "staggered continuous" or "staggered static".
        public var mode: String
        public var requests: Int
        public var errors: Int
        /// The first few error messages.
        public var errorMessages: [String]
        public var seconds: Double
        public var generatedTokens: Int
        /// Generated tokens over the phase's wall-clock time.
        public var tokensPerSecond: Double
        public var latency: Percentiles
        public var timeToFirstToken: Percentiles
        /// Generated tokens per request: fewest, most.
        public var tokensPerClientMin: Int
        public var tokensPerClientMax: Int
        /// Groups of requests whose prompts the server ran together in this phase.
        public var serverBatches: Int
        /// Requests that joined a running batch (continuous batching).
        public var joinedRunning: Int = 0
        public var results: [RequestResult]
    }

    public struct Result: Codable, Sendable {
        public var model: String
        public var endpoint: String
        public var clients: Int
        public var maxTokens: Int
        public var maxBatch: Int
        public var concurrent: Phase
        public var sequential: Phase
        /// Staggered arrivals (`Options.stagger`): continuous batching, then static.
        public var staggered: [Phase]?
        public var staggerSeconds: Double?
        /// Concurrent tokens/s over sequential tokens/s.
        public var speedup: Double
        public var errors: Int { ([concurrent, sequential] + (staggered ?? [])).reduce(0) { $0 + $1.errors } }
    }

    /// The prompt of request `i` (varied lengths and content).
    public static func prompt(_ i: Int) -> String {
        let topics = ["the water cycle", "how a bicycle stays upright", "why the sky is blue", "prime numbers",
                      "the history of tea", "how vaccines work", "photosynthesis", "the rules of chess"]
        let asks = ["Explain %@ in two sentences.", "Write a short poem about %@.", "Give three facts about %@.",
                    "What should a child know about %@?"]
        return String(format: asks[(i / topics.count) % asks.count], topics[i % topics.count]) + " (request \(i))"
    }

    /// Options that cannot run.
    public struct OptionError: Error, CustomStringConvertible { public let description: String }

    /// Starts the server over `model` on 127.0.0.1, runs the phases, stops it. `progress` gets a
    /// line per phase.
    public static func run(model: PretrainedModel, modelName: String? = nil, options o: Options,
                           progress: @escaping @Sendable (String) -> Void = { _ in }) async throws -> Result {
        guard o.clients >= 1, o.maxTokens >= 1 else { throw OptionError(description: "clients and max tokens must be at least 1") }
        if let s = o.stagger, !(s >= 0) { throw OptionError(description: "the stagger interval must be at least 0") }
        let maxBatch = o.maxBatch ?? o.clients
        var config = HTTPClient.Configuration()
        config.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: max(o.clients, 8))
        config.timeout = .init(connect: .seconds(10))
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        do {
            var phases: [Phase] = []
            var name = ""
            for batching in o.stagger == nil ? [BatchingMode.continuous] : [.continuous, .static] {
                let server = try OpenAIServer(model: model, modelName: modelName, maxBatch: maxBatch, batchWindow: o.batchWindow,
                                              batching: batching)
                defer { server.stopGeneration() }
                name = server.modelName
                let running = try await server.start()
                let chat = model.chatTemplate != nil
                let url = running.baseURL + (chat ? "/v1/chat/completions" : "/v1/completions")
                if o.warmup { _ = await request(http, url: url, chat: chat, model: server.modelName, index: -1, maxTokens: 2, options: o) }
                let modes: [String] = batching == .continuous ? ["concurrent", "sequential"] : []
                for mode in modes + (o.stagger == nil ? [] : ["staggered \(batching.rawValue)"]) {
                    let phase = await runPhase(mode, http: http, url: url, chat: chat, server: server, options: o)
                    progress(String(format: "%@: %d requests, %d errors, %d tokens in %.2f s: %.1f tokens/s",
                                    phase.mode, phase.requests, phase.errors, phase.generatedTokens, phase.seconds, phase.tokensPerSecond))
                    phases.append(phase)
                }
                await running.shutdown()
            }
            try await http.shutdown()
            return Result(model: name, endpoint: model.chatTemplate != nil ? "/v1/chat/completions" : "/v1/completions",
                          clients: o.clients, maxTokens: o.maxTokens, maxBatch: maxBatch, concurrent: phases[0], sequential: phases[1],
                          staggered: o.stagger == nil ? nil : Array(phases[2...]), staggerSeconds: o.stagger,
                          speedup: phases[0].tokensPerSecond / phases[1].tokensPerSecond)
        } catch {
            try? await http.shutdown()
            throw error
        }
    }

    /// The clients' requests in one arrival pattern: all at once ("concurrent"), one after another
    /// ("sequential"), or request i sent i × `stagger` seconds after the first ("staggered …").
    static func runPhase(_ mode: String, http: HTTPClient, url: String, chat: Bool, server: OpenAIServer,
                         options o: Options) async -> Phase {
        let before = server.batchCount, joinedBefore = server.joinedRunningCount
        let start = DispatchTime.now().uptimeNanoseconds
        let results: [RequestResult]
        if mode == "sequential" {
            var out: [RequestResult] = []
            for i in 0..<o.clients {
                out.append(await request(http, url: url, chat: chat, model: server.modelName, index: i, maxTokens: o.maxTokens, options: o))
            }
            results = out
        } else {
            let gap = mode == "concurrent" ? 0 : o.stagger ?? 0
            results = await withTaskGroup(of: (Int, RequestResult).self) { group in
                for i in 0..<o.clients {
                    group.addTask {
                        let due = start + UInt64(Double(i) * gap * 1e9)
                        let now = DispatchTime.now().uptimeNanoseconds
                        if due > now { try? await Task.sleep(nanoseconds: due - now) }
                        return (i, await request(http, url: url, chat: chat, model: server.modelName, index: i, maxTokens: o.maxTokens, options: o))
                    }
                }
                var out = [RequestResult?](repeating: nil, count: o.clients)
                for await (i, r) in group { out[i] = r }
                return out.map { $0! }
            }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        var phase = summarize(mode, results, seconds: seconds, batches: server.batchCount - before)
        phase.joinedRunning = server.joinedRunningCount - joinedBefore
        return phase
    }

    static func summarize(_ mode: String, _ results: [RequestResult], seconds: Double, batches: Int) -> Phase {
        let ok = results.filter { $0.error == nil }
        let tokens = ok.reduce(0) { $0 + $1.tokens }
        return Phase(mode: mode, requests: results.count, errors: results.count - ok.count,
                     errorMessages: Array(results.compactMap(\.error).prefix(5)), seconds: seconds, generatedTokens: tokens,
                     tokensPerSecond: Double(tokens) / seconds, latency: Percentiles(ok.map(\.latency)),
                     timeToFirstToken: Percentiles(ok.compactMap(\.timeToFirstToken)),
                     tokensPerClientMin: ok.map(\.tokens).min() ?? 0, tokensPerClientMax: ok.map(\.tokens).max() ?? 0,
                     serverBatches: batches, results: results)
    }

    /// The request body of request `index`.
    static func body(chat: Bool, model: String, index: Int, maxTokens: Int, options o: Options) -> [String: Any] {
        var b: [String: Any] = [
            "model": model, "max_tokens": maxTokens, "temperature": o.temperature, "seed": max(0, index),
            "stream": true, "stream_options": ["include_usage": true], "ignore_eos": !o.stopAtEOS,
        ]
        if chat {
            b["messages"] = [["role": "user", "content": prompt(max(0, index))]]
        } else {
            b["prompt"] = prompt(max(0, index))
        }
        return b
    }

    /// One streaming request; failures are reported in the result, not thrown.
    static func request(_ http: HTTPClient, url: String, chat: Bool, model: String, index: Int, maxTokens: Int,
                        options o: Options) async -> RequestResult {
        let start = DispatchTime.now().uptimeNanoseconds
        func elapsed() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        var result = RequestResult(error: nil, tokens: 0, textEvents: 0, timeToFirstToken: nil, latency: 0)
        do {
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "Accept", value: "text/event-stream")
            request.body = .bytes(try JSONSerialization.data(withJSONObject: body(chat: chat, model: model, index: index,
                                                                                  maxTokens: maxTokens, options: o)))
            let response = try await http.execute(request, timeout: .seconds(3600))
            guard response.status.code == 200 else {
                let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
                result.error = "HTTP \(response.status.code): \(text.prefix(300))"
                result.latency = elapsed()
                return result
            }
            var pending: [UInt8] = []
            var done = false
            var usage: Int?
            for try await buffer in response.body {
                pending += buffer.readableBytesView
                // Events end with a blank line.
                while let end = eventEnd(pending) {
                    let event = Array(pending[..<end.start])
                    pending.removeFirst(end.next)
                    guard let line = String(bytes: event, encoding: .utf8), line.hasPrefix("data:") else { continue }
                    let data = line.dropFirst(5).trimmingCharacters(in: .whitespaces)
                    if data == "[DONE]" { done = true; continue }
                    guard let obj = try? JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any] else {
                        result.error = "not JSON: \(data.prefix(200))"
                        continue
                    }
                    if let e = obj["error"] as? [String: Any] {
                        result.error = "error event: \(e["message"] as? String ?? "\(e)")"
                        continue
                    }
                    if let u = obj["usage"] as? [String: Any], let n = u["completion_tokens"] as? Int { usage = n }
                    for choice in obj["choices"] as? [[String: Any]] ?? [] {
                        let text = chat ? (choice["delta"] as? [String: Any])?["content"] as? String : choice["text"] as? String
                        if let text, !text.isEmpty {
                            result.textEvents += 1
                            if result.timeToFirstToken == nil { result.timeToFirstToken = elapsed() }
                        }
                    }
                }
            }
            result.latency = elapsed()
            if result.error == nil && !done { result.error = "the stream ended without [DONE]" }
            if result.error == nil && usage == nil { result.error = "no usage chunk" }
            result.tokens = usage ?? result.textEvents
        } catch {
            result.error = "\(error)"
            result.latency = elapsed()
        }
        return result
    }

    /// Where the first event in `bytes` ends: its length and the offset after the blank line.
    static func eventEnd(_ bytes: [UInt8]) -> (start: Int, next: Int)? {
        guard bytes.count >= 2 else { return nil }
        for i in 0..<(bytes.count - 1) where bytes[i] == 10 {
            if bytes[i + 1] == 10 { return (i, i + 2) }
            if bytes[i + 1] == 13, i + 2 < bytes.count, bytes[i + 2] == 10 { return (i, i + 3) }
        }
        return nil
    }
}
