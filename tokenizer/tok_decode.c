/* tok_decode.c — decoders and detokenization. The decoder chain of tokenizer.json is run as a
 * streaming machine: each id's string flows through the stages (Replace, ByteLevel, Metaspace,
 * ByteFallback, Fuse, Strip, WordPiece, BPEDecoder) and the resulting bytes pass a UTF-8
 * assembler that emits complete characters and turns invalid sequences into U+FFFD exactly like
 * Rust's String::from_utf8_lossy (one U+FFFD per maximal invalid subpart). Batch
 * wick_detokenize is the same machine fed all ids, so streaming == batch by construction, and
 * each push costs O(token length) plus whatever a stage legitimately holds back (a run of
 * <0xNN> byte tokens, a trailing Strip character, an incomplete UTF-8 character). Replace is
 * the one stage that can grow text without bound (a chain of them, exponentially), so each
 * Replace stage may write at most DEC_GROWTH bytes per byte of the token strings pushed so far
 * (plus DEC_SLACK); real decoders shrink text.
 * Deliberate simplification: stages after Fuse (or after ByteLevel, which HF also fuses) see
 * the stream as one token: "first token" rules apply to the start of the stream. */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tokenizer/tok_impl.h"

enum { DEC_GROWTH = 64, DEC_SLACK = 4096 };

typedef struct stage_state {
    int64_t index;        /* tokens seen by this stage */
    uint64_t written;     /* Replace: bytes written since the reset (see DEC_GROWTH) */
    bool fused;           /* a Fuse/ByteLevel stage precedes: the stream is one token */
    bool seen_data;       /* fused: some non-empty text has passed */
    int strip_left;       /* fused Strip: leading chars still to strip */
    int64_t held;         /* fused Strip: trailing content chars held back */
    tok_buf pend;         /* ByteFallback: pending bytes; BPEDecoder: previous token */
    int npend;
    tok_buf tmp;
} stage_state;

struct wick_detok {
    const wick_tokenizer *t;
    bool skip_special;
    bool raw;             /* tok_vocab_bytes: bytes as the stages give them, no UTF-8 assembly */
    stage_state *st;      /* one per decoder stage */
    int64_t ntok;         /* tokens pushed (for the no-decoder join) */
    uint64_t in_bytes;    /* bytes of the token strings pushed since the reset */
    int over;             /* 1 + the Replace stage that passed its DEC_GROWTH budget, or 0 */
    tok_buf hold;         /* bytes of an incomplete UTF-8 character */
    tok_buf out;          /* text completed by the current call */
};

void tok_dec_free_list(tok_dec *d, int n) {
    for (int i = 0; d && i < n; i++) {
        free(d[i].str);
        free(d[i].str2);
        tok_regex_free(&d[i].re);
    }
}

/* ---- the UTF-8 assembler (final stage) ---- */

/* At s[0..n): 1..4 = a valid character's length; 0 = an incomplete but possibly valid prefix;
 * negative = invalid, -k = length of the maximal invalid subpart. */
static int utf8_class(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int L;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) L = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        L = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        L = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return -1;
    for (int k = 1; k < L; k++) {
        if ((size_t)k >= n) return 0;
        unsigned b = s[k];
        bool ok = k == 1 ? (b >= lo && b <= hi) : (b & 0xC0) == 0x80;
        if (!ok) return -k;
    }
    return L;
}

static bool emit_bytes(wick_detok *d, const char *s, size_t n, bool final) {
    if (d->raw) return tok_buf_put(&d->out, s, n);
    tok_buf *h = &d->hold;
    if (!tok_buf_put(h, s, n)) return false;
    size_t i = 0;
    while (i < h->len) {
        int c = utf8_class((const unsigned char *)h->p + i, h->len - i);
        if (c > 0) {
            if (!tok_buf_put(&d->out, h->p + i, (size_t)c)) return false;
            i += (size_t)c;
        } else if (c < 0 || final) {
            if (!tok_buf_put(&d->out, "\xEF\xBF\xBD", 3)) return false;
            i += c < 0 ? (size_t)-c : h->len - i;
        } else {
            break;
        }
    }
    memmove(h->p, h->p + i, h->len - i);
    h->len -= i;
    return true;
}

/* ---- stages ---- */
static bool stage_push(wick_detok *d, int si, const char *s, size_t n);

static bool next(wick_detok *d, int si, const char *s, size_t n) {
    if (si + 1 >= d->t->ndec) return emit_bytes(d, s, n, false);
    return stage_push(d, si + 1, s, n);
}

