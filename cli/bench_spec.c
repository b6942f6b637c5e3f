/* bench_spec.c — `wick bench spec`: speculative decoding's decode speed against the
 * acceptance of its proposals, on one model, alternating with plain decoding in one run.
 *
 * The model first decodes the prompt greedily without speculation; those ids are the
 * reference. An oracle proposer (wick_gen_params.spec_propose) then proposes the reference's
 * next ids, each one correct with probability ALPHA (seeded; a wrong one is the reference id
 * + 1), so the acceptance is set by the benchmark rather than by how well some draft model
 * happens to agree with a random one. Like prompt lookup, the oracle costs nothing to run:
 * its rows measure what verification costs the engine (k + 1 rows in one pass instead of
 * one), the part of speculative decoding that is wick's. Prompt lookup (--ngram) and a draft
 * model (--draft-model) run as extra rows with their own, measured acceptance. Greedy
 * verification is exact, so every row must reproduce the reference: checked, and a row that
 * does not is an error.
 *
 * Decode speed is timed from the first generated token to the last (the prompt's prefill is
 * left out); rows alternate within each repetition, the table gives medians and ranges. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "cli/cli.h"

#define MAXA 8

static int usage_spec(FILE *f) {
    fprintf(f,
            "usage: wick bench spec -m MODEL [options]\n"
            "  -t N             threads (default: all CPUs)\n"
            "  -p N             prompt length, random ids (default 32)\n"
            "  -n N             tokens to decode (default 128)\n"
            "  -k N             proposals per step (default 4)\n"
            "  --accept LIST    oracle rows: chance that each proposal is right, e.g.\n"
            "                   0.5,0.7,0.9 (default)\n"
            "  --ngram N        also a prompt-lookup row (spec_ngram N)\n"
            "  --draft-model M  also a row with draft model M (same token ids)\n"
            "  -r N             repetitions, rows alternating (default 3)\n"
            "  --seed S         prompt and oracle seed (default 1)\n"
            "  --kernels K      kernel table (default auto)\n"
            "Prints decode tokens/s (first to last generated token) of plain decoding and of\n"
            "each speculative row, the proposals accepted, ids per verification pass and the\n"
            "speed-up over plain decoding.\n");
    return f == stdout ? 0 : 2;
}

typedef struct oracle {
    const int32_t *ref;   /* the reference continuation */
    int n_ref, n_prompt, n_vocab;
    double alpha;
    uint64_t rng;
} oracle;

static double next_u01(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return (double)(*s >> 11) / 9007199254740992.0;
}

static int oracle_propose(void *user, const int32_t *ids, int n, int32_t *out, int kmax) {
    (void)ids;
    oracle *o = user;
    const int at = n - o->n_prompt; /* ids generated so far: the next is ref[at] */
    int k = 0;
    for (; k < kmax && at + k < o->n_ref; k++) {
        const int32_t r = o->ref[at + k];
        out[k] = next_u01(&o->rng) < o->alpha ? r : (r + 1) % o->n_vocab;
    }
    return k;
}

typedef struct run_rec {
    int32_t *ids;
    int n, cap;
    double t_first, t_last;
    int drafted, accepted;
} run_rec;

static bool on_tok(const wick_token *t, void *user) {
    run_rec *r = user;
    const double now = cli_now_s();
    if (r->n == 0) r->t_first = now;
    r->t_last = now;
    if (t->id >= 0 && r->n < r->cap) r->ids[r->n++] = t->id;
    if (t->finish != WICK_FINISH_NONE) r->drafted = t->drafted_tokens, r->accepted = t->accepted_tokens;
    return true;
}

/* One generation of n tokens; false (message printed) on failure. */
static bool run_one(wick_session *s, const int32_t *prompt, int np, const wick_gen_params *gp,
                    run_rec *r) {
    r->n = 0;
    r->drafted = r->accepted = 0;
    if (wick_generate(s, prompt, np, gp, on_tok, r) != WICK_OK) {
        fprintf(stderr, "wick bench spec: generation failed: %s\n", wick_last_error());
        return false;
    }
    return true;
}

