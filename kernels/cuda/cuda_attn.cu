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
 * attention (k_attn_tile, heads whose width is 32, 64, 96, 128 or 256 and groups of up to 16
 * query heads per KV head): one block of FA_WARPS warps per (row, KV head, split of the
 * row's keys). The block holds the queries of every head of the group in shared memory, so
 * each key and value is read once for the whole group. Each warp takes tiles of 32 keys, one
 * key per lane: the lane computes that key's scores for every head of the group, the tile's
 * online-softmax step (running max and sum per head) is two warp reductions, and the
 * weighted values are summed with one output dimension per lane (each key's weight passed
 * round by a shuffle). The block merges its warps; when a row's keys are split over several
 * blocks (n_split > 1, chosen so that a small batch with long sequences still fills the
 * GPU; the split ranges are computed on the device from the row's position, so the launch
 * does not change as sequences grow), each block writes (Σ w·v, max, Σ w) and
 * k_attn_combine merges the splits. Scores are f32 dot products of the query with the key
 * widened exactly to f32, as the reference reads them; the order of the sums differs.
 * Other head shapes use k_attention: one block per (row, query head), one key per warp step.
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
    /* the row map before the block ids: for a fixed batch shape its place does not move as
       sequences grow into more blocks (a recorded graph keeps the same kernel arguments) */
    cu_span *sp = (cu_span *)pack;
    int32_t *rowmap = (int32_t *)(sp + n_spans), *blocks = rowmap + rows;
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
    out->rowmap = (const int32_t *)(d + sizeof(cu_span) * (size_t)n_spans);
    out->blocks = out->rowmap + rows;
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
    cu_launch(r, "kv_store", k_kv_store, cu_grid(warps, CU_THREADS / 32), CU_THREADS, 0,
              (uint8_t *)kv->k, (uint8_t *)kv->v, kv->dt, kv->block_size, kv->row_bytes,
              kv->block_bytes, k, v, S, n_kv, head_dim);
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

/* ---- attention, tiled over keys with the KV-head group in one block ---- */

#define FA_WARPS 4
#define FA_MAX_SPLIT 64

typedef struct cu_att {
    float *out;          /* (rows, n_head·hd), written when n_split == 1 */
    float *part;         /* (rows·n_head·n_split, hd + 2): Σ w·v, max, Σ w; when n_split > 1 */
    const float *q;
    const uint8_t *kb, *vb;
    size_t row_bytes, block_bytes;
    int dt, bs, n_head, n_kv, group, window, n_split;
    float scale, softcap;
} cu_att;

/* Elements t .. t+7 of a KV row (t a multiple of 8; rows of F32/F16/BF16 are 16-byte
 * aligned when head_dim is a multiple of 8). */
__device__ __forceinline__ void kv_load8(int dt, const uint8_t *row, int t, float k[8]) {
    if (dt == DT_F32) {
        const float4 a = *(const float4 *)((const float *)row + t);
        const float4 b = *(const float4 *)((const float *)row + t + 4);
        k[0] = a.x, k[1] = a.y, k[2] = a.z, k[3] = a.w;
        k[4] = b.x, k[5] = b.y, k[6] = b.z, k[7] = b.w;
    } else if (dt == DT_F16 || dt == DT_BF16) {
        const uint4 v = *(const uint4 *)((const uint16_t *)row + t);
        const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint16_t lo = (uint16_t)(w[i] & 0xffffu), hi = (uint16_t)(w[i] >> 16);
            k[2 * i] = dt == DT_F16 ? cu_h2f(lo) : cu_bf2f(lo);
            k[2 * i + 1] = dt == DT_F16 ? cu_h2f(hi) : cu_bf2f(hi);
        }
    } else {
#pragma unroll
        for (int i = 0; i < 8; i++) k[i] = cu_kv_elem(dt, row, t + i);
    }
}

