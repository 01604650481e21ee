// Exponentials over rows: softmax, cross-entropy and SiLU spend most of their time in exp, and a
// call to the C library's expf per element cannot be vectorised. With AVX2 the exponential is
// computed 8 lanes at a time: x = n·ln2 + r (|r| ≤ ln2/2, ln2 split in two parts), exp(r) from a
// degree-7 polynomial (1 + r + r²·P(r), P the Cephes expf minimax polynomial; within 2 ulp of the
// exact value, tested), times 2ⁿ built in the exponent bits. Results below the smallest normal
// float are 0 (expf gives subnormals there), above FLT_MAX +inf, NaN stays NaN. Sums are kept in
// Double lanes: over a large vocabulary most terms are far below a Float sum's last digit.
#include "CDistillKernels.h"
#include "simd.h"
#include <math.h>
// scale·x − shift is rounded twice (product, then difference) everywhere, as the Swift code did.
#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__)
// exp(scale·x − shift), the product rounded first as the scalar code rounds it.
__attribute__((target("avx2,fma")))
static inline __m256 shifted_exp8(const float *x, __m256 scale, __m256 shift) {
    return exp8(_mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(x), scale), shift));
}

__attribute__((target("avx2,fma")))
static void vexp_avx2(const float *x, float *y, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp8(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = expf(x[i]);
}

__attribute__((target("avx2,fma")))
static float vmax_avx2(const float *x, long n) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
    }
    for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
    float lanes[8], m = -INFINITY;
    _mm256_storeu_ps(lanes, _mm256_max_ps(m0, m1));
    for (int j = 0; j < 8; j++) if (lanes[j] > m) m = lanes[j];
    for (; i < n; i++) if (x[i] > m) m = x[i];
    return m;
}

__attribute__((target("avx2,fma")))
static double sum_exp_avx2(const float *x, long n, float scale, float shift, float *out) {
    const __m256 vs = _mm256_set1_ps(scale), vm = _mm256_set1_ps(shift);
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = shifted_exp8(x + i, vs, vm);
        if (out) _mm256_storeu_ps(out + i, e);
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double s = hsum256d(_mm256_add_pd(a0, a1));
    for (; i < n; i++) {
        float e = expf(x[i] * scale - shift);
        if (out) out[i] = e;
        s += e;
    }
    return s;
}

__attribute__((target("avx2,fma")))
static void exp_affine_avx2(const float *x, long n, float scale, float shift, float alpha, float beta, float *y) {
    const __m256 vs = _mm256_set1_ps(scale), vm = _mm256_set1_ps(shift), va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, shifted_exp8(x + i, vs, vm), vb));
    for (; i < n; i++) y[i] = alpha * expf(x[i] * scale - shift) + beta;
}

// σ(x) = 1 / (1 + e^(−x)).
__attribute__((target("avx2,fma")))
static inline __m256 sigmoid8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

__attribute__((target("avx2,fma")))
static void silu_avx2(const float *x, float *y, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(y + i, _mm256_mul_ps(v, sigmoid8(v)));
    }
    for (; i < n; i++) y[i] = x[i] * (1.0f / (1.0f + expf(-x[i])));
}

