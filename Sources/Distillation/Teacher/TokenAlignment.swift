import DistillModels

/// Where two tokenizations of the same text meet: the student's and the teacher's tokens, each
/// known by the byte offset at which its text ends.
///
/// Position i of a sequence is the logits row that predicts token i + 1 from tokens 0...i, i.e.
/// from the text up to byte `ends[i]`. A student row and a teacher row that end at the same byte
/// have read the same text, so their next-token distributions answer the same question (`pairs`,
/// what ULD compares). The text cut at the byte offsets where both have a token boundary gives
/// `spans`: each holds whole tokens of both, and both models give it a probability (what `align`
/// compares). Bytes past `limit` (where the teacher's decoded text stops matching the student's,
/// e.g. a character its vocabulary cannot spell) are not aligned.
public struct TokenAlignment: Equatable, Sendable {
    /// An aligned span: the student's and the teacher's tokens whose text lies in it. The first
    /// token of each is predicted by the row before it.
    public struct Span: Equatable, Sendable {
        public var student: Range<Int>
        public var teacher: Range<Int>
    }

    /// Student positions and the teacher positions that have read the same bytes, ascending.
    public var studentRows: [Int] = []
    public var teacherRows: [Int] = []
    /// Spans between consecutive common boundaries, each predicted by rows of both (so neither
    /// starts at token 0).
    public var spans: [Span] = []

    /// Aligns two tokenizations from their tokens' end offsets (non-decreasing, see
    /// `Tokenizer.decodeBytesWithEnds`; -1 for a token that ends inside a character, which no row or
    /// span boundary is matched with), up to byte `limit`.
    public init(studentEnds: [Int], teacherEnds: [Int], limit: Int) {
        // Teacher rows by end offset (the last token ending there: it has read everything before).
        var teacherAt: [Int: Int] = [:]
        for (j, e) in teacherEnds.enumerated() where e >= 0 && e <= limit { teacherAt[e] = j }
        var studentAt: [Int: Int] = [:]
        for (i, e) in studentEnds.enumerated() where e >= 0 && e <= limit {
            studentAt[e] = i
            if let j = teacherAt[e] {
                if let last = studentRows.last, studentEnds[last] == e {
                    // Tokens of no text (a special token that decodes to nothing) end where the one
                    // before ends: keep the last student row that has read up to e.
                    studentRows.removeLast()
                    teacherRows.removeLast()
                }
                studentRows.append(i)
                teacherRows.append(j)
            }
        }
        // Spans: (previous common boundary, boundary], each side's tokens ending inside.
        let boundaries = Set(studentAt.keys).intersection(teacherAt.keys).filter { $0 > 0 }.sorted()
        var s = 0, t = 0     // first token not yet in a span
        for c in boundaries {
            let sEnd = studentAt[c]! + 1, tEnd = teacherAt[c]! + 1
            if s >= 1, t >= 1, s < sEnd, t < tEnd { spans.append(Span(student: s..<sEnd, teacher: t..<tEnd)) }
            s = sEnd
            t = tEnd
        }
    }

    /// The teacher's tokens for the text of `studentIds` and their alignment: the student's tokens
    /// are decoded (special tokens as their text; a byte that is not valid UTF-8 — a character
    /// split by a cut, a byte the vocabulary lacks — becomes U+FFFD, and the student's offsets
    /// follow), the teacher tokenizes that text (its own special tokens recognised, its
    /// start-of-sequence tokens in front, taking no bytes).
    public static func retokenize(studentIds: [Int], student: Tokenizer, teacher: Tokenizer) -> (teacherIds: [Int], alignment: TokenAlignment) {
        let (bytes, studentEnds) = studentText(studentIds, tokenizer: student)
        let body = teacher.encode(String(decoding: bytes, as: UTF8.self), addSpecialTokens: false)
        let teacherIds = teacher.prefixIds + body
        let (decoded, bodyEnds) = teacher.decodeBytesWithEnds(body)
        var limit = 0
        while limit < bytes.count, limit < decoded.count, bytes[limit] == decoded[limit] { limit += 1 }
        let teacherEnds = [Int](repeating: 0, count: teacher.prefixIds.count) + bodyEnds
        return (teacherIds, TokenAlignment(studentEnds: studentEnds, teacherEnds: teacherEnds, limit: limit))
    }

    /// The student's text of `ids` (invalid UTF-8 repaired, see `repairedUTF8`) and where each of
    /// its tokens ends in it (-1 inside a character).
    public static func studentText(_ ids: [Int], tokenizer: Tokenizer) -> (bytes: [UInt8], ends: [Int]) {
        let (raw, ends) = tokenizer.decodeBytesWithEnds(ids)
        let (bytes, offset) = repairedUTF8(raw)
        return (bytes, ends.map { offset[$0] })
    }

    /// `bytes` with each byte that does not belong to a valid UTF-8 character replaced by U+FFFD
    /// (EF BF BD), and for each offset 0...bytes.count the matching offset in the result (-1 inside
    /// a character).
    static func repairedUTF8(_ bytes: [UInt8]) -> (bytes: [UInt8], offset: [Int]) {
        var out: [UInt8] = [], offset = [Int](repeating: 0, count: bytes.count + 1)
        out.reserveCapacity(bytes.count)
        var p = 0
        while p < bytes.count {
            let n = validScalarLength(bytes, at: p)
            offset[p] = out.count
            if n > 0 {
                for i in 1..<n { offset[p + i] = -1 }          // inside a character: no boundary
                out.append(contentsOf: bytes[p..<(p + n)])
                p += n
            } else {
                out.append(contentsOf: [0xEF, 0xBF, 0xBD])
                p += 1
            }
        }
        offset[bytes.count] = out.count
        return (out, offset)
    }

    /// Length of the valid UTF-8 encoding of one scalar at `p` (0 when there is none).
    static func validScalarLength(_ b: [UInt8], at p: Int) -> Int {
        let c = b[p]
        let n: Int, low: UInt8, high: UInt8      // allowed range of the second byte
        switch c {
        case 0x00...0x7F: return 1
        case 0xC2...0xDF: (n, low, high) = (2, 0x80, 0xBF)
        case 0xE0: (n, low, high) = (3, 0xA0, 0xBF)
        case 0xED: (n, low, high) = (3, 0x80, 0x9F)
        case 0xE1...0xEF: (n, low, high) = (3, 0x80, 0xBF)
        case 0xF0: (n, low, high) = (4, 0x90, 0xBF)
        case 0xF4: (n, low, high) = (4, 0x80, 0x8F)
        case 0xF1...0xF3: (n, low, high) = (4, 0x80, 0xBF)
        default: return 0
        }
        guard p + n <= b.count, (low...high).contains(b[p + 1]) else { return 0 }
        for i in 2..<n where !(0x80...0xBF).contains(b[p + i]) { return 0 }
        return n
    }
}
