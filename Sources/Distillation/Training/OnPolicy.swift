import DistillModels
import DistillNN
import DistillTensor

/// On-policy distillation (as in GKD, Agarwal et al. 2024): on a share of the steps the student
/// writes its own answers to the batch's prompts and learns the teacher's next-token
/// distribution at every position of those answers — including the positions reached through its
/// own mistakes, which fixed traces never show it.
///
/// On such a step each sequence is cut at its first counted (target) token; what comes before is
/// the prompt. The student samples a continuation (`temperature`, at most `maxTokens`, stopping at
/// `stopTokenIds`) and the new rows count only the generated tokens. The step's loss is the soft
/// term alone at the plan's temperature (weight `plan.soft + plan.hard`, so the step has the scale
/// of the others; the student's own tokens are no labels), plus the plan's feature and attention
/// terms. Other steps train on the data as usual. Which steps, and the samples, derive from the
/// trainer's random state, so a resumed run repeats them.
public struct OnPolicyDistillation: Equatable, Sendable {
    /// Share of micro-batches trained on the student's own samples, 0...1.
    public var fraction: Double
    /// Sampling temperature of the student's answers (0: greedy).
    public var temperature: Float
    /// Longest answer sampled.
    public var maxTokens: Int
    /// Tokens that end an answer (kept in the row and counted).
    public var stopTokenIds: Set<Int>

    public init(fraction: Double, temperature: Float = 1, maxTokens: Int, stopTokenIds: Set<Int>) {
        self.fraction = fraction
        self.temperature = temperature
        self.maxTokens = maxTokens
        self.stopTokenIds = stopTokenIds
    }

    func validate() throws {
        func fail(_ r: String) throws -> Never { throw TrainerError.invalidConfiguration("on-policy distillation: " + r) }
        if !(0...1).contains(fraction) { try fail("fraction \(fraction) must be in 0...1") }
        if !(temperature >= 0) || !temperature.isFinite { try fail("temperature \(temperature) must be finite and ≥ 0") }
        if maxTokens < 1 { try fail("maxTokens \(maxTokens) must be at least 1") }
    }
}

extension Trainer {
    /// Draws whether this micro-batch is on-policy; when it is, returns the student's rows and the
    /// step plan for them.
    func onPolicyBatch(_ sequences: [TokenSequence], plan p: StepPlan) throws -> (rows: [TokenSequence], plan: StepPlan)? {
        guard let op = configuration.onPolicy, op.fraction > 0 else { return nil }
        guard Double(rng.nextFloat()) < op.fraction else { return nil }
        let seed = rng.next()
        let prompts: [[Int]] = sequences.map { s in
            let first = s.ids.indices.first(where: { s.counts($0) }) ?? s.ids.count
            return Array(s.ids[..<Swift.max(1, first)])
        }
        var o = GenerationOptions(maxTokens: op.maxTokens, stopTokenIds: op.stopTokenIds)
        o.sampling = SamplingParameters(temperature: op.temperature, seed: seed)
        let out = try withoutGradients { try Generator(model: student).generate(prompts: prompts, options: o) }
        let rows = zip(prompts, out).map { prompt, g in
            TokenSequence(prompt + g.tokens, lossMask: Array(repeating: false, count: prompt.count) + Array(repeating: true, count: g.tokens.count))
        }
        var q = p
        q.soft = p.soft + p.hard
        q.hard = 0
        return (rows, q)
    }
}
