import Foundation
import DistillModels

/// Counts in fixed buckets: bucket k holds lengths in [from, to); the last is open-ended
/// (`to` is null in JSON). Lengths below the first edge count in the first bucket.
public struct LengthHistogram: Codable, Equatable, Sendable {
    public struct Bucket: Codable, Equatable, Sendable {
        public var from: Int
        public var to: Int?
        public var count: Int

        enum CodingKeys: String, CodingKey { case from, to, count }

        /// Writes `to` as null for the open-ended bucket (rather than leaving the key out).
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(from, forKey: .from)
            if let to { try c.encode(to, forKey: .to) } else { try c.encodeNil(forKey: .to) }
            try c.encode(count, forKey: .count)
        }
    }

    /// 0, 512, 1k, 2k, 4k, 8k, 16k, 32k and above.
    public static let defaultEdges = [0, 512, 1024, 2048, 4096, 8192, 16384, 32768]

    /// "characters" or "tokens".
    public var unit: String
    public var buckets: [Bucket]

    /// `edges` must be increasing and non-empty.
    public init(edges: [Int] = LengthHistogram.defaultEdges, unit: String = "characters") {
        precondition(!edges.isEmpty && zip(edges, edges.dropFirst()).allSatisfy { $0 < $1 }, "histogram edges must increase")
        self.unit = unit
        buckets = edges.indices.map { Bucket(from: edges[$0], to: $0 + 1 < edges.count ? edges[$0 + 1] : nil, count: 0) }
    }

    public mutating func add(_ length: Int) {
        let k = buckets.lastIndex { length >= $0.from } ?? 0
        buckets[k].count += 1
    }

    public var total: Int { buckets.reduce(0) { $0 + $1.count } }
}

/// Candidates and kept completions of the prompts of one source.
public struct SourceStatistics: Codable, Equatable, Sendable {
    public var prompts = 0
    public var promptsWithKept = 0
    public var candidates = 0
    public var kept = 0
    /// kept / candidates (0 with no candidates).
    public var acceptanceRate: Double { candidates == 0 ? 0 : Double(kept) / Double(candidates) }

    public init() {}

    enum CodingKeys: String, CodingKey {
        case prompts, promptsWithKept = "prompts_with_kept", candidates, kept, acceptanceRate = "acceptance_rate"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        prompts = try c.decode(Int.self, forKey: .prompts)
        promptsWithKept = try c.decode(Int.self, forKey: .promptsWithKept)
        candidates = try c.decode(Int.self, forKey: .candidates)
        kept = try c.decode(Int.self, forKey: .kept)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(prompts, forKey: .prompts)
        try c.encode(promptsWithKept, forKey: .promptsWithKept)
        try c.encode(candidates, forKey: .candidates)
        try c.encode(kept, forKey: .kept)
        try c.encode(acceptanceRate, forKey: .acceptanceRate)
    }

    mutating func add(_ r: SamplingResult) {
        let k = r.candidates.filter(\.isKept).count
        prompts += 1
        candidates += r.candidates.count
        kept += k
        if k > 0 { promptsWithKept += 1 }
    }
}

/// Statistics of a rejection-sampling run, written as `stats.json`:
///
///     {
///       "overall": {"prompts": 2, "prompts_with_kept": 1, "candidates": 8, "kept": 3, "acceptance_rate": 0.375},
///       "by_source": {"gsm8k": {…same fields…}, "unknown": {…}},
///       "rejection_reasons": {"wrong_answer": 4, "template": 1, …},
///       "rejected_candidates": 5,
///       "kept_length_histogram": {"unit": "characters", "buckets": [{"from": 0, "to": 512, "count": 2}, …, {"from": 32768, "to": null, "count": 0}]}
///     }
///
/// A candidate rejected for several reasons counts once under each (so the reason counts may sum
/// to more than `rejected_candidates`). Prompts without a source count under "unknown".
public struct SamplingStatistics: Codable, Equatable, Sendable {
    public static let unknownSource = "unknown"

    public var overall = SourceStatistics()
    public var bySource: [String: SourceStatistics] = [:]
    /// `Rejection.Kind` raw value → candidates rejected for it.
    public var rejectionReasons: [String: Int] = [:]
    public var rejectedCandidates = 0
    public var keptLengthHistogram: LengthHistogram

    public init(histogramEdges: [Int] = LengthHistogram.defaultEdges, unit: String = "characters") {
        keptLengthHistogram = LengthHistogram(edges: histogramEdges, unit: unit)
    }

    enum CodingKeys: String, CodingKey {
        case overall, bySource = "by_source", rejectionReasons = "rejection_reasons",
             rejectedCandidates = "rejected_candidates", keptLengthHistogram = "kept_length_histogram"
    }

    /// kept / candidates over all prompts.
    public var acceptanceRate: Double { overall.acceptanceRate }

    /// Counts one prompt's result; `length` measures kept completions for the histogram (its unit
    /// should match the histogram's).
    public mutating func add(_ result: SamplingResult, length: (String) -> Int = { $0.count }) {
        overall.add(result)
        bySource[result.prompt.source ?? Self.unknownSource, default: SourceStatistics()].add(result)
        for c in result.candidates {
            if c.isKept {
                keptLengthHistogram.add(length(c.completion))
            } else {
                rejectedCandidates += 1
                for kind in Set(c.rejections.map(\.kind)) { rejectionReasons[kind.rawValue, default: 0] += 1 }
            }
        }
    }

    /// Pretty-printed JSON with sorted keys.
    public func jsonData() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try e.encode(self)
    }

    /// Writes `jsonData()` to `path` atomically.
    public func write(to path: String) throws {
        do { try jsonData().write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw TraceDataError.file(file: path, reason: "cannot write the statistics (\(ioFailureReason(error)))")
        }
    }

    /// Reads a `stats.json`.
    public static func read(path: String) throws -> SamplingStatistics {
        guard let data = FileManager.default.contents(atPath: path) else { throw TraceDataError.file(file: path, reason: "cannot read the file") }
        do { return try JSONDecoder().decode(SamplingStatistics.self, from: data) } catch {
            throw TraceDataError.file(file: path, reason: "not a statistics file (\(error))")
        }
    }
}

extension SamplingStatistics {
    /// Adds (or replaces) a top-level section of a written `stats.json`, keeping the rest as it
    /// is; written to a temporary file and renamed.
    public static func addSection<T: Encodable>(_ key: String, _ value: T, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        guard var object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] else {
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSFilePathErrorKey: path])
        }
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        object[key] = try JSONSerialization.jsonObject(with: e.encode(value))
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try data.write(to: url, options: .atomic)
    }
}
