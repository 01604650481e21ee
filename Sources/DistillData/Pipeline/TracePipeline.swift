import DistillTensor
import Foundation

// The `distill traces` pipeline (DeepSeek-R1 / open-r1 style rejection sampling), resumable:
// prompts → teacher (N candidates each) → RejectionSampler → GenerationStore (one transaction per
// prompt) → kept records as chat-messages JSONL + stats.json, both computed from the store.

/// Where a run's prompts come from.
public enum TracePromptSource: Sendable, Equatable {
    /// A prompts JSONL file (`PromptFile`).
    case file(String)
    /// A built-in generated task by name (`TracePipeline.taskNames`), `count` prompts from `seed`.
    case task(name: String, count: Int, seed: UInt64)
    /// Prompts given directly.
    case prompts([TracePrompt])
}

/// The sampling settings of every request (the OpenAI API's names).
public struct TraceSamplingSettings: Sendable, Equatable, Codable {
    public var temperature: Double
    public var topP: Double
    public var maxTokens: Int
    public var stop: [String]
    /// The run's seed; each candidate's seed derives from it, the prompt id and the sample index
    /// (`TracePipeline.sampleSeed`).
    public var seed: UInt64

    public init(temperature: Double = 0.7, topP: Double = 1, maxTokens: Int = 512, stop: [String] = [], seed: UInt64 = 0) {
        self.temperature = temperature
        self.topP = topP
        self.maxTokens = maxTokens
        self.stop = stop
        self.seed = seed
    }
}

/// Everything one run of the pipeline needs.
public struct TracePipelineConfiguration: Sendable {
    public var prompts: TracePromptSource
    public var teacher: any TeacherClient
    /// Candidates sampled per prompt (N).
    public var samplesPerPrompt: Int
    public var sampling: TraceSamplingSettings
    /// Candidates asked for in one request (nil: all N in one request). Request j of a prompt asks
    /// for samples j·k ..< (j+1)·k with the seed of sample j·k.
    public var samplesPerRequest: Int?
    /// Ask the teacher for the top-k log-probabilities of every sampled token (k ≤ 20, the API's
    /// limit) and store them with the kept candidates (nil: none).
    public var topLogprobs: Int?
    /// Sent before each prompt and written into each exported record.
    public var systemPrompt: String?
    public var template: TraceTemplate
    public var extractor: AnswerExtractor
    /// nil: no answer check.
    public var verifier: VerifierKind?
    /// nil: `RejectionSampler.standardFilters(template:)`.
    public var filters: [any TraceFilter]?
    /// How the filters are described in the store's pinned settings (filters are code, so the
    /// caller names them: e.g. ["max_length": "4000"]). A rerun with other values is refused.
    public var filterSettings: [String: String]
    public var keepPolicy: KeepPolicy
    public var deduplicate: Bool
    /// Prompts without a reference answer are verified by majority vote of their candidates.
    public var consensus: Consensus?
    public var storePath: String
    public var outputPath: String
    public var statsPath: String
    /// Prompts in flight at once.
    public var concurrency: Int
    /// At most this many pending prompts are processed by this run (nil: all); the rest stay pending.
    public var limit: Int?
    /// Reopen a store made with other settings (the stored ones stay).
    public var ignoreSettingsMismatch: Bool

    public init(prompts: TracePromptSource, teacher: any TeacherClient, samplesPerPrompt: Int = 4,
                sampling: TraceSamplingSettings = TraceSamplingSettings(), samplesPerRequest: Int? = nil,
                topLogprobs: Int? = nil, systemPrompt: String? = nil, template: TraceTemplate = .default, extractor: AnswerExtractor = .standard,
                verifier: VerifierKind? = .math(MathEquivalence()), filters: [any TraceFilter]? = nil,
                filterSettings: [String: String] = [:], keepPolicy: KeepPolicy = .allCorrect, deduplicate: Bool = true,
                consensus: Consensus? = nil,
                storePath: String, outputPath: String, statsPath: String, concurrency: Int = 8, limit: Int? = nil,
                ignoreSettingsMismatch: Bool = false) {
        self.prompts = prompts
        self.teacher = teacher
        self.samplesPerPrompt = samplesPerPrompt
        self.sampling = sampling
        self.samplesPerRequest = samplesPerRequest
        self.topLogprobs = topLogprobs
        self.systemPrompt = systemPrompt
        self.template = template
        self.extractor = extractor
        self.verifier = verifier
        self.filters = filters
        self.filterSettings = filterSettings
        self.keepPolicy = keepPolicy
        self.deduplicate = deduplicate
        self.consensus = consensus
        self.storePath = storePath
        self.outputPath = outputPath
        self.statsPath = statsPath
        self.concurrency = concurrency
        self.limit = limit
        self.ignoreSettingsMismatch = ignoreSettingsMismatch
    }
}

