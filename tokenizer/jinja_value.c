/* jinja_value.c — run-time values of the Jinja engine: arena, output buffer, UTF-8 helpers,
 * constructors, Python truthiness/equality/ordering, and the three ways a value is written:
 * str() (what {{ x }} prints), repr() (inside printed lists/dicts) and json.dumps (tojson).
 *
 * Values follow Python semantics because jinja2 evaluates with Python objects: ints are
 * int64 here (Python's are unbounded; overflow is reported, not wrapped), floats print with
 * Python's shortest round-trip repr, strings are UTF-8 and indexed by code point elsewhere.
 * Not here: operators (jinja_eval.c) and filters (jinja_filters.c). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"

jv jv_undef_v = {.t = JV_UNDEF}, jv_none_v = {.t = JV_NONE};
jv jv_true_v = {.t = JV_BOOL, .u.b = true}, jv_false_v = {.t = JV_BOOL, .u.b = false};

/* ---- arena ---- */
typedef struct jblock {
    struct jblock *next;
    size_t used, size;
    max_align_t data[];
} jblock;

struct jarena {
    jblock *head;
    size_t total, cap;
};

jarena *jarena_new(size_t cap) {
    jarena *a = calloc(1, sizeof *a);
    if (a) a->cap = cap;
    return a;
}

