/// Ops that move values around: reshape, permute, slice, concat, stack, broadcast.

extension Tensor {
    /// The same values with another shape; one dimension may be -1 (inferred). Shares storage.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        let target = validated { try resolveReshape(shape, newShape) }
        if target == shape { return self }
        return Tensor(shape: target, storage: storage).recorded(.reshape, [self])
    }

    /// Inserts a size-1 axis at `axis`.
    public func unsqueezed(_ axis: Int) -> Tensor {
        let a = axis < 0 ? axis + rank + 1 : axis
        precondition(a >= 0 && a <= rank, "unsqueezed: axis \(axis) out of range for rank \(rank)")
        var s = shape
        s.insert(1, at: a)
        return reshaped(s)
    }

    /// Reorders axes: result axis i is input axis `perm[i]`.
    public func permuted(_ perm: [Int]) -> Tensor {
        let p = perm.map { normalizeAxis($0, rank: rank, op: "permute") }
        precondition(p.count == rank && Set(p).count == rank,
                     "permute: \(perm) is not a permutation of the \(rank) axes of \(shape)")
        if p == Array(0..<rank) { return self }
        return permuteKernel(self, p).recorded(.permute(p), [self])
    }

    /// Swaps two axes (by default the last two).
    public func transposed(_ a0: Int = -2, _ a1: Int = -1) -> Tensor {
        let x = normalizeAxis(a0, rank: rank, op: "transpose"), y = normalizeAxis(a1, rank: rank, op: "transpose")
        var p = Array(0..<rank)
        p.swapAt(x, y)
        return permuted(p)
    }

    /// `length` entries of `axis` starting at `start` (PyTorch's `narrow`).
    public func slice(axis: Int, start: Int, length: Int) -> Tensor {
        let a = normalizeAxis(axis, rank: rank, op: "slice")
        validated {
            guard start >= 0, length >= 0, start + length <= shape[a] else {
                throw TensorError.invalidArgument(
                    op: "slice", reason: "range \(start)..<\(start + length) out of bounds for axis \(a) of shape \(shape)")
            }
        }
        if start == 0 && length == shape[a] { return self }
        let (outer, n, inner) = splitAround(shape, axis: a)
        var s = shape
        s[a] = length
        let out = Tensor(uninitializedShape: s)
        let px = storage.pointer, po = out.storage.pointer
        let run = length * inner
        parallelFor(outer, grain: Swift.max(1, 8192 / Swift.max(run, 1))) { r in
            for o in r { (po + o * run).update(from: px + (o * n + start) * inner, count: run) }
        }
        return out.recorded(.slice(axis: a, start: start), [self])
    }

    /// Materialises the tensor broadcast to `shape`; the gradient sums back over broadcast axes.
    public func broadcast(to target: [Int]) -> Tensor {
        let s = validated { try broadcastShapes(shape, target, op: "broadcast(to:)") }
        precondition(s == target, "broadcast(to:): cannot broadcast \(shape) to \(target)")
        if shape == target { return self }
        return broadcastKernel(self, to: target).recorded(.broadcast, [self])
    }
}

/// Joins tensors along `axis`; all other dimensions must agree.
public func concat(_ tensors: [Tensor], axis: Int) -> Tensor {
    precondition(!tensors.isEmpty, "concat: no tensors")
    let first = tensors[0]
    let a = normalizeAxis(axis, rank: first.rank, op: "concat")
    validated {
        for t in tensors {
            var s0 = first.shape, s1 = t.shape
            guard s0.count == s1.count else {
                throw TensorError.shapeMismatch(op: "concat", shapes: [first.shape, t.shape], reason: "ranks differ")
            }
            s0[a] = 0
            s1[a] = 0
            guard s0 == s1 else {
                throw TensorError.shapeMismatch(op: "concat", shapes: [first.shape, t.shape],
                                                reason: "sizes differ outside axis \(a)")
            }
        }
    }
    if tensors.count == 1 { return first }
    var shape = first.shape
    shape[a] = tensors.reduce(0) { $0 + $1.shape[a] }
    let (outer, total, inner) = splitAround(shape, axis: a)
    let out = Tensor(uninitializedShape: shape)
    let po = out.storage.pointer
    var offset = 0
    for t in tensors {
        let run = t.shape[a] * inner, px = t.storage.pointer, off = offset
        parallelFor(outer, grain: Swift.max(1, 8192 / Swift.max(run, 1))) { r in
            for o in r { (po + o * total * inner + off).update(from: px + o * run, count: run) }
        }
        offset += run
    }
    return out.recorded(.concat(axis: a, sizes: tensors.map { $0.shape[a] }), tensors)
}

/// Stacks same-shaped tensors along a new axis.
public func stack(_ tensors: [Tensor], axis: Int = 0) -> Tensor {
    precondition(!tensors.isEmpty, "stack: no tensors")
    for t in tensors {
        precondition(t.shape == tensors[0].shape, "stack: shapes differ: \(tensors[0].shape) and \(t.shape)")
    }
    return concat(tensors.map { $0.unsqueezed(axis) }, axis: axis)
}

/// Checks a reshape and resolves a -1 dimension.
public func resolveReshape(_ shape: [Int], _ newShape: [Int]) throws -> [Int] {
    let n = shape.reduce(1, *)
    var target = newShape
    let unknown = newShape.indices.filter { newShape[$0] == -1 }
    guard unknown.count <= 1, newShape.allSatisfy({ $0 >= -1 }) else {
        throw TensorError.invalidArgument(op: "reshape", reason: "bad target shape \(newShape)")
    }
    if let u = unknown.first {
        let known = newShape.filter { $0 != -1 }.reduce(1, *)
        guard known > 0, n % known == 0 else {
            throw TensorError.shapeMismatch(op: "reshape", shapes: [shape, newShape], reason: "sizes do not divide")
        }
        target[u] = n / known
    }
    guard target.reduce(1, *) == n else {
        throw TensorError.shapeMismatch(op: "reshape", shapes: [shape, newShape],
                                        reason: "\(n) elements cannot take shape \(newShape)")
    }
    return target
}

/// Copies `x` with its axes reordered by `perm`.
func permuteKernel(_ x: Tensor, _ perm: [Int]) -> Tensor {
    let r = x.rank
    let outShape = perm.map { x.shape[$0] }
    var inStrides = [Int](repeating: 1, count: r)
    for i in stride(from: r - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * x.shape[i + 1] }
    let strides = perm.map { inStrides[$0] }   // input stride of each output axis
    let out = Tensor(uninitializedShape: outShape)
    let px = x.storage.pointer, po = out.storage.pointer
    let inner = outShape[r - 1], innerStride = strides[r - 1]
    let rows = x.count / Swift.max(inner, 1)
    parallelFor(rows, grain: Swift.max(1, 4096 / Swift.max(inner, 1))) { range in
        var idx = [Int](repeating: 0, count: r)
        for row in range {
            var rem = row, off = 0
            for i in stride(from: r - 2, through: 0, by: -1) {
                idx[i] = rem % outShape[i]
                rem /= outShape[i]
                off += idx[i] * strides[i]
            }
            let o = row * inner
            if innerStride == 1 { (po + o).update(from: px + off, count: inner) }
            else { for j in 0..<inner { po[o + j] = px[off + j * innerStride] } }
        }
    }
    return out
}

/// Inverse of a permutation.
func inversePermutation(_ p: [Int]) -> [Int] {
    var inv = [Int](repeating: 0, count: p.count)
    for (i, v) in p.enumerated() { inv[v] = i }
    return inv
}
