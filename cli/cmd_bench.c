/* cmd_bench.c — `wick bench <what>`: benchmark programs built into the tool.
 *   generate: bench_generate.c (prefill/decode tokens/s, depth, llama-bench side by side).
 *   adapters: LoRA switch latency (median/p99 of 100k set-adapter calls), PEFT adapter load
 *             time, decode tokens/s with no / unmerged / merged adapters (interleaved, medians),
 *             and merge time. Random adapters are made here, so it runs on any model.
 * Each figure is the mean ± sd over repetitions after one warm-up run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/pool.h"
#include "cli/cli.h"
#include "lora/lora.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static int usage_adapters(FILE *f) {
    fprintf(f, "usage: wick bench adapters -m MODEL [-t|--threads N] [-n TOKENS] [-r REPS]\n"
               "                           [--save-adapter DIR] [--kernels auto|ref]\n"
               "LoRA benchmarks with seeded random adapters: (a) switch latency, median and p99\n"
               "of 100k wick_session_set_adapter calls alternating between two adapters; (b) load\n"
               "time of a PEFT folder with r=16 on all 7 projections; (c) decode tokens/s with no\n"
               "adapter, unmerged r=8 q/v, unmerged r=16 all, merged r=16 all (interleaved, median\n"
               "of REPS); (d) merge time. --save-adapter also keeps the r=16 PEFT folder in DIR.\n");
    return f == stdout ? 0 : 2;
}

static double decode_tps(wick_session *s, const int32_t *ids, int n, float *logits) {
    wick_session_reset(s);
    wick_session_eval(s, ids, 1, WICK_LOGITS_LAST, logits);  /* first token outside the timing */
    double t0 = cli_now_s();
    for (int k = 1; k <= n; k++) wick_session_eval(s, &ids[k], 1, WICK_LOGITS_LAST, logits);
    return n / (cli_now_s() - t0);
}

