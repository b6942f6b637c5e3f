/* cmd_serve.c — `wick serve`: loads a model, creates --parallel sessions on it and serves the
 * OpenAI-compatible HTTP API (cli/serve_http.c) until SIGINT or SIGTERM, then shuts down
 * cleanly: running generations are cancelled, connections closed, everything freed.
 * The listening socket is opened here (so --port 0 picks a free port, which is then printed
 * on stdout as "listening on http://HOST:PORT"); stdout carries nothing else, logs go to stderr.
 * Deliberately not here: TLS, API keys, adapters as extra models. */
#include <arpa/inet.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/serve_http.h"

static int usage(FILE *f) {
    fprintf(f, "usage: wick serve -m MODEL_DIR [--host ADDR] [--port N] [--parallel N] [--ctx N]\n"
               "                  [-t THREADS] [--alias NAME] [--queue-ms MS] [--max-body BYTES]\n"
               "                  [--kernels auto|ref] [--adapter [NAME=]DIR[:scale]]... [-v]\n"
               "OpenAI-compatible HTTP server: GET /health, GET /v1/models,\n"
               "POST /v1/completions, POST /v1/chat/completions (stream: Server-Sent Events).\n"
               "  --host ADDR      address to listen on (default 127.0.0.1)\n"
               "  --port N         port (default 8080; 0 = any free port)\n"
               "  --parallel N     concurrent generations, one session each (default 1)\n"
               "  --ctx N          context size per session (default min(model max, 4096))\n"
               "  -t, --threads N  threads per generation (default: all CPUs / parallel)\n"
               "  --alias NAME     model id reported to clients (default: folder name)\n"
               "  --queue-ms MS    how long a request waits for a free slot before 503\n"
               "                   (default 30000; 0 = answer 503 at once)\n"
               "  --max-body N     largest request body in bytes (default 8 MiB; larger: 413)\n"
               "  --adapter SPEC   load a PEFT LoRA folder and serve it as model NAME (default: the\n"
               "                   folder name); requests pick it with \"model\": \"NAME\", and the\n"
               "                   slot switches adapters per request without reloading anything\n"
               "  -v, --verbose    log each request on stderr\n");
    return f == stdout ? 0 : 2;
}

/* Opens a listening TCP socket on host:port; returns the fd or -1 (printed). */
static int listen_on(const char *host, long port, char *shown, size_t cap) {
    char ps[16];
    snprintf(ps, sizeof ps, "%ld", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *res = NULL;
    int e = getaddrinfo(host, ps, &hints, &res);
    if (e) {
        fprintf(stderr, "wick serve: cannot resolve --host %s: %s\n", host, gai_strerror(e));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 64) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "wick serve: cannot listen on %s:%ld: %m\n", host, port);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char addr[INET6_ADDRSTRLEN] = "?";
    int bound = (int)port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &in->sin_addr, addr, sizeof addr);
            bound = ntohs(in->sin_port);
            snprintf(shown, cap, "%s:%d", addr, bound);
        } else {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof addr);
            bound = ntohs(in6->sin6_port);
            snprintf(shown, cap, "[%s]:%d", addr, bound);
        }
    }
    return fd;
}

/* Last path component of a model folder, without trailing slashes. */
static char *folder_name(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t s = n;
    while (s > 0 && path[s - 1] != '/') s--;
    return strndup(path + s, n - s);
}

int cmd_serve(int argc, char **argv) {
    const char *model_path = NULL, *host = "127.0.0.1", *alias = NULL, *kernels = "auto";
    long port = 8080, parallel = 1, ctx = 0, threads = 0, queue_ms = 30000;
    long max_body = SERVE_MAX_BODY_DEFAULT;
    bool verbose = false;
    const char *adapter_specs[SERVE_MAX_ADAPTERS];
    int n_adapter_specs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout);
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model_path = argv[++i];
        else if (!strcmp(a, "--host") && has) host = argv[++i];
        else if (!strcmp(a, "--alias") && has) alias = argv[++i];
        else if (!strcmp(a, "--kernels") && has) kernels = argv[++i];
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) verbose = true;
        else if (!strcmp(a, "--adapter") && has) {
            if (n_adapter_specs == SERVE_MAX_ADAPTERS) {
                fprintf(stderr, "wick serve: at most %d adapters\n", SERVE_MAX_ADAPTERS);
                return 2;
            }
            adapter_specs[n_adapter_specs++] = argv[++i];
        }
        else if (!strcmp(a, "--port") && has) {
            if (!cli_parse_int("serve", a, argv[++i], 0, 65535, &port)) return 2;
        } else if (!strcmp(a, "--parallel") && has) {
            if (!cli_parse_int("serve", a, argv[++i], 1, 256, &parallel)) return 2;
        } else if (!strcmp(a, "--ctx") && has) {
            if (!cli_parse_int("serve", a, argv[++i], 0, 1L << 24, &ctx)) return 2;
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has) {
            if (!cli_parse_int("serve", a, argv[++i], 0, 1024, &threads)) return 2;
        } else if (!strcmp(a, "--queue-ms") && has) {
            if (!cli_parse_int("serve", a, argv[++i], 0, 86400000L, &queue_ms)) return 2;
        } else if (!strcmp(a, "--max-body") && has) {
            if (!cli_parse_int("serve", a, argv[++i], 1024, 1L << 30, &max_body)) return 2;
        } else {
            fprintf(stderr, "wick serve: unknown or incomplete option '%s'\n", a);
            return usage(stderr);
        }
    }
