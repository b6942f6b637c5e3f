/* cmd_embed.c — `wick embed`: sentence embeddings of texts given with --text (repeatable)
 * and/or --file (one text per line), printed as one JSON array per text (or, with --array,
 * one JSON array of arrays), or with --similarity the cosine similarity matrix instead.
 * Floats are printed with %.9g so they round-trip to the same f32. --dim N keeps the first N
 * values (Matryoshka models), normalised again when the model normalises; --quantize prints
 * int8 / uint8 / binary / ubinary codes as sentence-transformers' quantize_embeddings makes
 * them (ranges per dimension from the texts embedded together); --index DIR writes a search
 * index for `wick search` (cmd_search.c) instead of printing. Errors go to stderr. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/fileio.h"
#include "cli/cli.h"
#include "formats/safetensors.h"

static int usage(FILE *f) {
    fprintf(f,
            "usage: wick embed -m MODEL_DIR (--text S)... [--file F] [options]\n"
            "  -m MODEL_DIR     BERT, XLM-RoBERTa or MPNet folder, or a decoder one (Qwen3-\n"
            "                   Embedding, gte-Qwen: any family wick generates with) (config.json,\n"
            "                   model.safetensors, tokenizer; sentence-transformers files,\n"
            "                   Dense modules and prompts included, are honoured)\n"
            "  --text S         a text to embed (repeatable)\n"
            "  --file F         embed every line of F (empty lines included)\n"
            "  --pooling MODE   mean | cls | max | mean_sqrt_len | weightedmean | lasttoken\n"
            "                   (default: the folder's)\n"
            "  --no-normalize   do not L2-normalise (default: the folder's, else normalise)\n"
            "  --prefix S       prepended to every text, e.g. \"query: \" for E5 models\n"
            "  --prompt-name P  prepend the folder's prompt P (config_sentence_transformers.json,\n"
            "                   e.g. \"query\" for Qwen3-Embedding; default: its default prompt)\n"
            "  --max-length N   truncate texts to N tokens incl. [CLS]/[SEP]\n"
            "  --batch N        texts per forward pass (default 32)\n"
            "  -t, --threads N  threads (default: all CPUs)\n"
            "  -q, --quiet      no progress line (shown on a terminal for more than one batch)\n"
            "  --array          print one JSON array of arrays instead of one array per line\n"
            "  --similarity     print the cosine similarity matrix (one JSON row per line)\n"
            "  --dim N          keep the first N values (Matryoshka), normalised again when the\n"
            "                   model normalises\n"
            "  --quantize Q     print int8 | uint8 | binary | ubinary codes (sentence-transformers'\n"
            "                   quantize_embeddings: int8/uint8 ranges per dimension over these\n"
            "                   texts; binary: sign bits packed 8 per byte, minus 128 as int8)\n"
            "  --index DIR      write DIR/{embeddings.safetensors, texts.jsonl, index.json} for\n"
            "                   `wick search` instead of printing (DIR replaced whole; --force\n"
            "                   when it exists)\n");
    return f == stderr ? 2 : 0;
}

typedef struct texts {
    char **v;
    int n, cap;
    char *filebuf;
} texts;

static bool push(texts *t, char *s) {
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        char **nv = realloc(t->v, sizeof(char *) * (size_t)cap);
        if (!nv) return false;
        t->v = nv;
        t->cap = cap;
    }
    t->v[t->n++] = s;
    return true;
}

/* Reads F whole and splits it at '\n' in place (a final newline ends the last line, a
 * trailing '\r' is dropped). */
