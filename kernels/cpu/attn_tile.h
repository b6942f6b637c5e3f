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
 * Not here: threading and the choice of blocks (cpu.c), head_dim > ATT_MAX_HD (cpu.c keeps
 * the row-at-a-time kernel for those). */
#include <math.h>
#include <string.h>

#define ATT_KB 16
#define ATT_MAX_HD CPU_ATT_MAX_HD
#define ATT_MAX_R CPU_ATT_MAX_R /* query vectors (rows × heads) per block */

static void ATT_FN(float *out, const float *q, const float *kc, const float *vc, int i0, int i1,
                   int pos0, int kvh, int n_head, int group, int hd, int kv_cap, int window,
                   float scale) {
    float Kt[ATT_MAX_HD * ATT_KB] __attribute__((aligned(64)));
    float mx[ATT_MAX_R], sum[ATT_MAX_R];
    const float *K = kc + (size_t)kvh * kv_cap * hd, *V = vc + (size_t)kvh * kv_cap * hd;
    const int R = (i1 - i0) * group;
    for (int r = 0; r < R; r++) {
        const int i = i0 + r / group, h = kvh * group + r % group;
        memset(out + ((size_t)i * n_head + h) * hd, 0, sizeof(float) * (size_t)hd);
        mx[r] = -INFINITY;
        sum[r] = 0.0f;
    }
    /* keys any row of the block can see */
    const int plast = pos0 + i1 - 1;
    int jlo = 0;
    if (window > 0 && pos0 + i0 - window + 1 > 0) jlo = pos0 + i0 - window + 1;
    for (int j0 = jlo; j0 <= plast; j0 += ATT_KB) {
        const int nk = plast - j0 + 1 < ATT_KB ? plast - j0 + 1 : ATT_KB;
        for (int d = 0; d < hd; d++)
            for (int t = 0; t < ATT_KB; t++)
                Kt[d * ATT_KB + t] = t < nk ? K[(size_t)(j0 + t) * hd + d] : 0.0f;
        for (int r = 0; r < R; r++) {
            const int i = i0 + r / group, h = kvh * group + r % group;
            const int p = pos0 + i;
            const int lo = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
            if (j0 > p || j0 + nk <= lo) continue; /* nothing of this tile is visible */
            const float *qr = q + ((size_t)i * n_head + h) * hd;
            float s[ATT_KB] __attribute__((aligned(64)));
            for (int t = 0; t < ATT_KB; t++) s[t] = 0.0f;
            for (int d = 0; d < hd; d++) {
                const float qd = qr[d];
                for (int t = 0; t < ATT_KB; t++) s[t] += qd * Kt[d * ATT_KB + t];
            }
            float m = mx[r];
            for (int t = 0; t < ATT_KB; t++) {
                const int j = j0 + t;
                s[t] = (t < nk && j <= p && j >= lo) ? s[t] * scale : -INFINITY;
                m = s[t] > m ? s[t] : m;
            }
            const float corr = expf(mx[r] - m); /* 0 on the first visible tile */
            const float ts = att_exp_sum16(s, m);
            sum[r] = sum[r] * corr + ts;
            mx[r] = m;
            float *o = out + ((size_t)i * n_head + h) * hd;
            const float *vj = V + (size_t)j0 * hd;
            if (hd % 16 == 0) {
                /* 16 output values at a time stay in one register across the tile's keys */
                for (int d0 = 0; d0 < hd; d0 += 16) {
                    float acc[16];
                    for (int e = 0; e < 16; e++) acc[e] = o[d0 + e] * corr;
                    for (int t = 0; t < nk; t++)
                        for (int e = 0; e < 16; e++) acc[e] += s[t] * vj[(size_t)t * hd + d0 + e];
                    for (int e = 0; e < 16; e++) o[d0 + e] = acc[e];
                }
            } else {
                for (int d = 0; d < hd; d++) o[d] *= corr;
                for (int t = 0; t < nk; t++)
                    for (int d = 0; d < hd; d++) o[d] += s[t] * vj[(size_t)t * hd + d];
            }
        }
    }
    for (int r = 0; r < R; r++) {
        const int i = i0 + r / group, h = kvh * group + r % group;
        float *o = out + ((size_t)i * n_head + h) * hd;
        const float inv = sum[r] > 0.0f ? 1.0f / sum[r] : 0.0f;
        for (int d = 0; d < hd; d++) o[d] *= inv;
    }
}
