import Foundation

/// Removes training examples that overlap evaluation sets, so that a held-out score measures
/// what the student learned rather than what it saw (open-r1 decontaminates its traces the same
/// way, with 8-grams).
///
/// Text is compared as words: every string value of a JSON line (at any depth: `text`, message
/// contents, `prompt`, `question`, `answer`, …; keys are not text) is lower-cased and cut at every
/// character that is not a letter or a digit, so spacing, punctuation and case do not hide an
/// overlap. An example overlaps when one of its strings shares a run of `n` consecutive words
/// with a string of an evaluation line; strings of fewer than `n` words contribute no run (a short
/// answer such as "42" would match almost anything).
public struct Decontaminator: Sendable {
    /// Where an n-gram was first seen in the evaluation files.
    public struct Source: Equatable, Sendable {
        public var file: String
        public var line: Int
    }

    /// A removed training example.
    public struct Overlap: Equatable, Sendable {
        /// Line of the training file.
        public var line: Int
        /// The first shared n-gram (words joined by spaces) and where the evaluation set has it.
        public var ngram: String
        public var source: Source
    }

    /// What `filter` kept and removed.
    public struct Report: Equatable, Sendable {
        public var ngram: Int
        public var examples: Int
        public var kept: Int
        public var removed: [Overlap]
        /// Removed examples per evaluation file.
        public var removedByFile: [String: Int] {
            removed.reduce(into: [:]) { $0[$1.source.file, default: 0] += 1 }
        }

        /// The report as JSON (for `--report`).
        public var json: [String: Any] {
            ["ngram": ngram, "examples": examples, "kept": kept, "removed": removed.count,
             "removed_by_file": removedByFile,
             "overlaps": removed.map { ["line": $0.line, "ngram": $0.ngram, "eval_file": $0.source.file, "eval_line": $0.source.line] as [String: Any] }]
        }
    }

    public let n: Int
    public let files: [String]
    private var grams: [String: Source] = [:]
    /// Distinct n-grams of the evaluation files.
    public var count: Int { grams.count }

    /// Reads the evaluation JSONL files (any JSON objects); `n` ≥ 1. Errors name file and line.
    public init(against files: [String], n: Int = 8) throws {
        guard n >= 1 else { throw TraceDataError.invalidArgument("the n-gram length must be at least 1, got \(n)") }
        guard !files.isEmpty else { throw TraceDataError.invalidArgument("no evaluation file to decontaminate against") }
        self.n = n
        self.files = files
        for file in files {
            let lines = try TraceJSONL.lines(path: file)
            guard !lines.isEmpty else { throw TraceDataError.file(file: file, reason: "the file holds no examples (empty)") }
            for (line, text) in lines {
                let obj = try TraceJSONL.object(text, file: file, line: line, expected: "one example per line")
                for s in Self.strings(in: obj) {
                    for g in Self.ngrams(Self.words(s), n: n) where grams[g] == nil { grams[g] = Source(file: file, line: line) }
                }
            }
        }
    }

    /// The first n-gram of `object` found in the evaluation files, if any.
    public func overlap(_ object: [String: Any]) -> (ngram: String, source: Source)? {
        for s in Self.strings(in: object) {
            for g in Self.ngrams(Self.words(s), n: n) { if let src = grams[g] { return (g, src) } }
        }
        return nil
    }

    /// The lines of `path` that do not overlap (verbatim, in order) and the report.
    public func filter(path: String) throws -> (lines: [String], report: Report) {
        let lines = try TraceJSONL.lines(path: path)
        guard !lines.isEmpty else { throw TraceDataError.file(file: path, reason: "the file holds no examples (empty)") }
        var kept: [String] = [], removed: [Overlap] = []
        for (line, text) in lines {
            let obj = try TraceJSONL.object(text, file: path, line: line, expected: "one example per line")
            if let o = overlap(obj) {
                removed.append(Overlap(line: line, ngram: o.ngram, source: o.source))
            } else {
                kept.append(text.trimmingCharacters(in: .whitespaces))
            }
        }
        return (kept, Report(ngram: n, examples: lines.count, kept: kept.count, removed: removed))
    }

    /// Filters `path` into `out` (written atomically; an error when nothing is left).
    @discardableResult
    public func filter(path: String, out: String) throws -> Report {
        let (lines, report) = try filter(path: path)
        guard !lines.isEmpty else {
            throw TraceDataError.file(file: path, reason: "every example overlaps the evaluation set; nothing to write")
        }
        try TraceJSONL.write(lines: lines, to: out)
        return report
    }

    /// Lower-cased words: maximal runs of letters and digits.
    public static func words(_ text: String) -> [String] {
        var out: [String] = [], current = ""
        for ch in text.lowercased().unicodeScalars {
            if CharacterSet.alphanumerics.contains(ch) {
                current.unicodeScalars.append(ch)
            } else if !current.isEmpty {
                out.append(current)
                current = ""
            }
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// Every run of `n` consecutive words, joined by single spaces.
    static func ngrams(_ words: [String], n: Int) -> [String] {
        guard words.count >= n else { return [] }
        return (0...(words.count - n)).map { words[$0..<($0 + n)].joined(separator: " ") }
    }

    /// The string values of a JSON value, depth first, in key order (keys sorted).
    static func strings(in value: Any) -> [String] {
        switch value {
        case let s as String: return [s]
        case let a as [Any]: return a.flatMap { strings(in: $0) }
        case let d as [String: Any]: return d.keys.sorted().flatMap { strings(in: d[$0]!) }
        default: return []
        }
    }
}
