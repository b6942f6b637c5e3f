/* test_server.c — end-to-end tests of `wick serve`: the built wick binary runs as a child
 * process on a free loopback port (--port 0; the port is read from its stdout) over a random
 * tiny model with the qwen3 tokenizer fixture, and plain-socket HTTP/1.1 requests check
 * health, models, greedy completions against `wick generate`, SSE streams against the
 * non-streamed text, chat, stop strings, OpenAI errors (400/404/405/413/503) and that a client
 * hanging up mid-stream frees its slot. Every wait is bounded; children are killed at the end.
 * Skips (fails under CI=true) when the fixture is missing or the wick binary has no server. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "serverutil.h"

#include "lora/lora.h"


static char *g_dir, *g_model;   /* temp dir, model folder inside it */
static pid_t g_pid = -1;        /* server A: --parallel 1, default queue */
static int g_port;
static const char *g_skip;      /* why the tests skip, or NULL */

/* ---- setup -------------------------------------------------------------------------------- */

static int group_setup(void **state) {
    (void)state;
    if ((g_skip = su_tiny_model(&g_dir, &g_model))) return tu_ci() ? -1 : 0;
    const char *extra[] = {"--ctx", "1024", NULL};
    if ((g_pid = su_start_server(g_model, extra, &g_port)) < 0) {
        g_skip = "`wick serve` did not start (built without libmicrohttpd or not registered)";
        return tu_ci() ? -1 : 0;
    }
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    int rc = 0;
    if (g_pid > 0) { /* a clean SIGTERM shutdown exits 0 (and leak-free under ASan) */
        kill(g_pid, SIGTERM);
        int st = su_wait_child(g_pid, 60000);
        if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
            fprintf(stderr, "wick serve did not shut down cleanly (wait status %d)\n", st);
            rc = -1;
        }
    }
    if (g_dir) tu_rmdir_rf(g_dir);
    free(g_dir);
    free(g_model);
    return rc;
}

#define NEED_SERVER()                                       \
    do {                                                    \
        if (g_skip) {                                       \
            fprintf(stderr, "SKIP: %s\n", g_skip);          \
            skip();                                         \
        }                                                   \
    } while (0)

/* ---- tests -------------------------------------------------------------------------------- */

static void test_health_and_models(void **state) {
    (void)state;
    NEED_SERVER();
    su_resp r = su_http(g_port, "GET", "/health", NULL);
    assert_int_equal(r.status, 200);
    cJSON *j = su_json_of(&r);
    assert_string_equal(su_jstr(j, "status", NULL), "ok");
    cJSON_Delete(j);
    free(r.raw);
    r = su_http(g_port, "GET", "/v1/models", NULL);
    assert_int_equal(r.status, 200);
    j = su_json_of(&r);
    assert_string_equal(su_jstr(j, "object", NULL), "list");
    const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "data"), 0);
    assert_string_equal(su_jstr(m, "id", NULL), "model");
    assert_string_equal(su_jstr(m, "object", NULL), "model");
    cJSON_Delete(j);
    free(r.raw);
}

/* Runs `wick generate` with the given options and returns its stdout. */
static char *run_generate(const char *const opts[]) {
    char *argv[24] = {WICK_BIN, "generate", "-m", g_model, "-t", "1", "--temp", "0"};
    int n = 8;
    for (int i = 0; opts[i]; i++) argv[n++] = (char *)opts[i];
    argv[n] = NULL;
    int fd;
    pid_t pid = su_spawn(argv, &fd);
    char *out = su_read_to_eof(fd, 120000);
    close(fd);
    assert_int_equal(su_wait_child(pid, 60000), 0);
    return out;
}

static void test_completion_matches_generate(void **state) {
    (void)state;
    NEED_SERVER();
    char finish[16];
    int ntok = 0;
    char *text = su_complete(g_port, "/v1/completions",
                          "{\"prompt\":\"Hello world\",\"max_tokens\":12,\"temperature\":0}",
                          finish, &ntok);
    assert_true(ntok >= 1 && ntok <= 12);
    if (ntok == 12) assert_string_equal(finish, "length");
    const char *opts[] = {"-p", "Hello world", "-n", "12", NULL};
    char *cli = run_generate(opts);
    size_t n = strlen(text);
    assert_true(strlen(cli) == n + 1 && cli[n] == '\n'); /* generate ends with a newline */
    assert_memory_equal(cli, text, n);
    free(cli);
    /* the same prompt given as token ids gives the same text */
    char *ids_text = su_complete(g_port, "/completions",
                              "{\"prompt\":[9707,1879],\"max_tokens\":12,\"temperature\":0}",
                              NULL, NULL);
    assert_string_equal(ids_text, text);
    free(ids_text);
    free(text);
}