static bool parse_byte_token(const char *s, size_t n, unsigned char *b) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return false;
    unsigned v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int x = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (x < 0) return false;
        v = v * 16 + (unsigned)x;
    }
    *b = (unsigned char)v;
    return true;
}

/* ByteFallback: a completed run of byte tokens becomes its UTF-8 text when valid, else one
 * U+FFFD per byte token (HF's rule). */
static bool bytefallback_release(wick_detok *d, int si) {
    stage_state *ss = &d->st[si];
    if (!ss->npend) return true;
    bool valid = true;
    for (size_t i = 0; i < ss->pend.len && valid;) {
        size_t l = tok_utf8_valid_len((const unsigned char *)ss->pend.p + i, ss->pend.len - i);
        valid = l > 0;
        i += l;
    }
    if (d->raw) valid = true; /* tok_vocab_bytes: the bytes themselves */
    ss->tmp.len = 0;
    bool ok = valid ? tok_buf_put(&ss->tmp, ss->pend.p, ss->pend.len) : true;
    for (int k = 0; ok && !valid && k < ss->npend; k++) ok = tok_buf_put(&ss->tmp, "\xEF\xBF\xBD", 3);
    ss->pend.len = 0;
    ss->npend = 0;
    /* tmp may be reused by deeper stages of other indices only, so pass a copy-free pointer */
    return ok && next(d, si, ss->tmp.p ? ss->tmp.p : "", ss->tmp.len);
}

/* Appends a + b to o unless o would pass max bytes (then *over). */
static bool put2(tok_buf *o, const char *a, size_t al, const char *b, size_t bl, size_t max,
                 bool *over) {
    if (al + bl > max || o->len > max - al - bl) {
        *over = true;
        return false;
    }
    return tok_buf_put(o, a, al) && tok_buf_put(o, b, bl);
}

/* Replaces every match of dc's pattern in s by dc->str2, into o (at most max bytes). */
static bool replace_all(tok_buf *o, const tok_dec *dc, const char *s, size_t n, size_t max,
                        bool *over) {
    size_t wl = strlen(dc->str2);
    if (dc->re.code) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(dc->re.code, NULL);
        if (!md) return false;
        size_t i = 0, ms, me;
        bool ok = true;
        while (ok && tok_regex_next(&dc->re, md, s, n, i, &ms, &me)) {
            ok = put2(o, s + i, ms - i, dc->str2, wl, max, over);
            i = me;
        }
        pcre2_match_data_free(md);
        return ok && !tok_regex_failed() && put2(o, s + i, n - i, "", 0, max, over);
    }
    size_t pl = strlen(dc->str), i = 0;
    if (!pl) return put2(o, s, n, "", 0, max, over);
    while (i < n) {
        const char *hit = pl <= n - i ? memmem(s + i, n - i, dc->str, pl) : NULL;
        if (!hit) return put2(o, s + i, n - i, "", 0, max, over);
        size_t h = (size_t)(hit - s);
        if (!put2(o, s + i, h - i, dc->str2, wl, max, over)) return false;
        i = h + pl;
    }
    return true;
}

static bool wp_cleanup(tok_buf *o, const char *s, size_t n) {
    static const char *from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " do not", " 's", " 've", " 're"};
    static const char *to[] = {".", "?", "!", ",", "'", "n't", "'m", " don't", "'s", "'ve", "'re"};
    tok_buf a = {0}, b = {0};
    bool ok = tok_buf_put(&a, s, n), over = false;  /* these replacements never grow text */
    for (int r = 0; ok && r < 11; r++) {
        tok_dec tmp = {.str = (char *)from[r], .str2 = (char *)to[r]};
        b.len = 0;
        ok = replace_all(&b, &tmp, a.p, a.len, SIZE_MAX, &over) && tok_buf_reserve(&b, 0);
        tok_buf t = a;
        a = b;
        b = t;
    }
    ok = ok && tok_buf_put(o, a.p, a.len);
    tok_buf_free(&a);
    tok_buf_free(&b);
    return ok;
}

