/* quant_avx2.c — AVX2 (+FMA, F16C) integer kernels for block-quantized weights: activation
 * quantization to blk_q8x and the decode matvec over Q8_0, Q4_0, Q4_K and Q6_K rows, for the
 * "avx2" cpu_isa table (cpu_avx2.c). Compiled with -mavx2 -mfma -mf16c; only called after
 * cpu.c has checked the CPU. Single-threaded on a range of rows; cpu.c does the threading.
 *
 * Contract (cpu_internal.h): cpu_a2_quant_x writes the same bytes as quant_x_row, and
 * cpu_a2_matvec_q equals quant_dot_q8x per (row, activation row) up to f32 summation order:
 * every per-block integer sum is exact and identical to the reference's, only the order in
 * which the scaled block sums are added in f32 differs (8 lanes, then a horizontal sum).
 *
 * Products: one 32-value block per ymm register. AVX2 has no u8×s8→s32 dot instruction, so
 * vpmaddubsw (unsigned × signed bytes, adjacent pairs added into int16) is followed by
 * vpmaddwd against a vector of 16-bit multipliers (ones, or the Q6_K group scales). No int16
 * saturation is possible: a pair is at most 2·128·127 = 32512 (Q8_0 |w| may be 128 for
 * w = −128; activations are within ±127). Signed Q8_0 weights use |w| as the unsigned
 * operand and move their sign onto the activation (vpsignb); Q4_0/Q4_K/Q6_K quants are
 * unsigned already and their zero points enter through the activation block sums.
 *
 * Not here: the prefill GEMM (AVX-512 VNNI only, gemmq_avx512.c; on AVX2, prefill uses
 * dequantize + sgemm — Q4_0 pp512 216-227 tok/s against 180 with this file's 8-row tiles —
 * or these tiles where OpenBLAS is slow), f32/bf16/f16 weights. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

#define AI static inline __attribute__((always_inline))

AI float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

AI float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* Same bytes as quant_x_row: amax, d = amax/127, id = 1/d, q = round-to-nearest-even(x·id)
 * (vcvtps2dq under the default rounding mode is what nearbyintf does). The max is taken as
 * max(|x|, acc) so that a NaN input is skipped as fmaxf skips it. */
void cpu_a2_quant_x(blk_q8x *dst, const float *x, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    /* vpackssdw/vpacksswb interleave the 128-bit lanes; this puts the 32 bytes in order */
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < n / QK; b++) {
        const float *xb = x + b * QK;
        const __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
        const __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        __m256 a = _mm256_setzero_ps();
        a = _mm256_max_ps(_mm256_andnot_ps(sign, v0), a);
        a = _mm256_max_ps(_mm256_andnot_ps(sign, v1), a);
        a = _mm256_max_ps(_mm256_andnot_ps(sign, v2), a);
        a = _mm256_max_ps(_mm256_andnot_ps(sign, v3), a);
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float amax = _mm_cvtss_f32(h);
        const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        const __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid));
        const __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid));
        const __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid));
        const __m256i q3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
        blk_q8x *o = &dst[b];
        o->d = d;
        o->sum[0] = (int16_t)hsum_epi32(_mm256_add_epi32(q0, q1));
        o->sum[1] = (int16_t)hsum_epi32(_mm256_add_epi32(q2, q3));
        const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
        _mm256_storeu_si256((__m256i *)o->qs, _mm256_permutevar8x32_epi32(p, perm));
    }
}

AI __m256i load_x(const blk_q8x *b) { return _mm256_loadu_si256((const __m256i *)b->qs); }

/* 8 int32 lanes whose sum is Σ u[k]·s[k]·m (m: the 16-bit multiplier of each pair). */
AI __m256i dot_u8s8(__m256i u, __m256i s, __m256i m) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), m);
}

