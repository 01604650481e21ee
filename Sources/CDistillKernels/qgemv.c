// Matrix-vector products with weights kept in GGML block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
// BF16): several input rows expand each block of 32 weights to Float32 exactly as the loader
// dequantizes it, then multiply with the activations in Float32; one input row (batch-1
// decoding) multiplies the block's integers and applies its scale and offset once per block
// (see qgemv_avx2_body). Reading 18-34 bytes per 32 weights instead of 128 is what
// makes decoding fast: one token's matrix-vector products are bound by memory traffic.
#include "CDistillKernels.h"
#include "simd.h"
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static float half_to_float(const uint8_t *p) {
    uint16_t h = (uint16_t)(p[0] | (p[1] << 8));
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {            // subnormal: normalise
            int e = -1;
            do { mant <<= 1; e++; } while (!(mant & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3FF) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000 | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

long dk_qblock_bytes(int type) {
    switch (type) {
    case DK_Q4_0: return 18;
    case DK_Q4_1: return 20;
    case DK_Q5_0: return 22;
    case DK_Q5_1: return 24;
    case DK_Q8_0: return 34;
    case DK_Q4_K: return 144;
    case DK_Q5_K: return 176;
    case DK_Q6_K: return 210;
    case DK_BF16: return 64;
    default: return 0;
    }
}

long dk_qblock_values(int type) { return type == DK_Q4_K || type == DK_Q5_K || type == DK_Q6_K ? 256 : 32; }

// Scale and min j (0..7) of the 12 packed 6-bit scales of Q4_K / Q5_K (ggml's get_scale_min_k4).
static void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// The 256 weights of a K-quant block, as the loader computes them (one product or sum per
// statement, so no contraction into FMA changes a value).
static void expand_block_k(int type, const uint8_t *b, float *y) {
    if (type == DK_Q6_K) {
        float d = half_to_float(b + 208);
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int n = 0; n < 2; n++) {
            for (int l = 0; l < 32; l++) {
                int s = l / 16;
                uint8_t h = qh[l];
                int q1 = (int)((ql[l] & 0xF) | ((h & 3) << 4)) - 32;
                int q2 = (int)((ql[l + 32] & 0xF) | (((h >> 2) & 3) << 4)) - 32;
                int q3 = (int)((ql[l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
                int q4 = (int)((ql[l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
                float a1 = d * (float)sc[s], a2 = d * (float)sc[s + 2], a3 = d * (float)sc[s + 4], a4 = d * (float)sc[s + 6];
                y[l] = a1 * (float)q1;
                y[l + 32] = a2 * (float)q2;
                y[l + 64] = a3 * (float)q3;
                y[l + 96] = a4 * (float)q4;
            }
            y += 128; ql += 64; qh += 32; sc += 8;
        }
        return;
    }
    float d = half_to_float(b), dmin = half_to_float(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *q = b + (type == DK_Q4_K ? 16 : 48);
    uint8_t u1 = 1, u2 = 2;
    for (int s = 0; s < 8; s += 2) {
        uint8_t sc1, m1, sc2, m2;
        scale_min_k4(s, scales, &sc1, &m1);
        scale_min_k4(s + 1, scales, &sc2, &m2);
        float d1 = d * (float)sc1, min1 = dmin * (float)m1, d2 = d * (float)sc2, min2 = dmin * (float)m2;
        for (int l = 0; l < 32; l++) {
            int v = q[l] & 0xF;
            if (type == DK_Q5_K && (qh[l] & u1)) v += 16;
            float p = d1 * (float)v;
            y[l] = p - min1;
        }
        for (int l = 0; l < 32; l++) {
            int v = q[l] >> 4;
            if (type == DK_Q5_K && (qh[l] & u2)) v += 16;
            float p = d2 * (float)v;
            y[l + 32] = p - min2;
        }
        y += 64; q += 32;
        u1 <<= 2; u2 <<= 2;
    }
}

// The 32 weights of one block, as the loader computes them.
static void expand_block(int type, const uint8_t *b, float *w) {
    switch (type) {
    case DK_BF16:
        // bfloat16 is the top half of a Float32: exact.
        for (int j = 0; j < 32; j++) {
            uint32_t bits = ((uint32_t)b[2 * j] | ((uint32_t)b[2 * j + 1] << 8)) << 16;
            memcpy(w + j, &bits, 4);
        }
        break;
    case DK_Q4_0: {
        float d = half_to_float(b);
        for (int j = 0; j < 16; j++) {
            w[j] = (float)((int)(b[2 + j] & 0x0F) - 8) * d;
            w[j + 16] = (float)((int)(b[2 + j] >> 4) - 8) * d;
        }
        break;
    }
    case DK_Q4_1: {
        float d = half_to_float(b), m = half_to_float(b + 2);
        for (int j = 0; j < 16; j++) {
            float lo = (float)(b[4 + j] & 0x0F) * d, hi = (float)(b[4 + j] >> 4) * d;
            w[j] = lo + m;
            w[j + 16] = hi + m;
        }
        break;
    }
    case DK_Q8_0: {
        float d = half_to_float(b);
        for (int j = 0; j < 32; j++) w[j] = (float)(int8_t)b[2 + j] * d;
        break;
    }
    case DK_Q5_0:
    case DK_Q5_1: {
        int one = type == DK_Q5_1;
        float d = half_to_float(b), m = one ? half_to_float(b + 2) : 0;
        const uint8_t *h = b + (one ? 4 : 2), *qs = b + (one ? 8 : 6);
        uint32_t qh = (uint32_t)h[0] | ((uint32_t)h[1] << 8) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 24);
        for (int j = 0; j < 16; j++) {
            uint32_t h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
            uint32_t lo = (qs[j] & 0x0F) | h0, hi = (qs[j] >> 4) | h1;
            if (one) {
                float a = (float)lo * d, c = (float)hi * d;
                w[j] = a + m;
                w[j + 16] = c + m;
            } else {
                w[j] = (float)((int)lo - 16) * d;
                w[j + 16] = (float)((int)hi - 16) * d;
            }
        }
        break;
    }
    }
}

void dk_qexpand_block(int type, const void *block, float *w) {
    if (dk_qblock_values(type) == 256) expand_block_k(type, (const uint8_t *)block, w);
    else expand_block(type, (const uint8_t *)block, w);
}

static void qgemv_portable(int type, const uint8_t *W, long cols, const float *X, long m, long ldx,
                           float *Y, long ldy, long row0, long row1) {
    long bv = dk_qblock_values(type), blocks = cols / bv, bb = dk_qblock_bytes(type);
    float w[256];
    for (long r = row0; r < row1; r++) {
        const uint8_t *row = W + r * blocks * bb;
        for (long i = 0; i < m; i++) Y[i * ldy + r] = 0;
        for (long b = 0; b < blocks; b++) {
            dk_qexpand_block(type, row + b * bb, w);
            for (long i = 0; i < m; i++) {
                const float *x = X + i * ldx + b * bv;
                // Eight running sums (vectorizable), added at the end of each 32 values.
                float acc = 0;
                for (long j0 = 0; j0 < bv; j0 += 32) {
                    float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                    for (int j = 0; j < 32; j++) part[j & 7] += w[j0 + j] * x[j0 + j];
                    acc += ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
                }
                Y[i * ldy + r] += acc;
            }
        }
    }
}

#if defined(__x86_64__)
// Half-precision scales with the F16C instruction (every AVX2 CPU has it; checked with AVX2).
__attribute__((target("avx2,fma,f16c")))
static inline float half_f16c(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

// A block's 32 weights as bytes in element order: Q8_0's int8 values, or Q4's nibbles (0..15).
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256i block_bytes_avx2(int type, const uint8_t *w) {
    if (type == DK_Q8_0) return _mm256_loadu_si256((const __m256i *)(w + 2));
    const __m128i mask = _mm_set1_epi8(0x0F);
    long at = type == DK_Q4_0 ? 2 : type == DK_Q4_1 ? 4 : type == DK_Q5_0 ? 6 : 8;
    __m128i raw = _mm_loadu_si128((const __m128i *)(w + at));
    __m128i lo = _mm_and_si128(raw, mask), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
    __m256i q = _mm256_set_m128i(hi, lo);            // elements 0..15, then 16..31
    if (type == DK_Q5_0 || type == DK_Q5_1) {
        // The fifth bits: bit j of the little-endian word before the nibbles is element j's 16.
        const uint8_t *h = w + (type == DK_Q5_0 ? 2 : 4);
        uint32_t qh = (uint32_t)h[0] | ((uint32_t)h[1] << 8) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 24);
        uint8_t high[32];
        for (int j = 0; j < 32; j++) high[j] = (uint8_t)(((qh >> j) & 1) << 4);
        q = _mm256_or_si256(q, _mm256_loadu_si256((const __m256i *)high));
    }
    return q;
}

// A block's 32 weights as four vectors of 8 Float32 values in element order: exactly the loader's
// values (q·d, (n − 8)·d, or n·d + m, each rounded as the scalar code rounds it).
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void expand_block_avx2(int type, const uint8_t *b, __m256 w[4]) {
    if (type == DK_BF16) {
        for (int k = 0; k < 4; k++) {
            __m256i n = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(b + 16 * k)));
            w[k] = _mm256_castsi256_ps(_mm256_slli_epi32(n, 16));
        }
        return;
    }
    __m256i bytes = block_bytes_avx2(type, b);
    __m128i halves[2] = {_mm256_castsi256_si128(bytes), _mm256_extracti128_si256(bytes, 1)};
    __m256 d = _mm256_set1_ps(half_f16c(b));
    int offset = type == DK_Q4_1 || type == DK_Q5_1;
    __m256 m = _mm256_set1_ps(offset ? half_f16c(b + 2) : 0.0f);
    int zero = type == DK_Q4_0 ? 8 : type == DK_Q5_0 ? 16 : 0;
    for (int k = 0; k < 4; k++) {
        __m128i part = k & 1 ? _mm_srli_si128(halves[k >> 1], 8) : halves[k >> 1];
        __m256i n = type == DK_Q8_0 ? _mm256_cvtepi8_epi32(part) : _mm256_cvtepu8_epi32(part);
        if (zero) n = _mm256_sub_epi32(n, _mm256_set1_epi32(zero));
        __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(n), d);
        w[k] = offset ? _mm256_add_ps(v, m) : v;
    }
}

__attribute__((target("avx2,fma,f16c"), always_inline))
static inline void qgemv_avx2_body(int type, const uint8_t *W, long cols, const float *X, long m, long ldx,
                       float *Y, long ldy, long row0, long row1) {
    long blocks = cols / 32, bb = dk_qblock_bytes(type);
    if (m == 1 && type != DK_BF16) {
        // One input row (batch-1 decoding), blocks w = n·d + c (c = m for Q4_1/Q5_1, −8d for
        // Q4_0, −16d for Q5_0, 0 for Q8_0): Σ w·x = Σ_blocks d·(Σ n·x) + c·(Σ x), with each
        // block's Σ x computed once per input. The nibbles are multiplied as integers-in-float
        // and scaled once per block instead of expanding every weight (a mul and an add per
        // weight saved): SmolLM2 Q4_1 decoding 86 -> 104 tokens/s side by side. The rounding is
        // that of the factored sum: within a few float roundings of Σ_j (|n_j·d| + |c|)·|x_j|.
        float sx[blocks > 0 ? blocks : 1];
        for (long b = 0; b < blocks; b++) {
            const float *x = X + b * 32;
            __m256 t = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8)),
                                     _mm256_add_ps(_mm256_loadu_ps(x + 16), _mm256_loadu_ps(x + 24)));
            sx[b] = hsum256(t);
        }
        for (long r = row0; r < row1; r++) {
            const uint8_t *row = W + r * blocks * bb;
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            float off = 0;
            for (long b = 0; b < blocks; b++) {
                const uint8_t *blk = row + b * bb;
                __m256i bytes = block_bytes_avx2(type, blk);
                __m128i h0 = _mm256_castsi256_si128(bytes), h1 = _mm256_extracti128_si256(bytes, 1);
                const float *x = X + b * 32;
                __m256 n0, n1, n2, n3;
                if (type == DK_Q8_0) {
                    n0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(h0)); n1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(h0, 8)));
                    n2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(h1)); n3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(h1, 8)));
                } else {
                    n0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(h0)); n1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(h0, 8)));
                    n2 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(h1)); n3 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(h1, 8)));
                }
                __m256 s0 = _mm256_fmadd_ps(n1, _mm256_loadu_ps(x + 8), _mm256_mul_ps(n0, _mm256_loadu_ps(x)));
                __m256 s1 = _mm256_fmadd_ps(n3, _mm256_loadu_ps(x + 24), _mm256_mul_ps(n2, _mm256_loadu_ps(x + 16)));
                float d = half_f16c(blk);
                __m256 dv = _mm256_set1_ps(d);
                a0 = _mm256_fmadd_ps(dv, s0, a0);
                a1 = _mm256_fmadd_ps(dv, s1, a1);
                if (type == DK_Q4_1 || type == DK_Q5_1) off += half_f16c(blk + 2) * sx[b];
                else if (type == DK_Q4_0) off -= 8 * d * sx[b];
                else if (type == DK_Q5_0) off -= 16 * d * sx[b];
            }
            Y[r] = hsum256(_mm256_add_ps(a0, a1)) + off;
        }
        return;
    }
    if (m == 1) {
        // bfloat16 rows: the values themselves; four independent accumulators keep the FMAs
        // from waiting on each other.
        for (long r = row0; r < row1; r++) {
            const uint8_t *row = W + r * blocks * bb;
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
            for (long b = 0; b < blocks; b++) {
                __m256 w[4];
                expand_block_avx2(type, row + b * bb, w);
                const float *x = X + b * 32;
                a0 = _mm256_fmadd_ps(w[0], _mm256_loadu_ps(x), a0);
                a1 = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(x + 8), a1);
                a2 = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(x + 16), a2);
                a3 = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(x + 24), a3);
            }
            Y[r] = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        }
        return;
    }
    for (long r = row0; r < row1; r++) {
        const uint8_t *row = W + r * blocks * bb;
        for (long i0 = 0; i0 < m; i0 += 8) {
            long mi = m - i0 < 8 ? m - i0 : 8;
            __m256 acc[8];
            for (long i = 0; i < mi; i++) acc[i] = _mm256_setzero_ps();
            for (long b = 0; b < blocks; b++) {
                __m256 w[4];
                expand_block_avx2(type, row + b * bb, w);
                for (long i = 0; i < mi; i++) {
                    const float *x = X + (i0 + i) * ldx + b * 32;
                    __m256 a = acc[i];
                    a = _mm256_fmadd_ps(w[0], _mm256_loadu_ps(x), a);
                    a = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(x + 8), a);
                    a = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(x + 16), a);
                    a = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(x + 24), a);
                    acc[i] = a;
                }
            }
            for (long i = 0; i < mi; i++) Y[(i0 + i) * ldy + r] = hsum256(acc[i]);
        }
    }
}

