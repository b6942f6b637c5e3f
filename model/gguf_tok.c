/* gguf_tok.c — tokenizer.json/tokenizer_config.json -> GGUF tokenizer metadata (see
 * gguf_tok.h). Only reads the JSON; the tokenizer itself is never instantiated here. */
#include "model/gguf_tok.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "base/json_parse.h"
#include "base/json_num.h"
#include "tokenizer/tok_components.h"
#include "tokenizer/tok_impl.h"

#define MAX_KV 24

typedef struct store {
    char *tj, *tc;              /* file texts */
    cJSON *root, *cfg;
    gguf_value *tokens, *types, *merges, *scores;
    gguf_value *pad_tokens, *pad_types, *pad_scores; /* gguf_tok_meta_pad's longer copies */
    char **strs;                /* strings made here (gap names, joined merges) */
    size_t n_strs, cap_strs;
    char *chat_template;
} store;

static char *keep(store *s, char *str) {
    if (!str) return NULL;
    if (s->n_strs == s->cap_strs) {
        size_t cap = s->cap_strs ? s->cap_strs * 2 : 1024;
        char **n = realloc(s->strs, cap * sizeof *n);
        if (!n) {
            free(str);
            return NULL;
        }
        s->strs = n;
        s->cap_strs = cap;
    }
    return s->strs[s->n_strs++] = str;
}

void gguf_tok_meta_free(gguf_tok_meta *m) {
    if (!m) return;
    store *s = m->storage_;
    if (s) {
        free(s->tj);
        free(s->tc);
        cJSON_Delete(s->root);
        cJSON_Delete(s->cfg);
        free(s->tokens);
        free(s->types);
        free(s->merges);
        free(s->scores);
        free(s->pad_tokens);
        free(s->pad_types);
        free(s->pad_scores);
        for (size_t i = 0; i < s->n_strs; i++) free(s->strs[i]);
        free(s->strs);
        free(s);
    }
    free(m->kv);
    memset(m, 0, sizeof *m);
}

/* The string of a special token entry in tokenizer_config.json (string or {"content": ...}). */
static const char *cfg_token(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A token id of tokenizer.json: an integer in [0, MAX_IDS), else -1 (json_num_int checks
 * before converting: a double such as 1e300 cast to an integer is undefined). */
#define MAX_IDS 10000000
static int64_t json_id(const cJSON *v) {
    int64_t id;
    return json_num_int(v, 0, MAX_IDS - 1, &id) ? id : -1;
}

static int64_t token_id(const cJSON *vocab, const cJSON *added, const char *str) {
    if (!str) return -1;
    const cJSON *a;
    int64_t id;
    if (cJSON_IsArray(added)) cJSON_ArrayForEach(a, added) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "content");
        if (cJSON_IsString(c) && !strcmp(c->valuestring, str) &&
            tok_json_int(cJSON_GetObjectItemCaseSensitive(a, "id"), 0, INT32_MAX, &id))
            return id;
    }
    return tok_json_int(cJSON_GetObjectItemCaseSensitive(vocab, str), 0, INT32_MAX, &id) ? id : -1;
}

/* llama.cpp's pre-tokenizer name, guessed from the Split regex. */
static const char *guess_pre(const char *json_text) {
    if (strstr(json_text, "\\\\p{N}{1,3}")) return "llama-bpe";
    if (strstr(json_text, "\\\\p{N}")) return "qwen2";
    return "gpt2";
}

/* SentencePiece-style BPE (no ByteLevel): llama.cpp's `llama` tokenizer model has no merges,
 * only scores, and merges the adjacent pair whose joined piece scores highest. Scores are
 * made from the merge list so that this order is the list's order: the piece first made by
 * merge k (from 0) scores -(k+1); other normal pieces score below every merge
 * (-(n_merges + 1 + id));
 * control, unknown and byte pieces 0, as SentencePiece gives them. Also types: byte pieces
 * <0xXX> are 6 when byte_fallback is on, the unk token 2. */
