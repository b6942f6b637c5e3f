/* test_engine.c — the batched engine against the single-sequence path.
 *
 * Exactness: every generation run through an engine (f32 KV) gives the same ids as the same
 * request run alone in a session, and the same raw logit and top log-probabilities within
 * 1e-5, for greedy and seeded sampling, with several adapters and the base model mixed in
 * one batch, generations joining and leaving mid-way, prompts sharing prefix-cache blocks,
 * a pool small enough to force preemption, and every kernel table. Also: cancel, pause and
 * resume, submission errors, KV element types, stats, and submissions and cancellations from
 * several threads while the driver steps (run under ThreadSanitizer in CI). */
#include <math.h>
#include <pthread.h>

#include "testutil.h"

#define MAX_TOK 48
#define N_TOP 5

typedef struct rec {
    int n;
    int32_t id[MAX_TOK];
    float logit[MAX_TOK];
    float top[MAX_TOK][N_TOP];
    int32_t top_id[MAX_TOK][N_TOP];
    wick_finish_reason finish;
    int cached;
    bool dropped_after; /* return false after this many tokens (0 = never) */
    int stop_after;
    pthread_mutex_t *mu;
} rec;

static bool on_tok(const wick_token *t, void *user) {
    rec *r = user;
    if (r->mu) pthread_mutex_lock(r->mu);
    if (r->n < MAX_TOK && t->id >= 0) {
        r->id[r->n] = t->id;
        r->logit[r->n] = t->logit;
        for (int k = 0; k < N_TOP && k < t->n_top; k++) {
            r->top[r->n][k] = t->top[k].logprob;
            r->top_id[r->n][k] = t->top[k].id;
        }
        r->n++;
    }
    if (t->finish != WICK_FINISH_NONE) {
        r->finish = t->finish;
        r->cached = t->cached_tokens;
    }
    const bool keep = !(r->stop_after && r->n >= r->stop_after);
    if (r->mu) pthread_mutex_unlock(r->mu);
    return keep;
}

typedef struct req {
    int32_t prompt[300];
    int n_prompt;
    wick_gen_params gp;
    const char *adapter;
    float scale;
} req;

static wick_model *load_with_adapters(const char *kernels) {
    TU_REQUIRE_FIXTURE(dir, "tiny-qwen2");
    TU_REQUIRE_FIXTURE(lora, "tiny-qwen2-lora");
    wick_model_params mp = wick_model_params_default();
    mp.kernels = kernels;
    wick_model *m = NULL;
    assert_int_equal(wick_model_load(dir, &mp, &m), WICK_OK);
    char a[4200], b[4200];
    snprintf(a, sizeof a, "%s/adapter_a", lora);
    snprintf(b, sizeof b, "%s/adapter_b", lora);
    assert_int_equal(wick_adapter_load(m, a, "a"), WICK_OK);
    assert_int_equal(wick_adapter_load(m, b, "b"), WICK_OK);
    free(dir);
    free(lora);
    return m;
}

/* The same request alone, through a session with f32 KV. */
static void run_alone(wick_model *m, const req *q, rec *out) {
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = 2;
    sp.n_ctx = 512;
    wick_session *s = NULL;
    assert_int_equal(wick_session_create(m, &sp, &s), WICK_OK);
    if (q->adapter) assert_int_equal(wick_session_set_adapter(s, q->adapter, q->scale), WICK_OK);
    memset(out, 0, sizeof *out);
    wick_status st = wick_generate(s, q->prompt, q->n_prompt, &q->gp, on_tok, out);
    if (st) fail_msg("wick_generate: %s", wick_last_error());
    wick_session_free(s);
}

