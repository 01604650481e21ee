import Foundation

/// Corpus BLEU as sacreBLEU computes it by default (`corpus_bleu`: 13a tokenization, case kept,
/// n-grams 1…4, exponential smoothing, brevity penalty):
///
///     BLEU = BP · exp((1/4) Σₙ log pₙ),   pₙ = 100 · Σ clipped matches / Σ hypothesis n-grams,
///     BP = 1 if c ≥ r else exp(1 − r/c)
///
/// where matches are clipped by each n-gram's largest count in any one reference, c is the total
/// hypothesis length and r the sum over segments of the reference length closest to the
/// hypothesis's (the shorter on a tie). A precision with no match becomes 100/(2ᵏ·total) for the
/// k-th such order ("exp" smoothing, as mteval-v13a); no match at all gives 0.
public enum BLEU {
    public struct Score: Equatable, Sendable, Codable {
        /// 0…100.
        public var score: Double
        /// pₙ in percent, n = 1…4.
        public var precisions: [Double]
        public var brevityPenalty: Double
        public var hypothesisLength: Int
        public var referenceLength: Int
        public var matches: [Int]
        public var totals: [Int]
    }

    public static let maxOrder = 4

    /// `references[i]` holds every reference of hypothesis i (at least one).
    public static func corpus(hypotheses: [String], references: [[String]]) throws -> Score {
        guard hypotheses.count == references.count else {
            throw EvalError.invalidInput("BLEU: \(hypotheses.count) hypotheses but \(references.count) reference sets")
        }
        var matches = [Int](repeating: 0, count: maxOrder), totals = matches
        var sysLen = 0, refLen = 0
        for (i, (h, refs)) in zip(hypotheses, references).enumerated() {
            guard !refs.isEmpty else { throw EvalError.invalidInput("BLEU: hypothesis \(i) has no reference") }
            let hyp = scalarTokens(tokenize13a(h))
            var refCounts: [[[UInt32]]: Int] = [:]
            var lengths: [Int] = []
            for r in refs {
                let toks = scalarTokens(tokenize13a(r))
                lengths.append(toks.count)
                for (g, c) in ngramCounts(toks, upTo: maxOrder) { refCounts[g] = max(refCounts[g] ?? 0, c) }
            }
            sysLen += hyp.count
            refLen += closestLength(hyp.count, lengths)
            for (g, c) in ngramCounts(hyp, upTo: maxOrder) {
                totals[g.count - 1] += c
                matches[g.count - 1] += min(c, refCounts[g] ?? 0)
            }
        }
        return score(matches: matches, totals: totals, hypothesisLength: sysLen, referenceLength: refLen)
    }

    static func score(matches: [Int], totals: [Int], hypothesisLength c: Int, referenceLength r: Int) -> Score {
        let bp = c < r ? (c > 0 ? exp(1 - Double(r) / Double(c)) : 0) : 1
        var precisions = [Double](repeating: 0, count: maxOrder)
        var result = Score(score: 0, precisions: precisions, brevityPenalty: bp, hypothesisLength: c, referenceLength: r,
                           matches: matches, totals: totals)
        guard matches.contains(where: { $0 > 0 }) else { return result }
        var smooth = 1.0
        for n in 0..<maxOrder {
            guard totals[n] > 0 else { break }
            if matches[n] == 0 {
                smooth *= 2
                precisions[n] = 100 / (smooth * Double(totals[n]))
            } else {
                precisions[n] = 100 * Double(matches[n]) / Double(totals[n])
            }
        }
        // log 0 counts as −9999999999 (sacreBLEU's floor), which drives the score to 0.
        let logs = precisions.map { $0 > 0 ? Foundation.log($0) : -9_999_999_999 }
        result.precisions = precisions
        result.score = bp * exp(logs.reduce(0, +) / Double(maxOrder))
        return result
    }

    /// The reference length closest to `length`, the shorter one on a tie.
    static func closestLength(_ length: Int, _ lengths: [Int]) -> Int {
        var best = lengths[0]
        for l in lengths.dropFirst() {
            let d = abs(length - l), bd = abs(length - best)
            if d < bd || (d == bd && l < best) { best = l }
        }
        return best
    }

    /// Tokens compared by code points, as Python compares strings (Swift's `String` equality would
    /// also equate canonically equivalent spellings).
    static func scalarTokens(_ tokens: [String]) -> [[UInt32]] { tokens.map { $0.unicodeScalars.map(\.value) } }

