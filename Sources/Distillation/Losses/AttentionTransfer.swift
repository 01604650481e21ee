import DistillTensor
import Foundation

/// How student attention maps are compared with the teacher's.
public enum AttentionDistance: String, Codable, Sendable {
    /// KL(a_t ‖ a_s) over the keys of each query row (terms where a_t = 0 count 0).
    case kl
    /// 1 − cos(a_t, a_s) over the keys of each query row, cos as in `FeatureDistance.cosine`.
    case cosine
}

extension DistillationLoss {
    /// Attention transfer: the student's attention distributions learn the teacher's on mapped
    /// layers. `student[i]` are the probabilities of student layer i, `[B, H_s, T, S]` (from
    /// `attentionWithProbabilities`, so they are differentiable); `teacher[j]` of teacher layer j,
    /// `[B, H_t, T, S]` (a constant).
    ///
    /// Heads. With `topKTeacherHeads` = K, only the K teacher heads of lowest attention entropy
    /// (the most focused; see `teacherHeadEntropies`) are kept, in their original order; H_t is
    /// then K. Then:
    /// - H_t = H_s: head h of the student learns head h of the teacher;
    /// - H_t a multiple of H_s: student head h learns the average of teacher heads
    ///   h·G ..< (h+1)·G, G = H_t / H_s (consecutive groups, as grouped-query attention groups heads);
    /// - otherwise both maps are averaged over their heads and compared once per query row.
    /// An average of distributions is a distribution, so KL stays well defined.
    ///
    /// Reduction: per query row (b, h, t), summed over keys; mean over heads and counted query
    /// positions (the mask is over the B·T query positions); mean over layer pairs.
    public static func attentionTransfer(student: [Tensor], teacher: [Tensor], map: LayerMap,
                                         distance: AttentionDistance = .kl, topKTeacherHeads: Int? = nil,
                                         mask: LossMask? = nil) -> Tensor {
        lossValidated {
            try validateAttention(student: student.map(\.shape), teacher: teacher.map(\.shape), map: map,
                                  topKTeacherHeads: topKTeacherHeads, mask: mask)
        }
        guard !map.pairs.isEmpty else { return Tensor(scalar: 0) }
        var total: Tensor? = nil
        for pair in map.pairs {
            var s = student[pair.student]
            var t = teacher[pair.teacher].detached()
            let b = s.shape[0], hs = s.shape[1], q = s.shape[2], keys = s.shape[3]
            withoutGradients {
                if let k = topKTeacherHeads {
                    let heads = focusedTeacherHeads(t, k: k, mask: mask)
                    t = t.indexSelect(heads, axis: 1)                                   // (B, K, T, S)
                }
                let ht = t.shape[1]
                if ht != hs && ht % hs == 0 {
                    // (B, Hs·G, T, S) -> (B, Hs, G, T, S) -> mean over G -> (B, Hs, T, S)
                    t = t.reshaped([b, hs, ht / hs, q, keys]).mean(axis: 2)
                } else if ht != hs {
                    t = t.mean(axis: 1, keepDims: true)                                 // (B, 1, T, S)
                }
            }
            if t.shape[1] != hs { s = s.mean(axis: 1, keepDims: true) }                 // (B, 1, T, S)
            let h = s.shape[1]
            // (B, H, T, S) -> (B, T, H, S) -> (B·T, H·S): one row per query position.
            let sRows = countedRows(s.permuted([0, 2, 1, 3]).reshaped([b * q, h * keys]), mask: mask)
                .reshaped([-1, keys])                                                    // (count·H, S)
            let tRows = withoutGradients {
                countedRows(t.permuted([0, 2, 1, 3]).reshaped([b * q, h * keys]), mask: mask).reshaped([-1, keys])
            }
            let rows = sRows.shape[0]
            if rows == 0 { continue }
            let term: Tensor
            switch distance {
            case .kl:
                // Σ a_t (log a_t − log a_s) over entries with a_t > 0; elsewhere a_s is replaced by 1
                // before the log so that neither the value nor the gradient sees log 0.
                let (positive, logT) = withoutGradients { () -> (Tensor, Tensor) in
                    let pt = tRows.storage.pointer
                    let pos = Tensor(uninitializedShape: tRows.shape), lt = Tensor(uninitializedShape: tRows.shape)
                    for i in 0..<tRows.count {
                        pos.storage.pointer[i] = pt[i] > 0 ? 1 : 0
                        lt.storage.pointer[i] = pt[i] > 0 ? Foundation.log(pt[i]) : 0
                    }
                    return (pos, lt)
                }
                let logS = sRows.where(positive, else: Tensor(scalar: 1)).log()
                term = (tRows * (logT - logS)).sum() * (1 / Float(rows))
            case .cosine:
                let dot = (sRows * tRows).sum(axis: -1)
                let ns = sRows.square().sum(axis: -1)
                let nt = withoutGradients { tRows.square().sum(axis: -1) }
                term = 1 - (dot * (ns * nt + Float(1e-16)).rsqrt()).sum() * (1 / Float(rows))
            }
            total = total.map { $0 + term } ?? term
        }
        return (total ?? Tensor(scalar: 0)) * (1 / Float(map.pairs.count))
    }

