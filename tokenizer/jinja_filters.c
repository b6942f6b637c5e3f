/* jinja_filters.c — the jinja2 filters and tests used by published chat templates.
 *
 * Each follows jinja2 3.1's documented behaviour; tojson is transformers' override
 * (json.dumps with ensure_ascii=False; separators ", " / ": " without indent, "," / ": " with
 * indent; keys unsorted unless sort_keys=true). Unknown filter/test names are rejected at
 * compile time (jinja_filter_known / jinja_test_known) so a template using one fails early
 * with WICK_ERR_UNSUPPORTED. Not supported: filters that need Markup/autoescape semantics
 * beyond escape/safe, format/xmlattr/urlize/wordwrap/groupby/batch/slice. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "tokenizer/jinja_internal.h"

static const char *const filter_names[] = {
    "trim", "length", "count", "tojson", "string", "int", "float", "lower", "upper", "title",
    "capitalize", "replace", "join", "first", "last", "default", "d", "list", "items",
    "selectattr", "rejectattr", "select", "reject", "map", "unique", "reverse", "sort", "abs",
    "round", "indent", "safe", "e", "escape", "dictsort", "sum", "min", "max", "wordcount",
    NULL};

static const char *const test_names[] = {
    "defined", "undefined", "none", "string", "number", "integer", "float", "mapping",
    "iterable", "sequence", "boolean", "true", "false", "odd", "even", "divisibleby", "eq",
    "equalto", "==", "ne", "!=", "lt", "<", "le", "<=", "gt", ">", "ge", ">=", "in", "callable",
    "sameas", "lower", "upper", "escaped", NULL};

static bool in_names(const char *const *l, const char *n) {
    for (; *l; l++)
        if (!strcmp(*l, n)) return true;
    return false;
}
bool jinja_filter_known(const char *name) { return in_names(filter_names, name); }
bool jinja_test_known(const char *name) { return in_names(test_names, name); }

static jv *ferr(int line, const char *filter, const char *what, const jv *v) {
    err_set(WICK_ERR_INVALID_ARG, "template line %d: filter %s: %s, got %s", line, filter, what,
            jv_type_name(v));
    return NULL;
}

/* Follows a dotted attribute path ("a.b", "0") like jinja2's make_attrgetter. */
static jv *attr_path(jctx *c, jv *v, const char *path) {
    const char *p = path;
    if (!jinja_charge(c, 1 + strlen(path) / JINJA_BYTES_PER_STEP, 0)) return NULL;
    while (v && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        bool digits = n > 0;
        for (size_t i = 0; i < n; i++) digits &= p[i] >= '0' && p[i] <= '9';
        jv *nx = NULL;
        if ((v->t == JV_DICT || v->t == JV_NS)) nx = jv_dict_getz(v, p, n);
        else if (v->t == JV_LIST && digits) {
            size_t k = (size_t)strtoull(p, NULL, 10);
            if (k < v->u.list.n) nx = v->u.list.v[k];
        }
        v = nx ? nx : jv_undef_named(c->a, path);
        p += n + (dot ? 1 : 0);
        if (!dot) break;
    }
    return v;
}

static jv *as_seq(jctx *c, jv *v, const char *filter, int line) {
    if (v->t == JV_LIST) return v;
    /* a dict gives its keys, a string one value per character */
    if (!jinja_charge(c, v->t == JV_DICT ? v->u.dict.n : v->t == JV_STR ? v->u.str.n : 0, line))
        return NULL;
    jv *l = jv_list(c->a, 0);
    if (!l) return NULL;
    if (v->t == JV_UNDEF) return l;
    if (v->t == JV_DICT) {
        for (size_t i = 0; i < v->u.dict.n; i++)
            if (!jv_list_push(c->a, l, v->u.dict.k[i])) return NULL;
        return l;
    }
    if (v->t == JV_STR) {
        for (size_t i = 0; i < v->u.str.n;) {
            uint32_t cp;
            size_t k = ju_decode(v->u.str.s + i, v->u.str.n - i, &cp);
            jv *ch = jv_str(c->a, v->u.str.s + i, k);
            if (!ch || !jv_list_push(c->a, l, ch)) return NULL;
            i += k;
        }
        return l;
    }
    return ferr(line, filter, "expected an iterable", v);
}

