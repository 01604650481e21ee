import Foundation
import XCTest
@testable import DistillTensor

/// `Threads.limited(to:)` and `sideBySide`: the cap applies to the calling thread only, parallel
/// loops keep to it, the BLAS path is not taken under it, and two jobs side by side each get
/// half of the threads, to the end.
final class SideBySideTests: XCTestCase {
    private var saved = 0
    override func setUp() { saved = Threads.count; Threads.count = 4 }
    override func tearDown() { Threads.count = saved }

    /// Chunks a parallel loop over `n` items is split into (each chunk records itself once).
    private func chunks(_ n: Int) -> Int {
        let lock = NSLock()
        var seen = 0
        parallelFor(n, grain: 1) { _ in lock.withLock { seen += 1 } }
        return seen
    }

    func testLimitAppliesToThisThreadOnly() {
        XCTAssertFalse(Threads.isLimited)
        Threads.limited(to: 1) {
            XCTAssertEqual(Threads.count, 1)
            XCTAssertTrue(Threads.isLimited)
            XCTAssertEqual(chunks(100), 1)
            // Another thread keeps the process's count.
            let other = LockedBox(0), done = DispatchSemaphore(value: 0)
            Thread { other.value = Threads.count; done.signal() }.start()
            done.wait()
            XCTAssertEqual(other.value, 4)
            // Nested: the inner cap, then the outer one again.
            Threads.limited(to: 3) { XCTAssertEqual(Threads.count, 3) }
            XCTAssertEqual(Threads.count, 1)
        }
        XCTAssertEqual(Threads.count, 4)
        XCTAssertFalse(Threads.isLimited)
        // A cap above the process's count does not raise it.
        Threads.limited(to: 16) { XCTAssertEqual(Threads.count, 4) }
    }

    func testGemmUnderALimitEqualsTheBuiltinKernel() {
        // Under a cap the BLAS backend (whose threads would not keep to it) gives way to the built-in
        // kernel: the same bits as asking for it, whatever BLAS is installed.
        let m = 37, n = 29, k = 300
        var rng = RandomGenerator(seed: 5)
        let a = (0..<(m * k)).map { _ in rng.nextFloat() - 0.5 }, b = (0..<(k * n)).map { _ in rng.nextFloat() - 0.5 }
        func run(_ backend: GemmBackend) -> [Float] {
            var c = [Float](repeating: 0, count: m * n)
            Gemm.sgemm(transA: false, transB: false, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, c: &c, ldc: n, backend: backend)
            return c
        }
        let builtin = run(.builtin)
        Threads.limited(to: 1) { XCTAssertEqual(run(.blas), builtin) }
    }

    func testSideBySideKeepsEachShareToTheEnd() throws {
        let firstDone = DispatchSemaphore(value: 0)
        let (a, b) = try sideBySide({ () -> [Int] in
            let inside = [Threads.count, self.chunks(100)]
            firstDone.signal()
            return inside
        }, { () -> [Int] in
            let before = Threads.count
            firstDone.wait()
            usleep(20_000)
            // The first job is done: this one keeps its half (its numbers must not depend on timing).
            return [before, Threads.count, self.chunks(100)]
        })
        XCTAssertEqual(a, [2, 2])
        XCTAssertEqual(b, [2, 2, 2])
        XCTAssertFalse(Threads.isLimited)
        XCTAssertEqual(Threads.count, 4)
    }

    func testSideBySideErrorsAndOneThread() {
        struct Boom: Error, Equatable { let side: Int }
        XCTAssertThrowsError(try sideBySide({ throw Boom(side: 1) }, { 2 })) { XCTAssertEqual($0 as? Boom, Boom(side: 1)) }
        XCTAssertThrowsError(try sideBySide({ 1 }, { throw Boom(side: 2) })) { XCTAssertEqual($0 as? Boom, Boom(side: 2)) }
        // One thread: one after the other, in order, unlimited.
        Threads.count = 1
        let order = LockedBox<[Int]>([])
        let r = try? sideBySide({ () -> Bool in order.value.append(1); return Threads.isLimited },
                                { () -> Bool in order.value.append(2); return Threads.isLimited })
        XCTAssertEqual(order.value, [1, 2])
        XCTAssertEqual(r?.0, false)
        XCTAssertEqual(r?.1, false)
    }
}
