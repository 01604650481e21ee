import DistillModels
import DistillNN
import DistillTensor
@testable import Distillation
import Foundation
import XCTest

/// `RecipeCheck` (distill check): every shipped recipe at tiny size checks out, and a student
/// whose chat template strips reasoning is flagged.
extension RecipeRunnerTests {
    /// The overrides that point a shipped recipe at tiny models and data.
    func tinyOverrides(_ name: String, teacher: URL, student: URL, second: URL, data: URL, chat: URL, out: URL) throws -> [String] {
        var o = ["data.max_length=96", "schedule.batch_size=2", "schedule.grad_accum=1", "schedule.warmup=0", "output.dir=\(out.path)"]
        let recipe = try String(contentsOf: Self.recipesDirectory.appendingPathComponent(name), encoding: .utf8)
        let derives = recipe.contains("derive:")
        if recipe.range(of: "\nteacher:\n  path:") != nil { o.append("teacher.path=\(teacher.path)") }
        if derives {
            o.append("student.derive={layers: 1, hidden: 16, heads: 2, kv_heads: 1, intermediate: 32}")
        } else {
            o.append("student.path=\(student.path)")
        }
        o.append("data.train=\(chat.path)")
        if recipe.contains("\n  eval:") { o.append("data.eval=\(chat.path)") }
        if recipe.contains("\n  eval_fraction:") { o.append("data.eval_fraction=0.25") }
        switch name {
        case "kd-cache.yaml":
            let cache = try cacheLogits(teacher: teacher, data: chat, temperature: 1, k: 32, maxLength: 96)
            o += ["teacher.cache=\(cache.path)", "loss.chunk_size=16"]
        case "multi-teacher.yaml":
            o.append("teachers.members=[{name: math, path: \(teacher.path), weight: 2}, {name: chat, path: \(second.path)}]")
        case "replay.yaml": o.append("replay.data=\(data.path)")
        case "progressive.yaml": o += ["loss.attention_layers=uniform", "loss.attention_top_k=2"]
        case "on-policy.yaml": o.append("on_policy.max_tokens=4")
        default: break
        }
        return o
    }

    func testCheckEveryShippedRecipeAtTinySize() throws {
        let teacher = try makeModel("teacher"), student = try makeModel("student", seed: 9), second = try makeModel("second", seed: 11)
        let data = try makeData(), chat = try makeChatData()
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.recipesDirectory.path).filter { $0.hasSuffix(".yaml") }.sorted()
        XCTAssertGreaterThanOrEqual(names.count, 10)
        for name in names {
            let out = tmp.appendingPathComponent("out-" + name)
            let overrides = try tinyOverrides(name, teacher: teacher, student: student, second: second, data: data, chat: chat, out: out)
            let r = try Recipe.load(Self.recipesDirectory.appendingPathComponent(name).path, overrides: overrides)
            let report = RecipeCheck.run(recipe: r, file: name)
            XCTAssertEqual(report.findings.filter { $0.severity == .error }, [], name)
            XCTAssertEqual(report.examples.count, 3, name)
            // The chat data's first example: two assistant turns carry loss, each ending with the EOS <|im_end|>.
            let lossText = report.examples.first?.spans.filter(\.loss).map(\.text) ?? []
            if r.data.lossOn == .assistant {
                XCTAssertEqual(lossText, ["0 1 2<|im_end|>\n", "3 4<|im_end|>\n"], name)
            } else {
                XCTAssertEqual(lossText.count, 1, name)
            }
            XCTAssertTrue(report.findings.contains { $0.topic == "template" && $0.message.contains("holds the EOS token") }, name)
            XCTAssertFalse(report.findings.contains { $0.message.contains("drops the reasoning") }, name)
            XCTAssertEqual(report.data.first?.examples, 8, name)
            XCTAssertEqual(report.step?.stepsMeasured, 2, name)
            XCTAssertGreaterThan(report.step?.secondsPerStep ?? 0, 0, name)
            XCTAssertGreaterThan(report.disk?.checkpointBytes ?? 0, 0, name)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "\(name): check writes nothing into output.dir")
        }
    }

    /// A student whose template keeps only what follows </think> of assistant turns and writes no
    /// end-of-turn token: both are warnings; the example shows the reasoning kept for training.
    func testCheckFlagsATemplateThatStripsReasoning() throws {
        let student = try makeModel("student")
        // R1-style: the answer after </think> only; turns end with a bare newline.
        let template = "{% for m in messages %}{% if m['role'] == 'user' %}User: {{ m['content'] }}\n"
            + "{% else %}{% set c = m['content'] %}{% if '</think>' in c %}{% set c = c.split('</think>')[-1] %}{% endif %}"
            + "Assistant: {{ c }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}Assistant: <think>\n{% endif %}"
        let configURL = student.appendingPathComponent("tokenizer_config.json")
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as! [String: Any]
        config["chat_template"] = template
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        let data = try writeLines((0..<4).map { i in
            #"{"messages": [{"role": "user", "content": "\#(i)+1?"}, {"role": "assistant", "content": "<think>\nadd one to \#(i)\n</think>\n\n\#(i + 1)"}]}"#
        }, "traces.jsonl")
        let out = tmp.appendingPathComponent("sft")
        let r = try Recipe.load(Self.recipesDirectory.appendingPathComponent("sft.yaml").path, overrides: [
            "student.path=\(student.path)", "data.train=\(data.path)", "data.eval=null", "data.max_length=64",
            "schedule.batch_size=2", "schedule.grad_accum=1", "output.dir=\(out.path)"])
        let report = RecipeCheck.run(recipe: r, file: "sft.yaml", examples: 1, steps: 0)
        let warnings = report.findings.filter { $0.severity == .warning && $0.topic == "template" }.map(\.message)
        XCTAssertEqual(warnings.count, 2, "\(warnings)")
        XCTAssertTrue(warnings[0].hasPrefix("the chat template drops the reasoning (<think>…</think>) of assistant turns"), warnings[0])
        XCTAssertTrue(warnings[1].hasPrefix(#"an assistant turn ends with "\n", which holds no end-of-turn or EOS token"#), warnings[1])
        // Training keeps the reasoning (and appends the EOS token) in what carries loss.
        XCTAssertEqual(report.examples[0].spans.filter(\.loss).map(\.text), ["add one to 0\n</think>\n\n1\n<|im_end|>"])
        XCTAssertNil(report.step)
        XCTAssertEqual(report.errors, 0)
    }

    /// Problems that stop a run are errors: a missing data file, a vocabulary mismatch.
    func testCheckReportsErrors() throws {
        let teacher = try makeModel("teacher"), small = try makeModel("small", vocab: 300)
        let out = tmp.appendingPathComponent("o")
        let missing = try Recipe.parse(yaml: recipe(teacher: teacher, data: tmp.appendingPathComponent("none.jsonl"), out: out))
        let a = RecipeCheck.run(recipe: missing, file: "r.yaml")
        XCTAssertEqual(a.errors, 1)
        XCTAssertEqual(a.findings.last?.topic, "setup")
        XCTAssertTrue(a.findings.last!.message.contains("none.jsonl"), a.findings.last!.message)
        let mismatch = try Recipe.parse(yaml: recipe(teacher: teacher, data: try makeData(), out: out),
                                        overrides: ["student.derive=null", "student.path=\(small.path)"])
        let b = RecipeCheck.run(recipe: mismatch, file: "r.yaml")
        XCTAssertEqual(b.errors, 1)
        XCTAssertTrue(b.findings.last!.message.contains("different vocabularies"), b.findings.last!.message)
    }
}
