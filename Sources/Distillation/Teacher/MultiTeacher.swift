import DistillModels
import DistillNN
import DistillTensor
import Foundation

/// How several teachers' next-token distributions become one soft target (at the loss
/// temperature τ; p_i = softmax(z_i / τ), weights w_i normalised to sum 1).
public enum TeacherCombination: String, Codable, Equatable, Sendable, CaseIterable {
    /// p = Σ w_i p_i, the weighted mixture (Hinton et al. 2015 average an ensemble's probabilities).
    /// The default: forward KL to a mixture has the gradient of the weighted sum of the per-teacher
    /// forward KLs, so the student learns every teacher's plausible continuations; a token one
    /// teacher rules out keeps the mass the others give it.
    case probabilities
    /// p ∝ Π p_i^{w_i} (a weighted mean of log-probabilities, renormalised): a product of experts,
    /// sharper than any member where they agree and cutting what any of them rules out — a
    /// consensus target, useful when teachers are individually noisy.
    case logProbabilities = "log_probabilities"
}

/// Several teacher models in memory distilled into one student (seed 002 §4.1): each counted
/// position's soft target is the members' distributions combined by `combination` with `weights`,
/// or, for sequences routed to one member (examples whose `source` the recipe routes), that
/// member's own distribution. Members share the student's tokenizer and vocabulary. They give
/// soft targets only: feature and attention transfer need one teacher's hidden states.
///
/// The combined target is handed to the losses as logits z = τ · log p (softmax(z / τ) = p), so
/// every divergence that compares distributions applies; `mse`, which compares raw logits, does not.
public final class MultiTeacher: Teacher {
    public let members: [LocalTeacher]
    public let names: [String]
    /// Normalised to sum 1.
    public let weights: [Float]
    public let combination: TeacherCombination
    /// Token sequences routed to one member (its index).
    public let routes: [[Int]: Int]

    /// `weights` ≥ 0 with a positive sum (normalised here); every member's vocabulary equal.
    public init(members: [(name: String, lm: TransformerLM, weight: Float)], combination: TeacherCombination = .probabilities,
                routes: [[Int]: Int] = [:]) throws {
        func fail(_ m: String) -> TeacherError { .invalidRequest("multi-teacher: " + m) }
        guard !members.isEmpty else { throw fail("no teacher") }
        for m in members where !(m.weight >= 0 && m.weight.isFinite) { throw fail("teacher \(m.name): weight \(m.weight) must be finite and ≥ 0") }
        let sum = members.reduce(Float(0)) { $0 + $1.weight }
        guard sum > 0 else { throw fail("the weights sum to \(sum); at least one must be positive") }
        let v = members[0].lm.config.vocabSize
        for m in members where m.lm.config.vocabSize != v {
            throw fail("teacher \(m.name) has vocabulary \(m.lm.config.vocabSize), teacher \(members[0].name) \(v)")
        }
        for (_, i) in routes where i < 0 || i >= members.count { throw fail("a route names teacher \(i) of \(members.count)") }
        self.members = members.map { LocalTeacher(lm: $0.lm) }
        names = members.map(\.name)
        weights = members.map { $0.weight / sum }
        self.combination = combination
        self.routes = routes
    }

    public var vocabularySize: Int { members[0].vocabularySize }
    public var tokenizerFingerprint: String? { nil }
    public var tokenizerVocabularySize: Int? { nil }
    public var scoresAnySequence: Bool { true }

    /// Full logits of every member for the rows, combined (or routed) per row; not tempered —
    /// combined rows are τ · log p at τ = 1 here (a view has no temperature).
    public func view(of sequences: [[Int]], positions: [[Int]]?) throws -> TeacherView {
        let views = try members.map { m -> Tensor in
            guard case .full(let t) = try m.view(of: sequences, positions: positions) else { fatalError("LocalTeacher gives full logits") }
            return t
        }
        var rowRoutes: [Int?] = []
        for (s, seq) in sequences.enumerated() {
            rowRoutes += Array(repeating: routes[seq], count: positions?[s].count ?? seq.count)
        }
        return .full(Self.combine(views, weights: weights, temperature: 1, combination: combination, routes: rowRoutes))
    }

