import DistillModels
import DistillNN
import DistillTensor
import Foundation
import XCTest
@testable import DistillModels

final class GenerationTests: XCTestCase {
    func model() throws -> PretrainedModel { try PretrainedModel.loadDirectory(try fixtureURL("architectures", "qwen2").path) }

    /// Greedy decoding with the KV cache picks, at every step, the argmax of a full forward pass
    /// over the whole sequence (no cache).
    func testCachedDecodingEqualsFullRecompute() throws {
        let m = try model()
        let prompt = [3, 17, 42, 8]
        let gen = try Generator(model: m.lm).generate(prompts: [prompt], options: GenerationOptions(maxTokens: 8, sampling: .init(temperature: 0)))
        var seq = prompt
        for _ in 0..<8 {
            let logits = withoutGradients { m.lm.forward(seq, batch: 1, length: seq.count).logits }
            let v = logits.shape[2]
            let last = Array(logits.scalars.suffix(v))
            seq.append(last.indices.max { last[$0] < last[$1] || (last[$0] == last[$1] && $0 > $1) }!)
        }
        XCTAssertEqual(gen[0].tokens, Array(seq.dropFirst(prompt.count)))
        XCTAssertEqual(gen[0].finishReason, .length)
    }

    /// Prompts of different lengths batched together (left padding) give the same tokens and
    /// log-probabilities as each prompt alone.
    func testBatchedPromptsOfDifferentLengthsMatchSingleRuns() throws {
        let m = try model()
        let prompts = [[5, 9, 11, 2, 7, 30, 1], [44], [12, 13, 14]]
        let opts = GenerationOptions(maxTokens: 6, sampling: .init(temperature: 0))
        let batched = try Generator(model: m.lm).generate(prompts: prompts, options: opts)
        for (i, p) in prompts.enumerated() {
            let single = try Generator(model: m.lm).generate(prompts: [p], options: opts)[0]
            XCTAssertEqual(batched[i].tokens, single.tokens, "prompt \(i)")
            for (a, b) in zip(batched[i].logprobs, single.logprobs) { XCTAssertEqual(a, b, accuracy: 1e-4) }
        }
    }

    /// n samples share the prompt; the same seed gives the same samples, another seed others.
    func testSamplingIsSeededAndNSamplesShareThePrompt() throws {
        let m = try model()
        let opts = GenerationOptions(maxTokens: 10, sampling: .init(temperature: 1.5, topK: 50, topP: 0.95, seed: 7), n: 4)
        let a = try Generator(model: m.lm).generate(prompts: [[1, 2, 3]], options: opts)
        let b = try Generator(model: m.lm).generate(prompts: [[1, 2, 3]], options: opts)
        XCTAssertEqual(a.count, 4)
        XCTAssertEqual(a.map(\.tokens), b.map(\.tokens))
        XCTAssertEqual(a.map(\.sample), [0, 1, 2, 3])
        XCTAssertGreaterThan(Set(a.map(\.tokens)).count, 1, "samples at temperature 1.5 should differ")
        var other = opts
        other.sampling.seed = 8
        XCTAssertNotEqual(try Generator(model: m.lm).generate(prompts: [[1, 2, 3]], options: other).map(\.tokens), a.map(\.tokens))
    }

    func testStopTokensAndTopLogprobs() throws {
        let m = try model()
        let greedy = try Generator(model: m.lm).generate(prompts: [[4, 4, 4]], options: GenerationOptions(maxTokens: 5, sampling: .init(temperature: 0), topLogprobs: 3))[0]
        XCTAssertEqual(greedy.topLogprobs.count, greedy.tokens.count)
        for (t, top) in zip(greedy.tokens, greedy.topLogprobs) {
            XCTAssertEqual(top.count, 3)
            XCTAssertEqual(top[0].token, t)                       // greedy picks the most likely
            XCTAssertGreaterThanOrEqual(top[0].logprob, top[1].logprob)
        }
        // Stopping on the third generated token: two tokens come back, reason "stop".
        let stopAt = greedy.tokens[2]
        guard !greedy.tokens.prefix(2).contains(stopAt) else { return }
        let stopped = try Generator(model: m.lm).generate(prompts: [[4, 4, 4]], options: GenerationOptions(maxTokens: 5, sampling: .init(temperature: 0), stopTokenIds: [stopAt]))[0]
        XCTAssertEqual(stopped.tokens, Array(greedy.tokens.prefix(2)))
        XCTAssertEqual(stopped.finishReason, .stop)
    }

