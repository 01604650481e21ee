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

/// Continuous batching of generation requests for a server or an in-process teacher.
///
/// Runs generation on a dedicated thread, off event loops and off Swift's cooperative pool.
/// Requests that arrive while a batch runs (or within `window` of the first one waiting) are run
/// together as one `Generator` batch, up to `maxBatch` sequences; each keeps its own sampling
/// options, stop conditions and seeds (`Generator.generate(items:)`), so its output does not
/// depend on its neighbours.
public final class GenerationScheduler: @unchecked Sendable {
    private let lm: TransformerLM
    /// Decodes the text that stop strings are matched on.
    private let tokenizer: Tokenizer?
    public let maxBatch: Int
    public let window: TimeInterval
    private let condition = NSCondition()
    private var pending: [GenerationJob] = []
    private var stopping = false
    private var thread: Thread?
    private var _batches = 0
    private var _sequences = 0

    public init(lm: TransformerLM, tokenizer: Tokenizer?, maxBatch: Int, window: TimeInterval) {
        self.lm = lm
        self.tokenizer = tokenizer
        self.maxBatch = max(1, maxBatch)
        self.window = window
        // The thread holds the scheduler until `stop()`.
        let t = Thread { self.loop() }
        t.name = "distill.serve.generation"
        t.qualityOfService = .userInitiated
        thread = t
        t.start()
    }

    /// Generator batches run so far.
    public var batches: Int { condition.withLock { _batches } }
    /// Sequences (prompt × sample rows) generated so far.
    public var sequences: Int { condition.withLock { _sequences } }

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

    /// Stops the thread after the running batch; waiting jobs fail.
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

    private func loop() {
        while true {
            condition.lock()
            while pending.isEmpty && !stopping { condition.wait() }
            if stopping { condition.unlock(); return }
            // Give requests arriving together a moment to join the batch.
            if window > 0 {
                let deadline = Date(timeIntervalSinceNow: window)
                while !stopping && pending.reduce(0, { $0 + $1.rows }) < maxBatch && condition.wait(until: deadline) {}
                if stopping { condition.unlock(); return }
            }
            var batch: [GenerationJob] = []
            var rows = 0
            while let job = pending.first, batch.isEmpty || rows + job.rows <= maxBatch {
                batch.append(pending.removeFirst())
                rows += job.rows
            }
            condition.unlock()
            let live = batch.filter { job in
                if job.cancelled.isSet { job.events.finish(); return false }
                return true
            }
            if !live.isEmpty { run(live) }
        }
    }

    /// Runs jobs as one batch; if the batch fails, runs each alone so that one bad job does not
    /// fail the others.
    private func run(_ jobs: [GenerationJob]) {
        // Row r of the batch belongs to job owner[r] as its row local[r].
        var owner: [Int] = [], local: [Int] = []
        for (j, job) in jobs.enumerated() {
            for k in 0..<job.rows { owner.append(j); local.append(k) }
        }
        let items = jobs.flatMap(\.items)
        do {
            let seqs = try Generator(model: lm).generate(
                items: items, tokenizer: tokenizer,
                onToken: { row, token in jobs[owner[row]].events.yield(.token(row: local[row], token)) },
                isCancelled: { row in jobs[owner[row]].cancelled.isSet })
            condition.withLock {
                _batches += 1
                _sequences += seqs.count
            }
            var start = 0
            for job in jobs {
                // Prompt indices local to the job.
                let first = seqs[start].prompt
                let mine = seqs[start..<(start + job.rows)].map { s -> GeneratedSequence in
                    var s = s
                    s.prompt -= first
                    return s
                }
                start += job.rows
                job.events.yield(.finished(mine))
                job.events.finish()
            }
        } catch {
            if jobs.count > 1 {
                for job in jobs { run([job]) }
                return
            }
            let message = (error as? GenerationError)?.description ?? "\(error)"
            jobs[0].events.yield(.failed(.generation(message)))
            jobs[0].events.finish()
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
