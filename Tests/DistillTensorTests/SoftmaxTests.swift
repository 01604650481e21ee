import XCTest
@testable import DistillTensor

final class SoftmaxTests: XCTestCase {
    func testSoftmaxValues() {
        // softmax([1,2,3]) = [e¹,e²,e³]/Σ = [0.0900, 0.2447, 0.6652]
        assertValues(Tensor([1, 2, 3]).softmax(), [0.09003057, 0.24472847, 0.66524096], accuracy: 1e-6)
        // Shift invariance and stability: softmax([1001,1002,1003]) is the same (no overflow).
        assertValues(Tensor([1001, 1002, 1003]).softmax(), [0.09003057, 0.24472847, 0.66524096], accuracy: 1e-6)
        // Rows are independent: [[0,0],[0,ln 3]] -> [[½,½],[¼,¾]]
        assertValues(Tensor([0, 0, 0, Float(Foundation.log(3.0))], shape: [2, 2]).softmax(), [0.5, 0.5, 0.25, 0.75],
                     accuracy: 1e-6)
    }

    func testSoftmaxWithMinusInfinity() {
        // softmax([0, -∞, 0]) = [e⁰, 0, e⁰]/2 = [½, 0, ½]: a masked entry gets exactly 0.
        let p = Tensor([0, -.infinity, 0]).softmax()
        assertValues(p, [0.5, 0, 0.5])
        XCTAssertEqual(p.scalars[1], 0)
        // log-softmax of the same row: [-ln 2, -∞, -ln 2]
        let lp = Tensor([0, -.infinity, 0]).logSoftmax()
        XCTAssertEqual(lp.scalars[0], -0.6931472, accuracy: 1e-6)
        XCTAssertEqual(lp.scalars[1], -.infinity)
        XCTAssertEqual(lp.scalars[2], -0.6931472, accuracy: 1e-6)
    }

    func testLogSoftmaxValues() {
        // logSoftmax(x) = x − logΣeˣ: [1,2,3] − 3.40761 = [-2.40761, -1.40761, -0.40761]
        assertValues(Tensor([1, 2, 3]).logSoftmax(), [-2.40760596, -1.40760596, -0.40760596], accuracy: 1e-6)
        // large logits: [1000, 1000] -> [-ln 2, -ln 2]
        assertValues(Tensor([1000, 1000]).logSoftmax(), [-0.69314718, -0.69314718], accuracy: 1e-6)
    }

    func testSoftmaxMiddleAxis() {
        // softmax over axis 1 of [2,2,2]: pairs (x[b,0,k], x[b,1,k]).
        // x[0,:,0] = [0, ln 3] -> [¼, ¾]; x[0,:,1] = [1, 1] -> [½, ½]; batch 1 is [0,0],[0,0] -> ½.
        let l3 = Float(Foundation.log(3.0))
        let x = Tensor([0, 1, l3, 1, 0, 0, 0, 0], shape: [2, 2, 2])
        assertValues(x.softmax(axis: 1), [0.25, 0.5, 0.75, 0.5, 0.5, 0.5, 0.5, 0.5], shape: [2, 2, 2], accuracy: 1e-6)
        assertValues(x.logSoftmax(axis: 1), [0.25, 0.5, 0.75, 0.5, 0.5, 0.5, 0.5, 0.5].map { Foundation.log($0) },
                     shape: [2, 2, 2], accuracy: 1e-6)
        // Same as moving the axis last by hand.
        let y = uniform([2, 3, 4], seed: 31)
        assertClose(y.softmax(axis: 1), y.transposed(1, 2).softmax().transposed(1, 2), accuracy: 1e-7)
    }

    func testSoftmaxRowsSumToOne() {
        let p = uniform([5, 7], -5, 5, seed: 32).softmax()
        assertValues(p.sum(axis: -1), [Float](repeating: 1, count: 5), accuracy: 1e-6)
    }

    // MARK: gradients
    // softmax: dx = y ⊙ (g − Σ g⊙y);  logSoftmax: dx = g − softmax·Σ g

    private let x = uniform([2, 3, 4], -2, 2, seed: 33)

    func testSoftmaxGradientLastAxis() {
        checkGradients(inputs: [x]) { $0[0].softmax() }
    }

    func testSoftmaxGradientMiddleAxis() {
        checkGradients(inputs: [x]) { $0[0].softmax(axis: 1) }
        checkGradients(inputs: [x]) { $0[0].softmax(axis: 0) }
    }

    func testLogSoftmaxGradientLastAxis() {
        checkGradients(inputs: [x]) { $0[0].logSoftmax(axis: -1) }
    }

    func testLogSoftmaxGradientMiddleAxis() {
        checkGradients(inputs: [x]) { $0[0].logSoftmax(axis: 1) }
    }

    func testSoftmaxGradientWithMaskedEntry() {
        // A -∞ added to one entry: that entry gets probability 0 and gradient 0.
        let mask = Tensor([0, -.infinity, 0, 0, 0, 0], shape: [2, 3])
        let v = uniform([2, 3], seed: 34)
        checkGradients(inputs: [v]) { ($0[0] + mask).softmax() }
        let g = gradient(at: v) { (($0 + mask).softmax() * Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])).sum() }
        XCTAssertEqual(g[0, 1], 0)
    }
}