    func testSamplerRules() {
        // logits: token 2 best, token 0 second. top-k 1 and top-p 0.1 both force token 2.
        let logits: [Float] = [2, 0, 3, -1]
        for p in [SamplingParameters(temperature: 1, topK: 1), SamplingParameters(temperature: 1, topP: 0.1),
                  SamplingParameters(temperature: 0), SamplingParameters(temperature: 1, minP: 0.9)] {
            var s = TokenSampler(p)
            for _ in 0..<20 { XCTAssertEqual(logits.withUnsafeBufferPointer { s.next(logits: $0.baseAddress!, count: 4, history: []) }, 2) }
        }
        // Repetition penalty 100 on token 2 (positive logit 3 → 0.03): greedy now picks token 0.
        var s = TokenSampler(SamplingParameters(temperature: 0, repetitionPenalty: 100))
        XCTAssertEqual(logits.withUnsafeBufferPointer { s.next(logits: $0.baseAddress!, count: 4, history: [2]) }, 0)
    }

    /// top-k's selection and top-p's thresholded sort keep exactly what sorting the whole
    /// vocabulary keeps: random logits, many ties, −∞ entries, a peak over a long flat tail (the
    /// threshold has to drop), masses up to where every token is kept.
    func testSamplerSelectionEqualsSortingTheVocabulary() {
        var rng = RandomGenerator(seed: 11)
        for trial in 0..<64 {
            let v = [5, 97, 1000, 4096][trial % 4]
            var logits: [Float] = (0..<v).map { _ in rng.nextNormal() * Float(1 + trial % 5) }
            if trial % 3 == 0 { logits = logits.map { ($0 * 2).rounded() / 2 } }               // ties
            if trial % 7 == 0 { for i in stride(from: 0, to: v, by: 5) { logits[i] = -.infinity } }
            if trial % 8 == 1 { logits = (0..<v).map { i -> Float in i == v / 3 ? 0 : -12 } }     // peak, flat tail
            for k in Set([1, 2, 7, v / 2, v - 1]) where k >= 1 && k < v {
                XCTAssertEqual(kthLargest(logits, k), logits.sorted(by: >)[k - 1], "trial \(trial) k \(k)")
            }
            let m = logits.max()!
            var probs: [Float] = logits.map { Foundation.exp($0 - m) }
            let z = probs.reduce(0, +)
            for i in probs.indices { probs[i] /= z }
            for mass: Float in [0.01, 0.5, 0.9, 0.95, 0.999, 0.99999, 1 - 1e-7] {
                let order = probs.indices.sorted { (a: Int, b: Int) -> Bool in probs[a] > probs[b] || (probs[a] == probs[b] && a < b) }
                var cum: Float = 0, want = [Bool](repeating: false, count: v)
                for i in order {
                    want[i] = true
                    cum += probs[i]
                    if cum >= mass { break }
                }
                let kept = nucleus(probs, mass: mass)
                XCTAssertEqual(kept.indices.filter { kept[$0] }, want.indices.filter { want[$0] }, "trial \(trial) mass \(mass)")
            }
        }
    }

    func testBadOptionsAreErrors() throws {
        let m = try model()
        let g = Generator(model: m.lm)
        XCTAssertThrowsError(try g.generate(prompts: [[1]], options: GenerationOptions(sampling: .init(topP: 0)))) { e in
            XCTAssertTrue("\(e)".contains("top_p"), "\(e)")
        }
        XCTAssertThrowsError(try g.generate(prompts: [[]], options: GenerationOptions())) { e in
            XCTAssertEqual(e as? GenerationError, .emptyPrompt(index: 0))
        }
        XCTAssertThrowsError(try g.generate(prompts: [[1, 100_000]], options: GenerationOptions())) { e in
            XCTAssertTrue("\(e)".contains("100000"), "\(e)")
        }
    }
}
