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

/// Data-parallel training on a real MPI job: `mpirun --oversubscribe -np 2` starts this test
/// binary twice (`testChildRank`), one thread each; the two ranks share every step's two
/// micro-batches. Needs Open MPI (`apt-get install openmpi-bin libopenmpi-dev`; CI installs it).
final class DataParallelTests: XCTestCase {
    static let directoryKey = "DISTILL_DP_DIR"
    static let modeKey = "DISTILL_DP_MODE"
    static let steps = 30

    static func mpirun() -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return (path.split(separator: ":").map { "\($0)/mpirun" } + ["/usr/bin/mpirun"]).first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// The weights (student, then projector) in name order, as bytes.
    static func weightBytes(_ t: Trainer) -> Data {
        var d = Data()
        for m in [t.student as Module, t.projector! as Module] {
            for (_, v) in TrainerTests.weights(m).sorted(by: { $0.key < $1.key }) { v.withUnsafeBytes { d.append(contentsOf: $0) } }
        }
        return d
    }

    /// One rank: trains (resuming from the newest checkpoint when asked), writes its weights to
    /// DIR/weights-rankR.bin. Mode `slow` waits 40 ms a step and writes DIR/pid-rankR.
    func testChildRank() throws {
        guard let dir = ProcessInfo.processInfo.environment[Self.directoryKey].map({ URL(fileURLWithPath: $0) }) else {
            throw XCTSkip("runs only as a rank of the data-parallel tests (under mpirun)")
        }
        let mode = ProcessInfo.processInfo.environment[Self.modeKey] ?? ""
        guard let group = try ProcessGroup.world() else { return XCTFail("not started by mpirun with several processes") }
        let t = TrainerTests.makeTrainer(studentSeed: 11, teacher: TinyCorpus.teacher(), order: .shuffled(seed: 3),
                                         dir: dir.appendingPathComponent("checkpoints"), checkpointEvery: 5, total: Self.steps,
                                         processGroup: group)
        if mode == "cache" {
            try LogitCacheWriter(path: dir.appendingPathComponent("ranks.cache").path, header: Self.cacheHeader)
                .run(teacher: LocalTeacher(lm: TinyCorpus.teacher()), sequences: Self.cacheSequences, processGroup: group)
            group.finish(success: true)
            return
        }
        if mode.contains("resume") { _ = try t.resumeFromLatestCheckpoint() }
        if mode.contains("slow") {
            try "\(getpid())".write(to: dir.appendingPathComponent("pid-rank\(group.rank)"), atomically: true, encoding: .utf8)
            t.onEvent = { e in if case .step = e { usleep(40_000) } }
        }
        try t.run()
        try Self.weightBytes(t).write(to: dir.appendingPathComponent("weights-rank\(group.rank).bin"))
        group.finish(success: true)
    }

    /// mpirun's options: as root, more processes than cores, no cross-memory attach (containers
    /// often forbid process_vm_readv; shared memory copies work everywhere).
    static let mpirunOptions = ["--allow-run-as-root", "--oversubscribe", "--mca", "btl_vader_single_copy_mechanism", "none"]

    /// Whether this machine can start an MPI job at all (a container without the network pieces
    /// Open MPI wants cannot); checked once with `true` as the program.
    static let canLaunch: Bool = {
        guard let mpirun = mpirun() else { return false }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: mpirun)
        p.arguments = mpirunOptions + ["-np", "2", "/bin/true"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }()

    func launch(_ dir: URL, mode: String) throws -> Process {
        guard let mpirun = Self.mpirun() else { throw XCTSkip("Open MPI's mpirun is not installed") }
        guard Self.canLaunch else { throw XCTSkip("mpirun cannot start a 2-process job of /bin/true here") }
        let exe = CommandLine.arguments[0]
        guard exe.hasSuffix("xctest"), FileManager.default.isExecutableFile(atPath: exe) else {
            throw XCTSkip("the test binary cannot be started as a child process here (\(exe))")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: mpirun)
        let backend = sameGemmBackendEnvironment().map { "\($0.key)=\($0.value)" }[0]
        p.arguments = Self.mpirunOptions + ["-np", "2", "-x", "DISTILL_THREADS=1", "-x", backend,
                       "-x", "\(Self.directoryKey)=\(dir.path)", "-x", "\(Self.modeKey)=\(mode)",
                       exe, "DistillationTests.DataParallelTests/testChildRank"]
        let log = dir.appendingPathComponent("mpirun-\(mode).log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return p
    }

    func log(_ dir: URL, _ mode: String) -> String {
        String(((try? String(contentsOf: dir.appendingPathComponent("mpirun-\(mode).log"), encoding: .utf8)) ?? "").suffix(3000))
    }

    /// The single-process run with the same global batch (2 micro-batches of 3 rows a step).
    func reference() throws -> Data {
        let t = TrainerTests.makeTrainer(studentSeed: 11, teacher: TinyCorpus.teacher(), order: .shuffled(seed: 3), dir: nil, total: Self.steps)
        try t.run()
        return Self.weightBytes(t)
    }

    func testTwoRanksEqualOneProcess() throws {
        let dir = try TrainerTests.tempDir(self)
        let p = try launch(dir, mode: "plain")
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, log(dir, "plain"))
        let expected = try reference()
        let ranks = try (0..<2).map { try Data(contentsOf: dir.appendingPathComponent("weights-rank\($0).bin")) }
        XCTAssertEqual(ranks[0], ranks[1], "the ranks' weights drifted apart")
        assertClose(ranks[0], expected)
        // Rank 0 alone wrote the checkpoints; a single process resumes them.
        XCTAssertEqual(Checkpoint.list(in: dir.appendingPathComponent("checkpoints")).map(\.step), [5, 10, 15, 20, 25, 30])
    }

