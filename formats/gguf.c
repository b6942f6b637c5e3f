/* gguf.c — GGUF reader (validating, mmap-based, tensor data zero-copy) and atomic writer.
 * The reader walks the header with a bounds-checked cursor; nothing is read past the mapping
 * and every count is checked against the bytes left before anything is allocated for it.
 * Not here: the meaning of keys and tensor names (model/model_gguf.c). */
#include "formats/gguf.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"

#define MAX_NEST 8          /* arrays of arrays deeper than this are refused */
#define MAX_KEY_LEN 65535   /* generous; keys are short ASCII paths in practice */

static const struct { uint32_t id; dtype dt; } k_types[] = {
    {0, DT_F32}, {1, DT_F16}, {2, DT_Q4_0}, {6, DT_Q5_0}, {8, DT_Q8_0}, {12, DT_Q4_K},
    {14, DT_Q6_K},
    {30, DT_BF16},
};

int gguf_dtype_from_ggml(uint32_t id) {
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
        if (k_types[i].id == id) return (int)k_types[i].dt;
    return -1;
}

uint32_t gguf_ggml_from_dtype(dtype dt) {
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
        if (k_types[i].dt == dt) return k_types[i].id;
    return UINT32_MAX;
}

static size_t scalar_size(gguf_type t) {
    switch (t) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
    case GGUF_U16: case GGUF_I16: return 2;
    case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
    case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
    default: return 0;
    }
}

gguf_value gguf_v_str(const char *s) {
    gguf_value v = {.type = GGUF_STRING};
    v.str.s = s;
    v.str.len = s ? strlen(s) : 0;
    return v;
}

/* ---- reading ---- */

typedef struct cursor {
    const unsigned char *p, *end;
    const char *path;
    const char *what; /* "key general.name" etc., for messages */
} cursor;

static wick_status truncated(cursor *c) {
    return err_set(WICK_ERR_FORMAT, "%s: truncated file while reading %s", c->path, c->what);
}

static wick_status rd(cursor *c, void *out, size_t n) {
    if ((size_t)(c->end - c->p) < n) return truncated(c);
    memcpy(out, c->p, n);
    c->p += n;
    return WICK_OK;
}

static wick_status rd_str(cursor *c, const char **s, uint64_t *len) {
    uint64_t n = 0;
    wick_status st = rd(c, &n, 8);
    if (st) return st;
    if (n > (uint64_t)(c->end - c->p))
        return err_set(WICK_ERR_FORMAT, "%s: %s: string length %llu runs past the end of the file",
                       c->path, c->what, (unsigned long long)n);
    *s = (const char *)c->p;
    *len = n;
    c->p += n;
    return WICK_OK;
}

static void free_value(gguf_value *v) {
    if (v->type != GGUF_ARRAY) return;
    for (uint64_t i = 0; v->arr.items && i < v->arr.n; i++) free_value(&v->arr.items[i]);
    free(v->arr.items);
    v->arr.items = NULL;
}

