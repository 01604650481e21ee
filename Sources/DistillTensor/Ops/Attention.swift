import CDistillKernels
import Foundation

/// Scaled dot-product attention with grouped-query heads.
///
/// Shapes: query [B, Hq, T, D], key [B, Hkv, S, D], value [B, Hkv, S, Dv] with Hq a multiple of
/// Hkv (query head h reads key/value head h / (Hq/Hkv)). `causal` lets query i see keys
/// j ≤ i + (S − T) (the queries are the last T positions, as with a KV cache). `mask` is added to
/// the scores: shape [T, S] or [B or 1, Hq or 1, T or 1, S]; it is treated as a constant.
/// The fused op computes softmax(q·kᵀ·scale + mask)·v per head with one GEMM each way and keeps
/// the probabilities for its backward pass.
public struct AttentionShape: Equatable {
    public let batch, queryHeads, kvHeads, queries, keys, headDim, valueDim: Int

    public init(query: [Int], key: [Int], value: [Int], mask: [Int]?) throws {
        guard query.count == 4, key.count == 4, value.count == 4 else {
            throw TensorError.shapeMismatch(op: "attention", shapes: [query, key, value], reason: "expected rank-4 [B, H, T, D] operands")
        }
        batch = query[0]; queryHeads = query[1]; queries = query[2]; headDim = query[3]
        kvHeads = key[1]; keys = key[2]; valueDim = value[3]
        guard key[0] == batch, value[0] == batch, value[1] == kvHeads, value[2] == keys, key[3] == headDim else {
            throw TensorError.shapeMismatch(op: "attention", shapes: [query, key, value],
                                            reason: "batch, head, length or head-dimension sizes disagree")
        }
        guard kvHeads > 0, queryHeads % kvHeads == 0 else {
            throw TensorError.shapeMismatch(op: "attention", shapes: [query, key],
                                            reason: "\(queryHeads) query heads are not a multiple of \(kvHeads) key/value heads")
        }
        if let m = mask {
            let ok = (m.count == 2 && m == [queries, keys])
                || (m.count == 4 && (m[0] == 1 || m[0] == batch) && (m[1] == 1 || m[1] == queryHeads)
                    && (m[2] == 1 || m[2] == queries) && m[3] == keys)
            guard ok else {
                throw TensorError.shapeMismatch(op: "attention", shapes: [query, key, m],
                                                reason: "mask must be [T, S] or broadcast to [B, Hq, T, S]")
            }
        }
    }
}

/// Locates the mask row for (b, h, i): base offset per head and the stride between query rows.
struct MaskLayout {
    let pointer: UnsafeMutablePointer<Float>?
    let bStride, hStride, rowStride: Int

    init(_ mask: Tensor?, shape s: AttentionShape) {
        guard let mask else { pointer = nil; bStride = 0; hStride = 0; rowStride = 0; return }
        pointer = mask.storage.pointer
        if mask.rank == 2 { bStride = 0; hStride = 0; rowStride = s.keys; return }
        let m = mask.shape
        rowStride = m[2] == 1 ? 0 : s.keys
        hStride = m[1] == 1 ? 0 : m[2] * s.keys
        bStride = m[0] == 1 ? 0 : m[1] * m[2] * s.keys
    }
}

public func scaledDotProductAttention(query q: Tensor, key k: Tensor, value v: Tensor, mask: Tensor? = nil,
                                      causal: Bool, scale: Float? = nil) -> Tensor {
    let s = validated { try AttentionShape(query: q.shape, key: k.shape, value: v.shape, mask: mask?.shape) }
    let sc = scale ?? 1 / Float(s.headDim).squareRoot()
    let (out, probs) = attentionForward(q, k, v, mask: mask, causal: causal, scale: sc, shape: s)
    return out.recorded(.attention(scale: sc, causal: causal, probs: probs), [q, k, v])
}

