import DistillNN
import DistillTensor
import Foundation

/// Settings of a training run. Everything random derives from `seed` and `order`.
public struct TrainerConfiguration {
    /// Optimizer steps of the whole run.
    public var totalSteps: Int
    /// Sequences per micro-batch.
    public var batchSize: Int
    /// Micro-batches averaged into one optimizer step.
    public var accumulationSteps: Int
    public var layout: BatchLayout
    public var order: DataOrder
    public var learningRate: LearningRateSchedule
    public var weightDecay: Float
    public var beta1: Float
    public var beta2: Float
    public var eps: Float
    /// Global gradient-norm limit; nil = no clipping (the norm is still measured and logged).
    public var maxGradNorm: Float?
    /// The soft term's divergence.
    public var divergence: LogitDivergence
    /// Student ↔ teacher layers of the feature term (needed when a plan gives it weight).
    public var featureMap: LayerMap?
    public var featureDistance: FeatureDistance
    /// Student ↔ teacher layers of the attention term (needed when a plan gives it weight).
    public var attentionMap: LayerMap?
    public var attentionDistance: AttentionDistance
    /// Evaluate on the held-out set after every `evalEvery` steps (nil: never).
    public var evalEvery: Int?
    public var evalBatchSize: Int
    /// Save a checkpoint into `checkpointDirectory` after every `checkpointEvery` steps and at the end.
    public var checkpointEvery: Int?
    public var checkpointDirectory: URL?
    /// JSON-lines metrics file (one line per step), if any.
    public var metricsLog: URL?
    /// Seed of the trainer's random generator (curriculum sampling).
    public var seed: UInt64
    /// Label smoothing ε of the hard (cross-entropy) term.
    public var labelSmoothing: Float = 0
    /// Positions per chunk of the soft and hard terms fused with the output projection
    /// (`DistillationLoss.fusedLinearLoss`): no `[positions × vocab]` logits are held for student
    /// or teacher, whatever the batch. nil: plain logits (faster for small vocabularies).
    public var lossChunkSize: Int? = nil
    /// On-policy distillation on a share of the steps (needs a teacher model in memory); nil: off.
    public var onPolicy: OnPolicyDistillation? = nil
    /// Rows of every micro-batch taken from the trainer's replay set (knowledge replay); the rest
    /// come from the training set. 0: no replay.
    public var replayRows: Int = 0
    /// Adversarial training on the input embeddings (FGM or PGD); nil: off.
    public var adversarial: AdversarialTraining? = nil
    /// The attention term compares only the K teacher heads of lowest attention entropy per
    /// layer (`DistillationLoss.attentionTransfer(topKTeacherHeads:)`); nil: every head.
    public var attentionTopK: Int? = nil
    /// Data-parallel training over an MPI job: a step's `accumulationSteps` micro-batches are
    /// shared out among the processes (micro-batch a runs on rank a mod size), their gradients
    /// summed with all-reduce; every process then takes the same optimizer step. The data order,
    /// the global batch and so the result equal the single-process run's. Rank 0 writes the
    /// checkpoints (every rank reads them on resume). nil: one process.
    public var processGroup: ProcessGroup? = nil

    public init(totalSteps: Int, batchSize: Int, accumulationSteps: Int = 1, layout: BatchLayout = .padToLongest(padId: 0),
                order: DataOrder = .shuffled(seed: 0), learningRate: LearningRateSchedule = .constant(1e-3),
                weightDecay: Float = 0.01, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                maxGradNorm: Float? = 1, divergence: LogitDivergence = .forwardKL,
                featureMap: LayerMap? = nil, featureDistance: FeatureDistance = .mse,
                attentionMap: LayerMap? = nil, attentionDistance: AttentionDistance = .kl,
                evalEvery: Int? = nil, evalBatchSize: Int = 16, checkpointEvery: Int? = nil, checkpointDirectory: URL? = nil,
                metricsLog: URL? = nil, seed: UInt64 = 0) {
        self.totalSteps = totalSteps
        self.batchSize = batchSize
        self.accumulationSteps = accumulationSteps
        self.layout = layout
        self.order = order
        self.learningRate = learningRate
        self.weightDecay = weightDecay
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.maxGradNorm = maxGradNorm
        self.divergence = divergence
        self.featureMap = featureMap
        self.featureDistance = featureDistance
        self.attentionMap = attentionMap
        self.attentionDistance = attentionDistance
        self.evalEvery = evalEvery
        self.evalBatchSize = evalBatchSize
        self.checkpointEvery = checkpointEvery
        self.checkpointDirectory = checkpointDirectory
        self.metricsLog = metricsLog
        self.seed = seed
    }
}

