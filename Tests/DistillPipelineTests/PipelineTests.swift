import DistillData
import DistillModels
import DistillServer
import DistillTensor
import Foundation
import HummingbirdTesting
import NIOCore
import XCTest
@testable import DistillPipeline

/// The whole pipeline on tiny models: a real teacher server (`distill serve`'s, over HTTP),
/// traces, decontamination, SFT from the current version, the perplexity gate, promotion, and a
/// student server following the versions directory while 32 clients stream.
final class PipelineTests: XCTestCase {
    /// A teacher server on a free port; `swap` replaces its model (teacher A → B).
    static func teacherServer() async throws -> (OpenAIServer, RunningOpenAIServer) {
        let server = try OpenAIServer(model: try PipelineWorld.teacherA(), modelName: "teacher", maxBatch: 4, batchWindow: 0.001)
        return (server, try await server.start())
    }

    /// Runs the pending batches, swapping the teacher to B once batch1 is decided.
    static func runBothBatches(_ pipeline: ContinuousPipeline, teacher: OpenAIServer,
                               events: @escaping (PipelineEvent) -> Void = { _ in }) async throws -> [BatchState] {
        let b = try PipelineWorld.teacherB()
        return try await pipeline.runPending { e in
            if case .decided(let id, _, _) = e, id.hasPrefix("batch1") { try! teacher.swap(to: b) }
            events(e)
        }
    }

    func testOnePromotedOneRefusedWhile32ClientsStream() async throws {
        let (teacher, running) = try await Self.teacherServer()
        let world = try PipelineWorld(name: "serve", teacherURL: running.baseURL + "/v1")
        defer { world.remove() }
        let pipeline = ContinuousPipeline(configuration: try world.configuration())
        // No batch yet: the initial student becomes v0001.
        let none = try await pipeline.runPending()
        XCTAssertEqual(none, [])
        XCTAssertEqual(pipeline.versions.current(), "v0001")

        // The student server follows the versions directory.
        let watcher = ModelDirectoryWatcher(directory: world.versionsDirectory)
        let student = try OpenAIServer(model: try watcher.loadCurrent(), modelName: "student", maxBatch: 32, batchWindow: 0.01)
        let served = try await student.start()
        let watching = Task { await watcher.watch(student, interval: 0.05) { _ in } }

        // 32 streaming clients, each sending requests one after another until told to stop.
        let stop = LockedBox(false)
        let clients = Task { () -> [ClientTally] in
            try await withThrowingTaskGroup(of: ClientTally.self) { group in
                for c in 0..<32 {
                    group.addTask { try await Self.streamUntilStopped(port: served.port, client: c, stop: stop) { student.swapCount > 0 } }
                }
                var all: [ClientTally] = []
                for try await t in group { all.append(t) }
                return all
            }
        }

        try world.dropBothBatches()
        var log: [String] = []
        let states = try await Self.runBothBatches(pipeline, teacher: teacher) { log.append("\($0)") }
        // Requests keep coming until the server swapped and served a while on the new version.
        let deadline = Date().addingTimeInterval(20)
        while student.swapCount == 0 && Date() < deadline { try await Task.sleep(nanoseconds: 20_000_000) }
        try await Task.sleep(nanoseconds: 500_000_000)
        stop.value = true
        let tallies = try await clients.value
        watching.cancel()
        await served.shutdown()
        await running.shutdown()

        XCTAssertEqual(states.map(\.stage), [.done, .done], log.joined(separator: "\n"))
        let first = states[0], second = states[1]
        XCTAssertEqual(first.removed, 1, "the contaminated prompt's trace is dropped")
        XCTAssertEqual(first.examples, 16)
        XCTAssertEqual(first.gate?.promote, true, "\(first.gate?.reasons ?? [])")
        XCTAssertEqual(first.version, "v0002")
        XCTAssertEqual(second.gate?.promote, false, "\(second.gate?.reasons ?? [])")
        XCTAssertNil(second.version)
        XCTAssertTrue(second.gate?.reasons.contains { $0.contains("perplexity on heldout.txt") } ?? false, "\(second.gate?.reasons ?? [])")
        XCTAssertEqual(pipeline.versions.current(), "v0002")
        XCTAssertEqual(pipeline.versions.versions(), ["v0001", "v0002"])
        let history = try pipeline.versions.history()
        XCTAssertEqual(history.map(\.decision), [.initial, .promoted, .refused])
        XCTAssertEqual(history.map(\.version), ["v0001", "v0002", nil])
        XCTAssertEqual(history[2].current, "v0002", "batch2 was judged against the promoted version")
        print("gate batch1:", first.gate!.reasons, "batch2:", second.gate!.reasons)

        XCTAssertEqual(student.swapCount, 1)
        XCTAssertEqual(student.model.path, world.versionsDirectory.appendingPathComponent("v0002").standardizedFileURL.path)
        let total = tallies.reduce(0) { $0 + $1.completed }
        XCTAssertEqual(tallies.reduce(0) { $0 + $1.failures.count }, 0, "\(tallies.flatMap(\.failures).prefix(3))")
        XCTAssertEqual(tallies.count, 32)
        XCTAssertTrue(tallies.allSatisfy { $0.completed >= 1 })
        XCTAssertGreaterThan(tallies.reduce(0) { $0 + $1.afterSwap }, 0, "requests answered by the new version")
        print("streamed \(total) requests, \(tallies.reduce(0) { $0 + $1.afterSwap }) on v0002")
    }

