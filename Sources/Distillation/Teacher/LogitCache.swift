import DistillModels
import DistillTensor
import Foundation

/// A logit cache: a teacher's top-k log-probabilities for every position of a data set's token
/// sequences, written once (`LogitCacheWriter`, `distill cache-logits`) and read while training
/// (`LogitCache`, `CachedTeacher`).
///
/// ## File format (version 1, all integers and floats little-endian)
///
/// Header, 128 bytes:
///
///     offset size field
///          0    8 magic "DSTLLOGC"
///          8    4 version (UInt32, 1)
///         12    4 flags (UInt32; bit 0: complete — every sequence of the data file is cached)
///         16    8 number of committed sequences (UInt64)
///         24    8 FNV-1a 64 of the data file's bytes (UInt64)
///         32    4 vocabulary size V: width of the teacher's logits (UInt32)
///         36    4 ids the tokenizer uses, ≤ V (UInt32)
///         40    4 k (UInt32)
///         44    4 temperature τ the log-probabilities were taken at (Float32)
///         48    4 maximum sequence length the data was cut to (UInt32, 0: none)
///         52    4 sequences per chunk (UInt32)
///         56   64 tokenizer fingerprint (ASCII, zero-padded)
///        120    8 reserved (zero)
///
/// Then chunks, each `chunk sequences` sequences (the last may hold fewer), in data order:
///
///     "CHNK"                          4 bytes
///     n                               UInt32, sequences in the chunk
///     first                           UInt64, index of its first sequence
///     L_1 … L_n                       UInt32 each, the sequences' lengths (the index)
///     per sequence i:
///       L_i token ids                 Int32 each
///       per position t < L_i:         the teacher's distribution of the token after t
///         k ids                       Int32 each, by descending log-probability (ties: lower id)
///         k log-probabilities         F16 each, log_softmax(z/τ)
///         rest mass                   Float32, Σ of the probabilities outside the k ids
///     commit record: "CMIT", UInt32 n, UInt64 FNV-1a 64 of the chunk's bytes from "CHNK" on
///
/// A chunk counts only when its commit record is complete and its hash matches, so a chunk cut
/// by a kill is discarded: the writer truncates it and carries on after the last committed
/// sequence. After each commit the header's sequence count is rewritten (readers do not trust it:
/// they count committed chunks). The header itself is written to a temporary file and renamed.
/// Chunks start at multiples of the chunk size, so a resumed run writes the same bytes as an
/// uninterrupted one.
public struct LogitCacheHeader: Equatable, Sendable {
    public static let magic = Array("DSTLLOGC".utf8)
    public static let size = 128
    public static let currentVersion: UInt32 = 1

    public var version: UInt32 = LogitCacheHeader.currentVersion
    public var complete: Bool = false
    public var sequenceCount: Int = 0
    public var dataHash: UInt64
    public var vocabularySize: Int
    public var tokenizerVocabularySize: Int
    public var k: Int
    public var temperature: Float
    public var maxLength: Int
    public var chunkSequences: Int
    public var fingerprint: String

    public init(dataHash: UInt64, vocabularySize: Int, tokenizerVocabularySize: Int, k: Int, temperature: Float,
                maxLength: Int, chunkSequences: Int, fingerprint: String) {
        self.dataHash = dataHash
        self.vocabularySize = vocabularySize
        self.tokenizerVocabularySize = tokenizerVocabularySize
        self.k = k
        self.temperature = temperature
        self.maxLength = maxLength
        self.chunkSequences = chunkSequences
        self.fingerprint = fingerprint
    }

    /// Bytes of one position's record: k ids, k F16 log-probabilities, the F32 rest mass.
    public var rowBytes: Int { 6 * k + 4 }