__attribute__((target("avx2,fma,f16c")))
static void qpack_sliver16_avx2(int type, const uint8_t *W, long rowBytes, int cols, long k0, long kc, float *dst, long ldd) {
    long bb = dk_qblock_bytes(type);
    float tile[16 * 32] __attribute__((aligned(32)));
    for (long k = 0; k < kc; k += 32) {
        for (int c = 0; c < 16; c++) {
            if (c < cols) {
                __m256 w[4];
                expand_block_avx2(type, W + c * rowBytes + (k0 + k) / 32 * bb, w);
                for (int q = 0; q < 4; q++) _mm256_store_ps(tile + c * 32 + q * 8, w[q]);
            } else {
                for (int q = 0; q < 4; q++) _mm256_store_ps(tile + c * 32 + q * 8, _mm256_setzero_ps());
            }
        }
        for (int t0 = 0; t0 < 32; t0 += 8)
            for (int c0 = 0; c0 < 16; c0 += 8) transpose8x8(tile + c0 * 32 + t0, 32, dst + (k + t0) * ldd + c0, ldd);
    }
}

// Batch-1 decoding gets one copy of the loops per block type (the type a constant in each), so
// that the block expansion's per-type branches fold away in the inner loop: 82 -> 96 tokens/s
// decoding SmolLM2 Q4_1 here. Several rows keep the shared loop (specialized, it measured slower).
__attribute__((target("avx2,fma,f16c"), noinline))
static void qgemv_avx2_rows(int type, const uint8_t *W, long cols, const float *X, long m, long ldx,
                            float *Y, long ldy, long row0, long row1) {
    qgemv_avx2_body(type, W, cols, X, m, ldx, Y, ldy, row0, row1);
}

