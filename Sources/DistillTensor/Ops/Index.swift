/// Indexing ops: index-select (embedding lookup), gather, where and masks.

/// Checks that every index lies in 0..<size.
public func validateIndices(_ indices: [Int], size: Int, op: String) throws {
    for i in indices where i < 0 || i >= size {
        throw TensorError.indexOutOfRange(op: op, index: i, size: size)
    }
}

extension Tensor {
    /// Picks entries `indices` along `axis` (an embedding lookup is `table.indexSelect(ids, axis: 0)`).
    /// The result has `indices.count` entries along `axis`. The gradient scatter-adds back, so
    /// repeated indices accumulate.
    public func indexSelect(_ indices: [Int], axis: Int = 0) -> Tensor {
        let a = normalizeAxis(axis, rank: rank, op: "indexSelect")
        validated { try validateIndices(indices, size: shape[a], op: "indexSelect") }
        let (outer, n, inner) = splitAround(shape, axis: a)
        var s = shape
        s[a] = indices.count
        let out = Tensor(uninitializedShape: s)
        let px = storage.pointer, po = out.storage.pointer, m = indices.count
        indices.withUnsafeBufferPointer { idx in
            parallelFor(outer * m, grain: Swift.max(1, 4096 / Swift.max(inner, 1))) { r in
                for w in r {
                    let o = w / m, j = w % m
                    (po + w * inner).update(from: px + (o * n + idx[j]) * inner, count: inner)
                }
            }
        }
        return out.recorded(.indexSelect(axis: a, indices: indices), [self])
    }

    /// `out[..., j] = self[..., index[..., j]]` along the last axis (PyTorch's `gather(-1, index)`).
    /// `index` holds `rows × k` entries for the `rows` leading positions; the result is `[..., k]`.
    public func gather(lastAxis index: [Int], k: Int) -> Tensor {
        let v = shape.last ?? 1, rows = count / Swift.max(v, 1)
        precondition(index.count == rows * k,
                     "gather: \(index.count) indices for \(rows) rows of shape \(shape) with k = \(k)")
        validated { try validateIndices(index, size: v, op: "gather") }
        var s = shape
        s[s.count - 1] = k
        let out = Tensor(uninitializedShape: s)
        let px = storage.pointer, po = out.storage.pointer
        index.withUnsafeBufferPointer { idx in
            for r in 0..<rows { for j in 0..<k { po[r * k + j] = px[r * v + idx[r * k + j]] } }
        }
        return out.recorded(.gather(index: index, k: k), [self])
    }

    /// Where `condition` is nonzero, `self`; elsewhere `other`. All three broadcast together.
    public func `where`(_ condition: Tensor, else other: Tensor) -> Tensor {
        let s1 = validated { try broadcastShapes(shape, other.shape, op: "where") }
        let s = validated { try broadcastShapes(s1, condition.shape, op: "where") }
        let a = shape == s ? self.detached() : broadcastKernel(self, to: s)
        let b = other.shape == s ? other.detached() : broadcastKernel(other, to: s)
        let c = condition.shape == s ? condition.detached() : broadcastKernel(condition, to: s)
        let out = zip3Kernel(c, a, b, Select())
        return out.recorded(.where(condition: c), [self, other])
    }

    /// `value` where `mask` is nonzero, `self` elsewhere (mask broadcasts to this shape).
    public func maskedFill(_ mask: Tensor, value: Float) -> Tensor {
        let s = validated { try broadcastShapes(shape, mask.shape, op: "maskedFill") }
        precondition(s == shape, "maskedFill: mask \(mask.shape) does not broadcast to \(shape)")
        let m = mask.shape == shape ? mask.detached() : broadcastKernel(mask, to: shape)
        let out = zipKernel(self, m, Fill(value: value))
        return out.recorded(.maskedFill(mask: m), [self])
    }

    /// An additive causal mask [t, s]: 0 where key j ≤ query i + (s - t), -∞ above. With a KV
    /// cache, the t queries are the last t of the s positions.
    public static func causalMask(queries t: Int, keys s: Int) -> Tensor {
        precondition(s >= t, "causalMask: \(s) keys cannot hold \(t) queries")
        let out = Tensor(uninitializedShape: [t, s])
        let p = out.storage.pointer
        for i in 0..<t { for j in 0..<s { p[i * s + j] = j <= i + (s - t) ? 0 : -Float.infinity } }
        return out
    }

    /// An additive padding mask [b, 1, 1, s]: 0 for the first `lengths[i]` keys of sequence i, -∞
    /// after (right padding). Broadcasts over heads and queries in attention.
    public static func paddingMask(lengths: [Int], maxLength s: Int) -> Tensor {
        let out = Tensor(uninitializedShape: [lengths.count, 1, 1, s])
        let p = out.storage.pointer
        for (i, len) in lengths.enumerated() {
            precondition(len >= 0 && len <= s, "paddingMask: length \(len) outside 0...\(s)")
            for j in 0..<s { p[i * s + j] = j < len ? 0 : -Float.infinity }
        }
        return out
    }
}

/// Scatter-adds `grad` (shaped like an indexSelect result) back into zeros of `shape`.
func indexSelectBackward(_ grad: Tensor, shape: [Int], axis: Int, indices: [Int]) -> Tensor {
    let (outer, n, inner) = splitAround(shape, axis: axis)
    let out = Tensor(zeros: shape)
    let pg = grad.storage.pointer, po = out.storage.pointer, m = indices.count
    // Parallel over the inner dimension: no two threads touch the same element.
    parallelFor(inner, grain: 256) { cols in
        for o in 0..<outer {
            for j in 0..<m {
                let dst = po + (o * n + indices[j]) * inner, src = pg + (o * m + j) * inner
                for c in cols { dst[c] += src[c] }
            }
        }
    }
    return out
}

/// Scatter-adds `grad` ([rows, k]) into zeros shaped like the gather input ([rows, v]).
func gatherBackward(_ grad: Tensor, shape: [Int], index: [Int], k: Int) -> Tensor {
    let out = Tensor(zeros: shape)
    let v = shape.last ?? 1, rows = out.count / Swift.max(v, 1)
    let pg = grad.storage.pointer, po = out.storage.pointer
    for r in 0..<rows { for j in 0..<k { po[r * v + index[r * k + j]] += pg[r * k + j] } }
    return out
}

/// a where the condition c is nonzero, else b.
private struct Select: ElementZip3 { func callAsFunction(_ c: Float, _ a: Float, _ b: Float) -> Float { c != 0 ? a : b } }
/// The value where the mask m is nonzero, else x.
private struct Fill: ElementZip {
    let value: Float
    func callAsFunction(_ x: Float, _ m: Float) -> Float { m != 0 ? value : x }
}
