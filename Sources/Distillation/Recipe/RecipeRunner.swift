import DistillModels
import DistillNN
import DistillTensor
import Foundation

/// Progress of `RecipeRunner.run`, handed to its callback (the library never prints).
public enum RecipeEvent {
    /// Models and data are ready; training starts.
    case prepared(RecipeSummary)
    case training(TrainingEvent)
    /// Something the user should know that does not stop the run (e.g. reasoning kept in
    /// assistant turns although the chat template drops it).
    case note(String)
    /// The final student (or its LoRA adapters) was written to `directory`.
    case saved(directory: URL, adaptersOnly: Bool)
}

public struct RecipeSummary: Equatable {
    public var teacherParameters: Int?
    public var studentParameters: Int
    public var trainableParameters: Int
    public var trainSequences: Int
    public var evalSequences: Int
    public var trainTokens: Int
    public var totalSteps: Int
}

/// What a finished run wrote.
public struct RecipeResult {
    public var outputDirectory: URL
    public var metricsLog: URL
    public var steps: Int
    public var resumedFrom: URL?
    /// The last step's metrics, when a step ran.
    public var lastMetrics: StepMetrics?
}

/// Failures of a run that the recipe's values alone could not reveal (models, data, output).
public enum RecipeRunError: Error, Equatable, CustomStringConvertible {
    case vocabularyMismatch(teacher: String, student: String, detail: String)
    case invalid(String)

    public var description: String {
        switch self {
        case let .vocabularyMismatch(t, s, detail):
            return "teacher \(t) and student \(s) have different vocabularies (\(detail)); logit distillation needs the same tokenizer, or loss.cross_tokenizer (uld or align) to compare across tokenizers"
        case .invalid(let m): return m
        }
    }
}

/// Runs a `Recipe`: loads the teacher and student, tokenizes the data with the student's
/// tokenizer, trains with the plan the recipe's loss section describes, and writes into
/// `output.dir`:
///
/// - the final student as a Hugging Face directory (config.json, model.safetensors,
///   generation_config.json, the tokenizer files of the student's or teacher's directory), or,
///   with `lora`, only `adapter_config.json` + `adapter_model.safetensors`;
/// - `metrics.jsonl` (one `StepMetrics` line per step), `recipe.json` (the validated recipe);
/// - `checkpoints/step-…` every `schedule.checkpoint_every` steps and at the end.
public enum RecipeRunner {
    public static let metricsFile = "metrics.jsonl"
    public static let checkpointsDirectory = "checkpoints"

