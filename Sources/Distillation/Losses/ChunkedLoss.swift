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
        // Which rows take which term, and the weights (α, 1 − α) / count.
        let softOn = teacher != nil, hardOn = targets != nil
        let wSoft: Double = !softOn ? 0 : (hardOn ? Double(o.alpha) : 1)
        let wHard: Double = !hardOn ? 0 : (softOn ? 1 - Double(o.alpha) : 1)
        var isSoft = [Bool](repeating: false, count: n), isHard = [Bool](repeating: false, count: n)
        if softOn && wSoft != 0 {
            if let mask { for r in mask.rows { isSoft[r] = true } }
            else if let targets { for r in 0..<n { isSoft[r] = targets[r] != o.ignoreIndex } }
            else { isSoft = [Bool](repeating: true, count: n) }
        }
        if let targets, wHard != 0 { for r in 0..<n { isHard[r] = targets[r] != o.ignoreIndex } }
        let softCount = isSoft.filter { $0 }.count, hardCount = isHard.filter { $0 }.count
        let rowList = (0..<n).filter { isSoft[$0] || isHard[$0] }

        let tau = o.temperature
        let kernel = SoftKernel(divergence: o.divergence, tau: tau, vocab: v, sparse: { if case .sparse(let s) = teacher { return s }; return nil }())
        // Per-row weights: of the loss (with the kernel's τ² or 1/V factor) and of the gradient
        // (whose closed forms already carry that factor).
        let softScale = softCount == 0 ? 0 : wSoft * kernel.lossScale / Double(softCount)
        let softGradScale = softCount == 0 ? 0 : wSoft / Double(softCount)
        let hardScale = hardCount == 0 ? 0 : wHard / Double(hardCount)
        let gradient = gradientForHidden || gradientForWeight

        let h2 = hidden.reshaped([n, width]).detached()                                    // (N, H)
        let w = weight.detached()                                                           // (V, H)
        let dH = gradientForHidden ? Tensor(zeros: [n, width]) : nil
        let dW = gradientForWeight ? Tensor(zeros: [v, width]) : nil
        var softSum = 0.0, hardSum = 0.0

        withoutGradients {
            var start = 0
            while start < rowList.count {
                let rows = Array(rowList[start..<Swift.min(rowList.count, start + o.chunkSize)])
                start += rows.count
                let c = rows.count
                // Hidden states of the chunk, then its logits = hc·Wᵀ.
                let hc = Tensor(uninitializedShape: [c, width])                              // (c, H)
                for (i, r) in rows.enumerated() {
                    (hc.storage.pointer + i * width).update(from: h2.storage.pointer + r * width, count: width)
                }
                let logits = Tensor(uninitializedShape: [c, v])                              // (c, V)
                Gemm.sgemm(transA: false, transB: true, m: c, n: v, k: width, a: hc.storage.pointer, lda: width,
                           b: w.storage.pointer, ldb: width, c: logits.storage.pointer, ldc: v)
                // The teacher's rows for the soft rows of this chunk.
                let softRows = rows.filter { isSoft[$0] }
                var teacherChunk: Tensor? = nil
                if case .logits(let fetch)? = teacher, !softRows.isEmpty {
                    let t = fetch(softRows).detached()
                    precondition(t.shape == [softRows.count, v],
                                 "fusedLinearLoss: the teacher gave logits \(t.shape) for \(softRows.count) rows of a \(v)-token vocabulary")
                    teacherChunk = t
                }
                var teacherRow = [Int](repeating: -1, count: c)
                var k = 0
                for (i, r) in rows.enumerated() where isSoft[r] { teacherRow[i] = k; k += 1 }

                var softLoss = [Double](repeating: 0, count: c), hardLoss = [Double](repeating: 0, count: c)
                let pz = logits.storage.pointer, pt = teacherChunk?.storage.pointer
                softLoss.withUnsafeMutableBufferPointer { sl in
                    hardLoss.withUnsafeMutableBufferPointer { hl in
                        let psl = sl.baseAddress!, phl = hl.baseAddress!
                        parallelFor(c, grain: 1) { range in
                            var scratch = RowScratch(vocab: v, sparse: kernel.sparse != nil)
                            for i in range {
                                let r = rows[i], z = pz + i * v
                                var row = RowWork(z: z, vocab: v)
                                if isSoft[r] {
                                    psl[i] = kernel.prepare(&row, teacher: pt.map { $0 + teacherRow[i] * v }, row: r, scratch: &scratch)
                                }
                                if isHard[r] {
                                    phl[i] = row.prepareHard(target: targets![r], smoothing: o.labelSmoothing)
                                }
                                if gradient {
                                    kernel.writeGradient(&row, soft: isSoft[r] ? softGradScale : 0, hard: isHard[r] ? hardScale : 0,
                                                         target: isHard[r] ? targets![r] : -1, smoothing: o.labelSmoothing,
                                                         scratch: &scratch)
                                }
                            }
                        }
                    }
                }
                for i in 0..<c { softSum += softLoss[i]; hardSum += hardLoss[i] }
                guard gradient else { continue }
                // logits now hold G = ∂loss/∂logits (c, V).
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
        let loss = softScale * softSum + hardScale * hardSum
        let soft: Float? = softOn && wSoft != 0 ? (softCount == 0 ? 0 : Float(kernel.lossScale * softSum / Double(softCount))) : nil
        let hard: Float? = hardOn && wHard != 0 ? (hardCount == 0 ? 0 : Float(hardSum / Double(hardCount))) : nil
        return (Float(loss), dH.map { $0.reshaped(hidden.shape) }, dW, soft, hard)
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
        guard v > 0 else { throw DistillationLossError.shapeMismatch(loss: loss, shapes: [weight], reason: "empty vocabulary") }
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
        return (n, width, v)
    }
}

