import ArgumentParser
import DistillData
import Foundation

struct Mix: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mixes JSONL data sets by ratio (seeded), e.g. --input a.jsonl:0.8 --input b.jsonl:0.2.",
        discussion: """
            Without --total, takes as many examples as the ratios allow without repeating any. With a \
            --total beyond what a source holds, that source is sampled with replacement (reported).
            """)

    @Option(name: .customLong("input"), help: "PATH:WEIGHT of a JSONL file (repeat for each source).") var inputs: [String]
    @Option(help: "Examples in the mix (default: the most the ratios allow without repeating).") var total: Int?
    @Option(help: "Seed of the sampling and the shuffle.") var seed: UInt64 = 0
    @Option(help: "The JSONL file to write.") var out: String
    @Option(help: "Drop examples sharing an n-gram with this evaluation JSONL file before mixing (repeat for several; see distill decontaminate).") var decontaminate: [String] = []
    @Option(help: "Words per n-gram for --decontaminate.") var ngram = 8

    func run() throws {
        guard !inputs.isEmpty else { throw ValidationError("give at least one --input PATH:WEIGHT") }
        guard ngram >= 1 else { throw ValidationError("--ngram must be at least 1, got \(ngram)") }
        do {
            let sources = try inputs.map { try MixSource(argument: $0) }
            let d = decontaminate.isEmpty ? nil : try Decontaminator(against: decontaminate, n: ngram)
            let report = try DatasetMixer.mix(sources, total: total, seed: seed, out: out, decontaminator: d)
            for e in report.entries {
                print("\(e.path): \(e.taken) examples drawn, \(e.available) available (weight \(String(format: "%.1f%%", e.share * 100)))")
            }
            for e in report.entries where e.removed > 0 {
                print("\(e.path): \(e.removed) examples overlapping the evaluation set removed before mixing")
            }
            for note in report.notes { print("note: \(note)") }
            print("wrote \(report.total) examples to \(out) (seed \(seed))")
        } catch { throw CLIError("\(error)") }
    }
}