/// Attention that also returns the probabilities [B, Hq, T, S], both differentiable (for attention
/// distillation). Built from separate ops, so it costs more memory than the fused op. `softcap`
/// bounds the scores before the mask, as Gemma 2 does: s ← cap · tanh(s / cap).
///
/// `dropProbabilities` (attention dropout) transforms the probabilities before they weigh the
/// values; the probabilities returned are the untransformed ones.
public func attentionWithProbabilities(query q: Tensor, key k: Tensor, value v: Tensor, mask: Tensor? = nil,
                                       causal: Bool, scale: Float? = nil, softcap: Float? = nil,
                                       dropProbabilities: ((Tensor) -> Tensor)? = nil) -> (output: Tensor, probabilities: Tensor) {
    let s = validated { try AttentionShape(query: q.shape, key: k.shape, value: v.shape, mask: mask?.shape) }
    let sc = scale ?? 1 / Float(s.headDim).squareRoot()
    let group = s.queryHeads / s.kvHeads
    func expand(_ x: Tensor) -> Tensor {
        if group == 1 { return x }
        let d = x.shape[3]
        // [B, Hkv, S, D] -> [B, Hkv, g, S, D] -> [B, Hq, S, D]
        return x.unsqueezed(2).broadcast(to: [s.batch, s.kvHeads, group, s.keys, d])
            .reshaped([s.batch, s.queryHeads, s.keys, d])
    }
    var scores = q.matmul(expand(k), transB: true) * sc          // [B, Hq, T, S]
    if let cap = softcap { scores = (scores * (1 / cap)).tanh() * cap }
    if let mask { scores = scores + mask.detached() }
    if causal { scores = scores + Tensor.causalMask(queries: s.queries, keys: s.keys) }
    let p = scores.softmax(axis: -1)
    return ((dropProbabilities?(p) ?? p).matmul(expand(v)), p)
}

/// Attention over keys and values kept in capacity buffers `[R, Hkv, C, D]` (a KV cache that
/// grows in place), of which the first `batch` rows (default R) and `length` positions are valid:
/// the same result as `scaledDotProductAttention` on those, without copying them out.
/// Inference only (nothing is recorded for gradients).
public func cachedAttention(query q: Tensor, keys k: Tensor, values v: Tensor, length: Int, batch: Int? = nil, mask: Tensor? = nil,
                            causal: Bool, scale: Float? = nil) -> Tensor {
    let rows = batch ?? k.shape[0]
    precondition(k.rank == 4 && v.rank == 4 && length <= k.shape[2] && k.shape[2] == v.shape[2],
                 "cachedAttention: buffers \(k.shape), \(v.shape) hold fewer than \(length) positions")
    precondition(rows <= k.shape[0] && rows <= v.shape[0], "cachedAttention: buffers \(k.shape), \(v.shape) hold fewer than \(rows) rows")
    let s = validated {
        try AttentionShape(query: q.shape, key: [rows, k.shape[1], length, k.shape[3]],
                           value: [rows, v.shape[1], length, v.shape[3]], mask: mask?.shape)
    }
    let sc = scale ?? 1 / Float(s.headDim).squareRoot()
    return attentionForward(q, k, v, mask: mask, causal: causal, scale: sc, shape: s, capacity: k.shape[2],
                            keepProbabilities: false).0
}

/// Queries per block in the attention kernels: with a causal mask, a block's products with the
/// keys after its last query are skipped (about 3/8 of the work at 256 positions).
let attentionQueryBlock = 64

