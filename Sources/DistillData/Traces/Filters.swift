import Foundation

/// A per-candidate check that does not depend on other candidates (duplicates are the
/// `RejectionSampler`'s job, as they need the prompt's kept set).
public protocol TraceFilter: Sendable {
    func check(_ completion: String, trace: ParsedTrace) -> Verdict
}

/// Which part of a completion a filter measures.
public enum TracePart: String, Codable, Sendable {
    case completion, reasoning, answer

    func text(_ completion: String, _ trace: ParsedTrace) -> String {
        switch self {
        case .completion: return completion
        case .reasoning: return trace.reasoning ?? ""
        case .answer: return trace.answer
        }
    }
}

/// Rejects completions that break the trace template (`TraceTemplate.violations`), naming every
/// violation.
public struct TemplateFilter: TraceFilter {
    public var template: TraceTemplate

    public init(template: TraceTemplate = .default) { self.template = template }

    public func check(_ completion: String, trace: ParsedTrace) -> Verdict {
        let v = template.violations(completion)
        if v.isEmpty { return .accepted }
        return .rejected(Rejection(.template, v.map(\.description).joined(separator: "; ")))
    }
}

/// Length bounds (inclusive) on a part of the completion, in characters or in tokens counted by a
/// closure (e.g. `{ tokenizer.encode($0, addSpecialTokens: false).count }`).
public struct LengthFilter: TraceFilter {
    public var minimum: Int?
    public var maximum: Int?
    public var part: TracePart
    /// "characters", "tokens", … (for messages).
    public var unit: String
    public var measure: @Sendable (String) -> Int

    public init(minimum: Int? = nil, maximum: Int? = nil, part: TracePart = .completion, unit: String,
                measure: @escaping @Sendable (String) -> Int) {
        self.minimum = minimum
        self.maximum = maximum
        self.part = part
        self.unit = unit
        self.measure = measure
    }

    /// Bounds in Characters (extended grapheme clusters).
    public static func characters(minimum: Int? = nil, maximum: Int? = nil, part: TracePart = .completion) -> LengthFilter {
        LengthFilter(minimum: minimum, maximum: maximum, part: part, unit: "characters") { $0.count }
    }

    /// Bounds in tokens, counted by `count`.
    public static func tokens(minimum: Int? = nil, maximum: Int? = nil, part: TracePart = .completion,
                              count: @escaping @Sendable (String) -> Int) -> LengthFilter {
        LengthFilter(minimum: minimum, maximum: maximum, part: part, unit: "tokens", measure: count)
    }

    public func check(_ completion: String, trace: ParsedTrace) -> Verdict {
        let n = measure(part.text(completion, trace))
        let what = part == .completion ? "" : "\(part.rawValue) "
        if let minimum, n < minimum { return .rejected(Rejection(.tooShort, "\(what)\(n) \(unit) < minimum \(minimum)")) }
        if let maximum, n > maximum { return .rejected(Rejection(.tooLong, "\(what)\(n) \(unit) > maximum \(maximum)")) }
        return .accepted
    }
}

/// Degenerate repetition, the usual failure of sampled long reasoning (a loop of the same
/// paragraph until the token limit). Two tests, either rejects:
/// - the share of repeated word n-grams: with T word n-grams (words split at whitespace,
///   lowercased) of which U are distinct, (T − U) / T > `maxRepeatedNgramShare`. Checked only when
///   T ≥ `minNgrams`;
/// - a segment repeated: a line or sentence (split at newlines and at `.` `!` `?` followed by
///   whitespace; lowercased, whitespace collapsed) of at least `minSegmentLength` characters that
///   occurs `maxSegmentRepeats` times or more.
public struct RepetitionFilter: TraceFilter, Equatable {
    public var ngramSize: Int
    public var maxRepeatedNgramShare: Double
    public var minNgrams: Int
    public var maxSegmentRepeats: Int
    public var minSegmentLength: Int
    public var part: TracePart

    public init(ngramSize: Int = 10, maxRepeatedNgramShare: Double = 0.3, minNgrams: Int = 20,
                maxSegmentRepeats: Int = 5, minSegmentLength: Int = 20, part: TracePart = .completion) {
        self.ngramSize = ngramSize
        self.maxRepeatedNgramShare = maxRepeatedNgramShare
        self.minNgrams = minNgrams
        self.maxSegmentRepeats = maxSegmentRepeats
        self.minSegmentLength = minSegmentLength
        self.part = part
    }

    /// (T − U) / T over word n-grams, and T.
    public static func repeatedNgramShare(_ text: String, n: Int) -> (share: Double, total: Int) {
        let words = text.lowercased().split(whereSeparator: { $0.isWhitespace })
        guard n > 0, words.count >= n else { return (0, 0) }
        var seen = Set<[Substring]>()
        let total = words.count - n + 1
        for i in 0..<total { seen.insert(Array(words[i..<i + n])) }
        return (Double(total - seen.count) / Double(total), total)
    }

    /// The most repeated line or sentence of at least `minLength` characters, and its count.
    public static func mostRepeatedSegment(_ text: String, minLength: Int) -> (segment: String, count: Int)? {
        var counts: [String: Int] = [:]
        var order: [String] = []
        for line in text.split(whereSeparator: \.isNewline) {
            var current = ""
            let chars = Array(line)
            for (i, ch) in chars.enumerated() {
                current.append(ch)
                if ".!?".contains(ch) && (i + 1 == chars.count || chars[i + 1].isWhitespace) {
                    add(current)
                    current = ""
                }
            }
            add(current)
        }
        func add(_ s: String) {
            let key = s.lowercased().split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
            guard key.count >= minLength else { return }
            if counts[key] == nil { order.append(key) }
            counts[key, default: 0] += 1
        }
        var best: (String, Int)?
        for k in order where best == nil || counts[k]! > best!.1 { best = (k, counts[k]!) }
        return best
    }

