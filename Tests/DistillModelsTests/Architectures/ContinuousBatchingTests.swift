@testable import DistillModels
import DistillNN
import DistillTensor
import XCTest

/// Rows joining a running generation batch (continuous batching): the KV cache joins and trims,
/// each row's output equals the row generated alone, and the scheduler admits waiting requests.
final class ContinuousBatchingTests: XCTestCase {
    func model() throws -> PretrainedModel { try PretrainedModel.loadDirectory(try fixtureURL("architectures", "qwen2").path) }

    /// Joining a cache of 3 positions with one of 5 left-pads the shorter rows with 2 zero
    /// positions; dropping 2 leading positions keeps the last 3 of every row.
    func testCacheRowsJoinLeftPaddedAndTrim() throws {
        let m = try model()
        func cache(_ ids: [Int]) -> KVCache {
            let c = m.lm.makeCache()
            _ = withoutGradients { m.lm.forward(ids, batch: 1, length: ids.count, cache: c) }
            return c
        }
        let a = cache([3, 4, 5]), b = cache([6, 7, 8, 9, 10])
        let ka = a.layers[1].keys!, kb = b.layers[1].keys!
        let joined = cache([3, 4, 5])
        joined.appendRows(of: b)
        XCTAssertEqual(joined.length, 5)
        let k = joined.layers[1].keys!
        let (h, d) = (ka.shape[1], ka.shape[3])
        XCTAssertEqual(k.shape, [2, h, 5, d])
        for head in 0..<h {
            for pos in 0..<5 {
                for j in 0..<d {
                    let padded: Float = pos < 2 ? 0 : ka.storage.pointer[(head * 3 + pos - 2) * d + j]
                    XCTAssertEqual(k.storage.pointer[(head * 5 + pos) * d + j], padded)
                    XCTAssertEqual(k.storage.pointer[((h + head) * 5 + pos) * d + j], kb.storage.pointer[(head * 5 + pos) * d + j])
                }
            }
        }
        joined.dropLeading(2)
        XCTAssertEqual(joined.length, 3)
        let t = joined.layers[1].keys!
        for head in 0..<h {
            for pos in 0..<3 {
                for j in 0..<d {
                    XCTAssertEqual(t.storage.pointer[(head * 3 + pos) * d + j], ka.storage.pointer[(head * 3 + pos) * d + j])
                    XCTAssertEqual(t.storage.pointer[((h + head) * 3 + pos) * d + j], kb.storage.pointer[(head * 5 + pos + 2) * d + j])
                }
            }
        }
        // Joining onto an empty cache takes the other's rows as they are.
        let empty = m.lm.makeCache()
        empty.appendRows(of: a)
        XCTAssertEqual(empty.length, 3)
        XCTAssertEqual(empty.layers[0].keys!.scalars, a.layers[0].keys!.scalars)
    }

