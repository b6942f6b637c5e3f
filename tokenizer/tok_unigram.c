/* tok_unigram.c — the Unigram model of tokenizer.json (SentencePiece's unigram language
 * model, as HF tokenizers runs it): a word is cut into the pieces whose scores (log
 * probabilities) have the largest sum, found by Viterbi over a byte trie of the pieces.
 *
 * Rules kept from HF tokenizers (its optimized encode, which is what it runs):
 *  - every start position that is a character boundary tries each piece that is a prefix of
 *    the rest of the word, shortest first; a later candidate replaces the best path ending at
 *    the same position only when its score is strictly greater (ties keep the first);
 *  - when no piece of exactly one character starts there, the character alone becomes
 *    unk_id with score (lowest piece score - 10);
 *  - on the way back, consecutive unk_id pieces (the unk piece itself included) fuse into one
 *    string; that string is looked up in the vocabulary, and when absent it becomes either
 *    the <0xXX> pieces of its bytes (byte_fallback, when all exist) or one unk_id.
 * Cost: O(bytes of the word x longest piece), memory 20 bytes per byte of the word; pieces
 * longer than TOK_UNIGRAM_MAX_PIECE bytes are refused at load.
 * Not here: sampling (alpha / nbest), training. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tokenizer/tok_components.h"

void tok_unigram_free(wick_tokenizer *t) {
    free(t->ug_score);
    free(t->ug_term);
    tok_pmap_free(&t->ug_edges);
}

/* Adds piece `id` (s, n bytes) to the trie; *nodes counts the nodes used so far. A piece
 * seen twice keeps the later id, as the vocabulary map does. */
static bool trie_add(wick_tokenizer *t, const char *s, size_t n, int32_t id, int32_t *nodes) {
    int32_t node = 0, child, unused;
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        bool found = k ? tok_pmap_get(&t->ug_edges, node, c, &child, &unused)
                       : (child = t->ug_root[c]) >= 0;
        if (!found) {
            child = (*nodes)++;
            t->ug_term[child] = -1;
            if (k) {
                if (!tok_pmap_put(&t->ug_edges, node, c, child, 0)) return false;
            } else {
                t->ug_root[c] = child;
            }
        }
        node = child;
    }
    t->ug_term[node] = id;
    return true;
}

wick_status tok_unigram_load(wick_tokenizer *t, const char *file, const cJSON *model,
                             size_t n_added, int64_t *limit) {
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsArray(vocab))
        return err_set(WICK_ERR_FORMAT, "%s: model.vocab: expected an array of [piece, score]", file);
    size_t n = 0, total = 0, trie_bytes = 1;
    for (const cJSON *e = vocab->child; e; e = e->next, n++) {
        const cJSON *p = cJSON_IsArray(e) ? e->child : NULL, *sc = p ? p->next : NULL;
        if (!cJSON_IsString(p) || !cJSON_IsNumber(sc) || sc->next || !isfinite(sc->valuedouble))
            return err_set(WICK_ERR_FORMAT, "%s: model.vocab[%zu]: expected [piece (string), score "
                           "(finite number)]", file, n);
        size_t l = strlen(p->valuestring);
        if (l > TOK_UNIGRAM_MAX_PIECE)
            return err_set(WICK_ERR_FORMAT, "%s: model.vocab[%zu]: piece of %zu bytes (at most %d)",
                           file, n, l, TOK_UNIGRAM_MAX_PIECE);
        if (n >= INT32_MAX / 2) return err_set(WICK_ERR_FORMAT, "%s: model.vocab: too many pieces", file);
        total += l + 1;
        trie_bytes += l;
    }
    if (!n) return err_set(WICK_ERR_FORMAT, "%s: model.vocab: empty", file);
    if (trie_bytes > INT32_MAX) return err_set(WICK_ERR_FORMAT, "%s: model.vocab: too large", file);
    *limit = tok_id_limit(n + n_added);
    const cJSON *uk = cJSON_GetObjectItemCaseSensitive(model, "unk_id");
    int64_t unk = -1;
    if (uk && !cJSON_IsNull(uk) && !tok_json_int(uk, 0, (int64_t)n - 1, &unk))
        return err_set(WICK_ERR_FORMAT, "%s: model.unk_id: expected null or an integer in [0, %zu) "
                       "(an index of model.vocab)", file, n);
    /* HF refuses to encode an unknown character without unk_id; wick needs some id to give */
    if (unk < 0)
        return err_set(WICK_ERR_UNSUPPORTED, "%s: model.unk_id: a Unigram model without unk_id is "
                       "not supported", file);
    t->unk_id = (int32_t)unk;
    t->byte_fallback = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"));
    t->ug_n = (int32_t)n;
    t->strs = malloc(total);
    t->ug_score = malloc(n * sizeof *t->ug_score);
    t->ug_term = malloc(trie_bytes * sizeof *t->ug_term);
    if (!t->strs || !t->ug_score || !t->ug_term || !tok_smap_init(&t->vocab, n + 1024) ||
        !tok_ensure_ids(t, (int32_t)n) || !tok_pmap_init(&t->ug_edges, trie_bytes))
        return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
    for (int b = 0; b < 256; b++) t->ug_root[b] = -1;
    t->ug_term[0] = -1;
    int32_t nodes = 1, id = 0;
    double lo = INFINITY;
    char *p = t->strs;
    for (const cJSON *e = vocab->child; e; e = e->next, id++) {
        const char *s = e->child->valuestring;
        size_t l = strlen(s);
        memcpy(p, s, l + 1);
        t->id_str[id] = p;
        t->id_len[id] = (uint32_t)l;
        t->ug_score[id] = e->child->next->valuedouble;
        if (t->ug_score[id] < lo) lo = t->ug_score[id];
        if (!tok_smap_put(&t->vocab, p, l, id) || (l && !trie_add(t, p, l, id, &nodes)))
            return err_set(WICK_ERR_NOMEM, "%s: out of memory", file);
        p += l + 1;
    }
    t->ug_unk_score = lo - 10.0;
    return WICK_OK;
}

