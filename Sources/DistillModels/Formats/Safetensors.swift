import DistillTensor
import Foundation

// The safetensors format (https://github.com/huggingface/safetensors):
//
//   u64 little-endian N | N bytes of JSON header | data area
//
// The header maps each tensor name to {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
// (offsets relative to the start of the data area), plus an optional "__metadata__" object of
// string → string. Tensors are stored row-major, little-endian.

/// Element types of safetensors files.
public enum SafetensorsDType: String, CaseIterable, Sendable {
    case bool = "BOOL"
    case u8 = "U8", i8 = "I8", u16 = "U16", i16 = "I16", u32 = "U32", i32 = "I32", u64 = "U64", i64 = "I64"
    case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"
    case f16 = "F16", bf16 = "BF16", f32 = "F32", f64 = "F64"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .bool, .u8, .i8, .f8e4m3, .f8e5m2: return 1
        case .u16, .i16, .f16, .bf16: return 2
        case .u32, .i32, .f32: return 4
        case .u64, .i64, .f64: return 8
        }
    }

    /// Whether `SafetensorsFile.tensor(named:)` converts this type to Float32.
    public var isFloatConvertible: Bool { [.f16, .bf16, .f32, .f64].contains(self) }
}

/// One tensor's entry in a safetensors header.
public struct SafetensorsTensorInfo: Equatable, Sendable {
    public var name: String
    public var dtype: SafetensorsDType
    /// Row-major shape.
    public var shape: [Int]
    /// Byte range relative to the start of the data area.
    public var dataOffsets: Range<Int>

    public var elementCount: Int { shape.reduce(1, *) }
}

/// A memory-mapped safetensors file. Opening reads and validates the header; tensors are read
/// on demand. Float32 tensors are returned without copying when their data is aligned (they keep
/// the mapping alive); F16, BF16 and F64 are converted.
public final class SafetensorsFile: @unchecked Sendable {
    public let path: String
    /// The "__metadata__" object (empty when absent).
    public let metadata: [String: String]
    /// Every tensor's entry, by name.
    public let tensorInfos: [String: SafetensorsTensorInfo]
    /// Tensor names, sorted.
    public let tensorNames: [String]
    /// Byte offset of the data area in the file (8 + header length).
    public let dataStart: Int

    let file: MappedFile

    /// The reference implementation refuses headers above 100 MB.
    static let maxHeaderBytes = 100_000_000

