import CDistillKernels
import DistillTensor
import Foundation

/// The rows of a logit loss: which positions take the soft term, which the hard one, with what
/// weights, and the per-row kernels that compute a row's loss and its gradient with respect to
/// the row's logits. The shared core of `fusedLinearLoss` (logits computed chunk by chunk from the
/// hidden states) and `logitLoss` (logits given).
///
/// Forward KL (the usual distillation loss) and cross-entropy run through one vectorised C kernel
/// per row (`dk_kd_row`); the other divergences and the sparse teacher through the Swift kernels
/// below. Both follow the closed forms documented on `fusedLinearLoss`.
struct LogitRowLoss {
    let n: Int, v: Int
    let options: FusedLossOptions
    let targets: [Int]?
    let isSoft: [Bool], isHard: [Bool]
    /// Rows with at least one term, ascending.
    let rowList: [Int]
    let softOn: Bool, hardOn: Bool
    let wSoft: Double, wHard: Double
    let softCount: Int, hardCount: Int
    let kernel: SoftKernel

    init(rows n: Int, vocab v: Int, teacher: ChunkedTeacher?, targets: [Int]?, mask: LossMask?, options o: FusedLossOptions) {
        self.n = n
        self.v = v
        self.options = o
        self.targets = targets
        softOn = teacher != nil
        hardOn = targets != nil
        wSoft = !softOn ? 0 : (hardOn ? Double(o.alpha) : 1)
        wHard = !hardOn ? 0 : (softOn ? 1 - Double(o.alpha) : 1)
        var soft = [Bool](repeating: false, count: n), hard = [Bool](repeating: false, count: n)
        if softOn && wSoft != 0 {
            if let mask { for r in mask.rows { soft[r] = true } }
            else if let targets { for r in 0..<n { soft[r] = targets[r] != o.ignoreIndex } }
            else { soft = [Bool](repeating: true, count: n) }
        }
        if let targets, wHard != 0 { for r in 0..<n { hard[r] = targets[r] != o.ignoreIndex } }
        isSoft = soft
        isHard = hard
        softCount = soft.filter { $0 }.count
        hardCount = hard.filter { $0 }.count
        rowList = (0..<n).filter { soft[$0] || hard[$0] }
        kernel = SoftKernel(divergence: o.divergence, tau: o.temperature, vocab: v,
                            sparse: { if case .sparse(let s) = teacher { return s }; return nil }())
    }

    /// The rows with a term, `size` at a time, in order.
    func chunks(of size: Int) -> [[Int]] {
        stride(from: 0, to: rowList.count, by: size).map { Array(rowList[$0..<Swift.min(rowList.count, $0 + size)]) }
    }

    /// Per-row weights of the gradient (whose closed forms already carry τ² or 1/V).
    var softGradScale: Double { softCount == 0 ? 0 : wSoft / Double(softCount) }
    var hardScale: Double { hardCount == 0 ? 0 : wHard / Double(hardCount) }

    /// Loss sums (soft before `kernel.lossScale`, hard) of `rows` (ascending indices into the N
    /// positions) whose logits are the consecutive rows at `z` (or, `byRowIndex`, row r at
    /// z + r·V); `teacher` holds the teacher's logits of the soft rows among them, in order. With
    /// `gradient`, writes ∂loss/∂logits of those rows there, laid out as the logits (`gradient`
    /// may be `z`; otherwise `z` is left as it is).
    func run(rows: [Int], logits z: UnsafeMutablePointer<Float>, teacher pt: UnsafeMutablePointer<Float>?,
             gradient: UnsafeMutablePointer<Float>?, byRowIndex: Bool = false) -> (soft: Double, hard: Double) {
        let c = rows.count, v = self.v, o = options, kernel = self.kernel
        var teacherRow = [Int](repeating: -1, count: c)
        var k = 0
        for (i, r) in rows.enumerated() where isSoft[r] { teacherRow[i] = k; k += 1 }
        let vectorised = kernel.sparse == nil && (kernel.divergence == .forwardKL || !softOn)
        let softGrad = softGradScale, hardGrad = hardScale
        var softLoss = [Double](repeating: 0, count: c), hardLoss = [Double](repeating: 0, count: c)
        softLoss.withUnsafeMutableBufferPointer { sl in
            hardLoss.withUnsafeMutableBufferPointer { hl in
                let psl = sl.baseAddress!, phl = hl.baseAddress!
                parallelFor(c, grain: 1) { range in
                    var scratch = RowScratch(vocab: v, sparse: kernel.sparse != nil)
                    for i in range {
                        let r = rows[i], soft = isSoft[r], hard = isHard[r]
                        let at = (byRowIndex ? r : i) * v
                        let t = soft ? pt.map { $0 + teacherRow[i] * v } : nil
                        if vectorised {
                            var kl = 0.0, ce = 0.0
                            dk_kd_row(z + at, t, v, 1 / o.temperature, soft ? Float(softGrad) * o.temperature : 0,
                                      hard ? Float(hardGrad) : 0, hard ? targets![r] : -1, o.labelSmoothing, &kl, &ce,
                                      gradient.map { $0 + at })
                            psl[i] = kl
                            phl[i] = ce
                            continue
                        }
                        // The Swift kernels overwrite the row they work on with its gradient.
                        let work = gradient.map { $0 + at } ?? z + at
                        if work != z + at { work.update(from: z + at, count: v) }
                        var row = RowWork(z: work, vocab: v)
                        if soft { psl[i] = kernel.prepare(&row, teacher: t, row: r, scratch: &scratch) }
                        if hard { phl[i] = row.prepareHard(target: targets![r], smoothing: o.labelSmoothing) }
                        if gradient != nil {
                            kernel.writeGradient(&row, soft: soft ? softGrad : 0, hard: hard ? hardGrad : 0,
                                                 target: hard ? targets![r] : -1, smoothing: o.labelSmoothing, scratch: &scratch)
                        }
                    }
                }
            }
        }
        return (softLoss.reduce(0, +), hardLoss.reduce(0, +))
    }

    /// The loss from the sums over all rows, and its two terms' unweighted values (soft: mean over
    /// its rows with τ² or 1/V; hard: mean cross-entropy; nil when off).
    func value(softSum: Double, hardSum: Double) -> (loss: Float, soft: Float?, hard: Float?) {
        let softScale = softCount == 0 ? 0 : wSoft * kernel.lossScale / Double(softCount)
        let hardWeight = hardCount == 0 ? 0 : wHard / Double(hardCount)
        let soft: Float? = softOn && wSoft != 0 ? (softCount == 0 ? 0 : Float(kernel.lossScale * softSum / Double(softCount))) : nil
        let hard: Float? = hardOn && wHard != 0 ? (hardCount == 0 ? 0 : Float(hardSum / Double(hardCount))) : nil
        return (Float(softScale * softSum + hardWeight * hardSum), soft, hard)
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
