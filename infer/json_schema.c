/* json_schema.c — structured output (see json_schema.h): schema compiler, byte matcher, and
 * the token mask.
 *
 * The matcher is a stack of frames, one per open JSON construct. A frame that ends at a byte
 * that belongs to its parent (a number, a literal that could have gone on) pops and lets the
 * parent see the same byte. Every state the matcher can be in has at least one way to go on
 * (numbers and strings stop growing at their limits, \u escapes never start a surrogate), so
 * a constrained generation always has a token to choose until the value is complete. */
#include "infer/json_schema.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tokenizer/tok_impl.h"

/* ---- compiled schema ------------------------------------------------------------------------ */

enum { K_ANY, K_OBJECT, K_ARRAY, K_STRING, K_NUMBER, K_INTEGER, K_BOOL, K_NULL, K_LITS, K_UNION };

#define JS_MAX_PROPS 64
#define JS_MAX_LITS 64
#define JS_MAX_ALTS 32
#define JS_MAX_NODES 4096
#define JS_MAX_DEPTH 72
#define NUM_INT_DIGITS 15
#define NUM_FRAC_DIGITS 10
#define NUM_EXP_DIGITS 3

typedef struct jprop {
    char *key;     /* the key as it appears between the quotes (JSON-escaped) */
    int klen;
    int node;
    bool required;
} jprop;

typedef struct jnode {
    int kind;
    jprop *props;  /* object */
    int nprops;
    bool any_keys; /* object without properties: any keys, values of add_node */
    int add_node;  /* additionalProperties' schema for any_keys objects (0: any value) */
    bool no_keys;  /* object without properties and additionalProperties false: only {} */
    int items, min_items, max_items;   /* array; max -1 = none */
    int min_len, max_len;              /* string; max -1 = none */
    char **lits;   /* literal JSON texts (enum / const), compact */
    int *lit_len;
    int nlits;
    int alts[JS_MAX_ALTS];             /* union */
    int nalts;
    char path[80]; /* where it was (unions: for the error about overlapping branches) */
    /* union: object branches told apart by their first property, a required constant of its
       own in each (a discriminator, e.g. "name" of a tool call or "type": "circle"); lits
       then hold those constants and disc_branch the branch of each */
    bool discriminated;
    int disc_branch[JS_MAX_ALTS];
    uint8_t first[32];                 /* bytes a value of this node can start with */
} jnode;

struct js_schema {
    jnode *n;
    int nn, cap;
    int root;
};

static const char *const k_tf[] = {"true", "false"};
static const int k_tf_len[] = {4, 5};
static const char *const k_null[] = {"null"};
static const int k_null_len[] = {4};
static const char *const k_tfn[] = {"true", "false", "null"};
static const int k_tfn_len[] = {4, 5, 4};

void js_schema_free(js_schema *s) {
    if (!s) return;
    for (int i = 0; i < s->nn; i++) {
        for (int k = 0; k < s->n[i].nprops; k++) free(s->n[i].props[k].key);
        free(s->n[i].props);
        for (int k = 0; k < s->n[i].nlits; k++) free(s->n[i].lits[k]);
        free(s->n[i].lits);
        free(s->n[i].lit_len);
    }
    free(s->n);
    free(s);
}

typedef struct cctx {
    js_schema *s;
    const cJSON *doc;
    wick_status st;
    struct { const char *name; int idx; } memo[256];
    int nmemo;
    int depth;
} cctx;

static int cfail(cctx *c, wick_status st, const char *fmt, const char *a, const char *b) {
    if (!c->st) {
        c->st = st;
        err_set(st, fmt, a, b);
    }
    return -1;
}

static int new_node(cctx *c, const char *path) {
    if (c->s->nn == JS_MAX_NODES)
        return cfail(c, WICK_ERR_UNSUPPORTED, "json schema: more than 4096 nodes (at %s)%s", path, "");
    if (c->s->nn == c->s->cap) {
        int cap = c->s->cap ? 2 * c->s->cap : 16;
        jnode *n = realloc(c->s->n, sizeof *n * (size_t)cap);
        if (!n) return cfail(c, WICK_ERR_NOMEM, "out of memory%s%s", "", "");
        c->s->n = n;
        c->s->cap = cap;
    }
    jnode *n = &c->s->n[c->s->nn];
    memset(n, 0, sizeof *n);
    n->max_items = n->max_len = -1;
    snprintf(n->path, sizeof n->path, "%s", path);
    return c->s->nn++;
}

/* Non-negative integer keyword (absent: *out unchanged). */
static bool get_count(cctx *c, const cJSON *j, const char *key, const char *path, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v) return true;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e6 ||
        v->valuedouble != floor(v->valuedouble)) {
        cfail(c, WICK_ERR_FORMAT, "json schema: '%s' at %s must be an integer in [0, 1000000]", key, path);
        return false;
    }
    *out = (int)v->valuedouble;
    return true;
}

static int compile(cctx *c, const cJSON *j, const char *path);

static bool add_literal(cctx *c, jnode *n, const cJSON *v, const char *path) {
    if (n->nlits == JS_MAX_LITS) {
        cfail(c, WICK_ERR_UNSUPPORTED, "json schema: more than 64 enum values at %s%s", path, "");
        return false;
    }
    char *t = cJSON_PrintUnformatted(v);
    if (!t) {
        cfail(c, WICK_ERR_NOMEM, "out of memory%s%s", "", "");
        return false;
    }
    char **l = realloc(n->lits, sizeof *l * (size_t)(n->nlits + 1));
    int *ll = realloc(n->lit_len, sizeof *ll * (size_t)(n->nlits + 1));
    if (l) n->lits = l;
    if (ll) n->lit_len = ll;
    if (!l || !ll) {
        free(t);
        cfail(c, WICK_ERR_NOMEM, "out of memory%s%s", "", "");
        return false;
    }
    for (int i = 0; i < n->nlits; i++)
        if (!strcmp(n->lits[i], t)) { /* duplicates add nothing */
            free(t);
            return true;
        }
    n->lits[n->nlits] = t;
    n->lit_len[n->nlits++] = (int)strlen(t);
    return true;
}

