import Distillation
import DistillData
import DistillModels
import DistillNN
import DistillTensor
import Foundation

/// The pieces of `distill demo`: a byte-level tokenizer with a ChatML template, the teacher and
/// student shapes, training on chat examples, and greedy evaluation on word problems.
public enum DemoModels {
    public static let specialTokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    /// ChatML, as Qwen2 and SmolLM2 use it.
    public static let chatTemplate = """
        {% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}\
        {% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}
        """

    public static func tokenizer() throws -> Tokenizer {
        try Tokenizer.byteLevel(specialTokens: specialTokens, eosToken: "<|im_end|>", padToken: "<|endoftext|>",
                                chatTemplate: chatTemplate)
    }

    /// A Qwen2 configuration (tied embeddings) over the byte-level vocabulary.
    public static func config(hidden: Int, layers: Int, heads: Int, kvHeads: Int, intermediate: Int) -> ModelConfig {
        ModelConfig(json: [
            "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 256 + specialTokens.count,
            "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kvHeads,
            "intermediate_size": intermediate, "max_position_embeddings": 512, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
            "tie_word_embeddings": true, "hidden_act": "silu", "bos_token_id": 256, "eos_token_id": 258,
        ], source: "demo config")
    }

    public static let teacherConfig = config(hidden: 128, layers: 4, heads: 4, kvHeads: 2, intermediate: 384)

    /// A model with random weights drawn from `seed`, with the demo tokenizer and template.
    public static func makeModel(_ config: ModelConfig, seed: UInt64, path: String = "") throws -> PretrainedModel {
        let lm = TransformerLM(try Architecture.qwen2.decoderConfig(config), seed: seed)
        return PretrainedModel(architecture: .qwen2, config: config, lm: lm, path: path,
                               generationConfig: ["eos_token_id": 258, "pad_token_id": 256],
                               tokenizer: try tokenizer(), chatTemplate: try ChatTemplate(source: chatTemplate))
    }

    /// Chat examples (user prompt → assistant answer) as token sequences with assistant-only loss masks.
    public static func sequences(_ pairs: [(prompt: String, answer: String)], model: PretrainedModel) throws -> [TokenSequence] {
        var lines = Data()
        for p in pairs {
            let obj: [String: Any] = ["messages": [["role": "user", "content": p.prompt], ["role": "assistant", "content": p.answer]]]
            lines.append(try JSONSerialization.data(withJSONObject: obj))
            lines.append(0x0A)
        }
        return try TextDataFile(data: lines, path: "demo data").sequences(with: try model.requireTokenizer(),
                                                                            chatTemplate: model.chatTemplate, assistantOnly: true)
    }

    /// Greedy answers to `problems` (batched), the share whose final answer is right, and decode speed.
    public static func evaluate(_ model: PretrainedModel, _ problems: [WordProblem], batch: Int = 64, maxTokens: Int = 64)
        throws -> (accuracy: Double, tokensPerSecond: Double, completions: [String]) {
        let start = Date()
        let answers = try model.greedyAnswers(problems.map(\.prompt), chat: true, maxTokens: maxTokens, batchSize: batch)
        let completions = answers.map(\.text), generated = answers.reduce(0) { $0 + $1.tokens }
        let secs = Date().timeIntervalSince(start)
        // Right = the answer after the last "####" equals the reference (the verifiers' number rules).
        let extractor = AnswerExtractor(rules: [.gsm8k]), equal = MathEquivalence()
        let correct = zip(completions, problems).filter { c, p in
            extractor.extract(from: c).map { equal.equivalent($0.text, String(p.answer)) } ?? false
        }.count
        return (Double(correct) / Double(max(1, problems.count)), Double(generated) / max(secs, 1e-9), completions)
    }

    public enum TeacherProgress {
        case step(StepMetrics, total: Int)
        case evaluated(step: Int, accuracy: Double)
    }