static void compare(const char *what, int i, const rec *alone, const rec *eng) {
    if (alone->n != eng->n || alone->finish != eng->finish)
        fail_msg("%s request %d: %d tokens (finish %d) alone, %d (finish %d) in the engine", what,
                 i, alone->n, alone->finish, eng->n, eng->finish);
    for (int t = 0; t < alone->n; t++) {
        if (alone->id[t] != eng->id[t])
            fail_msg("%s request %d token %d: id %d alone, %d in the engine", what, i, t,
                     alone->id[t], eng->id[t]);
        if (fabsf(alone->logit[t] - eng->logit[t]) > 1e-5f)
            fail_msg("%s request %d token %d: logit %.9g alone, %.9g in the engine", what, i, t,
                     alone->logit[t], eng->logit[t]);
        for (int k = 0; k < N_TOP; k++)
            if (alone->top_id[t][k] != eng->top_id[t][k] ||
                fabsf(alone->top[t][k] - eng->top[t][k]) > 1e-5f)
                fail_msg("%s request %d token %d: top-%d logprob differs (%d %.9g vs %d %.9g)",
                         what, i, t, k, alone->top_id[t][k], alone->top[t][k],
                         eng->top_id[t][k], eng->top[t][k]);
    }
}

static uint64_t g_rng = 12345;
static int32_t rnd(int n) {
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (int32_t)((g_rng >> 33) % (uint64_t)n);
}

/* n requests: mixed adapters and scales, greedy and seeded sampling, varied prompt lengths;
 * every third one starts with the same 70 ids (prefix-cache blocks). */
static void make_requests(req *q, int n) {
    int32_t shared[70];
    for (int i = 0; i < 70; i++) shared[i] = rnd(1024);
    static const char *ads[] = {NULL, "a", "b", "a", NULL};
    static const float scales[] = {0, 1.0f, 1.0f, 0.5f, 0};
    for (int i = 0; i < n; i++) {
        req *r = &q[i];
        r->n_prompt = 1 + rnd(i % 4 == 0 ? 200 : 40);
        for (int k = 0; k < 300; k++) r->prompt[k] = rnd(1024);
        if (i % 3 == 0) {
            memcpy(r->prompt, shared, sizeof shared);
            r->n_prompt = 70 + 1 + rnd(30);
        }
        r->gp = wick_gen_params_default();
        r->gp.max_tokens = 8 + rnd(24);
        r->gp.n_logprobs = N_TOP;
        r->gp.stop_on_eos = false;
        if (i % 2) {
            r->gp.temperature = 0;
        } else {
            r->gp.temperature = 0.9f;
            r->gp.top_k = 0;
            r->gp.top_p = 1.0f;
            r->gp.min_p = 0;
            r->gp.seed = 1000 + (uint64_t)i;
        }
        r->adapter = ads[i % 5];
        r->scale = scales[i % 5];
    }
}

/* Runs q[0..n) through an engine: `late` of them are submitted only after a few steps. */
static void run_engine(wick_model *m, const wick_engine_params *ep, const req *q, int n, int late,
                       rec *out) {
    wick_engine *e = NULL;
    assert_int_equal(wick_engine_create(m, ep, &e), WICK_OK);
    memset(out, 0, sizeof *out * (size_t)n);
    for (int i = 0; i < n; i++) {
        if (i == n - late)
            for (int k = 0; k < 3; k++) assert_int_equal(wick_engine_step(e, NULL), WICK_OK);
        wick_request r = {.prompt = q[i].prompt, .n_prompt = q[i].n_prompt, .params = &q[i].gp,
                          .adapter = q[i].adapter, .adapter_scale = q[i].scale,
                          .on_token = on_tok, .user = &out[i]};
        assert_int_equal(wick_engine_submit(e, &r, NULL), WICK_OK);
    }
    int active = 1, steps = 0;
    while (active) {
        assert_int_equal(wick_engine_step(e, &active), WICK_OK);
        assert_true(++steps < 10000);
    }
    wick_engine_stats st;
    assert_int_equal(wick_engine_get_stats(e, &st), WICK_OK);
    assert_int_equal(st.running, 0);
    assert_int_equal(st.waiting, 0);
    assert_int_equal(st.finished, n);
    assert_int_equal(st.kv_used, 0);
    wick_engine_free(e);
}

