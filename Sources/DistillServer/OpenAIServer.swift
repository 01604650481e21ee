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
    /// The version requests go to now (`swap(to:)` replaces it).
    private let current: LockedBox<ModelEndpoint>
    /// The name `/v1/models` lists and requests give as `model` (or the model's path; a request
    /// without `model` is served too; any other name is a 404 `model_not_found`). It stays the
    /// same across swaps.
    public let modelName: String
    /// Largest request body accepted.
    public var maxBodyBytes = 64 << 20
    private let maxBatch: Int, batchWindow: Double, batching: BatchingMode
    private let swaps = LockedBox(0)

    /// - Parameters:
    ///   - modelName: the served name; default: the file or directory name of `model.path`.
    ///   - maxBatch: most sequences (prompts × n) generated in one batch; a larger request runs alone.
    ///   - batchWindow: seconds the scheduler waits for more requests after the first one arrives
    ///     at an idle server.
    ///   - batching: whether requests arriving while a batch runs join it at its next step
    ///     (continuous, the default) or wait for all of it to finish (static).
    public init(model: PretrainedModel, modelName: String? = nil, maxBatch: Int = 16, batchWindow: Double = 0.005,
                batching: BatchingMode = .continuous) throws {
        let name = modelName ?? OpenAIServer.defaultName(model.path)
        current = LockedBox(try ModelEndpoint(model: model, modelName: name, maxBatch: maxBatch, batchWindow: batchWindow,
                                              batching: batching))
        self.modelName = name
        self.maxBatch = maxBatch
        self.batchWindow = batchWindow
        self.batching = batching
    }

    var endpoint: ModelEndpoint { current.value }
    /// The model served now.
    public var model: PretrainedModel { endpoint.model }
    public var tokenizer: Tokenizer { endpoint.tokenizer }
    /// The model's context (`max_position_embeddings`), when its config says.
    public var contextLength: Int? { endpoint.contextLength }
    var scheduler: GenerationScheduler { endpoint.scheduler }
    /// Models swapped in since the start.
    public var swapCount: Int { swaps.value }

    /// Serves `model` from now on (hot swap): requests that arrive later go to it; requests in
    /// flight finish on the model they started with, whose generation stops once the last of them
    /// has ended. The served name stays.
    public func swap(to model: PretrainedModel) throws {
        let next = try ModelEndpoint(model: model, modelName: modelName, maxBatch: maxBatch, batchWindow: batchWindow, batching: batching)
        current.value = next
        swaps.value += 1
    }

    /// The served name for a model path: the file name without `.gguf`, or the directory name.
    public static func defaultName(_ path: String) -> String {
        var name = URL(fileURLWithPath: path).standardizedFileURL.lastPathComponent
        if name.lowercased().hasSuffix(".gguf") { name = String(name.dropLast(5)) }
        return name.isEmpty ? "model" : name
    }

    /// Groups of requests whose prompts ran together so far on the current model (concurrent
    /// requests share batches: fewer than requests).
    public var batchCount: Int { scheduler.batches }
    /// Requests that joined a batch while it was generating for others (continuous batching).
    public var joinedRunningCount: Int { scheduler.joinedRunning }
    /// Sequences generated so far on the current model.
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
        router.get("/v1/models") { [self] _, _ in json(ModelList(data: [endpoint.modelCard])) }
        router.get("/v1/models/{id}") { [self] _, context in
            let id = context.parameters.get("id") ?? ""
            let e = endpoint
            guard id == modelName else { throw e.modelNotFound(id) }
            return json(e.modelCard)
        }
        router.post("/v1/chat/completions") { [self] request, context in
            // The endpoint of the model served now; it lives until this request's reply ends.
            let e = endpoint
            return try await e.chatCompletions(try await body(request))
        }
        router.post("/v1/completions") { [self] request, context in
            let e = endpoint
            return try await e.completions(try await body(request))
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


    func body(_ request: Request) async throws -> JSONValue {
        var request = request
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: maxBodyBytes) } catch {
            throw OpenAIError(status: 413, message: "the request body is larger than \(maxBodyBytes) bytes", type: "invalid_request_error")
        }
        return try JSONValue.parse(Array(buffer.readableBytesView))
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
