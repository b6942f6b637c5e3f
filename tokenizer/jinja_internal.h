/* jinja_internal.h — shared types of the Jinja-subset engine: arena, lexer tokens, AST nodes,
 * run-time values and the evaluation context. Split across jinja_lex.c (source -> tokens),
 * jinja_parse.c (tokens -> AST), jinja_value.c (values, dicts, comparison, JSON context),
 * jinja_write.c (str/repr/json output), jinja_eval.c (expressions), jinja_exec.c
 * (statements, macros, entry points), jinja_filters.c (filters and tests) and
 * jinja_methods.c (str/dict methods and global functions). Not a public interface. */
#ifndef WICK_TOKENIZER_JINJA_INTERNAL_H
#define WICK_TOKENIZER_JINJA_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "base/error.h"
#include "tokenizer/jinja.h"

/* Limits that keep hostile templates from exhausting the stack, memory or time (stated for
 * users in include/wick.h beside wick_chat_render: keep the two in step). */
#define JINJA_MAX_PARSE_DEPTH 200      /* nesting of expressions + blocks */
#define JINJA_MAX_CALL_DEPTH 100       /* macro call nesting at render time */
#define JINJA_MAX_EVAL_DEPTH 400       /* expression/statement nesting at render time */
#define JINJA_MAX_VALUE_DEPTH 1000     /* nesting of lists/dicts printed, compared, converted */
#define JINJA_MAX_RANGE 100000         /* jinja2's sandbox MAX_RANGE */
#define JINJA_MAX_OUTPUT (64u << 20)   /* bytes of rendered text, all live buffers together */
#define JINJA_MAX_ARENA (512u << 20)   /* bytes of values allocated during one render */
#define JINJA_MAX_STEPS 50000000ull    /* work units during one render (jinja_charge) */
#define JINJA_BYTES_PER_STEP 64        /* string bytes scanned or copied per work unit */

/* ---- arena: bump allocator, everything freed at once ---- */
typedef struct jarena jarena;
jarena *jarena_new(size_t cap);
void *jarena_alloc(jarena *a, size_t n); /* zeroed; NULL (message set) when over cap / OOM */
char *jarena_strndup(jarena *a, const char *s, size_t n); /* NUL-terminated copy */
void jarena_free(jarena *a);

/* ---- growable output buffer ---- */
typedef struct jbuf {
    char *p;
    size_t n, cap;
    size_t limit; /* most bytes it may hold; 0 = JINJA_MAX_OUTPUT */
    bool failed;  /* an append failed (OOM or over the limit); message set */
} jbuf;
bool jbuf_put(jbuf *b, const char *s, size_t n);
bool jbuf_putc(jbuf *b, char c);
bool jbuf_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- lexer ---- */
typedef enum jt_kind {
    JT_EOF, JT_TEXT, JT_VAR_BEGIN, JT_VAR_END, JT_BLOCK_BEGIN, JT_BLOCK_END,
    JT_NAME, JT_INT, JT_FLOAT, JT_STRING, JT_OP
} jt_kind;

typedef struct jtok {
    jt_kind k;
    int line;
    const char *s; /* TEXT, STRING: decoded text (arena); NAME, OP: points into source */
    size_t n;
    int64_t i;
    double f;
} jtok;

/* Tokenizes the whole template (after jinja2's newline normalization), applying trim_blocks,
 * lstrip_blocks and the -/+ whitespace controls, dropping comments. *toks is malloc'd. */
wick_status jinja_lex(jarena *a, const char *src, jtok **toks, size_t *ntoks);

/* ---- values ---- */
typedef enum jv_type {
    JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT, JV_NS, JV_FUNC, JV_LOOP
} jv_type;

typedef struct jv jv;
struct jnode;
struct jframe;
struct jloop;

typedef enum jfunc_kind {
    JF_RANGE, JF_NAMESPACE, JF_RAISE, JF_STRFTIME, JF_DICT, JF_MACRO, JF_METHOD, JF_CYCLE
} jfunc_kind;

struct jv {
    jv_type t;
    bool tuple; /* a LIST that came from a tuple: prints as (a, b) */
    union {
        bool b;
        int64_t i;
        double f;
        struct { const char *s; size_t n; } str;        /* always NUL-terminated */
        struct { jv **v; size_t n, cap; } list;
        struct {                    /* insertion-ordered; NS uses this too */
            jv **k, **v;
            size_t n, cap;
            uint32_t *slot;         /* hash index (entry + 1, 0 = empty) once n > 8 */
            size_t nslot;           /* power of two >= 2 * cap, or 0 */
        } dict;
        struct {
            jfunc_kind kind;
            const struct jnode *node;   /* JF_MACRO */
            struct jframe *closure;     /* JF_MACRO */
            jv *self;                   /* JF_METHOD */
            const char *name;           /* JF_METHOD: method name; JF_MACRO: macro name */
        } fn;
        struct jloop *loop;
    } u;
    const char *uname; /* JV_UNDEF: the missing name, for error messages */
};

