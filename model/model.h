/* model.h — internal layout of wick_model and wick_session (the decoder path).
 * model.c loads and validates weights; session.c owns KV cache + scratch; decoder.c runs
 * the forward pass through the kernel table. Not here: sampling (infer/), tokenizers. */
#ifndef WICK_MODEL_MODEL_H
#define WICK_MODEL_MODEL_H
#include <pthread.h>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/kernels.h"
#include "model/config.h"
#include "wick.h"

typedef struct layer_weights {
    wk_weight wq, wk, wv, wo;          /* (n_head*hd, d), (n_kv*hd, d) x2, (d, n_head*hd) */
    wk_weight w_gate, w_up, w_down;    /* (n_ff, d), (n_ff, d), (d, n_ff) */
    float *bq, *bk, *bv, *bo;          /* f32 copies or NULL: (n_head*hd), (n_kv*hd) x2, (d) */
    float *b_gate, *b_up, *b_down;     /* LLaMA mlp_bias, else NULL */
    float *attn_norm, *mlp_norm;       /* (d) f32 copies */
    int window;                        /* sliding window of this layer, 0 = full attention */
} layer_weights;

struct wick_model {
    model_config cfg;
    char *path;
    st_set *st;
    wk_weight tok_embd;                /* (n_vocab, d) */
    wk_weight lm_head;                 /* (n_vocab, d); = tok_embd when tied */
    float *final_norm;                 /* (d) */
    layer_weights *layers;             /* n_layer */
    float *rope_inv_freq;              /* (head_dim/2) f32, scaling applied, as HF computes it */
    const kernel_table *kern;
    wick_tokenizer *tok;               /* NULL when the folder has none */
    struct gguf_file *gguf;            /* the mapping of a model loaded from a .gguf file */
    bool rope_interleaved;             /* GGUF llama: q/k rows permuted, rotate adjacent pairs */
    int64_t n_params, weight_bytes;
    char weight_dtype[8];

    /* LoRA registry (lora/registry.c). The model is otherwise immutable and shared by threads;
     * the registry is the one mutable part, guarded by lora_mu (taken only by adapter
     * load/unload/list/lookup, never by the forward pass). */
    pthread_mutex_t lora_mu;
    bool lora_mu_init;
    struct wick_adapter **adapters;    /* n_adapters registered adapters, one reference each */
    int n_adapters, cap_adapters;

    /* Merged model (lora/merge.c): a handle made by wick_model_merge_adapter. It borrows the
     * base's mapping, tokenizer, norms, biases and RoPE table (merge_base must outlive it) and
     * owns only `layers` and the merged matrices in merged_bufs. NULL for a loaded model. */
    const wick_model *merge_base;
    void **merged_bufs;
    int n_merged_bufs;
};

/* Per-activation callback used by tests to compare intermediate tensors with goldens.
 * name: "embed", "attn_norm", "attn_out", "mlp_norm", "mlp_out", "out", "final_norm";
 * layer = -1 for embed/final_norm; data is (rows, cols) row-major, valid during the call. */
typedef void (*session_trace_fn)(void *user, const char *name, int layer, const float *data,
                                 int rows, int cols);

struct wick_session {
    const wick_model *model;
    wk_pool *pool;
    int n_ctx, n_batch, pos;
    float *k_cache, *v_cache;          /* [n_layer][n_kv][n_ctx][hd] each */
    float *rope_cos, *rope_sin;        /* (n_ctx, hd/2) */
    float *x, *xn, *q, *k, *v, *att, *tmp, *gate, *up;   /* per-chunk activations */
    float *attn_scratch;               /* pool_size * n_ctx */
    session_trace_fn trace;
    void *trace_user;

    /* LoRA (lora/registry.c): the current adapter (one reference held) and the multiplier of
     * its α/r; scratch for the two skinny products, grown only by wick_session_set_adapter. */
    struct wick_adapter *adapter;
    float adapter_scale;
    float *lora_t;                     /* (n_batch, r_max) : x·Aᵀ */
    float *lora_u;                     /* (n_batch, max out features) : t·Bᵀ */
    size_t lora_t_cap, lora_u_cap;     /* floats */

    /* Prefix reuse (wick_gen_start): the ids whose keys/values are in the cache, and the
     * adapter settings they were computed with; kv_mixed when those changed mid-sequence. */
    int32_t *hist;                     /* (n_ctx) */
    uint64_t kv_adapter_uid;           /* 0 = no adapter */
    float kv_adapter_scale;
    bool kv_mixed;
};

/* In-memory loaders, the same code as wick_model_load behind it (used by the fuzz harnesses
 * and tests). model_load_mem: config.json text, optional generation_config.json text (NULL:
 * none) and a model.safetensors image of st_len bytes; no tokenizer. model_load_gguf_mem: a
 * GGUF image, with the tokenizer of its metadata when params->load_tokenizer. Both are
 * zero-copy: the image must outlive the model. */
wick_status model_load_mem(const char *config_json, const char *generation_json,
                           const void *st_data, size_t st_len, const wick_model_params *params,
                           wick_model **out);
wick_status model_load_gguf_mem(const void *data, size_t len, const wick_model_params *params,
                                wick_model **out);

/* Number of leading ids of `ids` whose keys/values the session already holds, computed with
 * the adapter settings now in force (0 when those changed since position 0). */
int session_reusable_prefix(const wick_session *s, const int32_t *ids, int n);

/* Runs n tokens (n <= n_batch) at position s->pos through the decoder and advances pos.
 * logits: NULL, or (n, vocab) when all_rows, else (1, vocab) for the last row. */
void decoder_forward(wick_session *s, const int32_t *ids, int n, float *logits, bool all_rows);

void session_set_trace(wick_session *s, session_trace_fn fn, void *user);

#endif