/// Per-thread buffers for the row kernels: membership of the top-k ids (sparse teacher).
struct RowScratch {
    var inTop: [Bool]
    init(vocab: Int, sparse: Bool) { inTop = sparse ? [Bool](repeating: false, count: vocab) : [] }
}

/// One row of student logits z and the statistics the kernels need.
struct RowWork {
    let z: UnsafeMutablePointer<Float>
    let v: Int
    // Soft: a = z/τ, log p_s = (a − maxA) − logSumA; teacher log p_t = (b − maxB) − logSumB.
    var maxA: Float = 0, logSumA: Float = 0
    var teacher: UnsafeMutablePointer<Float>? = nil
    var maxB: Float = 0, logSumB: Float = 0
    /// Σ p_s·g for the softmax-chain kernels (reverse KL, JSD, total variation).
    var chainSum: Double = 0
    var sparseRow = -1
    var restS: Double = 0
    // Hard: log-sum-exp of z.
    var max1: Float = 0, logSum1: Float = 0

    init(z: UnsafeMutablePointer<Float>, vocab: Int) { self.z = z; v = vocab }

    /// Max and log Σ exp of x·scale − max over the row (sum in Double).
    static func logSumExp(_ x: UnsafeMutablePointer<Float>, _ n: Int, scale: Float) -> (Float, Float) {
        var m = -Float.infinity
        for j in 0..<n { let a = x[j] * scale; if a > m { m = a } }
        if !m.isFinite { m = 0 }
        var s = 0.0
        for j in 0..<n { s += Double(Foundation.exp(x[j] * scale - m)) }
        return (m, Float(Foundation.log(s)))
    }

    /// Cross-entropy of the row (PyTorch semantics with label smoothing ε); keeps the statistics.
    mutating func prepareHard(target t: Int, smoothing eps: Float) -> Double {
        (max1, logSum1) = RowWork.logSumExp(z, v, scale: 1)
        var shifted = 0.0
        for j in 0..<v { shifted += Double(z[j] - max1) }
        let nll = Double(max1 - z[t]) + Double(logSum1)
        let smooth = Double(logSum1) - shifted / Double(v)
        return (1 - Double(eps)) * nll + Double(eps) * smooth
    }
}

/// The soft divergences of one row: the value (pass 1–2) and the gradient (pass 3).
struct SoftKernel {
    let divergence: LogitDivergence
    let tau: Float
    let invTau: Float
    let vocab: Int
    let sparse: SparseTeacherTargets?

    init(divergence: LogitDivergence, tau: Float, vocab: Int, sparse: SparseTeacherTargets?) {
        self.divergence = divergence
        self.tau = tau
        self.invTau = 1 / tau
        self.vocab = vocab
        self.sparse = sparse
    }

