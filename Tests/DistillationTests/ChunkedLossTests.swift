import DistillTensor
import Distillation
import XCTest

/// The chunked loss fused with the output projection, and the same row kernels on given logits
/// (`logitLossParts`): PyTorch fixture, agreement with the composite losses on the full logits for
/// every divergence and chunk size, finite differences, and how they plug into autodiff.
final class ChunkedLossTests: XCTestCase {
    func testMatchesPyTorch() {
        let f = Fixture.object(Fixture.losses["fused"])
        let hidden = Fixture.tensor(f["hidden"]), weight = Fixture.tensor(f["weight"]), teacher = Fixture.tensor(f["teacher"])
        let options = { (chunk: Int) in
            FusedLossOptions(divergence: .forwardKL, temperature: Fixture.float(f["tau"]), alpha: Fixture.float(f["alpha"]),
                             labelSmoothing: Fixture.float(f["smoothing"]), chunkSize: chunk)
        }
        for chunk in [1, 2, 4, 1024] {
            let (v, g) = valueAndGradient(at: [hidden, weight]) { xs in
                DistillationLoss.fusedLinearLoss(hidden: xs[0], weight: xs[1], teacher: .logits { teacher.indexSelect($0) },
                                                 targets: Fixture.targets, options: options(chunk))
            }
            assertRelative(v.item, Fixture.double(f["value"]), "fused value, chunk \(chunk)")
            assertTensorsClose(g[0], Fixture.tensor(f["grad_hidden"]), "fused dH, chunk \(chunk)")
            assertTensorsClose(g[1], Fixture.tensor(f["grad_weight"]), "fused dW, chunk \(chunk)")
            // The same loss on logits computed first (logitLossParts), gradients through the matmul.
            let (lv, lg) = valueAndGradient(at: [hidden, weight]) { xs in
                DistillationLoss.logitLossParts(logits: xs[0].matmul(xs[1], transB: true), teacher: .logits { teacher.indexSelect($0) },
                                                targets: Fixture.targets, options: options(chunk)).total
            }
            assertRelative(lv.item, Fixture.double(f["value"]), "logit-loss value, chunk \(chunk)")
            assertTensorsClose(lg[0], Fixture.tensor(f["grad_hidden"]), "logit-loss dH, chunk \(chunk)")
            assertTensorsClose(lg[1], Fixture.tensor(f["grad_weight"]), "logit-loss dW, chunk \(chunk)")
        }
    }

    /// `logitLossParts` on h·wᵀ: the loss of `fusedLinearLoss`, on logits computed first.
    func logitLoss(_ h: Tensor, _ w: Tensor, teacher: ChunkedTeacher?, targets: [Int]?, mask: LossMask? = nil,
                   _ o: FusedLossOptions) -> Tensor {
        DistillationLoss.logitLossParts(logits: h.reshaped([-1, w.shape[1]]).matmul(w, transB: true), teacher: teacher,
                                        targets: targets, mask: mask, options: o).total
    }

    /// Composite reference: full logits, then the loss built from engine ops (autodiff gradients).
    func composite(_ h: Tensor, _ w: Tensor, teacherLogits: Tensor?, sparse: SparseTeacherTargets?, targets: [Int]?,
                   mask: LossMask?, _ o: FusedLossOptions) -> Tensor {
        let logits = h.reshaped([-1, w.shape[1]]).matmul(w, transB: true)           // (N, V)
        let softMask = mask ?? targets.map { LossMask(labels: $0, ignoreIndex: o.ignoreIndex) }
        var soft: Tensor? = nil
        if let sparse {
            soft = DistillationLoss.sparseKL(student: logits, teacher: sparse, temperature: o.temperature, mask: softMask)
        } else if let teacherLogits {
            soft = DistillationLoss.divergence(o.divergence, student: logits, teacher: teacherLogits, temperature: o.temperature, mask: softMask)
        }
        let hard = targets.map {
            DistillationLoss.hardCrossEntropy(student: logits, targets: $0, labelSmoothing: o.labelSmoothing, ignoreIndex: o.ignoreIndex)
        }
        switch (soft, hard) {
        case let (s?, h?): return s * o.alpha + h * (1 - o.alpha)
        case let (s?, nil): return s
        case let (nil, h?): return h
        default: fatalError()
        }
    }

