import XCTest
@testable import DistillTensor

final class ShapeTests: XCTestCase {
    /// [[0,1,2],[3,4,5]]
    private let m = Tensor([0, 1, 2, 3, 4, 5], shape: [2, 3])
    private let x = uniform([2, 3, 4], seed: 41)

    // MARK: tensor basics

    func testConstructionAndAccess() {
        XCTAssertEqual(m.rank, 2)
        XCTAssertEqual(m.count, 6)
        XCTAssertEqual(m.dim(-1), 3)
        XCTAssertEqual(m[1, 2], 5)
        XCTAssertEqual(Tensor(scalar: 4).item, 4)
        XCTAssertEqual(Tensor(scalar: 4).shape, [])
        XCTAssertEqual(Tensor(zeros: [2, 2]).scalars, [0, 0, 0, 0])
        XCTAssertEqual(Tensor(ones: [3]).scalars, [1, 1, 1])
        XCTAssertEqual(Tensor(repeating: 7, shape: [1, 2]).scalars, [7, 7])
        XCTAssertEqual(Tensor(zeros: [0, 3]).count, 0)
        XCTAssertFalse(m.requiresGrad)
        XCTAssertTrue(m.requiringGrad().requiresGrad)
        XCTAssertFalse(m.requiringGrad().detached().requiresGrad)
        // copy() owns fresh storage
        let c = m.copy()
        XCTAssertFalse(c.storage === m.storage)
        XCTAssertEqual(c.scalars, m.scalars)
    }

    // MARK: values

    func testReshapeValues() {
        // Row-major order is kept: [2,3] -> [3,2] = [[0,1],[2,3],[4,5]]
        let r = m.reshaped([3, 2])
        XCTAssertEqual(r.shape, [3, 2])
        XCTAssertEqual(r[2, 0], 4)
        XCTAssertEqual(m.reshaped([-1]).shape, [6])
        XCTAssertEqual(m.reshaped([1, -1, 2]).shape, [1, 3, 2])
        XCTAssertEqual(m.unsqueezed(0).shape, [1, 2, 3])
        XCTAssertEqual(m.unsqueezed(-1).shape, [2, 3, 1])
        XCTAssertEqual(m.unsqueezed(1).shape, [2, 1, 3])
        // A reshape shares storage (no copy).
        XCTAssertTrue(r.storage === m.storage)
    }

    func testResolveReshape() throws {
        XCTAssertEqual(try resolveReshape([2, 3, 4], [6, -1]), [6, 4])
        XCTAssertEqual(try resolveReshape([2, 3, 4], [-1]), [24])
        XCTAssertEqual(try resolveReshape([2, 3], [3, 2]), [3, 2])
        XCTAssertEqual(try resolveReshape([], [1, 1]), [1, 1])
    }

