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
}
