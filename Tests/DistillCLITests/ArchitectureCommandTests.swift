import DistillModels
import DistillNN
import Distillation
import Foundation
import XCTest
@testable import distill

/// `distill inspect`, `score`, `generate`, `student`, `train` and `export` run on a tiny random model of every
/// architecture (saved as a Hugging Face directory with a real tokenizer: the servers' fixture), and
/// `inspect` on the GGUF fixtures.
final class ArchitectureCommandTests: XCTestCase {
    static let testsDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    static let tokenizerDir = testsDir.appendingPathComponent("DistillServerTests/Fixtures/tokenizer")

    /// Each architecture with the settings that exercise its variant (windows shorter than the
    /// texts, soft caps, fused tensors).
    static let architectures: [(String, [String: Any])] = [
        ("llama", [:]),
        ("qwen2", [:]),
        ("qwen3", ["head_dim": 16]),
        ("mistral", ["sliding_window": 4, "head_dim": 16]),
        ("gemma", ["head_dim": 16]),
        ("gemma2", ["head_dim": 16, "sliding_window": 4, "query_pre_attn_scalar": 12,
                    "attn_logit_softcapping": 3.0, "final_logit_softcapping": 5.0]),
        ("gemma3_text", ["head_dim": 16, "sliding_window": 4, "query_pre_attn_scalar": 12,
                         "layer_types": ["sliding_attention", "full_attention"]]),
        ("phi3", ["sliding_window": 5]),
    ]

    func run(_ args: [String]) throws {
        var command = try Distill.parseAsRoot(args)
        try command.run()
    }

    func makeModel(_ type: String, _ extra: [String: Any], at dir: URL) throws {
        let tok = try Tokenizer(directory: Self.tokenizerDir)
        var json: [String: Any] = [
            "model_type": type, "hidden_size": 32, "intermediate_size": 48, "num_attention_heads": 4,
            "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": tok.vocabSize, "max_position_embeddings": 128,
            "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": type.hasPrefix("gemma"),
            "eos_token_id": try XCTUnwrap(tok.eosTokenIds.first),
        ]
        for (k, v) in extra { json[k] = v }
        let config = ModelConfig(json: json, source: "\(type) test config")
        let arch = try Architecture.named(type, source: config.source)
        let lm = TransformerLM(try arch.decoderConfig(config), seed: 3)
        // `path` points at the tokenizer's directory, so saving copies its files along.
        let model = PretrainedModel(architecture: arch, config: config, lm: lm, path: Self.tokenizerDir.path,
                                    tokenizer: tok, chatTemplate: try ChatTemplate(source: tok.chatTemplate!))
        try model.saveDirectory(dir.path)
    }

