import CDistillKernels
import Foundation

/// Which GEMM implementation runs matrix products.
public enum GemmBackend: String, CaseIterable, Sendable {
    /// A CBLAS library found at run time (OpenBLAS on Linux, Accelerate on Apple platforms).
    case blas
    /// Distill's own blocked GEMM (AVX-512 or AVX2+FMA micro-kernel where the CPU has it, else portable).
    case builtin
    /// The same built-in GEMM with the portable micro-kernel forced (for tests and benchmarks).
    case portable
    /// Plain loops in Swift: the slow, obvious version that the others are tested against.
    case reference
}

/// Matrix multiplication entry point: chooses the backend, splits work across threads.
public enum Gemm {
    /// The backend ops use: a BLAS library found at run time where it measures faster than the
    /// built-in kernel on this machine, else the built-in kernel (see `GemmSelection`).
    /// `DISTILL_BLAS=off` forces the built-in kernel; `on` or `/path/to/lib.so` a library.
    nonisolated(unsafe) public static var backend: GemmBackend = GemmBackend(rawValue: choice.backend) ?? .builtin

    /// How `backend` was chosen (measured, cached, or set).
    nonisolated(unsafe) public static var choice: GemmChoice = GemmSelection.choose()

    /// Which built-in micro-kernel runs and how it was chosen (`GemmKernelChoice`); made on first
    /// use of `backend` (a call naming `.builtin` before that runs the widest kernel the CPU has).
    nonisolated(unsafe) public static var kernelChoice: GemmKernelChoice = GemmSelection.chooseKernel()

    /// Whether a BLAS library is loaded (loading it on first use).
    public static var blasAvailable: Bool { _ = choice; return dk_blas_available() == 1 }
    /// The loaded BLAS library's path, or nil.
    public static var blasName: String? { blasAvailable ? String(cString: dk_blas_name()) : nil }
    /// The built-in micro-kernel chosen for this CPU.
    public static var builtinKernelName: String { String(cString: dk_gemm_kernel_name()) }
    /// The built-in micro-kernels this CPU supports, portable first and the default last (unless
    /// `DISTILL_GEMM_KERNEL` asked for another).
    public static var builtinKernels: [String] {
        (0..<dk_gemm_kernel_count()).map { String(cString: dk_gemm_kernel_name_at($0)) }
    }
    /// Makes `builtin` use the supported micro-kernel whose name starts with `prefix` ("avx2",
    /// "avx512", "portable"); false when the CPU has none. For tests and benchmarks.
    @discardableResult
    public static func useBuiltinKernel(_ prefix: String) -> Bool {
        guard let i = builtinKernels.firstIndex(where: { $0.hasPrefix(prefix) }) else { return false }
        return dk_gemm_use_kernel(Int32(i)) == 1
    }

    /// Calls, FLOPs and seconds of the top-level (threaded) products while `tally` is set — not
    /// those run inside parallel loops (attention's per-head products): `distill bench train`
    /// reports how fast its step's products ran and what share of the step they took. Set it
    /// only while one thread multiplies.
    public struct Tally: Sendable {
        public var calls = 0
        public var flops = 0.0
        public var seconds = 0.0
        public init() {}
    }
    nonisolated(unsafe) public static var tally: Tally?

