// Blocked single-precision GEMM in the BLIS style: B is packed into KC x NR slivers, A into
// MR x KC slivers, and a register-tiled micro-kernel computes one MR x NR block of C at a time.
// The micro-kernel is written once with clang/gcc vector extensions and instantiated for the
// baseline target (SSE2 on x86-64, NEON on arm64) and, on x86-64, for AVX2+FMA and AVX-512.
// No intrinsics: the compiler maps `acc += a * b` on 8- or 16-wide vectors to vfmadd. The FMA
// kernels add each element's products in the same order (k ascending within KC-blocks, one FMA
// each), so AVX2 and AVX-512 compute bitwise the same GEMM and either may be chosen by speed.
#include "CDistillKernels.h"
#include "simd.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef float v8f __attribute__((vector_size(32), aligned(4)));
typedef float v16f __attribute__((vector_size(64), aligned(4)));

enum { KC = 256, MC = 96, NC = 2048 };

// One sliver of op(A): d[k*MR + r] = src[r*rs + k*ks] for r < rows, zero for rows <= r < MR.
// Called with MR, rows and the unit stride as constants for full slivers, so the loops unroll into
// straight loads and stores (a generic loop, or a memcpy call per MR floats, cost more than the
// copy: ~17% of a small training step).
static inline __attribute__((always_inline)) void pack_sliver(const float *src, long rs, long ks, long kc, int MR,
                                                              long rows, float *d) {
    for (long k = 0; k < kc; k++) {
        long r = 0;
        for (; r < rows; r++) d[k * MR + r] = src[r * rs + k * ks];
        for (; r < MR; r++) d[k * MR + r] = 0;
    }
}