static bool stage_push(wick_detok *d, int si, const char *s, size_t n) {
    const tok_dec *dc = &d->t->dec[si];
    stage_state *ss = &d->st[si];
    bool first = ss->fused ? !ss->seen_data : ss->index == 0;
    if (n) ss->seen_data = true;
    ss->index++;
    tok_buf *o = &ss->tmp;
    o->len = 0;
    switch (dc->kind) {
    case DEC_BYTEFALLBACK: {
        unsigned char b;
        if (parse_byte_token(s, n, &b)) {
            ss->npend++;
            return tok_buf_putc(&ss->pend, (char)b);
        }
        if (!bytefallback_release(d, si)) return false;
        return next(d, si, s, n);
    }
    case DEC_FUSE: return next(d, si, s, n);
    case DEC_REPLACE: {
        uint64_t budget = DEC_GROWTH * d->in_bytes + DEC_SLACK;
        bool over = false;
        if (!replace_all(o, dc, s, n, budget > ss->written ? budget - ss->written : 0, &over)) {
            if (over) d->over = si + 1;
            return false;
        }
        ss->written += o->len;
        break;
    }
    case DEC_BYTELEVEL: {
        /* every char maps back to a byte, else the token's own UTF-8 bytes are kept */
        bool all = true;
        for (size_t i = 0; i < n && all;) {
            size_t adv;
            uint32_t cp = tok_utf8_decode((const unsigned char *)s + i, n - i, &adv);
            int b = cp < 324 ? tok_cp_to_byte[cp] : -1;
            if (b < 0) all = false;
            else if (!tok_buf_putc(o, (char)b)) return false;
            i += adv;
        }
        if (!all) {
            o->len = 0;
            if (!tok_buf_put(o, s, n)) return false;
        }
        break;
    }
    case DEC_METASPACE: {
        size_t rl = strlen(dc->repl);
        bool drop = first && dc->prepend != PREPEND_NEVER;
        for (size_t i = 0; i < n;) {
            if (rl && i + rl <= n && memcmp(s + i, dc->repl, rl) == 0) {
                if (!drop && !tok_buf_putc(o, ' ')) return false;
                i += rl;
            } else {
                if (!tok_buf_putc(o, s[i])) return false;
                i++;
            }
        }
        break;
    }
    case DEC_STRIP: {
        char cu[4];
        size_t cl = tok_utf8_encode(dc->content, cu), a = 0, e = n;
        int left = ss->fused ? ss->strip_left : dc->start;
        while (left > 0 && e - a >= cl && memcmp(s + a, cu, cl) == 0) {
            a += cl;
            left--;
        }
        if (ss->fused) {
            if (a < n) ss->strip_left = 0;
            else ss->strip_left = left;
            /* hold trailing content chars back; release them when other text follows */
            size_t t = e;
            int64_t tr = 0;
            while (t - a >= cl && t > a && memcmp(s + t - cl, cu, cl) == 0) {
                t -= cl;
                tr++;
            }
            if (t > a) {
                for (int64_t k = 0; k < ss->held; k++)
                    if (!tok_buf_put(o, cu, cl)) return false;
                ss->held = 0;
                if (!tok_buf_put(o, s + a, t - a)) return false;
            }
            ss->held += tr;
        } else {
            int right = dc->stop;
            while (right > 0 && e - a >= cl && memcmp(s + e - cl, cu, cl) == 0) {
                e -= cl;
                right--;
            }
            if (!tok_buf_put(o, s + a, e - a)) return false;
        }
        break;
    }
    case DEC_WORDPIECE: {
        size_t pl = strlen(dc->str);
        tok_buf t1 = {0};
        bool ok = true;
        if (!first) {
            if (n >= pl && memcmp(s, dc->str, pl) == 0) ok = tok_buf_put(&t1, s + pl, n - pl);
            else ok = tok_buf_putc(&t1, ' ') && tok_buf_put(&t1, s, n);
        } else ok = tok_buf_put(&t1, s, n);
        ok = ok && (dc->cleanup ? wp_cleanup(o, t1.p, t1.len) : tok_buf_put(o, t1.p, t1.len));
        tok_buf_free(&t1);
        if (!ok) return false;
        break;
    }
    case DEC_BPE_SUFFIX: {
        /* the suffix becomes " " except in the last token: hold one token back */
        tok_dec rep = {.str = dc->str, .str2 = " "};
        bool over = false;  /* the suffix becomes one space: never longer */
        if (ss->index > 1 && !replace_all(o, &rep, ss->pend.p ? ss->pend.p : "", ss->pend.len, SIZE_MAX, &over))
            return false;
        ss->pend.len = 0;
        if (!tok_buf_put(&ss->pend, s, n)) return false;
        break;
    }
    }
    /* deeper stages use their own buffers, so o stays valid during the call */
    return next(d, si, o->p ? o->p : "", o->len);
}

