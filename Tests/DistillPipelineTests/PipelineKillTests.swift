import DistillServer
import DistillTestSupport
import Foundation
import XCTest
@testable import DistillPipeline
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `distill pipeline` killed with SIGKILL — at every stage boundary (after each stage's state is
/// written, and between the steps of a promotion), and at random instants — then run again: the
/// end equals an uninterrupted run's (the same decisions and reasons, the same promoted weights,
/// byte for byte). The children are this test binary running `testChildPipeline`.
final class PipelineKillTests: XCTestCase {
    static let configKey = "DISTILL_PIPELINE_CHILD_CONFIG"
    static let modeKey = "DISTILL_PIPELINE_CHILD_KILL"

    /// Runs the pipeline on the file the parent names; with the mode `boundary`, kills itself at
    /// the first boundary it has not been killed at before (they are listed in `boundaries.txt`
    /// beside the pipeline file: a repeated step reports its boundary again); otherwise waits
    /// 15 ms after each prompt and training step, for the parent's random kills.
    func testChildPipeline() async throws {
        guard let config = ProcessInfo.processInfo.environment[Self.configKey] else {
            throw XCTSkip("runs only as a child process of the pipeline kill tests")
        }
        let atBoundary = ProcessInfo.processInfo.environment[Self.modeKey] == "boundary"
        let list = URL(fileURLWithPath: config).deletingLastPathComponent().appendingPathComponent("boundaries.txt")
        let pipeline = ContinuousPipeline(configuration: try PipelineConfiguration.load(config))
        try await pipeline.runPending { e in
            let key: String
            switch e {
            // Random kills: slow steps, so that the instants fall inside the traces and training.
            case .traces(_, .promptDone), .recipe(_, .training(.step)): usleep(atBoundary ? 0 : 15_000); return
            case let .stage(id, stage): key = "\(id) \(stage.rawValue)"
            case let .versionCreated(id, v): key = "\(id) created \(v)"
            case let .pointerSwitched(id, v): key = "\(id) current \(v)"
            case let .initialVersion(v): key = "initial \(v)"
            default: return
            }
            let seen = (try? String(contentsOf: list, encoding: .utf8)) ?? ""
            guard atBoundary, !seen.split(separator: "\n").contains(Substring(key)) else { return }
            try! (seen + key + "\n").write(to: list, atomically: true, encoding: .utf8)
            kill(getpid(), SIGKILL)
        }
    }

    /// What must equal between runs: states, history (without times), versions and their weights.
    struct Outcome: Equatable {
        var states: [String]
        var history: [String]
        var versions: [String]
        var weights: [Data]
        var traces: [Data]
    }

    static func outcome(_ world: PipelineWorld) throws -> Outcome {
        let p = ContinuousPipeline(configuration: try world.configuration())
        let batches = try p.inboxBatches()
        let states = try batches.map { b -> String in
            String(decoding: try JSONEncoder.pipeline.encode(try p.state(b.id)!), as: UTF8.self)
        }
        let history = try p.versions.history().map { e -> String in
            var e = e
            e.time = ""
            return String(decoding: try JSONEncoder.pipeline.encode(e), as: UTF8.self).replacingOccurrences(of: world.root.path, with: "ROOT")
        }
        let versions = p.versions.versions()
        return Outcome(states: states, history: history, versions: versions,
                       weights: try versions.map { try Data(contentsOf: p.versions.path($0).appendingPathComponent("model.safetensors")) },
                       traces: try batches.map { try Data(contentsOf: p.batchDirectory($0.id).appendingPathComponent("train.jsonl")) })
    }

    func child(_ world: PipelineWorld, mode: String) throws -> Process {
        let exe = CommandLine.arguments[0]
        guard exe.hasSuffix("xctest"), FileManager.default.isExecutableFile(atPath: exe) else {
            throw XCTSkip("the test binary cannot be started as a child process here (\(exe))")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = ["DistillPipelineTests.PipelineKillTests/testChildPipeline"]
        var env = ProcessInfo.processInfo.environment
        env[Self.configKey] = world.configFile.path
        env[Self.modeKey] = mode
        env.merge(sameGemmBackendEnvironment()) { $1 }
        p.environment = env
        let log = world.root.appendingPathComponent("child.log")
        if !FileManager.default.fileExists(atPath: log.path) { FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return p
    }

    func testKilledAtEveryStageBoundaryEndsAsAnUninterruptedRun() async throws {
        let (teacher, running) = try await PipelineTests.teacherServer()
        let url = running.baseURL + "/v1"
        let reference = try PipelineWorld(name: "reference", teacherURL: url)
        defer { reference.remove() }
        try reference.dropBothBatches()
        _ = try await PipelineTests.runBothBatches(ContinuousPipeline(configuration: try reference.configuration()), teacher: teacher)
        let expected = try Self.outcome(reference)
        XCTAssertEqual(expected.versions, ["v0001", "v0002"])

        try teacher.swap(to: try PipelineWorld.teacherA())
        let world = try PipelineWorld(name: "killed", teacherURL: url)
        defer { world.remove() }
        try world.dropBothBatches()
        let pipeline = ContinuousPipeline(configuration: try world.configuration())
        let batch1 = try pipeline.inboxBatches()[0].id
        var kills = 0, swapped = false
        while true {
            // The teacher changes between the batches, as in the reference run.
            if !swapped, try pipeline.state(batch1)?.stage == .done {
                try teacher.swap(to: try PipelineWorld.teacherB())
                swapped = true
            }
            let p = try child(world, mode: "boundary")
            p.waitUntilExit()
            if p.terminationReason == .exit {
                let log = (try? String(contentsOf: world.root.appendingPathComponent("child.log"), encoding: .utf8)) ?? ""
                XCTAssertEqual(p.terminationStatus, 0, String(log.suffix(3000)))
                break
            }
            XCTAssertEqual(p.terminationStatus, SIGKILL)
            kills += 1
            guard kills < 40 else { return XCTFail("the pipeline never finished") }
        }
        // initial version; batch1: 5 stages, version created, pointer switched, published, done;
        // batch2: 5 stages, published, done.
        let boundaries = (try? String(contentsOf: world.root.appendingPathComponent("boundaries.txt"), encoding: .utf8)) ?? ""
        XCTAssertEqual(kills, 1 + 9 + 7, boundaries)
        await running.shutdown()
        XCTAssertEqual(try Self.outcome(world), expected)
    }

    /// Three kills at random instants while batch1 goes through its stages; the last run finishes it.
    func testKilledAtRandomInstantsEndsAsAnUninterruptedRun() async throws {
        let (teacher, running) = try await PipelineTests.teacherServer()
        _ = teacher
        let url = running.baseURL + "/v1"
        let reference = try PipelineWorld(name: "reference-random", teacherURL: url)
        defer { reference.remove() }
        try reference.drop("batch1", prompts: PipelineWorld.prompts(0..<16) + [PipelineWorld.contaminated])
        try await ContinuousPipeline(configuration: try reference.configuration()).runPending()
        let expected = try Self.outcome(reference)

        let world = try PipelineWorld(name: "killed-random", teacherURL: url)
        defer { world.remove() }
        try world.drop("batch1", prompts: PipelineWorld.prompts(0..<16) + [PipelineWorld.contaminated])
        var instants: [Int] = [], stages: [String] = []
        let batch = try ContinuousPipeline(configuration: try world.configuration()).inboxBatches()[0].id
        for _ in 0..<3 {
            guard let wait = killAtRandomInstant(try child(world, mode: "random"), within: 50...900) else { break }
            instants.append(wait)
            stages.append(try ContinuousPipeline(configuration: try world.configuration()).state(batch)?.stage.rawValue ?? "none")
        }
        XCTAssertFalse(instants.isEmpty, "the first child finished before it was killed")
        let last = try child(world, mode: "random")
        last.waitUntilExit()
        XCTAssertEqual(last.terminationStatus, 0, "killed at \(instants) ms, after \(stages)")
        await running.shutdown()
        XCTAssertEqual(try Self.outcome(world), expected, "killed at \(instants) ms, after \(stages)")
        print("killed at \(instants) ms, after the stages \(stages)")
    }
}
