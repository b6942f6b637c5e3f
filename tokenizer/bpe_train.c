/* bpe_train.c — training a byte-level BPE tokenizer the way Hugging Face tokenizers'
 * BpeTrainer does, with Qwen2's pre-tokenizer, written as a tokenizer.json that HF loads.
 *
 * Pipeline (what Tokenizer.train(files) does with this configuration):
 *  1. Each input file is read line by line, every line keeping its ending ("\n", "\r\n"), and
 *     each line is one sequence: NFC-normalized, split by Qwen2's regex (isolated), mapped to
 *     the 256 byte-level characters. Words (distinct pieces) are counted.
 *  2. Vocabulary: the special tokens first (in the order given), then the alphabet — the 256
 *     byte-level characters, sorted by code point.
 *  3. Merges: every adjacent pair of symbols in every word is counted (weighted by the word's
 *     count) and put in a max-heap ordered by count, then by the pair's ids ascending (the
 *     tie-break HF uses). Repeatedly the top is popped; an entry whose count is stale is
 *     pushed back with the current count (lazy update); otherwise the pair is merged in the
 *     words listed with it, the counts of the pairs around each merge are adjusted, and the
 *     pairs the merge formed are pushed with the words they were formed in. The merged
 *     string gets the next id unless it is already in the vocabulary (then its id is reused
 *     and only the merge is recorded). Stops at vocab_size entries, an empty heap, or a
 *     count below max(1, min_frequency).
 * Not here: limit_alphabet, continuing_subword_prefix / end_of_word_suffix, max_token_length,
 * dropout, other pre-tokenizers (the configuration is fixed to Qwen2's byte-level one). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "tokenizer/bpe_train.h"
#include "tokenizer/tok_components.h"
#include "tokenizer/tok_impl.h"
#include "wick.h"

static const char QWEN2_PAT[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* ---- a growable array of int32 ---- */
typedef struct ivec {
    int32_t *v;
    int n, cap;
} ivec;

static bool iv_push(ivec *a, int32_t x) {
    if (a->n == a->cap) {
        int nc = a->cap ? 2 * a->cap : 4;
        int32_t *p = realloc(a->v, sizeof *p * (size_t)nc);
        if (!p) return false;
        a->v = p;
        a->cap = nc;
    }
    a->v[a->n++] = x;
    return true;
}

/* ---- pair table: (a, b) -> index into per-pair arrays, open addressing ---- */
typedef struct pair_tab {
    uint64_t *keys;      /* (a << 32 | b) + 1, 0 = empty */
    int32_t *idx;
    size_t cap, n;
    int64_t *count;      /* per pair index */
    ivec *where;         /* per pair index: words where the pair was formed this round */
    uint64_t *key_of;    /* per pair index */
    size_t n_pairs, cap_pairs;
} pair_tab;

static uint64_t hkey(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1; }

