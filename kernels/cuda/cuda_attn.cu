/* cuda_attn.cu — the paged KV cache ops of the CUDA table: kv_store and attention over the
 * spans of a batch (varlen, GQA, sliding window), for KV elements F32, F16, BF16 and Q8_0.
 *
 * The spans arrive as host arrays whose block tables are host pointers (kernels.h); each call
 * packs them (span records, every span's block ids, a row -> span map) and uploads the pack
 * to per-thread device scratch, skipping the copy when the pack equals the previous one
 * (cu_upload): the forward pass gives every layer the same spans.
 *
 * kv_store: one warp per (row, KV head, K or V); Q8_0 rows are quantized 32 values per warp
 * step with the reference's operations (amax, d = f16(amax/127), q = rint(x·(1/d))), so the
 * stored bytes equal kernels_kv_row_from_f32's.
 * attention: one block of ATT_WARPS warps per (row, query head). Each warp takes every
 * ATT_WARPS-th visible key, keeps an online softmax (running max, sum, weighted V in shared
 * memory), and the warps' partial results are merged at the end. Scores are f32 dot products
 * of the query with the key widened exactly to f32, as the reference reads them.
 * A later milestone adds split-K decode and tiled prefill (flash-attention style).
 *
 * Not here: the RoPE and the projections (cuda_ops.cu, cuda_matmul.cu). */
#include "kernels/cuda/cuda_internal.cuh"

#define ATT_WARPS 4

typedef struct cu_span {
    int row0, n, pos0;
    int boff; /* first block id of the span in the packed block array */
} cu_span;

typedef struct cu_spans {
    const cu_span *sp;
    const int32_t *blocks;
    const int32_t *rowmap; /* (rows) span index of each row, −1 for a row of no span */
    int rows;
} cu_spans;

/* Packs and uploads the spans; false (noted) on failure. rows = 0 when no span has rows. */
static bool spans_upload(const cu_run *r, const wk_span *spans, int n_spans, int bs,
                         cu_spans *out) {
    memset(out, 0, sizeof *out);
    long long rows = 0, nblk = 0;
    for (int s = 0; s < n_spans; s++) {
        if (spans[s].n <= 0) continue;
        if (spans[s].row0 + (long long)spans[s].n > rows) rows = spans[s].row0 + (long long)spans[s].n;
        nblk += (spans[s].pos0 + spans[s].n - 1) / bs + 1;
    }
    if (rows == 0) return true;
    const size_t bytes = sizeof(cu_span) * (size_t)n_spans + sizeof(int32_t) * (size_t)(nblk + rows);
    char *pack = (char *)cu_pack_buf(bytes);
    if (!pack) return false;
    cu_span *sp = (cu_span *)pack;
    int32_t *blocks = (int32_t *)(sp + n_spans), *rowmap = blocks + nblk;
    for (long long i = 0; i < rows; i++) rowmap[i] = -1;
    int boff = 0;
    for (int s = 0; s < n_spans; s++) {
        const wk_span *w = &spans[s];
        sp[s] = (cu_span){w->row0, w->n, w->pos0, boff};
        if (w->n <= 0) continue;
        const int nb = (w->pos0 + w->n - 1) / bs + 1;
        memcpy(blocks + boff, w->blocks, sizeof(int32_t) * (size_t)nb);
        boff += nb;
        for (int i = 0; i < w->n; i++) rowmap[w->row0 + i] = s;
    }
    const char *d = (const char *)cu_upload(r, CU_SLOT_SPANS, pack, bytes);
    if (!d) return false;
    out->sp = (const cu_span *)d;
    out->blocks = (const int32_t *)(d + sizeof(cu_span) * (size_t)n_spans);
    out->rowmap = out->blocks + nblk;
    out->rows = (int)rows;
    return true;
}

/* ---- kv_store ---- */

