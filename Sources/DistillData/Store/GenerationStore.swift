import Foundation
import DistillModels
#if canImport(Glibc)
import Glibc
#endif

/// The settings a store's traces were generated with. A store remembers them when created and
/// refuses to be reopened with different ones (unless told to ignore them), so that one file never
/// mixes traces of two teachers, templates or sampling rules.
public struct GenerationSettings: Sendable, Equatable, Codable {
    public var teacherModel: String
    /// The trace template's name (or a hash of it).
    public var template: String
    /// Candidates sampled per prompt.
    public var samplesPerPrompt: Int
    public var temperature: Double
    public var seed: UInt64
    /// Further settings to pin (top_p, max_tokens, verifier, …), compared by value.
    public var extra: [String: String]

    public init(teacherModel: String, template: String, samplesPerPrompt: Int, temperature: Double, seed: UInt64,
                extra: [String: String] = [:]) {
        self.teacherModel = teacherModel
        self.template = template
        self.samplesPerPrompt = samplesPerPrompt
        self.temperature = temperature
        self.seed = seed
        self.extra = extra
    }

    /// (field, value) in a fixed order, as stored in the meta table.
    var fields: [(String, String)] {
        var f = [("teacher_model", teacherModel), ("template", template), ("samples_per_prompt", String(samplesPerPrompt)),
                 ("temperature", String(temperature)), ("seed", String(seed))]
        for k in extra.keys.sorted() { f.append(("extra." + k, extra[k]!)) }
        return f
    }

    init(fields: [String: String], path: String) throws {
        func need(_ k: String) throws -> String {
            guard let v = fields[k] else {
                throw GenerationStoreError.corrupt(path: path, reason: "the meta table has no setting \"\(k)\"")
            }
            return v
        }
        func number<T: LosslessStringConvertible>(_ k: String) throws -> T {
            let s = try need(k)
            guard let v = T(s) else { throw GenerationStoreError.corrupt(path: path, reason: "setting \"\(k)\" = \"\(s)\" is not a number") }
            return v
        }
        var extra: [String: String] = [:]
        for (k, v) in fields where k.hasPrefix("extra.") { extra[String(k.dropFirst(6))] = v }
        self.init(teacherModel: try need("teacher_model"), template: try need("template"),
                  samplesPerPrompt: try number("samples_per_prompt"), temperature: try number("temperature"),
                  seed: try number("seed"), extra: extra)
    }
}

/// One setting that differs between a store and the settings it was opened with.
public struct SettingDifference: Sendable, Equatable, CustomStringConvertible {
    public var field: String
    /// nil: not set on that side.
    public var stored: String?
    public var requested: String?

    public var description: String { "\(field): the store has \(stored.map { "\"\($0)\"" } ?? "none"), asked for \(requested.map { "\"\($0)\"" } ?? "none")" }
}

/// A candidate's verdict.
public enum CandidateVerdict: String, Sendable, Codable, CaseIterable {
    /// Passed verification and filters: exported.
    case kept
    case rejected
}

/// One sampled completion of a prompt, with its verdict.
public struct StoredCandidate: Sendable, Equatable {
    /// 0-based sample index within its prompt; unique per prompt.
    public var index: Int
    public var text: String
    public var finishReason: String?
    public var promptTokens: Int?
    public var completionTokens: Int?
    /// Token log-probabilities, serialized (`encodeLogprobs`), when kept.
    public var logprobs: Data?
    public var verdict: CandidateVerdict
    /// Why it was rejected (or any note on a kept one).
    public var reason: String?
    /// The completion's text as the teacher returned it, when `text` was rebuilt from it (a
    /// separate reasoning field, a think block opened by the prompt).
    public var rawText: String?
    /// The teacher's separate reasoning field (`reasoning_content` / `reasoning`), if any.
    public var reasoning: String?
    /// The seed of the request that produced it.
    public var seed: UInt64?

    public init(index: Int, text: String, finishReason: String? = nil, promptTokens: Int? = nil, completionTokens: Int? = nil,
                logprobs: Data? = nil, verdict: CandidateVerdict, reason: String? = nil) {
        self.index = index
        self.text = text
        self.finishReason = finishReason
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.logprobs = logprobs
        self.verdict = verdict
        self.reason = reason
    }

