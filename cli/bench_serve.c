/* bench_serve.c — `wick bench serve`: a load generator for any OpenAI-compatible server (wick
 * serve, llama-server, vLLM ...). N clients, each a closed loop over its own loopback
 * connection: send a streaming /v1/completions request (a prompt of about P words, N tokens
 * with EOS ignored, greedy), read the Server-Sent Events to [DONE], repeat until the duration
 * is over. Prints the output throughput, time to first token and inter-token latency
 * percentiles (p50/p90/p99) and the errors (non-200 answers, resets, incomplete streams).
 * One thread, poll() over all sockets, so the generator costs little next to the server. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

typedef struct dvec {
    double *v;
    size_t n, cap;
} dvec;

static void dv_push(dvec *d, double x) {
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 1024;
        d->v = realloc(d->v, d->cap * sizeof *d->v);
    }
    d->v[d->n++] = x;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(dvec *d, double q) {
    if (!d->n) return 0;
    qsort(d->v, d->n, sizeof *d->v, cmp_d);
    size_t i = (size_t)ceil(q * (double)d->n);
    return d->v[i ? i - 1 : 0];
}

typedef struct client {
    int fd;
    char *buf;               /* bytes received for the current request */
    size_t len, cap, scan;   /* scan: parsed up to here */
    double t_send, t_last;
    int tokens;              /* content chunks seen */
    bool header_ok, active;
} client;

typedef struct bench {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char *request;
    size_t request_len;
    dvec ttft, itl;
    long tokens, done, errors, resets, busy;
} bench;

