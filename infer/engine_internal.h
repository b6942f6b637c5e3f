/* engine_internal.h — the engine's innards that the single-sequence session (session.c) uses:
 * a session is an engine of one sequence that it evaluates directly, without the scheduler.
 * Not for other callers: they use wick.h. */
#ifndef WICK_INFER_ENGINE_INTERNAL_H
#define WICK_INFER_ENGINE_INTERNAL_H
#include "kv/kv.h"
#include "lora/lora.h"
#include "model/forward.h"
#include "wick.h"

/* Creates an engine; `session` sizes it for one sequence (no prefix cache, n_ctx positions of
 * KV) and keeps the KV type default F32. */
wick_status engine_create(const wick_model *m, const wick_engine_params *p, bool session,
                          wick_engine **out);

/* The engine's pieces, for the session. */
kv_pool *engine_kv(wick_engine *e);
fwd_state *engine_fwd(wick_engine *e);
int engine_n_ctx(const wick_engine *e);
int engine_n_batch(const wick_engine *e);

/* Appends ids[0, n) to `seq` through the model in chunks of n_batch rows, applying adapter `ad`
 * (NULL = none) with multiplier mult: WICK_LOGITS_LAST writes the last row's logits, ALL every
 * row's (n × n_vocab), into `logits` (host). Ids are range-checked by the caller; the sequence
 * must have room (WICK_ERR_CONTEXT_FULL otherwise, before anything changes). */
wick_status engine_eval(wick_engine *e, kv_seq *seq, const int32_t *ids, int n,
                        const wick_adapter *ad, float mult, wick_logits_mode mode,
                        float *logits);

/* Salt for the KV blocks of an adapter setting (0 for the base model). */
uint64_t engine_salt(const wick_adapter *ad, float mult);

#endif
