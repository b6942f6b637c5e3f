/* jinja_exec.c — statement execution (text, output, if, for, set, macro, break/continue,
 * filter blocks), macro calls, and the public entry points of jinja.h.
 *
 * for-loops: the iterable is materialized as a list (dicts iterate over keys, strings over
 * characters, Undefined as empty, None is an error as in Python); an `if` clause filters before
 * `loop` is computed; `else` runs when no iteration happened. Each iteration gets a fresh frame.
 * Macros render their body in a fresh frame whose parent is the frame they were defined in,
 * and return the rendered string. Not supported: caller/varargs/kwargs inside macros. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"

struct jinja_template {
    jarena *a;
    jnode *root;
};

static wick_status exec_node(jctx *c, jframe *f, const jnode *n);

static wick_status exec_body(jctx *c, jframe *f, const jnode *body) {
    for (int i = 0; i < body->nkids; i++) {
        wick_status st = exec_node(c, f, body->kids[i]);
        if (st) return st;
        if (c->ctl) return WICK_OK;
    }
    return WICK_OK;
}

static wick_status status_of_null(void);

/* Renders `body` into a fresh buffer and returns it as a string value. The buffers of
 * enclosing macro calls and set/filter blocks stay alive meanwhile, so they all share one
 * JINJA_MAX_OUTPUT: without that, macros nested 100 deep could each hold the maximum. */
static jv *render_to_str(jctx *c, jframe *f, const jnode *body, wick_status *st) {
    jbuf b = {0}, *saved = c->out;
    size_t held = c->held;
    c->held += saved->n;
    b.limit = c->held < JINJA_MAX_OUTPUT ? JINJA_MAX_OUTPUT - c->held : 1;
    c->out = &b;
    *st = exec_body(c, f, body);
    c->out = saved;
    c->held = held;
    jv *r = NULL;
    if (!*st && b.failed) *st = status_of_null();
    if (!*st && !jinja_charge(c, b.n / JINJA_BYTES_PER_STEP, body->line)) *st = WICK_ERR_INVALID_ARG;
    if (!*st && !(r = jv_str(c->a, b.p ? b.p : "", b.n))) *st = WICK_ERR_NOMEM;
    free(b.p);
    return r;
}

/* Expression evaluation reports failure as NULL with the message set; the status is recovered
 * from the message's wording (the few non-INVALID_ARG failures have fixed phrases). */
static wick_status status_of_null(void) {
    const char *m = wick_last_error();
    if (strstr(m, "not supported") || strstr(m, "wick's integers")) return WICK_ERR_UNSUPPORTED;
    if (strstr(m, "memory") || strstr(m, "exceeds")) return WICK_ERR_NOMEM;
    return WICK_ERR_INVALID_ARG;
}

/* Binds loop targets: one name gets the item, several unpack a sequence. */
static wick_status bind_targets(jctx *c, jframe *f, const jnode *n, jv *item) {
    if (n->ntargets == 1) return jv_dict_setz(c->a, f->vars, n->targets[0], item) ? WICK_OK : WICK_ERR_NOMEM;
    jv *seq = item;
    if (item->t == JV_DICT) return err_set(WICK_ERR_INVALID_ARG, "template line %d: cannot "
                                           "unpack a dict into %d names", n->line, n->ntargets);
    if (seq->t != JV_LIST || seq->u.list.n != (size_t)n->ntargets)
        return err_set(WICK_ERR_INVALID_ARG, "template line %d: cannot unpack %s into %d names",
                       n->line, jv_type_name(item), n->ntargets);
    for (int i = 0; i < n->ntargets; i++)
        if (!jv_dict_setz(c->a, f->vars, n->targets[i], seq->u.list.v[i])) return WICK_ERR_NOMEM;
    return WICK_OK;
}

/* The iterable as a list value (shared when it already is one). */
static jv *as_list(jctx *c, jv *v, int line) {
    if (v->t == JV_LIST || v->t == JV_UNDEF) return v->t == JV_LIST ? v : jv_list(c->a, 0);
    if (!jinja_charge(c, v->t == JV_DICT ? v->u.dict.n : v->t == JV_STR ? v->u.str.n : 0, line))
        return NULL;
    if (v->t == JV_DICT) {
        jv *l = jv_list(c->a, v->u.dict.n);
        for (size_t i = 0; l && i < v->u.dict.n; i++)
            if (!jv_list_push(c->a, l, v->u.dict.k[i])) return NULL;
        return l;
    }
    if (v->t == JV_STR) {
        jv *l = jv_list(c->a, 0);
        for (size_t i = 0; l && i < v->u.str.n;) {
            uint32_t cp;
            size_t k = ju_decode(v->u.str.s + i, v->u.str.n - i, &cp);
            jv *ch = jv_str(c->a, v->u.str.s + i, k);
            if (!ch || !jv_list_push(c->a, l, ch)) return NULL;
            i += k;
        }
        return l;
    }
    err_set(WICK_ERR_INVALID_ARG, "template line %d: '%s' object is not iterable", line,
            jv_type_name(v));
    return NULL;
}