    /// kill -9 of one rank ends the job with a non-zero exit within a minute; the job resumed from
    /// the last checkpoint ends where an uninterrupted run does, and so does one process resuming
    /// the two ranks' checkpoint (another process count, same global batch).
    func testKilledRankEndsTheJobAndResumeContinuesExactly() throws {
        let dir = try TrainerTests.tempDir(self)
        let p = try launch(dir, mode: "slow")
        let checkpoints = dir.appendingPathComponent("checkpoints")
        let deadline = Date().addingTimeInterval(120)
        while (Checkpoint.latest(in: checkpoints) == nil || !FileManager.default.fileExists(atPath: dir.appendingPathComponent("pid-rank1").path))
            && p.isRunning && Date() < deadline { usleep(20_000) }
        XCTAssertTrue(p.isRunning, "the job ended before it could be killed: \(log(dir, "slow"))")
        let pid = Int32(try String(contentsOf: dir.appendingPathComponent("pid-rank1"), encoding: .utf8))!
        let killedAt = Date()
        kill(pid, SIGKILL)
        while p.isRunning && Date().timeIntervalSince(killedAt) < 60 { usleep(50_000) }
        XCTAssertFalse(p.isRunning, "the job still runs a minute after rank 1 was killed")
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        XCTAssertNotEqual(p.terminationStatus, 0)
        XCTAssertLessThan(Checkpoint.list(in: checkpoints).last?.step ?? 0, Self.steps, "killed after the last step")

        // One process resumes the job's checkpoint (copied aside first).
        let single = dir.appendingPathComponent("single")
        try FileManager.default.copyItem(at: checkpoints, to: single)
        let alone = TrainerTests.makeTrainer(studentSeed: 99, teacher: TinyCorpus.teacher(), order: .shuffled(seed: 3), dir: single,
                                             checkpointEvery: 5, total: Self.steps)
        _ = try alone.resumeFromLatestCheckpoint()
        try alone.run()

        let r = try launch(dir, mode: "resume")
        r.waitUntilExit()
        XCTAssertEqual(r.terminationStatus, 0, log(dir, "resume"))
        let expected = try reference()
        assertClose(try Data(contentsOf: dir.appendingPathComponent("weights-rank0.bin")), expected)
        assertClose(Self.weightBytes(alone), expected)
    }

