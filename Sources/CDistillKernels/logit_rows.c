// One row of the distillation loss over a vocabulary: the forward KL between the teacher's and the
// student's temperature softmax, the cross-entropy against a target, and the gradient of their
// weighted sum with respect to the student's logits, in a few vectorised passes over the row.
// The arithmetic follows the Swift row kernels of the Distillation module (ChunkedLoss.swift)
// operation by operation — log-probabilities (x·(1/τ) − max) − log Σ, sums in Double — so only
// the exponential's last bits differ (see exp.c).
#include "CDistillKernels.h"
#include "simd.h"
#include <math.h>
#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__)
// log p = (x·it − max) − logsum for 8 lanes.
__attribute__((target("avx2,fma")))
static inline __m256 log_prob8(const float *x, __m256 it, __m256 max, __m256 log_sum) {
    return _mm256_sub_ps(_mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(x), it), max), log_sum);
}

// The vector part of forward_kl; sets *done to the elements it covered (and p_t there into pt
// unless it is NULL).
__attribute__((target("avx2,fma")))
static double forward_kl_avx2(const float *z, const float *t, long v, float it, float ma, float la, float mb, float lb,
                              float *pt_out, long *done) {
    const __m256 vit = _mm256_set1_ps(it), vma = _mm256_set1_ps(ma), vla = _mm256_set1_ps(la), vmb = _mm256_set1_ps(mb), vlb = _mm256_set1_ps(lb);
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    long j = 0;
    for (; j + 8 <= v; j += 8) {
        __m256 ls = log_prob8(z + j, vit, vma, vla), lt = log_prob8(t + j, vit, vmb, vlb), pt = exp8(lt);
        if (pt_out) _mm256_storeu_ps(pt_out + j, pt);
        __m128 ls0 = _mm256_castps256_ps128(ls), ls1 = _mm256_extractf128_ps(ls, 1);
        __m128 lt0 = _mm256_castps256_ps128(lt), lt1 = _mm256_extractf128_ps(lt, 1);
        __m128 pt0 = _mm256_castps256_ps128(pt), pt1 = _mm256_extractf128_ps(pt, 1);
        a0 = _mm256_add_pd(a0, _mm256_mul_pd(_mm256_cvtps_pd(pt0), _mm256_sub_pd(_mm256_cvtps_pd(lt0), _mm256_cvtps_pd(ls0))));
        a1 = _mm256_add_pd(a1, _mm256_mul_pd(_mm256_cvtps_pd(pt1), _mm256_sub_pd(_mm256_cvtps_pd(lt1), _mm256_cvtps_pd(ls1))));
    }
    *done = j;
    return hsum256d(_mm256_add_pd(a0, a1));
}

// The vector part of the gradient; returns the elements it covered. p_t is read from pt (forward_kl's,
// the same values to the bit) unless pt is NULL.
__attribute__((target("avx2,fma")))
static long gradient_avx2(const float *z, const float *t, long v, float it, float soft, float hard, float ma, float la,
                          float mb, float lb, float m1, float l1, float uniform, const float *pt, float *grad) {
    const __m256 vit = _mm256_set1_ps(it), vma = _mm256_set1_ps(ma), vla = _mm256_set1_ps(la), vmb = _mm256_set1_ps(mb),
                 vlb = _mm256_set1_ps(lb), vm1 = _mm256_set1_ps(m1), vl1 = _mm256_set1_ps(l1), one = _mm256_set1_ps(1.0f),
                 vs = _mm256_set1_ps(soft), vh = _mm256_set1_ps(hard), vu = _mm256_set1_ps(uniform);
    long j = 0;
    for (; j + 8 <= v; j += 8) {
        __m256 g = _mm256_setzero_ps();
        if (soft != 0)
            g = _mm256_mul_ps(vs, _mm256_sub_ps(exp8(log_prob8(z + j, vit, vma, vla)),
                                                pt ? _mm256_loadu_ps(pt + j) : exp8(log_prob8(t + j, vit, vmb, vlb))));
        if (hard != 0)
            g = _mm256_add_ps(g, _mm256_mul_ps(vh, _mm256_sub_ps(exp8(log_prob8(z + j, one, vm1, vl1)), vu)));
        _mm256_storeu_ps(grad + j, g);
    }
    return j;
}
#endif

