import DistillModels
import DistillTensor
import DistillNN
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// One model version behind the server: the model, its tokenizer and chat template, its own
/// generation scheduler, and the endpoints' work (requests parsed, generated, answered). A request
/// holds the endpoint it started on until its reply (stream) ends, so a swapped-out version serves
/// its requests in flight and stops its scheduler when the last one lets go.
final class ModelEndpoint: @unchecked Sendable {
    public let model: PretrainedModel
    /// The name `/v1/models` lists and requests give as `model` (or the model's path; a request
    /// without `model` is served too; any other name is a 404 `model_not_found`).
    public let modelName: String
    public let tokenizer: Tokenizer
    /// The model's context (`max_position_embeddings`), when its config says.
    public let contextLength: Int?
    let scheduler: GenerationScheduler
    let created = Int(Date().timeIntervalSince1970)

    /// - Parameters:
    ///   - modelName: the served name; default: the file or directory name of `model.path`.
    ///   - maxBatch: most sequences (prompts × n) generated in one batch; a larger request runs alone.
    ///   - batchWindow: seconds the scheduler waits for more requests after the first one arrives
    ///     at an idle server.
    ///   - batching: whether requests arriving while a batch runs join it at its next step
    ///     (continuous, the default) or wait for all of it to finish (static).
    init(model: PretrainedModel, modelName: String?, maxBatch: Int, batchWindow: Double, batching: BatchingMode) throws {
        tokenizer = try model.requireTokenizer()
        self.model = model
        self.modelName = modelName ?? OpenAIServer.defaultName(model.path)
        contextLength = try? model.config.int("max_position_embeddings")
        let tok = tokenizer
        // Serving shapes vary request by request: keep fewer freed buffers than training does.
        BufferPool.shared.lowerLimit(to: Self.bufferPoolBytes)
        scheduler = GenerationScheduler(lm: model.lm, tokenizer: tok,
                                        maxBatch: maxBatch, window: batchWindow, mode: batching)
    }

    deinit { scheduler.stop() }

    /// The buffer pool's limit while serving (DISTILL_POOL_MB overrides it).
    public static let bufferPoolBytes = 256 << 20

    /// Groups of requests whose prompts ran together so far (concurrent requests share batches:
    /// fewer than requests).
    public var batchCount: Int { scheduler.batches }
    /// Requests that joined a batch while it was generating for others (continuous batching).
    public var joinedRunningCount: Int { scheduler.joinedRunning }
    /// Sequences generated so far.
    public var sequenceCount: Int { scheduler.sequences }

    /// Stops the generation thread after the running batch; later requests get 503. Also done
    /// when the server is released.
    public func stopGeneration() { scheduler.stop() }

    // MARK: - Endpoints

    var modelCard: ModelCard {
        ModelCard(id: modelName, created: created, root: model.path, max_model_len: contextLength)
    }

    func modelNotFound(_ name: String) -> OpenAIError {
        OpenAIError(status: 404, message: "The model `\(name)` does not exist; this server serves `\(modelName)`.",
                    type: "invalid_request_error", param: "model", code: "model_not_found")
    }

    func checkModel(_ c: CommonParameters) throws {
        // The served name, or the path the model was loaded from.
        if let name = c.model, name != modelName, name != model.path { throw modelNotFound(name) }
    }

    /// Options for one prompt; checks the context length. `defaultMax` is the endpoint's default
    /// `max_tokens` (nil: the rest of the context).
    func options(_ c: CommonParameters, promptTokens: Int, defaultMax: Int?, param: String) throws -> GenerationOptions {
        if let ctx = contextLength, promptTokens >= ctx {
            throw OpenAIError.invalidRequest(
                "This model's maximum context length is \(ctx) tokens. However, the prompt has \(promptTokens) tokens. Please reduce the length of the prompt.",
                param: param, code: "context_length_exceeded")
        }
        let maxTokens = c.maxTokens ?? defaultMax.map { m in contextLength.map { min(m, $0 - promptTokens) } ?? m }
            ?? (contextLength.map { $0 - promptTokens } ?? 1024)
        if let ctx = contextLength, promptTokens + maxTokens > ctx {
            throw OpenAIError.invalidRequest(
                "This model's maximum context length is \(ctx) tokens. However, you requested \(promptTokens + maxTokens) tokens (\(promptTokens) in the prompt, \(maxTokens) in the completion). Please reduce the length of the prompt or completion.",
                param: param, code: "context_length_exceeded")
        }
        return GenerationOptions(maxTokens: maxTokens, sampling: c.sampling, n: c.n,
                                 stopTokenIds: c.ignoreEOS ? [] : Set(model.eosTokenIds), stopStrings: c.stop,
                                 topLogprobs: c.logprobs ? c.topLogprobs : 0)
    }

