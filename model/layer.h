/* layer.h — one decoder layer's forward, the single definition used by inference (paged KV,
 * many sequences: model/forward.c) and by training (whole sequences, activations kept for the
 * backward: train/graph.c):
 *
 *   xn1 = rmsnorm(x)·w_attn;   q, k, v = xn1·Wᵀ + b (+ LoRA)
 *   q, k = rmsnorm per head (·w_q, ·w_k) where the family has it (Qwen3, Gemma 3)
 *   rope(q), rope(k)                          (Gemma 3's sliding layers: their own base)
 *   att = attend(q, k, v)                     the caller's attention (KV cache or not)
 *   x += [rmsnorm](att·Woᵀ + bo (+ LoRA))     [Gemma: a norm of the block's output]
 *   xn2 = rmsnorm(x)·w_mlp;    h = act(xn2·Wgᵀ (+ LoRA)) · (xn2·Wuᵀ (+ LoRA))   silu / gelu-tanh
 *   x += [rmsnorm](h·Wdᵀ (+ LoRA))
 *
 * LoRA (unmerged, per run of rows, S-LoRA style): each run's rows go through their adapter's
 * two skinny products t = x·Aᵀ, u = t·Bᵀ and y += (scale·mult)·u, so a batch mixing adapters
 * reads the base weights once. Nothing here allocates. */
#ifndef WICK_MODEL_LAYER_H
#define WICK_MODEL_LAYER_H
#include "model/lora_mod.h"
#include "model/model.h"

/* Where a layer reads and writes, n rows. Inference points every layer at the same buffers;
 * training gives each layer its own so the backward finds them. */
typedef struct layer_bufs {
    float *x;                 /* (n, d) residual stream, updated in place */
    float *x_in, *x_mid;      /* optional (NULL = not kept): copies of x entering each block */
    float *xn1, *xn2;         /* (n, d) normed block inputs (may be one buffer) */
    float *q, *k, *v, *att;   /* (n, n_head·hd), (n, n_kv·hd) x2, (n, n_head·hd) */
    float *q_raw, *k_raw;     /* optional (NULL = not kept): q, k before the per-head norm */
    float *o_raw, *d_raw;     /* optional: Gemma's attention / MLP block outputs before their norm */
    float *gate, *up, *h;     /* (n, ff) each; h may equal gate (then silu runs in place) */
    float *tmp;               /* (n, d) */
    float **lora_keep;        /* optional: LORA_N_PROJ pointers ((n, r) each, NULL where not
                                 adapted) that receive x·Aᵀ for the backward; needs one run
                                 covering all n rows */
    float *lora_t;            /* scratch (n, r_max) for x·Aᵀ of runs whose t is not kept */
    /* mixture-of-experts layers. In the table's memory: (n, d) rows gathered for one expert
       and its output, (n, n_expert) router logits, and the plan (n·k each, k = n_expert_used):
       rows to gather, where each output goes (scatter_rows' idx) and its weight. In host
       memory: a copy of the logits (NULL on a host table, which reads moe_logits), each row's
       k choices and weights (n·k), the plan (moe_hrows / moe_hsidx / moe_hwrow: the same
       pointers as the table's on a host table), each plan entry's choice index i·k + t, and
       where each expert's entries start (n_expert + 1) */
    float *moe_x, *moe_y, *moe_logits, *moe_wrow;
    int32_t *moe_rows, *moe_sidx;
    float *moe_hlogits, *moe_w, *moe_hwrow;
    int32_t *moe_sel, *moe_hrows, *moe_hsidx, *moe_hchoice, *moe_off;
    /* optional (training): each (row, choice)'s expert gate and up products (n·k, ff_expert)
       and expert output before its weight (n·k, d), in moe_sel's order; moe_logits then keeps
       the router's softmax */
    float *moe_keep_g, *moe_keep_u, *moe_keep_y;
} layer_bufs;

/* The caller's attention for layer l: reads b->q (roped), b->k (roped), b->v, writes b->att. */
typedef void (*layer_attend_fn)(void *user, int layer, layer_bufs *b, int n);

/* Per-activation callback (tests compare intermediates with goldens): name is "attn_norm",
 * "attn_out", "mlp_norm", "mlp_out" or "out"; data (rows, cols) row-major host memory (copied
 * from the device on a device table), valid during the call. NULL = none. */
typedef void (*layer_trace_fn)(void *user, const char *name, int layer, const float *data,
                               int rows, int cols);

typedef struct layer_ctx {
    const wick_model *m;
    wk_ctx *ctx;
    const int32_t *pos;       /* (n) position of each row, for RoPE */
    const int32_t *rope_pos;  /* (n) row of the RoPE tables for each row when not pos (Phi-3's
                                 long factors sit after the short ones), else NULL */
    const float *rope_cos, *rope_sin;  /* (max position + 1, hd/2) */
    const float *rope_cos_local, *rope_sin_local; /* the same for rope_local layers, or NULL */
    const lora_run *runs;     /* adapter runs, row order; rows outside every run: base only */
    int n_runs;
    layer_attend_fn attend;
    void *attend_user;
    layer_trace_fn trace;
    void *trace_user;
} layer_ctx;

void layer_forward(const layer_ctx *lc, int l, layer_bufs *b, int n);

/* Calls fn (when set) on data (rows, cols), a buffer of m's kernel table: handed over as is on
 * a host table, copied to a temporary host buffer first on a device table. */
void layer_emit_trace(const wick_model *m, wk_ctx *ctx, layer_trace_fn fn, void *user,
                      const char *name, int l, const float *d, int rows, int cols);

#endif
