import DistillData
import DistillModels
import Distillation
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum PipelineError: Error, Equatable, CustomStringConvertible {
    case invalid(String)
    /// Another pipeline holds the work directory.
    case locked(String)

    public var description: String {
        switch self {
        case .invalid(let m), .locked(let m): return m
        }
    }
}

/// The stages of a batch, in order. A stage's outputs are complete before the batch's state
/// says it is done, so a run killed at any instant repeats at most the stage it was in.
public enum PipelineStage: String, Codable, CaseIterable, Comparable, Sendable {
    /// The prompt file was read and copied into the batch's directory.
    case claimed
    /// The teacher's traces are in `traces.jsonl` (its store `traces.sqlite` resumes a killed run).
    case traced
    /// `train.jsonl`: the traces without examples that overlap the evaluation sets.
    case decontaminated
    /// `train/`: the candidate, trained from the current version (checkpoints resume a killed run).
    case trained
    /// The gate's verdict is in the state.
    case evaluated
    /// A promoted candidate is a version and `current` points at it (nothing to do for a refused one).
    case published
    /// The history records the batch.
    case done
    /// The batch cannot be processed (its prompt file is invalid); the history says why.
    case failed

    public static func < (a: PipelineStage, b: PipelineStage) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// A batch's progress, `WORK/<batch>/state.json` (rewritten atomically after every stage).
public struct BatchState: Codable, Equatable, Sendable {
    public var batch: String
    public var file: String
    public var stage: PipelineStage
    /// The version the candidate was trained from.
    public var parent: String?
    /// Training examples after decontamination, and how many decontamination removed.
    public var examples: Int?
    public var removed: Int?
    public var gate: GateResult?
    /// The version name chosen for a promoted candidate (chosen before it is created).
    public var version: String?
    public var failure: String?
}

/// What the pipeline is doing, for the command line (the library never prints).
public enum PipelineEvent {
    case initialVersion(String)
    /// A batch starts (or resumes after `stage`).
    case batch(String, file: String, resumingAfter: PipelineStage?)
    case traces(String, TracePipelineEvent)
    case decontaminated(String, kept: Int, removed: Int)
    case recipe(String, RecipeEvent)
    case evaluating(String)
    /// One step of a promotion: the version was created, or `current` switched to it.
    case versionCreated(String, version: String)
    case pointerSwitched(String, version: String)
    /// A stage's outputs and the batch's state are written.
    case stage(String, PipelineStage)
    case decided(String, GateResult, version: String?)
    case failed(String, reason: String)
    /// Nothing pending; the next look at the inbox is in `seconds`.
    case idle(seconds: Double)
    /// A stage failed in a way a later attempt may not (the teacher server down, a full disk);
    /// `watch` retries the batch at the next poll.
    case retrying(String, reason: String)
}

/// `distill pipeline`: new prompt files in the inbox → the teacher's traces → decontamination →
/// training from the current student → the evaluation gate → promotion into the versions
/// directory (which `distill serve --watch` follows). One batch at a time, in file-name order;
/// every stage resumable after the process is killed.
public final class ContinuousPipeline {
    public let configuration: PipelineConfiguration
    public let versions: ModelVersions
    public static let initialBatch = "initial"

    public init(configuration: PipelineConfiguration) {
        self.configuration = configuration
        versions = ModelVersions(directory: configuration.versions)
    }

    /// An inbox file: `<name>-<hash of its bytes>`, so an edited file is a new batch.
    public struct Batch: Equatable, Sendable {
        public var id: String
        public var file: URL
    }

    /// The inbox's prompt files (`*.jsonl`, not hidden), in name order.
    public func inboxBatches() throws -> [Batch] {
        let fm = FileManager.default
        guard fm.fileExists(atPath: configuration.inbox.path) else {
            throw PipelineError.invalid("\(configuration.file): inbox: no such directory \(configuration.inbox.path)")
        }
        let names = try fm.contentsOfDirectory(atPath: configuration.inbox.path)
            .filter { $0.hasSuffix(".jsonl") && !$0.hasPrefix(".") }.sorted()
        return names.compactMap { name in
            let url = configuration.inbox.appendingPathComponent(name)
            guard let data = fm.contents(atPath: url.path) else { return nil }
            return Batch(id: String(name.dropLast(6)) + "-" + Self.hash(data), file: url)
        }
    }

