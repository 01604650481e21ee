import DistillTensor
import Foundation
import XCTest
@testable import DistillModels

/// Damaged files give a FileError naming the file and the tensor or key, never a crash.
final class CorruptFileTests: XCTestCase {
    // MARK: safetensors

    /// A safetensors file from a header string and data bytes.
    func safetensors(_ header: String, data: [UInt8] = [], lengthOverride: UInt64? = nil) throws -> String {
        let dir = try temporaryDirectory(self)
        let url = dir.appendingPathComponent("bad.safetensors")
        let h = Array(header.utf8)
        var bytes = GGUFBuilder.le(lengthOverride ?? UInt64(h.count)) + h
        bytes += data
        try Data(bytes).write(to: url)
        return url.path
    }

    func testSafetensorsTooShort() throws {
        let path = try safetensors("", lengthOverride: 0)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        assertFileError([path, "too short"]) { _ = try SafetensorsFile(path: path) }
        try Data().write(to: URL(fileURLWithPath: path))
        assertFileError([path, "too short"]) { _ = try SafetensorsFile(path: path) }
    }

    func testSafetensorsHeaderLengthPastEnd() throws {
        let path = try safetensors("{}", lengthOverride: 1_000)
        assertFileError([path, "header length 1000 runs past the end"]) { _ = try SafetensorsFile(path: path) }
        let huge = try safetensors("{}", lengthOverride: UInt64.max)
        assertFileError([huge, "runs past the end"]) { _ = try SafetensorsFile(path: huge) }
    }