static wick_status rd_value(cursor *c, gguf_type t, gguf_value *v, int depth) {
    memset(v, 0, sizeof *v);
    v->type = t;
    unsigned char b[8] = {0};
    switch (t) {
    case GGUF_U8: case GGUF_U16: case GGUF_U32: case GGUF_U64: case GGUF_BOOL: {
        wick_status st = rd(c, b, scalar_size(t));
        if (st) return st;
        uint64_t u = 0;
        memcpy(&u, b, 8); /* little-endian host: the low bytes hold the value */
        v->u = u;
        if (t == GGUF_BOOL && u > 1)
            return err_set(WICK_ERR_FORMAT, "%s: %s: bool value %llu is not 0 or 1", c->path,
                           c->what, (unsigned long long)u);
        return WICK_OK;
    }
    case GGUF_I8: case GGUF_I16: case GGUF_I32: case GGUF_I64: {
        size_t n = scalar_size(t);
        wick_status st = rd(c, b, n);
        if (st) return st;
        if (n == 1) { int8_t x; memcpy(&x, b, 1); v->i = x; }
        else if (n == 2) { int16_t x; memcpy(&x, b, 2); v->i = x; }
        else if (n == 4) { int32_t x; memcpy(&x, b, 4); v->i = x; }
        else memcpy(&v->i, b, 8);
        return WICK_OK;
    }
    case GGUF_F32: { float f; wick_status st = rd(c, &f, 4); v->f = f; return st; }
    case GGUF_F64: return rd(c, &v->f, 8);
    case GGUF_STRING: return rd_str(c, &v->str.s, &v->str.len);
    case GGUF_ARRAY: {
        uint32_t et = 0;
        uint64_t n = 0;
        wick_status st;
        if ((st = rd(c, &et, 4)) || (st = rd(c, &n, 8))) return st;
        if (et >= GGUF_TYPE_COUNT_)
            return err_set(WICK_ERR_FORMAT, "%s: %s: unknown array element type %u", c->path,
                           c->what, et);
        if (et == GGUF_ARRAY && depth >= MAX_NEST)
            return err_set(WICK_ERR_FORMAT, "%s: %s: arrays nested deeper than %d", c->path,
                           c->what, MAX_NEST);
        /* every element takes at least 1 byte (strings 8, arrays 12) */
        size_t min = et == GGUF_STRING ? 8 : et == GGUF_ARRAY ? 12 : scalar_size((gguf_type)et);
        if (n > (uint64_t)(c->end - c->p) / min)
            return err_set(WICK_ERR_FORMAT, "%s: %s: array of %llu elements runs past the end of "
                           "the file", c->path, c->what, (unsigned long long)n);
        v->arr.type = (gguf_type)et;
        v->arr.n = n;
        v->arr.items = calloc(n ? n : 1, sizeof(gguf_value));
        if (!v->arr.items) return err_set(WICK_ERR_NOMEM, "%s: %s: out of memory", c->path, c->what);
        for (uint64_t i = 0; i < n; i++) {
            st = rd_value(c, (gguf_type)et, &v->arr.items[i], depth + 1);
            if (st) {
                v->arr.n = i; /* free what was read */
                free_value(v);
                return st;
            }
        }
        return WICK_OK;
    }
    default:
        return err_set(WICK_ERR_FORMAT, "%s: %s: unknown value type %d", c->path, c->what, (int)t);
    }
}

void gguf_close(gguf_file *g) {
    if (!g) return;
    for (int64_t i = 0; g->kv && i < g->n_kv; i++) {
        free(g->kv[i].key);
        free_value(&g->kv[i].v);
    }
    for (int64_t i = 0; g->tensors && i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    free(g->kv_by_key);
    free(g->t_by_name);
    mapfile_close(&g->mf);
    free(g);
}

static char *dup_n(const char *s, uint64_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static int cmp_off(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int cmp_kv_key(const void *a, const void *b) {
    return strcmp((*(const gguf_kv *const *)a)->key, (*(const gguf_kv *const *)b)->key);
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const gguf_tensor *const *)a)->name, (*(const gguf_tensor *const *)b)->name);
}

/* Sorted views of the keys and tensor names: duplicates are neighbours (found in n log n, not
 * n² comparisons for a file of many entries), and look-ups are binary searches. */
static wick_status build_index(gguf_file *g) {
    const char *path = g->mf.path;
    g->kv_by_key = malloc(sizeof *g->kv_by_key * (size_t)(g->n_kv ? g->n_kv : 1));
    g->t_by_name = malloc(sizeof *g->t_by_name * (size_t)(g->n_tensors ? g->n_tensors : 1));
    if (!g->kv_by_key || !g->t_by_name) return err_set(WICK_ERR_NOMEM, "%s: out of memory", path);
    for (int64_t i = 0; i < g->n_kv; i++) g->kv_by_key[i] = &g->kv[i];
    for (int64_t i = 0; i < g->n_tensors; i++) g->t_by_name[i] = &g->tensors[i];
    qsort(g->kv_by_key, (size_t)g->n_kv, sizeof *g->kv_by_key, cmp_kv_key);
    qsort(g->t_by_name, (size_t)g->n_tensors, sizeof *g->t_by_name, cmp_tensor_name);
    for (int64_t i = 1; i < g->n_kv; i++)
        if (strcmp(g->kv_by_key[i - 1]->key, g->kv_by_key[i]->key) == 0)
            return err_set(WICK_ERR_FORMAT, "%s: key %.200s appears twice", path,
                           g->kv_by_key[i]->key);
    for (int64_t i = 1; i < g->n_tensors; i++)
        if (strcmp(g->t_by_name[i - 1]->name, g->t_by_name[i]->name) == 0)
            return err_set(WICK_ERR_FORMAT, "%s: tensor %.200s appears twice", path,
                           g->t_by_name[i]->name);
    return WICK_OK;
}

