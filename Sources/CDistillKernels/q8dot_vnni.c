// The fast decoding option's integer dot products (weights Q4_0, Q4_1 or Q8_0 times activations
// quantized to int8 per block of 32, see dk_quantize_q8_blocks) with AVX-512 VNNI: VPDPBUSD
// multiplies unsigned weight bytes by signed activation bytes and adds each group of four into an
// int32 lane — what AVX2's VPMADDUBSW + VPMADDWD do in two instructions. Q8_0's signed weights
// enter as |w| times the activation with w's sign.
//
// Several input rows (batched decoding; one row is qgemv.c's loop with VPDPBUSD in 256-bit
// registers) take two blocks per 512-bit register, so the work per input row and pair of blocks is
// one VPDPBUSD, a conversion and two FMAs:
//   Q4_0/Q4_1: the two blocks' 16 nibble bytes become [lo(b), hi(b), lo(b+1), hi(b+1)] — the
//              activations' own element order — by one lane permute, a per-lane shift (0 or 4)
//              and a mask;
//   scales:    each block's sum of products is scaled by d_w·d_x (eight lanes each), and its
//              offset term (Q4_1: m_w·d_x·Σq_x; Q4_0: −8·d_w·d_x·Σq_x) added through lanes holding
//              d_x·Σq_x / 8, so the 16 lanes sum to Σ_blocks d_w·d_x·Σ n·q + c·d_x·Σ q — the
//              arithmetic of the AVX2 and portable kernels, rounded in another order.
// (On Zen 4 the 512-bit form decodes a batch of 8 20% faster than AVX2 but one row 8% slower.)
#include "CDistillKernels.h"
#include "simd.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")))

int dk_q8_vnni_available(void) {
    static int has = -1;
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
            && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
    }
    return has;
}

// Weight bytes of blocks w0 and w1 (w1 NULL: zeros) in the activations' element order.
VNNI_TARGET __attribute__((always_inline))
static inline __m512i pair_weights(int type, const uint8_t *w0, const uint8_t *w1) {
    if (type == DK_Q8_0) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(w0 + 2));
        __m256i b = w1 ? _mm256_loadu_si256((const __m256i *)(w1 + 2)) : _mm256_setzero_si256();
        return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
    }
    const long at = type == DK_Q4_1 ? 4 : 2;
    __m128i a = _mm_loadu_si128((const __m128i *)(w0 + at));
    __m128i b = w1 ? _mm_loadu_si128((const __m128i *)(w1 + at)) : _mm_setzero_si128();
    __m512i both = _mm512_castsi256_si512(_mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1));
    // [a, a, b, b] by 128-bit lanes; the second copy of each shifted right by 4 (its high nibbles).
    __m512i rep = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), both);
    __m512i shift = _mm512_setr_epi64(0, 0, 0x0004000400040004LL, 0x0004000400040004LL, 0, 0,
                                      0x0004000400040004LL, 0x0004000400040004LL);
    return _mm512_and_si512(_mm512_srlv_epi16(rep, shift), _mm512_set1_epi8(0x0F));
}

// [d(w0) x 8, d(w1) x 8] and, for Q4_1, [m(w0) x 8, m(w1) x 8] (w1 NULL: zeros).
VNNI_TARGET __attribute__((always_inline))
static inline void pair_scales(int type, const uint8_t *w0, const uint8_t *w1, __m512 *d, __m512 *m) {
    uint32_t a, b = 0;
    memcpy(&a, w0, 4);
    if (w1) memcpy(&b, w1, 4);
    __m128 f = _mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128((int)a), (int)b, 1));   // d0 m0 d1 m1
    __m512 f16 = _mm512_castps128_ps512(f);
    *d = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2), f16);
    if (type == DK_Q4_1) *m = _mm512_permutexvar_ps(_mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3), f16);
    else if (type == DK_Q4_0) *m = _mm512_mul_ps(*d, _mm512_set1_ps(-8.0f));
    else *m = _mm512_setzero_ps();
}