    /// Waits for a job's sequences; a failure as the API reports it.
    func collect(_ stream: AsyncStream<GenerationEvent>) async throws -> [GeneratedSequence] {
        do { return try await GenerationScheduler.sequences(from: stream) } catch let e as GenerationSchedulerError { throw OpenAIError(e) }
    }

    func chatCompletions(_ body: JSONValue) async throws -> Response {
        let r = try ChatRequest(body)
        try checkModel(r.common)
        guard let template = model.chatTemplate else {
            throw OpenAIError.invalidRequest("the model has no chat template; use /v1/completions", param: "messages")
        }
        let text: String
        do {
            text = try template.render(messages: r.messages, addGenerationPrompt: r.addGenerationPrompt,
                                       bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken, extra: r.templateVariables)
        } catch {
            throw OpenAIError.invalidRequest("the chat template failed on these messages: \(error)", param: "messages")
        }
        // The template already holds any BOS the model wants.
        let ids = tokenizer.encode(text, addSpecialTokens: false)
        guard !ids.isEmpty else { throw OpenAIError.invalidRequest("the messages encode to no tokens", param: "messages") }
        let opts = try options(r.common, promptTokens: ids.count, defaultMax: nil, param: "messages")
        let (events, flag) = scheduler.submit([GenerationItem(prompt: ids, options: opts)])
        let meta = ReplyMeta(id: "chatcmpl-" + randomID(), created: Int(Date().timeIntervalSince1970), model: modelName)
        if r.common.stream {
            return sse { [self] write in
                try await streamChat(events, flag: flag, meta: meta, common: r.common, promptTokens: ids.count, write: write)
            }
        }
        let seqs = try await collect(events)
        let choices = seqs.enumerated().map { i, s in
            ChatChoice(index: i, message: ChatMessageBody(content: ChoiceText.finalText(s.tokens, tokenizer: tokenizer, stops: opts.stopStrings)),
                       logprobs: r.common.logprobs ? ChatLogprobs(content: s.tokens.indices.map { chatLogprob(s, $0) }) : nil,
                       finish_reason: s.finishReason.openAI)
        }
        return json(ChatCompletion(id: meta.id, created: meta.created, model: meta.model, choices: choices,
                                   usage: Usage(prompt: ids.count, completion: seqs.reduce(0) { $0 + $1.tokens.count })))
    }

