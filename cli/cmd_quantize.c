/* cmd_quantize.c — `wick quantize IN OUT --type T` and `wick convert IN OUT`: model folder or
 * GGUF in, GGUF out (model_gguf_save writes atomically: no partial file on any error). The
 * tokenizer travels in the metadata (model/gguf_tok.h), so the .gguf alone is enough to chat.
 * Not yet: convert GGUF -> folder (reported as an error, never silently). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"
#include "model/gguf_tok.h"
#include "model/model_gguf.h"

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Loads IN (folder or .gguf) into *m; *g is the GGUF mapping to close after the model. */
static int load_any(const char *in, wick_model **m, gguf_file **g, bool *il) {
    *g = NULL;
    *il = false;
    wick_model_params mp = wick_model_params_default();
    mp.load_tokenizer = false;
    if (ends_with(in, ".gguf")) {
        *m = calloc(1, sizeof **m);
        if (!*m) return fprintf(stderr, "wick: out of memory\n"), 1;
        if (model_gguf_load(in, &mp, *m, g, il)) {
            fprintf(stderr, "wick: %s\n", wick_last_error());
            wick_model_free(*m);
            gguf_close(*g);
            return 1;
        }
        return 0;
    }
    if (wick_model_load(in, &mp, m)) return fprintf(stderr, "wick: %s\n", wick_last_error()), 1;
    return 0;
}

static int run(const char *in, const char *out, dtype dt) {
    if (!ends_with(out, ".gguf"))
        return fprintf(stderr, "wick: %s: the output must be a .gguf file (GGUF -> folder is not "
                               "supported yet)\n", out), 1;
    wick_model *m = NULL;
    gguf_file *g = NULL;
    bool il = false;
    if (load_any(in, &m, &g, &il)) return 1;
    int rc = 0;
    if (il) {
        fprintf(stderr, "wick: %s: re-writing a llama GGUF (already permuted rows) is not "
                        "supported yet\n", in);
        rc = 1;
    } else {
        gguf_tok_meta tm;
        wick_status st = g ? gguf_tok_meta_from_gguf(g, &tm) : gguf_tok_meta_from_folder(in, &tm);
        if (st == WICK_OK) st = model_gguf_save(m, out, dt, tm.kv, tm.n);
        if (st) {
            fprintf(stderr, "wick: %s\n", wick_last_error());
            rc = 1;
        } else if (!tm.n) {
            fprintf(stderr, "wick: note: %s has no tokenizer; %s carries none\n", in, out);
        }
        gguf_tok_meta_free(&tm);
    }
    wick_model_free(m);
    gguf_close(g);
    return rc;
}

int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *type = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--type") == 0 && i + 1 < argc) type = argv[++i];
        else if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else return fprintf(stderr, "wick quantize: unexpected argument %s\n", argv[i]), 2;
    }
    if (!in || !out || !type)
        return fprintf(stderr, "usage: wick quantize IN OUT.gguf --type q8_0|q4_0|q4_k|q6_k|f16|bf16\n"), 2;
    static const struct { const char *n; dtype dt; } k[] = {
        {"q8_0", DT_Q8_0}, {"q4_0", DT_Q4_0}, {"q4_k", DT_Q4_K}, {"q6_k", DT_Q6_K},
        {"f16", DT_F16}, {"bf16", DT_BF16}, {"f32", DT_F32}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (strcasecmp(type, k[i].n) == 0) return run(in, out, k[i].dt);
    return fprintf(stderr, "wick quantize: unknown --type %s (q8_0, q4_0, q4_k, q6_k, f16, bf16)\n", type), 2;
}

int cmd_convert(int argc, char **argv) {
    if (argc != 3) return fprintf(stderr, "usage: wick convert IN_FOLDER OUT.gguf\n"), 2;
    wick_model *m = NULL;
    gguf_file *g = NULL;
    bool il = false;
    if (load_any(argv[1], &m, &g, &il)) return 1;
    /* keep the source type: F32/F16/BF16 as stored (mixed -> F32) */
    const char *wd = m->weight_dtype;
    dtype dt = strcmp(wd, "BF16") == 0 ? DT_BF16 : strcmp(wd, "F16") == 0 ? DT_F16 : DT_F32;
    wick_model_free(m);
    gguf_close(g);
    return run(argv[1], argv[2], dt);
}
