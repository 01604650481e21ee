import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs `body` with this process's file-size limit (RLIMIT_FSIZE) at `bytes` and SIGXFSZ ignored:
/// a write past the limit then fails as on a full disk (EFBIG) instead of killing the process.
/// The limit and the signal's handler are restored afterwards, also when `body` throws.
public func withFileSizeLimit<T>(_ bytes: Int, _ body: () throws -> T) rethrows -> T {
    let old = signal(SIGXFSZ, SIG_IGN)
    var saved = rlimit()
    getrlimit(Int32(RLIMIT_FSIZE.rawValue), &saved)
    var limit = saved
    limit.rlim_cur = rlim_t(bytes)
    setrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit)
    defer {
        setrlimit(Int32(RLIMIT_FSIZE.rawValue), &saved)
        signal(SIGXFSZ, old)
    }
    return try body()
}
