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
