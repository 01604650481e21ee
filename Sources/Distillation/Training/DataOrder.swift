import DistillTensor

/// The order in which the trainer visits training examples.
public enum DataOrder: Codable, Equatable, Sendable {
    /// 0, 1, 2, … every epoch.
    case sequential
    /// A fresh permutation every epoch, drawn from `RandomGenerator(seed: seed &+ epoch)`.
    case shuffled(seed: UInt64)
    /// The given order every epoch, e.g. `Curriculum.ranking` (easiest first) for curriculum
    /// ordering. It must list example indices; an index out of range traps.
    case ordered([Int])
    /// Sampling by difficulty: each example of a batch comes from the hard pool with the
    /// curriculum's hard share at that step (the trainer's random generator draws).
    case curriculum(Curriculum)
}

/// Where the trainer is in its data: saved in checkpoints so a resumed run sees the same examples.
public struct DataPosition: Codable, Equatable, Sendable {
    public var epoch: Int
    /// Index of the next example within `order`.
    public var index: Int
    /// This epoch's visiting order (example indices).
    public var order: [Int]

    public init(epoch: Int, index: Int, order: [Int]) {
        self.epoch = epoch
        self.index = index
        self.order = order
    }

    /// The start of epoch 0.
    public static func start(count: Int, order kind: DataOrder) -> DataPosition {
        DataPosition(epoch: 0, index: 0, order: epochOrder(count: count, epoch: 0, kind: kind))
    }

    /// The visiting order of one epoch.
    public static func epochOrder(count: Int, epoch: Int, kind: DataOrder) -> [Int] {
        switch kind {
        case .sequential, .curriculum: return Array(0..<count)
        case .ordered(let order):
            precondition(order.allSatisfy { $0 >= 0 && $0 < count }, "DataOrder.ordered: an index is outside 0..<\(count)")
            return order
        case .shuffled(let seed):
            var rng = RandomGenerator(seed: seed &+ UInt64(epoch))
            var order = Array(0..<count)
            order.shuffle(using: &rng)
            return order
        }
    }

    /// The next `n` example indices, moving to the next epoch (and order) when one ends.
    public mutating func next(_ n: Int, count: Int, kind: DataOrder) -> [Int] {
        precondition(count > 0, "DataPosition.next: no training examples")
        var out: [Int] = []
        while out.count < n {
            if index >= order.count {
                epoch += 1
                index = 0
                order = DataPosition.epochOrder(count: count, epoch: epoch, kind: kind)
            }
            out.append(order[index])
            index += 1
        }
        return out
    }
}

/// Curriculum learning by difficulty: examples are ranked by a difficulty score (teacher loss or
/// length) and split at the median into an easy and a hard pool; a batch draws each example from
/// the hard pool with probability `hardShare(at:)`, which rises linearly from `startHardShare`
/// (default 20 %) at step 0 to `endHardShare` (80 %) at step `totalSteps − 1`.
public struct Curriculum: Codable, Equatable, Sendable {
    /// Example indices, easiest first (ties by index).
    public var ranking: [Int]
    public var startHardShare: Double
    public var endHardShare: Double
    public var totalSteps: Int

    /// A curriculum over examples with the given difficulties (higher = harder).
    public init(difficulties: [Double], totalSteps: Int, startHardShare: Double = 0.2, endHardShare: Double = 0.8) {
        precondition(!difficulties.isEmpty, "Curriculum: no examples")
        ranking = difficulties.indices.sorted { (difficulties[$0], $0) < (difficulties[$1], $1) }
        self.startHardShare = startHardShare
        self.endHardShare = endHardShare
        self.totalSteps = totalSteps
    }

    /// Easy pool: the first half of the ranking (the smaller half when odd); hard pool: the rest.
    public var easy: [Int] { Array(ranking.prefix(ranking.count / 2)) }
    public var hard: [Int] { Array(ranking.dropFirst(ranking.count / 2)) }

    /// Share of hard examples at `step`: start + (end − start) · min(1, step / (totalSteps − 1)).
    public func hardShare(at step: Int) -> Double {
        let progress = Swift.min(1, Double(Swift.max(0, step)) / Double(Swift.max(1, totalSteps - 1)))
        return startHardShare + (endHardShare - startHardShare) * progress
    }

    /// Draws `n` example indices for `step`: for each, a uniform u < hardShare picks the hard
    /// pool, then a uniform index within the pool.
    public func sample(_ n: Int, step: Int, using rng: inout RandomGenerator) -> [Int] {
        let e = easy, h = hard, share = hardShare(at: step)
        return (0..<n).map { _ in
            let pool = (Double(rng.nextFloat()) < share || e.isEmpty) ? h : e
            return pool[Int(rng.next() % UInt64(pool.count))]
        }
    }

    /// Difficulty = sequence length.
    public static func lengthDifficulties(_ sequences: [TokenSequence]) -> [Double] {
        sequences.map { Double($0.ids.count) }
    }
}
