import DistillData
import DistillModels
import DistillTensor
import Foundation

extension TrainingCurves {
    /// Reads a run's `metrics.jsonl` (one object per step: `step`, `loss`, optional `eval_loss`
    /// and the loss terms `soft`, `hard`, `feature`, `attention`). A phase starts wherever the set
    /// of active loss terms changes (e.g. "hard" → "soft + hard + feature"), which marks the stages
    /// of a progressive schedule. A cut last line (a crash while writing) is skipped.
    public static func load(metrics path: String) throws -> TrainingCurves {
        let lines = try TraceJSONL.lines(path: path)
        var train: [Point] = [], validation: [Point] = [], phases: [Phase] = []
        var lastTerms: String?
        for (i, (line, text)) in lines.enumerated() {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
                if i == lines.count - 1 { continue }
                throw TraceDataError.line(file: path, line: line, reason: "not a JSON object (expected a metrics line with \"step\" and \"loss\")")
            }
            guard let step = (obj["step"] as? NSNumber)?.intValue, let loss = (obj["loss"] as? NSNumber)?.doubleValue else {
                throw TraceDataError.line(file: path, line: line, reason: "missing \"step\" or \"loss\"")
            }
            train.append(Point(step: step, value: loss))
            if let e = (obj["eval_loss"] as? NSNumber)?.doubleValue { validation.append(Point(step: step, value: e)) }
            let terms = ["soft", "hard", "feature", "attention"].filter { obj[$0] is NSNumber }.joined(separator: " + ")
            if terms != lastTerms {
                phases.append(Phase(name: terms.isEmpty ? "loss" : terms, startStep: step))
                lastTerms = terms
            }
        }
        guard !train.isEmpty else { throw TraceDataError.file(file: path, reason: "no metrics lines") }
        return TrainingCurves(train: train, validation: validation, phases: phases.count > 1 ? phases : [])
    }
}

public enum AttentionMaps {
    /// The attention probabilities of `layer`/`head` of `model` on `text` (tokens as the
    /// tokenizer decodes them one by one; at most `maxTokens`).
    public static func map(_ model: PretrainedModel, name: String, text: String, layer: Int, head: Int, maxTokens: Int = 32) throws -> AttentionMap {
        let c = model.lm.config
        guard (0..<c.layers).contains(layer) else { throw EvalError.invalidInput("\(name): layer \(layer) is outside 0..<\(c.layers)") }
        guard (0..<c.heads).contains(head) else { throw EvalError.invalidInput("\(name): head \(head) is outside 0..<\(c.heads)") }
        let tok = try model.requireTokenizer()
        let ids = Array(tok.encode(text).prefix(maxTokens))
        guard !ids.isEmpty else { throw EvalError.invalidInput("the attention example is empty") }
        let t = ids.count
        let probs = withoutGradients {
            model.lm.forward(ids, batch: 1, length: t, outputAttentions: true).attentions[layer].scalars
        }
        let base = head * t * t
        let weights = (0..<t).map { i in (0..<t).map { j in Double(probs[base + i * t + j]) } }
        return AttentionMap(model: name, layer: layer, head: head, tokens: ids.map { tok.decode([$0]) }, weights: weights)
    }
}

/// `distill report RUN_DIR`: the report of a training run — its loss curves with phase markers,
/// optionally the models' comparison (an evaluation's report.json) and attention maps of the
/// teacher and the trained student on one example.
public enum RunReport {
    public struct Options {
        public var runDirectory: String
        /// A `distill eval` report.json whose models join the report.
        public var evaluation: String?
        public var teacher: String?
        public var student: String?
        public var example: String?
        public var teacherLayer: Int?
        public var studentLayer: Int?
        public var head = 0

        public init(runDirectory: String) { self.runDirectory = runDirectory }
    }

    public static func build(_ o: Options) throws -> EvalReport {
        let dir = URL(fileURLWithPath: o.runDirectory)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir), isDir.boolValue else {
            throw EvalError.invalidInput("\(o.runDirectory): no such run directory")
        }
        let metrics = dir.appendingPathComponent("metrics.jsonl").path
        var report = EvalReport(title: "Training run: \(dir.lastPathComponent)")
        if FileManager.default.fileExists(atPath: metrics) { report.training = try TrainingCurves.load(metrics: metrics) }
        if let e = o.evaluation {
            guard let data = FileManager.default.contents(atPath: e) else { throw EvalError.invalidInput("\(e): cannot read the evaluation report") }
            let dec = JSONDecoder()
            dec.keyDecodingStrategy = .convertFromSnakeCase
            do {
                let ev = try dec.decode(EvalReport.self, from: data)
                report.models = ev.models
                report.task = ev.task
            } catch { throw EvalError.invalidInput("\(e): not a distill eval report.json (\(error))") }
        }
        if let example = o.example {
            let teacherPath = try o.teacher ?? recipeTeacher(dir)
            let studentPath = o.student ?? dir.path
            for (name, path, layer) in [("teacher", teacherPath, o.teacherLayer), ("student", studentPath, o.studentLayer)] {
                guard let path else { throw EvalError.invalidInput("no \(name) for the attention maps (give --\(name))") }
                let m: PretrainedModel
                do { m = try PretrainedModel.load(path) } catch { throw EvalError.invalidInput("\(path): cannot load the \(name): \(error)") }
                report.attention.append(try AttentionMaps.map(m, name: name, text: example, layer: layer ?? (m.lm.config.layers - 1), head: o.head))
            }
        }
        guard report.training != nil || !report.models.isEmpty || !report.attention.isEmpty else {
            throw EvalError.invalidInput("\(o.runDirectory): nothing to report (no metrics.jsonl; give --eval or --example)")
        }
        report.notes.append("run directory: \(dir.path)")
        return report
    }

    /// The teacher path of the run's recipe.json, if any.
    static func recipeTeacher(_ dir: URL) throws -> String? {
        guard let data = FileManager.default.contents(atPath: dir.appendingPathComponent("recipe.json").path),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let teacher = obj["teacher"] as? [String: Any] else { return nil }
        return teacher["path"] as? String
    }
}