    /// Trains; with `resume`, continues from the newest checkpoint in the output directory (an
    /// error when there is none). A fresh run refuses an output directory that holds checkpoints.
    ///
    /// Stages, each its own function: `outputPaths` (resume or fresh), `loadModels` (teacher,
    /// student, tokenizer), `tokenizeData` (train, then held-out), `trainingTeacher` (model,
    /// logit cache or cross-tokenizer), `objective` (layer maps, projector, plan), `applyLoRA`,
    /// `trainerConfiguration`, training, `saveStudent`.
    ///
    /// With `processGroup` (an MPI job, `mpirun -np N distill train`), the processes share each
    /// step's micro-batches (`TrainerConfiguration.processGroup`); rank 0 writes everything.
    @discardableResult
    public static func run(recipe: Recipe, resume: Bool = false, processGroup: ProcessGroup? = nil,
                           onEvent: @escaping (RecipeEvent) -> Void = { _ in }) throws -> RecipeResult {
        let paths = try outputPaths(recipe, resume: resume)
        if processGroup != nil && recipe.dropout != nil {
            throw RecipeRunError.invalid("dropout does not run over several processes yet (its random streams would differ from one process's)")
        }
        let prepared = try prepare(recipe, paths: paths, processGroup: processGroup, onEvent: onEvent)
        let (models, trainer, loraConfig) = (prepared.models, prepared.trainer, prepared.lora)
        let writes = processGroup?.isMain ?? true
        guard writes else {
            if resume { try trainer.resumeFromLatestCheckpoint() }
            try trainer.run()
            return RecipeResult(outputDirectory: paths.out, metricsLog: paths.metrics, steps: trainer.step, resumedFrom: trainer.resumedFrom,
                                lastMetrics: nil)
        }
        try FileManager.default.createDirectory(at: paths.out, withIntermediateDirectories: true)
        if !resume { try? FileManager.default.removeItem(at: paths.metrics) }
        var last: StepMetrics?
        trainer.onEvent = { event in
            if case .step(let m) = event { last = m }
            onEvent(.training(event))
        }
        try JSONEncoder.sorted.encode(recipe).write(to: paths.out.appendingPathComponent("recipe.json"), options: .atomic)
        if resume { try trainer.resumeFromLatestCheckpoint() }
        let lm = models.student.lm
        let trainable = lm.namedParameters().filter { !$0.parameter.isFrozen }.reduce(0) { $0 + $1.parameter.value.count }
        onEvent(.prepared(RecipeSummary(teacherParameters: models.teacher?.lm.parameterCount, studentParameters: lm.parameterCount,
                                        trainableParameters: trainable, trainSequences: prepared.data.train.count,
                                        evalSequences: prepared.data.eval.count,
                                        trainTokens: prepared.data.train.reduce(0) { $0 + $1.ids.count }, totalSteps: recipe.schedule.steps)))
        try trainer.run()
        if recipe.prefix != nil {
            try PrefixAdapterFiles.save(models.student.lm, to: paths.out.path, baseModel: models.student.path)
        } else {
            try saveStudent(models.student, lora: loraConfig, to: paths.out)
        }
        onEvent(.saved(directory: paths.out, adaptersOnly: loraConfig != nil || recipe.prefix != nil))
        return RecipeResult(outputDirectory: paths.out, metricsLog: paths.metrics, steps: trainer.step, resumedFrom: trainer.resumedFrom,
                            lastMetrics: last)
    }

    // MARK: Stages

    /// A run ready to train: models, data, and the trainer (not started; it writes into `paths`).
    struct Prepared {
        var models: Models
        var data: TrainingData
        var trainer: Trainer
        var lora: LoRAConfig?
    }

    /// Every stage before training: models, data, teacher, objective, LoRA, prefix, dropout, and
    /// the trainer over them.
    static func prepare(_ recipe: Recipe, paths: OutputPaths, processGroup: ProcessGroup? = nil, onEvent: (RecipeEvent) -> Void) throws -> Prepared {
        let models = try loadModels(recipe, onEvent: onEvent)
        let data = try tokenizeData(recipe, models, onEvent: onEvent)
        let teacher = try trainingTeacher(recipe, models, data)
        let objective = try self.objective(recipe, models)
        let loraConfig = try applyLoRA(recipe, to: models.student)
        if let p = recipe.prefix {
            do { try PrefixTuning.apply(to: models.student.lm, length: p.tokens, std: p.std, seed: recipe.seed) } catch {
                throw RecipeRunError.invalid("prefix: \(error)")
            }
        }
        if let d = recipe.dropout {
            try DecoderDropout.apply(to: models.student.lm, residual: d.residual, attention: d.attention, seed: recipe.seed)
        }
        var config = trainerConfiguration(recipe, models, data, objective, paths)
        if let processGroup {
            config.processGroup = processGroup
            if !processGroup.isMain { config.metricsLog = nil }
        }
        let trainer = Trainer(student: models.student.lm, teacher: teacher, projector: objective.projector,
                              train: data.train, eval: data.eval, replay: data.replay, plan: objective.plan, configuration: config)
        return Prepared(models: models, data: data, trainer: trainer, lora: loraConfig)
    }