static void exactness_case(const char *kernels) {
    wick_model *m = load_with_adapters(kernels);
    enum { N = 10 };
    req *q = calloc(N, sizeof *q);
    rec *alone = calloc(N, sizeof *alone), *eng = calloc(N, sizeof *eng);
    make_requests(q, N);
    for (int i = 0; i < N; i++) run_alone(m, &q[i], &alone[i]);

    wick_engine_params ep = wick_engine_params_default();
    ep.n_threads = 2;
    ep.kv_type = WICK_KV_F32;
    ep.n_ctx = 512;
    /* 4 at once, 3 joining late, small prefill chunks beside decode rows */
    ep.max_seqs = 4;
    ep.n_batch = 32;
    run_engine(m, &ep, q, N, 3, eng);
    for (int i = 0; i < N; i++) compare("max_seqs=4", i, &alone[i], &eng[i]);
    /* all at once, one big chunk */
    ep.max_seqs = 16;
    ep.n_batch = 512;
    run_engine(m, &ep, q, N, 0, eng);
    for (int i = 0; i < N; i++) compare("max_seqs=16", i, &alone[i], &eng[i]);
    /* a pool too small for everyone: preemption and recompute must not change anything */
    ep.max_seqs = 8;
    ep.n_batch = 64;
    ep.kv_tokens = 400;
    run_engine(m, &ep, q, N, 0, eng);
    for (int i = 0; i < N; i++) compare("kv_tokens=400", i, &alone[i], &eng[i]);
    /* no prefix cache */
    ep.kv_tokens = 0;
    ep.prefix_cache = false;
    run_engine(m, &ep, q, N, 2, eng);
    for (int i = 0; i < N; i++) compare("no prefix cache", i, &alone[i], &eng[i]);
    free(q), free(alone), free(eng);
    wick_model_free(m);
}

static void test_exact_cpu(void **state) { exactness_case("auto"); }
static void test_exact_ref(void **state) { exactness_case("ref"); }

/* The prefix cache: a second request with the same 70-id prefix attaches its whole blocks
 * (64 positions with blocks of 16) and gives the logits of an unshared run. */
static void test_prefix_cache(void **state) {
    wick_model *m = load_with_adapters("auto");
    req q[3];
    make_requests(q, 3);
    q[1] = q[0];
    q[1].prompt[q[1].n_prompt - 1] ^= 1; /* differs after the shared blocks */
    q[2] = q[0];
    q[2].adapter = "a"; /* same ids, other adapter: must not share */
    q[2].scale = 1.0f;
    rec alone[3], eng[3];
    for (int i = 0; i < 3; i++) run_alone(m, &q[i], &alone[i]);
    wick_engine_params ep = wick_engine_params_default();
    ep.n_threads = 2;
    ep.kv_type = WICK_KV_F32;
    ep.n_ctx = 512;
    wick_engine *e = NULL;
    assert_int_equal(wick_engine_create(m, &ep, &e), WICK_OK);
    for (int i = 0; i < 3; i++) {
        memset(&eng[i], 0, sizeof eng[i]);
        wick_request r = {.prompt = q[i].prompt, .n_prompt = q[i].n_prompt, .params = &q[i].gp,
                          .adapter = q[i].adapter, .adapter_scale = q[i].scale,
                          .on_token = on_tok, .user = &eng[i]};
        assert_int_equal(wick_engine_submit(e, &r, NULL), WICK_OK);
        int active = 1;
        while (active) assert_int_equal(wick_engine_step(e, &active), WICK_OK);
        compare("prefix cache", i, &alone[i], &eng[i]);
    }
    assert_int_equal(eng[0].cached, 0);
    assert_int_equal(eng[1].cached, 64);
    assert_int_equal(eng[2].cached, 0);
    wick_engine_stats st;
    wick_engine_get_stats(e, &st);
    assert_int_equal(st.prefix_hit_tokens, 64);
    assert_true(st.kv_cached > 0);
    wick_engine_free(e);
    wick_model_free(m);
}

