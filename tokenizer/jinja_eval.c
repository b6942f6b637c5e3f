/* jinja_eval.c — renders a parsed template: expressions, statements, scoping, macros, and the
 * public compile/render entry points of jinja.h.
 *
 * Scoping follows jinja2: each for-loop iteration and each macro call gets a fresh frame, so
 * `set` inside them does not leak out (namespace() objects are the way to carry state out);
 * `if` blocks share their enclosing frame. Undefined names evaluate to Undefined, which prints
 * as "", is falsy and iterates as empty, while arithmetic, comparison, attribute access or
 * calls on it fail like jinja2's UndefinedError. Attribute/item lookups that miss on a defined
 * object give Undefined. Values live in a per-render arena freed at the end.
 * Not here: filters/tests (jinja_filters.c), methods and globals (jinja_methods.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"

static jv *undefined_error(const jv *v, int line) {
    err_set(WICK_ERR_INVALID_ARG, "template line %d: '%s' is undefined", line,
            v->uname ? v->uname : "value");
    return NULL;
}

jv *jinja_lookup(jctx *c, jframe *f, const char *name) {
    size_t n = strlen(name);
    for (; f; f = f->parent) {
        jv *v = jv_dict_getz(f->vars, name, n);
        if (v) return v;
    }
    return jv_undef_named(c->a, name);
}

jframe *jinja_new_frame(jctx *c, jframe *parent) {
    jframe *f = jarena_alloc(c->a, sizeof *f);
    if (!f) return NULL;
    f->parent = parent;
    f->vars = jv_dict(c->a, JV_DICT);
    return f->vars ? f : NULL;
}

static jv *loop_attr(jctx *c, const jloop *l, const char *name) {
    size_t i = l->idx, n = l->items->u.list.n;
    int64_t r = -1;
    if (!strcmp(name, "index")) r = (int64_t)i + 1;
    else if (!strcmp(name, "index0")) r = (int64_t)i;
    else if (!strcmp(name, "revindex")) r = (int64_t)(n - i);
    else if (!strcmp(name, "revindex0")) r = (int64_t)(n - i - 1);
    else if (!strcmp(name, "length")) r = (int64_t)n;
    else if (!strcmp(name, "depth")) r = 1;
    else if (!strcmp(name, "depth0")) r = 0;
    if (r >= 0) return jv_int(c->a, r);
    if (!strcmp(name, "first")) return JV_BOOLV(i == 0);
    if (!strcmp(name, "last")) return JV_BOOLV(i + 1 == n);
    if (!strcmp(name, "previtem"))
        return i > 0 ? l->items->u.list.v[i - 1] : jv_undef_named(c->a, "loop.previtem");
    if (!strcmp(name, "nextitem"))
        return i + 1 < n ? l->items->u.list.v[i + 1] : jv_undef_named(c->a, "loop.nextitem");
    return jv_undef_named(c->a, name);
}

/* obj.name (python attribute first, then item), as jinja2's environment.getattr. */
static jv *get_attr(jctx *c, jv *obj, const char *name, int line) {
    if (obj->t == JV_UNDEF) return undefined_error(obj, line);
    if (obj->t == JV_LOOP) {
        if (!strcmp(name, "cycle")) goto method;
        return loop_attr(c, obj->u.loop, name);
    }
    if (jinja_has_method(obj, name)) goto method;
    if (obj->t == JV_DICT || obj->t == JV_NS) {
        jv *v = jv_dict_getz(obj, name, strlen(name));
        return v ? v : jv_undef_named(c->a, name);
    }
    return jv_undef_named(c->a, name);
method:;
    jv *m = jarena_alloc(c->a, sizeof *m);
    if (!m) return NULL;
    m->t = JV_FUNC;
    m->u.fn.kind = JF_METHOD;
    m->u.fn.self = obj;
    m->u.fn.name = name;
    return m;
}

static int64_t py_index(int64_t i, size_t n, bool *ok) {
    if (i < 0) i += (int64_t)n;
    *ok = i >= 0 && (uint64_t)i < n;
    return i;
}

