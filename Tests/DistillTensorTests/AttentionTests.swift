import XCTest
@testable import DistillTensor

final class AttentionTests: XCTestCase {
    // MARK: values

    func testCausalAttentionByHand() {
        // B = H = 1, T = S = 2, D = 1, scale 1/√1 = 1. q = [1, 1], k = [0, ln 3], v = [4, 8].
        // Query 0 sees key 0 only -> out₀ = v₀ = 4.
        // Query 1: scores [1·0, 1·ln 3] -> softmax [1/4, 3/4] -> out₁ = 4/4 + 3·8/4 = 7.
        let q = Tensor([1, 1], shape: [1, 1, 2, 1])
        let k = Tensor([0, Float(Foundation.log(3.0))], shape: [1, 1, 2, 1])
        let v = Tensor([4, 8], shape: [1, 1, 2, 1])
        assertValues(scaledDotProductAttention(query: q, key: k, value: v, causal: true), [4, 7], shape: [1, 1, 2, 1],
                     accuracy: 1e-5)
        let (o, p) = attentionWithProbabilities(query: q, key: k, value: v, causal: true)
        assertValues(o, [4, 7], accuracy: 1e-5)
        assertValues(p, [1, 0, 0.25, 0.75], shape: [1, 1, 2, 2], accuracy: 1e-6)
        // Not causal: query 0 also sees key 1 -> out₀ = 7 as well.
        assertValues(scaledDotProductAttention(query: q, key: k, value: v, causal: false), [7, 7], accuracy: 1e-5)
    }

    func testScaleAndMaskByHand() {
        // D = 4, default scale 1/√4 = ½: q·k = 2·ln 3 -> scaled ln 3. Keys [k₀ = 0, k₁ = q·(ln 3)/2]:
        // probabilities [¼, ¾]; v = [0, 4] -> 3. An additive mask [0, −ln 3] cancels: [½, ½] -> 2.
        let q = Tensor([1, 1, 1, 1], shape: [1, 1, 1, 4])
        let l = Float(Foundation.log(3.0)) / 2
        let k = Tensor([0, 0, 0, 0, l, l, l, l], shape: [1, 1, 2, 4])
        let v = Tensor([0, 4], shape: [1, 1, 2, 1])
        assertValues(scaledDotProductAttention(query: q, key: k, value: v, causal: false), [3], accuracy: 1e-5)
        let mask = Tensor([0, -2 * l], shape: [1, 2])
        assertValues(scaledDotProductAttention(query: q, key: k, value: v, mask: mask, causal: false), [2], accuracy: 1e-5)
        // explicit scale 0: uniform attention -> mean of v = 2
        assertValues(scaledDotProductAttention(query: q, key: k, value: v, causal: false, scale: 0), [2], accuracy: 1e-6)
    }

    func testPaddingMaskHidesKeys() {
        // Sequence 0 has 2 real keys of 3: the output must not depend on key/value 2.
        let q = uniform([2, 2, 2, 4], seed: 101), k = uniform([2, 2, 3, 4], seed: 102), v = uniform([2, 2, 3, 3], seed: 103)
        let mask = Tensor.paddingMask(lengths: [2, 3], maxLength: 3)
        let out = scaledDotProductAttention(query: q, key: k, value: v, mask: mask, causal: false)
        // Same sequence without its last key and value:
        let q0 = q.slice(axis: 0, start: 0, length: 1)
        let k0 = k.slice(axis: 0, start: 0, length: 1).slice(axis: 2, start: 0, length: 2)
        let v0 = v.slice(axis: 0, start: 0, length: 1).slice(axis: 2, start: 0, length: 2)
        let ref = scaledDotProductAttention(query: q0, key: k0, value: v0, causal: false)
        assertClose(out.slice(axis: 0, start: 0, length: 1), ref, accuracy: 1e-6)
        let (_, p) = attentionWithProbabilities(query: q, key: k, value: v, mask: mask, causal: false)
        for h in 0..<2 { for i in 0..<2 { XCTAssertEqual(p[0, h, i, 2], 0) } }
    }

