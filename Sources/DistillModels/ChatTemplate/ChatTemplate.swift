import Foundation

/// One message of a conversation, as a Hugging Face chat template sees it: a dict with `role`,
/// `content` and any extra keys (`tool_calls`, `name`, …).
public struct ChatMessage {
    public var role: String
    public var content: String
    /// Extra keys of the message dict, added after `role` and `content` in key order. A key named
    /// `content` or `role` here replaces that field (e.g. `"content": nil` for an assistant message
    /// that only carries `tool_calls`).
    public var extras: [String: JinjaValue]

    public init(role: String, content: String, extras: [String: JinjaValue] = [:]) {
        self.role = role
        self.content = content
        self.extras = extras
    }

    /// The message as the template sees it (a dict).
    public var templateValue: JinjaValue {
        var d = JinjaDict([("role", .string(role)), ("content", .string(content))])
        for key in extras.keys.sorted() { d[key] = extras[key] }
        return .dict(d)
    }
}

/// A compiled Hugging Face chat template (the `chat_template` of `tokenizer_config.json` or
/// `tokenizer.chat_template` of a GGUF file). Rendering equals transformers'
/// `tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=…)`: jinja2 with
/// `trim_blocks` and `lstrip_blocks`, the loop-control extension (`break`, `continue`),
/// `{% generation %}` blocks, and the globals and filter transformers adds (`raise_exception`,
/// `strftime_now`, and `tojson` with `ensure_ascii=False`, `indent`, `separators`, `sort_keys`).
public struct ChatTemplate {
    public let source: String
    /// Name used in error messages (a path, or "tokenizer.chat_template").
    public let file: String
    let body: [Stmt]
    /// The clock `strftime_now` reads (local time zone, as Python's `datetime.now()`).
    public var now: () -> Date = { Date() }

    /// Compiles `source`; throws a `TemplateError` of kind `.syntax` with line and column.
    public init(source: String, file: String = "chat template") throws {
        self.source = source
        self.file = file
        self.body = try JinjaParser.parse(source: source, file: file)
    }

    /// Reads and compiles a template file (`.jinja`). Unreadable files throw `FileError`.
    public init(contentsOf url: URL) throws {
        let text: String
        do {
            text = try String(contentsOf: url, encoding: .utf8)
        } catch {
            throw FileError(file: url.path, "cannot read the chat template: \(ioFailureReason(error))")
        }
        try self.init(source: text, file: url.path)
    }

    /// Renders a conversation. The template sees the variables transformers passes: `messages`,
    /// `tools` (none), `documents` (none), `add_generation_prompt`, `bos_token` and `eos_token`
    /// (left undefined when nil, as for a tokenizer without that special token), then `extra`
    /// (which wins over the others: `tools`, `date_string`, `enable_thinking`, …).
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool, bosToken: String?, eosToken: String?,
                       extra: [String: JinjaValue] = [:]) throws -> String {
        var context: [String: JinjaValue] = [
            "messages": .array(messages.map(\.templateValue)),
            "tools": .none,
            "documents": .none,
            "add_generation_prompt": .bool(addGenerationPrompt),
        ]
        if let b = bosToken { context["bos_token"] = .string(b) }
        if let e = eosToken { context["eos_token"] = .string(e) }
        for (k, v) in extra { context[k] = v }
        return try render(context: context)
    }

    /// Renders with exactly the variables given (messages as template values).
    public func render(context: [String: JinjaValue]) throws -> String {
        try JinjaInterpreter(file: file, now: now).render(body, context: context)
    }
}

extension ChatTemplate {
    /// The chat template stored in a GGUF file (`tokenizer.chat_template`).
    public init(gguf: GGUFFile) throws {
        guard let source = try gguf.string("tokenizer.chat_template") else {
            throw FileError(file: gguf.path, location: "tokenizer.chat_template", "the file has no chat template")
        }
        try self.init(source: source, file: gguf.path + ": tokenizer.chat_template")
    }

    /// The BOS and EOS token strings of a GGUF tokenizer (`tokenizer.ggml.bos_token_id` /
    /// `eos_token_id` looked up in `tokenizer.ggml.tokens`), as a template's `bos_token` and
    /// `eos_token`; nil where the file names none.
    public static func specialTokens(gguf: GGUFFile) throws -> (bos: String?, eos: String?) {
        guard let tokens = try gguf.strings("tokenizer.ggml.tokens") else { return (nil, nil) }
        func token(_ key: String) throws -> String? {
            guard let id = try gguf.int(key) else { return nil }
            guard id >= 0 && id < tokens.count else {
                throw FileError(file: gguf.path, location: key, "token id \(id) is outside the vocabulary (\(tokens.count) tokens)")
            }
            return tokens[id]
        }
        return (try token("tokenizer.ggml.bos_token_id"), try token("tokenizer.ggml.eos_token_id"))
    }
}
