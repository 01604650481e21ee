import DistillNN
import DistillTensor
import XCTest

/// The two-layer transformer built from Distill's parts against Hugging Face's LlamaForCausalLM
/// on the same weights (fixture from scripts/make_transformer_fixture.py).
final class TransformerParityTests: XCTestCase {
    func makeModel(_ f: [String: Any]) throws -> TransformerLM {
        try fixtureModel(f, parameters: "parameters")
    }

    func testParameterNamesMatchHuggingFace() throws {
        let f = try loadFixture("transformer_fixture")
        let model = try makeModel(f)
        let hfNames = try XCTUnwrap(f["parameters"] as? [String: Any]).keys.sorted()
        XCTAssertEqual(model.namedParameters().map(\.name).sorted(), hfNames)
        XCTAssertTrue(hfNames.contains("model.layers.1.self_attn.q_proj.weight"))
    }

    func testLossLogitsAndGradientsMatchPyTorch() throws {
        let f = try loadFixture("transformer_fixture")
        let model = try makeModel(f)
        let ids = try XCTUnwrap(f["ids"] as? [Int])
        let batch = f["batch"] as! Int, length = f["length"] as! Int

        let out = withoutGradients { model.forward(ids, batch: batch, length: length, outputHiddenStates: true) }
        let refLogits = try tensor(fromFixture: f["logits"])
        XCTAssertEqual(out.logits.shape, refLogits.shape)
        XCTAssertLessThan(relativeMaxError(out.logits.scalars, refLogits.scalars), 1e-5)
        let refHidden = try tensor(fromFixture: f["last_hidden_state"])
        XCTAssertLessThan(relativeMaxError(out.hiddenStates.last!.scalars, refHidden.scalars), 1e-5)

        let (loss, grads) = valueAndGradient(model) { $0.languageModelLoss(ids, batch: batch, length: length) }
        let refLoss = Float(f["loss"] as! Double)
        XCTAssertEqual(loss, refLoss, accuracy: 1e-5 * abs(refLoss))
        let refGrads = try XCTUnwrap(f["gradients"] as? [String: Any])
        XCTAssertEqual(Set(grads.names), Set(refGrads.keys))
        for name in grads.names {
            let ref = try tensor(fromFixture: refGrads[name])
            let err = relativeMaxError(try XCTUnwrap(grads[name]).scalars, ref.scalars)
            XCTAssertLessThan(err, 1e-4, "gradient of \(name): relative error \(err)")
        }
    }
}