    /// The batches not yet done or failed.
    public func pendingBatches() throws -> [Batch] {
        try inboxBatches().filter { b in
            guard let s = try state(b.id) else { return true }
            return s.stage != .done && s.stage != .failed
        }
    }

    public func batchDirectory(_ id: String) -> URL { configuration.work.appendingPathComponent(id) }

    public func state(_ id: String) throws -> BatchState? {
        let url = batchDirectory(id).appendingPathComponent("state.json")
        guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
        do { return try JSONDecoder().decode(BatchState.self, from: data) } catch {
            throw FileError(file: url.path, "not a batch state (\(error)); delete the batch's directory to start it over")
        }
    }

    func save(_ s: BatchState) throws {
        let url = batchDirectory(s.batch).appendingPathComponent("state.json")
        do { try JSONEncoder.pipeline.encode(s).write(to: url, options: .atomic) } catch {
            throw FileError(file: url.path, "cannot write the batch state: \(ioFailureReason(error))")
        }
    }

    // MARK: Running

    /// Processes every pending batch, then returns their final states. A batch whose stage fails
    /// for a reason that may pass (server, disk) stops the run with the error: rerunning continues it.
    @discardableResult
    public func runPending(onEvent: @escaping (PipelineEvent) -> Void = { _ in }) async throws -> [BatchState] {
        let lock = try WorkLock(directory: configuration.work)
        defer { lock.release() }
        try ensureInitialVersion(onEvent)
        var out: [BatchState] = []
        for b in try pendingBatches() { out.append(try await process(b, onEvent: onEvent)) }
        return out
    }

    /// Runs pending batches, then looks at the inbox every `poll_seconds` until the task is
    /// cancelled. A batch that fails is retried at the next look.
    public func watch(onEvent: @escaping (PipelineEvent) -> Void = { _ in }) async throws {
        let lock = try WorkLock(directory: configuration.work)
        defer { lock.release() }
        try ensureInitialVersion(onEvent)
        while !Task.isCancelled {
            for b in try pendingBatches() {
                do { _ = try await process(b, onEvent: onEvent) } catch {
                    onEvent(.retrying(b.id, reason: "\(error)"))
                    break
                }
            }
            onEvent(.idle(seconds: configuration.pollSeconds))
            try? await Task.sleep(nanoseconds: UInt64(configuration.pollSeconds * 1e9))
        }
    }

    /// With no current version: `initial_student` becomes v0001 (once), `current` points at the
    /// newest version, and the history records it.
    func ensureInitialVersion(_ onEvent: (PipelineEvent) -> Void) throws {
        if versions.current() == nil {
            if versions.versions().isEmpty {
                guard let initial = configuration.initialStudent else {
                    throw PipelineError.invalid("\(configuration.file): \(versions.directory.path) holds no version yet: give initial_student (a model directory)")
                }
                try versions.create("v0001", from: initial, info: ["batch": Self.initialBatch, "source": initial.path])
            }
            try versions.point(to: versions.versions().last!)
        }
        if let first = versions.versions().first, try versions.info(first)["batch"] == Self.initialBatch,
           try !versions.history().contains(where: { $0.batch == Self.initialBatch }) {
            try versions.record(PipelineHistoryEntry(batch: Self.initialBatch, decision: .initial, version: first,
                                                     reasons: ["from \(try versions.info(first)["source"] ?? "?")"]))
            onEvent(.initialVersion(first))
        }
    }

