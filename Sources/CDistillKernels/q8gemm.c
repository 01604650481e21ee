// The fast option's products of several input rows (batched decoding, prompts) with AVX-512
// VNNI: weights Q4_0, Q4_1 or Q8_0 times activations quantized to int8 per block of 32
// (dk_quantize_q8_blocks), as a GEMM whose vector lanes are 16 weight rows. The one-row kernel
// (qgemv.c) puts a block's 32 values across the lanes and adds them up at the end; for several
// rows that costs more than the products (this kernel measured 1.3x as fast for 2 input rows,
// 2x for 8 and 4x for 40 on Zen 4, Q4_1 1536 x 576, one core).
//
// A sliver of 16 weight rows is repacked once per call, block by block, as 8 vectors of 64 bytes:
// vector t holds, for each of the 16 rows, that row's values 4t..4t+3 (unsigned bytes: Q4's
// nibbles 0..15; Q8_0's w + 128), followed by the 16 rows' scales d_w and (Q4_1) minimums m_w as
// Float32. One VPDPBUSD then multiplies vector t by an input row's 4 activations 4t..4t+3
// (broadcast) and adds each row's four products into its lane; 8 of them give a block's
// Σ n·q for 16 rows, exact in int32, which is scaled once:
//   Q4_0: d_w·d_x·(Σ n q − 8 Σ q)     Q8_0: d_w·d_x·(Σ (w + 128) q − 128 Σ q)
//   Q4_1: d_w·d_x·Σ n q + m_w·d_x·Σ q
// (the offsets − 8 Σ q and − 128 Σ q start the int32 sum, so they are exact). The same
// arithmetic as the matrix-vector kernels, rounded in another order: blocks are added in order,
// each with one FMA.
#include "CDistillKernels.h"
#include "simd.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// Bytes of one packed block of a sliver: 8 x 64 value bytes, 16 scales, 16 minimums.
#define PACKED_BLOCK (8 * 64 + 16 * 4 + 16 * 4)

#if defined(__x86_64__)
#define Q8GEMM_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")))

static float half_bits_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {   // subnormal: normalise
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) { mant <<= 1; exp--; }
            bits = sign | (exp << 23) | ((mant & 0x3FF) << 13);
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

// Block b of rows r0..<r0 + 16 (rows from `end` on as zeros) packed one value at a time: a
// partial sliver (a matrix's last rows, a caller's range that is not a multiple of 16).
static void pack_block_scalar(int type, const uint8_t *W, long rowBytes, long end, long r0, long b, uint8_t *dst) {
    const long bb = dk_qblock_bytes(type);
    float *d = (float *)(dst + 512), *c = d + 16;
    for (int j = 0; j < 16; j++) {
        const uint8_t *w = r0 + j < end ? W + (r0 + j) * rowBytes + b * bb : NULL;
        for (int v = 0; v < 32; v++) {
            uint8_t n = 0;
            if (w && type == DK_Q8_0) n = (uint8_t)(w[2 + v] ^ 0x80);
            else if (w) n = v < 16 ? (w[(type == DK_Q4_1 ? 4 : 2) + v] & 0x0F) : (w[(type == DK_Q4_1 ? 4 : 2) + v - 16] >> 4);
            dst[(v / 4) * 64 + j * 4 + v % 4] = n;
        }
        d[j] = w ? half_bits_to_float((uint16_t)(w[0] | (w[1] << 8))) : 0.0f;
        c[j] = w && type == DK_Q4_1 ? half_bits_to_float((uint16_t)(w[2] | (w[3] << 8))) : 0.0f;
    }
}

