/// Reverse-mode automatic differentiation.
///
/// While gradient recording is on (the default), every op whose inputs include a tensor that
/// requires a gradient attaches a `Node` to its result: the op (with whatever it saved for the
/// backward pass) and its inputs. `gradients(of:wrt:)` walks that graph from the output back to
/// the leaves in reverse topological order, applying the rules in `Backprop.swift`, and sums the
/// contributions of a tensor used more than once.
public final class Node {
    let op: Op
    let inputs: [Tensor]
    /// The op's result values (rules such as exp′ = exp read them); nil for leaves.
    let storage: Storage?

    init(op: Op, inputs: [Tensor], storage: Storage?) {
        self.op = op
        self.inputs = inputs
        self.storage = storage
    }
}

/// Whether ops record the graph. Off inside `withoutGradients`.
public enum GradientMode {
    @TaskLocal static var enabled = true
    public static var isEnabled: Bool { enabled }
}

/// Runs `body` without recording gradients (inference, optimizer updates, teacher forwards).
public func withoutGradients<R>(_ body: () throws -> R) rethrows -> R {
    try GradientMode.$enabled.withValue(false, operation: body)
}

extension Tensor {
    /// The same values as a leaf that requires a gradient.
    public func requiringGrad() -> Tensor {
        Tensor(shape: shape, storage: storage, node: Node(op: .leaf, inputs: [], storage: nil))
    }

    /// Attaches the op to `self` (an op's fresh result) when recording is on and an input needs it.
    @inline(__always)
    func recorded(_ op: @autoclosure () -> Op, _ inputs: [Tensor]) -> Tensor {
        guard GradientMode.enabled, inputs.contains(where: { $0.node != nil }) else { return self }
        return Tensor(shape: shape, storage: storage, node: Node(op: op(), inputs: inputs, storage: storage))
    }
}

extension Tensor {
    /// A scalar `value` whose gradients with respect to `inputs` the caller has already computed
    /// (`gradients[i]` is ∂value/∂inputs[i], shaped like `inputs[i]`). The backward pass hands
    /// each stored gradient, scaled by the gradient flowing into the result, to its input. This is
    /// the hook for fused ops that do their own forward and backward at once — a chunked loss that
    /// must not leave `[positions, vocab]` logits on the tape. When recording is off, or no input
    /// requires a gradient, the result is `value` without a record.
    public static func withPrecomputedGradients(of value: Tensor, inputs: [Tensor], gradients: [Tensor]) -> Tensor {
        precondition(value.count == 1, "withPrecomputedGradients: value must be a scalar, got shape \(value.shape)")
        precondition(inputs.count == gradients.count,
                     "withPrecomputedGradients: \(gradients.count) gradients for \(inputs.count) inputs")
        for (x, g) in zip(inputs, gradients) {
            precondition(x.shape == g.shape,
                         "withPrecomputedGradients: gradient of shape \(g.shape) for input of shape \(x.shape)")
        }
        let plain = Tensor(shape: value.shape, storage: value.storage)
        return plain.recorded(.precomputed(gradients: gradients.map { $0.detached() }), inputs)
    }
}

