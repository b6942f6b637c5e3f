/* kernels.h — the kernel table: every numeric op the models use, as function pointers.
 *
 * A backend is one `kernel_table`. kernels/ref fills it with plain scalar C that is the
 * definition of each op (tests compare every other table with it); kernels/cpu fills it with
 * threaded, vectorised versions chosen at run time from the CPU's features; a CUDA backend
 * fills the same table with device kernels. Models call only through the table and never touch
 * SIMD, threads or device APIs themselves.
 *
 * Every op takes a context (`wk_ctx`): the backend's execution resources — the thread pool on
 * the CPU, a stream on a GPU. A NULL context means "the caller's thread alone" on the CPU
 * tables. Every buffer an op reads or writes (activations, KV blocks, index arrays) must come
 * from the same table's `buf_alloc` (or be host memory on the host tables), so no op assumes
 * host memory; weights are prepared by the backend once at load.
 *
 * Conventions: activations are f32, row-major. A weight matrix `wk_weight` is [rows, cols] =
 * [out_features, in_features] in its file dtype, as PyTorch's nn.Linear stores it, so
 * y = x·Wᵀ + b. Quantized weights: ref dequantizes them to f32 (the exact definition); the
 * CPU tables quantize the activations to 8-bit blocks for an integer dot product in decode
 * (see kernels/quant.h: quant_dot_q8x defines that result). Shapes with a zero dimension are
 * valid and do nothing. No kernel allocates memory. */
#ifndef WICK_KERNELS_H
#define WICK_KERNELS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/pool.h"
#include "wick.h"

typedef struct wk_weight {
    const void *data;   /* rows * cols elements of dt, row-major, rows contiguous; for a
                           block-quantized dt (kernels/quant.h) row r starts at byte
                           r * dtype_row_bytes(dt, cols) and cols is a multiple of the block */
    dtype dt;           /* DT_F32, DT_F16, DT_BF16, DT_Q8_0, DT_Q4_0, DT_Q5_0, DT_Q4_K, DT_Q6_K */
    int64_t rows, cols; /* (out_features, in_features) */
    const void *packed; /* NULL, or the same matrix laid out by the pack_weight of the table
                           that runs it (only that table's matmul reads it, and only while
                           data/rows/cols/dt are still the ones it was made from: a copy of
                           the struct with other data falls back by itself; data stays valid
                           and is what every other op and table reads) */
} wk_weight;

/* Execution context of one caller (a session, an engine, a trainer): used by one thread at a
 * time. CPU tables read `pool`; a GPU table reads `stream`. */
typedef struct wk_ctx {
    wk_pool *pool;      /* CPU worker threads incl. the caller; NULL = the caller alone */
    void *stream;       /* backend stream (CUDA: cudaStream_t), NULL on the CPU */
    unsigned flags;     /* WK_CTX_* */
} wk_ctx;

/* wk_ctx.flags. WK_CTX_FAST: matmul may round activations to bf16 where the weights are BF16
 * and a bf16 dot-product unit makes that faster (prefill GEMMs); without it every matmul is
 * the f32 product of kernels/ref up to summation order. Set from wick_model_params.precision. */
#define WK_CTX_FAST 1u

/* The most products one matmul_multi call takes. */
#define WK_MULTI_MAX 3

/* One layer's view of a paged KV cache. The cache is a pool of blocks of `block_size`
 * positions; each layer has its own region of n_blocks blocks for K and one for V. Inside a
 * block, rows are head-major: the key of KV head h at slot t (position block·bs + t) starts at
 *     k + blk·block_bytes + (h·block_size + t)·row_bytes
 * and holds head_dim elements of `dt` (DT_F32, DT_F16, DT_BF16, or DT_Q8_0 when head_dim is a
 * multiple of 32); V likewise. block_size is a multiple of 16. */
typedef struct wk_kv_layer {
    void *k, *v;
    dtype dt;
    int block_size;
    size_t row_bytes;   /* dtype_row_bytes(dt, head_dim) */
    size_t block_bytes; /* n_kv · block_size · row_bytes */
} wk_kv_layer;

/* A run of consecutive rows of a batch that belong to one sequence: rows [row0, row0 + n) are
 * that sequence's positions pos0 .. pos0 + n − 1, in order. The sequence's block table maps
 * position p to block blocks[p / block_size]. */
