import DistillNN
import DistillTensor
import XCTest

/// LoRA on Distill's decoder against Hugging Face PEFT's LoraConfig on LlamaForCausalLM, same base
/// and adapter weights (fixture from scripts/make_lora_fixture.py: r = 4, alpha = 8, dropout 0,
/// targets q_proj, v_proj, down_proj, every B non-zero).
final class LoRAParityTests: XCTestCase {
    /// The fixture's base model with adapters attached as PEFT attached them and loaded with its values.
    func makeModel(_ f: [String: Any]) throws -> TransformerLM {
        let model = try fixtureModel(f, parameters: "base_parameters")
        let l = try XCTUnwrap(f["lora"] as? [String: Any])
        try applyLoRA(to: model, config: LoRAConfig(rank: l["r"] as! Int, alpha: Float(l["lora_alpha"] as! Int),
                                                    dropout: Float(l["lora_dropout"] as! Double),
                                                    targetModules: l["target_modules"] as! [String]))
        let adapters = try XCTUnwrap(f["adapter_parameters"] as? [String: Any])
        try loadLoRAStateDict(adapters.mapValues { try tensor(fromFixture: $0) }, into: model)
        return model
    }

    /// Adapter names equal PEFT's (`save_pretrained` keys less `base_model.model.`), and only they train.
    func testAdapterNamesMatchPEFT() throws {
        let f = try loadFixture("lora_fixture")
        let model = try makeModel(f)
        let saved = try XCTUnwrap(f["peft_saved_keys"] as? [String])
        XCTAssertEqual(loraStateDict(of: model).keys.map { "base_model.model." + $0 }.sorted(), saved.sorted())
        XCTAssertEqual(Set(model.trainableParameters.map(\.name)), Set(loraStateDict(of: model).keys))
        XCTAssertTrue(saved.contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"))
        XCTAssertTrue(saved.contains("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"))
    }

    /// y = W·x + (alpha/r)·B·A·x in every adapted projection: logits, loss and ∂loss/∂A, ∂loss/∂B
    /// equal PyTorch's through PEFT.
    func testLogitsLossAndAdapterGradientsMatchPEFT() throws {
        let f = try loadFixture("lora_fixture")
        let model = try makeModel(f)
        let ids = try XCTUnwrap(f["ids"] as? [Int])
        let batch = f["batch"] as! Int, length = f["length"] as! Int

        let logits = withoutGradients { model.forward(ids, batch: batch, length: length).logits }
        let refLogits = try tensor(fromFixture: f["logits"])
        XCTAssertEqual(logits.shape, refLogits.shape)
        let logitErr = relativeMaxError(logits.scalars, refLogits.scalars)
        XCTAssertLessThan(logitErr, 1e-5, "logits: relative error \(logitErr)")

        let (loss, grads) = valueAndGradient(model) { $0.languageModelLoss(ids, batch: batch, length: length) }
        let refLoss = Float(f["loss"] as! Double)
        XCTAssertEqual(loss, refLoss, accuracy: 1e-5 * abs(refLoss))
        let refGrads = try XCTUnwrap(f["adapter_gradients"] as? [String: Any])
        XCTAssertEqual(Set(grads.names), Set(refGrads.keys))
        for name in grads.names {
            let ref = try tensor(fromFixture: refGrads[name])
            let err = relativeMaxError(try XCTUnwrap(grads[name]).scalars, ref.scalars)
            XCTAssertLessThan(err, 1e-5, "gradient of \(name): relative error \(err)")
        }
    }

    /// merge_and_unload: W + (alpha/r)·B·A equals PEFT's merged weights; the merged model without
    /// adapters gives the adapted logits.
    func testMergedWeightsMatchPEFTMergeAndUnload() throws {
        let f = try loadFixture("lora_fixture")
        let model = try makeModel(f)
        mergeLoRA(in: model, unload: true)
        XCTAssertTrue(loraModules(of: model).isEmpty)
        let merged = try XCTUnwrap(f["merged_parameters"] as? [String: Any])
        let params = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.name, $0.parameter.value) })
        XCTAssertEqual(merged.count, 6)
        for (name, value) in merged {
            let ref = try tensor(fromFixture: value)
            let mine = try XCTUnwrap(params[name], name)
            XCTAssertEqual(mine.shape, ref.shape, name)
            let err = relativeMaxError(mine.scalars, ref.scalars)
            XCTAssertLessThan(err, 1e-6, "merged \(name): relative error \(err)")
        }
        // weights outside the targets are the base weights, bit for bit
        let base = try XCTUnwrap(f["base_parameters"] as? [String: Any])
        for (name, value) in base where merged[name] == nil {
            XCTAssertEqual(try XCTUnwrap(params[name], name).scalars, try tensor(fromFixture: value).scalars, name)
        }
        let ids = try XCTUnwrap(f["ids"] as? [Int])
        let logits = withoutGradients { model.forward(ids, batch: f["batch"] as! Int, length: f["length"] as! Int).logits }
        let err = relativeMaxError(logits.scalars, try tensor(fromFixture: f["logits"]).scalars)
        XCTAssertLessThan(err, 1e-5, "merged logits: relative error \(err)")
    }
}
