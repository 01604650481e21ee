import DistillTensor
import Foundation

/// How the soft term compares a teacher and a student whose tokenizers differ (so their logits
/// rows are over different vocabularies and their positions do not line up one to one).
public enum CrossTokenizerLoss: String, Equatable, Sendable, Codable, CaseIterable {
    /// Universal Logit Distillation (Boizard et al. 2024): at positions where both models have read
    /// exactly the same text, the two next-token distributions are sorted and compared as
    /// probability vectors (L1, i.e. the Wasserstein distance under the rank order), so no token of
    /// one vocabulary has to match a token of the other.
    case uld
    /// Span likelihood: the text is cut at the byte offsets where both tokenizations have a token
    /// boundary; on each span, the probability each model gives the span's text (product of its
    /// tokens' probabilities) is compared, as the KL divergence of two Bernoulli variables (the
    /// binarised chunk likelihood of ALM, Minixhofer et al. 2025).
    case align
}

/// The student tokens of one aligned span: `rows[i]` is the logits row that predicts `tokens[i]`.
public struct SpanTokens: Equatable, Sendable {
    public var rows: [Int]
    public var tokens: [Int]

    public init(rows: [Int], tokens: [Int]) {
        self.rows = rows
        self.tokens = tokens
    }
}

extension DistillationLoss {
    /// Bound on 1 − P in the span loss: log(1 − P) is taken at min(log P, −1e-6).
    public static let spanLogProbabilityCeiling = -1e-6

    /// Universal Logit Distillation over student logits rows `rows` of `logits` `[N, V_s]`:
    ///
    ///     p = softmax(z / τ) sorted descending, q = the teacher's row sorted descending (K values), r its rest mass
    ///     loss_row = Σ_{i<K} |p_(i) − q_i| + |Σ_{i≥K} p_(i) − r|          (p_(i) = 0 past V_s)
    ///
    /// mean over the rows. With the teacher's whole distribution (K = V_t, r = 0) this is exactly
    /// the L1 distance of the two sorted vectors padded with zeros; with its top-K only, the mass
    /// past rank K is compared as one bucket. No τ² factor. `teacherSorted[j]` (descending, each in
    /// [0, 1]) and `teacherRest[j]` belong to `rows[j]`; a row may be listed once only.
    ///
    /// Gradient (closed form, recorded with `Tensor.withPrecomputedGradients`): with
    /// g_v = sign(p_v − q_rank(v)) (or sign(tail − r) past rank K), ∂loss_row/∂z = p ⊙ (g − Σ p g) / τ.
    public static func universalLogitDistance(logits: Tensor, rows: [Int], teacherSorted: [[Float]], teacherRest: [Float],
                                              temperature tau: Float) throws -> Tensor {
        try validateTemperature(loss: "universalLogitDistance", tau)
        let (n, v) = try crossTokenizerShape(loss: "universalLogitDistance", logits)
        guard teacherSorted.count == rows.count, teacherRest.count == rows.count else {
            throw DistillationLossError.invalidArgument(
                loss: "universalLogitDistance",
                reason: "\(rows.count) rows, \(teacherSorted.count) teacher rows and \(teacherRest.count) rest masses (must be equal)")
        }
        try checkRows(loss: "universalLogitDistance", rows, n: n)
        for (j, q) in teacherSorted.enumerated() {
            guard !q.isEmpty, q.allSatisfy({ $0 >= 0 && $0 <= 1 }), zip(q, q.dropFirst()).allSatisfy({ $0 >= $1 }),
                  teacherRest[j] >= 0, teacherRest[j] <= 1 else {
                throw DistillationLossError.invalidArgument(
                    loss: "universalLogitDistance",
                    reason: "teacher row \(j) must be probabilities sorted descending with a rest mass in [0, 1]")
            }
        }
        if rows.isEmpty { return Tensor(scalar: 0) }
        let needGrad = GradientMode.isEnabled && logits.requiresGrad
        var grad = needGrad ? [Float](repeating: 0, count: n * v) : []
        let z = logits.storage.pointer
        let scale = 1 / Double(rows.count), invTau = 1 / Double(tau)
        var total = 0.0
        var p = [Double](repeating: 0, count: v), g = [Double](repeating: 0, count: v)
        var order = [Int](repeating: 0, count: v)
        for (j, r) in rows.enumerated() {
            softmaxRow(z + r * v, count: v, invTau: invTau, into: &p)
            for i in 0..<v { order[i] = i }
            order.sort { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }
            let q = teacherSorted[j], k = q.count, rest = Double(teacherRest[j])
            var loss = 0.0, tail = 0.0
            for i in 0..<Swift.max(k, v) {
                let s = i < v ? p[order[i]] : 0
                if i < k {
                    let d = s - Double(q[i])
                    loss += Swift.abs(d)
                    if i < v { g[order[i]] = d > 0 ? 1 : (d < 0 ? -1 : 0) }
                } else {
                    tail += s
                }
            }
            let dt = tail - rest
            loss += Swift.abs(dt)
            if v > k { for i in k..<v { g[order[i]] = dt > 0 ? 1 : (dt < 0 ? -1 : 0) } }
            total += loss
            if needGrad {
                var pg = 0.0
                for i in 0..<v { pg += p[i] * g[i] }
                for i in 0..<v { grad[r * v + i] = Float(p[i] * (g[i] - pg) * invTau * scale) }
            }
        }
        return valueWithGradient(total * scale, logits: logits, grad: grad, needGrad: needGrad)
    }

