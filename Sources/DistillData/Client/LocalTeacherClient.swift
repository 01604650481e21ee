import DistillModels
import Foundation

/// A teacher running in this process: a `PretrainedModel` and `Generator`.
///
/// Generation is CPU-bound and synchronous, so it runs on a dedicated serial dispatch queue, one
/// request at a time, never on Swift's cooperative pool (whose few threads it would block).
/// Chat prompts go through the model's chat template; text prompts are encoded as they are.
/// Token strings in log-probabilities are the decoded text of each token id.
public final class LocalTeacherClient: TeacherClient, @unchecked Sendable {
    // The model is used only on `queue`.
    private let model: PretrainedModel
    private let queue: DispatchQueue
    public let modelName: String

    public init(model: PretrainedModel, name: String? = nil) throws {
        _ = try model.requireTokenizer()
        self.model = model
        modelName = name ?? model.path
        queue = DispatchQueue(label: "distill.local-teacher", qos: .userInitiated)
    }

    public func complete(_ prompt: TeacherPrompt, sampling: TeacherSampling) async throws -> TeacherResponse {
        try sampling.validate()
        try Task.checkCancellation()
        return try await withCheckedThrowingContinuation { (c: CheckedContinuation<TeacherResponse, Error>) in
            queue.async {
                c.resume(with: Result { try self.generate(prompt, sampling: sampling) })
            }
        }
    }

    /// The synchronous work, on `queue`.
    private func generate(_ prompt: TeacherPrompt, sampling s: TeacherSampling) throws -> TeacherResponse {
        let tok = try model.requireTokenizer()
        let ids: [Int]
        switch prompt {
        case .chat(let messages):
            guard !messages.isEmpty else { throw TeacherClientError.invalidRequest("no messages") }
            let text = try model.applyChatTemplate(messages.map { ChatMessage(role: $0.role, content: $0.content) })
            // The template already holds any BOS the model wants.
            ids = tok.encode(text, addSpecialTokens: false)
        case .text(let text):
            ids = tok.encode(text)
        }
        guard !ids.isEmpty else { throw TeacherClientError.invalidRequest("the prompt encodes to no tokens") }
        if let limit = try? model.config.int("max_position_embeddings"), ids.count + s.maxTokens > limit {
            throw TeacherClientError.invalidRequest(
                "the prompt has \(ids.count) tokens and max_tokens is \(s.maxTokens); the model takes at most \(limit) positions")
        }
        let options = GenerationOptions(
            maxTokens: s.maxTokens,
            sampling: SamplingParameters(temperature: Float(s.temperature), topP: Float(s.topP), seed: s.seed ?? 0),
            n: s.n, stopTokenIds: Set(model.eosTokenIds), stopStrings: s.stop,
            topLogprobs: s.wantsLogprobs ? s.topLogprobs : 0)
        let decode = { (t: [Int]) in tok.decode(t, skipSpecialTokens: true) }
        let sequences: [GeneratedSequence]
        do {
            sequences = try Generator(model: model.lm).generate(prompts: [ids], options: options, decode: decode)
        } catch {
            throw TeacherClientError.local("\(error)")
        }
        var pieces: [Int: String] = [:]
        func piece(_ id: Int) -> String {
            if let p = pieces[id] { return p }
            let p = tok.decode([id])
            pieces[id] = p
            return p
        }
        var completions: [TeacherCompletion] = []
        var generated = 0
        for seq in sequences {
            var text = decode(seq.tokens)
            if seq.finishReason == .stopString,
               let cut = s.stop.compactMap({ text.range(of: $0) }).min(by: { $0.lowerBound < $1.lowerBound }) {
                text = String(text[..<cut.lowerBound])
            }
            var logprobs: [TokenLogprob]?
            if s.wantsLogprobs {
                logprobs = seq.tokens.indices.map { k in
                    TokenLogprob(token: piece(seq.tokens[k]), logprob: Double(seq.logprobs[k]),
                                 top: k < seq.topLogprobs.count
                                     ? seq.topLogprobs[k].map { TopLogprob(token: piece($0.token), logprob: Double($0.logprob)) } : [])
                }
            }
            generated += seq.tokens.count
            completions.append(TeacherCompletion(index: seq.sample, text: text,
                                                 finishReason: seq.finishReason == .length ? .length : .stop,
                                                 logprobs: logprobs))
        }
        return TeacherResponse(model: modelName, completions: completions.sorted { $0.index < $1.index },
                               usage: TeacherUsage(promptTokens: ids.count, completionTokens: generated))
    }
}
