/* tok_normalize.c — the normalizers of tokenizer.json (NFC/NFD/NFKC/NFKD, Lowercase,
 * StripAccents, Replace, Prepend, BertNormalizer, Strip, Sequence, and Precompiled through
 * tok_precompiled.c), applied to one segment of text. Offsets/alignments are not tracked. Invalid UTF-8 bytes are passed through untouched
 * (HF cannot receive them at all, since its input is a Rust &str); Unicode operations apply to
 * the valid runs between them. Output is capped (tok_normalize's max): Replace and Prepend are
 * checked as they write (Precompiled too), the bounded-ratio forms after each step.
 * Not here: NMT. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tok_impl.h"

/* Unicode White_Space (what Rust's char::is_whitespace tests). */
static bool is_ws(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static bool is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static bool put_cp(tok_buf *o, uint32_t c) {
    char u[4];
    return tok_buf_put(o, u, tok_utf8_encode(c, u));
}

/* A code point that starts an independent normalization segment: it has no decomposition,
 * combining class 0 and is never the second half of a canonical composition, so nothing before
 * it can reorder or compose with it. A lone such character is already in every normal form.
 * (utf8proc marks composition seconds with comb_index >= 0x8000; Hangul jamo compose
 * algorithmically, outside that table; Hangul syllables decompose algorithmically.) */
static bool norm_boundary(uint32_t c, bool decomposing) {
    if (c < 0x80) return true;
    if (c >= 0x1100 && c <= 0x11FF) return false;
    if (decomposing && c >= 0xAC00 && c <= 0xD7A3) return false;
    const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)c);
    return p->combining_class == 0 && p->decomp_seqindex == UINT16_MAX &&
           (p->comb_index == UINT16_MAX || p->comb_index < 0x8000);
}

static bool norm_map(const char *s, size_t n, int opts, tok_buf *out) {
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                      (utf8proc_option_t)(UTF8PROC_STABLE | opts));
    if (r < 0) return false;
    bool ok = tok_buf_put(out, dst, (size_t)r);
    free(dst);
    return ok;
}

/* Unicode normal form of s, invalid bytes copied as they are. The text is cut at boundary
 * characters (see norm_boundary); only segments that hold something other than a lone boundary
 * character go through utf8proc, everything else (all ASCII, most CJK) is copied in runs. */
static bool norm_form(const char *s, size_t n, int opts, tok_buf *out) {
    bool decomposing = !(opts & UTF8PROC_COMPOSE);
    size_t done = 0, seg = 0, i = 0;  /* s[0, done) emitted; current segment starts at seg */
    bool dirty = false;
    if (!tok_buf_reserve(out, n)) return false;
    while (i < n) {
        unsigned char b = (unsigned char)s[i];
        if (b < 0x80) {
            if (dirty) {
                if (!tok_buf_put(out, s + done, seg - done) || !norm_map(s + seg, i - seg, opts, out))
                    return false;
                done = i;
                dirty = false;
            }
            while (++i < n && (unsigned char)s[i] < 0x80) {}
            seg = i - 1;
            continue;
        }
        size_t adv = tok_utf8_valid_len((const unsigned char *)s + i, n - i);
        bool bound = true, invalid = adv == 0;
        if (!invalid) {
            size_t a2;
            bound = norm_boundary(tok_utf8_decode((const unsigned char *)s + i, adv, &a2), decomposing);
        } else {
            adv = 1;
        }
        if (bound && dirty) {
            if (!tok_buf_put(out, s + done, seg - done) || !norm_map(s + seg, i - seg, opts, out))
                return false;
            done = i;
            dirty = false;
        }
        if (invalid) seg = i + 1;  /* the byte is copied; a segment never contains it */
        else if (bound) seg = i;
        else dirty = true;
        i += adv;
    }
    if (dirty)
        return tok_buf_put(out, s + done, seg - done) && norm_map(s + seg, n - seg, opts, out);
    return tok_buf_put(out, s + done, n - done);
}

/* MAP_STRIP_MN: BertNormalizer drops nonspacing marks only; MAP_STRIP_M: the StripAccents
 * normalizer drops every mark (Mn, Mc, Me: HF's is_combining_mark), so Devanagari vowel signs
 * (Mc) go too. */
