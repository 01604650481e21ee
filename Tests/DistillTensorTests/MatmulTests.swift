import XCTest
@testable import DistillTensor

final class MatmulTests: XCTestCase {
    // MARK: values

    func testMatmulValues() {
        // [[1,2],[3,4]]·[[5,6],[7,8]] = [[1·5+2·7, 1·6+2·8], [3·5+4·7, 3·6+4·8]] = [[19,22],[43,50]]
        let a = Tensor([1, 2, 3, 4], shape: [2, 2]), b = Tensor([5, 6, 7, 8], shape: [2, 2])
        assertValues(a.matmul(b), [19, 22, 43, 50], shape: [2, 2])
        // aᵀ·b = [[1,3],[2,4]]·b = [[26,30],[38,44]]
        assertValues(a.matmul(b, transA: true), [26, 30, 38, 44])
        // a·bᵀ = a·[[5,7],[6,8]] = [[17,23],[39,53]]
        assertValues(a.matmul(b, transB: true), [17, 23, 39, 53])
        // aᵀ·bᵀ = (b·a)ᵀ; b·a = [[23,34],[31,46]] -> [[23,31],[34,46]]
        assertValues(a.matmul(b, transA: true, transB: true), [23, 31, 34, 46])
        // [1,3]·[3,1] = 1·4 + 2·5 + 3·6 = 32
        assertValues(Tensor([1, 2, 3], shape: [1, 3]).matmul(Tensor([4, 5, 6], shape: [3, 1])), [32], shape: [1, 1])
    }

    /// op(A)·op(B) computed with plain loops, batch by batch (a and b rank 2 or 3).
    private func naive(_ a: Tensor, _ b: Tensor, transA: Bool, transB: Bool) -> Tensor {
        let shape = try! matmulShape(a.shape, b.shape, transA: transA, transB: transB)
        let batch = shape.count == 3 ? shape[0] : 1, m = shape[shape.count - 2], n = shape[shape.count - 1]
        let k = transA ? a.shape[a.rank - 2] : a.shape[a.rank - 1]
        var out = [Float](repeating: 0, count: batch * m * n)
        let av = a.scalars, bv = b.scalars
        let sa = a.rank == 3 ? a.shape[1] * a.shape[2] : 0, sb = b.rank == 3 ? b.shape[1] * b.shape[2] : 0
        let lda = a.shape[a.rank - 1], ldb = b.shape[b.rank - 1]
        for z in 0..<batch { for i in 0..<m { for j in 0..<n {
            var s: Double = 0
            for p in 0..<k {
                let x = transA ? av[z * sa + p * lda + i] : av[z * sa + i * lda + p]
                let y = transB ? bv[z * sb + j * ldb + p] : bv[z * sb + p * ldb + j]
                s += Double(x) * Double(y)
            }
            out[(z * m + i) * n + j] = Float(s)
        } } }
        return Tensor(out, shape: shape)
    }

    /// Operand of logical shape [rows, cols] stored transposed when `trans` (optionally batched).
    private func operand(_ batch: Int?, _ rows: Int, _ cols: Int, trans: Bool, seed: UInt64) -> Tensor {
        let s = trans ? [cols, rows] : [rows, cols]
        return uniform((batch.map { [$0] } ?? []) + s, seed: seed)
    }

    func testBatchedValuesAgainstLoops() {
        for ta in [false, true] { for tb in [false, true] {
            // same batch
            let a = operand(3, 4, 5, trans: ta, seed: 1), b = operand(3, 5, 6, trans: tb, seed: 2)
            assertClose(a.matmul(b, transA: ta, transB: tb), naive(a, b, transA: ta, transB: tb), accuracy: 1e-5,
                        "batched ta \(ta) tb \(tb)")
            // shared 2-D right operand
            let b2 = operand(nil, 5, 6, trans: tb, seed: 3)
            assertClose(a.matmul(b2, transA: ta, transB: tb), naive(a, b2, transA: ta, transB: tb), accuracy: 1e-5,
                        "shared right ta \(ta) tb \(tb)")
            // shared 2-D left operand
            let a2 = operand(nil, 4, 5, trans: ta, seed: 4)
            assertClose(a2.matmul(b, transA: ta, transB: tb), naive(a2, b, transA: ta, transB: tb), accuracy: 1e-5,
                        "shared left ta \(ta) tb \(tb)")
        } }
    }

    func testLargeBatchedProductTakesSequentialPath() {
        // 2 products of 161·161·162 ≥ 2²² multiply-adds each run one after the other, multi-threaded.
        let a = uniform([2, 161, 162], seed: 5), b = uniform([2, 162, 161], seed: 6)
        let c = a.matmul(b)
        let ref = naive(a, b, transA: false, transB: false)
        // |error| ≤ K·u·Σ|a||b| ≤ 162·6e-8·162 ≈ 2e-3 (|a|,|b| < 1); typical is far smaller.
        assertClose(c, ref, accuracy: 2e-3)
    }

    func testRank4BatchedMatmul() {
        // [2,2,3,4]·[2,2,4,2] is four independent products.
        let a = uniform([2, 2, 3, 4], seed: 7), b = uniform([2, 2, 4, 2], seed: 8)
        let c = a.matmul(b)
        XCTAssertEqual(c.shape, [2, 2, 3, 2])
        let ref = naive(a.reshaped([4, 3, 4]), b.reshaped([4, 4, 2]), transA: false, transB: false)
        assertClose(c, ref.reshaped([2, 2, 3, 2]), accuracy: 1e-5)
    }