/* obj[key] (item first, then attribute), as jinja2's environment.getitem. */
static jv *get_item(jctx *c, jv *obj, jv *key, int line) {
    if (obj->t == JV_UNDEF) return undefined_error(obj, line);
    if (obj->t == JV_DICT || obj->t == JV_NS) {
        if (!jinja_charge(c, jv_key_cost(key), line)) return NULL;
        jv *v = jv_dict_get(obj, key);
        if (v) return v;
    } else if ((obj->t == JV_LIST || obj->t == JV_STR) && (key->t == JV_INT || key->t == JV_BOOL)) {
        bool ok;
        int64_t k = key->t == JV_INT ? key->u.i : key->u.b;
        if (obj->t == JV_LIST) {
            int64_t i = py_index(k, obj->u.list.n, &ok);
            if (ok) return obj->u.list.v[i];
        } else { /* code point k: a scan of the string */
            if (!jinja_charge(c, obj->u.str.n / JINJA_BYTES_PER_STEP, line)) return NULL;
            size_t ncp = ju_count(obj->u.str.s, obj->u.str.n);
            int64_t i = py_index(k, ncp, &ok);
            if (ok) {
                size_t b = ju_offset(obj->u.str.s, obj->u.str.n, (size_t)i);
                size_t e = ju_offset(obj->u.str.s, obj->u.str.n, (size_t)i + 1);
                return jv_str(c->a, obj->u.str.s + b, e - b);
            }
        }
    } else if (key->t == JV_STR) {
        return get_attr(c, obj, key->u.str.s, line);
    }
    return jv_undef_named(c->a, key->t == JV_STR ? key->u.str.s : "item");
}

/* Python slice of a list or string. */
static jv *do_slice(jctx *c, jv *obj, jv *vs[3], int line) {
    if (obj->t == JV_UNDEF) return undefined_error(obj, line);
    if (obj->t != JV_LIST && obj->t != JV_STR) {
        err_set(WICK_ERR_INVALID_ARG, "template line %d: cannot slice %s", line, jv_type_name(obj));
        return NULL;
    }
    int64_t p[3];
    bool has[3];
    for (int k = 0; k < 3; k++) {
        has[k] = vs[k] && vs[k]->t != JV_NONE;
        if (has[k] && vs[k]->t != JV_INT) {
            err_set(WICK_ERR_INVALID_ARG, "template line %d: slice indices must be integers", line);
            return NULL;
        }
        p[k] = has[k] ? vs[k]->u.i : 0;
    }
    int64_t step = has[2] ? p[2] : 1;
    if (step == 0) {
        err_set(WICK_ERR_INVALID_ARG, "template line %d: slice step cannot be zero", line);
        return NULL;
    }
    int64_t n = obj->t == JV_LIST ? (int64_t)obj->u.list.n : (int64_t)ju_count(obj->u.str.s, obj->u.str.n);
    /* Python's clamping (PySlice_AdjustIndices): bounds end up in [-1, n], so the span
     * between them fits in int64 and the item count is computed once, without stepping an
     * index past INT64_MAX (a step near INT64_MIN/MAX would overflow `i += step`). */
    int64_t lo = step < 0 ? -1 : 0, hi = step < 0 ? n - 1 : n;
    int64_t start, stop;
    if (!has[0]) start = step < 0 ? hi : lo;
    else {
        start = p[0] < 0 ? p[0] + n : p[0]; /* p < 0 and n >= 0: no overflow */
        start = start < lo ? lo : start > hi ? hi : start;
    }
    if (!has[1]) stop = step < 0 ? lo : hi;
    else {
        stop = p[1] < 0 ? p[1] + n : p[1];
        stop = stop < lo ? lo : stop > hi ? hi : stop;
    }
    uint64_t ustep = step < 0 ? 0 - (uint64_t)step : (uint64_t)step; /* |INT64_MIN| too */
    uint64_t span = step > 0 ? (stop > start ? (uint64_t)(stop - start) : 0)
                             : (start > stop ? (uint64_t)(start - stop) : 0);
    size_t count = span ? (size_t)((span - 1) / ustep + 1) : 0;
    /* item k is at start + k * step, which stays within [-1, n] for k < count */
#define SLICE_AT(k) ((size_t)(step > 0 ? start + (int64_t)((k) * ustep) : start - (int64_t)((k) * ustep)))
    size_t bytes = obj->t == JV_STR ? obj->u.str.n : 0;
    if (!jinja_charge(c, count + bytes / JINJA_BYTES_PER_STEP, line)) return NULL;
    if (obj->t == JV_LIST) {
        jv *r = jv_list(c->a, count);
        if (!r) return NULL;
        for (size_t k = 0; k < count; k++)
            if (!jv_list_push(c->a, r, obj->u.list.v[SLICE_AT(k)])) return NULL;
        return r;
    }
    const char *s = obj->u.str.s;
    size_t sn = obj->u.str.n;
    if (!count) return jv_str(c->a, "", 0);
    if (step == 1) { /* the common case s[a:b] */
        size_t b = ju_offset(s, sn, (size_t)start), e = ju_offset(s, sn, (size_t)stop);
        return jv_str(c->a, s + b, e - b);
    }
    /* One forward pass notes the byte offset of each selected code point (in ascending
     * order; a negative step emits them backwards). The offsets live in the arena, so a
     * huge string costs at most the arena's limit. */
    size_t *at = jarena_alloc(c->a, count * sizeof *at);
    if (!at) return NULL;
    size_t first = step > 0 ? SLICE_AT(0) : SLICE_AT(count - 1), m = 0;
    for (size_t i = 0, j = 0; i < sn && m < count; j++) {
        uint32_t cp;
        if (j >= first && (j - first) % ustep == 0) at[m++] = i;
        i += ju_decode(s + i, sn - i, &cp);
    }
#undef SLICE_AT
    jbuf b = {0};
    bool ok = jbuf_put(&b, "", 0);
    for (size_t k = 0; ok && k < m; k++) {
        size_t i = at[step > 0 ? k : m - 1 - k];
        uint32_t cp;
        ok = jbuf_put(&b, s + i, ju_decode(s + i, sn - i, &cp));
    }
    jv *r = ok ? jv_str(c->a, b.p, b.n) : NULL;
    free(b.p);
    return r;
}