/* Fills node idx as a value of type `type` from the keywords of j. */
static bool compile_typed(cctx *c, const cJSON *j, const char *type, int idx, const char *path) {
    char sub[256];
    if (!strcmp(type, "object")) {
        c->s->n[idx].kind = K_OBJECT;
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(j, "properties");
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(j, "required");
        const cJSON *add = cJSON_GetObjectItemCaseSensitive(j, "additionalProperties");
        if (props && !cJSON_IsObject(props)) return cfail(c, WICK_ERR_FORMAT, "json schema: 'properties' at %s must be an object%s", path, ""), false;
        if (req && !cJSON_IsArray(req)) return cfail(c, WICK_ERR_FORMAT, "json schema: 'required' at %s must be an array%s", path, ""), false;
        if (add && !cJSON_IsBool(add) && !cJSON_IsObject(add))
            return cfail(c, WICK_ERR_FORMAT, "json schema: 'additionalProperties' at %s must be a boolean or a schema%s", path, ""), false;
        const cJSON *p;
        int np = props ? cJSON_GetArraySize(props) : 0;
        /* required names that properties does not list: any value */
        const cJSON *r;
        cJSON_ArrayForEach(r, req) {
            if (!cJSON_IsString(r)) return cfail(c, WICK_ERR_FORMAT, "json schema: 'required' at %s must hold strings%s", path, ""), false;
            bool seen = false; /* a name listed twice is one property */
            for (const cJSON *q = req->child; q != r; q = q->next) seen |= cJSON_IsString(q) && !strcmp(q->valuestring, r->valuestring);
            if (!seen && (!props || !cJSON_GetObjectItemCaseSensitive(props, r->valuestring))) np++;
        }
        if (np > JS_MAX_PROPS) return cfail(c, WICK_ERR_UNSUPPORTED, "json schema: more than 64 properties at %s%s", path, ""), false;
        jprop *pr = np ? calloc((size_t)np, sizeof *pr) : NULL;
        if (np && !pr) return cfail(c, WICK_ERR_NOMEM, "out of memory%s%s", "", ""), false;
        c->s->n[idx].props = pr;
        int k = 0;
        for (int pass = 0; pass < 2; pass++) {
            const cJSON *list = pass == 0 ? props : req;
            cJSON_ArrayForEach(p, list) {
                const char *name = pass == 0 ? p->string : p->valuestring;
                if (pass == 1 && props && cJSON_GetObjectItemCaseSensitive(props, name)) continue;
                bool seen = false;
                for (const cJSON *q = list->child; pass == 1 && q != p; q = q->next) seen |= !strcmp(q->valuestring, name);
                if (seen) continue;
                cJSON *ks = cJSON_CreateString(name);
                char *esc = ks ? cJSON_PrintUnformatted(ks) : NULL;
                cJSON_Delete(ks);
                if (!esc) return cfail(c, WICK_ERR_NOMEM, "out of memory%s%s", "", ""), false;
                size_t el = strlen(esc);
                memmove(esc, esc + 1, el - 2); /* drop the quotes */
                esc[el - 2] = 0;
                pr[k].key = esc;
                pr[k].klen = (int)el - 2;
                snprintf(sub, sizeof sub, "%.180s/properties/%s", path, name);
                int child = pass == 0 ? compile(c, p, sub) : 0;
                if (child < 0) {
                    c->s->n[idx].nprops = k + 1;
                    return false;
                }
                pr = c->s->n[idx].props; /* compile may have moved the node array, not this one */
                pr[k].node = child;
                cJSON *rr;
                cJSON_ArrayForEach(rr, req) pr[k].required |= cJSON_IsString(rr) && !strcmp(rr->valuestring, name);
                k++;
                c->s->n[idx].nprops = k;
            }
        }
        if (k == 0) {
            if (cJSON_IsFalse(add)) {
                c->s->n[idx].no_keys = true;
            } else {
                c->s->n[idx].any_keys = true;
                if (cJSON_IsObject(add)) { /* a map: every value follows this schema */
                    snprintf(sub, sizeof sub, "%.180s/additionalProperties", path);
                    const int v = compile(c, add, sub);
                    if (v < 0) return false;
                    c->s->n[idx].add_node = v;
                }
            }
        }
        return true;
    }
    if (!strcmp(type, "array")) {
        c->s->n[idx].kind = K_ARRAY;
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(j, "items");
        if (it && cJSON_IsArray(it))
            return cfail(c, WICK_ERR_UNSUPPORTED, "json schema: 'items' as a list (tuples) at %s is not supported%s", path, ""), false;
        int mi = 0, ma = -1;
        if (!get_count(c, j, "minItems", path, &mi) || !get_count(c, j, "maxItems", path, &ma)) return false;
        if (ma >= 0 && mi > ma) return cfail(c, WICK_ERR_FORMAT, "json schema: minItems > maxItems at %s%s", path, ""), false;
        int child = 0;
        if (it) {
            snprintf(sub, sizeof sub, "%.180s/items", path);
            if ((child = compile(c, it, sub)) < 0) return false;
        }
        c->s->n[idx].items = child;
        c->s->n[idx].min_items = mi;
        c->s->n[idx].max_items = ma;
        return true;
    }
    if (!strcmp(type, "string")) {
        int mi = 0, ma = -1;
        if (!get_count(c, j, "minLength", path, &mi) || !get_count(c, j, "maxLength", path, &ma)) return false;
        if (ma >= 0 && mi > ma) return cfail(c, WICK_ERR_FORMAT, "json schema: minLength > maxLength at %s%s", path, ""), false;
        c->s->n[idx].kind = K_STRING;
        c->s->n[idx].min_len = mi;
        c->s->n[idx].max_len = ma;
        return true;
    }
    if (!strcmp(type, "number")) return c->s->n[idx].kind = K_NUMBER, true;
    if (!strcmp(type, "integer")) return c->s->n[idx].kind = K_INTEGER, true;
    if (!strcmp(type, "boolean")) return c->s->n[idx].kind = K_BOOL, true;
    if (!strcmp(type, "null")) return c->s->n[idx].kind = K_NULL, true;
    return cfail(c, WICK_ERR_FORMAT, "json schema: unknown type '%s' at %s", type, path), false;
}

static const char *const k_unsupported[] = {
    "not", "allOf", "if", "then", "else", "patternProperties", "propertyNames", "minProperties",
    "maxProperties", "uniqueItems", "contains", "minContains", "maxContains", "prefixItems",
    "dependentRequired", "dependentSchemas", "dependencies", "unevaluatedProperties",
    "unevaluatedItems", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "multipleOf", "$dynamicRef", "$recursiveRef", "additionalItems", "contentSchema"};

