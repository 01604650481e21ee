import Foundation

/// Seedable pseudo-random generator (xoshiro256**, seeded through SplitMix64). Every random
/// choice in Distill takes one, so the same seed gives the same run.
public struct RandomGenerator: RandomNumberGenerator, Codable, Equatable, Sendable {
    public private(set) var state: [UInt64]
    /// When set, `Tensor.randomNormal` and `randomUniform` return zeros without drawing: for
    /// building a model whose weights are loaded right after (see `skippingInitialization`).
    public private(set) var skipsTensorInitialization = false
    /// With `skipsTensorInitialization`: leave the tensors unfilled rather than zero (memory that
    /// is never written is never resident: for skeletons every weight of which is assigned next).
    public private(set) var leavesTensorsUnfilled = false

    /// A generator that makes the random tensor factories return zeros (cheap model skeletons).
    public static var skippingInitialization: RandomGenerator {
        var g = RandomGenerator(seed: 0)
        g.skipsTensorInitialization = true
        return g
    }

    /// A generator that makes the random tensor factories return unfilled tensors.
    public static var unfilled: RandomGenerator {
        var g = skippingInitialization
        g.leavesTensorsUnfilled = true
        return g
    }

    public init(seed: UInt64) {
        var z = seed
        var s = [UInt64](repeating: 0, count: 4)
        for i in 0..<4 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            s[i] = x ^ (x >> 31)
        }
        state = s
    }

    public mutating func next() -> UInt64 {
        let result = ((state[1] &* 5) << 7 | (state[1] &* 5) >> 57) &* 9
        let t = state[1] << 17
        state[2] ^= state[0]
        state[3] ^= state[1]
        state[1] ^= state[2]
        state[0] ^= state[3]
        state[2] ^= t
        state[3] = state[3] << 45 | state[3] >> 19
        return result
    }

    /// Uniform in [0, 1) with 24 random bits.
    public mutating func nextFloat() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Standard normal (Box–Muller).
    public mutating func nextNormal() -> Float {
        var u1 = nextFloat()
        while u1 <= 0 { u1 = nextFloat() }
        let u2 = nextFloat()
        return Float((-2 * Foundation.log(Double(u1))).squareRoot() * Foundation.cos(2 * Double.pi * Double(u2)))
    }
}

extension Tensor {
    /// Normal(mean, std) entries.
    public static func randomNormal(_ shape: [Int], mean: Float = 0, std: Float = 1,
                                    using rng: inout RandomGenerator) -> Tensor {
        if rng.skipsTensorInitialization { return rng.leavesTensorsUnfilled ? Tensor(uninitializedShape: shape) : Tensor(zeros: shape) }
        let t = Tensor(uninitializedShape: shape)
        for i in 0..<t.count { t.storage.pointer[i] = mean + std * rng.nextNormal() }
        return t
    }

    /// Uniform entries in [low, high).
    public static func randomUniform(_ shape: [Int], low: Float = 0, high: Float = 1,
                                     using rng: inout RandomGenerator) -> Tensor {
        if rng.skipsTensorInitialization { return rng.leavesTensorsUnfilled ? Tensor(uninitializedShape: shape) : Tensor(zeros: shape) }
        let t = Tensor(uninitializedShape: shape)
        for i in 0..<t.count { t.storage.pointer[i] = low + (high - low) * rng.nextFloat() }
        return t
    }

    /// Inverted dropout: zeroes each entry with probability `p` and scales the rest by 1/(1−p).
    /// Identity when `p` is 0.
    public func dropout(p: Float, using rng: inout RandomGenerator) -> Tensor {
        precondition(p >= 0 && p < 1, "dropout: probability \(p) outside [0, 1)")
        if p == 0 { return self }
        let mask = Tensor(uninitializedShape: shape)
        let keep = 1 / (1 - p)
        for i in 0..<count { mask.storage.pointer[i] = rng.nextFloat() < p ? 0 : keep }
        return zipKernel(self, mask, Mul()).recorded(.dropout(mask: mask), [self])
    }
}
