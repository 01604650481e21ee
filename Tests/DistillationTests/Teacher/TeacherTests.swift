import DistillModels
import DistillNN
import DistillTensor
@testable import Distillation
import Foundation
import XCTest

/// A tiny teacher: the qwen2-style test tokenizer of DistillModelsTests (506 ids) and a random
/// 1-layer TransformerLM over `vocab` logits (≥ 506; more means padding rows).
enum TinyTeacher {
    static let tokenizerDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("DistillModelsTests/Fixtures/tokenizer/qwen2_style")

    static let tokenizer: Tokenizer = try! Tokenizer(directory: tokenizerDir)

    static func make(vocab: Int = 506, seed: UInt64 = 7) -> LocalTeacher {
        let cfg = TransformerConfig(vocabSize: vocab, hidden: 16, layers: 1, heads: 2, kvHeads: 1, intermediate: 32)
        let template = tokenizer.chatTemplate.flatMap { try? ChatTemplate(source: $0) }
        return LocalTeacher(lm: TransformerLM(cfg, seed: seed), tokenizer: tokenizer, chatTemplate: template)
    }

    static let texts = ["The quick brown fox jumps over the lazy dog.", "Hello world", "a", "Numbers 12345 and more text here.",
                        "Distillation of language models.", "Zebra", "One more line of training text"]

    static func jsonl(_ texts: [String]) -> Data {
        Data(texts.map { "{\"text\": \"\($0)\"}" }.joined(separator: "\n").utf8)
    }
}

