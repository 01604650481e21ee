import XCTest
@testable import DistillTensor

final class SwiGLUTests: XCTestCase {
    // d/dgate silu(gate)·up = σ(1 + gate(1 − σ))·up, d/dup = silu(gate)
    func testSwiGLUGradient() {
        let gate = awayFromZero([3, 5], seed: 31), up = awayFromZero([3, 5], seed: 32)
        checkGradients(inputs: [gate, up]) { $0[0].swiglu($0[1]) }
    }

    /// The fused op gives silu(gate)·up's values and gradients to the bit: lengths with a scalar
    /// tail (not a multiple of 8) and past one parallel chunk (2^14), large and small gates.
    func testSwiGLUMatchesSiluTimesUpExactly() {
        for n in [13, 1 << 14 + 5, 3 * (1 << 14) + 1] {
            var rng = RandomGenerator(seed: UInt64(n))
            let gate = Tensor((0..<n).map { i in i % 97 == 0 ? Float(i % 3) * 40 - 40 : rng.nextNormal() * 3 }, shape: [n])
            let up = Tensor.randomNormal([n], using: &rng), w = Tensor.randomNormal([n], using: &rng)
            let (vFused, gFused) = valueAndGradient(at: [gate, up]) { xs in (xs[0].swiglu(xs[1]) * w).sum() }
            let (vPlain, gPlain) = valueAndGradient(at: [gate, up]) { xs in (xs[0].silu() * xs[1] * w).sum() }
            XCTAssertEqual(withoutGradients { gate.swiglu(up) }.scalars, withoutGradients { gate.silu() * up }.scalars, "n \(n)")
            XCTAssertEqual(vFused.item, vPlain.item)
            XCTAssertEqual(gFused[0].scalars, gPlain[0].scalars, "dgate, n \(n)")
            XCTAssertEqual(gFused[1].scalars, gPlain[1].scalars, "dup, n \(n)")
        }
    }

    /// Only the inputs that need a gradient get one (a frozen up projection: dgate alone).
    func testSwiGLUGradientOfOneInput() {
        let gate = awayFromZero([4, 3], seed: 33), up = awayFromZero([4, 3], seed: 34)
        let (_, grads) = valueAndGradient(at: [gate]) { xs in xs[0].swiglu(up).sum() }
        let (_, plain) = valueAndGradient(at: [gate]) { xs in (xs[0].silu() * up).sum() }
        XCTAssertEqual(grads[0].scalars, plain[0].scalars)
    }
}
