// The fast option's products, any number of input rows: weights Q4_0, Q4_1 or Q8_0 times
// activations quantized to int8 per block of 32 (dk_quantize_q8_blocks), as a GEMM whose vector
// lanes are weight rows. The matrix is repacked once (dk_q8_pack) into slivers of 16 rows: per
// block, 64-byte vector t holds each of the 16 rows' weight bytes 4t..4t+3 — Q4: the block's
// nibble bytes, whose low nibbles are values 4t..4t+3 and high nibbles values 16+4t..16+4t+3;
// Q8_0: the values plus 128, as unsigned bytes — followed by the 16 rows' float16 scales d_w
// (and Q4_1's minimums m_w). The packed matrix is as large as the blocks it came from.
//
// With AVX-512 VNNI one VPDPBUSD multiplies a vector of weight bytes by an input row's 4
// activations (broadcast) and adds each row's four products into its lane; 8 of them give a
// block's Σ n·q for 16 rows, exact in int32, which is scaled once:
//   Q4_0: d_w·d_x·(Σ n q − 8 Σ q)     Q8_0: d_w·d_x·(Σ (w + 128) q − 128 Σ q)
//   Q4_1: d_w·d_x·Σ n q + m_w·d_x·Σ q
// (the offsets − 8 Σ q and − 128 Σ q start the int32 sum, so they are exact). AVX2 and AVX-VNNI
// take the same steps on halves of 8 rows (below). The portable kernel's arithmetic (qgemv.c),
// rounded in another order: blocks added in order, one FMA each; a row's results do not depend on
// the kernel, the other input rows or how the rows are split. A decoding step takes ~35
// instructions per block of 16 rows with AVX-512 VNNI, where the row-by-row kernels this
// replaced spent ~18 on each row's block.
#include "CDistillKernels.h"
#include "simd.h"
#include <stdint.h>
#include <string.h>

// Bytes of one packed block of a 16-row sliver: the weight bytes (Q4: 4 vectors of nibble bytes;
// Q8_0: 8 vectors of bytes), then 16 float16 scales, then (Q4_1) 16 float16 minimums.
static long packed_block_bytes(int type) {
    return type == DK_Q8_0 ? 8 * 64 + 32 : type == DK_Q4_1 ? 4 * 64 + 64 : 4 * 64 + 32;
}

long dk_q8_packed_bytes(int type, long rows, long cols) {
    return (rows + 15) / 16 * (cols / 32) * packed_block_bytes(type);
}

// Block b of rows r0..<r0 + 16 (rows from `end` on as zeros) packed one byte at a time: a
// matrix's last, partial sliver, and every sliver on CPUs without AVX2 (1.3–1.9 GB/s of blocks on
// one Zen 4 core; the AVX2 and AVX-512 packings 13 GB/s).
static void pack_block_scalar(int type, const uint8_t *W, long rowBytes, long end, long r0, long b, uint8_t *dst) {
    const long bb = dk_qblock_bytes(type), groups = type == DK_Q8_0 ? 8 : 4;
    uint8_t *h = dst + groups * 64;
    for (int j = 0; j < 16; j++) {
        const uint8_t *w = r0 + j < end ? W + (r0 + j) * rowBytes + b * bb : NULL;
        for (int v = 0; v < groups * 4; v++) {
            uint8_t n = 0;
            if (w) n = type == DK_Q8_0 ? (uint8_t)(w[2 + v] ^ 0x80) : w[(type == DK_Q4_1 ? 4 : 2) + v];
            dst[(v / 4) * 64 + j * 4 + v % 4] = n;
        }
        for (int k = 0; k < (type == DK_Q4_1 ? 2 : 1); k++) {   // float16 d (and m), little-endian
            h[32 * k + 2 * j] = w ? w[2 * k] : 0;
            h[32 * k + 2 * j + 1] = w ? w[2 * k + 1] : 0;
        }
    }
}

