import DistillNN
import DistillTensor
import Foundation
import DistillTestSupport
import XCTest
@testable import DistillModels

/// `exportGGUF`: every architecture's export reads back (through Distill's GGUF reader, which the
/// parity tests hold to transformers and llama.cpp) as the same model; types per tensor follow
/// llama.cpp's rules; bad input is refused without leaving a file.
final class GGUFExportTests: XCTestCase {
    func tempDir() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("distill-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: d) }
        return d
    }

    /// A byte-level tokenizer of the fixtures' 96 tokens ("t0"…, and "a" + "b" = "ab").
    func standIn() throws -> Tokenizer {
        var tokens = (0..<96).map { "t\($0)" }
        tokens[80...82] = ["a", "b", "ab"]
        return try Tokenizer(ggufTokens: tokens, merges: ["a b"], tokenTypes: [], model: "gpt2", pre: "gpt2", eosId: 2)
    }

    /// The checkpoint fixtures with a GGUF layout, given a tokenizer (they have none): F32 exports
    /// load back with identical weights and logits; Gemma's norm shift, llama's permutation,
    /// Phi-3's fused tensors and LongRoPE factors, Llama 3's rope_freqs all survive the trip.
    func testF32ExportsReadBackAsTheSameModel() throws {
        let dir = try tempDir()
        let tok = try standIn()
        for name in ["llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2_gguf", "gemma3_gguf", "phi3", "phi3_partial"] {
            let model = try PretrainedModel.loadDirectory(try fixtureURL("architectures", name).path)
            model.tokenizer = tok
            let out = dir.appendingPathComponent("\(name).gguf").path
            let notices = try model.exportGGUF(to: out, type: .f32)
            XCTAssertEqual(notices.isEmpty, name != "mistral", "\(name): \(notices)")
            let back = try PretrainedModel.loadGGUF(out)
            let want = name == "mistral" ? "llama" : model.architecture.modelType
            XCTAssertEqual(back.architecture.modelType, want, name)
            let params = Dictionary(uniqueKeysWithValues: back.lm.namedParameters().map { ($0.name, $0.parameter.value) })
            for (p, a) in model.lm.namedParameters() {
                let b = try XCTUnwrap(params[p], "\(name): \(p)")
                XCTAssertLessThan(zip(a.value.scalars, b.scalars).map { abs($0 - $1) }.max()!, 1e-6, "\(name): \(p)")
            }
            // Mistral's window is lost (llama.cpp has none), so compare within it.
            let ids = Array([3, 17, 42, 8, 91, 5, 60, 2, 33, 70, 11, 4].prefix(name == "mistral" ? 4 : 12))
            let x = withoutGradients { model.lm.forward(ids, batch: 1, length: ids.count).logits.scalars }
            let y = withoutGradients { back.lm.forward(ids, batch: 1, length: ids.count).logits.scalars }
            XCTAssertLessThan(zip(x, y).map { abs($0 - $1) }.max()!, 1e-4, name)
            XCTAssertEqual(back.tokenizer?.fingerprint, tok.fingerprint, name)
        }
    }

    /// A BF16 GGUF keeps its matrices in bfloat16 in memory (rows of whole 32-value blocks; the
    /// others — the fixture's down_proj rows of 48 — load as Float32), and runs as the model with
    /// its weights rounded to bfloat16.
    func testBF16ExportLoadsAsBFloat16() throws {
        let dir = try tempDir()
        let model = try PretrainedModel.loadDirectory(try fixtureURL("architectures", "llama").path)
        model.tokenizer = try standIn()
        let out = dir.appendingPathComponent("llama-bf16.gguf").path
        try model.exportGGUF(to: out, type: .bf16)
        let back = try PretrainedModel.loadGGUF(out)
        var kept = 0, expanded = 0
        for (name, module) in back.lm.namedModules() {
            guard let l = module as? Linear else { continue }
            if l.weight.shape[1] % 32 == 0 {
                XCTAssertEqual(l.quantizedWeight?.format, .bf16, name)
                kept += 1
            } else {
                XCTAssertNil(l.quantizedWeight, name)
                expanded += 1
            }
        }
        XCTAssertGreaterThan(kept, 0)
        XCTAssertGreaterThan(expanded, 0)
        for (_, p) in model.lm.namedParameters() where p.value.rank == 2 {
            p.assign(Tensor(p.value.scalars.map { HalfPrecision.float(fromBFloat16: HalfPrecision.bfloat16(from: $0)) }, shape: p.shape))
        }
        let ids = [3, 17, 42, 8, 91, 5, 60, 2, 33, 70, 11, 4]
        let x = withoutGradients { model.lm.forward(ids, batch: 1, length: ids.count).logits.scalars }
        let y = withoutGradients { back.lm.forward(ids, batch: 1, length: ids.count).logits.scalars }
        XCTAssertLessThan(zip(x, y).map { abs($0 - $1) }.max()!, 1e-4)
    }

