/* tok_encode.c — wick_tokenize and the read-only queries (token strings, ids, specials).
 * Encoding runs the pipeline described in tok_impl.h. Added tokens are matched leftmost, then
 * longest, non-overlapping, with lstrip/rstrip over Unicode whitespace and single_word over
 * Unicode letters/numbers (see added_find). Byte-level split pre-tokenizers take a fast path
 * that cuts words straight from the text (byte_split_regex); everything else goes through
 * tok_pretokenize. Scratch memory is per thread and reused across calls (ctx_get/ctx_put).
 * Not here: pairs of sequences, truncation, padding, offsets. */
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tokenizer/tok_impl.h"

/* The code point ending at s[i) (i > 0) and its length; 0xFFFFFFFF for an invalid byte. */
static uint32_t cp_before(const char *s, size_t from, size_t i, size_t *len) {
    size_t k = i - 1;
    while (k > from && i - k < 4 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    size_t adv;
    uint32_t c = tok_utf8_decode((const unsigned char *)s + k, i - k, &adv);
    if (c == 0xFFFFFFFFu || adv != i - k) {
        *len = 1;
        return 0xFFFFFFFFu;
    }
    *len = adv;
    return c;
}

/* HF's word character for single_word: char::is_alphanumeric() or '_' (letters and numbers;
 * invalid bytes, which HF can never receive, count as non-word). */
static bool word_cp(uint32_t c) {
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    return c != 0xFFFFFFFFu && tok_is_alnum(c);
}

/* One match of an added token in s[from..n): returns false when none. Matching is leftmost,
 * then longest, non-overlapping, like HF's Aho-Corasick scan: a match that single_word rejects
 * is skipped whole and the scan resumes at its end. lstrip/rstrip then widen an accepted match
 * over Unicode whitespace (char::is_whitespace), never back past `from`. */
static bool added_find(const wick_tokenizer *t, int set, const char *s, size_t n, size_t from,
                       size_t *ms, size_t *me, int32_t *id) {
    const int32_t *root = t->am_root[set], *term = t->am_term[set];
    size_t i = from;
    while (i < n) {
        int32_t node = root[(unsigned char)s[i]], unused;
        const tok_added *a = NULL;
        for (size_t k = i + 1; node >= 0; k++) {  /* down the trie: the deepest token wins */
            if (term[node] >= 0) a = &t->added[term[node]];
            if (k == n || !tok_pmap_get(&t->am_edges[set], node, (unsigned char)s[k], &node, &unused))
                break;
        }
        if (!a) {
            i++;
            continue;
        }
        size_t e = i + a->len, cl;
        if (a->single_word) {
            bool left_word = i > 0 && word_cp(cp_before(s, 0, i, &cl));
            bool right_word = e < n && word_cp(tok_utf8_decode((const unsigned char *)s + e, n - e, &cl));
            if (left_word || right_word) {
                i = e;
                continue;
            }
        }
        size_t st = i;
        if (a->lstrip)
            while (st > from && tok_is_ws(cp_before(s, from, st, &cl))) st -= cl;
        if (a->rstrip)
            while (e < n && tok_is_ws(tok_utf8_decode((const unsigned char *)s + e, n - e, &cl))) e += cl;
        *ms = st;
        *me = e;
        *id = a->id;
        return true;
    }
    return false;
}

/* Word cache: a word seen before reuses its ids. It lives in the per-thread encoding context
 * (see ctx_get), not in the tokenizer, so a shared tokenizer needs no locks; it holds at most
 * WC_CAP / 2 words and is cleared when full or when the thread switches tokenizer. */
typedef struct wc_ent {
    uint64_t h;               /* 0: empty */
    uint32_t koff, klen, ioff, ilen;
} wc_ent;
typedef struct wcache {
    wc_ent *e;
    size_t cap, n;
    tok_buf keys;
    int32_t *ids;
    size_t nids, capids;
} wcache;

/* keyed (tok_smap_hash): the words come from the text being encoded */
static uint64_t wc_hash(const char *s, size_t n) { return tok_smap_hash(s, n) | 1; }

static wc_ent *wc_find(wcache *c, const char *s, size_t n, uint64_t h) {
    size_t mask = c->cap - 1, i = h & mask;
    while (c->e[i].h) {
        if (c->e[i].h == h && c->e[i].klen == n && memcmp(c->keys.p + c->e[i].koff, s, n) == 0)
            return &c->e[i];
        i = (i + 1) & mask;
    }
    return &c->e[i];
}

typedef struct enc_ctx {
    const wick_tokenizer *t;
    uint64_t serial;           /* load serial of the tokenizer the word cache belongs to */
    wcache wc;
    tok_pieces a, b;
    tok_scratch *sc;
    pcre2_match_data *md;
    tok_buf norm;
    tok_buf mapped;            /* byte-level image of the current word (fast path) */
    bool norm_over;            /* the call failed because normalizing passed TOK_NORM_MAX */
    int32_t *ids;
    size_t n, cap;
} enc_ctx;

static bool push(enc_ctx *c, int32_t id) {
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 256;
        int32_t *p = realloc(c->ids, nc * sizeof *p);
        if (!p) return false;
        c->ids = p;
        c->cap = nc;
    }
    c->ids[c->n++] = id;
    return true;
}

