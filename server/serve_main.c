/* serve_main.c — `wick serve`: loads a model, creates one engine on it (--parallel
 * generations decoded together, a queue behind them) and serves the OpenAI-compatible HTTP
 * API (server/serve_http.c) until a signal:
 *   SIGTERM  drain: stop listening, answer new requests on open connections with 503, let
 *            running generations finish for up to --drain-grace seconds, then cancel the rest
 *            (each stream still gets its final chunk and [DONE]), then exit.
 *   SIGINT   the same with no grace (a second signal of either kind also ends the grace).
 * The listening socket is opened here (so --port 0 picks a free port, which is then printed
 * on stdout as "listening on http://HOST:PORT"); stdout carries nothing else, logs go to stderr.
 * Deliberately not here: TLS. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "server/server.h"

/* the stop signals' pipe: written by on_stop_signal, read by wait_stop_signal */
static int g_sig_pipe[2] = {-1, -1};

static void on_stop_signal(int sig) {
    const int saved = errno;
    const unsigned char b = (unsigned char)sig;
    ssize_t w = write(g_sig_pipe[1], &b, 1); /* full pipe: a signal is pending already */
    (void)w;
    errno = saved;
}

/* From here on SIGINT/SIGTERM go through the pipe; blocked in this thread (and the threads it
   starts) until serving. */
static void catch_stop_signals(const sigset_t *sigs) {
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Waits up to TIMEOUT_MS (-1: for ever) for SIGINT or SIGTERM; returns it, or 0. */
static int wait_stop_signal(int timeout_ms) {
    struct pollfd p = {.fd = g_sig_pipe[0], .events = POLLIN};
    for (;;) {
        const int n = poll(&p, 1, timeout_ms);
        if (n < 0 && errno == EINTR) continue; /* the handler ran on this thread: read it */
        if (n <= 0) return 0;
        unsigned char b = 0;
        if (read(g_sig_pipe[0], &b, 1) == 1) return b;
        if (errno != EAGAIN && errno != EINTR) return 0;
    }
}

static int usage(FILE *f) {
    fprintf(f, "usage: wick serve -m MODEL [--host ADDR] [--port N] [--parallel N] [--queue N]\n"
               "                  [--ctx N] [--batch N] [--kv-type TYPE] [--kv-size N] [-t THREADS]\n"
               "                  [--alias NAME] [--queue-ms MS] [--timeout S] [--stall-ms MS]\n"
               "                  [--max-conns N] [--drain-grace S] [--max-body BYTES]\n"
               "                  [--stream-buffer BYTES] [--no-prefix-cache] [--http-threads N]\n"
               "                  [--kernels auto|ref] [--device cpu|cuda[:N]]\n"
               "                  [--adapter [NAME=]DIR[:scale]]... [--no-adapter-api]\n"
               "                  [--api-key KEY]... [--api-key-file FILE] [-q] [-v]\n"
               "OpenAI-compatible HTTP server: POST /v1/completions, POST /v1/chat/completions\n"
               "(stream: Server-Sent Events), GET /v1/models, GET /v1/models/ID, GET /health,\n"
               "GET /metrics (Prometheus), POST /tokenize, POST /detokenize, and adapters at run\n"
               "time: POST /v1/adapters {\"name\", \"path\", \"scale\"}, DELETE /v1/adapters/NAME.\n"
               "Requests are decoded together (continuous batching): one pass over the weights\n"
               "per step serves every running generation.\n"
               "  --host ADDR      address to listen on (default 127.0.0.1)\n"
               "  --port N         port (default 8080; 0 = any free port)\n"
               "  --parallel N     generations decoded together (default 4)\n"
               "  --queue N        requests that may wait for a slot; more get 503 + Retry-After\n"
               "                   (default 64)\n"
               "  --queue-ms MS    longest wait in the queue before 503 (default 60000; 0 = none)\n"
               "  --ctx N          most tokens per sequence (default min(model max, 4096))\n"
               "  --batch N        most tokens per step: decode rows plus a prompt chunk; smaller\n"
               "                   keeps streams smooth while prompts are read (default 128)\n"
               "  --kv-type T      KV cache elements: f16 (default), bf16, q8_0, f32\n"
               "  --kv-size N      KV cache capacity in tokens, all sequences (default parallel x ctx,\n"
               "                   committed as used); finished prompts stay cached for reuse\n"
               "  --no-prefix-cache  do not share or keep KV blocks of equal prompt prefixes\n"
               "  -t, --threads N  compute threads (default: all CPUs)\n"
               "  --http-threads N threads that parse and write HTTP (default 2)\n"
               "  --alias NAME     model id reported to clients (default: folder name)\n"
               "  --timeout S      close connections idle (or not reading) this long (default 30)\n"
               "  --stream-buffer N  unread bytes of a stream before its generation pauses\n"
               "                   (default 256 KiB)\n"
               "  --stall-ms MS    cancel a paused stream whose client reads nothing this long\n"
               "                   (default 30000)\n"
               "  --max-conns N    open connections at most (default 1024)\n"
               "  --drain-grace S  on SIGTERM, how long running generations may finish (default 30)\n"
               "  --max-body N     largest request body in bytes (default 8 MiB; larger: 413)\n"
               "  -a, --adapter SPEC  load a PEFT LoRA folder and serve it as model NAME (default: the\n"
               "                   folder name); requests pick it with \"model\": \"NAME\", and\n"
               "                   requests with different adapters share a batch\n"
               "  --no-adapter-api refuse POST/DELETE /v1/adapters (403); --adapter-api allows\n"
               "                   them; by default they are allowed on a loopback address or\n"
               "                   with API keys, refused otherwise (they read the server's disk)\n"
               "  --embedding-model DIR  also serve POST /v1/embeddings with this encoder folder\n"
               "                   (BERT family, sentence-transformers layout); -m may name an\n"
               "                   encoder instead, for an embeddings-only server\n"
               "  --api-key KEY    require 'Authorization: Bearer KEY' on every endpoint but\n"
               "                   /health (repeatable: any of the keys is accepted)\n"
               "  --api-key-file F keys, one per line ('#' comments); combines with --api-key\n"
               "  -q, --quiet      no per-request log line on stderr\n"
               "  -v, --verbose    also log each request as it arrives\n");
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
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
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

typedef struct driver {
    serve_ctx *c;
    atomic_bool stop;
    pthread_t th;
} driver;

/* The engine's driver: steps while there is work, sleeps on the engine otherwise, sweeps
 * every ~100 ms. */
static void *drive(void *arg) {
    driver *d = arg;
    struct timespec last = {0};
    while (!atomic_load(&d->stop)) {
        int active = 0;
        if (wick_engine_step(d->c->eng, &active) != WICK_OK)
            fprintf(stderr, "wick serve: engine step failed: %s\n", wick_last_error());
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - last.tv_sec) * 1000 + (now.tv_nsec - last.tv_nsec) / 1000000 >= 100) {
            serve_sweep(d->c);
            last = now;
        }
        if (!active) wick_engine_wait(d->c->eng, 100);
    }
    return NULL;
}

