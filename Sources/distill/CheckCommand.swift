import ArgumentParser
import Distillation
import Foundation

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pre-flight check of a training recipe: models, tokenizers, chat template, data, step time, memory and disk, without training.",
        discussion: """
        Loads the recipe's teacher and student and tokenizes its data as `distill train` would; shows \
        the first examples as the student sees them, with the text that carries loss between « and »; \
        warns about a chat template that drops reasoning (<think>…</think>) or ends assistant turns \
        without an end-of-turn or EOS token, about cut examples and a full disk; then runs --steps \
        real training steps in a scratch directory and prints the time per step, the memory, the \
        estimated total and the checkpoint size. Nothing is written into output.dir. Exits non-zero \
        when an error is found (with --strict, also on warnings).
        """)

    @Argument(help: "The recipe file (YAML).") var recipe: String
    @Option(name: .customLong("set"), help: "Override any field: --set key.path=value (repeatable), as for train.")
    var overrides: [String] = []
    @Option(help: "Training examples to show.") var examples = 3
    @Option(help: "Training steps to measure (0: none).") var steps = 2
    @Flag(help: "Fail on warnings too.") var strict = false
    @Flag(help: "Print the report as JSON.") var json = false

    func validate() throws {
        guard examples >= 0 else { throw ValidationError("--examples must be at least 0") }
        guard steps >= 0 else { throw ValidationError("--steps must be at least 0") }
    }

    func run() throws {
        let r: Recipe
        do { r = try Recipe.load(recipe, overrides: overrides) } catch { throw CLIError("\(error)") }
        let report = RecipeCheck.run(recipe: r, file: recipe, examples: examples, steps: steps)
        if json { try printJSON(report) } else { Self.print(report) }
        if report.errors > 0 { throw CLIError("check: \(report.errors) error\(report.errors == 1 ? "" : "s") found") }
        if strict && report.warnings > 0 { throw CLIError("check: \(report.warnings) warning\(report.warnings == 1 ? "" : "s") (--strict)") }
    }

    static func print(_ r: RecipeCheckReport) {
        let out = { (s: String) in Swift.print(s) }
        out("recipe \(r.recipe)")
        for e in r.examples {
            out("\nexample: \(e.file) line \(e.line), \(e.tokens) tokens, \(e.lossTokens) carry loss (between « and »):")
            let text = e.spans.map { $0.loss ? "«" + $0.text + "»" : $0.text }.joined()
            out(text.split(separator: "\n", omittingEmptySubsequences: false).map { "  | " + $0 }.joined(separator: "\n"))
        }
        if !r.data.isEmpty {
            out("\ndata" + String(repeating: " ", count: 22) + "examples  tokens min/median/max  loss tokens  cut")
            for d in r.data {
                let name = d.role.padding(toLength: 26, withPad: " ", startingAt: 0)
                out(name + "\(d.examples)".padding(toLength: 10, withPad: " ", startingAt: 0)
                    + "\(d.tokensMin)/\(d.tokensMedian)/\(d.tokensMax)".padding(toLength: 22, withPad: " ", startingAt: 0)
                    + "\(d.lossTokens)".padding(toLength: 13, withPad: " ", startingAt: 0) + (d.truncated.map(String.init) ?? "-"))
            }
        }
        if let s = r.step {
            out(String(format: "\nsteps: %d measured: first %.2f s, then %.2f s per step; peak memory %.0f MB; %d steps ≈ %@ (without evaluation)",
                       s.stepsMeasured, s.firstStepSeconds, s.secondsPerStep, Double(s.peakResidentBytes) / 1e6, s.totalSteps,
                       Train.duration(s.estimatedSeconds)))
        }
        if let d = r.disk {
            out(String(format: "disk: a checkpoint is %.1f MB; %d checkpoints and the output ≈ %.1f MB", Double(d.checkpointBytes) / 1e6,
                       d.checkpoints, Double(d.neededBytes) / 1e6)
                + (d.freeBytes.map { String(format: "; %.1f MB free at %@", Double($0) / 1e6, d.directory) } ?? ""))
        }
        out("")
        for f in r.findings {
            let mark = f.severity == .ok ? "ok     " : f.severity == .warning ? "WARNING" : "ERROR  "
            out("\(mark) \(f.topic): \(f.message)")
        }
        out("\n\(r.errors) error\(r.errors == 1 ? "" : "s"), \(r.warnings) warning\(r.warnings == 1 ? "" : "s")")
    }
}
