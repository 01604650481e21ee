import DistillTensor
import Foundation
import XCTest
@testable import DistillModels

/// GGUF parsing and dequantization, checked against gguf-py (scripts/make_format_fixtures.py).
final class GGUFTests: XCTestCase {
    func testMetadataOfEveryValueType() throws {
        let f = try GGUFFile(url: fixtureURL("formats", "quants.gguf"))
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.alignment, 32)
        XCTAssertEqual(f.dataStart % 32, 0)
        XCTAssertEqual(f.architecture, "test")
        XCTAssertEqual(f.metadataKeys.first, "general.architecture")
        XCTAssertEqual(f["general.name"], .string("format fixture"))
        XCTAssertEqual(f["test.u8"], .uint8(200))
        XCTAssertEqual(f["test.i8"], .int8(-100))
        XCTAssertEqual(f["test.u16"], .uint16(60000))
        XCTAssertEqual(f["test.i16"], .int16(-30000))
        XCTAssertEqual(f["test.u32"], .uint32(4_000_000_000))
        XCTAssertEqual(f["test.i32"], .int32(-2_000_000_000))
        XCTAssertEqual(f["test.u64"], .uint64(1 << 63 + 5))
        XCTAssertEqual(f["test.i64"], .int64(-(1 << 62)))
        XCTAssertEqual(f["test.f32"], .float32(0.1))
        XCTAssertEqual(f["test.f64"], .float64(1e-300))
        XCTAssertEqual(f["test.bool"], .bool(true))
        XCTAssertEqual(f["test.string"], .string("héllo, ☃"))
        XCTAssertEqual(f["test.strings"]?.strings, ["a", "", "ünï", "<|im_start|>"])
        XCTAssertEqual(f["test.ints"]?.ints, [1, -2, 3])
        XCTAssertEqual(f["test.floats"]?.floats, [0.5, -1.25, 3.0])
        XCTAssertEqual(f["test.nested"], .array([.array([.int32(1), .int32(2)]), .array([.int32(3)])]))
        XCTAssertEqual(f["test.nested"]?.typeName, "array[array[int32]]")

