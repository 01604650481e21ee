import DistillNN
import DistillTensor
import Foundation

/// Which student layer learns from which teacher layer (feature and attention transfer).
///
/// Layer i is the output of transformer block i, 0-based (Hugging Face's `hidden_states[i + 1]`;
/// the embedding output is not a layer here).
public struct LayerMap: Equatable, Sendable {
    public struct Pair: Equatable, Sendable {
        public let student: Int
        public let teacher: Int
        public init(student: Int, teacher: Int) { self.student = student; self.teacher = teacher }
    }

    public let pairs: [Pair]

    /// An explicit map. Throws when a layer index is negative (ranges are checked against the
    /// models by `validate(studentLayers:teacherLayers:)`) or a student layer appears twice.
    public init(_ pairs: [(student: Int, teacher: Int)]) throws {
        var seen = Set<Int>()
        for p in pairs {
            guard p.student >= 0, p.teacher >= 0 else {
                throw DistillationLossError.invalidArgument(loss: "LayerMap", reason: "negative layer in pair (\(p.student), \(p.teacher))")
            }
            guard seen.insert(p.student).inserted else {
                throw DistillationLossError.invalidArgument(loss: "LayerMap", reason: "student layer \(p.student) mapped twice")
            }
        }
        self.pairs = pairs.map { Pair(student: $0.student, teacher: $0.teacher) }
    }

    /// Every student layer i ↔ teacher layer `uniformTeacherLayers(…)[i]`.
    public static func uniform(studentLayers: Int, teacherLayers: Int) -> LayerMap {
        let t = uniformTeacherLayers(studentLayers: studentLayers, teacherLayers: teacherLayers)
        return LayerMap(unchecked: t.enumerated().map { Pair(student: $0.offset, teacher: $0.element) })
    }

    init(unchecked pairs: [Pair]) { self.pairs = pairs }

    /// The uniform map: student layer i ↔ teacher layer round((i + 1)·L_t / L_s) − 1, 0-based, so
    /// the last student layer meets the last teacher layer and the others are spread evenly
    /// (L_s = 4, L_t = 12 → [2, 5, 8, 11]). Halves round away from zero (L_s = 4, L_t = 6 →
    /// 1.5 → 2 → layer 1); with L_t < L_s the index is kept at 0 or above, so teacher layers repeat.
    public static func uniformTeacherLayers(studentLayers ls: Int, teacherLayers lt: Int) -> [Int] {
        precondition(ls >= 1 && lt >= 1, "LayerMap.uniform: layer counts \(ls) (student) and \(lt) (teacher) must be at least 1")
        return (0..<ls).map { i in
            let x = (Double(i + 1) * Double(lt) / Double(ls)).rounded(.toNearestOrAwayFromZero)
            return Swift.max(0, Int(x) - 1)
        }
    }

    public var studentLayers: [Int] { pairs.map(\.student) }
    public var teacherLayers: [Int] { pairs.map(\.teacher) }

    /// Checks every pair against the models' layer counts.
    public func validate(studentLayers ls: Int, teacherLayers lt: Int, loss: String = "LayerMap") throws {
        for p in pairs {
            guard p.student < ls else {
                throw DistillationLossError.indexOutOfRange(loss: loss, what: "student layer", index: p.student, size: ls)
            }
            guard p.teacher < lt else {
                throw DistillationLossError.indexOutOfRange(loss: loss, what: "teacher layer", index: p.teacher, size: lt)
            }
        }
    }
}

/// Learned projections from student hidden states (width H_s) to the teacher's width H_t, one
/// `Linear(H_s → H_t)` per mapped layer pair, in the order of the map's pairs (parameter names
/// `projections.0.weight`, `projections.0.bias`, …). Trained with the student.
public final class FeatureProjector: Module {
    public let projections: [Linear]

    public init(studentWidth: Int, teacherWidth: Int, pairs: Int, bias: Bool = true, rng: inout RandomGenerator) {
        var list: [Linear] = []
        for _ in 0..<pairs { list.append(Linear(studentWidth, teacherWidth, bias: bias, rng: &rng)) }
        projections = list
    }

    /// Projections with given weights [H_t, H_s] (and biases [H_t]).
    public init(weights: [Tensor], biases: [Tensor]? = nil) {
        precondition(biases == nil || biases!.count == weights.count,
                     "FeatureProjector: \(biases!.count) biases for \(weights.count) weights")
        projections = weights.indices.map { Linear(weight: weights[$0], bias: biases?[$0]) }
    }

    public func callAsFunction(_ x: Tensor, pair: Int) -> Tensor { projections[pair](x) }
}

/// How projected student features are compared with the teacher's.
public enum FeatureDistance: String, Codable, Sendable {
    /// Mean over counted positions and hidden units of (P(h_s) − h_t)².
    case mse
    /// Mean over counted positions of 1 − cos(P(h_s), h_t), with
    /// cos(x, y) = x·y / √(‖x‖²‖y‖² + 10⁻¹⁶).
    case cosine
}

