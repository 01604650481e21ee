import DistillModels
import DistillNN
import Foundation
import XCTest
@testable import DistillData

/// The local teacher over a tiny random Qwen2 (the model fixture's widths, the tiny Qwen2-style
/// tokenizer with its ChatML template, vocabulary 512).
final class ClientLocalTeacherTests: XCTestCase {
    static let modelFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("DistillModelsTests/Fixtures")

    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("local-teacher-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func makeTeacher() throws -> LocalTeacherClient {
        var config = try ModelConfig(contentsOf: Self.modelFixtures.appendingPathComponent("architectures/qwen2/config.json"))
        config.json["vocab_size"] = 512
        config.json["max_position_embeddings"] = 128
        let lm = TransformerLM(try Architecture.qwen2.decoderConfig(config), seed: 3)
        let dir = tmp.appendingPathComponent("teacher")
        try PretrainedModel(architecture: .qwen2, config: config, lm: lm, path: dir.path).saveDirectory(dir.path)
        for file in ["tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: Self.modelFixtures.appendingPathComponent("tokenizer/qwen2_style/\(file)"),
                                             to: dir.appendingPathComponent(file))
        }
        return try LocalTeacherClient(model: try PretrainedModel.load(dir.path), name: "tiny-qwen2")
    }

    func testChatGreedyWithLogprobs() async throws {
        let teacher = try makeTeacher()
        XCTAssertEqual(teacher.modelName, "tiny-qwen2")
        let sampling = TeacherSampling(n: 2, temperature: 0, maxTokens: 6, logprobs: true, topLogprobs: 3)
        let r = try await teacher.complete(messages: [.user("What is 2 + 2?")], sampling: sampling)
        XCTAssertEqual(r.model, "tiny-qwen2")
        XCTAssertEqual(r.completions.map(\.index), [0, 1])
        // Greedy: both samples are the same.
        XCTAssertEqual(r.completions[0].text, r.completions[1].text)
        let usage = try XCTUnwrap(r.usage)
        XCTAssertGreaterThan(usage.promptTokens, 5)
        for c in r.completions {
            let lp = try XCTUnwrap(c.logprobs)
            XCTAssertFalse(lp.isEmpty)
            XCTAssertLessThanOrEqual(lp.count, 6)
            if c.finishReason == .length { XCTAssertEqual(lp.count, 6) }
            for t in lp {
                XCTAssertEqual(t.top.count, 3)
                XCTAssertLessThanOrEqual(t.logprob, 0)
                // Greedy: the chosen token is the most likely one.
                XCTAssertEqual(t.top[0].token, t.token)
                XCTAssertEqual(t.top[0].logprob, t.logprob, accuracy: 1e-6)
                XCTAssertGreaterThanOrEqual(t.top[0].logprob, t.top[1].logprob)
            }
        }
        XCTAssertEqual(usage.completionTokens, r.completions.map { $0.logprobs!.count }.reduce(0, +))
    }

    func testSeededSamplingIsReproducibleAndTextPromptsWork() async throws {
        let teacher = try makeTeacher()
        let sampling = TeacherSampling(n: 3, temperature: 1, maxTokens: 5, seed: 9)
        let a = try await teacher.complete(text: "The cat sat", sampling: sampling)
        let b = try await teacher.complete(text: "The cat sat", sampling: sampling)
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.completions.count, 3)
        XCTAssertNil(a.completions[0].logprobs)
    }

    /// Concurrent requests are generated in shared batches, each with the answer it gets alone
    /// (greedy and seeded sampling, different prompts and lengths).
    func testConcurrentCallsAreBatchedWithTheirOwnAnswers() async throws {
        let teacher = try makeTeacher()
        let prompts = ["hello", "What is 2 + 2?", "Tell me a story about a cat", "x", "Name three colours", "ok"]
        func sampling(_ i: Int) -> TeacherSampling {
            i % 2 == 0 ? TeacherSampling(n: 1, temperature: 0, maxTokens: 4 + i, logprobs: true, topLogprobs: 2)
                : TeacherSampling(n: 2, temperature: 0.9, maxTokens: 6, seed: UInt64(40 + i))
        }
        var alone: [TeacherResponse] = []
        for (i, p) in prompts.enumerated() { alone.append(try await teacher.complete(messages: [.user(p)], sampling: sampling(i))) }
        let batchesBefore = teacher.batchCount
        XCTAssertEqual(batchesBefore, prompts.count)
        let together = try await withThrowingTaskGroup(of: (Int, TeacherResponse).self) { group in
            for (i, p) in prompts.enumerated() {
                group.addTask { (i, try await teacher.complete(messages: [.user(p)], sampling: sampling(i))) }
            }
            return try await group.reduce(into: [Int: TeacherResponse]()) { $0[$1.0] = $1.1 }
        }
        for i in prompts.indices {
            XCTAssertEqual(together[i]?.completions.map(\.text), alone[i].completions.map(\.text), "prompt \(i)")
            XCTAssertEqual(together[i]?.usage, alone[i].usage)
            for (a, b) in zip(together[i]!.completions, alone[i].completions) {
                for (x, y) in zip(a.logprobs ?? [], b.logprobs ?? []) { XCTAssertEqual(x.logprob, y.logprob, accuracy: 1e-5) }
            }
        }
        XCTAssertLessThan(teacher.batchCount - batchesBefore, prompts.count, "concurrent requests share batches")
    }

    func testPromptTooLongForTheModel() async throws {
        let teacher = try makeTeacher()
        do {
            _ = try await teacher.complete(text: "one two", sampling: TeacherSampling(maxTokens: 500))
            XCTFail("expected an error")
        } catch let TeacherClientError.invalidRequest(m) {
            XCTAssertTrue(m.contains("at most 128 positions"), m)
        }
    }

    /// The protocol lets either kind stand in for the other.
    func testProtocolUse() async throws {
        let teachers: [any TeacherClient] = [try makeTeacher()]
        for t in teachers {
            let r = try await t.complete(.chat([.user("hi")]), sampling: TeacherSampling(temperature: 0, maxTokens: 2))
            XCTAssertEqual(r.completions.count, 1)
        }
    }
}
