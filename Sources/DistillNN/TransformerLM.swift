import DistillTensor

/// A small decoder-only language model assembled from the nn layers (Llama layout: RMSNorm,
/// RoPE, grouped-query attention, SwiGLU). Used by tests and benchmarks of the engine; the
/// checkpoint-compatible Qwen2 and Llama models build on the same layers.
public struct TransformerConfig: Codable, Equatable, Sendable {
    public var vocabSize: Int
    public var hidden: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var intermediate: Int
    public var ropeTheta: Float
    public var rmsNormEps: Float
    public var tieEmbeddings: Bool
    public var qkvBias: Bool
    /// Per-head width; nil means hidden / heads.
    public var explicitHeadDim: Int?
    public var ropeScaling: RopeScaling?
    /// RMSNorm over each head's queries and keys before RoPE (Qwen3); nil = off.
    public var qkNorm: Bool?
    /// Each query sees only itself and the `slidingWindow − 1` keys before it (Mistral); nil = all.
    public var slidingWindow: Int?
    /// Which layers use `slidingWindow` (Gemma 2/3 alternate); nil = all.
    public var slidingLayers: [Bool]?
    /// Feed-forward kind; nil = SwiGLU.
    public var mlpKind: MLP.Kind?
    /// RMSNorm weights stored as w − offset, applied as (offset + w) (Gemma: 1); nil = 0.
    public var normOffset: Float?
    /// Norms after attention and around the MLP as well (Gemma 2/3); nil = off.
    public var sandwichNorms: Bool?
    /// Embeddings multiplied by √hidden (Gemma); nil = off.
    public var scaleEmbeddings: Bool?
    /// Attention score scale (Gemma 2: query_pre_attn_scalar^−½); nil = 1/√headDim.
    public var attentionScale: Float?
    /// Soft caps cap · tanh(x / cap) on the attention scores and on the output logits (Gemma 2).
    public var attentionSoftcap: Float?
    public var finalSoftcap: Float?
    /// RoPE base of the sliding-window layers, without `ropeScaling` (Gemma 3's
    /// rope_local_base_freq); nil: every layer uses `ropeTheta` and the scaling.
    public var localRopeTheta: Float?
    /// Dimensions of each head that RoPE rotates (the first ones; Phi-4-mini: ¾ of the head);
    /// nil = all.
    public var rotaryDim: Int?

    public init(vocabSize: Int, hidden: Int, layers: Int, heads: Int, kvHeads: Int, intermediate: Int,
                ropeTheta: Float = 10_000, rmsNormEps: Float = 1e-6, tieEmbeddings: Bool = true, qkvBias: Bool = false,
                headDim: Int? = nil, ropeScaling: RopeScaling? = nil, qkNorm: Bool = false, slidingWindow: Int? = nil) {
        self.explicitHeadDim = headDim
        self.ropeScaling = ropeScaling
        self.qkNorm = qkNorm ? true : nil
        self.slidingWindow = slidingWindow
        self.vocabSize = vocabSize
        self.hidden = hidden
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads
        self.intermediate = intermediate
        self.ropeTheta = ropeTheta
        self.rmsNormEps = rmsNormEps
        self.tieEmbeddings = tieEmbeddings
        self.qkvBias = qkvBias
    }

    public var headDim: Int { explicitHeadDim ?? hidden / heads }
    /// Dimensions RoPE rotates per head.
    public var rotaryDimensions: Int { rotaryDim ?? headDim }

    /// RoPE inverse frequencies θᵢ = base^(−2i/R) over the R rotary dimensions, adjusted by the
    /// scaling rule if any.
    public var ropeInverseFrequencies: [Float] {
        let inv = Tensor.rotaryInverseFrequencies(headDim: rotaryDimensions, base: ropeTheta)
        return ropeScaling?.apply(to: inv) ?? inv
    }

