/* jinja_value.c — run-time values of the Jinja engine: arena, output buffer, UTF-8 helpers,
 * constructors, dicts with a hash index, Python truthiness/equality/ordering/sorting, and the
 * context's JSON as values.
 *
 * Values follow Python semantics because jinja2 evaluates with Python objects: ints are
 * int64 here (Python's are unbounded; overflow is reported, not wrapped), floats print with
 * Python's shortest round-trip repr, strings are UTF-8 and indexed by code point elsewhere.
 * Walks over nested values (equality, ordering) are bounded: they charge the render's step
 * budget and stop at JINJA_MAX_VALUE_DEPTH (see jinja_internal.h).
 * Not here: writing values (jinja_write.c), operators (jinja_eval.c), filters
 * (jinja_filters.c). */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

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
        size_t lim = b->limit ? b->limit : JINJA_MAX_OUTPUT;
        if (n >= lim || b->n + n + 1 > lim) {
            b->failed = true;
            err_set(WICK_ERR_NOMEM, "template: output exceeds %u MiB (rendered text, including "
                    "macro results and set blocks being built)", JINJA_MAX_OUTPUT >> 20);
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

/* The empty string and the 128 one-character ASCII strings, shared by every render (values
 * are never modified once made): iterating, reversing or sorting a string makes one value per
 * character, which would otherwise cost ~80 bytes of arena each. */
static char small_text[129][2];
static jv small_str[129];
static pthread_once_t small_once = PTHREAD_ONCE_INIT;

static void small_init(void) {
    for (int i = 0; i < 129; i++) {
        small_text[i][0] = (char)(i < 128 ? i : 0);
        small_str[i].t = JV_STR;
        small_str[i].u.str.s = small_text[i];
        small_str[i].u.str.n = i < 128 ? 1 : 0;
    }
}

jv *jv_str(jarena *a, const char *s, size_t n) {
    if (n == 0 || (n == 1 && (unsigned char)s[0] < 128)) {
        pthread_once(&small_once, small_init);
        return &small_str[n ? (unsigned char)s[0] : 128];
    }
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

/* ---- dict keys and the hash index ---- */

/* SipHash-1-3 (Aumasson & Bernstein) with a per-process random key: keys come from
 * untrusted JSON and templates, and a keyed hash keeps crafted collisions from turning the
 * index back into a linear scan. */
static uint64_t sip_k0, sip_k1;
static pthread_once_t sip_once = PTHREAD_ONCE_INIT;

static void sip_init(void) {
    uint64_t k[2] = {0x736f6d6570736575ull, 0x646f72616e646f6dull};
    if (getrandom(k, sizeof k, GRND_NONBLOCK) != (ssize_t)sizeof k) { /* fall back: ASLR */
        k[0] ^= (uint64_t)(uintptr_t)&sip_k0;
        k[1] ^= (uint64_t)(uintptr_t)&k;
    }
    sip_k0 = k[0];
    sip_k1 = k[1];
}

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                    \
    do {                                                                            \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                   \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                      \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                      \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                   \
    } while (0)

static uint64_t siphash13(const void *data, size_t n) {
    pthread_once(&sip_once, sip_init);
    const unsigned char *p = data;
    uint64_t v0 = sip_k0 ^ 0x736f6d6570736575ull, v1 = sip_k1 ^ 0x646f72616e646f6dull;
    uint64_t v2 = sip_k0 ^ 0x6c7967656e657261ull, v3 = sip_k1 ^ 0x7465646279746573ull;
    uint64_t m, last = (uint64_t)n << 56;
    for (; n >= 8; n -= 8, p += 8) {
        memcpy(&m, p, 8);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t i = 0; i < n; i++) last |= (uint64_t)p[i] << (8 * i);
    v3 ^= last;
    SIPROUND;
    v0 ^= last;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}
#undef SIPROUND
#undef ROTL

bool jv_is_key(const jv *k) {
    return k->t == JV_STR || k->t == JV_INT || k->t == JV_BOOL || k->t == JV_FLOAT ||
           k->t == JV_NONE || k->t == JV_UNDEF;
}

/* Equal keys hash equally: 1, 1.0 and True hash as the int 1 (Python's rule). */
static uint64_t key_hash(const jv *k) {
    if (k->t == JV_STR) return siphash13(k->u.str.s, k->u.str.n);
    if (k->t == JV_NONE || k->t == JV_UNDEF) return (uint64_t)k->t * 0x9e3779b97f4a7c15ull;
    unsigned char b[9];
    double f = k->t == JV_FLOAT ? k->u.f : 0;
    if (k->t != JV_FLOAT || (f == floor(f) && f >= -9223372036854775808.0 && f < 9223372036854775808.0)) {
        int64_t i = k->t == JV_INT ? k->u.i : k->t == JV_BOOL ? k->u.b : (int64_t)f;
        b[0] = 'i';
        memcpy(b + 1, &i, 8);
    } else {
        b[0] = 'f';
        memcpy(b + 1, &f, 8);
    }
    return siphash13(b, sizeof b);
}

static bool key_equal(const jv *a, const jv *b) {
    if (a == b) return true;
    if (a->t == JV_STR || b->t == JV_STR)
        return a->t == b->t && a->u.str.n == b->u.str.n &&
               memcmp(a->u.str.s, b->u.str.s, a->u.str.n) == 0;
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a->t != JV_FLOAT && b->t != JV_FLOAT)
            return (a->t == JV_INT ? a->u.i : a->u.b) == (b->t == JV_INT ? b->u.i : b->u.b);
        return jv_num(a) == jv_num(b);
    }
    return a->t == b->t && (a->t == JV_NONE || a->t == JV_UNDEF);
}

