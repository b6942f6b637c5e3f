/* gemmq_avx2.c — prefill matmul for Q4_0 / Q5_0 / Q4_K / Q6_K weights with AVX2 integer dot products
 * (vpmaddubsw + vpmaddwd), for many activation rows at once: the AVX2 counterpart of
 * gemmq_avx512.c (read that file's comment first; this one keeps its layout with 8 weight
 * rows per panel, one per int32 lane of a ymm register).
 *
 *   panel  = 8 weight rows, repacked once per call into the caller's scratch: for each
 *            32-value block, 8 ymm of "4 consecutive values of each of the 8 rows" (u8), then
 *            8 f32 scales dw and 8 f32 second terms mn (Q4_K: the min dmin·m; Q6_K: the scale
 *            of the block's second 16-value group).
 *   kernel = for up to 4 activation rows, per block: 8 vpmaddubsw with the row's 4 activation
 *            bytes broadcast, summed in pairs in int16, widened with vpmaddwd, then
 *            y += f32(isum)·(dw·dx) [Q4_K: − mn·dx·Σx; Q6_K: per 16-value group].
 *
 * No int16 overflow: one vpmaddubsw lane is at most 2·63·127 = 16002 (Q6_K values 0..63,
 * activations within ±127), a pair of them 32004 < 32767. Q8_0 is not here: its bytes stored
 * unsigned (w + 128) would overflow vpmaddubsw; it keeps dequantize + sgemm on AVX2.
 * Each block's integer sum is exactly the one of quant_dot_q8x; zero points enter the integer
 * sums (Q4_0 −8·Σx, Q5_0 −16·Σx, Q6_K −32·Σx of each half), so results match that definition up to the
 * rounding of the f32 accumulation.
 *
 * Not here: threading and activation quantization (cpu.c). Only called on CPUs with AVX2. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/gemmq_pack.h"

#define AI static inline __attribute__((always_inline))
#define PR 8                    /* weight rows per panel (ymm int32 lanes) */
#define PBLK (8 * 32 + 2 * 32)  /* bytes of one repacked 32-value block */

size_t cpu_a2_gemm_q_scratch(int64_t cols) { return (size_t)(cols / QK) * PBLK + PR * (size_t)cols + 32; }

int cpu_a2_gemm_q_supports(dtype dt) {
    return dt == DT_Q4_0 || dt == DT_Q5_0 || dt == DT_Q4_K || dt == DT_Q6_K;
}

/* Rows [r, r + nr) (nr <= 8; missing rows are zero) into panel p, through tmp (8·cols bytes). */
static void repack(uint8_t *p, uint8_t *tmp, const wk_weight *W, int64_t r, int nr) {
    const int64_t nb = W->cols / QK, cols = W->cols;
    gemmq_unpack_rows(p, tmp, W, r, nr, PR, PBLK, 256, 288);
    for (int64_t b = 0; b < nb; b++)
        for (int g = 0; g < 8; g++)
            for (int j = 0; j < PR; j++)
                memcpy(p + b * PBLK + 32 * g + 4 * j, tmp + j * cols + QK * b + 4 * g, 4);
}

AI __m256i bcast4(const int8_t *q) {
    int32_t v;
    memcpy(&v, q, 4);
    return _mm256_set1_epi32(v);
}

/* Σ over groups g0..g0+3 of the block: two pairs of vpmaddubsw summed in int16, widened. */
AI __m256i dot4(const uint8_t *pb, const int8_t *x, int g0) {
    const __m256i w0 = _mm256_load_si256((const __m256i *)(pb + 32 * g0));
    const __m256i w1 = _mm256_load_si256((const __m256i *)(pb + 32 * (g0 + 1)));
    const __m256i w2 = _mm256_load_si256((const __m256i *)(pb + 32 * (g0 + 2)));
    const __m256i w3 = _mm256_load_si256((const __m256i *)(pb + 32 * (g0 + 3)));
    const __m256i a = _mm256_add_epi16(_mm256_maddubs_epi16(w0, bcast4(x + 4 * g0)),
                                       _mm256_maddubs_epi16(w1, bcast4(x + 4 * g0 + 4)));
    const __m256i b = _mm256_add_epi16(_mm256_maddubs_epi16(w2, bcast4(x + 4 * g0 + 8)),
                                       _mm256_maddubs_epi16(w3, bcast4(x + 4 * g0 + 12)));
    const __m256i ones = _mm256_set1_epi16(1);
    return _mm256_add_epi32(_mm256_madd_epi16(a, ones), _mm256_madd_epi16(b, ones));
}

