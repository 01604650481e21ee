import DistillModels
import DistillNN
import DistillTensor
import Foundation
import XCTest

/// Qwen2, Llama, Qwen3 and Mistral checkpoints written by `transformers` (random weights; scripts/
/// make_architecture_fixtures.py) give the same log-probabilities, hidden states and attention
/// maps in Distill.
final class ArchitectureParityTests: XCTestCase {
    struct Expected: Decodable {
        struct Sequence: Decodable {
            var ids: [Int]
            var token_logprobs: [Float]
            var last_logits: [Float]
            var hidden_states: [[Float]]
            var attention_layer0: [Float]
        }
        var sequences: [Sequence]
    }

    /// Checks the checkpoint in fixture directory `name` (or its model.gguf) against expected.json.
    func check(_ name: String, gguf: Bool = false) throws {
        let dir = try fixtureURL("architectures", name)
        let model = gguf ? try PretrainedModel.loadGGUF(dir.appendingPathComponent("model.gguf").path)
            : try PretrainedModel.loadDirectory(dir.path)
        let config = try ModelConfig(contentsOf: dir.appendingPathComponent("config.json"))
        XCTAssertEqual(model.architecture.modelType, config.modelType)
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: dir.appendingPathComponent("expected.json")))
        for seq in expected.sequences {
            let n = seq.ids.count
            let out = withoutGradients {
                model.lm.forward(seq.ids, batch: 1, length: n, outputHiddenStates: true, outputAttentions: true)
            }
            let logp = withoutGradients { out.logits.reshaped([n, -1]).logSoftmax() }
            let v = logp.shape[1]
            for i in 0..<(n - 1) {
                XCTAssertEqual(logp.storage.pointer[i * v + seq.ids[i + 1]], seq.token_logprobs[i], accuracy: 1e-4,
                               "\(name): log-probability of token \(i + 1)")
            }
            XCTAssertEqual(out.hiddenStates.count, seq.hidden_states.count)
            for (l, (h, ref)) in zip(out.hiddenStates, seq.hidden_states).enumerated() {
                // Both sides run in Float32 with different summation orders, so differences grow
                // with the values: 1e-4 absolute, or 1e-5 of the state's largest magnitude when that
                // is larger (Gemma's scaled embeddings and sandwich norms reach |h| ≈ 17).
                let err = zip(h.scalars, ref).map { abs($0 - $1) }.max()!
                let scale = ref.map { abs($0) }.max()!
                XCTAssertLessThan(err, max(1e-4, 1e-5 * scale), "\(name): hidden state \(l) (largest |h| \(scale))")
            }
            let attErr = zip(out.attentions[0].scalars, seq.attention_layer0).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(attErr, 1e-5, "\(name): attention probabilities of layer 0")
            let last = Array(out.logits.scalars.suffix(v))
            XCTAssertLessThan(zip(last, seq.last_logits).map { abs($0 - $1) }.max()!, 1e-4)
        }
    }

    func testQwen2MatchesTransformers() throws { try check("qwen2") }
    func testLlamaWithLlama3RopeScalingMatchesTransformers() throws { try check("llama") }
    /// Qwen3: q/k RMSNorm per head, head_dim ≠ hidden / heads (transformers 4.57.6).
    func testQwen3MatchesTransformers() throws { try check("qwen3") }
    /// Mistral: a sliding window of 4 that the 12-token sequence crosses (transformers 4.57.6).
    func testMistralWithSlidingWindowMatchesTransformers() throws { try check("mistral") }
    /// Gemma 2: GeGLU, (1 + w) and sandwich norms, embedding scale, soft-capped scores and logits,
    /// query_pre_attn_scalar, sliding window on alternate layers (transformers 4.57.6).
    func testGemma2MatchesTransformers() throws { try check("gemma2") }
    /// Gemma (first generation): GeGLU, (1 + w) norms, embedding scale (transformers 4.57.6).
    func testGemmaMatchesTransformers() throws { try check("gemma") }
    /// Phi-3: fused qkv_proj and gate_up_proj split on load, sliding window 5, LongRoPE on both
    /// sides of its original length (transformers 4.57.6).
    func testPhi3MatchesTransformers() throws { try check("phi3") }

    /// A Phi-3 model saves its fused tensors fused again (as transformers expects them) and loads back.
    func testPhi3SavesFusedTensors() throws {
        let model = try PretrainedModel.loadDirectory(try fixtureURL("architectures", "phi3").path)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("distill-phi3-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        try model.saveDirectory(out.path)
        let files = try ShardedSafetensors(directory: out.path)
        XCTAssertTrue(files.tensorNames.contains("model.layers.1.self_attn.qkv_proj.weight"))
        XCTAssertTrue(files.tensorNames.contains("model.layers.0.mlp.gate_up_proj.weight"))
        XCTAssertFalse(files.tensorNames.contains { $0.contains("q_proj") || $0.contains("gate_proj.") })
        let original = try ShardedSafetensors(directory: try fixtureURL("architectures", "phi3").path)
        XCTAssertEqual(Set(files.tensorNames), Set(original.tensorNames))
        for name in original.tensorNames { XCTAssertEqual(try files.tensor(named: name).scalars, try original.tensor(named: name).scalars, name) }
        // A fused tensor with the wrong number of rows is named.
        var cfg = model.config
        cfg.json["intermediate_size"] = 40
        let bad = FileManager.default.temporaryDirectory.appendingPathComponent("distill-phi3-bad-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: bad) }
        try FileManager.default.createDirectory(at: bad, withIntermediateDirectories: true)
        try cfg.data().write(to: bad.appendingPathComponent("config.json"))
        try FileManager.default.copyItem(at: out.appendingPathComponent("model.safetensors"), to: bad.appendingPathComponent("model.safetensors"))
        XCTAssertThrowsError(try PretrainedModel.loadDirectory(bad.path)) { e in
            XCTAssertTrue("\(e)".contains("gate_up_proj") && "\(e)".contains("rows"), "\(e)")
        }
    }
    /// Phi-3 with partial rotary embeddings (as Phi-4-mini: the first ¾ of each head rotated) and
    /// LongRoPE over the rotated dimensions only.
    func testPhi3WithPartialRotaryMatchesTransformers() throws { try check("phi3_partial") }
    /// Gemma 3 text: q/k norms (1 + w), local and global RoPE bases (global scaled), layer_types.
    func testGemma3TextMatchesTransformers() throws { try check("gemma3_text") }

    /// GGUF files laid out as llama.cpp's converter lays them out (scripts/make_architecture_fixtures.py;
    /// scripts/check_gguf_fixtures_llamacpp.py shows llama.cpp reads them as transformers' models):
    /// llama with Q/K rows permuted and Llama 3 RoPE scaling as `rope_freqs`, Qwen3's q/k norms,
    /// Gemma's norms stored as 1 + w, Gemma 2/3's sandwich norms (`ffn_norm` is the norm before the
    /// MLP), soft caps and windows from metadata, Gemma 3's every-sixth-layer pattern, Phi-3's fused
    /// `attn_qkv`/`ffn_up` and LongRoPE factors as tensors. Each loads with the checkpoint's
    /// weights and gives transformers' log-probs and hidden states.
    func testGGUFFilesLoadAsTheCheckpoints() throws {
        for name in ["llama", "qwen3", "gemma", "gemma2_gguf", "gemma3_gguf", "phi3", "phi3_partial"] {
            try check(name, gguf: true)
            let dir = try fixtureURL("architectures", name)
            let hf = try PretrainedModel.loadDirectory(dir.path)
            let gguf = try PretrainedModel.loadGGUF(dir.appendingPathComponent("model.gguf").path)
            XCTAssertEqual(gguf.lm.config.slidingWindow, hf.lm.config.slidingWindow, name)
            XCTAssertEqual(gguf.lm.config.slidingLayers, hf.lm.config.slidingLayers, name)
            XCTAssertEqual(gguf.lm.config.attentionSoftcap, hf.lm.config.attentionSoftcap, name)
            XCTAssertEqual(gguf.lm.config.finalSoftcap, hf.lm.config.finalSoftcap, name)
            XCTAssertEqual(gguf.lm.config.attentionScale, hf.lm.config.attentionScale, name)
            XCTAssertEqual(gguf.lm.config.rotaryDimensions, hf.lm.config.rotaryDimensions, name)
            let ggufParams = Dictionary(uniqueKeysWithValues: gguf.lm.namedParameters().map { ($0.name, $0.parameter.value) })
            XCTAssertEqual(ggufParams.count, hf.lm.namedParameters().count, name)
            for (p, a) in hf.lm.namedParameters() {
                let b = try XCTUnwrap(ggufParams[p], "\(name): \(p)")
                // Gemma's norms come back as (1 + w) − 1 in Float32.
                XCTAssertLessThan(zip(a.value.scalars, b.scalars).map { abs($0 - $1) }.max()!, 1e-6, "\(name): \(p)")
            }
        }
    }

    /// Decoding with the KV cache one token at a time gives the logits of the full forward pass,
    /// with q/k norms, past the sliding window, with soft-capped attention.
    func testCachedDecodingMatchesTheFullPassForQwen3AndMistral() throws {
        for name in ["qwen3", "mistral", "gemma2", "gemma3_text", "phi3"] {
            let model = try PretrainedModel.loadDirectory(try fixtureURL("architectures", name).path)
            // (Phi-3's fixture switches to LongRoPE's long factors past 8 positions, for the whole
            // pass at once; decoding step by step keeps earlier keys rotated by the short ones, as
            // transformers does: compare within the first 8.)
            let ids = Array([3, 17, 42, 8, 91, 5, 60, 2, 33, 70].prefix(name == "phi3" ? 8 : 10))
            let full = withoutGradients { model.lm.forward(ids, batch: 1, length: ids.count).logits.scalars }
            let v = model.lm.config.vocabSize
            let cache = model.lm.makeCache()
            _ = withoutGradients { model.lm.forward(Array(ids.prefix(3)), batch: 1, length: 3, cache: cache) }
            for i in 3..<ids.count {
                let step = withoutGradients { model.lm.forward([ids[i]], batch: 1, length: 1, cache: cache).logits.scalars }
                let err = zip(step, full[(i * v)..<((i + 1) * v)]).map { abs($0 - $1) }.max()!
                XCTAssertLessThan(err, 1e-4, "\(name): position \(i)")
            }
        }
    }

    /// A model saved by Distill loads back with identical outputs (transformers loading the same
    /// directory is checked by scripts/check_saved_model.py).
    func testSaveAndReload() throws {
        let dir = try fixtureURL("architectures", "qwen2")
        let model = try PretrainedModel.loadDirectory(dir.path)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("distill-save-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        try model.saveDirectory(out.path)
        let again = try PretrainedModel.loadDirectory(out.path)
        let ids = [1, 5, 9, 3]
        let a = withoutGradients { model.lm.forward(ids, batch: 1, length: 4).logits.scalars }
        let b = withoutGradients { again.lm.forward(ids, batch: 1, length: 4).logits.scalars }
        XCTAssertEqual(a, b)
        XCTAssertEqual(again.config.json["architectures"] as? [String], ["Qwen2ForCausalLM"])
    }

    func testConfigErrorsNameTheKey() throws {
        XCTAssertThrowsError(try Architecture.named("gpt_neox", source: "x/config.json")) { e in
            XCTAssertEqual("\(e)", "x/config.json: model_type: unknown model type 'gpt_neox'; known types: gemma, gemma2, gemma3_text, llama, mistral, phi3, qwen2, qwen3")
        }
        let bad = ModelConfig(json: ["model_type": "llama", "hidden_size": 30, "num_attention_heads": 4], source: "c.json")
        XCTAssertThrowsError(try Architecture.llama.decoderConfig(bad)) { e in
            XCTAssertTrue("\(e)".contains("num_attention_heads"), "\(e)")
        }
        let wrongType = ModelConfig(json: ["model_type": "qwen2", "vocab_size": "many"], source: "c.json")
        XCTAssertThrowsError(try Architecture.qwen2.decoderConfig(wrongType)) { e in
            XCTAssertEqual("\(e)", "c.json: vocab_size: expected an integer, found many")
        }
        let longrope = ModelConfig(json: ["model_type": "phi3", "hidden_size": 32, "num_attention_heads": 4, "max_position_embeddings": 64,
                                          "rope_scaling": ["type": "longrope", "short_factor": [1, 2], "long_factor": [1, 2, 3]]], source: "c.json")
        XCTAssertThrowsError(try Architecture.phi3.decoderConfig(longrope)) { e in
            XCTAssertEqual("\(e)", "c.json: rope_scaling.long_factor: 3 values, but short_factor has 2")
        }
        var fewer = longrope
        fewer.json["rope_scaling"] = ["type": "longrope", "short_factor": [1, 2], "long_factor": [1, 2]]
        XCTAssertThrowsError(try Architecture.phi3.decoderConfig(fewer)) { e in
            XCTAssertEqual("\(e)", "c.json: rope_scaling.short_factor: 2 factors, but the 8 rotary dimensions have 4 frequencies")
        }
        // The new architectures' own keys.
        func error(_ arch: Architecture, _ json: [String: Any]) -> String {
            do { _ = try arch.decoderConfig(ModelConfig(json: json, source: "c.json")); return "no error" } catch { return "\(error)" }
        }
        let tiny: [String: Any] = ["hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_hidden_layers": 2]
        XCTAssertEqual(error(.gemma2, tiny.merging(["layer_types": ["sliding_attention"]]) { $1 }),
                       "c.json: layer_types: expected 2 strings (one per layer), found [\"sliding_attention\"]")
        XCTAssertEqual(error(.gemma2, tiny.merging(["layer_types": ["sliding_attention", "local"]]) { $1 }),
                       "c.json: layer_types: expected sliding_attention or full_attention, found local")
        XCTAssertEqual(error(.gemma2, tiny.merging(["attn_logit_softcapping": -1]) { $1 }),
                       "c.json: attn_logit_softcapping: must be a positive number or null, found -1")
        XCTAssertEqual(error(.gemma2, tiny.merging(["query_pre_attn_scalar": 0]) { $1 }),
                       "c.json: query_pre_attn_scalar: must be positive, found 0.0")
        XCTAssertEqual(error(.gemma3Text, tiny.merging(["hidden_activation": "gelu"]) { $1 }),
                       "c.json: hidden_activation: expected gelu_pytorch_tanh, found gelu")
        XCTAssertEqual(error(.gemma3Text, tiny.merging(["use_bidirectional_attention": true]) { $1 }),
                       "c.json: use_bidirectional_attention: bidirectional attention (EmbeddingGemma) is not supported")
        XCTAssertEqual(error(.mistral, tiny.merging(["sliding_window": 0]) { $1 }),
                       "c.json: sliding_window: must be at least 1 (or null), found 0")
        XCTAssertEqual(error(.qwen3, tiny.merging(["attention_bias": true]) { $1 }),
                       "c.json: attention_bias: Qwen3 with attention biases is not supported yet")
        XCTAssertEqual(error(.phi3, tiny.merging(["partial_rotary_factor": 1.5]) { $1 }),
                       "c.json: partial_rotary_factor: must be in (0, 1] and give an even number of rotary dimensions of the head's 16, found 1.5")
        XCTAssertEqual(error(.gemma, tiny.merging(["hidden_act": "gelu"]) { $1 }),
                       "c.json: hidden_act: expected gelu_pytorch_tanh, found gelu")
        let rope = ModelConfig(json: ["model_type": "llama", "rope_scaling": ["rope_type": "yarn", "factor": 4]], source: "c.json")
        XCTAssertThrowsError(try Architecture.llama.decoderConfig(rope)) { e in
            XCTAssertTrue("\(e)".contains("unsupported RoPE scaling 'yarn'"), "\(e)")
        }
    }

    func testMissingAndMisshapenTensorsAreNamed() throws {
        let src = try fixtureURL("architectures", "qwen2")
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("distill-bad-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: tmp) }
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        // config says 3 layers, the weights hold 2
        var cfg = try ModelConfig(contentsOf: src.appendingPathComponent("config.json"))
        cfg.json["num_hidden_layers"] = 3
        try cfg.data().write(to: tmp.appendingPathComponent("config.json"))
        try FileManager.default.copyItem(at: src.appendingPathComponent("model.safetensors"), to: tmp.appendingPathComponent("model.safetensors"))
        XCTAssertThrowsError(try PretrainedModel.loadDirectory(tmp.path)) { e in
            XCTAssertTrue("\(e)".contains("model.layers.2.") && "\(e)".contains("missing"), "\(e)")
        }
        cfg.json["num_hidden_layers"] = 2
        cfg.json["intermediate_size"] = 50
        try cfg.data().write(to: tmp.appendingPathComponent("config.json"))
        XCTAssertThrowsError(try PretrainedModel.loadDirectory(tmp.path)) { e in
            XCTAssertTrue("\(e)".contains("mlp") && "\(e)".contains("does not match the config"), "\(e)")
        }
        XCTAssertThrowsError(try PretrainedModel.loadDirectory(tmp.appendingPathComponent("nope").path)) { e in
            XCTAssertTrue("\(e)".contains("no such file"), "\(e)")
        }
    }
}
