import DistillNN
import DistillTensor
@testable import Distillation
import XCTest

final class BatchingTests: XCTestCase {
    func testPadToLongestTargetsAndMask() {
        // Sequence a = [1 2 3], b = [4 5 6 7 8] with only tokens 3, 4 of b counted.
        let a = TokenSequence([1, 2, 3])
        let b = TokenSequence([4, 5, 6, 7, 8], lossMask: [false, false, false, true, true])
        let batch = Batch.make([a, b], layout: .padToLongest(padId: 0))
        XCTAssertEqual(batch.batch, 2)
        XCTAssertEqual(batch.length, 5)
        XCTAssertEqual(batch.ids, [1, 2, 3, 0, 0, 4, 5, 6, 7, 8])
        // Row 0: position t predicts ids[t+1]: 1→2, 2→3; the last token and padding predict nothing.
        // Row 1: only targets 7 (predicted at position 2) and 8 (at 3) count.
        XCTAssertEqual(batch.targets, [2, 3, -100, -100, -100, -100, -100, 7, 8, -100])
        XCTAssertEqual(batch.targetCount, 4)
        XCTAssertEqual(batch.lossMask.rows, [0, 1, 7, 8])
        XCTAssertNil(batch.attentionMask)
    }

    func testPackingKeepsSequencesApart() {
        // Row length 6: [1 2 3] + [4 5] fit in row 0 (5 tokens), [6 7 8 9] starts row 1.
        let seqs = [TokenSequence([1, 2, 3]), TokenSequence([4, 5]), TokenSequence([6, 7, 8, 9])]
        let batch = Batch.make(seqs, layout: .packed(rowLength: 6, padId: 0))
        XCTAssertEqual(batch.batch, 2)
        XCTAssertEqual(batch.length, 6)
        XCTAssertEqual(batch.ids, [1, 2, 3, 4, 5, 0, 6, 7, 8, 9, 0, 0])
        // No target crosses a boundary: 3 does not predict 4, 5 does not predict the padding.
        XCTAssertEqual(batch.targets, [2, 3, -100, 5, -100, -100, 7, 8, 9, -100, -100, -100])
        XCTAssertEqual(batch.positions!, [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 0, 1]])
        let m = batch.attentionMask!
        XCTAssertEqual(m.shape, [2, 1, 6, 6])
        XCTAssertEqual(m[0, 0, 4, 3], 0)          // 5 sees 4 (same sequence)
        XCTAssertEqual(m[0, 0, 3, 2], -1e9)       // 4 does not see 3
        XCTAssertEqual(m[1, 0, 3, 0], 0)
        XCTAssertEqual(m[1, 0, 4, 3], -1e9)       // padding sees no real token
    }

    func testPackedForwardEqualsSeparateRuns() {
        // A packed row gives each sequence the same logits as running it alone.
        let model = TransformerLM(TransformerConfig(vocabSize: 12, hidden: 16, layers: 1, heads: 2, kvHeads: 1, intermediate: 32), seed: 3)
        let s1 = [1, 2, 3], s2 = [4, 5, 6, 7]
        let batch = Batch.make([TokenSequence(s1), TokenSequence(s2)], layout: .packed(rowLength: 8, padId: 0))
        XCTAssertEqual(batch.batch, 1)
        withoutGradients {
            let packed = model.forward(batch.ids, batch: 1, length: 8, positions: batch.positions, mask: batch.attentionMask).logits
            let alone = model.forward(s2, batch: 1, length: 4).logits
            for t in 0..<4 { for v in 0..<12 { XCTAssertEqual(packed[0, 3 + t, v], alone[0, t, v], accuracy: 1e-5) } }
        }
    }

    func testDataPositionEpochsAndShuffle() {
        var pos = DataPosition.start(count: 4, order: .sequential)
        // 3 + 3 examples over 4: epoch 0 = 0 1 2 3, epoch 1 starts at 0.
        XCTAssertEqual(pos.next(3, count: 4, kind: .sequential), [0, 1, 2])
        XCTAssertEqual(pos.next(3, count: 4, kind: .sequential), [3, 0, 1])
        XCTAssertEqual(pos.epoch, 1)
        XCTAssertEqual(pos.index, 2)
        let kind = DataOrder.shuffled(seed: 9)
        let o0 = DataPosition.epochOrder(count: 10, epoch: 0, kind: kind)
        XCTAssertEqual(o0.sorted(), Array(0..<10))
        XCTAssertEqual(o0, DataPosition.epochOrder(count: 10, epoch: 0, kind: kind))
        XCTAssertNotEqual(o0, DataPosition.epochOrder(count: 10, epoch: 1, kind: kind))
    }
}