static void test_stream_equals_nonstream(void **state) {
    (void)state;
    NEED_SERVER();
    static const char *const bodies[][2] = {
        {"/v1/completions", "{\"prompt\":\"Once upon a time\",\"max_tokens\":10,"
                            "\"temperature\":0%s}"},
        {"/v1/chat/completions", "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief\"},"
                                 "{\"role\":\"user\",\"content\":\"Hi there\"}],"
                                 "\"max_tokens\":10,\"temperature\":0%s}"},
    };
    for (int i = 0; i < 2; i++) {
        char plain[512], streamed[512], f1[16], f2[16];
        snprintf(plain, sizeof plain, bodies[i][1], "");
        snprintf(streamed, sizeof streamed, bodies[i][1], ",\"stream\":true");
        char *a = su_complete(g_port, bodies[i][0], plain, f1, NULL);
        char *b = su_complete_stream(g_port, bodies[i][0], streamed, f2);
        assert_string_equal(a, b);
        assert_string_equal(f1, f2);
        free(a);
        free(b);
    }
}

static void test_chat_matches_generate(void **state) {
    (void)state;
    NEED_SERVER();
    su_resp r = su_http(g_port, "POST", "/v1/chat/completions",
                  "{\"messages\":[{\"role\":\"user\",\"content\":\"What is 2+2?\"}],"
                  "\"max_tokens\":6,\"temperature\":0}");
    assert_int_equal(r.status, 200);
    cJSON *j = su_json_of(&r);
    assert_string_equal(su_jstr(j, "object", NULL), "chat.completion");
    const cJSON *c = su_choice0(j);
    assert_string_equal(su_jstr(c, "message", "role"), "assistant");
    const char *content = su_jstr(c, "message", "content");
    assert_non_null(content);
    assert_non_null(su_jstr(c, "finish_reason", NULL));
    const char *opts[] = {"--chat", "-p", "What is 2+2?", "-n", "6", NULL};
    char *cli = run_generate(opts);
    size_t n = strlen(content);
    assert_true(strlen(cli) == n + 1);
    assert_memory_equal(cli, content, n);
    free(cli);
    cJSON_Delete(j);
    free(r.raw);
}

static void test_stop_strings(void **state) {
    (void)state;
    NEED_SERVER();
    char *full = su_complete(g_port, "/v1/completions",
                          "{\"prompt\":\"Hello world\",\"max_tokens\":12,\"temperature\":0}",
                          NULL, NULL);
    size_t n = strlen(full);
    if (n < 6) {
        fprintf(stderr, "SKIP: the greedy text is too short for a stop string\n");
        free(full);
        skip();
    }
    /* a stop string taken from the middle of the text: the answer is the text before its
       first occurrence, finish "stop", streamed or not, string or array form */
    char stop[4] = {0};
    memcpy(stop, full + n / 2, 3);
    size_t cut = (size_t)(strstr(full, stop) - full);
    for (int s = 0; s < 2; s++) {
        char body[256], finish[16];
        snprintf(body, sizeof body,
                 "{\"prompt\":\"Hello world\",\"max_tokens\":12,\"temperature\":0,"
                 "\"stop\":%s\"%s\"%s%s}", s ? "[\"zzzq\"," : "", stop, s ? "]" : "",
                 s ? ",\"stream\":true" : "");
        char *t = s ? su_complete_stream(g_port, "/v1/completions", body, finish)
                    : su_complete(g_port, "/v1/completions", body, finish, NULL);
        assert_int_equal(strlen(t), cut);
        assert_memory_equal(t, full, cut);
        assert_string_equal(finish, "stop");
        free(t);
    }
    free(full);
}