    /// Span likelihood over student logits `[N, V_s]`: for span k with student log-probability
    /// a = Σ_i log softmax(z_{rows[i]} / τ)[tokens[i]] and teacher log-probability b
    /// (`teacherLogProbs[k]`, the same text under the teacher at τ),
    ///
    ///     loss_k = P_t·(b − a) + (1 − P_t)·(log(1 − P_t) − log(1 − P_s)),   P_t = eᵇ, P_s = eᵃ
    ///
    /// (KL between Bernoulli(P_t) and Bernoulli(P_s)), mean over spans, no τ² factor. log(1 − P)
    /// is taken at min(log P, −1e-6) (`spanLogProbabilityCeiling`) so a span the student is sure of
    /// stays finite. Gradient: ∂loss_k/∂a = −P_t + (1 − P_t)·P_s/(1 − P_s) (0 for the second part
    /// past the ceiling), and ∂a/∂z_row = (onehot(token) − softmax(z_row/τ)) / τ.
    public static func spanLikelihood(logits: Tensor, spans: [SpanTokens], teacherLogProbs: [Float],
                                      temperature tau: Float) throws -> Tensor {
        try validateTemperature(loss: "spanLikelihood", tau)
        let (n, v) = try crossTokenizerShape(loss: "spanLikelihood", logits)
        guard teacherLogProbs.count == spans.count else {
            throw DistillationLossError.invalidArgument(loss: "spanLikelihood",
                                                        reason: "\(spans.count) spans but \(teacherLogProbs.count) teacher log-probabilities")
        }
        for (k, s) in spans.enumerated() {
            guard !s.rows.isEmpty, s.rows.count == s.tokens.count else {
                throw DistillationLossError.invalidArgument(loss: "spanLikelihood",
                                                            reason: "span \(k) needs as many rows as tokens, at least one")
            }
            try checkRows(loss: "spanLikelihood", s.rows, n: n, unique: false)
            if let t = s.tokens.first(where: { $0 < 0 || $0 >= v }) {
                throw DistillationLossError.indexOutOfRange(loss: "spanLikelihood", what: "token", index: t, size: v)
            }
            guard !teacherLogProbs[k].isNaN, teacherLogProbs[k] <= 1e-5 else {
                throw DistillationLossError.invalidArgument(loss: "spanLikelihood",
                                                            reason: "teacher log-probability \(teacherLogProbs[k]) of span \(k) must be ≤ 0")
            }
        }
        if spans.isEmpty { return Tensor(scalar: 0) }
        let needGrad = GradientMode.isEnabled && logits.requiresGrad
        var grad = needGrad ? [Float](repeating: 0, count: n * v) : []
        let z = logits.storage.pointer
        let scale = 1 / Double(spans.count), invTau = 1 / Double(tau), ceiling = spanLogProbabilityCeiling
        func log1mExp(_ x: Double) -> Double { Foundation.log(-Foundation.expm1(Swift.min(x, ceiling))) }
        var total = 0.0
        var p = [Double](repeating: 0, count: v)
        for (k, s) in spans.enumerated() {
            var a = 0.0
            for (r, t) in zip(s.rows, s.tokens) { a += logSoftmaxAt(z + r * v, count: v, invTau: invTau, index: t) }
            let b = Swift.min(0, Double(teacherLogProbs[k]))
            let pt = Foundation.exp(b), ps = Foundation.exp(a)
            total += (pt > 0 ? pt * (b - a) : 0) + (1 - pt) * (log1mExp(b) - log1mExp(a))
            guard needGrad else { continue }
            let dA = -pt + (a < ceiling ? (1 - pt) * ps / -Foundation.expm1(a) : 0)
            for (r, t) in zip(s.rows, s.tokens) {
                softmaxRow(z + r * v, count: v, invTau: invTau, into: &p)
                let c = dA * invTau * scale
                for i in 0..<v { grad[r * v + i] -= Float(c * p[i]) }
                grad[r * v + t] += Float(c)
            }
        }
        return valueWithGradient(total * scale, logits: logits, grad: grad, needGrad: needGrad)
    }

