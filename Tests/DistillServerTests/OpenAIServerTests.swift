import DistillModels
import DistillNN
import DistillTensor
import Foundation
import Hummingbird
import HummingbirdTesting
import XCTest
@testable import DistillServer

final class OpenAIServerTests: XCTestCase {
    static let model = try! tinyModel()
    var model: PretrainedModel { Self.model }
    var tok: Tokenizer { model.tokenizer! }

    func makeServer(maxBatch: Int = 16, window: Double = 0.005) throws -> OpenAIServer {
        try OpenAIServer(model: model, modelName: "tiny", maxBatch: maxBatch, batchWindow: window)
    }

    /// The prompt ids the chat endpoint builds for one user message.
    func chatIds(_ text: String) throws -> [Int] {
        tok.encode(try model.applyChatTemplate([ChatMessage(role: "user", content: text)]), addSpecialTokens: false)
    }

    /// What the Generator gives directly.
    func direct(_ ids: [Int], maxTokens: Int, sampling: SamplingParameters = .init(temperature: 0), n: Int = 1,
                stop: [String] = [], top: Int = 0) throws -> [GeneratedSequence] {
        try Generator(model: model.lm).generate(
            prompts: [ids], options: GenerationOptions(maxTokens: maxTokens, sampling: sampling, n: n, stopTokenIds: Set(model.eosTokenIds),
                                                       stopStrings: stop, topLogprobs: top),
            tokenizer: self.tok)
    }

    func testModelsList() async throws {
        let server = try makeServer()
        try await withRouter(server) { client in
            let r = try await client.get("/v1/models")
            XCTAssertEqual(r.status, 200)
            XCTAssertEqual(r.json["object"] as? String, "list")
            let data = try XCTUnwrap(r.json["data"] as? [[String: Any]])
            XCTAssertEqual(data.count, 1)
            XCTAssertEqual(data[0]["id"] as? String, "tiny")
            XCTAssertEqual(data[0]["object"] as? String, "model")
            XCTAssertEqual(data[0]["max_model_len"] as? Int, 96)
            let one = try await client.get("/v1/models/tiny"), other = try await client.get("/v1/models/other")
            let health = try await client.get("/health")
            XCTAssertEqual(one.json["id"] as? String, "tiny")
            XCTAssertEqual(other.status, 404)
            XCTAssertEqual(health.status, 200)
        }
        XCTAssertEqual(OpenAIServer.defaultName("/m/SmolLM2-135M-Instruct.Q4_1.gguf"), "SmolLM2-135M-Instruct.Q4_1")
        XCTAssertEqual(OpenAIServer.defaultName("/m/qwen2-0.5b/"), "qwen2-0.5b")
    }

    /// Greedy chat: the text, finish reason and usage equal what the Generator gives for the
    /// templated prompt.
    func testChatGreedyEqualsGenerator() async throws {
        let server = try makeServer()
        let ids = try chatIds("hello there")
        let want = try direct(ids, maxTokens: 12)[0]
        try await withRouter(server) { client in
            let r = try await client.post("/v1/chat/completions", [
                "model": "/models/tiny-qwen2", "messages": [["role": "user", "content": "hello there"]], "temperature": 0, "max_tokens": 12,
            ])
            XCTAssertEqual(r.status, 200, r.text)
            XCTAssertEqual(r.json["object"] as? String, "chat.completion")
            XCTAssertEqual(r.json["model"] as? String, "tiny")
            XCTAssertTrue((r.json["id"] as? String ?? "").hasPrefix("chatcmpl-"))
            XCTAssertGreaterThan(r.json["created"] as? Int ?? 0, 1_600_000_000)
            XCTAssertEqual(r.choices.count, 1)
            let message = try XCTUnwrap(r.choices[0]["message"] as? [String: Any])
            XCTAssertEqual(message["role"] as? String, "assistant")
            XCTAssertEqual(message["content"] as? String, self.tok.decode(want.tokens, skipSpecialTokens: true))
            XCTAssertEqual(r.choices[0]["finish_reason"] as? String, want.finishReason == .length ? "length" : "stop")
            XCTAssertTrue(r.choices[0]["logprobs"] is NSNull)
            let usage = try XCTUnwrap(r.json["usage"] as? [String: Int])
            XCTAssertEqual(usage["prompt_tokens"], ids.count)
            XCTAssertEqual(usage["completion_tokens"], want.tokens.count)
            XCTAssertEqual(usage["total_tokens"], ids.count + want.tokens.count)
        }
    }

