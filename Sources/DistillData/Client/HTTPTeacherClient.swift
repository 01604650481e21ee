import AsyncHTTPClient
import Foundation

/// How requests are spread over several servers.
public enum TeacherLoadBalancing: String, Sendable, Codable {
    /// Each request (and each retry) goes to the next URL in turn.
    case roundRobin = "round_robin"
    /// To the URL with the fewest requests in flight (round robin among ties).
    case leastInFlight = "least_in_flight"
}

/// Settings of an OpenAI-compatible teacher.
public struct HTTPTeacherConfiguration: Sendable {
    /// Server base URLs: `http://host:8000` or `http://host:8000/v1` (the client appends
    /// `/v1/chat/completions` or `/chat/completions`).
    public var baseURLs: [String]
    /// The `model` field of every request.
    public var model: String
    /// Name of the environment variable holding the API key, sent as `Authorization: Bearer …`
    /// (nil: no header). Read when the client is made; unset or empty is an error.
    public var apiKeyEnvironmentVariable: String?
    public var balancing: TeacherLoadBalancing = .roundRobin
    /// Requests in flight at once, over all URLs.
    public var maxInFlight = 32
    /// Further attempts after the first, for 429, 5xx, timeouts and connection errors.
    public var maxRetries = 6
    /// Backoff before retry k (k = 1, 2, …): min(maxBackoff, initialBackoff · 2^(k-1)), times a
    /// jitter factor drawn uniformly from [0.5, 1) (seeded by `jitterSeed`). Seconds.
    public var initialBackoff: Double = 0.5
    public var maxBackoff: Double = 30
    /// A server's Retry-After replaces the backoff, capped at this many seconds.
    public var maxRetryAfter: Double = 300
    public var jitterSeed: UInt64 = 0
    /// Seconds one attempt may take, reply body included.
    public var requestTimeout: Double = 600
    public var connectTimeout: Double = 10
    /// Largest reply body accepted.
    public var maxResponseBytes = 256 << 20
    /// Split `n` into requests of at most this many samples (for servers without `n`, such as
    /// llama.cpp's); request k gets seed + k when a seed is set. nil: one request. A reply with
    /// fewer choices than asked is returned as it is (see `complete`).
    public var samplesPerRequest: Int?
    /// Ask for a streamed reply (`"stream": true`, server-sent events) on chat requests, and join
    /// its deltas (content, `reasoning_content`/`reasoning`, log-probabilities): long reasoning
    /// generations then keep the connection busy instead of idle until the end.
    public var stream = false
    /// Extra body fields (`top_k`, `min_p`, `chat_template_kwargs`, …), added to every request.
    public var extraBody: [String: TeacherJSON] = [:]
    /// Extra headers for every request.
    public var extraHeaders: [String: String] = [:]

    public init(baseURLs: [String], model: String, apiKeyEnvironmentVariable: String? = nil) {
        self.baseURLs = baseURLs
        self.model = model
        self.apiKeyEnvironmentVariable = apiKeyEnvironmentVariable
    }

    public init(baseURL: String, model: String, apiKeyEnvironmentVariable: String? = nil) {
        self.init(baseURLs: [baseURL], model: model, apiKeyEnvironmentVariable: apiKeyEnvironmentVariable)
    }

    public func validate() throws {
        func bad(_ m: String) -> TeacherClientError { .invalidConfiguration(m) }
        guard !baseURLs.isEmpty else { throw bad("no base URL") }
        for u in baseURLs {
            guard let url = URL(string: u), let scheme = url.scheme, ["http", "https"].contains(scheme.lowercased()),
                  url.host != nil else {
                throw bad("base URL \"\(u)\" is not an http(s) URL with a host")
            }
        }
        guard !model.isEmpty else { throw bad("no model name") }
        guard maxInFlight >= 1 else { throw bad("max in flight must be ≥ 1, got \(maxInFlight)") }
        guard maxRetries >= 0 else { throw bad("max retries must be ≥ 0, got \(maxRetries)") }
        guard initialBackoff >= 0, maxBackoff >= 0, maxRetryAfter >= 0 else { throw bad("backoff times must be ≥ 0") }
        guard requestTimeout > 0, connectTimeout > 0 else { throw bad("timeouts must be > 0") }
        if let k = samplesPerRequest, k < 1 { throw bad("samples per request must be ≥ 1, got \(k)") }
    }
}

