/* attn_tile.h — tiled causal attention (flash-attention style) for one KV head and a block
 * of query rows, written once in plain C and compiled by each ISA file with its own flags
 * (the fixed 16-key tile makes every inner loop a whole number of vectors, which GCC
 * vectorises). The including file defines ATT_FN (the function name) and provides
 *   static inline float att_exp_sum16(float *s, float m)   s[j] = exp(s[j] − m), returns Σ.
 *
 * What it computes: for query rows i in [i0, i1) (position p = pos0 + i) and the `group`
 * query heads h = kvh·group .. +group−1 that share KV head kvh, the softmax(q·kᵀ·scale)·V of
 * kernels.h's attention. Keys are visited in tiles of 16: each tile of K is transposed once
 * into Kt (head_dim × 16) and then used by every query row and head of the block, so the
 * block reads K and V once (the "grouped KV heads" reuse). Softmax is online: per query a
 * running max m, a running sum l and the unnormalised output, kept directly in `out` and
 * rescaled by exp(m_old − m_new) when the max grows; no score matrix, no scratch memory.
 *
 * Keys and values come from the paged cache (kernels.h wk_kv_layer): tiles start at multiples
 * of 16 positions and block sizes are multiples of 16, so a tile's rows are consecutive
 * within one block. Rows stored as f16 / bf16 / q8_0 are widened to f32 when the tile is
 * loaded, with the including file's ATT_ROW_TO_F32 (its cpu_isa row_to_f32).
 *
 * Not here: threading and the choice of blocks (cpu.c), head_dim > ATT_MAX_HD (cpu.c keeps
 * the row-at-a-time kernel for those). */
#include <math.h>
#include <string.h>

#define ATT_KB 16
#define ATT_MAX_HD CPU_ATT_MAX_HD
#define ATT_MAX_R CPU_ATT_MAX_R /* query vectors (rows × heads) per block */

/* Hooks an ISA file may define before including this file (with its own intrinsics):
 *   att_scores(s, qp, Kt, hd): s[u][t] = Σ_d qp[u][d]·Kt[d·16 + t] for u < ATT_RB
 *   att_pv(op, corr, s, vj, nk, hd): op[u][d] = op[u][d]·corr[u] + Σ_{t<nk} s[u][t]·vj[t·hd + d]
 *     (hd a multiple of 16)
 * and, defining ATT_HAVE_KT, att_load_kt(Kt, Kb, row_bytes, dt, nk, hd): Kt as below straight
 *   from the cache rows at Kb, returning 0 where it does not take that element type / hd.
 * The plain C versions below are the definitions. */
#ifndef ATT_HAVE_HOOKS
static inline void att_scores(float s[][ATT_KB], const float *const *qp, const float *Kt, int hd) {
    for (int u = 0; u < ATT_RB; u++)
        for (int t = 0; t < ATT_KB; t++) s[u][t] = 0.0f;
    for (int d = 0; d < hd; d++)
        for (int u = 0; u < ATT_RB; u++)
            for (int t = 0; t < ATT_KB; t++) s[u][t] += qp[u][d] * Kt[d * ATT_KB + t];
}
static inline void att_pv(float *const *op, const float *corr, float s[][ATT_KB], const float *vj,
                          int nk, int hd) {
    for (int d0 = 0; d0 < hd; d0 += 16) {
        float acc[ATT_RB][16];
        for (int u = 0; u < ATT_RB; u++)
            for (int e = 0; e < 16; e++) acc[u][e] = op[u][d0 + e] * corr[u];
        for (int t = 0; t < nk; t++)
            for (int u = 0; u < ATT_RB; u++)
                for (int e = 0; e < 16; e++) acc[u][e] += s[u][t] * vj[(size_t)t * hd + d0 + e];
        for (int u = 0; u < ATT_RB; u++)
            for (int e = 0; e < 16; e++) op[u][d0 + e] = acc[u][e];
    }
}
#endif

/* Read by the padding query vectors of a short last group. */
static const float att_zero[ATT_MAX_HD] __attribute__((aligned(64)));

