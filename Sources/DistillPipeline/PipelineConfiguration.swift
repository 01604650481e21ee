import DistillData
import DistillEval
import Distillation
import Foundation

/// `PIPELINE.yaml`, the description of a continuous distillation pipeline (`distill pipeline`):
///
///     inbox: pipeline/inbox              # new prompt files (*.jsonl, one batch each) are dropped here
///     work: pipeline/work                # each batch's stages and their outputs (resumable)
///     versions: pipeline/models          # v0001, v0002, … + `current` (what `distill serve --watch` serves) + history.jsonl
///     initial_student: models/student    # becomes v0001 when `versions` holds no current version
///     poll_seconds: 10
///     teacher:                           # an OpenAI-compatible server (vLLM, llama.cpp, distill serve)
///       url: http://127.0.0.1:8000/v1
///       model: deepseek-r1
///       samples: 4
///       temperature: 0.7
///       max_tokens: 2048
///       verifier: math                   # math | exact | none
///     decontaminate: {against: [eval/heldout.jsonl], ngram: 8}
///     train:
///       recipe: recipes/sft.yaml         # student.path, data.train and output.dir are set by the pipeline
///       set: ["schedule.steps=200"]
///     gate:
///       task: eval/heldout.jsonl         # or word-problems, or a .txt text (perplexity)
///       metric: accuracy                 # default: accuracy, bleu for generation, perplexity for text
///       margin: 0.02                     # the candidate must beat the current student by this much
///       no_regression: {task: eval/general.jsonl, tolerance: 0.01}
///
/// Relative paths are relative to the pipeline file's directory.
public struct PipelineConfiguration: Sendable, Equatable {
    public struct Teacher: Sendable, Equatable {
        public var urls: [String]
        public var model: String
        public var apiKeyEnvironmentVariable: String?
        public var samples = 4
        public var sampling = TraceSamplingSettings()
        public var verifier = "math"
        public var keep = KeepPolicy.allCorrect
        /// The content filters besides the template check (`RejectionSampler.standardFilters`).
        public var filters = ["repetition", "language_mixing"]
        /// False for a teacher that does not reason (no `<think>` block required).
        public var thinkRequired = true
        /// The student's chat template opens the think block in the generation prompt.
        public var thinkInPrompt = false
        public var system: String?
        public var concurrency = 8
        public var stream = false

        /// The verifier the name stands for (nil: none).
        public var verifierKind: VerifierKind? {
            switch verifier {
            case "math": return .math(MathEquivalence())
            case "exact": return .exact(caseInsensitive: false, target: .finalAnswer)
            default: return nil
            }
        }
    }

    /// One task of the evaluation gate.
    public struct GateTask: Sendable, Equatable {
        /// A built-in task name or a task file (`EvalTask.load`).
        public var task: String
        /// The metric compared; nil: the task kind's default.
        public var metric: String?
        public var limit: Int?
    }

    public struct Gate: Sendable, Equatable {
        public var task: GateTask
        /// How much better (in the metric's units) the candidate must be than the current student.
        public var margin: Double = 0
        public var noRegression: GateTask?
        /// How much worse the second task may get.
        public var tolerance: Double = 0
        public var maxTokens = 256
        public var batchSize = 16
    }

    public var file: String
    public var inbox: URL
    public var work: URL
    public var versions: URL
    public var initialStudent: URL?
    public var pollSeconds: Double = 10
    public var teacher: Teacher
    public var decontaminateAgainst: [String] = []
    public var ngram = 8
    public var recipe: String
    public var recipeOverrides: [String] = []
    public var gate: Gate

