/* test_speculative.c — speculative decoding in the pull generator (wick_gen_params.spec_ngram,
 * draft, spec_k): greedy output identical to plain decoding for prompt lookup and for draft
 * models (the same model: every proposal accepted; another model: most rejected), seeded
 * sampling identical too (each output id is drawn from the same row in the same order), the
 * distribution of a sampled token against the exact one (chi-square), and bad parameters.
 * Models: tiny-llama (varied greedy continuations) and tiny-qwen2 as a foreign draft (same
 * 1024 ids). */
#include "testutil.h"

#include <math.h>

static wick_model *load(const char *dir) {
    wick_model *m = NULL;
    wick_model_params mp = wick_model_params_default();
    if (wick_model_load(dir, &mp, &m) != WICK_OK) fail_msg("load %s: %s", dir, wick_last_error());
    return m;
}

static wick_session *session(const wick_model *m, int n_ctx) {
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = 1;
    sp.n_ctx = n_ctx;
    wick_session *s = NULL;
    if (wick_session_create(m, &sp, &s) != WICK_OK) fail_msg("session: %s", wick_last_error());
    return s;
}

typedef struct run {
    int32_t ids[256];
    int n, drafted, accepted;
} run;

static void run_gen(wick_session *s, const int32_t *prompt, int n, const wick_gen_params *p, run *r) {
    memset(r, 0, sizeof *r);
    wick_gen *g;
    if (wick_gen_start(s, prompt, n, p, &g) != WICK_OK) fail_msg("start: %s", wick_last_error());
    wick_token t;
    wick_status st;
    while ((st = wick_gen_step(g, &t)) == WICK_OK) {
        if (t.id >= 0 && r->n < 256) r->ids[r->n++] = t.id;
        if (t.finish) r->drafted = t.drafted_tokens, r->accepted = t.accepted_tokens;
    }
    if (st != WICK_DONE) fail_msg("step: %s: %s", wick_status_str(st), wick_last_error());
    wick_gen_free(g);
}

static void assert_same(const run *a, const run *b, const char *what) {
    if (a->n != b->n) fail_msg("%s: %d ids vs %d", what, a->n, b->n);
    for (int i = 0; i < a->n; i++)
        if (a->ids[i] != b->ids[i]) fail_msg("%s: id %d differs: %d vs %d", what, i, a->ids[i], b->ids[i]);
}

typedef struct fx {
    char *llama, *qwen;
    wick_model *m, *other;
    int32_t *prompt[3];
    int64_t n_prompt[3];
} fx;

static bool fx_load(fx *f) {
    memset(f, 0, sizeof *f);
    if (!tu_fixture_exists("tiny-llama") || !tu_fixture_exists("tiny-qwen2")) {
        if (tu_ci()) fail_msg("tiny-llama / tiny-qwen2 fixtures missing under CI=true");
        return false;
    }
    f->llama = tu_fixture_path("tiny-llama");
    f->qwen = tu_fixture_path("tiny-qwen2");
    f->m = load(f->llama);
    f->other = load(f->qwen);
    char golden[4200];
    snprintf(golden, sizeof golden, "%s/golden.safetensors", f->llama);
    for (int i = 0; i < 3; i++) {
        char key[32];
        snprintf(key, sizeof key, "p%d_input_ids", i);
        f->prompt[i] = tu_load_ids(golden, key, &f->n_prompt[i]);
    }
    return true;
}

static void fx_free(fx *f) {
    for (int i = 0; i < 3; i++) free(f->prompt[i]);
    wick_model_free(f->m), wick_model_free(f->other);
    free(f->llama), free(f->qwen);
}

