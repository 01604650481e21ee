/// The four character classes the pre-tokenizer regexes distinguish, by Unicode scalar:
/// `\p{L}` (general categories Lu, Ll, Lt, Lm, Lo), `\p{N}` (Nd, Nl, No), `\s` (the White_Space
/// property, which is what Oniguruma's Unicode `\s` and Rust's `\s` both mean), and everything else.
/// A scalar is in exactly one class (no letter or number is White_Space).
enum CharClass {
    static let other: UInt8 = 0
    static let letter: UInt8 = 1
    static let number: UInt8 = 2
    static let space: UInt8 = 3

    /// Classes of the Basic Multilingual Plane, computed once (64 KiB); other planes ask the
    /// standard library's Unicode tables each time.
    static let bmp: [UInt8] = {
        var t = [UInt8](repeating: other, count: 0x10000)
        for v in 0..<0x10000 { t[v] = compute(UInt32(v)) }
        return t
    }()

    @inline(__always)
    static func of(_ v: UInt32) -> UInt8 {
        v < 0x10000 ? bmp[Int(v)] : compute(v)
    }

    static func compute(_ v: UInt32) -> UInt8 {
        guard let s = Unicode.Scalar(v) else { return other }
        let p = s.properties
        if p.isWhitespace { return space }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return letter
        case .decimalNumber, .letterNumber, .otherNumber: return number
        default: return other
        }
    }

    /// Rust regex's Unicode `\w` (Alphabetic, marks, decimal digits, connector punctuation,
    /// Join_Control): what Hugging Face's `single_word` added tokens check on either side.
    static func isWord(_ v: UInt32) -> Bool {
        guard let s = Unicode.Scalar(v) else { return false }
        let p = s.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }

    /// White_Space (Rust's and Oniguruma's `\s`).
    @inline(__always)
    static func isSpace(_ v: UInt32) -> Bool { of(v) == space }
}
