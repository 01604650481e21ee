import DistillTensor

/// Distillation losses over rows of logits [N, V] (positions already selected by the caller).
public enum DistillationLoss {
    /// Soft-target KL divergence with temperature τ (Hinton et al.), scaled by τ² so its gradient
    /// keeps the magnitude of the hard-label loss:
    ///   τ² · mean_rows Σ_v p_T(v) · (log p_T(v) − log p_S(v)),  p = softmax(logits / τ).
    /// The teacher is a constant.
    public static func softTargetKL(student: Tensor, teacher: Tensor, temperature tau: Float) -> Tensor {
        precondition(student.shape == teacher.shape,
                     "softTargetKL: student logits \(student.shape) and teacher logits \(teacher.shape) differ")
        precondition(tau > 0, "softTargetKL: temperature \(tau) must be positive")
        let rows = student.count / Swift.max(student.shape.last ?? 1, 1)
        let logPT = withoutGradients { (teacher.detached() / tau).logSoftmax() }
        let pT = withoutGradients { logPT.exp() }
        let logPS = (student / tau).logSoftmax()
        let kl = (pT * (logPT - logPS)).sum()
        return kl * (tau * tau / Float(Swift.max(rows, 1)))
    }
}