int bench_spec(int argc, char **argv) {
    const char *model = NULL, *draft_path = NULL, *kern = "auto";
    long threads = 0, np = 32, nt = 128, k = 4, reps = 3, ngram = 0, seed = 1;
    double alpha[MAXA] = {0.5, 0.7, 0.9};
    int na = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage_spec(stdout);
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model = argv[++i];
        else if (!strcmp(a, "--draft-model") && has) draft_path = argv[++i];
        else if (!strcmp(a, "--kernels") && has) kern = argv[++i];
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has) {
            if (!cli_parse_int("bench spec", a, argv[++i], 0, 1024, &threads)) return 2;
        } else if (!strcmp(a, "-p") && has) {
            if (!cli_parse_int("bench spec", a, argv[++i], 1, 1 << 20, &np)) return 2;
        } else if (!strcmp(a, "-n") && has) {
            if (!cli_parse_int("bench spec", a, argv[++i], 2, 1 << 20, &nt)) return 2;
        } else if (!strcmp(a, "-k") && has) {
            if (!cli_parse_int("bench spec", a, argv[++i], 1, 16, &k)) return 2;
        } else if (!strcmp(a, "-r") && has) {
            if (!cli_parse_int("bench spec", a, argv[++i], 1, 100, &reps)) return 2;
        } else if (!strcmp(a, "--ngram") && has) {
            if (!cli_parse_int("bench spec", a, argv[++i], 1, 8, &ngram)) return 2;
        } else if (!strcmp(a, "--seed") && has) {
            if (!cli_parse_int("bench spec", a, argv[++i], 0, 1L << 40, &seed)) return 2;
        } else if (!strcmp(a, "--accept") && has) {
            const char *s = argv[++i];
            na = 0;
            while (*s) {
                char *end;
                double v = strtod(s, &end);
                if (end == s || !(v >= 0 && v <= 1) || na == MAXA) {
                    fprintf(stderr, "wick bench spec: --accept %s: expected up to %d numbers in "
                                    "[0, 1], comma-separated\n", argv[i], MAXA);
                    return 2;
                }
                alpha[na++] = v;
                s = *end == ',' ? end + 1 : end;
                if (*end && *end != ',') {
                    fprintf(stderr, "wick bench spec: --accept %s: unexpected '%c'\n", argv[i], *end);
                    return 2;
                }
            }
        } else {
            fprintf(stderr, "wick bench spec: unknown or incomplete option '%s'\n", a);
            return usage_spec(stderr);
        }
    }
    if (!model) return usage_spec(stderr);
    if (threads == 0) threads = pool_cpu_count();
    wick_model_params mp = wick_model_params_default();
    mp.kernels = kern;
    wick_model *m = NULL, *dm = NULL;
    cli_status_loading("bench", model);
    if (wick_model_load(model, &mp, &m) != WICK_OK) return cli_fail("bench spec", "cannot load model");
    if (draft_path && wick_model_load(draft_path, &mp, &dm) != WICK_OK) {
        wick_model_free(m);
        return cli_fail("bench spec", "cannot load the draft model");
    }
    cli_status_clear();
    wick_model_info in;
    wick_model_get_info(m, &in);
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = (int)threads;
    sp.n_ctx = (int)(np + nt + k + 2);
    wick_session *s = NULL, *ds = NULL;
    int rc = 1;
    if (wick_session_create(m, &sp, &s) != WICK_OK ||
        (dm && wick_session_create(dm, &sp, &ds) != WICK_OK)) {
        cli_fail("bench spec", "cannot create a session");
        goto out0;
    }
    /* the prompt: seeded ids in [4, vocab) (under the tokenizer's size when there is one) */
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)np);
    const int nrow = 1 + na + (ngram ? 1 : 0) + (ds ? 1 : 0);
    run_rec rec = {.cap = (int)nt + 1};
    int32_t *ref = malloc(sizeof(int32_t) * (size_t)(nt + 1));
    double *tps = malloc(sizeof(double) * (size_t)nrow * (size_t)reps);
    int *drafted = calloc((size_t)nrow, sizeof(int)), *accepted = calloc((size_t)nrow, sizeof(int));
    rec.ids = malloc(sizeof(int32_t) * (size_t)(nt + 1));
    if (!prompt || !ref || !tps || !drafted || !accepted || !rec.ids) {
        fprintf(stderr, "wick bench spec: out of memory\n");
        goto out;
    }
    uint64_t rs = 0x9e3779b97f4a7c15ull ^ (uint64_t)seed;
    const int top = in.n_vocab > 8 ? in.n_vocab : 8;
    for (int i = 0; i < np; i++) prompt[i] = 4 + (int32_t)(next_u01(&rs) * (top - 4));
    wick_gen_params base = wick_gen_params_default();
    base.temperature = 0;
    base.max_tokens = (int)nt;
    base.min_tokens = (int)nt; /* no early end of sequence: every row decodes nt tokens */
    base.spec_k = (int)k;
    if (!run_one(s, prompt, (int)np, &base, &rec)) goto out;
    if (rec.n != nt) {
        fprintf(stderr, "wick bench spec: the reference decoded %d tokens, not %ld\n", rec.n, nt);
        goto out;
    }
    memcpy(ref, rec.ids, sizeof(int32_t) * (size_t)nt);
    oracle orc = {ref, (int)nt, (int)np, in.n_vocab, 0, 0};
    fprintf(stderr, "wick bench spec: %s, %ld threads, prompt %ld ids, %ld tokens, k = %ld, %ld "
                    "repetitions\n", model, threads, np, nt, k, reps);
    for (int r = 0; r < reps; r++) {
        for (int row = 0; row < nrow; row++) {
            wick_gen_params gp = base;
            if (row >= 1 && row <= na) {
                orc.alpha = alpha[row - 1];
                orc.rng = 0x2545f4914f6cdd1dull ^ (uint64_t)(seed * 7919 + row);
                gp.spec_propose = oracle_propose;
                gp.spec_user = &orc;
            } else if (ngram && row == na + 1) {
                gp.spec_ngram = (int)ngram;
            } else if (ds && row == nrow - 1) {
                gp.draft = ds;
            }
            if (!run_one(s, prompt, (int)np, &gp, &rec)) goto out;
            if (rec.n != nt || memcmp(rec.ids, ref, sizeof(int32_t) * (size_t)nt) != 0) {
                fprintf(stderr, "wick bench spec: row %d decoded other ids than plain greedy "
                                "decoding (speculation must not change greedy output)\n", row);
                goto out;
            }
            tps[row * reps + r] = (nt - 1) / (rec.t_last - rec.t_first);
            drafted[row] += rec.drafted, accepted[row] += rec.accepted;
        }
    }
    const cli_stats base_s = cli_stats_of(tps, (int)reps);
    printf("| row | proposals right | accepted / proposed | ids per pass | decode tok/s | "
           "speed-up |\n|---|---|---|---|---|---|\n");
    for (int row = 0; row < nrow; row++) {
        const cli_stats st = cli_stats_of(tps + row * reps, (int)reps);
        char name[64], right[32] = "-", acc[32] = "-", per[32] = "1.00";
        if (row == 0) snprintf(name, sizeof name, "plain");
        else if (row <= na) {
            snprintf(name, sizeof name, "oracle");
            snprintf(right, sizeof right, "%.0f%%", 100 * alpha[row - 1]);
        } else if (ngram && row == na + 1) snprintf(name, sizeof name, "prompt lookup (n=%ld)", ngram);
        else snprintf(name, sizeof name, "draft model");
        if (row > 0) {
            const double d = drafted[row] / (double)reps, a = accepted[row] / (double)reps;
            snprintf(acc, sizeof acc, "%.0f%% (%.0f / %.0f)", d > 0 ? 100 * a / d : 0.0, a, d);
            /* ids per decoding pass: the first id comes from the prompt's pass; each later
               pass gives one id plus the proposals it accepted */
            const double passes = (double)(nt - 1) - a;
            snprintf(per, sizeof per, "%.2f", passes > 0 ? (nt - 1) / passes : 0.0);
        }
        printf("| %s | %s | %s | %s | %.1f (%.1f–%.1f) | %.2f× |\n", name, right, acc, per,
               st.median, st.min, st.max, st.median / base_s.median);
    }
    rc = 0;
out:
    free(prompt), free(ref), free(tps), free(drafted), free(accepted), free(rec.ids);
out0:
    wick_session_free(s);
    wick_session_free(ds);
    wick_model_free(m);
    wick_model_free(dm);
    return rc;
}
