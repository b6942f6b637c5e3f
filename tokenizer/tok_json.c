/* tok_json.c — a streaming reader for the two huge sections of tokenizer.json: model.vocab
 * ({"token": id, ...}) and model.merges (["a b", ...] or [["a", "b"], ...]).
 *
 * Building a cJSON tree for them costs two allocations per entry (about 600k for a 150k
 * vocabulary) and most of the load time; here they are decoded straight from the file text
 * into one string arena. Only the well-formed common shape is handled: anything else (other
 * value types, a lone surrogate, bad syntax) makes these functions return
 * false, and the loader then reads the whole file through cJSON as before, which reports the
 * error with its usual message. Not here: any other part of tokenizer.json. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_json.h"

static size_t ws(const char *s, size_t n, size_t i) {
    while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) i++;
    return i;
}

/* Skips the string starting at s[i] == '"'; returns the index after it, or 0 on error. */
static size_t skip_string(const char *s, size_t n, size_t i) {
    for (i++; i < n; i++) {
        if (s[i] == '\\') i++;
        else if (s[i] == '"') return i + 1;
    }
    return 0;
}

/* The characters numbers and the literals true/false/null are made of. Anything else ends a
 * literal, and where a value should start it is an error: a NUL byte in particular, which
 * strchr-style delimiter tests would take for a match of their terminator. */
static bool literal_char(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '+' || c == '-' || c == '.';
}

/* Skips any value at s[i]; returns the index after it, or 0 on error. Nesting is counted, not
 * recursed, so a deep document cannot exhaust the stack. */
static size_t skip_value(const char *s, size_t n, size_t i) {
    size_t depth = 0;
    do {
        i = ws(s, n, i);
        if (i >= n) return 0;
        char c = s[i];
        if (c == '"') {
            if (!(i = skip_string(s, n, i))) return 0;
        } else if (c == '{' || c == '[') {
            depth++;
            i++;
        } else if (c == '}' || c == ']') {
            if (!depth) return 0;
            depth--;
            i++;
        } else if (c == ',' || c == ':') {  /* inside a container */
            i++;
        } else {  /* a number or literal (true, 1e-3...): its characters, at least one */
            size_t j = i;
            while (j < n && literal_char(s[j])) j++;
            if (j == i) return 0;  /* NUL, a control or any other stray byte: not JSON */
            i = j;
        }
    } while (depth);
    return i;
}

/* Iterates over the members of an object. Call with *i at '{' and *first = true; each true
 * return gives the raw key (quotes included) and leaves *i at the value, which the caller must
 * skip before the next call. Returns false at the end (*i after '}', *bad false) or on a
 * syntax error (*bad true). */
static bool next_member(const char *s, size_t n, size_t *i, bool *first, bool *bad,
                        const char **key, size_t *kl) {
    size_t j = ws(s, n, *i);
    *bad = true;
    if (*first) {
        if (j >= n || s[j] != '{') return false;
        j = ws(s, n, j + 1);
        *first = false;
        if (j < n && s[j] == '}') {
            *i = j + 1;
            *bad = false;
            return false;
        }
    } else {
        if (j < n && s[j] == '}') {
            *i = j + 1;
            *bad = false;
            return false;
        }
        if (j >= n || s[j] != ',') return false;
        j = ws(s, n, j + 1);
    }
    if (j >= n || s[j] != '"') return false;
    size_t ke = skip_string(s, n, j);
    if (!ke) return false;
    *key = s + j;
    *kl = ke - j;
    j = ws(s, n, ke);
    if (j >= n || s[j] != ':') return false;
    *i = ws(s, n, j + 1);
    *bad = false;
    return true;
}

static unsigned hexval(char c) {
    return c >= '0' && c <= '9' ? (unsigned)(c - '0')
           : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
           : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                  : 16u;
}

static bool hex4(const char *s, size_t n, size_t i, uint32_t *v) {
    if (i + 4 > n) return false;
    *v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned h = hexval(s[i + k]);
        if (h > 15) return false;
        *v = *v << 4 | h;
    }
    return true;
}

