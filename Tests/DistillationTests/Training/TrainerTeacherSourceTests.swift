import DistillNN
import DistillTensor
@testable import Distillation
import Foundation
import XCTest

/// A teacher answering through the `Teacher` protocol from a model's logits, exactly (no F16
/// rounding): `.full` rows, or `.sparse` rows with k = V (then sparse KD equals soft-target KL).
final class ExactSourceTeacher: Teacher {
    let local: LocalTeacher
    let sparse: Bool
    let temperature: Float
    var calls = 0
    init(_ lm: TransformerLM, sparse: Bool, temperature: Float) {
        local = LocalTeacher(lm: lm)
        self.sparse = sparse
        self.temperature = temperature
    }
    var vocabularySize: Int { local.vocabularySize }
    var tokenizerFingerprint: String? { nil }
    var tokenizerVocabularySize: Int? { nil }
    var logprobTemperature: Float? { sparse ? temperature : nil }
    func view(of sequences: [[Int]], positions: [[Int]]?) throws -> TeacherView {
        calls += 1
        let v = try local.view(of: sequences, positions: positions)
        guard sparse, case .full(let logits) = v else { return v }
        return .sparse(try SparseTeacherTargets.topK(ofLogits: logits, k: vocabularySize, temperature: temperature))
    }
}

final class TrainerTeacherSourceTests: XCTestCase {
    func trainer(teacher: TransformerLM?, source: Teacher?, layout: BatchLayout, chunk: Int? = nil,
                 plan: TrainingPlan = .kd(alpha: 0.6, temperature: 2), tied: Bool = false) -> Trainer {
        var c = TrainerConfiguration(totalSteps: 4, batchSize: 3, layout: layout, order: .shuffled(seed: 3),
                                     learningRate: .constant(3e-3), maxGradNorm: nil, seed: 1)
        c.lossChunkSize = chunk
        // Sequences with loss masks, so that only some rows count.
        let train = TinyCorpus.sequences(9, seed: 4).map { s in
            TokenSequence(s.ids, lossMask: s.ids.indices.map { $0 == 0 || $0 % 3 != 1 })
        }
        var config = TinyCorpus.studentConfig
        config.tieEmbeddings = tied
        return Trainer(student: TransformerLM(config, seed: 21), teacher: source ?? teacher.map { LocalTeacher(lm: $0) },
                       train: train, plan: plan, configuration: c)
    }

    func maxRelativeDifference(_ a: Module, _ b: Module) -> Float {
        let wa = TrainerTests.weights(a), wb = TrainerTests.weights(b)
        var worst: Float = 0
        for (k, x) in wa { for (p, q) in zip(x, wb[k]!) { worst = max(worst, abs(p - q) / max(1e-3, abs(p))) } }
        return worst
    }

    /// Full logits from a teacher source (asked only about the counted rows) train the student as
    /// the same teacher model run batched does, with padded and with packed rows.
    func testFullSourceMatchesLocalTeacher() throws {
        let t = TinyCorpus.teacher()
        for layout in [BatchLayout.padToLongest(padId: 0), .packed(rowLength: 16, padId: 0)] {
            let a = trainer(teacher: t, source: nil, layout: layout)
            let source = ExactSourceTeacher(t, sparse: false, temperature: 2)
            let b = trainer(teacher: nil, source: source, layout: layout)
            for _ in 0..<4 {
                let ma = try a.trainStep(), mb = try b.trainStep()
                XCTAssertEqual(ma.loss, mb.loss, accuracy: 1e-5 * abs(ma.loss), "\(layout)")
                XCTAssertEqual(ma.soft!, mb.soft!, accuracy: 1e-5 * abs(ma.soft!))
            }
            XCTAssertEqual(source.calls, 4)
            XCTAssertLessThan(maxRelativeDifference(a.student, b.student), 1e-4, "\(layout)")
        }
    }