typedef struct wk_span {
    int row0, n, pos0;
    const int32_t *blocks;
} wk_span;

/* One run of rows that applies one LoRA module (unmerged): rows [row0, row0 + n) of x / y. */
typedef struct wk_lora_run {
    int row0, n;
    const wk_weight *A;  /* (r, in) f32, or bf16 on host tables (lora/: precision fast) */
    const wk_weight *B;  /* (out, r) as A, B.rows = y's width */
    float scale;         /* the module's α/r times the caller's multiplier */
    float *t;            /* (n, r): receives x·Aᵀ (training keeps it), or NULL: scratch */
} wk_lora_run;

/* graph_begin's answers */
enum { WK_GRAPH_OFF = 0, WK_GRAPH_CAPTURE = 1, WK_GRAPH_REPLAY = 2 };

typedef struct kernel_table {
    const char *name;

    /* Device buffers of this backend (host memory on the CPU tables): buf_alloc returns
     * `bytes` zeroed bytes aligned to 64, or NULL; large CPU buffers are committed lazily by
     * the OS as they are first touched. buf_free takes the size given to buf_alloc. buf_copy
     * copies between host and backend memory in either direction (a memcpy on the CPU). */
    void *(*buf_alloc)(wk_ctx *ctx, size_t bytes);
    void (*buf_free)(wk_ctx *ctx, void *p, size_t bytes);
    void (*buf_copy)(wk_ctx *ctx, void *dst, const void *src, size_t bytes);

    /* Waits until every op and copy queued on ctx has run, then returns the first failure
     * any op or buffer call of this table met on the calling thread since its previous sync
     * (a device error, an allocation that failed inside an op), with the message set, or
     * WICK_OK. Ops cannot return a status themselves, so callers that run a device table
     * sync after each forward pass. The host tables return WICK_OK at once: their ops
     * cannot fail. */
    wick_status (*sync)(wk_ctx *ctx);

    /* Optional (NULL when the table has none, as on the host tables): recorded passes, which
     * take away the per-op launch cost of small steps (the CUDA table records a CUDA graph).
     *   mode = graph_begin(ctx, key);  ...the pass's ops and buf_copy calls...;
     *   if (mode) graph_end(ctx, &redo);  if (redo) ...the same ops again, without graph_begin
     * WK_GRAPH_OFF: the ops run as usual (a key's first pass, or recording is off). CAPTURE or
     * REPLAY: they do not run yet; graph_end launches the recorded pass of `key` if the ops
     * did what was recorded in every respect but the contents of the host data they upload
     * (span tables, LoRA runs, host-to-device buf_copy sources, all read before graph_end
     * returns, so the caller may reuse them). If not, or if the pass did what a recording
     * cannot hold (a sync, a device-to-host copy, a buffer allocated or freed), graph_end sets
     * *redo and nothing of the pass has run. `key` names the shape of a pass (the caller's
     * choice): passes under one key that differ only in uploaded data share one recording.
     * A failure inside a launched pass is reported by the next sync, as for any op. */
    int (*graph_begin)(wk_ctx *ctx, uint64_t key);
    void (*graph_end)(wk_ctx *ctx, bool *redo);

    /* Optional (NULL when the table has none): a copy of W in a layout this table's matmul
     * reads faster, in memory from buf_alloc (*bytes of it, for buf_free), or NULL when it
     * has no such layout for W (type, shape) or memory ran out; the caller sets W.packed to
     * it. Made once at load; W.data must not change while it is in use. */
    void *(*pack_weight)(wk_ctx *ctx, const wk_weight *W, size_t *bytes);

    /* Optional (NULL: the weights are buf_copy'd in their file layout): copies host matrix W
     * into dst, a buffer of this table of dtype_row_bytes(W.dt, W.cols) * W.rows bytes, in
     * the layout this table's ops read weights in (the CUDA table splits Q4_0 / Q8_0 into
     * quants and scales, kernels/cuda/cuda_internal.cuh). Device weights are read only by
     * this table's ops; whoever uploads weights for them (model_device.c, tests) calls this. */
    void (*weight_upload)(wk_ctx *ctx, void *dst, const wk_weight *W);

    /* out (n, W.cols) = W[ids[i], :] converted to f32. ids are already range-checked. */
    void (*embed)(wk_ctx *ctx, float *out, const wk_weight *W, const int32_t *ids, int n);

    /* out (n, d) = x / sqrt(mean(x²) + eps) * w, per row; out may equal x. */
    void (*rmsnorm)(wk_ctx *ctx, float *out, const float *x, const float *w, int n, int d,
                    float eps);

    /* y (n, W.rows) = x (n, W.cols) · Wᵀ + bias (bias may be NULL). y must not alias x. */
    void (*matmul)(wk_ctx *ctx, float *y, const float *x, const wk_weight *W, const float *bias,
                   int n);

    /* Rotary embedding, rotate-half layout (Hugging Face): x holds n rows of n_heads heads of
     * head_dim (row stride n_heads*head_dim). Only the first rot_dim values of each head
     * rotate (partial rotary, Phi-4-mini; rot_dim = head_dim otherwise; even). Row i is at
     * position p = pos[i] and is rotated with c = cos[p*half + j], s = sin[p*half + j]
     * (half = rot_dim/2) for pair (j, j+half):
     *   x'[j] = x[j]·c − x[j+half]·s ;  x'[j+half] = x[j+half]·c + x[j]·s. */
    void (*rope)(wk_ctx *ctx, float *x, int n, int n_heads, int head_dim, int rot_dim,
                 const int32_t *pos, const float *cos, const float *sin);

    /* Rotary embedding, interleaved layout (GGUF llama: llama.cpp's converter permutes the
     * q/k rows so each rotated pair is adjacent). Same arguments as rope; pair (2j, 2j+1):
     *   x'[2j] = x[2j]·c − x[2j+1]·s ;  x'[2j+1] = x[2j+1]·c + x[2j]·s. */
    void (*rope_interleaved)(wk_ctx *ctx, float *x, int n, int n_heads, int head_dim,
                             int rot_dim, const int32_t *pos, const float *cos, const float *sin);

    /* Writes the keys and values of every span's rows into the paged cache: row r of span s
     * (position p = pos0 + r − row0) goes to slot p of its sequence, converted to kv->dt
     * (f16: round to nearest even; bf16: round to nearest even; q8_0: quant_quantize_row).
     *   k, v (rows, n_kv*head_dim), rows = Σ spans' n. */
    void (*kv_store)(wk_ctx *ctx, const wk_kv_layer *kv, const float *k, const float *v,
                     const wk_span *spans, int n_spans, int n_kv, int head_dim);

    /* Causal attention over a paged KV cache for every span of a batch (varlen: no padding).
     * Row i of span s is at position p = pos0 + (i − row0) and sees the positions j of its own
     * sequence with j <= p and, when window > 0, j > p − window; the cache already holds them
     * (kv_store ran first). Query head h uses KV head h / (n_head/n_kv).
     *   q   (rows, n_head*head_dim)   out (rows, n_head*head_dim)
     * scores = q·k · scale with k read as f32 from kv->dt, then softcap·tanh(score/softcap)
     * when softcap > 0 (Gemma 2), softmax in f32, out = Σ p·v. */
    void (*attention)(wk_ctx *ctx, float *out, const float *q, const wk_kv_layer *kv,
                      const wk_span *spans, int n_spans, int n_head, int n_kv, int head_dim,
                      int window, float scale, float softcap);

    /* In-place numerically stable softmax of x[0..n). Host memory, caller's thread. */
    void (*softmax)(float *x, int n);

    /* out[i] = silu(gate[i]) * up[i], silu(z) = z / (1 + e^−z); for i < n. out may alias. */
    void (*silu_mul)(wk_ctx *ctx, float *out, const float *gate, const float *up, long n);
    /* out[i] = gelu_tanh(gate[i]) · up[i], GELU's tanh form 0.5·g·(1 + tanh(√(2/π)·(g +
       0.044715·g³))) (Gemma's gelu_pytorch_tanh); out may equal gate. */
    void (*gelu_tanh_mul)(wk_ctx *ctx, float *out, const float *gate, const float *up, long n);
    /* x[i] = cap · tanh(x[i] / cap) (Gemma 2's final logits), cap > 0. */
    void (*softcap)(wk_ctx *ctx, float *x, long n, float cap);

    /* Encoder ops (BERT, XLM-R, MPNet; host tables only, NULL on device tables: embeddings run
     * on the CPU). gelu: x[i] = 0.5·x[i]·(1 + erf(x[i]/√2)) in place (the exact GELU).
     * attention_enc: bidirectional attention inside each of n_seq sequences packed one after
     * the other (T = Σ lens rows; every row sees every row of its own sequence). q, k, v, out
     * (T, n_head·head_dim), head h at columns [h·head_dim, (h+1)·head_dim); out must not alias
     * them. scores = (q·k)·scale, plus rel_bias[rel_bucket[j − i + max_tokens − 1]·n_head + h]
     * for query row i and key row j when rel_bias is not NULL (MPNet's relative position bias;
     * rel_bucket holds 2·max_tokens − 1 entries, every len <= max_tokens), softmax in f32,
     * out = Σ p·v. */
    void (*gelu)(wk_ctx *ctx, float *x, long n);
    /* layernorm: x (n, d) = (v − mean(v)) / sqrt(var(v) + eps) · w + b per row, v = x + r (r
     * (n, d) may be NULL); mean and the biased variance in double, two passes (a residual
     * stream with a large mean loses bits in one-pass f32 statistics). */
    void (*layernorm)(wk_ctx *ctx, float *x, const float *r, const float *w, const float *b,
                      int n, int d, float eps);
    void (*attention_enc)(wk_ctx *ctx, float *out, const float *q, const float *k,
                          const float *v, const int *lens, int n_seq, int n_head, int head_dim,
                          float scale, const float *rel_bias, const int32_t *rel_bucket,
                          int max_tokens);
    /* Optional (NULL: callers run matmul, then gelu): matmul's y (same arguments and
     * contract), then gelu on all of it, as one op, so that a table can apply GELU to each
     * block of y while it is still in the cache of the core that wrote it (an encoder's
     * intermediate.dense). */
    void (*matmul_gelu)(wk_ctx *ctx, float *y, const float *x, const wk_weight *W,
                        const float *bias, int n);

    /* y[i] += x[i] for i < n. */
    void (*add)(wk_ctx *ctx, float *y, const float *x, long n);

    /* y[i] += a·x[i] for i < n (the product rounded to f32 first, then the sum). */
    void (*axpy)(wk_ctx *ctx, float *y, float a, const float *x, long n);

    /* LoRA, unmerged, for every run (S-LoRA-style segments, runs of different adapters in one
     * call): t = x[rows]·Aᵀ (n, r); u = t·Bᵀ (n, out); y[rows] += scale·u, each product
     * rounded before its add (as PEFT: result + lora_B(lora_A(x))·scaling). x (rows, in),
     * y (rows, out). scratch: room for (row0 + n)·r_max floats for every run without its own
     * t, r_max the largest rank of the call's runs (each run's t starts at row0·r_max). */
    void (*lora)(wk_ctx *ctx, float *y, const float *x, const wk_lora_run *runs, int n_runs,
                 float *scratch);

    /* dst row i (cols floats) = src row idx[i], for i < n (a gather of rows). */
    void (*gather_rows)(wk_ctx *ctx, float *dst, const float *src, const int32_t *idx, int n,
                        int cols);
    /* The inverse, weighted (a mixture of experts' outputs into their rows): for i < n, with
     * idx[i] >= 0, y row idx[i] += w[i]·src row i; with idx[i] < 0, y row -idx[i]-1 =
     * w[i]·src row i (the row's first term: y needs no zeroing). Each product is rounded
     * before its add. The rows one call names are distinct. idx and w are in this table's
     * memory. */
    void (*scatter_rows)(wk_ctx *ctx, float *y, const float *src, const int32_t *idx,
                         const float *w, int n, int cols);

    /* Optional fusions of a decoder layer's ops (NULL: callers run the plain ops; the ref
     * table leaves them NULL). A device table uses them to launch fewer, fuller kernels per
     * layer, which is what decode of a small batch is bound by; the CPU tables run each as
     * one pool job (one wake-up and one wait instead of two or three, the activation and the
     * residual add on rows still in cache). Each equals the plain ops it names, bit for bit
     * (same formulas, same sums; kernels/ref is the reference through those ops).
     * matmul_multi: y[i] = matmul(x, W[i], bias[i]) for i < count (1..WK_MULTI_MAX); the W[i]
     *   share dt and cols (a layer's q, k and v). bias may be NULL, as may bias[i].
     * matmul_glu: h (n, Wg.rows) = act(x·Wgᵀ + bg) ⊙ (x·Wuᵀ + bu), act = silu, or GELU's
     *   tanh form when gelu_tanh (matmul, matmul, silu_mul / gelu_tanh_mul); Wg and Wu share
     *   shape and dt; gate and up (n, Wg.rows) are scratch the op may use and leave undefined.
     * matmul_add: y (n, W.rows) += x·Wᵀ + bias (matmul into tmp, then add); tmp (n, W.rows)
     *   is scratch the op may use and leave undefined.
     * rope_qk: rope (rotate-half layout) of q (n_head heads) and of k (n_kv heads) with the
     *   same positions and tables. */
    void (*matmul_multi)(wk_ctx *ctx, int count, float *const *y, const float *x,
                         const wk_weight *const *W, const float *const *bias, int n);
    void (*matmul_glu)(wk_ctx *ctx, float *h, float *gate, float *up, const float *x,
                       const wk_weight *Wg, const wk_weight *Wu, const float *bg,
                       const float *bu, bool gelu_tanh, int n);
    void (*matmul_add)(wk_ctx *ctx, float *y, float *tmp, const float *x, const wk_weight *W,
                       const float *bias, int n);
    void (*rope_qk)(wk_ctx *ctx, float *q, float *k, int n, int n_head, int n_kv, int head_dim,
                    int rot_dim, const int32_t *pos, const float *cos, const float *sin);
} kernel_table;

