import XCTest
@testable import DistillTensor

final class ReduceTests: XCTestCase {
    /// [[[0,1,2],[3,4,5]], [[6,7,8],[9,10,11]]], shape [2,2,3].
    private let x = Tensor((0..<12).map(Float.init), shape: [2, 2, 3])

    // MARK: sum and mean values

    func testSumValues() {
        // all: 0+1+…+11 = 66
        assertValues(x.sum(), [66], shape: [])
        // axis 0: x[0]+x[1] = [[6,8,10],[12,14,16]]
        assertValues(x.sum(axis: 0), [6, 8, 10, 12, 14, 16], shape: [2, 3])
        // axis 1 (middle): [[0+3,1+4,2+5],[6+9,7+10,8+11]]
        assertValues(x.sum(axis: 1), [3, 5, 7, 15, 17, 19], shape: [2, 3])
        // axis -1: row sums [3,12,21,30], kept as [2,2,1]
        assertValues(x.sum(axis: -1, keepDims: true), [3, 12, 21, 30], shape: [2, 2, 1])
        // axes [0,2]: [0+1+2+6+7+8, 3+4+5+9+10+11] = [24, 42]
        assertValues(x.sum(axes: [0, 2]), [24, 42], shape: [2])
        assertValues(x.sum(axes: [2, 0], keepDims: true), [24, 42], shape: [1, 2, 1])
        assertValues(x.sum(axes: [], keepDims: true), [66], shape: [1, 1, 1])
    }

    func testSumOfLongRowUsesAllElements() {
        // 1 + 2 + … + 1001 = 1001·1002/2 = 501501 (exercises the 4-way unrolled path and its tail)
        let r = Tensor((1...1001).map(Float.init))
        XCTAssertEqual(r.sum().item, 501_501)
    }

    func testMeanValues() {
        // mean of 0…11 = 5.5; axis 1: [[1.5,2.5,3.5],[7.5,8.5,9.5]]; axes [0,1]: [4.5,5.5,6.5]
        assertValues(x.mean(), [5.5], shape: [])
        assertValues(x.mean(axis: 1), [1.5, 2.5, 3.5, 7.5, 8.5, 9.5], shape: [2, 3])
        assertValues(x.mean(axes: [0, 1], keepDims: true), [4.5, 5.5, 6.5], shape: [1, 1, 3])
    }

    // MARK: max and logSumExp values

    func testMaxValues() {
        let m = Tensor([3, -1, 7, 2, 9, 0], shape: [2, 3])
        assertValues(m.max(axis: 1), [7, 9], shape: [2])
        assertValues(m.max(axis: 0), [3, 9, 7], shape: [3])
        assertValues(m.max(axis: -1, keepDims: true), [7, 9], shape: [2, 1])
        assertValues(x.max(axis: 1), [3, 4, 5, 9, 10, 11], shape: [2, 3])
    }

    func testMaxGradientGoesToFirstMaximum() {
        // max([1, 5, 5, 2]) = 5; the gradient flows to index 1 only (the first maximum).
        let g = gradient(at: Tensor([1, 5, 5, 2])) { $0.max(axis: 0) }
        assertValues(g, [0, 1, 0, 0])
    }

    func testMaxPropagatesNaN() {
        XCTAssertTrue(Tensor([1, .nan, 3]).max(axis: 0).item.isNaN)
    }

    func testLogSumExpValues() {
        // log(e¹ + e² + e³) = 3 + log(1 + e⁻¹ + e⁻²) = 3.40761
        assertValues(Tensor([1, 2, 3]).logSumExp(axis: 0), [3.40760596], shape: [], accuracy: 1e-5)
        // Stability: log(e¹⁰⁰⁰ + e¹⁰⁰⁰) = 1000 + ln 2 = 1000.69315 (e¹⁰⁰⁰ overflows Float; the max is
        // subtracted first). Float spacing at 1000 is 6e-5.
        assertValues(Tensor([1000, 1000]).logSumExp(axis: 0), [1000.6931472], accuracy: 1.2e-4)
        // Large negative values do not underflow to log 0: -1000 + ln 2.
        assertValues(Tensor([-1000, -1000]).logSumExp(axis: 0), [-999.3068528], accuracy: 1.2e-4)
        // -∞ entries contribute e^-∞ = 0: log(e⁰ + 0) = 0
        assertValues(Tensor([0, -.infinity]).logSumExp(axis: 0), [0])
        // m = [[0, ln 3], [0, ln 3]]: down columns log(2e⁰) = ln 2, log(2·3) = ln 6; along rows log(1 + 3) = ln 4
        let m = Tensor([0, Float(Foundation.log(3.0)), 0, Float(Foundation.log(3.0))], shape: [2, 2])
        assertValues(m.logSumExp(axis: 0), [0.69314718, 1.79175947], shape: [2], accuracy: 1e-6)
        assertValues(m.logSumExp(axis: 1, keepDims: true), [1.38629436, 1.38629436], shape: [2, 1], accuracy: 1e-6)
    }

    // MARK: gradients

    private let a = uniform([2, 3, 4], seed: 21)

    // d/dx Σ x = 1 broadcast back over the reduced axes
    func testSumGradient() {
        checkGradients(inputs: [a]) { $0[0].sum() }
        checkGradients(inputs: [a]) { $0[0].sum(axis: 1) }
        checkGradients(inputs: [a]) { $0[0].sum(axis: -1, keepDims: true) }
        checkGradients(inputs: [a]) { $0[0].sum(axes: [0, 2]) }
        checkGradients(inputs: [a]) { $0[0].sum(axes: [0, 1], keepDims: true) }
    }

    // d/dx mean = 1/n
    func testMeanGradient() {
        checkGradients(inputs: [a]) { $0[0].mean() }
        checkGradients(inputs: [a]) { $0[0].mean(axis: 0) }
        checkGradients(inputs: [a]) { $0[0].mean(axes: [1, 2], keepDims: true) }
    }

    // d/dx max = one-hot at the argmax (values are distinct and 0.1 apart, so eps = 1e-2 never swaps them)
    func testMaxGradient() {
        let d = distinct([2, 3, 4], seed: 22)
        checkGradients(inputs: [d]) { $0[0].max(axis: 0) }
        checkGradients(inputs: [d]) { $0[0].max(axis: 1) }
        checkGradients(inputs: [d]) { $0[0].max(axis: -1, keepDims: true) }
    }

    // d/dx log Σ eˣ = softmax(x)
    func testLogSumExpGradient() {
        checkGradients(inputs: [a]) { $0[0].logSumExp(axis: -1) }
        checkGradients(inputs: [a]) { $0[0].logSumExp(axis: 1, keepDims: true) }
        checkGradients(inputs: [a]) { $0[0].logSumExp(axis: 0) }
    }
}