    func encoded() -> [UInt8] {
        var b = ByteWriter()
        b.bytes += Self.magic
        b.u32(version); b.u32(complete ? 1 : 0); b.u64(UInt64(sequenceCount)); b.u64(dataHash)
        b.u32(UInt32(vocabularySize)); b.u32(UInt32(tokenizerVocabularySize)); b.u32(UInt32(k))
        b.u32(temperature.bitPattern); b.u32(UInt32(maxLength)); b.u32(UInt32(chunkSequences))
        var fp = Array(fingerprint.utf8.prefix(64))
        fp += [UInt8](repeating: 0, count: 64 - fp.count)
        b.bytes += fp
        b.bytes += [UInt8](repeating: 0, count: Self.size - b.bytes.count)
        return b.bytes
    }

    init(decoding d: UnsafeRawBufferPointer, file: String) throws {
        guard d.count >= Self.size else { throw TeacherError.cacheDamaged(file: file, reason: "shorter than its 128-byte header") }
        guard Array(d[0..<8]) == Self.magic else { throw TeacherError.cacheDamaged(file: file, reason: "not a Distill logit cache (bad magic)") }
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: d.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: d.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        version = u32(8)
        guard version == Self.currentVersion else {
            throw TeacherError.cacheMismatch(file: file, field: "version", expected: "\(Self.currentVersion)", found: "\(version)")
        }
        complete = u32(12) & 1 == 1
        sequenceCount = Int(u64(16))
        dataHash = u64(24)
        vocabularySize = Int(u32(32)); tokenizerVocabularySize = Int(u32(36)); k = Int(u32(40))
        temperature = Float(bitPattern: u32(44)); maxLength = Int(u32(48)); chunkSequences = Int(u32(52))
        fingerprint = String(decoding: d[56..<120].prefix { $0 != 0 }, as: UTF8.self)
        guard k >= 1, vocabularySize >= k, chunkSequences >= 1 else {
            throw TeacherError.cacheDamaged(file: file, reason: "header holds k = \(k), vocabulary \(vocabularySize), chunk size \(chunkSequences)")
        }
    }

    /// Compares the fields that decide the contents with `other`; the first difference is an error
    /// naming the field, the expected value (`other`'s) and the one found (this header's).
    func checkSameContents(as other: LogitCacheHeader, file: String) throws {
        let fields: [(String, String, String)] = [
            ("tokenizer fingerprint", other.fingerprint, fingerprint),
            ("vocabulary size", "\(other.vocabularySize)", "\(vocabularySize)"),
            ("tokenizer vocabulary size", "\(other.tokenizerVocabularySize)", "\(tokenizerVocabularySize)"),
            ("k", "\(other.k)", "\(k)"),
            ("temperature", "\(other.temperature)", "\(temperature)"),
            ("data hash", FNV1a64.hex(other.dataHash), FNV1a64.hex(dataHash)),
            ("max length", "\(other.maxLength)", "\(maxLength)"),
            ("chunk size", "\(other.chunkSequences)", "\(chunkSequences)"),
        ]
        for (name, expected, found) in fields where expected != found {
            throw TeacherError.cacheMismatch(file: file, field: name, expected: expected, found: found)
        }
    }
}

struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func i32(_ v: Int32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
}

/// One committed sequence's place in the file.
struct CachedSequenceEntry {
    var tokensOffset: Int
    var length: Int
    var rowsOffset: Int { tokensOffset + 4 * length }
}

/// Scans the committed chunks after the header: entries of their sequences and the byte offset
/// where committed data ends. Stops at the first chunk that is cut or whose hash does not match.
func scanChunks(_ d: UnsafeRawBufferPointer, header: LogitCacheHeader) -> (entries: [CachedSequenceEntry], end: Int) {
    var entries: [CachedSequenceEntry] = []
    var o = LogitCacheHeader.size
    func u32(_ o: Int) -> Int { Int(UInt32(littleEndian: d.loadUnaligned(fromByteOffset: o, as: UInt32.self))) }
    func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: d.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
    while o + 16 <= d.count {
        guard Array(d[o..<(o + 4)]) == Array("CHNK".utf8) else { break }
        let n = u32(o + 4), first = Int(u64(o + 8))
        guard n >= 1, n <= header.chunkSequences, first == entries.count, o + 16 + 4 * n <= d.count else { break }
        var p = o + 16 + 4 * n, chunk: [CachedSequenceEntry] = [], ok = true
        for i in 0..<n {
            let len = u32(o + 16 + 4 * i)
            let bytes = 4 * len + len * header.rowBytes
            guard len >= 1, p + bytes <= d.count else { ok = false; break }
            chunk.append(CachedSequenceEntry(tokensOffset: p, length: len))
            p += bytes
        }
        guard ok, p + 16 <= d.count, Array(d[p..<(p + 4)]) == Array("CMIT".utf8), u32(p + 4) == n else { break }
        var h = FNV1a64()
        h.update(UnsafeRawBufferPointer(rebasing: d[o..<p]))
        guard h.value == u64(p + 8) else { break }
        entries += chunk
        o = p + 16
    }
    return (entries, o)
}

