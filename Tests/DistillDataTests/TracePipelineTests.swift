import Foundation
import XCTest
@testable import DistillData
import DistillTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A deterministic teacher: completion i of a request depends only on the prompt, the request's
/// seed and i. By `(seed + i) % 4`: 0 and 1 a correct trace, 2 a wrong answer, 3 no think tags.
/// Prompts named in `failing` throw; with `failAfter`, every request after that many throws.
final class FakeTraceTeacher: TeacherClient, @unchecked Sendable {
    let modelName = "fake-teacher"
    let failing: Set<String>
    let failAfter: Int?
    let delay: UInt64
    private let lock = NSLock()
    private var calls = 0

    init(failing: Set<String> = [], failAfter: Int? = nil, delayNanoseconds: UInt64 = 0) {
        self.failing = failing
        self.failAfter = failAfter
        delay = delayNanoseconds
    }

    var requestCount: Int { lock.withLock { calls } }

    static func answer(_ text: String) -> Int {
        // The prompts below end in "a + b?".
        let nums = text.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        return nums.reduce(0, +)
    }

    func complete(_ prompt: TeacherPrompt, sampling: TeacherSampling) async throws -> TeacherResponse {
        let k = lock.withLock { () -> Int in calls += 1; return calls }
        guard case .chat(let messages) = prompt, let user = messages.last?.content else { throw TeacherClientError.local("chat only") }
        if delay > 0 { try await Task.sleep(nanoseconds: delay) }
        if let failAfter, k > failAfter { throw TeacherClientError.retriesExhausted(attempts: 3, last: .timeout(url: "fake", seconds: 1)) }
        if failing.contains(where: { user.hasPrefix($0 + ":") }) {
            throw TeacherClientError.retriesExhausted(attempts: 3, last: .transientStatus(url: "fake", status: 503, message: "busy"))
        }
        let seed = sampling.seed ?? 0
        let answer = Self.answer(user)
        let completions = (0..<sampling.n).map { i -> TeacherCompletion in
            let tag = (seed &+ UInt64(i)) % 1000
            let text: String
            switch (seed &+ UInt64(i)) % 4 {
            case 0, 1: text = "<think>\nadding, variant \(tag)\n</think>\n\n#### \(answer)"
            case 2: text = "<think>\nguessing, variant \(tag)\n</think>\n\n#### \(answer + 1)"
            default: text = "The answer is \(answer)."
            }
            return TeacherCompletion(index: i, text: text, finishReason: .stop)
        }
        return TeacherResponse(model: modelName, completions: completions,
                               usage: TeacherUsage(promptTokens: 10, completionTokens: 12 * sampling.n))
    }
}

/// Collects events from the pipeline's callback.
final class TracePipelineEventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [TracePipelineEvent] = []
    func add(_ e: TracePipelineEvent) { lock.withLock { stored.append(e) } }
    var events: [TracePipelineEvent] { lock.withLock { stored } }
}

final class TracesBlockingBox<T>: @unchecked Sendable { var result: Result<T, Error>? }

/// Blocks on async work (XCTest's synchronous tests, the child process).
@discardableResult
func tracesBlocking<T>(_ body: @escaping () async throws -> T) throws -> T {
    let box = TracesBlockingBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        do { box.result = .success(try await body()) } catch { box.result = .failure(error) }
        done.signal()
    }
    done.wait()
    return try box.result!.get()
}

enum TracePipelineFixture {
    /// Ten prompts "p-k: What is a + b?" with answers.
    static let prompts: [TracePrompt] = (0..<10).map { (k: Int) -> TracePrompt in
        let a = k + 3, b = 2 * k
        let answer: Int = k + a + b
        return TracePrompt(id: "p-\(k)", text: "p-\(k): What is \(a) + \(b)?", answer: String(answer), source: k < 5 ? "a" : "b")
    }

