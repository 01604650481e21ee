import DistillModels
import DistillNN
import DistillTensor
import Foundation

/// Prompt (prefill) and decode throughput of a model (`distill bench generate`).
public enum GenerationBenchmark {
    public struct BatchListError: Error, CustomStringConvertible { public let description: String }

    /// Parses comma-separated batch sizes ("1,8"); an entry that is not a positive integer is an
    /// error naming it.
    public static func batchSizes(_ list: String) throws -> [Int] {
        let parts = list.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        return try parts.map { s in
            guard let b = Int(s), b > 0 else { throw BatchListError(description: "'\(s)' is not a positive integer (expected e.g. 1,8)") }
            return b
        }
    }

    public struct Result: Codable, Sendable {
        public var batch: Int
        public var promptTokens: Int
        public var newTokens: Int
        /// Prompt tokens processed per second (all rows), from the prefill pass.
        public var promptTokensPerSecond: Double
        /// Generated tokens per second (all rows), decode steps only.
        public var decodeTokensPerSecond: Double
    }

    /// Greedy decoding of `newTokens` after a prompt of `promptTokens` ids, `batch` rows at once;
    /// the median of `reps` runs after one warm-up.
    public static func run(model: PretrainedModel, promptTokens: Int = 40, newTokens: Int = 128, batch: Int = 1,
                           reps: Int = 3) throws -> Result {
        var rng = RandomGenerator(seed: 5)
        let v = model.lm.config.vocabSize
        let prompts = (0..<batch).map { _ in (0..<promptTokens).map { _ in Int(rng.next() % UInt64(v)) } }
        var prefill: [Double] = [], decode: [Double] = []
        for rep in 0...reps {
            // Prefill alone: one forward pass over the prompts.
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try Generator(model: model.lm).generate(prompts: prompts, options: GenerationOptions(maxTokens: 1, sampling: .init(temperature: 0)))
            let t1 = DispatchTime.now().uptimeNanoseconds
            _ = try Generator(model: model.lm).generate(prompts: prompts, options: GenerationOptions(maxTokens: newTokens, sampling: .init(temperature: 0)))
            let t2 = DispatchTime.now().uptimeNanoseconds
            if rep == 0 { continue }
            let p = Double(t1 - t0) / 1e9, all = Double(t2 - t1) / 1e9
            prefill.append(p)
            decode.append(Swift.max(all - p, 1e-9))
        }
        let p = prefill.sorted()[prefill.count / 2], d = decode.sorted()[decode.count / 2]
        return Result(batch: batch, promptTokens: promptTokens, newTokens: newTokens,
                      promptTokensPerSecond: Double(batch * promptTokens) / p,
                      decodeTokensPerSecond: Double(batch * (newTokens - 1)) / d)
    }
}
