/* bench_generate.c — `wick bench generate`: llama-bench-like prefill (pp) and decode (tg)
 * tokens/s, optionally at a depth (tokens already in the KV cache, as llama-bench's -d), with
 * this machine's read bandwidth measured in the same run, decode's share of that limit and
 * the pool synchronisations per decoded token.
 *
 * --compare-with LLAMA_BENCH runs llama.cpp's llama-bench on the same file, threads, KV type
 * and test, alternating one repetition of each tool (wick, llama, wick, llama, ...), and prints
 * both medians with their ranges and the ratio. --json prints one JSON object per test.
 *
 * A depth is filled once per depth (untimed); every repetition truncates back to it, which
 * leaves the same cache as a refill (the truncated positions are overwritten). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/membw.h"
#include "base/pool.h"
#include "cli/cli.h"

extern char **environ;

#define MAXL 16 /* entries per list option */


/* "64,512" → list; 0 entries are dropped when drop0 (llama-bench's -n 0 = none) */
static int parse_list(const char *s, int *out, int cap, bool drop0) {
    int n = 0;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > 1 << 20) return -1;
        if (v > 0 || !drop0) {
            if (n == cap) return -1;
            out[n++] = (int)v;
        }
        if (*end && *end != ',') return -1;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

static int usage_generate(FILE *f) {
    fprintf(f,
            "usage: wick bench generate -m MODEL [-t|--threads N] [-p 64,512] [-n 32,128] [-d 0,4096]\n"
            "                           [-r REPS] [--kv-type f16|bf16|q8_0|f32] [--json]\n"
            "                           [--compare-with LLAMA_BENCH] [--kernels auto|ref]\n"
            "                           [--device cpu|cuda[:N]]\n"
            "Prefill (ppN: N prompt tokens in one evaluation) and decode (tgN: N tokens one at a\n"
            "time) tokens/s at each depth (-d: tokens already in the KV cache, filled untimed), mean\n"
            "± sd over REPS runs after one warm-up, with the machine's read bandwidth measured in\n"
            "the same run (CPU only) and, for decode, its share of it and the thread-pool\n"
            "synchronisations per token. -p 0 / -n 0 skip that part. --kv-type: KV cache elements\n"
            "(default f16, as llama-bench). --compare-with: path of llama.cpp's llama-bench, run on\n"
            "the same GGUF file, threads and KV type, one repetition of each tool in turn; the table\n"
            "then gives medians, ranges and wick / llama.cpp. --json: one JSON object per test on\n"
            "stdout instead of the table.\n");
    return f == stdout ? 0 : 2;
}

static const char *kv_name(wick_kv_type k) {
    return k == WICK_KV_F32 ? "f32" : k == WICK_KV_BF16 ? "bf16" : k == WICK_KV_Q8_0 ? "q8_0" : "f16";
}

/* bytes of one position of K and V over all layers */
static double kv_bytes_per_pos(const wick_model_info *in, wick_kv_type k) {
    const double el = k == WICK_KV_F32 ? 4.0 : k == WICK_KV_Q8_0 ? 34.0 / 32.0 : 2.0;
    return 2.0 * in->n_layer * in->n_kv_head * in->head_dim * el;
}

/* ---- llama-bench, one repetition of one test ---- */

typedef struct llama_info { char commit[64], type_k[16]; int flash_attn; bool have; } llama_info;

/* Runs LB -m MODEL -t T -p P -n N -d D -r 1 -ctk KV -ctv KV -o jsonl; returns its tokens/s or
 * a negative value (with a message) on failure. */