__global__ void k_kv_store(uint8_t *kb, uint8_t *vb, int dt, int bs, size_t row_bytes,
                           size_t block_bytes, const float *k, const float *v, cu_spans S,
                           int n_kv, int hd) {
    const int lane = threadIdx.x & 31;
    const long long total = (long long)S.rows * n_kv * 2;
    const long long warps = (long long)gridDim.x * (blockDim.x / 32);
    for (long long it = (long long)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5); it < total;
         it += warps) {
        const int which = (int)(it & 1);
        const long long rh = it >> 1;
        const int row = (int)(rh / n_kv), h = (int)(rh % n_kv);
        const int si = S.rowmap[row];
        if (si < 0) continue; /* the whole warp: it shares `it` */
        const cu_span sp = S.sp[si];
        const int p = sp.pos0 + row - sp.row0;
        uint8_t *dst = (which ? vb : kb) + (size_t)S.blocks[sp.boff + p / bs] * block_bytes +
                       ((size_t)h * bs + (size_t)(p % bs)) * row_bytes;
        const float *src = (which ? v : k) + ((size_t)row * n_kv + h) * (size_t)hd;
        switch (dt) {
        case DT_F32:
            for (int t = lane; t < hd; t += 32) ((float *)dst)[t] = src[t];
            break;
        case DT_F16:
            for (int t = lane; t < hd; t += 32) ((uint16_t *)dst)[t] = cu_f2h(src[t]);
            break;
        case DT_BF16:
            for (int t = lane; t < hd; t += 32) ((uint16_t *)dst)[t] = cu_f2bf(src[t]);
            break;
        case DT_Q8_0:
            for (int b = 0; b < hd / 32; b++) {
                const float x = src[32 * b + lane];
                const float amax = cu_warp_max(fabsf(x));
                const uint16_t d16 = cu_f2h(amax / 127.0f);
                const float d = cu_h2f(d16), id = d > 0.0f ? 1.0f / d : 0.0f;
                const float q = rintf(x * id);
                uint8_t *blk = dst + (size_t)b * 34;
                blk[2 + lane] = (uint8_t)(int8_t)(q > 127.0f ? 127 : q < -127.0f ? -127 : q);
                if (lane == 0) *(uint16_t *)blk = d16;
            }
            break;
        default: break;
        }
    }
}

void cu_kv_store(const cu_run *r, const wk_kv_layer *kv, const float *k, const float *v,
                 const wk_span *spans, int n_spans, int n_kv, int head_dim) {
    if (n_spans <= 0 || n_kv <= 0 || head_dim <= 0) return;
    cu_spans S;
    if (!spans_upload(r, spans, n_spans, kv->block_size, &S) || S.rows == 0) return;
    const long long warps = (long long)S.rows * n_kv * 2;
    k_kv_store<<<cu_grid(warps, CU_THREADS / 32), CU_THREADS, 0, r->s>>>(
        (uint8_t *)kv->k, (uint8_t *)kv->v, kv->dt, kv->block_size, kv->row_bytes,
        kv->block_bytes, k, v, S, n_kv, head_dim);
    CU_LAUNCHED("kv_store");
}

/* ---- attention ---- */

