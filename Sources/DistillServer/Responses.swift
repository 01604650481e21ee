import DistillModels
import Foundation

// The OpenAI reply shapes (chat.completion, chat.completion.chunk, text_completion, model list).
// Optional fields that OpenAI sends as null are written as null (`NullWhenNil`).

/// An optional field that is written as `null` when nil (a synthesized `Encodable` leaves nil
/// fields out; OpenAI sends them as null).
@propertyWrapper
struct NullWhenNil<Value: Encodable>: Encodable {
    var wrappedValue: Value?

    init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }

    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if let v = wrappedValue { try c.encode(v) } else { try c.encodeNil() }
    }
}

extension NullWhenNil: Sendable where Value: Sendable {}

struct Usage: Encodable {
    var prompt_tokens: Int
    var completion_tokens: Int
    var total_tokens: Int

    init(prompt: Int, completion: Int) {
        prompt_tokens = prompt
        completion_tokens = completion
        total_tokens = prompt + completion
    }
}

/// A log-probability as JSON takes it: -inf (a token the model rules out) becomes -9999, as vLLM
/// writes it.
func jsonLogprob(_ x: Float) -> Float { x.isFinite ? x : -9999 }

struct ChatTopLogprob: Encodable {
    var token: String
    var logprob: Float
    var bytes: [UInt8]
}

struct ChatTokenLogprob: Encodable {
    var token: String
    var logprob: Float
    var bytes: [UInt8]
    var top_logprobs: [ChatTopLogprob]
}

struct ChatLogprobs: Encodable {
    var content: [ChatTokenLogprob]
}

/// The legacy completions' log-probabilities: parallel lists per token.
struct CompletionLogprobs: Encodable {
    var tokens: [String] = []
    var token_logprobs: [Float] = []
    @NullWhenNil var top_logprobs: [[String: Float]]? = nil
    var text_offset: [Int] = []
}

struct ChatMessageBody: Encodable {
    var role = "assistant"
    var content: String
}

struct ChatChoice: Encodable {
    var index: Int
    var message: ChatMessageBody
    @NullWhenNil var logprobs: ChatLogprobs? = nil
    var finish_reason: String
}

struct ChatCompletion: Encodable {
    var id: String
    var object = "chat.completion"
    var created: Int
    var model: String
    var choices: [ChatChoice]
    var usage: Usage
}

struct ChatDelta: Encodable {
    var role: String?
    var content: String?
}

struct ChatChunkChoice: Encodable {
    var index: Int
    var delta: ChatDelta
    @NullWhenNil var logprobs: ChatLogprobs? = nil
    @NullWhenNil var finish_reason: String? = nil
}

struct ChatChunk: Encodable {
    var id: String
    var object = "chat.completion.chunk"
    var created: Int
    var model: String
    var choices: [ChatChunkChoice]
    /// Only in the last chunk, with `stream_options.include_usage` (choices then empty).
    var usage: Usage?
}

struct CompletionChoice: Encodable {
    var index: Int
    var text: String
    @NullWhenNil var logprobs: CompletionLogprobs? = nil
    @NullWhenNil var finish_reason: String? = nil
}

/// A completion and a completion stream chunk have the same shape.
struct Completion: Encodable {
    var id: String
    var object = "text_completion"
    var created: Int
    var model: String
    var choices: [CompletionChoice]
    var usage: Usage?
}

struct ModelCard: Encodable {
    var id: String
    var object = "model"
    var created: Int
    var owned_by = "distill"
    var root: String
    var max_model_len: Int?
}

struct ModelList: Encodable {
    var object = "list"
    var data: [ModelCard]
}

/// JSON bytes of a reply.
func jsonBytes<T: Encodable>(_ value: T) -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    // Every value here is encodable (log-probabilities pass through `jsonLogprob`).
    return Array((try? encoder.encode(value)) ?? Data("{}".utf8))
}

extension FinishReason {
    /// OpenAI's name: a stop token and a stop string are both "stop".
    var openAI: String { self == .length ? "length" : "stop" }
}

/// Follows one choice's text as tokens arrive: complete characters only, text cut before the
/// first stop string, and text that might be the start of a stop string held back until it is
/// known not to be. The concatenation of everything returned equals the final text.
struct ChoiceText {
    private var decoder: StreamingDecoder
    private let stops: [[Unicode.Scalar]]
    /// Text decoded so far (complete characters).
    private var scalars: [Unicode.Scalar] = []
    /// How many scalars were handed out.
    private var sent = 0
    /// A stop string was found: the text is final.
    private(set) var stopped = false

    init(tokenizer: Tokenizer, stops: [String]) {
        decoder = tokenizer.makeStreamingDecoder(skipSpecialTokens: true)
        self.stops = stops.map { Array($0.unicodeScalars) }
    }

    /// Adds a token; returns the text that can go out now.
    mutating func add(_ token: Int) -> String {
        guard !stopped else { return "" }
        scalars += decoder.add(token).unicodeScalars
        return release(final: false)
    }

    /// Ends the choice; returns what was held back.
    mutating func finish() -> String {
        guard !stopped else { return "" }
        scalars += decoder.finish().unicodeScalars
        return release(final: true)
    }

    private mutating func release(final: Bool) -> String {
        var end = scalars.count
        if let cut = ChoiceText.firstStop(in: scalars, stops: stops) {
            end = cut
            stopped = true
        } else if !final {
            // Hold back the longest tail that begins a stop string.
            var hold = 0
            for s in stops {
                var k = min(s.count - 1, scalars.count)
                while k > hold {
                    if scalars[(scalars.count - k)...].elementsEqual(s[..<k]) { hold = k; break }
                    k -= 1
                }
            }
            end = scalars.count - hold
        }
        guard end > sent else { return "" }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars[sent..<end])
        sent = end
        return String(out)
    }

    /// Where the earliest stop string starts, if any.
    static func firstStop(in text: [Unicode.Scalar], stops: [[Unicode.Scalar]]) -> Int? {
        var best: Int?
        for s in stops where !s.isEmpty && s.count <= text.count {
            for i in 0...(text.count - s.count) where best.map({ i < $0 }) ?? true {
                if text[i] == s[0] && text[i..<(i + s.count)].elementsEqual(s) { best = i; break }
            }
        }
        return best
    }

    /// The final text of a finished choice: the decoded tokens cut before the first stop string.
    static func finalText(_ tokens: [Int], tokenizer: Tokenizer, stops: [String]) -> String {
        let text = tokenizer.decode(tokens, skipSpecialTokens: true)
        let scalars = Array(text.unicodeScalars)
        guard let cut = firstStop(in: scalars, stops: stops.map { Array($0.unicodeScalars) }) else { return text }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars[..<cut])
        return String(out)
    }
}
