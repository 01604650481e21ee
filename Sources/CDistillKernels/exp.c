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

// Elementwise kernels (exp, SiLU, SwiGLU and their backwards) give every value the vector
// arithmetic, the last n % 8 too, through a lane mask (dk_load8/dk_store8, dk_lanes_left). A
// value's bits then do not depend on where its array ends — parallel loops split arrays at any
// index, and a scalar tail (expf) rounded the values near each split otherwise, so results
// changed with the thread count. The C library's expf serves CPUs without AVX2 only.

#if defined(__x86_64__)
// exp(scale·x − shift), the product rounded first as the scalar code rounds it.
__attribute__((target("avx2,fma")))
static inline __m256 shifted_exp8(__m256 x, __m256 scale, __m256 shift) {
    return exp8(_mm256_sub_ps(_mm256_mul_ps(x, scale), shift));
}

__attribute__((target("avx2,fma")))
static void vexp_avx2(const float *x, float *y, long n) {
    for (long i = 0; i < n; i += 8) dk_store8(y + i, exp8(dk_load8(x + i, n - i)), n - i);
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

// The vector part of dk_sum_exp: the first n rounded down to 8 values; sets *done.
__attribute__((target("avx2,fma")))
static double sum_exp_avx2(const float *x, long n, float scale, float shift, float *out, long *done) {
    const __m256 vs = _mm256_set1_ps(scale), vm = _mm256_set1_ps(shift);
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = shifted_exp8(_mm256_loadu_ps(x + i), vs, vm);
        if (out) _mm256_storeu_ps(out + i, e);
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    *done = i;
    return hsum256d(_mm256_add_pd(a0, a1));
}

// The AVX-512 kernels below give the AVX2 ones' bits: exp16 is exp8 lane by lane, and sums keep
// exp8's 8 Double lanes (add16_to_8d).

DK_AVX512_TARGET
static double sum_exp_avx512(const float *x, long n, float scale, float shift, float *out, long *done) {
    const __m512 vs = _mm512_set1_ps(scale), vm = _mm512_set1_ps(shift);
    const long n8 = n & ~7L;
    __m512d acc = _mm512_setzero_pd();
    for (long i = 0; i < n8; i += 16) {
        const __mmask16 k = dk_lanes_left(i, n8);
        __m512 e = exp16(_mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), vs), vm));
        if (out) _mm512_mask_storeu_ps(out + i, k, e);
        acc = k == 0xFFFF ? add16_to_8d(acc, e) : _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    }
    *done = n8;
    return hsum512d_as_avx2(acc);
}

__attribute__((target("avx2,fma")))
static void exp_affine_avx2(const float *x, long n, float scale, float shift, float alpha, float beta, float *y) {
    const __m256 vs = _mm256_set1_ps(scale), vm = _mm256_set1_ps(shift), va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    for (long i = 0; i < n; i += 8)
        dk_store8(y + i, _mm256_fmadd_ps(va, shifted_exp8(dk_load8(x + i, n - i), vs, vm), vb), n - i);
}

// σ(x) = 1 / (1 + e^(−x)).
__attribute__((target("avx2,fma")))
static inline __m256 sigmoid8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

__attribute__((target("avx2,fma")))
static void silu_avx2(const float *x, float *y, long n) {
    for (long i = 0; i < n; i += 8) {
        __m256 v = dk_load8(x + i, n - i);
        dk_store8(y + i, _mm256_mul_ps(v, sigmoid8(v)), n - i);
    }
}

__attribute__((target("avx2,fma")))
static void silu_backward_avx2(const float *x, const float *g, float *dx, long n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    for (long i = 0; i < n; i += 8) {
        __m256 v = dk_load8(x + i, n - i), s = sigmoid8(v);
        // σ·(1 + x·(1 − σ))
        __m256 d = _mm256_mul_ps(s, _mm256_fmadd_ps(v, _mm256_sub_ps(one, s), one));
        dk_store8(dx + i, _mm256_mul_ps(dk_load8(g + i, n - i), d), n - i);
    }
}

