import DistillTensor

/// Weights of the distillation objective α·L_soft + β·L_feature + γ·L_attention.
///
/// The defaults, 0.5 / 0.3 / 0.2, are for all three terms on. `defaults(…)` gives them renormalised
/// over the terms that are on, so the weights always sum to 1 (soft + feature → 0.625 / 0.375;
/// one term alone → 1).
public struct LossWeights: Equatable, Codable, Sendable {
    public var soft: Float
    public var feature: Float
    public var attention: Float

    public init(soft: Float = 0.5, feature: Float = 0.3, attention: Float = 0.2) {
        self.soft = soft
        self.feature = feature
        self.attention = attention
    }

    /// The default weights over the enabled terms, renormalised to sum to 1 (a disabled term
    /// gets 0).
    public static func defaults(soft: Bool = true, feature: Bool = true, attention: Bool = true) -> LossWeights {
        let base = LossWeights()
        let s = soft ? base.soft : 0, f = feature ? base.feature : 0, a = attention ? base.attention : 0
        let total = s + f + a
        guard total > 0 else { return LossWeights(soft: 0, feature: 0, attention: 0) }
        return LossWeights(soft: s / total, feature: f / total, attention: a / total)
    }

    /// α·soft + β·feature + γ·attention over the terms given (nil terms are left out, with no
    /// renormalisation — pick the weights with `defaults(…)` for that). Traps when no term is given.
    public func total(soft s: Tensor? = nil, feature f: Tensor? = nil, attention a: Tensor? = nil) -> Tensor {
        let terms = [(s, soft), (f, feature), (a, attention)].compactMap { t, w in t.map { ($0, w) } }
        precondition(!terms.isEmpty, "LossWeights.total: no loss term given")
        for (t, _) in terms {
            precondition(t.count == 1, "LossWeights.total: loss terms must be scalars, got shape \(t.shape)")
        }
        var sum = terms[0].0 * terms[0].1
        for (t, w) in terms.dropFirst() { sum = sum + t * w }
        return sum
    }
}
