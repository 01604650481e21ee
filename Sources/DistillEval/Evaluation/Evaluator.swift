import DistillData
import DistillModels
import DistillNN
import DistillTensor
import Foundation

/// A model to evaluate.
public struct ModelSpec: Sendable {
    public var name: String
    public var path: String
    /// A LoRA adapter directory (PEFT's layout) merged into the model after loading.
    public var adapter: String?
    public var isTeacher: Bool

    public init(name: String, path: String, adapter: String? = nil, isTeacher: Bool = false) {
        self.name = name
        self.path = path
        self.adapter = adapter
        self.isTeacher = isTeacher
    }

    /// Loads the model (and merges the adapter, if any).
    public func load() throws -> PretrainedModel {
        let model: PretrainedModel
        do { model = try PretrainedModel.load(path) } catch {
            throw EvalError.invalidInput("\(path): cannot load the model: \(error)")
        }
        if let adapter {
            do { try LoRAAdapterFiles.merge(adapter, into: model) } catch {
                throw EvalError.invalidInput("\(adapter): cannot merge the adapter into \(path): \(error)")
            }
        }
        return model
    }
}

public struct EvalOptions: Sendable {
    /// Longest generated answer (reasoning, generation).
    public var maxTokens = 256
    /// Prompts generated together.
    public var batchSize = 16
    /// Items whose token distributions are compared with the teacher's.
    public var agreementItems = 64
    /// Speed: requests timed one at a time (batch 1), each generating `speedNewTokens` greedily
    /// (end-of-sequence ignored, so every model does the same work).
    public var measureSpeed = true
    public var speedRequests = 8
    public var speedNewTokens = 64
    /// Perplexity window (tokens); longer texts are split into windows of this size.
    public var perplexityWindow = 512
    /// Measures a model's speed and peak memory elsewhere — `SpeedProbe.childProcess` runs it
    /// in a fresh process, so that each model's peak memory is its own. nil: in this process,
    /// where the peak is the growth of resident memory during the model's turn (memory freed by
    /// an earlier model and reused does not show).
    public var speedProbe: (@Sendable (ModelSpec) throws -> SpeedMeasurement)?

    public init() {}
}

public enum EvalProgress {
    case loading(model: String)
    case task(model: String, done: Int, total: Int)
    case agreement(model: String)
    case speed(model: String)
}

/// `distill eval`: every model on the same items, the teacher's answers and distributions as the
/// reference for agreement, the same speed settings for all.
public enum Evaluator {
    public static func run(models: [ModelSpec], task: EvalTask, taskName: String, options o: EvalOptions = EvalOptions(),
                           progress: (EvalProgress) -> Void = { _ in }) throws -> EvalReport {
        guard !models.isEmpty else { throw EvalError.invalidInput("no model to evaluate (give --model at least once)") }
        guard task.count > 0 else { throw EvalError.invalidInput("the task \(taskName) holds no items") }
        guard models.filter(\.isTeacher).count <= 1 else { throw EvalError.invalidInput("at most one teacher") }
        for m in models where !FileManager.default.fileExists(atPath: m.path) {
            throw EvalError.invalidInput("\(m.path): no such model (a Hugging Face directory or a .gguf file)")
        }
        // The teacher goes first: its answers and distributions are the reference.
        let order = models.indices.sorted { (models[$0].isTeacher ? 0 : 1, $0) < (models[$1].isTeacher ? 0 : 1, $1) }
        var teacher: (model: PretrainedModel, outputs: TaskOutputs)?
        var rows = [ModelEvaluation?](repeating: nil, count: models.count)
        for i in order {
            let spec = models[i]
            ProcessMemory.resetPeak()
            let before = ProcessMemory.residentBytes()
            progress(.loading(model: spec.name))
            let model = try spec.load()
            model.lm.freeze()
            let outputs = try evaluateTask(model, name: spec.name, task: task, options: o, progress: progress)
            var row = ModelEvaluation(name: spec.name, path: spec.path, role: spec.isTeacher ? .teacher : (models.contains(where: \.isTeacher) ? .student : .model),
                                      parameters: model.lm.parameterCount, diskBytes: diskBytes(spec.path), metrics: outputs.metrics)
            if let t = teacher {
                progress(.agreement(model: spec.name))
                row.agreement = try agreement(teacher: t.model, student: model, task: task, teacherOutputs: t.outputs,
                                              studentOutputs: outputs, options: o)
            }
            if o.measureSpeed {
                progress(.speed(model: spec.name))
                let s: SpeedMeasurement
                if let probe = o.speedProbe {
                    s = try probe(spec)
                } else {
                    var m = try speed(model, task: task, options: o)
                    m.peakResidentBytes = max(0, ProcessMemory.peakResidentBytes() - before)
                    s = m
                }
                row.speed = s
                row.guidance = DeviceGuidance.recommend(s, parameters: row.parameters)
            }
            rows[i] = row
            if spec.isTeacher { teacher = (model, outputs) }
        }
        return EvalReport(title: "Evaluation: \(taskName)", task: "\(taskName) (\(task.kind), \(task.count) items)",
                          models: rows.map { $0! })
    }

