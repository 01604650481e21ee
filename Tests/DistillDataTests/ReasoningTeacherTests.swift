import Foundation
import XCTest
@testable import DistillData

/// Replies in DeepSeek-R1's API shape (written from DeepSeek's API documentation: the chain of
/// thought in `message.reasoning_content`, the answer in `message.content`, no think tags), vLLM's
/// newer `reasoning` field, streamed deltas, and servers that ignore `n`.
final class ReasoningTeacherTests: XCTestCase {
    static let url = "http://127.0.0.1:1/v1/chat/completions"

    func parse(_ json: String) throws -> TeacherResponse {
        try OpenAIWire.parse(Array(json.utf8), endpoint: .chat, url: Self.url, model: "m")
    }

    // MARK: Whole replies

    func testDeepSeekReasoningContent() throws {
        let r = try parse("""
            {"id":"a","object":"chat.completion","model":"deepseek-reasoner","choices":[{"index":0,"message":{"role":"assistant",
            "content":"The answer is 5.\\n\\n#### 5","reasoning_content":"2 plus 3 makes 5."},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":12,"completion_tokens":20,"total_tokens":32}}
            """)
        XCTAssertEqual(r.completions[0].reasoning, "2 plus 3 makes 5.")
        XCTAssertEqual(r.completions[0].text, "The answer is 5.\n\n#### 5")
        // Rebuilt in the template's full form, which the template check accepts.
        let full = TraceTemplate.default.completion(text: r.completions[0].text, reasoning: r.completions[0].reasoning)
        XCTAssertEqual(full, "<think>\n2 plus 3 makes 5.\n</think>\n\nThe answer is 5.\n\n#### 5")
        XCTAssertEqual(TraceTemplate.default.violations(full), [])
    }

    func testVLLMReasoningField() throws {
        let r = try parse("""
            {"model":"r1","choices":[{"index":0,"message":{"role":"assistant","content":"#### 7","reasoning":"3 + 4 = 7"},"finish_reason":"stop"}]}
            """)
        XCTAssertEqual(r.completions[0].reasoning, "3 + 4 = 7")
    }

    func testReasoningWithoutAnswerAndEmptyContent() throws {
        // A reasoning field with no content (null, or a generation cut inside the reasoning).
        let r = try parse("""
            {"model":"r1","choices":[{"index":0,"message":{"role":"assistant","content":null,"reasoning_content":"thinking…"},"finish_reason":"length"},
            {"index":1,"message":{"role":"assistant","content":"","reasoning_content":""},"finish_reason":"stop"}]}
            """)
        let t = TraceTemplate.default
        let first = t.completion(text: r.completions[0].text, reasoning: r.completions[0].reasoning)
        XCTAssertEqual(t.violations(first), [.emptyAnswer])
        let second = t.completion(text: r.completions[1].text, reasoning: r.completions[1].reasoning)
        XCTAssertEqual(second, "")
        XCTAssertEqual(t.violations(second), [.missingOpenTag, .unclosed])
    }

    func testThinkBlockOpenedInPrompt() {
        // DeepSeek-R1-Distill templates end the generation prompt with "<think>\n".
        let t = TraceTemplate(openTagInPrompt: true)
        XCTAssertTrue(t.promptOpensThinkBlock("<｜User｜>2+3?<｜Assistant｜><think>\n"))
        XCTAssertFalse(TraceTemplate.default.promptOpensThinkBlock("<|im_start|>assistant\n"))
        let full = t.completion(text: "Adding gives 5.\n</think>\n\n#### 5", reasoning: nil)
        XCTAssertEqual(full, "<think>\nAdding gives 5.\n</think>\n\n#### 5")
        XCTAssertEqual(t.completionForm.violations(full), [])
        // A completion that opens the block again is left as it is.
        XCTAssertEqual(t.completion(text: "<think>\nx\n</think>\n\n#### 1", reasoning: nil), "<think>\nx\n</think>\n\n#### 1")
        // Without the closing tag it stays unclosed.
        XCTAssertEqual(t.completionForm.violations(t.completion(text: "Adding…", reasoning: nil)), [.unclosed])
    }

