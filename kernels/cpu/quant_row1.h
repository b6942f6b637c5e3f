/* quant_row1.h — decode kernels for one activation row of Q4_0, Q5_0, Q4_K and Q6_K weights,
 * the 1..8-row kernels of the 32-value block types (Q8_0, Q4_0, Q5_0), and
 * the Q6_K 6-bit value assembly, shared by the AVX2 and AVX-512 files (each compiles this
 * text with its own ISA flags). Every function here uses 256-bit AVX2 operations only.
 *
 * (Q5_0 shares the Q4_0 kernel, its fifth bits expanded per byte.)
 *
 * Why a separate one-row path: with one activation row the general kernels were bound by
 * per-block scalar work (scale unpacking, broadcasting one f32 scale per block, a scalar
 * zero-point sum) rather than by the integer dot products. Here:
 *  - the activation terms that do not depend on the weight row — dx and dx·Σx per activation
 *    block (per 16-value half for Q6_K) — are computed once per call, on the stack;
 *  - Q4_K's twelve scale bytes are unpacked as three 32-bit words, its mins term is one 8-lane
 *    FMA per block, and each sub-block's scale is a lane of one vector (vpermps);
 *  - Q4_0 reduces eight blocks' integer sums to one vector (a horizontal-add transpose) and
 *    scales them with one FMA; its −8 zero point is 8·Σ dw·(dx·Σx);
 *  - Q6_K scales each 16-value group by a permuted f32 vector of its two group scales; the −32
 *    zero point is two FMAs per block.
 * Every per-block (per-group) integer sum equals the reference's; the zero points and scales
 * are applied in f32 in another order, so results match quant_dot_q8x up to f32 rounding.
 *
 * The includer defines, before including (only for the kernels, not for row1_q6k_values):
 *   ROW1_DOT(u, x, VNNI)  __m256i of 8 int32 lanes, lane k = Σ of u8 u × s8 x over bytes
 *                         4k..4k+3 (vpdpbusd, or vpmaddubsw + vpmaddwd against ones)
 * and provides h2f (f16 -> f32) and load_x (the 32 activation bytes of a blk_q8x). */
#ifndef WICK_KERNELS_CPU_QUANT_ROW1_H
#define WICK_KERNELS_CPU_QUANT_ROW1_H
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

/* Values 0..63 of Q6_K sub-block k (0..3) of a 128-value half: low nibbles from l0/l1 (the
 * half's two 32-byte ql rows), bits 2k..2k+1 of qh moved to bits 4..5 (16-bit shifts; the
 * byte mask drops what crosses bytes). */
static inline __m256i row1_q6k_values(__m256i l0, __m256i l1, __m256i qh, const int k) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m256i l = (k & 1) ? l1 : l0;
    const __m256i lo = k >= 2 ? _mm256_and_si256(_mm256_srli_epi16(l, 4), m4) : _mm256_and_si256(l, m4);
    const __m256i hs = k == 0 ? _mm256_slli_epi16(qh, 4)
                     : k == 1 ? _mm256_slli_epi16(qh, 2)
                     : k == 2 ? qh : _mm256_srli_epi16(qh, 2);
    return _mm256_or_si256(lo, _mm256_and_si256(hs, m30));
}

/* The 32 unsigned values of Q4_0 block w: low nibbles (elements 0..15) in the lower lane, high
   nibbles (16..31) in the upper one. */
static inline __m256i row1_q4_0_values(const blk_q4_0 *w) {
    const __m256i q2 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w->qs));
    return _mm256_and_si256(_mm256_srlv_epi64(q2, _mm256_setr_epi64x(0, 0, 4, 4)),
                            _mm256_set1_epi8(0x0F));
}

/* Q5_0: the Q4_0 nibbles plus bit j of the 32-bit qh word as bit 4 of element j (each byte
   picks its qh byte, tests its bit, keeps 0x10 where set). */
static inline __m256i row1_q5_0_values(const blk_q5_0 *w) {
    uint32_t qh;
    memcpy(&qh, w->qh, 4);
    const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i h = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), pick);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(h, bit), bit);
    const __m128i q = _mm_loadu_si128((const __m128i *)w->qs);
    const __m256i lo = _mm256_and_si256(_mm256_srlv_epi64(_mm256_broadcastsi128_si256(q),
                                                          _mm256_setr_epi64x(0, 0, 4, 4)),
                                        _mm256_set1_epi8(0x0F));
    return _mm256_or_si256(lo, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
}

#endif /* WICK_KERNELS_CPU_QUANT_ROW1_H */

/* The kernels, once per translation unit that defines ROW1_DOT (guarded on their own, so an
   earlier include without ROW1_DOT does not hide them). */