static wick_status parse(gguf_file *g) {
    const char *path = g->mf.path;
    /* An empty file has no mapping (data == NULL): refuse it before any pointer arithmetic,
       since NULL + 0 is undefined behaviour too. */
    if (g->mf.size < 4 || !g->mf.data)
        return err_set(WICK_ERR_FORMAT, "%s: not a GGUF file (%zu bytes, no \"GGUF\" magic)", path,
                       g->mf.size);
    cursor c = {g->mf.data, g->mf.data + g->mf.size, path, "the header"};
    char magic[4] = {0};
    wick_status st;
    if ((st = rd(&c, magic, 4)) || memcmp(magic, "GGUF", 4) != 0)
        return err_set(WICK_ERR_FORMAT, "%s: not a GGUF file (no \"GGUF\" magic)", path);
    uint64_t nt = 0, nkv = 0;
    if ((st = rd(&c, &g->version, 4))) return st;
    if (g->version != 2 && g->version != 3)
        return err_set(WICK_ERR_UNSUPPORTED, "%s: GGUF version %u (supported: 2, 3)", path,
                       g->version);
    if ((st = rd(&c, &nt, 8)) || (st = rd(&c, &nkv, 8))) return st;
    const uint64_t left = (uint64_t)(c.end - c.p);
    if (nkv > left / 12) /* key length 8 + type 4 at least */
        return err_set(WICK_ERR_FORMAT, "%s: key/value count %llu is larger than the file allows",
                       path, (unsigned long long)nkv);
    if (nt > left / 24)  /* name length 8 + n_dims 4 + type 4 + offset 8 at least */
        return err_set(WICK_ERR_FORMAT, "%s: tensor count %llu is larger than the file allows",
                       path, (unsigned long long)nt);
    g->kv = calloc(nkv ? nkv : 1, sizeof *g->kv);
    g->tensors = calloc(nt ? nt : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) return err_set(WICK_ERR_NOMEM, "%s: out of memory", path);
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    char what[160];
    for (uint64_t i = 0; i < nkv; i++) {
        const char *k;
        uint64_t klen;
        snprintf(what, sizeof what, "key/value #%llu", (unsigned long long)i);
        c.what = what;
        if ((st = rd_str(&c, &k, &klen))) return st;
        if (klen == 0 || klen > MAX_KEY_LEN)
            return err_set(WICK_ERR_FORMAT, "%s: key/value #%llu: key length %llu", path,
                           (unsigned long long)i, (unsigned long long)klen);
        gguf_kv *kv = &g->kv[i];
        if (!(kv->key = dup_n(k, klen))) return err_set(WICK_ERR_NOMEM, "%s: out of memory", path);
        g->n_kv = (int64_t)i + 1;
        if (strlen(kv->key) != klen)
            return err_set(WICK_ERR_FORMAT, "%s: key/value #%llu: key holds a NUL byte", path,
                           (unsigned long long)i);
        snprintf(what, sizeof what, "key %.120s", kv->key);
        uint32_t t = 0;
        if ((st = rd(&c, &t, 4))) return st;
        if (t >= GGUF_TYPE_COUNT_)
            return err_set(WICK_ERR_FORMAT, "%s: key %s: unknown value type %u", path, kv->key, t);
        if ((st = rd_value(&c, (gguf_type)t, &kv->v, 0))) return st;
        if (strcmp(kv->key, "general.alignment") == 0) {
            if (kv->v.type != GGUF_U32 || kv->v.u == 0 || (kv->v.u & (kv->v.u - 1)) != 0)
                return err_set(WICK_ERR_FORMAT, "%s: key general.alignment must be a u32 power "
                               "of two", path);
            g->alignment = (uint32_t)kv->v.u;
        }
    }
    for (uint64_t i = 0; i < nt; i++) {
        gguf_tensor *t = &g->tensors[i];
        const char *nm;
        uint64_t nlen;
        snprintf(what, sizeof what, "tensor info #%llu", (unsigned long long)i);
        c.what = what;
        if ((st = rd_str(&c, &nm, &nlen))) return st;
        if (!(t->name = dup_n(nm, nlen))) return err_set(WICK_ERR_NOMEM, "%s: out of memory", path);
        g->n_tensors = (int64_t)i + 1;
        snprintf(what, sizeof what, "tensor %.120s", t->name);
        uint32_t nd = 0, type = 0;
        if ((st = rd(&c, &nd, 4))) return st;
        if (nd < 1 || nd > GGUF_MAX_DIMS)
            return err_set(WICK_ERR_FORMAT, "%s: tensor %s: n_dims %u outside [1, %d]", path,
                           t->name, nd, GGUF_MAX_DIMS);
        t->n_dims = (int)nd;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t e = 0;
            if ((st = rd(&c, &e, 8))) return st;
            if (e > (uint64_t)INT64_MAX / 2)
                return err_set(WICK_ERR_FORMAT, "%s: tensor %s: dimension %u = %llu is too large",
                               path, t->name, d, (unsigned long long)e);
            t->ne[d] = (int64_t)e;
        }
        if ((st = rd(&c, &type, 4)) || (st = rd(&c, &t->offset, 8))) return st;
        int dt = gguf_dtype_from_ggml(type);
        if (dt < 0)
            return err_set(WICK_ERR_UNSUPPORTED, "%s: tensor %s: ggml type %u is not supported "
                           "(supported: F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q6_K)", path, t->name, type);
        t->dt = (dtype)dt;
        const int bs = dtype_block_size(t->dt);
        if (t->ne[0] % bs != 0)
            return err_set(WICK_ERR_FORMAT, "%s: tensor %s: %s rows of %lld values are not a "
                           "whole number of %d-value blocks", path, t->name, dtype_name(t->dt),
                           (long long)t->ne[0], bs);
        /* bytes of one row, (ne[0] / block) * block_bytes, with an overflow check: the
           dimension cap above keeps it in range for today's types, and this keeps it so
           whatever type is added (dtype_row_bytes would wrap silently) */
        uint64_t nb;
        if (__builtin_mul_overflow((uint64_t)(t->ne[0] / bs), (uint64_t)dtype_block_bytes(t->dt),
                                   &nb))
            return err_set(WICK_ERR_FORMAT, "%s: tensor %s: byte size overflows", path, t->name);
        for (int d = 1; d < GGUF_MAX_DIMS; d++)
            if (__builtin_mul_overflow(nb, (uint64_t)t->ne[d], &nb))
                return err_set(WICK_ERR_FORMAT, "%s: tensor %s: byte size overflows", path, t->name);
        t->nbytes = (size_t)nb;
    }
    if ((st = build_index(g))) return st;
    uint64_t hdr = (uint64_t)(c.p - g->mf.data);
    g->data_offset = (hdr + g->alignment - 1) / g->alignment * g->alignment;
    if (g->data_offset > g->mf.size && nt > 0)
        return err_set(WICK_ERR_FORMAT, "%s: truncated: the data section starts at %llu, past the "
                       "end of the file (%zu bytes)", path, (unsigned long long)g->data_offset,
                       g->mf.size);
    const uint64_t data_size = g->mf.size > g->data_offset ? g->mf.size - g->data_offset : 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return err_set(WICK_ERR_FORMAT, "%s: tensor %s: offset %llu is not a multiple of the "
                           "alignment %u", path, t->name, (unsigned long long)t->offset, g->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return err_set(WICK_ERR_FORMAT, "%s: tensor %s: bytes [%llu, %llu) of the data section "
                           "run past the end of the file (data section holds %llu bytes)", path,
                           t->name, (unsigned long long)t->offset,
                           (unsigned long long)(t->offset + t->nbytes), (unsigned long long)data_size);
        t->data = t->nbytes ? g->mf.data + g->data_offset + t->offset : NULL;
    }
    /* no two tensors may overlap */
    if (g->n_tensors > 1) {
        const gguf_tensor **by = malloc(sizeof *by * (size_t)g->n_tensors);
        if (!by) return err_set(WICK_ERR_NOMEM, "%s: out of memory", path);
        for (int64_t i = 0; i < g->n_tensors; i++) by[i] = &g->tensors[i];
        qsort(by, (size_t)g->n_tensors, sizeof *by, cmp_off);
        for (int64_t i = 1; i < g->n_tensors; i++) {
            if (by[i - 1]->nbytes && by[i]->nbytes &&
                by[i - 1]->offset + by[i - 1]->nbytes > by[i]->offset) {
                st = err_set(WICK_ERR_FORMAT, "%s: tensors %s and %s overlap", path,
                             by[i - 1]->name, by[i]->name);
                free(by);
                return st;
            }
        }
        free(by);
    }
    return WICK_OK;
}

