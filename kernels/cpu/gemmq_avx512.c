/* gemmq_avx512.c — prefill matmul for Q8_0 / Q4_0 / Q5_0 / Q4_K / Q6_K weights with AVX-512 VNNI integer
 * dot products (vpdpbusd on zmm), for many activation rows at once.
 *
 * Why a separate path from decode: the decode kernels (cpu_avx512.c) reduce one 32-value
 * block per (weight row, activation row) pair horizontally, which is fine when memory is the
 * limit but wastes most of the ALU when the same weights meet hundreds of activation rows.
 * Here each zmm lane belongs to a different weight row, so nothing is reduced horizontally:
 *
 *   panel  = 16 weight rows, repacked once per call into the caller's scratch: for each
 *            32-value block, 8 zmm of "4 consecutive values of each of the 16 rows" (u8),
 *            then the 16 row scales dw (f32) and, for Q4_K, the 16 row mins mn (f32).
 *   kernel = for up to 8 activation rows, per block: 8 vpdpbusd with the row's 4 activation
 *            bytes broadcast, then y += f32(isum) · (dw · dx) [ − mn · dx · Σx for Q4_K ].
 *
 * Weights must be the unsigned operand of vpdpbusd, so they are stored with an offset and
 * the offset is removed through the activation block sums (quant.h keeps them per block):
 * Q4_0 nibbles q (value q − 8) start the integer sum at −8·Σx, Q5_0 values (q − 16) at −16·Σx; Q8_0 bytes w are stored as
 * w + 128 (w ^ 0x80) and start at −128·Σx. Each block's integer sum is exactly the one of
 * quant_dot_q8x, and blocks are combined in f32 in the same order, so the result equals that
 * definition up to the rounding of one fused multiply-add per block.
 *
 * Q6_K (values 0..63, zero point 32, one int8 scale per 16 values) keeps two integer sums per
 * block, one per 16-value group, each with its own f32 scale (the panel's dw and mn slots)
 * and its half of the activation sums for the zero point.
 *
 * Not here: threading and activation quantization (cpu.c). Only called after cpu.c has
 * checked for AVX-512 VNNI. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/quant_row1.h"

#define AI static inline __attribute__((always_inline))
#define PR 16 /* weight rows per panel (zmm lanes) */

/* Bytes of one repacked 32-value block: 8 zmm of values, dw[16], mn[16]. */
#define PBLK (8 * 64 + 2 * 64)

size_t cpu_a5_gemm_q_scratch(int64_t cols) { return (size_t)(cols / QK) * PBLK + PR * (size_t)cols + 64; }

int cpu_a5_gemm_q_supports(dtype dt) {
    return dt == DT_Q8_0 || dt == DT_Q4_0 || dt == DT_Q5_0 || dt == DT_Q4_K || dt == DT_Q6_K;
}

/* Unpacks weight row `row` to u8 values with their offset (cols bytes at v) and writes each
 * 32-value block's scale and min to dw[b·PBLK/4], mn[b·PBLK/4] (the panel's per-block slots
 * for this row). */