typedef enum { MAP_LOWER = 1, MAP_STRIP_MN = 2, MAP_BERT_CLEAN = 4, MAP_CJK = 8, MAP_STRIP_M = 16 } map_flags;

/* Per-code-point mappings; invalid bytes copied. */
static bool map_cps(const char *s, size_t n, int flags, tok_buf *out) {
    size_t i = 0;
    if (!tok_buf_reserve(out, n)) return false;
    while (i < n) {
        size_t adv;
        unsigned char b = (unsigned char)s[i];
        uint32_t c = b < 0x80 ? (adv = 1, b) : tok_utf8_decode((const unsigned char *)s + i, n - i, &adv);
        if (c == 0xFFFFFFFFu) {
            if (!tok_buf_putc(out, s[i])) return false;
            i++;
            continue;
        }
        i += adv;
        if (flags & MAP_BERT_CLEAN) {
            if (c == 0 || c == 0xFFFD) continue;
            if (c == '\t' || c == '\n' || c == '\r' || is_ws(c)) c = ' ';
            else {
                int cat = utf8proc_category((utf8proc_int32_t)c);
                if (cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
                    cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_CO)
                    continue;
            }
        }
        if ((flags & MAP_CJK) && is_cjk(c)) {
            if (!tok_buf_putc(out, ' ') || !put_cp(out, c) || !tok_buf_putc(out, ' ')) return false;
            continue;
        }
        if ((flags & (MAP_STRIP_MN | MAP_STRIP_M)) && c >= 0x300) {
            int cat = utf8proc_category((utf8proc_int32_t)c);
            if (cat == UTF8PROC_CATEGORY_MN ||
                ((flags & MAP_STRIP_M) && (cat == UTF8PROC_CATEGORY_MC || cat == UTF8PROC_CATEGORY_ME)))
                continue;
        }
        if (flags & MAP_LOWER) {
            if (c == 0x130) {  /* İ lowercases to two code points: i + combining dot */
                if (!tok_buf_put(out, "i\xCC\x87", 3)) return false;
                continue;
            }
            c = c < 0x80 ? (uint32_t)((c >= 'A' && c <= 'Z') ? c + 32 : c)
                         : (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
        }
        if (c < 0x80) {
            if (!tok_buf_putc(out, (char)c)) return false;
        } else if (!put_cp(out, c)) return false;
    }
    return true;
}

/* Appends a + b to out unless out would pass max bytes (then *over). */
static bool put2(tok_buf *out, const char *a, size_t al, const char *b, size_t bl, size_t max,
                 bool *over) {
    if (al + bl > max || out->len > max - al - bl) {
        *over = true;
        return false;
    }
    return tok_buf_put(out, a, al) && tok_buf_put(out, b, bl);
}

static bool replace_literal(const char *s, size_t n, const char *pat, const char *with,
                            tok_buf *out, size_t max, bool *over) {
    size_t pl = strlen(pat), wl = strlen(with), i = 0;
    if (!pl) return put2(out, s, n, "", 0, max, over);
    while (i < n) {
        const char *hit = pl <= n - i ? memmem(s + i, n - i, pat, pl) : NULL;
        if (!hit) return put2(out, s + i, n - i, "", 0, max, over);
        size_t h = (size_t)(hit - s);
        if (!put2(out, s + i, h - i, with, wl, max, over)) return false;
        i = h + pl;
    }
    return true;
}

static bool replace_regex(const tok_regex *re, const char *s, size_t n, const char *with,
                          tok_buf *out, size_t max, bool *over) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (!md) return false;
    size_t i = 0, ms, me, wl = strlen(with);
    bool ok = true;
    while (ok && tok_regex_next(re, md, s, n, i, &ms, &me)) {
        ok = put2(out, s + i, ms - i, with, wl, max, over);
        i = me;
    }
    ok = ok && !tok_regex_failed() && put2(out, s + i, n - i, "", 0, max, over);
    pcre2_match_data_free(md);
    return ok;
}

