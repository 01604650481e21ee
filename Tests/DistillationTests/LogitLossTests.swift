import DistillTensor
import Distillation
import XCTest

/// Logit losses against PyTorch (float64 references from float32 inputs; B=2, T=3, V=11, a mask of
/// four assistant rows), finite differences, and the identities between them.
final class LogitLossTests: XCTestCase {
    /// The loss of a fixture case on the fixture's [B, T, V] student logits.
    func loss(_ c: [String: Any], _ s: Tensor) -> Tensor {
        let t = Fixture.teacher, mask = Fixture.mask
        let tau = c["tau"].map { Fixture.float($0) } ?? 1
        switch c["kind"] as! String {
        case "forwardKL": return DistillationLoss.softTargetKL(student: s, teacher: t, temperature: tau, mask: mask)
        case "reverseKL": return DistillationLoss.reverseKL(student: s, teacher: t, temperature: tau, mask: mask)
        case "totalVariation": return DistillationLoss.totalVariation(student: s, teacher: t, temperature: tau, mask: mask)
        case "jsd":
            return DistillationLoss.generalizedJSD(student: s, teacher: t, beta: Fixture.float(c["beta"]), temperature: tau, mask: mask)
        case "mse": return DistillationLoss.logitMSE(student: s, teacher: t, mask: mask)
        case "crossEntropy":
            return DistillationLoss.hardCrossEntropy(student: s, targets: Fixture.targets, labelSmoothing: Fixture.float(c["smoothing"]))
        case "softAndHard":
            // No explicit mask: the soft term counts the rows whose target is not -100 (= the fixture's mask).
            return DistillationLoss.softAndHard(student: s, teacher: t, targets: Fixture.targets, alpha: Fixture.float(c["alpha"]),
                                                temperature: tau, labelSmoothing: Fixture.float(c["smoothing"]))
        default: fatalError("unknown case kind")
        }
    }

    func testValuesAndGradientsMatchPyTorch() {
        let cases = Fixture.list(Fixture.losses["cases"])
        XCTAssertEqual(cases.count, 16)
        for c in cases {
            let name = c["name"] as! String
            let (value, grads) = valueAndGradient(at: [Fixture.student]) { loss(c, $0[0]) }
            assertRelative(value.item, Fixture.double(c["value"]), name)
            assertTensorsClose(grads[0], Fixture.tensor(c["grad"]), "gradient of \(name)")
        }
    }

    /// The [N, V] view of the same logits gives the same loss: [B, T, V] is flattened row-major.
    func testFlatRowsEqualBatchedShape() {
        let s = Fixture.student, t = Fixture.teacher
        let a = DistillationLoss.softTargetKL(student: s, teacher: t, temperature: 2, mask: Fixture.mask).item
        let b = DistillationLoss.softTargetKL(student: s.reshaped([6, 11]), teacher: t.reshaped([6, 11]),
                                              temperature: 2, mask: Fixture.mask).item
        XCTAssertEqual(a, b)
        // A mask is the same as selecting its rows.
        let rows = Fixture.maskRows
        let c = DistillationLoss.softTargetKL(student: s.reshaped([6, 11]).indexSelect(rows),
                                              teacher: t.reshaped([6, 11]).indexSelect(rows), temperature: 2).item
        XCTAssertEqual(a, c, accuracy: 1e-6)
    }

    // JSD(β = 0) is KL(p_t ‖ p_s) and JSD(β = 1) is KL(p_s ‖ p_t) — TRL's special cases. TRL's JSD
    // has no τ² factor, so at τ = 2 it is the τ²-scaled KL divided by 4.
    func testJSDEndpointsAreForwardAndReverseKL() {
        let s = Fixture.student, t = Fixture.teacher, m = Fixture.mask
        for tau: Float in [1, 2] {
            let fwd = DistillationLoss.softTargetKL(student: s, teacher: t, temperature: tau, mask: m).item / (tau * tau)
            let rev = DistillationLoss.reverseKL(student: s, teacher: t, temperature: tau, mask: m).item / (tau * tau)
            let j0 = DistillationLoss.generalizedJSD(student: s, teacher: t, beta: 0, temperature: tau, mask: m).item
            let j1 = DistillationLoss.generalizedJSD(student: s, teacher: t, beta: 1, temperature: tau, mask: m).item
            XCTAssertEqual(j0, fwd, accuracy: 1e-6 * fwd)
            XCTAssertEqual(j1, rev, accuracy: 1e-6 * rev)
        }
        // Gradients too (τ = 1).
        let g0 = gradient(at: s) { DistillationLoss.generalizedJSD(student: $0, teacher: t, beta: 0, mask: m) }
        let gf = gradient(at: s) { DistillationLoss.softTargetKL(student: $0, teacher: t, temperature: 1, mask: m) }
        assertTensorsClose(g0, gf, tolerance: 1e-6)
        let g1 = gradient(at: s) { DistillationLoss.generalizedJSD(student: $0, teacher: t, beta: 1, mask: m) }
        let gr = gradient(at: s) { DistillationLoss.reverseKL(student: $0, teacher: t, mask: m) }
        assertTensorsClose(g1, gr, tolerance: 1e-6)
    }

