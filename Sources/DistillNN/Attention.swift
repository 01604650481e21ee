import DistillTensor

/// Multi-head self-attention with grouped-query heads and rotary position embeddings
/// (the Llama / Qwen2 layout: q_proj, k_proj, v_proj, o_proj), optionally with RMSNorm over each
/// head's queries and keys before the rotation (Qwen3: q_norm, k_norm) and a sliding window
/// (Mistral: each query sees itself and the `slidingWindow − 1` keys before it).
public final class Attention: Module {
    public let qProj: Linear
    public let kProj: Linear
    public let vProj: Linear
    public let oProj: Linear
    public let qNorm: RMSNorm?
    public let kNorm: RMSNorm?
    public let heads: Int
    public let kvHeads: Int
    public let headDim: Int
    public let slidingWindow: Int?
    /// Score scale (nil: 1/√headDim; Gemma 2: query_pre_attn_scalar^−½).
    public let scale: Float?
    /// Scores bounded as cap · tanh(s / cap) before the mask (Gemma 2's attn_logit_softcapping).
    public let softcap: Float?
    /// Prefix tuning (LoRA.swift): trainable keys and values [kvHeads, P, headDim] placed before
    /// the cached and current ones and visible to every query; nil when not attached.
    public internal(set) var prefixKeys: Parameter?
    public internal(set) var prefixValues: Parameter?
    /// Dropout on the attention probabilities while training (`DecoderDropout`); the probabilities
    /// returned for attention transfer are the undropped ones.
    public internal(set) var attentionDropout: Dropout?

    /// `qkvBias` puts biases on the q/k/v projections (Qwen2); the output projection has none.
    public init(hidden: Int, heads: Int, kvHeads: Int, headDim: Int? = nil, qkvBias: Bool = false,
                qkNorm: Bool = false, normEps: Float = 1e-6, normOffset: Float = 0, slidingWindow: Int? = nil, scale: Float? = nil,
                softcap: Float? = nil, rng: inout RandomGenerator) {
        precondition(heads % kvHeads == 0, "Attention: \(heads) heads not a multiple of \(kvHeads) kv heads")
        precondition(slidingWindow.map { $0 >= 1 } ?? true, "Attention: sliding window must be at least 1")
        let hd = headDim ?? hidden / heads
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = hd
        self.slidingWindow = slidingWindow
        self.scale = scale
        self.softcap = softcap
        qNorm = qkNorm ? RMSNorm(hd, eps: normEps, offset: normOffset) : nil
        kNorm = qkNorm ? RMSNorm(hd, eps: normEps, offset: normOffset) : nil
        qProj = Linear(hidden, heads * hd, bias: qkvBias, rng: &rng)
        kProj = Linear(hidden, kvHeads * hd, bias: qkvBias, rng: &rng)
        vProj = Linear(hidden, kvHeads * hd, bias: qkvBias, rng: &rng)
        oProj = Linear(heads * hd, hidden, bias: false, rng: &rng)
    }

