import Foundation
import XCTest
@testable import DistillData

/// The OpenAI-compatible client against a stub server with canned replies.
final class ClientHTTPTeacherTests: XCTestCase {
    var servers: [StubHTTPServer] = []
    var clients: [HTTPTeacherClient] = []

    override func tearDown() async throws {
        for c in clients { try? await c.shutdown() }
        for s in servers { s.stop() }
        clients = []
        servers = []
    }

    func server(_ handler: @escaping @Sendable (StubHTTPServer.Request, Int) -> StubHTTPServer.Reply) throws -> StubHTTPServer {
        let s = try StubHTTPServer(handler: handler)
        servers.append(s)
        return s
    }

    /// Fast backoff unless a test says otherwise.
    func client(_ urls: [String], model: String = "teacher", configure: (inout HTTPTeacherConfiguration) -> Void = { _ in },
                onEvent: (@Sendable (TeacherClientEvent) -> Void)? = nil) throws -> HTTPTeacherClient {
        var c = HTTPTeacherConfiguration(baseURLs: urls, model: model)
        c.initialBackoff = 0.001
        c.maxBackoff = 0.01
        c.requestTimeout = 5
        configure(&c)
        let client = try HTTPTeacherClient(c, onEvent: onEvent)
        clients.append(client)
        return client
    }

    // MARK: Parsing

    func testChatRequestAndReplyWithLogprobs() async throws {
        setenv("DISTILL_TEST_TEACHER_KEY", "sk-test-123", 1)
        let s = try server { _, _ in .init(body: CannedOpenAI.chat(texts: ["Hi!", "Hello."], model: "served-name", logprobs: true)) }
        let c = try client([s.baseURL], model: "qwen-7b") { $0.apiKeyEnvironmentVariable = "DISTILL_TEST_TEACHER_KEY" }
        let sampling = TeacherSampling(n: 2, temperature: 0.7, topP: 0.9, maxTokens: 64, stop: ["</answer>"], seed: 11,
                                       logprobs: true, topLogprobs: 2)
        let r = try await c.complete(messages: [.system("Be brief."), .user("Say hi")], sampling: sampling)

        let req = try XCTUnwrap(s.requests.first)
        XCTAssertEqual(req.method, "POST")
        XCTAssertEqual(req.path, "/v1/chat/completions")
        XCTAssertEqual(req.headers["authorization"], "Bearer sk-test-123")
        XCTAssertEqual(req.headers["content-type"], "application/json")
        let body = req.json
        XCTAssertEqual(body["model"] as? String, "qwen-7b")
        XCTAssertEqual(body["n"] as? Int, 2)
        XCTAssertEqual(body["temperature"] as? Double, 0.7)
        XCTAssertEqual(body["top_p"] as? Double, 0.9)
        XCTAssertEqual(body["max_tokens"] as? Int, 64)
        XCTAssertEqual(body["stop"] as? [String], ["</answer>"])
        XCTAssertEqual(body["seed"] as? Int, 11)
        XCTAssertEqual(body["logprobs"] as? Bool, true)
        XCTAssertEqual(body["top_logprobs"] as? Int, 2)
        XCTAssertEqual(body["stream"] as? Bool, false)
        let messages = try XCTUnwrap(body["messages"] as? [[String: String]])
        XCTAssertEqual(messages, [["role": "system", "content": "Be brief."], ["role": "user", "content": "Say hi"]])

        XCTAssertEqual(r.model, "served-name")
        XCTAssertEqual(r.completions.map(\.text), ["Hi!", "Hello."])
        XCTAssertEqual(r.completions.map(\.index), [0, 1])
        XCTAssertEqual(r.completions[0].finishReason, .stop)
        XCTAssertEqual(r.usage, TeacherUsage(promptTokens: 7, completionTokens: 4, totalTokens: 11))
        let lp = try XCTUnwrap(r.completions[0].logprobs)
        XCTAssertEqual(lp, [
            // The server gave the first token's `bytes` ("Hi" = 72, 105).
            TokenLogprob(token: "Hi", logprob: -0.25, bytes: [72, 105],
                         top: [TopLogprob(token: "Hi", logprob: -0.25), TopLogprob(token: "Hello", logprob: -1.5)]),
            TokenLogprob(token: "!", logprob: -0.5, top: [TopLogprob(token: "!", logprob: -0.5), TopLogprob(token: ".", logprob: -1.0)]),
        ])
    }

