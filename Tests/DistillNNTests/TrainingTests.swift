import DistillNN
import DistillTensor
import XCTest

final class TrainingTests: XCTestCase {
    /// A two-layer transformer memorises one small batch: the loss must fall below 0.05.
    func testTwoLayerTransformerOverfitsSmallBatch() {
        let config = TransformerConfig(vocabSize: 32, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64)
        let model = TransformerLM(config, seed: 3)
        var rng = RandomGenerator(seed: 11)
        let batch = 4, length = 12
        let ids = (0..<(batch * length)).map { _ in Int(rng.next() % 32) }
        let opt = AdamW(learningRate: 1e-2, weightDecay: 0)
        var loss: Float = .infinity
        var step = 0
        while step < 300 && loss >= 0.05 {
            let (l, g) = valueAndGradient(model) { $0.languageModelLoss(ids, batch: batch, length: length) }
            loss = l
            opt.update(model.trainableParameters, gradients: g)
            step += 1
        }
        XCTAssertLessThan(loss, 0.05, "loss \(loss) after \(step) steps")
        print("overfit: loss \(loss) after \(step) steps")
    }

    /// A model with per-head q/k RMSNorm (Qwen3) and a sliding window (Mistral) trains: its
    /// gradients match central finite differences on the q/k norm weights and the projections
    /// around them, and it overfits a small batch.
    func testQKNormAndSlidingWindowGradientsAndTraining() {
        let config = TransformerConfig(vocabSize: 16, hidden: 16, layers: 2, heads: 4, kvHeads: 2, intermediate: 24,
                                       headDim: 8, qkNorm: true, slidingWindow: 3)
        let model = TransformerLM(config, seed: 9)
        var rng = RandomGenerator(seed: 4)
        for (name, p) in model.namedParameters() where name.contains("_norm") {
            p.assign(Tensor((0..<p.value.count).map { _ in 1 + 0.3 * rng.nextNormal() }, shape: p.shape))
        }
        let ids = (0..<(2 * 8)).map { _ in Int(rng.next() % 16) }
        func loss() -> Float { withoutGradients { model.languageModelLoss(ids, batch: 2, length: 8).item } }
        let (_, g) = valueAndGradient(model) { $0.languageModelLoss(ids, batch: 2, length: 8) }
        let params = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.name, $0.parameter) })
        for name in ["model.layers.0.self_attn.q_norm.weight", "model.layers.1.self_attn.k_norm.weight",
                     "model.layers.0.self_attn.k_proj.weight", "model.layers.1.self_attn.q_proj.weight"] {
            let p = params[name]!, analytic = g.tensors[g.names.firstIndex(of: name)!].scalars
            var values = p.value.scalars
            for j in stride(from: 0, to: values.count, by: max(1, values.count / 6)) {
                let x0 = values[j], h: Float = 1e-2
                values[j] = x0 + h; p.assign(Tensor(values, shape: p.shape)); let up = Double(loss())
                values[j] = x0 - h; p.assign(Tensor(values, shape: p.shape)); let down = Double(loss())
                values[j] = x0; p.assign(Tensor(values, shape: p.shape))
                let numeric = (up - down) / (2 * Double(h))
                XCTAssertEqual(Double(analytic[j]), numeric, accuracy: 1e-2 * max(abs(numeric), 1e-2) + 2e-4, "\(name)[\(j)]")
            }
        }
        // The window is in effect: changing the first token leaves the logits of position 7 alone
        // (2 layers × window 3 reach back 4 positions), unlike a model without the window.
        var other = ids
        other[0] = (ids[0] + 1) % 16
        let a = withoutGradients { model.forward(ids, batch: 2, length: 8).logits.scalars }
        let b = withoutGradients { model.forward(other, batch: 2, length: 8).logits.scalars }
        XCTAssertEqual(Array(a[(7 * 16)..<(8 * 16)]), Array(b[(7 * 16)..<(8 * 16)]))
        XCTAssertNotEqual(Array(a[(1 * 16)..<(2 * 16)]), Array(b[(1 * 16)..<(2 * 16)]))
        let opt = AdamW(learningRate: 1e-2, weightDecay: 0)
        var l: Float = .infinity
        for _ in 0..<200 where l >= 0.1 {
            let (v, grads) = valueAndGradient(model) { $0.languageModelLoss(ids, batch: 2, length: 8) }
            l = v
            opt.update(model.trainableParameters, gradients: grads)
        }
        XCTAssertLessThan(l, 0.1)
    }

    /// Accumulating two half-batches gives the gradient of the full batch (the loss is a mean, so
    /// the full-batch gradient is the average of equal-sized halves).
    func testGradientAccumulationEqualsFullBatch() {
        let config = TransformerConfig(vocabSize: 16, hidden: 16, layers: 1, heads: 2, kvHeads: 1, intermediate: 32)
        let model = TransformerLM(config, seed: 5)
        var rng = RandomGenerator(seed: 2)
        let ids = (0..<(4 * 6)).map { _ in Int(rng.next() % 16) }
        let full = valueAndGradient(model) { $0.languageModelLoss(ids, batch: 4, length: 6) }.gradients
        var acc = GradientAccumulator()
        acc.add(valueAndGradient(model) { $0.languageModelLoss(Array(ids[0..<12]), batch: 2, length: 6) }.gradients)
        acc.add(valueAndGradient(model) { $0.languageModelLoss(Array(ids[12...]), batch: 2, length: 6) }.gradients)
        let avg = acc.average()!
        for (i, name) in full.names.enumerated() {
            XCTAssertLessThan(relativeMaxError(avg.tensors[i].scalars, full.tensors[i].scalars), 1e-5, name)
        }
    }
}