/// What the client did, for logs and progress (handed to `onEvent`).
public enum TeacherClientEvent: Sendable, Equatable {
    /// Attempt `attempt` (1-based) at `url` failed transiently; the next starts after `delay` s.
    case retrying(url: String, attempt: Int, delay: Double, error: TeacherClientError)
}

/// Counters since the client was made.
public struct TeacherClientStatistics: Sendable, Equatable {
    /// HTTP attempts started.
    public var attempts = 0
    /// Attempts that were retries.
    public var retries = 0
    /// Calls of `complete` that threw.
    public var failures = 0
    /// Calls of `complete` that returned.
    public var successes = 0
    /// Attempts per base URL.
    public var attemptsPerURL: [String: Int] = [:]
}

/// A teacher behind an OpenAI-compatible HTTP API (vLLM, SGLang, llama.cpp server, DeepSeek).
///
/// Requests are bounded (`maxInFlight`), spread over the base URLs, retried with exponential
/// backoff and jitter on 429, 5xx, timeouts and connection errors (honouring Retry-After), and
/// give typed errors otherwise. Call `shutdown()` when done.
public final class HTTPTeacherClient: TeacherClient {
    public let configuration: HTTPTeacherConfiguration
    public var modelName: String { configuration.model }
    private let http: HTTPClient
    private let authorization: String?
    private let semaphore: AsyncSemaphore
    private let state: EndpointState
    private let random: LockedRandom
    private let onEvent: (@Sendable (TeacherClientEvent) -> Void)?

    public init(_ configuration: HTTPTeacherConfiguration, onEvent: (@Sendable (TeacherClientEvent) -> Void)? = nil) throws {
        try configuration.validate()
        if let variable = configuration.apiKeyEnvironmentVariable {
            guard let key = ProcessInfo.processInfo.environment[variable], !key.isEmpty else {
                throw TeacherClientError.missingAPIKey(variable: variable)
            }
            authorization = "Bearer \(key)"
        } else {
            authorization = nil
        }
        self.configuration = configuration
        self.onEvent = onEvent
        semaphore = AsyncSemaphore(permits: configuration.maxInFlight)
        state = EndpointState(urls: configuration.baseURLs)
        random = LockedRandom(seed: configuration.jitterSeed)
        var http = HTTPClient.Configuration()
        http.timeout = .init(connect: .milliseconds(Int64(configuration.connectTimeout * 1000)))
        // Enough connections per host that the in-flight bound, not the pool, limits requests.
        http.connectionPool = .init(idleTimeout: .seconds(60),
                                    concurrentHTTP1ConnectionsPerHostSoftLimit: configuration.maxInFlight)
        // A refused connection fails the attempt at once (the pool would otherwise keep trying
        // until the request's deadline); this client's retries, which may pick another URL, follow.
        http.connectionPool.retryConnectionEstablishment = false
        http.decompression = .enabled(limit: .none)
        self.http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
    }

    /// Closes connections. Call once, after the last request.
    public func shutdown() async throws {
        try await http.shutdown()
    }

    public func statistics() -> TeacherClientStatistics { state.statistics() }

    public func complete(_ prompt: TeacherPrompt, sampling: TeacherSampling) async throws -> TeacherResponse {
        do {
            try sampling.validate()
            let endpoint: OpenAIWire.Endpoint
            switch prompt {
            case .chat(let m):
                guard !m.isEmpty else { throw TeacherClientError.invalidRequest("no messages") }
                endpoint = .chat
            case .text: endpoint = .completions
            }
            // Split n into parts when the server takes only a few samples per request.
            let per = configuration.samplesPerRequest ?? sampling.n
            var parts: [(n: Int, seed: UInt64?)] = []
            var left = sampling.n
            while left > 0 {
                let k = min(per, left)
                parts.append((k, sampling.seed.map { $0 &+ UInt64(parts.count) }))
                left -= k
            }
            let responses: [TeacherResponse]
            if parts.count == 1 {
                responses = [try await send(prompt, sampling: sampling, n: parts[0].n, seed: parts[0].seed, endpoint: endpoint)]
            } else {
                responses = try await withThrowingTaskGroup(of: (Int, TeacherResponse).self) { group in
                    for (i, p) in parts.enumerated() {
                        group.addTask { (i, try await self.send(prompt, sampling: sampling, n: p.n, seed: p.seed, endpoint: endpoint)) }
                    }
                    var out = [TeacherResponse?](repeating: nil, count: parts.count)
                    for try await (i, r) in group { out[i] = r }
                    return out.map { $0! }
                }
            }
            var merged = TeacherResponse(model: responses[0].model, completions: [], usage: nil)
            for r in responses {
                let offset = merged.completions.count
                merged.completions += r.completions.enumerated().map { i, c in
                    var c = c
                    c.index = offset + i
                    return c
                }
                if let u = r.usage { merged.usage = merged.usage.map { $0 + u } ?? u }
            }
            state.record(success: true)
            return merged
        } catch {
            state.record(success: false)
            throw error
        }
    }

