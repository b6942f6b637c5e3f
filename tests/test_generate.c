/* test_generate.c — the generator: greedy goldens through the pull API, seeds, EOS / stop ids /
 * stop strings (split across 1-3 tokens), streamed text == batch decode, min/max tokens,
 * context limits, cancellation (callback, other thread), and the async stream (same tokens as
 * the pull API, poll()able fd, early close). Models: the HF goldens, and a seeded random model
 * with the real Qwen3 tokenizer written into a temp dir. */
#include "testutil.h"

#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include "model/random.h"

static wick_model *load(const char *dir) {
    wick_model *m = NULL;
    wick_model_params mp = wick_model_params_default();
    if (wick_model_load(dir, &mp, &m) != WICK_OK) fail_msg("load %s: %s", dir, wick_last_error());
    return m;
}

static wick_session *session(const wick_model *m, int n_ctx) {
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = 2;
    sp.n_ctx = n_ctx;
    wick_session *s = NULL;
    if (wick_session_create(m, &sp, &s) != WICK_OK) fail_msg("session: %s", wick_last_error());
    return s;
}

/* Runs the pull API to the end; returns the number of tokens with an id and fills ids/text. */
typedef struct run {
    int32_t ids[512];
    int n;
    char text[16384];
    size_t text_len;
    wick_finish_reason finish;
    bool eos_flag_last;
    int generated;
} run;

static void run_gen(wick_session *s, const int32_t *prompt, int n, const wick_gen_params *p,
                    run *r) {
    memset(r, 0, sizeof *r);
    wick_gen *g;
    if (wick_gen_start(s, prompt, n, p, &g) != WICK_OK) fail_msg("start: %s", wick_last_error());
    wick_token t;
    wick_status st;
    while ((st = wick_gen_step(g, &t)) == WICK_OK) {
        if (t.id >= 0) r->ids[r->n++] = t.id;
        assert_true(r->text_len + t.text_len < sizeof r->text);
        assert_int_equal(t.text[t.text_len], 0); /* NUL-terminated (text may hold NUL bytes) */
        memcpy(r->text + r->text_len, t.text, t.text_len);
        r->text_len += t.text_len;
        if (t.finish) {
            r->finish = t.finish;
            r->eos_flag_last = t.is_eos;
            r->generated = t.generated_tokens;
        }
    }
    if (st != WICK_DONE) fail_msg("step: %s: %s", wick_status_str(st), wick_last_error());
    assert_int_equal(wick_gen_step(g, &t), WICK_DONE);
    wick_gen_free(g);
}

static void test_greedy_goldens(void **state) {
    const char *fixtures[] = {"tiny-llama", "tiny-qwen2"};
    for (int f = 0; f < 2; f++) {
        TU_REQUIRE_FIXTURE(dir, fixtures[f]);
        char golden[4200], key[64];
        snprintf(golden, sizeof golden, "%s/golden.safetensors", dir);
        wick_model *m = load(dir);
        wick_session *s = session(m, 0);
        for (int pi = 0; pi < 3; pi++) {
            int64_t T, G;
            snprintf(key, sizeof key, "p%d_input_ids", pi);
            int32_t *ids = tu_load_ids(golden, key, &T);
            snprintf(key, sizeof key, "p%d_greedy_ids", pi);
            int32_t *greedy = tu_load_ids(golden, key, &G);
            wick_gen_params p = wick_gen_params_default();
            p.temperature = 0;
            p.max_tokens = (int)G;
            run r;
            run_gen(s, ids, (int)T, &p, &r);
            assert_int_equal(r.n, G);
            assert_memory_equal(r.ids, greedy, sizeof(int32_t) * G);
            assert_int_equal(r.finish, WICK_FINISH_LENGTH);
            free(ids);
            free(greedy);
        }
        wick_session_free(s);
        wick_model_free(m);
        free(dir);
    }
}

/* A random 2-layer model with the real Qwen3 tokenizer, shared by the text tests. */
static char *g_dir;
static wick_model *g_model;

static int setup_text_model(void **state) {
    if (!tu_fixture_exists("tokenizers/qwen3/tokenizer.json")) return 0;
    char *tok = tu_fixture_path("tokenizers/qwen3");
    g_dir = tu_mkdtemp();
    if (random_model_write("tiny", g_dir, 7, DT_F32, tok) != WICK_OK) {
        fprintf(stderr, "random model: %s\n", wick_last_error());
        free(tok);
        return -1;
    }
    free(tok);
    g_model = load(g_dir);
    return 0;
}

