import XCTest
@testable import DistillTensor

final class AutodiffTests: XCTestCase {
    func testTensorUsedTwiceAccumulates() {
        // y = x·x + x  =>  dy/dx = 2x + 1
        let x = Tensor([-1.5, 0, 2, 3])
        let g = gradient(at: x) { x in (x * x + x).sum() }
        assertValues(g, [-2, 1, 5, 7])
    }

    /// `onReady` hears each gradient once, as soon as it is final (a layer's weight before the
    /// earlier layer's, since the backward pass reaches it first), with the values returned; a
    /// tensor the output does not depend on is reported as zeros at the end.
    func testGradientsReportedWhenFinal() {
        let w1 = Tensor([0.5, -1, 2, 0.25], shape: [2, 2]).requiringGrad()
        let w2 = Tensor([1, 2, -0.5, 3], shape: [2, 2]).requiringGrad()
        let unused = Tensor([1, 1]).requiringGrad()
        let x = Tensor([1, 2, 3, 4], shape: [2, 2])
        let y = (x.matmul(w1).tanh().matmul(w2)).square().sum()
        var heard: [(Int, [Float])] = []
        let grads = gradients(of: y, wrt: [w1, w2, unused, w1]) { i, g in heard.append((i, g.scalars)) }
        XCTAssertEqual(heard.map(\.0), [1, 0, 3, 2])
        for (i, values) in heard { XCTAssertEqual(values, grads[i].scalars, "\(i)") }
        XCTAssertEqual(heard.last?.1, [0, 0])
        XCTAssertEqual(grads[0].scalars, gradients(of: y, wrt: [w1])[0].scalars)
    }

    func testSquarePlusFiveX() {
        // y = x² + 5x  =>  dy/dx = 2x + 5
        let g = gradient(at: Tensor([1, -2])) { ($0.square() + 5 * $0).sum() }
        assertValues(g, [7, 1])
    }

    func testChainRule() {
        // y = exp(2x)  =>  dy/dx = 2·exp(2x); at x = 0.5: 2e = 5.43656
        let g = gradient(at: Tensor([0.5])) { ($0 * 2).exp().sum() }
        assertValues(g, [5.43656366], accuracy: 1e-5)
    }

    func testGradientWithRespectToIntermediate() {
        // h = 3x, z = Σ h²  =>  dz/dh = 2h = 6x, dz/dx = 18x
        let x = Tensor([1, -2, 0.5]).requiringGrad()
        let h = x * 3
        let z = h.square().sum()
        let grads = gradients(of: z, wrt: [h, x])
        assertValues(grads[0], [6, -12, 3])
        assertValues(grads[1], [18, -36, 9])
        // asking only for the intermediate works too
        assertValues(gradients(of: z, wrt: [h])[0], [6, -12, 3])
    }

    func testIntermediateUsedTwice() {
        // h = x + 1, z = Σ (h·h + h)  =>  dz/dh = 2h + 1, dz/dx = 2h + 1
        let x = Tensor([0, 1]).requiringGrad()
        let h = x + 1
        let z = (h * h + h).sum()
        let grads = gradients(of: z, wrt: [h, x])
        assertValues(grads[0], [3, 5])
        assertValues(grads[1], [3, 5])
    }

    func testWithoutGradientsRecordsNothing() {
        let x = Tensor([1, 2]).requiringGrad()
        let y = withoutGradients { (x * x).exp().sum() }
        XCTAssertFalse(y.requiresGrad)
        XCTAssertTrue(GradientMode.isEnabled, "mode restored after the block")
        XCTAssertTrue((x * x).requiresGrad)
        // Nested use and return values pass through.
        let v: Int = withoutGradients { withoutGradients { GradientMode.isEnabled ? 1 : 0 } }
        XCTAssertEqual(v, 0)
        // Every kind of op obeys it.
        withoutGradients {
            let w = Tensor([0.5, 0.5]).requiringGrad()
            XCTAssertFalse(x.reshaped([1, 2]).matmul(w.reshaped([2, 1])).requiresGrad)
            XCTAssertFalse(x.reshaped([1, 2]).softmax().requiresGrad)
            XCTAssertFalse(x.rmsNorm(weight: w, eps: 1e-6).requiresGrad)
            XCTAssertFalse(concat([x, w], axis: 0).requiresGrad)
        }
    }