    /// n = 2 with a seed: the two samples the Generator draws with that seed, the same on a
    /// second request; max_completion_tokens counts as max_tokens.
    func testNSamplesWithSeed() async throws {
        let server = try makeServer()
        let ids = tok.encode("the cat sat")
        let want = try direct(ids, maxTokens: 10, sampling: .init(temperature: 1, seed: 42), n: 2)
        try await withRouter(server) { client in
            let body: [String: Any] = ["prompt": "the cat sat", "n": 2, "seed": 42, "temperature": 1.0, "max_completion_tokens": 10]
            let a = try await client.post("/v1/completions", body)
            XCTAssertEqual(a.status, 200, a.text)
            XCTAssertEqual(a.json["object"] as? String, "text_completion")
            XCTAssertEqual(a.choices.map { $0["index"] as? Int }, [0, 1])
            XCTAssertEqual(a.choices.map { $0["text"] as? String }, want.map { self.tok.decode($0.tokens, skipSpecialTokens: true) })
            XCTAssertNotEqual(want[0].tokens, want[1].tokens, "two samples should differ")
            let b = try await client.post("/v1/completions", body)
            XCTAssertEqual(b.choices.map { $0["text"] as? String }, a.choices.map { $0["text"] as? String })
            XCTAssertEqual((a.json["usage"] as? [String: Int])?["completion_tokens"], want[0].tokens.count + want[1].tokens.count)
            XCTAssertEqual((a.json["usage"] as? [String: Int])?["prompt_tokens"], ids.count)
        }
    }

    /// Several prompts in one completions request: choices prompt by prompt, n each; each prompt's
    /// samples equal the Generator's for that prompt list.
    func testCompletionPromptList() async throws {
        let server = try makeServer()
        let prompts = ["one two", "a much longer prompt than the first"]
        let ids = prompts.map { tok.encode($0) }
        let want = try Generator(model: model.lm).generate(
            prompts: ids, options: GenerationOptions(maxTokens: 6, sampling: .init(temperature: 0.8, seed: 3), n: 2,
                                                     stopTokenIds: Set(model.eosTokenIds)))
        try await withRouter(server) { client in
            let r = try await client.post("/v1/completions", ["prompt": prompts, "n": 2, "seed": 3, "temperature": 0.8, "max_tokens": 6])
            XCTAssertEqual(r.status, 200, r.text)
            XCTAssertEqual(r.choices.count, 4)
            XCTAssertEqual(r.choices.map { $0["text"] as? String }, want.map { self.tok.decode($0.tokens, skipSpecialTokens: true) })
            XCTAssertEqual((r.json["usage"] as? [String: Int])?["prompt_tokens"], ids[0].count + ids[1].count)
        }
    }

