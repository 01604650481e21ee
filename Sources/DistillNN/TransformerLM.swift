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

    public init(vocabSize: Int, hidden: Int, layers: Int, heads: Int, kvHeads: Int, intermediate: Int,
                ropeTheta: Float = 10_000, rmsNormEps: Float = 1e-6, tieEmbeddings: Bool = true, qkvBias: Bool = false) {
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

    public var headDim: Int { hidden / heads }
}

/// The decoder stack without the output head (`model.*` keys).
public final class DecoderStack: Module {
    public let embedTokens: Embedding
    public let layers: [DecoderBlock]
    public let norm: RMSNorm

    init(_ c: TransformerConfig, rng: inout RandomGenerator) {
        embedTokens = Embedding(c.vocabSize, c.hidden, std: 0.02, rng: &rng)
        var blocks: [DecoderBlock] = []
        for _ in 0..<c.layers {
            blocks.append(DecoderBlock(hidden: c.hidden, heads: c.heads, kvHeads: c.kvHeads,
                                       intermediate: c.intermediate, eps: c.rmsNormEps, qkvBias: c.qkvBias, rng: &rng))
        }
        layers = blocks
        norm = RMSNorm(c.hidden, eps: c.rmsNormEps)
    }
}

/// Outputs of a forward pass: logits and, on request, every layer's hidden state and attention.
public struct LMOutput {
    /// [B, T, vocab]
    public var logits: Tensor
    /// Embedding output and each block's output, [B, T, hidden] (layers + 1 entries), when asked.
    public var hiddenStates: [Tensor]
    /// Each block's attention probabilities [B, heads, T, T], when asked.
    public var attentions: [Tensor]
}

public final class TransformerLM: Module {
    public let config: TransformerConfig
    public let model: DecoderStack
    public let lmHead: Linear?

    public init(_ config: TransformerConfig, seed: UInt64 = 0) {
        self.config = config
        var rng = RandomGenerator(seed: seed)
        model = DecoderStack(config, rng: &rng)
        lmHead = config.tieEmbeddings ? nil : Linear(config.hidden, config.vocabSize, bias: false, rng: &rng)
    }

    /// Runs token ids laid out as `batch` rows of `length` tokens.
    public func forward(_ ids: [Int], batch: Int, length: Int, mask: Tensor? = nil,
                        outputHiddenStates: Bool = false, outputAttentions: Bool = false) -> LMOutput {
        precondition(ids.count == batch * length, "TransformerLM: \(ids.count) ids for batch \(batch) × length \(length)")
        let inv = Tensor.rotaryInverseFrequencies(headDim: config.headDim, base: config.ropeTheta)
        let rope = Tensor.rotaryTables(positions: Array(0..<length), invFreq: inv)
        var h = model.embedTokens(ids, shape: [batch, length])      // (B, T, H)
        var hidden: [Tensor] = outputHiddenStates ? [h] : []
        var attentions: [Tensor] = []
        for layer in model.layers {
            let (out, probs) = layer(h, rope: rope, mask: mask, returnProbabilities: outputAttentions)
            h = out
            if outputHiddenStates { hidden.append(h) }
            if let probs { attentions.append(probs) }
        }
        h = model.norm(h)
        if outputHiddenStates { hidden[hidden.count - 1] = h }
        let logits = lmHead.map { $0(h) } ?? model.embedTokens.asLinear(h)
        return LMOutput(logits: logits, hiddenStates: hidden, attentions: attentions)
    }

    /// Mean next-token cross-entropy of `ids` (each row predicts its own next token).
    public func languageModelLoss(_ ids: [Int], batch: Int, length: Int) -> Tensor {
        let logits = forward(ids, batch: batch, length: length).logits
        var targets = [Int](repeating: -100, count: batch * length)
        for b in 0..<batch { for t in 0..<(length - 1) { targets[b * length + t] = ids[b * length + t + 1] } }
        return logits.reshaped([batch * length, config.vocabSize]).crossEntropy(targets: targets)
    }
}
