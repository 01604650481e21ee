import DistillData
import DistillModels
import Foundation

/// FNV-1a 64 over bytes (offset basis 0xcbf29ce484222325, prime 0x100000001b3): the hash of data
/// files in logit cache headers and of chunks in the cache.
public struct FNV1a64 {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        var h = value
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        value = h
    }

    public mutating func update(_ data: Data) { data.withUnsafeBytes { update($0) } }

    public static func hash(_ data: Data) -> UInt64 { var h = FNV1a64(); h.update(data); return h.value }

    /// 16 lowercase hex digits.
    public static func hex(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}

/// One example of a JSONL data file: plain text, or chat messages rendered with a chat template.
public enum TextExample: Equatable {
    case text(String)
    case messages([(role: String, content: String)])

    public static func == (a: TextExample, b: TextExample) -> Bool {
        switch (a, b) {
        case let (.text(x), .text(y)): return x == y
        case let (.messages(x), .messages(y)): return x.map(\.role) == y.map(\.role) && x.map(\.content) == y.map(\.content)
        default: return false
        }
    }
}

/// A JSONL data file: one JSON object per line, `{"text": "…"}` or
/// `{"messages": [{"role": "…", "content": "…"}, …]}`. Blank lines are skipped (line numbers in
/// errors still count them). Bad JSON, a line that is not an object, a missing or non-string
/// "text", malformed messages, an empty file: `TeacherError.data` naming the file and line.
public struct TextDataFile {
    public let path: String
    /// FNV-1a 64 of the file's bytes.
    public let hash: UInt64
    /// The examples, with their 1-based line numbers.
    public let examples: [(line: Int, example: TextExample)]
    /// Each example's `"source"` string, when its line has one (routing among several teachers).
    public let sources: [String?]

