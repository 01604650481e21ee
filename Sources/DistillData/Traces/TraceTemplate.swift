import Foundation

/// How a reasoning trace is laid out in a completion (DeepSeek-R1 / open-r1 style):
///
///     <think>
///     …reasoning…
///     </think>
///
///     …final answer…
///
/// The tags are configurable. With `openTagInPrompt` the opening tag belongs to the generation
/// prompt (as in the R1 distilled models' chat templates, which end in `<think>\n`), so a
/// completion starts with the reasoning and holds only the closing tag.
public struct TraceTemplate: Equatable, Codable, Sendable {
    public var openTag: String
    public var closeTag: String
    public var openTagInPrompt: Bool

    /// `<think>` … `</think>`, opening tag in the completion.
    public static let `default` = TraceTemplate()

    public init(openTag: String = "<think>", closeTag: String = "</think>", openTagInPrompt: Bool = false) {
        self.openTag = openTag
        self.closeTag = closeTag
        self.openTagInPrompt = openTagInPrompt
    }

    /// `open\nreasoning\nclose\n\nanswer` (without the opening tag when it is in the prompt).
    public func render(reasoning: String, answer: String) -> String {
        (openTagInPrompt ? "" : openTag + "\n") + reasoning + "\n" + closeTag + "\n\n" + answer
    }

    /// This template with the opening tag in the completion: the form `completion(text:reasoning:)`
    /// gives, which candidates are checked in, stored and exported as.
    public var completionForm: TraceTemplate {
        TraceTemplate(openTag: openTag, closeTag: closeTag, openTagInPrompt: false)
    }