/// One prompt finished and recorded.
public struct TracePromptProgress: Sendable, Equatable {
    public var promptID: String
    /// Kept candidates of this prompt, out of `candidates`.
    public var kept: Int
    public var candidates: Int
    /// Prompts done in the store (this run and earlier ones), out of `total`.
    public var done: Int
    public var total: Int
    /// Kept / candidates over every done prompt in the store.
    public var acceptanceRate: Double
    /// Completion tokens per second of this run's wall time, when the teacher reports usage.
    public var tokensPerSecond: Double?
}

/// A prompt whose teacher request failed (after the client's own retries): it stays pending.
public struct TracePromptFailure: Sendable, Equatable {
    public var promptID: String
    public var message: String
}

/// Progress of a run, in order: `started`, then per prompt `promptDone` or `promptFailed`, then
/// `exported` and `finished`.
public enum TracePipelineEvent: Sendable, Equatable {
    /// `done` prompts were already recorded (a resumed run when > 0); `toProcess` will be asked for now.
    case started(total: Int, done: Int, toProcess: Int, newPrompts: Int)
    case promptDone(TracePromptProgress)
    /// `failedSoFar` counts this run's failures.
    case promptFailed(TracePromptFailure, failedSoFar: Int)
    case exported(records: Int, path: String)
    case finished(TracePipelineSummary)
}

/// What a run did and where its files went.
public struct TracePipelineSummary: Sendable, Equatable {
    /// Over every done prompt in the store (so a resumed run reports what an uninterrupted one would).
    public var statistics: SamplingStatistics
    public var counts: GenerationStoreCounts
    /// Prompts recorded by this run.
    public var processed: Int
    public var failures: [TracePromptFailure]
    public var records: Int
    public var storePath: String
    public var outputPath: String
    public var statsPath: String
    /// Completion tokens the teacher reported for this run, and the run's wall time.
    public var completionTokens: Int
    public var seconds: Double
}

public enum TracePipelineError: Error, Equatable, CustomStringConvertible {
    case invalidConfiguration(String)
    case unknownTask(String)
    /// Some prompts' requests failed; they stay pending in the store and a rerun retries them.
    case promptsFailed(failures: [TracePromptFailure], storePath: String)
    /// A stored candidate's rejection reasons cannot be read back.
    case unreadableReason(storePath: String, promptID: String, index: Int)

    public var description: String {
        switch self {
        case .invalidConfiguration(let m): return "traces: \(m)"
        case .unknownTask(let name): return "unknown task \"\(name)\" (known: \(TracePipeline.taskNames.joined(separator: ", ")))"
        case let .promptsFailed(failures, storePath):
            let shown = failures.prefix(5).map { "\($0.promptID): \($0.message)" }.joined(separator: "; ")
            let more = failures.count > 5 ? "; … and \(failures.count - 5) more" : ""
            return "\(failures.count) prompt\(failures.count == 1 ? "" : "s") failed and stay pending in \(storePath) "
                + "(\(shown)\(more)); run the same command again to retry them"
        case let .unreadableReason(path, id, index):
            return "\(path): the rejection reasons of candidate \(index) of prompt \"\(id)\" are not a list of rejections"
        }
    }
}

/// Rejection sampling of reasoning traces from a teacher, resumable through a `GenerationStore`.
///
/// `run` opens (or creates) the store with the configuration's settings, adds the prompts not yet
/// in it, and asks the teacher for N candidates of each pending prompt, `concurrency` prompts at a
/// time. Each prompt's candidates go through the `RejectionSampler` and are recorded with their
/// verdicts and the prompt's done flag in one transaction. Candidate seeds derive from (seed,
/// prompt id, sample index), never from completion order, and the output is exported from the
/// store in prompt order, so a run killed at any moment and started again writes the same JSONL
/// and stats.json as an uninterrupted run.
public struct TracePipeline: Sendable {
    public static let taskNames = ["word-problems"]
    /// The store's note that the teacher ignores `n` (a resumed run then asks one sample per request at once).
    static let ignoresNNote = "teacher_ignores_n"

    public var configuration: TracePipelineConfiguration
    /// Set once the teacher answered a request for several samples with fewer (it ignores `n`).
    let serverIgnoresN = LockedBox(false)

    public init(_ configuration: TracePipelineConfiguration) { self.configuration = configuration }

