// Helpers shared by the kernels (internal, not part of the module's interface): UNROLL, the CPU
// check and the 8- and 16-lane exponentials (see exp.c for the method and its accuracy).
#ifndef DK_SIMD_H
#define DK_SIMD_H
#include <math.h>

// Unrolls the loop that follows completely (register tiles whose loops must not stay loops).
#if defined(__clang__)
#define UNROLL _Pragma("clang loop unroll(full)")
#else
#define UNROLL _Pragma("GCC unroll 32")
#endif

#if defined(__x86_64__)
#include <immintrin.h>

static inline int has_avx2_fma(void) {
    static int has = -1;
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return has;
}

// The 8 floats at p, or with fewer than 8 `left` the first `left` of them and zeros (a lane mask:
// nothing past the end is read or written) — an elementwise AVX2 kernel's last vector.
__attribute__((target("avx2")))
static inline __m256i dk_mask8(long left) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
__attribute__((target("avx2")))
static inline __m256 dk_load8(const float *p, long left) {
    return left >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, dk_mask8(left));
}
__attribute__((target("avx2")))
static inline void dk_store8(float *p, __m256 v, long left) {
    if (left >= 8) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, dk_mask8(left), v);
}

// dst[j * ldd + i] = src[i * lds + j] for i, j in 0..<8: an 8 x 8 transpose in registers.
__attribute__((target("avx2,fma")))
static inline void transpose8x8(const float *src, long lds, float *dst, long ldd) {
    __m256 r[8], t[8], u[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * lds);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    u[0] = _mm256_shuffle_ps(t[0], t[2], 0x44); u[1] = _mm256_shuffle_ps(t[0], t[2], 0xEE);
    u[2] = _mm256_shuffle_ps(t[1], t[3], 0x44); u[3] = _mm256_shuffle_ps(t[1], t[3], 0xEE);
    u[4] = _mm256_shuffle_ps(t[4], t[6], 0x44); u[5] = _mm256_shuffle_ps(t[4], t[6], 0xEE);
    u[6] = _mm256_shuffle_ps(t[5], t[7], 0x44); u[7] = _mm256_shuffle_ps(t[5], t[7], 0xEE);
    for (int j = 0; j < 4; j++) {
        _mm256_storeu_ps(dst + j * ldd, _mm256_permute2f128_ps(u[j], u[j + 4], 0x20));
        _mm256_storeu_ps(dst + (j + 4) * ldd, _mm256_permute2f128_ps(u[j], u[j + 4], 0x31));
    }
}