__attribute__((target("avx2,fma,f16c")))
static void qgemv_avx2(int type, const uint8_t *W, long cols, const float *X, long m, long ldx,
                       float *Y, long ldy, long row0, long row1) {
    if (m > 1) { qgemv_avx2_rows(type, W, cols, X, m, ldx, Y, ldy, row0, row1); return; }
    switch (type) {
    case DK_Q4_0: qgemv_avx2_body(DK_Q4_0, W, cols, X, m, ldx, Y, ldy, row0, row1); break;
    case DK_Q4_1: qgemv_avx2_body(DK_Q4_1, W, cols, X, m, ldx, Y, ldy, row0, row1); break;
    case DK_Q5_0: qgemv_avx2_body(DK_Q5_0, W, cols, X, m, ldx, Y, ldy, row0, row1); break;
    case DK_Q5_1: qgemv_avx2_body(DK_Q5_1, W, cols, X, m, ldx, Y, ldy, row0, row1); break;
    case DK_Q8_0: qgemv_avx2_body(DK_Q8_0, W, cols, X, m, ldx, Y, ldy, row0, row1); break;
    default: qgemv_avx2_body(type, W, cols, X, m, ldx, Y, ldy, row0, row1); break;
    }
}

static int has_avx2(void) {
    static int has = -1;
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    }
    return has;
}
#endif

