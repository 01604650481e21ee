@testable import DistillEval
import DistillModels
import Foundation
import XCTest

/// `distill eval` on the shipped demo teacher (0.8M parameters, byte-level tokenizer, ChatML).
final class EvaluatorTests: XCTestCase {
    static let teacher = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("demo/teacher").path

    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("eval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func write(_ name: String, _ text: String) throws -> String {
        let url = tmp.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url.path
    }

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch { return "\(error)" }
    }

    func fastOptions() -> EvalOptions {
        var o = EvalOptions()
        o.maxTokens = 64
        o.speedRequests = 2
        o.speedNewTokens = 4
        return o
    }

    /// `PATH,adapter=DIR` models (ModelSpec.adapter): the PEFT adapter merged in after loading,
    /// as `distill lora merge` and `--adapter` do; a bad adapter directory is named.
    func testModelSpecMergesItsAdapter() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("DistillationTests/Fixtures/peft_adapter")
        let base = fixture.appendingPathComponent("base").path, adapter = fixture.appendingPathComponent("adapter").path
        let plain = try ModelSpec(name: "base", path: base).load()
        let adapted = try ModelSpec(name: "adapted", path: base, adapter: adapter).load()
        let merged = try PretrainedModel.load(base)
        try LoRAAdapterFiles.merge(adapter, into: merged)
        var changed = 0
        for (((name, a), (_, m)), (_, p)) in zip(zip(adapted.lm.namedParameters(), merged.lm.namedParameters()), plain.lm.namedParameters()) {
            XCTAssertEqual(a.value.scalars, m.value.scalars, name)
            if a.value.scalars != p.value.scalars { changed += 1 }
        }
        XCTAssertGreaterThan(changed, 0)
        XCTAssertThrowsError(try ModelSpec(name: "x", path: base, adapter: "/nonexistent-adapter").load()) { e in
            XCTAssertTrue("\(e)".contains("/nonexistent-adapter"), "\(e)")
        }
    }

    func testTaskFileErrorsNameFileAndLine() throws {
        XCTAssertTrue(message { _ = try EvalTask.load(self.tmp.appendingPathComponent("missing.jsonl").path) }.contains("no such task file"))
        let empty = try write("empty.jsonl", "\n\n")
        XCTAssertTrue(message { _ = try EvalTask.load(empty) }.contains("holds no items"))
        let cases: [(String, String)] = [
            ("{\"prompt\": \"a\", \"answer\": \"1\"}\nnot json\n", ":2: not valid JSON"),
            ("{\"prompt\": \"a\", \"answer\": \"1\"}\n{\"prompt\": \"b\", \"reference\": \"x\"}\n", ":2: this item is a generation"),
            ("{\"prompt\": \"a\", \"choices\": [\"x\", \"y\"], \"label\": \"z\"}\n", ":1: \"label\" \"z\" is not one of the choices"),
            ("{\"prompt\": \"a\", \"choices\": [], \"label\": \"z\"}\n", ":1: \"choices\" must be a non-empty array"),
            ("{\"answer\": \"1\"}\n", ":1: missing \"prompt\""),
            ("{\"prompt\": \"  \", \"answer\": \"1\"}\n", ":1: \"prompt\" is empty"),
            ("{\"prompt\": \"a\"}\n", ":1: no \"answer\""),
            ("[1, 2]\n", ":1: expected a JSON object"),
        ]
        for (k, (text, expected)) in cases.enumerated() {
            let path = try write("bad\(k).jsonl", text)
            let m = message { _ = try EvalTask.load(path) }
            XCTAssertTrue(m.contains(path + expected), "\(m) — expected \(expected)")
        }
        let blank = try write("blank.txt", "  \n")
        XCTAssertTrue(message { _ = try EvalTask.load(blank) }.contains("the text is empty"))
        // Kinds and limits.
        let gen = try write("gen.jsonl", "{\"prompt\": \"a\", \"references\": [\"x\", \"y\"]}\n{\"prompt\": \"b\", \"reference\": \"z\"}\n")
        guard case .generation(let items) = try EvalTask.load(gen, limit: 1) else { return XCTFail("not generation") }
        XCTAssertEqual(items, [EvalTask.GenerationItem(prompt: "a", references: ["x", "y"])])
    }

    func testMissingModelsAndEmptyTasksAreClearErrors() throws {
        let task = EvalTask.reasoning([EvalTask.ReasoningItem(prompt: "1+1?", answer: "2")])
        XCTAssertTrue(message { _ = try Evaluator.run(models: [], task: task, taskName: "t") }.contains("no model to evaluate"))
        XCTAssertTrue(message {
            _ = try Evaluator.run(models: [ModelSpec(name: "m", path: "/nonexistent/model")], task: task, taskName: "t")
        }.contains("/nonexistent/model: no such model"))
        XCTAssertTrue(message {
            _ = try Evaluator.run(models: [ModelSpec(name: "m", path: Self.teacher)], task: .reasoning([]), taskName: "t")
        }.contains("holds no items"))
    }

    /// The teacher against itself: full agreement, zero KL; accuracy on generated problems as
    /// the demo measures it (96% on 300).
    func testReasoningTaskAndSelfAgreement() throws {
        let task = try EvalTask.load("word-problems", limit: 16)
        let r = try Evaluator.run(models: [ModelSpec(name: "t", path: Self.teacher, isTeacher: true), ModelSpec(name: "same", path: Self.teacher)],
                                  task: task, taskName: "word-problems", options: fastOptions())
        XCTAssertEqual(r.models.map(\.role), [.teacher, .student])
        let t = r.models[0], s = r.models[1]
        XCTAssertGreaterThanOrEqual(t.metrics["accuracy"]!, 0.8)
        XCTAssertEqual(t.metrics["template_compliance"]!, 1)
        XCTAssertLessThanOrEqual(t.metrics["reasoning_success"]!, t.metrics["accuracy"]!)
        XCTAssertEqual(t.metrics, s.metrics)
        XCTAssertNil(t.agreement)
        let a = try XCTUnwrap(s.agreement)
        XCTAssertEqual(a.top1, 1)
        XCTAssertEqual(a.meanKl, 0, accuracy: 1e-6)
        XCTAssertEqual(a.answerAgreement, 1)
        XCTAssertGreaterThan(a.positions, 16)
        XCTAssertEqual(t.parameters, 821_760)
        XCTAssertGreaterThan(t.diskBytes, 1_000_000)
        let speed = try XCTUnwrap(t.speed)
        XCTAssertEqual(speed.newTokens, 4)
        XCTAssertGreaterThan(speed.decodeTokensPerSecond, 0)
        XCTAssertLessThanOrEqual(speed.latencyP50Ms, speed.latencyP95Ms)
        XCTAssertNotNil(t.guidance)
    }

    /// Classification picks the choice of highest summed log-probability, recomputed here with
    /// `PretrainedModel.score`; perplexity equals the scorer's on a text shorter than a window.
    func testClassificationAndPerplexityAgainstTheScorer() throws {
        let model = try PretrainedModel.load(Self.teacher)
        let prompt = "Ann has 3 apples and buys 4 more. How many apples does she have?"
        let choices = ["<think>\n3+4=7\n</think>\n\n#### 7", "<think>\n3+4=8\n</think>\n\n#### 8", "#### 12"]
        let context = try Evaluator.contextIds(model, prompt)
        let tok = try model.requireTokenizer()
        let scores = try choices.map { c -> Double in
            let cont = tok.encode(c, addSpecialTokens: false)
            let s = try model.score(ids: context + cont)
            return s.tokenLogprobs.suffix(cont.count).reduce(0.0) { $0 + Double($1) }
        }
        let best = choices[scores.indices.max { scores[$0] < scores[$1] }!]
        XCTAssertEqual(best, choices[0])      // the teacher knows 3 + 4
        let file = try write("cls.jsonl", choices.indices.map { i in
            let obj: [String: Any] = ["prompt": prompt, "choices": choices, "label": choices[i]]
            return String(data: try! JSONSerialization.data(withJSONObject: obj), encoding: .utf8)!
        }.joined(separator: "\n"))
        var o = fastOptions()
        o.measureSpeed = false
        let r = try Evaluator.run(models: [ModelSpec(name: "t", path: Self.teacher)], task: try EvalTask.load(file), taskName: file, options: o)
        // Always predicts choice 0: right once in three; F1 of class 0 = 2·1/(2·1 + 2) = 0.5, others 0.
        XCTAssertEqual(r.models[0].metrics["accuracy"]!, 1.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(r.models[0].metrics["macro_f1"]!, 0.5 / 3, accuracy: 1e-12)

        let text = "Gia buys 4 bags with 8 marbles in each bag."
        let txt = try write("text.txt", text)
        let p = try Evaluator.run(models: [ModelSpec(name: "t", path: Self.teacher)], task: try EvalTask.load(txt), taskName: txt, options: o)
        XCTAssertEqual(p.models[0].metrics["perplexity"]!, try model.score(text: text).perplexity, accuracy: 1e-4)
    }

    /// Generation: references equal to the model's own greedy outputs give BLEU 100 and ROUGE 1.
    func testGenerationAgainstItsOwnOutputs() throws {
        let model = try PretrainedModel.load(Self.teacher)
        let prompts = ["A box has 22 stamps. Gia adds 7 and Kim adds 41. How many stamps are in the box?",
                       "Hugo had 86 cards. He lost 53, then found 4. How many cards does he have?"]
        var o = fastOptions()
        o.measureSpeed = false
        let outputs = try Evaluator.answers(model, prompts, options: o) { _ in }
        let file = try write("gen.jsonl", zip(prompts, outputs).map { p, out in
            String(data: try! JSONSerialization.data(withJSONObject: ["prompt": p, "reference": out]), encoding: .utf8)!
        }.joined(separator: "\n"))
        let r = try Evaluator.run(models: [ModelSpec(name: "t", path: Self.teacher)], task: try EvalTask.load(file), taskName: file, options: o)
        XCTAssertEqual(r.models[0].metrics["bleu"]!, 100, accuracy: 1e-9)
        for k in ["rouge1", "rouge2", "rougeL"] { XCTAssertEqual(r.models[0].metrics[k]!, 1, accuracy: 1e-12, k) }
    }

    func testTrainingCurvesAndPhasesFromAMetricsLog() throws {
        let lines = [
            #"{"step":1,"loss":2.5,"hard":2.5,"lr":0.001,"grad_norm":1,"temperature":2,"tokens_per_s":100}"#,
            #"{"step":2,"loss":2.0,"hard":2.0,"lr":0.001,"grad_norm":1,"temperature":2,"tokens_per_s":100,"eval_loss":2.2}"#,
            #"{"step":3,"loss":1.5,"soft":1.0,"hard":1.8,"feature":0.3,"lr":0.001,"grad_norm":1,"temperature":2,"tokens_per_s":100}"#,
            #"{"step":4,"loss":1.2,"soft":0.9,"hard":1.5,"lr":0.001,"grad_norm":1,"temperature":1,"tokens_per_s":100,"eval_loss":1.4}"#,
            #"{"step":5,"loss":1.1,"so"#,
        ]
        let path = try write("metrics.jsonl", lines.joined(separator: "\n"))
        let c = try TrainingCurves.load(metrics: path)
        XCTAssertEqual(c.train.map(\.step), [1, 2, 3, 4])
        XCTAssertEqual(c.validation.map(\.value), [2.2, 1.4])
        XCTAssertEqual(c.phases.map(\.name), ["hard", "soft + hard + feature", "soft + hard"])
        XCTAssertEqual(c.phases.map(\.startStep), [1, 3, 4])
        let bad = try write("bad.jsonl", "oops\n" + lines[0] + "\n")
        XCTAssertTrue(message { _ = try TrainingCurves.load(metrics: bad) }.contains("bad.jsonl:1: not a JSON object"))
    }

    func testAttentionMapRowsAreDistributions() throws {
        let model = try PretrainedModel.load(Self.teacher)
        let m = try AttentionMaps.map(model, name: "t", text: "3+4=7", layer: 1, head: 2)
        XCTAssertEqual(m.tokens, ["3", "+", "4", "=", "7"])
        for (i, row) in m.weights.enumerated() {
            XCTAssertEqual(row.reduce(0, +), 1, accuracy: 1e-5)
            XCTAssertTrue(row[(i + 1)...].allSatisfy { $0 == 0 }, "causal row \(i)")
        }
        XCTAssertTrue(message { _ = try AttentionMaps.map(model, name: "t", text: "x", layer: 9, head: 0) }.contains("layer 9 is outside 0..<4"))
    }
}