/* y[i*ldy + lane] for i < NX, lanes < nr, from one panel. DT: the weight type. */
AI void kernel(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, const uint8_t *p,
               int64_t nb, int nr, const int NX, const int DT) {
    __m256 acc[4];
    for (int i = 0; i < NX; i++) acc[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *pb = p + b * PBLK;
        const __m256 dw = _mm256_load_ps((const float *)(pb + 256));
        const __m256 mn = _mm256_load_ps((const float *)(pb + 288));
        for (int i = 0; i < NX; i++) {
            const blk_q8x *xb = xq + i * ldxq + b;
            const __m256i s0 = dot4(pb, xb->qs, 0), s1 = dot4(pb, xb->qs, 4);
            const __m256 dx = _mm256_set1_ps(xb->d);
            if (DT == DT_Q6_K) { /* groups 0..15 (g < 4) and 16..31 scale separately */
                const __m256i z0 = _mm256_set1_epi32(-32 * xb->sum[0]), z1 = _mm256_set1_epi32(-32 * xb->sum[1]);
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, z0)), _mm256_mul_ps(dw, dx), acc[i]);
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s1, z1)), _mm256_mul_ps(mn, dx), acc[i]);
            } else {
                const int off = DT == DT_Q4_0 ? 8 : DT == DT_Q5_0 ? 16 : 0;
                const __m256i s = _mm256_add_epi32(_mm256_add_epi32(s0, s1),
                                                   _mm256_set1_epi32(-off * (xb->sum[0] + xb->sum[1])));
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, dx), acc[i]);
                if (DT == DT_Q4_K)
                    acc[i] = _mm256_fnmadd_ps(mn, _mm256_set1_ps(xb->d * (float)(xb->sum[0] + xb->sum[1])), acc[i]);
            }
        }
    }
    for (int i = 0; i < NX; i++) {
        if (nr == PR) {
            _mm256_storeu_ps(y + i * ldy, acc[i]);
        } else {
            float t[PR];
            _mm256_storeu_ps(t, acc[i]);
            memcpy(y + i * ldy, t, sizeof(float) * (size_t)nr);
        }
    }
}

AI void kernel_dt(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, const uint8_t *p,
                  int64_t nb, int nr, const int NX, dtype dt) {
    if (dt == DT_Q4_0) kernel(y, ldy, xq, ldxq, p, nb, nr, NX, DT_Q4_0);
    else if (dt == DT_Q5_0) kernel(y, ldy, xq, ldxq, p, nb, nr, NX, DT_Q5_0);
    else if (dt == DT_Q4_K) kernel(y, ldy, xq, ldxq, p, nb, nr, NX, DT_Q4_K);
    else kernel(y, ldy, xq, ldxq, p, nb, nr, NX, DT_Q6_K);
}

/* y[i*ldy + r] = Σ_c W[r, c]·x̂_i[c] for i < n, r in [r0, r1) (see the file comment).
 * scratch: cpu_a2_gemm_q_scratch(W.cols) bytes, any alignment. */
void cpu_a2_gemm_q(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int n,
                   const wk_weight *W, int64_t r0, int64_t r1, void *scratch) {
    const int64_t nb = W->cols / QK;
    uint8_t *p = (uint8_t *)(((uintptr_t)scratch + 31) & ~(uintptr_t)31);
    for (int64_t r = r0; r < r1; r += PR) {
        const int nr = r1 - r < PR ? (int)(r1 - r) : PR;
        repack(p, p + nb * PBLK, W, r, nr);
        int i = 0;
        for (; i + 4 <= n; i += 4)
            kernel_dt(y + i * ldy + r, ldy, xq + i * ldxq, ldxq, p, nb, nr, 4, W->dt);
        for (; i < n; i++)
            kernel_dt(y + i * ldy + r, ldy, xq + i * ldxq, ldxq, p, nb, nr, 1, W->dt);
    }
}
