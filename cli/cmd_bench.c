/* cmd_bench.c — `wick bench <what>`: benchmark programs built into the tool.
 *   generate: llama-bench-like prefill/decode tokens/s with this machine's measured read
 *             bandwidth and decode's share of the bandwidth limit.
 * Each figure is the mean ± sd over repetitions after one warm-up run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/membw.h"
#include "base/pool.h"
#include "cli/cli.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void mean_sd(const double *x, int n, double *mean, double *sd) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) ss += (x[i] - *mean) * (x[i] - *mean);
    *sd = n > 1 ? sqrt(ss / (n - 1)) : 0.0;
}

static int parse_list(const char *s, int *out, int cap) {
    int n = 0;
    while (*s && n < cap) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > 1 << 20) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

static int usage_generate(FILE *f) {
    fprintf(f, "usage: wick bench generate -m MODEL [-t THREADS] [-p 64,512] [-n 32,128] [-r REPS]\n"
               "                           [--kernels auto|ref]\n"
               "Prefill (pp) and decode (tg) tokens/s, mean ± sd over REPS runs, with the\n"
               "machine's read bandwidth measured in the same run.\n");
    return f == stdout ? 0 : 2;
}

static int bench_generate(int argc, char **argv) {
    const char *model = NULL, *kern = "auto";
    int pp[16] = {64, 512}, tg[16] = {32, 128}, npp = 2, ntg = 2;
    long threads = 0, reps = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage_generate(stdout);
        else if (!strcmp(a, "-m") && has) model = argv[++i];
        else if (!strcmp(a, "--kernels") && has) kern = argv[++i];
        else if (!strcmp(a, "-t") && has) {
            if (!cli_parse_int("bench", a, argv[++i], 0, 1024, &threads)) return 2;
        } else if (!strcmp(a, "-r") && has) {
            if (!cli_parse_int("bench", a, argv[++i], 1, 100, &reps)) return 2;
        } else if (!strcmp(a, "-p") && has) {
            if ((npp = parse_list(argv[++i], pp, 16)) < 0) return usage_generate(stderr);
        } else if (!strcmp(a, "-n") && has) {
            if ((ntg = parse_list(argv[++i], tg, 16)) < 0) return usage_generate(stderr);
        } else {
            fprintf(stderr, "wick bench generate: unknown or incomplete option '%s'\n", a);
            return usage_generate(stderr);
        }
    }
    if (!model) return usage_generate(stderr);
    if (threads == 0) threads = pool_cpu_count();
    wick_model_params mp = wick_model_params_default();
    mp.kernels = kern;
    wick_model *m = NULL;
    if (wick_model_load(model, &mp, &m) != WICK_OK) return cli_fail("bench", "cannot load model");
    wick_model_info in;
    wick_model_get_info(m, &in);
    int max_ctx = 1;
    for (int i = 0; i < npp; i++) max_ctx = pp[i] > max_ctx ? pp[i] : max_ctx;
    for (int i = 0; i < ntg; i++) max_ctx = tg[i] > max_ctx ? tg[i] : max_ctx;
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = (int)threads;
    sp.n_ctx = max_ctx;
    sp.n_batch = max_ctx;
    wick_session *s = NULL;
    if (wick_session_create(m, &sp, &s) != WICK_OK) {
        wick_model_free(m);
        return cli_fail("bench", "cannot create session");
    }
    wk_pool *pool = pool_create((int)threads);
    double bw = membw_read_gbs(pool, (size_t)512 << 20, 5);
    pool_free(pool);

    int32_t *ids = malloc(sizeof(int32_t) * max_ctx);
    uint64_t x = 12345;
    for (int i = 0; i < max_ctx; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((x >> 33) % (uint64_t)in.n_vocab);
    }
    float *logits = malloc(sizeof(float) * in.n_vocab);
    printf("model: %s (%s, %.1f M params, %.1f MiB weights), kernels %s, %ld threads\n", model,
           in.weight_dtype, in.n_params / 1e6, in.weight_bytes / 1048576.0, in.kernels, threads);
    printf("memory read bandwidth (measured now, %ld threads): %.1f GB/s\n\n", threads, bw);
    printf("| test   |     tokens/s |   ms/token | GB/s (weights+KV) | share of bandwidth |\n");
    printf("|--------|--------------|------------|-------------------|--------------------|\n");
    double *t = malloc(sizeof(double) * (reps + 1));
    for (int i = 0; i < npp; i++) {
        for (int r = 0; r <= reps; r++) {
            wick_session_reset(s);
            double t0 = now_s();
            wick_session_eval(s, ids, pp[i], WICK_LOGITS_LAST, logits);
            t[r] = pp[i] / (now_s() - t0);
        }
        double mean, sd;
        mean_sd(t + 1, (int)reps, &mean, &sd);
        printf("| pp%-4d | %7.1f ± %-3.0f | %10.2f |                 - |                  - |\n",
               pp[i], mean, sd, 1e3 / mean);
    }
    const int64_t kv_per_pos = 2LL * in.n_layer * in.n_kv_head * in.head_dim * 4;
    for (int i = 0; i < ntg; i++) {
        for (int r = 0; r <= reps; r++) {
            wick_session_reset(s);
            double t0 = now_s();
            for (int k = 0; k < tg[i]; k++) wick_session_eval(s, &ids[k], 1, WICK_LOGITS_LAST, logits);
            t[r] = tg[i] / (now_s() - t0);
        }
        double mean, sd;
        mean_sd(t + 1, (int)reps, &mean, &sd);
        /* average bytes per token: all streamed weights + the KV cache read so far */
        double bytes = (double)in.decode_bytes + kv_per_pos * (tg[i] + 1) / 2.0;
        double gbs = bytes * mean / 1e9;
        printf("| tg%-4d | %7.2f ± %-3.1f | %10.2f | %17.1f | %17.0f%% |\n", tg[i], mean, sd,
               1e3 / mean, gbs, 100.0 * gbs / bw);
    }
    free(t);
    free(ids);
    free(logits);
    wick_session_free(s);
    wick_model_free(m);
    return 0;
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: wick bench generate ...   prefill/decode tokens/s vs memory bandwidth\n"
                "       wick bench stream ...     streaming and sampler overhead vs plain generation\n");
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "generate")) return bench_generate(argc - 1, argv + 1);
    if (!strcmp(argv[1], "stream")) return bench_stream(argc - 1, argv + 1);
    fprintf(stderr, "wick bench: unknown benchmark '%s'\n", argv[1]);
    return 2;
}
