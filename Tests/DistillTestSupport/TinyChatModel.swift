import DistillModels
import DistillNN
import DistillTensor
import Foundation

/// Shared by test targets: a tiny random Qwen2-style model (2 layers, width 32, 96 positions)
/// over the tokenizer in `tokenizerDirectory` (the servers' fixture: a small trained
/// Qwen2-style tokenizer with a ChatML template, EOS <|im_end|>). Weights are drawn with a large
/// spread so that greedy choices are clear-cut.
public func tinyChatModel(tokenizerDirectory dir: URL, seed: UInt64 = 1) throws -> PretrainedModel {
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
