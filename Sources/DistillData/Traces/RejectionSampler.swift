import Foundation

/// Which of a prompt's correct, clean candidates are kept.
public enum KeepPolicy: String, Codable, CaseIterable, Sendable {
    /// Every one (distinct ones, when the sampler deduplicates).
    case allCorrect = "all"
    /// The first in candidate order.
    case firstCorrect = "first"
    /// The shortest by the sampler's `length` (the earliest on ties).
    case shortestCorrect = "shortest"
}

/// One candidate completion and what the sampler made of it.
public struct CandidateOutcome: Equatable, Sendable {
    /// Position among the prompt's candidates.
    public var index: Int
    public var completion: String
    public var trace: ParsedTrace
    /// Every reason it was not kept, in check order (filters, verifier, then duplicate or keep
    /// policy); empty when kept.
    public var rejections: [Rejection]

    public var isKept: Bool { rejections.isEmpty }
}

/// The sampler's result for one prompt.
public struct SamplingResult: Equatable, Sendable {
    public var prompt: TracePrompt
    /// Every candidate, in the order given.
    public var candidates: [CandidateOutcome]

    public var kept: [CandidateOutcome] { candidates.filter(\.isKept) }

    /// The kept candidates as chat records (user: the prompt, assistant: the completion as
    /// generated), carrying the prompt's id and source.
    public func records(system: String? = nil) -> [ChatRecord] {
        kept.map { ChatRecord(system: system, user: prompt.text, assistant: $0.completion, id: prompt.id, source: prompt.source) }
    }
}

/// Self-consistency: how a prompt without a reference answer is verified. The candidates that
/// pass the filters vote with their final answers (two answers are the same when the verifier
/// accepts one with the other as reference); the answer with the most votes stands in for the
/// reference when it has at least `minVotes` votes and at least `minShare` of all candidates,
/// and no other answer has as many.
public struct Consensus: Equatable, Sendable {
    public var minVotes: Int
    public var minShare: Double

    public init(minVotes: Int = 2, minShare: Double = 0.5) {
        self.minVotes = minVotes
        self.minShare = minShare
    }
}

/// Rejection sampling of reasoning traces (open-r1 / DeepSeek-R1 style): each of a prompt's N
/// candidates is parsed with the template, run through every filter and the verifier (all of
/// them, so a candidate records every reason it fails), then the clean, correct ones are
/// deduplicated (same completion after whitespace normalisation: `duplicate`) and the keep
/// policy picks among them (the others: `not_selected`).
public struct RejectionSampler {
    public var template: TraceTemplate
    public var extractor: AnswerExtractor
    public var filters: [any TraceFilter]
    /// nil: no answer check (e.g. open-ended prompts).
    public var verifier: (any Verifier)?
    public var keepPolicy: KeepPolicy
    public var deduplicate: Bool
    /// The length `shortestCorrect` compares (characters by default; a token count fits too).
    public var length: @Sendable (String) -> Int
    /// Verification of prompts without a reference answer by majority vote (nil: they are
    /// rejected with `no_reference` by verifiers that need one).
    public var consensus: Consensus?

    public init(template: TraceTemplate = .default, extractor: AnswerExtractor = .standard,
                filters: [any TraceFilter]? = nil, verifier: (any Verifier)? = MathVerifier(),
                keepPolicy: KeepPolicy = .allCorrect, deduplicate: Bool = true,
                length: @escaping @Sendable (String) -> Int = { $0.count }, consensus: Consensus? = nil) {
        self.template = template
        self.extractor = extractor
        self.filters = filters ?? Self.standardFilters(template: template)
        self.verifier = verifier
        self.keepPolicy = keepPolicy
        self.deduplicate = deduplicate
        self.length = length
        self.consensus = consensus
    }

    /// Template compliance, repetition and language mixing with their defaults.
    public static func standardFilters(template: TraceTemplate = .default) -> [any TraceFilter] {
        [TemplateFilter(template: template), RepetitionFilter(), LanguageMixingFilter()]
    }