static double llama_sample(const char *lb, const char *model, long threads, int pp, int tg, int depth,
                           const char *kv, llama_info *li) {
    char t[16], p[16], n[16], d[16];
    snprintf(t, sizeof t, "%ld", threads), snprintf(p, sizeof p, "%d", pp);
    snprintf(n, sizeof n, "%d", tg), snprintf(d, sizeof d, "%d", depth);
    char *argv[] = {(char *)lb, "-m", (char *)model, "-t", t, "-p", p, "-n", n, "-d", d, "-r", "1",
                    "-ctk", (char *)kv, "-ctv", (char *)kv, "-o", "jsonl", NULL};
    int fd[2];
    if (pipe(fd) != 0) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    posix_spawn_file_actions_addclose(&fa, fd[1]);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, lb, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    if (rc != 0) {
        close(fd[0]);
        fprintf(stderr, "wick bench: --compare-with %s: cannot run it: %s\n", lb, strerror(rc));
        return -1;
    }
    char buf[16384];
    size_t len = 0;
    ssize_t k;
    while ((k = read(fd[0], buf + len, sizeof buf - 1 - len)) > 0 && len + (size_t)k < sizeof buf - 1)
        len += (size_t)k;
    if (k > 0) len += (size_t)k;
    while (k > 0) k = read(fd[0], (char[256]){0}, 256); /* drain the rest */
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    buf[len] = 0;
    double ts = -1;
    cJSON *j = cJSON_Parse(buf);
    const cJSON *v = j ? cJSON_GetObjectItemCaseSensitive(j, "avg_ts") : NULL;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !cJSON_IsNumber(v)) {
        fprintf(stderr, "wick bench: --compare-with %s: no result for pp%d tg%d d%d (exit %d); is it "
                        "llama-bench, and can it read %s?\n", lb, pp, tg, depth,
                WIFEXITED(st) ? WEXITSTATUS(st) : -1, model);
    } else {
        ts = v->valuedouble;
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "build_commit");
        const cJSON *tk = cJSON_GetObjectItemCaseSensitive(j, "type_k");
        const cJSON *fa_ = cJSON_GetObjectItemCaseSensitive(j, "flash_attn");
        if (cJSON_IsString(c)) snprintf(li->commit, sizeof li->commit, "%s", c->valuestring);
        if (cJSON_IsString(tk)) snprintf(li->type_k, sizeof li->type_k, "%s", tk->valuestring);
        li->flash_attn = cJSON_IsNumber(fa_) ? fa_->valueint : cJSON_IsTrue(fa_) ? 1 : 0;
        li->have = true;
    }
    cJSON_Delete(j);
    return ts;
}

/* ---- wick, one repetition of one test ---- */

typedef struct wick_run {
    wick_session *s;
    const int32_t *ids;
    float *logits;
    int filled; /* depth currently in the cache, -1 = none */
} wick_run;

static bool run_eval(wick_session *s, const int32_t *ids, int n, wick_logits_mode mode, float *lg) {
    wick_status st = wick_session_eval(s, ids, n, mode, lg);
    if (st == WICK_OK) return true;
    cli_fail("bench", wick_status_str(st));
    return false;
}

/* tokens/s of one repetition, or -1; *jobs: pool jobs of the timed part */
static double wick_sample(wick_run *w, int pp, int tg, int depth, double *jobs) {
    if (w->filled != depth) {
        wick_session_reset(w->s);
        if (depth > 0 && !run_eval(w->s, w->ids, depth, WICK_LOGITS_NONE, NULL)) return -1;
        w->filled = depth;
    }
    if (wick_session_truncate(w->s, depth) != WICK_OK) return -1;
    const int32_t *x = w->ids + depth;
    const unsigned long j0 = pool_jobs_total();
    const double t0 = cli_now_s();
    if (pp > 0) {
        if (!run_eval(w->s, x, pp, WICK_LOGITS_LAST, w->logits)) return -1;
    } else {
        for (int k = 0; k < tg; k++)
            if (!run_eval(w->s, x + k, 1, WICK_LOGITS_LAST, w->logits)) return -1;
    }
    const double dt = cli_now_s() - t0;
    *jobs = (double)(pool_jobs_total() - j0);
    return (pp > 0 ? pp : tg) / dt;
}

/* "pp512", "tg128 @ d4096", with " *" when the repeats spread over 10% of the mean */
static void test_label(char *b, size_t n, int pp, int tg, int depth, bool noisy) {
    int k = snprintf(b, n, "%s%d", pp ? "pp" : "tg", pp ? pp : tg);
    if (depth) k += snprintf(b + k, n - (size_t)k, " @ d%d", depth);
    if (noisy) snprintf(b + k, n - (size_t)k, " *");
}

/* "mean ± sd" right-aligned in `width` display columns (± is two bytes, one column). */
static const char *rate_cell(char *b, size_t n, int width, double mean, double sd, int prec) {
    char v[64];
    snprintf(v, sizeof v, "%.*f ± %.*f", prec, mean, prec, sd);
    int pad = width - ((int)strlen(v) - 1);
    snprintf(b, n, "%*s%s", pad > 0 ? pad : 0, "", v);
    return b;
}

/* "median (min–max)" (– is three bytes, one column) */
static const char *range_cell(char *b, size_t n, int width, cli_stats s, int prec) {
    char v[80];
    snprintf(v, sizeof v, "%.*f (%.*f–%.*f)", prec, s.median, prec, s.min, prec, s.max);
    int pad = width - ((int)strlen(v) - 2);
    snprintf(b, n, "%*s%s", pad > 0 ? pad : 0, "", v);
    return b;
}

