import DistillTensor
import Foundation

/// Writes GGUF version 3 files (layout in GGUF.swift): metadata in the order added, then tensor
/// infos, then the tensors' data, each aligned to `general.alignment` (32). The file is written
/// to a temporary file beside the target and renamed into place, so a failure (a full disk, a
/// missing directory) leaves no half-written file under the final name.
public struct GGUFWriter {
    /// A tensor to write: its values are produced (and quantized) only while the file is written,
    /// one tensor at a time, so memory holds one tensor rather than the model twice.
    public struct PendingTensor {
        public var name: String
        /// Row-major shape (written in ggml order, reversed).
        public var shape: [Int]
        public var type: GGMLType
        public var values: () throws -> Tensor

        var byteCount: Int {
            let (block, bytes) = GGUFQuantizer.layout(type)
            return shape.reduce(1, *) / block * bytes
        }
    }

    public private(set) var metadata: [(key: String, value: GGUFValue)] = []
    public private(set) var tensors: [PendingTensor] = []
    public let alignment = 32
    /// The file the tensors are written to, for messages.
    public let file: String

    public init(architecture: String, file: String) {
        self.file = file
        set("general.architecture", .string(architecture))
    }

    /// Adds or replaces a metadata key (the first position is kept).
    public mutating func set(_ key: String, _ value: GGUFValue) {
        if let i = metadata.firstIndex(where: { $0.key == key }) { metadata[i].value = value } else { metadata.append((key, value)) }
    }

    /// Adds a tensor of row-major `shape` stored as `type`, whose Float32 values `values` gives
    /// when the file is written. A last dimension that is not a multiple of the type's block, or a
    /// type Distill does not write, is an error naming the tensor.
    public mutating func add(_ name: String, shape: [Int], as type: GGMLType, values: @escaping () throws -> Tensor) throws {
        guard GGUFQuantizer.writable.contains(type) else {
            throw FileError(file: file, location: name, "cannot write tensors as \(type.name) (writable: \(GGUFQuantizer.writable.map(\.name).joined(separator: ", ")))")
        }
        let (block, _) = GGUFQuantizer.layout(type)
        guard let rowLength = shape.last, rowLength % block == 0 else {
            throw FileError(file: file, location: name,
                            "rows of \(shape.last ?? 0) values do not divide into \(type.name) blocks of \(block)")
        }
        guard !tensors.contains(where: { $0.name == name }) else {
            throw FileError(file: file, location: name, "tensor written twice")
        }
        tensors.append(PendingTensor(name: name, shape: shape, type: type, values: values))
    }

    /// The whole file's bytes up to the data section, and the data offsets of each tensor.
    func header() -> (bytes: [UInt8], offsets: [Int]) {
        var out: [UInt8] = Array("GGUF".utf8)
        append(&out, UInt32(3))
        append(&out, UInt64(tensors.count))
        append(&out, UInt64(metadata.count + 1))
        for (key, value) in metadata {
            appendString(&out, key)
            appendValue(&out, value)
        }
        appendString(&out, "general.alignment")
        appendValue(&out, .uint32(UInt32(alignment)))
        var offsets: [Int] = []
        var offset = 0
        for t in tensors {
            appendString(&out, t.name)
            append(&out, UInt32(t.shape.count))
            for d in t.shape.reversed() { append(&out, UInt64(d)) }
            append(&out, t.type.rawValue)
            append(&out, UInt64(offset))
            offsets.append(offset)
            offset += (t.byteCount + alignment - 1) / alignment * alignment
        }
        while out.count % alignment != 0 { out.append(0) }
        return (out, offsets)
    }

    /// Writes the file atomically (see the type's comment); `progress(i, name)` before tensor i.
    public func write(progress: (Int, String) -> Void = { _, _ in }) throws {
        let dir = URL(fileURLWithPath: file).deletingLastPathComponent().path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw FileError(file: file, "the directory \(dir) does not exist")
        }
        let (head, _) = header()
        let zeros = [UInt8](repeating: 0, count: alignment)
        try writeAtomically(to: file) { out in
            try head.withUnsafeBytes { try out.write($0) }
            for (i, t) in tensors.enumerated() {
                progress(i, t.name)
                let values = try t.values()
                guard values.shape == t.shape else {
                    throw FileError(file: file, location: t.name, "values of shape \(values.shape) for a tensor declared \(t.shape)")
                }
                let data = GGUFQuantizer.quantize(values.storage.pointer, count: values.count, type: t.type)
                try data.withUnsafeBytes { try out.write($0) }
                let pad = (alignment - data.count % alignment) % alignment
                if pad > 0 { try zeros.withUnsafeBytes { try out.write(UnsafeRawBufferPointer(rebasing: $0[0..<pad])) } }
            }
        }
    }
}

private func append<T: FixedWidthInteger>(_ out: inout [UInt8], _ v: T) {
    withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
}

private func appendString(_ out: inout [UInt8], _ s: String) {
    let bytes = Array(s.utf8)
    append(&out, UInt64(bytes.count))
    out.append(contentsOf: bytes)
}

/// GGUF value type codes.
private func typeCode(_ v: GGUFValue) -> UInt32 {
    switch v {
    case .uint8: return 0
    case .int8: return 1
    case .uint16: return 2
    case .int16: return 3
    case .uint32: return 4
    case .int32: return 5
    case .float32: return 6
    case .bool: return 7
    case .string: return 8
    case .array: return 9
    case .uint64: return 10
    case .int64: return 11
    case .float64: return 12
    }
}

private func appendValue(_ out: inout [UInt8], _ v: GGUFValue, typed: Bool = true) {
    if typed { append(&out, typeCode(v)) }
    switch v {
    case .uint8(let x): append(&out, x)
    case .int8(let x): append(&out, x)
    case .uint16(let x): append(&out, x)
    case .int16(let x): append(&out, x)
    case .uint32(let x): append(&out, x)
    case .int32(let x): append(&out, x)
    case .uint64(let x): append(&out, x)
    case .int64(let x): append(&out, x)
    case .float32(let x): append(&out, x.bitPattern)
    case .float64(let x): append(&out, x.bitPattern)
    case .bool(let x): out.append(x ? 1 : 0)
    case .string(let s): appendString(&out, s)
    case .array(let items):
        // An empty array says nothing of its elements; string is what GGUF readers expect of the
        // lists that can be empty (llama.cpp checks tokenizer.ggml.merges' type).
        append(&out, items.first.map(typeCode) ?? 8)
        append(&out, UInt64(items.count))
        for item in items { appendValue(&out, item, typed: false) }
    }
}