static void test_greedy_identical(void **state) {
    fx f;
    if (!fx_load(&f)) skip();
    wick_session *s = session(f.m, 256), *same = session(f.m, 256), *foreign = session(f.other, 256);
    for (int p = 0; p < 3; p++) {
        wick_gen_params gp = wick_gen_params_default();
        gp.temperature = 0.0f;
        gp.max_tokens = 48;
        gp.stop_on_eos = false;
        run plain, sp;
        run_gen(s, f.prompt[p], (int)f.n_prompt[p], &gp, &plain);
        assert_int_equal(plain.n, 48);
        assert_int_equal(plain.drafted, 0);
        static const int ngram[] = {1, 2, 3, 8}, ks[] = {1, 4, 16, 3};
        for (int v = 0; v < 4; v++) {
            wick_gen_params q = gp;
            q.spec_ngram = ngram[v], q.spec_k = ks[v];
            run_gen(s, f.prompt[p], (int)f.n_prompt[p], &q, &sp);
            assert_same(&plain, &sp, "prompt lookup");
            assert_true(sp.accepted <= sp.drafted);
            printf("p%d ngram %d k %d: %d proposed, %d accepted\n", p, ngram[v], ks[v], sp.drafted,
                   sp.accepted);
        }
        wick_gen_params q = gp;
        q.draft = same, q.spec_k = 5;
        run_gen(s, f.prompt[p], (int)f.n_prompt[p], &q, &sp);
        assert_same(&plain, &sp, "draft = the same model");
        printf("p%d draft = same model: %d proposed, %d accepted\n", p, sp.drafted, sp.accepted);
        assert_true(sp.drafted > 0 && sp.accepted == sp.drafted); /* same greedy choices */
        q.draft = foreign, q.spec_k = 3;
        run_gen(s, f.prompt[p], (int)f.n_prompt[p], &q, &sp);
        assert_same(&plain, &sp, "draft = another model");
        printf("p%d draft = tiny-qwen2: %d proposed, %d accepted\n", p, sp.drafted, sp.accepted);
        assert_true(sp.drafted > 0 && sp.accepted < sp.drafted);
        /* both sources, and a session that held another text before (prefix reuse) */
        q.draft = foreign, q.spec_ngram = 2;
        run_gen(s, f.prompt[p], (int)f.n_prompt[p], &q, &sp);
        assert_same(&plain, &sp, "prompt lookup + draft");
    }
    wick_session_free(s), wick_session_free(same), wick_session_free(foreign);
    fx_free(&f);
}

/* Seeded sampling: each output id is drawn from the same processed row with the same random
 * number as without speculation, so the ids are the same. */
static void test_sampling_identical(void **state) {
    fx f;
    if (!fx_load(&f)) skip();
    wick_session *s = session(f.m, 256), *same = session(f.m, 256);
    for (uint64_t seed = 1; seed <= 24; seed++) {
        wick_gen_params gp = wick_gen_params_default();
        gp.temperature = 0.7f;
        gp.seed = seed;
        gp.max_tokens = 32;
        gp.stop_on_eos = false;
        gp.repetition_penalty = seed % 2 ? 1.0f : 1.3f; /* penalties see the accepted ids */
        run plain, sp;
        run_gen(s, f.prompt[1], (int)f.n_prompt[1], &gp, &plain);
        wick_gen_params q = gp;
        q.draft = same, q.spec_k = 4, q.spec_ngram = seed % 3 ? 2 : 0;
        run_gen(s, f.prompt[1], (int)f.n_prompt[1], &q, &sp);
        assert_same(&plain, &sp, "seeded sampling");
        assert_true(sp.drafted > 0);
    }
    wick_session_free(s), wick_session_free(same);
    fx_free(&f);
}

/* Upper quantile of chi-square with df degrees of freedom at z standard deviations
 * (Wilson–Hilferty). */
static double chi2_crit(int df, double z) {
    const double a = 2.0 / (9.0 * df);
    return df * pow(1.0 - a + z * sqrt(a), 3.0);
}

/* The second sampled token's distribution under speculation (the draft = the same model, so
 * its greedy proposal is accepted with probability p(proposal) and rejected otherwise) against
 * the exact marginal Σ_t1 p(t1)·p(t2 | t1) computed from the model's own logits. */