    /// A memoized teacher trains the student exactly as the live teacher does, over several
    /// epochs, while asking its base about each distinct sequence once; full and sparse bases.
    func testMemoizedTeacherAsksOncePerSequence() throws {
        let t = TinyCorpus.teacher()
        for sparse in [false, true] {
            let c = TrainerConfiguration(totalSteps: 9, batchSize: 3, layout: .padToLongest(padId: 0), order: .shuffled(seed: 3),
                                         learningRate: .constant(3e-3), maxGradNorm: nil, seed: 1)
            let train = TinyCorpus.sequences(9, seed: 4).map { s in
                TokenSequence(s.ids, lossMask: s.ids.indices.map { $0 == 0 || $0 % 3 != 1 })
            }
            let counting = ExactSourceTeacher(t, sparse: sparse, temperature: 2)
            let memo = MemoizedTeacher(counting)
            let a = Trainer(student: TransformerLM(TinyCorpus.studentConfig, seed: 21), teacher: ExactSourceTeacher(t, sparse: sparse, temperature: 2),
                            train: train, plan: .kd(alpha: 0.6, temperature: 2), configuration: c)
            let b = Trainer(student: TransformerLM(TinyCorpus.studentConfig, seed: 21), teacher: memo,
                            train: train, plan: .kd(alpha: 0.6, temperature: 2), configuration: c)
            for _ in 0..<9 {          // three epochs of 9 sequences, 3 per step
                let ma = try a.trainStep(), mb = try b.trainStep()
                XCTAssertEqual(ma.loss, mb.loss, "sparse \(sparse)")
            }
            XCTAssertEqual(maxRelativeDifference(a.student, b.student), 0)
            XCTAssertEqual(memo.misses, 9, "each sequence computed once")
            XCTAssertEqual(memo.hits, 18)
            XCTAssertEqual(counting.calls, 3, "the base is asked only in the first epoch")
            XCTAssertGreaterThan(memo.memoBytes, 0)
        }
        // Other positions of a remembered sequence are computed afresh; a repeated sequence in one
        // request is computed once; rows come back in request order.
        let base = ExactSourceTeacher(t, sparse: false, temperature: 1)
        let memo = MemoizedTeacher(base)
        let seqs = TinyCorpus.sequences(2, seed: 8).map(\.ids)
        _ = try memo.view(of: [seqs[0]], positions: [[0, 1]])
        guard case .full(let got) = try memo.view(of: [seqs[1], seqs[0], seqs[1]], positions: [[2], [1, 2], [2]]),
              case .full(let want) = try LocalTeacher(lm: t).view(of: [seqs[1], seqs[0], seqs[1]], positions: [[2], [1, 2], [2]])
        else { return XCTFail("view kinds") }
        XCTAssertEqual(got.shape, want.shape)
        XCTAssertEqual(got.scalars, want.scalars)
        XCTAssertEqual(memo.misses, 3)
        XCTAssertEqual(base.calls, 2)
        XCTAssertThrowsError(try memo.view(of: [seqs[0]], positions: [[999]]))
    }

    /// Top-k log-probabilities with k = V at the loss temperature: sparse KD equals the soft-target KL.
    func testSparseSourceWithFullKMatchesLocalTeacher() throws {
        let t = TinyCorpus.teacher()
        let a = trainer(teacher: t, source: nil, layout: .packed(rowLength: 16, padId: 0))
        let b = trainer(teacher: nil, source: ExactSourceTeacher(t, sparse: true, temperature: 2), layout: .packed(rowLength: 16, padId: 0))
        for _ in 0..<4 {
            let ma = try a.trainStep(), mb = try b.trainStep()
            XCTAssertEqual(ma.soft!, mb.soft!, accuracy: 1e-4 * abs(ma.soft!))
        }
        XCTAssertLessThan(maxRelativeDifference(a.student, b.student), 1e-3)
    }

