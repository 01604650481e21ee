import DistillModels
import Foundation

/// Follows a directory of model versions for `distill serve --watch DIR`: `DIR/current` names the
/// version to serve — a symbolic link to it (or a file holding its path, relative to DIR), switched
/// atomically (a new link renamed over the old one) by whatever publishes versions. When it points
/// somewhere new, the version is loaded off the request path and swapped in (`OpenAIServer.swap`);
/// a version that fails to load is reported once and the server keeps the one it has.
public final class ModelDirectoryWatcher: @unchecked Sendable {
    public enum Event: Sendable {
        case swapped(version: String)
        case failed(version: String, reason: String)
    }

    public let directory: URL
    private let load: @Sendable (String) throws -> PretrainedModel
    private let lock = NSLock()
    /// The version served (or last refused), so each change is acted on once.
    private var seen: String?

    /// `load` reads a version (the CLI applies its adapter and dequantization options there).
    public init(directory: URL, load: @escaping @Sendable (String) throws -> PretrainedModel = { try PretrainedModel.load($0) }) {
        self.directory = directory.standardizedFileURL
        self.load = load
    }

    /// The version `DIR/current` names now (a resolved path), or nil when there is none.
    public func currentVersion() -> String? {
        let pointer = directory.appendingPathComponent("current")
        let fm = FileManager.default
        if let target = try? fm.destinationOfSymbolicLink(atPath: pointer.path) {
            let url = target.hasPrefix("/") ? URL(fileURLWithPath: target) : directory.appendingPathComponent(target)
            return url.standardizedFileURL.path
        }
        guard let text = try? String(contentsOf: pointer, encoding: .utf8) else { return nil }
        let name = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty else { return nil }
        return (name.hasPrefix("/") ? URL(fileURLWithPath: name) : directory.appendingPathComponent(name)).standardizedFileURL.path
    }

    /// Loads the current version for the server's start (and remembers it as served).
    public func loadCurrent() throws -> PretrainedModel {
        guard let version = currentVersion() else {
            throw FileError(file: directory.appendingPathComponent("current").path,
                            "no version to serve: expected a symbolic link to a model directory or file (or a file naming one)")
        }
        let model = try load(version)
        lock.withLock { seen = version }
        return model
    }

    /// Checks `DIR/current` once; swaps `server` to a new version when it changed. Returns what happened.
    @discardableResult
    public func check(_ server: OpenAIServer) -> Event? {
        guard let version = currentVersion(), lock.withLock({ seen != version }) else { return nil }
        lock.withLock { seen = version }
        do {
            try server.swap(to: try load(version))
            return .swapped(version: version)
        } catch {
            return .failed(version: version, reason: "\(error)")
        }
    }

    /// Checks every `interval` seconds until the task is cancelled; `onEvent` hears each swap or failure.
    public func watch(_ server: OpenAIServer, interval: Double = 1, onEvent: @escaping @Sendable (Event) -> Void) async {
        while !Task.isCancelled {
            try? await Task.sleep(nanoseconds: UInt64(interval * 1e9))
            // Loading a model is long, blocking work: off the cooperative pool.
            let event = await withCheckedContinuation { (done: CheckedContinuation<Event?, Never>) in
                DispatchQueue.global().async { done.resume(returning: self.check(server)) }
            }
            if let event { onEvent(event) }
        }
    }
}
