/* test_sampler.c — the sampler against independent references.
 *
 * Distributions: for fixed logits, 100k seeded draws are compared with the analytic
 * distribution of each sampler configuration by a chi-square test (significance 1e-4,
 * df = support size - 1), where the analytic distribution is computed here in double precision
 * with plain full sorting (ref_dist), not with the sampler's selection code. Draws outside the
 * analytic support fail outright. Penalties and bias are checked against hand-computed vectors;
 * the selection primitive against qsort on random sets with ties.
 */
#include <math.h>

#include "infer/sampler.h"
#include "testutil.h"

#define NDRAW 100000

/* ---- reference: full sort, double precision ------------------------------------------- */

typedef struct { double key; int id; } ref_item;

static int ref_cmp(const void *pa, const void *pb) {
    const ref_item *a = pa, *b = pb;
    if (a->key < b->key) return -1;
    if (a->key > b->key) return 1;
    return a->id - b->id;
}

/* Keeps, among ids with alive[i], the shortest prefix in (key asc, id asc) order whose summed
 * prob reaches mass (count mode when mass < 0: the first k). */
static void ref_keep_prefix(const double *key, const double *prob, bool *alive, int n, double mass,
                            int k) {
    ref_item *it = malloc(sizeof *it * n);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (alive[i]) it[m++] = (ref_item){key[i], i};
    qsort(it, m, sizeof *it, ref_cmp);
    double cum = 0;
    int keep = m;
    for (int j = 0; j < m; j++) {
        cum += mass >= 0 ? prob[it[j].id] : 1.0;
        if (mass >= 0 ? cum >= mass : j + 1 >= k) {
            keep = j + 1;
            break;
        }
    }
    for (int j = keep; j < m; j++) alive[it[j].id] = false;
    free(it);
}

/* Renormalised probs of the alive set from z. */
static void ref_probs(const double *z, const bool *alive, int n, double *prob) {
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < n; i++)
        if (alive[i] && z[i] > mx) mx = z[i];
    for (int i = 0; i < n; i++) s += prob[i] = alive[i] ? exp(z[i] - mx) : 0.0;
    for (int i = 0; i < n; i++) prob[i] /= s;
}

/* Analytic final distribution of `p` over processed logits x (bias/penalties already in x). */
static void ref_dist(const float *x, int n, const sampler_params *p, double *out) {
    bool *alive = malloc(n);
    double *z = malloc(sizeof *z * n), *key = malloc(sizeof *key * n);
    for (int i = 0; i < n; i++) alive[i] = x[i] > -INFINITY;
    if (p->temperature == 0.0f) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (alive[i] && (best < 0 || x[i] > x[best])) best = i;
        for (int i = 0; i < n; i++) out[i] = i == best;
        goto done;
    }
    for (int i = 0; i < n; i++) {
        z[i] = (double)x[i] / p->temperature;
        key[i] = -z[i];
    }
    if (p->top_k > 0) ref_keep_prefix(key, out, alive, n, -1.0, p->top_k);
    if (p->typical_p < 1.0f) {
        ref_probs(z, alive, n, out);
        double h = 0;
        for (int i = 0; i < n; i++)
            if (out[i] > 0) h -= out[i] * log(out[i]);
        for (int i = 0; i < n; i++) key[i] = alive[i] ? fabs(-log(out[i]) - h) : 0;
        ref_keep_prefix(key, out, alive, n, p->typical_p, 0);
        for (int i = 0; i < n; i++) key[i] = -z[i];
    }
    if (p->top_p < 1.0f) {
        ref_probs(z, alive, n, out);
        ref_keep_prefix(key, out, alive, n, p->top_p, 0);
    }
    if (p->min_p > 0.0f) {
        ref_probs(z, alive, n, out);
        double mx = 0;
        for (int i = 0; i < n; i++) mx = out[i] > mx ? out[i] : mx;
        for (int i = 0; i < n; i++)
            if (out[i] < p->min_p * mx) alive[i] = false;
    }
    ref_probs(z, alive, n, out);
done:
    free(alive);
    free(z);
    free(key);
}

/* Critical chi-square value at significance 1e-4 (Wilson-Hilferty, z = 3.719). */
static double chi2_crit(int df) {
    double a = 2.0 / (9.0 * df);
    double t = 1.0 - a + 3.719 * sqrt(a);
    return df * t * t * t;
}