static int compile(cctx *c, const cJSON *j, const char *path) {
    if (c->st) return -1;
    if (++c->depth > 64) {
        c->depth--;
        return cfail(c, WICK_ERR_UNSUPPORTED, "json schema: nested deeper than 64 at %s%s", path, "");
    }
    int idx = -1;
    char sub[256];
    if (cJSON_IsTrue(j)) {
        idx = 0; /* the built-in "any value" node */
        goto out;
    }
    if (cJSON_IsFalse(j)) {
        idx = cfail(c, WICK_ERR_UNSUPPORTED, "json schema: 'false' at %s accepts nothing%s", path, "");
        goto out;
    }
    if (!cJSON_IsObject(j)) {
        idx = cfail(c, WICK_ERR_FORMAT, "json schema: the schema at %s must be an object or true%s", path, "");
        goto out;
    }
    for (size_t i = 0; i < sizeof k_unsupported / sizeof k_unsupported[0]; i++)
        if (cJSON_GetObjectItemCaseSensitive(j, k_unsupported[i])) {
            idx = cfail(c, WICK_ERR_UNSUPPORTED, "json schema: '%s' at %s is not supported by structured output",
                        k_unsupported[i], path);
            goto out;
        }
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(j, "$ref");
    if (ref) {
        static const char *const siblings[] = {"type", "properties", "items", "enum", "const", "anyOf", "oneOf",
                                               "required", "minItems", "maxItems", "minLength", "maxLength"};
        for (size_t i = 0; i < sizeof siblings / sizeof siblings[0]; i++)
            if (cJSON_GetObjectItemCaseSensitive(j, siblings[i])) {
                idx = cfail(c, WICK_ERR_UNSUPPORTED, "json schema: '$ref' with '%s' beside it at %s is not supported",
                            siblings[i], path);
                goto out;
            }
        const char *r = cJSON_IsString(ref) ? ref->valuestring : "";
        const char *name = !strncmp(r, "#/$defs/", 8) ? r + 8 : !strncmp(r, "#/definitions/", 14) ? r + 14 : NULL;
        if (!name || !*name || strchr(name, '/') || strchr(name, '~')) {
            idx = cfail(c, WICK_ERR_UNSUPPORTED, "json schema: '$ref' \"%s\" at %s: only #/$defs/NAME and #/definitions/NAME are supported",
                        r, path);
            goto out;
        }
        for (int i = 0; i < c->nmemo; i++)
            if (!strcmp(c->memo[i].name, r)) {
                idx = c->memo[i].idx;
                goto out;
            }
        const cJSON *defs = cJSON_GetObjectItemCaseSensitive(c->doc, !strncmp(r, "#/$defs/", 8) ? "$defs" : "definitions");
        const cJSON *def = cJSON_GetObjectItemCaseSensitive(defs, name);
        if (!def) {
            idx = cfail(c, WICK_ERR_FORMAT, "json schema: '$ref' \"%s\" at %s names no definition", r, path);
            goto out;
        }
        if (c->nmemo == 256) {
            idx = cfail(c, WICK_ERR_UNSUPPORTED, "json schema: more than 256 definitions (at %s)%s", path, "");
            goto out;
        }
        /* a node for the definition before its body, so that it can refer to itself */
        if ((idx = new_node(c, r)) < 0) goto out;
        c->memo[c->nmemo].name = r;
        c->memo[c->nmemo++].idx = idx;
        const cJSON *dref = cJSON_GetObjectItemCaseSensitive(def, "$ref");
        if (dref) { /* a definition that is itself a reference: an alias (a one-branch union) */
            int t = compile(c, def, r);
            if (t < 0) {
                idx = -1;
                goto out;
            }
            c->s->n[idx].kind = K_UNION;
            c->s->n[idx].alts[0] = t;
            c->s->n[idx].nalts = 1;
            goto out;
        }
        snprintf(sub, sizeof sub, "%s", r);
        j = def;
        path = sub;
        /* fall through: compile the definition's keywords into idx */
    } else if ((idx = new_node(c, path)) < 0) {
        goto out;
    }
    {
        const cJSON *en = cJSON_GetObjectItemCaseSensitive(j, "enum");
        const cJSON *co = cJSON_GetObjectItemCaseSensitive(j, "const");
        const cJSON *any = cJSON_GetObjectItemCaseSensitive(j, "anyOf");
        if (!any) any = cJSON_GetObjectItemCaseSensitive(j, "oneOf");
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(j, "type");
        if (en || co) {
            if (en && (!cJSON_IsArray(en) || cJSON_GetArraySize(en) == 0)) {
                idx = cfail(c, WICK_ERR_FORMAT, "json schema: 'enum' at %s must be a non-empty array%s", path, "");
                goto out;
            }
            c->s->n[idx].kind = K_LITS;
            const cJSON *v;
            if (co && !add_literal(c, &c->s->n[idx], co, path)) idx = -1;
            else if (!co)
                cJSON_ArrayForEach(v, en) if (!add_literal(c, &c->s->n[idx], v, path)) {
                    idx = -1;
                    break;
                }
            goto out;
        }
        if (any) {
            if (!cJSON_IsArray(any) || cJSON_GetArraySize(any) == 0 || cJSON_GetArraySize(any) > JS_MAX_ALTS) {
                idx = cfail(c, WICK_ERR_UNSUPPORTED, "json schema: anyOf/oneOf at %s must hold 1 to 32 schemas%s", path, "");
                goto out;
            }
            c->s->n[idx].kind = K_UNION;
            const cJSON *a;
            int k = 0;
            cJSON_ArrayForEach(a, any) {
                snprintf(sub, sizeof sub, "%.180s/anyOf/%d", path, k);
                int t = compile(c, a, sub);
                if (t < 0) {
                    idx = -1;
                    goto out;
                }
                c->s->n[idx].alts[k++] = t;
                c->s->n[idx].nalts = k;
            }
            goto out;
        }
        if (cJSON_IsArray(ty)) {
            int nt = cJSON_GetArraySize(ty);
            if (nt == 0 || nt > JS_MAX_ALTS) {
                idx = cfail(c, WICK_ERR_FORMAT, "json schema: 'type' at %s must list 1 to 32 types%s", path, "");
                goto out;
            }
            c->s->n[idx].kind = K_UNION;
            const cJSON *t;
            int k = 0;
            cJSON_ArrayForEach(t, ty) {
                if (!cJSON_IsString(t)) {
                    idx = cfail(c, WICK_ERR_FORMAT, "json schema: 'type' at %s must hold type names%s", path, "");
                    goto out;
                }
                int a = new_node(c, path);
                if (a < 0 || !compile_typed(c, j, t->valuestring, a, path)) {
                    idx = -1;
                    goto out;
                }
                c->s->n[idx].alts[k++] = a;
                c->s->n[idx].nalts = k;
            }
            goto out;
        }
        const char *tn = cJSON_IsString(ty) ? ty->valuestring : NULL;
        if (ty && !tn) {
            idx = cfail(c, WICK_ERR_FORMAT, "json schema: 'type' at %s must be a name or a list of names%s", path, "");
            goto out;
        }
        if (!tn) { /* no type: what the keywords imply, else any value */
            if (cJSON_GetObjectItemCaseSensitive(j, "properties") || cJSON_GetObjectItemCaseSensitive(j, "required") ||
                cJSON_GetObjectItemCaseSensitive(j, "additionalProperties"))
                tn = "object";
            else if (cJSON_GetObjectItemCaseSensitive(j, "items") || cJSON_GetObjectItemCaseSensitive(j, "minItems") ||
                     cJSON_GetObjectItemCaseSensitive(j, "maxItems"))
                tn = "array";
            else if (cJSON_GetObjectItemCaseSensitive(j, "minLength") || cJSON_GetObjectItemCaseSensitive(j, "maxLength"))
                tn = "string";
        }
        if (!tn) c->s->n[idx].kind = K_ANY;
        else if (!compile_typed(c, j, tn, idx, path)) idx = -1;
    }
out:
    c->depth--;
    return c->st ? -1 : idx;
}

