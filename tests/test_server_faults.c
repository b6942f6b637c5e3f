/* test_server_faults.c — `wick serve` under the conditions deployments meet, each a test over
 * real loopback sockets against the built binary (a tiny random model, qwen3 tokenizer):
 *   - 200 concurrent streaming clients against --parallel 4: each gets a complete stream or a
 *     503 with Retry-After; no connection is reset or left unanswered;
 *   - 50 sockets that send half a request and stall block neither /health nor new requests,
 *     and are closed after --timeout;
 *   - 2 clients that never read do not stop others from completing; their generations are
 *     paused and then cancelled after --stall-ms;
 *   - requests waiting for the only slot complete in arrival order;
 *   - SIGTERM during 8 streams: every stream ends with a final chunk and [DONE], exit 0;
 *   - resident memory after 5,000 requests is within 10% of what it was after 500.
 * Skips (fails under CI=true) when the fixture is missing or the binary has no server. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "serverutil.h"

static char *g_dir, *g_model;
static const char *g_skip;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int group_setup(void **state) {
    (void)state;
    if ((g_skip = su_tiny_model(&g_dir, &g_model))) return tu_ci() ? -1 : 0;
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    if (g_dir) tu_rmdir_rf(g_dir);
    free(g_dir);
    free(g_model);
    return 0;
}

#define NEED_SERVER()                                       \
    do {                                                    \
        if (g_skip) {                                       \
            fprintf(stderr, "SKIP: %s\n", g_skip);          \
            skip();                                         \
        }                                                   \
    } while (0)

static pid_t start(const char *const extra[], int *port) {
    /* thousands of requests: without their log lines (-q) */
    const char *args[40];
    int n = 0;
    for (; extra && extra[n] && n < 38; n++) args[n] = extra[n];
    args[n++] = "-q";
    args[n] = NULL;
    pid_t pid = su_start_server(g_model, args, port);
    if (pid < 0) fail_msg("wick serve did not start");
    return pid;
}

static void stop(pid_t pid) {
    kill(pid, SIGTERM);
    int st = su_wait_child(pid, 60000);
    if (!(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0))
        fail_msg("wick serve did not shut down cleanly (wait status %d)", st);
}

/* ---- many sockets at once ---------------------------------------------------------------- */

typedef struct conn {
    int fd;
    char *buf;
    size_t len, cap;
    bool eof, reset;
    double t_eof;      /* when the answer was complete */
} conn;