/* Encodes one word: from the word cache when `key` was seen before in this call, else through
 * the model. With map_bytes the model input is the GPT-2 byte-level image of key (built only
 * on a miss), otherwise key itself. */
static bool encode_word(enc_ctx *c, const char *key, size_t kl, bool map_bytes) {
    wcache *wc = &c->wc;
    wc_ent *e = NULL;
    uint64_t h = 0;
    if (kl <= 48 && wc->e) {
        h = wc_hash(key, kl);
        e = wc_find(wc, key, kl, h);
        if (e->h) {
            if (c->n + e->ilen > c->cap) {
                size_t nc = (c->cap ? c->cap * 2 : 256) + e->ilen;
                int32_t *p = realloc(c->ids, nc * sizeof *p);
                if (!p) return false;
                c->ids = p;
                c->cap = nc;
            }
            if (e->ilen)  /* a word of no ids: both arrays may still be NULL (NULL + 0 is UB) */
                memcpy(c->ids + c->n, wc->ids + e->ioff, e->ilen * sizeof(int32_t));
            c->n += e->ilen;
            return true;
        }
    }
    const char *w = key;
    size_t wl = kl;
    if (map_bytes) {  /* byte-level code points are < 0x144: one or two UTF-8 bytes each */
        c->mapped.len = 0;
        if (!tok_buf_reserve(&c->mapped, 2 * kl)) return false;
        char *o = c->mapped.p;
        for (size_t i = 0; i < kl; i++) {
            uint32_t cp = tok_byte_to_cp[(unsigned char)key[i]];
            if (cp < 0x80) {
                *o++ = (char)cp;
            } else {
                *o++ = (char)(0xC0 | (cp >> 6));
                *o++ = (char)(0x80 | (cp & 0x3F));
            }
        }
        w = c->mapped.p;
        wl = (size_t)(o - c->mapped.p);
    }
    size_t before = c->n;
    if (!tok_model_word(c->t, w, wl, c->sc, &c->ids, &c->n, &c->cap)) return false;
    if (e && wc->n * 2 < wc->cap) {  /* remember it; a full cache simply stops growing */
        size_t k = c->n - before;
        if (wc->nids + k > wc->capids) {
            size_t nc = (wc->capids ? wc->capids * 2 : 4096) + k;
            int32_t *p = realloc(wc->ids, nc * sizeof *p);
            if (!p) return false;
            wc->ids = p;
            wc->capids = nc;
        }
        if (k) memcpy(wc->ids + wc->nids, c->ids + before, k * sizeof(int32_t));
        e->h = h;
        e->koff = (uint32_t)wc->keys.len;
        e->klen = (uint32_t)kl;
        e->ioff = (uint32_t)wc->nids;
        e->ilen = (uint32_t)k;
        wc->nids += k;
        wc->n++;
        if (!tok_buf_put(&wc->keys, key, kl)) return false;
    }
    return true;
}

/* The regex of a byte-level pre-tokenizer whose words are exactly the regex matches and the
 * gaps between them (Split Isolated + ByteLevel without its own regex, as Qwen2/3, Llama 3 and
 * GPT-4-style tokenizers have, or a lone ByteLevel with use_regex); NULL for anything else.
 * Such words are cut straight from the text and byte-mapped only when not in the cache. */
static const tok_regex *byte_split_regex(const tok_pre *p) {
    if (!p) return NULL;
    if (p->kind == PRE_BYTELEVEL && p->use_regex && !p->add_prefix_space) return &p->re;
    if (p->kind == PRE_SEQ && p->nsub == 2 && p->sub[0].kind == PRE_SPLIT &&
        p->sub[0].behavior == SPLIT_ISOLATED && !p->sub[0].invert &&
        p->sub[1].kind == PRE_BYTELEVEL && !p->sub[1].use_regex && !p->sub[1].add_prefix_space)
        return &p->sub[0].re;
    return NULL;
}

