import XCTest
@testable import DistillData

final class MathEquivalenceTests: XCTestCase {
    let eq = MathEquivalence()

    func testEquivalentForms() {
        let same: [(String, String)] = [
            ("\\boxed{1,234}", "1234"),                 // box and thousands separator
            ("1,234,567", "1234567"),
            ("\\$1,000.00", "1000"),
            ("$12.50", "12.5"),                         // currency, trailing zero
            ("12.50 dollars", "12.5"),
            ("USD 7", "7"),
            ("€3.5", "7/2"),
            ("\\frac{1}{2}", "0.5"),                    // 1/2 = 0.5 exactly
            ("\\dfrac{3}{4}", "0.75"),
            ("3/4", "0.75"),
            ("\\tfrac34", "3/4"),
            ("$\\frac{1}{3}$", "\\frac{2}{6}"),          // reduced: 2/6 = 1/3
            ("\\frac{-1}{2}", "-0.5"),
            ("-\\frac{1}{2}", "-1/2"),
            ("2\\frac{1}{2}", "2.5"),                   // mixed number 2 + 1/2
            ("-3", "−3"),                               // U+2212 MINUS SIGN is a minus
            ("-$5", "-5"), ("$-5$", "-5"),
            ("+4", "4"), ("007", "7"), ("0.750", ".75"),
            ("18 apples", "18"),                        // trailing unit words
            ("\\text{18 apples}", "18"), ("18\\text{ apples}", "18"),
            ("5 km/h", "5"), ("3 cm^2", "3"), ("5cm", "5"), ("7 hours.", "7"),
            ("5.", "5"),                                // trailing period
            ("x = 5", "5"), ("n=12", "12"),
            ("25\\%", "25"), ("25%", "25"), ("25 percent", "25"),
            ("1.5\\times10^{3}", "1500"), ("1e3", "1000"), ("2.5E-1", "1/4"),
            ("90^\\circ", "90"), ("90°", "90"),
            ("1\\,234", "1234"),
            ("\\(42\\)", "42"), ("$$42$$", "42"), ("\\[ 42 \\]", "42"),
            ("(1, 2)", "(1,2)"), ("\\left( 1, \\frac{1}{2} \\right)", "(1, 0.5)"),
            ("\\{1, 2\\}", "\\{2, 1\\}"),               // sets: any order
            ("2, 3", "3, 2"),                           // bare lists: any order
            ("(B)", "B"), ("(5)", "5"),
            ("x^{2} + 1", "x^2+1"),
            ("\\text{Tuesday}", "Tuesday"),
            ("12345678901234567890", "12345678901234567890"),  // too long for Int: compared as Double
        ]
        for (a, b) in same {
            XCTAssertTrue(eq.equivalent(a, b), "\(a) should equal \(b) (\(eq.value(a)) vs \(eq.value(b)))")
            XCTAssertTrue(eq.equivalent(b, a), "\(b) should equal \(a) (symmetry)")
        }
    }

    func testDifferentForms() {
        let different: [(String, String)] = [
            ("17", "18"), ("-3", "3"), ("0.333", "1/3"),    // exact: 333/1000 ≠ 1/3
            ("2x", "2"),                                    // a glued single letter is not a unit
            ("1,2", "1.2"),                                 // decimal comma: read as a list (1, 2)
            ("1,23", "123"),                                // not a thousands group
            ("(1, 2)", "(2, 1)"), ("(1, 2)", "[1, 2]"), ("(1, 2]", "(1, 2)"),
            ("25%", "0.25"),                                // by default the percent sign is only dropped
            ("–3", "-3"),                                   // an en dash is not a minus
            ("3 + 4", "7"),                                 // no arithmetic on expressions
            ("", "0"), ("1/0", "0"),
            ("x^2", "X^2"),                                 // expressions are case-sensitive
        ]
        for (a, b) in different {
            XCTAssertFalse(eq.equivalent(a, b), "\(a) should differ from \(b) (\(eq.value(a)) vs \(eq.value(b)))")
        }
    }

    func testParsedValues() {
        XCTAssertEqual(eq.value("\\boxed{0.75}"), .exact(Rational(3, 4)!))
        XCTAssertEqual(eq.value("-1,500"), .exact(Rational(-1500)!))
        XCTAssertEqual(eq.value("2, 3"), .list(open: "", close: "", items: [.exact(Rational(2)!), .exact(Rational(3)!)]))
        XCTAssertEqual(eq.value("[0, \\infty)"), .list(open: "[", close: ")", items: [.exact(Rational(0)!), .expression("\\infty")]))
        XCTAssertEqual(eq.value("\\sqrt{2}"), .expression("\\sqrt{2}"))
        XCTAssertEqual(MathEquivalence.normalize("$\\boxed{\\text{18 apples}}$."), "18 apples")
    }

    func testPercentAsFraction() {
        let p = MathEquivalence(percent: .alsoAsFraction)
        XCTAssertTrue(p.equivalent("25%", "0.25"))
        XCTAssertTrue(p.equivalent("25%", "25"))
        XCTAssertTrue(p.equivalent("\\frac{1}{4}", "25\\%"))
        XCTAssertFalse(p.equivalent("25", "0.25"), "only a written percent sign divides by 100")
    }

    func testTolerance() {
        let loose = MathEquivalence(relativeTolerance: 1e-2)
        XCTAssertTrue(loose.equivalent("0.333", "1/3"))       // |0.333 − 0.3333…| / 0.3333… = 0.1% ≤ 1%
        XCTAssertFalse(loose.equivalent("0.32", "1/3"))       // 4% > 1%
    }

    func testRationalArithmetic() {
        XCTAssertEqual(Rational(6, -8), Rational(-3, 4))
        XCTAssertNil(Rational(1, 0))
        XCTAssertEqual(Rational(1, 2)! + Rational(1, 3)!, Rational(5, 6))   // 1/2 + 1/3 = 5/6
        XCTAssertNil(Rational(Int.max)! * Rational(2)!, "overflow gives nil")
        XCTAssertEqual(Rational(3, 4)!.description, "3/4")
    }
}