    /// x: [B, T, hidden]; rope tables [T, headDim/2] or [B, T, headDim/2]. With a cache, the
    /// new keys and values are appended to it and attention covers all cached positions.
    /// Returns [B, T, hidden] and, on request, the attention probabilities [B, heads, T, S]
    /// (differentiable).
    public func callAsFunction(_ x: Tensor, rope: (cos: Tensor, sin: Tensor), mask: Tensor? = nil,
                               causal: Bool = true, cache: LayerKVCache? = nil,
                               returnProbabilities: Bool = false) -> (Tensor, Tensor?) {
        let b = x.shape[0], t = x.shape[1]
        // (B, T, H·D) -> (B, T, H, D) [-> per-head RMSNorm] -> (B, H, T, D)
        let qkv = Linear.apply([qProj, kProj, vProj], to: x)
        var q = qkv[0].reshaped([b, t, heads, headDim]), k0 = qkv[1].reshaped([b, t, kvHeads, headDim])
        if let qNorm { q = qNorm(q) }
        if let kNorm { k0 = kNorm(k0) }
        q = q.transposed(1, 2).rotaryEmbedding(cos: rope.cos, sin: rope.sin)
        var k = k0.transposed(1, 2).rotaryEmbedding(cos: rope.cos, sin: rope.sin)
        var v = qkv[2].reshaped([b, t, kvHeads, headDim]).transposed(1, 2)
        var mask = mask
        if let w = slidingWindow {
            // Keys are the cached ones and these T; query i is key (S − T + i).
            let keys = (cache?.length ?? 0) + t
            if keys > w { mask = Self.slidingWindowMask(mask, queries: t, keys: keys, window: w) }
        }
        // Generation: attend over the cache in place (no copy of the cached keys and values).
        if let cache, !returnProbabilities, prefixKeys == nil, softcap == nil, scale == nil, !GradientMode.isEnabled || (!q.requiresGrad && !k.requiresGrad && !v.requiresGrad) {
            let out = cache.appendAndAttend(query: q, keys: k, values: v, mask: mask, causal: causal)
            return (oProj(out.transposed(1, 2).reshaped([b, t, heads * headDim])), nil)
        }
        if let cache { (k, v) = cache.append(keys: k, values: v) }   // (B, Hkv, S, D)
        if let pk = prefixKeys?.value, let pv = prefixValues?.value, pk.shape[1] > 0 {
            // (Hkv, P, D) -> (1, Hkv, P, D) -> (B, Hkv, P, D); keys become (B, Hkv, P + S, D).
            // The causal rule (query i sees keys j ≤ i + keys − T) then shows every prefix key.
            let p = pk.shape[1]
            k = concat([pk.unsqueezed(0).broadcast(to: [b, kvHeads, p, headDim]), k], axis: 2)
            v = concat([pv.unsqueezed(0).broadcast(to: [b, kvHeads, p, headDim]), v], axis: 2)
            if let m = mask, let last = m.shape.last, last != 1 {
                // A mask over the S real keys gets P always-visible (0) columns in front.
                mask = concat([Tensor(zeros: Array(m.shape.dropLast()) + [p]), m], axis: -1)
            }
        }
        let out: Tensor, probs: Tensor?
        let drop = attentionDropout.flatMap { $0.isActive ? $0 : nil }
        if returnProbabilities || softcap != nil || drop != nil {
            // (Soft-capped scores and dropped probabilities go through the composed ops, which the
            // fused kernel lacks.)
            let (o, p) = attentionWithProbabilities(query: q, key: k, value: v, mask: mask, causal: causal, scale: scale, softcap: softcap,
                                                    dropProbabilities: drop.map { d in { d($0) } })
            (out, probs) = (o, returnProbabilities ? p : nil)
        } else {
            out = scaledDotProductAttention(query: q, key: k, value: v, mask: mask, causal: causal, scale: scale)
            probs = nil
        }
        // (B, H, T, D) -> (B, T, H, D) -> (B, T, H·D)
        return (oProj(out.transposed(1, 2).reshaped([b, t, heads * headDim])), probs)
    }
}

extension Attention {
    /// `mask` (nil, [T, S] or [B|1, 1|H, T|1, S]) with −∞ added where a key lies `window` or more
    /// positions before its query: [B|1, 1, T, S] (a mask with per-head rows keeps them).
    static func slidingWindowMask(_ mask: Tensor?, queries t: Int, keys s: Int, window w: Int) -> Tensor {
        let m = mask.map { $0.rank == 2 ? $0.reshaped([1, 1, t, s]) : $0 }
        let b = m?.shape[0] ?? 1, h = m?.shape[1] ?? 1
        var out = [Float](repeating: 0, count: b * h * t * s)
        let src = m?.storage.pointer, mt = m?.shape[2] ?? 1
        for bi in 0..<b {
            for hi in 0..<h {
                for i in 0..<t {
                    let row = ((bi * h + hi) * t + i) * s, q = s - t + i
                    let from = src.map { $0 + ((bi * h + hi) * mt + (mt == 1 ? 0 : i)) * s }
                    for j in 0..<s {
                        out[row + j] = q - j >= w ? -Float.infinity : (from?[j] ?? 0)
                    }
                }
            }
        }
        return Tensor(out, shape: [b, h, t, s])
    }
}

