import DistillTensor
import Foundation

/// The teacher's view of the positions, for `fusedLinearLoss`.
public enum ChunkedTeacher {
    /// Full teacher logits, produced on demand: given indices into the N positions (ascending), the
    /// closure returns their logits `[rows.count, V]` (a teacher lm_head applied to those hidden
    /// states, a slice of a cache…). Called once per chunk, so at most `chunkSize` rows live at once.
    case logits((_ rows: [Int]) -> Tensor)
    /// The teacher's top-k log-probabilities plus the rest mass, for all N positions.
    case sparse(SparseTeacherTargets)
}

/// Settings of `fusedLinearLoss`.
public struct FusedLossOptions: Equatable, Sendable {
    /// The soft term (with a sparse teacher only `.forwardKL`, i.e. `sparseKL`, is defined).
    public var divergence: LogitDivergence
    public var temperature: Float
    /// Weight α of the soft term; the hard cross-entropy gets 1 − α. Used only when both a teacher
    /// and targets are given (otherwise the one term present has weight 1).
    public var alpha: Float
    public var labelSmoothing: Float
    public var ignoreIndex: Int
    /// Positions per chunk: the student's and the teacher's `[chunkSize, V]` logits are the largest
    /// temporaries.
    public var chunkSize: Int

    public init(divergence: LogitDivergence = .forwardKL, temperature: Float = 1, alpha: Float = 1,
                labelSmoothing: Float = 0, ignoreIndex: Int = -100, chunkSize: Int = 1024) {
        self.divergence = divergence
        self.temperature = temperature
        self.alpha = alpha
        self.labelSmoothing = labelSmoothing
        self.ignoreIndex = ignoreIndex
        self.chunkSize = chunkSize
    }
}

extension DistillationLoss {
    /// Distillation loss fused with the output projection, computed chunk by chunk so that no
    /// `[N, V]` logits — student's or teacher's — are ever held:
    ///
    ///     logits = hidden · weightᵀ                  hidden [N, H] (or [B, T, H]), weight [V, H]
    ///     loss   = α · soft(logits, teacher) + (1 − α) · crossEntropy(logits, targets)
    ///
    /// with exactly the values of `divergence(…)` / `sparseKL` and `hardCrossEntropy` on the full
    /// logits (soft rows: `mask`, or the rows whose target is not `ignoreIndex`, or all rows; hard
    /// rows: targets not `ignoreIndex`). Without a teacher the loss is the cross-entropy alone,
    /// without targets the soft term alone.
    ///
    /// How: for each chunk of up to `chunkSize` positions the student's logits are computed, the
    /// teacher's fetched, and — in one pass per row, without recording — the loss and its gradient
    /// G = ∂loss/∂logits from the closed forms below (written over the logits buffer). Then
    /// dH[rows] = G·W and dW += Gᵀ·H[rows], and the chunk is dropped. The result is a scalar whose
    /// autodiff node hands dH and dW back (`Tensor.withPrecomputedGradients`): memory is the
    /// gradients plus O(chunkSize·V), whatever N is. (Recording off, or neither input requiring a
    /// gradient: only the value is computed.)
    ///
    /// Gradients with respect to the logits z of one counted row, with a = z/τ, p_s = softmax(a),
    /// p_t = softmax(z_t/τ), before the 1/count weights:
    /// - forward KL (×τ²):  τ·(p_s − p_t)
    /// - reverse KL (×τ²):  τ·p_s ⊙ (d − Σ p_s d),  d = log p_s − log p_t
    /// - JSD, 0 < β < 1:    p_s ⊙ (g − Σ p_s g)/τ,  g = (1−β)·log(p_s/M),  M = β p_t + (1−β) p_s;
    ///   β = 0 and β = 1 are forward and reverse KL without the τ² (and so with 1/τ instead of τ)
    /// - total variation:   p_s ⊙ (g − Σ p_s g)/τ,  g = ½·sign(p_s − p_t)
    /// - MSE:               2(z − z_t)/V
    /// - sparse (×τ²):      τ·(T·p_s(v) − [v ∈ top-k] p_t(v) − [v ∉ top-k] r_t·p_s(v)/r_s),  T = Σ_j p_t(i_j) + r_t
    /// - cross-entropy:     softmax(z) − (1−ε)·onehot(target) − ε/V
    public static func fusedLinearLoss(hidden: Tensor, weight: Tensor, teacher: ChunkedTeacher?, targets: [Int]? = nil,
                                       mask: LossMask? = nil, options: FusedLossOptions = FusedLossOptions()) -> Tensor {
        fusedLinearLossParts(hidden: hidden, weight: weight, teacher: teacher, targets: targets, mask: mask, options: options).total
    }