    /// The loss fused with the output projection (chunks of 5 positions) trains as plain logits do:
    /// hard only, local teacher, sparse source, a student with tied embeddings (whose embedding
    /// matrix gets gradients from the lookup and from the fused projection).
    func testFusedChunkedLossMatchesPlainLogits() throws {
        let t = TinyCorpus.teacher()
        let layout = BatchLayout.padToLongest(padId: 0)
        let cases: [(String, TransformerLM?, Teacher?, TrainingPlan, Bool)] = [
            ("hard", nil, nil, .hardOnly, false),
            ("local", t, nil, .kd(alpha: 0.6, temperature: 2), false),
            ("local, tied student", t, nil, .kd(alpha: 0.6, temperature: 2), true),
            ("soft only", t, nil, TrainingPlan { _ in StepPlan(soft: 0.8, hard: 0, temperature: 1.5) }, false),
            ("sparse", nil, ExactSourceTeacher(t, sparse: true, temperature: 2), .kd(alpha: 0.6, temperature: 2), false),
        ]
        for (name, teacher, source, plan, tied) in cases {
            let a = trainer(teacher: teacher, source: source, layout: layout, plan: plan, tied: tied)
            let b = trainer(teacher: teacher, source: source, layout: layout, chunk: 5, plan: plan, tied: tied)
            for _ in 0..<4 {
                let ma = try a.trainStep(), mb = try b.trainStep()
                XCTAssertEqual(ma.loss, mb.loss, accuracy: 1e-5 * max(1, abs(ma.loss)), name)
                XCTAssertEqual(ma.hard ?? -1, mb.hard ?? -1, accuracy: 1e-5 * max(1, abs(ma.hard ?? 1)), name)
                XCTAssertEqual(ma.soft ?? -1, mb.soft ?? -1, accuracy: 1e-5 * max(1, abs(ma.soft ?? 1)), name)
            }
            XCTAssertLessThan(maxRelativeDifference(a.student, b.student), 1e-4, name)
        }
    }

    func testSourceTemperatureAndDivergenceAreChecked() throws {
        let t = TinyCorpus.teacher()
        let a = trainer(teacher: nil, source: ExactSourceTeacher(t, sparse: true, temperature: 1), layout: .padToLongest(padId: 0))
        XCTAssertThrowsError(try a.trainStep()) { e in
            XCTAssertTrue("\(e)".contains("temperature 2.0"), "\(e)")
            XCTAssertTrue("\(e)".contains("taken at 1.0"), "\(e)")
        }
        let b = trainer(teacher: nil, source: ExactSourceTeacher(t, sparse: false, temperature: 1), layout: .padToLongest(padId: 0),
                        plan: .progressive(ProgressiveSchedule(totalSteps: 4, temperature: 2)))
        XCTAssertThrowsError(try b.run()) { e in XCTAssertTrue("\(e)".contains("teacher model in memory"), "\(e)") }
    }

    /// A real logit cache as the teacher: the KD loss falls.
    func testCachedTeacherTrainsStudent() throws {
        let t = TinyCorpus.teacher()
        let dir = try TrainerTests.tempDir(self)
        let seqs = TinyCorpus.sequences(9, seed: 4)
        let path = dir.appendingPathComponent("t.cache").path
        let header = LogitCacheHeader(dataHash: 1, vocabularySize: 16, tokenizerVocabularySize: 16, k: 8, temperature: 2,
                                      maxLength: 0, chunkSequences: 4, fingerprint: "")
        try LogitCacheWriter(path: path, header: header).run(teacher: LocalTeacher(lm: t), sequences: seqs.map(\.ids))
        let cached = try CachedTeacher(path: path)
        var c = TrainerConfiguration(totalSteps: 30, batchSize: 3, layout: .padToLongest(padId: 0), order: .shuffled(seed: 3),
                                     learningRate: .constant(1e-2), seed: 1)
        c.lossChunkSize = 7
        let trainer = Trainer(student: TransformerLM(TinyCorpus.studentConfig, seed: 21), teacher: cached, train: seqs,
                              plan: .kd(alpha: 1, temperature: 2), configuration: c)
        var soft: [Float] = []
        trainer.onEvent = { if case .step(let m) = $0 { soft.append(m.soft!) } }
        try trainer.run()
        let first = soft.prefix(5).reduce(0, +) / 5, last = soft.suffix(5).reduce(0, +) / 5
        XCTAssertLessThan(last, 0.7 * first, "soft KD loss \(first) → \(last)")
        // A sequence the cache does not hold is an error naming the cache.
        let other = Trainer(student: TransformerLM(TinyCorpus.studentConfig, seed: 21), teacher: cached,
                            train: [TokenSequence([1, 2, 3, 4, 5, 6, 7])], plan: .kd(alpha: 1, temperature: 2), configuration: c)
        XCTAssertThrowsError(try other.trainStep()) { e in XCTAssertTrue("\(e)".contains("not in the logit cache"), "\(e)") }
    }
}
