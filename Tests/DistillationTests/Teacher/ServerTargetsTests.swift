import DistillData
import DistillModels
import DistillNN
import DistillServer
import DistillTensor
import DistillTestSupport
import Foundation
import XCTest
@testable import Distillation

/// A server's top-k log-probabilities as KD targets: `distill traces --logprobs K` against the
/// real OpenAI-compatible server (`OpenAIServer` on loopback), mapped to the student's ids and
/// written as a logit cache; the trainer's soft term from it equals the one from the same model
/// run locally and cut to its top-k (`cache-logits`), on the positions the server covered.
final class ServerTargetsTests: XCTestCase {
    static let fixtureTokenizer = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("DistillServerTests/Fixtures/tokenizer")

    func directory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-targets-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func testServerLogprobsGiveTheLocalTopKSoftTerm() async throws {
        let model = try tinyChatModel(tokenizerDirectory: Self.fixtureTokenizer, seed: 1)
        let tok = model.tokenizer!
        let dir = try directory()
        let openAI = try OpenAIServer(model: model, modelName: "tiny", maxBatch: 8, batchWindow: 0.002)
        let running = try await openAI.start()
        var config = HTTPTeacherConfiguration(baseURL: running.baseURL, model: "tiny")
        config.requestTimeout = 60
        let client = try HTTPTeacherClient(config)
        let k = 20
        let prompts = (0..<4).map { TracePrompt(id: "q\($0)", text: "question \($0): what is \($0) plus one?") }
        let out = dir.appendingPathComponent("traces.jsonl").path
        let summary: TracePipelineSummary
        do {
            // The random model follows no template: keep every candidate.
            summary = try await TracePipeline(TracePipelineConfiguration(
                prompts: .prompts(prompts), teacher: client, samplesPerPrompt: 2,
                sampling: TraceSamplingSettings(temperature: 0.9, maxTokens: 24, seed: 3), topLogprobs: k,
                verifier: nil, filters: [], storePath: dir.appendingPathComponent("s.sqlite").path, outputPath: out,
                statsPath: dir.appendingPathComponent("stats.json").path)).run()
        } catch {
            try? await client.shutdown(); await running.shutdown()
            throw error
        }
        try await client.shutdown()
        await running.shutdown()
        XCTAssertEqual(summary.records, 8)

        let store = try GenerationStore(path: summary.storePath, settings: GenerationSettings(
            teacherModel: "tiny", template: "", samplesPerPrompt: 2, temperature: 0.9, seed: 3), ignoreSettingsMismatch: true)
        let records = try store.keptCandidates()

        XCTAssertTrue(records.allSatisfy { $0.logprobs != nil })
        let serverCache = dir.appendingPathComponent("server.logits").path
        let st = try ServerTargets.writeCache(dataFile: out, records: records, tokenizer: tok, chatTemplate: model.chatTemplate,
                                              vocabularySize: model.lm.config.vocabSize, k: k, maxLength: 512, path: serverCache)
        XCTAssertEqual(st.records, 8)
        // A random model's output holds byte tokens that are not whole characters and runs the
        // tokenizer splits otherwise: from the first such token on a completion's positions are
        // dropped (and counted); the rest map.
        XCTAssertGreaterThanOrEqual(st.mappedPositions, 10, "\(st)")
        XCTAssertEqual(st.mappedPositions + st.droppedPositions.values.reduce(0, +), st.sampledTokens, "\(st)")

        // The reference: the same model in process, top-k of its logits (`cache-logits`).
        let file = try TextDataFile(path: out)
        let sequences = try file.sequences(with: tok, chatTemplate: model.chatTemplate, maxLength: 512, assistantOnly: true)
        let localCache = dir.appendingPathComponent("local.logits").path
        try LogitCacheWriter(path: localCache, header: LogitCacheHeader(
            dataHash: file.hash, vocabularySize: model.lm.config.vocabSize, tokenizerVocabularySize: tok.vocabSize, k: k,
            temperature: 1, maxLength: 512, chunkSequences: 4, fingerprint: tok.fingerprint))
            .run(teacher: LocalTeacher(model: model), sequences: sequences.map(\.ids))
        let server = try CachedTeacher(cache: try LogitCache(path: serverCache))
        let local = KnownRowsTeacher(base: try CachedTeacher(cache: try LogitCache(path: localCache)), knownFrom: server)

        let student = TransformerLM(model.lm.config, seed: 9)
        func softTerm(_ teacher: Teacher) throws -> Float {
            let trainer = Trainer(student: student, teacher: teacher, train: sequences, plan: .kd(alpha: 1, temperature: 1),
                                  configuration: TrainerConfiguration(totalSteps: 1, batchSize: 8))
            let batch = Batch.make(sequences, layout: .padToLongest(padId: 0))
            return try XCTUnwrap(trainer.loss(batch, plan: trainer.plan(0)).soft)
        }
        let a = try softTerm(server), b = try softTerm(local)
        XCTAssertGreaterThan(a, 0)
        XCTAssertEqual(a, b, accuracy: 1e-4)

        // stats.json gets the mapping's counts.
        try SamplingStatistics.addSection("teacher_targets", st, to: summary.statsPath)
        let stats = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: summary.statsPath))) as! [String: Any]
        let section = try XCTUnwrap(stats["teacher_targets"] as? [String: Any])
        XCTAssertEqual(section["mapped_positions"] as? Int, st.mappedPositions)
        XCTAssertNotNil(stats["overall"])
    }

    // MARK: Mapping, bad input

    func mapped(_ text: String, _ logprobs: [TokenLogprob], k: Int = 3) throws -> (rows: [LogitCacheRow], ids: [Int], stats: ServerTargetStatistics) {
        let model = try tinyChatModel(tokenizerDirectory: Self.fixtureTokenizer)
        let tok = model.tokenizer!
        let ids = tok.encode("question" + text, addSpecialTokens: false)
        var st = ServerTargetStatistics()
        let rows = ServerTargets.rows(ids: ids, completion: text, logprobs: logprobs, map: ServerTokenMap(tokenizer: tok, vocabularySize: model.lm.config.vocabSize),
                                      k: k, statistics: &st)
        return (rows, ids, st)
    }

    /// The tokens of `text` as a server reports them, each with itself and one other alternative.
    func sampled(_ text: String) throws -> [TokenLogprob] {
        let tok = try tinyChatModel(tokenizerDirectory: Self.fixtureTokenizer).tokenizer!
        let prefix = tok.encode("question", addSpecialTokens: false).count
        let ids = Array(tok.encode("question" + text, addSpecialTokens: false).dropFirst(prefix))
        return ids.map { id in
            let s = tok.decode([id])
            return TokenLogprob(token: s, logprob: -0.25, top: [TopLogprob(token: s, logprob: -0.25), TopLogprob(token: "e", logprob: -2)])
        }
    }

    func testMappingCoversEachSampledToken() throws {
        let lps = try sampled(" one two")
        let (rows, ids, st) = try mapped(" one two", lps)
        XCTAssertEqual(st.mappedPositions, lps.count)
        let known = rows.indices.filter { rows[$0].isKnown }
        XCTAssertEqual(known, Array((ids.count - lps.count - 1)..<(ids.count - 1)))
        let first = rows[known[0]]
        XCTAssertEqual(first.ids[0], ids[known[0] + 1])               // the sampled token, most likely
        XCTAssertEqual(first.logprobs[0], -0.25)
        XCTAssertEqual(first.logprobs[2], -.infinity)                 // filled to k
        XCTAssertEqual(Double(first.rest), 1 - exp(-0.25) - exp(-2), accuracy: 1e-6)
    }

    func testBadInputIsCountedNotGuessed() throws {
        var lps = try sampled(" one two")
        // An alternative the student lacks, an id out of range, a NaN log-probability.
        lps[0].top.append(TopLogprob(token: "\u{1F99C}\u{1F99C}\u{1F99C}", logprob: -3))
        lps[0].top.append(TopLogprob(token: "token_id:99999999", logprob: -4))
        lps[0].top.append(TopLogprob(token: "x", logprob: .nan))
        // A sampled token named by its id (vLLM's return_tokens_as_token_ids) maps like its text.
        let (rows, ids, st) = try mapped(" one two", lps, k: 6)
        lps[1] = TokenLogprob(token: "token_id:\(ids[ids.count - lps.count + 1])", logprob: -0.1, top: [])
        let byID = try mapped(" one two", lps, k: 6)
        XCTAssertEqual(byID.stats.mappedPositions, lps.count)
        XCTAssertEqual(st.droppedAlternatives["unknown_token"], 1)
        XCTAssertEqual(st.droppedAlternatives["id_out_of_range"], 1)
        XCTAssertEqual(st.droppedAlternatives["bad_logprob"], 1)
        XCTAssertEqual(st.mappedPositions, lps.count)
        XCTAssertEqual(rows.filter(\.isKnown).count, st.mappedPositions)
        // A sampled id out of range: its bytes are unknown, so no position of the candidate can be placed.
        lps[1] = TokenLogprob(token: "token_id:99999999", logprob: -0.1, top: [])
        let bad = try mapped(" one two", lps, k: 6)
        XCTAssertEqual(bad.stats.mappedPositions, 0)
        XCTAssertEqual(bad.stats.droppedPositions, ["id_out_of_range": lps.count])

        // Sampled tokens that do not spell the completion: nothing is mapped.
        let other = try mapped(" one two", try sampled(" three"))
        XCTAssertEqual(other.stats.mappedPositions, 0)
        XCTAssertEqual(other.stats.droppedPositions["text_mismatch"], other.stats.sampledTokens)
    }

    func testMalformedStoredLogprobsAreCounted() throws {
        let model = try tinyChatModel(tokenizerDirectory: Self.fixtureTokenizer)
        let dir = try directory()
        let out = dir.appendingPathComponent("t.jsonl").path
        let lines: String = #"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"one"}]}"# + "\n"
            + #"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"two"}]}"# + "\n"
        try Data(lines.utf8).write(to: URL(fileURLWithPath: out))
        let records = [StoredCandidate(index: 0, text: "one", logprobs: Data("{not json".utf8), verdict: .kept),
                       StoredCandidate(index: 1, text: "two", verdict: .kept)]
        let st = try ServerTargets.writeCache(dataFile: out, records: records, tokenizer: model.tokenizer!, chatTemplate: model.chatTemplate,
                                              vocabularySize: model.lm.config.vocabSize, k: 4, maxLength: nil,
                                              path: dir.appendingPathComponent("c.logits").path)
        XCTAssertEqual(st.droppedPositions, ["malformed_logprobs": 1, "no_logprobs": 1])
        XCTAssertEqual(st.mappedPositions, 0)
        // A cache without a single target still reads: every row unknown.
        let cache = try LogitCache(path: dir.appendingPathComponent("c.logits").path)
        XCTAssertFalse(cache.rows(of: 0).known.contains(true))
    }
}

