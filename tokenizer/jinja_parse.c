/* jinja_parse.c — tokens -> AST, by recursive descent mirroring jinja2's grammar and operator
 * precedence (lowest first): `x if c else y`, or, and, not, comparisons / in / not in,
 * + -, ~, * / // %, **, unary - +, then primary with postfix . [] () and | filters / is tests.
 *
 * Statements: if/elif/else, for (with `if` filter and else), set (name, ns.attr, tuple
 * unpacking, block form), macro, break/continue, generation (renders its body), filter blocks.
 * Everything else (extends, block, include, import, call, with, do, recursive loops, ...)
 * fails with WICK_ERR_UNSUPPORTED naming the tag and line. Nesting is limited to
 * JINJA_MAX_PARSE_DEPTH so hostile input cannot overflow the stack.
 *
 * Node layouts (kids[]):
 *   IF: cond, then-body, else (BODY, IF for elif, or NULL)
 *   FOR: iterable, body, else-body|NULL, filter-cond|NULL; targets[] = loop variable names
 *   SET: target (NAME / ATTR / TUPLE of NAME), value;  SETBLOCK: target, body
 *   MACRO: body; argnames[] = parameters, args[] = defaults (NULL = required)
 *   FILTERBLOCK: filter chain (innermost subject NULL), body
 *   COND: then, cond, else|NULL;  SLICE: obj, start|NULL, stop|NULL, step|NULL */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_internal.h"

typedef struct parser {
    jarena *a;
    const jtok *t;
    size_t n, i;
    int depth;
    int loops; /* for-loop bodies around the current statement (macro bodies reset it) */
} parser;

static const jtok *cur(parser *P) { return &P->t[P->i]; }
static const jtok *peek(parser *P, size_t k) {
    return P->i + k < P->n ? &P->t[P->i + k] : &P->t[P->n - 1];
}
static bool is_op(const jtok *t, const char *op) {
    return t->k == JT_OP && t->n == strlen(op) && memcmp(t->s, op, t->n) == 0;
}
static bool is_name(const jtok *t, const char *nm) {
    return t->k == JT_NAME && t->n == strlen(nm) && memcmp(t->s, nm, t->n) == 0;
}

static const char *tok_desc(const jtok *t, char *buf, size_t cap) {
    switch (t->k) {
    case JT_EOF: return "end of template";
    case JT_VAR_END: return "'}}'";
    case JT_BLOCK_END: return "'%}'";
    case JT_STRING: return "a string";
    case JT_TEXT: return "text";
    default: snprintf(buf, cap, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s ? t->s : ""); return buf;
    }
}

static wick_status syntax(parser *P, const char *expected) {
    char b[64];
    return err_set(WICK_ERR_FORMAT, "template line %d: expected %s, got %s", cur(P)->line,
                   expected, tok_desc(cur(P), b, sizeof b));
}

static jnode *mk(parser *P, jn_kind k, int line, int nkids) {
    jnode *n = jarena_alloc(P->a, sizeof *n);
    if (!n) return NULL;
    n->k = k;
    n->line = line;
    if (nkids) {
        n->kids = jarena_alloc(P->a, (size_t)nkids * sizeof *n->kids);
        if (!n->kids) return NULL;
        n->nkids = nkids;
    }
    return n;
}

static const char *tok_name(parser *P, const jtok *t) { return jarena_strndup(P->a, t->s, t->n); }

/* Growable node list in the arena. */
typedef struct nlist { jnode **v; const char **names; int n, cap; } nlist;
static bool nl_push(parser *P, nlist *l, jnode *x, const char *name) {
    if (l->n == l->cap) {
        int nc = l->cap ? l->cap * 2 : 4;
        jnode **nv = jarena_alloc(P->a, (size_t)nc * sizeof *nv);
        const char **nn = jarena_alloc(P->a, (size_t)nc * sizeof *nn);
        if (!nv || !nn) return false;
        if (l->n) {
            memcpy(nv, l->v, (size_t)l->n * sizeof *nv);
            memcpy(nn, l->names, (size_t)l->n * sizeof *nn);
        }
        l->v = nv;
        l->names = nn;
        l->cap = nc;
    }
    l->v[l->n] = x;
    l->names[l->n++] = name;
    return true;
}

static wick_status parse_expr(parser *P, jnode **out);
static wick_status parse_or(parser *P, jnode **out);
static wick_status parse_unary(parser *P, bool with_filter, jnode **out);
static wick_status parse_primary(parser *P, jnode **out);
static wick_status parse_postfix(parser *P, jnode **node);

