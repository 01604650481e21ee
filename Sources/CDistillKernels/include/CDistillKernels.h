// C kernels for DistillTensor. Only compute (and the worker pool that parallel loops run on) lives
// here; shapes, errors and the splitting of work are Swift's.
#ifndef CDISTILL_KERNELS_H
#define CDISTILL_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- GEMM (row-major): C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C ----
// op(A) = A (lda >= K) or, with transA, A^T where A is stored [K,M] (lda >= M). Same for B.
// Single-threaded; callers split M or N across threads.

/// The built-in blocked GEMM (packing + register-tiled micro-kernel). Uses the best kernel the
/// CPU has (checked once at run time): AVX-512, AVX2+FMA, else the portable vector kernel, until
/// dk_gemm_use_kernel picks another (DistillTensor's GemmSelection picks the faster FMA kernel).
void dk_sgemm(int transA, int transB, long M, long N, long K, float alpha,
              const float *A, long lda, const float *B, long ldb,
              float beta, float *C, long ldc);

/// 1 when dk_sgemm copies op(A) into packed slivers, 0 when it reads full panels of op(A) in
/// place: Aᵀ with rows of A more than 256 floats apart is packed. Callers that split a product
/// across threads use it: a split by columns makes every thread pack all of a packed op(A).
int dk_sgemm_packs_a(int transA, long lda);

/// Same, forcing the portable kernel (for tests and benchmarks).
void dk_sgemm_portable(int transA, int transB, long M, long N, long K, float alpha,
                       const float *A, long lda, const float *B, long ldb,
                       float beta, float *C, long ldc);

/// Name of the micro-kernel that dk_sgemm uses ("avx512 12x32", "avx2-fma 6x16", "portable 4x8").
const char *dk_gemm_kernel_name(void);
/// The micro-kernels this CPU supports (portable first, best last), their names, and a switch
/// to kernel i for the rest of the process (returns 0 when i is not supported; for tests and
/// benchmarks). Quantized products keep a 16-wide kernel (their packed slivers are 16 wide).
int dk_gemm_kernel_count(void);
const char *dk_gemm_kernel_name_at(int i);
int dk_gemm_use_kernel(int i);

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
/// OpenBLAS's kernel family for this CPU (openblas_get_corename: "Haswell", "Zen", "SkylakeX",
/// or "Prescott" when it does not know the CPU); NULL for other libraries.
const char *dk_blas_core_name(void);
/// OpenBLAS's build description (openblas_get_config: version, DYNAMIC_ARCH, …); NULL otherwise.
const char *dk_blas_config(void);
/// cblas_sgemm in row-major order. Only valid when dk_blas_available() is 1.
void dk_blas_sgemm(int transA, int transB, long M, long N, long K, float alpha,
                   const float *A, long lda, const float *B, long ldb,
                   float beta, float *C, long ldc);


// ---- Quantized matrix-vector products (GGML block formats, 32 weights per block) ----

enum { DK_Q4_0 = 2, DK_Q4_1 = 3, DK_Q5_0 = 6, DK_Q5_1 = 7, DK_Q8_0 = 8, DK_Q4_K = 12, DK_Q5_K = 13, DK_Q6_K = 14,
       DK_BF16 = 30 };   // GGML type ids (BF16 kept here in rows of 32-value blocks, 64 bytes each)
/// Values per block: 32, or 256 for the K-quants. dk_qgemv has AVX2 kernels for the 32-value
/// types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and portable code (expand a block, multiply) for every
/// type; dk_qgemv_q8 takes Q4_0, Q4_1 and Q8_0 only.
long dk_qblock_values(int type);

/// Bytes of one 32-weight block of `type` (0 for an unknown type).
long dk_qblock_bytes(int type);
/// Y[i][r] = sum_c X[i][c] * W[r][c] for rows r in [row0, row1) and i < m, where W is row-major
/// [rows, cols] in blocks of `type` (cols a multiple of 32), X has row stride ldx, Y row stride ldy.
/// Each block is expanded to the Float32 values the loader dequantizes to. Uses AVX2+FMA when
/// the CPU has it. Single-threaded; callers split the rows.
void dk_qgemv(int type, const void *W, long cols, const float *X, long m, long ldx,
              float *Y, long ldy, long row0, long row1);
/// Same with the portable scalar code (tests).
void dk_qgemv_portable(int type, const void *W, long cols, const float *X, long m, long ldx,
                       float *Y, long ldy, long row0, long row1);
