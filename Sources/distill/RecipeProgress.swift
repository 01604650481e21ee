import Distillation
import Foundation

/// Prints a training run's progress on standard error (`distill train`, `distill pipeline`):
/// the summary, a line every `every` steps with the ETA, evaluations, checkpoints, notes.
final class RecipeProgress {
    let every: Int
    let prefix: String
    var start = Date(), firstStep = 0, total: Int

    init(every: Int, totalSteps: Int, prefix: String = "") {
        self.every = max(1, every)
        self.total = totalSteps
        self.prefix = prefix
    }

    func log(_ s: String) { FileHandle.standardError.write((prefix + s + "\n").data(using: .utf8)!) }

    func handle(_ event: RecipeEvent) {
        switch event {
        case .prepared(let s):
            log("student \(s.studentParameters) parameters (\(s.trainableParameters) trainable)"
                + (s.teacherParameters.map { ", teacher \($0)" } ?? "")
                + "; \(s.trainSequences) training sequences (\(s.trainTokens) tokens), \(s.evalSequences) held out")
        case .training(.started(let step, let totalSteps, let from)):
            start = Date(); firstStep = step; total = totalSteps
            if let from { log("resumed from \(from.path) at step \(step)") }
        case .training(.step(let m)):
            guard m.step % every == 0 || m.step == total else { return }
            let done = m.step - firstStep, elapsed = Date().timeIntervalSince(start)
            let eta = done > 0 ? elapsed / Double(done) * Double(total - m.step) : 0
            var line = "step \(m.step)/\(total)  loss " + String(format: "%.4f", m.loss)
            if let s = m.soft { line += "  soft " + String(format: "%.4f", s) }
            if let h = m.hard { line += "  hard " + String(format: "%.4f", h) }
            line += "  lr " + String(format: "%.2e", m.learningRate) + "  " + String(format: "%.0f", m.tokensPerSecond) + " tok/s"
            line += "  ETA " + Train.duration(eta)
            log(line)
        case .training(.evaluated(let step, let loss)):
            log("step \(step): eval loss " + String(format: "%.4f", loss))
        case .training(.checkpointSaved(_, let url)):
            log("checkpoint \(url.path)")
        case .training(.finished):
            break
        case .note(let text):
            log("note: " + text)
        case let .saved(dir, adaptersOnly):
            log("wrote \(adaptersOnly ? "the adapter (adapter_config.json, adapter_model.safetensors)" : "the student") to \(dir.path)")
        }
    }
}
