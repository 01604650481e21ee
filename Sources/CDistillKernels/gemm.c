// Blocked single-precision GEMM in the BLIS style: B is packed into KC x NR slivers, A into
// MR x KC slivers, and a register-tiled micro-kernel computes one MR x NR block of C at a time.
// The micro-kernel is written once with clang/gcc vector extensions and instantiated twice:
// for the baseline target (SSE2 on x86-64, NEON on arm64) and, on x86-64, for AVX2+FMA, picked
// at run time. No intrinsics: the compiler maps `acc += a * b` on 8-wide vectors to vfmadd.
#include "CDistillKernels.h"
#include <stdlib.h>
#include <string.h>

typedef float v8f __attribute__((vector_size(32), aligned(4)));

enum { KC = 256, MC = 96, NC = 2048 };

// One full sliver of MR rows of A (not transposed): d[k*MR + r] = src[r*lda + k]. MR is a
// constant at each call, so the row loop unrolls into MR loads and stores per k.
static inline __attribute__((always_inline)) void packA_rows(const float *src, long lda, long kc, int MR,
                                                             float *d) {
    for (long k = 0; k < kc; k++)
        for (int r = 0; r < MR; r++) d[k * MR + r] = src[r * lda + k];
}

// kc runs of W contiguous floats, src[k*ld ..< k*ld + W] to d[k*W ..< (k+1)*W]. W is a constant
// at each call: the copy is inlined (a memcpy call per few floats costs more than the copy).
static inline __attribute__((always_inline)) void copy_rows(const float *src, long ld, long kc, int W, float *d) {
    for (long k = 0; k < kc; k++)
        for (int c = 0; c < W; c++) d[k * W + c] = src[k * ld + c];
}

// Pack rows [i0, i0+mc) x cols [k0, k0+kc) of op(A) into slivers of MR rows: sliver s holds
// for each k the MR values A(i0 + s*MR + r, k0 + k), zero-padded past mc.
static void packA(int transA, const float *A, long lda, long i0, long mc, long k0, long kc,
                  int MR, float *dst) {
    for (long s = 0; s < mc; s += MR) {
        long rows = mc - s < MR ? mc - s : MR;
        float *d = dst + s * kc;
        if (transA) {
            // op(A)(i, k) = A[k*lda + i]: each k's rows are contiguous.
            const float *src = A + k0 * lda + i0 + s;
            // (A memcpy call per MR floats costs more than the copy: the loops are inlined.)
            if (rows == MR && MR == 6) { copy_rows(src, lda, kc, 6, d); continue; }
            if (rows == MR && MR == 4) { copy_rows(src, lda, kc, 4, d); continue; }
            for (long k = 0; k < kc; k++) {
                long r = 0;
                for (; r < rows; r++) d[k * MR + r] = src[k * lda + r];
                for (; r < MR; r++) d[k * MR + r] = 0;
            }
            continue;
        }
        const float *src = A + (i0 + s) * lda + k0;
        if (rows == MR && MR == 6) { packA_rows(src, lda, kc, 6, d); continue; }
        if (rows == MR && MR == 4) { packA_rows(src, lda, kc, 4, d); continue; }
        for (long k = 0; k < kc; k++) {
            long r = 0;
            for (; r < rows; r++) d[k * MR + r] = src[r * lda + k];
            for (; r < MR; r++) d[k * MR + r] = 0;
        }
    }
}

// Pack rows [k0, k0+kc) x cols [j0, j0+nc) of op(B) into slivers of NR columns.
static void packB(int transB, const float *B, long ldb, long k0, long kc, long j0, long nc,
                  int NR, float *dst) {
    for (long s = 0; s < nc; s += NR) {
        long cols = nc - s < NR ? nc - s : NR;
        float *base = dst + s * kc;
        if (!transB && cols == NR) {
            for (long k = 0; k < kc; k++)
                memcpy(base + k * NR, B + (k0 + k) * ldb + j0 + s, sizeof(float) * NR);
            continue;
        }
        for (long k = 0; k < kc; k++) {
            float *d = base + k * NR;
            long c = 0;
            for (; c < cols; c++)
                d[c] = transB ? B[(j0 + s + c) * ldb + k0 + k] : B[(k0 + k) * ldb + j0 + s + c];
            for (; c < NR; c++) d[c] = 0;
        }
    }
}

