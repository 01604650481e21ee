import DistillTensor
import Foundation
import XCTest
@testable import DistillModels

/// GGUF → Hugging Face names, llama's Q/K un-permutation, and configs from metadata, checked
/// against tiny checkpoints written in both layouts and against SmolLM2 as `transformers` loads it.
final class GGUFNamesTests: XCTestCase {
    func testNameMapping() {
        let pairs = [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output_norm.weight", "model.norm.weight"),
            ("output.weight", "lm_head.weight"),
            ("blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"),
            ("blk.12.ffn_norm.weight", "model.layers.12.post_attention_layernorm.weight"),
            ("blk.3.attn_q.weight", "model.layers.3.self_attn.q_proj.weight"),
            ("blk.3.attn_k.bias", "model.layers.3.self_attn.k_proj.bias"),
            ("blk.3.attn_v.weight", "model.layers.3.self_attn.v_proj.weight"),
            ("blk.29.attn_output.weight", "model.layers.29.self_attn.o_proj.weight"),
            ("blk.1.ffn_gate.weight", "model.layers.1.mlp.gate_proj.weight"),
            ("blk.1.ffn_up.weight", "model.layers.1.mlp.up_proj.weight"),
            ("blk.1.ffn_down.weight", "model.layers.1.mlp.down_proj.weight"),
        ]
        let llama = GGUFNames(.llama)
        for (g, h) in pairs {
            XCTAssertEqual(llama.huggingFaceName(for: g), h)
            XCTAssertEqual(llama.ggufName(for: h), g)
        }
        XCTAssertNil(llama.huggingFaceName(for: "rope_freqs.weight"))
        XCTAssertNil(llama.huggingFaceName(for: "blk.x.attn_q.weight"))
        XCTAssertNil(llama.huggingFaceName(for: "blk.1.attn_qq.weight"))
        XCTAssertNil(llama.ggufName(for: "model.layers.1.self_attn.rotary_emb.inv_freq"))
        XCTAssertNil(llama.ggufName(for: "model.layers.1.self_attn.q_norm.weight"))
    }

    /// An architecture's own names replace the shared ones they collide with: Gemma 2's
    /// `ffn_norm` is the norm before the MLP, its post-attention norm `post_attention_norm`;
    /// Phi-3's `ffn_up` holds gate and up stacked.
    func testArchitectureNamesReplaceSharedOnes() {
        let gemma2 = GGUFNames(.gemma2)
        XCTAssertEqual(gemma2.huggingFaceName(for: "blk.2.ffn_norm.weight"), "model.layers.2.pre_feedforward_layernorm.weight")
        XCTAssertEqual(gemma2.huggingFaceName(for: "blk.2.post_attention_norm.weight"), "model.layers.2.post_attention_layernorm.weight")
        XCTAssertEqual(gemma2.ggufName(for: "model.layers.0.post_feedforward_layernorm.weight"), "blk.0.post_ffw_norm.weight")
        XCTAssertEqual(gemma2.ggufName(for: "model.layers.0.input_layernorm.weight"), "blk.0.attn_norm.weight")
        XCTAssertEqual(GGUFNames(.gemma3Text).huggingFaceName(for: "blk.1.attn_k_norm.weight"), "model.layers.1.self_attn.k_norm.weight")
        let phi3 = GGUFNames(.phi3)
        XCTAssertEqual(phi3.huggingFaceName(for: "blk.0.ffn_up.weight"), "model.layers.0.mlp.gate_up_proj.weight")
        XCTAssertEqual(phi3.huggingFaceName(for: "blk.0.attn_qkv.weight"), "model.layers.0.self_attn.qkv_proj.weight")
        XCTAssertNil(phi3.ggufName(for: "model.layers.0.mlp.up_proj.weight"))
        // Every architecture's map is one-to-one.
        for arch in Architecture.all {
            let names = GGUFNames(arch)
            XCTAssertEqual(Set(names.block.map(\.gguf)).count, names.block.count, arch.modelType)
            XCTAssertEqual(Set(names.block.map(\.hf)).count, names.block.count, arch.modelType)
        }
    }

    /// One head of 4 rows (d = 4, d/2 = 2): GGUF row 2i + j holds HF row j·2 + i, so
    /// GGUF [h0, h2, h1, h3] → HF [h0, h1, h2, h3].
    func testUnpermuteByHand() throws {
        let gguf = Tensor([0, 0.5, 20, 20.5, 10, 10.5, 30, 30.5], shape: [4, 2])   // rows: HF 0, 2, 1, 3
        let hf = try GGUFNames.unpermuteRotaryRows(gguf, heads: 1)
        XCTAssertEqual(hf.scalars, [0, 0.5, 10, 10.5, 20, 20.5, 30, 30.5])
        // Two heads of a bias vector: each head independently.
        let bias = try GGUFNames.unpermuteRotaryRows(Tensor([0, 2, 1, 3, 4, 6, 5, 7]), heads: 2)
        XCTAssertEqual(bias.scalars, [0, 1, 2, 3, 4, 5, 6, 7])
        assertFileError(["6 rows do not split into 2 heads"]) { _ = try GGUFNames.unpermuteRotaryRows(Tensor(zeros: [6, 2]), heads: 2) }
    }