static bool push_id(int32_t **ids, size_t *n, size_t *cap, int32_t id) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        int32_t *p = realloc(*ids, nc * sizeof *p);
        if (!p) return false;
        *ids = p;
        *cap = nc;
    }
    (*ids)[(*n)++] = id;
    return true;
}

static bool lattice_reserve(tok_lattice *lat, size_t n) {
    if (n <= lat->cap) return true;
    size_t nc = lat->cap ? lat->cap : 256;
    while (nc < n) nc *= 2;
    double *s = realloc(lat->score, nc * sizeof *s);
    if (s) lat->score = s;
    int32_t *a = realloc(lat->start, nc * sizeof *a);
    if (a) lat->start = a;
    int32_t *b = realloc(lat->id, nc * sizeof *b);
    if (b) lat->id = b;
    int32_t *c = realloc(lat->ends, nc * sizeof *c);
    if (c) lat->ends = c;
    if (!s || !a || !b || !c) return false;
    lat->cap = nc;
    return true;
}

/* Offers the path ending at `end` through piece `id` of score sc (see the rules above). */
static inline void relax(tok_lattice *lat, size_t start, size_t end, int32_t id, double sc) {
    double cand = lat->score[start] + sc;
    if (lat->start[end] < 0 || cand > lat->score[end]) {
        lat->score[end] = cand;
        lat->start[end] = (int32_t)start;
        lat->id[end] = id;
    }
}

/* Ids of a fused run of unknown pieces, the bytes w[a, b). */
static bool emit_unknown(const wick_tokenizer *t, const char *w, size_t a, size_t b,
                         int32_t **ids, size_t *nids, size_t *cap) {
    int32_t id = tok_smap_get(&t->vocab, w + a, b - a);
    if (id >= 0 && id < t->ug_n) return push_id(ids, nids, cap, id);
    if (t->byte_fallback) {
        bool all = true;
        for (size_t k = a; all && k < b; k++) all = t->byte_fallback_id[(unsigned char)w[k]] >= 0;
        if (all) {
            for (size_t k = a; k < b; k++)
                if (!push_id(ids, nids, cap, t->byte_fallback_id[(unsigned char)w[k]])) return false;
            return true;
        }
    }
    return push_id(ids, nids, cap, t->unk_id);
}

bool tok_unigram_word(const wick_tokenizer *t, const char *w, size_t n, tok_lattice *lat,
                      int32_t **ids, size_t *nids, size_t *cap) {
    if (n >= INT32_MAX || !lattice_reserve(lat, n + 1)) return false;
    for (size_t i = 0; i <= n; i++) lat->start[i] = -1;
    lat->start[0] = 0;
    lat->score[0] = 0;
    size_t i = 0;
    while (i < n) {
        size_t adv;
        tok_utf8_decode((const unsigned char *)w + i, n - i, &adv);
        if (!adv) adv = 1;
        bool single = false;
        int32_t node = t->ug_root[(unsigned char)w[i]], child, unused;
        for (size_t k = i + 1; node >= 0; k++) {
            int32_t id = t->ug_term[node];
            if (id >= 0) {
                relax(lat, i, k, id, t->ug_score[id]);
                single = single || k - i == adv;
            }
            if (k >= n || !tok_pmap_get(&t->ug_edges, node, (unsigned char)w[k], &child, &unused)) break;
            node = child;
        }
        if (!single) relax(lat, i, i + adv, t->unk_id, t->ug_unk_score);
        i += adv;
    }
    /* walk back from the end, then read the pieces forwards */
    size_t npieces = 0;
    for (size_t e = n; e > 0; e = (size_t)lat->start[e]) lat->ends[npieces++] = (int32_t)e;
    const int32_t *ends = lat->ends;
    bool ok = true;
    size_t unk_from = SIZE_MAX;  /* start of the pending run of unknown pieces */
    for (size_t k = npieces; ok && k-- > 0;) {
        size_t e = (size_t)ends[k], s = (size_t)lat->start[e];
        if (lat->id[e] == t->unk_id) {
            if (unk_from == SIZE_MAX) unk_from = s;
            continue;
        }
        if (unk_from != SIZE_MAX) ok = emit_unknown(t, w, unk_from, s, ids, nids, cap);
        unk_from = SIZE_MAX;
        ok = ok && push_id(ids, nids, cap, lat->id[e]);
    }
    if (ok && unk_from != SIZE_MAX) ok = emit_unknown(t, w, unk_from, n, ids, nids, cap);
    return ok;
}
