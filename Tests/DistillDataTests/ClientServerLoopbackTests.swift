import DistillModels
import DistillNN
import DistillServer
import DistillTensor
import DistillTestSupport
import Foundation
import XCTest
@testable import DistillData

/// The OpenAI-compatible client against the real server (`OpenAIServer`, Hummingbird) on
/// loopback, over a tiny random Qwen2-style model: what comes back through HTTP equals what the
/// local teacher and the `Generator` give for the same request.
final class ClientServerLoopbackTests: XCTestCase {
    static let model = try! loopbackTinyModel()
    var model: PretrainedModel { Self.model }
    var tok: Tokenizer { model.tokenizer! }

    var running: RunningOpenAIServer?
    var clients: [HTTPTeacherClient] = []

    override func tearDown() async throws {
        for c in clients { try? await c.shutdown() }
        clients = []
        await running?.shutdown()
        running = nil
    }

    /// Starts the server on 127.0.0.1 (a free port).
    func startServer(maxBatch: Int = 16, window: Double = 0.005) async throws -> (OpenAIServer, RunningOpenAIServer) {
        let server = try OpenAIServer(model: model, modelName: "tiny", maxBatch: maxBatch, batchWindow: window)
        let r = try await server.start()
        running = r
        return (server, r)
    }

    /// A client of `running` (fast backoff: a retry would show in the statistics anyway).
    func client(_ r: RunningOpenAIServer, model: String = "tiny",
                configure: (inout HTTPTeacherConfiguration) -> Void = { _ in }) throws -> HTTPTeacherClient {
        var c = HTTPTeacherConfiguration(baseURL: r.baseURL, model: model)
        c.initialBackoff = 0.001
        c.maxBackoff = 0.01
        c.requestTimeout = 60
        configure(&c)
        let client = try HTTPTeacherClient(c)
        clients.append(client)
        return client
    }

    func local() throws -> LocalTeacherClient { try LocalTeacherClient(model: model, name: "tiny") }

    /// The prompt ids the chat endpoint builds.
    func chatIds(_ messages: [TeacherMessage]) throws -> [Int] {
        tok.encode(try model.applyChatTemplate(messages.map { ChatMessage(role: $0.role, content: $0.content) }), addSpecialTokens: false)
    }

    /// What the Generator gives for one prompt.
    func direct(_ ids: [Int], _ s: TeacherSampling) throws -> [GeneratedSequence] {
        try Generator(model: model.lm).generate(
            prompts: [ids],
            options: GenerationOptions(maxTokens: s.maxTokens,
                                       sampling: SamplingParameters(temperature: Float(s.temperature), topP: Float(s.topP), seed: s.seed ?? 0),
                                       n: s.n, stopTokenIds: Set(model.eosTokenIds), stopStrings: s.stop,
                                       topLogprobs: s.wantsLogprobs ? s.topLogprobs : 0),
            tokenizer: self.tok)
    }

    /// Log-probabilities travel as JSON numbers printed from Float: compare them as Float.
    func assertSameLogprobs(_ got: [TokenLogprob]?, _ want: [TokenLogprob]?, file: StaticString = #filePath, line: UInt = #line) {
        guard let got, let want else {
            XCTAssertEqual(got == nil, want == nil, "logprobs present on one side only", file: file, line: line)
            return
        }
        XCTAssertEqual(got.count, want.count, file: file, line: line)
        for (g, w) in zip(got, want) {
            XCTAssertEqual(g.token, w.token, file: file, line: line)
            XCTAssertEqual(Float(g.logprob), Float(w.logprob), file: file, line: line)
            XCTAssertEqual(g.top.map(\.token), w.top.map(\.token), file: file, line: line)
            XCTAssertEqual(g.top.map { Float($0.logprob) }, w.top.map { Float($0.logprob) }, file: file, line: line)
        }
    }

