import DistillModels
import DistillNN
import DistillTensor
import Distillation
import Foundation
import XCTest

/// An adapter PEFT wrote itself (scripts/make_peft_adapter_fixture.py: LoRA on every projection,
/// rsLoRA scaling) loads onto its base and merges as PEFT's merge_and_unload does.
final class PEFTAdapterTests: XCTestCase {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/peft_adapter")

    struct Expected: Decodable {
        var ids: [Int]
        var logits: [Float]
        var merged_down_proj_1: [Float]
    }

    func testPEFTAdapterMergesAsPEFTDoes() throws {
        let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: Self.fixture.appendingPathComponent("expected.json")))
        let model = try PretrainedModel.loadDirectory(Self.fixture.appendingPathComponent("base").path)
        let base = model.lm.namedParameters().map { ($0.name, $0.parameter.value.scalars) }
        let config = try LoRAAdapterFiles.merge(Self.fixture.appendingPathComponent("adapter").path, into: model)
        XCTAssertEqual(config.useRSLoRA, true)
        XCTAssertEqual(config.scale, 8, accuracy: 1e-6)   // 16 / √4
        XCTAssertTrue(loraModules(of: model.lm).isEmpty)
        // The merged weight equals PEFT's within 1e-5; the logits (|x| up to 3.5) within the 1e-4
        // of the other transformers parity tests.
        let logits = withoutGradients { model.lm.forward(e.ids, batch: 1, length: e.ids.count).logits.scalars }
        XCTAssertLessThan(zip(logits, e.logits).map { abs($0 - $1) }.max()!, 1e-4)
        let merged = try XCTUnwrap(model.lm.namedParameters().first { $0.name == "model.layers.1.mlp.down_proj.weight" })
        XCTAssertLessThan(zip(merged.parameter.value.scalars, e.merged_down_proj_1).map { abs($0 - $1) }.max()!, 1e-5)
        // Projections changed, the rest (norms, embeddings) did not.
        let after = Dictionary(uniqueKeysWithValues: model.lm.namedParameters().map { ($0.name, $0.parameter.value.scalars) })
        for (name, values) in base {
            XCTAssertEqual(after[name] == values, !name.hasSuffix("proj.weight"), name)
        }
    }

    /// PEFT options whose arithmetic Distill does not do are refused by name.
    func testUnsupportedPEFTOptionsAreRefused() throws {
        let src = Self.fixture.appendingPathComponent("adapter")
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: src.appendingPathComponent("adapter_config.json"))) as! [String: Any]
        for (key, value, fragment) in [("use_dora", true as Any, "DoRA"), ("modules_to_save", ["lm_head"] as Any, "modules_to_save"),
                                       ("rank_pattern", ["q_proj": 8] as Any, "per-module"), ("bias", "all" as Any, "bias")] {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("peft-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            var c = config
            c[key] = value
            try JSONSerialization.data(withJSONObject: c).write(to: dir.appendingPathComponent("adapter_config.json"))
            XCTAssertThrowsError(try LoRAAdapterFiles.readConfig(dir.path)) { error in
                XCTAssertTrue("\(error)".contains(key) && "\(error)".contains(fragment), "\(error)")
            }
        }
    }
}
