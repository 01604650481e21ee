import CDistillKernels
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Thread count for kernels: `DISTILL_THREADS` or the number of active processors.
public enum Threads {
    nonisolated(unsafe) public static var count: Int = {
        if let s = ProcessInfo.processInfo.environment["DISTILL_THREADS"], let n = Int(s), n > 0 { return n }
        return ProcessInfo.processInfo.activeProcessorCount
    }()

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