    static func ngramCounts(_ tokens: [[UInt32]], upTo order: Int) -> [[[UInt32]]: Int] {
        var counts: [[[UInt32]]: Int] = [:]
        for n in 1...order where tokens.count >= n {
            for i in 0...(tokens.count - n) { counts[Array(tokens[i..<(i + n)]), default: 0] += 1 }
        }
        return counts
    }

    /// mteval-v13a tokenization (sacreBLEU's "13a"), on Unicode scalars: `<skipped>` removed,
    /// `-\n` joined, newlines to spaces, the four HTML entities `&quot; &amp; &lt; &gt;` decoded
    /// (in that order), then: ASCII punctuation other than `' , - .` split off; `.` and `,` split
    /// off unless between digits (two passes: not after a digit, not before one); `-` split off after
    /// a digit; whitespace-separated tokens. The trailing whitespace of the segment is dropped first.
    public static func tokenize13a(_ text: String) -> [String] {
        var line = String(text.unicodeScalars.reversed().drop(while: { isPythonSpace($0) }).reversed().map(Character.init))
        line = line.replacingOccurrences(of: "<skipped>", with: "").replacingOccurrences(of: "-\n", with: "")
            .replacingOccurrences(of: "\n", with: " ")
        if line.contains("&") {
            for (e, c) in [("&quot;", "\""), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")] {
                line = line.replacingOccurrences(of: e, with: c)
            }
        }
        var s = [Unicode.Scalar](" ".unicodeScalars) + Array(line.unicodeScalars) + [" "]
        // 1. Punctuation: { … ~, [ … `, space … &, ( … +, : … @, /.
        s = s.flatMap { c -> [Unicode.Scalar] in
            let v = c.value
            let punct = (0x7B...0x7E).contains(v) || (0x5B...0x60).contains(v) || (0x20...0x26).contains(v)
                || (0x28...0x2B).contains(v) || (0x3A...0x40).contains(v) || v == 0x2F
            return punct ? [" ", c, " "] : [c]
        }
        // 2. ([^0-9])([.,]) → "\1 \2 "   3. ([.,])([^0-9]) → " \1 \2"   4. ([0-9])(-) → "\1 \2 "
        s = substitutePairs(s, first: { !isDigit($0) }, second: isPeriodOrComma) { a, b in [a, " ", b, " "] }
        s = substitutePairs(s, first: isPeriodOrComma, second: { !isDigit($0) }) { a, b in [" ", a, " ", b] }
        s = substitutePairs(s, first: isDigit, second: { $0 == "-" }) { a, b in [a, " ", b, " "] }
        return splitOnPythonWhitespace(s)
    }

    /// Left-to-right, non-overlapping replacement of two-scalar matches (as `re.sub`).
    static func substitutePairs(_ s: [Unicode.Scalar], first: (Unicode.Scalar) -> Bool, second: (Unicode.Scalar) -> Bool,
                                replace: (Unicode.Scalar, Unicode.Scalar) -> [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(s.count + s.count / 4)
        var i = 0
        while i < s.count {
            if i + 1 < s.count, first(s[i]), second(s[i + 1]) {
                out += replace(s[i], s[i + 1])
                i += 2
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return out
    }

    static func isDigit(_ c: Unicode.Scalar) -> Bool { (0x30...0x39).contains(c.value) }
    static func isPeriodOrComma(_ c: Unicode.Scalar) -> Bool { c == "." || c == "," }
}

/// Whitespace as Python's `str.split()` sees it: Unicode White_Space plus the separators U+001C…U+001F.
func isPythonSpace(_ c: Unicode.Scalar) -> Bool {
    c.properties.isWhitespace || (0x1C...0x1F).contains(c.value)
}

func splitOnPythonWhitespace(_ s: [Unicode.Scalar]) -> [String] {
    var tokens: [String] = [], current = String.UnicodeScalarView()
    for c in s {
        if isPythonSpace(c) {
            if !current.isEmpty { tokens.append(String(current)); current = String.UnicodeScalarView() }
        } else {
            current.append(c)
        }
    }
    if !current.isEmpty { tokens.append(String(current)) }
    return tokens
}

public enum EvalError: Error, Equatable, CustomStringConvertible {
    case invalidInput(String)

    public var description: String {
        switch self {
        case .invalidInput(let m): return m
        }
    }
}
