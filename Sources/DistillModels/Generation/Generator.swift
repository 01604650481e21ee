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

/// One prompt of a batch with its own options: a batch may mix prompts of unrelated requests (the
/// server batches concurrent requests), each with its sampling rule, `n`, token limit, stop
/// conditions and log-probabilities.
public struct GenerationItem: Sendable {
    public var prompt: [Int]
    public var options: GenerationOptions
    /// Sample s of this prompt draws from sampler stream `samplerStream + s` of its seed, so that
    /// its tokens do not depend on what else is in the batch.
    public var samplerStream: UInt64

    public init(prompt: [Int], options: GenerationOptions, samplerStream: UInt64 = 0) {
        self.prompt = prompt
        self.options = options
        self.samplerStream = samplerStream
    }
}

/// One generated token as `Generator.generate(items:…)` streams it.
public struct GeneratedToken: Sendable {
    public var token: Int
    /// Log-probability under the model (before sampling adjustments).
    public var logprob: Float
    /// The `topLogprobs` most likely (token, log-probability) pairs, most likely first.
    public var topLogprobs: [(token: Int, logprob: Float)]

    public init(token: Int, logprob: Float, topLogprobs: [(token: Int, logprob: Float)] = []) {
        self.token = token
        self.logprob = logprob
        self.topLogprobs = topLogprobs
    }
}

/// Autoregressive generation with a KV cache for several prompts at once (left-padded to a common
/// length) and `n` samples per prompt sharing the prompt's cache.
public struct Generator {
    public let model: TransformerLM

    public init(model: TransformerLM) { self.model = model }

    /// Generates continuations of `prompts` (token ids). `tokenizer` is needed only for stop
    /// strings. `onToken(row, token)` streams each new token, where row = prompt × n + sample.
    public func generate(prompts: [[Int]], options o: GenerationOptions, tokenizer: Tokenizer? = nil,
                         onToken: (Int, Int) -> Void = { _, _ in }) throws -> [GeneratedSequence] {
        // Sample s of prompt p draws from stream p·n + s: the row number.
        let items = prompts.enumerated().map { GenerationItem(prompt: $1, options: o, samplerStream: UInt64($0 * max(o.n, 1))) }
        return try generate(items: items, tokenizer: tokenizer, onToken: { row, t in onToken(row, t.token) })
    }

    /// Generates continuations of prompts that each carry their own options, in one batch
    /// (`DecodingBatch`). Results come row by row: item 0's `n` samples, then item 1's, …;
    /// `prompt` is the item's index. `onToken(row, token)` streams each new token of a row (a stop
    /// token ends the row without being streamed). A row for which `isCancelled(row)` turns true
    /// stops before its next token (its finish reason stays `.length`). Stop strings are matched
    /// on the text `tokenizer` decodes (special tokens skipped); without a tokenizer they are an
    /// error.
    public func generate(items: [GenerationItem], tokenizer: Tokenizer? = nil,
                         onToken: (Int, GeneratedToken) -> Void = { _, _ in },
                         isCancelled: (Int) -> Bool = { _ in false }) throws -> [GeneratedSequence] {
        try validate(items, tokenizer: tokenizer)
        if items.isEmpty { return [] }
        let batch = DecodingBatch(model: model, items: items, tokenizer: tokenizer)
        // Ids are handed out in admission order: row r of the results is row id r.
        while !batch.isDone { batch.step(onToken: onToken, isCancelled: isCancelled) }
        return (0..<items.reduce(0) { $0 + $1.options.n }).map { batch.take($0) }
    }

    /// Throws the `GenerationError` that `generate(items:…)` would for these items' options or
    /// prompts (the scheduler checks each job before it joins a running batch).
    public func validate(_ items: [GenerationItem], tokenizer: Tokenizer?) throws {
        for (i, item) in items.enumerated() {
            let o = item.options, p = item.prompt
            try o.sampling.validate()
            guard o.n >= 1 else { throw GenerationError.invalidParameter("n must be ≥ 1, got \(o.n)") }
            guard o.maxTokens >= 0 else { throw GenerationError.invalidParameter("max_tokens must be ≥ 0, got \(o.maxTokens)") }
            guard o.topLogprobs >= 0 else { throw GenerationError.invalidParameter("top_logprobs must be ≥ 0, got \(o.topLogprobs)") }
            guard o.stopStrings.isEmpty || tokenizer != nil else {
                throw GenerationError.invalidParameter("stop strings need a tokenizer to decode the generated text")
            }
            if p.isEmpty { throw GenerationError.emptyPrompt(index: i) }
            if let bad = p.first(where: { $0 < 0 || $0 >= model.config.vocabSize }) {
                throw GenerationError.invalidParameter("prompt \(i) holds token id \(bad), outside the vocabulary of \(model.config.vocabSize)")
            }
        }
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
