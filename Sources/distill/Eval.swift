import ArgumentParser
import DistillEval
import Foundation

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluates models side by side on one task: task metrics, teacher agreement, speed and memory; writes report.json and report.html.",
        discussion: """
        TASK is a built-in task (word-problems) or a file: .jsonl items, one kind per file —
          {"prompt": …, "answer": …}                      reasoning: accuracy, template compliance, reasoning success
          {"prompt": …, "choices": […], "label": …}       classification by log-likelihood: accuracy, macro-F1
          {"prompt": …, "reference": …}  or "references"   generation: BLEU, ROUGE-1/2/L
        or a .txt text: perplexity. A model given as PATH,adapter=DIR is PATH with the LoRA adapter DIR \
        merged in (as --adapter does elsewhere). With --teacher, each other model also gets top-1 token agreement
        and mean KL(teacher‖student) on held-out sequences, and answer agreement on the task.
        Speed: batch-1 greedy requests over the task's first prompts, the same for every model.
        """)

    @Option(name: .customLong("model"), help: "A model to evaluate (directory or .gguf, or PATH,adapter=DIR); repeatable.") var models: [String] = []
    @Option(help: "The teacher (PATH or PATH,adapter=DIR): evaluated too, and the reference for agreement.") var teacher: String?
    @Option(help: "word-problems, or a .jsonl / .txt file.") var task: String
    @Option(help: "Evaluate the first N items (word-problems: N problems) [word-problems 200, files all].") var limit: Int?
    @Option(help: "Longest generated answer, tokens.") var maxTokens = 256
    @Option(help: "Prompts generated together.") var batchSize = 16
    @Flag(help: "Skip the speed measurement.") var noSpeed = false
    @Option(help: "Speed: timed batch-1 requests per model.") var speedRequests = 8
    @Option(help: "Speed: tokens generated per request.") var speedTokens = 64
    @Option(help: "Directory for report.json and report.html.") var out: String?
    @Flag(help: "Print the report as JSON.") var json = false

    func run() throws {
        guard !models.isEmpty || teacher != nil else { throw ValidationError("give at least one --model (or a --teacher)") }
        guard maxTokens > 0, batchSize > 0, speedRequests > 0, speedTokens > 0, (limit ?? 1) > 0 else {
            throw ValidationError("--limit, --max-tokens, --batch-size, --speed-requests and --speed-tokens must be positive")
        }
        var specs: [ModelSpec] = []
        if let teacher { specs.append(try Self.spec(teacher, name: "teacher", isTeacher: true)) }
        specs += try models.map { try Self.spec($0) }
        var seen: [String: Int] = [:]
        for i in specs.indices {
            seen[specs[i].name, default: 0] += 1
            if seen[specs[i].name]! > 1 { specs[i].name += " (\(seen[specs[i].name]!))" }
        }
        var o = EvalOptions()
        o.maxTokens = maxTokens
        o.batchSize = batchSize
        o.measureSpeed = !noSpeed
        o.speedRequests = speedRequests
        o.speedNewTokens = speedTokens
        o.speedProbe = EvalSpeed.probe(task: task, limit: limit, options: o)
        let quiet = json
        func log(_ s: String) { if !quiet { FileHandle.standardError.write(s.data(using: .utf8)!) } }
        let start = Date()
        var report: EvalReport
        do {
            let t = try EvalTask.load(task, limit: limit)
            report = try Evaluator.run(models: specs, task: t, taskName: task, options: o) { event in
                switch event {
                case .loading(let m): log("\(m): loading\n")
                case let .task(m, done, total): log("\r\(m): \(done)/\(total) items" + (done == total ? "\n" : ""))
                case .agreement(let m): log("\(m): agreement with the teacher\n")
                case .speed(let m): log("\(m): speed\n")
                }
            }
        } catch { throw CLIError("\(error)") }
        report.notes.append(String(format: "distill eval, %.1f s", Date().timeIntervalSince(start)))
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.keyEncodingStrategy = .convertToSnakeCase
        let data = try enc.encode(report)
        if let out {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try data.write(to: URL(fileURLWithPath: out).appendingPathComponent("report.json"), options: .atomic)
            try Data(report.html().utf8).write(to: URL(fileURLWithPath: out).appendingPathComponent("report.html"), options: .atomic)
        }
        if json { print(String(data: data, encoding: .utf8)!); return }
        print(EvalTable.render(report))
        if let out { print("report: \(out)/report.json, \(out)/report.html") }
    }
}

extension Eval {
    /// A model argument: PATH, or PATH,adapter=DIR (named after both).
    static func spec(_ argument: String, name: String? = nil, isTeacher: Bool = false) throws -> ModelSpec {
        var path = argument, adapter: String?
        if let r = argument.range(of: ",adapter=") {
            path = String(argument[..<r.lowerBound])
            adapter = String(argument[r.upperBound...])
            guard !path.isEmpty, !adapter!.isEmpty else {
                throw ValidationError("'\(argument)': expected PATH,adapter=DIR with both parts")
            }
        }
        let base = URL(fileURLWithPath: path).lastPathComponent
        let shown = name ?? (adapter.map { base + "+" + URL(fileURLWithPath: $0).lastPathComponent } ?? base)
        return ModelSpec(name: shown, path: path, adapter: adapter, isTeacher: isTeacher)
    }
}

/// `distill eval-speed` (hidden): one model's speed and peak memory in a process of its own, as
/// JSON; `distill eval` and the demo run it once per model.
struct EvalSpeed: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "eval-speed", abstract: "Internal: one model's speed and memory as JSON.",
                                                    shouldDisplay: false)

    @Option var model: String
    @Option var adapter: String?
    @Option var task: String
    @Option var limit: Int?
    @Option var speedRequests = 8
    @Option var speedTokens = 64

    func run() throws {
        var o = EvalOptions()
        o.speedRequests = speedRequests
        o.speedNewTokens = speedTokens
        let s: SpeedMeasurement
        do { s = try SpeedProbe.measure(ModelSpec(name: model, path: model, adapter: adapter), task: try EvalTask.load(task, limit: limit), options: o) } catch {
            throw CLIError("\(error)")
        }
        let enc = JSONEncoder()
        enc.keyEncodingStrategy = .convertToSnakeCase
        print(String(data: try enc.encode(s), encoding: .utf8)!)
    }

    /// A probe that runs this executable's `eval-speed` for each model.
    static func probe(task: String, limit: Int?, options o: EvalOptions) -> @Sendable (ModelSpec) throws -> SpeedMeasurement {
        let exe = Bundle.main.executablePath ?? CommandLine.arguments[0]
        var args = ["eval-speed", "--task", task, "--speed-requests", "\(o.speedRequests)", "--speed-tokens", "\(o.speedNewTokens)"]
        if let limit { args += ["--limit", "\(limit)"] }
        return SpeedProbe.childProcess(executable: exe, arguments: args)
    }
}
