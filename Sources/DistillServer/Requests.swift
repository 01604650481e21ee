import DistillModels
import Foundation

/// The parameters `/v1/chat/completions` and `/v1/completions` share, checked.
struct CommonParameters {
    var model: String?
    var n = 1
    /// nil: the endpoint's default (chat: the rest of the context; completions: 16).
    var maxTokens: Int?
    var sampling = SamplingParameters()
    var stop: [String] = []
    var stream = false
    var includeUsage = false
    /// Whether log-probabilities are wanted, and how many alternatives per token.
    var logprobs = false
    var topLogprobs = 0
    var ignoreEOS = false
    var skipSpecialTokens = true

    /// Most alternatives per token a request may ask for (OpenAI's limit).
    static let maxTopLogprobs = 20
    static let maxN = 128

    init(_ f: JSONFields, chat: Bool) throws {
        model = try f.string("model")
        if let n = try f.int("n") {
            guard n >= 1 else { throw f.invalid("n", "must be at least 1, got \(n)") }
            guard n <= Self.maxN else { throw f.invalid("n", "must be at most \(Self.maxN), got \(n)") }
            self.n = n
        }
        if let b = try f.int("best_of"), b != n { throw f.invalid("best_of", "is not supported (only best_of = n)") }
        for key in ["max_completion_tokens", "max_tokens"] {
            guard let m = try f.int(key) else { continue }
            guard m >= 1 else { throw f.invalid(key, "must be at least 1, got \(m)") }
            maxTokens = m
            break
        }
        if let t = try f.double("temperature") {
            guard t >= 0, t.isFinite else { throw f.invalid("temperature", "must be at least 0, got \(t)") }
            sampling.temperature = Float(t)
        }
        if let p = try f.double("top_p") {
            guard p > 0, p <= 1 else { throw f.invalid("top_p", "must be in (0, 1], got \(p)") }
            sampling.topP = Float(p)
        }
        if let k = try f.int("top_k") {
            // vLLM's extension: -1 or 0 turn it off.
            guard k >= -1 else { throw f.invalid("top_k", "must be -1 (off) or at least 0, got \(k)") }
            sampling.topK = max(0, k)
        }
        if let m = try f.double("min_p") {
            guard m >= 0, m <= 1 else { throw f.invalid("min_p", "must be in [0, 1], got \(m)") }
            sampling.minP = Float(m)
        }
        if let r = try f.double("repetition_penalty") {
            guard r > 0, r.isFinite else { throw f.invalid("repetition_penalty", "must be > 0, got \(r)") }
            sampling.repetitionPenalty = Float(r)
        }
        for key in ["presence_penalty", "frequency_penalty"] {
            if let v = try f.double(key), v != 0 { throw f.invalid(key, "is not supported (only 0)") }
        }
        if let bias = f["logit_bias"] {
            guard case .object(let o) = bias else { throw f.typeError("logit_bias", "an object", bias) }
            if !o.isEmpty { throw f.invalid("logit_bias", "is not supported") }
        }
        if let seed = try f.int("seed") {
            sampling.seed = UInt64(bitPattern: Int64(seed))
        } else {
            sampling.seed = UInt64.random(in: 0...UInt64.max)
        }
        stop = (try f.strings("stop") ?? []).filter { !$0.isEmpty }
        stream = try f.bool("stream") ?? false
        if let options = try f.object("stream_options") {
            includeUsage = try options.bool("include_usage") ?? false
        }
        ignoreEOS = try f.bool("ignore_eos") ?? false
        skipSpecialTokens = try f.bool("skip_special_tokens") ?? true
        if chat {
            logprobs = try f.bool("logprobs") ?? false
            if let k = try f.int("top_logprobs") {
                guard k >= 0, k <= Self.maxTopLogprobs else {
                    throw f.invalid("top_logprobs", "must be in [0, \(Self.maxTopLogprobs)], got \(k)")
                }
                guard logprobs || k == 0 else { throw f.invalid("top_logprobs", "needs 'logprobs': true") }
                topLogprobs = k
            }
        } else if let k = try f.int("logprobs") {
            guard k >= 0, k <= Self.maxTopLogprobs else {
                throw f.invalid("logprobs", "must be in [0, \(Self.maxTopLogprobs)], got \(k)")
            }
            logprobs = true
            topLogprobs = k
        }
        if let format = try f.object("response_format"), let type = try format.string("type"), type != "text" {
            throw OpenAIError.invalidRequest("'response_format.type' \(type) is not supported (only text)", param: "response_format")
        }
    }
}

/// A checked `/v1/chat/completions` request.
struct ChatRequest {
    var common: CommonParameters
    var messages: [ChatMessage]
    var addGenerationPrompt = true
    /// Extra template variables (`chat_template_kwargs`, e.g. `enable_thinking`).
    var templateVariables: [String: JinjaValue] = [:]

