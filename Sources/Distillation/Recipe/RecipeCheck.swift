import DistillModels
import DistillTensor
import Foundation

/// What `RecipeCheck.run` found about a recipe before any training: findings (errors, warnings and
/// what checked out), the first examples as the student will see them, data statistics, the
/// measured cost of a step, and the disk the run needs.
public struct RecipeCheckReport: Codable {
    public enum Severity: String, Codable, Sendable { case ok, warning, error }

    public struct Finding: Codable, Equatable, Sendable {
        public var severity: Severity
        /// What it is about: output, models, tokenizer, template, data, training, disk.
        public var topic: String
        public var message: String
    }

    /// A run of consecutive tokens that do or do not carry loss, decoded.
    public struct Span: Codable, Equatable, Sendable {
        public var text: String
        public var loss: Bool
    }

    /// One training example rendered and tokenized as training will see it.
    public struct Example: Codable, Sendable {
        public var file: String
        public var line: Int
        public var tokens: Int
        public var lossTokens: Int
        public var spans: [Span]
    }

    /// One data file (or the held-out split of the training file).
    public struct DataStats: Codable, Sendable {
        /// "train", "eval", "eval (held out of train)" or "replay".
        public var role: String
        public var path: String
        public var examples: Int
        public var tokensMin: Int
        public var tokensMedian: Int
        public var tokensMax: Int
        public var lossTokens: Int
        /// Examples longer than data.max_length (cut); nil where not counted (a held-out split).
        public var truncated: Int?
    }

    /// Training steps measured on the real models and data.
    public struct StepCost: Codable, Sendable {
        public var stepsMeasured: Int
        /// The first step (it includes one-time work: buffers, caches).
        public var firstStepSeconds: Double
        /// The last measured step: the estimate's basis.
        public var secondsPerStep: Double
        public var peakResidentBytes: Int
        public var totalSteps: Int
        /// totalSteps × secondsPerStep (training steps only; evaluation and checkpoints add to it).
        public var estimatedSeconds: Double
    }

    /// What the run writes, against the free space where it writes.
    public struct Disk: Codable, Sendable {
        public var directory: String
        /// One checkpoint as written (measured).
        public var checkpointBytes: Int
        /// Checkpoints the schedule writes (all are kept).
        public var checkpoints: Int
        /// The final student (or adapter), estimated from the checkpoint's weights.
        public var outputBytes: Int
        public var neededBytes: Int
        public var freeBytes: Int?
    }

    public var recipe: String
    public var studentParameters: Int?
    public var trainableParameters: Int?
    public var teacherParameters: Int?
    public var findings: [Finding] = []
    public var examples: [Example] = []
    public var data: [DataStats] = []
    public var step: StepCost?
    public var disk: Disk?

    public var errors: Int { findings.filter { $0.severity == .error }.count }
    public var warnings: Int { findings.filter { $0.severity == .warning }.count }

    mutating func add(_ severity: Severity, _ topic: String, _ message: String) {
        findings.append(Finding(severity: severity, topic: topic, message: message))
    }
}

