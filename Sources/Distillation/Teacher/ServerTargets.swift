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
        // The completion holds the sampled bytes decoded as UTF-8, an invalid sequence (a random
        // or cut generation) as U+FFFD: place each token by the decoded length of the bytes before
        // it; a token inside an invalid sequence has no place of its own.
        var used = logprobs.count
        var at: Int? = nil
        var decodedAll: [UInt8] = []
        while used > 0 {
            decodedAll = Array(String(decoding: Array(sampledBytes[..<used].joined()), as: UTF8.self).utf8)
            if let o = find(decodedAll, in: text, last: false), used == logprobs.count || o + decodedAll.count == text.count {
                at = o
                break
            }
            // At most one trailing token (a stop token the text leaves out) may be dropped, and
            // then the rest must end the completion.
            if used < logprobs.count { break }
            used -= 1
        }
        guard let inCompletion = at, let completionAt = find(text, in: decoded, last: true) else {
            st.drop(.textMismatch, positions: logprobs.count)
            return rows
        }
        st.drop(.textMismatch, positions: logprobs.count - used)
        // Offsets (in the decoded text) of the token boundaries that fall between whole characters.
        var boundary = [Int?](repeating: nil, count: used + 1)
        var prefix: [UInt8] = []
        for j in 0...used {
            // A prefix cut inside a character decodes to U+FFFD where the whole has the character.
            let d = Array(String(decoding: prefix, as: UTF8.self).utf8)
            if d.count <= decodedAll.count, decodedAll[..<d.count].elementsEqual(d) { boundary[j] = d.count }
            if j < used { prefix += sampledBytes[j] }
        }
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