    struct OutputPaths {
        var out: URL
        var checkpoints: URL
        var metrics: URL
    }

    /// The output directory: with `resume` it must hold a checkpoint; a fresh run must find none.
    static func outputPaths(_ recipe: Recipe, resume: Bool) throws -> OutputPaths {
        let out = URL(fileURLWithPath: recipe.output.dir)
        let paths = OutputPaths(out: out, checkpoints: out.appendingPathComponent(checkpointsDirectory),
                                metrics: out.appendingPathComponent(metricsFile))
        if resume {
            guard Checkpoint.latest(in: paths.checkpoints) != nil else {
                throw RecipeRunError.invalid("--resume: no checkpoint in \(paths.checkpoints.path) (set schedule.checkpoint_every to write them)")
            }
        } else if !Checkpoint.list(in: paths.checkpoints).isEmpty {
            throw RecipeRunError.invalid("\(out.path) already holds checkpoints of a run: pass --resume to continue it, or choose another output.dir")
        }
        return paths
    }

    struct Models {
        var teacher: PretrainedModel?
        var student: PretrainedModel
        var tokenizer: Tokenizer
        /// A teacher model with another tokenizer, compared through loss.cross_tokenizer.
        var crossTeacher: CrossTokenizerTeacher?
    }

    /// The teacher model (frozen), the student (loaded or derived) and its tokenizer; checks that
    /// they share a tokenizer unless a cross-tokenizer loss compares them.
    static func loadModels(_ recipe: Recipe, onEvent: (RecipeEvent) -> Void) throws -> Models {
        let teacher = try recipe.teacher?.path.map { try PretrainedModel.load($0) }
        teacher?.lm.freeze()
        let student: PretrainedModel
        if let d = recipe.student.derive, let teacher {
            let options = StudentOptions(layers: d.layers, hidden: d.hidden, heads: d.heads, kvHeads: d.kvHeads,
                                         intermediate: d.intermediate, seed: recipe.seed)
            student = try StudentDerivation.derive(from: teacher, options: options, path: teacher.path).model
        } else {
            student = try PretrainedModel.load(recipe.student.path!)
        }
        // After the student took its weights from the teacher: bfloat16 from here on.
        if recipe.teacher?.dtype == "bf16", let teacher {
            let saved = try teacher.lm.storeMatricesInBFloat16(bfloat16Products: true)
            onEvent(.note(String(format: "teacher matrices in bfloat16 (%.0f MB less memory)", Double(saved) / 1e6)))
        }
        let tokenizer = try student.requireTokenizer()
        var crossTeacher: CrossTokenizerTeacher?
        if let teacher, let cross = recipe.loss.crossTokenizer, recipe.teacher?.serverTokens == nil {
            let tt = try teacher.requireTokenizer()
            if tt.fingerprint == tokenizer.fingerprint {
                onEvent(.note("teacher and student share a tokenizer: loss.cross_tokenizer (\(cross.rawValue)) is not needed, the soft term compares their logits directly"))
            } else {
                crossTeacher = try CrossTokenizerTeacher(lm: teacher.lm, teacherTokenizer: tt, studentTokenizer: tokenizer,
                                                         studentVocabularySize: student.lm.config.vocabSize, loss: cross,
                                                         topK: recipe.loss.crossTokenizerK ?? (cross == .uld ? 64 : nil))
            }
        }
        if let teacher, crossTeacher == nil, recipe.teacher?.serverTokens == nil {
            let tv = teacher.lm.config.vocabSize, sv = student.lm.config.vocabSize
            if let tt = teacher.tokenizer, tt.fingerprint != tokenizer.fingerprint {
                throw RecipeRunError.vocabularyMismatch(teacher: teacher.path, student: student.path,
                                                        detail: "tokenizer fingerprints \(tt.fingerprint) and \(tokenizer.fingerprint)")
            }
            if tv != sv {
                throw RecipeRunError.vocabularyMismatch(teacher: teacher.path, student: student.path,
                                                        detail: "vocab_size \(tv) and \(sv)")
            }
        }
        return Models(teacher: teacher, student: student, tokenizer: tokenizer, crossTeacher: crossTeacher)
    }

