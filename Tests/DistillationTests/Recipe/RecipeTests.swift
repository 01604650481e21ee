@testable import Distillation
import Foundation
import XCTest

final class RecipeTests: XCTestCase {
    static let recipesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("recipes")

    /// A minimal valid recipe (line numbers matter to the error tests below).
    static let minimal = """
        student:
          path: s
        data:
          train: t.jsonl
        schedule:
          steps: 10
        output:
          dir: out
        """

    func error(_ yaml: String, overrides: [String] = [], file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try Recipe.parse(yaml: yaml, file: "r.yaml", overrides: overrides)
            XCTFail("no error", file: file, line: line)
            return ""
        } catch {
            return "\(error)"
        }
    }

    // MARK: Example recipes

    func testEveryExampleRecipeParses() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.recipesDirectory.path).filter { $0.hasSuffix(".yaml") }.sorted()
        XCTAssertEqual(names, ["adversarial.yaml", "kd-cache.yaml", "kd-smollm2.yaml", "lora.yaml", "multi-teacher.yaml", "on-policy.yaml", "prefix.yaml", "progressive.yaml", "replay.yaml", "sft.yaml"])
        for name in names { XCTAssertNoThrow(try Recipe.load(Self.recipesDirectory.appendingPathComponent(name).path), name) }
    }

    func testKDSmolLM2Recipe() throws {
        let r = try Recipe.load(Self.recipesDirectory.appendingPathComponent("kd-smollm2.yaml").path)
        XCTAssertEqual(r.teacher?.path, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
        XCTAssertEqual(r.student.derive, Recipe.Derive(layers: 10, hidden: 384, heads: 6, kvHeads: 2, intermediate: 1024))
        XCTAssertNil(r.student.path)
        XCTAssertEqual(r.data.evalFraction, 0.05)
        XCTAssertEqual(r.data.layout, .pack)
        XCTAssertEqual(r.data.maxLength, 256)
        XCTAssertEqual(r.loss.kind, .kd)
        XCTAssertEqual(r.loss.divergence, .forwardKL)
        XCTAssertEqual(r.schedule.steps, 1000)
        XCTAssertEqual(r.schedule.lr, 3e-4)
        XCTAssertEqual(r.schedule.minLR, 3e-5)
        XCTAssertEqual(r.schedule.maxGradNorm, 1)
        XCTAssertEqual(r.schedule.checkpointEvery, 200)
        XCTAssertNil(r.lora)
        XCTAssertEqual(r.output.dir, "runs/kd-smollm2")
    }

    func testProgressiveLoRAAndSFTRecipes() throws {
        let p = try Recipe.load(Self.recipesDirectory.appendingPathComponent("progressive.yaml").path)
        XCTAssertEqual(p.loss.kind, .progressive)
        XCTAssertEqual(p.loss.divergence, .jsd(beta: 0.5))
        XCTAssertEqual(p.loss.featureLayers, .uniform)
        XCTAssertEqual(p.loss.attentionLayers, .pairs([[0, 0], [3, 11]]))
        XCTAssertTrue(p.schedule.curriculum)
        XCTAssertEqual(p.seed, 7)
        let l = try Recipe.load(Self.recipesDirectory.appendingPathComponent("lora.yaml").path)
        XCTAssertEqual(l.lora, Recipe.LoRA(rank: 16, alpha: 32, dropout: 0.05, targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"]))
        XCTAssertEqual(l.loss.divergence, .reverseKL)
        XCTAssertEqual(l.schedule.decay, .constant)
        let s = try Recipe.load(Self.recipesDirectory.appendingPathComponent("sft.yaml").path)
        XCTAssertNil(s.teacher)
        XCTAssertEqual(s.loss.kind, .hard)
        XCTAssertEqual(s.loss.labelSmoothing, 0.1)
        XCTAssertEqual(s.data.eval, "data/traces-eval.jsonl")
        XCTAssertEqual(s.schedule.gradAccum, 4)
    }

    func testDefaults() throws {
        let r = try Recipe.parse(yaml: Self.minimal)
        XCTAssertEqual(r.loss.kind, .hard)       // no teacher
        XCTAssertEqual(r.schedule.batchSize, 8)
        XCTAssertEqual(r.schedule.decay, .cosine)
        XCTAssertEqual(r.data.layout, .pad)
        XCTAssertTrue(r.data.chatTemplate)
        XCTAssertEqual(r.seed, 0)
        let k = try Recipe.parse(yaml: Self.minimal + "\nteacher: {path: t}\n")
        XCTAssertEqual(k.loss.kind, .kd)
        XCTAssertEqual(k.loss.featureWeight, 0)
        let p = try Recipe.parse(yaml: Self.minimal + "\nteacher: {path: t}\nloss: {kind: progressive}\n")
        XCTAssertEqual(p.loss.featureWeight, 0.3)
        XCTAssertEqual(p.loss.attentionWeight, 0.2)
        let n = try Recipe.parse(yaml: Self.minimal, overrides: ["schedule.max_grad_norm=null"])
        XCTAssertNil(n.schedule.maxGradNorm)
    }

    // MARK: Errors

    func testUnknownKeyNamesTheKeyPathAndTheKnownKeys() {
        let yaml = Self.minimal.replacingOccurrences(of: "  steps: 10", with: "  steps: 10\n  lr_warmup: 5")
        XCTAssertEqual(error(yaml), "r.yaml:7: schedule.lr_warmup: unknown key; known keys: steps, batch_size, grad_accum, lr, "
                       + "warmup, decay, min_lr, weight_decay, max_grad_norm, eval_every, checkpoint_every, curriculum")
        XCTAssertEqual(error(Self.minimal + "\nepochs: 3"),
                       "r.yaml:9: epochs: unknown key; known keys: teacher, teachers, student, data, loss, schedule, lora, output, seed, on_policy, replay, adversarial, dropout, prefix")
        XCTAssertEqual(error(Self.minimal + "\nteacher: {path: t}\nstudent2: {derive: {layers: 1}}").hasPrefix("r.yaml:10: student2: unknown key"), true)
        let derive = Self.minimal.replacingOccurrences(of: "  path: s", with: "  derive: {layers: 1, hidden: 8, heads: 2, kv_heads: 1, intermediate: 8, width: 3}")
        XCTAssertEqual(error(derive + "\nteacher: {path: t}"),
                       "r.yaml:2: student.derive.width: unknown key; known keys: layers, hidden, heads, kv_heads, intermediate")
    }

    func testBadValuesNameKeyExpectedAndFound() {
        func with(_ line: String) -> String { Self.minimal.replacingOccurrences(of: "  steps: 10", with: "  steps: 10\n" + line) }
        XCTAssertEqual(error(with("  lr: abc")), "r.yaml:7: schedule.lr: expected a number > 0, found \"abc\"")
        XCTAssertEqual(error(with("  lr: -1")), "r.yaml:7: schedule.lr: expected a number > 0, found -1")
        XCTAssertEqual(error(with("  batch_size: 0")), "r.yaml:7: schedule.batch_size: expected an integer ≥ 1, found 0")
        XCTAssertEqual(error(with("  batch_size: 2.5")), "r.yaml:7: schedule.batch_size: expected an integer ≥ 1, found 2.5")
        XCTAssertEqual(error(with("  decay: exp")), "r.yaml:7: schedule.decay: expected one of cosine, linear, constant, found \"exp\"")
        XCTAssertEqual(error(with("  curriculum: maybe")), "r.yaml:7: schedule.curriculum: expected true or false, found \"maybe\"")
        XCTAssertEqual(error(with("  eval_every: [1]")), "r.yaml:7: schedule.eval_every: expected an integer ≥ 1, found a list")
        XCTAssertEqual(error(with("  warmup: 10")), "r.yaml:7: schedule.warmup: expected fewer warm-up steps than schedule.steps (10), found 10")
        XCTAssertEqual(error(Self.minimal + "\nteacher: {path: t, dtype: f8}\n"), "r.yaml:9: teacher.dtype: expected f32 or bf16, got \"f8\"")
        XCTAssertEqual(error(Self.minimal + "\nteacher: {cache: c, dtype: bf16}\n"),
                       "r.yaml:9: teacher.dtype: dtype applies to a teacher model: give teacher.path")
        let t = Self.minimal + "\nteacher: {path: t}\nloss:\n  alpha: 1.5\n"
        XCTAssertEqual(error(t), "r.yaml:11: loss.alpha: expected a number in [0, 1], found 1.5")
        XCTAssertEqual(error(Self.minimal + "\nteacher: {path: t}\nloss:\n  divergence: kl\n"),
                       "r.yaml:11: loss.divergence: expected one of forward_kl, reverse_kl, jsd, jsd(beta), tv, mse, found \"kl\"")
        XCTAssertEqual(error(Self.minimal + "\nteacher: {path: t}\nloss:\n  divergence: jsd(2)\n"),
                       "r.yaml:11: loss.divergence: expected jsd(beta) with beta in [0, 1], found \"jsd(2)\"")
        XCTAssertEqual(error(Self.minimal + "\nteacher: {path: t}\nloss:\n  cross_tokenizer: gold\n"),
                       "r.yaml:11: loss.cross_tokenizer: expected one of uld, align, found \"gold\"")
        XCTAssertEqual(error(Self.minimal + "\nteacher: {cache: c}\nloss:\n  cross_tokenizer: uld\n"),
                       "r.yaml:11: loss.cross_tokenizer: needs teacher.path (a model) or teacher.server_tokens, and no teacher.cache")
        XCTAssertEqual(error(Self.minimal + "\nteacher: {server_tokens: t.tokens.jsonl}\nloss:\n  temperature: 1\n"),
                       "r.yaml:10: loss.cross_tokenizer: teacher.server_tokens needs loss.cross_tokenizer (uld or align); a student with the teacher's tokenizer trains from traces --logprobs's logit cache (teacher.cache)")
        XCTAssertEqual(error(Self.minimal + "\nteacher: {server_tokens: t.tokens.jsonl}\nloss:\n  cross_tokenizer: align\n  temperature: 2\n"),
                       "r.yaml:12: loss.temperature: must be 1 with teacher.server_tokens (the server's log-probabilities were taken at 1), found 2.0")
        XCTAssertEqual(error(Self.minimal + "\nteacher: {server_tokens: t.tokens.jsonl, cache: c}\n"),
                       "r.yaml:9: teacher.server_tokens: give either cache (same tokenizer) or server_tokens (another tokenizer), not both")
        XCTAssertEqual(error(Self.minimal + "\nteacher: {path: t}\nloss:\n  kind: hard\n  cross_tokenizer: uld\n"),
                       "r.yaml:12: loss.cross_tokenizer: needs loss.kind kd or progressive (kind is hard)")
        XCTAssertEqual(error(Self.minimal + "\nteacher: {path: t}\nloss:\n  cross_tokenizer: uld\n  divergence: tv\n"),
                       "r.yaml:12: loss.divergence: does not apply with cross_tokenizer (the cross-tokenizer loss is the divergence)")
        XCTAssertEqual(error(Self.minimal + "\nteacher: {path: t}\nloss:\n  cross_tokenizer: align\n  cross_tokenizer_k: 8\n"),
                       "r.yaml:12: loss.cross_tokenizer_k: applies to cross_tokenizer: uld")
        XCTAssertEqual(error(Self.minimal + "\nteacher: {path: t}\nloss:\n  kind: progressive\n  cross_tokenizer: uld\n"),
                       "r.yaml:12: loss.cross_tokenizer: feature and attention terms need the same tokenizer: set feature_weight and attention_weight to 0")
        XCTAssertEqual(error(Self.minimal + "\nseed: -3"), "r.yaml:9: seed: expected a non-negative integer, found -3")
        XCTAssertEqual(error(Self.minimal + "\nloss: {kind: kd}"), "r.yaml:9: loss.kind: \"kd\" needs a teacher section")
        XCTAssertEqual(error(Self.minimal + "\nlora: 3"), "r.yaml:9: lora: expected a mapping, found 3")
        XCTAssertEqual(error("student: [\n"), "r.yaml:2: invalid YAML: did not find expected node content")
    }

    func testMissingRequiredKeys() {
        XCTAssertEqual(error(Self.minimal.replacingOccurrences(of: "  train: t.jsonl", with: "  max_length: 64")),
                       "r.yaml:3: data.train: missing required key")
        XCTAssertEqual(error(Self.minimal.replacingOccurrences(of: "output:\n  dir: out", with: "")), "r.yaml: output: missing required key")
        XCTAssertEqual(error(Self.minimal.replacingOccurrences(of: "  path: s", with: "  path: s\n  derive: {layers: 1, hidden: 8, heads: 2, kv_heads: 1, intermediate: 8}") + "\nteacher: {path: t}"),
                       "r.yaml:1: student: expected exactly one of path, derive")
        XCTAssertEqual(error(Self.minimal.replacingOccurrences(of: "  path: s", with: "  derive: {layers: 1}") + "\nteacher: {path: t}"),
                       "r.yaml:2: student.derive.hidden: missing required key")
    }

    // MARK: Overrides

    func testOverridesReplaceAndAddFields() throws {
        let r = try Recipe.parse(yaml: Self.minimal, overrides: [
            "schedule.steps=25", "schedule.lr=3e-4", "output.dir=elsewhere", "seed=9",
            "lora.target_modules=[q_proj, o_proj]", "data.layout=pack", "schedule.batch_size=2",
        ])
        XCTAssertEqual(r.schedule.steps, 25)
        XCTAssertEqual(r.schedule.lr, 3e-4)
        XCTAssertEqual(r.schedule.batchSize, 2)
        XCTAssertEqual(r.output.dir, "elsewhere")
        XCTAssertEqual(r.seed, 9)
        XCTAssertEqual(r.data.layout, .pack)
        XCTAssertEqual(r.lora?.targetModules, ["q_proj", "o_proj"])
        XCTAssertEqual(error(Self.minimal, overrides: ["schedule.lr_warmup=3"]).hasPrefix("r.yaml:5: schedule.lr_warmup: unknown key"), true)
        XCTAssertEqual(error(Self.minimal, overrides: ["schedule.steps=many"]), "r.yaml:6: schedule.steps: expected an integer ≥ 1, found \"many\"")
        XCTAssertEqual(error(Self.minimal, overrides: ["steps"]), "--set: steps: expected key.path=value")
        XCTAssertEqual(error(Self.minimal, overrides: ["data.train.x=1"]), "--set: data.train: cannot set x inside \"t.jsonl\"")
    }

    func testNamedFlagOverrides() throws {
        let flags = Recipe.flagOverrides(steps: 7, lr: 2e-5, batchSize: 3, out: #"runs/a "b"\c: d"#, seed: 11)
        XCTAssertEqual(flags.first, "schedule.steps=7")
        let r = try Recipe.parse(yaml: Self.minimal, overrides: flags + ["schedule.steps=9"])
        XCTAssertEqual(r.schedule.steps, 9)          // --set after the named flags wins
        XCTAssertEqual(r.schedule.lr, 2e-5)
        XCTAssertEqual(r.schedule.batchSize, 3)
        XCTAssertEqual(r.output.dir, #"runs/a "b"\c: d"#)
        XCTAssertEqual(r.seed, 11)
        XCTAssertEqual(try Recipe.parse(yaml: Self.minimal, overrides: Recipe.flagOverrides(out: "123")).output.dir, "123")
        XCTAssertEqual(try Recipe.parse(yaml: Self.minimal, overrides: Recipe.flagOverrides()), try Recipe.parse(yaml: Self.minimal))
    }
}
