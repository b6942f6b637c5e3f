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
 * Not here: the prefill GEMM (gemmq_avx2.c for Q4_0/Q4_K/Q6_K; Q8_0 prefill dequantizes +
 * sgemm on AVX2), f32/bf16/f16 weights. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

#define AI static inline __attribute__((always_inline))

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

/* One activation row (decode) of Q4_0/Q5_0/Q4_K/Q6_K: the shared kernels of quant_row1.h. */
#define ROW1_DOT(u, x, VNNI) dot_u8s8((u), (x), _mm256_set1_epi16(1))
#include "kernels/cpu/quant_row1.h"

/* Per sub-block j: d·sc_j·dx_j·Σq·qx in the vector accumulator; the mins term
 * dmin·m_j·dx_j·Σqx is a scalar per sub-block, summed separately and subtracted at the end. */
AI void mvq_q4_k(float *out, const blk_q8x *xq, int64_t ldxq, const void *row, int64_t nb,
                 const int NX) {
    const blk_q4_k *w = row;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256 acc[CPU_MV_NX], acc1[CPU_MV_NX]; /* acc1: odd sub-blocks where NX <= 2 (see mvq_blocks32) */
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
    for (int i = 0; i < NX; i++) out[i] = row1_hsum(_mm256_add_ps(acc[i], acc1[i])) - mins[i];
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
    for (int i = 0; i < NX; i++) out[i] = row1_hsum(acc[i]);
}

AI void mvq_range(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, const wk_weight *W,
                  int64_t r0, int64_t r1, const int NX, const int DT) {
    const size_t rb = dtype_row_bytes((dtype)DT, W->cols);
    const int64_t nb = W->cols / dtype_block_size((dtype)DT);
    for (int64_t r = r0; r < r1; r++) {
        const void *row = (const char *)W->data + r * rb;
        float out[CPU_MV_NX];
        if (DT == DT_Q8_0 || DT == DT_Q4_0 || DT == DT_Q5_0) mvq_blocks32(out, xq, ldxq, row, nb, NX, 0, DT);
        else if (DT == DT_Q4_K) mvq_q4_k(out, xq, ldxq, row, nb, NX);
        else mvq_q6_k(out, xq, ldxq, row, nb, NX);
        for (int i = 0; i < NX; i++) y[i * ldy + r] = out[i];
    }
}

#define MVQ_DT(NX)                                                                          \
    switch (W->dt) {                                                                        \
    case DT_Q8_0: mvq_range(y, ldy, xq, ldxq, W, r0, r1, NX, DT_Q8_0); return;              \
    case DT_Q4_0: mvq_range(y, ldy, xq, ldxq, W, r0, r1, NX, DT_Q4_0); return;              \
    case DT_Q5_0: mvq_range(y, ldy, xq, ldxq, W, r0, r1, NX, DT_Q5_0); return;              \
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


/* nx (1..CPU_MV_NX) activation rows are split into tiles of 8, 4, 2 and 1. */
void cpu_a2_matvec_q(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int nx,
                     const wk_weight *W, int64_t r0, int64_t r1) {
    if (nx == 1 && row1_run(y, xq, W, r0, r1, 0)) return;
    while (nx > 0) {
        const int t = nx >= 8 ? 8 : nx >= 4 ? 4 : nx >= 2 ? 2 : 1;
        mvq_tile(y, ldy, xq, ldxq, t, W, r0, r1);
        y += t * ldy;
        xq += t * ldxq;
        nx -= t;
    }
}