/* Rows [i0, i1) of span `sp` (positions sp->pos0 + i), query heads of KV head kvh. */
static void ATT_FN(float *out, const float *q, const wk_kv_layer *kv, const wk_span *sp, int i0,
                   int i1, int kvh, int n_head, int group, int hd, int window, float scale,
                   float softcap) {
    float Kt[ATT_MAX_HD * ATT_KB] __attribute__((aligned(64)));
    float Kf[ATT_KB * ATT_MAX_HD] __attribute__((aligned(64))); /* widened K or V rows */
    float Vf[ATT_KB * ATT_MAX_HD] __attribute__((aligned(64)));
    float mx[ATT_MAX_R], sum[ATT_MAX_R];
    float att_sink[ATT_MAX_HD] __attribute__((aligned(64))); /* padding vectors' outputs */
    const int pos0 = sp->pos0, bs = kv->block_size;
    const int R = (i1 - i0) * group;
    for (int r = 0; r < R; r++) {
        const int i = sp->row0 + i0 + r / group, h = kvh * group + r % group;
        memset(out + ((size_t)i * n_head + h) * hd, 0, sizeof(float) * (size_t)hd);
        mx[r] = -INFINITY;
        sum[r] = 0.0f;
    }
    /* keys any row of the block can see, from a multiple of the tile size */
    const int plast = pos0 + i1 - 1;
    int jlo = 0;
    if (window > 0 && pos0 + i0 - window + 1 > 0) jlo = (pos0 + i0 - window + 1) / ATT_KB * ATT_KB;
    for (int j0 = jlo; j0 <= plast; j0 += ATT_KB) {
        const int nk = plast - j0 + 1 < ATT_KB ? plast - j0 + 1 : ATT_KB;
        const size_t off = (size_t)sp->blocks[j0 / bs] * kv->block_bytes +
                           ((size_t)kvh * bs + (size_t)(j0 % bs)) * kv->row_bytes;
        const char *Kb = (const char *)kv->k + off, *Vb = (const char *)kv->v + off;
        const float *K = (const float *)Kb, *vj = (const float *)Vb;
        /* this KV head's rows two tiles on, asked for now: decode at depth streams 2 KiB pieces
           (16 rows of a block) from memory, which the hardware prefetchers left waiting
           (decode at 4k keys 1.12-1.23x faster with this) */
        if (j0 + 2 * ATT_KB <= plast) {
            const int jn = j0 + 2 * ATT_KB;
            const size_t offn = (size_t)sp->blocks[jn / bs] * kv->block_bytes +
                                ((size_t)kvh * bs + (size_t)(jn % bs)) * kv->row_bytes;
            for (size_t b = 0; b < (size_t)ATT_KB * kv->row_bytes; b += 64) {
                __builtin_prefetch((const char *)kv->k + offn + b);
                __builtin_prefetch((const char *)kv->v + offn + b);
            }
        }
        int kt_done = 0;
#ifdef ATT_HAVE_KT
        kt_done = att_load_kt(Kt, Kb, kv->row_bytes, kv->dt, nk, hd);
#endif
        if (kv->dt != DT_F32) {
            for (int t = 0; t < nk; t++) {
                wk_weight wv = {Vb + (size_t)t * kv->row_bytes, kv->dt, 1, hd, NULL};
                ATT_ROW_TO_F32(Vf + (size_t)t * hd, &wv, 0);
                if (kt_done) continue;
                wk_weight wk = {Kb + (size_t)t * kv->row_bytes, kv->dt, 1, hd, NULL};
                ATT_ROW_TO_F32(Kf + (size_t)t * hd, &wk, 0);
            }
            K = Kf;
            vj = Vf;
        }
        for (int d = 0; !kt_done && d < hd; d++)
            for (int t = 0; t < ATT_KB; t++)
                Kt[d * ATT_KB + t] = t < nk ? K[(size_t)t * hd + d] : 0.0f;
        /* ATT_RB query vectors at a time: their dot products and output updates are
           independent chains, which hides the FMA latency one vector alone would expose */
        for (int r0 = 0; r0 < R; r0 += ATT_RB) {
            const float *qp[ATT_RB];
            float *op[ATT_RB];
            float s[ATT_RB][ATT_KB] __attribute__((aligned(64)));
            float corr[ATT_RB];
            int vis[ATT_RB], any = 0;
            for (int u = 0; u < ATT_RB; u++) {
                const int r = r0 + u;
                vis[u] = 0;
                qp[u] = att_zero;
                op[u] = att_sink;
                if (r >= R) continue;
                const int i = i0 + r / group, h = kvh * group + r % group;
                const int p = pos0 + i;
                const int lo = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
                if (j0 > p || j0 + nk <= lo) continue; /* nothing of this tile is visible */
                vis[u] = any = 1;
                qp[u] = q + ((size_t)(sp->row0 + i) * n_head + h) * hd;
                op[u] = out + ((size_t)(sp->row0 + i) * n_head + h) * hd;
            }
            if (!any) continue;
            att_scores(s, qp, Kt, hd);
            for (int u = 0; u < ATT_RB; u++) {
                corr[u] = 1.0f;
                if (!vis[u]) { /* contributes nothing, keeps its state */
                    for (int t = 0; t < ATT_KB; t++) s[u][t] = 0.0f;
                    continue;
                }
                const int r = r0 + u, p = pos0 + i0 + r / group;
                const int lo = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
                float m = mx[r];
                for (int t = 0; t < ATT_KB; t++) {
                    const int j = j0 + t;
                    float v = s[u][t] * scale;
                    if (softcap > 0) v = tanhf(v / softcap) * softcap; /* Gemma 2 */
                    s[u][t] = (t < nk && j <= p && j >= lo) ? v : -INFINITY;
                    m = s[u][t] > m ? s[u][t] : m;
                }
                corr[u] = expf(mx[r] - m); /* 0 on the first visible tile */
                const float ts = att_exp_sum16(s[u], m);
                sum[r] = sum[r] * corr[u] + ts;
                mx[r] = m;
            }
            if (hd % 16 == 0) {
                att_pv(op, corr, s, vj, nk, hd);
            } else {
                for (int u = 0; u < ATT_RB; u++) {
                    if (!vis[u]) continue;
                    for (int d = 0; d < hd; d++) op[u][d] *= corr[u];
                    for (int t = 0; t < nk; t++)
                        for (int d = 0; d < hd; d++) op[u][d] += s[u][t] * vj[(size_t)t * hd + d];
                }
            }
        }
    }
    for (int r = 0; r < R; r++) {
        const int i = sp->row0 + i0 + r / group, h = kvh * group + r % group;
        float *o = out + ((size_t)i * n_head + h) * hd;
        const float inv = sum[r] > 0.0f ? 1.0f / sum[r] : 0.0f;
        for (int d = 0; d < hd; d++) o[d] *= inv;
    }
}
