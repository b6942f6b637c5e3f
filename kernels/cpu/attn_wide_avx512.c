/* attn_wide_avx512.c — causal attention for a block of many query vectors (prefill) with
 * AVX-512, the query vectors of the block in the 16 lanes of a register.
 *
 * Same result as attn_tile.h's kernel (kernels.h's attention: softmax(q·kᵀ·scale)·V over the
 * keys each row may see), up to summation order; it serves blocks of 16 or more query vectors
 * (rows × the query heads of one KV head) without soft-capping, head_dim a multiple of 16 and
 * at most CPU_ATT_WIDE_MAX_HD. Why a second kernel: attn_tile.h puts the 16 keys of a tile in
 * the lanes, so every query vector pays a scalar softmax step (max, masks, one expf) per 16
 * keys and four FMA chains per score, which held prefill at depth to ~15% of the FMA rate
 * (pp512 at 16k keys: 48 tok/s on 2 Zen 5 cores). Here:
 *
 *   scores   S[t][u] = Σ_d K[t][d]·Qᵀ[d][u] — Qᵀ (head_dim × 16 lanes) is made once per block,
 *            each key element is one broadcast, 8 keys are 8 independent FMA chains;
 *   softmax  per tile of up to 64 keys, over the lanes: the running max, the causal / window
 *            masks (lane positions against the key's), the correction exp(m_old − m_new) and
 *            the exponentials are whole-register operations;
 *   P·V      Oᵀ[d][u] = Oᵀ[d][u]·corr[u] + Σ_t V[t][d]·P[t][u]: the output kept transposed
 *            like Q (head_dim × 16 lanes per group, 4 KiB at head_dim 64, in the scratch), 16 values of d
 *            as 16 FMA chains over the tile's keys, each V element one broadcast, P[t] one
 *            register; transposed back, divided by the softmax sums, at the end.
 *
 * K and V rows are widened to f32 once per tile (the table's row_to_f32: f16 / bf16 / q8_0
 * as the cache holds them) and serve every lane group of the block; a tile's rows may come
 * from several cache blocks (16 positions each by default).
 * Measured on 2 Zen 5 cores (0.5B Q4_0 file, `wick bench generate -p 512 -n 0`, this kernel
 * against attn_tile.h alternating, WICK_CPU_ATT_WIDE=0/1): pp512 678 → 800-885 tok/s at depth 0,
 * 135-177 → 378-411 at depth 4096. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/cpu_simd_exp.h"

#define WKT 64 /* keys per tile */

/* S[t·16 + u] = Σ_d K[t·hd + d]·Qt[d·16 + u] for t < nk8 (a multiple of 8). */
static void scores(float *S, const float *K, const float *Qt, int nk8, int hd) {
    for (int t0 = 0; t0 < nk8; t0 += 8) {
        __m512 a[8];
        for (int k = 0; k < 8; k++) a[k] = _mm512_setzero_ps();
        const float *k0 = K + (size_t)t0 * hd;
        for (int d = 0; d < hd; d++) {
            const __m512 qd = _mm512_load_ps(Qt + 16 * d);
            for (int k = 0; k < 8; k++) a[k] = _mm512_fmadd_ps(_mm512_set1_ps(k0[k * hd + d]), qd, a[k]);
        }
        for (int k = 0; k < 8; k++) _mm512_store_ps(S + 16 * (t0 + k), a[k]);
    }
}

/* Ot[d·16 + u] = Ot[d·16 + u]·corr[u] + Σ_{t<nk} V[t·hd + d]·P[t·16 + u] for every d < hd
 * (a multiple of 16): 16 values of d at a time, 16 independent FMA chains over the keys. */
static void pv(float *Ot, const __m512 corr, const float *P, const float *V, int nk, int hd) {
    for (int d0 = 0; d0 < hd; d0 += 16) {
        __m512 a[16];
        for (int k = 0; k < 16; k++) a[k] = _mm512_mul_ps(_mm512_load_ps(Ot + 16 * (d0 + k)), corr);
        for (int t = 0; t < nk; t++) {
            const __m512 p = _mm512_load_ps(P + 16 * t);
            const float *v = V + (size_t)t * hd + d0;
            for (int k = 0; k < 16; k++) a[k] = _mm512_fmadd_ps(_mm512_set1_ps(v[k]), p, a[k]);
        }
        for (int k = 0; k < 16; k++) _mm512_store_ps(Ot + 16 * (d0 + k), a[k]);
    }
}

size_t cpu_a5_attn_wide_scratch(int hd) {
    /* Qt and Ot (a head_dim × 16 tile per lane group), K and V of a tile, the scores */
    return sizeof(float) * ((size_t)2 * (CPU_ATT_WIDE_MAX_R / 16) * hd * 16 + (size_t)2 * WKT * hd +
                            (size_t)WKT * 16) + 64;
}