    /// Every divergence of a distribution from itself is 0, and so is its gradient.
    func testIdenticalInputsGiveZero() {
        let s = Fixture.student
        let kinds: [LogitDivergence] = [.forwardKL, .reverseKL, .jsd(beta: 0.3), .jsd(beta: 0), .jsd(beta: 1), .totalVariation, .mse]
        for kind in kinds {
            let (v, g) = valueAndGradient(at: [s]) { DistillationLoss.divergence(kind, student: $0[0], teacher: s, temperature: 1.7) }
            XCTAssertEqual(v.item, 0, accuracy: 1e-6, "\(kind)")
            XCTAssertLessThanOrEqual(g[0].scalars.map(abs).max()!, 1e-6, "\(kind)")
        }
    }

    /// α = 1 is the soft loss alone, bit for bit; α = 0 the cross-entropy alone.
    func testAlphaEndpoints() {
        let s = Fixture.student, t = Fixture.teacher, y = Fixture.targets
        let soft = DistillationLoss.softTargetKL(student: s, teacher: t, temperature: 2, mask: LossMask(labels: y)).item
        let a1 = DistillationLoss.softAndHard(student: s, teacher: t, targets: y, alpha: 1, temperature: 2, labelSmoothing: 0.1).item
        XCTAssertEqual(a1, soft)
        let hard = DistillationLoss.hardCrossEntropy(student: s, targets: y, labelSmoothing: 0.1).item
        let a0 = DistillationLoss.softAndHard(student: s, teacher: t, targets: y, alpha: 0, temperature: 2, labelSmoothing: 0.1).item
        XCTAssertEqual(a0, hard)
    }

    /// No counted row: every loss is 0 (TRL clamps the count to 1), gradients 0.
    func testEmptyMaskGivesZero() {
        let s = Fixture.student, t = Fixture.teacher
        let none = LossMask([Bool](repeating: false, count: 6))
        for kind: LogitDivergence in [.forwardKL, .reverseKL, .jsd(beta: 0.5), .totalVariation, .mse] {
            let (v, g) = valueAndGradient(at: [s]) { DistillationLoss.divergence(kind, student: $0[0], teacher: t, mask: none) }
            XCTAssertEqual(v.item, 0, "\(kind)")
            XCTAssertEqual(g[0].scalars.map(abs).max(), 0, "\(kind)")
        }
    }

    /// The teacher is a constant: no gradient reaches it even when it is a leaf.
    func testNoGradientIntoTeacher() {
        let s = Fixture.student, t = Fixture.teacher
        let (_, g) = valueAndGradient(at: [s, t]) { DistillationLoss.softTargetKL(student: $0[0], teacher: $0[1], temperature: 2) }
        XCTAssertEqual(g[1].scalars.map(abs).max(), 0)
    }

    // Finite differences on a small case (4 rows, 3 counted, V = 7) at τ = 1.5.
    func testFiniteDifferenceGradients() {
        let s = normal([4, 7], std: 1.5, seed: 1), t = normal([4, 7], std: 2, seed: 2)
        let m = LossMask([true, false, true, true])
        let kinds: [LogitDivergence] = [.forwardKL, .reverseKL, .jsd(beta: 0), .jsd(beta: 0.25), .jsd(beta: 0.8), .jsd(beta: 1),
                                        .totalVariation, .mse]
        for kind in kinds {
            checkGradients(inputs: [s]) { DistillationLoss.divergence(kind, student: $0[0], teacher: t, temperature: 1.5, mask: m) }
        }
        let y = [2, -100, 6, 0]
        checkGradients(inputs: [s]) { DistillationLoss.hardCrossEntropy(student: $0[0], targets: y, labelSmoothing: 0.2) }
        checkGradients(inputs: [s]) {
            DistillationLoss.softAndHard(student: $0[0], teacher: t, targets: y, alpha: 0.4, divergence: .reverseKL,
                                         temperature: 3, labelSmoothing: 0.1)
        }
    }

    /// Forward KL by hand for one row: p_t = softmax([0, ln 3]) = (¼, ¾), p_s = (½, ½):
    /// KL = ¼·ln(½) + ¾·ln(3/2) = 0.130812035...
    func testForwardKLByHand() {
        let s = Tensor([0, 0], shape: [1, 2]), t = Tensor([0, Float(Foundation.log(3.0))], shape: [1, 2])
        let kl = DistillationLoss.softTargetKL(student: s, teacher: t, temperature: 1).item
        XCTAssertEqual(Double(kl), 0.25 * Foundation.log(0.5) + 0.75 * Foundation.log(1.5), accuracy: 1e-7)
        // Reverse: ½·ln(2) + ½·ln(2/3)
        let rev = DistillationLoss.reverseKL(student: s, teacher: t).item
        XCTAssertEqual(Double(rev), 0.5 * Foundation.log(2.0) + 0.5 * Foundation.log(2.0 / 3), accuracy: 1e-7)
        // Total variation: ½(|¼−½| + |¾−½|) = ¼
        XCTAssertEqual(DistillationLoss.totalVariation(student: s, teacher: t).item, 0.25, accuracy: 1e-7)
    }
}

import Foundation