static wick_status exec_for(jctx *c, jframe *f, const jnode *n) {
    jv *it = jinja_eval(c, f, n->kids[0]);
    if (!it) return status_of_null();
    jv *items = as_list(c, it, n->line);
    if (!items) return status_of_null();
    wick_status st;
    if (n->kids[3]) { /* {% for x in xs if cond %} */
        jv *kept = jv_list(c->a, 0);
        if (!kept) return WICK_ERR_NOMEM;
        jframe *tf = jinja_new_frame(c, f); /* an expression defines no macro: reusable */
        if (!tf) return WICK_ERR_NOMEM;
        for (size_t i = 0; i < items->u.list.n; i++) {
            if (!jinja_charge(c, 1, n->line)) return WICK_ERR_INVALID_ARG;
            jv_dict_truncate(tf->vars, 0);
            if ((st = bind_targets(c, tf, n, items->u.list.v[i]))) return st;
            jv *cv = jinja_eval(c, tf, n->kids[3]);
            if (!cv) return status_of_null();
            if (jv_truthy(cv) && !jv_list_push(c->a, kept, items->u.list.v[i])) return WICK_ERR_NOMEM;
        }
        items = kept;
    }
    /* In the arena, not on the C stack: a macro or namespace may keep `loop` past the loop. */
    jloop *loop = jarena_alloc(c->a, sizeof *loop);
    jv *lv = jarena_alloc(c->a, sizeof *lv);
    if (!loop || !lv) return WICK_ERR_NOMEM;
    loop->items = items;
    lv->t = JV_LOOP;
    lv->u.loop = loop;
    /* Each iteration starts with a fresh scope. The frame is reused (emptied back to `loop`
     * and the targets) unless a macro defined in the last iteration holds on to it, so a
     * long loop does not allocate per iteration. */
    jframe *itf = NULL;
    size_t nbound = 0;
    unsigned long closures = 0;
    for (size_t i = 0; i < items->u.list.n; i++) {
        if (!jinja_charge(c, 1, n->line)) return WICK_ERR_INVALID_ARG;
        loop->idx = i;
        if (itf && c->closures == closures) {
            jv_dict_truncate(itf->vars, nbound);
        } else if (!(itf = jinja_new_frame(c, f))) {
            return WICK_ERR_NOMEM;
        }
        closures = c->closures;
        if (!jv_dict_setz(c->a, itf->vars, "loop", lv)) return WICK_ERR_NOMEM;
        if ((st = bind_targets(c, itf, n, items->u.list.v[i]))) return st;
        nbound = itf->vars->u.dict.n;
        if ((st = exec_body(c, itf, n->kids[1]))) return st;
        if (c->ctl == JCTL_BREAK) {
            c->ctl = 0;
            break;
        }
        c->ctl = 0;
    }
    if (items->u.list.n == 0 && n->kids[2]) return exec_body(c, f, n->kids[2]);
    return WICK_OK;
}

static wick_status assign(jctx *c, jframe *f, const jnode *target, jv *v) {
    if (target->k == JN_NAME)
        return jv_dict_setz(c->a, f->vars, target->name, v) ? WICK_OK : WICK_ERR_NOMEM;
    if (target->k == JN_ATTR) {
        jv *obj = jinja_lookup(c, f, target->kids[0]->name);
        if (obj->t != JV_NS)
            return err_set(WICK_ERR_INVALID_ARG, "template line %d: cannot assign attribute on "
                           "non-namespace object '%s'", target->line, target->kids[0]->name);
        return jv_dict_setz(c->a, obj, target->name, v) ? WICK_OK : WICK_ERR_NOMEM;
    }
    return bind_targets(c, f, target, v); /* tuple of names */
}

/* Applies a `{% filter a|b(x) %}` / `{% set v | a|b %}` chain to v, innermost filter first.
 * The chain is a list of FILTER nodes linked through kids[0] (outermost first), of any
 * length: it is walked into an arena array rather than recursed. */