    /// Mean attention entropy −Σ_s a·log a of each head of `probabilities` `[B, H, T, S]`, over the
    /// batch and the counted query positions (0·log 0 = 0), in nats. Low entropy: a focused head.
    public static func teacherHeadEntropies(_ probabilities: Tensor, mask: LossMask? = nil) -> [Double] {
        precondition(probabilities.rank == 4, "teacherHeadEntropies: expected [B, H, T, S], got \(probabilities.shape)")
        let b = probabilities.shape[0], h = probabilities.shape[1], q = probabilities.shape[2], keys = probabilities.shape[3]
        lossValidated { try validateMask(loss: "teacherHeadEntropies", mask: mask, rows: b * q) }
        let counted = mask?.flags ?? [Bool](repeating: true, count: b * q)
        let countedRows = counted.filter { $0 }.count
        let p = probabilities.storage.pointer
        var out = [Double](repeating: 0, count: h)
        for head in 0..<h {
            var s = 0.0
            for bi in 0..<b {
                for t in 0..<q where counted[bi * q + t] {
                    let row = p + ((bi * h + head) * q + t) * keys
                    for j in 0..<keys where row[j] > 0 { s -= Double(row[j]) * Foundation.log(Double(row[j])) }
                }
            }
            out[head] = countedRows == 0 ? 0 : s / Double(countedRows)
        }
        return out
    }

    /// The `k` heads of lowest mean entropy (ties: lower index first), in ascending head order.
    public static func focusedTeacherHeads(_ probabilities: Tensor, k: Int, mask: LossMask? = nil) -> [Int] {
        let e = teacherHeadEntropies(probabilities, mask: mask)
        precondition(k >= 1 && k <= e.count, "focusedTeacherHeads: k = \(k) outside 1...\(e.count) heads")
        let order = e.indices.sorted { e[$0] != e[$1] ? e[$0] < e[$1] : $0 < $1 }
        return Array(order.prefix(k)).sorted()
    }

    /// Checks the inputs of `attentionTransfer`: mapped layers exist, maps are rank 4 with equal
    /// batch, query and key sizes, K (if given) is within the teacher's heads, and the mask covers
    /// the B·T query positions.
    public static func validateAttention(student: [[Int]], teacher: [[Int]], map: LayerMap, topKTeacherHeads: Int?,
                                         mask: LossMask?) throws {
        let loss = "attentionTransfer"
        try map.validate(studentLayers: student.count, teacherLayers: teacher.count, loss: loss)
        for pair in map.pairs {
            let s = student[pair.student], t = teacher[pair.teacher]
            guard s.count == 4, t.count == 4, s[0] == t[0], s[2] == t[2], s[3] == t[3] else {
                throw DistillationLossError.shapeMismatch(
                    loss: loss, shapes: [s, t],
                    reason: "student layer \(pair.student) and teacher layer \(pair.teacher) must be [B, H, T, S] with equal B, T and S")
            }
            if let k = topKTeacherHeads, k < 1 || k > t[1] {
                throw DistillationLossError.invalidArgument(loss: loss, reason: "top-\(k) heads asked of a teacher layer with \(t[1]) heads")
            }
            try validateMask(loss: loss, mask: mask, rows: s[0] * s[2])
        }
    }
}
