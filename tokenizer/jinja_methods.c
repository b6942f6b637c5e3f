/* jinja_methods.c — Python methods callable from templates (str, dict, loop.cycle) and the
 * global functions transformers provides (range, namespace, dict, raise_exception,
 * strftime_now).
 *
 * Semantics are Python's: strip() without arguments strips Unicode whitespace, with an
 * argument strips any of the given code points; split() without a separator splits on
 * whitespace runs and drops empty parts; case mapping uses utf8proc's simple mappings (so
 * "ß".upper() stays "ß", unlike Python's "SS"). List methods that mutate (append, pop, ...)
 * are refused, as transformers' ImmutableSandboxedEnvironment refuses them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <utf8proc.h>

#include "tokenizer/jinja_internal.h"

jv *jinja_arg(jv **args, const char **names, int nargs, int pos, const char *kw) {
    int p = 0;
    for (int i = 0; i < nargs; i++) {
        if (names && names[i]) {
            if (kw && !strcmp(names[i], kw)) return args[i];
        } else if (p++ == pos) {
            return args[i];
        }
    }
    return NULL;
}

static jv *type_err(int line, const char *what, const jv *got) {
    err_set(WICK_ERR_INVALID_ARG, "template line %d: %s, got %s", line, what, jv_type_name(got));
    return NULL;
}

/* The code points of a strip() argument, sorted and deduplicated, so that membership is a
 * binary search: scanning the argument for each stripped character would be quadratic. */
typedef struct cpset { uint32_t *cp; size_t n; bool ws; } cpset;

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static bool cpset_init(jctx *c, cpset *set, const jv *chars, int line) {
    set->ws = !chars; /* None: Python whitespace */
    set->n = 0;
    set->cp = NULL;
    if (!chars) return true;
    size_t m = chars->u.str.n;
    if (!jinja_charge(c, m, line)) return false; /* with the sort: m log m, at worst */
    if (!(set->cp = jarena_alloc(c->a, (m ? m : 1) * sizeof *set->cp))) return false;
    for (size_t i = 0; i < m;) {
        uint32_t cp;
        i += ju_decode(chars->u.str.s + i, m - i, &cp);
        set->cp[set->n++] = cp;
    }
    qsort(set->cp, set->n, sizeof *set->cp, cmp_u32);
    return true;
}

static bool in_set(uint32_t cp, const cpset *set) {
    if (set->ws) return ju_isspace(cp);
    size_t lo = 0, hi = set->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (set->cp[mid] == cp) return true;
        if (set->cp[mid] < cp) lo = mid + 1;
        else hi = mid;
    }
    return false;
}

/* mode: 1 left, 2 right, 3 both. chars: NULL/None = whitespace. */
jv *jinja_strip(jctx *c, jv *s, jv *chars, int mode, int line) {
    if (chars && chars->t == JV_NONE) chars = NULL;
    if (chars && chars->t != JV_STR) return type_err(line, "strip arg must be None or str", chars);
    cpset set;
    if (!cpset_init(c, &set, chars, line)) return NULL;
    const char *p = s->u.str.s;
    size_t b = 0, e = s->u.str.n;
    if (mode & 1)
        while (b < e) {
            uint32_t cp;
            size_t k = ju_decode(p + b, e - b, &cp);
            if (!in_set(cp, &set)) break;
            b += k;
        }
    if (mode & 2)
        while (e > b) {
            size_t q = e - 1;
            while (q > b && ((unsigned char)p[q] & 0xC0) == 0x80) q--;
            uint32_t cp;
            ju_decode(p + q, e - q, &cp);
            if (!in_set(cp, &set)) break;
            e = q;
        }
    /* what was scanned: the stripped ends, and the copy of the rest */
    if (!jinja_charge(c, (s->u.str.n - (e - b)) + (e - b) / JINJA_BYTES_PER_STEP, line)) return NULL;
    return jv_str(c->a, p + b, e - b);
}

/* Maps code points: 0 lower, 1 upper, 2 capitalize (first upper, rest lower),
 * 3 Python str.title (upper after a non-letter, lower after a letter). */