/// Top-k of one logits row at temperature τ: ids by descending log-probability (ties: lower id),
/// log_softmax(z/τ) in Double, and the rest mass summed over the other ids.
func topKRow(_ z: UnsafePointer<Float>, count v: Int, k: Int, temperature tau: Float) -> (ids: [Int], logprobs: [Float], rest: Float) {
    let t = Double(tau)
    var m = -Double.infinity
    for i in 0..<v { m = Swift.max(m, Double(z[i]) / t) }
    var sum = 0.0
    for i in 0..<v { sum += Foundation.exp(Double(z[i]) / t - m) }
    let lse = m + Foundation.log(sum)
    // better(a, b): a ranks before b.
    func better(_ a: Int, _ b: Int) -> Bool { z[a] != z[b] ? z[a] > z[b] : a < b }
    // Min-heap on rank: the root is the worst of the kept ids.
    var heap: [Int] = []
    heap.reserveCapacity(k)
    func siftDown(_ start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var w = i
            if l < heap.count && better(heap[w], heap[l]) { w = l }
            if r < heap.count && better(heap[w], heap[r]) { w = r }
            if w == i { return }
            heap.swapAt(i, w); i = w
        }
    }
    for i in 0..<v {
        if heap.count < k {
            heap.append(i)
            var c = heap.count - 1
            while c > 0 { let p = (c - 1) / 2; if better(heap[p], heap[c]) { heap.swapAt(p, c); c = p } else { break } }
        } else if better(i, heap[0]) {
            heap[0] = i; siftDown(0)
        }
    }
    let ids = heap.sorted(by: better)
    var inTop = Set(ids)
    var rest = 0.0
    for i in 0..<v where !inTop.contains(i) { rest += Foundation.exp(Double(z[i]) / t - lse) }
    inTop.removeAll()
    return (ids, ids.map { Float(Double(z[$0]) / t - lse) }, Float(Swift.min(1, rest)))
}

// MARK: - Writing

/// Progress of `LogitCacheWriter.run`.
public enum LogitCacheProgress: Equatable, Sendable {
    /// Starting: `cached` of `total` sequences were already committed (resume).
    case started(cached: Int, total: Int)
    /// Sequence `index` (0-based) of `total` done, with `tokens` positions.
    case sequence(index: Int, total: Int, tokens: Int)
    /// A chunk committed: `sequences` of `total` are now on disk.
    case committed(sequences: Int, total: Int)
    /// Every sequence is cached.
    case finished(total: Int)
}

/// Writes (or resumes) a logit cache for token sequences in order. See `LogitCacheHeader` for the format.
public struct LogitCacheWriter {
    public let path: String
    public let header: LogitCacheHeader

    /// `header` gives everything but the counts; `vocabularySize` must be the teacher's logits width.
    public init(path: String, header: LogitCacheHeader) throws {
        guard header.k >= 1, header.k <= header.vocabularySize else {
            throw TeacherError.invalidRequest("cache-logits: k = \(header.k) outside 1...\(header.vocabularySize)")
        }
        guard header.temperature > 0, header.temperature.isFinite else {
            throw TeacherError.invalidRequest("cache-logits: temperature \(header.temperature) must be > 0")
        }
        guard header.chunkSequences >= 1 else { throw TeacherError.invalidRequest("cache-logits: chunk size must be ≥ 1") }
        self.path = path
        var h = header
        h.complete = false
        h.sequenceCount = 0
        self.header = h
    }

