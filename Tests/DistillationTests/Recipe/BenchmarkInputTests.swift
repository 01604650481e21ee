import DistillModels
@testable import Distillation
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
}