/// A teacher's view with the rows another teacher has no view of marked unknown (so two teachers
/// are compared on the same positions).
final class KnownRowsTeacher: Teacher {
    let base: Teacher, knownFrom: Teacher
    init(base: Teacher, knownFrom: Teacher) { self.base = base; self.knownFrom = knownFrom }
    var vocabularySize: Int { base.vocabularySize }
    var tokenizerFingerprint: String? { base.tokenizerFingerprint }
    var tokenizerVocabularySize: Int? { base.tokenizerVocabularySize }
    var logprobTemperature: Float? { base.logprobTemperature }

    func view(of sequences: [[Int]], positions: [[Int]]?) throws -> TeacherView {
        guard case .sparse(let s) = try base.view(of: sequences, positions: positions),
              case .sparse(let mask) = try knownFrom.view(of: sequences, positions: positions) else {
            throw TeacherError.invalidRequest("sparse views expected")
        }
        return .sparse(try SparseTeacherTargets(ids: s.ids, logprobs: s.logprobs, k: s.k, vocabularySize: s.vocabularySize,
                                                restMass: s.restMass, known: (0..<s.rows).map(mask.isKnown)))
    }
}

/// Traces rendered through a chat template that drops reasoning from assistant turns (as
/// DeepSeek-R1-Distill's does) keep it, and the caller is told.
final class KeepReasoningTests: XCTestCase {
    func testTemplateThatDropsReasoningKeepsIt() throws {
        let model = try tinyChatModel(tokenizerDirectory: ServerTargetsTests.fixtureTokenizer)
        let tok = model.tokenizer!
        // R1-style: the answer after </think> only, and a generation prompt that opens the block.
        let dropping = try ChatTemplate(source: """
            {% for m in messages %}{% if m['role'] == 'user' %}<|im_start|>user\n{{ m['content'] }}<|im_end|>\n\
            {% else %}{% set c = m['content'] %}{% if '</think>' in c %}{% set c = c.split('</think>')[-1] %}{% endif %}\
            <|im_start|>assistant\n{{ c }}<|im_end|>\n{% endif %}{% endfor %}\
            {% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}
            """)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-keep-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("t.jsonl").path
        let record = #"{"messages":[{"role":"user","content":"2+3?"},{"role":"assistant","content":"<think>\nadd two and three\n</think>\n\n#### 5"}]}"#
        try Data((record + "\n").utf8).write(to: URL(fileURLWithPath: path))
        let file = try TextDataFile(path: path)

        let kept = try file.encoded(with: tok, chatTemplate: dropping, assistantOnly: true)
        XCTAssertEqual(kept.keptReasoning, 1)
        let seq = kept.sequences[0]
        let text = tok.decode(seq.ids)
        // The prompt as the template renders it (opening the block), then the message without a
        // second opening tag, then the template's end of turn.
        XCTAssertEqual(text, "<|im_start|>user\n2+3?<|im_end|>\n<|im_start|>assistant\n<think>\nadd two and three\n</think>\n\n#### 5<|im_end|>\n")
        let counted = zip(seq.ids, seq.lossMask!).filter { $0.1 }.map(\.0)
        XCTAssertEqual(tok.decode(counted), "add two and three\n</think>\n\n#### 5<|im_end|>\n")

        // A template that keeps the reasoning is used as it is.
        let keeping = try file.encoded(with: tok, chatTemplate: model.chatTemplate, assistantOnly: true)
        XCTAssertEqual(keeping.keptReasoning, 0)
        XCTAssertTrue(tok.decode(keeping.sequences[0].ids).contains("add two and three"))
    }
}