static void set_bit(uint8_t *b, unsigned c) { b[c >> 3] |= (uint8_t)(1u << (c & 7)); }
static bool has_bit(const uint8_t *b, unsigned c) { return b[c >> 3] >> (c & 7) & 1; }

static void own_first(const jnode *n, uint8_t *f) {
    switch (n->kind) {
    case K_ANY:
        set_bit(f, '{'), set_bit(f, '['), set_bit(f, '"'), set_bit(f, 't'), set_bit(f, 'f'), set_bit(f, 'n');
        /* fall through */
    case K_NUMBER:
    case K_INTEGER:
        set_bit(f, '-');
        for (unsigned d = '0'; d <= '9'; d++) set_bit(f, d);
        break;
    case K_OBJECT: set_bit(f, '{'); break;
    case K_ARRAY: set_bit(f, '['); break;
    case K_STRING: set_bit(f, '"'); break;
    case K_BOOL: set_bit(f, 't'), set_bit(f, 'f'); break;
    case K_NULL: set_bit(f, 'n'); break;
    case K_LITS:
        for (int i = 0; i < n->nlits; i++) set_bit(f, (unsigned char)n->lits[i][0]);
        break;
    default: break;
    }
}

wick_status js_compile(const char *schema_json, js_schema **out) {
    *out = NULL;
    if (!schema_json) return err_set(WICK_ERR_INVALID_ARG, "json schema: NULL");
    cJSON *doc = cJSON_Parse(schema_json);
    if (!doc) return err_set(WICK_ERR_FORMAT, "json schema: not valid JSON");
    js_schema *s = calloc(1, sizeof *s);
    cctx c = {.s = s, .doc = doc};
    if (!s) {
        cJSON_Delete(doc);
        return err_set(WICK_ERR_NOMEM, "out of memory");
    }
    new_node(&c, "#");  /* node 0: any value */
    s->root = compile(&c, doc, "#");
    cJSON_Delete(doc);
    if (!c.st) {
        /* first bytes, to a fixed point (unions may refer to definitions compiled later) */
        for (int i = 0; i < s->nn; i++) own_first(&s->n[i], s->n[i].first);
        for (bool changed = true; changed;) {
            changed = false;
            for (int i = 0; i < s->nn; i++) {
                jnode *n = &s->n[i];
                if (n->kind != K_UNION) continue;
                for (int a = 0; a < n->nalts; a++)
                    for (int b = 0; b < 32; b++) {
                        uint8_t v = n->first[b] | s->n[n->alts[a]].first[b];
                        if (v != n->first[b]) n->first[b] = v, changed = true;
                    }
            }
        }
        for (int i = 0; !c.st && i < s->nn; i++) {
            const jnode *n = &s->n[i];
            bool empty = true;
            for (int k = 0; k < 32; k++) empty &= n->first[k] == 0;
            if (empty) /* e.g. definitions that only refer to each other */
                cfail(&c, WICK_ERR_FORMAT, "json schema: the schema at %s accepts no value (a $ref cycle?)%s", n->path, "");
        }
        for (int i = 0; !c.st && i < s->nn; i++) {
            jnode *n = &s->n[i];
            if (n->kind != K_UNION || n->nalts < 2) continue;
            /* branches that are objects may share '{' when a discriminator tells them apart */
            int nobj = 0;
            for (int a = 0; a < n->nalts; a++) nobj += s->n[n->alts[a]].kind == K_OBJECT;
            if (nobj >= 2) {
                const char *key = NULL;
                bool ok = true;
                for (int a = 0; a < n->nalts && ok; a++) {
                    const jnode *b = &s->n[n->alts[a]];
                    if (b->kind != K_OBJECT) continue;
                    const jnode *d = b->nprops ? &s->n[b->props[0].node] : NULL;
                    ok = d && b->props[0].required && d->kind == K_LITS && d->nlits == 1 &&
                         (!key || !strcmp(key, b->props[0].key));
                    if (ok) key = b->props[0].key;
                    for (int k = 0; ok && k < n->nlits; k++) ok = strcmp(n->lits[k], d->lits[0]) != 0;
                    if (ok) { /* the constant, copied into the union */
                        char **l = realloc(n->lits, sizeof *l * (size_t)(n->nlits + 1));
                        int *ll = l ? realloc(n->lit_len, sizeof *ll * (size_t)(n->nlits + 1)) : NULL;
                        if (l) n->lits = l;
                        if (ll) n->lit_len = ll;
                        char *t = l && ll ? strdup(d->lits[0]) : NULL;
                        if (!t) {
                            cfail(&c, WICK_ERR_NOMEM, "out of memory%s%s", "", "");
                            break;
                        }
                        n->lits[n->nlits] = t;
                        n->lit_len[n->nlits] = d->lit_len[0];
                        n->disc_branch[n->nlits++] = n->alts[a];
                    }
                }
                if (c.st) break;
                if (!ok) {
                    cfail(&c, WICK_ERR_UNSUPPORTED,
                          "json schema: the object branches of anyOf/oneOf at %s must all start with the same "
                          "required property holding a different constant (a discriminator) to be told apart%s",
                          n->path, "");
                    break;
                }
                n->discriminated = true;
            }
            for (int a = 0; a < n->nalts && !c.st; a++)
                for (int b = a + 1; b < n->nalts && !c.st; b++) {
                    if (n->discriminated && s->n[n->alts[a]].kind == K_OBJECT && s->n[n->alts[b]].kind == K_OBJECT)
                        continue;
                    for (int k = 0; k < 32; k++)
                        if (s->n[n->alts[a]].first[k] & s->n[n->alts[b]].first[k]) {
                            cfail(&c, WICK_ERR_UNSUPPORTED,
                                  "json schema: the branches of anyOf/oneOf/type at %s can start with the same "
                                  "character; structured output needs them to differ (objects: a "
                                  "discriminator property)%s", n->path, "");
                            break;
                        }
                }
        }
    }
    if (c.st) {
        js_schema_free(s);
        return c.st;
    }
    *out = s;
    return WICK_OK;
}