static int open_conn(bench *b) {
    int fd = socket(b->addr.ss_family, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&b->addr, b->addrlen) != 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Sends the next request on a fresh connection (Connection: close keeps parsing simple). */
static void start(bench *b, client *c) {
    c->fd = open_conn(b);
    c->len = c->scan = 0;
    c->tokens = 0;
    c->header_ok = false;
    c->active = c->fd >= 0;
    if (!c->active) {
        b->errors++;
        return;
    }
    c->t_send = now_ms();
    size_t off = 0;
    while (off < b->request_len) { /* a small request: the socket takes it at once */
        ssize_t w = send(c->fd, b->request + off, b->request_len - off, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
}

/* Parses new SSE events of c's buffer: each "data: {...}" with non-empty text is a token. */
static void scan(bench *b, client *c) {
    if (!c->header_ok) {
        char *e = strstr(c->buf, "\r\n\r\n");
        if (!e) return;
        int status = 0;
        sscanf(c->buf, "HTTP/1.%*d %d", &status);
        if (status != 200) return; /* judged at EOF */
        c->header_ok = true;
        c->scan = (size_t)(e + 4 - c->buf);
    }
    for (;;) {
        char *ev = strstr(c->buf + c->scan, "data: ");
        if (!ev) return;
        char *end = strstr(ev, "\n\n");
        if (!end) return;
        c->scan = (size_t)(end + 2 - c->buf);
        *end = 0;
        const char *t = strstr(ev, "\"text\":\"");
        const bool content = t && t[8] != '"';
        *end = '\n';
        if (!content) continue;
        const double now = now_ms();
        if (c->tokens == 0) dv_push(&b->ttft, now - c->t_send);
        else dv_push(&b->itl, now - c->t_last);
        c->t_last = now;
        c->tokens++;
    }
}

static void finish(bench *b, client *c, bool reset) {
    close(c->fd);
    c->active = false;
    int status = 0;
    if (c->len) sscanf(c->buf, "HTTP/1.%*d %d", &status);
    if (reset) b->resets++;
    else if (status == 503 || status == 429) b->busy++;
    else if (status != 200 || !strstr(c->buf, "data: [DONE]")) b->errors++;
    else {
        b->done++;
        b->tokens += c->tokens;
    }
}

static int usage(FILE *f) {
    fprintf(f, "usage: wick bench serve [--url http://127.0.0.1:8080] [-c CLIENTS] [-p PROMPT_WORDS]\n"
               "                        [-n TOKENS] [-d SECONDS] [--model NAME]\n"
               "Closed-loop load on an OpenAI-compatible server: CLIENTS concurrent streaming\n"
               "/v1/completions requests (EOS ignored) for SECONDS. Prints tokens/s, time to first\n"
               "token and inter-token latency p50/p90/p99, and errors. Defaults: -c 4 -p 32 -n 128\n"
               "-d 30.\n");
    return f == stdout ? 0 : 2;
}

int bench_serve(int argc, char **argv) {
    const char *url = "http://127.0.0.1:8080", *model = NULL;
    long clients = 4, words = 32, ntok = 128, secs = 30;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout);
        else if (!strcmp(a, "--url") && has) url = argv[++i];
        else if ((!strcmp(a, "--model") || !strcmp(a, "-m")) && has) model = argv[++i];
        else if (!strcmp(a, "-c") && has) {
            if (!cli_parse_int("bench", a, argv[++i], 1, 4096, &clients)) return 2;
        } else if (!strcmp(a, "-p") && has) {
            if (!cli_parse_int("bench", a, argv[++i], 1, 100000, &words)) return 2;
        } else if (!strcmp(a, "-n") && has) {
            if (!cli_parse_int("bench", a, argv[++i], 1, 100000, &ntok)) return 2;
        } else if (!strcmp(a, "-d") && has) {
            if (!cli_parse_int("bench", a, argv[++i], 1, 86400, &secs)) return 2;
        } else {
            fprintf(stderr, "wick bench serve: unknown or incomplete option '%s'\n", a);
            return usage(stderr);
        }
    }
    char host[256] = "127.0.0.1", port[16] = "8080";
    if (sscanf(url, "http://%255[^:/]:%15[0-9]", host, port) < 1) {
        fprintf(stderr, "wick bench serve: --url must look like http://HOST:PORT\n");
        return 2;
    }
    bench b;
    memset(&b, 0, sizeof b);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, port, &hints, &res) != 0 || !res) {
        fprintf(stderr, "wick bench serve: cannot resolve %s\n", host);
        return 1;
    }
    memcpy(&b.addr, res->ai_addr, res->ai_addrlen);
    b.addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    /* the prompt: common words, about one token each with any BPE vocabulary */
    static const char *vocab[] = {"the", "house", "river", "green", "light", "small", "city",
                                  "water", "story", "night", "long", "road", "stone", "bird"};
    size_t plen = 0, pcap = (size_t)words * 8 + 16;
    char *prompt = malloc(pcap);
    for (long i = 0; i < words; i++)
        plen += (size_t)snprintf(prompt + plen, pcap - plen, "%s%s", i ? " " : "",
                                 vocab[(i * 7 + i / 3) % 14]);
    char *body = malloc(plen + 1024);
    char mfield[300] = "";
    if (model) snprintf(mfield, sizeof mfield, "\"model\":\"%.200s\",", model);
    int bl = snprintf(body, plen + 1024,
                      "{%s\"prompt\":\"%s\",\"max_tokens\":%ld,\"temperature\":0,"
                      "\"ignore_eos\":true,\"stream\":true}", mfield, prompt, ntok);
    b.request = malloc((size_t)bl + 512);
    b.request_len = (size_t)snprintf(b.request, (size_t)bl + 512,
                                     "POST /v1/completions HTTP/1.1\r\nHost: %s:%s\r\n"
                                     "Content-Type: application/json\r\nConnection: close\r\n"
                                     "Content-Length: %d\r\n\r\n%s", host, port, bl, body);
    free(prompt), free(body);

    client *c = calloc((size_t)clients, sizeof *c);
    struct pollfd *pf = calloc((size_t)clients, sizeof *pf);
    const double t0 = now_ms(), t_end = t0 + secs * 1e3;
    for (long i = 0; i < clients; i++) start(&b, &c[i]);
    double shown = 0;
    for (;;) {
        const double tn = now_ms();
        if (tn - shown >= 1000) { /* elapsed of the duration, on a terminal */
            shown = tn;
            cli_status("bench", "%ld clients: %.0f of %ld s …", clients, (tn - t0) / 1e3, (long)secs);
        }
        int open = 0;
        for (long i = 0; i < clients; i++) {
            pf[i].fd = c[i].active ? c[i].fd : -1;
            pf[i].events = POLLIN;
            open += c[i].active;
        }
        if (!open) break;
        if (poll(pf, (nfds_t)clients, 1000) < 0 && errno != EINTR) break;
        for (long i = 0; i < clients; i++) {
            client *k = &c[i];
            if (!k->active || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            for (;;) {
                if (k->len + 65537 > k->cap) {
                    k->cap = k->cap ? 2 * k->cap : 1 << 17;
                    k->buf = realloc(k->buf, k->cap);
                }
                ssize_t r = recv(k->fd, k->buf + k->len, 65536, 0);
                if (r > 0) {
                    k->len += (size_t)r;
                    k->buf[k->len] = 0;
                    scan(&b, k);
                    continue;
                }
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                finish(&b, k, r < 0);
                if (now_ms() < t_end) start(&b, k);
                break;
            }
        }
    }
    const double wall = (now_ms() - t0) / 1e3;
    cli_status_clear();
    printf("| clients | requests | tokens/s | TTFT p50 / p90 / p99 ms | ITL p50 / p90 / p99 ms | "
           "errors (503 / reset / other) |\n|---|---|---|---|---|---|\n");
    printf("| %ld | %ld | %.1f | %.0f / %.0f / %.0f | %.1f / %.1f / %.1f | %ld / %ld / %ld |\n",
           clients, b.done, b.tokens / wall, pct(&b.ttft, 0.5), pct(&b.ttft, 0.9),
           pct(&b.ttft, 0.99), pct(&b.itl, 0.5), pct(&b.itl, 0.9), pct(&b.itl, 0.99), b.busy,
           b.resets, b.errors);
    for (long i = 0; i < clients; i++) free(c[i].buf);
    free(c), free(pf), free(b.request), free(b.ttft.v), free(b.itl.v);
    return b.resets || b.errors ? 1 : 0;
}