#if defined(__x86_64__)
// The same on 16 lanes, with the AVX2 kernels' bits: exp16 is exp8 lane by lane and the Double
// sums keep their 8 lanes.

DK_AVX512_TARGET
static inline __m512 log_prob16(const float *x, __mmask16 k, __m512 it, __m512 max, __m512 log_sum) {
    return _mm512_sub_ps(_mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, x), it), max), log_sum);
}

DK_AVX512_TARGET
static double forward_kl_avx512(const float *z, const float *t, long v, float it, float ma, float la, float mb, float lb,
                                float *pt_out, long *done) {
    const __m512 vit = _mm512_set1_ps(it), vma = _mm512_set1_ps(ma), vla = _mm512_set1_ps(la), vmb = _mm512_set1_ps(mb), vlb = _mm512_set1_ps(lb);
    const long v8 = v & ~7L;
    __m512d acc = _mm512_setzero_pd();
    for (long j = 0; j < v8; j += 16) {
        const __mmask16 k = dk_lanes_left(j, v8);
        __m512 ls = log_prob16(z + j, k, vit, vma, vla), lt = log_prob16(t + j, k, vit, vmb, vlb), pt = exp16(lt);
        if (pt_out) _mm512_mask_storeu_ps(pt_out + j, k, pt);
        for (int h = 0; h < (k == 0xFFFF ? 2 : 1); h++) {      // lanes 0-7, then 8-15
            __m256 ls8 = h ? _mm512_extractf32x8_ps(ls, 1) : _mm512_castps512_ps256(ls);
            __m256 lt8 = h ? _mm512_extractf32x8_ps(lt, 1) : _mm512_castps512_ps256(lt);
            __m256 pt8 = h ? _mm512_extractf32x8_ps(pt, 1) : _mm512_castps512_ps256(pt);
            acc = _mm512_add_pd(acc, _mm512_mul_pd(_mm512_cvtps_pd(pt8), _mm512_sub_pd(_mm512_cvtps_pd(lt8), _mm512_cvtps_pd(ls8))));
        }
    }
    *done = v8;
    return hsum512d_as_avx2(acc);
}

DK_AVX512_TARGET
static long gradient_avx512(const float *z, const float *t, long v, float it, float soft, float hard, float ma, float la,
                            float mb, float lb, float m1, float l1, float uniform, const float *pt, float *grad) {
    const __m512 vit = _mm512_set1_ps(it), vma = _mm512_set1_ps(ma), vla = _mm512_set1_ps(la), vmb = _mm512_set1_ps(mb),
                 vlb = _mm512_set1_ps(lb), vm1 = _mm512_set1_ps(m1), vl1 = _mm512_set1_ps(l1), one = _mm512_set1_ps(1.0f),
                 vs = _mm512_set1_ps(soft), vh = _mm512_set1_ps(hard), vu = _mm512_set1_ps(uniform);
    const long v8 = v & ~7L;
    for (long j = 0; j < v8; j += 16) {
        const __mmask16 k = dk_lanes_left(j, v8);
        __m512 g = _mm512_setzero_ps();
        if (soft != 0)
            g = _mm512_mul_ps(vs, _mm512_sub_ps(exp16(log_prob16(z + j, k, vit, vma, vla)),
                                                pt ? _mm512_maskz_loadu_ps(k, pt + j) : exp16(log_prob16(t + j, k, vit, vmb, vlb))));
        if (hard != 0)
            g = _mm512_add_ps(g, _mm512_mul_ps(vh, _mm512_sub_ps(exp16(log_prob16(z + j, k, one, vm1, vl1)), vu)));
        _mm512_mask_storeu_ps(grad + j, k, g);
    }
    return v8;
}
#endif

