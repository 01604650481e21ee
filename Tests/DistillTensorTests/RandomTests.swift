import XCTest
@testable import DistillTensor

final class RandomTests: XCTestCase {
    func testSameSeedSameSequence() {
        var a = RandomGenerator(seed: 42), b = RandomGenerator(seed: 42), c = RandomGenerator(seed: 43)
        let sa = (0..<8).map { _ in a.next() }, sb = (0..<8).map { _ in b.next() }, sc = (0..<8).map { _ in c.next() }
        XCTAssertEqual(sa, sb)
        XCTAssertNotEqual(sa, sc)
    }

    func testUniformAndNormalMoments() {
        var rng = RandomGenerator(seed: 1)
        let u = Tensor.randomUniform([10_000], low: 2, high: 4, using: &rng)
        XCTAssertTrue(u.scalars.allSatisfy { $0 >= 2 && $0 < 4 })
        // mean of U(2,4) = 3; standard error of the mean √(1/3)/100 ≈ 0.006
        XCTAssertEqual(u.mean().item, 3, accuracy: 0.03)
        let n = Tensor.randomNormal([10_000], mean: 1, std: 2, using: &rng)
        // mean 1 (standard error 0.02), variance 4 (standard error ≈ 4·√(2/10⁴) ≈ 0.06)
        XCTAssertEqual(n.mean().item, 1, accuracy: 0.1)
        XCTAssertEqual((n - 1).square().mean().item, 4, accuracy: 0.3)
    }

    // MARK: dropout

    func testDropoutZeroesAndScales() {
        // p = 0.25: kept entries become x/(1 − p) = x·4/3, dropped ones 0; about 3/4 are kept.
        var rng = RandomGenerator(seed: 5)
        let x = Tensor(ones: [4000])
        let y = x.dropout(p: 0.25, using: &rng)
        let kept = y.scalars.filter { $0 != 0 }
        XCTAssertTrue(kept.allSatisfy { Swift.abs($0 - 4.0 / 3) < 1e-6 })
        XCTAssertEqual(Double(kept.count) / 4000, 0.75, accuracy: 0.03)
        // p = 0 is the identity
        var rng2 = RandomGenerator(seed: 5)
        assertClose(x.dropout(p: 0, using: &rng2), x, accuracy: 0)
    }

    func testDropoutIsDeterministicPerSeed() {
        let x = uniform([64], seed: 151)
        var r1 = RandomGenerator(seed: 9), r2 = RandomGenerator(seed: 9)
        assertClose(x.dropout(p: 0.5, using: &r1), x.dropout(p: 0.5, using: &r2), accuracy: 0)
    }

    func testDropoutGradientEqualsMask() {
        // y = x ⊙ mask  =>  dy/dx = mask, where mask ∈ {0, 1/(1−p)}; with the same seed the mask is y/x.
        let x = awayFromZero([3, 5], seed: 152)
        var rng = RandomGenerator(seed: 11)
        let (y, g) = valueAndGradient(at: [x]) { $0[0].dropout(p: 0.4, using: &rng) }
        let mask = zip(y.scalars, x.scalars).map { $0 / $1 }
        assertValues(g[0], mask, accuracy: 1e-6)
        XCTAssertTrue(g[0].scalars.allSatisfy { $0 == 0 || Swift.abs($0 - 1 / 0.6) < 1e-6 })
        XCTAssertTrue(g[0].scalars.contains(0))
        // finite differences with the same seed in every evaluation (so the mask is fixed)
        checkGradients(inputs: [x]) { xs in
            var r = RandomGenerator(seed: 11)
            return xs[0].dropout(p: 0.4, using: &r)
        }
    }
}