#define DICT_LINEAR 8 /* dicts up to this size are scanned; larger ones use the index */

/* Index of `key` (hash h) in d, or -1. */
static ptrdiff_t dict_find(const jv *d, const jv *key, uint64_t h) {
    if (!d->u.dict.nslot) {
        for (size_t i = 0; i < d->u.dict.n; i++)
            if (key_equal(d->u.dict.k[i], key)) return (ptrdiff_t)i;
        return -1;
    }
    size_t mask = d->u.dict.nslot - 1;
    for (size_t s = (size_t)h & mask;; s = (s + 1) & mask) { /* linear probing, load <= 1/2 */
        uint32_t e = d->u.dict.slot[s];
        if (!e) return -1;
        if (key_equal(d->u.dict.k[e - 1], key)) return (ptrdiff_t)e - 1;
    }
}

static void slot_insert(uint32_t *slot, size_t nslot, uint64_t h, size_t entry) {
    size_t mask = nslot - 1, s = (size_t)h & mask;
    while (slot[s]) s = (s + 1) & mask;
    slot[s] = (uint32_t)(entry + 1);
}

jv *jv_dict_get(const jv *d, const jv *key) {
    if (!jv_is_key(key)) return NULL; /* Python: unhashable; never a member */
    ptrdiff_t i = dict_find(d, key, d->u.dict.nslot ? key_hash(key) : 0);
    return i < 0 ? NULL : d->u.dict.v[i];
}

jv *jv_dict_getz(const jv *d, const char *key, size_t n) {
    jv k = {.t = JV_STR, .u.str = {key, n}};
    return jv_dict_get(d, &k);
}

bool jv_dict_set(jarena *a, jv *d, jv *key, jv *val) {
    if (!jv_is_key(key)) {
        if (key->t == JV_LIST && key->tuple)
            err_set(WICK_ERR_UNSUPPORTED, "template: tuples as dict keys are not supported");
        else
            err_set(WICK_ERR_INVALID_ARG, "template: unhashable type: '%s'", jv_type_name(key));
        return false;
    }
    uint64_t h = d->u.dict.nslot || d->u.dict.n >= DICT_LINEAR ? key_hash(key) : 0;
    ptrdiff_t i = dict_find(d, key, h);
    if (i >= 0) {
        d->u.dict.v[i] = val;
        return true;
    }
    if (d->u.dict.n >= UINT32_MAX - 1) {
        err_set(WICK_ERR_NOMEM, "template: dict too large");
        return false;
    }
    if (d->u.dict.n == d->u.dict.cap) {
        size_t nc = d->u.dict.cap ? d->u.dict.cap * 2 : DICT_LINEAR;
        jv **nk = jarena_alloc(a, nc * sizeof *nk), **nv = jarena_alloc(a, nc * sizeof *nv);
        if (!nk || !nv) return false;
        if (d->u.dict.n) {
            memcpy(nk, d->u.dict.k, d->u.dict.n * sizeof *nk);
            memcpy(nv, d->u.dict.v, d->u.dict.n * sizeof *nv);
        }
        d->u.dict.k = nk;
        d->u.dict.v = nv;
        d->u.dict.cap = nc;
        if (nc > DICT_LINEAR) { /* (re)build the index for the new capacity */
            size_t ns = 2 * nc;
            uint32_t *slot = jarena_alloc(a, ns * sizeof *slot);
            if (!slot) return false;
            for (size_t k = 0; k < d->u.dict.n; k++) slot_insert(slot, ns, key_hash(nk[k]), k);
            d->u.dict.slot = slot;
            d->u.dict.nslot = ns;
            if (!h) h = key_hash(key);
        }
    }
    if (d->u.dict.nslot) slot_insert(d->u.dict.slot, d->u.dict.nslot, h, d->u.dict.n);
    d->u.dict.k[d->u.dict.n] = key;
    d->u.dict.v[d->u.dict.n++] = val;
    return true;
}

