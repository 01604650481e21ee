/// Decodes ids one at a time for streaming generation: each call returns the text that is complete
/// so far. Bytes of a UTF-8 character split across tokens (an emoji's four bytes in two or three
/// tokens) are held back until the character is complete, so the concatenation of all returns plus
/// `finish()` equals `Tokenizer.decode` of all the ids.
public struct StreamingDecoder {
    public let tokenizer: Tokenizer
    public let skipSpecialTokens: Bool
    private var pending: [UInt8] = []
    private var first = true

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Adds one id; returns the newly completed text (possibly empty).
    public mutating func add(_ id: Int) -> String {
        tokenizer.appendDecoded(id, skipSpecialTokens: skipSpecialTokens, first: &first, to: &pending)
        let keep = StreamingDecoder.incompleteTailLength(pending)
        let cut = pending.count - keep
        guard cut > 0 else { return "" }
        let text = String(decoding: pending[..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return text
    }

    /// Adds several ids; returns the newly completed text.
    public mutating func add<S: Sequence>(contentsOf ids: S) -> String where S.Element == Int {
        var s = ""
        for id in ids { s += add(id) }
        return s
    }

    /// Bytes held back, waiting for the rest of a character.
    public var pendingByteCount: Int { pending.count }

    /// Ends the stream: held-back bytes of an unfinished character come out as U+FFFD.
    public mutating func finish() -> String {
        let text = String(decoding: pending, as: UTF8.self)
        pending.removeAll()
        return text
    }

    /// How many trailing bytes form the valid beginning of a UTF-8 sequence that is not finished
    /// (0 to 3): exactly the bytes a UTF-8 decoder would still be waiting on at the end, so cutting
    /// before them gives the same text as decoding everything at once.
    static func incompleteTailLength(_ b: [UInt8]) -> Int {
        let n = b.count
        var len = 1
        while len <= min(3, n) {
            let p = n - len
            let lead = b[p]
            let need: Int
            switch lead {
            case 0xC2...0xDF: need = 2
            case 0xE0...0xEF: need = 3
            case 0xF0...0xF4: need = 4
            default: need = 0
            }
            if need > len {
                var ok = true
                for q in (p + 1)..<n {
                    var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
                    if q == p + 1 {
                        switch lead {
                        case 0xE0: lo = 0xA0
                        case 0xED: hi = 0x9F
                        case 0xF0: lo = 0x90
                        case 0xF4: hi = 0x8F
                        default: break
                        }
                    }
                    if b[q] < lo || b[q] > hi { ok = false; break }
                }
                if ok { return len }
            }
            if lead < 0x80 || lead >= 0xC0 { break }   // a lead or ASCII byte: nothing earlier can be pending
            len += 1
        }
        return 0
    }
}
