import CDistillKernels
import XCTest
@testable import DistillTensor

final class RotaryTests: XCTestCase {
    func testInverseFrequencies() {
        // θᵢ = base^(−2i/D): D = 4, base 10000 -> [10000⁰, 10000^-½] = [1, 0.01]
        let f = Tensor.rotaryInverseFrequencies(headDim: 4, base: 10000)
        XCTAssertEqual(f.count, 2)
        XCTAssertEqual(f[0], 1, accuracy: 1e-7)
        XCTAssertEqual(f[1], 0.01, accuracy: 1e-7)
    }

    func testTables() {
        // cos/sin of position·θ: positions [0, 2], θ = [1, 0.5] -> angles [[0,0],[2,1]]
        let (c, s) = Tensor.rotaryTables(positions: [0, 2], invFreq: [1, 0.5])
        XCTAssertEqual(c.shape, [2, 2])
        assertValues(c, [1, 1, Float(Foundation.cos(2.0)), Float(Foundation.cos(1.0))], accuracy: 1e-6)
        assertValues(s, [0, 0, Float(Foundation.sin(2.0)), Float(Foundation.sin(1.0))], accuracy: 1e-6)
    }

    func testPositionZeroIsIdentity() {
        // At position 0 every angle is 0: cos = 1, sin = 0, so y = x.
        let (c, s) = Tensor.rotaryTables(positions: [0], invFreq: Tensor.rotaryInverseFrequencies(headDim: 6, base: 10000))
        let x = uniform([2, 3, 1, 6], seed: 91)
        assertClose(x.rotaryEmbedding(cos: c, sin: s), x, accuracy: 0)
    }

    func testRotationValues() {
        // D = 2 (one pair), θ = 1, position 1: (x₁, x₂) = (1, 0) rotates by 1 rad to (cos 1, sin 1);
        // (0, 1) rotates to (−sin 1, cos 1). Rotate-half layout: y₁ = x₁cos − x₂sin, y₂ = x₂cos + x₁sin.
        let (c, s) = Tensor.rotaryTables(positions: [0, 1], invFreq: [1])
        let x = Tensor([1, 0, 1, 0, 0, 1, 0, 1], shape: [2, 2, 2])      // [H=2, T=2, D=2]
        let c1 = Float(Foundation.cos(1.0)), s1 = Float(Foundation.sin(1.0))
        assertValues(x.rotaryEmbedding(cos: c, sin: s), [1, 0, c1, s1, 0, 1, -s1, c1], accuracy: 1e-6)
        // D = 4: pairs are (x[0], x[2]) and (x[1], x[3]) ("rotate half"), with θ = [1, 0.5] at position 2:
        // pair 0 rotates by 2 rad, pair 1 by 1 rad.
        let (c2, s2) = Tensor.rotaryTables(positions: [2], invFreq: [1, 0.5])
        let y = Tensor([1, 1, 0, 0], shape: [1, 4]).rotaryEmbedding(cos: c2, sin: s2)
        assertValues(y, [Float(Foundation.cos(2.0)), Float(Foundation.cos(1.0)), Float(Foundation.sin(2.0)), Float(Foundation.sin(1.0))],
                     accuracy: 1e-6)
    }

    func testRotationPreservesNormAndRelativePosition() {
        // |Rx| = |x| and ⟨R(m)q, R(n)k⟩ depends only on n − m.
        let inv = Tensor.rotaryInverseFrequencies(headDim: 4, base: 100)
        let q = uniform([1, 4], seed: 92), k = uniform([1, 4], seed: 93)
        func rot(_ x: Tensor, _ p: Int) -> Tensor {
            let (c, s) = Tensor.rotaryTables(positions: [p], invFreq: inv)
            return x.rotaryEmbedding(cos: c, sin: s)
        }
        XCTAssertEqual(rot(q, 5).square().sum().item, q.square().sum().item, accuracy: 1e-6)
        let d1 = (rot(q, 3) * rot(k, 7)).sum().item, d2 = (rot(q, 10) * rot(k, 14)).sum().item
        XCTAssertEqual(d1, d2, accuracy: 1e-5)
    }