    func completions(_ body: JSONValue) async throws -> Response {
        let r = try CompletionRequest(body)
        try checkModel(r.common)
        var items: [GenerationItem] = []
        for (i, p) in r.prompts.enumerated() {
            let param = r.prompts.count == 1 ? "prompt" : "prompt[\(i)]"
            let ids: [Int]
            switch p {
            case .text(let s): ids = tokenizer.encode(s)
            case .tokens(let t):
                if let bad = t.first(where: { $0 < 0 || $0 >= model.lm.config.vocabSize }) {
                    throw OpenAIError.invalidRequest("\(param) holds token id \(bad), outside the vocabulary of \(model.lm.config.vocabSize)", param: "prompt")
                }
                ids = t
            }
            guard !ids.isEmpty else { throw OpenAIError.invalidRequest("\(param) encodes to no tokens", param: "prompt") }
            let opts = try options(r.common, promptTokens: ids.count, defaultMax: 16, param: "prompt")
            items.append(GenerationItem(prompt: ids, options: opts, samplerStream: UInt64(i * r.common.n)))
        }
        let promptTokens = items.reduce(0) { $0 + $1.prompt.count }
        let stops = items[0].options.stopStrings
        let (events, flag) = scheduler.submit(items)
        let meta = ReplyMeta(id: "cmpl-" + randomID(), created: Int(Date().timeIntervalSince1970), model: modelName)
        if r.common.stream {
            return sse { [self] write in
                try await streamCompletion(events, flag: flag, meta: meta, common: r.common, promptTokens: promptTokens, write: write)
            }
        }
        let seqs = try await collect(events)
        let choices = seqs.enumerated().map { i, s in
            CompletionChoice(index: i, text: ChoiceText.finalText(s.tokens, tokenizer: tokenizer, stops: stops),
                             logprobs: r.common.logprobs ? completionLogprobs(s, k: r.common.topLogprobs) : nil,
                             finish_reason: s.finishReason.openAI)
        }
        return json(Completion(id: meta.id, created: meta.created, model: meta.model, choices: choices,
                               usage: Usage(prompt: promptTokens, completion: seqs.reduce(0) { $0 + $1.tokens.count })))
    }

    // MARK: - Streaming

    struct ReplyMeta: Sendable {
        var id: String
        var created: Int
        var model: String
    }

    func streamChat(_ events: AsyncStream<GenerationEvent>, flag: CancellationFlag, meta: ReplyMeta, common: CommonParameters,
                    promptTokens: Int, write: (ChatChunk) async throws -> Void) async throws {
        func chunk(_ choices: [ChatChunkChoice], usage: Usage? = nil) -> ChatChunk {
            ChatChunk(id: meta.id, created: meta.created, model: meta.model, choices: choices, usage: usage)
        }
        var texts = (0..<common.n).map { _ in ChoiceText(tokenizer: tokenizer, stops: common.stop) }
        for i in 0..<common.n {
            try await write(chunk([ChatChunkChoice(index: i, delta: ChatDelta(role: "assistant", content: ""))]))
        }
        for await event in events {
            switch event {
            case .token(let row, let t):
                let piece = texts[row].add(t.token)
                let lp = common.logprobs ? ChatLogprobs(content: [chatLogprob(t)]) : nil
                if piece.isEmpty && lp == nil { continue }
                try await write(chunk([ChatChunkChoice(index: row, delta: ChatDelta(content: piece), logprobs: lp)]))
            case .finished(let seqs):
                for s in seqs {
                    let row = s.prompt * common.n + s.sample
                    let rest = texts[row].finish()
                    if !rest.isEmpty { try await write(chunk([ChatChunkChoice(index: row, delta: ChatDelta(content: rest))])) }
                    try await write(chunk([ChatChunkChoice(index: row, delta: ChatDelta(), finish_reason: s.finishReason.openAI)]))
                }
                if common.includeUsage {
                    try await write(chunk([], usage: Usage(prompt: promptTokens, completion: seqs.reduce(0) { $0 + $1.tokens.count })))
                }
                return
            case .failed(let e):
                throw OpenAIError(e)
            }
        }
    }