    /// Factor between the per-row sum the kernel returns and the loss: τ² for the KL losses, 1/V
    /// for MSE, 1 otherwise.
    var lossScale: Double {
        if sparse != nil { return Double(tau) * Double(tau) }
        switch divergence {
        case .forwardKL, .reverseKL: return Double(tau) * Double(tau)
        case .mse: return 1 / Double(vocab)
        case .jsd, .totalVariation: return 1
        }
    }

    /// The row's divergence (before `lossScale`); leaves what the gradient pass needs in `row`.
    func prepare(_ row: inout RowWork, teacher: UnsafeMutablePointer<Float>?, row r: Int, scratch: inout RowScratch) -> Double {
        let z = row.z, v = vocab
        if case .mse = divergence, sparse == nil {
            let t = teacher!
            var s = 0.0
            for j in 0..<v { let d = Double(z[j]) - Double(t[j]); s += d * d }
            row.teacher = t
            return s
        }
        (row.maxA, row.logSumA) = RowWork.logSumExp(z, v, scale: invTau)
        let ma = row.maxA, la = row.logSumA, it = invTau
        @inline(__always) func logPS(_ j: Int) -> Float { (z[j] * it - ma) - la }

        if let sp = sparse {
            let k = sp.k
            row.sparseRow = r
            for j in 0..<k { scratch.inTop[sp.ids[r * k + j]] = true }
            var rest = 0.0
            for j in 0..<v where !scratch.inTop[j] { rest += Double(Foundation.exp(logPS(j))) }
            for j in 0..<k { scratch.inTop[sp.ids[r * k + j]] = false }
            row.restS = rest
            var s = 0.0
            for j in 0..<k {
                let lp = sp.logprobs[r * k + j]
                if lp == -Float.infinity { continue }
                s += Foundation.exp(Double(lp)) * (Double(lp) - Double(logPS(sp.ids[r * k + j])))
            }
            let rt = Double(sp.restMass[r])
            if rt > 0 { s += rt * (Foundation.log(rt) - Foundation.log(Double(Float(rest) + 1e-30))) }
            return s
        }

        let t = teacher!
        row.teacher = t
        (row.maxB, row.logSumB) = RowWork.logSumExp(t, v, scale: invTau)
        let mb = row.maxB, lb = row.logSumB
        @inline(__always) func logPT(_ j: Int) -> Float { (t[j] * it - mb) - lb }

        switch divergence {
        case .forwardKL, .jsd(beta: 0):
            var s = 0.0
            for j in 0..<v { let lt = logPT(j); s += Double(Foundation.exp(lt)) * (Double(lt) - Double(logPS(j))) }
            return s
        case .reverseKL, .jsd(beta: 1):
            var s = 0.0
            for j in 0..<v { let ls = logPS(j); s += Double(Foundation.exp(ls)) * (Double(ls) - Double(logPT(j))) }
            row.chainSum = s                        // Σ p_s d = the row's KL
            return s
        case .jsd(let beta):
            let b = Double(beta), l1b = Float(Foundation.log1p(-b)), lb0 = Float(Foundation.log(b))
            var s = 0.0, chain = 0.0
            for j in 0..<v {
                let ls = logPS(j), lt = logPT(j)
                let x = ls + l1b, y = lt + lb0
                let m = Swift.max(x, y)
                let lm = m + Foundation.log(Foundation.exp(x - m) + Foundation.exp(y - m))  // log M
                let ps = Double(Foundation.exp(ls)), pt = Double(Foundation.exp(lt))
                s += b * pt * Double(lt - lm) + (1 - b) * ps * Double(ls - lm)
                chain += ps * (1 - b) * Double(ls - lm)
            }
            row.chainSum = chain
            return s
        case .totalVariation:
            var s = 0.0, chain = 0.0
            for j in 0..<v {
                let ps = Foundation.exp(logPS(j)), pt = Foundation.exp(logPT(j))
                s += 0.5 * Double(Swift.abs(pt - ps))
                chain += Double(ps) * 0.5 * Double(sign(ps - pt))
            }
            row.chainSum = chain
            return s
        case .mse:
            fatalError("unreachable")
        }
    }

