/* jinja_lex.c — template source -> flat token list, with jinja2's whitespace rules.
 *
 * Reproduces the lexer behaviour of jinja2 configured as transformers does
 * (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False):
 *   - "\r\n" and "\r" become "\n"; one trailing newline of the template is dropped;
 *   - `{%-`/`{{-`/`{#-` strip all whitespace before the tag, `-%}`/`-}}`/`-#}` all after it;
 *   - lstrip_blocks: spaces/tabs between a line start and `{%`/`{#` are removed (not before
 *     `{{`, not with `{%+`); "line start" includes the point just after a tag whose end
 *     consumed a newline, and the template start;
 *   - trim_blocks: one "\n" right after `%}` or `#}` is removed (not after `+%}`);
 *   - end delimiters are only recognized outside (), [] and {} inside a tag;
 *   - `{% raw %}...{% endraw %}` is passed through as text.
 * Comments produce no token. String literals are decoded with Python's unicode-escape rules.
 * Not supported: line statements, custom delimiters. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"

typedef struct lexer {
    jarena *a;
    const char *s;  /* normalized source */
    size_t n, pos;
    int line;
    jtok *toks;
    size_t nt, cap;
} lexer;

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static wick_status push(lexer *L, jt_kind k, const char *s, size_t n, int line) {
    if (L->nt == L->cap) {
        size_t nc = L->cap ? L->cap * 2 : 64;
        jtok *nt = realloc(L->toks, nc * sizeof *nt);
        if (!nt) return err_set(WICK_ERR_NOMEM, "template: out of memory");
        L->toks = nt;
        L->cap = nc;
    }
    jtok *t = &L->toks[L->nt++];
    memset(t, 0, sizeof *t);
    t->k = k;
    t->s = s;
    t->n = n;
    t->line = line;
    return WICK_OK;
}

static int count_nl(const char *s, size_t n) {
    int c = 0;
    for (size_t i = 0; i < n; i++) c += s[i] == '\n';
    return c;
}

