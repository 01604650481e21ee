// x·Wᵀ with W held in bfloat16 and x rounded to bfloat16, on AVX512_BF16's VDPBF16PS: each
// instruction multiplies 16 pairs of bfloat16 values and adds both products of a pair to a
// Float32 lane, twice the multiplies of a Float32 FMA. For a frozen teacher whose matrices are
// kept in bfloat16 (its activations lose their low 16 bits of mantissa at each product, which
// moves a realistic model's log-probs by less than 1e-2).
//
// Layout: the GEMM's blocking over K (KC values = KC/2 pairs), with x packed once into slivers
// of MR rows of 32-bit pairs (pair p of row r at [p·MR + r]) and W into slivers of NR columns
// (pair p of column c at [p·NR + c]: row c's own 32-bit words, transposed).
#include "CDistillKernels.h"
#include "simd.h"
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum { KC = 256, KP = KC / 2, MR = 12, NR = 32 };

// Float32 to bfloat16, to nearest with ties to even (NaN kept a NaN).
static inline uint32_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFF) > 0x7F800000) return (u >> 16) | 0x40;
    return (u + 0x7FFF + ((u >> 16) & 1)) >> 16;
}

int dk_bf16dot_available(void) {
#if defined(__x86_64__)
    static int has = -1;
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
    }
    return has;
#else
    return 0;
#endif
}

long dk_bf16dot_packed_a_words(long M, long K) { return ((M + MR - 1) / MR) * MR * (K / 2); }
long dk_bf16dot_slivers(long M) { return (M + MR - 1) / MR; }

#if defined(__x86_64__)
// 8 pairs of row (16 values) rounded by VCVTNEPS2BF16 (to nearest even; it reads subnormals
// as zero), stored at stride MR.
__attribute__((target("avx512f,avx512bf16,avx512vl")))
static void pack_row_bf16(const float *row, long kp, uint32_t *d) {
    long p = 0;
    uint32_t t[8];
    for (; p + 8 <= kp; p += 8) {
        __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(row + 2 * p));
        _mm256_storeu_si256((__m256i *)t, (__m256i)h);
        for (int i = 0; i < 8; i++) d[(p + i) * MR] = t[i];
    }
    for (; p < kp; p++) d[p * MR] = to_bf16(row[2 * p]) | to_bf16(row[2 * p + 1]) << 16;
}
#endif

void dk_bf16dot_pack_a(long M, long K, const float *A, long lda, uint32_t *Ap, long s0, long s1) {
    long Mpad = ((M + MR - 1) / MR) * MR;
    for (long pc = 0; pc < K; pc += KC) {
        long kp = (K - pc < KC ? K - pc : KC) / 2;
        uint32_t *block = Ap + pc / 2 * Mpad;
        for (long s = s0 * MR; s < s1 * MR && s < Mpad; s += MR) {
            uint32_t *d = block + s * kp;
            for (long r = 0; r < MR; r++) {
                const float *row = A + (s + r) * lda + pc;
                if (s + r >= M) {
                    for (long p = 0; p < kp; p++) d[p * MR + r] = 0;
                    continue;
                }
#if defined(__x86_64__)
                if (dk_bf16dot_available()) { pack_row_bf16(row, kp, d + r); continue; }
#endif
                for (long p = 0; p < kp; p++) d[p * MR + r] = to_bf16(row[2 * p]) | to_bf16(row[2 * p + 1]) << 16;
            }
        }
    }
}

#if defined(__x86_64__)

// C[rows, cols] (+)= Ap(MR x kp pairs) · Bp(kp pairs x NR); accumulate: add to C.
__attribute__((target("avx512f,avx512bf16")))
static void kernel(long kp, const uint32_t *Ap, const uint32_t *Bp, long rows, long cols, int accumulate,
                   float *C, long ldc) {
    __m512 acc[MR][2];
    UNROLL for (int r = 0; r < MR; r++) { acc[r][0] = _mm512_setzero_ps(); acc[r][1] = _mm512_setzero_ps(); }
    for (long p = 0; p < kp; p++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(Bp + p * NR), b1 = (__m512bh)_mm512_loadu_si512(Bp + p * NR + 16);
        UNROLL for (int r = 0; r < MR; r++) {
            __m512bh a = (__m512bh)_mm512_set1_epi32((int)Ap[p * MR + r]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, b1);
        }
    }
    if (rows == MR && cols == NR) {
        UNROLL for (int r = 0; r < MR; r++)
            UNROLL for (int v = 0; v < 2; v++) {
                float *c = C + r * ldc + v * 16;
                _mm512_storeu_ps(c, accumulate ? _mm512_add_ps(_mm512_loadu_ps(c), acc[r][v]) : acc[r][v]);
            }
        return;
    }
    float tile[MR * NR];
    UNROLL for (int r = 0; r < MR; r++) { _mm512_storeu_ps(tile + r * NR, acc[r][0]); _mm512_storeu_ps(tile + r * NR + 16, acc[r][1]); }
    for (long r = 0; r < rows; r++)
        for (long j = 0; j < cols; j++) C[r * ldc + j] = accumulate ? C[r * ldc + j] + tile[r * NR + j] : tile[r * NR + j];
}
#endif

void dk_sgemm_bf16dot(long M, long K, const uint32_t *Ap, const void *W, long n0, long n1, float *C, long ldc) {
#if defined(__x86_64__)
    long N = n1 - n0;
    if (M <= 0 || N <= 0) return;
    long Mpad = ((M + MR - 1) / MR) * MR, words = K / 2;   // 32-bit pairs per row of W
    const uint32_t *Wp = (const uint32_t *)W + n0 * words;
    uint32_t *Bp = (uint32_t *)aligned_alloc(64, sizeof(uint32_t) * (size_t)KP * NR);
    for (long jr = 0; jr < N; jr += NR) {
        long cols = N - jr < NR ? N - jr : NR;
        for (long pc = 0; pc < K; pc += KC) {
            long kp = (K - pc < KC ? K - pc : KC) / 2;
            for (long p = 0; p < kp; p++) {
                uint32_t *d = Bp + p * NR;
                long c = 0;
                for (; c < cols; c++) d[c] = Wp[(jr + c) * words + pc / 2 + p];
                for (; c < NR; c++) d[c] = 0;
            }
            // This sliver of W (kp x NR pairs) stays in L1 while every row panel of x streams past it.
            const uint32_t *Apc = Ap + pc / 2 * Mpad;
            for (long ir = 0; ir < M; ir += MR) {
                long rows = M - ir < MR ? M - ir : MR;
                kernel(kp, Apc + ir * kp, Bp, rows, cols, pc > 0, C + ir * ldc + n0 + jr, ldc);
            }
        }
    }
    free(Bp);
#else
    (void)M; (void)K; (void)Ap; (void)W; (void)n0; (void)n1; (void)C; (void)ldc;
#endif
}