/* Maps `path`, or views the caller's buffer when mem != NULL; then the one parser. */
static wick_status open_any(const char *path, const void *mem, size_t len, gguf_file **out) {
    if (!out) return err_set(WICK_ERR_INVALID_ARG, "gguf_open: out is NULL");
    *out = NULL;
    if (!path) return err_set(WICK_ERR_INVALID_ARG, "gguf_open: path is NULL");
    gguf_file *g = calloc(1, sizeof *g);
    if (!g) return err_set(WICK_ERR_NOMEM, "out of memory");
    wick_status st = mem ? mapfile_borrow(mem, len, path, &g->mf) : mapfile_open(path, &g->mf);
    if (st) {
        free(g);
        return st;
    }
    if ((st = parse(g))) {
        gguf_close(g);
        return st;
    }
    *out = g;
    return WICK_OK;
}

wick_status gguf_open(const char *path, gguf_file **out) { return open_any(path, NULL, 0, out); }

wick_status gguf_open_mem(const void *data, size_t len, const char *name, gguf_file **out) {
    static const unsigned char empty[1];
    if (!data && len) {
        if (out) *out = NULL;
        return err_set(WICK_ERR_INVALID_ARG, "gguf_open_mem: NULL buffer");
    }
    return open_any(name ? name : "GGUF (in memory)", data ? data : empty, len, out);
}

