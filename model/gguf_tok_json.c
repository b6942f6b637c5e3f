/* gguf_tok_json.c — the tokenizer stored in GGUF metadata (`tokenizer.ggml.*`) rewritten as
 * the tokenizer.json + tokenizer_config.json documents Hugging Face has for the same
 * tokenizer, so one tokenizer implementation (tokenizer/) serves folders and GGUF files.
 *
 *  - `gpt2`: byte-level BPE. Merges are stored in the file; the pre-tokenizer regex is chosen
 *    by tokenizer.ggml.pre (qwen2, llama-bpe/llama3, gpt-2/default).
 *  - `llama`: SentencePiece BPE (Llama 1/2, Mistral, TinyLlama...): pieces, scores and types,
 *    no merges. SentencePiece merges the adjacent pair whose joined piece has the highest
 *    score; the equivalent merge list is rebuilt the way Hugging Face's converter derives it:
 *    every piece that splits (at a character boundary) into two vocabulary pieces yields a
 *    merge, ordered by the piece's score (highest first), then piece id, then the ids of the
 *    left and right halves. Checked on the Llama 2 vocabulary: the rebuilt list equals the
 *    58980 merges of its tokenizer.json in order. Text gets the legacy Llama normalizer
 *    (prepend "▁" when tokenizer.ggml.add_space_prefix, default true; spaces -> "▁"), byte
 *    fallback through the <0xXX> pieces, and the matching decoder.
 *
 * Files wick wrote carry tokenizer.huggingface.json itself; it is used as is (exact).
 * Not here: Unigram (`t5`), WordPiece (`bert`), RWKV and other tokenizer models, which are
 * refused by name; the GGUF container (formats/gguf.c). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "model/model_gguf.h"
#include "tokenizer/tok_impl.h"

/* llama.cpp token types */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_BYTE = 6 };

static const char *k_re_qwen2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *k_re_llama3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *k_re_gpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

#define SPM_SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's visible space */
#define SPM_MAX_SPLIT 1024      /* bytes: longer pieces are never split into merges */

static char *vstr(const gguf_value *v) {
    char *s = malloc(v->str.len + 1);
    if (s) { memcpy(s, v->str.s, v->str.len); s[v->str.len] = 0; }
    return s;
}

typedef struct tokmeta {
    const char *path;
    const gguf_value *toks, *types, *scores;
    int64_t n, bos, eos, unk;
    bool add_bos, add_eos;
} tokmeta;

static int64_t type_of(const tokmeta *t, int64_t i) {
    return t->types ? t->types->arr.items[i].i : TT_NORMAL;
}

static int64_t opt_id(const gguf_file *g, const char *key, int64_t n) {
    int64_t id = -1;
    if (!gguf_get_int(g, key, &id, NULL) || id < 0 || id >= n) return -1;
    return id;
}

/* ---- pieces shared by both models ---- */

/* vocab (every id) + added_tokens (control/user-defined/unknown ids). SentencePiece files
   are checked for repeated pieces (a tokenizer.json vocabulary cannot hold two). */
static wick_status add_vocab(const tokmeta *t, cJSON *root, cJSON *bm, bool spm) {
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    cJSON *vocab = cJSON_AddObjectToObject(bm, "vocab");
    tok_smap seen = {0};
    if (!added || !vocab || (spm && !tok_smap_init(&seen, (size_t)t->n)))
        return err_set(WICK_ERR_NOMEM, "out of memory");
    wick_status st = WICK_OK;
    for (int64_t i = 0; i < t->n && !st; i++) {
        const gguf_value *v = &t->toks->arr.items[i];
        if (memchr(v->str.s, 0, (size_t)v->str.len)) {
            st = err_set(WICK_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%lld] contains a NUL byte",
                         t->path, (long long)i);
            break;
        }
        if (spm) {
            int32_t prev = tok_smap_get(&seen, v->str.s, (size_t)v->str.len);
            if (prev >= 0) {
                st = err_set(WICK_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%lld] repeats token %d "
                             "('%.*s'); every piece must be unique", t->path, (long long)i,
                             prev, (int)(v->str.len > 64 ? 64 : v->str.len), v->str.s);
                break;
            }
            if (!tok_smap_put(&seen, v->str.s, (size_t)v->str.len, (int32_t)i)) {
                st = err_set(WICK_ERR_NOMEM, "out of memory");
                break;
            }
        }
        char *s = vstr(v);
        if (!s) {
            st = err_set(WICK_ERR_NOMEM, "out of memory");
            break;
        }
        int64_t ty = type_of(t, i);
        /* control and user-defined pieces (and SentencePiece's <unk>) are matched in the raw
           text as added tokens, as in the tokenizer.json of the same model */
        if (ty == TT_CONTROL || ty == TT_USER || (spm && ty == TT_UNKNOWN)) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", (double)i);
            cJSON_AddStringToObject(a, "content", s);
            cJSON_AddBoolToObject(a, "single_word", 0);
            cJSON_AddBoolToObject(a, "lstrip", 0);
            cJSON_AddBoolToObject(a, "rstrip", 0);
            cJSON_AddBoolToObject(a, "normalized", ty == TT_USER && !spm);
            cJSON_AddBoolToObject(a, "special", ty != TT_USER);
            cJSON_AddItemToArray(added, a);
        }
        cJSON_AddNumberToObject(vocab, s, (double)i);
        free(s);
    }
    tok_smap_free(&seen);
    return st;
}