// σ(x) on 16 lanes, sigmoid8's arithmetic.
DK_AVX512_TARGET
static inline __m512 sigmoid16(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

DK_AVX512_TARGET
static void vexp_avx512(const float *x, float *y, long n) {
    for (long i = 0; i < n; i += 16) {
        const __mmask16 k = dk_lanes_left(i, n);
        _mm512_mask_storeu_ps(y + i, k, exp16(_mm512_maskz_loadu_ps(k, x + i)));
    }
}

DK_AVX512_TARGET
static void exp_affine_avx512(const float *x, long n, float scale, float shift, float alpha, float beta, float *y) {
    const __m512 vs = _mm512_set1_ps(scale), vm = _mm512_set1_ps(shift), va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (long i = 0; i < n; i += 16) {
        const __mmask16 k = dk_lanes_left(i, n);
        __m512 e = exp16(_mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), vs), vm));
        _mm512_mask_storeu_ps(y + i, k, _mm512_fmadd_ps(va, e, vb));
    }
}

DK_AVX512_TARGET
static void silu_avx512(const float *x, float *y, long n) {
    for (long i = 0; i < n; i += 16) {
        const __mmask16 k = dk_lanes_left(i, n);
        __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(v, sigmoid16(v)));
    }
}

DK_AVX512_TARGET
static void silu_backward_avx512(const float *x, const float *g, float *dx, long n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (long i = 0; i < n; i += 16) {
        const __mmask16 k = dk_lanes_left(i, n);
        __m512 v = _mm512_maskz_loadu_ps(k, x + i), s = sigmoid16(v);
        __m512 d = _mm512_mul_ps(s, _mm512_fmadd_ps(v, _mm512_sub_ps(one, s), one));
        _mm512_mask_storeu_ps(dx + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, g + i), d));
    }
}

DK_AVX512_TARGET
static void swiglu_avx512(const float *gate, const float *up, float *y, long n) {
    for (long i = 0; i < n; i += 16) {
        const __mmask16 k = dk_lanes_left(i, n);
        __m512 v = _mm512_maskz_loadu_ps(k, gate + i);
        _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(_mm512_mul_ps(v, sigmoid16(v)), _mm512_maskz_loadu_ps(k, up + i)));
    }
}

DK_AVX512_TARGET
static void swiglu_backward_avx512(const float *gate, const float *up, const float *g, float *dgate, float *dup, long n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (long i = 0; i < n; i += 16) {
        const __mmask16 k = dk_lanes_left(i, n);
        __m512 v = _mm512_maskz_loadu_ps(k, gate + i), s = sigmoid16(v), gi = _mm512_maskz_loadu_ps(k, g + i);
        __m512 d = _mm512_mul_ps(s, _mm512_fmadd_ps(v, _mm512_sub_ps(one, s), one));
        if (dup) _mm512_mask_storeu_ps(dup + i, k, _mm512_mul_ps(gi, _mm512_mul_ps(v, s)));
        if (dgate) _mm512_mask_storeu_ps(dgate + i, k, _mm512_mul_ps(_mm512_mul_ps(gi, _mm512_maskz_loadu_ps(k, up + i)), d));
    }
}

// SwiGLU, silu(gate)·up, in one pass; each value rounded as dk_silu followed by the product.
__attribute__((target("avx2,fma")))
static void swiglu_avx2(const float *gate, const float *up, float *y, long n) {
    for (long i = 0; i < n; i += 8) {
        __m256 v = dk_load8(gate + i, n - i);
        dk_store8(y + i, _mm256_mul_ps(_mm256_mul_ps(v, sigmoid8(v)), dk_load8(up + i, n - i)), n - i);
    }
}

