import Foundation

// The teacher interface: a prompt and sampling settings in, N completions (with optional token
// log-probabilities) out. Two kinds implement it: `HTTPTeacherClient` (an OpenAI-compatible
// server: vLLM, SGLang, llama.cpp server, DeepSeek API) and `LocalTeacherClient` (a
// `PretrainedModel` in this process).

/// One chat turn.
public struct TeacherMessage: Codable, Sendable, Equatable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }

    public static func system(_ content: String) -> TeacherMessage { TeacherMessage(role: "system", content: content) }
    public static func user(_ content: String) -> TeacherMessage { TeacherMessage(role: "user", content: content) }
    public static func assistant(_ content: String) -> TeacherMessage { TeacherMessage(role: "assistant", content: content) }
}

/// What the teacher continues: chat messages (`/v1/chat/completions`, the model's chat template)
/// or raw text (`/v1/completions`, no template).
public enum TeacherPrompt: Sendable, Equatable {
    case chat([TeacherMessage])
    case text(String)
}

/// Sampling settings of one request. Names follow the OpenAI API.
public struct TeacherSampling: Sendable, Equatable, Codable {
    /// Completions wanted for the prompt.
    public var n: Int
    public var temperature: Double
    public var topP: Double
    public var maxTokens: Int
    public var stop: [String]
    /// nil: the server's (or, locally, seed 0).
    public var seed: UInt64?
    /// Ask for the log-probability of each generated token.
    public var logprobs: Bool
    /// Alternatives per generated token (0: none); implies `logprobs`.
    public var topLogprobs: Int

    public init(n: Int = 1, temperature: Double = 1, topP: Double = 1, maxTokens: Int = 512, stop: [String] = [],
                seed: UInt64? = nil, logprobs: Bool = false, topLogprobs: Int = 0) {
        self.n = n
        self.temperature = temperature
        self.topP = topP
        self.maxTokens = maxTokens
        self.stop = stop
        self.seed = seed
        self.logprobs = logprobs
        self.topLogprobs = topLogprobs
    }

    /// Whether log-probabilities are asked for at all.
    public var wantsLogprobs: Bool { logprobs || topLogprobs > 0 }

    /// Checks ranges; messages name the field as the OpenAI API does.
    public func validate() throws {
        func bad(_ m: String) -> TeacherClientError { .invalidRequest(m) }
        guard n >= 1 else { throw bad("n must be ≥ 1, got \(n)") }
        guard temperature >= 0, temperature.isFinite else { throw bad("temperature must be ≥ 0, got \(temperature)") }
        guard topP > 0, topP <= 1 else { throw bad("top_p must be in (0, 1], got \(topP)") }
        guard maxTokens >= 1 else { throw bad("max_tokens must be ≥ 1, got \(maxTokens)") }
        guard topLogprobs >= 0 else { throw bad("top_logprobs must be ≥ 0, got \(topLogprobs)") }
    }
}

/// Why a completion stopped. Servers add their own reasons (vLLM's "abort"), kept as `.other`.
public enum TeacherFinishReason: Sendable, Equatable, Hashable, Codable {
    /// End of sequence or a stop string.
    case stop
    /// `max_tokens` reached.
    case length
    case contentFilter
    case other(String)

    public init(rawValue: String) {
        switch rawValue {
        case "stop", "eos", "stop_string": self = .stop
        case "length": self = .length
        case "content_filter": self = .contentFilter
        default: self = .other(rawValue)
        }
    }

    public var rawValue: String {
        switch self {
        case .stop: return "stop"
        case .length: return "length"
        case .contentFilter: return "content_filter"
        case .other(let s): return s
        }
    }

    public init(from decoder: Decoder) throws { self.init(rawValue: try decoder.singleValueContainer().decode(String.self)) }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

/// One of the most likely tokens at a position.
public struct TopLogprob: Sendable, Equatable, Codable {
    public var token: String
    public var logprob: Double
    /// The token's bytes when the server gives them (OpenAI's `bytes`: the exact UTF-8 bytes, also
    /// for a token that is part of a character).
    public var bytes: [UInt8]?

    public init(token: String, logprob: Double, bytes: [UInt8]? = nil) {
        self.token = token
        self.logprob = logprob
        self.bytes = bytes
    }
}

/// A generated token, its log-probability and the alternatives (most likely first).
public struct TokenLogprob: Sendable, Equatable, Codable {
    public var token: String
    /// -infinity where the server gave null.
    public var logprob: Double
    /// The token's bytes when the server gives them.
    public var bytes: [UInt8]?
    public var top: [TopLogprob]