void *jarena_alloc(jarena *a, size_t n) {
    if (n > a->cap) { /* also keeps the rounding below from wrapping */
        err_set(WICK_ERR_NOMEM, "template: memory limit of %zu MiB exceeded", a->cap >> 20);
        return NULL;
    }
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    jblock *b = a->head;
    if (!b || b->size - b->used < n) {
        size_t sz = n > (64u << 10) ? n : (64u << 10);
        if (a->total + sz > a->cap) {
            err_set(WICK_ERR_NOMEM, "template: memory limit of %zu MiB exceeded", a->cap >> 20);
            return NULL;
        }
        b = malloc(sizeof *b + sz);
        if (!b) {
            err_set(WICK_ERR_NOMEM, "template: out of memory");
            return NULL;
        }
        b->used = 0;
        b->size = sz;
        b->next = a->head;
        a->head = b;
        a->total += sz;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

char *jarena_strndup(jarena *a, const char *s, size_t n) {
    char *p = jarena_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void jarena_free(jarena *a) {
    if (!a) return;
    for (jblock *b = a->head, *nx; b; b = nx) {
        nx = b->next;
        free(b);
    }
    free(a);
}

/* ---- output buffer ---- */
bool jbuf_put(jbuf *b, const char *s, size_t n) {
    if (b->failed) return false;
    if (b->n + n + 1 > b->cap) {
        if (b->n + n + 1 > JINJA_MAX_OUTPUT) {
            b->failed = true;
            err_set(WICK_ERR_NOMEM, "template: output exceeds %u MiB", JINJA_MAX_OUTPUT >> 20);
            return false;
        }
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->failed = true;
            err_set(WICK_ERR_NOMEM, "template: out of memory");
            return false;
        }
        b->p = np;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}

bool jbuf_putc(jbuf *b, char c) { return jbuf_put(b, &c, 1); }

bool jbuf_printf(jbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return false;
    return jbuf_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* ---- UTF-8 ---- */
size_t ju_decode(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0) { *cp = 0; return 0; }
    if (u[0] < 0x80) { *cp = u[0]; return 1; }
    int len = (u[0] & 0xE0) == 0xC0 ? 2 : (u[0] & 0xF0) == 0xE0 ? 3 : (u[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (!len || (size_t)len > n) { *cp = 0xFFFD; return 1; }
    uint32_t c = u[0] & (0x7F >> len);
    for (int i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) { *cp = 0xFFFD; return 1; }
        c = (c << 6) | (u[i] & 0x3F);
    }
    *cp = c;
    return (size_t)len;
}

size_t ju_encode(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t ju_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += ju_decode(s + i, n - i, &cp);
        c++;
    }
    return c;
}

size_t ju_offset(const char *s, size_t n, size_t idx) {
    size_t i = 0;
    for (size_t c = 0; c < idx && i < n; c++) {
        uint32_t cp;
        i += ju_decode(s + i, n - i, &cp);
    }
    return i;
}

bool ju_isspace(uint32_t c) {
    return (c >= 9 && c <= 13) || c == ' ' || (c >= 0x1C && c <= 0x1F) || c == 0x85 ||
           c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* ---- constructors ---- */
static jv *jv_new(jarena *a, jv_type t) {
    jv *v = jarena_alloc(a, sizeof *v);
    if (v) v->t = t;
    return v;
}

jv *jv_int(jarena *a, int64_t i) {
    jv *v = jv_new(a, JV_INT);
    if (v) v->u.i = i;
    return v;
}

jv *jv_float(jarena *a, double f) {
    jv *v = jv_new(a, JV_FLOAT);
    if (v) v->u.f = f;
    return v;
}

jv *jv_str_own(jarena *a, const char *s, size_t n) {
    jv *v = jv_new(a, JV_STR);
    if (!v) return NULL;
    v->u.str.s = s;
    v->u.str.n = n;
    return v;
}

jv *jv_str(jarena *a, const char *s, size_t n) {
    char *p = jarena_strndup(a, s, n);
    return p ? jv_str_own(a, p, n) : NULL;
}

jv *jv_strz(jarena *a, const char *s) { return jv_str(a, s, strlen(s)); }

jv *jv_list(jarena *a, size_t cap) {
    jv *v = jv_new(a, JV_LIST);
    if (!v) return NULL;
    if (cap) {
        v->u.list.v = jarena_alloc(a, cap * sizeof(jv *));
        if (!v->u.list.v) return NULL;
        v->u.list.cap = cap;
    }
    return v;
}

jv *jv_dict(jarena *a, jv_type t) { return jv_new(a, t); }

jv *jv_undef_named(jarena *a, const char *name) {
    jv *v = jv_new(a, JV_UNDEF);
    if (v) v->uname = name;
    return v;
}

bool jv_list_push(jarena *a, jv *l, jv *item) {
    if (l->u.list.n == l->u.list.cap) {
        size_t nc = l->u.list.cap ? l->u.list.cap * 2 : 4;
        jv **nv = jarena_alloc(a, nc * sizeof *nv);
        if (!nv) return false;
        if (l->u.list.n) memcpy(nv, l->u.list.v, l->u.list.n * sizeof *nv);
        l->u.list.v = nv;
        l->u.list.cap = nc;
    }
    l->u.list.v[l->u.list.n++] = item;
    return true;
}

jv *jv_dict_get(const jv *d, const jv *key) {
    for (size_t i = 0; i < d->u.dict.n; i++)
        if (jv_equal(d->u.dict.k[i], key)) return d->u.dict.v[i];
    return NULL;
}

jv *jv_dict_getz(const jv *d, const char *key, size_t n) {
    for (size_t i = 0; i < d->u.dict.n; i++) {
        const jv *k = d->u.dict.k[i];
        if (k->t == JV_STR && k->u.str.n == n && memcmp(k->u.str.s, key, n) == 0)
            return d->u.dict.v[i];
    }
    return NULL;
}

bool jv_dict_set(jarena *a, jv *d, jv *key, jv *val) {
    for (size_t i = 0; i < d->u.dict.n; i++)
        if (jv_equal(d->u.dict.k[i], key)) {
            d->u.dict.v[i] = val;
            return true;
        }
    if (d->u.dict.n == d->u.dict.cap) {
        size_t nc = d->u.dict.cap ? d->u.dict.cap * 2 : 8;
        jv **nk = jarena_alloc(a, nc * sizeof *nk), **nv = jarena_alloc(a, nc * sizeof *nv);
        if (!nk || !nv) return false;
        if (d->u.dict.n) {
            memcpy(nk, d->u.dict.k, d->u.dict.n * sizeof *nk);
            memcpy(nv, d->u.dict.v, d->u.dict.n * sizeof *nv);
        }
        d->u.dict.k = nk;
        d->u.dict.v = nv;
        d->u.dict.cap = nc;
    }
    d->u.dict.k[d->u.dict.n] = key;
    d->u.dict.v[d->u.dict.n++] = val;
    return true;
}

bool jv_dict_setz(jarena *a, jv *d, const char *key, jv *val) {
    jv *k = jv_strz(a, key);
    return k && jv_dict_set(a, d, k, val);
}

/* ---- semantics ---- */
bool jv_is_num(const jv *v) { return v->t == JV_INT || v->t == JV_FLOAT || v->t == JV_BOOL; }

double jv_num(const jv *v) {
    return v->t == JV_INT ? (double)v->u.i : v->t == JV_FLOAT ? v->u.f : v->t == JV_BOOL ? v->u.b : 0;
}

bool jv_truthy(const jv *v) {
    switch (v->t) {
    case JV_UNDEF: case JV_NONE: return false;
    case JV_BOOL: return v->u.b;
    case JV_INT: return v->u.i != 0;
    case JV_FLOAT: return v->u.f != 0;
    case JV_STR: return v->u.str.n != 0;
    case JV_LIST: return v->u.list.n != 0;
    case JV_DICT: return v->u.dict.n != 0;
    default: return true;
    }
}

bool jv_equal(const jv *a, const jv *b) {
    if (a == b) return true;
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a->t != JV_FLOAT && b->t != JV_FLOAT) {
            int64_t x = a->t == JV_INT ? a->u.i : a->u.b, y = b->t == JV_INT ? b->u.i : b->u.b;
            return x == y;
        }
        return jv_num(a) == jv_num(b);
    }
    if (a->t != b->t) return false;
    switch (a->t) {
    case JV_UNDEF: case JV_NONE: return true;
    case JV_STR: return a->u.str.n == b->u.str.n && memcmp(a->u.str.s, b->u.str.s, a->u.str.n) == 0;
    case JV_LIST:
        if (a->u.list.n != b->u.list.n) return false;
        for (size_t i = 0; i < a->u.list.n; i++)
            if (!jv_equal(a->u.list.v[i], b->u.list.v[i])) return false;
        return true;
    case JV_DICT:
        if (a->u.dict.n != b->u.dict.n) return false;
        for (size_t i = 0; i < a->u.dict.n; i++) {
            jv *o = jv_dict_get(b, a->u.dict.k[i]);
            if (!o || !jv_equal(a->u.dict.v[i], o)) return false;
        }
        return true;
    default: return false; /* identity only */
    }
}

const char *jv_type_name(const jv *v) {
    static const char *names[] = {"Undefined", "NoneType", "bool", "int", "float", "str",
                                  "list", "dict", "Namespace", "function", "LoopContext"};
    if (v->t == JV_LIST && v->tuple) return "tuple";
    return names[v->t];
}

int jv_compare(const jv *a, const jv *b, bool *ok) {
    *ok = true;
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a->t == JV_INT && b->t == JV_INT) return (a->u.i > b->u.i) - (a->u.i < b->u.i);
        double x = jv_num(a), y = jv_num(b);
        return (x > y) - (x < y);
    }
    if (a->t == JV_STR && b->t == JV_STR) { /* UTF-8 byte order == code point order */
        size_t m = a->u.str.n < b->u.str.n ? a->u.str.n : b->u.str.n;
        int c = memcmp(a->u.str.s, b->u.str.s, m);
        if (c) return c < 0 ? -1 : 1;
        return (a->u.str.n > b->u.str.n) - (a->u.str.n < b->u.str.n);
    }
    if (a->t == JV_LIST && b->t == JV_LIST) {
        for (size_t i = 0; i < a->u.list.n && i < b->u.list.n; i++) {
            if (jv_equal(a->u.list.v[i], b->u.list.v[i])) continue;
            return jv_compare(a->u.list.v[i], b->u.list.v[i], ok);
        }
        return (a->u.list.n > b->u.list.n) - (a->u.list.n < b->u.list.n);
    }
    *ok = false;
    err_set(WICK_ERR_INVALID_ARG, "template: cannot compare %s with %s", jv_type_name(a),
            jv_type_name(b));
    return 0;
}

