import DistillNN
import Foundation

/// What a generation job reports to the request that submitted it.
public enum GenerationEvent: Sendable {
    /// A new token of choice `row` (the job's rows: prompt 0's n samples, then prompt 1's, …).
    case token(row: Int, GeneratedToken)
    /// All rows finished.
    case finished([GeneratedSequence])
    case failed(GenerationSchedulerError)
}

/// Why a scheduled job failed.
public enum GenerationSchedulerError: Error, Equatable, CustomStringConvertible {
    /// The scheduler stopped before the job ran.
    case shuttingDown
    /// The job's own generation failed (bad options or prompt); the message says why.
    case generation(String)
    /// Nobody waits for the job's events any more.
    case cancelled

    public var description: String {
        switch self {
        case .shuttingDown: return "the generation scheduler is shutting down"
        case .generation(let m): return m
        case .cancelled: return "generation was cancelled"
        }
    }
}

/// A flag the request side sets when nobody waits for a job any more (a streaming client hung up).
public final class CancellationFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    public init() {}
    public var isSet: Bool { lock.withLock { value } }
    public func set() { lock.withLock { value = true } }
}

/// One request's prompts with their options, waiting for a batch.
public struct GenerationJob: Sendable {
    public var items: [GenerationItem]
    public var events: AsyncStream<GenerationEvent>.Continuation
    public var cancelled: CancellationFlag

    public init(items: [GenerationItem], events: AsyncStream<GenerationEvent>.Continuation, cancelled: CancellationFlag) {
        self.items = items
        self.events = events
        self.cancelled = cancelled
    }

    var rows: Int { items.reduce(0) { $0 + $1.options.n } }
}

/// How a scheduler lets requests join.
public enum BatchingMode: String, Sendable, CaseIterable {
    /// Waiting requests join the running batch at its next decode step (continuous batching).
    case continuous
    /// Requests that arrive while a batch runs wait until all of it has finished (kept to measure
    /// what continuous batching gains).
    case `static`
}

/// Continuous batching of generation requests for a server or an in-process teacher.
///
/// Runs generation on a dedicated thread, off event loops and off Swift's cooperative pool, as one
/// `DecodingBatch` of up to `maxBatch` sequences. A request that arrives while the batch runs joins
/// it at the next decode step when its rows fit (in arrival order: a request that does not fit
/// waits, and so do the ones behind it); an idle scheduler waits `window` after the first request
/// for others to arrive with it. Each request keeps its own sampling options, stop conditions and
/// seeds, so its output does not depend on its neighbours; it is answered as soon as its own rows
/// finish.
public final class GenerationScheduler: @unchecked Sendable {
    private let lm: TransformerLM
    /// Decodes the text that stop strings are matched on.
    private let tokenizer: Tokenizer?
    public let maxBatch: Int
    public let window: TimeInterval
    public let mode: BatchingMode
    private let condition = NSCondition()
    private var pending: [GenerationJob] = []
    private var stopping = false
    private var thread: Thread?
    private var _batches = 0
    private var _sequences = 0
    private var _joined = 0

    public init(lm: TransformerLM, tokenizer: Tokenizer?, maxBatch: Int, window: TimeInterval, mode: BatchingMode = .continuous) {
        self.lm = lm
        self.tokenizer = tokenizer
        self.maxBatch = max(1, maxBatch)
        self.window = window
        self.mode = mode
        // The thread holds the scheduler until `stop()`.
        let t = Thread { self.loop() }
        t.name = "distill.serve.generation"
        t.qualityOfService = .userInitiated
        thread = t
        t.start()
    }

    /// Groups of requests whose prompts ran through the model together (a new batch, or
    /// newcomers joining a running one).
    public var batches: Int { condition.withLock { _batches } }
    /// Sequences (prompt × sample rows) generated so far.
    public var sequences: Int { condition.withLock { _sequences } }
    /// Requests that joined a batch while it was generating for others.
    public var joinedRunning: Int { condition.withLock { _joined } }

    public func submit(_ job: GenerationJob) {
        condition.lock()
        defer { condition.unlock() }
        if stopping {
            job.events.yield(.failed(.shuttingDown))
            job.events.finish()
            return
        }
        pending.append(job)
        condition.signal()
    }

    /// Stops admitting requests; the thread ends once the running batch has finished, and waiting
    /// jobs fail.
    public func stop() {
        condition.lock()
        stopping = true
        let dropped = pending
        pending.removeAll()
        condition.signal()
        condition.unlock()
        for job in dropped {
            job.events.yield(.failed(.shuttingDown))
            job.events.finish()
        }
    }

