import DistillNN
import DistillTensor
@testable import Distillation
import Foundation
import XCTest

/// A small built-in corpus over a 16-token vocabulary: counting patterns with varying start,
/// stride and length ("3 5 7 9 …" mod 16), so that next tokens are learnable.
enum TinyCorpus {
    static let vocab = 16

    static func sequences(_ n: Int, seed: UInt64) -> [TokenSequence] {
        var rng = RandomGenerator(seed: seed)
        return (0..<n).map { _ in
            let start = Int(rng.next() % 16), stride = 1 + Int(rng.next() % 3), length = 5 + Int(rng.next() % 6)
            return TokenSequence((0..<length).map { (start + $0 * stride) % 16 })
        }
    }

    static let teacherConfig = TransformerConfig(vocabSize: vocab, hidden: 32, layers: 2, heads: 4, kvHeads: 2,
                                                 intermediate: 64, tieEmbeddings: false)
    static let studentConfig = TransformerConfig(vocabSize: vocab, hidden: 16, layers: 1, heads: 2, kvHeads: 1,
                                                 intermediate: 32, tieEmbeddings: false)

    /// A random teacher with a sharpened output head (so its soft targets are far from uniform).
    static func teacher(seed: UInt64 = 7) -> TransformerLM {
        let t = TransformerLM(teacherConfig, seed: seed)
        let head = t.lmHead!.weight
        head.assign(withoutGradients { head.value * 6 })
        t.freeze()
        return t
    }
}

final class TrainerTests: XCTestCase {
    static func tempDir(_ test: XCTestCase) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("distill-trainer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    static func weights(_ m: Module) -> [String: [Float]] {
        Dictionary(uniqueKeysWithValues: m.namedParameters().map { ($0.name, $0.parameter.value.scalars) })
    }

    /// Bit-for-bit equality of every parameter (names of those that differ on failure).
    static func assertSameWeights(_ a: Module, _ b: Module, file: StaticString = #filePath, line: UInt = #line) {
        let wa = weights(a), wb = weights(b)
        XCTAssertEqual(Set(wa.keys), Set(wb.keys), file: file, line: line)
        let differing = wa.keys.sorted().filter { wa[$0] != wb[$0] }
        XCTAssertTrue(differing.isEmpty, "weights differ: \(differing)", file: file, line: line)
    }

    /// A trainer exercising every piece of state: packed rows, shuffling across epochs, gradient
    /// accumulation, the progressive plan (freezing, feature and attention terms, τ annealing) and
    /// a feature projector.
    static func makeTrainer(studentSeed: UInt64, teacher: TransformerLM, order: DataOrder, dir: URL?,
                            checkpointEvery: Int? = nil, log: URL? = nil, total: Int = 8, processGroup: ProcessGroup? = nil) -> Trainer {
        let student = TransformerLM(TinyCorpus.studentConfig, seed: studentSeed)
        var rng = RandomGenerator(seed: studentSeed &+ 100)
        let projector = FeatureProjector(studentWidth: 16, teacherWidth: 32, pairs: 1, rng: &rng)
        var config = TrainerConfiguration(
            totalSteps: total, batchSize: 3, accumulationSteps: 2, layout: .packed(rowLength: 16, padId: 0), order: order,
            learningRate: .warmupCosine(peak: 3e-3, warmup: 2, total: total, floor: 1e-4), maxGradNorm: 1,
            featureMap: .uniform(studentLayers: 1, teacherLayers: 2), attentionMap: .uniform(studentLayers: 1, teacherLayers: 2),
            evalEvery: 4, evalBatchSize: 4, checkpointEvery: checkpointEvery, checkpointDirectory: dir, metricsLog: log, seed: 5)
        config.processGroup = processGroup
        return Trainer(student: student, teacher: teacher, projector: projector,
                       train: TinyCorpus.sequences(10, seed: 1), eval: TinyCorpus.sequences(4, seed: 2),
                       plan: .progressive(ProgressiveSchedule(totalSteps: total, temperature: 2)), configuration: config)
    }

