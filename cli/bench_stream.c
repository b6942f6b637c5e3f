/* bench_stream.c — `wick bench stream`: what streaming and sampling cost on top of plain
 * generation, on a real model with the KV cache (the table metal-candle's report gives, done
 * for real). All variants run interleaved (round-robin within each repetition) so machine
 * noise hits them alike; figures are medians over repetitions of the decode phase: the wall
 * time from the start of the call to the arrival of the last token, minus the prefill time the
 * generator reports, per generated token after the first. Measuring from the caller's side
 * keeps the async stream honest (its worker runs ahead of the consumer).
 *
 *   raw       session eval + argmax loop, no generator (the forward pass alone)
 *   pull      wick_gen_step loop (greedy) — the baseline "plain generation"
 *   sync      wick_generate with a minimal callback (counts tokens)
 *   sync-fmt  callback formats id/prob/text into a string (snprintf)
 *   sync-acc  callback accumulates the text into a growing buffer
 *   async     wick_stream_open + blocking wick_stream_next
 *   samplers  pull loop at temperature 0.8 with top-k 50 / top-p 0.9 / min-p 0.05, vs greedy
 * Before the end-to-end table, each added component (sampler, streaming detokenizer, callback
 * kinds) is timed on its own and shown as a share of one forward pass. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "infer/sampler.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct timing {
    double start, last;  /* clock at the call and at the last token */
    double prefill_ms;   /* as the generator reports it */
    int n;               /* tokens received */
} timing;

static void stamp(timing *t, const wick_token *tok) {
    t->n++;
    t->last = now_s();
    if (tok && tok->finish) t->prefill_ms = tok->prefill_ms;
}

typedef struct cb_state {
    timing t;
    char buf[256];
    char *acc;
    size_t acc_len, acc_cap;
    int kind; /* 0 minimal, 1 format, 2 accumulate */
} cb_state;

static bool on_token(const wick_token *tok, void *user) {
    cb_state *c = user;
    if (c->kind == 1) {
        snprintf(c->buf, sizeof c->buf, "{\"id\": %d, \"p\": %.4f, \"text\": \"%.*s\"}", tok->id,
                 tok->prob, (int)(tok->text_len < 64 ? tok->text_len : 64), tok->text);
    } else if (c->kind == 2) {
        if (c->acc_len + tok->text_len + 1 > c->acc_cap) {
            size_t cap = c->acc_cap ? c->acc_cap * 2 : 1024;
            while (cap < c->acc_len + tok->text_len + 1) cap *= 2;
            char *nb = realloc(c->acc, cap);
            if (!nb) return false;
            c->acc = nb;
            c->acc_cap = cap;
        }
        memcpy(c->acc + c->acc_len, tok->text, tok->text_len);
        c->acc_len += tok->text_len;
    }
    stamp(&c->t, tok);
    return true;
}

enum { V_RAW, V_PULL, V_SYNC, V_FMT, V_ACC, V_ASYNC, V_TOPK, V_TOPP, V_MINP, V_GREEDY_T, N_VAR };
static const char *const k_names[N_VAR] = {
    "raw forward + argmax", "pull API (plain generation)", "sync callback, minimal",
    "sync callback, formatting", "sync callback, accumulating", "async stream",
    "top-k 50, t=0.8", "top-p 0.9, t=0.8", "min-p 0.05, t=0.8", "greedy (sampler baseline)"};

static int run_variant(int v, wick_session *s, const wick_model *m, const int32_t *prompt,
                       int n_prompt, int n_tok, timing *out) {
    wick_gen_params p = wick_gen_params_default();
    p.temperature = 0;
    p.max_tokens = n_tok;
    p.stop_on_eos = false;
    p.seed = 1;
    p.reuse_prefix = false; /* every variant prefills the same prompt from scratch */
    memset(out, 0, sizeof *out);
    out->start = now_s();
    if (v == V_TOPK || v == V_TOPP || v == V_MINP) {
        p.temperature = 0.8f;
        p.top_k = v == V_TOPK ? 50 : 0;
        p.top_p = v == V_TOPP ? 0.9f : 1.0f;
        p.min_p = v == V_MINP ? 0.05f : 0.0f;
    }
    if (v == V_RAW) {
        wick_model_info in;
        wick_model_get_info(m, &in);
        float *logits = malloc(sizeof(float) * in.n_vocab);
        wick_session_reset(s);
        wick_status st = wick_session_eval(s, prompt, n_prompt, WICK_LOGITS_LAST, logits);
        out->prefill_ms = (now_s() - out->start) * 1e3;
        for (int k = 0; st == WICK_OK && k < n_tok; k++) {
            int32_t best = 0;
            for (int i = 1; i < in.n_vocab; i++)
                if (logits[i] > logits[best]) best = i;
            stamp(out, NULL);
            if (k + 1 < n_tok) st = wick_session_eval(s, &best, 1, WICK_LOGITS_LAST, logits);
        }
        free(logits);
        return st == WICK_OK ? 0 : cli_fail("bench", "forward failed");
    }
    if (v == V_SYNC || v == V_FMT || v == V_ACC) {
        cb_state c = {.kind = v - V_SYNC};
        c.t.start = out->start;
        wick_status st = wick_generate(s, prompt, n_prompt, &p, on_token, &c);
        *out = c.t;
        free(c.acc);
        return st == WICK_OK ? 0 : cli_fail("bench", "generation failed");
    }
    if (v == V_ASYNC) {
        wick_stream *st;
        if (wick_stream_open(s, prompt, n_prompt, &p, &st) != WICK_OK)
            return cli_fail("bench", "cannot open stream");
        wick_token t;
        while (wick_stream_next(st, &t, -1) == WICK_OK) stamp(out, &t);
        wick_stream_close(st);
        return 0;
    }
    wick_gen *g;
    if (wick_gen_start(s, prompt, n_prompt, &p, &g) != WICK_OK)
        return cli_fail("bench", "cannot start generation");
    wick_token t;
    while (wick_gen_step(g, &t) == WICK_OK) stamp(out, &t);
    wick_gen_free(g);
    return 0;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_d);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* ---- component costs ----------------------------------------------------------------------
 * End-to-end differences below ~3% drown in this machine's noise, so the costs streaming and
 * sampling add per token are also timed directly, each over many repetitions on real data
 * (logits from one forward pass, ids from one generation), and shown as a share of the
 * measured time of one forward pass. */