    // MARK: Helpers

    static func crossTokenizerShape(loss: String, _ logits: Tensor) throws -> (n: Int, v: Int) {
        guard logits.shape.count >= 2, let v = logits.shape.last, v > 0 else {
            throw DistillationLossError.invalidArgument(loss: loss, reason: "logits must be [N, V] or [B, T, V], got \(logits.shape)")
        }
        return (logits.count / v, v)
    }

    static func checkRows(loss: String, _ rows: [Int], n: Int, unique: Bool = true) throws {
        var seen = Set<Int>()
        for r in rows {
            guard r >= 0 && r < n else { throw DistillationLossError.indexOutOfRange(loss: loss, what: "row", index: r, size: n) }
            if unique && !seen.insert(r).inserted {
                throw DistillationLossError.invalidArgument(loss: loss, reason: "row \(r) listed twice")
            }
        }
    }

    /// softmax(z · invTau) of one row, in Double.
    static func softmaxRow(_ z: UnsafePointer<Float>, count v: Int, invTau: Double, into p: inout [Double]) {
        var m = -Double.infinity
        for i in 0..<v { m = Swift.max(m, Double(z[i]) * invTau) }
        var sum = 0.0
        for i in 0..<v { let e = Foundation.exp(Double(z[i]) * invTau - m); p[i] = e; sum += e }
        for i in 0..<v { p[i] /= sum }
    }

    /// log softmax(z · invTau)[index] of one row, in Double.
    static func logSoftmaxAt(_ z: UnsafePointer<Float>, count v: Int, invTau: Double, index: Int) -> Double {
        var m = -Double.infinity
        for i in 0..<v { m = Swift.max(m, Double(z[i]) * invTau) }
        var sum = 0.0
        for i in 0..<v { sum += Foundation.exp(Double(z[i]) * invTau - m) }
        return Double(z[index]) * invTau - m - Foundation.log(sum)
    }

    static func valueWithGradient(_ value: Double, logits: Tensor, grad: [Float], needGrad: Bool) -> Tensor {
        let result = Tensor(scalar: Float(value))
        guard needGrad else { return result }
        return Tensor.withPrecomputedGradients(of: result, inputs: [logits], gradients: [Tensor(grad, shape: logits.shape)])
    }
}