static void test_distribution_chi_square(void **state) {
    fx f;
    if (!fx_load(&f)) skip();
    const int V = 1024, N = 12000;
    const float T = 0.03f; /* tiny-llama's logits are close together: this gives ~60% acceptance */
    const int32_t *P = f.prompt[1];
    const int nP = (int)f.n_prompt[1];
    wick_session *s = session(f.m, 64), *d = session(f.m, 64);
    /* exact marginal of t2 */
    double *want = calloc(V, sizeof(double));
    float *lg = malloc(sizeof(float) * V);
    int32_t ids[64];
    memcpy(ids, P, sizeof(int32_t) * nP);
    wick_session_reset(s);
    assert_int_equal(wick_session_eval(s, P, nP, WICK_LOGITS_LAST, lg), WICK_OK);
    double p1[1024], mx = -INFINITY, z = 0;
    for (int v = 0; v < V; v++) mx = fmax(mx, lg[v] / T);
    for (int v = 0; v < V; v++) z += p1[v] = exp(lg[v] / T - mx);
    for (int t1 = 0; t1 < V; t1++) {
        const double w1 = p1[t1] / z;
        if (w1 < 1e-9) continue;
        wick_session_truncate(s, nP);
        ids[nP] = t1;
        assert_int_equal(wick_session_eval(s, ids + nP, 1, WICK_LOGITS_LAST, lg), WICK_OK);
        double m2 = -INFINITY, z2 = 0;
        for (int v = 0; v < V; v++) m2 = fmax(m2, lg[v] / T);
        for (int v = 0; v < V; v++) z2 += exp(lg[v] / T - m2);
        for (int v = 0; v < V; v++) want[v] += w1 * exp(lg[v] / T - m2) / z2;
    }
    /* samples with speculation */
    long *got = calloc(V, sizeof(long));
    long drafted = 0, accepted = 0;
    for (int i = 0; i < N; i++) {
        wick_gen_params gp = wick_gen_params_default();
        gp.temperature = T, gp.top_k = 0, gp.top_p = 1.0f, gp.min_p = 0.0f;
        gp.seed = 1000 + (uint64_t)i;
        gp.max_tokens = 2;
        gp.stop_on_eos = false;
        gp.draft = d, gp.spec_k = 1;
        run r;
        run_gen(s, P, nP, &gp, &r);
        assert_int_equal(r.n, 2);
        got[r.ids[1]]++;
        drafted += r.drafted, accepted += r.accepted;
    }
    /* bins of expected count >= 5; the rest pooled */
    double chi = 0, pool_e = 0, pool_o = 0;
    int bins = 0;
    for (int v = 0; v < V; v++) {
        const double e = want[v] * N;
        if (e >= 5) {
            chi += (got[v] - e) * (got[v] - e) / e;
            bins++;
        } else pool_e += e, pool_o += (double)got[v];
    }
    if (pool_e >= 5) chi += (pool_o - pool_e) * (pool_o - pool_e) / pool_e, bins++;
    const double crit = chi2_crit(bins - 1, 3.719); /* one-sided 1e-4 */
    printf("second token, %d samples at temperature %.2f, draft accepted %ld of %ld (%.0f%%): "
           "chi-square %.1f on %d bins (1e-4 critical value %.1f)\n", N, T, accepted, drafted,
           100.0 * accepted / (drafted ? drafted : 1), chi, bins, crit);
    assert_true(drafted == N && accepted > N / 20 && accepted < N - N / 20); /* both branches ran */
    assert_true(chi < crit);
    free(want), free(lg), free(got);
    wick_session_free(s), wick_session_free(d);
    fx_free(&f);
}

static bool on_any(const wick_token *t, void *user) {
    (void)t, (void)user;
    return true;
}

/* A caller's proposer (spec_propose): it sees the ids so far and proposes a known
   continuation with every other id wrong; the output stays plain greedy's, the right ones
   are accepted; a proposer that misbehaves fails the generation with a clear error. */
typedef struct cb_user {
    const run *ref;
    int n_prompt, n_vocab, calls, bad;
} cb_user;

static int propose_cb(void *user, const int32_t *ids, int n, int32_t *out, int kmax) {
    cb_user *u = user;
    u->calls++;
    if (u->bad == 1) return kmax + 1;
    if (u->bad == 2) return out[0] = 1 << 30, 1;
    const int at = n - u->n_prompt;
    assert_true(at >= 1 && at <= u->ref->n);
    assert_int_equal(ids[n - 1], u->ref->ids[at - 1]); /* the last id sampled is in ids */
    int k = 0;
    for (; k < kmax && at + k < u->ref->n; k++) out[k] = (at + k) % 2 ? (u->ref->ids[at + k] + 1) % u->n_vocab : u->ref->ids[at + k];
    return k;
}