static wick_status enter(parser *P) {
    if (++P->depth > JINJA_MAX_PARSE_DEPTH)
        return err_set(WICK_ERR_UNSUPPORTED, "template line %d: nesting deeper than %d levels",
                       cur(P)->line, JINJA_MAX_PARSE_DEPTH);
    return WICK_OK;
}

/* `(a, b=c, ...)` after the '(' has been seen (not consumed). */
static wick_status parse_args(parser *P, jnode *n) {
    P->i++; /* ( */
    nlist l = {0};
    wick_status st;
    while (!is_op(cur(P), ")")) {
        if (is_op(cur(P), "*") || is_op(cur(P), "**"))
            return err_set(WICK_ERR_UNSUPPORTED, "template line %d: *args / **kwargs in calls "
                           "are not supported", cur(P)->line);
        const char *kw = NULL;
        if (cur(P)->k == JT_NAME && is_op(peek(P, 1), "=")) {
            if (!(kw = tok_name(P, cur(P)))) return WICK_ERR_NOMEM;
            P->i += 2;
        }
        jnode *e;
        if ((st = parse_expr(P, &e))) return st;
        if (!nl_push(P, &l, e, kw)) return WICK_ERR_NOMEM;
        if (is_op(cur(P), ",")) P->i++;
        else if (!is_op(cur(P), ")")) return syntax(P, "',' or ')'");
    }
    P->i++;
    n->args = l.v;
    n->argnames = l.names;
    n->nargs = l.n;
    return WICK_OK;
}

/* One filter application; the filter name is current (the '|' was consumed). */
static wick_status parse_one_filter(parser *P, jnode **node) {
    wick_status st;
    if (cur(P)->k != JT_NAME) return syntax(P, "a filter name");
    jnode *f = mk(P, JN_FILTER, cur(P)->line, 1);
    if (!f || !(f->name = tok_name(P, cur(P)))) return WICK_ERR_NOMEM;
    P->i++;
    if (!jinja_filter_known(f->name))
        return err_set(WICK_ERR_UNSUPPORTED, "template line %d: filter '%s' is not supported",
                       f->line, f->name);
    f->kids[0] = *node;
    if (is_op(cur(P), "(") && (st = parse_args(P, f))) return st;
    *node = f;
    return WICK_OK;
}

static wick_status parse_filters(parser *P, jnode **node) {
    wick_status st;
    for (;;) {
        if (is_op(cur(P), "|")) {
            P->i++;
            if ((st = parse_one_filter(P, node))) return st;
        } else if (is_name(cur(P), "is")) {
            P->i++;
            bool neg = false;
            if (is_name(cur(P), "not")) {
                neg = true;
                P->i++;
            }
            if (cur(P)->k != JT_NAME) return syntax(P, "a test name");
            jnode *t = mk(P, JN_TEST, cur(P)->line, 1);
            if (!t || !(t->name = tok_name(P, cur(P)))) return WICK_ERR_NOMEM;
            P->i++;
            if (!jinja_test_known(t->name))
                return err_set(WICK_ERR_UNSUPPORTED, "template line %d: test '%s' is not "
                               "supported", t->line, t->name);
            t->kids[0] = *node;
            const jtok *c = cur(P);
            if (is_op(c, "(")) {
                if ((st = parse_args(P, t))) return st;
            } else if ((c->k == JT_NAME && !is_name(c, "else") && !is_name(c, "or") &&
                        !is_name(c, "and") && !is_name(c, "if") && !is_name(c, "in") &&
                        !is_name(c, "not") && !is_name(c, "is")) ||
                       c->k == JT_STRING || c->k == JT_INT || c->k == JT_FLOAT ||
                       is_op(c, "[") || is_op(c, "{")) {
                jnode *arg;
                if ((st = parse_primary(P, &arg)) || (st = parse_postfix(P, &arg))) return st;
                t->args = jarena_alloc(P->a, sizeof *t->args);
                t->argnames = jarena_alloc(P->a, sizeof *t->argnames);
                if (!t->args || !t->argnames) return WICK_ERR_NOMEM;
                t->args[0] = arg;
                t->nargs = 1;
            }
            if (neg) {
                jnode *nn = mk(P, JN_NOT, t->line, 1);
                if (!nn) return WICK_ERR_NOMEM;
                nn->kids[0] = t;
                t = nn;
            }
            *node = t;
        } else {
            return WICK_OK;
        }
    }
}

