import XCTest
@testable import DistillTensor

/// `Tensor.withPrecomputedGradients`: a scalar whose input gradients the caller supplies.
final class PrecomputedGradientTests: XCTestCase {
    /// f(x, y) = Σ x²·y_i... here f(x, y) = Σᵢ xᵢ² + 3·Σ y  =>  ∂f/∂x = 2x, ∂f/∂y = 3, computed by
    /// hand and handed over; autodiff must reproduce finite differences of f.
    func precomputed(_ xs: [Tensor]) -> Tensor {
        let x = xs[0], y = xs[1]
        let (value, gx, gy) = withoutGradients { () -> (Tensor, Tensor, Tensor) in
            let v = x.square().sum() + y.sum() * 3
            return (v, x * 2, Tensor(repeating: 3, shape: y.shape))
        }
        return Tensor.withPrecomputedGradients(of: value, inputs: [x, y], gradients: [gx, gy])
    }

    func testFiniteDifferences() {
        let x = uniform([2, 3], seed: 1), y = uniform([4], seed: 2)
        checkGradients(inputs: [x, y]) { precomputed($0) }
        // Inside a larger graph: (f·f + 2f) scales the stored gradients by 2f + 2.
        checkGradients(inputs: [x, y]) { xs in let f = precomputed(xs); return f * f + f * 2 }
    }

    func testValueAndRecording() {
        let x = uniform([3], seed: 3)
        let v = precomputed([x.requiringGrad(), Tensor(zeros: [1])])
        XCTAssertTrue(v.requiresGrad)
        XCTAssertEqual(v.item, x.scalars.reduce(0) { $0 + $1 * $1 }, accuracy: 1e-6)
        // Recording off, or no input that needs a gradient: a plain value.
        XCTAssertFalse(withoutGradients { precomputed([x.requiringGrad(), Tensor(zeros: [1])]) }.requiresGrad)
        XCTAssertFalse(precomputed([x, Tensor(zeros: [1])]).requiresGrad)
        // An input that needs no gradient gets none; the other gets its stored gradient exactly.
        let leaf = x.requiringGrad()
        let g = gradients(of: precomputed([leaf, Tensor(zeros: [2])]), wrt: [leaf])
        XCTAssertEqual(g[0].scalars, (x * 2).scalars)
    }
}