    /// `fusedLinearLoss`, with its two terms' unweighted values beside the total: the soft term
    /// (mean over its rows, τ² or 1/V factor included) and the hard cross-entropy (nil when off).
    public static func fusedLinearLossParts(hidden: Tensor, weight: Tensor, teacher: ChunkedTeacher?, targets: [Int]? = nil,
                                            mask: LossMask? = nil, options: FusedLossOptions = FusedLossOptions())
        -> (total: Tensor, soft: Float?, hard: Float?) {
        let needHidden = GradientMode.isEnabled && hidden.requiresGrad
        let needWeight = GradientMode.isEnabled && weight.requiresGrad
        let r = fusedLinearLossAndGradients(hidden: hidden, weight: weight, teacher: teacher, targets: targets, mask: mask,
                                            options: options, gradientForHidden: needHidden, gradientForWeight: needWeight)
        let value = Tensor(scalar: r.loss)
        guard needHidden || needWeight else { return (value, r.soft, r.hard) }
        let total = Tensor.withPrecomputedGradients(of: value, inputs: [hidden, weight],
                                                    gradients: [r.hiddenGradient ?? Tensor(zeros: hidden.shape),
                                                                r.weightGradient ?? Tensor(zeros: weight.shape)])
        return (total, r.soft, r.hard)
    }

    /// The work of `fusedLinearLoss`: its value and, where asked, the gradients with respect to
    /// `hidden` (shaped like it) and `weight`.
    public static func fusedLinearLossAndGradients(hidden: Tensor, weight: Tensor, teacher: ChunkedTeacher?, targets: [Int]?,
                                                   mask: LossMask?, options o: FusedLossOptions,
                                                   gradientForHidden: Bool = true, gradientForWeight: Bool = true)
        -> (loss: Float, hiddenGradient: Tensor?, weightGradient: Tensor?, soft: Float?, hard: Float?) {
        let (n, width, v) = lossValidated {
            try validateFused(hidden: hidden.shape, weight: weight.shape, teacher: teacher, targets: targets, mask: mask, options: o)
        }
        let rl = LogitRowLoss(rows: n, vocab: v, teacher: teacher, targets: targets, mask: mask, options: o)
        let gradient = gradientForHidden || gradientForWeight
        let h2 = hidden.reshaped([n, width]).detached()                                    // (N, H)
        let w = weight.detached()                                                           // (V, H)
        let dH = gradientForHidden ? Tensor(zeros: [n, width]) : nil
        let dW = gradientForWeight ? Tensor(zeros: [v, width]) : nil
        var softSum = 0.0, hardSum = 0.0

        withoutGradients {
            for rows in rl.chunks(of: o.chunkSize) {
                let c = rows.count
                // Hidden states of the chunk, then its logits = hc·Wᵀ.
                let hc = Tensor(uninitializedShape: [c, width])                              // (c, H)
                for (i, r) in rows.enumerated() {
                    (hc.storage.pointer + i * width).update(from: h2.storage.pointer + r * width, count: width)
                }
                let logits = Tensor(uninitializedShape: [c, v])                              // (c, V)
                Gemm.sgemm(transA: false, transB: true, m: c, n: v, k: width, a: hc.storage.pointer, lda: width,
                           b: w.storage.pointer, ldb: width, c: logits.storage.pointer, ldc: v)
                let teacherChunk = fetchTeacher(teacher, rows: rows.filter { rl.isSoft[$0] }, vocab: v, loss: "fusedLinearLoss")
                // The row kernels overwrite the logits with G = ∂loss/∂logits (c, V).
                let pz = logits.storage.pointer
                let sums = rl.run(rows: rows, logits: pz, teacher: teacherChunk?.storage.pointer, gradient: gradient ? pz : nil)
                softSum += sums.soft
                hardSum += sums.hard
                guard gradient else { continue }
                if let dH {
                    let dHc = Tensor(uninitializedShape: [c, width])                          // (c, H) = G·W
                    Gemm.sgemm(transA: false, transB: false, m: c, n: width, k: v, a: pz, lda: v,
                               b: w.storage.pointer, ldb: width, c: dHc.storage.pointer, ldc: width)
                    for (i, r) in rows.enumerated() {
                        (dH.storage.pointer + r * width).update(from: dHc.storage.pointer + i * width, count: width)
                    }
                }
                if let dW {
                    // dW += Gᵀ·hc   (V, H)
                    Gemm.sgemm(transA: true, transB: false, m: v, n: width, k: c, a: pz, lda: v,
                               b: hc.storage.pointer, ldb: width, beta: 1, c: dW.storage.pointer, ldc: width)
                }
            }
        }
        let value = rl.value(softSum: softSum, hardSum: hardSum)
        return (value.loss, dH.map { $0.reshaped(hidden.shape) }, dW, value.soft, value.hard)
    }

