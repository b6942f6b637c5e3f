/* gemmq_pack.h — the weight side of the integer prefill GEMMs (gemmq_avx2.c, gemmq_avx512.c):
 * quantized rows unpacked to unsigned values plus two f32 terms per 32-value block, written
 * into a panel's per-block slots. Both files include it (AVX2-level instructions only, so it
 * compiles under either file's flags); each then transposes the unpacked rows into its own
 * panel layout (8 rows per ymm group or 16 per zmm group).
 *
 * Values and terms per type (the kernels remove the offsets through activation sums):
 *   Q8_0  w + 128 (w ^ 0x80)          dw = d           mn = 0
 *   Q4_0  nibble q (value q − 8)      dw = d           mn = 0
 *   Q5_0  q (value q − 16)            dw = d           mn = 0
 *   Q4_K  nibble q of sub-block b%8   dw = d·sc        mn = dmin·m
 *   Q6_K  q (value q − 32)            dw = d·scale of values 0..15, mn = that of 16..31 */
#ifndef WICK_KERNELS_CPU_GEMMQ_PACK_H
#define WICK_KERNELS_CPU_GEMMQ_PACK_H
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/quant_row1.h"

/* Row `row` of W to cols bytes at v; block b's terms to dw[b·st], mn[b·st]. */
static inline void gemmq_unpack_row(const wk_weight *W, const uint8_t *row, uint8_t *v, float *dw,
                                    float *mn, size_t st) {
    const int64_t nb = W->cols / QK;
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
    case DT_Q5_0: {
        const size_t bb = dtype_block_bytes(W->dt);
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *w = row + (size_t)b * bb;
            const __m256i q = W->dt == DT_Q4_0 ? row1_q4_0_values((const blk_q4_0 *)w)
                                               : row1_q5_0_values((const blk_q5_0 *)w);
            _mm256_storeu_si256((__m256i *)(v + QK * b), q);
            uint16_t d;
            memcpy(&d, w, 2); /* both blocks start with their f16 d */
            dw[b * st] = f16_to_f32(d);
            mn[b * st] = 0.0f;
        }
        break;
    }
    case DT_Q6_K:
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
    default: /* DT_Q4_K */
        for (int64_t B = 0; B < nb / 8; B++) {
            const blk_q4_k *w = (const blk_q4_k *)row + B;
            const float d = f16_to_f32(w->d), dmin = f16_to_f32(w->dmin);
            const __m256i m = _mm256_set1_epi8(0x0F);
            for (int k = 0; k < 4; k++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(w->qs + 32 * k));
                uint8_t *o = v + QKK * B + 64 * k;
                _mm256_storeu_si256((__m256i *)o, _mm256_and_si256(q, m));
                _mm256_storeu_si256((__m256i *)(o + 32), _mm256_and_si256(_mm256_srli_epi16(q, 4), m));
            }
            for (int s = 0; s < 8; s++) {
                int sc, mm;
                quant_q4k_scale(w->scales, s, &sc, &mm);
                dw[(8 * B + s) * st] = d * (float)sc;
                mn[(8 * B + s) * st] = dmin * (float)mm;
            }
        }
        break;
    }
}

/* Rows [r, r + nr) of W unpacked to tmp (pr rows of cols bytes; rows nr..pr−1 zero) and their
 * terms into the panel p: block b's dw of row j at float (b·pblk + dw_off)/4 + j, mn likewise
 * at mn_off (zero for missing rows). */
static inline void gemmq_unpack_rows(uint8_t *p, uint8_t *tmp, const wk_weight *W, int64_t r,
                                     int nr, int pr, size_t pblk, size_t dw_off, size_t mn_off) {
    const int64_t nb = W->cols / QK, cols = W->cols;
    const size_t rb = dtype_row_bytes(W->dt, cols);
    for (int j = 0; j < pr; j++) {
        if (j < nr) {
            gemmq_unpack_row(W, (const uint8_t *)W->data + (size_t)(r + j) * rb, tmp + j * cols,
                             (float *)(p + dw_off) + j, (float *)(p + mn_off) + j, pblk / sizeof(float));
        } else {
            memset(tmp + j * cols, 0, (size_t)cols);
            for (int64_t b = 0; b < nb; b++) {
                ((float *)(p + b * pblk + dw_off))[j] = 0.0f;
                ((float *)(p + b * pblk + mn_off))[j] = 0.0f;
            }
        }
    }
}
#endif