static int teardown_text_model(void **state) {
    wick_model_free(g_model);
    if (g_dir) tu_rmdir_rf(g_dir);
    free(g_dir);
    return 0;
}

#define REQUIRE_TEXT_MODEL()                                                          \
    do {                                                                              \
        if (!g_model) {                                                               \
            if (tu_ci()) fail_msg("tokenizers/qwen3 fixture missing under CI=true");  \
            skip();                                                                   \
        }                                                                             \
    } while (0)

static const int32_t k_prompt[] = {785, 6722, 315, 9625, 374}; /* any valid ids */

static wick_gen_params sampled(uint64_t seed, int n) {
    wick_gen_params p = wick_gen_params_default();
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = seed;
    p.max_tokens = n;
    p.stop_on_eos = false;
    return p;
}

static bool valid_utf8(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + len > n) return false;
        for (int k = 1; k < len; k++)
            if (((unsigned char)s[i + k] >> 6) != 2) return false;
        i += len;
    }
    return true;
}

static void test_seed_and_text(void **state) {
    REQUIRE_TEXT_MODEL();
    wick_session *s = session(g_model, 512);
    const wick_tokenizer *tok = wick_model_tokenizer(g_model);
    assert_non_null(tok);
    run a, b, c;
    wick_gen_params p = sampled(1234, 40);
    run_gen(s, k_prompt, 5, &p, &a);
    run_gen(s, k_prompt, 5, &p, &b);
    assert_int_equal(a.n, 40);
    assert_memory_equal(a.ids, b.ids, sizeof(int32_t) * 40);
    p.seed = 99;
    run_gen(s, k_prompt, 5, &p, &c);
    assert_memory_not_equal(a.ids, c.ids, sizeof(int32_t) * 40);
    /* streamed text == batch decode of the ids, and valid UTF-8 */
    char batch[16384];
    size_t blen;
    int32_t known[512];
    int nk = 0;
    for (int i = 0; i < a.n; i++) /* ids past the tokenizer's vocabulary have no text */
        if (a.ids[i] < wick_tokenizer_vocab_size(tok)) known[nk++] = a.ids[i];
    assert_int_equal(wick_detokenize(tok, known, nk, true, batch, sizeof batch, &blen), WICK_OK);
    assert_int_equal(blen, a.text_len);
    assert_memory_equal(batch, a.text, blen);
    assert_true(valid_utf8(a.text, a.text_len));
    wick_session_free(s);
}

/* Multi-byte characters split across tokens: only the byte-level tokens for the bytes of "é"
 * (C3 A9) and "😀" (F0 9F 98 80) can be sampled, in random order, so characters are split
 * across tokens and often left incomplete. Every emitted piece must be valid UTF-8 and the
 * concatenation must equal the batch decode (incomplete sequences become U+FFFD). */
static void test_utf8_split_across_tokens(void **state) {
    REQUIRE_TEXT_MODEL();
    wick_session *s = session(g_model, 512);
    const wick_tokenizer *tok = wick_model_tokenizer(g_model);
    const char *pieces[] = {"\xc3", "\xa9", "\xf0", "\x9f", "\x98", "\x80"};
    wick_logit_bias bias[6];
    for (int i = 0; i < 6; i++) {
        int32_t ids[4];
        int32_t n = wick_tokenize(tok, pieces[i], 1, false, ids, 4);
        assert_int_equal(n, 1); /* each single byte is one byte-level token */
        bias[i] = (wick_logit_bias){ids[0], 1000.0f};
    }
    for (uint64_t seed = 1; seed <= 20; seed++) {
        wick_gen_params p = sampled(seed, 24);
        p.logit_bias = bias;
        p.n_logit_bias = 6;
        wick_gen *g;
        assert_int_equal(wick_gen_start(s, k_prompt, 5, &p, &g), WICK_OK);
        char text[4096];
        size_t tl = 0;
        int32_t ids[64];
        int n = 0;
        wick_token t;
        while (wick_gen_step(g, &t) == WICK_OK) {
            if (t.id >= 0) ids[n++] = t.id;
            assert_true(valid_utf8(t.text, t.text_len));
            memcpy(text + tl, t.text, t.text_len);
            tl += t.text_len;
        }
        wick_gen_free(g);
        char batch[4096];
        size_t bl;
        assert_int_equal(wick_detokenize(tok, ids, n, true, batch, sizeof batch, &bl), WICK_OK);
        assert_int_equal(tl, bl);
        assert_memory_equal(text, batch, bl);
    }
    wick_session_free(s);
}