    func testGroupedQueryHeadsShareKeyValueHeads() {
        // 4 query heads, 2 kv heads: query heads 0,1 read kv head 0; heads 2,3 read kv head 1. Same as
        // repeating each kv head twice and running ordinary multi-head attention.
        let q = uniform([2, 4, 3, 4], seed: 104), k = uniform([2, 2, 3, 4], seed: 105), v = uniform([2, 2, 3, 2], seed: 106)
        let out = scaledDotProductAttention(query: q, key: k, value: v, causal: true)
        let kx = k.indexSelect([0, 0, 1, 1], axis: 1), vx = v.indexSelect([0, 0, 1, 1], axis: 1)
        let ref = scaledDotProductAttention(query: q, key: kx, value: vx, causal: true)
        assertClose(out, ref, accuracy: 1e-6)
        XCTAssertEqual(out.shape, [2, 4, 3, 2])
    }

    func testCausalWithKVCacheEqualsLastRowsOfFullAttention() {
        // T = 2 new queries against S = 5 keys: the same as the last 2 rows of causal attention over 5 queries.
        let qFull = uniform([1, 2, 5, 4], seed: 107), k = uniform([1, 2, 5, 4], seed: 108), v = uniform([1, 2, 5, 3], seed: 109)
        let full = scaledDotProductAttention(query: qFull, key: k, value: v, causal: true)
        let q = qFull.slice(axis: 2, start: 3, length: 2)
        let cached = scaledDotProductAttention(query: q, key: k, value: v, causal: true)
        assertClose(cached, full.slice(axis: 2, start: 3, length: 2), accuracy: 1e-6)
    }

    func testFullyMaskedRowGivesZeros() {
        // A sequence of length 0 attends to nothing: the fused op gives zeros (not NaN).
        let q = uniform([1, 1, 2, 2], seed: 110), k = uniform([1, 1, 2, 2], seed: 111), v = uniform([1, 1, 2, 2], seed: 112)
        let out = scaledDotProductAttention(query: q, key: k, value: v, mask: Tensor.paddingMask(lengths: [0], maxLength: 2),
                                            causal: false)
        assertValues(out, [0, 0, 0, 0])
    }

    /// Inputs for the fused-vs-composed and gradient tests: B = 2, Hq = 4, Hkv = 2, T = 2, S = 3, D = 4, Dv = 3.
    private func inputs(seed: UInt64) -> (q: Tensor, k: Tensor, v: Tensor) {
        (uniform([2, 4, 2, 4], seed: seed), uniform([2, 2, 3, 4], seed: seed + 1), uniform([2, 2, 3, 3], seed: seed + 2))
    }

    private var maskTS: Tensor { uniform([2, 3], -1, 1, seed: 120) }                 // additive [T, S]
    private var padding: Tensor { Tensor.paddingMask(lengths: [3, 2], maxLength: 3) }  // [B, 1, 1, S]

    func testFusedEqualsComposedAttention() {
        let (q, k, v) = inputs(seed: 121)
        let cases: [(Tensor?, Bool, String)] = [(nil, false, "plain"), (nil, true, "causal"), (maskTS, false, "mask [T,S]"),
                                                (maskTS, true, "causal + mask [T,S]"), (padding, true, "causal + padding"),
                                                (padding, false, "padding")]
        for (mask, causal, name) in cases {
            let fused = scaledDotProductAttention(query: q, key: k, value: v, mask: mask, causal: causal)
            let (composed, p) = attentionWithProbabilities(query: q, key: k, value: v, mask: mask, causal: causal)
            assertClose(fused, composed, accuracy: 1e-5, name)
            XCTAssertEqual(p.shape, [2, 4, 2, 3], name)
            assertValues(p.sum(axis: -1), [Float](repeating: 1, count: 16), accuracy: 1e-6, name)
        }
        // A mask [1, Hq, T, S] (per head) and [B, 1, T, S].
        let perHead = uniform([1, 4, 2, 3], seed: 122), perBatch = uniform([2, 1, 2, 3], seed: 123)
        for mask in [perHead, perBatch] {
            let fused = scaledDotProductAttention(query: q, key: k, value: v, mask: mask, causal: false, scale: 0.7)
            let (composed, _) = attentionWithProbabilities(query: q, key: k, value: v, mask: mask, causal: false, scale: 0.7)
            assertClose(fused, composed, accuracy: 1e-5, "mask \(mask.shape)")
        }
    }

