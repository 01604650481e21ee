import CDistillKernels
import XCTest
@testable import DistillTensor

/// dk_sdot and dk_saxpy (the one-query attention of decoding) against Double on every length up
/// to 70 (the vector loop, its 8-wide remainder and the scalar tail), within the summation bound
/// |ŝ − s| ≤ (n + 1)·u·Σ|xᵢyᵢ| (see GemmTests), u = 2⁻²⁴.
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
}
