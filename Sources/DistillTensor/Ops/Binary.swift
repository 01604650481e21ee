/// Elementwise arithmetic between two tensors with NumPy broadcasting.
public enum BinaryFunction: Equatable {
    case add, sub, mul, div
}

/// The broadcast shape of `a` and `b` (NumPy rules: align trailing axes; sizes equal or 1).
public func broadcastShapes(_ a: [Int], _ b: [Int], op: String = "broadcast") throws -> [Int] {
    let r = Swift.max(a.count, b.count)
    var out = [Int](repeating: 1, count: r)
    for i in 0..<r {
        let da = i < r - a.count ? 1 : a[i - (r - a.count)]
        let db = i < r - b.count ? 1 : b[i - (r - b.count)]
        guard da == db || da == 1 || db == 1 else {
            throw TensorError.shapeMismatch(op: op, shapes: [a, b],
                                            reason: "axis \(i) has sizes \(da) and \(db)")
        }
        out[i] = da == 1 ? db : da
    }
    return out
}

/// True when `small` repeats along the leading axes of `big`: `small` equals a suffix of `big`
/// after dropping its own leading 1s. Then element i of the result pairs with small[i % small.count].
private func isSuffixBroadcast(_ small: [Int], of big: [Int]) -> Bool {
    let s = Array(small.drop(while: { $0 == 1 }))
    return s.count <= big.count && Array(big.suffix(s.count)) == s
}

@inline(__always)
private func binaryKernel<F: ElementZip>(_ a: Tensor, _ b: Tensor, _ outShape: [Int], _ f: F) -> Tensor {
    let out = Tensor(uninitializedShape: outShape)
    let po = out.storage.pointer, pa = a.storage.pointer, pb = b.storage.pointer
    let n = out.count
    if a.count == n && b.count == n {
        parallelFor(n, grain: 1 << 14) { r in for i in r { po[i] = f(pa[i], pb[i]) } }
    } else if b.count == 1 {
        let s = pb[0]
        parallelFor(n, grain: 1 << 14) { r in for i in r { po[i] = f(pa[i], s) } }
    } else if a.count == 1 {
        let s = pa[0]
        parallelFor(n, grain: 1 << 14) { r in for i in r { po[i] = f(s, pb[i]) } }
    } else if a.count == n && isSuffixBroadcast(b.shape, of: outShape) {
        let m = b.count
        parallelFor(n / m, grain: Swift.max(1, (1 << 14) / m)) { rows in
            for row in rows { let o = row * m; for j in 0..<m { po[o + j] = f(pa[o + j], pb[j]) } }
        }
    } else if b.count == n && isSuffixBroadcast(a.shape, of: outShape) {
        let m = a.count
        parallelFor(n / m, grain: Swift.max(1, (1 << 14) / m)) { rows in
            for row in rows { let o = row * m; for j in 0..<m { po[o + j] = f(pa[j], pb[o + j]) } }
        }
    } else {
        let ea = a.count == n ? a : broadcastKernel(a, to: outShape)
        let eb = b.count == n ? b : broadcastKernel(b, to: outShape)
        let qa = ea.storage.pointer, qb = eb.storage.pointer
        parallelFor(n, grain: 1 << 14) { r in for i in r { po[i] = f(qa[i], qb[i]) } }
    }
    return out
}

extension BinaryFunction {
    func forward(_ a: Tensor, _ b: Tensor, shape: [Int]) -> Tensor {
        switch self {
        case .add: return binaryKernel(a, b, shape, Add())
        case .sub: return binaryKernel(a, b, shape, Sub())
        case .mul: return binaryKernel(a, b, shape, Mul())
        case .div: return binaryKernel(a, b, shape, Div())
        }
    }