    /// The frequencies for a sequence of `length` positions (LongRoPE switches past its original length).
    public func ropeInverseFrequencies(length: Int) -> [Float] {
        let inv = Tensor.rotaryInverseFrequencies(headDim: rotaryDimensions, base: ropeTheta)
        return ropeScaling?.apply(to: inv, length: length) ?? inv
    }
}

/// RoPE frequency scaling rules of `rope_scaling` in Hugging Face configs.
public enum RopeScaling: Codable, Equatable, Sendable {
    /// Positions divided by `factor` (all frequencies scaled).
    case linear(factor: Float)
    /// Llama 3.1: low frequencies divided by `factor`, high ones kept, a smooth blend between.
    case llama3(factor: Float, lowFreqFactor: Float, highFreqFactor: Float, originalMaxPositions: Int)
    /// LongRoPE (Phi-3 128k): frequency i divided by `shortFactor[i]`, or by `longFactor[i]` once
    /// the sequence is longer than `originalMaxPositions`; cos and sin multiplied by `attentionFactor`.
    case longrope(shortFactor: [Float], longFactor: [Float], originalMaxPositions: Int, attentionFactor: Float)

    /// The frequencies for a sequence of `length` positions (only LongRoPE depends on it).
    public func apply(to inv: [Float], length: Int) -> [Float] {
        if case let .longrope(short, long, original, _) = self {
            let f = length > original ? long : short
            return zip(inv, f).map { $0 / $1 }
        }
        return apply(to: inv)
    }

    /// The factor on cos and sin (LongRoPE's attention factor; 1 otherwise).
    public var attentionFactor: Float {
        if case let .longrope(_, _, _, a) = self { return a }
        return 1
    }

    public func apply(to inv: [Float]) -> [Float] {
        switch self {
        case let .longrope(short, _, _, _):
            return zip(inv, short).map { $0 / $1 }
        case .linear(let f):
            return inv.map { $0 / f }
        case let .llama3(factor, low, high, original):
            let lowWavelen = Float(original) / low, highWavelen = Float(original) / high
            return inv.map { f in
                let wavelen = 2 * Float.pi / f
                if wavelen < highWavelen { return f }
                if wavelen > lowWavelen { return f / factor }
                let smooth = (Float(original) / wavelen - low) / (high - low)
                return (1 - smooth) * f / factor + smooth * f
            }
        }
    }
}

/// The decoder stack without the output head (`model.*` keys).
public final class DecoderStack: Module {
    public let embedTokens: Embedding
    public let layers: [DecoderBlock]
    public let norm: RMSNorm

    init(_ c: TransformerConfig, rng: inout RandomGenerator) {
        embedTokens = Embedding(c.vocabSize, c.hidden, std: 0.02, rng: &rng)
        var blocks: [DecoderBlock] = []
        for i in 0..<c.layers {
            let window = c.slidingLayers.map { i < $0.count && $0[i] } ?? true ? c.slidingWindow : nil
            blocks.append(DecoderBlock(hidden: c.hidden, heads: c.heads, kvHeads: c.kvHeads,
                                       intermediate: c.intermediate, eps: c.rmsNormEps, qkvBias: c.qkvBias,
                                       headDim: c.headDim, qkNorm: c.qkNorm ?? false, slidingWindow: window,
                                       mlpKind: c.mlpKind ?? .swiglu, normOffset: c.normOffset ?? 0,
                                       sandwichNorms: c.sandwichNorms ?? false, attentionScale: c.attentionScale,
                                       attentionSoftcap: c.attentionSoftcap, rng: &rng))
        }
        layers = blocks
        norm = RMSNorm(c.hidden, eps: c.rmsNormEps, offset: c.normOffset ?? 0)
    }
}

