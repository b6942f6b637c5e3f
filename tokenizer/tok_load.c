/* tok_load.c — wick_tokenizer_load/free: reads tokenizer.json (model, vocab, merges, added
 * tokens, and via tok_components.c the pipeline components), or a BERT vocab.txt, plus
 * tokenizer_config.json beside it (chat template, special token strings, do_lower_case).
 * Models: BPE and WordPiece here, WordLevel here (its vocab reads like BPE's), Unigram in
 * tok_unigram.c. Not here: truncation and padding settings (ignored). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json_parse.h"
#include "base/fileio.h"
#include "tokenizer/tok_components.h"
#include "tokenizer/tok_json.h"
#include "tokenizer/tokenizer_internal.h"

static char *dupn(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

void wick_tokenizer_free(wick_tokenizer *t) {
    if (!t) return;
    free(t->id_str);
    free(t->id_len);
    free(t->strs);
    free(t->is_special);
    tok_smap_free(&t->vocab);
    tok_pmap_free(&t->merges);
    tok_unigram_free(t);
    free(t->cont_prefix);
    free(t->eow_suffix);
    free(t->wp_prefix);
    if (t->norm) tok_norm_free(t->norm);
    free(t->norm);
    if (t->pre) tok_pre_free(t->pre);
    free(t->pre);
    tok_dec_free_list(t->dec, t->ndec);
    free(t->dec);
    free(t->post.pre);
    free(t->post.post);
    for (int i = 0; i < t->nadded; i++) free(t->added[i].content);
    free(t->added);
    for (int set = 0; set < 2; set++) {
        tok_pmap_free(&t->am_edges[set]);
        free(t->am_term[set]);
    }
    free(t->chat_template);
    tokenizer_chat_free(t);
    void *jv = atomic_load_explicit(&t->js_vocab, memory_order_acquire);
    if (jv && t->js_vocab_free) t->js_vocab_free(jv);
    for (int i = 0; i < 4; i++) free(t->cfg_special[i]);
    free(t);
}

/* Grows the id tables so that `id` is valid. */
bool tok_ensure_ids(wick_tokenizer *t, int32_t n) {
    if (n <= t->n_ids) return true;
    char **s = realloc(t->id_str, (size_t)n * sizeof *s);
    if (!s) return false;
    t->id_str = s;
    uint32_t *l = realloc(t->id_len, (size_t)n * sizeof *l);
    if (!l) return false;
    t->id_len = l;
    bool *sp = realloc(t->is_special, (size_t)n);
    if (!sp) return false;
    t->is_special = sp;
    for (int32_t i = t->n_ids; i < n; i++) {
        s[i] = NULL;
        l[i] = 0;
        sp[i] = false;
    }
    t->n_ids = n;
    return true;
}

/* Builds the trie of one set of added tokens (see tok_impl.h). Of two tokens with the same
 * content the first in the file is matched. */
static bool build_matcher(wick_tokenizer *t, int set) {
    size_t bytes = 1;
    for (int i = 0; i < t->nadded; i++)
        if (t->added[i].normalized == (set == 1)) bytes += t->added[i].len;
    if (bytes > INT32_MAX) return false;
    for (int b = 0; b < 256; b++) t->am_root[set][b] = -1;
    t->am_term[set] = malloc(bytes * sizeof(int32_t));
    if (!t->am_term[set] || !tok_pmap_init(&t->am_edges[set], bytes)) return false;
    int32_t nodes = 1, *term = t->am_term[set];
    term[0] = -1;
    for (int i = 0; i < t->nadded; i++) {
        const tok_added *a = &t->added[i];
        if (!a->len || a->normalized != (set == 1)) continue;
        int32_t node = 0, child, unused;
        for (uint32_t k = 0; k < a->len; k++) {
            unsigned char c = (unsigned char)a->content[k];
            bool found = k ? tok_pmap_get(&t->am_edges[set], node, c, &child, &unused)
                           : (child = t->am_root[set][c]) >= 0;
            if (!found) {
                child = nodes++;
                term[child] = -1;
                if (k) {
                    if (!tok_pmap_put(&t->am_edges[set], node, c, child, 0)) return false;
                } else {
                    t->am_root[set][c] = child;
                }
            }
            node = child;
        }
        if (term[node] < 0) term[node] = i;
        t->has_added[set] = true;
    }
    return true;
}

/* Registers the added tokens in the vocab and builds the two matchers; then checks the
 * post-processor's ids against the complete vocabulary. */