    /// Caches `sequences` with `teacher` (which must give full logits of `header.vocabularySize`),
    /// continuing after the last committed sequence of an existing file with the same header.
    /// Returns the number of sequences written by this call.
    ///
    /// With `processGroup` (under `mpirun -np N`), every process runs this with the same arguments:
    /// each chunk's sequences are scored by the processes in turn (sequence i by rank i mod N), their
    /// rows gathered to every process, and rank 0 alone writes the file — the same bytes as one
    /// process writes. Rank 0 decides where a resumed run continues.
    @discardableResult
    public func run(teacher: Teacher, sequences: [[Int]], processGroup: ProcessGroup? = nil,
                    progress: (LogitCacheProgress) -> Void = { _ in }) throws -> Int {
        guard teacher.vocabularySize == header.vocabularySize else {
            throw TeacherError.invalidRequest("cache-logits: the teacher has \(teacher.vocabularySize) logits, the header says \(header.vocabularySize)")
        }
        let v = header.vocabularySize, k = header.k, tau = header.temperature
        func score(_ seq: [Int]) throws -> [LogitCacheRow] {
            guard case .full(let logits) = try teacher.view(of: [seq]) else {
                throw TeacherError.invalidRequest("cache-logits: the teacher must give full logits")
            }
            let p = logits.storage.pointer
            return (0..<seq.count).map { t in
                let row = topKRow(p + t * v, count: v, k: k, temperature: tau)
                return LogitCacheRow(ids: row.ids, logprobs: row.logprobs, rest: row.rest)
            }
        }
        guard let group = processGroup, group.size > 1 else {
            return try run(sequences: sequences, progress: progress) { _, seq in try score(seq) }
        }
        let shared = ShardedRows(group: group, sequences: sequences, chunk: header.chunkSequences, k: k, score: score)
        guard group.isMain else {
            // Follow rank 0's chunks: where it resumes, then every chunk to the end.
            var start = [UInt8](repeating: 0, count: 8)
            try group.broadcast(&start)
            var at = Int(start.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
            while at < sequences.count {
                _ = try shared.rows(of: at)
                at += Swift.min(header.chunkSequences, sequences.count - at)
            }
            return 0
        }
        return try run(sequences: sequences, progress: progress, onResume: { committed in
            var start = withUnsafeBytes(of: UInt64(committed)) { Array($0) }
            try group.broadcast(&start)
        }) { i, _ in try shared.rows(of: i) }
    }

    /// Caches `sequences` with rows from `rows(index, sequence)` — one `LogitCacheRow` per
    /// position, k ids each (`LogitCacheRow.unknown` where there is no target) — continuing after
    /// the last committed sequence of an existing file with the same header. Returns the number
    /// of sequences written by this call.
    @discardableResult
    public func run(sequences: [[Int]], progress: (LogitCacheProgress) -> Void = { _ in },
                    rows: (Int, [Int]) throws -> [LogitCacheRow]) throws -> Int {
        try run(sequences: sequences, progress: progress, onResume: { _ in }, rows: rows)
    }

    /// `onResume` hears the number of sequences already committed before any row is asked for.
    func run(sequences: [[Int]], progress: (LogitCacheProgress) -> Void, onResume: (Int) throws -> Void,
             rows: (Int, [Int]) throws -> [LogitCacheRow]) throws -> Int {
        let url = URL(fileURLWithPath: path)
        if !FileManager.default.fileExists(atPath: path) {
            do { try Data(header.encoded()).write(to: url, options: .atomic) } catch {
                throw TeacherError.io(file: path, reason: "cannot write: \(ioFailureReason(error))")
            }
        }
        // Resume: check the header, find the committed chunks, drop a cut one.
        let existing: Data
        do { existing = try Data(contentsOf: url, options: .alwaysMapped) } catch { throw TeacherError.io(file: path, reason: "cannot read: \(ioFailureReason(error))") }
        let (entries, end): ([CachedSequenceEntry], Int) = try existing.withUnsafeBytes { d in
            let found = try LogitCacheHeader(decoding: d, file: path)
            try found.checkSameContents(as: header, file: path)
            let (entries, end) = scanChunks(d, header: found)
            guard entries.count <= sequences.count else {
                throw TeacherError.cacheMismatch(file: path, field: "number of sequences", expected: "at most \(sequences.count)", found: "\(entries.count)")
            }
            for (i, e) in entries.enumerated() {
                let ids = (0..<e.length).map { Int(Int32(littleEndian: d.loadUnaligned(fromByteOffset: e.tokensOffset + 4 * $0, as: Int32.self))) }
                guard ids == sequences[i] else {
                    throw TeacherError.cacheMismatch(file: path, field: "tokens of sequence \(i)", expected: "\(sequences[i].prefix(8))…",
                                                     found: "\(ids.prefix(8))…")
                }
            }
            return (entries, end)
        }
        let handle: FileHandle
        do { handle = try FileHandle(forUpdating: url) } catch { throw TeacherError.io(file: path, reason: "cannot open for writing: \(ioFailureReason(error))") }
        defer { try? handle.close() }
        func io<R>(_ body: () throws -> R) throws -> R {
            do { return try body() } catch { throw TeacherError.io(file: path, reason: "write failed: \(ioFailureReason(error))") }
        }
        var committed = entries.count
        var h = header
        func writeHeader() throws {
            h.sequenceCount = committed
            h.complete = committed == sequences.count
            try io {
                try handle.seek(toOffset: 0)
                try handle.write(contentsOf: Data(h.encoded()))
                try handle.synchronize()
            }
        }
        try io { try handle.truncate(atOffset: UInt64(end)) }
        try onResume(committed)
        progress(.started(cached: committed, total: sequences.count))
        var offset = end
        let start = committed
        while committed < sequences.count {
            let n = Swift.min(header.chunkSequences, sequences.count - committed)
            var b = ByteWriter()
            b.bytes += Array("CHNK".utf8)
            b.u32(UInt32(n)); b.u64(UInt64(committed))
            for i in committed..<(committed + n) { b.u32(UInt32(sequences[i].count)) }
            for i in committed..<(committed + n) {
                let seq = sequences[i]
                for id in seq { b.i32(Int32(id)) }
                let seqRows = try rows(i, seq)
                guard seqRows.count == seq.count else {
                    throw TeacherError.invalidRequest("\(path): \(seqRows.count) rows for sequence \(i) of \(seq.count) tokens")
                }
                for row in seqRows {
                    guard row.ids.count == header.k, row.logprobs.count == header.k else {
                        throw TeacherError.invalidRequest("\(path): a row of sequence \(i) holds \(row.ids.count) ids, the cache's k is \(header.k)")
                    }
                    for id in row.ids { b.i32(Int32(id)) }
                    for lp in row.logprobs { b.u16(HalfPrecision.half(from: lp)) }
                    b.u32(row.rest.bitPattern)
                }
                progress(.sequence(index: i, total: sequences.count, tokens: seq.count))
            }
            var hash = FNV1a64()
            b.bytes.withUnsafeBytes { hash.update($0) }
            b.bytes += Array("CMIT".utf8)
            b.u32(UInt32(n)); b.u64(hash.value)
            try io {
                try handle.seek(toOffset: UInt64(offset))
                try handle.write(contentsOf: Data(b.bytes))
                try handle.synchronize()
            }
            offset += b.bytes.count
            committed += n
            try writeHeader()
            progress(.committed(sequences: committed, total: sequences.count))
        }
        try writeHeader()
        progress(.finished(total: sequences.count))
        return committed - start
    }
}

/// The rows of a chunk of sequences scored by the processes of a job in turn (rank i mod N scores
/// sequence i) and gathered to all: each process writes the bit patterns of its rows into a
/// zeroed buffer (ids, log-probabilities, rest per position, as Double so that every 32-bit
/// pattern survives the sum exactly) and one all-reduce sum leaves every row everywhere.
final class ShardedRows {
    let group: ProcessGroup
    let sequences: [[Int]]
    let chunk: Int, k: Int
    let score: ([Int]) throws -> [LogitCacheRow]
    private var start = -1
    private var rows: [[LogitCacheRow]] = []

