import DistillModels
import DistillNN
import DistillTensor
@testable import Distillation
import Foundation
import XCTest

final class OnPolicyTests: XCTestCase {
    /// Counting sequences whose first three tokens are the prompt.
    static func prompted(_ n: Int, seed: UInt64) -> [TokenSequence] {
        TinyCorpus.sequences(n, seed: seed).map { s in
            TokenSequence(s.ids, lossMask: s.ids.indices.map { $0 >= 3 })
        }
    }

    func configuration(_ op: OnPolicyDistillation?, total: Int = 4, dir: URL? = nil, every: Int? = nil) -> TrainerConfiguration {
        var c = TrainerConfiguration(totalSteps: total, batchSize: 3, layout: .padToLongest(padId: 0), order: .shuffled(seed: 2),
                                     learningRate: .constant(3e-3), checkpointEvery: every, checkpointDirectory: dir, seed: 11)
        c.onPolicy = op
        return c
    }

    /// With fraction 1 a step trains on the student's own samples: its loss is the soft term on
    /// the generated tokens, recomputed here from the same random draws.
    func testOnPolicyStepScoresTheStudentsOwnSamples() throws {
        let teacher = TinyCorpus.teacher()
        let data = Self.prompted(6, seed: 1)
        let op = OnPolicyDistillation(fraction: 1, temperature: 1, maxTokens: 5, stopTokenIds: [15])
        let c = configuration(op)
        let student = TransformerLM(TinyCorpus.studentConfig, seed: 3)
        let copy = TransformerLM(TinyCorpus.studentConfig, seed: 3)
        let trainer = Trainer(student: student, teacher: teacher, train: data, plan: .kd(alpha: 0.25, temperature: 2), configuration: c)

        // The same draws by hand: data order, the coin, the sampling seed.
        var position = DataPosition.start(count: data.count, order: c.order)
        let rows = position.next(3, count: data.count, kind: c.order).map { data[$0] }
        var rng = RandomGenerator(seed: 11)
        XCTAssertLessThan(rng.nextFloat(), 1)
        let seed = rng.next()
        let prompts = rows.map { Array($0.ids.prefix(3)) }
        var o = GenerationOptions(maxTokens: 5, stopTokenIds: [15])
        o.sampling = SamplingParameters(temperature: 1, seed: seed)
        let samples = try Generator(model: copy).generate(prompts: prompts, options: o)
        let own = zip(prompts, samples).map { p, g in
            TokenSequence(p + g.tokens, lossMask: [false, false, false] + Array(repeating: true, count: g.tokens.count))
        }
        XCTAssertTrue(samples.allSatisfy { !$0.tokens.isEmpty && $0.tokens.count <= 5 })
        let reference = Trainer(student: copy, teacher: teacher, train: data, plan: .kd(alpha: 1, temperature: 2), configuration: configuration(nil))
        let expected = try withoutGradients { try reference.loss(Batch.make(own, layout: c.layout), plan: StepPlan(soft: 1, hard: 0, temperature: 2)) }

        let m = try trainer.trainStep()
        XCTAssertEqual(m.loss, expected.total.item, accuracy: 1e-6 * max(1, abs(m.loss)))
        XCTAssertNotEqual(m.loss, try withoutGradients {
            try reference.loss(Batch.make(rows, layout: c.layout), plan: StepPlan(soft: 0.25, hard: 0.75, temperature: 2)).total.item
        })
    }

    func testFractionZeroIsPlainTraining() throws {
        let teacher = TinyCorpus.teacher()
        let data = Self.prompted(6, seed: 1)
        let a = Trainer(student: TransformerLM(TinyCorpus.studentConfig, seed: 3), teacher: teacher, train: data,
                        plan: .kd(alpha: 0.5, temperature: 2),
                        configuration: configuration(OnPolicyDistillation(fraction: 0, maxTokens: 4, stopTokenIds: [])))
        let b = Trainer(student: TransformerLM(TinyCorpus.studentConfig, seed: 3), teacher: teacher, train: data,
                        plan: .kd(alpha: 0.5, temperature: 2), configuration: configuration(nil))
        try a.run()
        try b.run()
        TrainerTests.assertSameWeights(a.student, b.student)
    }

    /// Which steps are on-policy and what the student samples come from the trainer's random
    /// state, so a run resumed from a checkpoint ends with the same weights.
    func testResumeRepeatsTheSameSamples() throws {
        let teacher = TinyCorpus.teacher()
        let data = Self.prompted(8, seed: 4)
        let op = OnPolicyDistillation(fraction: 0.5, temperature: 1, maxTokens: 4, stopTokenIds: [])
        let dir = try TrainerTests.tempDir(self)
        let whole = Trainer(student: TransformerLM(TinyCorpus.studentConfig, seed: 5), teacher: teacher, train: data,
                            plan: .kd(alpha: 0.5, temperature: 2), configuration: configuration(op, total: 8))
        try whole.run()
        let first = Trainer(student: TransformerLM(TinyCorpus.studentConfig, seed: 5), teacher: teacher, train: data,
                            plan: .kd(alpha: 0.5, temperature: 2), configuration: configuration(op, total: 8, dir: dir, every: 3))
        try first.run(until: 3)
        let resumed = Trainer(student: TransformerLM(TinyCorpus.studentConfig, seed: 99), teacher: teacher, train: data,
                              plan: .kd(alpha: 0.5, temperature: 2), configuration: configuration(op, total: 8, dir: dir, every: 3))
        XCTAssertNotNil(try resumed.resumeFromLatestCheckpoint())
        try resumed.run()
        TrainerTests.assertSameWeights(whole.student, resumed.student)
        let plain = Trainer(student: TransformerLM(TinyCorpus.studentConfig, seed: 5), teacher: teacher, train: data,
                            plan: .kd(alpha: 0.5, temperature: 2), configuration: configuration(nil, total: 8))
        try plain.run()
        XCTAssertNotEqual(TrainerTests.weights(plain.student), TrainerTests.weights(whole.student))
    }

    func testOnPolicyErrors() throws {
        let data = Self.prompted(4, seed: 1)
        func message(_ t: Trainer) -> String? {
            do { try t.validate(); return nil } catch { return "\(error)" }
        }
        let noTeacher = Trainer(student: TransformerLM(TinyCorpus.studentConfig, seed: 1), train: data, plan: .hardOnly,
                                configuration: configuration(OnPolicyDistillation(fraction: 0.5, maxTokens: 4, stopTokenIds: [])))
        XCTAssertTrue(message(noTeacher)?.contains("needs a teacher model in memory") ?? false, message(noTeacher) ?? "no error")
        for (op, text) in [(OnPolicyDistillation(fraction: 1.5, maxTokens: 4, stopTokenIds: []), "fraction 1.5"),
                           (OnPolicyDistillation(fraction: 0.5, temperature: -1, maxTokens: 4, stopTokenIds: []), "temperature -1"),
                           (OnPolicyDistillation(fraction: 0.5, maxTokens: 0, stopTokenIds: []), "maxTokens 0")] {
            let t = Trainer(student: TransformerLM(TinyCorpus.studentConfig, seed: 1), teacher: TinyCorpus.teacher(), train: data,
                            plan: .kd(alpha: 0.5, temperature: 2), configuration: configuration(op))
            XCTAssertTrue(message(t)?.contains(text) ?? false, message(t) ?? "no error for \(text)")
        }
    }
}