static bool stage_flush(wick_detok *d, int si) {
    if (si >= d->t->ndec) return true;
    const tok_dec *dc = &d->t->dec[si];
    stage_state *ss = &d->st[si];
    if (dc->kind == DEC_BYTEFALLBACK && !bytefallback_release(d, si)) return false;
    if (dc->kind == DEC_STRIP && ss->fused) {
        char cu[4];
        size_t cl = tok_utf8_encode(dc->content, cu);
        ss->tmp.len = 0;
        for (int64_t k = 0; k < ss->held - dc->stop; k++)  /* stop: 0..1024 (tok_components.c) */
            if (!tok_buf_put(&ss->tmp, cu, cl)) return false;
        ss->held = 0;
        if (ss->tmp.len && !next(d, si, ss->tmp.p, ss->tmp.len)) return false;
    }
    if (dc->kind == DEC_BPE_SUFFIX && ss->index > 0) {
        tok_dec rep = {.str = dc->str, .str2 = ""};
        bool over = false;
        ss->tmp.len = 0;
        if (!replace_all(&ss->tmp, &rep, ss->pend.p ? ss->pend.p : "", ss->pend.len, SIZE_MAX, &over))
            return false;
        ss->pend.len = 0;
        ss->index = 0;
        if (!next(d, si, ss->tmp.p ? ss->tmp.p : "", ss->tmp.len)) return false;
    }
    return stage_flush(d, si + 1);
}

wick_status wick_detok_create(const wick_tokenizer *t, bool skip_special, wick_detok **out) {
    if (!t || !out) return err_set(WICK_ERR_INVALID_ARG, "wick_detok_create: NULL argument");
    wick_detok *d = calloc(1, sizeof *d);
    if (d) d->st = calloc((size_t)(t->ndec ? t->ndec : 1), sizeof *d->st);
    if (!d || !d->st) {
        free(d);
        return err_set(WICK_ERR_NOMEM, "wick_detok_create: out of memory");
    }
    d->t = t;
    d->skip_special = skip_special;
    wick_detok_reset(d);
    *out = d;
    return WICK_OK;
}

void wick_detok_reset(wick_detok *d) {
    if (!d) return;
    bool fused = false;
    for (int i = 0; i < d->t->ndec; i++) {
        stage_state *ss = &d->st[i];
        ss->index = 0;
        ss->written = 0;
        ss->seen_data = false;
        ss->fused = fused;
        ss->strip_left = d->t->dec[i].start;
        ss->held = 0;
        ss->pend.len = 0;
        ss->npend = 0;
        if (d->t->dec[i].kind == DEC_FUSE || d->t->dec[i].kind == DEC_BYTELEVEL) fused = true;
    }
    d->ntok = 0;
    d->in_bytes = 0;
    d->over = 0;
    d->hold.len = 0;
    d->out.len = 0;
}

void wick_detok_free(wick_detok *d) {
    if (!d) return;
    for (int i = 0; i < d->t->ndec; i++) {
        tok_buf_free(&d->st[i].pend);
        tok_buf_free(&d->st[i].tmp);
    }
    free(d->st);
    tok_buf_free(&d->hold);
    tok_buf_free(&d->out);
    free(d);
}

/* The error of a failed push or flush: a Replace stage over its budget, or memory. */
static wick_status detok_error(const wick_detok *d) {
    if (tok_regex_failed()) return tok_regex_error("detokenize");
    if (d->over)
        return err_set(WICK_ERR_FORMAT, "detokenize: decoder %d (Replace) writes more than %d "
                       "bytes per byte of the tokens (a hostile tokenizer.json?)", d->over - 1,
                       DEC_GROWTH);
    return err_set(WICK_ERR_NOMEM, "detokenize: out of memory");
}

/* Feeds one id without clearing d->out. */
static wick_status detok_feed(wick_detok *d, int32_t id) {
    const wick_tokenizer *t = d->t;
    if (id < 0 || id >= t->n_ids)
        return err_set(WICK_ERR_INVALID_ARG, "detokenize: token id %d is out of range [0, %d)", id, t->n_ids);
    if (d->skip_special && t->is_special[id]) return WICK_OK;
    const char *s = t->id_str[id];
    size_t n = t->id_len[id];
    bool ok;
    d->in_bytes += n;
    tok_regex_clear();
    if (!t->ndec) {  /* no decoder: tokens joined by spaces */
        ok = (d->ntok == 0 || emit_bytes(d, " ", 1, false)) && emit_bytes(d, s, n, false);
    } else {
        ok = stage_push(d, 0, s, n);
    }
    d->ntok++;
    return ok ? WICK_OK : detok_error(d);
}