const gguf_kv *gguf_find_kv(const gguf_file *g, const char *key) {
    if (!g || !key || !g->kv_by_key) return NULL;
    int64_t lo = 0, hi = g->n_kv;   /* binary search over the sorted view */
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        const int c = strcmp(g->kv_by_key[mid]->key, key);
        if (c == 0) return g->kv_by_key[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name) {
    if (!g || !name || !g->t_by_name) return NULL;
    int64_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        const int c = strcmp(g->t_by_name[mid]->name, name);
        if (c == 0) return g->t_by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static bool wrong_type(const gguf_file *g, const char *key, const char *want, wick_status *st) {
    wick_status s = err_set(WICK_ERR_FORMAT, "%s: key %s: expected %s", g->mf.path, key, want);
    if (st) *st = s;
    return false;
}

bool gguf_get_int(const gguf_file *g, const char *key, int64_t *out, wick_status *st) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return false;
    switch (kv->v.type) {
    case GGUF_U8: case GGUF_U16: case GGUF_U32: case GGUF_U64:
        if (kv->v.u > (uint64_t)INT64_MAX) return wrong_type(g, key, "an integer below 2^63", st);
        *out = (int64_t)kv->v.u;
        return true;
    case GGUF_I8: case GGUF_I16: case GGUF_I32: case GGUF_I64: *out = kv->v.i; return true;
    default: return wrong_type(g, key, "an integer", st);
    }
}

bool gguf_get_float(const gguf_file *g, const char *key, double *out, wick_status *st) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return false;
    if (kv->v.type == GGUF_F32 || kv->v.type == GGUF_F64) { *out = kv->v.f; return true; }
    int64_t i;
    if (gguf_get_int(g, key, &i, NULL)) { *out = (double)i; return true; }
    return wrong_type(g, key, "a number", st);
}

