import DistillNN
import DistillTensor
@testable import Distillation
import DistillTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Real crashes: a child process (this test binary, running one of the `testChild…` methods)
/// works while the parent kills it with SIGKILL at random instants (possibly while it writes a
/// checkpoint or a cache chunk), restarts it (it resumes), kills it again, and finally finishes
/// the work itself; the result must equal an uninterrupted run's.
final class TrainerKillTests: XCTestCase {
    static let environmentKey = "DISTILL_KILL_CHILD_DIR"
    static let steps = 120

    func childDirectory() throws -> URL {
        guard let path = ProcessInfo.processInfo.environment[Self.environmentKey] else {
            throw XCTSkip("runs only as a child process of the kill tests")
        }
        return URL(fileURLWithPath: path)
    }

    static func trainer(_ dir: URL, seed: UInt64 = 11) -> Trainer {
        TrainerTests.makeTrainer(studentSeed: seed, teacher: TinyCorpus.teacher(), order: .shuffled(seed: 3), dir: dir,
                                 checkpointEvery: 7, total: steps)
    }

    /// Trains (resuming when a checkpoint exists), 25 ms a step so that it can be killed mid-run.
    func testChildTraining() throws {
        let t = Self.trainer(try childDirectory())
        if Checkpoint.latest(in: try childDirectory()) != nil { try t.resumeFromLatestCheckpoint() }
        t.onEvent = { e in if case .step = e { usleep(25_000) } }
        try t.run()
    }

    static let cacheSequences = (0..<160).map { i in (0..<24).map { (i * 11 + $0 * 5) % 64 } }
    static let cacheHeader = LogitCacheHeader(dataHash: 7, vocabularySize: 64, tokenizerVocabularySize: 64, k: 6, temperature: 1,
                                              maxLength: 24, chunkSequences: 4, fingerprint: "kill")
    static func cacheRows(_ i: Int, _ seq: [Int]) -> [LogitCacheRow] {
        seq.indices.map { t in LogitCacheRow(ids: (0..<6).map { (i + t * 3 + $0 * 7) % 64 }, logprobs: (0..<6).map { -Float($0) - Float(i) / 1000 },
                                             rest: Float(t) / 100) }
    }

    /// Writes the logit cache (continuing an existing one), 12 ms a sequence.
    func testChildCacheLogits() throws {
        let path = try childDirectory().appendingPathComponent("teacher.cache").path
        try LogitCacheWriter(path: path, header: Self.cacheHeader).run(sequences: Self.cacheSequences) { i, seq in
            usleep(12_000)
            return Self.cacheRows(i, seq)
        }
    }

    /// Starts `test` as a child over `dir` and kills it `kills` times at random instants (restarting
    /// it after each); returns the instants (ms after each start) for failure messages.
    func killRepeatedly(_ test: String, dir: URL, kills: Int, within ms: ClosedRange<Int>) throws -> [Int] {
        let exe = CommandLine.arguments[0]
        guard exe.hasSuffix(".xctest") || exe.hasSuffix("xctest"), FileManager.default.isExecutableFile(atPath: exe) else {
            throw XCTSkip("the test binary cannot be started as a child process here (\(exe))")
        }
        var instants: [Int] = []
        for _ in 0..<kills {
            let child = Process()
            child.executableURL = URL(fileURLWithPath: exe)
            child.arguments = ["DistillationTests.TrainerKillTests/\(test)"]
            var env = ProcessInfo.processInfo.environment
            env[Self.environmentKey] = dir.path
            env.merge(sameGemmBackendEnvironment()) { $1 }
            child.environment = env
            child.standardOutput = FileHandle.nullDevice
            child.standardError = FileHandle.nullDevice
            try child.run()
            guard let wait = killAtRandomInstant(child, within: ms) else { break }
            instants.append(wait)
            XCTAssertEqual(child.terminationReason, .uncaughtSignal)
        }
        return instants
    }

    func testKilledTrainingResumesBitExactly() throws {
        let dir = try TrainerTests.tempDir(self)
        let instants = try killRepeatedly("testChildTraining", dir: dir, kills: 3, within: 300...800)
        let resumed = Self.trainer(dir, seed: 99)
        if Checkpoint.latest(in: dir) != nil { try resumed.resumeFromLatestCheckpoint() }
        XCTAssertLessThan(resumed.step, Self.steps, "killed at \(instants) ms: the children finished before the last kill")
        try resumed.run()
        let full = TrainerTests.makeTrainer(studentSeed: 11, teacher: TinyCorpus.teacher(), order: .shuffled(seed: 3), dir: nil,
                                            total: Self.steps)
        try full.run()
        TrainerTests.assertSameWeights(resumed.student, full.student)
        TrainerTests.assertSameWeights(resumed.projector!, full.projector!)
    }

    func testKilledCacheLogitsResumesByteForByte() throws {
        let dir = try TrainerTests.tempDir(self)
        let instants = try killRepeatedly("testChildCacheLogits", dir: dir, kills: 3, within: 200...500)
        let path = dir.appendingPathComponent("teacher.cache").path
        let before = (try? LogitCache(path: path).header.sequenceCount) ?? 0
        XCTAssertLessThan(before, Self.cacheSequences.count, "killed at \(instants) ms: the children finished before the last kill")
        try LogitCacheWriter(path: path, header: Self.cacheHeader).run(sequences: Self.cacheSequences, rows: Self.cacheRows)
        let reference = dir.appendingPathComponent("reference.cache").path
        try LogitCacheWriter(path: reference, header: Self.cacheHeader).run(sequences: Self.cacheSequences, rows: Self.cacheRows)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), try Data(contentsOf: URL(fileURLWithPath: reference)),
                       "killed at \(instants) ms")
    }
}
