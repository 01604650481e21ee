import Foundation

/// A final answer found in a completion's answer part, and the rule that found it.
public struct ExtractedAnswer: Equatable, Sendable {
    public var text: String
    public var rule: AnswerExtractor.Rule
    public init(text: String, rule: AnswerExtractor.Rule) { self.text = text; self.rule = rule }
}

/// Finds the final answer in a completion's answer part by trying rules in order; the first rule
/// that matches wins.
///
/// - `boxed`: the content of the **last** `\boxed{…}` (or `\fbox{…}`), nested braces balanced
///   (`\boxed{\frac{1}{2}}` gives `\frac{1}{2}`); `\boxed 5` (no braces) gives `5`.
/// - `gsm8k`: the rest of the line after the last `####` (GSM8K's solution format).
/// - `phrases`: the text after the last occurrence of one of the phrases (case-insensitive,
///   e.g. "The answer is"), up to the end of its line or sentence (a period followed by a space),
///   with a trailing period, colons and Markdown bold markers removed.
/// - `lastNumber`: the last number in the text (`-1,234.5`, `3/4`, `.5`).
public struct AnswerExtractor: Equatable, Codable, Sendable {
    public enum Rule: Equatable, Codable, Sendable {
        case boxed
        case gsm8k
        case phrases([String])
        case lastNumber
    }

    public static let defaultPhrases = ["the final answer is", "final answer:", "the answer is", "answer:"]

    /// Boxed, `####`, the default phrases, then the last number.
    public static let standard = AnswerExtractor(rules: [.boxed, .gsm8k, .phrases(defaultPhrases), .lastNumber])
    /// Boxed answers only (R1-style math data).
    public static let boxedOnly = AnswerExtractor(rules: [.boxed])

    public var rules: [Rule]

    public init(rules: [Rule]) { self.rules = rules }

    public func extract(from text: String) -> ExtractedAnswer? {
        for rule in rules {
            if let found = Self.apply(rule, to: text) {
                let t = found.trimmingCharacters(in: .whitespacesAndNewlines)
                if !t.isEmpty { return ExtractedAnswer(text: t, rule: rule) }
            }
        }
        return nil
    }

    /// The answer of a reference: the content of the last `\boxed{}` or the text after `####` when
    /// the reference is a worked solution, else the whole reference (trimmed).
    public static func referenceAnswer(_ reference: String) -> String {
        if let b = lastBoxed(in: reference) { return b.trimmingCharacters(in: .whitespacesAndNewlines) }
        if let g = afterHashes(in: reference) { return g.trimmingCharacters(in: .whitespacesAndNewlines) }
        return reference.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func apply(_ rule: Rule, to text: String) -> String? {
        switch rule {
        case .boxed: return lastBoxed(in: text)
        case .gsm8k: return afterHashes(in: text)
        case .phrases(let phrases): return afterPhrase(phrases, in: text)
        case .lastNumber: return lastNumber(in: text)
        }
    }

    /// The content of the last `\boxed{…}` / `\fbox{…}` with balanced braces (an unbalanced one is
    /// skipped); `\boxed x` gives the next whitespace-delimited word.
    public static func lastBoxed(in text: String) -> String? {
        let chars = Array(text)
        var best: (start: Int, value: String)?
        for command in ["\\boxed", "\\fbox"] {
            let cmd = Array(command)
            var i = 0
            while i + cmd.count <= chars.count {
                guard chars[i] == "\\", Array(chars[i..<i + cmd.count]) == cmd else { i += 1; continue }
                var j = i + cmd.count
                if j < chars.count, chars[j].isLetter { i = j; continue }  // \boxedfoo is another command
                while j < chars.count, chars[j] == " " { j += 1 }
                var value: String?
                if j < chars.count, chars[j] == "{" {
                    if let end = matchingBrace(chars, open: j) { value = String(chars[(j + 1)..<end]) }
                } else if j > i + cmd.count {
                    var k = j
                    while k < chars.count, !chars[k].isWhitespace, chars[k] != "$" { k += 1 }
                    if k > j { value = String(chars[j..<k]) }
                }
                if let value, best == nil || i > best!.start { best = (i, value) }
                i = j
            }
        }
        return best?.value
    }

    /// Index of the `}` closing the `{` at `open` (escaped braces `\{` `\}` do not count), or nil.
    static func matchingBrace(_ chars: [Character], open: Int) -> Int? {
        var depth = 0
        var i = open
        while i < chars.count {
            let c = chars[i]
            if c == "\\" { i += 2; continue }
            if c == "{" { depth += 1 }
            if c == "}" { depth -= 1; if depth == 0 { return i } }
            i += 1
        }
        return nil
    }

    static func afterHashes(in text: String) -> String? {
        guard let r = text.range(of: "####", options: .backwards) else { return nil }
        let rest = text[r.upperBound...]
        let line = rest.prefix { $0 != "\n" }
        return String(line)
    }

    static func afterPhrase(_ phrases: [String], in text: String) -> String? {
        var best: Range<String.Index>?
        for p in phrases where !p.isEmpty {
            if let r = text.range(of: p, options: [.caseInsensitive, .backwards]),
               best == nil || r.lowerBound > best!.lowerBound || (r.lowerBound == best!.lowerBound && r.upperBound > best!.upperBound) {
                best = r
            }
        }
        guard let best else { return nil }
        var rest = Substring(text[best.upperBound...].prefix { $0 != "\n" })
        // Cut at the end of the sentence: a period followed by whitespace (not a decimal point).
        let chars = Array(rest)
        for i in chars.indices where chars[i] == "." && i + 1 < chars.count && chars[i + 1].isWhitespace {
            rest = Substring(chars[..<i])
            break
        }
        var s = String(rest).trimmingCharacters(in: .whitespaces)
        var changed = true
        while changed {
            changed = false
            for junk in ["**", ":", "*"] where s.hasPrefix(junk) { s.removeFirst(junk.count); changed = true }
            for junk in ["**", ".", "*"] where s.hasSuffix(junk) { s.removeLast(junk.count); changed = true }
            s = s.trimmingCharacters(in: .whitespaces)
        }
        return s
    }

    /// The last number: optional minus (`-` or `−`), digits with optional `,` thousands groups,
    /// optional decimals, or a simple fraction `a/b`.
    static func lastNumber(in text: String) -> String? {
        let pattern = "[-\u{2212}]?(?:\\d{1,3}(?:,\\d{3})+(?!\\d)|\\d+)?(?:\\.\\d+)?(?:/\\d+(?:\\.\\d+)?)?"
        guard let re = try? NSRegularExpression(pattern: pattern) else { return nil }
        let ns = text as NSString
        var last: String?
        for m in re.matches(in: text, range: NSRange(location: 0, length: ns.length)) where m.range.length > 0 {
            let s = ns.substring(with: m.range)
            if s.contains(where: \.isNumber) { last = s }
        }
        return last
    }
}