        // Typed accessors: integers of any width, numbers, and clear errors for the wrong type.
        XCTAssertEqual(try f.int("test.u32"), 4_000_000_000)
        XCTAssertNil(f["test.u64"]?.int)   // 2^63 + 5 does not fit Int
        XCTAssertEqual(try f.float("test.i16"), -30000)
        XCTAssertEqual(try f.strings("test.strings")?.count, 4)
        XCTAssertNil(try f.int("no.such.key"))
        assertFileError([f.path, "test.string", "expected an integer", "string"]) { _ = try f.int("test.string") }
        assertFileError([f.path, "test.ints", "expected an array of strings"]) { _ = try f.strings("test.ints") }
        assertFileError([f.path, "missing.key", "missing metadata key"]) { _ = try f.value("missing.key") }
    }

    func testTensorInfosReverseGGMLDimensions() throws {
        let f = try GGUFFile(url: fixtureURL("formats", "quants.gguf"))
        let info = try f.tensorInfo(named: "q.q8_0_3d")
        XCTAssertEqual(info.ggmlDimensions, [32, 3, 2])   // ggml: row length first
        XCTAssertEqual(info.shape, [2, 3, 32])            // row-major, as HF
        XCTAssertEqual(info.type, .q8_0)
        XCTAssertEqual(info.byteCount, 6 * 34)            // six blocks of (f16 d + 32 int8)
        XCTAssertEqual(try f.tensorInfo(named: "k.q6_k").byteCount, 4 * 210)
        for i in f.tensorInfos { XCTAssertEqual(i.offset % f.alignment, 0, i.name) }
    }

    /// Every type Distill dequantizes equals gguf-py's `gguf.quants.dequantize`, bit for bit
    /// (Q-types quantized by gguf-py from random data; K-quants are random super-blocks).
    func testDequantizationMatchesGGUFPy() throws {
        let expected = try XCTUnwrap(jsonFixture("quants_expected.json")["tensors"] as? [String: [String: Any]])
        XCTAssertEqual(Set(expected.values.compactMap { $0["type"] as? String }),
                       ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"])
        for fixture in ["quants.gguf", "quants_v2.gguf"] {
            let f = try GGUFFile(url: fixtureURL("formats", fixture))
            XCTAssertEqual(f.tensorNames.sorted(), expected.keys.sorted())
            for (name, e) in expected {
                let info = try f.tensorInfo(named: name)
                XCTAssertEqual(info.type.name, e["type"] as? String, name)
                let t = try f.tensor(named: name)
                XCTAssertEqual(t.shape, e["shape"] as? [Int], name)
                XCTAssertEqual(bitPatterns(t), bitPatterns(floatsFromBase64(e["values"] as! String)), "\(fixture): \(name) (\(info.type.name))")
            }
        }
        XCTAssertEqual(try GGUFFile(url: fixtureURL("formats", "quants_v2.gguf")).version, 2)
    }

    /// One hand-made block per simple format, so the layouts are visible.
    func testBlockLayoutsByHand() throws {
        // Q4_0: d = 1.0 (f16 0x3C00); byte j = j | (15 - j) << 4.
        //   y[j] = (j - 8)·d for the low nibbles, y[j + 16] = ((15 - j) - 8)·d = 7 - j for the high.
        var q4_0: [UInt8] = [0x00, 0x3C]
        for j in 0..<16 { q4_0.append(UInt8(j | (15 - j) << 4)) }
        let y0 = try GGUFQuantization.dequantize(q4_0, type: .q4_0, count: 32)
        XCTAssertEqual(Array(y0[0..<16]), (0..<16).map { Float($0 - 8) })
        XCTAssertEqual(Array(y0[16..<32]), (0..<16).map { Float(7 - $0) })

        // Q4_1: d = 0.5 (0x3800), m = -1 (0xBC00); y = nibble·0.5 - 1.
        var q4_1: [UInt8] = [0x00, 0x38, 0x00, 0xBC]
        for j in 0..<16 { q4_1.append(UInt8(j | (15 - j) << 4)) }
        let y1 = try GGUFQuantization.dequantize(q4_1, type: .q4_1, count: 32)
        XCTAssertEqual(Array(y1[0..<16]), (0..<16).map { Float($0) * 0.5 - 1 })
        XCTAssertEqual(Array(y1[16..<32]), (0..<16).map { Float(15 - $0) * 0.5 - 1 })

        // Q8_0: d = 2.0 (0x4000); int8 q[j] = j - 16; y = 2·(j - 16).
        let q8: [UInt8] = [0x00, 0x40] + (0..<32).map { UInt8(bitPattern: Int8($0 - 16)) }
        XCTAssertEqual(try GGUFQuantization.dequantize(q8, type: .q8_0, count: 32), (0..<32).map { Float(2 * ($0 - 16)) })

        // Q6_K: all 6-bit values 32 + 1 (ql nibbles 1, qh bits 2 → 0b10_0001 = 33), scales 1…16,
        // d = 1 → value of element e is scale[e / 16]·(33 - 32) = e / 16 + 1.
        var q6 = [UInt8](repeating: 0x11, count: 128) + [UInt8](repeating: 0b1010_1010, count: 64)
        q6 += (1...16).map { UInt8($0) } + [0x00, 0x3C]
        XCTAssertEqual(try GGUFQuantization.dequantize(q6, type: .q6_K, count: 256), (0..<256).map { Float($0 / 16 + 1) })

        assertFileError(["cannot dequantize", "IQ2_XXS"]) { _ = try GGUFQuantization.dequantize([], type: GGMLType(rawValue: 16), count: 0) }
        assertFileError(["not 64 values of Q8_0"]) { _ = try GGUFQuantization.dequantize(q8, type: .q8_0, count: 64) }
    }

    func testTypeNames() {
        XCTAssertEqual(GGMLType.q4_K.name, "Q4_K")
        XCTAssertEqual(GGMLType.q6_K.description, "Q6_K (14)")
        XCTAssertEqual(GGMLType(rawValue: 99).name, "type 99")
        XCTAssertEqual(GGMLType.bf16.typeSize, 2)
        XCTAssertEqual(GGMLType.q5_K.blockSize, 256)
        XCTAssertNil(GGMLType(rawValue: 99).blockSize)
    }

    func testF32TensorsBorrowTheMapping() throws {
        let f = try GGUFFile(url: fixtureURL("formats", "quants.gguf"))
        let t = try f.tensor(named: "plain.f32")
        let base = UInt(bitPattern: f.file.base!), p = UInt(bitPattern: t.storage.pointer)
        XCTAssertTrue(p >= base && p < base + UInt(f.file.size))
    }

    func testRawBytes() throws {
        let f = try GGUFFile(url: fixtureURL("formats", "quants.gguf"))
        let n = try f.withRawBytes(named: "q.q4_1") { info, raw -> Int in
            XCTAssertEqual(info.type, .q4_1)
            return raw.count
        }
        XCTAssertEqual(n, 2 * 2 * 20)   // 2 rows × 2 blocks × 20 bytes
    }

    func testMissingTensorNamesSomeThatExist() throws {
        let f = try GGUFFile(url: fixtureURL("formats", "quants.gguf"))
        assertFileError([f.path, "blk.0.nope", "no such tensor", "plain.f32"]) { _ = try f.tensor(named: "blk.0.nope") }
    }

    func testCustomAlignment() throws {
        let f = try GGUFFile(url: fixtureURL("formats", "tiny_llama.gguf"))
        XCTAssertEqual(f.alignment, 64)
        XCTAssertEqual(f.dataStart % 64, 0)
    }
}
