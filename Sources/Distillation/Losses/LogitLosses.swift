import DistillTensor
import Foundation

/// How a student's next-token distribution is compared with the teacher's.
///
/// All of them take logits `z_s` (student) and `z_t` (teacher, a constant) per counted row, with
/// p = softmax(z / τ), and reduce as sum over the vocabulary, mean over counted rows.
public enum LogitDivergence: Equatable, Sendable, CustomStringConvertible {
    /// KL(p_t ‖ p_s) · τ² (Hinton; TRL's and DistillKit's soft-target loss).
    case forwardKL
    /// KL(p_s ‖ p_t) · τ² (MiniLLM's reverse KL; mode-seeking).
    case reverseKL
    /// TRL's generalized Jensen–Shannon divergence with interpolation β ∈ [0, 1]; no τ² factor
    /// (see `DistillationLoss.generalizedJSD`).
    case jsd(beta: Float)
    /// Total variation ½ Σ |p_t − p_s|; no τ² factor.
    case totalVariation
    /// Mean squared error between raw logits (no temperature): mean over counted rows × V.
    case mse

    public var description: String {
        switch self {
        case .forwardKL: return "forwardKL"
        case .reverseKL: return "reverseKL"
        case .jsd(let b): return "jsd(beta: \(b))"
        case .totalVariation: return "totalVariation"
        case .mse: return "mse"
        }
    }
}

/// Distillation losses over rows of logits. Each takes student logits `[N, V]` or `[B, T, V]`
/// (flattened to N = B·T rows), the teacher's logits of the same shape (treated as a constant:
/// no gradient flows into the teacher), and an optional `LossMask` naming the counted rows
/// (default: all). Reduction, unless a loss says otherwise: **sum over the vocabulary, mean over
/// counted rows**; with no counted row the loss is 0. Misuse (shapes, mask length) traps with a
/// message from `validateLogits`, which tests and callers can call themselves.
///
/// These are built from engine ops, so autodiff derives their gradients; they hold several
/// `[rows, V]` tensors. For large vocabularies use `fusedLinearLoss` (ChunkedLoss.swift), which
/// computes the same values chunk by chunk with hand-written gradients.
public enum DistillationLoss {
    /// Soft-target KL divergence with temperature τ (Hinton et al. 2015), scaled by τ² so its
    /// gradient keeps the magnitude of the hard-label loss:
    ///
    ///     τ² · mean_rows Σ_v p_t(v) · (log p_t(v) − log p_s(v)),   p = softmax(logits / τ)
    ///
    /// = `kl_div(log_softmax(s/τ), log_softmax(t/τ), log_target=True, reduction='none').sum(-1)`
    /// averaged over counted rows, × τ² (TRL's and DistillKit's convention).
    public static func softTargetKL(student: Tensor, teacher: Tensor, temperature tau: Float, mask: LossMask? = nil) -> Tensor {
        let (n, _) = lossValidated {
            try validateTemperature(loss: "softTargetKL", tau)
            return try validateLogits(loss: "softTargetKL", student: student.shape, teacher: teacher.shape, mask: mask)
        }
        let count = countedCount(mask, rows: n)
        if count == 0 { return Tensor(scalar: 0) }
        let logPT = withoutGradients { (countedRows(teacher.detached(), mask: mask) / tau).logSoftmax() }
        let pT = withoutGradients { logPT.exp() }
        let logPS = (countedRows(student, mask: mask) / tau).logSoftmax()
        let kl = (pT * (logPT - logPS)).sum()
        return kl * (tau * tau / Float(count))
    }

    /// Reverse KL divergence KL(p_s ‖ p_t) (MiniLLM), with the same temperature handling and τ²
    /// scale as `softTargetKL`:  τ² · mean_rows Σ_v p_s(v) · (log p_s(v) − log p_t(v)).
    public static func reverseKL(student: Tensor, teacher: Tensor, temperature tau: Float = 1, mask: LossMask? = nil) -> Tensor {
        let (n, _) = lossValidated {
            try validateTemperature(loss: "reverseKL", tau)
            return try validateLogits(loss: "reverseKL", student: student.shape, teacher: teacher.shape, mask: mask)
        }
        let count = countedCount(mask, rows: n)
        if count == 0 { return Tensor(scalar: 0) }
        let logPT = withoutGradients { (countedRows(teacher.detached(), mask: mask) / tau).logSoftmax() }
        let logPS = (countedRows(student, mask: mask) / tau).logSoftmax()
        let kl = (logPS.exp() * (logPS - logPT)).sum()
        return kl * (tau * tau / Float(count))
    }

