import XCTest
@testable import DistillData

final class DecontaminationTests: XCTestCase {
    func testWordsIgnoreCasePunctuationAndSpacing() {
        XCTAssertEqual(Decontaminator.words("Tom has 3 apples,  and\tGIVES 2 away!"), ["tom", "has", "3", "apples", "and", "gives", "2", "away"])
        XCTAssertEqual(Decontaminator.words("Ça coûte 5€ — très cher."), ["ça", "coûte", "5", "très", "cher"])
        XCTAssertEqual(Decontaminator.words("  ...  "), [])
        XCTAssertEqual(Decontaminator.ngrams(["a", "b", "c", "d"], n: 3), ["a b c", "b c d"])
        XCTAssertEqual(Decontaminator.ngrams(["a", "b"], n: 3), [])
    }

    func testStringsAtAnyDepthButNotKeys() {
        let obj: [String: Any] = ["messages": [["role": "user", "content": "hello there"]], "id": 7, "answer": "42"]
        XCTAssertEqual(Decontaminator.strings(in: obj), ["42", "hello there", "user"])      // keys in sorted order
    }

    func testFilterRemovesOverlapsAndReportsWhere() throws {
        let dir = try traceTestDirectory(self)
        let eval = try traceTestFile(dir, "eval.jsonl", """
            {"question": "Sara bakes 12 cookies and eats 3 of them. How many are left?", "answer": "9"}

            {"question": "A train travels 60 miles in 1 hour. How far does it go in 3 hours?", "answer": "180"}
            """ + "\n")
        let train = try traceTestFile(dir, "train.jsonl", [
            #"{"messages": [{"role": "user", "content": "SARA bakes 12 cookies, and eats 3 of them; how many are left?"}, {"role": "assistant", "content": "9"}]}"#,
            #"{"text": "Sara bakes 12 cookies and shares them with friends at school."}"#,
            #"{"prompt": "How far does it go in 3 hours if a train travels 60 miles in 1 hour?", "answer": "180"}"#,
            #"{"prompt": "Unrelated: 9"}"#,
            #"{"text": "x a train travels 60 miles in 1 hour how far y"}"#,
        ].joined(separator: "\n") + "\n")
        let d = try Decontaminator(against: [eval], n: 8)
        let (kept, report) = try d.filter(path: train)
        XCTAssertEqual(report.examples, 5)
        XCTAssertEqual(report.kept, 2)
        XCTAssertEqual(report.removed.map(\.line), [1, 3, 5])
        XCTAssertEqual(report.removed[0].ngram, "sara bakes 12 cookies and eats 3 of")
        XCTAssertEqual(report.removed[0].source, Decontaminator.Source(file: eval, line: 1))
        XCTAssertEqual(report.removed[1].source, Decontaminator.Source(file: eval, line: 3))      // blank line 2 still counts
        XCTAssertEqual(report.removed[1].ngram, "how far does it go in 3 hours")
        XCTAssertEqual(report.removedByFile, [eval: 3])
        XCTAssertTrue(kept[0].hasPrefix(#"{"text": "Sara bakes"#))     // kept verbatim, in order
        // Shorter n-grams catch the shared opening of line 2 too; strings shorter than n never match.
        XCTAssertEqual(try Decontaminator(against: [eval], n: 4).filter(path: train).report.removed.map(\.line), [1, 2, 3, 5])
        XCTAssertEqual(try Decontaminator(against: [eval], n: 1).filter(path: train).report.removed.map(\.line), [1, 2, 3, 4, 5])
    }

    func testWritesTheKeptLinesAndRefusesBadInput() throws {
        let dir = try traceTestDirectory(self)
        let eval = try traceTestFile(dir, "eval.jsonl", #"{"q": "one two three four"}"# + "\n")
        let train = try traceTestFile(dir, "train.jsonl", #"{"t": "zero one two three four five"}"# + "\n" + #"{"t": "other"}"# + "\n")
        let out = dir.appendingPathComponent("clean.jsonl").path
        let report = try Decontaminator(against: [eval], n: 4).filter(path: train, out: out)
        XCTAssertEqual(report.kept, 1)
        XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), #"{"t": "other"}"# + "\n")

        let all = try traceTestFile(dir, "all.jsonl", #"{"t": "one two three four"}"# + "\n")
        XCTAssertEqual(traceErrorText { try Decontaminator(against: [eval], n: 4).filter(path: all, out: out) },
                       "\(all): every example overlaps the evaluation set; nothing to write")
        let broken = try traceTestFile(dir, "broken.jsonl", #"{"q": "fine"}"# + "\n[1, 2]\n")
        XCTAssertEqual(traceErrorText { _ = try Decontaminator(against: [broken]) },
                       "\(broken):2: expected a JSON object with one example per line, found an array")
        let empty = try traceTestFile(dir, "empty.jsonl", "\n")
        XCTAssertEqual(traceErrorText { _ = try Decontaminator(against: [empty]) }, "\(empty): the file holds no examples (empty)")
        XCTAssertEqual(traceErrorText { _ = try Decontaminator(against: [eval], n: 0) }, "the n-gram length must be at least 1, got 0")
        XCTAssertEqual(traceErrorText { _ = try Decontaminator(against: []) }, "no evaluation file to decontaminate against")
        XCTAssertEqual(traceErrorText { _ = try Decontaminator(against: [dir.appendingPathComponent("missing.jsonl").path]) },
                       "\(dir.appendingPathComponent("missing.jsonl").path): cannot read the file")
    }

    func testMixDecontaminatesEachSourceFirst() throws {
        let dir = try traceTestDirectory(self)
        let eval = try traceTestFile(dir, "eval.jsonl", #"{"q": "alpha beta gamma delta"}"# + "\n")
        let a = try traceTestFile(dir, "a.jsonl", (0..<6).map { i in
            i < 2 ? #"{"t": "alpha beta gamma delta \#(i)"}"# : #"{"t": "clean \#(i)"}"#
        }.joined(separator: "\n") + "\n")
        let out = dir.appendingPathComponent("mix.jsonl").path
        let report = try DatasetMixer.mix([MixSource(path: a, weight: 1)], total: nil, seed: 1, out: out,
                                          decontaminator: try Decontaminator(against: [eval], n: 4))
        XCTAssertEqual(report.entries[0].removed, 2)
        XCTAssertEqual(report.entries[0].available, 4)
        XCTAssertEqual(report.total, 4)
        XCTAssertFalse(try String(contentsOfFile: out, encoding: .utf8).contains("alpha"))
    }
}