static wick_status parse_postfix(parser *P, jnode **node) {
    wick_status st;
    for (;;) {
        const jtok *c = cur(P);
        if (is_op(c, ".")) {
            P->i++;
            if (cur(P)->k == JT_NAME) {
                jnode *x = mk(P, JN_ATTR, c->line, 1);
                if (!x || !(x->name = tok_name(P, cur(P)))) return WICK_ERR_NOMEM;
                x->kids[0] = *node;
                *node = x;
            } else if (cur(P)->k == JT_INT) { /* x.0 is x[0] */
                jnode *x = mk(P, JN_ITEM, c->line, 2), *lit = mk(P, JN_LIT, c->line, 0);
                if (!x || !lit || !(lit->lit = jv_int(P->a, cur(P)->i))) return WICK_ERR_NOMEM;
                x->kids[0] = *node;
                x->kids[1] = lit;
                *node = x;
            } else {
                return syntax(P, "an attribute name");
            }
            P->i++;
        } else if (is_op(c, "[")) {
            P->i++;
            jnode *parts[3] = {0};
            bool slice = false;
            for (int k = 0; k < 3; k++) {
                if (!is_op(cur(P), ":") && !is_op(cur(P), "]")) {
                    if ((st = parse_expr(P, &parts[k]))) return st;
                }
                if (k < 2 && is_op(cur(P), ":")) {
                    slice = true;
                    P->i++;
                } else {
                    break;
                }
            }
            if (!is_op(cur(P), "]")) return syntax(P, "']'");
            P->i++;
            if (!slice && !parts[0]) return syntax(P, "an index");
            jnode *x = mk(P, slice ? JN_SLICE : JN_ITEM, c->line, slice ? 4 : 2);
            if (!x) return WICK_ERR_NOMEM;
            x->kids[0] = *node;
            for (int k = 0; k < (slice ? 3 : 1); k++) x->kids[1 + k] = parts[k];
            *node = x;
        } else if (is_op(c, "(")) {
            jnode *x = mk(P, JN_CALL, c->line, 1);
            if (!x) return WICK_ERR_NOMEM;
            x->kids[0] = *node;
            if ((st = parse_args(P, x))) return st;
            *node = x;
        } else {
            return WICK_OK;
        }
    }
}

/* Comma-separated items until `close`; the opener has been consumed. */
static wick_status parse_items(parser *P, const char *close, bool dict, nlist *l) {
    wick_status st;
    while (!is_op(cur(P), close)) {
        jnode *e;
        if ((st = parse_expr(P, &e))) return st;
        if (!nl_push(P, l, e, NULL)) return WICK_ERR_NOMEM;
        if (dict) {
            if (!is_op(cur(P), ":")) return syntax(P, "':'");
            P->i++;
            if ((st = parse_expr(P, &e))) return st;
            if (!nl_push(P, l, e, NULL)) return WICK_ERR_NOMEM;
        }
        if (is_op(cur(P), ",")) P->i++;
        else if (!is_op(cur(P), close)) return syntax(P, dict ? "',' or '}'" : "',' or a closing bracket");
    }
    P->i++;
    return WICK_OK;
}

