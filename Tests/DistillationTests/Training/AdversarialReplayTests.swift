import DistillModels
import DistillNN
import DistillTensor
@testable import Distillation
import Foundation
import XCTest

/// Adversarial training (FGM, PGD) against transformers, and knowledge replay's batch mix.
final class AdversarialReplayTests: XCTestCase {
    static let qwen2 = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("DistillModelsTests/Fixtures/architectures/qwen2")

    static let fixture: [String: Any] = {
        let url = Bundle.module.url(forResource: "adversarial", withExtension: "json", subdirectory: "Fixtures")!
        return try! JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }()

    // MARK: The perturbation

    func testFGMIsEpsilonTimesTheNormalisedGradient() {
        let g: [Float] = [3, -4, 0, 12]          // norm 13
        let fgm = AdversarialTraining(method: .fgm, epsilon: 0.26)
        let r = fgm.step(from: nil, gradient: g)
        for (a, b) in zip(r, g) { XCTAssertEqual(a, 0.26 * b / 13, accuracy: 1e-7) }
        XCTAssertEqual(AdversarialTraining.norm(r), 0.26, accuracy: 1e-6)
        XCTAssertEqual(fgm.steps, 1)
        // A zero gradient gives no perturbation (no division by zero).
        XCTAssertEqual(fgm.step(from: nil, gradient: [0, 0, 0]), [0, 0, 0])
        // ε = 0: the clean loss twice.
        XCTAssertEqual(AdversarialTraining(method: .fgm, epsilon: 0).step(from: nil, gradient: g), [0, 0, 0, 0])
    }

    func testPGDStepsAndStaysInTheBall() {
        let pgd = AdversarialTraining(method: .pgd, epsilon: 1, steps: 3, stepSize: 0.6)
        var r = pgd.step(from: nil, gradient: [1, 0])
        XCTAssertEqual(r, [0.6, 0])
        r = pgd.step(from: r, gradient: [1, 0])             // 1.2 → projected onto the ball: 1
        XCTAssertEqual(r[0], 1, accuracy: 1e-6)
        r = pgd.step(from: r, gradient: [0, 5])             // (1, 0.6) → scaled to norm 1
        XCTAssertEqual(AdversarialTraining.norm(r), 1, accuracy: 1e-6)
        XCTAssertEqual(r[1] / r[0], 0.6, accuracy: 1e-6)
        XCTAssertEqual(AdversarialTraining(method: .pgd, epsilon: 0.9, steps: 3).pgdStepSize, 0.6, accuracy: 1e-7)
    }

    func testBadSettingsAreRefused() throws {
        let t = Trainer(student: TransformerLM(TinyCorpus.studentConfig, seed: 1), train: TinyCorpus.sequences(4, seed: 1), plan: .hardOnly,
                        configuration: { var c = TrainerConfiguration(totalSteps: 1, batchSize: 2)
                            c.adversarial = AdversarialTraining(method: .fgm, epsilon: -1); return c }())
        XCTAssertThrowsError(try t.validate()) { XCTAssertTrue("\($0)".contains("epsilon -1.0 must be finite and ≥ 0"), "\($0)") }
    }

    // MARK: Against transformers (float64)

    /// The clean and perturbed losses, the perturbation and the parameters' gradients of
    /// clean + perturbed loss equal transformers' (scripts/make_adversarial_fixture.py) within 1e-5.
    func testAgainstTransformers() throws {
        let model = try PretrainedModel.load(Self.qwen2.path)
        let ids = (Self.fixture["ids"] as! [[Int]])
        let rows = ids.map { TokenSequence($0) }
        let trainer = Trainer(student: model.lm, train: rows, plan: .hardOnly,
                              configuration: TrainerConfiguration(totalSteps: 1, batchSize: 2))
        let batch = Batch.make(rows, layout: .padToLongest(padId: 0))
        let named = Dictionary(uniqueKeysWithValues: model.lm.namedParameters().map { ($0.name, $0.parameter.value) })
        for c in Self.fixture["cases"] as! [[String: Any]] {
            let method = c["method"] as! String
            let adv = AdversarialTraining(method: method == "fgm" ? .fgm : .pgd, epsilon: Fixture.float(c["epsilon"]),
                                          steps: Fixture.int(c["steps"]), stepSize: c["step_size"].flatMap { $0 is NSNull ? nil : Fixture.float($0) })
            let grads = c["gradients"] as! [String: Any]
            let names = grads.keys.sorted()
            let (parts, g, r) = try trainer.adversarialGradients(batch, plan: StepPlan(), parameters: names.map { named[$0]! }, adv)
            XCTAssertEqual(Double(parts.total.item), Fixture.double(c["clean_loss"]), accuracy: 1e-5, method)
            XCTAssertEqual(Double(parts.adversarial!), Fixture.double(c["adversarial_loss"]), accuracy: 1e-5, method)
            let expectedR = Fixture.floats(c["perturbation"])
            XCTAssertEqual(r.count, expectedR.count)
            XCTAssertLessThan(zip(r, expectedR).map { abs($0 - $1) }.max()!, 1e-5, "\(method) perturbation")
            for (name, tensor) in zip(names, g) {
                let expected = Fixture.floats(grads[name])
                XCTAssertEqual(tensor.count, expected.count, name)
                let worst = zip(tensor.scalars, expected).map { abs($0 - $1) }.max()!
                XCTAssertLessThan(worst, 1e-5, "\(method) \(name)")
            }
        }
    }