/* One Q8_0 block against NX activation rows into acc. */
AI void blk_q8_0_nx(__m256 *acc, const blk_q8_0 *w, const blk_q8x *xq, int64_t ldxq, int64_t b,
                    const int NX) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i wq = _mm256_loadu_si256((const __m256i *)w[b].qs);
    const __m256i wa = _mm256_sign_epi8(wq, wq); /* |w|; −128 stays 0x80 = 128 unsigned */
    const float dw = h2f(w[b].d);
    for (int i = 0; i < NX; i++) {
        const blk_q8x *xb = xq + i * ldxq + b;
        const __m256i xs = _mm256_sign_epi8(load_x(xb), wq); /* x·sign(w), 0 where w = 0 */
        const __m256i p = dot_u8s8(wa, xs, ones);
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * xb->d), acc[i]);
    }
}

/* One Q4_0 block against NX activation rows into acc. */
AI void blk_q4_0_nx(__m256 *acc, const blk_q4_0 *w, const blk_q8x *xq, int64_t ldxq, int64_t b,
                    const int NX) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    /* elements 0..15 are the low nibbles, 16..31 the high ones: the 16 bytes in both lanes,
     * the upper lane shifted right by 4 (one variable shift instead of two and a lane insert) */
    const __m256i q2 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w[b].qs));
    const __m256i wq = _mm256_and_si256(_mm256_srlv_epi64(q2, _mm256_setr_epi64x(0, 0, 4, 4)), m4);
    const float dw = h2f(w[b].d);
    for (int i = 0; i < NX; i++) {
        const blk_q8x *xb = xq + i * ldxq + b;
        /* the −8 zero point as an integer in lane 0: Σ(q−8)x = Σqx − 8Σx, exact */
        const __m256i z = _mm256_zextsi128_si256(_mm_cvtsi32_si128(-8 * (xb->sum[0] + xb->sum[1])));
        const __m256i p = _mm256_add_epi32(dot_u8s8(wq, load_x(xb), ones), z);
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * xb->d), acc[i]);
    }
}

/* With one or two activation rows, one FMA chain per row would be bound by the FMA latency
 * (~4 cycles per block, more than the block's other work), so even and odd blocks go to two
 * accumulator sets. With more rows the rows' chains already overlap, and a second set would
 * not fit the 16 ymm registers. */
#define MVQ_BLOCKS(BLK, W)                                                                   \
    __m256 acc0[CPU_MV_NX], acc1[CPU_MV_NX];                                                 \
    for (int i = 0; i < NX; i++) acc0[i] = acc1[i] = _mm256_setzero_ps();                    \
    int64_t b = 0;                                                                           \
    if (NX <= 2)                                                                             \
        for (; b + 2 <= nb; b += 2) {                                                        \
            BLK(acc0, W, xq, ldxq, b, NX);                                                   \
            BLK(acc1, W, xq, ldxq, b + 1, NX);                                               \
        }                                                                                    \
    for (; b < nb; b++) BLK(acc0, W, xq, ldxq, b, NX);                                       \
    for (int i = 0; i < NX; i++) out[i] = hsum_ps(_mm256_add_ps(acc0[i], acc1[i]));

AI void mvq_q8_0(float *out, const blk_q8x *xq, int64_t ldxq, const void *row, int64_t nb,
                 const int NX) {
    MVQ_BLOCKS(blk_q8_0_nx, (const blk_q8_0 *)row)
}

AI void mvq_q4_0(float *out, const blk_q8x *xq, int64_t ldxq, const void *row, int64_t nb,
                 const int NX) {
    MVQ_BLOCKS(blk_q4_0_nx, (const blk_q4_0 *)row)
}

/* Per sub-block j: d·sc_j·dx_j·Σq·qx in the vector accumulator; the mins term
 * dmin·m_j·dx_j·Σqx is a scalar per sub-block, summed separately and subtracted at the end. */
