/* cmd_tokenize.c — `wick tokenize` (text -> JSON array of ids) and `wick detokenize`
 * (comma-separated ids -> text). PATH may be a tokenizer.json, a vocab.txt or a model folder.
 * Special tokens written in the text are always recognized (as HF does); --special also adds
 * the post-processor's tokens (BOS, [CLS]/[SEP]). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static int usage_tok(FILE *f) {
    fprintf(f, "usage: wick tokenize -T PATH (--text S | --file F) [--special]\n"
               "  -T, --tokenizer PATH  tokenizer.json, vocab.txt or a model folder\n"
               "               (-t PATH still works, with a note: -t is --threads everywhere)\n"
               "  --text S     text to encode\n"
               "  --file F     encode the bytes of file F\n"
               "  --special    add the post-processor's special tokens (BOS, [CLS]/[SEP])\n");
    return f == stderr ? 2 : 0;
}

static int usage_detok(FILE *f) {
    fprintf(f, "usage: wick detokenize -T PATH --ids 1,2,3 [--skip-special]\n"
               "  -T, --tokenizer PATH  tokenizer.json, vocab.txt or a model folder\n"
               "                  (-t PATH still works, with a note: -t is --threads everywhere)\n"
               "  --ids LIST      comma-separated token ids\n"
               "  --skip-special  drop special tokens (--keep-special: keep them, the default,\n"
               "                  as transformers' decode)\n");
    return f == stderr ? 2 : 0;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        if (n == cap) {
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        free(b);
        return NULL;
    }
    *len = n;
    return b;
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL, *text = NULL, *file = NULL;
    bool special = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage_tok(stdout);
        if (!strcmp(a, "--special")) special = true;
        else if ((!strcmp(a, "-T") || !strcmp(a, "--tokenizer")) && i + 1 < argc) path = argv[++i];
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && i + 1 < argc) {
            const int k = cli_tokenizer_dash_t("tokenize", a, argv[++i]);
            if (k < 0) return 2;
            if (k) path = argv[i];
        } else if (!strcmp(a, "--text") && i + 1 < argc) text = argv[++i];
        else if (!strcmp(a, "--file") && i + 1 < argc) file = argv[++i];
        else {
            fprintf(stderr, "wick tokenize: unknown or incomplete option '%s'\n", a);
            return usage_tok(stderr);
        }
    }
    if (!path || (!text == !file)) {
        fprintf(stderr, "wick tokenize: need -T PATH and exactly one of --text / --file\n");
        return usage_tok(stderr);
    }
    char *buf = NULL;
    size_t len = 0;
    if (file) {
        buf = read_file(file, &len);
        if (!buf) {
            fprintf(stderr, "wick tokenize: cannot read %s: %s\n", file, strerror(errno));
            return 1;
        }
        text = buf;
    } else {
        len = strlen(text);
    }
    if (!cli_check_utf8("tokenize", file ? file : "--text", text, len)) {
        free(buf);
        return file ? 1 : 2;
    }
    wick_tokenizer *t = NULL;
    if (wick_tokenizer_load(path, &t) != WICK_OK) {
        free(buf);
        return cli_fail("tokenize", "loading the tokenizer");
    }
    int32_t cap = (int32_t)(len < 1000 ? 1024 : len + 16);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap);
    int32_t n = ids ? wick_tokenize(t, text, len, special, ids, cap) : INT32_MIN;
    if (n < 0 && n != INT32_MIN) {  /* more ids than bytes: only with many post-processor tokens */
        cap = -n;
        int32_t *ni = realloc(ids, sizeof(int32_t) * (size_t)cap);
        if (ni) ids = ni;
        n = ni ? wick_tokenize(t, text, len, special, ids, cap) : INT32_MIN;
    }
    int rc = 0;
    if (n < 0) {
        rc = cli_fail("tokenize", "encoding");
    } else {
        putchar('[');
        for (int32_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
        printf("]\n");
    }
    free(ids);
    free(buf);
    wick_tokenizer_free(t);
    return rc;
}

int cmd_detokenize(int argc, char **argv) {
    const char *path = NULL, *list = NULL;
    bool skip = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage_detok(stdout);
        if (!strcmp(a, "--skip-special")) skip = true;
        else if (!strcmp(a, "--keep-special")) skip = false;
        else if ((!strcmp(a, "-T") || !strcmp(a, "--tokenizer")) && i + 1 < argc) path = argv[++i];
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && i + 1 < argc) {
            const int k = cli_tokenizer_dash_t("detokenize", a, argv[++i]);
            if (k < 0) return 2;
            if (k) path = argv[i];
        } else if (!strcmp(a, "--ids") && i + 1 < argc) list = argv[++i];
        else {
            fprintf(stderr, "wick detokenize: unknown or incomplete option '%s'\n", a);
            return usage_detok(stderr);
        }
    }
    if (!path || !list) {
        fprintf(stderr, "wick detokenize: need -T PATH and --ids LIST\n");
        return usage_detok(stderr);
    }
    int32_t *ids = NULL;
    int n = cli_parse_ids("detokenize", list, &ids);
    if (n < 0) return 2;
    wick_tokenizer *t = NULL;
    if (wick_tokenizer_load(path, &t) != WICK_OK) {
        free(ids);
        return cli_fail("detokenize", "loading the tokenizer");
    }
    size_t need = 0;
    char small[1];
    wick_status st = wick_detokenize(t, ids, (size_t)n, skip, small, sizeof small, &need);
    int rc = 0;
    if (st == WICK_OK) {
        printf("\n");
    } else if (st == WICK_ERR_BUFFER_TOO_SMALL) {
        char *buf = malloc(need + 1);  /* need excludes the NUL */
        size_t len = 0;
        if (!buf || wick_detokenize(t, ids, (size_t)n, skip, buf, need + 1, &len) != WICK_OK) {
            rc = cli_fail("detokenize", "decoding");
        } else {
            fwrite(buf, 1, len, stdout);
            printf("\n");
        }
        free(buf);
    } else {
        rc = cli_fail("detokenize", "decoding");
    }
    free(ids);
    wick_tokenizer_free(t);
    return rc;
}