func attentionForward(_ q: Tensor, _ k: Tensor, _ v: Tensor, mask: Tensor?, causal: Bool, scale: Float,
                      shape s: AttentionShape, capacity: Int? = nil, keepProbabilities: Bool = true) -> (Tensor, Tensor) {
    let t = s.queries, n = s.keys, d = s.headDim, dv = s.valueDim, group = s.queryHeads / s.kvHeads
    let c = capacity ?? n        // key/value rows per (batch, kv head) block in memory
    let out = Tensor(uninitializedShape: [s.batch, s.queryHeads, t, dv])
    // Without a caller for the probabilities, one scratch row block per worker is enough.
    let probs = Tensor(uninitializedShape: keepProbabilities ? [s.batch, s.queryHeads, t, n] : [0])
    let pq = q.storage.pointer, pk = k.storage.pointer, pv = v.storage.pointer
    let po = out.storage.pointer, pp = probs.storage.pointer
    let ml = MaskLayout(mask, shape: s)
    parallelFor(s.batch * s.queryHeads, grain: 1) { range in
        let scratch = keepProbabilities ? nil : UnsafeMutablePointer<Float>.allocate(capacity: t * n)
        defer { scratch?.deallocate() }
        for bh in range {
            let b = bh / s.queryHeads, h = bh % s.queryHeads, kvh = b * s.kvHeads + h / group
            let p = scratch ?? pp + bh * t * n
            let kp = pk + kvh * c * d, vp = pv + kvh * c * dv
            /// Row i of the scores, its first `keys` entries computed: mask, causal limit, softmax;
            /// the entries past what the row sees become 0.
            func normalize(row i: Int, keys: Int) {
                let row = p + i * n
                if let mp = ml.pointer {
                    let mrow = mp + b * ml.bStride + h * ml.hStride + i * ml.rowStride
                    for j in 0..<keys { row[j] += mrow[j] }
                }
                let visible = causal ? min(keys, i + (n - t) + 1) : keys
                let m = dk_vmax(row, visible)
                if m == -Float.infinity {          // nothing visible: the row attends to nothing
                    row.update(repeating: 0, count: n)
                    return
                }
                let inv = 1 / Float(dk_sum_exp(row, visible, 1, m, row))
                for j in 0..<visible { row[j] *= inv }
                (row + visible).update(repeating: 0, count: n - visible)
            }
            if t == 1 {
                // One query (decoding): dot products with each key, then the weighted sum of values.
                let qp = pq + bh * d
                for j in 0..<n { p[j] = dk_sdot(qp, kp + j * d, d) * scale }
                normalize(row: 0, keys: n)
                let o = po + bh * dv
                o.update(repeating: 0, count: dv)
                for j in 0..<n where p[j] != 0 { dk_saxpy(p[j], vp + j * dv, o, dv) }
                continue
            }
            for i0 in stride(from: 0, to: t, by: attentionQueryBlock) {
                let rows = min(attentionQueryBlock, t - i0), keys = attentionKeys(queries: i0 + rows, t: t, n: n, causal: causal)
                let o = po + (bh * t + i0) * dv
                guard keys > 0 else {
                    (p + i0 * n).update(repeating: 0, count: rows * n)
                    o.update(repeating: 0, count: rows * dv)
                    continue
                }
                // scores = scale · q·kᵀ   (rows, keys)
                Gemm.sgemm(transA: false, transB: true, m: rows, n: keys, k: d, alpha: scale, a: pq + (bh * t + i0) * d, lda: d,
                           b: kp, ldb: d, c: p + i0 * n, ldc: n, backend: .builtin, threaded: false)
                for i in i0..<(i0 + rows) { normalize(row: i, keys: keys) }
                // out = P·v   (rows, Dv)
                Gemm.sgemm(transA: false, transB: false, m: rows, n: dv, k: keys, a: p + i0 * n, lda: n, b: vp, ldb: dv,
                           c: o, ldc: dv, backend: .builtin, threaded: false)
            }
        }
    }
    return (out, probs)
}

/// Keys that queries 0..<queries see: all n, or with a causal mask those up to the last query's
/// position (the queries are the last t of n positions).
@inline(__always)
func attentionKeys(queries: Int, t: Int, n: Int, causal: Bool) -> Int {
    causal ? Swift.max(0, Swift.min(n, queries + (n - t))) : n
}

