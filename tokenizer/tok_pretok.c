/* tok_pretok.c — pre-tokenizers: cut a normalized segment into words (pieces) for the model.
 * ByteLevel, Split (regex or literal, five behaviours, invert), Metaspace, Whitespace,
 * WhitespaceSplit, BertPreTokenizer, Punctuation, Digits and Sequence. Each stage reads a list
 * of pieces and writes a new list; empty pieces are dropped as HF drops them.
 * Not here: UnicodeScripts, CharDelimiterSplit, FixedLength (rejected at load). */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tok_impl.h"

bool tok_pieces_add(tok_pieces *p, const char *s, size_t n, bool first) {
    if (!n) return true;
    if (n > UINT32_MAX - p->text.len) return false;  /* offsets are 32-bit */
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 64;
        uint32_t *o = realloc(p->off, nc * sizeof *o);
        if (!o) return false;
        p->off = o;
        uint32_t *l = realloc(p->len, nc * sizeof *l);
        if (!l) return false;
        p->len = l;
        uint8_t *f = realloc(p->first, nc);
        if (!f) return false;
        p->first = f;
        p->cap = nc;
    }
    p->off[p->n] = (uint32_t)p->text.len;
    p->len[p->n] = (uint32_t)n;
    p->first[p->n] = first;
    p->n++;
    return tok_buf_put(&p->text, s, n);
}

void tok_pieces_clear(tok_pieces *p) {
    p->n = 0;
    p->text.len = 0;
}

void tok_pieces_free(tok_pieces *p) {
    tok_buf_free(&p->text);
    free(p->off);
    free(p->len);
    free(p->first);
    memset(p, 0, sizeof *p);
}

static bool is_ws(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* BERT's notion of punctuation: ASCII symbol ranges or any Unicode P* category. */
static bool is_punct(uint32_t c) {
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
        (c >= 123 && c <= 126))
        return true;
    if (c < 128) return false;
    int cat = utf8proc_category((utf8proc_int32_t)c);
    return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

/* A segment of one piece: [a, b) and whether it is a pattern match. */
typedef struct seg {
    uint32_t a, b;
    bool m;
} seg;
typedef struct segs {
    seg *v;
    size_t n, cap;
} segs;

static bool segs_push(segs *s, size_t a, size_t b, bool m) {
    if (a == b) return true;
    if (b > UINT32_MAX) return false;  /* offsets are 32-bit */
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        seg *nv = realloc(s->v, nc * sizeof *nv);
        if (!nv) return false;
        s->v = nv;
        s->cap = nc;
    }
    s->v[s->n++] = (seg){(uint32_t)a, (uint32_t)b, m};
    return true;
}

/* Applies a split behaviour to the segments of piece s and appends the results to out. */
static bool emit_split(tok_pieces *out, const char *s, bool first, segs *sg,
                       tok_split_behavior beh, bool invert) {
    if (invert)
        for (size_t i = 0; i < sg->n; i++) sg->v[i].m = !sg->v[i].m;
    size_t k = 0;  /* compact in place into merged segments */
    bool prev_match = false;
    switch (beh) {
    case SPLIT_REMOVED:
        for (size_t i = 0; i < sg->n; i++)
            if (!sg->v[i].m) sg->v[k++] = sg->v[i];
        break;
    case SPLIT_ISOLATED: k = sg->n; break;
    case SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < sg->n; i++) {
            if (k && sg->v[i].m && prev_match) sg->v[k - 1].b = sg->v[i].b;
            else sg->v[k++] = sg->v[i];
            prev_match = sg->v[i].m;
        }
        break;
    case SPLIT_MERGED_PREV:
        for (size_t i = 0; i < sg->n; i++) {
            if (sg->v[i].m && !prev_match && k) sg->v[k - 1].b = sg->v[i].b;
            else sg->v[k++] = sg->v[i];
            prev_match = sg->v[i].m;
        }
        break;
    case SPLIT_MERGED_NEXT: {
        /* walk backwards: a match not preceded (in reverse) by a match joins the next piece */
        size_t w = sg->n;
        for (size_t i = sg->n; i-- > 0;) {
            if (sg->v[i].m && !prev_match && w < sg->n) sg->v[w].a = sg->v[i].a;
            else sg->v[--w] = sg->v[i];
            prev_match = sg->v[i].m;
        }
        memmove(sg->v, sg->v + w, (sg->n - w) * sizeof *sg->v);
        k = sg->n - w;
        break;
    }
    }
    for (size_t i = 0; i < k; i++)
        if (!tok_pieces_add(out, s + sg->v[i].a, sg->v[i].b - sg->v[i].a, first && sg->v[i].a == 0))
            return false;
    return true;
}