/// Progress of a training run, handed to `Trainer.onEvent`.
public enum TrainingEvent {
    case started(step: Int, totalSteps: Int, resumedFrom: URL?)
    case step(StepMetrics)
    case evaluated(step: Int, loss: Float)
    case checkpointSaved(step: Int, url: URL)
    case finished(step: Int)
}

/// The loss of one batch, split into its terms (unweighted; nil when the term is off).
public struct LossParts {
    public var total: Tensor
    public var soft: Float?
    public var hard: Float?
    public var feature: Float?
    public var attention: Float?
    /// The loss with the input embeddings perturbed (adversarial training), when on.
    public var adversarial: Float? = nil
}

/// Trains a student `TransformerLM` on token sequences: hard-label fine-tuning, or knowledge
/// distillation from a teacher run without gradients, with the objective, trainable parameters
/// and temperature given per step by a `TrainingPlan`.
///
/// One optimizer step = `accumulationSteps` micro-batches of `batchSize` sequences (gradients
/// averaged) → global-norm clipping → NaN/inf check (throws `TrainerError.nonFiniteLoss`) → AdamW
/// with the scheduled learning rate. Checkpoints (`Checkpoint`) hold everything needed to
/// continue bit-exactly: weights, AdamW moments and step, data position, random state.
///
///     let trainer = Trainer(student: s, teacher: t, train: seqs, eval: held, plan: .kd(alpha: 0.5, temperature: 2),
///                           configuration: cfg)
///     trainer.onEvent = { event in … }
///     try trainer.resumeFromLatestCheckpoint()   // no-op on a fresh run
///     try trainer.run()
public final class Trainer {
    public let student: TransformerLM
    /// The teacher, asked about each batch through `Teacher.outputs(for:request:)`: a model in
    /// memory (`LocalTeacher`: full logits, hidden states and attentions, run on the batch as laid
    /// out, without gradients), a logit cache or a server's top-k log-probabilities
    /// (`CachedTeacher`: the soft term only, at the temperature they were captured at; vocabulary
    /// aligned with `Teacher.aligned`), or a model with another tokenizer (`CrossTokenizerTeacher`:
    /// the soft term through its cross-tokenizer loss).
    public let teacher: (any Teacher)?
    /// Projections of student hidden states to the teacher's width for the feature term
    /// (parameters named `projector.…`); trained with the student.
    public let projector: FeatureProjector?
    public let trainSet: [TokenSequence]
    public let evalSet: [TokenSequence]
    /// Earlier data mixed into every micro-batch (`configuration.replayRows` rows), visited in its
    /// own shuffled order.
    public let replaySet: [TokenSequence]
    public private(set) var replayData: DataPosition?
    public let plan: TrainingPlan
    public let configuration: TrainerConfiguration
    public let optimizer: AdamW
    /// Optimizer steps done.
    public private(set) var step = 0
    public private(set) var data: DataPosition
    public internal(set) var rng: RandomGenerator
    /// The checkpoint this trainer resumed from, if any.
    public private(set) var resumedFrom: URL?
    /// Receives progress events; the library never prints.
    public var onEvent: (TrainingEvent) -> Void = { _ in }

