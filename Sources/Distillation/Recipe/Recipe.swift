import DistillNN
import Foundation

/// A training run described in a YAML file (see recipes/README.md for every field):
///
///     teacher: {path: teacher.gguf}
///     student: {derive: {layers: 8, hidden: 288, heads: 9, kv_heads: 3, intermediate: 768}}
///     data: {train: train.jsonl, eval_fraction: 0.05, max_length: 256}
///     loss: {kind: kd, alpha: 0.5, temperature: 2, divergence: forward_kl}
///     schedule: {steps: 1000, batch_size: 8, lr: 3e-4, warmup: 50}
///     output: {dir: runs/kd}
///
/// `Recipe.load` reads and validates it: an unknown key, a bad value or a missing required key
/// throws a `RecipeError` naming the file, line and key path. Relative paths are relative to the
/// current directory.
public struct Recipe: Codable, Equatable {
    /// The teacher: a model (`path`: full logits, hidden states, attentions; needed to derive a
    /// student and for feature/attention terms) and/or a logit cache (`cache`, written by
    /// `distill cache-logits` from data.train: the soft term from its top-`k` log-probabilities).
    /// With both, the cache gives the soft term and the model is used for derivation only.
    /// `server_tokens`: a server's sampled tokens with their top-k (`distill traces --logprobs`),
    /// for a student with another tokenizer (`loss.cross_tokenizer`).
    public struct Teacher: Codable, Equatable {
        public var path: String?
        public var cache: String?
        public var k: Int?
        public var serverTokens: String? = nil
        /// "bf16": the teacher model's matrices held in bfloat16 (half the memory; multiplied in
        /// Float32); nil or "f32": Float32.
        public var dtype: String? = nil
    }

    /// Several teacher models (`MultiTeacher`): their soft targets combined with `weights` by
    /// `combine`, or one member's alone for examples whose `source` `routing` names. The first
    /// member also serves as `teacher.path` (a derived student copies its weights).
    public struct Teachers: Codable, Equatable {
        public struct Member: Codable, Equatable {
            public var name: String
            public var path: String
            public var weight: Float
        }

        public var members: [Member]
        public var combine: TeacherCombination
        /// Example `source` → member name.
        public var routing: [String: String]
    }

    /// Sizes of a student derived from the teacher (`StudentDerivation`).
    public struct Derive: Codable, Equatable {
        public var layers: Int
        public var hidden: Int
        public var heads: Int
        public var kvHeads: Int
        public var intermediate: Int
    }

    /// Exactly one of `path` (a Hugging Face directory or .gguf) and `derive`.
    public struct Student: Codable, Equatable {
        public var path: String?
        public var derive: Derive?
    }

    public enum Layout: String, Codable, Equatable { case pad, pack }

    public struct DataSection: Codable, Equatable {
        public var train: String
        public var eval: String?
        public var evalFraction: Double?
        public var maxLength: Int
        public var layout: Layout
        public var chatTemplate: Bool
        /// Which tokens of chat examples are targets: the assistant's (SFT on responses) or all.
        public var lossOn: LossOn
    }

    public enum LossOn: String, Codable, Equatable { case assistant, all }

    public enum LossKind: String, Codable, Equatable { case hard, kd, progressive }

    public enum Divergence: Codable, Equatable {
        case forwardKL, reverseKL, jsd(beta: Float), tv, mse

        public var logitDivergence: LogitDivergence {
            switch self {
            case .forwardKL: return .forwardKL
            case .reverseKL: return .reverseKL
            case .jsd(let b): return .jsd(beta: b)
            case .tv: return .totalVariation
            case .mse: return .mse
            }
        }
    }

    /// Student ↔ teacher layers: `uniform` (spread over the teacher's layers) or explicit pairs.
    public enum LayerPairs: Codable, Equatable {
        case uniform
        case pairs([[Int]])
    }