/* Emits raw text [b, e) as a TEXT token (copied into the arena). */
static wick_status emit_text(lexer *L, size_t b, size_t e, int line) {
    if (e <= b) return WICK_OK;
    char *t = jarena_strndup(L->a, L->s + b, e - b);
    if (!t) return WICK_ERR_NOMEM;
    return push(L, JT_TEXT, t, e - b, line);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes the body of a string literal [b, e) with Python unicode-escape semantics. */
static wick_status decode_string(lexer *L, size_t b, size_t e, int line) {
    char *o = jarena_alloc(L->a, (e - b) * 2 + 8);
    if (!o) return WICK_ERR_NOMEM;
    size_t k = 0;
    const char *s = L->s;
    for (size_t i = b; i < e;) {
        if (s[i] != '\\' || i + 1 >= e) {
            o[k++] = s[i++];
            continue;
        }
        char c = s[i + 1];
        i += 2;
        switch (c) {
        case '\n': break; /* line continuation */
        case '\\': o[k++] = '\\'; break;
        case '\'': o[k++] = '\''; break;
        case '"': o[k++] = '"'; break;
        case 'a': o[k++] = '\a'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'v': o[k++] = '\v'; break;
        case 'x': case 'u': case 'U': {
            int nd = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (int d = 0; d < nd; d++) {
                int h = i + d < e ? hexval(s[i + d]) : -1;
                if (h < 0)
                    return err_set(WICK_ERR_FORMAT, "template line %d: truncated \\%c escape "
                                   "in string literal", line, c);
                cp = cp * 16 + (uint32_t)h;
            }
            if (cp > 0x10FFFF)
                return err_set(WICK_ERR_FORMAT, "template line %d: escape out of range", line);
            i += (size_t)nd;
            k += ju_encode(cp, o + k);
            break;
        }
        case 'N':
            return err_set(WICK_ERR_UNSUPPORTED, "template line %d: \\N{...} escapes are not "
                           "supported", line);
        default:
            if (c >= '0' && c <= '7') { /* up to 3 octal digits */
                uint32_t cp = (uint32_t)(c - '0');
                for (int d = 0; d < 2 && i < e && s[i] >= '0' && s[i] <= '7'; d++)
                    cp = cp * 8 + (uint32_t)(s[i++] - '0');
                k += ju_encode(cp, o + k);
            } else { /* unknown escape: kept verbatim, like Python */
                o[k++] = '\\';
                i--;
            }
        }
    }
    o[k] = 0;
    wick_status st = push(L, JT_STRING, o, k, line);
    return st;
}

static bool starts(const lexer *L, size_t p, const char *lit) {
    size_t m = strlen(lit);
    return p + m <= L->n && memcmp(L->s + p, lit, m) == 0;
}

/* Lexes the inside of a {{ }} or {% %} tag starting at L->pos; stops after the end delimiter.
 * Returns the end kind: 0 plain, '-' strip, '+' keep. */
static wick_status lex_tag(lexer *L, bool var, int *endsign) {
    int depth = 0;
    int open_line = L->line;
    for (;;) {
        while (L->pos < L->n && is_ws(L->s[L->pos])) {
            if (L->s[L->pos] == '\n') L->line++;
            L->pos++;
        }
        if (L->pos >= L->n)
            return err_set(WICK_ERR_FORMAT, "template line %d: unterminated %s tag", open_line,
                           var ? "{{" : "{%");
        size_t p = L->pos;
        if (depth == 0) {
            const char *e2 = var ? "}}" : "%}";
            if (starts(L, p, e2)) { *endsign = 0; L->pos = p + 2; break; }
            if (L->s[p] == '-' && starts(L, p + 1, e2)) { *endsign = '-'; L->pos = p + 3; break; }
            if (!var && L->s[p] == '+' && starts(L, p + 1, e2)) {
                *endsign = '+';
                L->pos = p + 3;
                break;
            }
        }
        char c = L->s[p];
        wick_status st;
        if (c == '\'' || c == '"') {
            size_t q = p + 1;
            while (q < L->n && L->s[q] != c) q += (L->s[q] == '\\' && q + 1 < L->n) ? 2 : 1;
            if (q >= L->n)
                return err_set(WICK_ERR_FORMAT, "template line %d: unterminated string literal",
                               L->line);
            if ((st = decode_string(L, p + 1, q, L->line))) return st;
            L->line += count_nl(L->s + p, q - p);
            L->pos = q + 1;
            continue;
        }
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
            size_t q = p;
            while (q < L->n && ((L->s[q] >= 'a' && L->s[q] <= 'z') ||
                                (L->s[q] >= 'A' && L->s[q] <= 'Z') ||
                                (L->s[q] >= '0' && L->s[q] <= '9') || L->s[q] == '_'))
                q++;
            if ((st = push(L, JT_NAME, L->s + p, q - p, L->line))) return st;
            L->pos = q;
            continue;
        }
        if (c >= '0' && c <= '9') {
            size_t q = p;
            char num[128];
            size_t k = 0;
            bool isfloat = false;
            while (q < L->n && ((L->s[q] >= '0' && L->s[q] <= '9') || L->s[q] == '_')) {
                if (L->s[q] != '_' && k < sizeof num - 1) num[k++] = L->s[q];
                q++;
            }
            if (q + 1 < L->n && L->s[q] == '.' && L->s[q + 1] >= '0' && L->s[q + 1] <= '9') {
                isfloat = true;
                if (k < sizeof num - 1) num[k++] = '.';
                q++;
                while (q < L->n && ((L->s[q] >= '0' && L->s[q] <= '9') || L->s[q] == '_')) {
                    if (L->s[q] != '_' && k < sizeof num - 1) num[k++] = L->s[q];
                    q++;
                }
            }
            if (q < L->n && (L->s[q] == 'e' || L->s[q] == 'E')) {
                size_t r = q + 1;
                if (r < L->n && (L->s[r] == '+' || L->s[r] == '-')) r++;
                if (r < L->n && L->s[r] >= '0' && L->s[r] <= '9') {
                    isfloat = true;
                    while (q < r && k < sizeof num - 1) num[k++] = L->s[q++];
                    while (q < L->n && L->s[q] >= '0' && L->s[q] <= '9') {
                        if (k < sizeof num - 1) num[k++] = L->s[q];
                        q++;
                    }
                }
            }
            num[k] = 0;
            if ((st = push(L, isfloat ? JT_FLOAT : JT_INT, L->s + p, q - p, L->line))) return st;
            jtok *t = &L->toks[L->nt - 1];
            if (isfloat) {
                t->f = strtod(num, NULL);
            } else {
                errno = 0;
                t->i = strtoll(num, NULL, 10);
                if (errno)
                    return err_set(WICK_ERR_UNSUPPORTED, "template line %d: integer literal %s "
                                   "does not fit in 64 bits", L->line, num);
            }
            L->pos = q;
            continue;
        }
        static const char *ops2[] = {"//", "**", "==", "!=", "<=", ">="};
        size_t oplen = 0;
        for (size_t i = 0; i < sizeof ops2 / sizeof *ops2; i++)
            if (starts(L, p, ops2[i])) oplen = 2;
        if (!oplen && strchr("+-*/%~<>=()[]{},.:|", c) && c) oplen = 1;
        if (!oplen)
            return err_set(WICK_ERR_FORMAT, "template line %d: unexpected character '%c' in tag",
                           L->line, c);
        if (oplen == 1) {
            if (c == '(' || c == '[' || c == '{') depth++;
            if (c == ')' || c == ']' || c == '}') {
                if (depth == 0)
                    return err_set(WICK_ERR_FORMAT, "template line %d: unexpected '%c'", L->line,
                                   c);
                depth--;
            }
        }
        if ((st = push(L, JT_OP, L->s + p, oplen, L->line))) return st;
        L->pos = p + oplen;
    }
    return WICK_OK;
}

