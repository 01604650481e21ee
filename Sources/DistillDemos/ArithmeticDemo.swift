import Distillation
import DistillNN
import DistillTensor
import Foundation

/// A small end-to-end distillation run on built-in data (two-digit addition written as
/// "07+45=052"): train a teacher, then two students a quarter of its size for the same number of
/// steps on the same few examples — one on the ground-truth answers only, one with the teacher's
/// soft targets added (0.5·KL(τ=2)·τ² + 0.5·cross-entropy) — and compare held-out accuracy.
public enum ArithmeticDemo {
    public struct Options: Sendable {
        public var teacherSteps = 1500
        public var studentSteps = 1500
        public var studentExamples = 600
        public var testExamples = 500
        public var seed: UInt64 = 42
        public init() {}
    }

    public struct ModelResult: Codable, Sendable {
        public var params: Int
        public var accuracy: Double
        public var tokensPerSecond: Double
        public var heldOutLoss: Double
    }

    public struct Report: Codable, Sendable {
        public var teacher: ModelResult
        public var baselineStudent: ModelResult
        public var distilledStudent: ModelResult
        public var seconds: Double
    }

    public enum Progress {
        case training(model: String, step: Int, total: Int, loss: Float)
        case evaluating(model: String)
    }

    // Vocabulary: digits 0-9, '+', '=', end of answer.
    static let plus = 10, equals = 11, end = 12, vocab = 13
    static let promptLength = 6, answerLength = 4            // "07+45=" then "052" + end
    static var length: Int { promptLength + answerLength }

    static func encode(_ a: Int, _ b: Int) -> [Int] {
        let s = a + b
        return [a / 10, a % 10, plus, b / 10, b % 10, equals, s / 100, (s / 10) % 10, s % 10, end]
    }

    public static func run(_ o: Options = Options(), progress: (Progress) -> Void = { _ in }) -> Report {
        let start = Date()
        var rng = RandomGenerator(seed: o.seed)
        var pairs = (0..<10_000).map { ($0 / 100, $0 % 100) }
        pairs.shuffle(using: &rng)
        let test = Array(pairs.prefix(o.testExamples))
        let teacherData = Array(pairs.dropFirst(o.testExamples))
        let studentData = Array(teacherData.prefix(o.studentExamples))

        let teacher = TransformerLM(TransformerConfig(vocabSize: vocab, hidden: 96, layers: 3, heads: 4, kvHeads: 2,
                                                      intermediate: 256), seed: o.seed)
        train(teacher, name: "teacher", data: teacherData, steps: o.teacherSteps, teacher: nil, seed: o.seed + 1, progress: progress)

        let studentConfig = TransformerConfig(vocabSize: vocab, hidden: 48, layers: 2, heads: 4, kvHeads: 2, intermediate: 128)
        let baseline = TransformerLM(studentConfig, seed: o.seed + 2)
        train(baseline, name: "baseline student", data: studentData, steps: o.studentSteps, teacher: nil, seed: o.seed + 3, progress: progress)
        let distilled = TransformerLM(studentConfig, seed: o.seed + 2)
        train(distilled, name: "distilled student", data: studentData, steps: o.studentSteps, teacher: teacher, seed: o.seed + 3, progress: progress)

        func evaluate(_ m: TransformerLM, _ name: String) -> ModelResult {
            progress(.evaluating(model: name))
            let (acc, tps) = accuracy(m, test)
            return ModelResult(params: m.parameterCount, accuracy: acc, tokensPerSecond: tps, heldOutLoss: Double(heldOutLoss(m, test)))
        }
        return Report(teacher: evaluate(teacher, "teacher"), baselineStudent: evaluate(baseline, "baseline student"),
                      distilledStudent: evaluate(distilled, "distilled student"),
                      seconds: Date().timeIntervalSince(start))
    }

    /// Targets: each position predicts the next token, counted only inside the answer.
    static func targets(_ ids: [Int], batch: Int) -> [Int] {
        var t = [Int](repeating: -100, count: ids.count)
        for b in 0..<batch {
            for p in (promptLength - 1)..<(length - 1) { t[b * length + p] = ids[b * length + p + 1] }
        }
        return t
    }

    static func train(_ model: TransformerLM, name: String, data: [(Int, Int)], steps: Int, teacher: TransformerLM?,
                      seed: UInt64, progress: (Progress) -> Void) {
        var rng = RandomGenerator(seed: seed)
        let batch = 64
        let opt = AdamW(learningRate: 3e-3, weightDecay: 0.01)
        let schedule = LearningRateSchedule.warmupCosine(peak: 3e-3, warmup: 50, total: steps, floor: 1e-4)
        for step in 0..<steps {
            let ids = (0..<batch).flatMap { _ in let p = data[Int(rng.next() % UInt64(data.count))]; return encode(p.0, p.1) }
            let t = targets(ids, batch: batch)
            let rows = t.indices.filter { t[$0] != -100 }
            let teacherRows = teacher.map { tm in
                withoutGradients { tm.forward(ids, batch: batch, length: length).logits.reshaped([-1, vocab]).indexSelect(rows) }
            }
            opt.learningRate = schedule.learningRate(at: step)
            let (loss, g) = valueAndGradient(model) { m in
                let logits = m.forward(ids, batch: batch, length: length).logits.reshaped([-1, vocab])
                let hard = logits.crossEntropy(targets: t)
                guard let tl = teacherRows else { return hard }
                let soft = DistillationLoss.softTargetKL(student: logits.indexSelect(rows), teacher: tl, temperature: 2)
                return soft * 0.5 + hard * 0.5
            }
            var grads = g
            clipGradientNorm(&grads, maxNorm: 1)
            opt.update(model.trainableParameters, gradients: grads)
            if step % 100 == 0 || step == steps - 1 { progress(.training(model: name, step: step + 1, total: steps, loss: loss)) }
        }
    }

    /// Greedy decoding of the answer for every test prompt (batched); exact-match accuracy and
    /// generated tokens per second.
    static func accuracy(_ model: TransformerLM, _ test: [(Int, Int)]) -> (Double, Double) {
        let n = test.count
        var seqs = test.map { Array(encode($0.0, $0.1).prefix(promptLength)) }
        let t0 = Date()
        withoutGradients {
            for _ in 0..<answerLength {
                let len = seqs[0].count
                let logits = model.forward(seqs.flatMap { $0 }, batch: n, length: len).logits   // (N, len, V)
                let last = logits.slice(axis: 1, start: len - 1, length: 1).reshaped([n, vocab])
                let best = last.max(axis: 1)
                for i in 0..<n {
                    let row = (0..<vocab).map { last[i, $0] }
                    seqs[i].append(row.firstIndex(of: best[i])!)
                }
            }
        }
        let secs = Date().timeIntervalSince(t0)
        let correct = zip(seqs, test).filter { Array($0.0.suffix(answerLength)) == Array(encode($0.1.0, $0.1.1).suffix(answerLength)) }.count
        return (Double(correct) / Double(n), Double(n * answerLength) / secs)
    }

    static func heldOutLoss(_ model: TransformerLM, _ test: [(Int, Int)]) -> Float {
        let ids = test.flatMap { encode($0.0, $0.1) }
        return withoutGradients {
            model.forward(ids, batch: test.count, length: length).logits.reshaped([-1, vocab])
                .crossEntropy(targets: targets(ids, batch: test.count)).item
        }
    }
}
