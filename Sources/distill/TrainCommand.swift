import ArgumentParser
import Distillation
import DistillTensor
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
        let progress = RecipeProgress(every: logEvery, totalSteps: r.schedule.steps)
        try inProcessGroup { group in
            if let group, group.isMain {
                progress.log("data-parallel over \(group.size) processes (\(group.library)); gradients all-reduced "
                             + (group.callsFromAnyThread ? "while the backward pass runs" : "after the backward pass (the library allows MPI calls from one thread only)")
                             + "; rank 0 writes the outputs")
            }
            try RecipeRunner.run(recipe: r, resume: resume, processGroup: group,
                                 onEvent: group?.isMain ?? true ? progress.handle : { _ in })
        }
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        if t >= 3600 { return "\(t / 3600)h\(String(format: "%02d", t % 3600 / 60))m" }
        if t >= 60 { return "\(t / 60)m\(String(format: "%02d", t % 60))s" }
        return "\(t)s"
    }
}
