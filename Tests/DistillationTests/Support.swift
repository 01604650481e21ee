import DistillTensor
import Distillation
import Foundation
import XCTest

// Helpers of the distillation-loss tests: the PyTorch fixture, comparisons, a finite-difference
// gradient checker (the approach of DistillTensorTests/GradientCheck.swift; test targets cannot
// share helpers) and small deterministic tensors.

/// Tests/DistillationTests/Fixtures/losses.json, made by scripts/make_loss_fixtures.py.
enum Fixture {
    static let losses: [String: Any] = {
        guard let url = Bundle.module.url(forResource: "losses", withExtension: "json", subdirectory: "Fixtures"),
              let data = try? Data(contentsOf: url),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            fatalError("Fixtures/losses.json missing from the test bundle (run scripts/make_loss_fixtures.py)")
        }
        return obj
    }()

    /// A JSON number, however Foundation bridged it (NSNumber, Double or Int).
    static func number(_ value: Any?) -> Double {
        if let d = value as? Double { return d }
        if let i = value as? Int { return Double(i) }
        if let n = value as? NSNumber { return n.doubleValue }
        fatalError("fixture: \(String(describing: value)) is not a number")
    }

    static func tensor(_ value: Any?) -> Tensor {
        let obj = value as! [String: Any]
        let shape = ints(obj["shape"])
        let data = (obj["data"] as! [Any]).map { Float(number($0)) }
        return Tensor(data, shape: shape)
    }

    static func double(_ value: Any?) -> Double { number(value) }
    static func float(_ value: Any?) -> Float { Float(number(value)) }
    static func int(_ value: Any?) -> Int { Int(number(value)) }
    static func ints(_ value: Any?) -> [Int] { (value as! [Any]).map { Int(number($0)) } }
    static func floats(_ value: Any?) -> [Float] { (value as! [Any]).map { Float(number($0)) } }
    static func object(_ value: Any?) -> [String: Any] { value as! [String: Any] }
    static func list(_ value: Any?) -> [[String: Any]] { value as! [[String: Any]] }

    static var student: Tensor { tensor(losses["student"]) }
    static var teacher: Tensor { tensor(losses["teacher"]) }
    static var targets: [Int] { ints(losses["targets"]) }
    static var maskRows: [Int] { ints(losses["mask_rows"]) }
    static var mask: LossMask { try! LossMask(rows: maskRows, total: targets.count) }

    static func logitCase(_ name: String) -> [String: Any] {
        list(losses["cases"]).first { $0["name"] as? String == name }!
    }
}

/// |got − expected| ≤ tolerance·|expected| for a scalar.
func assertRelative(_ got: Float, _ expected: Double, tolerance: Double = 1e-5, _ message: String = "",
                    file: StaticString = #filePath, line: UInt = #line) {
    let err = Swift.abs(Double(got) - expected)
    XCTAssert(err <= tolerance * Swift.max(Swift.abs(expected), 1e-30),
              "\(message): got \(got), expected \(expected) (relative error \(err / Swift.max(Swift.abs(expected), 1e-30)))",
              file: file, line: line)
}

/// Largest |a − b| over the tensor relative to the largest |b| (float32 rounding scales with the
/// tensor, so tiny entries of a large gradient are judged on the tensor's scale).
func relativeMaxError(_ a: Tensor, _ b: Tensor) -> Double {
    precondition(a.shape == b.shape, "relativeMaxError: shapes \(a.shape) and \(b.shape)")
    var err = 0.0, scale = 1e-30
    for (x, y) in zip(a.scalars, b.scalars) {
        err = Swift.max(err, Swift.abs(Double(x) - Double(y)))
        scale = Swift.max(scale, Swift.abs(Double(y)))
    }
    return err / scale
}

/// Same shape and relativeMaxError ≤ tolerance.
func assertTensorsClose(_ got: Tensor, _ expected: Tensor, tolerance: Double = 1e-5, _ message: String = "",
                        file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(got.shape, expected.shape, "shape: \(message)", file: file, line: line)
    guard got.shape == expected.shape else { return }
    let e = relativeMaxError(got, expected)
    XCTAssert(e <= tolerance, "\(message): relative max error \(e) > \(tolerance)", file: file, line: line)
}