    /// The teacher's logits for `rows` (soft rows of a chunk) from a `.logits` teacher; nil for a
    /// sparse teacher (its rows are read by the kernel) or no rows.
    static func fetchTeacher(_ teacher: ChunkedTeacher?, rows: [Int], vocab v: Int, loss: String) -> Tensor? {
        guard case .logits(let fetch)? = teacher, !rows.isEmpty else { return nil }
        let t = fetch(rows).detached()
        precondition(t.shape == [rows.count, v],
                     "\(loss): the teacher gave logits \(t.shape) for \(rows.count) rows of a \(v)-token vocabulary")
        return t
    }

    /// Checks the inputs of `fusedLinearLoss`; returns (N, H, V).
    @discardableResult
    public static func validateFused(hidden: [Int], weight: [Int], teacher: ChunkedTeacher?, targets: [Int]?,
                                     mask: LossMask?, options o: FusedLossOptions) throws -> (rows: Int, width: Int, vocab: Int) {
        let loss = "fusedLinearLoss"
        guard hidden.count >= 2, weight.count == 2, hidden.last == weight[1] else {
            throw DistillationLossError.shapeMismatch(loss: loss, shapes: [hidden, weight],
                                                      reason: "hidden states must be [N, H] or [B, T, H] and the output projection [V, H]")
        }
        let n = hidden.dropLast().reduce(1, *), width = weight[1], v = weight[0]
        try validateRowTerms(loss: loss, rows: n, vocab: v, teacher: teacher, targets: targets, mask: mask, options: o)
        return (n, width, v)
    }

    /// Checks the options, teacher, targets and mask of a loss over `rows` rows of `vocab` logits.
    static func validateRowTerms(loss: String, rows n: Int, vocab v: Int, teacher: ChunkedTeacher?, targets: [Int]?,
                                 mask: LossMask?, options o: FusedLossOptions) throws {
        guard v > 0 else { throw DistillationLossError.shapeMismatch(loss: loss, shapes: [[n, v]], reason: "empty vocabulary") }
        guard o.chunkSize >= 1 else { throw DistillationLossError.invalidArgument(loss: loss, reason: "chunk size \(o.chunkSize) must be positive") }
        guard o.alpha >= 0 && o.alpha <= 1 else { throw DistillationLossError.invalidArgument(loss: loss, reason: "alpha \(o.alpha) outside [0, 1]") }
        guard o.labelSmoothing >= 0 && o.labelSmoothing <= 1 else {
            throw DistillationLossError.invalidArgument(loss: loss, reason: "label smoothing \(o.labelSmoothing) outside [0, 1]")
        }
        try validateTemperature(loss: loss, o.temperature)
        if case .jsd(let b) = o.divergence, !(b >= 0 && b <= 1) {
            throw DistillationLossError.invalidArgument(loss: loss, reason: "beta \(b) outside [0, 1]")
        }
        guard teacher != nil || targets != nil else {
            throw DistillationLossError.invalidArgument(loss: loss, reason: "neither a teacher nor targets given: nothing to learn from")
        }
        if case .sparse(let s)? = teacher {
            try validateSparse(loss: loss, student: [n, v], teacher: s, mask: nil)
            guard o.divergence == .forwardKL else {
                throw DistillationLossError.invalidArgument(loss: loss, reason: "a sparse (top-k) teacher supports only forwardKL, not \(o.divergence)")
            }
        }
        if let targets { try validateTargets(loss: loss, logits: [n, v], targets: targets, ignoreIndex: o.ignoreIndex) }
        try validateMask(loss: loss, mask: mask, rows: n)
    }