// Its backward in one pass, as the product's backward then dk_silu_backward round it:
// dup = g·silu(gate), dgate = silu'(gate)·(g·up).
__attribute__((target("avx2,fma")))
static void swiglu_backward_avx2(const float *gate, const float *up, const float *g, float *dgate, float *dup, long n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    for (long i = 0; i < n; i += 8) {
        const long left = n - i;
        __m256 v = dk_load8(gate + i, left), s = sigmoid8(v), gi = dk_load8(g + i, left);
        __m256 d = _mm256_mul_ps(s, _mm256_fmadd_ps(v, _mm256_sub_ps(one, s), one));
        if (dup) dk_store8(dup + i, _mm256_mul_ps(gi, _mm256_mul_ps(v, s)), left);
        if (dgate) dk_store8(dgate + i, _mm256_mul_ps(_mm256_mul_ps(gi, dk_load8(up + i, left)), d), left);
    }
}
#endif

void dk_swiglu(const float *gate, const float *up, float *y, long n) {
#if defined(__x86_64__)
    if (dk_rows_avx512()) { swiglu_avx512(gate, up, y, n); return; }
    if (has_avx2_fma()) { swiglu_avx2(gate, up, y, n); return; }
#endif
    for (long i = 0; i < n; i++) y[i] = (gate[i] * (1.0f / (1.0f + expf(-gate[i])))) * up[i];
}

void dk_swiglu_backward(const float *gate, const float *up, const float *g, float *dgate, float *dup, long n) {
#if defined(__x86_64__)
    if (dk_rows_avx512()) { swiglu_backward_avx512(gate, up, g, dgate, dup, n); return; }
    if (has_avx2_fma()) { swiglu_backward_avx2(gate, up, g, dgate, dup, n); return; }
#endif
    for (long i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-gate[i]));
        if (dup) dup[i] = g[i] * (gate[i] * s);
        if (dgate) dgate[i] = (g[i] * up[i]) * s * (1.0f + gate[i] * (1.0f - s));
    }
}

#if defined(__x86_64__)
static int rowsForceAVX2 = 0;
void dk_rows_force_avx2(int on) { rowsForceAVX2 = on; }
int dk_rows_avx512(void) {
    static int has = -1;
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && has_avx2_fma();
    }
    return has && !rowsForceAVX2;
}
#else
void dk_rows_force_avx2(int on) { (void)on; }
int dk_rows_avx512(void) { return 0; }
#endif

void dk_vexp(const float *x, float *y, long n) {
#if defined(__x86_64__)
    if (dk_rows_avx512()) { vexp_avx512(x, y, n); return; }
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
    double s = 0;
    long i = 0;
#if defined(__x86_64__)
    if (dk_rows_avx512()) s = sum_exp_avx512(x, n, scale, shift, out, &i);
    else if (has_avx2_fma()) s = sum_exp_avx2(x, n, scale, shift, out, &i);
#endif
    for (; i < n; i++) {
        float e = expf(x[i] * scale - shift);
        if (out) out[i] = e;
        s += e;
    }
    return s;
}

void dk_exp_affine(const float *x, long n, float scale, float shift, float alpha, float beta, float *y) {
#if defined(__x86_64__)
    if (dk_rows_avx512()) { exp_affine_avx512(x, n, scale, shift, alpha, beta, y); return; }
    if (has_avx2_fma()) { exp_affine_avx2(x, n, scale, shift, alpha, beta, y); return; }
#endif
    for (long i = 0; i < n; i++) y[i] = alpha * expf(x[i] * scale - shift) + beta;
}

void dk_silu(const float *x, float *y, long n) {
#if defined(__x86_64__)
    if (dk_rows_avx512()) { silu_avx512(x, y, n); return; }
    if (has_avx2_fma()) { silu_avx2(x, y, n); return; }
#endif
    for (long i = 0; i < n; i++) y[i] = x[i] * (1.0f / (1.0f + expf(-x[i])));
}

void dk_silu_backward(const float *x, const float *g, float *dx, long n) {
#if defined(__x86_64__)
    if (dk_rows_avx512()) { silu_backward_avx512(x, g, dx, n); return; }
    if (has_avx2_fma()) { silu_backward_avx2(x, g, dx, n); return; }
#endif
    for (long i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-x[i]));
        dx[i] = g[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}
