import Foundation

/// What `report.json` holds and `report.html` shows: the evaluated models side by side, the
/// training curves of a run, attention maps. Every part is optional so that `distill eval`
/// (models, no run) and `distill report RUN_DIR` (a run, maybe no models) share it.
public struct EvalReport: Codable, Sendable {
    public var title: String
    public var task: String?
    /// One row per model, in the order given.
    public var models: [ModelEvaluation]
    /// Training and validation losses of a run (`metrics.jsonl`).
    public var training: TrainingCurves?
    /// Attention maps of one layer/head for teacher and student on one example.
    public var attention: [AttentionMap]
    /// Free-form notes (e.g. the command that made the report).
    public var notes: [String]

    public init(title: String, task: String? = nil, models: [ModelEvaluation] = [], training: TrainingCurves? = nil,
                attention: [AttentionMap] = [], notes: [String] = []) {
        self.title = title
        self.task = task
        self.models = models
        self.training = training
        self.attention = attention
        self.notes = notes
    }
}

/// Everything measured for one model.
public struct ModelEvaluation: Codable, Sendable {
    public var name: String
    public var path: String
    public var role: Role
    public var parameters: Int
    public var diskBytes: Int
    /// Task metrics by name, e.g. "accuracy", "template_compliance", "macro_f1", "bleu",
    /// "rouge1", "rouge2", "rougeL", "perplexity" (fractions 0…1 except BLEU 0…100 and perplexity).
    public var metrics: [String: Double]
    /// Agreement with the teacher (nil for the teacher itself or when no teacher was named).
    public var agreement: TeacherAgreement?
    public var speed: SpeedMeasurement?
    /// Where the model fits, from its measured speed.
    public var guidance: String?

    public enum Role: String, Codable, Sendable { case teacher, student, model }

    public init(name: String, path: String, role: Role, parameters: Int, diskBytes: Int, metrics: [String: Double] = [:],
                agreement: TeacherAgreement? = nil, speed: SpeedMeasurement? = nil, guidance: String? = nil) {
        self.name = name
        self.path = path
        self.role = role
        self.parameters = parameters
        self.diskBytes = diskBytes
        self.metrics = metrics
        self.agreement = agreement
        self.speed = speed
        self.guidance = guidance
    }
}

public struct TeacherAgreement: Codable, Sendable {
    /// Share of positions where the student's most likely next token is the teacher's.
    public var top1: Double
    /// Mean KL(teacher ‖ student) per position, nats. (Spelled `meanKl` so that the snake_case
    /// key `mean_kl` of report.json decodes back to it.)
    public var meanKl: Double
    /// Positions compared.
    public var positions: Int
    /// Share of task items where the student's answer equals the teacher's (nil for perplexity tasks).
    public var answerAgreement: Double?

    public init(top1: Double, meanKl: Double, positions: Int, answerAgreement: Double? = nil) {
        self.top1 = top1
        self.meanKl = meanKl
        self.positions = positions
        self.answerAgreement = answerAgreement
    }
}

public struct SpeedMeasurement: Codable, Sendable {
    public var threads: Int
    public var batch: Int
    public var promptTokens: Int
    public var newTokens: Int
    /// Time to first token, milliseconds (median over requests).
    public var timeToFirstTokenMs: Double
    public var promptTokensPerSecond: Double
    public var decodeTokensPerSecond: Double
    /// End-to-end latency of one request, milliseconds.
    public var latencyP50Ms: Double
    public var latencyP95Ms: Double
    /// Peak resident memory while the model was loaded and evaluated, bytes.
    public var peakResidentBytes: Int

    public init(threads: Int, batch: Int, promptTokens: Int, newTokens: Int, timeToFirstTokenMs: Double,
                promptTokensPerSecond: Double, decodeTokensPerSecond: Double, latencyP50Ms: Double, latencyP95Ms: Double,
                peakResidentBytes: Int) {
        self.threads = threads
        self.batch = batch
        self.promptTokens = promptTokens
        self.newTokens = newTokens
        self.timeToFirstTokenMs = timeToFirstTokenMs
        self.promptTokensPerSecond = promptTokensPerSecond
        self.decodeTokensPerSecond = decodeTokensPerSecond
        self.latencyP50Ms = latencyP50Ms
        self.latencyP95Ms = latencyP95Ms
        self.peakResidentBytes = peakResidentBytes
    }
}

/// Losses of a training run by step, with the phases of a staged schedule.
public struct TrainingCurves: Codable, Sendable {
    public struct Point: Codable, Sendable {
        public var step: Int
        public var value: Double
        public init(step: Int, value: Double) { self.step = step; self.value = value }
    }
    public struct Phase: Codable, Sendable {
        public var name: String
        /// First step of the phase (1-based, as logged).
        public var startStep: Int
        public init(name: String, startStep: Int) { self.name = name; self.startStep = startStep }
    }
    public var train: [Point]
    public var validation: [Point]
    public var phases: [Phase]

    public init(train: [Point], validation: [Point] = [], phases: [Phase] = []) {
        self.train = train
        self.validation = validation
        self.phases = phases
    }
}

/// Attention probabilities of one head: `weights[i][j]` = how much query position i attends to key j.
public struct AttentionMap: Codable, Sendable {
    public var model: String
    public var layer: Int
    public var head: Int
    public var tokens: [String]
    public var weights: [[Double]]

    public init(model: String, layer: Int, head: Int, tokens: [String], weights: [[Double]]) {
        self.model = model
        self.layer = layer
        self.head = head
        self.tokens = tokens
        self.weights = weights
    }
}
