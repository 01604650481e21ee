import CDistillKernels
import DistillTensor
import Foundation

/// Updates parameters from gradients. State is kept per parameter name so it can be saved with a
/// checkpoint and restored (`state` / `restore`).
public protocol Optimizer: AnyObject {
    /// Number of updates applied so far.
    var step: Int { get }
    /// Learning rate used by the next update.
    var learningRate: Float { get set }
    /// Applies one update to each named parameter from its gradient.
    func update(_ parameters: [(name: String, parameter: Parameter)], gradients: Gradients)
    /// The same with every gradient multiplied by `scale` first (gradient clipping's coefficient:
    /// the update `clipGradientNorm` and then `update(_:gradients:)` would make).
    func update(_ parameters: [(name: String, parameter: Parameter)], gradients: Gradients, scale: Float)
}

extension Optimizer {
    public func update(_ parameters: [(name: String, parameter: Parameter)], gradients: Gradients, scale: Float) {
        update(parameters, gradients: scale == 1 ? gradients : gradients.scaled(by: scale))
    }
}

extension Gradients {
    /// Every gradient multiplied by `scale`.
    public func scaled(by scale: Float) -> Gradients {
        Gradients(names: names, tensors: withoutGradients { tensors.map { $0 * scale } })
    }
}

/// Adam with decoupled weight decay (Loshchilov & Hutter), as `torch.optim.AdamW`:
///   p ← p − lr·wd·p;  m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;
///   p ← p − lr·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)
public final class AdamW: Optimizer {
    public var learningRate: Float
    public let beta1: Float, beta2: Float, eps: Float, weightDecay: Float
    public private(set) var step = 0
    /// First and second moments per parameter name.
    public private(set) var moments: [String: (m: Tensor, v: Tensor)] = [:]

    public init(learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                weightDecay: Float = 0.01) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
    }

    /// Replaces the optimizer state with one saved earlier (checkpoint resume): the number of
    /// updates applied and the moments per parameter name. Moments are copied.
    public func restore(step: Int, moments: [String: (m: Tensor, v: Tensor)]) {
        precondition(step >= 0, "AdamW.restore: negative step \(step)")
        for (name, mv) in moments {
            precondition(mv.m.shape == mv.v.shape, "AdamW.restore: moments of '\(name)' differ in shape")
        }
        self.step = step
        self.moments = moments.mapValues { ($0.m.copy(), $0.v.copy()) }
    }

    public func update(_ parameters: [(name: String, parameter: Parameter)], gradients: Gradients) {
        update(parameters, gradients: gradients, scale: 1)
    }

    public func update(_ parameters: [(name: String, parameter: Parameter)], gradients: Gradients, scale: Float) {
        step += 1
        let bc1 = 1 - Foundation.pow(beta1, Float(step)), bc2 = 1 - Foundation.pow(beta2, Float(step))
        var constants = dk_adamw_step(grad_scale: scale, beta1: beta1, beta2: beta2, decay: 1 - learningRate * weightDecay,
                                      step_size: learningRate / bc1, inv_sqrt_bc2: 1 / bc2.squareRoot(), eps: eps)
        for (name, param) in parameters {
            guard let g = gradients[name] else { continue }
            precondition(g.shape == param.shape, "AdamW: gradient \(g.shape) for '\(name)' of shape \(param.shape)")
            let state = moments[name] ?? (Tensor(zeros: param.shape), Tensor(zeros: param.shape))
            let m = Tensor(uninitializedShape: param.shape), v = Tensor(uninitializedShape: param.shape)
            let p = Tensor(uninitializedShape: param.shape)
            let pg = g.storage.pointer, pm0 = state.m.storage.pointer, pv0 = state.v.storage.pointer
            let pp0 = param.value.storage.pointer, pm = m.storage.pointer, pv = v.storage.pointer, pp = p.storage.pointer
            withUnsafePointer(to: &constants) { k in
                parallelFor(p.count, grain: 1 << 14) { r in
                    let i = r.lowerBound
                    dk_adamw(r.count, pg + i, pm0 + i, pv0 + i, pp0 + i, k, pm + i, pv + i, pp + i, 0)
                }
            }
            moments[name] = (m, v)
            param.assign(p)
        }
    }
}

/// SGD with momentum, as `torch.optim.SGD` (dampening 0): g ← g + wd·p; b ← μb + g (b = g at the
/// first step); p ← p − lr·(Nesterov ? g + μb : b).
public final class SGD: Optimizer {
    public var learningRate: Float
    public let momentum: Float, weightDecay: Float, nesterov: Bool
    public private(set) var step = 0
    public private(set) var buffers: [String: Tensor] = [:]