static wick_status finish_added(wick_tokenizer *t, const char *file) {
    for (int set = 0; set < 2; set++)
        if (!build_matcher(t, set)) return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    int32_t top = t->n_ids;  /* grow the id tables once, not once per new id */
    for (int i = 0; i < t->nadded; i++)
        if (t->added[i].id + 1 > top) top = t->added[i].id + 1;
    if (!tok_ensure_ids(t, top)) return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    for (int i = 0; i < t->nadded; i++) {
        tok_added *a = &t->added[i];
        if (!t->id_str[a->id]) {
            t->id_str[a->id] = a->content;
            t->id_len[a->id] = a->len;
        }
        t->is_special[a->id] = a->special;
        if (!tok_smap_put(&t->vocab, a->content, a->len, a->id))
            return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    }
    for (int32_t i = 0; i < t->n_ids; i++)
        if (!t->id_str[i]) {  /* a hole in the ids: keep wick_token_str total */
            t->id_str[i] = "";
            t->id_len[i] = 0;
        }
    for (size_t k = 0; k < t->vocab.cap; k++)
        if (t->vocab.e[k].key && t->vocab.e[k].klen > t->max_tok_len) t->max_tok_len = t->vocab.e[k].klen;
    /* the post-processor's ids go straight into wick_tokenize's output: they must be tokens */
    for (int k = 0; k < t->post.npre + t->post.npost; k++) {
        int32_t id = k < t->post.npre ? t->post.pre[k] : t->post.post[k - t->post.npre];
        if (id >= t->n_ids)
            return err_set(WICK_ERR_FORMAT, "%s: post_processor: special token id %d is not in the "
                           "vocabulary (%d ids)", file, id, t->n_ids);
    }
    return WICK_OK;
}

static wick_status add_added(wick_tokenizer *t, const char *file, int32_t id, const char *content,
                             bool special, bool lstrip, bool rstrip, bool single, bool normalized) {
    if (t->nadded == t->cap_added) {  /* doubling: one realloc per token is O(n²) copying */
        if (t->cap_added > INT32_MAX / 2) return err_set(WICK_ERR_FORMAT, "%s: too many added tokens", file);
        int nc = t->cap_added ? 2 * t->cap_added : 16;
        tok_added *na = realloc(t->added, (size_t)nc * sizeof *na);
        if (!na) return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
        t->added = na;
        t->cap_added = nc;
    }
    tok_added *a = &t->added[t->nadded];
    memset(a, 0, sizeof *a);
    a->content = dupn(content, strlen(content));
    if (!a->content) return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    t->nadded++;
    a->id = id;
    a->len = (uint32_t)strlen(content);
    a->special = special;
    a->lstrip = lstrip;
    a->rstrip = rstrip;
    a->single_word = single;
    a->normalized = normalized;
    return WICK_OK;
}

/* Fills cp_id and byte_fallback_id from the model vocab (before added tokens join it). */
static void index_vocab(wick_tokenizer *t) {
    char u[8];
    for (uint32_t cp = 0; cp < 512; cp++) {
        size_t n = tok_utf8_encode(cp, u);
        t->cp_id[cp] = tok_smap_get(&t->vocab, u, n);
    }
    for (int b = 0; b < 256; b++) {
        snprintf(u, sizeof u, "<0x%02X>", b);
        t->byte_fallback_id[b] = t->byte_fallback ? tok_smap_get(&t->vocab, u, 6) : -1;
    }
}

/* The error for an id that is not an integer in [0, limit) (see tok_id_limit); `what` names
 * the field, e.g. model.vocab["abc"]. v is the JSON value, or NULL with the number in `num`. */
static wick_status bad_id(const char *file, const char *what, const cJSON *v, double num,
                          int64_t limit) {
    if (v && !cJSON_IsNumber(v))
        return err_set(WICK_ERR_FORMAT, "%s: %s: expected an integer id", file, what);
    return err_set(WICK_ERR_FORMAT, "%s: %s: id %.17g is not an integer in [0, %lld) (ids must lie "
                   "below 2 x the number of vocab and added entries + 1024)", file, what,
                   v ? v->valuedouble : num, (long long)limit);
}

/* model.vocab["token"], the token cut to 64 bytes. */
static const char *vocab_field(char *buf, size_t cap, const char *tok, size_t len) {
    snprintf(buf, cap, "model.vocab[\"%.*s%s\"]", (int)(len > 64 ? 64 : len), tok, len > 64 ? "..." : "");
    return buf;
}

/* model.vocab: {"token": id, ...} into one string arena. n_added: entries of added_tokens;
 * *limit receives the id limit (tok_id_limit). */
