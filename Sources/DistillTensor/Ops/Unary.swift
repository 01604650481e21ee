import CDistillKernels
import Foundation

/// Elementwise functions of one tensor. Each case gives its value and its derivative in terms of
/// the input x and the output y (whichever is cheaper), so adding one is a line in each table.
public enum UnaryFunction: Equatable {
    case neg, exp, log, sqrt, rsqrt, tanh, sigmoid, silu, relu
    /// GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    case geluTanh
    /// GELU, exact: x·Φ(x) = 0.5·x·(1 + erf(x/√2)).
    case geluErf
    /// x^p for a constant p.
    case pow(Float)
    /// s·x + b for constants s and b.
    case affine(scale: Float, shift: Float)

    var name: String { "\(self)" }
}

private let sqrt2OverPi: Float = 0.7978845608028654
private let invSqrt2: Float = 0.7071067811865476
private let invSqrt2Pi: Float = 0.3989422804014327

@inline(__always) private func sigmoidf(_ x: Float) -> Float { 1 / (1 + Foundation.exp(-x)) }

/// Runs `f` over every element, in parallel for large tensors.
@inline(__always)
func mapKernel(_ x: Tensor, _ f: (Float) -> Float) -> Tensor {
    let out = Tensor(uninitializedShape: x.shape)
    let px = x.storage.pointer, po = out.storage.pointer
    parallelFor(x.count, grain: 1 << 14) { r in for i in r { po[i] = f(px[i]) } }
    return out
}

/// Runs `f` over pairs of elements of two tensors of the same shape.
@inline(__always)
func zipKernel(_ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float) -> Tensor {
    precondition(a.shape == b.shape, "zipKernel: \(a.shape) vs \(b.shape)")
    let out = Tensor(uninitializedShape: a.shape)
    let pa = a.storage.pointer, pb = b.storage.pointer, po = out.storage.pointer
    parallelFor(a.count, grain: 1 << 14) { r in for i in r { po[i] = f(pa[i], pb[i]) } }
    return out
}

/// Runs `f` over triples of elements of three tensors of the same shape.
@inline(__always)
func zip3Kernel(_ a: Tensor, _ b: Tensor, _ c: Tensor, _ f: (Float, Float, Float) -> Float) -> Tensor {
    precondition(a.shape == b.shape && b.shape == c.shape, "zip3Kernel: \(a.shape), \(b.shape), \(c.shape)")
    let out = Tensor(uninitializedShape: a.shape)
    let pa = a.storage.pointer, pb = b.storage.pointer, pc = c.storage.pointer, po = out.storage.pointer
    parallelFor(a.count, grain: 1 << 14) { r in for i in r { po[i] = f(pa[i], pb[i], pc[i]) } }
    return out
}

extension UnaryFunction {
    /// y = f(x), elementwise.
    func forward(_ x: Tensor) -> Tensor {
        switch self {
        case .neg: return mapKernel(x) { -$0 }
        case .exp: return mapKernel(x) { Foundation.exp($0) }
        case .log: return mapKernel(x) { Foundation.log($0) }
        case .sqrt: return mapKernel(x) { $0.squareRoot() }
        case .rsqrt: return mapKernel(x) { 1 / $0.squareRoot() }
        case .tanh: return mapKernel(x) { Foundation.tanh($0) }
        case .sigmoid: return mapKernel(x) { sigmoidf($0) }
        case .silu:                                  // vectorised exp (exp.c)
            let out = Tensor(uninitializedShape: x.shape)
            let px = x.storage.pointer, po = out.storage.pointer
            parallelFor(x.count, grain: 1 << 14) { r in dk_silu(px + r.lowerBound, po + r.lowerBound, r.count) }
            return out
        case .relu: return mapKernel(x) { $0 > 0 ? $0 : 0 }
        case .geluTanh:
            return mapKernel(x) { v in 0.5 * v * (1 + Foundation.tanh(sqrt2OverPi * (v + 0.044715 * v * v * v))) }
        case .geluErf: return mapKernel(x) { v in 0.5 * v * (1 + Foundation.erf(v * invSqrt2)) }
        case .pow(let p):
            if p == 2 { return mapKernel(x) { $0 * $0 } }
            return mapKernel(x) { Foundation.pow($0, p) }
        case let .affine(s, b): return mapKernel(x) { s * $0 + b }
        }
    }