// Pack rows [i0, i0+mc) x cols [k0, k0+kc) of op(A) into slivers of MR rows: sliver s holds
// for each k the MR values A(i0 + s*MR + r, k0 + k), zero-padded past mc. op(A)(i, k) is
// A[i*lda + k], or transposed A[k*lda + i].
static void packA(int transA, const float *A, long lda, long i0, long mc, long k0, long kc,
                  int MR, float *dst) {
    const long rs = transA ? 1 : lda, ks = transA ? lda : 1;
    for (long s = 0; s < mc; s += MR) {
        long rows = mc - s < MR ? mc - s : MR;
        const float *src = A + (i0 + s) * rs + k0 * ks;
        float *d = dst + s * kc;
        if (rows == MR && MR == 12) { transA ? pack_sliver(src, 1, lda, kc, 12, 12, d) : pack_sliver(src, lda, 1, kc, 12, 12, d); continue; }
        if (rows == MR && MR == 6) { transA ? pack_sliver(src, 1, lda, kc, 6, 6, d) : pack_sliver(src, lda, 1, kc, 6, 6, d); continue; }
        if (rows == MR && MR == 4) { transA ? pack_sliver(src, 1, lda, kc, 4, 4, d) : pack_sliver(src, lda, 1, kc, 4, 4, d); continue; }
        pack_sliver(src, rs, ks, kc, MR, rows, d);
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
#if defined(__x86_64__)
        // op(B) = Bᵀ (x·Wᵀ): 8 x 8 blocks transposed in registers instead of a strided gather.
        if (transB && cols == NR && NR % 8 == 0 && kc % 8 == 0 && has_avx2_fma()) {
            for (long k = 0; k < kc; k += 8)
                for (int c0 = 0; c0 < NR; c0 += 8)
                    transpose8x8(B + (j0 + s + c0) * ldb + k0 + k, ldb, base + k * NR + c0, NR);
            continue;
        }
#endif
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
        // Slivers of 32-value blocks, 16 columns at a time (32-wide AVX-512 slivers in two halves):
        // expanded with AVX2 and transposed 8 x 8 at a time.
        const uint8_t *rows0 = W + (j0 + s) * rowBytes;
        if (NR == 16 && dk_qpack_sliver16(type, rows0, rowBytes, (int)cols, k0, kc, base, 16)) continue;
        if (NR == 32 && dk_qpack_sliver16(type, rows0, rowBytes, cols < 16 ? (int)cols : 16, k0, kc, base, 32)) {
            dk_qpack_sliver16(type, cols > 16 ? rows0 + 16 * rowBytes : rows0, rowBytes, (int)cols - 16, k0, kc, base + 16, 32);
            continue;
        }
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

// Micro-kernel body: acc[MR][NV] (vectors of type VT, VW floats) += op(A)(MR x kc) * Bp(kc x NV·VW),
// op(A)(r, k) read as A_AT(MR, r, k) (packed, or in place); then stored to C, whose tile is
// prefetched first. The tile loops unroll fully (UNROLL), so the accumulators live in registers
// (clang left a 12 x 2 tile of zmm accumulators in memory without it).
#define MICRO_KERNEL_BODY(MR, NV, VT, VW, A_AT)                                        \
    VT acc[MR][NV];                                                                    \
    UNROLL for (int r = 0; r < MR; r++) if (r < rows) {   /* C's tile, for the stores */ \
        __builtin_prefetch(C + r * ldc, 1);                                            \
        __builtin_prefetch(C + r * ldc + cols - 1, 1);                                 \
    }                                                                                  \
    UNROLL for (int r = 0; r < MR; r++)                                                \
        UNROLL for (int v = 0; v < NV; v++) acc[r][v] = (VT){0};                       \
    for (long k = 0; k < kc; k++) {                                                    \
        VT b[NV];                                                                      \
        UNROLL for (int v = 0; v < NV; v++) b[v] = *(const VT *)(Bp + k * (NV * VW) + v * VW); \
        UNROLL for (int r = 0; r < MR; r++) {                                          \
            float a = A_AT(MR, r, k);                                                  \
            UNROLL for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];                 \
        }                                                                              \
    }                                                                                  \
    if (rows == MR && cols == NV * VW) {                                               \
        UNROLL for (int r = 0; r < MR; r++)                                            \
            UNROLL for (int v = 0; v < NV; v++) {                                      \
                VT *c = (VT *)(C + r * ldc + v * VW);                                  \
                *c = beta == 0 ? acc[r][v] * alpha : acc[r][v] * alpha + *c * beta;    \
            }                                                                          \
    } else {                                                                           \
        float tile[MR * NV * VW];                                                      \
        UNROLL for (int r = 0; r < MR; r++)                                            \
            UNROLL for (int v = 0; v < NV; v++) *(VT *)(tile + r * NV * VW + v * VW) = acc[r][v]; \
        storeTile(tile, NV * VW, rows, cols, alpha, beta, C, ldc);                     \
    }

// Where the micro-kernel reads op(A)(r, k) of its MR x kc block: a packed sliver, or A in place,
// its values ars apart from row to row and aks from k to k (op(A) = A: lda and 1; Aᵀ: 1 and lda).
#define A_PACKED(MR, r, k) Ap[(k) * (MR) + (r)]
#define A_STRIDED(MR, r, k) Ap[(r) * ars + (k) * aks]

typedef void (*micro_kernel_fn)(long kc, const float *Ap, const float *Bp, long rows, long cols,
                                float alpha, float beta, float *C, long ldc);
typedef void (*strided_kernel_fn)(long kc, const float *Ap, long ars, long aks, const float *Bp, long cols,
                                  float alpha, float beta, float *C, long ldc);

typedef struct {
    int MR, NR;
    micro_kernel_fn kernel;
    strided_kernel_fn strided;   // full MR-row panels of op(A) read in place
    const char *name;
} gemm_kernel;

// One instruction set's two micro-kernels, NAME (A packed) and NAME_strided (full panels of A
// read in place), from the same body.
#define DEFINE_MICRO_KERNELS(ATTR, NAME, MR, NV, VT, VW)                                \
    ATTR static void NAME(long kc, const float *Ap, const float *Bp, long rows, long cols, \
                          float alpha, float beta, float *C, long ldc) {                \
        MICRO_KERNEL_BODY(MR, NV, VT, VW, A_PACKED)                                    \
    }                                                                                  \
    ATTR static void NAME##_strided(long kc, const float *Ap, long ars, long aks, const float *Bp, \
                                    long cols, float alpha, float beta, float *C, long ldc) { \
        const long rows = MR;                                                          \
        MICRO_KERNEL_BODY(MR, NV, VT, VW, A_STRIDED)                                   \
    }

