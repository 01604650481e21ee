import DistillModels
import DistillNN
import DistillTensor
@testable import Distillation
import Foundation
import XCTest

/// End-to-end runs of tiny recipes: a 2-layer Qwen2 teacher (the fixture's widths, the tiny
/// Qwen2-style tokenizer, vocabulary 512) distilled into a derived 1-layer student.
final class RecipeRunnerTests: XCTestCase {
    static let modelFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("DistillModelsTests/Fixtures")

    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("recipe-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    /// A model directory with the given tokenizer fixture.
    func makeModel(_ name: String, tokenizer: String = "qwen2_style", vocab: Int = 512, seed: UInt64 = 42) throws -> URL {
        var config = try ModelConfig(contentsOf: Self.modelFixtures.appendingPathComponent("architectures/qwen2/config.json"))
        config.json["vocab_size"] = vocab
        let lm = TransformerLM(try Architecture.qwen2.decoderConfig(config), seed: seed)
        let dir = tmp.appendingPathComponent(name)
        try PretrainedModel(architecture: .qwen2, config: config, lm: lm, path: dir.path).saveDirectory(dir.path)
        for file in ["tokenizer.json", "tokenizer_config.json"] {
            let src = Self.modelFixtures.appendingPathComponent("tokenizer/\(tokenizer)/\(file)")
            if FileManager.default.fileExists(atPath: src.path) {
                try FileManager.default.copyItem(at: src, to: dir.appendingPathComponent(file))
            }
        }
        return dir
    }

    func makeData() throws -> URL {
        let lines = (0..<8).map { i in
            #"{"text": "The cat sat on mat number \#(i). Counting: \#(i) \#(i + 1) \#(i + 2) \#(i + 3)."}"#
        }
        let url = tmp.appendingPathComponent("train.jsonl")
        try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func recipe(teacher: URL, data: URL, out: URL, extra: String = "") -> String {
        """
        teacher:
          path: \(teacher.path)
        student:
          derive: {layers: 1, hidden: 16, heads: 2, kv_heads: 1, intermediate: 32}
        data:
          train: \(data.path)
          eval_fraction: 0.25
          max_length: 24
        loss:
          kind: kd
          alpha: 0.5
          temperature: 2
          divergence: forward_kl
          feature_weight: 0.1
        schedule:
          steps: 4
          batch_size: 2
          lr: 1.0e-3
          warmup: 1
          eval_every: 2
          checkpoint_every: 2
        output:
          dir: \(out.path)
        seed: 3
        \(extra)
        """
    }

    func testKDRunWritesALoadableStudentAndMetrics() throws {
        let teacher = try makeModel("teacher"), data = try makeData(), out = tmp.appendingPathComponent("run")
        let r = try Recipe.parse(yaml: recipe(teacher: teacher, data: data, out: out))
        var events: [String] = []
        let result = try RecipeRunner.run(recipe: r) { e in
            switch e {
            case .prepared(let s): events.append("prepared \(s.trainSequences)+\(s.evalSequences)")
            case .training(.step(let m)): events.append("step \(m.step)")
            case .saved: events.append("saved")
            default: break
            }
        }
        XCTAssertEqual(events, ["prepared 6+2", "step 1", "step 2", "step 3", "step 4", "saved"])
        XCTAssertEqual(result.steps, 4)
        XCTAssertNotNil(result.lastMetrics?.soft)
        XCTAssertNotNil(result.lastMetrics?.feature)

        let student = try PretrainedModel.load(out.path)
        XCTAssertEqual(student.lm.config.layers, 1)
        XCTAssertEqual(student.lm.config.hidden, 16)
        XCTAssertEqual(student.lm.config.vocabSize, 512)
        XCTAssertNotNil(student.tokenizer)
        let metrics = try MetricsLog(url: out.appendingPathComponent("metrics.jsonl")).read()
        XCTAssertEqual(metrics.map(\.step), [1, 2, 3, 4])
        XCTAssertNotNil(metrics[1].evalLoss)
        XCTAssertTrue(metrics.allSatisfy { $0.loss.isFinite })
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("recipe.json").path))
        XCTAssertEqual(Checkpoint.list(in: out.appendingPathComponent("checkpoints")).map(\.step), [2, 4])

        // A fresh run refuses a directory with checkpoints; --resume continues to the new step count.
        XCTAssertThrowsError(try RecipeRunner.run(recipe: r)) { e in
            XCTAssertTrue("\(e)".contains("pass --resume"), "\(e)")
        }
        let longer = try Recipe.parse(yaml: recipe(teacher: teacher, data: data, out: out), overrides: ["schedule.steps=6"])
        let resumed = try RecipeRunner.run(recipe: longer, resume: true)
        XCTAssertEqual(resumed.resumedFrom?.lastPathComponent, "step-00000004")
        XCTAssertEqual(try MetricsLog(url: out.appendingPathComponent("metrics.jsonl")).read().map(\.step), [1, 2, 3, 4, 5, 6])
    }

    /// `teacher.dtype: bf16`: the teacher's matrices held in bfloat16 after the student is derived
    /// from its Float32 weights; training runs and the note says what was saved.
    func testBFloat16TeacherTrains() throws {
        let teacher = try makeModel("teacher"), data = try makeData(), out = tmp.appendingPathComponent("bf16")
        let yaml = recipe(teacher: teacher, data: data, out: out)
            .replacingOccurrences(of: "  path: \(teacher.path)\n", with: "  path: \(teacher.path)\n  dtype: bf16\n")
        let r = try Recipe.parse(yaml: yaml)
        XCTAssertEqual(r.teacher?.dtype, "bf16")
        var notes: [String] = []
        let result = try RecipeRunner.run(recipe: r) { e in if case .note(let n) = e { notes.append(n) } }
        XCTAssertEqual(result.steps, 4)
        XCTAssertTrue(result.lastMetrics?.soft?.isFinite ?? false)
        XCTAssertTrue(notes.contains { $0.hasPrefix("teacher matrices in bfloat16") }, "\(notes)")
    }

