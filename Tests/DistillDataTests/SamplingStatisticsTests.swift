import XCTest
@testable import DistillData

final class SamplingStatisticsTests: XCTestCase {
    let t = TraceTemplate.default

    func runStats() -> SamplingStatistics {
        let sampler = RejectionSampler(keepPolicy: .allCorrect)
        let ok = t.render(reasoning: "2 + 2 = 4", answer: "\\boxed{4}")                               // 8 + 9 + 11 + 9 = 37 characters
        let long = t.render(reasoning: String(repeating: "x", count: 600), answer: "\\boxed{4}")        // 8 + 600 + 11 + 9 = 628 characters
        let wrong = t.render(reasoning: "2 + 2 = 5", answer: "\\boxed{5}")
        var stats = SamplingStatistics()
        // gsm8k: 2 prompts × 4 candidates; kept 2 and 0.
        stats.add(sampler.sample(prompt: TracePrompt(id: "a", text: "2+2?", answer: "4", source: "gsm8k"), candidates: [ok, long, wrong, "4"]))
        stats.add(sampler.sample(prompt: TracePrompt(id: "b", text: "2+2?", answer: "4", source: "gsm8k"), candidates: [wrong, wrong, "4", "<think>\n"]))
        // No source: 1 prompt × 2 candidates, kept 1 (the second is a duplicate).
        stats.add(sampler.sample(prompt: TracePrompt(id: "c", text: "2+2?", answer: "4"), candidates: [ok, ok]))
        return stats
    }

    func testCounts() {
        let s = runStats()
        XCTAssertEqual(s.overall.prompts, 3)
        XCTAssertEqual(s.overall.promptsWithKept, 2)
        XCTAssertEqual(s.overall.candidates, 10)
        XCTAssertEqual(s.overall.kept, 3)
        XCTAssertEqual(s.acceptanceRate, 0.3, accuracy: 1e-12)          // 3 / 10
        XCTAssertEqual(s.bySource["gsm8k"]?.candidates, 8)
        XCTAssertEqual(s.bySource["gsm8k"]?.kept, 2)
        XCTAssertEqual(s.bySource["gsm8k"]!.acceptanceRate, 0.25, accuracy: 1e-12)  // 2 / 8
        XCTAssertEqual(s.bySource["unknown"]?.acceptanceRate, 0.5)
        XCTAssertEqual(s.rejectedCandidates, 7)
        // wrong ×3 (wrong_answer); "4" ×2 (template, and the answer "4" is right); "<think>\n" (template, no_answer); duplicate ×1.
        XCTAssertEqual(s.rejectionReasons, ["wrong_answer": 3, "template": 3, "no_answer": 1, "duplicate": 1])
        // Kept lengths: 37, 628, 37 characters → [0, 512): 2, [512, 1024): 1.
        XCTAssertEqual(s.keptLengthHistogram.buckets.map(\.count), [2, 1, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(s.keptLengthHistogram.buckets.last, LengthHistogram.Bucket(from: 32768, to: nil, count: 0))
    }

    func testHistogramEdges() {
        var h = LengthHistogram(edges: [10, 20], unit: "tokens")
        for n in [0, 9, 10, 19, 20, 1000] { h.add(n) }
        XCTAssertEqual(h.buckets.map(\.count), [4, 2])   // below the first edge counts in the first bucket
        XCTAssertEqual(h.total, 6)
    }

    func testJSON() throws {
        let s = runStats()
        let obj = try JSONSerialization.jsonObject(with: s.jsonData()) as! [String: Any]
        XCTAssertEqual(Set(obj.keys), ["overall", "by_source", "rejection_reasons", "rejected_candidates", "kept_length_histogram"])
        let overall = obj["overall"] as! [String: Any]
        XCTAssertEqual(overall["acceptance_rate"] as? Double, 0.3)
        XCTAssertEqual(overall["prompts_with_kept"] as? Int, 2)
        let hist = obj["kept_length_histogram"] as! [String: Any]
        XCTAssertEqual(hist["unit"] as? String, "characters")
        XCTAssertTrue((hist["buckets"] as! [[String: Any]]).last!["to"] is NSNull)

        let dir = try traceTestDirectory(self)
        let path = dir.appendingPathComponent("stats.json").path
        try s.write(to: path)
        XCTAssertEqual(try SamplingStatistics.read(path: path), s)
    }
}