// max over x·scale (scale > 0: x_max, the maximum of x, scaled), 0 when not finite, and
// log Σ exp(x·scale − max).
static void log_sum_exp(const float *x, long n, float x_max, float scale, float *max, float *log_sum) {
    float m = x_max * scale;
    if (!isfinite(m)) m = 0;
    *max = m;
    *log_sum = (float)log(dk_sum_exp(x, n, scale, m, NULL));
}

// Σ p_t·(log p_t − log p_s) in Double, log p = (x·it − max) − logsum; p_t into pt_out unless NULL.
static double forward_kl(const float *z, const float *t, long v, float it, float ma, float la, float mb, float lb,
                         float *pt_out) {
    long j = 0;
    double s = 0;
#if defined(__x86_64__)
    if (dk_rows_avx512()) s = forward_kl_avx512(z, t, v, it, ma, la, mb, lb, pt_out, &j);
    else if (has_avx2_fma()) s = forward_kl_avx2(z, t, v, it, ma, la, mb, lb, pt_out, &j);
#endif
    for (; j < v; j++) {
        float ls = (z[j] * it - ma) - la, lt = (t[j] * it - mb) - lb, pt = expf(lt);
        if (pt_out) pt_out[j] = pt;
        s += (double)pt * ((double)lt - (double)ls);
    }
    return s;
}

void dk_kd_row(const float *z, const float *t, long v, float inv_tau, float soft, float hard, long target, float eps,
               double *kl, double *ce, float *grad) {
    float ma = 0, la = 0, mb = 0, lb = 0, m1 = 0, l1 = 0;
    *kl = 0;
    *ce = 0;
    // The teacher's probabilities, computed for the divergence, are kept in grad for the gradient
    // (one exponential per value fewer), unless grad is where z or t is read from.
    float *pt = grad && soft != 0 && grad != z && grad != t ? grad : NULL;
    const float z_max = t || target >= 0 ? dk_vmax(z, v) : 0;      // one pass for both temperatures
    if (t) {
        log_sum_exp(z, v, z_max, inv_tau, &ma, &la);
        log_sum_exp(t, v, dk_vmax(t, v), inv_tau, &mb, &lb);
        *kl = forward_kl(z, t, v, inv_tau, ma, la, mb, lb, pt);
    } else {
        pt = NULL;
    }
    if (target >= 0) {
        log_sum_exp(z, v, z_max, 1.0f, &m1, &l1);
        double nll = (double)(m1 - z[target]) + (double)l1, smooth = 0;
        if (eps != 0) {
            double shifted = 0;
            for (long j = 0; j < v; j++) shifted += (double)(z[j] - m1);
            smooth = (double)l1 - shifted / (double)v;
        }
        *ce = (1 - (double)eps) * nll + (double)eps * smooth;
    }
    if (!grad) return;
    if (!t) soft = 0;
    if (target < 0) hard = 0;
    float uniform = eps / (float)v;
    long j = 0;
#if defined(__x86_64__)
    if (dk_rows_avx512()) j = gradient_avx512(z, t, v, inv_tau, soft, hard, ma, la, mb, lb, m1, l1, uniform, pt, grad);
    else if (has_avx2_fma()) j = gradient_avx2(z, t, v, inv_tau, soft, hard, ma, la, mb, lb, m1, l1, uniform, pt, grad);
#endif
    for (; j < v; j++) {
        float zj = z[j], g = 0;
        if (soft != 0) g = soft * (expf((zj * inv_tau - ma) - la) - (pt ? pt[j] : expf((t[j] * inv_tau - mb) - lb)));
        if (hard != 0) g += hard * (expf((zj - m1) - l1) - uniform);
        grad[j] = g;
    }
    if (hard != 0) grad[target] -= hard * (1 - eps);     // the target's one-hot part
}