static void add_special(cJSON *arr, const char *tok, int type_id) {
    cJSON *sp = cJSON_CreateObject(), *o = cJSON_AddObjectToObject(sp, "SpecialToken");
    cJSON_AddStringToObject(o, "id", tok);
    cJSON_AddNumberToObject(o, "type_id", type_id);
    cJSON_AddItemToArray(arr, sp);
}

/* TemplateProcessing adding BOS and/or EOS around each sequence (null when neither). */
static void add_post_processor(const tokmeta *t, cJSON *root) {
    const bool bos = t->add_bos && t->bos >= 0, eos = t->add_eos && t->eos >= 0;
    if (!bos && !eos) {
        cJSON_AddNullToObject(root, "post_processor");
        return;
    }
    char *b = bos ? vstr(&t->toks->arr.items[t->bos]) : NULL;
    char *e = eos ? vstr(&t->toks->arr.items[t->eos]) : NULL;
    cJSON *pp = cJSON_AddObjectToObject(root, "post_processor");
    cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(pp, "single"), *pair = cJSON_AddArrayToObject(pp, "pair");
    const char *seq[2] = {"A", "B"};
    for (int k = 0; k < 2; k++) {
        cJSON *arr = k ? pair : single;
        for (int q = 0; q <= k; q++) {
            if (bos) add_special(arr, b ? b : "", q);
            cJSON *sq = cJSON_CreateObject(), *o2 = cJSON_AddObjectToObject(sq, "Sequence");
            cJSON_AddStringToObject(o2, "id", seq[q]);
            cJSON_AddNumberToObject(o2, "type_id", q);
            cJSON_AddItemToArray(arr, sq);
            if (eos) add_special(arr, e ? e : "", q);
        }
    }
    cJSON *sp = cJSON_AddObjectToObject(pp, "special_tokens");
    for (int k = 0; k < 2; k++) {
        const char *s = k ? e : b;
        const int64_t id = k ? t->eos : t->bos;
        if (!(k ? eos : bos) || cJSON_GetObjectItemCaseSensitive(sp, s ? s : "")) continue;
        cJSON *o = cJSON_AddObjectToObject(sp, s ? s : "");
        cJSON_AddStringToObject(o, "id", s ? s : "");
        cJSON_AddItemToObject(o, "ids", cJSON_CreateIntArray((const int[]){(int)id}, 1));
        cJSON_AddItemToObject(o, "tokens", cJSON_CreateStringArray((const char *const[]){s ? s : ""}, 1));
    }
    free(b);
    free(e);
}

static cJSON *make_config(const gguf_file *g, const tokmeta *t) {
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddBoolToObject(cfg, "add_bos_token", t->add_bos);
    cJSON_AddBoolToObject(cfg, "add_eos_token", t->add_eos);
    const char *keys[3] = {"bos_token", "eos_token", "unk_token"};
    const int64_t ids[3] = {t->bos, t->eos, t->unk};
    for (int k = 0; k < 3; k++) {
        if (ids[k] < 0) continue;
        char *s = vstr(&t->toks->arr.items[ids[k]]);
        if (s) cJSON_AddStringToObject(cfg, keys[k], s);
        free(s);
    }
    char *tmpl = NULL;
    if (gguf_get_str(g, "tokenizer.chat_template", &tmpl, NULL)) {
        cJSON_AddStringToObject(cfg, "chat_template", tmpl);
        free(tmpl);
    }
    return cfg;
}

/* ---- gpt2: byte-level BPE with stored merges ---- */

