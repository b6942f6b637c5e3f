/* test_cuda_model.c — whole models on the GPU (device "cuda"):
 *   - the Hugging Face goldens of tiny-qwen2, tiny-llama and small-qwen2 (as
 *     test_model_golden.c: prompt logits at every position, greedy ids and each step's
 *     logits within 1e-4, cached decode vs full recompute, chunked prefill, per-layer
 *     activations within 1e-5 through the trace hook);
 *   - the PEFT goldens of tiny-qwen2-lora with adapters a and b applied unmerged (1e-4);
 *   - exactness of the engine: mixed-adapter requests (base, a, b, a at half scale) through a
 *     CUDA engine give the greedy ids of the same requests through a CPU engine, and logits
 *     and top log-probabilities within 1e-4;
 *   - what stays on the CPU in this version is refused clearly (training, merging).
 * Skips like test_cuda.c: SKIP line and exit 0 without CUDA or a GPU, unless
 * WICK_REQUIRE_CUDA=1. Fixture rules as everywhere (testutil.h). */
#include <math.h>

#include "infer/session.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "testutil.h"

#define TOL_LOGITS 1e-4
#define TOL_ACT 1e-5

static wick_model *load_on(const char *dir, const char *device) {
    wick_model_params mp = wick_model_params_default();
    mp.device = device;
    /* the goldens hold the exact definition; precision "fast" (BF16 prefill GEMMs on the
       tensor cores) is measured by test_model_golden's fast case run on the GPU */
    mp.precision = "exact";
    wick_model *m = NULL;
    if (wick_model_load(dir, &mp, &m) != WICK_OK) fail_msg("load %s: %s", dir, wick_last_error());
    return m;
}

