import DistillNN
import DistillTensor
import Foundation

/// Why a sequence stopped.
public enum FinishReason: String, Codable, Sendable {
    /// An end-of-sequence token (not included in `tokens`).
    case stop
    /// A stop string appeared in the text (the text is cut before it).
    case stopString = "stop_string"
    /// `maxTokens` reached.
    case length
}

/// One generated continuation.
public struct GeneratedSequence: Sendable {
    public var prompt: Int
    public var sample: Int
    public var tokens: [Int]
    /// Log-probability of each generated token under the model (before sampling adjustments).
    public var logprobs: [Float]
    /// For each generated token, the `topLogprobs` most likely (token, log-probability) pairs.
    public var topLogprobs: [[(token: Int, logprob: Float)]]
    public var finishReason: FinishReason
}

/// What to generate, beyond the sampling rule.
public struct GenerationOptions: Sendable {
    public var maxTokens = 128
    public var sampling = SamplingParameters()
    /// Samples per prompt; they share the prompt's KV cache.
    public var n = 1
    public var stopTokenIds: Set<Int> = []
    public var stopStrings: [String] = []
    /// How many alternatives to record per generated token (0: none).
    public var topLogprobs = 0

    public init(maxTokens: Int = 128, sampling: SamplingParameters = SamplingParameters(), n: Int = 1,
                stopTokenIds: Set<Int> = [], stopStrings: [String] = [], topLogprobs: Int = 0) {
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.n = n
        self.stopTokenIds = stopTokenIds
        self.stopStrings = stopStrings
        self.topLogprobs = topLogprobs
    }
}

/// Autoregressive generation with a KV cache for several prompts at once (left-padded to a common
/// length) and `n` samples per prompt sharing the prompt's cache.
public struct Generator {
    public let model: TransformerLM

    public init(model: TransformerLM) { self.model = model }

    /// Generates continuations of `prompts` (token ids). `decode` turns generated ids into text;
    /// it is needed only for stop strings. `onToken(row, token)` streams each new token, where
    /// row = prompt × n + sample.
    public func generate(prompts: [[Int]], options o: GenerationOptions, decode: (([Int]) -> String)? = nil,
                         onToken: (Int, Int) -> Void = { _, _ in }) throws -> [GeneratedSequence] {
        try o.sampling.validate()
        guard o.n >= 1 else { throw GenerationError.invalidParameter("n must be ≥ 1, got \(o.n)") }
        guard o.maxTokens >= 0 else { throw GenerationError.invalidParameter("max_tokens must be ≥ 0, got \(o.maxTokens)") }
        for (i, p) in prompts.enumerated() {
            if p.isEmpty { throw GenerationError.emptyPrompt(index: i) }
            if let bad = p.first(where: { $0 < 0 || $0 >= model.config.vocabSize }) {
                throw GenerationError.invalidParameter("prompt \(i) holds token id \(bad), outside the vocabulary of \(model.config.vocabSize)")
            }
        }
        if prompts.isEmpty { return [] }
        let v = model.config.vocabSize
        let longest = prompts.map(\.count).max()!
        let b = prompts.count
        // Left padding: row r's real tokens start at pads[r]; positions count from there.
        var pads = prompts.map { longest - $0.count }
        let ids = prompts.flatMap { [Int](repeating: 0, count: longest - $0.count) + $0 }
        let positions = pads.map { pad in (0..<longest).map { Swift.max(0, $0 - pad) } }
        let cache = model.makeCache()
        var lastLogits: Tensor = withoutGradients {
            let out = model.forward(ids, batch: b, length: longest, positions: positions,
                                    mask: leftPaddingMask(pads, keys: longest), cache: cache).logits
            return out.slice(axis: 1, start: longest - 1, length: 1).reshaped([b, v])   // (B, V)
        }
        // n samples per prompt share the prompt's cache.
        if o.n > 1 {
            cache.repeatBatch(o.n)
            lastLogits = withoutGradients { lastLogits.indexSelect((0..<(b * o.n)).map { $0 / o.n }, axis: 0) }
            pads = (0..<(b * o.n)).map { pads[$0 / o.n] }
        }
        let rows = b * o.n
        var results = (0..<rows).map { GeneratedSequence(prompt: $0 / o.n, sample: $0 % o.n, tokens: [], logprobs: [],
                                                          topLogprobs: [], finishReason: .length) }
        var samplers = (0..<rows).map { TokenSampler(o.sampling, stream: UInt64($0)) }
        var active = Array(0..<rows)          // result index of each cache row
        var nextPos = (0..<rows).map { prompts[$0 / o.n].count }
        var step = 0
        while !active.isEmpty && step < o.maxTokens {
            var finished = Set<Int>()
            var fed: [Int] = []
            let logp = withoutGradients { lastLogits.logSoftmax() }
            for (cacheRow, r) in active.enumerated() {
                let history = prompts[r / o.n] + results[r].tokens
                let token = samplers[r].next(logits: lastLogits.storage.pointer + cacheRow * v, count: v, history: history)
                let lp = logp.storage.pointer + cacheRow * v
                if o.stopTokenIds.contains(token) {
                    results[r].finishReason = .stop
                    finished.insert(cacheRow)
                    fed.append(token)
                    continue
                }
                results[r].tokens.append(token)
                results[r].logprobs.append(lp[token])
                if o.topLogprobs > 0 { results[r].topLogprobs.append(topK(lp, count: v, k: o.topLogprobs)) }
                onToken(r, token)
                if !o.stopStrings.isEmpty, let decode {
                    let text = decode(results[r].tokens)
                    if o.stopStrings.contains(where: { text.contains($0) }) {
                        results[r].finishReason = .stopString
                        finished.insert(cacheRow)
                    }
                }
                fed.append(token)
            }
            step += 1
            if step >= o.maxTokens { break }
            // Drop finished rows from the batch and the cache.
            if !finished.isEmpty {
                let keep = (0..<active.count).filter { !finished.contains($0) }
                if keep.isEmpty { break }
                cache.select(rows: keep)
                active = keep.map { active[$0] }
                fed = keep.map { fed[$0] }
                pads = keep.map { pads[$0] }
            }
            let pos = active.map { [nextPos[$0]] }
            for r in active { nextPos[r] += 1 }
            let keys = cache.length + 1
            lastLogits = withoutGradients {
                model.forward(fed, batch: active.count, length: 1, positions: pos, mask: leftPaddingMask(pads, keys: keys),
                              cache: cache).logits.reshaped([active.count, v])
            }
        }
        return results
    }
}

/// Additive mask [B, 1, 1, keys] hiding each row's left padding, or nil when there is none.
func leftPaddingMask(_ pads: [Int], keys: Int) -> Tensor? {
    guard pads.contains(where: { $0 > 0 }) else { return nil }
    let m = Tensor(zeros: [pads.count, 1, 1, keys])
    for (r, pad) in pads.enumerated() { for j in 0..<Swift.min(pad, keys) { m.storage.pointer[r * keys + j] = -.infinity } }
    return m
}

/// The k largest entries of a row, largest first.
func topK(_ p: UnsafePointer<Float>, count v: Int, k: Int) -> [(token: Int, logprob: Float)] {
    var best: [(token: Int, logprob: Float)] = []
    for i in 0..<v {
        if best.count < k || p[i] > best[best.count - 1].logprob {
            let pos = best.firstIndex { p[i] > $0.logprob } ?? best.count
            best.insert((i, p[i]), at: pos)
            if best.count > k { best.removeLast() }
        }
    }
    return best
}
