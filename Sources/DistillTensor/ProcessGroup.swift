import CDistillKernels
import Foundation

public enum ProcessGroupError: Error, Equatable, CustomStringConvertible {
    case noLibrary(launcher: String)
    case failed(String)

    public var description: String {
        switch self {
        case .noLibrary(let launcher):
            return "started by an MPI launcher (\(launcher)) but no MPI library could be opened (tried Open MPI's libmpi.so.40 and MPICH's libmpi.so.12); set DISTILL_MPI_LIBRARY to its path"
        case .failed(let m): return m
        }
    }
}

/// The processes of an MPI job (`mpirun -np N distill …`), for data-parallel training: each knows
/// its rank and the job's size, and sums buffers over all of them. MPI is opened at run time
/// (`dlopen`, see mpi.c), only when an MPI launcher started this process with more than one
/// process; otherwise there is no group and everything runs as a single process.
public final class ProcessGroup: @unchecked Sendable {
    public let rank: Int
    public let size: Int
    /// The MPI library opened.
    public let library: String
    /// Rank 0 writes checkpoints, metrics and outputs, and prints.
    public var isMain: Bool { rank == 0 }

    /// Whether MPI may be called from another thread than the one that initialised it (one
    /// call at a time: MPI_THREAD_SERIALIZED or more), which `allReduceInBackground` needs.
    public let callsFromAnyThread: Bool
    /// The helper thread's queue for all-reduces that overlap other work.
    private let background = DispatchQueue(label: "distill.mpi.allreduce")

    private init(rank: Int, size: Int, library: String, callsFromAnyThread: Bool) {
        self.rank = rank
        self.size = size
        self.library = library
        self.callsFromAnyThread = callsFromAnyThread
    }

    /// The job's size as the launcher tells it (Open MPI: OMPI_COMM_WORLD_SIZE; MPICH, Intel MPI
    /// and Slurm's PMI: PMI_SIZE), with the variable's name.
    public static func launcherSize(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> (Int, String)? {
        for key in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"] {
            if let v = environment[key], let n = Int(v) { return (n, "\(key)=\(v)") }
        }
        return nil
    }

    private static let lock = NSLock()
    private static var joined: ProcessGroup??

    /// The job this process is part of, initialising MPI on first use; nil when not started by an
    /// MPI launcher or started as a single process. Throws when a launcher started several
    /// processes but no MPI library can be opened.
    public static func world() throws -> ProcessGroup? {
        try lock.withLock {
            if let joined { return joined }
            guard let (n, variable) = launcherSize(), n > 1 else {
                joined = .some(nil)
                return nil
            }
            let path = ProcessInfo.processInfo.environment["DISTILL_MPI_LIBRARY"]
            guard dk_mpi_load(path) == 1 else { throw ProcessGroupError.noLibrary(launcher: variable) }
            var level: Int32 = 0
            guard dk_mpi_init(&level) == 0 else { throw ProcessGroupError.failed("MPI_Init failed (\(String(cString: dk_mpi_name())))") }
            let group = ProcessGroup(rank: Int(dk_mpi_rank()), size: Int(dk_mpi_size()), library: String(cString: dk_mpi_name()),
                                     callsFromAnyThread: level >= 2)
            joined = .some(group)
            return group
        }
    }

    /// Sums `values` over all processes, in place (every process gets the sum). The reduction
    /// order is the library's and fixed for a given job size, so results do not depend on timing.
    public func allReduceSum(_ values: inout [Float]) throws {
        let rc = values.withUnsafeMutableBufferPointer { dk_mpi_allreduce_sum_f32($0.baseAddress, $0.count) }
        guard rc == 0 else { throw ProcessGroupError.failed("MPI_Allreduce failed (code \(rc))") }
    }

    /// A sum all-reduce run on a helper thread, in submission order; `wait` gives its result.
    /// Other MPI calls must wait until every pending one has been waited for.
    public final class PendingSum: @unchecked Sendable {
        fileprivate var values: [Float]
        fileprivate var code: Int32 = 0
        fileprivate let done = DispatchSemaphore(value: 0)
        fileprivate init(_ values: [Float]) { self.values = values }

        public func wait() throws -> [Float] {
            done.wait()
            guard code == 0 else { throw ProcessGroupError.failed("MPI_Allreduce failed (code \(code))") }
            return values
        }
    }

    /// Starts summing `values` over all processes on the helper thread (or sums now when MPI
    /// allows calls only from its first thread). Every process must submit the same sequence.
    public func allReduceInBackground(_ values: [Float]) -> PendingSum {
        let pending = PendingSum(values)
        let work = {
            pending.code = pending.values.withUnsafeMutableBufferPointer { dk_mpi_allreduce_sum_f32($0.baseAddress, $0.count) }
            pending.done.signal()
        }
        if callsFromAnyThread { background.async(execute: work) } else { work() }
        return pending
    }

    public func allReduceSum(_ values: inout [Double]) throws {
        let rc = values.withUnsafeMutableBufferPointer { dk_mpi_allreduce_sum_f64($0.baseAddress, $0.count) }
        guard rc == 0 else { throw ProcessGroupError.failed("MPI_Allreduce failed (code \(rc))") }
    }

    /// Rank `root`'s bytes on every process (`data` must have the same count everywhere).
    public func broadcast(_ data: inout [UInt8], root: Int = 0) throws {
        let rc = data.withUnsafeMutableBytes { dk_mpi_bcast_bytes($0.baseAddress, $0.count, Int32(root)) }
        guard rc == 0 else { throw ProcessGroupError.failed("MPI_Bcast failed (code \(rc))") }
    }

    public func barrier() throws {
        let rc = dk_mpi_barrier()
        guard rc == 0 else { throw ProcessGroupError.failed("MPI_Barrier failed (code \(rc))") }
    }

    /// Ends the job: MPI_Finalize after success; after a failure MPI_Abort, which stops the other
    /// processes too (they may be waiting in a collective this one will never join).
    public func finish(success: Bool) {
        if success { _ = dk_mpi_finalize() } else { dk_mpi_abort(1) }
    }
}
