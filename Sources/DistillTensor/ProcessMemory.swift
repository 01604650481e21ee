import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// This process's resident memory, for benchmarks and evaluation reports: Linux reads
/// /proc/self/status (VmRSS, VmHWM) and can reset the peak; elsewhere getrusage gives the peak
/// since the start.
public enum ProcessMemory {
    /// The whole text of a file that reports no size, such as those under /proc (nil when it
    /// cannot be read). Foundation's `String(contentsOfFile:)` stops after the first read there —
    /// 4 KiB of /proc/self/smaps, say — so these are read to the end.
    public static func procFile(_ path: String) -> String? {
        guard let h = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? h.close() }
        do { return String(decoding: try h.readToEnd() ?? Data(), as: UTF8.self) } catch { return nil }   // nil data: at the end already
    }

    /// A "Name:\t 123 kB" field of /proc/self/status in bytes (nil where there is none).
    public static func statusField(_ name: String) -> Int? {
        guard let s = procFile("/proc/self/status") else { return nil }
        for line in s.split(separator: "\n") where line.hasPrefix(name + ":") {
            // "VmHWM:\t 3081240 kB" (a tab, then padding spaces that vanish for large values).
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
        }
        return nil
    }

    /// Resident bytes now (Linux), else the peak.
    public static func residentBytes() -> Int { statusField("VmRSS") ?? peakResidentBytes() }

    /// The resident-set high-water mark: since the last `resetPeak()` on Linux, since the start elsewhere.
    public static func peakResidentBytes() -> Int {
        if let hwm = statusField("VmHWM") { return hwm }
        var u = rusage()
        #if os(Linux)
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Int(u.ru_maxrss) * 1024
        #else
        getrusage(RUSAGE_SELF, &u)
        return Int(u.ru_maxrss)    // bytes on macOS
        #endif
    }

    /// Resets the high-water mark to the current resident set (Linux: writes "5" to
    /// /proc/self/clear_refs); false where that is not possible.
    @discardableResult
    public static func resetPeak() -> Bool {
        guard let fh = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? fh.close() }
        do { try fh.write(contentsOf: Data("5".utf8)); return true } catch { return false }
    }
}