static size_t hslot(uint64_t k, size_t cap) {
    k ^= tok_hash_seed(); /* the pairs come from the training text */
    k *= 0xbf58476d1ce4e5b9ull;
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

static bool pt_grow(pair_tab *t) {
    size_t nc = t->cap ? 2 * t->cap : 1 << 16;
    uint64_t *k = calloc(nc, sizeof *k);
    int32_t *ix = malloc(nc * sizeof *ix);
    if (!k || !ix) {
        free(k);
        free(ix);
        return false;
    }
    for (size_t i = 0; i < t->cap; i++)
        if (t->keys[i]) {
            size_t s = hslot(t->keys[i], nc);
            while (k[s]) s = (s + 1) & (nc - 1);
            k[s] = t->keys[i];
            ix[s] = t->idx[i];
        }
    free(t->keys);
    free(t->idx);
    t->keys = k;
    t->idx = ix;
    t->cap = nc;
    return true;
}

/* Index of pair (a, b), created (count 0) when absent; -1 when out of memory. */
static int32_t pt_get(pair_tab *t, int32_t a, int32_t b) {
    if ((t->n + 1) * 2 > t->cap && !pt_grow(t)) return -1;
    const uint64_t k = hkey(a, b);
    size_t s = hslot(k, t->cap);
    while (t->keys[s]) {
        if (t->keys[s] == k) return t->idx[s];
        s = (s + 1) & (t->cap - 1);
    }
    if (t->n_pairs == t->cap_pairs) {
        size_t nc = t->cap_pairs ? 2 * t->cap_pairs : 1 << 14;
        int64_t *c = realloc(t->count, nc * sizeof *c);
        if (c) t->count = c;
        ivec *w = realloc(t->where, nc * sizeof *w);
        if (w) t->where = w;
        uint64_t *ko = realloc(t->key_of, nc * sizeof *ko);
        if (ko) t->key_of = ko;
        if (!c || !w || !ko) return -1;
        t->cap_pairs = nc;
    }
    const int32_t id = (int32_t)t->n_pairs++;
    t->count[id] = 0;
    memset(&t->where[id], 0, sizeof t->where[id]);
    t->key_of[id] = k;
    t->keys[s] = k;
    t->idx[s] = id;
    t->n++;
    return id;
}

static void pt_free(pair_tab *t) {
    for (size_t i = 0; i < t->n_pairs; i++) free(t->where[i].v);
    free(t->keys);
    free(t->idx);
    free(t->count);
    free(t->where);
    free(t->key_of);
}

/* ---- the heap of candidate merges ---- */
typedef struct cand {
    int64_t count;
    int32_t a, b;
    int32_t *pos;        /* words to merge in (owned) */
    int npos;
} cand;

typedef struct heap {
    cand *v;
    size_t n, cap;
} heap;

/* x ranks above y: larger count, then smaller (a, b). */
static bool above(const cand *x, const cand *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static bool hp_push(heap *h, cand c) {
    if (h->n == h->cap) {
        size_t nc = h->cap ? 2 * h->cap : 1024;
        cand *p = realloc(h->v, nc * sizeof *p);
        if (!p) return false;
        h->v = p;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!above(&c, &h->v[up])) break;
        h->v[i] = h->v[up];
        i = up;
    }
    h->v[i] = c;
    return true;
}

static cand hp_pop(heap *h) {
    cand top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        const cand *bv = &last;
        if (l < h->n && above(&h->v[l], bv)) best = l, bv = &h->v[l];
        if (r < h->n && above(&h->v[r], bv)) best = r;
        if (best == i) break;
        h->v[i] = h->v[best];
        i = best;
    }
    if (h->n) h->v[i] = last;
    return top;
}

/* ---- vocabulary strings ---- */
typedef struct vocab {
    char **s;
    size_t *len;
    int n, cap;
    tok_smap map;        /* string -> id */
} vocab;

static int32_t voc_add(vocab *v, const char *s, size_t n) {
    if (v->n == v->cap) {
        int nc = v->cap ? 2 * v->cap : 1024;
        char **ps = realloc(v->s, sizeof *ps * (size_t)nc);
        if (ps) v->s = ps;
        size_t *pl = realloc(v->len, sizeof *pl * (size_t)nc);
        if (pl) v->len = pl;
        if (!ps || !pl) return -1;
        v->cap = nc;
    }
    char *c = malloc(n + 1);
    if (!c) return -1;
    memcpy(c, s, n);
    c[n] = 0;
    const int32_t id = v->n;
    if (!tok_smap_put(&v->map, c, n, id)) {
        free(c);
        return -1;
    }
    v->s[v->n] = c;
    v->len[v->n++] = n;
    return id;
}

static void voc_free(vocab *v) {
    for (int i = 0; i < v->n; i++) free(v->s[i]);
    free(v->s);
    free(v->len);
    tok_smap_free(&v->map);
}

/* ---- words ---- */
typedef struct words {
    tok_smap map;        /* word -> index */
    int64_t *count;
    char **text;         /* byte-level string (owned) */
    uint32_t *tlen;
    size_t n, cap;
} words;

