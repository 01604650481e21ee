import ArgumentParser
import Distillation
import Foundation

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Trains a student as a YAML recipe describes (teacher, student, data, loss, schedule, LoRA, output); see recipes/README.md.")

    @Argument(help: "The recipe file (YAML).") var recipe: String
    @Option(help: "Override schedule.steps.") var steps: Int?
    @Option(help: "Override schedule.lr.") var lr: Double?
    @Option(help: "Override schedule.batch_size.") var batchSize: Int?
    @Option(help: "Override output.dir.") var out: String?
    @Option(help: "Override seed.") var seed: UInt64?
    @Option(name: .customLong("set"), help: "Override any field: --set key.path=value (repeatable), e.g. --set loss.alpha=0.7.")
    var overrides: [String] = []
    @Flag(help: "Continue from the newest checkpoint in the output directory.") var resume = false
    @Option(help: "Print a progress line every N steps.") var logEvery = 10

    /// Named flags first, then `--set` values (a later value wins).
    var allOverrides: [String] {
        Recipe.flagOverrides(steps: steps, lr: lr, batchSize: batchSize, out: out, seed: seed) + overrides
    }

    func run() throws {
        let r: Recipe
        do { r = try Recipe.load(recipe, overrides: allOverrides) } catch { throw CLIError("\(error)") }
        let every = max(1, logEvery)
        var start = Date(), firstStep = 0, total = r.schedule.steps
        func log(_ s: String) { FileHandle.standardError.write((s + "\n").data(using: .utf8)!) }
        do {
            try RecipeRunner.run(recipe: r, resume: resume) { event in
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
                    line += "  ETA " + Self.duration(eta)
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
        } catch { throw CLIError("\(error)") }
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        if t >= 3600 { return "\(t / 3600)h\(String(format: "%02d", t % 3600 / 60))m" }
        if t >= 60 { return "\(t / 60)m\(String(format: "%02d", t % 60))s" }
        return "\(t)s"
    }
}