    func testChatWithoutLogprobsAndReasoningContent() async throws {
        // DeepSeek's reasoner: reasoning_content beside content; no logprobs; finish "length".
        let reply = #"{"model":"deepseek-reasoner","choices":[{"index":0,"message":{"role":"assistant","content":"42","reasoning_content":"6*7"},"finish_reason":"length"}]}"#
        let s = try server { _, _ in .init(body: reply) }
        let c = try client([s.baseURL + "/v1/"])
        let r = try await c.complete(messages: [.user("6*7?")])
        XCTAssertEqual(s.requests.first?.path, "/v1/chat/completions")
        XCTAssertNil(s.requests.first?.headers["authorization"])
        XCTAssertNil(s.requests.first?.json["logprobs"])
        XCTAssertNil(s.requests.first?.json["seed"])
        XCTAssertEqual(r.completions, [TeacherCompletion(index: 0, text: "42", reasoning: "6*7", finishReason: .length)])
        XCTAssertNil(r.usage)
    }

    func testCompletionsRequestAndReplyWithLogprobs() async throws {
        // The legacy format: parallel arrays, top_logprobs as unordered dicts, a null entry.
        let reply = """
            {"id":"cmpl-1","object":"text_completion","model":"base","choices":[
              {"index":1,"text":" b","finish_reason":"length","logprobs":{"tokens":[" b"],"token_logprobs":[-2.0],"top_logprobs":[{" a":-0.1," b":-2.0," c":-3.0}],"text_offset":[3]}},
              {"index":0,"text":" a!","finish_reason":"stop","logprobs":{"tokens":[" a","!"],"token_logprobs":[-0.1,null],"top_logprobs":[{" b":-2.0," a":-0.1},null],"text_offset":[3,5]}}
            ],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}
            """
        let s = try server { _, _ in .init(body: reply) }
        let c = try client([s.baseURL + "/v1"])
        let r = try await c.complete(text: "1 2 3", sampling: TeacherSampling(n: 2, maxTokens: 2, logprobs: true, topLogprobs: 3))
        let req = try XCTUnwrap(s.requests.first)
        XCTAssertEqual(req.path, "/v1/completions")
        XCTAssertEqual(req.json["prompt"] as? String, "1 2 3")
        XCTAssertEqual(req.json["logprobs"] as? Int, 3)
        XCTAssertNil(req.json["messages"])
        XCTAssertNil(req.json["top_logprobs"])

        XCTAssertEqual(r.model, "base")
        XCTAssertEqual(r.completions.map(\.index), [0, 1])         // sorted by index
        XCTAssertEqual(r.completions.map(\.text), [" a!", " b"])
        XCTAssertEqual(r.completions.map(\.finishReason), [.stop, .length])
        XCTAssertEqual(r.completions[0].logprobs, [
            TokenLogprob(token: " a", logprob: -0.1, top: [TopLogprob(token: " a", logprob: -0.1), TopLogprob(token: " b", logprob: -2.0)]),
            TokenLogprob(token: "!", logprob: -.infinity, top: []),
        ])
        XCTAssertEqual(r.completions[1].logprobs?.first?.top.map(\.token), [" a", " b", " c"])   // most likely first
        XCTAssertEqual(r.usage?.totalTokens, 6)
    }