    // MARK: Task metrics

    /// What a model produced on the task, kept for answer agreement.
    struct TaskOutputs {
        var metrics: [String: Double]
        /// Reasoning: extracted final answers; classification: predicted labels; generation: outputs.
        var answers: [String?]
        /// Reasoning/generation: the full completions (the teacher's become agreement text).
        var completions: [String]
    }

    static func evaluateTask(_ model: PretrainedModel, name: String, task: EvalTask, options o: EvalOptions,
                             progress: (EvalProgress) -> Void) throws -> TaskOutputs {
        switch task {
        case .reasoning(let items):
            let completions = try answers(model, items.map(\.prompt), options: o) { progress(.task(model: name, done: $0, total: items.count)) }
            let template = TraceTemplate.default, verifier = MathVerifier()
            var right = 0, compliant = 0, success = 0
            var extracted: [String?] = []
            for (c, item) in zip(completions, items) {
                let parsed = template.parse(c)
                let ok = verifier.verify(parsed, reference: item.answer).isAccepted
                let follows = template.violations(c).isEmpty
                right += ok ? 1 : 0
                compliant += follows ? 1 : 0
                success += ok && follows ? 1 : 0
                extracted.append(parsed.finalAnswer?.text)
            }
            let n = Double(items.count)
            return TaskOutputs(metrics: ["accuracy": Double(right) / n, "template_compliance": Double(compliant) / n,
                                         "reasoning_success": Double(success) / n],
                               answers: extracted, completions: completions)
        case .classification(let items):
            var predictions: [String] = []
            let tok = try model.requireTokenizer()
            for (k, item) in items.enumerated() {
                let context = try contextIds(model, item.prompt)
                var best = (score: -Double.infinity, choice: item.choices[0])
                for choice in item.choices {
                    let continuation = tok.encode(continuationText(model, prompt: item.prompt, choice), addSpecialTokens: false)
                    guard !continuation.isEmpty else { continue }
                    let s = try continuationLogprob(model, context: context, continuation: continuation)
                    if s > best.score { best = (s, choice) }
                }
                predictions.append(best.choice)
                progress(.task(model: name, done: k + 1, total: items.count))
            }
            let r = try Classification.evaluate(predictions: predictions, references: items.map(\.label))
            return TaskOutputs(metrics: ["accuracy": r.accuracy, "macro_f1": r.macroF1], answers: predictions, completions: [])
        case .generation(let items):
            let outputs = try answers(model, items.map(\.prompt), options: o) { progress(.task(model: name, done: $0, total: items.count)) }
            let bleu = try BLEU.corpus(hypotheses: outputs, references: items.map(\.references))
            let rouge = try ROUGE.corpus(predictions: outputs, references: items.map(\.references))
            return TaskOutputs(metrics: ["bleu": bleu.score, "rouge1": rouge[.rouge1]!, "rouge2": rouge[.rouge2]!, "rougeL": rouge[.rougeL]!],
                               answers: outputs, completions: outputs)
        case .languageModeling(let text, _):
            let nll = try windowNLL(model, text: text, window: o.perplexityWindow)
            progress(.task(model: name, done: 1, total: 1))
            return TaskOutputs(metrics: ["perplexity": try Perplexity.from(negativeLogLikelihoods: nll)], answers: [], completions: [])
        }
    }

