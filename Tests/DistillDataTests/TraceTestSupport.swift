import Foundation
import XCTest

/// A fresh temporary directory for one trace-data test, removed at the end of the test.
func traceTestDirectory(_ test: XCTestCase) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("distill-traces-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
    return dir
}

/// Writes `text` to `name` in `dir` and returns its path.
func traceTestFile(_ dir: URL, _ name: String, _ text: String) throws -> String {
    let url = dir.appendingPathComponent(name)
    try Data(text.utf8).write(to: url)
    return url.path
}

/// The error `body` throws, as text (fails the test when it throws nothing).
func traceErrorText(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> String {
    do { try body() } catch { return "\(error)" }
    XCTFail("expected an error", file: file, line: line)
    return ""
}