static int bench_adapters(int argc, char **argv) {
    const char *model = NULL, *kern = "auto", *save = NULL;
    long threads = 0, reps = 5, ntok = 32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage_adapters(stdout);
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model = argv[++i];
        else if (!strcmp(a, "--kernels") && has) kern = argv[++i];
        else if (!strcmp(a, "--save-adapter") && has) save = argv[++i];
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has) {
            if (!cli_parse_int("bench", a, argv[++i], 0, 1024, &threads)) return 2;
        } else if (!strcmp(a, "-r") && has) {
            if (!cli_parse_int("bench", a, argv[++i], 1, 100, &reps)) return 2;
        } else if (!strcmp(a, "-n") && has) {
            if (!cli_parse_int("bench", a, argv[++i], 1, 4000, &ntok)) return 2;
        } else {
            fprintf(stderr, "wick bench adapters: unknown or incomplete option '%s'\n", a);
            return usage_adapters(stderr);
        }
    }
    if (!model) return usage_adapters(stderr);
    if (threads == 0) threads = pool_cpu_count();
    wick_model_params mp = wick_model_params_default();
    mp.kernels = kern;
    mp.load_tokenizer = false;
    wick_model *m = NULL, *merged = NULL;
    if (wick_model_load(model, &mp, &m) != WICK_OK) return cli_fail("bench", "cannot load model");
    wick_model_info in;
    wick_model_get_info(m, &in);
    const unsigned all = (1u << LORA_N_PROJ) - 1, qv = (1u << LORA_Q) | (1u << LORA_V);
    wick_adapter *a16 = NULL, *a8 = NULL;
    int rc = 0;
    wick_session *s = NULL, *sm = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    double *t = NULL;
    char tmpl[] = "/tmp/wick-bench-adapter-XXXXXX";
    const char *dir = save;
    if (lora_adapter_random(m, 16, 32.0f, all, 1, &a16) || lora_registry_add(m, a16, "r16-all") ||
        lora_adapter_random(m, 8, 16.0f, qv, 2, &a8) || lora_registry_add(m, a8, "r8-qv")) {
        rc = cli_fail("bench", "cannot make random adapters");
        goto out;
    }
    if (!dir && !(dir = mkdtemp(tmpl))) {
        fprintf(stderr, "wick bench: cannot create a temp folder\n");
        rc = 1;
        goto out;
    }
    if (wick_adapter_save(m, "r16-all", dir) != WICK_OK) {
        rc = cli_fail("bench", "cannot save the random adapter");
        goto out;
    }
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = (int)threads;
    sp.n_ctx = (int)ntok + 2;
    if (wick_session_create(m, &sp, &s) != WICK_OK) {
        rc = cli_fail("bench", "cannot create session");
        goto out;
    }
    printf("model: %s (%s, %.1f M params), kernels %s, %ld threads\n", model, in.weight_dtype,
           in.n_params / 1e6, in.kernels, threads);
    printf("(the machine may be shared: every figure is a median over repetitions)\n\n");

    /* (a) switch latency */
    const int N_SW = 100000;
    t = malloc(sizeof(double) * (N_SW > reps + 1 ? N_SW : reps + 1));
    wick_session_set_adapter(s, "r16-all", 1.0f);  /* grows the scratch once */
    for (int i = 0; i < N_SW; i++) {
        const char *name = i & 1 ? "r16-all" : "r8-qv";
        struct timespec a0, a1;
        clock_gettime(CLOCK_MONOTONIC, &a0);
        wick_session_set_adapter(s, name, 1.0f);
        clock_gettime(CLOCK_MONOTONIC, &a1);
        t[i] = (a1.tv_sec - a0.tv_sec) * 1e9 + (a1.tv_nsec - a0.tv_nsec);
    }
    double sw_med = median(t, N_SW), sw_p99 = t[(int)(0.99 * N_SW)];
    printf("(a) switch latency, %d calls alternating r8-qv / r16-all: median %.0f ns, p99 %.0f ns "
           "(goal: median <= 1000 ns; includes ~20 ns of clock_gettime)\n", N_SW, sw_med, sw_p99);

    /* (b) load time of the r=16 all-projection PEFT folder (warm page cache) */
    int nl = (int)reps + 1;
    for (int r = 0; r < nl; r++) {
        double t0 = cli_now_s();
        if (wick_adapter_load(m, dir, "loadtest") != WICK_OK) {
            rc = cli_fail("bench", "cannot load the saved adapter");
            goto out;
        }
        t[r] = (cli_now_s() - t0) * 1e3;
        wick_adapter_unload(m, "loadtest");
    }
    printf("(b) load of a PEFT adapter, r=16 on all 7 projections (%s): median %.2f ms over %d "
           "(goal <= 20 ms)\n", dir, median(t + 1, nl - 1), nl - 1);

    /* (d) merge time */
    for (int r = 0; r < nl; r++) {
        double t0 = cli_now_s();
        wick_model *mm = NULL;
        if (wick_model_merge_adapter(m, "r16-all", 1.0f, &mm) != WICK_OK) {
            rc = cli_fail("bench", "merge failed");
            goto out;
        }
        t[r] = (cli_now_s() - t0) * 1e3;
        if (r == nl - 1) merged = mm;
        else wick_model_free(mm);
    }
    double merge_ms = median(t + 1, nl - 1);

    /* (c) decode tokens/s, the four variants interleaved within each repetition */
    if (wick_session_create(merged, &sp, &sm) != WICK_OK) {
        rc = cli_fail("bench", "cannot create session");
        goto out;
    }
    ids = malloc(sizeof(int32_t) * (size_t)(ntok + 2));
    logits = malloc(sizeof(float) * (size_t)in.n_vocab);
    uint64_t x = 12345;
    for (int i = 0; i < ntok + 2; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((x >> 33) % (uint64_t)in.n_vocab);
    }
    const char *names[4] = {"no adapter", "unmerged r=8 q,v", "unmerged r=16 all 7", "merged r=16 all 7"};
    const double goal[4] = {0, 3, 10, 1};
    double *tps = malloc(sizeof(double) * 4 * (size_t)nl);
    for (int r = 0; r < nl; r++) {
        for (int v = 0; v < 4; v++) {
            wick_session *ss = v == 3 ? sm : s;
            if (v == 0) wick_session_set_adapter(s, NULL, 0);
            if (v == 1) wick_session_set_adapter(s, "r8-qv", 1.0f);
            if (v == 2) wick_session_set_adapter(s, "r16-all", 1.0f);
            cli_status("bench", "decode, %s: run %d of %d …", names[v], r + 1, nl);
            tps[v * nl + r] = decode_tps(ss, ids, (int)ntok, logits);
        }
    }
    cli_status_clear();
    printf("(c) decode, %ld tokens per run, median of %d interleaved runs (first run dropped):\n",
           ntok, nl - 1);
    printf("| variant              |   tokens/s | vs no adapter | goal       |\n");
    printf("|----------------------|------------|---------------|------------|\n");
    double base_tps = 0;
    for (int v = 0; v < 4; v++) {
        double med = median(tps + v * nl + 1, nl - 1);
        if (v == 0) base_tps = med;
        char g[32] = "-";
        if (v) snprintf(g, sizeof g, "<= %.0f%% slower", goal[v]);
        printf("| %-20s | %10.2f | %+12.1f%% | %-10s |\n", names[v], med,
               100.0 * (med / base_tps - 1.0), g);
    }
    free(tps);
    printf("(d) merge r=16 all 7 into a new model handle: median %.1f ms over %d\n", merge_ms,
           nl - 1);