#ifndef WICK_HAVE_MHD
    fprintf(stderr, "wick serve: this build of wick has no libmicrohttpd (see README, Server)\n");
    return 1;
#endif
    if (!model_path) {
        fprintf(stderr, "wick serve: -m MODEL_DIR is required\n");
        return usage(stderr);
    }
    if (threads == 0 && parallel > 1) { /* share the CPUs between the slots */
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        threads = ncpu / parallel > 0 ? ncpu / parallel : 1;
    }

    /* SIGINT/SIGTERM are blocked before any thread starts (libmicrohttpd's inherit the mask)
     * and taken synchronously by sigwait below; SIGPIPE from a vanished client is ignored. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    serve_ctx c;
    memset(&c, 0, sizeof c);
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.freed, NULL);
    c.queue_ms = (int)queue_ms;
    c.max_body = (size_t)max_body;
    c.verbose = verbose;
    char *name = folder_name(model_path);
    c.model_id = alias ? alias : name;
    int rc = 1, fd = -1;
    struct MHD_Daemon *d = NULL;

    wick_model_params mp = wick_model_params_default();
    mp.kernels = kernels;
    if (wick_model_load(model_path, &mp, &c.model) != WICK_OK) {
        cli_fail("serve", "cannot load model");
        goto out;
    }
    if (!(c.tok = wick_model_tokenizer(c.model))) {
        fprintf(stderr, "wick serve: %s has no tokenizer.json; the server needs one\n",
                model_path);
        goto out;
    }
    for (int i = 0; i < n_adapter_specs; i++) {
        /* "[NAME=]DIR[:scale]"; NAME defaults to the folder name */
        const char *spec = adapter_specs[i], *eq = strchr(spec, '=');
        char *dir = NULL, *nm = eq ? strndup(spec, (size_t)(eq - spec)) : NULL;
        float scale = 1.0f;
        if (!cli_parse_adapter("serve", eq ? eq + 1 : spec, &dir, &scale)) {
            free(nm);
            goto out;
        }
        if (!nm) nm = folder_name(dir);
        if (!nm || !strcmp(nm, c.model_id)) {
            fprintf(stderr, "wick serve: adapter name '%s' clashes with the model id\n",
                    nm ? nm : "?");
            free(nm);
            free(dir);
            goto out;
        }
        wick_status ast = wick_adapter_load(c.model, dir, nm);
        free(dir);
        if (ast != WICK_OK) {
            free(nm);
            cli_fail("serve", "cannot load the adapter");
            goto out;
        }
        c.adapter_names[c.n_adapters] = nm;
        c.adapter_scales[c.n_adapters++] = scale;
    }
    c.n_vocab = wick_tokenizer_vocab_size(c.tok);
    wick_model_info info;
    if (wick_model_get_info(c.model, &info) == WICK_OK && info.n_vocab < c.n_vocab)
        c.n_vocab = info.n_vocab; /* ids the model can embed */
    c.slots = calloc((size_t)parallel, sizeof *c.slots);
    if (!c.slots) goto out;
    wick_session_params sp = wick_session_params_default();
    sp.n_ctx = (int)ctx;
    sp.n_threads = (int)threads;
    for (c.n_slots = 0; c.n_slots < parallel; c.n_slots++) {
        if (wick_session_create(c.model, &sp, &c.slots[c.n_slots].session) != WICK_OK) {
            cli_fail("serve", "cannot create session");
            goto out;
        }
    }
    char shown[96] = "?";
    if ((fd = listen_on(host, port, shown, sizeof shown)) < 0) goto out;
    /* one thread per connection: generations in flight plus idle keep-alive clients */
    if (!(d = serve_http_start(&c, fd, (int)parallel * 4 + 32))) goto out;
    fd = -1; /* owned by the daemon now */
    printf("listening on http://%s (model %s, %ld slot%s, ctx %d)\n", shown, c.model_id,
           parallel, parallel == 1 ? "" : "s", wick_session_n_ctx(c.slots[0].session));
    fflush(stdout);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "wick serve: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    rc = 0;
out:
    serve_http_stop(&c, d);
    if (fd >= 0) close(fd);
    for (int i = 0; i < c.n_slots; i++) wick_session_free(c.slots[i].session);
    free(c.slots);
    wick_model_free(c.model);
    for (int i = 0; i < c.n_adapters; i++) free(c.adapter_names[i]);
    pthread_cond_destroy(&c.freed);
    pthread_mutex_destroy(&c.mu);
    free(name);
    return rc;
}
