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
    @discardableResult
    public static func run(recipe: Recipe, resume: Bool = false,
                           onEvent: @escaping (RecipeEvent) -> Void = { _ in }) throws -> RecipeResult {
        let fm = FileManager.default
        let out = URL(fileURLWithPath: recipe.output.dir)
        let checkpoints = out.appendingPathComponent(checkpointsDirectory)
        let metrics = out.appendingPathComponent(metricsFile)
        if resume {
            guard Checkpoint.latest(in: checkpoints) != nil else {
                throw RecipeRunError.invalid("--resume: no checkpoint in \(checkpoints.path) (set schedule.checkpoint_every to write them)")
            }
        } else if !Checkpoint.list(in: checkpoints).isEmpty {
            throw RecipeRunError.invalid("\(out.path) already holds checkpoints of a run: pass --resume to continue it, or choose another output.dir")
        }

        // Models.
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
        let tokenizer = try student.requireTokenizer()
        // A teacher with another tokenizer, compared through a cross-tokenizer loss.
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

        // Data.
        let template = recipe.data.chatTemplate ? student.chatTemplate ?? teacher?.chatTemplate : nil
        func tokenize(_ file: TextDataFile) throws -> [TokenSequence] {
            let r = try file.encoded(with: tokenizer, chatTemplate: template, maxLength: recipe.data.maxLength,
                                     assistantOnly: recipe.data.lossOn == .assistant)
            if r.keptReasoning > 0 {
                onEvent(.note("\(file.path): the chat template drops the reasoning (<think>…</think>) of assistant turns; "
                              + "\(r.keptReasoning) of \(r.sequences.count) conversations were rendered keeping it in their last assistant turn, so the student learns to reason"))
            }
            return r.sequences
        }
        let trainFile = try TextDataFile(path: recipe.data.train)
        var train = try tokenize(trainFile)
        // A server's sampled tokens, one record per example of data.train (before any split).
        if let path = recipe.teacher?.serverTokens, let cross = recipe.loss.crossTokenizer {
            let spans = try ServerTokenSpans.read(path)
            guard spans.count == train.count else {
                throw RecipeRunError.invalid("\(path) holds \(spans.count) records but \(recipe.data.train) has \(train.count) examples: the tokens file must come from the same traces run as data.train")
            }
            crossTeacher = try CrossTokenizerTeacher(serverSpans: spans, sequences: train.map(\.ids), studentTokenizer: tokenizer,
                                                     studentVocabularySize: student.lm.config.vocabSize, loss: cross,
                                                     topK: recipe.loss.crossTokenizerK)
        }
        var eval: [TokenSequence] = []
        if let e = recipe.data.eval {
            eval = try tokenize(try TextDataFile(path: e))
        } else if let f = recipe.data.evalFraction {
            let n = Int((Double(train.count) * f).rounded())
            guard n >= 1, n < train.count else {
                throw RecipeRunError.invalid("data.eval_fraction \(f) of \(train.count) examples leaves no held-out or no training example")
            }
            let order = DataPosition.epochOrder(count: train.count, epoch: 0, kind: .shuffled(seed: recipe.seed))
            eval = order.suffix(n).map { train[$0] }
            train = order.dropLast(n).map { train[$0] }
        }
        let vocab = student.lm.config.vocabSize
        if let bad = (train + eval).lazy.flatMap({ $0.ids }).first(where: { $0 >= vocab }) {
            throw RecipeRunError.invalid("the tokenizer gives token \(bad), outside the student's vocabulary 0..<\(vocab)")
        }

        // A logit cache: written from data.train with this tokenizer, at the loss temperature, and
        // holding every training sequence exactly as tokenized here.
        var cachedTeacher: Teacher?
        if let path = recipe.teacher?.cache {
            let cache = try LogitCache(path: path)
            try cache.check(LogitCache.Expectation(fingerprint: tokenizer.fingerprint, vocabularySize: vocab, k: recipe.teacher?.k,
                                                   temperature: recipe.loss.kind == .hard ? nil : recipe.loss.temperature,
                                                   dataHash: trainFile.hash, complete: true))
            for (i, seq) in (train + eval).enumerated() where cache.index(of: seq.ids) == nil {
                throw RecipeRunError.invalid(
                    "\(path): example \(i + 1) of \(recipe.data.train) (\(seq.ids.count) tokens) is not in the logit cache: it was tokenized differently (cache-logits --max-length vs data.max_length \(recipe.data.maxLength), or the chat template)")
            }
            cachedTeacher = try CachedTeacher(cache: cache, k: recipe.teacher?.k)
                .aligned(toVocabularySize: vocab, studentFingerprint: tokenizer.fingerprint,
                         studentTokenizerVocabularySize: tokenizer.vocabSize)
        }

        // Objective.
        let s = recipe.schedule, l = recipe.loss
        var featureMap: LayerMap?, attentionMap: LayerMap?, projector: FeatureProjector?
        if let teacher {
            let ls = student.lm.config.layers, lt = teacher.lm.config.layers
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
                let m = try map(l.featureLayers, "feature_layers")
                featureMap = m
                if student.lm.config.hidden != teacher.lm.config.hidden {
                    var rng = RandomGenerator(seed: recipe.seed &+ 1)
                    projector = FeatureProjector(studentWidth: student.lm.config.hidden, teacherWidth: teacher.lm.config.hidden,
                                                 pairs: m.pairs.count, rng: &rng)
                }
            }
            if l.attentionWeight != 0 { attentionMap = try map(l.attentionLayers, "attention_layers") }
        }
        let plan: TrainingPlan
        switch l.kind {
        case .hard: plan = .hardOnly
        case .kd: plan = .kd(alpha: l.alpha, temperature: l.temperature, feature: l.featureWeight, attention: l.attentionWeight)
        case .progressive:
            plan = .progressive(ProgressiveSchedule(totalSteps: s.steps, warmupFraction: l.warmupFraction,
                                                    alignmentFraction: l.alignmentFraction, alpha: l.alpha,
                                                    temperature: l.temperature, featureWeight: l.featureWeight,
                                                    attentionWeight: l.attentionWeight))
        }

        // LoRA: only adapters train.
        var loraConfig: LoRAConfig?
        if let lo = recipe.lora {
            let c = LoRAConfig(rank: lo.rank, alpha: lo.alpha, dropout: lo.dropout, targetModules: lo.targetModules)
            do { try applyLoRA(to: student.lm, config: c, seed: recipe.seed) } catch { throw RecipeRunError.invalid("lora: \(error)") }
            loraConfig = c
        }

        // Trainer.
        let learningRate: LearningRateSchedule
        switch s.decay {
        case .cosine: learningRate = .warmupCosine(peak: s.lr, warmup: s.warmup, total: s.steps, floor: s.minLR)
        case .linear: learningRate = .warmupLinear(peak: s.lr, warmup: s.warmup, total: s.steps, floor: s.minLR)
        case .constant: learningRate = s.warmup > 0 ? .warmupLinear(peak: s.lr, warmup: s.warmup, total: s.steps, floor: s.lr) : .constant(s.lr)
        }
        let padId = tokenizer.padTokenId ?? tokenizer.eosTokenIds.first ?? 0
        let layout: BatchLayout = recipe.data.layout == .pad ? .padToLongest(padId: padId)
            : .packed(rowLength: recipe.data.maxLength, padId: padId)
        let order: DataOrder
        if s.curriculum {
            let difficulties = crossTeacher == nil ? teacher.map { Curriculum.teacherLossDifficulties($0.lm, train) } ?? Curriculum.lengthDifficulties(train)
                : Curriculum.lengthDifficulties(train)
            order = .curriculum(Curriculum(difficulties: difficulties, totalSteps: s.steps))
        } else {
            order = .shuffled(seed: recipe.seed)
        }
        try fm.createDirectory(at: out, withIntermediateDirectories: true)
        if !resume { try? fm.removeItem(at: metrics) }
        var config = TrainerConfiguration(totalSteps: s.steps, batchSize: s.batchSize, accumulationSteps: s.gradAccum,
                                          layout: layout, order: order, learningRate: learningRate,
                                          weightDecay: s.weightDecay, maxGradNorm: s.maxGradNorm,
                                          divergence: l.divergence.logitDivergence,
                                          featureMap: featureMap, featureDistance: l.featureDistance,
                                          attentionMap: attentionMap, attentionDistance: l.attentionDistance,
                                          evalEvery: s.evalEvery, evalBatchSize: s.batchSize,
                                          checkpointEvery: s.checkpointEvery, checkpointDirectory: checkpoints,
                                          metricsLog: metrics, seed: recipe.seed)
        config.labelSmoothing = l.labelSmoothing
        config.lossChunkSize = l.chunkSize
        let trainerTeacher: (any Teacher)? = crossTeacher ?? cachedTeacher ?? teacher.map { LocalTeacher(lm: $0.lm) }
        let trainer = Trainer(student: student.lm, teacher: trainerTeacher,
                              projector: projector, train: train, eval: eval, plan: plan, configuration: config)
        var last: StepMetrics?
        trainer.onEvent = { event in
            if case .step(let m) = event { last = m }
            onEvent(.training(event))
        }
        let recipeData = try JSONEncoder.sorted.encode(recipe)
        try recipeData.write(to: out.appendingPathComponent("recipe.json"), options: .atomic)
        if resume { try trainer.resumeFromLatestCheckpoint() }
        let trainable = student.lm.namedParameters().filter { !$0.parameter.isFrozen }.reduce(0) { $0 + $1.parameter.value.count }
        onEvent(.prepared(RecipeSummary(teacherParameters: teacher?.lm.parameterCount, studentParameters: student.lm.parameterCount,
                                        trainableParameters: trainable, trainSequences: train.count, evalSequences: eval.count,
                                        trainTokens: train.reduce(0) { $0 + $1.ids.count }, totalSteps: s.steps)))
        try trainer.run()

        // Final student.
        if let loraConfig {
            try LoRAAdapterFiles.save(student.lm, config: loraConfig, to: out.path, baseModel: student.path)
        } else {
            try student.saveDirectory(out.path)
            try copyTokenizerFiles(from: student.path, to: out)
        }
        onEvent(.saved(directory: out, adaptersOnly: loraConfig != nil))
        return RecipeResult(outputDirectory: out, metricsLog: metrics, steps: trainer.step, resumedFrom: trainer.resumedFrom,
                            lastMetrics: last)
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
