import Foundation

/// Why a candidate completion was not kept.
public struct Rejection: Hashable, Codable, Sendable, CustomStringConvertible {
    /// Stable names (the keys of `stats.json`'s rejection counts).
    public enum Kind: String, Hashable, Codable, CaseIterable, Sendable {
        /// The completion breaks the trace template.
        case template
        /// No final answer could be extracted.
        case noAnswer = "no_answer"
        /// The final answer differs from the reference.
        case wrongAnswer = "wrong_answer"
        /// The verifier needs a reference answer and the prompt has none.
        case noReference = "no_reference"
        /// No reference, and the candidates did not agree on an answer (self-consistency).
        case noConsensus = "no_consensus"
        /// The verifier cannot run (e.g. a reference that is not a valid regular expression).
        case verifierError = "verifier_error"
        case tooShort = "too_short"
        case tooLong = "too_long"
        case repetition
        case languageMixing = "language_mixing"
        /// The same normalised completion was already kept for the prompt.
        case duplicate
        /// Correct and clean, but the keep policy chose another candidate.
        case notSelected = "not_selected"
    }

    public var kind: Kind
    /// Human-readable detail ("expected 18, got 17").
    public var detail: String

    public init(_ kind: Kind, _ detail: String) {
        self.kind = kind
        self.detail = detail
    }

    public var description: String { "\(kind.rawValue): \(detail)" }
}

/// The outcome of one verifier or filter on one candidate.
public enum Verdict: Hashable, Sendable {
    case accepted
    case rejected(Rejection)

    public var rejection: Rejection? {
        if case .rejected(let r) = self { return r }
        return nil
    }
    public var isAccepted: Bool { rejection == nil }
}

/// Checks a completion's answer against the prompt's reference answer.
public protocol Verifier: Sendable {
    /// `trace` is the parsed completion, `reference` the prompt's reference answer (as given, e.g.
    /// a GSM8K solution ending in `#### 72`).
    func verify(_ trace: ParsedTrace, reference: String?) -> Verdict
}

/// What part of a parsed trace a text verifier compares.
public enum AnswerTarget: String, Codable, Sendable {
    /// The extracted final answer (no answer found: rejected with `no_answer`).
    case finalAnswer
    /// The whole answer part after the think block.
    case answerText
}

extension AnswerTarget {
    enum Found { case success(String), failure(Rejection) }

    func text(of trace: ParsedTrace) -> Found {
        switch self {
        case .finalAnswer:
            guard let f = trace.finalAnswer else {
                return .failure(Rejection(.noAnswer, trace.answer.isEmpty ? "nothing after the think block" : "no final answer found in the answer text"))
            }
            return .success(f.text)
        case .answerText:
            guard !trace.answer.isEmpty else { return .failure(Rejection(.noAnswer, "nothing after the think block")) }
            return .success(trace.answer)
        }
    }
}

/// Math answers compared with `MathEquivalence` (exact rationals where both are numbers). The
/// reference's own answer is extracted first (`AnswerExtractor.referenceAnswer`: last `\boxed{}`,
/// or after `####`).
public struct MathVerifier: Verifier, Equatable {
    public var equivalence: MathEquivalence

    public init(equivalence: MathEquivalence = MathEquivalence()) { self.equivalence = equivalence }

    public func verify(_ trace: ParsedTrace, reference: String?) -> Verdict {
        guard let reference, !reference.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            return .rejected(Rejection(.noReference, "the prompt has no reference answer"))
        }
        let got: String
        switch AnswerTarget.finalAnswer.text(of: trace) {
        case .failure(let r): return .rejected(r)
        case .success(let s): got = s
        }
        let expected = AnswerExtractor.referenceAnswer(reference)
        if equivalence.equivalent(got, expected) { return .accepted }
        return .rejected(Rejection(.wrongAnswer, "expected \(expected) (\(equivalence.value(expected))), got \(got) (\(equivalence.value(got)))"))
    }
}