    /// A teacher's completion with its verdict; `keepLogprobs` stores its log-probabilities.
    public init(_ completion: TeacherCompletion, promptTokens: Int? = nil, verdict: CandidateVerdict, reason: String? = nil,
                keepLogprobs: Bool = false) throws {
        self.init(index: completion.index, text: completion.text, finishReason: completion.finishReason?.rawValue,
                  promptTokens: promptTokens, completionTokens: completion.logprobs?.count,
                  logprobs: keepLogprobs ? try Self.storedLogprobs(completion) : nil,
                  verdict: verdict, reason: reason)
    }

    /// What the store keeps of a completion's log-probabilities: their JSON, or — when the server's
    /// could not be read — the problem as text, which `decodedLogprobs` rejects with it (so the
    /// targets count it as malformed, and the candidate keeps its text).
    static func storedLogprobs(_ completion: TeacherCompletion) throws -> Data? {
        if let problem = completion.logprobsProblem { return Data(("malformed: " + problem).utf8) }
        return try completion.logprobs.map(Self.encodeLogprobs)
    }

    /// Log-probabilities as compact JSON (infinities as the strings "-inf"/"inf").
    public static func encodeLogprobs(_ logprobs: [TokenLogprob]) throws -> Data {
        let e = JSONEncoder()
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try e.encode(logprobs)
    }

    public func decodedLogprobs() throws -> [TokenLogprob]? {
        guard let logprobs else { return nil }
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try d.decode([TokenLogprob].self, from: logprobs)
    }
}

/// How far generation has come.
public struct GenerationStoreCounts: Sendable, Equatable {
    public var prompts = 0
    public var pending = 0
    public var done = 0
    public var candidates = 0
    public var kept = 0
    public var rejected = 0
    /// Done prompts with at least one kept candidate.
    public var promptsWithKept = 0
}

public enum GenerationStoreError: Error, Equatable, CustomStringConvertible {
    /// The store was made with other settings; each difference names the field.
    case settingsMismatch(path: String, differences: [SettingDifference])
    /// The same prompt id was inserted again with other content.
    case promptConflict(path: String, id: String, field: String)
    case unknownPrompt(path: String, id: String)
    /// The prompt's results are already recorded.
    case alreadyDone(path: String, id: String)
    case invalidCandidates(path: String, id: String, reason: String)
    /// The file was written by a newer version of this program (migrations unknown here).
    case newerSchema(path: String, unknownMigrations: [String])
    case corrupt(path: String, reason: String)
    case database(path: String, message: String)
    case export(path: String, message: String)

    public var description: String {
        switch self {
        case let .settingsMismatch(path, d):
            return "\(path) was created with other generation settings (\(d.map(\.description).joined(separator: "; "))); "
                + "use another store, or ignore the difference to continue anyway"
        case let .promptConflict(path, id, field):
            return "\(path): prompt \"\(id)\" is already stored with a different \(field)"
        case let .unknownPrompt(path, id): return "\(path): no prompt \"\(id)\""
        case let .alreadyDone(path, id): return "\(path): prompt \"\(id)\" is already done"
        case let .invalidCandidates(path, id, reason): return "\(path): candidates of prompt \"\(id)\": \(reason)"
        case let .newerSchema(path, m):
            return "\(path) was written by a newer version (unknown schema migrations: \(m.joined(separator: ", ")))"
        case let .corrupt(path, reason): return "\(path) is damaged: \(reason)"
        case let .database(path, message): return "\(path): \(message)"
        case let .export(path, message): return "export to \(path): \(message)"
        }
    }
}

/// A resumable record of trace generation in one SQLite file (WAL mode).
///
/// Tables: `prompts` (id, source, text, reference answer, in insertion order), `prompt_status`
/// (pending/done per prompt), `candidates` (per prompt and sample index: text, finish reason, token
/// counts, optional log-probabilities, verdict, reason) and `meta` (generation settings). A prompt's
/// candidates and its done flag are written in one transaction, so a process killed at any
/// moment leaves each prompt either fully recorded or still pending: resuming redoes only the
/// pending ones. The schema is versioned by migrations (`SQLiteDatabase.migrate`).
public final class GenerationStore: Sendable {
    public let path: String
    /// The settings the store was created with (which differ from the requested ones only when
    /// the difference was ignored).
    public let settings: GenerationSettings
    private let db: SQLiteDatabase