/// Gradients of `output` with respect to each tensor in `wrt` (leaves or intermediate results).
/// `seed` is the gradient flowing into `output`; by default ones (so a non-scalar output is
/// treated as summed). A tensor that `output` does not depend on gets zeros.
///
/// `onReady(i, g)` hears each `wrt[i]`'s gradient as soon as it is final — during the backward
/// pass, in an order fixed by the graph (data-parallel training starts all-reducing it while the
/// pass goes on); the ones `output` does not depend on are reported at the end, as zeros.
public func gradients(of output: Tensor, wrt: [Tensor], seed: Tensor? = nil,
                      onReady: ((Int, Tensor) -> Void)? = nil) -> [Tensor] {
    let seedGrad = seed ?? Tensor(ones: output.shape)
    precondition(seedGrad.shape == output.shape,
                 "gradients: seed shape \(seedGrad.shape) differs from output shape \(output.shape)")
    guard let root = output.node else {
        let zeros = wrt.map { Tensor(zeros: $0.shape) }
        for (i, z) in zeros.enumerated() { onReady?(i, z) }
        return zeros
    }
    let wanted = Set(wrt.compactMap { $0.node.map(ObjectIdentifier.init) })
    // Positions in `wrt` of each node (a tensor may be asked for twice).
    var positions: [ObjectIdentifier: [Int]] = [:]
    if onReady != nil {
        for (i, t) in wrt.enumerated() { if let n = t.node { positions[ObjectIdentifier(n), default: []].append(i) } }
    }

    // Reverse topological order by an iterative depth-first search.
    var order: [Node] = []
    var visited = Set<ObjectIdentifier>()
    var stack: [(Node, Int)] = [(root, 0)]
    visited.insert(ObjectIdentifier(root))
    while let top = stack.popLast() {
        let node = top.0
        var next = top.1
        var pushedChild = false
        while next < node.inputs.count {
            let child = node.inputs[next].node
            next += 1
            if let child, visited.insert(ObjectIdentifier(child)).inserted {
                stack.append((node, next))
                stack.append((child, 0))
                pushedChild = true
                break
            }
        }
        if !pushedChild { order.append(node) }
    }

    var grads: [ObjectIdentifier: Tensor] = [ObjectIdentifier(root): seedGrad]
    var result: [ObjectIdentifier: Tensor] = [:]
    withoutGradients {
        for node in order.reversed() {
            let id = ObjectIdentifier(node)
            guard let g = grads.removeValue(forKey: id) else { continue }
            if wanted.contains(id) {
                // Every consumer of this node came earlier in the order: its gradient is final.
                result[id] = g
                if let onReady { for i in positions[id] ?? [] { onReady(i, g) } }
            }
            if node.inputs.isEmpty { continue }
            let inputGrads = backward(node, g)
            for (input, ig) in zip(node.inputs, inputGrads) {
                guard let n = input.node, let ig else { continue }
                precondition(ig.shape == input.shape,
                             "autodiff: rule for \(node.op.name) gave gradient \(ig.shape) for input \(input.shape)")
                let key = ObjectIdentifier(n)
                if let prev = grads[key] { grads[key] = accumulate(prev, ig) } else { grads[key] = ig }
            }
        }
    }
    let out = wrt.map { t in t.node.flatMap { result[ObjectIdentifier($0)] } }
    if let onReady {
        for (i, g) in out.enumerated() where g == nil { onReady(i, Tensor(zeros: wrt[i].shape)) }
    }
    return zip(out, wrt).map { $0 ?? Tensor(zeros: $1.shape) }
}

/// The value of `f` at `inputs` and its gradient with respect to each input.
public func valueAndGradient(at inputs: [Tensor], of f: ([Tensor]) -> Tensor) -> (value: Tensor, gradients: [Tensor]) {
    let leaves = inputs.map { $0.requiringGrad() }
    let value = f(leaves)
    return (value.detached(), gradients(of: value, wrt: leaves))
}

/// The gradient of a scalar-valued `f` at `x`.
public func gradient(at x: Tensor, of f: (Tensor) -> Tensor) -> Tensor {
    valueAndGradient(at: [x]) { f($0[0]) }.gradients[0]
}

/// a + b into fresh storage (gradient sums are never written into a tensor someone else holds).
func accumulate(_ a: Tensor, _ b: Tensor) -> Tensor {
    let out = Tensor(uninitializedShape: a.shape)
    let pa = a.storage.pointer, pb = b.storage.pointer, po = out.storage.pointer
    parallelFor(a.count, grain: 1 << 15) { r in for i in r { po[i] = pa[i] + pb[i] } }
    return out
}
