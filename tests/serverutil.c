/* serverutil.c — helpers for the tests that run `wick serve` as a child process and talk to
 * it over plain loopback sockets (test_server.c, test_server_faults.c): see serverutil.h. */
#include <arpa/inet.h>
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

/* ---- child processes ---------------------------------------------------------------------- */

/* Starts argv with stdout on a pipe (*out_fd); stderr is inherited for diagnostics. */
pid_t su_spawn(char *const argv[], int *out_fd) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    *out_fd = p[0];
    return pid;
}

/* Reads fd to EOF (bounded by timeout_ms) into a malloc'd string. */
char *su_read_to_eof(int fd, int timeout_ms) {
    size_t len = 0, cap = 4096;
    char *s = malloc(cap);
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, timeout_ms) <= 0) break;
        if (len + 1024 > cap) s = realloc(s, cap *= 2);
        ssize_t n = read(fd, s + len, cap - len - 1);
        if (n <= 0) break;
        len += (size_t)n;
    }
    s[len] = 0;
    return s;
}

/* Waits up to timeout_ms for pid; returns its wait status, or -1 after killing it. */
int su_wait_child(pid_t pid, int timeout_ms) {
    int st = 0;
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        if (waitpid(pid, &st, WNOHANG) == pid) return st;
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

/* Starts `wick serve` on the model with extra options; returns the pid and sets *port, or -1
 * when the server did not come up (it has exited). */
pid_t su_start_server(const char *model, const char *const extra[], int *port) {
    char *argv[40] = {WICK_BIN, "serve", "-m", (char *)model, "--port", "0", "-t", "1"};
    int n = 8;
    for (int i = 0; extra && extra[i]; i++) argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    int fd;
    pid_t pid = su_spawn(argv, &fd);
    char line[256];
    size_t len = 0;
    while (len + 1 < sizeof line) { /* the first stdout line: "listening on http://H:P ..." */
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 120000) <= 0 || read(fd, line + len, 1) != 1) break;
        if (line[len++] == '\n') break;
    }
    line[len] = 0;
    close(fd); /* the server writes nothing else on stdout */
    const char *p = strstr(line, "127.0.0.1:");
    if (!p) {
        su_wait_child(pid, 5000);
        return -1;
    }
    *port = atoi(p + 10);
    return pid;
}

/* ---- HTTP over plain sockets ----------------------------------------------------------------- */

int su_connect_port(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 120};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

void su_send_all(int fd, const char *s, size_t n) {
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0) return; /* the server may answer early (413) and close */
        s += w;
        n -= (size_t)w;
    }
}

void su_send_request(int fd, const char *method, const char *path, const char *body) {
    su_send_request_h(fd, method, path, body, NULL);
}

void su_send_request_h(int fd, const char *method, const char *path, const char *body,
                       const char *headers) {
    char head[2048];
    size_t n = body ? strlen(body) : 0;
    snprintf(head, sizeof head,
             "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s"
             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
             method, path, headers ? headers : "", n);
    su_send_all(fd, head, strlen(head));
    if (n) su_send_all(fd, body, n);
}

/* Decodes a chunked body in place. */
void su_dechunk(char *b) {
    char *in = b, *out = b;
    for (;;) {
        char *end;
        unsigned long n = strtoul(in, &end, 16);
        char *nl = strstr(end, "\r\n");
        if (!nl || n == 0) break;
        memmove(out, nl + 2, n);
        out += n;
        in = nl + 2 + n + 2;
    }
    *out = 0;
}


su_resp su_http(int port, const char *method, const char *path, const char *body) {
    return su_http_h(port, method, path, body, NULL);
}

su_resp su_http_h(int port, const char *method, const char *path, const char *body,
                  const char *headers) {
    int fd = su_connect_port(port);
    su_send_request_h(fd, method, path, body, headers);
    su_resp r = {0};
    r.raw = su_read_to_eof(fd, 120000);
    close(fd);
    assert_true(sscanf(r.raw, "HTTP/1.%*d %d", &r.status) == 1);
    char *sep = strstr(r.raw, "\r\n\r\n");
    assert_non_null(sep);
    *sep = 0;
    r.body = sep + 4;
    if (strcasestr(r.raw, "transfer-encoding: chunked")) su_dechunk(r.body);
    return r;
}

cJSON *su_json_of(const su_resp *r) {
    cJSON *j = cJSON_Parse(r->body);
    if (!j) fail_msg("response is not JSON: %s", r->body);
    return j;
}