/* Sort key: lowercased strings unless case-sensitive. */
static jv *sort_key(jctx *c, jv *v, const char *attr, bool cs) {
    if (attr) v = attr_path(c, v, attr);
    if (v && v->t == JV_STR && !cs) v = jinja_case(c, v, 0);
    return v;
}

static jv *sorted(jctx *c, jv *l, const char *attr, bool cs, bool rev, int line) {
    size_t n = l->u.list.n;
    jv **keys = jarena_alloc(c->a, (n + 1) * sizeof *keys);
    size_t *idx = jarena_alloc(c->a, (n + 1) * sizeof *idx);
    if (!keys || !idx || !jinja_charge(c, n, line)) return NULL;
    for (size_t i = 0; i < n; i++) {
        idx[i] = i;
        if (!(keys[i] = sort_key(c, l->u.list.v[i], attr, cs))) return NULL;
    }
    if (!jv_sort(c, idx, n, keys, rev)) {
        err_wrap(WICK_ERR_INVALID_ARG, "template line %d: sort", line);
        return NULL;
    }
    jv *r = jv_list(c->a, n);
    for (size_t i = 0; r && i < n; i++) jv_list_push(c->a, r, l->u.list.v[idx[i]]);
    return r;
}

static jv *strval(jctx *c, jv *v) { return jv_to_str(c, v); }

static jv *overflow(int line) {
    err_set(WICK_ERR_UNSUPPORTED, "template line %d: integer overflow (wick's integers are "
            "64-bit)", line);
    return NULL;
}

/* Python int(f) for |int: truncation toward zero. NaN falls back to the default (jinja2's
 * ValueError path), infinity raises like Python's OverflowError, and values outside int64
 * (Python would make a bigger int) are reported rather than converted, which in C would be
 * undefined. */
static jv *float_to_int(jctx *c, double d, jv *dflt, int line) {
    if (isnan(d)) return dflt ? dflt : jv_int(c->a, 0);
    if (isinf(d)) {
        err_set(WICK_ERR_INVALID_ARG, "template line %d: filter int: cannot convert float "
                "infinity to integer", line);
        return NULL;
    }
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0)) return overflow(line);
    return jv_int(c->a, (int64_t)d);
}

static jv *fmt_html_escape(jctx *c, jv *s) {
    if (!jinja_charge(c, s->u.str.n, 0)) return NULL; /* per character */
    jbuf b = {0};
    bool ok = jbuf_put(&b, "", 0);
    size_t run = 0; /* unescaped bytes are copied in runs */
    for (size_t i = 0; ok && i < s->u.str.n; i++) {
        const char *e;
        switch (s->u.str.s[i]) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '"': e = "&#34;"; break;
        case '\'': e = "&#39;"; break;
        default: run++; continue;
        }
        ok = jbuf_put(&b, s->u.str.s + i - run, run) && jbuf_put(&b, e, strlen(e));
        run = 0;
    }
    ok = ok && jbuf_put(&b, s->u.str.s + s->u.str.n - run, run);
    jv *r = ok ? jv_str(c->a, b.p, b.n) : NULL;
    free(b.p);
    return r;
}