/* ---- the matcher ---------------------------------------------------------------------------- */

enum { F_VALUE, F_OBJ, F_KEY, F_STR, F_NUM, F_LIT, F_ARR };
enum { OBJ_OPEN, OBJ_COLON, OBJ_AFTER, OBJ_NEXT };
enum { ARR_OPEN, ARR_AFTER, ARR_NEXT };
enum { S_N, S_ESC, S_HEX, S_CONT };
enum { N_START, N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP };
enum { L_NODE, L_TF, L_NULL, L_TFN, L_DISC };
#define F_DISC 2 /* F_OBJ flag: a discriminated union, branch not known yet */

typedef struct frame {
    uint8_t type, phase, flag, pad;
    int32_t node;
    int32_t a, b;
    uint64_t mask;
} frame;

typedef struct js_state {
    int depth;
    frame f[JS_MAX_DEPTH];
} js_state;

static void state_copy(js_state *d, const js_state *s) {
    d->depth = s->depth;
    memcpy(d->f, s->f, sizeof(frame) * (size_t)s->depth);
}

static void lit_table(const js_schema *s, const frame *f, const char *const **l, const int **len, int *n) {
    switch (f->b) {
    case L_TF: *l = k_tf, *len = k_tf_len, *n = 2; break;
    case L_NULL: *l = k_null, *len = k_null_len, *n = 1; break;
    case L_TFN: *l = k_tfn, *len = k_tfn_len, *n = 3; break;
    default: {
        const jnode *nd = &s->n[f->node];
        *l = (const char *const *)nd->lits, *len = nd->lit_len, *n = nd->nlits;
    }
    }
}

/* Props a key may name next: from index a up to and including the first required one. */
static uint64_t key_candidates(const jnode *n, int a) {
    uint64_t m = 0;
    for (int k = a; k < n->nprops; k++) {
        m |= 1ull << k;
        if (n->props[k].required) break;
    }
    return m;
}

static bool required_left(const jnode *n, int a) {
    for (int k = a; k < n->nprops; k++)
        if (n->props[k].required) return true;
    return false;
}

static bool push(js_state *st, frame f) {
    if (st->depth == JS_MAX_DEPTH) return false;
    st->f[st->depth++] = f;
    return true;
}

static bool num_accepting(int phase) {
    return phase == N_ZERO || phase == N_INT || phase == N_FRAC || phase == N_EXP;
}

/* Ends the literal on top; a discriminator's value picks its branch for the parent object,
   which goes on as that branch after its first property. */
static void lit_pop(const js_schema *s, js_state *st) {
    const frame *f = &st->f[st->depth - 1];
    if (f->b == L_DISC) {
        const jnode *u = &s->n[f->node];
        frame *p = &st->f[st->depth - 2];
        for (int i = 0; i < u->nlits; i++)
            if ((f->mask >> i & 1) && u->lit_len[i] == f->a) {
                p->node = u->disc_branch[i];
                p->flag = 0;
                p->a = 1;
                p->b = 0;
            }
    }
    st->depth--;
}