#if defined(ROW1_DOT) && !defined(WICK_KERNELS_CPU_QUANT_ROW1_KERNELS)
#define WICK_KERNELS_CPU_QUANT_ROW1_KERNELS
#define ROW1_X_MAX 512 /* activation blocks held on the stack (rows up to 16384 values) */
#define ROW1_AI static inline __attribute__((always_inline))

ROW1_AI float row1_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 scales and 8 mins of a Q4_K block as bytes j = 0..7 of *sc, *mn (see quant_q4k_scale). */
ROW1_AI void row1_q4k_scales8(const uint8_t *s, uint64_t *sc, uint64_t *mn) {
    uint32_t a, b, c;
    memcpy(&a, s, 4);
    memcpy(&b, s + 4, 4);
    memcpy(&c, s + 8, 4);
    const uint32_t lo6 = 0x3f3f3f3fu, lo4 = 0x0f0f0f0fu, hi2 = 0x30303030u;
    *sc = (uint64_t)(a & lo6) | (uint64_t)((c & lo4) | ((a >> 2) & hi2)) << 32;
    *mn = (uint64_t)(b & lo6) | (uint64_t)(((c >> 4) & lo4) | ((b >> 2) & hi2)) << 32;
}

ROW1_AI __m256 row1_u8x8_to_ps(uint64_t v) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)v)));
}

ROW1_AI void row1_q4_k(float *y, const blk_q8x *xq, const wk_weight *W, int64_t r0, int64_t r1,
                       const float *dx, const float *sx, const int VNNI) {
    const size_t rb = dtype_row_bytes(DT_Q4_K, W->cols);
    const int64_t nb = W->cols / QKK;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t r = r0; r < r1; r++) {
        const blk_q4_k *w = (const blk_q4_k *)((const char *)W->data + r * rb);
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), macc = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            uint64_t sc, mn;
            row1_q4k_scales8(w[b].scales, &sc, &mn);
            /* scale of sub-block j: d·sc_j·dx_j; mins: dmin·m_j·dx_j·Σx_j */
            const __m256 sv = _mm256_mul_ps(_mm256_mul_ps(row1_u8x8_to_ps(sc), _mm256_set1_ps(h2f(w[b].d))),
                                            _mm256_loadu_ps(dx + 8 * b));
            macc = _mm256_fmadd_ps(_mm256_mul_ps(row1_u8x8_to_ps(mn), _mm256_set1_ps(h2f(w[b].dmin))),
                                   _mm256_loadu_ps(sx + 8 * b), macc);
            const blk_q8x *xb = xq + 8 * b;
            for (int j2 = 0; j2 < 4; j2++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * j2));
                const __m256i lo = _mm256_and_si256(q, m4);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                const __m256i p0 = ROW1_DOT(lo, load_x(xb + 2 * j2), VNNI);
                const __m256i p1 = ROW1_DOT(hi, load_x(xb + 2 * j2 + 1), VNNI);
                const __m256 s0 = _mm256_permutevar8x32_ps(sv, _mm256_set1_epi32(2 * j2));
                const __m256 s1 = _mm256_permutevar8x32_ps(sv, _mm256_set1_epi32(2 * j2 + 1));
                acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), s0, acc0);
                acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), s1, acc1);
            }
        }
        y[r] = row1_hsum(_mm256_add_ps(acc0, acc1)) - row1_hsum(macc);
    }
}