static void pack_slivers_scalar(int type, const uint8_t *W, long rows, long cols, uint8_t *P, long s0, long s1) {
    const long blocks = cols / 32, rowBytes = blocks * dk_qblock_bytes(type), pb = packed_block_bytes(type);
    for (long s = s0; s < s1; s++)
        for (long b = 0; b < blocks; b++) pack_block_scalar(type, W, rowBytes, rows, 16 * s, b, P + (s * blocks + b) * pb);
}

#if defined(__x86_64__)
#define Q8GEMM_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")))

// An index vector of _mm512_permutex2var_epi32 (lane → source lane; 16 and up: the second register).
Q8GEMM_TARGET static inline __m512i lanes(const int *idx) { return _mm512_loadu_si512((const void *)idx); }

// Block b of 16 whole rows packed with vector instructions: the 16 rows x G groups of 4 bytes
// (G = 8 for Q8_0, 4 for Q4's nibble bytes) loaded with 32/G rows per register, then transposed
// into G registers of 16 lanes by three or two rounds of two-register permutes.
Q8GEMM_TARGET
static void pack_block(int type, const uint8_t *W, long rowBytes, long r0, long b, uint8_t *dst) {
    const long bb = dk_qblock_bytes(type);
    const uint8_t *w0 = W + r0 * rowBytes + b * bb;
    int idx[16];
    if (type == DK_Q8_0) {
        // z[p]: rows 2p and 2p + 1 (8 groups each), plus 128.
        __m512i z[8], a[4][2], s[2][2][2];
        for (int p = 0; p < 8; p++) {
            const uint8_t *r = w0 + 2 * p * rowBytes + 2;
            __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)r)),
                                           _mm256_loadu_si256((const __m256i *)(r + rowBytes)), 1);
            z[p] = _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
        }
        // a[q][h], lane 4·tt + rr = row 4q + rr's group 4h + tt.
        for (int h = 0; h < 2; h++) {
            for (int tt = 0; tt < 4; tt++)
                for (int rr = 0; rr < 4; rr++) idx[tt * 4 + rr] = (rr >> 1) * 16 + 8 * (rr & 1) + 4 * h + tt;
            for (int q = 0; q < 4; q++) a[q][h] = _mm512_permutex2var_epi32(z[2 * q], lanes(idx), z[2 * q + 1]);
        }
        // s[g][h][e], lane 8·u + rrr = row 8g + rrr's group 4h + 2e + u.
        for (int e = 0; e < 2; e++) {
            for (int u = 0; u < 2; u++)
                for (int rrr = 0; rrr < 8; rrr++) idx[u * 8 + rrr] = (rrr >> 2) * 16 + (2 * e + u) * 4 + (rrr & 3);
            for (int g = 0; g < 2; g++)
                for (int h = 0; h < 2; h++) s[g][h][e] = _mm512_permutex2var_epi32(a[2 * g][h], lanes(idx), a[2 * g + 1][h]);
        }
        // Group t = 4h + 2e + u, lane j = row j.
        for (int u = 0; u < 2; u++) {
            for (int j = 0; j < 16; j++) idx[j] = (j >> 3) * 16 + u * 8 + (j & 7);
            for (int h = 0; h < 2; h++)
                for (int e = 0; e < 2; e++)
                    _mm512_storeu_si512(dst + (4 * h + 2 * e + u) * 64, _mm512_permutex2var_epi32(s[0][h][e], lanes(idx), s[1][h][e]));
        }
    } else {
        // z[q]: rows 4q..4q + 3's 16 nibble bytes, lane 4·rr + tt = row 4q + rr's group tt.
        const long at = type == DK_Q4_1 ? 4 : 2;
        __m512i z[4], s[2][2];
        for (int q = 0; q < 4; q++) {
            const uint8_t *r = w0 + 4 * q * rowBytes + at;
            __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)r));
            v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(r + rowBytes)), 1);
            v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(r + 2 * rowBytes)), 2);
            z[q] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(r + 3 * rowBytes)), 3);
        }
        // s[g][e], lane 8·u + rrr = row 8g + rrr's group 2e + u.
        for (int e = 0; e < 2; e++) {
            for (int u = 0; u < 2; u++)
                for (int rrr = 0; rrr < 8; rrr++) idx[u * 8 + rrr] = (rrr >> 2) * 16 + 4 * (rrr & 3) + 2 * e + u;
            for (int g = 0; g < 2; g++) s[g][e] = _mm512_permutex2var_epi32(z[2 * g], lanes(idx), z[2 * g + 1]);
        }
        // Group t = 2e + u, lane j = row j.
        for (int u = 0; u < 2; u++) {
            for (int j = 0; j < 16; j++) idx[j] = (j >> 3) * 16 + u * 8 + (j & 7);
            for (int e = 0; e < 2; e++) _mm512_storeu_si512(dst + (2 * e + u) * 64, _mm512_permutex2var_epi32(s[0][e], lanes(idx), s[1][e]));
        }
    }
    // The scales (and Q4_1's minimums): the first 4 bytes of each row's block, float16 pairs.
    __m512i rowsAt = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                        _mm512_set1_epi32((int)rowBytes));
    __m512i head = _mm512_i32gather_epi32(rowsAt, (const void *)w0, 1);
    uint8_t *h = dst + (type == DK_Q8_0 ? 8 : 4) * 64;
    _mm256_storeu_si256((__m256i *)h, _mm512_cvtepi32_epi16(head));
    if (type == DK_Q4_1) _mm256_storeu_si256((__m256i *)(h + 32), _mm512_cvtepi32_epi16(_mm512_srli_epi32(head, 16)));
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

