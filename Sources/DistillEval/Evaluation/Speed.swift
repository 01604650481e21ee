import DistillModels
import DistillTensor
import Foundation

extension Evaluator {
    /// Batch-1 requests over the task's first prompts (all models the same prompts and settings):
    /// time to first token (the prefill and the first sampled token), prompt tokens/s (prompt
    /// tokens / time to first token), decode tokens/s (the other tokens / the rest of the time),
    /// end-to-end latency p50/p95. Each request generates `speedNewTokens` tokens greedily, EOS
    /// ignored. One untimed warm-up request first. Peak memory is filled in by the caller.
    static func speed(_ model: PretrainedModel, task: EvalTask, options o: EvalOptions) throws -> SpeedMeasurement {
        let prompts = try speedPrompts(model, task: task, count: max(1, o.speedRequests))
        var ttft: [Double] = [], latency: [Double] = [], promptRate: [Double] = [], decodeRate: [Double] = []
        let n = max(1, o.speedNewTokens)
        for (k, p) in ([prompts[0]] + prompts).enumerated() {
            var g = GenerationOptions(maxTokens: n)
            g.sampling.temperature = 0
            let t0 = DispatchTime.now().uptimeNanoseconds
            var first: UInt64?
            _ = try Generator(model: model.lm).generate(items: [GenerationItem(prompt: p, options: g)], onToken: { _, _ in
                if first == nil { first = DispatchTime.now().uptimeNanoseconds }
            })
            let t1 = DispatchTime.now().uptimeNanoseconds
            guard k > 0 else { continue }
            let f = Double((first ?? t1) - t0) / 1e9, all = Double(t1 - t0) / 1e9
            ttft.append(f * 1000)
            latency.append(all * 1000)
            promptRate.append(Double(p.count) / max(f, 1e-9))
            if n > 1 { decodeRate.append(Double(n - 1) / max(all - f, 1e-9)) }
        }
        return SpeedMeasurement(threads: Threads.count, batch: 1, promptTokens: prompts.map(\.count).reduce(0, +) / prompts.count,
                                newTokens: n, timeToFirstTokenMs: percentile(ttft, 0.5),
                                promptTokensPerSecond: percentile(promptRate, 0.5),
                                decodeTokensPerSecond: decodeRate.isEmpty ? 0 : percentile(decodeRate, 0.5),
                                latencyP50Ms: percentile(latency, 0.5), latencyP95Ms: percentile(latency, 0.95), peakResidentBytes: 0)
    }

    static func speedPrompts(_ model: PretrainedModel, task: EvalTask, count: Int) throws -> [[Int]] {
        if let prompts = task.prompts { return try prompts.prefix(count).map { try contextIds(model, $0) } }
        guard case .languageModeling(let text, _) = task else { return [] }
        // Windows of 40 tokens from the text.
        let ids = try model.requireTokenizer().encode(text)
        let pieces = stride(from: 0, to: ids.count, by: 40).prefix(count).map { Array(ids[$0..<min(ids.count, $0 + 40)]) }
        return pieces.isEmpty ? [[0]] : pieces
    }

    /// The q-quantile by the nearest-rank method (q = 0.5: the median of an odd count, the
    /// upper middle of an even one).
    static func percentile(_ xs: [Double], _ q: Double) -> Double {
        guard !xs.isEmpty else { return 0 }
        let s = xs.sorted()
        let rank = Int((q * Double(s.count)).rounded(.up))
        return s[min(s.count - 1, max(0, rank - 1))]
    }
}