    /// Every tensor of a tiny random Llama (GQA, tied head, Q/K permuted by llama.cpp's rule)
    /// and Qwen2 (biases, untied head, no permutation) read from GGUF equals the HF checkpoint.
    func testTinyCheckpointsEqualHuggingFaceWeights() throws {
        let configs = try jsonFixture("tiny_expected.json")
        for arch in ["llama", "qwen2"] {
            let gguf = try GGUFFile(url: fixtureURL("formats", "tiny_\(arch).gguf"))
            let hf = try SafetensorsFile(url: fixtureURL("formats", "tiny_\(arch).safetensors"))
            XCTAssertEqual(gguf.huggingFaceTensorNames, hf.tensorNames, arch)
            let all = try gguf.huggingFaceTensors()
            XCTAssertEqual(all.keys.sorted(), hf.tensorNames)
            for name in hf.tensorNames {
                let want = try hf.tensor(named: name)
                let got = try XCTUnwrap(all[name])
                XCTAssertEqual(got.shape, want.shape, "\(arch) \(name)")
                XCTAssertEqual(bitPatterns(got), bitPatterns(want), "\(arch) \(name)")
            }
            let view = try GGUFWeights(gguf)
            XCTAssertEqual(view.tensorNames, hf.tensorNames)
            XCTAssertEqual(view.contains("lm_head.weight"), arch == "qwen2")
            XCTAssertTrue(view.contains("model.layers.0.self_attn.k_proj.weight"))
            XCTAssertEqual(try view.tensor(named: "model.layers.0.self_attn.k_proj.weight").scalars,
                           try hf.tensor(named: "model.layers.0.self_attn.k_proj.weight").scalars)
            if arch == "llama" {
                // Without the inverse permutation Q and K would differ.
                XCTAssertNotEqual(try gguf.tensor(named: "blk.0.attn_q.weight").scalars, try hf.tensor(named: "model.layers.0.self_attn.q_proj.weight").scalars)
                XCTAssertNotEqual(try gguf.tensor(named: "blk.1.attn_k.weight").scalars, try hf.tensor(named: "model.layers.1.self_attn.k_proj.weight").scalars)
                assertFileError([gguf.path, "lm_head.weight", "tied"]) { _ = try gguf.huggingFaceTensor(named: "lm_head.weight") }
            }
            assertFileError([gguf.path, "model.layers.0.nope", "no GGUF counterpart"]) { _ = try gguf.huggingFaceTensor(named: "model.layers.0.nope") }

            // The config the metadata describes.
            let e = try XCTUnwrap(configs[arch] as? [String: Any])
            let c = try gguf.huggingFaceConfig()
            XCTAssertEqual(c.modelType, e["model_type"] as? String)
            XCTAssertEqual(c.vocabSize, e["vocab_size"] as? Int)
            XCTAssertEqual(c.hiddenSize, e["hidden_size"] as? Int)
            XCTAssertEqual(c.intermediateSize, e["intermediate_size"] as? Int)
            XCTAssertEqual(c.numHiddenLayers, e["num_hidden_layers"] as? Int)
            XCTAssertEqual(c.numAttentionHeads, e["num_attention_heads"] as? Int)
            XCTAssertEqual(c.numKeyValueHeads, e["num_key_value_heads"] as? Int)
            XCTAssertEqual(c.headDim, e["head_dim"] as? Int)
            XCTAssertEqual(c.rmsNormEps, e["rms_norm_eps"] as? Double)
            XCTAssertEqual(c.ropeTheta, e["rope_theta"] as? Double)
            XCTAssertEqual(c.maxPositionEmbeddings, e["max_position_embeddings"] as? Int)
            XCTAssertEqual(c.tieWordEmbeddings, e["tie_word_embeddings"] as? Bool)
            XCTAssertEqual(c.bosTokenId, e["bos_token_id"] as? Int)
            XCTAssertEqual(c.eosTokenId, e["eos_token_id"] as? Int)
            XCTAssertEqual(c.attentionBias, e["attention_bias"] as? Bool)
            // The dictionary form survives JSON serialisation with the same values.
            let data = try JSONSerialization.data(withJSONObject: c.json, options: [.sortedKeys])
            let back = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
            XCTAssertEqual(back["hidden_size"] as? Int, c.hiddenSize)
            XCTAssertEqual(back["tie_word_embeddings"] as? Bool, c.tieWordEmbeddings)
            XCTAssertEqual(back["model_type"] as? String, arch)
        }
    }