// Σ of the 8 Float lanes.
__attribute__((target("avx2,fma")))
static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Σ of the 4 Double lanes, (l0 + l1) + (l2 + l3).
__attribute__((target("avx2,fma")))
static inline double hsum256d(__m256d v) {
    double lanes[4];
    _mm256_storeu_pd(lanes, v);
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

// The exponential on a vector of floats, written once for 8 lanes (exp8) and 16 (exp16): P the
// intrinsics' prefix, VF/VI the float and int vector types, ROUND to nearest, CAST of int bits to
// floats, SELECT(a, b, predicate, y, v): v where the predicate holds of a and b, else y. The same
// operations in the same order either way, so each lane's value is the same to the bit.
#define DK_EXP_BODY(P, VF, VI, ROUND, CAST, SELECT)                                                   \
    const VF lo = P##_set1_ps(-87.33654475f), hi = P##_set1_ps(88.72283905f);                         \
    VF xc = P##_min_ps(P##_max_ps(x, lo), hi);                                                        \
    VF n = ROUND(P##_mul_ps(xc, P##_set1_ps(1.44269504088896341f)));                                  \
    VF r = P##_fnmadd_ps(n, P##_set1_ps(0.693359375f), xc);                                           \
    r = P##_fnmadd_ps(n, P##_set1_ps(-2.12194440e-4f), r);                                            \
    VF p = P##_set1_ps(1.9875691500e-4f);                                                             \
    p = P##_fmadd_ps(p, r, P##_set1_ps(1.3981999507e-3f));                                            \
    p = P##_fmadd_ps(p, r, P##_set1_ps(8.3334519073e-3f));                                            \
    p = P##_fmadd_ps(p, r, P##_set1_ps(4.1665795894e-2f));                                            \
    p = P##_fmadd_ps(p, r, P##_set1_ps(1.6666665459e-1f));                                            \
    p = P##_fmadd_ps(p, r, P##_set1_ps(5.0000001201e-1f));                                            \
    p = P##_fmadd_ps(p, P##_mul_ps(r, r), P##_add_ps(r, P##_set1_ps(1.0f)));                          \
    /* 2ⁿ for n ≤ 127; n = 128 (x within ln2/2 of the overflow threshold) as 2¹²⁷·2. */               \
    VF n127 = P##_min_ps(n, P##_set1_ps(127.0f));                                                     \
    VI e = P##_slli_epi32(P##_add_epi32(P##_cvtps_epi32(n127), P##_set1_epi32(127)), 23);             \
    VF y = P##_mul_ps(P##_mul_ps(p, CAST(e)), P##_add_ps(P##_set1_ps(1.0f), P##_sub_ps(n, n127)));    \
    y = SELECT(x, lo, _CMP_LT_OQ, y, P##_setzero_ps());                                               \
    y = SELECT(x, hi, _CMP_GT_OQ, y, P##_set1_ps(INFINITY));                                          \
    return SELECT(x, x, _CMP_UNORD_Q, y, x);

#define DK_ROUND8(v) _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define DK_SELECT8(a, b, pred, y, v) _mm256_blendv_ps(y, v, _mm256_cmp_ps(a, b, pred))
__attribute__((target("avx2,fma")))
static inline __m256 exp8(__m256 x) {
    DK_EXP_BODY(_mm256, __m256, __m256i, DK_ROUND8, _mm256_castsi256_ps, DK_SELECT8)
}

// The AVX-512 versions of the exponential kernels (exp.c, logit_rows.c; chosen by dk_rows_avx512).
#define DK_AVX512_TARGET __attribute__((target("avx512f,avx512dq,avx2,fma")))

// Lanes i..<n of 16 (all from 16 on): the AVX-512 kernels' last vector. Row kernels whose sums
// keep the AVX2 kernels' order cover n rounded down to 8 with it (a last 8 lanes) and leave the
// rest to their scalar tails; elementwise kernels cover all n.
static inline __mmask16 dk_lanes_left(long i, long n) { return n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1); }

// exp8's arithmetic on 16 lanes (masks in place of blends). 35% faster than two exp8 on Zen 4,
// which splits 512-bit operations in two, as fewer instructions go through (sums of exponentials
// measured).
#define DK_ROUND16(v) _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define DK_SELECT16(a, b, pred, y, v) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, pred), y, v)
DK_AVX512_TARGET
static inline __m512 exp16(__m512 x) {
    DK_EXP_BODY(_mm512, __m512, __m512i, DK_ROUND16, _mm512_castsi512_ps, DK_SELECT16)
}

// Adds 16 Float lanes to 8 Double lanes as two 8-lane steps would (lanes 0-7, then 8-15): the
// association of the AVX2 kernels' pair of 4-lane Double sums.
DK_AVX512_TARGET
static inline __m512d add16_to_8d(__m512d acc, __m512 v) {
    acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    return _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
}

// The Double total of 8 lanes as the AVX2 kernels take it: hsum256d(lanes 0-3 + lanes 4-7).
DK_AVX512_TARGET
static inline double hsum512d_as_avx2(__m512d acc) {
    return hsum256d(_mm256_add_pd(_mm512_castpd512_pd256(acc), _mm512_extractf64x4_pd(acc, 1)));
}
#endif
#endif