jv *jinja_case(jctx *c, jv *s, int how) {
    if (!jinja_charge(c, s->u.str.n, 0)) return NULL; /* per character */
    /* Each code point maps to one of at most 4 bytes: short strings (sort keys, one
     * character at a time) are mapped on the stack, longer ones in a growing buffer. */
    char small[4 * 32];
    jbuf b = {0};
    size_t k = 0;
    bool ok = s->u.str.n <= 32 || jbuf_put(&b, "", 0), prev_letter = false, first = true;
    for (size_t i = 0; ok && i < s->u.str.n;) {
        uint32_t cp;
        i += ju_decode(s->u.str.s + i, s->u.str.n - i, &cp);
        utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
        bool letter = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
        bool up = how == 1 || (how == 2 && first) || (how == 3 && !prev_letter);
        uint32_t m = (uint32_t)(up ? utf8proc_toupper((utf8proc_int32_t)cp)
                                   : utf8proc_tolower((utf8proc_int32_t)cp));
        if (s->u.str.n <= 32) {
            k += ju_encode(m, small + k);
        } else {
            char enc[4];
            ok = jbuf_put(&b, enc, ju_encode(m, enc));
        }
        prev_letter = letter;
        first = false;
    }
    jv *r = !ok ? NULL : s->u.str.n <= 32 ? jv_str(c->a, small, k) : jv_str(c->a, b.p, b.n);
    free(b.p);
    return r;
}

/* Python str.split(sep=None, maxsplit=-1). */
jv *jinja_split(jctx *c, jv *s, jv *sep, int64_t maxsplit, int line) {
    jv *l = jv_list(c->a, 0);
    if (!l) return NULL;
    const char *p = s->u.str.s;
    size_t n = s->u.str.n;
    if (sep && sep->t != JV_NONE) {
        if (sep->t != JV_STR) return type_err(line, "split separator must be str or None", sep);
        if (sep->u.str.n == 0) {
            err_set(WICK_ERR_INVALID_ARG, "template line %d: empty separator", line);
            return NULL;
        }
        size_t i = 0;
        if (!jinja_charge(c, n / JINJA_BYTES_PER_STEP, line)) return NULL;
        for (int64_t k = 0; maxsplit < 0 || k < maxsplit; k++) {
            const char *f = memmem(p + i, n - i, sep->u.str.s, sep->u.str.n);
            if (!f || !jinja_charge(c, 1, line)) break; /* per part */
            jv *part = jv_str(c->a, p + i, (size_t)(f - (p + i)));
            if (!part || !jv_list_push(c->a, l, part)) return NULL;
            i = (size_t)(f - p) + sep->u.str.n;
        }
        jv *last = c->failed ? NULL : jv_str(c->a, p + i, n - i);
        return last && jv_list_push(c->a, l, last) ? l : NULL;
    }
    if (!jinja_charge(c, n, line)) return NULL; /* per character */
    size_t i = 0;
    int64_t k = 0;
    for (;;) {
        uint32_t cp;
        while (i < n) { /* skip whitespace */
            size_t d = ju_decode(p + i, n - i, &cp);
            if (!ju_isspace(cp)) break;
            i += d;
        }
        if (i >= n) break;
        size_t b = i;
        if (maxsplit >= 0 && k >= maxsplit) { /* rest, right-stripped */
            size_t e = n;
            jv *t = jv_str(c->a, p + b, e - b), *r = t ? jinja_strip(c, t, NULL, 2, line) : NULL;
            return r && jv_list_push(c->a, l, r) ? l : NULL;
        }
        while (i < n) {
            size_t d = ju_decode(p + i, n - i, &cp);
            if (ju_isspace(cp)) break;
            i += d;
        }
        jv *part = jv_str(c->a, p + b, i - b);
        if (!part || !jv_list_push(c->a, l, part)) return NULL;
        k++;
    }
    return l;
}