/* Stop strings cut from the natural output so they span 1, 2 and 3 tokens. */
static void test_stop_strings(void **state) {
    REQUIRE_TEXT_MODEL();
    wick_session *s = session(g_model, 512);
    const wick_tokenizer *tok = wick_model_tokenizer(g_model);
    wick_gen_params p = sampled(5, 48);
    run full;
    run_gen(s, k_prompt, 5, &p, &full);
    /* token boundaries in the text */
    size_t bound[64];
    bound[0] = 0;
    int32_t known[64];
    int nk = 0;
    for (int i = 0; i < full.n; i++) {
        char buf[8192];
        size_t len;
        if (full.ids[i] < wick_tokenizer_vocab_size(tok)) known[nk++] = full.ids[i];
        assert_int_equal(wick_detokenize(tok, known, nk, true, buf, sizeof buf, &len), WICK_OK);
        bound[i + 1] = len;
    }
    int tested = 0;
    for (int span = 1; span <= 3; span++) {
        for (int start = 4; start + span < full.n && tested < 12 * span; start += 3) {
            /* from the middle of token `start` to the middle of token start+span-1 */
            size_t a = bound[start] + (bound[start + 1] - bound[start]) / 2;
            size_t e = span == 1 ? bound[start + 1]
                                 : bound[start + span - 1] + (bound[start + span] - bound[start + span - 1] + 1) / 2;
            if (e <= a) continue;
            char stop[512];
            snprintf(stop, sizeof stop, "%.*s", (int)(e - a), full.text + a);
            if (!valid_utf8(stop, strlen(stop))) continue;
            const char *first = strstr(full.text, stop);
            size_t expect = (size_t)(first - full.text);
            const char *stops[] = {stop};
            wick_gen_params q = p;
            q.stop_strings = stops;
            q.n_stop_strings = 1;
            run r;
            run_gen(s, k_prompt, 5, &q, &r);
            assert_int_equal(r.finish, WICK_FINISH_STOP_STRING);
            assert_int_equal(r.text_len, expect);
            assert_memory_equal(r.text, full.text, expect);
            tested++;
        }
    }
    printf("stop strings checked: %d\n", tested);
    assert_true(tested >= 6);
    wick_session_free(s);
}

static void test_eos_stop_ids_and_lengths(void **state) {
    REQUIRE_TEXT_MODEL();
    wick_session *s = session(g_model, 64);
    wick_gen_params p = sampled(11, 20);
    run full;
    run_gen(s, k_prompt, 5, &p, &full);
    int32_t target = full.ids[6];
    int first = 0;
    while (full.ids[first] != target) first++;
    /* as an EOS id */
    wick_gen_params q = p;
    q.stop_on_eos = true;
    q.eos_ids = &target;
    q.n_eos_ids = 1;
    run r;
    run_gen(s, k_prompt, 5, &q, &r);
    assert_int_equal(r.finish, WICK_FINISH_EOS);
    assert_true(r.eos_flag_last);
    assert_int_equal(r.n, first + 1);
    assert_int_equal(r.ids[first], target);
    /* ignored when stop_on_eos is false */
    q.stop_on_eos = false;
    run_gen(s, k_prompt, 5, &q, &r);
    assert_int_equal(r.finish, WICK_FINISH_LENGTH);
    assert_int_equal(r.n, 20);
    /* as a stop id */
    q = p;
    q.stop_ids = &target;
    q.n_stop_ids = 1;
    run_gen(s, k_prompt, 5, &q, &r);
    assert_int_equal(r.finish, WICK_FINISH_STOP_TOKEN);
    assert_int_equal(r.n, first + 1);
    /* min_tokens bans it before then */
    q.min_tokens = first + 2;
    run_gen(s, k_prompt, 5, &q, &r);
    assert_true(r.n >= first + 2);
    for (int i = 0; i < first + 1; i++) assert_int_not_equal(r.ids[i], target);
    /* max_tokens = 0: until the context (64) is full */
    q = p;
    q.max_tokens = 0;
    run_gen(s, k_prompt, 5, &q, &r);
    assert_int_equal(r.finish, WICK_FINISH_LENGTH);
    assert_int_equal(r.n, 64 - 5 + 1);
    assert_int_equal(r.generated, 64 - 5 + 1);
    wick_session_free(s);
}