/// Pre-norm decoder block: x + attn(norm(x)), then h + mlp(norm(h)) — Llama's
/// `post_attention_layernorm` is the norm before the MLP. With sandwich norms (Gemma 2/3) the
/// attention and MLP outputs are normed too: h = x + post_attention_layernorm(attn(input_layernorm(x))),
/// then h + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(h))).
public final class DecoderBlock: Module {
    public let inputLayernorm: RMSNorm
    public let selfAttn: Attention
    public let postAttentionLayernorm: RMSNorm
    public let preFeedforwardLayernorm: RMSNorm?
    public let postFeedforwardLayernorm: RMSNorm?
    public let mlp: MLP
    /// Dropout on the attention and MLP outputs while training (`DecoderDropout`).
    public internal(set) var residualDropout: Dropout?

    public init(hidden: Int, heads: Int, kvHeads: Int, intermediate: Int, eps: Float, qkvBias: Bool,
                headDim: Int? = nil, qkNorm: Bool = false, slidingWindow: Int? = nil, mlpKind: MLP.Kind = .swiglu,
                normOffset: Float = 0, sandwichNorms: Bool = false, attentionScale: Float? = nil, attentionSoftcap: Float? = nil,
                rng: inout RandomGenerator) {
        inputLayernorm = RMSNorm(hidden, eps: eps, offset: normOffset)
        selfAttn = Attention(hidden: hidden, heads: heads, kvHeads: kvHeads, headDim: headDim, qkvBias: qkvBias,
                             qkNorm: qkNorm, normEps: eps, normOffset: normOffset, slidingWindow: slidingWindow, scale: attentionScale,
                             softcap: attentionSoftcap, rng: &rng)
        postAttentionLayernorm = RMSNorm(hidden, eps: eps, offset: normOffset)
        preFeedforwardLayernorm = sandwichNorms ? RMSNorm(hidden, eps: eps, offset: normOffset) : nil
        postFeedforwardLayernorm = sandwichNorms ? RMSNorm(hidden, eps: eps, offset: normOffset) : nil
        mlp = MLP(hidden: hidden, intermediate: intermediate, kind: mlpKind, rng: &rng)
    }

    public func callAsFunction(_ x: Tensor, rope: (cos: Tensor, sin: Tensor), mask: Tensor?,
                               cache: LayerKVCache? = nil, returnProbabilities: Bool = false) -> (Tensor, Tensor?) {
        let (a, probs) = selfAttn(inputLayernorm(x), rope: rope, mask: mask, causal: true, cache: cache,
                                  returnProbabilities: returnProbabilities)
        let drop = { (t: Tensor) in self.residualDropout.map { $0(t) } ?? t }
        if let pre = preFeedforwardLayernorm, let post = postFeedforwardLayernorm {
            let h = x + drop(postAttentionLayernorm(a))
            return (h + drop(post(mlp(pre(h)))), probs)
        }
        let h = x + drop(a)
        return (h + drop(mlp(postAttentionLayernorm(h))), probs)
    }
}

/// Keys and values of the positions seen so far, per layer, in buffers `[B, kvHeads, C, headDim]`
/// of which the first `length` positions are filled. Appending writes in place; the capacity C
/// doubles when full (amortised O(1) per position instead of copying the whole cache each step).
public final class LayerKVCache {
    /// [R, kvHeads, capacity, headDim] buffers of which the first `batch` rows and `length`
    /// positions hold entries (rows past `batch` are left over from rows that finished).
    private var keyBuffer: Tensor?
    private var valueBuffer: Tensor?
    public private(set) var length = 0
    /// Rows (sequences) the cache holds.
    public private(set) var batch = 0

    public init() {}

    /// Positions the buffers hold before they grow.
    public var capacity: Int { keyBuffer?.shape[2] ?? 0 }

    /// The cached keys and values [batch, kvHeads, length, headDim] (copies of the filled part).
    public var keys: Tensor? { keyBuffer.map { filled($0) } }
    public var values: Tensor? { valueBuffer.map { filled($0) } }

    func filled(_ buffer: Tensor) -> Tensor {
        let out = Tensor(uninitializedShape: [batch, buffer.shape[1], length, buffer.shape[3]])
        copyRows(from: buffer, to: out, rows: length, at: 0, blocks: batch * buffer.shape[1])
        return out
    }