    static func configuration(dir: URL, teacher: any TeacherClient, n: Int = 4, concurrency: Int = 3, limit: Int? = nil,
                              keep: KeepPolicy = .allCorrect) -> TracePipelineConfiguration {
        TracePipelineConfiguration(
            prompts: .prompts(prompts), teacher: teacher, samplesPerPrompt: n,
            sampling: TraceSamplingSettings(temperature: 0.7, topP: 0.95, maxTokens: 64, seed: 7),
            keepPolicy: keep, storePath: dir.appendingPathComponent("traces.sqlite").path,
            outputPath: dir.appendingPathComponent("traces.jsonl").path, statsPath: dir.appendingPathComponent("stats.json").path,
            concurrency: concurrency, limit: limit)
    }

    static func files(_ dir: URL) throws -> (jsonl: Data, stats: Data) {
        (try Data(contentsOf: dir.appendingPathComponent("traces.jsonl")), try Data(contentsOf: dir.appendingPathComponent("stats.json")))
    }
}

final class TracePipelineTests: XCTestCase {
    func subdirectory(_ root: URL, _ name: String) throws -> URL {
        let d = root.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    /// Checks each candidate's verdict against the fake's seed rule, the statistics, the JSONL
    /// and the events.
    func testKeptAndRejectedFollowTheTeacherAndTheSampler() throws {
        let dir = try traceTestDirectory(self)
        // The fake sums every number of the prompt ("p-k: What is (k+3) + 2k?" → 4k + 3): the references agree.
        let prompts = TracePipelineFixture.prompts.map { p -> TracePrompt in
            var p = p
            p.answer = String(FakeTraceTeacher.answer(p.text))
            return p
        }
        var config = TracePipelineFixture.configuration(dir: dir, teacher: FakeTraceTeacher())
        config.prompts = .prompts(prompts)
        let log = TracePipelineEventLog()
        let summary = try tracesBlocking { try await TracePipeline(config).run(onEvent: { log.add($0) }) }

        let store = try GenerationStore(path: config.storePath, settings: TracePipeline(config).settings)
        var expectedKept = 0, wrong = 0, template = 0, noAnswer = 0
        var expectedRecords: [ChatRecord] = []
        for p in prompts {
            let stored = try store.candidates(promptID: p.id)
            XCTAssertEqual(stored.map(\.index), [0, 1, 2, 3])
            let base = TracePipeline.sampleSeed(seed: 7, promptID: p.id, index: 0)
            for c in stored {
                let kind = (base &+ UInt64(c.index)) % 4
                switch kind {
                case 0, 1:
                    XCTAssertEqual(c.verdict, .kept, "\(p.id) #\(c.index)")
                    expectedKept += 1
                    expectedRecords.append(ChatRecord(user: p.text, assistant: c.text))
                case 2:
                    XCTAssertEqual(c.verdict, .rejected)
                    XCTAssertTrue(c.reason!.contains("wrong_answer"), c.reason!)
                    wrong += 1
                default:
                    // No tags: a template violation; "The answer is N." still verifies.
                    XCTAssertEqual(c.verdict, .rejected)
                    XCTAssertTrue(c.reason!.contains("\"template\""), c.reason!)
                    template += 1
                    if c.reason!.contains("no_answer") { noAnswer += 1 }
                }
            }
        }
        XCTAssertGreaterThan(expectedKept, 0)
        XCTAssertGreaterThan(wrong + template, 0)
        // Statistics: 10 prompts × 4 candidates.
        let s = summary.statistics
        XCTAssertEqual(s.overall.prompts, 10)
        XCTAssertEqual(s.overall.candidates, 40)
        XCTAssertEqual(s.overall.kept, expectedKept)
        XCTAssertEqual(s.rejectedCandidates, 40 - expectedKept)
        XCTAssertEqual(s.rejectionReasons["wrong_answer"] ?? 0, wrong)
        XCTAssertEqual(s.rejectionReasons["template"] ?? 0, template)
        XCTAssertEqual(s.rejectionReasons["no_answer"] ?? 0, noAnswer)
        XCTAssertEqual(s.acceptanceRate, Double(expectedKept) / 40, accuracy: 1e-12)
        XCTAssertEqual(s.bySource["a"]!.prompts + s.bySource["b"]!.prompts, 10)
        XCTAssertEqual(s.keptLengthHistogram.total, expectedKept)
        XCTAssertEqual(try SamplingStatistics.read(path: config.statsPath), s)
        // The JSONL: kept candidates in prompt order, then by index.
        XCTAssertEqual(try ChatRecordFile.read(path: config.outputPath), expectedRecords)
        XCTAssertEqual(summary.records, expectedKept)
        XCTAssertEqual(summary.processed, 10)
        XCTAssertEqual(summary.completionTokens, 10 * 48)
        // Events: started, 10 prompt lines, exported, finished.
        let events = log.events
        guard case .started(total: 10, done: 0, toProcess: 10, newPrompts: 10)? = events.first else {
            return XCTFail("first event: \(String(describing: events.first))")
        }
        let done = events.compactMap { e -> TracePromptProgress? in if case .promptDone(let p) = e { return p }; return nil }
        XCTAssertEqual(done.count, 10)
        XCTAssertEqual(done.map(\.done), Array(1...10))
        XCTAssertEqual(done.last!.acceptanceRate, Double(expectedKept) / 40, accuracy: 1e-12)
        XCTAssertNotNil(done.last!.tokensPerSecond)
        if case .finished = events.last {} else { XCTFail("last event: \(String(describing: events.last))") }
    }

    /// A seed depends on (seed, prompt id, index) only.
    func testSampleSeeds() {
        let a = TracePipeline.sampleSeed(seed: 1, promptID: "x", index: 0)
        XCTAssertEqual(a, TracePipeline.sampleSeed(seed: 1, promptID: "x", index: 0))
        XCTAssertNotEqual(a, TracePipeline.sampleSeed(seed: 2, promptID: "x", index: 0))
        XCTAssertNotEqual(a, TracePipeline.sampleSeed(seed: 1, promptID: "y", index: 0))
        XCTAssertNotEqual(a, TracePipeline.sampleSeed(seed: 1, promptID: "x", index: 1))
        XCTAssertLessThan(a, 1 << 31)
    }

    /// Splitting a prompt's N samples over several requests keeps each sample's index and seed.
    func testRequestsPerPrompt() throws {
        let dir = try traceTestDirectory(self)
        var config = TracePipelineFixture.configuration(dir: dir, teacher: FakeTraceTeacher(), n: 5)
        config.samplesPerRequest = 2
        let requests = TracePipeline(config).requests(for: "p-1")
        XCTAssertEqual(requests.map(\.start), [0, 2, 4])
        XCTAssertEqual(requests.map(\.n), [2, 2, 1])
        XCTAssertEqual(requests.map(\.seed), [0, 2, 4].map { TracePipeline.sampleSeed(seed: 7, promptID: "p-1", index: $0) })
        try tracesBlocking { try await TracePipeline(config).run() }
        let store = try GenerationStore(path: config.storePath, settings: TracePipeline(config).settings)
        XCTAssertEqual(try store.candidates(promptID: "p-1").map(\.index), [0, 1, 2, 3, 4])
    }

    /// Stopped after 4 prompts (a run limit; then a teacher that fails after 2 requests), resumed:
    /// the JSONL and stats.json equal an uninterrupted run's byte for byte, with no duplicates.
    func testResumedRunEqualsUninterruptedRun() throws {
        let root = try traceTestDirectory(self)
        let whole = try subdirectory(root, "whole"), parts = try subdirectory(root, "parts"), failing = try subdirectory(root, "failing")
        try tracesBlocking { try await TracePipeline(TracePipelineFixture.configuration(dir: whole, teacher: FakeTraceTeacher())).run() }
        let expected = try TracePipelineFixture.files(whole)

        // A run limit of 4, then the rest with other concurrency.
        let first = try tracesBlocking {
            try await TracePipeline(TracePipelineFixture.configuration(dir: parts, teacher: FakeTraceTeacher(), limit: 4)).run()
        }
        XCTAssertEqual(first.processed, 4)
        XCTAssertEqual(first.counts.pending, 6)
        let log = TracePipelineEventLog()
        let second = try tracesBlocking {
            try await TracePipeline(TracePipelineFixture.configuration(dir: parts, teacher: FakeTraceTeacher(), concurrency: 8)).run(onEvent: { log.add($0) })
        }
        XCTAssertEqual(second.processed, 6)
        guard case .started(total: 10, done: 4, toProcess: 6, newPrompts: 0)? = log.events.first else {
            return XCTFail("\(String(describing: log.events.first))")
        }
        let got = try TracePipelineFixture.files(parts)
        XCTAssertEqual(got.jsonl, expected.jsonl)
        XCTAssertEqual(got.stats, expected.stats)

        // A teacher that breaks after 2 requests: those prompts are done, the rest fail and stay pending.
        let text = traceErrorText {
            _ = try tracesBlocking {
                try await TracePipeline(TracePipelineFixture.configuration(dir: failing, teacher: FakeTraceTeacher(failAfter: 2), concurrency: 1)).run()
            }
        }
        XCTAssertTrue(text.contains("8 prompts failed"), text)
        XCTAssertTrue(text.contains("run the same command again"), text)
        let resumed = try tracesBlocking {
            try await TracePipeline(TracePipelineFixture.configuration(dir: failing, teacher: FakeTraceTeacher())).run()
        }
        XCTAssertEqual(resumed.processed, 8)
        let again = try TracePipelineFixture.files(failing)
        XCTAssertEqual(again.jsonl, expected.jsonl)
        XCTAssertEqual(again.stats, expected.stats)
        // Nothing twice.
        let records = try ChatRecordFile.read(path: failing.appendingPathComponent("traces.jsonl").path)
        XCTAssertEqual(Set(records.map(\.jsonLine)).count, records.count)
        // A run with nothing pending asks the teacher nothing and rewrites the same files.
        let idle = FakeTraceTeacher()
        try tracesBlocking { try await TracePipeline(TracePipelineFixture.configuration(dir: failing, teacher: idle)).run() }
        XCTAssertEqual(idle.requestCount, 0)
        XCTAssertEqual(try TracePipelineFixture.files(failing).jsonl, expected.jsonl)
    }

    /// A prompt whose requests fail stays pending, is reported by an event and fails the run.
    func testFailingPromptStaysPendingAndIsReported() throws {
        let dir = try traceTestDirectory(self)
        let log = TracePipelineEventLog()
        let config = TracePipelineFixture.configuration(dir: dir, teacher: FakeTraceTeacher(failing: ["p-3"]))
        let text = traceErrorText { _ = try tracesBlocking { try await TracePipeline(config).run(onEvent: { log.add($0) }) } }
        XCTAssertTrue(text.contains("1 prompt failed"), text)
        XCTAssertTrue(text.contains("p-3"), text)
        XCTAssertTrue(text.contains("HTTP 503"), text)
        let failures = log.events.compactMap { e -> (TracePromptFailure, Int)? in
            if case let .promptFailed(f, n) = e { return (f, n) }
            return nil
        }
        XCTAssertEqual(failures.map(\.0.promptID), ["p-3"])
        XCTAssertEqual(failures.map(\.1), [1])
        let store = try GenerationStore(path: config.storePath, settings: TracePipeline(config).settings)
        XCTAssertEqual(try store.pendingPrompts().map(\.id), ["p-3"])
        guard case .finished(let summary)? = log.events.last else { return XCTFail("no summary") }
        XCTAssertEqual(summary.counts.pending, 1)
        XCTAssertEqual(summary.statistics.overall.prompts, 9)
    }

    /// Rerunning a store with another N (or temperature) is refused, naming the field.
    func testSettingsMismatchOnRerun() throws {
        let dir = try traceTestDirectory(self)
        try tracesBlocking { try await TracePipeline(TracePipelineFixture.configuration(dir: dir, teacher: FakeTraceTeacher(), limit: 2)).run() }
        let text = traceErrorText {
            _ = try tracesBlocking { try await TracePipeline(TracePipelineFixture.configuration(dir: dir, teacher: FakeTraceTeacher(), n: 8)).run() }
        }
        XCTAssertTrue(text.contains("samples_per_prompt: the store has \"4\", asked for \"8\""), text)
        var other = TracePipelineFixture.configuration(dir: dir, teacher: FakeTraceTeacher(), keep: .shortestCorrect)
        other.sampling.temperature = 1
        let text2 = traceErrorText { _ = try tracesBlocking { try await TracePipeline(other).run() } }
        XCTAssertTrue(text2.contains("temperature"), text2)
        XCTAssertTrue(text2.contains("extra.keep: the store has \"all\", asked for \"shortest\""), text2)
    }

    func testBuiltInTaskAndBadConfiguration() throws {
        let prompts = try TracePipeline.loadPrompts(.task(name: "word-problems", count: 3, seed: 5))
        XCTAssertEqual(prompts.map(\.id), ["wp-0", "wp-1", "wp-2"])
        XCTAssertEqual(prompts.map(\.answer), WordProblems.generate(count: 3, seed: 5).map { String($0.answer) })
        XCTAssertEqual(Set(prompts.compactMap(\.source)), ["word-problems"])
        XCTAssertTrue(traceErrorText { _ = try TracePipeline.loadPrompts(.task(name: "gsm9k", count: 3, seed: 5)) }.contains("unknown task"))
        let dir = try traceTestDirectory(self)
        let bad = TracePipelineFixture.configuration(dir: dir, teacher: FakeTraceTeacher(), concurrency: 0)
        XCTAssertTrue(traceErrorText { _ = try tracesBlocking { try await TracePipeline(bad).run() } }.contains("concurrency"))
    }
}

/// `kill -9` in the middle of a run: the test binary runs itself as a child
/// (`TracePipelineKillChildTests`), which runs the pipeline with a slow teacher and SIGKILLs
/// itself after 4 prompts are recorded (others are in flight). The parent resumes with a fresh
/// teacher; the files equal an uninterrupted run's.
final class TracePipelineKillTests: XCTestCase {
    func testSIGKILLMidRunThenResumeEqualsUninterruptedRun() throws {
        let executable = try childTestExecutable()
        let root = try traceTestDirectory(self)
        let whole = root.appendingPathComponent("whole"), killed = root.appendingPathComponent("killed")
        for d in [whole, killed] { try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true) }
        try tracesBlocking { try await TracePipeline(TracePipelineFixture.configuration(dir: whole, teacher: FakeTraceTeacher())).run() }
        let expected = try TracePipelineFixture.files(whole)

