import DistillTensor
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A whole file mapped into memory, read-only from the file's point of view: the mapping is
/// private (copy-on-write), so a write through a borrowed tensor never reaches the disk. The
/// mapping lives as long as this object; tensors that borrow from it keep it alive.
final class MappedFile: @unchecked Sendable {
    let path: String
    /// Start of the mapping; nil for an empty file.
    let base: UnsafeMutableRawPointer?
    let size: Int

    init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw FileError(file: path, "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw FileError(file: path, "cannot read file status: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw FileError(file: path, "not a regular file") }
        size = Int(st.st_size)
        if size == 0 { base = nil; return }
        #if os(Linux)
        let flags = MAP_PRIVATE | MAP_NORESERVE
        #else
        let flags = MAP_PRIVATE
        #endif
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, flags, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw FileError(file: path, "cannot memory-map \(size) bytes: \(String(cString: strerror(errno)))")
        }
        base = p
    }

    deinit {
        if let base { munmap(base, size) }
    }

    /// Bytes `range` of the file; the caller has checked the range.
    func bytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        precondition(range.lowerBound >= 0 && range.upperBound <= size)
        guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count)
    }

    /// A Float32 tensor that reads `count` floats at byte `offset` in place, keeping the mapping
    /// alive; nil when the data is not 4-byte aligned (the caller copies instead).
    func borrowedFloats(at offset: Int, shape: [Int], count: Int) -> Tensor? {
        #if _endian(big)
        return nil
        #endif
        guard let base, count > 0, (Int(bitPattern: base) + offset) % MemoryLayout<Float>.alignment == 0 else { return nil }
        let p = (base + offset).bindMemory(to: Float.self, capacity: count)
        let storage = Storage(borrowing: p, count: count, release: { withExtendedLifetime(self) {} })
        return Tensor(shape: shape, sharing: storage)
    }
}

/// Little-endian reads with a bounds check on every read, for parsing headers of untrusted files.
struct ByteReader {
    let file: MappedFile
    var offset: Int
    /// What is being read (a key, a tensor name), for error messages.
    var location: String = ""

    init(file: MappedFile, offset: Int = 0) {
        self.file = file
        self.offset = offset
    }

    var remaining: Int { file.size - offset }

    func error(_ message: String) -> FileError {
        FileError(file: file.path, location: location, message)
    }

    /// Checks that `n` more bytes exist, naming `what` otherwise.
    func need(_ n: Int, _ what: String) throws {
        guard n >= 0, n <= remaining else {
            throw error("file ends at byte \(file.size) while reading \(what) (\(n) bytes at offset \(offset)); the file is truncated or corrupt")
        }
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: String) throws -> T {
        let n = MemoryLayout<T>.size
        try need(n, what)
        var v = T.zero
        withUnsafeMutableBytes(of: &v) { $0.copyMemory(from: file.bytes(offset..<(offset + n))) }
        offset += n
        return T(littleEndian: v)
    }

    mutating func bytes(_ n: Int, _ what: String) throws -> UnsafeRawBufferPointer {
        try need(n, what)
        defer { offset += n }
        return file.bytes(offset..<(offset + n))
    }
}

/// `value` rounded up to a multiple of `alignment` (a power of two), or nil on overflow.
@inline(__always)
func alignUp(_ value: Int, _ alignment: Int) -> Int? {
    let (s, o) = value.addingReportingOverflow(alignment - 1)
    return o ? nil : s & ~(alignment - 1)
}

/// Product of `dims`, or nil when a dimension is negative or the product overflows.
func checkedProduct(_ dims: [Int]) -> Int? {
    var n = 1
    for d in dims {
        guard d >= 0 else { return nil }
        let (p, o) = n.multipliedReportingOverflow(by: d)
        if o { return nil }
        n = p
    }
    return n
}

/// "a, b, c and 12 more": a few names for error messages.
func someNames(_ names: [String], limit: Int = 5) -> String {
    if names.isEmpty { return "(none)" }
    let shown = names.prefix(limit).joined(separator: ", ")
    return names.count > limit ? "\(shown) and \(names.count - limit) more" : shown
}
