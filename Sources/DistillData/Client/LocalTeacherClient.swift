import DistillModels
import Foundation

/// A teacher running in this process: a `PretrainedModel` behind a `GenerationScheduler`.
///
/// Generation is CPU-bound and synchronous, so it runs on the scheduler's own thread, never on
/// Swift's cooperative pool (whose few threads it would block). Requests made concurrently are
/// generated together in batches of up to `maxBatch` sequences (continuous batching, as a
/// server does); each keeps its own seed, so its answer does not depend on its neighbours.
/// Chat prompts go through the model's chat template; text prompts are encoded as they are.
/// Token strings in log-probabilities are the decoded text of each token id.
public final class LocalTeacherClient: TeacherClient, @unchecked Sendable {
    private let model: PretrainedModel
    private let scheduler: GenerationScheduler
    public let modelName: String

    /// - Parameters:
    ///   - maxBatch: most sequences (prompts × n) generated in one batch.
    ///   - batchWindow: seconds an idle teacher waits after a request for others to join its batch.
    public init(model: PretrainedModel, name: String? = nil, maxBatch: Int = 64, batchWindow: Double = 0.005) throws {
        let tok = try model.requireTokenizer()
        self.model = model
        modelName = name ?? model.path
        scheduler = GenerationScheduler(lm: model.lm, tokenizer: tok,
                                        maxBatch: maxBatch, window: batchWindow)
    }

    deinit { scheduler.stop() }

    /// Generator batches run so far (concurrent requests share batches).
    public var batchCount: Int { scheduler.batches }

    public func complete(_ prompt: TeacherPrompt, sampling s: TeacherSampling) async throws -> TeacherResponse {
        try s.validate()
        try Task.checkCancellation()
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
            sequences = try await scheduler.generate([GenerationItem(prompt: ids, options: options, samplerStream: 0)])
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
                    TokenLogprob(token: piece(seq.tokens[k]), logprob: Double(seq.logprobs[k]), bytes: tok.decodeBytes([seq.tokens[k]]),
                                 top: k < seq.topLogprobs.count
                                     ? seq.topLogprobs[k].map {
                                         TopLogprob(token: piece($0.token), logprob: Double($0.logprob), bytes: tok.decodeBytes([$0.token]))
                                     } : [])
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