    /// Trains the demo teacher from scratch on `problems` ground-truth solutions (hard labels,
    /// assistant tokens, packed rows) and writes it to `out` (F16 weights, tokenizer, template).
    /// Checkpoints go to `out/checkpoints`; a later call resumes from the newest one.
    @discardableResult
    public static func trainTeacher(out: String, steps: Int, problems: Int = 40_000, seed: UInt64 = 1,
                                    progress: @escaping (TeacherProgress) -> Void = { _ in }) throws -> PretrainedModel {
        let model = try makeModel(teacherConfig, seed: seed, path: out)
        let data = WordProblems.generate(count: problems, seed: seed, idPrefix: "teacher")
        let train = try sequences(data.map { ($0.prompt, $0.solution) }, model: model)
        let held = WordProblems.generate(count: 200, seed: seed &+ 1000, idPrefix: "teacher-eval")
        let dir = URL(fileURLWithPath: out)
        var c = TrainerConfiguration(totalSteps: steps, batchSize: 24, layout: .packed(rowLength: 256, padId: 256),
                                     order: .shuffled(seed: seed),
                                     learningRate: .warmupCosine(peak: 2e-3, warmup: 100, total: steps, floor: 1e-4),
                                     weightDecay: 0.01, maxGradNorm: 1, checkpointEvery: 200,
                                     checkpointDirectory: dir.appendingPathComponent("checkpoints"),
                                     metricsLog: dir.appendingPathComponent("metrics.jsonl"), seed: seed)
        c.evalBatchSize = 64
        let trainer = Trainer(student: model.lm, train: train, plan: .hardOnly, configuration: c)
        trainer.onEvent = { event in
            guard case .step(let m) = event else { return }
            progress(.step(m, total: steps))
            if m.step % 500 == 0 || m.step == steps, let r = try? evaluate(model, held) {
                progress(.evaluated(step: m.step, accuracy: r.accuracy))
            }
        }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try trainer.resumeFromLatestCheckpoint()
        try trainer.run()
        try model.saveDirectory(out, dtype: .f16)
        return model
    }
}

/// `distill demo`: the whole chain on the built-in word-problem task.
///
/// 1. The teacher (a model Distill trained from scratch on 40,000 generated problems, shipped in
///    `demo/teacher`; `distill demo --train-teacher DIR` remakes it) is wrapped as a
///    `TeacherClient` — the same interface as a model behind an OpenAI-compatible server.
/// 2. It writes N candidate traces per prompt at a temperature (requests sent concurrently and
///    batched); rejection sampling keeps those that follow the `<think>…</think>` template and
///    reach the reference answer (labeled problems) or the answer the samples agree on (unlabeled
///    problems: self-consistency).
/// 3. Two students of the same shape (25% of the teacher: all 4 layers, each pruned to its most
///    important key/value group of heads and 47 of 384 MLP neurons, see `StudentDerivation`)
///    train for the same steps from the same initialisation, side by side (each on half of the
///    cores, `sideBySide`): the baseline on the labeled
///    problems' ground-truth solutions, the distilled one on the kept traces with the teacher's
///    soft targets (0.5·KL(τ=2)·τ² + 0.5·cross-entropy on the assistant tokens; the teacher's
///    logits per trace computed once, `MemoizedTeacher`), optionally with hidden-state matching
///    and on-policy steps.
/// 4. All three answer held-out problems greedily; accuracy is the share of right final answers.
public enum ReasoningDemo {
    public struct Options: Sendable {
        public var teacherPath = "demo/teacher"
        /// Where traces, stats.json and report.json go.
        public var outputDirectory = "demo-run"
        /// Problems with ground-truth solutions: the baseline's data, and prompts for traces
        /// checked against their answers.
        public var trainPrompts = 2000
        /// Further problems given to the teacher as questions only (no solution or answer, as
        /// prompts usually come): traces kept when the teacher's samples agree on the answer.
        public var unlabeledPrompts = 6000
        public var testPrompts = 300
        public var samplesPerPrompt = 2
        public var traceTemperature = 0.8
        /// The students' shape: the teacher's hidden size, pruned heads and MLP (derived from the
        /// teacher, see `StudentDerivation`); at most a quarter of the teacher's parameters.
        public var studentLayers = 4
        public var studentIntermediate = 47
        /// Query and key/value heads of the students (fewer than the teacher's: whole key/value
        /// groups pruned, see `StudentDerivation`); nil: the teacher's.
        public var studentHeads: Int? = 2
        public var studentKVHeads: Int? = 1
        /// Teacher layers the students copy (nil: the uniform pick, first and last).
        public var studentLayerMap: [Int]?
        public var studentSteps = 4000
        public var batchSize = 16
        public var learningRate: Float = 2e-3
        public var alpha: Float = 0.5
        public var temperature: Float = 2
        /// Weight of the hidden-state (feature) term of the distilled student: MSE between each
        /// student layer's output and the teacher's at the uniform layer map.
        public var featureWeight: Float = 0
        /// Share of the distilled student's steps trained on its own samples with the teacher's
        /// targets (on-policy distillation).
        public var onPolicyFraction = 0.0
        public var seed: UInt64 = 7
        public init() {}
    }