static wick_kv_type parse_kv(const char *s) {
    if (!strcmp(s, "f16")) return WICK_KV_F16;
    if (!strcmp(s, "bf16")) return WICK_KV_BF16;
    if (!strcmp(s, "q8_0")) return WICK_KV_Q8_0;
    if (!strcmp(s, "f32")) return WICK_KV_F32;
    return (wick_kv_type)-1;
}

/* Waits until no generation is in flight or `ms` passed; true when none is left. */
static bool wait_idle(serve_ctx *c, long ms) {
    for (long t = 0; t < ms; t += 20) {
        if (atomic_load(&c->inflight) == 0) return true;
        usleep(20000);
    }
    return atomic_load(&c->inflight) == 0;
}

int cmd_serve(int argc, char **argv) {
    const char *model_path = NULL, *host = "127.0.0.1", *alias = NULL, *kernels = "auto";
    const char *device = NULL;
    long port = 8080, parallel = 4, queue = 64, ctx = 0, threads = 0, queue_ms = 60000;
    long batch = 128, kv_size = 0, timeout_s = 30, stall_ms = 30000, max_conns = 1024;
    long grace_s = 30, http_threads = 2;
    long max_body = SERVE_MAX_BODY_DEFAULT, out_bound = SERVE_OUT_BOUND;
    wick_kv_type kv_type = WICK_KV_F16;
    bool verbose = false, prefix_cache = true;
    const char *adapter_specs[SERVE_MAX_ADAPTERS];
    int n_adapter_specs = 0;
    const char *key_args[64], *key_file = NULL;
    int n_key_args = 0;
    bool quiet = false, adapter_api = true, adapter_api_set = false;
    const char *emb_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout);
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model_path = argv[++i];
        else if (!strcmp(a, "--host") && has) host = argv[++i];
        else if (!strcmp(a, "--alias") && has) alias = argv[++i];
        else if (!strcmp(a, "--kernels") && has) kernels = argv[++i];
        else if (!strcmp(a, "--device") && has) device = argv[++i];
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) verbose = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = true;
        else if (!strcmp(a, "--no-adapter-api")) adapter_api = false, adapter_api_set = true;
        else if (!strcmp(a, "--adapter-api")) adapter_api = true, adapter_api_set = true;
        else if (!strcmp(a, "--api-key-file") && has) key_file = argv[++i];
        else if (!strcmp(a, "--embedding-model") && has) emb_path = argv[++i];
        else if (!strcmp(a, "--api-key") && has) {
            if (n_key_args == 64) {
                fprintf(stderr, "wick serve: at most 64 --api-key options (use --api-key-file)\n");
                return 2;
            }
            key_args[n_key_args++] = argv[++i];
        }
        else if (!strcmp(a, "--no-prefix-cache")) prefix_cache = false;
        else if (!strcmp(a, "--kv-type") && has) {
            kv_type = parse_kv(argv[++i]);
            if ((int)kv_type < 0) {
                fprintf(stderr, "wick serve: --kv-type %s: expected f16, bf16, q8_0 or f32\n",
                        argv[i]);
                return 2;
            }
        } else if ((!strcmp(a, "--adapter") || !strcmp(a, "-a")) && has) {
            if (n_adapter_specs == SERVE_MAX_ADAPTERS) {
                fprintf(stderr, "wick serve: at most %d adapters\n", SERVE_MAX_ADAPTERS);
                return 2;
            }
            adapter_specs[n_adapter_specs++] = argv[++i];
        }
        else if (!strcmp(a, "--port") && has) {
            if (!cli_parse_int("serve", a, argv[++i], 0, 65535, &port)) return 2;
        } else if (!strcmp(a, "--parallel") && has) {
            if (!cli_parse_int("serve", a, argv[++i], 1, 1024, &parallel)) return 2;
        } else if (!strcmp(a, "--queue") && has) {
            if (!cli_parse_int("serve", a, argv[++i], 0, 100000, &queue)) return 2;
        } else if (!strcmp(a, "--ctx") && has) {
            if (!cli_parse_int("serve", a, argv[++i], 0, 1L << 24, &ctx)) return 2;
        } else if (!strcmp(a, "--batch") && has) {
            if (!cli_parse_int("serve", a, argv[++i], 1, 65536, &batch)) return 2;
        } else if (!strcmp(a, "--kv-size") && has) {
            if (!cli_parse_int("serve", a, argv[++i], 0, 1L << 30, &kv_size)) return 2;
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has) {
            if (!cli_parse_int("serve", a, argv[++i], 0, 1024, &threads)) return 2;
        } else if (!strcmp(a, "--http-threads") && has) {
            if (!cli_parse_int("serve", a, argv[++i], 1, 64, &http_threads)) return 2;
        } else if (!strcmp(a, "--queue-ms") && has) {
            if (!cli_parse_int("serve", a, argv[++i], 0, 86400000L, &queue_ms)) return 2;
        } else if (!strcmp(a, "--timeout") && has) {
            if (!cli_parse_int("serve", a, argv[++i], 1, 86400, &timeout_s)) return 2;
        } else if (!strcmp(a, "--stall-ms") && has) {
            if (!cli_parse_int("serve", a, argv[++i], 1, 86400000L, &stall_ms)) return 2;
        } else if (!strcmp(a, "--max-conns") && has) {
            if (!cli_parse_int("serve", a, argv[++i], 1, 1000000, &max_conns)) return 2;
        } else if (!strcmp(a, "--drain-grace") && has) {
            if (!cli_parse_int("serve", a, argv[++i], 0, 86400, &grace_s)) return 2;
        } else if (!strcmp(a, "--stream-buffer") && has) {
            if (!cli_parse_int("serve", a, argv[++i], 1024, 1L << 30, &out_bound)) return 2;
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
        fprintf(stderr, "wick serve: -m MODEL is required\n");
        return usage(stderr);
    }
    /* many client connections need descriptors: raise the soft limit to the hard one */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* SIGINT/SIGTERM: a handler writes the signal into a pipe that the main thread reads
     * (catch_stop_signals, installed once the model is loaded: until then a signal ends the
     * process at once, as it should while nothing is served). Not sigwait: threads started
     * before main (OpenBLAS's pool starts in a library constructor) keep an open mask, and a
     * process signal that the kernel hands to one of them while the main thread is not
     * inside sigwait took the default action: the server died instead of draining. A handler
     * runs whichever thread takes the signal. The signals are blocked while our own threads
     * start (libmicrohttpd's, the engine's and the driver inherit the mask, so their system
     * calls are not interrupted) and unblocked in the main thread once serving. SIGPIPE from
     * a vanished client is ignored. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    if (pipe(g_sig_pipe) != 0) {
        fprintf(stderr, "wick serve: cannot create a pipe: %s\n", strerror(errno));
        return 1;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(g_sig_pipe[i], F_SETFD, FD_CLOEXEC);
        fcntl(g_sig_pipe[i], F_SETFL, O_NONBLOCK);
    }

    serve_ctx c;
    memset(&c, 0, sizeof c);
    pthread_mutex_init(&c.jobs_mu, NULL);
    pthread_mutex_init(&c.adapters_mu, NULL);
    pthread_mutex_init(&c.emb_mu, NULL);
    serve_metrics_init(&c.metrics);
    c.adapter_api = adapter_api;
    c.log_requests = !quiet;
    c.parallel = (int)parallel;
    c.queue = (int)queue;
    c.queue_ms = (int)queue_ms;
    c.stall_ms = (int)stall_ms;
    c.timeout_s = (int)timeout_s;
    c.max_body = (size_t)max_body;
    c.out_bound = (size_t)out_bound;
    c.verbose = verbose;
    c.id_base = (long long)time(NULL);
    char *name = folder_name(model_path);
    c.model_id = alias ? alias : name;
    int rc = 1, fd = -1;
    struct MHD_Daemon *d = NULL;
    driver drv = {.c = &c};
    bool driving = false;
    char *emb_name = NULL;
    for (int i = 0; i < n_key_args; i++)
        if (!serve_keys_add(&c, key_args[i])) goto out;
    if (key_file && !serve_keys_from_file(&c, key_file)) goto out;
    if (!adapter_api_set && c.n_keys == 0 && strcmp(host, "127.0.0.1") != 0 && strcmp(host, "::1") != 0 &&
        strcmp(host, "localhost") != 0) {
        c.adapter_api = false;
        fprintf(stderr, "wick serve: POST/DELETE /v1/adapters are off (listening on %s without an API "
                        "key); --adapter-api turns them on\n", host);
    }

    wick_model_params mp = wick_model_params_default();
    mp.kernels = kernels;
    mp.device = device;
    wick_embedder_params emp = wick_embedder_params_default();
    emp.kernels = kernels;
    emp.n_threads = (int)threads;
    if (wick_model_load(model_path, &mp, &c.model) != WICK_OK) {
        /* an encoder folder is served for embeddings alone */
        char why[600];
        snprintf(why, sizeof why, "%s", wick_last_error());
        if (emb_path || wick_embedder_load(model_path, &emp, &c.emb) != WICK_OK) {
            fprintf(stderr, "wick serve: cannot load model: %s\n", why);
            goto out;
        }
        if (n_adapter_specs || device) {
            fprintf(stderr, "wick serve: %s is an embedding model: --adapter and --device do not "
                            "apply\n", model_path);
            goto out;
        }
        c.emb_id = c.model_id;
        if (!(c.tok = wick_embedder_tokenizer(c.emb))) {
            fprintf(stderr, "wick serve: %s has no tokenizer; the server needs one\n", model_path);
            goto out;
        }
    } else if (!(c.tok = wick_model_tokenizer(c.model))) {
        fprintf(stderr, "wick serve: %s has no tokenizer.json; the server needs one\n",
                model_path);
        goto out;
    }
    if (emb_path) {
        if (wick_embedder_load(emb_path, &emp, &c.emb) != WICK_OK) {
            cli_fail("serve", "cannot load the --embedding-model");
            goto out;
        }
        if (!wick_embedder_tokenizer(c.emb)) {
            fprintf(stderr, "wick serve: --embedding-model %s has no tokenizer\n", emb_path);
            goto out;
        }
        if (!(emb_name = folder_name(emb_path)) || !strcmp(emb_name, c.model_id)) {
            fprintf(stderr, "wick serve: the embedding model's name '%s' clashes with the model id\n",
                    emb_name ? emb_name : "?");
            goto out;
        }
        c.emb_id = emb_name;
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
        if (ast != WICK_OK) {
            free(nm);
            free(dir);
            cli_fail("serve", "cannot load the adapter");
            goto out;
        }
        c.adapter_names[c.n_adapters] = nm;
        c.adapter_paths[c.n_adapters] = dir;
        c.adapter_created[c.n_adapters] = c.id_base;
        c.adapter_scales[c.n_adapters++] = scale;
    }
    c.n_vocab = wick_tokenizer_vocab_size(c.tok);
    wick_model_info info = {0};
    if (c.model && wick_model_get_info(c.model, &info) == WICK_OK && info.n_vocab < c.n_vocab)
        c.n_vocab = info.n_vocab; /* ids the model can embed */
    char shown[96] = "?";
    catch_stop_signals(&sigs);
    if (!c.model) { /* embeddings only: no engine, no driver */
        if ((fd = listen_on(host, port, shown, sizeof shown)) < 0) goto out;
        if (!(d = serve_http_start(&c, fd, (int)max_conns, (int)http_threads))) goto out;
        fd = -1;
        printf("listening on http://%s (embedding model %s, dim %d, max length %d)\n", shown,
               c.model_id, wick_embedder_dim(c.emb), wick_embedder_max_length(c.emb));
        fflush(stdout);
        goto serving;
    }
    wick_engine_params ep = wick_engine_params_default();
    ep.n_threads = (int)threads;
    ep.max_seqs = (int)parallel;
    ep.n_ctx = (int)ctx;
    cli_warn_ctx("serve", c.model, ctx);
    ep.n_batch = (int)(batch < parallel ? parallel : batch);
    ep.kv_tokens = (int)kv_size;
    ep.kv_type = kv_type;
    ep.prefix_cache = prefix_cache;
    if (wick_engine_create(c.model, &ep, &c.eng) != WICK_OK) {
        cli_fail("serve", "cannot create the engine");
        goto out;
    }
    c.n_ctx = ep.n_ctx ? ep.n_ctx : (info.n_ctx_train < 4096 ? info.n_ctx_train : 4096);
    serve_chat_eos_init(&c, info.eos_ids, info.n_eos);
    if (pthread_create(&drv.th, NULL, drive, &drv) != 0) {
        fprintf(stderr, "wick serve: cannot start the engine thread\n");
        goto out;
    }
    driving = true;
    if ((fd = listen_on(host, port, shown, sizeof shown)) < 0) goto out;
    if (!(d = serve_http_start(&c, fd, (int)max_conns, (int)http_threads))) goto out;
    fd = -1; /* owned by the daemon now */
    printf("listening on http://%s (model %s, %ld parallel, queue %ld, ctx %d)\n", shown,
           c.model_id, parallel, queue, c.n_ctx);
    fflush(stdout);
serving:;
    pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
    const int sig = wait_stop_signal(-1);
    fprintf(stderr, "wick serve: %s, %s\n", sig == SIGINT ? "SIGINT" : "SIGTERM",
            sig == SIGTERM && grace_s > 0 ? "draining" : "shutting down");
    atomic_store(&c.draining, true);
    serve_http_quiesce(d);
    if (sig == SIGTERM && grace_s > 0 && atomic_load(&c.inflight) > 0) {
        /* let running generations finish; a second signal ends the grace at once */
        for (long t = 0; t < grace_s * 10 && atomic_load(&c.inflight) > 0; t++) {
            if (wait_stop_signal(100) > 0) break;
        }
    }
    serve_cancel_all(&c);
    if (!wait_idle(&c, 10000))
        fprintf(stderr, "wick serve: %d generations did not end in time\n",
                atomic_load(&c.inflight));
    usleep(100000); /* let the last bytes reach the clients */
    rc = 0;
out:
    if (driving) {
        atomic_store(&drv.stop, true);
        wick_engine_wake(c.eng);
        pthread_join(drv.th, NULL);
    }
    serve_http_stop(d);
    if (fd >= 0) close(fd);
    wick_engine_free(c.eng);
    wick_model_free(c.model);
    wick_embedder_free(c.emb);
    free(emb_name);
    pthread_mutex_destroy(&c.emb_mu);
    for (int i = 0; i < c.n_adapters; i++) free(c.adapter_names[i]), free(c.adapter_paths[i]);
    for (int i = 0; i < c.n_keys; i++) free(c.keys[i]);
    free(c.keys);
    pthread_mutex_destroy(&c.adapters_mu);
    pthread_mutex_destroy(&c.jobs_mu);
    free(name);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    for (int i = 0; i < 2; i++) close(g_sig_pipe[i]), g_sig_pipe[i] = -1;
    return rc;
}
