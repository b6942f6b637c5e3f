/* generate.c — the pull generator: wick_gen_start / wick_gen_step / wick_gen_free, and the
 * synchronous callback loop wick_generate on top of it.
 *
 * One step = (feed the previous token through the model unless this is the first step, which
 * runs the prefill) -> sample -> streaming-detokenize -> stop checks -> emit. Sampling uses
 * infer/sampler.c; text comes from the tokenizer's streaming detokenizer; stop strings are
 * matched on the not-yet-emitted text, and any suffix that could still begin a stop string is
 * held back. Every buffer is sized at start (text buffers only grow if a single piece is
 * larger than anything seen before), so a step allocates nothing in the steady state.
 * Not here: threads (stream.c), chat templates, HTTP. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/error.h"
#include "infer/generate.h"
#include "infer/json_schema.h"
#include "infer/sampler.h"
#include "infer/session.h"
#include "model/model.h"

struct wick_gen {
    wick_session *s;                   /* the session of a pull generation; NULL in an engine */
    const wick_model *m;
    wick_gen_params p;
    sampler *smp;
    wick_detok *detok;                 /* NULL when the model has no tokenizer */
    int32_t tok_vocab;                 /* ids the tokenizer knows */
    int32_t *prompt;
    int n_prompt;
    int n_cached;                      /* leading prompt ids already in the session's cache */
    int32_t *stop_ids, *eos_ids;
    int n_stop_ids, n_eos_ids;
    char **stops;                      /* copies of the stop strings */
    size_t *stop_len;
    int n_stops;
    size_t max_stop_len;
    float *logits;                     /* (n_vocab) session generations only */
    char *pending;                     /* decoded text not yet emitted */
    size_t pending_len, pending_cap;
    char *out;                         /* text of the token being returned */
    size_t out_cap;
    wick_top_logprob top[GEN_MAX_TOP];
    int32_t last_id;
    int generated;
    bool started, need_feed, done;
    js_schema *schema;                 /* json_schema: the compiled schema and its matcher */
    js_matcher *jsm;
    atomic_int cancel;
    double prefill_ms, decode_ms;
    /* speculative decoding (session generations with spec_ngram or draft) */
    int spec_k;                        /* proposals per step; 0 = off */
    int32_t *hist;                     /* prompt + output ids, n_hist of hist_cap */
    int n_hist, hist_cap;
    float *spec_logits;                /* (spec_k + 1) rows of n_vocab: one verification */
    float *draft_logits;               /* (draft's n_vocab) */
    int32_t spec_ids[SPEC_MAX_K + 1];  /* the verified batch: last id, then the proposals */
    int spec_n;                        /* proposals in the batch being consumed; -1 = none */
    int spec_row;                      /* next row of spec_logits to sample */
    int spec_pos;                      /* session position of spec_ids[0] */
    int n_drafted, n_accepted;
};

wick_gen_params wick_gen_params_default(void) {
    wick_gen_params p;
    memset(&p, 0, sizeof p);
    p.max_tokens = 256;
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.typical_p = 1.0f;
    p.repetition_penalty = 1.0f;
    p.stop_on_eos = true;
    p.skip_special = true;
    p.reuse_prefix = true;
    return p;
}

const char *wick_finish_reason_str(wick_finish_reason r) {
    switch (r) {
    case WICK_FINISH_EOS: return "eos";
    case WICK_FINISH_STOP_TOKEN: return "stop_token";
    case WICK_FINISH_STOP_STRING: return "stop_string";
    case WICK_FINISH_LENGTH: return "length";
    case WICK_FINISH_CANCELLED: return "cancelled";
    case WICK_FINISH_ERROR: return "error";
    case WICK_FINISH_GRAMMAR: return "grammar";
    default: return "";
    }
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static bool grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    char *nb = realloc(*buf, c);
    if (!nb) return false;
    *buf = nb;
    *cap = c;
    return true;
}

