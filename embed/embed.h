/* embed.h — internals of the embedder shared between embed/ files: the sentence-transformers
 * folder description and pooling of one sequence's hidden states.
 * Not here: the public API (include/wick.h "Embeddings", embed/embed.c). */
#ifndef WICK_EMBED_EMBED_H
#define WICK_EMBED_EMBED_H
#include <stdbool.h>

#include "wick.h"

/* What a sentence-transformers folder asks for. Absent files leave the defaults:
 * pooling MEAN, normalize true, max_seq_length 0 (= unknown). */
typedef struct embed_st_config {
    bool has_modules;        /* modules.json was present */
    wick_pooling pooling;
    bool normalize;
    int max_seq_length;      /* sentence_bert_config.json, 0 when absent */
} embed_st_config;

/* Reads `dir`/modules.json, the Pooling module's config.json and sentence_bert_config.json.
 * Errors name the file and the field or module; setups wick cannot reproduce are
 * WICK_ERR_UNSUPPORTED. */
wick_status embed_st_config_load(const char *dir, embed_st_config *out);

/* out (d) = pooling of h (len, d) (len >= 1), then optionally x / max(‖x‖₂, 1e-12). */
void embed_pool(const float *h, int len, int d, wick_pooling mode, bool normalize, float *out);

/* x / max(‖x‖₂, 1e-12) in place. */
void embed_normalize(float *x, int d);

#endif
