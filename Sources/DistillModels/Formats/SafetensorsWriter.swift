import DistillTensor
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes safetensors files the way the reference implementation does: tensors ordered by dtype
/// alignment then name, a compact JSON header with "__metadata__" first, padded with spaces to a
/// multiple of 8 bytes. Files are written to a temporary file beside the target and renamed into
/// place, so a reader never sees half a file.
public enum SafetensorsWriter {
    /// Element types the writer can store Float32 tensors as.
    public enum StoredType: String, Sendable {
        case f32 = "F32", f16 = "F16", bf16 = "BF16"
        var dtype: SafetensorsDType { SafetensorsDType(rawValue: rawValue)! }
    }

    /// Metadata `transformers` expects in model checkpoints.
    public static let defaultMetadata: [String: String] = ["format": "pt"]

    /// Writes `tensors` (ordered by name) to `path`, replacing any file there.
    public static func write(_ tensors: [String: Tensor], metadata: [String: String]? = defaultMetadata,
                             to path: String, dtype: StoredType = .f32) throws {
        let names = tensors.keys.sorted()
        let header = headerBytes(names.map { ($0, tensors[$0]!.shape) }, metadata: metadata, dtype: dtype.dtype)
        try writeAtomically(to: path) { out in
            var lengthLE = UInt64(header.count).littleEndian
            try withUnsafeBytes(of: &lengthLE) { try out.write($0) }
            try header.withUnsafeBytes { try out.write($0) }
            for name in names { try out.write(tensors[name]!, as: dtype) }
        }
    }

    public static func write(_ tensors: [String: Tensor], metadata: [String: String]? = defaultMetadata,
                             to url: URL, dtype: StoredType = .f32) throws {
        try write(tensors, metadata: metadata, to: url.path, dtype: dtype)
    }

    /// The header (length prefix excluded): compact JSON as serde_json writes it, then spaces up to
    /// a multiple of 8 bytes.
    static func headerBytes(_ tensors: [(String, [Int])], metadata: [String: String]?, dtype: SafetensorsDType) -> [UInt8] {
        var json = "{"
        var first = true
        if let metadata {
            json += "\"__metadata__\":{"
            json += metadata.keys.sorted().map { "\(jsonStringLiteral($0)):\(jsonStringLiteral(metadata[$0]!))" }.joined(separator: ",")
            json += "}"
            first = false
        }
        var offset = 0
        for (name, shape) in tensors {
            let bytes = shape.reduce(1, *) * dtype.byteSize
            if !first { json += "," }
            first = false
            json += "\(jsonStringLiteral(name)):{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}"
            offset += bytes
        }
        json += "}"
        var out = Array(json.utf8)
        out += [UInt8](repeating: UInt8(ascii: " "), count: (8 - out.count % 8) % 8)
        return out
    }
}

// MARK: - Sharded checkpoints

extension SafetensorsWriter {
    /// Writes a checkpoint split like `transformers`' `save_pretrained(max_shard_size:)`: tensors in
    /// name order fill a shard until the next one would pass `maxShardSize` bytes (a tensor larger
    /// than that gets a shard of its own). Several shards are named
    /// `model-0000N-of-0000M.safetensors` and listed in `model.safetensors.index.json`
    /// (`{"metadata": {"total_size": …}, "weight_map": {name: file}}`); a single shard is written
    /// as `model.safetensors` without an index, as `transformers` does. Returns the file names.
    @discardableResult
    public static func writeSharded(_ tensors: [String: Tensor], metadata: [String: String]? = defaultMetadata,
                                     to directory: String, dtype: StoredType = .f32,
                                     maxShardSize: Int = 5_000_000_000) throws -> [String] {
        precondition(maxShardSize > 0, "writeSharded: maxShardSize must be positive")
        let names = tensors.keys.sorted()
        let plan = shardPlan(names.map { ($0, tensors[$0]!.count * dtype.dtype.byteSize) }, maxShardSize: maxShardSize)
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw FileError(file: directory, "cannot create the checkpoint directory: \(ioFailureReason(error))")
        }
        let dir = URL(fileURLWithPath: directory)
        if plan.count <= 1 {
            try write(tensors, metadata: metadata, to: dir.appendingPathComponent("model.safetensors").path, dtype: dtype)
            return ["model.safetensors"]
        }
        var fileNames: [String] = []
        var weightMap: [String: String] = [:]
        var totalSize = 0
        for (i, shard) in plan.enumerated() {
            let fileName = String(format: "model-%05d-of-%05d.safetensors", i + 1, plan.count)
            var part: [String: Tensor] = [:]
            for name in shard {
                part[name] = tensors[name]!
                weightMap[name] = fileName
                totalSize += tensors[name]!.count * dtype.dtype.byteSize
            }
            try write(part, metadata: metadata, to: dir.appendingPathComponent(fileName).path, dtype: dtype)
            fileNames.append(fileName)
        }
        // As transformers writes it: json.dumps(index, indent=2, sort_keys=True) + "\n".
        var index = "{\n  \"metadata\": {\n    \"total_size\": \(totalSize)\n  },\n  \"weight_map\": {\n"
        index += weightMap.keys.sorted().map { "    \(jsonStringLiteral($0)): \(jsonStringLiteral(weightMap[$0]!))" }.joined(separator: ",\n")
        index += "\n  }\n}\n"
        let indexPath = dir.appendingPathComponent(ShardedSafetensors.indexName).path
        try writeAtomically(to: indexPath) { out in
            try Array(index.utf8).withUnsafeBytes { try out.write($0) }
        }
        return fileNames + [ShardedSafetensors.indexName]
    }

    /// Groups `(name, bytes)` into shards, in order (huggingface_hub's
    /// `split_torch_state_dict_into_shards`).
    static func shardPlan(_ sizes: [(String, Int)], maxShardSize: Int) -> [[String]] {
        var shards: [[String]] = []
        var current: [String] = []
        var currentSize = 0
        for (name, size) in sizes {
            if size > maxShardSize {
                shards.append([name])
                continue
            }
            if currentSize + size > maxShardSize, !current.isEmpty {
                shards.append(current)
                current = []
                currentSize = 0
            }
            current.append(name)
            currentSize += size
        }
        if !current.isEmpty { shards.append(current) }
        return shards
    }
}

