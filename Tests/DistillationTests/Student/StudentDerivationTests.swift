import DistillModels
import DistillNN
import DistillTensor
import Distillation
import Foundation
import XCTest

final class StudentDerivationTests: XCTestCase {
    /// Tests/DistillModelsTests/Fixtures (tokenizer files and the tiny qwen2 checkpoint).
    static let modelFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("DistillModelsTests/Fixtures")

    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("student-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    /// A 5-layer Qwen2 teacher (widths of the fixture checkpoint) saved as a directory with a
    /// tokenizer.
    func makeTeacher(layers: Int = 5) throws -> PretrainedModel {
        let fixture = try ModelConfig(contentsOf: Self.modelFixtures.appendingPathComponent("architectures/qwen2/config.json"))
        var config = fixture
        config.json["num_hidden_layers"] = layers
        let lm = TransformerLM(try Architecture.qwen2.decoderConfig(config), seed: 42)
        let dir = tmp.appendingPathComponent("teacher")
        try PretrainedModel(architecture: .qwen2, config: config, lm: lm, path: dir.path).saveDirectory(dir.path)
        for name in ["tokenizer.json", "tokenizer_config.json"] {
            try FileManager.default.copyItem(at: Self.modelFixtures.appendingPathComponent("tokenizer/qwen2_style/\(name)"),
                                             to: dir.appendingPathComponent(name))
        }
        return try PretrainedModel.loadDirectory(dir.path)
    }

    func values(_ m: Module) -> [String: [Float]] {
        Dictionary(uniqueKeysWithValues: m.namedParameters().map { ($0.name, $0.parameter.value.scalars) })
    }

    func testLayerMapIsAUniformPickKeepingFirstAndLast() {
        // j(i) = round(i·(L_t − 1)/(L_s − 1))
        XCTAssertEqual(StudentDerivation.layerMap(teacherLayers: 24, studentLayers: 4), [0, 8, 15, 23])   // 7.67→8, 15.33→15
        XCTAssertEqual(StudentDerivation.layerMap(teacherLayers: 5, studentLayers: 3), [0, 2, 4])
        XCTAssertEqual(StudentDerivation.layerMap(teacherLayers: 12, studentLayers: 6), [0, 2, 4, 7, 9, 11])  // 2.2, 4.4, 6.6, 8.8
        XCTAssertEqual(StudentDerivation.layerMap(teacherLayers: 5, studentLayers: 2), [0, 4])
        XCTAssertEqual(StudentDerivation.layerMap(teacherLayers: 5, studentLayers: 1), [0])
    }

    func testSameWidthsCopyEmbeddingHeadNormAndPickedLayers() throws {
        let teacher = try makeTeacher()
        let s = try StudentDerivation.derive(from: teacher, options: StudentOptions(layers: 3, hidden: 32, heads: 4, kvHeads: 2, intermediate: 48))
        XCTAssertEqual(s.initialization, .copiedFromTeacher(layerMap: [0, 2, 4]))
        let t = values(teacher.lm), v = values(s.model.lm)
        for name in ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"] {
            XCTAssertEqual(v[name], t[name], name)
        }
        for (i, j) in [0, 2, 4].enumerated() {
            for suffix in ["self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                           "mlp.gate_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight"] {
                XCTAssertEqual(v["model.layers.\(i).\(suffix)"], t["model.layers.\(j).\(suffix)"], "layer \(i) ← \(j): \(suffix)")
            }
        }
        XCTAssertEqual(v.count, t.count - 2 * 12)   // 12 tensors per Qwen2 layer (q/k/v biases included)
        // Parameters: embed 96·32 + head 96·32 + norm 32 + per layer (norms 64, q 1056, k 528, v 528, o 1024, mlp 4608)
        let perLayer = 64 + 1056 + 528 + 528 + 1024 + 3 * 32 * 48
        XCTAssertEqual(s.parameterCount, 2 * 96 * 32 + 32 + 3 * perLayer)
        XCTAssertEqual(s.teacherParameterCount, 2 * 96 * 32 + 32 + 5 * perLayer)
        XCTAssertEqual(s.ratio, Double(s.parameterCount) / Double(s.teacherParameterCount), accuracy: 1e-12)
        XCTAssertEqual(try s.model.config.int("num_hidden_layers"), 3)
    }

