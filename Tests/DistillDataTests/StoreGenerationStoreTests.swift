import Foundation
import DistillTensor
import DistillTestSupport
import XCTest
@testable import DistillData
#if canImport(Glibc)
import Glibc
#endif

final class StoreGenerationStoreTests: XCTestCase {
    var tmp: URL!
    var path: String { tmp.appendingPathComponent("gen.sqlite").path }

    let settings = GenerationSettings(teacherModel: "Qwen/Qwen2.5-7B-Instruct", template: "think-answer", samplesPerPrompt: 4,
                                      temperature: 0.7, seed: 42)

    static let prompts = [
        TracePrompt(id: "gsm-1", text: "What is 2 + 3?", answer: "5", source: "gsm8k"),
        TracePrompt(id: "gsm-2", text: "Halve 10.", answer: "5", source: "gsm8k"),
        TracePrompt(id: "m-1", text: "Say \"hi\"\nthen stop.", answer: nil, source: nil),
    ]

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func candidates(_ verdicts: [CandidateVerdict], prefix: String = "answer") -> [StoredCandidate] {
        verdicts.enumerated().map { i, v in
            StoredCandidate(index: i, text: "\(prefix) \(i)", finishReason: "stop", promptTokens: 12, completionTokens: 30 + i,
                            verdict: v, reason: v == .rejected ? "wrong answer" : nil)
        }
    }

    func testCreateRecordReopenAndResume() throws {
        do {
            let store = try GenerationStore(path: path, settings: settings)
            XCTAssertEqual(try store.journalMode(), "wal")
            XCTAssertEqual(try store.insertPrompts(Self.prompts), 3)
            XCTAssertEqual(try store.pendingPrompts(), Self.prompts)
            XCTAssertEqual(try store.pendingPrompts(limit: 1).map(\.id), ["gsm-1"])
            try store.recordResults(promptID: "gsm-1", candidates: candidates([.kept, .rejected, .kept, .rejected]))
            XCTAssertTrue(try store.isDone("gsm-1"))
            XCTAssertFalse(try store.isDone("gsm-2"))
        }
        // A new process: the finished prompt stays finished, the rest is still to do.
        let store = try GenerationStore(path: path, settings: settings)
        XCTAssertEqual(store.settings, settings)
        XCTAssertEqual(try store.pendingPrompts().map(\.id), ["gsm-2", "m-1"])
        XCTAssertEqual(try store.prompts(), Self.prompts)
        let stored = try store.candidates(promptID: "gsm-1")
        XCTAssertEqual(stored, candidates([.kept, .rejected, .kept, .rejected]))
        XCTAssertEqual(try store.counts(), GenerationStoreCounts(prompts: 3, pending: 2, done: 1, candidates: 4, kept: 2, rejected: 2,
                                                                 promptsWithKept: 1))
        try store.recordResults(promptID: "m-1", candidates: candidates([.rejected]))
        XCTAssertEqual(try store.pendingPrompts().map(\.id), ["gsm-2"])
        let c = try store.counts()
        XCTAssertEqual([c.done, c.pending, c.candidates, c.kept, c.promptsWithKept], [2, 1, 5, 2, 1])
    }

    func testPromptInsertIsIdempotent() throws {
        let store = try GenerationStore(path: path, settings: settings)
        XCTAssertEqual(try store.insertPrompts(Self.prompts), 3)
        try store.recordResults(promptID: "gsm-2", candidates: candidates([.kept]))
        // Inserting again (a resumed run reads its prompt file again) changes nothing.
        XCTAssertEqual(try store.insertPrompts(Self.prompts), 0)
        XCTAssertEqual(try store.insertPrompts(Array(Self.prompts.reversed()) + [TracePrompt(id: "new", text: "n")]), 1)
        XCTAssertEqual(try store.prompts().map(\.id), ["gsm-1", "gsm-2", "m-1", "new"])
        XCTAssertTrue(try store.isDone("gsm-2"))
        XCTAssertEqual(try store.pendingPrompts().map(\.id), ["gsm-1", "m-1", "new"])
        // Same id, other content: an error naming the field, and nothing of the batch is added.
        var changed = Self.prompts[0]
        changed.answer = "6"
        XCTAssertThrowsError(try store.insertPrompts([TracePrompt(id: "other", text: "o"), changed])) {
            XCTAssertEqual($0 as? GenerationStoreError, .promptConflict(path: path, id: "gsm-1", field: "reference answer"))
        }
        XCTAssertEqual(try store.counts().prompts, 4)
    }

