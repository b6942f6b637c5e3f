/* test_alloc_fail.c — allocation-failure injection: every public call survives any one
 * allocation failing.
 *
 * The program is linked with -Wl,--wrap for malloc, calloc, realloc, strdup, strndup,
 * aligned_alloc, posix_memalign and mmap, so every allocation libwick's own code makes comes
 * through the wrappers below (cJSON's too, through cJSON_InitHooks). A scenario (model load,
 * tokenizer load, session + evaluation, generation, adapter load, a training step, an engine
 * with requests, the server's request parsing) runs once to count its allocations, then once per N
 * with the Nth allocation failing (every N up to 120, then 120 more spread geometrically up
 * to the last), and must:
 *   - return an error (WICK_ERR_NOMEM, or a documented error whose message says so) or
 *     succeed — never crash, hang or touch freed memory (run under ASan in CI);
 *   - leave nothing allocated: every object is freed by the scenario, and LeakSanitizer at
 *     exit (CI's ASan build) reports any allocation that escaped;
 *   - leave the model usable: after a failed call on a model, the same call without failure
 *     succeeds.
 * Scenarios whose fixtures are missing skip (fail under CI=true). */
#include <math.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include <cjson/cJSON.h>

#include "server/server.h"
#include "testutil.h"

/* ---- the wrappers ----------------------------------------------------------------------- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t a, size_t b);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__real_aligned_alloc(size_t al, size_t n);
int __real_posix_memalign(void **p, size_t al, size_t n);
void *__real_mmap(void *a, size_t n, int prot, int flags, int fd, off_t off);

static atomic_long g_count;   /* allocations seen while armed */
static atomic_long g_fail_at; /* 1-based index of the allocation to fail; 0 = none */
static atomic_int g_armed;
static int g_bad;             /* runs that ended in a wrong error */

static bool fail_now(void) {
    if (!atomic_load(&g_armed)) return false;
    const long k = atomic_fetch_add(&g_count, 1) + 1;
    return k == atomic_load(&g_fail_at);
}

void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t a, size_t b) { return fail_now() ? NULL : __real_calloc(a, b); }
void *__wrap_realloc(void *p, size_t n) { return fail_now() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return fail_now() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) { return fail_now() ? NULL : __real_strndup(s, n); }
void *__wrap_aligned_alloc(size_t al, size_t n) {
    return fail_now() ? NULL : __real_aligned_alloc(al, n);
}
int __wrap_posix_memalign(void **p, size_t al, size_t n) {
    return fail_now() ? 12 /* ENOMEM */ : __real_posix_memalign(p, al, n);
}
void *__wrap_mmap(void *a, size_t n, int prot, int flags, int fd, off_t off) {
    /* only anonymous mappings are allocations; file mappings are reads */
    if ((flags & MAP_ANONYMOUS) && fail_now()) return MAP_FAILED;
    return __real_mmap(a, n, prot, flags, fd, off);
}

static void *cj_malloc(size_t n) { return __wrap_malloc(n); }
static void cj_free(void *p) { free(p); }

/* ---- the sweep -------------------------------------------------------------------------- */

/* A scenario: returns WICK_OK or the status of the call that failed. */
typedef wick_status (*scenario_fn)(void *user);

static long count_allocs(scenario_fn fn, void *user) {
    atomic_store(&g_count, 0);
    atomic_store(&g_fail_at, 0);
    atomic_store(&g_armed, 1);
    wick_status st = fn(user);
    atomic_store(&g_armed, 0);
    if (st != WICK_OK) fail_msg("scenario fails without injection: %s", wick_last_error());
    return atomic_load(&g_count);
}

/* Runs fn with the Nth allocation failing for N over the schedule; each run must end in OK
 * (the failure was absorbed: e.g. a fallback path) or an error that is WICK_ERR_NOMEM or
 * mentions memory. */
static void sweep(const char *name, scenario_fn fn, void *user) {
    const long total = count_allocs(fn, user);
    long runs = 0, errs = 0;
    const double ratio = total > 120 ? pow((double)total / 120.0, 1.0 / 120.0) : 2.0;
    for (long n = 1; n <= total;
         n = n < 120 ? n + 1 : (long)fmax((double)n + 1, ceil((double)n * ratio))) {
        atomic_store(&g_count, 0);
        atomic_store(&g_fail_at, n);
        atomic_store(&g_armed, 1);
        wick_status st = fn(user);
        atomic_store(&g_armed, 0);
        runs++;
        if (st == WICK_OK) continue;
        errs++;
        const char *msg = wick_last_error();
        if (st != WICK_ERR_NOMEM && !strstr(msg, "memory")) {
            fprintf(stderr, "%s: allocation %ld of %ld failed -> status %s, message \"%s\" "
                    "(expected WICK_ERR_NOMEM or a message about memory)\n", name, n, total,
                    wick_status_str(st), msg);
            g_bad++;
        }
    }
    /* and the scenario still works afterwards */
    atomic_store(&g_fail_at, 0);
    if (fn(user) != WICK_OK) fail_msg("%s: fails after the sweep: %s", name, wick_last_error());
    printf("%s: %ld allocations, %ld runs with one failing, %ld returned an error\n", name, total,
           runs, errs);
}

