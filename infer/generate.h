/* generate.h — the generator core shared by the session pull API (wick_gen_*) and the engine:
 * everything that turns a row of logits into the next token (penalties, sampling, min_tokens,
 * streaming detokenization, stop strings, finish reasons), independent of how the logits were
 * computed. Not here: running the model (session.c, engine.c), threads (stream.c). */
#ifndef WICK_INFER_GENERATE_H
#define WICK_INFER_GENERATE_H
#include "infer/sampler.h"
#include "model/model.h"
#include "wick.h"

/* Largest number of top-logprob alternatives a token can carry. */
#define GEN_MAX_TOP 20
#define SPEC_MAX_K 16    /* wick_gen_params.spec_k at most */
#define SPEC_MAX_NGRAM 8 /* wick_gen_params.spec_ngram at most */

/* A generation for `m` after `prompt` (copied) in a context of n_ctx positions; params are
 * validated and copied (NULL = defaults). Not tied to a session (its session is NULL).
 * shared: sampling scratch shared with other generations sampled one at a time (NULL = its
 * own). */
wick_status gen_create(const wick_model *m, const int32_t *prompt, int n, int n_ctx,
                       const wick_gen_params *params, sampler_scratch *shared, wick_gen **out);

/* Given the logits that follow everything fed so far (n_held positions of n_ctx; the buffer
 * may be modified), produces the next token into *tok: sampling, text, stop checks; finish is
 * set on the last one (LENGTH when max_tokens is reached or no position is left to feed it). */
wick_status gen_next(wick_gen *g, float *logits, int n_held, int n_ctx, wick_token *tok);

/* The final "cancelled" token (id −1, with whatever text was held back). */
void gen_cancelled(wick_gen *g, wick_token *tok);

bool gen_is_cancelled(const wick_gen *g);
bool gen_is_done(const wick_gen *g);
/* Adds to the timings reported on the last token. */
void gen_add_time(wick_gen *g, double prefill_ms, double decode_ms);
/* The prompt (owned by the generation). */
int gen_prompt(const wick_gen *g, const int32_t **ids);
/* Prompt tokens whose keys/values were reused instead of computed (reported at the end). */
void gen_set_cached(wick_gen *g, int n);

#endif