    /// C[M,N] = alpha·op(A)·op(B) + beta·C, row-major. `threaded: false` runs on the calling
    /// thread only (used inside already-parallel loops).
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int,
                             backend: GemmBackend? = nil, threaded: Bool = true) {
        let be = backend ?? self.backend
        let ta: Int32 = transA ? 1 : 0, tb: Int32 = transB ? 1 : 0
        let started = tally != nil && threaded ? DispatchTime.now().uptimeNanoseconds : 0
        defer {
            if started != 0 {
                tally?.calls += 1
                tally?.flops += 2 * Double(m) * Double(n) * Double(k)
                tally?.seconds += Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
            }
        }
        switch be {
        case .blas where dk_blas_available() == 1 && threaded && !Threads.isLimited:
            dk_blas_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        case .reference:
            referenceGemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                          a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        default:
            let kernel = be == .portable ? dk_sgemm_portable : dk_sgemm
            let work = m * n * k
            let threads = threaded ? min(Threads.count, Swift.max(1, work / (1 << 18))) : 1
            if threads <= 1 {
                kernel(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            } else if m >= 8 * threads && !splitsColumns(m: m, n: n, transA: transA, lda: lda, threads: threads) {
                // Split rows of C: rows i0..<i1 of op(A).
                parallelFor(threads, grain: 1) { ts in
                    for t in ts {
                        let i0 = m * t / threads, i1 = m * (t + 1) / threads
                        let aOff = transA ? a + i0 : a + i0 * lda
                        kernel(ta, tb, i1 - i0, n, k, alpha, aOff, lda, b, ldb, beta, c + i0 * ldc, ldc)
                    }
                }
            } else {
                // Few rows (matrix-vector like, or a weight gradient's): split columns of C, at
                // multiples of 32 columns where there are enough (whole slivers of either kernel).
                let unit = n >= 64 * threads ? 32 : 1
                parallelFor(threads, grain: 1) { ts in
                    for t in ts {
                        let j0 = n / unit * t / threads * unit, j1 = t + 1 == threads ? n : n / unit * (t + 1) / threads * unit
                        let bOff = transB ? b + j0 * ldb : b + j0
                        kernel(ta, tb, m, j1 - j0, k, alpha, a, lda, bOff, ldb, beta, c + j0, ldc)
                    }
                }
            }
        }
    }

    /// Whether a product of `m` rows splits its columns rather than its rows across threads. Each
    /// thread packs all of op(B) it multiplies, and with rows split that is all of op(B): for a
    /// weight gradient (m = a layer's outputs, 128–256 here; k = the batch's tokens) its packing
    /// weighs as much as a few rows' products, and for a wide product (the output layer's logits,
    /// n = the vocabulary) each thread copied all of the 8 MB matrix. With columns split each packs
    /// its share of op(B) and reads op(A) in place (where it is packed — Aᵀ with long rows — every
    /// thread would pack all of it, so rows stay split). One core, dW = gᵀ·x over 2048 tokens, the
    /// split's share of each: 128 × 256 0.64–0.91 ms against 0.73–1.18; 256 × 704 3.7–5.4 against
    /// 4.0–6.0. Both cores, columns against rows, mean of 10–16 alternating runs in four rounds
    /// (Zen 4): 2048 × 8192 × 256 +8.8, +8.9, +1.7, +4.0%; 2048 × 8192 × 512 +3.8, +0.8, +3.2,
    /// +3.6%; 2048 × 1408 × 512 +1.3, +7.7, +3.3, +2.6%. Narrower ones were mixed (2048 × 704 × 256
    /// −5.8 to +4.8%, 2048 × 256 × 256 −5.4 to +1.1%) and keep rows.
    static func splitsColumns(m: Int, n: Int, transA: Bool, lda: Int, threads: Int) -> Bool {
        (m <= 256 || 2 * n >= m) && n >= 64 * threads && dk_sgemm_packs_a(transA ? 1 : 0, lda) == 0
    }

    /// Triple loop with Double accumulation: the reference the fast kernels are tested against.
    public static func referenceGemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                                     a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                     beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        for i in 0..<m {
            for j in 0..<n {
                var s: Double = 0
                for p in 0..<k {
                    let av = transA ? a[p * lda + i] : a[i * lda + p]
                    let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                    s += Double(av) * Double(bv)
                }
                let prev = beta == 0 ? 0 : beta * c[i * ldc + j]
                c[i * ldc + j] = alpha * Float(s) + prev
            }
        }
    }
}
