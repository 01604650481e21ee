import DistillModels
import DistillNN
import DistillTensor
@testable import Distillation
import Foundation
import XCTest

/// Several teachers: the combined soft target and its losses against PyTorch
/// (scripts/make_multi_teacher_fixture.py), identical teachers equal one teacher, routing, errors.
final class MultiTeacherTests: XCTestCase {
    static let fixture: [String: Any] = {
        let url = Bundle.module.url(forResource: "multi_teacher", withExtension: "json", subdirectory: "Fixtures")!
        return try! JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }()

    func testCombinedTargetsAndLossesAgainstPyTorch() throws {
        let f = Self.fixture
        let n = Fixture.int(f["rows"]), v = Fixture.int(f["vocab"]), tau = Fixture.float(f["temperature"]), beta = Fixture.float(f["beta"])
        let teachers = (f["teachers"] as! [Any]).map { Tensor(Fixture.floats($0), shape: [n, v]) }
        let student = Tensor(Fixture.floats(f["student"]), shape: [n, v])
        let weights = Fixture.floats(f["weights"])
        let routed = Set(Fixture.ints(f["routed"]))
        let routes = (0..<n).map { routed.contains($0) ? 0 : nil as Int? }
        for (mode, c) in f["cases"] as! [String: Any] {
            let c = c as! [String: Any]
            let combined = MultiTeacher.combine(teachers, weights: weights, temperature: tau,
                                                combination: TeacherCombination(rawValue: mode)!, routes: routes)
            let p = (combined / tau).softmax().scalars
            XCTAssertLessThan(zip(p, Fixture.floats(c["target"])).map { abs($0 - $1) }.max()!, 1e-6, mode)
            for (loss, value) in [("forward_kl", { (s: Tensor) in DistillationLoss.softTargetKL(student: s, teacher: combined, temperature: tau) }),
                                  ("jsd", { (s: Tensor) in DistillationLoss.generalizedJSD(student: s, teacher: combined, beta: beta, temperature: tau) })] {
                let expected = c[loss] as! [String: Any]
                let s = student.requiringGrad()
                let l = value(s)
                XCTAssertEqual(Double(l.item), Fixture.double(expected["value"]), accuracy: 1e-5, "\(mode) \(loss)")
                let g = gradients(of: l, wrt: [s])[0].scalars
                XCTAssertLessThan(zip(g, Fixture.floats(expected["grad"])).map { abs($0 - $1) }.max()!, 1e-5, "\(mode) \(loss) gradient")
            }
        }
    }

    /// Finite differences through the combined target (the student's side of the loss).
    func testGradientByFiniteDifferences() {
        let teachers = [normal([3, 7], std: 2, seed: 1), normal([3, 7], std: 2, seed: 2)]
        for mode in TeacherCombination.allCases {
            let combined = MultiTeacher.combine(teachers, weights: [0.4, 0.6], temperature: 1.5, combination: mode, routes: [nil, 1, nil])
            checkGradients(inputs: [normal([3, 7], seed: 3)]) { x in
                DistillationLoss.generalizedJSD(student: x[0], teacher: combined, beta: 0.5, temperature: 1.5)
            }
        }
    }

    /// Two copies of one teacher (any weights, either combination) give the single teacher's
    /// loss and, trained the same steps, the same student.
    func testIdenticalTeachersEqualOneTeacher() throws {
        let teacher = TinyCorpus.teacher()
        let data = TinyCorpus.sequences(8, seed: 4)
        let c = TrainerConfiguration(totalSteps: 3, batchSize: 4, layout: .padToLongest(padId: 0), order: .shuffled(seed: 1),
                                     learningRate: .constant(3e-3), seed: 2)
        let single = Trainer(student: TransformerLM(TinyCorpus.studentConfig, seed: 5), teacher: LocalTeacher(lm: teacher), train: data,
                             plan: .kd(alpha: 0.7, temperature: 2), configuration: c)
        try single.run()
        for mode in TeacherCombination.allCases {
            let multi = try MultiTeacher(members: [("a", teacher, 0.3), ("b", teacher, 0.9)], combination: mode)
            let trainer = Trainer(student: TransformerLM(TinyCorpus.studentConfig, seed: 5), teacher: multi, train: data,
                                  plan: .kd(alpha: 0.7, temperature: 2), configuration: c)
            try trainer.run()
            for ((name, a), (_, b)) in zip(single.student.namedParameters(), trainer.student.namedParameters()) {
                XCTAssertLessThan(zip(a.value.scalars, b.value.scalars).map { abs($0 - $1) }.max()!, 1e-5, "\(mode) \(name)")
            }
        }
        let batch = Batch.make(Array(data.prefix(3)), layout: .padToLongest(padId: 0))
        let plan = StepPlan(soft: 1, hard: 0, temperature: 2)
        let multi = try MultiTeacher(members: [("a", teacher, 1), ("b", teacher, 1)])
        let a = try withoutGradients { try single.loss(batch, plan: plan).total.item }
        let b = try withoutGradients {
            try Trainer(student: single.student, teacher: multi, train: data, plan: .hardOnly, configuration: c).loss(batch, plan: plan).total.item
        }
        XCTAssertEqual(a, b, accuracy: 1e-6 * max(1, abs(a)))
    }

    /// A routed sequence gets its member's distribution alone; others the combination.
    func testRoutingPicksTheMember() throws {
        let t1 = TinyCorpus.teacher(seed: 7), t2 = TinyCorpus.teacher(seed: 8)
        let data = TinyCorpus.sequences(2, seed: 6)
        let multi = try MultiTeacher(members: [("one", t1, 1), ("two", t2, 1)], routes: [data[0].ids: 1])
        let view = try multi.view(of: data.map(\.ids))
        guard case .full(let combined) = view, case .full(let second) = try LocalTeacher(lm: t2).view(of: [data[0].ids]) else { return XCTFail() }
        let n0 = data[0].ids.count, v = TinyCorpus.vocab
        XCTAssertEqual(Array(combined.scalars[0..<(n0 * v)]), second.scalars)
        guard case .full(let first) = try LocalTeacher(lm: t1).view(of: [data[1].ids]) else { return XCTFail() }
        XCTAssertNotEqual(Array(combined.scalars[(n0 * v)...]), first.scalars)
    }

    func testErrors() {
        let t = TinyCorpus.teacher()
        XCTAssertThrowsError(try MultiTeacher(members: [("a", t, 0), ("b", t, 0)])) {
            XCTAssertTrue("\($0)".contains("the weights sum to 0.0; at least one must be positive"), "\($0)")
        }
        XCTAssertThrowsError(try MultiTeacher(members: [("a", t, -1)])) { XCTAssertTrue("\($0)".contains("teacher a: weight -1.0"), "\($0)") }
        XCTAssertThrowsError(try MultiTeacher(members: [])) { XCTAssertTrue("\($0)".contains("no teacher"), "\($0)") }
        let other = TransformerLM(TransformerConfig(vocabSize: 20, hidden: 8, layers: 1, heads: 2, kvHeads: 1, intermediate: 8), seed: 1)
        XCTAssertThrowsError(try MultiTeacher(members: [("a", t, 1), ("b", other, 1)])) {
            XCTAssertTrue("\($0)".contains("teacher b has vocabulary 20, teacher a 16"), "\($0)")
        }
    }
}