__global__ void __launch_bounds__(ATT_WARPS * 32)
    k_attention(float *out, const float *q, const uint8_t *kb, const uint8_t *vb, int dt, int bs,
                size_t row_bytes, size_t block_bytes, cu_spans S, int n_head, int group, int hd,
                int window, float scale, float softcap) {
    extern __shared__ float sm[];
    float *sq = sm;                          /* (hd) the query */
    float *acc_all = sm + hd;                /* (ATT_WARPS, hd) each warp's Σ w·v */
    float *mw = acc_all + ATT_WARPS * hd;    /* (ATT_WARPS) each warp's running max */
    float *lw = mw + ATT_WARPS;              /* (ATT_WARPS) each warp's Σ w */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float *acc = acc_all + warp * hd;
    const long long total = (long long)S.rows * n_head;
    for (long long item = blockIdx.x; item < total; item += gridDim.x) {
        const int row = (int)(item / n_head), h = (int)(item % n_head);
        const int si = S.rowmap[row];
        if (si < 0) continue; /* the whole block: it shares `item` */
        const cu_span sp = S.sp[si];
        const int p = sp.pos0 + row - sp.row0;
        const int j0 = (window > 0 && p - window + 1 > 0) ? p - window + 1 : 0;
        const int kvh = h / group;
        const float *qh = q + ((long long)row * n_head + h) * hd;
        __syncthreads(); /* the previous item's merge has read the shared arrays */
        for (int t = threadIdx.x; t < hd; t += blockDim.x) sq[t] = qh[t];
        for (int t = lane; t < hd; t += 32) acc[t] = 0.0f;
        __syncthreads();
        float m = -INFINITY, l = 0.0f;
        const int32_t *bl = S.blocks + sp.boff;
        for (int j = j0 + warp; j <= p; j += ATT_WARPS) {
            const size_t off = (size_t)bl[j / bs] * block_bytes +
                               ((size_t)kvh * bs + (size_t)(j % bs)) * row_bytes;
            const uint8_t *kr = kb + off, *vr = vb + off;
            float d = 0.0f;
            for (int t = lane; t < hd; t += 32) d = fmaf(sq[t], cu_kv_elem(dt, kr, t), d);
            float s = cu_warp_sum(d) * scale; /* the same value in every lane */
            if (softcap > 0) s = tanhf(s / softcap) * softcap; /* Gemma 2 */
            if (s > m) { /* rescale what was accumulated under the old max */
                const float corr = expf(m - s);
                l *= corr;
                for (int t = lane; t < hd; t += 32) acc[t] *= corr;
                m = s;
            }
            const float w = expf(s - m);
            l += w;
            for (int t = lane; t < hd; t += 32) acc[t] = fmaf(w, cu_kv_elem(dt, vr, t), acc[t]);
        }
        if (lane == 0) {
            mw[warp] = m;
            lw[warp] = l;
        }
        __syncthreads();
        /* merge: a warp that saw no key has m = −inf, l = 0 and contributes exp(−inf) = 0 */
        float M = mw[0];
        for (int w = 1; w < ATT_WARPS; w++) M = fmaxf(M, mw[w]);
        float f[ATT_WARPS], L = 0.0f;
        for (int w = 0; w < ATT_WARPS; w++) {
            f[w] = expf(mw[w] - M);
            L = fmaf(lw[w], f[w], L);
        }
        float *o = out + ((long long)row * n_head + h) * hd;
        for (int t = threadIdx.x; t < hd; t += blockDim.x) {
            float a = 0.0f;
            for (int w = 0; w < ATT_WARPS; w++) a = fmaf(acc_all[w * hd + t], f[w], a);
            o[t] = a / L;
        }
    }
}

void cu_attention(const cu_run *r, float *out, const float *q, const wk_kv_layer *kv,
                  const wk_span *spans, int n_spans, int n_head, int n_kv, int head_dim,
                  int window, float scale, float softcap) {
    if (n_spans <= 0 || n_head <= 0 || n_kv <= 0 || head_dim <= 0) return;
    if (head_dim > 1024) { /* engines refuse such models; this guards the shared memory size */
        cu_note_fail(WICK_ERR_UNSUPPORTED, "attention: head_dim > 1024");
        return;
    }
    cu_spans S;
    if (!spans_upload(r, spans, n_spans, kv->block_size, &S) || S.rows == 0) return;
    const long long items = (long long)S.rows * n_head;
    const size_t smem = sizeof(float) * ((size_t)(ATT_WARPS + 1) * head_dim + 2 * ATT_WARPS);
    const unsigned grid = items < (1 << 20) ? (unsigned)items : (1u << 20);
    k_attention<<<grid, ATT_WARPS * 32, smem, r->s>>>(
        out, q, (const uint8_t *)kv->k, (const uint8_t *)kv->v, kv->dt, kv->block_size,
        kv->row_bytes, kv->block_bytes, S, n_head, n_head / n_kv, head_dim, window, scale, softcap);
    CU_LAUNCHED("attention");
}