    struct TrainingData {
        var trainFile: TextDataFile
        /// data.train tokenized, in file order, before the held-out split.
        var allTrain: [TokenSequence]
        var train: [TokenSequence]
        var eval: [TokenSequence]
        /// replay.data tokenized (empty without replay).
        var replay: [TokenSequence] = []
        var replayFile: TextDataFile? = nil
    }

    /// The template that renders "messages" data: the student's, else the teacher's (nil with
    /// data.chat_template false).
    static func chatTemplate(_ recipe: Recipe, _ m: Models) -> ChatTemplate? {
        recipe.data.chatTemplate ? m.student.chatTemplate ?? m.teacher?.chatTemplate : nil
    }

    /// data.train (and data.eval) tokenized with the student's tokenizer and chat template, and
    /// the held-out split.
    static func tokenizeData(_ recipe: Recipe, _ m: Models, onEvent: (RecipeEvent) -> Void) throws -> TrainingData {
        let template = chatTemplate(recipe, m)
        func tokenize(_ file: TextDataFile) throws -> [TokenSequence] {
            let r = try file.encoded(with: m.tokenizer, chatTemplate: template, maxLength: recipe.data.maxLength,
                                     assistantOnly: recipe.data.lossOn == .assistant)
            if r.keptReasoning > 0 {
                onEvent(.note("\(file.path): the chat template drops the reasoning (<think>…</think>) of assistant turns; "
                              + "\(r.keptReasoning) of \(r.sequences.count) conversations were rendered keeping it in their last assistant turn, so the student learns to reason"))
            }
            return r.sequences
        }
        let trainFile = try TextDataFile(path: recipe.data.train)
        let all = try tokenize(trainFile)
        var train = all
        var eval: [TokenSequence] = []
        if let e = recipe.data.eval {
            eval = try tokenize(try TextDataFile(path: e))
        } else if let f = recipe.data.evalFraction {
            let n = Int((Double(train.count) * f).rounded())
            guard n >= 1, n < train.count else {
                throw RecipeRunError.invalid("data.eval_fraction \(f) of \(train.count) examples leaves no held-out or no training example")
            }
            let order = DataPosition.epochOrder(count: train.count, epoch: 0, kind: .shuffled(seed: recipe.seed))
            eval = order.suffix(n).map { all[$0] }
            train = order.dropLast(n).map { all[$0] }
        }
        var replay: [TokenSequence] = [], replayFile: TextDataFile?
        if let r = recipe.replay {
            do {
                replayFile = try TextDataFile(path: r.data)
                replay = try tokenize(replayFile!)
            } catch { throw RecipeRunError.invalid("replay.data: \(error)") }
        }
        if let r = recipe.replay, replay.allSatisfy({ $0.ids.count < 2 }) {
            throw RecipeRunError.invalid("replay.data \(r.data): no example has two tokens or more to learn from")
        }
        let vocab = m.student.lm.config.vocabSize
        if let bad = (train + eval + replay).lazy.flatMap({ $0.ids }).first(where: { $0 >= vocab }) {
            throw RecipeRunError.invalid("the tokenizer gives token \(bad), outside the student's vocabulary 0..<\(vocab)")
        }
        return TrainingData(trainFile: trainFile, allTrain: all, train: train, eval: eval, replay: replay, replayFile: replayFile)
    }