    /// Generalized Jensen–Shannon divergence exactly as TRL's `GKDTrainer.generalized_jsd_loss`
    /// (huggingface/trl, trl/experimental/gkd/gkd_trainer.py at commit f2cd577, version
    /// 1.10.0.dev0; this convention since TRL 0.16, PR #3043):
    ///
    ///     p_s = softmax(z_s/τ), p_t = softmax(z_t/τ)     (τ on both; no τ² factor)
    ///     β = 0:  KL(p_t ‖ p_s)                            (forward KL)
    ///     β = 1:  KL(p_s ‖ p_t)                            (reverse KL)
    ///     else:   M = β·p_t + (1−β)·p_s
    ///             β·KL(p_t ‖ M) + (1−β)·KL(p_s ‖ M)
    ///
    /// summed over the vocabulary and averaged over counted rows (TRL's "batchmean" over
    /// `labels != -100`, with the count clamped to at least 1). Note that β weights the teacher
    /// inside M, and that β = 0 and β = 1 are special cases, not limits (the mixture form tends to
    /// 0 at both ends).
    public static func generalizedJSD(student: Tensor, teacher: Tensor, beta: Float, temperature tau: Float = 1,
                                      mask: LossMask? = nil) -> Tensor {
        let (n, _) = lossValidated {
            try validateTemperature(loss: "generalizedJSD", tau)
            guard beta >= 0 && beta <= 1 else {
                throw DistillationLossError.invalidArgument(loss: "generalizedJSD", reason: "beta \(beta) outside [0, 1]")
            }
            return try validateLogits(loss: "generalizedJSD", student: student.shape, teacher: teacher.shape, mask: mask)
        }
        let count = countedCount(mask, rows: n)
        if count == 0 { return Tensor(scalar: 0) }
        let logPT = withoutGradients { (countedRows(teacher.detached(), mask: mask) / tau).logSoftmax() }
        let pT = withoutGradients { logPT.exp() }
        let logPS = (countedRows(student, mask: mask) / tau).logSoftmax()
        let perRowSum: Tensor
        if beta == 0 {
            perRowSum = (pT * (logPT - logPS)).sum()
        } else if beta == 1 {
            perRowSum = (logPS.exp() * (logPS - logPT)).sum()
        } else {
            // log M = logsumexp(log p_s + log(1−β), log p_t + log β), elementwise (as TRL).
            let b = Double(beta)
            let logM = stack([logPS + Float(Foundation.log1p(-b)), logPT + Float(Foundation.log(b))], axis: 0)
                .logSumExp(axis: 0)                                  // (count, V)
            let klTeacher = (pT * (logPT - logM)).sum()
            let klStudent = (logPS.exp() * (logPS - logM)).sum()
            perRowSum = klTeacher * beta + klStudent * (1 - beta)
        }
        return perRowSum * (1 / Float(count))
    }

    /// Total-variation distance ½ Σ_v |p_t(v) − p_s(v)| with p = softmax(logits/τ), averaged over
    /// counted rows; no τ² factor. (|x| is relu(x) + relu(−x): its derivative at 0 is 0, as
    /// PyTorch's `abs`.)
    public static func totalVariation(student: Tensor, teacher: Tensor, temperature tau: Float = 1, mask: LossMask? = nil) -> Tensor {
        let (n, _) = lossValidated {
            try validateTemperature(loss: "totalVariation", tau)
            return try validateLogits(loss: "totalVariation", student: student.shape, teacher: teacher.shape, mask: mask)
        }
        let count = countedCount(mask, rows: n)
        if count == 0 { return Tensor(scalar: 0) }
        let pT = withoutGradients { (countedRows(teacher.detached(), mask: mask) / tau).softmax() }
        let pS = (countedRows(student, mask: mask) / tau).softmax()
        let d = pT - pS
        return (d.relu() + (-d).relu()).sum() * (0.5 / Float(count))
    }

    /// Mean squared error between student and teacher logits (no temperature), averaged over every
    /// element of the counted rows: `mse_loss(s[mask], t[mask])` = Σ (z_s − z_t)² / (count · V).
    public static func logitMSE(student: Tensor, teacher: Tensor, mask: LossMask? = nil) -> Tensor {
        let (n, v) = lossValidated {
            try validateLogits(loss: "logitMSE", student: student.shape, teacher: teacher.shape, mask: mask)
        }
        let count = countedCount(mask, rows: n)
        if count == 0 { return Tensor(scalar: 0) }
        let d = countedRows(student, mask: mask) - countedRows(teacher.detached(), mask: mask)
        return d.square().sum() * (1 / Float(count * v))
    }

