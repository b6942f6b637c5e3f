/* tok_model.c — the models that turn one pre-tokenized word into ids.
 * BPE: symbols in a doubly linked list, candidate pairs in a binary min-heap ordered by
 * (merge rank, position), so a word of n symbols costs O(n log n), never O(n^2); stale heap
 * entries are detected on pop. Supports byte_fallback, fuse_unk, ignore_merges,
 * continuing_subword_prefix and end_of_word_suffix. WordPiece: greedy longest-match-first,
 * trying no candidate longer than the longest vocabulary string (same result; without it a
 * word of n characters cost O(n³) when max_input_chars_per_word lets it through).
 * WordLevel: the whole word is one vocabulary entry, or unk. Unigram is in tok_unigram.c.
 * Not here: BPE dropout (always off for inference). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_impl.h"

typedef struct sym {
    int32_t id, prev, next;  /* prev/next: index of neighbour or -1; id -1: merged away */
} sym;
typedef struct cand {
    int32_t rank, pos, left, right;
} cand;

struct tok_scratch {
    sym *s;
    size_t ns, caps;
    cand *h;
    size_t nh, caph;
    tok_buf tmp;
    tok_lattice lat;           /* Unigram */
};

tok_scratch *tok_scratch_new(void) { return calloc(1, sizeof(tok_scratch)); }

void tok_scratch_free(tok_scratch *s) {
    if (!s) return;
    free(s->s);
    free(s->h);
    tok_buf_free(&s->tmp);
    free(s->lat.score);
    free(s->lat.start);
    free(s->lat.id);
    free(s->lat.ends);
    free(s);
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

static bool sym_push(tok_scratch *sc, int32_t id) {
    if (sc->ns == sc->caps) {
        size_t nc = sc->caps ? sc->caps * 2 : 64;
        sym *p = realloc(sc->s, nc * sizeof *p);
        if (!p) return false;
        sc->s = p;
        sc->caps = nc;
    }
    int32_t i = (int32_t)sc->ns;
    sc->s[i] = (sym){id, i - 1, -1};
    if (i > 0) sc->s[i - 1].next = i;
    sc->ns++;
    return true;
}

static inline bool cand_less(const cand *a, const cand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static bool heap_push(tok_scratch *sc, cand c) {
    if (sc->nh == sc->caph) {
        size_t nc = sc->caph ? sc->caph * 2 : 64;
        cand *p = realloc(sc->h, nc * sizeof *p);
        if (!p) return false;
        sc->h = p;
        sc->caph = nc;
    }
    size_t i = sc->nh++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!cand_less(&c, &sc->h[up])) break;
        sc->h[i] = sc->h[up];
        i = up;
    }
    sc->h[i] = c;
    return true;
}

static cand heap_pop(tok_scratch *sc) {
    cand top = sc->h[0], last = sc->h[--sc->nh];
    size_t i = 0, n = sc->nh;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < n && cand_less(&sc->h[l], best)) {
            m = l;
            best = &sc->h[l];
        }
        if (r < n && cand_less(&sc->h[r], best)) m = r;
        if (m == i) break;
        sc->h[i] = sc->h[m];
        i = m;
    }
    if (n) sc->h[i] = last;
    return top;
}

static bool try_pair(const wick_tokenizer *t, tok_scratch *sc, int32_t pos) {
    int32_t nx = sc->s[pos].next;
    if (nx < 0) return true;
    int32_t rank, merged;
    if (!tok_pmap_get(&t->merges, sc->s[pos].id, sc->s[nx].id, &rank, &merged)) return true;
    return heap_push(sc, (cand){rank, pos, sc->s[pos].id, sc->s[nx].id});
}

/* Initial symbols of a BPE word: one per character, with unknown characters mapped to
 * byte-fallback tokens or unk (fused when fuse_unk) or dropped when there is no unk. */
static bool bpe_symbols(const wick_tokenizer *t, const char *w, size_t n, tok_scratch *sc) {
    size_t pl = t->cont_prefix ? strlen(t->cont_prefix) : 0;
    size_t sl = t->eow_suffix ? strlen(t->eow_suffix) : 0;
    bool plain = !pl && !sl;
    size_t i = 0;
    while (i < n) {
        size_t adv;
        uint32_t cp = tok_utf8_decode((const unsigned char *)w + i, n - i, &adv);
        int32_t id = -1;
        if (plain && cp < 512) {
            id = t->cp_id[cp];
        } else if (plain) {
            id = tok_smap_get(&t->vocab, w + i, adv);
        } else {
            sc->tmp.len = 0;
            if ((i > 0 && !tok_buf_put(&sc->tmp, t->cont_prefix, pl)) ||
                !tok_buf_put(&sc->tmp, w + i, adv) ||
                (i + adv == n && !tok_buf_put(&sc->tmp, t->eow_suffix, sl)))
                return false;
            id = tok_smap_get(&t->vocab, sc->tmp.p, sc->tmp.len);
        }
        if (id < 0 && t->byte_fallback) {
            bool all = true;
            for (size_t k = 0; k < adv; k++) all = all && t->byte_fallback_id[(unsigned char)w[i + k]] >= 0;
            if (all) {
                for (size_t k = 0; k < adv; k++)
                    if (!sym_push(sc, t->byte_fallback_id[(unsigned char)w[i + k]])) return false;
                i += adv;
                continue;
            }
        }
        if (id < 0) {
            if (t->unk_id >= 0) {
                bool fuse = t->fuse_unk && sc->ns && sc->s[sc->ns - 1].id == t->unk_id;
                if (!fuse && !sym_push(sc, t->unk_id)) return false;
            }
        } else if (!sym_push(sc, id)) {
            return false;
        }
        i += adv;
    }
    return true;
}

