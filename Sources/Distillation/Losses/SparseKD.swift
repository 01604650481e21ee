import DistillTensor
import Foundation

/// The teacher's view of N positions as its top-k log-probabilities plus the probability mass
/// left over (what a logit cache or an OpenAI-compatible server's `top_logprobs` gives).
///
/// Row r holds k pairs (`ids[r·k + j]`, `logprobs[r·k + j]`) and `restMass[r]` — the teacher's
/// probability of every other token together, 1 − Σ_j exp(logprob) unless given. The
/// log-probabilities are used as they are: they must have been captured at the temperature the
/// loss is run at (see `DistillationLoss.sparseKL`).
public struct SparseTeacherTargets: Equatable, Sendable {
    public let rows: Int
    public let k: Int
    public let vocabularySize: Int
    public let ids: [Int]
    public let logprobs: [Float]
    public let restMass: [Float]
    /// Which rows hold the teacher's view (nil: all). A row without one (a position a server's
    /// log-probabilities did not cover) holds a placeholder — ids 0..<k at probability 0, rest
    /// mass 1 — and is left out of the soft term (see `Trainer.loss`).
    public let known: [Bool]?

    /// Tolerance on Σ_j exp(logprob) exceeding 1 (rounding in the cache); the rest is then 0.
    public static let massTolerance: Double = 1e-3

    /// Checks and stores the teacher's top-k view. Throws when the counts do not match
    /// `rows × k`, k is outside 1...V, an id is out of 0..<V or repeated within its row, a
    /// log-probability is NaN or above 0, the k probabilities sum to more than 1 (beyond
    /// `massTolerance`), or a given rest mass is outside [0, 1].
    ///
    /// `known` (one flag per row) marks rows without a teacher view: their values are not checked
    /// and are replaced by the placeholder.
    public init(ids: [Int], logprobs: [Float], k: Int, vocabularySize: Int, restMass: [Float]? = nil, known: [Bool]? = nil) throws {
        let loss = "SparseTeacherTargets"
        guard k >= 1, k <= vocabularySize else {
            throw DistillationLossError.invalidArgument(loss: loss, reason: "k = \(k) outside 1...\(vocabularySize) (the vocabulary size)")
        }
        guard ids.count == logprobs.count, ids.count % k == 0 else {
            throw DistillationLossError.shapeMismatch(loss: loss, shapes: [[ids.count], [logprobs.count]],
                                                      reason: "ids and log-probabilities must both hold rows × k (k = \(k)) values")
        }
        let rows = ids.count / k
        if let restMass, restMass.count != rows {
            throw DistillationLossError.shapeMismatch(loss: loss, shapes: [[rows, k], [restMass.count]],
                                                      reason: "one rest mass per row expected")
        }
        if let known, known.count != rows {
            throw DistillationLossError.shapeMismatch(loss: loss, shapes: [[rows, k], [known.count]],
                                                      reason: "one known flag per row expected")
        }
        var rest = [Float](repeating: 0, count: rows)
        var ids = ids, logprobs = logprobs
        var seen = [Int](repeating: -1, count: vocabularySize)        // row that last used each id
        for r in 0..<rows {
            if let known, !known[r] {
                for j in 0..<k { ids[r * k + j] = j; logprobs[r * k + j] = -.infinity }
                rest[r] = 1
                continue
            }
            var mass = 0.0
            for j in 0..<k {
                let id = ids[r * k + j], lp = logprobs[r * k + j]
                guard id >= 0 && id < vocabularySize else {
                    throw DistillationLossError.indexOutOfRange(loss: loss, what: "token id (row \(r))", index: id, size: vocabularySize)
                }
                guard seen[id] != r else {
                    throw DistillationLossError.invalidArgument(loss: loss, reason: "token id \(id) appears twice in row \(r)")
                }
                seen[id] = r
                guard !lp.isNaN, lp <= 0 else {
                    throw DistillationLossError.invalidArgument(loss: loss, reason: "log-probability \(lp) of id \(id) in row \(r) is not ≤ 0")
                }
                mass += Foundation.exp(Double(lp))
            }
            guard mass <= 1 + Self.massTolerance else {
                throw DistillationLossError.invalidArgument(loss: loss, reason: "the top-\(k) probabilities of row \(r) sum to \(mass) > 1")
            }
            if let restMass {
                let m = restMass[r]
                guard m >= 0 && m <= 1 else {
                    throw DistillationLossError.invalidArgument(loss: loss, reason: "rest mass \(m) of row \(r) outside [0, 1]")
                }
                rest[r] = m
            } else {
                rest[r] = Float(Swift.max(0, 1 - mass))
            }
        }
        self.rows = rows
        self.k = k
        self.vocabularySize = vocabularySize
        self.ids = ids
        self.logprobs = logprobs
        self.restMass = rest
        self.known = known.flatMap { $0.contains(false) ? $0 : nil }
    }

