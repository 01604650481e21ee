import DistillData
import DistillModels
import Foundation

// A server teacher's top-k log-probabilities (`distill traces --logprobs K`) as soft targets for
// a student: each sampled token's alternatives are mapped to the student's token ids and written
// as a logit cache over the exported traces, so `distill train` reads them exactly as it reads
// `distill cache-logits` output (`teacher.cache`), at temperature 1 (servers report the model's
// own distribution).

/// Why a position or an alternative was left out; the keys of `stats.json`'s `teacher_targets`.
public enum ServerTargetDrop: String, CaseIterable, Codable, Sendable, Error {
    /// The candidate came without log-probabilities (the server gave none).
    case noLogprobs = "no_logprobs"
    /// The server's log-probabilities could not be read (reason kept with the candidate).
    case malformedLogprobs = "malformed_logprobs"
    /// The sampled tokens, joined, are not a part of the stored completion.
    case textMismatch = "text_mismatch"
    /// The student's tokenizer splits the text differently here (no student token spans exactly
    /// the teacher's sampled token, or it is another token).
    case retokenized
    /// An earlier sampled token was dropped, so the student's context here differs from the one
    /// the teacher's distribution was conditioned on.
    case contextDiffers = "context_differs"
    /// The sampled token (or an alternative) is not in the student's vocabulary.
    case unknownToken = "unknown_token"
    /// An id (`token_id:N`) outside the student's vocabulary.
    case idOutOfRange = "id_out_of_range"
    /// Two alternatives of one position mapped to the same student id (the later one is dropped).
    case duplicate
    /// A log-probability that is NaN or above 0.
    case badLogprob = "bad_logprob"
    /// Cut away with the sequence by the maximum length.
    case truncated
}

/// What the mapping did, over every kept candidate (written into `stats.json`).
public struct ServerTargetStatistics: Codable, Equatable, Sendable {
    /// Records (kept candidates) and their sampled tokens.
    public var records = 0
    public var sampledTokens = 0
    /// Positions that got the teacher's top-k.
    public var mappedPositions = 0
    /// Sampled tokens left without a target, by reason.
    public var droppedPositions: [String: Int] = [:]
    /// Alternatives left out of a mapped position (their mass joins the rest), by reason.
    public var droppedAlternatives: [String: Int] = [:]
    public var k = 0
    public var cachePath = ""

    enum CodingKeys: String, CodingKey {
        case records, sampledTokens = "sampled_tokens", mappedPositions = "mapped_positions",
             droppedPositions = "dropped_positions", droppedAlternatives = "dropped_alternatives", k, cachePath = "cache"
    }

    public init() {}

    mutating func drop(_ r: ServerTargetDrop, positions n: Int = 1) { if n > 0 { droppedPositions[r.rawValue, default: 0] += n } }
    mutating func dropAlternative(_ r: ServerTargetDrop) { droppedAlternatives[r.rawValue, default: 0] += 1 }
}

/// Maps a server's token strings to a student's ids.
public struct ServerTokenMap {
    public let tokenizer: Tokenizer
    let vocabularySize: Int
    private let byBytes: [[UInt8]: Int]

    /// `vocabularySize`: the student's logits width (ids at or past it are out of range).
    public init(tokenizer: Tokenizer, vocabularySize: Int) {
        self.tokenizer = tokenizer
        self.vocabularySize = vocabularySize
        var table: [[UInt8]: Int] = [:]
        for id in 0..<tokenizer.vocabSize {
            let b = tokenizer.decodeBytes([id])
            if !b.isEmpty && table[b] == nil { table[b] = id }
        }
        byBytes = table
    }

    /// A token's bytes: the server's `bytes` when given, else the string's UTF-8 (nil for a
    /// `token_id:N` token, which names its id).
    static func bytes(token: String, bytes: [UInt8]?) -> [UInt8] { bytes ?? Array(token.utf8) }

    /// The student id of a server token: vLLM's `token_id:N` (with `return_tokens_as_token_ids`)
    /// names it; otherwise its bytes are looked up in the student's vocabulary.
    public func id(token: String, bytes: [UInt8]?) -> Result<Int, ServerTargetDrop> {
        if token.hasPrefix("token_id:"), let n = Int(token.dropFirst(9)) {
            return n >= 0 && n < vocabularySize && n < tokenizer.vocabSize ? .success(n) : .failure(.idOutOfRange)
        }
        guard let id = byBytes[Self.bytes(token: token, bytes: bytes)] else { return .failure(.unknownToken) }
        return .success(id)
    }
}

