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
    /// The token ids of a prompt: with `chat`, a user turn in the chat template (which already
    /// holds any BOS the model wants), else the text as the tokenizer encodes it by default.
    public func promptIds(_ prompt: String, chat: Bool) throws -> [Int] {
        let tok = try requireTokenizer()
        if chat { return tok.encode(try applyChatTemplate([ChatMessage(role: "user", content: prompt)]), addSpecialTokens: false) }
        return tok.encode(prompt)
    }

    /// Greedy completions of `prompts` as chat user turns (`chat`), `batchSize` at a time, each
    /// stopping at an end-of-sequence token or after `maxTokens`; `done(n)` after each batch.
    public func greedyAnswers(_ prompts: [String], chat: Bool, maxTokens: Int, batchSize: Int,
                              done: (Int) -> Void = { _ in }) throws -> [(text: String, tokens: Int)] {
        let tok = try requireTokenizer(), size = Swift.max(1, batchSize)
        var options = GenerationOptions(maxTokens: maxTokens)
        options.sampling.temperature = 0
        options.stopTokenIds = Set(eosTokenIds)
        var out: [(text: String, tokens: Int)] = []
        for s in stride(from: 0, to: prompts.count, by: size) {
            let ids = try prompts[s..<Swift.min(prompts.count, s + size)].map { try promptIds($0, chat: chat) }
            out += try Generator(model: lm).generate(prompts: ids, options: options).map {
                (tok.decode($0.tokens, skipSpecialTokens: true), $0.tokens.count)
            }
            done(out.count)
        }
        return out
    }

    /// Generates `options.n` completions. `onText(sample, piece)` streams decoded text as it
    /// becomes complete (multi-byte characters split across tokens are held back).
    public func generate(_ request: TextGenerationRequest, onText: (Int, String) -> Void = { _, _ in }) throws -> [TextCompletion] {
        let tok = try requireTokenizer()
        let ids = try promptIds(request.prompt, chat: request.chat)
        var options = request.options
        options.stopTokenIds.formUnion(eosTokenIds)
        var decoders = (0..<options.n).map { _ in tok.makeStreamingDecoder(skipSpecialTokens: true) }
        let seqs = try Generator(model: lm).generate(prompts: [ids], options: options,
                                                     tokenizer: tok) { row, token in
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