// MARK: - Atomic file output

/// A buffered output file; errors name `path`, the file being replaced (not the temporary file).
final class OutputFile {
    let path: String
    let fd: Int32
    private var buffer: [UInt8] = []
    private var closed = false
    private static let bufferSize = 1 << 20

    init(temporaryPath: String, path: String) throws {
        self.path = path
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else {
            throw FileError(file: path, "cannot create \(temporaryPath): \(String(cString: strerror(errno)))")
        }
        buffer.reserveCapacity(Self.bufferSize)
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        if buffer.count + bytes.count > Self.bufferSize { try flush() }
        if bytes.count >= Self.bufferSize {
            try writeAll(bytes)
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    /// Writes a Float32 tensor's values as `dtype`, little-endian.
    func write(_ tensor: Tensor, as dtype: SafetensorsWriter.StoredType) throws {
        let n = tensor.count
        if n == 0 { return }
        let src = tensor.storage.pointer
        switch dtype {
        case .f32:
            #if _endian(little)
            try write(UnsafeRawBufferPointer(start: src, count: n * 4))
            #else
            let le = (0..<n).map { src[$0].bitPattern.littleEndian }
            try le.withUnsafeBytes { try write($0) }
            #endif
        case .f16, .bf16:
            let chunk = 1 << 18
            var bits = [UInt16](repeating: 0, count: min(n, chunk))
            var start = 0
            while start < n {
                let m = min(chunk, n - start)
                bits.withUnsafeMutableBufferPointer { out in
                    let o = out.baseAddress!, s = src + start
                    parallelFor(m, grain: 1 << 15) { r in
                        if dtype == .f16 {
                            for i in r { o[i] = HalfPrecision.half(from: s[i]).littleEndian }
                        } else {
                            for i in r { o[i] = HalfPrecision.bfloat16(from: s[i]).littleEndian }
                        }
                    }
                }
                try bits.withUnsafeBytes { try write(UnsafeRawBufferPointer(rebasing: $0[0..<(m * 2)])) }
                start += m
            }
        }
    }

    func flush() throws {
        try buffer.withUnsafeBytes { try writeAll($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let r = Glibc_write(fd, bytes.baseAddress! + done, bytes.count - done)
            if r < 0 {
                if errno == EINTR { continue }
                throw FileError(file: path, "write failed: \(String(cString: strerror(errno)))")
            }
            done += r
        }
    }

    /// Flushes, syncs to disk and closes.
    func finish() throws {
        try flush()
        guard fsync(fd) == 0 else {
            throw FileError(file: path, "fsync failed: \(String(cString: strerror(errno)))")
        }
        closed = true
        guard close(fd) == 0 else { throw FileError(file: path, "close failed: \(String(cString: strerror(errno)))") }
    }

    func abandon() {
        if !closed { close(fd) }
        closed = true
    }
}

@inline(__always)
private func Glibc_write(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, p, n)
    #else
    return Darwin.write(fd, p, n)
    #endif
}

/// Runs `body` on a temporary file beside `path`, then renames it to `path`; on error the
/// temporary file is removed and `path` is untouched.
func writeAtomically(to path: String, _ body: (OutputFile) throws -> Void) throws {
    let url = URL(fileURLWithPath: path)
    let tmp = url.deletingLastPathComponent()
        .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
    let out = try OutputFile(temporaryPath: tmp, path: path)
    do {
        try body(out)
        try out.finish()
    } catch {
        out.abandon()
        unlink(tmp)
        throw error
    }
    guard rename(tmp, path) == 0 else {
        let e = errno
        unlink(tmp)
        throw FileError(file: path, "cannot move the finished file into place: \(String(cString: strerror(e)))")
    }
}