/* Pre-tokenizes and encodes one normalized text segment. */
static bool encode_plain(enc_ctx *c, const char *s, size_t n, bool first) {
    if (!n) return true;
    const wick_tokenizer *t = c->t;
    const tok_regex *bre = byte_split_regex(t->pre);
    if (bre) {
        size_t i = 0, ms, me;
        while (tok_regex_next(bre, c->md, s, n, i, &ms, &me)) {
            if ((ms > i && !encode_word(c, s + i, ms - i, true)) || !encode_word(c, s + ms, me - ms, true))
                return false;
            i = me;
        }
        if (tok_regex_failed()) return false;
        return i == n || encode_word(c, s + i, n - i, true);
    }
    tok_pieces_clear(&c->a);
    if (!tok_pieces_add(&c->a, s, n, first)) return false;
    tok_pieces *words = &c->a;
    if (t->pre) {
        if (!tok_pretokenize(t->pre, &c->a, &c->b, c->md)) return false;
        words = &c->b;
    }
    for (size_t i = 0; i < words->n; i++)
        if (!encode_word(c, words->text.p + words->off[i], words->len[i], false)) return false;
    return true;
}

/* Normalizes a raw segment, then splits it on normalized added tokens. */
static bool encode_segment(enc_ctx *c, const char *s, size_t n, bool first) {
    const wick_tokenizer *t = c->t;
    if (!n) return true;
    const char *ns = s;
    size_t nn = n;
    tok_buf *nb = &c->norm;  /* reused: segments are encoded one after another */
    if (t->norm) {
        nb->len = 0;
        if (!tok_normalize(t->norm, s, n, nb, TOK_NORM_MAX(n), &c->norm_over)) return false;
        ns = nb->p ? nb->p : "";
        nn = nb->len;
    }
    bool ok = true;
    size_t pos = 0, ms, me;
    int32_t id;
    while (ok && t->has_added[1] && added_find(t, 1, ns, nn, pos, &ms, &me, &id)) {
        ok = encode_plain(c, ns + pos, ms - pos, first && pos == 0) && push(c, id);
        pos = me;
    }
    return ok && encode_plain(c, ns + pos, nn - pos, first && pos == 0);
}

/* ---- per-thread encoding context ----
 * Buffers, PCRE2 match data and the word cache live in one context per thread, reused by the
 * next wick_tokenize on that thread, so short calls allocate nothing and repeated words stay
 * cached across calls. The word cache belongs to one tokenizer, named by its load serial (never
 * reused, unlike an address); another tokenizer clears it. Buffers that grew past
 * CTX_KEEP_BYTES are freed after the call so one huge text does not pin memory. The context is
 * freed when its thread exits (pthread key destructor). */
enum { WC_CAP = 1 << 15, CTX_KEEP_BYTES = 4 << 20 };

static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;
static bool ctx_key_ok;
static _Thread_local enc_ctx *tl_ctx;

static void ctx_free(enc_ctx *c) {
    if (!c) return;
    free(c->ids);
    free(c->wc.e);
    free(c->wc.ids);
    tok_buf_free(&c->wc.keys);
    tok_buf_free(&c->mapped);
    tok_buf_free(&c->norm);
    tok_pieces_free(&c->a);
    tok_pieces_free(&c->b);
    tok_scratch_free(c->sc);
    if (c->md) pcre2_match_data_free(c->md);
    free(c);
}

static void ctx_destroy(void *p) {
    if (tl_ctx == p) tl_ctx = NULL;
    ctx_free(p);
}

static void ctx_key_init(void) { ctx_key_ok = pthread_key_create(&ctx_key, ctx_destroy) == 0; }

static void wc_clear(wcache *wc) {
    if (wc->e && wc->n) memset(wc->e, 0, wc->cap * sizeof *wc->e);
    wc->n = 0;
    wc->nids = 0;
    wc->keys.len = 0;
}

static enc_ctx *ctx_get(const wick_tokenizer *t) {
    enc_ctx *c = tl_ctx;
    tl_ctx = NULL;  /* taken; given back by ctx_put */
    if (!c) {
        pthread_once(&ctx_once, ctx_key_init);
        c = calloc(1, sizeof *c);
        if (!c) return NULL;
        c->sc = tok_scratch_new();
        c->md = pcre2_match_data_create(32, NULL);
        c->wc.cap = WC_CAP;
        c->wc.e = calloc(WC_CAP, sizeof *c->wc.e);
        if (!c->sc || !c->md || !c->wc.e) {
            ctx_free(c);
            return NULL;
        }
        if (ctx_key_ok) pthread_setspecific(ctx_key, c);
    }
    if (c->serial != t->serial || c->wc.n * 2 >= c->wc.cap) {  /* other tokenizer, or full */
        wc_clear(&c->wc);
        c->serial = t->serial;
    }
    c->t = t;
    c->n = 0;
    c->norm_over = false;
    return c;
}

