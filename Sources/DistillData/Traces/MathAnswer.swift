import Foundation

/// An exact rational number: reduced, denominator positive. Arithmetic returns nil on Int overflow
/// (callers fall back to `Double`).
public struct Rational: Hashable, Sendable, CustomStringConvertible {
    public let numerator: Int
    public let denominator: Int

    /// nil when `denominator` is 0 or the value cannot be held (Int.min).
    public init?(_ numerator: Int, _ denominator: Int = 1) {
        guard denominator != 0, numerator != .min, denominator != .min else { return nil }
        var n = numerator, d = denominator
        if d < 0 { n = -n; d = -d }
        let g = Rational.gcd(abs(n), d)
        self.numerator = n / g
        self.denominator = d / g
    }

    static func gcd(_ a: Int, _ b: Int) -> Int {
        var (a, b) = (a, b)
        while b != 0 { (a, b) = (b, a % b) }
        return max(a, 1)
    }

    public var doubleValue: Double { Double(numerator) / Double(denominator) }

    public var description: String { denominator == 1 ? "\(numerator)" : "\(numerator)/\(denominator)" }

    public static func + (a: Rational, b: Rational) -> Rational? {
        let (x, o1) = a.numerator.multipliedReportingOverflow(by: b.denominator)
        let (y, o2) = b.numerator.multipliedReportingOverflow(by: a.denominator)
        let (n, o3) = x.addingReportingOverflow(y)
        let (d, o4) = a.denominator.multipliedReportingOverflow(by: b.denominator)
        return o1 || o2 || o3 || o4 ? nil : Rational(n, d)
    }

    public static func * (a: Rational, b: Rational) -> Rational? {
        let (n, o1) = a.numerator.multipliedReportingOverflow(by: b.numerator)
        let (d, o2) = a.denominator.multipliedReportingOverflow(by: b.denominator)
        return o1 || o2 ? nil : Rational(n, d)
    }

    public var reciprocal: Rational? { Rational(denominator, numerator) }
    public var negated: Rational { Rational(-numerator, denominator)! }
}

/// A parsed final answer.
public enum MathValue: Equatable, Sendable, CustomStringConvertible {
    /// A number held exactly (integers, decimals, fractions, mixed numbers, `a×10^k`).
    case exact(Rational)
    /// A number too long for exact 64-bit arithmetic.
    case approximate(Double)
    /// A tuple, interval or list: delimiters as written (`(` `]`, `\{` `\}`; empty for a bare list).
    case list(open: String, close: String, items: [MathValue])
    /// Anything else, as normalised text (whitespace removed).
    case expression(String)

    public var description: String {
        switch self {
        case .exact(let r): return r.description
        case .approximate(let d): return "\(d)"
        case let .list(open, close, items): return open + items.map(\.description).joined(separator: ", ") + close
        case .expression(let s): return s
        }
    }
}

/// Math answer equivalence, as used to verify reasoning traces against reference answers.
///
/// Both sides are normalised, parsed and compared as exact rationals where they are numbers:
/// - the last `\boxed{…}` is unwrapped; `$…$`, `$$…$$`, `\(…\)`, `\[…\]` delimiters are dropped;
/// - `\text{}`, `\mathrm{}`, `\textbf{}`, `\mbox{}`, `\operatorname{}` keep only their content;
///   `\left`, `\right`, LaTeX spaces (`\,` `\!` `\;` `\:` `\ ` `~`) and degree marks go;
///   `\dfrac`, `\tfrac` read as `\frac`; `{,}` as `,`;
/// - a trailing period (`,` `;` `!`) and a leading `x =` are dropped;
/// - numbers: integers, decimals (`.5`, `12.50`), thousands separators (`1,234,567` — groups of
///   exactly three digits; `1,5` is not a number but a list), fractions (`3/4`, `\frac{3}{4}`,
///   `\frac34`, `\frac{-1}{2}`), mixed numbers (`2\frac{1}{2}` = 5/2), scientific forms (`1.5e3`,
///   `1.5\times10^{3}`); a leading sign, `+` or `-`, also U+2212 MINUS SIGN, U+FE63 and U+FF0D
///   (so `−3` equals `-3`); an en dash is not a minus;
/// - currency (`$`, `\$`, `US$`, `USD`, `€`, `£`, `¥`, `₹`) before the number is dropped (`-$5`
///   and `$-5` both read -5), and so are trailing unit words (`18 apples`, `12.50 dollars`,
///   `5 km/h`, `3 cm^2`, `5cm`); a single letter glued to the number (`2x`) is *not* a unit;
/// - percent (`%`, `\%`, `percent`): by default the sign is dropped (`25%` equals `25`); with
///   `.alsoAsFraction` the value divided by 100 matches as well (`25%` equals `0.25`);
/// - tuples and intervals compare item by item with their delimiters; sets (`\{…\}`) and bare
///   lists (`1, 2`) compare regardless of order;
/// - anything else compares as text with all whitespace removed (case-sensitive), with `(B)`
///   read as `B`.
///
/// `relativeTolerance` (default 0: exact) lets numbers differ by that fraction of the larger one.
public struct MathEquivalence: Equatable, Codable, Sendable {
    public enum PercentHandling: String, Codable, Sendable {
        case dropSign
        case alsoAsFraction
    }