static bool read_lines(const char *path, texts *t) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    for (size_t r; b && (r = fread(b + n, 1, cap - n, f)) > 0;) {
        n += r;
        if (n == cap) {
            char *nb = realloc(b, 2 * cap + 1);
            if (!nb) free(b);
            b = nb;  /* NULL ends the loop and fails below */
            cap *= 2;
        }
    }
    bool ok = b && !ferror(f);
    fclose(f);
    if (!ok) {
        free(b);
        return false;
    }
    b[n] = 0;
    t->filebuf = b;
    char *p = b, *end = b + n;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *stop = nl ? nl : end;
        if (stop > p && stop[-1] == '\r') stop[-1] = 0;
        *stop = 0;
        if (!push(t, p)) return false;
        p = stop + 1;
    }
    return true;
}

static void print_row(const float *v, int d) {
    putchar('[');
    for (int j = 0; j < d; j++) printf(j ? ", %.9g" : "%.9g", v[j]);
    putchar(']');
}

/* Matryoshka truncation: rows of d values → their first `dim`, L2-normalised when `norm`. */
static void truncate_rows(float *out, int n, int d, int dim, bool norm) {
    for (int i = 0; i < n; i++) {
        float *dst = out + (size_t)i * dim;
        memmove(dst, out + (size_t)i * d, sizeof(float) * (size_t)dim);
        if (!norm) continue;
        double ss = 0;
        for (int j = 0; j < dim; j++) ss += (double)dst[j] * dst[j];
        const float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        for (int j = 0; j < dim; j++) dst[j] *= inv;
    }
}

/* sentence-transformers' quantize_embeddings, printed as JSON integer arrays: int8/uint8 map
 * each dimension's [min, max] over the n rows to 256 steps (C's float→int conversion
 * truncates as numpy's astype does); binary/ubinary pack x > 0 bits, most significant first
 * (numpy.packbits), binary minus 128. */
static void print_quantized(const float *v, int n, int d, const char *q, bool array) {
    const bool ints = !strcmp(q, "int8") || !strcmp(q, "uint8");
    float *lo = NULL, *step = NULL;
    if (ints) {
        lo = malloc(sizeof(float) * (size_t)d), step = malloc(sizeof(float) * (size_t)d);
        if (!lo || !step) { free(lo), free(step); fprintf(stderr, "wick embed: out of memory\n"); return; }
        for (int j = 0; j < d; j++) {
            float mn = v[j], mx = v[j];
            for (int i = 1; i < n; i++) {
                const float x = v[(size_t)i * d + j];
                mn = x < mn ? x : mn, mx = x > mx ? x : mx;
            }
            lo[j] = mn, step[j] = (mx - mn) / 255.0f;
        }
    }
    if (array) putchar('[');
    for (int i = 0; i < n; i++) {
        const float *r = v + (size_t)i * d;
        if (array && i) printf(",\n ");
        putchar('[');
        if (ints) {
            const bool s8 = q[0] == 'i';
            for (int j = 0; j < d; j++) {
                const float z = step[j] > 0 ? (r[j] - lo[j]) / step[j] : 0.0f;
                printf(j ? ", %d" : "%d", s8 ? (int)(int8_t)(int)(z - 128.0f) : (int)(uint8_t)(int)z);
            }
        } else {
            const bool s8 = q[0] == 'b';
            for (int j = 0; j < d; j += 8) {
                int byte = 0;
                for (int b = 0; b < 8; b++) byte = byte << 1 | (j + b < d && r[j + b] > 0);
                printf(j ? ", %d" : "%d", s8 ? byte - 128 : byte);
            }
        }
        putchar(']');
        if (!array) putchar('\n');
    }
    if (array) printf("]\n");
    free(lo), free(step);
}

/* The index of `wick search`: embeddings.safetensors ("embeddings" F32 [n, dim]), texts.jsonl
 * (one JSON string per line, row order) and index.json (model path, settings, counts), built
 * beside DIR and swapped in whole. */