static wick_status read_vocab_obj(wick_tokenizer *t, const char *file, const cJSON *vocab,
                                  size_t n_added, int64_t *limit) {
    if (!cJSON_IsObject(vocab)) return err_set(WICK_ERR_FORMAT, "%s: model.vocab: expected an object", file);
    size_t total = 0, n = 0;
    int64_t maxid = -1, id;
    for (const cJSON *e = vocab->child; e; e = e->next) n++;
    *limit = tok_id_limit(n + n_added);
    for (const cJSON *e = vocab->child; e; e = e->next) {
        char what[128];
        if (!tok_json_int(e, 0, *limit - 1, &id))
            return bad_id(file, vocab_field(what, sizeof what, e->string, strlen(e->string)), e, 0,
                          *limit);
        total += strlen(e->string) + 1;
        if (id > maxid) maxid = id;
    }
    t->strs = malloc(total ? total : 1);
    if (!t->strs || !tok_smap_init(&t->vocab, n + 1024) || !tok_ensure_ids(t, (int32_t)(maxid + 1)))
        return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    char *p = t->strs;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        size_t l = strlen(e->string);
        tok_json_int(e, 0, *limit - 1, &id);  /* checked above */
        memcpy(p, e->string, l + 1);
        t->id_str[id] = p;
        t->id_len[id] = (uint32_t)l;
        if (!tok_smap_put(&t->vocab, p, l, (int32_t)id)) return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
        p += l + 1;
    }
    return WICK_OK;
}

/* Registers merge number `rank`: (a, b) -> the token a + b (b without the continuing-subword
 * prefix). m is scratch. */
static wick_status add_merge(wick_tokenizer *t, const char *file, int rank, const char *a,
                             size_t al, const char *b, size_t bl, tok_buf *m) {
    size_t pl = t->cont_prefix ? strlen(t->cont_prefix) : 0;
    int32_t ia = tok_smap_get(&t->vocab, a, al), ib = tok_smap_get(&t->vocab, b, bl);
    m->len = 0;
    size_t skip = (pl && bl >= pl && memcmp(b, t->cont_prefix, pl) == 0) ? pl : 0;
    if (!tok_buf_put(m, a, al) || !tok_buf_put(m, b + skip, bl - skip))
        return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    int32_t im = tok_smap_get(&t->vocab, m->p, m->len);
    if (ia < 0 || ib < 0 || im < 0) {
        const char *w = ia < 0 ? a : ib < 0 ? b : m->p;
        int wl = (int)(ia < 0 ? al : ib < 0 ? bl : m->len);
        return err_set(WICK_ERR_FORMAT, "%s: model.merges[%d]: token '%.*s' of the merge is not in the vocab",
                       file, rank, wl, w);
    }
    if (!tok_pmap_put(&t->merges, ia, ib, rank, im)) return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    return WICK_OK;
}

static wick_status read_merges(wick_tokenizer *t, const char *file, const cJSON *merges) {
    if (!merges) return WICK_OK;
    if (!cJSON_IsArray(merges)) return err_set(WICK_ERR_FORMAT, "%s: model.merges: expected an array", file);
    int n = cJSON_GetArraySize(merges);
    if (!tok_pmap_init(&t->merges, (size_t)n + 16)) return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    tok_buf m = {0};
    int rank = 0;
    wick_status st = WICK_OK;
    for (const cJSON *e = merges->child; !st && e; e = e->next, rank++) {
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp)
                st = err_set(WICK_ERR_FORMAT, "%s: model.merges[%d]: '%s' is not \"a b\"", file, rank, e->valuestring);
            else
                st = add_merge(t, file, rank, e->valuestring, (size_t)(sp - e->valuestring), sp + 1,
                               strlen(sp + 1), &m);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            const char *a = e->child->valuestring, *b = e->child->next->valuestring;
            st = add_merge(t, file, rank, a, strlen(a), b, strlen(b), &m);
        } else {
            st = err_set(WICK_ERR_FORMAT, "%s: model.merges[%d]: expected \"a b\" or [a, b]", file, rank);
        }
    }
    tok_buf_free(&m);
    return st;
}

/* The streamed forms (tok_json.c) of model.vocab and model.merges. n_added and *limit as
 * for read_vocab_obj. */