static void ctx_put(enc_ctx *c, bool ok) {
    if (!ok) wc_clear(&c->wc);  /* a failed call may have left a half-written entry */
    if (c->cap * sizeof(int32_t) > CTX_KEEP_BYTES) {
        free(c->ids);
        c->ids = NULL;
        c->cap = 0;
    }
    tok_buf *bufs[] = {&c->mapped, &c->norm, &c->a.text, &c->b.text};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i]->cap > CTX_KEEP_BYTES) tok_buf_free(bufs[i]);
    if (c->a.cap > CTX_KEEP_BYTES / 8) tok_pieces_free(&c->a);
    if (c->b.cap > CTX_KEEP_BYTES / 8) tok_pieces_free(&c->b);
    tl_ctx = c;
}

int32_t wick_tokenize(const wick_tokenizer *t, const char *text, size_t len, bool add_special,
                      int32_t *ids, int32_t cap) {
    if (!t || (!text && len) || cap < 0 || (!ids && cap > 0)) {
        err_set(WICK_ERR_INVALID_ARG, "wick_tokenize: NULL tokenizer/text/ids or negative cap");
        return INT32_MIN;
    }
    if (len > WICK_TOKENIZE_MAX_BYTES) {
        err_set(WICK_ERR_INVALID_ARG, "wick_tokenize: text of %zu bytes is longer than "
                "WICK_TOKENIZE_MAX_BYTES (%zu)", len, WICK_TOKENIZE_MAX_BYTES);
        return INT32_MIN;
    }
    if (!text) text = "";
    enc_ctx *c = ctx_get(t);
    if (!c) {
        err_set(WICK_ERR_NOMEM, "wick_tokenize: out of memory");
        return INT32_MIN;
    }
    bool ok = true;
    tok_regex_clear();
    if (add_special)
        for (int i = 0; ok && i < t->post.npre; i++) ok = push(c, t->post.pre[i]);
    size_t pos = 0, ms, me;
    int32_t id;
    while (ok && t->has_added[0] && added_find(t, 0, text, len, pos, &ms, &me, &id)) {
        ok = encode_segment(c, text + pos, ms - pos, pos == 0) && push(c, id);
        pos = me;
    }
    ok = ok && encode_segment(c, text + pos, len - pos, pos == 0);
    if (ok && add_special)
        for (int i = 0; ok && i < t->post.npost; i++) ok = push(c, t->post.post[i]);
    int32_t ret;
    if (!ok && tok_regex_failed()) {
        tok_regex_error("wick_tokenize");
        ret = INT32_MIN;
    } else if (!ok && c->norm_over) {
        err_set(WICK_ERR_FORMAT, "wick_tokenize: the tokenizer's normalizer makes the text more "
                "than 64 times longer (a hostile tokenizer.json?)");
        ret = INT32_MIN;
    } else if (!ok) {
        err_set(WICK_ERR_NOMEM, "wick_tokenize: out of memory");
        ret = INT32_MIN;
    } else if (c->n > (size_t)INT32_MAX) {  /* the count would not fit the return value */
        err_set(WICK_ERR_INVALID_ARG, "wick_tokenize: the text gives %zu ids, more than INT32_MAX", c->n);
        ret = INT32_MIN;
    } else if (c->n > (size_t)cap) {
        if (cap) memcpy(ids, c->ids, (size_t)cap * sizeof *ids);
        ret = -(int32_t)c->n;
    } else {
        if (c->n) memcpy(ids, c->ids, c->n * sizeof *ids);
        ret = (int32_t)c->n;
    }
    ctx_put(c, ok);
    return ret;
}

const char *wick_token_str(const wick_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_ids) return NULL;
    return t->id_str[id];
}

int32_t wick_token_id(const wick_tokenizer *t, const char *str) {
    if (!t || !str) return -1;
    return tok_smap_get(&t->vocab, str, strlen(str));
}

int32_t wick_tokenizer_vocab_size(const wick_tokenizer *t) { return t ? t->n_ids : 0; }

int32_t wick_tokenizer_special(const wick_tokenizer *t, wick_special which) {
    if (!t || (int)which < 0 || (int)which >= 7) return -1;
    return t->specials[which];
}

bool wick_token_is_special(const wick_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_ids && t->is_special[id];
}

const char *tokenizer_chat_template(const wick_tokenizer *t) { return t ? t->chat_template : NULL; }

const char *tokenizer_special_str(const wick_tokenizer *t, const char *key) {
    static const char *keys[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    if (!t || !key) return NULL;
    for (int i = 0; i < 4; i++)
        if (strcmp(key, keys[i]) == 0) return t->cfg_special[i];
    return NULL;
}