/* Draws NDRAW tokens and runs the chi-square test against ref_dist. Also checks that the
 * reported prob/logprob/full_logprob of every draw match the reference. */
static void check_dist(const float *logits, int n, const sampler_params *p, const char *what) {
    double *ref = malloc(sizeof *ref * n), *full = malloc(sizeof *full * n);
    long *cnt = calloc(n, sizeof *cnt);
    float *work = malloc(sizeof *work * n);
    ref_dist(logits, n, p, ref);
    /* untruncated, temperature-scaled log-softmax */
    double t = p->temperature == 0.0f ? 1.0 : p->temperature, mx = -INFINITY, s = 0;
    for (int i = 0; i < n; i++) mx = logits[i] / t > mx ? logits[i] / t : mx;
    for (int i = 0; i < n; i++) s += exp(logits[i] / t - mx);
    for (int i = 0; i < n; i++) full[i] = logits[i] / t - mx - log(s);

    sampler *smp = NULL;
    assert_int_equal(sampler_create(p, n, &smp), WICK_OK);
    for (int d = 0; d < NDRAW; d++) {
        memcpy(work, logits, sizeof *work * n);
        sampled_token tok;
        assert_int_equal(sampler_sample(smp, work, &tok), WICK_OK);
        assert_true(tok.id >= 0 && tok.id < n);
        if (ref[tok.id] <= 0) fail_msg("%s: drew id %d outside the analytic support", what, tok.id);
        cnt[tok.id]++;
        if (d < 200) {
            /* greedy reports the softmax at temperature 1 (documented), not the one-hot */
            double want = p->temperature == 0.0f ? exp(full[tok.id]) : ref[tok.id];
            assert_float_equal(tok.prob, want, 2e-5 + 1e-4 * want);
            assert_float_equal(tok.logprob, log(want), 1e-4);
            assert_float_equal(tok.full_logprob, full[tok.id], 1e-4);
            assert_true(tok.logit == logits[tok.id]);
        }
    }
    double chi = 0;
    int support = 0;
    for (int i = 0; i < n; i++) {
        if (ref[i] <= 0) continue;
        support++;
        double e = ref[i] * NDRAW;
        chi += (cnt[i] - e) * (cnt[i] - e) / e;
    }
    if (support > 1) {
        double crit = chi2_crit(support - 1);
        if (!(chi < crit))
            fail_msg("%s: chi-square %.2f >= %.2f (df %d)", what, chi, crit, support - 1);
    } else {
        assert_int_equal(support, 1);
    }
    sampler_free(smp);
    free(ref);
    free(full);
    free(cnt);
    free(work);
}

/* 12 tokens: ties (1.5 twice, 0.0 twice), a banned one, a wide spread. */
static const float k_small[12] = {1.5f, -0.3f, 2.7f, 0.0f, 1.5f, -INFINITY,
                                  0.9f, -2.0f, 0.0f, 3.1f, -0.8f, 0.4f};

static void test_distributions_small(void **state) {
    (void)state;
    struct { const char *name; sampler_params p; } c[32];
    int nc = 0;
#define CASE(nm, ...) do { sampler_params q = sampler_params_default(); q.seed = 1234 + nc; __VA_ARGS__; c[nc].name = nm; c[nc].p = q; nc++; } while (0)
    CASE("temperature 1");
    CASE("temperature 0.7", q.temperature = 0.7f);
    CASE("temperature 1.6", q.temperature = 1.6f);
    CASE("top_k 3", q.top_k = 3);
    CASE("top_k 4 (tie at boundary)", q.top_k = 4);
    CASE("top_k 1", q.top_k = 1);
    CASE("top_k 50 > vocab", q.top_k = 50);
    CASE("top_p 0.6", q.top_p = 0.6f);
    CASE("top_p 0.93", q.top_p = 0.93f);
    CASE("top_p 0.01", q.top_p = 0.01f);
    CASE("top_p 1", q.top_p = 1.0f);
    CASE("min_p 0.2", q.min_p = 0.2f);
    CASE("min_p 0.05 t0.5", q.min_p = 0.05f; q.temperature = 0.5f);
    CASE("typical 0.5", q.typical_p = 0.5f);
    CASE("typical 0.9 t1.3", q.typical_p = 0.9f; q.temperature = 1.3f);
    CASE("k5 p0.8 minp0.05", q.top_k = 5; q.top_p = 0.8f; q.min_p = 0.05f);
    CASE("typical 0.7 + top_p 0.8", q.typical_p = 0.7f; q.top_p = 0.8f);
    CASE("k6 typical 0.6 t0.8", q.top_k = 6; q.typical_p = 0.6f; q.temperature = 0.8f);
    CASE("all four", q.top_k = 8; q.typical_p = 0.95f; q.top_p = 0.9f; q.min_p = 0.02f; q.temperature = 1.2f);
    CASE("huge temperature", q.temperature = 1e6f);
    CASE("tiny temperature", q.temperature = 1e-6f);
    CASE("greedy", q.temperature = 0.0f);
    for (int i = 0; i < nc; i++) check_dist(k_small, 12, &c[i].p, c[i].name);
}