    // MARK: Streamed replies

    func testStreamedReasoningDeltas() throws {
        let sse = """
            data: {"id":"c","model":"deepseek-reasoner","choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":""},"finish_reason":null}]}

            data: {"id":"c","model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"2 plus 3"},"finish_reason":null}]}

            : keep-alive

            data: {"id":"c","model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":null,"reasoning_content":" is 5."},"finish_reason":null}]}

            data: {"id":"c","model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":"#### ","reasoning_content":null},"finish_reason":null}]}

            data: {"id":"c","model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":"5"},"finish_reason":"stop"}]}

            data: {"id":"c","model":"deepseek-reasoner","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":11,"total_tokens":20}}

            data: [DONE]

            """
        let r = try OpenAIWire.parseStream(Array(sse.utf8), url: Self.url, model: "m")
        XCTAssertEqual(r.model, "deepseek-reasoner")
        XCTAssertEqual(r.completions.count, 1)
        XCTAssertEqual(r.completions[0].reasoning, "2 plus 3 is 5.")
        XCTAssertEqual(r.completions[0].text, "#### 5")
        XCTAssertEqual(r.completions[0].finishReason, .stop)
        XCTAssertEqual(r.usage, TeacherUsage(promptTokens: 9, completionTokens: 11))
    }

    func testStreamedChoicesAndLogprobs() throws {
        // Two choices interleaved (vLLM with n = 2), the `reasoning` name, CRLF line ends, logprobs per delta.
        let sse = "data: {\"choices\":[{\"index\":1,\"delta\":{\"reasoning\":\"b\"}}]}\r\n\r\n"
            + "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"A\"},\"logprobs\":{\"content\":[{\"token\":\"A\",\"logprob\":-0.5,\"bytes\":[65],\"top_logprobs\":[{\"token\":\"A\",\"logprob\":-0.5,\"bytes\":[65]},{\"token\":\"B\",\"logprob\":-1.5,\"bytes\":[66]}]}]}}]}\r\n\r\n"
            + "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"B\"},\"finish_reason\":\"length\"}]}\r\n\r\n"
            + "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\r\n\r\ndata: [DONE]\r\n\r\n"
        let r = try OpenAIWire.parseStream(Array(sse.utf8), url: Self.url, model: "m")
        XCTAssertEqual(r.completions.map(\.text), ["A", "B"])
        XCTAssertEqual(r.completions.map(\.reasoning), [nil, "b"])
        XCTAssertEqual(r.completions.map(\.finishReason), [.stop, .length])
        XCTAssertEqual(r.completions[0].logprobs?.first?.top.map(\.token), ["A", "B"])
        XCTAssertEqual(r.completions[0].logprobs?.first?.bytes, [65])
    }

    func testStreamedErrors() {
        let error = "data: {\"error\":{\"message\":\"context length exceeded\",\"type\":\"invalid_request_error\"}}\n\n"
        XCTAssertThrowsError(try OpenAIWire.parseStream(Array(error.utf8), url: Self.url, model: "m")) { e in
            XCTAssertEqual(e as? TeacherClientError, .httpStatus(url: Self.url, status: 200, message: "context length exceeded"))
        }
        XCTAssertThrowsError(try OpenAIWire.parseStream(Array("data: {\"choices\": 3}\n\n".utf8), url: Self.url, model: "m")) { e in
            XCTAssertTrue("\(e)".contains("stream event on line 1"), "\(e)")
        }
        XCTAssertThrowsError(try OpenAIWire.parseStream(Array("{\"choices\":[]}".utf8), url: Self.url, model: "m")) { e in
            XCTAssertTrue("\(e)".contains("without any \"data:\" event"), "\(e)")
        }
    }

    // MARK: Recorded replies of llama.cpp's server (scripts/record_llamacpp_replies.py)

    static let recorded = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/llamacpp")