    /// Overwrites the row's logits with soft·∂(lossScale·row divergence)/∂z + hard·∂(row cross-entropy)/∂z.
    func writeGradient(_ row: inout RowWork, soft: Double, hard: Double, target: Int, smoothing eps: Float,
                       scratch: inout RowScratch) {
        let z = row.z, v = vocab
        let ws = Float(soft), wh = Float(hard)
        // Hard part first needs z; compute both per element before overwriting it.
        let m1 = row.max1, l1 = row.logSum1, uniform = eps / Float(v)
        @inline(__always) func hardGrad(_ j: Int, _ zj: Float) -> Float {
            guard wh != 0 else { return 0 }
            var g = Foundation.exp((zj - m1) - l1) - uniform
            if j == target { g -= 1 - eps }
            return wh * g
        }
        if ws == 0 {
            for j in 0..<v { z[j] = hardGrad(j, z[j]) }
            return
        }
        let ma = row.maxA, la = row.logSumA, it = invTau
        let mb = row.maxB, lb = row.logSumB
        let t = row.teacher

        if let sp = sparse {
            let k = sp.k, r = row.sparseRow
            let rt = Double(sp.restMass[r])
            var total = rt
            for j in 0..<k { total += Foundation.exp(Double(sp.logprobs[r * k + j])) }
            let restRatio = Float(rt / (Double(Float(row.restS) + 1e-30)))
            let scale = ws * tau, tot = Float(total)
            for j in 0..<k { scratch.inTop[sp.ids[r * k + j]] = true }
            for j in 0..<v {
                let zj = z[j]
                let ps = Foundation.exp((zj * it - ma) - la)
                let g = scratch.inTop[j] ? tot * ps : (tot - restRatio) * ps
                z[j] = scale * g + hardGrad(j, zj)
            }
            for j in 0..<k {
                let id = sp.ids[r * k + j]
                scratch.inTop[id] = false
                z[id] -= scale * Foundation.exp(sp.logprobs[r * k + j])
            }
            return
        }

        switch divergence {
        case .mse:
            let s = ws * 2 / Float(v)
            for j in 0..<v { let zj = z[j]; z[j] = s * (zj - t![j]) + hardGrad(j, zj) }
        case .forwardKL, .jsd(beta: 0):
            // τ²-scaled: τ(p_s − p_t); TRL's β = 0: (p_s − p_t)/τ.
            let s = divergence == .forwardKL ? ws * tau : ws * it
            for j in 0..<v {
                let zj = z[j]
                let ps = Foundation.exp((zj * it - ma) - la), pt = Foundation.exp((t![j] * it - mb) - lb)
                z[j] = s * (ps - pt) + hardGrad(j, zj)
            }
        case .reverseKL, .jsd(beta: 1):
            let s = divergence == .reverseKL ? ws * tau : ws * it
            let kl = Float(row.chainSum)
            for j in 0..<v {
                let zj = z[j]
                let ls = (zj * it - ma) - la, lt = (t![j] * it - mb) - lb
                z[j] = s * Foundation.exp(ls) * ((ls - lt) - kl) + hardGrad(j, zj)
            }
        case .jsd(let beta):
            let b = Double(beta), l1b = Float(Foundation.log1p(-b)), lb0 = Float(Foundation.log(b))
            let s = ws * it, chain = Float(row.chainSum), c1 = Float(1 - b)
            for j in 0..<v {
                let zj = z[j]
                let ls = (zj * it - ma) - la, lt = (t![j] * it - mb) - lb
                let x = ls + l1b, y = lt + lb0
                let m = Swift.max(x, y)
                let lm = m + Foundation.log(Foundation.exp(x - m) + Foundation.exp(y - m))
                z[j] = s * Foundation.exp(ls) * (c1 * (ls - lm) - chain) + hardGrad(j, zj)
            }
        case .totalVariation:
            let s = ws * it, chain = Float(row.chainSum)
            for j in 0..<v {
                let zj = z[j]
                let ps = Foundation.exp((zj * it - ma) - la), pt = Foundation.exp((t![j] * it - mb) - lb)
                z[j] = s * ps * (0.5 * sign(ps - pt) - chain) + hardGrad(j, zj)
            }
        }
    }
}

@inline(__always) private func sign(_ x: Float) -> Float { x > 0 ? 1 : (x < 0 ? -1 : 0) }
