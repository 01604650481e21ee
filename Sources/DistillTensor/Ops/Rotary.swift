import CDistillKernels
import Foundation

/// Rotary position embedding (RoPE) in the Hugging Face layout ("rotate half"): the head dimension
/// D is split into halves (x₁, x₂) and each pair (x₁[i], x₂[i]) is rotated by angle θᵢ·position:
///   y₁ = x₁·cos − x₂·sin,   y₂ = x₂·cos + x₁·sin.
extension Tensor {
    /// Applies RoPE to `self` of shape [..., T, D] given `cos` and `sin` of shape [T, D/2] (same
    /// positions for every sequence) or [B, T, D/2] for `self` of shape [B, H, T, D]. Narrower
    /// tables, [·, R/2] with R < D, rotate only the first R dimensions (partial rotary).
    public func rotaryEmbedding(cos: Tensor, sin: Tensor) -> Tensor {
        let out = rotaryKernel(self, cos: cos, sin: sin, inverse: false)
        return out.recorded(.rotary(cos: cos.detached(), sin: sin.detached()), [self])
    }

    /// cos and sin tables [positions.count, D/2] for inverse frequencies `invFreq` (D/2 values).
    public static func rotaryTables(positions: [Int], invFreq: [Float]) -> (cos: Tensor, sin: Tensor) {
        let half = invFreq.count
        let c = Tensor(uninitializedShape: [positions.count, half]), s = Tensor(uninitializedShape: [positions.count, half])
        for (t, p) in positions.enumerated() {
            for i in 0..<half {
                // Angle in Float like transformers (inv_freq in float32 times the position).
                let angle = Float(p) * invFreq[i]
                c.storage.pointer[t * half + i] = Foundation.cos(angle)
                s.storage.pointer[t * half + i] = Foundation.sin(angle)
            }
        }
        return (c, s)
    }

    /// Standard inverse frequencies θᵢ = base^(−2i/D) for i in 0..<D/2.
    public static func rotaryInverseFrequencies(headDim: Int, base: Float) -> [Float] {
        (0..<(headDim / 2)).map { i in 1 / Foundation.pow(base, Float(2 * i) / Float(headDim)) }
    }
}

/// Rotates pairs; `inverse` rotates by −θ (the backward pass: Rᵀ = R(−θ)).
func rotaryKernel(_ x: Tensor, cos: Tensor, sin: Tensor, inverse: Bool) -> Tensor {
    precondition(x.rank >= 2, "rotaryEmbedding: expected [..., T, D], got \(x.shape)")
    // Tables of width R/2 rotate the first R dimensions (pairs i, i + R/2); the rest pass
    // through unchanged (partial rotary embeddings, e.g. Phi-4-mini).
    let t = x.shape[x.rank - 2], d = x.shape[x.rank - 1], half = cos.shape[cos.rank - 1]
    precondition(half >= 1 && 2 * half <= d, "rotaryEmbedding: tables of width \(half) do not fit head dimension \(d) of \(x.shape)")
    let perBatch = cos.rank == 3
    if perBatch {
        precondition(x.rank == 4 && cos.shape == [x.shape[0], t, half] && sin.shape == cos.shape,
                     "rotaryEmbedding: tables \(cos.shape)/\(sin.shape) do not fit \(x.shape) (expected [\(x.shape[0]), \(t), \(half)])")
    } else {
        precondition(cos.shape == [t, half] && sin.shape == cos.shape,
                     "rotaryEmbedding: tables \(cos.shape)/\(sin.shape) do not fit \(x.shape) (expected [\(t), \(half)])")
    }
    let heads = x.rank == 4 ? x.shape[1] : 1
    let out = Tensor(uninitializedShape: x.shape)
    let px = x.storage.pointer, po = out.storage.pointer, pc = cos.storage.pointer, ps = sin.storage.pointer
    let sign: Float = inverse ? -1 : 1
    let rows = x.count / d
    parallelFor(rows, grain: Swift.max(1, 4096 / d)) { r in
        // Consecutive rows of one sequence (and head) read consecutive table rows: one call each run.
        var row = r.lowerBound
        while row < r.upperBound {
            let pos = row % t, run = Swift.min(r.upperBound - row, t - pos)
            let table = perBatch ? ((row / t) / heads) * t * half + pos * half : pos * half
            dk_rotary_rows(px + row * d, po + row * d, run, d, half, pc + table, ps + table, sign, 0)
            row += run
        }
    }
    return out
}