#if defined(__aarch64__)
// NEON has 32 vector registers: a 6 x 16 tile (24 accumulators) fits.
DEFINE_MICRO_KERNELS(, kernel_portable, 6, 2, v8f, 8)
static const gemm_kernel portable_kernel = {6, 16, kernel_portable, kernel_portable_strided, "portable 6x16"};
#else
// Baseline x86-64 (SSE2, 16 registers): a 4 x 8 tile keeps all accumulators in registers.
DEFINE_MICRO_KERNELS(, kernel_portable, 4, 1, v8f, 8)
static const gemm_kernel portable_kernel = {4, 8, kernel_portable, kernel_portable_strided, "portable 4x8"};
#endif

#if defined(__x86_64__)
// AVX2+FMA: 16 ymm registers; a 6 x 16 tile uses 12 accumulators, 2 for B and 1 for A.
DEFINE_MICRO_KERNELS(__attribute__((target("avx2,fma"))), kernel_avx2, 6, 2, v8f, 8)
static const gemm_kernel avx2_kernel = {6, 16, kernel_avx2, kernel_avx2_strided, "avx2-fma 6x16"};

// AVX-512: 32 zmm registers; a 12 x 32 tile (BLIS's shape for Skylake-X) uses 24 accumulators,
// 2 for B and 1 for A: 14 loads per 24 FMAs of 16 floats (the 6 x 16 AVX2 tile: 8 per 12 of 8).
DEFINE_MICRO_KERNELS(__attribute__((target("avx512f,fma"))), kernel_avx512, 12, 2, v16f, 16)
static const gemm_kernel avx512_kernel = {12, 32, kernel_avx512, kernel_avx512_strided, "avx512 12x32"};
#endif

// The kernels this CPU can run: portable, then AVX2+FMA and AVX-512 where supported.
static const gemm_kernel *supported[3];
static int supportedCount = 0;
static const gemm_kernel *chosen = NULL;

static void detect_once(void) {
    int n = 0;
    supported[n++] = &portable_kernel;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        supported[n++] = &avx2_kernel;
        if (__builtin_cpu_supports("avx512f")) supported[n++] = &avx512_kernel;
    }
#endif
    chosen = supported[n - 1];
    supportedCount = n;
}

static void detect(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, detect_once);
}

static const gemm_kernel *best_kernel(void) {
    detect();
    return chosen;
}

// Products over quantized weights use the chosen kernel too (its slivers packed 16 columns at a
// time, dk_qpack_sliver16), read once per product by the caller (dk_quantized_kernel) and passed
// to each of its calls: the chosen one may change meanwhile — GemmSelection measures by switching
// it — and dk_pack_a_all's MR must be dk_sgemm_quantized's.
int dk_quantized_kernel(void) {
    const gemm_kernel *k = best_kernel();
    for (int i = 0; i < supportedCount; i++) if (supported[i] == k) return i;
    return 0;
}
static const gemm_kernel *quant_kernel(int kernel) {
    detect();
    return kernel >= 0 && kernel < supportedCount ? supported[kernel] : supported[0];
}
long dk_quantized_sliver_columns(int kernel) { return quant_kernel(kernel)->NR; }

int dk_gemm_kernel_count(void) { detect(); return supportedCount; }
const char *dk_gemm_kernel_name_at(int i) {
    detect();
    return i >= 0 && i < supportedCount ? supported[i]->name : "";
}
int dk_gemm_use_kernel(int i) {
    detect();
    if (i < 0 || i >= supportedCount) return 0;
    chosen = supported[i];
    return 1;
}

const char *dk_gemm_kernel_name(void) { return best_kernel()->name; }

static void scaleC(long M, long N, float beta, float *C, long ldc) {
    for (long i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0) memset(c, 0, sizeof(float) * N);
        else for (long j = 0; j < N; j++) c[j] *= beta;
    }
}

