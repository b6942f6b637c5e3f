/* cmd_embed.c — `wick embed`: sentence embeddings of texts given with --text (repeatable)
 * and/or --file (one text per line), printed as one JSON array per text (or, with --array,
 * one JSON array of arrays), or with --similarity the cosine similarity matrix instead.
 * Floats are printed with %.9g so they round-trip to the same f32. Errors go to stderr.
 * Not here: anything numeric beyond the cosine (the library does the work). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "cli/cli.h"

static int usage(FILE *f) {
    fprintf(f,
            "usage: wick embed -m MODEL_DIR (--text S)... [--file F] [options]\n"
            "  -m MODEL_DIR     BERT, XLM-RoBERTa or MPNet folder (config.json,\n"
            "                   model.safetensors, tokenizer; sentence-transformers files,\n"
            "                   Dense modules included, are honoured)\n"
            "  --text S         a text to embed (repeatable)\n"
            "  --file F         embed every line of F (empty lines included)\n"
            "  --pooling MODE   mean | cls | max | mean_sqrt_len (default: the folder's)\n"
            "  --no-normalize   do not L2-normalise (default: the folder's, else normalise)\n"
            "  --prefix S       prepended to every text, e.g. \"query: \" for E5 models\n"
            "  --max-length N   truncate texts to N tokens incl. [CLS]/[SEP]\n"
            "  --batch N        texts per forward pass (default 32)\n"
            "  -t, --threads N  threads (default: all CPUs)\n"
            "  -q, --quiet      no progress line (shown on a terminal for more than one batch)\n"
            "  --array          print one JSON array of arrays instead of one array per line\n"
            "  --similarity     print the cosine similarity matrix (one JSON row per line)\n");
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

int cmd_embed(int argc, char **argv) {
    const char *model = NULL, *file = NULL;
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
        else if (!v) {
            fprintf(stderr, "wick embed: unknown or incomplete option '%s'\n", a);
            goto usage_err;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = argv[++i];
        else if (!strcmp(a, "--text")) {
            if (!push(&t, argv[++i])) goto oom;
        } else if (!strcmp(a, "--file")) file = argv[++i];
        else if (!strcmp(a, "--prefix")) p.prefix = argv[++i];
        else if (!strcmp(a, "--pooling")) {
            i++;
            if (!strcmp(v, "mean")) p.pooling = WICK_POOLING_MEAN;
            else if (!strcmp(v, "cls")) p.pooling = WICK_POOLING_CLS;
            else if (!strcmp(v, "max")) p.pooling = WICK_POOLING_MAX;
            else if (!strcmp(v, "mean_sqrt_len")) p.pooling = WICK_POOLING_MEAN_SQRT_LEN;
            else {
                fprintf(stderr, "wick embed: --pooling expects mean, cls, max or mean_sqrt_len, "
                                "got '%s'\n", v);
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
    if (est != WICK_OK) {
        char what[96];
        snprintf(what, sizeof what, "embedding texts %d..%d (texts[i] below counts from %d)",
                 done_n + 1, done_n + chunk < t.n ? done_n + chunk : t.n, done_n);
        rc = cli_fail("embed", what);
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