    init(group: ProcessGroup, sequences: [[Int]], chunk: Int, k: Int, score: @escaping ([Int]) throws -> [LogitCacheRow]) {
        self.group = group
        self.sequences = sequences
        self.chunk = chunk
        self.k = k
        self.score = score
    }

    /// Sequence i's rows; the first sequence of a chunk runs the chunk's collective.
    func rows(of i: Int) throws -> [LogitCacheRow] {
        if start < 0 || i < start || i >= start + rows.count { try gather(from: i) }
        return rows[i - start]
    }

    private func gather(from first: Int) throws {
        let n = Swift.min(chunk, sequences.count - first), width = 2 * k + 1
        var offsets: [Int] = [], total = 0
        for seq in sequences[first..<(first + n)] { offsets.append(total); total += seq.count * width }
        var buffer = [Double](repeating: 0, count: total)
        for j in 0..<n where (first + j) % group.size == group.rank {
            let seq = sequences[first + j]
            let own = try score(seq)
            guard own.count == seq.count else { throw TeacherError.invalidRequest("cache-logits: \(own.count) rows for sequence \(first + j) of \(seq.count) tokens") }
            var at = offsets[j]
            for row in own {
                for id in row.ids { buffer[at] = Double(UInt32(bitPattern: Int32(id))); at += 1 }
                for lp in row.logprobs { buffer[at] = Double(lp.bitPattern); at += 1 }
                buffer[at] = Double(row.rest.bitPattern); at += 1
            }
        }
        try group.allReduceSum(&buffer)
        rows = (0..<n).map { j in
            (0..<sequences[first + j].count).map { t in
                let at = offsets[j] + t * width
                return LogitCacheRow(ids: (0..<k).map { Int(Int32(bitPattern: UInt32(buffer[at + $0]))) },
                                     logprobs: (0..<k).map { Float(bitPattern: UInt32(buffer[at + k + $0])) },
                                     rest: Float(bitPattern: UInt32(buffer[at + 2 * k])))
            }
        }
        start = first
    }
}

/// One position's record in a logit cache: k ids by descending log-probability, their
/// log-probabilities, and the rest mass — NaN where the position has no target (a server's
/// log-probabilities did not cover it); such rows are left out of the soft term.
public struct LogitCacheRow: Equatable, Sendable {
    public var ids: [Int]
    public var logprobs: [Float]
    public var rest: Float