    public var percent: PercentHandling
    public var relativeTolerance: Double

    public init(percent: PercentHandling = .dropSign, relativeTolerance: Double = 0) {
        self.percent = percent
        self.relativeTolerance = relativeTolerance
    }

    /// Whether two answers are the same.
    public func equivalent(_ a: String, _ b: String) -> Bool {
        let va = values(a), vb = values(b)
        for x in va { for y in vb where same(x, y) { return true } }
        return false
    }

    /// The answer parsed (its first reading; see `values`).
    public func value(_ s: String) -> MathValue { values(s)[0] }

    /// Every reading of the answer: one, or two for a percentage with `.alsoAsFraction`.
    public func values(_ s: String) -> [MathValue] {
        let n = MathEquivalence.normalize(s)
        if let (num, isPercent) = MathNumberScanner.parseQuantity(n) {
            var out = [num.value]
            if isPercent && percent == .alsoAsFraction, let hundredth = num.divided(by: 100) { out.append(hundredth.value) }
            return out
        }
        return [listOrExpression(n)]
    }

    func listOrExpression(_ n: String) -> MathValue {
        var open = "", close = ""
        var body = Substring(n)
        for (o, c) in [("\\{", "\\}"), ("(", ")"), ("[", "]"), ("(", "]"), ("[", ")")] where n.hasPrefix(o) && n.hasSuffix(c) && n.count >= o.count + c.count {
            let inner = body.dropFirst(o.count).dropLast(c.count)
            if MathEquivalence.balanced(inner) { open = o; close = c; body = inner; break }
        }
        let parts = MathEquivalence.splitTopLevel(String(body))
        if parts.count >= 2 || open == "\\{" {
            return .list(open: open, close: close, items: parts.map { value($0) })
        }
        // Parentheses around one item only group it: (5) is 5, (B) is B.
        if open == "(" && close == ")" { return value(String(body)) }
        return .expression(MathEquivalence.compact(n))
    }

    func same(_ a: MathValue, _ b: MathValue) -> Bool {
        switch (a, b) {
        case let (.exact(x), .exact(y)):
            if x == y { return true }
            return relativeTolerance > 0 && close(x.doubleValue, y.doubleValue, relativeTolerance)
        case let (.exact(x), .approximate(y)), let (.approximate(y), .exact(x)):
            return close(x.doubleValue, y, max(relativeTolerance, 1e-12))
        case let (.approximate(x), .approximate(y)):
            return close(x, y, max(relativeTolerance, 1e-12))
        case let (.list(o1, c1, i1), .list(o2, c2, i2)):
            guard i1.count == i2.count else { return false }
            let unordered = (o1.isEmpty && c1.isEmpty) || o1 == "\\{"
            if unordered && (o2.isEmpty && c2.isEmpty || o2 == "\\{") {
                var left = i2
                for x in i1 {
                    guard let k = left.firstIndex(where: { same(x, $0) }) else { return false }
                    left.remove(at: k)
                }
                return true
            }
            return o1 == o2 && c1 == c2 && zip(i1, i2).allSatisfy { same($0, $1) }
        case let (.expression(x), .expression(y)):
            return x == y
        default:
            return false
        }
    }

    func close(_ a: Double, _ b: Double, _ tol: Double) -> Bool {
        a == b || abs(a - b) <= tol * max(abs(a), abs(b))
    }

    // MARK: Normalisation