static wick_status parse_primary(parser *P, jnode **out) {
    const jtok *c = cur(P);
    wick_status st;
    jnode *n;
    if (c->k == JT_NAME) {
        static const struct { const char *s; int v; } lits[] = {
            {"true", 1}, {"True", 1}, {"false", 0}, {"False", 0}, {"none", 2}, {"None", 2}};
        for (size_t k = 0; k < sizeof lits / sizeof *lits; k++)
            if (is_name(c, lits[k].s)) {
                if (!(n = mk(P, JN_LIT, c->line, 0))) return WICK_ERR_NOMEM;
                n->lit = lits[k].v == 2 ? JV_NONEV : JV_BOOLV(lits[k].v);
                P->i++;
                *out = n;
                return WICK_OK;
            }
        if (!(n = mk(P, JN_NAME, c->line, 0)) || !(n->name = tok_name(P, c))) return WICK_ERR_NOMEM;
        P->i++;
    } else if (c->k == JT_STRING) {
        jbuf b = {0}; /* adjacent literals concatenate */
        while (cur(P)->k == JT_STRING) {
            if (!jbuf_put(&b, cur(P)->s, cur(P)->n)) { free(b.p); return WICK_ERR_NOMEM; }
            P->i++;
        }
        n = mk(P, JN_LIT, c->line, 0);
        if (n) n->lit = jv_str(P->a, b.p ? b.p : "", b.n);
        free(b.p);
        if (!n || !n->lit) return WICK_ERR_NOMEM;
    } else if (c->k == JT_INT || c->k == JT_FLOAT) {
        if (!(n = mk(P, JN_LIT, c->line, 0))) return WICK_ERR_NOMEM;
        n->lit = c->k == JT_INT ? jv_int(P->a, c->i) : jv_float(P->a, c->f);
        if (!n->lit) return WICK_ERR_NOMEM;
        P->i++;
    } else if (is_op(c, "(")) {
        P->i++;
        if (is_op(cur(P), ")")) {
            P->i++;
            if (!(n = mk(P, JN_TUPLE, c->line, 0))) return WICK_ERR_NOMEM;
        } else {
            if ((st = parse_expr(P, &n))) return st;
            if (is_op(cur(P), ",")) {
                nlist l = {0};
                if (!nl_push(P, &l, n, NULL)) return WICK_ERR_NOMEM;
                P->i++;
                if ((st = parse_items(P, ")", false, &l))) return st;
                if (!(n = mk(P, JN_TUPLE, c->line, 0))) return WICK_ERR_NOMEM;
                n->kids = l.v;
                n->nkids = l.n;
            } else {
                if (!is_op(cur(P), ")")) return syntax(P, "')'");
                P->i++;
            }
        }
    } else if (is_op(c, "[") || is_op(c, "{")) {
        bool dict = is_op(c, "{");
        P->i++;
        nlist l = {0};
        if ((st = parse_items(P, dict ? "}" : "]", dict, &l))) return st;
        if (!(n = mk(P, dict ? JN_DICT : JN_LIST, c->line, 0))) return WICK_ERR_NOMEM;
        n->kids = l.v;
        n->nkids = l.n;
    } else {
        return syntax(P, "an expression");
    }
    *out = n;
    return WICK_OK;
}

static wick_status parse_unary(parser *P, bool with_filter, jnode **out) {
    wick_status st;
    if ((st = enter(P))) return st;
    const jtok *c = cur(P);
    jnode *n;
    if (is_op(c, "-") || is_op(c, "+")) {
        P->i++;
        jnode *x;
        if ((st = parse_unary(P, false, &x))) return st;
        if (!(n = mk(P, is_op(c, "-") ? JN_NEG : JN_POS, c->line, 1))) return WICK_ERR_NOMEM;
        n->kids[0] = x;
    } else if ((st = parse_primary(P, &n))) {
        return st;
    }
    if ((st = parse_postfix(P, &n))) return st;
    if (with_filter && (st = parse_filters(P, &n))) return st;
    P->depth--;
    *out = n;
    return WICK_OK;
}

static wick_status binary(parser *P, jop op, int line, jnode *l, jnode *r, jnode **out) {
    jnode *n = mk(P, JN_BINARY, line, 2);
    if (!n) return WICK_ERR_NOMEM;
    n->op = op;
    n->kids[0] = l;
    n->kids[1] = r;
    *out = n;
    return WICK_OK;
}

static wick_status parse_pow(parser *P, jnode **out) {
    wick_status st;
    jnode *l, *r;
    if ((st = parse_unary(P, true, &l))) return st;
    while (is_op(cur(P), "**")) {
        int line = cur(P)->line;
        P->i++;
        if ((st = parse_unary(P, true, &r)) || (st = binary(P, JOP_POW, line, l, r, &l))) return st;
    }
    *out = l;
    return WICK_OK;
}

static wick_status parse_math2(parser *P, jnode **out) {
    wick_status st;
    jnode *l, *r;
    if ((st = parse_pow(P, &l))) return st;
    for (;;) {
        const jtok *c = cur(P);
        jop op;
        if (is_op(c, "*")) op = JOP_MUL;
        else if (is_op(c, "/")) op = JOP_DIV;
        else if (is_op(c, "//")) op = JOP_FLOORDIV;
        else if (is_op(c, "%")) op = JOP_MOD;
        else break;
        P->i++;
        if ((st = parse_pow(P, &r)) || (st = binary(P, op, c->line, l, r, &l))) return st;
    }
    *out = l;
    return WICK_OK;
}

static wick_status parse_concat(parser *P, jnode **out) {
    wick_status st;
    jnode *l, *r;
    if ((st = parse_math2(P, &l))) return st;
    while (is_op(cur(P), "~")) {
        int line = cur(P)->line;
        P->i++;
        if ((st = parse_math2(P, &r)) || (st = binary(P, JOP_CONCAT, line, l, r, &l))) return st;
    }
    *out = l;
    return WICK_OK;
}