AI void mvq_q4_k(float *out, const blk_q8x *xq, int64_t ldxq, const void *row, int64_t nb,
                 const int NX) {
    const blk_q4_k *w = row;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256 acc[CPU_MV_NX], acc1[CPU_MV_NX]; /* acc1: odd sub-blocks where NX <= 2 (see above) */
    float mins[CPU_MV_NX] = {0};
    for (int i = 0; i < NX; i++) acc[i] = acc1[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const float d = h2f(w[b].d), dmin = h2f(w[b].dmin);
        int sc[8], m[8];
        for (int j = 0; j < 8; j++) quant_q4k_scale(w[b].scales, j, &sc[j], &m[j]);
        for (int j2 = 0; j2 < 4; j2++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * j2));
            const __m256i lo = _mm256_and_si256(q, m4);                        /* sub-block 2·j2 */
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);  /* 2·j2 + 1 */
            const float f0 = d * (float)sc[2 * j2], f1 = d * (float)sc[2 * j2 + 1];
            for (int i = 0; i < NX; i++) {
                const blk_q8x *x0 = xq + i * ldxq + 8 * b + 2 * j2, *x1 = x0 + 1;
                const __m256i p0 = dot_u8s8(lo, load_x(x0), ones);
                const __m256i p1 = dot_u8s8(hi, load_x(x1), ones);
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(f0 * x0->d), acc[i]);
                const __m256 v1 = _mm256_cvtepi32_ps(p1), s1 = _mm256_set1_ps(f1 * x1->d);
                if (NX <= 2) acc1[i] = _mm256_fmadd_ps(v1, s1, acc1[i]);
                else acc[i] = _mm256_fmadd_ps(v1, s1, acc[i]);
                mins[i] += dmin * (x0->d * (float)(m[2 * j2] * (x0->sum[0] + x0->sum[1])) +
                                   x1->d * (float)(m[2 * j2 + 1] * (x1->sum[0] + x1->sum[1])));
            }
        }
    }
    for (int i = 0; i < NX; i++) out[i] = hsum_ps(_mm256_add_ps(acc[i], acc1[i])) - mins[i];
}

/* Sub-block j (32 values, activation block j) has two signed group scales s0, s1 (16 values
 * each). They are the vpmaddwd multipliers (int16 lanes 0..7 hold values 0..15), and the
 * −32 zero point enters lane 0 as −32·(s0·Σx₀ + s1·Σx₁), so the lanes sum to exactly the
 * reference's integer for the sub-block before the one f32 scale d·dx is applied. */
AI void mvq_q6_k(float *out, const blk_q8x *xq, int64_t ldxq, const void *row, int64_t nb,
                 const int NX) {
    const blk_q6_k *w = row;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    __m256 acc[CPU_MV_NX];
    for (int i = 0; i < NX; i++) acc[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const float d = h2f(w[b].d);
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h));
            for (int k = 0; k < 4; k++) {
                const int j = 4 * h + k;
                const __m256i l = (k & 1) ? l1 : l0;
                const __m256i lo = k >= 2 ? _mm256_and_si256(_mm256_srli_epi16(l, 4), m4)
                                          : _mm256_and_si256(l, m4);
                const __m256i hb =
                    _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * k)), m2);
                const __m256i q = _mm256_or_si256(lo, _mm256_slli_epi16(hb, 4));
                const int s0 = w[b].scales[2 * j], s1 = w[b].scales[2 * j + 1];
                const __m256i sv = _mm256_set_m128i(_mm_set1_epi16((short)s1), _mm_set1_epi16((short)s0));
                for (int i = 0; i < NX; i++) {
                    const blk_q8x *xb = xq + i * ldxq + 8 * b + j;
                    const int zp = -32 * (s0 * xb->sum[0] + s1 * xb->sum[1]);
                    const __m256i p = _mm256_add_epi32(dot_u8s8(q, load_x(xb), sv),
                                                       _mm256_zextsi128_si256(_mm_cvtsi32_si128(zp)));
                    acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * xb->d), acc[i]);
                }
            }
        }
    }
    for (int i = 0; i < NX; i++) out[i] = hsum_ps(acc[i]);
}