    init(_ body: JSONValue) throws {
        let f = try JSONFields(body)
        common = try CommonParameters(f, chat: true)
        guard let m = f["messages"] else { throw OpenAIError.invalidRequest("'messages' is required", param: "messages") }
        guard case .array(let list) = m else { throw f.typeError("messages", "an array", m) }
        guard !list.isEmpty else { throw OpenAIError.invalidRequest("'messages' must not be empty", param: "messages") }
        messages = try list.enumerated().map { i, v in try ChatRequest.message(v, path: "messages[\(i)]") }
        if let tools = f["tools"], tools != .array([]) {
            throw OpenAIError.invalidRequest("'tools' are not supported by this server", param: "tools")
        }
        addGenerationPrompt = try f.bool("add_generation_prompt") ?? true
        if let kwargs = try f.object("chat_template_kwargs") {
            for (k, v) in kwargs.fields { templateVariables[k] = v.jinja }
        }
    }

    /// One message: `role`, `content` as a string, null or a list of text parts; other keys
    /// (`name`, `tool_calls`, …) go to the template as they are.
    static func message(_ v: JSONValue, path: String) throws -> ChatMessage {
        let f = try JSONFields(v, path: path)
        guard let role = try f.string("role") else {
            throw OpenAIError.invalidRequest("'\(path).role' is required", param: "\(path).role")
        }
        var content = ""
        var extras: [String: JinjaValue] = [:]
        switch f["content"] {
        case nil: extras["content"] = JinjaValue.none
        case .string(let s)?: content = s
        case .array(let parts)?:
            for (k, part) in parts.enumerated() {
                let p = try JSONFields(part, path: "\(path).content[\(k)]")
                let type = try p.string("type") ?? "text"
                guard type == "text" else {
                    throw OpenAIError.invalidRequest("'\(path).content[\(k)].type' \(type) is not supported (only text)",
                                                     param: "\(path).content")
                }
                guard let text = try p.string("text") else {
                    throw OpenAIError.invalidRequest("'\(path).content[\(k)].text' is required", param: "\(path).content")
                }
                content += text
            }
        case let other?: throw f.typeError("content", "a string, an array of text parts or null", other)
        }
        for (k, value) in f.fields where k != "role" && k != "content" { extras[k] = value.jinja }
        return ChatMessage(role: role, content: content, extras: extras)
    }
}

/// A checked `/v1/completions` request: one prompt or several (text or token ids).
struct CompletionRequest {
    enum Prompt { case text(String), tokens([Int]) }
    var common: CommonParameters
    var prompts: [Prompt]

    init(_ body: JSONValue) throws {
        let f = try JSONFields(body)
        common = try CommonParameters(f, chat: false)
        if try f.bool("echo") == true { throw f.invalid("echo", "is not supported") }
        if let suffix = try f.string("suffix"), !suffix.isEmpty { throw f.invalid("suffix", "is not supported") }
        guard let p = f["prompt"] else { throw OpenAIError.invalidRequest("'prompt' is required", param: "prompt") }
        func tokens(_ a: [JSONValue]) -> [Int]? {
            var ids: [Int] = []
            for e in a { guard case .int(let i) = e else { return nil }; ids.append(i) }
            return ids
        }
        let bad = OpenAIError.invalidRequest(
            "'prompt' must be a string, an array of strings, an array of token ids or an array of token-id arrays", param: "prompt")
        switch p {
        case .string(let s): prompts = [.text(s)]
        case .array(let a) where a.isEmpty: throw OpenAIError.invalidRequest("'prompt' must not be empty", param: "prompt")
        case .array(let a):
            if let ids = tokens(a) { prompts = [.tokens(ids)]; break }
            prompts = try a.map { e in
                switch e {
                case .string(let s): return .text(s)
                case .array(let inner): if let ids = tokens(inner) { return .tokens(ids) }; throw bad
                default: throw bad
                }
            }
        default: throw bad
        }
    }
}

/// The request checks of `/v1/chat/completions` and `/v1/completions` without a model or a
/// server: what a body must be before generation starts (the fuzz harness drives it).
public enum OpenAIRequestParser {
    /// Throws the error (an OpenAI 4xx) the chat endpoint answers a malformed body with.
    public static func checkChat(_ body: [UInt8]) throws { _ = try ChatRequest(try JSONValue.parse(body)) }
    /// Throws the error (an OpenAI 4xx) the completions endpoint answers a malformed body with.
    public static func checkCompletion(_ body: [UInt8]) throws { _ = try CompletionRequest(try JSONValue.parse(body)) }
}