out:
    free(t);
    free(ids);
    free(logits);
    wick_session_free(sm);
    wick_session_free(s);
    wick_model_free(merged);
    wick_model_free(m);
    if (!save && dir) {
        char p[256];
        snprintf(p, sizeof p, "%s/adapter_config.json", dir);
        remove(p);
        snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
        remove(p);
        remove(dir);
    }
    return rc;
}

int bench_kernels_run(int argc, char **argv); /* bench_kernels_cli.c */
int bench_generate(int argc, char **argv);    /* bench_generate.c */
int bench_batch(int argc, char **argv);       /* bench_batch.c */
int bench_serve(int argc, char **argv);       /* bench_serve.c */
int bench_spec(int argc, char **argv);        /* bench_spec.c */

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: wick bench generate ...   prefill/decode tokens/s vs memory bandwidth\n"
                "       wick bench stream ...     streaming and sampler overhead vs plain generation\n"
                "       wick bench adapters ...   LoRA switch latency, load, decode overhead, merge\n"
                "       wick bench batch ...      many streams in one engine: aggregate tokens/s,\n"
                "                                 mixed adapters, shared prompts\n"
                "       wick bench serve ...      load generator for an OpenAI-compatible server:\n"
                "                                 tokens/s, TTFT and inter-token latency p50/p90/p99\n"
                "       wick bench spec ...       speculative decoding: speed vs acceptance\n"
                "       wick bench kernels [-t N] [--isa avx512|avx2|generic] [--quick]\n"
                "                                 per-kernel GB/s and GFLOP/s vs measured limits\n");
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "generate")) return bench_generate(argc - 1, argv + 1);
    if (!strcmp(argv[1], "adapters")) return bench_adapters(argc - 1, argv + 1);
    if (!strcmp(argv[1], "stream")) return bench_stream(argc - 1, argv + 1);
    if (!strcmp(argv[1], "kernels")) return bench_kernels_run(argc - 1, argv + 1);
    if (!strcmp(argv[1], "batch")) return bench_batch(argc - 1, argv + 1);
    if (!strcmp(argv[1], "serve")) return bench_serve(argc - 1, argv + 1);
    if (!strcmp(argv[1], "spec")) return bench_spec(argc - 1, argv + 1);
    fprintf(stderr, "wick bench: unknown benchmark '%s'\n", argv[1]);
    return 2;
}