extern jv jv_undef_v, jv_none_v, jv_true_v, jv_false_v;
#define JV_UNDEFINED (&jv_undef_v)
#define JV_NONEV (&jv_none_v)
#define JV_BOOLV(x) ((x) ? &jv_true_v : &jv_false_v)

jv *jv_int(jarena *a, int64_t i);
jv *jv_float(jarena *a, double f);
jv *jv_str(jarena *a, const char *s, size_t n);   /* copies */
jv *jv_str_own(jarena *a, const char *s, size_t n); /* s already arena-owned & NUL-terminated */
jv *jv_strz(jarena *a, const char *s);
jv *jv_list(jarena *a, size_t cap);
jv *jv_dict(jarena *a, jv_type t /* JV_DICT or JV_NS */);
jv *jv_undef_named(jarena *a, const char *name);
bool jv_list_push(jarena *a, jv *list, jv *item);
/* Dict keys are Python's hashable scalars: None, bool, int, float, str (and Undefined);
 * 1, 1.0 and True are the same key. jv_dict_set fails (message set) for any other key, like
 * Python's "unhashable type" (tuples, hashable in Python, are not supported as keys). Lookups
 * go through a hash index once a dict has more than 8 entries, so building a dict of n keys
 * (e.g. from a large JSON object in the context) costs O(n), not O(n^2). A lookup costs
 * O(length of the key). */
bool jv_is_key(const jv *key);
bool jv_dict_set(jarena *a, jv *dict, jv *key, jv *val);
bool jv_dict_setz(jarena *a, jv *dict, const char *key, jv *val);
jv *jv_dict_get(const jv *dict, const jv *key);   /* NULL when absent or not a key */
jv *jv_dict_getz(const jv *dict, const char *key, size_t n);
void jv_dict_truncate(jv *dict, size_t n); /* keeps the first n entries */

/* The functions below walk nested values. They charge their work to the render's step budget
 * (jinja_charge) and stop at JINJA_MAX_VALUE_DEPTH levels (values can nest without bound
 * through namespace attributes, even in cycles). When one of them fails it sets the message
 * and c->failed; a bool-returning comparison then returns false, and jinja_eval turns the
 * enclosing expression into an error. */
typedef struct jctx jctx;
bool jv_truthy(const jv *v);
bool jv_equal(jctx *c, const jv *a, const jv *b);
/* Python ordering: numbers, strings, lists; *ok = false (message set) for other pairs. */
int jv_compare(jctx *c, const jv *a, const jv *b, bool *ok);
/* Stable merge sort of idx[0..n) by keys[idx[i]] (reversed: descending); false (message set)
 * when two keys do not compare. Scratch memory comes from the arena. */
bool jv_sort(jctx *c, size_t *idx, size_t n, jv **keys, bool rev);
const char *jv_type_name(const jv *v);
bool jv_is_num(const jv *v);
double jv_num(const jv *v);

/* Python str(v) (jinja2 output of {{ v }}; undefined gives "") appended to b. */
bool jv_write_str(jctx *c, jbuf *b, const jv *v);
/* Python repr(v). */
bool jv_write_repr(jctx *c, jbuf *b, const jv *v);
/* json.dumps(v, ensure_ascii=False, indent=indent (NULL: none), sort_keys). false with a
 * message for values JSON cannot hold. */
bool jv_write_json(jctx *c, jbuf *b, const jv *v, const char *indent_str, bool sort_keys);
/* str(v) as a value (strings returned as is). NULL on failure. */
jv *jv_to_str(jctx *c, const jv *v);
/* Python float repr into buf (>= 32 bytes). */
void jv_float_repr(double f, char *buf);

/* The context's JSON as values; fails (message set) past JINJA_MAX_VALUE_DEPTH levels. */
jv *jv_from_json(jarena *a, const cJSON *j);

/* UTF-8 helpers */
size_t ju_decode(const char *s, size_t n, uint32_t *cp); /* bytes used (>=1); bad -> U+FFFD */
size_t ju_encode(uint32_t cp, char *out);
size_t ju_count(const char *s, size_t n);             /* code points */
size_t ju_offset(const char *s, size_t n, size_t idx); /* byte offset of code point idx */
bool ju_isspace(uint32_t cp);                         /* Python str.isspace */

/* ---- AST ---- */
typedef enum jn_kind {
    /* expressions */
    JN_LIT, JN_NAME, JN_LIST, JN_TUPLE, JN_DICT, JN_ATTR, JN_ITEM, JN_SLICE, JN_CALL, JN_FILTER,
    JN_TEST, JN_NEG, JN_POS, JN_BINARY, JN_AND, JN_OR, JN_NOT, JN_COND,
    /* statements */
    JN_BODY, JN_TEXT, JN_OUTPUT, JN_IF, JN_FOR, JN_SET, JN_SETBLOCK, JN_MACRO, JN_BREAK,
    JN_CONTINUE, JN_FILTERBLOCK
} jn_kind;

