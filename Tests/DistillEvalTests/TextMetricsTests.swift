@testable import DistillEval
import Foundation
import XCTest

/// BLEU and ROUGE against sacrebleu 2.4.3 and rouge-score 0.1.2
/// (`scripts/make_text_metric_fixture.py` → Fixtures/text_metrics.json).
final class TextMetricsTests: XCTestCase {
    struct Fixture: Decodable {
        struct Item: Decodable {
            var hypothesis: String
            var references: [String]
            var tokens_13a: [String]
            var bleu: Double
            var bleu_precisions: [Double]
            var bleu_bp: Double
            var rouge: [String: [String: Double]]
        }
        var corpus_bleu: Double
        var corpus_precisions: [Double]
        var corpus_bp: Double
        var corpus_sys_len: Int
        var corpus_ref_len: Int
        var items: [Item]
    }

    static let fixture: Fixture = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/text_metrics.json")
        return try! JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }()

    func testTokenizer13aMatchesSacrebleu() {
        for item in Self.fixture.items {
            XCTAssertEqual(BLEU.tokenize13a(item.hypothesis), item.tokens_13a, item.hypothesis)
        }
    }

    func testSegmentBLEUMatchesSacrebleu() throws {
        for item in Self.fixture.items {
            let s = try BLEU.corpus(hypotheses: [item.hypothesis], references: [item.references])
            XCTAssertEqual(s.score, item.bleu, accuracy: 1e-6, item.hypothesis)
            XCTAssertEqual(s.brevityPenalty, item.bleu_bp, accuracy: 1e-9, item.hypothesis)
            for (a, b) in zip(s.precisions, item.bleu_precisions) { XCTAssertEqual(a, b, accuracy: 1e-9, item.hypothesis) }
        }
    }

    func testCorpusBLEUMatchesSacrebleu() throws {
        let f = Self.fixture
        let s = try BLEU.corpus(hypotheses: f.items.map(\.hypothesis), references: f.items.map(\.references))
        XCTAssertEqual(s.score, f.corpus_bleu, accuracy: 1e-6)
        XCTAssertEqual(s.brevityPenalty, f.corpus_bp, accuracy: 1e-9)
        XCTAssertEqual(s.hypothesisLength, f.corpus_sys_len)
        XCTAssertEqual(s.referenceLength, f.corpus_ref_len)
        for (a, b) in zip(s.precisions, f.corpus_precisions) { XCTAssertEqual(a, b, accuracy: 1e-9) }
    }

    func testROUGEMatchesRougeScore() {
        for item in Self.fixture.items {
            for kind in ROUGE.Kind.allCases {
                let s = ROUGE.score(kind, prediction: item.hypothesis, references: item.references)
                let r = item.rouge[kind.rawValue]!
                XCTAssertEqual(s.precision, r["precision"]!, accuracy: 1e-9, "\(kind) \(item.hypothesis)")
                XCTAssertEqual(s.recall, r["recall"]!, accuracy: 1e-9, "\(kind) \(item.hypothesis)")
                XCTAssertEqual(s.f, r["f"]!, accuracy: 1e-6, "\(kind) \(item.hypothesis)")
            }
        }
    }

    func testBLEUHandComputedBrevityAndErrors() throws {
        // 2 of 4 reference tokens, both unigrams and the bigram match: p1 = p2 = 100, p3 and p4 have
        // no n-grams (total 0: the loop stops, log 0 floors the score to 0).
        let s = try BLEU.corpus(hypotheses: ["a b"], references: [["a b c d"]])
        XCTAssertEqual(s.precisions[0], 100)
        XCTAssertEqual(s.brevityPenalty, exp(1 - 4.0 / 2.0), accuracy: 1e-12)
        XCTAssertEqual(s.score, 0)
        XCTAssertThrowsError(try BLEU.corpus(hypotheses: ["a"], references: [])) { e in
            XCTAssertTrue("\(e)".contains("1 hypotheses but 0 reference sets"))
        }
        XCTAssertThrowsError(try BLEU.corpus(hypotheses: ["a"], references: [[]])) { e in
            XCTAssertTrue("\(e)".contains("hypothesis 0 has no reference"))
        }
    }

    func testMacroF1AndPerplexityByHand() throws {
        // Items: a/a, a/a, b/b right; a for b, c for b wrong (prediction/reference). Accuracy 3/5.
        // a: TP 2, FP 1, FN 0 → F1 = 4/5;  b: TP 1, FP 0, FN 2 → 2/4;  c: TP 0, FP 1 → 0.
        let r = try Classification.evaluate(predictions: ["a", "a", "b", "a", "c"], references: ["a", "a", "b", "b", "b"])
        XCTAssertEqual(r.accuracy, 0.6, accuracy: 1e-12)
        XCTAssertEqual(r.perClassF1["a"]!, 0.8, accuracy: 1e-12)
        XCTAssertEqual(r.perClassF1["b"]!, 0.5, accuracy: 1e-12)
        XCTAssertEqual(r.perClassF1["c"]!, 0)
        XCTAssertEqual(r.macroF1, (0.8 + 0.5 + 0) / 3, accuracy: 1e-12)
        XCTAssertThrowsError(try Classification.evaluate(predictions: [], references: []))
        XCTAssertThrowsError(try Classification.evaluate(predictions: ["a"], references: []))
        // NLL of ln 2 and ln 8 per token: perplexity = exp((ln 2 + ln 8)/2) = 4.
        XCTAssertEqual(try Perplexity.from(negativeLogLikelihoods: [log(2), log(8)]), 4, accuracy: 1e-12)
        XCTAssertThrowsError(try Perplexity.from(negativeLogLikelihoods: []))
    }
}
