import Distillation
import Foundation
import XCTest
@testable import DistillPipeline

final class PipelineConfigurationTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-pipeline-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    /// recipes/pipeline/pipeline.yaml, below recipes/sft.yaml and the data files it names, reads as documented.
    func testExamplePipelineFile() throws {
        let dir = try temporaryDirectory()
        let fm = FileManager.default
        for d in ["recipes/pipeline", "data"] { try fm.createDirectory(at: dir.appendingPathComponent(d), withIntermediateDirectories: true) }
        for f in ["pipeline/pipeline.yaml", "sft.yaml"] {
            try fm.copyItem(at: Self.repository.appendingPathComponent("recipes/\(f)"), to: dir.appendingPathComponent("recipes/\(f)"))
        }
        try #"{"prompt": "What is 2 + 3?", "answer": "5"}"#.write(to: dir.appendingPathComponent("data/gsm8k-test.jsonl"), atomically: true, encoding: .utf8)
        try "Some general text.".write(to: dir.appendingPathComponent("data/general.txt"), atomically: true, encoding: .utf8)
        let c = try PipelineConfiguration.load(dir.appendingPathComponent("recipes/pipeline/pipeline.yaml").path)
        XCTAssertEqual(c.inbox, dir.appendingPathComponent("recipes/pipeline/inbox").standardizedFileURL)
        XCTAssertEqual(c.versions, dir.appendingPathComponent("recipes/pipeline/models").standardizedFileURL)
        XCTAssertEqual(c.initialStudent, dir.appendingPathComponent("models/student").standardizedFileURL)
        XCTAssertEqual(c.teacher.urls, ["http://127.0.0.1:8000/v1"])
        XCTAssertEqual(c.teacher.model, "deepseek-r1")
        XCTAssertEqual(c.teacher.samples, 4)
        XCTAssertEqual(c.teacher.sampling.maxTokens, 2048)
        XCTAssertEqual(c.teacher.keep, .shortestCorrect)
        XCTAssertEqual(c.teacher.filters, ["repetition", "language_mixing"])
        XCTAssertEqual(c.decontaminateAgainst, [dir.appendingPathComponent("data/gsm8k-test.jsonl").standardizedFileURL.path])
        XCTAssertEqual(c.recipeOverrides, ["schedule.steps=200", "schedule.checkpoint_every=50"])
        XCTAssertEqual(c.gate.task.metric, "accuracy")
        XCTAssertEqual(c.gate.margin, 0.01)
        XCTAssertEqual(c.gate.noRegression?.task, dir.appendingPathComponent("data/general.txt").standardizedFileURL.path)
        XCTAssertEqual(c.gate.tolerance, 0.5)
        let r = try c.recipe(student: "/s", train: "/t.jsonl", output: "/o")
        XCTAssertEqual(r.schedule.steps, 200)
        XCTAssertEqual(r.student.path, "/s")
        XCTAssertEqual(r.data.train, "/t.jsonl")
        XCTAssertEqual(r.output.dir, "/o")
    }

    /// Bad values are refused before any work, naming the file, line and key.
    func testErrorsNameFileLineAndKey() throws {
        let dir = try temporaryDirectory()
        try "hello".write(to: dir.appendingPathComponent("text.txt"), atomically: true, encoding: .utf8)
        try #"{"prompt": "p", "answer": "1"}"#.write(to: dir.appendingPathComponent("qa.jsonl"), atomically: true, encoding: .utf8)
        try """
            student: {path: s}
            data: {train: t.jsonl}
            loss: {kind: hard}
            schedule: {steps: 5}
            output: {dir: o}
            """.write(to: dir.appendingPathComponent("sft.yaml"), atomically: true, encoding: .utf8)
        try """
            student: {derive: {layers: 1, hidden: 8, heads: 2, kv_heads: 1, intermediate: 16}}
            teacher: {path: t}
            data: {train: t.jsonl}
            loss: {kind: hard}
            schedule: {steps: 5}
            output: {dir: o}
            """.write(to: dir.appendingPathComponent("derive.yaml"), atomically: true, encoding: .utf8)
        let good = """
            inbox: in
            work: work
            versions: models
            teacher:
              url: http://127.0.0.1:8000/v1
              model: t
            train: {recipe: sft.yaml}
            gate:
              task: qa.jsonl
              margin: 0.1
            """
        func load(_ yaml: String, _ overrides: [String] = []) throws -> PipelineConfiguration {
            try PipelineConfiguration.parse(yaml: yaml, file: "p.yaml", baseDirectory: dir, overrides: overrides)
        }
        XCTAssertNoThrow(try load(good))
        let cases: [([String], String)] = [
            (["teacher.url=localhost:8000"], "p.yaml:5: teacher.url: expected http(s)://host:port/v1"),
            (["teacher.samples=0"], "teacher.samples: expected an integer ≥ 1, found 0"),
            (["teacher.verifier=fuzzy"], "teacher.verifier: expected one of math, exact, none"),
            (["teacher.filters=[repetition, spelling]"], "teacher.filters: unknown filter spelling"),
            (["teacher.colour=red"], "teacher.colour: unknown key"),
            (["gate.margin=-1"], "p.yaml:10: gate.margin: expected a number ≥ 0, found -1"),
            (["gate.metric=bleu"], "gate.metric: a reasoning task has no bleu; expected one of accuracy"),
            (["gate.metric=speed"], "gate.metric: expected one of accuracy"),
            (["gate.task=missing.jsonl"], "p.yaml:9: gate.task: \(dir.path)/missing.jsonl: no such task file"),
            (["gate.no_regression.task=text.txt", "gate.no_regression.tolerance=-0.5"], "gate.no_regression.tolerance: expected a number ≥ 0"),
            (["gate.no_regression.task=text.txt", "gate.no_regression.metric=accuracy"], "gate.no_regression.metric: a language modelling task has no accuracy"),
            (["work=in"], "work: must differ from inbox"),
            (["decontaminate.against=[nowhere.jsonl]"], "decontaminate.against: no such evaluation file"),
            (["train.recipe=derive.yaml"], "derive.yaml:1: student.derive: the pipeline trains the current student version"),
            (["train.set=[schedule.steps]"], "train.set: item 1: expected key.path=value"),
            (["train.set=[schedule.stepz=3]"], "sft.yaml:4: schedule.stepz: unknown key"),
            (["poll_seconds=0"], "poll_seconds: expected a number > 0"),
        ]
        for (overrides, expected) in cases {
            XCTAssertThrowsError(try load(good, overrides), "\(overrides)") { e in
                XCTAssertTrue("\(e)".contains(expected), "\(overrides): \(e)")
            }
        }
        XCTAssertThrowsError(try load(good.replacingOccurrences(of: "  model: t\n", with: ""))) {
            XCTAssertTrue("\($0)".contains("p.yaml:4: teacher.model: missing required key"), "\($0)")
        }
    }

    /// The gate's rule, for metrics where higher and where lower is better.
    func testGateDecision() {
        let acc = { (cur: Double, cand: Double) in MetricComparison(task: "qa", metric: "accuracy", current: cur, candidate: cand) }
        let ppl = { (cur: Double, cand: Double) in MetricComparison(task: "text", metric: "perplexity", current: cur, candidate: cand) }
        XCTAssertTrue(GateResult.decide(task: acc(0.5, 0.6), noRegression: nil, margin: 0.05, tolerance: 0).promote)
        XCTAssertFalse(GateResult.decide(task: acc(0.5, 0.52), noRegression: nil, margin: 0.05, tolerance: 0).promote)
        XCTAssertFalse(GateResult.decide(task: acc(0.5, 0.5), noRegression: nil, margin: 0, tolerance: 0).promote, "equal is not better")
        XCTAssertTrue(GateResult.decide(task: acc(0.5, 0.51), noRegression: nil, margin: 0, tolerance: 0).promote)
        XCTAssertTrue(GateResult.decide(task: ppl(20, 15), noRegression: nil, margin: 1, tolerance: 0).promote)
        XCTAssertFalse(GateResult.decide(task: ppl(20, 25), noRegression: nil, margin: 0, tolerance: 0).promote)
        XCTAssertFalse(GateResult.decide(task: acc(0.5, .nan), noRegression: nil, margin: 0, tolerance: 0).promote)
        // The second task: within tolerance, then beyond it.
        XCTAssertTrue(GateResult.decide(task: acc(0.5, 0.7), noRegression: ppl(10, 10.4), margin: 0.1, tolerance: 0.5).promote)
        let r = GateResult.decide(task: acc(0.5, 0.7), noRegression: ppl(10, 11), margin: 0.1, tolerance: 0.5)
        XCTAssertFalse(r.promote)
        XCTAssertEqual(r.reasons, ["perplexity on text: candidate 11 vs current 10 — regressed by 1 (tolerance 0.5)"])
        let both = GateResult.decide(task: acc(0.5, 0.4), noRegression: acc(0.9, 0.8), margin: 0, tolerance: 0.05)
        XCTAssertEqual(both.reasons.count, 2)
        XCTAssertTrue(both.reasons[0].hasPrefix("accuracy on qa: candidate 0.4 vs current 0.5 — needs to be better"), both.reasons[0])
    }

    /// Versions: created once from a model directory (its files, not its subdirectories), the
    /// pointer switched by rename, the history kept once per batch.
    func testModelVersions() throws {
        let dir = try temporaryDirectory()
        let model = dir.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: model.appendingPathComponent("checkpoints/step-1"), withIntermediateDirectories: true)
        try "{}".write(to: model.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        try "w".write(to: model.appendingPathComponent("model.safetensors"), atomically: true, encoding: .utf8)
        let v = ModelVersions(directory: dir.appendingPathComponent("models"))
        XCTAssertNil(v.current())
        XCTAssertEqual(v.nextName(), "v0001")
        try v.create("v0001", from: model, info: ["batch": "b"])
        try v.create("v0001", from: dir, info: [:])  // exists: nothing happens
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: v.path("v0001").path)),
                       ["config.json", "model.safetensors", "version.json"])
        XCTAssertEqual(try v.info("v0001"), ["batch": "b"])
        try v.point(to: "v0001")
        XCTAssertEqual(v.current(), "v0001")
        try v.create("v0002", from: model, info: [:])
        try v.point(to: "v0002")
        XCTAssertEqual(v.current(), "v0002")
        XCTAssertEqual(v.versions(), ["v0001", "v0002"])
        XCTAssertEqual(v.nextName(), "v0003")
        XCTAssertThrowsError(try v.create("v0003", from: dir, info: [:])) { XCTAssertTrue("\($0)".contains("no config.json"), "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: v.path(".v0003.partial").path))
        try v.record(PipelineHistoryEntry(batch: "b", decision: .promoted, version: "v0002"))
        try v.record(PipelineHistoryEntry(batch: "b", decision: .refused))
        try v.record(PipelineHistoryEntry(batch: "c", decision: .refused, reasons: ["worse"]))
        XCTAssertEqual(try v.history().map(\.decision), [.promoted, .refused])
        XCTAssertEqual(try v.history().map(\.batch), ["b", "c"])
    }
}