final class SpeedProbeTests: XCTestCase {
    func testChildProcessResultsAndFailures() throws {
        let ok = SpeedProbe.childProcess(executable: "/bin/sh", arguments: ["-c", """
            echo noise; echo '{"threads":2,"batch":1,"prompt_tokens":40,"new_tokens":8,"time_to_first_token_ms":3.5,"prompt_tokens_per_second":100,"decode_tokens_per_second":50,"latency_p50_ms":10,"latency_p95_ms":12,"peak_resident_bytes":123456}'
            """, "sh"])
        let s = try ok(ModelSpec(name: "m", path: "/x"))
        XCTAssertEqual(s.peakResidentBytes, 123_456)
        XCTAssertEqual(s.decodeTokensPerSecond, 50)
        let failing = SpeedProbe.childProcess(executable: "/bin/sh", arguments: ["-c", "echo broken >&2; exit 3", "sh"])
        XCTAssertThrowsError(try failing(ModelSpec(name: "m", path: "/x"))) { e in
            XCTAssertTrue("\(e)".contains("measuring m in a child process failed (status 3)"), "\(e)")
            XCTAssertTrue("\(e)".contains("broken"), "\(e)")
        }
    }

    func testMeasureInThisProcessReportsThePeak() throws {
        var o = EvalOptions()
        o.speedRequests = 2
        o.speedNewTokens = 4
        let s = try SpeedProbe.measure(ModelSpec(name: "teacher", path: EvaluatorTests.teacher), task: try EvalTask.load("word-problems", limit: 2), options: o)
        XCTAssertGreaterThan(s.peakResidentBytes, 1_000_000)
        XCTAssertEqual(s.newTokens, 4)
        XCTAssertThrowsError(try SpeedProbe.measure(ModelSpec(name: "x", path: "/nonexistent"), task: .reasoning([.init(prompt: "a", answer: "1")]), options: o))
    }
}

