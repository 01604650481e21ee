import DistillTensor
import Foundation

/// Runs a program to completion and keeps what it printed; the last line of its standard output
/// is where the measuring children (`distill eval-speed`, `scripts/bench_pytorch.py`) put their JSON.
public enum ChildProcess {
    public struct Output: Sendable {
        public var status: Int32
        public var stdout: Data
        public var stderr: String

        /// The last non-empty line of standard output.
        public var lastLine: String? { String(data: stdout, encoding: .utf8)?.split(separator: "\n").last.map(String.init) }
    }

    /// Starts `executable` with `arguments` and waits. Standard error is drained on its own thread
    /// while standard output is read, so neither pipe can fill and stall the child. Throws only
    /// when the program cannot be started.
    public static func run(_ executable: String, _ arguments: [String]) throws -> Output {
        let proc = Process()
        proc.executableURL = URL(fileURLWithPath: executable)
        proc.arguments = arguments
        let out = Pipe(), err = Pipe()
        proc.standardOutput = out
        proc.standardError = err
        try proc.run()
        let errData = LockedBox(Data())
        let drained = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            errData.value = err.fileHandleForReading.readDataToEndOfFile()
            drained.signal()
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        drained.wait()
        proc.waitUntilExit()
        return Output(status: proc.terminationStatus, stdout: data, stderr: String(data: errData.value, encoding: .utf8) ?? "")
    }
}