    /// A teacher's completion in the full form (`open` reasoning `close` answer), however the
    /// teacher returned it:
    /// - with a separate reasoning field (DeepSeek's `reasoning_content`, vLLM's `reasoning`) that
    ///   is not blank: `render` of that reasoning and `text` as the answer (both trimmed; a blank
    ///   answer stays blank, so the template check rejects it as `empty answer`);
    /// - with `openTagInPrompt` (the prompt opened the think block): the opening tag and a newline
    ///   put back in front of `text`, unless `text` already starts with it after whitespace;
    /// - otherwise `text` as generated.
    public func completion(text: String, reasoning: String?) -> String {
        let trim: (String) -> String = { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        if let reasoning, !trim(reasoning).isEmpty {
            return completionForm.render(reasoning: trim(reasoning), answer: trim(text))
        }
        if openTagInPrompt && !text.drop(while: { $0.isWhitespace }).hasPrefix(openTag) {
            return openTag + (text.hasPrefix("\n") ? "" : "\n") + text
        }
        return text
    }

    /// Whether a rendered generation prompt already opens the think block (it ends with the opening
    /// tag, trailing whitespace aside), as DeepSeek-R1-Distill chat templates do (`…<｜Assistant｜><think>\n`).
    public func promptOpensThinkBlock(_ renderedPrompt: String) -> Bool {
        !openTag.isEmpty && renderedPrompt.trimmingCharacters(in: .whitespacesAndNewlines).hasSuffix(openTag)
    }

    /// Splits a completion leniently (see `checkCompliance` for the strict check):
    /// - an opening tag and a later closing tag: reasoning between them, answer after the closing tag;
    /// - an opening tag only (a truncated generation): all after it is reasoning, the answer is empty;
    /// - a closing tag only: reasoning before it, answer after it;
    /// - no tags: no reasoning, the whole completion is the answer.
    /// Reasoning and answer are trimmed of surrounding whitespace. The final answer is extracted
    /// from the answer part only.
    public func parse(_ completion: String, extractor: AnswerExtractor = .standard) -> ParsedTrace {
        let trim: (Substring) -> String = { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        var reasoning: String?
        var answer: String
        let open = openTagInPrompt ? nil : completion.range(of: openTag)
        if let open {
            if let close = completion.range(of: closeTag, range: open.upperBound..<completion.endIndex) {
                reasoning = trim(completion[open.upperBound..<close.lowerBound])
                answer = trim(completion[close.upperBound...])
            } else {
                reasoning = trim(completion[open.upperBound...])
                answer = ""
            }
        } else if let close = completion.range(of: closeTag) {
            reasoning = trim(completion[..<close.lowerBound])
            answer = trim(completion[close.upperBound...])
        } else {
            answer = trim(completion[...])
        }
        return ParsedTrace(reasoning: reasoning, answer: answer, finalAnswer: extractor.extract(from: answer))
    }

    /// Everything that keeps `completion` from following the template, in a fixed order; empty when
    /// it complies. A compliant completion has exactly one opening tag, at the start (only
    /// whitespace before it), exactly one closing tag after it, non-empty (not all-whitespace)
    /// reasoning between them and a non-empty answer after. With `openTagInPrompt` it has no
    /// opening tag and exactly one closing tag, with non-empty reasoning before it.
    public func violations(_ completion: String) -> [TemplateViolation] {
        var out: [TemplateViolation] = []
        let opens = Self.occurrences(of: openTag, in: completion)
        let closes = Self.occurrences(of: closeTag, in: completion)
        let isBlank: (Substring) -> Bool = { $0.allSatisfy(\.isWhitespace) }
        var reasoningStart = completion.startIndex
        if openTagInPrompt {
            if !opens.isEmpty { out.append(.unexpectedOpenTag) }
        } else if opens.isEmpty {
            out.append(.missingOpenTag)
        } else {
            let prefix = completion[..<opens[0].lowerBound]
            if !isBlank(prefix) { out.append(.textBeforeOpenTag(String(prefix.prefix(40)))) }
            if opens.count > 1 { out.append(.multipleOpenTags(opens.count)) }
            reasoningStart = opens[0].upperBound
        }
        let closesAfter = closes.filter { $0.lowerBound >= reasoningStart }
        if closesAfter.isEmpty {
            out.append(.unclosed)
        } else {
            if closes.count > 1 { out.append(.multipleCloseTags(closes.count)) }
            let c = closesAfter[0]
            if isBlank(completion[reasoningStart..<c.lowerBound]) { out.append(.emptyReasoning) }
            if isBlank(completion[c.upperBound...]) { out.append(.emptyAnswer) }
        }
        if closes.count > closesAfter.count && !out.contains(.multipleCloseTags(closes.count)) {
            out.append(.closeTagBeforeOpenTag)
        }
        return out
    }

    static func occurrences(of tag: String, in s: String) -> [Range<String.Index>] {
        guard !tag.isEmpty else { return [] }
        var out: [Range<String.Index>] = []
        var from = s.startIndex
        while let r = s.range(of: tag, range: from..<s.endIndex) {
            out.append(r)
            from = r.upperBound
        }
        return out
    }
}

/// One way a completion breaks its trace template.
public enum TemplateViolation: Equatable, Sendable, CustomStringConvertible {
    case missingOpenTag
    /// The opening tag was expected in the prompt, yet the completion holds one.
    case unexpectedOpenTag
    /// Text (its first 40 characters) before the opening tag.
    case textBeforeOpenTag(String)
    case multipleOpenTags(Int)
    case multipleCloseTags(Int)
    case closeTagBeforeOpenTag
    /// No closing tag after the reasoning (a truncated generation, most often).
    case unclosed
    case emptyReasoning
    case emptyAnswer

    public var description: String {
        switch self {
        case .missingOpenTag: return "no opening think tag"
        case .unexpectedOpenTag: return "an opening think tag, though the prompt already opens the block"
        case .textBeforeOpenTag(let t): return "text before the opening think tag (\"\(t)\")"
        case .multipleOpenTags(let n): return "\(n) opening think tags (expected one)"
        case .multipleCloseTags(let n): return "\(n) closing think tags (expected one)"
        case .closeTagBeforeOpenTag: return "a closing think tag before the opening one"
        case .unclosed: return "the think block is never closed"
        case .emptyReasoning: return "empty reasoning"
        case .emptyAnswer: return "nothing after the think block"
        }
    }
}

/// A completion split by a `TraceTemplate`.
public struct ParsedTrace: Equatable, Sendable {
    /// The reasoning (trimmed), nil when the completion has no think tags.
    public var reasoning: String?
    /// What follows the think block (trimmed); the whole completion when there is none.
    public var answer: String
    /// The final answer extracted from `answer`, nil when no rule found one.
    public var finalAnswer: ExtractedAnswer?

    public init(reasoning: String?, answer: String, finalAnswer: ExtractedAnswer?) {
        self.reasoning = reasoning
        self.answer = answer
        self.finalAnswer = finalAnswer
    }
}