    public struct Loss: Codable, Equatable {
        public var kind: LossKind
        /// Soft weight α (hard = 1 − α).
        public var alpha: Float
        public var temperature: Float
        public var divergence: Divergence
        public var labelSmoothing: Float
        public var featureWeight: Float
        public var attentionWeight: Float
        public var featureLayers: LayerPairs
        public var attentionLayers: LayerPairs
        public var featureDistance: FeatureDistance
        public var attentionDistance: AttentionDistance
        /// Progressive phases (fractions of the steps).
        public var warmupFraction: Double
        public var alignmentFraction: Double
        /// Positions per chunk of the output projection fused with the soft and hard terms (no
        /// `[positions × vocab]` logits held); nil: plain logits.
        public var chunkSize: Int?
        /// A teacher with another tokenizer: how its soft targets are compared (nil: the
        /// tokenizers must match).
        public var crossTokenizer: CrossTokenizerLoss? = nil
        /// ULD: the teacher's largest probabilities kept per row (the rest compared as one bucket).
        public var crossTokenizerK: Int? = nil
        /// α moving linearly over the run instead of the constant `alpha` (`alpha: {from, to, steps}`).
        public var alphaRamp: AlphaRamp? = nil
        /// Attention transfer on the K teacher heads of lowest attention entropy per layer (nil: all).
        public var attentionTopK: Int? = nil
    }

    /// `alpha: {from: 0.2, to: 0.8, steps: 500}`: α from `from` at step 0 to `to` at step
    /// `steps − 1` (schedule.steps when absent), constant after.
    public struct AlphaRamp: Codable, Equatable {
        public var from: Float
        public var to: Float
        public var steps: Int?
    }

    /// On-policy distillation (GKD): on `fraction` of the micro-batches the student samples its own
    /// answers to the prompts (at `temperature`, up to `max_tokens`) and learns the teacher's
    /// distribution on them through `loss.divergence`.
    public struct OnPolicy: Codable, Equatable {
        public var fraction: Double
        public var temperature: Float
        public var maxTokens: Int
    }

    /// Knowledge replay: `ratio` of every micro-batch's rows come from `data` (earlier training data or
    /// an earlier teacher's traces), the rest from data.train.
    public struct Replay: Codable, Equatable {
        public var data: String
        public var ratio: Double
    }

    /// Prefix tuning: `tokens` trainable key/value positions per layer (everything else frozen),
    /// initialised N(0, std²); saved as a PEFT prefix-tuning adapter.
    public struct Prefix: Codable, Equatable {
        public var tokens: Int
        public var std: Float
    }

    /// Dropout in the student's blocks while training: on the attention and MLP outputs
    /// (`residual`) and on the attention probabilities (`attention`).
    public struct DropoutRates: Codable, Equatable {
        public var residual: Float
        public var attention: Float
    }

    public enum AdversarialMethod: String, Codable, Equatable { case fgm, pgd }

    /// Adversarial training on the input embeddings: FGM (one step of size ε along the normalised
    /// gradient) or PGD (`steps` ascent steps of `step_size`, projected into the ε-ball); the
    /// perturbed loss's gradients are added to the clean ones.
    public struct Adversarial: Codable, Equatable {
        public var method: AdversarialMethod
        public var epsilon: Float
        public var steps: Int
        public var stepSize: Float?
    }

    public enum Decay: String, Codable, Equatable { case cosine, linear, constant }

    public struct Schedule: Codable, Equatable {
        public var steps: Int
        public var batchSize: Int
        public var gradAccum: Int
        public var lr: Float
        public var warmup: Int
        public var decay: Decay
        public var minLR: Float
        public var weightDecay: Float
        /// nil: no clipping.
        public var maxGradNorm: Float?
        public var evalEvery: Int?
        public var checkpointEvery: Int?
        public var curriculum: Bool
    }

    public struct LoRA: Codable, Equatable {
        public var rank: Int
        public var alpha: Float
        public var dropout: Float
        public var targetModules: [String]
    }

    public struct Output: Codable, Equatable {
        public var dir: String
    }

    public var teacher: Teacher?
    public var teachers: Teachers? = nil
    public var student: Student
    public var data: DataSection
    public var loss: Loss
    public var schedule: Schedule
    public var lora: LoRA?
    public var output: Output
    public var seed: UInt64
    public var onPolicy: OnPolicy? = nil
    public var replay: Replay? = nil
    public var adversarial: Adversarial? = nil
    public var dropout: DropoutRates? = nil
    public var prefix: Prefix? = nil

    // MARK: Known keys

