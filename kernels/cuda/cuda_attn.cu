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
 * attention (k_attn_tile, heads whose width is 32, 64, 96, 128 or 256, groups of up to 16
 * query heads per KV head, KV elements F32/F16/BF16/Q8_0): one block of FA_THREADS threads
 * per (row, KV head, split of the row's keys), holding the queries of every head of the group
 * in shared memory, so each key and value is read once for the whole group. The split's keys
 * pass through shared memory a tile at a time (fa_shape: 64, 32 or 16 keys by head width):
 * every thread requests its 16-byte chunks of the tile's keys and values before storing any
 * (one memory latency per tile, not one per key), widens them exactly to f32, then the block
 * computes the scores (a thread per (head, key)), the online-softmax step (a warp per head:
 * running max, Σ w and the rescale of earlier sums) and Σ w·v (a thread per (head, output
 * dimension), kept in registers across tiles). When a row's keys are split over several
 * blocks (n_split > 1, chosen so that a small batch with long sequences fills the GPU; the
 * split ranges are computed on the device from the row's position, so the launch does not
 * change as sequences grow), each block writes (Σ w·v, max, Σ w) and k_attn_combine merges
 * the splits. Scores are f32 dot products of the query with the key widened exactly to f32,
 * as the reference reads them; the order of the sums differs.
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

#define FA_THREADS 128
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

/* Chunk c (8 elements) of a KV row, loaded raw: every chunk of a tile is requested before
 * any is converted, so the tile costs one memory latency. W32 = false: F16/BF16 rows (one
 * 16-byte load); W32 = true: F32 rows (two), or Q8_0 rows (34-byte blocks, not 16-byte
 * aligned), which are read element by element in fa_convert instead. */
template <bool W32> struct fa_chunk {
    uint4 a;
};
template <> struct fa_chunk<true> {
    uint4 a, b;
};

template <bool W32>
__device__ __forceinline__ fa_chunk<W32> fa_load(int dt, const uint8_t *row, int c) {
    fa_chunk<W32> ch;
    if constexpr (W32) {
        if (dt == DT_F32) {
            ch.a = ((const uint4 *)row)[2 * c];
            ch.b = ((const uint4 *)row)[2 * c + 1];
        } else {
            ch.a = ch.b = make_uint4(0, 0, 0, 0);
        }
    } else {
        ch.a = ((const uint4 *)row)[c];
    }
    return ch;
}

/* The chunk's 8 values as f32 (the reference's widening), into dst[0..8). */
template <bool W32>
__device__ __forceinline__ void fa_convert(int dt, const fa_chunk<W32> &ch, const uint8_t *row,
                                           int c, float *dst) {
    if constexpr (W32) {
        if (dt == DT_F32) {
            const uint32_t w[8] = {ch.a.x, ch.a.y, ch.a.z, ch.a.w, ch.b.x, ch.b.y, ch.b.z, ch.b.w};
#pragma unroll
            for (int i = 0; i < 8; i++) dst[i] = __uint_as_float(w[i]);
        } else {
            for (int i = 0; i < 8; i++) dst[i] = cu_kv_elem(dt, row, 8 * c + i);
        }
    } else {
        const uint32_t w[4] = {ch.a.x, ch.a.y, ch.a.z, ch.a.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint16_t lo = (uint16_t)(w[i] & 0xffffu), hi = (uint16_t)(w[i] >> 16);
            dst[2 * i] = dt == DT_F16 ? cu_h2f(lo) : cu_bf2f(lo);
            dst[2 * i + 1] = dt == DT_F16 ? cu_h2f(hi) : cu_bf2f(hi);
        }
    }
}

/* Keys per tile for a head width: the tile's keys and values, widened to f32, fill ~32 KiB of
 * shared memory, and every thread of the block loads FA_CHUNKS 16-byte chunks of each. */
template <int HD> struct fa_shape {
    static constexpr int T = HD <= 64 ? 64 : HD <= 128 ? 32 : 16;
    static constexpr int CH = HD / 8;                /* chunks of a row */
    static constexpr int LOADS = T * CH / FA_THREADS; /* chunks of K (and of V) per thread */
    static_assert(T * CH % FA_THREADS == 0, "tile chunks per thread");
    static constexpr int ACC = 16 * HD / FA_THREADS; /* outputs per thread, group <= 16 */
};

template <int HD> static size_t fa_smem(int group) {
    using F = fa_shape<HD>;
    return sizeof(float) * ((size_t)group * HD + (size_t)F::T * (HD + 1) + (size_t)F::T * HD +
                            (size_t)group * F::T + 3 * (size_t)group);
}

/* One block per (row, KV head, split of the row's keys); the keys of the split pass through
 * shared memory a tile at a time. */
template <int HD, bool W32>
__global__ void __launch_bounds__(FA_THREADS) k_attn_tile(cu_att A, cu_spans S) {
    using F = fa_shape<HD>;
    constexpr int T = F::T, KP = HD + 1; /* key rows padded: lanes on successive keys hit
                                             successive banks */
    extern __shared__ float sm[];
    const int group = A.group;
    float *sq = sm;                  /* (group, HD) the group's queries */
    float *sk = sq + group * HD;     /* (T, KP) the tile's keys */
    float *sv = sk + T * KP;         /* (T, HD) the tile's values */
    float *sp = sv + T * HD;         /* (group, T) scores, then weights */
    float *smax = sp + group * T;    /* (group) running max */
    float *ssum = smax + group;      /* (group) running Σ w */
    float *scor = ssum + group;      /* (group) this tile's rescale of the earlier sums */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const long long total = (long long)S.rows * A.n_kv * A.n_split;
    for (long long item = blockIdx.x; item < total; item += gridDim.x) {
        const int split = (int)(item % A.n_split);
        const long long rk = item / A.n_split;
        const int row = (int)(rk / A.n_kv), kvh = (int)(rk % A.n_kv);
        const int si = S.rowmap[row];
        if (si < 0) continue; /* the whole block: it shares `item` */
        const cu_span spn = S.sp[si];
        const int p = spn.pos0 + row - spn.row0;
        const int j0 = (A.window > 0 && p - A.window + 1 > 0) ? p - A.window + 1 : 0;
        const int per = ((p - j0 + 1 + A.n_split - 1) / A.n_split + 31) / 32 * 32;
        const int ja = j0 + split * per, jb = ja + per < p + 1 ? ja + per : p + 1;
        const int32_t *bl = S.blocks + spn.boff;
        __syncthreads(); /* the previous item is done with the shared arrays */
        for (int i = tid; i < group * HD; i += FA_THREADS)
            sq[i] = A.q[((long long)row * A.n_head + kvh * group) * HD + i];
        for (int g = tid; g < group; g += FA_THREADS) smax[g] = -INFINITY, ssum[g] = 0.0f;
        float acc[F::ACC];
#pragma unroll
        for (int k = 0; k < F::ACC; k++) acc[k] = 0.0f;
        for (int jt = ja; jt < jb; jt += T) {
            const int nk = jb - jt < T ? jb - jt : T;
            /* every chunk of the tile's keys and values is requested before any is stored */
            fa_chunk<W32> kc[F::LOADS], vc[F::LOADS];
            long long ko[F::LOADS]; /* the chunk's row offset in the cache, −1: none */
#pragma unroll
            for (int u = 0; u < F::LOADS; u++) {
                const int idx = tid + FA_THREADS * u, j = idx / F::CH, c = idx % F::CH;
                ko[u] = -1;
                if (j < nk) {
                    const int key = jt + j;
                    const size_t off = (size_t)bl[key / A.bs] * A.block_bytes +
                                       ((size_t)kvh * A.bs + (size_t)(key % A.bs)) * A.row_bytes;
                    ko[u] = (long long)off;
                    kc[u] = fa_load<W32>(A.dt, A.kb + off, c);
                    vc[u] = fa_load<W32>(A.dt, A.vb + off, c);
                }
            }
            __syncthreads(); /* the previous tile's weights and values are used up */
#pragma unroll
            for (int u = 0; u < F::LOADS; u++) {
                if (ko[u] < 0) continue;
                const int idx = tid + FA_THREADS * u, j = idx / F::CH, c = idx % F::CH;
                const size_t off = (size_t)ko[u];
                float kf[8], vf[8];
                fa_convert(A.dt, kc[u], A.kb + off, c, kf);
                fa_convert(A.dt, vc[u], A.vb + off, c, vf);
#pragma unroll
                for (int i = 0; i < 8; i++) sk[j * KP + 8 * c + i] = kf[i], sv[j * HD + 8 * c + i] = vf[i];
            }
            __syncthreads();
            /* scores: item (g, j), j fastest (a warp reads successive padded key rows) */
            for (int it = tid; it < group * T; it += FA_THREADS) {
                const int g = it / T, j = it % T;
                float sc = -INFINITY;
                if (j < nk) {
                    const float *qg = sq + g * HD, *kj = sk + j * KP;
                    float a = 0.0f;
#pragma unroll 8
                    for (int t = 0; t < HD; t++) a = fmaf(qg[t], kj[t], a);
                    sc = a * A.scale;
                    if (A.softcap > 0) sc = tanhf(sc / A.softcap) * A.softcap; /* Gemma 2 */
                }
                sp[it] = sc;
            }
            __syncthreads();
            /* the online-softmax step, a warp per head: weights replace the scores */
            for (int g = warp; g < group; g += FA_THREADS / 32) {
                float mx = -INFINITY;
                for (int j = lane; j < T; j += 32) mx = fmaxf(mx, sp[g * T + j]);
                mx = cu_warp_max(mx);
                const float mo = smax[g], mn = fmaxf(mo, mx); /* finite: key jt is valid */
                float sum = 0.0f;
                for (int j = lane; j < T; j += 32) {
                    const float w = expf(sp[g * T + j] - mn); /* a masked key: exp(−inf) = 0 */
                    sp[g * T + j] = w;
                    sum += w;
                }
                sum = cu_warp_sum(sum);
                if (lane == 0) {
                    const float corr = expf(mo - mn); /* the first tile: exp(−inf) = 0 */
                    scor[g] = corr;
                    ssum[g] = ssum[g] * corr + sum;
                    smax[g] = mn;
                }
            }
            __syncthreads();
            /* Σ w·v: output (g, d), d fastest; each thread keeps its outputs across tiles */
#pragma unroll
            for (int k = 0; k < F::ACC; k++) {
                const int it = tid + FA_THREADS * k;
                if (it >= group * HD) break;
                const int g = it / HD, d = it % HD;
                const float *pg = sp + g * T;
                float a = acc[k] * scor[g];
                for (int j = 0; j < nk; j++) a = fmaf(pg[j], sv[j * HD + d], a);
                acc[k] = a;
            }
        }
        __syncthreads(); /* smax / ssum of the last tile are visible (also with no tile) */
#pragma unroll
        for (int k = 0; k < F::ACC; k++) {
            const int it = tid + FA_THREADS * k;
            if (it >= group * HD) break;
            const int g = it / HD, d = it % HD;
            const long long oh = (long long)row * A.n_head + kvh * group + g;
            if (A.n_split == 1) {
                A.out[oh * HD + d] = acc[k] / ssum[g];
            } else {
                float *pp = A.part + (oh * A.n_split + split) * (HD + 2);
                pp[d] = acc[k];
                if (d == 0) pp[HD] = smax[g], pp[HD + 1] = ssum[g];
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

/* ---- attention for prefill: a block per tile of query rows ----
 * k_attn_rows: one block of FA_THREADS threads per (tile of QR consecutive query rows of one
 * span, KV head); QR·group query vectors (at most fr_shape::QG) share every K/V tile of FR_T
 * keys, which passes through shared memory once for all of them (k_attn_tile reads a row's
 * keys once per query row). Scores are computed in 4-query × 4-key register tiles (a thread:
 * QG/16 query vectors × keys b, b+8, b+16, b+24), the online-softmax step is a warp per query
 * vector, and Σ w·v a (QG/16 query vectors × HD/8 dimensions) register tile per thread, kept
 * across key tiles. Masking is per query row (causal, sliding window); a row that has seen no
 * key yet keeps max −inf and Σ w = 0 until one comes. */
#define FR_T 32
#define FR_MIN_ROWS 8 /* a span this long makes the call a prefill */

template <int HD> struct fr_shape {
    static constexpr int QG = HD <= 128 ? 64 : 32; /* query vectors a block holds at most */
    static constexpr int QT = QG / 16;             /* query vectors per thread */
    static constexpr int DT = HD / 8;              /* output dimensions per thread */
    static constexpr int CH = HD / 8;              /* 8-element chunks of a row */
    static constexpr int LOADS = FR_T * CH / FA_THREADS;
    static_assert(FR_T * CH % FA_THREADS == 0, "tile chunks per thread");
    static constexpr int QP = HD + 1, KP = HD + 1, SP = FR_T + 1; /* padded row strides */
};

template <int HD> static size_t fr_smem() {
    using F = fr_shape<HD>;
    return sizeof(float) * ((size_t)F::QG * F::QP + (size_t)FR_T * F::KP + (size_t)FR_T * HD +
                            (size_t)F::QG * F::SP + 3 * (size_t)F::QG);
}

template <int HD, bool W32>
__global__ void __launch_bounds__(FA_THREADS) k_attn_rows(cu_att A, cu_spans S, int n_spans, int qr) {
    using F = fr_shape<HD>;
    extern __shared__ float sm[];
    float *sq = sm;                      /* (QG, QP) the tile's query vectors */
    float *sk = sq + F::QG * F::QP;      /* (FR_T, KP) keys */
    float *sv = sk + FR_T * F::KP;       /* (FR_T, HD) values */
    float *sp = sv + FR_T * HD;          /* (QG, SP) scores, then weights */
    float *smax = sp + F::QG * F::SP, *ssum = smax + F::QG, *scor = ssum + F::QG;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int group = A.group, qg = qr * group;
    /* this block's tile: the spans' tiles one after the other, then the KV head */
    const int split = (int)(blockIdx.x % A.n_split);
    const int kvh = (int)(blockIdx.x / A.n_split % A.n_kv);
    long long t = blockIdx.x / A.n_split / A.n_kv;
    int si = 0;
    for (; si < n_spans; si++) {
        const int n = S.sp[si].n;
        const long long nt = n > 0 ? (n + qr - 1) / qr : 0;
        if (t < nt) break;
        t -= nt;
    }
    if (si >= n_spans) return; /* the whole block */
    const cu_span spn = S.sp[si];
    const int r0 = (int)t * qr, nr = spn.n - r0 < qr ? spn.n - r0 : qr; /* rows of the tile */
    const int p0 = spn.pos0 + r0, p1 = p0 + nr - 1;      /* their positions */
    const int j0 = (A.window > 0 && p0 - A.window + 1 > 0) ? p0 - A.window + 1 : 0;
    /* this split's share of the tile's keys [j0, p1], whole key tiles each */
    const int per = ((p1 - j0 + 1 + A.n_split - 1) / A.n_split + FR_T - 1) / FR_T * FR_T;
    const int jlo = j0 + split * per, jhi = jlo + per - 1 < p1 ? jlo + per - 1 : p1;
    const int32_t *bl = S.blocks + spn.boff;
    /* query vector v = row i of the tile, head g of the group: v = i·group + g */
    for (int e = tid; e < F::QG * HD; e += FA_THREADS) {
        const int v = e / HD, d = e % HD, i = v / group, g = v % group;
        float val = 0.0f;
        if (v < qg && i < nr)
            val = A.q[((long long)(spn.row0 + r0 + i) * A.n_head + kvh * group + g) * HD + d];
        sq[v * F::QP + d] = val;
    }
    for (int v = tid; v < F::QG; v += FA_THREADS) smax[v] = -INFINITY, ssum[v] = 0.0f;
    const int qa = tid >> 3, kb = tid & 7; /* score tile: vectors qa·QT.., keys kb + 8u */
    float acc[F::QT][F::DT];
#pragma unroll
    for (int a = 0; a < F::QT; a++)
#pragma unroll
        for (int d = 0; d < F::DT; d++) acc[a][d] = 0.0f;
    for (int jt = jlo; jt <= jhi; jt += FR_T) {
        const int nk = jhi + 1 - jt < FR_T ? jhi + 1 - jt : FR_T;
        fa_chunk<W32> kc[F::LOADS], vc[F::LOADS];
        long long ko[F::LOADS];
#pragma unroll
        for (int u = 0; u < F::LOADS; u++) {
            const int idx = tid + FA_THREADS * u, j = idx / F::CH, c = idx % F::CH;
            ko[u] = -1;
            if (j < nk) {
                const int key = jt + j;
                const size_t off = (size_t)bl[key / A.bs] * A.block_bytes +
                                   ((size_t)kvh * A.bs + (size_t)(key % A.bs)) * A.row_bytes;
                ko[u] = (long long)off;
                kc[u] = fa_load<W32>(A.dt, A.kb + off, c);
                vc[u] = fa_load<W32>(A.dt, A.vb + off, c);
            }
        }
        __syncthreads(); /* the previous tile's keys, values and weights are used up */
#pragma unroll
        for (int u = 0; u < F::LOADS; u++) {
            const int idx = tid + FA_THREADS * u, j = idx / F::CH, c = idx % F::CH;
            float kf[8], vf[8];
            if (ko[u] >= 0) {
                fa_convert<W32>(A.dt, kc[u], A.kb + ko[u], c, kf);
                fa_convert<W32>(A.dt, vc[u], A.vb + ko[u], c, vf);
            } else {
#pragma unroll
                for (int i = 0; i < 8; i++) kf[i] = 0.0f, vf[i] = 0.0f; /* no NaN into Σ w·v */
            }
#pragma unroll
            for (int i = 0; i < 8; i++) sk[j * F::KP + 8 * c + i] = kf[i], sv[j * HD + 8 * c + i] = vf[i];
        }
        __syncthreads();
        /* scores of the thread's QT vectors × 4 keys */
        {
            float s[F::QT][4];
#pragma unroll
            for (int a = 0; a < F::QT; a++)
#pragma unroll
                for (int u = 0; u < 4; u++) s[a][u] = 0.0f;
            for (int d = 0; d < HD; d++) {
                float qv[F::QT], kv4[4];
#pragma unroll
                for (int a = 0; a < F::QT; a++) qv[a] = sq[(qa * F::QT + a) * F::QP + d];
#pragma unroll
                for (int u = 0; u < 4; u++) kv4[u] = sk[(kb + 8 * u) * F::KP + d];
#pragma unroll
                for (int a = 0; a < F::QT; a++)
#pragma unroll
                    for (int u = 0; u < 4; u++) s[a][u] = fmaf(qv[a], kv4[u], s[a][u]);
            }
#pragma unroll
            for (int a = 0; a < F::QT; a++) {
                const int v = qa * F::QT + a, i = v / group;
                const int p = p0 + i; /* the row's position */
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    const int j = kb + 8 * u, key = jt + j;
                    float sc = -INFINITY;
                    if (v < qg && i < nr && j < nk && key <= p &&
                        !(A.window > 0 && key <= p - A.window)) {
                        sc = s[a][u] * A.scale;
                        if (A.softcap > 0) sc = tanhf(sc / A.softcap) * A.softcap; /* Gemma 2 */
                    }
                    sp[v * F::SP + j] = sc;
                }
            }
        }
        __syncthreads();
        /* online softmax, a warp per query vector (one key per lane) */
        for (int v = warp; v < qg; v += FA_THREADS / 32) {
            const float sc = sp[v * F::SP + lane];
            const float mo = smax[v], mn = fmaxf(mo, cu_warp_max(sc));
            float w = 0.0f, corr = 1.0f;
            if (mn != -INFINITY) { /* else: no key of this row yet; nothing changes */
                w = expf(sc - mn);  /* a masked key: exp(−inf) = 0 */
                corr = expf(mo - mn); /* the first keys: exp(−inf) = 0 */
            }
            sp[v * F::SP + lane] = w;
            const float sum = cu_warp_sum(w);
            if (lane == 0) scor[v] = corr, ssum[v] = ssum[v] * corr + sum, smax[v] = mn;
        }
        __syncthreads();
        /* Σ w·v: the thread's QT vectors × dimensions kb + 8e */
#pragma unroll
        for (int a = 0; a < F::QT; a++) {
            const float c = scor[qa * F::QT + a];
#pragma unroll
            for (int e = 0; e < F::DT; e++) acc[a][e] *= c;
        }
        for (int j = 0; j < nk; j++) {
            float w[F::QT];
#pragma unroll
            for (int a = 0; a < F::QT; a++) w[a] = sp[(qa * F::QT + a) * F::SP + j];
#pragma unroll
            for (int e = 0; e < F::DT; e++) {
                const float vv = sv[j * HD + kb + 8 * e];
#pragma unroll
                for (int a = 0; a < F::QT; a++) acc[a][e] = fmaf(w[a], vv, acc[a][e]);
            }
        }
    }
    __syncthreads();
#pragma unroll
    for (int a = 0; a < F::QT; a++) {
        const int v = qa * F::QT + a, i = v / group, g = v % group;
        if (v >= qg || i >= nr) continue;
        const long long oh = (long long)(spn.row0 + r0 + i) * A.n_head + kvh * group + g;
        if (A.n_split == 1) {
            const float L = ssum[v];
            float *o = A.out + oh * HD;
#pragma unroll
            for (int e = 0; e < F::DT; e++) o[kb + 8 * e] = acc[a][e] / L;
        } else { /* the split's (Σ w·v, max, Σ w); a row no key of this split reaches has max
                    −inf, which k_attn_combine skips */
            float *pp = A.part + (oh * A.n_split + split) * (HD + 2);
#pragma unroll
            for (int e = 0; e < F::DT; e++) pp[kb + 8 * e] = acc[a][e];
            if (kb == 0) pp[HD] = smax[v], pp[HD + 1] = ssum[v];
        }
    }
}

template <int HD, bool W32>
static void launch_rows(const cu_run *r, const cu_att &A, const cu_spans &S, int n_spans, int qr,
                        long long tiles) {
    const size_t smem = fr_smem<HD>();
    static thread_local int raised = -1; /* the device whose limit was raised by this thread */
    if (smem > 48 * 1024 && raised != r->dev) {
        cu_note(cudaFuncSetAttribute(k_attn_rows<HD, W32>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                "cudaFuncSetAttribute (attention rows)");
        raised = r->dev;
    }
    cu_launch(r, "attention (rows)", k_attn_rows<HD, W32>,
              (unsigned)(tiles * A.n_kv * A.n_split), FA_THREADS, smem, A, S, n_spans, qr);
}

template <int HD, bool W32>
static void launch_tile(const cu_run *r, const cu_att &A, const cu_spans &S) {
    const long long items = (long long)S.rows * A.n_kv * A.n_split;
    const unsigned grid = items < (1 << 20) ? (unsigned)items : (1u << 20);
    const size_t smem = fa_smem<HD>(A.group);
    static thread_local int raised = -1; /* the device whose limit was raised by this thread */
    if (smem > 48 * 1024 && raised != r->dev) {
        cu_note(cudaFuncSetAttribute(k_attn_tile<HD, W32>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)fa_smem<HD>(16)),
                "cudaFuncSetAttribute (attention)");
        raised = r->dev;
    }
    cu_launch(r, "attention", k_attn_tile<HD, W32>, grid, FA_THREADS, smem, A, S);
}

/* WICK_CUDA_ATT_ROWS=0: prefill takes the per-row kernel too (a developer's A/B switch). */
static bool rows_on(void) {
    static const bool on = [] {
        const char *v = getenv("WICK_CUDA_ATT_ROWS");
        return !(v && strcmp(v, "0") == 0);
    }();
    return on;
}

/* Streaming multiprocessors of the device (cached per device). */
static int sm_count(int dev) {
    static int cache[64];
    if (dev < 0 || dev >= 64) return 132;
    if (!cache[dev]) {
        int n = 0;
        if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n <= 0)
            n = 132;
        cache[dev] = n;
    }
    return cache[dev];
}

/* The tiled kernel for this shape (false: the shape has no instance; nothing launched). */
static bool attention_tiled(const cu_run *r, float *out, const float *q, const wk_kv_layer *kv,
                            const wk_span *spans, int n_spans, const cu_spans &S, int n_head,
                            int n_kv, int hd, int window, float scale, float softcap) {
    const int group = n_head / n_kv;
    if (group > 16 || !(hd == 32 || hd == 64 || hd == 96 || hd == 128 || hd == 256)) return false;
    if (kv->dt != DT_F32 && kv->dt != DT_F16 && kv->dt != DT_BF16 && kv->dt != DT_Q8_0)
        return false;
    /* splits: while the blocks fill less than two waves of the GPU and every split keeps at
       least 64 keys of the longest row (none below 256 keys: a split costs a merge launch);
       a power of two, so it changes rarely as rows grow (each change records a new graph) */
    long long keys = 0;
    for (int s = 0; s < n_spans; s++) {
        if (spans[s].n <= 0) continue;
        long long k = (long long)spans[s].pos0 + spans[s].n;
        if (window > 0 && k > window) k = window;
        if (k > keys) keys = k;
    }
    /* a prefill (some span of FR_MIN_ROWS rows or more): tiles of query rows */
    int max_n = 0;
    for (int s = 0; s < n_spans; s++) max_n = spans[s].n > max_n ? spans[s].n : max_n;
    if (max_n >= FR_MIN_ROWS && rows_on()) {
        const int qr = (hd <= 128 ? 64 : 32) / group;
        long long tiles = 0;
        for (int s = 0; s < n_spans; s++)
            if (spans[s].n > 0) tiles += (spans[s].n + qr - 1) / qr;
        if (tiles * n_kv * FA_MAX_SPLIT < (1LL << 31)) {
            cu_att A;
            memset(&A, 0, sizeof A);
            A.out = out, A.q = q;
            A.kb = (const uint8_t *)kv->k, A.vb = (const uint8_t *)kv->v;
            A.row_bytes = kv->row_bytes, A.block_bytes = kv->block_bytes;
            A.dt = kv->dt, A.bs = kv->block_size, A.n_head = n_head, A.n_kv = n_kv;
            A.group = group, A.window = window, A.scale = scale, A.softcap = softcap;
            /* key splits while the blocks fill less than two waves of the GPU, each split
               keeping at least 64 keys of the longest row */
            A.n_split = 1;
            const long long fill = 2LL * sm_count(r->dev);
            while (A.n_split < FA_MAX_SPLIT && tiles * n_kv * A.n_split < fill &&
                   keys >= 2LL * A.n_split * 64)
                A.n_split *= 2;
            if (A.n_split > 1 &&
                !(A.part = (float *)cu_scratch(r, CU_SLOT_ATT, sizeof(float) * (size_t)S.rows *
                                                                   n_head * A.n_split * (hd + 2))))
                return true; /* noted */
            const bool w32r = kv->dt == DT_F32 || kv->dt == DT_Q8_0;
#define ROWS(H) (w32r ? launch_rows<H, true>(r, A, S, n_spans, qr, tiles) \
                      : launch_rows<H, false>(r, A, S, n_spans, qr, tiles))
            switch (hd) {
            case 32: ROWS(32); break;
            case 64: ROWS(64); break;
            case 96: ROWS(96); break;
            case 128: ROWS(128); break;
            default: ROWS(256); break;
            }
#undef ROWS
            if (A.n_split > 1) {
                const long long items = (long long)S.rows * n_head;
                const unsigned grid = items < (1 << 20) ? (unsigned)items : (1u << 20);
                cu_launch(r, "attention (combine)", k_attn_combine, grid, 128, 0, out,
                          (const float *)A.part, S, n_head, hd, A.n_split);
            }
            return true;
        }
    }
    int n_split = 1;
    const long long blocks = (long long)S.rows * n_kv, fill = 2LL * sm_count(r->dev);
    while (n_split < FA_MAX_SPLIT && blocks * n_split < fill && keys >= 256 &&
           keys >= 2LL * n_split * 64)
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
    const bool w32 = kv->dt == DT_F32 || kv->dt == DT_Q8_0;
#define TILE(H) (w32 ? launch_tile<H, true>(r, A, S) : launch_tile<H, false>(r, A, S))
    switch (hd) {
    case 32: TILE(32); break;
    case 64: TILE(64); break;
    case 96: TILE(96); break;
    case 128: TILE(128); break;
    default: TILE(256); break;
    }
#undef TILE
    if (n_split > 1) {
        const long long items = (long long)S.rows * n_head;
        const unsigned grid = items < (1 << 20) ? (unsigned)items : (1u << 20);
        cu_launch(r, "attention (combine)", k_attn_combine, grid, 128, 0, out,
                  (const float *)A.part, S, n_head, hd, n_split);
    }
    return true;
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