/* ---- scenarios -------------------------------------------------------------------------- */

typedef struct fx {
    char *model_dir, *lora_dir, *tok_dir;
    wick_model *model;   /* a model loaded outside the sweep, for the session scenarios */
    wick_tokenizer *tok; /* the same for the request-parsing scenario */
} fx;

static wick_status sc_model_load(void *u) {
    fx *f = u;
    wick_model *m = NULL;
    wick_status st = wick_model_load(f->model_dir, NULL, &m);
    wick_model_free(m);
    return st;
}

static wick_status sc_tokenizer(void *u) {
    fx *f = u;
    wick_tokenizer *t = NULL;
    wick_status st = wick_tokenizer_load(f->tok_dir, &t);
    if (st == WICK_OK) {
        int32_t ids[64];
        const char *txt = "Hello, wörld! 123 <|im_start|>user";
        int32_t n = wick_tokenize(t, txt, strlen(txt), true, ids, 64);
        if (n < 0) st = n == INT32_MIN ? WICK_ERR_NOMEM : WICK_ERR_BUFFER_TOO_SMALL;
        char buf[256];
        if (!st) st = wick_detokenize(t, ids, (size_t)n, false, buf, sizeof buf, NULL);
        char *out = NULL;
        wick_chat_message msg = {"user", "hi"};
        if (!st) st = wick_chat_render(t, &msg, 1, true, NULL, &out);
        wick_free(out);
    }
    wick_tokenizer_free(t);
    return st;
}

static wick_status sc_session(void *u) {
    fx *f = u;
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = 2;
    sp.n_ctx = 64;
    wick_session *s = NULL;
    wick_status st = wick_session_create(f->model, &sp, &s);
    float *logits = malloc(sizeof(float) * 1024);
    if (!logits && !st) st = WICK_ERR_NOMEM;
    int32_t ids[5] = {1, 2, 3, 4, 5};
    if (!st) st = wick_session_eval(s, ids, 5, WICK_LOGITS_LAST, logits);
    if (!st) {
        wick_gen_params gp = wick_gen_params_default();
        gp.max_tokens = 3;
        gp.repetition_penalty = 1.1f;
        wick_gen *g = NULL;
        st = wick_gen_start(s, ids, 5, &gp, &g);
        wick_token t;
        while (!st && (st = wick_gen_step(g, &t)) == WICK_OK && t.finish == WICK_FINISH_NONE) {}
        if (st == WICK_DONE) st = WICK_OK;
        wick_gen_free(g);
    }
    free(logits);
    wick_session_free(s);
    return st;
}

static wick_status sc_adapter(void *u) {
    fx *f = u;
    char a[4200];
    snprintf(a, sizeof a, "%s/adapter_a", f->lora_dir);
    wick_status st = wick_adapter_load(f->model, a, "a");
    if (st == WICK_OK) {
        wick_session *s = NULL;
        wick_session_params sp = wick_session_params_default();
        sp.n_threads = 1;
        sp.n_ctx = 32;
        st = wick_session_create(f->model, &sp, &s);
        if (!st) st = wick_session_set_adapter(s, "a", 1.0f);
        int32_t ids[3] = {7, 8, 9};
        float logits[1024];
        if (!st) st = wick_session_eval(s, ids, 3, WICK_LOGITS_LAST, logits);
        wick_session_free(s);
        wick_adapter_unload(f->model, "a");
    }
    return st;
}

static wick_status sc_train(void *u) {
    fx *f = u;
    wick_status st = wick_adapter_create(f->model, "t", 4, 8.0f, "q,v", 3);
    wick_trainer *tr = NULL;
    wick_train_params tp = wick_train_params_default();
    tp.n_threads = 1;
    if (!st) st = wick_trainer_create(f->model, "t", &tp, &tr);
    int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float loss;
    if (!st) st = wick_train_step(tr, ids, NULL, 1, 8, &loss);
    wick_trainer_free(tr);
    wick_adapter_unload(f->model, "t");
    return st;
}

static bool eng_cb(const wick_token *t, void *user) {
    (void)t;
    (*(int *)user)++;
    return true;
}

