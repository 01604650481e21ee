import XCTest
@testable import DistillTensor

/// The gradient tests use tiny tensors, which never reach the multi-threaded branches of the kernels
/// (`parallelFor` splits work only above a grain of thousands of elements). These tests run each kernel
/// on tensors large enough to split and compare with plain loops written here.
final class ParallelPathTests: XCTestCase {
    func testElementwiseLarge() {
        let n = 70_000                                           // > 2·2¹⁴: split across threads
        let x = uniform([n], seed: 171), y = uniform([n], 0.5, 1.5, seed: 172)
        let xs = x.scalars, ys = y.scalars
        XCTAssertEqual(x.exp().scalars, xs.map { Foundation.exp($0) })
        XCTAssertEqual((x * y).scalars, zip(xs, ys).map { $0 * $1 })
        XCTAssertEqual((x / y).scalars, zip(xs, ys).map { $0 / $1 })
        // suffix broadcast: [700, 100] + [100]
        let m = x.reshaped([700, 100]), r = y.slice(axis: 0, start: 0, length: 100)
        let s = (m + r).scalars, rs = r.scalars
        for i in stride(from: 0, to: n, by: 997) { XCTAssertEqual(s[i], xs[i] + rs[i % 100]) }
        // general broadcast: [700, 100] * [700, 1]
        let c = y.slice(axis: 0, start: 0, length: 700).reshaped([700, 1])
        let p = (m * c).scalars, cs = c.scalars
        for i in stride(from: 0, to: n, by: 991) { XCTAssertEqual(p[i], xs[i] * cs[i / 100]) }
    }

    func testReductionsLarge() {
        // sum over the middle axis of [3, 3, 3000] (the inner-run path, chunks crossing outer rows)
        let x = uniform([3, 3, 3000], seed: 173)
        let s = x.sum(axis: 1)
        for o in 0..<3 { for i in stride(from: 0, to: 3000, by: 37) {
            XCTAssertEqual(s[o, i], x[o, 0, i] + x[o, 1, i] + x[o, 2, i], accuracy: 1e-6)
        } }
        // row sums of [40, 1000] (the contiguous path) in Double for reference
        let y = uniform([40, 1000], seed: 174)
        let rows = y.sum(axis: -1), ys = y.scalars
        for r in 0..<40 {
            let ref = (0..<1000).reduce(0.0) { $0 + Double(ys[r * 1000 + $1]) }
            XCTAssertEqual(Double(rows[r]), ref, accuracy: 1e-4)
        }
        // max over axis 0 of [3, 5000]
        let z = uniform([3, 5000], seed: 175)
        let mx = z.max(axis: 0)
        for i in stride(from: 0, to: 5000, by: 41) { XCTAssertEqual(mx[i], Swift.max(z[0, i], z[1, i], z[2, i])) }
    }

    func testSoftmaxAndNormsLarge() {
        let x = uniform([300, 50], -4, 4, seed: 176)
        let p = x.softmax()
        assertValues(p.sum(axis: -1), [Float](repeating: 1, count: 300), accuracy: 1e-5)
        for r in stride(from: 0, to: 300, by: 13) {
            let row = (0..<50).map { Double(x[r, $0]) }
            let z = row.map { Foundation.exp($0) }.reduce(0, +)
            for j in stride(from: 0, to: 50, by: 7) { XCTAssertEqual(Double(p[r, j]), Foundation.exp(row[j]) / z, accuracy: 1e-6) }
        }
        let w = uniform([50], seed: 177)
        let y = x.rmsNorm(weight: w, eps: 1e-6)
        for r in stride(from: 0, to: 300, by: 17) {
            let ms = (0..<50).reduce(0.0) { $0 + Double(x[r, $1] * x[r, $1]) } / 50
            for j in stride(from: 0, to: 50, by: 9) {
                XCTAssertEqual(Double(y[r, j]), Double(x[r, j]) / (ms + 1e-6).squareRoot() * Double(w[j]), accuracy: 1e-5)
            }
        }
    }

    func testMovesLarge() {
        // permute, broadcast, slice, concat, indexSelect on ~10⁵ elements
        let x = uniform([20, 30, 40], seed: 178)
        let p = x.permuted([2, 0, 1])
        for (i, j, k) in [(0, 0, 0), (19, 29, 39), (7, 3, 11), (12, 25, 1)] { XCTAssertEqual(p[k, i, j], x[i, j, k]) }
        let b = x.slice(axis: 0, start: 0, length: 1).broadcast(to: [50, 30, 40])
        XCTAssertEqual(b[49, 17, 23], x[0, 17, 23])
        let c = concat([x, x.slice(axis: 1, start: 5, length: 10)], axis: 1)
        XCTAssertEqual(c.shape, [20, 40, 40])
        XCTAssertEqual(c[13, 35, 7], x[13, 10, 7])
        // embedding-style gradient with a wide inner dimension (scatter-add split over columns)
        let table = uniform([10, 600], seed: 179)
        let g = gradient(at: table) { $0.indexSelect([3, 3, 7, 3]).sum() }
        XCTAssertEqual(g[3, 599], 3)
        XCTAssertEqual(g[7, 0], 1)
        XCTAssertEqual(g[0, 300], 0)
    }

    func testBatchedAttentionLarge() {
        // B·H = 8 heads split across threads; fused vs composed attention.
        let q = uniform([2, 4, 16, 8], seed: 180), k = uniform([2, 2, 24, 8], seed: 181), v = uniform([2, 2, 24, 8], seed: 182)
        let fused = scaledDotProductAttention(query: q, key: k, value: v, causal: true)
        let (composed, _) = attentionWithProbabilities(query: q, key: k, value: v, causal: true)
        assertClose(fused, composed, accuracy: 1e-5)
    }
}