static double median_us(double *x, int n) { return median(x, n) * 1e6; }

static void component_costs(wick_session *s, const wick_model *m, const int32_t *prompt,
                            int n_prompt, double forward_ms) {
    enum { N = 201 };
    wick_model_info in;
    wick_model_get_info(m, &in);
    float *logits = malloc(sizeof(float) * in.n_vocab), *work = malloc(sizeof(float) * in.n_vocab);
    double *t = malloc(sizeof(double) * N);
    wick_session_reset(s);
    wick_session_eval(s, prompt, n_prompt, WICK_LOGITS_LAST, logits);
    printf("component costs per token (median of %d), as a share of one forward pass (%.2f ms):\n",
           N, forward_ms);
    printf("  %-42s | %10s | %s\n", "component", "us/token", "share of forward");
    static const struct { const char *name; float temp; int k; float p, minp; } k_s[] = {
        {"sampler: greedy", 0.0f, 0, 1.0f, 0.0f},
        {"sampler: top-k 50, t=0.8", 0.8f, 50, 1.0f, 0.0f},
        {"sampler: top-p 0.9, t=0.8", 0.8f, 0, 0.9f, 0.0f},
        {"sampler: min-p 0.05, t=0.8", 0.8f, 0, 1.0f, 0.05f},
        {"sampler: library default (k40 p.95 mp.05)", 0.8f, 40, 0.95f, 0.05f},
    };
    for (size_t v = 0; v < sizeof k_s / sizeof k_s[0]; v++) {
        sampler_params sp = sampler_params_default();
        sp.temperature = k_s[v].temp;
        sp.top_k = k_s[v].k;
        sp.top_p = k_s[v].p;
        sp.min_p = k_s[v].minp;
        sp.seed = 7;
        sampler *smp = NULL;
        if (sampler_create(&sp, in.n_vocab, &smp) != WICK_OK) continue;
        for (int r = 0; r < N; r++) {
            memcpy(work, logits, sizeof(float) * in.n_vocab);
            sampled_token st;
            double t0 = now_s();
            sampler_sample(smp, work, &st);
            t[r] = now_s() - t0;
        }
        sampler_free(smp);
        double us = median_us(t, N);
        printf("  %-42s | %10.1f | %6.2f%%\n", k_s[v].name, us, us / 10.0 / forward_ms);
    }
    /* streaming detokenizer + callbacks over the ids of one real generation */
    const wick_tokenizer *tok = wick_model_tokenizer(m);
    wick_gen_params gp = wick_gen_params_default();
    gp.temperature = 0.8f;
    gp.max_tokens = 64;
    gp.stop_on_eos = false;
    gp.seed = 3;
    wick_gen *g;
    int32_t ids[64];
    int n = 0;
    if (tok && wick_gen_start(s, prompt, n_prompt, &gp, &g) == WICK_OK) {
        wick_token tk;
        while (wick_gen_step(g, &tk) == WICK_OK && n < 64)
            if (tk.id >= 0 && tk.id < wick_tokenizer_vocab_size(tok)) ids[n++] = tk.id;
        wick_gen_free(g);
    }
    if (n > 0) {
        wick_detok *d = NULL;
        wick_detok_create(tok, true, &d);
        for (int r = 0; r < N; r++) {
            wick_detok_reset(d);
            double t0 = now_s();
            for (int i = 0; i < n; i++) {
                const char *txt;
                size_t len;
                wick_detok_push(d, ids[i], &txt, &len);
            }
            t[r] = (now_s() - t0) / n;
        }
        wick_detok_free(d);
        double us = median_us(t, N);
        printf("  %-42s | %10.2f | %6.3f%%\n", "streaming detokenizer", us, us / 10.0 / forward_ms);
        static const char *k_cb[] = {"callback: minimal", "callback: formatting",
                                     "callback: accumulating"};
        for (int kind = 0; kind < 3; kind++) {
            cb_state c = {.kind = kind};
            wick_token tk = {.text = "hello", .text_len = 5, .prob = 0.5f};
            for (int r = 0; r < N; r++) {
                c.acc_len = 0;
                double t0 = now_s();
                for (int i = 0; i < n; i++) {
                    tk.id = ids[i];
                    on_token(&tk, &c);
                }
                t[r] = (now_s() - t0) / n;
            }
            free(c.acc);
            double us = median_us(t, N);
            printf("  %-42s | %10.3f | %6.4f%%\n", k_cb[kind], us, us / 10.0 / forward_ms);
        }
    }
    printf("\n");
    free(t);
    free(work);
    free(logits);
}

