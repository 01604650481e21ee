import DistillTensor
import Foundation

/// One input of a mix: a JSONL file and its weight.
public struct MixSource: Equatable, Sendable {
    public var path: String
    /// Relative weight (> 0); weights need not sum to 1.
    public var weight: Double

    public init(path: String, weight: Double) {
        self.path = path
        self.weight = weight
    }

    /// Parses `PATH:WEIGHT` (split at the last colon, so paths may hold colons), e.g. `a.jsonl:0.8`.
    public init(argument: String) throws {
        guard let colon = argument.lastIndex(of: ":") else {
            throw TraceDataError.invalidArgument("input '\(argument)': expected PATH:WEIGHT (e.g. a.jsonl:0.8)")
        }
        let path = String(argument[..<colon]), w = String(argument[argument.index(after: colon)...])
        guard !path.isEmpty else { throw TraceDataError.invalidArgument("input '\(argument)': the path is empty (expected PATH:WEIGHT)") }
        guard let weight = Double(w), weight.isFinite, weight > 0 else {
            throw TraceDataError.invalidArgument("input '\(argument)': the weight '\(w)' is not a positive number (expected PATH:WEIGHT)")
        }
        self.init(path: path, weight: weight)
    }
}

/// What a mix took from each source.
public struct MixReport: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        public var path: String
        /// The weight as a share of all weights.
        public var share: Double
        /// Examples in the file.
        public var available: Int
        /// Examples drawn into the mix.
        public var taken: Int
        /// Examples removed before drawing because they overlap an evaluation set.
        public var removed: Int = 0
        /// More drawn than available: examples repeat.
        public var withReplacement: Bool { taken > available }
    }

    public var entries: [Entry]
    public var total: Int
    public var seed: UInt64

    /// Lines for the user: one per source drawn with replacement.
    public var notes: [String] {
        entries.filter(\.withReplacement).map { e in
            let times = e.taken / e.available, extra = e.taken % e.available
            let how = extra == 0 ? "each example used \(times) times"
                : "each example used \(times) time\(times == 1 ? "" : "s"), \(extra) of them \(times + 1) times"
            return "\(e.path): \(e.taken) drawn from \(e.available) examples, so sampled with replacement (\(how))"
        }
    }
}

/// Mixing JSONL data sets by ratio.
///
/// Inputs are JSONL files, one JSON object per line (any keys: chat records, prompts, text);
/// lines are copied verbatim. Counts per source follow the weights' shares by largest remainder
/// (they sum to the total exactly; ties go to the earlier source):
/// - with a total, each source gets its share of it; a source asked for more than it holds is
///   drawn with replacement — every example ⌊k/n⌋ times, plus k mod n distinct ones at random —
///   and the report says so;
/// - without a total, the largest total T whose quotas T·share all fit their sources, so that no
///   example repeats (e.g. 100 and 10 examples at 0.8 : 0.2 give 40 + 10).
///
/// Draws use one seeded generator (`RandomGenerator`, sources in the order given), and the mixed
/// lines are shuffled with it: the same inputs and seed give the same file.
public enum DatasetMixer {
    /// Per-source counts summing to `total` in proportion to `weights` (largest remainder).
    public static func apportion(_ total: Int, weights: [Double]) -> [Int] {
        let sum = weights.reduce(0, +)
        let quotas = weights.map { Double(total) * $0 / sum }
        var counts = quotas.map { Int($0.rounded(.down)) }
        var left = total - counts.reduce(0, +)
        let order = quotas.indices.sorted { a, b in
            let ra = quotas[a] - Double(counts[a]), rb = quotas[b] - Double(counts[b])
            return ra != rb ? ra > rb : a < b
        }
        var k = 0
        while left > 0 { counts[order[k % order.count]] += 1; left -= 1; k += 1 }
        return counts
    }

