/* cmd_generate.c — `wick generate`: greedy decoding with the KV cache from prompt ids.
 * Prints the new ids (or one JSON object per token with --json) and speed to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

static int usage(FILE *f) {
    fprintf(f,
            "usage: wick generate -m MODEL_DIR --prompt-ids 1,2,3 [-n N] [--temp 0] [--json]\n"
            "                     [--threads N] [--ctx N] [--kernels auto|ref]\n"
            "Greedy decoding with the KV cache; prints the generated ids.\n");
    return f == stdout ? 0 : 2;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *ids_s = NULL, *kern = "auto";
    long n_new = 16, threads = 0, ctx = 0;
    double temp = 0.0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout);
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model = argv[++i];
        else if (!strcmp(a, "--prompt-ids") && has) ids_s = argv[++i];
        else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--kernels") && has) kern = argv[++i];
        else if ((!strcmp(a, "-n") || !strcmp(a, "--max-tokens")) && has) {
            if (!cli_parse_int("generate", a, argv[++i], 0, 1 << 24, &n_new)) return 2;
        } else if ((!strcmp(a, "--threads") || !strcmp(a, "-t")) && has) {
            if (!cli_parse_int("generate", a, argv[++i], 0, 1024, &threads)) return 2;
        } else if (!strcmp(a, "--ctx") && has) {
            if (!cli_parse_int("generate", a, argv[++i], 0, 1 << 24, &ctx)) return 2;
        } else if (!strcmp(a, "--temp") && has) {
            if (!cli_parse_float("generate", a, argv[++i], &temp)) return 2;
        } else {
            fprintf(stderr, "wick generate: unknown or incomplete option '%s'\n", a);
            return usage(stderr);
        }
    }
    if (!model || !ids_s) return usage(stderr);
    if (temp != 0.0) {
        fprintf(stderr, "wick generate: only --temp 0 (greedy) is available in this build\n");
        return 2;
    }
    int32_t *ids = NULL;
    int n = cli_parse_ids("generate", ids_s, &ids);
    if (n < 0) return 2;
    if (n == 0) {
        fprintf(stderr, "wick generate: the prompt is empty\n");
        free(ids);
        return 2;
    }
    wick_model_params mp = wick_model_params_default();
    mp.kernels = kern;
    wick_model *m = NULL;
    wick_session *s = NULL;
    float *logits = NULL;
    int rc = 0;
    if (wick_model_load(model, &mp, &m) != WICK_OK) {
        rc = cli_fail("generate", "cannot load model");
        goto out;
    }
    wick_model_info in;
    wick_model_get_info(m, &in);
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = (int)threads;
    sp.n_ctx = (int)ctx;
    if (wick_session_create(m, &sp, &s) != WICK_OK) {
        rc = cli_fail("generate", "cannot create session");
        goto out;
    }
    logits = malloc(sizeof(float) * in.n_vocab);
    if (!logits) {
        rc = 1;
        goto out;
    }
    double t0 = now_ms();
    if (wick_session_eval(s, ids, n, WICK_LOGITS_LAST, logits) != WICK_OK) {
        rc = cli_fail("generate", "prefill failed");
        goto out;
    }
    double t1 = now_ms();
    int produced = 0;
    for (long k = 0; k < n_new; k++) {
        int32_t best = 0;
        for (int v = 1; v < in.n_vocab; v++)
            if (logits[v] > logits[best]) best = v;
        produced++;
        if (json) printf("{\"id\": %d, \"logit\": %.6g}\n", best, logits[best]);
        else printf("%s%d", k ? "," : "", best);
        fflush(stdout);
        if (k + 1 < n_new && wick_session_eval(s, &best, 1, WICK_LOGITS_LAST, logits) != WICK_OK) {
            if (!json) printf("\n");
            rc = cli_fail("generate", "decode failed");
            goto out;
        }
    }
    if (!json) printf("\n");
    double t2 = now_ms();
    fprintf(stderr, "prefill: %d tokens in %.1f ms (%.1f tok/s); decode: %d tokens in %.1f ms "
                    "(%.1f tok/s)\n", n, t1 - t0, n / ((t1 - t0) / 1e3), produced, t2 - t1,
            produced > 1 ? (produced - 1) / ((t2 - t1) / 1e3) : 0.0);
out:
    free(logits);
    free(ids);
    wick_session_free(s);
    wick_model_free(m);
    return rc;
}
