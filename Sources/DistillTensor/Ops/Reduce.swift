import Foundation

/// Sum over one axis of a tensor viewed as (outer, n, inner).
func sumAxisKernel(_ x: Tensor, axis: Int) -> Tensor {
    let (outer, n, inner) = splitAround(x.shape, axis: axis)
    var shape = x.shape
    shape[axis] = 1
    let out = Tensor(uninitializedShape: shape)
    let px = x.storage.pointer, po = out.storage.pointer
    if inner == 1 {
        parallelFor(outer, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { r in
            for o in r {
                let row = px + o * n
                // Four partial sums: vectorises and keeps rounding error low for long rows.
                var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
                var k = 0
                while k + 4 <= n { s0 += row[k]; s1 += row[k + 1]; s2 += row[k + 2]; s3 += row[k + 3]; k += 4 }
                while k < n { s0 += row[k]; k += 1 }
                po[o] = (s0 + s1) + (s2 + s3)
            }
        }
    } else {
        parallelFor(outer * inner, grain: 4096) { r in
            // Work item w covers output (o, i); walk contiguous inner runs for speed.
            var w = r.lowerBound
            while w < r.upperBound {
                let o = w / inner, i0 = w % inner
                let i1 = min(inner, i0 + (r.upperBound - w))
                let dst = po + o * inner
                for i in i0..<i1 { dst[i] = 0 }
                for k in 0..<n {
                    let src = px + (o * n + k) * inner
                    for i in i0..<i1 { dst[i] += src[i] }
                }
                w += i1 - i0
            }
        }
    }
    return out
}

extension Tensor {
    /// Sum over `axes` (all axes when empty). With `keepDims`, reduced axes stay with size 1.
    public func sum(axes: [Int] = [], keepDims: Bool = false) -> Tensor {
        let ax = normalizedAxes(axes, op: "sum")
        var y = self.detached()
        for a in ax.sorted(by: >) { y = sumAxisKernel(y, axis: a) }
        let keptShape = y.shape
        let outShape = keepDims ? keptShape : shape.enumerated().filter { !ax.contains($0.offset) }.map(\.element)
        return Tensor(shape: outShape, storage: y.storage).recorded(.sum(keptShape: keptShape), [self])
    }

    public func sum(axis: Int, keepDims: Bool = false) -> Tensor { sum(axes: [axis], keepDims: keepDims) }

    /// Mean over `axes` (all axes when empty).
    public func mean(axes: [Int] = [], keepDims: Bool = false) -> Tensor {
        let ax = normalizedAxes(axes, op: "mean")
        let n = ax.reduce(1) { $0 * shape[$1] }
        return sum(axes: ax, keepDims: keepDims) * (1 / Float(Swift.max(n, 1)))
    }

    public func mean(axis: Int, keepDims: Bool = false) -> Tensor { mean(axes: [axis], keepDims: keepDims) }

    /// Maximum along `axis`. The gradient flows to the first position holding the maximum.
    public func max(axis: Int, keepDims: Bool = false) -> Tensor {
        let a = normalizeAxis(axis, rank: rank, op: "max")
        let (outer, n, inner) = splitAround(shape, axis: a)
        precondition(n > 0, "max: axis \(axis) of shape \(shape) is empty")
        var kept = shape
        kept[a] = 1
        let out = Tensor(uninitializedShape: kept)
        var argmax = [Int32](repeating: 0, count: outer * inner)
        let px = storage.pointer, po = out.storage.pointer
        argmax.withUnsafeMutableBufferPointer { am in
            let pam = am.baseAddress!
            parallelFor(outer * inner, grain: Swift.max(1, 4096 / n)) { r in
                for w in r {
                    let o = w / inner, i = w % inner
                    var best = px[o * n * inner + i], bi = 0
                    for k in 1..<n {
                        let v = px[(o * n + k) * inner + i]
                        if v > best || (best.isNaN == false && v.isNaN) { best = v; bi = k }
                    }
                    po[w] = best
                    pam[w] = Int32(bi)
                }
            }
        }
        var outShape = kept
        if !keepDims { outShape.remove(at: a) }
        return Tensor(shape: outShape, storage: out.storage).recorded(.max(axis: a, argmax: argmax), [self])
    }

    /// log Σ exp(x) along `axis`, computed stably as m + log Σ exp(x - m).
    public func logSumExp(axis: Int, keepDims: Bool = false) -> Tensor {
        let a = normalizeAxis(axis, rank: rank, op: "logSumExp")
        let m = withoutGradients { self.max(axis: a, keepDims: true) }
        let finiteM = mapKernel(m, FiniteOrZero())
        let shifted = withoutGradients { (self.detached() - finiteM).exp().sum(axis: a, keepDims: true) }
        let y = zipKernel(shifted, finiteM, LogPlus())
        var outShape = shape
        if keepDims { outShape[a] = 1 } else { outShape.remove(at: a) }
        return Tensor(shape: outShape, storage: y.storage).recorded(.logSumExp(axis: a), [self])
    }

    func normalizedAxes(_ axes: [Int], op: String) -> [Int] {
        if axes.isEmpty { return Array(0..<rank) }
        let ax = axes.map { normalizeAxis($0, rank: rank, op: op) }
        precondition(Set(ax).count == ax.count, "\(op): repeated axis in \(axes)")
        return ax
    }
}

/// x, or 0 where x is ±∞ or NaN (a row's maximum, before it is subtracted).
private struct FiniteOrZero: ElementMap { func callAsFunction(_ x: Float) -> Float { x.isFinite ? x : 0 } }
/// log(s) + m: a log-sum-exp from its shifted sum and its shift.
private struct LogPlus: ElementZip { func callAsFunction(_ s: Float, _ m: Float) -> Float { Foundation.log(s) + m } }