// Block b of 16 whole rows packed with AVX2: for each half of 8 rows, each register holds 4 bytes
// groups of rows k and k + 4 (128-bit lanes), transposed 4 x 4 within the lanes by 32- and 64-bit
// unpacks — groups 0..3, then (Q8_0) 4..7.
__attribute__((target("avx2")))
static void pack_block_avx2(int type, const uint8_t *W, long rowBytes, long r0, long b, uint8_t *dst) {
    const long bb = dk_qblock_bytes(type), at = type == DK_Q8_0 ? 2 : type == DK_Q4_1 ? 4 : 2;
    const uint8_t *w0 = W + r0 * rowBytes + b * bb;
    const int sets = type == DK_Q8_0 ? 2 : 1;
    for (int half = 0; half < 2; half++) {
        for (int set = 0; set < sets; set++) {
            __m256i v[4];
            for (int k = 0; k < 4; k++) {
                const uint8_t *r = w0 + (8 * half + k) * rowBytes + at + 16 * set;
                v[k] = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)r)),
                                               _mm_loadu_si128((const __m128i *)(r + 4 * rowBytes)), 1);
            }
            const __m256i t0 = _mm256_unpacklo_epi32(v[0], v[1]), t1 = _mm256_unpackhi_epi32(v[0], v[1]);
            const __m256i t2 = _mm256_unpacklo_epi32(v[2], v[3]), t3 = _mm256_unpackhi_epi32(v[2], v[3]);
            __m256i g[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
                            _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
            for (int t = 0; t < 4; t++) {
                if (type == DK_Q8_0) g[t] = _mm256_xor_si256(g[t], _mm256_set1_epi8((char)0x80));
                _mm256_storeu_si256((__m256i *)(dst + (4 * set + t) * 64 + 32 * half), g[t]);
            }
        }
    }
    uint8_t *h = dst + (type == DK_Q8_0 ? 8 : 4) * 64;
    for (int j = 0; j < 16; j++) {
        memcpy(h + 2 * j, w0 + j * rowBytes, 2);
        if (type == DK_Q4_1) memcpy(h + 32 + 2 * j, w0 + j * rowBytes + 2, 2);
    }
}

void dk_q8_pack_with(int isa, int type, const void *W, long rows, long cols, void *P, long s0, long s1) {
    const long blocks = cols / 32, rowBytes = blocks * dk_qblock_bytes(type), pb = packed_block_bytes(type);
    const uint8_t *w = (const uint8_t *)W;
    uint8_t *out = (uint8_t *)P;
    if ((isa == 2 && !dk_q8_vnni_available()) || (isa == 1 && !has_avx2_fma())) isa = 0;
    for (long s = s0; s < s1; s++) {
        if (isa == 0 || 16 * s + 16 > rows) { pack_slivers_scalar(type, w, rows, cols, out, s, s + 1); continue; }
        for (long b = 0; b < blocks; b++) {
            if (isa == 2) pack_block(type, w, rowBytes, 16 * s, b, out + (s * blocks + b) * pb);
            else pack_block_avx2(type, w, rowBytes, 16 * s, b, out + (s * blocks + b) * pb);
        }
    }
}