    func testAttentionShape() throws {
        let s = try AttentionShape(query: [2, 4, 3, 8], key: [2, 2, 5, 8], value: [2, 2, 5, 6], mask: [3, 5])
        XCTAssertEqual([s.batch, s.queryHeads, s.kvHeads, s.queries, s.keys, s.headDim, s.valueDim], [2, 4, 2, 3, 5, 8, 6])
        XCTAssertNoThrow(try AttentionShape(query: [2, 4, 3, 8], key: [2, 2, 5, 8], value: [2, 2, 5, 6], mask: [2, 1, 1, 5]))
        XCTAssertNoThrow(try AttentionShape(query: [2, 4, 3, 8], key: [2, 2, 5, 8], value: [2, 2, 5, 6], mask: [1, 4, 3, 5]))
        XCTAssertNoThrow(try AttentionShape(query: [2, 4, 3, 8], key: [2, 2, 5, 8], value: [2, 2, 5, 6], mask: nil))
    }

    func testAttentionShapeErrors() {
        func expectError(_ q: [Int], _ k: [Int], _ v: [Int], _ m: [Int]?, mentions: [[Int]], _ words: String,
                         line: UInt = #line) {
            XCTAssertThrowsError(try AttentionShape(query: q, key: k, value: v, mask: m), line: line) { error in
                guard case let .shapeMismatch(op, _, reason)? = error as? TensorError else {
                    return XCTFail("expected shapeMismatch, got \(error)", line: line)
                }
                XCTAssertEqual(op, "attention", line: line)
                XCTAssertTrue(reason.contains(words), "reason: \(reason)", line: line)
                let text = "\(error)"
                XCTAssertTrue(text.hasPrefix("attention:"), text, line: line)
                for s in mentions { XCTAssertTrue(text.contains("\(s)"), "\(text) should name \(s)", line: line) }
            }
        }
        // rank 3 query
        expectError([4, 3, 8], [2, 2, 5, 8], [2, 2, 5, 8], nil, mentions: [[4, 3, 8]], "rank-4")
        // head dimension of key differs from query's
        expectError([2, 4, 3, 8], [2, 2, 5, 7], [2, 2, 5, 8], nil, mentions: [[2, 4, 3, 8], [2, 2, 5, 7]], "disagree")
        // value length differs from key length
        expectError([2, 4, 3, 8], [2, 2, 5, 8], [2, 2, 4, 8], nil, mentions: [[2, 2, 4, 8]], "disagree")
        // batch differs
        expectError([2, 4, 3, 8], [1, 2, 5, 8], [1, 2, 5, 8], nil, mentions: [[2, 4, 3, 8], [1, 2, 5, 8]], "disagree")
        // 4 query heads with 3 kv heads
        expectError([2, 4, 3, 8], [2, 3, 5, 8], [2, 3, 5, 8], nil, mentions: [[2, 4, 3, 8], [2, 3, 5, 8]], "not a multiple")
        // mask [T, S] with the wrong S, and a 4-D mask with the wrong batch
        expectError([2, 4, 3, 8], [2, 2, 5, 8], [2, 2, 5, 8], [3, 4], mentions: [[3, 4]], "mask")
        expectError([2, 4, 3, 8], [2, 2, 5, 8], [2, 2, 5, 8], [3, 1, 1, 5], mentions: [[3, 1, 1, 5]], "mask")
        expectError([2, 4, 3, 8], [2, 2, 5, 8], [2, 2, 5, 8], [1, 5], mentions: [[1, 5]], "mask")
    }

    // MARK: gradients
    // fused: dV = Σ_h Pᵀ·dO, dS = P ⊙ (dO·vᵀ − rowsum(P ⊙ dO·vᵀ)), dQ = scale·dS·k, dK = Σ_h scale·dSᵀ·q

