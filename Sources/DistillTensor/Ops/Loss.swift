import CDistillKernels
import Foundation

extension Tensor {
    /// Mean cross-entropy of logits [..., V] against integer targets (one per row), PyTorch
    /// semantics: rows whose target is `ignoreIndex` are skipped; with label smoothing ε the target
    /// distribution is (1−ε)·onehot + ε/V, i.e. loss = (1−ε)·(−log p[t]) + ε·mean_j(−log p[j]).
    /// When every row is ignored the loss is 0 (PyTorch gives NaN) and so is the gradient.
    public func crossEntropy(targets: [Int], ignoreIndex: Int = -100, labelSmoothing: Float = 0) -> Tensor {
        let v = shape.last ?? 1, rows = count / Swift.max(v, 1)
        precondition(rank >= 1 && targets.count == rows,
                     "crossEntropy: \(targets.count) targets for logits of shape \(shape) (\(rows) rows)")
        precondition(labelSmoothing >= 0 && labelSmoothing <= 1, "crossEntropy: label smoothing \(labelSmoothing) outside [0, 1]")
        validated { try validateIndices(targets.filter { $0 != ignoreIndex }, size: v, op: "crossEntropy") }
        var lse = [Float](repeating: 0, count: rows)
        var losses = [Double](repeating: 0, count: rows)
        let px = storage.pointer, eps = labelSmoothing
        lse.withUnsafeMutableBufferPointer { lb in
            losses.withUnsafeMutableBufferPointer { lo in
                let pl = lb.baseAddress!, plo = lo.baseAddress!
                parallelFor(rows, grain: Swift.max(1, 4096 / Swift.max(v, 1))) { r in
                    for row in r where targets[row] != ignoreIndex {
                        let x = px + row * v
                        let m = dk_vmax(x, v)
                        // Σ exp(x − m) in Double: small terms must not vanish below the sum's last digit.
                        let logS = Float(Foundation.log(dk_sum_exp(x, v, 1, m, nil)))
                        pl[row] = m + logS
                        // −log p_t = (m − x_t) + log s: no rounding of m + log s at large logits.
                        let nll = (m - x[targets[row]]) + logS
                        guard eps != 0 else { plo[row] = Double(nll); continue }
                        var sumShifted: Double = 0
                        for j in 0..<v { sumShifted += Double(x[j] - m) }
                        let smooth = logS - Float(sumShifted / Double(v))    // mean_j(−log p_j)
                        plo[row] = Double((1 - eps) * nll + eps * smooth)
                    }
                }
            }
        }
        let counted = targets.reduce(0) { $0 + ($1 == ignoreIndex ? 0 : 1) }
        let total = losses.reduce(0, +)
        let out = Tensor(scalar: counted == 0 ? 0 : Float(total / Double(counted)))
        return out.recorded(.crossEntropy(targets: targets, ignoreIndex: ignoreIndex, smoothing: eps,
                                          logSumExp: lse, count: counted), [self])
    }
}

/// dL/dlogits = g · (softmax − ((1−ε)·onehot + ε/V)) / count on counted rows, 0 on ignored ones.
func crossEntropyBackward(logits x: Tensor, targets: [Int], ignoreIndex: Int, smoothing eps: Float,
                          logSumExp lse: [Float], count: Int, grad g: Tensor) -> Tensor {
    let v = x.shape.last ?? 1, rows = x.count / Swift.max(v, 1)
    let out = Tensor(uninitializedShape: x.shape)
    let px = x.storage.pointer, po = out.storage.pointer
    let scale = count == 0 ? 0 : g.item / Float(count)
    let uniform = eps / Float(v)
    parallelFor(rows, grain: Swift.max(1, 4096 / Swift.max(v, 1))) { r in
        for row in r {
            let xx = px + row * v, oo = po + row * v
            let t = targets[row]
            if t == ignoreIndex || scale == 0 {
                for j in 0..<v { oo[j] = 0 }
                continue
            }
            dk_exp_affine(xx, v, 1, lse[row], scale, -scale * uniform, oo)   // scale·(exp(x − lse) − ε/V)
            oo[t] -= scale * (1 - eps)
        }
    }
    return out
}