    // MARK: Pieces

    /// The seed of candidate `index` of a prompt: SplitMix64 over the run's seed, the FNV-1a 64
    /// hash of the prompt id and the index, cut to 31 bits (servers take small seeds: llama.cpp's
    /// is 32-bit).
    public static func sampleSeed(seed: UInt64, promptID: String, index: Int) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in promptID.utf8 {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        return mix(mix(seed ^ mix(h)) &+ UInt64(index)) & 0x7FFF_FFFF
    }

    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The prompts of a source, in order.
    public static func loadPrompts(_ source: TracePromptSource) throws -> [TracePrompt] {
        switch source {
        case .file(let path): return try PromptFile.read(path: path)
        case .prompts(let p): return p
        case let .task(name, count, seed):
            guard name == "word-problems" else { throw TracePipelineError.unknownTask(name) }
            guard count >= 1 else { throw TracePipelineError.invalidConfiguration("the task needs a count ≥ 1, got \(count)") }
            return WordProblems.generate(count: count, seed: seed).map {
                TracePrompt(id: $0.id, text: $0.prompt, answer: String($0.answer), source: name)
            }
        }
    }

    /// The settings the store pins: a rerun with any other value is refused.
    public var settings: GenerationSettings {
        let c = configuration
        var extra: [String: String] = [
            "top_p": String(c.sampling.topP),
            "max_tokens": String(c.sampling.maxTokens),
            "stop": Self.json(c.sampling.stop),
            "samples_per_request": c.samplesPerRequest.map(String.init) ?? "all",
            "system_prompt": c.systemPrompt ?? "",
            "verifier": c.verifier.map(Self.json) ?? "none",
            "keep": c.keepPolicy.rawValue,
            "deduplicate": String(c.deduplicate),
            "consensus": c.consensus.map { "\($0.minVotes) votes, \($0.minShare) share" } ?? "none",
            "filters": c.filters == nil ? "standard" : "custom",
        ]
        if let k = c.topLogprobs { extra["top_logprobs"] = String(k) }
        for (k, v) in c.filterSettings { extra["filter." + k] = v }
        let t = c.template
        let template = "\(t.openTag)…\(t.closeTag)" + (t.openTagInPrompt ? " (open tag in prompt)" : "")
        return GenerationSettings(teacherModel: c.teacher.modelName, template: template, samplesPerPrompt: c.samplesPerPrompt,
                                  temperature: c.sampling.temperature, seed: c.sampling.seed, extra: extra)
    }