/* ---- writing ---- */
void jv_float_repr(double f, char *buf) {
    if (isnan(f)) { strcpy(buf, "nan"); return; }
    if (isinf(f)) { strcpy(buf, f > 0 ? "inf" : "-inf"); return; }
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) { /* shortest round-trip digits */
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    /* tmp = [-]d.ddde[+-]XX: split into digits and exponent */
    char digits[24];
    int nd = 0, exp10;
    const char *p = tmp;
    bool neg = *p == '-';
    if (neg) p++;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    char *o = buf;
    if (neg) *o++ = '-';
    if (exp10 >= 16 || exp10 < -4) { /* Python repr switches to exponent form */
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            for (int i = 1; i < nd; i++) *o++ = digits[i];
        }
        sprintf(o, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
        return;
    }
    if (exp10 < 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = -1; i > exp10; i--) *o++ = '0';
        for (int i = 0; i < nd; i++) *o++ = digits[i];
    } else {
        for (int i = 0; i <= exp10; i++) *o++ = i < nd ? digits[i] : '0';
        *o++ = '.';
        if (nd > exp10 + 1)
            for (int i = exp10 + 1; i < nd; i++) *o++ = digits[i];
        else
            *o++ = '0';
    }
    *o = 0;
}

static bool write_repr_str(jbuf *b, const char *s, size_t n) {
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    if (!jbuf_putc(b, q)) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok;
        if (c == (unsigned char)q || c == '\\') {
            char e[2] = {'\\', (char)c};
            ok = jbuf_put(b, e, 2);
        } else if (c == '\n') ok = jbuf_put(b, "\\n", 2);
        else if (c == '\r') ok = jbuf_put(b, "\\r", 2);
        else if (c == '\t') ok = jbuf_put(b, "\\t", 2);
        else if (c < 0x20 || c == 0x7F) ok = jbuf_printf(b, "\\x%02x", c);
        else ok = jbuf_putc(b, (char)c);
        if (!ok) return false;
    }
    return jbuf_putc(b, q);
}

