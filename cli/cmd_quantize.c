/* cmd_quantize.c — `wick quantize IN OUT.gguf --type T` and `wick convert IN OUT [--dtype T]`.
 * Model folder or GGUF in; OUT ending in .gguf gets a GGUF file (model_gguf_save; the
 * tokenizer travels in the metadata, model/gguf_tok.h, so the .gguf alone is enough to chat),
 * any other OUT of a .gguf input gets a Hugging Face model folder (model/model_export.h:
 * safetensors with HF names, config.json, tokenizer.json from the GGUF metadata). Every file
 * is written atomically: no partial file on any error.
 * A llama GGUF re-written as GGUF keeps its q/k rows as they are (already permuted; the model
 * records it, so model_gguf_save does not permute twice).
 * Not here: folder -> folder copies (refused). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/fileio.h"
#include "cli/cli.h"
#include "model/gguf_tok.h"
#include "model/model_export.h"
#include "model/model_gguf.h"

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Loads IN (folder or .gguf) without its tokenizer; a GGUF model keeps its mapping in
 * m->gguf (closed by wick_model_free). */
static int load_any(const char *cmd, const char *in, wick_model **m) {
    wick_model_params mp = wick_model_params_default();
    mp.load_tokenizer = false;
    cli_status_loading(cmd, in);
    if (wick_model_load(in, &mp, m)) return cli_fail(cmd, "cannot load the model");
    return 0;
}

/* "writing OUT: 45% (120 of 169 matrices)" on a terminal. */
typedef struct qprog { const char *cmd, *out; double last; } qprog;

static void on_matrices(void *user, int done, int total) {
    qprog *q = user;
    const double t = cli_now_s();
    if (done < total && t - q->last < 0.1) return;
    q->last = t;
    cli_status(q->cmd, "writing %s: %d%% (%d of %d matrices converted)", q->out,
               total > 0 ? 100 * (done < total ? done : total) / total : 0, done, total);
}

/* IN -> OUT.gguf with dt matrices; the summary line at the end. */
static int run(const char *cmd, const char *in, const char *out, dtype dt) {
    if (!ends_with(out, ".gguf"))
        return fprintf(stderr, "wick %s: %s: the output must be a .gguf file (for a model folder "
                               "from a .gguf use `wick convert IN.gguf OUT_DIR`)\n", cmd, out), 1;
    const double t0 = cli_now_s();
    wick_model *m = NULL;
    if (load_any(cmd, in, &m)) return 1;
    const gguf_file *g = m->gguf;
    int rc = 0;
    {
        gguf_tok_meta tm;
        wick_status st = g ? gguf_tok_meta_from_gguf(g, &tm) : gguf_tok_meta_from_folder(in, &tm);
        if (st == WICK_OK) st = gguf_tok_meta_pad(&tm, m->tok_embd.rows);
        if (st == WICK_OK) gguf_tok_meta_drop_ids(&tm);   /* the model's ids are written */
        if (st == WICK_OK) {
            cli_status(cmd, "writing %s (%s matrices) …", out, dtype_name(dt));
            qprog qp = {cmd, out, 0};
            model_gguf_set_progress(on_matrices, &qp);
            st = model_gguf_save(m, out, dt, tm.kv, tm.n);
            model_gguf_set_progress(NULL, NULL);
        }
        if (st) {
            rc = cli_fail(cmd, "cannot write the GGUF");
        } else {
            if (!tm.n) {
                cli_status_clear();
                fprintf(stderr, "wick %s: note: %s has no tokenizer; %s carries none\n", cmd,
                        in, out);
            }
            char what[64];
            snprintf(what, sizeof what, "GGUF, %s matrices%s", dtype_name(dt),
                     tm.n ? ", tokenizer" : "");
            cli_wrote(cmd, out, what, cli_now_s() - t0);
        }
        gguf_tok_meta_free(&tm);
    }
    wick_model_free(m);
    return rc;
}

static int usage_quantize(FILE *f) {
    fprintf(f, "usage: wick quantize IN -o OUT.gguf --type q8_0|q4_0|q5_0|q4_k|q6_k|f16|bf16|f32 "
               "[--force]\n"
               "  IN          a model folder or .gguf file\n"
               "  -o, --out   the GGUF to write (also accepted as the second positional argument)\n"
               "  --force     replace an existing OUT\n"
               "  -q, --quiet no progress or summary line\n"
               "Ends with one line on stderr: what was written, its size and the time taken.\n");
    return f == stdout ? 0 : 2;
}

/* The positional IN [OUT] / -o OUT / --force options shared by quantize and convert; 0 or an
 * exit code. */
static int parse_io(const char *cmd, const char *a, const char *next, int *i, const char **in,
                    const char **out, bool *force) {
    if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && next) {
        *out = next;
        (*i)++;
    } else if (!strcmp(a, "--force")) *force = true;
    else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) cli_quiet = true;
    else if (a[0] == '-' && a[1]) return fprintf(stderr, "wick %s: unknown or incomplete option "
                                                         "'%s'\n", cmd, a), 2;
    else if (!*in) *in = a;
    else if (!*out) *out = a;
    else return fprintf(stderr, "wick %s: unexpected argument %s\n", cmd, a), 2;
    return 0;
}