    /// Whether row r holds the teacher's view.
    public func isKnown(_ r: Int) -> Bool { known?[r] ?? true }

    /// The top-k view of full teacher logits `[N, V]` at temperature τ: log_softmax(z/τ), the k
    /// largest per row (ties: lower id first), in descending order.
    public static func topK(ofLogits teacher: Tensor, k: Int, temperature tau: Float = 1) throws -> SparseTeacherTargets {
        guard teacher.rank >= 2, let v = teacher.shape.last else {
            throw DistillationLossError.shapeMismatch(loss: "SparseTeacherTargets.topK", shapes: [teacher.shape],
                                                      reason: "teacher logits must be [N, V] or [B, T, V]")
        }
        guard k >= 1 && k <= v else {
            throw DistillationLossError.invalidArgument(loss: "SparseTeacherTargets.topK", reason: "k = \(k) outside 1...\(v)")
        }
        let logp = withoutGradients { (teacher.detached().reshaped([-1, v]) / tau).logSoftmax() }
        let n = logp.shape[0], p = logp.storage.pointer
        var ids: [Int] = [], lps: [Float] = []
        ids.reserveCapacity(n * k)
        lps.reserveCapacity(n * k)
        for r in 0..<n {
            let order = (0..<v).sorted { a, b in p[r * v + a] != p[r * v + b] ? p[r * v + a] > p[r * v + b] : a < b }
            for id in order.prefix(k) { ids.append(id); lps.append(p[r * v + id]) }
        }
        return try SparseTeacherTargets(ids: ids, logprobs: lps, k: k, vocabularySize: v)
    }

    /// The ids of the counted rows, row after row.
    func ids(of rowList: [Int]) -> [Int] { rowList.flatMap { ids[($0 * k)..<($0 * k + k)] } }

    /// Rows `order[0]`, `order[1]`, … of this view.
    public func selecting(rows order: [Int]) throws -> SparseTeacherTargets {
        try SparseTeacherTargets(ids: order.flatMap { ids[($0 * k)..<($0 * k + k)] },
                                 logprobs: order.flatMap { logprobs[($0 * k)..<($0 * k + k)] },
                                 k: k, vocabularySize: vocabularySize, restMass: order.map { restMass[$0] },
                                 known: known.map { flags in order.map { flags[$0] } })
    }

    /// The rows of `views` one after another (all with the same k and vocabulary).
    public static func concatenating(_ views: [SparseTeacherTargets]) throws -> SparseTeacherTargets {
        guard let first = views.first else {
            throw DistillationLossError.invalidArgument(loss: "SparseTeacherTargets", reason: "nothing to concatenate")
        }
        guard views.allSatisfy({ $0.k == first.k && $0.vocabularySize == first.vocabularySize }) else {
            throw DistillationLossError.invalidArgument(loss: "SparseTeacherTargets", reason: "views with different k or vocabulary")
        }
        return try SparseTeacherTargets(ids: views.flatMap(\.ids), logprobs: views.flatMap(\.logprobs), k: first.k,
                                        vocabularySize: first.vocabularySize, restMass: views.flatMap(\.restMass),
                                        known: views.contains { $0.known != nil } ? views.flatMap { v in (0..<v.rows).map(v.isKnown) } : nil)
    }

    /// A view of `index.count` rows where row r is this view's row `index[r]`, or, where
    /// `index[r]` is -1, a placeholder (ids 0..<k at probability 0, rest mass 1) for a row that a
    /// loss mask leaves out.
    public func spread(to index: [Int]) throws -> SparseTeacherTargets {
        var outIds: [Int] = [], outLps: [Float] = [], outRest: [Float] = []
        outIds.reserveCapacity(index.count * k); outLps.reserveCapacity(index.count * k)
        for i in index {
            if i < 0 || !isKnown(i) {
                outIds += 0..<k
                outLps += [Float](repeating: -.infinity, count: k)
                outRest.append(1)
            } else {
                outIds += ids[(i * k)..<(i * k + k)]
                outLps += logprobs[(i * k)..<(i * k + k)]
                outRest.append(restMass[i])
            }
        }
        return try SparseTeacherTargets(ids: outIds, logprobs: outLps, k: k, vocabularySize: vocabularySize, restMass: outRest)
    }
}

