import XCTest
@testable import DistillTensor

// Helpers shared by the tensor-engine tests: a finite-difference gradient checker, value
// comparisons, and small deterministic random tensors.

/// Checks the analytic gradients of `f` at `inputs` against central finite differences.
///
/// The op's output is reduced to a scalar by a dot product with a fixed random weight tensor W
/// (normal entries, seeded), accumulated in Double:  L(x) = Σᵢ Wᵢ·f(x)ᵢ. A weighted sum (rather
/// than a plain sum) makes every output element matter with a different weight, so a rule that
/// mixes up output positions cannot pass by symmetry.
///
/// The analytic gradient comes from `valueAndGradient(at:of:)` applied to x ↦ Σ W ⊙ f(x). The
/// numerical one, for each input element xⱼ, is
///     (L(x + h₊·eⱼ) − L(x − h₋·eⱼ)) / (h₊ + h₋)
/// where h± are the steps actually taken in Float32 (x ± eps rounded), so that rounding of the
/// perturbed input itself does not bias the quotient.
///
/// Choice of eps. The tensors are Float32, so f is evaluated with relative rounding error about
/// u ≈ 6e-8 per element; the central difference divides that error by 2·eps, giving a rounding
/// error ≈ u·|L|/eps, while the truncation error of the central difference is ≈ eps²/6·|L‴|.
/// Their sum is smallest near eps ≈ (3u)^(1/3) ≈ 6e-3. With eps = 1e-2 both are about 1e-5
/// relative to the size of L and its derivatives (6e-6·|L| and 1.7e-5·|L‴|), with some margin on
/// the rounding side, which dominates for ops with long sums (softmax, attention). A wrong
/// gradient rule is off by O(1) relative, so a tolerance of 1e-2 separates the two by ~1000×.
/// Callers keep inputs away from kinks (relu at 0, ties in max) by more than eps.
///
/// An element passes when |analytic − numeric| ≤ tolerance·max(|analytic|, |numeric|, rms) +
/// floor, where rms is the root-mean-square numeric gradient of that input (so that elements
/// whose true gradient is ~0 are judged on the scale of their neighbours) and
/// floor = 16·u·Σ|Wᵢ·f(x)ᵢ|/eps bounds the rounding error of the difference quotient.
/// Measured when this suite was written: the largest |analytic − numeric| over every check was
/// about 5% of its bound, while the checker's self-tests (GradientCheckTests, a term hidden from
/// autodiff) exceed it by more than 15×.
func checkGradients(inputs: [Tensor], tolerance: Double = 1e-2, eps: Float = 1e-2, seed: UInt64 = 0x5EED,
                    file: StaticString = #filePath, line: UInt = #line,
                    f: ([Tensor]) -> Tensor) {
    let failures = gradientMismatches(inputs: inputs, tolerance: tolerance, eps: eps, seed: seed, f: f)
    for message in failures.prefix(8) { XCTFail(message, file: file, line: line) }
    if failures.count > 8 { XCTFail("… \(failures.count) mismatches in all", file: file, line: line) }
}

