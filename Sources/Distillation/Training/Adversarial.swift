import DistillTensor

/// Adversarial training on the input embeddings (seed 004 §4.2): the student also learns from the
/// batch with its embedding output moved by a small perturbation r in the direction that raises
/// the loss most, which smooths it around the data.
///
/// - FGM (fast gradient method, Miyato et al. 2017): r = ε · g / ‖g‖, g the gradient of the clean
///   loss with respect to the embedding output [B, T, H] of the whole micro-batch, ‖·‖ its L2 norm.
/// - PGD (projected gradient descent, Madry et al. 2018): r₀ = 0, r_{k+1} = Π_ε(r_k + α · g_k / ‖g_k‖)
///   for k < `steps`, g_k the gradient at r_k and Π_ε the projection onto the ball ‖r‖ ≤ ε.
///
/// The step's gradients are those of the clean loss plus those of the loss at the final r (r a
/// constant there), so the objective is L(e) + L(e + r). The teacher sees the clean batch. The
/// perturbation is added to the embedding layer's output (after a √hidden scale where the
/// architecture has one).
public struct AdversarialTraining: Equatable, Sendable {
    public enum Method: String, Equatable, Sendable { case fgm, pgd }

    public var method: Method
    /// Radius of the perturbation (FGM: its norm; PGD: the ball it is kept in), ≥ 0.
    public var epsilon: Float
    /// Ascent steps (FGM: 1).
    public var steps: Int
    /// PGD's step α; nil: 2ε / steps (`pgdStepSize`).
    public var stepSize: Float?

    public init(method: Method, epsilon: Float, steps: Int = 1, stepSize: Float? = nil) {
        self.method = method
        self.epsilon = epsilon
        self.steps = method == .fgm ? 1 : steps
        self.stepSize = stepSize
    }

    /// PGD's step: `stepSize`, else 2ε / steps (so that the steps can reach the ball's edge and turn).
    public var pgdStepSize: Float { stepSize ?? 2 * epsilon / Float(Swift.max(1, steps)) }

    func validate() throws {
        func fail(_ r: String) throws -> Never { throw TrainerError.invalidConfiguration("adversarial training: " + r) }
        if !(epsilon >= 0) || !epsilon.isFinite { try fail("epsilon \(epsilon) must be finite and ≥ 0") }
        if steps < 1 { try fail("steps \(steps) must be at least 1") }
        if let a = stepSize, !(a > 0) || !a.isFinite { try fail("step size \(a) must be finite and > 0") }
    }

    /// The perturbation after one ascent step from `r` along `gradient` (same shape); `r` nil is
    /// the zero perturbation. A zero gradient leaves r as it is.
    public func step(from r: [Float]?, gradient g: [Float]) -> [Float] {
        let norm = Self.norm(g)
        let size = method == .fgm ? epsilon : pgdStepSize
        var out = r ?? [Float](repeating: 0, count: g.count)
        guard norm > 0 else { return out }
        let s = size / norm
        for i in out.indices { out[i] += s * g[i] }
        if method == .pgd {
            let n = Self.norm(out)
            if n > epsilon {
                let shrink = epsilon / n
                for i in out.indices { out[i] *= shrink }
            }
        }
        return out
    }

    /// L2 norm, accumulated in Double.
    static func norm(_ v: [Float]) -> Float {
        var s: Double = 0
        for x in v { s += Double(x) * Double(x) }
        return Float(s.squareRoot())
    }
}