/// Rows [row0, row1) of W dequantized into out (row-major [rows, cols]).
void dk_qdequantize_rows(int type, const void *W, long cols, float *out, long row0, long row1);
/// One block of 32 weights expanded to Float32, as dk_qdequantize_rows does.
void dk_qexpand_block(int type, const void *block, float *w);
/// The micro-kernel a product over quantized weights uses (an index into the supported ones),
/// read once and passed to each call of that product: the chosen kernel may change meanwhile
/// (its measurement switches it), and the packing and the products must agree.
int dk_quantized_kernel(void);
/// Columns of `kernel`'s slivers (16 for AVX2, 32 for AVX-512): callers splitting W's rows
/// across threads give each a multiple of it.
long dk_quantized_sliver_columns(int kernel);
/// Floats dk_pack_a_all needs for A [M, K].
long dk_packed_a_floats(int kernel, long M, long K);
/// A [M, K] (row stride lda) packed once into `kernel`'s row panels, for dk_sgemm_quantized.
void dk_pack_a_all(int kernel, long M, long K, const float *A, long lda, float *Ap);
/// Columns [n0, n1) of C [M, N] = A [M, K] · Wᵀ, W [N, K] in quantized blocks (K a multiple of
/// 32), A packed by dk_pack_a_all for the same kernel: the built-in GEMM packing its B panels
/// straight from the blocks. Single-threaded; callers split [0, N) across threads and share Ap.
void dk_sgemm_quantized(int kernel, int type, long M, long K, const float *Ap, const void *W,
                        long n0, long n1, float *C, long ldc);

// ---- bfloat16 products (AVX512_BF16) ----
/// 1 when the CPU runs VDPBF16PS (AVX512_BF16 with AVX-512F).
int dk_bf16dot_available(void);
/// 32-bit words dk_bf16dot_pack_a writes for x [M, K] (K even).
long dk_bf16dot_packed_a_words(long M, long K);
/// Row slivers of x [M, ·] in the packing (threads may pack disjoint ranges of them).
long dk_bf16dot_slivers(long M);
/// Packs slivers s0..<s1 of x [M, K] (row stride lda), each value rounded to bfloat16 (to nearest,
/// ties to even; subnormals as zero where the CPU's conversion does so), into the row slivers
/// dk_sgemm_bf16dot reads.
void dk_bf16dot_pack_a(long M, long K, const float *A, long lda, uint32_t *Ap, long s0, long s1);
/// C[:, n0..<n1] = x·Wᵀ for W [N, K] bfloat16 rows (K a multiple of 32), x packed by
/// dk_bf16dot_pack_a; products of bfloat16 pairs summed in Float32. Only where
/// dk_bf16dot_available() is 1.
void dk_sgemm_bf16dot(long M, long K, const uint32_t *Ap, const void *W, long n0, long n1, float *C, long ldc);
/// Expands blocks [k0, k0 + kc) of `cols` (≤ 16; none: zeros) rows of W (row stride rowBytes)
/// into 16 columns of a GEMM sliver, dst[k * ldd + c] (zero past cols; ldd 16, or 32 for the two
/// halves of an AVX-512 sliver), with AVX2; returns 0 (nothing done) where that does not apply
/// (no AVX2, 256-value blocks).
int dk_qpack_sliver16(int type, const void *W, long rowBytes, int cols, long k0, long kc, float *dst, long ldd);

/// Quantizes each block of 32 activations to int8 (d = max|x|/127, q = round(x/d)) with the sum
/// of its q; cols a multiple of 32.
void dk_quantize_q8_blocks(const float *x, long cols, int8_t *q, float *d, int32_t *sum);
/// The same with the portable code (AVX2 where the CPU has it gives the same bytes; tests).
void dk_quantize_q8_blocks_portable(const float *x, long cols, int8_t *q, float *d, int32_t *sum);
/// Kernels of the fast option: the fastest the CPU runs (AVX-512 VNNI, else AVX-VNNI, else AVX2,
/// else portable), or one forced (see dk_qgemv_q8_supports). Each but the portable one is
/// dk_q8gemm on a packed matrix (q8gemm.c); the portable one is dk_qgemv_q8 on the blocks.
enum { DK_Q8_BEST = 0, DK_Q8_PORTABLE = 1, DK_Q8_AVX2 = 2, DK_Q8_VNNI = 3, DK_Q8_AVXVNNI = 4 };
/// Like dk_qgemv with the activations quantized by dk_quantize_q8_blocks (m rows of cols/32
/// blocks each): integer dot products per block, in portable code. Slightly changes the results
/// (activation rounding): the fast decoding option.
void dk_qgemv_q8(int type, const void *W, long cols, const int8_t *Q, const float *D, const int32_t *S,
                 long m, float *Y, long ldy, long row0, long row1);