final class ScheduleTests: XCTestCase {
    func testProgressivePhasesWeightsAndTemperature() {
        // 10 steps: warm-up 0..<2 (20 %), alignment 2..<7 (50 %), refinement 7..<10.
        let s = ProgressiveSchedule(totalSteps: 10, alpha: 0.5, temperature: 2, featureWeight: 0.3, attentionWeight: 0.2)
        XCTAssertEqual(s.boundaries.alignment, 2)
        XCTAssertEqual(s.boundaries.refinement, 7)
        XCTAssertEqual((0..<10).map { s.phase(at: $0) },
                       [.warmup, .warmup] + Array(repeating: .featureAlignment, count: 5) + Array(repeating: .refinement, count: 3))
        // τ: 2 until refinement, then 2 + (1 − 2)·(step − 7)/(9 − 7): 2, 1.5, 1.
        XCTAssertEqual(s.temperature(at: 0), 2)
        XCTAssertEqual(s.temperature(at: 6), 2)
        XCTAssertEqual(s.temperature(at: 7), 2)
        XCTAssertEqual(s.temperature(at: 8), 1.5)
        XCTAssertEqual(s.temperature(at: 9), 1)
        let w = s.plan(at: 1)
        XCTAssertEqual([w.soft, w.hard, w.feature, w.attention], [0.5, 0.5, 0, 0])
        XCTAssertEqual(w.trainable?("lm_head.weight"), true)
        XCTAssertEqual(w.trainable?("projector.projections.0.weight"), true)
        XCTAssertEqual(w.trainable?("model.layers.0.mlp.up_proj.weight"), false)
        let a = s.plan(at: 2)
        XCTAssertEqual([a.soft, a.hard, a.feature, a.attention], [0.5, 0.5, 0.3, 0])
        XCTAssertEqual(a.trainable?("model.layers.0.mlp.up_proj.weight"), true)
        let r = s.plan(at: 8)
        XCTAssertEqual([r.soft, r.hard, r.feature, r.attention, r.temperature], [0.5, 0.5, 0.3, 0.2, 1.5])
        // Configurable lengths: 10 % / 30 % of 20 steps → boundaries 2 and 8.
        let c = ProgressiveSchedule(totalSteps: 20, warmupFraction: 0.1, alignmentFraction: 0.3)
        XCTAssertEqual(c.boundaries.alignment, 2)
        XCTAssertEqual(c.boundaries.refinement, 8)
    }

    func testLinearRampAndKDPlan() {
        // KD weight 0.3 → 0.7 over 5 steps: 0.3 + 0.4·step/4.
        let ramp = LinearRamp(from: 0.3, to: 0.7, over: 5)
        XCTAssertEqual(ramp.value(at: 0), 0.3, accuracy: 1e-7)
        XCTAssertEqual(ramp.value(at: 1), 0.4, accuracy: 1e-7)
        XCTAssertEqual(ramp.value(at: 2), 0.5, accuracy: 1e-7)
        XCTAssertEqual(ramp.value(at: 4), 0.7, accuracy: 1e-7)
        XCTAssertEqual(ramp.value(at: 100), 0.7, accuracy: 1e-7)
        let p = TrainingPlan.kd(alpha: ramp, temperature: 2)(2)
        XCTAssertEqual(p.soft, 0.5, accuracy: 1e-7)
        XCTAssertEqual(p.hard, 0.5, accuracy: 1e-7)
        XCTAssertEqual(p.temperature, 2)
        XCTAssertFalse(TrainingPlan.hardOnly(3).needsTeacher)
    }

    func testCurriculumHardShareAndSampling() {
        // Difficulties of 6 examples: ranking easiest first 3, 1, 5, 0, 4, 2.
        let c = Curriculum(difficulties: [4, 2, 9, 1, 5, 3], totalSteps: 7)
        XCTAssertEqual(c.ranking, [3, 1, 5, 0, 4, 2])
        XCTAssertEqual(c.easy, [3, 1, 5])
        XCTAssertEqual(c.hard, [0, 4, 2])
        // 0.2 + 0.6·step/6: 0.2, 0.5, 0.8, then constant.
        XCTAssertEqual(c.hardShare(at: 0), 0.2, accuracy: 1e-12)
        XCTAssertEqual(c.hardShare(at: 3), 0.5, accuracy: 1e-12)
        XCTAssertEqual(c.hardShare(at: 6), 0.8, accuracy: 1e-12)
        XCTAssertEqual(c.hardShare(at: 50), 0.8, accuracy: 1e-12)
        // The drawn hard share follows the schedule (4000 draws: ±3σ ≈ ±0.02).
        var rng = RandomGenerator(seed: 1)
        let hard = Set(c.hard)
        for (step, share) in [(0, 0.2), (6, 0.8)] {
            let draws = c.sample(4000, step: step, using: &rng)
            let frac = Double(draws.filter { hard.contains($0) }.count) / 4000
            XCTAssertEqual(frac, share, accuracy: 0.03)
        }
        XCTAssertEqual(Curriculum.lengthDifficulties([TokenSequence([1, 2]), TokenSequence([1])]), [2, 1])
    }
}