    func testMatmulShape() throws {
        XCTAssertEqual(try matmulShape([2, 3], [3, 4], transA: false, transB: false), [2, 4])
        XCTAssertEqual(try matmulShape([3, 2], [3, 4], transA: true, transB: false), [2, 4])
        XCTAssertEqual(try matmulShape([2, 3], [4, 3], transA: false, transB: true), [2, 4])
        XCTAssertEqual(try matmulShape([5, 2, 3], [3, 4], transA: false, transB: false), [5, 2, 4])
        XCTAssertEqual(try matmulShape([2, 3], [5, 3, 4], transA: false, transB: false), [5, 2, 4])
        XCTAssertEqual(try matmulShape([7, 5, 2, 3], [7, 5, 3, 4], transA: false, transB: false), [7, 5, 2, 4])
    }

    func testMatmulShapeErrors() {
        // inner dimensions: [2,3]·[4,5] has K 3 vs 4
        XCTAssertThrowsError(try matmulShape([2, 3], [4, 5], transA: false, transB: false)) { error in
            guard case let .shapeMismatch(op, shapes, reason)? = error as? TensorError else {
                return XCTFail("expected shapeMismatch, got \(error)")
            }
            XCTAssertEqual(op, "matmul")
            XCTAssertEqual(shapes, [[2, 3], [4, 5]])
            XCTAssertTrue(reason.contains("3") && reason.contains("4"), reason)
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("matmul:") && text.contains("[2, 3]") && text.contains("[4, 5]"), text)
        }
        // transposes change which dimensions must agree: [2,3]ᵀ·[2,5]ᵀ has K 2 vs 5
        XCTAssertThrowsError(try matmulShape([2, 3], [2, 5], transA: true, transB: true)) { error in
            XCTAssertTrue("\(error)".contains("[2, 3]") && "\(error)".contains("[2, 5]"), "\(error)")
        }
        // rank 1
        XCTAssertThrowsError(try matmulShape([3], [3, 4], transA: false, transB: false)) { error in
            XCTAssertTrue("\(error)".contains("matmul") && "\(error)".contains("[3]") && "\(error)".contains("[3, 4]"),
                          "\(error)")
        }
        // batch dimensions differ
        XCTAssertThrowsError(try matmulShape([2, 2, 3], [3, 3, 4], transA: false, transB: false)) { error in
            XCTAssertEqual(error as? TensorError,
                           .shapeMismatch(op: "matmul", shapes: [[2, 2, 3], [3, 3, 4]], reason: "batch dimensions differ"))
            XCTAssertTrue("\(error)".contains("[2, 2, 3]") && "\(error)".contains("[3, 3, 4]"), "\(error)")
        }
    }

    // MARK: gradients
    // C = op(A)·op(B):  dop(A) = dC·op(B)ᵀ,  dop(B) = op(A)ᵀ·dC; shared operands sum over the batch.

    func testMatmul2DGradientAllTransposes() {
        for ta in [false, true] { for tb in [false, true] {
            let a = operand(nil, 3, 4, trans: ta, seed: 11), b = operand(nil, 4, 2, trans: tb, seed: 12)
            checkGradients(inputs: [a, b]) { $0[0].matmul($0[1], transA: ta, transB: tb) }
        } }
    }

    func testBatchedMatmulGradientSameBatch() {
        for ta in [false, true] { for tb in [false, true] {
            let a = operand(2, 3, 4, trans: ta, seed: 13), b = operand(2, 4, 2, trans: tb, seed: 14)
            checkGradients(inputs: [a, b]) { $0[0].matmul($0[1], transA: ta, transB: tb) }
        } }
    }

    func testBatchedMatmulGradientSharedRight() {
        for ta in [false, true] { for tb in [false, true] {
            let a = operand(2, 3, 4, trans: ta, seed: 15), b = operand(nil, 4, 2, trans: tb, seed: 16)
            checkGradients(inputs: [a, b]) { $0[0].matmul($0[1], transA: ta, transB: tb) }
        } }
    }

    func testBatchedMatmulGradientSharedLeft() {
        for ta in [false, true] { for tb in [false, true] {
            let a = operand(nil, 3, 4, trans: ta, seed: 17), b = operand(2, 4, 2, trans: tb, seed: 18)
            checkGradients(inputs: [a, b]) { $0[0].matmul($0[1], transA: ta, transB: tb) }
        } }
    }

    func testRank4MatmulGradient() {
        let a = uniform([2, 2, 2, 3], seed: 19), b = uniform([2, 2, 3, 2], seed: 20)
        checkGradients(inputs: [a, b]) { $0[0].matmul($0[1], transB: false) }
        checkGradients(inputs: [a, uniform([3, 2], seed: 21)]) { $0[0].matmul($0[1]) }
    }

    func testMatmulWithItselfGradient() {
        // y = xᵀx  =>  dL/dx = x(W + Wᵀ) for weights W
        checkGradients(inputs: [uniform([3, 2], seed: 22)]) { $0[0].matmul($0[0], transA: true) }
    }
}
