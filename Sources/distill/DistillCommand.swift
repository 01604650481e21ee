import ArgumentParser

@main
struct Distill: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distill",
        abstract: "Knowledge distillation of language models: teacher → traces and logits → student → evaluation → deployment.",
        subcommands: [Demo.self, Inspect.self, Tokenize.self, Score.self, Generate.self, Convert.self, Export.self, LoRA.self, Student.self, Bench.self, CacheLogits.self, Check.self, Train.self, Serve.self, Mix.self, Decontaminate.self, Augment.self, Traces.self, Pipeline.self, Eval.self, EvalSpeed.self, Report.self])
}