static bool write_seq(jbuf *b, const jv *v) {
    bool tup = v->t == JV_LIST && v->tuple;
    if (v->t == JV_LIST) {
        if (!jbuf_putc(b, tup ? '(' : '[')) return false;
        for (size_t i = 0; i < v->u.list.n; i++) {
            if (i && !jbuf_put(b, ", ", 2)) return false;
            if (!jv_write_repr(b, v->u.list.v[i])) return false;
        }
        if (tup && v->u.list.n == 1 && !jbuf_putc(b, ',')) return false;
        return jbuf_putc(b, tup ? ')' : ']');
    }
    if (v->t == JV_NS && !jbuf_put(b, "<Namespace ", 11)) return false;
    if (!jbuf_putc(b, '{')) return false;
    for (size_t i = 0; i < v->u.dict.n; i++) {
        if (i && !jbuf_put(b, ", ", 2)) return false;
        if (!jv_write_repr(b, v->u.dict.k[i]) || !jbuf_put(b, ": ", 2) ||
            !jv_write_repr(b, v->u.dict.v[i]))
            return false;
    }
    return jbuf_putc(b, '}') && (v->t != JV_NS || jbuf_putc(b, '>'));
}

bool jv_write_str(jbuf *b, const jv *v) {
    char tmp[64];
    switch (v->t) {
    case JV_UNDEF: return true;
    case JV_NONE: return jbuf_put(b, "None", 4);
    case JV_BOOL: return v->u.b ? jbuf_put(b, "True", 4) : jbuf_put(b, "False", 5);
    case JV_INT: return jbuf_printf(b, "%lld", (long long)v->u.i);
    case JV_FLOAT: jv_float_repr(v->u.f, tmp); return jbuf_put(b, tmp, strlen(tmp));
    case JV_STR: return jbuf_put(b, v->u.str.s, v->u.str.n);
    case JV_LIST: case JV_DICT: case JV_NS: return write_seq(b, v);
    case JV_FUNC: return jbuf_printf(b, "<function %s>", v->u.fn.name ? v->u.fn.name : "builtin");
    case JV_LOOP: return jbuf_put(b, "<LoopContext>", 13);
    }
    return true;
}