/* Q4_0 (DT_Q4_0, zero point 8) and Q5_0 (zero point 16): both blocks start with their f16 d. */
ROW1_AI void row1_q4_0(float *y, const blk_q8x *xq, const wk_weight *W, int64_t r0, int64_t r1,
                       const float *dx, const float *sx, const int VNNI, const int DT) {
    const size_t rb = dtype_row_bytes((dtype)DT, W->cols), bb = dtype_block_bytes((dtype)DT);
    const int64_t nb = W->cols / QK;
    const float zp = DT == DT_Q4_0 ? 8.0f : 16.0f;
#define ROW1_BLK(i) ((const char *)w + (size_t)(i) * bb)
#define ROW1_VALUES(i) (DT == DT_Q4_0 ? row1_q4_0_values((const blk_q4_0 *)ROW1_BLK(i)) \
                                      : row1_q5_0_values((const blk_q5_0 *)ROW1_BLK(i)))
    for (int64_t r = r0; r < r1; r++) {
        const char *w = (const char *)W->data + r * rb;
        __m256 acc = _mm256_setzero_ps(), corr = _mm256_setzero_ps(), tail = _mm256_setzero_ps();
        float tcorr = 0.0f;
        int64_t b = 0;
        for (; b + 8 <= nb; b += 8) {
            __m256i p[8];
            uint16_t d16[8];
            for (int k = 0; k < 8; k++) {
                p[k] = ROW1_DOT(ROW1_VALUES(b + k), load_x(xq + b + k), VNNI);
                memcpy(&d16[k], ROW1_BLK(b + k), 2);
            }
            const __m256i h01 = _mm256_hadd_epi32(p[0], p[1]), h23 = _mm256_hadd_epi32(p[2], p[3]);
            const __m256i h45 = _mm256_hadd_epi32(p[4], p[5]), h67 = _mm256_hadd_epi32(p[6], p[7]);
            /* a = [Σlow lanes of p0..p3 | Σhigh lanes of p0..p3], c likewise for p4..p7 */
            const __m256i a = _mm256_hadd_epi32(h01, h23), c = _mm256_hadd_epi32(h45, h67);
            const __m256i t = _mm256_add_epi32(_mm256_permute2x128_si256(a, c, 0x20),
                                               _mm256_permute2x128_si256(a, c, 0x31));
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d16));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_mul_ps(dw, _mm256_loadu_ps(dx + b)), acc);
            corr = _mm256_fmadd_ps(dw, _mm256_loadu_ps(sx + b), corr);
        }
        for (; b < nb; b++) { /* fewer than 8 blocks left */
            uint16_t d16;
            memcpy(&d16, ROW1_BLK(b), 2);
            const float dw = h2f(d16);
            const __m256i p = ROW1_DOT(ROW1_VALUES(b), load_x(xq + b), VNNI);
            tail = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * dx[b]), tail);
            tcorr += dw * sx[b];
        }
        y[r] = row1_hsum(_mm256_add_ps(acc, tail)) - zp * (row1_hsum(corr) + tcorr);
    }
#undef ROW1_VALUES
#undef ROW1_BLK
}

/* ---- 32-value block types (Q8_0, Q4_0, Q5_0) against 1..8 activation rows ---- */

/* One Q8_0 block against NX activation rows into acc: |w| is the unsigned operand and w's sign
   moves onto the activation (vpsignb; zero where w = 0, where |w| is zero too). */
ROW1_AI void mvq_blk_q8_0(__m256 *acc, const blk_q8_0 *w, const blk_q8x *xq, int64_t ldxq,
                          int64_t b, const int NX, const int VNNI) {
    const __m256i wq = _mm256_loadu_si256((const __m256i *)w[b].qs);
    const __m256i wa = _mm256_sign_epi8(wq, wq); /* |w|; −128 stays 0x80 = 128 unsigned */
    const float dw = h2f(w[b].d);
    for (int i = 0; i < NX; i++) {
        const blk_q8x *xb = xq + i * ldxq + b;
        const __m256i p = ROW1_DOT(wa, _mm256_sign_epi8(load_x(xb), wq), VNNI);
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * xb->d), acc[i]);
    }
}

/* One Q4_0 (DT_Q4_0) or Q5_0 block against NX activation rows: the zero point (8 or 16) as an
   exact integer in lane 0, Σ(q − z)x = Σqx − z·Σx. */
ROW1_AI void mvq_blk_q4x_0(__m256 *acc, const void *row, const blk_q8x *xq, int64_t ldxq,
                           int64_t b, const int NX, const int VNNI, const int DT) {
    const uint8_t *w = (const uint8_t *)row + (size_t)b * (DT == DT_Q4_0 ? sizeof(blk_q4_0) : sizeof(blk_q5_0));
    const __m256i wq = DT == DT_Q4_0 ? row1_q4_0_values((const blk_q4_0 *)w)
                                     : row1_q5_0_values((const blk_q5_0 *)w);
    const int zp = DT == DT_Q4_0 ? 8 : 16;
    uint16_t d16;
    memcpy(&d16, w, 2);
    const float dw = h2f(d16);
    for (int i = 0; i < NX; i++) {
        const blk_q8x *xb = xq + i * ldxq + b;
        const __m256i z = _mm256_zextsi128_si256(_mm_cvtsi32_si128(-zp * (xb->sum[0] + xb->sum[1])));
        const __m256i p = _mm256_add_epi32(ROW1_DOT(wq, load_x(xb), VNNI), z);
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * xb->d), acc[i]);
    }
}

/* A row of a 32-value block type against NX activation rows. With one or two rows (decode),
   one FMA chain per row is bound by the FMA latency (~4 cycles a block, more than the block's
   other work): even and odd blocks go to two accumulator sets. With more rows the rows'
   chains already overlap. */
