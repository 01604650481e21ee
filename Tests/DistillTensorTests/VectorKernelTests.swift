import CDistillKernels
import Foundation
import XCTest
@testable import DistillTensor

/// The vector kernels against Double: dk_sdot and dk_saxpy (the one-query attention of decoding) on every length up
/// to 70 (the vector loop, its 8-wide remainder and the scalar tail), within the summation bound
/// |ŝ − s| ≤ (n + 1)·u·Σ|xᵢyᵢ| (see GemmTests), u = 2⁻²⁴; the vectorised exponentials (exp.c)
/// within 2 ulp, and the row kernels built on them.
final class VectorKernelTests: XCTestCase {
    func testDotAndAxpyAgainstDouble() {
        let u = pow(2.0, -24.0)
        for n in 0...70 {
            let x = uniform([n + 1], seed: UInt64(300 + n)).scalars, y = uniform([n + 1], -3, 3, seed: UInt64(400 + n)).scalars
            var exact = 0.0, magnitude = 0.0
            for i in 0..<n { exact += Double(x[i]) * Double(y[i]); magnitude += abs(Double(x[i]) * Double(y[i])) }
            let got = x.withUnsafeBufferPointer { px in y.withUnsafeBufferPointer { py in dk_sdot(px.baseAddress, py.baseAddress, n) } }
            XCTAssertLessThanOrEqual(abs(Double(got) - exact), Double(n + 1) * u * magnitude + 1e-30, "dot, n \(n)")

            var z = y
            let a: Float = -1.75
            x.withUnsafeBufferPointer { px in z.withUnsafeMutableBufferPointer { pz in dk_saxpy(a, px.baseAddress, pz.baseAddress, n) } }
            for i in 0..<n {
                let e = Double(a) * Double(x[i]) + Double(y[i])
                XCTAssertLessThanOrEqual(abs(Double(z[i]) - e), 2 * u * (abs(Double(a) * Double(x[i])) + abs(Double(y[i]))), "axpy, n \(n), i \(i)")
            }
            XCTAssertEqual(z[n], y[n], "axpy wrote past n")
        }
    }

    /// Distance in units in the last place between a Float and the exact value (Double).
    private func ulps(_ got: Float, _ exact: Double) -> Double {
        let f = Float(exact)
        let ulp = Double(f.ulp == 0 ? Float.leastNonzeroMagnitude : f.ulp)
        return abs(Double(got) - exact) / ulp
    }

    func testVectorExpWithinTwoUlp() {
        // Dense over the normal range (every 8-lane position and the scalar tail see values).
        let xs: [Float] = stride(from: -87.3, through: 88.7, by: 0.00731).map { Float($0) } + [0, -0.0, 1e-8, -1e-8, 0.3465, -0.3466]
        var ys = [Float](repeating: 0, count: xs.count)
        dk_vexp(xs, &ys, xs.count)
        var worst = 0.0
        for (x, y) in zip(xs, ys) { worst = max(worst, ulps(y, Foundation.exp(Double(x)))) }
        XCTAssertLessThanOrEqual(worst, 2, "worst error \(worst) ulp")
        XCTAssertEqual(ys[xs.count - 6], 1)                   // exp(0) = 1 exactly
        // Outside the normal range, and NaN (8 of them, so the vector path sees each).
        let special: [Float] = [-Float.infinity, -200, -87.5, 88.8, 1000, Float.infinity, .nan, 5]
        var out = [Float](repeating: 7, count: 8)
        dk_vexp(special, &out, 8)
        XCTAssertEqual(Array(out[0..<3]), [0, 0, 0])
        XCTAssertEqual(Array(out[3..<6]), [.infinity, .infinity, .infinity])
        XCTAssertTrue(out[6].isNaN)
        XCTAssertLessThanOrEqual(ulps(out[7], Foundation.exp(5.0)), 2)
    }

