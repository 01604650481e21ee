import XCTest
@testable import DistillData

final class RejectionSamplerTests: XCTestCase {
    let prompt = TracePrompt(id: "p1", text: "Natalia sold 48 clips in April and half as many in May. How many in total?", answer: "72", source: "gsm8k")
    let t = TraceTemplate.default

    /// 0: correct, long; 1: wrong; 2: no think block; 3: correct, short; 4: candidate 0 again
    /// (whitespace aside); 5: correct, medium.
    var candidates: [String] {
        [t.render(reasoning: "April: 48. May: 48 / 2 = 24. Total: 48 + 24 = 72. Checking once more, 72.", answer: "\\boxed{72}"),
         t.render(reasoning: "48 + 48 = 96.", answer: "\\boxed{96}"),
         "The answer is 72.",
         t.render(reasoning: "48 + 24 = 72.", answer: "\\boxed{72}"),
         t.render(reasoning: "April: 48. May: 48 / 2 = 24. Total: 48 + 24 = 72.  Checking once more, 72.", answer: "\\boxed{72}"),
         t.render(reasoning: "May: 24. Sum: 48 + 24 = 72.", answer: "\\boxed{72}")]
    }

    func kinds(_ r: SamplingResult) -> [[Rejection.Kind]] { r.candidates.map { $0.rejections.map(\.kind) } }

    func testAllCorrect() {
        let r = RejectionSampler(keepPolicy: .allCorrect).sample(prompt: prompt, candidates: candidates)
        XCTAssertEqual(r.kept.map(\.index), [0, 3, 5])
        XCTAssertEqual(kinds(r), [[], [.wrongAnswer], [.template], [], [.duplicate], []])
        XCTAssertEqual(r.candidates[4].rejections[0].detail, "same completion as candidate 0")
        XCTAssertEqual(r.candidates[2].rejections[0].detail, "no opening think tag; the think block is never closed")
        XCTAssertEqual(r.candidates[1].rejections[0].detail, "expected 72 (72), got 96 (96)")
    }

    func testFirstAndShortest() {
        let first = RejectionSampler(keepPolicy: .firstCorrect).sample(prompt: prompt, candidates: candidates)
        XCTAssertEqual(first.kept.map(\.index), [0])
        XCTAssertEqual(kinds(first), [[], [.wrongAnswer], [.template], [.notSelected], [.duplicate], [.notSelected]])
        XCTAssertEqual(first.candidates[3].rejections[0].detail, "keep policy first kept candidate 0")

        let shortest = RejectionSampler(keepPolicy: .shortestCorrect).sample(prompt: prompt, candidates: candidates)
        XCTAssertEqual(shortest.kept.map(\.index), [3])
        XCTAssertEqual(kinds(shortest), [[.notSelected], [.wrongAnswer], [.template], [], [.duplicate], [.notSelected]])

        // Shortest by a custom length (here: words), ties going to the earlier candidate.
        let byWords = RejectionSampler(keepPolicy: .shortestCorrect, length: { _ in 1 }).sample(prompt: prompt, candidates: candidates)
        XCTAssertEqual(byWords.kept.map(\.index), [0])
    }

    func testNoCandidatePasses() {
        let r = RejectionSampler(keepPolicy: .firstCorrect).sample(prompt: prompt, candidates: [candidates[1], candidates[2]])
        XCTAssertTrue(r.kept.isEmpty)
        XCTAssertEqual(kinds(r), [[.wrongAnswer], [.template]])
    }

    func testEveryReasonRecorded() {
        // Unclosed and in a foreign script: template, language, and no answer, all at once.
        let bad = "<think>\n我们需要计算总和我们需要计算总和"
        let r = RejectionSampler().sample(prompt: prompt, candidates: [bad])
        XCTAssertEqual(kinds(r), [[.template, .languageMixing, .noAnswer]])
    }

    /// Without a reference answer, self-consistency: the majority answer (by the verifier's
    /// equivalence: `\boxed{72}` and `72.0` agree) stands in for it; too few votes, a tie, or a
    /// majority of broken candidates keeps nothing; a prompt with a reference ignores the vote.
    func testConsensusWithoutReference() {
        let open = TracePrompt(id: "p2", text: prompt.text, answer: nil, source: "unlabeled")
        let s = RejectionSampler(keepPolicy: .allCorrect, consensus: Consensus(minVotes: 2))
        let agree = t.render(reasoning: "24 + 48 = 72.", answer: "#### 72.0")
        let r = s.sample(prompt: open, candidates: candidates + [agree])
        XCTAssertEqual(r.kept.map(\.index), [0, 3, 5, 6])
        XCTAssertEqual(kinds(r), [[], [.wrongAnswer], [.template], [], [.duplicate], [], []])

        // One vote each: a tie, nothing kept, every candidate says why.
        let tie = s.sample(prompt: open, candidates: [candidates[1], candidates[3]])
        XCTAssertEqual(kinds(tie), [[.noConsensus], [.noConsensus]])
        XCTAssertTrue(tie.candidates[0].rejections[0].detail.contains("96 (1), 72 (1)"), tie.candidates[0].rejections[0].detail)
        // Two of five agree: fewer than half of the candidates.
        let few = s.sample(prompt: open, candidates: [candidates[0], candidates[3], candidates[1], candidates[2], "junk"])
        XCTAssertEqual(few.kept.count, 0)
        XCTAssertEqual(Set(few.candidates.flatMap { $0.rejections.map(\.kind) }).contains(.noConsensus), true)
        // With a share rule of 0.4, the same two win.
        let lenient = RejectionSampler(keepPolicy: .allCorrect, consensus: Consensus(minVotes: 2, minShare: 0.4))
            .sample(prompt: open, candidates: [candidates[0], candidates[3], candidates[1], candidates[2], "junk"])
        XCTAssertEqual(lenient.kept.map(\.index), [0, 1])
        // Without consensus the verifier needs the reference.
        let plain = RejectionSampler().sample(prompt: open, candidates: [candidates[0]])
        XCTAssertEqual(kinds(plain), [[.noReference]])
        // A reference answer wins over the vote: two wrong answers agreeing are still wrong.
        let labeled = s.sample(prompt: prompt, candidates: [candidates[1], candidates[1] + " ", candidates[3]])
        XCTAssertEqual(labeled.kept.map(\.index), [2])
    }

    func testWithoutVerifierOrDeduplication() {
        let s = RejectionSampler(verifier: nil, keepPolicy: .allCorrect, deduplicate: false)
        let r = s.sample(prompt: TracePrompt(id: "open", text: "Write a haiku."), candidates: candidates)
        XCTAssertEqual(r.kept.map(\.index), [0, 1, 3, 4, 5])
        let filtersOnly = RejectionSampler(filters: [LengthFilter.characters(maximum: 60)], verifier: nil)
        XCTAssertEqual(filtersOnly.sample(prompt: prompt, candidates: candidates).kept.map(\.index), [1, 2, 3, 5])
    }

    func testRecords() {
        let r = RejectionSampler(keepPolicy: .shortestCorrect).sample(prompt: prompt, candidates: candidates)
        XCTAssertEqual(r.records(system: "Think step by step."),
                       [ChatRecord(system: "Think step by step.", user: prompt.text, assistant: candidates[3], id: "p1", source: "gsm8k")])
    }
}