static wick_status read_vocab_fast(wick_tokenizer *t, const char *file, tok_jstrs *jv,
                                   size_t n_added, int64_t *limit) {
    int64_t maxid = -1;
    *limit = tok_id_limit(jv->n + n_added);
    for (size_t k = 0; k < jv->n; k++) {
        const tok_jent *e = &jv->e[k];
        if (e->num >= *limit) {  /* tok_json.c read them as integers in [0, 1e8] */
            char what[128];
            return bad_id(file, vocab_field(what, sizeof what, jv->arena.p + e->off, e->len), NULL,
                          (double)e->num, *limit);
        }
        if (e->num > maxid) maxid = e->num;
    }
    if (!tok_smap_init(&t->vocab, jv->n + 1024) || !tok_ensure_ids(t, (int32_t)(maxid + 1)))
        return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    t->strs = jv->arena.p;  /* the tokenizer owns the arena from here on */
    jv->arena = (tok_buf){0};
    enum { BATCH = 32 };  /* hash + prefetch a batch of slots, then insert: hides cache misses */
    uint64_t h[BATCH];
    for (size_t k0 = 0; k0 < jv->n; k0 += BATCH) {
        size_t nb = jv->n - k0 < BATCH ? jv->n - k0 : BATCH;
        for (size_t j = 0; j < nb; j++) {
            h[j] = tok_smap_hash(t->strs + jv->e[k0 + j].off, jv->e[k0 + j].len);
            tok_smap_prefetch(&t->vocab, h[j]);
        }
        for (size_t j = 0; j < nb; j++) {
            const tok_jent *e = &jv->e[k0 + j];
            char *p = t->strs + e->off;
            int32_t id = (int32_t)e->num;
            t->id_str[id] = p;
            t->id_len[id] = e->len;
            if (!tok_smap_put_h(&t->vocab, p, e->len, id, h[j]))
                return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
        }
    }
    return WICK_OK;
}

/* The three vocab lookups of a merge miss the cache (the map is ~12 MB), so merges go in
 * batches: hash and prefetch every slot of the batch first, then probe. Without a
 * continuing-subword prefix the merged token is the plain concatenation a + b; with one the
 * general add_merge handles it. */