/* One byte; false when refused (the state may then be half-changed: callers work on copies). */
static bool feed(const js_schema *s, js_state *st, unsigned c) {
    for (;;) {
        if (st->depth == 0) return false; /* complete: nothing may follow */
        frame *f = &st->f[st->depth - 1];
        switch (f->type) {
        case F_VALUE: {
            int node = f->node;
            while (s->n[node].kind == K_UNION) { /* the branch that can start with c */
                const jnode *u = &s->n[node];
                if (u->discriminated && c == '{') { /* decided by the first property's value */
                    *f = (frame){.type = F_OBJ, .phase = OBJ_OPEN, .node = node, .flag = F_DISC};
                    return true;
                }
                int next = -1;
                for (int a = 0; a < u->nalts && next < 0; a++)
                    if (has_bit(s->n[u->alts[a]].first, c)) next = u->alts[a];
                if (next < 0) return false;
                node = next;
            }
            const jnode *n = &s->n[node];
            int k = n->kind;
            if (k == K_ANY)
                k = c == '{' ? K_OBJECT : c == '[' ? K_ARRAY : c == '"' ? K_STRING
                  : (c == '-' || (c >= '0' && c <= '9')) ? K_NUMBER
                  : (c == 't' || c == 'f' || c == 'n') ? -2 : -1;
            switch (k) {
            case K_OBJECT:
                if (c != '{') return false;
                *f = (frame){.type = F_OBJ, .phase = OBJ_OPEN, .node = node};
                return true;
            case K_ARRAY:
                if (c != '[') return false;
                *f = (frame){.type = F_ARR, .phase = ARR_OPEN, .node = node};
                return true;
            case K_STRING:
                if (c != '"') return false;
                *f = (frame){.type = F_STR, .phase = S_N, .node = node};
                return true;
            case K_NUMBER:
            case K_INTEGER:
                *f = (frame){.type = F_NUM, .phase = N_START, .node = node, .flag = k == K_INTEGER};
                continue;
            case K_BOOL:
            case K_NULL:
            case K_LITS:
            case -2: {
                int which = k == K_BOOL ? L_TF : k == K_NULL ? L_NULL : k == K_LITS ? L_NODE : L_TFN;
                *f = (frame){.type = F_LIT, .node = node, .b = which, .mask = ~0ull};
                continue;
            }
            default: return false;
            }
        }
        case F_OBJ: {
            if (f->flag == F_DISC) { /* first key (the same in every branch), then its constant */
                const jnode *u = &s->n[f->node];
                const int first = u->disc_branch[0];
                if (f->phase == OBJ_OPEN) {
                    if (c != '"') return false;
                    f->phase = OBJ_COLON;
                    return push(st, (frame){.type = F_KEY, .node = first, .mask = 1});
                }
                if (f->phase != OBJ_COLON || c != ':') return false;
                f->phase = OBJ_AFTER;
                return push(st, (frame){.type = F_LIT, .node = f->node, .b = L_DISC, .mask = ~0ull});
            }
            const jnode *n = &s->n[f->node];
            const bool any = n->kind == K_ANY || n->any_keys;
            if (f->phase == OBJ_OPEN || f->phase == OBJ_NEXT) {
                if (c == '}' && f->phase == OBJ_OPEN && (any || !required_left(n, f->a))) {
                    st->depth--;
                    return true;
                }
                if (c != '"') return false;
                if (any) {
                    f->phase = OBJ_COLON;
                    return push(st, (frame){.type = F_STR, .phase = S_N, .node = 0, .flag = 1});
                }
                uint64_t m = n->no_keys ? 0 : key_candidates(n, f->a);
                if (!m) return false;
                f->phase = OBJ_COLON;
                return push(st, (frame){.type = F_KEY, .node = f->node, .mask = m});
            }
            if (f->phase == OBJ_COLON) {
                if (c != ':') return false;
                f->phase = OBJ_AFTER;
                return push(st, (frame){.type = F_VALUE, .node = n->kind == K_ANY ? 0 : any ? n->add_node : n->props[f->b].node});
            }
            /* OBJ_AFTER */
            if (c == ',') {
                if (!any && !key_candidates(n, f->a)) return false;
                f->phase = OBJ_NEXT;
                return true;
            }
            if (c == '}' && (any || !required_left(n, f->a))) {
                st->depth--;
                return true;
            }
            return false;
        }
        case F_KEY: {
            /* keys are matched in their escaped form, so a quote is content where a key has
               one at this position (after its backslash) and closes the key otherwise */
            const jnode *n = &s->n[f->node];
            uint64_t m = 0;
            for (int k = 0; k < n->nprops; k++)
                if ((f->mask >> k & 1) && f->a < n->props[k].klen && (unsigned char)n->props[k].key[f->a] == c)
                    m |= 1ull << k;
            if (m) {
                f->mask = m;
                f->a++;
                return true;
            }
            if (c != '"') return false;
            for (int k = 0; k < n->nprops; k++)
                if ((f->mask >> k & 1) && n->props[k].klen == f->a) {
                    st->depth--;
                    frame *p = &st->f[st->depth - 1];
                    p->b = k;
                    p->a = k + 1;
                    return true;
                }
            return false;
        }
        case F_STR: {
            const jnode *n = &s->n[f->node];
            const int maxl = n->kind == K_STRING ? n->max_len : -1;
            const int minl = n->kind == K_STRING ? n->min_len : 0;
            switch (f->phase) {
            case S_N:
                if (c == '"') {
                    if (f->a < minl) return false;
                    st->depth--;
                    return true;
                }
                if (c < 0x20 || c == 0x7F || (maxl >= 0 && f->a + 1 > maxl)) return false;
                if (c == '\\') {
                    f->a++;
                    f->phase = S_ESC;
                    return true;
                }
                if (c < 0x80) {
                    f->a++;
                    return true;
                }
                {
                    int more;
                    unsigned lo = 0x80, hi = 0xBF;
                    if (c >= 0xC2 && c <= 0xDF) more = 1;
                    else if (c >= 0xE0 && c <= 0xEF) {
                        more = 2;
                        if (c == 0xE0) lo = 0xA0;
                        if (c == 0xED) hi = 0x9F;
                    } else if (c >= 0xF0 && c <= 0xF4) {
                        more = 3;
                        if (c == 0xF0) lo = 0x90;
                        if (c == 0xF4) hi = 0x8F;
                    } else return false;
                    f->a++;
                    f->phase = S_CONT;
                    f->b = more;
                    f->mask = lo | hi << 8;
                    return true;
                }
            case S_CONT: {
                const unsigned lo = (unsigned)(f->mask & 0xFF), hi = (unsigned)(f->mask >> 8 & 0xFF);
                if (c < lo || c > hi) return false;
                f->mask = 0x80 | 0xBF << 8;
                if (--f->b == 0) f->phase = S_N;
                return true;
            }
            case S_ESC:
                if (c == 'u') {
                    f->phase = S_HEX;
                    f->b = 0;
                    f->mask = 0;
                    return true;
                }
                if (!strchr("\"\\/bfnrt", (int)c) || !c) return false;
                f->phase = S_N;
                return true;
            default: { /* S_HEX */
                int d = c >= '0' && c <= '9' ? (int)c - '0' : c >= 'a' && c <= 'f' ? (int)c - 'a' + 10
                      : c >= 'A' && c <= 'F' ? (int)c - 'A' + 10 : -1;
                if (d < 0) return false;
                /* no surrogate escapes: D800-DFFF is refused at its second digit */
                if (f->b == 1 && f->mask == 0xD && d >= 8) return false;
                f->mask = f->mask * 16 + (uint64_t)d;
                if (++f->b == 4) f->phase = S_N;
                return true;
            }
            }
        }
        case F_NUM: {
            const bool isint = f->flag;
            const bool digit = c >= '0' && c <= '9';
            int ph = f->phase;
            if (ph == N_START) {
                if (c == '-') return f->phase = N_MINUS, true;
                if (c == '0') return f->phase = N_ZERO, true;
                if (digit) return f->phase = N_INT, f->a = 1, true;
                return false;
            }
            if (ph == N_MINUS) {
                if (c == '0') return f->phase = N_ZERO, true;
                if (digit) return f->phase = N_INT, f->a = 1, true;
                return false;
            }
            if ((ph == N_ZERO || ph == N_INT) && !isint && c == '.') return f->phase = N_DOT, true;
            if ((ph == N_ZERO || ph == N_INT || ph == N_FRAC) && !isint && (c == 'e' || c == 'E'))
                return f->phase = N_E, f->b = 0, true;
            if (ph == N_INT && digit) return f->a < NUM_INT_DIGITS ? (f->a++, true) : false;
            if (ph == N_DOT) return digit ? (f->phase = N_FRAC, f->b = 1, true) : false;
            if (ph == N_FRAC && digit) return f->b < NUM_FRAC_DIGITS ? (f->b++, true) : false;
            if (ph == N_E) {
                if (c == '+' || c == '-') return f->phase = N_ESIGN, true;
                return digit ? (f->phase = N_EXP, f->b = 1, true) : false;
            }
            if (ph == N_ESIGN) return digit ? (f->phase = N_EXP, f->b = 1, true) : false;
            if (ph == N_EXP && digit) return f->b < NUM_EXP_DIGITS ? (f->b++, true) : false;
            if (ph == N_ZERO && digit) return false; /* no leading zeros */
            if (!num_accepting(ph)) return false;
            st->depth--; /* the number ended before c: the parent takes c */
            continue;
        }
        case F_LIT: {
            const char *const *l;
            const int *len;
            int nl;
            lit_table(s, f, &l, &len, &nl);
            uint64_t m = 0;
            for (int i = 0; i < nl; i++)
                if ((f->mask >> i & 1) && f->a < len[i] && (unsigned char)l[i][f->a] == c) m |= 1ull << i;
            if (m) {
                f->mask = m;
                f->a++;
                /* nothing longer can follow: end now */
                bool longer = false;
                for (int i = 0; i < nl; i++) longer |= (m >> i & 1) && len[i] > f->a;
                if (!longer) lit_pop(s, st);
                return true;
            }
            bool complete = false;
            for (int i = 0; i < nl; i++) complete |= (f->mask >> i & 1) && len[i] == f->a;
            if (!complete || f->a == 0) return false;
            lit_pop(s, st);
            continue;
        }
        default: { /* F_ARR */
            const jnode *n = &s->n[f->node];
            const bool any = n->kind == K_ANY;
            const int mi = any ? 0 : n->min_items, ma = any ? -1 : n->max_items, items = any ? 0 : n->items;
            if (f->phase == ARR_OPEN) {
                if (c == ']') {
                    if (mi > 0) return false;
                    st->depth--;
                    return true;
                }
                if (ma == 0) return false;
                f->a = 1;
                f->phase = ARR_AFTER;
                if (!push(st, (frame){.type = F_VALUE, .node = items})) return false;
                continue;
            }
            if (f->phase == ARR_AFTER) {
                if (c == ',') {
                    if (ma >= 0 && f->a >= ma) return false;
                    f->phase = ARR_NEXT;
                    return true;
                }
                if (c == ']' && f->a >= mi) {
                    st->depth--;
                    return true;
                }
                return false;
            }
            f->a++;
            f->phase = ARR_AFTER;
            if (!push(st, (frame){.type = F_VALUE, .node = items})) return false;
            continue;
        }
        }
    }
}

