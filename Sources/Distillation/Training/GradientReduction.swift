import DistillNN
import DistillTensor
import Foundation

/// Data-parallel gradient sums over an MPI job (`TrainerConfiguration.processGroup`).
///
/// The gradients travel in buckets of at most 4M values fixed by the parameter list alone —
/// walked from the last parameter to the first, the order a backward pass finishes them in — and
/// every process submits the buckets in that same order, so the collectives always match and each
/// value's sum is the same however the work was timed.
enum GradientReduction {
    static let bucketValues = 4 << 20

    /// Bucket of each parameter (by index), and the members of each bucket in order.
    static func buckets(_ counts: [Int]) -> (of: [Int], members: [[Int]]) {
        var of = [Int](repeating: 0, count: counts.count), members: [[Int]] = [], size = 0
        for i in counts.indices.reversed() {
            if members.isEmpty || (size + counts[i] > bucketValues && size > 0) {
                members.append([])
                size = 0
            }
            members[members.count - 1].append(i)
            of[i] = members.count - 1
            size += counts[i]
        }
        return (of, members)
    }

    /// The accumulated micro-batch gradients summed over the job (after the backward pass).
    static func sum(_ acc: GradientAccumulator, over group: ProcessGroup) throws -> [Tensor] {
        guard let local = acc.sum else { throw TrainerError.invalidConfiguration("rank \(group.rank) ran no micro-batch") }
        let sum = OverlappedGradientSum(group: group, prior: nil, shapes: local.tensors.map(\.shape))
        for (i, t) in local.tensors.enumerated() { sum.ready(i, t) }
        return try sum.finish()
    }

    /// The step's gradient: the job's sum over its micro-batches divided by their number, as
    /// `GradientAccumulator.average` does in one process.
    static func mean(_ summed: [Tensor], names: [String], microBatches: Int) -> Gradients {
        let scale = 1 / Float(microBatches)
        return Gradients(names: names, tensors: withoutGradients { summed.map { $0 * scale } })
    }

    /// The loss sums and the token count over the job.
    static func sum(_ sums: inout [Float], tokens: inout Int, over group: ProcessGroup) throws {
        var totals = sums.map(Double.init) + [Double(tokens)]
        try group.allReduceSum(&totals)
        sums = totals.dropLast().map(Float.init)
        tokens = Int(totals.last!)
    }
}

/// Receives a backward pass's gradients as they become final (`gradients(of:wrt:onReady:)`),
/// adds the step's earlier micro-batches (`prior`), and hands each bucket to the process group's
/// helper thread as soon as it and the buckets before it are complete.
final class OverlappedGradientSum {
    let group: ProcessGroup
    let prior: Gradients?
    let shapes: [[Int]]
    let bucketOf: [Int]
    let members: [[Int]]
    private var remaining: [Int]
    private var totals: [Tensor?]
    private var next = 0
    private var pending: [ProcessGroup.PendingSum] = []

    init(group: ProcessGroup, prior: Gradients?, shapes: [[Int]]) {
        self.group = group
        self.prior = prior
        self.shapes = shapes
        (bucketOf, members) = GradientReduction.buckets(shapes.map { $0.reduce(1, *) })
        remaining = members.map(\.count)
        totals = Array(repeating: nil, count: shapes.count)
    }

    func ready(_ i: Int, _ g: Tensor) {
        totals[i] = prior.map { p in withoutGradients { p.tensors[i] + g } } ?? g
        remaining[bucketOf[i]] -= 1
        while next < members.count && remaining[next] == 0 {
            var values: [Float] = []
            values.reserveCapacity(members[next].reduce(0) { $0 + totals[$1]!.count })
            for m in members[next] { values += totals[m]!.scalars }
            pending.append(group.allReduceInBackground(values))
            next += 1
        }
    }

    /// Waits for every bucket; the summed gradients by parameter index.
    func finish() throws -> [Tensor] {
        guard next == members.count else {
            throw TrainerError.invalidConfiguration("gradient all-reduce: \(members.count - next) buckets never completed")
        }
        var out = [Tensor?](repeating: nil, count: shapes.count)
        for (b, p) in pending.enumerated() {
            let values = try p.wait()
            var at = 0
            for m in members[b] {
                let n = shapes[m].reduce(1, *)
                out[m] = Tensor(Array(values[at..<(at + n)]), shape: shapes[m])
                at += n
            }
        }
        return out.map { $0! }
    }
}
