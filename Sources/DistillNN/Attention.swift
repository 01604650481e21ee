import DistillTensor

/// Multi-head self-attention with grouped-query heads and rotary position embeddings
/// (the Llama / Qwen2 layout: q_proj, k_proj, v_proj, o_proj).
public final class Attention: Module {
    public let qProj: Linear
    public let kProj: Linear
    public let vProj: Linear
    public let oProj: Linear
    public let heads: Int
    public let kvHeads: Int
    public let headDim: Int

    /// `qkvBias` puts biases on the q/k/v projections (Qwen2); the output projection has none.
    public init(hidden: Int, heads: Int, kvHeads: Int, headDim: Int? = nil, qkvBias: Bool = false,
                rng: inout RandomGenerator) {
        precondition(heads % kvHeads == 0, "Attention: \(heads) heads not a multiple of \(kvHeads) kv heads")
        let hd = headDim ?? hidden / heads
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = hd
        qProj = Linear(hidden, heads * hd, bias: qkvBias, rng: &rng)
        kProj = Linear(hidden, kvHeads * hd, bias: qkvBias, rng: &rng)
        vProj = Linear(hidden, kvHeads * hd, bias: qkvBias, rng: &rng)
        oProj = Linear(heads * hd, hidden, bias: false, rng: &rng)
    }

    /// x: [B, T, hidden]; rope tables [T, headDim/2]. Returns [B, T, hidden] and, on request,
    /// the attention probabilities [B, heads, T, T] (differentiable).
    public func callAsFunction(_ x: Tensor, rope: (cos: Tensor, sin: Tensor), mask: Tensor? = nil,
                               causal: Bool = true, returnProbabilities: Bool = false) -> (Tensor, Tensor?) {
        let b = x.shape[0], t = x.shape[1]
        // (B, T, H·D) -> (B, T, H, D) -> (B, H, T, D)
        let q = qProj(x).reshaped([b, t, heads, headDim]).transposed(1, 2).rotaryEmbedding(cos: rope.cos, sin: rope.sin)
        let k = kProj(x).reshaped([b, t, kvHeads, headDim]).transposed(1, 2).rotaryEmbedding(cos: rope.cos, sin: rope.sin)
        let v = vProj(x).reshaped([b, t, kvHeads, headDim]).transposed(1, 2)
        let out: Tensor, probs: Tensor?
        if returnProbabilities {
            (out, probs) = attentionWithProbabilities(query: q, key: k, value: v, mask: mask, causal: causal)
        } else {
            out = scaledDotProductAttention(query: q, key: k, value: v, mask: mask, causal: causal)
            probs = nil
        }
        // (B, H, T, D) -> (B, T, H, D) -> (B, T, H·D)
        return (oProj(out.transposed(1, 2).reshaped([b, t, heads * headDim])), probs)
    }
}

/// Pre-norm decoder block: x + attn(norm(x)), then h + mlp(norm(h)).
public final class DecoderBlock: Module {
    public let inputLayernorm: RMSNorm
    public let selfAttn: Attention
    public let postAttentionLayernorm: RMSNorm
    public let mlp: MLP

    public init(hidden: Int, heads: Int, kvHeads: Int, intermediate: Int, eps: Float, qkvBias: Bool,
                rng: inout RandomGenerator) {
        inputLayernorm = RMSNorm(hidden, eps: eps)
        selfAttn = Attention(hidden: hidden, heads: heads, kvHeads: kvHeads, qkvBias: qkvBias, rng: &rng)
        postAttentionLayernorm = RMSNorm(hidden, eps: eps)
        mlp = MLP(hidden: hidden, intermediate: intermediate, kind: .swiglu, rng: &rng)
    }

    public func callAsFunction(_ x: Tensor, rope: (cos: Tensor, sin: Tensor), mask: Tensor?,
                               returnProbabilities: Bool = false) -> (Tensor, Tensor?) {
        let (a, probs) = selfAttn(inputLayernorm(x), rope: rope, mask: mask, causal: true,
                                  returnProbabilities: returnProbabilities)
        let h = x + a
        return (h + mlp(postAttentionLayernorm(h)), probs)
    }
}