    func testResolveReshapeErrors() {
        // 6 elements cannot take [4, 2]
        XCTAssertThrowsError(try resolveReshape([2, 3], [4, 2])) { error in
            guard case let .shapeMismatch(op, shapes, _)? = error as? TensorError else {
                return XCTFail("expected shapeMismatch, got \(error)")
            }
            XCTAssertEqual(op, "reshape")
            XCTAssertEqual(shapes, [[2, 3], [4, 2]])
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("reshape:"), text)
            XCTAssertTrue(text.contains("[2, 3]") && text.contains("[4, 2]"), text)
        }
        // 6 elements: -1 with known 4 does not divide
        XCTAssertThrowsError(try resolveReshape([2, 3], [4, -1])) { error in
            XCTAssertEqual(error as? TensorError,
                           .shapeMismatch(op: "reshape", shapes: [[2, 3], [4, -1]], reason: "sizes do not divide"))
            XCTAssertTrue("\(error)".contains("[2, 3]") && "\(error)".contains("[4, -1]"), "\(error)")
        }
        // two unknowns, negative sizes
        XCTAssertThrowsError(try resolveReshape([2, 3], [-1, -1])) { error in
            guard case let .invalidArgument(op, reason)? = error as? TensorError else {
                return XCTFail("expected invalidArgument, got \(error)")
            }
            XCTAssertEqual(op, "reshape")
            XCTAssertTrue(reason.contains("[-1, -1]"), reason)
        }
        XCTAssertThrowsError(try resolveReshape([2, 3], [-2, 3])) { error in
            XCTAssertTrue("\(error)".contains("reshape") && "\(error)".contains("[-2, 3]"), "\(error)")
        }
    }

    func testPermuteAndTransposeValues() {
        // transpose of [[0,1,2],[3,4,5]] = [[0,3],[1,4],[2,5]]
        assertValues(m.transposed(), [0, 3, 1, 4, 2, 5], shape: [3, 2])
        assertValues(m.permuted([1, 0]), [0, 3, 1, 4, 2, 5], shape: [3, 2])
        // permute [2,3,4] by [2,0,1]: out[k,i,j] = x[i,j,k]
        let p = x.permuted([2, 0, 1])
        XCTAssertEqual(p.shape, [4, 2, 3])
        for i in 0..<2 { for j in 0..<3 { for k in 0..<4 { XCTAssertEqual(p[k, i, j], x[i, j, k]) } } }
        // transposed(0, 2): out[k,j,i] = x[i,j,k]
        let t = x.transposed(0, 2)
        XCTAssertEqual(t.shape, [4, 3, 2])
        for i in 0..<2 { for j in 0..<3 { for k in 0..<4 { XCTAssertEqual(t[k, j, i], x[i, j, k]) } } }
        // identity permutation and double transpose
        assertClose(x.permuted([0, 1, 2]), x, accuracy: 0)
        assertClose(x.transposed().transposed(), x, accuracy: 0)
    }

    func testSliceValues() {
        // columns 1..<3 of [[0,1,2],[3,4,5]] = [[1,2],[4,5]]
        assertValues(m.slice(axis: 1, start: 1, length: 2), [1, 2, 4, 5], shape: [2, 2])
        assertValues(m.slice(axis: 0, start: 1, length: 1), [3, 4, 5], shape: [1, 3])
        assertValues(m.slice(axis: -1, start: 0, length: 0), [], shape: [2, 0])
        // middle axis of [2,3,4]: x[:, 1:3, :]
        let s = x.slice(axis: 1, start: 1, length: 2)
        XCTAssertEqual(s.shape, [2, 2, 4])
        for i in 0..<2 { for j in 0..<2 { for k in 0..<4 { XCTAssertEqual(s[i, j, k], x[i, j + 1, k]) } } }
    }

    func testConcatAndStackValues() {
        let a = Tensor([1, 2, 3, 4], shape: [2, 2]), b = Tensor([5, 6], shape: [2, 1])
        // along axis 1: [[1,2,5],[3,4,6]]
        assertValues(concat([a, b], axis: 1), [1, 2, 5, 3, 4, 6], shape: [2, 3])
        // along axis 0: [[1,2],[3,4],[5,6]]
        assertValues(concat([a, b.reshaped([1, 2])], axis: 0), [1, 2, 3, 4, 5, 6], shape: [3, 2])
        // stack along a new axis 0 and a new last axis
        let u = Tensor([1, 2]), v = Tensor([3, 4])
        assertValues(stack([u, v]), [1, 2, 3, 4], shape: [2, 2])
        assertValues(stack([u, v], axis: 1), [1, 3, 2, 4], shape: [2, 2])
        assertValues(stack([u, v], axis: -1), [1, 3, 2, 4], shape: [2, 2])
    }

    func testBroadcastToValues() {
        // [3] -> [2,3]: rows repeat; [2,1] -> [2,3]: columns repeat
        assertValues(Tensor([1, 2, 3]).broadcast(to: [2, 3]), [1, 2, 3, 1, 2, 3], shape: [2, 3])
        assertValues(Tensor([1, 2], shape: [2, 1]).broadcast(to: [2, 3]), [1, 1, 1, 2, 2, 2], shape: [2, 3])
        // [2,1,2] -> [2,2,2]: each [1,2] row repeats twice
        assertValues(Tensor([1, 2, 3, 4], shape: [2, 1, 2]).broadcast(to: [2, 2, 2]), [1, 2, 1, 2, 3, 4, 3, 4])
        assertValues(Tensor(scalar: 5).broadcast(to: [2]), [5, 5], shape: [2])
    }

    // MARK: gradients

    func testReshapeGradient() {
        checkGradients(inputs: [x]) { $0[0].reshaped([4, -1]) }
        checkGradients(inputs: [x]) { $0[0].unsqueezed(1) * $0[0].reshaped([2, 1, 3, 4]) }
    }

    func testPermuteGradient() {
        checkGradients(inputs: [x]) { $0[0].permuted([2, 0, 1]) }
        checkGradients(inputs: [x]) { $0[0].permuted([1, 2, 0]) }
    }

    func testTransposeGradient() {
        checkGradients(inputs: [x]) { $0[0].transposed() }
        checkGradients(inputs: [x]) { $0[0].transposed(0, 2) }
    }

    func testSliceGradient() {
        checkGradients(inputs: [x]) { $0[0].slice(axis: 1, start: 1, length: 1) }   // zeros on both sides
        checkGradients(inputs: [x]) { $0[0].slice(axis: 2, start: 0, length: 3) }   // zeros after only
        checkGradients(inputs: [x]) { $0[0].slice(axis: 0, start: 1, length: 1) }   // zeros before only
    }

    func testConcatGradient() {
        let a = uniform([2, 2, 3], seed: 42), b = uniform([2, 1, 3], seed: 43), c = uniform([2, 3, 3], seed: 44)
        checkGradients(inputs: [a, b, c]) { concat($0, axis: 1) }
        checkGradients(inputs: [a, a]) { concat($0, axis: -1) }
        // the same tensor twice accumulates: y = [x, x]  =>  dΣWy/dx = W₁ + W₂
        checkGradients(inputs: [b]) { concat([$0[0], $0[0] * 2], axis: 0) }
    }

    func testStackGradient() {
        let a = uniform([2, 3], seed: 45), b = uniform([2, 3], seed: 46)
        checkGradients(inputs: [a, b]) { stack($0, axis: 0) }
        checkGradients(inputs: [a, b]) { stack($0, axis: 1) }
        checkGradients(inputs: [a, b]) { stack($0, axis: 2) }
    }

    func testBroadcastGradient() {
        checkGradients(inputs: [uniform([3], seed: 47)]) { $0[0].broadcast(to: [2, 3]) }
        checkGradients(inputs: [uniform([2, 1], seed: 48)]) { $0[0].broadcast(to: [2, 3]) }
        checkGradients(inputs: [uniform([2, 1, 3], seed: 49)]) { $0[0].broadcast(to: [4, 2, 2, 3]) }
        checkGradients(inputs: [Tensor(scalar: 0.7)]) { $0[0].broadcast(to: [2, 2]) }
    }
}