    /// The schema's migrations (identifier, SQL), oldest first.
    static let migrations: [(String, String)] = [
        ("v1", """
                CREATE TABLE meta (
                    key TEXT PRIMARY KEY NOT NULL,
                    value TEXT NOT NULL);
                CREATE TABLE prompts (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    id TEXT NOT NULL UNIQUE,
                    source TEXT,
                    text TEXT NOT NULL,
                    reference_answer TEXT);
                CREATE TABLE prompt_status (
                    prompt_id TEXT PRIMARY KEY NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
                    status TEXT NOT NULL CHECK (status IN ('pending', 'done')),
                    updated_at REAL NOT NULL);
                CREATE INDEX prompt_status_by_status ON prompt_status(status);
                CREATE TABLE candidates (
                    prompt_id TEXT NOT NULL REFERENCES prompts(id) ON DELETE CASCADE,
                    idx INTEGER NOT NULL CHECK (idx >= 0),
                    text TEXT NOT NULL,
                    finish_reason TEXT,
                    prompt_tokens INTEGER,
                    completion_tokens INTEGER,
                    logprobs BLOB,
                    verdict TEXT NOT NULL CHECK (verdict IN ('kept', 'rejected')),
                    reason TEXT,
                    PRIMARY KEY (prompt_id, idx));
                """),
        // v2: the candidate's text as the teacher gave it and its separate reasoning field (the
        // `text` column holds the full template form), and the seed of the request it came from.
        ("v2", """
                ALTER TABLE candidates ADD COLUMN raw_text TEXT;
                ALTER TABLE candidates ADD COLUMN reasoning TEXT;
                ALTER TABLE candidates ADD COLUMN seed INTEGER;
                """),
    ]