#if defined(__x86_64__)
// One row of C (batch-1 decoding of a Float32 model) without packing B, which would copy the whole
// matrix for each product: 16 columns at a time, each element summed as the FMA kernels sum it
// (k ascending within KC-blocks, one FMA each, C = alpha·acc + beta·C per block through storeTile),
// so it gives the same bits as the GEMM on more rows.
__attribute__((target("avx2,fma")))
static void gemv_row_fma(int transA, int transB, long N, long K, float alpha, const float *A, long lda,
                         const float *B, long ldb, float beta, float *C) {
    for (long jc = 0; jc < N; jc += 16) {
        long cols = N - jc < 16 ? N - jc : 16;
        for (long pc = 0; pc < K; pc += KC) {
            long kc = K - pc < KC ? K - pc : KC;
            v8f acc0 = (v8f){0}, acc1 = (v8f){0};
            long k = 0;
            if (transB && cols == 16) {
                // Bᵀ: 8 values of k for the 16 columns, transposed in registers, then the FMAs in k order.
                float blk[8 * 16] __attribute__((aligned(32)));
                for (; k + 8 <= kc; k += 8) {
                    transpose8x8(B + jc * ldb + pc + k, ldb, blk, 16);
                    transpose8x8(B + (jc + 8) * ldb + pc + k, ldb, blk + 8, 16);
                    for (int t = 0; t < 8; t++) {
                        float a = transA ? A[(pc + k + t) * lda] : A[pc + k + t];
                        acc0 += a * *(const v8f *)(blk + t * 16);
                        acc1 += a * *(const v8f *)(blk + t * 16 + 8);
                    }
                }
            }
            for (; k < kc; k++) {
                float a = transA ? A[(pc + k) * lda] : A[pc + k];
                float col[16] __attribute__((aligned(32)));
                const float *b;
                if (!transB && cols == 16) {
                    b = B + (pc + k) * ldb + jc;
                } else {
                    long c = 0;
                    if (transB) for (; c < cols; c++) col[c] = B[(jc + c) * ldb + pc + k];
                    else for (; c < cols; c++) col[c] = B[(pc + k) * ldb + jc + c];
                    for (; c < 16; c++) col[c] = 0;
                    b = col;
                }
                acc0 += a * *(const v8f *)b;
                acc1 += a * *(const v8f *)(b + 8);
            }
            float tile[16];
            *(v8f *)tile = acc0;
            *(v8f *)(tile + 8) = acc1;
            storeTile(tile, 16, 1, cols, alpha, pc == 0 ? beta : 1.0f, C + jc, 0);
        }
    }
}
#endif

// Each thread's packing buffers, kept from product to product (at most KC x NC floats for B,
// KC x MC for A) and freed when the thread ends: B's page-aligned, A's a quarter page further on.
// Allocated per product they landed wherever the allocator put them, and that placement moved a
// product's speed by up to 30% (64 x 64 x 256, P·V of attention: 68 or 94 GFLOP/s on one Zen 4
// core depending on what was allocated before; with these buffers 94 every time).
typedef struct { char *mem[2]; size_t cap[2]; } pack_buffers;
static pthread_key_t pack_key;
static void free_pack_buffers(void *p) {
    pack_buffers *b = p;
    free(b->mem[0]);
    free(b->mem[1]);
    free(b);
}
static void make_pack_key(void) { pthread_key_create(&pack_key, free_pack_buffers); }

static float *pack_buffer(int which, size_t floats) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_pack_key);
    pack_buffers *b = pthread_getspecific(pack_key);
    if (!b) {
        b = calloc(1, sizeof *b);
        pthread_setspecific(pack_key, b);
    }
    if (b->cap[which] < floats) {
        free(b->mem[which]);
        size_t bytes = (floats * sizeof(float) + 1024 + 4095) / 4096 * 4096;
        b->mem[which] = aligned_alloc(4096, bytes);
        b->cap[which] = (bytes - 1024) / sizeof(float);
    }
    return (float *)(b->mem[which] + which * 1024);
}

int dk_sgemm_packs_a(int transA, long lda) { return transA && lda > 256; }

static void sgemm_with(const gemm_kernel *kern, int transA, const b_source *bsrc, long M, long N, long K,
                       float alpha, const float *A, long lda, float beta, float *C, long ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0) { scaleC(M, N, beta, C, ldc); return; }