AI void mvq_range(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, const wk_weight *W,
                  int64_t r0, int64_t r1, const int NX, const int DT) {
    const size_t rb = dtype_row_bytes((dtype)DT, W->cols);
    const int64_t nb = W->cols / dtype_block_size((dtype)DT);
    for (int64_t r = r0; r < r1; r++) {
        const void *row = (const char *)W->data + r * rb;
        float out[CPU_MV_NX];
        if (DT == DT_Q8_0) mvq_q8_0(out, xq, ldxq, row, nb, NX);
        else if (DT == DT_Q4_0) mvq_q4_0(out, xq, ldxq, row, nb, NX);
        else if (DT == DT_Q4_K) mvq_q4_k(out, xq, ldxq, row, nb, NX);
        else mvq_q6_k(out, xq, ldxq, row, nb, NX);
        for (int i = 0; i < NX; i++) y[i * ldy + r] = out[i];
    }
}

#define MVQ_DT(NX)                                                                          \
    switch (W->dt) {                                                                        \
    case DT_Q8_0: mvq_range(y, ldy, xq, ldxq, W, r0, r1, NX, DT_Q8_0); return;              \
    case DT_Q4_0: mvq_range(y, ldy, xq, ldxq, W, r0, r1, NX, DT_Q4_0); return;              \
    case DT_Q4_K: mvq_range(y, ldy, xq, ldxq, W, r0, r1, NX, DT_Q4_K); return;              \
    case DT_Q6_K: mvq_range(y, ldy, xq, ldxq, W, r0, r1, NX, DT_Q6_K); return;              \
    default: cpu_g_matvec_q(y, ldy, xq, ldxq, NX, W, r0, r1); return;                       \
    }

/* One instantiation per tile size, so the accumulators stay in registers (16 ymm: a tile of
 * 4 rows leaves room for the weights and temporaries; 8 spills a little but halves the
 * number of passes over the weights when 5..8 rows come). */
static void mvq_tile(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int nx,
                     const wk_weight *W, int64_t r0, int64_t r1) {
    switch (nx) {
    case 1: MVQ_DT(1)
    case 2: MVQ_DT(2)
    case 4: MVQ_DT(4)
    default: MVQ_DT(8)
    }
}

/* ---- one activation row (decode), Q4_K and Q4_0 ----
 * As in cpu_avx512.c: the activation terms that do not depend on the weight row (dx and
 * dx·Σx per activation block) are computed once per call (Q6_K: per group, below); Q4_K scales are unpacked as three
 * 32-bit words and its mins term is one 8-lane FMA per block; Q4_0 reduces eight blocks'
 * integer sums to one vector (horizontal-add transpose) before one scale FMA. */
#define ROW1_X_MAX 512 /* activation blocks on the stack (16384 columns) */

AI void q4k_scales8(const uint8_t *s, uint64_t *sc, uint64_t *mn) {
    uint32_t a, b, c;
    memcpy(&a, s, 4);
    memcpy(&b, s + 4, 4);
    memcpy(&c, s + 8, 4);
    const uint32_t lo6 = 0x3f3f3f3fu, lo4 = 0x0f0f0f0fu, hi2 = 0x30303030u;
    *sc = (uint64_t)(a & lo6) | (uint64_t)((c & lo4) | ((a >> 2) & hi2)) << 32;
    *mn = (uint64_t)(b & lo6) | (uint64_t)(((c >> 4) & lo4) | ((b >> 2) & hi2)) << 32;
}

AI __m256 u8x8_to_ps(uint64_t v) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)v)));
}