bool jv_write_repr(jbuf *b, const jv *v) {
    if (v->t == JV_STR) return write_repr_str(b, v->u.str.s, v->u.str.n);
    if (v->t == JV_UNDEF) return true;
    return jv_write_str(b, v);
}

jv *jv_to_str(jarena *a, const jv *v) {
    if (v->t == JV_STR) return (jv *)v;
    jbuf b = {0};
    if (!jv_write_str(&b, v)) {
        free(b.p);
        return NULL;
    }
    jv *r = jv_str(a, b.p ? b.p : "", b.n);
    free(b.p);
    return r;
}

static bool json_str(jbuf *b, const char *s, size_t n) {
    if (!jbuf_putc(b, '"')) return false;
    size_t run = 0; /* flush unescaped runs in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *e = NULL;
        char u[8];
        if (c == '"') e = "\\\"";
        else if (c == '\\') e = "\\\\";
        else if (c == '\n') e = "\\n";
        else if (c == '\r') e = "\\r";
        else if (c == '\t') e = "\\t";
        else if (c == '\b') e = "\\b";
        else if (c == '\f') e = "\\f";
        else if (c < 0x20) {
            snprintf(u, sizeof u, "\\u%04x", c);
            e = u;
        }
        if (!e) {
            run++;
            continue;
        }
        if (!jbuf_put(b, s + i - run, run) || !jbuf_put(b, e, strlen(e))) return false;
        run = 0;
    }
    return jbuf_put(b, s + n - run, run) && jbuf_putc(b, '"');
}

static bool json_nl(jbuf *b, const char *ind, int level) {
    if (!jbuf_putc(b, '\n')) return false;
    for (int i = 0; i < level; i++)
        if (!jbuf_put(b, ind, strlen(ind))) return false;
    return true;
}

bool jv_write_json(jbuf *b, const jv *v, const char *ind, bool sort_keys, int level) {
    char tmp[64];
    if (level > JINJA_MAX_EVAL_DEPTH) {
        err_set(WICK_ERR_INVALID_ARG, "template: tojson: value nested too deeply");
        return false;
    }
    switch (v->t) {
    case JV_NONE: return jbuf_put(b, "null", 4);
    case JV_BOOL: return v->u.b ? jbuf_put(b, "true", 4) : jbuf_put(b, "false", 5);
    case JV_INT: return jbuf_printf(b, "%lld", (long long)v->u.i);
    case JV_FLOAT:
        if (isnan(v->u.f)) return jbuf_put(b, "NaN", 3);
        if (isinf(v->u.f)) return v->u.f > 0 ? jbuf_put(b, "Infinity", 8) : jbuf_put(b, "-Infinity", 9);
        jv_float_repr(v->u.f, tmp);
        return jbuf_put(b, tmp, strlen(tmp));
    case JV_STR: return json_str(b, v->u.str.s, v->u.str.n);
    case JV_LIST: {
        if (!v->u.list.n) return jbuf_put(b, "[]", 2);
        if (!jbuf_putc(b, '[')) return false;
        for (size_t i = 0; i < v->u.list.n; i++) {
            if (i && !jbuf_put(b, ind ? "," : ", ", ind ? 1 : 2)) return false;
            if (ind && !json_nl(b, ind, level + 1)) return false;
            if (!jv_write_json(b, v->u.list.v[i], ind, sort_keys, level + 1)) return false;
        }
        if (ind && !json_nl(b, ind, level)) return false;
        return jbuf_putc(b, ']');
    }
    case JV_DICT: {
        if (!v->u.dict.n) return jbuf_put(b, "{}", 2);
        size_t n = v->u.dict.n;
        size_t *ord = malloc(n * sizeof *ord);
        if (!ord) return false;
        for (size_t i = 0; i < n; i++) ord[i] = i;
        if (sort_keys) /* insertion sort: dicts in templates are small */
            for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0; j--) {
                    bool ok;
                    if (jv_compare(v->u.dict.k[ord[j - 1]], v->u.dict.k[ord[j]], &ok) <= 0) break;
                    size_t t = ord[j]; ord[j] = ord[j - 1]; ord[j - 1] = t;
                }
        bool ok = jbuf_putc(b, '{');
        for (size_t i = 0; ok && i < n; i++) {
            const jv *k = v->u.dict.k[ord[i]];
            if (i) ok = jbuf_put(b, ind ? "," : ", ", ind ? 1 : 2);
            if (ok && ind) ok = json_nl(b, ind, level + 1);
            if (!ok) break;
            if (k->t == JV_STR) ok = json_str(b, k->u.str.s, k->u.str.n);
            else if (k->t == JV_INT || k->t == JV_FLOAT || k->t == JV_BOOL || k->t == JV_NONE) {
                jbuf kb = {0};
                ok = (k->t == JV_BOOL || k->t == JV_NONE) ? jv_write_json(&kb, k, NULL, false, 0)
                                                          : jv_write_str(&kb, k);
                ok = ok && json_str(b, kb.p, kb.n);
                free(kb.p);
            } else {
                err_set(WICK_ERR_INVALID_ARG, "template: tojson: keys must be str, int, float, "
                        "bool or None, not %s", jv_type_name(k));
                ok = false;
            }
            ok = ok && jbuf_put(b, ": ", 2) &&
                 jv_write_json(b, v->u.dict.v[ord[i]], ind, sort_keys, level + 1);
        }
        free(ord);
        if (ok && ind) ok = json_nl(b, ind, level);
        return ok && jbuf_putc(b, '}');
    }
    default:
        err_set(WICK_ERR_INVALID_ARG, "template: tojson: object of type %s is not JSON "
                "serializable", jv_type_name(v));
        return false;
    }
}