    public init(learningRate: Float, momentum: Float = 0, weightDecay: Float = 0, nesterov: Bool = false) {
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.nesterov = nesterov
    }

    public func update(_ parameters: [(name: String, parameter: Parameter)], gradients: Gradients) {
        step += 1
        for (name, param) in parameters {
            guard var g = gradients[name] else { continue }
            withoutGradients {
                let p = param.value.detached()
                if weightDecay != 0 { g = g + p * weightDecay }
                var d = g
                if momentum != 0 {
                    let b = buffers[name].map { $0 * momentum + g } ?? g.copy()
                    buffers[name] = b
                    d = nesterov ? g + b * momentum : b
                }
                param.assign(p - d * learningRate)
            }
        }
    }
}

/// Learning rate as a function of the step (0-based).
public enum LearningRateSchedule: Equatable, Sendable {
    case constant(Float)
    /// Linear warm-up from 0 to `peak` over `warmup` steps, then cosine decay to `floor` at `total`.
    case warmupCosine(peak: Float, warmup: Int, total: Int, floor: Float)
    /// Linear warm-up, then linear decay to `floor` at `total`.
    case warmupLinear(peak: Float, warmup: Int, total: Int, floor: Float)

    public func learningRate(at step: Int) -> Float {
        switch self {
        case .constant(let lr): return lr
        case let .warmupCosine(peak, warmup, total, floor):
            if step < warmup { return peak * Float(step + 1) / Float(warmup) }
            let progress = Swift.min(1, Float(step - warmup) / Float(Swift.max(1, total - warmup)))
            return floor + (peak - floor) * 0.5 * (1 + Foundation.cos(Float.pi * progress))
        case let .warmupLinear(peak, warmup, total, floor):
            if step < warmup { return peak * Float(step + 1) / Float(warmup) }
            let progress = Swift.min(1, Float(step - warmup) / Float(Swift.max(1, total - warmup)))
            return peak + (floor - peak) * progress
        }
    }
}

/// Scales gradients so that their global L2 norm is at most `maxNorm` (as
/// `torch.nn.utils.clip_grad_norm_`: coefficient maxNorm/(norm + 1e-6) when below 1).
/// Returns the norm before clipping.
@discardableResult
public func clipGradientNorm(_ gradients: inout Gradients, maxNorm: Float) -> Float {
    let norm = globalNorm(gradients)
    let coef = clipCoefficient(norm: norm, maxNorm: maxNorm)
    if coef != 1 { gradients = gradients.scaled(by: coef) }
    return norm
}

/// The global L2 norm of the gradients: Σ g² in Double over chunks of 2^16 values (split across
/// threads: serial, this pass idled the other cores for ~1% of a training step), the chunks' sums
/// added in order — the same value whatever the thread count.
public func globalNorm(_ gradients: Gradients) -> Float {
    let chunk = 1 << 16
    var total: Double = 0
    for g in gradients.tensors {
        let p = g.storage.pointer, n = g.count, chunks = (n + chunk - 1) / chunk
        var sums = [Double](repeating: 0, count: chunks)
        sums.withUnsafeMutableBufferPointer { out in
            let o = out.baseAddress!
            parallelFor(chunks, grain: 1) { r in
                for c in r { o[c] = dk_sum_squares(p + c * chunk, Swift.min(n, (c + 1) * chunk) - c * chunk, 0) }
            }
        }
        for s in sums { total += s }
    }
    return Float(total.squareRoot())
}

/// What clipping multiplies the gradients by: maxNorm/(norm + 1e-6) when that is below 1, else 1.
public func clipCoefficient(norm: Float, maxNorm: Float) -> Float {
    let coef = maxNorm / (norm + 1e-6)
    return coef < 1 ? coef : 1
}

/// Sums gradients over micro-batches; `average()` gives their mean for one optimizer step.
public struct GradientAccumulator {
    public private(set) var sum: Gradients?
    public private(set) var count = 0

    public init() {}

    public mutating func add(_ g: Gradients) {
        count += 1
        guard let s = sum else { sum = g; return }
        precondition(s.names == g.names, "GradientAccumulator: parameter sets differ between micro-batches")
        sum = Gradients(names: s.names, tensors: withoutGradients { zip(s.tensors, g.tensors).map { $0 + $1 } })
    }

    /// The mean of the accumulated gradients, and a reset.
    public mutating func average() -> Gradients? {
        guard let s = sum, count > 0 else { return nil }
        let n = count
        sum = nil
        count = 0
        return n == 1 ? s : s.scaled(by: 1 / Float(n))      // one micro-batch: its gradients as they are
    }
}
