import XCTest
@testable import DistillData

final class FilterTests: XCTestCase {
    func check(_ f: any TraceFilter, _ c: String) -> Verdict { f.check(c, trace: TraceTemplate.default.parse(c)) }

    func testTemplateFilter() {
        XCTAssertEqual(check(TemplateFilter(), "<think>\nr\n</think>\n\na"), .accepted)
        XCTAssertEqual(check(TemplateFilter(), "<think>\n\n</think>\n\n").rejection,
                       Rejection(.template, "empty reasoning; nothing after the think block"))
    }

    func testLength() {
        let c = "<think>\n" + String(repeating: "a", count: 100) + "\n</think>\n\nok"   // 8 + 100 + 11 + 2 = 121 characters
        XCTAssertEqual(c.count, 121)
        XCTAssertEqual(check(LengthFilter.characters(minimum: 121, maximum: 121), c), .accepted)
        XCTAssertEqual(check(LengthFilter.characters(maximum: 120), c).rejection, Rejection(.tooLong, "121 characters > maximum 120"))
        XCTAssertEqual(check(LengthFilter.characters(minimum: 122), c).rejection, Rejection(.tooShort, "121 characters < minimum 122"))
        XCTAssertEqual(check(LengthFilter.characters(maximum: 99, part: .reasoning), c).rejection?.detail, "reasoning 100 characters > maximum 99")
        // Tokens through a closure: here whitespace-separated words.
        let words = LengthFilter.tokens(minimum: 5) { $0.split(whereSeparator: \.isWhitespace).count }
        XCTAssertEqual(check(words, "<think>\none\n</think>\n\ntwo").rejection, Rejection(.tooShort, "4 tokens < minimum 5"))
        XCTAssertEqual(check(words, "<think>\none two three\n</think>\n\nfour"), .accepted)
    }

    func testRepetitionOfALoop() {
        let para = "Wait, let me recompute the total cost of the apples and the oranges once more. "
        let looped = "<think>\n" + String(repeating: para, count: 12) + "\n</think>\n\n\\boxed{5}"
        let v = check(RepetitionFilter(), looped)
        XCTAssertEqual(v.rejection?.kind, .repetition)
        // 12 copies of a 15-word paragraph: 180 words, 171 10-grams, only 15 distinct → 91% repeats.
        let (share, total) = RepetitionFilter.repeatedNgramShare(String(repeating: para, count: 12), n: 10)
        XCTAssertEqual(total, 171)
        XCTAssertEqual(share, Double(171 - 15) / 171, accuracy: 1e-12)
        // With the tags: 183 words, 174 10-grams, 15 + 3 distinct → 156 / 174 = 89.7% repeats.
        XCTAssertEqual(v.rejection?.detail, "90% of 10-word n-grams are repeats (maximum 30%)")
    }

    func testRepetitionOfALine() {
        let line = "Let me double-check this step."
        let five = (1...5).map { "Step \($0): compute something different, value \($0 * 7).\n\(line)" }.joined(separator: "\n")
        let f = RepetitionFilter()
        XCTAssertEqual(check(f, five).rejection?.detail, "\"let me double-check this step.\" occurs 5 times (maximum 4)")
        let four = (1...4).map { "Step \($0): compute something different, value \($0 * 7).\n\(line)" }.joined(separator: "\n")
        XCTAssertEqual(check(f, four), .accepted)
        // Short lines ("= 5", "}") repeat freely in math.
        XCTAssertNil(RepetitionFilter.mostRepeatedSegment(String(repeating: "= 5\n}\n", count: 20), minLength: 20))
        // Sentences inside one line count too.
        XCTAssertEqual(RepetitionFilter.mostRepeatedSegment("I am sure about this. I am sure about this. Fine.", minLength: 10)?.count, 2)
    }

    func testOrdinaryReasoningPasses() {
        let text = """
        <think>
        Natalia sold 48 clips in April. In May she sold half as many, so 48 / 2 = 24 clips.
        Altogether she sold 48 + 24 = 72 clips in April and May.
        Let me double-check: half of 48 is 24, and 48 plus 24 is 72. Yes.
        </think>

        Natalia sold \\boxed{72} clips.
        """
        XCTAssertEqual(check(RepetitionFilter(), text), .accepted)
        XCTAssertEqual(check(LanguageMixingFilter(), text), .accepted)
    }

    func testLanguageMixing() {
        let mixed = "<think>\nWe need the sum. 我们需要计算总和 then add 5.\n</think>\n\n\\boxed{5}"
        let v = check(LanguageMixingFilter(), mixed)
        XCTAssertEqual(v.rejection?.kind, .languageMixing)
        // Letters: think(5) We(2) need(4) the(3) sum(3) then(4) add(3) think(5) boxed(5) = 34 Latin, 8 Han.
        XCTAssertEqual(Script.letterCounts(mixed), [.latin: 34, .han: 8])
        XCTAssertEqual(v.rejection?.detail, "19.0% of 42 letters outside greek, latin (han 8; maximum 1.0%)")
        // Greek letters and math alphanumerics are fine in English math.
        XCTAssertEqual(check(LanguageMixingFilter(), "<think>\nLet θ = π/4 and α = 2; 𝑥 ∈ ℝ.\n</think>\n\nSo α = 2."), .accepted)
        // Threshold: 1 Cyrillic letter in 200 Latin is 0.5%, under the default 1%, but any with 0.
        let oneCyrillic = String(repeating: "a", count: 199) + "д"
        XCTAssertEqual(check(LanguageMixingFilter(), oneCyrillic), .accepted)
        XCTAssertEqual(check(LanguageMixingFilter(maxForeignShare: 0), oneCyrillic).rejection?.kind, .languageMixing)
        // Chinese expected: Chinese text with Latin formula names passes at a looser threshold.
        let chinese = "<think>\n我们需要计算总和\n</think>\n\n答案是 5"
        XCTAssertEqual(check(LanguageMixingFilter(expected: Script.cjk, maxForeignShare: 0.6), chinese), .accepted)
        XCTAssertEqual(Script.of("한"), .hangul)
        XCTAssertEqual(Script.of("カ"), .kana)
        XCTAssertEqual(Script.of("é"), .latin)
        XCTAssertNil(Script.of("5"))
    }
}