final class TeacherTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-teacher-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func header(_ teacher: LocalTeacher, data: TextDataFile, k: Int = 8, tau: Float = 2, chunk: Int = 2) -> LogitCacheHeader {
        LogitCacheHeader(dataHash: data.hash, vocabularySize: teacher.vocabularySize, tokenizerVocabularySize: TinyTeacher.tokenizer.vocabSize,
                         k: k, temperature: tau, maxLength: 0, chunkSequences: chunk, fingerprint: TinyTeacher.tokenizer.fingerprint)
    }

    /// Writes a cache of TinyTeacher.texts; returns the path, sequences and teacher.
    func writeCache(name: String = "c.cache", k: Int = 8, tau: Float = 2, chunk: Int = 2, vocab: Int = 506)
        throws -> (path: String, sequences: [[Int]], teacher: LocalTeacher, data: TextDataFile) {
        let teacher = TinyTeacher.make(vocab: vocab)
        let data = try TextDataFile(data: TinyTeacher.jsonl(TinyTeacher.texts), path: "data.jsonl")
        let seqs = try data.tokenize(with: TinyTeacher.tokenizer, chatTemplate: nil)
        let path = dir.appendingPathComponent(name).path
        try LogitCacheWriter(path: path, header: header(teacher, data: data, k: k, tau: tau, chunk: chunk)).run(teacher: teacher, sequences: seqs)
        return (path, seqs, teacher, data)
    }

    func assertF16Close(_ a: [Float], _ b: [Float], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        for (x, y) in zip(a, b) {
            // F16 keeps 11 significant bits: relative error ≤ 2⁻¹¹ ≈ 4.9e-4.
            XCTAssertEqual(x, y, accuracy: Swift.max(1e-3 * abs(y), 1e-4), file: file, line: line)
        }
    }

    func testFNV1a64KnownValues() {
        // FNV-1a 64 of "" is the offset basis; of "a" is 0xaf63dc4c8601ec8c (reference value).
        XCTAssertEqual(FNV1a64.hash(Data()), 0xcbf2_9ce4_8422_2325)
        XCTAssertEqual(FNV1a64.hash(Data("a".utf8)), 0xaf63_dc4c_8601_ec8c)
        XCTAssertEqual(FNV1a64.hex(0xab), "00000000000000ab")
    }

    func testCacheRoundTrip() throws {
        let (path, seqs, teacher, data) = try writeCache()
        let cache = try LogitCache(path: path)
        XCTAssertEqual(cache.sequenceCount, seqs.count)
        XCTAssertTrue(cache.header.complete)
        XCTAssertEqual(cache.header.sequenceCount, seqs.count)
        XCTAssertEqual(cache.header.k, 8)
        XCTAssertEqual(cache.header.temperature, 2)
        XCTAssertEqual(cache.header.dataHash, data.hash)
        XCTAssertEqual(cache.header.fingerprint, TinyTeacher.tokenizer.fingerprint)
        for (i, seq) in seqs.enumerated() {
            XCTAssertEqual(cache.tokens(of: i), seq)
            XCTAssertEqual(cache.index(of: seq), i)
            guard case .full(let logits) = try teacher.view(of: [seq]) else { return XCTFail("local teacher gives full logits") }
            let expected = try SparseTeacherTargets.topK(ofLogits: logits, k: 8, temperature: 2)
            let got = cache.rows(of: i)
            XCTAssertEqual(got.ids, expected.ids)
            assertF16Close(got.logprobs, expected.logprobs)
            // rest = 1 − Σ top-k probabilities (stored as F32, summed in Double).
            for (r, e) in zip(got.rest, expected.restMass) { XCTAssertEqual(r, e, accuracy: 1e-5) }
        }
        XCTAssertNil(cache.index(of: [1, 2, 3, 4, 5, 6, 7]))
    }

    func testLocalAndCachedTeachersAgree() throws {
        let (path, seqs, teacher, _) = try writeCache(k: 6, tau: 1)
        let cached = try CachedTeacher(path: path, expecting: .init(fingerprint: TinyTeacher.tokenizer.fingerprint, vocabularySize: 506,
                                                                    k: 6, temperature: 1, complete: true))
        let batch = [seqs[3], seqs[0], seqs[2]]
        let positions = [[0, 2, 1], Array(0..<seqs[0].count), [0]]
        guard case .sparse(let s) = try cached.view(of: batch, positions: positions),
              case .full(let logits) = try teacher.view(of: batch, positions: positions) else { return XCTFail("view kinds") }
        let expected = try SparseTeacherTargets.topK(ofLogits: logits, k: 6, temperature: 1)
        XCTAssertEqual(s.rows, positions.map(\.count).reduce(0, +))
        XCTAssertEqual(s.ids, expected.ids)
        assertF16Close(s.logprobs, expected.logprobs)
        for (r, e) in zip(s.restMass, expected.restMass) { XCTAssertEqual(r, e, accuracy: 1e-5) }
        // The sparse loss against both views agrees to F16 precision.
        let student = Tensor((0..<(s.rows * 506)).map { Float(($0 * 37) % 101) / 50 - 1 }, shape: [s.rows, 506])
        let a = DistillationLoss.sparseKL(student: student, teacher: s).scalars[0]
        let b = DistillationLoss.sparseKL(student: student, teacher: expected).scalars[0]
        XCTAssertEqual(a, b, accuracy: 1e-3 * Swift.max(1, abs(b)))
        // A smaller k: the first k entries, the dropped ones' mass added to the rest.
        let k3 = try CachedTeacher(cache: cached.cache, k: 3)
        guard case .sparse(let s3) = try k3.view(of: [seqs[1]]) else { return XCTFail() }
        let top3 = try SparseTeacherTargets.topK(ofLogits: VocabularyAlignment.align(logits: try fullLogits(teacher, seqs[1]), to: 506), k: 3)
        XCTAssertEqual(s3.ids, top3.ids)
        for (r, e) in zip(s3.restMass, top3.restMass) { XCTAssertEqual(r, e, accuracy: 2e-3) }
        // A sequence not in the cache.
        XCTAssertThrowsError(try cached.view(of: [[5, 6, 7]]))
    }

    func fullLogits(_ t: LocalTeacher, _ seq: [Int]) throws -> Tensor {
        guard case .full(let l) = try t.view(of: [seq]) else { throw TeacherError.invalidRequest("not full") }
        return l
    }

    /// Sequences run as right-padded batches give the rows they give one at a time.
    func testBatchedLocalTeacherMatchesOneAtATime() throws {
        let one = TinyTeacher.make(), batched = LocalTeacher(lm: one.lm, batchSize: 3)
        let seqs = TinyTeacher.texts.map { TinyTeacher.tokenizer.encode($0) }
        let positions = seqs.map { s in Array(stride(from: s.count - 1, through: 0, by: -2)) }
        for pos in [nil, positions] {
            guard case .full(let a) = try one.view(of: seqs, positions: pos), case .full(let b) = try batched.view(of: seqs, positions: pos)
            else { return XCTFail("view kinds") }
            XCTAssertEqual(a.shape, b.shape)
            for (x, y) in zip(a.scalars, b.scalars) { XCTAssertEqual(x, y, accuracy: 1e-5) }
        }
        XCTAssertThrowsError(try batched.view(of: [[1, 2], [999_999]]))
    }

    func testLocalTeacherHiddenStatesAndAttentions() throws {
        let teacher = TinyTeacher.make()
        let seq = TinyTeacher.tokenizer.encode("Hello world")
        let out = try teacher.forward(seq, hiddenStates: true, attentions: true)
        XCTAssertEqual(out.logits.shape, [1, seq.count, 506])
        XCTAssertEqual(out.hiddenStates.count, 2)                 // embeddings + 1 layer
        XCTAssertEqual(out.attentions.first?.shape, [1, 2, seq.count, seq.count])
        XCTAssertThrowsError(try teacher.view(of: [[600]]))      // id outside the vocabulary
        XCTAssertThrowsError(try teacher.view(of: [seq], positions: [[seq.count]]))
    }

    func testResumeAfterKillGivesTheSameBytes() throws {
        let (path, seqs, teacher, data) = try writeCache(chunk: 2)
        let full = try Data(contentsOf: URL(fileURLWithPath: path))
        let h = header(teacher, data: data)
        // Cut points: inside the header, right after it, inside chunk 1, right after chunk 1's
        // commit record, inside the last chunk's commit record, one byte short of the end.
        let cache = try LogitCache(path: path)
        let endOfChunk1 = cache.entries[1].rowsOffset + cache.entries[1].length * h.rowBytes + 16
        let cuts = [100, LogitCacheHeader.size, LogitCacheHeader.size + 30, endOfChunk1 - 5, endOfChunk1, endOfChunk1 + 17,
                    full.count - 8, full.count - 1]
        for cut in cuts {
            let p = dir.appendingPathComponent("cut-\(cut).cache").path
            try full.prefix(cut).write(to: URL(fileURLWithPath: p))
            var events: [LogitCacheProgress] = []
            if cut < LogitCacheHeader.size {
                // A cut header is damage, not a resumable state.
                XCTAssertThrowsError(try LogitCacheWriter(path: p, header: h).run(teacher: teacher, sequences: seqs))
                continue
            }
            let written = try LogitCacheWriter(path: p, header: h).run(teacher: teacher, sequences: seqs) { events.append($0) }
            let resumedFrom: Int = cut >= full.count - 8 ? 6 : (cut >= endOfChunk1 ? 2 : 0)
            XCTAssertEqual(events.first, .started(cached: resumedFrom, total: seqs.count), "cut at \(cut)")
            XCTAssertEqual(written, seqs.count - resumedFrom, "cut at \(cut)")
            XCTAssertEqual(events.last, .finished(total: seqs.count))
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: p)), full, "cut at \(cut): resumed file differs")
        }
        // Running again over a finished cache writes nothing and changes nothing.
        XCTAssertEqual(try LogitCacheWriter(path: path, header: h).run(teacher: teacher, sequences: seqs), 0)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), full)
        // A reader sees only committed chunks of a cut file.
        let p = dir.appendingPathComponent("partial.cache").path
        try full.prefix(endOfChunk1 + 17).write(to: URL(fileURLWithPath: p))
        let partial = try LogitCache(path: p)
        XCTAssertEqual(partial.sequenceCount, 2)
        XCTAssertThrowsError(try partial.check(.init(complete: true))) { e in
            guard case .cacheMismatch(_, let field, _, _) = e as? TeacherError else { return XCTFail("\(e)") }
            XCTAssertEqual(field, "completeness")
        }
    }

    func testHeaderMismatchesNameTheField() throws {
        let (path, seqs, teacher, data) = try writeCache()
        let cache = try LogitCache(path: path)
        func field(_ e: LogitCache.Expectation) -> (String, String, String)? {
            do { try cache.check(e); return nil } catch let TeacherError.cacheMismatch(file, field, expected, found) {
                XCTAssertEqual(file, path); return (field, expected, found)
            } catch { XCTFail("\(error)"); return nil }
        }
        XCTAssertNil(field(.init(fingerprint: TinyTeacher.tokenizer.fingerprint, vocabularySize: 506, k: 8, temperature: 2,
                                 dataHash: data.hash, complete: true)))
        XCTAssertEqual(field(.init(fingerprint: "0123456789abcdef"))?.0, "tokenizer fingerprint")
        XCTAssertEqual(field(.init(fingerprint: "0123456789abcdef"))?.1, "0123456789abcdef")
        XCTAssertEqual(field(.init(fingerprint: "0123456789abcdef"))?.2, TinyTeacher.tokenizer.fingerprint)
        XCTAssertEqual(field(.init(vocabularySize: 400))?.0, "vocabulary size")          // smaller than the tokenizer
        XCTAssertNil(field(.init(vocabularySize: 512)))                                   // padding: aligned
        XCTAssertEqual(field(.init(vocabularySize: 512, exactVocabulary: true))?.0, "vocabulary size")
        XCTAssertEqual(field(.init(k: 16))?.0, "k")
        XCTAssertNil(field(.init(k: 4)))
        XCTAssertEqual(field(.init(temperature: 1))?.0, "temperature")
        XCTAssertEqual(field(.init(temperature: 1))?.2, "2.0")
        let other = field(.init(dataHash: 42))
        XCTAssertEqual(other?.0, "data hash")
        XCTAssertEqual(other?.1, "000000000000002a")
        // Resuming with other settings names the field too.
        var h = header(teacher, data: data, k: 4)
        XCTAssertThrowsError(try LogitCacheWriter(path: path, header: h).run(teacher: teacher, sequences: seqs)) { e in
            XCTAssertEqual(e as? TeacherError, .cacheMismatch(file: path, field: "k", expected: "4", found: "8"))
            XCTAssertTrue("\(e)".contains("k mismatch: expected 4, found 8"))
        }
        h = header(teacher, data: data)
        h.dataHash = 1
        XCTAssertThrowsError(try LogitCacheWriter(path: path, header: h).run(teacher: teacher, sequences: seqs))
        // Other sequences than the committed ones.
        var changed = seqs
        changed[0] = [1, 2, 3]
        XCTAssertThrowsError(try LogitCacheWriter(path: path, header: header(teacher, data: data)).run(teacher: teacher, sequences: changed)) { e in
            guard case .cacheMismatch(_, let field, _, _) = e as? TeacherError else { return XCTFail("\(e)") }
            XCTAssertEqual(field, "tokens of sequence 0")
        }
        // Not a cache.
        let junk = dir.appendingPathComponent("junk").path
        try Data(repeating: 7, count: 200).write(to: URL(fileURLWithPath: junk))
        XCTAssertThrowsError(try LogitCache(path: junk)) { e in
            guard case .cacheDamaged = e as? TeacherError else { return XCTFail("\(e)") }
        }
    }

    func testVocabularyPaddingAlignment() throws {
        // Full logits: a 512-wide teacher (506 real ids) for a 508-wide student: the first 508
        // columns, softmax renormalised over them.
        let wide = TinyTeacher.make(vocab: 512)
        let seq = TinyTeacher.tokenizer.encode("Hello world")
        let aligned = try wide.aligned(toVocabularySize: 508, studentFingerprint: TinyTeacher.tokenizer.fingerprint)
        XCTAssertEqual(aligned.vocabularySize, 508)
        guard case .full(let a) = try aligned.view(of: [seq]), case .full(let w) = try wide.view(of: [seq]) else { return XCTFail() }
        XCTAssertEqual(a.shape, [seq.count, 508])
        for r in 0..<seq.count { XCTAssertEqual(Array(a.scalars[(r * 508)..<(r * 508 + 508)]), Array(w.scalars[(r * 512)..<(r * 512 + 508)])) }
        // A wider student: −∞ columns (probability 0).
        let wider = try TinyTeacher.make(vocab: 506).aligned(toVocabularySize: 510, studentFingerprint: nil)
        guard case .full(let b) = try wider.view(of: [seq]) else { return XCTFail() }
        XCTAssertEqual(b.scalars[509], -Float.infinity)
        // Sparse rows: V_t = 6 → V_s = 5. Row: id 5 (p 0.2), id 0 (p 0.5), rest 0.3.
        //   dropped m = 0.2 ⇒ p'(0) = 0.5 / 0.8 = 0.625, rest' = 0.3 / 0.8 = 0.375; id 5's slot
        //   becomes id 1 (lowest unused) at −∞.
        let s = try SparseTeacherTargets(ids: [5, 0], logprobs: [log(0.2), log(0.5)], k: 2, vocabularySize: 6, restMass: [0.3])
        let t = try VocabularyAlignment.align(sparse: s, to: 5)
        XCTAssertEqual(t.ids, [1, 0])
        XCTAssertEqual(t.logprobs[0], -Float.infinity)
        XCTAssertEqual(t.logprobs[1], log(0.625), accuracy: 1e-6)
        XCTAssertEqual(t.restMass[0], 0.375, accuracy: 1e-6)
        XCTAssertEqual(t.vocabularySize, 5)
        // A cached wide teacher aligned to a narrower student: every id fits, masses sum to 1.
        let (path, seqs, _, _) = try writeCache(name: "wide.cache", k: 16, tau: 1, vocab: 512)
        let cached = try CachedTeacher(path: path, expecting: .init(fingerprint: TinyTeacher.tokenizer.fingerprint, vocabularySize: 506))
        let narrow = try cached.aligned(toVocabularySize: 506, studentFingerprint: TinyTeacher.tokenizer.fingerprint)
        guard case .sparse(let sp) = try narrow.view(of: seqs) else { return XCTFail() }
        XCTAssertEqual(sp.vocabularySize, 506)
        XCTAssertTrue(sp.ids.allSatisfy { $0 < 506 })
        for r in 0..<sp.rows {
            let mass = (0..<16).reduce(0.0) { $0 + Foundation.exp(Double(sp.logprobs[r * 16 + $1])) } + Double(sp.restMass[r])
            XCTAssertEqual(mass, 1, accuracy: 2e-3)
        }
        // A real tokenizer mismatch is an error.
        XCTAssertThrowsError(try wide.aligned(toVocabularySize: 508, studentFingerprint: "ffffffffffffffff")) { e in
            XCTAssertEqual(e as? TeacherError, .tokenizerMismatch(teacher: TinyTeacher.tokenizer.fingerprint, student: "ffffffffffffffff"))
        }
        // Widths that cannot hold the tokenizer's ids.
        XCTAssertThrowsError(try wide.aligned(toVocabularySize: 300, studentFingerprint: TinyTeacher.tokenizer.fingerprint))
    }

    func testMalformedDataFilesNameFileAndLine() throws {
        func error(_ text: String) -> TeacherError? {
            do { _ = try TextDataFile(data: Data(text.utf8), path: "d.jsonl"); return nil } catch { return error as? TeacherError }
        }
        func line(_ text: String) -> Int? {
            if case .data(let file, let line, _)? = error(text) { XCTAssertEqual(file, "d.jsonl"); return line }
            return nil
        }
        XCTAssertEqual(line("{\"text\": \"a\"}\n{bad json}\n"), 2)
        XCTAssertEqual(line("{\"text\": \"a\"}\n\n{\"txt\": \"b\"}"), 3)
        XCTAssertEqual(line("{\"text\": 5}"), 1)
        XCTAssertEqual(line("[1, 2]"), 1)
        XCTAssertEqual(line("{\"messages\": [{\"role\": \"user\"}]}"), 1)
        XCTAssertEqual(line(""), 0)
        XCTAssertEqual(line("\n  \n"), 0)
        XCTAssertTrue("\(error("{\"text\": \"a\"}\n{bad json}")!)".hasPrefix("d.jsonl: line 2: "))
        XCTAssertTrue("\(error("{\"a\": 1}")!)".contains("missing \"text\""))
        XCTAssertTrue("\(error("")!)".contains("empty"))
        // "source" (multi-teacher routing) must be a string; null means none.
        XCTAssertEqual(line("{\"text\": \"a\"}\n{\"text\": \"b\", \"source\": 3}"), 2)
        XCTAssertTrue("\(error("{\"text\": \"b\", \"source\": [\"x\"]}")!)".contains("\"source\" is not a string"))
        let sourced = try TextDataFile(data: Data("{\"text\": \"a\", \"source\": \"gsm8k\"}\n{\"text\": \"b\", \"source\": null}\n{\"text\": \"c\"}".utf8), path: "s.jsonl")
        XCTAssertEqual(sourced.sources, ["gsm8k", nil, nil])
        // Missing file.
        XCTAssertThrowsError(try TextDataFile(path: dir.appendingPathComponent("none.jsonl").path))
        // Good lines: text and messages (chat template), blank lines skipped.
        let f = try TextDataFile(data: Data("{\"text\": \"Hi\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}\n".utf8), path: "ok.jsonl")
        XCTAssertEqual(f.examples.map(\.line), [1, 3])
        let teacher = TinyTeacher.make()
        let seqs = try f.tokenize(with: TinyTeacher.tokenizer, chatTemplate: teacher.chatTemplate, maxLength: 3)
        XCTAssertEqual(seqs.count, 2)
        XCTAssertTrue(seqs.allSatisfy { $0.count <= 3 && !$0.isEmpty })
        XCTAssertThrowsError(try f.tokenize(with: TinyTeacher.tokenizer, chatTemplate: nil)) { e in
            guard case .data(_, 3, _)? = e as? TeacherError else { return XCTFail("\(e)") }
        }
        // An example with no tokens.
        let empty = try TextDataFile(data: Data("{\"text\": \"\"}".utf8), path: "e.jsonl")
        XCTAssertThrowsError(try empty.tokenize(with: TinyTeacher.tokenizer, chatTemplate: nil)) { e in
            XCTAssertEqual(e as? TeacherError, .data(file: "e.jsonl", line: 1, reason: "the example gives no tokens"))
        }
    }
}
