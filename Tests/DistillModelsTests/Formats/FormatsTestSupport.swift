import DistillTensor
import Foundation
import XCTest
@testable import DistillModels

/// Float32 values from base64 of little-endian bytes (as the fixture scripts write them).
func floatsFromBase64(_ s: String, file: StaticString = #filePath, line: UInt = #line) -> [Float] {
    guard let data = Data(base64Encoded: s) else {
        XCTFail("bad base64 in fixture", file: file, line: line)
        return []
    }
    return data.withUnsafeBytes { raw in
        (0..<(raw.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
    }
}

/// Bit patterns of a tensor's values (exact comparisons that also tell -0 from 0).
func bitPatterns(_ t: Tensor) -> [UInt32] { t.scalars.map(\.bitPattern) }
func bitPatterns(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }

/// A JSON fixture as a dictionary.
func jsonFixture(_ name: String) throws -> [String: Any] {
    let data = try Data(contentsOf: fixtureURL("formats", name))
    return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
}

/// Integers of a JSON list (bit patterns in fixtures).
func uint32s(_ v: Any?) -> [UInt32] { ((v as? [NSNumber]) ?? []).map { $0.uint32Value } }

/// A fresh empty directory, removed when the test ends.
func temporaryDirectory(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("distill-formats-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// Runs `body`, which must throw a FileError whose description contains every string of
/// `fragments`; returns the error.
@discardableResult
func assertFileError(_ fragments: [String], file: StaticString = #filePath, line: UInt = #line,
                     _ body: () throws -> Void) -> FileError? {
    do {
        try body()
        XCTFail("expected a FileError containing \(fragments)", file: file, line: line)
    } catch let e as FileError {
        for f in fragments where !e.description.contains(f) {
            XCTFail("error '\(e.description)' does not mention '\(f)'", file: file, line: line)
        }
        return e
    } catch {
        XCTFail("expected a FileError, got \(type(of: error)): \(error)", file: file, line: line)
    }
    return nil
}

/// Builds GGUF files byte by byte, for tests of malformed input.
struct GGUFBuilder {
    var magic: [UInt8] = Array("GGUF".utf8)
    var version: UInt32 = 3
    var kvs: [[UInt8]] = []
    var kvCountOverride: UInt64?
    var tensorInfos: [[UInt8]] = []
    var tensorCountOverride: UInt64?
    var data: [UInt8] = []
    var alignment = 32

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func str(_ s: String) -> [UInt8] { le(UInt64(s.utf8.count)) + Array(s.utf8) }

    mutating func kv(_ key: String, type: UInt32, _ payload: [UInt8]) {
        kvs.append(Self.str(key) + Self.le(type) + payload)
    }
    mutating func string(_ key: String, _ value: String) { kv(key, type: 8, Self.str(value)) }
    mutating func uint32(_ key: String, _ value: UInt32) { kv(key, type: 4, Self.le(value)) }

    /// Adds a tensor whose data is `bytes`, placed at the next aligned offset.
    mutating func tensor(_ name: String, ggmlDims: [UInt64], type: UInt32, bytes: [UInt8], offset: UInt64? = nil) {
        while data.count % alignment != 0 { data.append(0) }
        let off = offset ?? UInt64(data.count)
        var info = Self.str(name) + Self.le(UInt32(ggmlDims.count))
        for d in ggmlDims { info += Self.le(d) }
        info += Self.le(type) + Self.le(off)
        tensorInfos.append(info)
        data += bytes
    }

    func bytes() -> [UInt8] {
        var out = magic + Self.le(version)
        out += Self.le(tensorCountOverride ?? UInt64(tensorInfos.count))
        out += Self.le(kvCountOverride ?? UInt64(kvs.count))
        for k in kvs { out += k }
        for t in tensorInfos { out += t }
        while out.count % alignment != 0 { out.append(0) }
        return out + data
    }

    func write(to url: URL) throws {
        try Data(bytes()).write(to: url)
    }
}

/// Opens a GGUF file and dequantizes every tensor; any failure must be a FileError.
func openAndLoadEverything(gguf path: String) -> Result<Int, Error> {
    do {
        let f = try GGUFFile(path: path)
        var n = 0
        for info in f.tensorInfos {
            do { n += try f.tensor(named: info.name).count } catch let e as FileError { _ = e }
        }
        return .success(n)
    } catch {
        return .failure(error)
    }
}

/// Opens a safetensors file and loads every tensor; any failure must be a FileError.
func openAndLoadEverything(safetensors path: String) -> Result<Int, Error> {
    do {
        let f = try SafetensorsFile(path: path)
        var n = 0
        for name in f.tensorNames {
            do { n += try f.tensor(named: name).count } catch let e as FileError { _ = e }
        }
        return .success(n)
    } catch {
        return .failure(error)
    }
}