static void test_proposer_callback(void **state) {
    fx f;
    if (!fx_load(&f)) skip();
    wick_session *s = session(f.m, 256);
    wick_gen_params gp = wick_gen_params_default();
    gp.temperature = 0.0f, gp.max_tokens = 40, gp.stop_on_eos = false;
    run plain, sp;
    run_gen(s, f.prompt[2], (int)f.n_prompt[2], &gp, &plain);
    wick_model_info in;
    wick_model_get_info(f.m, &in);
    cb_user u = {&plain, (int)f.n_prompt[2], in.n_vocab, 0, 0};
    wick_gen_params q = gp;
    q.spec_propose = propose_cb, q.spec_user = &u, q.spec_k = 4;
    run_gen(s, f.prompt[2], (int)f.n_prompt[2], &q, &sp);
    assert_same(&plain, &sp, "spec_propose");
    printf("spec_propose: %d calls, %d proposed, %d accepted\n", u.calls, sp.drafted, sp.accepted);
    assert_true(u.calls > 0 && sp.accepted > 0 && sp.accepted < sp.drafted);
    for (u.bad = 1; u.bad <= 2; u.bad++) {
        wick_gen *g = NULL;
        assert_int_equal(wick_gen_start(s, f.prompt[2], (int)f.n_prompt[2], &q, &g), WICK_OK);
        wick_token t;
        wick_status st;
        while ((st = wick_gen_step(g, &t)) == WICK_OK) {}
        assert_int_equal(st, WICK_ERR_INVALID_ARG);
        assert_non_null(strstr(wick_last_error(), "spec_propose"));
        wick_gen_free(g);
    }
    wick_session_free(s);
    fx_free(&f);
}

static void test_bad_params(void **state) {
    fx f;
    if (!fx_load(&f)) skip();
    wick_session *s = session(f.m, 64);
    wick_gen *g = NULL;
    wick_gen_params gp = wick_gen_params_default();
    gp.spec_k = 17, gp.spec_ngram = 2;
    assert_int_equal(wick_gen_start(s, f.prompt[1], 9, &gp, &g), WICK_ERR_INVALID_ARG);
    gp.spec_k = 4, gp.spec_ngram = 9;
    assert_int_equal(wick_gen_start(s, f.prompt[1], 9, &gp, &g), WICK_ERR_INVALID_ARG);
    gp.spec_ngram = -1;
    assert_int_equal(wick_gen_start(s, f.prompt[1], 9, &gp, &g), WICK_ERR_INVALID_ARG);
    gp.spec_ngram = 0, gp.draft = s;
    assert_int_equal(wick_gen_start(s, f.prompt[1], 9, &gp, &g), WICK_ERR_INVALID_ARG);
    assert_null(g);
    /* engines refuse it */
    wick_engine_params ep = wick_engine_params_default();
    ep.n_threads = 1;
    wick_engine *e = NULL;
    assert_int_equal(wick_engine_create(f.m, &ep, &e), WICK_OK);
    gp.draft = NULL, gp.spec_ngram = 2;
    wick_request rq = {0};
    rq.prompt = f.prompt[1], rq.n_prompt = 9, rq.params = &gp;
    rq.on_token = on_any;
    uint64_t id;
    assert_int_equal(wick_engine_submit(e, &rq, &id), WICK_ERR_UNSUPPORTED);
    wick_engine_free(e);
    /* a tiny context: no room for proposals near the end, the output still matches */
    wick_session *small = session(f.m, 16);
    wick_gen_params a = wick_gen_params_default();
    a.temperature = 0, a.max_tokens = 0, a.stop_on_eos = false;
    run plain, sp;
    run_gen(small, f.prompt[1], 9, &a, &plain);
    a.spec_ngram = 1, a.spec_k = 16;
    run_gen(small, f.prompt[1], 9, &a, &sp);
    assert_same(&plain, &sp, "context end");
    wick_session_free(small);
    wick_session_free(s);
    fx_free(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_identical),
        cmocka_unit_test(test_sampling_identical),
        cmocka_unit_test(test_distribution_chi_square),
        cmocka_unit_test(test_proposer_callback),
        cmocka_unit_test(test_bad_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
