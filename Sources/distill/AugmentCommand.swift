import ArgumentParser
import DistillData
import Foundation

struct Augment: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Augments training prompts: synonym replacement, word swap or deletion, paraphrase or back-translation through a server.",
        discussion: """
            Only the asking side changes — "text", "prompt" and "question" strings and user messages; answers, \
            assistant turns and other keys stay. Each line is written, then --copies variants, each with \
            "augmentation": {"method", "seed", "source_line"}. Local methods change words only (numbers, \
            punctuation and spacing stay): synonym replaces a word of the word list with probability --p \
            (a small English list is built in; --word-list FILE gives one group of comma-separated synonyms \
            per line), swap exchanges round(p·words) pairs, delete drops each word with probability --p. \
            paraphrase and back-translate ask an OpenAI-compatible server (--server-url, --server-model); \
            a rewording whose numbers differ from the original's is asked again (3 tries), else that \
            variant is dropped and counted. \
            Seeded: the same input and --seed give the same file.

            Examples:
              distill augment prompts.jsonl --method synonym --copies 2 --out augmented.jsonl
              distill augment prompts.jsonl --method back-translate --server-url http://127.0.0.1:8000/v1 \\
                --server-model qwen --pivot German --out augmented.jsonl
            """)

    @Argument(help: "The JSONL file to augment.") var data: String
    @Option(help: "synonym, swap, delete, paraphrase or back-translate.") var method = "synonym"
    @Option(help: "Augmented variants per line.") var copies = 1
    @Option(name: .customLong("p"), help: "Per-word probability (synonym, delete) or share of words swapped (swap).") var probability = 0.2
    @Option(help: "Seed of the draws (and of the server's sampling).") var seed: UInt64 = 0
    @Option(help: "A synonym list: one group of comma-separated words per line (default: the built-in English list).") var wordList: String?
    @Option(help: "Base URL of an OpenAI-compatible server (paraphrase, back-translate).") var serverUrl: String?
    @Option(help: "The model name the server knows.") var serverModel: String?
    @Option(help: "Environment variable holding the server's API key.") var apiKeyEnv: String?
    @Option(help: "back-translate: the language to go through.") var pivot = "French"
    @Option(help: "The server's sampling temperature.") var temperature = 0.7
    @Flag(help: "Write only the augmented variants, not the original lines.") var onlyAugmented = false
    @Option(help: "The JSONL file to write.") var out: String

    func validate() throws {
        guard let m = AugmentationMethod(rawValue: method) else {
            throw ValidationError("--method must be one of \(AugmentationMethod.allCases.map(\.rawValue).joined(separator: ", ")), got \(method)")
        }
        guard copies >= 1 else { throw ValidationError("--copies must be at least 1, got \(copies)") }
        guard probability > 0 && probability <= 1 else { throw ValidationError("--p must be in (0, 1], got \(probability)") }
        if m.needsServer && (serverUrl == nil || serverModel == nil) {
            throw ValidationError("--method \(method) needs --server-url and --server-model")
        }
        if !m.needsServer && serverUrl != nil { throw ValidationError("--server-url applies to paraphrase and back-translate") }
        if m != .synonym && wordList != nil { throw ValidationError("--word-list applies to --method synonym") }
    }

    func run() throws {
        do {
            let m = AugmentationMethod(rawValue: method)!
            var server: AugmentationServer?
            if m.needsServer, let url = serverUrl, let model = serverModel {
                let client = try HTTPTeacherClient(HTTPTeacherConfiguration(baseURL: url, model: model, apiKeyEnvironmentVariable: apiKeyEnv))
                server = AugmentationServer(client: client, pivot: pivot, temperature: temperature)
            }
            let augmenter = try Augmenter(method: m, probability: probability, seed: seed,
                                          synonyms: try wordList.map { try SynonymList(path: $0) } ?? .english, server: server)
            let copies = self.copies, data = self.data, keep = !onlyAugmented
            let result = try runBlocking { try await augmenter.augment(path: data, copies: copies, keepOriginals: keep) }
            try TraceJSONL.write(lines: result.lines, to: out)
            print("wrote \(result.lines.count) lines to \(out) (\(method), \(copies) variant\(copies == 1 ? "" : "s") per line, seed \(seed))")
            if result.dropped > 0 {
                print("\(result.dropped) variants dropped: the server changed the numbers of their text in \(Augmenter.serverTries) tries")
            }
        } catch { throw CLIError("\(error)") }
    }
}