    /// Gradients for both inputs, reduced back to each input's shape.
    func backward(a: Tensor, b: Tensor, y: Tensor, grad g: Tensor) -> (Tensor?, Tensor?) {
        let needA = a.requiresGrad, needB = b.requiresGrad
        switch self {
        case .add:                                   // d(a+b) = da + db
            return (needA ? g.sum(to: a.shape) : nil, needB ? g.sum(to: b.shape) : nil)
        case .sub:                                   // d(a-b) = da - db
            return (needA ? g.sum(to: a.shape) : nil, needB ? (-g).sum(to: b.shape) : nil)
        case .mul:                                   // d(ab) = b·da + a·db
            return (needA ? (g * b.detached()).sum(to: a.shape) : nil,
                    needB ? (g * a.detached()).sum(to: b.shape) : nil)
        case .div:                                   // d(a/b) = da/b - (a/b)/b·db
            return (needA ? (g / b.detached()).sum(to: a.shape) : nil,
                    needB ? (-(g * y) / b.detached()).sum(to: b.shape) : nil)
        }
    }
}

extension Tensor {
    /// Applies a broadcasting binary op, recording it for autodiff.
    public func apply(_ f: BinaryFunction, _ other: Tensor) -> Tensor {
        let shape = shape == other.shape ? shape
            : validated { try broadcastShapes(self.shape, other.shape, op: "\(f)") }
        return f.forward(self, other, shape: shape).recorded(.binary(f), [self, other])
    }

    public static func + (a: Tensor, b: Tensor) -> Tensor { a.apply(.add, b) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { a.apply(.sub, b) }
    public static func * (a: Tensor, b: Tensor) -> Tensor { a.apply(.mul, b) }
    public static func / (a: Tensor, b: Tensor) -> Tensor { a.apply(.div, b) }
    public static func - (s: Float, x: Tensor) -> Tensor { x.apply(.affine(scale: -1, shift: s)) }
    public static func + (s: Float, x: Tensor) -> Tensor { x.apply(.affine(scale: 1, shift: s)) }

    /// Sums over broadcast axes so that the result has `shape` (the adjoint of broadcasting).
    public func sum(to target: [Int]) -> Tensor {
        if shape == target { return self }
        let lead = rank - target.count
        precondition(lead >= 0, "sum(to:): cannot reduce \(shape) to \(target)")
        var axes: [Int] = Array(0..<lead)
        for (i, d) in target.enumerated() where d == 1 && shape[lead + i] != 1 { axes.append(lead + i) }
        for (i, d) in target.enumerated() {
            precondition(d == 1 || d == shape[lead + i], "sum(to:): cannot reduce \(shape) to \(target)")
        }
        return (axes.isEmpty ? self : sum(axes: axes, keepDims: true)).reshaped(target)
    }
}

/// Materialises `x` broadcast to `shape` (no autodiff; see `Tensor.broadcast(to:)`).
func broadcastKernel(_ x: Tensor, to shape: [Int]) -> Tensor {
    let r = shape.count
    let xs = [Int](repeating: 1, count: r - x.rank) + x.shape
    // Strides of x in the output's index space: 0 along broadcast axes.
    var strides = [Int](repeating: 0, count: r)
    var s = 1
    for i in stride(from: r - 1, through: 0, by: -1) {
        strides[i] = xs[i] == 1 ? 0 : s
        s *= xs[i]
    }
    let out = Tensor(uninitializedShape: shape)
    let po = out.storage.pointer, px = x.storage.pointer
    let inner = shape.last ?? 1
    let innerStride = strides.last ?? 0
    let rows = out.count / Swift.max(inner, 1)
    parallelFor(rows, grain: Swift.max(1, 4096 / Swift.max(inner, 1))) { range in
        var idx = [Int](repeating: 0, count: Swift.max(r - 1, 0))
        for row in range {
            var rem = row, off = 0
            for i in stride(from: r - 2, through: 0, by: -1) {
                idx[i] = rem % shape[i]
                rem /= shape[i]
                off += idx[i] * strides[i]
            }
            let o = row * inner
            if innerStride == 0 { let v = px[off]; for j in 0..<inner { po[o + j] = v } }
            else { for j in 0..<inner { po[o + j] = px[off + j] } }
        }
    }
    return out
}