    /// The command line end to end: `mpirun -np 2 distill train` (KD from demo/teacher into a
    /// derived student) writes the same student as `distill train` in one process, and only rank 0
    /// writes (one metrics line per step, the checkpoints once).
    func testDistillTrainUnderMPIRunEqualsOneProcess() throws {
        guard let mpirun = Self.mpirun() else { throw XCTSkip("Open MPI's mpirun is not installed") }
        guard Self.canLaunch else { throw XCTSkip("mpirun cannot start a 2-process job of /bin/true here") }
        let distill = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("distill")
        guard FileManager.default.isExecutableFile(atPath: distill.path) else { throw XCTSkip("no distill executable beside the tests") }
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = try TrainerTests.tempDir(self)
        try (0..<12).map { #"{"messages": [{"role": "user", "content": "What is \#($0) plus \#($0 + 3)?"}, {"role": "assistant", "content": "It is \#(2 * $0 + 3)."}]}"# }
            .joined(separator: "\n").write(to: dir.appendingPathComponent("data.jsonl"), atomically: true, encoding: .utf8)
        try """
            teacher: {path: \(repo.appendingPathComponent("demo/teacher").path)}
            student: {derive: {layers: 2, hidden: 128, heads: 4, kv_heads: 2, intermediate: 192}}
            data: {train: \(dir.appendingPathComponent("data.jsonl").path), max_length: 64, chat_template: true}
            loss: {kind: kd, alpha: 0.5, temperature: 2}
            schedule: {steps: 6, batch_size: 2, grad_accum: 2, lr: 1.0e-3, warmup: 0, decay: constant, checkpoint_every: 3}
            output: {dir: placeholder}
            seed: 4
            """.write(to: dir.appendingPathComponent("kd.yaml"), atomically: true, encoding: .utf8)
        func run(_ exe: URL, _ args: [String], out: String) throws {
            let p = Process()
            p.executableURL = exe
            p.arguments = args + [distill.path, "train", dir.appendingPathComponent("kd.yaml").path, "--out", dir.appendingPathComponent(out).path]
            var env = ProcessInfo.processInfo.environment
            env["DISTILL_BLAS"] = "off"
            env["DISTILL_THREADS"] = "1"
            p.environment = env
            let log = dir.appendingPathComponent("\(out).log")
            FileManager.default.createFile(atPath: log.path, contents: nil)
            p.standardOutput = try FileHandle(forWritingTo: log)
            p.standardError = p.standardOutput
            try p.run()
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
        }
        try run(URL(fileURLWithPath: "/usr/bin/env"), [], out: "one")
        try run(URL(fileURLWithPath: mpirun), Self.mpirunOptions + ["-np", "2", "-x", "DISTILL_BLAS=off", "-x", "DISTILL_THREADS=1"], out: "two")
        let one = try Data(contentsOf: dir.appendingPathComponent("one/model.safetensors"))
        XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("two/model.safetensors")), one)
        let metrics = try String(contentsOf: dir.appendingPathComponent("two/metrics.jsonl"), encoding: .utf8)
        XCTAssertEqual(metrics.split(separator: "\n").count, 6)
        XCTAssertEqual(Checkpoint.list(in: dir.appendingPathComponent("two/checkpoints")).map(\.step), [3, 6])
        XCTAssertTrue(try String(contentsOf: dir.appendingPathComponent("two.log"), encoding: .utf8).contains("data-parallel over 2 processes"))
    }

    /// Buckets follow the parameters from the last to the first, at most 4M values each (one
    /// larger parameter alone).
    func testGradientBuckets() {
        let m = 1 << 20
        XCTAssertEqual(GradientReduction.buckets([1, 2, 3]).members, [[2, 1, 0]])
        XCTAssertEqual(GradientReduction.buckets([m, m, m, m, m]).members, [[4, 3, 2, 1], [0]])
        let b = GradientReduction.buckets([3 * m, 2 * m, 3 * m, 5 * m])
        XCTAssertEqual(b.members, [[3], [2], [1], [0]])
        XCTAssertEqual(b.of, [3, 2, 1, 0])
    }

    static let cacheSequences = TinyCorpus.sequences(11, seed: 4).map(\.ids)
    static let cacheHeader = LogitCacheHeader(dataHash: 1, vocabularySize: 16, tokenizerVocabularySize: 16, k: 5, temperature: 2,
                                              maxLength: 0, chunkSequences: 3, fingerprint: "dp")

    /// cache-logits on 2 ranks (chunks of 3 sequences shared out, the last chunk short) writes the
    /// bytes one process writes.
    func testCacheLogitsOnTwoRanksEqualsOneProcess() throws {
        let dir = try TrainerTests.tempDir(self)
        let p = try launch(dir, mode: "cache")
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, log(dir, "cache"))
        let single = dir.appendingPathComponent("single.cache").path
        try LogitCacheWriter(path: single, header: Self.cacheHeader).run(teacher: LocalTeacher(lm: TinyCorpus.teacher()), sequences: Self.cacheSequences)
        let a = try Data(contentsOf: dir.appendingPathComponent("ranks.cache")), b = try Data(contentsOf: URL(fileURLWithPath: single))
        XCTAssertGreaterThan(b.count, 1000)
        XCTAssertEqual(a, b)
        XCTAssertEqual(try LogitCache(path: single).header.sequenceCount, Self.cacheSequences.count)
    }

    /// Equal within 1e-5 relative (to the largest weight), value by value.
    func assertClose(_ a: Data, _ b: Data, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        let x = a.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }, y = b.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let scale = y.map(abs).max() ?? 1
        let worst = zip(x, y).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, 1e-5 * scale, "largest difference \(worst) (weights up to \(scale))", file: file, line: line)
    }
}