/// Outputs of a forward pass: logits and, on request, every layer's hidden state and attention.
public struct LMOutput {
    /// [B, T, vocab]; an empty [0] tensor when the forward pass was asked not to compute logits.
    public var logits: Tensor
    /// The final normed hidden state [B, T, hidden] (the input of the output projection).
    public var finalHidden: Tensor
    /// Embedding output and each block's output, [B, T, hidden] (layers + 1 entries), when asked.
    public var hiddenStates: [Tensor]
    /// Each block's attention probabilities [B, heads, T, T], when asked.
    public var attentions: [Tensor]
}

public final class TransformerLM: Module {
    public let config: TransformerConfig
    public let model: DecoderStack
    public let lmHead: Linear?

    /// A model with random weights drawn from `seed`, or zeros when `initialize` is false (for
    /// weights that are loaded next).
    public init(_ config: TransformerConfig, seed: UInt64 = 0, initialize: Bool = true) {
        self.config = config
        var rng = initialize ? RandomGenerator(seed: seed) : .skippingInitialization
        model = DecoderStack(config, rng: &rng)
        lmHead = config.tieEmbeddings ? nil : Linear(config.hidden, config.vocabSize, bias: false, rng: &rng)
    }

    private init(_ config: TransformerConfig, rng: inout RandomGenerator) {
        self.config = config
        model = DecoderStack(config, rng: &rng)
        lmHead = config.tieEmbeddings ? nil : Linear(config.hidden, config.vocabSize, bias: false, rng: &rng)
    }

    /// A model whose matrices are left unfilled (never-written memory is not resident): the caller
    /// assigns every parameter next (a checkpoint loader). Norm weights are set as usual.
    public static func skeleton(_ config: TransformerConfig) -> TransformerLM {
        var rng = RandomGenerator.unfilled
        return TransformerLM(config, rng: &rng)
    }

    /// Runs token ids laid out as `batch` rows of `length` tokens.
    ///
    /// - `positions`: each row's position ids (default: `cache.length ..< cache.length + length`
    ///   for every row). Rows with left padding pass their own positions.
    /// - `mask`: additive attention mask broadcastable to [B, heads, length, keys] (e.g. a
    ///   padding mask [B, 1, 1, keys]); causal masking is always applied.
    /// - `cache`: keys and values of earlier positions; this call's are appended to it.
    /// - `embeddingOffset`: [B, length, hidden] added to the embedding output (after Gemma's
    ///   √hidden scale): the perturbation of adversarial training.
    public func forward(_ ids: [Int], batch: Int, length: Int, positions: [[Int]]? = nil, mask: Tensor? = nil,
                        cache: KVCache? = nil, outputHiddenStates: Bool = false, outputAttentions: Bool = false,
                        computeLogits: Bool = true, embeddingOffset: Tensor? = nil) -> LMOutput {
        precondition(ids.count == batch * length, "TransformerLM: \(ids.count) ids for batch \(batch) × length \(length)")
        // A tuned prefix stands before every row as P cached positions (PEFT's prefix tuning), so
        // the tokens' positions start at P.
        let prefix = prefixLength
        let positions = prefix == 0 ? positions : positions?.map { $0.map { $0 + prefix } }
        let offset = (cache?.length ?? 0) + prefix
        // The sequence length the positions reach (LongRoPE picks its factors by it, as transformers does).
        let reach = (positions.map { $0.lazy.compactMap { $0.max() }.max() ?? 0 } ?? (offset + length - 1)) + 1
        var rope = ropeTables(batch: batch, length: length, positions: positions, offset: offset,
                              invFreq: config.ropeInverseFrequencies(length: reach))
        if let a = config.ropeScaling?.attentionFactor, a != 1 { rope = (rope.cos * a, rope.sin * a) }
        let localRope = config.localRopeTheta.map { base in
            ropeTables(batch: batch, length: length, positions: positions, offset: offset,
                       invFreq: Tensor.rotaryInverseFrequencies(headDim: config.rotaryDimensions, base: base))
        }
        var h = model.embedTokens(ids, shape: [batch, length])      // (B, T, H)
        if config.scaleEmbeddings == true { h = h * Float(config.hidden).squareRoot() }
        if let embeddingOffset {
            precondition(embeddingOffset.shape == [batch, length, config.hidden],
                         "TransformerLM: embeddingOffset \(embeddingOffset.shape) for [\(batch), \(length), \(config.hidden)]")
            h = h + embeddingOffset
        }
        var hidden: [Tensor] = outputHiddenStates ? [h] : []
        var attentions: [Tensor] = []
        for (i, layer) in model.layers.enumerated() {
            let layerRope = layer.selfAttn.slidingWindow != nil ? localRope ?? rope : rope
            let (out, probs) = layer(h, rope: layerRope, mask: mask, cache: cache?.layers[i], returnProbabilities: outputAttentions)
            h = out
            if outputHiddenStates { hidden.append(h) }
            if let probs { attentions.append(probs) }
        }
        cache?.length += length
        h = model.norm(h)
        if outputHiddenStates { hidden[hidden.count - 1] = h }
        let logits = computeLogits ? self.logits(finalHidden: h) : Tensor(zeros: [0])
        return LMOutput(logits: logits, finalHidden: h, hiddenStates: hidden, attentions: attentions)
    }

