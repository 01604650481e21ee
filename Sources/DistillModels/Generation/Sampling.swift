import DistillTensor
import Foundation

/// How the next token is chosen. Temperature 0 is greedy decoding.
public struct SamplingParameters: Equatable, Sendable {
    public var temperature: Float = 1
    /// Keep only the k most likely tokens (0: off).
    public var topK: Int = 0
    /// Keep the smallest set of most likely tokens whose probabilities sum to at least p (1: off).
    public var topP: Float = 1
    /// Drop tokens whose probability is below minP × the top token's (0: off).
    public var minP: Float = 0
    /// > 1 discourages tokens already in the prompt or output (as `transformers`: positive logits
    /// divided by it, negative ones multiplied).
    public var repetitionPenalty: Float = 1
    public var seed: UInt64 = 0

    public init(temperature: Float = 1, topK: Int = 0, topP: Float = 1, minP: Float = 0,
                repetitionPenalty: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.seed = seed
    }

    /// Checks ranges; messages name the parameter.
    public func validate() throws {
        func bad(_ m: String) -> Error { GenerationError.invalidParameter(m) }
        guard temperature >= 0, temperature.isFinite else { throw bad("temperature must be ≥ 0, got \(temperature)") }
        guard topK >= 0 else { throw bad("top_k must be ≥ 0, got \(topK)") }
        guard topP > 0, topP <= 1 else { throw bad("top_p must be in (0, 1], got \(topP)") }
        guard minP >= 0, minP <= 1 else { throw bad("min_p must be in [0, 1], got \(minP)") }
        guard repetitionPenalty > 0 else { throw bad("repetition_penalty must be > 0, got \(repetitionPenalty)") }
    }
}

public enum GenerationError: Error, Equatable, CustomStringConvertible {
    case invalidParameter(String)
    case emptyPrompt(index: Int)
    case promptTooLong(index: Int, length: Int, limit: Int)

    public var description: String {
        switch self {
        case .invalidParameter(let m): return "invalid sampling parameter: \(m)"
        case .emptyPrompt(let i): return "prompt \(i) has no tokens"
        case let .promptTooLong(i, n, limit): return "prompt \(i) has \(n) tokens; the model takes at most \(limit)"
        }
    }
}

/// Picks the next token from one row of logits, as `transformers` does: repetition penalty,
/// then temperature, top-k, top-p and min-p, then argmax (greedy) or a draw.
public struct TokenSampler {
    public let parameters: SamplingParameters
    public private(set) var rng: RandomGenerator

    public init(_ parameters: SamplingParameters, stream: UInt64 = 0) {
        self.parameters = parameters
        rng = RandomGenerator(seed: parameters.seed &+ stream &* 0x9E37_79B9_7F4A_7C15)
    }

    /// `logits` has one entry per vocabulary token; `history` holds the tokens seen so far.
    public mutating func next(logits: UnsafePointer<Float>, count v: Int, history: [Int]) -> Int {
        let p = parameters
        var x = Array(UnsafeBufferPointer(start: logits, count: v))
        if p.repetitionPenalty != 1 {
            for t in Set(history) where t >= 0 && t < v {
                x[t] = x[t] < 0 ? x[t] * p.repetitionPenalty : x[t] / p.repetitionPenalty
            }
        }
        if p.temperature == 0 { return argmax(x) }
        for i in 0..<v { x[i] /= p.temperature }
        if p.topK > 0 && p.topK < v {
            let kth = kthLargest(x, p.topK)
            for i in 0..<v where x[i] < kth { x[i] = -.infinity }
        }
        // Probabilities of what is left.
        let m = x.max() ?? 0
        var probs = x.map { Foundation.exp($0 - m) }
        let z = probs.reduce(0, +)
        for i in 0..<v { probs[i] /= z }
        if p.topP < 1 {
            // Keep the most likely tokens until their mass reaches top_p (at least one).
            let kept = nucleus(probs, mass: p.topP)
            for i in 0..<v where !kept[i] { probs[i] = 0 }
        }
        if p.minP > 0 {
            let cut = p.minP * (probs.max() ?? 0)
            for i in 0..<v where probs[i] < cut { probs[i] = 0 }
        }
        let total = probs.reduce(0, +)
        var r = rng.nextFloat() * total
        for i in 0..<v where probs[i] > 0 {
            r -= probs[i]
            if r < 0 { return i }
        }
        return argmax(probs)
    }
}

/// The k-th largest of `x` (1-based, counting repeats): `x.sorted(by: >)[k - 1]`, found by
/// selection in O(n) instead of sorting a vocabulary for every sampled token.
func kthLargest(_ x: [Float], _ k: Int) -> Float {
    precondition(k >= 1 && k <= x.count)
    var a = x, lo = 0, hi = a.count - 1, want = k - 1       // the value at index want of a, sorted descending
    while lo < hi {
        // Three-way partition of a[lo...hi] around the median of three: > pivot, == pivot, < pivot.
        let mid = lo + (hi - lo) / 2
        let pivot = Swift.max(Swift.min(a[lo], a[mid]), Swift.min(Swift.max(a[lo], a[mid]), a[hi]))
        var gt = lo, i = lo, lt = hi
        while i <= lt {
            if a[i] > pivot { a.swapAt(i, gt); gt += 1; i += 1 }
            else if a[i] < pivot { a.swapAt(i, lt); lt -= 1 }
            else { i += 1 }
        }
        if want < gt { hi = gt - 1 } else if want > lt { lo = lt + 1 } else { return pivot }
    }
    return a[want]
}

/// Which tokens top-p keeps: the most likely ones, taken in order of probability (ties by index),
/// until their running Float sum reaches `mass` (at least one). Sorting only the tokens above a
/// threshold gives the same set as sorting the whole vocabulary whenever the running sum reaches
/// `mass` among them — every token outside is less likely than every token inside — and the
/// threshold drops until it does (a vocabulary-wide sort took as long as the model's step).
func nucleus(_ probs: [Float], mass: Float) -> [Bool] {
    var kept = [Bool](repeating: false, count: probs.count)
    var threshold = (probs.max() ?? 0) / 1024
    while true {
        let last = threshold <= 0
        let candidates = last ? Array(probs.indices) : probs.indices.filter { probs[$0] >= threshold }
        let order = candidates.sorted { probs[$0] > probs[$1] || (probs[$0] == probs[$1] && $0 < $1) }
        var cum: Float = 0, count = 0
        for i in order {
            count += 1
            cum += probs[i]
            if cum >= mass { break }
        }
        if cum >= mass || last {
            for i in order.prefix(count) { kept[i] = true }
            return kept
        }
        threshold = threshold > Float.leastNormalMagnitude * 1024 ? threshold / 1024 : 0
    }
}

/// Index of the first largest value.
func argmax(_ x: [Float]) -> Int {
    var best = 0
    for i in 1..<x.count where x[i] > x[best] { best = i }
    return best
}
