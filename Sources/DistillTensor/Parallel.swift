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
}

/// Splits `0..<n` into contiguous chunks of at least `grain` items and runs `body` on them, in
/// parallel when there is more than one chunk. `body` must write disjoint outputs.
@inline(__always)
public func parallelFor(_ n: Int, grain: Int, _ body: (Range<Int>) -> Void) {
    let chunks = min(Threads.count, Swift.max(1, n / Swift.max(grain, 1)))
    if chunks <= 1 {
        if n > 0 { body(0..<n) }
        return
    }
    withoutActuallyEscaping(body) { body in
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = n * c / chunks, hi = n * (c + 1) / chunks
            if lo < hi { body(lo..<hi) }
        }
    }
}
