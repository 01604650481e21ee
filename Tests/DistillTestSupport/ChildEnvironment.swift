import DistillTensor
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The environment for a child process whose numerics are compared with this process's: the
/// same GEMM backend as this one chose (`DISTILL_BLAS=on` or `off`), so that a measurement the
/// child would take under the load of the test cannot pick the other backend.
public func sameGemmBackendEnvironment() -> [String: String] {
    ["DISTILL_BLAS": Gemm.backend == .blas ? "on" : "off"]
}

/// Lets `child` run a random number of milliseconds in `ms`, then kills it with SIGKILL and
/// reaps it; returns that instant, or nil when the child ended first (nothing was killed).
public func killAtRandomInstant(_ child: Process, within ms: ClosedRange<Int>) -> Int? {
    let wait = Int.random(in: ms)
    let deadline = Date().addingTimeInterval(Double(wait) / 1000)
    while child.isRunning && Date() < deadline { usleep(1000) }
    guard child.isRunning else { return nil }
    kill(child.processIdentifier, SIGKILL)
    child.waitUntilExit()
    return wait
}