/* The scalar reference table. */
const kernel_table *kernels_ref(void);
/* The threaded CPU table, best ISA for this machine (NULL if not built). */
const kernel_table *kernels_cpu(void);
/* One CPU variant by ISA name: "avx512", "avx2" or "generic"; NULL when this CPU cannot run
 * it or the name is unknown. */
const kernel_table *kernels_cpu_variant(const char *isa);
/* Picks a table by name: "auto"/"cpu" -> kernels_cpu, "ref" -> kernels_ref, "avx512" /
 * "avx2" / "generic" -> that CPU variant. The WICK_ISA environment variable, when set,
 * overrides `name`. NULL for an unknown name or a variant this CPU cannot run. */
const kernel_table *kernels_select(const char *name);

/* The table for a device name: NULL, "" or "cpu" -> *out = NULL (the caller keeps its CPU
 * table); "cuda" or "cuda:N" -> the CUDA table of device N (0 by default). Fails with
 * WICK_ERR_INVALID_ARG for another name, WICK_ERR_UNSUPPORTED when this build has no CUDA
 * backend or the machine has no usable CUDA device (message says which). */
wick_status kernels_select_device(const char *device, const kernel_table **out);

/* True for the tables whose buffers are host memory (ref and cpu): callers may read and write
 * their buffers directly. Buffers of any other table are reached only through buf_copy. */
