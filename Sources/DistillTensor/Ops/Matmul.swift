/// Matrix products: 2-D and batched, with either operand transposed.

/// Shape of `matmul(a, b)` and the batch layout, or an error naming both shapes.
public func matmulShape(_ a: [Int], _ b: [Int], transA: Bool, transB: Bool) throws -> [Int] {
    guard a.count >= 2, b.count >= 2 else {
        throw TensorError.shapeMismatch(op: "matmul", shapes: [a, b], reason: "operands need rank >= 2")
    }
    let m = transA ? a[a.count - 1] : a[a.count - 2]
    let ka = transA ? a[a.count - 2] : a[a.count - 1]
    let kb = transB ? b[b.count - 1] : b[b.count - 2]
    let n = transB ? b[b.count - 2] : b[b.count - 1]
    guard ka == kb else {
        throw TensorError.shapeMismatch(op: "matmul", shapes: [a, b],
                                        reason: "inner dimensions \(ka) and \(kb) differ (transA: \(transA), transB: \(transB))")
    }
    let ba = Array(a.dropLast(2)), bb = Array(b.dropLast(2))
    guard ba == bb || a.count == 2 || b.count == 2 else {
        throw TensorError.shapeMismatch(op: "matmul", shapes: [a, b], reason: "batch dimensions differ")
    }
    return (ba.count >= bb.count ? ba : bb) + [m, n]
}

extension Tensor {
    /// `op(self) · op(other)` where op transposes the last two axes when asked. Leading axes are
    /// batch axes: both operands have the same ones, or one operand is 2-D and is shared.
    public func matmul(_ other: Tensor, transA: Bool = false, transB: Bool = false) -> Tensor {
        let shape = validated { try matmulShape(self.shape, other.shape, transA: transA, transB: transB) }
        let out = matmulKernel(self, other, transA: transA, transB: transB, outShape: shape)
        return out.recorded(.matmul(transA: transA, transB: transB), [self, other])
    }
}

/// Fills a fresh tensor with the product; batches run one GEMM each (or one large GEMM when the
/// shared right operand lets the batch fold into rows).
func matmulKernel(_ a: Tensor, _ b: Tensor, transA: Bool, transB: Bool, outShape: [Int]) -> Tensor {
    let out = Tensor(uninitializedShape: outShape)
    let r = outShape.count
    let m = outShape[r - 2], n = outShape[r - 1]
    let k = transA ? a.shape[a.rank - 2] : a.shape[a.rank - 1]
    let batch = outShape.dropLast(2).reduce(1, *)
    let lda = a.shape[a.rank - 1], ldb = b.shape[b.rank - 1]
    let pa = a.storage.pointer, pb = b.storage.pointer, pc = out.storage.pointer
    if b.rank == 2 && !transA {
        // [batch·m, k] · [k, n]: one GEMM.
        Gemm.sgemm(transA: false, transB: transB, m: batch * m, n: n, k: k, a: pa, lda: lda, b: pb, ldb: ldb,
                   c: pc, ldc: n)
        return out
    }
    let strideA = a.rank == 2 ? 0 : a.shape[a.rank - 2] * a.shape[a.rank - 1]
    let strideB = b.rank == 2 ? 0 : b.shape[b.rank - 2] * b.shape[b.rank - 1]
    let perGemm = m * n * k
    if batch >= 2 && perGemm < (1 << 22) {
        // Many small products: one thread per product.
        parallelFor(batch, grain: 1) { range in
            for i in range {
                Gemm.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: pa + i * strideA, lda: lda,
                           b: pb + i * strideB, ldb: ldb, c: pc + i * m * n, ldc: n,
                           backend: Gemm.backend == .blas ? .builtin : nil, threaded: false)
            }
        }
    } else {
        for i in 0..<batch {
            Gemm.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: pa + i * strideA, lda: lda,
                       b: pb + i * strideB, ldb: ldb, c: pc + i * m * n, ldc: n)
        }
    }
    return out
}

/// Gradients of C = op(A)·op(B) for A and B, with shared (2-D) operands summed over the batch.
func matmulBackward(a: Tensor, b: Tensor, transA: Bool, transB: Bool, grad g: Tensor) -> (Tensor?, Tensor?) {
    var ga: Tensor? = nil, gb: Tensor? = nil
    if a.requiresGrad {
        // dA = dC·op(B)ᵀ, or its transpose op(B)·dCᵀ when A is stored transposed.
        let bd = b.detached()
        var d = transA ? bd.matmul(g, transA: transB, transB: true) : g.matmul(bd, transB: !transB)
        if a.rank == 2 && d.rank > 2 { d = d.reshaped([-1] + a.shape).sum(axis: 0) }
        ga = d
    }
    if b.requiresGrad {
        let ad = a.detached()
        if b.rank == 2 && a.rank > 2 && !transA {
            // Fold the batch into rows: [batch·m, k] and [batch·m, n].
            let a2 = ad.reshaped([-1, ad.shape[ad.rank - 1]]), g2 = g.reshaped([-1, g.shape[g.rank - 1]])
            gb = transB ? g2.matmul(a2, transA: true) : a2.matmul(g2, transA: true)
        } else {
            // dB = op(A)ᵀ·dC, or dCᵀ·op(A) when B is stored transposed.
            var d = transB ? g.matmul(ad, transA: true, transB: transA) : ad.matmul(g, transA: !transA)
            if b.rank == 2 && d.rank > 2 { d = d.reshaped([-1] + b.shape).sum(axis: 0) }
            gb = d
        }
    }
    return (ga, gb)
}