    public func check(_ completion: String, trace: ParsedTrace) -> Verdict {
        let text = part.text(completion, trace)
        let (share, total) = Self.repeatedNgramShare(text, n: ngramSize)
        if total >= minNgrams && share > maxRepeatedNgramShare {
            return .rejected(Rejection(.repetition, String(format: "%.0f%% of %d-word n-grams are repeats (maximum %.0f%%)",
                                                           share * 100, ngramSize, maxRepeatedNgramShare * 100)))
        }
        if let (segment, count) = Self.mostRepeatedSegment(text, minLength: minSegmentLength), count >= maxSegmentRepeats {
            let shown = segment.count > 60 ? String(segment.prefix(60)) + "…" : segment
            return .rejected(Rejection(.repetition, "\"\(shown)\" occurs \(count) times (maximum \(maxSegmentRepeats - 1))"))
        }
        return .accepted
    }
}

/// Writing systems, by Unicode block, for the language-mixing filter.
public enum Script: String, Codable, CaseIterable, Sendable, Comparable {
    case latin, greek, cyrillic, armenian, hebrew, arabic, devanagari, thai, hangul, kana, han, other

    /// Chinese, Japanese and Korean.
    public static let cjk: Set<Script> = [.han, .kana, .hangul]

    public static func < (a: Script, b: Script) -> Bool { a.rawValue < b.rawValue }

    /// The script of a letter; nil for scalars that are not counted (non-letters, and letter-like
    /// math symbols: U+2100–214F ℝ ℕ …, U+1D400–1D7FF 𝑥 𝔸 …).
    public static func of(_ u: Unicode.Scalar) -> Script? {
        let v = u.value
        if v < 0x80 { return (u.properties.isAlphabetic) ? .latin : nil }
        guard u.properties.isAlphabetic else { return nil }
        switch v {
        case 0x2100...0x214F, 0x1D400...0x1D7FF: return nil
        case 0x00C0...0x02AF, 0x1E00...0x1EFF, 0x2C60...0x2C7F, 0xA720...0xA7FF, 0xFF21...0xFF3A, 0xFF41...0xFF5A, 0x00AA, 0x00BA: return .latin
        case 0x0370...0x03FF, 0x1F00...0x1FFF: return .greek
        case 0x0400...0x052F, 0x1C80...0x1C8F, 0x2DE0...0x2DFF, 0xA640...0xA69F: return .cyrillic
        case 0x0530...0x058F: return .armenian
        case 0x0590...0x05FF, 0xFB1D...0xFB4F: return .hebrew
        case 0x0600...0x06FF, 0x0750...0x077F, 0x08A0...0x08FF, 0xFB50...0xFDFF, 0xFE70...0xFEFF: return .arabic
        case 0x0900...0x097F: return .devanagari
        case 0x0E00...0x0E7F: return .thai
        case 0x1100...0x11FF, 0x3130...0x318F, 0xA960...0xA97F, 0xAC00...0xD7AF, 0xD7B0...0xD7FF: return .hangul
        case 0x3040...0x30FF, 0x31F0...0x31FF, 0xFF66...0xFF9F: return .kana
        case 0x3005...0x3007, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xF900...0xFAFF, 0x20000...0x323AF: return .han
        default: return .other
        }
    }

    /// Letters per script.
    public static func letterCounts(_ text: String) -> [Script: Int] {
        var out: [Script: Int] = [:]
        for u in text.unicodeScalars { if let s = of(u) { out[s, default: 0] += 1 } }
        return out
    }
}

/// Language mixing (R1's known failure: English reasoning that drifts into Chinese): the share of
/// letters outside the expected scripts must not exceed `maxForeignShare` (0 rejects any foreign
/// letter). Only letters count (digits, punctuation, math symbols do not). Greek is expected by
/// default beside Latin, as math reasoning writes α, π, θ.
public struct LanguageMixingFilter: TraceFilter, Equatable {
    public var expected: Set<Script>
    public var maxForeignShare: Double
    public var part: TracePart

    public init(expected: Set<Script> = [.latin, .greek], maxForeignShare: Double = 0.01, part: TracePart = .completion) {
        self.expected = expected
        self.maxForeignShare = maxForeignShare
        self.part = part
    }

    public func check(_ completion: String, trace: ParsedTrace) -> Verdict {
        let counts = Script.letterCounts(part.text(completion, trace))
        let total = counts.values.reduce(0, +)
        let foreign = counts.filter { !expected.contains($0.key) }
        let nForeign = foreign.values.reduce(0, +)
        guard total > 0, nForeign > 0 else { return .accepted }
        let share = Double(nForeign) / Double(total)
        if share <= maxForeignShare { return .accepted }
        let found = foreign.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .map { "\($0.key.rawValue) \($0.value)" }.joined(separator: ", ")
        let exp = expected.sorted().map(\.rawValue).joined(separator: ", ")
        let pct = String(format: "%.1f%% of %d letters", share * 100, total)
        return .rejected(Rejection(.languageMixing, "\(pct) outside \(exp) (\(found); maximum \(String(format: "%.1f%%", maxForeignShare * 100)))"))
    }
}