static bool bpe_word(const wick_tokenizer *t, const char *w, size_t n, tok_scratch *sc,
                     int32_t **ids, size_t *nids, size_t *cap) {
    if (t->ignore_merges) {
        int32_t id = tok_smap_get(&t->vocab, w, n);
        if (id >= 0) return push_id(ids, nids, cap, id);
    }
    sc->ns = 0;
    sc->nh = 0;
    if (!bpe_symbols(t, w, n, sc)) return false;
    for (int32_t i = 0; i + 1 < (int32_t)sc->ns; i++)
        if (!try_pair(t, sc, i)) return false;
    while (sc->nh) {
        cand c = heap_pop(sc);
        sym *L = &sc->s[c.pos];
        if (L->id != c.left || L->next < 0 || sc->s[L->next].id != c.right) continue;  /* stale */
        int32_t rank, merged;
        tok_pmap_get(&t->merges, c.left, c.right, &rank, &merged);
        int32_t r = L->next;
        L->id = merged;
        L->next = sc->s[r].next;
        if (L->next >= 0) sc->s[L->next].prev = c.pos;
        sc->s[r].id = -1;
        if (L->prev >= 0 && !try_pair(t, sc, L->prev)) return false;
        if (!try_pair(t, sc, c.pos)) return false;
    }
    for (int32_t i = sc->ns ? 0 : -1; i >= 0; i = sc->s[i].next)
        if (!push_id(ids, nids, cap, sc->s[i].id)) return false;
    return true;
}

static bool wordpiece_word(const wick_tokenizer *t, const char *w, size_t n, tok_scratch *sc,
                           int32_t **ids, size_t *nids, size_t *cap) {
    size_t nchars = 0;
    for (size_t i = 0; i < n; i++) nchars += ((unsigned char)w[i] & 0xC0) != 0x80;
    size_t start_n = *nids;
    if ((int)nchars > t->wp_max_chars) return push_id(ids, nids, cap, t->unk_id);
    size_t pl = strlen(t->wp_prefix), start = 0;
    while (start < n) {
        size_t used = start > 0 ? pl : 0;  /* the prefix's part of a candidate */
        size_t room = t->max_tok_len > used ? t->max_tok_len - used : 0;
        size_t end = n - start > room ? start + room : n;
        while (end > start && end < n && ((unsigned char)w[end] & 0xC0) == 0x80) end--;
        int32_t found = -1;
        while (end > start) {
            sc->tmp.len = 0;
            if ((start > 0 && !tok_buf_put(&sc->tmp, t->wp_prefix, pl)) ||
                !tok_buf_put(&sc->tmp, w + start, end - start))
                return false;
            found = tok_smap_get(&t->vocab, sc->tmp.p, sc->tmp.len);
            if (found >= 0) break;
            end--;
            while (end > start && ((unsigned char)w[end] & 0xC0) == 0x80) end--;
        }
        if (found < 0) {  /* the whole word becomes unk */
            *nids = start_n;
            return push_id(ids, nids, cap, t->unk_id);
        }
        if (!push_id(ids, nids, cap, found)) return false;
        start = end;
    }
    return true;
}

bool tok_model_word(const wick_tokenizer *t, const char *w, size_t n, tok_scratch *sc,
                    int32_t **ids, size_t *nids, size_t *cap) {
    if (!n) return true;
    switch (t->model) {
    case MODEL_WORDPIECE: return wordpiece_word(t, w, n, sc, ids, nids, cap);
    case MODEL_UNIGRAM: return tok_unigram_word(t, w, n, &sc->lat, ids, nids, cap);
    case MODEL_WORDLEVEL: {
        /* HF fails the whole encode on an unknown word without unk_token; wick drops it */
        int32_t id = tok_smap_get(&t->vocab, w, n);
        if (id < 0) id = t->unk_id;
        return id < 0 || push_id(ids, nids, cap, id);
    }
    case MODEL_BPE: break;
    }
    return bpe_word(t, w, n, sc, ids, nids, cap);
}
