import DistillEval
import Foundation

/// One metric of the current student and the candidate on one task.
public struct MetricComparison: Codable, Equatable, Sendable {
    public var task: String
    public var metric: String
    public var current: Double
    public var candidate: Double
    public var lowerIsBetter: Bool

    public init(task: String, metric: String, current: Double, candidate: Double) {
        self.task = task
        self.metric = metric
        self.current = current
        self.candidate = candidate
        self.lowerIsBetter = PipelineConfiguration.metrics[metric] ?? false
    }

    /// How much better the candidate is (negative: worse), in the metric's units.
    public var improvement: Double { lowerIsBetter ? current - candidate : candidate - current }
}

/// The gate's verdict on a candidate.
public struct GateResult: Codable, Equatable, Sendable {
    public var promote: Bool
    public var reasons: [String]
    public var task: MetricComparison?
    public var noRegression: MetricComparison?
    public var margin: Double
    public var tolerance: Double

    /// The rule: the candidate beats the current student on the gate task by at least `margin`
    /// (and by something when the margin is 0), and the second task does not get worse by more
    /// than `tolerance`. Every failed condition is a reason.
    public static func decide(task: MetricComparison, noRegression: MetricComparison?, margin: Double, tolerance: Double) -> GateResult {
        func show(_ c: MetricComparison) -> String {
            "\(c.metric) on \(c.task): candidate \(fmt(c.candidate)) vs current \(fmt(c.current))"
        }
        let beats = task.improvement >= margin && task.improvement > 0
        let holds = noRegression.map { -$0.improvement <= tolerance } ?? true
        var reasons: [String] = []
        if !beats { reasons.append("\(show(task)) — " + (margin > 0 ? "needs to be \(fmt(margin)) better" : "needs to be better")) }
        if let r = noRegression, !holds { reasons.append("\(show(r)) — regressed by \(fmt(-r.improvement)) (tolerance \(fmt(tolerance)))") }
        if beats && holds {
            reasons.append("\(show(task)): better by \(fmt(task.improvement))" + (noRegression.map { "; \(show($0)): within tolerance" } ?? ""))
        }
        return GateResult(promote: beats && holds, reasons: reasons, task: task, noRegression: noRegression, margin: margin, tolerance: tolerance)
    }

    /// A refusal without a comparison (nothing to train on).
    public static func refuse(_ reason: String) -> GateResult {
        GateResult(promote: false, reasons: [reason], task: nil, noRegression: nil, margin: 0, tolerance: 0)
    }

    static func fmt(_ v: Double) -> String { String(format: "%.4g", v) }
}

/// Evaluates the current student and a candidate on the gate's tasks.
enum GateEvaluation {
    /// The metric a task is judged by when the pipeline names none.
    static func defaultMetric(_ task: EvalTask) -> String {
        switch task {
        case .reasoning, .classification: return "accuracy"
        case .generation: return "bleu"
        case .languageModeling: return "perplexity"
        }
    }

    /// The metrics `distill eval` reports for a task's kind.
    static func metrics(_ task: EvalTask) -> [String] {
        switch task {
        case .reasoning: return ["accuracy", "template_compliance", "reasoning_success"]
        case .classification: return ["accuracy", "macro_f1"]
        case .generation: return ["bleu", "rouge1", "rouge2", "rougeL"]
        case .languageModeling: return ["perplexity"]
        }
    }

    static func compare(_ spec: PipelineConfiguration.GateTask, current: String, candidate: String,
                        gate: PipelineConfiguration.Gate) throws -> MetricComparison {
        let task = try EvalTask.load(spec.task, limit: spec.limit)
        let metric = spec.metric ?? defaultMetric(task)
        var o = EvalOptions()
        o.measureSpeed = false
        o.maxTokens = gate.maxTokens
        o.batchSize = gate.batchSize
        let name = URL(fileURLWithPath: spec.task).lastPathComponent
        let report = try Evaluator.run(models: [ModelSpec(name: "current", path: current), ModelSpec(name: "candidate", path: candidate)],
                                       task: task, taskName: name, options: o)
        func value(_ i: Int) throws -> Double {
            guard let v = report.models[i].metrics[metric] else {
                throw PipelineError.invalid("gate: the task \(spec.task) (\(task.kind)) has no metric \(metric); it has \(report.models[i].metrics.keys.sorted().joined(separator: ", "))")
            }
            return v
        }
        return MetricComparison(task: name, metric: metric, current: try value(0), candidate: try value(1))
    }
}
