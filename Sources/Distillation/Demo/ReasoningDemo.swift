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
    public static let studentConfig = config(hidden: 64, layers: 3, heads: 4, kvHeads: 2, intermediate: 192)

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
        let tok = try model.requireTokenizer()
        var completions: [String] = [], generated = 0
        let start = Date()
        for s in stride(from: 0, to: problems.count, by: batch) {
            let chunk = problems[s..<min(problems.count, s + batch)]
            let prompts = try chunk.map { tok.encode(try model.applyChatTemplate([ChatMessage(role: "user", content: $0.prompt)]),
                                                     addSpecialTokens: false) }
            var o = GenerationOptions(maxTokens: maxTokens)
            o.sampling.temperature = 0
            o.stopTokenIds = Set(model.eosTokenIds)
            let out = try Generator(model: model.lm).generate(prompts: prompts, options: o)
            for g in out { completions.append(tok.decode(g.tokens, skipSpecialTokens: true)); generated += g.tokens.count }
        }
        let secs = Date().timeIntervalSince(start)
        let correct = zip(completions, problems).filter { finalAnswer($0.0) == $0.1.answer }.count
        return (Double(correct) / Double(max(1, problems.count)), Double(generated) / max(secs, 1e-9), completions)
    }

    /// The integer after the last "#### " of a completion.
    public static func finalAnswer(_ text: String) -> Int? {
        guard let r = text.range(of: "#### ", options: .backwards) else { return nil }
        return Int(text[r.upperBound...].prefix { $0.isNumber || $0 == "-" })
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