    /// The key duplicates are found by: whitespace runs collapsed to one space, ends trimmed.
    public static func duplicateKey(_ completion: String) -> String {
        completion.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    }

    public func sample(prompt: TracePrompt, candidates: [String]) -> SamplingResult {
        var outcomes: [CandidateOutcome] = candidates.enumerated().map { i, c in
            let trace = template.parse(c, extractor: extractor)
            return CandidateOutcome(index: i, completion: c, trace: trace, rejections: filters.compactMap { $0.check(c, trace: trace).rejection })
        }
        if let verifier {
            let hasReference = !(prompt.answer ?? "").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
            if !hasReference, let consensus {
                switch majorityAnswer(outcomes, verifier: verifier, rule: consensus) {
                case .success(let answer):
                    for i in outcomes.indices {
                        if let r = verifier.verify(outcomes[i].trace, reference: answer).rejection { outcomes[i].rejections.append(r) }
                    }
                case .failure(let r):
                    for i in outcomes.indices { outcomes[i].rejections.append(r) }
                }
            } else {
                for i in outcomes.indices {
                    if let r = verifier.verify(outcomes[i].trace, reference: prompt.answer).rejection { outcomes[i].rejections.append(r) }
                }
            }
        }
        var eligible = outcomes.indices.filter { outcomes[$0].isKept }
        if deduplicate {
            var seen: [String: Int] = [:]
            eligible = eligible.filter { i in
                let key = Self.duplicateKey(outcomes[i].completion)
                if let first = seen[key] {
                    outcomes[i].rejections.append(Rejection(.duplicate, "same completion as candidate \(first)"))
                    return false
                }
                seen[key] = i
                return true
            }
        }
        let chosen: Int?
        switch keepPolicy {
        case .allCorrect: chosen = nil
        case .firstCorrect: chosen = eligible.first
        case .shortestCorrect:
            var best: (i: Int, n: Int)?
            for i in eligible {
                let n = length(outcomes[i].completion)
                if best == nil || n < best!.n { best = (i, n) }
            }
            chosen = best?.i
        }
        if let chosen {
            for i in eligible where i != chosen {
                outcomes[i].rejections.append(Rejection(.notSelected, "keep policy \(keepPolicy.rawValue) kept candidate \(chosen)"))
            }
        }
        return SamplingResult(prompt: prompt, candidates: outcomes)
    }

    enum Majority { case success(String), failure(Rejection) }

    /// The answer most candidates that pass the filters agree on, if it wins by `rule`.
    func majorityAnswer(_ outcomes: [CandidateOutcome], verifier: any Verifier, rule: Consensus) -> Majority {
        // Groups of equivalent answers: (representative answer, votes).
        var groups: [(answer: String, votes: Int)] = []
        for o in outcomes where o.rejections.isEmpty {
            guard let answer = o.trace.finalAnswer?.text else { continue }
            if let g = groups.firstIndex(where: { verifier.verify(o.trace, reference: $0.answer).isAccepted }) {
                groups[g].votes += 1
            } else {
                groups.append((answer, 1))
            }
        }
        let sorted = groups.sorted { $0.votes > $1.votes }
        guard let best = sorted.first else {
            return .failure(Rejection(.noConsensus, "no reference answer, and no candidate passing the filters has a final answer"))
        }
        let share = Double(best.votes) / Double(max(1, outcomes.count))
        if best.votes >= rule.minVotes, share >= rule.minShare, sorted.count == 1 || sorted[1].votes < best.votes {
            return .success(best.answer)
        }
        let detail = sorted.prefix(3).map { "\($0.answer) (\($0.votes))" }.joined(separator: ", ")
        return .failure(Rejection(.noConsensus, "no reference answer, and no answer won \(rule.minVotes)+ votes and \(Int((rule.minShare * 100).rounded()))% of \(outcomes.count) candidates: \(detail)"))
    }
}