    /// The teacher the trainer asks: a server's tokens or a model across tokenizers, a logit cache
    /// (checked against the data), or the teacher model.
    static func trainingTeacher(_ recipe: Recipe, _ m: Models, _ d: TrainingData) throws -> (any Teacher)? {
        let vocab = m.student.lm.config.vocabSize
        // A server's sampled tokens, one record per example of data.train (before any split).
        if let path = recipe.teacher?.serverTokens, let cross = recipe.loss.crossTokenizer {
            let spans = try ServerTokenSpans.read(path)
            guard spans.count == d.allTrain.count else {
                throw RecipeRunError.invalid("\(path) holds \(spans.count) records but \(recipe.data.train) has \(d.allTrain.count) examples: the tokens file must come from the same traces run as data.train")
            }
            return try CrossTokenizerTeacher(serverSpans: spans, sequences: d.allTrain.map(\.ids), studentTokenizer: m.tokenizer,
                                             studentVocabularySize: vocab, loss: cross, topK: recipe.loss.crossTokenizerK)
        }
        if let cross = m.crossTeacher { return cross }
        if let ts = recipe.teachers, let first = m.teacher { return try multiTeacher(ts, first: first, m, d) }
        // A logit cache: written from data.train with this tokenizer, at the loss temperature, and
        // holding every training sequence exactly as tokenized here.
        if let path = recipe.teacher?.cache {
            let cache = try LogitCache(path: path)
            try cache.check(LogitCache.Expectation(fingerprint: m.tokenizer.fingerprint, vocabularySize: vocab, k: recipe.teacher?.k,
                                                   temperature: recipe.loss.kind == .hard ? nil : recipe.loss.temperature,
                                                   dataHash: d.trainFile.hash, complete: true))
            for (i, seq) in (d.train + d.eval).enumerated() where cache.index(of: seq.ids) == nil {
                throw RecipeRunError.invalid(
                    "\(path): example \(i + 1) of \(recipe.data.train) (\(seq.ids.count) tokens) is not in the logit cache: it was tokenized differently (cache-logits --max-length vs data.max_length \(recipe.data.maxLength), or the chat template)")
            }
            return try CachedTeacher(cache: cache, k: recipe.teacher?.k)
                .aligned(toVocabularySize: vocab, studentFingerprint: m.tokenizer.fingerprint,
                         studentTokenizerVocabularySize: m.tokenizer.vocabSize)
        }
        return m.teacher.map { LocalTeacher(lm: $0.lm) }
    }

    /// The `teachers` members (the first already loaded as the teacher), each checked against the
    /// student's tokenizer, with the examples of routed sources (data.train and replay.data) mapped
    /// to their member.
    static func multiTeacher(_ ts: Recipe.Teachers, first: PretrainedModel, _ m: Models, _ d: TrainingData) throws -> MultiTeacher {
        var members = [(name: ts.members[0].name, lm: first.lm, weight: ts.members[0].weight)]
        for member in ts.members.dropFirst() {
            let model = try PretrainedModel.load(member.path)
            model.lm.freeze()
            if let tt = model.tokenizer, tt.fingerprint != m.tokenizer.fingerprint {
                throw RecipeRunError.vocabularyMismatch(teacher: member.path, student: m.student.path,
                                                        detail: "tokenizer fingerprints \(tt.fingerprint) and \(m.tokenizer.fingerprint)")
            }
            if model.lm.config.vocabSize != m.student.lm.config.vocabSize {
                throw RecipeRunError.vocabularyMismatch(teacher: member.path, student: m.student.path,
                                                        detail: "vocab_size \(model.lm.config.vocabSize) and \(m.student.lm.config.vocabSize)")
            }
            members.append((member.name, model.lm, member.weight))
        }
        let index = Dictionary(uniqueKeysWithValues: ts.members.enumerated().map { ($1.name, $0) })
        var routes: [[Int]: Int] = [:]
        for (file, sequences) in [(d.trainFile, d.allTrain)] + (d.replayFile.map { [($0, d.replay)] } ?? []) {
            for (source, seq) in zip(file.sources, sequences) {
                if let source, let name = ts.routing[source], routes[seq.ids] == nil { routes[seq.ids] = index[name]! }
            }
        }
        return try MultiTeacher(members: members, combination: ts.combine, routes: routes)
    }