int dk_qpack_sliver16(int type, const void *W, long rowBytes, int cols, long k0, long kc, float *dst, long ldd) {
#if defined(__x86_64__)
    if (has_avx2() && dk_qblock_values(type) == 32 && k0 % 32 == 0 && kc % 32 == 0) {
        qpack_sliver16_avx2(type, (const uint8_t *)W, rowBytes, cols, k0, kc, dst, ldd);
        return 1;
    }
#endif
    (void)type; (void)W; (void)rowBytes; (void)cols; (void)k0; (void)kc; (void)dst; (void)ldd;
    return 0;
}

void dk_qgemv(int type, const void *W, long cols, const float *X, long m, long ldx,
              float *Y, long ldy, long row0, long row1) {
#if defined(__x86_64__)
    if (has_avx2() && dk_qblock_values(type) == 32) { qgemv_avx2(type, (const uint8_t *)W, cols, X, m, ldx, Y, ldy, row0, row1); return; }
#endif
    qgemv_portable(type, (const uint8_t *)W, cols, X, m, ldx, Y, ldy, row0, row1);
}

void dk_qgemv_portable(int type, const void *W, long cols, const float *X, long m, long ldx,
                       float *Y, long ldy, long row0, long row1) {
    qgemv_portable(type, (const uint8_t *)W, cols, X, m, ldx, Y, ldy, row0, row1);
}

