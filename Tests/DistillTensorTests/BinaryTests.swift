import XCTest
@testable import DistillTensor

final class BinaryTests: XCTestCase {
    // MARK: values

    func testSameShapeValues() {
        let a = Tensor([1, 2, 3, 4], shape: [2, 2]), b = Tensor([10, 20, 30, 40], shape: [2, 2])
        assertValues(a + b, [11, 22, 33, 44], shape: [2, 2])
        assertValues(a - b, [-9, -18, -27, -36])
        assertValues(a * b, [10, 40, 90, 160])
        assertValues(b / a, [10, 10, 10, 10])
    }

    func testBroadcastValues() {
        // [2,3] + [3]: the row vector is added to each row.
        let m = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        assertValues(m + Tensor([10, 20, 30]), [11, 22, 33, 14, 25, 36], shape: [2, 3])
        // [3] − [2,3] (small operand on the left): [10,20,30] − row
        assertValues(Tensor([10, 20, 30]) - m, [9, 18, 27, 6, 15, 24], shape: [2, 3])
        // [2,1] · [1,3]: outer product [[1],[2]]·[[1,10,100]]
        assertValues(Tensor([1, 2], shape: [2, 1]) * Tensor([1, 10, 100], shape: [1, 3]),
                     [1, 10, 100, 2, 20, 200], shape: [2, 3])
        // [2,3] / [2,1]: each row divided by its own scalar
        assertValues(m / Tensor([1, 2], shape: [2, 1]), [1, 2, 3, 2, 2.5, 3], shape: [2, 3])
        // scalar (rank 0) on either side
        assertValues(m * Tensor(scalar: 2), [2, 4, 6, 8, 10, 12], shape: [2, 3])
        assertValues(Tensor(scalar: 12) / m, [12, 6, 4, 3, 2.4, 2], shape: [2, 3], accuracy: 1e-6)
        // rank 3 vs rank 1: [2,2,2] + [2]
        let r3 = Tensor((0..<8).map(Float.init), shape: [2, 2, 2])
        assertValues(r3 + Tensor([100, 200]), [100, 201, 102, 203, 104, 205, 106, 207], shape: [2, 2, 2])
        // [2,1,3] + [4,1] -> [2,4,3]: element (i,j,k) = a[i,0,k] + b[j,0]
        let a = Tensor([0, 1, 2, 3, 4, 5], shape: [2, 1, 3]), b = Tensor([0, 10, 20, 30], shape: [4, 1])
        let c = a + b
        XCTAssertEqual(c.shape, [2, 4, 3])
        for i in 0..<2 { for j in 0..<4 { for k in 0..<3 {
            XCTAssertEqual(c[i, j, k], a[i, 0, k] + b[j, 0])
        } } }
        // [1,3] vs [2,3] (leading 1 on the small operand takes the suffix path)
        assertValues(m + Tensor([1, 1, 1], shape: [1, 3]), [2, 3, 4, 5, 6, 7], shape: [2, 3])
    }

    func testBroadcastShapes() throws {
        XCTAssertEqual(try broadcastShapes([2, 3], [3]), [2, 3])
        XCTAssertEqual(try broadcastShapes([2, 1], [1, 3]), [2, 3])
        XCTAssertEqual(try broadcastShapes([], [4, 5]), [4, 5])
        XCTAssertEqual(try broadcastShapes([2, 1, 3], [4, 1]), [2, 4, 3])
        XCTAssertEqual(try broadcastShapes([1], [0]), [0])
    }

    func testBroadcastShapesErrorNamesOpAndShapes() {
        // [2,3] and [4,3]: axis 0 has sizes 2 and 4.
        XCTAssertThrowsError(try broadcastShapes([2, 3], [4, 3], op: "add")) { error in
            XCTAssertEqual(error as? TensorError,
                           .shapeMismatch(op: "add", shapes: [[2, 3], [4, 3]], reason: "axis 0 has sizes 2 and 4"))
            let text = "\(error)"
            XCTAssertTrue(text.contains("add"), text)
            XCTAssertTrue(text.contains("[2, 3]") && text.contains("[4, 3]"), text)
        }
        // Right-aligned: [3] vs [2,4] fails on the last axis (axis 1 of the result).
        XCTAssertThrowsError(try broadcastShapes([3], [2, 4])) { error in
            guard case let .shapeMismatch(op, shapes, reason)? = error as? TensorError else {
                return XCTFail("expected shapeMismatch, got \(error)")
            }
            XCTAssertEqual(op, "broadcast")
            XCTAssertEqual(shapes, [[3], [2, 4]])
            XCTAssertTrue(reason.contains("3") && reason.contains("4"), reason)
        }
    }

