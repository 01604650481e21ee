import DistillModels
import DistillNN
import DistillTensor
import Distillation
import Foundation
import XCTest

final class LoRAAdapterFilesTests: XCTestCase {
    func testSaveAndLoadAdapterOnly() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lora-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = TransformerConfig(vocabSize: 20, hidden: 16, layers: 2, heads: 4, kvHeads: 2, intermediate: 24,
                                       tieEmbeddings: false, qkvBias: true)
        let m = TransformerLM(config, seed: 1)
        let lc = LoRAConfig(rank: 4, alpha: 8, dropout: 0.1, targetModules: ["q_proj", "v_proj"])
        try applyLoRA(to: m, config: lc, seed: 2)
        var rng = RandomGenerator(seed: 3)
        for (_, lin) in loraModules(of: m) { lin.loraB!.weight.assign(.randomNormal(lin.loraB!.weight.shape, std: 0.3, using: &rng)) }
        m.train(false)
        try LoRAAdapterFiles.save(m, config: lc, to: dir.path, baseModel: "tiny")

        // Only adapter tensors, under PEFT's keys.
        let file = try SafetensorsFile(path: dir.appendingPathComponent("adapter_model.safetensors").path)
        XCTAssertEqual(file.tensorNames.sorted(), [
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
            "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight", "base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight",
            "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight",
            "base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight", "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight",
        ])
        XCTAssertEqual(try LoRAAdapterFiles.readConfig(dir.path), lc)

        let fresh = TransformerLM(config, seed: 1)
        let loadedConfig = try LoRAAdapterFiles.load(into: fresh, from: dir.path)
        XCTAssertEqual(loadedConfig, lc)
        fresh.train(false)
        let ids = [1, 2, 3, 4, 5, 6]
        let a = withoutGradients { fresh.forward(ids, batch: 2, length: 3).logits.scalars }
        let b = withoutGradients { m.forward(ids, batch: 2, length: 3).logits.scalars }
        XCTAssertEqual(a, b)
        XCTAssertEqual(Set(fresh.trainableParameters.map(\.name)), Set(loraStateDict(of: m).keys))

        // A model without matching modules refuses the adapter with the file named.
        let other = TransformerLM(TransformerConfig(vocabSize: 20, hidden: 8, layers: 1, heads: 2, kvHeads: 1, intermediate: 8), seed: 1)
        XCTAssertThrowsError(try LoRAAdapterFiles.load(into: other, from: dir.path)) { e in
            XCTAssertTrue("\(e)".contains("adapter_model.safetensors"), "\(e)")
        }
    }
}