// Pack rows [k0, k0+kc) x cols [j0, j0+nc) of Wᵀ, W [N, K] stored as quantized blocks (of 32
// values, or 256 for the K-quants; k0 and kc multiples of the block, which KC = 256 keeps),
// expanding each block straight into the slivers: W is never held in Float32.
static void packBq(int type, const uint8_t *W, long K, long k0, long kc, long j0, long nc,
                   int NR, float *dst) {
    long bv = dk_qblock_values(type), bb = dk_qblock_bytes(type), rowBytes = K / bv * bb;
    float w[256];
    for (long s = 0; s < nc; s += NR) {
        long cols = nc - s < NR ? nc - s : NR;
        float *base = dst + s * kc;
        // 16-wide slivers of 32-value blocks: expanded with AVX2 and transposed 8 x 8 at a time.
        if (NR == 16 && dk_qpack_sliver16(type, W + (j0 + s) * rowBytes, rowBytes, (int)cols, k0, kc, base)) continue;
        for (long c = 0; c < cols; c++) {
            const uint8_t *row = W + (j0 + s + c) * rowBytes + k0 / bv * bb;
            for (long k = 0; k < kc; k += bv) {
                dk_qexpand_block(type, row + k / bv * bb, w);
                for (long t = 0; t < bv; t++) base[(k + t) * NR + c] = w[t];
            }
        }
        for (long c = cols; c < NR; c++)
            for (long k = 0; k < kc; k++) base[k * NR + c] = 0;
    }
}

// Where op(B) comes from: a Float32 matrix, or quantized rows (Wᵀ).
typedef struct {
    int transB;
    const float *B;
    long ldb;
    int qtype;
    const uint8_t *W;
    long K;
} b_source;

static void pack_b(const b_source *src, long k0, long kc, long j0, long nc, int NR, float *dst) {
    if (src->W) packBq(src->qtype, src->W, src->K, k0, kc, j0, nc, NR, dst);
    else packB(src->transB, src->B, src->ldb, k0, kc, j0, nc, NR, dst);
}

// Writes an MR x NR tile held in `t` (row-major, NR wide) into C: C = alpha*t + beta*C.
static inline void storeTile(const float *t, int NR, long rows, long cols, float alpha, float beta,
                             float *C, long ldc) {
    for (long r = 0; r < rows; r++) {
        float *c = C + r * ldc;
        const float *s = t + r * NR;
        if (beta == 0) for (long j = 0; j < cols; j++) c[j] = alpha * s[j];
        else for (long j = 0; j < cols; j++) c[j] = alpha * s[j] + beta * c[j];
    }
}

// Micro-kernel body: acc[MR][NR/8] += Ap(MR x kc) * Bp(kc x NR); then stored to C.
#define MICRO_KERNEL_BODY(MR, NV)                                                      \
    v8f acc[MR][NV];                                                                   \
    for (int r = 0; r < MR; r++)                                                       \
        for (int v = 0; v < NV; v++) acc[r][v] = (v8f){0, 0, 0, 0, 0, 0, 0, 0};        \
    for (long k = 0; k < kc; k++) {                                                    \
        v8f b[NV];                                                                     \
        for (int v = 0; v < NV; v++) b[v] = *(const v8f *)(Bp + k * (NV * 8) + v * 8); \
        for (int r = 0; r < MR; r++) {                                                 \
            float a = Ap[k * MR + r];                                                  \
            for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];                        \
        }                                                                              \
    }                                                                                  \
    if (rows == MR && cols == NV * 8) {                                                \
        for (int r = 0; r < MR; r++)                                                   \
            for (int v = 0; v < NV; v++) {                                             \
                v8f *c = (v8f *)(C + r * ldc + v * 8);                                 \
                *c = beta == 0 ? acc[r][v] * alpha : acc[r][v] * alpha + *c * beta;    \
            }                                                                          \
    } else {                                                                           \
        float tile[MR * NV * 8];                                                       \
        for (int r = 0; r < MR; r++)                                                   \
            for (int v = 0; v < NV; v++) *(v8f *)(tile + r * NV * 8 + v * 8) = acc[r][v]; \
        storeTile(tile, NV * 8, rows, cols, alpha, beta, C, ldc);                      \
    }