static wick_status parse_math1(parser *P, jnode **out) {
    wick_status st;
    jnode *l, *r;
    if ((st = parse_concat(P, &l))) return st;
    while (is_op(cur(P), "+") || is_op(cur(P), "-")) {
        const jtok *c = cur(P);
        P->i++;
        if ((st = parse_concat(P, &r)) ||
            (st = binary(P, is_op(c, "+") ? JOP_ADD : JOP_SUB, c->line, l, r, &l)))
            return st;
    }
    *out = l;
    return WICK_OK;
}

static wick_status parse_compare(parser *P, jnode **out) {
    wick_status st;
    jnode *l, *r, *acc = NULL;
    if ((st = parse_math1(P, &l))) return st;
    for (;;) {
        const jtok *c = cur(P);
        jop op;
        if (is_op(c, "==")) op = JOP_EQ;
        else if (is_op(c, "!=")) op = JOP_NE;
        else if (is_op(c, "<")) op = JOP_LT;
        else if (is_op(c, "<=")) op = JOP_LE;
        else if (is_op(c, ">")) op = JOP_GT;
        else if (is_op(c, ">=")) op = JOP_GE;
        else if (is_name(c, "in")) op = JOP_IN;
        else if (is_name(c, "not") && is_name(peek(P, 1), "in")) { op = JOP_NOTIN; P->i++; }
        else break;
        P->i++;
        jnode *b;
        if ((st = parse_math1(P, &r)) || (st = binary(P, op, c->line, l, r, &b))) return st;
        if (acc) { /* a < b < c  ==  (a < b) and (b < c) */
            jnode *x = mk(P, JN_AND, c->line, 2);
            if (!x) return WICK_ERR_NOMEM;
            x->kids[0] = acc;
            x->kids[1] = b;
            acc = x;
        } else {
            acc = b;
        }
        l = r;
    }
    *out = acc ? acc : l;
    return WICK_OK;
}

static wick_status parse_not(parser *P, jnode **out) {
    if (is_name(cur(P), "not")) {
        int line = cur(P)->line;
        P->i++;
        wick_status st;
        jnode *x;
        if ((st = enter(P)) || (st = parse_not(P, &x))) return st;
        P->depth--;
        jnode *n = mk(P, JN_NOT, line, 1);
        if (!n) return WICK_ERR_NOMEM;
        n->kids[0] = x;
        *out = n;
        return WICK_OK;
    }
    return parse_compare(P, out);
}

static wick_status parse_andor(parser *P, bool is_or, jnode **out) {
    wick_status st;
    jnode *l, *r;
    if ((st = is_or ? parse_andor(P, false, &l) : parse_not(P, &l))) return st;
    while (is_name(cur(P), is_or ? "or" : "and")) {
        int line = cur(P)->line;
        P->i++;
        if ((st = is_or ? parse_andor(P, false, &r) : parse_not(P, &r))) return st;
        jnode *n = mk(P, is_or ? JN_OR : JN_AND, line, 2);
        if (!n) return WICK_ERR_NOMEM;
        n->kids[0] = l;
        n->kids[1] = r;
        l = n;
    }
    *out = l;
    return WICK_OK;
}

static wick_status parse_or(parser *P, jnode **out) { return parse_andor(P, true, out); }

static wick_status parse_expr(parser *P, jnode **out) {
    wick_status st;
    jnode *l;
    if ((st = enter(P)) || (st = parse_or(P, &l))) return st;
    while (is_name(cur(P), "if")) {
        int line = cur(P)->line;
        P->i++;
        jnode *c, *e = NULL;
        if ((st = parse_or(P, &c))) return st;
        if (is_name(cur(P), "else")) {
            P->i++;
            if ((st = parse_expr(P, &e))) return st;
        }
        jnode *n = mk(P, JN_COND, line, 3);
        if (!n) return WICK_ERR_NOMEM;
        n->kids[0] = l;
        n->kids[1] = c;
        n->kids[2] = e;
        l = n;
    }
    P->depth--;
    *out = l;
    return WICK_OK;
}