    public init(student: TransformerLM, teacher: (any Teacher)? = nil, projector: FeatureProjector? = nil,
                train: [TokenSequence], eval: [TokenSequence] = [], replay: [TokenSequence] = [], plan: TrainingPlan,
                configuration c: TrainerConfiguration) {
        self.student = student
        self.teacher = teacher
        self.projector = projector
        self.trainSet = train
        self.evalSet = eval
        self.replaySet = replay
        replayData = c.replayRows > 0 && !replay.isEmpty ? DataPosition.start(count: replay.count, order: Self.replayOrder(c)) : nil
        self.plan = plan
        self.configuration = c
        optimizer = AdamW(learningRate: c.learningRate.learningRate(at: 0), beta1: c.beta1, beta2: c.beta2, eps: c.eps,
                          weightDecay: c.weightDecay)
        data = DataPosition.start(count: train.count, order: c.order)
        rng = RandomGenerator(seed: c.seed)
    }

    /// A teacher model in memory (as a `LocalTeacher`).
    public convenience init(student: TransformerLM, teacher: TransformerLM?, projector: FeatureProjector? = nil,
                            train: [TokenSequence], eval: [TokenSequence] = [], plan: TrainingPlan,
                            configuration c: TrainerConfiguration) {
        self.init(student: student, teacher: teacher.map { LocalTeacher(lm: $0) } as (any Teacher)?, projector: projector,
                  train: train, eval: eval, plan: plan, configuration: c)
    }

    // MARK: Checkpoints

    /// The current state, as a checkpoint stores it.
    public var state: TrainerState {
        var s = TrainerState(step: step, optimizerStep: optimizer.step, data: data, rng: rng, learningRate: optimizer.learningRate)
        s.replayData = replayData
        let generators = DecoderDropout.generators(of: student)
        s.dropout = generators.isEmpty ? nil : generators
        return s
    }

    /// The replay set's order: shuffled with a seed of its own.
    static func replayOrder(_ c: TrainerConfiguration) -> DataOrder { .shuffled(seed: c.seed &+ 0x5245_504c_4159) }

    /// Saves a checkpoint into `configuration.checkpointDirectory`.
    @discardableResult
    public func saveCheckpoint() throws -> URL {
        guard let dir = configuration.checkpointDirectory else {
            throw TrainerError.invalidConfiguration("no checkpoint directory")
        }
        let url = try Checkpoint.save(in: dir, model: student, projector: projector, optimizer: optimizer, state: state)
        onEvent(.checkpointSaved(step: step, url: url))
        return url
    }

    /// Continues from a checkpoint: weights, optimizer, step, data position, random state. Lines
    /// of the metrics log after the checkpoint's step are dropped (they will be redone).
    public func resume(from url: URL) throws {
        let s = try Checkpoint.load(from: url, model: student, projector: projector, optimizer: optimizer)
        step = s.step
        data = s.data
        rng = s.rng
        if replayData != nil {
            guard let r = s.replayData else {
                throw TrainerError.badCheckpoint(path: url.path, reason: "it was written without replay, and this run replays data")
            }
            replayData = r
        }
        if let saved = s.dropout {
            do { try DecoderDropout.restore(saved, in: student) } catch { throw TrainerError.badCheckpoint(path: url.path, reason: "\(error)") }
        }
        resumedFrom = url
        if let log = configuration.metricsLog { try MetricsLog(url: log).truncate(afterStep: step) }
    }

    /// Resumes from the newest checkpoint in the checkpoint directory; returns it, or nil when
    /// there is none (a fresh run).
    @discardableResult
    public func resumeFromLatestCheckpoint() throws -> URL? {
        guard let dir = configuration.checkpointDirectory, let url = Checkpoint.latest(in: dir) else { return nil }
        try resume(from: url)
        return url
    }

    // MARK: Training

    /// Trains until `configuration.totalSteps` (or `until`, if smaller) steps are done.
    public func run(until: Int? = nil) throws {
        try validate()
        let end = Swift.min(until ?? configuration.totalSteps, configuration.totalSteps)
        onEvent(.started(step: step, totalSteps: configuration.totalSteps, resumedFrom: resumedFrom))
        while step < end { _ = try trainStep() }
        if let every = configuration.checkpointEvery, configuration.checkpointDirectory != nil,
           step == configuration.totalSteps, step % every != 0, writesCheckpoints {
            try saveCheckpoint()
        }
        onEvent(.finished(step: step))
    }

