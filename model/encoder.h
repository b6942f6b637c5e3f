/* encoder.h — post-LN transformer encoders for sentence embeddings: BERT (BertModel: E5,
 * MiniLM, BGE, GTE ...), XLM-RoBERTa (XLMRobertaModel: multilingual E5, BGE-M3 ...) and MPNet
 * (MPNetModel: all-mpnet-base-v2): config, memory-mapped weights and the bidirectional
 * forward pass over a packed batch.
 *
 * The three share one layer (attention, LN, GELU MLP, LN). They differ only in
 *   - position ids: BERT counts from 0; XLM-R and MPNet count non-padding tokens from
 *     padding_idx + 1, and a token equal to padding_idx gets position padding_idx (HF's
 *     create_position_ids_from_input_ids);
 *   - token types: BERT and XLM-R add a token_type embedding (type 0 here), MPNet has none;
 *   - MPNet adds a learnt bias per head to every attention score, looked up by the bucketed
 *     distance key - query (see encoder_config.n_buckets), shared by all layers.
 *
 * A batch is n_seq sequences laid end to end without padding (lens[s] tokens each, T tokens
 * in all). Every matrix product runs over all T rows at once; only attention and the
 * position ids look at sequence boundaries. That is exactly a right-padded batch with an
 * attention mask (padded keys get weight 0 in HF too), minus the wasted padded rows.
 *
 * Not here: tokenization, pooling, Dense, normalisation, sentence-transformers folders (embed/);
 * RoBERTa (model_type "roberta": same as XLM-R but untested), DeBERTa, NomicBERT, rotary or
 * ALiBi encoders (refused by model_type).
 * Files: encoder.c (config + weights), encoder_forward.c (the forward pass). */
#ifndef WICK_MODEL_ENCODER_H
#define WICK_MODEL_ENCODER_H
#include <stdbool.h>
#include <stdint.h>

#include "formats/safetensors.h"
#include "kernels/kernels.h"
#include "wick.h"

typedef enum encoder_arch {
    ENC_BERT = 0,           /* model_type "bert" (or absent with a *Bert* architecture) */
    ENC_XLMR,               /* "xlm-roberta" */
    ENC_MPNET,              /* "mpnet" */
} encoder_arch;

typedef struct encoder_config {
    char architecture[64];  /* "architectures"[0] or "BertModel" */
    encoder_arch arch;
    int n_vocab;            /* vocab_size */
    int n_embd;             /* hidden_size */
    int n_layer;            /* num_hidden_layers */
    int n_head;             /* num_attention_heads */
    int head_dim;           /* hidden_size / num_attention_heads */
    int n_ff;               /* intermediate_size */
    int n_pos;              /* max_position_embeddings */
    int n_types;            /* type_vocab_size; 0 for MPNet (no token_type embedding) */
    float ln_eps;           /* layer_norm_eps */
    int32_t pad_id;         /* pad_token_id, -1 when absent */
    int32_t pos_pad;        /* padding_idx of the position scheme: -1 = BERT's 0, 1, 2 ...;
                               XLM-R: pad_token_id; MPNet: 1 (fixed in HF's MPNetEmbeddings) */
    int max_tokens;         /* longest sequence the position table holds: n_pos for BERT,
                               n_pos - pos_pad - 1 for XLM-R / MPNet */
    int n_buckets;          /* MPNet: relative_attention_num_buckets (rows of the bias table);
                               0 otherwise */
} encoder_config;

/* MPNet's bucketing of relative positions, as HF's MPNetEncoder computes it: 32 buckets
 * (HF passes its default 32 whatever relative_attention_num_buckets says; the table must hold
 * at least that many rows), max distance 128, bidirectional. rel = key pos - query pos.
 * Buckets [0, 16) are for keys at or before the query, [16, 32) after; distances < 8 get
 * their own bucket, larger ones share log-spaced buckets up to 128 and beyond. */
