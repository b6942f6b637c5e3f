/* session.c — a sequence's state: KV cache, RoPE tables and activation buffers, all sized
 * once at creation so evaluation never allocates. Not here: the math (decoder.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "lora/lora.h"
#include "model/model.h"

wick_session_params wick_session_params_default(void) {
    wick_session_params p = {.n_ctx = 0, .n_batch = 512, .n_threads = 0};
    return p;
}

static float *alloc_floats(size_t n, bool *ok) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) *ok = false;
    return p;
}

wick_status wick_session_create(const wick_model *m, const wick_session_params *params,
                                wick_session **out) {
    if (!out) return err_set(WICK_ERR_INVALID_ARG, "wick_session_create: out is NULL");
    *out = NULL;
    if (!m) return err_set(WICK_ERR_INVALID_ARG, "wick_session_create: model is NULL");
    wick_session_params p = params ? *params : wick_session_params_default();
    const model_config *c = &m->cfg;
    if (p.n_ctx < 0 || p.n_batch < 0 || p.n_threads < 0)
        return err_set(WICK_ERR_INVALID_ARG,
                       "wick_session_create: n_ctx, n_batch and n_threads must be >= 0");
    if (p.n_ctx == 0) p.n_ctx = c->n_ctx_train < 4096 ? c->n_ctx_train : 4096;
    if (p.n_batch == 0) p.n_batch = 512;
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;
    if (p.n_threads == 0) p.n_threads = pool_cpu_count();

    wick_session *s = calloc(1, sizeof *s);
    if (!s) return err_set(WICK_ERR_NOMEM, "out of memory");
    s->model = m;
    s->n_ctx = p.n_ctx;
    s->n_batch = p.n_batch;
    const size_t B = (size_t)p.n_batch, d = (size_t)c->n_embd, hd = (size_t)c->head_dim;
    const size_t qd = (size_t)c->n_head * hd, kvd = (size_t)c->n_kv_head * hd;
    const size_t cache = (size_t)c->n_layer * kvd * (size_t)p.n_ctx;
    bool ok = true;
    s->pool = pool_create(p.n_threads);
    if (!s->pool) ok = false;
    s->k_cache = alloc_floats(cache, &ok);
    s->v_cache = alloc_floats(cache, &ok);
    s->rope_cos = alloc_floats((size_t)p.n_ctx * hd / 2, &ok);
    s->rope_sin = alloc_floats((size_t)p.n_ctx * hd / 2, &ok);
    s->x = alloc_floats(B * d, &ok);
    s->xn = alloc_floats(B * d, &ok);
    s->q = alloc_floats(B * qd, &ok);
    s->k = alloc_floats(B * kvd, &ok);
    s->v = alloc_floats(B * kvd, &ok);
    s->att = alloc_floats(B * qd, &ok);
    s->tmp = alloc_floats(B * d, &ok);
    s->gate = alloc_floats(B * (size_t)c->n_ff, &ok);
    s->up = alloc_floats(B * (size_t)c->n_ff, &ok);
    s->attn_scratch = alloc_floats((size_t)pool_size(s->pool) * (size_t)p.n_ctx, &ok);
    s->hist = calloc((size_t)p.n_ctx, sizeof(int32_t));
    if (!s->hist) ok = false;
    if (!ok) {
        wick_session_free(s);
        return err_set(WICK_ERR_NOMEM,
                       "out of memory creating a session with n_ctx=%d (KV cache %.1f MiB)",
                       p.n_ctx, 2.0 * (double)cache * 4 / (1 << 20));
    }
    /* cos/sin of pos * inv_freq with the angle rounded to f32 first, as transformers does. */
    const int half = c->head_dim / 2;
    for (int pos = 0; pos < p.n_ctx; pos++) {
        for (int i = 0; i < half; i++) {
            float ang = (float)pos * m->rope_inv_freq[i];
            s->rope_cos[(size_t)pos * half + i] = cosf(ang);
            s->rope_sin[(size_t)pos * half + i] = sinf(ang);
        }
    }
    *out = s;
    return WICK_OK;
}

void wick_session_free(wick_session *s) {
    if (!s) return;
    lora_session_clear(s);
    free(s->lora_t); free(s->lora_u);
    pool_free(s->pool);
    free(s->k_cache); free(s->v_cache);
    free(s->rope_cos); free(s->rope_sin);
    free(s->x); free(s->xn); free(s->q); free(s->k); free(s->v);
    free(s->att); free(s->tmp); free(s->gate); free(s->up);
    free(s->attn_scratch);
    free(s->hist);
    free(s);
}

void wick_session_reset(wick_session *s) {
    if (s) s->pos = 0;
}

int wick_session_pos(const wick_session *s) { return s ? s->pos : 0; }

int wick_session_n_ctx(const wick_session *s) { return s ? s->n_ctx : 0; }

wick_status wick_session_truncate(wick_session *s, int pos) {
    if (!s) return err_set(WICK_ERR_INVALID_ARG, "wick_session_truncate: session is NULL");
    if (pos < 0 || pos > s->pos)
        return err_set(WICK_ERR_INVALID_ARG,
                       "wick_session_truncate: pos %d outside [0, %d] (the current position)",
                       pos, s->pos);
    s->pos = pos;
    return WICK_OK;
}

int session_reusable_prefix(const wick_session *s, const int32_t *ids, int n) {
    uint64_t uid = s->adapter ? s->adapter->uid : 0;
    float scale = s->adapter ? s->adapter_scale : 0.0f;
    if (s->kv_mixed || uid != s->kv_adapter_uid || scale != s->kv_adapter_scale) return 0;
    int k = 0;
    while (k < n && k < s->pos && s->hist[k] == ids[k]) k++;
    return k;
}

void session_set_trace(wick_session *s, session_trace_fn fn, void *user) {
    s->trace = fn;
    s->trace_user = user;
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
    if ((int64_t)s->pos + n > s->n_ctx)
        return err_set(WICK_ERR_CONTEXT_FULL,
                       "context full: %d tokens in the session + %d new > n_ctx %d", s->pos, n,
                       s->n_ctx);
    for (int done = 0; done < n;) {
        int chunk = n - done < s->n_batch ? n - done : s->n_batch;
        bool last = done + chunk == n;
        float *out = NULL;
        if (mode == WICK_LOGITS_ALL) out = logits + (size_t)done * n_vocab;
        else if (mode == WICK_LOGITS_LAST && last) out = logits;
        decoder_forward(s, ids + done, chunk, out, mode == WICK_LOGITS_ALL);
        done += chunk;
    }
    return WICK_OK;
}