void cpu_a5_attn_wide(float *out, const float *q, const wk_kv_layer *kv, const wk_span *sp,
                      int i0, int i1, int kvh, int n_head, int group, int hd, int window,
                      float scale, void (*row_to_f32)(float *, const wk_weight *, int64_t),
                      void *scratch) {
    enum { MR = CPU_ATT_WIDE_MAX_R };
    const int R = (i1 - i0) * group, NG = (R + 15) / 16, bs = kv->block_size;
    float *Qt = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63); /* group g at g·hd·16 */
    float *Ot = Qt + (size_t)(MR / 16) * hd * 16;
    float *Kf = Ot + (size_t)(MR / 16) * hd * 16, *Vf = Kf + (size_t)WKT * hd, *S = Vf + (size_t)WKT * hd;
    float mx[MR] __attribute__((aligned(64))), sum[MR] __attribute__((aligned(64)));
    int32_t pos[MR] __attribute__((aligned(64))), lo[MR] __attribute__((aligned(64)));
    memset(Ot, 0, sizeof(float) * (size_t)NG * hd * 16);
    for (int r = 0; r < NG * 16; r++) {
        float *qt = Qt + (size_t)(r / 16) * hd * 16 + r % 16;
        mx[r] = -INFINITY, sum[r] = 0.0f;
        if (r >= R) { /* padding lane: sees no key */
            for (int d = 0; d < hd; d++) qt[16 * d] = 0.0f;
            pos[r] = -1, lo[r] = 0;
            continue;
        }
        const int i = i0 + r / group, h = kvh * group + r % group, row = sp->row0 + i;
        const float *qp = q + ((size_t)row * n_head + h) * hd;
        for (int d = 0; d < hd; d++) qt[16 * d] = qp[d];
        pos[r] = sp->pos0 + i;
        lo[r] = window > 0 && pos[r] - window + 1 > 0 ? pos[r] - window + 1 : 0;
    }
    const int pfirst = sp->pos0 + i0, plast = sp->pos0 + i1 - 1;
    int jlo = 0;
    if (window > 0 && pfirst - window + 1 > 0) jlo = (pfirst - window + 1) / 16 * 16;
    const __m512 ninf = _mm512_set1_ps(-INFINITY), vscale = _mm512_set1_ps(scale);
    for (int j0 = jlo; j0 <= plast;) {
        const int nk = plast - j0 + 1 < WKT ? plast - j0 + 1 : WKT;
        const int nk8 = (nk + 7) / 8 * 8;
        for (int t = 0; t < nk; t++) { /* rows of one or more cache blocks */
            const int j = j0 + t;
            const size_t off = (size_t)sp->blocks[j / bs] * kv->block_bytes +
                               ((size_t)kvh * bs + (size_t)(j % bs)) * kv->row_bytes;
            const wk_weight wk = {(const char *)kv->k + off, kv->dt, 1, hd, NULL};
            const wk_weight wv = {(const char *)kv->v + off, kv->dt, 1, hd, NULL};
            row_to_f32(Kf + (size_t)t * hd, &wk, 0);
            row_to_f32(Vf + (size_t)t * hd, &wv, 0);
        }
        memset(Kf + (size_t)nk * hd, 0, sizeof(float) * (size_t)(nk8 - nk) * hd);
        for (int g = 0; g < NG; g++) {
            const __m512i pvec = _mm512_load_si512((const void *)(pos + 16 * g));
            const __m512i lv = _mm512_load_si512((const void *)(lo + 16 * g));
            /* no lane of this group sees a key of the tile: its state stays as it is */
            if (_mm512_reduce_max_epi32(pvec) < j0 || _mm512_reduce_min_epi32(lv) > j0 + nk - 1) continue;
            scores(S, Kf, Qt + (size_t)g * hd * 16, nk8, hd);
            const __m512 mold = _mm512_load_ps(mx + 16 * g);
            __m512 mnew = mold;
            for (int t = 0; t < nk; t++) {
                const __m512i j = _mm512_set1_epi32(j0 + t);
                const __mmask16 vis = _mm512_cmp_epi32_mask(j, pvec, _MM_CMPINT_LE) &
                                      _mm512_cmp_epi32_mask(j, lv, _MM_CMPINT_NLT);
                const __m512 s = _mm512_mask_mul_ps(ninf, vis, _mm512_load_ps(S + 16 * t), vscale);
                _mm512_store_ps(S + 16 * t, s);
                mnew = _mm512_max_ps(mnew, s);
            }
            /* a lane that has seen nothing yet keeps −inf and takes 0 as its reference */
            const __m512 muse = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(mnew, ninf, _CMP_EQ_OQ), mnew,
                                                     _mm512_setzero_ps());
            const __m512 cr = exp512(_mm512_sub_ps(mold, muse));
            __m512 ls = _mm512_setzero_ps();
            for (int t = 0; t < nk; t++) {
                const __m512 e = exp512(_mm512_sub_ps(_mm512_load_ps(S + 16 * t), muse));
                _mm512_store_ps(S + 16 * t, e);
                ls = _mm512_add_ps(ls, e);
            }
            _mm512_store_ps(sum + 16 * g, _mm512_add_ps(_mm512_mul_ps(_mm512_load_ps(sum + 16 * g), cr), ls));
            _mm512_store_ps(mx + 16 * g, mnew);
            pv(Ot + (size_t)g * hd * 16, cr, S, Vf, nk, hd);
        }
        j0 += nk;
    }
    for (int r = 0; r < R; r++) {
        const int i = i0 + r / group, h = kvh * group + r % group, row = sp->row0 + i;
        float *o = out + ((size_t)row * n_head + h) * hd;
        const float *ot = Ot + (size_t)(r / 16) * hd * 16 + r % 16;
        const float inv = sum[r] > 0.0f ? 1.0f / sum[r] : 0.0f;
        for (int d = 0; d < hd; d++) o[d] = ot[16 * d] * inv;
    }
}