static bool is_gguf(const char *path) {
    char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    bool yes = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    if (f) fclose(f);
    return yes;
}

static cJSON *samples_json(const double *x, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(round(x[i] * 1000) / 1000));
    return a;
}

int bench_generate(int argc, char **argv) {
    const char *model = NULL, *kern = "auto", *device = NULL, *lb = NULL, *kvs = "f16";
    int pp[MAXL] = {64, 512}, tg[MAXL] = {32, 128}, dp[MAXL] = {0}, npp = 2, ntg = 2, ndp = 1;
    long threads = 0, reps = 3;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage_generate(stdout);
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model = argv[++i];
        else if (!strcmp(a, "--kernels") && has) kern = argv[++i];
        else if (!strcmp(a, "--device") && has) device = argv[++i];
        else if (!strcmp(a, "--compare-with") && has) lb = argv[++i];
        else if (!strcmp(a, "--kv-type") && has) kvs = argv[++i];
        else if (!strcmp(a, "--json")) json = true;
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has) {
            if (!cli_parse_int("bench", a, argv[++i], 0, 1024, &threads)) return 2;
        } else if (!strcmp(a, "-r") && has) {
            if (!cli_parse_int("bench", a, argv[++i], 1, 100, &reps)) return 2;
        } else if ((!strcmp(a, "-p") || !strcmp(a, "-n") || !strcmp(a, "-d")) && has) {
            int *l = a[1] == 'p' ? pp : a[1] == 'n' ? tg : dp;
            int k = parse_list(argv[++i], l, MAXL, a[1] != 'd');
            if (k < 0 || (a[1] == 'd' && k == 0)) {
                fprintf(stderr, "wick bench generate: %s %s: expected up to %d comma-separated "
                                "counts in [0, 1048576]\n", a, argv[i], MAXL);
                return 2;
            }
            *(a[1] == 'p' ? &npp : a[1] == 'n' ? &ntg : &ndp) = k;
        } else {
            fprintf(stderr, "wick bench generate: unknown or incomplete option '%s'\n", a);
            return usage_generate(stderr);
        }
    }
    if (!model) return usage_generate(stderr);
    wick_kv_type kv = !strcmp(kvs, "f16") ? WICK_KV_F16 : !strcmp(kvs, "f32") ? WICK_KV_F32
                      : !strcmp(kvs, "bf16") ? WICK_KV_BF16 : !strcmp(kvs, "q8_0") ? WICK_KV_Q8_0
                                                                                    : WICK_KV_DEFAULT;
    if (kv == WICK_KV_DEFAULT) {
        fprintf(stderr, "wick bench generate: --kv-type %s: expected f16, bf16, q8_0 or f32\n", kvs);
        return 2;
    }
    if (lb && access(lb, X_OK) != 0) {
        fprintf(stderr, "wick bench generate: --compare-with %s: not an executable file (%s)\n", lb,
                strerror(errno));
        return 2;
    }
    if (npp + ntg == 0) {
        fprintf(stderr, "wick bench generate: nothing to run (-p 0 and -n 0)\n");
        return 2;
    }
    if (threads == 0) threads = pool_cpu_count();
    wick_model_params mp = wick_model_params_default();
    mp.kernels = kern;
    mp.device = device;
    wick_model *m = NULL;
    if (!json) cli_status_loading("bench", model);
    if (wick_model_load(model, &mp, &m) != WICK_OK) return cli_fail("bench", "cannot load model");
    cli_status_clear();
    wick_model_info in;
    wick_model_get_info(m, &in);
    if (lb && !is_gguf(model)) {
        wick_model_free(m);
        fprintf(stderr, "wick bench generate: --compare-with needs a GGUF file (llama-bench reads "
                        "nothing else); %s is not one\n", model);
        return 2;
    }
    /* on a GPU the host's read bandwidth is not the limit */
    const bool gpu = strncmp(in.kernels, "cuda", 4) == 0;
    int max_pp = 1, max_run = 1, max_d = 0;
    for (int i = 0; i < npp; i++) max_pp = pp[i] > max_pp ? pp[i] : max_pp;
    for (int i = 0; i < ntg; i++) max_run = tg[i] > max_run ? tg[i] : max_run;
    for (int i = 0; i < ndp; i++) max_d = dp[i] > max_d ? dp[i] : max_d;
    max_run = max_pp > max_run ? max_pp : max_run;
    const long max_ctx = (long)max_d + max_run;
    if (in.n_ctx_train > 0 && max_ctx > in.n_ctx_train)
        fprintf(stderr, "wick bench generate: note: depth + test length %ld exceeds the model's %d "
                        "positions (measured anyway)\n", max_ctx, in.n_ctx_train);
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = (int)threads;
    sp.n_ctx = (int)max_ctx;
    /* prefill in one evaluation of up to 512 rows at a time (llama-bench's default ubatch) */
    sp.n_batch = max_pp < 512 ? max_pp : 512;
    sp.kv_type = kv;
    wick_session *s = NULL;
    wick_status st = wick_session_create(m, &sp, &s);
    if (st != WICK_OK) {
        wick_model_free(m);
        fprintf(stderr, "wick bench generate: cannot create a session of %ld positions: %s\n", max_ctx,
                wick_status_str(st));
        return 1;
    }
    /* The limit: the best read bandwidth seen, probed again before every decode test (on a
       shared machine the figure moves with the neighbours' traffic). */
    wk_pool *pool = pool_create((int)threads);
    double bw = gpu ? 0.0 : membw_read_gbs(pool, (size_t)512 << 20, 7);

    int32_t *ids = malloc(sizeof(int32_t) * (size_t)max_ctx);
    float *logits = malloc(sizeof(float) * (size_t)in.n_vocab);
    double *tw = malloc(sizeof(double) * (size_t)(reps + 1)), *tl = malloc(sizeof(double) * (size_t)reps);
    if (!ids || !logits || !tw || !tl) {
        free(ids), free(logits), free(tw), free(tl), pool_free(pool);
        wick_session_free(s), wick_model_free(m);
        return cli_fail("bench", "out of memory");
    }
    uint64_t x = 12345;
    for (long i = 0; i < max_ctx; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((x >> 33) % (uint64_t)in.n_vocab);
    }
    if (!json) {
        printf("model: %s (%s, %.1f M params, %.1f MiB weights), kernels %s, %ld threads, KV %s\n",
               model, in.weight_dtype, in.n_params / 1e6, in.weight_bytes / 1048576.0, in.kernels,
               threads, kv_name(kv));
        if (gpu)
            printf("device %s: the share of bandwidth is not measured on a GPU in this version\n\n",
                   in.kernels);
        else
            printf("memory read bandwidth (best of 7 reads of 512 MB, %ld threads): %.1f GB/s\n\n",
                   threads, bw);
        if (lb) {
            printf("| test            | wick tok/s median (range) | llama.cpp tok/s median (range) | wick / llama.cpp |\n");
            printf("|-----------------|---------------------------|--------------------------------|------------------|\n");
        } else {
            printf("| test            |         tokens/s |   ms/token | GB/s (weights+KV) | share of bandwidth | syncs/token |\n");
            printf("|-----------------|------------------|------------|-------------------|--------------------|-------------|\n");
        }
        fflush(stdout);
    }
    wick_run w = {s, ids, logits, -1};
    llama_info li = {0};
    bool ok = true, noisy = false;
    const double kvpp = kv_bytes_per_pos(&in, kv);
    for (int di = 0; ok && di < ndp; di++) {
        const int depth = dp[di];
        for (int ti = 0; ok && ti < npp + ntg; ti++) {
            const int p = ti < npp ? pp[ti] : 0, n = ti < npp ? 0 : tg[ti - npp];
            char label[48];
            test_label(label, sizeof label, p, n, depth, false);
            if (n > 0 && !gpu) {
                double again = membw_read_gbs(pool, (size_t)512 << 20, 3);
                if (again > bw) bw = again;
            }
            double jobs = 0, jobs_sum = 0;
            int nl = 0;
            for (int r = 0; ok && r <= reps; r++) {
                if (!json) cli_status("bench", "%s: %s %d of %ld …", label, r ? "repeat" : "warm-up", r, reps);
                double v = wick_sample(&w, p, n, depth, &jobs);
                if (v < 0) ok = false;
                tw[r] = v;
                if (r) jobs_sum += jobs;
                if (ok && r && lb) {
                    double l = llama_sample(lb, model, threads, p, n, depth, kv_name(kv), &li);
                    if (l < 0) ok = false;
                    else tl[nl++] = l;
                }
            }
            if (!ok) break;
            const cli_stats sw = cli_stats_of(tw + 1, (int)reps), sl = cli_stats_of(tl, nl);
            const bool nz = sw.mean > 0 && sw.sd > 0.1 * sw.mean;
            noisy |= nz;
            /* decode: average bytes per token = streamed weights + the KV read so far */
            const double bytes = (double)in.decode_bytes + kvpp * (depth + (n + 1) / 2.0);
            const double gbs = n ? bytes * sw.mean / 1e9 : 0;
            const double syncs = n ? jobs_sum / ((double)reps * n) : jobs_sum / (double)reps;
            if (json) {
                cJSON *o = cJSON_CreateObject();
                char tname[32];
                snprintf(tname, sizeof tname, "%s%d", p ? "pp" : "tg", p ? p : n);
                cJSON_AddStringToObject(o, "test", tname);
                cJSON_AddNumberToObject(o, "n_prompt", p);
                cJSON_AddNumberToObject(o, "n_gen", n);
                cJSON_AddNumberToObject(o, "n_depth", depth);
                cJSON_AddStringToObject(o, "model", model);
                cJSON_AddStringToObject(o, "weights", in.weight_dtype);
                cJSON_AddStringToObject(o, "kernels", in.kernels);
                cJSON_AddNumberToObject(o, "threads", (double)threads);
                cJSON_AddStringToObject(o, "kv_type", kv_name(kv));
                cJSON_AddItemToObject(o, "samples_ts", samples_json(tw + 1, (int)reps));
                cJSON_AddNumberToObject(o, "mean_ts", sw.mean);
                cJSON_AddNumberToObject(o, "sd_ts", sw.sd);
                cJSON_AddNumberToObject(o, "median_ts", sw.median);
                cJSON_AddNumberToObject(o, n ? "syncs_per_token" : "syncs_per_eval", syncs);
                if (n && !gpu) {
                    cJSON_AddNumberToObject(o, "read_gbs", bw);
                    cJSON_AddNumberToObject(o, "decode_gbs", gbs);
                    cJSON_AddNumberToObject(o, "bandwidth_share", gbs / bw);
                }
                if (lb) {
                    cJSON *l = cJSON_AddObjectToObject(o, "llama_bench");
                    cJSON_AddStringToObject(l, "build_commit", li.commit);
                    cJSON_AddStringToObject(l, "type_k", li.type_k);
                    cJSON_AddNumberToObject(l, "flash_attn", li.flash_attn);
                    cJSON_AddItemToObject(l, "samples_ts", samples_json(tl, nl));
                    cJSON_AddNumberToObject(l, "median_ts", sl.median);
                    cJSON_AddNumberToObject(o, "ratio_median", sl.median > 0 ? sw.median / sl.median : 0);
                }
                char *txt = cJSON_PrintUnformatted(o);
                if (txt) puts(txt);
                free(txt);
                cJSON_Delete(o);
            } else {
                char cell[96], cell2[96];
                test_label(label, sizeof label, p, n, depth, nz);
                cli_status_clear();
                if (lb)
                    printf("| %-15s | %s | %s | %15.2f× |\n", label, range_cell(cell, sizeof cell, 25, sw, 1),
                           range_cell(cell2, sizeof cell2, 30, sl, 1), sl.median > 0 ? sw.median / sl.median : 0);
                else if (!n)
                    printf("| %-15s | %s | %10.2f |                 - |                  - | %11.1f |\n", label,
                           rate_cell(cell, sizeof cell, 16, sw.mean, sw.sd, 1), 1e3 / sw.mean, syncs);
                else if (gpu)
                    printf("| %-15s | %s | %10.2f | %17.1f |                  - | %11.1f |\n", label,
                           rate_cell(cell, sizeof cell, 16, sw.mean, sw.sd, 2), 1e3 / sw.mean, gbs, syncs);
                else
                    printf("| %-15s | %s | %10.2f | %17.1f | %17.0f%% | %11.1f |\n", label,
                           rate_cell(cell, sizeof cell, 16, sw.mean, sw.sd, 2), 1e3 / sw.mean, gbs,
                           100.0 * gbs / bw, syncs);
            }
            fflush(stdout);
        }
    }
    cli_status_clear();
    if (!json) {
        if (noisy)
            printf("\n* noisy: the repeats spread over more than 10%% of the mean (another process "
                   "on the machine?); rerun with more -r or on a quiet machine\n");
        if (ntg && !gpu)
            printf("\n(share of bandwidth uses the best read bandwidth seen by then: %.1f GB/s; "
                   "syncs: thread-pool jobs, each a fork-join, per decoded token or per prefill)\n", bw);
        if (lb && li.have)
            printf("llama-bench %s: build %s, KV %s, flash_attn %d; alternating one repetition each\n", lb,
                   li.commit, li.type_k, li.flash_attn);
    }
    pool_free(pool);
    free(tw), free(tl), free(ids), free(logits);
    wick_session_free(s);
    wick_model_free(m);
    return ok ? 0 : 1;
}
