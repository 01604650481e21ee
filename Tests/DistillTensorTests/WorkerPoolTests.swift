import Foundation
import XCTest
@testable import DistillTensor

/// `parallelFor` on the worker pool: every index visited exactly once, loops started back to back
/// (workers awake) and after a pause (workers asleep), loops nested inside a chunk and loops from
/// several threads at once (the busy pool hands them to Dispatch).
final class WorkerPoolTests: XCTestCase {
    private func visits(_ n: Int, grain: Int) -> [Int] {
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: n)
        counts.initialize(repeating: 0, count: n)
        defer { counts.deallocate() }
        parallelFor(n, grain: grain) { r in for i in r { counts[i] += 1 } }
        return Array(UnsafeBufferPointer(start: counts, count: n))
    }

    func testEveryIndexOnceManyLoops() {
        let saved = Threads.count
        defer { Threads.count = saved }
        for threads in [2, 3, 5] {
            Threads.count = threads
            for n in [1, 2, 3, 7, 64, 1000, 4097] {
                for _ in 0..<50 { XCTAssertEqual(visits(n, grain: 1), [Int](repeating: 1, count: n), "n \(n), \(threads) threads") }
            }
        }
    }

    func testLoopsAfterWorkersSleep() {
        Threads.setSpin(0)                // workers sleep right after each loop
        defer { Threads.setSpin(2000) }
        let saved = Threads.count
        Threads.count = 2
        defer { Threads.count = saved }
        for _ in 0..<200 { XCTAssertEqual(visits(100, grain: 1), [Int](repeating: 1, count: 100)) }
        usleep(2000)
        XCTAssertEqual(visits(100, grain: 1), [Int](repeating: 1, count: 100))
    }

    func testNestedLoops() {
        let saved = Threads.count
        Threads.count = 2
        defer { Threads.count = saved }
        let outer = 4, inner = 500
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: outer * inner)
        counts.initialize(repeating: 0, count: outer * inner)
        defer { counts.deallocate() }
        parallelFor(outer, grain: 1) { r in
            for o in r { parallelFor(inner, grain: 1) { ri in for i in ri { counts[o * inner + i] += 1 } } }
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: counts, count: outer * inner)), [Int](repeating: 1, count: outer * inner))
    }

    func testLoopsFromSeveralThreads() {
        let saved = Threads.count
        Threads.count = 2
        defer { Threads.count = saved }
        let good = UnsafeMutablePointer<Bool>.allocate(capacity: 4)
        good.initialize(repeating: true, count: 4)
        defer { good.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            for _ in 0..<100 where self.visits(257, grain: 1) != [Int](repeating: 1, count: 257) { good[t] = false }
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: good, count: 4)), [true, true, true, true])
    }
}