    func testPerBatchTablesMatchSharedTables() {
        // Tables [B, T, D/2]: batch 0 at positions [0, 1, 2], batch 1 at [5, 6, 7] (say, after a cache).
        let inv = Tensor.rotaryInverseFrequencies(headDim: 4, base: 10000)
        let t0 = Tensor.rotaryTables(positions: [0, 1, 2], invFreq: inv), t1 = Tensor.rotaryTables(positions: [5, 6, 7], invFreq: inv)
        let cos = stack([t0.cos, t1.cos]), sin = stack([t0.sin, t1.sin])
        XCTAssertEqual(cos.shape, [2, 3, 2])
        let x = uniform([2, 2, 3, 4], seed: 94)                         // [B, H, T, D]
        let y = x.rotaryEmbedding(cos: cos, sin: sin)
        let y0 = x.slice(axis: 0, start: 0, length: 1).rotaryEmbedding(cos: t0.cos, sin: t0.sin)
        let y1 = x.slice(axis: 0, start: 1, length: 1).rotaryEmbedding(cos: t1.cos, sin: t1.sin)
        assertClose(y, concat([y0, y1], axis: 0), accuracy: 0)
    }

    // MARK: gradients (the rotation is orthogonal: dx = R(−θ)·dy)

    func testRotaryGradientSharedTables() {
        let (c, s) = Tensor.rotaryTables(positions: [3, 4, 5], invFreq: Tensor.rotaryInverseFrequencies(headDim: 4, base: 10))
        checkGradients(inputs: [uniform([2, 2, 3, 4], seed: 95)]) { $0[0].rotaryEmbedding(cos: c, sin: s) }
        checkGradients(inputs: [uniform([3, 4], seed: 96)]) { $0[0].rotaryEmbedding(cos: c, sin: s) }
    }

    func testRotaryGradientPerBatchTables() {
        let inv = Tensor.rotaryInverseFrequencies(headDim: 4, base: 10)
        let t0 = Tensor.rotaryTables(positions: [0, 1], invFreq: inv), t1 = Tensor.rotaryTables(positions: [7, 9], invFreq: inv)
        let cos = stack([t0.cos, t1.cos]), sin = stack([t0.sin, t1.sin])
        checkGradients(inputs: [uniform([2, 3, 2, 4], seed: 97)]) { $0[0].rotaryEmbedding(cos: cos, sin: sin) }
    }

    // MARK: partial rotary (tables narrower than the head)

    /// Tables of width R/2 rotate the first R dimensions as a head of size R would be rotated and
    /// pass the rest through; the gradient is checked by finite differences.
    func testPartialRotaryRotatesTheFirstDimensionsOnly() {
        let (c, s) = Tensor.rotaryTables(positions: [3, 4, 5], invFreq: Tensor.rotaryInverseFrequencies(headDim: 6, base: 10))
        let x = uniform([2, 2, 3, 8], seed: 98)
        let y = x.rotaryEmbedding(cos: c, sin: s)
        let rotated = x.slice(axis: 3, start: 0, length: 6).rotaryEmbedding(cos: c, sin: s)
        assertClose(y.slice(axis: 3, start: 0, length: 6), rotated, accuracy: 0)
        assertClose(y.slice(axis: 3, start: 6, length: 2), x.slice(axis: 3, start: 6, length: 2), accuracy: 0)
        checkGradients(inputs: [x]) { $0[0].rotaryEmbedding(cos: c, sin: s) }
        let inv = Tensor.rotaryInverseFrequencies(headDim: 2, base: 10)
        let t0 = Tensor.rotaryTables(positions: [0, 1, 2], invFreq: inv), t1 = Tensor.rotaryTables(positions: [7, 9, 11], invFreq: inv)
        checkGradients(inputs: [uniform([2, 2, 3, 8], seed: 99)]) {
            $0[0].rotaryEmbedding(cos: stack([t0.cos, t1.cos]), sin: stack([t0.sin, t1.sin]))
        }
    }

    // MARK: the row kernel (dk_rotary_rows)