    /// One logical request: attempts until success, a permanent error or the retry budget's end.
    private func send(_ prompt: TeacherPrompt, sampling: TeacherSampling, n: Int, seed: UInt64?,
                      endpoint: OpenAIWire.Endpoint) async throws -> TeacherResponse {
        let streamed: Bool
        if case .chat = prompt { streamed = configuration.stream } else { streamed = false }
        let body = try OpenAIWire.body(prompt: prompt, sampling: sampling, model: configuration.model, n: n, seed: seed,
                                       extra: configuration.extraBody, stream: streamed)
        var attempt = 0
        while true {
            attempt += 1
            try Task.checkCancellation()
            let (outcome, retryAfter) = try await semaphore.withPermit {
                try await self.attempt(body: body, endpoint: endpoint, n: n, retry: attempt > 1)
            }
            switch outcome {
            case .success(let response):
                return response
            case .failure(let error):
                guard error.isTransient else { throw error }
                guard attempt <= configuration.maxRetries else {
                    throw TeacherClientError.retriesExhausted(attempts: attempt, last: error)
                }
                let delay = retryAfter.map { min($0, configuration.maxRetryAfter) } ?? backoff(retry: attempt)
                onEvent?(.retrying(url: failedURL(error), attempt: attempt, delay: delay, error: error))
                if delay > 0 { try await Task.sleep(nanoseconds: UInt64(delay * 1e9)) }
            }
        }
    }

    /// Backoff before retry `k` (1-based), with jitter in [0.5, 1).
    func backoff(retry k: Int) -> Double {
        let base = min(configuration.maxBackoff, configuration.initialBackoff * pow(2, Double(k - 1)))
        return base * (0.5 + 0.5 * random.nextUnit())
    }

    private func failedURL(_ e: TeacherClientError) -> String {
        switch e {
        case let .transientStatus(url, _, _), let .timeout(url, _), let .connection(url, _): return url
        default: return ""
        }
    }