    public static let topKeys = ["inbox", "work", "versions", "initial_student", "poll_seconds", "teacher", "decontaminate", "train", "gate"]
    static let teacherKeys = ["url", "model", "api_key_env", "samples", "temperature", "top_p", "max_tokens", "seed", "verifier", "keep",
                              "think_required", "think_in_prompt", "filters", "system", "concurrency", "stream"]
    static let filterNames = ["repetition", "language_mixing"]
    static let gateKeys = ["task", "metric", "limit", "margin", "no_regression", "max_tokens", "batch_size"]
    static let noRegressionKeys = ["task", "metric", "limit", "tolerance"]
    /// The metrics a gate can compare, and whether lower is better.
    public static let metrics: [String: Bool] = [
        "accuracy": false, "macro_f1": false, "template_compliance": false, "reasoning_success": false,
        "bleu": false, "rouge1": false, "rouge2": false, "rougeL": false, "perplexity": true,
    ]

    /// Reads and checks a pipeline file; `overrides` are `key.path=value` like `distill train --set`.
    /// Errors name the file, line and key.
    public static func load(_ path: String, overrides: [String] = []) throws -> PipelineConfiguration {
        let name = URL(fileURLWithPath: path).lastPathComponent
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw RecipeError(file: name, line: nil, key: "", "cannot read the pipeline file \(path) as UTF-8 text")
        }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent()
        return try parse(yaml: text, file: name, baseDirectory: base, overrides: overrides)
    }

    public static func parse(yaml: String, file: String, baseDirectory: URL, overrides: [String] = []) throws -> PipelineConfiguration {
        let root = try RecipeNode.parse(yaml, file: file, overrides: overrides)
        let top = try RecipeSection(root, file: file, path: "", known: topKeys)
        func url(_ s: String) -> URL {
            (s.hasPrefix("/") ? URL(fileURLWithPath: s) : baseDirectory.appendingPathComponent(s)).standardizedFileURL
        }
        func require(_ key: String, _ known: [String]) throws -> RecipeSection {
            guard let s = try top.section(key, known: known) else { throw top.missing(key) }
            return s
        }

        let t = try require("teacher", teacherKeys)
        var teacher = Teacher(urls: try t.required("url", t.string).split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) },
                              model: try t.required("model", t.string))
        for u in teacher.urls where !(u.hasPrefix("http://") || u.hasPrefix("https://")) {
            throw t.fail("url", t.node("url"), "expected http(s)://host:port/v1 (several separated by commas), found \"\(u)\"")
        }
        teacher.apiKeyEnvironmentVariable = try t.string("api_key_env")
        teacher.samples = try t.int("samples", min: 1) ?? teacher.samples
        teacher.sampling.temperature = try t.double("temperature", lower: 0) ?? teacher.sampling.temperature
        teacher.sampling.topP = try t.double("top_p", lower: 0, openLower: true, upper: 1) ?? teacher.sampling.topP
        teacher.sampling.maxTokens = try t.int("max_tokens", min: 1) ?? teacher.sampling.maxTokens
        teacher.sampling.seed = UInt64(try t.int("seed", min: 0) ?? 0)
        teacher.verifier = try t.choice("verifier", ["math", "exact", "none"]) ?? teacher.verifier
        teacher.keep = try t.choice("keep", ["all", "first", "shortest"]).flatMap(KeepPolicy.init(rawValue:)) ?? teacher.keep
        teacher.thinkRequired = try t.bool("think_required") ?? true
        teacher.thinkInPrompt = try t.bool("think_in_prompt") ?? false
        if case .scalar("none", _, _)? = t.node("filters") {
            teacher.filters = []
        } else if let f = try t.strings("filters") {
            for name in f where !filterNames.contains(name) {
                throw t.fail("filters", t.node("filters"), "unknown filter \(name); expected a list of \(filterNames.joined(separator: ", ")), or none")
            }
            teacher.filters = f
        }
        teacher.system = try t.string("system")
        teacher.concurrency = try t.int("concurrency", min: 1) ?? teacher.concurrency
        teacher.stream = try t.bool("stream") ?? false

        let train = try require("train", ["recipe", "set"])
        let recipe = url(try train.required("recipe", train.string)).path
        let overridesOfRecipe = try train.strings("set") ?? []
        for (i, o) in overridesOfRecipe.enumerated() where !o.contains("=") {
            throw train.fail("set", train.node("set"), "item \(i + 1): expected key.path=value, found \"\(o)\"")
        }

        let g = try require("gate", gateKeys)
        /// A gate task, read now so that a missing file or a metric its kind lacks fails before any work.
        func gateTask(_ s: RecipeSection) throws -> GateTask {
            let name = try s.required("task", s.string)
            let metric = try s.choice("metric", metrics.keys.sorted())
            let path = EvalTask.builtIn.contains(name) ? name : url(name).path
            let task: EvalTask
            do { task = try EvalTask.load(path, limit: 1) } catch { throw s.fail("task", s.node("task"), "\(error)") }
            if let metric, !GateEvaluation.metrics(task).contains(metric) {
                throw s.fail("metric", s.node("metric"), "a \(task.kind) task has no \(metric); expected one of \(GateEvaluation.metrics(task).joined(separator: ", "))")
            }
            return GateTask(task: path, metric: metric, limit: try s.int("limit", min: 1))
        }
        var gate = Gate(task: try gateTask(g))
        gate.margin = try g.double("margin", lower: 0) ?? 0
        gate.maxTokens = try g.int("max_tokens", min: 1) ?? gate.maxTokens
        gate.batchSize = try g.int("batch_size", min: 1) ?? gate.batchSize
        if let r = try g.section("no_regression", known: noRegressionKeys) {
            gate.noRegression = try gateTask(r)
            gate.tolerance = try r.double("tolerance", lower: 0) ?? 0
        }

        var c = PipelineConfiguration(file: file, inbox: url(try top.required("inbox", top.string)),
                                      work: url(try top.required("work", top.string)),
                                      versions: url(try top.required("versions", top.string)),
                                      teacher: teacher, recipe: recipe, recipeOverrides: overridesOfRecipe, gate: gate)
        c.initialStudent = try top.string("initial_student").map(url)
        c.pollSeconds = try top.double("poll_seconds", lower: 0, openLower: true) ?? c.pollSeconds
        if let d = try top.section("decontaminate", known: ["against", "ngram"]) {
            c.decontaminateAgainst = try d.required("against", d.strings).map { url($0).path }
            c.ngram = try d.int("ngram", min: 1) ?? c.ngram
            for f in c.decontaminateAgainst where !FileManager.default.fileExists(atPath: f) {
                throw d.fail("against", d.node("against"), "no such evaluation file \(f)")
            }
        }
        let dirs = [("inbox", c.inbox), ("work", c.work), ("versions", c.versions)]
        for (i, a) in dirs.enumerated() {
            for b in dirs[(i + 1)...] where a.1.path == b.1.path {
                throw top.fail(b.0, top.node(b.0), "must differ from \(a.0) (\(a.1.path))")
            }
        }
        // The recipe is checked now (keys, values, what the pipeline sets), not after the traces.
        _ = try c.recipe(student: c.initialStudent?.path ?? "student", train: "train.jsonl", output: "train")
        return c
    }

    /// The training recipe of one batch: the pipeline's recipe with its overrides, then the
    /// student (the current version), the batch's traces and its output directory.
    public func recipe(student: String, train: String, output: String) throws -> Recipe {
        let name = URL(fileURLWithPath: recipe).lastPathComponent
        if let text = FileManager.default.contents(atPath: recipe).flatMap({ String(data: $0, encoding: .utf8) }),
           let derive = try RecipeNode.parse(text, file: name, overrides: recipeOverrides).value(at: ["student", "derive"]), !derive.isNull {
            throw RecipeError(file: name, line: derive.line, key: "student.derive",
                              "the pipeline trains the current student version (it sets student.path); remove student.derive")
        }
        let r = try Recipe.load(recipe, overrides: recipeOverrides + [
            Recipe.pathOverride("student.path", student), Recipe.pathOverride("data.train", train), Recipe.pathOverride("output.dir", output),
        ])
        if r.lora != nil || r.prefix != nil {
            throw RecipeError(file: name, line: nil, key: r.lora != nil ? "lora" : "prefix",
                              "the pipeline promotes whole models; adapters (lora, prefix) are not supported here — merge them with distill lora merge and train the merged model")
        }
        return r
    }
}