static jv *arith_error(jop op, const jv *a, const jv *b, int line) {
    static const char *sym[] = {"+", "-", "*", "/", "//", "%", "**", "~"};
    err_set(WICK_ERR_INVALID_ARG, "template line %d: unsupported operand type(s) for %s: '%s' "
            "and '%s'", line, op <= JOP_CONCAT ? sym[op] : "?", jv_type_name(a), jv_type_name(b));
    return NULL;
}

static jv *repeat(jctx *c, jv *seq, int64_t k, int line) {
    if (k < 0) k = 0;
    size_t unit = seq->t == JV_STR ? seq->u.str.n : seq->u.list.n;
    if (unit && (uint64_t)k > (JINJA_MAX_OUTPUT / unit)) {
        err_set(WICK_ERR_INVALID_ARG, "template line %d: repetition too large", line);
        return NULL;
    }
    uint64_t work = seq->t == JV_STR ? unit * (uint64_t)k / JINJA_BYTES_PER_STEP : unit * (uint64_t)k;
    if (!jinja_charge(c, work, line)) return NULL;
    if (seq->t == JV_STR) {
        char *p = jarena_alloc(c->a, unit * (size_t)k + 1);
        if (!p) return NULL;
        for (int64_t i = 0; i < k; i++) memcpy(p + unit * (size_t)i, seq->u.str.s, unit);
        return jv_str_own(c->a, p, unit * (size_t)k);
    }
    jv *r = jv_list(c->a, unit * (size_t)k);
    for (int64_t i = 0; r && i < k; i++)
        for (size_t j = 0; j < unit; j++)
            if (!jv_list_push(c->a, r, seq->u.list.v[j])) return NULL;
    return r;
}