    /// One HTTP attempt. Transient failures come back as `.failure` (with Retry-After, in
    /// seconds, when the server sent one); permanent ones are thrown.
    private func attempt(body: [UInt8], endpoint: OpenAIWire.Endpoint, n: Int, retry: Bool)
        async throws -> (Result<TeacherResponse, TeacherClientError>, Double?) {
        let (slot, base) = state.acquire(configuration.balancing, retry: retry)
        defer { state.release(slot) }
        let url = OpenAIWire.url(base: base, endpoint: endpoint)
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "Accept", value: configuration.stream && endpoint == .chat ? "text/event-stream" : "application/json")
        if let authorization { request.headers.add(name: "Authorization", value: authorization) }
        for (k, v) in configuration.extraHeaders { request.headers.replaceOrAdd(name: k, value: v) }
        request.body = .bytes(body)
        let timeout = configuration.requestTimeout
        let status: Int
        let bytes: [UInt8]
        let retryAfterHeader: String?
        do {
            let response = try await http.execute(request, timeout: .nanoseconds(Int64(timeout * 1e9)))
            status = Int(response.status.code)
            retryAfterHeader = response.headers.first(name: "Retry-After")
            let buffer = try await response.body.collect(upTo: configuration.maxResponseBytes)
            bytes = Array(buffer.readableBytesView)
        } catch is CancellationError {
            throw CancellationError()
        } catch let e as HTTPClientError {
            if e == .deadlineExceeded || e == .readTimeout || e == .writeTimeout {
                return (.failure(.timeout(url: url, seconds: timeout)), nil)
            }
            if e == .connectTimeout {
                return (.failure(.connection(url: url, message: "connect timed out after \(configuration.connectTimeout) s")), nil)
            }
            if e == .invalidURL || e == .emptyHost || e == .emptyScheme || e == .alreadyShutdown
                || e.description.contains("unsupportedScheme") {
                throw TeacherClientError.invalidConfiguration("\(url): \(e)")
            }
            if e == .cancelled && Task.isCancelled { throw CancellationError() }
            return (.failure(.connection(url: url, message: "\(e)")), nil)
        } catch {
            if Task.isCancelled { throw CancellationError() }
            // NIOTooManyBytesError (swift-nio's, not imported here).
            if String(describing: type(of: error)).contains("TooManyBytes") {
                throw TeacherClientError.malformedResponse(url: url, reason: "reply larger than \(configuration.maxResponseBytes) bytes",
                                                           body: "")
            }
            return (.failure(.connection(url: url, message: "\(error)")), nil)
        }
        switch status {
        case 200..<300:
            let response = configuration.stream && endpoint == .chat
                ? try OpenAIWire.parseStream(bytes, url: url, model: configuration.model)
                : try OpenAIWire.parse(bytes, endpoint: endpoint, url: url, model: configuration.model)
            // Fewer choices than asked is a server that ignores `n` (llama.cpp, Ollama): the caller
            // asks again for the rest (`TracePipeline` does, one request per sample). None, or more
            // than asked, is a broken reply.
            guard !response.completions.isEmpty, response.completions.count <= n else {
                throw TeacherClientError.malformedResponse(
                    url: url, reason: "asked for \(n) choice\(n == 1 ? "" : "s"), got \(response.completions.count)",
                    body: OpenAIWire.excerpt(bytes))
            }
            return (.success(response), nil)
        case 429, 408, 500..<600:
            let message = OpenAIWire.errorDescription(bytes)
            return (.failure(.transientStatus(url: url, status: status, message: message)), retryAfterHeader.flatMap(Self.parseRetryAfter))
        default:
            throw TeacherClientError.httpStatus(url: url, status: status, message: OpenAIWire.errorDescription(bytes))
        }
    }

    /// Retry-After as seconds: a number of seconds, or an HTTP date.
    static func parseRetryAfter(_ value: String) -> Double? {
        let v = value.trimmingCharacters(in: .whitespaces)
        if let s = Double(v), s.isFinite { return max(0, s) }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = f.date(from: v) else { return nil }
        return max(0, date.timeIntervalSinceNow)
    }
}

/// In-flight counts and the round-robin cursor over base URLs, and the statistics.
final class EndpointState: @unchecked Sendable {
    private let urls: [String]
    private var inFlight: [Int]
    private var cursor = 0
    private var stats = TeacherClientStatistics()
    private let lock = NSLock()

    init(urls: [String]) {
        self.urls = urls
        inFlight = [Int](repeating: 0, count: urls.count)
    }

    /// The URL's index (for `release`) and the URL.
    func acquire(_ policy: TeacherLoadBalancing, retry: Bool) -> (Int, String) {
        lock.lock()
        defer { lock.unlock() }
        var pick = cursor % urls.count
        if policy == .leastInFlight {
            let fewest = inFlight.min()!
            for k in 0..<urls.count where inFlight[(cursor + k) % urls.count] == fewest {
                pick = (cursor + k) % urls.count
                break
            }
        }
        cursor = pick + 1
        inFlight[pick] += 1
        stats.attempts += 1
        if retry { stats.retries += 1 }
        stats.attemptsPerURL[urls[pick], default: 0] += 1
        return (pick, urls[pick])
    }

    func release(_ slot: Int) {
        lock.lock()
        defer { lock.unlock() }
        inFlight[slot] -= 1
    }

    func record(success: Bool) {
        lock.lock()
        defer { lock.unlock() }
        if success { stats.successes += 1 } else { stats.failures += 1 }
    }

    func statistics() -> TeacherClientStatistics {
        lock.lock()
        defer { lock.unlock() }
        return stats
    }
}
