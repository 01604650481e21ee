import DistillNN
import DistillTensor
import XCTest

final class ModuleTests: XCTestCase {
    func testDottedNamesFreezeAndCounts() {
        let config = TransformerConfig(vocabSize: 10, hidden: 8, layers: 2, heads: 2, kvHeads: 1, intermediate: 12,
                                       tieEmbeddings: false, qkvBias: true)
        let m = TransformerLM(config)
        let names = m.namedParameters().map(\.name)
        XCTAssertEqual(names.first, "model.embed_tokens.weight")
        XCTAssertTrue(names.contains("model.layers.1.self_attn.q_proj.bias"))
        XCTAssertTrue(names.contains("model.layers.0.post_attention_layernorm.weight"))
        XCTAssertTrue(names.contains("model.layers.0.mlp.gate_proj.weight"))
        XCTAssertFalse(names.contains("model.layers.0.self_attn.o_proj.bias"))
        XCTAssertEqual(names.last, "lm_head.weight")
        // embed 80 + head 80 + norm 8 + per layer: norms 16, q 8·8+8, k 4·8+4, v 4·8+4, o 64, mlp 3·96
        let perLayer = 16 + 72 + 36 + 36 + 64 + 288
        XCTAssertEqual(m.parameterCount, 80 + 80 + 8 + 2 * perLayer)
        m.model.layers[0].freeze()
        XCTAssertEqual(m.trainableParameterCount, m.parameterCount - perLayer)
        let (_, g) = valueAndGradient(m) { $0.languageModelLoss([1, 2, 3, 4], batch: 1, length: 4) }
        XCTAssertFalse(g.names.contains { $0.hasPrefix("model.layers.0.") })
        XCTAssertTrue(g.names.contains("model.layers.1.mlp.up_proj.weight"))
        m.unfreeze()
        XCTAssertEqual(m.trainableParameterCount, m.parameterCount)
    }

    func testLoadReportsMissingExtraAndMisshapen() {
        let lin = Linear(weight: Tensor(zeros: [2, 3]), bias: Tensor(zeros: [2]))
        XCTAssertThrowsError(try lin.load(["weight": Tensor(zeros: [2, 3])])) { e in
            XCTAssertEqual(e as? ModuleError, .missingParameter("bias"))
        }
        XCTAssertThrowsError(try lin.load(["weight": Tensor(zeros: [3, 2]), "bias": Tensor(zeros: [2])])) { e in
            XCTAssertEqual("\(e)", "parameter 'weight': expected shape [2, 3], found [3, 2]")
        }
        XCTAssertThrowsError(try lin.load(["weight": Tensor(zeros: [2, 3]), "bias": Tensor(zeros: [2]),
                                           "extra": Tensor(zeros: [1])])) { e in
            XCTAssertEqual(e as? ModuleError, .unexpectedParameter("extra"))
        }
    }

    func testLinearComputesXWtPlusB() {
        // W = [[1, 2], [3, 4], [5, 6]], b = [1, 0, -1], x = [1, 1] → [1+2+1, 3+4, 5+6-1] = [4, 7, 10]
        let lin = Linear(weight: Tensor([1, 2, 3, 4, 5, 6], shape: [3, 2]), bias: Tensor([1, 0, -1]))
        XCTAssertEqual(lin(Tensor([1, 1], shape: [1, 2])).scalars, [4, 7, 10])
    }

    func testDropoutOnlyInTraining() {
        let d = Dropout(0.5, seed: 1)
        let x = Tensor(ones: [1000])
        let y = d(x)
        let zeros = y.scalars.filter { $0 == 0 }.count
        XCTAssertGreaterThan(zeros, 400)
        XCTAssertLessThan(zeros, 600)
        XCTAssertTrue(y.scalars.allSatisfy { $0 == 0 || $0 == 2 })   // kept entries scaled by 1/(1−p)
        d.train(false)
        XCTAssertEqual(d(x).scalars, x.scalars)
    }

    func testMLPKinds() {
        var rng = RandomGenerator(seed: 1)
        let swiglu = MLP(hidden: 4, intermediate: 6, kind: .swiglu, rng: &rng)
        let gelu = MLP(hidden: 4, intermediate: 6, kind: .gelu, rng: &rng)
        XCTAssertEqual(swiglu.namedParameters().map(\.name), ["gate_proj.weight", "up_proj.weight", "down_proj.weight"])
        XCTAssertEqual(gelu.namedParameters().map(\.name), ["up_proj.weight", "down_proj.weight"])
        let x = Tensor.randomNormal([2, 4], using: &rng)
        // SwiGLU by hand: down(silu(gate x) ⊙ up x)
        let manual = swiglu.downProj(swiglu.gateProj!(x).silu() * swiglu.upProj(x))
        XCTAssertEqual(swiglu(x).scalars, manual.scalars)
        XCTAssertEqual(gelu(x).shape, [2, 4])
    }

    /// A lazily made parameter: its shape without values, values made once on first read (frozen
    /// or trainable as the parameter is), replaced by `assign`, counted by `parameterCount`.
    func testLazyParameter() {
        var made = 0
        let p = Parameter(Tensor(zeros: [2, 3]), frozen: true)
        p.assignLazily { made += 1; return Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]) }
        XCTAssertTrue(p.isLazy)
        XCTAssertEqual(p.shape, [2, 3])
        XCTAssertEqual(made, 0)
        XCTAssertEqual(p.value.scalars, [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(p.value.scalars, [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(made, 1)
        XCTAssertFalse(p.isLazy)
        p.assignLazily { Tensor(ones: [2, 3]) }
        p.assign(Tensor(zeros: [2, 3]))
        XCTAssertEqual(p.value.scalars, [0, 0, 0, 0, 0, 0])
        var rng = RandomGenerator(seed: 1)
        let linear = Linear(4, 3, rng: &rng)
        linear.weight.assignLazily { Tensor(ones: [3, 4]) }
        XCTAssertEqual(linear.parameterCount, 15)
        XCTAssertTrue(linear.weight.isLazy)
    }
}