    /// Any of the logit divergences by name (the temperature is ignored by `.mse`).
    public static func divergence(_ kind: LogitDivergence, student: Tensor, teacher: Tensor, temperature tau: Float = 1,
                                  mask: LossMask? = nil) -> Tensor {
        switch kind {
        case .forwardKL: return softTargetKL(student: student, teacher: teacher, temperature: tau, mask: mask)
        case .reverseKL: return reverseKL(student: student, teacher: teacher, temperature: tau, mask: mask)
        case .jsd(let beta): return generalizedJSD(student: student, teacher: teacher, beta: beta, temperature: tau, mask: mask)
        case .totalVariation: return totalVariation(student: student, teacher: teacher, temperature: tau, mask: mask)
        case .mse: return logitMSE(student: student, teacher: teacher, mask: mask)
        }
    }

    /// Hard-label cross-entropy on the ground-truth next tokens, PyTorch semantics (the engine's
    /// `crossEntropy`): rows whose target is `ignoreIndex` do not count; label smoothing ε mixes
    /// the one-hot target with ε/V; mean over counted rows (0 when none counts).
    public static func hardCrossEntropy(student: Tensor, targets: [Int], labelSmoothing: Float = 0,
                                        ignoreIndex: Int = -100) -> Tensor {
        lossValidated { try validateTargets(loss: "hardCrossEntropy", logits: student.shape, targets: targets, ignoreIndex: ignoreIndex) }
        let v = student.shape.last!
        return student.reshaped([-1, v]).crossEntropy(targets: targets, ignoreIndex: ignoreIndex, labelSmoothing: labelSmoothing)
    }

    /// α · soft + (1 − α) · hard: a logit divergence on the counted rows plus the hard-label
    /// cross-entropy. The soft term counts the rows of `mask`, or, without one, the rows whose
    /// target is not `ignoreIndex` (so assistant-only labels mask both terms). α = 1 gives the soft
    /// loss alone (the cross-entropy is then not computed), α = 0 the hard loss alone.
    public static func softAndHard(student: Tensor, teacher: Tensor, targets: [Int], alpha: Float,
                                   divergence kind: LogitDivergence = .forwardKL, temperature tau: Float = 1,
                                   labelSmoothing: Float = 0, ignoreIndex: Int = -100, mask: LossMask? = nil) -> Tensor {
        lossValidated {
            guard alpha >= 0 && alpha <= 1 else {
                throw DistillationLossError.invalidArgument(loss: "softAndHard", reason: "alpha \(alpha) outside [0, 1]")
            }
            try validateLogits(loss: "softAndHard", student: student.shape, teacher: teacher.shape, mask: mask)
            try validateTargets(loss: "softAndHard", logits: student.shape, targets: targets, ignoreIndex: ignoreIndex)
        }
        let softMask = mask ?? LossMask(labels: targets, ignoreIndex: ignoreIndex)
        if alpha == 0 {
            return hardCrossEntropy(student: student, targets: targets, labelSmoothing: labelSmoothing, ignoreIndex: ignoreIndex)
        }
        let soft = divergence(kind, student: student, teacher: teacher, temperature: tau, mask: softMask)
        if alpha == 1 { return soft }
        let hard = hardCrossEntropy(student: student, targets: targets, labelSmoothing: labelSmoothing, ignoreIndex: ignoreIndex)
        return soft * alpha + hard * (1 - alpha)
    }

    /// Checks targets for logits `[N, V]` / `[B, T, V]`: one per row, each in 0..<V or `ignoreIndex`.
    public static func validateTargets(loss: String, logits: [Int], targets: [Int], ignoreIndex: Int) throws {
        guard logits.count >= 2, let v = logits.last else {
            throw DistillationLossError.shapeMismatch(loss: loss, shapes: [logits], reason: "logits must be [N, V] or [B, T, V]")
        }
        let n = logits.dropLast().reduce(1, *)
        guard targets.count == n else {
            throw DistillationLossError.shapeMismatch(loss: loss, shapes: [logits, [targets.count]],
                                                      reason: "\(targets.count) targets for \(n) rows of logits")
        }
        for t in targets where t != ignoreIndex && (t < 0 || t >= v) {
            throw DistillationLossError.indexOutOfRange(loss: loss, what: "target", index: t, size: v)
        }
    }
}