template <int D32, int GM>
__global__ void __launch_bounds__(FA_WARPS * 32) k_attn_tile(cu_att A, cu_spans S) {
    constexpr int HD = 32 * D32;
    extern __shared__ float sm[];
    float *sq = sm;                        /* (GM, HD) the group's queries */
    float *wm = sq + GM * HD;              /* (FA_WARPS, GM) each warp's running max */
    float *wl = wm + FA_WARPS * GM;        /* (FA_WARPS, GM) each warp's Σ w */
    float *wa = wl + FA_WARPS * GM;        /* (FA_WARPS, GM, HD) each warp's Σ w·v */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int group = A.group;
    const long long total = (long long)S.rows * A.n_kv * A.n_split;
    for (long long item = blockIdx.x; item < total; item += gridDim.x) {
        const int split = (int)(item % A.n_split);
        const long long rk = item / A.n_split;
        const int row = (int)(rk / A.n_kv), kvh = (int)(rk % A.n_kv);
        const int si = S.rowmap[row];
        if (si < 0) continue; /* the whole block: it shares `item` */
        const cu_span sp = S.sp[si];
        const int p = sp.pos0 + row - sp.row0;
        const int j0 = (A.window > 0 && p - A.window + 1 > 0) ? p - A.window + 1 : 0;
        const int per = ((p - j0 + 1 + A.n_split - 1) / A.n_split + 31) / 32 * 32;
        const int ja = j0 + split * per, jb = ja + per < p + 1 ? ja + per : p + 1;
        const int32_t *bl = S.blocks + sp.boff;
        __syncthreads(); /* the previous item's merge has read the shared arrays */
        for (int i = threadIdx.x; i < GM * HD; i += blockDim.x) {
            const int g = i / HD;
            sq[i] = g < group ? A.q[((long long)row * A.n_head + kvh * group + g) * HD + i % HD]
                              : 0.0f;
        }
        __syncthreads();
        float m[GM], l[GM], acc[GM][D32];
#pragma unroll
        for (int g = 0; g < GM; g++) {
            m[g] = -INFINITY, l[g] = 0.0f;
#pragma unroll
            for (int d = 0; d < D32; d++) acc[g][d] = 0.0f;
        }
        for (int jt = ja + warp * 32; jt < jb; jt += FA_WARPS * 32) {
            const int j = jt + lane;
            const bool valid = j < jb;
            float s[GM];
#pragma unroll
            for (int g = 0; g < GM; g++) s[g] = 0.0f;
            if (valid) {
                const uint8_t *kr = A.kb + (size_t)bl[j / A.bs] * A.block_bytes +
                                    ((size_t)kvh * A.bs + (size_t)(j % A.bs)) * A.row_bytes;
                for (int t = 0; t < HD; t += 8) {
                    float k8[8];
                    kv_load8(A.dt, kr, t, k8);
#pragma unroll
                    for (int g = 0; g < GM; g++) {
                        if (g >= group) break;
                        const float4 qa = *(const float4 *)(sq + g * HD + t);
                        const float4 qb = *(const float4 *)(sq + g * HD + t + 4);
                        float a = s[g];
                        a = fmaf(qa.x, k8[0], a), a = fmaf(qa.y, k8[1], a);
                        a = fmaf(qa.z, k8[2], a), a = fmaf(qa.w, k8[3], a);
                        a = fmaf(qb.x, k8[4], a), a = fmaf(qb.y, k8[5], a);
                        a = fmaf(qb.z, k8[6], a), a = fmaf(qb.w, k8[7], a);
                        s[g] = a;
                    }
                }
            }
            /* the tile's softmax step, per head; s[g] becomes the lane's key weight */
#pragma unroll
            for (int g = 0; g < GM; g++) {
                if (g >= group) break;
                float sc = s[g] * A.scale;
                if (A.softcap > 0) sc = tanhf(sc / A.softcap) * A.softcap; /* Gemma 2 */
                if (!valid) sc = -INFINITY;
                const float mn = fmaxf(m[g], cu_warp_max(sc)); /* lane 0's key is valid */
                const float corr = expf(m[g] - mn);
                const float w = valid ? expf(sc - mn) : 0.0f;
                l[g] = l[g] * corr + cu_warp_sum(w);
#pragma unroll
                for (int d = 0; d < D32; d++) acc[g][d] *= corr;
                m[g] = mn;
                s[g] = w;
            }
            /* Σ w·v over the tile's keys, VU value rows loaded before any is used (one load
               at a time would wait out the memory latency key after key) */
            constexpr int VU = D32 >= 4 ? 4 : 8;
            const int nv = jb - jt < 32 ? jb - jt : 32;
            for (int j8 = 0; j8 < nv; j8 += VU) {
                float v[VU][D32];
#pragma unroll
                for (int u = 0; u < VU; u++) {
                    const int jv = jt + j8 + u;
                    if (j8 + u >= nv) break;
                    const uint8_t *vr = A.vb + (size_t)bl[jv / A.bs] * A.block_bytes +
                                        ((size_t)kvh * A.bs + (size_t)(jv % A.bs)) * A.row_bytes;
#pragma unroll
                    for (int d = 0; d < D32; d++) v[u][d] = cu_kv_elem(A.dt, vr, lane + 32 * d);
                }
#pragma unroll
                for (int u = 0; u < VU; u++) {
                    if (j8 + u >= nv) break;
#pragma unroll
                    for (int g = 0; g < GM; g++) {
                        if (g >= group) break;
                        const float w = __shfl_sync(0xffffffffu, s[g], j8 + u);
#pragma unroll
                        for (int d = 0; d < D32; d++) acc[g][d] = fmaf(w, v[u][d], acc[g][d]);
                    }
                }
            }
        }
#pragma unroll
        for (int g = 0; g < GM; g++) {
            if (lane == 0) wm[warp * GM + g] = m[g], wl[warp * GM + g] = l[g];
#pragma unroll
            for (int d = 0; d < D32; d++) wa[(warp * GM + g) * HD + lane + 32 * d] = acc[g][d];
        }
        __syncthreads();
        /* merge the warps: one that saw no key has max −inf and contributes nothing */
        for (int i = threadIdx.x; i < group * HD; i += blockDim.x) {
            const int g = i / HD, t = i % HD;
            float M = -INFINITY;
            for (int w = 0; w < FA_WARPS; w++) M = fmaxf(M, wm[w * GM + g]);
            float L = 0.0f, O = 0.0f;
            if (M != -INFINITY)
                for (int w = 0; w < FA_WARPS; w++) {
                    const float f = expf(wm[w * GM + g] - M);
                    L = fmaf(wl[w * GM + g], f, L);
                    O = fmaf(wa[(w * GM + g) * HD + t], f, O);
                }
            const long long oh = (long long)row * A.n_head + kvh * group + g;
            if (A.n_split == 1) {
                A.out[oh * HD + t] = O / L;
            } else {
                float *pp = A.part + (oh * A.n_split + split) * (HD + 2);
                pp[t] = O;
                if (t == 0) pp[HD] = M, pp[HD + 1] = L;
            }
        }
    }
}

