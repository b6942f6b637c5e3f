/* bench_batch.c — `wick bench batch`: what the engine gains by decoding many sequences in one
 * pass over the weights, measured in one run:
 *   1. aggregate decode tokens/s with 1 and N concurrent streams (ratio to one stream), and
 *      the inter-token latency (p50/p99) each stream sees;
 *   2. 8 streams over 4 different adapters + the base model vs 8 streams with no adapter;
 *   3. a shared system prompt: client 1 alone computes it; clients 2..K then arrive one after
 *      another, and again all together: time to first token of each, and the KV bytes held
 *      while they run together (the prefix stored once) against each holding its own.
 * Rounds alternate the configurations and report medians and the spread (min–max). Random
 * prompts; greedy; EOS ignored, so every stream makes exactly -n tokens. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/pool.h"
#include "cli/cli.h"
#include "lora/lora.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* q-quantile (0..1) of n values (sorted in place). */
static double quant(double *v, int n, double q) {
    if (n <= 0) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int i = (int)ceil(q * n) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

typedef struct stream_rec {
    double t_submit, t_first, t_last;
    int n;
    double *gaps;       /* inter-token gaps (ms) */
    int n_gaps, cap_gaps;
} stream_rec;

static bool on_tok(const wick_token *t, void *user) {
    stream_rec *r = user;
    const double now = now_ms();
    if (r->n == 0) r->t_first = now;
    else if (r->n_gaps < r->cap_gaps) r->gaps[r->n_gaps++] = now - r->t_last;
    r->t_last = now;
    r->n++;
    (void)t;
    return true;
}

typedef struct run_out {
    double decode_tps;  /* tokens after the first of every stream / time from the last first
                           token to the last token */
    double itl_p50, itl_p99;
    double wall_ms;
} run_out;

static uint64_t g_rng = 88172645463325252ULL;
static int32_t rnd_id(int n) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (int32_t)(g_rng % (uint64_t)n);
}

/* n streams of prompt_len random ids (adapter names[i % n_names], NULL = base) making ntok
 * tokens each, all submitted at once. */
static wick_status run_streams(wick_engine *e, int vocab, int n, int prompt_len, int ntok,
                               const char *const *names, int n_names, run_out *o) {
    stream_rec *r = calloc((size_t)n, sizeof *r);
    int32_t *p = malloc(sizeof *p * (size_t)prompt_len);
    double *all_gaps = malloc(sizeof *all_gaps * (size_t)n * ntok);
    if (!r || !p || !all_gaps) {
        free(r), free(p), free(all_gaps);
        return WICK_ERR_NOMEM;
    }
    wick_gen_params gp = wick_gen_params_default();
    gp.max_tokens = ntok;
    gp.temperature = 0;
    gp.stop_on_eos = false;
    wick_status st = WICK_OK;
    const double t0 = now_ms();
    for (int i = 0; i < n && !st; i++) {
        for (int k = 0; k < prompt_len; k++) p[k] = rnd_id(vocab);
        r[i].gaps = all_gaps + (size_t)i * ntok;
        r[i].cap_gaps = ntok;
        r[i].t_submit = now_ms();
        wick_request rq = {.prompt = p, .n_prompt = prompt_len, .params = &gp,
                           .adapter = n_names ? names[i % n_names] : NULL, .adapter_scale = 1,
                           .on_token = on_tok, .user = &r[i]};
        st = wick_engine_submit(e, &rq, NULL);
    }
    int active = 1;
    while (!st && active) st = wick_engine_step(e, &active);
    double last_first = 0, end = 0;
    int n_gaps = 0;
    for (int i = 0; i < n; i++) {
        if (r[i].t_first > last_first) last_first = r[i].t_first;
        if (r[i].t_last > end) end = r[i].t_last;
    }
    /* decode throughput once every stream is decoding: the tokens that came after the last
       stream's first token, over the time from then to the last token */
    int after = 0;
    for (int i = 0; i < n; i++) {
        double t = r[i].t_first;
        for (int k = 0; k < r[i].n_gaps; k++) {
            t += r[i].gaps[k];
            if (t > last_first) after++;
        }
    }
    for (int i = 0; i < n; i++) /* compact every stream's gaps for the quantiles */
        for (int k = 0; k < r[i].n_gaps; k++) all_gaps[n_gaps++] = r[i].gaps[k];
    o->decode_tps = end > last_first ? after / ((end - last_first) / 1e3) : 0;
    o->itl_p50 = quant(all_gaps, n_gaps, 0.5);
    o->itl_p99 = quant(all_gaps, n_gaps, 0.99);
    o->wall_ms = end - t0;
    free(r), free(p), free(all_gaps);
    return st;
}

