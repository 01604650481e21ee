import DistillTensor
import Foundation
import XCTest
@testable import DistillModels

/// Safetensors reading and writing, checked against files written by Python `safetensors`
/// (scripts/make_format_fixtures.py).
final class SafetensorsTests: XCTestCase {
    func testReadsF32F16BF16AsTorchConvertsThem() throws {
        let expected = try XCTUnwrap(jsonFixture("safetensors_expected.json")["tensors"] as? [String: [String: Any]])
        for suffix in ["f32", "f16", "bf16"] {
            let file = try SafetensorsFile(url: fixtureURL("formats", "st_\(suffix).safetensors"))
            XCTAssertEqual(file.metadata, ["format": "pt"])
            XCTAssertEqual(file.tensorNames, expected.keys.sorted())
            for (name, e) in expected {
                let t = try file.tensor(named: name)
                XCTAssertEqual(t.shape, (e["shape"] as? [Int]) ?? [-1], "\(suffix) \(name)")
                XCTAssertEqual(bitPatterns(t), uint32s(e[suffix]), "\(suffix) \(name)")
                XCTAssertEqual(try file.info(named: name).dtype.rawValue, suffix.uppercased())
            }
        }
    }

    func testF32TensorsBorrowTheMapping() throws {
        let file = try SafetensorsFile(url: fixtureURL("formats", "st_f32.safetensors"))
        let t = try file.tensor(named: "a.weight")
        let base = UInt(bitPattern: file.file.base!), p = UInt(bitPattern: t.storage.pointer)
        XCTAssertTrue(p >= base && p < base + UInt(file.file.size), "F32 data should be read in place")
        // The tensor keeps the mapping alive after the file object is gone.
        let values = t.scalars
        var weak: SafetensorsFile? = try SafetensorsFile(url: fixtureURL("formats", "st_f32.safetensors"))
        let t2 = try weak!.tensor(named: "a.weight")
        weak = nil
        XCTAssertEqual(t2.scalars, values)
    }

    /// F32 data at an offset that is not a multiple of 4 (after 3 bytes of U8) is copied.
    func testUnalignedF32IsCopied() throws {
        let header = #"{"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"b":{"dtype":"F32","shape":[2],"data_offsets":[3,11]}}"#
        var bytes = GGUFBuilder.le(UInt64(header.utf8.count)) + Array(header.utf8) + [7, 8, 9]
        bytes += GGUFBuilder.le(Float(1.5).bitPattern) + GGUFBuilder.le(Float(-2).bitPattern)
        let url = try temporaryDirectory(self).appendingPathComponent("unaligned.safetensors")
        try Data(bytes).write(to: url)
        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(try file.tensor(named: "b").scalars, [1.5, -2])
        XCTAssertEqual(try file.withRawBytes(named: "a") { Array($0) }, [7, 8, 9])
    }