    func testDifferentWidthsInitialiseRandomlyWithTheUsualStd() throws {
        let teacher = try makeTeacher()
        let o = StudentOptions(layers: 2, hidden: 64, heads: 8, kvHeads: 2, intermediate: 96, seed: 3)
        let s = try StudentDerivation.derive(from: teacher, options: o)
        // The fixture's config has initializer_range 0.2.
        XCTAssertEqual(s.initialization, .random(std: 0.2, seed: 3))
        let v = values(s.model.lm)
        XCTAssertEqual(v["model.layers.0.self_attn.q_proj.weight"]!.count, 64 * 64)
        let w = v["model.layers.0.mlp.up_proj.weight"]!
        let std = (w.map { $0 * $0 }.reduce(0, +) / Float(w.count)).squareRoot()
        XCTAssertEqual(std, 0.2, accuracy: 0.01)
        XCTAssertTrue(v["model.layers.1.self_attn.k_proj.bias"]!.allSatisfy { $0 == 0 })
        XCTAssertTrue(v["model.norm.weight"]!.allSatisfy { $0 == 1 })
        XCTAssertTrue(v["model.layers.0.input_layernorm.weight"]!.allSatisfy { $0 == 1 })
        XCTAssertEqual(v["model.embed_tokens.weight"]!.count, 96 * 64)   // same vocabulary
        XCTAssertNotEqual(v["model.embed_tokens.weight"]!, v["lm_head.weight"]!)
        // Seeded.
        let again = try StudentDerivation.derive(from: teacher, options: o)
        XCTAssertEqual(values(again.model.lm)["lm_head.weight"], v["lm_head.weight"])
        var o2 = o
        o2.seed = 4
        XCTAssertNotEqual(values(try StudentDerivation.derive(from: teacher, options: o2).model.lm)["lm_head.weight"], v["lm_head.weight"])
        // One differing attention width is enough for random initialisation, and so is a wider MLP.
        let fewerKV = try StudentDerivation.derive(from: teacher, options: StudentOptions(layers: 2, hidden: 32, heads: 4, kvHeads: 1, intermediate: 24))
        XCTAssertEqual(fewerKV.initialization, .random(std: 0.2, seed: 0))
        let wideMLP = try StudentDerivation.derive(from: teacher, options: StudentOptions(layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 64))
        XCTAssertEqual(wideMLP.initialization, .random(std: 0.2, seed: 0))
    }