    /// The vector loop gives the scalar loop's bits on awkward widths (tails of 1–7 pairs, values
    /// past the rotated part, both signs), and both are within rounding of a Double rotation.
    func testRotaryRowKernelPathsAgreeWithDoubleReference() {
        var rng = RandomGenerator(seed: 100)
        for half in [1, 3, 7, 8, 9, 17, 32, 33] {
            for extra in [0, 1, 5] {
                let d = 2 * half + extra, rows = 13
                let x = (0..<(rows * d)).map { _ in Float.random(in: -2...2, using: &rng) }
                let c = (0..<(rows * half)).map { _ in Float.random(in: -1...1, using: &rng) }
                let sn = (0..<(rows * half)).map { _ in Float.random(in: -1...1, using: &rng) }
                for sign: Float in [1, -1] {
                    var fast = [Float](repeating: .nan, count: rows * d), scalar = fast
                    dk_rotary_rows(x, &fast, Int(rows), Int(d), Int(half), c, sn, sign, 0)
                    dk_rotary_rows(x, &scalar, Int(rows), Int(d), Int(half), c, sn, sign, 1)
                    XCTAssertEqual(fast.map(\.bitPattern), scalar.map(\.bitPattern), "half \(half) d \(d) sign \(sign)")
                    for r in 0..<rows {
                        for i in 0..<half {
                            let a = Double(x[r * d + i]), b = Double(x[r * d + i + half])
                            let cv = Double(c[r * half + i]), sv = Double(sign) * Double(sn[r * half + i])
                            // Each product and the sum rounded once: within ε·(|p₁| + |p₂|) of the exact value.
                            let eps = Double(Float.ulpOfOne)
                            XCTAssertEqual(Double(fast[r * d + i]), a * cv - b * sv, accuracy: eps * (abs(a * cv) + abs(b * sv)))
                            XCTAssertEqual(Double(fast[r * d + i + half]), b * cv + a * sv, accuracy: eps * (abs(b * cv) + abs(a * sv)))
                        }
                        for i in (2 * half)..<d { XCTAssertEqual(fast[r * d + i], x[r * d + i]) }
                    }
                }
            }
        }
    }

    /// Runs of rows split where a sequence (or a thread's share of rows) ends: each row is rotated
    /// by its own position's angles, shared and per-batch tables, as a row-by-row loop does.
    func testRotaryRunsFollowPositionsAcrossSequencesAndThreads() {
        let inv = Tensor.rotaryInverseFrequencies(headDim: 10, base: 10000)
        let positions = Array(0..<37)
        let shared = Tensor.rotaryTables(positions: positions, invFreq: inv)
        let perBatch = (0..<3).map { b in Tensor.rotaryTables(positions: positions.map { $0 + 11 * b }, invFreq: inv) }
        let x = uniform([3, 5, 37, 12], seed: 101)                 // 555 rows: several threads' shares
        func expected(cos: (Int) -> Tensor, sin: (Int) -> Tensor) -> [Float] {
            var y = [Float](repeating: 0, count: x.count)
            for row in 0..<(x.count / 12) {
                let pos = row % 37, b = row / (37 * 5), c = cos(b), s = sin(b)
                for i in 0..<5 {
                    let cv = c.storage.pointer[pos * 5 + i], sv = s.storage.pointer[pos * 5 + i]
                    let a = x.storage.pointer[row * 12 + i], bb = x.storage.pointer[row * 12 + i + 5]
                    y[row * 12 + i] = a * cv - bb * sv
                    y[row * 12 + i + 5] = bb * cv + a * sv
                }
                for i in 10..<12 { y[row * 12 + i] = x.storage.pointer[row * 12 + i] }
            }
            return y
        }
        let ys = x.rotaryEmbedding(cos: shared.cos, sin: shared.sin)
        XCTAssertEqual(ys.scalars, expected(cos: { _ in shared.cos }, sin: { _ in shared.sin }))
        let yb = x.rotaryEmbedding(cos: stack(perBatch.map(\.cos)), sin: stack(perBatch.map(\.sin)))
        XCTAssertEqual(yb.scalars, expected(cos: { perBatch[$0].cos }, sin: { perBatch[$0].sin }))
    }
}
