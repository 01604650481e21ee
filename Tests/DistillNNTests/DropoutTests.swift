import DistillNN
import DistillTensor
import XCTest

/// Residual and attention dropout in the decoder blocks.
final class DropoutTests: XCTestCase {
    let config = TransformerConfig(vocabSize: 24, hidden: 16, layers: 2, heads: 2, kvHeads: 1, intermediate: 32)
    let ids = [1, 5, 9, 2, 7, 3, 11, 4]

    func testActiveOnlyWhileTrainingWithGradients() throws {
        let plain = TransformerLM(config, seed: 2), model = TransformerLM(config, seed: 2)
        try DecoderDropout.apply(to: model, residual: 0.3, attention: 0.3, seed: 1)
        let reference = withoutGradients { plain.forward(ids, batch: 2, length: 4).logits.scalars }
        // Without gradients (evaluation, generation, a teacher): every unit, the plain model's output.
        XCTAssertEqual(withoutGradients { model.forward(ids, batch: 2, length: 4).logits.scalars }, reference)
        // Training: masks drawn, different each call.
        let a = model.forward(ids, batch: 2, length: 4).logits.scalars, b = model.forward(ids, batch: 2, length: 4).logits.scalars
        XCTAssertNotEqual(a, reference)
        XCTAssertNotEqual(a, b)
        // Evaluation mode with gradients: off too.
        model.train(false)
        XCTAssertEqual(model.forward(ids, batch: 2, length: 4).logits.scalars, reference)
        model.train(true)
        // The attention maps returned for attention transfer are the undropped ones.
        let maps = model.forward(ids, batch: 2, length: 4, outputAttentions: true).attentions
        let plainMaps = plain.forward(ids, batch: 2, length: 4, outputAttentions: true).attentions
        XCTAssertEqual(maps[0].scalars, plainMaps[0].scalars)
        // p = 0 removes them.
        try DecoderDropout.apply(to: model, residual: 0, attention: 0, seed: 1)
        XCTAssertEqual(model.forward(ids, batch: 2, length: 4).logits.scalars, reference)
        XCTAssertThrowsError(try DecoderDropout.apply(to: model, residual: 1, attention: 0, seed: 1)) {
            XCTAssertTrue("\($0)".contains("residual dropout"), "\($0)")
        }
    }

    /// The masks follow the saved generators: restoring them repeats the masks.
    func testGeneratorsSaveAndRestore() throws {
        let model = TransformerLM(config, seed: 2)
        try DecoderDropout.apply(to: model, residual: 0.2, attention: 0.1, seed: 4)
        let saved = DecoderDropout.generators(of: model)
        XCTAssertEqual(saved.keys.sorted(), ["model.layers.0.residual_dropout", "model.layers.0.self_attn.attention_dropout",
                                             "model.layers.1.residual_dropout", "model.layers.1.self_attn.attention_dropout"])
        let first = model.forward(ids, batch: 2, length: 4).logits.scalars
        try DecoderDropout.restore(saved, in: model)
        XCTAssertEqual(model.forward(ids, batch: 2, length: 4).logits.scalars, first)
        XCTAssertThrowsError(try DecoderDropout.restore([:], in: model))
    }

    /// Gradients through both dropouts with the masks held fixed (each evaluation restores the
    /// generators) agree with finite differences.
    func testGradientsByFiniteDifferences() throws {
        let model = TransformerLM(config, seed: 6)
        try DecoderDropout.apply(to: model, residual: 0.25, attention: 0.25, seed: 8)
        let saved = DecoderDropout.generators(of: model)
        let q = model.model.layers[0].selfAttn.qProj.weight, down = model.model.layers[1].mlp.downProj.weight
        func loss() -> Tensor {
            try! DecoderDropout.restore(saved, in: model)
            return model.languageModelLoss(ids, batch: 2, length: 4)
        }
        let grads = gradients(of: loss(), wrt: [q.value, down.value])
        for (param, g) in zip([q, down], grads) {
            let base = param.value.scalars
            for i in stride(from: 0, to: base.count, by: 29) {
                func at(_ delta: Float) -> Double {
                    var v = base
                    v[i] += delta
                    param.assign(Tensor(v, shape: param.shape))
                    return Double(withGradientsButNoTape { loss() }.item)
                }
                let h: Float = 1e-2
                let fd = (at(h) - at(-h)) / Double(2 * h)
                param.assign(Tensor(base, shape: param.shape))
                XCTAssertEqual(Double(g.scalars[i]), fd, accuracy: 1e-2 * max(1e-2, abs(fd)) + 2e-4, "element \(i)")
            }
        }
    }

    /// Dropout is active only with gradients on, so the finite differences evaluate the loss with
    /// gradients recorded (and discard them).
    func withGradientsButNoTape(_ body: () -> Tensor) -> Tensor { body().detached() }
}