/* 300 tokens, peaked: exercises the ladder thresholds and the histogram selection (> 48). */
static void test_distributions_medium(void **state) {
    (void)state;
    enum { N = 300 };
    float x[N];
    uint64_t r = 99;
    for (int i = 0; i < N; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((r >> 40) % 1000) / 250.0f - 2.0f; /* [-2, 2), many exact ties */
    }
    x[17] = 6.0f, x[201] = 5.5f, x[33] = 5.5f, x[250] = -INFINITY;
    struct { const char *name; sampler_params p; } c[16];
    int nc = 0;
    CASE("m temperature", q.temperature = 1.0f);
    CASE("m top_k 60", q.top_k = 60);
    CASE("m top_p 0.7", q.top_p = 0.7f);
    CASE("m top_p 0.3", q.top_p = 0.3f);
    CASE("m min_p 0.03", q.min_p = 0.03f);
    CASE("m typical 0.6", q.typical_p = 0.6f);
    CASE("m k100 p0.8 t1.5", q.top_k = 100; q.top_p = 0.8f; q.temperature = 1.5f);
    for (int i = 0; i < nc; i++) check_dist(x, N, &c[i].p, c[i].name);
}

static void test_edge_cases(void **state) {
    (void)state;
    sampler_params p = sampler_params_default();
    /* vocab 1 */
    float one[1] = {-3.0f};
    sampler *s = NULL;
    p.top_k = 5;
    p.n_logprobs = 4;
    assert_int_equal(sampler_create(&p, 1, &s), WICK_OK);
    sampled_token t;
    assert_int_equal(sampler_sample(s, one, &t), WICK_OK);
    assert_int_equal(t.id, 0);
    assert_float_equal(t.prob, 1.0f, 1e-7);
    assert_float_equal(t.logprob, 0.0f, 1e-7);
    assert_int_equal(t.n_top, 1);
    assert_int_equal(t.top[0].id, 0);
    sampler_free(s);
    /* all equal logits: uniform; top_k 3 of equal keeps ids 0..2 */
    float eq[10];
    for (int i = 0; i < 10; i++) eq[i] = 0.25f;
    p = sampler_params_default();
    check_dist(eq, 10, &p, "equal logits");
    p.top_k = 3;
    check_dist(eq, 10, &p, "equal logits top_k 3");
    p = sampler_params_default();
    p.top_p = 0.35f;
    check_dist(eq, 10, &p, "equal logits top_p 0.35");
    /* errors: all banned, NaN, +inf */
    float bad[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    p = sampler_params_default();
    assert_int_equal(sampler_create(&p, 4, &s), WICK_OK);
    assert_int_equal(sampler_sample(s, bad, &t), WICK_ERR_INVALID_ARG);
    assert_non_null(strstr(wick_last_error(), "banned"));
    bad[2] = NAN;
    assert_int_equal(sampler_sample(s, bad, &t), WICK_ERR_INVALID_ARG);
    assert_non_null(strstr(wick_last_error(), "logits[2] is NaN"));
    bad[2] = INFINITY;
    assert_int_equal(sampler_sample(s, bad, &t), WICK_ERR_INVALID_ARG);
    assert_non_null(strstr(wick_last_error(), "+inf"));
    assert_int_equal(sampler_sample(NULL, bad, &t), WICK_ERR_INVALID_ARG);
    assert_int_equal(sampler_accept(s, 4), WICK_ERR_INVALID_ARG);
    assert_int_equal(sampler_accept(s, -1), WICK_ERR_INVALID_ARG);
    int32_t ids[2] = {1, 9};
    assert_int_equal(sampler_accept_prompt(s, ids, 2), WICK_ERR_INVALID_ARG);
    assert_non_null(strstr(wick_last_error(), "ids[1] = 9"));
    sampler_free(s);
    sampler_free(NULL);
    /* banning via logit_bias, everything banned through bias */
    sampler_logit_bias lb[2] = {{0, -INFINITY}, {1, -INFINITY}};
    p.logit_bias = lb;
    p.n_logit_bias = 2;
    assert_int_equal(sampler_create(&p, 2, &s), WICK_OK);
    float two[2] = {1.0f, 2.0f};
    assert_int_equal(sampler_sample(s, two, &t), WICK_ERR_INVALID_ARG);
    sampler_free(s);
}

static void test_greedy(void **state) {
    (void)state;
    sampler_params p = sampler_params_default();
    p.temperature = 0.0f;
    p.n_logprobs = 3;
    float x[6] = {1.0f, 4.0f, -2.0f, 4.0f, 0.5f, 3.0f};
    sampler *s = NULL;
    assert_int_equal(sampler_create(&p, 6, &s), WICK_OK);
    sampled_token t;
    assert_int_equal(sampler_sample(s, x, &t), WICK_OK);
    assert_int_equal(t.id, 1); /* tie with id 3: lowest id */
    double z = 0;
    for (int i = 0; i < 6; i++) z += exp(x[i] - 4.0);
    assert_float_equal(t.prob, 1.0 / z, 1e-6);
    assert_float_equal(t.logprob, -log(z), 1e-6);
    assert_int_equal(t.top[0].id, 1);
    assert_int_equal(t.top[1].id, 3);
    assert_int_equal(t.top[2].id, 5);
    assert_float_equal(t.top[2].logprob, -1.0 - log(z), 1e-6);
    sampler_free(s);
}

/* Hand-computed: see the comments for each step. All values exact in binary. */
static void test_penalties(void **state) {
    (void)state;
    const float x0[8] = {1.0f, 2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 0.0f, 4.0f};
    sampler_logit_bias lb[3] = {{0, 1.0f}, {6, -INFINITY}, {7, -0.5f}};
    sampler_params p = sampler_params_default();
    p.logit_bias = lb;
    p.n_logit_bias = 3;
    p.repetition_penalty = 2.0f;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    p.temperature = 0.0f;
    const int32_t prompt[4] = {1, 2, 2, 5};
    const int32_t gen[3] = {2, 3, 3};
    sampler *s = NULL;
    assert_int_equal(sampler_create(&p, 8, &s), WICK_OK);
    lb[0].bias = 100.0f; /* the sampler copied the bias list */
    assert_int_equal(sampler_accept_prompt(s, prompt, 4), WICK_OK);
    for (int i = 0; i < 3; i++) assert_int_equal(sampler_accept(s, gen[i]), WICK_OK);
    /* bias -> {2, 2, -1, .5, 3, -2, -inf, 3.5}; repetition over {1,2,5,3}: 2/2, -1*2, -2*2,
     * .5/2; frequency/presence over generated {2:1, 3:2}: -2-.5-.25, .25-1-.25 */
    const float want[8] = {2.0f, 1.0f, -2.75f, -1.0f, 3.0f, -4.0f, -INFINITY, 3.5f};
    float x[8];
    memcpy(x, x0, sizeof x);
    sampled_token t;
    assert_int_equal(sampler_sample(s, x, &t), WICK_OK);
    for (int i = 0; i < 8; i++) assert_true(x[i] == want[i]);
    assert_int_equal(t.id, 7);
    assert_true(t.logit == 4.0f); /* raw logit before the bias */
    /* reset: only the bias remains */
    sampler_reset(s);
    memcpy(x, x0, sizeof x);
    sampler_apply_penalties(s, x);
    const float want_reset[8] = {2.0f, 2.0f, -1.0f, 0.5f, 3.0f, -2.0f, -INFINITY, 3.5f};
    for (int i = 0; i < 8; i++) assert_true(x[i] == want_reset[i]);
    sampler_free(s);
    lb[0].bias = 1.0f;

    /* window of 3: after the prompt only {2,2,5} count; after all, only {2,3,3} */
    p.repetition_last_n = 3;
    assert_int_equal(sampler_create(&p, 8, &s), WICK_OK);
    assert_int_equal(sampler_accept_prompt(s, prompt, 4), WICK_OK);
    memcpy(x, x0, sizeof x);
    sampler_apply_penalties(s, x);
    const float want_w1[8] = {2.0f, 2.0f, -2.0f, 0.5f, 3.0f, -4.0f, -INFINITY, 3.5f};
    for (int i = 0; i < 8; i++) assert_true(x[i] == want_w1[i]);
    for (int i = 0; i < 3; i++) assert_int_equal(sampler_accept(s, gen[i]), WICK_OK);
    memcpy(x, x0, sizeof x);
    sampler_apply_penalties(s, x);
    const float want_w2[8] = {2.0f, 2.0f, -2.75f, -1.0f, 3.0f, -2.0f, -INFINITY, 3.5f};
    for (int i = 0; i < 8; i++) assert_true(x[i] == want_w2[i]);
    sampler_free(s);

    /* penalty 1, frequency/presence 0: nothing but the bias changes; zero logit stays 0 */
    sampler_params q = sampler_params_default();
    q.repetition_penalty = 1.5f;
    assert_int_equal(sampler_create(&q, 8, &s), WICK_OK);
    int32_t z6 = 6;
    assert_int_equal(sampler_accept_prompt(s, &z6, 1), WICK_OK);
    memcpy(x, x0, sizeof x);
    sampler_apply_penalties(s, x);
    for (int i = 0; i < 8; i++) assert_true(x[i] == x0[i]); /* 0 / 1.5 = 0 */
    sampler_free(s);
}

static void test_seed(void **state) {
    (void)state;
    enum { N = 64, STEPS = 300 };
    float x[N], w[N];
    for (int i = 0; i < N; i++) x[i] = (float)((i * 37) % 11) * 0.3f;
    sampler_params p = sampler_params_default();
    p.seed = 7;
    p.top_p = 0.95f;
    sampler *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(sampler_create(&p, N, &a), WICK_OK);
    assert_int_equal(sampler_create(&p, N, &b), WICK_OK);
    p.seed = 8;
    assert_int_equal(sampler_create(&p, N, &c), WICK_OK);
    int32_t seq[STEPS];
    int differ = 0;
    for (int i = 0; i < STEPS; i++) {
        sampled_token ta, tb, tc;
        memcpy(w, x, sizeof w);
        assert_int_equal(sampler_sample(a, w, &ta), WICK_OK);
        memcpy(w, x, sizeof w);
        assert_int_equal(sampler_sample(b, w, &tb), WICK_OK);
        memcpy(w, x, sizeof w);
        assert_int_equal(sampler_sample(c, w, &tc), WICK_OK);
        assert_int_equal(ta.id, tb.id);
        differ += ta.id != tc.id;
        seq[i] = ta.id;
    }
    assert_true(differ > STEPS / 2);
    sampler_reset(a);
    for (int i = 0; i < STEPS; i++) {
        sampled_token ta;
        memcpy(w, x, sizeof w);
        assert_int_equal(sampler_sample(a, w, &ta), WICK_OK);
        assert_int_equal(ta.id, seq[i]);
    }
    sampler_free(a);
    sampler_free(b);
    sampler_free(c);
}

static void test_logprobs(void **state) {
    (void)state;
    enum { N = 500 };
    float x[N], w[N];
    for (int i = 0; i < N; i++) x[i] = (float)((i * 7919) % 97) * 0.05f;
    x[10] = -INFINITY;
    sampler_params p = sampler_params_default();
    p.n_logprobs = 25;
    p.temperature = 0.8f;
    p.top_k = 3; /* alternatives are pre-truncation: beyond the top 3 they stay finite */
    sampler *s = NULL;
    assert_int_equal(sampler_create(&p, N, &s), WICK_OK);
    memcpy(w, x, sizeof w);
    sampled_token t;
    assert_int_equal(sampler_sample(s, w, &t), WICK_OK);
    assert_int_equal(t.n_top, 25);
    /* reference: full sort by (logit desc, id asc) and log-softmax of x / 0.8 */
    ref_item it[N];
    double mx = 0, z = 0;
    for (int i = 0; i < N; i++) {
        it[i] = (ref_item){-(double)x[i], i};
        mx = x[i] / 0.8 > mx ? x[i] / 0.8 : mx;
    }
    for (int i = 0; i < N; i++) z += exp(x[i] / 0.8 - mx);
    qsort(it, N, sizeof *it, ref_cmp);
    for (int i = 0; i < 25; i++) {
        assert_int_equal(t.top[i].id, it[i].id);
        assert_float_equal(t.top[i].logprob, x[it[i].id] / 0.8 - mx - log(z), 1e-5);
        if (i) assert_true(t.top[i].logprob <= t.top[i - 1].logprob);
    }
    sampler_free(s);
    /* more alternatives than live tokens: the rest are id -1, -inf */
    float y[4] = {0.0f, -INFINITY, 1.0f, -INFINITY};
    p = sampler_params_default();
    p.n_logprobs = 10;
    assert_int_equal(sampler_create(&p, 4, &s), WICK_OK);
    assert_int_equal(sampler_sample(s, y, &t), WICK_OK);
    assert_int_equal(t.n_top, 4);
    assert_int_equal(t.top[0].id, 2);
    assert_int_equal(t.top[1].id, 0);
    assert_int_equal(t.top[2].id, -1);
    assert_true(t.top[3].logprob == -INFINITY);
    sampler_free(s);
}

/* The selection primitive against qsort, on random sets with many ties. */
static void test_select_prefix(void **state) {
    (void)state;
    enum { N = 20000 };
    sampler_cand *c = malloc(sizeof *c * N), *tmp = malloc(sizeof *tmp * N),
                 *ref = malloc(sizeof *ref * N);
    uint64_t r = 5;
    for (int trial = 0; trial < 40; trial++) {
        int n = trial < 20 ? 1 + trial * 997 % N : N;
        int levels = trial % 3 == 0 ? 3 : trial % 3 == 1 ? 200 : 1000000;
        for (int i = 0; i < n; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            float key = (float)((r >> 33) % levels) * 0.001f;
            c[i] = (sampler_cand){key, -key, expf(-key), i};
        }
        memcpy(ref, c, sizeof *c * n);
        sampler_sort_cands(ref, n);
        bool by_mass = trial % 2;
        double total = 0;
        for (int i = 0; i < n; i++) total += ref[i].w;
        double target = by_mass ? total * (0.05 + 0.9 * (trial % 7) / 7.0) : 1 + (trial * 131) % n;
        int want = n;
        double cum = 0;
        for (int i = 0; i < n; i++) {
            cum += by_mass ? ref[i].w : 1.0;
            if (cum >= target) {
                want = i + 1;
                break;
            }
        }
        int got = sampler_select_prefix(c, tmp, n, by_mass, target);
        /* Mass mode sums in another order: allow a boundary shift only where the cumulative
         * sum is within rounding of the target. */
        if (by_mass && got != want) {
            double a = 0;
            int lo = got < want ? got : want, hi = got < want ? want : got;
            for (int i = 0; i < lo; i++) a += ref[i].w;
            for (int i = lo; i < hi; i++) a += ref[i].w;
            assert_true(fabs(a - target) < 1e-9 * total);
            continue;
        }
        assert_int_equal(got, want);
        sampler_sort_cands(c, got);
        for (int i = 0; i < got; i++) assert_int_equal(c[i].id, ref[i].id);
    }
    free(c);
    free(tmp);
    free(ref);
}

/* Qwen2-sized vocabulary: top-k / top-p sets and alternatives against a full sort. */
static void test_large_vocab(void **state) {
    (void)state;
    enum { N = 151936 };
    float *x = malloc(sizeof *x * N), *w = malloc(sizeof *w * N);
    uint64_t r = 11;
    for (int i = 0; i < N; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((r >> 40) % 4096) / 512.0f - 4.0f;
    }
    for (int i = 0; i < 30; i++) x[(i * 4999) % N] = 9.0f + i * 0.25f;
    enum { NCFG = 7 };
    sampler_params cfg[NCFG];
    for (int k = 0; k < NCFG; k++) cfg[k] = sampler_params_default();
    cfg[0].top_k = 40;
    cfg[1].top_p = 0.9f;
    cfg[2].top_p = 0.995f; /* deep into the crowd: needs the widest gathers */
    cfg[3].min_p = 0.01f, cfg[3].temperature = 0.7f;
    /* whole-vocabulary typical-p (implicit kept set), and the stages that list it afterwards */
    cfg[4].typical_p = 0.9f;
    cfg[5].typical_p = 0.8f, cfg[5].top_p = 0.9f;
    cfg[6].top_p = 0.995f, cfg[6].min_p = 0.001f, cfg[6].temperature = 1.3f;
    double *ref = malloc(sizeof *ref * N);
    for (int k = 0; k < NCFG; k++) {
        cfg[k].n_logprobs = 40;
        ref_dist(x, N, &cfg[k], ref);
        sampler *s = NULL;
        assert_int_equal(sampler_create(&cfg[k], N, &s), WICK_OK);
        for (int d = 0; d < 300; d++) {
            memcpy(w, x, sizeof *w * N);
            sampled_token t;
            assert_int_equal(sampler_sample(s, w, &t), WICK_OK);
            if (ref[t.id] <= 0) fail_msg("config %d: id %d outside the analytic set", k, t.id);
            assert_float_equal(t.prob, ref[t.id], 1e-5 + 1e-3 * ref[t.id]);
            for (int i = 1; i < 40; i++) assert_true(t.top[i].logprob <= t.top[i - 1].logprob);
        }
        sampler_free(s);
    }
    free(ref);
    free(x);
    free(w);
}

static void test_params_validation(void **state) {
    (void)state;
    struct { const char *name; sampler_params p; } c[24];
    int nc = 0;
    sampler_logit_bias bad_id = {99, 1.0f}, bad_nan = {1, NAN}, bad_inf = {1, INFINITY};
    CASE("temperature", q.temperature = -0.1f);
    CASE("temperature", q.temperature = NAN);
    CASE("temperature", q.temperature = INFINITY);
    CASE("top_k", q.top_k = -1);
    CASE("top_p", q.top_p = 0.0f);
    CASE("top_p", q.top_p = 1.5f);
    CASE("top_p", q.top_p = NAN);
    CASE("min_p", q.min_p = -0.1f);
    CASE("min_p", q.min_p = 1.1f);
    CASE("typical_p", q.typical_p = 0.0f);
    CASE("typical_p", q.typical_p = NAN);
    CASE("repetition_penalty", q.repetition_penalty = 0.0f);
    CASE("repetition_penalty", q.repetition_penalty = NAN);
    CASE("repetition_last_n", q.repetition_last_n = -3);
    CASE("frequency_penalty", q.frequency_penalty = INFINITY);
    CASE("presence_penalty", q.presence_penalty = NAN);
    CASE("logit_bias", q.n_logit_bias = 1);
    CASE("logit_bias[0]: id 99", q.logit_bias = &bad_id; q.n_logit_bias = 1);
    CASE("logit_bias[0]", q.logit_bias = &bad_nan; q.n_logit_bias = 1);
    CASE("logit_bias[0]", q.logit_bias = &bad_inf; q.n_logit_bias = 1);
    CASE("n_logprobs", q.n_logprobs = -1);
    for (int i = 0; i < nc; i++) {
        sampler *s = (sampler *)&c[i]; /* must be set to NULL on failure */
        assert_int_equal(sampler_create(&c[i].p, 10, &s), WICK_ERR_INVALID_ARG);
        assert_null(s);
        if (!strstr(wick_last_error(), c[i].name))
            fail_msg("case %d: message '%s' does not name '%s'", i, wick_last_error(), c[i].name);
    }
    sampler_params ok = sampler_params_default();
    sampler *s = NULL;
    assert_int_equal(sampler_create(&ok, 0, &s), WICK_ERR_INVALID_ARG);
    assert_int_equal(sampler_create(NULL, 10, &s), WICK_ERR_INVALID_ARG);
    assert_int_equal(sampler_create(&ok, 10, NULL), WICK_ERR_INVALID_ARG);
    /* defaults are as documented */
    assert_true(ok.temperature == 1.0f && ok.top_k == 0 && ok.top_p == 1.0f && ok.min_p == 0.0f &&
                ok.typical_p == 1.0f && ok.repetition_penalty == 1.0f && ok.n_logprobs == 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_validation),
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_penalties),
        cmocka_unit_test(test_seed),
        cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_edge_cases),
        cmocka_unit_test(test_select_prefix),
        cmocka_unit_test(test_distributions_small),
        cmocka_unit_test(test_distributions_medium),
        cmocka_unit_test(test_large_vocab),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
