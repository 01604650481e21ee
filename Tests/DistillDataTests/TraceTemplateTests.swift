import XCTest
@testable import DistillData

final class TraceTemplateTests: XCTestCase {
    let t = TraceTemplate.default

    func testRenderAndParseRoundTrip() {
        let c = t.render(reasoning: "2 + 2 = 4.", answer: "The answer is \\boxed{4}.")
        XCTAssertEqual(c, "<think>\n2 + 2 = 4.\n</think>\n\nThe answer is \\boxed{4}.")
        let p = t.parse(c)
        XCTAssertEqual(p.reasoning, "2 + 2 = 4.")
        XCTAssertEqual(p.answer, "The answer is \\boxed{4}.")
        XCTAssertEqual(p.finalAnswer, ExtractedAnswer(text: "4", rule: .boxed))
        XCTAssertEqual(t.violations(c), [])
    }

    func testCustomTags() {
        let r = TraceTemplate(openTag: "<reasoning>", closeTag: "</reasoning>")
        let c = r.render(reasoning: "think", answer: "#### 12")
        XCTAssertEqual(c, "<reasoning>\nthink\n</reasoning>\n\n#### 12")
        XCTAssertEqual(r.parse(c).finalAnswer?.text, "12")
        XCTAssertEqual(r.violations(c), [])
        // The default tags mean nothing to this template.
        XCTAssertEqual(r.violations("<think>\nx\n</think>\n\ny"), [.missingOpenTag, .unclosed])
    }

    func testLenientParsing() {
        // Truncated: everything after the opening tag is reasoning, no answer.
        let trunc = t.parse("<think>\nLet me compute 3 × 4 = 12 and")
        XCTAssertEqual(trunc.reasoning, "Let me compute 3 × 4 = 12 and")
        XCTAssertEqual(trunc.answer, "")
        XCTAssertNil(trunc.finalAnswer)
        // Only a closing tag (the opening one was in the prompt).
        let noOpen = t.parse("First, 5 + 7 = 12.\n</think>\nSo \\boxed{12}")
        XCTAssertEqual(noOpen.reasoning, "First, 5 + 7 = 12.")
        XCTAssertEqual(noOpen.finalAnswer?.text, "12")
        // No tags: the whole completion is the answer.
        let plain = t.parse("  The answer is 7.  ")
        XCTAssertNil(plain.reasoning)
        XCTAssertEqual(plain.answer, "The answer is 7.")
        XCTAssertEqual(plain.finalAnswer, ExtractedAnswer(text: "7", rule: .phrases(AnswerExtractor.defaultPhrases)))
    }

    func testComplianceViolations() {
        XCTAssertEqual(t.violations("\n <think>\nok\n</think>\n\nanswer"), [], "leading whitespace is allowed")
        XCTAssertEqual(t.violations("answer without reasoning"), [.missingOpenTag, .unclosed])
        XCTAssertEqual(t.violations("Sure! <think>\nr\n</think>\n\na"), [.textBeforeOpenTag("Sure! ")])
        XCTAssertEqual(t.violations("<think>\na\n</think>\n<think>\nb\n</think>\n\nc"), [.multipleOpenTags(2), .multipleCloseTags(2)])
        XCTAssertEqual(t.violations("<think>\nnever ends"), [.unclosed])
        XCTAssertEqual(t.violations("<think>\n  \n</think>\n\nanswer"), [.emptyReasoning])
        XCTAssertEqual(t.violations("<think>\nreasoning\n</think>\n\n  "), [.emptyAnswer])
        XCTAssertEqual(t.violations("</think><think>\nr"), [.textBeforeOpenTag("</think>"), .unclosed, .closeTagBeforeOpenTag])
        XCTAssertEqual(TemplateViolation.multipleOpenTags(2).description, "2 opening think tags (expected one)")
    }

    func testOpenTagInPrompt() {
        let r1 = TraceTemplate(openTagInPrompt: true)
        let c = r1.render(reasoning: "r", answer: "a")
        XCTAssertEqual(c, "r\n</think>\n\na")
        XCTAssertEqual(r1.violations(c), [])
        XCTAssertEqual(r1.violations("<think>\nr\n</think>\n\na"), [.unexpectedOpenTag])
        XCTAssertEqual(r1.violations("no close"), [.unclosed])
        // A completion starting with "<think>" still parses sensibly: the tag is not reasoning.
        XCTAssertEqual(r1.parse(c).reasoning, "r")
    }
}
