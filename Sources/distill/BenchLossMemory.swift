import ArgumentParser
import Distillation
import DistillBench
import Foundation

extension Bench {
    struct LossMemory: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "loss-memory",
            abstract: "Peak memory of one KD loss step (α·KL + (1−α)·CE, loss and backward) at a large vocabulary: naive vs chunked.",
            discussion: """
            Peak tensor memory is counted by the engine's buffer pool (every tensor buffer of 64 KiB and \
            more, when handed out and given back); the resident-set high-water mark (VmHWM, reset before \
            the step) is reported beside it. Run one --mode per process for a clean resident-set figure.
            """)

        @Option(help: "naive, chunked, or compare (chunked at --positions against naive at --naive-positions, extrapolated).")
        var mode: String = "compare"
        @Option(help: "Comma-separated positions for the naive runs of --mode compare.")
        var naivePositions: String = "512,1024"
        @Option(help: "Positions (rows of logits).")
        var positions: Int = 4096
        @Option(help: "Hidden width.")
        var hidden: Int = 896
        @Option(help: "Vocabulary size.")
        var vocab: Int = 151_936
        @Option(help: "Positions per chunk (chunked mode).")
        var chunk: Int = 1024
        @Flag(help: "Print the result as JSON.")
        var json = false

        func run() throws {
            guard positions > 0, hidden > 0, vocab > 0, chunk > 0 else {
                throw ValidationError("--positions, --hidden, --vocab and --chunk must be positive")
            }
            let mb = { (b: Int) in String(format: "%.1f MB", Double(b) / 1e6) }
            if mode == "compare" {
                let naive = try naivePositions.split(separator: ",").map { s -> Int in
                    guard let n = Int(s.trimmingCharacters(in: .whitespaces)), n > 0, n <= positions else {
                        throw ValidationError("--naive-positions: '\(s)' is not a positive integer ≤ --positions")
                    }
                    return n
                }
                guard naive.contains(positions) || Set(naive).count >= 2 else {
                    throw ValidationError("--naive-positions: give two sizes (to extrapolate to \(positions)) or \(positions) itself")
                }
                let r = LossBenchmarks.chunkedMemory(positions: positions, hidden: hidden, vocab: vocab, chunkSize: chunk,
                                                     naivePositions: naive)
                if json {
                    let enc = JSONEncoder()
                    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                    print(String(data: try enc.encode(r), encoding: .utf8)!)
                    return
                }
                for x in [r.chunked] + r.naive {
                    print("\(x.mode.rawValue) N=\(x.positions): peak tensor \(mb(x.peakTensorBytes)) (inputs \(mb(x.inputBytes)))"
                          + (x.peakRSSBytes.map { ", peak RSS \(mb($0))" } ?? "") + String(format: ", %.1f s", x.seconds))
                }
                print("naive at N=\(positions)\(r.naiveExtrapolated ? " (extrapolated)" : ""): \(mb(Int(r.naivePeakTensorBytes)))")
                print(String(format: "chunked / naive: %.3f (working memory %.3f)", r.ratio, r.workingRatio))
                return
            }
            guard let m = LossBenchmarks.Mode(rawValue: mode) else {
                throw ValidationError("--mode: '\(mode)' is not one of naive, chunked, compare")
            }
            let r = LossBenchmarks.memory(mode: m, positions: positions, hidden: hidden, vocab: vocab, chunkSize: chunk)
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(data: try enc.encode(r), encoding: .utf8)!)
                return
            }
            print("\(r.mode.rawValue): N=\(r.positions) H=\(r.hidden) V=\(r.vocab)" + (m == .chunked ? " chunk=\(r.chunkSize)" : ""))
            print("  inputs                \(mb(r.inputBytes))")
            print("  peak tensor memory    \(mb(r.peakTensorBytes))  (working \(mb(r.workingBytes)))")
            if let p = r.peakRSSBytes { print("  peak resident set     \(mb(p))  (before the step \(mb(r.rssBeforeBytes ?? 0)))") }
            print("  loss \(r.loss), \(String(format: "%.1f", r.seconds)) s")
        }
    }
}
