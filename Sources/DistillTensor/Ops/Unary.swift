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

extension UnaryFunction {
    /// y = f(x), elementwise.
    func forward(_ x: Tensor) -> Tensor {
        switch self {
        case .neg: return mapKernel(x, Neg())
        case .exp: return mapKernel(x, Exp())
        case .log: return mapKernel(x, Log())
        case .sqrt: return mapKernel(x, Sqrt())
        case .rsqrt: return mapKernel(x, Rsqrt())
        case .tanh: return mapKernel(x, Tanh())
        case .sigmoid: return mapKernel(x, Sigmoid())
        case .silu:                                  // vectorised exp (exp.c)
            let out = Tensor(uninitializedShape: x.shape)
            let px = x.storage.pointer, po = out.storage.pointer
            parallelFor(x.count, grain: 1 << 14) { r in dk_silu(px + r.lowerBound, po + r.lowerBound, r.count) }
            return out
        case .relu: return mapKernel(x, Relu())
        case .geluTanh: return mapKernel(x, GeluTanh())
        case .geluErf: return mapKernel(x, GeluErf())
        case .pow(let p): return p == 2 ? mapKernel(x, Square()) : mapKernel(x, Pow(p: p))
        case let .affine(s, b): return mapKernel(x, Affine(scale: s, shift: b))
        }
    }

    /// dL/dx = dL/dy · f'(x), with f' written in terms of x and y.
    func backward(x: Tensor, y: Tensor, grad g: Tensor) -> Tensor {
        switch self {
        case .neg: return mapKernel(g, Neg())
        case .exp: return zipKernel(g, y, Mul())                                 // (eˣ)' = eˣ
        case .log: return zipKernel(g, x, Div())                                 // (ln x)' = 1/x
        case .sqrt: return zipKernel(g, y, SqrtGradient())
        case .rsqrt: return zipKernel(g, y, RsqrtGradient())
        case .tanh: return zipKernel(g, y, TanhGradient())
        case .sigmoid: return zipKernel(g, y, SigmoidGradient())
        case .silu:                                                              // (xσ)' = σ(1 + x(1-σ))
            precondition(g.shape == x.shape, "silu backward: gradient \(g.shape) vs input \(x.shape)")
            let out = Tensor(uninitializedShape: x.shape)
            let px = x.storage.pointer, pg = g.storage.pointer, po = out.storage.pointer
            parallelFor(x.count, grain: 1 << 14) { r in
                dk_silu_backward(px + r.lowerBound, pg + r.lowerBound, po + r.lowerBound, r.count)
            }
            return out
        case .relu: return zipKernel(g, x, ReluGradient())
        case .geluTanh: return zipKernel(g, x, GeluTanhGradient())
        case .geluErf: return zipKernel(g, x, GeluErfGradient())
        case .pow(let p): return p == 2 ? zipKernel(g, x, SquareGradient()) : zipKernel(g, x, PowGradient(p: p))
        case let .affine(s, _): return mapKernel(g, Scale(by: s))
        }
    }
}

// Each function's value (x → y) and gradient ((g, x or y) → g·f'), as types for the kernels.

private struct Neg: ElementMap { func callAsFunction(_ x: Float) -> Float { -x } }
private struct Exp: ElementMap { func callAsFunction(_ x: Float) -> Float { Foundation.exp(x) } }
private struct Log: ElementMap { func callAsFunction(_ x: Float) -> Float { Foundation.log(x) } }
private struct Sqrt: ElementMap { func callAsFunction(_ x: Float) -> Float { x.squareRoot() } }
private struct Rsqrt: ElementMap { func callAsFunction(_ x: Float) -> Float { 1 / x.squareRoot() } }
private struct Tanh: ElementMap { func callAsFunction(_ x: Float) -> Float { Foundation.tanh(x) } }
private struct Sigmoid: ElementMap { func callAsFunction(_ x: Float) -> Float { sigmoidf(x) } }
private struct Relu: ElementMap { func callAsFunction(_ x: Float) -> Float { x > 0 ? x : 0 } }
private struct GeluTanh: ElementMap {
    func callAsFunction(_ v: Float) -> Float { 0.5 * v * (1 + Foundation.tanh(sqrt2OverPi * (v + 0.044715 * v * v * v))) }
}
private struct GeluErf: ElementMap { func callAsFunction(_ v: Float) -> Float { 0.5 * v * (1 + Foundation.erf(v * invSqrt2)) } }
private struct Square: ElementMap { func callAsFunction(_ x: Float) -> Float { x * x } }
private struct Pow: ElementMap {
    let p: Float
    func callAsFunction(_ x: Float) -> Float { Foundation.pow(x, p) }
}
private struct Affine: ElementMap {
    let scale: Float, shift: Float
    func callAsFunction(_ x: Float) -> Float { scale * x + shift }
}

private struct Scale: ElementMap {
    let by: Float
    func callAsFunction(_ x: Float) -> Float { by * x }
}

private struct SqrtGradient: ElementZip {                                        // (√x)' = 1/(2√x)
    func callAsFunction(_ g: Float, _ y: Float) -> Float { g * 0.5 / y }
}
private struct RsqrtGradient: ElementZip {                                       // (x^-½)' = -½x^-3/2
    func callAsFunction(_ g: Float, _ y: Float) -> Float { g * -0.5 * y * y * y }
}
private struct TanhGradient: ElementZip {                                        // tanh' = 1 - tanh²
    func callAsFunction(_ g: Float, _ y: Float) -> Float { g * (1 - y * y) }
}
private struct SigmoidGradient: ElementZip {                                     // σ' = σ(1-σ)
    func callAsFunction(_ g: Float, _ y: Float) -> Float { g * y * (1 - y) }
}
private struct ReluGradient: ElementZip { func callAsFunction(_ g: Float, _ x: Float) -> Float { x > 0 ? g : 0 } }
private struct GeluTanhGradient: ElementZip {
    // y = ½x(1+t), t = tanh(u), u = c(x + 0.044715x³):
    // y' = ½(1+t) + ½x(1-t²)·c(1 + 3·0.044715x²)
    func callAsFunction(_ g: Float, _ x: Float) -> Float {
        let t = Foundation.tanh(sqrt2OverPi * (x + 0.044715 * x * x * x))
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * sqrt2OverPi * (1 + 3 * 0.044715 * x * x))
    }
}
private struct GeluErfGradient: ElementZip {                                     // (xΦ(x))' = Φ(x) + xφ(x)
    func callAsFunction(_ g: Float, _ x: Float) -> Float {
        g * (0.5 * (1 + Foundation.erf(x * invSqrt2)) + x * invSqrt2Pi * Foundation.exp(-0.5 * x * x))
    }
}
private struct SquareGradient: ElementZip { func callAsFunction(_ g: Float, _ x: Float) -> Float { 2 * g * x } }
private struct PowGradient: ElementZip {                                         // (xᵖ)' = p·xᵖ⁻¹
    let p: Float
    func callAsFunction(_ g: Float, _ x: Float) -> Float { g * p * Foundation.pow(x, p - 1) }
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
