/// What one training step optimises: which parameters train, the weight of each loss term and
/// the temperature. The loss is
///
///     soft·D(student, teacher; τ) + hard·CE + feature·L_feature + attention·L_attention
///
/// where a term of weight 0 is not computed (and needs no teacher).
public struct StepPlan {
    /// Which parameters (dotted names; feature projections as `projector.…`) train this step;
    /// nil leaves the frozen/trainable state of every parameter as it is.
    public var trainable: ((String) -> Bool)?
    public var soft: Float
    public var hard: Float
    public var feature: Float
    public var attention: Float
    public var temperature: Float

    public init(trainable: ((String) -> Bool)? = nil, soft: Float = 0, hard: Float = 1, feature: Float = 0,
                attention: Float = 0, temperature: Float = 1) {
        self.trainable = trainable
        self.soft = soft
        self.hard = hard
        self.feature = feature
        self.attention = attention
        self.temperature = temperature
    }

    /// Whether the step needs the teacher's outputs.
    public var needsTeacher: Bool { soft != 0 || feature != 0 || attention != 0 }
}

/// The training objective as a function of the step (0-based): a `StepPlan` per step.
public struct TrainingPlan {
    public let plan: (Int) -> StepPlan

    public init(_ plan: @escaping (Int) -> StepPlan) { self.plan = plan }

    public func callAsFunction(_ step: Int) -> StepPlan { plan(step) }

    /// Hard-label cross-entropy only (plain fine-tuning; no teacher).
    public static var hardOnly: TrainingPlan { TrainingPlan { _ in StepPlan() } }

    /// Knowledge distillation α·soft(τ) + (1 − α)·hard, with optional constant feature and
    /// attention terms added.
    public static func kd(alpha: Float, temperature: Float, feature: Float = 0, attention: Float = 0) -> TrainingPlan {
        TrainingPlan { _ in
            StepPlan(soft: alpha, hard: 1 - alpha, feature: feature, attention: attention, temperature: temperature)
        }
    }

    /// KD with α following a ramp (e.g. 0.3 → 0.7): α·soft(τ) + (1 − α)·hard, with optional
    /// constant feature and attention terms added.
    public static func kd(alpha: LinearRamp, temperature: Float, feature: Float = 0, attention: Float = 0) -> TrainingPlan {
        TrainingPlan { step in
            let a = alpha.value(at: step)
            return StepPlan(soft: a, hard: 1 - a, feature: feature, attention: attention, temperature: temperature)
        }
    }

    /// The three-phase progressive schedule.
    public static func progressive(_ schedule: ProgressiveSchedule) -> TrainingPlan {
        TrainingPlan { schedule.plan(at: $0) }
    }
}

/// A value moving linearly from `start` (step 0) to `end` (step `steps − 1`), constant after:
/// start + (end − start) · min(1, step / (steps − 1)). E.g. a KD weight 0.3 → 0.7.
public struct LinearRamp: Codable, Equatable, Sendable {
    public var start: Float
    public var end: Float
    public var steps: Int

    public init(from start: Float, to end: Float, over steps: Int) {
        self.start = start
        self.end = end
        self.steps = steps
    }

    public func value(at step: Int) -> Float {
        let progress = Swift.min(1, Float(Swift.max(0, step)) / Float(Swift.max(1, steps - 1)))
        return start + (end - start) * progress
    }
}

/// The three-phase progressive distillation schedule:
///
/// 1. warm-up (first `warmupFraction`, 20 %): only the output head, final norm and feature
///    projections train (`isHead`); soft + hard loss at temperature `temperature`;
/// 2. feature alignment (next `alignmentFraction`, 50 %): every parameter trains; the feature
///    loss is on (weight `featureWeight`) beside soft + hard;
/// 3. refinement (the rest, 30 %): the full loss (soft, hard, feature, attention) with τ annealed
///    linearly from `temperature` at the phase's first step to 1 at the last step (`totalSteps − 1`).
///
/// Phase boundaries: warm-up is steps `0 ..< w`, w = round(warmupFraction · total); alignment
/// `w ..< w + a`, a = round(alignmentFraction · total); refinement the remaining steps.
public struct ProgressiveSchedule {
    public enum Phase: String, Codable, Sendable { case warmup, featureAlignment, refinement }

    public var totalSteps: Int
    public var warmupFraction: Double
    public var alignmentFraction: Double
    /// α: soft weight (hard = 1 − α).
    public var alpha: Float
    public var temperature: Float
    public var featureWeight: Float
    public var attentionWeight: Float
    /// Parameters that train during warm-up.
    public var isHead: (String) -> Bool

    /// Head names by default: `lm_head`, `model.norm`, `model.embed_tokens` (the head of models
    /// with tied embeddings) and `projector.` (feature projections).
    public static let defaultHead: (String) -> Bool = { name in
        ["lm_head.", "model.norm.", "model.embed_tokens.", "projector."].contains { name.hasPrefix($0) }
    }

    public init(totalSteps: Int, warmupFraction: Double = 0.2, alignmentFraction: Double = 0.5, alpha: Float = 0.5,
                temperature: Float = 2, featureWeight: Float = 0.3, attentionWeight: Float = 0.2,
                isHead: @escaping (String) -> Bool = ProgressiveSchedule.defaultHead) {
        precondition(warmupFraction >= 0 && alignmentFraction >= 0 && warmupFraction + alignmentFraction <= 1,
                     "ProgressiveSchedule: phase fractions \(warmupFraction) + \(alignmentFraction) exceed 1")
        self.totalSteps = totalSteps
        self.warmupFraction = warmupFraction
        self.alignmentFraction = alignmentFraction
        self.alpha = alpha
        self.temperature = temperature
        self.featureWeight = featureWeight
        self.attentionWeight = attentionWeight
        self.isHead = isHead
    }

    /// First step of the alignment and of the refinement phase.
    public var boundaries: (alignment: Int, refinement: Int) {
        let w = Int((warmupFraction * Double(totalSteps)).rounded())
        let a = Int((alignmentFraction * Double(totalSteps)).rounded())
        return (w, Swift.min(totalSteps, w + a))
    }

    public func phase(at step: Int) -> Phase {
        let b = boundaries
        return step < b.alignment ? .warmup : step < b.refinement ? .featureAlignment : .refinement
    }

    /// Temperature at `step`: `temperature` before refinement; in refinement
    /// τ₀ + (1 − τ₀) · (step − r) / (totalSteps − 1 − r), r the first refinement step.
    public func temperature(at step: Int) -> Float {
        let r = boundaries.refinement
        guard step >= r else { return temperature }
        let progress = Swift.min(1, Float(step - r) / Float(Swift.max(1, totalSteps - 1 - r)))
        return temperature + (1 - temperature) * progress
    }

    public func plan(at step: Int) -> StepPlan {
        let tau = temperature(at: step)
        switch phase(at: step) {
        case .warmup:
            return StepPlan(trainable: isHead, soft: alpha, hard: 1 - alpha, temperature: tau)
        case .featureAlignment:
            return StepPlan(trainable: { _ in true }, soft: alpha, hard: 1 - alpha, feature: featureWeight, temperature: tau)
        case .refinement:
            return StepPlan(trainable: { _ in true }, soft: alpha, hard: 1 - alpha, feature: featureWeight,
                            attention: attentionWeight, temperature: tau)
        }
    }
}