static bool words_add(words *w, const char *s, size_t n) {
    int32_t i = tok_smap_get(&w->map, s, n);
    if (i >= 0) {
        w->count[i]++;
        return true;
    }
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 4096;
        int64_t *c = realloc(w->count, nc * sizeof *c);
        if (c) w->count = c;
        char **t = realloc(w->text, nc * sizeof *t);
        if (t) w->text = t;
        uint32_t *tl = realloc(w->tlen, nc * sizeof *tl);
        if (tl) w->tlen = tl;
        if (!c || !t || !tl) return false;
        w->cap = nc;
    }
    if (w->n >= INT32_MAX) return false;
    char *c = malloc(n + 1);
    if (!c) return false;
    memcpy(c, s, n);
    c[n] = 0;
    if (!tok_smap_put(&w->map, c, n, (int32_t)w->n)) {
        free(c);
        return false;
    }
    w->text[w->n] = c;
    w->tlen[w->n] = (uint32_t)n;
    w->count[w->n++] = 1;
    return true;
}

static void words_free(words *w) {
    for (size_t i = 0; i < w->n; i++) free(w->text[i]);
    free(w->text);
    free(w->tlen);
    free(w->count);
    tok_smap_free(&w->map);
}

/* The normalizer and pre-tokenizer of the trained tokenizer, as JSON (also written out). */
static cJSON *norm_json(void) { return cJSON_Parse("{\"type\":\"NFC\"}"); }

static cJSON *pre_json(void) {
    cJSON *seq = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    cJSON *split = cJSON_CreateObject(), *pat = cJSON_CreateObject(), *bl = cJSON_CreateObject();
    if (!seq || !arr || !split || !pat || !bl) {
        cJSON_Delete(seq); cJSON_Delete(arr); cJSON_Delete(split); cJSON_Delete(pat);
        cJSON_Delete(bl);
        return NULL;
    }
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON_AddItemToObject(seq, "pretokenizers", arr);
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON_AddStringToObject(pat, "Regex", QWEN2_PAT);
    cJSON_AddItemToObject(split, "pattern", pat);
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddBoolToObject(split, "invert", false);
    cJSON_AddItemToArray(arr, split);
    cJSON_AddStringToObject(bl, "type", "ByteLevel");
    cJSON_AddBoolToObject(bl, "add_prefix_space", false);
    cJSON_AddBoolToObject(bl, "trim_offsets", false);
    cJSON_AddBoolToObject(bl, "use_regex", false);
    cJSON_AddItemToArray(arr, bl);
    return seq;
}

/* Counts the words of every line of `data` (n bytes) into w. */
static wick_status count_words(const char *file, const char *data, size_t n, const tok_norm *nm,
                               const tok_pre *pre, words *w) {
    tok_buf nb = {0};
    tok_pieces in = {0}, out = {0};
    pcre2_match_data *md = pcre2_match_data_create(32, NULL);
    wick_status st = md ? WICK_OK : err_set(WICK_ERR_NOMEM, "out of memory");
    tok_regex_clear();
    for (size_t i = 0; i < n && !st;) {
        const char *nl = memchr(data + i, '\n', n - i);
        const size_t e = nl ? (size_t)(nl - data) + 1 : n;   /* the line keeps its ending */
        size_t ok = i;
        while (ok < e) {
            const size_t l = tok_utf8_valid_len((const unsigned char *)data + ok, e - ok);
            if (!l) break;
            ok += l;
        }
        if (ok != e) {
            size_t line = 1;
            for (size_t k = 0; k < i; k++) line += data[k] == '\n';
            st = err_set(WICK_ERR_FORMAT, "%s: line %zu is not valid UTF-8", file, line);
            break;
        }
        bool over = false;
        nb.len = 0;
        tok_pieces_clear(&in);
        if (!tok_normalize(nm, data + i, e - i, &nb, TOK_NORM_MAX(e - i), &over) ||
            !tok_pieces_add(&in, nb.p, nb.len, true) || !tok_pretokenize(pre, &in, &out, md)) {
            st = tok_regex_failed() ? tok_regex_error("tokenizer-train")
                                    : err_set(WICK_ERR_NOMEM, "out of memory");
            break;
        }
        for (size_t k = 0; k < out.n && !st; k++)
            if (!words_add(w, out.text.p + out.off[k], out.len[k]))
                st = err_set(WICK_ERR_NOMEM, "out of memory counting words");
        i = e;
    }
    if (md) pcre2_match_data_free(md);
    tok_buf_free(&nb);
    tok_pieces_free(&in);
    tok_pieces_free(&out);
    return st;
}