    // MARK: gradients (d(a+b) = da + db, d(a−b) = da − db, d(ab) = b·da + a·db, d(a/b) = da/b − a/b²·db,
    // each summed over the axes along which an operand was broadcast)

    /// Both operands are kept away from 0: each is a denominator in one of the checks.
    private func checkAll(_ a: Tensor, _ b: Tensor, file: StaticString = #filePath, line: UInt = #line) {
        checkGradients(inputs: [a, b], file: file, line: line) { $0[0] + $0[1] }
        checkGradients(inputs: [a, b], file: file, line: line) { $0[0] - $0[1] }
        checkGradients(inputs: [a, b], file: file, line: line) { $0[0] * $0[1] }
        checkGradients(inputs: [a, b], file: file, line: line) { $0[0] / $0[1] }
        // The other operand order exercises the kernel's left-broadcast branches.
        checkGradients(inputs: [b, a], file: file, line: line) { $0[0] - $0[1] }
        checkGradients(inputs: [b, a], file: file, line: line) { $0[0] / $0[1] }
    }

    func testGradientSameShape() {
        checkAll(awayFromZero([2, 3], 0.5, 2, seed: 1), awayFromZero([2, 3], 0.5, 2, seed: 2))
    }

    func testGradientScalar() {
        checkAll(awayFromZero([2, 3], 0.5, 2, seed: 3), Tensor(scalar: 1.3))
        checkAll(awayFromZero([2, 3], 0.5, 2, seed: 4), Tensor([-0.8], shape: [1, 1]))
    }

    func testGradientRowVector() {
        // [M,N] with [N]
        checkAll(awayFromZero([3, 4], 0.5, 2, seed: 5), awayFromZero([4], 0.5, 2, seed: 6))
    }

    func testGradientColumnTimesRow() {
        // [M,1] with [1,N] -> [M,N]: both operands broadcast
        checkAll(awayFromZero([3, 1], 0.5, 2, seed: 7), awayFromZero([1, 4], 0.5, 2, seed: 8))
        // [M,N] with [M,1] (general path)
        checkAll(awayFromZero([3, 4], 0.5, 2, seed: 9), awayFromZero([3, 1], 0.5, 2, seed: 10))
    }

    func testGradientRank3WithRank1() {
        checkAll(awayFromZero([2, 3, 2], 0.5, 2, seed: 11), awayFromZero([2], 0.5, 2, seed: 12))
        // [2,1,3] with [4,1] -> [2,4,3]
        checkAll(awayFromZero([2, 1, 3], 0.5, 2, seed: 13), awayFromZero([4, 1], 0.5, 2, seed: 14))
    }

    func testGradientOfSameTensorOnBothSides() {
        // y = x·x  =>  dy/dx = 2x ;  y = x/x = 1  =>  dy/dx = 0
        let x = awayFromZero([4], seed: 15)
        checkGradients(inputs: [x]) { $0[0] * $0[0] }
        let g = gradient(at: x) { ($0 / $0).sum() }
        assertValues(g, [0, 0, 0, 0], accuracy: 1e-6)
    }

    func testSumToReducesBroadcastAxes() {
        // [2,3] summed to [3]: column sums; to [2,1]: row sums; to []: total.
        let m = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])
        assertValues(m.sum(to: [3]), [5, 7, 9], shape: [3])
        assertValues(m.sum(to: [2, 1]), [6, 15], shape: [2, 1])
        assertValues(m.sum(to: [1, 3]), [5, 7, 9], shape: [1, 3])
        assertValues(m.sum(to: []), [21], shape: [])
    }
}