/// The comparison behind `checkGradients`: one message per element whose analytic and numerical
/// gradients disagree (empty when all agree).
func gradientMismatches(inputs: [Tensor], tolerance: Double = 1e-2, eps: Float = 1e-2, seed: UInt64 = 0x5EED,
                        f: ([Tensor]) -> Tensor) -> [String] {
    let plainInputs = inputs.map { $0.detached() }
    let output = withoutGradients { f(plainInputs) }
    var rng = RandomGenerator(seed: seed)
    let w = Tensor.randomNormal(output.shape, using: &rng)
    let ws = w.scalars.map(Double.init)

    /// L(x) = Σ W ⊙ f(x), accumulated in Double; also Σ|W ⊙ f(x)| for the rounding floor.
    func loss(_ xs: [Tensor]) -> (value: Double, magnitude: Double) {
        let y = withoutGradients { f(xs) }
        precondition(y.shape == output.shape, "checkGradients: output shape changed from \(output.shape) to \(y.shape)")
        var s = 0.0, m = 0.0
        for (a, b) in zip(y.scalars, ws) { s += Double(a) * b; m += Swift.abs(Double(a) * b) }
        return (s, m)
    }

    var failures: [String] = []
    let (value, grads) = valueAndGradient(at: plainInputs) { xs in (f(xs) * w).sum() }
    let base = loss(plainInputs)
    if !(Swift.abs(Double(value.item) - base.value) <= 1e-4 * Swift.max(1, base.magnitude)) {
        failures.append("value under autodiff \(value.item) differs from value without it \(base.value)")
    }
    let floor = 16 * 6e-8 * base.magnitude / Double(eps)

    for (i, x) in plainInputs.enumerated() {
        guard grads[i].shape == x.shape else {
            failures.append("gradient of input \(i) has shape \(grads[i].shape), input has \(x.shape)")
            continue
        }
        let analytic = grads[i].scalars
        var values = x.scalars
        var numeric = [Double](repeating: 0, count: values.count)
        for j in 0..<values.count {
            let x0 = values[j]
            let xp = x0 + eps, xm = x0 - eps
            var xs = plainInputs
            values[j] = xp
            xs[i] = Tensor(values, shape: x.shape)
            let lp = loss(xs).value
            values[j] = xm
            xs[i] = Tensor(values, shape: x.shape)
            let lm = loss(xs).value
            values[j] = x0
            numeric[j] = (lp - lm) / (Double(xp) - Double(xm))
        }
        let rms = (numeric.reduce(0) { $0 + $1 * $1 } / Double(Swift.max(numeric.count, 1))).squareRoot()
        for j in 0..<values.count {
            let a = Double(analytic[j]), n = numeric[j]
            let bound = tolerance * Swift.max(Swift.abs(a), Swift.abs(n), rms) + floor
            if !(Swift.abs(a - n) <= bound) {
                failures.append("gradient of input \(i) (shape \(x.shape)) at element \(j) \(multiIndex(j, x.shape)): "
                                + "analytic \(a), numeric \(n), |difference| \(Swift.abs(a - n)) > bound \(bound)")
            }
        }
    }
    return failures
}

/// Row-major multi-index of flat offset `j` in `shape`.
func multiIndex(_ j: Int, _ shape: [Int]) -> [Int] {
    var rem = j
    var idx = [Int](repeating: 0, count: shape.count)
    for a in stride(from: shape.count - 1, through: 0, by: -1) {
        idx[a] = rem % Swift.max(shape[a], 1)
        rem /= Swift.max(shape[a], 1)
    }
    return idx
}

/// Asserts the tensor has `shape` and its values match `expected` within `accuracy` (absolute).
func assertValues(_ t: Tensor, _ expected: [Float], shape: [Int]? = nil, accuracy: Float = 1e-5,
                  _ message: String = "", file: StaticString = #filePath, line: UInt = #line) {
    if let shape { XCTAssertEqual(t.shape, shape, "shape \(message)", file: file, line: line) }
    XCTAssertEqual(t.count, expected.count, "element count \(message)", file: file, line: line)
    guard t.count == expected.count else { return }
    for (j, (a, e)) in zip(t.scalars, expected).enumerated() {
        let ok = (a == e) || (a.isNaN && e.isNaN) || Swift.abs(a - e) <= accuracy
        if !ok {
            XCTFail("element \(j) \(multiIndex(j, t.shape)): got \(a), expected \(e) \(message)", file: file, line: line)
            return
        }
    }
}

/// Asserts two tensors have the same shape and values within `accuracy` (absolute).
func assertClose(_ a: Tensor, _ b: Tensor, accuracy: Float = 1e-5, _ message: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.shape, b.shape, "shape \(message)", file: file, line: line)
    guard a.shape == b.shape else { return }
    assertValues(a, b.scalars, accuracy: accuracy, message, file: file, line: line)
}

/// Deterministic uniform tensor in [low, high).
func uniform(_ shape: [Int], _ low: Float = -1, _ high: Float = 1, seed: UInt64) -> Tensor {
    var rng = RandomGenerator(seed: seed)
    return Tensor.randomUniform(shape, low: low, high: high, using: &rng)
}

/// Deterministic tensor whose entries have magnitude in [low, high) and random sign: keeps inputs
/// away from 0 (kinks of relu, poles of division).
func awayFromZero(_ shape: [Int], _ low: Float = 0.2, _ high: Float = 1.5, seed: UInt64) -> Tensor {
    var rng = RandomGenerator(seed: seed)
    let t = Tensor.randomUniform(shape, low: low, high: high, using: &rng)
    return Tensor(t.scalars.map { v in rng.nextFloat() < 0.5 ? -v : v }, shape: shape)
}

/// Deterministic tensor of distinct values in random order, spaced `gap` apart (no ties for max).
func distinct(_ shape: [Int], gap: Float = 0.1, seed: UInt64) -> Tensor {
    var rng = RandomGenerator(seed: seed)
    let n = shape.reduce(1, *)
    var v = (0..<n).map { Float($0) * gap - Float(n) * gap / 2 }
    v.shuffle(using: &rng)
    return Tensor(v, shape: shape)
}