    /// Rows admitted while others generate — a longer prompt, a shorter one with two samples, a
    /// greedy one after the first rows finished, one asking for no tokens — give the tokens and
    /// log-probabilities each gives alone.
    func testRowsAdmittedMidwayMatchSingleRuns() throws {
        let m = try model()
        let greedy = SamplingParameters(temperature: 0)
        let a = GenerationItem(prompt: [3, 17, 42, 8], options: GenerationOptions(maxTokens: 14, sampling: greedy))
        let b = GenerationItem(prompt: [5, 9, 11, 2, 7, 30, 1, 19, 23], options: GenerationOptions(maxTokens: 5, sampling: greedy, topLogprobs: 2))
        let c = GenerationItem(prompt: [12, 13], options: GenerationOptions(maxTokens: 9, sampling: .init(temperature: 1.2, seed: 3), n: 2),
                               samplerStream: 40)
        let d = GenerationItem(prompt: [44, 45, 46], options: GenerationOptions(maxTokens: 7, sampling: greedy))
        let none = GenerationItem(prompt: [1, 2], options: GenerationOptions(maxTokens: 0, sampling: greedy))
        let batch = DecodingBatch(model: m.lm, tokenizer: nil)
        var streamed: [Int: [Int]] = [:]
        func step() { batch.step(onToken: { id, t in streamed[id, default: []].append(t.token) }, isCancelled: { _ in false }) }
        let ida = batch.admit([a])
        for _ in 0..<3 { step() }
        let idbc = batch.admit([b, c, none])
        XCTAssertEqual(idbc.count, 4)
        XCTAssertFalse(batch.isLive(idbc[3]), "a row asking for no tokens is finished at once")
        for _ in 0..<6 { step() }
        XCTAssertFalse(batch.isLive(idbc[0]), "b has finished")
        let idd = batch.admit([d])
        while !batch.isDone { step() }
        let got = (ida + idbc + idd).map { batch.take($0) }
        let expected = try [a, b, c, none, d].flatMap { try Generator(model: m.lm).generate(items: [$0]) }
        XCTAssertEqual(got.count, expected.count)
        for (i, (g, e)) in zip(got, expected).enumerated() {
            XCTAssertEqual(g.tokens, e.tokens, "row \(i)")
            XCTAssertEqual(g.sample, e.sample, "row \(i)")
            XCTAssertEqual(g.finishReason, e.finishReason, "row \(i)")
            XCTAssertEqual(g.logprobs.count, e.logprobs.count)
            for (x, y) in zip(g.logprobs, e.logprobs) { XCTAssertEqual(x, y, accuracy: 1e-4, "row \(i)") }
            XCTAssertEqual(g.topLogprobs.map { $0.map(\.token) }, e.topLogprobs.map { $0.map(\.token) }, "row \(i)")
        }
        XCTAssertEqual(got.map(\.prompt), [0, 0, 1, 1, 2, 0], "prompts are numbered within their admission")
        for (id, g) in zip(ida + idbc + idd, got) { XCTAssertEqual(streamed[id] ?? [], g.tokens) }
    }

    /// A request submitted while another generates joins its batch and is answered first; with
    /// static batching it waits for the running one to end.
    func testSchedulerAdmitsWaitingRequestsAtTheNextStep() async throws {
        let m = try model()
        let greedy = SamplingParameters(temperature: 0)
        let short = GenerationItem(prompt: [7, 8, 9, 10, 11, 12], options: GenerationOptions(maxTokens: 6, sampling: greedy))
        let alone = try Generator(model: m.lm).generate(items: [short])[0]
        for mode in BatchingMode.allCases {
            let scheduler = GenerationScheduler(lm: m.lm, tokenizer: nil, maxBatch: 8, window: 0, mode: mode)
            defer { scheduler.stop() }
            // A long job, stopped (cancelled) once the short one has its answer, or after 20 000 tokens.
            let (events, flag) = scheduler.submit([GenerationItem(prompt: [5, 6], options: GenerationOptions(maxTokens: 20_000, sampling: greedy))])
            var order: [String] = []
            var shortResult: GeneratedSequence?
            var tokens = 0
            var shortTask: Task<[GeneratedSequence], Error>?
            for await event in events {
                switch event {
                case .token:
                    tokens += 1
                    if tokens == 3 {
                        shortTask = Task { try await scheduler.generate([short]) }
                        if mode == .static {
                            // Give the short job time to be waiting, then let the long one end.
                            try await Task.sleep(nanoseconds: 50_000_000)
                            flag.set()
                        }
                    }
                    if tokens > 3, mode == .continuous, shortResult == nil, let t = shortTask {
                        shortResult = try await t.value[0]
                        order.append("short")
                        flag.set()
                    }
                case .finished: order.append("long")
                case .failed(let e): XCTFail("\(e)")
                }
            }
            if shortResult == nil {
                shortResult = try await shortTask!.value[0]
                order.append("short")
            }
            XCTAssertEqual(shortResult!.tokens, alone.tokens, "\(mode)")
            for (x, y) in zip(shortResult!.logprobs, alone.logprobs) { XCTAssertEqual(x, y, accuracy: 1e-4) }
            XCTAssertEqual(order, mode == .continuous ? ["short", "long"] : ["long", "short"], "\(mode)")
            XCTAssertEqual(scheduler.joinedRunning, mode == .continuous ? 1 : 0, "\(mode)")
        }
    }
}