// Y[i0 + i][r0 ..< r0 + 16] (lanes `keep`) for MI ≤ 8 input rows of the packed sliver P (MI a
// constant where inlined: the tile's accumulators stay in registers only when its loops unroll).
Q8GEMM_TARGET __attribute__((always_inline))
static inline void tile(int type, const int MI, const uint8_t *P, long blocks, const int8_t *Q, const float *D,
                        const int32_t *S, long i0, float *Y, long ldy, long r0, __mmask16 keep) {
    const int off = type == DK_Q4_0 ? 8 : type == DK_Q8_0 ? 128 : 0;
    const long pb = packed_block_bytes(type), scales = (type == DK_Q8_0 ? 8 : 4) * 64;
    const __m512i low = _mm512_set1_epi8(0x0F);
    __m512 acc[8];
    UNROLL for (int i = 0; i < MI; i++) acc[i] = _mm512_setzero_ps();
    for (long b = 0; b < blocks; b++) {
        const uint8_t *p = P + b * pb;
        __m512i dot[8];
        UNROLL for (int i = 0; i < MI; i++) dot[i] = _mm512_set1_epi32(-off * S[(i0 + i) * blocks + b]);
        // Activations 4t..4t + 3 of input row i, broadcast.
#define X4(i, t) ({ int32_t x4_; memcpy(&x4_, Q + ((i0 + (i)) * blocks + b) * 32 + 4 * (t), 4); _mm512_set1_epi32(x4_); })
        if (type == DK_Q8_0) {
            UNROLL for (int t = 0; t < 8; t++) {
                const __m512i w = _mm512_loadu_si512((const void *)(p + t * 64));
                UNROLL for (int i = 0; i < MI; i++) dot[i] = _mm512_dpbusd_epi32(dot[i], w, X4(i, t));
            }
        } else {
            UNROLL for (int t = 0; t < 4; t++) {
                const __m512i n = _mm512_loadu_si512((const void *)(p + t * 64));
                const __m512i lo = _mm512_and_si512(n, low), hi = _mm512_and_si512(_mm512_srli_epi16(n, 4), low);
                UNROLL for (int i = 0; i < MI; i++) {
                    dot[i] = _mm512_dpbusd_epi32(dot[i], lo, X4(i, t));
                    dot[i] = _mm512_dpbusd_epi32(dot[i], hi, X4(i, t + 4));
                }
            }
        }
#undef X4
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + scales)));
        const __m512 mw = type == DK_Q4_1 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + scales + 32))) : dw;
        UNROLL for (int i = 0; i < MI; i++) {
            const long k = (i0 + i) * blocks + b;
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[i]), _mm512_mul_ps(dw, _mm512_set1_ps(D[k])), acc[i]);
            if (type == DK_Q4_1) acc[i] = _mm512_fmadd_ps(mw, _mm512_set1_ps(D[k] * (float)S[k]), acc[i]);
        }
    }
    UNROLL for (int i = 0; i < MI; i++) _mm512_mask_storeu_ps(Y + (i0 + i) * ldy + r0, keep, acc[i]);
}

