import DistillTensor
import Distillation
import Foundation
import XCTest

/// Sparse KD from the teacher's top-k log-probabilities plus a rest bucket.
final class SparseKDTests: XCTestCase {
    func fixtureTeacher() throws -> (SparseTeacherTargets, [String: Any]) {
        let f = Fixture.object(Fixture.losses["sparse"])
        let t = try SparseTeacherTargets(ids: Fixture.ints(f["ids"]), logprobs: Fixture.floats(f["logprobs"]),
                                         k: Fixture.int(f["k"]), vocabularySize: 11)
        return (t, f)
    }

    func testMatchesPyTorch() throws {
        let (teacher, f) = try fixtureTeacher()
        let tau = Fixture.float(f["tau"])
        let (v, g) = valueAndGradient(at: [Fixture.student]) {
            DistillationLoss.sparseKL(student: $0[0], teacher: teacher, temperature: tau, mask: Fixture.mask)
        }
        assertRelative(v.item, Fixture.double(f["value"]), "sparseKL")
        assertTensorsClose(g[0], Fixture.tensor(f["grad"]), "sparseKL gradient")
    }

    /// With k = V there is no rest bucket, and the loss is the full soft-target KL (same τ).
    func testFullTopKEqualsFullKL() throws {
        let s = Fixture.student, t = Fixture.teacher
        for tau: Float in [1, 2.5] {
            let teacher = try SparseTeacherTargets.topK(ofLogits: t, k: 11, temperature: tau)
            XCTAssertEqual(teacher.restMass.max()!, 0, accuracy: 1e-6)
            let (sv, sg) = valueAndGradient(at: [s]) { DistillationLoss.sparseKL(student: $0[0], teacher: teacher, temperature: tau, mask: Fixture.mask) }
            let (fv, fg) = valueAndGradient(at: [s]) { DistillationLoss.softTargetKL(student: $0[0], teacher: t, temperature: tau, mask: Fixture.mask) }
            XCTAssertEqual(sv.item, fv.item, accuracy: 2e-6 * fv.item, "τ = \(tau)")
            assertTensorsClose(sg[0], fg[0], tolerance: 1e-5, "τ = \(tau)")
        }
    }

    /// k = 1 by hand: teacher p(id 0) = ½, rest ½; student p = (¼, ¼, ½):
    /// ½·ln(½/¼) + ½·ln(½/¾) = ½ ln 2 + ½ ln(2/3).
    func testRestBucketByHand() throws {
        let teacher = try SparseTeacherTargets(ids: [0], logprobs: [Float(Foundation.log(0.5))], k: 1, vocabularySize: 3)
        XCTAssertEqual(teacher.restMass[0], 0.5, accuracy: 1e-7)
        let s = Tensor([0, 0, Float(Foundation.log(2.0))], shape: [1, 3])
        let v = DistillationLoss.sparseKL(student: s, teacher: teacher).item
        XCTAssertEqual(Double(v), 0.5 * Foundation.log(2.0) + 0.5 * Foundation.log(2.0 / 3), accuracy: 1e-7)
    }

    func testFiniteDifferenceGradients() throws {
        let t = normal([5, 9], std: 2, seed: 11)
        let teacher = try SparseTeacherTargets.topK(ofLogits: t, k: 3, temperature: 1.5)
        let s = normal([5, 9], std: 1.5, seed: 12)
        checkGradients(inputs: [s]) {
            DistillationLoss.sparseKL(student: $0[0], teacher: teacher, temperature: 1.5, mask: LossMask([true, true, false, true, true]))
        }
        // A rest mass given by the server rather than 1 − Σp.
        let given = try SparseTeacherTargets(ids: teacher.ids, logprobs: teacher.logprobs, k: 3, vocabularySize: 9,
                                             restMass: teacher.restMass.map { $0 * 0.9 })
        checkGradients(inputs: [s]) { DistillationLoss.sparseKL(student: $0[0], teacher: given, temperature: 1.5) }
    }

    func testTopKHelperOrdersByLogProbability() throws {
        let t = Tensor([0.5, 3, -1, 2], shape: [1, 4])
        let sp = try SparseTeacherTargets.topK(ofLogits: t, k: 2)
        XCTAssertEqual(sp.ids, [1, 3])
        let lse = Foundation.log(Foundation.exp(0.5) + Foundation.exp(3.0) + Foundation.exp(-1.0) + Foundation.exp(2.0))
        XCTAssertEqual(Double(sp.logprobs[0]), 3 - lse, accuracy: 1e-6)
        XCTAssertEqual(Double(sp.restMass[0]), (Foundation.exp(0.5) + Foundation.exp(-1.0)) / Foundation.exp(lse), accuracy: 1e-6)
    }

    func testBadTeacherDataThrows() {
        let lp = Float(Foundation.log(0.25))
        assertThrowsMessage(try SparseTeacherTargets(ids: [0, 11], logprobs: [lp, lp], k: 2, vocabularySize: 11),
                            contains: ["SparseTeacherTargets", "token id", "11", "0..<11"])
        assertThrowsMessage(try SparseTeacherTargets(ids: [-1, 2], logprobs: [lp, lp], k: 2, vocabularySize: 11),
                            contains: ["token id", "-1"])
        assertThrowsMessage(try SparseTeacherTargets(ids: [4, 4], logprobs: [lp, lp], k: 2, vocabularySize: 11),
                            contains: ["id 4 appears twice in row 0"])
        assertThrowsMessage(try SparseTeacherTargets(ids: [1, 2, 3], logprobs: [lp, lp], k: 2, vocabularySize: 11),
                            contains: ["rows × k"])
        assertThrowsMessage(try SparseTeacherTargets(ids: [1], logprobs: [lp], k: 12, vocabularySize: 11),
                            contains: ["k = 12", "1...11"])
        assertThrowsMessage(try SparseTeacherTargets(ids: [1, 2], logprobs: [-0.1, -0.2], k: 2, vocabularySize: 11),
                            contains: ["sum to", "> 1"])
        assertThrowsMessage(try SparseTeacherTargets(ids: [1, 2], logprobs: [lp, .nan], k: 2, vocabularySize: 11),
                            contains: ["log-probability"])
    }

    func testStudentTeacherMismatchIsReported() throws {
        let (teacher, _) = try fixtureTeacher()
        assertThrowsMessage(try DistillationLoss.validateSparse(loss: "sparseKL", student: [6, 12], teacher: teacher, mask: nil),
                            contains: ["sparseKL", "[6, 12]", "11 tokens", "12 tokens"])
        assertThrowsMessage(try DistillationLoss.validateSparse(loss: "sparseKL", student: [5, 11], teacher: teacher, mask: nil),
                            contains: ["sparseKL", "5 rows", "6 rows"])
        assertThrowsMessage(try DistillationLoss.validateSparse(loss: "sparseKL", student: [2, 3, 11], teacher: teacher, mask: .all(5)),
                            contains: ["sparseKL", "mask is for 5 rows", "6 rows"])
        XCTAssertNoThrow(try DistillationLoss.validateSparse(loss: "sparseKL", student: [2, 3, 11], teacher: teacher, mask: .all(6)))
    }
}
