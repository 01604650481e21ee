import DistillData
import DistillModels
import DistillNN
import DistillTensor
import DistillTestSupport
import Foundation
import XCTest
@testable import Distillation

/// Cross-tokenizer distillation: the ULD and span losses against a PyTorch reference
/// (scripts/make_cross_tokenizer_fixtures.py) and finite differences, the byte alignment of two
/// tokenizations against a brute-force oracle, and the trainer with a teacher of another tokenizer.
final class CrossTokenizerTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let serverTokenizer = fixtures.appendingPathComponent("DistillServerTests/Fixtures/tokenizer")
    static let smolTokenizer = fixtures.appendingPathComponent("DistillModelsTests/Fixtures/tokenizer/smollm2")

    static let reference: [[String: Any]] = {
        guard let url = Bundle.module.url(forResource: "cross_tokenizer", withExtension: "json", subdirectory: "Fixtures"),
              let data = try? Data(contentsOf: url),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            fatalError("Fixtures/cross_tokenizer.json missing (run scripts/make_cross_tokenizer_fixtures.py)")
        }
        return Fixture.list(obj["cases"])
    }()

    static func loss(_ c: [String: Any], _ logits: Tensor) throws -> Tensor {
        let tau = Fixture.float(c["tau"])
        if c["kind"] as? String == "uld" {
            let sorted = (c["teacher_sorted"] as! [Any]).map { Fixture.floats($0) }
            return try DistillationLoss.universalLogitDistance(logits: logits, rows: Fixture.ints(c["rows"]), teacherSorted: sorted,
                                                               teacherRest: Fixture.floats(c["teacher_rest"]), temperature: tau)
        }
        let spans = Fixture.list(c["spans"]).map { SpanTokens(rows: Fixture.ints($0["rows"]), tokens: Fixture.ints($0["tokens"])) }
        let teacher = (c["teacher_logprobs"] as! [Any]).map { ($0 as? String) == "-inf" ? -Float.infinity : Fixture.float($0) }
        return try DistillationLoss.spanLikelihood(logits: logits, spans: spans, teacherLogProbs: teacher, temperature: tau)
    }

    func testLossesAndGradientsMatchThePyTorchReference() throws {
        XCTAssertEqual(Self.reference.count, 5)
        for c in Self.reference {
            let name = c["name"] as! String
            let logits = Tensor(Fixture.floats(c["logits"]), shape: Fixture.ints(c["shape"]))
            let (value, grads) = valueAndGradient(at: [logits]) { try! Self.loss(c, $0[0]) }
            assertRelative(value.item, Fixture.double(c["value"]), tolerance: 1e-5, name)
            let expected = Fixture.floats(c["grad"]), got = grads[0].scalars
            let scale = expected.map { Swift.abs($0) }.max()!
            for (g, e) in zip(got, expected) {
                XCTAssertEqual(g, e, accuracy: 1e-5 * scale, "\(name): gradient")
            }
        }
    }

    func testGradientsMatchFiniteDifferences() throws {
        let z = normal([4, 7], std: 1.5, seed: 3)
        // ULD against a whole wider teacher row and against a top-3 row with a rest mass.
        let wide: [Float] = [0.4, 0.2, 0.15, 0.1, 0.06, 0.04, 0.03, 0.02]
        checkGradients(inputs: [z]) {
            try! DistillationLoss.universalLogitDistance(logits: $0[0], rows: [0, 2, 3], teacherSorted: [wide, wide, wide],
                                                         teacherRest: [0, 0, 0], temperature: 1.3)
        }
        checkGradients(inputs: [z]) {
            try! DistillationLoss.universalLogitDistance(logits: $0[0], rows: [1, 3], teacherSorted: [[0.9, 0.05, 0.03], [0.85, 0.1, 0.02]],
                                                         teacherRest: [0.02, 0.03], temperature: 0.8)
        }
        checkGradients(inputs: [z]) {
            try! DistillationLoss.spanLikelihood(logits: $0[0], spans: [SpanTokens(rows: [0, 1], tokens: [3, 6]),
                                                                        SpanTokens(rows: [2], tokens: [0]),
                                                                        SpanTokens(rows: [3, 2], tokens: [1, 1])],
                                                 teacherLogProbs: [-2.5, -0.3, -4], temperature: 1.7)
        }
    }

    func testBadInputIsReported() {
        let z = normal([3, 5], seed: 1)
        assertThrowsMessage(try DistillationLoss.universalLogitDistance(logits: z, rows: [3], teacherSorted: [[1]], teacherRest: [0],
                                                                        temperature: 1), contains: ["row", "3"])
        assertThrowsMessage(try DistillationLoss.universalLogitDistance(logits: z, rows: [0], teacherSorted: [[0.2, 0.5]], teacherRest: [0.3],
                                                                        temperature: 1), contains: ["sorted descending"])
        assertThrowsMessage(try DistillationLoss.universalLogitDistance(logits: z, rows: [0, 0], teacherSorted: [[1], [1]], teacherRest: [0, 0],
                                                                        temperature: 1), contains: ["listed twice"])
        assertThrowsMessage(try DistillationLoss.universalLogitDistance(logits: z, rows: [0], teacherSorted: [[1]], teacherRest: [0],
                                                                        temperature: 0), contains: ["temperature"])
        assertThrowsMessage(try DistillationLoss.spanLikelihood(logits: z, spans: [SpanTokens(rows: [0], tokens: [5])], teacherLogProbs: [-1],
                                                                temperature: 1), contains: ["token", "5"])
        assertThrowsMessage(try DistillationLoss.spanLikelihood(logits: z, spans: [SpanTokens(rows: [0], tokens: [1])], teacherLogProbs: [0.5],
                                                                temperature: 1), contains: ["must be ≤ 0"])
        assertThrowsMessage(try DistillationLoss.spanLikelihood(logits: z, spans: [SpanTokens(rows: [0, 1], tokens: [1])], teacherLogProbs: [-1],
                                                                temperature: 1), contains: ["as many rows as tokens"])
        XCTAssertEqual(try DistillationLoss.spanLikelihood(logits: z, spans: [], teacherLogProbs: [], temperature: 1).item, 0)
    }

    func testAlignmentOfEndOffsets() {
        // student: "ab|cde|(empty)|fghi|jkl"  teacher: "(bos)|abcde|fg|hi|jkl"
        let a = TokenAlignment(studentEnds: [2, 5, 5, 9, 12], teacherEnds: [0, 5, 7, 9, 12], limit: 12)
        XCTAssertEqual(a.studentRows, [2, 3, 4])
        XCTAssertEqual(a.teacherRows, [1, 3, 4])
        XCTAssertEqual(a.spans, [TokenAlignment.Span(student: 3..<4, teacher: 2..<4), TokenAlignment.Span(student: 4..<5, teacher: 4..<5)])
        // Past the limit nothing aligns.
        let cut = TokenAlignment(studentEnds: [2, 5, 5, 9, 12], teacherEnds: [0, 5, 7, 9, 12], limit: 9)
        XCTAssertEqual(cut.studentRows, [2, 3])
        XCTAssertEqual(cut.spans, [TokenAlignment.Span(student: 3..<4, teacher: 2..<4)])
    }

    /// Two real tokenizers (a small Qwen2-style one and SmolLM2's), checked against a brute-force
    /// oracle: every paired row has read the same bytes, every span decodes to the same bytes on
    /// both sides, and the spans cover exactly the common boundaries.
    func testRetokenizedTextAlignsOnCommonBoundaries() throws {
        let student = try Tokenizer(directory: Self.serverTokenizer), teacher = try Tokenizer(directory: Self.smolTokenizer)
        let text = "<|im_start|>user\nWhat is 12 × 7? Think: naïve café — résumé.<|im_end|>\n<|im_start|>assistant\n84, because 12·7 = 84.<|im_end|>"
        let ids = student.encode(text, addSpecialTokens: false)
        let (teacherIds, a) = TokenAlignment.retokenize(studentIds: ids, student: student, teacher: teacher)
        // This student vocabulary lacks some bytes of "é": its text has invalid UTF-8, repaired to U+FFFD.
        let raw = student.decodeBytes(ids)
        XCTAssertNil(String(validatingUTF8: raw.map { CChar(bitPattern: $0) } + [0]))
        let (repaired, offset) = TokenAlignment.repairedUTF8(raw)
        XCTAssertEqual(teacher.decode(teacherIds), String(decoding: repaired, as: UTF8.self))
        XCTAssertEqual(teacher.decodeBytes(teacherIds), repaired)
        XCTAssertNotEqual(teacherIds, ids)
        // Where each token ends, by decoding prefixes (student offsets through the repair).
        func studentEnd(_ n: Int) -> Int { offset[student.decodeBytes(Array(ids[..<n])).count] }
        func teacherEnd(_ n: Int) -> Int { teacher.decodeBytes(Array(teacherIds[..<n])).count }
        XCTAssertGreaterThan(a.studentRows.count, ids.count / 3)
        for (i, j) in zip(a.studentRows, a.teacherRows) {
            XCTAssertEqual(studentEnd(i + 1), teacherEnd(j + 1))
            XCTAssertGreaterThan(studentEnd(i + 1), 0)
        }
        // Every common boundary is a span end (the first closes the span holding token 0).
        let sEnds = Set((1...ids.count).map { studentEnd($0) }), tEnds = Set((1...teacherIds.count).map { teacherEnd($0) })
        let common = sEnds.intersection(tEnds).filter { $0 > 0 }.sorted()
        XCTAssertEqual(a.studentRows.count, common.count)
        XCTAssertEqual(a.spans.map { studentEnd($0.student.upperBound) }, Array(common.dropFirst()))
        for span in a.spans {
            XCTAssertEqual(Array(repaired[studentEnd(span.student.lowerBound)..<studentEnd(span.student.upperBound)]),
                           teacher.decodeBytes(Array(teacherIds[span.teacher])))
        }
    }

    /// A server's sampled tokens with their top-20 — here the teacher model's own, at each of its
    /// tokens after the first, as `distill traces --logprobs` stores them — give the same targets
    /// as the model itself truncated to its top 20.
    func testServerTokensGiveTheModelsTopKTargets() throws {
        let teacher = try model(Self.smolTokenizer, seed: 2), student = try model(Self.serverTokenizer, seed: 5)
        let tt = teacher.tokenizer!, st = student.tokenizer!
        let text = "The cat sat on the mat. Twelve times seven is eighty-four, said the teacher."
        let ids = st.encode(text, addSpecialTokens: false)
        let teacherIds = tt.encode(text, addSpecialTokens: false)
        let logp = withoutGradients { teacher.lm.forward(teacherIds, batch: 1, length: teacherIds.count).logits.reshaped([teacherIds.count, -1]).logSoftmax() }
        let v = logp.shape[1]
        let sampled: [TokenLogprob] = (1..<teacherIds.count).map { j in
            let row = Array(UnsafeBufferPointer(start: logp.storage.pointer + (j - 1) * v, count: v))
            let top = row.indices.sorted { row[$0] > row[$1] }.prefix(20).map {
                TopLogprob(token: tt.decode([$0]), logprob: Double(row[$0]), bytes: tt.decodeBytes([$0]))
            }
            return TokenLogprob(token: tt.decode([teacherIds[j]]), logprob: Double(row[teacherIds[j]]), bytes: tt.decodeBytes([teacherIds[j]]),
                                top: Array(top))
        }
        let spans = ServerTokenSpans(completion: tt.decode(Array(teacherIds[1...])), logprobs: sampled)
        XCTAssertFalse(spans.ends.contains(-1))
        XCTAssertEqual(spans.ends.last, Array(spans.completion.utf8).count)
        let batch = Batch.make([TokenSequence(ids)], layout: .padToLongest(padId: 0))
        let request = TeacherBatchRequest(mask: batch.lossMask, soft: true, temperature: 1)
        for loss in CrossTokenizerLoss.allCases {
            let server = try CrossTokenizerTeacher(serverSpans: [spans], sequences: [ids], studentTokenizer: st,
                                                   studentVocabularySize: student.lm.config.vocabSize, loss: loss, topK: 20)
            let local = try CrossTokenizerTeacher(lm: teacher.lm, teacherTokenizer: tt, studentTokenizer: st,
                                                  studentVocabularySize: student.lm.config.vocabSize, loss: loss, topK: 20)
            XCTAssertEqual(server.logprobTemperature, 1)
            guard case .crossTokenizer(let a)? = try server.outputs(for: batch, request: request).soft,
                  case .crossTokenizer(let b)? = try local.outputs(for: batch, request: request).soft else { return XCTFail("\(loss)") }
            XCTAssertGreaterThan(a.count, 3, "\(loss)")
            XCTAssertEqual(a.rows, b.rows, "\(loss)")
            XCTAssertEqual(a.spans, b.spans, "\(loss)")
            for (x, y) in zip(a.sorted, b.sorted) {
                XCTAssertEqual(x.count, y.count)
                for (p, q) in zip(x, y) { XCTAssertEqual(p, q, accuracy: 1e-6) }
            }
            for (x, y) in zip(a.rest + a.teacherLogProbs, b.rest + b.teacherLogProbs) { XCTAssertEqual(x, y, accuracy: 2e-5) }
            // At another temperature the server's log-probabilities do not apply.
            assertThrowsMessage(try server.outputs(for: batch, request: TeacherBatchRequest(mask: batch.lossMask, soft: true, temperature: 2)),
                                contains: ["temperature 1"])
        }
    }

    /// A tokens file that is not one: bad JSON, missing keys, lists of different lengths — each
    /// names the file and line; a file with another number of records than data.train is refused
    /// by the recipe runner.
    func testServerTokensFileErrors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tokens-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = ServerTokenSpans(completion: "ab", ends: [1, 2], logprobs: [-0.5, -1], top: [[0.6, 0.2], [0.4]])
        let path = dir.appendingPathComponent("t.tokens.jsonl").path
        try ServerTokenSpans.write([good, good], to: path)
        XCTAssertEqual(try ServerTokenSpans.read(path), [good, good])
        for (line, reason) in [("not json", "expected {\"completion\", \"ends\", \"logprobs\", \"top\"}"),
                               (#"{"completion": "a", "ends": [1]}"#, "expected {\"completion\""),
                               (#"{"completion": "a", "ends": [1, 2], "logprobs": [-1], "top": [[]]}"#, "one entry per token")] {
            try (#"{"completion": "a", "ends": [1], "logprobs": [-1], "top": [[]]}"# + "\n" + line + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            assertThrowsMessage(try ServerTokenSpans.read(path), contains: [path, "line 2", reason])
        }
        assertThrowsMessage(try ServerTokenSpans.read(dir.appendingPathComponent("none").path), contains: ["none", "cannot read the file"])
        // Spans and sequences must pair up.
        let tok = try Tokenizer(directory: Self.serverTokenizer)
        assertThrowsMessage(try CrossTokenizerTeacher(serverSpans: [good], sequences: [[1], [2]], studentTokenizer: tok,
                                                      studentVocabularySize: tok.vocabSize, loss: .uld),
                            contains: ["1 server token records for 2 training examples"])
    }

    func model(_ tokenizer: URL, seed: UInt64) throws -> PretrainedModel { try tinyChatModel(tokenizerDirectory: tokenizer, seed: seed) }

    func sequences(_ tok: Tokenizer) -> [TokenSequence] {
        ["The cat sat on the mat.", "Twelve times seven is eighty-four.", "A cafe serves hungry customers.",
         "Bees make honey; spiders have eight legs.", "Water is hydrogen and oxygen."].map {
            TokenSequence(tok.encode($0, addSpecialTokens: false))
        }
    }

    func trainer(_ teacher: any Teacher, student: TransformerLM, _ data: [TokenSequence], alpha: Float = 1) -> Trainer {
        let c = TrainerConfiguration(totalSteps: 8, batchSize: 5, order: .sequential, learningRate: .constant(1e-2), maxGradNorm: nil, seed: 1)
        return Trainer(student: student, teacher: teacher, train: data, plan: .kd(alpha: alpha, temperature: 1), configuration: c)
    }

    /// A teacher that is the student (same weights, same tokenizer) gives a soft term of 0 through
    /// either cross-tokenizer loss; with the same tokenizer every row aligns.
    func testACopyOfTheStudentGivesNoSoftLoss() throws {
        let m = try model(Self.serverTokenizer, seed: 4)
        let tok = m.tokenizer!
        for loss in CrossTokenizerLoss.allCases {
            let teacher = try CrossTokenizerTeacher(lm: m.lm, teacherTokenizer: tok, studentTokenizer: tok,
                                                    studentVocabularySize: m.lm.config.vocabSize, loss: loss)
            let t = trainer(teacher, student: m.lm, sequences(tok))
            let batch = Batch.make(t.trainSet, layout: .padToLongest(padId: 0))
            let parts = try t.loss(batch, plan: t.plan(0))
            XCTAssertEqual(parts.soft!, 0, accuracy: 1e-5, "\(loss)")
            XCTAssertEqual(teacher.alignedShare, 1, "\(loss)")
        }
    }

    /// SmolLM2-tokenized teacher, Qwen2-style student: both losses train (the soft term falls),
    /// counted rows or spans align, and α mixes in the hard term.
    func testATeacherWithAnotherTokenizerTrainsTheStudent() throws {
        let teacher = try model(Self.smolTokenizer, seed: 2), student = try model(Self.serverTokenizer, seed: 5)
        let data = sequences(student.tokenizer!)
        for loss in CrossTokenizerLoss.allCases {
            let s = TransformerLM(student.lm.config, seed: 9)
            let ct = try CrossTokenizerTeacher(lm: teacher.lm, teacherTokenizer: teacher.tokenizer!, studentTokenizer: student.tokenizer!,
                                               studentVocabularySize: s.config.vocabSize, loss: loss, topK: loss == .uld ? 16 : nil)
            let t = trainer(ct, student: s, data)
            let first = try t.trainStep(), rest = try (0..<7).map { _ in try t.trainStep() }
            XCTAssertLessThan(rest.last!.soft!, first.soft! * 0.9, "\(loss): \(first.soft!) → \(rest.last!.soft!)")
            // The small fixture tokenizer cuts words into pieces SmolLM2 keeps whole: about a third
            // of its rows end where a SmolLM2 token ends ("The cat sat on the mat.": 7 of 13); a
            // span holds several of its tokens, so most counted spans align.
            XCTAssertGreaterThan(ct.alignedShare, loss == .uld ? 0.25 : 0.5, "\(loss)")
            XCTAssertNil(first.hard)
            // α = 0.5: the total is the mean of the soft term and the cross-entropy.
            let mixed = trainer(ct, student: TransformerLM(student.lm.config, seed: 9), data, alpha: 0.5)
            let m = try mixed.trainStep()
            XCTAssertEqual(m.loss, 0.5 * m.soft! + 0.5 * m.hard!, accuracy: 1e-4 * m.loss)
        }
        // Feature terms need the same tokenizer.
        let ct = try CrossTokenizerTeacher(lm: teacher.lm, teacherTokenizer: teacher.tokenizer!, studentTokenizer: student.tokenizer!,
                                           studentVocabularySize: student.lm.config.vocabSize, loss: .uld)
        var c = TrainerConfiguration(totalSteps: 1, batchSize: 2, maxGradNorm: nil)
        c.featureMap = LayerMap.uniform(studentLayers: 2, teacherLayers: 2)
        let t = Trainer(student: student.lm, teacher: ct, train: data, plan: .kd(alpha: 1, temperature: 1, feature: 1), configuration: c)
        assertThrowsMessage(try t.trainStep(), contains: ["needs a teacher model in memory"])
    }
}