ROW1_AI void mvq_blocks32(float *out, const blk_q8x *xq, int64_t ldxq, const void *row, int64_t nb,
                          const int NX, const int VNNI, const int DT) {
    __m256 acc0[CPU_MV_NX], acc1[CPU_MV_NX];
    for (int i = 0; i < NX; i++) acc0[i] = acc1[i] = _mm256_setzero_ps();
#define ROW1_BLK(acc, b)                                                                    \
    (DT == DT_Q8_0 ? mvq_blk_q8_0(acc, (const blk_q8_0 *)row, xq, ldxq, b, NX, VNNI)           \
                   : mvq_blk_q4x_0(acc, row, xq, ldxq, b, NX, VNNI, DT))
    int64_t b = 0;
    if (NX <= 2)
        for (; b + 2 <= nb; b += 2) {
            ROW1_BLK(acc0, b);
            ROW1_BLK(acc1, b + 1);
        }
    for (; b < nb; b++) ROW1_BLK(acc0, b);
#undef ROW1_BLK
    for (int i = 0; i < NX; i++) out[i] = row1_hsum(_mm256_add_ps(acc0[i], acc1[i]));
}

/* dx2, s2: per 16-value activation group (two per block): dx and dx·Σx of that half. */
ROW1_AI void row1_q6_k(float *y, const blk_q8x *xq, const wk_weight *W, int64_t r0, int64_t r1,
                       const float *dx2, const float *s2, const int VNNI) {
    const size_t rb = dtype_row_bytes(DT_Q6_K, W->cols);
    const int64_t nb = W->cols / QKK;
    for (int64_t r = r0; r < r1; r++) {
        const blk_q6_k *w = (const blk_q6_k *)((const char *)W->data + r * rb);
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), corr = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const __m256 d = _mm256_set1_ps(h2f(w[b].d));
            const __m128i sc = _mm_loadu_si128((const __m128i *)w[b].scales);
            const __m256 sa = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc)), d);
            const __m256 sb = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8))), d);
            corr = _mm256_fmadd_ps(sa, _mm256_loadu_ps(s2 + 16 * b), corr);
            corr = _mm256_fmadd_ps(sb, _mm256_loadu_ps(s2 + 16 * b + 8), corr);
            const __m256 ga = _mm256_mul_ps(sa, _mm256_loadu_ps(dx2 + 16 * b));
            const __m256 gb = _mm256_mul_ps(sb, _mm256_loadu_ps(dx2 + 16 * b + 8));
            const blk_q8x *xb = xq + 8 * b;
            for (int h = 0; h < 2; h++) {
                const __m256i l0 = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h));
                const __m256i l1 = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h + 32));
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h));
                const __m256 g = h ? gb : ga;
                for (int k = 0; k < 4; k++) {
                    const __m256i p = ROW1_DOT(row1_q6k_values(l0, l1, qh, k), load_x(xb + 4 * h + k), VNNI);
                    /* lanes 0..3 hold group 2k of this half, lanes 4..7 group 2k + 1 */
                    const __m256i idx = _mm256_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k,
                                                          2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1);
                    const __m256 sv = _mm256_permutevar8x32_ps(g, idx);
                    if (k & 1) acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sv, acc1);
                    else acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sv, acc0);
                }
            }
        }
        y[r] = row1_hsum(_mm256_add_ps(acc0, acc1)) - 32.0f * row1_hsum(corr);
    }
}

/* One activation row of W (Q4_0, Q5_0, Q4_K or Q6_K) into y[r0..r1): the activation terms first,
   then the kernel. False (nothing written) for other types or rows longer than the stack
   arrays: the caller's general kernel runs then. */
ROW1_AI int row1_run(float *y, const blk_q8x *xq, const wk_weight *W, int64_t r0, int64_t r1,
                     const int VNNI) {
    const int64_t nbx = W->cols / QK;
    if ((W->dt != DT_Q4_K && W->dt != DT_Q4_0 && W->dt != DT_Q5_0 && W->dt != DT_Q6_K) ||
        nbx > ROW1_X_MAX)
        return 0;
    float a[2 * ROW1_X_MAX], s[2 * ROW1_X_MAX];
    if (W->dt == DT_Q6_K) {
        for (int64_t j = 0; j < nbx; j++) {
            a[2 * j] = a[2 * j + 1] = xq[j].d;
            s[2 * j] = xq[j].d * (float)xq[j].sum[0];
            s[2 * j + 1] = xq[j].d * (float)xq[j].sum[1];
        }
        row1_q6_k(y, xq, W, r0, r1, a, s, VNNI);
        return 1;
    }
    for (int64_t j = 0; j < nbx; j++) {
        a[j] = xq[j].d;
        s[j] = xq[j].d * (float)(xq[j].sum[0] + xq[j].sum[1]);
    }
    if (W->dt == DT_Q4_K) row1_q4_k(y, xq, W, r0, r1, a, s, VNNI);
    else if (W->dt == DT_Q4_0) row1_q4_0(y, xq, W, r0, r1, a, s, VNNI, DT_Q4_0);
    else row1_q4_0(y, xq, W, r0, r1, a, s, VNNI, DT_Q5_0);
    return 1;
}
#endif /* ROW1_DOT */
