import DistillModels
import Foundation

// The OpenAI wire format: request bodies for /v1/chat/completions and /v1/completions, and
// the parsing of their replies (choices, finish reasons, log-probabilities, usage, errors).

/// A JSON value, for request bodies and server-specific extra parameters
/// (`top_k`, `min_p`, `chat_template_kwargs`, …): DistillModels' `JSONValue`, shared with the server.
public typealias TeacherJSON = JSONValue

enum OpenAIWire {
    enum Endpoint: String {
        case chat = "chat/completions"
        case completions = "completions"
    }

    /// `base` + the endpoint: a base ending in `/v1` gets `/chat/completions`, any other
    /// `/v1/chat/completions` (so both `http://host:8000` and `https://api.deepseek.com/v1` work).
    static func url(base: String, endpoint: Endpoint) -> String {
        var b = base
        while b.hasSuffix("/") { b.removeLast() }
        return b.hasSuffix("/v1") ? "\(b)/\(endpoint.rawValue)" : "\(b)/v1/\(endpoint.rawValue)"
    }

    /// The request body (keys sorted, so equal requests give equal bytes).
    static func body(prompt: TeacherPrompt, sampling s: TeacherSampling, model: String, n: Int, seed: UInt64?,
                     extra: [String: TeacherJSON], stream: Bool = false) throws -> [UInt8] {
        var o: [String: TeacherJSON] = [
            "model": .string(model),
            "n": .int(n),
            "temperature": .double(s.temperature),
            "top_p": .double(s.topP),
            "max_tokens": .int(s.maxTokens),
            "stream": .bool(stream),
        ]
        // Token counts arrive in a last chunk only when asked for (OpenAI, vLLM, llama.cpp).
        if stream { o["stream_options"] = .object(["include_usage": true]) }
        if !s.stop.isEmpty { o["stop"] = .array(s.stop.map { .string($0) }) }
        if let seed { o["seed"] = .int(Int(truncatingIfNeeded: seed & 0x7FFF_FFFF_FFFF_FFFF)) }
        switch prompt {
        case .chat(let messages):
            o["messages"] = .array(messages.map { .object(["role": .string($0.role), "content": .string($0.content)]) })
            if s.wantsLogprobs {
                o["logprobs"] = true
                if s.topLogprobs > 0 { o["top_logprobs"] = .int(s.topLogprobs) }
            }
        case .text(let text):
            o["prompt"] = .string(text)
            // The legacy API: an integer, the number of alternatives (0: the sampled token's only).
            if s.wantsLogprobs { o["logprobs"] = .int(s.topLogprobs) }
        }
        for (k, v) in extra { o[k] = v }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(TeacherJSON.object(o)))
    }

    // MARK: Replies

    struct Usage: Decodable {
        var prompt_tokens: Int?
        var completion_tokens: Int?
        var total_tokens: Int?
    }

    struct ChatTop: Decodable {
        var token: String
        var logprob: Double?
        var bytes: [UInt8]?
    }

    struct ChatTokenLogprob: Decodable {
        var token: String
        var logprob: Double?
        var bytes: [UInt8]?
        var top_logprobs: [ChatTop]?
    }

    struct ChatLogprobs: Decodable {
        var content: [ChatTokenLogprob]?
    }

    /// A part of a reply that may be malformed without losing the rest: the value, or why it could
    /// not be read (log-probabilities: the text is still a candidate, its targets are dropped and
    /// counted).
    struct Lenient<T: Decodable>: Decodable {
        var value: T?
        var problem: String?

        init(from decoder: Decoder) throws {
            do { value = try T(from: decoder) } catch let e as DecodingError {
                problem = OpenAIWire.describe(e)
            } catch {
                problem = "\(error)"
            }
        }
    }

    /// A chat message, or a streamed chunk's `delta` of one.
    struct ChatMessageBody: Decodable {
        var content: String?
        var reasoning_content: String?
        var reasoning: String?

        /// DeepSeek's `reasoning_content`, or vLLM's and OpenRouter's `reasoning`.
        var reasoningText: String? { reasoning_content ?? reasoning }
    }

    struct ChatChoice: Decodable {
        var index: Int?
        var message: ChatMessageBody
        var finish_reason: String?
        var logprobs: Lenient<ChatLogprobs>?
    }

    struct CompletionLogprobs: Decodable {
        var tokens: [String]?
        var token_logprobs: [Double?]?
        var top_logprobs: [[String: Double?]?]?
    }

    struct CompletionChoice: Decodable {
        var index: Int?
        var text: String
        var finish_reason: String?
        var logprobs: Lenient<CompletionLogprobs>?
    }

    struct Reply<Choice: Decodable>: Decodable {
        var model: String?
        var choices: [Choice]
        var usage: Usage?
    }

    /// Parses a 200 reply. Throws `malformedResponse` naming what is missing or mistyped.
    static func parse(_ bytes: [UInt8], endpoint: Endpoint, url: String, model: String) throws -> TeacherResponse {
        let data = Data(bytes)
        func malformed(_ reason: String) -> TeacherClientError {
            .malformedResponse(url: url, reason: reason, body: excerpt(bytes))
        }
        let decoder = JSONDecoder()
        do {
            switch endpoint {
            case .chat:
                let r = try decoder.decode(Reply<ChatChoice>.self, from: data)
                let completions = r.choices.enumerated().map { i, c in
                    var t = TeacherCompletion(index: c.index ?? i, text: c.message.content ?? "",
                                              reasoning: c.message.reasoningText,
                                              finishReason: c.finish_reason.map(TeacherFinishReason.init(rawValue:)),
                                              logprobs: c.logprobs?.value?.content.map(tokenLogprobs))
                    t.logprobsProblem = c.logprobs?.problem
                    return t
                }
                return TeacherResponse(model: r.model ?? model, completions: completions.sorted { $0.index < $1.index },
                                       usage: usage(r.usage))
            case .completions:
                let r = try decoder.decode(Reply<CompletionChoice>.self, from: data)
                var completions: [TeacherCompletion] = []
                for (i, c) in r.choices.enumerated() {
                    var lp: [TokenLogprob]?
                    var problem = c.logprobs?.problem
                    if let l = c.logprobs?.value, let tokens = l.tokens {
                        let values = l.token_logprobs ?? []
                        let tops = l.top_logprobs ?? []
                        if values.count != tokens.count {
                            problem = "choices[\(i)].logprobs has \(tokens.count) tokens but \(values.count) token_logprobs"
                        } else if !tops.isEmpty && tops.count != tokens.count {
                            problem = "choices[\(i)].logprobs has \(tokens.count) tokens but \(tops.count) top_logprobs"
                        }
                    }
                    if problem == nil, let l = c.logprobs?.value, let tokens = l.tokens {
                        let values = l.token_logprobs ?? []
                        let tops = l.top_logprobs ?? []
                        var list: [TokenLogprob] = []
                        for k in tokens.indices {
                            var top: [TopLogprob] = []
                            if !tops.isEmpty, let dict = tops[k] {
                                for (token, value) in dict { top.append(TopLogprob(token: token, logprob: value ?? -Double.infinity)) }
                                top.sort(by: Self.moreLikely)
                            }
                            list.append(TokenLogprob(token: tokens[k], logprob: values[k] ?? -Double.infinity, top: top))
                        }
                        lp = list
                    }
                    var t = TeacherCompletion(index: c.index ?? i, text: c.text,
                                              finishReason: c.finish_reason.map(TeacherFinishReason.init(rawValue:)), logprobs: lp)
                    t.logprobsProblem = problem
                    completions.append(t)
                }
                return TeacherResponse(model: r.model ?? model, completions: completions.sorted { $0.index < $1.index },
                                       usage: usage(r.usage))
            }
        } catch let e as TeacherClientError {
            throw e
        } catch let e as DecodingError {
            // Some servers answer 200 with an error object.
            if let message = errorMessage(bytes) { throw TeacherClientError.httpStatus(url: url, status: 200, message: message) }
            throw malformed(describe(e))
        } catch {
            throw malformed("\(error)")
        }
    }

    static func tokenLogprobs(_ tokens: [ChatTokenLogprob]) -> [TokenLogprob] {
        tokens.map { t in
            TokenLogprob(token: t.token, logprob: t.logprob ?? -.infinity, bytes: t.bytes,
                         top: (t.top_logprobs ?? []).map { TopLogprob(token: $0.token, logprob: $0.logprob ?? -.infinity, bytes: $0.bytes) })
        }
    }

    // MARK: Streamed replies (server-sent events)

    struct StreamChoice: Decodable {
        var index: Int?
        var delta: ChatMessageBody?
        var finish_reason: String?
        var logprobs: Lenient<ChatLogprobs>?
    }

    struct StreamChunk: Decodable {
        var model: String?
        var choices: [StreamChoice]?
        var usage: Usage?
    }

    /// Parses a streamed chat reply (`text/event-stream`: `data: {chunk}` events up to `data: [DONE]`):
    /// each choice's `delta.content`, `delta.reasoning_content` / `delta.reasoning` and
    /// `logprobs.content` are joined in order, its last `finish_reason` kept, and `usage` taken from
    /// the chunk that carries it. An event holding an error object is the server's error.
    static func parseStream(_ bytes: [UInt8], url: String, model: String) throws -> TeacherResponse {
        struct Acc {
            var text = ""
            var reasoning: String?
            var finish: String?
            var logprobs: [TokenLogprob]?
            var logprobsProblem: String?
        }
        var choices: [Int: Acc] = [:]
        var replyModel: String?
        var usage: Usage?
        var sawDone = false, events = 0
        let decoder = JSONDecoder()
        for (lineNumber, rawLine) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            var line = rawLine
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            // Blank lines end events; ":" lines are comments (keep-alives); `event:`/`id:` fields are not needed.
            guard line.starts(with: Array("data:".utf8)) else { continue }
            var payload = line.dropFirst(5)
            if payload.first == UInt8(ascii: " ") { payload = payload.dropFirst() }
            if payload.elementsEqual(Array("[DONE]".utf8)) { sawDone = true; break }
            events += 1
            let chunk: StreamChunk
            do {
                chunk = try decoder.decode(StreamChunk.self, from: Data(payload))
            } catch let e as DecodingError {
                if let message = errorMessage(Array(payload)) { throw TeacherClientError.httpStatus(url: url, status: 200, message: message) }
                throw TeacherClientError.malformedResponse(url: url, reason: "stream event on line \(lineNumber + 1): \(describe(e))",
                                                           body: excerpt(Array(payload)))
            }
            if chunk.choices == nil, chunk.usage == nil, let message = errorMessage(Array(payload)) {
                throw TeacherClientError.httpStatus(url: url, status: 200, message: message)
            }
            replyModel = replyModel ?? chunk.model
            if let u = chunk.usage { usage = u }
            for c in chunk.choices ?? [] {
                let i = c.index ?? 0
                var a = choices[i] ?? Acc()
                if let d = c.delta {
                    a.text += d.content ?? ""
                    if let r = d.reasoningText { a.reasoning = (a.reasoning ?? "") + r }
                }
                if let f = c.finish_reason { a.finish = f }
                if let problem = c.logprobs?.problem, a.logprobsProblem == nil {
                    a.logprobsProblem = "stream event on line \(lineNumber + 1): \(problem)"
                }
                if let lp = c.logprobs?.value?.content { a.logprobs = (a.logprobs ?? []) + tokenLogprobs(lp) }
                choices[i] = a
            }
        }
        guard events > 0 || sawDone else {
            if let message = errorMessage(bytes) { throw TeacherClientError.httpStatus(url: url, status: 200, message: message) }
            throw TeacherClientError.malformedResponse(url: url, reason: "a streamed reply without any \"data:\" event", body: excerpt(bytes))
        }
        let completions = choices.keys.sorted().map { i -> TeacherCompletion in
            let a = choices[i]!
            var t = TeacherCompletion(index: i, text: a.text, reasoning: a.reasoning, finishReason: a.finish.map(TeacherFinishReason.init(rawValue:)),
                                      logprobs: a.logprobsProblem == nil ? a.logprobs : nil)
            t.logprobsProblem = a.logprobsProblem
            return t
        }
        return TeacherResponse(model: replyModel ?? model, completions: completions, usage: Self.usage(usage))
    }

    /// A dict loses the server's order: most likely first, ties by token.
    static func moreLikely(_ a: TopLogprob, _ b: TopLogprob) -> Bool {
        a.logprob != b.logprob ? a.logprob > b.logprob : a.token < b.token
    }

    static func usage(_ u: Usage?) -> TeacherUsage? {
        guard let u, u.prompt_tokens != nil || u.completion_tokens != nil else { return nil }
        return TeacherUsage(promptTokens: u.prompt_tokens ?? 0, completionTokens: u.completion_tokens ?? 0,
                            totalTokens: u.total_tokens)
    }

    /// The server's error message: OpenAI's `{"error": {"message": …}}`, vLLM's and SGLang's
    /// `{"message": …}`, FastAPI's `{"detail": …}`, llama.cpp's `{"error": {"message": …}}`, or the
    /// body's text.
    static func errorMessage(_ bytes: [UInt8]) -> String? {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else { return nil }
        if let e = obj["error"] as? [String: Any], let m = e["message"] as? String { return m }
        if let e = obj["error"] as? String { return e }
        if let m = obj["message"] as? String { return m }
        if let d = obj["detail"] as? String { return d }
        if let d = obj["detail"], JSONSerialization.isValidJSONObject(d),
           let data = try? JSONSerialization.data(withJSONObject: d) { return String(decoding: data, as: UTF8.self) }
        return nil
    }

    static func errorDescription(_ bytes: [UInt8]) -> String {
        errorMessage(bytes) ?? (bytes.isEmpty ? "(empty body)" : excerpt(bytes))
    }

    /// The start of a body, for error messages.
    static func excerpt(_ bytes: [UInt8], limit: Int = 300) -> String {
        let text = String(decoding: bytes.prefix(limit), as: UTF8.self)
        return bytes.count > limit ? text + "… (\(bytes.count) bytes)" : text
    }

    /// "choices[0].message: expected String, found number" style descriptions.
    static func describe(_ e: DecodingError) -> String {
        func path(_ c: [CodingKey]) -> String {
            var s = ""
            for k in c {
                if let i = k.intValue { s += "[\(i)]" } else { s += s.isEmpty ? k.stringValue : ".\(k.stringValue)" }
            }
            return s.isEmpty ? "the top level" : s
        }
        switch e {
        case let .keyNotFound(key, ctx):
            let at = ctx.codingPath.isEmpty ? "" : " in \(path(ctx.codingPath))"
            return "missing \"\(key.stringValue)\"\(at)"
        case let .typeMismatch(type, ctx): return "\(path(ctx.codingPath)): expected \(type)"
        case let .valueNotFound(type, ctx): return "\(path(ctx.codingPath)): expected \(type), found null"
        case let .dataCorrupted(ctx):
            return ctx.codingPath.isEmpty ? "not JSON" : "\(path(ctx.codingPath)): \(ctx.debugDescription)"
        @unknown default: return "\(e)"
        }
    }
}