    /// Opens the store at `path`, creating it (and recording `settings`) when absent. An existing
    /// store made with other settings is an error naming each differing field, unless
    /// `ignoreSettingsMismatch` (then the stored settings stay).
    public init(path: String, settings: GenerationSettings, ignoreSettingsMismatch: Bool = false) throws {
        self.path = path
        do {
            let dir = (path as NSString).deletingLastPathComponent
            if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
            // WAL, and every commit reaches the disk: a power cut loses no recorded prompt.
            db = try SQLiteDatabase(path: path)
            let unknown = try db.migrate(Self.migrations)
            if !unknown.isEmpty { throw GenerationStoreError.newerSchema(path: path, unknownMigrations: unknown) }
            let requested = settings.fields
            self.settings = try db.write { db -> GenerationSettings in
                var stored: [String: String] = [:]
                for row in try db.rows(sql: "SELECT key, value FROM meta WHERE key LIKE 'setting.%'") {
                    let key = row.string("key") ?? ""
                    stored[String(key.dropFirst(8))] = row.string("value")
                }
                if stored.isEmpty {
                    for (k, v) in requested {
                        try db.execute(sql: "INSERT INTO meta (key, value) VALUES (?, ?)", arguments: ["setting." + k, v])
                    }
                    try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('created_at', ?)",
                                   arguments: [ISO8601DateFormatter().string(from: Date())])
                    return settings
                }
                let existing = try GenerationSettings(fields: stored, path: path)
                let differences = Self.differences(stored: existing, requested: settings)
                if !differences.isEmpty && !ignoreSettingsMismatch {
                    throw GenerationStoreError.settingsMismatch(path: path, differences: differences)
                }
                return existing
            }
        } catch let e as GenerationStoreError {
            throw e
        } catch {
            throw Self.wrap(error, path: path)
        }
    }

    static func differences(stored: GenerationSettings, requested: GenerationSettings) -> [SettingDifference] {
        let a = Dictionary(stored.fields, uniquingKeysWith: { $1 })
        let b = Dictionary(requested.fields, uniquingKeysWith: { $1 })
        var out: [SettingDifference] = []
        let order = stored.fields.map(\.0) + requested.fields.map(\.0).filter { a[$0] == nil }
        for k in order {
            let same: Bool
            if k == "temperature", let x = a[k].flatMap(Double.init), let y = b[k].flatMap(Double.init) {
                same = x == y
            } else {
                same = a[k] == b[k]
            }
            if !same { out.append(SettingDifference(field: k, stored: a[k], requested: b[k])) }
        }
        return out
    }

    static func wrap(_ error: Error, path: String) -> GenerationStoreError {
        if let e = error as? GenerationStoreError { return e }
        if let e = error as? SQLiteError { return .database(path: path, message: e.description) }
        return .database(path: path, message: "\(error)")
    }

    private func run<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch { throw Self.wrap(error, path: path) }
    }

    // MARK: Prompts

    /// Adds prompts not yet stored, as pending, in one transaction; returns how many were new.
    /// A prompt whose id is stored already is skipped when its content is the same and an error
    /// naming the field otherwise.
    @discardableResult
    public func insertPrompts(_ prompts: [TracePrompt]) throws -> Int {
        try run {
            try db.write { db -> Int in
                var added = 0
                let now = Date().timeIntervalSince1970
                for p in prompts {
                    if let row = try db.rows(sql: "SELECT source, text, reference_answer FROM prompts WHERE id = ?",
                                             arguments: [p.id]).first {
                        let source = row.string("source")
                        let text = row.string("text")
                        let answer = row.string("reference_answer")
                        if text != p.text { throw GenerationStoreError.promptConflict(path: path, id: p.id, field: "text") }
                        if source != p.source { throw GenerationStoreError.promptConflict(path: path, id: p.id, field: "source") }
                        if answer != p.answer {
                            throw GenerationStoreError.promptConflict(path: path, id: p.id, field: "reference answer")
                        }
                        continue
                    }
                    try db.execute(sql: "INSERT INTO prompts (id, source, text, reference_answer) VALUES (?, ?, ?, ?)",
                                   arguments: [p.id, p.source, p.text, p.answer] as [any SQLBindable])
                        try db.execute(sql: "INSERT INTO prompt_status (prompt_id, status, updated_at) VALUES (?, 'pending', ?)",
                                   arguments: [p.id, now] as [any SQLBindable])
                    added += 1
                }
                return added
            }
        }
    }

    /// Prompts not yet done, in insertion order (at most `limit`).
    public func pendingPrompts(limit: Int? = nil) throws -> [TracePrompt] {
        try run {
            try db.read { db in
                try db.rows(sql: """
                    SELECT p.id, p.source, p.text, p.reference_answer FROM prompts p
                    JOIN prompt_status s ON s.prompt_id = p.id
                    WHERE s.status = 'pending' ORDER BY p.seq LIMIT ?
                    """, arguments: [limit ?? -1]).map(Self.prompt)
            }
        }
    }

    /// Every prompt, in insertion order.
    public func prompts() throws -> [TracePrompt] {
        try run { try db.read { db in try db.rows(sql: "SELECT id, source, text, reference_answer FROM prompts ORDER BY seq").map(Self.prompt) } }
    }

    static func prompt(_ row: SQLRow) -> TracePrompt {
        TracePrompt(id: row.string("id") ?? "", text: row.string("text") ?? "", answer: row.string("reference_answer"), source: row.string("source"))
    }

    public func isDone(_ promptID: String) throws -> Bool {
        try run {
            try db.read { db in
                guard let status = try db.string(sql: "SELECT status FROM prompt_status WHERE prompt_id = ?",
                                                       arguments: [promptID]) else {
                    throw GenerationStoreError.unknownPrompt(path: path, id: promptID)
                }
                return status == "done"
            }
        }
    }

    // MARK: Results

    /// Records a prompt's candidates with their verdicts and marks it done — all in one
    /// transaction: after a crash the prompt is either complete or still pending.
    public func recordResults(promptID: String, candidates: [StoredCandidate]) throws {
        try record(promptID: promptID, candidates: candidates, afterEachCandidate: nil)
    }

    /// `recordResults`, with a hook run inside the transaction after each candidate is written
    /// (tests throw or kill the process there).
    func record(promptID: String, candidates: [StoredCandidate], afterEachCandidate: ((Int) throws -> Void)?) throws {
        let indices = candidates.map(\.index)
        if let dup = Dictionary(grouping: indices, by: { $0 }).first(where: { $0.value.count > 1 })?.key {
            throw GenerationStoreError.invalidCandidates(path: path, id: promptID, reason: "index \(dup) appears twice")
        }
        if let neg = indices.first(where: { $0 < 0 }) {
            throw GenerationStoreError.invalidCandidates(path: path, id: promptID, reason: "index \(neg) is negative")
        }
        try run {
            try db.write { db in
                guard let status = try db.string(sql: "SELECT status FROM prompt_status WHERE prompt_id = ?",
                                                       arguments: [promptID]) else {
                    throw GenerationStoreError.unknownPrompt(path: path, id: promptID)
                }
                if status == "done" { throw GenerationStoreError.alreadyDone(path: path, id: promptID) }
                // Nothing of this prompt can be here (writes are all-or-nothing); clear anyway.
                try db.execute(sql: "DELETE FROM candidates WHERE prompt_id = ?", arguments: [promptID])
                let insert = """
                    INSERT INTO candidates (prompt_id, idx, text, finish_reason, prompt_tokens, completion_tokens, logprobs, verdict, reason,
                                            raw_text, reasoning, seed)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """
                for (k, c) in candidates.enumerated() {
                    let rawText = c.rawText == c.text ? nil : c.rawText
                    try db.execute(sql: insert, arguments: [promptID, c.index, c.text, c.finishReason, c.promptTokens, c.completionTokens,
                                                            c.logprobs, c.verdict.rawValue, c.reason, rawText, c.reasoning,
                                                            c.seed.map { Int64(bitPattern: $0) }] as [any SQLBindable])
                    try afterEachCandidate?(k)
                }
                try db.execute(sql: "UPDATE prompt_status SET status = 'done', updated_at = ? WHERE prompt_id = ?",
                               arguments: [Date().timeIntervalSince1970, promptID] as [any SQLBindable])
            }
        }
    }

    /// A prompt's candidates by index.
    public func candidates(promptID: String) throws -> [StoredCandidate] {
        try run {
            try db.read { db in
                try db.rows(sql: """
                    SELECT \(Self.candidateColumns) FROM candidates c WHERE prompt_id = ? ORDER BY idx
                    """, arguments: [promptID]).map(Self.candidate)
            }
        }
    }

    /// The columns `candidate(_:)` reads, of the `candidates` table aliased `c`.
    static let candidateColumns = "c.idx, c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens, c.logprobs, c.verdict, c.reason, "
        + "c.raw_text, c.reasoning, c.seed"

    static func candidate(_ row: SQLRow) -> StoredCandidate {
        var c = StoredCandidate(index: row.int("idx") ?? 0, text: row.string("text") ?? "", finishReason: row.string("finish_reason"),
                                promptTokens: row.int("prompt_tokens"), completionTokens: row.int("completion_tokens"),
                                logprobs: row.data("logprobs"),
                                verdict: CandidateVerdict(rawValue: row.string("verdict") ?? "") ?? .rejected, reason: row.string("reason"))
        c.rawText = row.string("raw_text")
        c.reasoning = row.string("reasoning")
        c.seed = row.int64("seed").map { UInt64(bitPattern: $0) }
        return c
    }

    /// Every done prompt with its candidates (by index), prompts in insertion order, read in one
    /// transaction.
    public func doneResults(_ body: (TracePrompt, [StoredCandidate]) throws -> Void) throws {
        try run {
            try db.read { db in
                var current: TracePrompt?
                var candidates: [StoredCandidate] = []
                try db.forEachRow(sql: """
                    SELECT p.id, p.source, p.text AS prompt, p.reference_answer, \(Self.candidateColumns)
                    FROM prompts p
                    JOIN prompt_status s ON s.prompt_id = p.id
                    LEFT JOIN candidates c ON c.prompt_id = p.id
                    WHERE s.status = 'done'
                    ORDER BY p.seq, c.idx
                    """, arguments: []) { row in
                    let id = row.string("id") ?? ""
                    if current?.id != id {
                        if let current { try body(current, candidates) }
                        current = TracePrompt(id: id, text: row.string("prompt") ?? "", answer: row.string("reference_answer"),
                                              source: row.string("source"))
                        candidates = []
                    }
                    if row.int("idx") != nil { candidates.append(Self.candidate(row)) }
                }
                if let current { try body(current, candidates) }
            }
        }
    }

    /// The kept candidates of done prompts in the order `exportKept` writes them (prompts in
    /// insertion order, candidates by index).
    public func keptCandidates() throws -> [StoredCandidate] {
        try run {
            try db.read { db in
                try db.rows(sql: """
                    SELECT \(Self.candidateColumns)
                    FROM candidates c
                    JOIN prompts p ON p.id = c.prompt_id
                    JOIN prompt_status s ON s.prompt_id = p.id
                    WHERE c.verdict = 'kept' AND s.status = 'done'
                    ORDER BY p.seq, c.idx
                    """).map(Self.candidate)
            }
        }
    }

    /// A note the pipeline keeps beside the settings (not compared when reopening), nil when unset.
    public func note(_ key: String) throws -> String? {
        try run { try db.read { db in try db.string(sql: "SELECT value FROM meta WHERE key = ?", arguments: ["note." + key]) } }
    }

    public func setNote(_ key: String, _ value: String) throws {
        try run {
            try db.write { db in
                try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", arguments: ["note." + key, value])
            }
        }
    }

    public func counts() throws -> GenerationStoreCounts {
        try run {
            try db.read { db in
                var c = GenerationStoreCounts()
                c.prompts = try db.int(sql: "SELECT COUNT(*) FROM prompts") ?? 0
                c.done = try db.int(sql: "SELECT COUNT(*) FROM prompt_status WHERE status = 'done'") ?? 0
                c.pending = try db.int(sql: "SELECT COUNT(*) FROM prompt_status WHERE status = 'pending'") ?? 0
                c.candidates = try db.int(sql: "SELECT COUNT(*) FROM candidates") ?? 0
                c.kept = try db.int(sql: "SELECT COUNT(*) FROM candidates WHERE verdict = 'kept'") ?? 0
                c.rejected = c.candidates - c.kept
                c.promptsWithKept = try db.int(sql: "SELECT COUNT(DISTINCT prompt_id) FROM candidates WHERE verdict = 'kept'") ?? 0
                return c
            }
        }
    }

    // MARK: Inspection (tests)

    /// SQLite's journal mode ("wal").
    func journalMode() throws -> String {
        try run { try db.read { db in try db.string(sql: "PRAGMA journal_mode") ?? "" } }
    }

    /// Runs raw SQL in a write transaction.
    func execute(sql: String) throws {
        try run { try db.write { db in try db.execute(sql: sql) } }
    }

    // MARK: Export

    /// Writes the kept candidates of done prompts as chat records (`ChatRecord`, one JSON line
    /// each: `{"messages":[{"role":"user","content":…},{"role":"assistant","content":…}]}`),
    /// prompts in insertion order and candidates by index, at most `maxPerPrompt` per prompt,
    /// with an optional system message and the prompt's id and source. The file is written
    /// to a temporary file beside `path` and renamed into place. Returns the number of records.
    @discardableResult
    public func exportKept(to outputPath: String, systemPrompt: String? = nil, maxPerPrompt: Int? = nil,
                           includeIDs: Bool = false) throws -> Int {
        let url = URL(fileURLWithPath: outputPath)
        let dir = url.deletingLastPathComponent()
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UUID().uuidString)")
        func fail(_ m: String) -> GenerationStoreError { .export(path: outputPath, message: m) }
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        } catch {
            throw fail("cannot create the directory \(dir.path): \(ioFailureReason(error))")
        }
        guard FileManager.default.createFile(atPath: tmp.path, contents: nil) else { throw fail("cannot create \(tmp.path)") }
        var written = 0
        do {
            let handle = try FileHandle(forWritingTo: tmp)
            defer { try? handle.close() }
            try run {
                try db.read { db in
                    var buffer = ""
                    var lastID: String?
                    var perPrompt = 0
                    try db.forEachRow(sql: """
                        SELECT p.id, p.source, p.text AS prompt, c.text AS completion FROM candidates c
                        JOIN prompts p ON p.id = c.prompt_id
                        JOIN prompt_status s ON s.prompt_id = p.id
                        WHERE c.verdict = 'kept' AND s.status = 'done'
                        ORDER BY p.seq, c.idx
                        """, arguments: []) { row in
                        let id = row.string("id") ?? ""
                        if id != lastID { lastID = id; perPrompt = 0 }
                        perPrompt += 1
                        if let maxPerPrompt, perPrompt > maxPerPrompt { return }
                        let record = ChatRecord(system: systemPrompt, user: row.string("prompt") ?? "", assistant: row.string("completion") ?? "",
                                                id: includeIDs ? id : nil, source: includeIDs ? row.string("source") : nil)
                        buffer += record.jsonLine
                        buffer += "\n"
                        written += 1
                        if buffer.utf8.count >= 1 << 20 {
                            try handle.write(contentsOf: Data(buffer.utf8))
                            buffer = ""
                        }
                    }
                    try handle.write(contentsOf: Data(buffer.utf8))
                }
            }
            try handle.synchronize()
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            if let e = error as? GenerationStoreError { throw e }
            throw fail(ioFailureReason(error))
        }
        guard rename(tmp.path, outputPath) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: tmp)
            throw fail("cannot move the temporary file into place: \(reason)")
        }
        return written
    }
}
