import ArgumentParser
import Distillation
import DistillModels
import Foundation

struct CacheLogits: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache-logits",
        abstract: "Caches a teacher's top-k log-probabilities for every position of a JSONL data set (resumable).",
        discussion: """
            Under an MPI launcher (mpirun -np N distill cache-logits …) the processes share the scoring and rank 0 \
            writes the cache (the same bytes as one process writes).
            """)

    @Option(help: "The teacher: a Hugging Face model directory or a .gguf file.") var teacher: String
    @Option(help: "JSONL data: one {\"text\": …} or {\"messages\": […]} per line.") var data: String
    @Option(help: "The cache file to write (or resume).") var out: String
    @Option(help: "Log-probabilities kept per position.") var k = 64
    @Option(help: "Temperature the log-probabilities are taken at.") var temperature: Float = 1
    @Option(help: "Cut sequences to this many tokens.") var maxLength: Int?
    @Option(help: "Sequences per committed chunk.") var chunkSize = 16

    func run() throws {
        let file: TextDataFile
        do { file = try TextDataFile(path: data) } catch { throw CLIError("\(error)") }
        let m = try loadModel(teacher)
        do {
            let tok = try m.requireTokenizer()
            let sequences = try file.tokenize(with: tok, chatTemplate: m.chatTemplate, maxLength: maxLength)
            let header = LogitCacheHeader(dataHash: file.hash, vocabularySize: m.lm.config.vocabSize, tokenizerVocabularySize: tok.vocabSize,
                                          k: k, temperature: temperature, maxLength: maxLength ?? 0, chunkSequences: chunkSize,
                                          fingerprint: tok.fingerprint)
            let writer = try LogitCacheWriter(path: out, header: header)
            let start = Date()
            var tokens = 0
            try inProcessGroup { group in
                let main = group?.isMain ?? true
                try writer.run(teacher: LocalTeacher(model: m), sequences: sequences, processGroup: group) { event in
                    guard main else { return }
                    switch event {
                    case let .started(cached, total):
                        print(cached > 0 ? "resuming after \(cached) of \(total) sequences" : "caching \(total) sequences")
                    case let .sequence(index, total, n):
                        tokens += n
                        let rate = Double(tokens) / max(Date().timeIntervalSince(start), 1e-9)
                        print(String(format: "\r[%d/%d] %d tokens, %.0f tokens/s", index + 1, total, tokens, rate), terminator: "")
                        fflush(stdout)
                    case .committed: break
                    case let .finished(total):
                        print("\ndone: \(total) sequences in \(out)" + (group.map { " (\($0.size) processes)" } ?? ""))
                    }
                }
            }
        } catch let e as CLIError { throw e } catch { throw CLIError("\(error)") }
    }
}