    func testMixedDTypesAndMetadata() throws {
        let file = try SafetensorsFile(url: fixtureURL("formats", "st_mixed.safetensors"))
        XCTAssertEqual(file.metadata, ["format": "pt", "note": "mixed \"dtypes\"\n", "empty": ""])
        XCTAssertEqual(try file.info(named: "m.f64").dtype, .f64)
        XCTAssertEqual(try file.info(named: "m.i64").dtype, .i64)
        XCTAssertEqual(try file.info(named: "m.u8").shape, [5])
        let expected = try XCTUnwrap(jsonFixture("safetensors_expected.json")["mixed"] as? [String: [String: Any]])
        XCTAssertEqual(Set(expected.keys), ["m.f32", "m.f16", "m.bf16", "m.f64"])
        for (name, e) in expected {
            let t = try file.tensor(named: name)
            XCTAssertEqual(t.shape, e["shape"] as? [Int], name)
            XCTAssertEqual(bitPatterns(t), uint32s(e["bits"]), name)   // F64 rounds to nearest Float32
        }
        assertFileError([file.path, "m.i64", "I64", "cannot be loaded"]) { _ = try file.tensor(named: "m.i64") }
        // Raw bytes stay available: I64 [1, 2, 3] little-endian.
        let ints = try file.withRawBytes(named: "m.i64") { raw in (0..<3).map { raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self) } }
        XCTAssertEqual(ints, [1, 2, 3])
    }

    func testMissingTensorNamesSomeThatExist() throws {
        let file = try SafetensorsFile(url: fixtureURL("formats", "st_f32.safetensors"))
        assertFileError([file.path, "model.nope", "no such tensor", "a.weight", "b.bias"]) { _ = try file.tensor(named: "model.nope") }
    }

    /// Distill's writer produces the same bytes as `safetensors.torch.save_file` (same order,
    /// header, padding, and F32 → F16/BF16 rounding).
    func testWriterReproducesReferenceFilesByteForByte() throws {
        let source = try SafetensorsFile(url: fixtureURL("formats", "st_f32.safetensors"))
        var tensors: [String: Tensor] = [:]
        for name in source.tensorNames { tensors[name] = try source.tensor(named: name) }
        let dir = try temporaryDirectory(self)
        for (dtype, suffix) in [(SafetensorsWriter.StoredType.f32, "f32"), (.f16, "f16"), (.bf16, "bf16")] {
            let out = dir.appendingPathComponent("out_\(suffix).safetensors")
            try SafetensorsWriter.write(tensors, to: out, dtype: dtype)
            let mine = try Data(contentsOf: out)
            let reference = try Data(contentsOf: fixtureURL("formats", "st_\(suffix).safetensors"))
            XCTAssertEqual(mine, reference, "\(suffix) file differs from safetensors.torch.save_file")
        }
    }

    func testRoundTripsF32F16BF16() throws {
        var rng = TestRNG(seed: 7)
        let tensors: [String: Tensor] = [
            "w": Tensor((0..<60).map { _ in rng.normal() * 3 }, shape: [4, 15]),
            "v": Tensor((0..<7).map { _ in rng.normal() * 1e-6 }, shape: [7]),
            "s": Tensor(scalar: -0.0),
            "z": Tensor(zeros: [0, 3]),
        ]
        let metadata = ["format": "pt", "odd \"key\"\n": "tab\there \u{01} ☃"]
        let dir = try temporaryDirectory(self)
        for dtype in [SafetensorsWriter.StoredType.f32, .f16, .bf16] {
            let path = dir.appendingPathComponent("rt.safetensors").path
            try SafetensorsWriter.write(tensors, metadata: metadata, to: path, dtype: dtype)
            let file = try SafetensorsFile(path: path)
            XCTAssertEqual(file.metadata, metadata)
            XCTAssertEqual(file.tensorNames, ["s", "v", "w", "z"])
            XCTAssertEqual((try Data(contentsOf: URL(fileURLWithPath: path)).count - 8) % 8, 0)
            XCTAssertEqual(file.dataStart % 8, 0, "header padded to 8 bytes")
            for (name, t) in tensors {
                let back = try file.tensor(named: name)
                XCTAssertEqual(back.shape, t.shape)
                // The stored value is the input rounded to the format, nearest-even.
                let want: [Float]
                switch dtype {
                case .f32: want = t.scalars
                case .f16: want = t.scalars.map { HalfPrecision.float(fromHalf: HalfPrecision.half(from: $0)) }
                case .bf16: want = t.scalars.map { HalfPrecision.float(fromBFloat16: HalfPrecision.bfloat16(from: $0)) }
                }
                XCTAssertEqual(bitPatterns(back), bitPatterns(want), "\(dtype) \(name)")
            }
        }
        // No temporary files are left behind; writing again replaces the file.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["rt.safetensors"])
    }

    func testShardedCheckpointFromIndex() throws {
        let expected = try XCTUnwrap(jsonFixture("safetensors_expected.json")["sharded"] as? [String: Any])
        let ckpt = try ShardedSafetensors(url: fixtureURL("formats", "sharded"))
        let map = try XCTUnwrap(expected["weight_map"] as? [String: String])
        XCTAssertEqual(ckpt.weightMap, map)
        XCTAssertEqual(ckpt.shards.count, 5)
        XCTAssertEqual((ckpt.indexMetadata["total_size"] as? NSNumber)?.intValue, expected["total_size"] as? Int)
        let tensors = try XCTUnwrap(expected["tensors"] as? [String: [String: Any]])
        XCTAssertEqual(ckpt.tensorNames, tensors.keys.sorted())
        for (name, e) in tensors {
            let t = try ckpt.tensor(named: name)
            XCTAssertEqual(t.shape, e["shape"] as? [Int])
            XCTAssertEqual(bitPatterns(t), uint32s(e["bits"]), name)
            XCTAssertEqual(try ckpt.shard(holding: name).path.hasSuffix(map[name]!), true)
        }
        assertFileError(["no such tensor", "big"]) { _ = try ckpt.tensor(named: "lm_head.weight") }
    }

    /// The sharded writer plans shards as huggingface_hub does and writes the same files and
    /// index as `save_file` + `json.dumps(index, indent=2, sort_keys=True)`.
    func testShardedWriterMatchesHuggingFace() throws {
        let expected = try XCTUnwrap(jsonFixture("safetensors_expected.json")["sharded"] as? [String: Any])
        let reference = try ShardedSafetensors(url: fixtureURL("formats", "sharded"))
        var tensors: [String: Tensor] = [:]
        for name in reference.tensorNames { tensors[name] = try reference.tensor(named: name) }
        let dir = try temporaryDirectory(self)
        let files = try SafetensorsWriter.writeSharded(tensors, to: dir.path, maxShardSize: try XCTUnwrap(expected["max_shard_size"] as? Int))
        XCTAssertEqual(files.count, 6)
        for f in files {
            let mine = try Data(contentsOf: dir.appendingPathComponent(f))
            let theirs = try Data(contentsOf: fixtureURL("formats", "sharded").appendingPathComponent(f))
            XCTAssertEqual(mine, theirs, f)
        }
        let back = try ShardedSafetensors(directory: dir.path)
        XCTAssertEqual(back.weightMap, reference.weightMap)
    }

    func testSingleShardIsModelSafetensors() throws {
        let dir = try temporaryDirectory(self)
        let tensors = ["a": Tensor([1, 2, 3]), "b": Tensor([4, 5], shape: [1, 2])]
        XCTAssertEqual(try SafetensorsWriter.writeSharded(tensors, to: dir.path, dtype: .bf16), ["model.safetensors"])
        let ckpt = try ShardedSafetensors(directory: dir.path)
        XCTAssertEqual(ckpt.tensorNames, ["a", "b"])
        XCTAssertEqual(try ckpt.tensor(named: "b").scalars, [4, 5])
        XCTAssertEqual(try ckpt.info(named: "b").dtype, .bf16)
        assertFileError([dir.path, "no model.safetensors.index.json or model.safetensors"]) {
            _ = try ShardedSafetensors(directory: dir.appendingPathComponent("missing").path)
        }
    }

    /// With DISTILL_FORMATS_EXPORT=<dir>, writes files for a check in Python:
    ///   python3 -c "from safetensors.torch import load_file; print(load_file('<dir>/w_bf16.safetensors'))"
    func testExportForPythonCheck() throws {
        guard let dir = ProcessInfo.processInfo.environment["DISTILL_FORMATS_EXPORT"] else {
            throw XCTSkip("set DISTILL_FORMATS_EXPORT to a directory to write files for a Python check")
        }
        let tensors: [String: Tensor] = [
            "model.embed_tokens.weight": Tensor((0..<12).map { Float($0) * 0.25 - 1 }, shape: [3, 4]),
            "model.norm.weight": Tensor([1, -2, 3.5, 1e-3]),
        ]
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (dtype, suffix) in [(SafetensorsWriter.StoredType.f32, "f32"), (.f16, "f16"), (.bf16, "bf16")] {
            try SafetensorsWriter.write(tensors, metadata: ["format": "pt", "writer": "distill"],
                                        to: "\(dir)/w_\(suffix).safetensors", dtype: dtype)
        }
        try SafetensorsWriter.writeSharded(tensors, to: "\(dir)/sharded", maxShardSize: 20)
    }

    func testShardPlanEdgeCases() {
        // sizes 6, 6, 2, 6, 2, 2 with limit 10 → [6], [6, 2], [6, 2, 2]; an oversize tensor stands alone.
        let plan = SafetensorsWriter.shardPlan([("a", 6), ("b", 6), ("c", 2), ("d", 6), ("e", 2), ("f", 2)], maxShardSize: 10)
        XCTAssertEqual(plan, [["a"], ["b", "c"], ["d", "e", "f"]])
        XCTAssertEqual(SafetensorsWriter.shardPlan([("a", 3), ("huge", 50), ("b", 3)], maxShardSize: 10), [["huge"], ["a", "b"]])
    }
}