static wick_status build_gpt2(const gguf_file *g, const tokmeta *t, cJSON *root, cJSON *bm) {
    wick_status st = WICK_OK;
    const gguf_value *merges = gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_STRING, &st);
    if (st) return st;
    if (!merges)
        return err_set(WICK_ERR_FORMAT, "%s: gpt2 tokenizer needs tokenizer.ggml.merges", t->path);
    char *pre = NULL;
    gguf_get_str(g, "tokenizer.ggml.pre", &pre, NULL);
    const char *re = !pre ? k_re_gpt2 : strncmp(pre, "qwen2", 5) == 0 ? k_re_qwen2
                   : strcmp(pre, "llama-bpe") == 0 || strcmp(pre, "llama3") == 0 ? k_re_llama3
                   : strcmp(pre, "gpt-2") == 0 || strcmp(pre, "default") == 0 ? k_re_gpt2 : NULL;
    const bool ignore_merges = pre && (strcmp(pre, "llama-bpe") == 0 || strcmp(pre, "llama3") == 0);
    if (!re) {
        st = err_set(WICK_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre '%s' is not supported "
                     "(supported: qwen2, llama-bpe, gpt-2, default)", t->path, pre);
        free(pre);
        return st;
    }
    free(pre);
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *pt = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pt, "type", "Sequence");
    cJSON *pts = cJSON_AddArrayToObject(pt, "pretokenizers");
    cJSON *split = cJSON_CreateObject();
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(split, "pattern"), "Regex", re);
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddBoolToObject(split, "invert", 0);
    cJSON_AddItemToArray(pts, split);
    cJSON *bl = cJSON_CreateObject();
    cJSON_AddStringToObject(bl, "type", "ByteLevel");
    cJSON_AddBoolToObject(bl, "add_prefix_space", 0);
    cJSON_AddBoolToObject(bl, "trim_offsets", 0);
    cJSON_AddBoolToObject(bl, "use_regex", 0);
    cJSON_AddItemToArray(pts, bl);
    cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddBoolToObject(dec, "add_prefix_space", 1);
    cJSON_AddBoolToObject(dec, "trim_offsets", 1);
    cJSON_AddBoolToObject(dec, "use_regex", 1);
    cJSON_AddNullToObject(bm, "unk_token");
    cJSON_AddBoolToObject(bm, "fuse_unk", 0);
    cJSON_AddBoolToObject(bm, "byte_fallback", 0);
    cJSON_AddBoolToObject(bm, "ignore_merges", ignore_merges);
    if ((st = add_vocab(t, root, bm, false))) return st;
    cJSON *mg = cJSON_AddArrayToObject(bm, "merges");
    for (uint64_t i = 0; i < merges->arr.n; i++) {
        char *s = vstr(&merges->arr.items[i]);
        if (!s) return err_set(WICK_ERR_NOMEM, "out of memory");
        cJSON_AddItemToArray(mg, cJSON_CreateString(s));
        free(s);
    }
    return WICK_OK;
}

/* ---- llama: SentencePiece BPE, merges rebuilt from the scores ---- */

typedef struct spm_merge {
    float score;
    int32_t piece, left, right;
} spm_merge;

static int cmp_merge(const void *pa, const void *pb) {
    const spm_merge *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->piece != b->piece) return a->piece < b->piece ? -1 : 1;
    if (a->left != b->left) return a->left < b->left ? -1 : 1;
    return (a->right > b->right) - (a->right < b->right);
}

/* The merge list of module comment: *out (malloc'd), *n_out entries. */
static wick_status spm_merges(const tokmeta *t, spm_merge **out, size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    tok_smap ids;
    if (!tok_smap_init(&ids, (size_t)t->n)) return err_set(WICK_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < t->n; i++) {
        const gguf_value *v = &t->toks->arr.items[i];
        if (!tok_smap_put(&ids, v->str.s, (size_t)v->str.len, (int32_t)i)) {
            tok_smap_free(&ids);
            return err_set(WICK_ERR_NOMEM, "out of memory");
        }
    }
    size_t n = 0, cap = (size_t)t->n * 2 + 16;
    spm_merge *m = malloc(cap * sizeof *m);
    wick_status st = m ? WICK_OK : err_set(WICK_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; !st && i < t->n; i++) {
        const char *s = t->toks->arr.items[i].str.s;
        const size_t len = (size_t)t->toks->arr.items[i].str.len;
        /* splitting costs len² bytes of hashing: pieces longer than SPM_MAX_SPLIT (far above
           SentencePiece's 16-character default) yield no merges, so a hostile file cannot
           stall loading */
        if (len > SPM_MAX_SPLIT) continue;
        for (size_t k = 1; k < len; k++) {
            if (((unsigned char)s[k] & 0xC0) == 0x80) continue; /* inside a UTF-8 sequence */
            int32_t l = tok_smap_get(&ids, s, k), r = tok_smap_get(&ids, s + k, len - k);
            if (l < 0 || r < 0) continue;
            if (n == cap) {
                spm_merge *g = realloc(m, 2 * cap * sizeof *m);
                if (!g) { st = err_set(WICK_ERR_NOMEM, "out of memory"); break; }
                m = g;
                cap *= 2;
            }
            float sc = t->scores ? (float)t->scores->arr.items[i].f : 0.0f;
            if (sc != sc) sc = -INFINITY; /* NaN ranks last, keeping the order total */
            m[n++] = (spm_merge){sc, (int32_t)i, l, r};
        }
    }
    tok_smap_free(&ids);
    if (st) {
        free(m);
        return st;
    }
    qsort(m, n, sizeof *m, cmp_merge);
    *out = m;
    *n_out = n;
    return WICK_OK;
}