    /// Checks the configuration and data; throws `TrainerError.invalidConfiguration` naming the problem.
    public func validate() throws {
        let c = configuration
        func fail(_ r: String) throws -> Never { throw TrainerError.invalidConfiguration(r) }
        if c.totalSteps < 0 { try fail("totalSteps \(c.totalSteps) is negative") }
        if c.batchSize < 1 { try fail("batchSize \(c.batchSize) must be at least 1") }
        if c.accumulationSteps < 1 { try fail("accumulationSteps \(c.accumulationSteps) must be at least 1") }
        if trainSet.isEmpty || trainSet.allSatisfy({ $0.ids.isEmpty }) { try fail("no training sequence") }
        let v = student.config.vocabSize
        for (i, s) in (trainSet + evalSet).enumerated() {
            if let bad = s.ids.first(where: { $0 < 0 || $0 >= v }) {
                try fail("sequence \(i) (training set, then held-out set) holds token \(bad) outside the vocabulary 0..<\(v)")
            }
        }
        if let teacher, teacher.vocabularySize != v {
            try fail("teacher vocabulary \(teacher.vocabularySize) differs from the student's \(v) (align it with Teacher.aligned, or use a CrossTokenizerTeacher)")
        }
        if let k = c.lossChunkSize, k < 1 { try fail("lossChunkSize \(k) must be at least 1") }
        if c.replayRows < 0 || c.replayRows >= c.batchSize {
            try fail("replayRows \(c.replayRows) must be in 0..<batchSize (\(c.batchSize))")
        }
        if c.replayRows > 0 {
            if replaySet.isEmpty || replaySet.allSatisfy({ $0.ids.isEmpty }) { try fail("replayRows \(c.replayRows) but no replay sequence") }
            if let bad = replaySet.enumerated().first(where: { $0.element.ids.contains { $0 < 0 || $0 >= v } }) {
                try fail("replay sequence \(bad.offset) holds a token outside the vocabulary 0..<\(v)")
            }
            if teacher != nil && !(teacher!.scoresAnySequence) {
                try fail("replay needs a teacher model in memory or none (a logit cache holds only the training sequences)")
            }
        }
        if let a = c.adversarial { try a.validate() }
        if let op = c.onPolicy {
            try op.validate()
            if op.fraction > 0 && !(teacher?.scoresAnySequence ?? false) {
                try fail("on-policy distillation needs a teacher model in memory (a logit cache holds only the training sequences)")
            }
        }
        if case let .packed(rowLength, _) = c.layout, rowLength < 2 { try fail("packed rowLength \(rowLength) must be at least 2") }
        if let g = c.processGroup {
            if c.accumulationSteps % g.size != 0 {
                try fail("\(g.size) processes share each step's \(c.accumulationSteps) micro-batches (gradient accumulation): it must be a multiple of the number of processes")
            }
            if (c.onPolicy?.fraction ?? 0) > 0 { try fail("on-policy distillation does not run over several processes yet") }
        }
    }

    /// Whether this process writes checkpoints (rank 0 of a job, or a single process).
    var writesCheckpoints: Bool { configuration.processGroup?.isMain ?? true }

    /// Throws when step plan `p` asks for something the trainer was not given.
    func check(_ p: StepPlan) throws {
        if p.soft != 0 && teacher == nil {
            throw TrainerError.invalidConfiguration("step \(step + 1) needs a teacher (soft weight ≠ 0)")
        }
        if (p.feature != 0 || p.attention != 0) && !(teacher?.hasHiddenStates ?? false) {
            throw TrainerError.invalidConfiguration(
                "step \(step + 1) needs a teacher model in memory (feature or attention weight ≠ 0; a logit cache or server gives only log-probabilities)")
        }
        if p.soft != 0, let source = teacher, let tau = source.logprobTemperature {
            if p.temperature != tau {
                throw TrainerError.invalidConfiguration(
                    "step \(step + 1) runs the soft term at temperature \(p.temperature), but the teacher's log-probabilities were taken at \(tau) (top-k log-probabilities cannot be re-tempered: use temperature \(tau), or a teacher model)")
            }
            if configuration.divergence != .forwardKL && source.crossTokenizerLoss == nil {
                throw TrainerError.invalidConfiguration(
                    "a top-k teacher (logit cache or server) supports only the forward KL divergence, not \(configuration.divergence)")
            }
        }
        if p.feature != 0 && configuration.featureMap == nil {
            throw TrainerError.invalidConfiguration("step \(step + 1) has a feature weight but no featureMap is configured")
        }
        if p.attention != 0 && configuration.attentionMap == nil {
            throw TrainerError.invalidConfiguration("step \(step + 1) has an attention weight but no attentionMap is configured")
        }
        if p.soft != 0 { try DistillationLoss.validateTemperature(loss: "Trainer", p.temperature) }
    }