static void test_bad_starts(void **state) {
    REQUIRE_TEXT_MODEL();
    wick_session *s = session(g_model, 16);
    wick_gen *g = NULL;
    wick_gen_params p = wick_gen_params_default();
    assert_int_equal(wick_gen_start(s, k_prompt, 0, &p, &g), WICK_ERR_INVALID_ARG);
    assert_null(g);
    int32_t big[17] = {0};
    assert_int_equal(wick_gen_start(s, big, 17, &p, &g), WICK_ERR_CONTEXT_FULL);
    int32_t bad = 1 << 30;
    assert_int_equal(wick_gen_start(s, &bad, 1, &p, &g), WICK_ERR_INVALID_ARG);
    p.temperature = -1;
    assert_int_equal(wick_gen_start(s, k_prompt, 5, &p, &g), WICK_ERR_INVALID_ARG);
    assert_non_null(strstr(wick_last_error(), "temperature"));
    p = wick_gen_params_default();
    p.top_p = 1.5f;
    assert_int_equal(wick_gen_start(s, k_prompt, 5, &p, &g), WICK_ERR_INVALID_ARG);
    p = wick_gen_params_default();
    const char *empty[] = {""};
    p.stop_strings = empty;
    p.n_stop_strings = 1;
    assert_int_equal(wick_gen_start(s, k_prompt, 5, &p, &g), WICK_ERR_INVALID_ARG);
    /* the prompt fills the context exactly: one token can still be sampled */
    int32_t full[16] = {0};
    p = sampled(1, 10);
    run r;
    run_gen(s, full, 16, &p, &r);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.finish, WICK_FINISH_LENGTH);
    wick_session_free(s);
}

/* A second generation on the same session reuses the cached prefix of the prompt: same tokens
 * as a fresh session, cached_tokens reported, and nothing reused after an adapter switch or
 * with reuse_prefix off. */
static void test_prefix_reuse(void **state) {
    REQUIRE_TEXT_MODEL();
    wick_session *s = session(g_model, 512), *fresh = session(g_model, 512);
    wick_gen_params p = wick_gen_params_default();
    p.temperature = 0;
    p.max_tokens = 12;
    p.stop_on_eos = false;
    int32_t conv[64];
    memcpy(conv, k_prompt, sizeof k_prompt);
    run r1, r2, ref;
    run_gen(s, conv, 5, &p, &r1);
    /* next "turn": the previous prompt + its reply + 3 more ids */
    int n = 5;
    memcpy(conv + n, r1.ids, sizeof(int32_t) * r1.n);
    n += r1.n;
    conv[n++] = 11; conv[n++] = 22; conv[n++] = 33;
    wick_gen *g;
    assert_int_equal(wick_gen_start(s, conv, n, &p, &g), WICK_OK);
    wick_token t;
    int cached = -1, k = 0;
    int32_t ids[64];
    while (wick_gen_step(g, &t) == WICK_OK) {
        if (t.id >= 0) ids[k++] = t.id;
        if (t.finish) cached = t.cached_tokens;
    }
    wick_gen_free(g);
    /* the last reply token was sampled but never fed, so the cache holds 5 + 11 ids */
    assert_int_equal(cached, 5 + r1.n - 1);
    run_gen(fresh, conv, n, &p, &ref);
    assert_int_equal(k, ref.n);
    assert_memory_equal(ids, ref.ids, sizeof(int32_t) * k);
    /* reuse off: nothing cached */
    p.reuse_prefix = false;
    assert_int_equal(wick_gen_start(s, conv, n, &p, &g), WICK_OK);
    while (wick_gen_step(g, &t) == WICK_OK)
        if (t.finish) cached = t.cached_tokens;
    wick_gen_free(g);
    assert_int_equal(cached, 0);
    /* the same prompt twice: all but the last id reused */
    p.reuse_prefix = true;
    run_gen(s, conv, n, &p, &r2);
    assert_memory_equal(r2.ids, ref.ids, sizeof(int32_t) * ref.n);
    (void)r2;
    wick_session_free(fresh);
    wick_session_free(s);
}

typedef struct cb_ctx {
    int calls, stop_after;
    int32_t ids[64];
} cb_ctx;

static bool on_tok(const wick_token *t, void *user) {
    cb_ctx *c = user;
    c->ids[c->calls++] = t->id;
    return c->calls < c->stop_after;
}

