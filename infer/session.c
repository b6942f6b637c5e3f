/* session.c — wick_session: one sequence on a single-sequence engine (engine.c), evaluated
 * directly (no scheduler), with the adapter selection and prefix reuse of the pull API.
 *
 * Prefix reuse: the sequence keeps the ids whose keys/values it holds, and the adapter
 * setting (salt) they were computed with; `mixed` marks a sequence whose adapter changed
 * part-way, which then matches nothing until it is emptied. */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "infer/engine_internal.h"
#include "infer/session.h"

struct wick_session {
    const wick_model *model;
    wick_engine *e;
    kv_seq seq;
    wick_adapter *adapter;       /* current adapter (one reference held), or NULL */
    float adapter_scale;
    bool mixed;
};

wick_session_params wick_session_params_default(void) {
    wick_session_params p = {.n_ctx = 0, .n_batch = 512, .n_threads = 0};
    return p;
}

wick_status wick_session_create(const wick_model *m, const wick_session_params *params,
                                wick_session **out) {
    if (!out) return err_set(WICK_ERR_INVALID_ARG, "wick_session_create: out is NULL");
    *out = NULL;
    if (!m) return err_set(WICK_ERR_INVALID_ARG, "wick_session_create: model is NULL");
    wick_session_params p = params ? *params : wick_session_params_default();
    if (p.n_ctx < 0 || p.n_batch < 0 || p.n_threads < 0)
        return err_set(WICK_ERR_INVALID_ARG,
                       "wick_session_create: n_ctx, n_batch and n_threads must be >= 0");
    wick_engine_params ep = wick_engine_params_default();
    ep.n_threads = p.n_threads;
    ep.max_seqs = 1;
    ep.n_ctx = p.n_ctx;
    ep.n_batch = p.n_batch ? p.n_batch : 512;
    ep.kv_tokens = 0; /* = n_ctx */
    ep.kv_type = p.kv_type;
    ep.prefix_cache = false;
    wick_session *s = calloc(1, sizeof *s);
    if (!s) return err_set(WICK_ERR_NOMEM, "out of memory");
    s->model = m;
    wick_status st = engine_create(m, &ep, true, &s->e);
    if (!st) st = kv_seq_init(&s->seq, engine_n_ctx(s->e), 0);
    if (st) {
        wick_session_free(s);
        return st;
    }
    *out = s;
    return WICK_OK;
}

void wick_session_free(wick_session *s) {
    if (!s) return;
    if (s->e) kv_seq_free(engine_kv(s->e), &s->seq);
    lora_adapter_release(s->adapter);
    wick_engine_free(s->e);
    free(s);
}

void wick_session_reset(wick_session *s) {
    if (s) wick_session_truncate(s, 0);
}

int wick_session_pos(const wick_session *s) { return s ? s->seq.n_tokens : 0; }

int wick_session_n_ctx(const wick_session *s) { return s ? s->seq.max_tokens : 0; }

const wick_model *wick_session_model(const wick_session *s) { return s->model; }

wick_status wick_session_truncate(wick_session *s, int pos) {
    if (!s) return err_set(WICK_ERR_INVALID_ARG, "wick_session_truncate: session is NULL");
    if (pos < 0 || pos > s->seq.n_tokens)
        return err_set(WICK_ERR_INVALID_ARG,
                       "wick_session_truncate: pos %d outside [0, %d] (the current position)",
                       pos, s->seq.n_tokens);
    kv_seq_truncate(engine_kv(s->e), &s->seq, pos);
    if (pos == 0) s->mixed = false;
    return WICK_OK;
}

static uint64_t current_salt(const wick_session *s) {
    return engine_salt(s->adapter, s->adapter_scale);
}

int session_reusable_prefix(const wick_session *s, const int32_t *ids, int n) {
    if (s->mixed || current_salt(s) != s->seq.salt) return 0;
    int k = 0;
    while (k < n && k < s->seq.n_tokens && s->seq.ids[k] == ids[k]) k++;
    return k;
}

void session_set_trace(wick_session *s, layer_trace_fn fn, void *user) {
    fwd_state *f = engine_fwd(s->e);
    f->trace = fn;
    f->trace_user = user;
}

wick_status wick_session_eval(wick_session *s, const int32_t *ids, int n, wick_logits_mode mode,
                              float *logits) {
    if (!s) return err_set(WICK_ERR_INVALID_ARG, "wick_session_eval: session is NULL");
    if (n < 0 || (n > 0 && !ids))
        return err_set(WICK_ERR_INVALID_ARG, "wick_session_eval: ids is NULL or n < 0");
    if (mode != WICK_LOGITS_NONE && mode != WICK_LOGITS_LAST && mode != WICK_LOGITS_ALL)
        return err_set(WICK_ERR_INVALID_ARG, "wick_session_eval: unknown logits mode %d", mode);
    if (mode != WICK_LOGITS_NONE && !logits)
        return err_set(WICK_ERR_INVALID_ARG, "wick_session_eval: logits buffer is NULL");
    if (n == 0) {
        if (mode == WICK_LOGITS_LAST)
            return err_set(WICK_ERR_INVALID_ARG,
                           "wick_session_eval: no tokens given, so there are no last logits");
        return WICK_OK;
    }
    const int n_vocab = s->model->cfg.n_vocab;
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= n_vocab)
            return err_set(WICK_ERR_INVALID_ARG,
                           "token id %d at index %d is outside the vocabulary [0, %d)", ids[i], i,
                           n_vocab);
    if ((int64_t)s->seq.n_tokens + n > s->seq.max_tokens)
        return err_set(WICK_ERR_CONTEXT_FULL,
                       "context full: %d tokens in the session + %d new > n_ctx %d",
                       s->seq.n_tokens, n, s->seq.max_tokens);
    /* remember which adapter setting the cached keys/values were computed with */
    const uint64_t salt = current_salt(s);
    if (s->seq.n_tokens == 0) kv_seq_set_salt(&s->seq, salt);
    else if (salt != s->seq.salt) s->mixed = true;
    return engine_eval(s->e, &s->seq, ids, n, s->adapter, s->adapter_scale, mode, logits);
}

wick_status wick_session_set_adapter(wick_session *s, const char *name, float scale) {
    if (!s) return err_set(WICK_ERR_INVALID_ARG, "wick_session_set_adapter: session is NULL");
    if (!name) {
        wick_adapter *old = s->adapter;
        s->adapter = NULL;
        s->adapter_scale = 0;
        lora_adapter_release(old);
        return WICK_OK;
    }
    if (!(scale == scale) || scale > 1e30f || scale < -1e30f)
        return err_set(WICK_ERR_INVALID_ARG, "wick_session_set_adapter: scale %g is not finite",
                       (double)scale);
    wick_adapter *a = lora_registry_get(s->model, name);
    if (!a) return err_set(WICK_ERR_NOT_FOUND, "no adapter named '%s' is loaded", name);
    /* the LoRA scratch grows here, never in the per-token path */
    wick_status st = fwd_reserve_rank(engine_fwd(s->e), a->r_max);
    if (st) {
        lora_adapter_release(a);
        return st;
    }
    wick_adapter *old = s->adapter;
    s->adapter = a;
    s->adapter_scale = scale;
    lora_adapter_release(old);
    return WICK_OK;
}

const char *wick_session_adapter(const wick_session *s) {
    return s && s->adapter ? s->adapter->name : NULL;
}