/// Checks the gradients of a scalar-valued `f` at `inputs` against central finite differences.
///
/// L(x) = f(x) evaluated in Float32 and read as Double. For each input element, the numerical
/// derivative is (L(x + h₊eⱼ) − L(x − h₋eⱼ)) / (h₊ + h₋), with h± the steps actually taken in
/// Float32. With eps = 1e-2 the truncation error (eps²/6·|L‴|) and the rounding error
/// (u·|L|/eps, u ≈ 6e-8) are both about 1e-5 relative; a wrong rule is off by O(1), so a
/// tolerance of 1e-2 separates the two. An element passes when |analytic − numeric| ≤
/// tolerance·max(|analytic|, |numeric|, rms of the input's numeric gradient) + 16·u·|L|/eps.
func checkGradients(inputs: [Tensor], tolerance: Double = 1e-2, eps: Float = 1e-2,
                    file: StaticString = #filePath, line: UInt = #line, f: ([Tensor]) -> Tensor) {
    let plain = inputs.map { $0.detached() }
    let (value, grads) = valueAndGradient(at: plain) { f($0) }
    XCTAssertEqual(value.count, 1, "checkGradients: f must be scalar", file: file, line: line)
    let base = Double(withoutGradients { f(plain) }.item)
    XCTAssert(Swift.abs(Double(value.item) - base) <= 1e-6 * Swift.max(1, Swift.abs(base)),
              "value under autodiff \(value.item) differs from value without it \(base)", file: file, line: line)
    let floor = 16 * 6e-8 * Swift.max(Swift.abs(base), 1e-3) / Double(eps)
    var failures: [String] = []
    for (i, x) in plain.enumerated() {
        var values = x.scalars
        var numeric = [Double](repeating: 0, count: values.count)
        for j in 0..<values.count {
            let x0 = values[j], xp = x0 + eps, xm = x0 - eps
            var xs = plain
            values[j] = xp
            xs[i] = Tensor(values, shape: x.shape)
            let lp = Double(withoutGradients { f(xs) }.item)
            values[j] = xm
            xs[i] = Tensor(values, shape: x.shape)
            let lm = Double(withoutGradients { f(xs) }.item)
            values[j] = x0
            numeric[j] = (lp - lm) / (Double(xp) - Double(xm))
        }
        let rms = (numeric.reduce(0) { $0 + $1 * $1 } / Double(Swift.max(numeric.count, 1))).squareRoot()
        let analytic = grads[i].scalars
        for j in 0..<values.count {
            let a = Double(analytic[j]), n = numeric[j]
            let bound = tolerance * Swift.max(Swift.abs(a), Swift.abs(n), rms) + floor
            if !(Swift.abs(a - n) <= bound) {
                failures.append("input \(i) \(x.shape) element \(j): analytic \(a), numeric \(n), bound \(bound)")
            }
        }
    }
    for m in failures.prefix(6) { XCTFail(m, file: file, line: line) }
    if failures.count > 6 { XCTFail("… \(failures.count) mismatches in all", file: file, line: line) }
}

/// Deterministic normal tensor.
func normal(_ shape: [Int], std: Float = 1, seed: UInt64) -> Tensor {
    var rng = RandomGenerator(seed: seed)
    return Tensor.randomNormal(shape, std: std, using: &rng)
}

/// Asserts that `body` throws an error whose description contains every one of `fragments`.
func assertThrowsMessage<T>(_ body: @autoclosure () throws -> T, contains fragments: [String],
                            file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try body()
        XCTFail("expected an error containing \(fragments)", file: file, line: line)
    } catch {
        let text = "\(error)"
        for f in fragments {
            XCTAssert(text.contains(f), "error '\(text)' does not mention '\(f)'", file: file, line: line)
        }
    }
}