    public func outputs(for batch: Batch, request: TeacherBatchRequest) throws -> TeacherBatchOutput {
        guard !request.hiddenStates && !request.attentions else {
            throw TeacherError.invalidRequest("several teachers give soft targets only: feature and attention terms need one teacher")
        }
        guard request.soft else { return TeacherBatchOutput(soft: nil) }
        let chunks = try members.map { m -> ([Int]) -> Tensor in
            guard case .sameVocabulary(.logits(let f))? = try m.outputs(for: batch, request: request).soft else {
                fatalError("LocalTeacher gives logits")
            }
            return f
        }
        let sequenceRoute = batch.sequences.map { routes[$0] }
        let weights = weights, combination = combination, tau = request.temperature
        return TeacherBatchOutput(soft: .sameVocabulary(.logits { rows in
            let routed = rows.map { sequenceRoute[batch.rowSequence[$0]] }
            return Self.combine(chunks.map { $0(rows) }, weights: weights, temperature: tau, combination: combination, routes: routed)
        }))
    }

    /// Members' logits [rows, V] combined row by row into logits z with softmax(z / τ) the
    /// combined distribution: z = τ · log Σ w_i softmax(z_i / τ) (`probabilities`) or
    /// τ · Σ w_i log softmax(z_i / τ) (`logProbabilities`); a row routed to member m keeps z_m.
    /// Members of weight 0 take no part. Accumulated in Double.
    public static func combine(_ logits: [Tensor], weights: [Float], temperature tau: Float, combination: TeacherCombination,
                               routes: [Int?]) -> Tensor {
        precondition(!logits.isEmpty && logits.count == weights.count, "MultiTeacher.combine: \(logits.count) members, \(weights.count) weights")
        let shape = logits[0].shape, v = shape.last ?? 0, rows = v == 0 ? 0 : logits[0].count / v
        precondition(logits.allSatisfy { $0.shape == shape } && routes.count == rows, "MultiTeacher.combine: shapes differ")
        let out = Tensor(uninitializedShape: shape)
        let o = out.storage.pointer, inputs = logits.map { $0.storage.pointer }
        let active = weights.indices.filter { weights[$0] > 0 }
        let logW = weights.map { Double($0).log() }, t = Double(tau)
        parallelFor(rows, grain: 4) { range in
            var logp = [[Double]](repeating: [Double](repeating: 0, count: v), count: inputs.count)
            for r in range {
                let dst = o + r * v
                if let m = routes[r] {
                    dst.update(from: inputs[m] + r * v, count: v)
                    continue
                }
                for i in active {                               // log softmax(z_i / τ)
                    let z = inputs[i] + r * v
                    var mx = -Double.infinity
                    for j in 0..<v { mx = Swift.max(mx, Double(z[j]) / t) }
                    var s = 0.0
                    for j in 0..<v { s += (Double(z[j]) / t - mx).exp() }
                    let lse = mx + s.log()
                    for j in 0..<v { logp[i][j] = Double(z[j]) / t - lse }
                }
                for j in 0..<v {
                    var value: Double
                    switch combination {
                    case .probabilities:
                        var mx = -Double.infinity
                        for i in active { mx = Swift.max(mx, logW[i] + logp[i][j]) }
                        if mx == -.infinity { value = mx; break }
                        var s = 0.0
                        for i in active { s += (logW[i] + logp[i][j] - mx).exp() }
                        value = mx + s.log()
                    case .logProbabilities:
                        value = 0
                        for i in active { value += Double(weights[i]) * logp[i][j] }
                    }
                    dst[j] = Float(t * value)
                }
            }
        }
        return out
    }
}

private extension Double {
    func log() -> Double { Foundation.log(self) }
    func exp() -> Double { Foundation.exp(self) }
}
