@testable import Distillation
import DistillBench
import DistillDemos
import DistillModels
import Foundation
import XCTest

/// Bad inputs of `distill bench kd` and `distill bench generate`.
extension RecipeRunnerTests {
    func testKDBenchmarkRefusesUnreadableAndShortText() throws {
        let teacher = try makeModel("teacher")
        let options = KDBenchmark.Options(student: StudentOptions(layers: 1, hidden: 16, heads: 2, kvHeads: 1, intermediate: 32))
        let missing = tmp.appendingPathComponent("missing.txt").path
        assertThrowsMessage(try KDBenchmark.run(teacherPath: teacher.path, textFile: missing, options: options),
                            contains: [missing, "cannot read UTF-8 text"])
        let binary = tmp.appendingPathComponent("binary.txt")
        try Data([0xff, 0xfe, 0x00, 0xc3]).write(to: binary)
        assertThrowsMessage(try KDBenchmark.run(teacherPath: teacher.path, textFile: binary.path, options: options),
                            contains: ["binary.txt", "cannot read UTF-8 text"])
        let short = tmp.appendingPathComponent("short.txt")
        try "Only a few words here.".write(to: short, atomically: true, encoding: .utf8)
        assertThrowsMessage(try KDBenchmark.run(teacherPath: teacher.path, textFile: short.path, options: options),
                            contains: ["short.txt", "tokens make too few chunks of 128"])
    }

    func testGenerationBenchmarkBatchList() throws {
        XCTAssertEqual(try GenerationBenchmark.batchSizes("1,8"), [1, 8])
        XCTAssertEqual(try GenerationBenchmark.batchSizes(" 2 , 4"), [2, 4])
        for bad in ["x", "1,,8", "0", "-1", "1.5", ""] {
            assertThrowsMessage(try GenerationBenchmark.batchSizes(bad), contains: ["is not a positive integer"])
        }
    }
}

final class ReasoningDemoInputTests: XCTestCase {
    func testMissingTeacherIsAClearError() async throws {
        var o = ReasoningDemo.Options()
        o.teacherPath = "/nonexistent/demo-teacher"
        do {
            _ = try await ReasoningDemo.run(o)
            XCTFail("expected an error")
        } catch {
            XCTAssertTrue("\(error)".contains("/nonexistent/demo-teacher: the demo teacher is missing"), "\(error)")
            XCTAssertTrue("\(error)".contains("--train-teacher"), "\(error)")
        }
    }

    static let demoTeacher = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("demo/teacher").path

    /// The whole chain on a few problems with the shipped teacher: traces, two derived students,
    /// evaluation, report.json.
    func testSmallRunWithTheShippedTeacher() async throws {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("reasoning-demo-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        var o = ReasoningDemo.Options()
        o.teacherPath = Self.demoTeacher
        o.outputDirectory = out.path
        o.trainPrompts = 12
        o.unlabeledPrompts = 8
        o.testPrompts = 10
        o.studentSteps = 3
        o.batchSize = 4
        let r = try await ReasoningDemo.run(o)
        XCTAssertEqual(r.teacher.params, 821_760)
        // 4 layers, 2 heads of 32 (1 key/value head), MLP 47: embedding 259·128 + norm 128 + 4·(attention
        // q 128·64+64, k and v 128·32+32 each, o 64·128 = 24,704; MLP 3·128·47; norms 256) = 24.98% of the teacher.
        XCTAssertEqual(r.baselineStudent.params, 259 * 128 + 128 + 4 * (24_704 + 3 * 128 * 47 + 256))
        XCTAssertEqual(r.distilledStudent.params, r.baselineStudent.params)
        XCTAssertGreaterThanOrEqual(r.teacher.accuracy, 0.8)         // the shipped teacher: 96% on 300 problems
        XCTAssertGreaterThan(r.tracesKept, 0)
        XCTAssertLessThanOrEqual(r.tracesKept, 20 * o.samplesPerPrompt)
        XCTAssertEqual(r.unlabeledPrompts, 8)
        XCTAssertLessThanOrEqual(r.unlabeledTracesKept, r.tracesKept)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("report.json"))) as! [String: Any]
        for key in ["teacher", "baseline_student", "distilled_student"] {
            let m = json[key] as! [String: Any]
            for field in ["params", "accuracy", "tokens_per_second", "latency_ms"] { XCTAssertNotNil(m[field], "\(key).\(field)") }
        }
        XCTAssertNotNil(json["trace_acceptance_rate"])
        let student = try PretrainedModel.loadDirectory(out.appendingPathComponent("distilled_student").path)
        XCTAssertEqual(try student.config.int("num_hidden_layers"), 4)
        XCTAssertEqual(try student.config.int("num_attention_heads"), 2)
        XCTAssertEqual(try student.config.int("head_dim"), 32)
        XCTAssertEqual(try student.config.int("intermediate_size"), 47)
    }

    func testStudentsAboveAQuarterOfTheTeacherAreRefused() async throws {
        var o = ReasoningDemo.Options()
        o.teacherPath = Self.demoTeacher
        o.outputDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("reasoning-demo-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: o.outputDirectory) }
        o.trainPrompts = 2
        o.testPrompts = 2
        o.studentLayers = 3
        o.studentIntermediate = 384
        let start = Date()
        do {
            _ = try await ReasoningDemo.run(o)
            XCTFail("expected an error")
        } catch {
            XCTAssertTrue("\(error)".contains("at most 25% allowed"), "\(error)")
            XCTAssertLessThan(Date().timeIntervalSince(start), 30, "refused before any traces are written")
            XCTAssertFalse(FileManager.default.fileExists(atPath: o.outputDirectory + "/traces.jsonl"))
        }
    }
}