int bench_stream(int argc, char **argv) {
    const char *model = NULL;
    long threads = 0, reps = 5;
    int lens[8] = {10, 50, 100}, n_lens = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: wick bench stream -m MODEL [-t|--threads N] [-r REPS] [--tokens 10,50,100]\n");
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model = argv[++i];
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has) {
            if (!cli_parse_int("bench", a, argv[++i], 0, 1024, &threads)) return 2;
        } else if (!strcmp(a, "-r") && has) {
            if (!cli_parse_int("bench", a, argv[++i], 1, 1000, &reps)) return 2;
        } else if (!strcmp(a, "--tokens") && has) {
            int32_t *l;
            int n = cli_parse_ids("bench", argv[++i], &l);
            if (n <= 0 || n > 8) return 2;
            for (int k = 0; k < n; k++) lens[k] = l[k] < 2 ? 2 : l[k];
            n_lens = n;
            free(l);
        } else {
            fprintf(stderr, "wick bench stream: unknown or incomplete option '%s'\n", a);
            return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "usage: wick bench stream -m MODEL [-t|--threads N] [-r REPS] [--tokens 10,50,100]\n");
        return 2;
    }
    wick_model *m;
    if (wick_model_load(model, NULL, &m) != WICK_OK) return cli_fail("bench", "cannot load model");
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = (int)threads;
    sp.n_ctx = 512;
    wick_session *s;
    if (wick_session_create(m, &sp, &s) != WICK_OK) {
        wick_model_free(m);
        return cli_fail("bench", "cannot create session");
    }
    wick_model_info in;
    wick_model_get_info(m, &in);
    int32_t prompt[16];
    for (int i = 0; i < 16; i++) prompt[i] = (int32_t)((i * 7919 + 13) % in.n_vocab);
    printf("model %s (%s, %.1f M params), %s, decode phase timed, median of %ld interleaved runs\n\n",
           model, in.weight_dtype, in.n_params / 1e6, in.kernels, reps);
    int rc = 0;
    double fwd_ms = 0;
    {   /* one forward pass per token, for the component table */
        timing t;
        double fm[5];
        for (int r = 0; r < 5 && !rc; r++) {
            rc = run_variant(V_RAW, s, m, prompt, 16, 12, &t);
            fm[r] = ((t.last - t.start) * 1e3 - t.prefill_ms) / (t.n > 1 ? t.n - 1 : 1);
        }
        fwd_ms = median(fm, 5);
    }
    if (!rc) component_costs(s, m, prompt, 16, fwd_ms);
    for (int li = 0; li < n_lens && !rc; li++) {
        int n = lens[li];
        double *ms[N_VAR];
        for (int v = 0; v < N_VAR; v++) ms[v] = calloc((size_t)reps, sizeof(double));
        for (int r = 0; r < reps && !rc; r++) {
            for (int v = 0; v < N_VAR && !rc; v++) {
                timing t;
                cli_status("bench", "%d tokens: repeat %d of %ld, variant %d of %d …", n, r + 1,
                           (long)reps, v + 1, N_VAR);
                rc = run_variant(v, s, m, prompt, 16, n, &t);
                ms[v][r] = ((t.last - t.start) * 1e3 - t.prefill_ms) / (t.n > 1 ? t.n - 1 : 1);
            }
        }
        cli_status_clear();
        if (!rc) {
            printf("%d tokens                        | ms/token (median) | overhead vs baseline\n", n);
            printf("--------------------------------|-------------------|---------------------\n");
            double base = median(ms[V_PULL], (int)reps), gbase = median(ms[V_GREEDY_T], (int)reps);
            for (int v = 0; v < N_VAR; v++) {
                double med = median(ms[v], (int)reps);
                double ref = v >= V_TOPK ? gbase : base;
                if (v == V_PULL || v == V_GREEDY_T)
                    printf("%-31s | %17.3f | (baseline)\n", k_names[v], med);
                else
                    printf("%-31s | %17.3f | %+6.2f%%\n", k_names[v], med, 100.0 * (med - ref) / ref);
            }
            printf("\n");
        }
        for (int v = 0; v < N_VAR; v++) free(ms[v]);
    }
    wick_session_free(s);
    wick_model_free(m);
    return rc;
}