static cJSON *replace_obj(const char *from, const char *to) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "Replace");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "pattern"), "String", from);
    cJSON_AddStringToObject(o, "content", to);
    return o;
}

static wick_status build_llama(const gguf_file *g, tokmeta *t, cJSON *root, cJSON *bm) {
    wick_status st = WICK_OK;
    t->scores = gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_F32, &st);
    if (st) return st;
    if (t->scores && t->scores->arr.n != (uint64_t)t->n)
        return err_set(WICK_ERR_FORMAT, "%s: tokenizer.ggml.scores has %llu entries, tokens %lld",
                       t->path, (unsigned long long)t->scores->arr.n, (long long)t->n);
    bool prefix = true;
    gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &prefix, NULL);
    /* byte fallback through <0xXX> pieces: typed as bytes, or (files without token types)
       found by their text, as llama.cpp finds them */
    bool byte_fallback = false;
    for (int64_t i = 0; i < t->n && !byte_fallback; i++) {
        const gguf_value *v = &t->toks->arr.items[i];
        byte_fallback = t->types ? type_of(t, i) == TT_BYTE
                                 : v->str.len == 6 && memcmp(v->str.s, "<0x00>", 6) == 0;
    }
    if (t->unk < 0)
        for (int64_t i = 0; i < t->n && t->unk < 0; i++)
            if (type_of(t, i) == TT_UNKNOWN) t->unk = i;

    cJSON *norm = cJSON_AddObjectToObject(root, "normalizer");
    cJSON_AddStringToObject(norm, "type", "Sequence");
    cJSON *ns = cJSON_AddArrayToObject(norm, "normalizers");
    if (prefix) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "type", "Prepend");
        cJSON_AddStringToObject(p, "prepend", SPM_SPACE);
        cJSON_AddItemToArray(ns, p);
    }
    cJSON_AddItemToArray(ns, replace_obj(" ", SPM_SPACE));
    cJSON_AddNullToObject(root, "pre_tokenizer");
    cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
    cJSON_AddStringToObject(dec, "type", "Sequence");
    cJSON *ds = cJSON_AddArrayToObject(dec, "decoders");
    cJSON_AddItemToArray(ds, replace_obj(SPM_SPACE, " "));
    cJSON *d2 = cJSON_CreateObject();
    cJSON_AddStringToObject(d2, "type", "ByteFallback");
    cJSON_AddItemToArray(ds, d2);
    cJSON *d3 = cJSON_CreateObject();
    cJSON_AddStringToObject(d3, "type", "Fuse");
    cJSON_AddItemToArray(ds, d3);
    if (prefix) {
        cJSON *d4 = cJSON_CreateObject();
        cJSON_AddStringToObject(d4, "type", "Strip");
        cJSON_AddStringToObject(d4, "content", " ");
        cJSON_AddNumberToObject(d4, "start", 1);
        cJSON_AddNumberToObject(d4, "stop", 0);
        cJSON_AddItemToArray(ds, d4);
    }
    if (t->unk >= 0) {
        char *u = vstr(&t->toks->arr.items[t->unk]);
        if (!u) return err_set(WICK_ERR_NOMEM, "out of memory");
        cJSON_AddStringToObject(bm, "unk_token", u);
        free(u);
    } else {
        cJSON_AddNullToObject(bm, "unk_token");
    }
    cJSON_AddBoolToObject(bm, "fuse_unk", 1);
    cJSON_AddBoolToObject(bm, "byte_fallback", byte_fallback);
    cJSON_AddBoolToObject(bm, "ignore_merges", 0);
    if ((st = add_vocab(t, root, bm, true))) return st;
    spm_merge *m = NULL;
    size_t nm = 0;
    if ((st = spm_merges(t, &m, &nm))) return st;
    cJSON *mg = cJSON_AddArrayToObject(bm, "merges");
    for (size_t i = 0; i < nm && !st; i++) {
        /* [left, right] pairs: pieces may hold plain spaces, which "a b" strings cannot */
        char *l = vstr(&t->toks->arr.items[m[i].left]), *r = vstr(&t->toks->arr.items[m[i].right]);
        cJSON *pair = l && r ? cJSON_CreateStringArray((const char *const[]){l, r}, 2) : NULL;
        if (!pair) st = err_set(WICK_ERR_NOMEM, "out of memory");
        else cJSON_AddItemToArray(mg, pair);
        free(l);
        free(r);
    }
    free(m);
    return st;
}