    func testNarrowerMLPKeepsTheTeachersMostImportantNeurons() throws {
        let teacher = try makeTeacher()
        let s = try StudentDerivation.derive(from: teacher, options: StudentOptions(layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 20))
        XCTAssertEqual(s.initialization, .prunedFromTeacher(layerMap: [0, 4], intermediate: 20))
        let t = values(teacher.lm), v = values(s.model.lm)
        for name in ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"] { XCTAssertEqual(v[name], t[name], name) }
        for (i, j) in [(0, 0), (1, 4)] {
            for suffix in ["self_attn.q_proj.weight", "self_attn.k_proj.bias", "self_attn.o_proj.weight", "input_layernorm.weight",
                           "post_attention_layernorm.weight"] {
                XCTAssertEqual(v["model.layers.\(i).\(suffix)"], t["model.layers.\(j).\(suffix)"], "layer \(i) ← \(j): \(suffix)")
            }
            // Importance computed here independently: ‖gate_k‖·‖up_k‖·‖down_{:,k}‖ over the 48 neurons.
            let g = t["model.layers.\(j).mlp.gate_proj.weight"]!, u = t["model.layers.\(j).mlp.up_proj.weight"]!
            let d = t["model.layers.\(j).mlp.down_proj.weight"]!
            let h = 32, n = 48
            func norm(_ xs: [Float]) -> Double { xs.map { Double($0) * Double($0) }.reduce(0, +).squareRoot() }
            let score = (0..<n).map { k in
                norm(Array(g[(k * h)..<((k + 1) * h)])) * norm(Array(u[(k * h)..<((k + 1) * h)])) * norm((0..<h).map { d[$0 * n + k] })
            }
            let kept = (0..<n).sorted { score[$0] > score[$1] }.prefix(20).sorted()
            XCTAssertEqual(v["model.layers.\(i).mlp.gate_proj.weight"]!, kept.flatMap { Array(g[($0 * h)..<(($0 + 1) * h)]) })
            XCTAssertEqual(v["model.layers.\(i).mlp.up_proj.weight"]!, kept.flatMap { Array(u[($0 * h)..<(($0 + 1) * h)]) })
            XCTAssertEqual(v["model.layers.\(i).mlp.down_proj.weight"]!, (0..<h).flatMap { r in kept.map { d[r * n + $0] } })
        }
        XCTAssertEqual(try s.model.config.int("intermediate_size"), 20)
        // The pruned student loads back and computes what it computed before saving.
        let out = tmp.appendingPathComponent("pruned").path
        try StudentDerivation.write(s, teacher: teacher, to: out)
        let loaded = try PretrainedModel.loadDirectory(out)
        XCTAssertEqual(values(loaded.lm), v)
        // Pruning a whole MLP to the full width is a copy; to one neuron keeps the single best.
        let best = StudentDerivation.mostImportantNeurons(gate: Tensor([1, 0, 3, 0, 2, 0], shape: [3, 2]),
                                                          up: Tensor([1, 0, 1, 0, 1, 0], shape: [3, 2]),
                                                          down: Tensor([1, 1, 1, 0, 0, 0], shape: [2, 3]), keep: 1)
        XCTAssertEqual(best, [1])   // scores 1, 3, 2
        XCTAssertEqual(StudentDerivation.mostImportantNeurons(gate: Tensor([1, 0, 3, 0, 2, 0], shape: [3, 2]),
                                                              up: Tensor([1, 0, 1, 0, 1, 0], shape: [3, 2]),
                                                              down: Tensor([1, 1, 1, 0, 0, 0], shape: [2, 3]), keep: 3), [0, 1, 2])
    }

