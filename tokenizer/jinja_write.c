/* jinja_write.c — the three ways a Jinja value is written: str() (what {{ x }} prints),
 * repr() (items inside printed lists/dicts) and json.dumps (the tojson filter), plus
 * Python's shortest round-trip float repr.
 *
 * Writing is bounded three ways: the buffer's byte limit (jbuf), the render's step budget
 * (one step per container item, one per JINJA_BYTES_PER_STEP bytes of string), and
 * JINJA_MAX_VALUE_DEPTH levels of nesting, which also stops a namespace that contains itself
 * (Python would print "{...}" there; wick reports an error). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"

void jv_float_repr(double f, char *buf) {
    if (isnan(f)) { strcpy(buf, "nan"); return; }
    if (isinf(f)) { strcpy(buf, f > 0 ? "inf" : "-inf"); return; }
    char tmp[40];
    int prec;
    /* Shortest round-trip digits. Any decimal of <= 15 significant digits that round-trips
     * reappears (zero-padded) when rounding to 15 digits, so trying 15, 16, 17 finds the
     * same digits as trying 1..17, in at most three conversions. Subnormals have fewer
     * digits of precision, so they search from 1 (checked on 20M random doubles). */
    for (prec = fabs(f) < DBL_MIN ? 1 : 15; prec <= 17; prec++) {
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
    size_t run = 0; /* flush unescaped runs in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        size_t en = 0;
        if (c == (unsigned char)q || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            en = 2;
        } else if (c == '\n') memcpy(e, "\\n", en = 2);
        else if (c == '\r') memcpy(e, "\\r", en = 2);
        else if (c == '\t') memcpy(e, "\\t", en = 2);
        else if (c < 0x20 || c == 0x7F) en = (size_t)snprintf(e, sizeof e, "\\x%02x", c);
        if (!en) {
            run++;
            continue;
        }
        if (!jbuf_put(b, s + i - run, run) || !jbuf_put(b, e, en)) return false;
        run = 0;
    }
    return jbuf_put(b, s + n - run, run) && jbuf_putc(b, q);
}

static bool write_val(jctx *c, jbuf *b, const jv *v, bool repr, int depth);

static bool write_float(jbuf *b, double f) {
    char tmp[40];
    jv_float_repr(f, tmp);
    return jbuf_put(b, tmp, strlen(tmp));
}

/* One level into a list, dict or namespace: bounded depth (namespaces can hold themselves)
 * and one step per item. */
static bool enter_value(jctx *c, int depth, size_t items) {
    if (c->failed) return false;
    if (depth >= JINJA_MAX_VALUE_DEPTH) {
        err_set(WICK_ERR_INVALID_ARG, "template: value nested deeper than %d levels (or "
                "containing itself) cannot be printed", JINJA_MAX_VALUE_DEPTH);
        c->failed = true;
        return false;
    }
    return jinja_charge(c, 1 + items, 0);
}

static bool write_seq(jctx *c, jbuf *b, const jv *v, int depth) {
    bool tup = v->t == JV_LIST && v->tuple;
    if (v->t == JV_LIST) {
        if (!enter_value(c, depth, v->u.list.n) || !jbuf_putc(b, tup ? '(' : '[')) return false;
        for (size_t i = 0; i < v->u.list.n; i++) {
            if (i && !jbuf_put(b, ", ", 2)) return false;
            if (!write_val(c, b, v->u.list.v[i], true, depth + 1)) return false;
        }
        if (tup && v->u.list.n == 1 && !jbuf_putc(b, ',')) return false;
        return jbuf_putc(b, tup ? ')' : ']');
    }
    if (!enter_value(c, depth, v->u.dict.n)) return false;
    if (v->t == JV_NS && !jbuf_put(b, "<Namespace ", 11)) return false;
    if (!jbuf_putc(b, '{')) return false;
    for (size_t i = 0; i < v->u.dict.n; i++) {
        if (i && !jbuf_put(b, ", ", 2)) return false;
        if (!write_val(c, b, v->u.dict.k[i], true, depth + 1) || !jbuf_put(b, ": ", 2) ||
            !write_val(c, b, v->u.dict.v[i], true, depth + 1))
            return false;
    }
    return jbuf_putc(b, '}') && (v->t != JV_NS || jbuf_putc(b, '>'));
}

/* str(v) or, inside containers, repr(v). */
static bool write_val(jctx *c, jbuf *b, const jv *v, bool repr, int depth) {
    switch (v->t) {
    case JV_UNDEF: return true;
    case JV_NONE: return jbuf_put(b, "None", 4);
    case JV_BOOL: return v->u.b ? jbuf_put(b, "True", 4) : jbuf_put(b, "False", 5);
    case JV_INT: return jbuf_printf(b, "%lld", (long long)v->u.i);
    case JV_FLOAT: return write_float(b, v->u.f);
    case JV_STR:
        if (!jinja_charge(c, v->u.str.n / JINJA_BYTES_PER_STEP, 0)) return false;
        return repr ? write_repr_str(b, v->u.str.s, v->u.str.n) : jbuf_put(b, v->u.str.s, v->u.str.n);
    case JV_LIST: case JV_DICT: case JV_NS: return write_seq(c, b, v, depth);
    case JV_FUNC: return jbuf_printf(b, "<function %s>", v->u.fn.name ? v->u.fn.name : "builtin");
    case JV_LOOP: return jbuf_put(b, "<LoopContext>", 13);
    }
    return true;
}

bool jv_write_str(jctx *c, jbuf *b, const jv *v) { return write_val(c, b, v, false, 0); }
bool jv_write_repr(jctx *c, jbuf *b, const jv *v) { return write_val(c, b, v, true, 0); }

jv *jv_to_str(jctx *c, const jv *v) {
    if (v->t == JV_STR) return (jv *)v;
    jbuf b = {0};
    if (!jv_write_str(c, &b, v)) {
        free(b.p);
        return NULL;
    }
    jv *r = jv_str(c->a, b.p ? b.p : "", b.n);
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

static bool json_nl(jbuf *b, const char *ind, size_t indn, int level) {
    if (!jbuf_putc(b, '\n')) return false;
    for (int i = 0; i < level; i++)
        if (!jbuf_put(b, ind, indn)) return false;
    return true;
}

/* A dict key as JSON: str as is; numbers, bool and None as their JSON text in a string. */
static bool json_key(jctx *c, jbuf *b, const jv *k) {
    if (k->t == JV_STR) return json_str(b, k->u.str.s, k->u.str.n);
    char tmp[40];
    const char *s = tmp;
    if (k->t == JV_NONE) s = "null";
    else if (k->t == JV_BOOL) s = k->u.b ? "true" : "false";
    else if (k->t == JV_INT) snprintf(tmp, sizeof tmp, "%lld", (long long)k->u.i);
    else if (k->t == JV_FLOAT) {
        if (isnan(k->u.f)) s = "NaN";
        else if (isinf(k->u.f)) s = k->u.f > 0 ? "Infinity" : "-Infinity";
        else jv_float_repr(k->u.f, tmp);
    } else {
        err_set(WICK_ERR_INVALID_ARG, "template: tojson: keys must be str, int, float, bool or "
                "None, not %s", jv_type_name(k));
        c->failed = true;
        return false;
    }
    return json_str(b, s, strlen(s));
}

static bool write_json(jctx *c, jbuf *b, const jv *v, const char *ind, size_t indn,
                       bool sort_keys, int level) {
    switch (v->t) {
    case JV_NONE: return jbuf_put(b, "null", 4);
    case JV_BOOL: return v->u.b ? jbuf_put(b, "true", 4) : jbuf_put(b, "false", 5);
    case JV_INT: return jbuf_printf(b, "%lld", (long long)v->u.i);
    case JV_FLOAT:
        if (isnan(v->u.f)) return jbuf_put(b, "NaN", 3);
        if (isinf(v->u.f)) return v->u.f > 0 ? jbuf_put(b, "Infinity", 8) : jbuf_put(b, "-Infinity", 9);
        return write_float(b, v->u.f);
    case JV_STR:
        if (!jinja_charge(c, v->u.str.n / JINJA_BYTES_PER_STEP, 0)) return false;
        return json_str(b, v->u.str.s, v->u.str.n);
    case JV_LIST: {
        if (!v->u.list.n) return jbuf_put(b, "[]", 2);
        if (!enter_value(c, level, v->u.list.n) || !jbuf_putc(b, '[')) return false;
        for (size_t i = 0; i < v->u.list.n; i++) {
            if (i && !jbuf_put(b, ind ? "," : ", ", ind ? 1 : 2)) return false;
            if (ind && !json_nl(b, ind, indn, level + 1)) return false;
            if (!write_json(c, b, v->u.list.v[i], ind, indn, sort_keys, level + 1)) return false;
        }
        if (ind && !json_nl(b, ind, indn, level)) return false;
        return jbuf_putc(b, ']');
    }
    case JV_DICT: {
        if (!v->u.dict.n) return jbuf_put(b, "{}", 2);
        size_t n = v->u.dict.n;
        if (!enter_value(c, level, n)) return false;
        size_t *ord = jarena_alloc(c->a, n * sizeof *ord);
        if (!ord) return false;
        for (size_t i = 0; i < n; i++) ord[i] = i;
        if (sort_keys && !jv_sort(c, ord, n, v->u.dict.k, false)) {
            err_wrap(WICK_ERR_INVALID_ARG, "tojson(sort_keys=true)");
            return false;
        }
        bool ok = jbuf_putc(b, '{');
        for (size_t i = 0; ok && i < n; i++) {
            if (i) ok = jbuf_put(b, ind ? "," : ", ", ind ? 1 : 2);
            if (ok && ind) ok = json_nl(b, ind, indn, level + 1);
            ok = ok && json_key(c, b, v->u.dict.k[ord[i]]) && jbuf_put(b, ": ", 2) &&
                 write_json(c, b, v->u.dict.v[ord[i]], ind, indn, sort_keys, level + 1);
        }
        if (ok && ind) ok = json_nl(b, ind, indn, level);
        return ok && jbuf_putc(b, '}');
    }
    default:
        err_set(WICK_ERR_INVALID_ARG, "template: tojson: object of type %s is not JSON "
                "serializable", jv_type_name(v));
        return false;
    }
}

bool jv_write_json(jctx *c, jbuf *b, const jv *v, const char *ind, bool sort_keys) {
    return write_json(c, b, v, ind, ind ? strlen(ind) : 0, sort_keys, 0);
}