/* x ** y for y >= 0 by squaring (O(log y)); false when the result does not fit in int64. */
static bool int_pow(int64_t x, int64_t y, int64_t *out) {
    if (x == 0 || x == 1 || y == 0) { /* also keeps 1 ** INT64_MAX from looping */
        *out = y == 0 ? 1 : x;
        return true;
    }
    if (x == -1) {
        *out = (y & 1) ? -1 : 1;
        return true;
    }
    int64_t r = 1, b = x;
    for (;;) {
        if ((y & 1) && __builtin_mul_overflow(r, b, &r)) return false;
        y >>= 1;
        if (!y) break;
        /* |b| >= 2 here, so an overflowing square means |result| >= b*b > INT64_MAX */
        if (__builtin_mul_overflow(b, b, &b)) return false;
    }
    *out = r;
    return true;
}

static jv *binop(jctx *c, jop op, jv *a, jv *b, int line) {
    if (op == JOP_CONCAT) {
        jbuf buf = {0};
        bool ok = jbuf_put(&buf, "", 0) && jv_write_str(c, &buf, a) && jv_write_str(c, &buf, b);
        jv *r = ok ? jv_str(c->a, buf.p, buf.n) : NULL;
        free(buf.p);
        return r;
    }
    if (op == JOP_EQ) return JV_BOOLV(jv_equal(c, a, b));
    if (op == JOP_NE) return JV_BOOLV(!jv_equal(c, a, b));
    if (op == JOP_IN || op == JOP_NOTIN) {
        bool r = false;
        if (b->t == JV_STR) {
            if (a->t == JV_UNDEF) return undefined_error(a, line);
            if (a->t != JV_STR) {
                err_set(WICK_ERR_INVALID_ARG, "template line %d: 'in <string>' requires string "
                        "as left operand, not %s", line, jv_type_name(a));
                return NULL;
            }
            if (!jinja_charge(c, (a->u.str.n + b->u.str.n) / JINJA_BYTES_PER_STEP, line)) return NULL;
            r = a->u.str.n == 0 || memmem(b->u.str.s, b->u.str.n, a->u.str.s, a->u.str.n);
        } else if (b->t == JV_LIST) {
            if (!jinja_charge(c, b->u.list.n, line)) return NULL;
            for (size_t i = 0; i < b->u.list.n && !r && !c->failed; i++) r = jv_equal(c, a, b->u.list.v[i]);
        } else if (b->t == JV_DICT || b->t == JV_NS) {
            if (!jinja_charge(c, jv_key_cost(a), line)) return NULL;
            r = jv_dict_get(b, a) != NULL;
        } else if (b->t != JV_UNDEF) {
            err_set(WICK_ERR_INVALID_ARG, "template line %d: argument of type '%s' is not "
                    "iterable", line, jv_type_name(b));
            return NULL;
        }
        return JV_BOOLV(op == JOP_IN ? r : !r);
    }
    if (a->t == JV_UNDEF) return undefined_error(a, line);
    if (b->t == JV_UNDEF) return undefined_error(b, line);
    if (op >= JOP_LT && op <= JOP_GE) {
        bool ok;
        int k = jv_compare(c, a, b, &ok);
        if (!ok) return err_wrap(WICK_ERR_INVALID_ARG, "template line %d", line), NULL;
        return JV_BOOLV(op == JOP_LT ? k < 0 : op == JOP_LE ? k <= 0 : op == JOP_GT ? k > 0 : k >= 0);
    }
    if (op == JOP_ADD && a->t == JV_STR && b->t == JV_STR) {
        if (!jinja_charge(c, (a->u.str.n + b->u.str.n) / JINJA_BYTES_PER_STEP, line)) return NULL;
        char *p = jarena_alloc(c->a, a->u.str.n + b->u.str.n + 1);
        if (!p) return NULL;
        memcpy(p, a->u.str.s, a->u.str.n);
        memcpy(p + a->u.str.n, b->u.str.s, b->u.str.n);
        return jv_str_own(c->a, p, a->u.str.n + b->u.str.n);
    }
    if (op == JOP_ADD && a->t == JV_LIST && b->t == JV_LIST) {
        if (!jinja_charge(c, a->u.list.n + b->u.list.n, line)) return NULL;
        jv *r = jv_list(c->a, a->u.list.n + b->u.list.n);
        for (size_t i = 0; r && i < a->u.list.n; i++) if (!jv_list_push(c->a, r, a->u.list.v[i])) return NULL;
        for (size_t i = 0; r && i < b->u.list.n; i++) if (!jv_list_push(c->a, r, b->u.list.v[i])) return NULL;
        return r;
    }
    if (op == JOP_MUL && (a->t == JV_STR || a->t == JV_LIST) && b->t == JV_INT) return repeat(c, a, b->u.i, line);
    if (op == JOP_MUL && (b->t == JV_STR || b->t == JV_LIST) && a->t == JV_INT) return repeat(c, b, a->u.i, line);
    if (!jv_is_num(a) || !jv_is_num(b)) return arith_error(op, a, b, line);
    if (a->t != JV_FLOAT && b->t != JV_FLOAT && op != JOP_DIV) {
        int64_t x = a->t == JV_INT ? a->u.i : a->u.b, y = b->t == JV_INT ? b->u.i : b->u.b, r = 0;
        bool ovf = false;
        switch (op) {
        case JOP_ADD: ovf = __builtin_add_overflow(x, y, &r); break;
        case JOP_SUB: ovf = __builtin_sub_overflow(x, y, &r); break;
        case JOP_MUL: ovf = __builtin_mul_overflow(x, y, &r); break;
        case JOP_FLOORDIV: case JOP_MOD:
            if (y == 0) {
                err_set(WICK_ERR_INVALID_ARG, "template line %d: integer division or modulo by "
                        "zero", line);
                return NULL;
            }
            if (y == -1) { /* x % -1 == 0; INT64_MIN / -1 would trap */
                if (op == JOP_MOD) r = 0;
                else ovf = __builtin_sub_overflow((int64_t)0, x, &r);
                break;
            }
            /* Python floors; C truncates. Adjusting the remainder (not x - q*y, whose
             * product can overflow near INT64_MIN) keeps every step in range. */
            r = x % y;
            if (r != 0 && ((r < 0) != (y < 0))) {
                if (op == JOP_MOD) r += y;
                else r = x / y - 1;
            } else if (op == JOP_FLOORDIV) {
                r = x / y;
            }
            break;
        case JOP_POW:
            if (y < 0) {
                if (x == 0) {
                    err_set(WICK_ERR_INVALID_ARG, "template line %d: 0.0 cannot be raised to a "
                            "negative power", line);
                    return NULL;
                }
                return jv_float(c->a, pow((double)x, (double)y));
            }
            ovf = !int_pow(x, y, &r);
            break;
        default: break;
        }
        if (ovf) {
            err_set(WICK_ERR_UNSUPPORTED, "template line %d: integer overflow (wick's integers "
                    "are 64-bit)", line);
            return NULL;
        }
        return jv_int(c->a, r);
    }
    double x = jv_num(a), y = jv_num(b), r;
    switch (op) {
    case JOP_ADD: r = x + y; break;
    case JOP_SUB: r = x - y; break;
    case JOP_MUL: r = x * y; break;
    case JOP_POW:
        /* Python raises where C's pow gives inf or a NaN standing for a complex number */
        if (x == 0 && y < 0) {
            err_set(WICK_ERR_INVALID_ARG, "template line %d: 0.0 cannot be raised to a negative "
                    "power", line);
            return NULL;
        }
        if (x < 0 && isfinite(y) && y != floor(y)) {
            err_set(WICK_ERR_UNSUPPORTED, "template line %d: a negative number to a fractional "
                    "power is complex, which is not supported", line);
            return NULL;
        }
        r = pow(x, y);
        if (isinf(r) && isfinite(x) && isfinite(y)) {
            err_set(WICK_ERR_INVALID_ARG, "template line %d: ** result out of range", line);
            return NULL;
        }
        break;
    default:
        if (y == 0) {
            err_set(WICK_ERR_INVALID_ARG, "template line %d: division by zero", line);
            return NULL;
        }
        if (op == JOP_DIV) r = x / y;
        else if (op == JOP_FLOORDIV) r = floor(x / y);
        else {
            r = fmod(x, y);
            if (r != 0 && ((r < 0) != (y < 0))) r += y;
        }
    }
    return jv_float(c->a, r);
}