    /// Writes `k`, `v` [B, kvHeads, n, headDim] after the filled positions.
    func write(keys k: Tensor, values v: Tensor) {
        let b = k.shape[0], h = k.shape[1], n = k.shape[2], dk = k.shape[3], dv = v.shape[3]
        precondition(length == 0 || batch == b, "LayerKVCache: appending a batch of \(b) to a cache of \(batch) rows")
        if keyBuffer == nil || (length == 0 && keyBuffer!.shape[0] != b) || length + n > capacity {
            let newCapacity = Swift.max(length + n, 2 * capacity, 16)
            let nk = Tensor(zeros: [b, h, newCapacity, dk]), nv = Tensor(zeros: [b, h, newCapacity, dv])
            if let kb = keyBuffer, let vb = valueBuffer, length > 0 {
                copyRows(from: kb, to: nk, rows: length, at: 0, blocks: b * h)
                copyRows(from: vb, to: nv, rows: length, at: 0, blocks: b * h)
            }
            keyBuffer = nk
            valueBuffer = nv
        }
        copyRows(from: k, to: keyBuffer!, rows: n, at: length, blocks: b * h)
        copyRows(from: v, to: valueBuffer!, rows: n, at: length, blocks: b * h)
        length += n
        batch = b
    }

    /// For each of `blocks` (batch, head) blocks: `rows` rows of `src` (starting at its row 0)
    /// into `dst` at row `at`.
    private func copyRows(from src: Tensor, to dst: Tensor, rows: Int, at: Int, blocks: Int) {
        let width = src.shape[3], srcRows = src.shape[2], dstRows = dst.shape[2]
        let ps = src.storage.pointer, pd = dst.storage.pointer
        for blk in 0..<blocks {
            (pd + (blk * dstRows + at) * width).update(from: ps + blk * srcRows * width, count: rows * width)
        }
    }

    /// Appends along the sequence axis and returns the full keys and values (differentiable in
    /// the new entries; cached ones are constants).
    func append(keys k: Tensor, values v: Tensor) -> (Tensor, Tensor) {
        let old = (keys, values)
        write(keys: k.detached(), values: v.detached())
        let nk = old.0.map { concat([$0, k], axis: 2) } ?? k
        let nv = old.1.map { concat([$0, v], axis: 2) } ?? v
        return (nk, nv)
    }

    /// Attention of `q` over the cache after appending `k`, `v`, without copying the cache
    /// (inference only).
    func appendAndAttend(query q: Tensor, keys k: Tensor, values v: Tensor, mask: Tensor?, causal: Bool) -> Tensor {
        write(keys: k, values: v)
        return cachedAttention(query: q, keys: keyBuffer!, values: valueBuffer!, length: length, batch: batch, mask: mask, causal: causal)
    }

    /// Repeats each sequence's entries `n` times along the batch (n samples sharing one prompt).
    public func repeatBatch(_ n: Int) {
        guard let kb = keyBuffer, let vb = valueBuffer else { return }
        func rep(_ t: Tensor) -> Tensor {
            let s = t.shape
            // (B, H, L, D) -> (B, 1, H, L, D) -> (B, n, H, L, D) -> (B·n, H, L, D)
            return withoutGradients { t.unsqueezed(1).broadcast(to: [s[0], n] + Array(s.dropFirst())).reshaped([s[0] * n] + Array(s.dropFirst())) }
        }
        keyBuffer = rep(filled(kb))
        valueBuffer = rep(filled(vb))
        batch *= n
    }

    /// Keeps only the batch rows in `rows` (finished sequences dropped), in that order. Rows in
    /// increasing order (what a decoding batch drops) move within the buffers: each kept row's
    /// filled positions once, nothing reallocated.
    public func select(rows: [Int]) {
        guard let kb = keyBuffer, let vb = valueBuffer else { return }
        precondition(rows.allSatisfy { $0 >= 0 && $0 < batch }, "LayerKVCache: selecting rows \(rows) of \(batch)")
        if zip(rows, rows.dropFirst()).allSatisfy({ $0 < $1 }) {
            // Row rows[i] moves to row i ≤ rows[i]: each destination is a row already read or left.
            for t in [kb, vb] {
                let h = t.shape[1], c = t.shape[2], w = t.shape[3], p = t.storage.pointer
                for (i, r) in rows.enumerated() where i != r {
                    for head in 0..<h {
                        (p + ((i * h + head) * c) * w).update(from: p + ((r * h + head) * c) * w, count: length * w)
                    }
                }
            }
            batch = rows.count
            return
        }
        keyBuffer = withoutGradients { filled(kb).indexSelect(rows, axis: 0) }
        valueBuffer = withoutGradients { filled(vb).indexSelect(rows, axis: 0) }
        batch = rows.count
    }