static void expect_error(int port, const char *method, const char *path, const char *body,
                         int status, const char *param) {
    su_resp r = su_http(port, method, path, body);
    if (r.status != status) fail_msg("%s %s: %d, wanted %d: %s", method, path, r.status, status, r.body);
    cJSON *j = su_json_of(&r);
    const cJSON *e = cJSON_GetObjectItem(j, "error");
    assert_non_null(e);
    const char *msg = su_jstr(e, "message", NULL);
    assert_true(msg && *msg);
    assert_non_null(su_jstr(e, "type", NULL));
    if (param) assert_string_equal(su_jstr(e, "param", NULL), param);
    /* an overloaded server tells the client when to come back */
    if (status == 503 && !strcasestr(r.raw, "\r\nRetry-After: "))
        fail_msg("%s %s: 503 without Retry-After: %s", method, path, r.raw);
    cJSON_Delete(j);
    free(r.raw);
}

static void test_errors(void **state) {
    (void)state;
    NEED_SERVER();
    expect_error(g_port, "POST", "/v1/completions", "{\"prompt\": \"x\",", 400, NULL);
    expect_error(g_port, "POST", "/v1/completions", "[1,2]", 400, NULL);
    expect_error(g_port, "POST", "/v1/completions", "{\"prompt\":\"x\",\"temperature\":\"hot\"}",
                 400, "temperature");
    expect_error(g_port, "POST", "/v1/completions", "{\"prompt\":\"x\",\"n\":2}", 400, "n");
    expect_error(g_port, "POST", "/v1/completions", "{\"prompt\":\"x\",\"top_p\":1.5}", 400,
                 "top_p");
    expect_error(g_port, "POST", "/v1/completions", "{\"prompt\":\"x\",\"stop\":7}", 400, "stop");
    expect_error(g_port, "POST", "/v1/completions",
                 "{\"prompt\":\"x\",\"logit_bias\":{\"abc\":1}}", 400, "logit_bias");
    expect_error(g_port, "POST", "/v1/completions", "{\"prompt\":[1,-5]}", 400, "prompt");
    expect_error(g_port, "POST", "/v1/completions", "{\"max_tokens\":3}", 400, "prompt");
    expect_error(g_port, "POST", "/v1/chat/completions", "{\"messages\":[{\"content\":\"x\"}]}",
                 400, "messages[0]");
    expect_error(g_port, "GET", "/v1/nothing", NULL, 404, NULL);
    expect_error(g_port, "GET", "/v1/completions", NULL, 405, NULL);
    expect_error(g_port, "POST", "/health", "{}", 405, NULL);
    /* a prompt longer than the context (1024) */
    size_t big = 8 + 2 * 3000 + 2;
    char *b = malloc(big + 8);
    size_t o = (size_t)sprintf(b, "{\"prompt\":[");
    for (int i = 0; i < 3000; i++) o += (size_t)sprintf(b + o, "%s1", i ? "," : "");
    sprintf(b + o, "]}");
    expect_error(g_port, "POST", "/v1/completions", b, 400, "prompt");
    free(b);
    /* 413: a declared body over the 8 MiB cap is refused before it is read */
    int fd = su_connect_port(g_port);
    const char *head = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "Connection: close\r\nContent-Length: 9000000\r\n\r\n{\"prompt\":";
    su_send_all(fd, head, strlen(head));
    char *raw = su_read_to_eof(fd, 60000);
    close(fd);
    int status = 0;
    assert_int_equal(sscanf(raw, "HTTP/1.%*d %d", &status), 1);
    assert_int_equal(status, 413);
    free(raw);
    /* the server still answers afterwards */
    su_resp r = su_http(g_port, "GET", "/health", NULL);
    assert_int_equal(r.status, 200);
    free(r.raw);
}

/* Server B (--parallel 1 --queue 0): a second request while a stream holds the only slot gets
 * 503 with Retry-After; once the streaming client hangs up, its generation is cancelled and
 * the slot serves again. */