    func testAgreesWithCompositeLosses() throws {
        let n = 7, width = 6, v = 13
        let h = normal([n, width], seed: 41), w = normal([v, width], std: 0.7, seed: 42)
        let t = normal([n, v], std: 2, seed: 43)
        let targets = [4, -100, 0, 12, -100, 7, 3]
        let mask = LossMask([true, true, false, true, false, true, true])
        let kinds: [LogitDivergence] = [.forwardKL, .reverseKL, .jsd(beta: 0), .jsd(beta: 0.3), .jsd(beta: 1), .totalVariation, .mse]
        for kind in kinds {
            for (y, m, alpha) in [(targets, nil, 0.6), (nil, mask, 1), (targets, mask, 0.25)] as [([Int]?, LossMask?, Float)] {
                for chunk in [1, 3, 100] {
                    let o = FusedLossOptions(divergence: kind, temperature: 1.7, alpha: alpha, labelSmoothing: 0.15, chunkSize: chunk)
                    let name = "\(kind) targets: \(y != nil) mask: \(m != nil) α = \(alpha) chunk \(chunk)"
                    let (fv, fg) = valueAndGradient(at: [h, w]) { xs in
                        DistillationLoss.fusedLinearLoss(hidden: xs[0], weight: xs[1], teacher: .logits { t.indexSelect($0) },
                                                         targets: y, mask: m, options: o)
                    }
                    let (cv, cg) = valueAndGradient(at: [h, w]) { xs in
                        composite(xs[0], xs[1], teacherLogits: t, sparse: nil, targets: y, mask: m, o)
                    }
                    assertRelative(fv.item, Double(cv.item), tolerance: 1e-5, name)
                    assertTensorsClose(fg[0], cg[0], tolerance: 1e-5, "dH \(name)")
                    assertTensorsClose(fg[1], cg[1], tolerance: 1e-5, "dW \(name)")
                    let (lv, lg) = valueAndGradient(at: [h, w]) { xs in
                        logitLoss(xs[0], xs[1], teacher: .logits { t.indexSelect($0) }, targets: y, mask: m, o)
                    }
                    assertRelative(lv.item, Double(cv.item), tolerance: 1e-5, "logit loss, \(name)")
                    assertTensorsClose(lg[0], cg[0], tolerance: 1e-5, "logit loss dH \(name)")
                    assertTensorsClose(lg[1], cg[1], tolerance: 1e-5, "logit loss dW \(name)")
                }
            }
        }
        // Sparse teacher (top-4 at τ = 1.7), and cross-entropy alone (no teacher).
        let sparse = try SparseTeacherTargets.topK(ofLogits: t, k: 4, temperature: 1.7)
        for (teacher, y) in [(ChunkedTeacher.sparse(sparse), targets), (nil, targets), (.sparse(sparse), nil)] as [(ChunkedTeacher?, [Int]?)] {
            for chunk in [2, 100] {
                let o = FusedLossOptions(temperature: 1.7, alpha: 0.5, labelSmoothing: 0.1, chunkSize: chunk)
                let (fv, fg) = valueAndGradient(at: [h, w]) { xs in
                    DistillationLoss.fusedLinearLoss(hidden: xs[0], weight: xs[1], teacher: teacher, targets: y, options: o)
                }
                let (cv, cg) = valueAndGradient(at: [h, w]) { xs in
                    composite(xs[0], xs[1], teacherLogits: nil, sparse: teacher == nil ? nil : sparse, targets: y, mask: nil, o)
                }
                let name = "sparse: \(teacher != nil) targets: \(y != nil) chunk \(chunk)"
                assertRelative(fv.item, Double(cv.item), tolerance: 1e-5, name)
                assertTensorsClose(fg[0], cg[0], tolerance: 1e-5, "dH \(name)")
                assertTensorsClose(fg[1], cg[1], tolerance: 1e-5, "dW \(name)")
                let (lv, lg) = valueAndGradient(at: [h, w]) { xs in logitLoss(xs[0], xs[1], teacher: teacher, targets: y, o) }
                assertRelative(lv.item, Double(cv.item), tolerance: 1e-5, "logit loss, \(name)")
                assertTensorsClose(lg[0], cg[0], tolerance: 1e-5, "logit loss dH \(name)")
                assertTensorsClose(lg[1], cg[1], tolerance: 1e-5, "logit loss dW \(name)")
            }
        }
    }