    func testSettingsMismatchNamesTheField() throws {
        _ = try GenerationStore(path: path, settings: settings)
        var other = settings
        other.temperature = 1.0
        XCTAssertThrowsError(try GenerationStore(path: path, settings: other)) { error in
            XCTAssertEqual(error as? GenerationStoreError,
                           .settingsMismatch(path: path, differences: [SettingDifference(field: "temperature", stored: "0.7", requested: "1.0")]))
            XCTAssertTrue("\(error)".contains("temperature: the store has \"0.7\", asked for \"1.0\""), "\(error)")
        }
        other = settings
        other.teacherModel = "deepseek-reasoner"
        other.samplesPerPrompt = 8
        other.extra = ["max_tokens": "2048"]
        XCTAssertThrowsError(try GenerationStore(path: path, settings: other)) { error in
            guard case let .settingsMismatch(_, d)? = error as? GenerationStoreError else { return XCTFail("\(error)") }
            XCTAssertEqual(d.map(\.field), ["teacher_model", "samples_per_prompt", "extra.max_tokens"])
            XCTAssertEqual(d[2], SettingDifference(field: "extra.max_tokens", stored: nil, requested: "2048"))
        }
        // Told to ignore it: opens, and keeps the stored settings.
        let store = try GenerationStore(path: path, settings: other, ignoreSettingsMismatch: true)
        XCTAssertEqual(store.settings, settings)
        // Equal settings, written differently: no mismatch.
        var same = settings
        same.temperature = 0.70
        _ = try GenerationStore(path: path, settings: same)
    }

    func testRecordingIsAllOrNothing() throws {
        let store = try GenerationStore(path: path, settings: settings)
        try store.insertPrompts(Self.prompts)
        struct Interrupted: Error {}
        // Fail inside the transaction after two of four candidates are written.
        XCTAssertThrowsError(try store.record(promptID: "gsm-1", candidates: candidates([.kept, .kept, .rejected, .kept]),
                                              afterEachCandidate: { if $0 == 1 { throw Interrupted() } }))
        XCTAssertEqual(try store.candidates(promptID: "gsm-1"), [])
        XCTAssertFalse(try store.isDone("gsm-1"))
        XCTAssertEqual(try store.counts().candidates, 0)
        // The retry records everything.
        try store.recordResults(promptID: "gsm-1", candidates: candidates([.kept, .kept, .rejected, .kept]))
        XCTAssertEqual(try store.candidates(promptID: "gsm-1").count, 4)
    }

    /// A full disk while recording (simulated by a file-size limit, which fails writes past it as a
    /// full disk does): a clear error naming the store, the prompt left pending with nothing of it
    /// written, the store still readable, and the same prompt recorded once space is back.
    func testFullDiskLeavesThePromptPendingAndTheStoreUsable() throws {
        do {
            let store = try GenerationStore(path: path, settings: settings)
            try store.insertPrompts(Self.prompts)
            try store.recordResults(promptID: "gsm-1", candidates: candidates([.kept]))
        }
        let store = try GenerationStore(path: path, settings: settings)
        let big = candidates([.kept, .rejected], prefix: String(repeating: "long reasoning ", count: 40_000))
        let used = (try FileManager.default.contentsOfDirectory(atPath: tmp.path)).reduce(0) { total, name in
            total + ((try? FileManager.default.attributesOfItem(atPath: tmp.appendingPathComponent(name).path)[.size] as? Int) ?? 0)
        }
        var failure: Error?
        withFileSizeLimit(used + (64 << 10)) {
            do { try store.recordResults(promptID: "gsm-2", candidates: big) } catch { failure = error }
        }
        guard case let .database(p, message)? = failure as? GenerationStoreError else {
            return XCTFail("expected a database error, got \(String(describing: failure))")
        }
        XCTAssertEqual(p, path)
        XCTAssertTrue(message.contains("SQLite error"), message)
        XCTAssertFalse(try store.isDone("gsm-2"))
        XCTAssertEqual(try store.candidates(promptID: "gsm-2"), [])
        XCTAssertEqual(try store.counts().done, 1)
        // With space back, the same store (and a reopened one) records the prompt.
        try store.recordResults(promptID: "gsm-2", candidates: big)
        let reopened = try GenerationStore(path: path, settings: settings)
        XCTAssertEqual(try reopened.candidates(promptID: "gsm-2").count, 2)
        XCTAssertEqual(try reopened.counts().done, 2)
    }