static bool state_can_end(const js_schema *s, const js_state *st) {
    if (st->depth == 0) return true;
    if (st->depth != 1) return false;
    const frame *f = &st->f[0];
    if (f->type == F_NUM) return num_accepting(f->phase);
    if (f->type == F_LIT) {
        const char *const *l;
        const int *len;
        int nl;
        lit_table(s, f, &l, &len, &nl);
        for (int i = 0; i < nl; i++)
            if ((f->mask >> i & 1) && len[i] == f->a && f->a > 0) return true;
    }
    return false;
}

static void state_init(const js_schema *s, js_state *st) {
    st->depth = 1;
    st->f[0] = (frame){.type = F_VALUE, .node = s->root};
}

int js_match_bytes(const js_schema *s, const char *bytes, size_t n) {
    js_state st;
    state_init(s, &st);
    for (size_t i = 0; i < n; i++)
        if (!feed(s, &st, (unsigned char)bytes[i])) return -1;
    return st.depth == 0 || state_can_end(s, &st) ? 1 : 0;
}

/* ---- the token table ------------------------------------------------------------------------ */

enum { V_SPECIAL = 1, V_PLAIN = 2 };

typedef struct js_vocab {
    int32_t n;            /* tokenizer ids */
    uint32_t *off;        /* id's bytes: bytes[off[id] .. off[id+1]) */
    char *bytes;
    uint8_t *flags;
    uint16_t *nchars;     /* V_PLAIN: code points */
    int32_t *plain, nplain;
    int32_t *other, nother;   /* usable, not plain: simulated inside strings */
    int32_t *sorted, nsorted; /* usable ids sorted by their bytes (an implicit trie) */
    int32_t root[257];        /* sorted[root[b] .. root[b+1]): ids whose first byte is b */
    int maxlen;
} js_vocab;

static void vocab_free(void *p) {
    js_vocab *v = p;
    if (!v) return;
    free(v->off), free(v->bytes), free(v->flags), free(v->nchars);
    free(v->plain), free(v->other), free(v->sorted);
    free(v);
}

static const js_vocab *g_sort_vocab; /* qsort has no context argument; the build holds a lock */

static int cmp_bytes(const void *pa, const void *pb) {
    const js_vocab *v = g_sort_vocab;
    const int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    const uint32_t la = v->off[a + 1] - v->off[a], lb = v->off[b + 1] - v->off[b];
    int r = memcmp(v->bytes + v->off[a], v->bytes + v->off[b], la < lb ? la : lb);
    if (r) return r;
    return la < lb ? -1 : la > lb ? 1 : (a < b ? -1 : a > b);
}

static pthread_mutex_t g_vocab_mu = PTHREAD_MUTEX_INITIALIZER;

static wick_status vocab_build(const wick_tokenizer *t, js_vocab **out) {
    if (!t->ndec)
        return err_set(WICK_ERR_UNSUPPORTED, "structured output needs a tokenizer with a decoder (this one "
                                             "joins tokens with spaces)");
    for (int i = 0; i < t->ndec; i++)
        if (t->dec[i].kind == DEC_WORDPIECE || t->dec[i].kind == DEC_BPE_SUFFIX)
            return err_set(WICK_ERR_UNSUPPORTED, "structured output needs a tokenizer whose tokens decode "
                                                 "independently (not a WordPiece or end-of-word decoder)");
    js_vocab *v = calloc(1, sizeof *v);
    if (!v) return err_set(WICK_ERR_NOMEM, "out of memory");
    v->n = t->n_ids;
    wick_status st = tok_vocab_bytes(t, &v->off, &v->bytes);
    if (st) {
        free(v);
        return st;
    }
    const size_t n = (size_t)v->n;
    v->flags = calloc(n, 1);
    v->nchars = calloc(n, sizeof *v->nchars);
    v->plain = malloc(sizeof(int32_t) * n);
    v->other = malloc(sizeof(int32_t) * n);
    v->sorted = malloc(sizeof(int32_t) * n);
    if (!v->flags || !v->nchars || !v->plain || !v->other || !v->sorted) {
        vocab_free(v);
        return err_set(WICK_ERR_NOMEM, "out of memory");
    }
    for (int32_t id = 0; id < v->n; id++) {
        const unsigned char *b = (const unsigned char *)v->bytes + v->off[id];
        const size_t len = v->off[id + 1] - v->off[id];
        if (t->is_special[id] || len == 0) {
            v->flags[id] = V_SPECIAL;
            continue;
        }
        if ((int)len > v->maxlen) v->maxlen = (int)len;
        v->sorted[v->nsorted++] = id;
        bool plain = len < 60000;
        size_t chars = 0;
        for (size_t i = 0; plain && i < len;) {
            if (b[i] < 0x20 || b[i] == '"' || b[i] == '\\' || b[i] == 0x7F) {
                plain = false;
                break;
            }
            size_t k = tok_utf8_valid_len(b + i, len - i);
            if (!k) plain = false;
            i += k;
            chars++;
        }
        if (plain) {
            v->flags[id] = V_PLAIN;
            v->nchars[id] = (uint16_t)chars;
            v->plain[v->nplain++] = id;
        } else {
            v->other[v->nother++] = id;
        }
    }
    g_sort_vocab = v;
    qsort(v->sorted, (size_t)v->nsorted, sizeof(int32_t), cmp_bytes);
    g_sort_vocab = NULL;
    int32_t k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < v->nsorted && b < 256 && (unsigned char)v->bytes[v->off[v->sorted[k]]] < b) k++;
        v->root[b] = b == 256 ? v->nsorted : k;
    }
    *out = v;
    return WICK_OK;
}

