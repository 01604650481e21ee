/// Fused normalisation layers over the last axis.

extension Tensor {
    /// RMSNorm: y = x / √(mean(x²) + eps) · weight, over the last axis (as Llama and Qwen2 compute it).
    public func rmsNorm(weight: Tensor, eps: Float) -> Tensor {
        let d = shape.last ?? 1
        precondition(weight.shape == [d], "rmsNorm: weight \(weight.shape) does not match last axis of \(shape)")
        let rows = count / Swift.max(d, 1)
        let out = Tensor(uninitializedShape: shape)
        var rstd = [Float](repeating: 0, count: rows)
        let px = storage.pointer, pw = weight.storage.pointer, po = out.storage.pointer
        rstd.withUnsafeMutableBufferPointer { rs in
            let prs = rs.baseAddress!
            parallelFor(rows, grain: Swift.max(1, 4096 / Swift.max(d, 1))) { r in
                var row = r.lowerBound
                while row < r.upperBound {
                    let n = Swift.min(4, r.upperBound - row)
                    let ss = rowSums(n, px + row * d, nil, nil, d: d)
                    for i in 0..<n {
                        let x = px + (row + i) * d, y = po + (row + i) * d
                        let inv = 1 / (ss[i] / Float(d) + eps).squareRoot()
                        prs[row + i] = inv
                        for j in 0..<d { y[j] = x[j] * inv * pw[j] }
                    }
                    row += n
                }
            }
        }
        return out.recorded(.rmsNorm(rstd: rstd), [self, weight])
    }

    /// LayerNorm: y = (x − μ)/√(σ² + eps) · weight + bias over the last axis (biased variance).
    public func layerNorm(weight: Tensor, bias: Tensor?, eps: Float) -> Tensor {
        let d = shape.last ?? 1
        precondition(weight.shape == [d], "layerNorm: weight \(weight.shape) does not match last axis of \(shape)")
        if let bias { precondition(bias.shape == [d], "layerNorm: bias \(bias.shape) does not match last axis of \(shape)") }
        let rows = count / Swift.max(d, 1)
        let out = Tensor(uninitializedShape: shape)
        var stats = [Float](repeating: 0, count: 2 * rows)   // (mean, rstd) per row
        let px = storage.pointer, pw = weight.storage.pointer, pb = bias?.storage.pointer, po = out.storage.pointer
        stats.withUnsafeMutableBufferPointer { st in
            let ps = st.baseAddress!
            parallelFor(rows, grain: Swift.max(1, 4096 / Swift.max(d, 1))) { r in
                for row in r {
                    let x = px + row * d, y = po + row * d
                    var s: Float = 0
                    for j in 0..<d { s += x[j] }
                    let mean = s / Float(d)
                    var v: Float = 0
                    for j in 0..<d { let c = x[j] - mean; v += c * c }
                    let inv = 1 / (v / Float(d) + eps).squareRoot()
                    ps[2 * row] = mean
                    ps[2 * row + 1] = inv
                    for j in 0..<d { y[j] = (x[j] - mean) * inv * pw[j] + (pb?[j] ?? 0) }
                }
            }
        }
        let inputs = bias.map { [self, weight, $0] } ?? [self, weight]
        return out.recorded(.layerNorm(stats: stats), inputs)
    }
}

/// RMSNorm backward. With u = g⊙w and r = rstd: dx = r·u − x·r³·(Σ u⊙x)/d;  dw = Σ_rows g⊙x·r.
func rmsNormBackward(x: Tensor, weight: Tensor, rstd: [Float], grad g: Tensor) -> (Tensor, Tensor) {
    let d = weight.count, rows = x.count / Swift.max(d, 1)
    let gx = Tensor(uninitializedShape: x.shape)
    let px = x.storage.pointer, pw = weight.storage.pointer, pg = g.storage.pointer, po = gx.storage.pointer
    rstd.withUnsafeBufferPointer { rs in
        parallelFor(rows, grain: Swift.max(1, 4096 / Swift.max(d, 1))) { r in
            var row = r.lowerBound
            while row < r.upperBound {
                let n = Swift.min(4, r.upperBound - row)
                let dots = rowSums(n, pg + row * d, pw, px + row * d, d: d)
                for i in 0..<n {
                    let xx = px + (row + i) * d, gg = pg + (row + i) * d, oo = po + (row + i) * d
                    let inv = rs[row + i]
                    let c = inv * inv * inv * dots[i] / Float(d)
                    for j in 0..<d { oo[j] = inv * gg[j] * pw[j] - xx[j] * c }
                }
                row += n
            }
        }
    }
    let gw = columnSums(rows: rows, d: d) { row, acc in
        let xx = px + row * d, gg = pg + row * d, inv = rstd[row]
        for j in 0..<d { acc[j] += gg[j] * xx[j] * inv }
    }
    return (gx, gw)
}