// Row r of Y for input rows i0..<i0 + MI (MI ≤ 4, a constant where inlined: the tile's
// accumulators stay in registers only when its loops unroll). dx8/ox8: per input row, each block's
// d_x and d_x·Σq_x / 8 repeated in 8 lanes (blocks rounded up to even, the extra one zero).
VNNI_TARGET __attribute__((always_inline))
static inline void q8_vnni_tile(int type, const int MI, const uint8_t *row, long blocks, const int8_t *Q,
                                const float *dx8, const float *ox8, long blocks8, long i0, float *Y, long ldy, long r) {
    const long bb = dk_qblock_bytes(type);
    __m512 acc[4], off[4];
    UNROLL for (int i = 0; i < MI; i++) { acc[i] = _mm512_setzero_ps(); off[i] = _mm512_setzero_ps(); }
    for (long b = 0; b < blocks; b += 2) {
        const uint8_t *w0 = row + b * bb, *w1 = b + 1 < blocks ? w0 + bb : NULL;
        __m512i qw = pair_weights(type, w0, w1), qwa = type == DK_Q8_0 ? _mm512_abs_epi8(qw) : qw;
        __m512 d, c;
        pair_scales(type, w0, w1, &d, &c);
        UNROLL for (int i = 0; i < MI; i++) {
            const long k = (i0 + i) * blocks + b;
            __m512i qx = w1 ? _mm512_loadu_si512((const void *)(Q + k * 32))
                            : _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(Q + k * 32)));
            if (type == DK_Q8_0) qx = _mm512_mask_sub_epi8(qx, _mm512_movepi8_mask(qw), _mm512_setzero_si512(), qx);
            __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qwa, qx);
            const long at = (i0 + i) * blocks8 + b * 8;
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(d, _mm512_loadu_ps(dx8 + at)), acc[i]);
            if (type != DK_Q8_0) off[i] = _mm512_fmadd_ps(c, _mm512_loadu_ps(ox8 + at), off[i]);
        }
    }
    UNROLL for (int i = 0; i < MI; i++) Y[(i0 + i) * ldy + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[i], off[i]));
}

// Rows row0..<row1 of Y = W·xᵀ for the m input rows, in tiles of up to 4 input rows.
VNNI_TARGET __attribute__((always_inline))
static inline void qgemv_q8_vnni_body(int type, const uint8_t *W, long blocks, const int8_t *Q, long m,
                                      const float *dx8, const float *ox8, long blocks8, float *Y, long ldy,
                                      long row0, long row1) {
    const long bb = dk_qblock_bytes(type);
    for (long r = row0; r < row1; r++) {
        const uint8_t *row = W + r * blocks * bb;
        for (long i0 = 0; i0 < m; i0 += 4) {
            switch (m - i0 < 4 ? m - i0 : 4) {
            case 1: q8_vnni_tile(type, 1, row, blocks, Q, dx8, ox8, blocks8, i0, Y, ldy, r); break;
            case 2: q8_vnni_tile(type, 2, row, blocks, Q, dx8, ox8, blocks8, i0, Y, ldy, r); break;
            case 3: q8_vnni_tile(type, 3, row, blocks, Q, dx8, ox8, blocks8, i0, Y, ldy, r); break;
            default: q8_vnni_tile(type, 4, row, blocks, Q, dx8, ox8, blocks8, i0, Y, ldy, r); break;
            }
        }
    }
}

VNNI_TARGET
void dk_qgemv_q8_vnni(int type, const void *W, long cols, const int8_t *Q, const float *D, const int32_t *S,
                      long m, float *Y, long ldy, long row0, long row1) {
    const long blocks = cols / 32, blocks8 = ((blocks + 1) / 2 * 2) * 8;
    const uint8_t *w = (const uint8_t *)W;
    float *lanes = (float *)malloc(sizeof(float) * (size_t)(2 * m * blocks8));
    float *dx8 = lanes, *ox8 = lanes + m * blocks8;
    for (long i = 0; i < m; i++) {
        for (long b = 0; b < blocks8 / 8; b++) {
            const float dv = b < blocks ? D[i * blocks + b] : 0.0f;
            const float ov = b < blocks ? dv * (float)S[i * blocks + b] * 0.125f : 0.0f;
            _mm256_storeu_ps(dx8 + i * blocks8 + b * 8, _mm256_set1_ps(dv));
            _mm256_storeu_ps(ox8 + i * blocks8 + b * 8, _mm256_set1_ps(ov));
        }
    }
    // One copy of the loops per block type (its branches fold away), as the AVX2 kernels.
    switch (type) {
    case DK_Q4_0: qgemv_q8_vnni_body(DK_Q4_0, w, blocks, Q, m, dx8, ox8, blocks8, Y, ldy, row0, row1); break;
    case DK_Q4_1: qgemv_q8_vnni_body(DK_Q4_1, w, blocks, Q, m, dx8, ox8, blocks8, Y, ldy, row0, row1); break;
    default: qgemv_q8_vnni_body(DK_Q8_0, w, blocks, Q, m, dx8, ox8, blocks8, Y, ldy, row0, row1); break;
    }
    free(lanes);
}
#else
int dk_q8_vnni_available(void) { return 0; }
void dk_qgemv_q8_vnni(int type, const void *W, long cols, const int8_t *Q, const float *D, const int32_t *S,
                      long m, float *Y, long ldy, long row0, long row1) {
    (void)type; (void)W; (void)cols; (void)Q; (void)D; (void)S; (void)m; (void)Y; (void)ldy; (void)row0; (void)row1;
}
#endif