static wick_status read_merges_fast(wick_tokenizer *t, const char *file, const tok_jstrs *jm) {
    size_t n = jm->n / 2;
    if (n > INT32_MAX / 2 || !tok_pmap_init(&t->merges, n + 16))
        return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    tok_buf m = {0};
    wick_status st = WICK_OK;
    const char *ar = jm->arena.p;
    enum { BATCH = 32, MAXLEN = 256 };
    char cat[BATCH][MAXLEN];
    uint64_t h[BATCH][3];
    for (size_t k0 = 0; !st && k0 < n; k0 += BATCH) {
        size_t nb = n - k0 < BATCH ? n - k0 : BATCH;
        bool simple = !t->cont_prefix;
        for (size_t j = 0; j < nb; j++) {
            const tok_jent *a = &jm->e[2 * (k0 + j)], *b = &jm->e[2 * (k0 + j) + 1];
            if (a->len + b->len > MAXLEN) simple = false;
        }
        if (simple) {
            for (size_t j = 0; j < nb; j++) {
                const tok_jent *a = &jm->e[2 * (k0 + j)], *b = &jm->e[2 * (k0 + j) + 1];
                memcpy(cat[j], ar + a->off, a->len);
                memcpy(cat[j] + a->len, ar + b->off, b->len);
                h[j][0] = tok_smap_hash(ar + a->off, a->len);
                h[j][1] = tok_smap_hash(ar + b->off, b->len);
                h[j][2] = tok_smap_hash(cat[j], a->len + b->len);
                for (int q = 0; q < 3; q++) tok_smap_prefetch(&t->vocab, h[j][q]);
            }
        }
        if (!simple) {
            for (size_t j = 0; !st && j < nb; j++) {
                const tok_jent *a = &jm->e[2 * (k0 + j)], *b = &jm->e[2 * (k0 + j) + 1];
                st = add_merge(t, file, (int)(k0 + j), ar + a->off, a->len, ar + b->off, b->len, &m);
            }
            continue;
        }
        int32_t ids[BATCH][3];
        for (size_t j = 0; j < nb; j++) {
            const tok_jent *a = &jm->e[2 * (k0 + j)], *b = &jm->e[2 * (k0 + j) + 1];
            ids[j][0] = tok_smap_get_h(&t->vocab, ar + a->off, a->len, h[j][0]);
            ids[j][1] = tok_smap_get_h(&t->vocab, ar + b->off, b->len, h[j][1]);
            ids[j][2] = tok_smap_get_h(&t->vocab, cat[j], a->len + b->len, h[j][2]);
            tok_pmap_prefetch(&t->merges, ids[j][0], ids[j][1]);
        }
        for (size_t j = 0; !st && j < nb; j++) {
            const tok_jent *a = &jm->e[2 * (k0 + j)], *b = &jm->e[2 * (k0 + j) + 1];
            if (ids[j][0] < 0 || ids[j][1] < 0 || ids[j][2] < 0)  /* add_merge words the error */
                st = add_merge(t, file, (int)(k0 + j), ar + a->off, a->len, ar + b->off, b->len, &m);
            else if (!tok_pmap_put(&t->merges, ids[j][0], ids[j][1], (int)(k0 + j), ids[j][2]))
                st = err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
        }
    }
    tok_buf_free(&m);
    return st;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* jv/jm: model.vocab / model.merges already streamed from the text (tok_json.c), or NULL to
 * read them from the cJSON tree. n_added: entries of added_tokens; *limit receives the id
 * limit (tok_id_limit). */
static wick_status read_model(wick_tokenizer *t, const char *file, const cJSON *model,
                              tok_jstrs *jv, const tok_jstrs *jm, size_t n_added, int64_t *limit) {
    if (!cJSON_IsObject(model)) return err_set(WICK_ERR_FORMAT, "%s: model: missing", file);
    const char *ty = jstr(model, "type");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!ty) ty = merges ? "BPE" : "?";
    const char *unk = jstr(model, "unk_token");
    if (!strcmp(ty, "BPE")) {
        t->model = MODEL_BPE;
        const char *cp = jstr(model, "continuing_subword_prefix"), *sf = jstr(model, "end_of_word_suffix");
        /* every character of a word is looked up with them attached (real ones: "##", "</w>") */
        enum { MAX_AFFIX = 64 };
        if ((cp && strlen(cp) > MAX_AFFIX) || (sf && strlen(sf) > MAX_AFFIX))
            return err_set(WICK_ERR_FORMAT, "%s: model.%s: longer than %d bytes", file,
                           cp && strlen(cp) > MAX_AFFIX ? "continuing_subword_prefix" : "end_of_word_suffix",
                           MAX_AFFIX);
        if (cp && *cp) t->cont_prefix = dupn(cp, strlen(cp));
        if (sf && *sf) t->eow_suffix = dupn(sf, strlen(sf));
        t->byte_fallback = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"));
        t->fuse_unk = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "fuse_unk"));
        t->ignore_merges = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges"));
        const cJSON *dr = cJSON_GetObjectItemCaseSensitive(model, "dropout");
        if (cJSON_IsNumber(dr) && dr->valuedouble > 0)
            return err_set(WICK_ERR_UNSUPPORTED, "%s: model.dropout: BPE dropout is not supported", file);
    } else if (!strcmp(ty, "WordPiece")) {
        t->model = MODEL_WORDPIECE;
        const char *p = jstr(model, "continuing_subword_prefix");
        t->wp_prefix = dupn(p ? p : "##", strlen(p ? p : "##"));
        const cJSON *mx = cJSON_GetObjectItemCaseSensitive(model, "max_input_chars_per_word");
        int64_t m = 100;
        if (mx && !cJSON_IsNull(mx) && !tok_json_int(mx, 0, INT64_C(1) << 52, &m))
            return err_set(WICK_ERR_FORMAT, "%s: model.max_input_chars_per_word: expected a "
                           "non-negative integer", file);
        /* no text reaches INT32_MAX characters, so larger limits all mean "none" */
        t->wp_max_chars = m > INT32_MAX ? INT32_MAX : (int)m;
        if (!unk) unk = "[UNK]";
    } else if (!strcmp(ty, "WordLevel")) {
        t->model = MODEL_WORDLEVEL;
        if (!unk) unk = "<unk>";  /* HF's default */
    } else if (!strcmp(ty, "Unigram")) {
        t->model = MODEL_UNIGRAM;
        wick_status st = tok_unigram_load(t, file, model, n_added, limit);
        if (!st) index_vocab(t);
        return st;
    } else {
        return err_set(WICK_ERR_UNSUPPORTED, "%s: model: unsupported type '%s'", file, ty);
    }
    wick_status st = jv ? read_vocab_fast(t, file, jv, n_added, limit)
                        : read_vocab_obj(t, file, cJSON_GetObjectItemCaseSensitive(model, "vocab"),
                                         n_added, limit);
    if (st) return st;
    t->unk_id = unk ? tok_smap_get(&t->vocab, unk, strlen(unk)) : -1;
    if (t->model == MODEL_WORDPIECE && t->unk_id < 0)
        return err_set(WICK_ERR_FORMAT, "%s: model.unk_token: '%s' is not in the vocab", file, unk);
    index_vocab(t);
    if (t->model != MODEL_BPE) return WICK_OK;
    return jm ? read_merges_fast(t, file, jm) : read_merges(t, file, merges);
}