static wick_status write_index(const char *dir, const char *model, const wick_embedder_params *p,
                               const wick_embedder *e, const float *v, int n, int dim,
                               char *const *txt) {
    dir_txn txn;
    wick_status st = dir_txn_begin(dir, &txn);
    if (st) return st;
    char *path = path_join(txn.stage, "embeddings.safetensors");
    st_write_tensor t = {.name = "embeddings", .dt = DT_F32, .ndim = 2, .shape = {n, dim}, .data = v};
    const char *mk[] = {"format"}, *mv[] = {"wick-index"};
    st = path ? st_write(path, &t, 1, mk, mv, 1) : WICK_ERR_NOMEM;
    free(path);
    /* texts: JSON strings, one per line */
    size_t cap = 1 << 16, len = 0;
    char *buf = st ? NULL : malloc(cap);
    for (int i = 0; buf && i < n; i++) {
        cJSON *s = cJSON_CreateString(txt[i]);
        char *js = s ? cJSON_PrintUnformatted(s) : NULL;
        cJSON_Delete(s);
        const size_t k = js ? strlen(js) : 0;
        if (js && len + k + 2 > cap) {
            while (len + k + 2 > cap) cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) free(buf);
            buf = nb;
        }
        if (!js || !buf) {
            free(js);
            free(buf);
            buf = NULL;
            break;
        }
        memcpy(buf + len, js, k);
        len += k;
        buf[len++] = '\n';
        free(js);
    }
    if (!st && !buf) st = WICK_ERR_NOMEM;
    if (!st && (path = path_join(txn.stage, "texts.jsonl"))) {
        st = file_write_atomic(path, buf, len);
        free(path);
    }
    free(buf);
    if (!st) {
        cJSON *o = cJSON_CreateObject();
        char *abs = realpath(model, NULL);
        cJSON_AddStringToObject(o, "model", abs ? abs : model);
        free(abs);
        cJSON_AddNumberToObject(o, "count", n);
        cJSON_AddNumberToObject(o, "dim", dim);
        cJSON_AddNumberToObject(o, "model_dim", wick_embedder_dim(e));
        cJSON_AddNumberToObject(o, "pooling", (double)wick_embedder_pooling(e));
        cJSON_AddBoolToObject(o, "normalize", wick_embedder_normalize(e));
        cJSON_AddNumberToObject(o, "max_length", wick_embedder_max_length(e));
        if (p->prefix) cJSON_AddStringToObject(o, "document_prefix", p->prefix);
        if (p->prompt_name) cJSON_AddStringToObject(o, "document_prompt_name", p->prompt_name);
        char *js = cJSON_Print(o);
        cJSON_Delete(o);
        path = path_join(txn.stage, "index.json");
        st = js && path ? file_write_atomic(path, js, strlen(js)) : WICK_ERR_NOMEM;
        free(js), free(path);
    }
    if (st) dir_txn_abort(&txn);
    else st = dir_txn_commit(&txn);
    return st;
}