    public init(ids: [Int], logprobs: [Float], rest: Float) {
        self.ids = ids
        self.logprobs = logprobs
        self.rest = rest
    }

    /// A position without a target, k entries wide.
    public static func unknown(k: Int) -> LogitCacheRow {
        LogitCacheRow(ids: Array(0..<k), logprobs: [Float](repeating: -.infinity, count: k), rest: .nan)
    }

    public var isKnown: Bool { !rest.isNaN }
}

// MARK: - Reading

/// A logit cache opened for reading (memory-mapped). Only committed chunks are seen.
public final class LogitCache {
    public let path: String
    public let header: LogitCacheHeader
    let data: Data
    let entries: [CachedSequenceEntry]
    private var lookup: [UInt64: [Int]]?
    private let lock = NSLock()

    public init(path: String) throws {
        self.path = path
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw TeacherError.io(file: path, reason: "cannot read: \(ioFailureReason(error))")
        }
        (header, entries) = try data.withUnsafeBytes { d in
            let h = try LogitCacheHeader(decoding: d, file: path)
            return (h, scanChunks(d, header: h).entries)
        }
    }

    /// What the student side needs of a cache. nil fields are not checked.
    public struct Expectation {
        public var fingerprint: String?
        /// The student's logits width; a different width is accepted when the tokenizers match
        /// and their ids fit in both (padding, see `VocabularyAlignment`) unless `exactVocabulary`.
        public var vocabularySize: Int?
        public var exactVocabulary: Bool
        /// k needed: the cache must hold at least this many per position.
        public var k: Int?
        public var temperature: Float?
        public var dataHash: UInt64?
        /// Whether every sequence of the data file must be cached.
        public var complete: Bool

