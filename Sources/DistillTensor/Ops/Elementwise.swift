import Foundation

// Elementwise kernels over contiguous tensors, generic over the function as a type. Each use is
// compiled with the function inlined into its loop, which the compiler vectorises. (They took
// closures before: a closure is captured by the parallel loop's own closure, out of the optimiser's
// sight, and was called once per element — a residual add ran a call per float, 2.6% of the KD
// reference step.)

/// y = f(x) for one value.
protocol ElementMap { func callAsFunction(_ x: Float) -> Float }
/// y = f(a, b) for a pair of values.
protocol ElementZip { func callAsFunction(_ a: Float, _ b: Float) -> Float }
/// y = f(a, b, c) for a triple of values.
protocol ElementZip3 { func callAsFunction(_ a: Float, _ b: Float, _ c: Float) -> Float }

/// Runs `f` over every element, in parallel for large tensors.
@inline(__always)
func mapKernel<F: ElementMap>(_ x: Tensor, _ f: F) -> Tensor {
    let out = Tensor(uninitializedShape: x.shape)
    let px = x.storage.pointer, po = out.storage.pointer
    parallelFor(x.count, grain: 1 << 14) { r in for i in r { po[i] = f(px[i]) } }
    return out
}

/// Runs `f` over pairs of elements of two tensors of the same shape.
@inline(__always)
func zipKernel<F: ElementZip>(_ a: Tensor, _ b: Tensor, _ f: F) -> Tensor {
    precondition(a.shape == b.shape, "zipKernel: \(a.shape) vs \(b.shape)")
    let out = Tensor(uninitializedShape: a.shape)
    let pa = a.storage.pointer, pb = b.storage.pointer, po = out.storage.pointer
    parallelFor(a.count, grain: 1 << 14) { r in for i in r { po[i] = f(pa[i], pb[i]) } }
    return out
}

/// Runs `f` over triples of elements of three tensors of the same shape.
@inline(__always)
func zip3Kernel<F: ElementZip3>(_ a: Tensor, _ b: Tensor, _ c: Tensor, _ f: F) -> Tensor {
    precondition(a.shape == b.shape && b.shape == c.shape, "zip3Kernel: \(a.shape), \(b.shape), \(c.shape)")
    let out = Tensor(uninitializedShape: a.shape)
    let pa = a.storage.pointer, pb = b.storage.pointer, pc = c.storage.pointer, po = out.storage.pointer
    parallelFor(a.count, grain: 1 << 14) { r in for i in r { po[i] = f(pa[i], pb[i], pc[i]) } }
    return out
}

// The functions shared by several ops.

struct Add: ElementZip { func callAsFunction(_ a: Float, _ b: Float) -> Float { a + b } }
struct Sub: ElementZip { func callAsFunction(_ a: Float, _ b: Float) -> Float { a - b } }
struct Mul: ElementZip { func callAsFunction(_ a: Float, _ b: Float) -> Float { a * b } }
struct Div: ElementZip { func callAsFunction(_ a: Float, _ b: Float) -> Float { a / b } }
/// a where the mask m is zero, else 0 (gradients through a fill or a selection).
struct WhereMaskZero: ElementZip { func callAsFunction(_ a: Float, _ m: Float) -> Float { m != 0 ? 0 : a } }
/// a where the mask m is nonzero, else 0.
struct WhereMaskSet: ElementZip { func callAsFunction(_ a: Float, _ m: Float) -> Float { m != 0 ? a : 0 } }