    /// The same on a real full file system (a 256 KiB tmpfs, where this process may mount one): the
    /// write fails naming the store, the prompt stays pending, what was recorded reads back, and
    /// once the file system has room again the prompt is recorded.
    func testFullFilesystemLeavesThePromptPendingAndTheStoreUsable() throws {
        let fs: SmallFilesystem
        do { fs = try SmallFilesystem(bytes: 256 << 10) } catch let e as SmallFilesystem.Unavailable { throw XCTSkip(e.description) }
        defer { fs.unmount() }
        let path = fs.url.appendingPathComponent("traces.sqlite").path
        let store = try GenerationStore(path: path, settings: settings)
        try store.insertPrompts(Self.prompts)
        try store.recordResults(promptID: "gsm-1", candidates: candidates([.kept]))
        let big = candidates([.kept, .rejected], prefix: String(repeating: "long reasoning ", count: 40_000))
        XCTAssertThrowsError(try store.recordResults(promptID: "gsm-2", candidates: big)) { e in
            guard case let .database(p, message)? = e as? GenerationStoreError else { return XCTFail("\(e)") }
            XCTAssertEqual(p, path)
            XCTAssertTrue(message.contains("full"), message)
        }
        XCTAssertFalse(try store.isDone("gsm-2"))
        XCTAssertEqual(try store.candidates(promptID: "gsm-2"), [])
        XCTAssertEqual(try store.candidates(promptID: "gsm-1").count, 1)
        try fs.resize(bytes: 8 << 20)
        try store.recordResults(promptID: "gsm-2", candidates: big)
        let reopened = try GenerationStore(path: path, settings: settings)
        XCTAssertEqual(try reopened.candidates(promptID: "gsm-2").count, 2)
        XCTAssertEqual(try reopened.counts().done, 2)
    }

    func testRecordingErrors() throws {
        let store = try GenerationStore(path: path, settings: settings)
        try store.insertPrompts(Self.prompts)
        XCTAssertThrowsError(try store.recordResults(promptID: "nope", candidates: [])) {
            XCTAssertEqual($0 as? GenerationStoreError, .unknownPrompt(path: path, id: "nope"))
        }
        var dup = candidates([.kept, .kept])
        dup[1].index = 0
        XCTAssertThrowsError(try store.recordResults(promptID: "gsm-1", candidates: dup)) {
            XCTAssertEqual($0 as? GenerationStoreError, .invalidCandidates(path: path, id: "gsm-1", reason: "index 0 appears twice"))
        }
        // No candidates at all (every request failed permanently) still marks the prompt done.
        try store.recordResults(promptID: "gsm-1", candidates: [])
        XCTAssertThrowsError(try store.recordResults(promptID: "gsm-1", candidates: candidates([.kept]))) {
            XCTAssertEqual($0 as? GenerationStoreError, .alreadyDone(path: path, id: "gsm-1"))
        }
        XCTAssertEqual(try store.counts().done, 1)
    }