    /// The answer with LaTeX wrappers, spacing, delimiters, trailing punctuation and a leading
    /// `x =` removed (see the type's documentation).
    public static func normalize(_ raw: String) -> String {
        var s = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        if let b = AnswerExtractor.lastBoxed(in: s) { s = b.trimmingCharacters(in: .whitespacesAndNewlines) }
        s = stripDelimiters(s)
        for name in ["\\textnormal", "\\textbf", "\\textit", "\\text", "\\mathrm", "\\mathbf", "\\mbox", "\\operatorname", "\\boxed"] {
            s = unwrapCommand(name, in: s)
        }
        for (from, to) in [("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("{,}", ","), ("\\%", "%"), ("\\$", "$"),
                           ("^{\\circ}", ""), ("^\\circ", ""), ("\\circ", ""), ("\\degree", ""), ("°", ""),
                           ("\u{2212}", "-"), ("\u{FE63}", "-"), ("\u{FF0D}", "-"), ("\\displaystyle", "")] {
            s = s.replacingOccurrences(of: from, with: to)
        }
        s = regexReplace(s, "\\\\(left|right)(?![A-Za-z])", "")
        // LaTeX and Unicode thin spaces: none between digits (1\,234), a space elsewhere.
        s = regexReplace(s, "(?<=\\d)(?:\\\\[,!;: ]|[\u{2009}\u{202F}\u{00A0}])(?=\\d)", "")
        s = regexReplace(s, "\\\\[,!;: ]|[~\u{2009}\u{202F}\u{00A0}]", " ")
        s = s.trimmingCharacters(in: .whitespacesAndNewlines)
        s = stripDelimiters(s)
        while let last = s.last, ".,;!".contains(last) { s.removeLast(); s = s.trimmingCharacters(in: .whitespaces) }
        // A leading assignment: "x = 5", "n=12", "x_1 = 3" → the right-hand side.
        if let m = firstMatch(s, "^[A-Za-z](?:_\\{?[A-Za-z0-9]+\\}?)?\\s*=\\s*(.+)$") { s = m }
        return s.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func stripDelimiters(_ s: String) -> String {
        var s = s
        var changed = true
        while changed {
            changed = false
            for (o, c) in [("$$", "$$"), ("\\(", "\\)"), ("\\[", "\\]"), ("$", "$")] where s.count >= o.count + c.count && s.hasPrefix(o) && s.hasSuffix(c) {
                let inner = String(s.dropFirst(o.count).dropLast(c.count))
                if o == "$" && inner.contains("$") { continue }
                s = inner.trimmingCharacters(in: .whitespacesAndNewlines)
                changed = true
                break
            }
        }
        return s
    }

    /// `\name{X}` → `X`, brace-balanced, every occurrence.
    static func unwrapCommand(_ name: String, in s: String) -> String {
        let needle = Array(name + "{")
        var chars = Array(s)
        var i = 0
        while i + needle.count <= chars.count {
            if Array(chars[i..<i + needle.count]) == needle, let end = AnswerExtractor.matchingBrace(chars, open: i + needle.count - 1) {
                let inner = Array(chars[(i + needle.count)..<end])
                chars.replaceSubrange(i...end, with: inner)
            } else {
                i += 1
            }
        }
        return String(chars)
    }

    /// Splits at commas outside brackets and braces; pieces trimmed.
    static func splitTopLevel(_ s: String) -> [String] {
        var parts: [String] = []
        var depth = 0
        var current = ""
        var prev: Character = " "
        for c in s {
            if "([{".contains(c) { depth += 1 }
            if ")]}".contains(c) { depth -= 1 }
            if c == "," && depth == 0 && prev != "\\" {
                parts.append(current.trimmingCharacters(in: .whitespaces))
                current = ""
            } else {
                current.append(c)
            }
            prev = c
        }
        parts.append(current.trimmingCharacters(in: .whitespaces))
        return parts
    }

    static func balanced(_ s: Substring) -> Bool {
        var depth = 0
        for c in s {
            if "([{".contains(c) { depth += 1 }
            if ")]}".contains(c) { depth -= 1; if depth < 0 { return false } }
        }
        return depth == 0
    }

    /// Whitespace removed, `^{x}` / `_{x}` → `^x` / `_x` for one character.
    static func compact(_ s: String) -> String {
        var t = String(s.filter { !$0.isWhitespace })
        t = regexReplace(t, "([\\^_])\\{(.)\\}", "$1$2")
        return t
    }

    static func regexReplace(_ s: String, _ pattern: String, _ template: String) -> String {
        guard let re = try? NSRegularExpression(pattern: pattern) else { return s }
        return re.stringByReplacingMatches(in: s, range: NSRange(location: 0, length: (s as NSString).length), withTemplate: template)
    }

    static func firstMatch(_ s: String, _ pattern: String) -> String? {
        guard let re = try? NSRegularExpression(pattern: pattern),
              let m = re.firstMatch(in: s, range: NSRange(location: 0, length: (s as NSString).length)),
              m.numberOfRanges > 1, let r = Range(m.range(at: 1), in: s) else { return nil }
        return String(s[r])
    }
}

/// A number during parsing: exact while it fits, a Double after.
enum ParsedNumber {
    case exact(Rational)
    case approximate(Double)

    var value: MathValue {
        switch self {
        case .exact(let r): return .exact(r)
        case .approximate(let d): return .approximate(d)
        }
    }
    var double: Double {
        switch self {
        case .exact(let r): return r.doubleValue
        case .approximate(let d): return d
        }
    }
    var negated: ParsedNumber {
        switch self {
        case .exact(let r): return .exact(r.negated)
        case .approximate(let d): return .approximate(-d)
        }
    }
    func plus(_ o: ParsedNumber) -> ParsedNumber {
        if case let .exact(a) = self, case let .exact(b) = o, let r = a + b { return .exact(r) }
        return .approximate(double + o.double)
    }
    func times(_ o: ParsedNumber) -> ParsedNumber {
        if case let .exact(a) = self, case let .exact(b) = o, let r = a * b { return .exact(r) }
        return .approximate(double * o.double)
    }
    func divided(by o: ParsedNumber) -> ParsedNumber? {
        if o.double == 0 { return nil }
        if case let .exact(a) = self, case let .exact(b) = o, let inv = b.reciprocal, let r = a * inv { return .exact(r) }
        return .approximate(double / o.double)
    }
    func divided(by k: Int) -> ParsedNumber? { divided(by: .exact(Rational(k)!)) }
}

/// Recursive-descent reader of one numeric answer (see `MathEquivalence`).
struct MathNumberScanner {
    let c: [Character]
    var i = 0

    init(_ s: String) { c = Array(s) }

    /// The whole string as a number with optional percent and unit words; nil when it is not one.
    static func parseQuantity(_ s: String) -> (ParsedNumber, isPercent: Bool)? {
        var sc = MathNumberScanner(s)
        guard let n = sc.signedNumber() else { return nil }
        sc.skipSpaces()
        var isPercent = false
        if sc.eat("%") { isPercent = true } else if sc.eatWord("percent") { isPercent = true }
        guard sc.restIsUnit() else { return nil }
        return (n, isPercent)
    }

    var atEnd: Bool { i >= c.count }
    var peek: Character? { i < c.count ? c[i] : nil }

    mutating func skipSpaces() { while i < c.count, c[i] == " " || c[i] == "\t" { i += 1 } }

    mutating func eat(_ s: String) -> Bool {
        let a = Array(s)
        guard i + a.count <= c.count, Array(c[i..<i + a.count]) == a else { return false }
        i += a.count
        return true
    }

    /// A word (case-insensitive) not followed by a letter.
    mutating func eatWord(_ w: String) -> Bool {
        let a = Array(w)
        guard i + a.count <= c.count, String(c[i..<i + a.count]).lowercased() == w else { return false }
        if i + a.count < c.count, c[i + a.count].isLetter { return false }
        i += a.count
        return true
    }

    mutating func sign() -> Bool? {
        if eat("-") { return true }
        if eat("+") { return false }
        return nil
    }

    mutating func currency() -> Bool {
        for cur in ["US$", "USD", "$", "€", "£", "¥", "₹", "EUR", "GBP"] {
            let save = i
            if eat(cur) {
                if cur.first!.isLetter, let p = peek, p.isLetter { i = save; continue }
                skipSpaces()
                return true
            }
        }
        return false
    }

    mutating func signedNumber() -> ParsedNumber? {
        skipSpaces()
        var negative = sign() == true
        skipSpaces()
        if currency(), let s = sign() { negative = negative != s }
        skipSpaces()
        guard let n = unsignedQuantity() else { return nil }
        return negative ? n.negated : n
    }

    mutating func unsignedQuantity() -> ParsedNumber? {
        if let f = latexFraction() { return f }
        guard var n = plainNumber() else { return nil }
        // Mixed number: 2\frac{1}{2}.
        let save = i
        skipSpaces()
        if let f = latexFraction() { return n.plus(f) }
        i = save
        if let e = exponent() { n = n.times(e) }
        // a/b with plain numbers.
        let save2 = i
        skipSpaces()
        if eat("/") {
            skipSpaces()
            if let d = plainNumber(), let q = n.divided(by: d) { return q }
        }
        i = save2
        return n
    }

    /// `\frac{a}{b}` (each a signed number) or `\frac34` (single digits).
    mutating func latexFraction() -> ParsedNumber? {
        let save = i
        guard eat("\\frac") else { return nil }
        guard let a = fracArgument(), let b = fracArgument(), let q = a.divided(by: b) else { i = save; return nil }
        return q
    }

    mutating func fracArgument() -> ParsedNumber? {
        skipSpaces()
        guard let p = peek else { return nil }
        if p.isASCII, p.isNumber { i += 1; return .exact(Rational(Int(String(p))!)!) }
        guard p == "{", let end = AnswerExtractor.matchingBrace(c, open: i) else { return nil }
        var inner = MathNumberScanner(String(c[(i + 1)..<end]))
        guard let n = inner.signedNumber() else { return nil }
        inner.skipSpaces()
        guard inner.atEnd else { return nil }
        i = end + 1
        return n
    }

    /// Digits with optional `,` thousands groups and decimals, or `.5`.
    mutating func plainNumber() -> ParsedNumber? {
        let start = i
        var intDigits = ""
        while let p = peek, p.isASCII, p.isNumber { intDigits.append(p); i += 1 }
        if !intDigits.isEmpty && intDigits.count <= 3 {
            // Thousands groups: every group exactly three digits, not followed by another digit.
            var groups = ""
            var j = i
            while j + 3 < c.count, c[j] == "," {
                let g = c[(j + 1)...(j + 3)]
                guard g.allSatisfy({ $0.isASCII && $0.isNumber }) else { break }
                if j + 4 < c.count, c[j + 4].isASCII, c[j + 4].isNumber { break }
                groups += String(g)
                j += 4
            }
            if !groups.isEmpty { intDigits += groups; i = j }
        }
        var fracDigits = ""
        if peek == ".", i + 1 < c.count, c[i + 1].isASCII, c[i + 1].isNumber {
            i += 1
            while let p = peek, p.isASCII, p.isNumber { fracDigits.append(p); i += 1 }
        }
        if intDigits.isEmpty && fracDigits.isEmpty { i = start; return nil }
        let digits = (intDigits + fracDigits).drop { $0 == "0" }
        if digits.count <= 18 && fracDigits.count <= 18, let n = Int(digits.isEmpty ? "0" : String(digits)) {
            var d = 1
            for _ in 0..<fracDigits.count { d *= 10 }
            return .exact(Rational(n, d)!)
        }
        return .approximate(Double((intDigits.isEmpty ? "0" : intDigits) + "." + (fracDigits.isEmpty ? "0" : fracDigits)) ?? .nan)
    }

    /// `e3`, `E-2`, `\times 10^{3}`, `\cdot10^3`, `×10^3`, `*10^3`: the factor 10^k.
    mutating func exponent() -> ParsedNumber? {
        let save = i
        var k: Int?
        if let p = peek, p == "e" || p == "E" {
            i += 1
            let neg = sign() == true
            var digits = ""
            while let q = peek, q.isASCII, q.isNumber { digits.append(q); i += 1 }
            if let v = Int(digits) { k = neg ? -v : v }
        } else {
            skipSpaces()
            if eat("\\times") || eat("\\cdot") || eat("×") || eat("*") {
                skipSpaces()
                if eat("10^") {
                    let braced = eat("{")
                    let neg = sign() == true
                    var digits = ""
                    while let q = peek, q.isASCII, q.isNumber { digits.append(q); i += 1 }
                    if let v = Int(digits), !braced || eat("}") { k = neg ? -v : v }
                }
            }
        }
        guard let k, abs(k) <= 300 else { i = save; return nil }
        var p = ParsedNumber.exact(Rational(1)!)
        let ten = ParsedNumber.exact(Rational(10)!)
        for _ in 0..<abs(k) { p = p.times(ten) }
        return k >= 0 ? p : ParsedNumber.exact(Rational(1)!).divided(by: p)
    }

    /// What follows the number is empty or unit words: letters, spaces, `/ . - ' °`, and digits
    /// only after `^` (`cm^2`). Glued to the number it must start with two letters (`5cm`, not `2x`).
    func restIsUnit() -> Bool {
        guard i < c.count else { return true }
        let rest = c[i...]
        let glued = !(rest.first!.isWhitespace)
        let body = String(rest).trimmingCharacters(in: .whitespaces)
        if body.isEmpty { return true }
        let b = Array(body)
        guard b[0].isLetter else { return false }
        if glued && !(b.count >= 2 && b[1].isLetter) { return false }
        var caret = false
        for ch in b {
            if ch == "^" { caret = true; continue }
            if ch.isLetter || ch == " " || "/.-'’{}²³".contains(ch) { continue }
            if ch.isNumber && caret { continue }
            return false
        }
        return true
    }
}