    public static let topKeys = ["teacher", "teachers", "student", "data", "loss", "schedule", "lora", "output", "seed", "on_policy",
                                 "replay", "adversarial", "dropout", "prefix"]
    public static let teacherKeys = ["path", "cache", "k", "server_tokens", "dtype"]
    public static let studentKeys = ["path", "derive"]
    public static let deriveKeys = ["layers", "hidden", "heads", "kv_heads", "intermediate"]
    public static let dataKeys = ["train", "eval", "eval_fraction", "max_length", "layout", "chat_template", "loss_on"]
    public static let lossKeys = ["kind", "alpha", "temperature", "divergence", "label_smoothing", "feature_weight",
                                  "attention_weight", "feature_layers", "attention_layers", "feature_distance",
                                  "attention_distance", "warmup_fraction", "alignment_fraction", "chunk_size",
                                  "cross_tokenizer", "cross_tokenizer_k", "attention_top_k"]
    public static let teachersKeys = ["members", "combine", "routing"]
    public static let teacherMemberKeys = ["name", "path", "weight"]
    public static let alphaRampKeys = ["from", "to", "steps"]
    public static let onPolicyKeys = ["fraction", "temperature", "max_tokens"]
    public static let replayKeys = ["data", "ratio"]
    public static let adversarialKeys = ["method", "epsilon", "steps", "step_size"]
    public static let dropoutKeys = ["residual", "attention"]
    public static let prefixKeys = ["tokens", "std"]
    public static let scheduleKeys = ["steps", "batch_size", "grad_accum", "lr", "warmup", "decay", "min_lr", "weight_decay",
                                      "max_grad_norm", "eval_every", "checkpoint_every", "curriculum"]
    public static let loraKeys = ["rank", "alpha", "dropout", "target_modules"]
    public static let outputKeys = ["dir"]

    // MARK: Loading

    /// Reads and validates a recipe file. `overrides` are `key.path=value` strings (the value is
    /// YAML: `3e-4`, `pack`, `[q_proj, v_proj]`) applied before validation.
    public static func load(_ path: String, overrides: [String] = []) throws -> Recipe {
        let name = URL(fileURLWithPath: path).lastPathComponent
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RecipeError(file: name, line: nil, key: "", "cannot read the recipe file \(path)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw RecipeError(file: name, line: nil, key: "", "the recipe is not UTF-8 text")
        }
        return try parse(yaml: text, file: name, overrides: overrides)
    }

    /// The overrides of the command line's named flags (`--steps`, `--lr`, `--batch-size`, `--out`,
    /// `--seed`) as `key.path=value` strings for `load`/`parse`; `--set` values go after them.
    public static func flagOverrides(steps: Int? = nil, lr: Double? = nil, batchSize: Int? = nil, out: String? = nil,
                                     seed: UInt64? = nil) -> [String] {
        var o: [String] = []
        if let steps { o.append("schedule.steps=\(steps)") }
        if let lr { o.append("schedule.lr=\(lr)") }
        if let batchSize { o.append("schedule.batch_size=\(batchSize)") }
        if let out { o.append(pathOverride("output.dir", out)) }
        if let seed { o.append("seed=\(seed)") }
        return o
    }

