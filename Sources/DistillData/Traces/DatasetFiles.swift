import DistillModels
import Foundation

/// A problem with a trace data file or argument, saying what the user must fix.
public enum TraceDataError: Error, Equatable, CustomStringConvertible {
    /// One line of a JSONL file (1-based; blank lines count).
    case line(file: String, line: Int, reason: String)
    /// The whole file (cannot be read or written, holds nothing, …).
    case file(file: String, reason: String)
    /// A bad argument (mixing weight, total, …).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .line(file, line, reason): return "\(file):\(line): \(reason)"
        case let .file(file, reason): return "\(file): \(reason)"
        case let .invalidArgument(reason): return reason
        }
    }
}

/// JSONL plumbing shared by the trace data files (and the evaluation task files): non-blank
/// lines (`JSONLines`) as text, one JSON object per line, scalar fields read with messages that
/// name the key.
public enum TraceJSONL {
    /// Non-blank lines (spaces, tabs, a CR only are blank) with their 1-based numbers. A missing
    /// or unreadable file, or one that is not UTF-8, is a `TraceDataError.file`.
    public static func lines(path: String) throws -> [(line: Int, text: String)] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TraceDataError.file(file: path, reason: "cannot read the file")
        }
        return try lines(data: data, path: path)
    }

    public static func lines(data: Data, path: String) throws -> [(line: Int, text: String)] {
        try JSONLines.lines(in: data).map { line, bytes in
            guard let s = String(bytes: bytes, encoding: .utf8) else {
                throw TraceDataError.line(file: path, line: line, reason: "not valid UTF-8 text")
            }
            return (line, s)
        }
    }

    /// The line as a JSON object; `expected` says what the object should hold (for the message).
    public static func object(_ text: String, file: String, line: Int, expected: String) throws -> [String: Any] {
        let obj: Any
        do { obj = try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]) } catch {
            throw TraceDataError.line(file: file, line: line, reason: "not valid JSON (expected \(expected))")
        }
        guard let dict = obj as? [String: Any] else {
            throw TraceDataError.line(file: file, line: line, reason: "expected a JSON object with \(expected), found \(describe(obj))")
        }
        return dict
    }

    /// A short name of a JSON value's type for messages ("a number", "an array", …).
    public static func describe(_ v: Any) -> String {
        if v is NSNull { return "null" }
        if v is String { return "a string" }
        if v is [Any] { return "an array" }
        if v is [String: Any] { return "an object" }
        if isBool(v) { return "a boolean" }
        if v is NSNumber { return "a number" }
        return "\(type(of: v))"
    }

    /// Foundation parses JSON `true`/`false` as a boolean NSNumber, which also casts to Int.
    public static func isBool(_ v: Any) -> Bool { String(describing: type(of: v)).contains("Boolean") }

    /// A string, or a number written as its decimal form (integers without ".0"); nil otherwise.
    public static func scalarString(_ v: Any) -> String? {
        if let s = v as? String { return s }
        if isBool(v) { return nil }
        if let n = v as? NSNumber {
            let d = n.doubleValue
            if d.rounded() == d && abs(d) < 9_007_199_254_740_992 { return String(Int64(d)) }
            return "\(d)"
        }
        return nil
    }

    /// Appends `s` as a JSON string literal (quotes, backslashes, control characters, U+2028 and
    /// U+2029 escaped; other characters written as UTF-8, as `json.dumps(…, ensure_ascii=False)`).
    static func appendString(_ s: String, to out: inout String) {
        appendJSONString(s, to: &out, escapeLineSeparators: true)
    }

    /// Writes lines (each followed by "\n") to `path` atomically (temporary file + rename).
    public static func write(lines: [String], to path: String) throws {
        var text = ""
        for l in lines { text += l; text += "\n" }
        do { try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw TraceDataError.file(file: path, reason: "cannot write the file (\(ioFailureReason(error)))")
        }
    }
}

// MARK: - Chat records

/// One supervised fine-tuning example in the chat-messages form, one JSON object per line of a
/// JSONL file:
///
///     {"messages":[{"role":"system","content":"…"},{"role":"user","content":"…"},{"role":"assistant","content":"<think>\n…\n</think>\n\n…"}]}
///
/// - `messages` (required): a non-empty array of objects with string `role` and `content`.
///   Roles are `system`, `user`, `assistant` or `tool`; a `system` message may only come first.
///   The usual trace record is an optional system message, the user's prompt and the assistant's
///   completion (reasoning in the trace template, then the answer).
/// - `id`, `source` (optional strings): the prompt's id and source tag, written after `messages`
///   when set. Other keys are ignored when reading.
///
/// Writing puts keys in the order above (`role` before `content`), escapes as
/// `json.dumps(ensure_ascii=False)` does, one record per line, and replaces the file atomically.
public struct ChatRecord: Equatable, Sendable {
    public struct Message: Equatable, Sendable {
        public var role: String
        public var content: String
        public init(role: String, content: String) { self.role = role; self.content = content }
    }