__attribute__((target("avx2,fma")))
static void silu_backward_avx2(const float *x, const float *g, float *dx, long n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), s = sigmoid8(v);
        // σ·(1 + x·(1 − σ))
        __m256 d = _mm256_mul_ps(s, _mm256_fmadd_ps(v, _mm256_sub_ps(one, s), one));
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(g + i), d));
    }
    for (; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        dx[i] = g[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

// SwiGLU, silu(gate)·up, in one pass; each value rounded as dk_silu followed by the product.
__attribute__((target("avx2,fma")))
static void swiglu_avx2(const float *gate, const float *up, float *y, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(gate + i);
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(v, sigmoid8(v)), _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) y[i] = (gate[i] * (1.0f / (1.0f + expf(-gate[i])))) * up[i];
}

// Its backward in one pass, as the product's backward then dk_silu_backward round it:
// dup = g·silu(gate), dgate = silu'(gate)·(g·up).
__attribute__((target("avx2,fma")))
static void swiglu_backward_avx2(const float *gate, const float *up, const float *g, float *dgate, float *dup, long n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(gate + i), s = sigmoid8(v), gi = _mm256_loadu_ps(g + i);
        __m256 d = _mm256_mul_ps(s, _mm256_fmadd_ps(v, _mm256_sub_ps(one, s), one));
        if (dup) _mm256_storeu_ps(dup + i, _mm256_mul_ps(gi, _mm256_mul_ps(v, s)));
        if (dgate) _mm256_storeu_ps(dgate + i, _mm256_mul_ps(_mm256_mul_ps(gi, _mm256_loadu_ps(up + i)), d));
    }
    for (; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-gate[i]));
        if (dup) dup[i] = g[i] * (gate[i] * s);
        if (dgate) dgate[i] = (g[i] * up[i]) * s * (1.0f + gate[i] * (1.0f - s));
    }
}
#endif

void dk_swiglu(const float *gate, const float *up, float *y, long n) {
#if defined(__x86_64__)
    if (has_avx2_fma()) { swiglu_avx2(gate, up, y, n); return; }
#endif
    for (long i = 0; i < n; i++) y[i] = (gate[i] * (1.0f / (1.0f + expf(-gate[i])))) * up[i];
}

void dk_swiglu_backward(const float *gate, const float *up, const float *g, float *dgate, float *dup, long n) {
#if defined(__x86_64__)
    if (has_avx2_fma()) { swiglu_backward_avx2(gate, up, g, dgate, dup, n); return; }
#endif
    for (long i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-gate[i]));
        if (dup) dup[i] = g[i] * (gate[i] * s);
        if (dgate) dgate[i] = (g[i] * up[i]) * s * (1.0f + gate[i] * (1.0f - s));
    }
}

void dk_vexp(const float *x, float *y, long n) {
#if defined(__x86_64__)
    if (has_avx2_fma()) { vexp_avx2(x, y, n); return; }
#endif
    for (long i = 0; i < n; i++) y[i] = expf(x[i]);
}

float dk_vmax(const float *x, long n) {
#if defined(__x86_64__)
    if (has_avx2_fma()) return vmax_avx2(x, n);
#endif
    float m = -INFINITY;
    for (long i = 0; i < n; i++) if (x[i] > m) m = x[i];
    return m;
}

double dk_sum_exp(const float *x, long n, float scale, float shift, float *out) {
#if defined(__x86_64__)
    if (has_avx2_fma()) return sum_exp_avx2(x, n, scale, shift, out);
#endif
    double s = 0;
    for (long i = 0; i < n; i++) {
        float e = expf(x[i] * scale - shift);
        if (out) out[i] = e;
        s += e;
    }
    return s;
}

void dk_exp_affine(const float *x, long n, float scale, float shift, float alpha, float beta, float *y) {
#if defined(__x86_64__)
    if (has_avx2_fma()) { exp_affine_avx2(x, n, scale, shift, alpha, beta, y); return; }
#endif
    for (long i = 0; i < n; i++) y[i] = alpha * expf(x[i] * scale - shift) + beta;
}

void dk_silu(const float *x, float *y, long n) {
#if defined(__x86_64__)
    if (has_avx2_fma()) { silu_avx2(x, y, n); return; }
#endif
    for (long i = 0; i < n; i++) y[i] = x[i] * (1.0f / (1.0f + expf(-x[i])));
}

void dk_silu_backward(const float *x, const float *g, float *dx, long n) {
#if defined(__x86_64__)
    if (has_avx2_fma()) { silu_backward_avx2(x, g, dx, n); return; }
#endif
    for (long i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        dx[i] = g[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}