    /// `key.path=value` with the value a double-quoted YAML scalar, so that any path stays a string.
    public static func pathOverride(_ key: String, _ path: String) -> String {
        key + "=\"" + path.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    /// Parses and validates recipe text; `file` names it in errors.
    public static func parse(yaml: String, file: String = "recipe.yaml", overrides: [String] = []) throws -> Recipe {
        let root = try RecipeNode.parse(yaml, file: file, overrides: overrides)
        return try Recipe(root: root, file: file)
    }

    /// Override values carry no line of the recipe file.
    init(root: RecipeNode, file: String) throws {
        let top = try RecipeSection(root, file: file, path: "", known: Self.topKeys)
        func require(_ key: String, _ known: [String]) throws -> RecipeSection {
            guard let s = try top.section(key, known: known) else { throw top.missing(key) }
            return s
        }

        // teacher
        if let t = try top.section("teacher", known: Self.teacherKeys) {
            teacher = Teacher(path: try t.string("path"), cache: try t.string("cache"), k: try t.int("k", min: 1),
                              serverTokens: try t.string("server_tokens"))
            if teacher!.serverTokens != nil && teacher!.cache != nil {
                throw t.fail("server_tokens", t.node("server_tokens"), "give either cache (same tokenizer) or server_tokens (another tokenizer), not both")
            }
            if teacher!.path == nil && teacher!.cache == nil && teacher!.serverTokens == nil {
                throw RecipeError(file: file, line: t.line, key: "teacher", "expected path (a model), cache (a logit cache) or server_tokens")
            }
            if teacher!.k != nil && teacher!.cache == nil {
                throw t.fail("k", t.node("k"), "k applies to a logit cache: give teacher.cache")
            }
            if let d = try t.string("dtype") {
                guard d == "f32" || d == "bf16" else { throw t.fail("dtype", t.node("dtype"), "expected f32 or bf16, got \"\(d)\"") }
                guard teacher!.path != nil else { throw t.fail("dtype", t.node("dtype"), "dtype applies to a teacher model: give teacher.path") }
                teacher!.dtype = d
            }
        }

        // teachers
        if let tn = top.node("teachers") {
            if top.has("teacher") {
                throw top.fail("teachers", tn, "give either teacher (one) or teachers (several), not both")
            }
            teachers = try Self.teachers(tn, top: top)
            teacher = Teacher(path: teachers!.members[0].path)
        }

        // student
        let s = try require("student", Self.studentKeys)
        var student = Student(path: try s.string("path"), derive: nil)
        if let d = try s.section("derive", known: Self.deriveKeys) {
            student.derive = Derive(layers: try d.required("layers") { try d.int($0, min: 1) },
                                    hidden: try d.required("hidden") { try d.int($0, min: 1) },
                                    heads: try d.required("heads") { try d.int($0, min: 1) },
                                    kvHeads: try d.required("kv_heads") { try d.int($0, min: 1) },
                                    intermediate: try d.required("intermediate") { try d.int($0, min: 1) })
            let o = StudentOptions(layers: student.derive!.layers, hidden: student.derive!.hidden, heads: student.derive!.heads,
                                   kvHeads: student.derive!.kvHeads, intermediate: student.derive!.intermediate)
            do { try o.validate() } catch { throw RecipeError(file: file, line: d.line, key: d.path, "\(error)") }
            if teacher?.path == nil { throw s.fail("derive", s.node("derive"), "deriving a student needs teacher.path (a model)") }
        }
        if (student.path == nil) == (student.derive == nil) {
            throw RecipeError(file: file, line: s.line, key: "student", "expected exactly one of path, derive")
        }
        self.student = student

        // data
        let d = try require("data", Self.dataKeys)
        data = DataSection(train: try d.required("train", d.string), eval: try d.string("eval"),
                           evalFraction: try d.double("eval_fraction", lower: 0, openLower: true, upper: 1, openUpper: true),
                           maxLength: try d.int("max_length", min: 2) ?? 512,
                           layout: Layout(rawValue: try d.choice("layout", ["pad", "pack"]) ?? "pad")!,
                           chatTemplate: try d.bool("chat_template") ?? true,
                           lossOn: LossOn(rawValue: try d.choice("loss_on", ["assistant", "all"]) ?? "assistant")!)
        if data.eval != nil && data.evalFraction != nil {
            throw d.fail("eval_fraction", d.node("eval_fraction"), "give either eval or eval_fraction, not both")
        }

        // loss
        let l = try top.section("loss", known: Self.lossKeys)
        let kindName = try l?.choice("kind", ["hard", "kd", "progressive"]) ?? (teacher == nil ? "hard" : "kd")
        let kind = LossKind(rawValue: kindName)!
        if kind != .hard && teacher == nil {
            throw RecipeError(file: file, line: l?.node("kind")?.line, key: "loss.kind", "\"\(kindName)\" needs a teacher section")
        }
        let progressive = kind == .progressive
        var divergence = Divergence.forwardKL
        if let l, let n = l.node("divergence") {
            divergence = try Self.divergence(n, section: l)
        }
        var alphaRamp: AlphaRamp?
        if let l, let n = l.node("alpha"), case .mapping = n {
            let r = try RecipeSection(n, file: file, path: l.keyPath("alpha"), known: Self.alphaRampKeys,
                                      keyLine: l.entries.first(where: { $0.key == "alpha" })?.line)
            alphaRamp = AlphaRamp(from: try r.required("from") { try r.float($0, lower: 0, upper: 1) },
                                  to: try r.required("to") { try r.float($0, lower: 0, upper: 1) },
                                  steps: try r.int("steps", min: 1))
            if kind != .kd { throw l.fail("alpha", n, "a ramp ({from, to, steps}) applies to loss.kind kd; give a number") }
        }
        let alpha = try alphaRamp.map { $0.from } ?? l?.float("alpha", lower: 0, upper: 1) ?? 0.5
        loss = Loss(kind: kind,
                    alpha: alpha,
                    temperature: try l?.float("temperature", lower: 0, openLower: true) ?? 2,
                    divergence: divergence,
                    labelSmoothing: try l?.float("label_smoothing", lower: 0, upper: 1, openUpper: true) ?? 0,
                    featureWeight: try l?.float("feature_weight", lower: 0) ?? (progressive ? 0.3 : 0),
                    attentionWeight: try l?.float("attention_weight", lower: 0) ?? (progressive ? 0.2 : 0),
                    featureLayers: try l.map { try Self.layerPairs("feature_layers", section: $0) } ?? .uniform,
                    attentionLayers: try l.map { try Self.layerPairs("attention_layers", section: $0) } ?? .uniform,
                    featureDistance: FeatureDistance(rawValue: try l?.choice("feature_distance", ["mse", "cosine"]) ?? "mse")!,
                    attentionDistance: AttentionDistance(rawValue: try l?.choice("attention_distance", ["kl", "cosine"]) ?? "kl")!,
                    warmupFraction: try l?.double("warmup_fraction", lower: 0, upper: 1) ?? 0.2,
                    alignmentFraction: try l?.double("alignment_fraction", lower: 0, upper: 1) ?? 0.5,
                    chunkSize: try l?.int("chunk_size", min: 1))
        if let l, let name = try l.choice("cross_tokenizer", CrossTokenizerLoss.allCases.map(\.rawValue)) {
            loss.crossTokenizer = CrossTokenizerLoss(rawValue: name)!
            if (teacher?.path == nil && teacher?.serverTokens == nil) || teacher?.cache != nil {
                throw l.fail("cross_tokenizer", l.node("cross_tokenizer"), "needs teacher.path (a model) or teacher.server_tokens, and no teacher.cache")
            }
            if teacher?.serverTokens != nil && loss.temperature != 1 {
                throw RecipeError(file: file, line: l.node("temperature")?.line ?? l.line, key: "loss.temperature",
                                  "must be 1 with teacher.server_tokens (the server's log-probabilities were taken at 1), found \(loss.temperature)")
            }
            if kind == .hard { throw l.fail("cross_tokenizer", l.node("cross_tokenizer"), "needs loss.kind kd or progressive (kind is hard)") }
            if loss.featureWeight != 0 || loss.attentionWeight != 0 {
                throw l.fail("cross_tokenizer", l.node("cross_tokenizer"), "feature and attention terms need the same tokenizer: set feature_weight and attention_weight to 0")
            }
            if l.node("divergence") != nil {
                throw l.fail("divergence", l.node("divergence"), "does not apply with cross_tokenizer (the cross-tokenizer loss is the divergence)")
            }
        }
        if teacher?.serverTokens != nil && loss.crossTokenizer == nil {
            throw RecipeError(file: file, line: l?.line, key: "loss.cross_tokenizer",
                              "teacher.server_tokens needs loss.cross_tokenizer (uld or align); a student with the teacher's tokenizer trains from traces --logprobs's logit cache (teacher.cache)")
        }
        loss.alphaRamp = alphaRamp
        loss.crossTokenizerK = try l?.int("cross_tokenizer_k", min: 1)
        loss.attentionTopK = try l?.int("attention_top_k", min: 1)
        if loss.attentionTopK != nil && loss.attentionWeight == 0 {
            throw l!.fail("attention_top_k", l!.node("attention_top_k"), "applies to the attention term: set loss.attention_weight above 0")
        }
        if loss.crossTokenizerK != nil && loss.crossTokenizer != .uld {
            throw l!.fail("cross_tokenizer_k", l!.node("cross_tokenizer_k"), "applies to cross_tokenizer: uld")
        }
        if let l, kind == .hard {
            for key in ["feature_weight", "attention_weight"] {
                if let w = try l.float(key), w != 0 {
                    throw l.fail(key, l.node(key), "needs loss.kind kd or progressive (kind is hard)")
                }
            }
        }
        if teacher?.path == nil && (loss.featureWeight != 0 || loss.attentionWeight != 0) {
            let key = loss.featureWeight != 0 ? "feature_weight" : "attention_weight"
            throw RecipeError(file: file, line: l?.node(key)?.line ?? l?.node("kind")?.line, key: "loss.\(key)",
                              "feature and attention terms need teacher.path (a model; a logit cache holds only log-probabilities)")
        }
        if let cache = teacher?.cache, data.eval != nil {
            throw d.fail("eval", d.node("eval"), "with teacher.cache (\(cache)) the held-out set must come from data.train: use eval_fraction")
        }
        if let tn = top.node("teachers") {
            func fail(_ key: String, _ message: String) -> RecipeError {
                RecipeError(file: file, line: l?.node(key)?.line ?? tn.line, key: "loss.\(key)", message)
            }
            if kind == .hard { throw RecipeError(file: file, line: tn.line, key: "teachers", "needs loss.kind kd or progressive (kind is hard)") }
            if loss.featureWeight != 0 || loss.attentionWeight != 0 {
                throw fail(loss.featureWeight != 0 ? "feature_weight" : "attention_weight",
                           "several teachers give soft targets only: set feature_weight and attention_weight to 0")
            }
            if loss.divergence == .mse {
                throw fail("divergence", "mse compares raw logits, which a combination of teachers does not have: use a divergence between distributions")
            }
            if loss.crossTokenizer != nil { throw fail("cross_tokenizer", "does not apply with several teachers") }
        }
        if loss.warmupFraction + loss.alignmentFraction > 1 {
            throw RecipeError(file: file, line: l?.node("alignment_fraction")?.line ?? l?.line, key: "loss.alignment_fraction",
                              "warmup_fraction + alignment_fraction must be at most 1, found \(loss.warmupFraction + loss.alignmentFraction)")
        }

        // schedule
        let sc = try require("schedule", Self.scheduleKeys)
        let steps = try sc.required("steps") { try sc.int($0, min: 1) }
        let lr = try sc.float("lr", lower: 0, openLower: true) ?? 1e-4
        var maxGradNorm: Float? = 1
        if let n = sc.entries.first(where: { $0.key == "max_grad_norm" })?.value {
            maxGradNorm = n.isNull ? nil : try sc.float("max_grad_norm", lower: 0, openLower: true)
        }
        schedule = Schedule(steps: steps,
                            batchSize: try sc.int("batch_size", min: 1) ?? 8,
                            gradAccum: try sc.int("grad_accum", min: 1) ?? 1,
                            lr: lr,
                            warmup: try sc.int("warmup", min: 0) ?? 0,
                            decay: Decay(rawValue: try sc.choice("decay", ["cosine", "linear", "constant"]) ?? "cosine")!,
                            minLR: try sc.float("min_lr", lower: 0) ?? 0,
                            weightDecay: try sc.float("weight_decay", lower: 0) ?? 0.01,
                            maxGradNorm: maxGradNorm,
                            evalEvery: try sc.int("eval_every", min: 1),
                            checkpointEvery: try sc.int("checkpoint_every", min: 1),
                            curriculum: try sc.bool("curriculum") ?? false)
        if schedule.warmup >= steps && schedule.warmup > 0 {
            throw sc.fail("warmup", sc.node("warmup"), "expected fewer warm-up steps than schedule.steps (\(steps)), found \(schedule.warmup)")
        }
        if schedule.minLR > lr {
            throw sc.fail("min_lr", sc.node("min_lr"), "expected a number ≤ schedule.lr (\(lr)), found \(schedule.minLR)")
        }

        // lora
        if let lo = try top.section("lora", known: Self.loraKeys) {
            lora = LoRA(rank: try lo.int("rank", min: 1) ?? 8, alpha: try lo.float("alpha", lower: 0, openLower: true) ?? 16,
                        dropout: try lo.float("dropout", lower: 0, upper: 1, openUpper: true) ?? 0,
                        targetModules: try lo.strings("target_modules") ?? ["q_proj", "v_proj"])
            if student.path == nil {
                throw RecipeError(file: file, line: lo.line, key: "lora",
                                  "needs student.path (adapters are saved for a base model that exists on disk)")
            }
            if kind == .progressive {
                throw RecipeError(file: file, line: lo.line, key: "lora",
                                  "cannot be combined with loss.kind progressive (its phases choose the trainable parameters)")
            }
        }

        // on_policy, replay, adversarial
        if let op = try top.section("on_policy", known: Self.onPolicyKeys) {
            onPolicy = OnPolicy(fraction: try op.required("fraction") { try op.double($0, lower: 0, openLower: true, upper: 1) },
                                temperature: try op.float("temperature", lower: 0) ?? 1,
                                maxTokens: try op.int("max_tokens", min: 1) ?? 64)
            if teacher?.path == nil || teacher?.cache != nil || teacher?.serverTokens != nil || loss.crossTokenizer != nil {
                throw RecipeError(file: file, line: op.line, key: "on_policy",
                                  "needs a teacher model in memory (teacher.path, no cache, server_tokens or cross_tokenizer): it scores the student's own samples")
            }
            if kind == .hard { throw RecipeError(file: file, line: op.line, key: "on_policy", "needs loss.kind kd or progressive (kind is hard)") }
        }
        if let r = try top.section("replay", known: Self.replayKeys) {
            replay = Replay(data: try r.required("data", r.string),
                            ratio: try r.required("ratio") { try r.double($0, lower: 0, openLower: true, upper: 1, openUpper: true) })
            if teacher?.cache != nil || teacher?.serverTokens != nil {
                throw RecipeError(file: file, line: r.line, key: "replay",
                                  "replayed examples need a teacher model (teacher.path) or none: a logit cache or a server's tokens cover only data.train")
            }
            let rows = Int((Double(schedule.batchSize) * replay!.ratio).rounded())
            guard rows >= 1, rows < schedule.batchSize else {
                throw r.fail("ratio", r.node("ratio"),
                             "ratio \(replay!.ratio) of schedule.batch_size \(schedule.batchSize) gives \(rows) replayed rows per micro-batch; expected at least 1 and fewer than \(schedule.batchSize)")
            }
        }
        if let a = try top.section("adversarial", known: Self.adversarialKeys) {
            let method = AdversarialMethod(rawValue: try a.required("method") { try a.choice($0, ["fgm", "pgd"]) })!
            let steps = try a.int("steps", min: 1) ?? (method == .fgm ? 1 : 3)
            if method == .fgm && steps != 1 { throw a.fail("steps", a.node("steps"), "fgm takes one step; use method: pgd for \(steps)") }
            adversarial = Adversarial(method: method, epsilon: try a.required("epsilon") { try a.float($0, lower: 0) },
                                      steps: steps, stepSize: try a.float("step_size", lower: 0, openLower: true))
            if method == .fgm && adversarial!.stepSize != nil {
                throw a.fail("step_size", a.node("step_size"), "applies to method: pgd (fgm steps by epsilon)")
            }
            if loss.crossTokenizer != nil {
                throw RecipeError(file: file, line: a.line, key: "adversarial", "does not apply with loss.cross_tokenizer")
            }
        }

        if let pr = try top.section("prefix", known: Self.prefixKeys) {
            prefix = Prefix(tokens: try pr.required("tokens") { try pr.int($0, min: 1) }, std: try pr.float("std", lower: 0) ?? 1)
            if prefix!.tokens > PrefixTuning.maxLength {
                throw pr.fail("tokens", pr.node("tokens"), "expected at most \(PrefixTuning.maxLength) tokens, found \(prefix!.tokens)")
            }
            if student.path == nil {
                throw RecipeError(file: file, line: pr.line, key: "prefix", "needs student.path (a prefix is saved for a base model that exists on disk)")
            }
            if lora != nil { throw RecipeError(file: file, line: pr.line, key: "prefix", "cannot be combined with lora (give one adapter kind)") }
            if kind == .progressive {
                throw RecipeError(file: file, line: pr.line, key: "prefix", "cannot be combined with loss.kind progressive (its phases choose the trainable parameters)")
            }
        }
        if let dr = try top.section("dropout", known: Self.dropoutKeys) {
            dropout = DropoutRates(residual: try dr.float("residual", lower: 0, upper: 1, openUpper: true) ?? 0,
                                   attention: try dr.float("attention", lower: 0, upper: 1, openUpper: true) ?? 0)
        }

        // output, seed
        let out = try require("output", Self.outputKeys)
        output = Output(dir: try out.required("dir", out.string))
        if let n = top.node("seed") {
            guard case let .scalar(v, _, _) = n, let sd = UInt64(v) else {
                throw top.fail("seed", n, "expected a non-negative integer, found \(n.found)")
            }
            seed = sd
        } else {
            seed = 0
        }
    }

    /// The `teachers` section: members (name, path, weight ≥ 0 [1]; names unique; weights summing
    /// to a positive number), combine, routing (source → a member's name).
    static func teachers(_ node: RecipeNode, top: RecipeSection) throws -> Teachers {
        let file = top.file
        let ts = try RecipeSection(node, file: file, path: "teachers", known: teachersKeys,
                                   keyLine: top.entries.first(where: { $0.key == "teachers" })?.line)
        guard let mn = ts.node("members") else { throw ts.missing("members") }
        guard case let .sequence(items, _) = mn, !items.isEmpty else {
            throw ts.fail("members", mn, "expected a list of {name, path, weight}, found \(mn.isEmptySequence ? "an empty list" : mn.found)")
        }
        var members: [Teachers.Member] = []
        for (i, item) in items.enumerated() {
            let m = try RecipeSection(item, file: file, path: "teachers.members[\(i)]", known: teacherMemberKeys)
            let name = try m.required("name", m.string)
            if members.contains(where: { $0.name == name }) { throw m.fail("name", m.node("name"), "two teachers are named \"\(name)\"") }
            members.append(Teachers.Member(name: name, path: try m.required("path", m.string), weight: try m.float("weight", lower: 0) ?? 1))
        }
        let sum = members.reduce(Float(0)) { $0 + $1.weight }
        guard sum > 0 else { throw ts.fail("members", mn, "the teachers' weights sum to \(sum); at least one must be positive") }
        let combine = TeacherCombination(rawValue: try ts.choice("combine", TeacherCombination.allCases.map(\.rawValue)) ?? "probabilities")!
        var routing: [String: String] = [:]
        if let rn = ts.node("routing") {
            guard case let .mapping(entries, _) = rn else {
                throw ts.fail("routing", rn, "expected a mapping of example source to teacher name, found \(rn.found)")
            }
            let names = members.map(\.name)
            for e in entries {
                guard case let .scalar(name, _, _) = e.value, names.contains(name) else {
                    throw RecipeError(file: file, line: e.line ?? e.value.line, key: "teachers.routing.\(e.key)",
                                      "unknown teacher \(e.value.found); teachers: \(names.joined(separator: ", "))")
                }
                routing[e.key] = name
            }
        }
        return Teachers(members: members, combine: combine, routing: routing)
    }

    /// `forward_kl`, `reverse_kl`, `jsd` (β = 0.5), `jsd(0.1)`, `tv`, `mse`.
    static func divergence(_ n: RecipeNode, section: RecipeSection) throws -> Divergence {
        let expected = "one of forward_kl, reverse_kl, jsd, jsd(beta), tv, mse"
        guard case let .scalar(s, _, _) = n else { throw section.fail("divergence", n, "expected \(expected), found \(n.found)") }
        switch s {
        case "forward_kl": return .forwardKL
        case "reverse_kl": return .reverseKL
        case "jsd": return .jsd(beta: 0.5)
        case "tv": return .tv
        case "mse": return .mse
        default:
            if s.hasPrefix("jsd("), s.hasSuffix(")") {
                let inner = s.dropFirst(4).dropLast().trimmingCharacters(in: .whitespaces)
                guard let b = Float(inner), b >= 0, b <= 1 else {
                    throw section.fail("divergence", n, "expected jsd(beta) with beta in [0, 1], found \(n.found)")
                }
                return .jsd(beta: b)
            }
            throw section.fail("divergence", n, "expected \(expected), found \(n.found)")
        }
    }

    /// `uniform` or a list of `[student, teacher]` layer pairs.
    static func layerPairs(_ key: String, section: RecipeSection) throws -> LayerPairs {
        guard let n = section.node(key) else { return .uniform }
        let expected = "uniform or a list of [student_layer, teacher_layer] pairs"
        switch n {
        case .scalar(let s, _, _) where s == "uniform": return .uniform
        case .sequence(let items, _) where !items.isEmpty:
            return .pairs(try items.map { item in
                guard case let .sequence(pair, _) = item, pair.count == 2 else {
                    throw section.fail(key, item, "expected \(expected), found \(item.found) in the list")
                }
                return try pair.map { v in
                    guard case let .scalar(x, _, _) = v, let i = Int(x), i >= 0 else {
                        throw section.fail(key, v, "expected \(expected), found \(v.found) as a layer")
                    }
                    return i
                }
            })
        default:
            throw section.fail(key, n, "expected \(expected), found \(n.found)")
        }
    }
}
