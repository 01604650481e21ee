import XCTest
@testable import DistillTensor

final class NormTests: XCTestCase {
    // MARK: values

    func testRMSNormOf3And4() {
        // x = [3, 4]: mean(x²) = (9 + 16)/2 = 12.5, rms = √12.5 = 3.53553;
        // y = x/rms = [0.84853, 1.13137]; with weight [1, 2]: [0.84853, 2.26274]
        let x = Tensor([3, 4], shape: [1, 2])
        assertValues(x.rmsNorm(weight: Tensor([1, 1]), eps: 0), [0.84852814, 1.13137085], accuracy: 1e-6)
        assertValues(x.rmsNorm(weight: Tensor([1, 2]), eps: 0), [0.84852814, 2.26274170], accuracy: 1e-6)
        // eps enters under the root: √(12.5 + 3.5) = 4 -> [0.75, 1]
        assertValues(x.rmsNorm(weight: Tensor([1, 1]), eps: 3.5), [0.75, 1], accuracy: 1e-6)
        // rows are independent: [[3,4],[6,8]] give the same normalised row
        assertValues(Tensor([3, 4, 6, 8], shape: [2, 2]).rmsNorm(weight: Tensor([1, 1]), eps: 0),
                     [0.84852814, 1.13137085, 0.84852814, 1.13137085], accuracy: 1e-6)
    }

    func testLayerNormValues() {
        // x = [1, 2, 3]: μ = 2, σ² = (1 + 0 + 1)/3 = 2/3 (biased), σ = 0.81650;
        // x̂ = [-1.22474, 0, 1.22474]
        let x = Tensor([1, 2, 3], shape: [1, 3])
        assertValues(x.layerNorm(weight: Tensor([1, 1, 1]), bias: nil, eps: 0), [-1.22474487, 0, 1.22474487],
                     accuracy: 1e-6)
        // weight [2, 1, 0.5], bias [1, 0, -1]: [2·(-1.22474) + 1, 0, 0.5·1.22474 − 1] = [-1.44949, 0, -0.38763]
        assertValues(x.layerNorm(weight: Tensor([2, 1, 0.5]), bias: Tensor([1, 0, -1]), eps: 0),
                     [-1.44948974, 0, -0.38762756], accuracy: 1e-6)
        // a constant row normalises to 0 (σ² = 0, eps keeps the division finite) -> the bias
        assertValues(Tensor([5, 5, 5], shape: [1, 3]).layerNorm(weight: Tensor([1, 1, 1]), bias: Tensor([0, 1, 2]), eps: 1e-5),
                     [0, 1, 2], accuracy: 1e-6)
    }

    func testNormsOnRank3Inputs() {
        // Norms act on the last axis of any rank: [2,2,3] equals the same rows as [4,3].
        let x = uniform([2, 2, 3], seed: 71), w = uniform([3], seed: 72), b = uniform([3], seed: 73)
        assertClose(x.rmsNorm(weight: w, eps: 1e-6), x.reshaped([4, 3]).rmsNorm(weight: w, eps: 1e-6).reshaped([2, 2, 3]))
        assertClose(x.layerNorm(weight: w, bias: b, eps: 1e-5),
                    x.reshaped([4, 3]).layerNorm(weight: w, bias: b, eps: 1e-5).reshaped([2, 2, 3]))
        // against the formula written with primitive ops
        let rms = (x.square().mean(axis: -1, keepDims: true) + 1e-6).rsqrt()
        assertClose(x.rmsNorm(weight: w, eps: 1e-6), x * rms * w, accuracy: 1e-6)
        let mu = x.mean(axis: -1, keepDims: true), c = x - mu
        let ln = c * (c.square().mean(axis: -1, keepDims: true) + 1e-5).rsqrt() * w + b
        assertClose(x.layerNorm(weight: w, bias: b, eps: 1e-5), ln, accuracy: 1e-5)
    }