void dk_qdequantize_rows(int type, const void *W, long cols, float *out, long row0, long row1) {
    long bv = dk_qblock_values(type), blocks = cols / bv, bb = dk_qblock_bytes(type);
    for (long r = row0; r < row1; r++)
        for (long b = 0; b < blocks; b++)
            dk_qexpand_block(type, (const uint8_t *)W + (r * blocks + b) * bb, out + r * cols + b * bv);
}

// ---- Activations quantized to 8 bits (the fast decoding option) ----
// Each block of 32 activations becomes int8 q = round(x / d), d = max|x| / 127, and the sum of
// its q; a weight block's dot product is then an integer dot product scaled once:
//   Q8_0: d_w·d_x·Σ q_w q_x;  Q4_0: d_w·d_x·(Σ n q_x − 8 Σ q_x);  Q4_1: d_w·d_x·Σ n q_x + m_w·d_x·Σ q_x.

static void quantize_q8_blocks_portable(const float *x, long cols, int8_t *q, float *d, int32_t *sum) {
    for (long b = 0; b < cols / 32; b++) {
        const float *xb = x + b * 32;
        float amax = 0;
        for (int j = 0; j < 32; j++) { float a = xb[j] < 0 ? -xb[j] : xb[j]; if (a > amax) amax = a; }
        float scale = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
        int32_t s = 0;
        for (int j = 0; j < 32; j++) {
            float v = xb[j] * inv;
            int r = (int)(v < 0 ? v - 0.5f : v + 0.5f);
            if (r > 127) r = 127;
            if (r < -127) r = -127;
            q[b * 32 + j] = (int8_t)r;
            s += r;
        }
        d[b] = scale;
        sum[b] = s;
    }
}