Q8GEMM_TARGET __attribute__((always_inline))
static inline void slivers(int type, const uint8_t *P, long cols, const int8_t *Q, const float *D,
                           const int32_t *S, long m, float *Y, long ldy, long row0, long row1) {
    const long blocks = cols / 32, pb = packed_block_bytes(type);
    for (long r0 = row0 / 16 * 16; r0 < row1; r0 += 16) {
        // The lanes of rows row0..<row1 (a range may start or end inside a sliver).
        const long lo = row0 > r0 ? row0 - r0 : 0, hi = row1 - r0 < 16 ? row1 - r0 : 16;
        const __mmask16 keep = (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
        const uint8_t *sliver = P + r0 / 16 * blocks * pb;
        long i0 = 0;
        for (; i0 + 8 <= m; i0 += 8) tile(type, 8, sliver, blocks, Q, D, S, i0, Y, ldy, r0, keep);
        switch (m - i0) {
        case 1: tile(type, 1, sliver, blocks, Q, D, S, i0, Y, ldy, r0, keep); break;
        case 2: tile(type, 2, sliver, blocks, Q, D, S, i0, Y, ldy, r0, keep); break;
        case 3: tile(type, 3, sliver, blocks, Q, D, S, i0, Y, ldy, r0, keep); break;
        case 4: tile(type, 4, sliver, blocks, Q, D, S, i0, Y, ldy, r0, keep); break;
        case 5: tile(type, 5, sliver, blocks, Q, D, S, i0, Y, ldy, r0, keep); break;
        case 6: tile(type, 6, sliver, blocks, Q, D, S, i0, Y, ldy, r0, keep); break;
        case 7: tile(type, 7, sliver, blocks, Q, D, S, i0, Y, ldy, r0, keep); break;
        default: break;
        }
    }
}

// NAME(type, …): SLIVERS with the block type a constant, one copy of the loops per type (its
// branches fold away).
#define PER_BLOCK_TYPE(NAME, SLIVERS, TARGET)                                                               \
TARGET static void NAME(int type, const uint8_t *p, long cols, const int8_t *Q, const float *D,            \
                        const int32_t *S, long m, float *Y, long ldy, long row0, long row1) {               \
    switch (type) {                                                                                         \
    case DK_Q4_0: SLIVERS(DK_Q4_0, p, cols, Q, D, S, m, Y, ldy, row0, row1); break;                        \
    case DK_Q4_1: SLIVERS(DK_Q4_1, p, cols, Q, D, S, m, Y, ldy, row0, row1); break;                        \
    default: SLIVERS(DK_Q8_0, p, cols, Q, D, S, m, Y, ldy, row0, row1); break;                             \
    }                                                                                                       \
}
PER_BLOCK_TYPE(q8gemm_vnni, slivers, Q8GEMM_TARGET)

// ---- The same GEMM on 256-bit registers: AVX2, and AVX-VNNI ----
// Each 64-byte vector of a packed block is two halves of 8 rows; a tile is one half (8 lanes) and
// up to 4 input rows. AVX2 has no VPDPBUSD: Q4's bytes (0..15) times int8 activations go through
// VPMADDUBSW, whose pairs (at most 2·15·127) and their sum over the block's 8 groups (at most
// 30480) fit in int16, then one VPMADDWD by ones per block gives the lanes' int32 sums. Q8_0's
// bytes w + 128 would saturate VPMADDUBSW's pairs, so they are turned back into w and multiplied
// as |w| times x with w's sign, pair by pair into int32. With AVX-VNNI, VPDPBUSD's VEX form
// takes the 512-bit kernel's steps on 8 lanes. The integer sums are exact either way and the
// Float32 steps are the 512-bit kernel's, lane for lane: the same bits as AVX-512 VNNI.
#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define AVXVNNI_TARGET __attribute__((target("avx2,fma,f16c,avxvnni")))

#define TILE256(NAME, TARGET, VNNI)                                                                           \
TARGET __attribute__((always_inline))                                                                         \
static inline void NAME(int type, const int MI, const uint8_t *P, long blocks, const int8_t *Q, const float *D, \
                        const int32_t *S, long i0, float *out, long ldo, int half, int first, int n) {        \
    const long pb = packed_block_bytes(type), scales = (type == DK_Q8_0 ? 8 : 4) * 64;                      \
    const __m256i low = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);                                 \
    __m256 acc[4];                                                                                            \
    UNROLL for (int i = 0; i < MI; i++) acc[i] = _mm256_setzero_ps();                                         \
    for (long b = 0; b < blocks; b++) {                                                                       \
        const uint8_t *block = P + b * pb, *p = block + 32 * half;                                            \
        __m256i dot[4];                                                                                       \
        UNROLL for (int i = 0; i < MI; i++) dot[i] = _mm256_setzero_si256();                                  \
        if (type == DK_Q8_0) {                                                                                \
            UNROLL for (int t = 0; t < 8; t++) {                                                              \
                const __m256i u = _mm256_loadu_si256((const __m256i *)(p + t * 64));                          \
                const __m256i w = _mm256_xor_si256(u, _mm256_set1_epi8((char)0x80)), aw = _mm256_abs_epi8(w); \
                UNROLL for (int i = 0; i < MI; i++) {                                                         \
                    const __m256i x = _mm256_sign_epi8(X4_256(i, t), w);                                       \
                    dot[i] = VNNI ? DPBUSD256(dot[i], aw, x)                                                  \
                                  : _mm256_add_epi32(dot[i], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, x), ones)); \
                }                                                                                             \
            }                                                                                                 \
        } else {                                                                                              \
            __m256i sum16[4];                                                                                 \
            UNROLL for (int i = 0; i < MI; i++) sum16[i] = _mm256_setzero_si256();                            \
            UNROLL for (int t = 0; t < 4; t++) {                                                              \
                const __m256i n = _mm256_loadu_si256((const __m256i *)(p + t * 64));                          \
                const __m256i lo = _mm256_and_si256(n, low), hi = _mm256_and_si256(_mm256_srli_epi16(n, 4), low); \
                UNROLL for (int i = 0; i < MI; i++) {                                                         \
                    if (VNNI) {                                                                               \
                        dot[i] = DPBUSD256(dot[i], lo, X4_256(i, t));                                         \
                        dot[i] = DPBUSD256(dot[i], hi, X4_256(i, t + 4));                                     \
                    } else {                                                                                  \
                        sum16[i] = _mm256_add_epi16(sum16[i], _mm256_maddubs_epi16(lo, X4_256(i, t)));        \
                        sum16[i] = _mm256_add_epi16(sum16[i], _mm256_maddubs_epi16(hi, X4_256(i, t + 4)));    \
                    }                                                                                         \
                }                                                                                             \
            }                                                                                                 \
            if (!VNNI) { UNROLL for (int i = 0; i < MI; i++) dot[i] = _mm256_madd_epi16(sum16[i], ones); }    \
            if (type == DK_Q4_0) {                                                                            \
                UNROLL for (int i = 0; i < MI; i++)                                                           \
                    dot[i] = _mm256_add_epi32(dot[i], _mm256_set1_epi32(-8 * S[(i0 + i) * blocks + b]));      \
            }                                                                                                 \
        }                                                                                                     \
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(block + scales + 16 * half)));   \
        const __m256 mw = type == DK_Q4_1                                                                     \
            ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(block + scales + 32 + 16 * half))) : dw;      \
        UNROLL for (int i = 0; i < MI; i++) {                                                                 \
            const long k = (i0 + i) * blocks + b;                                                             \
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[i]), _mm256_mul_ps(dw, _mm256_set1_ps(D[k])), acc[i]); \
            if (type == DK_Q4_1) acc[i] = _mm256_fmadd_ps(mw, _mm256_set1_ps(D[k] * (float)S[k]), acc[i]);     \
        }                                                                                                     \
    }                                                                                                         \
    /* Lanes first..<n: the rows of the caller's range in this half. */                                   \
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);                                          \
    const __m256i mask = _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane),                     \
                                          _mm256_cmpgt_epi32(lane, _mm256_set1_epi32(first - 1)));            \
    UNROLL for (int i = 0; i < MI; i++) _mm256_maskstore_ps(out + i * ldo, mask, acc[i]);                    \
}

