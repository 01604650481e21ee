import CDistillKernels
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Thread count for kernels: `DISTILL_THREADS` or the number of active processors, or fewer
/// on a thread running inside `limited(to:)`.
public enum Threads {
    nonisolated(unsafe) private static var processCount: Int = {
        if let s = ProcessInfo.processInfo.environment["DISTILL_THREADS"], let n = Int(s), n > 0 { return n }
        return ProcessInfo.processInfo.activeProcessorCount
    }()

    /// The threads a kernel started on this thread may use. Setting it sets the process's count.
    public static var count: Int {
        get {
            let limit = dk_thread_limit()
            return limit > 0 ? Swift.min(limit, processCount) : processCount
        }
        set { processCount = newValue }
    }

    /// Whether this thread runs inside `limited(to:)`.
    public static var isLimited: Bool { dk_thread_limit() > 0 }

    /// Runs `body` with the kernels it starts on this thread using at most `n` threads (and the
    /// built-in GEMM instead of a BLAS, whose own threads would not keep to the share): for
    /// independent jobs run side by side on threads of their own, each on its share of the
    /// cores. Small models' kernels gain less from a second thread than a second job does.
    public static func limited<R>(to n: Int, _ body: () throws -> R) rethrows -> R {
        // The GEMM backend and kernel are measured on first use: at full width, not under the cap.
        _ = Gemm.backend
        let saved = dk_thread_limit()
        dk_thread_limit_set(Swift.max(1, n))
        defer { dk_thread_limit_set(saved) }
        return try body()
    }

    /// How many times an idle pool worker checks for work before it sleeps (`DISTILL_SPIN`;
    /// default 2000, about 0.1 ms). 0 makes workers sleep at once (as a system thread pool does).
    public static func setSpin(_ checks: Int) { dk_pool_set_spin(checks) }

    /// Whether parallel loops use the worker pool (`DISTILL_POOL=0`: Dispatch, for comparisons).
    nonisolated(unsafe) public static var usePool: Bool = ProcessInfo.processInfo.environment["DISTILL_POOL"] != "0"

    static let configured: Void = {
        if let s = ProcessInfo.processInfo.environment["DISTILL_SPIN"], let n = Int(s), n >= 0 { dk_pool_set_spin(n) }
    }()
}

/// One parallel loop as the worker pool sees it: `chunks` contiguous parts of `0..<n`.
private struct PoolLoop {
    let n: Int
    let chunks: Int
    let body: (Range<Int>) -> Void

    func run(_ c: Int) {
        let lo = n * c / chunks, hi = n * (c + 1) / chunks
        if lo < hi { body(lo..<hi) }
    }
}

private let poolTrampoline: @convention(c) (UnsafeMutableRawPointer?, Int) -> Void = { ctx, chunk in
    ctx!.assumingMemoryBound(to: PoolLoop.self).pointee.run(chunk)
}

/// Splits `0..<n` into contiguous chunks of at least `grain` items and runs `body` on them, in
/// parallel when there is more than one chunk. `body` must write disjoint outputs.
///
/// Loops run on the worker pool of `CDistillKernels` (workers stay awake briefly between loops,
/// so the many small loops of a decoding step do not each pay a thread wake-up); a loop started
/// while the pool is busy (from another thread, or nested inside a chunk) uses Dispatch instead.
@inline(__always)
public func parallelFor(_ n: Int, grain: Int, _ body: (Range<Int>) -> Void) {
    let chunks = min(Threads.count, Swift.max(1, n / Swift.max(grain, 1)))
    if chunks <= 1 {
        if n > 0 { body(0..<n) }
        return
    }
    _ = Threads.configured
    withoutActuallyEscaping(body) { body in
        var loop = PoolLoop(n: n, chunks: chunks, body: body)
        let ran = Threads.usePool ? withUnsafeMutablePointer(to: &loop) { dk_pool_run(chunks, poolTrampoline, $0) } : 0
        if ran == 0 {
            DispatchQueue.concurrentPerform(iterations: chunks) { c in loop.run(c) }
        }
    }
}

/// Runs `first` on a thread of its own and `second` on this one, side by side, each with its
/// kernels limited to half of `Threads.count` (see `Threads.limited(to:)`), and returns both
/// results once both are done (or the first one's error). Each keeps its share to the end, even
/// when the other finishes first: some reductions split their work by the thread count, so
/// handing threads over mid-run would make the results depend on timing. With fewer than two
/// threads they run one after the other. The two must not share mutable state.
public func sideBySide<A, B>(_ first: () throws -> A, _ second: () throws -> B) throws -> (A, B) {
    let total = Threads.count
    guard total >= 2 else { return (try first(), try second()) }
    let share = total / 2
    return try withoutActuallyEscaping(first) { first in
        // The thread reaches `first` only through the box, which lets go of it once the thread is
        // done with it: the Thread object may hold its block a while longer, and `first` must not
        // outlive this call.
        let side = SideJob<A>(first), done = DispatchSemaphore(value: 0)
        let thread = Thread {
            side.result = Result { try Threads.limited(to: share) { try side.body!() } }
            done.signal()
        }
        thread.stackSize = 16 << 20
        thread.start()
        let second = Result { try Threads.limited(to: total - share) { try second() } }
        done.wait()
        side.body = nil
        return (try side.result!.get(), try second.get())
    }
}

private final class SideJob<A>: @unchecked Sendable {
    var body: (() throws -> A)?
    var result: Result<A, Error>?
    init(_ body: @escaping () throws -> A) { self.body = body }
}