    func testSafetensorsMalformedJSON() throws {
        let path = try safetensors(#"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]"#, data: [0, 0, 0, 0])
        assertFileError([path, "malformed JSON header"]) { _ = try SafetensorsFile(path: path) }
        let notJSON = try safetensors("GGUF....")
        assertFileError([notJSON, "not a safetensors file"]) { _ = try SafetensorsFile(path: notJSON) }
        let array = try safetensors("[1, 2]")
        assertFileError([array, "not a safetensors file"]) { _ = try SafetensorsFile(path: array) }
    }

    func testSafetensorsOffsetsOutOfRange() throws {
        let path = try safetensors(#"{"w": {"dtype": "F32", "shape": [100], "data_offsets": [0, 400]}}"#, data: [UInt8](repeating: 0, count: 24))
        assertFileError([path, "w", "outside the data area of 24 bytes"]) { _ = try SafetensorsFile(path: path) }
        let reversed = try safetensors(#"{"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}"#, data: [UInt8](repeating: 0, count: 8))
        assertFileError([reversed, "w", "data_offsets [8, 4]"]) { _ = try SafetensorsFile(path: reversed) }
    }

    func testSafetensorsOffsetsDisagreeWithShape() throws {
        let path = try safetensors(#"{"w": {"dtype": "F16", "shape": [2, 3], "data_offsets": [0, 8]}}"#, data: [UInt8](repeating: 0, count: 8))
        assertFileError([path, "w", "hold 8 bytes but shape [2, 3] of F16 needs 12"]) { _ = try SafetensorsFile(path: path) }
        let overflow = try safetensors(#"{"w": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}}"#, data: [UInt8](repeating: 0, count: 8))
        assertFileError([overflow, "w", "more than Int.max"]) { _ = try SafetensorsFile(path: overflow) }
    }

    func testSafetensorsBadEntries() throws {
        let unknown = try safetensors(#"{"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}"#, data: [UInt8](repeating: 0, count: 16))
        assertFileError([unknown, "w", "unknown dtype 'F128'", "BF16"]) { _ = try SafetensorsFile(path: unknown) }
        let shape = try safetensors(#"{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}"#, data: [0, 0, 0, 0])
        assertFileError([shape, "w", "\"shape\" must be a list"]) { _ = try SafetensorsFile(path: shape) }
        let bools = try safetensors(#"{"w": {"dtype": "F32", "shape": [true], "data_offsets": [0, 4]}}"#, data: [0, 0, 0, 0])
        assertFileError([bools, "w", "\"shape\" must be a list"]) { _ = try SafetensorsFile(path: bools) }
        let noOffsets = try safetensors(#"{"w": {"dtype": "F32", "shape": [1]}}"#, data: [0, 0, 0, 0])
        assertFileError([noOffsets, "w", "data_offsets"]) { _ = try SafetensorsFile(path: noOffsets) }
        let meta = try safetensors(#"{"__metadata__": {"format": 3}}"#)
        assertFileError([meta, "__metadata__.format", "expected a string"]) { _ = try SafetensorsFile(path: meta) }
    }

    /// Cutting the file anywhere gives an error naming the file (no crash, no partial load).
    func testSafetensorsEveryTruncationFails() throws {
        let full = try Data(contentsOf: fixtureURL("formats", "st_mixed.safetensors"))
        let dir = try temporaryDirectory(self)
        let url = dir.appendingPathComponent("cut.safetensors")
        for n in 0..<full.count {
            try full.prefix(n).write(to: url)
            switch openAndLoadEverything(safetensors: url.path) {
            case .success: XCTFail("a file cut to \(n) of \(full.count) bytes opened")
            case .failure(let e):
                XCTAssertTrue(e is FileError && "\(e)".contains(url.path), "cut at \(n): \(e)")
            }
        }
        // A cut in the data names the last tensor (U8 data comes last).
        try full.prefix(full.count - 3).write(to: url)
        assertFileError([url.path, "m.u8", "outside the data area"]) { _ = try SafetensorsFile(path: url.path) }
    }

    func testSafetensorsRandomDamageNeverCrashes() throws {
        let full = [UInt8](try Data(contentsOf: fixtureURL("formats", "st_mixed.safetensors")))
        let dir = try temporaryDirectory(self)
        let url = dir.appendingPathComponent("damaged.safetensors")
        var rng = TestRNG(seed: 11)
        for _ in 0..<300 {
            var bytes = full
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
            }
            try Data(bytes).write(to: url)
            if case .failure(let e) = openAndLoadEverything(safetensors: url.path) {
                XCTAssertTrue(e is FileError, "\(e)")
            }
        }
    }

    func testShardedCheckpointProblems() throws {
        let dir = try temporaryDirectory(self)
        let source = try fixtureURL("formats", "sharded")
        let ckpt = dir.appendingPathComponent("ckpt")
        try FileManager.default.copyItem(at: source, to: ckpt)
        let index = ckpt.appendingPathComponent("model.safetensors.index.json")
        let original = try String(contentsOf: index, encoding: .utf8)

        // A shard file that is gone: the error names it and what it held.
        try FileManager.default.removeItem(at: ckpt.appendingPathComponent("model-00001-of-00005.safetensors"))
        assertFileError([index.path, "model-00001-of-00005.safetensors", "big", "missing"]) { _ = try ShardedSafetensors(url: ckpt) }
        try FileManager.default.copyItem(at: source.appendingPathComponent("model-00001-of-00005.safetensors"),
                                         to: ckpt.appendingPathComponent("model-00001-of-00005.safetensors"))
        XCTAssertNoThrow(try ShardedSafetensors(url: ckpt))

        // The index lists a tensor its shard does not hold.
        try original.replacingOccurrences(of: #""big""#, with: #""bigger""#).write(to: index, atomically: true, encoding: .utf8)
        assertFileError(["model-00001-of-00005.safetensors", "bigger", "not in this shard"]) { _ = try ShardedSafetensors(url: ckpt) }

        // A shard name that leaves the directory, and a broken index.
        try original.replacingOccurrences(of: #""model-00002-of-00005.safetensors""#, with: #""../x.safetensors""#)
            .write(to: index, atomically: true, encoding: .utf8)
        assertFileError([index.path, "weight_map.layers.0.w", "not a file name"]) { _ = try ShardedSafetensors(url: ckpt) }
        try "{\"weight_map\": [1]}".write(to: index, atomically: true, encoding: .utf8)
        assertFileError([index.path, "weight_map", "missing or not an object"]) { _ = try ShardedSafetensors(url: ckpt) }
        try "{weight_map".write(to: index, atomically: true, encoding: .utf8)
        assertFileError([index.path, "malformed JSON"]) { _ = try ShardedSafetensors(url: ckpt) }
    }

    func testWriterErrorsNameTheTarget() throws {
        let target = "/nonexistent-dir/model.safetensors"
        assertFileError([target, "cannot create"]) { try SafetensorsWriter.write(["a": Tensor([1])], to: target) }
    }

    // MARK: GGUF

    func write(_ b: GGUFBuilder) throws -> String {
        let url = try temporaryDirectory(self).appendingPathComponent("bad.gguf")
        try b.write(to: url)
        return url.path
    }

    /// A valid file with one F32 tensor [2, 4] and one string key.
    func validBuilder() -> GGUFBuilder {
        var b = GGUFBuilder()
        b.string("general.architecture", "llama")
        b.tensor("w", ggmlDims: [4, 2], type: 0, bytes: (0..<8).flatMap { GGUFBuilder.le(Float($0).bitPattern) })
        return b
    }

    func testGGUFBuilderMakesValidFiles() throws {
        let f = try GGUFFile(path: try write(validBuilder()))
        XCTAssertEqual(try f.tensor(named: "w").scalars, [0, 1, 2, 3, 4, 5, 6, 7])
        XCTAssertEqual(try f.tensor(named: "w").shape, [2, 4])
    }

    func testGGUFBadMagicAndVersion() throws {
        var b = validBuilder()
        b.magic = Array("GGUG".utf8)
        let path = try write(b)
        assertFileError([path, "bad magic 'GGUG'", "not a GGUF file"]) { _ = try GGUFFile(path: path) }
        b = validBuilder(); b.version = 1
        let v1 = try write(b)
        assertFileError([v1, "GGUF version 1 is not supported"]) { _ = try GGUFFile(path: v1) }
        b = validBuilder(); b.version = UInt32(3).byteSwapped
        let big = try write(b)
        assertFileError([big, "big-endian"]) { _ = try GGUFFile(path: big) }
        let safetensorsFile = try fixtureURL("formats", "st_f32.safetensors").path
        assertFileError([safetensorsFile, "bad magic"]) { _ = try GGUFFile(path: safetensorsFile) }
        assertFileError(["nope.gguf", "cannot open"]) { _ = try GGUFFile(path: "/nonexistent/nope.gguf") }
    }

    func testGGUFUnknownAndUnsupportedTensorTypes() throws {
        var b = validBuilder()
        b.tensor("blk.0.weird", ggmlDims: [32], type: 99, bytes: [UInt8](repeating: 0, count: 64))
        b.tensor("blk.0.iq", ggmlDims: [256], type: 16, bytes: [UInt8](repeating: 0, count: 66))
        let path = try write(b)
        let f = try GGUFFile(path: path)   // opening works; the metadata stays readable
        XCTAssertEqual(try f.tensor(named: "w").count, 8)
        assertFileError([path, "blk.0.weird", "type 99", "not supported", "Q4_K"]) { _ = try f.tensor(named: "blk.0.weird") }
        assertFileError([path, "blk.0.iq", "IQ2_XXS (16)", "not supported"]) { _ = try f.tensor(named: "blk.0.iq") }
    }

    func testGGUFTruncatedTensorData() throws {
        var b = validBuilder()
        b.tensor("blk.0.attn_q.weight", ggmlDims: [64, 4], type: 8, bytes: [UInt8](repeating: 0, count: 100))  // needs 8 × 34
        let path = try write(b)
        assertFileError([path, "blk.0.attn_q.weight", "272 bytes of Q8_0", "truncated"]) { _ = try GGUFFile(path: path) }
    }

    func testGGUFBadTensorInfos() throws {
        var b = validBuilder()
        b.tensor("t5", ggmlDims: [1, 1, 1, 1, 1], type: 0, bytes: [0, 0, 0, 0])
        var path = try write(b)
        assertFileError([path, "t5", "5 dimensions"]) { _ = try GGUFFile(path: path) }

        b = validBuilder()
        b.tensor("odd", ggmlDims: [33], type: 2, bytes: [UInt8](repeating: 0, count: 36))
        path = try write(b)
        assertFileError([path, "odd", "row length 33 is not a multiple of the Q4_0 block size 32"]) { _ = try GGUFFile(path: path) }

        b = validBuilder()
        b.tensor("misaligned", ggmlDims: [1], type: 0, bytes: [0, 0, 0, 0], offset: 4)
        path = try write(b)
        assertFileError([path, "misaligned", "not a multiple of the alignment 32"]) { _ = try GGUFFile(path: path) }

        b = validBuilder()
        b.tensor("far", ggmlDims: [1], type: 0, bytes: [0, 0, 0, 0], offset: 1 << 40)
        path = try write(b)
        assertFileError([path, "far", "past the end of the file"]) { _ = try GGUFFile(path: path) }

        b = validBuilder()
        b.tensor("w", ggmlDims: [4, 2], type: 0, bytes: [UInt8](repeating: 0, count: 32))
        path = try write(b)
        assertFileError([path, "w", "duplicate tensor name"]) { _ = try GGUFFile(path: path) }

        b = validBuilder()
        b.tensor("huge", ggmlDims: [1 << 30, 1 << 30, 1 << 30, 1 << 30], type: 0, bytes: [])
        path = try write(b)
        assertFileError([path, "huge", "overflow"]) { _ = try GGUFFile(path: path) }
    }

    func testGGUFBadMetadata() throws {
        var b = validBuilder()
        b.kv("general.bad", type: 13, [])
        var path = try write(b)
        assertFileError([path, "general.bad", "unknown value type 13"]) { _ = try GGUFFile(path: path) }

        b = validBuilder()
        b.string("general.architecture", "qwen2")
        path = try write(b)
        assertFileError([path, "general.architecture", "duplicate metadata key"]) { _ = try GGUFFile(path: path) }

        b = validBuilder()
        b.kv("tokenizer.ggml.tokens", type: 9, GGUFBuilder.le(UInt32(8)) + GGUFBuilder.le(UInt64(1) << 60))
        path = try write(b)
        assertFileError([path, "tokenizer.ggml.tokens", "array of 1152921504606846976 elements runs past the end"]) { _ = try GGUFFile(path: path) }

        b = validBuilder()
        b.kv("general.name", type: 8, GGUFBuilder.le(UInt64.max) + [65])
        path = try write(b)
        assertFileError([path, "general.name", "runs past the end"]) { _ = try GGUFFile(path: path) }

        b = validBuilder()
        b.uint32("general.alignment", 24)
        path = try write(b)
        assertFileError([path, "general.alignment", "power of two"]) { _ = try GGUFFile(path: path) }

        b = validBuilder()
        b.kvCountOverride = UInt64.max
        path = try write(b)
        assertFileError([path, "metadata count", "impossible"]) { _ = try GGUFFile(path: path) }

        b = validBuilder()
        b.tensorCountOverride = 1 << 40
        path = try write(b)
        assertFileError([path, "tensor count", "impossible"]) { _ = try GGUFFile(path: path) }

        // Deeply nested arrays are refused rather than recursed into.
        var nested = GGUFBuilder.le(UInt32(4)) + GGUFBuilder.le(UInt64(1)) + GGUFBuilder.le(UInt32(7))
        for _ in 0..<20 { nested = GGUFBuilder.le(UInt32(9)) + GGUFBuilder.le(UInt64(1)) + nested }
        b = validBuilder()
        b.kv("deep", type: 9, nested)
        path = try write(b)
        assertFileError([path, "deep", "nested"]) { _ = try GGUFFile(path: path) }
    }

    func testGGUFConfigErrorsNameTheKey() throws {
        var b = validBuilder()
        b.uint32("llama.embedding_length", 64)
        let path = try write(b)
        let f = try GGUFFile(path: path)
        assertFileError([path, "llama.attention.head_count", "missing metadata key"]) { _ = try f.huggingFaceConfig() }
    }

    /// What `huggingFaceConfigJSON` cannot represent is refused by name: partial rotary
    /// embeddings outside Phi-3, RoPE scaling other than linear, a linear scaling without its factor, llama.cpp's
    /// rope_freqs of the wrong length, and a Phi-3 file with only one set of LongRoPE factors.
    func testGGUFConfigsDistillCannotRepresentAreRefused() throws {
        func base(_ arch: String) -> GGUFBuilder {
            var b = GGUFBuilder()
            b.string("general.architecture", arch)
            for (k, v) in [("embedding_length", 32), ("attention.head_count", 4), ("feed_forward_length", 48),
                           ("block_count", 2), ("context_length", 64), ("vocab_size", 96)] {
                b.uint32("\(arch).\(k)", UInt32(v))
            }
            return b
        }
        func floats(_ v: [Float]) -> [UInt8] { v.flatMap { GGUFBuilder.le($0.bitPattern) } }
        var b = base("llama")
        b.uint32("llama.rope.dimension_count", 6)
        var path = try write(b)
        assertFileError([path, "llama.rope.dimension_count", "partial rotary", "6 of 8", "not supported for llama"]) {
            _ = try GGUFFile(path: path).huggingFaceConfigJSON()
        }
        b = base("phi3")
        b.uint32("phi3.rope.dimension_count", 6)
        XCTAssertEqual(try GGUFFile(path: try write(b)).huggingFaceConfigJSON()["partial_rotary_factor"] as? Double, 0.75)
        b = base("llama")
        b.string("llama.rope.scaling.type", "yarn")
        path = try write(b)
        assertFileError([path, "llama.rope.scaling.type", "'yarn'", "linear"]) { _ = try GGUFFile(path: path).huggingFaceConfigJSON() }
        b = base("llama")
        b.string("llama.rope.scaling.type", "linear")
        path = try write(b)
        assertFileError([path, "llama.rope.scaling.factor", "missing"]) { _ = try GGUFFile(path: path).huggingFaceConfigJSON() }
        b = base("llama")
        b.tensor("rope_freqs.weight", ggmlDims: [3], type: 0, bytes: floats([1, 2, 4]))
        path = try write(b)
        assertFileError([path, "rope_freqs.weight", "3 factors for 4"]) { _ = try GGUFFile(path: path).huggingFaceConfigJSON() }
        b = base("phi3")
        b.tensor("rope_factors_long.weight", ggmlDims: [4], type: 0, bytes: floats([1, 2, 3, 4]))
        path = try write(b)
        assertFileError([path, "rope_factors_short.weight", "missing"]) { _ = try GGUFFile(path: path).huggingFaceConfigJSON() }
        // A readable one: Gemma 2 keys become config keys.
        b = base("gemma2")
        b.uint32("gemma2.attention.sliding_window", 7)
        b.kv("gemma2.attn_logit_softcapping", type: 6, GGUFBuilder.le(Float(50).bitPattern))
        let json = try GGUFFile(path: try write(b)).huggingFaceConfigJSON()
        XCTAssertEqual(json["model_type"] as? String, "gemma2")
        XCTAssertEqual(json["sliding_window"] as? Int, 7)
        XCTAssertEqual(json["attn_logit_softcapping"] as? Double, 50)
        XCTAssertNil(json["final_logit_softcapping"])
        XCTAssertEqual(json["query_pre_attn_scalar"] as? Int, 8)
        XCTAssertEqual(json["hidden_act"] as? String, "gelu_pytorch_tanh")
    }

    /// Cutting the file anywhere before the end of the last tensor's data gives an error naming
    /// the file; no crash. (The padding after the last tensor may go.)
    func testGGUFEveryTruncationFails() throws {
        let full = try Data(contentsOf: fixtureURL("formats", "quants.gguf"))
        let reference = try GGUFFile(url: fixtureURL("formats", "quants.gguf"))
        let dataEnd = reference.tensorInfos.map { reference.dataStart + $0.offset + $0.byteCount! }.max()!
        XCTAssertLessThan(full.count - dataEnd, reference.alignment)
        let dir = try temporaryDirectory(self)
        let url = dir.appendingPathComponent("cut.gguf")
        for n in 0...full.count {
            try full.prefix(n).write(to: url)
            switch openAndLoadEverything(gguf: url.path) {
            case .success:
                XCTAssertGreaterThanOrEqual(n, dataEnd, "a file cut to \(n) of \(full.count) bytes opened")
            case .failure(let e):
                XCTAssertLessThan(n, dataEnd, "\(e)")
                XCTAssertTrue(e is FileError && "\(e)".contains(url.path), "cut at \(n): \(e)")
            }
        }
    }

    func testGGUFRandomDamageNeverCrashes() throws {
        let full = [UInt8](try Data(contentsOf: fixtureURL("formats", "quants.gguf")))
        let f = try GGUFFile(url: fixtureURL("formats", "quants.gguf"))
        let headerEnd = f.dataStart
        let dir = try temporaryDirectory(self)
        let url = dir.appendingPathComponent("damaged.gguf")
        var rng = TestRNG(seed: 12)
        var opened = 0
        for _ in 0..<400 {
            var bytes = full
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                // Mostly the header, where damage changes structure.
                let limit = rng.next() % 4 == 0 ? bytes.count : headerEnd
                bytes[Int(rng.next() % UInt64(limit))] = UInt8(truncatingIfNeeded: rng.next())
            }
            try Data(bytes).write(to: url)
            switch openAndLoadEverything(gguf: url.path) {
            case .success: opened += 1
            case .failure(let e): XCTAssertTrue(e is FileError, "\(e)")
            }
        }
        XCTAssertGreaterThan(opened, 0)
    }
}