    func checkResumeIsBitExact(order: DataOrder) throws {
        let teacher = TinyCorpus.teacher()
        // Uninterrupted: 8 steps.
        let full = Self.makeTrainer(studentSeed: 11, teacher: teacher, order: order, dir: nil)
        try full.run()
        XCTAssertEqual(full.step, 8)

        // Interrupted: 3 steps with a checkpoint at step 3, then the trainer is dropped ("crash").
        let dir = try Self.tempDir(self)
        do {
            let first = Self.makeTrainer(studentSeed: 11, teacher: teacher, order: order, dir: dir, checkpointEvery: 3)
            try first.run(until: 3)
            XCTAssertEqual(first.step, 3)
        }
        XCTAssertEqual(Checkpoint.list(in: dir).map(\.step), [3])
        // Resume into a student built from another seed: everything must come from the checkpoint.
        let resumed = Self.makeTrainer(studentSeed: 99, teacher: teacher, order: order, dir: dir, checkpointEvery: 3)
        let from = try resumed.resumeFromLatestCheckpoint()
        XCTAssertEqual(from?.lastPathComponent, "step-00000003")
        XCTAssertEqual(resumed.step, 3)
        try resumed.run()
        XCTAssertEqual(resumed.step, 8)
        Self.assertSameWeights(resumed.student, full.student)
        Self.assertSameWeights(resumed.projector!, full.projector!)
        XCTAssertEqual(resumed.optimizer.step, full.optimizer.step)
        XCTAssertEqual(resumed.data, full.data)
        XCTAssertEqual(resumed.rng, full.rng)
        // Checkpoints at 3, 6 and the final step 8; no temporary directories left.
        XCTAssertEqual(Checkpoint.list(in: dir).map(\.step), [3, 6, 8])
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        XCTAssertFalse(names.contains { $0.hasPrefix(".") }, "\(names)")
    }

    func testResumeIsBitExactShuffled() throws {
        try checkResumeIsBitExact(order: .shuffled(seed: 3))
    }

    func testResumeIsBitExactWithCurriculumSampling() throws {
        let difficulties = Curriculum.teacherLossDifficulties(TinyCorpus.teacher(), TinyCorpus.sequences(10, seed: 1))
        XCTAssertEqual(difficulties.count, 10)
        XCTAssertTrue(difficulties.allSatisfy { $0.isFinite && $0 > 0 })
        try checkResumeIsBitExact(order: .curriculum(Curriculum(difficulties: difficulties, totalSteps: 8)))
    }

    func testWarmupTrainsOnlyTheHead() throws {
        let t = Self.makeTrainer(studentSeed: 4, teacher: TinyCorpus.teacher(), order: .sequential, dir: nil)
        let before = Self.weights(t.student)
        try t.run(until: 2)                                        // warm-up: steps 0 and 1 of 8 (round(1.6) = 2)
        let afterWarmup = Self.weights(t.student)
        for (name, value) in afterWarmup {
            let head = ProgressiveSchedule.defaultHead(name)
            XCTAssertEqual(value != before[name]!, head, name)
        }
        try t.trainStep()                                          // alignment: the block trains too
        XCTAssertNotEqual(Self.weights(t.student)["model.layers.0.mlp.up_proj.weight"], afterWarmup["model.layers.0.mlp.up_proj.weight"])
    }

