import DistillModels
import DistillTensor
import DistillNN
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// An OpenAI-compatible HTTP API over a local model (Hummingbird):
///
/// - `GET /v1/models` (and `/v1/models/{id}`), `GET /health`
/// - `POST /v1/chat/completions`: `messages` through the model's chat template (with the
///   generation prompt)
/// - `POST /v1/completions`: `prompt` as a string, a list of strings, token ids or lists of them
///
/// Parameters: `model`, `n`, `temperature`, `top_p`, `max_tokens` / `max_completion_tokens`,
/// `stop`, `seed`, `stream` (server-sent events ending in `data: [DONE]`) with
/// `stream_options.include_usage`, `logprobs` and `top_logprobs` (chat) or `logprobs: k`
/// (completions), and vLLM's `top_k`, `min_p`, `repetition_penalty`, `ignore_eos`,
/// `chat_template_kwargs`. Bad requests get OpenAI's error JSON with a 4xx status.
///
/// Generation runs on one dedicated thread; requests that arrive while a batch runs (or within
/// `batchWindow` of each other) are generated together as one batch of at most `maxBatch`
/// sequences, each with its own options. A request's tokens do not depend on what it was batched
/// with: sample s of prompt p uses the sampler stream p·n + s of the request's seed, as
/// `Generator.generate(prompts:options:)` does (without a `seed`, a random one).
///
/// In process (tests, other targets):
///
/// ```swift
/// let server = try OpenAIServer(model: model, modelName: "tiny")
/// let running = try await server.start()            // 127.0.0.1, a free port
/// // … requests to running.baseURL ("http://127.0.0.1:PORT"; the API is under /v1) …
/// await running.shutdown()
/// ```
///
/// or route requests without a socket: `Application(router: server.makeRouter())` with
/// HummingbirdTesting's `.router` setup.
public final class OpenAIServer: @unchecked Sendable {
    public let model: PretrainedModel
    /// The name `/v1/models` lists and requests give as `model` (or the model's path; a request
    /// without `model` is served too; any other name is a 404 `model_not_found`).
    public let modelName: String
    public let tokenizer: Tokenizer
    /// The model's context (`max_position_embeddings`), when its config says.
    public let contextLength: Int?
    let scheduler: GenerationScheduler
    let created = Int(Date().timeIntervalSince1970)
    /// Largest request body accepted.
    public var maxBodyBytes = 64 << 20