// Activations 4t..4t + 3 of input row i, broadcast to 8 lanes.
#define X4_256(i, t) ({ int32_t x4_; memcpy(&x4_, Q + ((i0 + (i)) * blocks + b) * 32 + 4 * (t), 4); _mm256_set1_epi32(x4_); })
#define DPBUSD256(acc, u, s) _mm256_dpbusd_avx_epi32(acc, u, s)
TILE256(tile_avxvnni, AVXVNNI_TARGET, 1)
#undef DPBUSD256
#define DPBUSD256(acc, u, s) (acc)
TILE256(tile_avx2, AVX2_TARGET, 0)
#undef DPBUSD256

// Rows row0..<row1 by halves of slivers (a range may start or end inside a half).
#define SLIVERS256(NAME, TILE, TARGET)                                                                        \
TARGET __attribute__((always_inline))                                                                         \
static inline void NAME(int type, const uint8_t *P, long cols, const int8_t *Q, const float *D,              \
                        const int32_t *S, long m, float *Y, long ldy, long row0, long row1) {                 \
    const long blocks = cols / 32, pb = packed_block_bytes(type);                                             \
    for (long h0 = row0 / 8 * 8; h0 < row1; h0 += 8) {                                                        \
        const int half = (int)(h0 / 8 % 2), first = (int)(row0 > h0 ? row0 - h0 : 0);                        \
        const int n = (int)(row1 - h0 < 8 ? row1 - h0 : 8);                                                   \
        const uint8_t *sliver = P + h0 / 16 * blocks * pb;                                                    \
        for (long i0 = 0; i0 < m; i0 += 4) {                                                                  \
            float *y = Y + i0 * ldy + h0;                                                                     \
            switch (m - i0 < 4 ? m - i0 : 4) {                                                                \
            case 1: TILE(type, 1, sliver, blocks, Q, D, S, i0, y, ldy, half, first, n); break;               \
            case 2: TILE(type, 2, sliver, blocks, Q, D, S, i0, y, ldy, half, first, n); break;               \
            case 3: TILE(type, 3, sliver, blocks, Q, D, S, i0, y, ldy, half, first, n); break;               \
            default: TILE(type, 4, sliver, blocks, Q, D, S, i0, y, ldy, half, first, n); break;              \
            }                                                                                                 \
        }                                                                                                     \
    }                                                                                                         \
}
SLIVERS256(slivers_avx2, tile_avx2, AVX2_TARGET)
SLIVERS256(slivers_avxvnni, tile_avxvnni, AVXVNNI_TARGET)