    func testEveryCommandRunsOnEveryArchitecture() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("distill-arch-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let data = root.appendingPathComponent("train.jsonl")
        let lines = (0..<8).map { i in "{\"messages\": [{\"role\": \"user\", \"content\": \"what is \(i) plus \(i)?\"}, {\"role\": \"assistant\", \"content\": \"\(i) plus \(i) is \(2 * i).\"}]}" }
        try lines.joined(separator: "\n").write(to: data, atomically: true, encoding: .utf8)

        for (type, extra) in Self.architectures {
            let teacher = root.appendingPathComponent(type), student = root.appendingPathComponent("\(type)-student")
            try makeModel(type, extra, at: teacher)
            try run(["inspect", teacher.path])
            try run(["score", "--model", teacher.path, "--text", "three plus four is seven, and the sum is odd."])
            try run(["generate", "--model", teacher.path, "--prompt", "what is two plus two?", "--chat",
                     "--max-tokens", "6", "--temperature", "0"])
            try run(["student", "--from", teacher.path, "--layers", "1", "--hidden", "32", "--heads", "4", "--kv-heads", "2",
                     "--intermediate", "32", "--out", student.path])
            let derived = try PretrainedModel.loadDirectory(student.path)
            XCTAssertEqual(derived.architecture.modelType, type)
            XCTAssertEqual(derived.lm.config.layers, 1)

            // KD from the teacher into the derived student: two steps, and the student moves.
            let out = root.appendingPathComponent("\(type)-run")
            let recipe = root.appendingPathComponent("\(type).yaml")
            try """
            teacher:
              path: \(teacher.path)
            student:
              path: \(student.path)
            data:
              train: \(data.path)
              eval_fraction: 0.25
              max_length: 48
            loss:
              kind: kd
              alpha: 0.5
              temperature: 2.0
            schedule:
              steps: 2
              batch_size: 2
              lr: 1.0e-2
              warmup: 0
              eval_every: 2
              checkpoint_every: 2
            output:
              dir: \(out.path)
            seed: 1
            """.write(to: recipe, atomically: true, encoding: .utf8)
            try run(["train", recipe.path, "--log-every", "1"])
            let trained = try PretrainedModel.loadDirectory(out.path)
            XCTAssertEqual(trained.architecture.modelType, type)
            let before = derived.lm.namedParameters().map { $0.parameter.value.scalars }
            let after = trained.lm.namedParameters().map { $0.parameter.value.scalars }
            XCTAssertNotEqual(before, after, "\(type): training changed nothing")
            XCTAssertTrue(after.allSatisfy { $0.allSatisfy(\.isFinite) }, type)

            // The trained student exports to GGUF where llama.cpp can express it (Gemma 2/3 here
            // use score scales and layer patterns llama.cpp does not) and scores from the file.
            if !["gemma2", "gemma3_text"].contains(type) {
                let gguf = root.appendingPathComponent("\(type)-q8_0.gguf").path
                try run(["export", out.path, "--type", "q8_0", "--out", gguf])
                try run(["score", "--model", gguf, "--text", "three plus four is seven."])
                XCTAssertEqual(try PretrainedModel.loadGGUF(gguf).lm.config.layers, 1)
            }
            // Every architecture exports to ONNX (checked against onnxruntime in ONNXExportTests).
            let onnx = root.appendingPathComponent("\(type)-onnx")
            try run(["export", out.path, "--format", "onnx", "--dtype", "f16", "--out", onnx.path])
            for f in ["model.onnx", "config.json", "tokenizer.json"] {
                XCTAssertTrue(FileManager.default.fileExists(atPath: onnx.appendingPathComponent(f).path), "\(type): \(f)")
            }
        }
    }

    /// `lora merge` writes base + PEFT adapter, the same weights `--adapter` (score, generate,
    /// serve, export) merges in after loading; a directory without an adapter is named.
    func testLoRAMergeAndAdapterOptions() throws {
        let fixture = Self.testsDir.appendingPathComponent("DistillationTests/Fixtures/peft_adapter")
        let base = fixture.appendingPathComponent("base").path, adapter = fixture.appendingPathComponent("adapter").path
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("distill-lora-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let merged = root.appendingPathComponent("merged").path
        try run(["lora", "merge", "--base", base, "--adapter", adapter, "--out", merged])
        let a = try PretrainedModel.loadDirectory(merged)
        let b = try PretrainedModel.loadDirectory(base)
        try LoRAAdapterFiles.merge(adapter, into: b)
        for ((name, x), (_, y)) in zip(a.lm.namedParameters(), b.lm.namedParameters()) {
            XCTAssertEqual(x.value.scalars, y.value.scalars, name)
        }
        XCTAssertThrowsError(try run(["lora", "merge", "--base", base, "--adapter", root.path, "--out", merged])) { e in
            XCTAssertTrue(Distill.message(for: e).contains("adapter_config.json"), Distill.message(for: e))
        }
    }

    /// `inspect` reads the GGUF fixtures of every architecture llama.cpp names.
    func testInspectReadsGGUFFiles() throws {
        let fixtures = Self.testsDir.appendingPathComponent("DistillModelsTests/Fixtures/architectures")
        for name in ["llama", "qwen3", "gemma", "gemma2_gguf", "gemma3_gguf", "phi3"] {
            try run(["inspect", fixtures.appendingPathComponent(name).appendingPathComponent("model.gguf").path])
        }
    }
}