    struct Objective {
        var plan: TrainingPlan
        var featureMap: LayerMap?
        var attentionMap: LayerMap?
        var projector: FeatureProjector?
    }

    /// The loss plan, the feature and attention layer maps, and the feature projector when the
    /// widths differ.
    static func objective(_ recipe: Recipe, _ m: Models) throws -> Objective {
        let s = recipe.schedule, l = recipe.loss
        var o = Objective(plan: .hardOnly)
        if let teacher = m.teacher {
            let ls = m.student.lm.config.layers, lt = teacher.lm.config.layers
            func map(_ pairs: Recipe.LayerPairs, _ key: String) throws -> LayerMap {
                switch pairs {
                case .uniform: return LayerMap.uniform(studentLayers: ls, teacherLayers: lt)
                case .pairs(let p):
                    for pair in p where pair[0] >= ls || pair[1] >= lt {
                        throw RecipeRunError.invalid("loss.\(key): pair [\(pair[0]), \(pair[1])] is outside the student's \(ls) or the teacher's \(lt) layers")
                    }
                    do { return try LayerMap(p.map { ($0[0], $0[1]) }) } catch { throw RecipeRunError.invalid("loss.\(key): \(error)") }
                }
            }
            if l.featureWeight != 0 {
                let fm = try map(l.featureLayers, "feature_layers")
                o.featureMap = fm
                if m.student.lm.config.hidden != teacher.lm.config.hidden {
                    var rng = RandomGenerator(seed: recipe.seed &+ 1)
                    o.projector = FeatureProjector(studentWidth: m.student.lm.config.hidden, teacherWidth: teacher.lm.config.hidden,
                                                   pairs: fm.pairs.count, rng: &rng)
                }
            }
            if l.attentionWeight != 0 { o.attentionMap = try map(l.attentionLayers, "attention_layers") }
        }
        switch l.kind {
        case .hard: o.plan = .hardOnly
        case .kd:
            if let r = l.alphaRamp {
                o.plan = .kd(alpha: LinearRamp(from: r.from, to: r.to, over: r.steps ?? s.steps), temperature: l.temperature,
                             feature: l.featureWeight, attention: l.attentionWeight)
            } else {
                o.plan = .kd(alpha: l.alpha, temperature: l.temperature, feature: l.featureWeight, attention: l.attentionWeight)
            }
        case .progressive:
            o.plan = .progressive(ProgressiveSchedule(totalSteps: s.steps, warmupFraction: l.warmupFraction,
                                                      alignmentFraction: l.alignmentFraction, alpha: l.alpha,
                                                      temperature: l.temperature, featureWeight: l.featureWeight,
                                                      attentionWeight: l.attentionWeight))
        }
        return o
    }

    /// With a `lora` section, attaches adapters (only they train) and returns their config.
    static func applyLoRA(_ recipe: Recipe, to student: PretrainedModel) throws -> LoRAConfig? {
        guard let lo = recipe.lora else { return nil }
        let c = LoRAConfig(rank: lo.rank, alpha: lo.alpha, dropout: lo.dropout, targetModules: lo.targetModules)
        do { try DistillNN.applyLoRA(to: student.lm, config: c, seed: recipe.seed) } catch { throw RecipeRunError.invalid("lora: \(error)") }
        return c
    }