        public init(fingerprint: String? = nil, vocabularySize: Int? = nil, exactVocabulary: Bool = false, k: Int? = nil,
                    temperature: Float? = nil, dataHash: UInt64? = nil, complete: Bool = false) {
            self.fingerprint = fingerprint
            self.vocabularySize = vocabularySize
            self.exactVocabulary = exactVocabulary
            self.k = k
            self.temperature = temperature
            self.dataHash = dataHash
            self.complete = complete
        }
    }

    /// Checks the header against `e`; a mismatch names the field, expected and found.
    public func check(_ e: Expectation) throws {
        func fail(_ field: String, _ expected: String, _ found: String) -> TeacherError {
            .cacheMismatch(file: path, field: field, expected: expected, found: found)
        }
        if let f = e.fingerprint, f != header.fingerprint { throw fail("tokenizer fingerprint", f, header.fingerprint) }
        if let v = e.vocabularySize, v != header.vocabularySize {
            if e.exactVocabulary || header.tokenizerVocabularySize > v {
                throw fail("vocabulary size", "\(v)", "\(header.vocabularySize) (tokenizer ids: \(header.tokenizerVocabularySize))")
            }
        }
        if let k = e.k, k > header.k { throw fail("k", "at least \(k)", "\(header.k)") }
        if let t = e.temperature, t != header.temperature { throw fail("temperature", "\(t)", "\(header.temperature)") }
        if let h = e.dataHash, h != header.dataHash { throw fail("data hash", FNV1a64.hex(h), FNV1a64.hex(header.dataHash)) }
        if e.complete && !(header.complete && entries.count == header.sequenceCount) {
            throw fail("completeness", "every sequence cached", "\(entries.count) sequences (resume cache-logits)")
        }
    }

    /// Committed sequences.
    public var sequenceCount: Int { entries.count }

    /// Token ids of sequence `index`.
    public func tokens(of index: Int) -> [Int] {
        let e = entries[index]
        return data.withUnsafeBytes { d in
            (0..<e.length).map { Int(Int32(littleEndian: d.loadUnaligned(fromByteOffset: e.tokensOffset + 4 * $0, as: Int32.self))) }
        }
    }

    /// The index of the cached sequence with exactly these ids, if any.
    public func index(of sequence: [Int]) -> Int? {
        lock.lock()
        if lookup == nil {
            var l: [UInt64: [Int]] = [:]
            data.withUnsafeBytes { d in
                for (i, e) in entries.enumerated() {
                    var h = FNV1a64()
                    h.update(UnsafeRawBufferPointer(rebasing: d[e.tokensOffset..<(e.tokensOffset + 4 * e.length)]))
                    l[h.value, default: []].append(i)
                }
            }
            lookup = l
        }
        let table = lookup!
        lock.unlock()
        var b = ByteWriter()
        for id in sequence { b.i32(Int32(truncatingIfNeeded: id)) }
        var h = FNV1a64()
        b.bytes.withUnsafeBytes { h.update($0) }
        return table[h.value]?.first { entries[$0].length == sequence.count && tokens(of: $0) == sequence }
    }

