// C kernels for DistillTensor. Only compute lives here; shapes, errors and threading are Swift's.
#ifndef CDISTILL_KERNELS_H
#define CDISTILL_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

// ---- GEMM (row-major): C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C ----
// op(A) = A (lda >= K) or, with transA, A^T where A is stored [K,M] (lda >= M). Same for B.
// Single-threaded; callers split M or N across threads.

/// The built-in blocked GEMM (packing + register-tiled micro-kernel). Uses the AVX2+FMA kernel
/// when the CPU has it (checked once at run time), else the portable vector kernel.
void dk_sgemm(int transA, int transB, long M, long N, long K, float alpha,
              const float *A, long lda, const float *B, long ldb,
              float beta, float *C, long ldc);

/// Same, forcing the portable kernel (for tests and benchmarks).
void dk_sgemm_portable(int transA, int transB, long M, long N, long K, float alpha,
                       const float *A, long lda, const float *B, long ldb,
                       float beta, float *C, long ldc);

/// Name of the micro-kernel that dk_sgemm uses on this CPU ("avx2-fma 6x16" or "portable 4x8").
const char *dk_gemm_kernel_name(void);

// ---- CBLAS found at run time ----

/// Tries to open a CBLAS library. `path` NULL tries the usual names (OpenBLAS, then Accelerate on
/// Apple platforms). Returns 1 when cblas_sgemm was found.
int dk_blas_load(const char *path);
/// 1 when a CBLAS library is loaded.
int dk_blas_available(void);
/// The file that was loaded, or "" when none.
const char *dk_blas_name(void);
/// Sets the BLAS library's thread count when it exposes a setter (OpenBLAS); no-op otherwise.
void dk_blas_set_threads(int n);
/// cblas_sgemm in row-major order. Only valid when dk_blas_available() is 1.
void dk_blas_sgemm(int transA, int transB, long M, long N, long K, float alpha,
                   const float *A, long lda, const float *B, long ldb,
                   float beta, float *C, long ldc);

#ifdef __cplusplus
}
#endif
#endif