/* Decodes the string at s[*i] == '"' onto the arena (NUL-terminated); *i moves past it. */
static bool decode_string(const char *s, size_t n, size_t *i, tok_buf *ar, uint32_t *off,
                          uint32_t *len) {
    size_t j = *i;
    if (j >= n || s[j] != '"') return false;
    j++;
    if (ar->len > UINT32_MAX / 2 || !tok_buf_reserve(ar, 0)) return false;
    *off = (uint32_t)ar->len;
    for (;;) {
        size_t r = j;
        while (r < n && s[r] != '"' && s[r] != '\\' && (unsigned char)s[r] >= 0x20) r++;
        if (r > j && !tok_buf_put(ar, s + j, r - j)) return false;
        j = r;
        if (j >= n || (unsigned char)s[j] < 0x20) return false;
        if (s[j] == '"') break;
        if (++j >= n) return false;  /* escape */
        char c = s[j++], o;
        switch (c) {
        case '"': o = '"'; break;
        case '\\': o = '\\'; break;
        case '/': o = '/'; break;
        case 'b': o = '\b'; break;
        case 'f': o = '\f'; break;
        case 'n': o = '\n'; break;
        case 'r': o = '\r'; break;
        case 't': o = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (!hex4(s, n, j, &cp)) return false;
            j += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return false;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (j + 1 >= n || s[j] != '\\' || s[j + 1] != 'u' || !hex4(s, n, j + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return false;
                j += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            /* \u0000 is kept (strings carry lengths): WordLevel vocabularies trained on text
             * with control characters hold such tokens. cJSON, the slow path, cuts there. */
            char u[4];
            if (!tok_buf_put(ar, u, tok_utf8_encode(cp, u))) return false;
            continue;
        }
        default: return false;
        }
        if (!tok_buf_putc(ar, o)) return false;
    }
    *len = (uint32_t)(ar->len - *off);
    *i = j + 1;
    return tok_buf_putc(ar, 0);  /* keep each string NUL-terminated in the arena */
}

static bool push_entry(tok_jstrs *js, uint32_t off, uint32_t len, int64_t num) {
    if (js->n == js->cap) {
        size_t nc = js->cap ? js->cap * 2 : 1024;
        tok_jent *e = realloc(js->e, nc * sizeof *e);
        if (!e) return false;
        js->e = e;
        js->cap = nc;
    }
    js->e[js->n++] = (tok_jent){off, len, num};
    return true;
}

void tok_jstrs_free(tok_jstrs *js) {
    tok_buf_free(&js->arena);
    free(js->e);
    memset(js, 0, sizeof *js);
}

/* A non-negative integer id (what cJSON would give as valueint for the vocab). */
static bool read_id(const char *s, size_t n, size_t *i, int64_t *v) {
    size_t j = *i;
    int64_t x = 0;
    if (j >= n || s[j] < '0' || s[j] > '9') return false;
    while (j < n && s[j] >= '0' && s[j] <= '9') {
        x = x * 10 + (s[j++] - '0');
        if (x > 100000000) return false;
    }
    if (j < n && (s[j] == '.' || s[j] == 'e' || s[j] == 'E')) return false;
    *i = j;
    *v = x;
    return true;
}

/* {"token": id, ...} at s[*i]; *i moves past it. */
static bool read_vocab(const char *s, size_t n, size_t *pi, tok_jstrs *out) {
    size_t i = *pi;
    bool first = true, bad = false;
    const char *k;
    size_t kl;
    if (i >= n || s[i] != '{') return false;
    while (next_member(s, n, &i, &first, &bad, &k, &kl)) {
        size_t ki = (size_t)(k - s);
        uint32_t off, len;
        int64_t id;
        if (!decode_string(s, n, &ki, &out->arena, &off, &len) || !read_id(s, n, &i, &id) ||
            !push_entry(out, off, len, id))
            return false;
    }
    *pi = i;
    return !bad;
}

/* ["a b", ...] or [["a", "b"], ...] at s[*i]; *i moves past it. */
static bool read_merges(const char *s, size_t n, size_t *pi, tok_jstrs *out) {
    size_t i = *pi;
    if (i >= n || s[i] != '[') return false;
    i = ws(s, n, i + 1);
    if (i < n && s[i] == ']') {
        *pi = i + 1;
        return true;
    }
    for (;;) {
        uint32_t off, len, off2, len2;
        if (i < n && s[i] == '"') {  /* "a b": split at the first space */
            if (!decode_string(s, n, &i, &out->arena, &off, &len)) return false;
            const char *p = out->arena.p + off, *sp1 = memchr(p, ' ', len);
            if (!sp1) return false;
            uint32_t al = (uint32_t)(sp1 - p);
            if (!push_entry(out, off, al, 0) || !push_entry(out, off + al + 1, len - al - 1, 0))
                return false;
        } else if (i < n && s[i] == '[') {  /* ["a", "b"] */
            i = ws(s, n, i + 1);
            if (!decode_string(s, n, &i, &out->arena, &off, &len)) return false;
            i = ws(s, n, i);
            if (i >= n || s[i] != ',') return false;
            i = ws(s, n, i + 1);
            if (!decode_string(s, n, &i, &out->arena, &off2, &len2)) return false;
            i = ws(s, n, i);
            if (i >= n || s[i] != ']') return false;
            i++;
            if (!push_entry(out, off, len, 0) || !push_entry(out, off2, len2, 0)) return false;
        } else {
            return false;
        }
        i = ws(s, n, i);
        if (i < n && s[i] == ',') {
            i = ws(s, n, i + 1);
            continue;
        }
        *pi = i + 1;
        return i < n && s[i] == ']';
    }
}

bool tok_json_read_model(const char *s, size_t n, tok_span *vocab, tok_jstrs *jv, tok_span *merges,
                         tok_jstrs *jm) {
    memset(vocab, 0, sizeof *vocab);
    memset(merges, 0, sizeof *merges);
    size_t i = 0;
    bool first = true, bad = false, seen_model = false;
    const char *k;
    size_t kl;
    while (next_member(s, n, &i, &first, &bad, &k, &kl)) {
        if (kl == 7 && memcmp(k, "\"model\"", 7) == 0) {
            if (seen_model || i >= n || s[i] != '{') return false;
            seen_model = true;
            bool f2 = true, bad2 = false;
            while (next_member(s, n, &i, &f2, &bad2, &k, &kl)) {
                bool is_v = kl == 7 && memcmp(k, "\"vocab\"", 7) == 0;
                bool is_m = kl == 8 && memcmp(k, "\"merges\"", 8) == 0;
                tok_span *sp = is_v ? vocab : is_m ? merges : NULL;
                size_t e = i;
                if (sp && sp->found) return false;  /* a duplicate key: let cJSON decide */
                if (is_v ? !read_vocab(s, n, &e, jv) : is_m ? !read_merges(s, n, &e, jm)
                                                            : !(e = skip_value(s, n, i)))
                    return false;
                if (sp) *sp = (tok_span){i, e, true};
                i = e;
            }
            if (bad2) return false;
        } else if (!(i = skip_value(s, n, i))) {
            return false;
        }
    }
    return !bad && vocab->found;
}