    public struct ModelResult: Codable, Sendable {
        public var params: Int
        public var accuracy: Double
        /// Generated tokens per second, greedy, batches of 64 prompts.
        public var tokensPerSecond: Double
        /// Mean time to answer one problem alone (batch 1), milliseconds.
        public var latencyMs: Double
    }

    /// The distilled student as deployed: a GGUF file of one type, loaded back and evaluated.
    public struct DeployedResult: Codable, Sendable {
        /// f32, q8_0 or q4_k_m.
        public var type: String
        public var path: String
        public var fileBytes: Int
        public var result: ModelResult
    }

    public struct Report: Codable, Sendable {
        public var teacher: ModelResult
        public var baselineStudent: ModelResult
        public var distilledStudent: ModelResult
        /// The distilled student exported for llama.cpp as F32, Q8_0 and Q4_K_M.
        public var distilledDeployed: [DeployedResult]
        public var traceAcceptanceRate: Double
        public var tracesKept: Int
        public var trainPrompts: Int
        public var unlabeledPrompts: Int
        /// Traces kept from the unlabeled prompts (included in `tracesKept`).
        public var unlabeledTracesKept: Int
        public var testPrompts: Int
        public var studentSteps: Int
        public var seconds: Double
    }

    public enum Progress {
        case loaded(teacherParameters: Int)
        /// Answers received so far; `kept` (traces that passed the verifiers) once all are in.
        case traces(done: Int, total: Int, kept: Int?)
        case training(model: String, step: Int, total: Int, loss: Float)
        case evaluating(model: String)
    }