/* out row·head = the merge of its n_split partial results (empty splits have max −inf). */
__global__ void k_attn_combine(float *out, const float *part, cu_spans S, int n_head, int hd,
                               int n_split) {
    const long long total = (long long)S.rows * n_head;
    for (long long item = blockIdx.x; item < total; item += gridDim.x) {
        if (S.rowmap[item / n_head] < 0) continue;
        const float *pp = part + item * n_split * (hd + 2);
        float M = -INFINITY;
        for (int s = 0; s < n_split; s++) M = fmaxf(M, pp[s * (hd + 2) + hd]);
        for (int t = threadIdx.x; t < hd; t += blockDim.x) {
            float L = 0.0f, O = 0.0f;
            for (int s = 0; s < n_split; s++) {
                const float ms = pp[s * (hd + 2) + hd];
                if (ms == -INFINITY) continue;
                const float f = expf(ms - M);
                L = fmaf(pp[s * (hd + 2) + hd + 1], f, L);
                O = fmaf(pp[s * (hd + 2) + t], f, O);
            }
            out[item * hd + t] = O / L;
        }
    }
}

template <int D32, int GM>
static bool launch_tile(const cu_run *r, const cu_att &A, const cu_spans &S) {
    if constexpr (D32 * GM > 32) {
        return false;
    } else {
        const int hd = 32 * D32;
        const long long items = (long long)S.rows * A.n_kv * A.n_split;
        const unsigned grid = items < (1 << 20) ? (unsigned)items : (1u << 20);
        const size_t smem = sizeof(float) * ((size_t)GM * hd * (1 + FA_WARPS) + 2 * FA_WARPS * GM);
        cu_launch(r, "attention", k_attn_tile<D32, GM>, grid, FA_WARPS * 32, smem, A, S);
        return true;
    }
}