    /// Rows of sequence `index` (all positions, or `positions`), k ≤ the stored k: the first k
    /// stored entries, the mass of the dropped ones added to the rest. Log-probabilities whose F16
    /// rounding makes the k probabilities sum past 1 are shifted down to sum to 1.
    /// A row stored without a target (NaN rest mass) comes back with `known` false.
    public func rows(of index: Int, positions: [Int]? = nil, k: Int? = nil) -> (ids: [Int], logprobs: [Float], rest: [Float], known: [Bool]) {
        let e = entries[index], storedK = header.k, k = Swift.min(k ?? storedK, storedK), rb = header.rowBytes
        let list = positions ?? Array(0..<e.length)
        var ids: [Int] = [], lps: [Float] = [], rest: [Float] = [], known: [Bool] = []
        ids.reserveCapacity(list.count * k); lps.reserveCapacity(list.count * k)
        data.withUnsafeBytes { d in
            for t in list {
                let o = e.rowsOffset + t * rb
                var mass = 0.0, dropped = 0.0
                var rowLps: [Float] = []
                for j in 0..<storedK {
                    let lp = HalfPrecision.float(fromHalf: UInt16(littleEndian: d.loadUnaligned(fromByteOffset: o + 4 * storedK + 2 * j, as: UInt16.self)))
                    if j < k {
                        ids.append(Int(Int32(littleEndian: d.loadUnaligned(fromByteOffset: o + 4 * j, as: Int32.self))))
                        rowLps.append(lp); mass += Foundation.exp(Double(lp))
                    } else {
                        dropped += Foundation.exp(Double(lp))
                    }
                }
                if mass > 1 {
                    let shift = Float(Foundation.log(mass))
                    rowLps = rowLps.map { Swift.min(0, $0 - shift) }
                }
                lps += rowLps
                let r = Float(bitPattern: UInt32(littleEndian: d.loadUnaligned(fromByteOffset: o + 4 * storedK + 2 * storedK, as: UInt32.self)))
                known.append(!r.isNaN)
                rest.append(r.isNaN ? 1 : Swift.min(1, Swift.max(0, r + Float(dropped))))
            }
        }
        return (ids, lps, rest, known)
    }
}

/// A teacher read from a logit cache: sequences are looked up by their token ids (they must be
/// tokenized and cut exactly as when the cache was written), views are `.sparse` at the cache's
/// temperature.
public final class CachedTeacher: Teacher {
    public let cache: LogitCache
    /// k of the views (≤ the stored k).
    public let k: Int

    /// Opens `cache`; `k` defaults to the stored k and must not exceed it.
    public init(cache: LogitCache, k: Int? = nil) throws {
        if let k, k < 1 || k > cache.header.k {
            throw TeacherError.cacheMismatch(file: cache.path, field: "k", expected: "at least \(k)", found: "\(cache.header.k)")
        }
        self.cache = cache
        self.k = k ?? cache.header.k
    }

    public convenience init(path: String, expecting e: LogitCache.Expectation = .init()) throws {
        let c = try LogitCache(path: path)
        try c.check(e)
        try self.init(cache: c, k: e.k)
    }

    public var vocabularySize: Int { cache.header.vocabularySize }
    public var tokenizerFingerprint: String? { cache.header.fingerprint.isEmpty ? nil : cache.header.fingerprint }
    public var tokenizerVocabularySize: Int? { cache.header.tokenizerVocabularySize }
    /// τ the log-probabilities were taken at; the sparse loss must run at it.
    public var temperature: Float { cache.header.temperature }
    public var logprobTemperature: Float? { cache.header.temperature }

    public func view(of sequences: [[Int]], positions: [[Int]]?) throws -> TeacherView {
        try checkPositions(sequences, positions)
        var ids: [Int] = [], lps: [Float] = [], rest: [Float] = [], known: [Bool] = []
        for (s, seq) in sequences.enumerated() {
            guard let i = cache.index(of: seq) else {
                throw TeacherError.invalidRequest("\(cache.path): sequence \(s) of the batch (\(seq.count) tokens) is not in the logit cache")
            }
            let r = cache.rows(of: i, positions: positions?[s], k: k)
            ids += r.ids; lps += r.logprobs; rest += r.rest; known += r.known
        }
        do {
            return .sparse(try SparseTeacherTargets(ids: ids, logprobs: lps, k: k, vocabularySize: vocabularySize, restMass: rest,
                                                    known: known))
        } catch { throw TeacherError.cacheDamaged(file: cache.path, reason: "\(error)") }
    }
}