/// Backward of the fused attention, per key/value head so that the query heads sharing it add
/// their dK, dV contributions without races:
///   dV = Σ_h Pᵀ·dO,  dP = dO·vᵀ,  dS = P ⊙ (dP − rowsum(P ⊙ dP)),
///   dQ = scale·dS·k,  dK = Σ_h scale·dSᵀ·q.
func attentionBackward(q: Tensor, k: Tensor, v: Tensor, probs: Tensor, scale: Float, causal: Bool, grad g: Tensor) -> (Tensor, Tensor, Tensor) {
    let b = q.shape[0], hq = q.shape[1], t = q.shape[2], d = q.shape[3]
    let hkv = k.shape[1], n = k.shape[2], dv = v.shape[3], group = hq / hkv
    let gq = Tensor(uninitializedShape: q.shape), gk = Tensor(zeros: k.shape), gv = Tensor(zeros: v.shape)
    let pq = q.storage.pointer, pk = k.storage.pointer, pv = v.storage.pointer, pp = probs.storage.pointer
    let pg = g.storage.pointer, pgq = gq.storage.pointer, pgk = gk.storage.pointer, pgv = gv.storage.pointer
    parallelFor(b * hkv, grain: 1) { range in
        let ds = UnsafeMutablePointer<Float>.allocate(capacity: attentionQueryBlock * n)
        defer { ds.deallocate() }
        for bk in range {
            let bi = bk / hkv, kh = bk % hkv
            let kp = pk + bk * n * d, vp = pv + bk * n * dv, gkp = pgk + bk * n * d, gvp = pgv + bk * n * dv
            for hh in 0..<group {
                let bh = bi * hq + kh * group + hh
                // By blocks of queries; with a causal mask, only the keys the block sees (the
                // probabilities of the others are 0 and add nothing).
                for i0 in stride(from: 0, to: t, by: attentionQueryBlock) {
                    let rows = min(attentionQueryBlock, t - i0), keys = attentionKeys(queries: i0 + rows, t: t, n: n, causal: causal)
                    let p = pp + (bh * t + i0) * n, go = pg + (bh * t + i0) * dv, qp = pq + (bh * t + i0) * d
                    let gqp = pgq + (bh * t + i0) * d
                    guard keys > 0 else { gqp.update(repeating: 0, count: rows * d); continue }
                    // dV += Pᵀ·dO   (keys, Dv)
                    Gemm.sgemm(transA: true, transB: false, m: keys, n: dv, k: rows, a: p, lda: n, b: go, ldb: dv,
                               beta: 1, c: gvp, ldc: dv, backend: .builtin, threaded: false)
                    // dP = dO·vᵀ   (rows, keys)
                    Gemm.sgemm(transA: false, transB: true, m: rows, n: keys, k: dv, a: go, lda: dv, b: vp, ldb: dv,
                               c: ds, ldc: keys, backend: .builtin, threaded: false)
                    for i in 0..<rows {
                        let pr = p + i * n, dr = ds + i * keys
                        let dot = dk_sdot(pr, dr, keys)
                        for j in 0..<keys { dr[j] = pr[j] * (dr[j] - dot) }
                    }
                    // dQ = scale·dS·k   (rows, D)
                    Gemm.sgemm(transA: false, transB: false, m: rows, n: d, k: keys, alpha: scale, a: ds, lda: keys, b: kp, ldb: d,
                               c: gqp, ldc: d, backend: .builtin, threaded: false)
                    // dK += scale·dSᵀ·q   (keys, D)
                    Gemm.sgemm(transA: true, transB: false, m: keys, n: d, k: rows, alpha: scale, a: ds, lda: keys, b: qp, ldb: d,
                               beta: 1, c: gkp, ldc: d, backend: .builtin, threaded: false)
                }
            }
        }
    }
    return (gq, gk, gv)
}