/* Parses tokenizer.json text (`text`, len bytes, NUL-terminated, modified and freed here).
 * `file` names the source in messages. */
static wick_status read_tokenizer_json_text(wick_tokenizer *t, const char *file, char *text,
                                            size_t len) {
    wick_status st;
    /* Stream the two huge sections, then blank them out ({} / [] and spaces) so that cJSON
     * builds a tree of the small rest only. Any surprise: leave the text alone, all cJSON. */
    tok_span vs, ms;
    tok_jstrs jv = {0}, jm = {0};
    bool fast = tok_json_read_model(text, len, &vs, &jv, &ms, &jm);
    if (fast) {
        memset(text + vs.a + 1, ' ', vs.b - vs.a - 2);
        if (ms.found) memset(text + ms.a + 1, ' ', ms.b - ms.a - 2);
    } else {
        tok_jstrs_free(&jv);
        tok_jstrs_free(&jm);
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    const wick_status pe = root ? WICK_OK : json_parse_error(text, len, file);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        tok_jstrs_free(&jv);
        tok_jstrs_free(&jm);
        if (!root) return pe;
        cJSON_Delete(root);
        return err_set(WICK_ERR_FORMAT, "%s: expected a JSON object at the top level", file);
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    size_t n_added = 0;
    for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a; a = a->next) n_added++;
    int64_t limit = 0, id64;
    st = read_model(t, file, cJSON_GetObjectItemCaseSensitive(root, "model"), fast ? &jv : NULL,
                    fast && ms.found ? &jm : NULL, n_added, &limit);
    tok_jstrs_free(&jv);
    tok_jstrs_free(&jm);
    int i = 0;
    for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; !st && a; a = a->next, i++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        const char *c = jstr(a, "content");
        if (!cJSON_IsNumber(id) || !c) {
            st = err_set(WICK_ERR_FORMAT, "%s: added_tokens[%d]: expected id and content", file, i);
            break;
        }
        if (!tok_json_int(id, 0, limit - 1, &id64)) {
            char what[64];
            snprintf(what, sizeof what, "added_tokens[%d].id", i);
            st = bad_id(file, what, id, 0, limit);
            break;
        }
#define B(k, d) (cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(a, k)) ? cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, k)) : d)
        st = add_added(t, file, (int32_t)id64, c, B("special", false), B("lstrip", false),
                       B("rstrip", false), B("single_word", false), B("normalized", true));
#undef B
    }
    const cJSON *o;
    if (!st && cJSON_IsObject(o = cJSON_GetObjectItemCaseSensitive(root, "normalizer"))) {
        t->norm = calloc(1, sizeof *t->norm);
        st = t->norm ? tok_read_norm(file, "normalizer", o, t->norm) : WICK_ERR_NOMEM;
    }
    if (!st && cJSON_IsObject(o = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"))) {
        t->pre = calloc(1, sizeof *t->pre);
        st = t->pre ? tok_read_pre(file, "pre_tokenizer", o, t->pre) : WICK_ERR_NOMEM;
    }
    if (!st && cJSON_IsObject(o = cJSON_GetObjectItemCaseSensitive(root, "post_processor")))
        st = tok_read_post(file, "post_processor", o, &t->post);
    if (!st && cJSON_IsObject(o = cJSON_GetObjectItemCaseSensitive(root, "decoder")))
        st = tok_read_dec(file, "decoder", o, &t->dec, &t->ndec);
    cJSON_Delete(root);
    return st;
}