static void unpack_row(const wk_weight *W, const uint8_t *row, uint8_t *v, float *dw, float *mn) {
    const int64_t nb = W->cols / QK;
    const size_t st = PBLK / sizeof(float);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    switch (W->dt) {
    case DT_Q8_0:
        for (int64_t b = 0; b < nb; b++) {
            const blk_q8_0 *w = (const blk_q8_0 *)row + b;
            const __m256i q = _mm256_loadu_si256((const __m256i *)w->qs);
            _mm256_storeu_si256((__m256i *)(v + QK * b), _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80)));
            dw[b * st] = f16_to_f32(w->d);
            mn[b * st] = 0.0f;
        }
        break;
    case DT_Q4_0:
        for (int64_t b = 0; b < nb; b++) {
            const blk_q4_0 *w = (const blk_q4_0 *)row + b;
            const __m128i q = _mm_loadu_si128((const __m128i *)w->qs);
            _mm_storeu_si128((__m128i *)(v + QK * b), _mm_and_si128(q, m4));
            _mm_storeu_si128((__m128i *)(v + QK * b + 16), _mm_and_si128(_mm_srli_epi16(q, 4), m4));
            dw[b * st] = f16_to_f32(w->d);
            mn[b * st] = 0.0f;
        }
        break;
    case DT_Q5_0: /* values 0..31: the fifth bits as in row1_q5_0_values */
        for (int64_t b = 0; b < nb; b++) {
            const blk_q5_0 *w = (const blk_q5_0 *)row + b;
            _mm256_storeu_si256((__m256i *)(v + QK * b), row1_q5_0_values(w));
            dw[b * st] = f16_to_f32(w->d);
            mn[b * st] = 0.0f;
        }
        break;
    case DT_Q6_K: /* 32-value block b is sub-block j = b % 8 of super-block b / 8; its two
                     16-value groups' scales d·scales[2j], d·scales[2j+1] go to dw and mn */
        for (int64_t B = 0; B < nb / 8; B++) {
            const blk_q6_k *w = (const blk_q6_k *)row + B;
            const float d = f16_to_f32(w->d);
            for (int h = 0; h < 2; h++) {
                const __m256i l0 = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h));
                const __m256i l1 = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * h + 32));
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(w->qh + 32 * h));
                for (int k = 0; k < 4; k++)
                    _mm256_storeu_si256((__m256i *)(v + QKK * B + 32 * (4 * h + k)),
                                        row1_q6k_values(l0, l1, qh, k));
            }
            for (int j = 0; j < 8; j++) {
                dw[(8 * B + j) * st] = d * (float)w->scales[2 * j];
                mn[(8 * B + j) * st] = d * (float)w->scales[2 * j + 1];
            }
        }
        break;
    default: /* DT_Q4_K: 32-value block b is sub-block b % 8 of super-block b / 8 */
        for (int64_t B = 0; B < nb / 8; B++) {
            const blk_q4_k *w = (const blk_q4_k *)row + B;
            const float d = f16_to_f32(w->d), dmin = f16_to_f32(w->dmin);
            for (int k = 0; k < 4; k++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * k));
                const __m256i m = _mm256_set1_epi8(0x0F);
                uint8_t *o = v + QKK * B + 64 * k;
                _mm256_storeu_si256((__m256i *)o, _mm256_and_si256(q, m));
                _mm256_storeu_si256((__m256i *)(o + 32), _mm256_and_si256(_mm256_srli_epi16(q, 4), m));
            }
            for (int s = 0; s < 8; s++) {
                int sc, m;
                quant_q4k_scale(w->scales, s, &sc, &m);
                dw[(8 * B + s) * st] = d * (float)sc;
                mn[(8 * B + s) * st] = dmin * (float)m;
            }
        }
        break;
    }
}

/* Repacks weight rows [r, r + nr) (nr <= 16; missing rows are zero) into panel p, through
 * tmp (16·cols bytes): rows are unpacked contiguously, then each zmm of the panel gathers
 * the same 4 bytes of the 16 rows. */
static void repack(uint8_t *p, uint8_t *tmp, const wk_weight *W, int64_t r, int nr) {
    const int64_t nb = W->cols / QK, cols = W->cols;
    const size_t rb = dtype_row_bytes(W->dt, cols);
    for (int j = 0; j < PR; j++) {
        if (j < nr) {
            unpack_row(W, (const uint8_t *)W->data + (size_t)(r + j) * rb, tmp + j * cols,
                       (float *)(p + 512) + j, (float *)(p + 576) + j);
        } else {
            memset(tmp + j * cols, 0, (size_t)cols);
            for (int64_t b = 0; b < nb; b++) {
                ((float *)(p + b * PBLK + 512))[j] = 0.0f;
                ((float *)(p + b * PBLK + 576))[j] = 0.0f;
            }
        }
    }
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                             11, 12, 13, 14, 15),
                                           _mm512_set1_epi32((int)cols));
    for (int64_t b = 0; b < nb; b++)
        for (int g = 0; g < 8; g++)
            _mm512_store_si512((void *)(p + b * PBLK + 64 * g),
                               _mm512_i32gather_epi32(idx, (const void *)(tmp + QK * b + 4 * g), 1));
}

AI int32_t load4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* y[i*ldy + lane] for i < NX, lanes in mask m, from one repacked panel. */
AI void kernel(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, const uint8_t *p,
               int64_t nb, __mmask16 m, const int NX, const int OFF, const int MIN) {
    __m512 acc[8];
    for (int i = 0; i < NX; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *pb = p + b * PBLK;
        __m512i s[8];
        for (int i = 0; i < NX; i++) {
            const blk_q8x *xb = xq + i * ldxq + b;
            s[i] = _mm512_set1_epi32(-OFF * (xb->sum[0] + xb->sum[1]));
        }
        for (int g = 0; g < 8; g++) {
            const __m512i w = _mm512_load_si512((const void *)(pb + 64 * g));
            for (int i = 0; i < NX; i++)
                s[i] = _mm512_dpbusd_epi32(s[i], w,
                                           _mm512_set1_epi32(load4(xq[i * ldxq + b].qs + 4 * g)));
        }
        const __m512 dw = _mm512_load_ps((const float *)(pb + 512));
        for (int i = 0; i < NX; i++) {
            const blk_q8x *xb = xq + i * ldxq + b;
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[i]), _mm512_mul_ps(dw, _mm512_set1_ps(xb->d)),
                                     acc[i]);
            if (MIN) {
                const __m512 mn = _mm512_load_ps((const float *)(pb + 576));
                acc[i] = _mm512_fnmadd_ps(mn, _mm512_set1_ps(xb->d * (float)(xb->sum[0] + xb->sum[1])),
                                          acc[i]);
            }
        }
    }
    for (int i = 0; i < NX; i++) _mm512_mask_storeu_ps(y + i * ldy, m, acc[i]);
}