/// Pre-flight checks of a recipe (`distill check`): everything `distill train` would do before
/// its first step — models, tokenizers, chat template, data — then a few real training steps in a
/// scratch directory to measure time, memory and checkpoint size. Nothing is written into the
/// recipe's output directory.
public enum RecipeCheck {
    /// Checks `recipe` (read from `file`). `examples` examples are shown; `steps` training steps
    /// are measured (0: none).
    public static func run(recipe: Recipe, file: String, examples: Int = 3, steps: Int = 2) -> RecipeCheckReport {
        var report = RecipeCheckReport(recipe: file)
        let out = URL(fileURLWithPath: recipe.output.dir)
        let existing = Checkpoint.list(in: out.appendingPathComponent(RecipeRunner.checkpointsDirectory))
        if let last = existing.last {
            report.add(.warning, "output", "\(out.path) already holds checkpoints (the newest at step \(last.step)): "
                       + "`distill train` continues them only with --resume; a fresh run needs another output.dir")
        }

        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("distill-check-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        // The run as training would set it up, writing only into the scratch directory.
        var r = recipe
        r.schedule.evalEvery = nil
        r.schedule.checkpointEvery = nil
        let paths = RecipeRunner.OutputPaths(out: scratch, checkpoints: scratch.appendingPathComponent(RecipeRunner.checkpointsDirectory),
                                             metrics: scratch.appendingPathComponent(RecipeRunner.metricsFile))
        var notes: [String] = []
        let prepared: RecipeRunner.Prepared
        do {
            prepared = try RecipeRunner.prepare(r, paths: paths) { event in
                if case .note(let n) = event { notes.append(n) }
            }
        } catch {
            report.add(.error, "setup", "\(error)")
            return report
        }
        let m = prepared.models, lm = m.student.lm
        report.studentParameters = lm.parameterCount
        report.trainableParameters = lm.namedParameters().filter { !$0.parameter.isFrozen }.reduce(0) { $0 + $1.parameter.value.count }
        report.teacherParameters = m.teacher?.lm.parameterCount
        let student = recipe.student.derive != nil ? "student (derived from the teacher)" : "student \(m.student.path)"
        report.add(.ok, "models", "\(student): \(lm.parameterCount) parameters (\(report.trainableParameters!) trainable)"
                   + (m.teacher.map { ", teacher \($0.path): \($0.lm.parameterCount)" } ?? ""))
        checkTokenizers(recipe, m, into: &report)
        for n in notes where !n.contains("drops the reasoning") { report.add(.ok, "note", n) }
        checkTemplate(recipe, m, prepared.data, into: &report)
        showExamples(prepared.data, m.tokenizer, count: examples, into: &report)
        dataStatistics(recipe, m, prepared.data, into: &report)
        if steps > 0 { measure(recipe, prepared, steps: steps, into: &report) }
        return report
    }

    static func checkTokenizers(_ recipe: Recipe, _ m: RecipeRunner.Models, into report: inout RecipeCheckReport) {
        let tok = m.tokenizer, vocab = m.student.lm.config.vocabSize
        report.add(.ok, "tokenizer", "student tokenizer \(tok.fingerprint): \(tok.vocabSize) tokens for a vocabulary of \(vocab)"
                   + (tok.eosTokenIds.isEmpty ? "" : "; EOS " + tok.eosTokenIds.map { "\(tok.token(for: $0) ?? "?") (\($0))" }.joined(separator: ", ")))
        if tok.vocabSize > vocab {
            report.add(.warning, "tokenizer", "the tokenizer knows \(tok.vocabSize) tokens but the student's vocabulary has \(vocab): "
                       + "data holding the others cannot be trained on")
        }
        if tok.eosTokenIds.isEmpty {
            report.add(.warning, "tokenizer", "the tokenizer names no EOS token: nothing teaches the student to stop generating")
        }
        guard let teacher = m.teacher else { return }
        if let cross = m.crossTeacher {
            report.add(.ok, "tokenizer", "teacher and student tokenizers differ; loss.cross_tokenizer \(cross.loss.rawValue) compares them")
        } else if recipe.teacher?.serverTokens != nil {
            report.add(.ok, "tokenizer", "the teacher's targets come from a server as text")
        } else {
            report.add(.ok, "tokenizer", "teacher and student share a tokenizer and a vocabulary of \(teacher.lm.config.vocabSize)")
        }
    }

    /// The chat template against reasoning and ends of turns, when the data holds conversations.
    static func checkTemplate(_ recipe: Recipe, _ m: RecipeRunner.Models, _ d: RecipeRunner.TrainingData,
                              into report: inout RecipeCheckReport) {
        let conversations = d.trainFile.examples.contains { if case .messages = $0.example { return true }; return false }
        guard conversations, let template = RecipeRunner.chatTemplate(recipe, m) else { return }
        let tok = m.tokenizer
        func render(_ ms: [ChatMessage]) throws -> String {
            try template.render(messages: ms, addGenerationPrompt: false, bosToken: tok.bosToken, eosToken: tok.eosToken)
        }
        let user = ChatMessage(role: "user", content: "What is 2 + 3?")
        do {
            let reasoning = "add two and three to get five"
            let rendered = try render([user, ChatMessage(role: "assistant", content: "<think>\n\(reasoning)\n</think>\n\n5")])
            if rendered.contains(reasoning) {
                report.add(.ok, "template", "the chat template keeps reasoning (<think>…</think>) in assistant turns")
            } else {
                let kept = d.trainFile.examples.count
                report.add(.warning, "template", "the chat template drops the reasoning (<think>…</think>) of assistant turns: "
                           + "a student served with it never sees its own reasoning in earlier turns; for training, the last assistant "
                           + "turn of each of the \(kept) conversations is rendered keeping it (otherwise the student would learn "
                           + "to answer without reasoning)")
            }
            guard let end = try TextDataFile.assistantTurnEnd(after: [user], render: render) else {
                report.add(.warning, "template", "the chat template does not write an assistant message's content as it is: "
                           + "its end of turn cannot be found")
                return
            }
            let ids = tok.encode(end, addSpecialTokens: false)
            let shown = end.debugDescription
            if ids.contains(where: { tok.eosTokenIds.contains($0) }) {
                report.add(.ok, "template", "an assistant turn ends with \(shown), which holds the EOS token")
            } else if let special = ids.first(where: tok.isSpecial) {
                report.add(.warning, "template", "an assistant turn ends with \(shown): its end-of-turn token \(tok.token(for: special) ?? "\(special)") "
                           + "is not an EOS token of the tokenizer, so generation stops there only if the server is told to")
            } else {
                report.add(.warning, "template", "an assistant turn ends with \(shown), which holds no end-of-turn or EOS token: "
                           + (tok.eosTokenIds.isEmpty ? "the student has nothing to learn to stop with"
                              : "training appends the EOS token to every answer so that the student learns to stop, but the template "
                              + "will not show it to clients"))
            }
        } catch {
            report.add(.error, "template", "the chat template fails on a simple conversation: \(error)")
        }
    }

    /// The first `count` training examples (file order) split into runs that do and do not carry loss.
    static func showExamples(_ d: RecipeRunner.TrainingData, _ tok: Tokenizer, count: Int, into report: inout RecipeCheckReport) {
        for (i, seq) in d.allTrain.prefix(count).enumerated() {
            var spans: [RecipeCheckReport.Span] = [], run: [Int] = [], on = false
            for (k, id) in seq.ids.enumerated() {
                let counts = k > 0 && seq.counts(k)
                if counts != on && !run.isEmpty {
                    spans.append(.init(text: tok.decode(run), loss: on))
                    run = []
                }
                on = counts
                run.append(id)
            }
            if !run.isEmpty { spans.append(.init(text: tok.decode(run), loss: on)) }
            let loss = lossTokens(seq)
            report.examples.append(.init(file: d.trainFile.path, line: d.trainFile.examples[i].line, tokens: seq.ids.count,
                                         lossTokens: loss, spans: spans))
        }
    }

    /// Tokens of `s` that are targets (the first token never is: nothing predicts it).
    static func lossTokens(_ s: TokenSequence) -> Int { (1..<max(1, s.ids.count)).filter { s.counts($0) }.count }

    static func dataStatistics(_ recipe: Recipe, _ m: RecipeRunner.Models, _ d: RecipeRunner.TrainingData,
                               into report: inout RecipeCheckReport) {
        let maxLength = recipe.data.maxLength
        let template = RecipeRunner.chatTemplate(recipe, m)
        /// Examples longer than max_length, from the file tokenized uncut.
        func truncated(_ path: String, _ loaded: TextDataFile? = nil) -> Int? {
            guard let file = loaded ?? (try? TextDataFile(path: path)),
                  let whole = try? file.encoded(with: m.tokenizer, chatTemplate: template, assistantOnly: recipe.data.lossOn == .assistant)
            else { return nil }
            return whole.sequences.filter { $0.ids.count > maxLength }.count
        }
        func stats(_ role: String, _ path: String, _ seqs: [TokenSequence], truncated: Int?) -> RecipeCheckReport.DataStats {
            let lengths = seqs.map(\.ids.count).sorted()
            let loss = seqs.reduce(0) { $0 + lossTokens($1) }
            return .init(role: role, path: path, examples: seqs.count, tokensMin: lengths.first ?? 0,
                         tokensMedian: lengths.isEmpty ? 0 : lengths[lengths.count / 2], tokensMax: lengths.last ?? 0,
                         lossTokens: loss, truncated: truncated)
        }
        var all = [stats("train", recipe.data.train, d.allTrain, truncated: truncated(recipe.data.train, d.trainFile))]
        if let e = recipe.data.eval {
            all.append(stats("eval", e, d.eval, truncated: truncated(e)))
        } else if !d.eval.isEmpty {
            all.append(stats("eval (held out of train)", recipe.data.train, d.eval, truncated: nil))
        }
        if let r = recipe.replay { all.append(stats("replay", r.data, d.replay, truncated: truncated(r.data, d.replayFile))) }
        report.data = all
        for s in all {
            if let t = s.truncated, t > 0 {
                let share = Double(t) / Double(max(1, s.examples))
                report.add(share >= 0.1 ? .warning : .ok, "data",
                           String(format: "%@ %@: %d of %d examples (%.1f%%) are longer than data.max_length %d and are cut",
                                  s.role, s.path, t, s.examples, 100 * share, maxLength)
                           + (recipe.data.lossOn == .assistant ? " (their answers lose their ends)" : ""))
            }
        }
        if d.eval.isEmpty {
            report.add(.warning, "data", "no held-out data (data.eval or data.eval_fraction): the run reports no evaluation loss")
        }
    }

    /// Runs `steps` training steps, writes one checkpoint, and estimates the run's time and disk.
    static func measure(_ recipe: Recipe, _ p: RecipeRunner.Prepared, steps: Int, into report: inout RecipeCheckReport) {
        let trainer = p.trainer
        let total = recipe.schedule.steps
        do { try FileManager.default.createDirectory(at: p.trainer.configuration.metricsLog!.deletingLastPathComponent(),
                                                     withIntermediateDirectories: true) } catch {
            report.add(.error, "disk", "cannot create a scratch directory: \(error)")
            return
        }
        var times: [Double] = []
        var last = DispatchTime.now().uptimeNanoseconds
        trainer.onEvent = { event in
            switch event {
            case .started: last = DispatchTime.now().uptimeNanoseconds
            case .step:
                let now = DispatchTime.now().uptimeNanoseconds
                times.append(Double(now - last) / 1e9)
                last = now
            default: break
            }
        }
        do {
            try trainer.run(until: min(steps, total))
        } catch {
            report.add(.error, "training", "a training step failed: \(error)")
            return
        }
        if let first = times.first, let per = times.last {
            report.step = .init(stepsMeasured: times.count, firstStepSeconds: first, secondsPerStep: per,
                                peakResidentBytes: ProcessMemory.peakResidentBytes(), totalSteps: total,
                                estimatedSeconds: per * Double(total))
        }
        let checkpoint: URL
        do { checkpoint = try trainer.saveCheckpoint() } catch {
            report.add(.error, "disk", "writing a checkpoint failed: \(error)")
            return
        }
        let bytes = directoryBytes(checkpoint)
        let every = recipe.schedule.checkpointEvery
        let count = every.map { total / $0 + (total % $0 == 0 ? 0 : 1) } ?? 0
        let weights = fileBytes(checkpoint.appendingPathComponent("model.safetensors"))
        let trainable = report.trainableParameters ?? 0
        let output = recipe.lora != nil || recipe.prefix != nil ? trainable * 4 : weights
        let needed = bytes * count + output
        let out = URL(fileURLWithPath: recipe.output.dir)
        let free = freeBytes(near: out)
        report.disk = .init(directory: out.path, checkpointBytes: bytes, checkpoints: count, outputBytes: output, neededBytes: needed,
                            freeBytes: free)
        let mb = { (b: Int) in String(format: "%.1f MB", Double(b) / 1e6) }
        if let free, needed > free {
            report.add(.error, "disk", "the run writes about \(mb(needed)) (\(count) checkpoints of \(mb(bytes)) and the student) "
                       + "but \(out.path) has \(mb(free)) free")
        } else if let free, Double(needed) > 0.8 * Double(free) {
            report.add(.warning, "disk", "the run writes about \(mb(needed)), most of the \(mb(free)) free at \(out.path)")
        } else {
            report.add(.ok, "disk", "the run writes about \(mb(needed))" + (free.map { "; \(mb($0)) free" } ?? ""))
        }
    }

    static func fileBytes(_ url: URL) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber)?.intValue ?? 0
    }

    /// Bytes of the regular files under `url` (a directory's own size attribute is its file
    /// system's bookkeeping — 4096 on ext4, entry names on tmpfs — not what the files take).
    static func directoryBytes(_ url: URL) -> Int {
        let names = (try? FileManager.default.subpathsOfDirectory(atPath: url.path)) ?? []
        return names.reduce(0) { total, name in
            let a = try? FileManager.default.attributesOfItem(atPath: url.appendingPathComponent(name).path)
            guard a?[.type] as? FileAttributeType == .typeRegular else { return total }
            return total + ((a?[.size] as? NSNumber)?.intValue ?? 0)
        }
    }

    /// Free bytes on the file system that holds `url` (or its nearest existing ancestor).
    static func freeBytes(near url: URL) -> Int? {
        var dir = url.standardizedFileURL
        while !FileManager.default.fileExists(atPath: dir.path) && dir.path != "/" { dir.deleteLastPathComponent() }
        let attributes = try? FileManager.default.attributesOfFileSystem(forPath: dir.path)
        return (attributes?[.systemFreeSize] as? NSNumber)?.intValue
    }
}