static wick_status detok_finish(wick_detok *d) {
    tok_regex_clear();
    bool ok = stage_flush(d, 0) && emit_bytes(d, "", 0, true);
    return ok ? WICK_OK : detok_error(d);
}

wick_status wick_detok_push(wick_detok *d, int32_t id, const char **text, size_t *len) {
    if (!d || !text || !len) return err_set(WICK_ERR_INVALID_ARG, "wick_detok_push: NULL argument");
    d->out.len = 0;
    wick_status st = detok_feed(d, id);
    *text = d->out.p ? d->out.p : "";
    *len = d->out.len;
    return st;
}

wick_status wick_detok_flush(wick_detok *d, const char **text, size_t *len) {
    if (!d || !text || !len) return err_set(WICK_ERR_INVALID_ARG, "wick_detok_flush: NULL argument");
    d->out.len = 0;
    wick_status st = detok_finish(d);
    *text = d->out.p ? d->out.p : "";
    *len = d->out.len;
    if (!st) {  /* ready for a new sequence, but keep out valid */
        tok_buf keep = d->out;
        d->out = (tok_buf){0};
        wick_detok_reset(d);
        tok_buf_free(&d->out);
        d->out = keep;
    }
    return st;
}

wick_status wick_detokenize(const wick_tokenizer *t, const int32_t *ids, size_t n,
                            bool skip_special, char *buf, size_t cap, size_t *out_len) {
    if (!t || (!ids && n) || (!buf && cap)) return err_set(WICK_ERR_INVALID_ARG, "wick_detokenize: NULL argument");
    wick_detok *d = NULL;
    wick_status st = wick_detok_create(t, skip_special, &d);
    for (size_t i = 0; !st && i < n; i++) st = detok_feed(d, ids[i]);
    if (!st) st = detok_finish(d);
    if (!st) {
        size_t L = d->out.len;
        if (out_len) *out_len = L;  /* also on BUFFER_TOO_SMALL: the caller allocates L + 1 */
        if (L + 1 > cap) {
            if (cap) buf[0] = 0;
            st = err_set(WICK_ERR_BUFFER_TOO_SMALL,
                         "wick_detokenize: %zu bytes + NUL needed, buffer has %zu", L, cap);
        } else {
            if (L) memcpy(buf, d->out.p, L);
            buf[L] = 0;
        }
    }
    wick_detok_free(d);
    return st;
}

wick_status tok_vocab_bytes(const wick_tokenizer *t, uint32_t **offsets, char **bytes) {
    *offsets = NULL;
    *bytes = NULL;
    wick_detok *d = NULL;
    wick_status st = wick_detok_create(t, false, &d);
    if (st) return st;
    d->raw = true;
    uint32_t *off = malloc(sizeof *off * ((size_t)t->n_ids + 1));
    tok_buf all = {0};
    if (!off) st = err_set(WICK_ERR_NOMEM, "out of memory");
    /* each token as it decodes after another one (stages that treat the start of the stream
       differently, such as Metaspace or Strip dropping a leading space, see it mid-stream):
       an anchor token first, its bytes discarded */
    const int32_t anchor = tok_smap_get(&t->vocab, "a", 1);
    for (int32_t id = 0; !st && id < t->n_ids; id++) {
        off[id] = (uint32_t)all.len;
        wick_detok_reset(d);
        if (anchor >= 0 && !t->is_special[id]) {
            if ((st = detok_feed(d, anchor))) break;
            d->out.len = 0;
        }
        /* the token, then the flush that releases what a stage held back */
        if ((st = detok_feed(d, id)) || (st = detok_finish(d))) break;
        if (all.len + d->out.len >= UINT32_MAX) st = err_set(WICK_ERR_FORMAT, "vocabulary too large");
        else if (!tok_buf_put(&all, d->out.p ? d->out.p : "", d->out.len)) st = err_set(WICK_ERR_NOMEM, "out of memory");
    }
    if (!st) {
        off[t->n_ids] = (uint32_t)all.len;
        if (!all.p && !tok_buf_put(&all, "", 0)) st = err_set(WICK_ERR_NOMEM, "out of memory");
    }
    wick_detok_free(d);
    if (st) {
        free(off);
        tok_buf_free(&all);
        return st;
    }
    *offsets = off;
    *bytes = all.p;
    return WICK_OK;
}