#define ENCODER_MPNET_BUCKETS 32
int encoder_mpnet_bucket(int rel);

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
    wk_weight type_embd;              /* (n_types, d); absent (data NULL) for MPNet */
    float *emb_ln_w, *emb_ln_b;       /* (d) embeddings.LayerNorm */
    encoder_layer *layers;            /* n_layer */
    bool has_pooler;                  /* pooler.dense present */
    wk_weight pool_w;                 /* (d, d) */
    float *pool_b;                    /* (d) */
    float *rel_bias;                  /* MPNet: (n_buckets, n_head) relative_attention_bias */
    int32_t *rel_bucket;              /* MPNet: (2 * max_tokens - 1), [r + max_tokens - 1] =
                                         encoder_mpnet_bucket(r) */
    int64_t n_params;
    const kernel_table *pack_kern;    /* table whose pack_weight made packs (it frees them) */
    void **packs;                     /* W.packed buffers (encoder_pack_weights) */
    size_t *pack_bytes;
    int n_packs;
} encoder_model;

/* Parses config.json text; `where` names the source in messages. Rejects model types other
 * than "bert", "xlm-roberta" and "mpnet", hidden_act other than "gelu", and
 * position_embedding_type other than "absolute", each with WICK_ERR_UNSUPPORTED naming the
 * field; an XLM-R config without pad_token_id, or one whose position table cannot hold two
 * tokens, is WICK_ERR_FORMAT. */
wick_status encoder_config_parse(const char *json, const char *where, encoder_config *c);

/* Loads `dir` (config.json + model.safetensors or a sharded index). Tensor names are HF's
 * BertModel / XLMRobertaModel / MPNetModel names, with or without the prefix that *ForXxx
 * checkpoints carry ("bert.", "roberta.", "mpnet."). Every tensor is checked for presence,
 * shape and dtype (F32/BF16/F16); the pooler is optional. *out NULL on failure. */
wick_status encoder_load(const char *dir, encoder_model **out);
void encoder_free(encoder_model *m);

/* Lays the layer matrices and the pooler out in k's packed layout where k has one
 * (kernel_table.pack_weight; the AVX-512 table packs F32/F16/BF16 into f32 panels, so the
 * prefill GEMM does no repack per call), the panels written by pool's threads; the file pages
 * under a packed matrix go back to the page cache (st_release_pages), so memory holds the
 * panels (the file's size for F32 weights, twice it for F16/BF16), not the file as well. Only k's matmul reads them: run the model with k. Best effort: a matrix that
 * cannot be packed (shape, memory) keeps the file layout; calling it again does nothing.
 * encoder_free releases them. */
void encoder_pack_weights(encoder_model *m, const kernel_table *k, wk_pool *pool);

/* Scratch for one forward pass; grows, never shrinks. Zero-initialise before first use. */
typedef struct encoder_scratch {
    int cap_tok;
    float *x, *q, *k, *v, *a, *t;     /* (cap_tok, d) each */
    float *f;                         /* (cap_tok, ff) */
    int32_t *pos, *types;             /* (cap_tok) position / token-type ids */
} encoder_scratch;

/* Makes room for n_tok tokens; allocates only on growth (attention_enc keeps its own
 * per-thread scratch). */
wick_status encoder_scratch_reserve(encoder_scratch *s, const encoder_config *c, int n_tok);
void encoder_scratch_free(encoder_scratch *s);

/* Runs the encoder over a packed batch. ids: T = Σ lens ids, already range-checked by the
 * caller ([0, n_vocab)); type_ids: T ids in [0, n_types) or NULL for all 0 (ignored for
 * MPNet); lens[s] in [1, max_tokens]. Scratch must have been reserved for T and max(lens).
 * On return s->x holds the last hidden state (T, d) and s->pos the position ids. Allocates
 * nothing. */
void encoder_forward(const encoder_model *m, const kernel_table *k, wk_pool *pool,
                     encoder_scratch *s, const int32_t *ids, const int32_t *type_ids,
                     const int *lens, int n_seq);

/* BERT pooler: out (n, d) = tanh(cls (n, d, row stride `stride`) · Wᵀ + b). Requires
 * has_pooler. tmp: n * d floats (the gathered CLS rows). */
void encoder_pooler(const encoder_model *m, const kernel_table *k, wk_pool *pool, float *out,
                    const float *cls, int n, long stride, float *tmp);

#endif
