/* data.c — training examples from a data file's bytes (data.h). */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json_parse.h"
#include "train/data.h"

void train_data_free(train_data *d) {
    for (int i = 0; i < d->n; i++) {
        free(d->ex[i].ids);
        free(d->ex[i].labels);
    }
    free(d->ex);
    memset(d, 0, sizeof *d);
}

/* Token ids of len bytes into a malloc'd array (*n ids); NULL with the error set. */
static int32_t *tokenize(const wick_tokenizer *tok, const char *s, size_t len, int *n,
                         wick_status *st) {
    if (len > (size_t)INT32_MAX - 16) {
        *st = err_set(WICK_ERR_INVALID_ARG, "a text of %zu bytes is longer than one stream may "
                                            "be (2^31 - 16)", len);
        return NULL;
    }
    int32_t cap = (int32_t)len + 16;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap);
    if (!ids) {
        *st = err_set(WICK_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
        return NULL;
    }
    int32_t got = wick_tokenize(tok, s, len, false, ids, cap);
    if (got < 0 && got != INT32_MIN) { /* more ids than bytes + 16: cannot happen, but be exact */
        cap = -got;
        int32_t *p = realloc(ids, sizeof(int32_t) * (size_t)cap);
        if (!p) {
            free(ids);
            *st = err_set(WICK_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
            return NULL;
        }
        ids = p;
        got = wick_tokenize(tok, s, len, false, ids, cap);
    }
    if (got < 0) {
        free(ids);
        *st = WICK_ERR_INVALID_ARG; /* wick_tokenize set the message */
        return NULL;
    }
    *n = got;
    *st = WICK_OK;
    return ids;
}

static wick_status add(train_data *d, int32_t *ids, int32_t *labels, int n) {
    if (d->n == d->cap) {
        const int cap = d->cap ? 2 * d->cap : 64;
        train_example *p = realloc(d->ex, sizeof *p * (size_t)cap);
        if (!p) return err_set(WICK_ERR_NOMEM, "out of memory for the training examples");
        d->ex = p;
        d->cap = cap;
    }
    d->ex[d->n++] = (train_example){ids, labels, n};
    return WICK_OK;
}

/* One JSONL example: prompt (labels -100) + completion (+ EOS), truncated to seq_len. */
static wick_status add_example(train_data *d, const wick_tokenizer *tok, const cJSON *prompt,
                               const cJSON *text, int32_t eos, int seq_len) {
    int np = 0, nc = 0;
    wick_status st = WICK_OK;
    int32_t *p = NULL, *c = NULL;
    if (prompt && !(p = tokenize(tok, prompt->valuestring, strlen(prompt->valuestring), &np, &st)))
        return st;
    if (!(c = tokenize(tok, text->valuestring, strlen(text->valuestring), &nc, &st))) {
        free(p);
        return st;
    }
    int64_t total = (int64_t)np + nc + (eos >= 0);
    const int n = total > seq_len ? seq_len : (int)total;
    int32_t *ids = NULL, *lab = NULL;
    if (n >= 2) { /* a one-token example predicts nothing: skipped */
        ids = malloc(sizeof(int32_t) * (size_t)n);
        lab = malloc(sizeof(int32_t) * (size_t)n);
        if (!ids || !lab) st = err_set(WICK_ERR_NOMEM, "out of memory for a training example");
        for (int i = 0; !st && i < n; i++) {
            ids[i] = i < np ? p[i] : i < np + nc ? c[i - np] : eos;
            lab[i] = i < np ? -100 : ids[i];
        }
        if (!st && !(st = add(d, ids, lab, n))) ids = lab = NULL;
    }
    free(ids), free(lab), free(p), free(c);
    return st;
}

static wick_status parse_jsonl(const char *buf, size_t len, const char *where,
                               const wick_tokenizer *tok, int32_t eos, int seq_len,
                               train_data *d) {
    int line_no = 0;
    for (size_t at = 0; at < len;) {
        const char *line = buf + at;
        const char *nl = memchr(line, '\n', len - at);
        const size_t ll = nl ? (size_t)(nl - line) : len - at;
        at += ll + (nl != NULL);
        line_no++;
        size_t k = 0;
        while (k < ll && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k == ll) continue;
        cJSON *o = NULL;
        char loc[600];
        snprintf(loc, sizeof loc, "%.500s:%d", where, line_no);
        wick_status st = json_parse(line + k, ll - k, loc, &o);
        if (st) return st;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(o, "prompt");
        const cJSON *co = cJSON_GetObjectItemCaseSensitive(o, "completion");
        if (cJSON_IsString(t)) st = add_example(d, tok, NULL, t, eos, seq_len);
        else if (cJSON_IsString(pr) && cJSON_IsString(co))
            st = add_example(d, tok, pr, co, eos, seq_len);
        else
            st = err_set(WICK_ERR_FORMAT, "%s: want a JSON object with \"text\" or \"prompt\" "
                                          "+ \"completion\" strings", loc);
        cJSON_Delete(o);
        if (st) return st;
    }
    return WICK_OK;
}

static wick_status parse_text(const char *buf, size_t len, const wick_tokenizer *tok,
                              int seq_len, train_data *d) {
    int n = 0;
    wick_status st;
    int32_t *ids = tokenize(tok, buf, len, &n, &st);
    if (!ids) return st;
    for (int at = 0; !st && at + 1 < n; at += seq_len) {
        const int k = n - at < seq_len ? n - at : seq_len;
        if (k < 2) break;
        int32_t *a = malloc(sizeof(int32_t) * (size_t)k), *b = malloc(sizeof(int32_t) * (size_t)k);
        if (!a || !b) st = err_set(WICK_ERR_NOMEM, "out of memory for the training examples");
        else {
            memcpy(a, ids + at, sizeof(int32_t) * (size_t)k);
            memcpy(b, ids + at, sizeof(int32_t) * (size_t)k);
            if (!(st = add(d, a, b, k))) a = b = NULL;
        }
        free(a), free(b);
    }
    free(ids);
    return st;
}

wick_status train_data_parse(const char *buf, size_t len, bool jsonl, const char *where,
                             const wick_tokenizer *tok, int32_t eos, int seq_len, train_data *d) {
    memset(d, 0, sizeof *d);
    if (!tok) return err_set(WICK_ERR_INVALID_ARG, "training data needs a tokenizer");
    if (seq_len < 2) return err_set(WICK_ERR_INVALID_ARG, "seq_len must be >= 2");
    wick_status st = jsonl ? parse_jsonl(buf, len, where, tok, eos, seq_len, d)
                           : parse_text(buf, len, tok, seq_len, d);
    if (!st && !d->n)
        st = err_set(WICK_ERR_FORMAT, "%s holds no example of 2 or more tokens", where);
    if (st) train_data_free(d);
    return st;
}
