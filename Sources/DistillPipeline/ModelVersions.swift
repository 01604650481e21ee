import DistillModels
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One line of `history.jsonl`: what happened to a batch (or the initial version).
public struct PipelineHistoryEntry: Codable, Equatable, Sendable {
    public enum Decision: String, Codable, Sendable { case initial, promoted, refused, failed }
    public var time: String
    public var batch: String
    public var decision: Decision
    /// The version promoted (or, for `initial`, created).
    public var version: String?
    /// The version that was current when the batch was decided.
    public var current: String?
    public var reasons: [String]
    public var gate: GateResult?
    public var examples: Int?

    public init(batch: String, decision: Decision, version: String? = nil, current: String? = nil, reasons: [String] = [],
                gate: GateResult? = nil, examples: Int? = nil, time: Date = Date()) {
        self.time = ISO8601DateFormatter().string(from: time)
        self.batch = batch
        self.decision = decision
        self.version = version
        self.current = current
        self.reasons = reasons
        self.gate = gate
        self.examples = examples
    }
}

/// The directory of student versions that a pipeline promotes into and `distill serve --watch`
/// serves from:
///
///     v0001/ v0002/ …   each a Hugging Face model directory, plus version.json (its batch and parent)
///     current           a symbolic link to the served version, replaced atomically (rename)
///     history.jsonl     every decision, with its reasons and metrics (rewritten atomically)
///
/// Every change is a copy under a hidden name followed by a rename, so a process killed at any
/// instant leaves either the old state or the new one; each step can be repeated.
public struct ModelVersions: Sendable {
    public static let pointer = "current"
    public static let historyFile = "history.jsonl"
    public static let versionFile = "version.json"
    public let directory: URL

    public init(directory: URL) { self.directory = directory.standardizedFileURL }

    public func path(_ version: String) -> URL { directory.appendingPathComponent(version) }

    /// The version `current` points at (its name), nil when there is none.
    public func current() -> String? {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: directory.appendingPathComponent(Self.pointer).path)
        else { return nil }
        return URL(fileURLWithPath: target).lastPathComponent
    }

    /// The version names present, in order (`v0001`, `v0002`, …).
    public func versions() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { Self.number($0) != nil }.sorted { Self.number($0)! < Self.number($1)! }
    }

    static func number(_ name: String) -> Int? {
        guard name.count >= 2, name.first == "v", name.dropFirst().allSatisfy(\.isNumber) else { return nil }
        return Int(name.dropFirst())
    }

    /// The name the next version gets.
    public func nextName() -> String {
        String(format: "v%04d", (versions().compactMap(Self.number).max() ?? 0) + 1)
    }

    /// Copies `model` (a model directory: its regular files, not its subdirectories such as
    /// checkpoints) into version `name`, with `version.json` holding `info`. Nothing happens when
    /// the version exists already (a repeated step).
    public func create(_ name: String, from model: URL, info: [String: String]) throws {
        let fm = FileManager.default
        let final = path(name)
        if fm.fileExists(atPath: final.path) { return }
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        let partial = directory.appendingPathComponent(".\(name).partial")
        try? fm.removeItem(at: partial)
        try fm.createDirectory(at: partial, withIntermediateDirectories: true)
        let entries = try fm.contentsOfDirectory(at: model, includingPropertiesForKeys: [.isRegularFileKey])
        for e in entries where (try? e.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
            try fm.copyItem(at: e, to: partial.appendingPathComponent(e.lastPathComponent))
        }
        guard fm.fileExists(atPath: partial.appendingPathComponent("config.json").path) else {
            try? fm.removeItem(at: partial)
            throw FileError(file: model.path, "not a model directory (no config.json) — a version must be a Hugging Face model directory")
        }
        try JSONEncoder.pipeline.encode(info).write(to: partial.appendingPathComponent(Self.versionFile))
        try atomicMove(partial, to: final)
    }

    /// Points `current` at `name`: a new link under a hidden name renamed over the old one.
    public func point(to name: String) throws {
        guard current() != name else { return }
        let tmp = directory.appendingPathComponent(".current-\(getpid())")
        try? FileManager.default.removeItem(at: tmp)
        try FileManager.default.createSymbolicLink(atPath: tmp.path, withDestinationPath: name)
        try atomicMove(tmp, to: directory.appendingPathComponent(Self.pointer))
    }

    /// The history, oldest first.
    public func history() throws -> [PipelineHistoryEntry] {
        let url = directory.appendingPathComponent(Self.historyFile)
        guard let data = FileManager.default.contents(atPath: url.path) else { return [] }
        let decoder = JSONDecoder()
        return try data.split(separator: UInt8(ascii: "\n")).enumerated().map { i, line in
            do { return try decoder.decode(PipelineHistoryEntry.self, from: Data(line)) } catch {
                throw FileError(file: url.path, "line \(i + 1): not a history entry (\(error))")
            }
        }
    }

    /// Appends `entry` unless the history already records a decision for its batch.
    public func record(_ entry: PipelineHistoryEntry) throws {
        var all = try history()
        guard !all.contains(where: { $0.batch == entry.batch }) else { return }
        all.append(entry)
        var text = Data()
        for e in all {
            text += try JSONEncoder.pipeline.encode(e)
            text += Data("\n".utf8)
        }
        let url = directory.appendingPathComponent(Self.historyFile)
        do { try text.write(to: url, options: .atomic) } catch {
            throw FileError(file: url.path, "cannot write the history: \(ioFailureReason(error))")
        }
    }

    private func atomicMove(_ from: URL, to: URL) throws {
        guard rename(from.path, to.path) == 0 else {
            throw FileError(file: to.path, "cannot rename \(from.lastPathComponent) to \(to.lastPathComponent): \(String(cString: strerror(errno)))")
        }
    }
}

extension JSONEncoder {
    /// Sorted keys, no escaped slashes: stable files that diff well.
    static var pipeline: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }
}