static wick_status spm_meta(store *s, const cJSON *model, int64_t n_ids, gguf_kv *kv, int *k) {
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const int nm = cJSON_GetArraySize(merges);
    s->scores = calloc((size_t)n_ids, sizeof *s->scores);
    tok_smap ids; /* piece -> id: cJSON object lookups walk a list (O(vocab) each) */
    if (!s->scores || !tok_smap_init(&ids, (size_t)n_ids)) return err_set(WICK_ERR_NOMEM, "out of memory");
    const cJSON *ve;
    cJSON_ArrayForEach(ve, vocab) {
        const int64_t id = json_id(ve);
        if (id >= 0 && id < n_ids && !tok_smap_put(&ids, ve->string, strlen(ve->string), (int32_t)id)) {
            tok_smap_free(&ids);
            return err_set(WICK_ERR_NOMEM, "out of memory");
        }
    }
    for (int64_t i = 0; i < n_ids; i++)
        s->scores[i] = (gguf_value){.type = GGUF_F32, .f = s->types[i].i == 1 ? -(double)(nm + 1 + i) : 0};
    int idx = 0;
    const cJSON *e;
    char buf[512]; /* joined merge; longer ones keep the below-every-merge score */
    cJSON_ArrayForEach(e, merges) {
        const char *a = NULL, *b = NULL;
        size_t la = 0;
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (sp) { a = e->valuestring; la = (size_t)(sp - a); b = sp + 1; }
        } else if (cJSON_IsArray(e) && cJSON_IsString(e->child) && e->child->next &&
                   cJSON_IsString(e->child->next)) {
            a = e->child->valuestring;
            la = strlen(a);
            b = e->child->next->valuestring;
        }
        if (a && la + strlen(b) < sizeof buf) {
            memcpy(buf, a, la);
            strcpy(buf + la, b);
            const int32_t id = tok_smap_get(&ids, buf, strlen(buf));
            if (id >= 0 && s->types[id].i == 1 && s->scores[id].f <= -(double)(nm + 1))
                s->scores[id].f = -(double)(idx + 1); /* the first merge making the piece */
        }
        idx++;
    }
    const cJSON *bf = cJSON_GetObjectItemCaseSensitive(model, "byte_fallback");
    if (cJSON_IsTrue(bf)) {
        for (int byte = 0; byte < 256; byte++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", byte);
            const int32_t id = tok_smap_get(&ids, name, strlen(name));
            if (id >= 0) {
                s->types[id] = gguf_v_i32(6);
                s->scores[id].f = 0;
            }
        }
    }
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    const int32_t u = cJSON_IsString(unk) ? tok_smap_get(&ids, unk->valuestring, strlen(unk->valuestring)) : -1;
    tok_smap_free(&ids);
    if (u >= 0) {
        s->types[u] = gguf_v_i32(2);
        s->scores[u].f = 0;
        kv[*k].key = "tokenizer.ggml.unknown_token_id"; kv[*k].v = gguf_v_u32((uint32_t)u); (*k)++;
    }
    /* the text gets a leading "▁" when the normalizer prepends one or Metaspace does */
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(s->root, "normalizer");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(s->root, "pre_tokenizer");
    char *nt = norm ? cJSON_PrintUnformatted(norm) : NULL, *pt = pre ? cJSON_PrintUnformatted(pre) : NULL;
    bool prefix = (nt && strstr(nt, "\"Prepend\"")) ||
                  (pt && strstr(pt, "\"Metaspace\"") && !strstr(pt, "\"never\"") &&
                   !strstr(pt, "\"add_prefix_space\":false"));
    free(nt);
    free(pt);
    kv[*k].key = "tokenizer.ggml.add_space_prefix"; kv[*k].v = gguf_v_bool(prefix); (*k)++;
    const cJSON *ae = cJSON_GetObjectItemCaseSensitive(s->cfg, "add_eos_token");
    kv[*k].key = "tokenizer.ggml.add_eos_token"; kv[*k].v = gguf_v_bool(cJSON_IsTrue(ae)); (*k)++;
    gguf_value arr = {.type = GGUF_ARRAY};
    arr.arr.type = GGUF_F32;
    arr.arr.n = (uint64_t)n_ids;
    arr.arr.items = s->scores;
    kv[*k].key = "tokenizer.ggml.scores"; kv[*k].v = arr; (*k)++;
    return WICK_OK;
}