static int usage(FILE *f) {
    fprintf(f, "usage: wick bench batch -m MODEL [-t|--threads N] [-s 1,4,8,16] [-n TOKENS] [-p PROMPT]\n"
               "                        [-r ROUNDS] [--kv-type f16|bf16|q8_0|f32] [--shared N]\n"
               "                        [--no-mix] (skips table 2; --shared 0 skips table 3)\n"
               "                        [--clients K] [--batch N] [--kernels auto|ref]\n"
               "                        [--device cpu|cuda[:N]]\n"
               "Aggregate decode tokens/s of N concurrent streams in one engine vs one stream,\n"
               "8 streams over 4 adapters + base vs no adapter, and K clients sharing an N-token\n"
               "system prompt (time to first token, KV bytes). Medians over ROUNDS (default 3).\n");
    return f == stdout ? 0 : 2;
}

static wick_kv_type kv_of(const char *s) {
    if (!strcmp(s, "f16")) return WICK_KV_F16;
    if (!strcmp(s, "bf16")) return WICK_KV_BF16;
    if (!strcmp(s, "q8_0")) return WICK_KV_Q8_0;
    if (!strcmp(s, "f32")) return WICK_KV_F32;
    return (wick_kv_type)-1;
}

int bench_batch(int argc, char **argv) {
    const char *model = NULL, *kern = "auto", *kvs = "f16", *device = NULL;
    long threads = 0, ntok = 128, plen = 32, rounds = 3, shared = 1000, clients = 16, batch = 128;
    int streams[16] = {1, 4, 8, 16}, n_streams = 4;
    bool mix = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout);
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model = argv[++i];
        else if (!strcmp(a, "--kernels") && has) kern = argv[++i];
        else if (!strcmp(a, "--device") && has) device = argv[++i];
        else if (!strcmp(a, "--kv-type") && has) kvs = argv[++i];
        else if (!strcmp(a, "--no-mix")) mix = false;
        else if (!strcmp(a, "-s") && has) {
            n_streams = 0;
            for (char *s = argv[++i], *end; *s && n_streams < 16; s = *end ? end + 1 : end) {
                long v = strtol(s, &end, 10);
                if (end == s || v < 1 || v > 256 || (*end && *end != ',')) return usage(stderr);
                streams[n_streams++] = (int)v;
            }
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has) {
            if (!cli_parse_int("bench", a, argv[++i], 0, 1024, &threads)) return 2;
        } else if (!strcmp(a, "-n") && has) {
            if (!cli_parse_int("bench", a, argv[++i], 2, 8192, &ntok)) return 2;
        } else if (!strcmp(a, "-p") && has) {
            if (!cli_parse_int("bench", a, argv[++i], 1, 8192, &plen)) return 2;
        } else if (!strcmp(a, "-r") && has) {
            if (!cli_parse_int("bench", a, argv[++i], 1, 100, &rounds)) return 2;
        } else if (!strcmp(a, "--shared") && has) {
            if (!cli_parse_int("bench", a, argv[++i], 0, 32768, &shared)) return 2;
        } else if (!strcmp(a, "--clients") && has) {
            if (!cli_parse_int("bench", a, argv[++i], 2, 256, &clients)) return 2;
        } else if (!strcmp(a, "--batch") && has) {
            if (!cli_parse_int("bench", a, argv[++i], 1, 65536, &batch)) return 2;
        } else {
            fprintf(stderr, "wick bench batch: unknown or incomplete option '%s'\n", a);
            return usage(stderr);
        }
    }
    const wick_kv_type kv = kv_of(kvs);
    if (!model || (int)kv < 0) return usage(stderr);
    if (threads == 0) threads = pool_cpu_count();
    wick_model_params mp = wick_model_params_default();
    mp.kernels = kern;
    mp.device = device;
    mp.load_tokenizer = false;
    wick_model *m = NULL;
    if (wick_model_load(model, &mp, &m) != WICK_OK) return cli_fail("bench", "cannot load model");
    wick_model_info in;
    wick_model_get_info(m, &in);
    int max_streams = 8;
    for (int i = 0; i < n_streams; i++)
        if (streams[i] > max_streams) max_streams = streams[i];
    if (clients > max_streams) max_streams = (int)clients;
    /* four random adapters (rank 16 on every projection) for table 2 */
    const unsigned all = (1u << LORA_N_PROJ) - 1;
    const char *names[5] = {"r16-a", "r16-b", "r16-c", "r16-d", NULL};
    for (int k = 0; k < 4; k++) {
        wick_adapter *a = NULL;
        if (lora_adapter_random(m, 16, 32.0f, all, 100 + (uint64_t)k, &a) ||
            lora_registry_add(m, a, names[k])) {
            wick_model_free(m);
            return cli_fail("bench", "cannot make random adapters");
        }
        lora_adapter_compact_wait(a); /* steady state: the bf16 copies in place (fast) */
    }
    wick_engine_params ep = wick_engine_params_default();
    ep.n_threads = (int)threads;
    ep.max_seqs = max_streams;
    ep.n_batch = (int)(batch < max_streams ? max_streams : batch);
    ep.kv_type = kv;
    ep.n_ctx = (int)(shared + plen + ntok + 64 < 4096 ? 4096 : shared + plen + ntok + 64);
    ep.kv_tokens = max_streams * (int)(plen + ntok + 32) + (int)shared * 2 + 4096;
    wick_engine *e = NULL;
    int rc = 0;
    if (wick_engine_create(m, &ep, &e) != WICK_OK) {
        wick_model_free(m);
        return cli_fail("bench", "cannot create the engine");
    }
    printf("model %s: %s, %s weights, %d threads, KV %s, prompt %ld, %ld new tokens per stream, "
           "%ld rounds\n", model, in.architecture, in.weight_dtype, (int)threads, kvs, plen, ntok,
           rounds);

    /* 1. streams */
    printf("\n| streams | decode tok/s (aggregate) | per stream | x one stream | ITL p50 ms | "
           "ITL p99 ms |\n|---|---|---|---|---|---|\n");
    double base_tps = 0;
    bool noisy_rows = false;
    for (int si = 0; si < n_streams; si++) {
        double *tps = malloc(sizeof *tps * (size_t)rounds), p50 = 0, p99 = 0;
        for (int r = 0; r < rounds; r++) {
            run_out o;
            cli_status("bench", "%d streams: round %d of %ld …", streams[si], r + 1, rounds);
            if (run_streams(e, in.n_vocab, streams[si], (int)plen, (int)ntok, NULL, 0, &o)) {
                rc = cli_fail("bench", "run failed");
                free(tps);
                goto out;
            }
            tps[r] = o.decode_tps;
            p50 += o.itl_p50 / rounds;
            p99 += o.itl_p99 / rounds;
        }
        double lo = tps[0], hi = tps[0];
        for (int r = 1; r < rounds; r++) lo = fmin(lo, tps[r]), hi = fmax(hi, tps[r]);
        const double med = quant(tps, (int)rounds, 0.5);
        if (si == 0) base_tps = med;
        cli_status_clear();
        const bool noisy = med > 0 && hi - lo > 0.1 * med;
        noisy_rows |= noisy;
        printf("| %d%s | %.1f (%.1f–%.1f) | %.1f | %.2fx | %.1f | %.1f |\n", streams[si],
               noisy ? " *" : "", med, lo, hi, med / streams[si], base_tps > 0 ? med / base_tps : 0,
               p50, p99);
        fflush(stdout);
        free(tps);
    }

    if (noisy_rows)
        printf("\n* noisy: the rounds spread over more than 10%% of the median (another process "
               "or the VM's neighbours); run again or with more rounds (-r)\n");

    /* 2. adapters: alternate the two configurations */
    if (mix) {
        double *ta = malloc(sizeof(double) * (size_t)rounds),
               *tb = malloc(sizeof(double) * (size_t)rounds);
        for (int r = 0; r < rounds; r++) {
            run_out o;
            cli_status("bench", "8 streams, without and with adapters: round %d of %ld …", r + 1, rounds);
            run_streams(e, in.n_vocab, 8, (int)plen, (int)ntok, NULL, 0, &o);
            tb[r] = o.wall_ms;
            run_streams(e, in.n_vocab, 8, (int)plen, (int)ntok, names, 5, &o);
            ta[r] = o.wall_ms;
        }
        const double mb = quant(tb, (int)rounds, 0.5), ma = quant(ta, (int)rounds, 0.5);
        cli_status_clear();
        printf("\n| 8 streams | wall ms (median of %ld) |\n|---|---|\n| no adapter | %.0f |\n"
               "| 4 adapters (rank 16, all projections) + base | %.0f (%.2fx) |\n", rounds, mb,
               ma, ma / mb);
        free(ta), free(tb);
    }

    /* 3. a shared system prompt */
    if (shared > 0) {
        int32_t *p = malloc(sizeof *p * (size_t)(shared + 16));
        stream_rec *r = calloc((size_t)clients, sizeof *r);
        double *gaps = calloc((size_t)clients * 4, sizeof *gaps);
        wick_gen_params gp = wick_gen_params_default();
        gp.max_tokens = 4;
        gp.temperature = 0;
        gp.stop_on_eos = false;
        for (int k = 0; k < shared; k++) p[k] = rnd_id(in.n_vocab);
        wick_engine_stats s0, s1, sx;
        wick_engine_get_stats(e, &s0);
        /* A: client 1 alone; B: clients 2..K one after another; C: K-1 clients at once.
           Each client's prompt is the shared prefix and 16 ids of its own. */
        double ttft_b_sum = 0, ttft_b_worst = 0, ttft_c_sum = 0, ttft_c_worst = 0;
        int peak_used = 0;
        for (int phase = 0; phase < 3; phase++) {
            const int c0 = phase == 0 ? 0 : 1, c1 = phase == 0 ? 1 : (int)clients;
            for (int c = c0; c < c1; c++) {
                stream_rec *rc_ = &r[c];
                memset(rc_, 0, sizeof *rc_);
                for (int k = 0; k < 16; k++) p[shared + k] = rnd_id(in.n_vocab);
                rc_->gaps = gaps + c * 4;
                rc_->cap_gaps = 4;
                rc_->t_submit = now_ms();
                wick_request rq = {.prompt = p, .n_prompt = (int)shared + 16, .params = &gp,
                                   .on_token = on_tok, .user = rc_};
                wick_engine_submit(e, &rq, NULL);
                if (phase == 2 && c < c1 - 1) continue; /* C: submit all, then run */
                for (int active = 1; active;) {
                    wick_engine_step(e, &active);
                    wick_engine_get_stats(e, &sx);
                    if (phase == 2 && sx.kv_used > peak_used) peak_used = sx.kv_used;
                }
            }
            for (int c = c0; phase > 0 && c < c1; c++) {
                const double t = r[c].t_first - r[c].t_submit;
                if (phase == 1) ttft_b_sum += t, ttft_b_worst = fmax(ttft_b_worst, t);
                else ttft_c_sum += t, ttft_c_worst = fmax(ttft_c_worst, t);
            }
        }
        wick_engine_get_stats(e, &s1);
        const double t1 = r[0].t_first - r[0].t_submit;
        const int per_client = (int)((shared + 16 + 4 + s1.kv_block_tokens - 1) / s1.kv_block_tokens);
        const double mib = s1.kv_bytes_per_block / 1048576.0;
        printf("\n| shared prompt %ld + 16 own tokens, %ld clients | |\n|---|---|\n"
               "| TTFT client 1 (alone, computes the prefix) | %.0f ms |\n"
               "| TTFT clients 2..%ld arriving one after another | mean %.0f ms, worst %.0f ms "
               "(%.1f%% of client 1's) |\n"
               "| TTFT clients 2..%ld arriving together | mean %.0f ms, worst %.0f ms (%.1f%%) |\n"
               "| prompt positions served from the cache | %lld |\n"
               "| KV held with %ld clients running together | %.1f MiB (%d blocks; %.1f MiB if "
               "each held its own prompt) |\n",
               shared, clients, t1, clients, ttft_b_sum / (clients - 1), ttft_b_worst,
               100 * ttft_b_worst / t1, clients, ttft_c_sum / (clients - 1), ttft_c_worst,
               100 * ttft_c_worst / t1, (long long)(s1.prefix_hit_tokens - s0.prefix_hit_tokens),
               clients - 1, peak_used * mib, peak_used,
               (double)(clients - 1) * per_client * mib);
        free(p), free(r), free(gaps);
    }
out:
    wick_engine_free(e);
    wick_model_free(m);
    return rc;
}