/* Cancel, pause/resume, dropping from the callback, and submission errors. */
static void test_control(void **state) {
    wick_model *m = load_with_adapters("auto");
    wick_engine_params ep = wick_engine_params_default();
    ep.n_threads = 1;
    ep.max_seqs = 2;
    ep.max_waiting = 2;
    wick_engine *e = NULL;
    assert_int_equal(wick_engine_create(m, &ep, &e), WICK_OK);
    int32_t p[4] = {5, 6, 7, 8};
    wick_gen_params gp = wick_gen_params_default();
    gp.max_tokens = 40;
    gp.stop_on_eos = false;
    gp.temperature = 0;
    rec r[5];
    memset(r, 0, sizeof r);
    uint64_t id[5];
    for (int i = 0; i < 4; i++) {
        wick_request rq = {.prompt = p, .n_prompt = 4, .params = &gp, .on_token = on_tok,
                           .user = &r[i]};
        assert_int_equal(wick_engine_submit(e, &rq, &id[i]), WICK_OK);
        if (i == 1) assert_int_equal(wick_engine_step(e, NULL), WICK_OK); /* 0, 1 admitted */
    }
    /* two wait beyond the two that run: a fifth is refused while they wait */
    wick_request rq = {.prompt = p, .n_prompt = 4, .params = &gp, .on_token = on_tok, .user = &r[4]};
    assert_int_equal(wick_engine_submit(e, &rq, NULL), WICK_ERR_BUSY);
    r[1].stop_after = 3; /* dropped from its callback */
    assert_int_equal(wick_engine_pause(e, id[0]), WICK_OK);
    for (int k = 0; k < 5; k++) assert_int_equal(wick_engine_step(e, NULL), WICK_OK);
    const int paused_n = r[0].n;
    for (int k = 0; k < 5; k++) assert_int_equal(wick_engine_step(e, NULL), WICK_OK);
    assert_int_equal(r[0].n, paused_n); /* no tokens while paused */
    assert_int_equal(r[1].n, 3);
    assert_int_equal(r[1].finish, WICK_FINISH_NONE); /* dropped: no final token */
    assert_int_equal(wick_engine_cancel(e, id[1]), WICK_ERR_NOT_FOUND);
    assert_int_equal(wick_engine_cancel(e, id[2]), WICK_OK);
    assert_int_equal(wick_engine_resume(e, id[0]), WICK_OK);
    int active = 1;
    while (active) assert_int_equal(wick_engine_step(e, &active), WICK_OK);
    assert_int_equal(r[0].n, 40);
    assert_int_equal(r[0].finish, WICK_FINISH_LENGTH);
    assert_int_equal(r[2].finish, WICK_FINISH_CANCELLED);
    assert_int_equal(r[3].finish, WICK_FINISH_LENGTH);
    /* errors, nothing queued */
    int32_t bad[2] = {1, 5000};
    wick_request rb = {.prompt = bad, .n_prompt = 2, .on_token = on_tok, .user = &r[4]};
    assert_int_equal(wick_engine_submit(e, &rb, NULL), WICK_ERR_INVALID_ARG);
    rb.prompt = p;
    rb.adapter = "nope";
    assert_int_equal(wick_engine_submit(e, &rb, NULL), WICK_ERR_NOT_FOUND);
    rb.adapter = NULL;
    rb.on_token = NULL;
    assert_int_equal(wick_engine_submit(e, &rb, NULL), WICK_ERR_INVALID_ARG);
    assert_int_equal(wick_engine_wait(e, 10), WICK_ERR_TIMEOUT);
    wick_engine_wake(e);
    assert_int_equal(wick_engine_wait(e, -1), WICK_OK);
    wick_engine_free(e);
    wick_model_free(m);
}

/* A sequence that cannot fit the whole pool ends with finish "error", others go on. */
static void test_pool_too_small(void **state) {
    wick_model *m = load_with_adapters("auto");
    wick_engine_params ep = wick_engine_params_default();
    ep.n_threads = 1;
    ep.kv_tokens = 64;
    wick_engine *e = NULL;
    assert_int_equal(wick_engine_create(m, &ep, &e), WICK_OK);
    int32_t p[100];
    for (int i = 0; i < 100; i++) p[i] = i;
    wick_gen_params gp = wick_gen_params_default();
    gp.max_tokens = 4;
    rec r;
    memset(&r, 0, sizeof r);
    wick_request rq = {.prompt = p, .n_prompt = 100, .params = &gp, .on_token = on_tok, .user = &r};
    assert_int_equal(wick_engine_submit(e, &rq, NULL), WICK_OK);
    int active = 1;
    while (active) assert_int_equal(wick_engine_step(e, &active), WICK_OK);
    assert_int_equal(r.finish, WICK_FINISH_ERROR);
    wick_engine_free(e);
    wick_model_free(m);
}