wick_status gguf_tok_meta_from_folder(const char *dir, gguf_tok_meta *out) {
    memset(out, 0, sizeof *out);
    char *tjp = path_join(dir, "tokenizer.json"), *tcp = path_join(dir, "tokenizer_config.json");
    store *s = calloc(1, sizeof *s);
    out->kv = calloc(MAX_KV, sizeof *out->kv);
    out->storage_ = s;
    wick_status st = WICK_OK;
    if (!tjp || !tcp || !s || !out->kv) {
        st = err_set(WICK_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!file_exists(tjp)) goto done; /* no tokenizer: nothing to add */
    size_t tj_len;
    if ((st = file_read_all(tjp, &s->tj, &tj_len))) goto done;
    if (file_exists(tcp) && (st = file_read_all(tcp, &s->tc, NULL))) goto done;
    if ((st = json_parse(s->tj, tj_len, tjp, &s->root))) goto done;
    if (!cJSON_IsObject(s->root)) {
        st = err_set(WICK_ERR_FORMAT, "%s: not a JSON object", tjp);
        goto done;
    }
    if (s->tc) {
        if ((st = json_parse(s->tc, strlen(s->tc), tcp, &s->cfg))) goto done;
        if (!cJSON_IsObject(s->cfg)) {
            st = err_set(WICK_ERR_FORMAT, "%s: not a JSON object", tcp);
            goto done;
        }
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(s->root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(s->root, "added_tokens");
    const cJSON *mtype = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!cJSON_IsObject(vocab) || !cJSON_IsString(mtype)) {
        st = err_set(WICK_ERR_UNSUPPORTED, "%s: model.vocab / model.type missing or not a "
                     "BPE/WordPiece vocabulary; cannot describe it in GGUF metadata", tjp);
        goto done;
    }
    /* id -> token string, over vocab + added tokens. Every id is checked to be an integer
       below the tokenizer loader's limit (tok_id_limit) before it is converted or used */
    int64_t n_ids = 0, id, limit;
    size_t entries = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) entries++;
    if (cJSON_IsArray(added)) cJSON_ArrayForEach(e, added) entries++;
    limit = tok_id_limit(entries);
    cJSON_ArrayForEach(e, vocab) {
        if (!tok_json_int(e, 0, limit - 1, &id)) {
            st = err_set(WICK_ERR_FORMAT, "%s: model.vocab[\"%.64s\"]: expected an integer id in "
                         "[0, %lld)", tjp, e->string, (long long)limit);
            goto done;
        }
        if (id + 1 > n_ids) n_ids = id + 1;
    }
    int ai = 0;
    if (cJSON_IsArray(added)) cJSON_ArrayForEach(e, added) {
        if (!tok_json_int(cJSON_GetObjectItemCaseSensitive(e, "id"), 0, limit - 1, &id)) {
            st = err_set(WICK_ERR_FORMAT, "%s: added_tokens[%d].id: expected an integer id in "
                         "[0, %lld)", tjp, ai, (long long)limit);
            goto done;
        }
        if (id + 1 > n_ids) n_ids = id + 1;
        ai++;
    }
    if (n_ids <= 0) {
        st = err_set(WICK_ERR_FORMAT, "%s: vocabulary size %lld is not usable", tjp, (long long)n_ids);
        goto done;
    }
    s->tokens = calloc((size_t)n_ids, sizeof *s->tokens);
    s->types = calloc((size_t)n_ids, sizeof *s->types);
    if (!s->tokens || !s->types) {
        st = err_set(WICK_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n_ids; i++) {
        s->types[i] = gguf_v_i32(5); /* unused, until filled */
        s->tokens[i].type = GGUF_STRING;
    }
    cJSON_ArrayForEach(e, vocab) {
        tok_json_int(e, 0, limit - 1, &id); /* checked above */
        s->tokens[id] = gguf_v_str(e->string);
        s->types[id] = gguf_v_i32(1); /* normal */
    }
    if (cJSON_IsArray(added)) cJSON_ArrayForEach(e, added) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        int64_t i;
        tok_json_int(cJSON_GetObjectItemCaseSensitive(e, "id"), 0, limit - 1, &i);
        if (!cJSON_IsString(c)) continue;
        s->tokens[i] = gguf_v_str(c->valuestring);
        s->types[i] = gguf_v_i32(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special")) ? 3 : 4);
    }
    for (int64_t i = 0; i < n_ids; i++) {
        if (s->tokens[i].str.s) continue;
        char name[32];
        snprintf(name, sizeof name, "[PAD%lld]", (long long)i);
        char *k = keep(s, strdup(name));
        if (!k) {
            st = err_set(WICK_ERR_NOMEM, "out of memory");
            goto done;
        }
        s->tokens[i] = gguf_v_str(k);
    }
    gguf_tok_meta *m = out;
    gguf_kv *kv = m->kv;
    int k = 0;
    bool bpe = !strcmp(mtype->valuestring, "BPE");
    bool byte_level = strstr(s->tj, "\"ByteLevel\"") != NULL;
    const char *gmodel = bpe && byte_level ? "gpt2" : bpe ? "llama" : "bert";
    kv[k].key = "tokenizer.ggml.model"; kv[k].v = gguf_v_str(gmodel); k++;
    if (bpe && byte_level) { kv[k].key = "tokenizer.ggml.pre"; kv[k].v = gguf_v_str(guess_pre(s->tj)); k++; }
    gguf_value arr = {.type = GGUF_ARRAY};
    arr.arr.type = GGUF_STRING;
    arr.arr.n = (uint64_t)n_ids;
    arr.arr.items = s->tokens;
    kv[k].key = "tokenizer.ggml.tokens"; kv[k].v = arr; k++;
    arr.arr.type = GGUF_I32;
    arr.arr.items = s->types;
    kv[k].key = "tokenizer.ggml.token_type"; kv[k].v = arr; k++;
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (bpe && !byte_level) {
        if ((st = spm_meta(s, model, n_ids, kv, &k))) goto done;
    } else if (bpe && cJSON_IsArray(merges)) {
        int nm = cJSON_GetArraySize(merges), i = 0;
        s->merges = calloc((size_t)(nm ? nm : 1), sizeof *s->merges);
        if (!s->merges) {
            st = err_set(WICK_ERR_NOMEM, "out of memory");
            goto done;
        }
        cJSON_ArrayForEach(e, merges) {
            if (cJSON_IsString(e)) {
                s->merges[i++] = gguf_v_str(e->valuestring);
            } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
                       cJSON_IsString(e->child) && cJSON_IsString(e->child->next)) {
                size_t la = strlen(e->child->valuestring), lb = strlen(e->child->next->valuestring);
                char *j = keep(s, malloc(la + lb + 2));
                if (!j) {
                    st = err_set(WICK_ERR_NOMEM, "out of memory");
                    goto done;
                }
                memcpy(j, e->child->valuestring, la);
                j[la] = ' ';
                memcpy(j + la + 1, e->child->next->valuestring, lb + 1);
                s->merges[i++] = gguf_v_str(j);
            } else {
                st = err_set(WICK_ERR_FORMAT, "%s: model.merges[%d] is not a merge", tjp, i);
                goto done;
            }
        }
        arr.arr.type = GGUF_STRING;
        arr.arr.n = (uint64_t)i;
        arr.arr.items = s->merges;
        kv[k].key = "tokenizer.ggml.merges"; kv[k].v = arr; k++;
    }
    int64_t bos = token_id(vocab, added, cfg_token(s->cfg, "bos_token"));
    int64_t eos = token_id(vocab, added, cfg_token(s->cfg, "eos_token"));
    int64_t pad = token_id(vocab, added, cfg_token(s->cfg, "pad_token"));
    if (bos >= 0) { kv[k].key = "tokenizer.ggml.bos_token_id"; kv[k].v = gguf_v_u32((uint32_t)bos); k++; }
    if (eos >= 0) { kv[k].key = "tokenizer.ggml.eos_token_id"; kv[k].v = gguf_v_u32((uint32_t)eos); k++; }
    if (pad >= 0) { kv[k].key = "tokenizer.ggml.padding_token_id"; kv[k].v = gguf_v_u32((uint32_t)pad); k++; }
    /* BOS is added when the post-processor's single template starts with it */
    bool add_bos = bos >= 0 && cfg_token(s->cfg, "bos_token") &&
                   strstr(s->tj, "\"post_processor\"") &&
                   strstr(s->tj, cfg_token(s->cfg, "bos_token")) &&
                   strstr(s->tj, "\"TemplateProcessing\"");
    kv[k].key = "tokenizer.ggml.add_bos_token"; kv[k].v = gguf_v_bool(add_bos); k++;
    const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(s->cfg, "chat_template");
    if (cJSON_IsString(tmpl)) { kv[k].key = "tokenizer.chat_template"; kv[k].v = gguf_v_str(tmpl->valuestring); k++; }
    kv[k].key = "tokenizer.huggingface.json"; kv[k].v = gguf_v_str(s->tj); k++;
    if (s->tc) { kv[k].key = "tokenizer.wick.config_json"; kv[k].v = gguf_v_str(s->tc); k++; }
    m->n = k;
done:
    free(tjp);
    free(tcp);
    if (st) gguf_tok_meta_free(out);
    return st;
}

void gguf_tok_meta_drop_ids(gguf_tok_meta *m) {
    static const char *const ids[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                      "tokenizer.ggml.eot_token_id",
                                      "tokenizer.ggml.padding_token_id",
                                      "tokenizer.wick.eos_token_ids"};
    int w = 0;
    for (int i = 0; i < m->n; i++) {
        bool id = false;
        for (size_t j = 0; j < sizeof ids / sizeof ids[0]; j++) id |= !strcmp(m->kv[i].key, ids[j]);
        if (!id) m->kv[w++] = m->kv[i];
    }
    m->n = w;
}

wick_status gguf_tok_meta_from_gguf(const gguf_file *g, gguf_tok_meta *out) {
    memset(out, 0, sizeof *out);
    int n = 0;
    for (int64_t i = 0; i < g->n_kv; i++)
        if (!strncmp(g->kv[i].key, "tokenizer.", 10)) n++;
    out->kv = calloc((size_t)(n ? n : 1), sizeof *out->kv);
    if (!out->kv) return err_set(WICK_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < g->n_kv; i++)
        if (!strncmp(g->kv[i].key, "tokenizer.", 10)) out->kv[out->n++] = g->kv[i];
    return WICK_OK;
}

/* A copy of array `v` grown to n items, the new ones from fill(i); kept in *slot. */
static wick_status pad_array(store *s, gguf_value *v, int64_t n, gguf_value **slot, int kind) {
    gguf_value *items = calloc((size_t)n, sizeof *items);
    if (!items) return err_set(WICK_ERR_NOMEM, "out of memory");
    memcpy(items, v->arr.items, (size_t)v->arr.n * sizeof *items);
    for (int64_t i = (int64_t)v->arr.n; i < n; i++) {
        if (kind == 0) {
            char name[32];
            snprintf(name, sizeof name, "[PAD%lld]", (long long)i);
            char *k = keep(s, strdup(name));
            if (!k) {
                free(items);
                return err_set(WICK_ERR_NOMEM, "out of memory");
            }
            items[i] = gguf_v_str(k);
        } else if (kind == 1) {
            items[i].type = v->arr.type;
            if (v->arr.type == GGUF_I32 || v->arr.type == GGUF_I64) items[i].i = 5; /* unused */
            else items[i].u = 5;
        } else {
            items[i].type = v->arr.type;
            items[i].f = -1000.0;
        }
    }
    free(*slot);
    *slot = items;
    v->arr.items = items;
    v->arr.n = (uint64_t)n;
    return WICK_OK;
}

wick_status gguf_tok_meta_pad(gguf_tok_meta *m, int64_t n_vocab) {
    gguf_kv *tokens = NULL, *types = NULL, *scores = NULL;
    for (int i = 0; i < m->n; i++) {
        if (m->kv[i].v.type != GGUF_ARRAY) continue;
        if (!strcmp(m->kv[i].key, "tokenizer.ggml.tokens")) tokens = &m->kv[i];
        else if (!strcmp(m->kv[i].key, "tokenizer.ggml.token_type")) types = &m->kv[i];
        else if (!strcmp(m->kv[i].key, "tokenizer.ggml.scores")) scores = &m->kv[i];
    }
    if (!tokens || tokens->v.arr.type != GGUF_STRING) return WICK_OK; /* no token list */
    const int64_t n = (int64_t)tokens->v.arr.n;
    if (n > n_vocab)
        return err_set(WICK_ERR_FORMAT, "tokenizer.ggml.tokens: %lld tokens but the model embeds "
                       "only %lld ids", (long long)n, (long long)n_vocab);
    if (n == n_vocab) return WICK_OK;
    if ((types && (int64_t)types->v.arr.n != n) || (scores && (int64_t)scores->v.arr.n != n))
        return err_set(WICK_ERR_FORMAT, "tokenizer.ggml.token_type/scores: length differs from "
                       "tokenizer.ggml.tokens (%lld)", (long long)n);
    store *s = m->storage_;
    if (!s) { /* metadata borrowed from a GGUF file: the padded arrays need an owner */
        if (!(s = calloc(1, sizeof *s))) return err_set(WICK_ERR_NOMEM, "out of memory");
        m->storage_ = s;
    }
    wick_status st = pad_array(s, &tokens->v, n_vocab, &s->pad_tokens, 0);
    if (!st && types) st = pad_array(s, &types->v, n_vocab, &s->pad_types, 1);
    if (!st && scores) st = pad_array(s, &scores->v, n_vocab, &s->pad_scores, 2);
    return st;
}