/* After a `%}`/`#}` end: trim_blocks eats one newline; `-` eats all whitespace. Returns whether
 * the consumed end text finished with a newline (jinja2's line_starting). */
static bool after_end(lexer *L, int endsign, bool block) {
    if (endsign == '-') {
        size_t p = L->pos;
        while (L->pos < L->n && is_ws(L->s[L->pos])) L->line += L->s[L->pos++] == '\n';
        return L->pos > p && L->s[L->pos - 1] == '\n';
    }
    if (block && endsign != '+' && L->pos < L->n && L->s[L->pos] == '\n') {
        L->pos++;
        L->line++;
        return true;
    }
    return false;
}

/* Finds `{%[-+]? *endraw *[-+]?%}` from p; returns its start or n. */
static size_t find_endraw(const lexer *L, size_t p, size_t *tag_end, int *sign_in, int *sign_out) {
    for (; p + 1 < L->n; p++) {
        if (L->s[p] != '{' || L->s[p + 1] != '%') continue;
        size_t q = p + 2;
        int si = 0;
        if (q < L->n && (L->s[q] == '-' || L->s[q] == '+')) si = L->s[q++];
        while (q < L->n && is_ws(L->s[q])) q++;
        if (!starts(L, q, "endraw")) continue;
        q += 6;
        while (q < L->n && is_ws(L->s[q])) q++;
        int so = 0;
        if (q < L->n && (L->s[q] == '-' || L->s[q] == '+')) so = L->s[q++];
        if (!starts(L, q, "%}")) continue;
        *tag_end = q + 2;
        *sign_in = si;
        *sign_out = so;
        return p;
    }
    return L->n;
}

/* Is the tag at p (just after `{%` and its sign) a `raw` opener? Sets *after past its end. */
static bool is_raw_open(const lexer *L, size_t p, size_t *after, int *endsign) {
    while (p < L->n && is_ws(L->s[p])) p++;
    if (!starts(L, p, "raw")) return false;
    p += 3;
    while (p < L->n && is_ws(L->s[p])) p++;
    int so = 0;
    if (p < L->n && L->s[p] == '-') so = L->s[p++];
    if (!starts(L, p, "%}")) return false;
    *after = p + 2;
    *endsign = so;
    return true;
}