    static func json<T: Encodable>(_ value: T) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? e.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "\(value)"
    }

    func makeSampler() throws -> RejectionSampler {
        let c = configuration
        return RejectionSampler(template: c.template.completionForm, extractor: c.extractor, filters: c.filters,
                                verifier: try c.verifier?.makeVerifier(), keepPolicy: c.keepPolicy, deduplicate: c.deduplicate,
                                consensus: c.consensus)
    }

    func validate() throws {
        let c = configuration
        func bad(_ m: String) -> TracePipelineError { .invalidConfiguration(m) }
        guard c.samplesPerPrompt >= 1 else { throw bad("samples per prompt must be ≥ 1, got \(c.samplesPerPrompt)") }
        guard c.concurrency >= 1 else { throw bad("concurrency must be ≥ 1, got \(c.concurrency)") }
        if let k = c.samplesPerRequest, k < 1 { throw bad("samples per request must be ≥ 1, got \(k)") }
        if let l = c.limit, l < 0 { throw bad("limit must be ≥ 0, got \(l)") }
        if let k = c.topLogprobs, !(0...20).contains(k) { throw bad("top log-probabilities must be in 0...20 (the API's limit), got \(k)") }
        do {
            try TeacherSampling(n: 1, temperature: c.sampling.temperature, topP: c.sampling.topP, maxTokens: c.sampling.maxTokens,
                                stop: c.sampling.stop).validate()
        } catch { throw bad("\(error)") }
    }

    /// The requests of one prompt: (first sample index, count, seed).
    func requests(for promptID: String) -> [(start: Int, n: Int, seed: UInt64)] {
        let n = configuration.samplesPerPrompt
        let per = configuration.samplesPerRequest ?? n
        return stride(from: 0, to: n, by: per).map {
            ($0, min(per, n - $0), Self.sampleSeed(seed: configuration.sampling.seed, promptID: promptID, index: $0))
        }
    }

    /// One candidate as the teacher gave it, with the seed of the request that produced it.
    struct Sampled {
        var completion: TeacherCompletion
        var seed: UInt64
    }

    /// Asks the teacher for every candidate of one prompt, ordered by sample index.
    ///
    /// A server that ignores `n` (llama.cpp's, Ollama's) answers a request for k samples with fewer
    /// choices: the missing samples are then asked for one request each, sample i with its own
    /// seed `sampleSeed(…, index: i)`; from then on this run (and, through the store, a resumed one)
    /// asks one sample per request right away. Both ways give sample i the same seed, so the
    /// candidates do not depend on when the server's habit was noticed.
    func candidates(for prompt: TracePrompt) async throws -> (texts: [Sampled], promptTokens: Int?, completionTokens: Int?) {
        let c = configuration
        var messages: [TeacherMessage] = []
        if let s = c.systemPrompt { messages.append(.system(s)) }
        messages.append(.user(prompt.text))
        var out: [Sampled] = []
        var promptTokens: Int?
        var completionTokens: Int?
        func ask(n: Int, seed: UInt64) async throws -> [TeacherCompletion] {
            var sampling = TeacherSampling(n: n, temperature: c.sampling.temperature, topP: c.sampling.topP,
                                           maxTokens: c.sampling.maxTokens, stop: c.sampling.stop, seed: seed)
            if let k = c.topLogprobs {
                sampling.logprobs = true
                sampling.topLogprobs = k
            }
            let response = try await c.teacher.complete(.chat(messages), sampling: sampling)
            if let u = response.usage {
                promptTokens = u.promptTokens
                completionTokens = (completionTokens ?? 0) + u.completionTokens
            }
            let got = response.completions.sorted { $0.index < $1.index }
            guard !got.isEmpty, got.count <= n else {
                throw TeacherClientError.local("the teacher returned \(got.count) completions, \(n) were asked for")
            }
            return got
        }
        let perSample = serverIgnoresN.value
        for r in requests(for: prompt.id) {
            var got: [Sampled] = []
            if !perSample || r.n == 1 {
                got = try await ask(n: r.n, seed: r.seed).map { Sampled(completion: $0, seed: r.seed) }
                if got.count < r.n { serverIgnoresN.value = true }
            }
            // The rest one by one (all of them when the server is known to ignore n).
            for i in (r.start + got.count)..<(r.start + r.n) {
                let seed = Self.sampleSeed(seed: c.sampling.seed, promptID: prompt.id, index: i)
                got.append(Sampled(completion: try await ask(n: 1, seed: seed)[0], seed: seed))
            }
            for (i, var sampled) in got.enumerated() {
                sampled.completion.index = r.start + i
                out.append(sampled)
            }
        }
        return (out, promptTokens, completionTokens)
    }

    /// Rejection reasons as stored in the `reason` column: a JSON array of {"detail", "kind"}.
    static func encodeReasons(_ rejections: [Rejection]) -> String? {
        rejections.isEmpty ? nil : json(rejections)
    }

    // MARK: Statistics

    /// Statistics over every done prompt of the store (the same for a resumed and an uninterrupted run).
    public func statistics(of store: GenerationStore) throws -> SamplingStatistics {
        var stats = SamplingStatistics()
        let template = configuration.template.completionForm
        let extractor = configuration.extractor
        try store.doneResults { prompt, stored in
            let outcomes = try stored.map { c -> CandidateOutcome in
                var rejections: [Rejection] = []
                if c.verdict == .rejected {
                    guard let data = c.reason?.data(using: .utf8), let r = try? JSONDecoder().decode([Rejection].self, from: data), !r.isEmpty else {
                        throw TracePipelineError.unreadableReason(storePath: store.path, promptID: prompt.id, index: c.index)
                    }
                    rejections = r
                }
                return CandidateOutcome(index: c.index, completion: c.text, trace: template.parse(c.text, extractor: extractor),
                                        rejections: rejections)
            }
            stats.add(SamplingResult(prompt: prompt, candidates: outcomes))
        }
        return stats
    }

    // MARK: Run

    /// Runs the pipeline (see the type's documentation). Events go to `onEvent` from one task at a
    /// time. Throws `TracePipelineError.promptsFailed` at the end when a prompt's request failed
    /// (the output files are still written from what the store holds).
    @discardableResult
    public func run(onEvent: @escaping @Sendable (TracePipelineEvent) -> Void = { _ in }) async throws -> TracePipelineSummary {
        try validate()
        let c = configuration
        _ = try makeSampler()  // a bad verifier fails before any request
        let prompts = try Self.loadPrompts(c.prompts)
        guard !prompts.isEmpty else { throw TracePipelineError.invalidConfiguration("no prompts") }
        let store = try GenerationStore(path: c.storePath, settings: settings, ignoreSettingsMismatch: c.ignoreSettingsMismatch)
        let added = try store.insertPrompts(prompts)
        var notedIgnoresN = try store.note(Self.ignoresNNote) == "true"
        if notedIgnoresN { serverIgnoresN.value = true }
        var pending = try store.pendingPrompts()
        if let limit = c.limit { pending = Array(pending.prefix(limit)) }
        var counts = try store.counts()
        onEvent(.started(total: counts.prompts, done: counts.done, toProcess: pending.count, newPrompts: added))

        let start = Date()
        var processed = 0
        var tokens = 0
        var failures: [TracePromptFailure] = []
        typealias Outcome = (prompt: TracePrompt, result: Result<(candidates: [StoredCandidate], kept: Int, tokens: Int?), Error>)
        try await withThrowingTaskGroup(of: Outcome.self) { group in
            var next = 0
            func launch() {
                let prompt = pending[next]
                next += 1
                group.addTask {
                    do {
                        let got = try await self.candidates(for: prompt)
                        // Checked, stored and exported in the template's full form (see `TraceTemplate.completion`).
                        let texts = got.texts.map { c.template.completion(text: $0.completion.text, reasoning: $0.completion.reasoning) }
                        let result = try self.makeSampler().sample(prompt: prompt, candidates: texts)
                        let stored = try zip(zip(got.texts, texts), result.candidates).map { pair, outcome in
                            var candidate = try StoredCandidate(pair.0.completion, promptTokens: got.promptTokens,
                                                                verdict: outcome.isKept ? .kept : .rejected,
                                                                reason: Self.encodeReasons(outcome.rejections),
                                                                keepLogprobs: c.topLogprobs != nil && outcome.isKept)
                            candidate.text = pair.1
                            candidate.reasoning = pair.0.completion.reasoning
                            candidate.rawText = pair.0.completion.text
                            candidate.seed = pair.0.seed
                            return candidate
                        }
                        return (prompt, .success((stored, result.kept.count, got.completionTokens)))
                    } catch {
                        return (prompt, .failure(error))
                    }
                }
            }
            while next < pending.count && next < c.concurrency { launch() }
            while let outcome = try await group.next() {
                try Task.checkCancellation()
                switch outcome.result {
                case .success(let r):
                    try store.recordResults(promptID: outcome.prompt.id, candidates: r.candidates)
                    if serverIgnoresN.value && !notedIgnoresN {
                        try store.setNote(Self.ignoresNNote, "true")
                        notedIgnoresN = true
                    }
                    processed += 1
                    tokens += r.tokens ?? 0
                    counts.done += 1
                    counts.pending -= 1
                    counts.candidates += r.candidates.count
                    counts.kept += r.kept
                    let elapsed = Date().timeIntervalSince(start)
                    onEvent(.promptDone(TracePromptProgress(
                        promptID: outcome.prompt.id, kept: r.kept, candidates: r.candidates.count, done: counts.done, total: counts.prompts,
                        acceptanceRate: counts.candidates == 0 ? 0 : Double(counts.kept) / Double(counts.candidates),
                        tokensPerSecond: tokens > 0 && elapsed > 0 ? Double(tokens) / elapsed : nil)))
                case .failure(let error):
                    if error is CancellationError || Task.isCancelled { throw CancellationError() }
                    let failure = TracePromptFailure(promptID: outcome.prompt.id, message: "\(error)")
                    failures.append(failure)
                    onEvent(.promptFailed(failure, failedSoFar: failures.count))
                }
                if next < pending.count { launch() }
            }
        }

        let records = try store.exportKept(to: c.outputPath, systemPrompt: c.systemPrompt)
        onEvent(.exported(records: records, path: c.outputPath))
        let stats = try statistics(of: store)
        try stats.write(to: c.statsPath)
        let summary = TracePipelineSummary(statistics: stats, counts: try store.counts(), processed: processed, failures: failures,
                                           records: records, storePath: c.storePath, outputPath: c.outputPath, statsPath: c.statsPath,
                                           completionTokens: tokens, seconds: Date().timeIntervalSince(start))
        onEvent(.finished(summary))
        if !failures.isEmpty {
            let order = Dictionary(uniqueKeysWithValues: pending.enumerated().map { ($1.id, $0) })
            failures.sort { order[$0.promptID, default: 0] < order[$1.promptID, default: 0] }
            throw TracePipelineError.promptsFailed(failures: failures, storePath: c.storePath)
        }
        return summary
    }
}