/* Python str.replace(old, new, count=-1). */
jv *jinja_replace(jctx *c, jv *s, jv *old, jv *nw, int64_t count, int line) {
    if (!old || !nw || old->t != JV_STR || nw->t != JV_STR)
        return type_err(line, "replace() expects two strings", old ? old : JV_UNDEFINED);
    jbuf b = {0};
    const char *p = s->u.str.s;
    size_t n = s->u.str.n, i = 0;
    uint64_t per = 1 + nw->u.str.n / JINJA_BYTES_PER_STEP; /* work per replacement */
    bool ok = jinja_charge(c, n / JINJA_BYTES_PER_STEP, line) && jbuf_put(&b, "", 0);
    int64_t k = 0;
    if (old->u.str.n == 0) { /* Python inserts `new` around every code point */
        while (ok && (count < 0 || k < count)) {
            ok = jinja_charge(c, per, line) && jbuf_put(&b, nw->u.str.s, nw->u.str.n);
            k++;
            if (i >= n) break;
            uint32_t cp;
            size_t d = ju_decode(p + i, n - i, &cp);
            ok = ok && jbuf_put(&b, p + i, d);
            i += d;
        }
        ok = ok && jbuf_put(&b, p + i, n - i);
    } else {
        while (ok && (count < 0 || k < count)) {
            const char *f = memmem(p + i, n - i, old->u.str.s, old->u.str.n);
            if (!f) break;
            ok = jinja_charge(c, per, line) && jbuf_put(&b, p + i, (size_t)(f - (p + i))) &&
                 jbuf_put(&b, nw->u.str.s, nw->u.str.n);
            i = (size_t)(f - p) + old->u.str.n;
            k++;
        }
        ok = ok && jbuf_put(&b, p + i, n - i);
    }
    jv *r = ok ? jv_str(c->a, b.p, b.n) : NULL;
    free(b.p);
    return r;
}

static const char *const str_methods[] = {
    "strip", "lstrip", "rstrip", "split", "startswith", "endswith", "upper", "lower", "title",
    "capitalize", "replace", "find", "rfind", "count", "join", "isdigit", "isalpha", "isspace",
    "isupper", "islower", "isalnum", "splitlines", "index", NULL};
static const char *const dict_methods[] = {"items", "keys", "values", "get", NULL};

static bool in_list(const char *const *l, const char *name) {
    for (; *l; l++)
        if (!strcmp(*l, name)) return true;
    return false;
}

bool jinja_has_method(const jv *self, const char *name) {
    if (self->t == JV_STR) return in_list(str_methods, name);
    if (self->t == JV_DICT) return in_list(dict_methods, name);
    return false;
}

static bool str_pred(const jv *s, const char *which) {
    if (s->u.str.n == 0) return false;
    bool any_cased = false;
    for (size_t i = 0; i < s->u.str.n;) {
        uint32_t cp;
        i += ju_decode(s->u.str.s + i, s->u.str.n - i, &cp);
        utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
        bool alpha = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
        bool digit = cat == UTF8PROC_CATEGORY_ND;
        if (!strcmp(which, "isdigit") && !digit) return false;
        if (!strcmp(which, "isalpha") && !alpha) return false;
        if (!strcmp(which, "isalnum") && !alpha && !digit) return false;
        if (!strcmp(which, "isspace") && !ju_isspace(cp)) return false;
        if (!strcmp(which, "isupper") && cat == UTF8PROC_CATEGORY_LL) return false;
        if (!strcmp(which, "islower") && cat == UTF8PROC_CATEGORY_LU) return false;
        any_cased |= cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL;
    }
    if (!strcmp(which, "isupper") || !strcmp(which, "islower")) return any_cased;
    return true;
}