    /// Parameters that train under `p` (student names, then `projector.…`), applying its predicate.
    func trainableParameters(_ p: StepPlan) -> [(name: String, parameter: Parameter)] {
        var all = student.namedParameters()
        if let projector { all += projector.namedParameters().map { ("projector." + $0.name, $0.parameter) } }
        if let trainable = p.trainable {
            for (name, param) in all {
                let on = trainable(name)
                if on && param.isFrozen { param.unfreeze() } else if !on && !param.isFrozen { param.freeze() }
            }
        }
        return all.filter { !$0.parameter.isFrozen }
    }

    /// One optimizer step. Throws `TrainerError.nonFiniteLoss` (before updating) when the loss or
    /// the gradient norm is NaN or infinite.
    @discardableResult
    public func trainStep() throws -> StepMetrics {
        let c = configuration
        let p = plan(step)
        try check(p)
        let params = trainableParameters(p)
        guard !params.isEmpty else { throw TrainerError.invalidConfiguration("step \(step + 1): no trainable parameter") }
        let start = Date()
        var acc = GradientAccumulator()
        var sums = [Float](repeating: 0, count: 6)      // total, soft, hard, feature, attention, adversarial
        var tokens = 0
        let group = c.processGroup
        let micro = Swift.max(1, c.accumulationSteps)
        var reduced: [Tensor]?
        for a in 0..<micro {
            var rows = nextMicroBatchRows(), rowPlan = p
            // Every process draws every micro-batch (the data position stays the same everywhere)
            // and computes its own share.
            if let group, a % group.size != group.rank { continue }
            if let own = try onPolicyBatch(rows, plan: p) { (rows, rowPlan) = own }
            let batch = Batch.make(rows, layout: c.layout)
            tokens += batch.ids.count
            let parts: LossParts, g: [Tensor]
            if let adv = c.adversarial {
                (parts, g, _) = try adversarialGradients(batch, plan: rowPlan, parameters: params.map { $0.parameter.value }, adv)
            } else if let group, a + group.size >= micro {
                // This process's last micro-batch of the step: the sums start travelling while
                // the backward pass goes on.
                parts = try loss(batch, plan: rowPlan)
                let overlap = OverlappedGradientSum(group: group, prior: acc.sum, shapes: params.map { $0.parameter.value.shape })
                _ = gradients(of: parts.total, wrt: params.map { $0.parameter.value }, onReady: overlap.ready)
                reduced = try overlap.finish()
                g = []
            } else {
                parts = try loss(batch, plan: rowPlan)
                g = gradients(of: parts.total, wrt: params.map { $0.parameter.value })
            }
            if reduced == nil { acc.add(Gradients(names: params.map(\.name), tensors: g)) }
            sums[0] += parts.total.item
            sums[1] += parts.soft ?? 0
            sums[2] += parts.hard ?? 0
            sums[3] += parts.feature ?? 0
            sums[4] += parts.attention ?? 0
            sums[5] += parts.adversarial ?? 0
        }
        let n = Float(Swift.max(1, c.accumulationSteps))
        let grads: Gradients
        if let group {
            let summed = try reduced ?? GradientReduction.sum(acc, over: group)
            grads = GradientReduction.mean(summed, names: params.map(\.name), microBatches: micro)
            try GradientReduction.sum(&sums, tokens: &tokens, over: group)
        } else {
            grads = acc.average()!
        }
        // Clipping's coefficient goes into the optimizer's update (one pass over the gradients fewer).
        let norm = globalNorm(grads)
        let lossValue = sums[0] / n
        guard lossValue.isFinite, norm.isFinite else {
            throw TrainerError.nonFiniteLoss(step: step + 1, loss: lossValue, gradNorm: norm)
        }
        let lr = c.learningRate.learningRate(at: step)
        optimizer.learningRate = lr
        optimizer.update(params, gradients: grads, scale: clipCoefficient(norm: norm, maxNorm: c.maxGradNorm ?? .infinity))
        step += 1
        let secs = Date().timeIntervalSince(start)
        var m = StepMetrics(step: step, loss: lossValue,
                            soft: p.soft != 0 ? sums[1] / n : nil, hard: p.hard != 0 ? sums[2] / n : nil,
                            feature: p.feature != 0 ? sums[3] / n : nil, attention: p.attention != 0 ? sums[4] / n : nil,
                            learningRate: lr, gradNorm: norm, temperature: p.temperature,
                            tokensPerSecond: secs > 0 ? Double(tokens) / secs : 0, evalLoss: nil)
        if c.adversarial != nil { m.adversarial = sums[5] / n }
        if let every = c.evalEvery, every > 0, step % every == 0, !evalSet.isEmpty {
            let e = try evaluate()
            m.evalLoss = e
            onEvent(.evaluated(step: step, loss: e))
        }
        if let log = c.metricsLog { try MetricsLog(url: log).append(m) }
        onEvent(.step(m))
        if let every = c.checkpointEvery, every > 0, c.checkpointDirectory != nil, step % every == 0, writesCheckpoints {
            try saveCheckpoint()
        }
        return m
    }

