import DistillTensor
import Foundation

// The GGUF format, versions 2 and 3 (ggml docs/gguf.md), all little-endian:
//
//   "GGUF" | u32 version | u64 tensor_count | u64 kv_count
//   kv_count × (string key | u32 value type | value)
//   tensor_count × (string name | u32 n_dims | n_dims × u64 dims | u32 ggml type | u64 offset)
//   padding to `general.alignment` (default 32) | tensor data
//
// Strings are u64 length + UTF-8 bytes; arrays are u32 element type + u64 count + elements.
// Dimensions are in ggml order (fastest-varying first): the row-major shape is their reverse.
// Tensor offsets are relative to the start of the data section and multiples of the alignment.

/// A GGUF metadata value.
public enum GGUFValue: Equatable, Sendable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
    case array([GGUFValue])

    /// The value of any integer type, when it fits in `Int`.
    public var int: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return Int(exactly: v)
        case .int64(let v): return Int(v)
        default: return nil
        }
    }

    /// The value of a float type, or of an integer type converted.
    public var double: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return int.map(Double.init)
        }
    }

    /// The value as Float32 (float types and integers).
    public var float: Float? {
        if case .float32(let v) = self { return v }
        return double.map(Float.init)
    }

    public var bool: Bool? { if case .bool(let v) = self { return v }; return nil }
    public var string: String? { if case .string(let v) = self { return v }; return nil }
    public var array: [GGUFValue]? { if case .array(let v) = self { return v }; return nil }

    /// An array of strings (nil when any element is not a string).
    public var strings: [String]? {
        guard let a = array else { return nil }
        var out: [String] = []
        out.reserveCapacity(a.count)
        for v in a { guard let s = v.string else { return nil }; out.append(s) }
        return out
    }

    /// An array of integers (nil when any element is not an integer).
    public var ints: [Int]? {
        guard let a = array else { return nil }
        var out: [Int] = []
        out.reserveCapacity(a.count)
        for v in a { guard let i = v.int else { return nil }; out.append(i) }
        return out
    }

    /// An array of numbers as Float32 (nil when any element is not a number).
    public var floats: [Float]? {
        guard let a = array else { return nil }
        var out: [Float] = []
        out.reserveCapacity(a.count)
        for v in a { guard let f = v.float else { return nil }; out.append(f) }
        return out
    }

    /// The GGUF type name ("uint32", "string", "array[string]"), for error messages.
    public var typeName: String {
        switch self {
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .uint16: return "uint16"
        case .int16: return "int16"
        case .uint32: return "uint32"
        case .int32: return "int32"
        case .uint64: return "uint64"
        case .int64: return "int64"
        case .float32: return "float32"
        case .float64: return "float64"
        case .bool: return "bool"
        case .string: return "string"
        case .array(let a): return "array[\(a.first?.typeName ?? "")]"
        }
    }
}

/// One tensor's entry in a GGUF file.
public struct GGUFTensorInfo: Equatable, Sendable {
    public var name: String
    /// Dimensions in ggml order (the first is the fastest-varying, i.e. the row length).
    public var ggmlDimensions: [Int]
    /// Row-major shape, as Hugging Face and `Tensor` use: the ggml dimensions reversed.
    public var shape: [Int] { Array(ggmlDimensions.reversed()) }
    public var type: GGMLType
    /// Byte offset of the data, relative to the start of the data section.
    public var offset: Int
    /// Bytes of data; nil for types whose block size is unknown.
    public var byteCount: Int?

    public var elementCount: Int { ggmlDimensions.reduce(1, *) }
}