    /// A stop string cuts the text before it (finish reason "stop"), streamed or not.
    func testStopStrings() async throws {
        let server = try makeServer()
        let ids = tok.encode("stop here")
        let full = tok.decode(try direct(ids, maxTokens: 20)[0].tokens, skipSpecialTokens: true)
        let scalars = Array(full.unicodeScalars)
        guard scalars.count >= 6 else { throw XCTSkip("greedy text too short: \(full.debugDescription)") }
        // A stop string from the middle of the greedy text.
        var stop = String.UnicodeScalarView()
        stop.append(contentsOf: scalars[3..<5])
        let stopString = String(stop)
        let expected = String(full[..<full.range(of: stopString)!.lowerBound])
        let want = try direct(ids, maxTokens: 20, stop: [stopString])[0]
        XCTAssertEqual(want.finishReason, .stopString)
        try await withRouter(server) { client in
            let r = try await client.post("/v1/completions", ["prompt": "stop here", "temperature": 0, "max_tokens": 20,
                                                              "stop": [stopString, "never-appears"]])
            XCTAssertEqual(r.choices.first?["text"] as? String, expected, r.text)
            XCTAssertEqual(r.choices.first?["finish_reason"] as? String, "stop")
            XCTAssertEqual((r.json["usage"] as? [String: Int])?["completion_tokens"], want.tokens.count)
            let s = try await client.post("/v1/completions", ["prompt": "stop here", "temperature": 0, "max_tokens": 20,
                                                              "stop": stopString, "stream": true])
            let events = s.events
            XCTAssertEqual(events.compactMap { ($0["choices"] as? [[String: Any]])?.first?["text"] as? String }.joined(), expected)
            XCTAssertEqual((events.last?["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String, "stop")
        }
    }

    /// Chat log-probabilities: one entry per token with the Generator's values, k alternatives
    /// each, bytes of the token.
    func testChatLogprobs() async throws {
        let server = try makeServer()
        let ids = try chatIds("numbers")
        let want = try direct(ids, maxTokens: 8, top: 3)[0]
        try await withRouter(server) { client in
            let r = try await client.post("/v1/chat/completions", [
                "messages": [["role": "user", "content": "numbers"]], "temperature": 0, "max_tokens": 8,
                "logprobs": true, "top_logprobs": 3,
            ])
            XCTAssertEqual(r.status, 200, r.text)
            let content = try XCTUnwrap((r.choices[0]["logprobs"] as? [String: Any])?["content"] as? [[String: Any]])
            XCTAssertEqual(content.count, want.tokens.count)
            for (i, entry) in content.enumerated() {
                XCTAssertEqual(entry["token"] as? String, self.tok.decode([want.tokens[i]]))
                XCTAssertEqual(Float(entry["logprob"] as? Double ?? 0), want.logprobs[i])
                XCTAssertEqual(entry["bytes"] as? [Int], self.tok.decodeBytes([want.tokens[i]]).map(Int.init))
                let top = try XCTUnwrap(entry["top_logprobs"] as? [[String: Any]])
                XCTAssertEqual(top.count, 3)
                XCTAssertEqual(top.map { $0["token"] as? String }, want.topLogprobs[i].map { self.tok.decode([$0.token]) })
                XCTAssertEqual(top.map { Float($0["logprob"] as? Double ?? 0) }, want.topLogprobs[i].map(\.logprob))
                // Greedy: the chosen token is the most likely one.
                XCTAssertEqual(Float(top[0]["logprob"] as? Double ?? 0), want.logprobs[i])
            }
            // logprobs without top_logprobs: entries with no alternatives.
            let plain = try await client.post("/v1/chat/completions", [
                "messages": [["role": "user", "content": "numbers"]], "temperature": 0, "max_tokens": 3, "logprobs": true,
            ])
            let c = try XCTUnwrap((plain.choices[0]["logprobs"] as? [String: Any])?["content"] as? [[String: Any]])
            XCTAssertEqual(c.count, 3)
            XCTAssertEqual((c[0]["top_logprobs"] as? [Any])?.count, 0)
        }
    }

    /// Legacy completions' log-probabilities: tokens, token_logprobs, top_logprobs (dicts of k),
    /// text_offset (where each token starts in the completion).
    func testCompletionLogprobs() async throws {
        let server = try makeServer()
        let ids = tok.encode("abc")
        let want = try direct(ids, maxTokens: 7, top: 2)[0]
        try await withRouter(server) { client in
            let r = try await client.post("/v1/completions", ["prompt": "abc", "temperature": 0, "max_tokens": 7, "logprobs": 2])
            XCTAssertEqual(r.status, 200, r.text)
            let lp = try XCTUnwrap(r.choices[0]["logprobs"] as? [String: Any])
            let tokens = try XCTUnwrap(lp["tokens"] as? [String])
            XCTAssertEqual(tokens, want.tokens.map { self.tok.decode([$0]) })
            XCTAssertEqual((lp["token_logprobs"] as? [Double])?.map(Float.init), want.logprobs)
            let tops = try XCTUnwrap(lp["top_logprobs"] as? [[String: Double]])
            XCTAssertEqual(tops.count, want.tokens.count)
            for (i, top) in tops.enumerated() {
                XCTAssertLessThanOrEqual(top.count, 2)
                XCTAssertEqual(top[tokens[i]].map(Float.init), want.logprobs[i])
            }
            let offsets = try XCTUnwrap(lp["text_offset"] as? [Int])
            let expected = want.tokens.indices.map { self.tok.decode(Array(want.tokens[..<$0]), skipSpecialTokens: true).unicodeScalars.count }
            XCTAssertEqual(offsets, expected)
            XCTAssertEqual(offsets.first, 0)
        }
    }

    /// Streaming: chunks concatenate to the non-streamed text; the first chat chunk carries the
    /// role; the last names the finish reason; usage on request; `data: [DONE]` at the end.
    func testStreamingEqualsNonStreamed() async throws {
        let server = try makeServer()
        try await withRouter(server) { client in
            let body: [String: Any] = ["messages": [["role": "user", "content": "tell me"]], "temperature": 0.7, "seed": 9,
                                       "max_tokens": 15, "n": 2]
            let whole = try await client.post("/v1/chat/completions", body)
            var streamed = body
            streamed["stream"] = true
            streamed["stream_options"] = ["include_usage": true]
            let s = try await client.post("/v1/chat/completions", streamed)
            XCTAssertEqual(s.status, 200)
            XCTAssertTrue(s.text.hasSuffix("data: [DONE]\n\n"))
            let events = s.events
            XCTAssertTrue(events.allSatisfy { $0["object"] as? String == "chat.completion.chunk" })
            XCTAssertEqual(Set(events.compactMap { $0["id"] as? String }).count, 1)
            var texts = ["", ""], finish: [String?] = [nil, nil], roles = [0, 0]
            for e in events {
                for c in e["choices"] as? [[String: Any]] ?? [] {
                    let i = c["index"] as! Int
                    let delta = c["delta"] as! [String: Any]
                    if delta["role"] as? String == "assistant" { roles[i] += 1 }
                    texts[i] += delta["content"] as? String ?? ""
                    if let f = c["finish_reason"] as? String { finish[i] = f }
                }
            }
            XCTAssertEqual(roles, [1, 1])
            let messages = whole.choices.map { ($0["message"] as! [String: Any])["content"] as! String }
            XCTAssertEqual(texts, messages)
            XCTAssertEqual(finish, whole.choices.map { $0["finish_reason"] as? String })
            let usage = try XCTUnwrap(events.last?["usage"] as? [String: Int])
            XCTAssertEqual(usage, whole.json["usage"] as? [String: Int])

            // Completions stream the same text as without streaming, log-probabilities included.
            let cbody: [String: Any] = ["prompt": "once upon", "temperature": 0, "max_tokens": 10, "logprobs": 1]
            let c = try await client.post("/v1/completions", cbody)
            var cs = cbody
            cs["stream"] = true
            let cevents = try await client.post("/v1/completions", cs).events
            let choices = cevents.compactMap { ($0["choices"] as? [[String: Any]])?.first }
            XCTAssertEqual(choices.compactMap { $0["text"] as? String }.joined(), c.choices[0]["text"] as? String)
            let streamedLogprobs = choices.compactMap { ($0["logprobs"] as? [String: Any])?["token_logprobs"] as? [Double] }.flatMap { $0 }
            XCTAssertEqual(streamedLogprobs, (c.choices[0]["logprobs"] as? [String: Any])?["token_logprobs"] as? [Double])
            let streamedOffsets = choices.compactMap { ($0["logprobs"] as? [String: Any])?["text_offset"] as? [Int] }.flatMap { $0 }
            XCTAssertEqual(streamedOffsets, (c.choices[0]["logprobs"] as? [String: Any])?["text_offset"] as? [Int])
        }
    }

    func testBadRequestsAreOpenAIErrors() async throws {
        let server = try makeServer()
        try await withRouter(server) { client in
            func check(_ r: Reply, status: Int = 400, param: String?, contains: String, file: StaticString = #filePath, line: UInt = #line) {
                XCTAssertEqual(r.status, status, r.text, file: file, line: line)
                let e = r.error
                XCTAssertNotNil(e, r.text, file: file, line: line)
                XCTAssertEqual(e?["type"] as? String, status == 404 && param == nil ? "not_found_error" : "invalid_request_error", file: file, line: line)
                XCTAssertEqual(e?["param"] as? String, param, file: file, line: line)
                XCTAssertTrue((e?["message"] as? String ?? "").contains(contains), r.text, file: file, line: line)
                XCTAssertTrue(e?.keys.contains("code") ?? false, file: file, line: line)
            }
            let chat = "/v1/chat/completions", msgs = [["role": "user", "content": "hi"]]
            check(try await client.post(chat, raw: "{\"messages\": ["), param: nil, contains: "not valid JSON")
            check(try await client.post(chat, raw: "[1, 2]"), param: nil, contains: "JSON object")
            check(try await client.post(chat, raw: ""), param: nil, contains: "empty")
            check(try await client.post(chat, ["model": "tiny"]), param: "messages", contains: "required")
            check(try await client.post(chat, ["messages": []]), param: "messages", contains: "empty")
            check(try await client.post(chat, ["messages": "hi"]), param: "messages", contains: "array")
            check(try await client.post(chat, ["messages": [["content": "x"]]]), param: "messages[0].role", contains: "required")
            check(try await client.post(chat, ["messages": msgs, "temperature": "hot"]), param: "temperature", contains: "number")
            check(try await client.post(chat, ["messages": msgs, "temperature": -1]), param: "temperature", contains: "at least 0")
            check(try await client.post(chat, ["messages": msgs, "n": 0]), param: "n", contains: "at least 1")
            check(try await client.post(chat, ["messages": msgs, "n": 1.5]), param: "n", contains: "integer")
            check(try await client.post(chat, ["messages": msgs, "top_p": 0]), param: "top_p", contains: "(0, 1]")
            check(try await client.post(chat, ["messages": msgs, "max_tokens": 0]), param: "max_tokens", contains: "at least 1")
            check(try await client.post(chat, ["messages": msgs, "stop": 3]), param: "stop", contains: "string")
            check(try await client.post(chat, ["messages": msgs, "stream": "yes"]), param: "stream", contains: "boolean")
            check(try await client.post(chat, ["messages": msgs, "logprobs": true, "top_logprobs": 50]), param: "top_logprobs", contains: "[0, 20]")
            check(try await client.post(chat, ["messages": msgs, "max_tokens": 500]), param: "messages", contains: "maximum context length is 96")
            check(try await client.post(chat, ["messages": [["role": "user", "content": String(repeating: "long text ", count: 80)]]]),
                  param: "messages", contains: "maximum context length")
            check(try await client.post(chat, ["messages": msgs, "model": "gpt-4"]), status: 404, param: "model", contains: "gpt-4")
            check(try await client.post("/v1/completions", ["max_tokens": 3]), param: "prompt", contains: "required")
            check(try await client.post("/v1/completions", ["prompt": 7]), param: "prompt", contains: "must be")
            check(try await client.post("/v1/completions", ["prompt": [1, 100_000]]), param: "prompt", contains: "100000")
            check(try await client.post("/v1/completions", ["prompt": "x", "logprobs": true]), param: "logprobs", contains: "integer")
            check(try await client.post("/v1/completions", ["prompt": "x", "echo": true]), param: "echo", contains: "not supported")
            check(try await client.post("/v1/nothing", ["prompt": "x"]), status: 404, param: nil, contains: "/v1/nothing")
            check(try await client.get("/v2/models"), status: 404, param: nil, contains: "no route")
        }
    }

    /// Concurrent greedy requests are generated in fewer batches than requests, each with the
    /// text it gets alone.
    func testConcurrentRequestsShareBatches() async throws {
        let server = try makeServer(window: 0.05)
        let prompts = ["alpha", "beta gamma", "a somewhat longer prompt here", "x", "delta epsilon zeta", "eta"]
        let alone = try prompts.map { tok.decode(try direct(try chatIds($0), maxTokens: 10)[0].tokens, skipSpecialTokens: true) }
        let got = try await withRouter(server) { client in
            try await withThrowingTaskGroup(of: (Int, String).self) { group in
                for (i, p) in prompts.enumerated() {
                    group.addTask {
                        let r = try await client.post("/v1/chat/completions", ["messages": [["role": "user", "content": p]],
                                                                               "temperature": 0, "max_tokens": 10])
                        return (i, (r.choices.first?["message"] as? [String: Any])?["content"] as? String ?? "error: \(r.text)")
                    }
                }
                var out = [String](repeating: "", count: prompts.count)
                for try await (i, text) in group { out[i] = text }
                return out
            }
        }
        XCTAssertEqual(got, alone)
        XCTAssertLessThan(server.batchCount, prompts.count, "\(server.batchCount) batches for \(prompts.count) requests")
        XCTAssertEqual(server.sequenceCount, prompts.count)
    }

    /// Sampled requests batched together keep their own seeds: the same texts as alone.
    func testBatchedSampledRequestsKeepTheirSeeds() async throws {
        let server = try makeServer(window: 0.05)
        let seeds = [1, 2, 3, 4]
        let alone = try seeds.map { seed in
            try direct(try chatIds("story"), maxTokens: 8, sampling: .init(temperature: 1, seed: UInt64(seed)), n: 2)
                .map { tok.decode($0.tokens, skipSpecialTokens: true) }
        }
        let got = try await withRouter(server) { client in
            try await withThrowingTaskGroup(of: (Int, [String]).self) { group in
                for (i, seed) in seeds.enumerated() {
                    group.addTask {
                        let r = try await client.post("/v1/chat/completions", ["messages": [["role": "user", "content": "story"]],
                                                                               "seed": seed, "n": 2, "max_tokens": 8])
                        return (i, r.choices.map { ($0["message"] as? [String: Any])?["content"] as? String ?? "" })
                    }
                }
                var out = [[String]](repeating: [], count: seeds.count)
                for try await (i, texts) in group { out[i] = texts }
                return out
            }
        }
        XCTAssertEqual(got, alone)
        XCTAssertLessThan(server.batchCount, seeds.count)
    }

    /// `start()` on port 0 listens on loopback and reports the port; `shutdown()` closes it.
    func testStartOnFreePortAndShutdown() async throws {
        let server = try makeServer()
        let running = try await server.start()
        XCTAssertGreaterThan(running.port, 0)
        XCTAssertEqual(running.baseURL, "http://127.0.0.1:\(running.port)")
        let client = TestClient(host: "127.0.0.1", port: running.port)
        client.connect()
        let body = #"{"prompt": "hi", "max_tokens": 4, "temperature": 0}"#
        let r = try await client.execute(.init("/v1/completions", method: .post, headers: [.contentType: "application/json"],
                                               body: ByteBuffer(string: body)))
        XCTAssertEqual(r.status, .ok)
        let reply = Reply(status: 200, text: String(buffer: r.body ?? ByteBuffer()))
        XCTAssertEqual(reply.choices.count, 1)
        try await client.shutdown()
        await running.shutdown()
        // The port is free again: a second server can take it.
        let again = try await server.start(port: running.port)
        XCTAssertEqual(again.port, running.port)
        await again.shutdown()
    }

    /// The batched Generator API: items with different options in one batch give what each
    /// gives alone.
    func testGeneratorItemsWithOwnOptions() throws {
        let g = Generator(model: model.lm)
        let items = [
            GenerationItem(prompt: [5, 6, 7], options: GenerationOptions(maxTokens: 4, sampling: .init(temperature: 0), topLogprobs: 2)),
            GenerationItem(prompt: [9], options: GenerationOptions(maxTokens: 7, sampling: .init(temperature: 1.2, seed: 11), n: 3)),
            GenerationItem(prompt: [1, 2], options: GenerationOptions(maxTokens: 0)),
            GenerationItem(prompt: [3, 3, 3, 3, 3], options: GenerationOptions(maxTokens: 2, sampling: .init(temperature: 0.5, topK: 5, seed: 2), n: 2)),
        ]
        var streamed: [Int: [Int]] = [:]
        let batched = try g.generate(items: items, onToken: { row, t in streamed[row, default: []].append(t.token) })
        XCTAssertEqual(batched.map(\.prompt), [0, 1, 1, 1, 2, 3, 3])
        XCTAssertEqual(batched.map(\.sample), [0, 0, 1, 2, 0, 0, 1])
        var row = 0
        for item in items {
            let alone = try g.generate(items: [item])
            for s in alone {
                XCTAssertEqual(batched[row].tokens, s.tokens, "row \(row)")
                XCTAssertEqual(batched[row].finishReason, s.finishReason)
                XCTAssertEqual(batched[row].tokens.count, min(item.options.maxTokens, batched[row].tokens.count))
                for (a, b) in zip(batched[row].logprobs, s.logprobs) { XCTAssertEqual(a, b, accuracy: 1e-4) }
                XCTAssertEqual(streamed[row] ?? [], s.tokens)
                row += 1
            }
        }
        XCTAssertEqual(batched[4].tokens, [])
        XCTAssertEqual(batched[0].topLogprobs.count, 4)
        // Cancelling a row stops it.
        let cancelled = try g.generate(items: [items[1]], isCancelled: { $0 == 1 })
        XCTAssertEqual(cancelled[1].tokens, [])
        XCTAssertEqual(cancelled[0].tokens.count, 7)
    }

    /// Streamed text holds back what might begin a stop string and cuts before the first one.
    func testChoiceTextHoldsBackStopPrefixes() throws {
        var text = ChoiceText(tokenizer: tok, stops: ["END", "zz"])
        var out: [String] = []
        for piece in ["a", "E", "N", "x", "E", "N", "D", "q"] {
            let ids = tok.encode(piece, addSpecialTokens: false)
            out.append(ids.map { text.add($0) }.joined())
        }
        XCTAssertEqual(out, ["a", "", "", "ENx", "", "", "", ""])
        XCTAssertTrue(text.stopped)
        XCTAssertEqual(text.finish(), "")
        // No stop: what was held back comes out at the end.
        var open = ChoiceText(tokenizer: tok, stops: ["END"])
        let held = tok.encode("aEN", addSpecialTokens: false).map { open.add($0) }.joined()
        XCTAssertEqual(held + open.finish(), "aEN")
        XCTAssertEqual(ChoiceText.finalText(tok.encode("aENxENDq", addSpecialTokens: false), tokenizer: tok, stops: ["END"]), "aENx")
    }

    /// A job whose client went away stops generating. (The limit is far more tokens than the
    /// generator makes while the client reacts to its second one: the tiny model decodes 80
    /// tokens in a few milliseconds.)
    func testCancelledJobStops() async throws {
        let server = try makeServer()
        let limit = 4000
        let (events, flag) = server.scheduler.submit([GenerationItem(prompt: [5, 6], options: GenerationOptions(maxTokens: limit, sampling: .init(temperature: 0)))])
        var tokens = 0
        for await event in events {
            if case .token = event { tokens += 1; if tokens == 2 { flag.set() } }
            if case .finished(let seqs) = event { XCTAssertLessThan(seqs[0].tokens.count, limit) }
        }
        // The same job left alone goes on (so the cut above was the cancellation's).
        let (all, _) = server.scheduler.submit([GenerationItem(prompt: [5, 6], options: GenerationOptions(maxTokens: limit, sampling: .init(temperature: 0)))])
        var uncancelled = 0
        for await event in all { if case .token = event { uncancelled += 1 } }
        XCTAssertLessThan(tokens, uncancelled)
    }

    /// SmolLM2 (when present): a greedy chat reply equals `PretrainedModel.generate`'s.
    func testSmolLM2Chat() async throws {
        let m = try PretrainedModel.load(try smolLM2Path())
        let server = try OpenAIServer(model: m)
        XCTAssertEqual(server.modelName, "SmolLM2-135M-Instruct.Q4_1")
        let want = try m.generate(TextGenerationRequest(prompt: "What is the capital of France?", chat: true,
                                                        options: GenerationOptions(maxTokens: 20, sampling: .init(temperature: 0))))[0]
        try await withRouter(server) { client in
            let r = try await client.post("/v1/chat/completions", [
                "model": "SmolLM2-135M-Instruct.Q4_1", "messages": [["role": "user", "content": "What is the capital of France?"]],
                "temperature": 0, "max_tokens": 20,
            ])
            XCTAssertEqual(r.status, 200, r.text)
            XCTAssertEqual((r.choices.first?["message"] as? [String: Any])?["content"] as? String, want.text)
            XCTAssertTrue(want.text.contains("Paris"), want.text)
        }
    }
}