typedef void (*micro_kernel_fn)(long kc, const float *Ap, const float *Bp, long rows, long cols,
                                float alpha, float beta, float *C, long ldc);

typedef struct {
    int MR, NR;
    micro_kernel_fn kernel;
    const char *name;
} gemm_kernel;

#if defined(__aarch64__)
// NEON has 32 vector registers: a 6 x 16 tile (24 accumulators) fits.
static void kernel_portable(long kc, const float *Ap, const float *Bp, long rows, long cols,
                            float alpha, float beta, float *C, long ldc) {
    MICRO_KERNEL_BODY(6, 2)
}
static const gemm_kernel portable_kernel = {6, 16, kernel_portable, "portable 6x16"};
#else
// Baseline x86-64 (SSE2, 16 registers): a 4 x 8 tile keeps all accumulators in registers.
static void kernel_portable(long kc, const float *Ap, const float *Bp, long rows, long cols,
                            float alpha, float beta, float *C, long ldc) {
    MICRO_KERNEL_BODY(4, 1)
}
static const gemm_kernel portable_kernel = {4, 8, kernel_portable, "portable 4x8"};
#endif

#if defined(__x86_64__)
// AVX2+FMA: 16 ymm registers; a 6 x 16 tile uses 12 accumulators, 2 for B and 1 for A.
__attribute__((target("avx2,fma")))
static void kernel_avx2(long kc, const float *Ap, const float *Bp, long rows, long cols,
                        float alpha, float beta, float *C, long ldc) {
    MICRO_KERNEL_BODY(6, 2)
}
static const gemm_kernel avx2_kernel = {6, 16, kernel_avx2, "avx2-fma 6x16"};
#endif

static const gemm_kernel *best_kernel(void) {
#if defined(__x86_64__)
    static int has = -1;
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    if (has) return &avx2_kernel;
#endif
    return &portable_kernel;
}

const char *dk_gemm_kernel_name(void) { return best_kernel()->name; }

static void scaleC(long M, long N, float beta, float *C, long ldc) {
    for (long i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0) memset(c, 0, sizeof(float) * N);
        else for (long j = 0; j < N; j++) c[j] *= beta;
    }
}

static void sgemm_with(const gemm_kernel *kern, int transA, const b_source *bsrc, long M, long N, long K,
                       float alpha, const float *A, long lda, float beta, float *C, long ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0) { scaleC(M, N, beta, C, ldc); return; }
    const int MR = kern->MR, NR = kern->NR;
    long ncMax = N < NC ? N : NC;
    long kcMax = K < KC ? K : KC;
    long mcMax = M < MC ? M : MC;
    float *Bp = (float *)aligned_alloc(64, sizeof(float) * (size_t)(kcMax * (((ncMax + NR - 1) / NR) * NR) + 16));
    float *Ap = (float *)aligned_alloc(64, sizeof(float) * (size_t)(kcMax * (((mcMax + MR - 1) / MR) * MR) + 16));
    for (long jc = 0; jc < N; jc += NC) {
        long nc = N - jc < NC ? N - jc : NC;
        for (long pc = 0; pc < K; pc += KC) {
            long kc = K - pc < KC ? K - pc : KC;
            float b = pc == 0 ? beta : 1.0f;
            pack_b(bsrc, pc, kc, jc, nc, NR, Bp);
            for (long ic = 0; ic < M; ic += MC) {
                long mc = M - ic < MC ? M - ic : MC;
                packA(transA, A, lda, ic, mc, pc, kc, MR, Ap);
                for (long jr = 0; jr < nc; jr += NR) {
                    long cols = nc - jr < NR ? nc - jr : NR;
                    for (long ir = 0; ir < mc; ir += MR) {
                        long rows = mc - ir < MR ? mc - ir : MR;
                        kern->kernel(kc, Ap + ir * kc, Bp + jr * kc, rows, cols, alpha, b,
                                     C + (ic + ir) * ldc + jc + jr, ldc);
                    }
                }
            }
        }
    }
    free(Ap);
    free(Bp);
}

