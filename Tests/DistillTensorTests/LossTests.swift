import XCTest
@testable import DistillTensor

final class LossTests: XCTestCase {
    private let ln2: Float = 0.69314718, ln3: Float = 1.09861229, ln6: Float = 1.79175947

    func testCrossEntropyByHand() {
        // logits [0, ln 2, ln 3] -> p = [1, 2, 3]/6. Target 2: −log p₂ = −log ½ = ln 2 = 0.693147.
        let logits = Tensor([0, ln2, ln3], shape: [1, 3])
        XCTAssertEqual(logits.crossEntropy(targets: [2]).item, ln2, accuracy: 1e-6)
        // Target 0: −log(1/6) = ln 6
        XCTAssertEqual(logits.crossEntropy(targets: [0]).item, ln6, accuracy: 1e-6)
        // Mean over rows: (ln 2 + ln 6)/2
        let two = Tensor([0, ln2, ln3, 0, ln2, ln3], shape: [2, 3])
        XCTAssertEqual(two.crossEntropy(targets: [2, 0]).item, (ln2 + ln6) / 2, accuracy: 1e-6)
    }

    func testCrossEntropyWithLabelSmoothingByHand() {
        // ε = 0.3, V = 3: target distribution (1−ε)·onehot + ε/V, so
        //   loss = (1−ε)·(−log p_t) + ε·mean_j(−log p_j)
        // with p = [1, 2, 3]/6 and t = 2:
        //   −log p = [ln 6, ln 3, ln 2] = [1.791759, 1.098612, 0.693147], mean = 1.194506
        //   loss = 0.7·0.693147 + 0.3·1.194506 = 0.485203 + 0.358352 = 0.843555
        let logits = Tensor([0, ln2, ln3], shape: [1, 3])
        XCTAssertEqual(logits.crossEntropy(targets: [2], labelSmoothing: 0.3).item, 0.84355492, accuracy: 1e-6)
        // ε = 1: the target is uniform, loss = mean_j(−log p_j) = 1.194506
        XCTAssertEqual(logits.crossEntropy(targets: [2], labelSmoothing: 1).item, 1.19450631, accuracy: 1e-6)
    }

    func testCrossEntropyIgnoresRows() {
        // Row 1 is ignored (target -100): the mean runs over rows 0 and 2 only: (ln 2 + ln 6)/2.
        let logits = Tensor([0, ln2, ln3, 5, -3, 2, 0, ln2, ln3], shape: [3, 3])
        XCTAssertEqual(logits.crossEntropy(targets: [2, -100, 0]).item, (ln2 + ln6) / 2, accuracy: 1e-6)
        // A custom ignore index
        XCTAssertEqual(logits.crossEntropy(targets: [2, 7, 0], ignoreIndex: 7).item, (ln2 + ln6) / 2, accuracy: 1e-6)
        // All rows ignored: 0 and a zero gradient.
        let (value, grads) = valueAndGradient(at: [logits]) { $0[0].crossEntropy(targets: [-100, -100, -100]) }
        XCTAssertEqual(value.item, 0)
        XCTAssertEqual(grads[0].scalars, [Float](repeating: 0, count: 9))
    }

    func testCrossEntropyGradientByHand() {
        // dL/dlogits = (softmax − onehot)/rows: p = [1,2,3]/6, t = 2 -> [1/6, 1/3, ½ − 1] = [0.16667, 0.33333, -0.5]
        let g = gradient(at: Tensor([0, ln2, ln3], shape: [1, 3])) { $0.crossEntropy(targets: [2]) }
        assertValues(g, [1.0 / 6, 1.0 / 3, -0.5], accuracy: 1e-6)
        // with ε = 0.3: softmax − (0.7·onehot + 0.1) = [0.06667, 0.23333, -0.3]
        let gs = gradient(at: Tensor([0, ln2, ln3], shape: [1, 3])) { $0.crossEntropy(targets: [2], labelSmoothing: 0.3) }
        assertValues(gs, [1.0 / 6 - 0.1, 1.0 / 3 - 0.1, 0.5 - 0.8], accuracy: 1e-6)
    }

    func testCrossEntropyLargeLogitsAreStable() {
        // logits [1000, 1000]: p = ½ each, loss ln 2 (no overflow)
        XCTAssertEqual(Tensor([1000, 1000], shape: [1, 2]).crossEntropy(targets: [1]).item, ln2, accuracy: 1e-4)
    }

    func testCrossEntropyMatchesLogSoftmax() {
        // −mean_rows logSoftmax(x)[t]
        let x = uniform([4, 5], -3, 3, seed: 141)
        let targets = [1, 4, 0, 2]
        let lp = x.logSoftmax()
        let ref = -(0..<4).map { lp[$0, targets[$0]] }.reduce(0, +) / 4
        XCTAssertEqual(x.crossEntropy(targets: targets).item, ref, accuracy: 1e-5)
    }

    // MARK: gradients: dL/dx = (softmax − ((1−ε)·onehot + ε/V))/count on counted rows, 0 on ignored ones

    func testCrossEntropyGradient() {
        let x = uniform([4, 5], -2, 2, seed: 142)
        checkGradients(inputs: [x]) { $0[0].crossEntropy(targets: [1, 4, 0, 2]) }
    }

    func testCrossEntropyGradientIgnoreIndexAndSmoothing() {
        let x = uniform([4, 5], -2, 2, seed: 143)
        checkGradients(inputs: [x]) { $0[0].crossEntropy(targets: [1, -100, 4, 0], labelSmoothing: 0.1) }
        // rank 3 logits [B, T, V]
        checkGradients(inputs: [uniform([2, 2, 3], -2, 2, seed: 144)]) {
            $0[0].crossEntropy(targets: [2, 0, -1, 1], ignoreIndex: -1, labelSmoothing: 0.25)
        }
    }

    func testCrossEntropyGradientWithUpstreamScale() {
        // The incoming gradient scales the rule: d(3·L)/dx = 3·dL/dx
        checkGradients(inputs: [uniform([3, 4], -2, 2, seed: 145)]) { $0[0].crossEntropy(targets: [3, 1, 0]) * 3 }
    }
}
