import CDistillKernels
import Foundation

/// Softmax or log-softmax of each row of length `n` (the last axis), written into `out`.
@inline(__always)
func softmaxRows(_ px: UnsafePointer<Float>, _ po: UnsafeMutablePointer<Float>, rows: Int, n: Int, log: Bool) {
    parallelFor(rows, grain: Swift.max(1, 4096 / Swift.max(n, 1))) { r in
        for row in r {
            let x = px + row * n, y = po + row * n
            var m = dk_vmax(x, n)
            if !m.isFinite { m = 0 }
            // Σ exp in Double: over a large vocabulary most terms are far below the sum's last
            // Float digit and would be dropped (a bias of ~1e-4 in log-probabilities at 49k tokens).
            let sd = dk_sum_exp(x, n, 1, m, y)
            let s = Float(sd)
            if log {
                let logS = Float(Foundation.log(sd))
                for j in 0..<n { y[j] = (x[j] - m) - logS }   // not x − (m + log s): keeps digits for large x
            } else {
                let inv = 1 / s
                for j in 0..<n { y[j] *= inv }
            }
        }
    }
}

extension Tensor {
    /// exp(x - logsumexp(x)) along `axis` (default: last).
    public func softmax(axis: Int = -1) -> Tensor { softmaxOp(axis: axis, log: false) }

    /// x - logsumexp(x) along `axis` (default: last).
    public func logSoftmax(axis: Int = -1) -> Tensor { softmaxOp(axis: axis, log: true) }

    private func softmaxOp(axis: Int, log: Bool) -> Tensor {
        let a = normalizeAxis(axis, rank: rank, op: log ? "logSoftmax" : "softmax")
        if a != rank - 1 {
            // Move the axis last, apply, move it back; autodiff flows through the permutes.
            return transposed(a, -1).softmaxOp(axis: -1, log: log).transposed(a, -1)
        }
        let n = shape.last ?? 1
        let out = Tensor(uninitializedShape: shape)
        softmaxRows(storage.pointer, out.storage.pointer, rows: count / Swift.max(n, 1), n: n, log: log)
        return out.recorded(log ? .logSoftmax : .softmax, [self])
    }
}

/// Backward of softmax over rows: dx = y ⊙ (g − Σ g⊙y); of log-softmax: dx = g − exp(y)·Σ g.
func softmaxBackward(y: Tensor, grad g: Tensor, log: Bool) -> Tensor {
    let n = y.shape.last ?? 1, rows = y.count / Swift.max(n, 1)
    let out = Tensor(uninitializedShape: y.shape)
    let py = y.storage.pointer, pg = g.storage.pointer, po = out.storage.pointer
    parallelFor(rows, grain: Swift.max(1, 4096 / Swift.max(n, 1))) { r in
        for row in r {
            let yy = py + row * n, gg = pg + row * n, oo = po + row * n
            var s: Float = 0
            if log {
                for j in 0..<n { s += gg[j] }
                for j in 0..<n { oo[j] = gg[j] - Foundation.exp(yy[j]) * s }
            } else {
                for j in 0..<n { s += gg[j] * yy[j] }
                for j in 0..<n { oo[j] = yy[j] * (gg[j] - s) }
            }
        }
    }
    return out
}