    // MARK: gradients
    // RMSNorm: dx = r·(g⊙w) − x·r³·Σ(g⊙w⊙x)/d, dw = Σ_rows g⊙x·r
    // LayerNorm: dx = r·(u − mean(u) − x̂·mean(u⊙x̂)) with u = g⊙w, dw = Σ g⊙x̂, db = Σ g

    func testRMSNormGradient() {
        let x = uniform([3, 4], seed: 74), w = uniform([4], 0.5, 1.5, seed: 75)
        checkGradients(inputs: [x, w]) { $0[0].rmsNorm(weight: $0[1], eps: 1e-5) }
        checkGradients(inputs: [uniform([2, 2, 3], seed: 76), uniform([3], seed: 77)]) {
            $0[0].rmsNorm(weight: $0[1], eps: 1e-6)
        }
    }

    func testLayerNormGradientWithBias() {
        let x = uniform([3, 4], seed: 78), w = uniform([4], 0.5, 1.5, seed: 79), b = uniform([4], seed: 80)
        checkGradients(inputs: [x, w, b]) { $0[0].layerNorm(weight: $0[1], bias: $0[2], eps: 1e-5) }
    }

    func testLayerNormGradientWithoutBias() {
        let x = uniform([2, 2, 5], seed: 81), w = uniform([5], 0.5, 1.5, seed: 82)
        checkGradients(inputs: [x, w]) { $0[0].layerNorm(weight: $0[1], bias: nil, eps: 1e-5) }
    }

    func testNormGradientsOnLargerRowsUseThreadedColumnSums() {
        // rows·d ≥ 2·32768 splits the weight-gradient sums into blocks; compare with the same sums
        // written with primitive ops (dw = Σ_rows g⊙x̂).
        let x = uniform([512, 128], seed: 83), w = uniform([128], 0.5, 1.5, seed: 84), g = uniform([512, 128], seed: 85)
        let grads = valueAndGradient(at: [x, w]) { ($0[0].rmsNorm(weight: $0[1], eps: 1e-6) * g).sum() }.gradients
        let xhat = x * (x.square().mean(axis: -1, keepDims: true) + 1e-6).rsqrt()
        assertClose(grads[1], (g * xhat).sum(axis: 0), accuracy: 1e-3)
        let lgrads = valueAndGradient(at: [x, w, w]) { ($0[0].layerNorm(weight: $0[1], bias: $0[2], eps: 1e-5) * g).sum() }.gradients
        assertClose(lgrads[2], g.sum(axis: 0), accuracy: 1e-3)
    }

    /// The weight gradients of the norms (column sums over rows, split into blocks for the threads)
    /// have the same bits with 1, 2 or 3 threads, as the GEMM's sums do: a run's results do not
    /// depend on the machine's core count.
    func testNormWeightGradientsDoNotDependOnTheThreadCount() {
        let x = uniform([1000, 96], seed: 86), w = uniform([96], 0.5, 1.5, seed: 87), g = uniform([1000, 96], seed: 88)
        func grads() -> [[UInt32]] {
            let r = valueAndGradient(at: [x, w]) { ($0[0].rmsNorm(weight: $0[1], eps: 1e-6) * g).sum() }.gradients
            let l = valueAndGradient(at: [x, w, w]) { ($0[0].layerNorm(weight: $0[1], bias: $0[2], eps: 1e-5) * g).sum() }.gradients
            return [r[1], l[1], l[2]].map { $0.scalars.map(\.bitPattern) }
        }
        let saved = Threads.count
        defer { Threads.count = saved }
        Threads.count = 1
        let one = grads()
        for n in [2, 3] {
            Threads.count = n
            let got = grads()
            let differing = zip(got.joined(), one.joined()).filter { $0 != $1 }.count
            XCTAssertEqual(differing, 0, "\(differing) of the weight gradients' values differ with \(n) threads")
        }
    }
}
