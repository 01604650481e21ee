import DistillNN
import DistillTensor
@testable import Distillation
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real crash: a child process (this test binary, running `testChildTraining`) trains with a
/// checkpoint every 7 steps and is killed with SIGKILL at an arbitrary moment (possibly while
/// writing a checkpoint); the parent resumes from the newest checkpoint and must end with the same
/// weights as an uninterrupted run.
final class TrainerKillTests: XCTestCase {
    static let environmentKey = "DISTILL_TRAINER_CHILD_DIR"
    static let steps = 120

    /// Runs only as the child of `testKilledProcessResumesBitExactly`.
    func testChildTraining() throws {
        guard let path = ProcessInfo.processInfo.environment[Self.environmentKey] else {
            throw XCTSkip("runs only as the child process of testKilledProcessResumesBitExactly")
        }
        let t = TrainerTests.makeTrainer(studentSeed: 11, teacher: TinyCorpus.teacher(), order: .shuffled(seed: 3),
                                         dir: URL(fileURLWithPath: path), checkpointEvery: 7, total: Self.steps)
        // Slow enough to be killed mid-run: 4 ms a step, 50 ms a step once past the kill point.
        t.onEvent = { e in if case .step(let m) = e { usleep(m.step > 42 ? 50_000 : 4000) } }
        try t.run()
    }

    func testKilledProcessResumesBitExactly() throws {
        let exe = CommandLine.arguments[0]
        guard exe.hasSuffix(".xctest") || exe.hasSuffix("xctest"), FileManager.default.isExecutableFile(atPath: exe) else {
            throw XCTSkip("the test binary cannot be started as a child process here (\(exe))")
        }
        let dir = try TrainerTests.tempDir(self)
        let child = Process()
        child.executableURL = URL(fileURLWithPath: exe)
        child.arguments = ["DistillationTests.TrainerKillTests/testChildTraining"]
        var env = ProcessInfo.processInfo.environment
        env[Self.environmentKey] = dir.path
        child.environment = env
        child.standardOutput = FileHandle.nullDevice
        child.standardError = FileHandle.nullDevice
        try child.run()
        // Kill it once it has passed step 40 (at least 5 checkpoints).
        let deadline = Date().addingTimeInterval(120)
        while child.isRunning && Date() < deadline && (Checkpoint.list(in: dir).last?.step ?? 0) < 40 { usleep(2000) }
        guard child.isRunning else { return XCTFail("the child finished before it could be killed") }
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        XCTAssertEqual(child.terminationReason, .uncaughtSignal)
        let killedAt = Checkpoint.list(in: dir).last!.step
        XCTAssertLessThan(killedAt, Self.steps)

        let teacher = TinyCorpus.teacher()
        let resumed = TrainerTests.makeTrainer(studentSeed: 99, teacher: teacher, order: .shuffled(seed: 3), dir: dir,
                                               checkpointEvery: 7, total: Self.steps)
        XCTAssertNotNil(try resumed.resumeFromLatestCheckpoint())
        XCTAssertEqual(resumed.step, killedAt)
        try resumed.run()
        let full = TrainerTests.makeTrainer(studentSeed: 11, teacher: teacher, order: .shuffled(seed: 3), dir: nil,
                                            total: Self.steps)
        try full.run()
        TrainerTests.assertSameWeights(resumed.student, full.student)
        TrainerTests.assertSameWeights(resumed.projector!, full.projector!)
    }
}