    func streamCompletion(_ events: AsyncStream<GenerationEvent>, flag: CancellationFlag, meta: ReplyMeta, common: CommonParameters,
                          promptTokens: Int, write: (Completion) async throws -> Void) async throws {
        func chunk(_ choices: [CompletionChoice], usage: Usage? = nil) -> Completion {
            Completion(id: meta.id, created: meta.created, model: meta.model, choices: choices, usage: usage)
        }
        var texts: [Int: ChoiceText] = [:]
        var tokens: [Int: [Int]] = [:]
        for await event in events {
            switch event {
            case .token(let row, let t):
                let piece = texts[row, default: ChoiceText(tokenizer: tokenizer, stops: common.stop)].add(t.token)
                var lp: CompletionLogprobs?
                if common.logprobs {
                    let offset = tokenizer.decode(tokens[row, default: []], skipSpecialTokens: true).unicodeScalars.count
                    lp = completionLogprobs([t], k: common.topLogprobs, offsets: [offset])
                }
                tokens[row, default: []].append(t.token)
                if piece.isEmpty && lp == nil { continue }
                try await write(chunk([CompletionChoice(index: row, text: piece, logprobs: lp)]))
            case .finished(let seqs):
                for s in seqs {
                    let row = s.prompt * common.n + s.sample
                    let rest = texts[row, default: ChoiceText(tokenizer: tokenizer, stops: common.stop)].finish()
                    try await write(chunk([CompletionChoice(index: row, text: rest, finish_reason: s.finishReason.openAI)]))
                }
                if common.includeUsage {
                    try await write(chunk([], usage: Usage(prompt: promptTokens, completion: seqs.reduce(0) { $0 + $1.tokens.count })))
                }
                return
            case .failed(let e):
                throw OpenAIError(e)
            }
        }
    }

    /// A server-sent event stream: `data: {json}\n\n` per chunk, then `data: [DONE]\n\n`. An error
    /// after the stream began goes out as an `{"error": …}` event. A client that hangs up
    /// cancels its generation.
    func sse<Chunk: Encodable & Sendable>(_ produce: @escaping @Sendable ((Chunk) async throws -> Void) async throws -> Void) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            func event(_ bytes: [UInt8]) async throws {
                var buffer = ByteBuffer()
                buffer.writeString("data: ")
                buffer.writeBytes(bytes)
                buffer.writeString("\n\n")
                try await writer.write(buffer)
            }
            do {
                try await produce { try await event(jsonBytes($0)) }
            } catch let e as OpenAIError {
                try await event(jsonBytes(e.body))
            }
            try await event(Array("[DONE]".utf8))
            try await writer.finish(nil)
        })
    }

    // MARK: - Log-probabilities

    func chatLogprob(_ t: GeneratedToken) -> ChatTokenLogprob {
        ChatTokenLogprob(token: tokenizer.decode([t.token]), logprob: jsonLogprob(t.logprob), bytes: tokenizer.decodeBytes([t.token]),
                         top_logprobs: t.topLogprobs.map {
                             ChatTopLogprob(token: tokenizer.decode([$0.token]), logprob: jsonLogprob($0.logprob),
                                            bytes: tokenizer.decodeBytes([$0.token]))
                         })
    }

    func chatLogprob(_ s: GeneratedSequence, _ i: Int) -> ChatTokenLogprob {
        chatLogprob(GeneratedToken(token: s.tokens[i], logprob: s.logprobs[i], topLogprobs: i < s.topLogprobs.count ? s.topLogprobs[i] : []))
    }

    func completionLogprobs(_ s: GeneratedSequence, k: Int) -> CompletionLogprobs {
        let tokens = s.tokens.indices.map {
            GeneratedToken(token: s.tokens[$0], logprob: s.logprobs[$0], topLogprobs: $0 < s.topLogprobs.count ? s.topLogprobs[$0] : [])
        }
        // text_offset: where each token's text starts in the completion (Unicode scalars, as
        // Python's str indexes).
        let offsets = s.tokens.indices.map { tokenizer.decode(Array(s.tokens[..<$0]), skipSpecialTokens: true).unicodeScalars.count }
        return completionLogprobs(tokens, k: k, offsets: offsets)
    }

    func completionLogprobs(_ tokens: [GeneratedToken], k: Int, offsets: [Int]) -> CompletionLogprobs {
        var lp = CompletionLogprobs()
        lp.tokens = tokens.map { tokenizer.decode([$0.token]) }
        lp.token_logprobs = tokens.map { jsonLogprob($0.logprob) }
        lp.text_offset = offsets
        if k > 0 {
            lp.top_logprobs = tokens.map { t in
                var d: [String: Float] = [:]
                for (token, logprob) in t.topLogprobs {
                    let key = tokenizer.decode([token])
                    d[key] = max(d[key] ?? -.infinity, jsonLogprob(logprob))
                }
                return d
            }
        }
        return lp
    }
}
