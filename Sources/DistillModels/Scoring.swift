import DistillTensor
import Foundation

/// Per-token log-probabilities of a text under a model (`distill score`).
public struct TextScore: Codable, Sendable {
    public var ids: [Int]
    /// log p(ids[i] | ids[..<i]) for i ≥ 1: one per token after the first.
    public var tokenLogprobs: [Float]
    /// Mean negative log-likelihood per scored token.
    public var nll: Double
    public var perplexity: Double
    /// UTF-8 bytes of the scored tokens' text (all tokens after the first), when the model has a
    /// tokenizer, and the text's negative log-likelihood in bits per byte: Σ −log p / ln 2 / bytes —
    /// comparable across tokenizers, where perplexity per token is not.
    public var bytes: Int?
    public var bitsPerByte: Double?

    enum CodingKeys: String, CodingKey {
        case ids, tokenLogprobs = "token_logprobs", nll, perplexity, bytes, bitsPerByte = "bits_per_byte"
    }
}

extension PretrainedModel {
    /// Scores `ids` (at least two tokens) in one forward pass.
    public func score(ids: [Int]) throws -> TextScore {
        guard ids.count >= 2 else {
            throw GenerationError.invalidParameter("scoring needs at least two tokens, got \(ids.count)")
        }
        if let bad = ids.first(where: { $0 < 0 || $0 >= lm.config.vocabSize }) {
            throw GenerationError.invalidParameter("token id \(bad) is outside the vocabulary of \(lm.config.vocabSize)")
        }
        let n = ids.count
        // The head runs on `rows` positions at a time: logits for a long text over a large
        // vocabulary (512 × 49152 floats is 100 MB) are never all in memory.
        let rows = 64
        var lps: [Float] = []
        lps.reserveCapacity(n - 1)
        withoutGradients {
            let h = lm.forward(ids, batch: 1, length: n, computeLogits: false).finalHidden.reshaped([n, -1])
            for start in stride(from: 0, to: n - 1, by: rows) {
                let m = Swift.min(rows, n - 1 - start)
                let logp = lm.logits(finalHidden: h.slice(axis: 0, start: start, length: m)).logSoftmax()
                let v = logp.shape[1]
                for i in 0..<m { lps.append(logp.storage.pointer[i * v + ids[start + i + 1]]) }
            }
        }
        let nll = -lps.reduce(0.0) { $0 + Double($1) } / Double(lps.count)
        var score = TextScore(ids: ids, tokenLogprobs: lps, nll: nll, perplexity: Foundation.exp(nll))
        if let tokenizer {
            let bytes = tokenizer.decodeBytes(Array(ids.dropFirst())).count
            score.bytes = bytes
            score.bitsPerByte = bytes > 0 ? nll * Double(lps.count) / Foundation.log(2) / Double(bytes) : nil
        }
        return score
    }

    /// Tokenizes `text` as the tokenizer does by default (BOS only if it adds one) and scores it.
    public func score(text: String) throws -> TextScore {
        try score(ids: try requireTokenizer().encode(text))
    }
}

/// What `distill inspect` reports about a model.
public struct ModelSummary: Codable, Sendable {
    public var path: String
    public var architecture: String
    public var layers, hidden, heads, kvHeads, headDim, intermediate, vocabSize: Int
    public var ropeTheta: Float
    /// Variants beyond the Llama block ("q/k norm", "sliding window 4096", "GeGLU (tanh GELU)",
    /// soft caps, RoPE scaling); empty for none.
    public var attention: [String] = []
    public var tiedEmbeddings: Bool
    public var parameters: Int
    /// Tensor types in the file, with counts (e.g. "Q4_1": 210).
    public var storedTypes: [String: Int]
    public var tokenizer: String?
    public var bosToken: String?
    public var eosTokens: [String]
    public var chatTemplate: String?
}

extension PretrainedModel {
    public func summary() throws -> ModelSummary {
        let c = lm.config
        var types: [String: Int] = [:]
        if path.lowercased().hasSuffix(".gguf") {
            for info in try GGUFFile(path: path).tensorInfos { types[info.type.name, default: 0] += 1 }
        } else {
            let st = try ShardedSafetensors(directory: path)
            for name in st.tensorNames { types[try st.info(named: name).dtype.rawValue, default: 0] += 1 }
        }
        var attention: [String] = []
        if c.qkvBias { attention.append("q/k/v bias") }
        if c.qkNorm == true { attention.append("q/k norm") }
        if let w = c.slidingWindow {
            let sliding = c.slidingLayers.map { $0.prefix(c.layers).filter { $0 }.count } ?? c.layers
            attention.append("sliding window \(w)" + (sliding == c.layers ? "" : " on \(sliding) of \(c.layers) layers"))
        }
        if let s = c.attentionScale { attention.append(String(format: "scores × %.4g", s)) }
        if let cap = c.attentionSoftcap { attention.append("scores soft-capped at \(cap)") }
        if let r = c.localRopeTheta, c.slidingWindow != nil { attention.append("local rope theta \(r)") }
        switch c.ropeScaling {
        case nil: break
        case .linear(let f)?: attention.append("linear rope scaling ×\(f)")
        case .llama3(let f, _, _, _)?: attention.append("llama3 rope scaling ×\(f)")
        case .longrope?: attention.append("longrope scaling")
        }
        if c.mlpKind == .geglu { attention.append("GeGLU (tanh GELU)") }
        if let o = c.normOffset, o != 0 { attention.append("norms (\(o) + w)") }
        if c.sandwichNorms == true { attention.append("sandwich norms") }
        if c.scaleEmbeddings == true { attention.append("embeddings × √hidden") }
        if let cap = c.finalSoftcap { attention.append("logits soft-capped at \(cap)") }
        let tok = tokenizer.map { "byte-level BPE, \($0.vocabSize) tokens, \($0.mergeCount) merges, fingerprint \($0.fingerprint)" }
        return ModelSummary(path: path, architecture: architecture.modelType, layers: c.layers, hidden: c.hidden, heads: c.heads,
                            kvHeads: c.kvHeads, headDim: c.headDim, intermediate: c.intermediate, vocabSize: c.vocabSize,
                            ropeTheta: c.ropeTheta, attention: attention, tiedEmbeddings: c.tieEmbeddings, parameters: lm.parameterCount,
                            storedTypes: types, tokenizer: tok, bosToken: tokenizer?.bosToken,
                            eosTokens: eosTokenIds.compactMap { tokenizer?.token(for: $0) }, chatTemplate: chatTemplate?.source)
    }
}