static void q4_k_row1(float *y, const blk_q8x *xq, const wk_weight *W, int64_t r0, int64_t r1,
                      const float *dx, const float *sx) {
    const size_t rb = dtype_row_bytes(DT_Q4_K, W->cols);
    const int64_t nb = W->cols / 256;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    for (int64_t r = r0; r < r1; r++) {
        const blk_q4_k *w = (const blk_q4_k *)((const char *)W->data + r * rb);
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), macc = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            uint64_t sc, mn;
            q4k_scales8(w[b].scales, &sc, &mn);
            const __m256 sv = _mm256_mul_ps(_mm256_mul_ps(u8x8_to_ps(sc), _mm256_set1_ps(h2f(w[b].d))),
                                            _mm256_loadu_ps(dx + 8 * b));
            macc = _mm256_fmadd_ps(_mm256_mul_ps(u8x8_to_ps(mn), _mm256_set1_ps(h2f(w[b].dmin))),
                                   _mm256_loadu_ps(sx + 8 * b), macc);
            const blk_q8x *xb = xq + 8 * b;
            for (int j2 = 0; j2 < 4; j2++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * j2));
                const __m256i lo = _mm256_and_si256(q, m4);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                const __m256i p0 = dot_u8s8(lo, load_x(xb + 2 * j2), ones);
                const __m256i p1 = dot_u8s8(hi, load_x(xb + 2 * j2 + 1), ones);
                const __m256 s0 = _mm256_permutevar8x32_ps(sv, _mm256_set1_epi32(2 * j2));
                const __m256 s1 = _mm256_permutevar8x32_ps(sv, _mm256_set1_epi32(2 * j2 + 1));
                acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), s0, acc0);
                acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), s1, acc1);
            }
        }
        y[r] = hsum_ps(_mm256_add_ps(acc0, acc1)) - hsum_ps(macc);
    }
}

static void q4_0_row1(float *y, const blk_q8x *xq, const wk_weight *W, int64_t r0, int64_t r1,
                      const float *dx, const float *sx) {
    const size_t rb = dtype_row_bytes(DT_Q4_0, W->cols);
    const int64_t nb = W->cols / QK;
    const __m256i m4 = _mm256_set1_epi8(0x0F), sh = _mm256_setr_epi64x(0, 0, 4, 4);
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t r = r0; r < r1; r++) {
        const blk_q4_0 *w = (const blk_q4_0 *)((const char *)W->data + r * rb);
        __m256 acc = _mm256_setzero_ps(), corr = _mm256_setzero_ps();
        __m256 tail[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        int64_t b = 0;
        for (; b + 8 <= nb; b += 8) {
            __m256i p[8];
            for (int k = 0; k < 8; k++) {
                const __m256i q2 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w[b + k].qs));
                p[k] = dot_u8s8(_mm256_and_si256(_mm256_srlv_epi64(q2, sh), m4), load_x(xq + b + k), ones);
            }
            const __m256i h01 = _mm256_hadd_epi32(p[0], p[1]), h23 = _mm256_hadd_epi32(p[2], p[3]);
            const __m256i h45 = _mm256_hadd_epi32(p[4], p[5]), h67 = _mm256_hadd_epi32(p[6], p[7]);
            const __m256i a = _mm256_hadd_epi32(h01, h23), c = _mm256_hadd_epi32(h45, h67);
            const __m256i t = _mm256_add_epi32(_mm256_permute2x128_si256(a, c, 0x20),
                                               _mm256_permute2x128_si256(a, c, 0x31));
            const __m256 dw = _mm256_cvtph_ps(_mm_setr_epi16(
                (short)w[b].d, (short)w[b + 1].d, (short)w[b + 2].d, (short)w[b + 3].d,
                (short)w[b + 4].d, (short)w[b + 5].d, (short)w[b + 6].d, (short)w[b + 7].d));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_mul_ps(dw, _mm256_loadu_ps(dx + b)), acc);
            corr = _mm256_fmadd_ps(dw, _mm256_loadu_ps(sx + b), corr);
        }
        for (; b < nb; b++) blk_q4_0_nx(tail, w, xq, 1, b, 1); /* zero point included */
        y[r] = hsum_ps(_mm256_add_ps(acc, tail[0])) - 8.0f * hsum_ps(corr);
    }
}

