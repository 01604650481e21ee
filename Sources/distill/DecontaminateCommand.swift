import ArgumentParser
import DistillData
import Foundation

struct Decontaminate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Removes training examples that share an n-gram of words with evaluation sets.",
        discussion: """
            Every string of a JSONL line (text, message contents, prompt, answer, …) is lower-cased and split \
            into words at every character that is not a letter or digit; a training line is removed when one \
            of its strings shares --ngram consecutive words with a string of an --against line (strings shorter \
            than --ngram words are not compared). The kept lines are written verbatim, in order; the report \
            names each removed line, the shared words and the evaluation line they come from.

            Example:
              distill decontaminate traces.jsonl --against gsm8k-test.jsonl --ngram 8 --out clean.jsonl
            """)

    @Argument(help: "The training JSONL file.") var data: String
    @Option(help: "An evaluation JSONL file (repeat for several).") var against: [String] = []
    @Option(help: "Words per n-gram.") var ngram = 8
    @Option(help: "The JSONL file of the kept examples.") var out: String
    @Option(help: "Also write the report as JSON.") var report: String?

    func validate() throws {
        guard !against.isEmpty else { throw ValidationError("give at least one --against EVAL.jsonl") }
        guard ngram >= 1 else { throw ValidationError("--ngram must be at least 1, got \(ngram)") }
    }

    func run() throws {
        do {
            let d = try Decontaminator(against: against, n: ngram)
            let r = try d.filter(path: data, out: out)
            for o in r.removed.prefix(10) {
                print("removed \(data):\(o.line): \"\(o.ngram)\" (\(o.source.file):\(o.source.line))")
            }
            if r.removed.count > 10 { print("… and \(r.removed.count - 10) more") }
            for (file, k) in r.removedByFile.sorted(by: { $0.key < $1.key }) { print("\(file): \(k) overlapping examples") }
            print("kept \(r.kept) of \(r.examples) examples (\(r.removed.count) removed, \(ngram)-grams) → \(out)")
            if let report {
                let json = try JSONSerialization.data(withJSONObject: r.json, options: [.prettyPrinted, .sortedKeys])
                try json.write(to: URL(fileURLWithPath: report), options: .atomic)
            }
        } catch { throw CLIError("\(error)") }
    }
}
