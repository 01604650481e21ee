import DistillTensor
import XCTest
@testable import DistillData

/// A teacher that answers by rule: "P(text)" for a paraphrase, "[lang](text)" for a translation.
struct RuleTeacher: TeacherClient {
    var modelName: String { "rule" }
    func complete(_ prompt: TeacherPrompt, sampling: TeacherSampling) async throws -> TeacherResponse {
        guard case .chat(let m) = prompt else { throw TeacherClientError.invalidRequest("chat only") }
        let system = m[0].content, text = m[1].content
        let out: String
        if system.hasPrefix("Rewrite") { out = "P(\(text))" }
        else if system.contains("into English") { out = "[en](\(text))" }
        else { out = "[fr](\(text))" }
        return TeacherResponse(model: "rule", completions: [TeacherCompletion(index: 0, text: out, finishReason: .stop)])
    }
}

/// A teacher that always answers with other numbers.
struct NumberBreakingTeacher: TeacherClient {
    var modelName: String { "breaking" }
    func complete(_ prompt: TeacherPrompt, sampling: TeacherSampling) async throws -> TeacherResponse {
        TeacherResponse(model: "breaking", completions: [TeacherCompletion(index: 0, text: "What is 2 + 3?", finishReason: .stop)])
    }
}

final class AugmentationTests: XCTestCase {
    func testPiecesJoinBackAndNumbersStay() {
        let text = "Tom buys 3 big boxes, then gives 2 away!\nHow many?"
        XCTAssertEqual(Augmenter.pieces(text).map(\.text).joined(), text)
        for method in [AugmentationMethod.synonym, .swap, .delete] {
            let a = try! Augmenter(method: method, probability: 0.6, seed: 3)
            for seed in 0..<20 as Range<UInt64> {
                var g = RandomGenerator(seed: seed)
                let out = a.localAugment(text, rng: &g)
                // Digits, punctuation and line breaks are never touched.
                XCTAssertEqual(out.filter { !$0.isLetter && $0 != " " }, text.filter { !$0.isLetter && $0 != " " }, "\(method) \(out)")
            }
        }
    }

    func testSynonymSwapAndDelete() throws {
        var g = RandomGenerator(seed: 1)
        let all = try Augmenter(method: .synonym, probability: 1, seed: 0)
        let s = all.localAugment("Tom BUYS a Big box.", rng: &g)
        let words = s.split(separator: " ")
        XCTAssertEqual(words[0], "Tom")
        XCTAssertTrue(["PURCHASES", "GETS"].contains(String(words[1])), s)     // case kept
        XCTAssertTrue(["Large", "Huge"].contains(String(words[3])), s)
        XCTAssertTrue(["crate.", "carton."].contains(String(words[4])), s)
        // Swap keeps the multiset of words; delete keeps at least one word and no double spaces.
        g = RandomGenerator(seed: 2)
        let swapped = try Augmenter(method: .swap, probability: 0.5).localAugment("one two three four five six", rng: &g)
        XCTAssertEqual(swapped.split(separator: " ").sorted(), "one two three four five six".split(separator: " ").sorted())
        XCTAssertNotEqual(swapped, "one two three four five six")
        g = RandomGenerator(seed: 3)
        let deleted = try Augmenter(method: .delete, probability: 1).localAugment("alpha beta gamma", rng: &g)
        XCTAssertEqual(deleted.split(separator: " ").count, 1)
        XCTAssertFalse(deleted.contains("  "))
        g = RandomGenerator(seed: 4)
        let some = try Augmenter(method: .delete, probability: 0.4).localAugment("a b c d e f g h i j k l", rng: &g)
        XCTAssertFalse(some.contains("  ") || some.hasPrefix(" "), some)
        XCTAssertLessThan(some.count, 23)
    }

