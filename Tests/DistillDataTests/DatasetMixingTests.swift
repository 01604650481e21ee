import XCTest
@testable import DistillData

final class DatasetMixingTests: XCTestCase {
    /// A JSONL file of n lines {"src": name, "i": k}.
    func source(_ dir: URL, _ name: String, _ n: Int) throws -> String {
        try traceTestFile(dir, "\(name).jsonl", (0..<n).map { #"{"src":"\#(name)","i":\#($0)}"# }.joined(separator: "\n") + "\n")
    }

    func count(_ lines: [String], _ name: String) -> Int { lines.filter { $0.contains(#""src":"\#(name)""#) }.count }

    func testParseArgument() throws {
        XCTAssertEqual(try MixSource(argument: "a.jsonl:0.8"), MixSource(path: "a.jsonl", weight: 0.8))
        XCTAssertEqual(try MixSource(argument: "dir:with:colons/b.jsonl:2"), MixSource(path: "dir:with:colons/b.jsonl", weight: 2))
        XCTAssertEqual(traceErrorText { _ = try MixSource(argument: "a.jsonl") }, "input 'a.jsonl': expected PATH:WEIGHT (e.g. a.jsonl:0.8)")
        XCTAssertEqual(traceErrorText { _ = try MixSource(argument: "a.jsonl:x") }, "input 'a.jsonl:x': the weight 'x' is not a positive number (expected PATH:WEIGHT)")
        XCTAssertEqual(traceErrorText { _ = try MixSource(argument: "a.jsonl:-1") }, "input 'a.jsonl:-1': the weight '-1' is not a positive number (expected PATH:WEIGHT)")
        XCTAssertEqual(traceErrorText { _ = try MixSource(argument: ":1") }, "input ':1': the path is empty (expected PATH:WEIGHT)")
    }

    func testApportionAndPlan() throws {
        XCTAssertEqual(DatasetMixer.apportion(10, weights: [0.8, 0.2]), [8, 2])
        XCTAssertEqual(DatasetMixer.apportion(10, weights: [1, 1, 1]), [4, 3, 3])       // 3.33 each: the spare one to the first
        XCTAssertEqual(DatasetMixer.apportion(7, weights: [4, 1]), [6, 1])              // 5.6 + 1.4: remainders .6 > .4
        // No total: b (10 examples at 20%) limits the mix to 50 = 40 + 10.
        XCTAssertEqual(try DatasetMixer.plan(available: [100, 10], weights: [0.8, 0.2], total: nil), [40, 10])
        // a limits: 30 at 80% → 37 total (29.6 → 30, 7.4 → 7).
        XCTAssertEqual(try DatasetMixer.plan(available: [30, 100], weights: [0.8, 0.2], total: nil), [30, 7])
        XCTAssertEqual(try DatasetMixer.plan(available: [5], weights: [3], total: nil), [5])
        XCTAssertEqual(traceErrorText { _ = try DatasetMixer.plan(available: [5], weights: [1], total: 0) }, "the total must be positive, got 0")
    }

    func testMixWithoutTotal() throws {
        let dir = try traceTestDirectory(self)
        let a = try source(dir, "a", 100), b = try source(dir, "b", 10)
        let out = dir.appendingPathComponent("mixed.jsonl").path
        let report = try DatasetMixer.mix([MixSource(path: a, weight: 0.8), MixSource(path: b, weight: 0.2)], total: nil, seed: 7, out: out)
        XCTAssertEqual(report.total, 50)
        XCTAssertEqual(report.entries.map(\.taken), [40, 10])
        XCTAssertEqual(report.entries.map(\.available), [100, 10])
        XCTAssertEqual(report.notes, [])
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 50)
        XCTAssertEqual(count(lines, "a"), 40)
        XCTAssertEqual(count(lines, "b"), 10)
        XCTAssertEqual(Set(lines).count, 50, "no example repeats")
        XCTAssertTrue(lines.prefix(40).contains { $0.contains("\"b\"") }, "the mix is shuffled, not a then b")
    }

    func testMixWithTotalAndReplacement() throws {
        let dir = try traceTestDirectory(self)
        let a = try source(dir, "a", 100), b = try source(dir, "b", 10)
        let (lines, report) = try DatasetMixer.mix([MixSource(path: a, weight: 4), MixSource(path: b, weight: 1)], total: 75, seed: 1)
        // 75 × 4/5 = 60 from a (distinct), 75 × 1/5 = 15 from b: 10 examples, so each once and 5 twice.
        XCTAssertEqual(report.entries.map(\.taken), [60, 15])
        XCTAssertEqual(report.entries.map(\.share), [0.8, 0.2])
        XCTAssertEqual(report.entries.map(\.withReplacement), [false, true])
        XCTAssertEqual(report.notes, ["\(b): 15 drawn from 10 examples, so sampled with replacement (each example used 1 time, 5 of them 2 times)"])
        XCTAssertEqual(count(lines, "a"), 60)
        XCTAssertEqual(Set(lines.filter { $0.contains("\"a\"") }).count, 60)
        let bLines = lines.filter { $0.contains("\"b\"") }
        XCTAssertEqual(bLines.count, 15)
        XCTAssertEqual(Set(bLines).count, 10, "every b example is used")
        let twice = Dictionary(grouping: bLines, by: { $0 }).values.filter { $0.count == 2 }.count
        XCTAssertEqual(twice, 5)
        // 30 from b alone: exactly three times each.
        let (l3, r3) = try DatasetMixer.mix([MixSource(path: b, weight: 1)], total: 30, seed: 1)
        XCTAssertEqual(Dictionary(grouping: l3, by: { $0 }).values.map(\.count), Array(repeating: 3, count: 10))
        XCTAssertEqual(r3.notes, ["\(b): 30 drawn from 10 examples, so sampled with replacement (each example used 3 times)"])
    }

    func testSeedDeterminism() throws {
        let dir = try traceTestDirectory(self)
        let a = try source(dir, "a", 50), b = try source(dir, "b", 50)
        let inputs = [MixSource(path: a, weight: 0.5), MixSource(path: b, weight: 0.5)]
        let x = try DatasetMixer.mix(inputs, total: 40, seed: 42).lines
        let y = try DatasetMixer.mix(inputs, total: 40, seed: 42).lines
        let z = try DatasetMixer.mix(inputs, total: 40, seed: 43).lines
        XCTAssertEqual(x, y)
        XCTAssertNotEqual(x, z)
        XCTAssertEqual(count(x, "a"), 20)
        XCTAssertEqual(count(z, "b"), 20)
    }

    func testBadInputs() throws {
        let dir = try traceTestDirectory(self)
        let bad = try traceTestFile(dir, "bad.jsonl", "{\"a\": 1}\n\n{\"a\": \n")
        XCTAssertEqual(traceErrorText { _ = try DatasetMixer.mix([MixSource(path: bad, weight: 1)], total: nil, seed: 0) },
                       "\(bad):3: not valid JSON (expected one example per line)")
        let array = try traceTestFile(dir, "array.jsonl", "[1]\n")
        XCTAssertEqual(traceErrorText { _ = try DatasetMixer.mix([MixSource(path: array, weight: 1)], total: nil, seed: 0) },
                       "\(array):1: expected a JSON object with one example per line, found an array")
        let empty = try traceTestFile(dir, "empty.jsonl", "")
        XCTAssertEqual(traceErrorText { _ = try DatasetMixer.mix([MixSource(path: empty, weight: 1)], total: nil, seed: 0) },
                       "\(empty): the file holds no examples (empty)")
        XCTAssertEqual(traceErrorText { _ = try DatasetMixer.mix([], total: nil, seed: 0) }, "no inputs to mix")
    }
}