typedef enum jop {
    JOP_ADD, JOP_SUB, JOP_MUL, JOP_DIV, JOP_FLOORDIV, JOP_MOD, JOP_POW, JOP_CONCAT,
    JOP_EQ, JOP_NE, JOP_LT, JOP_LE, JOP_GT, JOP_GE, JOP_IN, JOP_NOTIN
} jop;

typedef struct jnode jnode;
struct jnode {
    jn_kind k;
    int line;
    jop op;
    const char *name; /* NAME, ATTR, FILTER, TEST, MACRO: NUL-terminated (arena) */
    jv *lit;          /* LIT; TEXT keeps its text here */
    jnode **kids;     /* meaning per kind: see jinja_parse.c */
    int nkids;
    jnode **args;     /* CALL/FILTER/TEST arguments; MACRO defaults (NULL = required) */
    const char **argnames; /* keyword name or NULL (positional); MACRO parameter names */
    int nargs;
    const char **targets; /* FOR / SET targets (names) */
    int ntargets;
};


wick_status jinja_parse(jarena *a, const jtok *toks, size_t ntoks, jnode **root);

/* ---- evaluation ---- */
typedef struct jframe {
    struct jframe *parent;
    jv *vars; /* JV_DICT */
} jframe;

typedef struct jloop {
    jv *items;   /* the (filtered) list being iterated */
    size_t idx;
} jloop;

struct jctx {
    jarena *a;
    jbuf *out;
    size_t held;    /* bytes held by the render buffers c->out has replaced (macros, set
                     * blocks, filter blocks): with c->out they share JINJA_MAX_OUTPUT */
    int depth;      /* current eval recursion depth */
    int calls;      /* macro call depth */
    int ctl;        /* 0, JCTL_BREAK or JCTL_CONTINUE */
    bool failed;    /* a value walk failed (message set); see jv_equal */
    unsigned long closures; /* macros defined so far: each keeps its frame alive */
    unsigned long long steps;
};
#define JCTL_BREAK 1
#define JCTL_CONTINUE 2

jv *jinja_eval(jctx *c, jframe *f, const jnode *n); /* NULL on error (message set) */
/* Adds `units` of work to the render's step count: one per node evaluated, per list item or
 * dict entry a filter or operator visits, per JINJA_BYTES_PER_STEP bytes of string it scans
 * or copies. false (message set) once JINJA_MAX_STEPS is passed; the count never goes
 * back, so every later charge fails too. */
bool jinja_charge(jctx *c, uint64_t units, int line);
/* The work of hashing or comparing a dict key. */
static inline uint64_t jv_key_cost(const jv *k) {
    return k->t == JV_STR ? k->u.str.n / JINJA_BYTES_PER_STEP : 0;
}
jv *jinja_lookup(jctx *c, jframe *f, const char *name); /* Undefined when absent */
jframe *jinja_new_frame(jctx *c, jframe *parent);
jv *jinja_call_macro(jctx *c, const jv *fn, jv **args, const char **names, int nargs, int line);

/* Filters / tests / methods / globals: NULL on error (message set). `args` are evaluated
 * arguments, names[i] the keyword or NULL. `known` (out) false when the name is not one we
 * implement (the caller reports WICK_ERR_UNSUPPORTED). */
jv *jinja_filter(jctx *c, const char *name, jv *v, jv **args, const char **names, int nargs,
                 int line);
bool jinja_filter_known(const char *name);
int jinja_test(jctx *c, const char *name, jv *v, jv **args, int nargs, int line); /* -1 err */
bool jinja_test_known(const char *name);
bool jinja_has_method(const jv *self, const char *name);
jv *jinja_method(jctx *c, jv *self, const char *name, jv **args, const char **names, int nargs,
                 int line);
jv *jinja_call_global(jctx *c, const jv *fn, jv **args, const char **names, int nargs, int line);
/* Builds the root variables: builtins (range, namespace, raise_exception, ...). */
bool jinja_add_globals(jarena *a, jv *vars);

/* String helpers shared by methods and filters (Python semantics; see jinja_methods.c).
 * strip mode: 1 left, 2 right, 3 both; chars NULL/None = Unicode whitespace.
 * case how: 0 lower, 1 upper, 2 capitalize, 3 str.title. */
jv *jinja_strip(jctx *c, jv *s, jv *chars, int mode, int line);
jv *jinja_case(jctx *c, jv *s, int how);
jv *jinja_split(jctx *c, jv *s, jv *sep, int64_t maxsplit, int line);
jv *jinja_replace(jctx *c, jv *s, jv *old, jv *nw, int64_t count, int line);

/* Fetches argument `pos` (positional) or keyword `kw`; NULL when absent. */
jv *jinja_arg(jv **args, const char **names, int nargs, int pos, const char *kw);

#endif
