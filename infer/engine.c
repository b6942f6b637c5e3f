/* engine.c — many generations advanced together (wick.h "Engine"): submission from any
 * thread, the scheduler (admission, chunked prefill beside decode, preemption), batch
 * building with adapter runs, one forward pass per step, and per-generation sampling and
 * callbacks. Also the direct single-sequence evaluation the session uses (engine_eval).
 *
 * A generation's ids live in `all` (prompt, then every sampled id). Its KV sequence holds a
 * prefix of them; each step feeds it the next ids: one when it is decoding, a chunk while
 * its prompt is read (or re-read after preemption), logits only for the row that reaches the
 * end of `all`. So prefill, decode and recompute are one mechanism.
 *
 * Locking: `mu` guards the incoming queue, the list of live generations (for cancel, pause and
 * resume by id), the wake flag and the published stats. Everything else belongs to the driver
 * thread. Callbacks run without the lock.
 *
 * Not here: the math (model/forward.c), the sampler and text (generate.c), the KV pool (kv/). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/error.h"
#include "base/pool.h"
#include "infer/engine_internal.h"
#include "infer/generate.h"

typedef struct eng_gen {
    uint64_t id;
    wick_gen *g;
    wick_adapter *ad;            /* one reference held, or NULL */
    float mult;
    wick_on_token cb;
    void *user;
    kv_seq seq;
    int32_t *all;                /* (n_ctx) prompt then sampled ids */
    int n_all, n_prompt;
    atomic_int paused;
    bool admitted, prefix_done, counted_cached;
    uint64_t first_hash;         /* first whole block of the prompt (prefix-cache key) */
    double t_first_sched, t_first_tok, t_last;
    struct eng_gen *next;        /* waiting queue / incoming queue */
    struct eng_gen *live_next;   /* every live generation (lock) */
} eng_gen;

/* One generation's share of the step being built. */
typedef struct step_item {
    eng_gen *eg;
    int n;                       /* rows fed this step */
    int logit_row;               /* row of e->logits, or -1 */
} step_item;

struct wick_engine {
    const wick_model *m;
    wick_engine_params p;
    bool session;
    wk_pool *pool;
    wk_ctx ctx;
    fwd_state fwd;
    kv_pool *kv;
    int n_vocab;
    sampler_scratch *scratch;          /* sampling scratch shared by every generation */

    /* step buffers: written on the host; on a device table copied to the d_ twins before
       the forward pass (on a host table the twins are the same buffers) */
    bool host;                         /* the model's table is a host table */
    int32_t *ids, *pos, *out_rows;     /* (n_batch) each */
    int32_t *d_ids, *d_pos, *d_out_rows;
    wk_span *spans;                    /* (max_seqs) */
    lora_run *runs;                    /* (max_seqs) */
    step_item *items;                  /* (max_seqs) */
    float *logits;                     /* (max_seqs, n_vocab) host (engines, not sessions) */
    float *d_logits;                   /* (d_logit_rows, n_vocab) where the forward writes */
    int d_logit_rows;

    /* driver-owned scheduling state */
    eng_gen *wait_head, *wait_tail;
    eng_gen **running;                 /* (max_seqs) in admission order */
    int n_running;