    func testLogprobsBlob() throws {
        let store = try GenerationStore(path: path, settings: settings)
        try store.insertPrompts(Self.prompts)
        let completion = TeacherCompletion(index: 0, text: "5", finishReason: .stop, logprobs: [
            TokenLogprob(token: "5", logprob: -0.01, top: [TopLogprob(token: "5", logprob: -0.01), TopLogprob(token: "6", logprob: -5)]),
            TokenLogprob(token: "!", logprob: -.infinity),
        ])
        let c = try StoredCandidate(completion, promptTokens: 9, verdict: .kept, keepLogprobs: true)
        XCTAssertEqual(c.completionTokens, 2)
        XCTAssertEqual(c.finishReason, "stop")
        try store.recordResults(promptID: "gsm-1", candidates: [c])
        let back = try XCTUnwrap(store.candidates(promptID: "gsm-1").first)
        XCTAssertEqual(back, c)
        XCTAssertEqual(try back.decodedLogprobs(), completion.logprobs)
        XCTAssertNil(try StoredCandidate(completion, verdict: .kept).logprobs)
    }

    func testExportKeptRecords() throws {
        let store = try GenerationStore(path: path, settings: settings)
        try store.insertPrompts(Self.prompts)
        try store.recordResults(promptID: "m-1", candidates: candidates([.kept, .rejected, .kept], prefix: "hi"))
        try store.recordResults(promptID: "gsm-1", candidates: candidates([.rejected, .kept]))
        // gsm-2 stays pending: nothing of it is exported.
        let out = tmp.appendingPathComponent("out/traces.jsonl").path
        XCTAssertEqual(try store.exportKept(to: out), 3)
        let text = try String(contentsOfFile: out, encoding: .utf8)
        XCTAssertEqual(text, """
            {"messages":[{"role":"user","content":"What is 2 + 3?"},{"role":"assistant","content":"answer 1"}]}
            {"messages":[{"role":"user","content":"Say \\"hi\\"\\nthen stop."},{"role":"assistant","content":"hi 0"}]}
            {"messages":[{"role":"user","content":"Say \\"hi\\"\\nthen stop."},{"role":"assistant","content":"hi 2"}]}

            """)
        // Every line reads back as JSON in chat-messages form.
        for line in text.split(separator: "\n") {
            let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let messages = try XCTUnwrap(obj["messages"] as? [[String: String]])
            XCTAssertEqual(messages.map { $0["role"]! }, ["user", "assistant"])
        }
        XCTAssertEqual(try ChatRecordFile.read(path: out).count, 3)
        // Options: a system message, ids, one per prompt. The file is replaced, and no temporary
        // file is left beside it.
        XCTAssertEqual(try store.exportKept(to: out, systemPrompt: "Think first.", maxPerPrompt: 1, includeIDs: true), 2)
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        XCTAssertEqual(String(lines[0]), #"{"messages":[{"role":"system","content":"Think first."},{"role":"user","content":"What is 2 + 3?"},{"role":"assistant","content":"answer 1"}],"id":"gsm-1","source":"gsm8k"}"#)
        XCTAssertEqual(String(lines[1]), #"{"messages":[{"role":"system","content":"Think first."},{"role":"user","content":"Say \"hi\"\nthen stop."},{"role":"assistant","content":"hi 0"}],"id":"m-1"}"#)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp.appendingPathComponent("out").path), ["traces.jsonl"])
    }

    func testNewerSchemaIsRefused() throws {
        let store = try GenerationStore(path: path, settings: settings)
        try store.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v9-from-the-future')")
        XCTAssertThrowsError(try GenerationStore(path: path, settings: settings)) {
            XCTAssertEqual($0 as? GenerationStoreError, .newerSchema(path: path, unknownMigrations: ["v9-from-the-future"]))
        }
    }

    /// A store written by the GRDB-based versions (`distill traces --task word-problems --count 2
    /// --n 2` with SmolLM2 as local teacher, max 8 tokens) opens as it is: settings, prompts,
    /// candidates and migrations read back, and new prompts go in.
    func testStoreWrittenByEarlierVersionsOpens() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/store/grdb-store.sqlite")
        try FileManager.default.copyItem(at: fixture, to: URL(fileURLWithPath: path))
        let store = try GenerationStore(path: path, settings: settings, ignoreSettingsMismatch: true)
        XCTAssertEqual(store.settings.samplesPerPrompt, 2)
        XCTAssertEqual(store.settings.template, "<think>…</think>")
        let c = try store.counts()
        XCTAssertEqual([c.prompts, c.done, c.pending, c.candidates], [2, 2, 0, 4])
        let first = try XCTUnwrap(try store.prompts().first)
        XCTAssertEqual(try store.candidates(promptID: first.id).map(\.index), [0, 1])
        XCTAssertEqual(try store.journalMode(), "wal")
        XCTAssertEqual(try store.insertPrompts(Self.prompts), 3)
        XCTAssertEqual(try store.pendingPrompts().map(\.id), Self.prompts.map(\.id))
        XCTAssertThrowsError(try GenerationStore(path: path, settings: settings)) { e in
            guard case .settingsMismatch? = e as? GenerationStoreError else { return XCTFail("\(e)") }
        }
        // SQLite is compiled in: no system libsqlite3 is loaded (nor needed to build).
        if let maps = ProcessMemory.procFile("/proc/self/maps") {
            XCTAssertFalse(maps.contains("libsqlite3"), "the system's libsqlite3 is mapped")
        }
    }

    func testNotADatabase() throws {
        try Data("this is not sqlite, it is a text file that is long enough to have a header".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try GenerationStore(path: path, settings: settings)) { error in
            guard case let .database(p, message)? = error as? GenerationStoreError else { return XCTFail("\(error)") }
            XCTAssertEqual(p, path)
            XCTAssertFalse(message.isEmpty)
        }
    }
}

/// A process killed in the middle of recording a prompt: the test binary runs itself as a child
/// (only `StoreCrashChildTests`), which records one prompt, then SIGKILLs itself after writing
/// half of the next prompt's candidates inside the transaction.
final class StoreCrashSafetyTests: XCTestCase {
    func testKilledMidTransactionLosesNothingAndRecordsNoHalfPrompt() throws {
        let executable = try childTestExecutable()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("store-crash-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("gen.sqlite").path
        let settings = StoreCrashChildTests.settings
        do {
            let store = try GenerationStore(path: path, settings: settings)
            try store.insertPrompts(StoreCrashChildTests.prompts)
        }
        try runChildTestExpectingSIGKILL(executable, test: "DistillDataTests.StoreCrashChildTests/testChild",
                                         environment: [StoreCrashChildTests.variable: path])

        let store = try GenerationStore(path: path, settings: settings)
        XCTAssertTrue(try store.isDone("a"))
        XCTAssertEqual(try store.candidates(promptID: "a").count, 4)
        XCTAssertFalse(try store.isDone("b"))
        XCTAssertEqual(try store.candidates(promptID: "b"), [])
        XCTAssertEqual(try store.pendingPrompts().map(\.id), ["b", "c"])
        XCTAssertEqual(try store.counts().candidates, 4)
        // Resuming finishes the interrupted prompt.
        try store.recordResults(promptID: "b", candidates: StoreCrashChildTests.candidates)
        XCTAssertEqual(try store.pendingPrompts().map(\.id), ["c"])
    }
}

/// Does its work only when run as the child of `StoreCrashSafetyTests`.
final class StoreCrashChildTests: XCTestCase {
    static let variable = "DISTILL_STORE_CRASH_CHILD_DB"
    static let settings = GenerationSettings(teacherModel: "t", template: "x", samplesPerPrompt: 4, temperature: 1, seed: 1)
    static let prompts = ["a", "b", "c"].map { TracePrompt(id: $0, text: "prompt \($0)") }
    static let candidates = (0..<4).map { StoredCandidate(index: $0, text: "c\($0)", verdict: .kept) }

    func testChild() throws {
        guard let path = ProcessInfo.processInfo.environment[Self.variable] else { return }
        let store = try GenerationStore(path: path, settings: Self.settings)
        try store.recordResults(promptID: "a", candidates: Self.candidates)
        try store.record(promptID: "b", candidates: Self.candidates, afterEachCandidate: { k in
            if k == 1 { kill(getpid(), SIGKILL) }
        })
        XCTFail("the child should have been killed")
    }
}