/* expr or `a, b, ...` (a tuple without parentheses), as in set values and for iterables. */
static wick_status parse_tuple_expr(parser *P, bool condexpr, jnode **out) {
    wick_status st;
    jnode *e;
    if ((st = condexpr ? parse_expr(P, &e) : parse_or(P, &e))) return st;
    if (!is_op(cur(P), ",")) {
        *out = e;
        return WICK_OK;
    }
    nlist l = {0};
    if (!nl_push(P, &l, e, NULL)) return WICK_ERR_NOMEM;
    while (is_op(cur(P), ",")) {
        P->i++;
        if (cur(P)->k == JT_BLOCK_END || cur(P)->k == JT_VAR_END) break;
        if ((st = condexpr ? parse_expr(P, &e) : parse_or(P, &e))) return st;
        if (!nl_push(P, &l, e, NULL)) return WICK_ERR_NOMEM;
    }
    jnode *t = mk(P, JN_TUPLE, e->line, 0);
    if (!t) return WICK_ERR_NOMEM;
    t->kids = l.v;
    t->nkids = l.n;
    *out = t;
    return WICK_OK;
}

/* ---- statements ---- */

static wick_status parse_body(parser *P, const char *const *ends, jnode **out, const char **end);

static wick_status expect_block_end(parser *P) {
    if (cur(P)->k != JT_BLOCK_END) return syntax(P, "'%}'");
    P->i++;
    return WICK_OK;
}

/* At `{% NAME` for one of `ends`: consumes `{% NAME`, leaves the rest of the tag. */
static wick_status body_until(parser *P, const char *const *ends, jnode **body, const char **end) {
    wick_status st;
    if ((st = enter(P)) || (st = parse_body(P, ends, body, end))) return st;
    P->depth--;
    if (!*end) {
        char b[64];
        return err_set(WICK_ERR_FORMAT, "template line %d: expected {%% %s %%} before %s",
                       cur(P)->line, ends[0], tok_desc(cur(P), b, sizeof b));
    }
    return WICK_OK;
}

static wick_status parse_if(parser *P, int line, jnode **out) {
    static const char *const ends[] = {"endif", "elif", "else", NULL};
    wick_status st;
    jnode *n = mk(P, JN_IF, line, 3);
    if (!n) return WICK_ERR_NOMEM;
    const char *end;
    if ((st = parse_expr(P, &n->kids[0])) || (st = expect_block_end(P)) ||
        (st = body_until(P, ends, &n->kids[1], &end)))
        return st;
    if (!strcmp(end, "elif")) {
        if ((st = enter(P)) || (st = parse_if(P, cur(P)->line, &n->kids[2]))) return st;
        P->depth--;
    } else if (!strcmp(end, "else")) {
        static const char *const ends2[] = {"endif", NULL};
        if ((st = expect_block_end(P)) || (st = body_until(P, ends2, &n->kids[2], &end)) ||
            (st = expect_block_end(P)))
            return st;
    } else if ((st = expect_block_end(P))) {
        return st;
    }
    *out = n;
    return WICK_OK;
}

static wick_status parse_targets(parser *P, jnode *n) {
    nlist l = {0};
    bool paren = is_op(cur(P), "(");
    if (paren) P->i++;
    for (;;) {
        if (cur(P)->k != JT_NAME) return syntax(P, "a loop variable name");
        const char *nm = tok_name(P, cur(P));
        if (!nm || !nl_push(P, &l, NULL, nm)) return WICK_ERR_NOMEM;
        P->i++;
        if (!is_op(cur(P), ",")) break;
        P->i++;
    }
    if (paren) {
        if (!is_op(cur(P), ")")) return syntax(P, "')'");
        P->i++;
    }
    n->targets = l.names;
    n->ntargets = l.n;
    return WICK_OK;
}

static wick_status parse_for(parser *P, int line, jnode **out) {
    static const char *const ends[] = {"endfor", "else", NULL};
    wick_status st;
    jnode *n = mk(P, JN_FOR, line, 4);
    if (!n) return WICK_ERR_NOMEM;
    if ((st = parse_targets(P, n))) return st;
    if (!is_name(cur(P), "in")) return syntax(P, "'in'");
    P->i++;
    if ((st = parse_tuple_expr(P, false, &n->kids[0]))) return st;
    if (is_name(cur(P), "if")) {
        P->i++;
        if ((st = parse_expr(P, &n->kids[3]))) return st;
    }
    if (is_name(cur(P), "recursive"))
        return err_set(WICK_ERR_UNSUPPORTED, "template line %d: recursive for loops are not "
                       "supported", cur(P)->line);
    const char *end;
    P->loops++;
    st = expect_block_end(P);
    if (!st) st = body_until(P, ends, &n->kids[1], &end);
    P->loops--;
    if (st) return st;
    if (!strcmp(end, "else")) {
        static const char *const ends2[] = {"endfor", NULL};
        if ((st = expect_block_end(P)) || (st = body_until(P, ends2, &n->kids[2], &end)))
            return st;
    }
    if ((st = expect_block_end(P))) return st;
    *out = n;
    return WICK_OK;
}

