import Foundation

/// A size-limited file system (tmpfs) mounted on a fresh temporary directory, for disk-full
/// tests: writes past its size fail with ENOSPC as on a full disk. Mounting needs root (or
/// CAP_SYS_ADMIN); where it is refused, `init` throws `Unavailable` and tests skip.
public final class SmallFilesystem {
    public struct Unavailable: Error, CustomStringConvertible { public let description: String }

    public let url: URL
    private var mounted = false

    public init(bytes: Int) throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("distill-small-fs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        let (status, output) = Self.run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(bytes)", "tmpfs", url.path])
        guard status == 0 else {
            try? FileManager.default.removeItem(at: url)
            throw Unavailable(description: "cannot mount a \(bytes)-byte tmpfs (root or CAP_SYS_ADMIN needed): \(output)")
        }
        mounted = true
    }

    /// Free bytes left on it.
    public var freeBytes: Int {
        ((try? FileManager.default.attributesOfFileSystem(forPath: url.path))?[.systemFreeSize] as? NSNumber)?.intValue ?? 0
    }

    /// Grows or shrinks it in place (its files stay): space back after a full disk.
    public func resize(bytes: Int) throws {
        let (status, output) = Self.run("/bin/mount", ["-o", "remount,size=\(bytes)", url.path])
        guard status == 0 else { throw Unavailable(description: "cannot resize the tmpfs: \(output)") }
    }

    /// Unmounts it (its files are gone) and removes the directory.
    public func unmount() {
        guard mounted else { return }
        _ = Self.run("/bin/umount", [url.path])
        mounted = false
        try? FileManager.default.removeItem(at: url)
    }

    deinit { unmount() }

    static func run(_ tool: String, _ args: [String]) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        do { try p.run() } catch { return (-1, "\(error)") }
        p.waitUntilExit()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return (p.terminationStatus, out.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
