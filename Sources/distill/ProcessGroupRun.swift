import DistillTensor
import Foundation

/// Runs `body` as one process of an MPI job when an MPI launcher started this one (`mpirun -np N
/// distill …`), else alone (`group` nil). The job ends with MPI_Finalize on success; a failure is
/// printed with the rank and ends every process (MPI_Abort), so none waits for a rank that left.
func inProcessGroup(_ body: (ProcessGroup?) throws -> Void) throws {
    let group: ProcessGroup?
    do { group = try ProcessGroup.world() } catch { throw CLIError("\(error)") }
    do {
        try body(group)
    } catch {
        guard let group else { throw error is CLIError ? error : CLIError("\(error)") }
        FileHandle.standardError.write("Error (rank \(group.rank) of \(group.size)): \(error)\n".data(using: .utf8)!)
        group.finish(success: false)
        throw error
    }
    group?.finish(success: true)
}
