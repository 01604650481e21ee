import DistillModels
import DistillNN
import DistillServer
import DistillTestSupport
import Foundation
@testable import DistillPipeline

/// A pipeline's world in a temporary directory, over tiny random chat models: an initial student,
/// a recipe (SFT on the traces), gate tasks (perplexity on teacher A's replies to held-out prompts,
/// a second set for no-regression), an evaluation prompt file to decontaminate against, and
/// `pipeline.yaml` pointing at a teacher server.
final class PipelineWorld {
    static let tokenizer = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("DistillServerTests/Fixtures/tokenizer")
    static let words = ["red", "green", "small", "quick", "river", "stone", "cloud", "garden", "lamp", "winter", "violin",
                        "orange", "market", "paper", "silver", "forest", "engine", "candle", "harbor", "pepper"]
    static let maxTokens = 20

    let root: URL
    var inbox: URL { root.appendingPathComponent("inbox") }
    var work: URL { root.appendingPathComponent("work") }
    var versionsDirectory: URL { root.appendingPathComponent("models") }
    var configFile: URL { root.appendingPathComponent("pipeline.yaml") }
    /// An evaluation prompt (in eval/prompts.jsonl): a batch holding it loses that trace.
    static let contaminated = "please describe the silver violin near the quiet harbor at night"

    static func teacherA() throws -> PretrainedModel { try tinyChatModel(tokenizerDirectory: tokenizer, seed: 1) }
    static func teacherB() throws -> PretrainedModel { try tinyChatModel(tokenizerDirectory: tokenizer, seed: 2) }

    /// Prompts `i ..< i + n`: a few words each, all different.
    static func prompts(_ range: Range<Int>) -> [String] {
        range.map { i in
            (0..<5).map { words[(i * 7 + $0 * 3 + i / 20) % words.count] }.joined(separator: " ") + " number \(i)"
        }
    }

    /// Greedy replies of `model` to `prompts`, as the teacher server gives them (chat template).
    static func replies(_ model: PretrainedModel, _ prompts: [String]) throws -> [String] {
        let ids = try prompts.map { model.tokenizer!.encode(try model.applyChatTemplate([ChatMessage(role: "user", content: $0)]), addSpecialTokens: false) }
        let s = try Generator(model: model.lm).generate(prompts: ids, options: GenerationOptions(maxTokens: maxTokens, sampling: .init(temperature: 0),
                                                                                                 stopTokenIds: Set(model.eosTokenIds)))
        return s.map { model.tokenizer!.decode($0.tokens, skipSpecialTokens: true) }
    }

    init(name: String, teacherURL: String, steps: Int = 30, margin: Double = 0.5) throws {
        let fm = FileManager.default
        root = fm.temporaryDirectory.appendingPathComponent("distill-pipeline-\(name)-\(UUID().uuidString)")
        for d in ["inbox", "eval", "drafts"] { try fm.createDirectory(at: root.appendingPathComponent(d), withIntermediateDirectories: true) }
        try tinyChatModel(tokenizerDirectory: Self.tokenizer, seed: 7).saveDirectory(root.appendingPathComponent("student").path)
        let a = try Self.teacherA()
        try (try Self.replies(a, Self.prompts(100..<110))).joined(separator: "\n").write(to: root.appendingPathComponent("eval/heldout.txt"), atomically: true, encoding: .utf8)
        try (try Self.replies(a, Self.prompts(200..<210))).joined(separator: "\n").write(to: root.appendingPathComponent("eval/second.txt"), atomically: true, encoding: .utf8)
        try (Self.prompts(100..<110) + [Self.contaminated]).map { #"{"prompt": "\#($0)"}"# }.joined(separator: "\n")
            .write(to: root.appendingPathComponent("eval/prompts.jsonl"), atomically: true, encoding: .utf8)
        try """
            student: {path: placeholder}
            data: {train: placeholder, max_length: 64, chat_template: true}
            loss: {kind: hard}
            schedule: {steps: \(steps), batch_size: 4, lr: 0.01, warmup: 0, decay: constant, checkpoint_every: 10}
            output: {dir: placeholder}
            seed: 3
            """.write(to: root.appendingPathComponent("sft.yaml"), atomically: true, encoding: .utf8)
        try """
            inbox: inbox
            work: work
            versions: models
            initial_student: student
            poll_seconds: 0.2
            teacher:
              url: \(teacherURL)
              model: teacher
              samples: 1
              temperature: 0
              max_tokens: \(Self.maxTokens)
              verifier: none
              think_required: false
              filters: none
              concurrency: 1
            decontaminate: {against: [eval/prompts.jsonl], ngram: 8}
            train: {recipe: sft.yaml}
            gate:
              task: eval/heldout.txt
              margin: \(margin)
              no_regression: {task: eval/second.txt, tolerance: 0.5}
            """.write(to: configFile, atomically: true, encoding: .utf8)
    }

    func configuration() throws -> PipelineConfiguration { try PipelineConfiguration.load(configFile.path) }

    /// Writes a batch elsewhere, then moves it into the inbox (as users should).
    func drop(_ name: String, prompts: [String]) throws {
        let draft = root.appendingPathComponent("drafts/\(name).jsonl")
        try prompts.enumerated().map { #"{"id": "\#(name)-\#($0)", "prompt": "\#($1)"}"# }.joined(separator: "\n")
            .write(to: draft, atomically: true, encoding: .utf8)
        try FileManager.default.moveItem(at: draft, to: inbox.appendingPathComponent("\(name).jsonl"))
    }

    /// The two batches of the tests: the first (with one contaminated prompt) is promoted while
    /// teacher A serves; the second is refused once teacher B (another model) replaces it.
    func dropBothBatches() throws {
        try drop("batch1", prompts: Self.prompts(0..<16) + [Self.contaminated])
        try drop("batch2", prompts: Self.prompts(40..<56))
    }

    func remove() { try? FileManager.default.removeItem(at: root) }
}
