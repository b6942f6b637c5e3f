/* cuda_internal.cuh — what the files of the CUDA table share:
 *   - failure collection: every CUDA / cuBLAS call's status goes to cu_note*, which keeps the
 *     first failure of the calling thread until the table's sync entry reports it;
 *   - cu_run: the device, stream and graph mode of one op call (cu_begin selects the device);
 *   - cu_launch: every kernel launch, so that a graph pass (graph_begin / graph_end of the
 *     table, cuda_table.cu) can record it or check it against its recording;
 *   - per-thread device scratch (span tables, LoRA descriptors, widened weight tiles) and the
 *     thread's cuBLAS handle for the device (cuda_table.cu owns them);
 *   - exact device ports of the host conversions (base/dtype.c) and decoders of every weight
 *     and KV element type (kernels/quant.h layouts), computing each value with the same
 *     operations in the same order as kernels/ref, so decoded values are bit-identical
 *     (the build passes -fmad=false: nothing is contracted into an FMA behind our back).
 * Not here: the kernels themselves (cuda_matmul.cu, cuda_attn.cu, cuda_ops.cu). */
#ifndef WICK_KERNELS_CUDA_INTERNAL_CUH
#define WICK_KERNELS_CUDA_INTERNAL_CUH
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

extern "C" {
#include "base/error.h"
#include "kernels/cuda/cuda.h"
#include "kernels/kernels.h"
}

/* quant.h is C11 (_Static_assert); C++ spells it static_assert. Its block structs are used
 * below only to check the byte offsets the device decoders hard-code. */
#define _Static_assert static_assert
extern "C" {
#include "kernels/quant.h"
}
#undef _Static_assert

static_assert(offsetof(blk_q4_k, scales) == 4 && offsetof(blk_q4_k, qs) == 16, "Q4_K layout");
static_assert(offsetof(blk_q6_k, qh) == 128 && offsetof(blk_q6_k, scales) == 192 &&
              offsetof(blk_q6_k, d) == 208, "Q6_K layout");
static_assert(offsetof(blk_q5_0, qh) == 2 && offsetof(blk_q5_0, qs) == 6, "Q5_0 layout");
static_assert(offsetof(blk_q8_0, qs) == 2 && offsetof(blk_q4_0, qs) == 2, "Q8_0/Q4_0 layout");

/* ---- one op call ---- */

/* Graph modes of an op call (see "graph passes" below). */
enum { CU_EAGER = 0, CU_CAPTURE = 1, CU_REPLAY = 2 };

typedef struct cu_run {
    int dev;          /* CUDA device index */
    cudaStream_t s;   /* the context's stream (0 = legacy default stream), or during a graph
                         pass of this thread and context, the table's capture stream */
    int mode;         /* CU_EAGER, or the graph pass's CU_CAPTURE / CU_REPLAY */
    unsigned flags;   /* the context's WK_CTX_* */
} cu_run;

/* Selects `dev` on the calling thread (cudaSetDevice is per thread) and reads ctx's stream
 * (and the graph mode, when the thread is inside a graph pass of ctx). */
cu_run cu_begin(int dev, wk_ctx *ctx);

/* Records a failure of the calling thread unless one is already pending (the first cause is
 * the useful one: later calls usually fail because of it). No-op for success. */
void cu_note(cudaError_t e, const char *what);
void cu_note_blas(cublasStatus_t s, const char *what);
void cu_note_fail(wick_status st, const char *what);


/* ---- graph passes ----
 * Between the table's graph_begin and graph_end (kernels.h), the ops of a pass either are
 * captured into a CUDA graph (CU_CAPTURE: launched on the capture stream, which records them)
 * or only do their host work (CU_REPLAY: packing uploads into the graph's pinned staging
 * memory) while every launch, cuBLAS call and copy is folded into a fingerprint instead of
 * being issued. graph_end launches the recorded graph only when the replay's fingerprint
 * equals the capture's, so a pass whose kernels would differ in any argument, grid or
 * upload layout is never replayed stale: it is run again eagerly. cu_graph_note folds bytes
 * into the fingerprint; cu_graph_bad marks the pass unusable (an op it cannot record). */
void cu_graph_note(const void *p, size_t n);
void cu_graph_bad(const char *why);