static jv *str_method(jctx *c, jv *s, const char *name, jv **args, const char **names, int nargs,
                      int line) {
    jv *a0 = jinja_arg(args, names, nargs, 0, NULL), *a1 = jinja_arg(args, names, nargs, 1, NULL);
    if (!strcmp(name, "strip")) return jinja_strip(c, s, a0, 3, line);
    if (!strcmp(name, "lstrip")) return jinja_strip(c, s, a0, 1, line);
    if (!strcmp(name, "rstrip")) return jinja_strip(c, s, a0, 2, line);
    if (!strcmp(name, "upper")) return jinja_case(c, s, 1);
    if (!strcmp(name, "lower")) return jinja_case(c, s, 0);
    if (!strcmp(name, "capitalize")) return jinja_case(c, s, 2);
    if (!strcmp(name, "title")) return jinja_case(c, s, 3);
    if (!strcmp(name, "split")) {
        jv *sep = jinja_arg(args, names, nargs, 0, "sep");
        jv *ms = jinja_arg(args, names, nargs, 1, "maxsplit");
        if (ms && ms->t != JV_INT) return type_err(line, "maxsplit must be an integer", ms);
        return jinja_split(c, s, sep, ms ? ms->u.i : -1, line);
    }
    if (!strcmp(name, "splitlines")) {
        jv *l = jv_list(c->a, 0);
        size_t i = 0, n = s->u.str.n;
        const char *p = s->u.str.s;
        if (!jinja_charge(c, n / JINJA_BYTES_PER_STEP, line)) return NULL;
        while (l && i < n) {
            if (!jinja_charge(c, 1, line)) return NULL; /* per line */
            size_t e = i;
            while (e < n && p[e] != '\n' && p[e] != '\r') e++;
            jv *part = jv_str(c->a, p + i, e - i);
            if (!part || !jv_list_push(c->a, l, part)) return NULL;
            if (e < n && p[e] == '\r' && e + 1 < n && p[e + 1] == '\n') e++;
            i = e + 1;
        }
        return l;
    }
    if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
        if (!a0) return type_err(line, "startswith/endswith need an argument", JV_UNDEFINED);
        bool start = name[0] == 's';
        size_t np = a0->t == JV_LIST ? a0->u.list.n : 1;
        for (size_t k = 0; k < np; k++) {
            const jv *x = a0->t == JV_LIST ? a0->u.list.v[k] : a0;
            if (x->t != JV_STR) return type_err(line, "startswith/endswith expect str or tuple", x);
            size_t m = x->u.str.n;
            if (!jinja_charge(c, 1 + m / JINJA_BYTES_PER_STEP, line)) return NULL;
            if (m <= s->u.str.n &&
                !memcmp(s->u.str.s + (start ? 0 : s->u.str.n - m), x->u.str.s, m))
                return JV_BOOLV(true);
        }
        return JV_BOOLV(false);
    }
    if (!strcmp(name, "replace")) {
        jv *cnt = jinja_arg(args, names, nargs, 2, "count");
        return jinja_replace(c, s, a0, a1, cnt && cnt->t == JV_INT ? cnt->u.i : -1, line);
    }
    if (!strcmp(name, "find") || !strcmp(name, "rfind") || !strcmp(name, "index") ||
        !strcmp(name, "count")) {
        if (!a0 || a0->t != JV_STR) return type_err(line, "expected a str argument", a0 ? a0 : JV_UNDEFINED);
        const char *p = s->u.str.s, *q = a0->u.str.s;
        size_t n = s->u.str.n, m = a0->u.str.n;
        if (!jinja_charge(c, (n + m) / JINJA_BYTES_PER_STEP, line)) return NULL;
        if (!strcmp(name, "count")) {
            int64_t k = 0;
            if (m == 0) return jv_int(c->a, (int64_t)ju_count(p, n) + 1);
            for (size_t i = 0; i + m <= n;) {
                const char *f = memmem(p + i, n - i, q, m);
                if (!f || !jinja_charge(c, 1, line)) break;
                k++;
                i = (size_t)(f - p) + m;
            }
            return c->failed ? NULL : jv_int(c->a, k);
        }
        /* memmem (linear) rather than a memcmp at every offset, which is quadratic; the
         * last occurrence is the first one in the reversed strings */
        int64_t pos = -1;
        if (m > n) {
            pos = -1;
        } else if (name[0] != 'r') {
            const char *f = memmem(p, n, q, m);
            if (f) pos = (int64_t)(f - p);
        } else if (m == 0) {
            pos = (int64_t)n;
        } else {
            char *rp = jarena_alloc(c->a, n), *rq = jarena_alloc(c->a, m);
            if (!rp || !rq) return NULL;
            for (size_t i = 0; i < n; i++) rp[i] = p[n - 1 - i];
            for (size_t i = 0; i < m; i++) rq[i] = q[m - 1 - i];
            const char *f = memmem(rp, n, rq, m);
            if (f) pos = (int64_t)(n - (size_t)(f - rp) - m);
        }
        if (pos < 0 && name[0] == 'i') {
            err_set(WICK_ERR_INVALID_ARG, "template line %d: substring not found", line);
            return NULL;
        }
        return jv_int(c->a, pos < 0 ? -1 : (int64_t)ju_count(p, (size_t)pos));
    }
    if (!strcmp(name, "join")) {
        if (!a0 || a0->t != JV_LIST) return type_err(line, "join() expects a list", a0 ? a0 : JV_UNDEFINED);
        if (!jinja_charge(c, a0->u.list.n * (1 + s->u.str.n / JINJA_BYTES_PER_STEP), line))
            return NULL;
        jbuf b = {0};
        bool ok = jbuf_put(&b, "", 0);
        for (size_t i = 0; ok && i < a0->u.list.n; i++) {
            if (a0->u.list.v[i]->t != JV_STR) {
                free(b.p);
                return type_err(line, "join() expects str items", a0->u.list.v[i]);
            }
            if (i) ok = jbuf_put(&b, s->u.str.s, s->u.str.n);
            ok = ok && jv_write_str(c, &b, a0->u.list.v[i]);
        }
        jv *r = ok ? jv_str(c->a, b.p, b.n) : NULL;
        free(b.p);
        return r;
    }
    if (!jinja_charge(c, s->u.str.n, line)) return NULL; /* per character */
    return JV_BOOLV(str_pred(s, name)); /* is* predicates */
}