    func recordedBytes(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: Self.recorded.appendingPathComponent(name)))
    }

    func testLlamaCppIgnoresN() throws {
        // Asked for n = 2, llama-cpp-python 0.3.36 answers with one choice: the client passes it on
        // (the pipeline then asks for the rest one request each).
        let r = try OpenAIWire.parse(try recordedBytes("chat_n2.json"), endpoint: .chat, url: Self.url, model: "m")
        XCTAssertEqual(r.completions.count, 1)
        XCTAssertEqual(r.completions[0].text, "2 + 3 = 5")
        XCTAssertNil(r.completions[0].reasoning)
    }

    func testLlamaCppLogprobs() throws {
        let r = try OpenAIWire.parse(try recordedBytes("chat_logprobs.json"), endpoint: .chat, url: Self.url, model: "m")
        let lps = try XCTUnwrap(r.completions[0].logprobs)
        // The tokens spell the content; `bytes` is null here, and one position has fewer
        // alternatives than asked (two ids with the same text, merged by the server).
        XCTAssertEqual(lps.map(\.token).joined(), r.completions[0].text)
        XCTAssertTrue(lps.allSatisfy { $0.bytes == nil && !$0.top.isEmpty && $0.top.count <= 5 })
        XCTAssertTrue(lps.contains { $0.top.count < 5 })
        // Streamed, with log-probabilities per delta and no usage chunk.
        let s = try OpenAIWire.parseStream(try recordedBytes("chat_stream_logprobs.txt"), url: Self.url, model: "m")
        XCTAssertEqual(s.completions.count, 1)
        XCTAssertEqual(s.completions[0].logprobs?.map(\.token).joined(), s.completions[0].text)
        XCTAssertNotNil(s.completions[0].finishReason)
        XCTAssertNil(s.usage)
        let plain = try OpenAIWire.parseStream(try recordedBytes("chat_stream.txt"), url: Self.url, model: "m")
        XCTAssertEqual(plain.completions[0].text, "2 + 3 = 5")
    }

    // MARK: The pipeline with such teachers

    func prompts(_ n: Int) -> [TracePrompt] {
        (0..<n).map { TracePrompt(id: "p\($0)", text: "p\($0): \($0) + 2?", answer: String($0 + 2)) }
    }

    func testPipelineKeepsDeepSeekShapedCandidates() async throws {
        let dir = try traceTestDirectory(self)
        let teacher = ReasoningFieldTeacher()
        let summary = try await TracePipeline(TracePipelineConfiguration(
            prompts: .prompts(prompts(3)), teacher: teacher, samplesPerPrompt: 2, verifier: .math(MathEquivalence()),
            storePath: dir.appendingPathComponent("s.sqlite").path, outputPath: dir.appendingPathComponent("t.jsonl").path,
            statsPath: dir.appendingPathComponent("stats.json").path)).run()
        // Sample 0 right, sample 1 a reasoning field without content: nothing after the think
        // block (template), so no answer either.
        XCTAssertEqual(summary.statistics.overall.kept, 3)
        XCTAssertEqual(summary.statistics.rejectionReasons, ["template": 3, "no_answer": 3])
        let lines = try String(contentsOfFile: summary.outputPath, encoding: .utf8).split(separator: "\n")
        XCTAssertTrue(lines[0].contains("<think>\\nadding 0 and 2\\n</think>\\n\\n#### 2"), String(lines[0]))
        let store = try GenerationStore(path: summary.storePath, settings: TracePipeline(TracePipelineConfiguration(
            prompts: .prompts(prompts(3)), teacher: teacher, samplesPerPrompt: 2, storePath: summary.storePath,
            outputPath: summary.outputPath, statsPath: summary.statsPath)).settings)
        let c = try store.candidates(promptID: "p0")
        XCTAssertEqual(c[0].rawText, "#### 2")
        XCTAssertEqual(c[0].reasoning, "adding 0 and 2")
    }

    func testServerIgnoringNGetsOneRequestPerSample() async throws {
        let dir = try traceTestDirectory(self)
        let teacher = OneChoiceTeacher()
        func run(_ ps: [TracePrompt], limit: Int? = nil, store: String) async throws -> TracePipelineSummary {
            try await TracePipeline(TracePipelineConfiguration(
                prompts: .prompts(ps), teacher: teacher, samplesPerPrompt: 4, verifier: nil,
                storePath: store, outputPath: store + ".jsonl",
                statsPath: store + ".json", concurrency: 1, limit: limit)).run()
        }
        let a = dir.appendingPathComponent("a.sqlite").path
        let s = try await run(prompts(3), store: a)
        XCTAssertEqual(s.counts.candidates, 12)
        // The first prompt: one request for 4 (answered with 1), then 3 single ones; the others 4 single ones.
        XCTAssertEqual(teacher.requests.map(\.n), [4, 1, 1, 1] + [Int](repeating: 1, count: 8))
        let settings = TracePipeline(TracePipelineConfiguration(prompts: .prompts(prompts(3)), teacher: teacher, samplesPerPrompt: 4,
                                                                verifier: nil, storePath: a, outputPath: "", statsPath: "")).settings
        let store = try GenerationStore(path: a, settings: settings)
        for p in prompts(3) {
            let c = try store.candidates(promptID: p.id)
            let seeds = (0..<4).map { TracePipeline.sampleSeed(seed: 0, promptID: p.id, index: $0) }
            XCTAssertEqual(c.map(\.seed), seeds)
            XCTAssertEqual(c.map(\.text), seeds.map { "<think>\nseed \($0)\n</think>\n\nok" })
        }
        XCTAssertEqual(try store.note(TracePipeline.ignoresNNote), "true")
        // Killed after one prompt and resumed: the same candidates, and the resumed run asks one
        // sample per request from the start.
        let b = dir.appendingPathComponent("b.sqlite").path
        _ = try await run(prompts(3), limit: 1, store: b)
        teacher.reset()
        _ = try await run(prompts(3), store: b)
        XCTAssertEqual(teacher.requests.map(\.n), [Int](repeating: 1, count: 8))
        let storeB = try GenerationStore(path: b, settings: settings)
        for p in prompts(3) { XCTAssertEqual(try storeB.candidates(promptID: p.id), try store.candidates(promptID: p.id)) }
    }
}

