import ArgumentParser
import DistillData
import Distillation
import DistillModels
import DistillTensor
import Foundation

struct Traces: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Samples reasoning traces from a teacher and keeps the verified ones (rejection sampling, resumable).",
        discussion: """
            Each prompt gets --n candidates from the teacher (an OpenAI-compatible server or a local model); \
            candidates that break the <think>…</think> template, fail a filter or give a wrong answer are \
            rejected. Everything is recorded in --store (SQLite), one transaction per prompt: kill the command \
            at any moment and run it again to continue; the result equals an uninterrupted run's. The kept \
            traces go to --out as chat-messages JSONL, the statistics to --stats.

            Examples:
              distill traces --task word-problems --count 200 --teacher-local teacher/ --n 4 --out traces.jsonl
              distill traces --prompts gsm8k.jsonl --teacher-url http://127.0.0.1:8000/v1 --teacher-model qwen \\
                --n 8 --temperature 0.6 --max-tokens 2048 --keep shortest --out traces.jsonl
            """)

    @Option(help: "A prompts JSONL file ({\"prompt\": …, \"answer\": …, \"id\": …, \"source\": …} per line).") var prompts: String?
    @Option(help: "A built-in task instead of --prompts: word-problems.") var task: String?
    @Option(help: "Prompts the task generates.") var count = 100
    @Option(help: "Base URL(s) of an OpenAI-compatible teacher, comma-separated (e.g. http://127.0.0.1:8000/v1).") var teacherUrl: String?
    @Option(help: "The model name the teacher server knows.") var teacherModel: String?
    @Option(help: "Environment variable holding the teacher server's API key.") var apiKeyEnv: String?
    @Option(help: "A local teacher model instead of a server (a Hugging Face directory or a .gguf file).") var teacherLocal: String?
    @Option(name: .customLong("n"), help: "Candidates sampled per prompt.") var n = 4
    @Option(help: "Sampling temperature.") var temperature = 0.7
    @Option(help: "Nucleus sampling threshold.") var topP = 1.0
    @Option(help: "Most tokens per candidate.") var maxTokens = 512
    @Option(help: "Seed of the run (each candidate's seed derives from it, the prompt id and the sample index); also the task's seed.") var seed: UInt64 = 0
    @Option(help: "Which correct candidates to keep: all, first, shortest.") var keep = "all"
    @Option(help: "Answer check: math, exact, regex:PATTERN (regex: alone uses each prompt's answer as the pattern), none.") var verifier = "math"
    @Option(help: "Verify prompts without a reference answer by majority vote: keep candidates whose answer at least this many candidates (and half of them) share.") var consensus: Int?
    @Option(help: "Reject completions shorter than this many characters.") var minLength: Int?
    @Option(help: "Reject completions longer than this many characters.") var maxLength: Int?
    @Option(help: "A system message sent with every prompt and written into every record.") var system: String?
    @Option(help: "The kept traces (chat-messages JSONL).") var out = "traces.jsonl"
    @Option(help: "The statistics (JSON).") var stats = "stats.json"
    @Option(help: "The generation store (SQLite); rerunning with it resumes.") var store = "traces.sqlite"
    @Option(help: "Ask for at most this many samples per request (1 for servers that ignore n; found by itself when a server answers with fewer choices than asked).") var samplesPerRequest: Int?
    @Flag(help: "Ask the server for streamed replies (server-sent events; long reasoning keeps the connection busy).") var stream = false
    @Option(help: "The think tags, as OPEN,CLOSE.") var thinkTags = "<think>,</think>"
    @Flag(help: "The prompt already opens the think block (completions hold only the closing tag); found by itself from the chat template of --teacher-local or --tokenizer.") var thinkInPrompt = false
    @Flag(help: "Keep candidates without a think block (a teacher that does not reason, such as an instruct model): the template check is off, the whole completion is the answer.") var noThinkRequired = false
    @Option(help: "A model (HF directory or .gguf) whose tokenizer and chat template stand for the student's: --logprobs maps to its token ids, and its template tells whether the prompt opens the think block. Default: --teacher-local.") var tokenizer: String?
    @Option(help: "Ask the teacher for its top-K log-probabilities of every sampled token (K ≤ 20) and write them: as a tokens file over --out (any student: teacher.server_tokens with loss.cross_tokenizer), and with --tokenizer (or --teacher-local) mapped to that tokenizer's ids as a logit cache (teacher.cache).") var logprobs: Int?
    @Option(help: "The tokens file --logprobs writes (default: --out with the extension .tokens.jsonl).") var serverTokens: String?
    @Option(help: "The logit cache --logprobs writes (default: --out with the extension .logits).") var targets: String?
    @Option(help: "Tokens per training sequence of that cache: the recipe's data.max_length.") var targetsMaxLength = 512
    @Option(help: "Prompts in flight at once.") var concurrency = 8
    @Option(help: "Process at most this many pending prompts in this run.") var limit: Int?
    @Option(help: "Print a progress line every K prompts.") var progressEvery = 1
    @Flag(help: "Continue a store made with other settings (keeps the stored ones).") var ignoreSettingsMismatch = false
    @Option(help: "Skip prompts sharing an n-gram with this evaluation JSONL file (repeat for several; see distill decontaminate).") var decontaminate: [String] = []
    @Option(help: "Words per n-gram for --decontaminate.") var ngram = 8

    func validate() throws {
        guard (prompts == nil) != (task == nil) else { throw ValidationError("give either --prompts FILE or --task NAME") }
        guard (teacherUrl == nil) != (teacherLocal == nil) else { throw ValidationError("give either --teacher-url or --teacher-local") }
        if teacherUrl != nil && teacherModel == nil { throw ValidationError("--teacher-url needs --teacher-model") }
        guard KeepPolicy(rawValue: keep) != nil else { throw ValidationError("--keep must be all, first or shortest, got \(keep)") }
        guard n >= 1 else { throw ValidationError("--n must be at least 1") }
        guard concurrency >= 1 else { throw ValidationError("--concurrency must be at least 1") }
        guard progressEvery >= 1 else { throw ValidationError("--progress-every must be at least 1") }
        if let consensus, consensus < 1 || consensus > n { throw ValidationError("--consensus must be in 1...--n (\(n)), got \(consensus)") }
        if consensus != nil && verifier == "none" { throw ValidationError("--consensus needs a verifier to compare answers (math or exact)") }
        if let k = samplesPerRequest, k < 1 { throw ValidationError("--samples-per-request must be at least 1, got \(k)") }
        if let k = logprobs {
            guard (1...20).contains(k) else { throw ValidationError("--logprobs must be in 1...20 (the OpenAI API's limit), got \(k)") }
        }
        guard targetsMaxLength >= 2 else { throw ValidationError("--targets-max-length must be at least 2") }
        guard ngram >= 1 else { throw ValidationError("--ngram must be at least 1, got \(ngram)") }
        _ = try traceTemplate(promptOpens: false)
        _ = try verifierKind()
    }

    func verifierKind() throws -> VerifierKind? {
        switch verifier {
        case "math": return .math(MathEquivalence())
        case "exact": return .exact(caseInsensitive: false, target: .finalAnswer)
        case "none": return nil
        default:
            guard verifier.hasPrefix("regex:") else {
                throw ValidationError("--verifier must be math, exact, regex:PATTERN or none, got \(verifier)")
            }
            let pattern = String(verifier.dropFirst(6))
            return .regex(pattern: pattern.isEmpty ? nil : pattern, target: .answerText, caseInsensitive: false)
        }
    }

    /// The trace template of --think-tags, the opening tag in the prompt when forced or found.
    func traceTemplate(promptOpens: Bool) throws -> TraceTemplate {
        let tags = thinkTags.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard tags.count == 2, !tags[0].isEmpty, !tags[1].isEmpty, tags[0] != tags[1] else {
            throw ValidationError("--think-tags must be OPEN,CLOSE (two different tags), got \(thinkTags)")
        }
        return TraceTemplate(openTag: tags[0], closeTag: tags[1], openTagInPrompt: thinkInPrompt || promptOpens)
    }

    func run() throws {
        let teacher: any TeacherClient
        var http: HTTPTeacherClient?
        var local: PretrainedModel?
        if let urls = teacherUrl, let model = teacherModel {
            var config = HTTPTeacherConfiguration(baseURLs: urls.split(separator: ",").map { String($0) }, model: model,
                                                  apiKeyEnvironmentVariable: apiKeyEnv)
            config.maxInFlight = max(config.maxInFlight, concurrency)
            config.stream = stream
            do { http = try HTTPTeacherClient(config) } catch { throw CLIError("\(error)") }
            teacher = http!
        } else {
            do {
                local = try loadModel(teacherLocal!)
                teacher = try LocalTeacherClient(model: local!, name: teacherLocal!)
            } catch { throw CLIError("\(error)") }
        }
        // The student's stand-in: its tokenizer maps log-probabilities, its template tells whether
        // the prompt opens the think block.
        let reference = try tokenizer.map(loadModel) ?? local
        var template = try traceTemplate(promptOpens: false)
        if !template.openTagInPrompt, let reference, let chat = reference.chatTemplate, let tok = reference.tokenizer {
            let messages = (system.map { [ChatMessage(role: "system", content: $0)] } ?? []) + [ChatMessage(role: "user", content: "?")]
            if let rendered = try? chat.render(messages: messages, addGenerationPrompt: true, bosToken: tok.bosToken, eosToken: tok.eosToken),
               template.promptOpensThinkBlock(rendered) {
                template = try traceTemplate(promptOpens: true)
                print("the chat template's generation prompt opens the think block (\(template.openTag)): completions are read as continuing it")
            }
        }
        var filters = RejectionSampler.standardFilters(template: template.completionForm)
        var filterSettings: [String: String] = [:]
        if noThinkRequired {
            filters.removeAll { $0 is TemplateFilter }
            filterSettings["template"] = "off"
        }
        if minLength != nil || maxLength != nil {
            filters.append(LengthFilter.characters(minimum: minLength, maximum: maxLength))
            if let minLength { filterSettings["min_length"] = String(minLength) }
            if let maxLength { filterSettings["max_length"] = String(maxLength) }
        }
        var source: TracePromptSource = prompts.map { .file($0) } ?? .task(name: task!, count: count, seed: seed)
        if !decontaminate.isEmpty {
            let d = try Decontaminator(against: decontaminate, n: ngram)
            let all = try TracePipeline.loadPrompts(source)
            let clean = all.filter { d.overlap(["prompt": $0.text]) == nil }
            print("decontamination: \(all.count - clean.count) of \(all.count) prompts share a \(ngram)-gram with \(decontaminate.joined(separator: ", ")) and are skipped")
            guard !clean.isEmpty else { throw CLIError("every prompt overlaps the evaluation set") }
            source = .prompts(clean)
        }
        let pipeline = TracePipeline(TracePipelineConfiguration(
            prompts: source, teacher: teacher, samplesPerPrompt: n,
            sampling: TraceSamplingSettings(temperature: temperature, topP: topP, maxTokens: maxTokens, seed: seed),
            samplesPerRequest: samplesPerRequest, topLogprobs: logprobs,
            systemPrompt: system, template: template, verifier: try verifierKind(), filters: filters, filterSettings: filterSettings,
            keepPolicy: KeepPolicy(rawValue: keep)!, consensus: consensus.map { Consensus(minVotes: $0) }, storePath: store, outputPath: out, statsPath: stats,
            concurrency: concurrency, limit: limit, ignoreSettingsMismatch: ignoreSettingsMismatch))

        let every = progressEvery
        let seen = LockedBox(0)
        let onEvent: @Sendable (TracePipelineEvent) -> Void = { event in
            switch event {
            case let .started(total, done, toProcess, added):
                let resumed = done > 0 ? ", resuming: \(done) already done" : ""
                print("\(total) prompts (\(added) new)\(resumed); sampling \(toProcess) now, \(pipeline.configuration.samplesPerPrompt) candidates each")
            case .promptDone(let p):
                seen.value += 1
                guard seen.value % every == 0 || p.done == p.total else { break }
                let speed = p.tokensPerSecond.map { String(format: ", %.1f tok/s", $0) } ?? ""
                print("[\(p.done)/\(p.total)] \(p.promptID): kept \(p.kept)/\(p.candidates), acceptance "
                      + String(format: "%.1f%%", p.acceptanceRate * 100) + speed)
            case let .promptFailed(f, failed):
                print("prompt \(f.promptID) failed (\(failed) so far; stays pending): \(f.message)")
            case .exported, .finished:
                break
            }
            fflush(stdout)
        }

        let summaryBox = LockedBox<TracePipelineSummary?>(nil)
        // The client is shut down whether or not the run succeeds; the summary is printed either way.
        let result: Result<TracePipelineSummary, Error> = try runBlocking {
            let r: Result<TracePipelineSummary, Error>
            do {
                r = .success(try await pipeline.run { event in
                    if case .finished(let s) = event { summaryBox.value = s }
                    onEvent(event)
                })
            } catch {
                r = .failure(error)
            }
            try? await http?.shutdown()
            return r
        }
        if let s = summaryBox.value {
            printSummary(s)
            if let k = logprobs { try writeTargets(k: k, model: reference, summary: s, settings: pipeline.settings) }
        }
        if case .failure(let error) = result { throw CLIError("\(error)") }
    }

    /// The kept traces' log-probabilities: their tokens (any student tokenizer) and, with a
    /// student tokenizer, a logit cache over --out; what the mapping did goes into stats.json
    /// (`teacher_targets`).
    func writeTargets(k: Int, model: PretrainedModel?, summary s: TracePipelineSummary, settings: GenerationSettings) throws {
        let path = targets ?? ((out as NSString).deletingPathExtension + ".logits")
        let tokensPath = serverTokens ?? ((out as NSString).deletingPathExtension + ".tokens.jsonl")
        do {
            let store = try GenerationStore(path: s.storePath, settings: settings, ignoreSettingsMismatch: true)
            let records = try store.keptCandidates()
            guard !records.isEmpty else { print("no kept trace: no teacher targets written"); return }
            let spans = records.map { r in ServerTokenSpans(completion: r.text, logprobs: (try? r.decodedLogprobs() ?? []) ?? []) }
            try ServerTokenSpans.write(spans, to: tokensPath)
            let placed = spans.reduce(0) { $0 + $1.ends.filter { $0 >= 0 }.count }, sampled = spans.reduce(0) { $0 + $1.ends.count }
            print("teacher tokens: \(placed) of \(sampled) sampled tokens placed in their completions; wrote \(tokensPath) "
                  + "(a student with another tokenizer trains with teacher.server_tokens: \(tokensPath), loss.cross_tokenizer, loss.temperature: 1)")
            guard let model else { return }
            let st = try ServerTargets.writeCache(dataFile: s.outputPath, records: records, tokenizer: try model.requireTokenizer(),
                                                  chatTemplate: model.chatTemplate, vocabularySize: model.lm.config.vocabSize, k: k,
                                                  maxLength: targetsMaxLength, path: path)
            try SamplingStatistics.addSection("teacher_targets", st, to: s.statsPath)
            let dropped = st.droppedPositions.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            print("teacher targets: \(st.mappedPositions) of \(st.sampledTokens) sampled tokens mapped to top-\(k) rows"
                  + (dropped.isEmpty ? "" : " (left out: \(dropped))") + "; wrote \(path) (train with teacher.cache: \(path), loss.temperature: 1)")
        } catch { throw CLIError("\(error)") }
    }

    func printSummary(_ s: TracePipelineSummary) {
        let o = s.statistics.overall
        print(String(format: "acceptance %.1f%%: %d of %d candidates kept; %d of %d prompts have a kept trace",
                     o.acceptanceRate * 100, o.kept, o.candidates, o.promptsWithKept, o.prompts))
        let reasons = s.statistics.rejectionReasons.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        if !reasons.isEmpty {
            print("rejections: " + reasons.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        if s.counts.pending > 0 { print("\(s.counts.pending) prompts still pending (run again to continue)") }
        print("wrote \(s.records) records to \(s.outputPath), statistics to \(s.statsPath); store \(s.storePath)")
    }
}