    func testFiniteDifferenceGradients() throws {
        let h = normal([2, 3, 4], seed: 51), w = normal([9, 4], std: 0.6, seed: 52), t = normal([6, 9], std: 2, seed: 53)
        let y = [1, 8, -100, 0, 5, 2]
        for kind: LogitDivergence in [.forwardKL, .reverseKL, .jsd(beta: 0.4), .totalVariation, .mse] {
            let o = FusedLossOptions(divergence: kind, temperature: 1.3, alpha: 0.7, labelSmoothing: 0.1, chunkSize: 4)
            checkGradients(inputs: [h, w]) { xs in
                DistillationLoss.fusedLinearLoss(hidden: xs[0], weight: xs[1], teacher: .logits { t.indexSelect($0) }, targets: y, options: o)
            }
            checkGradients(inputs: [h, w]) { xs in logitLoss(xs[0], xs[1], teacher: .logits { t.indexSelect($0) }, targets: y, o) }
        }
        let sparse = try SparseTeacherTargets.topK(ofLogits: t, k: 3, temperature: 1.3)
        checkGradients(inputs: [h, w]) { xs in
            DistillationLoss.fusedLinearLoss(hidden: xs[0], weight: xs[1], teacher: .sparse(sparse), targets: y,
                                             options: FusedLossOptions(temperature: 1.3, alpha: 0.7, chunkSize: 4))
        }
    }

    /// The teacher is asked only for the soft rows, at most `chunkSize` at a time, in order.
    func testTeacherFetchedChunkByChunk() {
        let h = normal([10, 3], seed: 61), w = normal([5, 3], seed: 62), t = normal([10, 5], seed: 63)
        var calls: [[Int]] = []
        let mask = LossMask([true, false, true, true, true, false, true, true, false, true])
        _ = DistillationLoss.fusedLinearLoss(hidden: h, weight: w, teacher: .logits { rows in calls.append(rows); return t.indexSelect(rows) },
                                             mask: mask, options: FusedLossOptions(chunkSize: 3))
        XCTAssertEqual(calls, [[0, 2, 3], [4, 6, 7], [9]])
    }

    /// Hidden states [B, T, H] get a gradient of that shape; with recording off only the value is
    /// computed and the result has no autodiff record.
    func testShapesAndGradientMode() {
        let h = normal([2, 3, 4], seed: 71).requiringGrad(), w = normal([6, 4], seed: 72).requiringGrad()
        let y = [1, 2, 3, 4, 5, 0]
        let loss = DistillationLoss.fusedLinearLoss(hidden: h, weight: w, teacher: nil, targets: y)
        let g = gradients(of: loss, wrt: [h, w])
        XCTAssertEqual(g[0].shape, [2, 3, 4])
        XCTAssertEqual(g[1].shape, [6, 4])
        let off = withoutGradients { DistillationLoss.fusedLinearLoss(hidden: h, weight: w, teacher: nil, targets: y) }
        XCTAssertFalse(off.requiresGrad)
        XCTAssertEqual(off.item, loss.item)
        // Cross-entropy alone equals the engine's on the full logits.
        let ce = withoutGradients { h.reshaped([6, 4]).matmul(w, transB: true).crossEntropy(targets: y) }
        XCTAssertEqual(loss.item, ce.item, accuracy: 1e-6 * ce.item)
    }

    /// The precomputed gradients compose with the rest of the graph: 3·L + L·L has gradient
    /// (3 + 2L)·∂L.
    func testComposesWithAutodiff() {
        let h = normal([4, 3], seed: 81), w = normal([5, 3], seed: 82), t = normal([4, 5], seed: 83)
        let f = { (xs: [Tensor]) in
            DistillationLoss.fusedLinearLoss(hidden: xs[0], weight: xs[1], teacher: .logits { t.indexSelect($0) },
                                             options: FusedLossOptions(temperature: 2))
        }
        let (l, g) = valueAndGradient(at: [h, w], of: f)
        let (_, g2) = valueAndGradient(at: [h, w]) { xs in let v = f(xs); return v * 3 + v * v }
        let factor = 3 + 2 * l.item
        assertTensorsClose(g2[0], g[0] * factor, tolerance: 1e-6)
        assertTensorsClose(g2[1], g[1] * factor, tolerance: 1e-6)
    }

