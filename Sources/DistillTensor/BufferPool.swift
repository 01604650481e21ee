import Foundation

/// Keeps freed tensor buffers of 64 KiB and more for reuse, keyed by exact size. A training step
/// allocates the same sizes every time, so after the first step most buffers come from here
/// instead of fresh (page-faulting) memory. At most `limitBytes` are kept (`DISTILL_POOL_MB`,
/// default 1024; 0 turns pooling off).
public final class BufferPool: @unchecked Sendable {
    public static let shared = BufferPool()

    /// Bytes at most held for reuse.
    public var limitBytes: Int { lock.lock(); defer { lock.unlock() }; return limit }
    private var limit: Int
    /// Whether DISTILL_POOL_MB set the limit (then nothing else changes it).
    private let limitFromEnvironment: Bool
    static let minimumBytes = 64 << 10
    private var free: [Int: [UnsafeMutableRawPointer]] = [:]
    private var cachedBytes = 0
    private var live = 0
    private var peak = 0
    private let lock = NSLock()

    init() {
        let set = ProcessInfo.processInfo.environment["DISTILL_POOL_MB"].flatMap { Int($0) }
        limitFromEnvironment = set != nil
        limit = Swift.max(0, set ?? 1024) << 20
    }

    /// Lowers the limit to `bytes` (unless DISTILL_POOL_MB chose it) and frees what is held above
    /// it. A server calls this: its shapes (rows × cache length) change with every request, so a
    /// large pool fills with sizes that never come back, where a training step reuses all of its own.
    public func lowerLimit(to bytes: Int) {
        lock.lock()
        guard !limitFromEnvironment, bytes < limit else { lock.unlock(); return }
        limit = Swift.max(0, bytes)
        var released: [UnsafeMutableRawPointer] = []
        for size in free.keys.sorted(by: >) where cachedBytes > limit {
            while cachedBytes > limit, let p = free[size]?.popLast() {
                released.append(p)
                cachedBytes -= size
            }
        }
        lock.unlock()
        released.forEach { $0.deallocate() }
    }

    /// Bytes currently held for reuse.
    public var heldBytes: Int { lock.lock(); defer { lock.unlock() }; return cachedBytes }

    /// Bytes of tensor storage of 64 KiB and more currently in use (handed out and not yet given
    /// back), whether fresh or reused. Smaller buffers are not counted (they are not worth a lock).
    public var liveBytes: Int { lock.lock(); defer { lock.unlock() }; return live }

    /// The most `liveBytes` has been since the last `resetPeak()`: the peak tensor memory of a
    /// computation, independent of what the pool or the C allocator keep cached.
    public var peakLiveBytes: Int { lock.lock(); defer { lock.unlock() }; return peak }

    /// Starts a new peak measurement at the current `liveBytes`.
    public func resetPeak() { lock.lock(); peak = live; lock.unlock() }

    func take(byteCount: Int) -> UnsafeMutableRawPointer {
        if byteCount >= Self.minimumBytes {
            lock.lock()
            live += byteCount
            if live > peak { peak = live }
            if let p = free[byteCount]?.popLast() {
                cachedBytes -= byteCount
                lock.unlock()
                return p
            }
            lock.unlock()
        }
        return UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 64)
    }

    func give(_ p: UnsafeMutableRawPointer, byteCount: Int) {
        if byteCount >= Self.minimumBytes {
            lock.lock()
            live -= byteCount
            if cachedBytes + byteCount <= limit {
                free[byteCount, default: []].append(p)
                cachedBytes += byteCount
                lock.unlock()
                return
            }
            lock.unlock()
        }
        p.deallocate()
    }

    /// Frees every held buffer.
    public func drain() {
        lock.lock()
        let all = free
        free = [:]
        cachedBytes = 0
        lock.unlock()
        for (_, list) in all { list.forEach { $0.deallocate() } }
    }
}
