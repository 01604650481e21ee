import ArgumentParser
import DistillData
import DistillPipeline
import Distillation
import Foundation

struct Pipeline: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Continuous distillation: each new prompt file in the inbox → teacher traces → decontamination → training → evaluation gate → promotion.",
        discussion: """
            For each new *.jsonl prompt file in `inbox` (one batch; write it elsewhere and move it in): the \
            teacher server's traces (rejection-sampled as in `distill traces`), decontaminated against the \
            evaluation sets, train a candidate from the current student with the pipeline's recipe; the \
            candidate is promoted only when it beats the current student on the gate task by `gate.margin` \
            without regressing `gate.no_regression` by more than its tolerance. A promoted candidate becomes \
            the next version (VERSIONS/v0002, …) and VERSIONS/current is switched to it atomically; \
            `distill serve --watch VERSIONS` then swaps to it without failing a request. Every decision and \
            its reasons go to VERSIONS/history.jsonl.

            Each stage's outputs are kept under WORK/<batch>/ and the batch's state is written after each \
            stage: kill the command at any moment and run it again to continue where it was.

            Examples:
              distill pipeline pipeline.yaml            # process the inbox, then watch it
              distill pipeline pipeline.yaml --once     # process what is there and exit
              distill pipeline pipeline.yaml --status   # versions, current, history
            See recipes/pipeline/pipeline.yaml for every key.
            """)

    @Argument(help: "The pipeline file (YAML).") var file: String
    @Option(name: .customLong("set"), help: "Override any field: --set key.path=value (repeatable), e.g. --set gate.margin=0.05.")
    var overrides: [String] = []
    @Flag(help: "Process the pending batches and exit instead of watching the inbox.") var once = false
    @Flag(help: "Print the versions, the current one and the history, and exit.") var status = false
    @Option(help: "Print a training progress line every N steps.") var logEvery = 10

    func run() throws {
        let config: PipelineConfiguration
        do { config = try PipelineConfiguration.load(file, overrides: overrides) } catch { throw CLIError("\(error)") }
        let pipeline = ContinuousPipeline(configuration: config)
        if status { return try printStatus(pipeline) }
        let printer = PipelineProgress(logEvery: logEvery)
        do {
            try runBlocking {
                if once {
                    let states = try await pipeline.runPending(onEvent: printer.handle)
                    if states.isEmpty { print("no new batch in \(config.inbox.path)") }
                } else {
                    try await pipeline.watch(onEvent: printer.handle)
                }
            }
        } catch { throw CLIError("\(error)") }
    }

    func printStatus(_ pipeline: ContinuousPipeline) throws {
        let v = pipeline.versions
        do {
            print("versions in \(v.directory.path): \(v.versions().joined(separator: ", "))")
            print("current: \(v.current() ?? "none")")
            for e in try v.history() {
                print("\(e.time)  \(e.batch)  \(e.decision.rawValue)\(e.version.map { " → \($0)" } ?? "")  \(e.reasons.joined(separator: "; "))")
            }
            for b in try pipeline.pendingBatches() {
                print("pending: \(b.file.lastPathComponent) (\(b.id))" + ((try pipeline.state(b.id)).map { ", after \($0.stage.rawValue)" } ?? ""))
            }
        } catch { throw CLIError("\(error)") }
    }
}

/// Prints the pipeline's events: one line per stage, the teacher's progress every 10 prompts,
/// training as `distill train` does, the decision with its reasons.
final class PipelineProgress {
    let logEvery: Int
    var training: RecipeProgress?
    var lastIdle = false

    init(logEvery: Int) { self.logEvery = logEvery }

    func handle(_ event: PipelineEvent) {
        func say(_ s: String) { print(s); fflush(stdout) }
        if case .idle = event {} else { lastIdle = false }
        switch event {
        case .initialVersion(let v):
            say("initial version \(v) (from initial_student)")
        case let .batch(id, file, after):
            say("batch \(id) (\(file))" + (after.map { ": resuming after \($0.rawValue)" } ?? ""))
        case let .traces(id, .started(total, done, toProcess, _)):
            say("[\(id)] traces: \(total) prompts, \(done) done before, sampling \(toProcess)")
        case let .traces(id, .promptDone(p)) where p.done % 10 == 0 || p.done == p.total:
            say("[\(id)] traces: \(p.done)/\(p.total), acceptance " + String(format: "%.1f%%", p.acceptanceRate * 100))
        case let .traces(id, .promptFailed(f, _)):
            say("[\(id)] prompt \(f.promptID) failed: \(f.message)")
        case .traces:
            break
        case let .decontaminated(id, kept, removed):
            say("[\(id)] decontamination: kept \(kept) traces, removed \(removed)")
        case let .recipe(id, e):
            if case .prepared(let s) = e { training = RecipeProgress(every: logEvery, totalSteps: s.totalSteps, prefix: "[\(id)] ") }
            training?.handle(e)
        case .evaluating(let id):
            say("[\(id)] evaluating the candidate against the current version")
        case let .versionCreated(id, v):
            say("[\(id)] created version \(v)")
        case let .pointerSwitched(id, v):
            say("[\(id)] current → \(v)")
        case let .stage(id, stage):
            say("[\(id)] \(stage.rawValue)")
        case let .decided(id, gate, version):
            say("[\(id)] " + (gate.promote ? "PROMOTED to \(version ?? "?")" : "REFUSED") + ": " + gate.reasons.joined(separator: "; "))
        case let .failed(id, reason):
            say("[\(id)] FAILED: \(reason)")
        case let .retrying(id, reason):
            say("[\(id)] stopped: \(reason) — retrying at the next look at the inbox")
        case .idle(let s):
            if !lastIdle { say("waiting for new prompt files (every \(Train.duration(s)))") }
            lastIdle = true
        }
    }
}