    public init(token: String, logprob: Double, bytes: [UInt8]? = nil, top: [TopLogprob] = []) {
        self.token = token
        self.logprob = logprob
        self.bytes = bytes
        self.top = top
    }
}

/// One choice of a response.
public struct TeacherCompletion: Sendable, Equatable {
    /// The choice's index among the request's n.
    public var index: Int
    public var text: String
    /// Separate reasoning text where the server splits it off (DeepSeek's `reasoning_content`,
    /// vLLM's `reasoning`).
    public var reasoning: String?
    /// nil when the server did not say.
    public var finishReason: TeacherFinishReason?
    /// Per generated token, when asked for and given.
    public var logprobs: [TokenLogprob]?
    /// Why the server's log-probabilities could not be read (then `logprobs` is nil; the text
    /// stays a candidate).
    public var logprobsProblem: String?

    public init(index: Int, text: String, reasoning: String? = nil, finishReason: TeacherFinishReason?,
                logprobs: [TokenLogprob]? = nil) {
        self.index = index
        self.text = text
        self.reasoning = reasoning
        self.finishReason = finishReason
        self.logprobs = logprobs
    }
}

/// Token counts as the server reports them.
public struct TeacherUsage: Sendable, Equatable, Codable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int

    public init(promptTokens: Int, completionTokens: Int, totalTokens: Int? = nil) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.totalTokens = totalTokens ?? promptTokens + completionTokens
    }

    static func + (a: TeacherUsage, b: TeacherUsage) -> TeacherUsage {
        TeacherUsage(promptTokens: a.promptTokens + b.promptTokens, completionTokens: a.completionTokens + b.completionTokens,
                     totalTokens: a.totalTokens + b.totalTokens)
    }
}

/// The completions of one prompt.
public struct TeacherResponse: Sendable, Equatable {
    /// The model that answered, as the server names it.
    public var model: String
    /// Ordered by `index`.
    public var completions: [TeacherCompletion]
    public var usage: TeacherUsage?

    public init(model: String, completions: [TeacherCompletion], usage: TeacherUsage? = nil) {
        self.model = model
        self.completions = completions
        self.usage = usage
    }
}

/// A teacher: a prompt and sampling settings in, `sampling.n` completions out — or fewer (at
/// least one) from a server that ignores `n` (llama.cpp's, Ollama's): the caller asks again for
/// the rest.
public protocol TeacherClient: Sendable {
    /// The model's name (server model id or local path), recorded with generated data.
    var modelName: String { get }

    func complete(_ prompt: TeacherPrompt, sampling: TeacherSampling) async throws -> TeacherResponse
}

extension TeacherClient {
    public func complete(messages: [TeacherMessage], sampling: TeacherSampling = TeacherSampling()) async throws -> TeacherResponse {
        try await complete(.chat(messages), sampling: sampling)
    }

    public func complete(text: String, sampling: TeacherSampling = TeacherSampling()) async throws -> TeacherResponse {
        try await complete(.text(text), sampling: sampling)
    }
}

/// Errors of teacher clients; each says what went wrong where, and what the server said.
public enum TeacherClientError: Error, Equatable, CustomStringConvertible {
    case invalidConfiguration(String)
    case invalidRequest(String)
    /// The configuration names an environment variable for the API key that is unset or empty.
    case missingAPIKey(variable: String)
    /// A 4xx other than 429 (not retried): the request is wrong, the key refused, the model unknown.
    case httpStatus(url: String, status: Int, message: String)
    /// A transient failure (429, 5xx): retried; surfaces inside `retriesExhausted`.
    case transientStatus(url: String, status: Int, message: String)
    /// No reply within the per-request timeout (retried).
    case timeout(url: String, seconds: Double)
    /// Connection refused, reset, closed (retried).
    case connection(url: String, message: String)
    /// The server answered 200 with something that is not the expected JSON (not retried).
    case malformedResponse(url: String, reason: String, body: String)
    /// Every attempt failed with a transient error; `last` is the final one.
    indirect case retriesExhausted(attempts: Int, last: TeacherClientError)
    /// The local model failed.
    case local(String)

    public var description: String {
        switch self {
        case .invalidConfiguration(let m): return "teacher client configuration: \(m)"
        case .invalidRequest(let m): return "teacher request: \(m)"
        case .missingAPIKey(let v): return "the API key variable \(v) is not set (export \(v)=…)"
        case let .httpStatus(url, status, message): return "\(url): HTTP \(status): \(message)"
        case let .transientStatus(url, status, message): return "\(url): HTTP \(status): \(message)"
        case let .timeout(url, s): return "\(url): no complete reply within \(s) s"
        case let .connection(url, m): return "\(url): connection failed: \(m)"
        case let .malformedResponse(url, reason, body): return "\(url): malformed response (\(reason)): \(body)"
        case let .retriesExhausted(n, last): return "gave up after \(n) attempt\(n == 1 ? "" : "s"); last error: \(last)"
        case .local(let m): return "local teacher: \(m)"
        }
    }

    /// Whether another attempt may succeed.
    public var isTransient: Bool {
        switch self {
        case .transientStatus, .timeout, .connection: return true
        default: return false
        }
    }
}