/* Symbols of a byte-level word: one id per character (2-byte UTF-8 for bytes >= 0x80 mapped). */
static bool word_symbols(const vocab *v, const char *s, size_t n, ivec *out) {
    for (size_t i = 0; i < n;) {
        size_t adv = 0;
        uint32_t cp = tok_utf8_decode((const unsigned char *)s + i, n - i, &adv);
        if (cp == 0xFFFFFFFFu || !adv) return false;
        const int32_t id = tok_smap_get(&v->map, s + i, adv);
        if (id < 0 || !iv_push(out, id)) return false;
        i += adv;
    }
    return true;
}

/* tokenizer.json text as HF's Tokenizer.save lays one out. */
static wick_status build_json(char **out, const vocab *v, const ivec *ma, const ivec *mb,
                              const char *const *special, int n_special) {
    cJSON *root = cJSON_CreateObject(), *added = cJSON_CreateArray(), *model = NULL;
    wick_status st = WICK_OK;
    if (!root || !added) goto nomem;
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON_AddItemToObject(root, "added_tokens", added);
    for (int i = 0; i < n_special; i++) {
        cJSON *t = cJSON_CreateObject();
        if (!t) goto nomem;
        cJSON_AddItemToArray(added, t);
        cJSON_AddNumberToObject(t, "id", i);
        cJSON_AddStringToObject(t, "content", special[i]);
        cJSON_AddBoolToObject(t, "single_word", false);
        cJSON_AddBoolToObject(t, "lstrip", false);
        cJSON_AddBoolToObject(t, "rstrip", false);
        cJSON_AddBoolToObject(t, "normalized", false);
        cJSON_AddBoolToObject(t, "special", true);
    }
    cJSON_AddItemToObject(root, "normalizer", norm_json());
    cJSON_AddItemToObject(root, "pre_tokenizer", pre_json());
    cJSON_AddNullToObject(root, "post_processor");
    cJSON *dec = cJSON_CreateObject();
    if (!dec) goto nomem;
    cJSON_AddItemToObject(root, "decoder", dec);
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddBoolToObject(dec, "add_prefix_space", true);
    cJSON_AddBoolToObject(dec, "trim_offsets", true);
    cJSON_AddBoolToObject(dec, "use_regex", true);
    model = cJSON_CreateObject();
    if (!model) goto nomem;
    cJSON_AddItemToObject(root, "model", model);
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", false);
    cJSON_AddBoolToObject(model, "byte_fallback", false);
    cJSON_AddBoolToObject(model, "ignore_merges", false);
    cJSON *vo = cJSON_CreateObject(), *mg = cJSON_CreateArray();
    if (!vo || !mg) {
        cJSON_Delete(vo);
        cJSON_Delete(mg);
        goto nomem;
    }
    cJSON_AddItemToObject(model, "vocab", vo);
    cJSON_AddItemToObject(model, "merges", mg);
    for (int i = 0; i < v->n; i++)
        if (!cJSON_AddNumberToObject(vo, v->s[i], i)) goto nomem;
    for (int i = 0; i < ma->n; i++) {
        cJSON *pr = cJSON_CreateArray();
        if (!pr) goto nomem;
        cJSON_AddItemToArray(mg, pr);
        cJSON_AddItemToArray(pr, cJSON_CreateString(v->s[ma->v[i]]));
        cJSON_AddItemToArray(pr, cJSON_CreateString(v->s[mb->v[i]]));
    }
    *out = cJSON_Print(root);
    if (!*out) goto nomem;
    cJSON_Delete(root);
    return st;
nomem:
    cJSON_Delete(root);
    return err_set(WICK_ERR_NOMEM, "out of memory building tokenizer.json");
}