/* An existing output is replaced only with --force (and never the input itself). */
static int check_out(const char *cmd, const char *in, const char *out, bool force) {
    if (!strcmp(in, out))
        return fprintf(stderr, "wick %s: the output %s is the input\n", cmd, out), 2;
    if (!force && (file_exists(out) || dir_exists(out)))
        return fprintf(stderr, "wick %s: %s exists (use --force to replace it)\n", cmd, out), 1;
    return 0;
}

int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *type = NULL;
    bool force = false;
    for (int i = 1; i < argc; i++) {
        int rc;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage_quantize(stdout);
        if (strcmp(argv[i], "--type") == 0 && i + 1 < argc) type = argv[++i];
        else if ((rc = parse_io("quantize", argv[i], i + 1 < argc ? argv[i + 1] : NULL, &i, &in,
                                &out, &force)))
            return rc;
    }
    if (!in || !out || !type) return usage_quantize(stderr);
    int crc = check_out("quantize", in, out, force);
    if (crc) return crc;
    static const struct { const char *n; dtype dt; } k[] = {
        {"q8_0", DT_Q8_0}, {"q4_0", DT_Q4_0}, {"q5_0", DT_Q5_0}, {"q4_k", DT_Q4_K}, {"q6_k", DT_Q6_K},
        {"f16", DT_F16}, {"bf16", DT_BF16}, {"f32", DT_F32}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (strcasecmp(type, k[i].n) == 0) return run("quantize", in, out, k[i].dt);
    return fprintf(stderr, "wick quantize: unknown --type %s (q8_0, q4_0, q5_0, q4_k, q6_k, f16, bf16)\n", type), 2;
}

/* GGUF -> Hugging Face folder. */
static int export_folder(const char *in, const char *out, const char *dtype_arg) {
    const double t0 = cli_now_s();
    wick_model *m = NULL;
    if (load_any("convert", in, &m)) return 1;
    dtype dt = model_export_default_dtype(m);
    if (dtype_arg) {
        if (strcasecmp(dtype_arg, "f32") == 0) dt = DT_F32;
        else if (strcasecmp(dtype_arg, "f16") == 0) dt = DT_F16;
        else if (strcasecmp(dtype_arg, "bf16") == 0) dt = DT_BF16;
    }
    int rc = 0;
    cli_status("convert", "writing %s (%s matrices) …", out, dtype_name(dt));
    if (model_export_folder(m, out, dt)) {
        rc = cli_fail("convert", "cannot write the model folder");
    } else {
        char what[96];
        snprintf(what, sizeof what, "model folder, %s matrices%s", dtype_name(dt),
                 m->gguf && (gguf_find_kv(m->gguf, "tokenizer.ggml.model") ||
                             gguf_find_kv(m->gguf, "tokenizer.huggingface.json"))
                     ? ", tokenizer.json" : ", no tokenizer in the source");
        cli_wrote("convert", out, what, cli_now_s() - t0);
    }
    wick_model_free(m);
    return rc;
}

static int usage_convert(FILE *f) {
    fprintf(f, "usage: wick convert IN_FOLDER|IN.gguf -o OUT.gguf [--dtype f32|f16|bf16] [--force]\n"
               "       wick convert IN.gguf -o OUT_DIR [--dtype f32|f16|bf16] [--force]\n"
               "  (default: the source matrix type; BF16 for a quantized GGUF -> folder; OUT may\n"
               "  also be the second positional argument; --force replaces an existing OUT;\n"
               "  -q, --quiet: no progress or summary line)\n"
               "Ends with one line on stderr: what was written, its size and the time taken.\n");
    return f == stdout ? 0 : 2;
}

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *dt_arg = NULL;
    bool force = false;
    for (int i = 1; i < argc; i++) {
        int rc;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage_convert(stdout);
        if (strcmp(argv[i], "--dtype") == 0 && i + 1 < argc) dt_arg = argv[++i];
        else if ((rc = parse_io("convert", argv[i], i + 1 < argc ? argv[i + 1] : NULL, &i, &in,
                                &out, &force)))
            return rc;
    }
    if (!in || !out) return usage_convert(stderr);
    int crc = check_out("convert", in, out, force);
    if (crc) return crc;
    if (dt_arg && strcasecmp(dt_arg, "f32") && strcasecmp(dt_arg, "f16") && strcasecmp(dt_arg, "bf16"))
        return fprintf(stderr, "wick convert: unknown --dtype %s (f32, f16, bf16)\n", dt_arg), 2;
    if (!ends_with(out, ".gguf")) {
        if (!ends_with(in, ".gguf"))
            return fprintf(stderr, "wick convert: %s: a model folder converts to a .gguf file; "
                                   "an output folder needs a .gguf input\n", out), 2;
        return export_folder(in, out, dt_arg);
    }
    wick_model *m = NULL;
    if (load_any("convert", in, &m)) return 1;
    /* keep the source type: F32/F16/BF16 as stored (mixed -> F32), unless --dtype says */
    const char *wd = m->weight_dtype;
    dtype dt = strcmp(wd, "BF16") == 0 ? DT_BF16 : strcmp(wd, "F16") == 0 ? DT_F16 : DT_F32;
    wick_model_free(m);
    if (dt_arg) dt = strcasecmp(dt_arg, "f32") == 0 ? DT_F32 : strcasecmp(dt_arg, "f16") == 0 ? DT_F16 : DT_BF16;
    return run("convert", in, out, dt);
}