        try runChildTestExpectingSIGKILL(executable, test: "DistillDataTests.TracePipelineKillChildTests/testChild",
                                         environment: [TracePipelineKillChildTests.variable: killed.path])

        // The child left 4 prompts done, the rest pending, and no output yet.
        let config = TracePipelineFixture.configuration(dir: killed, teacher: FakeTraceTeacher())
        do {
            let store = try GenerationStore(path: config.storePath, settings: TracePipeline(config).settings)
            let counts = try store.counts()
            XCTAssertEqual(counts.done, 4)
            XCTAssertEqual(counts.pending, 6)
            XCTAssertEqual(counts.candidates, 16)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: config.outputPath))

        let summary = try tracesBlocking { try await TracePipeline(config).run() }
        XCTAssertEqual(summary.processed, 6)
        let got = try TracePipelineFixture.files(killed)
        XCTAssertEqual(got.jsonl, expected.jsonl)
        XCTAssertEqual(got.stats, expected.stats)
        XCTAssertEqual(summary.counts.candidates, 40)
    }
}

/// `kill -9` at random instants: the parent kills a child running the pipeline (a slow teacher,
/// 3 prompts in flight) three times, 60–600 ms after each start — while requests are in flight,
/// while a prompt's transaction is written, or while the output is exported — then finishes the
/// run itself; the files equal an uninterrupted run's.
final class TracePipelineRandomKillTests: XCTestCase {
    func testKilledAtRandomInstantsEqualsUninterruptedRun() throws {
        let executable = try childTestExecutable()
        let root = try traceTestDirectory(self)
        let whole = root.appendingPathComponent("whole"), killed = root.appendingPathComponent("killed")
        for d in [whole, killed] { try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true) }
        try tracesBlocking { try await TracePipeline(TracePipelineFixture.configuration(dir: whole, teacher: FakeTraceTeacher())).run() }
        let expected = try TracePipelineFixture.files(whole)
        var instants: [Int] = [], done: [Int] = []
        let config = TracePipelineFixture.configuration(dir: killed, teacher: FakeTraceTeacher())
        for _ in 0..<3 {
            let child = Process()
            child.executableURL = executable
            child.arguments = ["DistillDataTests.TracePipelineKillChildTests/testSlowChild"]
            var env = ProcessInfo.processInfo.environment
            env[TracePipelineKillChildTests.variable] = killed.path
            child.environment = env
            child.standardOutput = FileHandle.nullDevice
            child.standardError = FileHandle.nullDevice
            try child.run()
            guard let wait = killAtRandomInstant(child, within: 60...600) else { break }
            instants.append(wait)
            if FileManager.default.fileExists(atPath: config.storePath) {
                done.append((try? GenerationStore(path: config.storePath, settings: TracePipeline(config).settings).counts().done) ?? -1)
            }
        }
        XCTAssertFalse(instants.isEmpty, "the first child finished before it could be killed")
        _ = try tracesBlocking { try await TracePipeline(config).run() }
        let got = try TracePipelineFixture.files(killed)
        XCTAssertEqual(got.jsonl, expected.jsonl, "killed at \(instants) ms with \(done) prompts done")
        XCTAssertEqual(got.stats, expected.stats, "killed at \(instants) ms with \(done) prompts done")
        print("traces killed at \(instants) ms with \(done) prompts done")
    }
}

/// Does its work only when run as the child of `TracePipelineKillTests`.
final class TracePipelineKillChildTests: XCTestCase {
    static let variable = "DISTILL_TRACES_KILL_CHILD_DIR"

    /// The pipeline with a slow teacher (200 ms a request, about 0.8 s in all), run to its end unless killed.
    func testSlowChild() throws {
        guard let path = ProcessInfo.processInfo.environment[Self.variable] else { return }
        let config = TracePipelineFixture.configuration(dir: URL(fileURLWithPath: path), teacher: FakeTraceTeacher(delayNanoseconds: 200_000_000),
                                                        concurrency: 3)
        _ = try tracesBlocking { try await TracePipeline(config).run() }
    }

    func testChild() throws {
        guard let path = ProcessInfo.processInfo.environment[Self.variable] else { return }
        let dir = URL(fileURLWithPath: path)
        let config = TracePipelineFixture.configuration(dir: dir, teacher: FakeTraceTeacher(delayNanoseconds: 20_000_000), concurrency: 3)
        try tracesBlocking {
            try await TracePipeline(config).run { event in
                if case .promptDone(let p) = event, p.done == 4 { kill(getpid(), SIGKILL) }
            }
        }
        XCTFail("the child should have been killed")
    }
}
