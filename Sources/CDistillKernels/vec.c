// Vector primitives for the one-query attention of decoding: a dot product of a query with each
// cached key, and probability-weighted sums of cached values. Plain C loops with one accumulator
// cannot be vectorised (the additions would be reordered), so the AVX2 versions keep 4 × 8 partial
// sums; the portable versions keep 8.
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