bool jv_dict_setz(jarena *a, jv *d, const char *key, jv *val) {
    size_t n = strlen(key);
    jv probe = {.t = JV_STR, .u.str = {key, n}};
    ptrdiff_t i = dict_find(d, &probe, d->u.dict.nslot ? key_hash(&probe) : 0);
    if (i >= 0) { /* reassignment (loop variables, namespace attributes): no new key */
        d->u.dict.v[i] = val;
        return true;
    }
    jv *k = jv_str(a, key, n);
    return k && jv_dict_set(a, d, k, val);
}

void jv_dict_truncate(jv *d, size_t n) {
    if (n >= d->u.dict.n) return;
    d->u.dict.n = n;
    if (!d->u.dict.nslot) return;
    memset(d->u.dict.slot, 0, d->u.dict.nslot * sizeof *d->u.dict.slot);
    for (size_t i = 0; i < n; i++)
        slot_insert(d->u.dict.slot, d->u.dict.nslot, key_hash(d->u.dict.k[i]), i);
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

const char *jv_type_name(const jv *v) {
    static const char *names[] = {"Undefined", "NoneType", "bool", "int", "float", "str",
                                  "list", "dict", "Namespace", "function", "LoopContext"};
    if (v->t == JV_LIST && v->tuple) return "tuple";
    return names[v->t];
}

/* One level deeper into a nested value: false (c->failed, message set) past the limit or
 * once the step budget is spent. `units` is the work this level is about to do. */
static bool walk(jctx *c, int depth, uint64_t units) {
    if (c->failed) return false;
    if (depth >= JINJA_MAX_VALUE_DEPTH) {
        err_set(WICK_ERR_INVALID_ARG, "template: value nested deeper than %d levels",
                JINJA_MAX_VALUE_DEPTH);
        c->failed = true;
        return false;
    }
    return jinja_charge(c, units, 0);
}

static bool equal_d(jctx *c, const jv *a, const jv *b, int depth) {
    if (a == b) return true;
    if (jv_is_num(a) || a->t != b->t || a->t == JV_STR) {
        if (a->t == JV_STR && b->t == JV_STR && a->u.str.n == b->u.str.n &&
            !walk(c, depth, 1 + a->u.str.n / JINJA_BYTES_PER_STEP))
            return false;
        return key_equal(a, b);
    }
    switch (a->t) {
    case JV_UNDEF: case JV_NONE: return true;
    case JV_LIST:
        if (a->u.list.n != b->u.list.n) return false;
        if (!walk(c, depth, 1 + a->u.list.n)) return false;
        for (size_t i = 0; i < a->u.list.n; i++)
            if (!equal_d(c, a->u.list.v[i], b->u.list.v[i], depth + 1)) return false;
        return true;
    case JV_DICT:
        if (a->u.dict.n != b->u.dict.n) return false;
        if (!walk(c, depth, 1 + a->u.dict.n)) return false;
        for (size_t i = 0; i < a->u.dict.n; i++) {
            const jv *k = a->u.dict.k[i];
            if (k->t == JV_STR && !jinja_charge(c, k->u.str.n / JINJA_BYTES_PER_STEP, 0))
                return false;
            jv *o = jv_dict_get(b, k);
            if (!o || !equal_d(c, a->u.dict.v[i], o, depth + 1)) return false;
        }
        return true;
    default: return false; /* identity only */
    }
}

bool jv_equal(jctx *c, const jv *a, const jv *b) { return equal_d(c, a, b, 0); }

static int compare_d(jctx *c, const jv *a, const jv *b, bool *ok, int depth) {
    *ok = true;
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a->t == JV_INT && b->t == JV_INT) return (a->u.i > b->u.i) - (a->u.i < b->u.i);
        double x = jv_num(a), y = jv_num(b);
        return (x > y) - (x < y);
    }
    if (a->t == JV_STR && b->t == JV_STR) { /* UTF-8 byte order == code point order */
        size_t m = a->u.str.n < b->u.str.n ? a->u.str.n : b->u.str.n;
        if (!walk(c, depth, 1 + m / JINJA_BYTES_PER_STEP)) return *ok = false, 0;
        int r = memcmp(a->u.str.s, b->u.str.s, m);
        if (r) return r < 0 ? -1 : 1;
        return (a->u.str.n > b->u.str.n) - (a->u.str.n < b->u.str.n);
    }
    if (a->t == JV_LIST && b->t == JV_LIST) {
        size_t m = a->u.list.n < b->u.list.n ? a->u.list.n : b->u.list.n;
        if (!walk(c, depth, 1 + m)) return *ok = false, 0;
        for (size_t i = 0; i < m; i++) {
            if (equal_d(c, a->u.list.v[i], b->u.list.v[i], depth + 1)) continue;
            if (c->failed) return *ok = false, 0;
            return compare_d(c, a->u.list.v[i], b->u.list.v[i], ok, depth + 1);
        }
        return (a->u.list.n > b->u.list.n) - (a->u.list.n < b->u.list.n);
    }
    *ok = false;
    err_set(WICK_ERR_INVALID_ARG, "template: cannot compare %s with %s", jv_type_name(a),
            jv_type_name(b));
    return 0;
}