static void test_busy_and_disconnect(void **state) {
    (void)state;
    NEED_SERVER();
    const char *extra[] = {"--ctx", "4096", "--parallel", "1", "--queue", "0", NULL};
    int port = 0;
    pid_t pid = su_start_server(g_model, extra, &port);
    assert_true(pid > 0);
    int fd = su_connect_port(port);
    su_send_request(fd, "POST", "/v1/completions",
                 "{\"prompt\":\"Hello\",\"max_tokens\":0,\"ignore_eos\":true,\"stream\":true}");
    /* wait for three SSE events: generation is running and holds the slot */
    char buf[8192];
    size_t len = 0;
    int events = 0;
    while (events < 3 && len + 1 < sizeof buf) {
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        assert_true(n > 0);
        len += (size_t)n;
        buf[len] = 0;
        events = 0;
        for (const char *p = buf; (p = strstr(p, "data: ")); p += 6) events++;
    }
    expect_error(port, "POST", "/v1/completions", "{\"prompt\":\"Hi\",\"max_tokens\":2}", 503,
                 NULL);
    close(fd); /* hang up mid-stream */
    int status = 0;
    for (int tries = 0; tries < 200 && status != 200; tries++) {
        su_resp r = su_http(port, "POST", "/v1/completions", "{\"prompt\":\"Hi\",\"max_tokens\":2}");
        status = r.status;
        if (status != 200) {
            assert_int_equal(status, 503);
            usleep(50000);
        }
        free(r.raw);
    }
    assert_int_equal(status, 200);
    kill(pid, SIGINT);
    int st = su_wait_child(pid, 60000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* LoRA adapters served as models: /v1/models lists them, "model": NAME applies one for that
 * request only (same text as `wick generate --adapter`), the base model stays the default,
 * and an unknown model is a 404 model_not_found. */
static void test_adapters_as_models(void **state) {
    (void)state;
    NEED_SERVER();
    wick_model *m = NULL;
    assert_int_equal(wick_model_load(g_model, NULL, &m), WICK_OK);
    wick_adapter *a = NULL;
    /* B scaled up (alpha 4096) so the adapter visibly changes a tiny model's output */
    assert_int_equal(lora_adapter_random(m, 8, 4096.0f, 0x7f, 5, &a), WICK_OK);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/ad", g_dir);
    assert_int_equal(lora_adapter_write(a, dir, g_model), WICK_OK);
    lora_adapter_release(a);
    wick_model_free(m);
    char spec[640];
    snprintf(spec, sizeof spec, "styled=%s", dir);
    const char *extra[] = {"--adapter", spec, NULL};
    int port = 0;
    pid_t pid = su_start_server(g_model, extra, &port);
    assert_true(pid > 0);
    su_resp r = su_http(port, "GET", "/v1/models", NULL);
    cJSON *j = su_json_of(&r);
    const cJSON *ad = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "data"), 1);
    assert_non_null(ad);
    assert_string_equal(su_jstr(ad, "id", NULL), "styled");
    assert_string_equal(su_jstr(ad, "parent", NULL), "model");
    cJSON_Delete(j);
    free(r.raw);
    const char *body_a = "{\"model\":\"styled\",\"prompt\":\"Hello world\",\"max_tokens\":8,"
                         "\"temperature\":0}";
    const char *body_b = "{\"prompt\":\"Hello world\",\"max_tokens\":8,\"temperature\":0}";
    char *with = su_complete(port, "/v1/completions", body_a, NULL, NULL);
    char *base = su_complete(port, "/v1/completions", body_b, NULL, NULL);
    char *again = su_complete(port, "/v1/completions", body_a, NULL, NULL);
    assert_string_equal(with, again); /* switching back and forth is exact */
    const char *opts_a[] = {"-p", "Hello world", "-n", "8", "--adapter", dir, NULL};
    const char *opts_b[] = {"-p", "Hello world", "-n", "8", NULL};
    char *cli_a = run_generate(opts_a), *cli_b = run_generate(opts_b);
    assert_memory_equal(cli_a, with, strlen(with));
    assert_memory_equal(cli_b, base, strlen(base));
    assert_string_not_equal(with, base);
    expect_error(port, "POST", "/v1/completions",
                 "{\"model\":\"nope\",\"prompt\":\"x\",\"max_tokens\":2}", 404, "model");
    free(with); free(base); free(again); free(cli_a); free(cli_b);
    kill(pid, SIGTERM);
    int st = su_wait_child(pid, 60000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_and_models),
        cmocka_unit_test(test_completion_matches_generate),
        cmocka_unit_test(test_stream_equals_nonstream),
        cmocka_unit_test(test_chat_matches_generate),
        cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_busy_and_disconnect),
        cmocka_unit_test(test_adapters_as_models),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