    /// The rows of the next micro-batch (advancing the data position): `batchSize − replayRows`
    /// training sequences (in the data order, or drawn by the curriculum), then `replayRows`
    /// replayed ones.
    func nextMicroBatchRows() -> [TokenSequence] {
        let c = configuration
        let fresh = c.batchSize - (replayData != nil ? c.replayRows : 0)
        let indices: [Int]
        if case .curriculum(let cur) = c.order {
            indices = cur.sample(fresh, step: step, using: &rng)
        } else {
            indices = data.next(fresh, count: trainSet.count, kind: c.order)
        }
        var rows = indices.map { trainSet[$0] }
        if replayData != nil {
            rows += replayData!.next(c.replayRows, count: replaySet.count, kind: Self.replayOrder(c)).map { replaySet[$0] }
        }
        return rows
    }

    /// The plan's loss at the current step on the held-out set, averaged over batches weighted by
    /// their counted target positions (no gradients, no state change).
    public func evaluate() throws -> Float {
        let p = plan(step)
        let size = Swift.max(1, configuration.evalBatchSize)
        var total: Double = 0, weight = 0
        try withoutGradients {
            for start in stride(from: 0, to: evalSet.count, by: size) {
                let batch = Batch.make(Array(evalSet[start..<Swift.min(evalSet.count, start + size)]), layout: configuration.layout)
                let w = batch.targetCount
                guard w > 0 else { continue }
                total += Double(try loss(batch, plan: p).total.item) * Double(w)
                weight += w
            }
        }
        return weight > 0 ? Float(total / Double(weight)) : 0
    }