/// LayerNorm backward. With x̂ = (x−μ)·r, u = g⊙w: dx = r·(u − mean(u) − x̂·mean(u⊙x̂));
/// dw = Σ g⊙x̂; db = Σ g.
func layerNormBackward(x: Tensor, weight: Tensor, stats: [Float], grad g: Tensor) -> (Tensor, Tensor, Tensor) {
    let d = weight.count, rows = x.count / Swift.max(d, 1)
    let gx = Tensor(uninitializedShape: x.shape)
    let px = x.storage.pointer, pw = weight.storage.pointer, pg = g.storage.pointer, po = gx.storage.pointer
    stats.withUnsafeBufferPointer { st in
        parallelFor(rows, grain: Swift.max(1, 4096 / Swift.max(d, 1))) { r in
            for row in r {
                let xx = px + row * d, gg = pg + row * d, oo = po + row * d
                let mean = st[2 * row], inv = st[2 * row + 1]
                var su: Float = 0, sux: Float = 0
                for j in 0..<d {
                    let u = gg[j] * pw[j]
                    su += u
                    sux += u * (xx[j] - mean) * inv
                }
                su /= Float(d)
                sux /= Float(d)
                for j in 0..<d { oo[j] = inv * (gg[j] * pw[j] - su - (xx[j] - mean) * inv * sux) }
            }
        }
    }
    let gw = columnSums(rows: rows, d: d) { row, acc in
        let xx = px + row * d, gg = pg + row * d, mean = stats[2 * row], inv = stats[2 * row + 1]
        for j in 0..<d { acc[j] += gg[j] * (xx[j] - mean) * inv }
    }
    let gb = columnSums(rows: rows, d: d) { row, acc in
        let gg = pg + row * d
        for j in 0..<d { acc[j] += gg[j] }
    }
    return (gx, gw, gb)
}

/// For rows i in 0..<n (n ≤ 4), row i's vectors at a + i·d and c + i·d: Σ_j a[j]·w[j]·c[j], or
/// without w and c Σ_j a[j]·a[j]. Each sum is added in j order as a one-row loop adds it (so the
/// same bits), but four rows go at once: four independent chains of additions where one row's
/// chain waits on each addition (RMSNorm's rows took about twice as long).
@inline(__always)
func rowSums(_ n: Int, _ a: UnsafePointer<Float>, _ w: UnsafePointer<Float>?, _ c: UnsafePointer<Float>?, d: Int) -> SIMD4<Float> {
    @inline(__always) func term(_ i: Int, _ j: Int) -> Float {
        let x = a[i * d + j]
        if let w, let c { return x * w[j] * c[i * d + j] }
        return x * x
    }
    guard n == 4 else {
        var s = SIMD4<Float>()
        for i in 0..<n { var t: Float = 0; for j in 0..<d { t += term(i, j) }; s[i] = t }
        return s
    }
    var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
    for j in 0..<d {
        s0 += term(0, j); s1 += term(1, j); s2 += term(2, j); s3 += term(3, j)
    }
    return SIMD4(s0, s1, s2, s3)
}

/// Σ over rows of per-row contributions to a length-d vector: rows in fixed blocks (of about
/// 32768 values), each block's partial sum on some thread, the partials added in order — so the
/// bits do not depend on the thread count (the blocks were one per thread, and a norm's weight
/// gradient changed in its last bits from one machine to another).
func columnSums(rows: Int, d: Int, _ add: (Int, UnsafeMutablePointer<Float>) -> Void) -> Tensor {
    let blockRows = Swift.max(1, 32768 / Swift.max(d, 1))
    let parts = Swift.max(1, (rows + blockRows - 1) / blockRows)
    let partial = Tensor(zeros: [parts, d])
    let pp = partial.storage.pointer
    parallelFor(parts, grain: 1) { r in
        for p in r {
            for row in (p * blockRows)..<Swift.min(rows, (p + 1) * blockRows) { add(row, pp + p * d) }
        }
    }
    if parts == 1 { return partial.reshaped([d]) }
    return sumAxisKernel(partial, axis: 0).reshaped([d])
}