    func testCompletionsLogprobsOfTheSampledTokenOnly() async throws {
        let reply = #"{"choices":[{"text":"x","finish_reason":"stop","logprobs":{"tokens":["x"],"token_logprobs":[-0.5],"top_logprobs":null}}]}"#
        let s = try server { _, _ in .init(body: reply) }
        let r = try await client([s.baseURL]).complete(text: "a", sampling: TeacherSampling(logprobs: true))
        XCTAssertEqual(s.requests.first?.json["logprobs"] as? Int, 0)
        XCTAssertEqual(r.model, "teacher")
        XCTAssertEqual(r.completions.first?.logprobs, [TokenLogprob(token: "x", logprob: -0.5)])
    }

    // MARK: Errors

    func testClientErrorIsNotRetriedAndCarriesTheServerMessage() async throws {
        let s = try server { _, _ in
            .init(status: 400, body: #"{"object":"error","message":"The model `nope` does not exist.","type":"NotFoundError","code":404}"#)
        }
        let c = try client([s.baseURL], model: "nope")
        do {
            _ = try await c.complete(messages: [.user("x")])
            XCTFail("expected an error")
        } catch let e as TeacherClientError {
            XCTAssertEqual(e, .httpStatus(url: s.baseURL + "/v1/chat/completions", status: 400, message: "The model `nope` does not exist."))
            XCTAssertTrue(e.description.contains("HTTP 400"))
        }
        XCTAssertEqual(s.requests.count, 1)
        XCTAssertEqual(c.statistics().failures, 1)
    }

    func testOpenAIErrorShapeAndUnauthorized() async throws {
        let s = try server { _, _ in .init(status: 401, body: #"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}"#) }
        do {
            _ = try await client([s.baseURL]).complete(messages: [.user("x")])
            XCTFail("expected an error")
        } catch let TeacherClientError.httpStatus(_, status, message) {
            XCTAssertEqual(status, 401)
            XCTAssertEqual(message, "Incorrect API key provided")
        }
    }

    func testMalformedReplies() async throws {
        let bodies = ["<html>busy</html>", #"{"choices": 3}"#, #"{"object":"list"}"#]
        let s = try server { _, i in .init(body: bodies[i]) }
        let c = try client([s.baseURL])
        var reasons: [String] = []
        for _ in bodies {
            do {
                _ = try await c.complete(messages: [.user("x")])
                XCTFail("expected an error")
            } catch let TeacherClientError.malformedResponse(url, reason, body) {
                XCTAssertEqual(url, s.baseURL + "/v1/chat/completions")
                XCTAssertFalse(body.isEmpty)
                reasons.append(reason)
            }
        }
        XCTAssertEqual(reasons[0], "not JSON")
        XCTAssertTrue(reasons[1].hasPrefix("choices: expected"), reasons[1])
        XCTAssertEqual(reasons[2], "missing \"choices\"")
        XCTAssertEqual(s.requests.count, 3)        // not retried
    }

    /// Log-probabilities a server got wrong cost the candidate its targets, not its text: the
    /// completion keeps its text with the problem named, and the store keeps the problem so the
    /// targets count it as malformed.
    func testMalformedLogprobsKeepTheText() throws {
        let chat = #"{"choices":[{"index":0,"message":{"content":"42"},"finish_reason":"stop","logprobs":{"content":[{"token":"4","logprob":"high"}]}},{"index":1,"message":{"content":"41"},"finish_reason":"stop","logprobs":{"content":[{"token":"41","logprob":-0.5}]}}]}"#
        let r = try OpenAIWire.parse(Array(chat.utf8), endpoint: .chat, url: "u", model: "m")
        XCTAssertEqual(r.completions.map(\.text), ["42", "41"])
        XCTAssertNil(r.completions[0].logprobs)
        XCTAssertEqual(r.completions[0].logprobsProblem, "choices[0].logprobs.content[0].logprob: expected Double")
        XCTAssertEqual(r.completions[1].logprobs, [TokenLogprob(token: "41", logprob: -0.5)])
        XCTAssertNil(r.completions[1].logprobsProblem)

        let completions = #"{"choices":[{"text":"x y","finish_reason":"stop","logprobs":{"tokens":["x"," y"],"token_logprobs":[-0.5]}}]}"#
        let c = try OpenAIWire.parse(Array(completions.utf8), endpoint: .completions, url: "u", model: "m")
        XCTAssertEqual(c.completions.first?.text, "x y")
        XCTAssertNil(c.completions.first?.logprobs)
        XCTAssertEqual(c.completions.first?.logprobsProblem, "choices[0].logprobs has 2 tokens but 1 token_logprobs")

        let stream = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"4\"},\"logprobs\":{\"content\":[{\"token\":\"4\",\"logprob\":-0.1}]}}]}\n\n"
            + "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"2\"},\"logprobs\":{\"content\":7}}]}\n\ndata: [DONE]\n\n"
        let st = try OpenAIWire.parseStream(Array(stream.utf8), url: "u", model: "m")
        XCTAssertEqual(st.completions.first?.text, "42")
        XCTAssertNil(st.completions.first?.logprobs)
        XCTAssertEqual(st.completions.first?.logprobsProblem, "stream event on line 3: choices[0].logprobs.content: expected Array<Any>")

        let stored = try StoredCandidate(r.completions[0], verdict: .kept, keepLogprobs: true)
        XCTAssertEqual(stored.text, "42")
        XCTAssertThrowsError(try stored.decodedLogprobs())
        XCTAssertEqual(String(decoding: stored.logprobs!, as: UTF8.self), "malformed: choices[0].logprobs.content[0].logprob: expected Double")
    }

    func testErrorObjectWithStatus200() async throws {
        let s = try server { _, _ in .init(body: #"{"error":{"message":"context length exceeded"}}"#) }
        do {
            _ = try await client([s.baseURL]).complete(messages: [.user("x")])
            XCTFail("expected an error")
        } catch let TeacherClientError.httpStatus(_, status, message) {
            XCTAssertEqual(status, 200)
            XCTAssertEqual(message, "context length exceeded")
        }
    }

    func testMissingAPIKeyVariable() throws {
        unsetenv("DISTILL_TEST_UNSET_KEY")
        var c = HTTPTeacherConfiguration(baseURL: "http://127.0.0.1:1", model: "m", apiKeyEnvironmentVariable: "DISTILL_TEST_UNSET_KEY")
        XCTAssertThrowsError(try HTTPTeacherClient(c)) { XCTAssertEqual($0 as? TeacherClientError, .missingAPIKey(variable: "DISTILL_TEST_UNSET_KEY")) }
        c.apiKeyEnvironmentVariable = nil
        c.baseURLs = ["localhost:8000"]
        XCTAssertThrowsError(try HTTPTeacherClient(c)) { XCTAssertTrue("\($0)".contains("localhost:8000")) }
    }

    // MARK: Retries

    func testRateLimitHonoursRetryAfter() async throws {
        let s = try server { _, i in
            i == 0 ? .init(status: 429, headers: [("Retry-After", "1")], body: #"{"error":{"message":"slow down"}}"#)
                   : .init(body: CannedOpenAI.chat(texts: ["ok"]))
        }
        let events = EventLog()
        let c = try client([s.baseURL], onEvent: { events.append($0) })
        let start = Date()
        let r = try await c.complete(messages: [.user("x")])
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertEqual(r.completions.first?.text, "ok")
        XCTAssertEqual(s.requests.count, 2)
        // The backoff alone would be ≤ 1 ms; Retry-After asks for 1 s.
        XCTAssertGreaterThanOrEqual(elapsed, 0.95)
        XCTAssertEqual(events.all, [.retrying(url: s.baseURL + "/v1/chat/completions", attempt: 1, delay: 1,
                                              error: .transientStatus(url: s.baseURL + "/v1/chat/completions", status: 429, message: "slow down"))])
        let stats = c.statistics()
        XCTAssertEqual(stats.attempts, 2)
        XCTAssertEqual(stats.retries, 1)
        XCTAssertEqual(stats.successes, 1)
    }

    func testServerErrorsRetriedWithExponentialBackoff() async throws {
        let s = try server { _, i in
            i < 2 ? .init(status: i == 0 ? 500 : 503, body: "upstream failed") : .init(body: CannedOpenAI.chat(texts: ["fine"]))
        }
        let events = EventLog()
        let c = try client([s.baseURL], configure: { $0.initialBackoff = 0.2; $0.maxBackoff = 10; $0.jitterSeed = 7 },
                           onEvent: { events.append($0) })
        let start = Date()
        let r = try await c.complete(messages: [.user("x")])
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertEqual(r.completions.first?.text, "fine")
        XCTAssertEqual(s.requests.count, 3)
        // Retry k waits 0.2 · 2^(k-1) · u, u ∈ [0.5, 1): [0.1, 0.2) then [0.2, 0.4).
        let delays = events.all.map { e -> Double in if case let .retrying(_, _, d, _) = e { return d } else { return -1 } }
        XCTAssertEqual(delays.count, 2)
        XCTAssertTrue(delays[0] >= 0.1 && delays[0] < 0.2, "\(delays)")
        XCTAssertTrue(delays[1] >= 0.2 && delays[1] < 0.4, "\(delays)")
        XCTAssertGreaterThanOrEqual(elapsed, delays[0] + delays[1] - 0.01)
        if case let .retrying(_, _, _, error) = events.all[0] {
            XCTAssertEqual(error, .transientStatus(url: s.baseURL + "/v1/chat/completions", status: 500, message: "upstream failed"))
        }
        // The same seed draws the same jitter.
        let twin = try client([s.baseURL], configure: { $0.initialBackoff = 0.2; $0.maxBackoff = 10; $0.jitterSeed = 7 })
        XCTAssertEqual([twin.backoff(retry: 1), twin.backoff(retry: 2)], delays)
    }

    func testRetriesExhausted() async throws {
        let s = try server { _, _ in .init(status: 503, body: #"{"message":"overloaded"}"#) }
        let c = try client([s.baseURL]) { $0.maxRetries = 2 }
        do {
            _ = try await c.complete(messages: [.user("x")])
            XCTFail("expected an error")
        } catch let e as TeacherClientError {
            XCTAssertEqual(e, .retriesExhausted(attempts: 3, last: .transientStatus(url: s.baseURL + "/v1/chat/completions",
                                                                                     status: 503, message: "overloaded")))
            XCTAssertTrue(e.description.contains("gave up after 3 attempts"), e.description)
        }
        XCTAssertEqual(s.requests.count, 3)
    }

    func testTimeoutIsRetriedThenReported() async throws {
        let s = try server { _, _ in .init(body: CannedOpenAI.chat(texts: ["late"]), delay: 1.5) }
        let c = try client([s.baseURL]) { $0.requestTimeout = 0.2; $0.maxRetries = 1 }
        let start = Date()
        do {
            _ = try await c.complete(messages: [.user("x")])
            XCTFail("expected an error")
        } catch let e as TeacherClientError {
            XCTAssertEqual(e, .retriesExhausted(attempts: 2, last: .timeout(url: s.baseURL + "/v1/chat/completions", seconds: 0.2)))
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 1.4)
        XCTAssertEqual(s.requests.count, 2)
    }

    func testSlowReplyWithinTimeoutSucceeds() async throws {
        let s = try server { _, _ in .init(body: CannedOpenAI.chat(texts: ["slow"]), delay: 0.3) }
        let r = try await client([s.baseURL]) { $0.requestTimeout = 3 }.complete(messages: [.user("x")])
        XCTAssertEqual(r.completions.first?.text, "slow")
    }

    func testConnectionRefusedIsRetried() async throws {
        let port = try StubHTTPServer.closedPort()
        let c = try client(["http://127.0.0.1:\(port)"]) { $0.maxRetries = 2 }
        do {
            _ = try await c.complete(messages: [.user("x")])
            XCTFail("expected an error")
        } catch let TeacherClientError.retriesExhausted(attempts, last) {
            XCTAssertEqual(attempts, 3)
            guard case .connection(let url, _) = last else { return XCTFail("\(last)") }
            XCTAssertEqual(url, "http://127.0.0.1:\(port)/v1/chat/completions")
        }
    }

    func testFailoverToTheSecondServer() async throws {
        let port = try StubHTTPServer.closedPort()
        let s = try server { _, _ in .init(body: CannedOpenAI.chat(texts: ["from b"])) }
        let c = try client(["http://127.0.0.1:\(port)", s.baseURL])
        for _ in 0..<3 {
            let r = try await c.complete(messages: [.user("x")])
            XCTAssertEqual(r.completions.first?.text, "from b")
        }
    }

    func testRetryAfterDates() {
        XCTAssertEqual(HTTPTeacherClient.parseRetryAfter("3"), 3)
        XCTAssertEqual(HTTPTeacherClient.parseRetryAfter(" 0.5 "), 0.5)
        XCTAssertNil(HTTPTeacherClient.parseRetryAfter("soon"))
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        let later = try! XCTUnwrap(HTTPTeacherClient.parseRetryAfter(f.string(from: Date().addingTimeInterval(30))))
        XCTAssertTrue(later > 28 && later <= 30, "\(later)")
        XCTAssertEqual(HTTPTeacherClient.parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT"), 0)   // past
    }

    // MARK: Concurrency and balancing

    func testInFlightBound() async throws {
        let s = try server { _, _ in .init(body: CannedOpenAI.chat(texts: ["ok"]), delay: 0.15) }
        let c = try client([s.baseURL]) { $0.maxInFlight = 3 }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<12 {
                group.addTask { _ = try await c.complete(messages: [.user("q\(i)")]) }
            }
            try await group.waitForAll()
        }
        XCTAssertEqual(s.requests.count, 12)
        XCTAssertEqual(s.maxInFlight, 3)
    }

    func testRoundRobinOverTwoServers() async throws {
        let a = try server { _, _ in .init(body: CannedOpenAI.chat(texts: ["a"])) }
        let b = try server { _, _ in .init(body: CannedOpenAI.chat(texts: ["b"])) }
        let c = try client([a.baseURL, b.baseURL])
        var texts: [String] = []
        for _ in 0..<6 { texts.append(try await c.complete(messages: [.user("x")]).completions[0].text) }
        XCTAssertEqual(texts, ["a", "b", "a", "b", "a", "b"])
        XCTAssertEqual(a.requests.count, 3)
        XCTAssertEqual(b.requests.count, 3)
        XCTAssertEqual(c.statistics().attemptsPerURL, [a.baseURL: 3, b.baseURL: 3])
    }

    func testLeastInFlightAvoidsTheBusyServer() async throws {
        let a = try server { _, _ in .init(body: CannedOpenAI.chat(texts: ["a"]), delay: 0.8) }
        let b = try server { _, _ in .init(body: CannedOpenAI.chat(texts: ["b"])) }
        let c = try client([a.baseURL, b.baseURL]) { $0.balancing = .leastInFlight }
        let slow = Task { try await c.complete(messages: [.user("long")]) }
        // Wait until the slow request sits on a.
        for _ in 0..<100 where a.requests.isEmpty { try await Task.sleep(nanoseconds: 10_000_000) }
        var texts: [String] = []
        for _ in 0..<4 { texts.append(try await c.complete(messages: [.user("x")]).completions[0].text) }
        XCTAssertEqual(texts, ["b", "b", "b", "b"])
        let slowText = try await slow.value.completions[0].text
        XCTAssertEqual(slowText, "a")
    }

    func testSamplesSplitOverRequests() async throws {
        let s = try server { req, i in .init(body: CannedOpenAI.chat(texts: ["s\(i)"])) }
        let c = try client([s.baseURL]) { $0.samplesPerRequest = 1 }
        let r = try await c.complete(messages: [.user("x")], sampling: TeacherSampling(n: 3, seed: 5))
        XCTAssertEqual(r.completions.map(\.index), [0, 1, 2])
        XCTAssertEqual(Set(r.completions.map(\.text)), ["s0", "s1", "s2"])
        XCTAssertEqual(s.requests.map { $0.json["n"] as? Int }, [1, 1, 1])
        XCTAssertEqual(Set(s.requests.compactMap { $0.json["seed"] as? Int }), [5, 6, 7])
        XCTAssertEqual(r.usage?.completionTokens, 6)
    }

    func testFewerChoicesThanAskedArePassedOn() async throws {
        // A server that ignores n (llama.cpp's): the one choice comes back; the caller asks for the rest.
        let s = try server { _, _ in .init(body: CannedOpenAI.chat(texts: ["only one"])) }
        let r = try await client([s.baseURL]).complete(messages: [.user("x")], sampling: TeacherSampling(n: 4))
        XCTAssertEqual(r.completions.map(\.text), ["only one"])
        // None, or more than asked, is a broken reply.
        let none = try server { _, _ in .init(body: CannedOpenAI.chat(texts: [])) }
        let more = try server { _, _ in .init(body: CannedOpenAI.chat(texts: ["a", "b", "c"])) }
        for (url, n) in [(none.baseURL, 0), (more.baseURL, 3)] {
            do {
                _ = try await client([url]).complete(messages: [.user("x")], sampling: TeacherSampling(n: 2))
                XCTFail("expected an error")
            } catch let TeacherClientError.malformedResponse(_, reason, _) {
                XCTAssertTrue(reason.contains("asked for 2 choices, got \(n)"), reason)
            }
        }
    }

    func testInvalidSamplingIsRefusedBeforeSending() async throws {
        let s = try server { _, _ in .init(body: CannedOpenAI.chat(texts: ["x"])) }
        do {
            _ = try await client([s.baseURL]).complete(messages: [.user("x")], sampling: TeacherSampling(topP: 0))
            XCTFail("expected an error")
        } catch let e as TeacherClientError {
            XCTAssertEqual(e, .invalidRequest("top_p must be in (0, 1], got 0.0"))
        }
        XCTAssertTrue(s.requests.isEmpty)
    }
}

final class EventLog: @unchecked Sendable {
    private var events: [TeacherClientEvent] = []
    private let lock = NSLock()
    func append(_ e: TeacherClientEvent) { lock.lock(); events.append(e); lock.unlock() }
    var all: [TeacherClientEvent] { lock.lock(); defer { lock.unlock() }; return events }
}

extension ClientHTTPTeacherTests {
    func testCancellationStopsWaitingAndInFlightRequests() async throws {
        let s = try server { _, _ in .init(body: CannedOpenAI.chat(texts: ["late"]), delay: 1.0) }
        let c = try client([s.baseURL]) { $0.maxInFlight = 1 }
        let first = Task { try await c.complete(messages: [.user("1")]) }
        for _ in 0..<100 where s.requests.isEmpty { try await Task.sleep(nanoseconds: 10_000_000) }
        let second = Task { try await c.complete(messages: [.user("2")]) }   // waits for the permit
        try await Task.sleep(nanoseconds: 50_000_000)
        let start = Date()
        second.cancel()
        first.cancel()
        for task in [second, first] {
            do {
                _ = try await task.value
                XCTFail("expected cancellation")
            } catch {
                XCTAssertTrue(error is CancellationError, "\(error)")
            }
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 0.5)
        XCTAssertEqual(s.requests.count, 1)
    }

    func testConnectionErrorMessage() async throws {
        let port = try StubHTTPServer.closedPort()
        do {
            _ = try await client(["http://127.0.0.1:\(port)"]) { $0.maxRetries = 0 }.complete(messages: [.user("x")])
            XCTFail("expected an error")
        } catch let e as TeacherClientError {
            XCTAssertTrue(e.description.contains("gave up after 1 attempt; last error: http://127.0.0.1:\(port)/v1/chat/completions: connection failed"),
                          e.description)
            guard case .retriesExhausted(1, .connection) = e else { return XCTFail("\(e)") }
        }
    }
}