    public convenience init(url: URL) throws { try self.init(path: url.path) }

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        func failAt(_ location: String, _ message: String) -> FileError {
            FileError(file: path, location: location, message)
        }
        func fail(_ message: String) -> FileError { failAt("", message) }
        var reader = ByteReader(file: file)
        guard file.size >= 8 else {
            throw fail("file is \(file.size) bytes, too short for the 8-byte header length of a safetensors file")
        }
        let headerLength64 = try reader.read(UInt64.self, "header length")
        guard headerLength64 <= UInt64(file.size - 8) else {
            throw fail("header length \(headerLength64) runs past the end of the file (\(file.size) bytes); the file is truncated or not a safetensors file")
        }
        let headerLength = Int(headerLength64)
        guard headerLength <= Self.maxHeaderBytes else {
            throw fail("header length \(headerLength) exceeds the 100 MB limit of the format")
        }
        dataStart = 8 + headerLength
        let headerBytes = try reader.bytes(headerLength, "JSON header")
        guard headerBytes.first == UInt8(ascii: "{") else {
            throw fail("header does not start with '{'; not a safetensors file")
        }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(headerBytes), options: [])
        } catch {
            throw fail("malformed JSON header: \(error.localizedDescription)")
        }
        guard let header = json as? [String: Any] else { throw fail("JSON header is not an object") }

        var metadata: [String: String] = [:]
        if let m = header["__metadata__"], !(m is NSNull) {
            guard let dict = m as? [String: Any] else {
                throw failAt("__metadata__", "expected an object of strings")
            }
            for (k, v) in dict {
                guard let s = v as? String else { throw failAt("__metadata__.\(k)", "expected a string value, found \(v)") }
                metadata[k] = s
            }
        }
        self.metadata = metadata

        let dataSize = file.size - dataStart
        var infos: [String: SafetensorsTensorInfo] = [:]
        for name in header.keys.sorted() where name != "__metadata__" {   // sorted: errors are reproducible
            let entry = header[name]!
            guard let e = entry as? [String: Any] else { throw failAt(name, "expected an object with dtype, shape and data_offsets") }
            guard let dtypeName = e["dtype"] as? String else { throw failAt(name, "missing or non-string \"dtype\"") }
            guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
                throw failAt(name, "unknown dtype '\(dtypeName)' (known: \(SafetensorsDType.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            guard let shape = jsonInts(e["shape"]) else { throw failAt(name, "\"shape\" must be a list of non-negative integers") }
            guard let offsets = jsonInts(e["data_offsets"]), offsets.count == 2 else {
                throw failAt(name, "\"data_offsets\" must be a list of two non-negative integers")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin <= end, end <= dataSize else {
                throw failAt(name, "data_offsets [\(begin), \(end)] lie outside the data area of \(dataSize) bytes (the file is truncated or the header is corrupt)")
            }
            let needed = checkedProduct(shape).flatMap { n -> Int? in
                let (b, o) = n.multipliedReportingOverflow(by: dtype.byteSize)
                return o ? nil : b
            }
            guard needed == end - begin else {
                throw failAt(name, "data_offsets [\(begin), \(end)] hold \(end - begin) bytes but shape \(shape) of \(dtype.rawValue) needs \(needed.map(String.init) ?? "more than Int.max")")
            }
            infos[name] = SafetensorsTensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end)
        }
        tensorInfos = infos
        tensorNames = infos.keys.sorted()
    }

    public func contains(_ name: String) -> Bool { tensorInfos[name] != nil }

    /// The header entry of `name`, or an error naming a few tensors that do exist.
    public func info(named name: String) throws -> SafetensorsTensorInfo {
        guard let info = tensorInfos[name] else {
            throw FileError(file: path, location: name,
                            "no such tensor; the file holds \(tensorNames.count) tensors: \(someNames(tensorNames))")
        }
        return info
    }

    /// Calls `body` with the raw little-endian bytes of `name` (valid only inside `body`).
    public func withRawBytes<R>(named name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let info = try info(named: name)
        return try withExtendedLifetime(file) {
            try body(file.bytes((dataStart + info.dataOffsets.lowerBound)..<(dataStart + info.dataOffsets.upperBound)))
        }
    }

    /// The tensor `name` as Float32 in its row-major shape. F32 data is shared with the mapping
    /// when aligned; F16, BF16 and F64 are converted (F64 rounds to nearest).
    public func tensor(named name: String) throws -> Tensor {
        let info = try info(named: name)
        let count = info.elementCount
        let offset = dataStart + info.dataOffsets.lowerBound
        let src = file.bytes(offset..<(dataStart + info.dataOffsets.upperBound))
        switch info.dtype {
        case .f32:
            if let t = file.borrowedFloats(at: offset, shape: info.shape, count: count) { return t }
            fallthrough   // unaligned (or big-endian host): convert
        case .f16, .bf16, .f64:
            let out = Tensor(uninitializedShape: info.shape)
            if count > 0 { convertToFloat(src.baseAddress!, dtype: info.dtype, count: count, into: out.storage.pointer) }
            return out
        default:
            throw FileError(file: path, location: name,
                            "dtype \(info.dtype.rawValue) cannot be loaded as a Float32 tensor (supported: F32, F16, BF16, F64)")
        }
    }
}

/// A JSON list of non-negative integers (NSNumbers that are whole, not booleans).
func jsonInts(_ value: Any?) -> [Int]? {
    guard let list = value as? [Any] else { return nil }
    var out: [Int] = []
    out.reserveCapacity(list.count)
    for v in list {
        guard let n = v as? NSNumber, String(cString: n.objCType) != "c" else { return nil }
        let d = n.doubleValue
        guard d >= 0, d == d.rounded(), d < 9.0e15 else { return nil }
        out.append(n.intValue)
    }
    return out
}

/// Converts `count` little-endian F16/BF16/F64 (or F32) values at `src` to Float32.
func convertToFloat(_ src: UnsafeRawPointer, dtype: SafetensorsDType, count: Int, into dst: UnsafeMutablePointer<Float>) {
    parallelFor(count, grain: 1 << 16) { range in
        switch dtype {
        case .f16:
            for i in range { dst[i] = HalfPrecision.float(fromHalf: UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .bf16:
            for i in range { dst[i] = HalfPrecision.float(fromBFloat16: UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .f64:
            for i in range { dst[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
        case .f32:
            for i in range { dst[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        default:
            preconditionFailure("convertToFloat: \(dtype.rawValue) is not a float type")
        }
    }
}
