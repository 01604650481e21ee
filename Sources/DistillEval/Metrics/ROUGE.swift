import Foundation

/// ROUGE-1, ROUGE-2 and ROUGE-L as Google's `rouge-score` computes them with its default
/// tokenizer (no stemming): text lowercased, every run of characters outside `[a-z0-9]` a
/// separator. Per pair, with overlaps of clipped n-gram counts (ROUGE-N) or the longest common
/// subsequence (ROUGE-L):
///
///     P = overlap / prediction count,  R = overlap / reference count,  F = 2PR / (P + R)   (0 when P + R = 0)
///
/// With several references the one of highest F is used (per measure). The corpus figure is the
/// mean over pairs.
public enum ROUGE {
    public struct Score: Equatable, Sendable, Codable {
        public var precision: Double
        public var recall: Double
        public var f: Double

        public init(precision: Double, recall: Double) {
            self.precision = precision
            self.recall = recall
            f = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
        }
    }

    public enum Kind: String, CaseIterable, Sendable, Codable {
        case rouge1, rouge2, rougeL
    }

    public static func tokenize(_ text: String) -> [String] {
        var tokens: [String] = [], current = String.UnicodeScalarView()
        for c in text.lowercased().unicodeScalars {
            if (0x61...0x7A).contains(c.value) || (0x30...0x39).contains(c.value) {
                current.append(c)
            } else if !current.isEmpty {
                tokens.append(String(current))
                current = String.UnicodeScalarView()
            }
        }
        if !current.isEmpty { tokens.append(String(current)) }
        return tokens
    }

    /// One prediction against one reference.
    public static func score(_ kind: Kind, prediction: String, reference: String) -> Score {
        let p = tokenize(prediction), r = tokenize(reference)
        switch kind {
        case .rouge1: return ngramScore(p, r, n: 1)
        case .rouge2: return ngramScore(p, r, n: 2)
        case .rougeL:
            guard !p.isEmpty, !r.isEmpty else { return Score(precision: 0, recall: 0) }
            let l = Double(lcsLength(r, p))
            return Score(precision: l / Double(p.count), recall: l / Double(r.count))
        }
    }

    /// Against several references: the score of the highest F (the first on a tie).
    public static func score(_ kind: Kind, prediction: String, references: [String]) -> Score {
        var best: Score?
        for r in references {
            let s = score(kind, prediction: prediction, reference: r)
            if best == nil || s.f > best!.f { best = s }
        }
        return best ?? Score(precision: 0, recall: 0)
    }

    /// Mean F of each kind over the pairs.
    public static func corpus(predictions: [String], references: [[String]]) throws -> [Kind: Double] {
        guard predictions.count == references.count else {
            throw EvalError.invalidInput("ROUGE: \(predictions.count) predictions but \(references.count) reference sets")
        }
        guard !predictions.isEmpty else { throw EvalError.invalidInput("ROUGE: no predictions") }
        var out: [Kind: Double] = [:]
        for kind in Kind.allCases {
            let total = zip(predictions, references).map { score(kind, prediction: $0, references: $1).f }.reduce(0, +)
            out[kind] = total / Double(predictions.count)
        }
        return out
    }

    static func ngramScore(_ p: [String], _ r: [String], n: Int) -> Score {
        func counts(_ t: [String]) -> [ArraySlice<String>: Int] {
            var c: [ArraySlice<String>: Int] = [:]
            if t.count >= n { for i in 0...(t.count - n) { c[t[i..<(i + n)], default: 0] += 1 } }
            return c
        }
        let pc = counts(p), rc = counts(r)
        let overlap = pc.reduce(0) { $0 + min($1.value, rc[$1.key] ?? 0) }
        let pTotal = pc.values.reduce(0, +), rTotal = rc.values.reduce(0, +)
        return Score(precision: Double(overlap) / Double(max(pTotal, 1)), recall: Double(overlap) / Double(max(rTotal, 1)))
    }

    static func lcsLength(_ a: [String], _ b: [String]) -> Int {
        var prev = [Int](repeating: 0, count: b.count + 1), cur = prev
        for i in 1...a.count {
            for j in 1...b.count {
                cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : max(prev[j], cur[j - 1])
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }
}
