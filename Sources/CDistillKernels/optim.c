// Optimizer updates over a parameter's values: AdamW's moments and step, and the sum of squares
// behind gradient clipping's global norm. Written in Swift, both loops ran one value at a time
// (AdamW's square root and division scalar; the sum one dependent Double addition per value).
// AdamW's arithmetic is the Swift expression's, each operation rounded on its own (no FMA), so
// the vector and scalar loops give the same bits.
#include "CDistillKernels.h"
#include "simd.h"
#include <math.h>
#pragma STDC FP_CONTRACT OFF

// One value: g scaled, then m, v and p as AdamW.update computes them.
static inline void adamw_one(float g, float m0, float v0, float p0, const dk_adamw_step *s, float *m, float *v, float *p) {
    float gi = g * s->grad_scale;
    float mi = s->beta1 * m0 + (1 - s->beta1) * gi;
    float vi = s->beta2 * v0 + (1 - s->beta2) * gi * gi;
    *m = mi;
    *v = vi;
    *p = p0 * s->decay - s->step_size * mi / (sqrtf(vi) * s->inv_sqrt_bc2 + s->eps);
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma")))
static long adamw_avx2(long n, const float *g, const float *m0, const float *v0, const float *p0, const dk_adamw_step *s,
                       float *m, float *v, float *p) {
    const __m256 gs = _mm256_set1_ps(s->grad_scale), b1 = _mm256_set1_ps(s->beta1), c1 = _mm256_set1_ps(1 - s->beta1),
                 b2 = _mm256_set1_ps(s->beta2), c2 = _mm256_set1_ps(1 - s->beta2), decay = _mm256_set1_ps(s->decay),
                 step = _mm256_set1_ps(s->step_size), isb = _mm256_set1_ps(s->inv_sqrt_bc2), eps = _mm256_set1_ps(s->eps);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(g + i), gs);
        __m256 mi = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m0 + i)), _mm256_mul_ps(c1, gi));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(v0 + i)), _mm256_mul_ps(_mm256_mul_ps(c2, gi), gi));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        __m256 den = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vi), isb), eps);
        _mm256_storeu_ps(p + i, _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(p0 + i), decay),
                                              _mm256_div_ps(_mm256_mul_ps(step, mi), den)));
    }
    return i;
}

__attribute__((target("avx2,fma")))
static double sum_squares_avx2(const float *x, long n, long *done) {
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), a2 = _mm256_setzero_pd(), a3 = _mm256_setzero_pd();
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256d x0 = _mm256_cvtps_pd(_mm_loadu_ps(x + i)), x1 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        __m256d x2 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 8)), x3 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 12));
        a0 = _mm256_add_pd(a0, _mm256_mul_pd(x0, x0));
        a1 = _mm256_add_pd(a1, _mm256_mul_pd(x1, x1));
        a2 = _mm256_add_pd(a2, _mm256_mul_pd(x2, x2));
        a3 = _mm256_add_pd(a3, _mm256_mul_pd(x3, x3));
    }
    *done = i;
    return hsum256d(_mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3)));
}
#endif

void dk_adamw(long n, const float *g, const float *m0, const float *v0, const float *p0, const dk_adamw_step *s,
              float *m, float *v, float *p, int portable) {
    long i = 0;
#if defined(__x86_64__)
    if (!portable && has_avx2_fma()) i = adamw_avx2(n, g, m0, v0, p0, s, m, v, p);
#endif
    for (; i < n; i++) adamw_one(g[i], m0[i], v0[i], p0[i], s, m + i, v + i, p + i);
}

// Portable: 16 Double partial sums, lane l taking values l, l + 16, …, added as the AVX2 loop adds
// its four vectors' lanes — the same value either way.
double dk_sum_squares(const float *x, long n, int portable) {
    long i = 0;
    double s = 0;
#if defined(__x86_64__)
    if (!portable && has_avx2_fma()) s = sum_squares_avx2(x, n, &i);
    else
#endif
    {
        double a[16] = {0};
        for (; i + 16 <= n; i += 16)
            for (int l = 0; l < 16; l++) a[l] += (double)x[i + l] * (double)x[i + l];
        // hsum256d of ((a0 + a1) + (a2 + a3)) lane by lane: vector k holds lanes 4k..4k+3.
        double lane[4];
        for (int l = 0; l < 4; l++) lane[l] = (a[l] + a[4 + l]) + (a[8 + l] + a[12 + l]);
        s = (lane[0] + lane[1]) + (lane[2] + lane[3]);
    }
    for (; i < n; i++) s += (double)x[i] * (double)x[i];
    return s;
}