    /// The weighted loss of one batch under `p` (differentiable with respect to the student and
    /// the projector). Throws when the teacher source cannot serve the batch (e.g. a sequence
    /// missing from a logit cache); traps when `p` needs a teacher or a layer map that is missing
    /// (`trainStep` checks first and throws).
    ///
    /// `embeddingOffset` [B, T, hidden] is added to the student's embedding output (adversarial
    /// training); `teacherOutputs` are used instead of asking the teacher (from
    /// `teacherOutputs(for:plan:)` on the same batch and plan).
    public func loss(_ batch: Batch, plan p: StepPlan, embeddingOffset: Tensor? = nil,
                     teacherOutputs given: TeacherBatchOutput? = nil) throws -> LossParts {
        let needFeature = p.feature != 0, needAttention = p.attention != 0
        let v = student.config.vocabSize, n = batch.batch * batch.length
        let fusedWeight = fusedProjectionWeight(p)
        let out = student.forward(batch.ids, batch: batch.batch, length: batch.length, positions: batch.positions,
                                  mask: batch.attentionMask, outputHiddenStates: needFeature, outputAttentions: needAttention,
                                  computeLogits: fusedWeight == nil, embeddingOffset: embeddingOffset)
        let mask = batch.lossMask
        let t: TeacherBatchOutput? = try given ?? teacherOutputs(for: batch, plan: p)
        var total: Tensor? = nil
        func add(_ term: Tensor, _ w: Float) { total = total.map { $0 + term * w } ?? term * w }
        var parts = LossParts(total: Tensor(scalar: 0))

        if p.soft != 0 || p.hard != 0 {
            // Soft and hard terms in one pass per row (closed-form gradients, no [N, V]
            // intermediates on the tape), on logits fused with the output projection when asked.
            let weightSum = p.soft + p.hard
            var o = FusedLossOptions(divergence: configuration.divergence, temperature: p.temperature,
                                     alpha: p.hard == 0 ? 1 : p.soft == 0 ? 0 : p.soft / weightSum,
                                     labelSmoothing: configuration.labelSmoothing)
            o.chunkSize = configuration.lossChunkSize ?? o.chunkSize
            let targets = p.hard != 0 ? batch.targets : nil
            func lossParts(_ teacher: ChunkedTeacher?, _ targets: [Int]?, _ mask: LossMask, _ o: FusedLossOptions)
                -> (total: Tensor, soft: Float?, hard: Float?) {
                if let fusedWeight {
                    let h = out.finalHidden.reshaped([n, student.config.hidden])                      // (B·T, H)
                    return DistillationLoss.fusedLinearLossParts(hidden: h, weight: fusedWeight, teacher: teacher, targets: targets,
                                                                 mask: mask, options: o)
                }
                return DistillationLoss.logitLossParts(logits: out.logits.reshaped([n, v]), teacher: teacher, targets: targets,
                                                       mask: mask, options: o)
            }
            // The soft term on its own rows, the hard term on all counted rows, mixed by α: when
            // the teacher covers fewer rows than are counted (positions a server's log-probabilities
            // did not cover) or compares across tokenizers.
            func mixed(_ soft: () throws -> (total: Tensor, value: Float)?) rethrows -> (total: Tensor, soft: Float?, hard: Float?) {
                var ho = o
                ho.alpha = 0
                let s = try soft()
                let h = targets != nil ? lossParts(nil, targets, mask, ho) : nil
                let a = targets == nil ? 1 : o.alpha
                return (total: (s.map { $0.total * a } ?? Tensor(scalar: 0)) + (h.map { $0.total * (1 - a) } ?? Tensor(scalar: 0)),
                        soft: s?.value ?? 0, hard: h?.hard)
            }
            var f: (total: Tensor, soft: Float?, hard: Float?)
            switch t?.soft {
            case .crossTokenizer(let x)?:
                f = try mixed {
                    let s = try x.value(logits: out.logits.reshaped([n, v]), temperature: p.temperature)
                    return (s, s.item)
                }
            case .sameVocabulary(let chunked)?:
                if let rows = t?.softRows, rows.count != mask.count {
                    let softMask = try LossMask(rows: rows, total: mask.rowCount)
                    var so = o
                    so.alpha = 1
                    f = mixed {
                        guard softMask.count > 0 else { return nil }
                        let s = lossParts(chunked, nil, softMask, so)
                        return (s.total, s.soft ?? 0)
                    }
                } else {
                    f = lossParts(chunked, targets, mask, o)
                }
            case nil:
                f = lossParts(nil, targets, mask, o)
            }
            parts.soft = f.soft
            parts.hard = f.hard
            add(f.total, p.soft != 0 && p.hard != 0 ? weightSum : (p.soft != 0 ? p.soft : p.hard))
        }
        if needFeature, let t {
            // LayerMap layer i = output of block i = hiddenStates[i + 1].
            let map = configuration.featureMap!           // checked by `check(_:)`
            let f = DistillationLoss.feature(student: Array(out.hiddenStates.dropFirst()), teacher: Array(t.hiddenStates.dropFirst()),
                                             map: map, projector: projector, distance: configuration.featureDistance, mask: mask)
            parts.feature = f.item
            add(f, p.feature)
        }
        if needAttention, let t {
            let map = configuration.attentionMap!         // checked by `check(_:)`
            let a = DistillationLoss.attentionTransfer(student: out.attentions, teacher: t.attentions, map: map,
                                                       distance: configuration.attentionDistance,
                                                       topKTeacherHeads: configuration.attentionTopK, mask: mask)
            parts.attention = a.item
            add(a, p.attention)
        }
        parts.total = total ?? Tensor(scalar: 0)
        return parts
    }