/* Q6_K: the two 16-value groups of a block have their own scales (dw, mn slots) and the −32
 * zero point uses each half's activation sum, so the integer sums are kept per group. */
AI void kernel_q6(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, const uint8_t *p,
                  int64_t nb, __mmask16 m, const int NX) {
    __m512 acc[8];
    for (int i = 0; i < NX; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *pb = p + b * PBLK;
        __m512i s0[8], s1[8];
        for (int i = 0; i < NX; i++) {
            const blk_q8x *xb = xq + i * ldxq + b;
            s0[i] = _mm512_set1_epi32(-32 * xb->sum[0]);
            s1[i] = _mm512_set1_epi32(-32 * xb->sum[1]);
        }
        for (int g = 0; g < 4; g++) {
            const __m512i w0 = _mm512_load_si512((const void *)(pb + 64 * g));
            const __m512i w1 = _mm512_load_si512((const void *)(pb + 64 * (g + 4)));
            for (int i = 0; i < NX; i++) {
                const int8_t *q = xq[i * ldxq + b].qs;
                s0[i] = _mm512_dpbusd_epi32(s0[i], w0, _mm512_set1_epi32(load4(q + 4 * g)));
                s1[i] = _mm512_dpbusd_epi32(s1[i], w1, _mm512_set1_epi32(load4(q + 16 + 4 * g)));
            }
        }
        const __m512 d0 = _mm512_load_ps((const float *)(pb + 512));
        const __m512 d1 = _mm512_load_ps((const float *)(pb + 576));
        for (int i = 0; i < NX; i++) {
            const __m512 dx = _mm512_set1_ps(xq[i * ldxq + b].d);
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0[i]), _mm512_mul_ps(d0, dx), acc[i]);
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1[i]), _mm512_mul_ps(d1, dx), acc[i]);
        }
    }
    for (int i = 0; i < NX; i++) _mm512_mask_storeu_ps(y + i * ldy, m, acc[i]);
}

AI void kernel_dt(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, const uint8_t *p,
                  int64_t nb, __mmask16 m, const int NX, dtype dt) {
    if (dt == DT_Q6_K) kernel_q6(y, ldy, xq, ldxq, p, nb, m, NX);
    else if (dt == DT_Q8_0) kernel(y, ldy, xq, ldxq, p, nb, m, NX, 128, 0);
    else if (dt == DT_Q4_0) kernel(y, ldy, xq, ldxq, p, nb, m, NX, 8, 0);
    else if (dt == DT_Q5_0) kernel(y, ldy, xq, ldxq, p, nb, m, NX, 16, 0);
    else kernel(y, ldy, xq, ldxq, p, nb, m, NX, 0, 1);
}

/* y[i*ldy + r] = Σ_c W[r, c]·x̂_i[c] for i < n, r in [r0, r1) (see the file comment).
 * scratch: cpu_a5_gemm_q_scratch(W.cols) bytes, any alignment. cols < 2^31 / 16. */
void cpu_a5_gemm_q(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int n,
                   const wk_weight *W, int64_t r0, int64_t r1, void *scratch) {
    const int64_t nb = W->cols / QK;
    uint8_t *p = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    for (int64_t r = r0; r < r1; r += PR) {
        const int nr = r1 - r < PR ? (int)(r1 - r) : PR;
        const __mmask16 m = (__mmask16)((1u << nr) - 1u);
        repack(p, p + nb * PBLK, W, r, nr);
        int i = 0;
        for (; i + 8 <= n; i += 8)
            kernel_dt(y + i * ldy + r, ldy, xq + i * ldxq, ldxq, p, nb, m, 8, W->dt);
        for (; i + 4 <= n; i += 4)
            kernel_dt(y + i * ldy + r, ldy, xq + i * ldxq, ldxq, p, nb, m, 4, W->dt);
        for (; i < n; i++)
            kernel_dt(y + i * ldy + r, ldy, xq + i * ldxq, ldxq, p, nb, m, 1, W->dt);
    }
}