    /// Runs a batch's remaining stages.
    func process(_ batch: Batch, onEvent: @escaping (PipelineEvent) -> Void) async throws -> BatchState {
        let dir = batchDirectory(batch.id)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var s = try state(batch.id) ?? BatchState(batch: batch.id, file: batch.file.lastPathComponent, stage: .claimed)
        let fresh = try state(batch.id) == nil
        onEvent(.batch(batch.id, file: batch.file.lastPathComponent, resumingAfter: fresh ? nil : s.stage))
        func advance(_ stage: PipelineStage) throws {
            s.stage = stage
            try save(s)
            onEvent(.stage(batch.id, stage))
        }
        if fresh {
            do {
                let data = try Data(contentsOf: batch.file)
                _ = try PromptFile.read(data: data, path: batch.file.path)
                try data.write(to: dir.appendingPathComponent("prompts.jsonl"), options: .atomic)
            } catch let e as TraceDataError {
                s.failure = "\(e)"
                try advance(.failed)
                try versions.record(PipelineHistoryEntry(batch: batch.id, decision: .failed, current: versions.current(), reasons: ["\(e)"]))
                onEvent(.failed(batch.id, reason: "\(e)"))
                return s
            }
            s.parent = versions.current()
            try advance(.claimed)
        }
        if s.stage == .claimed {
            try await traces(batch.id, dir: dir, onEvent: onEvent)
            try advance(.traced)
        }
        if s.stage == .traced {
            let (kept, removed) = try decontaminate(dir: dir)
            (s.examples, s.removed) = (kept, removed)
            onEvent(.decontaminated(batch.id, kept: kept, removed: removed))
            if kept == 0 {
                s.gate = .refuse(removed > 0 ? "every trace overlaps the evaluation sets (\(removed) removed)" : "the teacher gave no trace to keep")
                try advance(.evaluated)
            } else {
                try advance(.decontaminated)
            }
        }
        guard let parent = s.parent else { throw PipelineError.invalid("\(dir.path)/state.json: no parent version recorded") }
        let candidate = dir.appendingPathComponent("train")
        if s.stage == .decontaminated {
            try await train(batch.id, parent: versions.path(parent), data: dir.appendingPathComponent("train.jsonl"), out: candidate, onEvent: onEvent)
            try advance(.trained)
        }
        if s.stage == .trained {
            onEvent(.evaluating(batch.id))
            s.gate = try await evaluate(current: versions.path(parent), candidate: candidate)
            try advance(.evaluated)
        }
        guard let gate = s.gate else { throw PipelineError.invalid("\(dir.path)/state.json: no gate result recorded") }
        if s.stage == .evaluated {
            if gate.promote {
                if s.version == nil {
                    s.version = versions.nextName()
                    try save(s)
                }
                try versions.create(s.version!, from: candidate, info: ["batch": batch.id, "parent": parent, "file": s.file])
                onEvent(.versionCreated(batch.id, version: s.version!))
                try versions.point(to: s.version!)
                onEvent(.pointerSwitched(batch.id, version: s.version!))
            }
            try advance(.published)
        }
        if s.stage == .published {
            try versions.record(PipelineHistoryEntry(batch: batch.id, decision: gate.promote ? .promoted : .refused, version: s.version,
                                                     current: parent, reasons: gate.reasons, gate: gate, examples: s.examples))
            // The candidate stays for inspection; its checkpoints are not needed any more.
            try? FileManager.default.removeItem(at: candidate.appendingPathComponent(RecipeRunner.checkpointsDirectory))
            try advance(.done)
            onEvent(.decided(batch.id, gate, version: s.version))
        }
        return s
    }

    // MARK: Stages

    func traces(_ id: String, dir: URL, onEvent: @escaping (PipelineEvent) -> Void) async throws {
        let t = configuration.teacher
        var config = HTTPTeacherConfiguration(baseURLs: t.urls, model: t.model, apiKeyEnvironmentVariable: t.apiKeyEnvironmentVariable)
        config.maxInFlight = max(config.maxInFlight, t.concurrency)
        config.stream = t.stream
        let client = try HTTPTeacherClient(config)
        let template = TraceTemplate(openTag: TraceTemplate.default.openTag, closeTag: TraceTemplate.default.closeTag,
                                     openTagInPrompt: t.thinkInPrompt)
        var filters: [any TraceFilter] = t.thinkRequired ? [TemplateFilter(template: template.completionForm)] : []
        if t.filters.contains("repetition") { filters.append(RepetitionFilter()) }
        if t.filters.contains("language_mixing") { filters.append(LanguageMixingFilter()) }
        let settings = ["template": t.thinkRequired ? "on" : "off", "filters": t.filters.joined(separator: ",")]
        let pipeline = TracePipeline(TracePipelineConfiguration(
            prompts: .file(dir.appendingPathComponent("prompts.jsonl").path), teacher: client, samplesPerPrompt: t.samples,
            sampling: t.sampling, systemPrompt: t.system, template: template, verifier: t.verifierKind, filters: filters,
            filterSettings: settings, keepPolicy: t.keep, storePath: dir.appendingPathComponent("traces.sqlite").path,
            outputPath: dir.appendingPathComponent("traces.jsonl").path, statsPath: dir.appendingPathComponent("traces-stats.json").path,
            concurrency: t.concurrency))
        let result: Result<TracePipelineSummary, Error>
        do { result = .success(try await pipeline.run { onEvent(.traces(id, $0)) }) } catch { result = .failure(error) }
        try? await client.shutdown()
        let summary = try result.get()
        if !summary.failures.isEmpty {
            throw PipelineError.invalid("traces: \(summary.failures.count) prompts failed (first: \(summary.failures[0].promptID): \(summary.failures[0].message)); they stay pending")
        }
    }