    /// Drops the first `n` positions of every row (positions no row attends to any more).
    public func dropLeading(_ n: Int) {
        guard n > 0, let kb = keyBuffer, let vb = valueBuffer else { return }
        precondition(n <= length, "LayerKVCache: dropping \(n) of \(length) positions")
        for t in [kb, vb] {
            let h = t.shape[1], c = t.shape[2], w = t.shape[3], p = t.storage.pointer
            for blk in 0..<(batch * h) {
                // Overlapping move within one block, towards lower addresses.
                (p + blk * c * w).update(from: p + (blk * c + n) * w, count: (length - n) * w)
            }
        }
        length -= n
    }

    /// Appends the batch rows of `other` after this cache's rows. The shorter of the two is
    /// left-padded with `shift` zero positions (this cache's rows by `max(0, other.length −
    /// length)`, the other's by `max(0, length − other.length)`): the caller masks those
    /// positions. Both must hold entries of the same heads and width.
    public func appendRows(of other: LayerKVCache) {
        guard let ok = other.keyBuffer, let ov = other.valueBuffer, other.length > 0 else { return }
        guard let sk = keyBuffer, let sv = valueBuffer, length > 0 else {
            keyBuffer = other.filled(ok)
            valueBuffer = other.filled(ov)
            length = other.length
            batch = other.batch
            return
        }
        precondition(sk.shape[1] == ok.shape[1] && sk.shape[3] == ok.shape[3] && sv.shape[3] == ov.shape[3],
                     "LayerKVCache: joining caches of shapes \(sk.shape) and \(ok.shape)")
        let n = Swift.max(length, other.length), b1 = batch, b2 = other.batch, h = sk.shape[1]
        let capacity = Swift.max(n, 16)
        func join(_ a: Tensor, _ aLength: Int, _ c: Tensor, _ cLength: Int) -> Tensor {
            let out = Tensor(zeros: [b1 + b2, h, capacity, a.shape[3]])
            let width = a.shape[3], pd = out.storage.pointer
            for (src, rows, first, count) in [(a, aLength, 0, b1), (c, cLength, b1, b2)] {
                let ps = src.storage.pointer, srcRows = src.shape[2], shift = n - rows
                for blk in 0..<(count * h) {
                    (pd + ((first * h + blk) * capacity + shift) * width).update(from: ps + blk * srcRows * width, count: rows * width)
                }
            }
            return out
        }
        keyBuffer = join(sk, length, ok, other.length)
        valueBuffer = join(sv, length, ov, other.length)
        length = n
        batch = b1 + b2
    }
}

/// A KV cache for every layer of a model, and the number of positions it holds.
public final class KVCache {
    public let layers: [LayerKVCache]
    public var length = 0

    public init(layers: Int) { self.layers = (0..<layers).map { _ in LayerKVCache() } }

    public func repeatBatch(_ n: Int) { layers.forEach { $0.repeatBatch(n) } }
    public func select(rows: [Int]) { layers.forEach { $0.select(rows: rows) } }

    /// Drops the first `n` positions of every row (`LayerKVCache.dropLeading`).
    public func dropLeading(_ n: Int) {
        precondition(n <= length, "KVCache: dropping \(n) of \(length) positions")
        layers.forEach { $0.dropLeading(n) }
        length -= n
    }

    /// Appends the rows of `other` (`LayerKVCache.appendRows`): the shorter cache's rows are
    /// left-padded to the longer length, which the cache then holds.
    public func appendRows(of other: KVCache) {
        precondition(layers.count == other.layers.count, "KVCache: joining caches of \(layers.count) and \(other.layers.count) layers")
        for (a, b) in zip(layers, other.layers) { a.appendRows(of: b) }
        length = Swift.max(length, other.length)
    }
}