static bool in_list(const int32_t *ids, int n, int32_t id) {
    for (int i = 0; i < n; i++)
        if (ids[i] == id) return true;
    return false;
}

static int32_t *dup_ids(const int32_t *ids, int n) {
    int32_t *d = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    if (d && n > 0) memcpy(d, ids, sizeof(int32_t) * (size_t)n);
    return d;
}

void wick_gen_free(wick_gen *g) {
    if (!g) return;
    sampler_free(g->smp);
    if (g->detok) wick_detok_free(g->detok);
    for (int i = 0; i < g->n_stops; i++) free(g->stops[i]);
    free(g->stops);
    free(g->stop_len);
    free(g->prompt);
    free(g->stop_ids);
    free(g->eos_ids);
    free(g->logits);
    free(g->pending);
    free(g->out);
    free(g->hist);
    free(g->spec_logits);
    free(g->draft_logits);
    js_matcher_free(g->jsm);
    js_schema_free(g->schema);
    free(g);
}

static wick_status check_params(const wick_gen_params *p, const model_config *c) {
    if (p->max_tokens < 0) return err_set(WICK_ERR_INVALID_ARG, "max_tokens must be >= 0");
    if (p->min_tokens < 0) return err_set(WICK_ERR_INVALID_ARG, "min_tokens must be >= 0");
    if (p->n_logprobs < 0 || p->n_logprobs > GEN_MAX_TOP)
        return err_set(WICK_ERR_INVALID_ARG, "n_logprobs must be in [0, %d], got %d", GEN_MAX_TOP,
                       p->n_logprobs);
    if (p->n_stop_ids < 0 || (p->n_stop_ids && !p->stop_ids) || p->n_eos_ids < 0 ||
        (p->n_eos_ids && !p->eos_ids) || p->n_stop_strings < 0 ||
        (p->n_stop_strings && !p->stop_strings) || p->n_logit_bias < 0 ||
        (p->n_logit_bias && !p->logit_bias))
        return err_set(WICK_ERR_INVALID_ARG, "a list parameter has a negative count or NULL items");
    for (int i = 0; i < p->n_stop_ids; i++)
        if (p->stop_ids[i] < 0 || p->stop_ids[i] >= c->n_vocab)
            return err_set(WICK_ERR_INVALID_ARG, "stop_ids[%d] = %d is outside [0, %d)", i,
                           p->stop_ids[i], c->n_vocab);
    for (int i = 0; i < p->n_eos_ids; i++)
        if (p->eos_ids[i] < 0 || p->eos_ids[i] >= c->n_vocab)
            return err_set(WICK_ERR_INVALID_ARG, "eos_ids[%d] = %d is outside [0, %d)", i,
                           p->eos_ids[i], c->n_vocab);
    for (int i = 0; i < p->n_stop_strings; i++)
        if (!p->stop_strings[i] || !p->stop_strings[i][0])
            return err_set(WICK_ERR_INVALID_ARG, "stop_strings[%d] is NULL or empty", i);
    if (p->spec_ngram < 0 || p->spec_ngram > SPEC_MAX_NGRAM)
        return err_set(WICK_ERR_INVALID_ARG, "spec_ngram must be in [0, %d], got %d", SPEC_MAX_NGRAM,
                       p->spec_ngram);
    if (p->spec_k < 0 || p->spec_k > SPEC_MAX_K)
        return err_set(WICK_ERR_INVALID_ARG, "spec_k must be in [0, %d], got %d", SPEC_MAX_K, p->spec_k);
    return WICK_OK;
}