    /// A Qwen2 whose heads × head_dim is not its hidden size (a student with pruned heads), which
    /// llama.cpp's qwen2 layout cannot hold, goes out as llama (Q/K rows and biases permuted) and
    /// reads back as Qwen2 (a llama file with q/k/v biases only) with the same logits.
    func testQwen2WithPrunedHeadsExportsAsLlama() throws {
        let json: [String: Any] = ["model_type": "qwen2", "hidden_size": 32, "intermediate_size": 48, "num_attention_heads": 2,
                                   "num_key_value_heads": 1, "head_dim": 8, "num_hidden_layers": 2, "vocab_size": 96,
                                   "tie_word_embeddings": true]
        let config = ModelConfig(json: json, source: "test")
        let lm = TransformerLM(try Architecture.qwen2.decoderConfig(config), seed: 4)
        for (name, p) in lm.namedParameters() where name.hasSuffix(".bias") {
            var rng = RandomGenerator(seed: 9)
            p.assign(Tensor((0..<p.shape[0]).map { _ in rng.nextNormal() }, shape: p.shape))
        }
        let model = PretrainedModel(architecture: .qwen2, config: config, lm: lm, path: "/models/pruned", tokenizer: try standIn())
        let out = try tempDir().appendingPathComponent("pruned.gguf").path
        let notices = try model.exportGGUF(to: out, type: .f32)
        XCTAssertTrue(notices.contains { $0.contains("written as llama") }, "\(notices)")
        let back = try PretrainedModel.loadGGUF(out)
        XCTAssertEqual(try GGUFFile(path: out).architecture, "llama")
        XCTAssertEqual(back.architecture.modelType, "qwen2")
        let ids = [3, 17, 42, 8, 91, 5]
        let x = withoutGradients { lm.forward(ids, batch: 1, length: ids.count).logits.scalars }
        let y = withoutGradients { back.lm.forward(ids, batch: 1, length: ids.count).logits.scalars }
        XCTAssertLessThan(zip(x, y).map { abs($0 - $1) }.max()!, 1e-4)
    }

    /// Quantized types follow llama.cpp's choices: vectors F32, the output head Q6_K (Q8_0 where
    /// rows are not a multiple of 256), K-quants falling back to Q5_0 / Q5_1 / Q8_0 on such rows,
    /// Q4_K_M's attn_v and ffn_down in Q6_K on the first and last eighth of the layers.
    func testTensorTypesFollowLlamaCppRules() throws {
        let tok = try tokLoad("qwen2_style")
        // 16 layers, hidden 256 (K-quant rows), intermediate 320 (not a multiple of 256).
        let json: [String: Any] = ["model_type": "llama", "hidden_size": 256, "intermediate_size": 320, "num_attention_heads": 4,
                                   "num_key_value_heads": 2, "num_hidden_layers": 16, "vocab_size": tok.vocabSize,
                                   "tie_word_embeddings": false]
        let config = ModelConfig(json: json, source: "test")
        let lm = TransformerLM(try Architecture.llama.decoderConfig(config), seed: 1)
        let model = PretrainedModel(architecture: .llama, config: config, lm: lm, path: "/models/tiny.gguf", tokenizer: tok)
        let dir = try tempDir()
        func types(_ t: GGUFExportType) throws -> [String: GGMLType] {
            let out = dir.appendingPathComponent("\(t.rawValue).gguf").path
            try model.exportGGUF(to: out, type: t)
            let f = try GGUFFile(path: out)
            XCTAssertEqual(try f.int("general.file_type"), Int(t.fileType))
            return Dictionary(uniqueKeysWithValues: f.tensorInfos.map { ($0.name, $0.type) })
        }
        let q4km = try types(.q4_k_m)
        XCTAssertEqual(q4km["blk.0.attn_norm.weight"], .f32)
        XCTAssertEqual(q4km["output.weight"], .q6_K)
        XCTAssertEqual(q4km["token_embd.weight"], .q4_K)
        XCTAssertEqual(q4km["blk.5.attn_q.weight"], .q4_K)
        XCTAssertEqual(q4km["blk.0.attn_v.weight"], .q6_K)      // first eighth
        XCTAssertEqual(q4km["blk.15.attn_v.weight"], .q6_K)     // last eighth
        XCTAssertEqual(q4km["blk.4.attn_v.weight"], .q6_K)      // (4 − 2) % 3 == 2
        XCTAssertEqual(q4km["blk.3.attn_v.weight"], .q4_K)
        XCTAssertEqual(q4km["blk.1.ffn_down.weight"], .q8_0)    // rows of 320: Q6_K falls back
        XCTAssertEqual(q4km["blk.3.ffn_down.weight"], .q5_0)    // rows of 320: Q4_K falls back
        let q5km = try types(.q5_k_m)
        XCTAssertEqual(q5km["blk.3.ffn_down.weight"], .q5_1)
        XCTAssertEqual(q5km["blk.3.attn_q.weight"], .q5_K)
        let q40 = try types(.q4_0)
        XCTAssertEqual(q40["output.weight"], .q6_K)
        XCTAssertEqual(q40["blk.0.attn_q.weight"], .q4_0)
        XCTAssertEqual(try types(.q8_0)["output.weight"], .q8_0)
        XCTAssertEqual(try types(.q6_k)["blk.2.attn_q.weight"], .q6_K)
        XCTAssertEqual(try types(.f16)["blk.0.ffn_up.weight"], .f16)
        XCTAssertEqual(try types(.f16)["blk.0.ffn_norm.weight"], .f32)
        // Every quantized export loads back; the logits' relative error grows as bits shrink
        // (16 random layers amplify weight noise, so the sizes say little about trained models).
        let ids = [5, 9, 100, 7, 42]
        let ref = withoutGradients { lm.forward(ids, batch: 1, length: ids.count).logits.scalars }
        var errors: [Float] = []
        for t in [GGUFExportType.f16, .q8_0, .q6_k, .q5_k_m, .q4_k_m, .q4_0] {
            let back = try PretrainedModel.loadGGUF(dir.appendingPathComponent("\(t.rawValue).gguf").path)
            let y = withoutGradients { back.lm.forward(ids, batch: 1, length: ids.count).logits.scalars }
            let rel = (zip(ref, y).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / ref.map { $0 * $0 }.reduce(0, +)).squareRoot()
            print("export \(t.rawValue): relative logit error \(rel)")
            errors.append(rel)
        }
        XCTAssertLessThan(errors[0], 2e-3)
        XCTAssertLessThan(errors[1], 0.02)
        XCTAssertEqual(errors, errors.sorted(), "error should grow from f16 to q4_0")
        XCTAssertLessThan(errors.last!, 0.5)
    }

