import Distillation
import DistillModels
import DistillNN
import DistillTensor
import Foundation

/// Soft targets against hard labels on real text (`distill bench kd`): two identical students
/// derived from the teacher are trained for the same steps on the same token chunks — one on
/// next-token cross-entropy only, one on 0.5·KL(τ)·τ² + 0.5·cross-entropy from the teacher — and
/// compared by held-out perplexity.
public enum KDBenchmark {
    public struct Options: Sendable {
        public var student: StudentOptions
        public var steps = 100
        public var batchSize = 4
        public var length = 128
        public var learningRate: Float = 1e-3
        public var alpha: Float = 0.5
        public var temperature: Float = 2
        /// Share of the chunks held out for perplexity.
        public var evalFraction = 0.1
        public var seed: UInt64 = 0
        public init(student: StudentOptions) { self.student = student }
    }

    public struct Result: Codable, Sendable {
        public var teacherParameters: Int
        public var studentParameters: Int
        public var steps: Int
        public var trainTokens: Int
        public var evalTokens: Int
        public var teacherPerplexity: Double
        public var initialStudentPerplexity: Double
        public var hardOnlyPerplexity: Double
        public var distilledPerplexity: Double
        public var seconds: Double
    }

    public enum Progress {
        case step(run: String, step: Int, total: Int, loss: Float)
    }

    public static func run(teacherPath: String, textFile: String, options o: Options,
                           progress: @escaping (Progress) -> Void = { _ in }) throws -> Result {
        let start = Date()
        let teacher = try PretrainedModel.load(teacherPath)
        let tok = try teacher.requireTokenizer()
        guard let data = FileManager.default.contents(atPath: textFile), let text = String(data: data, encoding: .utf8) else {
            throw TrainerError.invalidConfiguration("\(textFile): cannot read UTF-8 text")
        }
        let ids = tok.encode(text, addSpecialTokens: false)
        let chunks = stride(from: 0, to: ids.count - o.length + 1, by: o.length).map { TokenSequence(Array(ids[$0..<($0 + o.length)])) }
        let evalCount = Swift.max(1, Int(Double(chunks.count) * o.evalFraction))
        guard chunks.count > evalCount + 1 else {
            throw TrainerError.invalidConfiguration("\(textFile): \(ids.count) tokens make too few chunks of \(o.length)")
        }
        let eval = Array(chunks.suffix(evalCount)), train = Array(chunks.prefix(chunks.count - evalCount))

        func perplexity(_ lm: TransformerLM) -> Double {
            var nll: Double = 0, n = 0
            withoutGradients {
                for s in eval {
                    let logits = lm.forward(s.ids, batch: 1, length: s.ids.count).logits.reshaped([s.ids.count, -1])
                    let targets = (0..<s.ids.count).map { $0 + 1 < s.ids.count ? s.ids[$0 + 1] : -100 }
                    nll += Double(logits.crossEntropy(targets: targets).item) * Double(s.ids.count - 1)
                    n += s.ids.count - 1
                }
            }
            return Foundation.exp(nll / Double(Swift.max(n, 1)))
        }

        var results: [String: Double] = [:]
        var studentParams = 0, initial = 0.0
        for (name, plan) in [("hard labels", TrainingPlan.hardOnly),
                             ("distilled", TrainingPlan.kd(alpha: o.alpha, temperature: o.temperature))] {
            let student = try StudentDerivation.derive(from: teacher, options: o.student).model.lm
            studentParams = student.parameterCount
            if initial == 0 { initial = perplexity(student) }
            let config = TrainerConfiguration(
                totalSteps: o.steps, batchSize: o.batchSize, order: .shuffled(seed: o.seed),
                learningRate: .warmupCosine(peak: o.learningRate, warmup: Swift.max(1, o.steps / 10), total: o.steps,
                                            floor: o.learningRate / 10),
                seed: o.seed)
            let trainer = Trainer(student: student, teacher: name == "distilled" ? teacher.lm : nil,
                                  train: train, plan: plan, configuration: config)
            trainer.onEvent = { event in
                if case .step(let m) = event { progress(.step(run: name, step: m.step, total: o.steps, loss: m.loss)) }
            }
            try trainer.run()
            results[name] = perplexity(student)
        }
        return Result(teacherParameters: teacher.lm.parameterCount, studentParameters: studentParams, steps: o.steps,
                      trainTokens: o.steps * o.batchSize * o.length, evalTokens: eval.count * o.length,
                      teacherPerplexity: perplexity(teacher.lm), initialStudentPerplexity: initial,
                      hardOnlyPerplexity: results["hard labels"]!, distilledPerplexity: results["distilled"]!,
                      seconds: Date().timeIntervalSince(start))
    }
}