    /// Roles a record may hold.
    public static let roles: Set<String> = ["system", "user", "assistant", "tool"]

    public var messages: [Message]
    public var id: String?
    public var source: String?

    public init(messages: [Message], id: String? = nil, source: String? = nil) {
        self.messages = messages
        self.id = id
        self.source = source
    }

    /// A single-turn record: optional system message, the user's prompt, the assistant's reply.
    public init(system: String? = nil, user: String, assistant: String, id: String? = nil, source: String? = nil) {
        var m: [Message] = []
        if let system { m.append(Message(role: "system", content: system)) }
        m.append(Message(role: "user", content: user))
        m.append(Message(role: "assistant", content: assistant))
        self.init(messages: m, id: id, source: source)
    }

    /// The record as one JSON line (no trailing newline).
    public var jsonLine: String {
        var out = "{\"messages\":["
        for (i, m) in messages.enumerated() {
            if i > 0 { out += "," }
            out += "{\"role\":"
            TraceJSONL.appendString(m.role, to: &out)
            out += ",\"content\":"
            TraceJSONL.appendString(m.content, to: &out)
            out += "}"
        }
        out += "]"
        if let id { out += ",\"id\":"; TraceJSONL.appendString(id, to: &out) }
        if let source { out += ",\"source\":"; TraceJSONL.appendString(source, to: &out) }
        out += "}"
        return out
    }

    /// Parses one line; errors name `file` and `line` and say what was expected.
    public static func parse(line text: String, file: String, line: Int) throws -> ChatRecord {
        let expected = "\"messages\": [{\"role\": …, \"content\": …}, …]"
        let dict = try TraceJSONL.object(text, file: file, line: line, expected: expected)
        func fail(_ reason: String) -> TraceDataError { .line(file: file, line: line, reason: reason) }
        guard let raw = dict["messages"] else { throw fail("missing \"messages\" (expected \(expected))") }
        guard let list = raw as? [Any] else {
            throw fail("\"messages\" must be an array of {\"role\", \"content\"} objects, found \(TraceJSONL.describe(raw))")
        }
        guard !list.isEmpty else { throw fail("\"messages\" is empty (expected at least one message)") }
        var messages: [Message] = []
        for (i, item) in list.enumerated() {
            guard let m = item as? [String: Any] else {
                throw fail("messages[\(i)] must be an object with \"role\" and \"content\", found \(TraceJSONL.describe(item))")
            }
            guard let r = m["role"] else { throw fail("messages[\(i)] has no \"role\"") }
            guard let role = r as? String else { throw fail("messages[\(i)].role must be a string, found \(TraceJSONL.describe(r))") }
            guard roles.contains(role) else {
                throw fail("messages[\(i)].role is \"\(role)\" (expected one of system, user, assistant, tool)")
            }
            if role == "system" && i > 0 { throw fail("messages[\(i)] is a system message (only the first message may be one)") }
            guard let c = m["content"] else { throw fail("messages[\(i)] has no \"content\"") }
            guard let content = c as? String else {
                throw fail("messages[\(i)].content must be a string, found \(TraceJSONL.describe(c))")
            }
            messages.append(Message(role: role, content: content))
        }
        var record = ChatRecord(messages: messages)
        for key in ["id", "source"] {
            guard let v = dict[key], !(v is NSNull) else { continue }
            guard let s = v as? String else { throw fail("\"\(key)\" must be a string, found \(TraceJSONL.describe(v))") }
            if key == "id" { record.id = s } else { record.source = s }
        }
        return record
    }
}

/// Reading and writing JSONL files of `ChatRecord`s (format in `ChatRecord`'s documentation).
public enum ChatRecordFile {
    /// Every record of the file, in order. Blank lines are skipped (line numbers in errors still
    /// count them); a file with no records is an error.
    public static func read(path: String) throws -> [ChatRecord] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TraceDataError.file(file: path, reason: "cannot read the file")
        }
        return try read(data: data, path: path)
    }

    public static func read(data: Data, path: String) throws -> [ChatRecord] {
        let lines = try TraceJSONL.lines(data: data, path: path)
        guard !lines.isEmpty else { throw TraceDataError.file(file: path, reason: "the file holds no records (empty)") }
        return try lines.map { try ChatRecord.parse(line: $0.text, file: path, line: $0.line) }
    }

    /// Writes the records, one per line, replacing `path` atomically.
    public static func write(_ records: [ChatRecord], to path: String) throws {
        try TraceJSONL.write(lines: records.map(\.jsonLine), to: path)
    }
}