    /// Tokens of the tuned prefix (`PrefixTuning`), 0 without one.
    public var prefixLength: Int { model.layers.first?.selfAttn.prefixKeys?.shape[1] ?? 0 }

    /// The logits of final normed hidden states [..., hidden]: the output head (or the tied
    /// embedding), soft-capped where the config says (Gemma 2). Lets a caller run the head on a
    /// few rows at a time (`forward(…, computeLogits: false)` first).
    public func logits(finalHidden h: Tensor) -> Tensor {
        var logits = lmHead.map { $0(h) } ?? model.embedTokens.asLinear(h)
        if let cap = config.finalSoftcap { logits = (logits * (1 / cap)).tanh() * cap }
        return logits
    }

    /// The output projection's weight [vocab, hidden] (the embedding matrix when tied), for losses
    /// fused with it; nil when the logits are more than hidden · weightᵀ: a soft-capped output
    /// (Gemma 2), or a projection with an unmerged LoRA adapter.
    public var outputProjectionWeight: Tensor? {
        if config.finalSoftcap != nil { return nil }      // logits = cap · tanh(h · Wᵀ / cap)
        guard let lmHead else { return model.embedTokens.weight.value }
        return lmHead.loraA == nil || lmHead.loraMerged ? lmHead.weight.value : nil
    }

    /// cos/sin tables: [length, D/2] when every row shares positions, else [B, length, D/2].
    func ropeTables(batch: Int, length: Int, positions: [[Int]]?, offset: Int, invFreq inv: [Float]) -> (cos: Tensor, sin: Tensor) {
        guard let positions else { return Tensor.rotaryTables(positions: Array(offset..<(offset + length)), invFreq: inv) }
        precondition(positions.count == batch && positions.allSatisfy { $0.count == length },
                     "TransformerLM: positions must be \(batch) rows of \(length)")
        let (c, s) = Tensor.rotaryTables(positions: positions.flatMap { $0 }, invFreq: inv)
        return (c.reshaped([batch, length, inv.count]), s.reshaped([batch, length, inv.count]))
    }

    /// A cache sized for this model.
    public func makeCache() -> KVCache { KVCache(layers: config.layers) }

    /// Mean next-token cross-entropy of `ids` (each row predicts its own next token).
    public func languageModelLoss(_ ids: [Int], batch: Int, length: Int) -> Tensor {
        let logits = forward(ids, batch: batch, length: length).logits
        var targets = [Int](repeating: -100, count: batch * length)
        for b in 0..<batch { for t in 0..<(length - 1) { targets[b * length + t] = ids[b * length + t + 1] } }
        return logits.reshaped([batch * length, config.vocabSize]).crossEntropy(targets: targets)
    }
}