    /// The trainer's settings from the schedule, data layout and objective.
    static func trainerConfiguration(_ recipe: Recipe, _ m: Models, _ d: TrainingData, _ o: Objective, _ paths: OutputPaths) -> TrainerConfiguration {
        let s = recipe.schedule, l = recipe.loss
        let learningRate: LearningRateSchedule
        switch s.decay {
        case .cosine: learningRate = .warmupCosine(peak: s.lr, warmup: s.warmup, total: s.steps, floor: s.minLR)
        case .linear: learningRate = .warmupLinear(peak: s.lr, warmup: s.warmup, total: s.steps, floor: s.minLR)
        case .constant: learningRate = s.warmup > 0 ? .warmupLinear(peak: s.lr, warmup: s.warmup, total: s.steps, floor: s.lr) : .constant(s.lr)
        }
        let padId = m.tokenizer.padTokenId ?? m.tokenizer.eosTokenIds.first ?? 0
        let layout: BatchLayout = recipe.data.layout == .pad ? .padToLongest(padId: padId)
            : .packed(rowLength: recipe.data.maxLength, padId: padId)
        let order: DataOrder
        if s.curriculum {
            // Teacher loss needs the teacher's tokens: across tokenizers, length stands in.
            let difficulties = m.crossTeacher == nil && recipe.teacher?.serverTokens == nil
                ? m.teacher.map { Curriculum.teacherLossDifficulties($0.lm, d.train) } ?? Curriculum.lengthDifficulties(d.train)
                : Curriculum.lengthDifficulties(d.train)
            order = .curriculum(Curriculum(difficulties: difficulties, totalSteps: s.steps))
        } else {
            order = .shuffled(seed: recipe.seed)
        }
        var config = TrainerConfiguration(totalSteps: s.steps, batchSize: s.batchSize, accumulationSteps: s.gradAccum,
                                          layout: layout, order: order, learningRate: learningRate,
                                          weightDecay: s.weightDecay, maxGradNorm: s.maxGradNorm,
                                          divergence: l.divergence.logitDivergence,
                                          featureMap: o.featureMap, featureDistance: l.featureDistance,
                                          attentionMap: o.attentionMap, attentionDistance: l.attentionDistance,
                                          evalEvery: s.evalEvery, evalBatchSize: s.batchSize,
                                          checkpointEvery: s.checkpointEvery, checkpointDirectory: paths.checkpoints,
                                          metricsLog: paths.metrics, seed: recipe.seed)
        config.labelSmoothing = l.labelSmoothing
        config.lossChunkSize = l.chunkSize
        config.attentionTopK = l.attentionTopK
        if let op = recipe.onPolicy {
            config.onPolicy = OnPolicyDistillation(fraction: op.fraction, temperature: op.temperature, maxTokens: op.maxTokens,
                                                   stopTokenIds: Set(m.tokenizer.eosTokenIds))
        }
        if let r = recipe.replay { config.replayRows = Int((Double(s.batchSize) * r.ratio).rounded()) }
        if let a = recipe.adversarial {
            config.adversarial = AdversarialTraining(method: a.method == .fgm ? .fgm : .pgd, epsilon: a.epsilon, steps: a.steps,
                                                     stepSize: a.stepSize)
        }
        return config
    }

    /// The trained student: the whole model with its tokenizer files, or only the LoRA adapters.
    static func saveStudent(_ student: PretrainedModel, lora: LoRAConfig?, to out: URL) throws {
        if let lora {
            try LoRAAdapterFiles.save(student.lm, config: lora, to: out.path, baseModel: student.path)
        } else {
            try student.saveDirectory(out.path)
            try copyTokenizerFiles(from: student.path, to: out)
        }
    }

    /// Copies `StudentDerivation.tokenizerFiles` from a model directory (nothing for a .gguf file).
    static func copyTokenizerFiles(from source: String, to out: URL) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: source, isDirectory: &isDir), isDir.boolValue else { return }
        let src = URL(fileURLWithPath: source)
        for name in StudentDerivation.tokenizerFiles {
            let from = src.appendingPathComponent(name), to = out.appendingPathComponent(name)
            guard from.standardizedFileURL != to.standardizedFileURL, fm.fileExists(atPath: from.path) else { continue }
            try? fm.removeItem(at: to)
            try fm.copyItem(at: from, to: to)
        }
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return e
    }
}