/* BERT vocab.txt: one token per line, id = line number. */
static wick_status read_vocab_txt(wick_tokenizer *t, const char *file, bool lower, int strip_acc,
                                  bool chinese) {
    size_t len = 0;
    wick_status st = file_read_all(file, &t->strs, &len);
    if (st) return st;
    size_t nlines = 1;
    for (size_t i = 0; i < len; i++) nlines += t->strs[i] == '\n';
    if (!tok_smap_init(&t->vocab, nlines) || !tok_ensure_ids(t, (int32_t)nlines))
        return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    int32_t id = 0;
    char *p = t->strs, *end = t->strs + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        char *next = nl ? nl + 1 : end;
        if (e > p && e[-1] == '\r') e--;
        *e = 0;
        t->id_str[id] = p;
        t->id_len[id] = (uint32_t)(e - p);
        tok_smap_put(&t->vocab, p, (size_t)(e - p), id);
        id++;
        p = next;
    }
    t->n_ids = id;
    if (!id) return err_set(WICK_ERR_FORMAT, "%s: empty vocabulary", file);
    t->model = MODEL_WORDPIECE;
    t->wp_prefix = dupn("##", 2);
    t->wp_max_chars = 100;
    t->unk_id = tok_smap_get(&t->vocab, "[UNK]", 5);
    if (t->unk_id < 0) return err_set(WICK_ERR_FORMAT, "%s: no [UNK] token", file);
    index_vocab(t);
    static const char *sp[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int i = 0; i < 5; i++) {
        int32_t k = tok_smap_get(&t->vocab, sp[i], strlen(sp[i]));
        if (k >= 0 && (st = add_added(t, file, k, sp[i], true, false, false, false, false))) return st;
    }
    t->norm = calloc(1, sizeof *t->norm);
    t->pre = calloc(1, sizeof *t->pre);
    t->dec = calloc(1, sizeof *t->dec);
    if (!t->norm || !t->pre || !t->dec) return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    t->norm->kind = NORM_BERT;
    t->norm->clean_text = true;
    t->norm->chinese = chinese;
    t->norm->lowercase = lower;
    t->norm->strip_accents = strip_acc < 0 ? lower : strip_acc;
    t->pre->kind = PRE_BERT;
    t->ndec = 1;
    t->dec[0].kind = DEC_WORDPIECE;
    t->dec[0].str = dupn("##", 2);
    t->dec[0].cleanup = true;
    int32_t cls = tok_smap_get(&t->vocab, "[CLS]", 5), sep = tok_smap_get(&t->vocab, "[SEP]", 5);
    if (cls >= 0 && sep >= 0) {
        t->post.present = true;
        t->post.pre = malloc(sizeof(int32_t));
        t->post.post = malloc(sizeof(int32_t));
        if (!t->post.pre || !t->post.post) return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
        t->post.pre[0] = cls;
        t->post.post[0] = sep;
        t->post.npre = t->post.npost = 1;
    }
    return WICK_OK;
}

/* A special-token entry of tokenizer_config.json: a string or {"content": ...}. */
static const char *cfg_token(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsString(v)) return v->valuestring;
    return jstr(v, "content");
}