/// 1 where this CPU runs the fast option's `kernel`.
int dk_qgemv_q8_supports(int kernel);
/// 1 where this CPU runs AVX-512 VNNI (dk_qgemv_q8's fastest kernels, dk_q8gemm).
int dk_q8_vnni_available(void);
/// The fast option's AVX-512 VNNI products (q8gemm.c): W [rows, cols] in Q4_0, Q4_1 or Q8_0
/// blocks repacked once into slivers of 16 rows, dk_q8_packed_bytes(type, rows, cols) bytes
/// (the size of the blocks); dk_q8_pack writes slivers [s0, s1) (threads may pack disjoint ranges;
/// a partial last sliver is padded with zero rows).
long dk_q8_packed_bytes(int type, long rows, long cols);
void dk_q8_pack(int type, const void *W, long rows, long cols, void *P, long s0, long s1);
/// dk_q8_pack with the packing code of `isa`: 0 portable, 1 AVX2, 2 AVX-512 (where the CPU runs
/// it, else portable) — the same bytes (tests).
void dk_q8_pack_with(int isa, int type, const void *W, long rows, long cols, void *P, long s0, long s1);
/// Rows [row0, row1) of Y [m, ·] (row stride ldy) = x·Wᵀ for W packed by dk_q8_pack and m
/// activation rows quantized by dk_quantize_q8_blocks: dk_qgemv_q8's arithmetic, rounded in
/// another order; each row's result independent of the other input rows and of the range, and
/// the same bits with each `kernel`: DK_Q8_VNNI (AVX-512 VNNI), DK_Q8_AVXVNNI, or else AVX2 —
/// one the CPU runs (dk_qgemv_q8_supports). Ranges on multiples of 16 do no wasted work.
/// Single-threaded; x86-64 only.
void dk_q8gemm(int type, const void *P, long cols, const int8_t *Q, const float *D, const int32_t *S,
               long m, float *Y, long ldy, long row0, long row1, int kernel);

// ---- Vector primitives (vec.c), AVX2+FMA when the CPU has it ----

/// Σ x[i]·y[i] over n values (partial sums in several lanes: the order of additions differs from
/// a sequential loop).
float dk_sdot(const float *x, const float *y, long n);
/// y[i] += a·x[i].
void dk_saxpy(float a, const float *x, float *y, long n);
// Rotary position embedding ("rotate half") of `rows` consecutive rows of width d: row r's pairs
// (i, i + half), i < half, rotated by the angles of table row r (cos_table, sin_table: `half`
// values per row), sin multiplied by `sign` (−1: the inverse rotation); values past 2·half copied.
// `portable` forces the scalar loop (tests); the AVX2 loop gives the same bits.
void dk_rotary_rows(const float *x, float *y, long rows, long d, long half, const float *cos_table,
                    const float *sin_table, float sign, int portable);

// ---- Exponentials (exp.c): 8 lanes with AVX2+FMA (within 2 ulp of exp; 0 below the smallest
// normal float), the C library's expf otherwise ----

/// y[i] = exp(x[i]).
void dk_vexp(const float *x, float *y, long n);
/// The largest of x[0..n) (−inf when n is 0).
float dk_vmax(const float *x, long n);
/// Σ exp(scale·x[i] − shift), summed in Double; the terms are also written to `out` unless it is
/// NULL (`out` may be `x`).
double dk_sum_exp(const float *x, long n, float scale, float shift, float *out);
/// y[i] = alpha·exp(scale·x[i] − shift) + beta (`y` may be `x`).
void dk_exp_affine(const float *x, long n, float scale, float shift, float alpha, float beta, float *y);
/// y = x·σ(x), σ(x) = 1/(1 + exp(−x)).
void dk_silu(const float *x, float *y, long n);
/// dx = g·σ(x)·(1 + x·(1 − σ(x))), the derivative of x·σ(x).
void dk_silu_backward(const float *x, const float *g, float *dx, long n);
/// The exponential kernels (dk_vexp, dk_sum_exp, dk_exp_affine, dk_silu, dk_swiglu, their
/// backwards, dk_kd_row) run 16 lanes with AVX-512 where the CPU has it, each value and sum the
/// AVX2 kernels' to the bit; 1 keeps them on AVX2 (tests compare the two), 0 restores the default.
void dk_rows_force_avx2(int on);
/// Whether they run AVX-512 now.
int dk_rows_avx512(void);
/// SwiGLU y = silu(gate)·up in one pass, and its backward (dgate or dup NULL: not written); the
/// values dk_silu / dk_silu_backward and a separate product give.
void dk_swiglu(const float *gate, const float *up, float *y, long n);
void dk_swiglu_backward(const float *gate, const float *up, const float *g, float *dgate, float *dup, long n);