static jv *filter_chain(jctx *c, jframe *f, const jnode *outer, jv *v) {
    size_t k = 0;
    for (const jnode *x = outer; x && x->k == JN_FILTER; x = x->kids[0]) k++;
    const jnode **chain = jarena_alloc(c->a, (k ? k : 1) * sizeof *chain);
    if (!chain) return NULL;
    k = 0;
    for (const jnode *x = outer; x && x->k == JN_FILTER; x = x->kids[0]) chain[k++] = x;
    while (k-- > 0 && v) {
        const jnode *x = chain[k];
        jv **args = NULL;
        if (!jinja_charge(c, 1, x->line)) return NULL;
        if (x->nargs) {
            if (!(args = jarena_alloc(c->a, (size_t)x->nargs * sizeof *args))) return NULL;
            for (int j = 0; j < x->nargs; j++)
                if (!(args[j] = jinja_eval(c, f, x->args[j]))) return NULL;
        }
        v = jinja_filter(c, x->name, v, args, x->argnames, x->nargs, x->line);
    }
    return v;
}

static wick_status exec_node(jctx *c, jframe *f, const jnode *n) {
    if (!jinja_charge(c, 1, n->line)) return WICK_ERR_INVALID_ARG;
    if (c->depth >= JINJA_MAX_EVAL_DEPTH)
        return err_set(WICK_ERR_INVALID_ARG, "template line %d: nested too deeply", n->line);
    wick_status st = WICK_OK;
    jv *v;
    c->depth++;
    switch (n->k) {
    case JN_TEXT:
        if (!jbuf_put(c->out, n->lit->u.str.s, n->lit->u.str.n)) st = WICK_ERR_NOMEM;
        break;
    case JN_OUTPUT:
        if (!(v = jinja_eval(c, f, n->kids[0]))) st = status_of_null();
        else if (!jv_write_str(c, c->out, v)) st = status_of_null();
        break;
    case JN_BODY: st = exec_body(c, f, n); break;
    case JN_IF:
        if (!(v = jinja_eval(c, f, n->kids[0]))) st = status_of_null();
        else if (jv_truthy(v)) st = exec_body(c, f, n->kids[1]);
        else if (n->kids[2]) st = exec_node(c, f, n->kids[2]);
        break;
    case JN_FOR: st = exec_for(c, f, n); break;
    case JN_SET:
        if (!(v = jinja_eval(c, f, n->kids[1]))) st = status_of_null();
        else st = assign(c, f, n->kids[0], v);
        break;
    case JN_SETBLOCK:
        if (!(v = render_to_str(c, f, n->kids[1], &st))) break;
        if (n->kids[2] && !(v = filter_chain(c, f, n->kids[2], v))) {
            st = status_of_null();
            break;
        }
        st = assign(c, f, n->kids[0], v);
        break;
    case JN_FILTERBLOCK: {
        if (!(v = render_to_str(c, f, n->kids[1], &st))) break;
        v = filter_chain(c, f, n->kids[0], v);
        if (!v) st = status_of_null();
        else if (!jv_write_str(c, c->out, v)) st = status_of_null();
        break;
    }
    case JN_MACRO: {
        jv *m = jarena_alloc(c->a, sizeof *m);
        if (!m) { st = WICK_ERR_NOMEM; break; }
        m->t = JV_FUNC;
        m->u.fn.kind = JF_MACRO;
        m->u.fn.node = n;
        m->u.fn.closure = f;
        c->closures++;
        m->u.fn.name = n->name;
        if (!jv_dict_setz(c->a, f->vars, n->name, m)) st = WICK_ERR_NOMEM;
        break;
    }
    case JN_BREAK: c->ctl = JCTL_BREAK; break;
    case JN_CONTINUE: c->ctl = JCTL_CONTINUE; break;
    default:
        st = err_set(WICK_ERR_INTERNAL, "template line %d: expression used as statement", n->line);
    }
    c->depth--;
    return st;
}