    /// The AVX-512 exponential kernels give the AVX2 kernels' bits (values, and sums kept in the same 8
    /// Double lanes): exponentials over the whole range and past it (±inf, NaN, underflow,
    /// overflow), lengths around the 16-lane loop, its masked last 8 and the scalar tail.
    func testAVX512RowKernelsGiveTheAVX2Bits() throws {
        try XCTSkipUnless(dk_rows_avx512() == 1, "this CPU has no AVX-512: the AVX2 row kernels are the ones that run")
        defer { dk_rows_force_avx2(0) }
        /// `f` run with AVX-512, then forced to AVX2: the bit patterns of what it returns.
        func bothWays(_ f: () -> [Float]) -> ([UInt32], [UInt32]) {
            dk_rows_force_avx2(0)
            let wide = f().map(\.bitPattern)
            dk_rows_force_avx2(1)
            let narrow = f().map(\.bitPattern)
            dk_rows_force_avx2(0)
            return (wide, narrow)
        }
        let dense: [Float] = stride(from: -90.0, through: 90.0, by: 0.0173).map { Float($0) }
            + [-Float.infinity, -200, 88.8, 1000, .infinity, .nan, 0, -0.0, 1e-8, -87.5, 88.72]
        for n in [0, 3, 8, 15, 16, 24, 40, 8192 + 13, dense.count] {
            let x = n == dense.count ? dense : uniform([n], -30, 12, seed: UInt64(900 + n)).scalars
            let up = uniform([n], -2, 2, seed: UInt64(901 + n)).scalars, g = uniform([n], -1, 1, seed: UInt64(902 + n)).scalars
            let (a, b) = bothWays {
                var out = [Float](repeating: 0, count: n)
                let s1 = dk_sum_exp(x, n, 0.5, 3, &out), s2 = dk_sum_exp(x, n, 1, 0, nil)
                return out + [Float(s1), Float(s2), Float(s1 - Double(Float(s1))), Float(s2 - Double(Float(s2)))]
            }
            XCTAssertEqual(a, b, "dk_sum_exp, n \(n)")
            let (c, d) = bothWays {
                var y = [Float](repeating: 0, count: n), dg = y, du = y, dgOnly = y
                dk_swiglu(x, up, &y, n)
                dk_swiglu_backward(x, up, g, &dg, &du, n)
                dk_swiglu_backward(x, up, g, &dgOnly, nil, n)
                return y + dg + du + dgOnly
            }
            XCTAssertEqual(c, d, "dk_swiglu and its backward, n \(n)")
            let (c2, d2) = bothWays {
                var e = [Float](repeating: 0, count: n), ea = e, s = e, ds = e
                dk_vexp(x, &e, n)
                dk_exp_affine(x, n, 0.5, 3, -2, 0.25, &ea)
                dk_silu(x, &s, n)
                dk_silu_backward(x, g, &ds, n)
                return e + ea + s + ds
            }
            XCTAssertEqual(c2, d2, "dk_vexp, dk_exp_affine, dk_silu and its backward, n \(n)")
            guard n > 0, n != dense.count else { continue }
            let t = uniform([n], -25, 10, seed: UInt64(903 + n)).scalars
            for (soft, hard, eps, teacher) in [(Float(0.5), Float(0.5), Float(0.1), true), (0, 1, 0, false), (1, 0, 0, true)] {
                let (e, f) = bothWays {
                    var grad = [Float](repeating: 0, count: n)
                    var kl = 0.0, ce = 0.0
                    if teacher {
                        dk_kd_row(x, t, n, 0.5, soft, hard, hard != 0 ? n / 2 : -1, eps, &kl, &ce, &grad)
                    } else {
                        dk_kd_row(x, nil, n, 0.5, soft, hard, n / 2, eps, &kl, &ce, &grad)
                    }
                    return grad + [Float(kl), Float(ce), Float(kl - Double(Float(kl))), Float(ce - Double(Float(ce)))]
                }
                XCTAssertEqual(e, f, "dk_kd_row soft \(soft) hard \(hard), n \(n)")
            }
        }
    }

    func testMaxSumExpAndAffine() {
        for n in [0, 1, 7, 8, 9, 16, 31, 1000, 8197] {
            let x = uniform([n + 1], -20, 5, seed: UInt64(500 + n)).scalars
            XCTAssertEqual(dk_vmax(x, n), n == 0 ? -Float.infinity : x[0..<n].max()!, "max, n \(n)")
            let scale: Float = 0.5, shift: Float = 1.25
            var terms = [Float](repeating: -1, count: n + 1)
            let sum = dk_sum_exp(x, n, scale, shift, &terms)
            var exact = 0.0
            for i in 0..<n {
                let e = Foundation.exp(Double(x[i] * scale - shift))      // the argument rounded as the kernel rounds it
                exact += e
                XCTAssertLessThanOrEqual(ulps(terms[i], e), 2, "term \(i), n \(n)")
            }
            XCTAssertEqual(terms[n], -1, "sum_exp wrote past n")
            // Each term within 2 ulp (relative 2·2⁻²³), the Double sum adds no visible error.
            XCTAssertLessThanOrEqual(abs(sum - exact), exact * 2.5e-7 + 1e-300, "sum, n \(n)")
            XCTAssertEqual(dk_sum_exp(x, n, scale, shift, nil), sum)

            var y = [Float](repeating: 0, count: n)
            let alpha: Float = -0.75, beta: Float = 0.125
            dk_exp_affine(x, n, scale, shift, alpha, beta, &y)
            for i in 0..<n {
                let e = Foundation.exp(Double(x[i] * scale - shift))
                let want = Double(alpha) * e + Double(beta)
                XCTAssertLessThanOrEqual(abs(Double(y[i]) - want), abs(Double(alpha)) * e * 2.5e-7 + Double(Float.ulpOfOne) * abs(want), "affine \(i)")
            }
        }
    }

    func testSiluAndItsDerivative() {
        let n = 1003
        let x = uniform([n], -30, 30, seed: 600).scalars + [-100, 100, 0]
        let g = uniform([n + 3], -2, 2, seed: 601).scalars
        var y = [Float](repeating: 0, count: n + 3), d = y
        dk_silu(x, &y, n + 3)
        dk_silu_backward(x, g, &d, n + 3)
        for i in 0..<(n + 3) {
            let xv = Double(x[i]), s = 1 / (1 + Foundation.exp(-xv))
            let silu = xv * s, deriv = Double(g[i]) * s * (1 + xv * (1 - s))
            // A few roundings of quantities of the result's size (exp within 2 ulp, then +, /, ·).
            XCTAssertLessThanOrEqual(abs(Double(y[i]) - silu), 8e-7 * (abs(silu) + abs(xv) * s * (1 - s)) + 1e-30, "silu(\(xv))")
            let size = abs(Double(g[i])) * (s + abs(xv) * s * (1 - s))
            XCTAssertLessThanOrEqual(abs(Double(d[i]) - deriv), 1.5e-6 * size + 1e-30, "silu'(\(xv))")
        }
    }
}