public enum ServerTargets {
    /// The rows of one tokenized record: the teacher's top-k at each position whose next token is
    /// a sampled token the student spells the same way, `LogitCacheRow.unknown` elsewhere.
    ///
    /// - `ids`: the record as the trainer tokenizes it; `completion`: the stored assistant text;
    ///   `logprobs`: the sampled tokens as the server returned them.
    /// - The sampled tokens' bytes, joined and decoded as UTF-8, must occur in `completion` (or,
    ///   without a trailing stop token the text leaves out, end it); the completion
    ///   must occur in the record's decoded bytes (its last occurrence is taken). Sampled token j
    ///   then spans a byte range of the record (none inside an invalid UTF-8 sequence); when a
    ///   student token spans exactly that range with the same id, the row before it (which
    ///   predicts it) gets token j's alternatives mapped to student ids — as long as every earlier
    ///   sampled token was placed so (after the first that is not, the contexts differ).
    ///   (Quadratic in the tokens of one completion: fine for thousands.)
    public static func rows(ids: [Int], completion: String, logprobs: [TokenLogprob], map: ServerTokenMap, k: Int,
                            statistics st: inout ServerTargetStatistics) -> [LogitCacheRow] {
        var rows = [LogitCacheRow](repeating: .unknown(k: k), count: ids.count)
        st.sampledTokens += logprobs.count
        guard !logprobs.isEmpty else { return rows }
        // Byte offset of each student token in the decoded record.
        var start = [Int](), offset = 0
        start.reserveCapacity(ids.count)
        var decoded: [UInt8] = []
        for id in ids {
            start.append(offset)
            let b = map.tokenizer.decodeBytes([id])
            decoded += b
            offset += b.count
        }
        var tokenAt: [Int: Int] = [:]               // byte offset → the first student token starting there
        for (q, s) in start.enumerated().reversed() { tokenAt[s] = q }
        // A `token_id:N` token is spelled by the student's bytes of N; an id out of range cannot be placed.
        var sampledBytes: [[UInt8]] = []
        sampledBytes.reserveCapacity(logprobs.count)
        for lp in logprobs {
            if lp.token.hasPrefix("token_id:") {
                guard case .success(let id) = map.id(token: lp.token, bytes: lp.bytes) else {
                    st.drop(.idOutOfRange, positions: logprobs.count)
                    return rows
                }
                sampledBytes.append(map.tokenizer.decodeBytes([id]))
            } else {
                sampledBytes.append(ServerTokenMap.bytes(token: lp.token, bytes: lp.bytes))
            }
        }
        let text = Array(completion.utf8)
        guard let place = placement(of: sampledBytes, in: text), let completionAt = find(text, in: decoded, last: true) else {
            st.drop(.textMismatch, positions: logprobs.count)
            return rows
        }
        let (inCompletion, used, boundary, decodedAll) = (place.offset, place.used, place.boundary, place.decoded)
        st.drop(.textMismatch, positions: logprobs.count - used)
        // Once the student's tokens part from the sampled ones, every later position is
        // conditioned on another context than the teacher's: those are left out too.
        var diverged = false
        for j in 0..<used {
            let lp = logprobs[j]
            if diverged { st.drop(.contextDiffers); continue }
            guard let a = boundary[j], let b = boundary[j + 1], b > a,
                  decodedAll[a..<b].elementsEqual(sampledBytes[j]) else {
                st.drop(.retokenized)
                diverged = true
                continue
            }
            let byte = completionAt + inCompletion + a, span = b - a
            guard let q = tokenAt[byte], q >= 1, q < ids.count,
                  q + 1 < start.count ? start[q + 1] == byte + span : offset == byte + span else {
                st.drop(.retokenized)
                diverged = true
                continue
            }
            switch map.id(token: lp.token, bytes: lp.bytes) {
            case .failure(let r): st.drop(r); diverged = true; continue
            case .success(let id) where id != ids[q]: st.drop(.retokenized); diverged = true; continue
            case .success: break
            }
            // The alternatives, most likely first; the sampled token itself when none are given.
            let alternatives = lp.top.isEmpty ? [TopLogprob(token: lp.token, logprob: lp.logprob, bytes: lp.bytes)] : lp.top
            var rowIds: [Int] = [], rowLps: [Float] = []
            for a in alternatives.sorted(by: { $0.logprob > $1.logprob }) where rowIds.count < k {
                guard !a.logprob.isNaN, a.logprob <= 0 else { st.dropAlternative(.badLogprob); continue }
                switch map.id(token: a.token, bytes: a.bytes) {
                case .failure(let r): st.dropAlternative(r)
                case .success(let id) where rowIds.contains(id): st.dropAlternative(.duplicate)
                case .success(let id):
                    rowIds.append(id)
                    rowLps.append(Float(a.logprob))
                }
            }
            guard !rowIds.isEmpty else { st.drop(.unknownToken); continue }
            // Σ p may pass 1 by the server's rounding: shift down as the cache reader does.
            let mass = rowLps.reduce(0.0) { $0 + Foundation.exp(Double($1)) }
            if mass > 1 { let s = Float(Foundation.log(mass)); rowLps = rowLps.map { Swift.min(0, $0 - s) } }
            let rest = Float(Swift.max(0, 1 - Swift.min(1, mass)))
            // Fill to k with unused ids at probability 0.
            var filler = 0
            while rowIds.count < k {
                while rowIds.contains(filler) { filler += 1 }
                rowIds.append(filler)
                rowLps.append(-.infinity)
            }
            rows[q - 1] = LogitCacheRow(ids: rowIds, logprobs: rowLps, rest: rest)
            st.mappedPositions += 1
        }
        return rows
    }