    func testConstantsDoNotRecord() {
        // Ops on tensors that do not require gradients carry no node.
        let a = Tensor([1, 2]), b = Tensor([3, 4])
        XCTAssertFalse((a * b).requiresGrad)
        XCTAssertTrue((a.requiringGrad() * b).requiresGrad)
        // The gradient of a constant output is zeros.
        let g = gradients(of: a * b, wrt: [a])
        assertValues(g[0], [0, 0])
    }

    func testUnusedLeafGetsZeros() {
        // z depends on x only: the gradient for y is zeros of y's shape.
        let (value, grads) = valueAndGradient(at: [Tensor([1, 2]), Tensor(ones: [2, 3])]) { $0[0].square().sum() }
        XCTAssertEqual(value.item, 5)
        assertValues(grads[0], [2, 4])
        assertValues(grads[1], [0, 0, 0, 0, 0, 0], shape: [2, 3])
        XCTAssertFalse(value.requiresGrad)
    }

    func testSeedAndNonScalarOutput() {
        // Non-scalar output with the default seed of ones: the output is treated as summed.
        let x = Tensor([1, 2, 3]).requiringGrad()
        let y = x * x
        assertValues(gradients(of: y, wrt: [x])[0], [2, 4, 6])
        // An explicit seed s: dΣ(s⊙x²)/dx = 2x⊙s
        assertValues(gradients(of: y, wrt: [x], seed: Tensor([1, 0, -1]))[0], [2, 0, -6])
    }

    func testGradientOfLeafItself() {
        // d x/dx with seed ones = ones
        let x = Tensor([4, 5]).requiringGrad()
        assertValues(gradients(of: x, wrt: [x])[0], [1, 1])
    }

    func testDiamondGraph() {
        // a = 2x, b = x², y = Σ a·b = Σ 2x³  =>  dy/dx = 6x²
        let g = gradient(at: Tensor([1, -2])) { x in ((x * 2) * x.square()).sum() }
        assertValues(g, [6, 24])
    }

    func testLongChain() {
        // y = x + 1 + 1 + … (2000 times)  =>  dy/dx = 1. The graph walk is iterative, so depth is no problem.
        let g = gradient(at: Tensor([0.5])) { x in
            var y = x
            for _ in 0..<2000 { y = y + 1 }
            return y.sum()
        }
        assertValues(g, [1])
    }

    func testGradientsDoNotMutateInputs() {
        // Computing gradients never writes into the tensors involved.
        let x = Tensor([1, 2, 3]), before = x.scalars
        _ = valueAndGradient(at: [x, x]) { ($0[0] * $0[1] + $0[0]).sum() }
        XCTAssertEqual(x.scalars, before)
    }
}

/// The gradient checker itself must catch a wrong gradient.
final class GradientCheckTests: XCTestCase {
    func testCheckerAcceptsCorrectGradient() {
        XCTAssertEqual(gradientMismatches(inputs: [uniform([3], seed: 1)]) { $0[0].square() }, [])
    }

    func testCheckerRejectsWrongGradient() {
        // f(x) = x² + x where the "+ x" term is hidden from autodiff: the analytic gradient is 2x, the
        // true one 2x + 1, so every element must be reported with input index, element and both values.
        let x = Tensor([0.5, -1, 2])
        let failures = gradientMismatches(inputs: [Tensor(scalar: 1), x]) { xs in
            xs[1].square() + Tensor(shape: [3], storage: xs[1].storage)
        }
        XCTAssertEqual(failures.count, 3, "\(failures)")
        XCTAssertTrue(failures.allSatisfy { $0.contains("input 1") && $0.contains("analytic") && $0.contains("numeric") },
                      "\(failures)")
        XCTAssertTrue(failures[0].contains("element 0"), failures[0])
    }

    func testCheckerRejectsSmallScaleError() {
        // A rule off by 20% is caught even though the difference is small in absolute terms.
        let x = uniform([4], 0.5, 1, seed: 2)
        let failures = gradientMismatches(inputs: [x]) { xs in
            // y = 1.2·x·c with the 0.2 part detached: analytic gradient 1·c instead of 1.2·c
            let c: Float = 1e-3
            return xs[0] * c + xs[0].detached() * (0.2 * c)
        }
        XCTAssertEqual(failures.count, 4, "\(failures)")
    }
}