    public init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TeacherError.data(file: path, line: 0, reason: "cannot read the file")
        }
        try self.init(data: data, path: path)
    }

    public init(data: Data, path: String) throws {
        self.path = path
        hash = FNV1a64.hash(data)
        // A line's trailing CR is JSON whitespace, so dropping it does not change what it parses to.
        let out = try JSONLines.lines(in: data, carriageReturnsAreBlank: true).map { line, bytes in
            (line, try Self.parse(Data(bytes), file: path, line: line))
        }
        guard !out.isEmpty else { throw TeacherError.data(file: path, line: 0, reason: "the file holds no examples (empty)") }
        examples = out.map { ($0.0, $0.1.example) }
        sources = out.map { $0.1.source }
    }

    static func parse(_ data: Data, file: String, line: Int) throws -> (example: TextExample, source: String?) {
        let obj: Any
        do { obj = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) } catch {
            throw TeacherError.data(file: file, line: line, reason: "not valid JSON")
        }
        guard let dict = obj as? [String: Any] else {
            throw TeacherError.data(file: file, line: line, reason: "expected a JSON object with \"text\" or \"messages\"")
        }
        var source: String?
        if let v = dict["source"], !(v is NSNull) {
            guard let s = v as? String else { throw TeacherError.data(file: file, line: line, reason: "\"source\" is not a string") }
            source = s
        }
        return (try example(dict, file: file, line: line), source)
    }

    static func example(_ dict: [String: Any], file: String, line: Int) throws -> TextExample {
        if let text = dict["text"] {
            guard let s = text as? String else { throw TeacherError.data(file: file, line: line, reason: "\"text\" is not a string") }
            return .text(s)
        }
        if let messages = dict["messages"] {
            guard let list = messages as? [Any], !list.isEmpty else {
                throw TeacherError.data(file: file, line: line, reason: "\"messages\" is not a non-empty array")
            }
            var out: [(role: String, content: String)] = []
            for (i, m) in list.enumerated() {
                guard let d = m as? [String: Any], let role = d["role"] as? String, let content = d["content"] as? String else {
                    throw TeacherError.data(file: file, line: line, reason: "messages[\(i)] needs string \"role\" and \"content\"")
                }
                out.append((role, content))
            }
            return .messages(out)
        }
        throw TeacherError.data(file: file, line: line, reason: "missing \"text\" (or \"messages\")")
    }

    /// Token ids of every example (`sequences(…)` without the loss masks).
    public func tokenize(with tokenizer: Tokenizer, chatTemplate: ChatTemplate?, maxLength: Int? = nil) throws -> [[Int]] {
        try sequences(with: tokenizer, chatTemplate: chatTemplate, maxLength: maxLength).map(\.ids)
    }

    /// Every example as token ids with a loss mask:
    ///
    /// - text: encoded with special tokens (BOS/EOS as the tokenizer adds them); every token after
    ///   the first is a target;
    /// - messages: rendered with the chat template (no generation prompt) and encoded without adding
    ///   special tokens (the template writes them), turn by turn: the text before each assistant
    ///   message's content (up to and including the generation prompt) and each assistant part
    ///   (content and the template's end-of-turn text) are encoded separately, so the assistant's
    ///   tokens are known exactly. With `assistantOnly` only those are targets (SFT on responses);
    ///   otherwise every token after the first. When the template's end of an assistant turn holds
    ///   none of the tokenizer's EOS ids, an EOS id is appended to the last assistant part, so a
    ///   student learns to stop. Templates that rewrite earlier turns (so that a shorter
    ///   conversation's text is not a prefix of the longer one's) are encoded whole; they cannot
    ///   give an assistant-only mask (an error with `assistantOnly`).
    ///
    /// Cut to `maxLength` tokens when given. An example giving no tokens is an error naming its line.
    public func sequences(with tokenizer: Tokenizer, chatTemplate: ChatTemplate?, maxLength: Int? = nil,
                          assistantOnly: Bool = false) throws -> [TokenSequence] {
        try encoded(with: tokenizer, chatTemplate: chatTemplate, maxLength: maxLength, assistantOnly: assistantOnly).sequences
    }

    /// `sequences`, and the number of conversations whose reasoning the chat template would have
    /// dropped and that were rendered keeping it (see `encodeConversation`): callers say so.
    public func encoded(with tokenizer: Tokenizer, chatTemplate: ChatTemplate?, maxLength: Int? = nil,
                        assistantOnly: Bool = false) throws -> (sequences: [TokenSequence], keptReasoning: Int) {
        var keptReasoning = 0
        let sequences: [TokenSequence] = try examples.map { line, example in
            var ids: [Int], mask: [Bool]?
            switch example {
            case .text(let s):
                ids = tokenizer.encode(s)
                mask = nil
            case .messages(let ms):
                guard let chatTemplate else {
                    throw TeacherError.data(file: path, line: line, reason: "\"messages\" need a chat template and the model has none")
                }
                let conversation = ms.map { ChatMessage(role: $0.role, content: $0.content) }
                if let kept = try Self.encodeKeepingReasoning(conversation, tokenizer: tokenizer, template: chatTemplate,
                                                              assistantOnly: assistantOnly, file: path, line: line) {
                    (ids, mask) = kept
                    keptReasoning += 1
                } else {
                    (ids, mask) = try Self.encodeConversation(conversation, tokenizer: tokenizer, template: chatTemplate,
                                                              assistantOnly: assistantOnly, file: path, line: line)
                }
            }
            if let maxLength, ids.count > maxLength {
                ids = Array(ids.prefix(maxLength))
                mask = mask.map { Array($0.prefix(maxLength)) }
            }
            guard !ids.isEmpty else { throw TeacherError.data(file: path, line: line, reason: "the example gives no tokens") }
            if let mask, assistantOnly, !mask.dropFirst().contains(true) {
                throw TeacherError.data(file: path, line: line,
                                        reason: "no assistant token to learn from (no assistant message, or cut away by max_length \(maxLength.map(String.init) ?? "-"))")
            }
            return TokenSequence(ids, lossMask: mask)
        }
        return (sequences, keptReasoning)
    }

    /// The tags of reasoning in assistant messages (`<think>…</think>`, as `distill traces` writes them).
    public static let reasoningTags = (open: "<think>", close: "</think>")

    /// Conversations whose last assistant message holds reasoning (`…</think>` answer) that the
    /// chat template drops (DeepSeek-R1-Distill and Qwen3 templates keep only what follows
    /// `</think>` of assistant turns): rendered so that the reasoning stays — the template's
    /// rendering of the turns before it with the generation prompt, then the message as written
    /// (without its opening tag when the generation prompt already opens the think block), then
    /// the template's end-of-turn text. Only that last assistant turn is a target with
    /// `assistantOnly`. nil when the template keeps the reasoning (or there is none).
    static func encodeKeepingReasoning(_ ms: [ChatMessage], tokenizer: Tokenizer, template: ChatTemplate, assistantOnly: Bool,
                                       file: String, line: Int) throws -> ([Int], [Bool]?)? {
        let (open, close) = reasoningTags
        guard let last = ms.lastIndex(where: { $0.role == "assistant" }), let closeAt = ms[last].content.range(of: close) else { return nil }
        let reasoning = ms[last].content[..<closeAt.lowerBound].replacingOccurrences(of: open, with: "")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        guard !reasoning.isEmpty else { return nil }
        func render(_ m: [ChatMessage], _ prompt: Bool) throws -> String {
            do {
                return try template.render(messages: m, addGenerationPrompt: prompt, bosToken: tokenizer.bosToken,
                                           eosToken: tokenizer.eosToken)
            } catch { throw TeacherError.data(file: file, line: line, reason: "chat template: \(error)") }
        }
        let through = try render(Array(ms[...last]), false)
        if through.contains(reasoning) { return nil }
        guard let endOfTurn = try assistantTurnEnd(after: Array(ms[..<last]), render: { try render($0, false) }) else { return nil }
        let prompt = try render(Array(ms[..<last]), true)
        var content = Substring(ms[last].content)
        if prompt.trimmingCharacters(in: .whitespacesAndNewlines).hasSuffix(open) {
            let body = content.drop(while: \.isWhitespace)
            if body.hasPrefix(open) {
                content = body.dropFirst(open.count)
                if content.hasPrefix("\n") && prompt.hasSuffix("\n") { content = content.dropFirst() }
            }
        }
        var ids = tokenizer.encode(prompt, addSpecialTokens: false)
        var mask = [Bool](repeating: !assistantOnly, count: ids.count)
        let part = tokenizer.encode(String(content) + endOfTurn, addSpecialTokens: false)
        ids += part
        mask += [Bool](repeating: true, count: part.count)
        if let eos = tokenizer.eosTokenIds.first, !part.contains(where: { tokenizer.eosTokenIds.contains($0) }) {
            ids.append(eos)
            mask.append(true)
        }
        if !mask.isEmpty { mask[0] = false }
        return (ids, assistantOnly ? mask : nil)
    }

    /// The text a chat template writes after an assistant message that follows `history` (its
    /// end of turn), found by rendering a probe message; nil when the template does not write the
    /// message's content as it is. `render` renders messages without a generation prompt.
    public static func assistantTurnEnd(after history: [ChatMessage], render: ([ChatMessage]) throws -> String) throws -> String? {
        let probe = "\u{1F}probe\u{1F}"
        let probed = try render(history + [ChatMessage(role: "assistant", content: probe)])
        guard let p = probed.range(of: probe, options: .backwards) else { return nil }
        return String(probed[p.upperBound...])
    }

    /// Ids and loss mask of one conversation (see `sequences`).
    static func encodeConversation(_ ms: [ChatMessage], tokenizer: Tokenizer, template: ChatTemplate, assistantOnly: Bool,
                                   file: String, line: Int) throws -> ([Int], [Bool]?) {
        func render(_ m: ArraySlice<ChatMessage>, _ prompt: Bool) throws -> String {
            do {
                return try template.render(messages: Array(m), addGenerationPrompt: prompt, bosToken: tokenizer.bosToken,
                                           eosToken: tokenizer.eosToken)
            } catch { throw TeacherError.data(file: file, line: line, reason: "chat template: \(error)") }
        }
        let full = try render(ms[...], false)
        // Character spans (as UTF-8 byte offsets into `full`) of the assistant parts.
        var spans: [(Int, Int)] = []
        let fullBytes = Array(full.utf8)
        var prefixHolds = true
        for (i, m) in ms.enumerated() where m.role == "assistant" {
            let before = Array(try render(ms[..<i], true).utf8), through = Array(try render(ms[...i], false).utf8)
            guard before.count <= through.count, through.count <= fullBytes.count,
                  through[..<before.count].elementsEqual(before), fullBytes[..<through.count].elementsEqual(through),
                  spans.last.map({ $0.1 <= before.count }) ?? true else { prefixHolds = false; break }
            spans.append((before.count, through.count))
        }
        guard prefixHolds else {
            if assistantOnly {
                throw TeacherError.data(file: file, line: line,
                                        reason: "the chat template rewrites earlier turns, so the assistant's tokens cannot be located (use loss on all tokens)")
            }
            return (tokenizer.encode(full, addSpecialTokens: false), nil)
        }
        var ids: [Int] = [], mask: [Bool] = []
        func encode(_ from: Int, _ to: Int, counted: Bool) {
            guard to > from else { return }
            let piece = tokenizer.encode(String(decoding: fullBytes[from..<to], as: UTF8.self), addSpecialTokens: false)
            ids += piece
            mask += [Bool](repeating: counted, count: piece.count)
        }
        var at = 0
        for (k, (a, b)) in spans.enumerated() {
            encode(at, a, counted: !assistantOnly)
            let startCount = ids.count
            encode(a, b, counted: true)
            if k == spans.count - 1, let eos = tokenizer.eosTokenIds.first,
               !ids[startCount...].contains(where: { tokenizer.eosTokenIds.contains($0) }) {
                ids.append(eos)
                mask.append(true)
            }
            at = b
        }
        encode(at, fullBytes.count, counted: !assistantOnly)
        if !mask.isEmpty { mask[0] = false }
        return (ids, assistantOnly ? mask : nil)
    }
}