final class RunReportTests: XCTestCase {
    /// report.json as `distill eval` writes it (snake_case keys) is read back by `distill report
    /// --eval`, together with a run's metrics and attention maps of teacher and student.
    func testRunReportReadsAnEvalReportAndDrawsAttention() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("run-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var o = EvalOptions()
        o.maxTokens = 48
        o.measureSpeed = false
        let ev = try Evaluator.run(models: [ModelSpec(name: "t", path: EvaluatorTests.teacher, isTeacher: true),
                                            ModelSpec(name: "s", path: EvaluatorTests.teacher)],
                                   task: try EvalTask.load("word-problems", limit: 3), taskName: "word-problems", options: o)
        let enc = JSONEncoder()
        enc.keyEncodingStrategy = .convertToSnakeCase
        let evalPath = dir.appendingPathComponent("eval.json")
        try enc.encode(ev).write(to: evalPath)
        try Data(#"{"step":1,"loss":2.5,"hard":2.5}"#.utf8).write(to: dir.appendingPathComponent("metrics.jsonl"))
        var ro = RunReport.Options(runDirectory: dir.path)
        ro.evaluation = evalPath.path
        ro.example = "3+4=7"
        ro.teacher = EvaluatorTests.teacher
        ro.student = EvaluatorTests.teacher
        ro.studentLayer = 0
        let r = try RunReport.build(ro)
        XCTAssertEqual(r.models.map(\.name), ["t", "s"])
        XCTAssertEqual(r.models[1].agreement?.meanKl ?? -1, 0, accuracy: 1e-6)
        XCTAssertEqual(r.training?.train.count, 1)
        XCTAssertEqual(r.attention.map(\.layer), [3, 0])
        XCTAssertTrue(r.html().contains("<svg"))
        var missing = RunReport.Options(runDirectory: dir.appendingPathComponent("nope").path)
        missing.example = "x"
        XCTAssertThrowsError(try RunReport.build(missing)) { XCTAssertTrue("\($0)".contains("no such run directory")) }
        let bad = dir.appendingPathComponent("bad.json")
        try Data("{}".utf8).write(to: bad)
        var withBad = RunReport.Options(runDirectory: dir.path)
        withBad.evaluation = bad.path
        XCTAssertThrowsError(try RunReport.build(withBad)) { XCTAssertTrue("\($0)".contains("not a distill eval report.json")) }
    }
}