/* Segments from regex matches. */
static bool segs_regex(segs *sg, const tok_regex *re, pcre2_match_data *md, const char *s,
                       size_t n) {
    size_t i = 0, ms, me;
    while (tok_regex_next(re, md, s, n, i, &ms, &me)) {
        if (!segs_push(sg, i, ms, false) || !segs_push(sg, ms, me, true)) return false;
        i = me;
    }
    return !tok_regex_failed() && segs_push(sg, i, n, false);
}

typedef enum { CP_WS, CP_PUNCT, CP_DIGIT } cp_class;

/* Segments where every character of the class is its own match. */
static bool segs_chars(segs *sg, const char *s, size_t n, cp_class cls) {
    size_t i = 0, gap = 0, adv;
    while (i < n) {
        uint32_t c = tok_utf8_decode((const unsigned char *)s + i, n - i, &adv);
        bool m = c != 0xFFFFFFFFu && (cls == CP_WS      ? is_ws(c)
                                      : cls == CP_PUNCT ? is_punct(c)
                                                        : (c >= '0' && c <= '9'));
        if (m) {
            if (!segs_push(sg, gap, i, false) || !segs_push(sg, i, i + adv, true)) return false;
            gap = i + adv;
        }
        i += adv;
    }
    return segs_push(sg, gap, n, false);
}

static bool byte_level_map(tok_pieces *out, const char *s, size_t n, bool first, tok_buf *tmp) {
    tmp->len = 0;
    if (!tok_buf_reserve(tmp, 2 * n)) return false;
    for (size_t i = 0; i < n; i++)
        tmp->len += tok_utf8_encode(tok_byte_to_cp[(unsigned char)s[i]], tmp->p + tmp->len);
    return tok_pieces_add(out, tmp->p, tmp->len, first);
}

