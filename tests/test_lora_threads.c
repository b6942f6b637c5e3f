/* test_lora_threads.c — two threads generating (wick_gen, greedy) on two sessions of one model
 * with different adapters give the same tokens as each alone, while a third thread loads,
 * lists and unloads another adapter in the same registry. Meant to run under ThreadSanitizer
 * too (build with -DWICK_TSAN=ON). Uses $WICK_FIXTURES/tiny-qwen2-lora. */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>

#define N_NEW 24

typedef struct job {
    wick_model *m;
    const char *adapter;
    const int32_t *prompt;
    int n_prompt;
    int32_t out[N_NEW];
    int n_out;
    wick_status st;
} job;

static void run_job(job *j) {
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = 1;
    sp.n_ctx = 256;
    wick_session *s = NULL;
    j->st = wick_session_create(j->m, &sp, &s);
    if (j->st) return;
    if ((j->st = wick_session_set_adapter(s, j->adapter, 1.0f))) goto out;
    wick_gen_params gp = wick_gen_params_default();
    gp.temperature = 0;
    gp.max_tokens = N_NEW;
    gp.stop_on_eos = false;
    wick_gen *g = NULL;
    if ((j->st = wick_gen_start(s, j->prompt, j->n_prompt, &gp, &g))) goto out;
    wick_token t;
    j->n_out = 0;
    while ((j->st = wick_gen_step(g, &t)) == WICK_OK)
        if (t.id >= 0 && j->n_out < N_NEW) j->out[j->n_out++] = t.id;
    if (j->st == WICK_DONE) j->st = WICK_OK;
    wick_gen_free(g);
out:
    wick_session_free(s);
}

static void *thread_main(void *p) {
    run_job(p);
    return NULL;
}

typedef struct churn {
    wick_model *m;
    const char *dir;
    atomic_int stop;
    int rounds;
} churn;

static void *churn_main(void *p) {
    churn *c = p;
    while (!atomic_load(&c->stop) && c->rounds < 50) {
        if (wick_adapter_load(c->m, c->dir, "tmp") == WICK_OK) {
            const char *names[8];
            wick_adapters_list(c->m, names, 8);
            wick_adapter_unload(c->m, "tmp");
        }
        c->rounds++;
    }
    return NULL;
}

static void test_two_threads(void **state) {
    TU_REQUIRE_FIXTURE(dir, "tiny-qwen2-lora");
    char *base = tu_fixture_path("tiny-qwen2");
    char a[4200], b[4200], golden[4200];
    snprintf(a, sizeof a, "%s/adapter_a", dir);
    snprintf(b, sizeof b, "%s/adapter_b", dir);
    snprintf(golden, sizeof golden, "%s/golden.safetensors", dir);
    wick_model *m = NULL;
    wick_model_params mp = wick_model_params_default();
    assert_int_equal(wick_model_load(base, &mp, &m), WICK_OK);
    assert_int_equal(wick_adapter_load(m, a, "a"), WICK_OK);
    assert_int_equal(wick_adapter_load(m, b, "b"), WICK_OK);
    int64_t T;
    int32_t *ids = tu_load_ids(golden, "p1_input_ids", &T);

    job solo[2] = {{.m = m, .adapter = "a", .prompt = ids, .n_prompt = (int)T},
                   {.m = m, .adapter = "b", .prompt = ids, .n_prompt = (int)T}};
    for (int i = 0; i < 2; i++) {
        run_job(&solo[i]);
        assert_int_equal(solo[i].st, WICK_OK);
        assert_int_equal(solo[i].n_out, N_NEW);
    }
    for (int round = 0; round < 3; round++) {
        job par[2] = {solo[0], solo[1]};
        churn c = {.m = m, .dir = b};
        atomic_init(&c.stop, 0);
        pthread_t th[3];
        for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&th[i], NULL, thread_main, &par[i]), 0);
        assert_int_equal(pthread_create(&th[2], NULL, churn_main, &c), 0);
        for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
        atomic_store(&c.stop, 1);
        pthread_join(th[2], NULL);
        for (int i = 0; i < 2; i++) {
            assert_int_equal(par[i].st, WICK_OK);
            assert_int_equal(par[i].n_out, N_NEW);
            assert_memory_equal(par[i].out, solo[i].out, sizeof(int32_t) * N_NEW);
        }
        printf("round %d: both threads match their solo runs (%d churn rounds)\n", round, c.rounds);
    }
    free(ids);
    free(base);
    free(dir);
    wick_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_two_threads)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