static wick_status vocab_get(const wick_tokenizer *ct, const js_vocab **out) {
    wick_tokenizer *t = (wick_tokenizer *)ct; /* the cache slot only */
    void *cur = atomic_load_explicit(&t->js_vocab, memory_order_acquire);
    if (cur) {
        *out = cur;
        return WICK_OK;
    }
    pthread_mutex_lock(&g_vocab_mu);
    cur = atomic_load_explicit(&t->js_vocab, memory_order_acquire);
    wick_status st = WICK_OK;
    if (!cur) {
        js_vocab *v = NULL;
        if (!(st = vocab_build(t, &v))) {
            t->js_vocab_free = vocab_free;
            atomic_store_explicit(&t->js_vocab, (void *)v, memory_order_release);
            cur = v;
        }
    }
    pthread_mutex_unlock(&g_vocab_mu);
    *out = cur;
    return st;
}

/* ---- masks ---------------------------------------------------------------------------------- */

struct js_matcher {
    const js_schema *s;
    const js_vocab *v;
    int32_t n_vocab;
    js_state st;
    uint8_t *allow;      /* per id, this step */
    js_state *levels;    /* DFS states, one per byte depth (vocab maxlen + 1) */
};

wick_status js_matcher_create(const js_schema *s, const wick_tokenizer *tok, int32_t n_vocab,
                              js_matcher **out) {
    *out = NULL;
    const js_vocab *v = NULL;
    wick_status st = vocab_get(tok, &v);
    if (st) return st;
    js_matcher *m = calloc(1, sizeof *m);
    if (m) {
        m->allow = malloc((size_t)(n_vocab > 0 ? n_vocab : 1));
        m->levels = malloc(sizeof(js_state) * (size_t)(v->maxlen + 2));
    }
    if (!m || !m->allow || !m->levels) {
        js_matcher_free(m);
        return err_set(WICK_ERR_NOMEM, "out of memory");
    }
    m->s = s;
    m->v = v;
    m->n_vocab = n_vocab;
    state_init(s, &m->st);
    *out = m;
    return WICK_OK;
}

void js_matcher_free(js_matcher *m) {
    if (!m) return;
    free(m->allow);
    free(m->levels);
    free(m);
}

static const unsigned char *tok_bytes(const js_vocab *v, int32_t id, size_t *len) {
    *len = v->off[id + 1] - v->off[id];
    return (const unsigned char *)v->bytes + v->off[id];
}

/* sorted[lo..hi) share their first d bytes, already fed into m->levels[d]. */
static void dfs(js_matcher *m, int32_t lo, int32_t hi, int d) {
    const js_vocab *v = m->v;
    const int32_t *srt = v->sorted;
    while (lo < hi) { /* tokens that end here come first */
        size_t len;
        tok_bytes(v, srt[lo], &len);
        if ((int)len != d) break;
        if (srt[lo] < m->n_vocab) m->allow[srt[lo]] = 1;
        lo++;
    }
    while (lo < hi) {
        size_t len;
        const unsigned char c = tok_bytes(v, srt[lo], &len)[d];
        int32_t a = lo, b = hi; /* end of the group with byte c at d */
        while (a < b) {
            int32_t mid = a + (b - a) / 2;
            if (tok_bytes(v, srt[mid], &len)[d] <= c) a = mid + 1;
            else b = mid;
        }
        js_state *next = &m->levels[d + 1];
        state_copy(next, &m->levels[d]);
        if (feed(m->s, next, c)) dfs(m, lo, a, d + 1);
        lo = a;
    }
}

static bool simulate(const js_matcher *m, js_state *tmp, int32_t id) {
    size_t len;
    const unsigned char *b = tok_bytes(m->v, id, &len);
    state_copy(tmp, &m->st);
    for (size_t i = 0; i < len; i++)
        if (!feed(m->s, tmp, b[i])) return false;
    return true;
}

bool js_mask(js_matcher *m, float *logits, const int32_t *eos, int n_eos) {
    const js_vocab *v = m->v;
    memset(m->allow, 0, (size_t)m->n_vocab);
    const frame *top = m->st.depth ? &m->st.f[m->st.depth - 1] : NULL;
    if (top && top->type == F_STR && top->phase == S_N) {
        /* inside a string: every plain token that fits the length limit, and the others that
           pass byte by byte (those closing the string, escapes, partial characters) */
        const jnode *n = &m->s->n[top->node];
        const long room = n->kind == K_STRING && n->max_len >= 0 ? (long)n->max_len - top->a : LONG_MAX;
        for (int32_t i = 0; i < v->nplain; i++) {
            const int32_t id = v->plain[i];
            if (id < m->n_vocab && v->nchars[id] <= room) m->allow[id] = 1;
        }
        js_state *tmp = &m->levels[0];
        for (int32_t i = 0; i < v->nother; i++) {
            const int32_t id = v->other[i];
            if (id < m->n_vocab && simulate(m, tmp, id)) m->allow[id] = 1;
        }
    } else if (top) {
        for (int b = 0; b < 256; b++) {
            if (v->root[b] == v->root[b + 1]) continue;
            js_state *next = &m->levels[1];
            state_copy(next, &m->st);
            if (feed(m->s, next, (unsigned)b)) {
                state_copy(&m->levels[0], &m->st);
                dfs(m, v->root[b], v->root[b + 1], 1);
            }
        }
    }
    const bool end = state_can_end(m->s, &m->st);
    bool any = false;
    for (int i = 0; i < n_eos; i++)
        if (eos[i] >= 0 && eos[i] < m->n_vocab) m->allow[eos[i]] = end;
    for (int32_t id = 0; id < m->n_vocab; id++) {
        if (id >= v->n) m->allow[id] = 0; /* rows without a token */
        if (m->allow[id]) any = true;
        else logits[id] = -INFINITY;
    }
    return any;
}

bool js_accept(js_matcher *m, int32_t id) {
    if (id < 0 || id >= m->v->n || (m->v->flags[id] & V_SPECIAL)) return false;
    js_state *tmp = &m->levels[0];
    if (!simulate(m, tmp, id)) return false;
    state_copy(&m->st, tmp);
    return true;
}

bool js_done(const js_matcher *m) { return m->st.depth == 0; }

bool js_can_end(const js_matcher *m) { return state_can_end(m->s, &m->st); }

wick_status wick_json_schema_check(const char *schema_json) {
    js_schema *s = NULL;
    wick_status st = js_compile(schema_json, &s);
    js_schema_free(s);
    return st;
}