bool kernels_is_host(const kernel_table *K);

/* K itself, or, when the environment sets WICK_PROFILE (not "0") and K is a host table, a
 * table that times K's ops and prints where the time went when the process exits
 * (kernels/profile.c). kernels_select applies it. */
const kernel_table *kernels_profiled(const kernel_table *K);

/* Converts one weight row to f32 (reference semantics, used by every table's tails). */
void kernels_row_to_f32(float *out, const wk_weight *W, int64_t row);

/* Host buffers shared by the host tables (ref and cpu): zeroed, 64-byte aligned; sizes of
 * 1 MiB and more are anonymous mappings committed page by page as they are touched. */
void *kernels_host_alloc(wk_ctx *ctx, size_t bytes);
void kernels_host_free(wk_ctx *ctx, void *p, size_t bytes);
void kernels_host_copy(wk_ctx *ctx, void *dst, const void *src, size_t bytes);
wick_status kernels_host_sync(wk_ctx *ctx);

/* The key (or value) row of KV head h at position p of a span's sequence, in the layer's
 * cache (host tables). */
static inline const void *kv_row(const wk_kv_layer *kv, const void *base, const int32_t *blocks,
                                 int h, int p) {
    const int bs = kv->block_size;
    return (const char *)base + (size_t)blocks[p / bs] * kv->block_bytes +
           ((size_t)h * bs + (size_t)(p % bs)) * kv->row_bytes;
}

/* Reference conversions of one head row between f32 and a KV element type (host). */
void kernels_kv_row_from_f32(dtype dt, void *dst, const float *x, int n);
void kernels_kv_row_to_f32(dtype dt, float *out, const void *src, int n);

#endif