    /// Where the sampled tokens lie in the completion's bytes `text`. The completion holds the
    /// sampled bytes decoded as UTF-8, an invalid sequence (a random or cut generation) as U+FFFD:
    /// each token is placed by the decoded length of the bytes before it, and a token inside an
    /// invalid sequence has no place of its own. At most one trailing token (a stop token the text
    /// leaves out) may be missing, and then the rest must end the completion. Returns the offset of
    /// the first token in `text`, the tokens placed, the boundary offsets (relative to that
    /// offset; nil inside a character) and the decoded bytes of the placed tokens; nil when the
    /// tokens do not spell the text.
    static func placement(of sampledBytes: [[UInt8]], in text: [UInt8])
        -> (offset: Int, used: Int, boundary: [Int?], decoded: [UInt8])? {
        var used = sampledBytes.count
        var at: Int? = nil
        var decodedAll: [UInt8] = []
        while used > 0 {
            decodedAll = Array(String(decoding: Array(sampledBytes[..<used].joined()), as: UTF8.self).utf8)
            if let o = find(decodedAll, in: text, last: false), used == sampledBytes.count || o + decodedAll.count == text.count {
                at = o
                break
            }
            if used < sampledBytes.count { break }
            used -= 1
        }
        guard let offset = at else { return nil }
        var boundary = [Int?](repeating: nil, count: used + 1)
        var prefix: [UInt8] = []
        for j in 0...used {
            // A prefix cut inside a character decodes to U+FFFD where the whole has the character.
            let d = Array(String(decoding: prefix, as: UTF8.self).utf8)
            if d.count <= decodedAll.count, decodedAll[..<d.count].elementsEqual(d) { boundary[j] = d.count }
            if j < used { prefix += sampledBytes[j] }
        }
        return (offset, used, boundary, decodedAll)
    }

    /// Byte offset of `needle` in `haystack` (the first or the last occurrence).
    static func find(_ needle: [UInt8], in haystack: [UInt8], last: Bool) -> Int? {
        guard !needle.isEmpty, needle.count <= haystack.count else { return needle.isEmpty ? 0 : nil }
        let range = 0...(haystack.count - needle.count)
        for o in (last ? Array(range.reversed()) : Array(range)) where haystack[o] == needle[0] {
            if haystack[o..<(o + needle.count)].elementsEqual(needle) { return o }
        }
        return nil
    }

    /// Writes the logit cache of an exported traces file: `records` are the kept candidates in the
    /// file's order (`GenerationStore.keptCandidates`), tokenized with `tokenizer` and
    /// `chatTemplate` as `distill train` will (`TextDataFile.sequences`, cut to `maxLength`).
    /// Rows hold the server's top-`k` at temperature 1 where mapped, no target elsewhere.
    @discardableResult
    public static func writeCache(dataFile: String, records: [StoredCandidate], tokenizer: Tokenizer, chatTemplate: ChatTemplate?,
                                  vocabularySize: Int, k: Int, maxLength: Int?, path: String) throws -> ServerTargetStatistics {
        let file = try TextDataFile(path: dataFile)
        guard file.examples.count == records.count else {
            throw TeacherError.data(file: dataFile, line: 0,
                                    reason: "holds \(file.examples.count) records but the store has \(records.count) kept candidates")
        }
        let full = try file.sequences(with: tokenizer, chatTemplate: chatTemplate, maxLength: nil, assistantOnly: false)
        let map = ServerTokenMap(tokenizer: tokenizer, vocabularySize: vocabularySize)
        var st = ServerTargetStatistics()
        st.k = k
        st.cachePath = path
        st.records = records.count
        var rowsOf: [[LogitCacheRow]] = []
        var sequences: [[Int]] = []
        for (i, record) in records.enumerated() {
            var lps: [TokenLogprob]?
            do { lps = try record.decodedLogprobs() } catch { lps = nil }
            var rows: [LogitCacheRow]
            if let lps {
                rows = Self.rows(ids: full[i].ids, completion: record.text, logprobs: lps, map: map, k: k, statistics: &st)
            } else {
                st.drop(record.logprobs == nil ? .noLogprobs : .malformedLogprobs)
                rows = [LogitCacheRow](repeating: .unknown(k: k), count: full[i].ids.count)
            }
            var ids = full[i].ids
            if let maxLength, ids.count > maxLength {
                // The row before the cut predicts a token that is gone: no target there either.
                let cut = rows[(maxLength - 1)...].filter(\.isKnown).count
                st.drop(.truncated, positions: cut)
                st.mappedPositions -= cut
                ids = Array(ids.prefix(maxLength))
                rows = Array(rows.prefix(maxLength))
                rows[maxLength - 1] = .unknown(k: k)
            }
            sequences.append(ids)
            rowsOf.append(rows)
        }
        try? FileManager.default.removeItem(atPath: path)
        let header = LogitCacheHeader(dataHash: file.hash, vocabularySize: vocabularySize, tokenizerVocabularySize: tokenizer.vocabSize,
                                      k: k, temperature: 1, maxLength: maxLength ?? 0, chunkSequences: 64,
                                      fingerprint: tokenizer.fingerprint)
        try LogitCacheWriter(path: path, header: header).run(sequences: sequences) { i, _ in rowsOf[i] }
        return st
    }
}

