import DistillModels
import DistillNN
import DistillTensor
@testable import Distillation
import Foundation
import XCTest

/// Chat data with assistant-only loss masks, and recipes whose teacher is a logit cache.
extension RecipeRunnerTests {
    func writeLines(_ lines: [String], _ name: String) throws -> URL {
        let url = tmp.appendingPathComponent(name)
        try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func makeChatData() throws -> URL {
        try writeLines((0..<8).map { i in
            #"{"messages": [{"role": "system", "content": "Count."}, {"role": "user", "content": "Start at \#(i)"}, "#
                + #"{"role": "assistant", "content": "\#(i) \#(i + 1) \#(i + 2)"}, {"role": "user", "content": "More"}, "#
                + #"{"role": "assistant", "content": "\#(i + 3) \#(i + 4)"}]}"#
        }, "chat.jsonl")
    }

    /// Which tokens count: exactly the assistant turns (content + the template's end of turn).
    func testAssistantOnlyMaskCoversExactlyTheAssistantTurns() throws {
        let model = try PretrainedModel.load(try makeModel("m").path)
        let tok = try model.requireTokenizer(), template = model.chatTemplate!
        let file = try TextDataFile(path: try makeChatData().path)
        let masked = try file.sequences(with: tok, chatTemplate: template, assistantOnly: true)
        let plain = try file.sequences(with: tok, chatTemplate: template)
        XCTAssertEqual(masked.map(\.ids), plain.map(\.ids), "the mask does not change the tokens")
        XCTAssertNil(plain[0].lossMask)
        let s = masked[2]
        // The ids are the whole rendered conversation (ChatML ends each turn with the EOS <|im_end|>).
        XCTAssertEqual(tok.decode(s.ids), "<|im_start|>system\nCount.<|im_end|>\n<|im_start|>user\nStart at 2<|im_end|>\n"
            + "<|im_start|>assistant\n2 3 4<|im_end|>\n<|im_start|>user\nMore<|im_end|>\n<|im_start|>assistant\n5 6<|im_end|>\n")
        // Counted runs of tokens = the two assistant parts.
        var runs: [String] = [], current: [Int] = []
        for (id, on) in zip(s.ids, s.lossMask!) {
            if on { current.append(id) } else if !current.isEmpty { runs.append(tok.decode(current)); current = [] }
        }
        if !current.isEmpty { runs.append(tok.decode(current)) }
        XCTAssertEqual(runs, ["2 3 4<|im_end|>\n", "5 6<|im_end|>\n"])
    }

    /// A template whose turns end without an EOS token gets one appended to the last answer.
    func testEOSIsAppendedWhenTheTemplateHasNone() throws {
        let model = try PretrainedModel.load(try makeModel("m").path)
        let tok = try model.requireTokenizer()
        let template = try ChatTemplate(source: "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                                            + "{% if add_generation_prompt %}assistant: {% endif %}")
        let file = try TextDataFile(data: Data(#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}"#.utf8),
                                    path: "d.jsonl")
        let s = try file.sequences(with: tok, chatTemplate: template, assistantOnly: true)[0]
        XCTAssertEqual(s.ids.last, tok.eosTokenIds.first)
        XCTAssertEqual(tok.decode(s.ids), "user: hi\nassistant: yo\n<|im_end|>")
        XCTAssertEqual(tok.decode(zip(s.ids, s.lossMask!).filter { $0.1 }.map { $0.0 }), "yo\n<|im_end|>")
        // A conversation without an assistant turn has nothing to learn from: an error naming the line.
        let none = try TextDataFile(data: Data(("\n" + #"{"messages": [{"role": "user", "content": "hi"}]}"#).utf8), path: "d.jsonl")
        XCTAssertThrowsError(try none.sequences(with: tok, chatTemplate: template, assistantOnly: true)) { e in
            XCTAssertTrue("\(e)".hasPrefix("d.jsonl: line 2: no assistant token"), "\(e)")
        }
    }

    /// Writes a complete logit cache of `data` with `teacher` as `distill cache-logits` does.
    func cacheLogits(teacher: URL, data: URL, temperature: Float, k: Int = 16, maxLength: Int = 64) throws -> URL {
        let m = try PretrainedModel.load(teacher.path)
        let tok = try m.requireTokenizer()
        let file = try TextDataFile(path: data.path)
        let seqs = try file.sequences(with: tok, chatTemplate: m.chatTemplate, maxLength: maxLength)
        let header = LogitCacheHeader(dataHash: file.hash, vocabularySize: m.lm.config.vocabSize, tokenizerVocabularySize: tok.vocabSize,
                                      k: k, temperature: temperature, maxLength: maxLength, chunkSequences: 4, fingerprint: tok.fingerprint)
        let url = tmp.appendingPathComponent("teacher.cache")
        try LogitCacheWriter(path: url.path, header: header).run(teacher: LocalTeacher(model: m), sequences: seqs.map(\.ids))
        return url
    }

    func cacheRecipe(cache: URL, student: URL, data: URL, out: URL, extra: String = "") -> String {
        """
        teacher: {cache: \(cache.path), k: 8}
        student: {path: \(student.path)}
        data: {train: \(data.path), eval_fraction: 0.25, max_length: 64, layout: pack, loss_on: assistant}
        loss: {kind: kd, alpha: 0.7, temperature: 2, chunk_size: 16}
        schedule: {steps: 6, batch_size: 2, lr: 3.0e-3, eval_every: 3}
        output: {dir: \(out.path)}
        \(extra)
        """
    }

    /// SFT on chat data (assistant tokens only, packed) with soft targets from a logit cache and
    /// the fused chunked loss: runs, logs both terms, and the KD loss falls.
    func testRecipeWithLogitCacheTeacherAndChatData() throws {
        let teacher = try makeModel("teacher", seed: 1), student = try makeModel("student", seed: 2)
        let data = try makeChatData()
        let cache = try cacheLogits(teacher: teacher, data: data, temperature: 2)
        let out = tmp.appendingPathComponent("run")
        let r = try Recipe.parse(yaml: cacheRecipe(cache: cache, student: student, data: data, out: out))
        XCTAssertEqual(r.teacher, Recipe.Teacher(path: nil, cache: cache.path, k: 8))
        XCTAssertEqual(r.loss.chunkSize, 16)
        XCTAssertEqual(r.data.lossOn, .assistant)
        var steps: [StepMetrics] = []
        let result = try RecipeRunner.run(recipe: r) { if case .training(.step(let m)) = $0 { steps.append(m) } }
        XCTAssertEqual(result.steps, 6)
        XCTAssertTrue(steps.allSatisfy { $0.soft != nil && $0.hard != nil })
        XCTAssertNotNil(steps.last?.evalLoss)
        XCTAssertLessThan(steps.last!.soft!, steps.first!.soft!)
        XCTAssertNotNil(try PretrainedModel.load(out.path).tokenizer)
    }

    func testLogitCacheMismatchesAreClearErrors() throws {
        let teacher = try makeModel("teacher", seed: 1), student = try makeModel("student", seed: 2)
        let data = try makeChatData()
        let cache = try cacheLogits(teacher: teacher, data: data, temperature: 1)
        let out = tmp.appendingPathComponent("run")
        // Temperature: the cache holds τ = 1 log-probabilities, the recipe asks for 2.
        let r = try Recipe.parse(yaml: cacheRecipe(cache: cache, student: student, data: data, out: out))
        XCTAssertThrowsError(try RecipeRunner.run(recipe: r)) { e in
            XCTAssertTrue("\(e)".contains("temperature mismatch: expected 2.0, found 1.0"), "\(e)")
        }
        // Another data file: its hash differs.
        let other = try writeLines((0..<8).map { #"{"text": "something else \#($0)"}"# }, "other.jsonl")
        let r2 = try Recipe.parse(yaml: cacheRecipe(cache: cache, student: student, data: other, out: out), overrides: ["loss.temperature=1"])
        XCTAssertThrowsError(try RecipeRunner.run(recipe: r2)) { e in XCTAssertTrue("\(e)".contains("data hash mismatch"), "\(e)") }
        // Same file, cut differently: the sequences are not in the cache.
        let r3 = try Recipe.parse(yaml: cacheRecipe(cache: cache, student: student, data: data, out: out),
                                  overrides: ["loss.temperature=1", "data.max_length=20", "data.loss_on=all"])
        XCTAssertThrowsError(try RecipeRunner.run(recipe: r3)) { e in XCTAssertTrue("\(e)".contains("is not in the logit cache"), "\(e)") }
        // Recipe-level errors.
        let base = cacheRecipe(cache: cache, student: student, data: data, out: out)
        assertThrowsMessage(try Recipe.parse(yaml: base, overrides: ["loss.feature_weight=0.3"]),
                            contains: ["loss.feature_weight", "need teacher.path"])
        assertThrowsMessage(try Recipe.parse(yaml: base.replacingOccurrences(of: "eval_fraction: 0.25", with: "eval: x.jsonl")),
                            contains: ["data.eval", "use eval_fraction"])
        assertThrowsMessage(try Recipe.parse(yaml: base.replacingOccurrences(of: "{cache: \(cache.path), k: 8}", with: "{k: 8}")),
                            contains: ["teacher", "expected path (a model), cache (a logit cache) or server_tokens"])
        assertThrowsMessage(try Recipe.parse(yaml: base, overrides: ["data.loss_on=prompt"]),
                            contains: ["data.loss_on", "assistant", "all"])
        assertThrowsMessage(try Recipe.parse(yaml: base, overrides: ["loss.chunk_size=0"]),
                            contains: ["loss.chunk_size", "0"])
        assertThrowsMessage(try Recipe.parse(yaml: base, overrides: ["teacher.k=0"]), contains: ["teacher.k", "0"])
    }
}