    /// A prompt file that does not parse is recorded as failed (file and line in the history) and
    /// the next batch still runs; an edited file is a new batch; a second pipeline on the same
    /// work directory is refused while the first holds it.
    func testInvalidBatchFailsAndTheNextRuns() async throws {
        let (_, running) = try await Self.teacherServer()
        let world = try PipelineWorld(name: "invalid", teacherURL: running.baseURL + "/v1", steps: 4)
        defer { world.remove() }
        try "{\"prompt\": \"fine\"}\n{\"prompt\": 3, \"id\": [}\n".write(to: world.inbox.appendingPathComponent("a-broken.jsonl"), atomically: true, encoding: .utf8)
        try world.drop("b-good", prompts: PipelineWorld.prompts(0..<4))
        let pipeline = ContinuousPipeline(configuration: try world.configuration())
        let states = try await pipeline.runPending()
        XCTAssertEqual(states.map(\.stage), [.failed, .done])
        XCTAssertTrue(states[0].failure?.contains("a-broken.jsonl:2:") ?? false, states[0].failure ?? "")
        let history = try pipeline.versions.history()
        XCTAssertEqual(history.map(\.decision).first, .initial)
        XCTAssertEqual(history[1].decision, .failed)
        XCTAssertTrue(history[1].reasons[0].contains("a-broken.jsonl:2:"), history[1].reasons[0])
        XCTAssertEqual(try pipeline.pendingBatches(), [])
        // Fixed in place: a new batch (another hash).
        try "{\"prompt\": \"fine now\"}\n".write(to: world.inbox.appendingPathComponent("a-broken.jsonl"), atomically: true, encoding: .utf8)
        XCTAssertEqual(try pipeline.pendingBatches().map(\.file.lastPathComponent), ["a-broken.jsonl"])
        // The lock.
        let holder = try WorkLock(directory: world.work)
        do {
            _ = try await pipeline.runPending()
            XCTFail("a second pipeline ran on a locked work directory")
        } catch {
            XCTAssertTrue("\(error)".contains("another distill pipeline (process \(getpid()))"), "\(error)")
        }
        holder.release()
        await running.shutdown()
    }

    struct ClientTally: Sendable {
        var completed = 0
        var afterSwap = 0
        var failures: [String] = []
    }

    /// Streams chat completions until `stop`; every reply must be 200, end with [DONE] and hold no error.
    static func streamUntilStopped(port: Int, client c: Int, stop: LockedBox<Bool>,
                                   swapped: @escaping @Sendable () -> Bool) async throws -> ClientTally {
        let client = TestClient(host: "127.0.0.1", port: port)
        client.connect()
        var tally = ClientTally()
        var i = 0
        while !stop.value || tally.completed == 0 {
            let body = #"{"messages": [{"role": "user", "content": "client \#(c) request \#(i)"}], "max_tokens": 16, "temperature": 0, "stream": true}"#
            i += 1
            let afterSwap = swapped()
            do {
                let r = try await client.execute(.init("/v1/chat/completions", method: .post, headers: [.contentType: "application/json"],
                                                       body: ByteBuffer(string: body)))
                let text = String(buffer: r.body ?? ByteBuffer())
                if r.status != .ok || !text.hasSuffix("data: [DONE]\n\n") || text.contains(#""error""#) {
                    tally.failures.append("client \(c): \(r.status) \(text.suffix(200))")
                } else {
                    tally.completed += 1
                    if afterSwap { tally.afterSwap += 1 }
                }
            } catch {
                tally.failures.append("client \(c): \(error)")
            }
        }
        try await client.shutdown()
        return tally
    }
}