bool tok_pretokenize(const tok_pre *pre, tok_pieces *in, tok_pieces *out, pcre2_match_data *md) {
    tok_pieces_clear(out);
    segs sg = {0};
    tok_buf tmp = {0};
    bool ok = true;
    if (pre->kind == PRE_SEQ) {
        tok_pieces a = {0};
        tok_pieces *cur = in, *nxt = out;
        for (int i = 0; ok && i < pre->nsub; i++) {
            ok = tok_pretokenize(&pre->sub[i], cur, nxt, md);
            cur = nxt;
            nxt = (cur == out) ? &a : out;
        }
        if (ok && cur != out) {
            tok_pieces_clear(out);
            for (size_t i = 0; ok && i < cur->n; i++)
                ok = tok_pieces_add(out, cur->text.p + cur->off[i], cur->len[i], cur->first[i]);
        }
        if (ok && pre->nsub == 0)
            for (size_t i = 0; ok && i < in->n; i++)
                ok = tok_pieces_add(out, in->text.p + in->off[i], in->len[i], in->first[i]);
        tok_pieces_free(&a);
        return ok;
    }
    for (size_t pi = 0; ok && pi < in->n; pi++) {
        const char *s = in->text.p + in->off[pi];
        size_t n = in->len[pi];
        bool first = in->first[pi];
        sg.n = 0;
        switch (pre->kind) {
        case PRE_BYTELEVEL: {
            const char *src = s;
            tok_buf pref = {0};
            if (pre->add_prefix_space && s[0] != ' ') {
                ok = tok_buf_putc(&pref, ' ') && tok_buf_put(&pref, s, n);
                src = pref.p;
                n = pref.len;
            }
            if (ok && pre->use_regex) {
                ok = segs_regex(&sg, &pre->re, md, src, n);
                for (size_t k = 0; ok && k < sg.n; k++)
                    ok = byte_level_map(out, src + sg.v[k].a, sg.v[k].b - sg.v[k].a,
                                        first && sg.v[k].a == 0, &tmp);
            } else if (ok) {
                ok = byte_level_map(out, src, n, first, &tmp);
            }
            tok_buf_free(&pref);
            break;
        }
        case PRE_SPLIT:
            ok = segs_regex(&sg, &pre->re, md, s, n) &&
                 emit_split(out, s, first, &sg, pre->behavior, pre->invert);
            break;
        case PRE_WHITESPACE:  /* keep only the \w+|[^\w\s]+ matches */
            ok = segs_regex(&sg, &pre->re, md, s, n) &&
                 emit_split(out, s, first, &sg, SPLIT_REMOVED, true);
            break;
        case PRE_WSSPLIT:
            ok = segs_chars(&sg, s, n, CP_WS) && emit_split(out, s, first, &sg, SPLIT_REMOVED, false);
            break;
        case PRE_PUNCT:
            ok = segs_chars(&sg, s, n, CP_PUNCT) &&
                 emit_split(out, s, first, &sg, pre->behavior, false);
            break;
        case PRE_DIGITS:
            ok = segs_chars(&sg, s, n, CP_DIGIT) &&
                 emit_split(out, s, first, &sg,
                            pre->individual_digits ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS, false);
            break;
        case PRE_BERT: {
            tok_pieces words = {0};
            ok = segs_chars(&sg, s, n, CP_WS) &&
                 emit_split(&words, s, first, &sg, SPLIT_REMOVED, false);
            for (size_t w = 0; ok && w < words.n; w++) {
                sg.n = 0;
                const char *ws = words.text.p + words.off[w];
                ok = segs_chars(&sg, ws, words.len[w], CP_PUNCT) &&
                     emit_split(out, ws, words.first[w], &sg, SPLIT_ISOLATED, false);
            }
            tok_pieces_free(&words);
            break;
        }
        case PRE_METASPACE: {
            size_t rl = strlen(pre->repl);
            tmp.len = 0;
            bool pre_ok = pre->prepend == PREPEND_ALWAYS || (pre->prepend == PREPEND_FIRST && first);
            /* HF replaces the spaces first and prepends only when the result does not start
               with the replacement already: a leading space counts as one */
            if (pre_ok && !(n >= rl && memcmp(s, pre->repl, rl) == 0) && !(n >= 1 && s[0] == ' '))
                ok = tok_buf_put(&tmp, pre->repl, rl);
            for (size_t i = 0; ok && i < n; i++)
                ok = s[i] == ' ' ? tok_buf_put(&tmp, pre->repl, rl) : tok_buf_putc(&tmp, s[i]);
            if (!ok) break;
            if (!pre->split) {
                ok = tok_pieces_add(out, tmp.p, tmp.len, first);
                break;
            }
            size_t gap = 0;
            for (size_t i = 0; ok && i + rl <= tmp.len;) {
                if (memcmp(tmp.p + i, pre->repl, rl) == 0) {
                    ok = segs_push(&sg, gap, i, false) && segs_push(&sg, i, i + rl, true);
                    i += rl;
                    gap = i;
                } else i++;
            }
            ok = ok && segs_push(&sg, gap, tmp.len, false) &&
                 emit_split(out, tmp.p, first, &sg, SPLIT_MERGED_NEXT, false);
            break;
        }
        case PRE_SEQ: break;
        }
    }
    free(sg.v);
    tok_buf_free(&tmp);
    return ok;
}

void tok_pre_free(tok_pre *pre) {
    if (!pre) return;
    tok_regex_free(&pre->re);
    for (int i = 0; i < pre->nsub; i++) tok_pre_free(&pre->sub[i]);
    free(pre->sub);
}
