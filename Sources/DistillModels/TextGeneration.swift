import Foundation

/// Text in, text out: tokenization, the chat template, generation and decoding in one call
/// (`distill generate`).
public struct TextGenerationRequest: Sendable {
    public var prompt: String
    /// Wrap the prompt as a user turn in the model's chat template, with the generation prompt.
    public var chat = false
    public var options = GenerationOptions()

    public init(prompt: String, chat: Bool = false, options: GenerationOptions = GenerationOptions()) {
        self.prompt = prompt
        self.chat = chat
        self.options = options
    }
}

public struct TextCompletion: Sendable {
    public var text: String
    public var tokens: [Int]
    public var finishReason: FinishReason
}

extension PretrainedModel {
    /// Generates `options.n` completions. `onText(sample, piece)` streams decoded text as it
    /// becomes complete (multi-byte characters split across tokens are held back).
    public func generate(_ request: TextGenerationRequest, onText: (Int, String) -> Void = { _, _ in }) throws -> [TextCompletion] {
        let tok = try requireTokenizer()
        let ids: [Int]
        if request.chat {
            let text = try applyChatTemplate([ChatMessage(role: "user", content: request.prompt)])
            // The template already holds any BOS the model wants.
            ids = tok.encode(text, addSpecialTokens: false)
        } else {
            ids = tok.encode(request.prompt)
        }
        var options = request.options
        options.stopTokenIds.formUnion(eosTokenIds)
        var decoders = (0..<options.n).map { _ in tok.makeStreamingDecoder(skipSpecialTokens: true) }
        let seqs = try Generator(model: lm).generate(prompts: [ids], options: options,
                                                     decode: { tok.decode($0, skipSpecialTokens: true) }) { row, token in
            let piece = decoders[row].add(token)
            if !piece.isEmpty { onText(row, piece) }
        }
        return seqs.map { s in
            var text = tok.decode(s.tokens, skipSpecialTokens: true)
            if s.finishReason == .stopString, let cut = options.stopStrings.compactMap({ text.range(of: $0) }).min(by: { $0.lowerBound < $1.lowerBound }) {
                text = String(text[..<cut.lowerBound])
            }
            return TextCompletion(text: text, tokens: s.tokens, finishReason: s.finishReason)
        }
    }
}