    /// Counts per source: `apportion(total)`, or without a total the apportionment of the largest
    /// T with T·share_i ≤ available_i for every source.
    public static func plan(available: [Int], weights: [Double], total: Int?) throws -> [Int] {
        guard !available.isEmpty, available.count == weights.count else { throw TraceDataError.invalidArgument("no inputs to mix") }
        if let total {
            guard total > 0 else { throw TraceDataError.invalidArgument("the total must be positive, got \(total)") }
            return apportion(total, weights: weights)
        }
        // The largest T whose every quota T·share stays within its source: T = ⌊min n_i / share_i⌋
        // (a quota ≤ n_i rounds to at most n_i, so the apportionment fits).
        let sum = weights.reduce(0, +)
        let limit = available.indices.map { Double(available[$0]) * sum / weights[$0] }.min()!
        var t = min(Int((limit * (1 + 1e-12)).rounded(.down)), available.reduce(0, +))
        while t > 0 && !zip(apportion(t, weights: weights), available).allSatisfy({ $0 <= $1 }) { t -= 1 }
        return apportion(t, weights: weights)
    }

    /// Uniform in 0..<n without modulo bias.
    static func below(_ n: Int, _ g: inout RandomGenerator) -> Int {
        let bound = UInt64(n)
        let limit = (UInt64.max / bound) * bound
        var x = g.next()
        while x >= limit { x = g.next() }
        return Int(x % bound)
    }

    /// `k` distinct indices of 0..<n in random order (partial Fisher–Yates); k ≤ n.
    static func choose(_ k: Int, of n: Int, _ g: inout RandomGenerator) -> [Int] {
        var idx = Array(0..<n)
        for i in 0..<k { idx.swapAt(i, i + below(n - i, &g)) }
        return Array(idx[0..<k])
    }

    static func shuffle<T>(_ a: inout [T], _ g: inout RandomGenerator) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) { a.swapAt(i, below(i + 1, &g)) }
    }

    /// Reads a source's lines; each must be a JSON object (errors name file and line).
    public static func readLines(_ path: String) throws -> [String] {
        let lines = try TraceJSONL.lines(path: path)
        guard !lines.isEmpty else { throw TraceDataError.file(file: path, reason: "the file holds no examples (empty)") }
        for (line, text) in lines { _ = try TraceJSONL.object(text, file: path, line: line, expected: "one example per line") }
        return lines.map { $0.text.trimmingCharacters(in: .whitespaces) }
    }

    /// The mixed lines (shuffled) and what was taken from each source; with a `decontaminator`,
    /// lines overlapping its evaluation sets are removed from each source first.
    public static func mix(_ sources: [MixSource], total: Int?, seed: UInt64,
                           decontaminator: Decontaminator? = nil) throws -> (lines: [String], report: MixReport) {
        guard !sources.isEmpty else { throw TraceDataError.invalidArgument("no inputs to mix") }
        for s in sources where !(s.weight.isFinite && s.weight > 0) {
            throw TraceDataError.invalidArgument("input \(s.path): the weight \(s.weight) is not a positive number")
        }
        var removed = [Int](repeating: 0, count: sources.count)
        let data = try sources.enumerated().map { i, s -> [String] in
            guard let decontaminator else { return try readLines(s.path) }
            let (kept, report) = try decontaminator.filter(path: s.path)
            guard !kept.isEmpty else {
                throw TraceDataError.file(file: s.path, reason: "every example overlaps the evaluation set; nothing to mix")
            }
            removed[i] = report.removed.count
            return kept
        }
        let weights = sources.map(\.weight)
        let counts = try plan(available: data.map(\.count), weights: weights, total: total)
        var g = RandomGenerator(seed: seed)
        var out: [String] = []
        for (lines, k) in zip(data, counts) {
            let n = lines.count
            for _ in 0..<(k / n) { out += lines }
            out += choose(k % n, of: n, &g).map { lines[$0] }
        }
        shuffle(&out, &g)
        let sum = weights.reduce(0, +)
        let entries = sources.indices.map {
            MixReport.Entry(path: sources[$0].path, share: weights[$0] / sum, available: data[$0].count, taken: counts[$0],
                            removed: removed[$0])
        }
        return (out, MixReport(entries: entries, total: out.count, seed: seed))
    }

    /// Mixes and writes the result to `out` atomically.
    @discardableResult
    public static func mix(_ sources: [MixSource], total: Int?, seed: UInt64, out: String,
                           decontaminator: Decontaminator? = nil) throws -> MixReport {
        let (lines, report) = try mix(sources, total: total, seed: seed, decontaminator: decontaminator)
        guard !lines.isEmpty else { throw TraceDataError.invalidArgument("the mix is empty (a source is too small for its weight)") }
        try TraceJSONL.write(lines: lines, to: out)
        return report
    }
}