template <typename P, typename A> static inline void cu_note_param(const A &a) {
    if constexpr (std::is_same_v<std::decay_t<A>, P>) {
        cu_graph_note(&a, sizeof(P)); /* structs: the caller's object (its padding zeroed) */
    } else {
        const P v = (P)a;
        cu_graph_note(&v, sizeof v);
    }
}

/* Launches k<<<g, b, smem, r->s>>>(a...) (recorded by a capture), or in a replay only notes
 * the kernel, the launch shape and every argument as the kernel receives it. */
template <typename... P, typename... A>
static inline void cu_launch(const cu_run *r, const char *what, void (*k)(P...), dim3 g, dim3 b,
                             size_t smem, const A &...a) {
    static_assert(sizeof...(P) == sizeof...(A), "cu_launch: argument count");
    if (r->mode != CU_EAGER) {
        const void *kp = (const void *)k;
        const unsigned shape[7] = {g.x, g.y, g.z, b.x, b.y, b.z, (unsigned)smem};
        cu_graph_note(&kp, sizeof kp);
        cu_graph_note(shape, sizeof shape);
        (cu_note_param<P>(a), ...);
        if (r->mode == CU_REPLAY) return;
    }
    k<<<g, b, smem, r->s>>>(a...);
    cu_note(cudaGetLastError(), what);
}

/* ---- per-thread scratch ----
 * One set per (thread, device). A slot is reused by every call of that thread, so before a
 * slot is rewritten for a call on another stream than its last one, that stream is synced
 * (a kernel there may still read it). */
enum { CU_SLOT_SPANS, CU_SLOT_LORA, CU_SLOT_LORA_T, CU_SLOT_WIDE, CU_SLOT_ATT, CU_SLOT_XB,
       CU_SLOT_XQ, CU_SLOTS };

/* Device scratch of at least `bytes` in `slot` (grown, never shrunk), or NULL with a failure
 * noted. In a graph pass it is never grown (that would free memory a recorded graph uses):
 * a slot too small makes the pass unusable and NULL is returned. */
void *cu_scratch(const cu_run *r, int slot, size_t bytes);
/* Copies `bytes` of host memory into `slot`'s device scratch and returns the device copy, or
 * NULL with a failure noted. When the bytes equal those of the previous upload to that slot
 * by this thread on the same stream, nothing is copied. In a graph pass the copy goes
 * through the graph's pinned staging memory into its own device region instead (recorded
 * as a copy node; equal consecutive uploads to a slot share one region), and the region is
 * rounded up so that a pack that grows a little keeps the recorded layout. */
const void *cu_upload(const cu_run *r, int slot, const void *host, size_t bytes);
/* A host buffer of at least `bytes` for packing an upload (per thread), or NULL (noted). */
void *cu_pack_buf(size_t bytes);
/* The thread's cuBLAS handle for r->dev, bound to r->s; NULL (noted) when unavailable. */
cublasHandle_t cu_blas(const cu_run *r);

/* Threads per block of the elementwise kernels, and a grid for `items` work items that the
 * kernels walk with a grid-stride loop (so any count fits the grid limits). */
#define CU_THREADS 256
static inline unsigned cu_grid(long long items, int per_block) {
    long long g = (items + per_block - 1) / per_block;
    if (g < 1) g = 1;
    if (g > (1 << 20)) g = 1 << 20;
    return (unsigned)g;
}

/* ---- exact conversions (ports of base/dtype.c) ---- */

__device__ __forceinline__ float cu_h2f(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: man · 2^-24, exact in f32 */
            u = __float_as_uint((float)man * 5.9604644775390625e-8f) | sign;
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    }
    return __uint_as_float(u);
}

__device__ __forceinline__ float cu_bf2f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

