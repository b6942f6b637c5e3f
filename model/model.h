/* model.h — internal layout of wick_model (the decoder's weights and configuration).
 * model.c loads and validates weights; layer.c defines a decoder layer, forward.c runs a batch
 * of rows of many sequences over a paged KV cache. Not here: sessions, engines and sampling
 * (infer/), adapters (lora/), tokenizers. */
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
    float *q_norm, *k_norm;            /* (hd) f32 copies: per-head RMSNorm of q, k (Qwen3), else NULL */
    float *post_attn_norm, *post_mlp_norm; /* (d) Gemma's norms of each block's output, else NULL */
    bool rope_local;                   /* RoPE with rope_inv_freq_local (Gemma 3 sliding layers) */
    /* a mixture-of-experts layer (w_gate/w_up/w_down unused): the router (n_expert, d) and
       each expert's SwiGLU matrices (n_ff_expert, d) x2, (d, n_ff_expert); else NULL */
    wk_weight router;
    wk_weight *exp_gate, *exp_up, *exp_down;
    int window;                        /* sliding window of this layer, 0 = full attention */
} layer_weights;

/* The weights as the kernels read them on a device table (model_device.c): copies in device
 * memory of every matrix, norm and bias, laid out like the host fields of wick_model.
 * `bufs` lists each device allocation once (a tied lm_head shares tok_embd's). */
typedef struct model_dev {
    wk_weight tok_embd, lm_head;
    float *final_norm;
    layer_weights *layers;             /* n_layer, device pointers */
    wk_weight *experts;                /* mixture of experts: n_layer · 3 · n_expert, what the
                                          layers' exp_gate / exp_up / exp_down point into */
    void **bufs;
    size_t *buf_bytes;
    int n_bufs, cap_bufs;
} model_dev;

struct wick_model {
    model_config cfg;
    char *path;
    st_set *st;
    wk_weight tok_embd;                /* (n_vocab, d) */
    wk_weight lm_head;                 /* (n_vocab, d); = tok_embd when tied */
    float *final_norm;                 /* (d) */
    layer_weights *layers;             /* n_layer */
    float *rope_inv_freq;              /* (head_dim/2) f32, scaling applied, as HF computes it */
    float *rope_inv_freq_local;        /* (head_dim/2) sliding layers' (rope_theta_local), or NULL */
    float *rope_inv_freq_long;         /* longrope: the long factors' (rope_inv_freq: short), or NULL */
    const kernel_table *kern;
    model_dev *dev;                    /* device copies when kern is not a host table, else NULL */
    void **packs;                      /* W.packed buffers made by kern->pack_weight (model_pack_weights) */
    size_t *pack_bytes;
    int n_packs;
    wick_tokenizer *tok;               /* NULL when the folder has none */
    struct gguf_file *gguf;            /* the mapping of a model loaded from a .gguf file */
    bool rope_interleaved;             /* GGUF llama: q/k rows permuted, rotate adjacent pairs */
    bool fast;                         /* precision "fast": contexts get WK_CTX_FAST */
    bool headless_ok;                  /* loading: an absent lm_head may be left out */
    bool headless;                     /* no LM head in the checkpoint (model_load_headless):
                                          lm_head aliases tok_embd and must not be used;
                                          engines and sessions refuse the model */
    int64_t n_params, weight_bytes;
    int64_t expert_bytes;              /* bytes of all experts' matrices (decode reads the chosen) */
    char weight_dtype[8];

    /* The model's one mutable part: state owned by upper layers, which the forward pass never
     * reads. lora/ keeps its adapter registry in `lora` (created on first use under ext_mu,
     * freed through lora_free with the model). */
    pthread_mutex_t ext_mu;
    bool ext_mu_init;
    struct lora_registry *lora;
    void (*lora_free)(struct lora_registry *);
    /* Full-parameter training (train/trainer.c) converts every matrix to f32 into this one
     * block, owned by the model from then on (freed with it); NULL otherwise. */
    float *train_block;

    /* Merged model (lora/merge.c): a handle made by wick_model_merge_adapter. It borrows the
     * base's mapping, tokenizer, norms, biases and RoPE table (merge_base must outlive it) and
     * owns only `layers` and the merged matrices in merged_bufs; wick_model_free calls its
     * free_self instead of freeing what it borrows. NULL for a loaded model. */
    const wick_model *merge_base;
    void **merged_bufs;
    int n_merged_bufs;
    void (*free_self)(wick_model *);
};

/* What the kernels read: the device copies on a device table, else the host weights. */
static inline const layer_weights *model_klayer(const wick_model *m, int l) {
    return m->dev ? &m->dev->layers[l] : &m->layers[l];
}
static inline const wk_weight *model_ktok_embd(const wick_model *m) {
    return m->dev ? &m->dev->tok_embd : &m->tok_embd;
}
static inline const wk_weight *model_klm_head(const wick_model *m) {
    return m->dev ? &m->dev->lm_head : &m->lm_head;
}
static inline const float *model_kfinal_norm(const wick_model *m) {
    return m->dev ? m->dev->final_norm : m->final_norm;
}

/* Selects the device of params->device (or WICK_DEVICE) for a loaded model: nothing for the
 * CPU; for a device, its kernel table and a copy of every weight the forward pass reads in
 * its memory (m->dev). On failure the model is unchanged apart from the message. */
wick_status model_device_init(wick_model *m, const wick_model_params *params);
/* On a host table with a packed layout (kernel_table.pack_weight): every quantized matrix the forward
 * pass multiplies gets W.packed, and the file pages under a packed matrix are handed back to
 * the page cache (one copy resident; the embedding and whatever reads W.data later fault the
 * pages it needs back in). A matrix that cannot be packed (type, shape, memory) keeps the
 * unpacked path. model_pack_free releases the buffers. */
/* inv_freq (rot_dim / 2 values) exactly as transformers computes it, in float32: 1 /
 * theta^(2i/rot_dim), then the rope_type's adjustment (linear, llama3; longrope: 1 / (factor_i ·
 * theta^(2i/rot_dim)) with the short factors, or the long ones when `long_f`). */
void model_rope_freqs(const model_config *c, float *inv, bool long_f);
/* Rows [r0, r0 + n) of W as a matrix of their own (a view into W's data). */
wk_weight model_row_range(const wk_weight *W, int64_t r0, int64_t n);
/* parts[0..n) (same dt and cols) stacked by rows as one matrix (Phi-3's qkv / gate_up, a MoE
 * layer's experts): a view when they are consecutive rows of one buffer (as loaded), else a
 * copy in *owned (malloc'd, the caller frees it; NULL for a view). data == NULL on a mismatch
 * of dt / cols or out of memory. */
wk_weight model_stack_rows(const wk_weight *const *parts, int n, void **owned);
void model_pack_weights(wick_model *m);
void model_pack_free(wick_model *m);
/* m->fast from params->precision or WICK_PRECISION ("fast", "exact"); called by every loader. */
wick_status model_set_precision(wick_model *m, const wick_model_params *params);
/* Frees the device copies (wick_model_free). */
void model_device_free(wick_model *m);

/* Initialises / destroys the extension lock of a model handle (model.c, lora/merge.c). */
void model_ext_init(wick_model *m);
void model_ext_destroy(wick_model *m);

/* wick_model_load of a folder for the embedder: a base-model checkpoint whose config says
 * tie_word_embeddings false may lack lm_head.weight (m->headless is then set). */
wick_status model_load_headless(const char *path, const wick_model_params *params,
                                wick_model **out);

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

#endif