void dk_sgemm(int transA, int transB, long M, long N, long K, float alpha,
              const float *A, long lda, const float *B, long ldb,
              float beta, float *C, long ldc) {
    b_source src = { transB, B, ldb, 0, NULL, 0 };
    sgemm_with(best_kernel(), transA, &src, M, N, K, alpha, A, lda, beta, C, ldc);
}

void dk_sgemm_portable(int transA, int transB, long M, long N, long K, float alpha,
                       const float *A, long lda, const float *B, long ldb,
                       float beta, float *C, long ldc) {
    b_source src = { transB, B, ldb, 0, NULL, 0 };
    sgemm_with(&portable_kernel, transA, &src, M, N, K, alpha, A, lda, beta, C, ldc);
}

long dk_packed_a_floats(long M, long K) {
    int MR = best_kernel()->MR;
    return ((M + MR - 1) / MR) * MR * K + 16;
}

void dk_pack_a_all(long M, long K, const float *A, long lda, float *Ap) {
    int MR = best_kernel()->MR;
    long Mpad = ((M + MR - 1) / MR) * MR;
    for (long pc = 0; pc < K; pc += KC) {
        long kc = K - pc < KC ? K - pc : KC;
        packA(0, A, lda, 0, M, pc, kc, MR, Ap + pc * Mpad);
    }
}

void dk_sgemm_quantized(int type, long M, long K, const float *Ap, const void *W,
                        long n0, long n1, float *C, long ldc) {
    const gemm_kernel *kern = best_kernel();
    const int MR = kern->MR, NR = kern->NR;
    long N = n1 - n0;
    if (M <= 0 || N <= 0) return;
    long Mpad = ((M + MR - 1) / MR) * MR;
    long rowBytes = K / dk_qblock_values(type) * dk_qblock_bytes(type);
    b_source src = { 1, NULL, 0, type, (const uint8_t *)W + n0 * rowBytes, K };
    long ncMax = N < NC ? N : NC, kcMax = K < KC ? K : KC;
    float *Bp = (float *)aligned_alloc(64, sizeof(float) * (size_t)(kcMax * (((ncMax + NR - 1) / NR) * NR) + 16));
    for (long jc = 0; jc < N; jc += NC) {
        long nc = N - jc < NC ? N - jc : NC;
        for (long pc = 0; pc < K; pc += KC) {
            long kc = K - pc < KC ? K - pc : KC;
            float b = pc == 0 ? 0.0f : 1.0f;
            pack_b(&src, pc, kc, jc, nc, NR, Bp);
            const float *Apc = Ap + pc * Mpad;
            // Each sliver of W (kc x NR) stays in L1 while every row panel of x streams past it.
            for (long jr = 0; jr < nc; jr += NR) {
                long cols = nc - jr < NR ? nc - jr : NR;
                for (long ir = 0; ir < M; ir += MR) {
                    long rows = M - ir < MR ? M - ir : MR;
                    kern->kernel(kc, Apc + ir * kc, Bp + jr * kc, rows, cols, 1.0f, b, C + ir * ldc + n0 + jc + jr, ldc);
                }
            }
        }
    }
    free(Bp);
}