int cmd_embed(int argc, char **argv) {
    const char *model = NULL, *file = NULL, *quant = NULL, *index = NULL;
    long dim_opt = 0;
    bool force = false;
    texts t = {0};
    bool sim = false, array = false, quiet = false;
    wick_embedder_params p = wick_embedder_params_default();
    int rc = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            free(t.v);
            return usage(stdout);
        } else if (!strcmp(a, "--no-normalize")) p.normalize = 0;
        else if (!strcmp(a, "--similarity")) sim = true;
        else if (!strcmp(a, "--array")) array = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = true;
        else if (!strcmp(a, "--force")) force = true;
        else if (!v) {
            fprintf(stderr, "wick embed: unknown or incomplete option '%s'\n", a);
            goto usage_err;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = argv[++i];
        else if (!strcmp(a, "--text")) {
            if (!push(&t, argv[++i])) goto oom;
        } else if (!strcmp(a, "--file")) file = argv[++i];
        else if (!strcmp(a, "--index")) index = argv[++i];
        else if (!strcmp(a, "--dim")) {
            if (!cli_parse_int("embed", a, argv[++i], 1, 1 << 20, &dim_opt)) goto usage_err;
        } else if (!strcmp(a, "--quantize")) {
            quant = argv[++i];
            if (strcmp(quant, "int8") && strcmp(quant, "uint8") && strcmp(quant, "binary") &&
                strcmp(quant, "ubinary")) {
                fprintf(stderr, "wick embed: --quantize expects int8, uint8, binary or ubinary, got '%s'\n", quant);
                goto usage_err;
            }
        }
        else if (!strcmp(a, "--prefix")) p.prefix = argv[++i];
        else if (!strcmp(a, "--prompt-name")) p.prompt_name = argv[++i];
        else if (!strcmp(a, "--pooling")) {
            i++;
            if (!strcmp(v, "mean")) p.pooling = WICK_POOLING_MEAN;
            else if (!strcmp(v, "cls")) p.pooling = WICK_POOLING_CLS;
            else if (!strcmp(v, "max")) p.pooling = WICK_POOLING_MAX;
            else if (!strcmp(v, "mean_sqrt_len")) p.pooling = WICK_POOLING_MEAN_SQRT_LEN;
            else if (!strcmp(v, "weightedmean")) p.pooling = WICK_POOLING_WEIGHTED_MEAN;
            else if (!strcmp(v, "lasttoken")) p.pooling = WICK_POOLING_LAST_TOKEN;
            else {
                fprintf(stderr, "wick embed: --pooling expects mean, cls, max, mean_sqrt_len, "
                                "weightedmean or lasttoken, got '%s'\n", v);
                goto usage_err;
            }
        } else if (!strcmp(a, "--max-length")) {
            if (!cli_parse_int("embed", a, argv[++i], 2, 1 << 20, &n)) goto usage_err;
            p.max_length = (int)n;
        } else if (!strcmp(a, "--batch")) {
            if (!cli_parse_int("embed", a, argv[++i], 1, 1 << 16, &n)) goto usage_err;
            p.batch_size = (int)n;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            if (!cli_parse_int("embed", a, argv[++i], 1, 1024, &n)) goto usage_err;
            p.n_threads = (int)n;
        } else {
            fprintf(stderr, "wick embed: unknown option '%s'\n", a);
            goto usage_err;
        }
    }
    if (!model) {
        fprintf(stderr, "wick embed: need -m MODEL_DIR\n");
        goto usage_err;
    }
    if ((sim ? 1 : 0) + (quant ? 1 : 0) + (index ? 1 : 0) > 1) {
        fprintf(stderr, "wick embed: --similarity, --quantize and --index are alternatives\n");
        goto usage_err;
    }
    if (index && !force && (dir_exists(index) || file_exists(index))) {
        fprintf(stderr, "wick embed: %s exists; --force replaces it\n", index);
        rc = 1;
        goto done;
    }
    const int n_text = t.n;   /* --text values come first, then the lines of --file */
    if (file && !read_lines(file, &t)) {
        fprintf(stderr, "wick embed: cannot read %s: %s\n", file, strerror(errno));
        rc = 1;
        goto done;
    }
    if (t.n == 0) {
        fprintf(stderr, "wick embed: nothing to embed (give --text S or --file F)\n");
        goto usage_err;
    }
    for (int i = 0; i < t.n; i++) {
        char what[4200];
        if (t.filebuf && t.v[i] >= t.filebuf)   /* a line of --file */
            snprintf(what, sizeof what, "%s, line %d,", file, i + 1 - n_text);
        else
            snprintf(what, sizeof what, "--text #%d", i + 1);
        if (!cli_check_utf8("embed", what, t.v[i], strlen(t.v[i]))) {
            rc = t.filebuf && t.v[i] >= t.filebuf ? 1 : 2;
            goto done;
        }
    }
    wick_embedder *e = NULL;
    if (wick_embedder_load(model, &p, &e) != WICK_OK) {
        rc = cli_fail("embed", "loading the model");
        goto done;
    }
    int d = wick_embedder_dim(e);
    if (dim_opt > d) {
        fprintf(stderr, "wick embed: --dim %ld is more than the model's %d values\n", dim_opt, d);
        wick_embedder_free(e);
        goto usage_err;
    }
    float *out = malloc(sizeof(float) * (size_t)t.n * (size_t)d);
    if (!out) {
        wick_embedder_free(e);
        goto oom;
    }
    /* whole batches at a time (the library's own split, so the numbers are the same), with a
     * progress line on a terminal: texts done, texts/s, ETA */
    const int chunk = p.batch_size * 8;
    const bool show = !quiet && t.n > chunk && isatty(2);
    const double t0 = cli_now_s();
    wick_status est = WICK_OK;
    int done_n = 0;
    while (done_n < t.n) {
        const int nb = t.n - done_n < chunk ? t.n - done_n : chunk;
        est = wick_embed(e, (const char *const *)t.v + done_n, nb, out + (size_t)done_n * d);
        if (est != WICK_OK) break;
        done_n += nb;
        if (show) {
            const double el = cli_now_s() - t0, rate = done_n / (el > 0 ? el : 1e-9);
            fprintf(stderr, "\r\033[Kwick embed: %d/%d texts  %.0f texts/s  ETA %.0f s",
                    done_n, t.n, rate, (t.n - done_n) / rate);
        }
    }
    if (show) fputs("\r\033[K", stderr);
    if (est == WICK_OK && dim_opt > 0 && dim_opt < d) {
        truncate_rows(out, t.n, d, (int)dim_opt, wick_embedder_normalize(e));
        d = (int)dim_opt;
    }
    if (est != WICK_OK) {
        char what[96];
        snprintf(what, sizeof what, "embedding texts %d..%d (texts[i] below counts from %d)",
                 done_n + 1, done_n + chunk < t.n ? done_n + chunk : t.n, done_n);
        rc = cli_fail("embed", what);
    } else if (index) {
        wick_status ist = write_index(index, model, &p, e, out, t.n, d, t.v);
        if (ist) rc = cli_fail("embed", "writing the index");
        else {
            rc = 0;
            if (!quiet) fprintf(stderr, "wick embed: wrote %s (%d texts, %d values each)\n", index, t.n, d);
        }
    } else if (quant) {
        print_quantized(out, t.n, d, quant, array);
        rc = 0;
    } else if (sim) {
        /* cosine on normalised copies (the embeddings may be unnormalised) */
        for (int i = 0; i < t.n; i++) {
            double ss = 0;
            float *r = out + (size_t)i * d;
            for (int j = 0; j < d; j++) ss += (double)r[j] * r[j];
            float inv = ss > 0 ? (float)(1 / sqrt(ss)) : 0;
            for (int j = 0; j < d; j++) r[j] *= inv;
        }
        for (int i = 0; i < t.n; i++) {
            putchar('[');
            for (int k = 0; k < t.n; k++) {
                double s = 0;
                for (int j = 0; j < d; j++) s += (double)out[(size_t)i * d + j] * out[(size_t)k * d + j];
                printf(k ? ", %.6f" : "%.6f", s);
            }
            printf("]\n");
        }
        rc = 0;
    } else {
        if (array) putchar('[');
        for (int i = 0; i < t.n; i++) {
            if (array && i) printf(",\n ");
            print_row(out + (size_t)i * d, d);
            if (!array) putchar('\n');
        }
        if (array) printf("]\n");
        rc = 0;
    }
    free(out);
    wick_embedder_free(e);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "wick embed: writing the output failed\n");
        rc = 1;
    }
    goto done;
oom:
    fprintf(stderr, "wick embed: out of memory\n");
    rc = 1;
    goto done;
usage_err:
    usage(stderr);
    rc = 2;
done:
    free(t.v);
    free(t.filebuf);
    return rc;
}