// ---- Distillation loss rows (logit_rows.c) ----

/// One row of V logits z: *kl = Σ p_t·(log p_t − log p_s) with p_s = softmax(z/τ), p_t = softmax(t/τ)
/// (0 when t is NULL), *ce = the cross-entropy of z against `target` with label smoothing eps
/// (0 when target < 0), sums in Double; and, unless grad is NULL, the weighted gradient
///   grad = soft·(p_s − p_t) + hard·(softmax(z) − (1 − eps)·onehot(target) − eps/V)
/// (the caller folds τ, τ² and 1/count into `soft` and `hard`; grad may be z).
void dk_kd_row(const float *z, const float *t, long v, float inv_tau, float soft, float hard, long target, float eps,
               double *kl, double *ce, float *grad);

// ---- Optimizer updates (optim.c) ----

/// One AdamW step's constants (AdamW.update): g ← g·grad_scale; m ← β₁m₀ + (1−β₁)g;
/// v ← β₂v₀ + (1−β₂)g·g; p ← p₀·decay − step_size·m / (√v·inv_sqrt_bc2 + eps).
typedef struct {
    float grad_scale, beta1, beta2, decay, step_size, inv_sqrt_bc2, eps;
} dk_adamw_step;
/// AdamW over n values: new moments and parameters into m, v, p (each operation rounded on its
/// own, AVX2 or scalar alike; `portable` forces the scalar loop, for tests).
void dk_adamw(long n, const float *g, const float *m0, const float *v0, const float *p0, const dk_adamw_step *s,
              float *m, float *v, float *p, int portable);
/// Σ x[i]² in Double, 16 partial sums (the same value with `portable` set or not).
double dk_sum_squares(const float *x, long n, int portable);

// ---- Worker pool (pool.c) ----

typedef void (*dk_chunk_fn)(void *ctx, long chunk);
/// Runs fn(ctx, c) for every c in [0, chunks) on the calling thread and the pool's workers
/// (started on first use, chunks − 1 of them) and returns 1 when all are done. Returns 0 without
/// running anything when the pool is busy (a loop of another thread, or one started from inside
/// a chunk) or chunks is outside [1, 65535]: the caller then runs the loop another way.
int dk_pool_run(long chunks, dk_chunk_fn fn, void *ctx);
/// How many times an idle worker checks for work before it sleeps (default 2000, about 0.1 ms).
void dk_pool_set_spin(long checks);
// A per-thread cap on the threads kernels use from the calling thread (0: none). Lets independent
// jobs run side by side, each on its share of the cores.
void dk_thread_limit_set(long n);
long dk_thread_limit(void);

// ---- MPI (mpi.c): a run-time binding, nothing linked at build time ----

/// Opens an MPI library (`path`, or Open MPI's / MPICH's usual names). Returns 1 when found.
int dk_mpi_load(const char *path);
/// The library's path as opened.
const char *dk_mpi_name(void);
/// MPI_Init_thread (asking for MPI_THREAD_SERIALIZED) unless already initialised; 0 on success,
/// the thread level provided in *thread_level. Only after dk_mpi_load returned 1.
int dk_mpi_init(int *thread_level);
/// This process's rank in MPI_COMM_WORLD, and its size.
int dk_mpi_rank(void);
int dk_mpi_size(void);
/// In-place sum over all processes (MPI_Allreduce with MPI_IN_PLACE); 0 on success.
int dk_mpi_allreduce_sum_f32(float *buffer, long count);
int dk_mpi_allreduce_sum_f64(double *buffer, long count);
/// Broadcasts `count` bytes from `root`; 0 on success.
int dk_mpi_bcast_bytes(void *buffer, long count, int root);
int dk_mpi_barrier(void);
/// Ends every process of the job with `code`.
void dk_mpi_abort(int code);
int dk_mpi_finalize(void);

#ifdef __cplusplus
}
#endif
#endif
