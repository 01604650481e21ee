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

    public init(template: TraceTemplate = .default, extractor: AnswerExtractor = .standard,
                filters: [any TraceFilter]? = nil, verifier: (any Verifier)? = MathVerifier(),
                keepPolicy: KeepPolicy = .allCorrect, deduplicate: Bool = true,
                length: @escaping @Sendable (String) -> Int = { $0.count }) {
        self.template = template
        self.extractor = extractor
        self.filters = filters ?? Self.standardFilters(template: template)
        self.verifier = verifier
        self.keepPolicy = keepPolicy
        self.deduplicate = deduplicate
        self.length = length
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
            var rejections = filters.compactMap { $0.check(c, trace: trace).rejection }
            if let verifier, let r = verifier.verify(trace, reference: prompt.answer).rejection { rejections.append(r) }
            return CandidateOutcome(index: i, completion: c, trace: trace, rejections: rejections)
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
}
