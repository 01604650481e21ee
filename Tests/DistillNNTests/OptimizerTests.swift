import CDistillKernels
import DistillNN
import DistillTensor
import XCTest

/// Optimizers against torch.optim (fixture from scripts/make_optimizer_fixture.py).
final class OptimizerTests: XCTestCase {
    func run(_ opt: Optimizer, _ f: [String: Any]) throws -> [[Float]] {
        let p = Parameter(Tensor(try floats(f["p0"])))
        let grads = try XCTUnwrap(f["grads"] as? [[Double]])
        var out: [[Float]] = []
        for g in grads {
            opt.update([("p", p)], gradients: Gradients(names: ["p"], tensors: [Tensor(g.map(Float.init))]))
            out.append(p.value.scalars)
        }
        return out
    }

    func check(_ got: [[Float]], _ expected: Any?, _ label: String) throws {
        let exp = try XCTUnwrap(expected as? [[Double]])
        for (step, (g, e)) in zip(got, exp).enumerated() {
            for (a, b) in zip(g, e) { XCTAssertEqual(a, Float(b), accuracy: 2e-6, "\(label) step \(step + 1)") }
        }
    }

    func testAdamWMatchesPyTorch() throws {
        let f = try loadFixture("optimizer_fixture")
        try check(try run(AdamW(learningRate: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1), f), f["adamw"], "AdamW")
    }

    func testSGDMomentumMatchesPyTorch() throws {
        let f = try loadFixture("optimizer_fixture")
        try check(try run(SGD(learningRate: 0.1, momentum: 0.9, weightDecay: 0.01), f), f["sgd_momentum"], "SGD")
        try check(try run(SGD(learningRate: 0.1, momentum: 0.9, nesterov: true), f), f["sgd_nesterov"], "Nesterov")
    }

    func testClipGradientNormMatchesPyTorch() throws {
        let f = try loadFixture("optimizer_fixture")
        let clip = try XCTUnwrap(f["clip"] as? [String: Any])
        // ‖(3, 4, 0, 12, 0)‖ = 13 → every entry scaled by 1/(13 + 1e-6)
        var g = Gradients(names: ["a", "b"], tensors: [Tensor([3, 4, 0]), Tensor([12, 0])])
        let norm = clipGradientNorm(&g, maxNorm: 1)
        XCTAssertEqual(norm, 13, accuracy: 1e-6)
        XCTAssertEqual(norm, Float(clip["norm"] as! Double), accuracy: 1e-6)
        for (a, b) in zip(g.tensors[0].scalars + g.tensors[1].scalars, try floats(clip["a"]) + floats(clip["b"])) {
            XCTAssertEqual(a, b, accuracy: 1e-7)
        }
        // Tensors of several 2^16-value chunks (summed in parallel): the norm of a Double sum.
        var rng = RandomGenerator(seed: 9)
        let big = [Tensor.randomNormal([200_003], using: &rng), Tensor.randomNormal([70_000], using: &rng)]
        let exact = big.flatMap(\.scalars).reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        var many = Gradients(names: ["x", "y"], tensors: big)
        XCTAssertEqual(Double(clipGradientNorm(&many, maxNorm: .infinity)), exact, accuracy: exact * 1e-7)
        // Below the threshold nothing changes.
        var small = Gradients(names: ["a"], tensors: [Tensor([0.3, 0.4])])
        XCTAssertEqual(clipGradientNorm(&small, maxNorm: 1), 0.5, accuracy: 1e-7)
        XCTAssertEqual(small.tensors[0].scalars, [0.3, 0.4])
    }

    func testSchedules() {
        // constant
        XCTAssertEqual(LearningRateSchedule.constant(0.1).learningRate(at: 1000), 0.1)
        // warm-up: step s < 10 gives peak·(s+1)/10
        let cos = LearningRateSchedule.warmupCosine(peak: 1, warmup: 10, total: 110, floor: 0.1)
        XCTAssertEqual(cos.learningRate(at: 0), 0.1, accuracy: 1e-7)
        XCTAssertEqual(cos.learningRate(at: 9), 1, accuracy: 1e-7)
        // halfway through the decay: floor + (peak − floor)·½(1 + cos(π/2)) = 0.1 + 0.45
        XCTAssertEqual(cos.learningRate(at: 60), 0.55, accuracy: 1e-6)
        XCTAssertEqual(cos.learningRate(at: 110), 0.1, accuracy: 1e-6)
        XCTAssertEqual(cos.learningRate(at: 500), 0.1, accuracy: 1e-6)
        let lin = LearningRateSchedule.warmupLinear(peak: 1, warmup: 0, total: 100, floor: 0)
        XCTAssertEqual(lin.learningRate(at: 25), 0.75, accuracy: 1e-6)
        XCTAssertEqual(lin.learningRate(at: 100), 0, accuracy: 1e-6)
    }

    // MARK: the update kernels (optim.c)

