@testable import DistillData
import DistillModels
import XCTest

final class WordProblemsTests: XCTestCase {
    /// Every solution's steps are right, chain to the answer, and fit the trace template; the same
    /// seed gives the same problems, another seed others.
    func testSolutionsAreCorrectAndDeterministic() throws {
        let problems = WordProblems.generate(count: 500, seed: 3)
        XCTAssertEqual(problems, WordProblems.generate(count: 500, seed: 3))
        XCTAssertNotEqual(problems.map(\.prompt), WordProblems.generate(count: 500, seed: 4).map(\.prompt))
        XCTAssertEqual(Set(problems.map(\.id)).count, 500)
        let sampler = RejectionSampler(verifier: MathVerifier())
        for p in problems {
            var last: Int?
            let trace = TraceTemplate.default.parse(p.solution, extractor: .standard)
            for line in (trace.reasoning ?? "").split(separator: "\n") {
                // "a+b=c": evaluate it.
                let parts = line.split(separator: "=")
                XCTAssertEqual(parts.count, 2, p.solution)
                let expr = String(parts[0]), value = Int(parts[1])!
                let op = expr.dropFirst().first { "+-*".contains($0) }!
                let operands = expr.split(separator: op, maxSplits: 1).map { Int($0)! }
                let r = op == "+" ? operands[0] + operands[1] : op == "-" ? operands[0] - operands[1] : operands[0] * operands[1]
                XCTAssertEqual(r, value, p.solution)
                XCTAssertGreaterThanOrEqual(value, 0)
                last = value
            }
            XCTAssertEqual(last, p.answer)
            XCTAssertTrue((0..<200).contains(p.answer))
            let result = sampler.sample(prompt: TracePrompt(id: p.id, text: p.prompt, answer: String(p.answer)), candidates: [p.solution])
            XCTAssertEqual(result.kept.count, 1, "\(p.solution): \(result.candidates[0].rejections)")
        }
    }

    /// The byte-level tokenizer: one token per ASCII character, special tokens whole, lossless.
    func testByteLevelTokenizer() throws {
        let tok = try Tokenizer.byteLevel(specialTokens: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], eosToken: "<|im_end|>")
        let text = "<|im_start|>user\nAnn has 23 pens.<|im_end|>\n"
        let ids = tok.encode(text, addSpecialTokens: false)
        XCTAssertEqual(ids.count, 1 + 4 + 1 + 16 + 1 + 1)
        XCTAssertEqual(ids.first, 257)
        XCTAssertEqual(ids[1], Int(UInt8(ascii: "u")))
        XCTAssertEqual(tok.decode(ids), text)
        XCTAssertEqual(tok.eosTokenIds, [258])
        XCTAssertEqual(tok.decode(tok.encode("héllo ✓", addSpecialTokens: false)), "héllo ✓")
    }
}
