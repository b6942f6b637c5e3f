/* forward.h — the decoder's inference forward pass over a batch of rows that belong to many
 * sequences (the engine's unit of work), with a paged KV cache.
 *
 * A batch is a list of rows, each a token id at a position, grouped into spans (consecutive
 * rows of one sequence, in order; wk_span) and into adapter runs (lora_run). Every projection
 * runs once over all rows (one pass over the weights, whatever the number of sequences);
 * attention runs per span over that sequence's own blocks (varlen, no padding); each adapter's
 * LoRA products run over its own run of rows. Only the rows named in out_rows go through the
 * final norm and the LM head. A single sequence is the same call with one span.
 *
 * The caller reserves KV blocks for every span's new positions first (kv/kv.h
 * kv_seq_reserve) and commits them after. Nothing here allocates. On a device table the
 * ops are queued: the caller syncs (kernel_table.sync) before trusting the results. */
#ifndef WICK_MODEL_FORWARD_H
#define WICK_MODEL_FORWARD_H
#include "kv/kv.h"
#include "model/layer.h"

typedef struct fwd_batch {
    int n;                       /* rows */
    const int32_t *ids, *pos;    /* (n) token id and position of each row (backend memory) */
    const wk_span *spans;        /* row order, together covering rows [0, n); host arrays */
    int n_spans;
    const lora_run *runs;        /* row order; rows outside every run use the base model */
    int n_runs;
    const int32_t *out_rows;     /* (n_out) ascending rows whose logits are wanted (backend
                                    memory) */
    int n_out;
    float *logits;               /* (n_out, n_vocab) backend memory, written when not NULL */
    float *hidden;               /* (n_out, d) backend memory: the out_rows' states after the
                                    final norm (what the LM head reads; embeddings), written
                                    when not NULL */
} fwd_batch;

/* Activation buffers for batches of up to cap_rows rows and positions below max_pos, and
 * the RoPE tables; sized once (LoRA scratch grows with fwd_reserve_rank, outside the loop). */
typedef struct fwd_state {
    const wick_model *m;
    wk_ctx *ctx;
    int cap_rows, max_pos, cap_rank;
    float *x, *xn, *q, *k, *v, *att, *tmp, *gate, *up;  /* (cap_rows, ·) */
    float *lora_t;               /* (cap_rows, cap_rank) LoRA scratch */
    float *rope_cos, *rope_sin;  /* (max_pos, head_dim/2) */
    float *rope_cos_l, *rope_sin_l; /* the same for the sliding layers' base (Gemma 3) */
    /* mixture of experts (layer.h): backend buffers, and one host block (moe_host) for the
       routing and the plan (on a host table the plan's backend buffers are used directly) */
    float *moe_x, *moe_y, *moe_logits, *moe_wrow, *moe_rows, *moe_sidx;
    void *moe_host;
    float *moe_hlogits, *moe_w, *moe_hwrow;
    int32_t *moe_sel, *moe_hrows, *moe_hsidx, *moe_hchoice, *moe_off;
    float *rope_pos;             /* longrope: (cap_rows) int32 table rows, backend memory */
    int32_t *rope_pos_host;      /* its host staging */
    size_t bytes;                /* everything above, for reports */
    layer_trace_fn trace;        /* tests: also "embed" and "final_norm" (layer −1) */
    void *trace_user;
} fwd_state;

wick_status fwd_init(fwd_state *f, const wick_model *m, wk_ctx *ctx, int cap_rows, int max_pos);
/* Makes the LoRA scratch hold rank r (no-op when it does). */
wick_status fwd_reserve_rank(fwd_state *f, int r);
void fwd_free(fwd_state *f);

/* Runs the batch: the keys/values of every row go to the KV cache, logits of out_rows out. */
void model_forward(fwd_state *f, kv_pool *kv, const fwd_batch *b);

#endif
