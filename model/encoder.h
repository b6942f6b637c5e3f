/* encoder.h — a BERT-architecture encoder (BertModel: E5, MiniLM, BGE, GTE ...): config,
 * memory-mapped weights and the bidirectional forward pass over a packed batch.
 *
 * A batch is n_seq sequences laid end to end without padding (lens[s] tokens each, T tokens
 * in all). Every matrix product runs over all T rows at once; only attention and the
 * position ids look at sequence boundaries. That is exactly a right-padded batch with an
 * attention mask (padded keys get weight 0 in HF too), minus the wasted padded rows.
 *
 * Not here: tokenization, pooling, normalisation, sentence-transformers folders (embed/),
 * XLM-R / MPNet position schemes (different position offsets and relative bias; unsupported).
 * Files: encoder.c (config + weights), encoder_forward.c (the forward pass). */
#ifndef WICK_MODEL_ENCODER_H
#define WICK_MODEL_ENCODER_H
#include <stdbool.h>
#include <stdint.h>

#include "formats/safetensors.h"
#include "kernels/kernels.h"
#include "wick.h"

typedef struct encoder_config {
    char architecture[64];  /* "architectures"[0] or "BertModel" */
    int n_vocab;            /* vocab_size */
    int n_embd;             /* hidden_size */
    int n_layer;            /* num_hidden_layers */
    int n_head;             /* num_attention_heads */
    int head_dim;           /* hidden_size / num_attention_heads */
    int n_ff;               /* intermediate_size */
    int n_pos;              /* max_position_embeddings */
    int n_types;            /* type_vocab_size */
    float ln_eps;           /* layer_norm_eps */
    int32_t pad_id;         /* pad_token_id, -1 when absent */
} encoder_config;

typedef struct encoder_layer {
    wk_weight wq, wk, wv, wo;         /* (d, d) attention.self.{query,key,value}, output.dense */
    wk_weight w_up, w_down;           /* (ff, d) intermediate.dense, (d, ff) output.dense */
    float *bq, *bk, *bv, *bo;         /* (d) */
    float *b_up, *b_down;             /* (ff), (d) */
    float *ln1_w, *ln1_b;             /* (d) attention.output.LayerNorm */
    float *ln2_w, *ln2_b;             /* (d) output.LayerNorm */
} encoder_layer;

typedef struct encoder_model {
    encoder_config cfg;
    char *dir;
    st_set *st;
    wk_weight tok_embd;               /* (n_vocab, d) */
    wk_weight pos_embd;               /* (n_pos, d) */
    wk_weight type_embd;              /* (n_types, d) */
    float *emb_ln_w, *emb_ln_b;       /* (d) embeddings.LayerNorm */
    encoder_layer *layers;            /* n_layer */
    bool has_pooler;                  /* pooler.dense present */
    wk_weight pool_w;                 /* (d, d) */
    float *pool_b;                    /* (d) */
    int64_t n_params;
} encoder_model;

/* Parses config.json text; `where` names the source in messages. Rejects model types other
 * than BERT-like ones, hidden_act other than "gelu", and position_embedding_type other than
 * "absolute", each with WICK_ERR_UNSUPPORTED naming the field. */
wick_status encoder_config_parse(const char *json, const char *where, encoder_config *c);

/* Loads `dir` (config.json + model.safetensors or a sharded index). Tensor names are HF's
 * BertModel names, with or without a "bert." prefix. Every tensor is checked for presence,
 * shape and dtype (F32/BF16/F16); the pooler is optional. *out NULL on failure. */
wick_status encoder_load(const char *dir, encoder_model **out);
void encoder_free(encoder_model *m);

/* Scratch for one forward pass; grows, never shrinks. Zero-initialise before first use. */
typedef struct encoder_scratch {
    int cap_tok, cap_len, cap_threads;
    float *x, *q, *k, *v, *a, *t;     /* (cap_tok, d) each */
    float *f;                         /* (cap_tok, ff) */
    int32_t *pos, *types;             /* (cap_tok) position / token-type ids */
    float *scores;                    /* (cap_threads, cap_len) */
} encoder_scratch;

/* Makes room for n_tok tokens in sequences of at most max_len; allocates only on growth. */
wick_status encoder_scratch_reserve(encoder_scratch *s, const encoder_config *c, int n_tok,
                                    int max_len, int n_threads);
void encoder_scratch_free(encoder_scratch *s);

/* Runs the encoder over a packed batch. ids: T = Σ lens ids, already range-checked by the
 * caller ([0, n_vocab)); type_ids: T ids in [0, n_types) or NULL for all 0; lens[s] in
 * [1, n_pos]. Scratch must have been reserved for T and max(lens). On return s->x holds the
 * last hidden state (T, d). Allocates nothing. */
void encoder_forward(const encoder_model *m, const kernel_table *k, wk_pool *pool,
                     encoder_scratch *s, const int32_t *ids, const int32_t *type_ids,
                     const int *lens, int n_seq);

/* BERT pooler: out (n, d) = tanh(cls (n, d, row stride `stride`) · Wᵀ + b). Requires
 * has_pooler. tmp: n * d floats (the gathered CLS rows). */
void encoder_pooler(const encoder_model *m, const kernel_table *k, wk_pool *pool, float *out,
                    const float *cls, int n, long stride, float *tmp);

#endif