    func testFileAugmentationChangesOnlyTheAskingSideAndRecordsProvenance() async throws {
        let dir = try traceTestDirectory(self)
        let input = try traceTestFile(dir, "in.jsonl", [
            #"{"prompt": "Sara buys 4 big apples and gives 1 to her friend.", "answer": "3", "id": "p1"}"#,
            #"{"messages": [{"role": "user", "content": "Each kid has a small bag."}, {"role": "assistant", "content": "Each kid has a small bag."}]}"#,
        ].joined(separator: "\n") + "\n")
        let a = try Augmenter(method: .synonym, probability: 1, seed: 9)
        let lines = try await a.augment(path: input, copies: 2).lines
        XCTAssertEqual(lines.count, 6)
        XCTAssertEqual(lines[0], #"{"prompt": "Sara buys 4 big apples and gives 1 to her friend.", "answer": "3", "id": "p1"}"#)
        let first = try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as! [String: Any]
        XCTAssertEqual(first["answer"] as? String, "3")
        XCTAssertEqual(first["id"] as? String, "p1")
        XCTAssertNotEqual(first["prompt"] as? String, "Sara buys 4 big apples and gives 1 to her friend.")
        let provenance = first["augmentation"] as! [String: Any]
        XCTAssertEqual(provenance["method"] as? String, "synonym")
        XCTAssertEqual(provenance["source_line"] as? Int, 1)
        XCTAssertNotEqual(lines[1], lines[2])                                    // two different copies
        let chat = try JSONSerialization.jsonObject(with: Data(lines[4].utf8)) as! [String: Any]
        let messages = chat["messages"] as! [[String: String]]
        XCTAssertNotEqual(messages[0]["content"], "Each kid has a small bag.")
        XCTAssertEqual(messages[1]["content"], "Each kid has a small bag.")     // the assistant's turn stays
        // Seeded: the same run again gives the same lines; another seed other lines.
        let again = try await a.augment(path: input, copies: 2).lines
        XCTAssertEqual(again, lines)
        let other = try await Augmenter(method: .synonym, probability: 1, seed: 10).augment(path: input, copies: 2).lines
        XCTAssertNotEqual(other, lines)
        let only = try await a.augment(path: input, copies: 1, keepOriginals: false).lines
        XCTAssertEqual(only.count, 2)
    }

    func testServerMethods() async throws {
        let dir = try traceTestDirectory(self)
        let input = try traceTestFile(dir, "in.jsonl", #"{"question": "What is 2 + 2?"}"# + "\n")
        let server = AugmentationServer(client: RuleTeacher(), pivot: "French")
        let p = try await Augmenter(method: .paraphrase, server: server).augment(path: input, copies: 1, keepOriginals: false).lines
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(p[0].utf8)) as! [String: Any])["question"] as? String, "P(What is 2 + 2?)")
        let b = try await Augmenter(method: .backTranslate, server: server).augment(path: input, copies: 1, keepOriginals: false).lines
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(b[0].utf8)) as! [String: Any])["question"] as? String, "[en]([fr](What is 2 + 2?))")
        // A server that changes the numbers: asked again, then the variant is dropped and counted.
        let breaking = AugmentationServer(client: NumberBreakingTeacher())
        let out = try await Augmenter(method: .paraphrase, server: breaking).augment(path: input, copies: 2)
        XCTAssertEqual(out.lines.count, 1)
        XCTAssertEqual(out.dropped, 2)
        XCTAssertEqual(Augmenter.numbers("Pay 3.50 for 12 items, 3 left."), ["12", "3", "3.50"])
    }

    func testErrors() async throws {
        let dir = try traceTestDirectory(self)
        XCTAssertEqual(traceErrorText { _ = try Augmenter(method: .paraphrase) }, "paraphrase needs an OpenAI-compatible server (--server-url and --server-model)")
        XCTAssertEqual(traceErrorText { _ = try Augmenter(method: .swap, probability: 0) }, "the augmentation probability must be in (0, 1], got 0.0")
        let bad = try traceTestFile(dir, "bad.jsonl", #"{"answer": "3"}"# + "\n")
        do { _ = try await Augmenter(method: .swap).augment(path: bad, copies: 1).lines; XCTFail() } catch {
            XCTAssertEqual("\(error)", "\(bad):1: nothing to augment: no \"text\", \"prompt\" or \"question\" string and no user message")
        }
        let list = try traceTestFile(dir, "words.txt", "# groups\nbig, large\n\nsmall\n")
        XCTAssertEqual(traceErrorText { _ = try SynonymList(path: list) }, "\(list):4: expected two or more comma-separated words, found \"small\"")
        let good = try traceTestFile(dir, "good.txt", "big, large, huge\n")
        XCTAssertEqual(try SynonymList(path: good).synonyms["large"]?.sorted(), ["big", "huge"])
    }
}
