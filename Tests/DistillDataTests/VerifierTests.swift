import XCTest
@testable import DistillData

final class VerifierTests: XCTestCase {
    func trace(_ answer: String) -> ParsedTrace { TraceTemplate.default.parse("<think>\nwork\n</think>\n\n" + answer) }

    func testMathVerifier() {
        let v = MathVerifier()
        XCTAssertEqual(v.verify(trace("Total: \\boxed{1,234}"), reference: "1234"), .accepted)
        XCTAssertEqual(v.verify(trace("She pays $12.50."), reference: "12.5"), .accepted)   // last number "12.50"
        XCTAssertEqual(v.verify(trace("The answer is 18 apples."), reference: "18"), .accepted)
        XCTAssertEqual(v.verify(trace("\\boxed{\\frac{1}{2}}"), reference: "0.5"), .accepted)
        // The reference may be a whole GSM8K solution.
        XCTAssertEqual(v.verify(trace("\\boxed{72}"), reference: "48 + 24 = <<48+24=72>>72\n#### 72"), .accepted)
        let wrong = v.verify(trace("\\boxed{17}"), reference: "18")
        XCTAssertEqual(wrong.rejection?.kind, .wrongAnswer)
        XCTAssertEqual(wrong.rejection?.detail, "expected 18 (18), got 17 (17)")
        XCTAssertEqual(v.verify(trace("I am not sure."), reference: "18").rejection?.kind, .noAnswer)
        XCTAssertEqual(v.verify(TraceTemplate.default.parse("<think>\ntruncated"), reference: "18").rejection,
                       Rejection(.noAnswer, "nothing after the think block"))
        XCTAssertEqual(v.verify(trace("\\boxed{3}"), reference: nil).rejection?.kind, .noReference)
        XCTAssertEqual(v.verify(trace("\\boxed{3}"), reference: "  ").rejection?.kind, .noReference)
    }

    func testExactMatch() {
        let v = ExactMatchVerifier()
        XCTAssertEqual(v.verify(trace("The answer is New   York."), reference: " New York "), .accepted)
        XCTAssertEqual(v.verify(trace("The answer is new york."), reference: "New York").rejection,
                       Rejection(.wrongAnswer, "expected \"New York\", got \"new york\""))
        XCTAssertEqual(ExactMatchVerifier(caseInsensitive: true).verify(trace("The answer is new york."), reference: "New York"), .accepted)
        let whole = ExactMatchVerifier(target: .answerText)
        XCTAssertEqual(whole.verify(trace("Paris\n\nis the capital"), reference: "Paris is the capital"), .accepted)
        XCTAssertEqual(v.verify(trace("x"), reference: nil).rejection?.kind, .noReference)
    }

    func testRegex() throws {
        let v = try RegexVerifier(pattern: "^\\s*(yes|no)\\b", caseInsensitive: true)
        XCTAssertEqual(v.verify(trace("Yes, because 7 is prime."), reference: nil), .accepted)
        XCTAssertEqual(v.verify(trace("Maybe."), reference: nil).rejection?.kind, .wrongAnswer)
        // Without a pattern the reference is the pattern.
        let fromRef = try RegexVerifier(pattern: nil, target: .finalAnswer)
        XCTAssertEqual(fromRef.verify(trace("\\boxed{x = 4}"), reference: "^x\\s*=\\s*4$"), .accepted)
        XCTAssertEqual(fromRef.verify(trace("\\boxed{x = 4}"), reference: "(").rejection?.kind, .verifierError)
        XCTAssertEqual(fromRef.verify(trace("\\boxed{4}"), reference: nil).rejection?.kind, .noReference)
        XCTAssertEqual(traceErrorText { _ = try RegexVerifier(pattern: "[a-") }, "not a valid regular expression: [a-")
    }

    func testKinds() throws {
        let kinds: [VerifierKind] = [.math(MathEquivalence()), .exact(caseInsensitive: true, target: .finalAnswer),
                                     .regex(pattern: "4", target: .answerText, caseInsensitive: false)]
        for k in kinds {
            XCTAssertEqual(try k.makeVerifier().verify(trace("\\boxed{4}"), reference: "4"), .accepted, "\(k)")
            // Kinds are data: they survive JSON.
            let back = try JSONDecoder().decode(VerifierKind.self, from: JSONEncoder().encode(k))
            XCTAssertEqual(back, k)
        }
    }
}