jv *jv_from_json(jarena *a, const cJSON *j) {
    if (!j || cJSON_IsNull(j)) return JV_NONEV;
    if (cJSON_IsBool(j)) return JV_BOOLV(cJSON_IsTrue(j));
    if (cJSON_IsNumber(j)) {
        /* cJSON keeps only a double: integral values within 2^53 become ints (1.0 too). */
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) <= 9007199254740992.0) return jv_int(a, (int64_t)d);
        return jv_float(a, d);
    }
    if (cJSON_IsString(j)) return jv_strz(a, j->valuestring ? j->valuestring : "");
    if (cJSON_IsArray(j)) {
        jv *l = jv_list(a, (size_t)cJSON_GetArraySize(j));
        if (!l) return NULL;
        for (const cJSON *c = j->child; c; c = c->next) {
            jv *x = jv_from_json(a, c);
            if (!x || !jv_list_push(a, l, x)) return NULL;
        }
        return l;
    }
    if (cJSON_IsObject(j)) {
        jv *d = jv_dict(a, JV_DICT);
        if (!d) return NULL;
        for (const cJSON *c = j->child; c; c = c->next) {
            jv *x = jv_from_json(a, c);
            if (!x || !jv_dict_setz(a, d, c->string ? c->string : "", x)) return NULL;
        }
        return d;
    }
    err_set(WICK_ERR_INVALID_ARG, "template: unsupported JSON value in context");
    return NULL;
}
