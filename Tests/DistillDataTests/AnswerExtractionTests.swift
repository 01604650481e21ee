import XCTest
@testable import DistillData

final class AnswerExtractionTests: XCTestCase {
    let x = AnswerExtractor.standard

    func testBoxed() {
        XCTAssertEqual(x.extract(from: "So $\\boxed{\\frac{1}{2}}$."), ExtractedAnswer(text: "\\frac{1}{2}", rule: .boxed))
        XCTAssertEqual(x.extract(from: "\\boxed{1} then corrected: \\boxed{2}")?.text, "2", "the last box wins")
        XCTAssertEqual(x.extract(from: "\\boxed{\\{1, 2\\}}")?.text, "\\{1, 2\\}", "escaped braces do not nest")
        XCTAssertEqual(x.extract(from: "final: \\boxed 5 apples")?.text, "5")
        XCTAssertEqual(x.extract(from: "\\fbox{42}")?.text, "42")
        XCTAssertEqual(AnswerExtractor.lastBoxed(in: "\\boxed{3} and \\boxed{unclosed"), "3", "an unbalanced box is skipped")
        XCTAssertNil(AnswerExtractor.lastBoxed(in: "\\boxedfoo{3}"))
        XCTAssertEqual(x.extract(from: "\\boxed{ }, the answer is 4")?.text, "4", "an empty box falls through to the next rule")
    }

    func testGSM8K() {
        XCTAssertEqual(x.extract(from: "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\n#### 1,234\n"), ExtractedAnswer(text: "1,234", rule: .gsm8k))
        XCTAssertEqual(x.extract(from: "#### 5\nfix: #### 6")?.text, "6")
    }

    func testPhrases() {
        XCTAssertEqual(x.extract(from: "Adding up, the answer is 18 apples. Hope this helps.")?.text, "18 apples")
        XCTAssertEqual(x.extract(from: "**Final Answer:** 42")?.text, "42")
        XCTAssertEqual(x.extract(from: "The answer is $12.50.")?.text, "$12.50")
        XCTAssertEqual(x.extract(from: "The answer is 3.5 meters.")?.text, "3.5 meters", "a decimal point does not end the sentence")
        XCTAssertEqual(x.extract(from: "Answer: 1\nThe final answer is 2")?.text, "2", "the last phrase wins")
        let custom = AnswerExtractor(rules: [.phrases(["Result ="])])
        XCTAssertEqual(custom.extract(from: "result = -7")?.text, "-7")
        XCTAssertNil(custom.extract(from: "The answer is 3"))
    }

    func testLastNumber() {
        XCTAssertEqual(x.extract(from: "We get −3 first and 1,234.5 in total"), ExtractedAnswer(text: "1,234.5", rule: .lastNumber))
        XCTAssertEqual(x.extract(from: "about 3/4 of them")?.text, "3/4")
        XCTAssertEqual(x.extract(from: "so -12")?.text, "-12")
        XCTAssertNil(x.extract(from: "no numbers here"))
        XCTAssertNil(AnswerExtractor.boxedOnly.extract(from: "The answer is 3"))
    }

    func testReferenceAnswer() {
        XCTAssertEqual(AnswerExtractor.referenceAnswer("She has 3 + 4 = 7.\n#### 7"), "7")
        XCTAssertEqual(AnswerExtractor.referenceAnswer("Thus $\\boxed{\\dfrac{3}{4}}$"), "\\dfrac{3}{4}")
        XCTAssertEqual(AnswerExtractor.referenceAnswer(" 72 "), "72")
    }
}
