import DistillTensor
import Distillation
import Foundation
import XCTest

/// Attention transfer: head grouping, top-K teacher heads by entropy, values and gradients.
final class AttentionTransferTests: XCTestCase {
    /// Causal attention probabilities from scores [B, H, T, T]: softmax(scores + causal mask).
    func causalProbabilities(_ scores: Tensor) -> Tensor {
        let t = scores.shape[2]
        return (scores + Tensor.causalMask(queries: t, keys: t)).softmax(axis: -1)
    }

    var attention: [String: Any] { Fixture.object(Fixture.losses["attention"]) }
    var attentionMask: LossMask { LossMask((attention["mask"] as! [Any]).map { ($0 as? Bool) ?? (Fixture.number($0) != 0) }) }

    func testMatchesPyTorch() {
        let scores = Fixture.tensor(attention["student_scores"])
        let cases = Fixture.list(attention["cases"])
        XCTAssertEqual(cases.count, 6)
        for c in cases {
            let teacher = Fixture.tensor(attention[c["teacher"] as! String])
            let distance = AttentionDistance(rawValue: c["distance"] as! String)!
            let topK = c["topk"].flatMap { $0 is NSNull ? nil : Fixture.int($0) }
            let name = "\(c["teacher"]!) \(distance) top-\(topK.map(String.init) ?? "all")"
            let (v, g) = valueAndGradient(at: [scores]) {
                DistillationLoss.attentionTransfer(student: [causalProbabilities($0[0])], teacher: [teacher],
                                                   map: LayerMap.uniform(studentLayers: 1, teacherLayers: 1),
                                                   distance: distance, topKTeacherHeads: topK, mask: attentionMask)
            }
            assertRelative(v.item, Fixture.double(c["value"]), name)
            assertTensorsClose(g[0], Fixture.tensor(c["grad"]), "gradient \(name)")
            if let k = topK {
                let heads = DistillationLoss.focusedTeacherHeads(teacher, k: k, mask: attentionMask)
                XCTAssertEqual(heads, Fixture.ints(c["heads"]), name)
            }
        }
    }

    func testHeadEntropies() {
        let teacher = Fixture.tensor(attention["teacher4"])
        let e = DistillationLoss.teacherHeadEntropies(teacher, mask: attentionMask)
        let expected = (attention["entropies4"] as! [Any]).map(Fixture.number)
        for (a, b) in zip(e, expected) { XCTAssertEqual(a, b, accuracy: 1e-6 * b) }
        // One-hot rows have entropy 0; uniform rows over n keys ln n.
        let oneHot = Tensor([1, 0, 0, 0, 1, 0], shape: [1, 1, 2, 3])
        XCTAssertEqual(DistillationLoss.teacherHeadEntropies(oneHot), [0])
        let uniform = Tensor([Float](repeating: 0.25, count: 8), shape: [1, 2, 1, 4])
        XCTAssertEqual(DistillationLoss.teacherHeadEntropies(uniform)[1], Foundation.log(4.0), accuracy: 1e-7)
        // Lowest entropy first: the one-hot-like head wins.
        let mixed = concat([uniform.slice(axis: 1, start: 0, length: 1), Tensor([0.97, 0.01, 0.01, 0.01], shape: [1, 1, 1, 4])], axis: 1)
        XCTAssertEqual(DistillationLoss.focusedTeacherHeads(mixed, k: 1), [1])
    }

    /// Same head count and identical maps: 0. Student with 2 heads against a teacher of 4 heads
    /// whose pairs (0, 1) and (2, 3) average to the student's heads: 0 as well (grouping).
    func testGroupingOfTeacherHeads() {
        let s = causalProbabilities(normal([1, 2, 3, 3], seed: 4))
        let map = LayerMap.uniform(studentLayers: 1, teacherLayers: 1)
        XCTAssertEqual(DistillationLoss.attentionTransfer(student: [s], teacher: [s], map: map).item, 0, accuracy: 1e-7)
        // Teacher heads 2g and 2g+1 = s_g ± δ (rows still sum to 1; δ sums to 0 over keys and is
        // 0 where the mask hides keys).
        let delta = Tensor([0, 0, 0, 0.005, -0.005, 0, 0.002, 0.001, -0.003], shape: [1, 1, 3, 3])
        var heads: [Tensor] = []
        for g in 0..<2 {
            let sg = s.slice(axis: 1, start: g, length: 1)
            heads.append(sg + delta)
            heads.append(sg - delta)
        }
        let teacher = concat(heads, axis: 1)                                        // (1, 4, 3, 3)
        XCTAssertEqual(DistillationLoss.attentionTransfer(student: [s], teacher: [teacher], map: map).item, 0, accuracy: 1e-6)
        XCTAssertEqual(DistillationLoss.attentionTransfer(student: [s], teacher: [teacher], map: map, distance: .cosine).item,
                       0, accuracy: 1e-6)
    }

    func testFiniteDifferenceGradients() {
        let scores = normal([2, 2, 3, 3], std: 1.5, seed: 31)
        let teachers = [causalProbabilities(normal([2, 4, 3, 3], std: 2, seed: 32)),
                        causalProbabilities(normal([2, 3, 3, 3], std: 2, seed: 33))]
        let map = try! LayerMap([(student: 0, teacher: 1), (student: 1, teacher: 0)])
        let mask = LossMask([true, true, false, true, false, true])
        for distance in [AttentionDistance.kl, .cosine] {
            for topK in [nil, 2] as [Int?] {
                checkGradients(inputs: [scores, scores * 0.5]) { xs in
                    DistillationLoss.attentionTransfer(student: [causalProbabilities(xs[0]), causalProbabilities(xs[1])],
                                                       teacher: teachers, map: map, distance: distance,
                                                       topKTeacherHeads: topK, mask: mask)
                }
            }
        }
    }

    func testBadInputIsReported() {
        let map = LayerMap.uniform(studentLayers: 1, teacherLayers: 2)
        XCTAssertNoThrow(try DistillationLoss.validateAttention(student: [[2, 2, 4, 4]], teacher: [[2, 4, 4, 4], [2, 4, 4, 4]],
                                                               map: map, topKTeacherHeads: 2, mask: .all(8)))
        assertThrowsMessage(try DistillationLoss.validateAttention(student: [[2, 2, 4, 4]], teacher: [[2, 4, 4, 4], [2, 4, 5, 5]],
                                                                   map: map, topKTeacherHeads: nil, mask: nil),
                            contains: ["attentionTransfer", "[2, 2, 4, 4]", "[2, 4, 5, 5]"])
        assertThrowsMessage(try DistillationLoss.validateAttention(student: [[2, 2, 4, 4]], teacher: [[2, 4, 4, 4], [2, 4, 4, 4]],
                                                                   map: map, topKTeacherHeads: 5, mask: nil),
                            contains: ["attentionTransfer", "top-5", "4 heads"])
        assertThrowsMessage(try DistillationLoss.validateAttention(student: [[2, 2, 4, 4]], teacher: [[2, 4, 4, 4]],
                                                                   map: map, topKTeacherHeads: nil, mask: nil),
                            contains: ["attentionTransfer", "teacher layer", "1", "0..<1"])
        assertThrowsMessage(try DistillationLoss.validateAttention(student: [[2, 2, 4, 4]], teacher: [[2, 4, 4, 4], [2, 4, 4, 4]],
                                                                   map: map, topKTeacherHeads: nil, mask: .all(6)),
                            contains: ["attentionTransfer", "mask is for 6 rows", "8 rows"])
    }
}