    func testNonFiniteLossStopsWithTheStep() throws {
        // Injected NaN: one student weight is NaN, so the first step's loss is NaN.
        let student = TransformerLM(TinyCorpus.studentConfig, seed: 1)
        let w = student.lmHead!.weight
        var values = w.value.scalars
        values[3] = .nan
        w.assign(Tensor(values, shape: w.shape))
        let config = TrainerConfiguration(totalSteps: 5, batchSize: 2, order: .sequential)
        let t = Trainer(student: student, train: TinyCorpus.sequences(6, seed: 1), plan: .hardOnly, configuration: config)
        XCTAssertThrowsError(try t.run()) { error in
            guard case let .nonFiniteLoss(step, loss, _)? = error as? TrainerError else { return XCTFail("\(error)") }
            XCTAssertEqual(step, 1)
            XCTAssertTrue(loss.isNaN)
        }
        XCTAssertEqual(t.step, 0)

        // A huge learning rate without clipping: weights of ~1e30 overflow on the next forward pass.
        let s2 = TransformerLM(TinyCorpus.studentConfig, seed: 2)
        let huge = TrainerConfiguration(totalSteps: 20, batchSize: 2, order: .sequential, learningRate: .constant(1e30),
                                        maxGradNorm: nil)
        let t2 = Trainer(student: s2, train: TinyCorpus.sequences(6, seed: 1), plan: .hardOnly, configuration: huge)
        XCTAssertThrowsError(try t2.run()) { error in
            guard case let .nonFiniteLoss(step, _, _)? = error as? TrainerError else { return XCTFail("\(error)") }
            XCTAssertEqual(step, t2.step + 1)
            XCTAssertGreaterThanOrEqual(step, 2)
        }
    }

    func testAccumulationAveragesMicroBatches() throws {
        // One step of 2 micro-batches of 2 sequences = mean of the two gradients, clipped to norm
        // 0.5, one AdamW update — done here by hand on a copy of the model.
        let data = TinyCorpus.sequences(4, seed: 1)
        let cfg = TrainerConfiguration(totalSteps: 1, batchSize: 2, accumulationSteps: 2, order: .sequential,
                                       learningRate: .constant(1e-2), maxGradNorm: 0.5)
        let t = Trainer(student: TransformerLM(TinyCorpus.studentConfig, seed: 3), train: data, plan: .hardOnly, configuration: cfg)
        try t.run()
        let m = TransformerLM(TinyCorpus.studentConfig, seed: 3)
        var acc = GradientAccumulator()
        for part in [data[0..<2], data[2..<4]] {
            let b = Batch.make(Array(part), layout: .padToLongest(padId: 0))
            // The trainer's cross-entropy: the row kernels of `logitLossParts` (their agreement
            // with `crossEntropy` is ChunkedLossTests').
            let (_, g) = valueAndGradient(m) {
                DistillationLoss.logitLossParts(logits: $0.forward(b.ids, batch: b.batch, length: b.length).logits.reshaped([-1, TinyCorpus.vocab]),
                                                teacher: nil, targets: b.targets).total
            }
            acc.add(g)
        }
        var g = acc.average()!
        clipGradientNorm(&g, maxNorm: 0.5)
        AdamW(learningRate: 1e-2, weightDecay: 0.01).update(m.trainableParameters, gradients: g)
        Self.assertSameWeights(t.student, m)
        // Curriculum ordering: the ranking as the epoch order.
        var pos = DataPosition.start(count: 4, order: .ordered([2, 0, 3, 1]))
        XCTAssertEqual(pos.next(6, count: 4, kind: .ordered([2, 0, 3, 1])), [2, 0, 3, 1, 2, 0])
    }