PER_BLOCK_TYPE(q8gemm_avx2, slivers_avx2, AVX2_TARGET)
PER_BLOCK_TYPE(q8gemm_avxvnni, slivers_avxvnni, AVXVNNI_TARGET)

void dk_q8gemm(int type, const void *P, long cols, const int8_t *Q, const float *D, const int32_t *S,
               long m, float *Y, long ldy, long row0, long row1, int kernel) {
    const uint8_t *p = (const uint8_t *)P;
    if (kernel == DK_Q8_VNNI) q8gemm_vnni(type, p, cols, Q, D, S, m, Y, ldy, row0, row1);
    else if (kernel == DK_Q8_AVXVNNI) q8gemm_avxvnni(type, p, cols, Q, D, S, m, Y, ldy, row0, row1);
    else q8gemm_avx2(type, p, cols, Q, D, S, m, Y, ldy, row0, row1);
}
#else
int dk_q8_vnni_available(void) { return 0; }
void dk_q8_pack_with(int isa, int type, const void *W, long rows, long cols, void *P, long s0, long s1) {
    (void)isa;
    pack_slivers_scalar(type, (const uint8_t *)W, rows, cols, (uint8_t *)P, s0, s1);
}
void dk_q8gemm(int type, const void *P, long cols, const int8_t *Q, const float *D, const int32_t *S,
               long m, float *Y, long ldy, long row0, long row1, int kernel) {
    (void)type; (void)P; (void)cols; (void)Q; (void)D; (void)S; (void)m; (void)Y; (void)ldy; (void)row0; (void)row1; (void)kernel;
}
#endif

void dk_q8_pack(int type, const void *W, long rows, long cols, void *P, long s0, long s1) {
    dk_q8_pack_with(dk_q8_vnni_available() ? 2 : 1, type, W, rows, cols, P, s0, s1);
}
