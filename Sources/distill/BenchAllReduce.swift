import ArgumentParser
import DistillBench
import DistillTensor
import Foundation

extension Bench {
    struct AllReduceBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "allreduce",
            abstract: "All-reduce time and bandwidth between the processes of an MPI job (run it under mpirun -np N).",
            discussion: """
                Example:
                  mpirun -np 2 distill bench allreduce
                  mpirun -np 4 --hostfile hosts distill bench allreduce --sizes-mb 1,16,128
                Bus bandwidth (2·(N−1)/N · bytes / seconds, as NCCL's tests report it) compares with a link's rated speed.
                """)

        @Option(help: "Buffer sizes in MB, comma-separated.") var sizesMb = "1,4,16,64"
        @Option(help: "Timed all-reduces per size (the median is reported).") var iterations = 10
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let sizes = sizesMb.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard !sizes.isEmpty, sizes.allSatisfy({ ($0 ?? 0) > 0 }) else {
                throw ValidationError("--sizes-mb must be positive numbers separated by commas, got '\(sizesMb)'")
            }
            guard iterations >= 1 else { throw ValidationError("--iterations must be at least 1") }
            try inProcessGroup { group in
                guard let group else {
                    throw CLIError("bench allreduce measures between processes: run it under an MPI launcher, e.g. mpirun -np 2 distill bench allreduce")
                }
                let rows = try AllReduceBenchmark.run(group: group, sizes: sizes.map { Int($0! * 1_048_576) }, iterations: iterations)
                guard group.isMain else { return }
                if json {
                    print(String(data: try JSONEncoder().encode(rows), encoding: .utf8)!)
                    return
                }
                print("all-reduce (Float32 sum, in place) over \(group.size) processes, \(group.library):")
                for r in rows {
                    print(String(format: "%8.1f MB  %9.3f ms  algorithm %7.2f GB/s  bus %7.2f GB/s (%.1f Gb/s)", Double(r.bytes) / 1_048_576,
                                 r.seconds * 1000, r.algorithmBandwidth / 1e9, r.busBandwidth / 1e9, r.busBandwidth * 8 / 1e9))
                }
            }
        }
    }
}