/// Exact string match after whitespace normalisation (runs of whitespace become one space, ends
/// trimmed), optionally case-insensitive. The reference is used as given.
public struct ExactMatchVerifier: Verifier, Equatable {
    public var caseInsensitive: Bool
    public var target: AnswerTarget

    public init(caseInsensitive: Bool = false, target: AnswerTarget = .finalAnswer) {
        self.caseInsensitive = caseInsensitive
        self.target = target
    }

    public static func normalize(_ s: String, caseInsensitive: Bool) -> String {
        let words = s.split(whereSeparator: { $0.isWhitespace })
        let joined = words.joined(separator: " ")
        return caseInsensitive ? joined.lowercased() : joined
    }

    public func verify(_ trace: ParsedTrace, reference: String?) -> Verdict {
        guard let reference else { return .rejected(Rejection(.noReference, "the prompt has no reference answer")) }
        let got: String
        switch target.text(of: trace) {
        case .failure(let r): return .rejected(r)
        case .success(let s): got = s
        }
        if Self.normalize(got, caseInsensitive: caseInsensitive) == Self.normalize(reference, caseInsensitive: caseInsensitive) {
            return .accepted
        }
        return .rejected(Rejection(.wrongAnswer, "expected \"\(reference)\", got \"\(got)\""))
    }
}

/// A regular expression (NSRegularExpression syntax) that must match somewhere in the answer
/// (anchor it with `^…$` for a whole match). The pattern is fixed at creation, or — when created
/// without one — each prompt's reference answer is the pattern.
public struct RegexVerifier: Verifier {
    public let pattern: String?
    public let target: AnswerTarget
    public let caseInsensitive: Bool
    let regex: NSRegularExpression?

    /// Throws `TraceDataError.invalidArgument` for a pattern that does not compile.
    public init(pattern: String?, target: AnswerTarget = .answerText, caseInsensitive: Bool = false) throws {
        self.pattern = pattern
        self.target = target
        self.caseInsensitive = caseInsensitive
        if let pattern {
            do { regex = try NSRegularExpression(pattern: pattern, options: caseInsensitive ? [.caseInsensitive] : []) } catch {
                throw TraceDataError.invalidArgument("not a valid regular expression: \(pattern)")
            }
        } else {
            regex = nil
        }
    }

    public func verify(_ trace: ParsedTrace, reference: String?) -> Verdict {
        var re = regex
        if re == nil {
            guard let reference else { return .rejected(Rejection(.noReference, "no pattern and the prompt has no reference answer")) }
            do { re = try NSRegularExpression(pattern: reference, options: caseInsensitive ? [.caseInsensitive] : []) } catch {
                return .rejected(Rejection(.verifierError, "the reference is not a valid regular expression: \(reference)"))
            }
        }
        let got: String
        switch target.text(of: trace) {
        case .failure(let r): return .rejected(r)
        case .success(let s): got = s
        }
        let range = NSRange(location: 0, length: (got as NSString).length)
        if re!.firstMatch(in: got, range: range) != nil { return .accepted }
        let shown = got.count > 80 ? String(got.prefix(80)) + "…" : got
        return .rejected(Rejection(.wrongAnswer, "\"\(shown)\" does not match /\(re!.pattern)/"))
    }
}

/// A verifier described as data (recipes, command lines).
public enum VerifierKind: Equatable, Codable, Sendable {
    case math(MathEquivalence)
    case exact(caseInsensitive: Bool, target: AnswerTarget)
    /// nil pattern: the reference answer is the pattern.
    case regex(pattern: String?, target: AnswerTarget, caseInsensitive: Bool)

    public func makeVerifier() throws -> any Verifier {
        switch self {
        case .math(let e): return MathVerifier(equivalence: e)
        case let .exact(ci, target): return ExactMatchVerifier(caseInsensitive: ci, target: target)
        case let .regex(pattern, target, ci): return try RegexVerifier(pattern: pattern, target: target, caseInsensitive: ci)
        }
    }
}