#if defined(__x86_64__)
// The portable loop's arithmetic on 8 lanes — the same maximum (a NaN skipped as there), the
// same product x·(127/amax), rounding half away from zero, clamp and sum — so the same bytes.
__attribute__((target("avx2,fma")))
static void quantize_q8_blocks_avx2(const float *x, long cols, int8_t *q, float *d, int32_t *sum) {
    const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (long b = 0; b < cols / 32; b++) {
        const float *xb = x + b * 32;
        __m256 v[4], m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            m = _mm256_max_ps(_mm256_and_ps(v[k], magnitude), m);   // m where |x| is NaN
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float amax = _mm_cvtss_f32(h), inv = amax > 0 ? 127.0f / amax : 0.0f;
        __m256i r[4], total = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            __m256 t = _mm256_mul_ps(v[k], _mm256_set1_ps(inv));
            __m256 half = _mm256_blendv_ps(_mm256_set1_ps(0.5f), _mm256_set1_ps(-0.5f), _mm256_cmp_ps(t, _mm256_setzero_ps(), _CMP_LT_OQ));
            r[k] = _mm256_cvttps_epi32(_mm256_add_ps(t, half));
            r[k] = _mm256_max_epi32(_mm256_min_epi32(r[k], _mm256_set1_epi32(127)), _mm256_set1_epi32(-127));
            total = _mm256_add_epi32(total, r[k]);
        }
        // Saturating packs are exact on values within ±127; the permute undoes their lane interleave.
        __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3]));
        _mm256_storeu_si256((__m256i *)(q + b * 32), _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(total), _mm256_extracti128_si256(total, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
        d[b] = amax / 127.0f;
        sum[b] = _mm_cvtsi128_si32(s4);
    }
}
#endif

void dk_quantize_q8_blocks(const float *x, long cols, int8_t *q, float *d, int32_t *sum) {
#if defined(__x86_64__)
    if (has_avx2_fma()) { quantize_q8_blocks_avx2(x, cols, q, d, sum); return; }
#endif
    quantize_q8_blocks_portable(x, cols, q, d, sum);
}

void dk_quantize_q8_blocks_portable(const float *x, long cols, int8_t *q, float *d, int32_t *sum) {
    quantize_q8_blocks_portable(x, cols, q, d, sum);
}

static float block_dot_q8_portable(int type, const uint8_t *w, const int8_t *q, float dx, int32_t sx) {
    int32_t dot = 0;
    if (type == DK_Q8_0) {
        for (int j = 0; j < 32; j++) dot += (int32_t)(int8_t)w[2 + j] * q[j];
        return half_to_float(w) * dx * (float)dot;
    }
    const uint8_t *qs = w + (type == DK_Q4_1 ? 4 : 2);
    for (int j = 0; j < 16; j++) dot += (int32_t)(qs[j] & 0x0F) * q[j] + (int32_t)(qs[j] >> 4) * q[j + 16];
    if (type == DK_Q4_1) return half_to_float(w) * dx * (float)dot + half_to_float(w + 2) * dx * (float)sx;
    return half_to_float(w) * dx * (float)(dot - 8 * sx);
}

static void qgemv_q8_portable(int type, const uint8_t *W, long cols, const int8_t *Q, const float *D, const int32_t *S,
                              long m, float *Y, long ldy, long row0, long row1) {
    long blocks = cols / 32, bb = dk_qblock_bytes(type);
    for (long r = row0; r < row1; r++) {
        const uint8_t *row = W + r * blocks * bb;
        for (long i = 0; i < m; i++) {
            float acc = 0;
            for (long b = 0; b < blocks; b++)
                acc += block_dot_q8_portable(type, row + b * bb, Q + (i * blocks + b) * 32, D[i * blocks + b], S[i * blocks + b]);
            Y[i * ldy + r] = acc;
        }
    }
}

#if defined(__x86_64__)
static int has_avxvnni(void) {
    static int has = -1;
    if (has < 0) {
        __builtin_cpu_init();
        has = has_avx2() && __builtin_cpu_supports("avxvnni");
    }
    return has;
}
#endif

int dk_qgemv_q8_supports(int kernel) {
    switch (kernel) {
    case DK_Q8_BEST: case DK_Q8_PORTABLE: return 1;
#if defined(__x86_64__)
    case DK_Q8_AVX2: return has_avx2();
    case DK_Q8_VNNI: return dk_q8_vnni_available();
    case DK_Q8_AVXVNNI: return has_avxvnni();
#endif
    default: return 0;
    }
}

void dk_qgemv_q8(int type, const void *W, long cols, const int8_t *Q, const float *D, const int32_t *S,
                 long m, float *Y, long ldy, long row0, long row1) {
    qgemv_q8_portable(type, (const uint8_t *)W, cols, Q, D, S, m, Y, ldy, row0, row1);
}