// Block b of 16 whole rows packed with vector instructions: each pair of rows' 32 values loaded as
// one 512-bit vector (row 2p in the low half), then the 16 x 8 matrix of 4-byte groups transposed
// into 8 x 16 in three rounds of two-register permutes (8 rows x 4 groups, 8 x 2, then 16 x 1).
Q8GEMM_TARGET
static void pack_block(int type, const uint8_t *W, long rowBytes, long r0, long b, uint8_t *dst) {
    const long bb = dk_qblock_bytes(type);
    const uint8_t *w0 = W + r0 * rowBytes + b * bb;
    __m512i z[8];
    for (int p = 0; p < 8; p++) {
        const uint8_t *a = w0 + 2 * p * rowBytes, *c = a + rowBytes;
        if (type == DK_Q8_0) {
            __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a + 2))),
                                           _mm256_loadu_si256((const __m256i *)(c + 2)), 1);
            z[p] = _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
        } else {
            const long at = type == DK_Q4_1 ? 4 : 2;
            __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(a + at))),
                                                   _mm_loadu_si128((const __m128i *)(c + at)), 1);
            // [a, a, c, c] by 128-bit lanes; the second copy of each shifted right by 4 (its high nibbles).
            __m512i rep = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), _mm512_castsi256_si512(both));
            __m512i shift = _mm512_setr_epi64(0, 0, 0x0004000400040004LL, 0x0004000400040004LL, 0, 0,
                                              0x0004000400040004LL, 0x0004000400040004LL);
            z[p] = _mm512_and_si512(_mm512_srlv_epi16(rep, shift), _mm512_set1_epi8(0x0F));
        }
    }
    // Round 1: a[q][h], lane 4·tt + rr = row 4q + rr's group 4h + tt.
    __m512i a[4][2], s[2][2][2];
    for (int h = 0; h < 2; h++) {
        int idx[16];
        for (int tt = 0; tt < 4; tt++)
            for (int rr = 0; rr < 4; rr++) idx[tt * 4 + rr] = (rr >> 1) * 16 + 8 * (rr & 1) + 4 * h + tt;
        __m512i ix = _mm512_loadu_si512(idx);
        for (int q = 0; q < 4; q++) a[q][h] = _mm512_permutex2var_epi32(z[2 * q], ix, z[2 * q + 1]);
    }
    // Round 2: s[g][h][e], lane 8·u + rrr = row 8g + rrr's group 4h + 2e + u.
    for (int e = 0; e < 2; e++) {
        int idx[16];
        for (int u = 0; u < 2; u++)
            for (int rrr = 0; rrr < 8; rrr++) idx[u * 8 + rrr] = (rrr >> 2) * 16 + (2 * e + u) * 4 + (rrr & 3);
        __m512i ix = _mm512_loadu_si512(idx);
        for (int g = 0; g < 2; g++)
            for (int h = 0; h < 2; h++) s[g][h][e] = _mm512_permutex2var_epi32(a[2 * g][h], ix, a[2 * g + 1][h]);
    }
    // Round 3: group t = 4h + 2e + u, lane j = row j.
    for (int u = 0; u < 2; u++) {
        int idx[16];
        for (int j = 0; j < 16; j++) idx[j] = (j >> 3) * 16 + u * 8 + (j & 7);
        __m512i ix = _mm512_loadu_si512(idx);
        for (int h = 0; h < 2; h++)
            for (int e = 0; e < 2; e++)
                _mm512_storeu_si512(dst + (4 * h + 2 * e + u) * 64, _mm512_permutex2var_epi32(s[0][h][e], ix, s[1][h][e]));
    }
    // The scales (and Q4_1's minimums): the first 4 bytes of each row's block, as float16 pairs.
    __m512i rowsAt = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                        _mm512_set1_epi32((int)rowBytes));
    __m512i head = _mm512_i32gather_epi32(rowsAt, (const void *)w0, 1);
    _mm512_storeu_ps(dst + 512, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(head)));
    _mm512_storeu_ps(dst + 576, type == DK_Q4_1 ? _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(head, 16)))
                                                : _mm512_setzero_ps());
}