int jv_compare(jctx *c, const jv *a, const jv *b, bool *ok) {
    int r = compare_d(c, a, b, ok, 0);
    if (c->failed) *ok = false;
    return r;
}

static bool msort(jctx *c, size_t *idx, size_t *tmp, size_t n, jv **keys, bool rev) {
    if (n < 2) return true;
    if (!jinja_charge(c, n, 0)) return false; /* n log n in all */
    size_t h = n / 2;
    if (!msort(c, idx, tmp, h, keys, rev) || !msort(c, idx + h, tmp, n - h, keys, rev)) return false;
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        bool ok;
        int cmp = jv_compare(c, keys[idx[j]], keys[idx[i]], &ok);
        if (!ok) return false;
        if (rev ? cmp > 0 : cmp < 0) tmp[k++] = idx[j++];
        else tmp[k++] = idx[i++];
    }
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof *idx);
    return true;
}

bool jv_sort(jctx *c, size_t *idx, size_t n, jv **keys, bool rev) {
    size_t *tmp = jarena_alloc(c->a, (n + 1) * sizeof *tmp);
    return tmp && msort(c, idx, tmp, n, keys, rev);
}

/* ---- JSON context ---- */
static jv *from_json(jarena *a, const cJSON *j, int depth) {
    if (!j || cJSON_IsNull(j)) return JV_NONEV;
    if (cJSON_IsBool(j)) return JV_BOOLV(cJSON_IsTrue(j));
    if (cJSON_IsNumber(j)) {
        /* cJSON keeps only a double: integral values within 2^53 become ints (1.0 too). */
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) <= 9007199254740992.0) return jv_int(a, (int64_t)d);
        return jv_float(a, d);
    }
    if (cJSON_IsString(j)) return jv_strz(a, j->valuestring ? j->valuestring : "");
    if ((cJSON_IsArray(j) || cJSON_IsObject(j)) && depth >= JINJA_MAX_VALUE_DEPTH) {
        err_set(WICK_ERR_INVALID_ARG, "template: context nested deeper than %d levels",
                JINJA_MAX_VALUE_DEPTH);
        return NULL;
    }
    if (cJSON_IsArray(j)) {
        jv *l = jv_list(a, 0);
        if (!l) return NULL;
        for (const cJSON *c = j->child; c; c = c->next) {
            jv *x = from_json(a, c, depth + 1);
            if (!x || !jv_list_push(a, l, x)) return NULL;
        }
        return l;
    }
    if (cJSON_IsObject(j)) {
        jv *d = jv_dict(a, JV_DICT);
        if (!d) return NULL;
        for (const cJSON *c = j->child; c; c = c->next) {
            jv *x = from_json(a, c, depth + 1);
            if (!x || !jv_dict_setz(a, d, c->string ? c->string : "", x)) return NULL;
        }
        return d;
    }
    err_set(WICK_ERR_INVALID_ARG, "template: unsupported JSON value in context");
    return NULL;
}

jv *jv_from_json(jarena *a, const cJSON *j) { return from_json(a, j, 0); }