static wick_status read_config_json(wick_tokenizer *t, const char *file, cJSON *cfg) {
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    const char *tmpl = NULL;
    if (cJSON_IsString(ct)) tmpl = ct->valuestring;
    else if (cJSON_IsArray(ct))
        for (const cJSON *e = ct->child; e; e = e->next) {
            const char *nm = jstr(e, "name");
            if (nm && !strcmp(nm, "default")) tmpl = jstr(e, "template");
        }
    if (tmpl && !(t->chat_template = dupn(tmpl, strlen(tmpl))))
        return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    static const char *keys[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    for (int i = 0; i < 4; i++) {
        const char *s = cfg_token(cfg, keys[i]);
        if (s && !(t->cfg_special[i] = dupn(s, strlen(s)))) return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    }
    return WICK_OK;
}

/* wick_special ids: tokenizer_config.json names first, then conventional names. */
static void resolve_specials(wick_tokenizer *t, const cJSON *cfg) {
    static const char *keys[7] = {"bos_token", "eos_token", "pad_token", "unk_token",
                                  "cls_token", "sep_token", "mask_token"};
    static const char *defs[7] = {NULL, NULL, "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int i = 0; i < 7; i++) {
        const char *s = cfg ? cfg_token(cfg, keys[i]) : NULL;
        t->specials[i] = s ? wick_token_id(t, s) : -1;
        if (t->specials[i] < 0 && defs[i]) t->specials[i] = wick_token_id(t, defs[i]);
    }
    if (t->specials[WICK_SPECIAL_UNK] < 0) t->specials[WICK_SPECIAL_UNK] = t->unk_id;
}

static bool ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static wick_status read_tokenizer_json(wick_tokenizer *t, const char *file) {
    char *text = NULL;
    size_t len = 0;
    wick_status st = file_read_all(file, &text, &len);
    if (st) return st;
    return read_tokenizer_json_text(t, file, text, len);
}

static wick_tokenizer *tokenizer_new(void) {
    static _Atomic uint64_t next_serial = 1;
    wick_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->serial = atomic_fetch_add(&next_serial, 1);
    t->unk_id = -1;
    return t;
}

wick_status wick_tokenizer_load_mem(const char *tokenizer_json, size_t len,
                                    const char *config_json, wick_tokenizer **out) {
    if (!out || !tokenizer_json)
        return err_set(WICK_ERR_INVALID_ARG, "wick_tokenizer_load_mem: NULL argument");
    *out = NULL;
    const char *where = "tokenizer.json (in memory)";
    const char *cfg_where = "tokenizer_config.json (in memory)";
    wick_tokenizer *t = tokenizer_new();
    char *text = malloc(len + 1);
    if (!t || !text) {
        free(t);
        free(text);
        return err_set(WICK_ERR_NOMEM, "wick_tokenizer_load_mem: out of memory");
    }
    memcpy(text, tokenizer_json, len);
    text[len] = '\0';
    wick_status st = WICK_OK;
    cJSON *cfg = NULL;
    if (config_json) {
        st = json_parse(config_json, strlen(config_json), cfg_where, &cfg);
        if (!st && !cJSON_IsObject(cfg)) st = err_set(WICK_ERR_FORMAT, "%s: not a JSON object", cfg_where);
    }
    if (!st) st = read_tokenizer_json_text(t, where, text, len);
    else free(text);
    if (!st) st = finish_added(t, where);
    if (!st && cfg) st = read_config_json(t, cfg_where, cfg);
    if (!st) resolve_specials(t, cfg);
    cJSON_Delete(cfg);
    if (st) {
        wick_tokenizer_free(t);
        return st;
    }
    *out = t;
    return WICK_OK;
}

wick_status wick_tokenizer_load(const char *path, wick_tokenizer **out) {
    if (!path || !out) return err_set(WICK_ERR_INVALID_ARG, "wick_tokenizer_load: NULL argument");
    *out = NULL;
    char *file = NULL, *dir = NULL;
    if (dir_exists(path)) {
        dir = path_join(path, ".");
        file = path_join(path, "tokenizer.json");
        if (file && !file_exists(file)) {
            free(file);
            file = path_join(path, "vocab.txt");
            if (file && !file_exists(file)) {
                wick_status st = err_set(WICK_ERR_NOT_FOUND, "%s: no tokenizer.json or vocab.txt in this folder", path);
                free(file);
                free(dir);
                return st;
            }
        }
    } else {
        file = path_join(".", path);
        free(file);
        file = dupn(path, strlen(path));
        dir = path_dirname(path);
    }
    wick_tokenizer *t = tokenizer_new();
    if (!file || !dir || !t) {
        free(file);
        free(dir);
        free(t);
        return err_set(WICK_ERR_NOMEM, "wick_tokenizer_load: out of memory");
    }
    wick_status st = WICK_OK;
    cJSON *cfg = NULL;
    char *cfgpath = path_join(dir, "tokenizer_config.json");
    if (!cfgpath) st = err_set(WICK_ERR_NOMEM, "wick_tokenizer_load: out of memory");
    else if (file_exists(cfgpath)) {
        char *txt = NULL;
        size_t n = 0;
        st = file_read_all(cfgpath, &txt, &n);
        if (!st) {
            st = json_parse(txt, n, cfgpath, &cfg);
            if (!st && !cJSON_IsObject(cfg)) st = err_set(WICK_ERR_FORMAT, "%s: not a JSON object", cfgpath);
        }
        free(txt);
    }
    if (!st && ends_with(file, ".txt")) {
        const cJSON *lc = cJSON_GetObjectItemCaseSensitive(cfg, "do_lower_case");
        const cJSON *sa = cJSON_GetObjectItemCaseSensitive(cfg, "strip_accents");
        const cJSON *ch = cJSON_GetObjectItemCaseSensitive(cfg, "tokenize_chinese_chars");
        st = read_vocab_txt(t, file, cJSON_IsBool(lc) ? cJSON_IsTrue(lc) : true,
                            cJSON_IsBool(sa) ? cJSON_IsTrue(sa) : -1,
                            cJSON_IsBool(ch) ? cJSON_IsTrue(ch) : true);
    } else if (!st) {
        st = read_tokenizer_json(t, file);
    }
    if (!st) st = finish_added(t, file);
    if (!st && cfg) st = read_config_json(t, cfgpath, cfg);
    if (!st) resolve_specials(t, cfg);
    cJSON_Delete(cfg);
    free(cfgpath);
    free(file);
    free(dir);
    if (st) {
        wick_tokenizer_free(t);
        return st;
    }
    *out = t;
    return WICK_OK;
}
