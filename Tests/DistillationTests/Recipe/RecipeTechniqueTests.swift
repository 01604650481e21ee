import DistillModels
import DistillNN
import DistillTensor
@testable import Distillation
import Foundation
import XCTest

/// The recipe keys of on-policy distillation, the α ramp, attention head choice, replay and
/// adversarial training: parsed, checked, run at tiny size, resumed bit-exactly.
extension RecipeRunnerTests {
    static let recipesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("recipes")

    func makeReplayData() throws -> URL {
        let lines = (0..<5).map { i in #"{"text": "Earlier data: the dog ran \#(i) laps around the yard."}"# }
        let url = tmp.appendingPathComponent("replay.jsonl")
        try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    /// Every new option at once.
    func allTechniques(replay: URL) -> String {
        """
        on_policy: {fraction: 0.5, temperature: 1, max_tokens: 4}
        replay: {data: \(replay.path), ratio: 0.5}
        adversarial: {method: pgd, epsilon: 0.1, steps: 2}
        dropout: {residual: 0.1, attention: 0.1}
        """
    }

    func allTechniquesOverrides() -> [String] {
        ["loss.alpha={from: 0.2, to: 0.8}", "loss.attention_weight=0.1", "loss.attention_top_k=2", "loss.divergence=jsd(0.3)"]
    }

    func testNewKeysParse() throws {
        let teacher = tmp.appendingPathComponent("t"), data = tmp.appendingPathComponent("d.jsonl"), out = tmp.appendingPathComponent("o")
        let r = try Recipe.parse(yaml: recipe(teacher: teacher, data: data, out: out, extra: allTechniques(replay: data)),
                                 overrides: allTechniquesOverrides())
        XCTAssertEqual(r.loss.alphaRamp, Recipe.AlphaRamp(from: 0.2, to: 0.8, steps: nil))
        XCTAssertEqual(r.loss.attentionTopK, 2)
        XCTAssertEqual(r.onPolicy, Recipe.OnPolicy(fraction: 0.5, temperature: 1, maxTokens: 4))
        XCTAssertEqual(r.replay, Recipe.Replay(data: data.path, ratio: 0.5))
        XCTAssertEqual(r.adversarial, Recipe.Adversarial(method: .pgd, epsilon: 0.1, steps: 2, stepSize: nil))
        let fgm = try Recipe.parse(yaml: recipe(teacher: teacher, data: data, out: out, extra: "adversarial: {method: fgm, epsilon: 0.5}"))
        XCTAssertEqual(fgm.adversarial, Recipe.Adversarial(method: .fgm, epsilon: 0.5, steps: 1, stepSize: nil))
        XCTAssertEqual(r.dropout, Recipe.DropoutRates(residual: 0.1, attention: 0.1))
    }

    func testNewKeysBadValuesNameFileLineAndKey() throws {
        let teacher = tmp.appendingPathComponent("t"), data = tmp.appendingPathComponent("d.jsonl"), out = tmp.appendingPathComponent("o")
        func error(_ extra: String, _ overrides: [String] = []) -> String {
            do { _ = try Recipe.parse(yaml: recipe(teacher: teacher, data: data, out: out, extra: extra), file: "r.yaml", overrides: overrides) } catch { return "\(error)" }
            return "no error"
        }
        // The `extra` text starts at line 25 of the base recipe; its loss section at line 9, alpha at 11.
        XCTAssertEqual(error("adversarial: {method: fgm, epsilon: -0.1}"), "r.yaml:25: adversarial.epsilon: expected a number ≥ 0, found -0.1")
        XCTAssertEqual(error("adversarial: {method: mim, epsilon: 1}"), "r.yaml:25: adversarial.method: expected one of fgm, pgd, found \"mim\"")
        XCTAssertEqual(error("adversarial: {method: fgm, epsilon: 1, steps: 3}"), "r.yaml:25: adversarial.steps: fgm takes one step; use method: pgd for 3")
        XCTAssertEqual(error("adversarial: {epsilon: 1}"), "r.yaml:25: adversarial.method: missing required key")
        XCTAssertEqual(error("replay: {data: x.jsonl, ratio: 0}"), "r.yaml:25: replay.ratio: expected a number in (0, 1), found 0")
        XCTAssertEqual(error("replay: {data: x.jsonl, ratio: 0.1}"),
                       "r.yaml:25: replay.ratio: ratio 0.1 of schedule.batch_size 2 gives 0 replayed rows per micro-batch; expected at least 1 and fewer than 2")
        XCTAssertEqual(error("replay: {ratio: 0.5}"), "r.yaml:25: replay.data: missing required key")
        XCTAssertEqual(error("replay: {data: x.jsonl, ratio: 0.5, mix: 2}"), "r.yaml:25: replay.mix: unknown key; known keys: data, ratio")
        XCTAssertEqual(error("dropout: {residual: 1}"), "r.yaml:25: dropout.residual: expected a number in [0, 1), found 1")
        XCTAssertEqual(error("dropout: {hidden: 0.1}"), "r.yaml:25: dropout.hidden: unknown key; known keys: residual, attention")
        XCTAssertEqual(error("on_policy: {temperature: 1}"), "r.yaml:25: on_policy.fraction: missing required key")
        XCTAssertEqual(error("on_policy: {fraction: 1.5}"), "r.yaml:25: on_policy.fraction: expected a number in (0, 1], found 1.5")
        XCTAssertEqual(error("", ["loss.attention_top_k=2"]),
                       "r.yaml:9: loss.attention_top_k: applies to the attention term: set loss.attention_weight above 0")
        XCTAssertEqual(error("", ["loss.alpha={from: 0.2}"]), "r.yaml:11: loss.alpha.to: missing required key")
        XCTAssertEqual(error("", ["loss.alpha={from: 0.2, to: 1.5}"]), "r.yaml:11: loss.alpha.to: expected a number in [0, 1], found 1.5")
        XCTAssertEqual(error("", ["loss.kind=progressive", "loss.alpha={from: 0.2, to: 0.5}"]),
                       "r.yaml:11: loss.alpha: a ramp ({from, to, steps}) applies to loss.kind kd; give a number")
        // Without a teacher model: on-policy and replay name what they need.
        let cached = recipe(teacher: teacher, data: data, out: out, extra: "on_policy: {fraction: 0.5}")
            .replacingOccurrences(of: "  path: \(teacher.path)\n", with: "  cache: c.logits\n")
            .replacingOccurrences(of: "  feature_weight: 0.1\n", with: "")
            .replacingOccurrences(of: "derive: {layers: 1, hidden: 16, heads: 2, kv_heads: 1, intermediate: 32}", with: "path: s")
        XCTAssertThrowsError(try Recipe.parse(yaml: cached, file: "r.yaml")) { e in
            XCTAssertTrue("\(e)".contains("on_policy: needs a teacher model in memory"), "\(e)")
        }
    }

    /// A replay file that is empty or bad stops the run naming the key, the file and the line.
    func testBadReplayFiles() throws {
        let teacher = try makeModel("teacher"), data = try makeData(), out = tmp.appendingPathComponent("run")
        let empty = tmp.appendingPathComponent("empty.jsonl"), bad = tmp.appendingPathComponent("bad.jsonl")
        try Data().write(to: empty)
        try "{\"text\": \"fine\"}\n{\"txt\": 3}\n".write(to: bad, atomically: true, encoding: .utf8)
        for (file, expected) in [(empty, "replay.data: \(empty.path): the file holds no examples (empty)"),
                                 (bad, "replay.data: \(bad.path): line 2: missing \"text\"")] {
            let r = try Recipe.parse(yaml: recipe(teacher: teacher, data: data, out: out, extra: "replay: {data: \(file.path), ratio: 0.5}"))
            XCTAssertThrowsError(try RecipeRunner.run(recipe: r)) { e in XCTAssertTrue("\(e)".hasPrefix(expected), "\(e)") }
        }
    }

    /// Runs the recipe of `parse(a)` for 4 steps, copies its step-2 checkpoint into a fresh
    /// directory (as a kill after that checkpoint leaves it) and resumes there: the step-4
    /// checkpoints must be byte for byte equal. Returns both results.
    @discardableResult
    func assertResumesBitExactly(_ parse: (URL) throws -> Recipe, file: StaticString = #filePath, line: UInt = #line) throws
        -> (full: RecipeResult, resumed: RecipeResult) {
        let a = tmp.appendingPathComponent("full-\(UUID().uuidString)"), b = tmp.appendingPathComponent("resumed-\(UUID().uuidString)")
        let full = try RecipeRunner.run(recipe: try parse(a))
        XCTAssertEqual(full.steps, 4, file: file, line: line)
        let fm = FileManager.default
        try fm.createDirectory(at: b.appendingPathComponent("checkpoints"), withIntermediateDirectories: true)
        try fm.copyItem(at: a.appendingPathComponent("checkpoints/step-00000002"), to: b.appendingPathComponent("checkpoints/step-00000002"))
        let resumed = try RecipeRunner.run(recipe: try parse(b), resume: true)
        XCTAssertEqual(resumed.steps, 4, file: file, line: line)
        for name in ["model.safetensors", "optimizer.safetensors", "state.json"] {
            XCTAssertEqual(try Data(contentsOf: a.appendingPathComponent("checkpoints/step-00000004/\(name)")),
                           try Data(contentsOf: b.appendingPathComponent("checkpoints/step-00000004/\(name)")), name, file: file, line: line)
        }
        XCTAssertEqual(resumed.lastMetrics?.loss, full.lastMetrics?.loss, file: file, line: line)
        return (full, resumed)
    }

    /// Several teachers with routing and a prefix: resumed, the run equals the uninterrupted one.
    func testTeachersAndPrefixResumeBitExactly() throws {
        let t1 = try makeModel("t1"), t2 = try makeModel("t2", seed: 77), student = try makeModel("student", seed: 5)
        let lines = (0..<8).map { i in #"{"text": "Item \#(i): counting \#(i) \#(i + 1) \#(i + 2).", "source": "\#(i % 2 == 0 ? "even" : "odd")"}"# }
        let data = tmp.appendingPathComponent("routed.jsonl")
        try (lines.joined(separator: "\n") + "\n").write(to: data, atomically: true, encoding: .utf8)
        try assertResumesBitExactly { out in
            try Recipe.parse(yaml: """
                teachers:
                  members:
                    - {name: first, path: \(t1.path)}
                    - {name: second, path: \(t2.path), weight: 3}
                  combine: log_probabilities
                  routing: {even: second}
                student: {path: \(student.path)}
                data: {train: \(data.path), max_length: 24}
                loss: {kind: kd, alpha: {from: 0.9, to: 0.5}, divergence: reverse_kl}
                prefix: {tokens: 2, std: 0.5}
                adversarial: {method: fgm, epsilon: 0.05}
                schedule: {steps: 4, batch_size: 2, lr: 1.0e-2, checkpoint_every: 2}
                output: {dir: \(out.path)}
                """)
        }
    }

    /// A run with every new option, killed after its step-2 checkpoint (simulated by copying that
    /// checkpoint into a fresh directory) and resumed, ends bit for bit equal to the uninterrupted run.
    func testEveryNewOptionResumesBitExactly() throws {
        let teacher = try makeModel("teacher"), data = try makeData(), replay = try makeReplayData()
        let (full, _) = try assertResumesBitExactly { out in
            try Recipe.parse(yaml: recipe(teacher: teacher, data: data, out: out, extra: allTechniques(replay: replay)),
                             overrides: allTechniquesOverrides())
        }
        XCTAssertNotNil(full.lastMetrics?.adversarial)
        XCTAssertNotNil(full.lastMetrics?.attention)
        let state = try JSONDecoder().decode(TrainerState.self, from: Data(contentsOf: full.outputDirectory.appendingPathComponent("checkpoints/step-00000002/state.json")))
        XCTAssertNotNil(state.replayData)
        XCTAssertEqual(state.dropout?.count, 2)
    }

    /// LoRA with dropout (and residual dropout in the base): a resumed run equals the uninterrupted
    /// one, since the dropout generators are checkpointed.
    func testLoRADropoutResumesBitExactly() throws {
        let teacher = try makeModel("teacher"), student = try makeModel("student", seed: 5), data = try makeData()
        let (full, _) = try assertResumesBitExactly { out in
            let yaml = recipe(teacher: teacher, data: data, out: out)
                .replacingOccurrences(of: "derive: {layers: 1, hidden: 16, heads: 2, kv_heads: 1, intermediate: 32}", with: "path: \(student.path)")
                .replacingOccurrences(of: "  feature_weight: 0.1\n", with: "")
            return try Recipe.parse(yaml: yaml + "\nlora: {rank: 2, alpha: 4, dropout: 0.3, target_modules: [q_proj, v_proj]}\ndropout: {residual: 0.2}\n")
        }
        let state = try JSONDecoder().decode(TrainerState.self, from: Data(contentsOf: full.outputDirectory.appendingPathComponent("checkpoints/step-00000004/state.json")))
        XCTAssertEqual(state.dropout?.keys.filter { $0.hasSuffix("lora_dropout") }.count, 4)      // q_proj and v_proj of 2 layers
    }

    /// `prefix`: only the prefix trains, and the run saves a PEFT prefix adapter that loads onto
    /// the base and gives the trained student's logits.
    func testPrefixRunSavesAPEFTAdapter() throws {
        let teacher = try makeModel("teacher"), student = try makeModel("student", seed: 5), data = try makeData()
        let out = tmp.appendingPathComponent("prefix")
        let r = try Recipe.load(Self.recipesDirectory.appendingPathComponent("prefix.yaml").path, overrides: [
            "teacher.path=\(teacher.path)", "student.path=\(student.path)", "data.train=\(data.path)", "data.eval_fraction=0.25",
            "data.max_length=24", "schedule.steps=3", "schedule.batch_size=2", "schedule.warmup=0", "schedule.checkpoint_every=null",
            "schedule.eval_every=null", "output.dir=\(out.path)"])
        XCTAssertEqual(r.prefix, Recipe.Prefix(tokens: 8, std: 1))
        try RecipeRunner.run(recipe: r)
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: out.path))
        XCTAssertTrue(files.isSuperset(of: ["adapter_config.json", "adapter_model.safetensors"]), "\(files)")
        XCTAssertFalse(files.contains("model.safetensors"))
        XCTAssertEqual(try AdapterFiles.peftType(out.path), "PREFIX_TUNING")
        let base = try PretrainedModel.load(student.path), adapted = try PretrainedModel.load(student.path)
        try AdapterFiles.apply(out.path, to: adapted)
        XCTAssertEqual(adapted.lm.prefixLength, 8)
        // The base weights did not train; the prefix changes the outputs.
        let ids = [5, 9, 14, 3]
        let a = withoutGradients { base.lm.forward(ids, batch: 1, length: 4).logits.scalars }
        let b = withoutGradients { adapted.lm.forward(ids, batch: 1, length: 4).logits.scalars }
        XCTAssertGreaterThan(zip(a, b).map { abs($0 - $1) }.max()!, 1e-4)
        let before = try PretrainedModel.load(student.path).lm.namedParameters().map(\.parameter.value.scalars)
        XCTAssertEqual(base.lm.namedParameters().map(\.parameter.value.scalars), before)
        func error(_ extra: String) -> String {
            do { _ = try Recipe.parse(yaml: recipe(teacher: teacher, data: data, out: out, extra: extra), file: "r.yaml") } catch { return "\(error)" }
            return "no error"
        }
        XCTAssertEqual(error("prefix: {tokens: 4}"), "r.yaml:25: prefix: needs student.path (a prefix is saved for a base model that exists on disk)")
        XCTAssertEqual(error("prefix: {tokens: 0}"), "r.yaml:25: prefix.tokens: expected an integer ≥ 1, found 0")
    }

    /// The example recipes of the new keys run at tiny size (their models, data and sizes
    /// overridden) and train.
    func testNewExampleRecipesRunAtTinySize() throws {
        let teacher = try makeModel("teacher"), data = try makeData(), replay = try makeReplayData()
        let student = try makeModel("student", seed: 9)
        let second = try makeModel("second", seed: 11)
        for name in ["on-policy.yaml", "replay.yaml", "adversarial.yaml", "progressive.yaml", "multi-teacher.yaml"] {
            let out = tmp.appendingPathComponent(name)
            var overrides = ["teacher.path=\(teacher.path)", "data.train=\(data.path)", "data.max_length=24", "schedule.steps=3",
                             "data.eval_fraction=0.25", "schedule.batch_size=4", "schedule.warmup=0", "schedule.checkpoint_every=null", "schedule.eval_every=null",
                             "output.dir=\(out.path)"]
            if name == "replay.yaml" {
                overrides += ["student.path=\(student.path)", "replay.data=\(replay.path)"]
            } else {
                overrides += ["student.derive={layers: 1, hidden: 16, heads: 2, kv_heads: 1, intermediate: 32}"]
            }
            if name == "progressive.yaml" { overrides += ["loss.attention_layers=uniform", "loss.attention_top_k=2"] }
            if name == "on-policy.yaml" { overrides += ["on_policy.max_tokens=4"] }
            if name == "multi-teacher.yaml" {
                overrides.removeFirst()
                overrides += ["teachers.members=[{name: math, path: \(teacher.path), weight: 2}, {name: chat, path: \(second.path)}]"]
            }
            let r = try Recipe.load(Self.recipesDirectory.appendingPathComponent(name).path, overrides: overrides)
            let result = try RecipeRunner.run(recipe: r)
            XCTAssertEqual(result.steps, 3, name)
            XCTAssertTrue(result.lastMetrics?.loss.isFinite ?? false, name)
            if name == "adversarial.yaml" { XCTAssertNotNil(result.lastMetrics?.adversarial) }
        }
    }

    func testTeachersParseAndBadValues() throws {
        let data = tmp.appendingPathComponent("d.jsonl"), out = tmp.appendingPathComponent("o")
        func yaml(_ teachers: String) -> String {
            """
            teachers:
            \(teachers)
            student:
              derive: {layers: 1, hidden: 16, heads: 2, kv_heads: 1, intermediate: 32}
            data:
              train: \(data.path)
            schedule:
              steps: 2
            output:
              dir: \(out.path)
            """
        }
        let good = yaml("""
              members:
                - {name: a, path: ta, weight: 2}
                - {name: b, path: tb}
              combine: log_probabilities
              routing: {gsm8k: a, chat: b}
            """)
        let r = try Recipe.parse(yaml: good)
        XCTAssertEqual(r.teachers?.members.map(\.name), ["a", "b"])
        XCTAssertEqual(r.teachers?.members.map(\.weight), [2, 1])
        XCTAssertEqual(r.teachers?.combine, .logProbabilities)
        XCTAssertEqual(r.teachers?.routing, ["gsm8k": "a", "chat": "b"])
        XCTAssertEqual(r.teacher?.path, "ta")
        XCTAssertEqual(r.loss.kind, .kd)
        func error(_ text: String, _ overrides: [String] = []) -> String {
            do { _ = try Recipe.parse(yaml: text, file: "r.yaml", overrides: overrides) } catch { return "\(error)" }
            return "no error"
        }
        XCTAssertEqual(error(yaml("""
              members:
                - {name: a, path: ta}
              routing: {gsm8k: c}
            """)), "r.yaml:4: teachers.routing.gsm8k: unknown teacher \"c\"; teachers: a")
        XCTAssertEqual(error(yaml("""
              members:
                - {name: a, path: ta, weight: 0}
                - {name: b, path: tb, weight: 0}
            """)), "r.yaml:3: teachers.members: the teachers' weights sum to 0.0; at least one must be positive")
        XCTAssertEqual(error(yaml("""
              members:
                - {name: a, path: ta, weight: -1}
            """)), "r.yaml:3: teachers.members[0].weight: expected a number ≥ 0, found -1")
        XCTAssertEqual(error(yaml("""
              members:
                - {name: a, path: ta}
                - {name: a, path: tb}
            """)), "r.yaml:4: teachers.members[1].name: two teachers are named \"a\"")
        XCTAssertEqual(error(yaml("""
              members: []
            """)), "r.yaml:2: teachers.members: expected a list of {name, path, weight}, found an empty list")
        XCTAssertEqual(error(yaml("""
              members:
                - {name: a, path: ta}
              combine: average
            """)), "r.yaml:4: teachers.combine: expected one of probabilities, log_probabilities, found \"average\"")
        XCTAssertEqual(error(good, ["loss.feature_weight=0.5"]),
                       "r.yaml:2: loss.feature_weight: several teachers give soft targets only: set feature_weight and attention_weight to 0")
        XCTAssertEqual(error(good, ["loss.divergence=mse"]),
                       "r.yaml:2: loss.divergence: mse compares raw logits, which a combination of teachers does not have: use a divergence between distributions")
        XCTAssertEqual(error(good, ["teacher.path=x"]), "r.yaml:2: teachers: give either teacher (one) or teachers (several), not both")
    }

    /// Two teachers with routing by source train a derived student; routed examples use one
    /// member (checked through the teacher the runner builds).
    func testTeachersRunWithRouting() throws {
        let t1 = try makeModel("t1"), t2 = try makeModel("t2", seed: 77)
        let lines = (0..<8).map { i in #"{"text": "Item \#(i): counting \#(i) \#(i + 1) \#(i + 2).", "source": "\#(i % 2 == 0 ? "even" : "odd")"}"# }
        let data = tmp.appendingPathComponent("routed.jsonl"), out = tmp.appendingPathComponent("multi")
        try (lines.joined(separator: "\n") + "\n").write(to: data, atomically: true, encoding: .utf8)
        let r = try Recipe.parse(yaml: """
            teachers:
              members:
                - {name: first, path: \(t1.path)}
                - {name: second, path: \(t2.path), weight: 3}
              routing: {even: second}
            student:
              derive: {layers: 1, hidden: 16, heads: 2, kv_heads: 1, intermediate: 32}
            data: {train: \(data.path), max_length: 24}
            loss: {kind: kd, alpha: 0.8, divergence: jsd(0.5)}
            schedule: {steps: 3, batch_size: 4}
            output: {dir: \(out.path)}
            """)
        let result = try RecipeRunner.run(recipe: r)
        XCTAssertEqual(result.steps, 3)
        XCTAssertTrue(result.lastMetrics?.soft?.isFinite ?? false)
        let models = try RecipeRunner.loadModels(r) { _ in }
        let d = try RecipeRunner.tokenizeData(r, models) { _ in }
        let teacher = try XCTUnwrap(try RecipeRunner.trainingTeacher(r, models, d) as? MultiTeacher)
        XCTAssertEqual(teacher.names, ["first", "second"])
        XCTAssertEqual(teacher.weights, [0.25, 0.75])
        XCTAssertEqual(teacher.routes.count, 4)
        XCTAssertEqual(Set(teacher.routes.values), [1])
        XCTAssertEqual(teacher.routes[d.allTrain[0].ids], 1)
        XCTAssertNil(teacher.routes[d.allTrain[1].ids])
    }
}