/* Q6_K, one activation row. Group g (16 values, sub-block g/2) has the f32 scale
 * d·scales[g]·dx_{g/2}; the integer dot products of each sub-block come out as 8 lanes (4 per
 * group) and are scaled by a permuted vector of two group scales. The −32 zero point is
 * Σ_g d·scales[g]·(dx·Σx of the group's 16 activations), two FMAs per block from values
 * computed once per call. */
static void q6_k_row1(float *y, const blk_q8x *xq, const wk_weight *W, int64_t r0, int64_t r1,
                      const float *dx2, const float *s2) {
    const size_t rb = dtype_row_bytes(DT_Q6_K, W->cols);
    const int64_t nb = W->cols / 256;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m256i ones = _mm256_set1_epi16(1);
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
                    const __m256i l = (k & 1) ? l1 : l0;
                    const __m256i lo = k >= 2 ? _mm256_and_si256(_mm256_srli_epi16(l, 4), m4)
                                              : _mm256_and_si256(l, m4);
                    /* bits 2k..2k+1 of qh to bits 4..5 (the mask drops what crosses bytes) */
                    const __m256i hs = k == 0 ? _mm256_slli_epi16(qh, 4)
                                     : k == 1 ? _mm256_slli_epi16(qh, 2)
                                     : k == 2 ? qh : _mm256_srli_epi16(qh, 2);
                    const __m256i q = _mm256_or_si256(lo, _mm256_and_si256(hs, m30));
                    const __m256i p = dot_u8s8(q, load_x(xb + 4 * h + k), ones);
                    const __m256i idx = _mm256_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k,
                                                          2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1);
                    const __m256 sv = _mm256_permutevar8x32_ps(g, idx);
                    if (k & 1) acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sv, acc1);
                    else acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sv, acc0);
                }
            }
        }
        y[r] = hsum_ps(_mm256_add_ps(acc0, acc1)) - 32.0f * hsum_ps(corr);
    }
}

/* One activation row of Q4_K / Q4_0 / Q6_K; false when the kernels above do not apply. */
static int row1(float *y, const blk_q8x *xq, const wk_weight *W, int64_t r0, int64_t r1) {
    const int64_t nbx = W->cols / QK;
    if ((W->dt != DT_Q4_K && W->dt != DT_Q4_0 && W->dt != DT_Q6_K) || nbx > ROW1_X_MAX) return 0;
    if (W->dt == DT_Q6_K) {
        /* per group of 16 activations: dx (twice per block) and dx·Σx */
        float dx2[2 * ROW1_X_MAX], s2[2 * ROW1_X_MAX];
        for (int64_t j = 0; j < nbx; j++) {
            dx2[2 * j] = dx2[2 * j + 1] = xq[j].d;
            s2[2 * j] = xq[j].d * (float)xq[j].sum[0];
            s2[2 * j + 1] = xq[j].d * (float)xq[j].sum[1];
        }
        q6_k_row1(y, xq, W, r0, r1, dx2, s2);
        return 1;
    }
    float dx[ROW1_X_MAX], sx[ROW1_X_MAX];
    for (int64_t j = 0; j < nbx; j++) {
        dx[j] = xq[j].d;
        sx[j] = xq[j].d * (float)(xq[j].sum[0] + xq[j].sum[1]);
    }
    if (W->dt == DT_Q4_K) q4_k_row1(y, xq, W, r0, r1, dx, sx);
    else q4_0_row1(y, xq, W, r0, r1, dx, sx);
    return 1;
}

/* nx (1..CPU_MV_NX) activation rows are split into tiles of 8, 4, 2 and 1. */
void cpu_a2_matvec_q(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int nx,
                     const wk_weight *W, int64_t r0, int64_t r1) {
    if (nx == 1 && row1(y, xq, W, r0, r1)) return;
    while (nx > 0) {
        const int t = nx >= 8 ? 8 : nx >= 4 ? 4 : nx >= 2 ? 2 : 1;
        mvq_tile(y, ldy, xq, ldxq, t, W, r0, r1);
        y += t * ldy;
        xq += t * ldxq;
        nx -= t;
    }
}