/* select/reject/selectattr/rejectattr: keep items whose test result == want. */
static jv *select_items(jctx *c, jv *seq, const char *attr, jv **args, int nargs, int first_test,
                        bool want, const char *fname, int line) {
    const char *test = NULL;
    if (nargs > first_test) {
        if (args[first_test]->t != JV_STR) return ferr(line, fname, "test name must be a string", args[first_test]);
        test = args[first_test]->u.str.s;
        if (!jinja_test_known(test)) {
            err_set(WICK_ERR_UNSUPPORTED, "template line %d: test '%s' is not supported", line, test);
            return NULL;
        }
    }
    jv *r = jv_list(c->a, 0);
    if (!jinja_charge(c, seq->u.list.n, line)) return NULL;
    for (size_t i = 0; r && i < seq->u.list.n; i++) {
        jv *item = seq->u.list.v[i], *x = attr ? attr_path(c, item, attr) : item;
        if (!x) return NULL;
        int t = test ? jinja_test(c, test, x, args + first_test + 1, nargs - first_test - 1, line)
                     : jv_truthy(x);
        if (t < 0) return NULL;
        if ((t != 0) == want && !jv_list_push(c->a, r, item)) return NULL;
    }
    return r;
}

jv *jinja_filter(jctx *c, const char *f, jv *v, jv **args, const char **names, int nargs,
                 int line) {
    jv *a0 = jinja_arg(args, names, nargs, 0, NULL);
    #define KW(pos, name) jinja_arg(args, names, nargs, pos, name)
    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        jv *dv = KW(0, "default_value"), *boolean = KW(1, "boolean");
        bool use = v->t == JV_UNDEF || (boolean && jv_truthy(boolean) && !jv_truthy(v));
        return use ? (dv ? dv : jv_str(c->a, "", 0)) : v;
    }
    if (!strcmp(f, "safe")) return v;
    if (!strcmp(f, "string")) return strval(c, v);
    if (!strcmp(f, "length") || !strcmp(f, "count")) {
        switch (v->t) {
        case JV_UNDEF: return jv_int(c->a, 0);
        case JV_STR:
            if (!jinja_charge(c, v->u.str.n / JINJA_BYTES_PER_STEP, line)) return NULL;
            return jv_int(c->a, (int64_t)ju_count(v->u.str.s, v->u.str.n));
        case JV_LIST: return jv_int(c->a, (int64_t)v->u.list.n);
        case JV_DICT: case JV_NS: return jv_int(c->a, (int64_t)v->u.dict.n);
        default: return ferr(line, f, "object has no len()", v);
        }
    }
    if (!strcmp(f, "tojson")) {
        jv *ind = KW(0, "indent"), *sk = KW(-1, "sort_keys");
        char spaces[65] = {0};
        const char *is = NULL;
        if (ind && ind->t == JV_INT) {
            int64_t k = ind->u.i < 0 ? 0 : ind->u.i > 64 ? 64 : ind->u.i;
            memset(spaces, ' ', (size_t)k);
            is = spaces;
        } else if (ind && ind->t == JV_STR) {
            is = ind->u.str.s;
        } else if (ind && ind->t != JV_NONE) {
            return ferr(line, f, "indent must be an int or a string", ind);
        }
        jbuf b = {0};
        bool ok = jbuf_put(&b, "", 0) && jv_write_json(c, &b, v, is, sk && jv_truthy(sk));
        jv *r = ok ? jv_str(c->a, b.p, b.n) : NULL;
        free(b.p);
        if (!ok) err_wrap(WICK_ERR_INVALID_ARG, "template line %d", line);
        return r;
    }
    if (!strcmp(f, "int") || !strcmp(f, "float")) {
        bool isint = f[0] == 'i';
        jv *dflt = KW(0, "default");
        if (v->t == JV_INT) return isint ? v : jv_float(c->a, (double)v->u.i);
        if (v->t == JV_BOOL) return isint ? jv_int(c->a, v->u.b) : jv_float(c->a, v->u.b);
        if (v->t == JV_FLOAT) return isint ? float_to_int(c, v->u.f, dflt, line) : v;
        if (v->t == JV_STR) {
            char *end;
            const char *s = v->u.str.s;
            if (!jinja_charge(c, v->u.str.n / JINJA_BYTES_PER_STEP, line)) return NULL;
            while (*s == ' ' || *s == '\t' || *s == '\n') s++;
            errno = 0;
            long long iv = strtoll(s, &end, 10);
            bool full = end != s, range_err = errno == ERANGE;
            while (full && (*end == ' ' || *end == '\t' || *end == '\n')) end++;
            if (full && !*end) {
                if (range_err && isint) return overflow(line); /* Python: a bigger int */
                return isint ? jv_int(c->a, iv) : jv_float(c->a, range_err ? strtod(s, NULL) : (double)iv);
            }
            /* Python's float() takes no hex floats, which strtod would */
            bool hex = strchr(s, 'x') || strchr(s, 'X');
            double dv = hex ? 0 : strtod(s, &end);
            full = !hex && end != s;
            while (full && (*end == ' ' || *end == '\t' || *end == '\n')) end++;
            if (full && !*end) { /* jinja2 catches OverflowError here: "inf"|int is the default */
                if (!isint) return jv_float(c->a, dv);
                if (!isinf(dv)) return float_to_int(c, dv, dflt, line);
            }
        }
        if (dflt) return dflt;
        return isint ? jv_int(c->a, 0) : jv_float(c->a, 0.0);
    }
    if (!strcmp(f, "abs")) {
        if (v->t == JV_INT) {
            if (v->u.i == INT64_MIN) return overflow(line);
            return v->u.i < 0 ? jv_int(c->a, -v->u.i) : v;
        }
        if (v->t == JV_BOOL) return jv_int(c->a, v->u.b);
        if (v->t == JV_FLOAT) return jv_float(c->a, fabs(v->u.f));
        return ferr(line, f, "expected a number", v);
    }
    if (!strcmp(f, "round")) {
        jv *prec = KW(0, "precision"), *method = KW(1, "method");
        if (!jv_is_num(v)) return ferr(line, f, "expected a number", v);
        int64_t p = prec && prec->t == JV_INT ? prec->u.i : 0;
        double x = jv_num(v), m = pow(10.0, (double)p), r;
        const char *meth = method && method->t == JV_STR ? method->u.str.s : "common";
        if (!strcmp(meth, "ceil")) r = ceil(x * m) / m;
        else if (!strcmp(meth, "floor")) r = floor(x * m) / m;
        else r = nearbyint(x * m) / m; /* ties to even, like Python round() */
        return jv_float(c->a, r);
    }
    if (!strcmp(f, "first") || !strcmp(f, "last")) {
        jv *l = as_seq(c, v, f, line);
        if (!l) return NULL;
        if (!l->u.list.n) return jv_undef_named(c->a, f);
        return l->u.list.v[f[0] == 'f' ? 0 : l->u.list.n - 1];
    }
    if (!strcmp(f, "list")) {
        jv *l = as_seq(c, v, f, line), *r = l && jinja_charge(c, l->u.list.n, line) ? jv_list(c->a, l->u.list.n) : NULL;
        for (size_t i = 0; r && i < l->u.list.n; i++) jv_list_push(c->a, r, l->u.list.v[i]);
        return r;
    }
    if (!strcmp(f, "items") || !strcmp(f, "dictsort")) {
        if (v->t == JV_UNDEF) return jv_list(c->a, 0);
        if (v->t != JV_DICT) return ferr(line, f, "expected a mapping", v);
        if (!jinja_charge(c, v->u.dict.n, line)) return NULL;
        jv *l = jv_list(c->a, v->u.dict.n);
        for (size_t i = 0; l && i < v->u.dict.n; i++) {
            jv *t = jv_list(c->a, 2);
            if (!t) return NULL;
            t->tuple = true;
            jv_list_push(c->a, t, v->u.dict.k[i]);
            jv_list_push(c->a, t, v->u.dict.v[i]);
            if (!jv_list_push(c->a, l, t)) return NULL;
        }
        if (l && f[0] == 'd') { /* dictsort: by key, case-insensitive */
            jv *keys = jv_list(c->a, l->u.list.n);
            for (size_t i = 0; keys && i < l->u.list.n; i++) jv_list_push(c->a, keys, l->u.list.v[i]);
            return keys ? sorted(c, keys, "0", false, false, line) : NULL;
        }
        return l;
    }
    if (!strcmp(f, "reverse")) {
        if (v->t == JV_STR) {
            jv *l = as_seq(c, v, f, line);
            jbuf b = {0};
            bool ok = l && jbuf_put(&b, "", 0);
            for (size_t i = l ? l->u.list.n : 0; ok && i > 0; i--)
                ok = jbuf_put(&b, l->u.list.v[i - 1]->u.str.s, l->u.list.v[i - 1]->u.str.n);
            jv *r = ok ? jv_str(c->a, b.p, b.n) : NULL;
            free(b.p);
            return r;
        }
        jv *l = as_seq(c, v, f, line), *r = l && jinja_charge(c, l->u.list.n, line) ? jv_list(c->a, l->u.list.n) : NULL;
        for (size_t i = r ? l->u.list.n : 0; i > 0; i--) jv_list_push(c->a, r, l->u.list.v[i - 1]);
        return r;
    }
    if (!strcmp(f, "sort")) {
        jv *rev = KW(0, "reverse"), *cs = KW(1, "case_sensitive"), *attr = KW(2, "attribute");
        jv *l = as_seq(c, v, f, line);
        if (!l) return NULL;
        return sorted(c, l, attr && attr->t == JV_STR ? attr->u.str.s : NULL,
                      cs && jv_truthy(cs), rev && jv_truthy(rev), line);
    }
    if (!strcmp(f, "unique")) { /* jinja2 keeps a set of seen keys: hashable keys only */
        jv *cs = KW(0, "case_sensitive"), *attr = KW(1, "attribute");
        jv *l = as_seq(c, v, f, line), *r = l ? jv_list(c->a, 0) : NULL, *seen = jv_dict(c->a, JV_DICT);
        if (!r || !seen || !jinja_charge(c, l->u.list.n, line)) return NULL;
        for (size_t i = 0; i < l->u.list.n; i++) {
            jv *k = sort_key(c, l->u.list.v[i], attr && attr->t == JV_STR ? attr->u.str.s : NULL,
                             cs && jv_truthy(cs));
            if (!k) return NULL;
            if (k->t == JV_STR && !jinja_charge(c, k->u.str.n / JINJA_BYTES_PER_STEP, line))
                return NULL;
            if (jv_dict_get(seen, k)) continue;
            if (!jv_dict_set(c->a, seen, k, JV_NONEV)) {
                err_wrap(WICK_ERR_INVALID_ARG, "template line %d: unique", line);
                return NULL;
            }
            if (!jv_list_push(c->a, r, l->u.list.v[i])) return NULL;
        }
        return r;
    }
    if (!strcmp(f, "join")) {
        jv *sep = KW(0, "d"), *attr = KW(1, "attribute");
        jv *l = as_seq(c, v, f, line);
        if (!l || !jinja_charge(c, l->u.list.n, line)) return NULL;
        jbuf b = {0};
        bool ok = jbuf_put(&b, "", 0);
        for (size_t i = 0; ok && i < l->u.list.n; i++) {
            if (i && sep) ok = jv_write_str(c, &b, sep);
            jv *x = attr && attr->t == JV_STR ? attr_path(c, l->u.list.v[i], attr->u.str.s) : l->u.list.v[i];
            ok = ok && x && jv_write_str(c, &b, x);
        }
        jv *r = ok ? jv_str(c->a, b.p, b.n) : NULL;
        free(b.p);
        return r;
    }
    if (!strcmp(f, "map")) {
        jv *attr = KW(-1, "attribute"), *dflt = KW(-1, "default");
        jv *l = as_seq(c, v, f, line), *r = l ? jv_list(c->a, l->u.list.n) : NULL;
        if (!r || !jinja_charge(c, l->u.list.n, line)) return NULL;
        if (!attr && (!a0 || a0->t != JV_STR)) return ferr(line, f, "expected a filter name or attribute=", a0 ? a0 : JV_UNDEFINED);
        if (!attr && !jinja_filter_known(a0->u.str.s)) {
            err_set(WICK_ERR_UNSUPPORTED, "template line %d: filter '%s' is not supported", line, a0->u.str.s);
            return NULL;
        }
        for (size_t i = 0; i < l->u.list.n; i++) {
            jv *x;
            if (attr) {
                if (attr->t != JV_STR) return ferr(line, f, "attribute must be a string", attr);
                x = attr_path(c, l->u.list.v[i], attr->u.str.s);
                if (x && x->t == JV_UNDEF && dflt) x = dflt;
            } else { /* map('map', 'map', ...) nests one filter call per argument */
                if (c->depth >= JINJA_MAX_EVAL_DEPTH) {
                    err_set(WICK_ERR_INVALID_ARG, "template line %d: map() nested too deeply", line);
                    return NULL;
                }
                c->depth++;
                x = jinja_filter(c, a0->u.str.s, l->u.list.v[i], args + 1, names ? names + 1 : NULL,
                                 nargs - 1, line);
                c->depth--;
            }
            if (!x || !jv_list_push(c->a, r, x)) return NULL;
        }
        return r;
    }
    if (!strcmp(f, "select") || !strcmp(f, "reject") || !strcmp(f, "selectattr") ||
        !strcmp(f, "rejectattr")) {
        jv *l = as_seq(c, v, f, line);
        if (!l) return NULL;
        bool attr = strstr(f, "attr") != NULL;
        if (attr && (!a0 || a0->t != JV_STR)) return ferr(line, f, "expected an attribute name", a0 ? a0 : JV_UNDEFINED);
        return select_items(c, l, attr ? a0->u.str.s : NULL, args, nargs, attr ? 1 : 0,
                            f[0] == 's', f, line);
    }
    if (!strcmp(f, "sum") || !strcmp(f, "min") || !strcmp(f, "max")) {
        jv *l = as_seq(c, v, f, line);
        if (!l) return NULL;
        jv *attr = KW(-1, "attribute");
        const char *ap = attr && attr->t == JV_STR ? attr->u.str.s : NULL;
        if (f[1] == 'u') {
            jv *acc = KW(-1, "start");
            if (!acc) acc = jv_int(c->a, 0);
            if (!jinja_charge(c, l->u.list.n, line)) return NULL;
            for (size_t i = 0; acc && i < l->u.list.n; i++) {
                jv *x = ap ? attr_path(c, l->u.list.v[i], ap) : l->u.list.v[i];
                if (!x) return NULL;
                if (!jv_is_num(x) || !jv_is_num(acc)) return ferr(line, f, "expected numbers", x);
                if (acc->t != JV_FLOAT && x->t != JV_FLOAT) {
                    int64_t s, p = acc->t == JV_INT ? acc->u.i : acc->u.b;
                    if (__builtin_add_overflow(p, x->t == JV_INT ? x->u.i : x->u.b, &s))
                        return overflow(line);
                    acc = jv_int(c->a, s);
                } else {
                    acc = jv_float(c->a, jv_num(acc) + jv_num(x));
                }
            }
            return acc;
        }
        if (!l->u.list.n) return jv_undef_named(c->a, f);
        jv *s = sorted(c, l, ap, false, f[1] == 'a', line);
        return s ? s->u.list.v[0] : NULL;
    }
    /* string filters */
    if (v->t == JV_UNDEF && (!strcmp(f, "e") || !strcmp(f, "escape"))) return jv_str(c->a, "", 0);
    jv *s = strval(c, v);
    if (!s) return NULL;
    if (!strcmp(f, "trim")) return jinja_strip(c, s, KW(0, "chars"), 3, line);
    if (!strcmp(f, "lower")) return jinja_case(c, s, 0);
    if (!strcmp(f, "upper")) return jinja_case(c, s, 1);
    if (!strcmp(f, "capitalize")) return jinja_case(c, s, 2);
    if (!strcmp(f, "e") || !strcmp(f, "escape")) return fmt_html_escape(c, s);
    if (!strcmp(f, "replace")) {
        jv *cnt = KW(2, "count");
        return jinja_replace(c, s, a0, KW(1, "new"), cnt && cnt->t == JV_INT ? cnt->u.i : -1, line);
    }
    if (!strcmp(f, "wordcount")) {
        jv *l = jinja_split(c, s, NULL, -1, line);
        return l ? jv_int(c->a, (int64_t)l->u.list.n) : NULL;
    }
    if (!strcmp(f, "title")) { /* jinja2: words begin after runs of [-\s({[<] */
        if (!jinja_charge(c, s->u.str.n, line)) return NULL; /* per character */
        jbuf b = {0};
        bool ok = jbuf_put(&b, "", 0), start = true;
        for (size_t i = 0; ok && i < s->u.str.n;) {
            uint32_t cp;
            size_t k = ju_decode(s->u.str.s + i, s->u.str.n - i, &cp);
            bool delim = ju_isspace(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
            if (delim) {
                ok = jbuf_put(&b, s->u.str.s + i, k);
            } else {
                char enc[4];
                uint32_t m = (uint32_t)(start ? utf8proc_toupper((utf8proc_int32_t)cp)
                                              : utf8proc_tolower((utf8proc_int32_t)cp));
                ok = jbuf_put(&b, enc, ju_encode(m, enc));
            }
            start = delim;
            i += k;
        }
        jv *r = ok ? jv_str(c->a, b.p, b.n) : NULL;
        free(b.p);
        return r;
    }
    if (!strcmp(f, "indent")) {
        jv *w = KW(0, "width"), *first = KW(1, "first"), *blank = KW(2, "blank");
        char pad[257] = {0};
        const char *ps = pad;
        if (!w) memset(pad, ' ', 4);
        else if (w->t == JV_INT) memset(pad, ' ', (size_t)(w->u.i < 0 ? 0 : w->u.i > 256 ? 256 : w->u.i));
        else if (w->t == JV_STR) ps = w->u.str.s;
        else return ferr(line, f, "width must be an int or a string", w);
        jbuf b = {0};
        bool ok = jbuf_put(&b, "", 0);
        const char *p = s->u.str.s;
        size_t n = s->u.str.n, i = 0;
        bool firstline = true;
        size_t pn = strlen(ps);
        if (!jinja_charge(c, n / JINJA_BYTES_PER_STEP, line)) ok = false;
        while (ok && i <= n) {
            if (!jinja_charge(c, 1 + pn / JINJA_BYTES_PER_STEP, line)) { /* per line */
                ok = false;
                break;
            }
            size_t e = i;
            while (e < n && p[e] != '\n') e++;
            bool empty = e == i;
            bool add = firstline ? (first && jv_truthy(first)) : (!empty || (blank && jv_truthy(blank)));
            if (!firstline) ok = jbuf_putc(&b, '\n');
            if (ok && add && !(firstline && empty && e >= n)) ok = jbuf_put(&b, ps, pn);
            ok = ok && jbuf_put(&b, p + i, e - i);
            firstline = false;
            if (e >= n) break;
            i = e + 1;
        }
        jv *r = ok ? jv_str(c->a, b.p, b.n) : NULL;
        free(b.p);
        return r;
    }
    #undef KW
    err_set(WICK_ERR_UNSUPPORTED, "template line %d: filter '%s' is not supported", line, f);
    return NULL;
}

