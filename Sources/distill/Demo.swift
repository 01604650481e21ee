import ArgumentParser
import Distillation
import DistillDemos
import DistillEval
import DistillModels
import Foundation

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Runs a distillation end to end on built-in data.",
        discussion: """
        --task word-problems (default): the reasoning-trace chain, DeepSeek-R1 style. The teacher in
        --teacher (a 0.8M-parameter model Distill trained from scratch, demo/teacher; --train-teacher
        DIR remakes it) writes step-by-step traces (<think>…</think> then "#### answer") through the
        teacher-client interface for --train-prompts problems that have ground-truth solutions
        (kept when the answer is right) and --unlabeled-prompts problems given as questions only
        (kept when its samples agree: self-consistency); rejection sampling also drops malformed and
        duplicate traces. Two students of the same size, pruned from the teacher (its --student-layers
        layers, each keeping its most important key/value group of heads and --student-intermediate
        MLP neurons; at most a quarter of its parameters), train for the same steps from the same
        weights: the baseline on the ground-truth solutions, the distilled one on the kept traces
        plus the teacher's soft targets (--alpha, --kd-temperature; the teacher's logits for each
        trace are computed once and remembered; optionally --feature-weight, --on-policy). All
        three answer held-out problems. Writes traces.jsonl, stats.json, the two students,
        report.json and report.html into --out-dir (about 9 minutes on 2 cores; the students train side by side).

        --task addition: the small first demo: trains a teacher transformer on two-digit addition,
        then two students a quarter of its size for the same number of steps on the same examples:
        one on ground-truth answers only, one also matching the teacher's soft targets (0.5·KL at
        τ=2 + 0.5·cross-entropy). Prints held-out accuracy, loss, parameters and decode speed;
        writes report.json (--out); about 1–2 minutes.
        """)

    enum Task: String, ExpressibleByArgument { case addition, wordProblems = "word-problems" }

    @Option(help: "word-problems | addition.") var task: Task = .wordProblems
    @Option(help: "Training steps for each student [addition 1500, word-problems 4000].") var studentSteps: Int?
    @Option(help: "Random seed [addition 42, word-problems 7].") var seed: UInt64?
    @Flag(help: "Print the report as JSON instead of a table.") var json = false
    // addition
    @Option(help: "addition: teacher training steps; with --train-teacher: its steps [3000].") var teacherSteps: Int?
    @Option(help: "addition: examples the students see.") var studentExamples = 600
    @Option(help: "addition: where to write report.json.") var out = "report.json"
    // word-problems
    @Option(help: "word-problems: the teacher model directory.") var teacher = "demo/teacher"
    @Option(help: "word-problems: directory for traces, statistics, the students and report.json.") var outDir = "demo-run"
    @Option(help: "word-problems: training problems with ground-truth solutions (the baseline's data; traces checked against their answers).") var trainPrompts = 2000
    @Option(help: "word-problems: further problems the teacher gets as questions only; their traces are kept when its samples agree on the answer.") var unlabeledPrompts = 6000
    @Option(help: "word-problems: held-out problems.") var testPrompts = 300
    @Option(help: "word-problems: candidate traces per problem.") var samples = 2
    @Option(help: "word-problems: student decoder layers (derived from the teacher).") var studentLayers = 4
    @Option(help: "word-problems: student MLP width (the teacher's most important neurons).") var studentIntermediate = 47
    @Option(help: "word-problems: student attention heads (fewer than the teacher's: its most important key/value groups kept).") var studentHeads = 2
    @Option(help: "word-problems: student key/value heads.") var studentKvHeads = 1
    @Option(help: "word-problems: students' peak learning rate.") var studentLr: Float = 2e-3
    @Option(help: "word-problems: sequences per student step.") var studentBatch = 16
    @Option(help: ArgumentHelp("word-problems: teacher layers the students copy, comma-separated (default: first and last).", valueName: "i,j,…"))
    var studentLayerMap: String?
    @Option(help: "word-problems: weight of the soft (KL) term in the distilled student's loss, 0...1.") var alpha: Float = 0.5
    @Option(help: "word-problems: KD temperature.") var kdTemperature: Float = 2
    @Option(help: "word-problems: weight of the hidden-state (feature) term in the distilled student's loss.") var featureWeight: Float = 0
    @Option(help: "word-problems: share of the distilled student's steps on its own samples scored by the teacher (on-policy), 0...1.") var onPolicy = 0.0
    @Option(help: "Train the word-problems teacher from scratch into this directory (resumable) and stop.") var trainTeacher: String?

    func run() throws {
        if let dir = trainTeacher { return try makeTeacher(dir) }
        switch task {
        case .addition: try runAddition()
        case .wordProblems: try runWordProblems()
        }
    }

    func runAddition() throws {
        let teacherSteps = self.teacherSteps ?? 1500, studentSteps = self.studentSteps ?? 1500
        guard teacherSteps > 0, studentSteps > 0 else { throw ValidationError("step counts must be positive") }
        guard studentExamples > 0 && studentExamples <= 9000 else { throw ValidationError("--student-examples must be in 1...9000") }
        var o = ArithmeticDemo.Options()
        o.teacherSteps = teacherSteps
        o.studentSteps = studentSteps
        o.studentExamples = studentExamples
        o.seed = seed ?? 42
        let report = ArithmeticDemo.run(o) { event in
            guard !json else { return }
            switch event {
            case let .training(model, step, total, loss):
                FileHandle.standardError.write("\r\(model): step \(step)/\(total) loss \(String(format: "%.4f", loss))   \(step == total ? "\n" : "")".data(using: .utf8)!)
            case .evaluating(let model):
                FileHandle.standardError.write("evaluating \(model)\n".data(using: .utf8)!)
            }
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.keyEncodingStrategy = .convertToSnakeCase
        let data = try enc.encode(report)
        try data.write(to: URL(fileURLWithPath: out), options: .atomic)
        if json { print(String(data: data, encoding: .utf8)!); return }
        print("\nmodel               params   accuracy   held-out loss   decode tokens/s")
        for (name, r) in [("teacher", report.teacher), ("baseline student", report.baselineStudent),
                          ("distilled student", report.distilledStudent)] {
            print(pad(name, 20) + pad("\(r.params)", 9) + pad(String(format: "%.1f%%", 100 * r.accuracy), 11)
                  + pad(String(format: "%.4f", r.heldOutLoss), 16) + String(format: "%.0f", r.tokensPerSecond))
        }
        print(String(format: "\n%.1f s in all; report written to %@", report.seconds, out))
    }

    func runWordProblems() throws {
        let studentSteps = self.studentSteps ?? 4000
        guard trainPrompts > 0, unlabeledPrompts >= 0, testPrompts > 0, samples > 0, studentSteps > 0, studentLayers > 0, studentIntermediate > 0, studentLr > 0, studentBatch > 0, studentHeads > 0, studentKvHeads > 0,
              (0...1).contains(alpha), kdTemperature > 0, featureWeight >= 0, (0...1).contains(onPolicy) else {
            throw ValidationError("--train-prompts, --test-prompts, --samples, --student-steps, --student-layers, --student-intermediate, --student-lr, --student-batch, --student-heads, --student-kv-heads and --kd-temperature must be positive, --unlabeled-prompts ≥ 0, --alpha and --on-policy in 0...1, --feature-weight ≥ 0")
        }
        var o = ReasoningDemo.Options()
        o.teacherPath = teacher
        o.outputDirectory = outDir
        o.trainPrompts = trainPrompts
        o.unlabeledPrompts = unlabeledPrompts
        o.testPrompts = testPrompts
        o.samplesPerPrompt = samples
        o.studentSteps = studentSteps
        o.studentLayers = studentLayers
        o.studentIntermediate = studentIntermediate
        o.learningRate = studentLr
        o.batchSize = studentBatch
        o.studentHeads = studentHeads
        o.studentKVHeads = studentKvHeads
        do { o.studentLayerMap = try studentLayerMap.map { try StudentOptions.parseLayerMap($0, option: "--student-layer-map") } } catch { throw ValidationError("\(error)") }
        o.alpha = alpha
        o.temperature = kdTemperature
        o.featureWeight = featureWeight
        o.onPolicyFraction = onPolicy
        o.seed = seed ?? 7
        let quiet = json
        func log(_ s: String) { if !quiet { FileHandle.standardError.write(s.data(using: .utf8)!) } }
        let students = ProgressLines()
        let report: ReasoningDemo.Report
        do {
            report = try runBlocking {
                try await ReasoningDemo.run(o) { event in
                    switch event {
                    case .loaded(let n): log("teacher: \(n) parameters (\(o.teacherPath))\n")
                    case let .traces(done, total, kept):
                        log("\rtraces: \(done)/\(total) problems" + (kept.map { ", \($0) kept\n" } ?? ""))
                    case let .training(model, step, total, loss):
                        // The two students train side by side: one line shows both.
                        let line = students.update(model, "\(model): step \(step)/\(total) loss \(String(format: "%.4f", loss))",
                                                   finished: step == total)
                        log("\r" + line.text + "   " + (line.allFinished ? "\n" : ""))
                    case .evaluating(let model): log("evaluating \(model)\n")
                    }
                }
            }
        } catch { throw CLIError("\(error)") }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.keyEncodingStrategy = .convertToSnakeCase
        if json { print(String(data: try enc.encode(report), encoding: .utf8)!); return }
        print("\nmodel               params   accuracy   decode tokens/s   latency")
        for (name, r) in [("teacher", report.teacher), ("baseline student", report.baselineStudent),
                          ("distilled student", report.distilledStudent)] {
            print(pad(name, 20) + pad("\(r.params)", 9) + pad(String(format: "%.1f%%", 100 * r.accuracy), 11)
                  + pad(String(format: "%.0f", r.tokensPerSecond), 18) + String(format: "%.0f ms", r.latencyMs))
        }
        print("\ndistilled student as GGUF (llama.cpp)   file        accuracy   decode tokens/s   latency")
        for d in report.distilledDeployed {
            print(pad("  " + d.type.uppercased(), 40) + pad(String(format: "%.2f MB", Double(d.fileBytes) / 1e6), 12)
                  + pad(String(format: "%.1f%%", 100 * d.result.accuracy), 11)
                  + pad(String(format: "%.0f", d.result.tokensPerSecond), 18) + String(format: "%.0f ms", d.result.latencyMs))
        }
        print(String(format: "\ntraces: %.1f%% of candidates accepted, %d kept for %d labeled + %d unlabeled problems (%d from the unlabeled)",
                     100 * report.traceAcceptanceRate, report.tracesKept, report.trainPrompts, report.unlabeledPrompts,
                     report.unlabeledTracesKept))
        print(String(format: "%.1f s in all; report written to %@/report.json", report.seconds, outDir))
        do { try writeHTMLReport() } catch { throw CLIError("report.html: \(error)") }
        print("report with charts: \(outDir)/report.html")
    }

    /// report.html: the three models and the distilled student's Q8_0 and Q4_K_M GGUF exports
    /// through `distill eval` (100 held-out problems, agreement with the teacher, speed, size), the distilled student's training curves, and attention maps of the
    /// teacher's and the distilled student's last layers on one problem.
    func writeHTMLReport() throws {
        let dir = URL(fileURLWithPath: outDir)
        let students = ["baseline_student", "distilled_student"].map { dir.appendingPathComponent($0).path }
        var o = EvalOptions()
        o.maxTokens = 64
        o.speedRequests = 4
        o.speedNewTokens = 32
        o.speedProbe = EvalSpeed.probe(task: "word-problems", limit: 100, options: o)
        let deployed = ["q8_0", "q4_k_m"].map { t in
            ModelSpec(name: "distilled student \(t.uppercased())", path: dir.appendingPathComponent("distilled_student-\(t).gguf").path)
        }
        var r = try Evaluator.run(models: [ModelSpec(name: "teacher", path: teacher, isTeacher: true),
                                           ModelSpec(name: "baseline student", path: students[0]),
                                           ModelSpec(name: "distilled student", path: students[1])] + deployed,
                                  task: try EvalTask.load("word-problems", limit: 100), taskName: "word-problems", options: o)
        r.title = "distill demo: reasoning-trace distillation on word problems"
        r.training = try TrainingCurves.load(metrics: students[1] + "/metrics.jsonl")
        let example = "Gia buys 4 bags with 8 marbles in each bag. She gives 28 to Leo."
        for (name, path) in [("teacher", teacher), ("distilled student", students[1])] {
            let m = try PretrainedModel.load(path)
            r.attention.append(try AttentionMaps.map(m, name: name, text: example, layer: m.lm.config.layers - 1, head: 0, maxTokens: 24))
        }
        r.notes.append("report.json in this directory holds the demo's own figures (300 held-out problems); this page evaluates 100 problems.")
        try Data(r.html().utf8).write(to: dir.appendingPathComponent("report.html"), options: .atomic)
    }

    func makeTeacher(_ dir: String) throws {
        let start = Date()
        try DemoModels.trainTeacher(out: dir, steps: teacherSteps ?? 3000) { event in
            switch event {
            case let .step(m, total):
                if m.step % 20 == 0 {
                    print(String(format: "step %d/%d loss %.4f %.0f tok/s %.0fs", m.step, total, m.loss, m.tokensPerSecond,
                                 Date().timeIntervalSince(start)))
                    fflush(stdout)
                }
            case let .evaluated(step, acc):
                print(String(format: "step %d: held-out accuracy %.1f%%", step, 100 * acc)); fflush(stdout)
            }
        }
        print("teacher written to \(dir)")
    }
}

/// The latest progress text of jobs reported from several threads, joined into one line.
final class ProgressLines: @unchecked Sendable {
    private let lock = NSLock()
    private var order: [String] = []
    private var texts: [String: String] = [:]
    private var finished: Set<String> = []

    func update(_ job: String, _ text: String, finished done: Bool) -> (text: String, allFinished: Bool) {
        lock.withLock {
            if texts[job] == nil { order.append(job) }
            texts[job] = text
            if done { finished.insert(job) }
            let all = finished.count == order.count
            return (order.map { texts[$0]! }.joined(separator: " | "), all)
        }
    }
}