wick_status gen_create(const wick_model *m, const int32_t *prompt, int n, int n_ctx,
                       const wick_gen_params *params, sampler_scratch *shared, wick_gen **out) {
    *out = NULL;
    if (n < 1 || !prompt)
        return err_set(WICK_ERR_INVALID_ARG, "the prompt is empty (need >= 1 id)");
    const model_config *c = &m->cfg;
    wick_gen_params p = params ? *params : wick_gen_params_default();
    wick_status st = check_params(&p, c);
    if (st) return st;
    if (n > n_ctx)
        return err_set(WICK_ERR_CONTEXT_FULL, "the prompt has %d tokens but the context holds %d",
                       n, n_ctx);
    for (int i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= c->n_vocab)
            return err_set(WICK_ERR_INVALID_ARG, "prompt id %d at index %d is outside [0, %d)",
                           prompt[i], i, c->n_vocab);
    if (p.n_stop_strings && !m->tok)
        return err_set(WICK_ERR_INVALID_ARG, "stop strings need a tokenizer, and this model has none");

    wick_gen *g = calloc(1, sizeof *g);
    if (!g) return err_set(WICK_ERR_NOMEM, "out of memory");
    g->m = m;
    g->p = p;
    g->n_prompt = n;
    sampler_params sp = sampler_params_default();
    sp.temperature = p.temperature;
    sp.top_k = p.top_k;
    sp.top_p = p.top_p;
    sp.min_p = p.min_p;
    sp.typical_p = p.typical_p;
    sp.repetition_penalty = p.repetition_penalty;
    sp.repetition_last_n = p.repetition_last_n;
    sp.frequency_penalty = p.frequency_penalty;
    sp.presence_penalty = p.presence_penalty;
    sp.logit_bias = (const sampler_logit_bias *)p.logit_bias; /* same layout: {int32, float} */
    sp.n_logit_bias = p.n_logit_bias;
    sp.seed = p.seed;
    sp.n_logprobs = p.n_logprobs;
    if ((st = sampler_create_ext(&sp, c->n_vocab, shared, &g->smp))) goto fail;
    if ((st = sampler_accept_prompt(g->smp, prompt, n))) goto fail;

    g->prompt = dup_ids(prompt, n);
    g->stop_ids = dup_ids(p.stop_ids, p.n_stop_ids);
    g->n_stop_ids = p.n_stop_ids;
    if (p.n_eos_ids > 0) {
        g->eos_ids = dup_ids(p.eos_ids, p.n_eos_ids);
        g->n_eos_ids = p.n_eos_ids;
    } else {
        g->eos_ids = dup_ids(c->eos_ids, c->n_eos);
        g->n_eos_ids = c->n_eos;
    }
    g->n_stops = p.n_stop_strings;
    g->stops = calloc((size_t)(g->n_stops ? g->n_stops : 1), sizeof(char *));
    g->stop_len = calloc((size_t)(g->n_stops ? g->n_stops : 1), sizeof(size_t));
    if (!g->prompt || !g->stop_ids || !g->eos_ids || !g->stops || !g->stop_len) {
        st = err_set(WICK_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < g->n_stops; i++) {
        g->stops[i] = strdup(p.stop_strings[i]);
        if (!g->stops[i]) {
            st = err_set(WICK_ERR_NOMEM, "out of memory");
            goto fail;
        }
        g->stop_len[i] = strlen(g->stops[i]);
        if (g->stop_len[i] > g->max_stop_len) g->max_stop_len = g->stop_len[i];
    }
    if (p.json_schema) { /* structured output: compiled here, the text is not kept */
        if (!m->tok) {
            st = err_set(WICK_ERR_INVALID_ARG, "json_schema needs a tokenizer, and this model has none");
            goto fail;
        }
        if ((st = js_compile(p.json_schema, &g->schema)) ||
            (st = js_matcher_create(g->schema, m->tok, c->n_vocab, &g->jsm)))
            goto fail;
    }
    g->p.stop_ids = NULL;
    g->p.eos_ids = NULL;
    g->p.stop_strings = NULL;
    g->p.logit_bias = NULL;
    g->p.json_schema = NULL;
    if (m->tok && (st = wick_detok_create(m->tok, p.skip_special, &g->detok))) goto fail;
    if (m->tok) g->tok_vocab = wick_tokenizer_vocab_size(m->tok);
    if (!grow(&g->pending, &g->pending_cap, 1024 + 4 * g->max_stop_len) ||
        !grow(&g->out, &g->out_cap, 1024 + 4 * g->max_stop_len)) {
        st = err_set(WICK_ERR_NOMEM, "out of memory");
        goto fail;
    }
    *out = g;
    return WICK_OK;
fail:
    wick_gen_free(g);
    return st;
}

/* ---- speculative decoding (see wick_gen_params.spec_ngram) ---- */

static wick_status spec_init(wick_gen *g, wick_session *s) {
    const int V = g->m->cfg.n_vocab;
    wick_session *d = g->p.draft;
    if (d == s)
        return err_set(WICK_ERR_INVALID_ARG, "draft: the draft session must not be the generation's "
                                             "own session");
    g->spec_k = g->p.spec_k > 0 ? g->p.spec_k : 4;
    g->hist_cap = wick_session_n_ctx(s) + 1;
    g->hist = malloc(sizeof(int32_t) * (size_t)g->hist_cap);
    g->spec_logits = malloc(sizeof(float) * (size_t)V * (size_t)(g->spec_k + 1));
    if (d) g->draft_logits = malloc(sizeof(float) * (size_t)wick_session_model(d)->cfg.n_vocab);
    if (!g->hist || !g->spec_logits || (d && !g->draft_logits))
        return err_set(WICK_ERR_NOMEM, "out of memory (speculative decoding buffers)");
    memcpy(g->hist, g->prompt, sizeof(int32_t) * (size_t)g->n_prompt);
    g->n_hist = g->n_prompt;
    return WICK_OK;
}

/* Prompt lookup: the ids after the latest earlier occurrence of the last len ids of hist,
 * len from spec_ngram down to 1; up to kmax of them into out. */
static int propose_ngram(const wick_gen *g, int32_t *out, int kmax) {
    const int32_t *h = g->hist;
    const int n = g->n_hist;
    for (int len = g->p.spec_ngram < n - 1 ? g->p.spec_ngram : n - 1; len >= 1; len--) {
        const int32_t *tail = h + n - len;
        for (int at = n - len - 1; at >= 0; at--) {
            if (h[at] != tail[0] || memcmp(h + at, tail, sizeof(int32_t) * (size_t)len) != 0) continue;
            int k = 0;
            for (int j = at + len; j < n && k < kmax; j++) out[k++] = h[j];
            return k;
        }
    }
    return 0;
}

static int argmax_f(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* The draft model's greedy continuation of hist: its session keeps the longest prefix it
 * already holds, reads the rest, then proposes one id per single-row pass. */
static wick_status propose_draft(wick_gen *g, int32_t *out, int kmax, int *k) {
    wick_session *d = g->p.draft;
    const int dv = wick_session_model(d)->cfg.n_vocab, n = g->n_hist;
    *k = 0;
    if (n + kmax > wick_session_n_ctx(d)) return WICK_OK; /* the draft's context is full */
    const int keep = session_reusable_prefix(d, g->hist, n - 1);
    wick_status st = wick_session_truncate(d, keep);
    if (!st) st = wick_session_eval(d, g->hist + keep, n - keep, WICK_LOGITS_LAST, g->draft_logits);
    for (int i = 0; !st && i < kmax; i++) {
        const int32_t id = argmax_f(g->draft_logits, dv);
        if (id >= g->m->cfg.n_vocab) break; /* not an id of the target */
        out[(*k)++] = id;
        if (i + 1 < kmax) st = wick_session_eval(d, &out[i], 1, WICK_LOGITS_LAST, g->draft_logits);
    }
    return st ? err_wrap(st, "draft model") : WICK_OK;
}

/* Samples row spec_row of the current verification; keeps going on a match, otherwise drops
 * the cache past the sampled position (the sampled id is fed by the next step). */
static wick_status spec_take(wick_gen *g, wick_token *tok) {
    wick_session *s = g->s;
    const int r = g->spec_row, V = g->m->cfg.n_vocab;
    const int held = g->spec_pos + r + 1; /* positions that stay valid if this row is the last */
    wick_status st = gen_next(g, g->spec_logits + (size_t)r * V, held, wick_session_n_ctx(s), tok);
    if (st) return st;
    const bool match = r < g->spec_n && tok->id == g->spec_ids[r + 1];
    if (match) g->n_accepted++;
    if (tok->finish == WICK_FINISH_NONE && match) {
        g->spec_row++; /* its key/value is in the cache already: nothing to feed */
        g->need_feed = false;
        return WICK_OK;
    }
    g->spec_n = -1;
    if (wick_session_pos(s) > held) wick_session_truncate(s, held);
    if (tok->finish != WICK_FINISH_NONE) tok->drafted_tokens = g->n_drafted, tok->accepted_tokens = g->n_accepted;
    else g->need_feed = true;
    return WICK_OK;
}

/* Feeds last_id with up to spec_k proposals in one pass; false in *used when there were none
 * (the caller feeds last_id alone). */
static wick_status spec_verify(wick_gen *g, bool *used) {
    wick_session *s = g->s;
    *used = false;
    const int pos = wick_session_pos(s);
    int kmax = wick_session_n_ctx(s) - pos - 1; /* room for last_id and the proposals */
    if (kmax > g->spec_k) kmax = g->spec_k;
    if (g->p.max_tokens > 0 && g->p.max_tokens - g->generated < kmax) kmax = g->p.max_tokens - g->generated;
    int k = 0;
    if (kmax > 0 && g->p.spec_ngram > 0) k = propose_ngram(g, g->spec_ids + 1, kmax);
    if (kmax > 0 && k == 0 && g->p.spec_propose) {
        k = g->p.spec_propose(g->p.spec_user, g->hist, g->n_hist, g->spec_ids + 1, kmax);
        if (k < 0 || k > kmax)
            return err_set(WICK_ERR_INVALID_ARG, "spec_propose returned %d proposals (room for "
                           "%d)", k, kmax);
        for (int i = 0; i < k; i++)
            if (g->spec_ids[1 + i] < 0 || g->spec_ids[1 + i] >= g->m->cfg.n_vocab)
                return err_set(WICK_ERR_INVALID_ARG, "spec_propose: proposal %d is id %d, outside "
                               "[0, %d)", i, g->spec_ids[1 + i], g->m->cfg.n_vocab);
    }
    if (kmax > 0 && k == 0 && g->p.draft) {
        wick_status st = propose_draft(g, g->spec_ids + 1, kmax, &k);
        if (st) return st;
    }
    if (k == 0) return WICK_OK;
    g->spec_ids[0] = g->last_id;
    wick_status st = wick_session_eval(s, g->spec_ids, k + 1, WICK_LOGITS_ALL, g->spec_logits);
    if (st) return st;
    g->spec_n = k;
    g->spec_row = 0;
    g->spec_pos = pos;
    g->n_drafted += k;
    *used = true;
    return WICK_OK;
}

wick_status wick_gen_start(wick_session *s, const int32_t *prompt, int n,
                           const wick_gen_params *params, wick_gen **out) {
    if (!out) return err_set(WICK_ERR_INVALID_ARG, "wick_gen_start: out is NULL");
    *out = NULL;
    if (!s) return err_set(WICK_ERR_INVALID_ARG, "wick_gen_start: session is NULL");
    wick_gen *g;
    wick_status st = gen_create(wick_session_model(s), prompt, n, wick_session_n_ctx(s), params,
                                NULL, &g);
    if (st) return st;
    g->s = s;
    /* the session's logits land here (an engine keeps its own) */
    g->logits = malloc(sizeof(float) * (size_t)wick_session_model(s)->cfg.n_vocab);
    if (!g->logits) {
        wick_gen_free(g);
        return err_set(WICK_ERR_NOMEM, "out of memory");
    }
    /* keep the cached prefix shared with this prompt; at least one prompt token must be
       evaluated to get the logits of the first new token */
    int keep = g->p.reuse_prefix ? session_reusable_prefix(s, prompt, n) : 0;
    if (keep > n - 1) keep = n - 1;
    wick_session_truncate(s, keep);
    g->n_cached = keep;
    g->spec_n = -1;
    if (g->p.spec_ngram > 0 || g->p.draft || g->p.spec_propose) {
        if ((st = spec_init(g, s))) {
            wick_gen_free(g);
            return st;
        }
    }
    *out = g;
    return WICK_OK;
}

void wick_gen_cancel(wick_gen *g) {
    if (g) atomic_store(&g->cancel, 1);
}

static bool append_pending(wick_gen *g, const char *t, size_t n) {
    if (!n) return true;
    if (!grow(&g->pending, &g->pending_cap, g->pending_len + n + 1)) return false;
    memcpy(g->pending + g->pending_len, t, n);
    g->pending_len += n;
    return true;
}

/* Moves the first n bytes of pending to the output buffer (NUL-terminated). */
static bool emit(wick_gen *g, size_t n, wick_token *tok) {
    if (!grow(&g->out, &g->out_cap, n + 1)) return false;
    memcpy(g->out, g->pending, n);
    g->out[n] = '\0';
    memmove(g->pending, g->pending + n, g->pending_len - n);
    g->pending_len -= n;
    tok->text = g->out;
    tok->text_len = n;
    return true;
}

/* Earliest occurrence of any stop string in pending; returns its offset or -1. */
static long find_stop(const wick_gen *g) {
    long best = -1;
    for (int i = 0; i < g->n_stops; i++) {
        const char *hit = memmem(g->pending, g->pending_len, g->stops[i], g->stop_len[i]);
        if (hit && (best < 0 || hit - g->pending < best)) best = hit - g->pending;
    }
    return best;
}

/* Length of the longest suffix of pending that is a proper prefix of some stop string: that
 * text could still turn into a stop string and is held back. */
static size_t holdback(const wick_gen *g) {
    size_t keep = 0;
    for (int i = 0; i < g->n_stops; i++) {
        size_t L = g->stop_len[i] - 1;
        if (L > g->pending_len) L = g->pending_len;
        for (size_t k = L; k > keep; k--) {
            if (memcmp(g->pending + g->pending_len - k, g->stops[i], k) == 0) {
                keep = k;
                break;
            }
        }
    }
    return keep;
}

static void fill_final(wick_gen *g, wick_token *tok, wick_finish_reason r) {
    tok->finish = r;
    tok->prompt_tokens = g->n_prompt;
    tok->cached_tokens = g->n_cached;
    tok->generated_tokens = g->generated;
    tok->prefill_ms = g->prefill_ms;
    tok->decode_ms = g->decode_ms;
    tok->drafted_tokens = g->n_drafted;
    tok->accepted_tokens = g->n_accepted;
    g->done = true;
}

/* Flushes the detokenizer into pending and emits everything. */
static wick_status flush_all(wick_gen *g, wick_token *tok) {
    if (g->detok) {
        const char *t;
        size_t n;
        wick_status st = wick_detok_flush(g->detok, &t, &n);
        if (st) return st;
        if (!append_pending(g, t, n)) return err_set(WICK_ERR_NOMEM, "out of memory");
    }
    if (!emit(g, g->pending_len, tok)) return err_set(WICK_ERR_NOMEM, "out of memory");
    return WICK_OK;
}

void gen_cancelled(wick_gen *g, wick_token *tok) {
    memset(tok, 0, sizeof *tok);
    tok->text = "";
    tok->id = -1;
    if (flush_all(g, tok)) { /* out of memory for the last text: end without it */
        tok->text = "";
        tok->text_len = 0;
    }
    fill_final(g, tok, WICK_FINISH_CANCELLED);
}

bool gen_is_cancelled(const wick_gen *g) { return atomic_load(&g->cancel) != 0; }

bool gen_is_done(const wick_gen *g) { return g->done; }

void gen_add_time(wick_gen *g, double prefill_ms, double decode_ms) {
    g->prefill_ms += prefill_ms;
    g->decode_ms += decode_ms;
}

int gen_prompt(const wick_gen *g, const int32_t **ids) {
    *ids = g->prompt;
    return g->n_prompt;
}

void gen_set_cached(wick_gen *g, int n) { g->n_cached = n; }

wick_status gen_next(wick_gen *g, float *logits, int n_held, int n_ctx, wick_token *tok) {
    memset(tok, 0, sizeof *tok);
    tok->text = "";
    wick_status st;
    /* min_tokens: EOS and stop ids cannot be chosen yet. Every id was checked against the
       vocabulary where it entered (config loaders, check_params); the range test here keeps
       an unchecked path added later from writing outside logits. */
    if (g->generated < g->p.min_tokens) {
        const int32_t nv = g->m->cfg.n_vocab;
        if (g->p.stop_on_eos)
            for (int i = 0; i < g->n_eos_ids; i++)
                if (g->eos_ids[i] >= 0 && g->eos_ids[i] < nv) logits[g->eos_ids[i]] = -INFINITY;
        for (int i = 0; i < g->n_stop_ids; i++)
            if (g->stop_ids[i] >= 0 && g->stop_ids[i] < nv) logits[g->stop_ids[i]] = -INFINITY;
    }
    /* structured output: only tokens that keep the text a valid prefix; EOS only where the
       value may end */
    if (g->jsm && !js_mask(g->jsm, logits, g->p.stop_on_eos ? g->eos_ids : NULL, g->p.stop_on_eos ? g->n_eos_ids : 0)) {
        if (js_can_end(g->jsm)) { /* a top-level number at its longest, EOS not wanted: done */
            tok->id = -1;
            if ((st = flush_all(g, tok))) return st;
            fill_final(g, tok, WICK_FINISH_GRAMMAR);
            return WICK_OK;
        }
        return err_set(WICK_ERR_UNSUPPORTED, "structured output: no token can continue the JSON here (the "
                                             "schema nests deeper than 72 levels, or the vocabulary cannot "
                                             "write what it needs)");
    }
    sampled_token sp;
    if ((st = sampler_sample(g->smp, logits, &sp))) return st;
    if ((st = sampler_accept(g->smp, sp.id))) return st;
    bool grammar_done = false;
    if (g->jsm && !(g->p.stop_on_eos && in_list(g->eos_ids, g->n_eos_ids, sp.id))) {
        if (!js_accept(g->jsm, sp.id))
            return err_set(WICK_ERR_INVALID_ARG, "structured output: token %d does not fit the schema "
                                                 "(a logit_bias or min_tokens forced it?)", sp.id);
        grammar_done = js_done(g->jsm);
    }
    g->generated++;
    g->last_id = sp.id;
    if (g->hist && g->n_hist < g->hist_cap) g->hist[g->n_hist++] = sp.id;
    tok->id = sp.id;
    tok->logit = sp.logit;
    tok->prob = sp.prob;
    tok->logprob = sp.logprob;
    tok->n_top = sp.n_top < GEN_MAX_TOP ? sp.n_top : GEN_MAX_TOP;
    for (int i = 0; i < tok->n_top; i++) {
        g->top[i].id = sp.top[i].id;
        g->top[i].logprob = sp.top[i].logprob;
    }
    tok->top = g->top;
    tok->is_eos = in_list(g->eos_ids, g->n_eos_ids, sp.id);

    /* Models often have more rows than the tokenizer has ids (Qwen2.5: 151936 vs 151665);
       such ids have no text, as in HF's decode, which skips ids it does not know. */
    if (g->detok && sp.id < g->tok_vocab) {
        const char *t;
        size_t n;
        if ((st = wick_detok_push(g->detok, sp.id, &t, &n))) return st;
        if (!append_pending(g, t, n)) return err_set(WICK_ERR_NOMEM, "out of memory");
    }

    wick_finish_reason fin = WICK_FINISH_NONE;
    if (g->p.stop_on_eos && tok->is_eos) fin = WICK_FINISH_EOS;
    else if (grammar_done) fin = WICK_FINISH_GRAMMAR;
    else if (in_list(g->stop_ids, g->n_stop_ids, sp.id)) fin = WICK_FINISH_STOP_TOKEN;
    if (fin == WICK_FINISH_NONE && g->n_stops && g->generated > g->p.min_tokens - 1) {
        long at = find_stop(g);
        if (at >= 0) {
            if (!emit(g, (size_t)at, tok)) return err_set(WICK_ERR_NOMEM, "out of memory");
            g->pending_len = 0;
            fill_final(g, tok, WICK_FINISH_STOP_STRING);
            return WICK_OK;
        }
    }
    /* the sampled token still has to be fed, so it needs one more position */
    if (fin == WICK_FINISH_NONE &&
        ((g->p.max_tokens > 0 && g->generated >= g->p.max_tokens) || n_held >= n_ctx))
        fin = WICK_FINISH_LENGTH;
    if (fin != WICK_FINISH_NONE) {
        if ((st = flush_all(g, tok))) return st;
        fill_final(g, tok, fin);
        return WICK_OK;
    }
    if (!emit(g, g->pending_len - holdback(g), tok))
        return err_set(WICK_ERR_NOMEM, "out of memory");
    return WICK_OK;
}

wick_status wick_gen_step(wick_gen *g, wick_token *tok) {
    if (!g || !tok) return err_set(WICK_ERR_INVALID_ARG, "wick_gen_step: NULL argument");
    if (g->done) return WICK_DONE;
    if (atomic_load(&g->cancel)) {
        gen_cancelled(g, tok);
        return WICK_OK;
    }
    wick_session *s = g->s;
    double t0 = now_ms();
    wick_status st;
    if (!g->started) {
        const int pos = wick_session_pos(s);
        st = wick_session_eval(s, g->prompt + pos, g->n_prompt - pos, WICK_LOGITS_LAST,
                               g->logits);
        if (st) return st;
        g->started = true;
        g->prefill_ms = now_ms() - t0;
        t0 = now_ms();
    } else if (g->spec_n >= 0) { /* rows of a verification are still to be sampled */
        st = spec_take(g, tok);
        g->decode_ms += now_ms() - t0;
        if (!st && tok->finish != WICK_FINISH_NONE) tok->decode_ms = g->decode_ms;
        return st;
    } else if (g->need_feed) {
        bool spec = false;
        if (g->spec_k > 0 && (st = spec_verify(g, &spec))) return st;
        if (spec) {
            st = spec_take(g, tok);
            g->decode_ms += now_ms() - t0;
            if (!st && tok->finish != WICK_FINISH_NONE) tok->decode_ms = g->decode_ms;
            return st;
        }
        if ((st = wick_session_eval(s, &g->last_id, 1, WICK_LOGITS_LAST, g->logits))) return st;
    }
    g->need_feed = false;
    st = gen_next(g, g->logits, wick_session_pos(s), wick_session_n_ctx(s), tok);
    g->decode_ms += now_ms() - t0;
    if (st) return st;
    if (tok->finish != WICK_FINISH_NONE) tok->decode_ms = g->decode_ms;
    else g->need_feed = true;
    return WICK_OK;
}

wick_status wick_generate(wick_session *s, const int32_t *prompt, int n,
                          const wick_gen_params *params, wick_on_token on_token, void *user) {
    if (!on_token) return err_set(WICK_ERR_INVALID_ARG, "wick_generate: on_token is NULL");
    wick_gen *g;
    wick_status st = wick_gen_start(s, prompt, n, params, &g);
    if (st) return st;
    wick_token tok;
    while ((st = wick_gen_step(g, &tok)) == WICK_OK) {
        if (!on_token(&tok, user)) break;
    }
    wick_gen_free(g);
    return st == WICK_DONE ? WICK_OK : st;
}