    func testUnsupportedArchitecture() throws {
        let f = try GGUFFile(url: fixtureURL("formats", "quants.gguf"))   // general.architecture = "test"
        assertFileError([f.path, "general.architecture", "'test' is not supported", "gemma, gemma2, gemma3, llama, phi3, qwen2, qwen3"]) { _ = try f.huggingFaceConfig() }
        assertFileError(["'test' is not supported"]) { _ = try f.huggingFaceTensor(named: "model.norm.weight") }
    }

    // MARK: SmolLM2-135M-Instruct (Q4_1 GGUF)

    func testSmolLM2Metadata() throws {
        let f = try GGUFFile(path: try smolLM2Path())
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.architecture, "llama")
        XCTAssertEqual(try f.int("llama.block_count"), 30)
        XCTAssertEqual(try f.int("llama.embedding_length"), 576)
        XCTAssertEqual(try f.int("llama.attention.head_count"), 9)
        XCTAssertEqual(try f.int("llama.attention.head_count_kv"), 3)
        XCTAssertEqual(try f.strings("tokenizer.ggml.tokens")?.count, 49152)
        XCTAssertEqual(try f.ints("tokenizer.ggml.token_type")?.count, 49152)
        XCTAssertEqual(try f.string("tokenizer.ggml.model"), "gpt2")
        XCTAssertEqual(f.tensorInfos.count, 272)
        let types = Dictionary(grouping: f.tensorInfos, by: \.type).mapValues(\.count)
        XCTAssertEqual(types, [.q4_1: 210, .f32: 61, .q8_0: 1])

        let c = try f.huggingFaceConfig()
        let e = try XCTUnwrap(jsonFixture("smollm2_expected.json")["config"] as? [String: Any])
        XCTAssertEqual(c.modelType, "llama")
        XCTAssertEqual(c.vocabSize, 49152)
        XCTAssertEqual(c.hiddenSize, 576)
        XCTAssertEqual(c.intermediateSize, 1536)
        XCTAssertEqual(c.numHiddenLayers, 30)
        XCTAssertEqual(c.numAttentionHeads, 9)
        XCTAssertEqual(c.numKeyValueHeads, 3)
        XCTAssertEqual(c.headDim, 64)
        XCTAssertEqual(c.rmsNormEps, 1e-5)   // float32 9.9999997e-06 read back as the config's 1e-05
        XCTAssertEqual(Float(c.rmsNormEps), Float(try XCTUnwrap(e["rms_norm_eps"] as? Double)))
        XCTAssertEqual(c.ropeTheta, 100_000)
        XCTAssertEqual(c.maxPositionEmbeddings, 8192)
        XCTAssertTrue(c.tieWordEmbeddings)
        XCTAssertEqual(c.bosTokenId, 1)
        XCTAssertEqual(c.eosTokenId, 2)
        for key in ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "max_position_embeddings", "bos_token_id", "eos_token_id"] {
            XCTAssertEqual((c.json[key] as? NSNumber)?.intValue, e[key] as? Int, key)
        }
    }

    /// Every tensor, dequantized and un-permuted, equals what `transformers` loads from the GGUF:
    /// exact checksums of all 272 tensors, and whole rows of a few.
    func testSmolLM2TensorsEqualTransformers() throws {
        let f = try GGUFFile(path: try smolLM2Path())
        let expected = try jsonFixture("smollm2_expected.json")
        let sums = try XCTUnwrap(expected["tensors"] as? [String: [String: Any]])
        XCTAssertEqual(f.huggingFaceTensorNames, sums.keys.sorted())
        let start = Date()
        let all = try f.huggingFaceTensors()
        let seconds = Date().timeIntervalSince(start)
        print("SmolLM2: dequantized \(all.count) tensors (\(all.values.reduce(0) { $0 + $1.count }) values) in \(String(format: "%.2f", seconds)) s")
        for (name, e) in sums {
            let t = try XCTUnwrap(all[name], name)
            XCTAssertEqual(t.shape, e["shape"] as? [Int], name)
            var sum: UInt64 = 0, weighted: UInt64 = 0
            let p = t.storage.pointer
            for i in 0..<t.count {
                let b = UInt64(p[i].bitPattern)
                sum &+= b
                weighted &+= b &* UInt64(i + 1)
            }
            XCTAssertEqual(String(sum), e["sum_bits"] as? String, "\(name) (\(e["gguf_type"] ?? ""))")
            XCTAssertEqual(String(weighted), e["weighted_sum_bits"] as? String, "\(name) (\(e["gguf_type"] ?? ""))")
        }
        for s in try XCTUnwrap(expected["slices"] as? [[String: Any]]) {
            let name = try XCTUnwrap(s["name"] as? String)
            let t = try XCTUnwrap(all[name])
            let want = floatsFromBase64(try XCTUnwrap(s["values"] as? String))
            let got: [Float]
            if let row = s["row"] as? Int {
                let cols = t.shape[1]
                got = Array(t.scalars[(row * cols)..<((row + 1) * cols)])
            } else {
                got = t.scalars
            }
            XCTAssertEqual(bitPatterns(got), bitPatterns(want), "\(name) row \(s["row"] ?? "all")")
        }
    }
}