    /// dL/dx = dL/dy · f'(x), with f' written in terms of x and y.
    func backward(x: Tensor, y: Tensor, grad g: Tensor) -> Tensor {
        switch self {
        case .neg: return mapKernel(g) { -$0 }
        case .exp: return zipKernel(g, y) { g, y in g * y }                      // (eˣ)' = eˣ
        case .log: return zipKernel(g, x) { g, x in g / x }                      // (ln x)' = 1/x
        case .sqrt: return zipKernel(g, y) { g, y in g * 0.5 / y }               // (√x)' = 1/(2√x)
        case .rsqrt: return zipKernel(g, y) { g, y in g * -0.5 * y * y * y }     // (x^-½)' = -½x^-3/2
        case .tanh: return zipKernel(g, y) { g, y in g * (1 - y * y) }           // tanh' = 1 - tanh²
        case .sigmoid: return zipKernel(g, y) { g, y in g * y * (1 - y) }        // σ' = σ(1-σ)
        case .silu:                                                              // (xσ)' = σ(1 + x(1-σ))
            precondition(g.shape == x.shape, "silu backward: gradient \(g.shape) vs input \(x.shape)")
            let out = Tensor(uninitializedShape: x.shape)
            let px = x.storage.pointer, pg = g.storage.pointer, po = out.storage.pointer
            parallelFor(x.count, grain: 1 << 14) { r in
                dk_silu_backward(px + r.lowerBound, pg + r.lowerBound, po + r.lowerBound, r.count)
            }
            return out
        case .relu: return zipKernel(g, x) { g, x in x > 0 ? g : 0 }
        case .geluTanh:
            // y = ½x(1+t), t = tanh(u), u = c(x + 0.044715x³):
            // y' = ½(1+t) + ½x(1-t²)·c(1 + 3·0.044715x²)
            return zipKernel(g, x) { g, x in
                let t = Foundation.tanh(sqrt2OverPi * (x + 0.044715 * x * x * x))
                return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * sqrt2OverPi * (1 + 3 * 0.044715 * x * x))
            }
        case .geluErf:                                                           // (xΦ(x))' = Φ(x) + xφ(x)
            return zipKernel(g, x) { g, x in
                g * (0.5 * (1 + Foundation.erf(x * invSqrt2)) + x * invSqrt2Pi * Foundation.exp(-0.5 * x * x))
            }
        case .pow(let p):                                                        // (xᵖ)' = p·xᵖ⁻¹
            if p == 2 { return zipKernel(g, x) { g, x in 2 * g * x } }
            return zipKernel(g, x) { g, x in g * p * Foundation.pow(x, p - 1) }
        case let .affine(s, _): return mapKernel(g) { s * $0 }
        }
    }
}

extension Tensor {
    /// Applies an elementwise function, recording it for autodiff.
    public func apply(_ f: UnaryFunction) -> Tensor {
        f.forward(self).recorded(.unary(f), [self])
    }

    public func exp() -> Tensor { apply(.exp) }
    public func log() -> Tensor { apply(.log) }
    public func sqrt() -> Tensor { apply(.sqrt) }
    public func rsqrt() -> Tensor { apply(.rsqrt) }
    public func tanh() -> Tensor { apply(.tanh) }
    public func sigmoid() -> Tensor { apply(.sigmoid) }
    public func silu() -> Tensor { apply(.silu) }
    public func relu() -> Tensor { apply(.relu) }
    /// GELU; `approximate: true` is the tanh form (PyTorch's `approximate="tanh"`).
    public func gelu(approximate: Bool = false) -> Tensor { apply(approximate ? .geluTanh : .geluErf) }
    public func pow(_ p: Float) -> Tensor { apply(.pow(p)) }
    public func square() -> Tensor { apply(.pow(2)) }
    public static prefix func - (x: Tensor) -> Tensor { x.apply(.neg) }
    public static func * (x: Tensor, s: Float) -> Tensor { x.apply(.affine(scale: s, shift: 0)) }
    public static func * (s: Float, x: Tensor) -> Tensor { x.apply(.affine(scale: s, shift: 0)) }
    public static func / (x: Tensor, s: Float) -> Tensor { x.apply(.affine(scale: 1 / s, shift: 0)) }
    public static func + (x: Tensor, s: Float) -> Tensor { x.apply(.affine(scale: 1, shift: s)) }
    public static func - (x: Tensor, s: Float) -> Tensor { x.apply(.affine(scale: 1, shift: -s)) }
}