extension DistillationLoss {
    /// Sparse knowledge distillation from the teacher's top-k log-probabilities plus one "rest"
    /// bucket for the mass outside them.
    ///
    /// Per counted row, with the teacher's k ids i_1…i_k:
    ///
    ///     teacher buckets  p_t(i_j) = exp(logprob_j),          r_t = restMass
    ///     student buckets  q_j = p_s(i_j),                     r_s = Σ_{v ∉ ids} p_s(v)
    ///     loss = τ² · [ Σ_j p_t(i_j)·(log p_t(i_j) − log q_j) + r_t·(log r_t − log r_s) ]
    ///
    /// with p_s = softmax(z_s/τ) and 0·log 0 = 0; mean over counted rows. r_s is summed over the
    /// tokens outside the top k (not 1 − Σ q_j, which cancels to noise when the rest is small).
    /// With k = V (no rest) this is exactly `softTargetKL` when the log-probabilities are
    /// log_softmax(z_t/τ).
    ///
    /// Temperature: τ is applied to the student only. The teacher's log-probabilities are taken as
    /// captured; the cache or server must have produced them at the same τ (they cannot be
    /// re-tempered without the full distribution). The τ² factor keeps the scale of
    /// `softTargetKL`.
    public static func sparseKL(student: Tensor, teacher: SparseTeacherTargets, temperature tau: Float = 1,
                                mask: LossMask? = nil) -> Tensor {
        let (n, _) = lossValidated {
            try validateTemperature(loss: "sparseKL", tau)
            return try validateSparse(loss: "sparseKL", student: student.shape, teacher: teacher, mask: mask)
        }
        let rowList = mask?.rows ?? Array(0..<n)
        let count = rowList.count
        if count == 0 { return Tensor(scalar: 0) }
        let v = teacher.vocabularySize, k = teacher.k
        // Constants of the teacher: probabilities, log-probabilities (0 where p = 0), rest terms,
        // and which vocabulary entries fall outside the top k.
        var pT = [Float](), lpT = [Float](), rT = [Float](), outside = [Float](repeating: 1, count: count * v)
        var restEntropyTerm = 0.0                               // Σ r_t log r_t
        for (c, r) in rowList.enumerated() {
            for j in 0..<k {
                let lp = teacher.logprobs[r * k + j]
                pT.append(Foundation.exp(lp))
                lpT.append(lp == -Float.infinity ? 0 : lp)
                outside[c * v + teacher.ids[r * k + j]] = 0
            }
            let rest = teacher.restMass[r]
            rT.append(rest)
            if rest > 0 { restEntropyTerm += Double(rest) * Foundation.log(Double(rest)) }
        }
        let ids = teacher.ids(of: rowList)
        let logPS = (countedRows(student, mask: mask) / tau).logSoftmax()          // (count, V)
        let logQ = logPS.gather(lastAxis: ids, k: k)                                // (count, k)
        let top = (Tensor(pT, shape: [count, k]) * (Tensor(lpT, shape: [count, k]) - logQ)).sum()
        let restS = (logPS.exp() * Tensor(outside, shape: [count, v])).sum(axis: -1) // (count)
        // r_t·(log r_t − log r_s); the 1e-30 keeps log finite where r_s = 0 (then r_t = 0 too
        // when the teacher is consistent, and the term and its gradient are 0).
        let restCross = (Tensor(rT, shape: [count]) * (restS + Float(1e-30)).log()).sum()
        let total = top + (Float(restEntropyTerm) - restCross)
        return total * (tau * tau / Float(count))
    }

    /// Checks student logits against a sparse teacher view: same number of rows and vocabulary
    /// size, and a mask (if any) for those rows. Returns (rows N, vocabulary V).
    @discardableResult
    public static func validateSparse(loss: String, student: [Int], teacher: SparseTeacherTargets,
                                      mask: LossMask?) throws -> (rows: Int, vocab: Int) {
        guard student.count >= 2, let v = student.last else {
            throw DistillationLossError.shapeMismatch(loss: loss, shapes: [student], reason: "student logits must be [N, V] or [B, T, V]")
        }
        let n = student.dropLast().reduce(1, *)
        guard n == teacher.rows, v == teacher.vocabularySize else {
            throw DistillationLossError.shapeMismatch(
                loss: loss, shapes: [student, [teacher.rows, teacher.k]],
                reason: "student logits have \(n) rows over \(v) tokens; the teacher's top-\(teacher.k) view has \(teacher.rows) rows over \(teacher.vocabularySize) tokens")
        }
        try validateMask(loss: loss, mask: mask, rows: n)
        return (n, v)
    }
}