// Y[i0 + i][r0 ..< r0 + 16] (lanes `keep`) for MI ≤ 8 input rows (a constant where inlined:
// the tile's accumulators stay in registers only when its loops unroll).
Q8GEMM_TARGET __attribute__((always_inline))
static inline void tile(int type, const int MI, const uint8_t *P, long blocks, const int8_t *Q, const float *D,
                        const int32_t *S, long i0, float *Y, long ldy, long r0, __mmask16 keep) {
    const int off = type == DK_Q4_0 ? 8 : type == DK_Q8_0 ? 128 : 0;
    __m512 acc[8];
    UNROLL for (int i = 0; i < MI; i++) acc[i] = _mm512_setzero_ps();
    for (long b = 0; b < blocks; b++) {
        const uint8_t *pb = P + b * PACKED_BLOCK;
        __m512i dot[8];
        UNROLL for (int i = 0; i < MI; i++) dot[i] = _mm512_set1_epi32(-off * S[(i0 + i) * blocks + b]);
        UNROLL for (int t = 0; t < 8; t++) {
            const __m512i w = _mm512_loadu_si512((const void *)(pb + t * 64));
            UNROLL for (int i = 0; i < MI; i++) {
                int32_t x4;
                memcpy(&x4, Q + ((i0 + i) * blocks + b) * 32 + 4 * t, 4);
                dot[i] = _mm512_dpbusd_epi32(dot[i], w, _mm512_set1_epi32(x4));
            }
        }
        const __m512 dw = _mm512_loadu_ps((const float *)(pb + 512)), mw = _mm512_loadu_ps((const float *)(pb + 576));
        UNROLL for (int i = 0; i < MI; i++) {
            const long k = (i0 + i) * blocks + b;
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[i]), _mm512_mul_ps(dw, _mm512_set1_ps(D[k])), acc[i]);
            if (type == DK_Q4_1) acc[i] = _mm512_fmadd_ps(mw, _mm512_set1_ps(D[k] * (float)S[k]), acc[i]);
        }
    }
    UNROLL for (int i = 0; i < MI; i++) _mm512_mask_storeu_ps(Y + (i0 + i) * ldy + r0, keep, acc[i]);
}

Q8GEMM_TARGET __attribute__((always_inline))
static inline void slivers(int type, const uint8_t *W, long cols, const int8_t *Q, const float *D,
                           const int32_t *S, long m, float *Y, long ldy, long row0, long row1, uint8_t *P) {
    const long blocks = cols / 32, rowBytes = blocks * dk_qblock_bytes(type);
    for (long r0 = row0; r0 < row1; r0 += 16) {
        const long n = row1 - r0 < 16 ? row1 - r0 : 16;
        for (long b = 0; b < blocks; b++) {
            if (n == 16) pack_block(type, W, rowBytes, r0, b, P + b * PACKED_BLOCK);
            else pack_block_scalar(type, W, rowBytes, row1, r0, b, P + b * PACKED_BLOCK);
        }
        const __mmask16 keep = (__mmask16)((1u << n) - 1);
        long i0 = 0;
        for (; i0 + 8 <= m; i0 += 8) tile(type, 8, P, blocks, Q, D, S, i0, Y, ldy, r0, keep);
        switch (m - i0) {
        case 1: tile(type, 1, P, blocks, Q, D, S, i0, Y, ldy, r0, keep); break;
        case 2: tile(type, 2, P, blocks, Q, D, S, i0, Y, ldy, r0, keep); break;
        case 3: tile(type, 3, P, blocks, Q, D, S, i0, Y, ldy, r0, keep); break;
        case 4: tile(type, 4, P, blocks, Q, D, S, i0, Y, ldy, r0, keep); break;
        case 5: tile(type, 5, P, blocks, Q, D, S, i0, Y, ldy, r0, keep); break;
        case 6: tile(type, 6, P, blocks, Q, D, S, i0, Y, ldy, r0, keep); break;
        case 7: tile(type, 7, P, blocks, Q, D, S, i0, Y, ldy, r0, keep); break;
        default: break;
        }
    }
}

int dk_q8_vnni_available(void) {
    static int has = -1;
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
            && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
    }
    return has;
}

Q8GEMM_TARGET
void dk_q8gemm(int type, const void *W, long cols, const int8_t *Q, const float *D, const int32_t *S,
               long m, float *Y, long ldy, long row0, long row1) {
    uint8_t *P = (uint8_t *)malloc((size_t)(cols / 32 * PACKED_BLOCK));
    const uint8_t *w = (const uint8_t *)W;
    // One copy of the loops per block type (its branches fold away).
    switch (type) {
    case DK_Q4_0: slivers(DK_Q4_0, w, cols, Q, D, S, m, Y, ldy, row0, row1, P); break;
    case DK_Q4_1: slivers(DK_Q4_1, w, cols, Q, D, S, m, Y, ldy, row0, row1, P); break;
    default: slivers(DK_Q8_0, w, cols, Q, D, S, m, Y, ldy, row0, row1, P); break;
    }
    free(P);
}
#else
int dk_q8_vnni_available(void) { return 0; }
void dk_q8gemm(int type, const void *W, long cols, const int8_t *Q, const float *D, const int32_t *S,
               long m, float *Y, long ldy, long row0, long row1) {
    (void)type; (void)W; (void)cols; (void)Q; (void)D; (void)S; (void)m; (void)Y; (void)ldy; (void)row0; (void)row1;
}
#endif