wick_bpe_train_params wick_bpe_train_params_default(void) {
    return (wick_bpe_train_params){.vocab_size = 8192, .min_frequency = 0, .special = NULL,
                                   .n_special = 0, .progress = NULL, .progress_user = NULL};
}

wick_status bpe_train_mem(const char *const *texts, const size_t *lens, const char *const *names,
                          int n_texts, const wick_bpe_train_params *params, char **json_out,
                          wick_bpe_train_stats *stats) {
    static const char *const default_special[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    wick_bpe_train_params p = params ? *params : wick_bpe_train_params_default();
    *json_out = NULL;
    const char *const *special = p.special ? p.special : default_special;
    const int n_special = p.special ? p.n_special : 3;
    if (n_special < 0 || n_special > 1000)
        return err_set(WICK_ERR_INVALID_ARG, "tokenizer-train: %d special tokens (0..1000)",
                       n_special);
    if (p.vocab_size < n_special + 256 || p.vocab_size > (1 << 24))
        return err_set(WICK_ERR_INVALID_ARG, "tokenizer-train: vocab size %d must be at least "
                       "the %d special tokens + 256 byte symbols (and at most 16777216)",
                       p.vocab_size, n_special);
    for (int i = 0; i < n_special; i++)
        if (!special[i] || !special[i][0])
            return err_set(WICK_ERR_INVALID_ARG, "tokenizer-train: special token %d is empty", i);

    words w = {0};
    vocab v = {0};
    pair_tab pt = {0};
    heap hp = {0};
    ivec *syms = NULL, ma = {0}, mb = {0};
    tok_norm nm;
    tok_pre pre;
    memset(&nm, 0, sizeof nm);
    memset(&pre, 0, sizeof pre);
    wick_status st = WICK_OK;
    cJSON *nj = norm_json(), *pj = pre_json();
    if (!nj || !pj || !tok_smap_init(&w.map, 1 << 16) || !tok_smap_init(&v.map, 1024)) {
        st = err_set(WICK_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = tok_read_norm("<builtin>", "normalizer", nj, &nm)) ||
        (st = tok_read_pre("<builtin>", "pre_tokenizer", pj, &pre)))
        goto out;

    /* 1. words */
    size_t total_bytes = 0;
    for (int f = 0; f < n_texts && !st; f++) {
        total_bytes += lens[f];
        st = count_words(names[f], texts[f], lens[f], &nm, &pre, &w);
    }
    if (st) goto out;

    /* 2. vocabulary: specials, then the 256 byte-level characters by code point */
    for (int i = 0; i < n_special && !st; i++) {
        if (tok_smap_get(&v.map, special[i], strlen(special[i])) >= 0) {
            st = err_set(WICK_ERR_INVALID_ARG, "tokenizer-train: special token \"%s\" given "
                                               "twice", special[i]);
            break;
        }
        if (voc_add(&v, special[i], strlen(special[i])) < 0)
            st = err_set(WICK_ERR_NOMEM, "out of memory");
    }
    if (st) goto out;
    {
        /* the byte-level alphabet (tok_byte_to_cp, GPT-2's table) sorted by code point */
        uint32_t cps[256];
        for (int b = 0; b < 256; b++) cps[b] = tok_byte_to_cp[b];
        for (int i = 1; i < 256; i++)
            for (int j = i; j > 0 && cps[j - 1] > cps[j]; j--) {
                const uint32_t t = cps[j];
                cps[j] = cps[j - 1];
                cps[j - 1] = t;
            }
        for (int i = 0; i < 256 && !st; i++) {
            char u[4];
            size_t ul = tok_utf8_encode(cps[i], u);
            if (tok_smap_get(&v.map, u, ul) >= 0) continue;   /* a special equal to a char */
            if (voc_add(&v, u, ul) < 0) st = err_set(WICK_ERR_NOMEM, "out of memory");
        }
    }
    if (st) goto out;

    /* 3. symbols of every word, pair counts and where each pair occurs */
    syms = calloc(w.n ? w.n : 1, sizeof *syms);
    if (!syms) {
        st = err_set(WICK_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < w.n && !st; i++) {
        if (!word_symbols(&v, w.text[i], w.tlen[i], &syms[i])) {
            st = err_set(WICK_ERR_NOMEM, "out of memory (or a character outside the byte "
                                         "alphabet) in word %zu", i);
            break;
        }
        for (int k = 0; k + 1 < syms[i].n; k++) {
            const int32_t id = pt_get(&pt, syms[i].v[k], syms[i].v[k + 1]);
            if (id < 0) {
                st = err_set(WICK_ERR_NOMEM, "out of memory");
                break;
            }
            pt.count[id] += w.count[i];
            ivec *wh = &pt.where[id];
            if ((!wh->n || wh->v[wh->n - 1] != (int32_t)i) && !iv_push(wh, (int32_t)i))
                st = err_set(WICK_ERR_NOMEM, "out of memory");
        }
    }
    if (st) goto out;
    for (size_t id = 0; id < pt.n_pairs; id++) {
        if (pt.count[id] <= 0) continue;
        ivec *wh = &pt.where[id];
        const uint64_t k = pt.key_of[id] - 1;
        cand c = {pt.count[id], (int32_t)(k >> 32), (int32_t)(uint32_t)k, wh->v, wh->n};
        memset(wh, 0, sizeof *wh);
        if (!hp_push(&hp, c)) {
            free(c.pos);
            st = err_set(WICK_ERR_NOMEM, "out of memory");
            break;
        }
    }
    if (st) goto out;

    /* 4. merges */
    ivec touched = {0};   /* pair ids formed in this round */
    const int64_t min_count = p.min_frequency > 1 ? p.min_frequency : 1;
    while (v.n < p.vocab_size && hp.n && !st) {
        cand top = hp_pop(&hp);
        const int32_t tid = pt_get(&pt, top.a, top.b);
        if (tid < 0) {
            free(top.pos);
            st = err_set(WICK_ERR_NOMEM, "out of memory");
            break;
        }
        if (top.count != pt.count[tid]) {   /* stale: back in with the current count */
            top.count = pt.count[tid];
            if (!hp_push(&hp, top)) {
                free(top.pos);
                st = err_set(WICK_ERR_NOMEM, "out of memory");
            }
            continue;
        }
        if (top.count < min_count) {
            free(top.pos);
            break;
        }
        /* the new symbol */
        const size_t la = v.len[top.a], lb = v.len[top.b];
        char *ns = malloc(la + lb + 1);
        if (!ns) {
            free(top.pos);
            st = err_set(WICK_ERR_NOMEM, "out of memory");
            break;
        }
        memcpy(ns, v.s[top.a], la);
        memcpy(ns + la, v.s[top.b], lb);
        int32_t nid = tok_smap_get(&v.map, ns, la + lb);
        if (nid < 0) nid = voc_add(&v, ns, la + lb);
        free(ns);
        if (nid < 0 || !iv_push(&ma, top.a) || !iv_push(&mb, top.b)) {
            free(top.pos);
            st = err_set(WICK_ERR_NOMEM, "out of memory");
            break;
        }
        /* merge it in every word listed, left to right, adjusting the neighbours' counts */
        touched.n = 0;
        for (int pi = 0; pi < top.npos && !st; pi++) {
            const int32_t wi = top.pos[pi];
            ivec *s = &syms[wi];
            const int64_t wc = w.count[wi];
            int o = 0;
            for (int i = 0; i < s->n && !st; i++) {
                if (i + 1 < s->n && s->v[i] == top.a && s->v[i + 1] == top.b) {
                    /* (prev, a) -1, (prev, new) +1, (b, next) -1, (new, next) +1 */
                    int32_t chg[4][2];
                    int sign[4], nch = 0;
                    if (o > 0) {
                        chg[nch][0] = s->v[o - 1], chg[nch][1] = top.a, sign[nch++] = -1;
                        chg[nch][0] = s->v[o - 1], chg[nch][1] = nid, sign[nch++] = 1;
                    }
                    if (i + 2 < s->n) {
                        chg[nch][0] = top.b, chg[nch][1] = s->v[i + 2], sign[nch++] = -1;
                        chg[nch][0] = nid, chg[nch][1] = s->v[i + 2], sign[nch++] = 1;
                    }
                    for (int c = 0; c < nch; c++) {
                        const int32_t id = pt_get(&pt, chg[c][0], chg[c][1]);
                        if (id < 0) {
                            st = err_set(WICK_ERR_NOMEM, "out of memory");
                            break;
                        }
                        pt.count[id] += sign[c] * wc;
                        if (sign[c] > 0) {
                            ivec *wh = &pt.where[id];
                            if (!wh->n && !iv_push(&touched, id)) st = WICK_ERR_NOMEM;
                            if ((!wh->n || wh->v[wh->n - 1] != wi) && !iv_push(wh, wi))
                                st = WICK_ERR_NOMEM;
                            if (st) st = err_set(WICK_ERR_NOMEM, "out of memory");
                        }
                    }
                    s->v[o++] = nid;
                    i++;   /* skip b */
                } else {
                    s->v[o++] = s->v[i];
                }
            }
            s->n = o;
        }
        free(top.pos);
        /* the pairs formed this round go in with the words they were formed in */
        for (int t = 0; t < touched.n && !st; t++) {
            const int32_t id = touched.v[t];
            ivec *wh = &pt.where[id];
            if (pt.count[id] > 0) {
                const uint64_t k = pt.key_of[id] - 1;
                cand c = {pt.count[id], (int32_t)(k >> 32), (int32_t)(uint32_t)k, wh->v, wh->n};
                if (!hp_push(&hp, c)) {
                    st = err_set(WICK_ERR_NOMEM, "out of memory");
                    break;
                }
            } else {
                free(wh->v);
            }
            memset(wh, 0, sizeof *wh);
        }
        if (p.progress && !st) p.progress(p.progress_user, v.n, p.vocab_size);
    }
    free(touched.v);
    if (st) goto out;
    st = build_json(json_out, &v, &ma, &mb, special, n_special);
    if (!st && stats) {
        stats->bytes = (int64_t)total_bytes;
        stats->words = (int64_t)w.n;
        int64_t occ = 0;
        for (size_t i = 0; i < w.n; i++) occ += w.count[i];
        stats->word_occurrences = occ;
        stats->vocab_size = v.n;
        stats->merges = ma.n;
    }
out:
    for (size_t i = 0; i < hp.n; i++) free(hp.v[i].pos);
    free(hp.v);
    if (syms)
        for (size_t i = 0; i < w.n; i++) free(syms[i].v);
    free(syms);
    free(ma.v);
    free(mb.v);
    pt_free(&pt);
    voc_free(&v);
    words_free(&w);
    tok_norm_free(&nm);
    tok_pre_free(&pre);
    cJSON_Delete(nj);
    cJSON_Delete(pj);
    return st;
}

wick_status wick_tokenizer_train_bpe(const char *const *files, int n_files,
                                     const wick_bpe_train_params *params, const char *out_path,
                                     wick_bpe_train_stats *stats) {
    if (!files || n_files < 1 || n_files > 4096 || !out_path)
        return err_set(WICK_ERR_INVALID_ARG, "tokenizer-train: need 1 to 4096 data files and an "
                                             "output path");
    char **texts = calloc((size_t)n_files, sizeof *texts);
    size_t *lens = calloc((size_t)n_files, sizeof *lens);
    wick_status st = texts && lens ? WICK_OK : err_set(WICK_ERR_NOMEM, "out of memory");
    for (int f = 0; f < n_files && !st; f++) {
        if (!files[f]) st = err_set(WICK_ERR_INVALID_ARG, "tokenizer-train: data file %d is NULL", f);
        else st = file_read_all(files[f], &texts[f], &lens[f]);
    }
    char *json = NULL;
    if (!st) st = bpe_train_mem((const char *const *)texts, lens, files, n_files, params, &json,
                                stats);
    if (!st) st = file_write_atomic(out_path, json, strlen(json));
    free(json);
    for (int f = 0; texts && f < n_files; f++) free(texts[f]);
    free(texts);
    free(lens);
    return st;
}