    func assertSameCompletions(_ got: TeacherResponse, _ want: TeacherResponse, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.completions.map(\.index), want.completions.map(\.index), file: file, line: line)
        XCTAssertEqual(got.completions.map(\.text), want.completions.map(\.text), file: file, line: line)
        XCTAssertEqual(got.completions.map(\.finishReason), want.completions.map(\.finishReason), file: file, line: line)
        XCTAssertEqual(got.usage, want.usage, file: file, line: line)
        for (g, w) in zip(got.completions, want.completions) { assertSameLogprobs(g.logprobs, w.logprobs, file: file, line: line) }
    }

    // MARK: - Chat and completions

    /// Greedy chat: text, finish reason, usage and served model name; the same as the local
    /// teacher and as the Generator on the templated prompt.
    func testChatGreedy() async throws {
        let (_, r) = try await startServer()
        let c = try client(r)
        let messages: [TeacherMessage] = [.system("Be brief."), .user("hello there")]
        let sampling = TeacherSampling(temperature: 0, maxTokens: 12)
        let got = try await c.complete(messages: messages, sampling: sampling)
        XCTAssertEqual(got.model, "tiny")
        XCTAssertEqual(got.completions.count, 1)
        let want = try await local().complete(messages: messages, sampling: sampling)
        assertSameCompletions(got, want)
        let ids = try chatIds(messages)
        let seq = try direct(ids, sampling)[0]
        XCTAssertEqual(got.completions[0].text, tok.decode(seq.tokens, skipSpecialTokens: true))
        XCTAssertEqual(got.usage, TeacherUsage(promptTokens: ids.count, completionTokens: seq.tokens.count))
        XCTAssertEqual(got.completions[0].finishReason, seq.finishReason == .length ? .length : .stop)
        XCTAssertEqual(c.statistics().attempts, 1)
        XCTAssertEqual(c.statistics().successes, 1)
    }

    /// Text completions (/v1/completions), greedy, through a base URL ending in /v1.
    func testTextCompletionGreedy() async throws {
        let (_, r) = try await startServer()
        let c = try client(r) { $0.baseURLs = [r.baseURL + "/v1/"] }
        let sampling = TeacherSampling(temperature: 0, maxTokens: 10)
        let got = try await c.complete(text: "the cat sat on", sampling: sampling)
        let want = try await local().complete(text: "the cat sat on", sampling: sampling)
        assertSameCompletions(got, want)
        let seq = try direct(tok.encode("the cat sat on"), sampling)[0]
        XCTAssertEqual(got.completions[0].text, tok.decode(seq.tokens, skipSpecialTokens: true))
    }

    /// n = 3 with a seed, chat and completions: the three samples the Generator draws with that
    /// seed (sampler streams 0, 1, 2), the same as the local teacher, the same again on a repeat.
    func testNSamplesWithSeed() async throws {
        let (_, r) = try await startServer()
        let c = try client(r)
        let teacher = try local()
        let sampling = TeacherSampling(n: 3, temperature: 1, maxTokens: 10, seed: 42)

        let chat = try await c.complete(messages: [.user("tell me a story")], sampling: sampling)
        XCTAssertEqual(chat.completions.map(\.index), [0, 1, 2])
        assertSameCompletions(chat, try await teacher.complete(messages: [.user("tell me a story")], sampling: sampling))
        let chatSeqs = try direct(try chatIds([.user("tell me a story")]), sampling)
        XCTAssertEqual(chat.completions.map(\.text), chatSeqs.map { tok.decode($0.tokens, skipSpecialTokens: true) })
        XCTAssertGreaterThan(Set(chatSeqs.map(\.tokens)).count, 1, "seeded samples should differ")

        let text = try await c.complete(text: "once upon a time", sampling: sampling)
        assertSameCompletions(text, try await teacher.complete(text: "once upon a time", sampling: sampling))
        let textSeqs = try direct(tok.encode("once upon a time"), sampling)
        XCTAssertEqual(text.completions.map(\.text), textSeqs.map { tok.decode($0.tokens, skipSpecialTokens: true) })
        XCTAssertEqual(text.usage?.completionTokens, textSeqs.reduce(0) { $0 + $1.tokens.count })

        let again = try await c.complete(text: "once upon a time", sampling: sampling)
        XCTAssertEqual(again.completions.map(\.text), text.completions.map(\.text))
        // Another seed, other samples.
        var other = sampling
        other.seed = 43
        let moved = try await c.complete(text: "once upon a time", sampling: other)
        XCTAssertNotEqual(moved.completions.map(\.text), text.completions.map(\.text))
    }

    /// Chat log-probabilities with top alternatives: parsed by the client, equal to the
    /// Generator's values for the same tokens (token strings are each id's decoded text).
    func testChatLogprobsEqualGenerator() async throws {
        let (_, r) = try await startServer()
        let c = try client(r)
        let sampling = TeacherSampling(n: 2, temperature: 0.8, maxTokens: 8, seed: 5, logprobs: true, topLogprobs: 4)
        let messages: [TeacherMessage] = [.user("What is 2 + 2?")]
        let got = try await c.complete(messages: messages, sampling: sampling)
        let seqs = try direct(try chatIds(messages), sampling)
        XCTAssertEqual(got.completions.count, 2)
        for (comp, seq) in zip(got.completions, seqs) {
            let lp = try XCTUnwrap(comp.logprobs)
            XCTAssertEqual(lp.count, seq.tokens.count)
            for k in seq.tokens.indices {
                XCTAssertEqual(lp[k].token, tok.decode([seq.tokens[k]]))
                XCTAssertEqual(Float(lp[k].logprob), seq.logprobs[k])
                XCTAssertEqual(lp[k].top.count, 4)
                XCTAssertEqual(lp[k].top.map(\.token), seq.topLogprobs[k].map { tok.decode([$0.token]) })
                XCTAssertEqual(lp[k].top.map { Float($0.logprob) }, seq.topLogprobs[k].map(\.logprob))
            }
        }
        assertSameCompletions(got, try await local().complete(messages: messages, sampling: sampling))
    }

    /// Completions log-probabilities (`logprobs: k`, a dict of alternatives per token): token
    /// log-probabilities equal the Generator's; the alternatives are the Generator's top k (most
    /// likely first once the client has sorted the dict).
    func testCompletionLogprobsEqualGenerator() async throws {
        let (_, r) = try await startServer()
        let c = try client(r)
        let sampling = TeacherSampling(temperature: 0, maxTokens: 8, logprobs: true, topLogprobs: 3)
        let got = try await c.complete(text: "one two three", sampling: sampling)
        let seq = try direct(tok.encode("one two three"), sampling)[0]
        let lp = try XCTUnwrap(got.completions[0].logprobs)
        XCTAssertEqual(lp.map(\.token), seq.tokens.map { tok.decode([$0]) })
        XCTAssertEqual(lp.map { Float($0.logprob) }, seq.logprobs)
        for k in seq.tokens.indices {
            // The server keys alternatives by their text; equal texts keep the larger value.
            var want: [String: Float] = [:]
            for t in seq.topLogprobs[k] { want[tok.decode([t.token])] = max(want[tok.decode([t.token])] ?? -.infinity, t.logprob) }
            var have: [String: Float] = [:]
            for t in lp[k].top { have[t.token] = Float(t.logprob) }
            XCTAssertEqual(have, want)
            XCTAssertEqual(lp[k].top.map(\.logprob), lp[k].top.map(\.logprob).sorted(by: >))
            // Greedy: the chosen token is the most likely.
            XCTAssertEqual(Float(lp[k].top[0].logprob), seq.logprobs[k])
        }
    }

    /// A stop string cuts the text before its first occurrence; finish reason "stop".
    func testStopStrings() async throws {
        let (_, r) = try await startServer()
        let c = try client(r)
        let free = try await c.complete(text: "the cat sat", sampling: TeacherSampling(temperature: 0, maxTokens: 16))
        let full = free.completions[0].text
        // A short piece from the middle of the free text that does not occur earlier.
        let chars = Array(full)
        var stop: String?
        for start in 2..<max(2, chars.count - 1) {
            let piece = String(chars[start..<min(chars.count, start + 2)])
            guard !piece.trimmingCharacters(in: .whitespaces).isEmpty,
                  let first = full.range(of: piece), full.distance(from: full.startIndex, to: first.lowerBound) >= 2 else { continue }
            stop = piece
            break
        }
        let s = try XCTUnwrap(stop, "the greedy text \(full.debugDescription) has no usable stop string")
        let cut = String(full[..<full.range(of: s)!.lowerBound])
        let sampling = TeacherSampling(temperature: 0, maxTokens: 16, stop: ["never-appears", s])
        let got = try await c.complete(text: "the cat sat", sampling: sampling)
        XCTAssertEqual(got.completions[0].text, cut)
        XCTAssertEqual(got.completions[0].finishReason, .stop)
        assertSameCompletions(got, try await local().complete(text: "the cat sat", sampling: sampling))
        // Chat too.
        let chatFree = try await c.complete(messages: [.user("hi")], sampling: TeacherSampling(temperature: 0, maxTokens: 12))
        let chatText = chatFree.completions[0].text
        XCTAssertGreaterThanOrEqual(chatText.count, 4, chatText.debugDescription)
        guard chatText.count >= 4 else { return }
        let piece = String(Array(chatText)[2..<4])
        let chatSampling = TeacherSampling(temperature: 0, maxTokens: 12, stop: [piece])
        let chat = try await c.complete(messages: [.user("hi")], sampling: chatSampling)
        XCTAssertEqual(chat.completions[0].text, String(chatText[..<chatText.range(of: piece)!.lowerBound]))
        XCTAssertLessThan(chat.completions[0].text.count, chatText.count)
        assertSameCompletions(chat, try await local().complete(messages: [.user("hi")], sampling: chatSampling))
    }

    // MARK: - Errors

    /// A bad parameter: the server's 400 reaches the caller as `httpStatus` with the server's
    /// message, after one attempt (no retry).
    func testBadParameterIsNotRetried() async throws {
        let (_, r) = try await startServer()
        let c = try client(r)
        do {
            // The client lets any k ≥ 0 through; the server takes at most 20.
            _ = try await c.complete(messages: [.user("hi")], sampling: TeacherSampling(maxTokens: 4, logprobs: true, topLogprobs: 21))
            XCTFail("expected a 400")
        } catch let TeacherClientError.httpStatus(url, status, message) {
            XCTAssertEqual(status, 400)
            XCTAssertEqual(url, r.baseURL + "/v1/chat/completions")
            XCTAssertTrue(message.contains("top_logprobs") && message.contains("got 21"), message)
        }
        // An unsupported extra field, on the other endpoint.
        let d = try client(r) { $0.extraBody = ["presence_penalty": 0.5] }
        do {
            _ = try await d.complete(text: "hi", sampling: TeacherSampling(maxTokens: 4))
            XCTFail("expected a 400")
        } catch let TeacherClientError.httpStatus(_, status, message) {
            XCTAssertEqual(status, 400)
            XCTAssertTrue(message.contains("presence_penalty"), message)
        }
        // Beyond the model's context (96 positions).
        do {
            _ = try await c.complete(text: "hi", sampling: TeacherSampling(maxTokens: 500))
            XCTFail("expected a 400")
        } catch let TeacherClientError.httpStatus(_, status, message) {
            XCTAssertEqual(status, 400)
            XCTAssertTrue(message.contains("maximum context length is 96"), message)
        }
        for x in [c, d] {
            let stats = x.statistics()
            XCTAssertEqual(stats.retries, 0)
            XCTAssertEqual(stats.attempts, stats.failures)
            XCTAssertEqual(stats.successes, 0)
        }
        XCTAssertEqual(c.statistics().attempts, 2)
    }

    /// A model name the server does not serve: 404 `model_not_found`, not retried; the model's
    /// path is accepted as its name, and the reply names the served model.
    func testModelNameMismatch() async throws {
        let (_, r) = try await startServer()
        let wrong = try client(r, model: "gpt-4o")
        do {
            _ = try await wrong.complete(messages: [.user("hi")], sampling: TeacherSampling(maxTokens: 2))
            XCTFail("expected a 404")
        } catch let TeacherClientError.httpStatus(_, status, message) {
            XCTAssertEqual(status, 404)
            XCTAssertTrue(message.contains("gpt-4o") && message.contains("tiny"), message)
        }
        XCTAssertEqual(wrong.statistics().attempts, 1)
        XCTAssertEqual(wrong.statistics().retries, 0)
        let byPath = try client(r, model: "/models/tiny-qwen2")
        let ok = try await byPath.complete(text: "hi", sampling: TeacherSampling(temperature: 0, maxTokens: 2))
        XCTAssertEqual(ok.model, "tiny")
    }

    /// A server that is gone: connection errors, retried, then `retriesExhausted`.
    func testStoppedServerIsRetriedThenGivesUp() async throws {
        let (_, r) = try await startServer()
        let c = try client(r) { $0.maxRetries = 2 }
        await r.shutdown()
        running = nil
        do {
            _ = try await c.complete(text: "hi", sampling: TeacherSampling(maxTokens: 2))
            XCTFail("expected an error")
        } catch let TeacherClientError.retriesExhausted(attempts, last) {
            XCTAssertEqual(attempts, 3)
            guard case .connection = last else { return XCTFail("expected a connection error, got \(last)") }
        }
        XCTAssertEqual(c.statistics().retries, 2)
    }

    // MARK: - Concurrency

    /// 32 concurrent requests through one client: all succeed, each equals what the local teacher
    /// gives for it alone, and the server generated them in fewer batches than requests.
    func testConcurrentRequestsShareBatches() async throws {
        let (server, r) = try await startServer(maxBatch: 32, window: 0.02)
        let c = try client(r) { $0.maxInFlight = 32 }
        let count = 32
        func request(_ i: Int) -> (TeacherPrompt, TeacherSampling) {
            let sampling = TeacherSampling(temperature: i % 4 == 0 ? 0 : 0.9, maxTokens: 4 + i % 5, seed: UInt64(100 + i))
            return i % 2 == 0 ? (.chat([.user("question number \(i)")]), sampling) : (.text("prompt \(i): the"), sampling)
        }
        let batchesBefore = server.batchCount, sequencesBefore = server.sequenceCount
        let replies = try await withThrowingTaskGroup(of: (Int, TeacherResponse).self) { group in
            for i in 0..<count {
                group.addTask {
                    let (p, s) = request(i)
                    return (i, try await c.complete(p, sampling: s))
                }
            }
            var out = [TeacherResponse?](repeating: nil, count: count)
            for try await (i, reply) in group { out[i] = reply }
            return out.map { $0! }
        }
        let batches = server.batchCount - batchesBefore
        XCTAssertEqual(server.sequenceCount - sequencesBefore, count)
        XCTAssertLessThan(batches, count, "32 concurrent requests should share batches")
        XCTAssertGreaterThanOrEqual(batches, 1)
        let stats = c.statistics()
        XCTAssertEqual(stats.successes, count)
        XCTAssertEqual(stats.failures, 0)
        XCTAssertEqual(stats.retries, 0)
        // Batching does not change any request's tokens.
        let teacher = try local()
        for i in 0..<count {
            let (p, s) = request(i)
            assertSameCompletions(replies[i], try await teacher.complete(p, sampling: s))
        }
    }
}

/// The shared tiny chat model (`DistillTestSupport`) over the server tests' fixture tokenizer.
func loopbackTinyModel(seed: UInt64 = 1) throws -> PretrainedModel {
    try tinyChatModel(tokenizerDirectory: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("DistillServerTests/Fixtures/tokenizer"), seed: seed)
}