/* Every KV type runs; the logits move from f32 by a small amount (the README's figures come
 * from bench, this only guards against garbage). q8_0 needs head_dim % 32: small-qwen2. */
static void test_kv_types(void **state) {
    TU_REQUIRE_FIXTURE(dir, "small-qwen2");
    wick_model *m = NULL;
    assert_int_equal(wick_model_load(dir, NULL, &m), WICK_OK);
    free(dir);
    static const wick_kv_type types[] = {WICK_KV_F32, WICK_KV_F16, WICK_KV_BF16, WICK_KV_Q8_0};
    int32_t p[200];
    for (int i = 0; i < 200; i++) p[i] = (i * 37 + 5) % 1000;
    wick_gen_params gp = wick_gen_params_default();
    gp.max_tokens = 16;
    gp.temperature = 0;
    gp.n_logprobs = N_TOP;
    gp.stop_on_eos = false;
    rec r[4];
    for (int t = 0; t < 4; t++) {
        wick_engine_params ep = wick_engine_params_default();
        ep.n_threads = 2;
        ep.kv_type = types[t];
        ep.n_ctx = 512;
        wick_engine *e = NULL;
        assert_int_equal(wick_engine_create(m, &ep, &e), WICK_OK);
        memset(&r[t], 0, sizeof r[t]);
        wick_request rq = {.prompt = p, .n_prompt = 200, .params = &gp, .on_token = on_tok,
                           .user = &r[t]};
        assert_int_equal(wick_engine_submit(e, &rq, NULL), WICK_OK);
        int active = 1;
        while (active) assert_int_equal(wick_engine_step(e, &active), WICK_OK);
        assert_int_equal(r[t].n, 16);
        float worst = 0;
        for (int k = 0; k < 16 && r[t].id[k] == r[0].id[k]; k++)
            worst = fmaxf(worst, fabsf(r[t].logit[k] - r[0].logit[k]));
        printf("kv type %d: first-token logit diff vs f32 %.3g, worst over agreeing tokens %.3g\n",
               (int)types[t], fabsf(r[t].logit[0] - r[0].logit[0]), worst);
        assert_true(fabsf(r[t].logit[0] - r[0].logit[0]) < 0.05f);
        wick_engine_free(e);
    }
    wick_model_free(m);
}

/* The logit error each KV element type costs, against transformers' golden logits of
 * small-qwen2 (300-token prompt, positions 0..299 read back through the cache): f32 must meet
 * the golden tolerance (1e-4); the lossy types are reported (README, "KV cache types") and
 * held to loose sanity bounds. */
static void test_kv_type_error(void **state) {
    TU_REQUIRE_FIXTURE(dir, "small-qwen2");
    char golden[4200];
    snprintf(golden, sizeof golden, "%s/golden.safetensors", dir);
    wick_model *m = NULL;
    wick_model_params mp = wick_model_params_default();
    mp.precision = "exact"; /* the KV types' own cost, on the exact products */
    assert_int_equal(wick_model_load(dir, &mp, &m), WICK_OK);
    int64_t T, np;
    int32_t *ids = tu_load_ids(golden, "p0_input_ids", &T);
    int32_t *pos = tu_load_ids(golden, "p0_positions", &np);
    float *want = tu_load_f32(golden, "p0_logits_at_positions", NULL, NULL, NULL);
    const int V = 2048;
    float *logits = malloc(sizeof(float) * (size_t)T * V), *f32 = malloc(sizeof(float) * (size_t)T * V);
    static const wick_kv_type types[] = {WICK_KV_F32, WICK_KV_F16, WICK_KV_BF16, WICK_KV_Q8_0};
    static const char *names[] = {"f32", "f16", "bf16", "q8_0"};
    static const double bound[] = {1e-4, 0.02, 0.05, 0.1};
    for (int t = 0; t < 4; t++) {
        wick_session_params sp = wick_session_params_default();
        sp.n_threads = 2;
        sp.kv_type = types[t];
        wick_session *s = NULL;
        assert_int_equal(wick_session_create(m, &sp, &s), WICK_OK);
        /* decode-like: the prompt in chunks of 37, so later rows read earlier rows' cache */
        for (int64_t i = 0; i < T; i += 37) {
            const int n = (int)(T - i < 37 ? T - i : 37);
            assert_int_equal(wick_session_eval(s, ids + i, n, WICK_LOGITS_ALL,
                                               logits + (size_t)i * V), WICK_OK);
        }
        if (t == 0) memcpy(f32, logits, sizeof(float) * (size_t)T * V);
        double vs_golden = 0, vs_f32 = tu_max_abs_diff(logits, f32, T * V);
        for (int64_t k = 0; k < np; k++)
            vs_golden = fmax(vs_golden, tu_max_abs_diff(logits + (size_t)pos[k] * V, want + k * V, V));
        printf("KV %-4s: logits max abs diff vs transformers %.3g, vs wick f32 KV %.3g "
               "(all 300 positions)\n", names[t], vs_golden, vs_f32);
        assert_true(vs_golden <= bound[t]);
        wick_session_free(s);
    }
    free(ids), free(pos), free(want), free(logits), free(f32), free(dir);
    wick_model_free(m);
}