static void test_callback_and_cancel(void **state) {
    REQUIRE_TEXT_MODEL();
    wick_session *s = session(g_model, 256);
    wick_gen_params p = sampled(3, 30);
    run ref;
    run_gen(s, k_prompt, 5, &p, &ref);
    cb_ctx c = {.stop_after = 1000};
    assert_int_equal(wick_generate(s, k_prompt, 5, &p, on_tok, &c), WICK_OK);
    assert_int_equal(c.calls, 30);
    assert_memory_equal(c.ids, ref.ids, sizeof(int32_t) * 30);
    cb_ctx d = {.stop_after = 7};
    assert_int_equal(wick_generate(s, k_prompt, 5, &p, on_tok, &d), WICK_OK);
    assert_int_equal(d.calls, 7);
    /* cancel through the pull API */
    wick_gen *g;
    assert_int_equal(wick_gen_start(s, k_prompt, 5, &p, &g), WICK_OK);
    wick_token t;
    assert_int_equal(wick_gen_step(g, &t), WICK_OK);
    wick_gen_cancel(g);
    assert_int_equal(wick_gen_step(g, &t), WICK_OK);
    assert_int_equal(t.finish, WICK_FINISH_CANCELLED);
    assert_int_equal(t.id, -1);
    assert_int_equal(t.generated_tokens, 1);
    assert_int_equal(wick_gen_step(g, &t), WICK_DONE);
    wick_gen_free(g);
    wick_session_free(s);
}

static void test_stream_matches_pull(void **state) {
    REQUIRE_TEXT_MODEL();
    wick_session *s = session(g_model, 512);
    wick_gen_params p = sampled(77, 300); /* more tokens than the ring holds */
    run ref;
    run_gen(s, k_prompt, 5, &p, &ref);
    wick_stream *st;
    assert_int_equal(wick_stream_open(s, k_prompt, 5, &p, &st), WICK_OK);
    int fd = wick_stream_fd(st);
    assert_true(fd >= 0);
    usleep(20000); /* let the worker run ahead so the ring fills and blocks */
    int n = 0;
    char text[16384];
    size_t tl = 0;
    wick_token t;
    wick_status rc;
    wick_finish_reason fin = WICK_FINISH_NONE;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        assert_true(poll(&pfd, 1, 10000) == 1);
        rc = wick_stream_next(st, &t, 0);
        if (rc != WICK_OK) break;
        if (t.id >= 0) {
            assert_true(n < 300);
            assert_int_equal(t.id, ref.ids[n]);
            n++;
        }
        memcpy(text + tl, t.text, t.text_len);
        tl += t.text_len;
        if (t.finish) fin = t.finish;
    }
    assert_int_equal(rc, WICK_DONE);
    assert_int_equal(n, 300);
    assert_int_equal(fin, WICK_FINISH_LENGTH);
    assert_int_equal(tl, ref.text_len);
    assert_memory_equal(text, ref.text, tl);
    assert_int_equal(wick_stream_next(st, &t, 0), WICK_DONE);
    wick_stream_close(st);
    wick_session_free(s);
}

static void *cancel_later(void *arg) {
    usleep(30000);
    wick_stream_cancel(arg);
    return NULL;
}

static void test_stream_cancel_and_early_close(void **state) {
    REQUIRE_TEXT_MODEL();
    wick_session *s = session(g_model, 4096);
    wick_gen_params p = sampled(5, 0); /* until the context is full: must be cancelled */
    wick_stream *st;
    assert_int_equal(wick_stream_open(s, k_prompt, 5, &p, &st), WICK_OK);
    pthread_t th;
    pthread_create(&th, NULL, cancel_later, st);
    wick_token t;
    wick_status rc;
    wick_finish_reason fin = WICK_FINISH_NONE;
    int n = 0;
    while ((rc = wick_stream_next(st, &t, -1)) == WICK_OK) {
        n++;
        if (t.finish) fin = t.finish;
    }
    pthread_join(th, NULL);
    assert_int_equal(rc, WICK_DONE);
    assert_int_equal(fin, WICK_FINISH_CANCELLED);
    wick_stream_close(st);
    /* timeout, then close while the worker is still running */
    p = sampled(6, 2000);
    assert_int_equal(wick_stream_open(s, k_prompt, 5, &p, &st), WICK_OK);
    rc = wick_stream_next(st, &t, 0);
    assert_true(rc == WICK_OK || rc == WICK_ERR_TIMEOUT);
    wick_stream_close(st);
    /* open and close without reading anything */
    assert_int_equal(wick_stream_open(s, k_prompt, 5, &p, &st), WICK_OK);
    wick_stream_close(st);
    wick_session_free(s);
    (void)n;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_goldens),
        cmocka_unit_test(test_seed_and_text),
        cmocka_unit_test(test_utf8_split_across_tokens),
        cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_eos_stop_ids_and_lengths),
        cmocka_unit_test(test_bad_starts),
        cmocka_unit_test(test_prefix_reuse),
        cmocka_unit_test(test_callback_and_cancel),
        cmocka_unit_test(test_stream_matches_pull),
        cmocka_unit_test(test_stream_cancel_and_early_close),
    };
    return cmocka_run_group_tests(tests, setup_text_model, teardown_text_model);
}
