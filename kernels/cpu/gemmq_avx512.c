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
#include "kernels/cpu/gemmq_pack.h"

#define AI static inline __attribute__((always_inline))
#define PR 16 /* weight rows per panel (zmm lanes) */

/* Bytes of one repacked 32-value block: 8 zmm of values, dw[16], mn[16]. */
#define PBLK (8 * 64 + 2 * 64)

size_t cpu_a5_gemm_q_scratch(int64_t cols) { return (size_t)(cols / QK) * PBLK + PR * (size_t)cols + 64; }

int cpu_a5_gemm_q_supports(dtype dt) {
    return dt == DT_Q8_0 || dt == DT_Q4_0 || dt == DT_Q5_0 || dt == DT_Q4_K || dt == DT_Q6_K;
}

/* Repacks weight rows [r, r + nr) (nr <= 16; missing rows are zero) into panel p, through
 * tmp (16·cols bytes): rows are unpacked contiguously, then each zmm of the panel gathers
 * the same 4 bytes of the 16 rows. */
static void repack(uint8_t *p, uint8_t *tmp, const wk_weight *W, int64_t r, int nr) {
    const int64_t nb = W->cols / QK, cols = W->cols;
    gemmq_unpack_rows(p, tmp, W, r, nr, PR, PBLK, 512, 576);
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
