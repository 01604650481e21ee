import CDistillKernels

extension Tensor {
    /// SwiGLU, silu(self)·up (self the gate): the MLP of Llama, Qwen, Mistral, SmolLM. One pass
    /// forward and one backward instead of silu, product and their backwards (five passes over
    /// the [tokens, intermediate] activations, and silu's output kept for the backward); the same
    /// values as `silu() * up` to the bit, gradients included.
    public func swiglu(_ up: Tensor) -> Tensor {
        precondition(shape == up.shape, "swiglu: gate \(shape) and up \(up.shape) differ")
        let out = Tensor(uninitializedShape: shape)
        let pg = storage.pointer, pu = up.storage.pointer, po = out.storage.pointer
        // The chunks of `silu()`, so that each value takes the same (vector or scalar) path.
        parallelFor(count, grain: 1 << 14) { r in dk_swiglu(pg + r.lowerBound, pu + r.lowerBound, po + r.lowerBound, r.count) }
        return out.recorded(.swiglu, [self, up])
    }
}

/// Gradients of gate and up (nil where not needed) given the gradient g of silu(gate)·up.
func swigluBackward(gate: Tensor, up: Tensor, grad g: Tensor) -> (Tensor?, Tensor?) {
    precondition(g.shape == gate.shape, "swiglu backward: gradient \(g.shape) vs input \(gate.shape)")
    let dgate = gate.requiresGrad ? Tensor(uninitializedShape: gate.shape) : nil
    let dup = up.requiresGrad ? Tensor(uninitializedShape: up.shape) : nil
    guard dgate != nil || dup != nil else { return (nil, nil) }
    let px = gate.storage.pointer, pu = up.storage.pointer, pg = g.storage.pointer
    let pdx = dgate?.storage.pointer, pdu = dup?.storage.pointer
    parallelFor(gate.count, grain: 1 << 14) { r in
        let o = r.lowerBound
        dk_swiglu_backward(px + o, pu + o, pg + o, pdx.map { $0 + o }, pdu.map { $0 + o }, r.count)
    }
    return (dgate, dup)
}