__device__ __forceinline__ uint16_t cu_f2h(float f) {
    uint32_t u = __float_as_uint(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u;  /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00u; /* overflow (>= 65520) -> inf */
    if (a < 0x38800000u)                         /* subnormal or zero: round half to even */
        return sign | (uint16_t)rintf(__uint_as_float(a) * 16777216.0f);
    const uint32_t mant_odd = (a >> 13) & 1u;
    a += 0xfffu + mant_odd;
    return sign | (uint16_t)((a - 0x38000000u) >> 13);
}

__device__ __forceinline__ uint16_t cu_f2bf(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Little-endian 16-bit load from a 2-byte-aligned address (block scales). */
__device__ __forceinline__ uint16_t cu_ld16(const uint8_t *p) { return *(const uint16_t *)p; }

/* ---- weight elements (kernels/quant.h layouts; same formulas as kernels/ref/quant.c) ---- */

/* 6-bit scale and min of sub-block j of a Q4_K super-block (quant_q4k_scale). */
__device__ __forceinline__ void cu_q4k_scale(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Element c of a weight row of type dt stored as in the file (row = its first byte; every type
 * but Q4_0, Q8_0 and Q6_K, which the device stores split: cu_wel). Bit-identical to
 * kernels_row_to_f32. */
__device__ __forceinline__ float cu_weight(int dt, const uint8_t *row, long long c) {
    switch (dt) {
    case DT_F32: return ((const float *)row)[c];
    case DT_F16: return cu_h2f(((const uint16_t *)row)[c]);
    case DT_BF16: return cu_bf2f(((const uint16_t *)row)[c]);
    case DT_Q5_0: {
        const uint8_t *b = row + (c / 32) * 22;
        const int j = (int)(c % 32);
        const uint32_t qh = (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 |
                            (uint32_t)b[5] << 24;
        const int lo = j < 16 ? (b[6 + j] & 0xF) : (b[6 + j - 16] >> 4);
        const int q = lo | (int)((qh >> j) & 1) << 4;
        return cu_h2f(cu_ld16(b)) * (float)(q - 16);
    }
    case DT_Q4_K: {
        const uint8_t *b = row + (c / 256) * 144;
        const int e = (int)(c % 256), j = e / 32, l = e % 32;
        int sc, m;
        cu_q4k_scale(b + 4, j, &sc, &m);
        const float s = cu_h2f(cu_ld16(b)) * (float)sc, mm = cu_h2f(cu_ld16(b + 2)) * (float)m;
        const uint8_t q = b[16 + 32 * (j / 2) + l];
        return s * (float)((j & 1) ? q >> 4 : q & 0xF) - mm;
    }
    default: return 0.0f;
    }
}

/* The 32 values of unit u (elements 32u .. 32u+31) of a block-quantized row stored as in the
 * file (Q5_0, Q4_K; the split types: cu_unit32m) into w, with the formulas of cu_weight
 * (hence of kernels/ref) but each scale decoded once. */
__device__ __forceinline__ void cu_unit32(int dt, const uint8_t *row, long long u, float w[32]) {
    switch (dt) {
    case DT_Q5_0: {
        const uint8_t *b = row + u * 22;
        const float d = cu_h2f(cu_ld16(b));
        const uint32_t qh = (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 |
                            (uint32_t)b[5] << 24;
#pragma unroll
        for (int j = 0; j < 16; j++) {
            w[j] = d * (float)((int)((b[6 + j] & 0xF) | ((qh >> j) & 1) << 4) - 16);
            w[j + 16] = d * (float)((int)((b[6 + j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16);
        }
        break;
    }
    case DT_Q4_K: {
        const uint8_t *b = row + (u / 8) * 144;
        const int j = (int)(u % 8);
        int sc, m;
        cu_q4k_scale(b + 4, j, &sc, &m);
        const float s = cu_h2f(cu_ld16(b)) * (float)sc, mm = cu_h2f(cu_ld16(b + 2)) * (float)m;
        const uint8_t *q = b + 16 + 32 * (j / 2);
#pragma unroll
        for (int l = 0; l < 32; l++) w[l] = s * (float)((j & 1) ? q[l] >> 4 : q[l] & 0xF) - mm;
        break;
    }
    default:
#pragma unroll
        for (int i = 0; i < 32; i++) w[i] = 0.0f;
        break;
    }
}

/* ---- the split device layout of Q4_0, Q8_0 and Q6_K matrices (weight_upload) ----
 * A matrix of these types, rows × cols with nb blocks a row, is stored as two regions: first
 * the quant bytes of every block, block k = r·nb + b at byte k·QB, then every block's scale
 * bytes, block k at byte rows·nb·QB + k·SB:
 *   Q4_0  QB = 16 (qs, the nibbles as in the file)  SB = 2 (d)
 *   Q8_0  QB = 32 (qs)                              SB = 2 (d)
 *   Q6_K  QB = 192 (ql[128], qh[64])                SB = 18 (scales[16], d)
 * That is the file's rows·nb·(QB + SB) bytes, so buffer sizes are dtype_row_bytes·rows as for
 * every type; in exchange a lane reads quants with aligned 16-byte loads wherever the buffer
 * is (QB is a multiple of 16), where the file's 18-, 34- and 210-byte blocks allow only 2-byte
 * loads. The other types keep the file's rows (Q4_K's 144-byte blocks are 16-byte multiples:
 * its 16-byte loads need no split). */
__host__ __device__ inline bool cu_split_dt(int dt) {
    return dt == DT_Q4_0 || dt == DT_Q8_0 || dt == DT_Q6_K;
}
__host__ __device__ inline int cu_split_qb(int dt) {
    return dt == DT_Q4_0 ? 16 : dt == DT_Q8_0 ? 32 : 192;
}
__host__ __device__ inline int cu_split_sb(int dt) { return dt == DT_Q6_K ? 18 : 2; }
/* where the quants and the scales of a block sit in the file's block (offsets) */
__host__ __device__ inline int cu_split_qoff(int dt) { return dt == DT_Q6_K ? 0 : 2; }
__host__ __device__ inline int cu_split_soff(int dt) { return dt == DT_Q6_K ? 192 : 0; }

/* Element e (0..255) of a Q6_K super-block given its quants q (ql, qh) and scales s
 * (scales[16], d): kernels/quant.h's formula. */
__device__ __forceinline__ float cu_q6k_el(const uint8_t *q, const uint8_t *s, int e) {
    const int h = e / 128, i = e % 128, l = i % 32, k = i / 32;
    const uint8_t ql = q[64 * h + l + 32 * (k & 1)];
    const int v = (k >= 2 ? ql >> 4 : ql & 0xF) | (((q[128 + 32 * h + l] >> (2 * k)) & 3) << 4);
    return cu_h2f(cu_ld16(s + 16)) * (float)(int8_t)s[e / 16] * (float)(v - 32);
}

/* Block k of split matrix W (rows × cols of dt): its quants and its scales. */
__device__ __forceinline__ const uint8_t *cu_split_q(int dt, const uint8_t *W, long long k) {
    return W + (size_t)k * cu_split_qb(dt);
}
__device__ __forceinline__ const uint8_t *cu_split_s(int dt, const uint8_t *W, long long rows,
                                                     long long nb, long long k) {
    return W + (size_t)rows * nb * cu_split_qb(dt) + (size_t)k * cu_split_sb(dt);
}

/* Element c of row r of device matrix W (dt, rows × cols, rb = dtype_row_bytes of a row):
 * bit-identical to kernels_row_to_f32 of the file's row. */
__device__ __forceinline__ float cu_wel(int dt, const uint8_t *W, long long rows, long long cols,
                                        size_t rb, long long r, long long c) {
    if (!cu_split_dt(dt)) return cu_weight(dt, W + (size_t)r * rb, c);
    const int bv = dt == DT_Q6_K ? 256 : 32;
    const long long nb = cols / bv, k = r * nb + c / bv;
    const int j = (int)(c % bv);
    const uint8_t *q = cu_split_q(dt, W, k), *s = cu_split_s(dt, W, rows, nb, k);
    if (dt == DT_Q6_K) return cu_q6k_el(q, s, j);
    const float d = cu_h2f(cu_ld16(s));
    if (dt == DT_Q8_0) return d * (float)(int8_t)q[j];
    const int v = j < 16 ? (q[j] & 0xF) : (q[j - 16] >> 4);
    return d * (float)(v - 8);
}

/* The 32 values of unit u of row r of device matrix W into w (cu_unit32's contract, for
 * every type including the split ones). */
__device__ __forceinline__ void cu_unit32m(int dt, const uint8_t *W, long long rows,
                                           long long cols, size_t rb, long long r, long long u,
                                           float w[32]) {
    if (!cu_split_dt(dt)) {
        cu_unit32(dt, W + (size_t)r * rb, u, w);
        return;
    }
    if (dt == DT_Q6_K) {
        /* unit j of the super-block = elements 32j..32j+31: half h = j/4, k = j%4, l = 0..31 */
        const long long nb = cols / 256, kb = r * nb + u / 8;
        const uint8_t *q = cu_split_q(dt, W, kb), *s = cu_split_s(dt, W, rows, nb, kb);
        const int j = (int)(u % 8), h = j / 4, k = j % 4;
        const float d = cu_h2f(cu_ld16(s + 16));
        const float s0 = d * (float)(int8_t)s[2 * j], s1 = d * (float)(int8_t)s[2 * j + 1];
        const uint8_t *ql = q + 64 * h + 32 * (k & 1), *qh = q + 128 + 32 * h;
#pragma unroll
        for (int l = 0; l < 32; l++) {
            const int v = (k >= 2 ? ql[l] >> 4 : ql[l] & 0xF) | (((qh[l] >> (2 * k)) & 3) << 4);
            w[l] = (l < 16 ? s0 : s1) * (float)(v - 32);
        }
        return;
    }
    const long long nb = cols / 32, k = r * nb + u;
    const uint8_t *q = cu_split_q(dt, W, k);
    const float d = cu_h2f(cu_ld16(cu_split_s(dt, W, rows, nb, k)));
    if (dt == DT_Q8_0) {
#pragma unroll
        for (int i = 0; i < 32; i++) w[i] = d * (float)(int8_t)q[i];
    } else {
#pragma unroll
        for (int j = 0; j < 16; j++) {
            w[j] = d * (float)((q[j] & 0xF) - 8);
            w[j + 16] = d * (float)((q[j] >> 4) - 8);
        }
    }
}

/* ---- KV cache elements (kernels_kv_row_to_f32) ---- */

__device__ __forceinline__ float cu_kv_elem(int dt, const uint8_t *row, int t) {
    switch (dt) {
    case DT_F32: return ((const float *)row)[t];
    case DT_F16: return cu_h2f(((const uint16_t *)row)[t]);
    case DT_BF16: return cu_bf2f(((const uint16_t *)row)[t]);
    case DT_Q8_0: {
        const uint8_t *b = row + (t / 32) * 34;
        return cu_h2f(cu_ld16(b)) * (float)(int8_t)b[2 + t % 32];
    }
    default: return 0.0f;
    }
}

/* ---- warp reductions ---- */

__device__ __forceinline__ float cu_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float cu_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* ---- the ops, one function per kernel_table entry (device chosen by the caller) ---- */

void cu_embed(const cu_run *r, float *out, const wk_weight *W, const int32_t *ids, int n);
void cu_matmul(const cu_run *r, float *y, const float *x, const wk_weight *W, const float *bias,
               int n);
void cu_rmsnorm(const cu_run *r, float *out, const float *x, const float *w, int n, int d,
                float eps);
void cu_rope(const cu_run *r, float *x, int n, int n_heads, int head_dim, int rot_dim, const int32_t *pos,
             const float *cos, const float *sin, bool interleaved);
void cu_kv_store(const cu_run *r, const wk_kv_layer *kv, const float *k, const float *v,
                 const wk_span *spans, int n_spans, int n_kv, int head_dim);
void cu_attention(const cu_run *r, float *out, const float *q, const wk_kv_layer *kv,
                  const wk_span *spans, int n_spans, int n_head, int n_kv, int head_dim,
                  int window, float scale, float softcap);
void cu_silu_mul(const cu_run *r, float *out, const float *gate, const float *up, long n);
void cu_gelu_tanh_mul(const cu_run *r, float *out, const float *gate, const float *up, long n);
void cu_softcap(const cu_run *r, float *x, long n, float cap);
void cu_add(const cu_run *r, float *y, const float *x, long n);
void cu_axpy(const cu_run *r, float *y, float a, const float *x, long n);
void cu_lora(const cu_run *r, float *y, const float *x, const wk_lora_run *runs, int n_runs,
             float *scratch);
void cu_gather_rows(const cu_run *r, float *dst, const float *src, const int32_t *idx, int n,
                    int cols);
void cu_scatter_rows(const cu_run *r, float *y, const float *src, const int32_t *idx,
                     const float *w, int n, int cols);
/* the optional fusions (kernels.h) */
void cu_matmul_multi(const cu_run *r, int count, float *const *y, const float *x,
                     const wk_weight *const *W, const float *const *bias, int n);
void cu_matmul_glu(const cu_run *r, float *h, float *gate, float *up, const float *x,
                   const wk_weight *Wg, const wk_weight *Wu, const float *bg, const float *bu,
                   bool gelu_tanh, int n);
void cu_matmul_add(const cu_run *r, float *y, float *tmp, const float *x, const wk_weight *W,
                   const float *bias, int n);
void cu_rope_qk(const cu_run *r, float *q, float *k, int n, int n_head, int n_kv, int head_dim,
                int rot_dim, const int32_t *pos, const float *cos, const float *sin);

#endif
