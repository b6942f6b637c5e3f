/* embed.h — internals of the embedder shared between embed/ files: the sentence-transformers
 * folder description, its Dense modules and pooling of one sequence's hidden states.
 * Not here: the public API (include/wick.h "Embeddings", embed/embed.c). */
#ifndef WICK_EMBED_EMBED_H
#define WICK_EMBED_EMBED_H
#include <stdbool.h>

#include "formats/safetensors.h"
#include "kernels/kernels.h"
#include "wick.h"

/* A sentence-transformers Dense module: y = act(x · Wᵀ + b), run on the pooled vector. */
typedef enum embed_act {
    EMBED_ACT_IDENTITY = 0,  /* torch.nn.modules.linear.Identity */
    EMBED_ACT_TANH,          /* torch.nn.modules.activation.Tanh (the usual one) */
    EMBED_ACT_RELU,          /* torch.nn.modules.activation.ReLU */
    EMBED_ACT_SIGMOID,       /* torch.nn.modules.activation.Sigmoid */
} embed_act;

typedef struct embed_dense {
    int in, out;             /* in_features, out_features */
    embed_act act;           /* activation_function */
    st_set *st;              /* <path>/model.safetensors, owns w's data */
    wk_weight w;             /* (out, in) linear.weight */
    float *b;                /* (out) linear.bias, NULL when "bias": false */
} embed_dense;

#define EMBED_MAX_DENSE 4

/* What a sentence-transformers folder asks for. Absent files leave the defaults:
 * pooling MEAN, normalize true, max_seq_length 0 (= unknown), no Dense. */
typedef struct embed_st_config {
    bool has_modules;        /* modules.json was present */
    wick_pooling pooling;
    bool normalize;
    int max_seq_length;      /* sentence_bert_config.json, 0 when absent */
    int n_dense;             /* Dense modules after Pooling, in order */
    embed_dense dense[EMBED_MAX_DENSE];
    int n_prompts;           /* config_sentence_transformers.json "prompts" */
    char **prompt_name, **prompt_text;
    char *default_prompt;    /* its "default_prompt_name", NULL when none */
} embed_st_config;

/* Reads `dir`/modules.json, the Pooling module's config.json, each Dense module's config.json
 * and weights, and sentence_bert_config.json. Errors name the file and the field, module or
 * tensor; setups wick cannot reproduce are WICK_ERR_UNSUPPORTED. Consecutive Dense modules
 * are checked to chain (in_features = the previous out_features); the first one's
 * in_features is the caller's to check against hidden_size. On failure nothing is left to
 * free; on success release with embed_st_config_free. */
wick_status embed_st_config_load(const char *dir, embed_st_config *out);
void embed_st_config_free(embed_st_config *c);

/* Reads config_sentence_transformers.json text (prompts, default_prompt_name) into c's prompt
 * fields (c zeroed or from embed_st_config_load; free with embed_st_config_free, also after a
 * failure). Used by embed_st_config_load and the config fuzzer. */
wick_status embed_st_prompts_parse(const char *json, const char *where, embed_st_config *c);

/* The text of prompt `name`, NULL when the folder has none of that name. */
const char *embed_st_prompt(const embed_st_config *c, const char *name);

/* Reads the Dense module in dir/sub (config.json + model.safetensors) into *m; on failure *m
 * is zeroed and holds nothing. Used by embed_st_config_load. */
wick_status embed_dense_load(const char *dir, const char *sub, embed_dense *m);

/* y (n, out) = act(x (n, in) · Wᵀ + b). */
void embed_dense_apply(const embed_dense *m, const kernel_table *k, wk_pool *pool, float *y,
                       const float *x, int n);

/* out (d) = pooling of h (len, d) (len >= 1), then optionally x / max(‖x‖₂, 1e-12). */
void embed_pool(const float *h, int len, int d, wick_pooling mode, bool normalize, float *out);

/* x / max(‖x‖₂, 1e-12) in place. */
void embed_normalize(float *x, int d);

/* ---- decoder models as embedders (embed_decoder.c) ---------------------------------- */
typedef struct embed_decoder embed_decoder;
struct model_config;

/* Loads the decoder folder at path (model_load_headless: lm_head may be absent) with kernel
 * table `kernels`, its forward passes run on pool (borrowed; may be NULL). No tokenizer. */
wick_status embed_decoder_load(const char *path, const char *kernels, wk_pool *pool,
                               embed_decoder **out);
void embed_decoder_free(embed_decoder *d);
const struct model_config *embed_decoder_config(const embed_decoder *d);
/* Runs n_seq texts (ids packed one after the other, lens[i] >= 1 each, ids valid) as
 * separate causal sequences and writes the final-norm hidden states to h: every row (Σ lens
 * rows of d floats) when all_rows, else the last row of each text (n_seq rows). */
wick_status embed_decoder_run(embed_decoder *d, const int32_t *ids, const int *lens, int n_seq,
                              bool all_rows, float *h);

#endif