    func testFusedAttentionGradientPlain() {
        let (q, k, v) = inputs(seed: 131)
        checkGradients(inputs: [q, k, v]) { scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], causal: false) }
    }

    func testFusedAttentionGradientCausalKVCache() {
        // T = 2 < S = 3, GQA 4/2
        let (q, k, v) = inputs(seed: 132)
        checkGradients(inputs: [q, k, v]) { scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], causal: true) }
    }

    func testFusedAttentionGradientWithMasks() {
        let (q, k, v) = inputs(seed: 133)
        let m = maskTS, pad = padding
        checkGradients(inputs: [q, k, v]) {
            scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], mask: m, causal: true)
        }
        checkGradients(inputs: [q, k, v]) {
            scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], mask: pad, causal: false, scale: 0.8)
        }
    }

    func testFusedAttentionGradientSameHeads() {
        // Hq = Hkv, T = S, with Dv ≠ D
        let q = uniform([1, 2, 3, 2], seed: 134), k = uniform([1, 2, 3, 2], seed: 135), v = uniform([1, 2, 3, 3], seed: 136)
        checkGradients(inputs: [q, k, v]) { scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], causal: true) }
    }

    func testAttentionWithProbabilitiesGradients() {
        // Both outputs are differentiable: check each against finite differences.
        let (q, k, v) = inputs(seed: 137)
        let m = maskTS, pad = padding
        checkGradients(inputs: [q, k, v]) {
            attentionWithProbabilities(query: $0[0], key: $0[1], value: $0[2], mask: m, causal: true).output
        }
        checkGradients(inputs: [q, k, v]) {
            attentionWithProbabilities(query: $0[0], key: $0[1], value: $0[2], mask: m, causal: true).probabilities
        }
        checkGradients(inputs: [q, k, v]) {
            attentionWithProbabilities(query: $0[0], key: $0[1], value: $0[2], mask: pad, causal: false).output
        }
        checkGradients(inputs: [q, k, v]) {
            let (o, p) = attentionWithProbabilities(query: $0[0], key: $0[1], value: $0[2], mask: pad, causal: false)
            return concat([o.reshaped([-1]), p.reshaped([-1])], axis: 0)
        }
    }

    func testFusedAndComposedGradientsAgree() {
        let (q, k, v) = inputs(seed: 138)
        let g = uniform([2, 4, 2, 3], seed: 139), pad = padding
        let fused = valueAndGradient(at: [q, k, v]) {
            (scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2], mask: pad, causal: true) * g).sum()
        }.gradients
        let composed = valueAndGradient(at: [q, k, v]) {
            (attentionWithProbabilities(query: $0[0], key: $0[1], value: $0[2], mask: pad, causal: true).output * g).sum()
        }.gradients
        for i in 0..<3 { assertClose(fused[i], composed[i], accuracy: 1e-5, "input \(i)") }
    }

    /// Attention over capacity buffers [B, Hkv, C, D] (a KV cache filled to `length`) equals the
    /// fused attention over the filled part: one query (decode) and several, GQA, padding and
    /// [T, S] masks, causal and not; values past `length` (garbage here) are never read.
    func testCachedAttentionEqualsFusedOnTheFilledPart() {
        for (t, s) in [(1, 3), (2, 3), (1, 1)] {
            let q = uniform([2, 4, t, 4], seed: 300 + UInt64(t)), cap = 7
            let kb = uniform([2, 2, cap, 4], seed: 310), vb = uniform([2, 2, cap, 3], seed: 311)
            let k = kb.slice(axis: 2, start: 0, length: s), v = vb.slice(axis: 2, start: 0, length: s)
            let masks: [Tensor?] = [nil, Tensor.paddingMask(lengths: [s, max(1, s - 1)], maxLength: s), uniform([t, s], seed: 312)]
            for mask in masks {
                for causal in [false, true] {
                    let want = scaledDotProductAttention(query: q, key: k, value: v, mask: mask, causal: causal)
                    let got = cachedAttention(query: q, keys: kb, values: vb, length: s, mask: mask, causal: causal)
                    XCTAssertEqual(got.shape, want.shape)
                    for (a, b) in zip(got.scalars, want.scalars) {
                        XCTAssertEqual(a, b, accuracy: 1e-6, "T \(t) S \(s) mask \(mask?.shape ?? []) causal \(causal)")
                    }
                }
            }
        }
    }
}