static bool normalize(const tok_norm *nm, const char *s, size_t n, tok_buf *out, size_t max,
                      bool *over) {
    switch (nm->kind) {
    case NORM_NFC: return norm_form(s, n, UTF8PROC_COMPOSE, out);
    case NORM_NFD: return norm_form(s, n, UTF8PROC_DECOMPOSE, out);
    case NORM_NFKC: return norm_form(s, n, UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out);
    case NORM_NFKD: return norm_form(s, n, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out);
    case NORM_LOWER: return map_cps(s, n, MAP_LOWER, out);
    case NORM_STRIP_ACCENTS: return map_cps(s, n, MAP_STRIP_M, out);
    case NORM_REPLACE:
        if (nm->re.code) return replace_regex(&nm->re, s, n, nm->str2, out, max, over);
        return replace_literal(s, n, nm->str, nm->str2, out, max, over);
    case NORM_PREPEND:
        return put2(out, nm->str, n ? strlen(nm->str) : 0, s, n, max, over);
    case NORM_STRIP: {
        size_t a = 0, b = n, adv;
        while (nm->left && a < b) {
            uint32_t c = tok_utf8_decode((const unsigned char *)s + a, b - a, &adv);
            if (!is_ws(c)) break;
            a += adv;
        }
        while (nm->right && b > a) {
            size_t k = b - 1;
            while (k > a && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
            uint32_t c = tok_utf8_decode((const unsigned char *)s + k, b - k, &adv);
            if (adv != b - k || !is_ws(c)) break;
            b = k;
        }
        return tok_buf_put(out, s + a, b - a);
    }
    case NORM_BERT: {
        tok_buf t1 = {0}, t2 = {0};
        int f = (nm->clean_text ? MAP_BERT_CLEAN : 0) | (nm->chinese ? MAP_CJK : 0);
        bool ok = map_cps(s, n, f, &t1);
        const char *cur = t1.p ? t1.p : "";
        size_t cl = t1.len;
        if (ok && nm->strip_accents) {
            ok = norm_form(cur, cl, UTF8PROC_DECOMPOSE, &t2);
            t1.len = 0;
            ok = ok && map_cps(t2.p ? t2.p : "", t2.len, MAP_STRIP_MN | (nm->lowercase ? MAP_LOWER : 0), &t1);
            cur = t1.p ? t1.p : "";
            cl = t1.len;
        } else if (ok && nm->lowercase) {
            ok = map_cps(cur, cl, MAP_LOWER, &t2);
            cur = t2.p ? t2.p : "";
            cl = t2.len;
        }
        ok = ok && tok_buf_put(out, cur, cl);
        tok_buf_free(&t1);
        tok_buf_free(&t2);
        return ok;
    }
    case NORM_PRECOMPILED:
        return tok_charsmap_apply(&nm->cmap, s, n, out, max, over);
    case NORM_SEQ: {
        tok_buf a = {0}, b = {0};
        bool ok = tok_buf_put(&a, s, n);
        for (int i = 0; ok && i < nm->nsub; i++) {
            b.len = 0;
            ok = tok_normalize(&nm->sub[i], a.p ? a.p : "", a.len, &b, max, over) &&
                 tok_buf_reserve(&b, 0);
            tok_buf t = a;
            a = b;
            b = t;
        }
        ok = ok && tok_buf_put(out, a.p ? a.p : "", a.len);
        tok_buf_free(&a);
        tok_buf_free(&b);
        return ok;
    }
    }
    return false;
}

bool tok_normalize(const tok_norm *nm, const char *s, size_t n, tok_buf *out, size_t max,
                   bool *over) {
    if (!normalize(nm, s, n, out, max, over)) return false;
    if (out->len > max) {  /* a bounded-ratio form (NFKC, BERT...) passed the cap */
        *over = true;
        return false;
    }
    return true;
}

void tok_norm_free(tok_norm *nm) {
    if (!nm) return;
    free(nm->str);
    free(nm->str2);
    tok_regex_free(&nm->re);
    tok_charsmap_free(&nm->cmap);
    for (int i = 0; i < nm->nsub; i++) tok_norm_free(&nm->sub[i]);
    free(nm->sub);
}