    /// The student's output projection when the loss is fused with it (a chunk size is set and
    /// the projection is a plain matrix; a cross-tokenizer soft term needs the student's logits).
    func fusedProjectionWeight(_ p: StepPlan) -> Tensor? {
        let cross = p.soft != 0 ? teacher?.crossTokenizerLoss : nil
        return configuration.lossChunkSize != nil && cross == nil ? student.outputProjectionWeight : nil
    }

    /// What `loss(_:plan:)` asks the teacher about `batch` under `p` (nil when `p` needs no teacher).
    public func teacherOutputs(for batch: Batch, plan p: StepPlan) throws -> TeacherBatchOutput? {
        guard p.needsTeacher, let teacher else { return nil }
        return try teacher.outputs(for: batch, request: TeacherBatchRequest(
            mask: batch.lossMask, soft: p.soft != 0, hiddenStates: p.feature != 0, attentions: p.attention != 0,
            temperature: p.temperature, fusedProjection: fusedProjectionWeight(p) != nil))
    }

    /// The clean loss's parts (with `adversarial` set to the perturbed loss), the gradients of
    /// clean + perturbed loss with respect to `parameters` and the final perturbation [B·T·hidden]
    /// (see `AdversarialTraining`).
    func adversarialGradients(_ batch: Batch, plan p: StepPlan, parameters: [Tensor],
                              _ adv: AdversarialTraining) throws -> (LossParts, [Tensor], perturbation: [Float]) {
        let t = try teacherOutputs(for: batch, plan: p)
        let shape = [batch.batch, batch.length, student.config.hidden]
        let zero = Tensor(zeros: shape).requiringGrad()
        var parts = try loss(batch, plan: p, embeddingOffset: zero, teacherOutputs: t)
        var g = gradients(of: parts.total, wrt: parameters + [zero])
        var ge = g.removeLast()
        var r: [Float]? = nil
        for k in 0..<adv.steps {
            r = adv.step(from: r, gradient: ge.scalars)
            if k + 1 < adv.steps {
                let rk = Tensor(r!, shape: shape).requiringGrad()
                ge = gradients(of: try loss(batch, plan: p, embeddingOffset: rk, teacherOutputs: t).total, wrt: [rk])[0]
            }
        }
        let perturbed = try loss(batch, plan: p, embeddingOffset: Tensor(r!, shape: shape), teacherOutputs: t)
        let ga = gradients(of: perturbed.total, wrt: parameters)
        parts.adversarial = perturbed.total.item
        return (parts, zip(g, ga).map { $0 + $1 }, r!)
    }
}

extension Curriculum {
    /// Difficulty = the teacher's mean next-token cross-entropy on each sequence (its counted targets).
    public static func teacherLossDifficulties(_ teacher: TransformerLM, _ sequences: [TokenSequence]) -> [Double] {
        withoutGradients {
            sequences.map { s in
                guard s.ids.count > 1 else { return 0 }
                let b = Batch.make([s], layout: .padToLongest(padId: 0))
                guard b.targetCount > 0 else { return 0 }
                let logits = teacher.forward(b.ids, batch: 1, length: b.length).logits.reshaped([b.length, teacher.config.vocabSize])
                return Double(logits.crossEntropy(targets: b.targets).item)
            }
        }
    }
}