/// Answers like DeepSeek's API: sample 0 with `reasoning` and an answer, sample 1 with reasoning only.
final class ReasoningFieldTeacher: TeacherClient, @unchecked Sendable {
    let modelName = "r1-shaped"

    func complete(_ prompt: TeacherPrompt, sampling: TeacherSampling) async throws -> TeacherResponse {
        guard case .chat(let m) = prompt, let user = m.last?.content else { throw TeacherClientError.local("chat only") }
        let nums = user.split(separator: ":")[1].split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        let completions = (0..<sampling.n).map { i in
            i % 2 == 0
                ? TeacherCompletion(index: i, text: "#### \(nums.reduce(0, +))", reasoning: "adding \(nums[0]) and \(nums[1])", finishReason: .stop)
                : TeacherCompletion(index: i, text: "", reasoning: "still thinking", finishReason: .length)
        }
        return TeacherResponse(model: modelName, completions: completions)
    }
}

/// A server that ignores `n`: one choice per request, determined by the seed.
final class OneChoiceTeacher: TeacherClient, @unchecked Sendable {
    let modelName = "one-choice"
    private let lock = NSLock()
    private var log: [(n: Int, seed: UInt64)] = []

    var requests: [(n: Int, seed: UInt64)] { lock.withLock { log } }
    func reset() { lock.withLock { log = [] } }

    func complete(_ prompt: TeacherPrompt, sampling: TeacherSampling) async throws -> TeacherResponse {
        lock.withLock { log.append((sampling.n, sampling.seed ?? 0)) }
        return TeacherResponse(model: modelName, completions: [
            TeacherCompletion(index: 0, text: "<think>\nseed \(sampling.seed ?? 0)\n</think>\n\nok", finishReason: .stop),
        ])
    }
}