    /// - Parameters:
    ///   - modelName: the served name; default: the file or directory name of `model.path`.
    ///   - maxBatch: most sequences (prompts × n) generated in one batch; a larger request runs alone.
    ///   - batchWindow: seconds the scheduler waits for more requests after the first one arrives
    ///     at an idle server.
    ///   - batching: whether requests arriving while a batch runs join it at its next step
    ///     (continuous, the default) or wait for all of it to finish (static).
    public init(model: PretrainedModel, modelName: String? = nil, maxBatch: Int = 16, batchWindow: Double = 0.005,
                batching: BatchingMode = .continuous) throws {
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

    /// The served name for a model path: the file name without `.gguf`, or the directory name.
    public static func defaultName(_ path: String) -> String {
        var name = URL(fileURLWithPath: path).standardizedFileURL.lastPathComponent
        if name.lowercased().hasSuffix(".gguf") { name = String(name.dropLast(5)) }
        return name.isEmpty ? "model" : name
    }

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

    // MARK: - HTTP

    /// The routes, with errors turned into OpenAI's error JSON (unknown routes: 404).
    public func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: OpenAIErrorMiddleware())
        router.get("/health") { _, _ in Response(status: .ok) }
        router.get("/v1/models") { [self] _, _ in json(ModelList(data: [modelCard])) }
        router.get("/v1/models/{id}") { [self] _, context in
            let id = context.parameters.get("id") ?? ""
            guard id == modelName else { throw modelNotFound(id) }
            return json(modelCard)
        }
        router.post("/v1/chat/completions") { [self] request, context in
            try await chatCompletions(try await body(request))
        }
        router.post("/v1/completions") { [self] request, context in
            try await completions(try await body(request))
        }
        return router
    }

    /// An application serving `makeRouter()` on host:port (port 0: a free one); `onListening`
    /// gets the bound port.
    public func makeApplication(host: String = "127.0.0.1", port: Int = 8000, logger: Logger? = nil,
                                onListening: @escaping @Sendable (Int) async -> Void = { _ in })
        -> Application<RouterResponder<BasicRequestContext>> {
        var log = logger ?? Logger(label: "distill.serve")
        if logger == nil { log.logLevel = .warning }
        return Application(router: makeRouter(),
                           configuration: .init(address: .hostname(host, port: port), serverName: "distill"),
                           onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) },
                           logger: log)
    }

    /// Starts listening in the background and returns once the socket is bound (port 0: a free
    /// port, see `RunningOpenAIServer.port`). Stop it with `shutdown()`.
    public func start(host: String = "127.0.0.1", port: Int = 0, logger: Logger? = nil) async throws -> RunningOpenAIServer {
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let app = makeApplication(host: host, port: port, logger: logger) { continuation.yield($0) }
        let group = ServiceGroup(configuration: .init(services: [app], logger: app.logger))
        let task = Task {
            defer { continuation.finish() }
            try await group.run()
        }
        for await bound in ports {
            return RunningOpenAIServer(server: self, host: host, port: bound, group: group, task: task)
        }
        // The server stopped before listening (the port is taken, …): its error.
        try await task.value
        throw OpenAIError(status: 500, message: "the server stopped before listening on \(host):\(port)", type: "server_error")
    }

    /// Serves until SIGINT or SIGTERM (or until the task is cancelled), then stops generation.
    /// `onListening` gets the bound port.
    public func run(host: String = "127.0.0.1", port: Int = 8000, logger: Logger? = nil,
                    onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let app = makeApplication(host: host, port: port, logger: logger, onListening: onListening)
        defer { scheduler.stop() }
        try await app.runService()
    }

    // MARK: - Endpoints

    var modelCard: ModelCard {
        ModelCard(id: modelName, created: created, root: model.path, max_model_len: contextLength)
    }

    func modelNotFound(_ name: String) -> OpenAIError {
        OpenAIError(status: 404, message: "The model `\(name)` does not exist; this server serves `\(modelName)`.",
                    type: "invalid_request_error", param: "model", code: "model_not_found")
    }

    func body(_ request: Request) async throws -> JSONValue {
        var request = request
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: maxBodyBytes) } catch {
            throw OpenAIError(status: 413, message: "the request body is larger than \(maxBodyBytes) bytes", type: "invalid_request_error")
        }
        return try JSONValue.parse(Array(buffer.readableBytesView))
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

/// A server started by `OpenAIServer.start()`.
public final class RunningOpenAIServer: Sendable {
    public let server: OpenAIServer
    public let host: String
    /// The bound port.
    public let port: Int
    private let group: ServiceGroup
    private let task: Task<Void, Error>

    init(server: OpenAIServer, host: String, port: Int, group: ServiceGroup, task: Task<Void, Error>) {
        self.server = server
        self.host = host
        self.port = port
        self.group = group
        self.task = task
    }

    /// `http://HOST:PORT` (the API is under `/v1`).
    public var baseURL: String { "http://\(host.contains(":") ? "[\(host)]" : host):\(port)" }

    /// Stops accepting connections, lets requests in flight finish, and waits for the server to
    /// stop. The `OpenAIServer` can be started again.
    public func shutdown() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}

/// Turns every error into OpenAI's error JSON: `OpenAIError` as it is, the router's 404 for an
/// unknown route, anything else a 500.
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as OpenAIError {
            return e.response
        } catch let e as HTTPError {
            let message = e.status == .notFound ? "no route for \(request.method) \(request.uri.path)" : (e.body ?? e.status.reasonPhrase)
            return OpenAIError(status: e.status.code, message: message,
                               type: e.status == .notFound ? "not_found_error" : "invalid_request_error").response
        } catch {
            return OpenAIError(status: 500, message: "\(error)", type: "server_error").response
        }
    }
}

extension OpenAIError {
    var response: Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: .init(code: status), headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: jsonBytes(body))))
    }
}

func json<T: Encodable>(_ value: T) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: jsonBytes(value))))
}

func randomID() -> String {
    UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
}