    /// A missing directory, a Gemma 3 whose layer pattern llama.cpp cannot express, and an
    /// architecture without a layout are refused naming the problem; nothing is left behind.
    func testBadInputIsRefusedWithoutAFile() throws {
        let dir = try tempDir()
        let tok = try standIn()
        let llama = try PretrainedModel.loadDirectory(try fixtureURL("architectures", "llama").path)
        llama.tokenizer = tok
        let missing = dir.appendingPathComponent("no/such/dir/m.gguf").path
        assertFileError([missing, "does not exist"]) { try llama.exportGGUF(to: missing, type: .f16) }
        let gemma3 = try PretrainedModel.loadDirectory(try fixtureURL("architectures", "gemma3_text").path)
        gemma3.tokenizer = tok
        let out = dir.appendingPathComponent("g3.gguf").path
        assertFileError(["layer_types", "every sixth layer global"]) { try gemma3.exportGGUF(to: out, type: .f16) }
        // (gemma2's fixture scales scores by query_pre_attn_scalar 12, llama.cpp by head_dim 16.)
        let gemma2 = try PretrainedModel.loadDirectory(try fixtureURL("architectures", "gemma2").path)
        gemma2.tokenizer = tok
        assertFileError(["query_pre_attn_scalar", "llama.cpp scales gemma2 scores"]) { try gemma2.exportGGUF(to: out, type: .f16) }
        let noTokenizer = try PretrainedModel.loadDirectory(try fixtureURL("architectures", "qwen2").path)
        assertFileError(["tokenizer"]) { try noTokenizer.exportGGUF(to: out, type: .f16) }
        noTokenizer.tokenizer = try tokLoad("qwen2_style")
        assertFileError(["tokens", "vocabulary of 96"]) { try noTokenizer.exportGGUF(to: out, type: .f16) }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
        // A tensor whose rows do not fill the blocks is named.
        var w = GGUFWriter(architecture: "llama", file: out)
        assertFileError([out, "w", "rows of 40 values", "Q8_0 blocks of 32"]) {
            try w.add("w", shape: [2, 40], as: .q8_0) { Tensor(zeros: [2, 40]) }
        }
        assertFileError([out, "w", "cannot write tensors as Q2_K"]) {
            try w.add("w", shape: [2, 256], as: .q2_K) { Tensor(zeros: [2, 256]) }
        }
    }

    /// A disk that fills up mid-write (simulated by a file-size limit, which fails writes past it as
    /// a full disk does; and on a real 128 KiB tmpfs where the test may mount one): a clear error,
    /// the file that was there before untouched, no temporary file left.
    func testFullDiskLeavesThePreviousFileAndNoTemporary() throws {
        let dir = try tempDir()
        let llama = try PretrainedModel.loadDirectory(try fixtureURL("architectures", "gemma3_gguf").path)
        llama.tokenizer = try standIn()
        let out = dir.appendingPathComponent("model.gguf").path
        try Data("previous".utf8).write(to: URL(fileURLWithPath: out))
        let error = withFileSizeLimit(64 << 10) {
            assertFileError([out, "write failed"]) { try llama.exportGGUF(to: out, type: .f32) }
        }
        XCTAssertNotNil(error)
        XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "previous")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["model.gguf"])

        // A real full filesystem, where this process may mount one (root, outside containers that forbid it).
        guard let fs = try? SmallFilesystem(bytes: 128 << 10) else { return }
        defer { fs.unmount() }
        let mnt = fs.url
        let full = mnt.appendingPathComponent("model.gguf").path
        assertFileError([full, "No space left on device"]) { try llama.exportGGUF(to: full, type: .f32) }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: mnt.path), [])
    }
}
