import DistillNN
import DistillTensor
import XCTest

final class LoRATests: XCTestCase {
    let config = TransformerConfig(vocabSize: 20, hidden: 16, layers: 2, heads: 4, kvHeads: 2, intermediate: 24,
                                   tieEmbeddings: false, qkvBias: true)
    let ids = [3, 1, 4, 1, 5, 9, 2, 6]

    func logits(_ m: TransformerLM, _ ids: [Int]? = nil, batch: Int = 2) -> [Float] {
        let ids = ids ?? self.ids
        return withoutGradients { m.forward(ids, batch: batch, length: ids.count / batch).logits.scalars }
    }

    func maxDiff(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        return zip(a, b).map { abs($0 - $1) }.max() ?? 0
    }

    /// Gives every B a random value so that the adapters change the outputs.
    func randomizeB(_ m: Module, seed: UInt64 = 7) {
        var rng = RandomGenerator(seed: seed)
        for (_, lin) in loraModules(of: m) {
            lin.loraB!.weight.assign(.randomNormal(lin.loraB!.weight.shape, std: 0.3, using: &rng))
        }
    }

    func testFreshAdapterLeavesOutputsAndNamesFollowPEFT() throws {
        let m = TransformerLM(config, seed: 1)
        let before = logits(m)
        let names = try applyLoRA(to: m, config: LoRAConfig(rank: 4, alpha: 8, targetModules: ["q_proj", "v_proj"]), seed: 3)
        XCTAssertEqual(names, ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
                               "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"])
        // B = 0  =>  base(x) + (alpha/r)·B·A·x = base(x) exactly.
        XCTAssertEqual(logits(m), before)
        let all = m.namedParameters().map(\.name)
        XCTAssertTrue(all.contains("model.layers.0.self_attn.q_proj.lora_A.weight"))
        XCTAssertTrue(all.contains("model.layers.1.self_attn.v_proj.lora_B.weight"))
        let q = m.model.layers[0].selfAttn.qProj
        XCTAssertEqual(q.loraA!.weight.shape, [4, 16])
        XCTAssertEqual(q.loraB!.weight.shape, [16, 4])
        XCTAssertEqual(q.loraScale, 2)
        // kaiming_uniform_(a=√5): U(−1/√in, 1/√in) = U(−0.25, 0.25), not all zero; B all zero.
        let a = q.loraA!.weight.value.scalars
        XCTAssertTrue(a.allSatisfy { abs($0) <= 0.25 })
        XCTAssertGreaterThan(a.map(abs).max()!, 0.15)
        XCTAssertTrue(q.loraB!.weight.value.scalars.allSatisfy { $0 == 0 })
        // Same seed, same A.
        let m2 = TransformerLM(config, seed: 1)
        try applyLoRA(to: m2, config: LoRAConfig(rank: 4, alpha: 8), seed: 3)
        XCTAssertEqual(m2.model.layers[0].selfAttn.qProj.loraA!.weight.value.scalars, a)
    }

    func testOnlyAdaptersTrain() throws {
        let m = TransformerLM(config, seed: 1)
        try applyLoRA(to: m, config: LoRAConfig(rank: 2, alpha: 4, targetModules: ["q_proj", "v_proj", "down_proj"]))
        randomizeB(m)
        let (_, g) = valueAndGradient(m) { $0.languageModelLoss(self.ids, batch: 2, length: 4) }
        XCTAssertEqual(g.names.count, 2 * 3 * 2)
        XCTAssertTrue(g.names.allSatisfy { $0.hasSuffix(".lora_A.weight") || $0.hasSuffix(".lora_B.weight") })
        XCTAssertEqual(Set(m.trainableParameters.map(\.name)), Set(g.names))
        XCTAssertTrue(g.tensors.allSatisfy { $0.scalars.contains { $0 != 0 } })
        // 2 layers × (q: 2·16 + 16·2, v: 2·16 + 8·2, down: 2·24 + 16·2)
        XCTAssertEqual(m.trainableParameterCount, 2 * (64 + 48 + 80))
    }

    func testAdapterGradientMatchesFiniteDifferences() throws {
        // loss = Σ c ⊙ y², y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ  =>  ∂loss/∂B = s·(2c⊙y)ᵀ·(x·Aᵀ), ∂loss/∂A = s·Bᵀ·(2c⊙y)ᵀ·x
        var rng = RandomGenerator(seed: 11)
        let lin = Linear(5, 3, rng: &rng)
        lin.attachLoRA(rank: 2, alpha: 3, rng: &rng)
        lin.loraB!.weight.assign(.randomNormal([3, 2], std: 0.5, using: &rng))
        let x = Tensor.randomNormal([4, 5], using: &rng)
        let c = Tensor.randomNormal([4, 3], using: &rng)
        let loss = { (l: Linear) -> Tensor in (c * l(x) * l(x)).sum() }
        let (_, g) = valueAndGradient(lin) { loss($0) }
        XCTAssertEqual(g.names, ["lora_A.weight", "lora_B.weight"])
        for (name, p) in [("lora_A.weight", lin.loraA!.weight), ("lora_B.weight", lin.loraB!.weight)] {
            let analytic = g[name]!.scalars
            let base = p.value.scalars
            let h: Float = 1e-2
            for i in 0..<base.count {
                var plus = base, minus = base
                plus[i] += h
                minus[i] -= h
                p.assign(Tensor(plus, shape: p.shape))
                let lp = withoutGradients { loss(lin).item }
                p.assign(Tensor(minus, shape: p.shape))
                let lm = withoutGradients { loss(lin).item }
                p.assign(Tensor(base, shape: p.shape))
                let numeric = (lp - lm) / (2 * h)
                XCTAssertEqual(analytic[i], numeric, accuracy: 2e-3 * max(1, abs(numeric)), "\(name)[\(i)]")
            }
        }
    }

    func testMergeUnmergeAndUnload() throws {
        let m = TransformerLM(config, seed: 2)
        let base = logits(m)
        let baseW = m.model.layers[1].selfAttn.vProj.weight.value.scalars
        try applyLoRA(to: m, config: LoRAConfig(rank: 4, alpha: 16, targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"]))
        randomizeB(m)
        let adapted = logits(m)
        XCTAssertGreaterThan(maxDiff(adapted, base), 1e-3)
        mergeLoRA(in: m)
        XCTAssertTrue(m.model.layers[0].selfAttn.qProj.loraMerged)
        XCTAssertLessThan(maxDiff(logits(m), adapted), 1e-5)
        // W' = W + (alpha/r)·B·A
        let v = m.model.layers[1].selfAttn.vProj
        let delta = withoutGradients { 4 * v.loraB!.weight.value.matmul(v.loraA!.weight.value) }.scalars
        XCTAssertLessThan(maxDiff(v.weight.value.scalars, zip(baseW, delta).map { $0 + $1 }), 1e-6)
        unmergeLoRA(in: m)
        XCTAssertLessThan(maxDiff(logits(m), adapted), 1e-5)
        XCTAssertLessThan(maxDiff(v.weight.value.scalars, baseW), 1e-6)
        // merge_and_unload: no adapter left, outputs kept, names back to the base model's.
        mergeLoRA(in: m, unload: true)
        XCTAssertTrue(loraModules(of: m).isEmpty)
        XCTAssertFalse(m.namedParameters().contains { $0.name.contains("lora") })
        XCTAssertLessThan(maxDiff(logits(m), adapted), 1e-5)
        // remove (unload without merging) restores the base.
        let m2 = TransformerLM(config, seed: 2)
        try applyLoRA(to: m2, config: LoRAConfig(rank: 4, alpha: 16))
        randomizeB(m2)
        mergeLoRA(in: m2)
        removeLoRA(from: m2)
        XCTAssertLessThan(maxDiff(logits(m2), base), 1e-5)
    }

    func testStateDictRoundTrip() throws {
        let m = TransformerLM(config, seed: 3)
        let lc = LoRAConfig(rank: 2, alpha: 4, targetModules: ["q_proj", "v_proj"])
        try applyLoRA(to: m, config: lc, seed: 5)
        randomizeB(m)
        let state = loraStateDict(of: m)
        XCTAssertEqual(state.count, 8)
        XCTAssertTrue(state.keys.allSatisfy { $0.contains(".lora_A.") || $0.contains(".lora_B.") })
        let other = TransformerLM(config, seed: 3)
        try applyLoRA(to: other, config: lc, seed: 99)
        XCTAssertNotEqual(logits(other), logits(m))
        try loadLoRAStateDict(state, into: other)
        XCTAssertEqual(logits(other), logits(m))
        var missing = state
        missing.removeValue(forKey: "model.layers.0.self_attn.q_proj.lora_A.weight")
        XCTAssertThrowsError(try loadLoRAStateDict(missing, into: other)) { e in
            XCTAssertEqual(e as? LoRAError, .missingAdapterTensor("model.layers.0.self_attn.q_proj.lora_A.weight"))
        }
        var extra = state
        extra["model.layers.0.self_attn.k_proj.lora_A.weight"] = Tensor(zeros: [2, 16])
        XCTAssertThrowsError(try loadLoRAStateDict(extra, into: other)) { e in
            XCTAssertEqual(e as? LoRAError, .unexpectedAdapterTensor("model.layers.0.self_attn.k_proj.lora_A.weight"))
        }
    }

    func testBadOptionsAndTargets() {
        let m = TransformerLM(config)
        XCTAssertThrowsError(try applyLoRA(to: m, config: LoRAConfig(rank: 0))) { e in
            XCTAssertEqual(e as? LoRAError, .invalidOption("rank", "must be positive, found 0"))
        }
        XCTAssertThrowsError(try applyLoRA(to: m, config: LoRAConfig(dropout: 1)))
        XCTAssertThrowsError(try applyLoRA(to: m, config: LoRAConfig(targetModules: ["nope"]))) { e in
            XCTAssertEqual(e as? LoRAError, .noMatchingModules(["nope"]))
        }
        XCTAssertThrowsError(try applyLoRA(to: m, config: LoRAConfig(targetModules: ["self_attn"]))) { e in
            XCTAssertEqual(e as? LoRAError, .notLinear("model.layers.0.self_attn"))
        }
        XCTAssertNoThrow(try applyLoRA(to: m, config: LoRAConfig(targetModules: ["q_proj"])))
        XCTAssertThrowsError(try applyLoRA(to: m, config: LoRAConfig(targetModules: ["q_proj"]))) { e in
            XCTAssertEqual(e as? LoRAError, .alreadyAttached("model.layers.0.self_attn.q_proj"))
        }
    }

    func testDropoutOnlyOnTheAdapterPathInTraining() throws {
        var rng = RandomGenerator(seed: 4)
        let lin = Linear(6, 4, rng: &rng)
        let x = Tensor.randomNormal([3, 6], using: &rng)
        let base = lin(x).scalars
        lin.attachLoRA(rank: 2, alpha: 2, dropout: 0.5, rng: &rng)
        lin.loraB!.weight.assign(.randomNormal([4, 2], using: &rng))
        let train1 = lin(x).scalars
        lin.train(false)
        let eval = lin(x).scalars
        XCTAssertNotEqual(train1, eval)
        // eval: base + s·B·A·x exactly as without dropout
        let expected = withoutGradients { Tensor(base, shape: [3, 4]) + lin.loraB!(lin.loraA!(x)) }.scalars
        XCTAssertLessThan(maxDiff(eval, expected), 1e-5)
    }

    // MARK: prefix tuning

    func testPrefixChangesOutputsAndOnlyPrefixesTrain() throws {
        let m = TransformerLM(config, seed: 5)
        let base = logits(m)
        let names = try PrefixTuning.apply(to: m, length: 3, seed: 1)
        XCTAssertEqual(names.count, 4)
        XCTAssertEqual(m.model.layers[0].selfAttn.prefixKeys!.shape, [2, 3, 4])
        XCTAssertTrue(m.namedParameters().map(\.name).contains("model.layers.1.self_attn.prefix_values"))
        XCTAssertGreaterThan(maxDiff(logits(m), base), 1e-3)
        let (_, g) = valueAndGradient(m) { $0.languageModelLoss(self.ids, batch: 2, length: 4) }
        XCTAssertEqual(Set(g.names), Set(names))
        XCTAssertTrue(g.tensors.allSatisfy { $0.scalars.contains { $0 != 0 } })
        // Finite differences on one prefix value entry.
        let p = m.model.layers[1].selfAttn.prefixValues!
        let i = 5, h: Float = 1e-2
        var v = p.value.scalars
        let v0 = v[i]
        v[i] = v0 + h; p.assign(Tensor(v, shape: p.shape))
        let lp = withoutGradients { m.languageModelLoss(ids, batch: 2, length: 4).item }
        v[i] = v0 - h; p.assign(Tensor(v, shape: p.shape))
        let lm = withoutGradients { m.languageModelLoss(ids, batch: 2, length: 4).item }
        v[i] = v0; p.assign(Tensor(v, shape: p.shape))
        XCTAssertEqual(g["model.layers.1.self_attn.prefix_values"]!.scalars[i], (lp - lm) / (2 * h), accuracy: 2e-3)
    }

    func testPrefixIsVisibleToEveryQueryAndCausalityHolds() throws {
        let m = TransformerLM(config, seed: 6)
        try PrefixTuning.apply(to: m, length: 2, seed: 2)
        // Position t's logits depend only on the prefix and tokens ≤ t: the first 3 positions of
        // a 4-token row equal those of its 3-token head.
        let full = logits(m, [3, 1, 4, 1], batch: 1)
        let head = logits(m, [3, 1, 4], batch: 1)
        XCTAssertLessThan(maxDiff(Array(full.prefix(3 * 20)), head), 1e-5)
        // Decoding with a KV cache (prefix keys S + P, queries T) equals the full forward pass.
        let cache = m.makeCache()
        let a = withoutGradients { m.forward([3, 1], batch: 1, length: 2, cache: cache).logits.scalars }
        let b = withoutGradients { m.forward([4, 1], batch: 1, length: 2, cache: cache).logits.scalars }
        XCTAssertLessThan(maxDiff(a + b, full), 1e-5)
        // A padding mask over the real keys (all visible) gives the same outputs.
        let mask = Tensor(zeros: [1, 1, 1, 4])
        let masked = withoutGradients { m.forward([3, 1, 4, 1], batch: 1, length: 4, mask: mask).logits.scalars }
        XCTAssertLessThan(maxDiff(masked, full), 1e-6)
        // The differentiable path (attention maps) agrees and shows P + T keys per query.
        let withMaps = withoutGradients { m.forward([3, 1, 4, 1], batch: 1, length: 4, outputAttentions: true) }
        XCTAssertLessThan(maxDiff(withMaps.logits.scalars, full), 1e-5)
        XCTAssertEqual(withMaps.attentions[0].shape, [1, 4, 4, 6])
        // Query 0 sees the 2 prefix keys and token 0 only: its probabilities over keys 3…5 are 0.
        XCTAssertEqual(Array(withMaps.attentions[0].scalars[3..<6]), [0, 0, 0])
        XCTAssertEqual(withMaps.attentions[0].scalars[0..<3].reduce(0, +), 1, accuracy: 1e-5)
        // The first query sees the prefix: with prefix values changed, position 0 changes.
        let p = m.model.layers[0].selfAttn.prefixValues!
        p.assign(p.value.detached() * 3)
        XCTAssertGreaterThan(maxDiff(Array(logits(m, [3, 1, 4, 1], batch: 1).prefix(20)), Array(full.prefix(20))), 1e-4)
    }

    func testZeroLengthPrefixLeavesTheModelUnchanged() throws {
        let m = TransformerLM(config, seed: 7)
        let base = logits(m)
        XCTAssertEqual(try PrefixTuning.apply(to: m, length: 0), [])
        XCTAssertEqual(logits(m), base)
        XCTAssertNil(m.model.layers[0].selfAttn.prefixKeys)
        try PrefixTuning.apply(to: m, length: 4)
        PrefixTuning.remove(from: m)
        XCTAssertEqual(logits(m), base)
        XCTAssertThrowsError(try PrefixTuning.apply(to: m, length: 257)) { e in
            XCTAssertEqual(e as? LoRAError, .invalidOption("prefix length", "must be in 0...256, found 257"))
        }
    }
}
