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

    /// Central finite differences of the LM loss with respect to a few elements of each named
    /// parameter, against the analytic gradients.
    func checkFiniteDifferences(_ model: TransformerLM, ids: [Int], batch: Int, length: Int, names: [String], step h: Float = 1e-2,
                                file: StaticString = #filePath, line: UInt = #line) {
        func loss() -> Float { withoutGradients { model.languageModelLoss(ids, batch: batch, length: length).item } }
        let (_, g) = valueAndGradient(model) { $0.languageModelLoss(ids, batch: batch, length: length) }
        let params = Dictionary(uniqueKeysWithValues: model.namedParameters().map { ($0.name, $0.parameter) })
        for name in names {
            guard let p = params[name], let gi = g.names.firstIndex(of: name) else { XCTFail("no parameter \(name)", file: file, line: line); continue }
            let analytic = g.tensors[gi].scalars
            var values = p.value.scalars
            for j in stride(from: 0, to: values.count, by: max(1, values.count / 6)) {
                let x0 = values[j]
                values[j] = x0 + h; p.assign(Tensor(values, shape: p.shape)); let up = Double(loss())
                values[j] = x0 - h; p.assign(Tensor(values, shape: p.shape)); let down = Double(loss())
                values[j] = x0; p.assign(Tensor(values, shape: p.shape))
                let numeric = (up - down) / (2 * Double(h))
                XCTAssertEqual(Double(analytic[j]), numeric, accuracy: 1e-2 * max(abs(numeric), 1e-2) + 2e-4, "\(name)[\(j)]",
                               file: file, line: line)
            }
        }
    }

    func overfits(_ model: TransformerLM, ids: [Int], batch: Int, length: Int) -> Float {
        let opt = AdamW(learningRate: 1e-2, weightDecay: 0)
        var l: Float = .infinity
        for _ in 0..<200 where l >= 0.1 {
            let (v, grads) = valueAndGradient(model) { $0.languageModelLoss(ids, batch: batch, length: length) }
            l = v
            opt.update(model.trainableParameters, gradients: grads)
        }
        return l
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
        checkFiniteDifferences(model, ids: ids, batch: 2, length: 8,
                               names: ["model.layers.0.self_attn.q_norm.weight", "model.layers.1.self_attn.k_norm.weight",
                                       "model.layers.0.self_attn.k_proj.weight", "model.layers.1.self_attn.q_proj.weight"])
        // The window is in effect: changing the first token leaves the logits of position 7 alone
        // (2 layers × window 3 reach back 4 positions), unlike a model without the window.
        var other = ids
        other[0] = (ids[0] + 1) % 16
        let a = withoutGradients { model.forward(ids, batch: 2, length: 8).logits.scalars }
        let b = withoutGradients { model.forward(other, batch: 2, length: 8).logits.scalars }
        XCTAssertEqual(Array(a[(7 * 16)..<(8 * 16)]), Array(b[(7 * 16)..<(8 * 16)]))
        XCTAssertNotEqual(Array(a[(1 * 16)..<(2 * 16)]), Array(b[(1 * 16)..<(2 * 16)]))
        XCTAssertLessThan(overfits(model, ids: ids, batch: 2, length: 8), 0.1)
    }

    /// Gemma 2's pieces train: GeGLU, (1 + w) and sandwich norms, the embedding scale, the score
    /// scale, soft-capped scores and logits, a window on alternate layers — finite differences on
    /// the parameters each touches, and a small batch overfits.
    func testGemma2PartsGradientsAndTraining() {
        var config = TransformerConfig(vocabSize: 16, hidden: 16, layers: 2, heads: 4, kvHeads: 2, intermediate: 24,
                                       headDim: 8, slidingWindow: 3)
        config.slidingLayers = [true, false]
        config.mlpKind = .geglu
        config.normOffset = 1
        config.sandwichNorms = true
        config.scaleEmbeddings = true
        config.attentionScale = 0.3
        config.attentionSoftcap = 2
        config.finalSoftcap = 4
        let model = TransformerLM(config, seed: 12)
        var rng = RandomGenerator(seed: 6)
        for (name, p) in model.namedParameters() where name.contains("norm") {
            p.assign(Tensor((0..<p.value.count).map { _ in 0.3 * rng.nextNormal() }, shape: p.shape))
        }
        XCTAssertNil(model.outputProjectionWeight)          // soft-capped logits are not h · Wᵀ
        let ids = (0..<(2 * 8)).map { _ in Int(rng.next() % 16) }
        checkFiniteDifferences(model, ids: ids, batch: 2, length: 8,
                               names: ["model.embed_tokens.weight", "model.layers.0.pre_feedforward_layernorm.weight",
                                       "model.layers.1.post_feedforward_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
                                       "model.layers.0.mlp.gate_proj.weight", "model.layers.1.self_attn.q_proj.weight", "model.norm.weight"],
                               // The embedding enters scaled by √16 = 4 and through two tanh caps: at a step
                               // of 1e-2 the central difference's truncation error (∝ h²) reached 10% on it;
                               // at 2e-3 every element is within the usual 1%.
                               step: 2e-3)
        let logits = withoutGradients { model.forward(ids, batch: 2, length: 8).logits.scalars }
        XCTAssertLessThanOrEqual(logits.map { abs($0) }.max()!, 4)
        XCTAssertLessThan(overfits(model, ids: ids, batch: 2, length: 8), 0.1)   // capped at ±4 the loss can reach 0.005
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