    func testConfigurationErrorsAreThrown() throws {
        func error(_ t: Trainer) -> String {
            do { try t.run(); return "no error" } catch { return "\(error)" }
        }
        let data = TinyCorpus.sequences(4, seed: 1)
        let cfg = TrainerConfiguration(totalSteps: 2, batchSize: 2)
        let s = { TransformerLM(TinyCorpus.studentConfig, seed: 1) }
        XCTAssertTrue(error(Trainer(student: s(), train: data, plan: .kd(alpha: 0.5, temperature: 2), configuration: cfg))
            .contains("needs a teacher"))
        XCTAssertTrue(error(Trainer(student: s(), teacher: TinyCorpus.teacher(), train: data,
                                    plan: .kd(alpha: 0.5, temperature: 2, feature: 0.3), configuration: cfg))
            .contains("no featureMap"))
        XCTAssertTrue(error(Trainer(student: s(), train: data + [TokenSequence([1, 99])], plan: .hardOnly, configuration: cfg))
            .contains("token 99 outside the vocabulary 0..<16"))
        var zero = cfg
        zero.batchSize = 0
        XCTAssertTrue(error(Trainer(student: s(), train: data, plan: .hardOnly, configuration: zero)).contains("batchSize 0"))
    }

    func testMetricsLogAndEvents() throws {
        let dir = try Self.tempDir(self)
        let log = dir.appendingPathComponent("metrics.jsonl")
        let t = Self.makeTrainer(studentSeed: 2, teacher: TinyCorpus.teacher(), order: .sequential, dir: nil, log: log)
        var steps: [Int] = [], evals: [Int] = []
        t.onEvent = { e in
            if case .step(let m) = e { steps.append(m.step) }
            if case .evaluated(let s, _) = e { evals.append(s) }
        }
        try t.run(until: 4)
        XCTAssertEqual(steps, [1, 2, 3, 4])
        XCTAssertEqual(evals, [4])
        let lines = try MetricsLog(url: log).read()
        XCTAssertEqual(lines.map(\.step), [1, 2, 3, 4])
        XCTAssertNil(lines[0].evalLoss)
        XCTAssertNotNil(lines[3].evalLoss)
        XCTAssertNil(lines[0].feature)                             // warm-up: no feature term
        XCTAssertNotNil(lines[2].feature)
        XCTAssertTrue(lines.allSatisfy { $0.gradNorm > 0 && $0.tokensPerSecond > 0 && $0.learningRate > 0 })
        let text = try String(contentsOf: log, encoding: .utf8)
        XCTAssertTrue(text.contains("\"grad_norm\""))
        XCTAssertTrue(text.contains("\"eval_loss\""))
        try MetricsLog(url: log).truncate(afterStep: 2)
        XCTAssertEqual(try MetricsLog(url: log).read().map(\.step), [1, 2])
    }

    func testDistillationLowersKDLoss() throws {
        // A random teacher (2 layers, width 32) distilled into a student (1 layer, width 16) with
        // 0.5·KL(τ = 2)·τ² + 0.5·CE on the built-in corpus, padded batches.
        let teacher = TinyCorpus.teacher()
        let student = TransformerLM(TinyCorpus.studentConfig, seed: 21)
        let config = TrainerConfiguration(totalSteps: 60, batchSize: 8, layout: .padToLongest(padId: 0), order: .shuffled(seed: 1),
                                          learningRate: .warmupCosine(peak: 1e-2, warmup: 5, total: 60, floor: 1e-3),
                                          evalEvery: 20, evalBatchSize: 8)
        let t = Trainer(student: student, teacher: teacher, train: TinyCorpus.sequences(48, seed: 5),
                        eval: TinyCorpus.sequences(8, seed: 6), plan: .kd(alpha: 0.5, temperature: 2), configuration: config)
        let before = try t.evaluate()
        var soft: [Float] = []
        var evals: [Float] = []
        t.onEvent = { e in
            if case .step(let m) = e { soft.append(m.soft!) }
            if case .evaluated(_, let l) = e { evals.append(l) }
        }
        try t.run()
        let first = soft.prefix(5).reduce(0, +) / 5, last = soft.suffix(5).reduce(0, +) / 5
        XCTAssertLessThan(last, 0.7 * first, "KD loss \(first) → \(last)")
        XCTAssertEqual(evals.count, 3)
        XCTAssertLessThan(evals.last!, 0.8 * before, "held-out loss \(before) → \(evals)")
    }
}