static wick_session *session(const wick_model *m, int n_batch) {
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = 2;
    if (n_batch) sp.n_batch = n_batch;
    wick_session *s = NULL;
    if (wick_session_create(m, &sp, &s) != WICK_OK) fail_msg("session: %s", wick_last_error());
    return s;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static void eval_ok(wick_session *s, const int32_t *ids, int n, wick_logits_mode mode, float *lg) {
    if (wick_session_eval(s, ids, n, mode, lg) != WICK_OK) fail_msg("eval: %s", wick_last_error());
}

/* ---- goldens ---- */

static void check_prompt(const char *fixture, int pi, int n_batch) {
    TU_REQUIRE_FIXTURE(dir, fixture);
    char golden[4200], key[64];
    snprintf(golden, sizeof golden, "%s/golden.safetensors", dir);
    wick_model *m = load_on(dir, "cuda");
    wick_model_info info;
    wick_model_get_info(m, &info);
    assert_string_equal(info.kernels, "cuda:0");
    const int V = info.n_vocab;
    int64_t T, n_ref, n_steps, n_step_logits;
    snprintf(key, sizeof key, "p%d_input_ids", pi);
    int32_t *ids = tu_load_ids(golden, key, &T);
    snprintf(key, sizeof key, "p%d_logits", pi);
    float *ref = tu_load_f32(golden, key, &n_ref, NULL, NULL);
    assert_int_equal(n_ref, T * V);
    snprintf(key, sizeof key, "p%d_greedy_ids", pi);
    int32_t *greedy = tu_load_ids(golden, key, &n_steps);
    snprintf(key, sizeof key, "p%d_step_logits", pi);
    float *step_ref = tu_load_f32(golden, key, &n_step_logits, NULL, NULL);
    assert_int_equal(n_step_logits, n_steps * V);

    wick_session *s = session(m, n_batch);
    float *logits = malloc(sizeof(float) * (size_t)T * V);
    eval_ok(s, ids, (int)T, WICK_LOGITS_ALL, logits);
    const double err = tu_max_abs_diff(logits, ref, T * V);
    printf("%s [cuda, batch %d] p%d: prompt logits max abs err %.3g\n", fixture, n_batch, pi, err);
    assert_true(err <= TOL_LOGITS);
    float *last = malloc(sizeof(float) * V);
    memcpy(last, logits + (size_t)(T - 1) * V, sizeof(float) * V);
    double step_err = 0;
    for (int t = 0; t < n_steps; t++) {
        const double e = tu_max_abs_diff(last, step_ref + (size_t)t * V, V);
        if (e > step_err) step_err = e;
        int tok = argmax(last, V);
        assert_int_equal(tok, greedy[t]);
        if (t + 1 < n_steps) eval_ok(s, &tok, 1, WICK_LOGITS_LAST, last);
    }
    printf("%s [cuda] p%d: %lld greedy ids match, step logits max abs err %.3g\n", fixture, pi,
           (long long)n_steps, step_err);
    assert_true(step_err <= TOL_LOGITS);
    /* decode-with-cache == full recompute of the same prefix */
    const int total = (int)T + (int)n_steps - 1;
    int32_t *all = malloc(sizeof(int32_t) * total);
    memcpy(all, ids, sizeof(int32_t) * T);
    memcpy(all + T, greedy, sizeof(int32_t) * (n_steps - 1));
    wick_session_reset(s);
    float *full = malloc(sizeof(float) * V);
    eval_ok(s, all, total, WICK_LOGITS_LAST, full);
    const double e = tu_max_abs_diff(full, last, V);
    printf("%s [cuda] p%d: cached decode vs full recompute max abs diff %.3g\n", fixture, pi, e);
    assert_true(e <= 1e-5);
    free(all), free(full), free(last), free(logits), free(ids), free(ref), free(greedy);
    free(step_ref);
    wick_session_free(s);
    wick_model_free(m);
    free(dir);
}

static void test_tiny_qwen2(void **state) {
    for (int p = 0; p < 3; p++) check_prompt("tiny-qwen2", p, 0);
}

static void test_tiny_llama(void **state) {
    for (int p = 0; p < 3; p++) check_prompt("tiny-llama", p, 0);
}

/* prefill in odd chunks: the cache indexing across chunks, both matmul paths */
static void test_chunked_prefill(void **state) {
    check_prompt("tiny-llama", 2, 7);
    check_prompt("tiny-llama", 2, 33);
    check_prompt("tiny-qwen2", 2, 5);
}

static void test_small_qwen2_bf16(void **state) {
    TU_REQUIRE_FIXTURE(dir, "small-qwen2");
    char golden[4200];
    snprintf(golden, sizeof golden, "%s/golden.safetensors", dir);
    int64_t T, npos, nref, nsteps, nstep;
    int32_t *ids = tu_load_ids(golden, "p0_input_ids", &T);
    int32_t *pos = tu_load_ids(golden, "p0_positions", &npos);
    float *ref = tu_load_f32(golden, "p0_logits_at_positions", &nref, NULL, NULL);
    int32_t *greedy = tu_load_ids(golden, "p0_greedy_ids", &nsteps);
    float *step_ref = tu_load_f32(golden, "p0_step_logits", &nstep, NULL, NULL);
    wick_model *m = load_on(dir, "cuda");
    wick_model_info info;
    wick_model_get_info(m, &info);
    assert_string_equal(info.weight_dtype, "BF16");
    const int V = info.n_vocab;
    assert_int_equal(nref, npos * V);
    wick_session *s = session(m, 64);
    float *logits = malloc(sizeof(float) * (size_t)T * V);
    eval_ok(s, ids, (int)T, WICK_LOGITS_ALL, logits);
    double err = 0;
    for (int i = 0; i < npos; i++) {
        const double e = tu_max_abs_diff(logits + (size_t)pos[i] * V, ref + (size_t)i * V, V);
        if (e > err) err = e;
    }
    printf("small-qwen2 [cuda]: logits at positions max abs err %.3g\n", err);
    assert_true(err <= TOL_LOGITS);
    float *last = malloc(sizeof(float) * V);
    memcpy(last, logits + (size_t)(T - 1) * V, sizeof(float) * V);
    double serr = 0;
    for (int t = 0; t < nsteps; t++) {
        const double e = tu_max_abs_diff(last, step_ref + (size_t)t * V, V);
        if (e > serr) serr = e;
        int tok = argmax(last, V);
        assert_int_equal(tok, greedy[t]);
        eval_ok(s, &tok, 1, WICK_LOGITS_LAST, last);
    }
    printf("small-qwen2 [cuda]: greedy ids match, step logits max abs err %.3g\n", serr);
    assert_true(serr <= TOL_LOGITS);
    free(last), free(logits);
    wick_session_free(s);
    wick_model_free(m);
    free(ids), free(pos), free(ref), free(greedy), free(step_ref);
    free(dir);
}

typedef struct act_ctx {
    const char *golden;
    int checked;
    double worst;
} act_ctx;

static void on_act(void *user, const char *name, int layer, const float *data, int rows,
                   int cols) {
    act_ctx *a = user;
    char key[96];
    if (layer < 0) snprintf(key, sizeof key, "p1_act_%s", name);
    else snprintf(key, sizeof key, "p1_act_layer%d_%s", layer, name);
    int64_t n;
    float *ref = tu_load_f32(a->golden, key, &n, NULL, NULL);
    assert_int_equal(n, (int64_t)rows * cols);
    const double e = tu_max_abs_diff(data, ref, n);
    if (e > TOL_ACT) fail_msg("%s: activation %s max abs err %.3g > %.0e", a->golden, key, e, TOL_ACT);
    if (e > a->worst) a->worst = e;
    a->checked++;
    free(ref);
}

static void check_activations(const char *fixture) {
    TU_REQUIRE_FIXTURE(dir, fixture);
    char golden[4200];
    snprintf(golden, sizeof golden, "%s/golden.safetensors", dir);
    wick_model *m = load_on(dir, "cuda");
    wick_session *s = session(m, 0);
    act_ctx a = {.golden = golden};
    session_set_trace(s, on_act, &a);
    int64_t T;
    int32_t *ids = tu_load_ids(golden, "p1_input_ids", &T);
    float *logits = malloc(sizeof(float) * (size_t)T * m->cfg.n_vocab);
    eval_ok(s, ids, (int)T, WICK_LOGITS_ALL, logits);
    assert_int_equal(a.checked, 2 + 5 * m->cfg.n_layer);
    printf("%s [cuda]: %d activations within %.0e (worst %.3g)\n", fixture, a.checked, TOL_ACT,
           a.worst);
    free(logits), free(ids);
    wick_session_free(s);
    wick_model_free(m);
    free(dir);
}

static void test_activations(void **state) {
    check_activations("tiny-qwen2");
    check_activations("tiny-llama");
}

/* ---- adapters ---- */

static void load_adapters(wick_model *m) {
    TU_REQUIRE_FIXTURE(lora, "tiny-qwen2-lora");
    char a[4200], b[4200];
    snprintf(a, sizeof a, "%s/adapter_a", lora);
    snprintf(b, sizeof b, "%s/adapter_b", lora);
    if (wick_adapter_load(m, a, "a") || wick_adapter_load(m, b, "b"))
        fail_msg("adapter: %s", wick_last_error());
    free(lora);
}

static void test_lora_golden(void **state) {
    TU_REQUIRE_FIXTURE(base, "tiny-qwen2");
    TU_REQUIRE_FIXTURE(lora, "tiny-qwen2-lora");
    char golden[4200], key[64];
    snprintf(golden, sizeof golden, "%s/golden.safetensors", lora);
    wick_model *m = load_on(base, "cuda");
    load_adapters(m);
    wick_session *s = session(m, 0);
    static const char *const names[2] = {"a", "b"};
    for (int p = 0; p < 3; p++)
        for (int k = 0; k < 2; k++) {
            int64_t T, n;
            snprintf(key, sizeof key, "p%d_input_ids", p);
            int32_t *ids = tu_load_ids(golden, key, &T);
            snprintf(key, sizeof key, "p%d_logits_adapter_%s", p, names[k]);
            float *ref = tu_load_f32(golden, key, &n, NULL, NULL);
            float *lg = malloc(sizeof(float) * (size_t)n);
            assert_int_equal(wick_session_set_adapter(s, names[k], 1.0f), WICK_OK);
            wick_session_reset(s);
            eval_ok(s, ids, (int)T, WICK_LOGITS_ALL, lg);
            const double e = tu_max_abs_diff(lg, ref, n);
            printf("[cuda] p%d adapter %s: max err %.3g\n", p, names[k], e);
            assert_true(e <= TOL_LOGITS);
            free(ids), free(ref), free(lg);
        }
    wick_session_free(s);
    wick_model_free(m);
    free(base), free(lora);
}

/* ---- engine: CUDA against the CPU ---- */

#define MAX_TOK 24
#define N_TOP 5

typedef struct rec {
    int n;
    int32_t id[MAX_TOK];
    float logit[MAX_TOK], top[MAX_TOK][N_TOP];
    wick_finish_reason finish;
} rec;

static bool on_tok(const wick_token *t, void *user) {
    rec *r = user;
    if (r->n < MAX_TOK && t->id >= 0) {
        r->id[r->n] = t->id;
        r->logit[r->n] = t->logit;
        for (int k = 0; k < N_TOP && k < t->n_top; k++) {
            r->top[r->n][k] = t->top[k].logprob;
        }
        r->n++;
    }
    if (t->finish != WICK_FINISH_NONE) r->finish = t->finish;
    return true;
}

typedef struct req {
    int32_t prompt[160];
    int n_prompt;
    wick_gen_params gp;
    const char *adapter;
    float scale;
} req;

static void run_engine(wick_model *m, const req *q, int n, rec *out) {
    wick_engine_params ep = wick_engine_params_default();
    ep.n_threads = 2;
    ep.kv_type = WICK_KV_F32;
    ep.n_ctx = 256;
    ep.max_seqs = 4;
    ep.n_batch = 48; /* prefill chunks beside decode rows; both matmul paths */
    wick_engine *e = NULL;
    if (wick_engine_create(m, &ep, &e) != WICK_OK) fail_msg("engine: %s", wick_last_error());
    memset(out, 0, sizeof *out * (size_t)n);
    for (int i = 0; i < n; i++) {
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
    wick_engine_free(e);
}

static void test_engine_vs_cpu(void **state) {
    TU_REQUIRE_FIXTURE(dir, "tiny-qwen2");
    wick_model *mc = load_on(dir, "cpu"), *mg = load_on(dir, "cuda");
    load_adapters(mc);
    load_adapters(mg);
    enum { N = 8 };
    static const char *const ads[] = {NULL, "a", "b", "a"};
    static const float scales[] = {0, 1.0f, 1.0f, 0.5f};
    req *q = calloc(N, sizeof *q);
    uint64_t x = 777;
    for (int i = 0; i < N; i++) {
        q[i].n_prompt = i % 3 == 0 ? 120 + i : 3 + 5 * i;
        for (int k = 0; k < q[i].n_prompt; k++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            q[i].prompt[k] = (int32_t)((x >> 33) % 1024);
        }
        q[i].gp = wick_gen_params_default();
        q[i].gp.temperature = 0;
        q[i].gp.max_tokens = 8 + 2 * i;
        q[i].gp.n_logprobs = N_TOP;
        q[i].gp.stop_on_eos = false;
        q[i].adapter = ads[i % 4];
        q[i].scale = scales[i % 4];
    }
    rec *cpu = calloc(N, sizeof *cpu), *gpu = calloc(N, sizeof *gpu);
    run_engine(mc, q, N, cpu);
    run_engine(mg, q, N, gpu);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        if (cpu[i].n != gpu[i].n || cpu[i].finish != gpu[i].finish)
            fail_msg("request %d: %d tokens on the CPU, %d on the GPU", i, cpu[i].n, gpu[i].n);
        for (int t = 0; t < cpu[i].n; t++) {
            if (cpu[i].id[t] != gpu[i].id[t])
                fail_msg("request %d token %d: id %d on the CPU, %d on the GPU", i, t,
                         cpu[i].id[t], gpu[i].id[t]);
            /* the k-th best log-probability, whichever id it belongs to (two alternatives
               closer than the rounding differences may trade places) */
            double e = fabs((double)cpu[i].logit[t] - gpu[i].logit[t]);
            for (int k = 0; k < N_TOP; k++)
                e = fmax(e, fabs((double)cpu[i].top[t][k] - gpu[i].top[t][k]));
            if (e > TOL_LOGITS)
                fail_msg("request %d token %d: logit / logprob differs by %.3g", i, t, e);
            worst = fmax(worst, e);
        }
    }
    printf("engine cuda vs cpu: %d requests, same greedy ids, logits within %.3g\n", N, worst);
    free(q), free(cpu), free(gpu);
    wick_model_free(mc);
    wick_model_free(mg);
    free(dir);
}

/* ---- what stays on the CPU ---- */

static void test_cpu_only(void **state) {
    TU_REQUIRE_FIXTURE(dir, "tiny-qwen2");
    wick_model *m = load_on(dir, "cuda");
    load_adapters(m);
    wick_trainer *tr = NULL;
    assert_int_equal(wick_trainer_create(m, "a", NULL, &tr), WICK_ERR_UNSUPPORTED);
    assert_non_null(strstr(wick_last_error(), "cuda:0"));
    assert_null(tr);
    wick_model *merged = NULL;
    assert_int_equal(wick_model_merge_adapter(m, "a", 1.0f, &merged), WICK_ERR_UNSUPPORTED);
    assert_null(merged);
    /* an index past the machine's devices is an argument error */
    wick_model_params mp = wick_model_params_default();
    mp.device = "cuda:99";
    wick_model *bad = NULL;
    assert_int_not_equal(wick_model_load(dir, &mp, &bad), WICK_OK);
    assert_null(bad);
    wick_model_free(m);
    free(dir);
}

int main(void) {
    unsetenv("WICK_DEVICE"); /* "cpu" below must mean the CPU */
    const kernel_table *K = NULL;
    const wick_status st = kernels_select_device("cuda", &K);
    if (st) {
        const char *req = getenv("WICK_REQUIRE_CUDA");
        if (st != WICK_ERR_UNSUPPORTED || (req && strcmp(req, "1") == 0)) {
            fprintf(stderr, "FAIL: test_cuda_model: no CUDA table: %s\n", wick_last_error());
            return 1;
        }
        printf("SKIP: test_cuda_model: %s\n", wick_last_error());
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_qwen2),      cmocka_unit_test(test_tiny_llama),
        cmocka_unit_test(test_chunked_prefill), cmocka_unit_test(test_small_qwen2_bf16),
        cmocka_unit_test(test_activations),     cmocka_unit_test(test_lora_golden),
        cmocka_unit_test(test_engine_vs_cpu),   cmocka_unit_test(test_cpu_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