    /// AdamW's vector loop gives the scalar loop's bits (lengths with every tail of 0–7 values,
    /// a gradient scale), and both follow the update within Float rounding of a Double evaluation.
    func testAdamWKernelPathsAgreeWithDoubleReference() {
        var rng = RandomGenerator(seed: 31)
        var k = dk_adamw_step(grad_scale: 0.37, beta1: 0.9, beta2: 0.999, decay: 1 - 1e-3 * 0.01, step_size: 1e-3 / 0.19,
                              inv_sqrt_bc2: 1 / Float(0.002).squareRoot(), eps: 1e-8)
        for n in [1, 7, 8, 9, 15, 16, 17, 100, 1003] {
            let g = Tensor.randomNormal([n], using: &rng).scalars, p0 = Tensor.randomNormal([n], using: &rng).scalars
            let m0 = Tensor.randomNormal([n], using: &rng).scalars.map { $0 * 0.1 }
            let v0 = Tensor.randomNormal([n], using: &rng).scalars.map { $0 * $0 * 0.01 }
            var fast = (m: [Float](repeating: .nan, count: n), v: [Float](repeating: .nan, count: n), p: [Float](repeating: .nan, count: n))
            var slow = fast
            dk_adamw(n, g, m0, v0, p0, &k, &fast.m, &fast.v, &fast.p, 0)
            dk_adamw(n, g, m0, v0, p0, &k, &slow.m, &slow.v, &slow.p, 1)
            XCTAssertEqual(fast.m.map(\.bitPattern), slow.m.map(\.bitPattern), "n \(n)")
            XCTAssertEqual(fast.v.map(\.bitPattern), slow.v.map(\.bitPattern), "n \(n)")
            XCTAssertEqual(fast.p.map(\.bitPattern), slow.p.map(\.bitPattern), "n \(n)")
            for i in 0..<n {
                let gi = Double(g[i]) * Double(k.grad_scale)
                let m = Double(k.beta1) * Double(m0[i]) + (1 - Double(k.beta1)) * gi
                let v = Double(k.beta2) * Double(v0[i]) + (1 - Double(k.beta2)) * gi * gi
                let p = Double(p0[i]) * Double(k.decay) - Double(k.step_size) * m / (v.squareRoot() * Double(k.inv_sqrt_bc2) + Double(k.eps))
                XCTAssertEqual(Double(fast.m[i]), m, accuracy: 1e-6 * (abs(m) + abs(gi)))
                XCTAssertEqual(Double(fast.v[i]), v, accuracy: 1e-6 * (abs(v) + gi * gi))
                XCTAssertEqual(Double(fast.p[i]), p, accuracy: 1e-5 * (abs(p) + abs(p - Double(p0[i]))))
            }
        }
    }

    /// The sum of squares is the same Double with the vector loop or the scalar one, and agrees
    /// with a sequential Double sum within both sums' rounding.
    func testSumOfSquaresPathsAgree() {
        var rng = RandomGenerator(seed: 32)
        for n in [0, 1, 15, 16, 17, 31, 33, 1000, 65_536] {
            let x = Tensor.randomNormal([Swift.max(n, 1)], using: &rng).scalars
            let fast = dk_sum_squares(x, n, 0), slow = dk_sum_squares(x, n, 1)
            XCTAssertEqual(fast.bitPattern, slow.bitPattern, "n \(n)")
            let exact = x.prefix(n).reduce(0.0) { $0 + Double($1) * Double($1) }
            // Both sums' rounding error is at most n·u of the (positive) total, u = 2⁻⁵³.
            XCTAssertEqual(fast, exact, accuracy: exact * Double(2 * n) * 0x1p-53, "n \(n)")
        }
    }

    /// Clipping folded into the update (the trainer's path) changes nothing: the same parameters
    /// and moments, to the bit, as clipping the gradients and then updating.
    func testAdamWWithClipScaleMatchesClippedGradients() {
        var rng = RandomGenerator(seed: 33)
        let shapes = [[37, 5], [1003]]
        let start = shapes.map { Tensor.randomNormal($0, using: &rng) }
        let steps = (0..<3).map { _ in shapes.map { Tensor.randomNormal($0, using: &rng) * 4 } }
        func train(folded: Bool) -> ([Float], [Float]) {
            let params = start.enumerated().map { ("w\($0.offset)", Parameter($0.element.copy())) }
            let opt = AdamW(learningRate: 0.01, weightDecay: 0.1)
            for g in steps {
                var grads = Gradients(names: params.map(\.0), tensors: g)
                if folded {
                    let norm = globalNorm(grads)
                    XCTAssertLessThan(clipCoefficient(norm: norm, maxNorm: 1), 1)
                    opt.update(params.map { (name: $0.0, parameter: $0.1) }, gradients: grads, scale: clipCoefficient(norm: norm, maxNorm: 1))
                } else {
                    clipGradientNorm(&grads, maxNorm: 1)
                    opt.update(params.map { (name: $0.0, parameter: $0.1) }, gradients: grads)
                }
            }
            return (params.flatMap { $0.1.value.scalars }, params.flatMap { opt.moments[$0.0]!.v.scalars })
        }
        let a = train(folded: true), b = train(folded: false)
        XCTAssertEqual(a.0.map(\.bitPattern), b.0.map(\.bitPattern))
        XCTAssertEqual(a.1.map(\.bitPattern), b.1.map(\.bitPattern))
        XCTAssertNotEqual(a.0, start.flatMap(\.scalars))
    }
}