    public static func run(_ o: Options = Options(), progress: @escaping (Progress) -> Void = { _ in }) async throws -> Report {
        let start = Date()
        guard FileManager.default.fileExists(atPath: o.teacherPath) else {
            throw TrainerError.invalidConfiguration(
                "\(o.teacherPath): the demo teacher is missing (run from the repository root, or make one with `distill demo --train-teacher \(o.teacherPath)`)")
        }
        let teacher = try PretrainedModel.load(o.teacherPath)
        teacher.lm.freeze()
        progress(.loaded(teacherParameters: teacher.lm.parameterCount))
        let out = URL(fileURLWithPath: o.outputDirectory)
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let testSet = WordProblems.generate(count: o.testPrompts, seed: o.seed &+ 1, idPrefix: "test")
        // No training prompt may be a held-out one.
        let heldOut = Set(testSet.map(\.prompt))
        let trainSet = WordProblems.generate(count: o.trainPrompts, seed: o.seed, idPrefix: "train").filter { !heldOut.contains($0.prompt) }
        let unlabeled = WordProblems.generate(count: o.unlabeledPrompts, seed: o.seed &+ 2, idPrefix: "unlabeled")
            .filter { !heldOut.contains($0.prompt) }
        // What the teacher is asked: the labeled problems with their answers, the others without.
        let tracePrompts = trainSet.map { TracePrompt(id: $0.id, text: $0.prompt, answer: String($0.answer), source: "labeled") }
            + unlabeled.map { TracePrompt(id: $0.id, text: $0.prompt, answer: nil, source: "unlabeled") }

        // The students' shape, checked before any work.
        let tc = try teacher.architecture.decoderConfig(teacher.config)
        let shape = StudentOptions(layers: o.studentLayers, hidden: tc.hidden, heads: o.studentHeads ?? tc.heads,
                                   kvHeads: o.studentKVHeads ?? tc.kvHeads,
                                   intermediate: o.studentIntermediate, seed: o.seed, layerMap: o.studentLayerMap)
        let probe = try StudentDerivation.derive(from: teacher, options: shape)
        guard probe.ratio <= 0.25 else {
            throw TrainerError.invalidConfiguration(String(format: "the students would have %.1f%% of the teacher's parameters; at most 25%% allowed (fewer layers or heads, or a smaller intermediate size)", 100 * probe.ratio))
        }
        // 1–2. Traces from the teacher, rejection-sampled. Requests go out concurrently (the local
        // client batches them, as a server would); answers are taken in problem order.
        let client = try LocalTeacherClient(model: teacher, name: "demo-teacher", maxBatch: 128)
        let sampler = RejectionSampler(verifier: MathVerifier(), keepPolicy: .allCorrect, consensus: Consensus(minVotes: 2))
        var stats = SamplingStatistics()
        var kept: [ChatRecord] = []
        let inFlight = max(1, 128 / o.samplesPerPrompt)
        var responses = [TeacherResponse?](repeating: nil, count: tracePrompts.count)
        try await withThrowingTaskGroup(of: (Int, TeacherResponse).self) { group in
            var next = 0, done = 0
            func launch() {
                let i = next, p = tracePrompts[i]
                let sampling = TeacherSampling(n: o.samplesPerPrompt, temperature: o.traceTemperature, maxTokens: 64,
                                               seed: o.seed &* 1_000_003 &+ UInt64(i))
                group.addTask { (i, try await client.complete(.chat([.user(p.text)]), sampling: sampling)) }
                next += 1
            }
            while next < min(inFlight, tracePrompts.count) { launch() }
            while let (i, response) = try await group.next() {
                responses[i] = response
                done += 1
                if next < tracePrompts.count { launch() }
                if done % 50 == 0 && done < tracePrompts.count { progress(.traces(done: done, total: tracePrompts.count, kept: nil)) }
            }
        }
        var unlabeledKept = 0
        for (i, p) in tracePrompts.enumerated() {
            let result = sampler.sample(prompt: p, candidates: responses[i]!.completions.map(\.text))
            stats.add(result)
            kept += result.records()
            if p.answer == nil { unlabeledKept += result.kept.count }
        }
        progress(.traces(done: tracePrompts.count, total: tracePrompts.count, kept: kept.count))
        try ChatRecordFile.write(kept, to: out.appendingPathComponent("traces.jsonl").path)
        try stats.write(to: out.appendingPathComponent("stats.json").path)

        // 3. Two students, same shape, initialisation, steps and batch size.
        let truth = try DemoModels.sequences(trainSet.map { ($0.prompt, $0.solution) }, model: teacher)
        let traces = try DemoModels.sequences(kept.map { r in (r.messages.first { $0.role == "user" }!.content,
                                                               r.messages.last!.content) }, model: teacher)
        guard !traces.isEmpty else { throw TrainerError.invalidConfiguration("the teacher's traces were all rejected") }
        func trainStudent(_ s: PretrainedModel, _ name: String, data: [TokenSequence], teacher t: TransformerLM?) throws -> PretrainedModel {
            var c = TrainerConfiguration(totalSteps: o.studentSteps, batchSize: o.batchSize, layout: .padToLongest(padId: 256),
                                         order: .shuffled(seed: o.seed),
                                         learningRate: .warmupCosine(peak: o.learningRate, warmup: 20, total: o.studentSteps, floor: 1e-4),
                                         weightDecay: 0.01, maxGradNorm: 1, seed: o.seed)
            c.featureMap = .uniform(studentLayers: o.studentLayers, teacherLayers: tc.layers)
            if let map = o.studentLayerMap { c.featureMap = try LayerMap(map.enumerated().map { (student: $0, teacher: $1) }) }
            // One metrics line per step (report curves); a rerun starts the log afresh.
            let log = URL(fileURLWithPath: s.path).appendingPathComponent("metrics.jsonl")
            try FileManager.default.createDirectory(atPath: s.path, withIntermediateDirectories: true)
            try? FileManager.default.removeItem(at: log)
            c.metricsLog = log
            if t != nil, o.onPolicyFraction > 0 {
                c.onPolicy = OnPolicyDistillation(fraction: o.onPolicyFraction, temperature: 1, maxTokens: 64,
                                                  stopTokenIds: Set(teacher.eosTokenIds))
            }
            let plan: TrainingPlan = t == nil ? .hardOnly : .kd(alpha: o.alpha, temperature: o.temperature, feature: o.featureWeight)
            // With only the soft term from the teacher, its logits for each trace are computed once
            // and remembered across epochs; hidden states and on-policy steps need the live model.
            let trainer: Trainer
            if let t, o.featureWeight == 0, o.onPolicyFraction == 0 {
                trainer = Trainer(student: s.lm, teacher: MemoizedTeacher(LocalTeacher(lm: t, batchSize: o.batchSize)), train: data, plan: plan,
                                  configuration: c)
            } else {
                trainer = Trainer(student: s.lm, teacher: t, train: data, plan: plan, configuration: c)
            }
            trainer.onEvent = { event in
                if case .step(let m) = event, m.step % 25 == 0 || m.step == o.studentSteps {
                    progress(.training(model: name, step: m.step, total: o.studentSteps, loss: m.loss))
                }
            }
            try trainer.run()
            try s.saveDirectory(s.path)
            return s
        }
        // Both derived first (reading the teacher's weights), then trained side by side, each on
        // half of the cores: at this size a second job gains more than a second thread does.
        let baselineInit = try StudentDerivation.derive(from: teacher, options: shape,
                                                        path: out.appendingPathComponent("baseline_student").path).model
        let distilledInit = try StudentDerivation.derive(from: teacher, options: shape,
                                                         path: out.appendingPathComponent("distilled_student").path).model
        let (baseline, distilled) = try sideBySide(
            { try trainStudent(baselineInit, "baseline_student", data: truth, teacher: nil) },
            { try trainStudent(distilledInit, "distilled_student", data: traces, teacher: teacher.lm) })

        // 4. Held-out evaluation.
        func evaluate(_ m: PretrainedModel, _ name: String) throws -> ModelResult {
            progress(.evaluating(model: name))
            let r = try DemoModels.evaluate(m, testSet)
            let alone = Array(testSet.prefix(8))
            let t0 = Date()
            for p in alone { _ = try DemoModels.evaluate(m, [p], batch: 1) }
            let latency = Date().timeIntervalSince(t0) / Double(alone.count) * 1000
            return ModelResult(params: m.lm.parameterCount, accuracy: r.accuracy, tokensPerSecond: r.tokensPerSecond, latencyMs: latency)
        }
        // 5. The distilled student as users deploy it: llama.cpp GGUF files, loaded back.
        var deployed: [DeployedResult] = []
        for type in [GGUFExportType.f32, .q8_0, .q4_k_m] {
            let path = out.appendingPathComponent("distilled_student-\(type.rawValue).gguf").path
            try distilled.exportGGUF(to: path, type: type)
            let bytes = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            let result = try evaluate(try PretrainedModel.loadGGUF(path), "distilled student \(type.rawValue)")
            deployed.append(DeployedResult(type: type.rawValue, path: path, fileBytes: bytes, result: result))
        }
        let report = Report(teacher: try evaluate(teacher, "teacher"), baselineStudent: try evaluate(baseline, "baseline student"),
                            distilledStudent: try evaluate(distilled, "distilled student"), distilledDeployed: deployed,
                            traceAcceptanceRate: stats.acceptanceRate, tracesKept: kept.count, trainPrompts: trainSet.count,
                            unlabeledPrompts: unlabeled.count, unlabeledTracesKept: unlabeledKept,
                            testPrompts: o.testPrompts, studentSteps: o.studentSteps, seconds: Date().timeIntervalSince(start))
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.keyEncodingStrategy = .convertToSnakeCase
        try enc.encode(report).write(to: out.appendingPathComponent("report.json"), options: .atomic)
        return report
    }
}