    func testLoRARunSavesOnlyAdapters() throws {
        let teacher = try makeModel("teacher"), student = try makeModel("student", seed: 5), data = try makeData()
        let out = tmp.appendingPathComponent("lora")
        let yaml = recipe(teacher: teacher, data: data, out: out)
            .replacingOccurrences(of: "derive: {layers: 1, hidden: 16, heads: 2, kv_heads: 1, intermediate: 32}", with: "path: \(student.path)")
            .replacingOccurrences(of: "  feature_weight: 0.1\n", with: "")
        let r = try Recipe.parse(yaml: yaml + "\nlora: {rank: 2, alpha: 4, target_modules: [q_proj, v_proj]}\n")
        try RecipeRunner.run(recipe: r)
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: out.path))
        XCTAssertTrue(files.isSuperset(of: ["adapter_config.json", "adapter_model.safetensors", "metrics.jsonl"]), "\(files)")
        XCTAssertFalse(files.contains("model.safetensors"))
        XCTAssertEqual(try LoRAAdapterFiles.readConfig(out.path).rank, 2)
        // Adapters resume from their checkpoint too.
        let longer = try Recipe.parse(yaml: yaml + "\nlora: {rank: 2, alpha: 4, target_modules: [q_proj, v_proj]}\n",
                                      overrides: ["schedule.steps=6"])
        XCTAssertEqual(try RecipeRunner.run(recipe: longer, resume: true).steps, 6)
        XCTAssertEqual(try MetricsLog(url: out.appendingPathComponent("metrics.jsonl")).read().count, 6)
    }

    func testDifferentTokenizersAreRefused() throws {
        let teacher = try makeModel("teacher"), data = try makeData()
        let student = try makeModel("student", tokenizer: "llama3_style")
        let yaml = recipe(teacher: teacher, data: data, out: tmp.appendingPathComponent("x"))
            .replacingOccurrences(of: "derive: {layers: 1, hidden: 16, heads: 2, kv_heads: 1, intermediate: 32}", with: "path: \(student.path)")
        XCTAssertThrowsError(try RecipeRunner.run(recipe: try Recipe.parse(yaml: yaml))) { e in
            guard case RecipeRunError.vocabularyMismatch = e else { return XCTFail("\(e)") }
            XCTAssertTrue("\(e)".contains("different vocabularies"), "\(e)")
        }
    }

    /// The same pair with loss.cross_tokenizer: both losses train end to end and save the student.
    func testDifferentTokenizersTrainWithACrossTokenizerLoss() throws {
        let teacher = try makeModel("teacher"), data = try makeData()
        let student = try makeModel("student", tokenizer: "llama3_style")
        for loss in ["uld", "align"] {
            let out = tmp.appendingPathComponent("x-\(loss)")
            let yaml = recipe(teacher: teacher, data: data, out: out)
                .replacingOccurrences(of: "derive: {layers: 1, hidden: 16, heads: 2, kv_heads: 1, intermediate: 32}", with: "path: \(student.path)")
                .replacingOccurrences(of: "  divergence: forward_kl\n  feature_weight: 0.1", with: "  temperature: 1\n  cross_tokenizer: \(loss)")
                .replacingOccurrences(of: "  temperature: 2\n", with: "")
            let r = try RecipeRunner.run(recipe: try Recipe.parse(yaml: yaml))
            XCTAssertEqual(r.steps, 4)
            let m = try XCTUnwrap(r.lastMetrics)
            XCTAssertTrue(m.soft!.isFinite && m.soft! > 0, "\(loss): soft \(String(describing: m.soft))")
            XCTAssertNotNil(m.hard)
            XCTAssertNotNil(try PretrainedModel.load(out.path).tokenizer)
        }
    }

    func testProgressiveRunWithCurriculumPackingAndAttention() throws {
        let teacher = try makeModel("teacher"), data = try makeData(), out = tmp.appendingPathComponent("prog")
        let r = try Recipe.parse(yaml: recipe(teacher: teacher, data: data, out: out), overrides: [
            "loss.kind=progressive", "loss.divergence=jsd(0.3)", "loss.attention_layers=[[0, 1]]", "data.layout=pack",
            "schedule.curriculum=true", "schedule.steps=5", "schedule.decay=linear", "schedule.checkpoint_every=null",
            "loss.label_smoothing=0.1",
        ])
        let result = try RecipeRunner.run(recipe: r)
        XCTAssertEqual(result.steps, 5)
        let metrics = try MetricsLog(url: result.metricsLog).read()
        XCTAssertEqual(metrics.count, 5)
        XCTAssertNil(metrics[0].feature)            // warm-up: soft + hard only
        XCTAssertNotNil(metrics[4].attention)       // refinement: attention term on
        XCTAssertTrue(Checkpoint.list(in: out.appendingPathComponent("checkpoints")).isEmpty)
        XCTAssertThrowsError(try RecipeRunner.run(recipe: r, resume: true)) { e in
            XCTAssertTrue("\(e)".contains("no checkpoint"), "\(e)")
        }
        _ = try PretrainedModel.load(out.path)
    }
}