wick_status model_gguf_tokenizer_json(const gguf_file *g, char **tj, char **tc) {
    const char *path = g->mf.path;
    *tj = *tc = NULL;
    wick_status st = WICK_OK;
    /* files wick wrote carry the source tokenizer.json itself: exact, use it */
    if (gguf_get_str(g, "tokenizer.huggingface.json", tj, &st)) {
        if (!gguf_get_str(g, "tokenizer.wick.config_json", tc, &st) && !st) {
            char *tmpl0 = NULL;
            cJSON *cfg = cJSON_CreateObject();
            if (gguf_get_str(g, "tokenizer.chat_template", &tmpl0, NULL))
                cJSON_AddStringToObject(cfg, "chat_template", tmpl0);
            free(tmpl0);
            *tc = cJSON_PrintUnformatted(cfg);
            cJSON_Delete(cfg);
        }
        if (st || !*tc) {
            free(*tj);
            free(*tc);
            *tj = *tc = NULL;
            return st ? st : err_set(WICK_ERR_NOMEM, "out of memory");
        }
        return WICK_OK;
    }
    if (st) return st;
    char *model = NULL;
    if (!gguf_get_str(g, "tokenizer.ggml.model", &model, &st))
        return st ? st : err_set(WICK_ERR_FORMAT, "%s: no tokenizer in the metadata "
                                 "(tokenizer.ggml.model is missing)", path);
    const bool gpt2 = strcmp(model, "gpt2") == 0, spm = strcmp(model, "llama") == 0;
    if (!gpt2 && !spm) {
        st = err_set(WICK_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model '%s' is not supported "
                     "(supported: gpt2, llama); load with load_tokenizer = false", path, model);
        free(model);
        return st;
    }
    free(model);
    tokmeta t = {.path = path};
    t.toks = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_STRING, &st);
    if (!st) t.types = gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_I32, &st);
    if (st) return st;
    if (!t.toks || t.toks->arr.n == 0)
        return err_set(WICK_ERR_FORMAT, "%s: tokenizer.ggml.tokens is missing or empty", path);
    if (t.toks->arr.n > (uint64_t)INT32_MAX)
        return err_set(WICK_ERR_FORMAT, "%s: tokenizer.ggml.tokens holds %llu tokens; token ids "
                       "must fit in 32 bits", path, (unsigned long long)t.toks->arr.n);
    t.n = (int64_t)t.toks->arr.n;
    if (t.types && t.types->arr.n != t.toks->arr.n)
        return err_set(WICK_ERR_FORMAT, "%s: tokenizer.ggml.token_type has %llu entries, tokens "
                       "%llu", path, (unsigned long long)t.types->arr.n,
                       (unsigned long long)t.toks->arr.n);
    t.bos = opt_id(g, "tokenizer.ggml.bos_token_id", t.n);
    t.eos = opt_id(g, "tokenizer.ggml.eos_token_id", t.n);
    t.unk = opt_id(g, "tokenizer.ggml.unknown_token_id", t.n);
    /* SentencePiece models add BOS unless told otherwise (llama.cpp's default too) */
    t.add_bos = spm;
    gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &t.add_bos, NULL);
    gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &t.add_eos, NULL);

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *bm = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(bm, "type", "BPE");
    cJSON_AddNullToObject(bm, "dropout");
    cJSON_AddNullToObject(bm, "continuing_subword_prefix");
    cJSON_AddNullToObject(bm, "end_of_word_suffix");
    st = gpt2 ? build_gpt2(g, &t, root, bm) : build_llama(g, &t, root, bm);
    cJSON *cfg = NULL;
    if (!st) {
        add_post_processor(&t, root);
        cfg = make_config(g, &t);
        *tj = cJSON_PrintUnformatted(root);
        *tc = cfg ? cJSON_PrintUnformatted(cfg) : NULL;
        if (!*tj || !*tc) {
            free(*tj);
            free(*tc);
            *tj = *tc = NULL;
            st = err_set(WICK_ERR_NOMEM, "out of memory");
        }
    }
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    return st;
}
