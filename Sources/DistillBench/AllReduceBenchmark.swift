import DistillTensor
import Foundation

/// `distill bench allreduce` (under `mpirun -np N`): the time of an in-place Float32 sum
/// all-reduce of each size, over all the job's processes, and the bandwidth it amounts to.
///
/// Bus bandwidth is the convention of NCCL's tests: a ring all-reduce moves 2·(N−1)/N of the
/// buffer through each process's link, so busBW = 2·(N−1)/N · bytes / seconds, comparable across N
/// and with a link's rated speed.
public enum AllReduceBenchmark {
    public struct Row: Codable, Sendable {
        public var bytes: Int
        public var seconds: Double
        public var algorithmBandwidth: Double
        public var busBandwidth: Double
    }

    /// Per size, the median of `iterations` timed all-reduces (after one untimed; each started
    /// together after a barrier), averaged over the processes.
    public static func run(group: ProcessGroup, sizes: [Int], iterations: Int = 10) throws -> [Row] {
        try sizes.map { bytes in
            var buffer = [Float](repeating: 1, count: max(1, bytes / 4))
            try group.allReduceSum(&buffer)
            var times: [Double] = []
            for _ in 0..<max(1, iterations) {
                try group.barrier()
                let t0 = DispatchTime.now().uptimeNanoseconds
                try group.allReduceSum(&buffer)
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            }
            // The mean of the processes' medians (each process times the same collectives).
            var median = [times.sorted()[times.count / 2]]
            try group.allReduceSum(&median)
            let s = median[0] / Double(group.size), b = Double(buffer.count * 4), n = Double(group.size)
            return Row(bytes: buffer.count * 4, seconds: s, algorithmBandwidth: b / s, busBandwidth: 2 * (n - 1) / n * b / s)
        }
    }
}