// MARK: - Prompt files

/// A prompt to sample traces for.
public struct TracePrompt: Equatable, Codable, Sendable {
    /// Unique within its file.
    public var id: String
    public var text: String
    /// The reference final answer, when known (a bare answer, or a solution ending in `#### …` or
    /// holding `\boxed{…}`: verifiers extract the answer from it).
    public var answer: String?
    /// A tag for statistics (the data set it came from: "gsm8k", "math", …).
    public var source: String?

    public init(id: String, text: String, answer: String? = nil, source: String? = nil) {
        self.id = id
        self.text = text
        self.answer = answer
        self.source = source
    }
}

/// Prompt files: JSONL, one object per line:
///
///     {"prompt": "What is 3/4 of 8?", "answer": "6", "id": "gsm8k-17", "source": "gsm8k"}
///
/// - `prompt` (required): a non-empty string.
/// - `answer` (optional): the reference answer, a string or a number (written as its decimal
///   form); `null` counts as absent.
/// - `id` (optional): a string or an integer, unique in the file; defaults to the line number.
/// - `source` (optional): a string tag used in statistics.
///
/// Other keys are ignored. Blank lines are skipped; errors name the file and the 1-based line.
public enum PromptFile {
    public static func read(path: String) throws -> [TracePrompt] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TraceDataError.file(file: path, reason: "cannot read the file")
        }
        return try read(data: data, path: path)
    }

    public static func read(data: Data, path: String) throws -> [TracePrompt] {
        let lines = try TraceJSONL.lines(data: data, path: path)
        guard !lines.isEmpty else { throw TraceDataError.file(file: path, reason: "the file holds no prompts (empty)") }
        var out: [TracePrompt] = []
        var seen: [String: Int] = [:]
        for (line, text) in lines {
            let p = try parse(line: text, file: path, line: line)
            if let first = seen[p.id] {
                throw TraceDataError.line(file: path, line: line, reason: "duplicate id \"\(p.id)\" (first used on line \(first))")
            }
            seen[p.id] = line
            out.append(p)
        }
        return out
    }

    public static func parse(line text: String, file: String, line: Int) throws -> TracePrompt {
        let expected = "\"prompt\" (and optional \"answer\", \"id\", \"source\")"
        let dict = try TraceJSONL.object(text, file: file, line: line, expected: expected)
        func fail(_ reason: String) -> TraceDataError { .line(file: file, line: line, reason: reason) }
        guard let p = dict["prompt"] else { throw fail("missing \"prompt\" (expected a JSON object with \(expected))") }
        guard let prompt = p as? String else { throw fail("\"prompt\" must be a string, found \(TraceJSONL.describe(p))") }
        guard !prompt.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw fail("\"prompt\" is empty") }
        var answer: String?
        if let a = dict["answer"], !(a is NSNull) {
            guard let s = TraceJSONL.scalarString(a) else {
                throw fail("\"answer\" must be a string or a number, found \(TraceJSONL.describe(a))")
            }
            answer = s
        }
        var id = String(line)
        if let i = dict["id"], !(i is NSNull) {
            guard let s = TraceJSONL.scalarString(i), i is String || !s.contains(".") else {
                throw fail("\"id\" must be a string or an integer, found \(TraceJSONL.describe(i))")
            }
            id = s
        }
        var source: String?
        if let s = dict["source"], !(s is NSNull) {
            guard let str = s as? String else { throw fail("\"source\" must be a string, found \(TraceJSONL.describe(s))") }
            source = str
        }
        return TracePrompt(id: id, text: prompt, answer: answer, source: source)
    }

    /// One prompt as a JSON line (keys prompt, answer, id, source; absent ones left out).
    public static func jsonLine(_ p: TracePrompt) -> String {
        var out = "{\"prompt\":"
        TraceJSONL.appendString(p.text, to: &out)
        if let a = p.answer { out += ",\"answer\":"; TraceJSONL.appendString(a, to: &out) }
        out += ",\"id\":"; TraceJSONL.appendString(p.id, to: &out)
        if let s = p.source { out += ",\"source\":"; TraceJSONL.appendString(s, to: &out) }
        return out + "}"
    }
}