/* Evaluates call arguments into arrays in the arena. */
static bool eval_args(jctx *c, jframe *f, const jnode *n, jv ***out) {
    *out = NULL;
    if (!n->nargs) return true;
    jv **v = jarena_alloc(c->a, (size_t)n->nargs * sizeof *v);
    if (!v) return false;
    for (int i = 0; i < n->nargs; i++)
        if (!(v[i] = jinja_eval(c, f, n->args[i]))) return false;
    *out = v;
    return true;
}

static jv *call_value(jctx *c, jv *fn, jv **args, const char **names, int nargs, int line) {
    if (fn->t == JV_UNDEF) return undefined_error(fn, line);
    if (fn->t != JV_FUNC) {
        err_set(WICK_ERR_INVALID_ARG, "template line %d: '%s' object is not callable", line,
                jv_type_name(fn));
        return NULL;
    }
    if (fn->u.fn.kind == JF_MACRO) return jinja_call_macro(c, fn, args, names, nargs, line);
    if (fn->u.fn.kind == JF_METHOD)
        return jinja_method(c, fn->u.fn.self, fn->u.fn.name, args, names, nargs, line);
    return jinja_call_global(c, fn, args, names, nargs, line);
}

static jv *eval_inner(jctx *c, jframe *f, const jnode *n) {
    jv *a, *b, **args;
    switch (n->k) {
    case JN_LIT: return n->lit;
    case JN_NAME: return jinja_lookup(c, f, n->name);
    case JN_LIST: case JN_TUPLE: {
        jv *l = jv_list(c->a, (size_t)n->nkids);
        if (!l) return NULL;
        l->tuple = n->k == JN_TUPLE;
        for (int i = 0; i < n->nkids; i++)
            if (!(a = jinja_eval(c, f, n->kids[i])) || !jv_list_push(c->a, l, a)) return NULL;
        return l;
    }
    case JN_DICT: {
        jv *d = jv_dict(c->a, JV_DICT);
        if (!d) return NULL;
        for (int i = 0; i + 1 < n->nkids; i += 2)
            if (!(a = jinja_eval(c, f, n->kids[i])) || !(b = jinja_eval(c, f, n->kids[i + 1])))
                return NULL;
            else if (!jinja_charge(c, jv_key_cost(a), n->line) || !jv_dict_set(c->a, d, a, b))
                return err_wrap(WICK_ERR_INVALID_ARG, "template line %d", n->line), NULL;
        return d;
    }
    case JN_ATTR:
        if (!(a = jinja_eval(c, f, n->kids[0]))) return NULL;
        return get_attr(c, a, n->name, n->line);
    case JN_ITEM:
        if (!(a = jinja_eval(c, f, n->kids[0])) || !(b = jinja_eval(c, f, n->kids[1]))) return NULL;
        return get_item(c, a, b, n->line);
    case JN_SLICE: {
        jv *vs[3] = {0};
        if (!(a = jinja_eval(c, f, n->kids[0]))) return NULL;
        for (int k = 0; k < 3; k++)
            if (n->kids[1 + k] && !(vs[k] = jinja_eval(c, f, n->kids[1 + k]))) return NULL;
        return do_slice(c, a, vs, n->line);
    }
    case JN_CALL: {
        const jnode *callee = n->kids[0];
        if (callee->k == JN_ATTR) { /* obj.method(...) without a bound-method value */
            if (!(a = jinja_eval(c, f, callee->kids[0]))) return NULL;
            if (a->t != JV_UNDEF && (jinja_has_method(a, callee->name) ||
                                     (a->t == JV_LOOP && !strcmp(callee->name, "cycle")))) {
                if (!eval_args(c, f, n, &args)) return NULL;
                return jinja_method(c, a, callee->name, args, n->argnames, n->nargs, n->line);
            }
            b = get_attr(c, a, callee->name, n->line);
        } else {
            b = jinja_eval(c, f, callee);
        }
        if (!b || !eval_args(c, f, n, &args)) return NULL;
        return call_value(c, b, args, n->argnames, n->nargs, n->line);
    }
    case JN_FILTER: {
        if (!(a = jinja_eval(c, f, n->kids[0])) || !eval_args(c, f, n, &args)) return NULL;
        return jinja_filter(c, n->name, a, args, n->argnames, n->nargs, n->line);
    }
    case JN_TEST: {
        if (!(a = jinja_eval(c, f, n->kids[0])) || !eval_args(c, f, n, &args)) return NULL;
        int r = jinja_test(c, n->name, a, args, n->nargs, n->line);
        return r < 0 ? NULL : JV_BOOLV(r);
    }
    case JN_NEG: case JN_POS:
        if (!(a = jinja_eval(c, f, n->kids[0]))) return NULL;
        if (a->t == JV_UNDEF) return undefined_error(a, n->line);
        if (!jv_is_num(a)) {
            err_set(WICK_ERR_INVALID_ARG, "template line %d: bad operand type for unary %c: "
                    "'%s'", n->line, n->k == JN_NEG ? '-' : '+', jv_type_name(a));
            return NULL;
        }
        if (n->k == JN_POS) return a->t == JV_BOOL ? jv_int(c->a, a->u.b) : a;
        if (a->t == JV_FLOAT) return jv_float(c->a, -a->u.f);
        if (a->t == JV_INT && a->u.i == INT64_MIN) return binop(c, JOP_SUB, jv_int(c->a, 0), a, n->line);
        return jv_int(c->a, -(a->t == JV_INT ? a->u.i : a->u.b));
    case JN_BINARY:
        if (!(a = jinja_eval(c, f, n->kids[0])) || !(b = jinja_eval(c, f, n->kids[1]))) return NULL;
        return binop(c, n->op, a, b, n->line);
    case JN_AND: case JN_OR: /* Python: returns the deciding operand */
        if (!(a = jinja_eval(c, f, n->kids[0]))) return NULL;
        if (jv_truthy(a) == (n->k == JN_OR)) return a;
        return jinja_eval(c, f, n->kids[1]);
    case JN_NOT:
        if (!(a = jinja_eval(c, f, n->kids[0]))) return NULL;
        return JV_BOOLV(!jv_truthy(a));
    case JN_COND:
        if (!(a = jinja_eval(c, f, n->kids[1]))) return NULL;
        if (jv_truthy(a)) return jinja_eval(c, f, n->kids[0]);
        return n->kids[2] ? jinja_eval(c, f, n->kids[2]) : jv_undef_named(c->a, "else");
    default:
        err_set(WICK_ERR_INTERNAL, "template line %d: statement used as expression", n->line);
        return NULL;
    }
}