    /// Checks the inputs of `logitLossParts`; returns (N, V).
    @discardableResult
    public static func validateLogitLoss(logits: [Int], teacher: ChunkedTeacher?, targets: [Int]?, mask: LossMask?,
                                         options o: FusedLossOptions) throws -> (rows: Int, vocab: Int) {
        guard logits.count >= 2, let v = logits.last, v > 0 else {
            throw DistillationLossError.shapeMismatch(loss: "logitLoss", shapes: [logits], reason: "logits must be [N, V] or [B, T, V]")
        }
        let n = logits.dropLast().reduce(1, *)
        try validateRowTerms(loss: "logitLoss", rows: n, vocab: v, teacher: teacher, targets: targets, mask: mask, options: o)
        return (n, v)
    }

    /// The loss of `fusedLinearLoss` on logits already computed, `[N, V]` or `[B, T, V]`: the same
    /// terms, weights and closed-form gradients, one pass per row — instead of the dozen `[N, V]`
    /// intermediates that `divergence(…)` + `hardCrossEntropy` put on the tape. Differentiable with
    /// respect to `logits` (the teacher is a constant); teacher logits are fetched `chunkSize`
    /// rows at a time. Returns the total and its two terms' unweighted values, as
    /// `fusedLinearLossParts`.
    public static func logitLossParts(logits: Tensor, teacher: ChunkedTeacher?, targets: [Int]? = nil, mask: LossMask? = nil,
                                      options o: FusedLossOptions = FusedLossOptions()) -> (total: Tensor, soft: Float?, hard: Float?) {
        let (n, v) = lossValidated {
            try validateLogitLoss(logits: logits.shape, teacher: teacher, targets: targets, mask: mask, options: o)
        }
        let rl = LogitRowLoss(rows: n, vocab: v, teacher: teacher, targets: targets, mask: mask, options: o)
        let needGradient = GradientMode.isEnabled && logits.requiresGrad
        let z = logits.detached()
        let g = needGradient ? Tensor(uninitializedShape: logits.shape) : nil
        if let g {          // rows without a term get no gradient
            var listed = [Bool](repeating: false, count: n)
            for r in rl.rowList { listed[r] = true }
            for r in 0..<n where !listed[r] { (g.storage.pointer + r * v).update(repeating: 0, count: v) }
        }
        var softSum = 0.0, hardSum = 0.0
        withoutGradients {
            for rows in rl.chunks(of: o.chunkSize) {
                let teacherChunk = fetchTeacher(teacher, rows: rows.filter { rl.isSoft[$0] }, vocab: v, loss: "logitLoss")
                let sums = rl.run(rows: rows, logits: z.storage.pointer, teacher: teacherChunk?.storage.pointer,
                                  gradient: g?.storage.pointer, byRowIndex: true)
                softSum += sums.soft
                hardSum += sums.hard
            }
        }
        let value = rl.value(softSum: softSum, hardSum: hardSum)
        let total = Tensor(scalar: value.loss)
        guard let g else { return (total, value.soft, value.hard) }
        return (Tensor.withPrecomputedGradients(of: total, inputs: [logits], gradients: [g]), value.soft, value.hard)
    }
}