    /// A job in the batch: its row ids (the job's row order) and the index its first prompt has
    /// among the prompts admitted with it.
    private struct Admitted {
        var job: GenerationJob
        var ids: [Int]
        var firstPrompt: Int
    }

    private func loop() {
        let generator = Generator(model: lm)
        let batch = DecodingBatch(model: lm, tokenizer: tokenizer)
        var admitted: [Admitted] = []
        // Row id -> (index into `admitted`, the job's own row number).
        var owner: [Int: (job: Int, row: Int)] = [:]
        while true {
            condition.lock()
            if batch.isDone {
                while pending.isEmpty && !stopping { condition.wait() }
                if stopping { condition.unlock(); return }
                // Give requests arriving together a moment to join the batch.
                if window > 0 {
                    let deadline = Date(timeIntervalSinceNow: window)
                    while !stopping && pending.reduce(0, { $0 + $1.rows }) < maxBatch && condition.wait(until: deadline) {}
                    if stopping { condition.unlock(); return }
                }
            }
            var joining: [GenerationJob] = []
            if !stopping && (batch.isDone || mode == .continuous) {
                var rows = batch.live.count
                while let job = pending.first, (rows == 0 && joining.isEmpty) || rows + job.rows <= maxBatch {
                    joining.append(pending.removeFirst())
                    rows += job.rows
                }
            }
            condition.unlock()

            joining = joining.filter { job in
                if job.cancelled.isSet { job.events.finish(); return false }
                do {
                    try generator.validate(job.items, tokenizer: tokenizer)
                    return true
                } catch {
                    job.events.yield(.failed(.generation((error as? GenerationError)?.description ?? "\(error)")))
                    job.events.finish()
                    return false
                }
            }
            if !joining.isEmpty {
                let running = !batch.isDone
                let ids = batch.admit(joining.flatMap(\.items))
                var next = 0, prompt = 0
                for job in joining {
                    let mine = Array(ids[next..<(next + job.rows)])
                    for (k, id) in mine.enumerated() { owner[id] = (admitted.count, k) }
                    admitted.append(Admitted(job: job, ids: mine, firstPrompt: prompt))
                    next += job.rows
                    prompt += job.items.count
                }
                condition.withLock {
                    _batches += 1
                    if running { _joined += joining.count }
                }
            }
            if !batch.isDone {
                let jobs = admitted
                batch.step(onToken: { id, token in
                    let o = owner[id]!
                    jobs[o.job].job.events.yield(.token(row: o.row, token))
                }, isCancelled: { id in jobs[owner[id]!.job].job.cancelled.isSet })
            }
            // Answer the jobs whose rows have all finished.
            var unfinished: [Admitted] = []
            for a in admitted {
                if a.ids.contains(where: batch.isLive) { unfinished.append(a); continue }
                let seqs = a.ids.map { id -> GeneratedSequence in
                    owner[id] = nil
                    var s = batch.take(id)
                    s.prompt -= a.firstPrompt
                    return s
                }
                condition.withLock { _sequences += seqs.count }
                a.job.events.yield(.finished(seqs))
                a.job.events.finish()
            }
            if unfinished.count < admitted.count {
                admitted = unfinished
                for (j, a) in admitted.enumerated() { for (k, id) in a.ids.enumerated() { owner[id] = (j, k) } }
            }
        }
    }
}

extension GenerationScheduler {
    /// Submits `items` and returns the job's event stream; the job is cancelled when the stream
    /// is dropped (its consumer stops listening).
    public func submit(_ items: [GenerationItem]) -> (events: AsyncStream<GenerationEvent>, cancelled: CancellationFlag) {
        let flag = CancellationFlag()
        let (stream, continuation) = AsyncStream<GenerationEvent>.makeStream()
        continuation.onTermination = { _ in flag.set() }
        submit(GenerationJob(items: items, events: continuation, cancelled: flag))
        return (stream, flag)
    }

    /// Submits `items` and waits for their sequences (row order: item 0's n samples, then item 1's, …).
    public func generate(_ items: [GenerationItem]) async throws -> [GeneratedSequence] {
        try await Self.sequences(from: submit(items).events)
    }

    /// Waits for a job's sequences, skipping its token events; throws its failure
    /// (`GenerationSchedulerError`), or `.cancelled` when the stream ends without a result.
    public static func sequences(from events: AsyncStream<GenerationEvent>) async throws -> [GeneratedSequence] {
        for await event in events {
            switch event {
            case .token: continue
            case .finished(let seqs): return seqs
            case .failed(let e): throw e
            }
        }
        throw GenerationSchedulerError.cancelled
    }
}