    /// Writes `train.jsonl`; returns the examples kept and removed.
    func decontaminate(dir: URL) throws -> (kept: Int, removed: Int) {
        let traces = dir.appendingPathComponent("traces.jsonl").path, out = dir.appendingPathComponent("train.jsonl").path
        let lines: [String], removed: Int
        if configuration.decontaminateAgainst.isEmpty {
            lines = try TraceJSONL.lines(path: traces).map(\.text)
            removed = 0
        } else {
            let d = try Decontaminator(against: configuration.decontaminateAgainst, n: configuration.ngram)
            let r = try d.filter(path: traces)
            lines = r.lines
            removed = r.report.removed.count
            let json = try JSONSerialization.data(withJSONObject: r.report.json, options: [.prettyPrinted, .sortedKeys])
            try json.write(to: dir.appendingPathComponent("decontamination.json"), options: .atomic)
        }
        if !lines.isEmpty { try TraceJSONL.write(lines: lines, to: out) }
        return (lines.count, removed)
    }

    func train(_ id: String, parent: URL, data: URL, out: URL, onEvent: @escaping (PipelineEvent) -> Void) async throws {
        let recipe = try configuration.recipe(student: parent.path, train: data.path, output: out.path)
        let resume = Checkpoint.latest(in: out.appendingPathComponent(RecipeRunner.checkpointsDirectory)) != nil
        try await offload { try RecipeRunner.run(recipe: recipe, resume: resume) { onEvent(.recipe(id, $0)) } }
    }

    func evaluate(current: URL, candidate: URL) async throws -> GateResult {
        let gate = configuration.gate
        return try await offload {
            let task = try GateEvaluation.compare(gate.task, current: current.path, candidate: candidate.path, gate: gate)
            let second = try gate.noRegression.map { try GateEvaluation.compare($0, current: current.path, candidate: candidate.path, gate: gate) }
            return GateResult.decide(task: task, noRegression: second, margin: gate.margin, tolerance: gate.tolerance)
        }
    }

    /// Long, blocking work (training, evaluation) on its own thread, off the cooperative pool
    /// that a server in the same process answers requests on.
    func offload<T>(_ work: @escaping () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<T, Error>) in
            let thread = Thread { done.resume(with: Result { try work() }) }
            thread.stackSize = 16 << 20
            thread.start()
        }
    }

    /// FNV-1a 64 of the bytes, the first 8 hex digits.
    static func hash(_ data: Data) -> String { String(FNV1a64.hex(FNV1a64.hash(data)).prefix(8)) }
}

extension ModelVersions {
    /// A version's `version.json`.
    public func info(_ version: String) throws -> [String: String] {
        let url = path(version).appendingPathComponent(Self.versionFile)
        guard let data = FileManager.default.contents(atPath: url.path) else { return [:] }
        return (try? JSONDecoder().decode([String: String].self, from: data)) ?? [:]
    }
}

/// An exclusive lock on the work directory (`flock` on `WORK/.lock`), released when the process
/// ends however it ends: a second pipeline on the same directories is refused, a killed one
/// does not block the next.
final class WorkLock {
    private var fd: Int32

    init(directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent(".lock").path
        fd = open(path, O_RDWR | O_CREAT, 0o644)
        guard fd >= 0 else { throw FileError(file: path, "cannot open the lock file: \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
            close(fd)
            throw PipelineError.locked("another distill pipeline (process \(holder)) is working in \(directory.path)")
        }
        _ = ftruncate(fd, 0)
        let pid = "\(getpid())\n"
        _ = pid.withCString { write(fd, $0, strlen($0)) }
    }

    func release() {
        guard fd >= 0 else { return }
        flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }

    deinit { release() }
}