jv *jinja_call_macro(jctx *c, const jv *fn, jv **args, const char **names, int nargs, int line) {
    const jnode *m = fn->u.fn.node;
    if (c->calls >= JINJA_MAX_CALL_DEPTH) {
        err_set(WICK_ERR_INVALID_ARG, "template line %d: macro calls nested deeper than %d",
                line, JINJA_MAX_CALL_DEPTH);
        return NULL;
    }
    jframe *mf = jinja_new_frame(c, fn->u.fn.closure);
    if (!mf) return NULL;
    int npos = 0;
    for (int i = 0; i < nargs; i++) {
        if (names && names[i]) {
            int k;
            for (k = 0; k < m->nargs && strcmp(m->argnames[k], names[i]); k++) {}
            if (k == m->nargs) {
                err_set(WICK_ERR_INVALID_ARG, "template line %d: macro '%s' has no parameter "
                        "'%s'", line, m->name, names[i]);
                return NULL;
            }
            if (!jv_dict_setz(c->a, mf->vars, names[i], args[i])) return NULL;
        } else {
            if (npos >= m->nargs) {
                err_set(WICK_ERR_INVALID_ARG, "template line %d: macro '%s' takes not more than "
                        "%d argument(s)", line, m->name, m->nargs);
                return NULL;
            }
            if (!jv_dict_setz(c->a, mf->vars, m->argnames[npos++], args[i])) return NULL;
        }
    }
    for (int k = 0; k < m->nargs; k++) { /* defaults, evaluated at call time */
        if (jv_dict_getz(mf->vars, m->argnames[k], strlen(m->argnames[k]))) continue;
        jv *d = m->args[k] ? jinja_eval(c, mf, m->args[k]) : jv_undef_named(c->a, m->argnames[k]);
        if (!d || !jv_dict_setz(c->a, mf->vars, m->argnames[k], d)) return NULL;
    }
    c->calls++;
    int saved_ctl = c->ctl;
    c->ctl = 0;
    wick_status st;
    jv *r = render_to_str(c, mf, m->kids[0], &st);
    c->ctl = saved_ctl;
    c->calls--;
    return st ? NULL : r;
}

/* ---- public API ---- */

wick_status jinja_compile(const char *src, jinja_template **out) {
    if (!out) return err_set(WICK_ERR_INVALID_ARG, "jinja_compile: out is NULL");
    *out = NULL;
    if (!src) return err_set(WICK_ERR_INVALID_ARG, "jinja_compile: template is NULL");
    jinja_template *t = calloc(1, sizeof *t);
    if (!t || !(t->a = jarena_new(JINJA_MAX_ARENA))) {
        free(t);
        return err_set(WICK_ERR_NOMEM, "template: out of memory");
    }
    jtok *toks = NULL;
    size_t nt = 0;
    wick_status st = jinja_lex(t->a, src, &toks, &nt);
    if (!st) st = jinja_parse(t->a, toks, nt, &t->root);
    free(toks);
    if (st) {
        jinja_free(t);
        return st;
    }
    *out = t;
    return WICK_OK;
}

void jinja_free(jinja_template *t) {
    if (!t) return;
    jarena_free(t->a);
    free(t);
}

wick_status jinja_render_compiled(const jinja_template *t, const cJSON *context, char **out) {
    if (!out) return err_set(WICK_ERR_INVALID_ARG, "jinja_render: out is NULL");
    *out = NULL;
    if (!t) return err_set(WICK_ERR_INVALID_ARG, "jinja_render: template is NULL");
    if (context && !cJSON_IsObject(context))
        return err_set(WICK_ERR_INVALID_ARG, "jinja_render: context must be a JSON object");
    jarena *a = jarena_new(JINJA_MAX_ARENA);
    if (!a) return err_set(WICK_ERR_NOMEM, "template: out of memory");
    jbuf b = {0};
    jctx c = {.a = a, .out = &b};
    jframe *root = jinja_new_frame(&c, NULL);
    wick_status st = WICK_OK;
    if (!root || !jinja_add_globals(a, root->vars)) st = WICK_ERR_NOMEM;
    for (const cJSON *j = context ? context->child : NULL; !st && j; j = j->next) {
        jv *v = jv_from_json(a, j);
        if (!v || !jv_dict_setz(a, root->vars, j->string ? j->string : "", v)) st = WICK_ERR_NOMEM;
    }
    if (!st) st = exec_body(&c, root, t->root);
    if (!st && (b.failed || c.failed)) st = status_of_null();
    if (!st && !jbuf_put(&b, "", 0)) st = WICK_ERR_NOMEM;
    jarena_free(a);
    if (st) {
        free(b.p);
        return st;
    }
    *out = b.p;
    return WICK_OK;
}

wick_status jinja_render(const char *src, const cJSON *context, char **out) {
    if (out) *out = NULL;
    jinja_template *t;
    wick_status st = jinja_compile(src, &t);
    if (st) return st;
    st = jinja_render_compiled(t, context, out);
    jinja_free(t);
    return st;
}
