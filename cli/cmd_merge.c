/* cmd_merge.c — `wick merge -m MODEL -a ADAPTER[:scale] -o OUT`: folds a LoRA adapter into
 * a copy of the base weights and writes it with wick_model_save: OUT ending in .gguf gets a
 * GGUF file with the base's tensor types (a quantized base stays quantized: merged rows are
 * requantized to their block type), any other OUT a complete Hugging Face model folder
 * (model.safetensors in the base dtype with the base's tensor names for a folder base; for a
 * GGUF base HF names with matrices dequantized to BF16, or kept F32/F16/BF16; config.json,
 * generation_config.json and tokenizer files). Also the `--adapter PATH[:scale]` helper
 * (PATH: a PEFT folder or a GGUF LoRA file) shared by `wick logits` and `wick generate`. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/fileio.h"
#include "cli/cli.h"
#include "model/model.h"
#include "model/model_export.h"

bool cli_parse_adapter(const char *cmd, const char *spec, char **dir, float *scale) {
    *scale = 1.0f;
    *dir = strdup(spec);
    if (!*dir) return false;
    char *colon = strrchr(*dir, ':');
    if (colon && colon[1]) {
        char *end;
        double v = strtod(colon + 1, &end);
        if (*end == 0) {       /* "DIR:0.5"; a ':' followed by a non-number is part of DIR */
            *colon = 0;
            *scale = (float)v;
        }
    }
    if (!**dir) {
        fprintf(stderr, "wick %s: --adapter needs a PEFT folder or a GGUF LoRA file (PATH[:scale])\n", cmd);
        free(*dir);
        *dir = NULL;
        return false;
    }
    return true;
}

int cli_use_adapter(const char *cmd, wick_model *m, wick_session *s, const char *spec) {
    char *dir;
    float scale;
    if (!cli_parse_adapter(cmd, spec, &dir, &scale)) return 2;
    int rc = 0;
    if (wick_adapter_load(m, dir, "cli") != WICK_OK) rc = cli_fail(cmd, "cannot load the adapter");
    else if (wick_session_set_adapter(s, "cli", scale) != WICK_OK)
        rc = cli_fail(cmd, "cannot use the adapter");
    free(dir);
    return rc;
}

static int usage(FILE *f) {
    fprintf(f, "usage: wick merge -m MODEL_DIR|MODEL.gguf -a ADAPTER_DIR|ADAPTER.gguf[:scale] -o OUT\n"
               "                  [--force] [-q]\n"
               "Writes W + scale*(alpha/r)*B*A in every adapted matrix (computed in f32, stored in\n"
               "the base type; a quantized base is dequantized, merged and requantized to its block\n"
               "type). OUT ending in .gguf: a GGUF file with the base's tensor types and tokenizer.\n"
               "Any other OUT: a Hugging Face model folder (a GGUF base's matrices dequantized to\n"
               "BF16, or kept when F32/F16/BF16). The base is not modified; an existing OUT is\n"
               "refused unless --force (OUT naming the base itself always is), and is replaced as\n"
               "a whole, so a previous OUT stays complete until the new one is.\n"
               "  -q, --quiet   no progress or summary line\n"
               "Ends with one line on stderr: what was written, its size and the time taken.\n");
    return f == stdout ? 0 : 2;
}

/* True when a and b name the same existing file or folder (symlinks and ./ resolved). */
static bool same_path(const char *a, const char *b) {
    char ra[PATH_MAX], rb[PATH_MAX];
    return realpath(a, ra) && realpath(b, rb) && !strcmp(ra, rb);
}

int cmd_merge(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *out = NULL;
    bool force = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout);
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model = argv[++i];
        else if ((!strcmp(a, "-a") || !strcmp(a, "--adapter")) && has) adapter = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && has) out = argv[++i];
        else if (!strcmp(a, "--force")) force = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) cli_quiet = true;
        else {
            fprintf(stderr, "wick merge: unknown or incomplete option '%s'\n", a);
            return usage(stderr);
        }
    }
    if (!model || !adapter || !out) return usage(stderr);
    char *dir;
    float scale;
    if (!cli_parse_adapter("merge", adapter, &dir, &scale)) return 2;
    if (same_path(out, model) || same_path(out, dir)) {
        fprintf(stderr, "wick merge: -o %s is the %s itself; write the merged model somewhere "
                        "else\n", out, same_path(out, model) ? "base model" : "adapter");
        free(dir);
        return 2;
    }
    if (!force && (file_exists(out) || dir_exists(out))) {
        fprintf(stderr, "wick merge: %s exists (use --force to replace it)\n", out);
        free(dir);
        return 1;
    }
    wick_model_params mp = wick_model_params_default();
    mp.load_tokenizer = false;
    wick_model *m = NULL, *mm = NULL;
    int rc = 0;
    struct timespec t0, t1, t2;
    const double start = cli_now_s();
    cli_status_loading("merge", model);
    if (wick_model_load(model, &mp, &m) != WICK_OK) rc = cli_fail("merge", "cannot load model");
    else if (wick_adapter_load(m, dir, "merge") != WICK_OK)
        rc = cli_fail("merge", "cannot load the adapter");
    if (!rc) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        cli_status("merge", "merging %s …", dir);
        if (wick_model_merge_adapter(m, "merge", scale, &mm) != WICK_OK)
            rc = cli_fail("merge", "merge failed");
        clock_gettime(CLOCK_MONOTONIC, &t1);
    }
    if (!rc) cli_status("merge", "writing %s …", out);
    if (!rc && wick_model_save(mm, out) != WICK_OK) rc = cli_fail("merge", "cannot write the model");
    if (!rc) {
        clock_gettime(CLOCK_MONOTONIC, &t2);
        /* what was written: the matrices' type decides the size and accuracy of OUT */
        char base_t[48], what[128], line[400];
        if (strcmp(m->weight_dtype, "mixed") == 0 && m->cfg.n_layer > 0)
            snprintf(base_t, sizeof base_t, "mixed, q_proj %s", dtype_name(m->layers[0].wq.dt));
        else
            snprintf(base_t, sizeof base_t, "%s", m->weight_dtype);
        size_t n = strlen(out);
        if (n >= 5 && strcasecmp(out + n - 5, ".gguf") == 0)
            snprintf(what, sizeof what, "GGUF, the base's tensor types: %s", base_t);
        else if (m->gguf)
            snprintf(what, sizeof what, "HF folder, %s matrices from the %s base",
                     dtype_name(model_export_default_dtype(mm)), base_t);
        else
            snprintf(what, sizeof what, "HF folder, %s matrices as in the base", base_t);
        snprintf(line, sizeof line, "%s, %s scale %g merged in %.1f ms, written in %.1f ms", what,
                 dir, (double)scale,
                 (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6,
                 (t2.tv_sec - t1.tv_sec) * 1e3 + (t2.tv_nsec - t1.tv_nsec) / 1e6);
        cli_wrote("merge", out, line, cli_now_s() - start);
    }
    wick_model_free(mm);
    wick_model_free(m);
    free(dir);
    return rc;
}