int jinja_test(jctx *c, const char *t, jv *v, jv **args, int nargs, int line) {
    jv *a0 = nargs > 0 ? args[0] : NULL;
    (void)c;
    if (!strcmp(t, "defined")) return v->t != JV_UNDEF;
    if (!strcmp(t, "undefined")) return v->t == JV_UNDEF;
    if (!strcmp(t, "none")) return v->t == JV_NONE;
    if (!strcmp(t, "string")) return v->t == JV_STR;
    if (!strcmp(t, "number")) return v->t == JV_INT || v->t == JV_FLOAT || v->t == JV_BOOL;
    if (!strcmp(t, "integer")) return v->t == JV_INT;
    if (!strcmp(t, "float")) return v->t == JV_FLOAT;
    if (!strcmp(t, "boolean")) return v->t == JV_BOOL;
    if (!strcmp(t, "true")) return v->t == JV_BOOL && v->u.b;
    if (!strcmp(t, "false")) return v->t == JV_BOOL && !v->u.b;
    if (!strcmp(t, "mapping")) return v->t == JV_DICT;
    if (!strcmp(t, "iterable")) return v->t == JV_LIST || v->t == JV_STR || v->t == JV_DICT || v->t == JV_UNDEF;
    if (!strcmp(t, "sequence")) return v->t == JV_LIST || v->t == JV_STR || v->t == JV_DICT || v->t == JV_UNDEF;
    if (!strcmp(t, "callable")) return v->t == JV_FUNC;
    if (!strcmp(t, "escaped")) return false;
    if (!strcmp(t, "lower") || !strcmp(t, "upper")) {
        if (v->t != JV_STR) return false;
        jv *m = jinja_case(c, v, t[0] == 'u');
        return m ? jv_equal(c, m, v) : -1;
    }
    if (!strcmp(t, "odd") || !strcmp(t, "even") || !strcmp(t, "divisibleby")) {
        if (v->t != JV_INT) {
            err_set(WICK_ERR_INVALID_ARG, "template line %d: test %s expects an integer, got %s",
                    line, t, jv_type_name(v));
            return -1;
        }
        if (t[0] == 'o') return (v->u.i & 1) != 0;
        if (t[0] == 'e') return (v->u.i & 1) == 0;
        if (!a0 || a0->t != JV_INT || a0->u.i == 0) {
            err_set(WICK_ERR_INVALID_ARG, "template line %d: divisibleby needs a non-zero int", line);
            return -1;
        }
        return a0->u.i == -1 || v->u.i % a0->u.i == 0; /* INT64_MIN % -1 traps */
    }
    if (!a0) {
        err_set(WICK_ERR_INVALID_ARG, "template line %d: test %s needs an argument", line, t);
        return -1;
    }
    if (!strcmp(t, "sameas")) return v == a0 || (v->t == a0->t && (v->t == JV_NONE || (v->t == JV_BOOL && v->u.b == a0->u.b)));
    if (!strcmp(t, "eq") || !strcmp(t, "equalto") || !strcmp(t, "==")) return jv_equal(c, v, a0);
    if (!strcmp(t, "ne") || !strcmp(t, "!=")) return !jv_equal(c, v, a0);
    if (!strcmp(t, "in")) {
        uint64_t work = a0->t == JV_STR ? a0->u.str.n / JINJA_BYTES_PER_STEP
                      : a0->t == JV_LIST ? a0->u.list.n : jv_key_cost(v);
        if (!jinja_charge(c, work, line)) return -1;
        if (a0->t == JV_STR && v->t == JV_STR)
            return v->u.str.n == 0 || memmem(a0->u.str.s, a0->u.str.n, v->u.str.s, v->u.str.n) != NULL;
        if (a0->t == JV_LIST) {
            for (size_t i = 0; i < a0->u.list.n; i++)
                if (jv_equal(c, v, a0->u.list.v[i])) return 1;
            return c->failed ? -1 : 0;
        }
        if (a0->t == JV_DICT) return jv_dict_get(a0, v) != NULL;
        err_set(WICK_ERR_INVALID_ARG, "template line %d: test in: bad container %s", line, jv_type_name(a0));
        return -1;
    }
    bool ok;
    int k = jv_compare(c, v, a0, &ok);
    if (!ok) {
        err_wrap(WICK_ERR_INVALID_ARG, "template line %d", line);
        return -1;
    }
    if (!strcmp(t, "lt") || !strcmp(t, "<")) return k < 0;
    if (!strcmp(t, "le") || !strcmp(t, "<=")) return k <= 0;
    if (!strcmp(t, "gt") || !strcmp(t, ">")) return k > 0;
    return k >= 0;
}