bool gguf_get_bool(const gguf_file *g, const char *key, bool *out, wick_status *st) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return false;
    if (kv->v.type != GGUF_BOOL) return wrong_type(g, key, "a bool", st);
    *out = kv->v.u != 0;
    return true;
}

bool gguf_get_str(const gguf_file *g, const char *key, char **out, wick_status *st) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return false;
    if (kv->v.type != GGUF_STRING) return wrong_type(g, key, "a string", st);
    *out = dup_n(kv->v.str.s, kv->v.str.len);
    if (!*out) {
        wick_status s = err_set(WICK_ERR_NOMEM, "out of memory");
        if (st) *st = s;
        return false;
    }
    return true;
}

const gguf_value *gguf_get_arr(const gguf_file *g, const char *key, gguf_type elem,
                               wick_status *st) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return NULL;
    if (kv->v.type != GGUF_ARRAY || (elem != GGUF_TYPE_COUNT_ && kv->v.arr.type != elem)) {
        wrong_type(g, key, "an array of the documented element type", st);
        return NULL;
    }
    return &kv->v;
}

/* ---- writing ---- */

typedef struct wbuf { unsigned char *p; size_t n, cap; int oom; } wbuf;

static void put(wbuf *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(wbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(wbuf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(wbuf *b, const char *s, uint64_t n) { put_u64(b, n); put(b, s, n); }

static int put_value(wbuf *b, const gguf_value *v, int depth) {
    switch (v->type) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: case GGUF_U16: case GGUF_I16: case GGUF_U32:
    case GGUF_I32: case GGUF_U64: case GGUF_I64: {
        uint64_t u = v->type == GGUF_U8 || v->type == GGUF_U16 || v->type == GGUF_U32 ||
                     v->type == GGUF_U64 || v->type == GGUF_BOOL ? v->u : (uint64_t)v->i;
        put(b, &u, scalar_size(v->type)); /* little-endian: the low bytes */
        return 0;
    }
    case GGUF_F32: { float f = (float)v->f; put(b, &f, 4); return 0; }
    case GGUF_F64: put(b, &v->f, 8); return 0;
    case GGUF_STRING:
        if (!v->str.s && v->str.len) return -1;
        put_str(b, v->str.s ? v->str.s : "", v->str.len);
        return 0;
    case GGUF_ARRAY:
        if (depth >= MAX_NEST || (unsigned)v->arr.type >= GGUF_TYPE_COUNT_ ||
            (v->arr.n && !v->arr.items))
            return -1;
        put_u32(b, (uint32_t)v->arr.type);
        put_u64(b, v->arr.n);
        for (uint64_t i = 0; i < v->arr.n; i++) {
            if (v->arr.items[i].type != v->arr.type) return -1;
            if (put_value(b, &v->arr.items[i], depth + 1)) return -1;
        }
        return 0;
    default: return -1;
    }
}

wick_status gguf_write(const char *path, const gguf_kv *kvs, int n_kv,
                       const gguf_write_tensor *tensors, int n_tensors) {
    if (!path || n_kv < 0 || n_tensors < 0 || (n_kv && !kvs) || (n_tensors && !tensors))
        return err_set(WICK_ERR_INVALID_ARG, "gguf_write: bad arguments");
    uint32_t align = GGUF_DEFAULT_ALIGNMENT;
    wbuf b = {0};
    wick_status st = WICK_OK;
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, (uint64_t)n_tensors);
    put_u64(&b, (uint64_t)n_kv);
    for (int i = 0; i < n_kv && !st; i++) {
        if (!kvs[i].key || !*kvs[i].key) {
            st = err_set(WICK_ERR_INVALID_ARG, "%s: key/value #%d has no key", path, i);
            break;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(kvs[j].key, kvs[i].key) == 0)
                st = err_set(WICK_ERR_INVALID_ARG, "%s: key %s given twice", path, kvs[i].key);
        if (strcmp(kvs[i].key, "general.alignment") == 0) {
            uint64_t a = kvs[i].v.u;
            if (kvs[i].v.type != GGUF_U32 || a == 0 || (a & (a - 1)))
                st = err_set(WICK_ERR_INVALID_ARG, "%s: general.alignment must be a u32 power of two",
                             path);
            else align = (uint32_t)a;
        }
        put_str(&b, kvs[i].key, strlen(kvs[i].key));
        put_u32(&b, (uint32_t)kvs[i].v.type);
        if (!st && put_value(&b, &kvs[i].v, 0))
            st = err_set(WICK_ERR_INVALID_ARG, "%s: key %s: malformed value (unknown type, "
                         "mixed array element types or NULL data)", path, kvs[i].key);
    }
    uint64_t off = 0;
    for (int i = 0; i < n_tensors && !st; i++) {
        const gguf_write_tensor *t = &tensors[i];
        uint32_t id = gguf_ggml_from_dtype(t->dt);
        if (!t->name || id == UINT32_MAX || t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) {
            st = err_set(WICK_ERR_INVALID_ARG, "%s: tensor #%d (%s): bad name, dtype or n_dims", path,
                         i, t->name ? t->name : "?");
            break;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(tensors[j].name, t->name) == 0)
                st = err_set(WICK_ERR_INVALID_ARG, "%s: tensor %s given twice", path, t->name);
        uint64_t nb = 0;
        if (t->ne[0] < 0 || t->ne[0] % dtype_block_size(t->dt) != 0) {
            st = err_set(WICK_ERR_INVALID_ARG, "%s: tensor %s: ne[0] = %lld is not a multiple of "
                         "the %s block", path, t->name, (long long)t->ne[0], dtype_name(t->dt));
            break;
        }
        nb = dtype_row_bytes(t->dt, t->ne[0]);
        for (int d = 1; d < t->n_dims; d++)
            if (t->ne[d] < 0 || __builtin_mul_overflow(nb, (uint64_t)t->ne[d], &nb))
                st = err_set(WICK_ERR_INVALID_ARG, "%s: tensor %s: bad shape", path, t->name);
        if (nb && !t->data)
            st = err_set(WICK_ERR_INVALID_ARG, "%s: tensor %s: data is NULL", path, t->name);
        put_str(&b, t->name, strlen(t->name));
        put_u32(&b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64(&b, (uint64_t)t->ne[d]);
        put_u32(&b, id);
        put_u64(&b, off);
        off += (nb + align - 1) / align * align;
    }
    if (!st && b.oom) st = err_set(WICK_ERR_NOMEM, "%s: out of memory building the header", path);
    if (st) {
        free(b.p);
        return st;
    }
    static const unsigned char zeros[256] = {0};
    size_t pad = (align - b.n % align) % align;
    atomic_file af;
    if ((st = atomic_file_open(path, &af))) {
        free(b.p);
        return st;
    }
    st = atomic_file_write(&af, b.p, b.n);
    free(b.p);
    for (size_t k = 0; !st && k < pad; k += sizeof zeros)
        st = atomic_file_write(&af, zeros, pad - k < sizeof zeros ? pad - k : sizeof zeros);
    for (int i = 0; i < n_tensors && !st; i++) {
        const gguf_write_tensor *t = &tensors[i];
        uint64_t nb = dtype_row_bytes(t->dt, t->ne[0]);
        for (int d = 1; d < t->n_dims; d++) nb *= (uint64_t)t->ne[d];
        if (nb) st = atomic_file_write(&af, t->data, nb);
        size_t tp = (align - nb % align) % align;
        for (size_t k = 0; !st && k < tp; k += sizeof zeros)
            st = atomic_file_write(&af, zeros, tp - k < sizeof zeros ? tp - k : sizeof zeros);
    }
    if (st) {
        atomic_file_abort(&af);
        return st;
    }
    return atomic_file_commit(&af);
}