static int connect_nb(int port) {
    int fd = su_connect_port(port);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Reads every connection to EOF (or until timeout_ms passes with no progress). */
static void read_all(conn *c, int n, int timeout_ms) {
    struct pollfd *pf = calloc((size_t)n, sizeof *pf);
    for (;;) {
        int open = 0;
        for (int i = 0; i < n; i++) {
            pf[i].fd = c[i].eof ? -1 : c[i].fd;
            pf[i].events = POLLIN;
            open += !c[i].eof;
        }
        if (!open) break;
        int r = poll(pf, (nfds_t)n, timeout_ms);
        if (r <= 0) break;
        for (int i = 0; i < n; i++) {
            if (c[i].eof || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            for (;;) {
                if (c[i].len + 4097 > c[i].cap) {
                    c[i].cap = c[i].cap ? 2 * c[i].cap : 16384;
                    c[i].buf = realloc(c[i].buf, c[i].cap);
                }
                ssize_t k = recv(c[i].fd, c[i].buf + c[i].len, 4096, 0);
                if (k > 0) {
                    c[i].len += (size_t)k;
                    c[i].buf[c[i].len] = 0;
                    continue;
                }
                if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                if (k < 0) c[i].reset = true;
                c[i].eof = true;
                c[i].t_eof = now_ms();
                break;
            }
        }
    }
    free(pf);
}

/* A finished stream: 200, SSE, exactly one finish_reason, ends with [DONE]. */
static bool complete_stream_raw(char *raw) {
    int status = 0;
    if (sscanf(raw, "HTTP/1.%*d %d", &status) != 1 || status != 200) return false;
    char *body = strstr(raw, "\r\n\r\n");
    if (!body) return false;
    body += 4;
    if (strcasestr(raw, "transfer-encoding: chunked")) su_dechunk(body);
    int finishes = 0;
    for (const char *p = body; (p = strstr(p, "\"finish_reason\":\"")); p++) finishes++;
    const size_t L = strlen(body);
    return finishes == 1 && L >= 14 && !strcmp(body + L - 14, "data: [DONE]\n\n");
}

static void test_200_clients(void **state) {
    (void)state;
    NEED_SERVER();
    int port;
    const char *extra[] = {"--parallel", "4", "--queue", "40", "--ctx", "512", NULL};
    pid_t pid = start(extra, &port);
    enum { N = 200 };
    conn *c = calloc(N, sizeof *c);
    const char *body = "{\"prompt\":\"Once upon a time\",\"max_tokens\":24,\"ignore_eos\":true,"
                       "\"stream\":true}";
    for (int i = 0; i < N; i++) {
        c[i].fd = connect_nb(port);
        su_send_request(c[i].fd, "POST", "/v1/completions", body);
    }
    read_all(c, N, 60000);
    int ok = 0, busy = 0;
    for (int i = 0; i < N; i++) {
        if (c[i].reset || !c[i].eof || !c[i].buf)
            fail_msg("client %d: %s", i, c[i].reset ? "connection reset" : "no complete answer");
        int status = 0;
        assert_int_equal(sscanf(c[i].buf, "HTTP/1.%*d %d", &status), 1);
        if (status == 503) {
            if (!strcasestr(c[i].buf, "\r\nRetry-After: "))
                fail_msg("client %d: 503 without Retry-After", i);
            busy++;
        } else if (complete_stream_raw(c[i].buf)) {
            ok++;
        } else {
            fail_msg("client %d: neither a complete stream nor a 503: %.300s", i, c[i].buf);
        }
        close(c[i].fd);
        free(c[i].buf);
    }
    printf("200 clients: %d complete streams, %d answered 503 + Retry-After\n", ok, busy);
    assert_true(ok >= 44); /* at least the slots and the queue were served */
    free(c);
    stop(pid);
}

static void test_stalled_sockets(void **state) {
    (void)state;
    NEED_SERVER();
    int port;
    const char *extra[] = {"--timeout", "2", NULL};
    pid_t pid = start(extra, &port);
    enum { N = 50 };
    int fds[N];
    const char *half = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
                       "{\"prompt\":";
    for (int i = 0; i < N; i++) {
        fds[i] = su_connect_port(port);
        su_send_all(fds[i], half, strlen(half));
    }
    const double t0 = now_ms();
    su_resp r = su_http(port, "GET", "/health", NULL);
    assert_int_equal(r.status, 200);
    free(r.raw);
    char finish[16];
    free(su_complete(port, "/v1/completions", "{\"prompt\":\"Hi\",\"max_tokens\":4}", finish, NULL));
    assert_true(now_ms() - t0 < 5000);
    /* after the idle timeout, the server has closed them */
    usleep(3500000);
    for (int i = 0; i < N; i++) {
        struct pollfd pf = {.fd = fds[i], .events = POLLIN};
        assert_int_equal(poll(&pf, 1, 3000), 1);
        char b[64];
        assert_true(recv(fds[i], b, sizeof b, 0) <= 0 || true); /* EOF (or a 408) */
        close(fds[i]);
    }
    stop(pid);
}

/* /health's count of running generations. */
static int running(int port) {
    su_resp r = su_http(port, "GET", "/health", NULL);
    cJSON *j = su_json_of(&r);
    int n = cJSON_GetObjectItem(j, "running")->valueint;
    cJSON_Delete(j);
    free(r.raw);
    return n;
}

static void test_clients_that_never_read(void **state) {
    (void)state;
    NEED_SERVER();
    int port;
    const char *extra[] = {"--parallel", "4", "--stream-buffer", "4096", "--stall-ms", "1000",
                           "--timeout", "60", NULL};
    pid_t pid = start(extra, &port);
    int lazy[2];
    for (int i = 0; i < 2; i++) {
        lazy[i] = socket(AF_INET, SOCK_STREAM, 0);
        int small = 2048;
        setsockopt(lazy[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(connect(lazy[i], (struct sockaddr *)&a, sizeof a), 0);
        su_send_request(lazy[i], "POST", "/v1/completions",
                        "{\"prompt\":\"Go\",\"max_tokens\":1000000,\"ignore_eos\":true,\"stream\":true}");
    }
    usleep(300000);
    /* others complete meanwhile */
    for (int k = 0; k < 3; k++) {
        char finish[16];
        free(su_complete_stream(port, "/v1/completions",
                                "{\"prompt\":\"Hello\",\"max_tokens\":16,\"ignore_eos\":true,"
                                "\"stream\":true}", finish));
        assert_string_equal(finish, "length");
    }
    /* the two who never read: paused, then cancelled after --stall-ms */
    int n = 2;
    for (int t = 0; t < 300 && (n = running(port)) > 0; t++) usleep(100000);
    assert_int_equal(n, 0);
    close(lazy[0]);
    close(lazy[1]);
    stop(pid);
}

static void test_fifo(void **state) {
    (void)state;
    NEED_SERVER();
    int port;
    const char *extra[] = {"--parallel", "1", "--queue", "16", NULL};
    pid_t pid = start(extra, &port);
    enum { N = 6 };
    conn c[N];
    memset(c, 0, sizeof c);
    for (int i = 0; i < N; i++) {
        c[i].fd = connect_nb(port);
        su_send_request(c[i].fd, "POST", "/v1/completions",
                        "{\"prompt\":\"Tell me\",\"max_tokens\":24,\"ignore_eos\":true}");
        usleep(30000); /* arrival order */
    }
    /* the one slot serves them first come, first served: answers complete in arrival order */
    read_all(c, N, 60000);
    for (int i = 0; i < N; i++) {
        int status = 0;
        assert_non_null(c[i].buf);
        assert_int_equal(sscanf(c[i].buf, "HTTP/1.%*d %d", &status), 1);
        assert_int_equal(status, 200);
        if (i > 0 && !(c[i].t_eof > c[i - 1].t_eof))
            fail_msg("request %d finished before request %d", i, i - 1);
        close(c[i].fd);
        free(c[i].buf);
    }
    stop(pid);
}

static void test_sigterm_drains(void **state) {
    (void)state;
    NEED_SERVER();
    int port;
    const char *extra[] = {"--parallel", "4", "--queue", "8", "--drain-grace", "1", NULL};
    pid_t pid = start(extra, &port);
    enum { N = 8 };
    conn c[N];
    memset(c, 0, sizeof c);
    for (int i = 0; i < N; i++) {
        c[i].fd = connect_nb(port);
        su_send_request(c[i].fd, "POST", "/v1/chat/completions",
                        "{\"messages\":[{\"role\":\"user\",\"content\":\"Talk\"}],"
                        "\"max_tokens\":1000000,\"ignore_eos\":true,\"stream\":true}");
    }
    usleep(500000);
    kill(pid, SIGTERM);
    read_all(c, N, 30000);
    for (int i = 0; i < N; i++) {
        if (!c[i].eof || !c[i].buf || !complete_stream_raw(c[i].buf))
            fail_msg("stream %d did not end with a final chunk and [DONE]: %.400s", i,
                     c[i].buf ? c[i].buf : "(nothing)");
        close(c[i].fd);
        free(c[i].buf);
    }
    int st = su_wait_child(pid, 30000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static long rss_kb(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
}

/* n requests, `par` at a time, each a new connection. */
static void load(int port, int n, int par) {
    conn *c = calloc((size_t)par, sizeof *c);
    for (int done = 0; done < n; done += par) {
        const int k = n - done < par ? n - done : par;
        for (int i = 0; i < k; i++) {
            memset(&c[i], 0, sizeof c[i]);
            c[i].fd = connect_nb(port);
            su_send_request(c[i].fd, "POST", (done + i) % 2 ? "/v1/completions" : "/v1/chat/completions",
                            (done + i) % 2 ? "{\"prompt\":\"Hi there\",\"max_tokens\":2}"
                                           : "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
                                             "\"max_tokens\":2,\"stream\":true}");
        }
        read_all(c, k, 60000);
        for (int i = 0; i < k; i++) {
            int status = 0;
            if (!c[i].buf || sscanf(c[i].buf, "HTTP/1.%*d %d", &status) != 1 || status != 200)
                fail_msg("request %d failed: %.200s", done + i, c[i].buf ? c[i].buf : "");
            close(c[i].fd);
            free(c[i].buf);
        }
    }
    free(c);
}

static void test_memory_steady(void **state) {
    (void)state;
    NEED_SERVER();
    int port;
    const char *extra[] = {"--parallel", "8", "--ctx", "256", NULL};
    pid_t pid = start(extra, &port);
    load(port, 500, 8);
    const long r500 = rss_kb(pid);
    load(port, 4500, 8);
    const long r5000 = rss_kb(pid);
    stop(pid); /* before any assertion: a failed one must not leave the server running */
    printf("RSS after 500 requests %ld KiB, after 5000 %ld KiB (%+.1f%%)\n", r500, r5000,
           100.0 * (r5000 - r500) / r500);
    assert_true(r500 > 0);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* ASan holds freed blocks in its quarantine (256 MiB by default) and TSan keeps shadow
     * state, so RSS grows with the number of frees there; leaks are LeakSanitizer's job in
     * these builds, the 10% bound is checked in the plain ones. */
    printf("sanitizer build: RSS bound not checked\n");
#else
    assert_true(r5000 <= r500 * 1.10);
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_200_clients),
        cmocka_unit_test(test_stalled_sockets),
        cmocka_unit_test(test_clients_that_never_read),
        cmocka_unit_test(test_fifo),
        cmocka_unit_test(test_sigterm_drains),
        cmocka_unit_test(test_memory_steady),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