    /// The gradient that points the perturbation (loss with respect to the embedding offset)
    /// agrees with central finite differences.
    func testEmbeddingOffsetGradientByFiniteDifferences() throws {
        let lm = TransformerLM(TinyCorpus.studentConfig, seed: 4)
        let rows = [TokenSequence([3, 5, 7, 9, 11]), TokenSequence([2, 4, 6, 8])]
        let batch = Batch.make(rows, layout: .padToLongest(padId: 0))
        let trainer = Trainer(student: lm, train: rows, plan: .hardOnly, configuration: TrainerConfiguration(totalSteps: 1, batchSize: 2))
        let offset = normal([batch.batch, batch.length, lm.config.hidden], std: 0.05, seed: 5)
        checkGradients(inputs: [offset], eps: 3e-3) { x in
            try! trainer.loss(batch, plan: StepPlan(), embeddingOffset: x[0]).total
        }
    }

    // MARK: Replay

    /// Every micro-batch holds `batchSize − replayRows` training rows and `replayRows` replayed
    /// rows, and the replay set is visited in its own shuffled order, each epoch whole.
    func testReplayBatchesHoldTheRatio() throws {
        let train = (0..<10).map { TokenSequence([1, 2, 3, 4 + $0 % 5]) }
        let replay = (0..<3).map { TokenSequence([9, 10, 11, $0]) }
        var c = TrainerConfiguration(totalSteps: 1, batchSize: 4, order: .shuffled(seed: 1))
        c.replayRows = 1
        let trainer = Trainer(student: TransformerLM(TinyCorpus.studentConfig, seed: 1), train: train, replay: replay, plan: .hardOnly,
                              configuration: c)
        var seen: [[Int]] = []
        for _ in 0..<6 {
            let rows = trainer.nextMicroBatchRows()
            XCTAssertEqual(rows.count, 4)
            XCTAssertEqual(rows.filter { $0.ids[0] == 1 }.count, 3)
            XCTAssertEqual(rows.filter { $0.ids[0] == 9 }.count, 1)
            XCTAssertEqual(rows.last!.ids[0], 9)
            seen.append(rows.last!.ids)
        }
        XCTAssertEqual(Set(seen[0..<3].map { $0[3] }), [0, 1, 2])
        XCTAssertEqual(Set(seen[3..<6].map { $0[3] }), [0, 1, 2])
        XCTAssertEqual(trainer.state.replayData?.epoch, 1)
    }

    func testReplayErrors() throws {
        func trainer(_ replay: [TokenSequence], rows: Int, batch: Int = 4) -> Trainer {
            var c = TrainerConfiguration(totalSteps: 1, batchSize: batch)
            c.replayRows = rows
            return Trainer(student: TransformerLM(TinyCorpus.studentConfig, seed: 1), train: TinyCorpus.sequences(4, seed: 1), replay: replay,
                           plan: .hardOnly, configuration: c)
        }
        XCTAssertThrowsError(try trainer([TokenSequence([1, 2])], rows: 4).validate()) { XCTAssertTrue("\($0)".contains("replayRows 4 must be in 0..<batchSize (4)"), "\($0)") }
        XCTAssertThrowsError(try trainer([], rows: 1).validate()) { XCTAssertTrue("\($0)".contains("no replay sequence"), "\($0)") }
        XCTAssertThrowsError(try trainer([TokenSequence([1, 99])], rows: 1).validate()) {
            XCTAssertTrue("\($0)".contains("replay sequence 0 holds a token outside the vocabulary 0..<16"), "\($0)")
        }
    }
}