template <int D32>
static bool tile_group(const cu_run *r, int gm, const cu_att &A, const cu_spans &S) {
    switch (gm) {
    case 1: return launch_tile<D32, 1>(r, A, S);
    case 2: return launch_tile<D32, 2>(r, A, S);
    case 4: return launch_tile<D32, 4>(r, A, S);
    case 8: return launch_tile<D32, 8>(r, A, S);
    case 16: return launch_tile<D32, 16>(r, A, S);
    default: return false;
    }
}

/* The tiled kernel for this shape (false: the shape has no instance; nothing launched). */
static bool attention_tiled(const cu_run *r, float *out, const float *q, const wk_kv_layer *kv,
                            const wk_span *spans, int n_spans, const cu_spans &S, int n_head,
                            int n_kv, int hd, int window, float scale, float softcap) {
    const int group = n_head / n_kv;
    int gm = 1;
    while (gm < group) gm *= 2;
    const int d32 = hd / 32;
    if (hd % 32 != 0 || gm > 16 || gm * d32 > 32 ||
        !(d32 == 1 || d32 == 2 || d32 == 3 || d32 == 4 || d32 == 8))
        return false;
    /* splits: while the blocks do not fill the GPU and each split keeps ≥ 128 keys (a tile
       per warp) of the longest row; a power of two, so it changes rarely as rows grow */
    long long keys = 0;
    for (int s = 0; s < n_spans; s++) {
        if (spans[s].n <= 0) continue;
        long long k = (long long)spans[s].pos0 + spans[s].n;
        if (window > 0 && k > window) k = window;
        if (k > keys) keys = k;
    }
    int n_split = 1;
    const long long blocks = (long long)S.rows * n_kv;
    while (n_split < FA_MAX_SPLIT && blocks * n_split < 512 && keys >= 2LL * n_split * 128)
        n_split *= 2;
    cu_att A;
    memset(&A, 0, sizeof A); /* the fingerprint of a graph pass reads its padding */
    A.out = out;
    A.q = q;
    A.kb = (const uint8_t *)kv->k, A.vb = (const uint8_t *)kv->v;
    A.row_bytes = kv->row_bytes, A.block_bytes = kv->block_bytes;
    A.dt = kv->dt, A.bs = kv->block_size, A.n_head = n_head, A.n_kv = n_kv, A.group = group;
    A.window = window, A.n_split = n_split, A.scale = scale, A.softcap = softcap;
    if (n_split > 1) {
        A.part = (float *)cu_scratch(r, CU_SLOT_ATT, sizeof(float) * (size_t)S.rows * n_head *
                                                         n_split * (hd + 2));
        if (!A.part) return true; /* noted */
    }
    bool ok = false;
    switch (d32) {
    case 1: ok = tile_group<1>(r, gm, A, S); break;
    case 2: ok = tile_group<2>(r, gm, A, S); break;
    case 3: ok = tile_group<3>(r, gm, A, S); break;
    case 4: ok = tile_group<4>(r, gm, A, S); break;
    case 8: ok = tile_group<8>(r, gm, A, S); break;
    default: break;
    }
    if (ok && n_split > 1) {
        const long long items = (long long)S.rows * n_head;
        const unsigned grid = items < (1 << 20) ? (unsigned)items : (1u << 20);
        cu_launch(r, "attention (combine)", k_attn_combine, grid, 128, 0, out,
                  (const float *)A.part, S, n_head, hd, n_split);
    }
    return ok;
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
    if (attention_tiled(r, out, q, kv, spans, n_spans, S, n_head, n_kv, head_dim, window, scale,
                        softcap))
        return;
    const long long items = (long long)S.rows * n_head;
    const size_t smem = sizeof(float) * ((size_t)(ATT_WARPS + 1) * head_dim + 2 * ATT_WARPS);
    const unsigned grid = items < (1 << 20) ? (unsigned)items : (1u << 20);
    cu_launch(r, "attention", k_attention, grid, ATT_WARPS * 32, smem, 
        out, q, (const uint8_t *)kv->k, (const uint8_t *)kv->v, kv->dt, kv->block_size,
        kv->row_bytes, kv->block_bytes, S, n_head, n_head / n_kv, head_dim, window, scale, softcap);
}
