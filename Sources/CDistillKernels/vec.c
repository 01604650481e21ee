// Vector primitives: for the one-query attention of decoding, a dot product of a query with each
// cached key, and probability-weighted sums of cached values. Plain C loops with one accumulator
// cannot be vectorised (the additions would be reordered), so the AVX2 versions keep 4 × 8 partial
// sums; the portable versions keep 8. And the rotary position embedding's rotation of rows.
#include "CDistillKernels.h"
#include "simd.h"

static float sdot_portable(const float *x, const float *y, long n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    long i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += x[i + j] * y[i + j];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma")))
static float sdot_avx2(const float *x, const float *y, long n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    long i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

__attribute__((target("avx2,fma")))
static void saxpy_avx2(float a, const float *x, float *y, long n) {
    __m256 va = _mm256_set1_ps(a);
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

#endif

float dk_sdot(const float *x, const float *y, long n) {
#if defined(__x86_64__)
    if (has_avx2_fma()) return sdot_avx2(x, y, n);
#endif
    return sdot_portable(x, y, n);
}

void dk_saxpy(float a, const float *x, float *y, long n) {
#if defined(__x86_64__)
    if (has_avx2_fma()) { saxpy_avx2(a, x, y, n); return; }
#endif
    for (long i = 0; i < n; i++) y[i] += a * x[i];
}

// Rotary position embedding of `rows` consecutive rows of width d, row r rotated by the table row
// r (cos and sin, `half` values each, rows `half` apart): pairs (i, i + half) for i < half become
// (a·c − b·s, b·c + a·s) with s = sign·sin; values past 2·half are copied. Products and the sum
// are rounded separately (no FMA), as the Swift loop this replaced.
#pragma STDC FP_CONTRACT OFF
static void rotary_rows_portable(const float *x, float *y, long rows, long d, long half, const float *cs,
                                 const float *sn, float sign) {
    for (long r = 0; r < rows; r++, x += d, y += d, cs += half, sn += half) {
        for (long i = 0; i < half; i++) {
            float c = cs[i], s = sign * sn[i], a = x[i], b = x[i + half];
            y[i] = a * c - b * s;
            y[i + half] = b * c + a * s;
        }
        for (long i = 2 * half; i < d; i++) y[i] = x[i];
    }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma")))
static void rotary_rows_avx2(const float *x, float *y, long rows, long d, long half, const float *cs,
                             const float *sn, float sign) {
    const __m256 vsign = _mm256_set1_ps(sign);
    for (long r = 0; r < rows; r++, x += d, y += d, cs += half, sn += half) {
        for (long i = 0; i < half; i += 8) {
            long left = half - i;
            __m256 c = dk_load8(cs + i, left), s = _mm256_mul_ps(vsign, dk_load8(sn + i, left));
            __m256 a = dk_load8(x + i, left), b = dk_load8(x + i + half, left);
            dk_store8(y + i, _mm256_sub_ps(_mm256_mul_ps(a, c), _mm256_mul_ps(b, s)), left);
            dk_store8(y + i + half, _mm256_add_ps(_mm256_mul_ps(b, c), _mm256_mul_ps(a, s)), left);
        }
        for (long i = 2 * half; i < d; i++) y[i] = x[i];
    }
}
#endif

void dk_rotary_rows(const float *x, float *y, long rows, long d, long half, const float *cos_table,
                    const float *sin_table, float sign, int portable) {
#if defined(__x86_64__)
    if (!portable && has_avx2_fma()) { rotary_rows_avx2(x, y, rows, d, half, cos_table, sin_table, sign); return; }
#endif
    rotary_rows_portable(x, y, rows, d, half, cos_table, sin_table, sign);
}