    /// The prompt as the model reads it: a user turn in its chat template when it has one, else the text.
    static func contextIds(_ model: PretrainedModel, _ prompt: String) throws -> [Int] {
        try model.promptIds(prompt, chat: model.chatTemplate != nil)
    }

    /// A choice as it follows the prompt: as is after a chat template, else after a space unless
    /// the prompt ends in whitespace.
    static func continuationText(_ model: PretrainedModel, prompt: String, _ choice: String) -> String {
        if model.chatTemplate != nil || prompt.last?.isWhitespace == true { return choice }
        return " " + choice
    }

    /// Greedy answers, batched, stopping at the model's end-of-sequence tokens.
    static func answers(_ model: PretrainedModel, _ prompts: [String], options o: EvalOptions, done: (Int) -> Void) throws -> [String] {
        try model.greedyAnswers(prompts, chat: model.chatTemplate != nil, maxTokens: o.maxTokens, batchSize: o.batchSize,
                                done: done).map(\.text)
    }

    /// Σ log p(continuation | context).
    static func continuationLogprob(_ model: PretrainedModel, context: [Int], continuation: [Int]) throws -> Double {
        let ids = context + continuation
        let logp = try logProbabilities(model, ids)
        let v = model.lm.config.vocabSize
        var s = 0.0
        for (k, t) in continuation.enumerated() { s += Double(logp[(context.count + k - 1) * v + t]) }
        return s
    }

    /// Row-major [ids.count × vocab] log-probabilities of the next token after each position.
    static func logProbabilities(_ model: PretrainedModel, _ ids: [Int]) throws -> [Float] {
        if let bad = ids.first(where: { $0 < 0 || $0 >= model.lm.config.vocabSize }) {
            throw EvalError.invalidInput("token id \(bad) is outside the vocabulary of \(model.lm.config.vocabSize)")
        }
        return withoutGradients { model.lm.forward(ids, batch: 1, length: ids.count).logits.reshaped([ids.count, -1]).logSoftmax().scalars }
    }

    /// Negative log-likelihood of every predicted token of `text`, window by window.
    static func windowNLL(_ model: PretrainedModel, text: String, window: Int) throws -> [Double] {
        let ids = try model.requireTokenizer().encode(text)
        guard ids.count >= 2 else { throw EvalError.invalidInput("the text has fewer than two tokens: nothing to predict") }
        var nll: [Double] = []
        let v = model.lm.config.vocabSize
        for start in stride(from: 0, to: ids.count - 1, by: max(2, window)) {
            let piece = Array(ids[start..<min(ids.count, start + max(2, window))])
            guard piece.count >= 2 else { continue }
            let logp = try logProbabilities(model, piece)
            for k in 0..<(piece.count - 1) { nll.append(-Double(logp[k * v + piece[k + 1]])) }
        }
        return nll
    }

    /// Bytes on disk: the file, or every file under the directory.
    static func diskBytes(_ path: String) -> Int {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { return 0 }
        if !isDir.boolValue { return ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? Int) ?? 0 }
        var total = 0
        if let e = FileManager.default.enumerator(at: URL(fileURLWithPath: path), includingPropertiesForKeys: [.fileSizeKey]) {
            for case let url as URL in e { total += (try? url.resourceValues(forKeys: [.fileSizeKey]).fileSize) ?? 0 }
        }
        return total
    }
}