const char *su_jstr(const cJSON *o, const char *path1, const char *path2) {
    const cJSON *v = cJSON_GetObjectItem(o, path1);
    if (path2) v = cJSON_GetObjectItem(v, path2);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* choices[0] of a response or chunk. */
const cJSON *su_choice0(const cJSON *j) {
    return cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
}

/* Non-streamed request: returns choices[0].text (or message.content), malloc'd; *finish and
 * *completion_tokens optional. */
char *su_complete(int port, const char *path, const char *body, char *finish, int *ntok) {
    su_resp r = su_http(port, "POST", path, body);
    if (r.status != 200) fail_msg("%s -> %d: %s", path, r.status, r.body);
    cJSON *j = su_json_of(&r);
    const cJSON *c = su_choice0(j);
    const char *t = su_jstr(c, "text", NULL);
    if (!t) t = su_jstr(c, "message", "content");
    assert_non_null(t);
    char *out = strdup(t);
    if (finish) snprintf(finish, 16, "%s", su_jstr(c, "finish_reason", NULL));
    const cJSON *u = cJSON_GetObjectItem(j, "usage");
    int pt = cJSON_GetObjectItem(u, "prompt_tokens")->valueint;
    int ct = cJSON_GetObjectItem(u, "completion_tokens")->valueint;
    assert_true(pt > 0);
    assert_int_equal(cJSON_GetObjectItem(u, "total_tokens")->valueint, pt + ct);
    if (ntok) *ntok = ct;
    cJSON_Delete(j);
    free(r.raw);
    return out;
}

/* Streamed request: concatenates the text deltas; checks the SSE framing, the chat role
 * chunk, exactly one finish_reason and the final [DONE]. */
char *su_complete_stream(int port, const char *path, const char *body, char *finish) {
    su_resp r = su_http(port, "POST", path, body);
    if (r.status != 200) fail_msg("%s -> %d: %s", path, r.status, r.body);
    assert_non_null(strcasestr(r.raw, "content-type: text/event-stream"));
    bool chat = strstr(path, "chat") != NULL;
    size_t cap = strlen(r.body) + 1, len = 0;
    char *text = calloc(1, cap);
    int events = 0, finishes = 0;
    bool done = false;
    for (char *ev = r.body; *ev;) {
        char *end = strstr(ev, "\n\n");
        assert_non_null(end);
        *end = 0;
        assert_memory_equal(ev, "data: ", 6);
        assert_false(done); /* nothing after [DONE] */
        if (!strcmp(ev + 6, "[DONE]")) {
            done = true;
        } else {
            cJSON *j = cJSON_Parse(ev + 6);
            assert_non_null(j);
            assert_string_equal(su_jstr(j, "object", NULL),
                                chat ? "chat.completion.chunk" : "text_completion");
            const cJSON *c = su_choice0(j);
            if (c) {
                const char *t = chat ? su_jstr(c, "delta", "content") : su_jstr(c, "text", NULL);
                if (chat && events == 0) assert_string_equal(su_jstr(c, "delta", "role"), "assistant");
                if (t) {
                    memcpy(text + len, t, strlen(t));
                    len += strlen(t);
                }
                const char *f = su_jstr(c, "finish_reason", NULL);
                if (f) {
                    finishes++;
                    snprintf(finish, 16, "%s", f);
                }
            }
            cJSON_Delete(j);
            events++;
        }
        ev = end + 2;
    }
    assert_true(done);
    assert_int_equal(finishes, 1);
    free(r.raw);
    return text;
}


const char *su_tiny_model(char **dir, char **model) {
    if (!tu_fixture_exists("tokenizers/qwen3"))
        return "fixture tokenizers/qwen3 not found (set WICK_FIXTURES)";
    char *tok = tu_fixture_path("tokenizers/qwen3");
    *dir = tu_mkdtemp();
    size_t n = strlen(*dir) + 16;
    *model = malloc(n);
    snprintf(*model, n, "%s/model", *dir);
    char *argv[] = {WICK_BIN, "create-random", "--like", "tiny", "--tokenizer", tok,
                    "--out", *model, NULL};
    int fd;
    pid_t pid = su_spawn(argv, &fd);
    free(su_read_to_eof(fd, 120000));
    close(fd);
    int st = su_wait_child(pid, 120000);
    free(tok);
    return st != 0 ? "wick create-random failed" : NULL;
}