bool jinja_charge(jctx *c, uint64_t units, int line) {
    if (c->failed) return false;
    /* saturating: a single huge charge must not wrap the counter back under the limit */
    if (units <= JINJA_MAX_STEPS - c->steps) {
        c->steps += units;
        return true;
    }
    c->steps = JINJA_MAX_STEPS + 1;
    c->failed = true;
    if (line > 0)
        err_set(WICK_ERR_INVALID_ARG, "template line %d: evaluation step limit (%llu) exceeded",
                line, (unsigned long long)JINJA_MAX_STEPS);
    else
        err_set(WICK_ERR_INVALID_ARG, "template: evaluation step limit (%llu) exceeded",
                (unsigned long long)JINJA_MAX_STEPS);
    return false;
}

static bool budget(jctx *c, int line) {
    if (!jinja_charge(c, 1, line)) return false;
    if (c->depth >= JINJA_MAX_EVAL_DEPTH) {
        err_set(WICK_ERR_INVALID_ARG, "template line %d: evaluation nested too deeply", line);
        return false;
    }
    return true;
}

jv *jinja_eval(jctx *c, jframe *f, const jnode *n) {
    if (!budget(c, n->line)) return NULL;
    c->depth++;
    jv *v = eval_inner(c, f, n);
    c->depth--;
    /* a value walk (comparison, printing) that failed inside this node reports it here */
    if (c->failed && v) {
        err_wrap(WICK_ERR_INVALID_ARG, "template line %d", n->line);
        v = NULL;
    }
    return v;
}