/// A memory-mapped GGUF file (versions 2 and 3). Opening parses and validates the metadata and
/// tensor infos; tensors are dequantized on demand to Float32 in row-major order.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: Int
    /// Metadata by key.
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    /// Tensor infos in file order.
    public let tensorInfos: [GGUFTensorInfo]
    /// Data alignment (`general.alignment`, default 32).
    public let alignment: Int
    /// Byte offset of the data section in the file.
    public let dataStart: Int

    let file: MappedFile
    private let infoIndex: [String: Int]

    public static let defaultAlignment = 32
    /// ggml's GGML_MAX_DIMS.
    static let maxDims = 4

    public convenience init(url: URL) throws { try self.init(path: url.path) }

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        var r = ByteReader(file: file)
        func failAt(_ location: String, _ message: String) -> FileError {
            FileError(file: path, location: location, message)
        }
        func fail(_ message: String) -> FileError { failAt("", message) }

        r.location = "header"
        try r.need(4, "the magic number")
        let magic = try r.bytes(4, "the magic number")
        guard Array(magic) == Array("GGUF".utf8) else {
            let shown = magic.map { (0x20..<0x7F).contains($0) ? String(UnicodeScalar($0)) : String(format: "\\x%02x", $0) }.joined()
            throw fail("bad magic '\(shown)': not a GGUF file (expected 'GGUF')")
        }
        let rawVersion = try r.read(UInt32.self, "the version")
        if rawVersion.byteSwapped == 2 || rawVersion.byteSwapped == 3 {
            throw fail("big-endian GGUF files are not supported")
        }
        guard rawVersion == 2 || rawVersion == 3 else {
            throw fail("GGUF version \(rawVersion) is not supported (versions 2 and 3 are)")
        }
        version = Int(rawVersion)
        let tensorCount = try r.read(UInt64.self, "the tensor count")
        let kvCount = try r.read(UInt64.self, "the metadata count")
        // Every metadata entry takes at least 8 + 4 + 1 bytes, every tensor info 8 + 4 + 4 + 8.
        guard kvCount <= UInt64(r.remaining / 13) else {
            throw fail("metadata count \(kvCount) is impossible for a file of \(file.size) bytes; the header is corrupt")
        }
        guard tensorCount <= UInt64(r.remaining / 24) else {
            throw fail("tensor count \(tensorCount) is impossible for a file of \(file.size) bytes; the header is corrupt")
        }

        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        keys.reserveCapacity(Int(kvCount))
        for i in 0..<Int(kvCount) {
            r.location = "metadata entry \(i)"
            let key = try Self.readString(&r, "a metadata key")
            r.location = key
            guard metadata[key] == nil else { throw failAt(key, "duplicate metadata key") }
            let type = try r.read(UInt32.self, "the value type")
            metadata[key] = try Self.readValue(&r, type: type, depth: 0)
            keys.append(key)
        }
        self.metadata = metadata
        metadataKeys = keys

        if let a = metadata["general.alignment"] {
            guard let n = a.int, n > 0, n & (n - 1) == 0, n <= 1 << 30 else {
                throw failAt("general.alignment", "must be a positive power of two, found \(a)")
            }
            alignment = n
        } else {
            alignment = Self.defaultAlignment
        }

        var infos: [GGUFTensorInfo] = []
        infos.reserveCapacity(Int(tensorCount))
        var index: [String: Int] = [:]
        for i in 0..<Int(tensorCount) {
            r.location = "tensor info \(i)"
            let name = try Self.readString(&r, "a tensor name")
            r.location = name
            guard index[name] == nil else { throw failAt(name, "duplicate tensor name") }
            let nDims = try r.read(UInt32.self, "the number of dimensions")
            guard nDims >= 1, nDims <= UInt32(Self.maxDims) else {
                throw failAt(name, "\(nDims) dimensions (ggml supports 1 to \(Self.maxDims))")
            }
            var dims: [Int] = []
            for _ in 0..<Int(nDims) {
                let d = try r.read(UInt64.self, "a dimension")
                guard d <= UInt64(Int32.max) else { throw failAt(name, "dimension \(d) is out of range") }
                dims.append(Int(d))
            }
            let type = GGMLType(rawValue: try r.read(UInt32.self, "the tensor type"))
            let offset64 = try r.read(UInt64.self, "the data offset")
            guard offset64 <= UInt64(file.size) else {
                throw failAt(name, "data offset \(offset64) lies past the end of the file (\(file.size) bytes); the file is truncated or corrupt")
            }
            let offset = Int(offset64)
            guard offset % alignment == 0 else {
                throw failAt(name, "data offset \(offset) is not a multiple of the alignment \(alignment)")
            }
            guard let count = checkedProduct(dims) else { throw failAt(name, "dimensions \(dims) overflow") }
            var byteCount: Int?
            if let bs = type.blockSize, let ts = type.typeSize {
                guard dims[0] % bs == 0 else {
                    throw failAt(name, "row length \(dims[0]) is not a multiple of the \(type.name) block size \(bs)")
                }
                let (b, o) = (count / bs).multipliedReportingOverflow(by: ts)
                guard !o else { throw failAt(name, "dimensions \(dims) overflow") }
                byteCount = b
            }
            index[name] = infos.count
            infos.append(GGUFTensorInfo(name: name, ggmlDimensions: dims, type: type, offset: offset, byteCount: byteCount))
        }
        r.location = ""
        guard let start = alignUp(r.offset, alignment) else { throw fail("data section offset overflows") }
        dataStart = start
        tensorInfos = infos
        infoIndex = index

        // Every tensor of a known type must lie within the file.
        for info in infos {
            guard let n = info.byteCount else { continue }
            let (end, o) = (dataStart + info.offset).addingReportingOverflow(n)
            guard !o, end <= file.size else {
                throw failAt(info.name, "data (\(n) bytes of \(info.type.name) at offset \(info.offset) of the data section) runs past the end of the file at byte \(file.size); the file is truncated")
            }
        }
    }

    // MARK: Metadata

    /// The metadata value of `key`, nil when absent.
    public subscript(key: String) -> GGUFValue? { metadata[key] }

    /// `general.architecture` ("llama", "qwen2", …).
    public var architecture: String? { metadata["general.architecture"]?.string }

    /// A required metadata value, or an error naming the key.
    public func value(_ key: String) throws -> GGUFValue {
        guard let v = metadata[key] else { throw FileError(file: path, location: key, "missing metadata key") }
        return v
    }

    /// An integer value; nil when absent, an error when of another type.
    public func int(_ key: String) throws -> Int? {
        guard let v = metadata[key] else { return nil }
        guard let i = v.int else { throw FileError(file: path, location: key, "expected an integer, found \(v.typeName)") }
        return i
    }

    /// A number (float or integer); nil when absent, an error when of another type.
    public func float(_ key: String) throws -> Float? {
        guard let v = metadata[key] else { return nil }
        guard let f = v.float else { throw FileError(file: path, location: key, "expected a number, found \(v.typeName)") }
        return f
    }

    public func bool(_ key: String) throws -> Bool? {
        guard let v = metadata[key] else { return nil }
        guard let b = v.bool else { throw FileError(file: path, location: key, "expected a bool, found \(v.typeName)") }
        return b
    }

    public func string(_ key: String) throws -> String? {
        guard let v = metadata[key] else { return nil }
        guard let s = v.string else { throw FileError(file: path, location: key, "expected a string, found \(v.typeName)") }
        return s
    }

    public func strings(_ key: String) throws -> [String]? {
        guard let v = metadata[key] else { return nil }
        guard let s = v.strings else { throw FileError(file: path, location: key, "expected an array of strings, found \(v.typeName)") }
        return s
    }

    public func ints(_ key: String) throws -> [Int]? {
        guard let v = metadata[key] else { return nil }
        guard let s = v.ints else { throw FileError(file: path, location: key, "expected an array of integers, found \(v.typeName)") }
        return s
    }

    public func floats(_ key: String) throws -> [Float]? {
        guard let v = metadata[key] else { return nil }
        guard let s = v.floats else { throw FileError(file: path, location: key, "expected an array of numbers, found \(v.typeName)") }
        return s
    }

    // MARK: Tensors

    /// Tensor names in file order.
    public var tensorNames: [String] { tensorInfos.map(\.name) }

    public func contains(_ name: String) -> Bool { infoIndex[name] != nil }

    /// The info of `name`, or an error naming a few tensors that exist.
    public func tensorInfo(named name: String) throws -> GGUFTensorInfo {
        guard let i = infoIndex[name] else {
            throw FileError(file: path, location: name,
                            "no such tensor; the file holds \(tensorInfos.count) tensors: \(someNames(tensorNames))")
        }
        return tensorInfos[i]
    }

    /// Calls `body` with the raw (quantized) bytes of `name`, valid only inside `body`.
    public func withRawBytes<R>(named name: String, _ body: (GGUFTensorInfo, UnsafeRawBufferPointer) throws -> R) throws -> R {
        let info = try tensorInfo(named: name)
        guard let n = info.byteCount else {
            throw FileError(file: path, location: name, "unknown tensor type \(info.type): its size is unknown")
        }
        return try withExtendedLifetime(file) {
            try body(info, file.bytes((dataStart + info.offset)..<(dataStart + info.offset + n)))
        }
    }

    /// The tensor `name` dequantized to Float32, in row-major shape (the ggml dimensions
    /// reversed). F32 data is shared with the mapping when aligned.
    public func tensor(named name: String) throws -> Tensor {
        let info = try tensorInfo(named: name)
        guard info.type.isDequantizable, let n = info.byteCount else {
            throw FileError(file: path, location: name,
                            "tensor type \(info.type) is not supported (supported: \(GGMLType.dequantizable.map(\.name).joined(separator: ", ")))")
        }
        let start = dataStart + info.offset
        let count = info.elementCount
        if info.type == .f32, let t = file.borrowedFloats(at: start, shape: info.shape, count: count) { return t }
        let out = Tensor(uninitializedShape: info.shape)
        if count > 0 {
            let src = file.bytes(start..<(start + n))
            GGUFQuantization.dequantize(info.type, src.baseAddress!, count: count, into: out.storage.pointer)
        }
        return out
    }

    // MARK: Parsing

    static func readString(_ r: inout ByteReader, _ what: String) throws -> String {
        let n = try r.read(UInt64.self, "the length of \(what)")
        guard n <= UInt64(r.remaining) else {
            throw r.error("\(what) of \(n) bytes runs past the end of the file (\(r.file.size) bytes); the file is truncated or corrupt")
        }
        let bytes = try r.bytes(Int(n), what)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Value types of gguf.md.
    static let typeNames = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool",
                            "string", "array", "uint64", "int64", "float64"]

    static func readValue(_ r: inout ByteReader, type: UInt32, depth: Int) throws -> GGUFValue {
        switch type {
        case 0: return .uint8(try r.read(UInt8.self, "a uint8 value"))
        case 1: return .int8(try r.read(Int8.self, "an int8 value"))
        case 2: return .uint16(try r.read(UInt16.self, "a uint16 value"))
        case 3: return .int16(try r.read(Int16.self, "an int16 value"))
        case 4: return .uint32(try r.read(UInt32.self, "a uint32 value"))
        case 5: return .int32(try r.read(Int32.self, "an int32 value"))
        case 6: return .float32(Float(bitPattern: try r.read(UInt32.self, "a float32 value")))
        case 7:
            return .bool(try r.read(UInt8.self, "a bool value") != 0)
        case 8: return .string(try readString(&r, "a string value"))
        case 9:
            guard depth < 8 else { throw r.error("arrays nested more than 8 deep") }
            let elementType = try r.read(UInt32.self, "the array element type")
            let count64 = try r.read(UInt64.self, "the array length")
            let minSize: Int
            switch elementType {
            case 0, 1, 7: minSize = 1
            case 2, 3: minSize = 2
            case 4, 5, 6: minSize = 4
            case 8, 10, 11, 12: minSize = 8
            case 9: minSize = 12
            default: throw r.error("unknown array element type \(elementType) (known: 0–12: \(typeNames.joined(separator: ", ")))")
            }
            guard count64 <= UInt64(r.remaining / minSize) else {
                throw r.error("array of \(count64) elements runs past the end of the file (\(r.file.size) bytes); the file is truncated or corrupt")
            }
            let count = Int(count64)
            var items: [GGUFValue] = []
            items.reserveCapacity(count)
            for _ in 0..<count { items.append(try readValue(&r, type: elementType, depth: depth + 1)) }
            return .array(items)
        case 10: return .uint64(try r.read(UInt64.self, "a uint64 value"))
        case 11: return .int64(try r.read(Int64.self, "an int64 value"))
        case 12: return .float64(Double(bitPattern: try r.read(UInt64.self, "a float64 value")))
        default:
            throw r.error("unknown value type \(type) (known: 0–12: \(typeNames.joined(separator: ", ")))")
        }
    }
}
