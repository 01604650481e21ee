import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The running test binary, to start again as a child process; skips the test when it cannot be
/// found.
func childTestExecutable() throws -> URL {
    let executable = URL(fileURLWithPath: CommandLine.arguments[0])
    guard FileManager.default.isExecutableFile(atPath: executable.path) else {
        throw XCTSkip("cannot find the test executable to run a child process")
    }
    return executable
}

/// Runs `executable` (the test binary) as a child that runs only `test`
/// ("DistillDataTests.Class/testName") with `environment` added to this process's, its output
/// discarded, waits for it, and asserts that it died of SIGKILL (the child kills itself).
func runChildTestExpectingSIGKILL(_ executable: URL, test: String, environment: [String: String],
                                  file: StaticString = #filePath, line: UInt = #line) throws {
    let child = Process()
    child.executableURL = executable
    child.arguments = [test]
    child.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    child.standardOutput = FileHandle.nullDevice
    child.standardError = FileHandle.nullDevice
    try child.run()
    child.waitUntilExit()
    XCTAssertEqual(child.terminationReason, .uncaughtSignal, file: file, line: line)
    XCTAssertEqual(child.terminationStatus, SIGKILL, file: file, line: line)
}
