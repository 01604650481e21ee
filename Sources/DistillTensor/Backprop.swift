/// Every op that autodiff knows, with what it saved for its backward pass, and — in one
/// switch — the rule that turns the gradient of an op's output into gradients of its inputs.
/// Adding an op means a case here, a rule below, and a finite-difference test.
enum Op {
    case leaf
    case unary(UnaryFunction)
    case binary(BinaryFunction)
    case sum(keptShape: [Int])
    case max(axis: Int, argmax: [Int32])
    case logSumExp(axis: Int)
    case softmax, logSoftmax
    case matmul(transA: Bool, transB: Bool)
    case reshape
    case permute([Int])
    case slice(axis: Int, start: Int)
    case concat(axis: Int, sizes: [Int])
    case broadcast
    case indexSelect(axis: Int, indices: [Int])
    case gather(index: [Int], k: Int)
    case `where`(condition: Tensor)
    case maskedFill(mask: Tensor)
    case rmsNorm(rstd: [Float])
    case swiglu
    case layerNorm(stats: [Float])
    case rotary(cos: Tensor, sin: Tensor)
    case attention(scale: Float, causal: Bool, probs: Tensor)
    case crossEntropy(targets: [Int], ignoreIndex: Int, smoothing: Float, logSumExp: [Float], count: Int)
    case dropout(mask: Tensor)
    /// A scalar whose gradients with respect to its inputs were computed by the caller
    /// (`Tensor.withPrecomputedGradients`): fused losses that run their own backward pass.
    case precomputed(gradients: [Tensor])

    var name: String {
        switch self {
        case .unary(let f): return f.name
        case .binary(let f): return "\(f)"
        default: return String("\(self)".prefix(while: { $0 != "(" }))
        }
    }
}

/// Gradients of `node`'s inputs given the gradient `g` of its output (nil: input needs none).
func backward(_ node: Node, _ g: Tensor) -> [Tensor?] {
    let x = node.inputs
    let y = { Tensor(shape: g.shape, storage: node.storage!) }
    switch node.op {
    case .leaf:
        return []

    case .unary(let f):
        return [f.backward(x: x[0].detached(), y: y(), grad: g)]

    case .binary(let f):
        let (ga, gb) = f.backward(a: x[0], b: x[1], y: y(), grad: g)
        return [ga, gb]

    case .sum(let kept):
        // Each input element contributed once: broadcast the gradient back.
        return [broadcastKernel(g.reshaped(kept), to: x[0].shape)]

    case let .max(axis, argmax):
        let (outer, n, inner) = splitAround(x[0].shape, axis: axis)
        let out = Tensor(zeros: x[0].shape)
        for w in 0..<(outer * inner) {
            let o = w / inner, i = w % inner
            out.storage.pointer[(o * n + Int(argmax[w])) * inner + i] = g.storage.pointer[w]
        }
        return [out]

    case .logSumExp(let axis):
        // d/dx log Σ eˣ = softmax(x)
        var kept = x[0].shape
        kept[axis] = 1
        let p = (x[0].detached() - y().reshaped(kept)).exp()
        return [p * g.reshaped(kept)]

    case .softmax:
        return [softmaxBackward(y: y(), grad: g, log: false)]

    case .logSoftmax:
        return [softmaxBackward(y: y(), grad: g, log: true)]

    case let .matmul(ta, tb):
        let (ga, gb) = matmulBackward(a: x[0], b: x[1], transA: ta, transB: tb, grad: g)
        return [ga, gb]

    case .reshape:
        return [g.reshaped(x[0].shape)]

    case .permute(let p):
        return [g.permuted(inversePermutation(p))]

    case let .slice(axis, start):
        // Place the gradient in zeros at the sliced range.
        let full = x[0].shape[axis], len = g.shape[axis]
        var parts: [Tensor] = []
        var s = g.shape
        if start > 0 { s[axis] = start; parts.append(Tensor(zeros: s)) }
        parts.append(g)
        if start + len < full { s[axis] = full - start - len; parts.append(Tensor(zeros: s)) }
        return [concat(parts, axis: axis)]

    case let .concat(axis, sizes):
        var start = 0
        return sizes.map { n in defer { start += n }; return g.slice(axis: axis, start: start, length: n) }

    case .broadcast:
        return [g.sum(to: x[0].shape)]

    case let .indexSelect(axis, indices):
        return [indexSelectBackward(g, shape: x[0].shape, axis: axis, indices: indices)]

    case let .gather(index, k):
        return [gatherBackward(g, shape: x[0].shape, index: index, k: k)]

    case .where(let c):
        let ga = x[0].requiresGrad ? zipKernel(g, c, WhereMaskSet()).sum(to: x[0].shape) : nil
        let gb = x[1].requiresGrad ? zipKernel(g, c, WhereMaskZero()).sum(to: x[1].shape) : nil
        return [ga, gb]

    case .maskedFill(let m):
        return [zipKernel(g, m, WhereMaskZero())]

    case .swiglu:
        let (gg, gu) = swigluBackward(gate: x[0], up: x[1], grad: g)
        return [gg, gu]

    case .rmsNorm(let rstd):
        let (gx, gw) = rmsNormBackward(x: x[0], weight: x[1], rstd: rstd, grad: g)
        return [gx, gw]

    case .layerNorm(let stats):
        let (gx, gw, gb) = layerNormBackward(x: x[0], weight: x[1], stats: stats, grad: g)
        return x.count == 3 ? [gx, gw, gb] : [gx, gw]

    case let .rotary(cos, sin):
        return [rotaryKernel(g, cos: cos, sin: sin, inverse: true)]

    case let .attention(scale, causal, probs):
        let (gq, gk, gv) = attentionBackward(q: x[0], k: x[1], v: x[2], probs: probs, scale: scale, causal: causal, grad: g)
        return [gq, gk, gv]

    case let .crossEntropy(targets, ignoreIndex, smoothing, lse, count):
        return [crossEntropyBackward(logits: x[0], targets: targets, ignoreIndex: ignoreIndex,
                                     smoothing: smoothing, logSumExp: lse, count: count, grad: g)]

    case .dropout(let mask):
        return [g * mask]

    case .precomputed(let stored):
        // L = s·f(x) with ∂f/∂x given: ∂L/∂x = s·stored (no copy when s = 1, the usual seed).
        let s = g.item
        return zip(x, stored).map { input, grad in
            guard input.requiresGrad else { return nil }
            return s == 1 ? grad : grad * s
        }
    }
}