    func testBadInputIsReported() throws {
        let ok = FusedLossOptions()
        let t = ChunkedTeacher.logits { _ in Tensor(zeros: [1, 11]) }
        XCTAssertNoThrow(try DistillationLoss.validateFused(hidden: [2, 3, 8], weight: [11, 8], teacher: t, targets: nil, mask: nil, options: ok))
        assertThrowsMessage(try DistillationLoss.validateFused(hidden: [6, 8], weight: [11, 9], teacher: t, targets: nil, mask: nil, options: ok),
                            contains: ["fusedLinearLoss", "[6, 8]", "[11, 9]"])
        assertThrowsMessage(try DistillationLoss.validateFused(hidden: [6, 8], weight: [11, 8], teacher: t, targets: [1, 2], mask: nil, options: ok),
                            contains: ["fusedLinearLoss", "2 targets for 6 rows"])
        assertThrowsMessage(try DistillationLoss.validateFused(hidden: [2, 8], weight: [11, 8], teacher: t, targets: [1, 11], mask: nil, options: ok),
                            contains: ["fusedLinearLoss", "target 11 out of range 0..<11"])
        assertThrowsMessage(try DistillationLoss.validateFused(hidden: [6, 8], weight: [11, 8], teacher: t, targets: nil, mask: .all(5), options: ok),
                            contains: ["fusedLinearLoss", "mask is for 5 rows", "6 rows"])
        assertThrowsMessage(try DistillationLoss.validateFused(hidden: [6, 8], weight: [11, 8], teacher: nil, targets: nil, mask: nil, options: ok),
                            contains: ["fusedLinearLoss", "neither a teacher nor targets"])
        assertThrowsMessage(try DistillationLoss.validateFused(hidden: [6, 8], weight: [11, 8], teacher: t, targets: nil, mask: nil,
                                                               options: FusedLossOptions(chunkSize: 0)),
                            contains: ["fusedLinearLoss", "chunk size 0"])
        let sparse = try SparseTeacherTargets.topK(ofLogits: normal([6, 11], seed: 1), k: 2)
        assertThrowsMessage(try DistillationLoss.validateFused(hidden: [6, 8], weight: [11, 8], teacher: .sparse(sparse), targets: nil, mask: nil,
                                                               options: FusedLossOptions(divergence: .reverseKL)),
                            contains: ["fusedLinearLoss", "sparse", "reverseKL"])
        assertThrowsMessage(try DistillationLoss.validateFused(hidden: [5, 8], weight: [11, 8], teacher: .sparse(sparse), targets: nil, mask: nil,
                                                               options: ok),
                            contains: ["fusedLinearLoss", "5 rows", "6 rows"])
        // The same checks on given logits (logitLossParts), and the logits' own shape.
        XCTAssertNoThrow(try DistillationLoss.validateLogitLoss(logits: [2, 3, 11], teacher: t, targets: nil, mask: nil, options: ok))
        assertThrowsMessage(try DistillationLoss.validateLogitLoss(logits: [11], teacher: t, targets: nil, mask: nil, options: ok),
                            contains: ["logitLoss", "[11]", "[N, V]"])
        assertThrowsMessage(try DistillationLoss.validateLogitLoss(logits: [6, 0], teacher: t, targets: nil, mask: nil, options: ok),
                            contains: ["logitLoss", "[6, 0]"])
        assertThrowsMessage(try DistillationLoss.validateLogitLoss(logits: [2, 11], teacher: t, targets: [1, 11], mask: nil, options: ok),
                            contains: ["logitLoss", "target 11 out of range 0..<11"])
        assertThrowsMessage(try DistillationLoss.validateLogitLoss(logits: [6, 11], teacher: nil, targets: nil, mask: nil, options: ok),
                            contains: ["logitLoss", "neither a teacher nor targets"])
        assertThrowsMessage(try DistillationLoss.validateLogitLoss(logits: [6, 11], teacher: t, targets: nil, mask: .all(5), options: ok),
                            contains: ["logitLoss", "mask is for 5 rows", "6 rows"])
    }
}
