import DistillModels
import DistillNN
import DistillTensor
@testable import Distillation
import Foundation
import XCTest

/// A prefix-tuning adapter PEFT wrote itself (scripts/make_peft_prefix_fixture.py) gives PEFT's
/// logits; Distill's own prefixes save in PEFT's layout and load back; the recipe key trains one.
final class PEFTPrefixTests: XCTestCase {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/peft_prefix")

    struct Expected: Decodable {
        var ids: [[Int]]
        var mask: [[Int]]
        var logits_alone: [Float]
        var logits_batch: [Float]
        var vocab: Int
    }

    func loadBase() throws -> PretrainedModel { try PretrainedModel.loadDirectory(Self.fixture.appendingPathComponent("base").path) }

    func testPEFTPrefixGivesPEFTsLogits() throws {
        let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: Self.fixture.appendingPathComponent("expected.json")))
        let model = try loadBase()
        try AdapterFiles.apply(Self.fixture.appendingPathComponent("adapter").path, to: model)
        XCTAssertEqual(model.lm.prefixLength, 3)
        XCTAssertEqual(model.lm.model.layers[1].selfAttn.prefixValues?.shape, [2, 3, 8])
        let alone = withoutGradients { model.lm.forward(e.ids[0], batch: 1, length: 6).logits.scalars }
        XCTAssertLessThan(zip(alone, e.logits_alone).map { abs($0 - $1) }.max()!, 1e-4)
        // Left padding with a key mask: the real positions' logits equal PEFT's.
        let mask = Tensor(e.mask.flatMap { $0.map { $0 == 1 ? Float(0) : -.infinity } }, shape: [2, 1, 1, 6])
        let batch = withoutGradients { model.lm.forward(e.ids.flatMap { $0 }, batch: 2, length: 6, mask: mask).logits.scalars }
        var worst: Float = 0
        for r in 0..<2 {
            for t in 0..<6 where e.mask[r][t] == 1 {
                for v in 0..<e.vocab { worst = max(worst, abs(batch[(r * 6 + t) * e.vocab + v] - e.logits_batch[(r * 6 + t) * e.vocab + v])) }
            }
        }
        XCTAssertLessThan(worst, 1e-4)
        // Generation through the KV cache continues from the prefix: two calls equal one.
        let cache = model.lm.makeCache()
        let a = withoutGradients { model.lm.forward(Array(e.ids[0][0..<4]), batch: 1, length: 4, cache: cache).logits.scalars }
        let b = withoutGradients { model.lm.forward(Array(e.ids[0][4...]), batch: 1, length: 2, cache: cache).logits.scalars }
        XCTAssertLessThan(zip(a + b, alone).map { abs($0 - $1) }.max()!, 1e-5)
    }

    /// Saving writes PEFT's layout: the fixture's prefix saved again gives PEFT's tensor and config.
    func testSaveRoundTripsInPEFTsLayout() throws {
        let model = try loadBase()
        let adapter = Self.fixture.appendingPathComponent("adapter")
        try PrefixAdapterFiles.load(into: model.lm, from: adapter.path)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("prefix-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        try PrefixAdapterFiles.save(model.lm, to: out.path, baseModel: "base")
        let mine = try SafetensorsFile(path: out.appendingPathComponent("adapter_model.safetensors").path).tensor(named: "prompt_embeddings")
        let peft = try SafetensorsFile(path: adapter.appendingPathComponent("adapter_model.safetensors").path).tensor(named: "prompt_embeddings")
        XCTAssertEqual(mine.shape, peft.shape)
        XCTAssertEqual(mine.scalars, peft.scalars)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("adapter_config.json"))) as! [String: Any]
        let theirs = try JSONSerialization.jsonObject(with: Data(contentsOf: adapter.appendingPathComponent("adapter_config.json"))) as! [String: Any]
        for key in ["peft_type", "num_virtual_tokens", "num_layers", "token_dim", "num_attention_heads", "prefix_projection"] {
            XCTAssertEqual("\(config[key]!)", "\(theirs[key]!)", key)
        }
    }

    /// The exports refuse a model with a prefix instead of dropping it.
    func testExportsRefuseAPrefix() throws {
        let model = try loadBase()
        try AdapterFiles.apply(Self.fixture.appendingPathComponent("adapter").path, to: model)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("prefix-export-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        XCTAssertThrowsError(try model.exportGGUF(to: out.path + ".gguf", type: .f32)) { XCTAssertTrue("\($0)".contains("tuned prefix"), "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path + ".gguf"))
    }

    func testBadPrefixAdaptersAreNamed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("prefix-bad-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: Self.fixture.appendingPathComponent("adapter/adapter_model.safetensors"),
                                         to: dir.appendingPathComponent("adapter_model.safetensors"))
        func config(_ changes: [String: Any]) throws {
            var c = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.fixture.appendingPathComponent("adapter/adapter_config.json"))) as! [String: Any]
            for (k, v) in changes { c[k] = v }
            try JSONSerialization.data(withJSONObject: c).write(to: dir.appendingPathComponent("adapter_config.json"))
        }
        for (changes, message) in [(["num_layers": 3], "num_layers: 3, but the model has 2 layers"),
                                   (["token_dim": 32], "token_dim: 32, but the model's key/value heads × head size is 2 × 8 = 16"),
                                   (["prefix_projection": true], "prefix_projection: prefixes made through a projection MLP are not supported"),
                                   (["num_virtual_tokens": 4], "prompt_embeddings: shape [3, 64], expected [4, 64]"),
                                   (["peft_type": "P_TUNING"], "peft_type: P_TUNING adapters are not supported (LORA and PREFIX_TUNING are)")] as [([String: Any], String)] {
            try config(changes)
            XCTAssertThrowsError(try AdapterFiles.apply(dir.path, to: try loadBase())) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
        }
    }
}
