import DistillFuzz
import Foundation
import XCTest

/// Every committed fuzz corpus input (`Fuzz/Corpora/<target>/`: seeds, and what libFuzzer kept
/// or found, crashes and hangs among them once fixed) runs through its harness again: a parser
/// that crashes fails the run, one that takes more than 2 s on an input fails the test.
final class CorpusReplayTests: XCTestCase {
    static let corpora = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz/Corpora")

    func replay(_ target: FuzzTarget) throws {
        let dir = Self.corpora.appendingPathComponent(target.rawValue)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        XCTAssertFalse(names.isEmpty, "no corpus for \(target.rawValue)")
        for name in names {
            let data = try Data(contentsOf: dir.appendingPathComponent(name))
            let start = Date()
            target.run(data)
            XCTAssertLessThan(Date().timeIntervalSince(start), 2, "\(target.rawValue)/\(name) took too long")
        }
    }

    func testSafetensors() throws { try replay(.safetensors) }
    func testGGUF() throws { try replay(.gguf) }
    func testTokenizer() throws { try replay(.tokenizer) }
    func testJinja() throws { try replay(.jinja) }
    func testYAML() throws { try replay(.yaml) }
    func testJSONL() throws { try replay(.jsonl) }
    func testRequest() throws { try replay(.request) }

    /// The corpora are where the harnesses look: one directory per target, nothing else.
    func testEveryTargetHasACorpus() throws {
        let dirs = try FileManager.default.contentsOfDirectory(atPath: Self.corpora.path).sorted()
        XCTAssertEqual(dirs, FuzzTarget.allCases.map(\.rawValue).sorted())
    }
}
