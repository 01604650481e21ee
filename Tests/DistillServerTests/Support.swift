import DistillModels
import DistillNN
import DistillServer
import DistillTensor
import Foundation
import Hummingbird
import HummingbirdTesting
import XCTest

/// A tiny random Qwen2-style model (2 layers, width 32) over the small trained Qwen2-style
/// tokenizer of the models' fixtures (506 tokens, ChatML template, EOS <|im_end|>). Weights are
/// drawn with a large spread so that greedy choices are clear-cut.
func tinyModel(seed: UInt64 = 1) throws -> PretrainedModel {
    guard let base = Bundle.module.resourceURL else { throw XCTSkip("test bundle has no resources") }
    let dir = base.appendingPathComponent("Fixtures/tokenizer")
    let tok = try Tokenizer(directory: dir)
    let config = ModelConfig(json: [
        "model_type": "qwen2", "hidden_size": 32, "intermediate_size": 48, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": tok.vocabSize, "max_position_embeddings": 96,
        "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": false,
    ], source: "tiny")
    let arch = try Architecture.named("qwen2", source: "tiny")
    let lm = TransformerLM(try arch.decoderConfig(config), seed: seed)
    var rng = RandomGenerator(seed: seed &+ 17)
    for (name, p) in lm.namedParameters() where !name.contains("norm") {
        let n = p.shape.reduce(1, *)
        p.assign(Tensor((0..<n).map { _ in rng.nextNormal() * 0.3 }, shape: p.shape))
    }
    return PretrainedModel(architecture: arch, config: config, lm: lm, path: "/models/tiny-qwen2",
                           tokenizer: tok, chatTemplate: try ChatTemplate(source: tok.chatTemplate!))
}

/// The SmolLM2-135M-Instruct Q4_1 GGUF when present (as in DistillModelsTests), else a skip.
func smolLM2Path() throws -> String {
    if let p = ProcessInfo.processInfo.environment["DISTILL_SMOLLM2_GGUF"], FileManager.default.fileExists(atPath: p) { return p }
    let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let p = here.appendingPathComponent(".build/models/SmolLM2-135M-Instruct.Q4_1.gguf").path
    guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("SmolLM2 GGUF not found (set DISTILL_SMOLLM2_GGUF)") }
    return p
}

/// A JSON reply, parsed.
struct Reply {
    var status: Int
    var text: String
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:] }
    var choices: [[String: Any]] { json["choices"] as? [[String: Any]] ?? [] }
    var error: [String: Any]? { json["error"] as? [String: Any] }

    /// The `data:` payloads of a server-sent event stream, `[DONE]` excluded.
    var events: [[String: Any]] {
        text.components(separatedBy: "\n\n").compactMap { block -> [String: Any]? in
            guard block.hasPrefix("data: "), !block.hasPrefix("data: [DONE]") else { return nil }
            return (try? JSONSerialization.jsonObject(with: Data(block.dropFirst(6).utf8))) as? [String: Any]
        }
    }
}

extension TestClientProtocol {
    func post(_ uri: String, _ body: [String: Any]) async throws -> Reply {
        let data = try JSONSerialization.data(withJSONObject: body)
        return try await post(uri, raw: String(decoding: data, as: UTF8.self))
    }

    func post(_ uri: String, raw: String) async throws -> Reply {
        let r = try await executeRequest(uri: uri, method: .post, headers: [.contentType: "application/json"],
                                         body: ByteBuffer(string: raw))
        return Reply(status: Int(r.status.code), text: String(buffer: r.body))
    }

    func get(_ uri: String) async throws -> Reply {
        let r = try await executeRequest(uri: uri, method: .get, headers: [:], body: nil)
        return Reply(status: Int(r.status.code), text: String(buffer: r.body))
    }
}

/// Runs `body` against the server's router (no socket).
func withRouter<T>(_ server: OpenAIServer, _ body: @Sendable (any TestClientProtocol) async throws -> T) async throws -> T {
    try await Application(router: server.makeRouter()).test(.router, body)
}