static wick_status parse_set(parser *P, int line, jnode **out) {
    wick_status st;
    jnode *target;
    if (cur(P)->k != JT_NAME) return syntax(P, "a variable name");
    if (is_op(peek(P, 1), ".")) { /* ns.attr */
        if (peek(P, 2)->k != JT_NAME) { P->i += 2; return syntax(P, "an attribute name"); }
        jnode *obj = mk(P, JN_NAME, line, 0);
        if (!(target = mk(P, JN_ATTR, line, 1)) || !obj || !(obj->name = tok_name(P, cur(P))) ||
            !(target->name = tok_name(P, peek(P, 2))))
            return WICK_ERR_NOMEM;
        target->kids[0] = obj;
        P->i += 3;
    } else {
        if (!(target = mk(P, JN_TUPLE, line, 0))) return WICK_ERR_NOMEM;
        if ((st = parse_targets(P, target))) return st;
        if (target->ntargets == 1) {
            target->k = JN_NAME;
            target->name = target->targets[0];
        }
    }
    if (is_op(cur(P), "=")) {
        P->i++;
        jnode *n = mk(P, JN_SET, line, 2);
        if (!n) return WICK_ERR_NOMEM;
        n->kids[0] = target;
        if ((st = parse_tuple_expr(P, true, &n->kids[1])) || (st = expect_block_end(P))) return st;
        *out = n;
        return WICK_OK;
    }
    if (target->k != JN_NAME) return syntax(P, "'='");
    jnode *n = mk(P, JN_SETBLOCK, line, 3);
    if (!n) return WICK_ERR_NOMEM;
    n->kids[0] = target;
    if (is_op(cur(P), "|")) { /* {% set x | filter %} */
        jnode *f = NULL;
        if ((st = parse_filters(P, &f))) return st;
        n->kids[2] = f;
    }
    static const char *const ends[] = {"endset", NULL};
    const char *end;
    if ((st = expect_block_end(P)) || (st = body_until(P, ends, &n->kids[1], &end)) ||
        (st = expect_block_end(P)))
        return st;
    *out = n;
    return WICK_OK;
}

static wick_status parse_macro(parser *P, int line, jnode **out) {
    wick_status st;
    jnode *n = mk(P, JN_MACRO, line, 1);
    if (!n) return WICK_ERR_NOMEM;
    if (cur(P)->k != JT_NAME) return syntax(P, "a macro name");
    if (!(n->name = tok_name(P, cur(P)))) return WICK_ERR_NOMEM;
    P->i++;
    if (!is_op(cur(P), "(")) return syntax(P, "'('");
    P->i++;
    nlist l = {0};
    while (!is_op(cur(P), ")")) {
        if (cur(P)->k != JT_NAME) return syntax(P, "a parameter name");
        const char *pn = tok_name(P, cur(P));
        if (!pn) return WICK_ERR_NOMEM;
        P->i++;
        jnode *def = NULL;
        if (is_op(cur(P), "=")) {
            P->i++;
            if ((st = parse_expr(P, &def))) return st;
        }
        if (!nl_push(P, &l, def, pn)) return WICK_ERR_NOMEM;
        if (is_op(cur(P), ",")) P->i++;
        else if (!is_op(cur(P), ")")) return syntax(P, "',' or ')'");
    }
    P->i++;
    n->args = l.v;
    n->argnames = l.names;
    n->nargs = l.n;
    static const char *const ends[] = {"endmacro", NULL};
    const char *end;
    int loops = P->loops; /* a macro body is outside any loop around its definition */
    P->loops = 0;
    st = expect_block_end(P);
    if (!st) st = body_until(P, ends, &n->kids[0], &end);
    P->loops = loops;
    if (st) return st;
    if (cur(P)->k == JT_NAME) P->i++; /* {% endmacro name %} */
    if ((st = expect_block_end(P))) return st;
    *out = n;
    return WICK_OK;
}