/// A server's sampled tokens of one kept completion, independent of any student tokenizer: where
/// each ends in the completion's UTF-8 bytes, its log-probability and its alternatives'
/// probabilities — what a student with another tokenizer is distilled from (`CrossTokenizerTeacher`
/// with server tokens). One JSON object per line of `distill traces --logprobs`'s tokens file.
public struct ServerTokenSpans: Codable, Equatable, Sendable {
    /// The assistant text as exported (the trace template's rendering of the candidate).
    public var completion: String
    /// Byte offset in `completion` where each sampled token ends (-1: inside a character, or the
    /// token could not be placed).
    public var ends: [Int]
    /// Each sampled token's log-probability (temperature 1).
    public var logprobs: [Float]
    /// Each sampled token's alternatives as probabilities, descending (the server's top-k).
    public var top: [[Float]]

    public init(completion: String, ends: [Int], logprobs: [Float], top: [[Float]]) {
        self.completion = completion
        self.ends = ends
        self.logprobs = logprobs
        self.top = top
    }

    /// The spans of a stored candidate: its tokens placed in `completion` (tokens named by id,
    /// `token_id:N`, have no bytes here and end at -1, as do tokens the text does not hold).
    public init(completion: String, logprobs: [TokenLogprob]) {
        let bytes = logprobs.map { ServerTokenMap.bytes(token: $0.token.hasPrefix("token_id:") ? "" : $0.token, bytes: $0.bytes) }
        var ends = [Int](repeating: -1, count: logprobs.count)
        if !bytes.contains(where: \.isEmpty), let place = ServerTargets.placement(of: bytes, in: Array(completion.utf8)) {
            for j in 0..<place.used {
                if let b = place.boundary[j + 1] { ends[j] = place.offset + b }
            }
        }
        self.init(completion: completion, ends: ends, logprobs: logprobs.map { Float(Swift.min(0, $0.logprob)) },
                  top: logprobs.map { lp in
                      lp.top.map(\.logprob).filter { !$0.isNaN && $0 <= 0 }.sorted(by: >).map { Float(Foundation.exp($0)) }
                  })
    }

    /// Writes one line per record (the exported traces' order).
    public static func write(_ spans: [ServerTokenSpans], to path: String) throws {
        let e = JSONEncoder()
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        var out = Data()
        for s in spans { out += try e.encode(s); out += Data("\n".utf8) }
        do { try out.write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw TeacherError.io(file: path, reason: "cannot write: \(ioFailureReason(error))")
        }
    }

    /// Reads a tokens file; errors name the file and line.
    public static func read(_ path: String) throws -> [ServerTokenSpans] {
        guard let data = FileManager.default.contents(atPath: path) else { throw TeacherError.io(file: path, reason: "cannot read the file") }
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        var out: [ServerTokenSpans] = []
        for (i, line) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            let s: ServerTokenSpans
            do { s = try d.decode(ServerTokenSpans.self, from: Data(line)) } catch {
                throw TeacherError.data(file: path, line: i + 1, reason: "expected {\"completion\", \"ends\", \"logprobs\", \"top\"}: \(error)")
            }
            guard s.ends.count == s.logprobs.count, s.top.count == s.logprobs.count else {
                throw TeacherError.data(file: path, line: i + 1, reason: "ends, logprobs and top must have one entry per token")
            }
            out.append(s)
        }
        return out
    }
}