#if defined(__x86_64__)
    if (M == 1 && !bsrc->W && kern != &portable_kernel) {
        gemv_row_fma(transA, bsrc->transB, N, K, alpha, A, lda, bsrc->B, bsrc->ldb, beta, C);
        return;
    }
#endif
    const int MR = kern->MR, NR = kern->NR;
    long ncMax = N < NC ? N : NC;
    long kcMax = K < KC ? K : KC;
    long mcMax = M < MC ? M : MC;
    float *Bp = pack_buffer(0, (size_t)(kcMax * (((ncMax + NR - 1) / NR) * NR) + 16));
    float *Ap = pack_buffer(1, (size_t)(kcMax * (((mcMax + MR - 1) / MR) * MR) + 16));
    for (long jc = 0; jc < N; jc += NC) {
        long nc = N - jc < NC ? N - jc : NC;
        for (long pc = 0; pc < K; pc += KC) {
            long kc = K - pc < KC ? K - pc : KC;
            float b = pc == 0 ? beta : 1.0f;
            pack_b(bsrc, pc, kc, jc, nc, NR, Bp);
            for (long ic = 0; ic < M; ic += MC) {
                long mc = M - ic < MC ? M - ic : MC;
                // Full panels of MR rows are read from A in place (no copy: a copy of A cost as much
                // as 6–12% of a training step's products, 12–18% of attention's); a last panel of
                // fewer rows is packed, zero-padded. op(A) = Aᵀ is read in place only with rows of
                // A at most 1 KiB apart (attention's probabilities): the products of weight
                // gradients, Aᵀ with rows 1.4–32 KiB apart, ran up to 15% slower without packing.
                long direct = dk_sgemm_packs_a(transA, lda) ? 0 : mc / MR * MR;
                if (direct < mc) packA(transA, A, lda, ic + direct, mc - direct, pc, kc, MR, Ap);
                for (long jr = 0; jr < nc; jr += NR) {
                    long cols = nc - jr < NR ? nc - jr : NR;
                    for (long ir = 0; ir < direct; ir += MR)
                        kern->strided(kc, transA ? A + pc * lda + ic + ir : A + (ic + ir) * lda + pc,
                                          transA ? 1 : lda, transA ? lda : 1, Bp + jr * kc, cols, alpha, b,
                                          C + (ic + ir) * ldc + jc + jr, ldc);
                    for (long ir = direct; ir < mc; ir += MR) {
                        long rows = mc - ir < MR ? mc - ir : MR;
                        kern->kernel(kc, Ap + (ir - direct) * kc, Bp + jr * kc, rows, cols, alpha, b,
                                     C + (ic + ir) * ldc + jc + jr, ldc);
                    }
                }
            }
        }
    }
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

long dk_packed_a_floats(int kernel, long M, long K) {
    int MR = quant_kernel(kernel)->MR;
    return ((M + MR - 1) / MR) * MR * K + 16;
}

void dk_pack_a_all(int kernel, long M, long K, const float *A, long lda, float *Ap) {
    int MR = quant_kernel(kernel)->MR;
    long Mpad = ((M + MR - 1) / MR) * MR;
    for (long pc = 0; pc < K; pc += KC) {
        long kc = K - pc < KC ? K - pc : KC;
        packA(0, A, lda, 0, M, pc, kc, MR, Ap + pc * Mpad);
    }
}

void dk_sgemm_quantized(int kernel, int type, long M, long K, const float *Ap, const void *W,
                        long n0, long n1, float *C, long ldc) {
    const gemm_kernel *kern = quant_kernel(kernel);
    const int MR = kern->MR, NR = kern->NR;
    long N = n1 - n0;
    if (M <= 0 || N <= 0) return;
    long Mpad = ((M + MR - 1) / MR) * MR;
    long rowBytes = K / dk_qblock_values(type) * dk_qblock_bytes(type);
    b_source src = { 1, NULL, 0, type, (const uint8_t *)W + n0 * rowBytes, K };
    long ncMax = N < NC ? N : NC, kcMax = K < KC ? K : KC;
    float *Bp = pack_buffer(0, (size_t)(kcMax * (((ncMax + NR - 1) / NR) * NR) + 16));
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
}