    /* shared under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    eng_gen *in_head, *in_tail;
    int n_in, n_waiting_pub;
    eng_gen *live;
    bool kick;
    uint64_t next_id;
    wick_engine_stats stats;
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

wick_engine_params wick_engine_params_default(void) {
    wick_engine_params p = {0};
    p.max_seqs = 16;
    p.n_batch = 128;
    p.kv_block = 16;
    p.prefix_cache = true;
    return p;
}

uint64_t engine_salt(const wick_adapter *ad, float mult) {
    if (!ad) return 0;
    uint32_t bits;
    memcpy(&bits, &mult, sizeof bits);
    return ad->uid * 0x9e3779b97f4a7c15ULL ^ ((uint64_t)bits << 1 | 1);
}

kv_pool *engine_kv(wick_engine *e) { return e->kv; }
fwd_state *engine_fwd(wick_engine *e) { return &e->fwd; }
int engine_n_ctx(const wick_engine *e) { return e->p.n_ctx; }
int engine_n_batch(const wick_engine *e) { return e->p.n_batch; }

static dtype kv_dtype(wick_kv_type t, bool session) {
    switch (t) {
    case WICK_KV_F32: return DT_F32;
    case WICK_KV_F16: return DT_F16;
    case WICK_KV_BF16: return DT_BF16;
    case WICK_KV_Q8_0: return DT_Q8_0;
    default: return session ? DT_F32 : DT_F16;
    }
}

static void free_gen(wick_engine *e, eng_gen *eg) {
    if (!eg) return;
    kv_seq_free(e->kv, &eg->seq);
    lora_adapter_release(eg->ad);
    wick_gen_free(eg->g);
    free(eg->all);
    free(eg);
}

void wick_engine_free(wick_engine *e) {
    if (!e) return;
    for (eng_gen *eg = e->live, *nx; eg; eg = nx) {
        nx = eg->live_next;
        free_gen(e, eg);
    }
    kv_pool_free(e->kv);
    fwd_free(&e->fwd);
    sampler_scratch_free(e->scratch);
    const kernel_table *K = e->m->kern;
    const size_t ib = sizeof(int32_t) * (size_t)e->p.n_batch;
    const kernel_table *H = e->host ? K : kernels_ref(); /* who allocated the host side */
    if (e->ids) H->buf_free(&e->ctx, e->ids, ib);
    if (e->pos) H->buf_free(&e->ctx, e->pos, ib);
    if (e->out_rows) H->buf_free(&e->ctx, e->out_rows, ib);
    if (e->logits)
        H->buf_free(&e->ctx, e->logits, sizeof(float) * (size_t)e->p.max_seqs * e->n_vocab);
    if (!e->host) { /* the host buffers above came from kernels_host_alloc */
        if (e->d_ids) K->buf_free(&e->ctx, e->d_ids, ib);
        if (e->d_pos) K->buf_free(&e->ctx, e->d_pos, ib);
        if (e->d_out_rows) K->buf_free(&e->ctx, e->d_out_rows, ib);
        if (e->d_logits)
            K->buf_free(&e->ctx, e->d_logits, sizeof(float) * (size_t)e->d_logit_rows * e->n_vocab);
    }
    free(e->spans);
    free(e->runs);
    free(e->items);
    free(e->running);
    pool_free(e->pool);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

wick_status engine_create(const wick_model *m, const wick_engine_params *params, bool session,
                          wick_engine **out) {
    *out = NULL;
    wick_engine_params p = params ? *params : wick_engine_params_default();
    const model_config *c = &m->cfg;
    if (p.n_threads < 0 || p.max_seqs < 0 || p.n_ctx < 0 || p.n_batch < 0 || p.kv_tokens < 0 ||
        p.kv_block < 0 || p.max_waiting < 0 || p.kv_type < WICK_KV_DEFAULT ||
        p.kv_type > WICK_KV_Q8_0)
        return err_set(WICK_ERR_INVALID_ARG, "engine parameters: counts must be >= 0 and "
                                             "kv_type one of the wick_kv_type values");
    if (c->head_dim > 1024)
        return err_set(WICK_ERR_UNSUPPORTED, "head_dim %d > 1024 is not supported", c->head_dim);
    if (m->headless)
        return err_set(WICK_ERR_UNSUPPORTED, "%s: the checkpoint has no lm_head.weight (a base "
                       "model for embeddings): it cannot generate", m->path);
    if (p.n_ctx == 0) p.n_ctx = c->n_ctx_train < 4096 ? c->n_ctx_train : 4096;
    if (p.max_seqs == 0) p.max_seqs = session ? 1 : 16;
    if (p.n_batch == 0) p.n_batch = session ? 512 : 128;
    if (session && p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;
    if (p.n_batch < p.max_seqs) p.n_batch = p.max_seqs;
    if (p.kv_block == 0) p.kv_block = 16;
    if (p.n_threads == 0) p.n_threads = pool_cpu_count();
    if (p.n_ctx > (1 << 24) || p.max_seqs > 4096 || p.n_batch > (1 << 16))
        return err_set(WICK_ERR_INVALID_ARG, "engine parameters: n_ctx <= 2^24, max_seqs <= 4096 "
                                             "and n_batch <= 65536 (got %d, %d, %d)", p.n_ctx,
                       p.max_seqs, p.n_batch);
    const int64_t kv_tokens = p.kv_tokens ? p.kv_tokens : (int64_t)p.max_seqs * p.n_ctx;
    const int64_t n_blocks = (kv_tokens + p.kv_block - 1) / p.kv_block + (session ? 1 : 0);
    if (n_blocks > (1 << 28))
        return err_set(WICK_ERR_INVALID_ARG, "KV pool of %lld positions is too large",
                       (long long)kv_tokens);

    wick_engine *e = calloc(1, sizeof *e);
    if (!e) return err_set(WICK_ERR_NOMEM, "out of memory");
    e->m = m;
    e->p = p;
    e->session = session;
    e->n_vocab = c->n_vocab;
    e->next_id = 1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    wick_status st = WICK_OK;
    e->pool = pool_create(p.n_threads);
    if (!e->pool && p.n_threads > 1) {
        st = err_set(WICK_ERR_NOMEM, "cannot start %d worker threads", p.n_threads);
        goto fail;
    }
    e->ctx.pool = e->pool;
    e->ctx.flags = m->fast ? WK_CTX_FAST : 0;
    if ((st = fwd_init(&e->fwd, m, &e->ctx, p.n_batch, p.n_ctx))) goto fail;
    if (!session && (st = sampler_scratch_create(c->n_vocab, &e->scratch))) goto fail;
    if ((st = kv_pool_create(m->kern, &e->ctx, kv_dtype(p.kv_type, session), c->n_layer,
                             c->n_kv_head, c->head_dim, p.kv_block, (int)n_blocks,
                             !session && p.prefix_cache, &e->kv)))
        goto fail;
    const kernel_table *K = m->kern;
    e->host = kernels_is_host(K);
    const kernel_table *H = e->host ? K : kernels_ref(); /* host side of the step buffers */
    const size_t ib = sizeof(int32_t) * (size_t)p.n_batch;
    e->ids = H->buf_alloc(&e->ctx, ib);
    e->pos = H->buf_alloc(&e->ctx, ib);
    e->out_rows = H->buf_alloc(&e->ctx, ib);
    e->spans = calloc((size_t)p.max_seqs, sizeof *e->spans);
    e->runs = calloc((size_t)p.max_seqs, sizeof *e->runs);
    e->items = calloc((size_t)p.max_seqs, sizeof *e->items);
    e->running = calloc((size_t)p.max_seqs, sizeof *e->running);
    if (!session) e->logits = H->buf_alloc(&e->ctx, sizeof(float) * (size_t)p.max_seqs * e->n_vocab);
    if (e->host) {
        e->d_ids = e->ids, e->d_pos = e->pos, e->d_out_rows = e->out_rows;
        e->d_logits = e->logits;
        e->d_logit_rows = session ? 0 : p.max_seqs;
    } else {
        e->d_ids = K->buf_alloc(&e->ctx, ib);
        e->d_pos = K->buf_alloc(&e->ctx, ib);
        e->d_out_rows = K->buf_alloc(&e->ctx, ib);
        e->d_logit_rows = p.max_seqs; /* a session grows it for WICK_LOGITS_ALL */
        e->d_logits = K->buf_alloc(&e->ctx, sizeof(float) * (size_t)p.max_seqs * e->n_vocab);
    }
    if (!e->ids || !e->pos || !e->out_rows || !e->spans || !e->runs || !e->items ||
        !e->running || (!session && !e->logits) || !e->d_ids || !e->d_pos || !e->d_out_rows ||
        (!e->host && !e->d_logits)) {
        st = err_set(WICK_ERR_NOMEM, "out of %s memory for the engine's step buffers",
                     e->host ? "host" : K->name);
        goto fail;
    }
    int rank = lora_registry_max_rank(m);
    if (rank && (st = fwd_reserve_rank(&e->fwd, rank))) goto fail;
    kv_stats ks;
    kv_pool_stats(e->kv, &ks);
    e->stats.kv_blocks = ks.n_blocks;
    e->stats.kv_block_tokens = ks.block_size;
    e->stats.kv_bytes_per_block = ks.bytes_per_block;
    e->stats.activation_bytes = (int64_t)e->fwd.bytes;
    *out = e;
    return WICK_OK;
fail:
    wick_engine_free(e);
    return st;
}

wick_status wick_engine_create(const wick_model *m, const wick_engine_params *p,
                               wick_engine **out) {
    if (!out) return err_set(WICK_ERR_INVALID_ARG, "wick_engine_create: out is NULL");
    *out = NULL;
    if (!m) return err_set(WICK_ERR_INVALID_ARG, "wick_engine_create: model is NULL");
    return engine_create(m, p, false, out);
}

/* ---- the device side of a step ---- */

/* Copies the step's ids, positions and logit rows to the device (nothing on a host table). */
static void stage_in(wick_engine *e, int rows, int n_out) {
    if (e->host) return;
    const kernel_table *K = e->m->kern;
    K->buf_copy(&e->ctx, e->d_ids, e->ids, sizeof(int32_t) * (size_t)rows);
    K->buf_copy(&e->ctx, e->d_pos, e->pos, sizeof(int32_t) * (size_t)rows);
    if (n_out > 0) K->buf_copy(&e->ctx, e->d_out_rows, e->out_rows, sizeof(int32_t) * (size_t)n_out);
}

/* After the forward pass: on a device table the n_out logit rows come back into dst (host),
 * and any failure of the pass is reported (the ops return nothing themselves). */
static wick_status fetch(wick_engine *e, float *dst, int n_out) {
    const kernel_table *K = e->m->kern;
    if (!e->host && n_out > 0)
        K->buf_copy(&e->ctx, dst, e->d_logits, sizeof(float) * (size_t)n_out * e->n_vocab);
    return K->sync(&e->ctx);
}

/* Runs one forward pass of `rows` rows (after stage_in). With a nonzero `key` on a table that
 * records passes (kernels.h graph_begin: the CUDA table's graphs), the pass is recorded under
 * that key and later passes of the same key replay it, which takes away the launch cost of
 * the ~15 kernels a layer that a small decode step is made of; a pass the recording does not
 * fit runs again eagerly. Tests that trace activations read them back inside the pass, so
 * tracing turns recording off. */
static void run_pass(wick_engine *e, const fwd_batch *b, int rows, uint64_t key) {
    const kernel_table *K = e->m->kern;
    if (e->m->cfg.n_expert) key = 0; /* routing reads logits back every layer: not recordable */
    int mode = key && K->graph_begin && !e->fwd.trace ? K->graph_begin(&e->ctx, key)
                                                      : WK_GRAPH_OFF;
    for (;;) {
        stage_in(e, rows, b->n_out);
        model_forward(&e->fwd, e->kv, b);
        if (mode == WK_GRAPH_OFF) return;
        bool redo = false;
        K->graph_end(&e->ctx, &redo);
        if (!redo) return;
        mode = WK_GRAPH_OFF;
    }
}

/* Folds v into a pass key (never 0: 0 means "do not record"). Keys start with the engine's
 * address: the CUDA table keeps recordings per thread, and two sessions taking turns on one
 * thread under one key would each find the other's recording and capture anew every step. */
static uint64_t key_mix(uint64_t h, uint64_t v) {
    h = (h ^ v) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 31;
    return h ? h : 1;
}

/* Device logits for `rows` rows (a session asking for every row's logits); grown once. */
static wick_status reserve_logits(wick_engine *e, int rows) {
    if (e->host || rows <= e->d_logit_rows) return WICK_OK;
    const kernel_table *K = e->m->kern;
    float *p = K->buf_alloc(&e->ctx, sizeof(float) * (size_t)rows * e->n_vocab);
    if (!p)
        return err_set(WICK_ERR_NOMEM, "out of %s memory for the logits of %d rows", K->name, rows);
    K->buf_free(&e->ctx, e->d_logits, sizeof(float) * (size_t)e->d_logit_rows * e->n_vocab);
    e->d_logits = p;
    e->d_logit_rows = rows;
    return WICK_OK;
}

/* ---- direct evaluation (sessions) ---- */

wick_status engine_eval(wick_engine *e, kv_seq *seq, const int32_t *ids, int n,
                        const wick_adapter *ad, float mult, wick_logits_mode mode,
                        float *logits) {
    if ((int64_t)seq->n_tokens + n > seq->max_tokens)
        return err_set(WICK_ERR_CONTEXT_FULL,
                       "context full: %d tokens in the session + %d new > n_ctx %d",
                       seq->n_tokens, n, seq->max_tokens);
    wick_status st;
    if (ad && (st = fwd_reserve_rank(&e->fwd, ad->r_max))) return st;
    for (int done = 0; done < n;) {
        const int chunk = n - done < e->p.n_batch ? n - done : e->p.n_batch;
        const bool last = done + chunk == n;
        if ((st = kv_seq_reserve(e->kv, seq, chunk))) return st;
        for (int i = 0; i < chunk; i++) {
            e->ids[i] = ids[done + i];
            e->pos[i] = seq->n_tokens + i;
        }
        e->spans[0] = (wk_span){0, chunk, seq->n_tokens, seq->blocks};
        int n_runs = 0;
        if (ad) e->runs[n_runs++] = (lora_run){0, chunk, lora_adapter_kpairs(ad), mult};
        fwd_batch b = {.n = chunk, .ids = e->d_ids, .pos = e->d_pos, .spans = e->spans,
                       .n_spans = 1, .runs = e->runs, .n_runs = n_runs,
                       .out_rows = e->d_out_rows};
        float *dst = NULL; /* where this chunk's logits go (host) */
        if (mode == WICK_LOGITS_ALL) {
            for (int i = 0; i < chunk; i++) e->out_rows[i] = i;
            b.n_out = chunk;
            dst = logits + (size_t)done * e->n_vocab;
        } else if (mode == WICK_LOGITS_LAST && last) {
            e->out_rows[0] = chunk - 1;
            b.n_out = 1;
            dst = logits;
        }
        if (b.n_out) {
            if ((st = reserve_logits(e, b.n_out))) return st;
            b.logits = e->host ? dst : e->d_logits;
        }
        /* one-token steps (decode) are recorded; a prefill chunk is long enough to hide its
           launches */
        uint64_t key = 0;
        if (chunk == 1 && !e->host) /* the engine too: recordings are kept per thread */
            key = key_mix(key_mix(key_mix(key_mix(0x5e551011ull, (uint64_t)(uintptr_t)e),
                                          (uint64_t)b.n_out),
                                  (uint64_t)(uintptr_t)(ad ? lora_adapter_kpairs(ad) : NULL)),
                          (uint64_t)n_runs);
        run_pass(e, &b, chunk, key);
        if ((st = fetch(e, dst, b.n_out))) return st;
        kv_seq_commit(e->kv, seq, ids + done, chunk);
        done += chunk;
    }
    return WICK_OK;
}

/* ---- submission (any thread) ---- */

wick_status wick_engine_submit(wick_engine *e, const wick_request *r, uint64_t *id) {
    if (id) *id = 0;
    if (!e || !r) return err_set(WICK_ERR_INVALID_ARG, "wick_engine_submit: NULL argument");
    if (!r->on_token) return err_set(WICK_ERR_INVALID_ARG, "wick_engine_submit: on_token is NULL");
    if (e->session) return err_set(WICK_ERR_INVALID_ARG, "wick_engine_submit: a session's engine");
    if (!(r->adapter_scale == r->adapter_scale) || fabsf(r->adapter_scale) > 1e30f)
        return err_set(WICK_ERR_INVALID_ARG, "wick_engine_submit: adapter_scale is not finite");
    if (r->params && (r->params->spec_ngram || r->params->draft || r->params->spec_propose))
        return err_set(WICK_ERR_UNSUPPORTED, "wick_engine_submit: speculative decoding (spec_ngram, "
                       "draft) is for session generations (wick_gen_start) in this version");
    eng_gen *eg = calloc(1, sizeof *eg);
    if (!eg) return err_set(WICK_ERR_NOMEM, "out of memory");
    wick_status st = gen_create(e->m, r->prompt, r->n_prompt, e->p.n_ctx, r->params, e->scratch,
                                &eg->g);
    if (st) goto fail;
    if (r->adapter) {
        eg->ad = lora_registry_get(e->m, r->adapter);
        if (!eg->ad) {
            st = err_set(WICK_ERR_NOT_FOUND, "no adapter named '%s' is loaded", r->adapter);
            goto fail;
        }
        eg->mult = r->adapter_scale != 0.0f ? r->adapter_scale : 1.0f;
    }
    eg->all = malloc(sizeof *eg->all * (size_t)e->p.n_ctx);
    if (!eg->all || (st = kv_seq_init(&eg->seq, e->p.n_ctx, engine_salt(eg->ad, eg->mult)))) {
        if (!st) st = err_set(WICK_ERR_NOMEM, "out of memory");
        goto fail;
    }
    memcpy(eg->all, r->prompt, sizeof *eg->all * (size_t)r->n_prompt);
    eg->n_all = eg->n_prompt = r->n_prompt;
    eg->cb = r->on_token;
    eg->user = r->user;
    eg->first_hash = kv_first_block_hash(e->kv, eg->seq.salt, eg->all, eg->n_all);
    pthread_mutex_lock(&e->mu);
    if (e->p.max_waiting && e->n_in + e->n_waiting_pub >= e->p.max_waiting) {
        pthread_mutex_unlock(&e->mu);
        st = err_set(WICK_ERR_BUSY, "%d generations are already waiting (max_waiting)",
                     e->p.max_waiting);
        goto fail;
    }
    eg->id = e->next_id++;
    if (e->in_tail) e->in_tail->next = eg;
    else e->in_head = eg;
    e->in_tail = eg;
    e->n_in++;
    eg->live_next = e->live;
    e->live = eg;
    e->kick = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (id) *id = eg->id;
    return WICK_OK;
fail:
    free_gen(e, eg);
    return st;
}

static eng_gen *find_live(wick_engine *e, uint64_t id) {
    for (eng_gen *eg = e->live; eg; eg = eg->live_next)
        if (eg->id == id) return eg;
    return NULL;
}

static wick_status by_id(wick_engine *e, uint64_t id, int op) {
    if (!e) return err_set(WICK_ERR_INVALID_ARG, "engine is NULL");
    pthread_mutex_lock(&e->mu);
    eng_gen *eg = find_live(e, id);
    if (eg) {
        if (op == 0) wick_gen_cancel(eg->g);
        else atomic_store(&eg->paused, op == 1);
        e->kick = true;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return eg ? WICK_OK : err_set(WICK_ERR_NOT_FOUND, "no running generation %llu",
                                  (unsigned long long)id);
}

wick_status wick_engine_cancel(wick_engine *e, uint64_t id) { return by_id(e, id, 0); }
wick_status wick_engine_pause(wick_engine *e, uint64_t id) { return by_id(e, id, 1); }
wick_status wick_engine_resume(wick_engine *e, uint64_t id) { return by_id(e, id, 2); }

void wick_engine_wake(wick_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->kick = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

wick_status wick_engine_wait(wick_engine *e, int timeout_ms) {
    if (!e) return err_set(WICK_ERR_INVALID_ARG, "wick_engine_wait: engine is NULL");
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    if (timeout_ms >= 0) {
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&e->mu);
    int rc = 0;
    while (!e->kick && rc != ETIMEDOUT)
        rc = timeout_ms < 0 ? pthread_cond_wait(&e->cv, &e->mu)
                            : pthread_cond_timedwait(&e->cv, &e->mu, &dl);
    const bool woke = e->kick;
    e->kick = false;
    pthread_mutex_unlock(&e->mu);
    return woke ? WICK_OK : WICK_ERR_TIMEOUT;
}

wick_status wick_engine_get_stats(wick_engine *e, wick_engine_stats *out) {
    if (!e || !out) return err_set(WICK_ERR_INVALID_ARG, "wick_engine_get_stats: NULL argument");
    pthread_mutex_lock(&e->mu);
    *out = e->stats;
    out->waiting += e->n_in;
    pthread_mutex_unlock(&e->mu);
    return WICK_OK;
}

/* ---- the step (driver thread) ---- */

/* Ends a generation: off the live list, memory back. */
static void retire(wick_engine *e, eng_gen *eg) {
    pthread_mutex_lock(&e->mu);
    for (eng_gen **pp = &e->live; *pp; pp = &(*pp)->live_next)
        if (*pp == eg) {
            *pp = eg->live_next;
            break;
        }
    e->stats.finished++;
    pthread_mutex_unlock(&e->mu);
    free_gen(e, eg);
}

static void remove_running(wick_engine *e, int i) {
    memmove(e->running + i, e->running + i + 1, sizeof *e->running * (size_t)(e->n_running - i - 1));
    e->n_running--;
}

static void push_wait_front(wick_engine *e, eng_gen *eg) {
    eg->next = e->wait_head;
    e->wait_head = eg;
    if (!e->wait_tail) e->wait_tail = eg;
}

static eng_gen *pop_wait(wick_engine *e) {
    eng_gen *eg = e->wait_head;
    if (eg) {
        e->wait_head = eg->next;
        if (!e->wait_head) e->wait_tail = NULL;
        eg->next = NULL;
    }
    return eg;
}

/* Delivers a final token built by the caller, then retires the generation. */
static void finish(wick_engine *e, eng_gen *eg, wick_token *tok) {
    eg->cb(tok, eg->user);
    retire(e, eg);
}

static void fail_gen(wick_engine *e, eng_gen *eg, const char *why) {
    wick_token tok = {.id = -1, .text = "", .finish = WICK_FINISH_ERROR, .error = why};
    const int32_t *p;
    tok.prompt_tokens = gen_prompt(eg->g, &p);
    tok.generated_tokens = eg->n_all - eg->n_prompt;
    finish(e, eg, &tok);
}

/* Releases a running generation's KV (it will be recomputed from its ids) and puts it back at
 * the head of the waiting queue. */
static void preempt(wick_engine *e, int i) {
    eng_gen *eg = e->running[i];
    remove_running(e, i);
    kv_seq_truncate(e->kv, &eg->seq, 0);
    eg->prefix_done = false;
    push_wait_front(e, eg);
    e->stats.preemptions++;
}

/* Blocks the running generations still need to read what they have been given. */
static int pending_blocks(const wick_engine *e) {
    const int bs = kv_pool_block_size(e->kv);
    int need = 0;
    for (int i = 0; i < e->n_running; i++) {
        const eng_gen *eg = e->running[i];
        need += (eg->n_all + bs - 1) / bs - eg->seq.n_blocks;
    }
    return need;
}

/* Admits waiting generations, first come first served, while slots and KV blocks allow. */
static void admit(wick_engine *e) {
    const int bs = kv_pool_block_size(e->kv);
    while (e->wait_head && e->n_running < e->p.max_seqs) {
        eng_gen *eg = e->wait_head;
        /* a prompt that starts like one another generation is still reading waits until that
           one is read, then attaches its blocks: a shared prefix is computed and stored once */
        bool hold = false;
        for (int i = 0; i < e->n_running && eg->first_hash; i++) {
            const eng_gen *r = e->running[i];
            if (r->first_hash == eg->first_hash && r->seq.n_tokens < r->n_all - 1) hold = true;
        }
        if (hold) break;
        if (!eg->prefix_done) {
            const int got = kv_seq_attach_prefix(e->kv, &eg->seq, eg->all, eg->n_all);
            if (!eg->counted_cached) gen_set_cached(eg->g, got < eg->n_prompt ? got : eg->n_prompt);
            eg->counted_cached = true;
            e->stats.prefix_hit_tokens += got;
            eg->prefix_done = true;
        }
        const int need = (eg->n_all + bs - 1) / bs - eg->seq.n_blocks;
        const int avail = kv_pool_available(e->kv) - pending_blocks(e);
        if (need > avail && e->n_running > 0) {
            /* not now: let go of the attached blocks so they stay evictable */
            kv_seq_truncate(e->kv, &eg->seq, 0);
            eg->prefix_done = false;
            break;
        }
        if (eg->ad && fwd_reserve_rank(&e->fwd, eg->ad->r_max)) break; /* retried next step */
        pop_wait(e);
        eg->admitted = true;
        e->running[e->n_running++] = eg;
    }
}

/* Cancelled generations end with a "cancelled" token, wherever they are. */
static void reap_cancelled(wick_engine *e) {
    for (int i = 0; i < e->n_running;) {
        eng_gen *eg = e->running[i];
        if (!gen_is_cancelled(eg->g)) {
            i++;
            continue;
        }
        remove_running(e, i);
        wick_token tok;
        gen_cancelled(eg->g, &tok);
        finish(e, eg, &tok);
    }
    for (eng_gen **pp = &e->wait_head; *pp;) {
        eng_gen *eg = *pp;
        if (!gen_is_cancelled(eg->g)) {
            pp = &eg->next;
            continue;
        }
        *pp = eg->next;
        if (e->wait_tail == eg) {
            e->wait_tail = NULL;
            for (eng_gen *w = e->wait_head; w; w = w->next) e->wait_tail = w;
        }
        wick_token tok;
        gen_cancelled(eg->g, &tok);
        finish(e, eg, &tok);
    }
}

/* Key ordering items so that equal adapter settings sit together (adapter runs). */
static int item_cmp(const void *a, const void *b) {
    const eng_gen *x = ((const step_item *)a)->eg, *y = ((const step_item *)b)->eg;
    if (x->seq.salt != y->seq.salt) return x->seq.salt < y->seq.salt ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Chooses every running generation's rows for this step; 0 items when nothing can run. */
static int plan(wick_engine *e) {
    int n_items = 0, budget = e->p.n_batch;
    /* pass 1: decoding generations, one row each; a shortage of blocks preempts the most
       recently admitted one (possibly this one, unless it is alone) */
    for (int i = 0; i < e->n_running; i++) {
        eng_gen *eg = e->running[i];
        if (atomic_load(&eg->paused) || eg->n_all - eg->seq.n_tokens != 1) continue;
        wick_status st;
        while ((st = kv_seq_reserve(e->kv, &eg->seq, 1)) == WICK_ERR_NOMEM &&
               e->n_running - 1 > i)
            preempt(e, e->n_running - 1);
        if (st == WICK_ERR_NOMEM && i > 0) {
            preempt(e, i);
            i--;
            continue;
        }
        if (st) {
            remove_running(e, i--);
            fail_gen(e, eg, wick_last_error());
            continue;
        }
        e->items[n_items++] = (step_item){eg, 1, -1};
        budget--;
    }
    /* pass 2: prompts being read, in admission order, in chunks of what the budget leaves */
    for (int i = 0; i < e->n_running && budget > 0; i++) {
        eng_gen *eg = e->running[i];
        const int rows = eg->n_all - eg->seq.n_tokens;
        if (atomic_load(&eg->paused) || rows <= 1) continue;
        int chunk = rows < budget ? rows : budget;
        /* shrink to what the pool can hold now; the rest waits for blocks to come back */
        const int bs = kv_pool_block_size(e->kv);
        const int room = kv_pool_available(e->kv) * bs +
                         (eg->seq.n_tokens % bs ? bs - eg->seq.n_tokens % bs : 0);
        if (chunk > room) chunk = room;
        if (chunk <= 0 || kv_seq_reserve(e->kv, &eg->seq, chunk)) {
            if (n_items == 0 && e->n_running == 1) {
                remove_running(e, i--);
                fail_gen(e, eg, "the KV pool is too small for this sequence (raise kv_tokens)");
            }
            continue;
        }
        if (eg->t_first_sched == 0) eg->t_first_sched = now_ms();
        e->items[n_items++] = (step_item){eg, chunk, -1};
        budget -= chunk;
    }
    return n_items;
}

wick_status wick_engine_step(wick_engine *e, int *n_active) {
    if (n_active) *n_active = 0;
    if (!e) return err_set(WICK_ERR_INVALID_ARG, "wick_engine_step: engine is NULL");
    if (e->session) return err_set(WICK_ERR_INVALID_ARG, "wick_engine_step: a session's engine");
    const double t0 = now_ms();
    pthread_mutex_lock(&e->mu);
    if (e->in_head) { /* newcomers join the back of the waiting queue */
        if (e->wait_tail) e->wait_tail->next = e->in_head;
        else e->wait_head = e->in_head;
        e->wait_tail = e->in_tail;
        e->in_head = e->in_tail = NULL;
        e->n_in = 0;
    }
    e->kick = false;
    pthread_mutex_unlock(&e->mu);

    reap_cancelled(e);
    admit(e);
    int n_items = plan(e);

    /* lay out rows: items grouped by adapter setting; runs over equal adapters */
    qsort(e->items, (size_t)n_items, sizeof *e->items, item_cmp);
    int rows = 0, n_out = 0, n_runs = 0, dec = 0;
    for (int k = 0; k < n_items; k++) {
        step_item *it = &e->items[k];
        eng_gen *eg = it->eg;
        const int p0 = eg->seq.n_tokens;
        for (int i = 0; i < it->n; i++) {
            e->ids[rows + i] = eg->all[p0 + i];
            e->pos[rows + i] = p0 + i;
        }
        e->spans[k] = (wk_span){rows, it->n, p0, eg->seq.blocks};
        if (p0 + it->n == eg->n_all) {
            it->logit_row = n_out;
            e->out_rows[n_out++] = rows + it->n - 1;
        }
        if (eg->ad) {
            lora_run *last = n_runs ? &e->runs[n_runs - 1] : NULL;
            const lora_pair *pairs = lora_adapter_kpairs(eg->ad);
            if (last && last->pairs == pairs && last->mult == eg->mult &&
                last->row0 + last->n == rows)
                last->n += it->n;
            else
                e->runs[n_runs++] = (lora_run){rows, it->n, pairs, eg->mult};
        }
        dec += it->n == 1;
        rows += it->n;
    }
    wick_status fst = WICK_OK;
    if (rows > 0) {
        fwd_batch b = {.n = rows, .ids = e->d_ids, .pos = e->d_pos, .spans = e->spans,
                       .n_spans = n_items, .runs = e->runs, .n_runs = n_runs,
                       .out_rows = e->d_out_rows, .n_out = n_out, .logits = e->d_logits};
        /* a step of decode rows only is recorded under its shape: the row count, the logit
           rows and the adapter runs (positions, tokens and block tables are uploaded data) */
        uint64_t key = 0;
        if (dec == rows && !e->host) {
            key = key_mix(key_mix(key_mix(0xdec0de5ull, (uint64_t)(uintptr_t)e), (uint64_t)rows),
                          (uint64_t)n_out);
            for (int i = 0; i < n_runs; i++) {
                key = key_mix(key, (uint64_t)e->runs[i].row0 << 32 | (uint32_t)e->runs[i].n);
                key = key_mix(key, (uint64_t)(uintptr_t)e->runs[i].pairs);
                uint32_t mb;
                memcpy(&mb, &e->runs[i].mult, sizeof mb);
                key = key_mix(key, mb);
            }
        }
        run_pass(e, &b, rows, key);
        fst = fetch(e, e->logits, n_out);
    }
    const double t1 = now_ms();
    if (fst) {
        /* the device failed this step: every generation in it ends with the error (their KV
           positions were not committed); the engine itself stays usable if the device does */
        char why[512];
        snprintf(why, sizeof why, "%s", wick_last_error());
        for (int k = 0; k < n_items; k++) {
            eng_gen *eg = e->items[k].eg;
            for (int i = 0; i < e->n_running; i++)
                if (e->running[i] == eg) {
                    remove_running(e, i);
                    break;
                }
            fail_gen(e, eg, why);
        }
        n_items = 0;
    }

    /* commit the new positions, then sample where logits came out */
    for (int k = 0; k < n_items; k++) {
        step_item *it = &e->items[k];
        kv_seq_commit(e->kv, &it->eg->seq, it->eg->all + it->eg->seq.n_tokens, it->n);
    }
    for (int k = 0; k < n_items; k++) {
        step_item *it = &e->items[k];
        eng_gen *eg = it->eg;
        if (it->logit_row < 0) continue;
        int idx = -1;
        for (int i = 0; i < e->n_running; i++)
            if (e->running[i] == eg) idx = i;
        wick_token tok;
        wick_status st;
        if (gen_is_cancelled(eg->g)) {
            gen_cancelled(eg->g, &tok);
            st = WICK_OK;
        } else {
            if (eg->t_first_tok == 0) {
                eg->t_first_tok = t1;
                gen_add_time(eg->g, t1 - (eg->t_first_sched ? eg->t_first_sched : t0), 0);
            } else {
                gen_add_time(eg->g, 0, t1 - eg->t_last);
            }
            eg->t_last = t1;
            st = gen_next(eg->g, e->logits + (size_t)it->logit_row * e->n_vocab,
                          eg->seq.n_tokens, e->p.n_ctx, &tok);
        }
        if (st) {
            if (idx >= 0) remove_running(e, idx);
            fail_gen(e, eg, wick_last_error());
            continue;
        }
        if (tok.finish == WICK_FINISH_NONE) eg->all[eg->n_all++] = tok.id;
        const bool keep = eg->cb(&tok, eg->user);
        if (!keep || tok.finish != WICK_FINISH_NONE) {
            if (idx >= 0) remove_running(e, idx);
            retire(e, eg);
        }
    }

    /* publish */
    int active = 0, paused = 0, waiting = 0;
    for (int i = 0; i < e->n_running; i++) {
        if (atomic_load(&e->running[i]->paused)) paused++;
        else active++;
    }
    for (eng_gen *w = e->wait_head; w; w = w->next) waiting++;
    kv_stats ks;
    kv_pool_stats(e->kv, &ks);
    pthread_mutex_lock(&e->mu);
    e->stats.running = e->n_running;
    e->stats.paused = paused;
    e->stats.waiting = waiting;
    e->n_waiting_pub = waiting;
    e->stats.kv_used = ks.used;
    e->stats.kv_cached = ks.cached;
    e->stats.steps++;
    e->stats.rows += rows;
    e->stats.decode_rows += dec;
    e->stats.prefill_rows += rows - dec;
    e->stats.last_step_ms = now_ms() - t0;
    const int incoming = e->n_in;
    pthread_mutex_unlock(&e->mu);
    /* with no row run and nothing new, only an outside event (submit, cancel, resume) can let
       anyone progress: report 0 so the driver waits instead of spinning */
    if (n_active) *n_active = rows > 0 || incoming > 0 ? active + waiting + incoming : 0;
    return WICK_OK;
}