wick_status jinja_lex(jarena *a, const char *src, jtok **toks, size_t *ntoks) {
    *toks = NULL;
    *ntoks = 0;
    size_t sl = strlen(src);
    char *s = jarena_alloc(a, sl + 1);
    if (!s) return WICK_ERR_NOMEM;
    size_t n = 0;
    for (size_t i = 0; i < sl; i++) { /* newline normalization */
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < sl && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n') n--; /* keep_trailing_newline=False */
    s[n] = 0;
    lexer L = {.a = a, .s = s, .n = n, .line = 1};
    bool line_starting = true;
    wick_status st = WICK_OK;
    while (L.pos < L.n) {
        /* find the next opener */
        size_t p = L.pos;
        while (p + 1 < L.n && !(L.s[p] == '{' && (L.s[p + 1] == '{' || L.s[p + 1] == '%' ||
                                                  L.s[p + 1] == '#')))
            p++;
        if (p + 1 >= L.n) {
            if ((st = emit_text(&L, L.pos, L.n, L.line))) goto fail;
            break;
        }
        char kind = L.s[p + 1];
        char sign = p + 2 < L.n ? L.s[p + 2] : 0;
        if (sign != '-' && sign != '+') sign = 0;
        if (kind == '{' && sign == '+') sign = 0; /* `{{+` is not a control */
        size_t te = p; /* end of text to emit */
        if (sign == '-') {
            while (te > L.pos && is_ws(L.s[te - 1])) te--;
        } else if (sign != '+' && kind != '{') { /* lstrip_blocks */
            size_t lp = te;
            while (lp > L.pos && L.s[lp - 1] != '\n') lp--;
            if (lp > L.pos || line_starting) {
                bool allws = true;
                for (size_t i = lp; i < te; i++) allws &= is_ws(L.s[i]);
                if (allws) te = lp;
            }
        }
        int text_line = L.line;
        if ((st = emit_text(&L, L.pos, te, text_line))) goto fail;
        L.line += count_nl(L.s + L.pos, p - L.pos);
        size_t body = p + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            size_t q = body;
            while (q + 1 < L.n && !(L.s[q] == '#' && L.s[q + 1] == '}')) q++;
            if (q + 1 >= L.n) {
                st = err_set(WICK_ERR_FORMAT, "template line %d: unterminated comment", L.line);
                goto fail;
            }
            int es = (q > body && L.s[q - 1] == '-') ? '-' : 0;
            L.line += count_nl(L.s + body, q - body);
            L.pos = q + 2;
            line_starting = after_end(&L, es, true);
            continue;
        }
        size_t raw_after;
        int raw_sign;
        if (kind == '%' && is_raw_open(&L, body, &raw_after, &raw_sign)) {
            size_t tag_end;
            int si, so;
            size_t e = find_endraw(&L, raw_after, &tag_end, &si, &so);
            if (e >= L.n) {
                st = err_set(WICK_ERR_FORMAT, "template line %d: {%% raw %%} without "
                             "{%% endraw %%}", L.line);
                goto fail;
            }
            size_t b = raw_after;
            if (raw_sign == '-') while (b < e && is_ws(L.s[b])) b++;
            size_t ee = e;
            if (si == '-') while (ee > b && is_ws(L.s[ee - 1])) ee--;
            L.line += count_nl(L.s + p, b - p);
            if ((st = emit_text(&L, b, ee, L.line))) goto fail;
            L.line += count_nl(L.s + b, tag_end - b);
            L.pos = tag_end;
            line_starting = after_end(&L, so, true);
            continue;
        }
        bool var = kind == '{';
        if ((st = push(&L, var ? JT_VAR_BEGIN : JT_BLOCK_BEGIN, NULL, 0, L.line))) goto fail;
        L.pos = body;
        int es = 0;
        if ((st = lex_tag(&L, var, &es))) goto fail;
        if ((st = push(&L, var ? JT_VAR_END : JT_BLOCK_END, NULL, 0, L.line))) goto fail;
        line_starting = after_end(&L, es, !var);
    }
    if ((st = push(&L, JT_EOF, NULL, 0, L.line))) goto fail;
    *toks = L.toks;
    *ntoks = L.nt;
    return WICK_OK;
fail:
    free(L.toks);
    return st;
}