/* One `{% ... %}` statement; the `{%` and the tag name are current. */
static wick_status parse_stmt(parser *P, jnode **out) {
    const jtok *t = cur(P);
    int line = t->line;
    if (t->k != JT_NAME) return syntax(P, "a tag name");
    P->i++;
    wick_status st;
    if (is_name(t, "if")) return parse_if(P, line, out);
    if (is_name(t, "for")) return parse_for(P, line, out);
    if (is_name(t, "set")) return parse_set(P, line, out);
    if (is_name(t, "macro")) return parse_macro(P, line, out);
    if (is_name(t, "break") || is_name(t, "continue")) {
        if (!P->loops) /* jinja2 rejects it at compile time too */
            return err_set(WICK_ERR_FORMAT, "template line %d: '%.*s' outside loop", line,
                           (int)t->n, t->s);
        if (!(*out = mk(P, is_name(t, "break") ? JN_BREAK : JN_CONTINUE, line, 0)))
            return WICK_ERR_NOMEM;
        return expect_block_end(P);
    }
    if (is_name(t, "generation")) { /* transformers' assistant-mask marker: just the body */
        static const char *const ends[] = {"endgeneration", NULL};
        const char *end;
        if ((st = expect_block_end(P)) || (st = body_until(P, ends, out, &end))) return st;
        return expect_block_end(P);
    }
    if (is_name(t, "filter")) {
        jnode *n = mk(P, JN_FILTERBLOCK, line, 2), *f = NULL;
        if (!n) return WICK_ERR_NOMEM;
        if ((st = parse_one_filter(P, &f))) return st;
        while (is_op(cur(P), "|")) {
            P->i++;
            if ((st = parse_one_filter(P, &f))) return st;
        }
        n->kids[0] = f;
        static const char *const ends[] = {"endfilter", NULL};
        const char *end;
        if ((st = expect_block_end(P)) || (st = body_until(P, ends, &n->kids[1], &end)) ||
            (st = expect_block_end(P)))
            return st;
        *out = n;
        return WICK_OK;
    }
    return err_set(WICK_ERR_UNSUPPORTED, "template line %d: the {%% %.*s %%} tag is not "
                   "supported", line, (int)(t->n > 40 ? 40 : t->n), t->s);
}

/* Parses text/output/statements until EOF or `{% end %}` for an end in `ends` (then *end is
 * that name and `{% name` has been consumed). */
static wick_status parse_body(parser *P, const char *const *ends, jnode **out, const char **end) {
    nlist l = {0};
    wick_status st;
    *end = NULL;
    int line = cur(P)->line;
    for (;;) {
        const jtok *t = cur(P);
        if (t->k == JT_EOF) break;
        jnode *x = NULL;
        if (t->k == JT_TEXT) {
            if (!(x = mk(P, JN_TEXT, t->line, 0)) || !(x->lit = jv_str_own(P->a, t->s, t->n)))
                return WICK_ERR_NOMEM;
            P->i++;
        } else if (t->k == JT_VAR_BEGIN) {
            P->i++;
            if (!(x = mk(P, JN_OUTPUT, t->line, 1))) return WICK_ERR_NOMEM;
            if ((st = parse_tuple_expr(P, true, &x->kids[0]))) return st;
            if (cur(P)->k != JT_VAR_END) return syntax(P, "'}}'");
            P->i++;
        } else if (t->k == JT_BLOCK_BEGIN) {
            const jtok *nm = peek(P, 1);
            for (int k = 0; ends && ends[k]; k++)
                if (is_name(nm, ends[k])) {
                    *end = ends[k];
                    P->i += 2;
                    goto done;
                }
            if (nm->k == JT_NAME && nm->n > 3 && !memcmp(nm->s, "end", 3)) {
                return err_set(WICK_ERR_FORMAT, "template line %d: unexpected {%% %.*s %%}",
                               nm->line, (int)(nm->n > 40 ? 40 : nm->n), nm->s);
            }
            if (nm->k == JT_NAME && (is_name(nm, "elif") || is_name(nm, "else")))
                return err_set(WICK_ERR_FORMAT, "template line %d: unexpected {%% %.*s %%}",
                               nm->line, (int)nm->n, nm->s);
            P->i++;
            if ((st = parse_stmt(P, &x))) return st;
        } else {
            return syntax(P, "text or a tag");
        }
        if (!nl_push(P, &l, x, NULL)) return WICK_ERR_NOMEM;
    }
done:;
    jnode *b = mk(P, JN_BODY, line, 0);
    if (!b) return WICK_ERR_NOMEM;
    b->kids = l.v;
    b->nkids = l.n;
    *out = b;
    return WICK_OK;
}

wick_status jinja_parse(jarena *a, const jtok *toks, size_t ntoks, jnode **root) {
    parser P = {.a = a, .t = toks, .n = ntoks};
    const char *end;
    wick_status st = parse_body(&P, NULL, root, &end);
    if (!st && cur(&P)->k != JT_EOF) st = syntax(&P, "end of template");
    return st;
}