/* Submissions and cancellations from four threads while the driver steps. */
typedef struct th_ctx {
    wick_engine *e;
    rec *recs;
    int base, n;
    pthread_mutex_t *mu;
} th_ctx;

static void *submitter(void *arg) {
    th_ctx *c = arg;
    wick_gen_params gp = wick_gen_params_default();
    gp.max_tokens = 6;
    gp.stop_on_eos = false;
    for (int i = 0; i < c->n; i++) {
        int32_t p[3] = {c->base + i, 7, 9};
        rec *r = &c->recs[c->base + i];
        r->mu = c->mu;
        wick_request rq = {.prompt = p, .n_prompt = 3, .params = &gp, .on_token = on_tok,
                           .user = r};
        uint64_t id;
        if (wick_engine_submit(c->e, &rq, &id) != WICK_OK) abort();
        if (i % 3 == 1) wick_engine_cancel(c->e, id);
        if (i % 4 == 2) {
            wick_engine_pause(c->e, id);
            wick_engine_resume(c->e, id);
        }
    }
    return NULL;
}

static void test_threads(void **state) {
    wick_model *m = load_with_adapters("auto");
    wick_engine_params ep = wick_engine_params_default();
    ep.n_threads = 2;
    ep.max_seqs = 6;
    wick_engine *e = NULL;
    assert_int_equal(wick_engine_create(m, &ep, &e), WICK_OK);
    enum { T = 4, PER = 12 };
    rec *recs = calloc(T * PER, sizeof *recs);
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_t th[T];
    th_ctx ctx[T];
    for (int t = 0; t < T; t++) {
        ctx[t] = (th_ctx){e, recs, t * PER, PER, &mu};
        pthread_create(&th[t], NULL, submitter, &ctx[t]);
    }
    int done_threads = 0;
    for (int steps = 0; steps < 100000; steps++) {
        int active = 0;
        assert_int_equal(wick_engine_step(e, &active), WICK_OK);
        if (done_threads < T && steps % 5 == 4) {
            for (int t = 0; t < T; t++) pthread_join(th[t], NULL);
            done_threads = T;
        }
        wick_engine_stats st;
        wick_engine_get_stats(e, &st);
        if (done_threads == T && st.finished == T * PER) break;
        if (!active) wick_engine_wait(e, 20);
    }
    wick_engine_stats st;
    wick_engine_get_stats(e, &st);
    assert_int_equal(st.finished, T * PER);
    for (int i = 0; i < T * PER; i++) {
        pthread_mutex_lock(&mu);
        const wick_finish_reason f = recs[i].finish;
        pthread_mutex_unlock(&mu);
        assert_true(f == WICK_FINISH_LENGTH || f == WICK_FINISH_CANCELLED);
    }
    free(recs);
    wick_engine_free(e);
    wick_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_cpu),     cmocka_unit_test(test_exact_ref),
        cmocka_unit_test(test_prefix_cache),  cmocka_unit_test(test_control),
        cmocka_unit_test(test_pool_too_small), cmocka_unit_test(test_kv_types),
        cmocka_unit_test(test_kv_type_error),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