jv *jinja_method(jctx *c, jv *self, const char *name, jv **args, const char **names, int nargs,
                 int line) {
    if (self->t == JV_STR) return str_method(c, self, name, args, names, nargs, line);
    if (self->t == JV_LOOP) { /* loop.cycle(a, b, ...) */
        if (nargs == 0) {
            err_set(WICK_ERR_INVALID_ARG, "template line %d: loop.cycle needs arguments", line);
            return NULL;
        }
        return args[self->u.loop->idx % (size_t)nargs];
    }
    if (self->t == JV_DICT) {
        if (!strcmp(name, "get")) {
            jv *k = jinja_arg(args, names, nargs, 0, NULL), *d = jinja_arg(args, names, nargs, 1, NULL);
            if (!k) return type_err(line, "get() needs a key", JV_UNDEFINED);
            if (!jinja_charge(c, jv_key_cost(k), line)) return NULL;
            jv *v = jv_dict_get(self, k);
            return v ? v : d ? d : JV_NONEV;
        }
        if (!jinja_charge(c, self->u.dict.n, line)) return NULL;
        jv *l = jv_list(c->a, self->u.dict.n);
        for (size_t i = 0; l && i < self->u.dict.n; i++) {
            jv *x;
            if (!strcmp(name, "keys")) x = self->u.dict.k[i];
            else if (!strcmp(name, "values")) x = self->u.dict.v[i];
            else {
                if (!(x = jv_list(c->a, 2))) return NULL;
                x->tuple = true;
                jv_list_push(c->a, x, self->u.dict.k[i]);
                jv_list_push(c->a, x, self->u.dict.v[i]);
            }
            if (!jv_list_push(c->a, l, x)) return NULL;
        }
        return l;
    }
    err_set(WICK_ERR_UNSUPPORTED, "template line %d: method '%s' of %s is not supported", line,
            name, jv_type_name(self));
    return NULL;
}

/* ---- globals ---- */

static bool add_fn(jarena *a, jv *vars, const char *name, jfunc_kind k) {
    jv *f = jarena_alloc(a, sizeof *f);
    if (!f) return false;
    f->t = JV_FUNC;
    f->u.fn.kind = k;
    f->u.fn.name = name;
    return jv_dict_setz(a, vars, name, f);
}

bool jinja_add_globals(jarena *a, jv *vars) {
    return add_fn(a, vars, "range", JF_RANGE) && add_fn(a, vars, "namespace", JF_NAMESPACE) &&
           add_fn(a, vars, "raise_exception", JF_RAISE) &&
           add_fn(a, vars, "strftime_now", JF_STRFTIME) && add_fn(a, vars, "dict", JF_DICT);
}

