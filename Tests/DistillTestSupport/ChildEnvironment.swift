import DistillTensor
import Foundation

/// The environment for a child process whose numerics are compared with this process's: the
/// same GEMM backend as this one chose (`DISTILL_BLAS=on` or `off`), so that a measurement the
/// child would take under the load of the test cannot pick the other backend.
public func sameGemmBackendEnvironment() -> [String: String] {
    ["DISTILL_BLAS": Gemm.backend == .blas ? "on" : "off"]
}