extension DistillationLoss {
    /// Feature (hidden-state) distillation. `student[i]` is the output of student block i,
    /// `[B, T, H_s]` (or `[N, H_s]`); `teacher[j]` of teacher block j, `[B, T, H_t]` (a constant).
    /// For each pair of `map`, the student state goes through `projector.projections[pair]`
    /// (required when H_s ≠ H_t; nil means identity) and is compared with the teacher's on the
    /// counted positions (mask over the B·T positions); the loss is the mean over pairs.
    public static func feature(student: [Tensor], teacher: [Tensor], map: LayerMap, projector: FeatureProjector? = nil,
                               distance: FeatureDistance = .mse, mask: LossMask? = nil) -> Tensor {
        lossValidated {
            try validateFeatures(student: student.map(\.shape), teacher: teacher.map(\.shape), map: map,
                                 projector: projector.map { $0.projections.map { $0.weight.shape } }, mask: mask)
        }
        return feature(student: student, teacher: teacher, map: map, project: projector.map { p in { h, k in p(h, pair: k) } },
                       distance: distance, mask: mask)
    }

    /// `feature` with the projection given as a function of (counted student states `[count, H_s]`,
    /// pair index) returning `[count, H_t]` (nil: identity). The shapes of the projected states are
    /// checked as they come.
    public static func feature(student: [Tensor], teacher: [Tensor], map: LayerMap, project: ((Tensor, Int) -> Tensor)?,
                               distance: FeatureDistance = .mse, mask: LossMask? = nil) -> Tensor {
        lossValidated {
            try map.validate(studentLayers: student.count, teacherLayers: teacher.count, loss: "featureLoss")
            for pair in map.pairs {
                let s = student[pair.student].shape, t = teacher[pair.teacher].shape
                guard s.count >= 2, t.count >= 2, s.dropLast() == t.dropLast() else {
                    throw DistillationLossError.shapeMismatch(
                        loss: "featureLoss", shapes: [s, t],
                        reason: "student layer \(pair.student) and teacher layer \(pair.teacher) must be [B, T, H] over the same positions")
                }
                try validateMask(loss: "featureLoss", mask: mask, rows: s.dropLast().reduce(1, *))
            }
        }
        guard !map.pairs.isEmpty else { return Tensor(scalar: 0) }
        var total: Tensor? = nil
        for (k, pair) in map.pairs.enumerated() {
            var hs = countedRows(student[pair.student], mask: mask)                        // (count, H_s)
            if let project { hs = project(hs, k) }                                           // (count, H_t)
            let ht = withoutGradients { countedRows(teacher[pair.teacher].detached(), mask: mask) }
            lossValidated {
                guard hs.shape == ht.shape else {
                    throw DistillationLossError.shapeMismatch(
                        loss: "featureLoss", shapes: [hs.shape, ht.shape],
                        reason: "projected student layer \(pair.student) and teacher layer \(pair.teacher) differ in width")
                }
            }
            let count = hs.shape[0], width = hs.shape[1]
            if count == 0 { continue }
            let term: Tensor
            switch distance {
            case .mse:
                term = (hs - ht).square().sum() * (1 / Float(count * width))
            case .cosine:
                let dot = (hs * ht).sum(axis: -1)                                            // (count)
                let ns = hs.square().sum(axis: -1)
                let nt = withoutGradients { ht.square().sum(axis: -1) }
                let cos = dot * (ns * nt + Float(1e-16)).rsqrt()
                term = 1 - cos.sum() * (1 / Float(count))
            }
            total = total.map { $0 + term } ?? term
        }
        return (total ?? Tensor(scalar: 0)) * (1 / Float(map.pairs.count))
    }

    /// Checks the inputs of `feature`: every mapped layer exists, student states share one shape
    /// `[…, H_s]` and teacher states `[…, H_t]` with the same leading dimensions, the projector
    /// (weight shapes `[H_t, H_s]`, one per pair) fits, or H_s = H_t without one, and the mask
    /// covers the positions.
    public static func validateFeatures(student: [[Int]], teacher: [[Int]], map: LayerMap, projector: [[Int]]?,
                                        mask: LossMask?) throws {
        let loss = "featureLoss"
        try map.validate(studentLayers: student.count, teacherLayers: teacher.count, loss: loss)
        for pair in map.pairs {
            let s = student[pair.student], t = teacher[pair.teacher]
            guard s.count >= 2, t.count >= 2, s.dropLast() == t.dropLast() else {
                throw DistillationLossError.shapeMismatch(
                    loss: loss, shapes: [s, t],
                    reason: "student layer \(pair.student) and teacher layer \(pair.teacher) must be [B, T, H] over the same positions")
            }
            try validateMask(loss: loss, mask: mask, rows: s.dropLast().reduce(1, *))
        }
        guard let first = map.pairs.first else { return }
        let hs = student[first.student].last!, ht = teacher[first.teacher].last!
        for pair in map.pairs where student[pair.student].last != hs || teacher[pair.teacher].last != ht {
            throw DistillationLossError.shapeMismatch(loss: loss, shapes: [student[pair.student], teacher[pair.teacher]],
                                                      reason: "hidden widths differ between mapped layers")
        }
        if let projector {
            guard projector.count == map.pairs.count else {
                throw DistillationLossError.invalidArgument(loss: loss, reason: "\(projector.count) projections for \(map.pairs.count) layer pairs")
            }
            for w in projector where w != [ht, hs] {
                throw DistillationLossError.shapeMismatch(loss: loss, shapes: [w, [ht, hs]],
                                                          reason: "projection weight must be [teacher width, student width]")
            }
        } else if hs != ht {
            throw DistillationLossError.shapeMismatch(loss: loss, shapes: [student[first.student], teacher[first.teacher]],
                                                      reason: "student width \(hs) differs from teacher width \(ht): a FeatureProjector is needed")
        }
    }
}