    func testWrittenStudentLoadsWithTokenizerAndSameOutputs() throws {
        let teacher = try makeTeacher()
        let out = tmp.appendingPathComponent("student").path
        let s = try StudentDerivation.derive(teacherPath: teacher.path,
                                             options: StudentOptions(layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: 48),
                                             output: out)
        XCTAssertEqual(s.initialization, .copiedFromTeacher(layerMap: [0, 4]))
        let loaded = try PretrainedModel.loadDirectory(out)
        XCTAssertEqual(loaded.architecture.modelType, "qwen2")
        XCTAssertEqual(try loaded.config.int("num_hidden_layers"), 2)
        XCTAssertEqual(try loaded.config.int("vocab_size"), 96)
        XCTAssertEqual(loaded.config.json["architectures"] as? [String], ["Qwen2ForCausalLM"])
        XCTAssertEqual(values(loaded.lm), values(s.model.lm))
        XCTAssertEqual(loaded.tokenizer?.fingerprint, teacher.tokenizer?.fingerprint)
        XCTAssertNotNil(loaded.tokenizer)
        for name in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + name), name)
        }
        let ids = [1, 5, 7, 2]
        let a = withoutGradients { loaded.lm.forward(ids, batch: 1, length: 4).logits.scalars }
        let b = withoutGradients { s.model.lm.forward(ids, batch: 1, length: 4).logits.scalars }
        XCTAssertEqual(a, b)
    }

    func testStudentFromTheFixtureCheckpoint() throws {
        let teacher = try PretrainedModel.loadDirectory(Self.modelFixtures.appendingPathComponent("architectures/qwen2").path)
        let s = try StudentDerivation.derive(from: teacher, options: StudentOptions(layers: 1, hidden: 32, heads: 4, kvHeads: 2, intermediate: 48))
        XCTAssertEqual(s.initialization, .copiedFromTeacher(layerMap: [0]))
        XCTAssertEqual(values(s.model.lm)["model.layers.0.mlp.up_proj.weight"], values(teacher.lm)["model.layers.0.mlp.up_proj.weight"])
        XCTAssertLessThan(s.ratio, 1)
    }

    /// Qwen3 (q/k norms, head_dim 16 ≠ hidden / heads), Mistral (sliding window) and Gemma 2
    /// (soft-capped logits, sandwich norms) teachers: a student keeps the head size and window,
    /// copies the q/k norms with its layers (also with pruned key/value groups), saves and loads
    /// back, and learns from its teacher by KD, also with the fused loss asked for.
    func testQwen3AndMistralStudentsDeriveAndTrain() throws {
        for name in ["qwen3", "mistral", "gemma2", "gemma3_text", "phi3"] {
            let teacher = try PretrainedModel.loadDirectory(Self.modelFixtures.appendingPathComponent("architectures/\(name)").path)
            let pruned = try StudentDerivation.derive(from: teacher, options: StudentOptions(layers: 1, hidden: 32, heads: 2, kvHeads: 1, intermediate: 48))
            XCTAssertEqual(pruned.model.lm.config.headDim, teacher.lm.config.headDim, name)
            XCTAssertEqual(pruned.model.lm.config.slidingWindow, teacher.lm.config.slidingWindow, name)
            if name == "qwen3" || name == "gemma3_text" {
                XCTAssertEqual(values(pruned.model.lm)["model.layers.0.self_attn.k_norm.weight"],
                               values(teacher.lm)["model.layers.0.self_attn.k_norm.weight"])
            }
            let out = tmp.appendingPathComponent("\(name)-student").path
            let s = try StudentDerivation.derive(from: teacher, options: StudentOptions(layers: 1, hidden: 32, heads: 4, kvHeads: 2, intermediate: 48), path: out)
            XCTAssertEqual(s.initialization, .copiedFromTeacher(layerMap: [0]), name)
            try StudentDerivation.write(s, teacher: teacher, to: out)
            let loaded = try PretrainedModel.loadDirectory(out)
            XCTAssertEqual(loaded.architecture.modelType, name)
            XCTAssertEqual(values(loaded.lm), values(s.model.lm))
            var rng = RandomGenerator(seed: 3)
            let data = (0..<6).map { _ in TokenSequence((0..<10).map { _ in Int(rng.next() % 96) }) }
            let c = TrainerConfiguration(totalSteps: 12, batchSize: 3, learningRate: .constant(3e-3), maxGradNorm: nil, seed: 1)
            let trainer = Trainer(student: loaded.lm, teacher: teacher.lm, train: data, plan: .kd(alpha: 1, temperature: 1), configuration: c)
            let first = try trainer.trainStep()
            for _ in 0..<10 { _ = try trainer.trainStep() }
            let last = try trainer.trainStep()
            XCTAssertLessThan(last.soft!, first.soft! * 0.9, "\(name): \(first.soft!) → \(last.soft!)")
            // Asked for the fused loss (chunk_size), the soft term still sees the real logits —
            // soft-capped for Gemma 2 — and equals the KL computed from both models' outputs.
            var chunked = c
            chunked.lossChunkSize = 4
            let t2 = Trainer(student: loaded.lm, teacher: teacher.lm, train: data, plan: .kd(alpha: 1, temperature: 2), configuration: chunked)
            let batch = Batch.make(Array(data.prefix(3)), layout: .padToLongest(padId: 0))
            let soft = try withoutGradients { try t2.loss(batch, plan: t2.plan(0)).soft! }
            let n = batch.batch * batch.length
            let direct = withoutGradients {
                DistillationLoss.softTargetKL(student: loaded.lm.forward(batch.ids, batch: batch.batch, length: batch.length).logits.reshaped([n, -1]),
                                              teacher: teacher.lm.forward(batch.ids, batch: batch.batch, length: batch.length).logits.reshaped([n, -1]),
                                              temperature: 2, mask: batch.lossMask).item
            }
            XCTAssertEqual(soft, direct, accuracy: 1e-5 * max(1, abs(direct)), name)
        }
    }

    func testLlamaTeacherWithTiedEmbeddingAndHeadDim() throws {
        let teacher = try PretrainedModel.loadDirectory(Self.modelFixtures.appendingPathComponent("architectures/llama").path)
        // Same widths: tied embedding (no lm_head) copied, head_dim kept.
        let copy = try StudentDerivation.derive(from: teacher, options: StudentOptions(layers: 1, hidden: 32, heads: 4, kvHeads: 2, intermediate: 48))
        XCTAssertEqual(copy.initialization, .copiedFromTeacher(layerMap: [0]))
        XCTAssertNil(copy.model.lm.lmHead)
        XCTAssertEqual(values(copy.model.lm)["model.embed_tokens.weight"], values(teacher.lm)["model.embed_tokens.weight"])
        // Different widths: head_dim follows hidden / heads; the saved student loads.
        let out = tmp.appendingPathComponent("llama-student").path
        let s = try StudentDerivation.derive(from: teacher, options: StudentOptions(layers: 2, hidden: 48, heads: 4, kvHeads: 1, intermediate: 64), path: out)
        XCTAssertEqual(try s.model.config.int("head_dim"), 12)
        XCTAssertEqual(s.initialization, .random(std: 0.2, seed: 0))
        try StudentDerivation.write(s, teacher: teacher, to: out)
        let loaded = try PretrainedModel.loadDirectory(out)
        XCTAssertEqual(loaded.architecture.modelType, "llama")
        XCTAssertEqual(loaded.lm.config.headDim, 12)
        XCTAssertEqual(loaded.lm.config.ropeScaling, teacher.lm.config.ropeScaling)
        XCTAssertEqual(values(loaded.lm), values(s.model.lm))
    }

    /// Fewer heads at the same hidden size: each layer keeps its most important key/value group
    /// (with that group's query heads, keys, values, biases and output columns), the head size
    /// stays the teacher's; a chosen layer map is used; the student saves and loads back.
    func testFewerHeadsKeepTheMostImportantKeyValueGroups() throws {
        let teacher = try makeTeacher()
        let o = StudentOptions(layers: 2, hidden: 32, heads: 2, kvHeads: 1, intermediate: 48, layerMap: [1, 3])
        let s = try StudentDerivation.derive(from: teacher, options: o)
        XCTAssertEqual(s.initialization, .prunedFromTeacher(layerMap: [1, 3], intermediate: 48))
        XCTAssertEqual(try s.model.config.int("head_dim"), 8)
        XCTAssertEqual(try s.model.config.int("num_attention_heads"), 2)
        let t = values(teacher.lm), v = values(s.model.lm)
        let h = 32, d = 8
        for (i, j) in [(0, 1), (1, 3)] {
            let p = "model.layers.\(j).self_attn."
            let vw = t[p + "v_proj.weight"]!, ow = t[p + "o_proj.weight"]!      // [2·8, 32], [32, 4·8]
            func norm(_ xs: [Float]) -> Double { xs.map { Double($0) * Double($0) }.reduce(0, +).squareRoot() }
            // Group g: value rows g·8..<(g+1)·8; its query heads 2g, 2g+1 (output columns of each).
            func part(_ xs: [Float], _ lo: Int, _ n: Int) -> [Float] { Array(xs[lo..<(lo + n)]) }
            /// Columns c..<c+n of every row of the [32, 32] output projection.
            func columns(_ c: Int, _ n: Int) -> [Float] {
                var xs: [Float] = []
                for r in 0..<h { xs += part(ow, r * 32 + c, n) }
                return xs
            }
            func column(_ head: Int) -> [Float] { columns(head * d, d) }
            let score = (0..<2).map { g -> Double in
                let value = norm(part(vw, g * d * h, d * h))
                return value * (norm(column(2 * g)) + norm(column(2 * g + 1)))
            }
            let g = score[0] >= score[1] ? 0 : 1
            XCTAssertEqual(s.keptKeyValueGroups[i], [g])
            let q = "model.layers.\(i).self_attn."
            let kvRows = d * h, qRows = 2 * d * h
            XCTAssertEqual(v[q + "k_proj.weight"]!, part(t[p + "k_proj.weight"]!, g * kvRows, kvRows), "layer \(i)")
            XCTAssertEqual(v[q + "v_proj.bias"]!, part(t[p + "v_proj.bias"]!, g * d, d))
            XCTAssertEqual(v[q + "q_proj.weight"]!, part(t[p + "q_proj.weight"]!, g * qRows, qRows))
            XCTAssertEqual(v[q + "q_proj.bias"]!, part(t[p + "q_proj.bias"]!, g * 2 * d, 2 * d))
            XCTAssertEqual(v[q + "o_proj.weight"]!, columns(g * 2 * d, 2 * d))
            XCTAssertEqual(v["model.layers.\(i).mlp.up_proj.weight"], t["model.layers.\(j).mlp.up_proj.weight"])
        }
        let out = tmp.appendingPathComponent("heads").path
        try StudentDerivation.write(s, teacher: teacher, to: out)
        let loaded = try PretrainedModel.loadDirectory(out)
        XCTAssertEqual(values(loaded.lm), v)
        let ids = [3, 17, 40, 2, 9]
        XCTAssertEqual(loaded.lm.forward(ids, batch: 1, length: 5).logits.scalars, s.model.lm.forward(ids, batch: 1, length: 5).logits.scalars)
        // Layer maps as written on the command line.
        XCTAssertEqual(try StudentOptions.parseLayerMap("0,3"), [0, 3])
        XCTAssertEqual(try StudentOptions.parseLayerMap(" 1 , 2 "), [1, 2])
        for (text, bad) in [("a,1", "a"), ("1,,2", ""), ("1.5", "1.5")] {
            XCTAssertThrowsError(try StudentOptions.parseLayerMap(text, option: "--student-layer-map")) { e in
                XCTAssertEqual("\(e)", "--student-layer-map: '\(bad)' is not a layer number (expected e.g. 0,3)")
            }
        }
        // Layer maps that do not fit are refused, naming the option.
        for bad in [[1], [3, 1], [1, 5]] {
            XCTAssertThrowsError(try StudentDerivation.derive(from: teacher, options: StudentOptions(layers: 2, hidden: 32, heads: 4, kvHeads: 2,
                                                                                                    intermediate: 48, layerMap: bad))) { e in
                guard case let .invalidOption(name, _)? = e as? StudentError else { return XCTFail("\(e)") }
                XCTAssertEqual(name, "--layer-map")
            }
        }
    }

    func testBadOptionsNameTheOption() throws {
        func check(_ o: StudentOptions, _ option: String, _ line: UInt = #line) {
            XCTAssertThrowsError(try o.validate(), line: line) { e in
                guard case let .invalidOption(name, _)? = e as? StudentError else { return XCTFail("\(e)", line: line) }
                XCTAssertEqual(name, option, "\(e)", line: line)
            }
        }
        check(StudentOptions(layers: 0, hidden: 32, heads: 4, kvHeads: 2, intermediate: 48), "--layers")
        check(StudentOptions(layers: 2, hidden: 32, heads: 4, kvHeads: 2, intermediate: -1), "--intermediate")
        check(StudentOptions(layers: 2, hidden: 32, heads: 5, kvHeads: 1, intermediate: 48), "--heads")
        check(StudentOptions(layers: 2, hidden: 32, heads: 4, kvHeads: 3, intermediate: 48), "--kv-heads")
        check(StudentOptions(layers: 2, hidden: 12, heads: 4, kvHeads: 2, intermediate: 48), "--heads")   // head dim 3: odd
        XCTAssertEqual("\(StudentError.invalidOption("--kv-heads", "3 does not divide --heads 4"))", "--kv-heads: 3 does not divide --heads 4")
        let teacher = try makeTeacher(layers: 2)
        XCTAssertThrowsError(try StudentDerivation.derive(from: teacher, options: StudentOptions(layers: 2, hidden: 32, heads: 4, kvHeads: 3, intermediate: 48)))
        XCTAssertThrowsError(try StudentDerivation.derive(teacherPath: tmp.appendingPathComponent("nope").path,
                                                          options: StudentOptions(layers: 1, hidden: 32, heads: 4, kvHeads: 2, intermediate: 48),
                                                          output: tmp.appendingPathComponent("out").path))
    }
}