jv *jinja_call_global(jctx *c, const jv *fn, jv **args, const char **names, int nargs, int line) {
    switch (fn->u.fn.kind) {
    case JF_RANGE: {
        int64_t p[3] = {0, 0, 1};
        int np = 0;
        for (int i = 0; i < nargs; i++) {
            if ((names && names[i]) || args[i]->t != JV_INT || np >= 3)
                return type_err(line, "range() expects 1 to 3 integers", args[i]);
            p[np++] = args[i]->u.i;
        }
        if (np == 0) return type_err(line, "range() expects 1 to 3 integers", JV_UNDEFINED);
        int64_t start = np == 1 ? 0 : p[0], stop = np == 1 ? p[0] : p[1], step = np == 3 ? p[2] : 1;
        if (step == 0) {
            err_set(WICK_ERR_INVALID_ARG, "template line %d: range() step must not be zero", line);
            return NULL;
        }
        /* The length, in unsigned arithmetic: stop - start may exceed INT64_MAX but never
         * 2^64, and the items start + k*step all lie between start and stop, so computing
         * them modulo 2^64 gives the exact values without stepping past INT64_MAX. */
        uint64_t ustep = step < 0 ? 0 - (uint64_t)step : (uint64_t)step;
        uint64_t span = step > 0 ? (stop > start ? (uint64_t)stop - (uint64_t)start : 0)
                                 : (start > stop ? (uint64_t)start - (uint64_t)stop : 0);
        uint64_t len = span ? (span - 1) / ustep + 1 : 0;
        if (len > JINJA_MAX_RANGE) {
            err_set(WICK_ERR_INVALID_ARG, "template line %d: range too big (the sandbox allows "
                    "%d items)", line, JINJA_MAX_RANGE);
            return NULL;
        }
        if (!jinja_charge(c, len, line)) return NULL;
        jv *l = jv_list(c->a, (size_t)len);
        for (uint64_t k = 0; l && k < len; k++) {
            uint64_t off = k * ustep, u = step > 0 ? (uint64_t)start + off : (uint64_t)start - off;
            jv *x = jv_int(c->a, (int64_t)u); /* in [INT64_MIN, INT64_MAX]: exact */
            if (!x || !jv_list_push(c->a, l, x)) return NULL;
        }
        return l;
    }
    case JF_NAMESPACE: case JF_DICT: {
        jv *d = jv_dict(c->a, fn->u.fn.kind == JF_NAMESPACE ? JV_NS : JV_DICT);
        if (!d) return NULL;
        for (int i = 0; i < nargs; i++) {
            if (names && names[i]) {
                if (!jv_dict_setz(c->a, d, names[i], args[i])) return NULL;
            } else if (args[i]->t == JV_DICT) {
                if (!jinja_charge(c, args[i]->u.dict.n, line)) return NULL;
                for (size_t k = 0; k < args[i]->u.dict.n; k++)
                    if (!jv_dict_set(c->a, d, args[i]->u.dict.k[k], args[i]->u.dict.v[k])) return NULL;
            } else {
                return type_err(line, "namespace()/dict() expect keyword arguments or a dict", args[i]);
            }
        }
        return d;
    }
    case JF_RAISE: {
        jv *m = nargs ? jv_to_str(c, args[0]) : NULL;
        err_set(WICK_ERR_INVALID_ARG, "template line %d: raise_exception: %s", line,
                m ? m->u.str.s : "");
        return NULL;
    }
    case JF_STRFTIME: {
        if (nargs < 1 || args[0]->t != JV_STR)
            return type_err(line, "strftime_now() expects a format string", nargs ? args[0] : JV_UNDEFINED);
        if (!jinja_charge(c, args[0]->u.str.n / JINJA_BYTES_PER_STEP, line)) return NULL;
        time_t now = time(NULL);
        struct tm tmv;
        char out[256];
        localtime_r(&now, &tmv);
        size_t k = strftime(out, sizeof out, args[0]->u.str.s, &tmv);
        return jv_str(c->a, out, k);
    }
    default:
        err_set(WICK_ERR_INTERNAL, "template line %d: bad function", line);
        return NULL;
    }
}