static wick_status sc_engine(void *u) {
    fx *f = u;
    wick_engine_params ep = wick_engine_params_default();
    ep.n_threads = 2;
    ep.max_seqs = 3;
    ep.n_ctx = 64;
    ep.n_batch = 8;
    wick_engine *e = NULL;
    wick_status st = wick_engine_create(f->model, &ep, &e);
    int got = 0;
    int32_t p[20];
    for (int i = 0; i < 20; i++) p[i] = i * 3 + 1;
    wick_gen_params gp = wick_gen_params_default();
    gp.max_tokens = 4;
    gp.stop_on_eos = false;
    for (int k = 0; !st && k < 4; k++) {
        wick_request r = {.prompt = p, .n_prompt = 10 + k * 3, .params = &gp, .on_token = eng_cb,
                          .user = &got};
        st = wick_engine_submit(e, &r, NULL);
    }
    for (int active = 1, n = 0; !st && active && n < 200; n++) st = wick_engine_step(e, &active);
    wick_engine_free(e);
    return st;
}

/* The server's request parsing (tokenizer, chat template, parameters): an allocation failure
 * is a 503 for the client, never a 400 blaming its request. */
static wick_status sc_serve_req(void *u) {
    fx *f = u;
    const wick_tokenizer *t = f->tok;
    wick_status st = WICK_OK;
    serve_ctx c;
    memset(&c, 0, sizeof c);
    c.tok = t;
    c.n_vocab = t ? wick_tokenizer_vocab_size(t) : 0;
    c.model_id = "m";
    static const char *bodies[2] = {
        "{\"prompt\": \"Hello there, how are you?\", \"max_tokens\": 4, \"stop\": [\"x\"], "
        "\"logit_bias\": {\"5\": -100}}",
        "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": "
        "\"user\", \"content\": \"Hi!\"}], \"stream\": true, \"logprobs\": true, "
        "\"top_logprobs\": 2}"};
    /* a parse that succeeds despite a failed allocation must give the same request */
    static int32_t ref[2][256];
    static int ref_n[2] = {-1, -1};
    for (int k = 0; !st && k < 2; k++) {
        serve_req r;
        if (!serve_req_parse(&c, bodies[k], strlen(bodies[k]), k == 1, &r)) {
            st = r.err_status == 503 ? WICK_ERR_NOMEM : WICK_ERR_INVALID_ARG;
            if (st != WICK_ERR_NOMEM)
                fprintf(stderr, "serve_req_parse: %d %s\n", r.err_status, r.err_msg);
        } else if (ref_n[k] < 0 && r.n_prompt <= 256) {
            ref_n[k] = r.n_prompt;
            memcpy(ref[k], r.prompt, sizeof(int32_t) * (size_t)r.n_prompt);
        } else if (r.n_prompt != ref_n[k] ||
                   memcmp(ref[k], r.prompt, sizeof(int32_t) * (size_t)r.n_prompt)) {
            fprintf(stderr, "serve_req_parse: a request parsed differently under an allocation "
                            "failure (%d ids, %d without)\n", r.n_prompt, ref_n[k]);
            st = WICK_ERR_INTERNAL;
        }
        serve_req_free(&r);
    }
    return st;
}

static void test_sweeps(void **state) {
    (void)state;
    TU_REQUIRE_FIXTURE(model_dir, "tiny-qwen2");
    TU_REQUIRE_FIXTURE(lora_dir, "tiny-qwen2-lora");
    TU_REQUIRE_FIXTURE(tok_dir, "tokenizers/qwen3");
    cJSON_Hooks hooks = {cj_malloc, cj_free};
    cJSON_InitHooks(&hooks);
    fx f = {model_dir, lora_dir, tok_dir, NULL, NULL};
    sweep("model load", sc_model_load, &f);
    assert_int_equal(wick_model_load(model_dir, NULL, &f.model), WICK_OK);
    sweep("session, eval, generation", sc_session, &f);
    sweep("adapter load and use", sc_adapter, &f);
    sweep("training step", sc_train, &f);
    sweep("engine with 4 requests", sc_engine, &f);
    sweep("tokenizer load, encode, decode, chat template", sc_tokenizer, &f);
    assert_int_equal(wick_tokenizer_load(tok_dir, &f.tok), WICK_OK);
    sweep("server request parse", sc_serve_req, &f);
    wick_tokenizer_free(f.tok);
    wick_model_free(f.model);
    cJSON_InitHooks(NULL);
    free(model_dir), free(lora_dir), free(tok_dir);
    if (g_bad) fail_msg("%d runs reported an allocation failure as something else", g_bad);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_sweeps)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
