/* safetensors.c — safetensors reader (mmap, zero-copy, fully validated) and atomic writer.
 *
 * Reading: each file is mapped read-only; its JSON header is copied out, parsed with cJSON and
 * checked completely (see safetensors.h) before any tensor becomes visible. Tensor records of
 * all files of a set live in one array, in file order and, within a file, in header order;
 * st_at() iterates in that order. Names are found through an open-addressing hash table.
 *
 * Deliberately not done: no byte swapping (safetensors is little-endian, so is every host we
 * build for), no dtype conversion, no alignment fix-up (a tensor's data pointer is aligned only
 * as well as the file aligns it; files from the reference writer and st_write start the data
 * section at a multiple of 8, so tensors whose offsets are multiples of their element size
 * are naturally aligned). Gaps between tensors are accepted on reading although the reference
 * writer never produces them.
 *
 * Writing: the standard layout — tensors back to back in the given order, the header padded
 * with spaces so the data section starts at a multiple of 8. The header JSON is produced here
 * rather than by cJSON so that integers are always printed as plain decimal integers (cJSON
 * prints large numbers in exponent form, which strict readers reject). */
#include "formats/safetensors.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/error.h"
#include "base/json_parse.h"
#include "base/json_num.h"

#define META_KEY "__metadata__"

struct st_set {
    mapfile *files;          /* (n_files) */
    int n_files;
    st_tensor *tensors;      /* (n_tensors) in file order, then header order */
    int n_tensors, cap_tensors;
    int *slots;              /* hash table of tensor indices, -1 = empty; (n_slots), power of 2 */
    size_t n_slots;
    char **meta_keys, **meta_vals;   /* "__metadata__" of the first file, (n_meta) */
    int n_meta;
};

/* ---------- hash table ---------- */

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;   /* FNV-1a 64 */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Returns the slot holding `name`, or the empty slot where it would go. The table is kept at
 * most half full, so an empty slot always exists. */
static size_t hash_probe(const st_set *s, const char *name) {
    size_t mask = s->n_slots - 1, i = (size_t)name_hash(name) & mask;
    while (s->slots[i] >= 0 && strcmp(s->tensors[s->slots[i]].name, name) != 0) i = (i + 1) & mask;
    return i;
}

static wick_status hash_rebuild(st_set *s, size_t want) {
    size_t n = 16;
    while (n < 2 * want) n *= 2;
    int *slots = malloc(n * sizeof *slots);
    if (!slots) return err_set(WICK_ERR_NOMEM, "safetensors: out of memory (hash table)");
    for (size_t i = 0; i < n; i++) slots[i] = -1;
    free(s->slots);
    s->slots = slots;
    s->n_slots = n;
    return WICK_OK;
}

/* ---------- validation helpers ---------- */

/* A JSON number that is an exact non-negative integer below 2^63. Integers above 2^53 lose
 * precision in cJSON's double, but any such offset or dimension is rejected later by the size
 * and range checks (no file is 9 PB), so the loss cannot let a bad file through. */
static bool json_uint(const cJSON *v, int64_t *out) {
    return json_num_int(v, 0, INT64_MAX, out);
}

typedef struct { int64_t begin, end; int idx; } span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static void free_meta(st_set *s) {
    for (int i = 0; i < s->n_meta; i++) {
        free(s->meta_keys[i]);
        free(s->meta_vals[i]);
    }
    free(s->meta_keys);
    free(s->meta_vals);
    s->meta_keys = s->meta_vals = NULL;
    s->n_meta = 0;
}

static wick_status parse_metadata(st_set *s, const char *path, const cJSON *m, bool keep) {
    if (!cJSON_IsObject(m))
        return err_set(WICK_ERR_FORMAT, "%s: field %s is not an object", path, META_KEY);
    int n = cJSON_GetArraySize(m);
    for (const cJSON *e = m->child; e; e = e->next)
        if (!cJSON_IsString(e))
            return err_set(WICK_ERR_FORMAT, "%s: %s entry \"%s\" is not a string", path, META_KEY,
                           e->string ? e->string : "?");
    if (!keep || n == 0) return WICK_OK;
    s->meta_keys = calloc((size_t)n, sizeof(char *));
    s->meta_vals = calloc((size_t)n, sizeof(char *));
    if (!s->meta_keys || !s->meta_vals) goto oom;
    for (const cJSON *e = m->child; e; e = e->next) {
        s->meta_keys[s->n_meta] = strdup(e->string);
        s->meta_vals[s->n_meta] = strdup(e->valuestring);
        s->n_meta++;   /* counted before the check so free_meta releases a half-made pair */
        if (!s->meta_keys[s->n_meta - 1] || !s->meta_vals[s->n_meta - 1]) goto oom;
    }
    return WICK_OK;
oom:
    free_meta(s);
    return err_set(WICK_ERR_NOMEM, "%s: out of memory (metadata)", path);
}

/* Validates one header entry and fills *t (name not yet set). data_len is the size of the
 * file's data section; data points at its start. */
static wick_status parse_entry(const char *path, const cJSON *e, const unsigned char *data,
                               uint64_t data_len, st_tensor *t) {
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return err_set(WICK_ERR_FORMAT, "%s: tensor %s: entry is not an object", path, name);
    const cJSON *jdt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!jdt) return err_set(WICK_ERR_FORMAT, "%s: tensor %s: missing dtype", path, name);
    int dt = cJSON_IsString(jdt) ? dtype_parse(jdt->valuestring) : -1;
    if (dt < 0)
        return err_set(WICK_ERR_FORMAT, "%s: tensor %s: unknown dtype %s", path, name,
                       cJSON_IsString(jdt) ? jdt->valuestring : "(not a string)");
    t->dt = (dtype)dt;

    const cJSON *jshape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(jshape))
        return err_set(WICK_ERR_FORMAT, "%s: tensor %s: shape is missing or not an array", path,
                       name);
    int ndim = cJSON_GetArraySize(jshape);
    if (ndim > ST_MAX_DIMS)
        return err_set(WICK_ERR_FORMAT, "%s: tensor %s: shape has %d dims (at most %d)", path,
                       name, ndim, ST_MAX_DIMS);
    t->ndim = ndim;
    int64_t numel = 1;
    int k = 0;
    for (const cJSON *d = jshape->child; d; d = d->next, k++) {
        if (!json_uint(d, &t->shape[k]))
            return err_set(WICK_ERR_FORMAT,
                           "%s: tensor %s: shape[%d] is not a non-negative integer", path, name, k);
        if (__builtin_mul_overflow(numel, t->shape[k], &numel))
            return err_set(WICK_ERR_FORMAT, "%s: tensor %s: shape element count overflows",
                           path, name);
    }
    for (; k < ST_MAX_DIMS; k++) t->shape[k] = 0;
    t->numel = numel;
    int64_t nbytes;
    if (__builtin_mul_overflow(numel, (int64_t)dtype_size(t->dt), &nbytes))
        return err_set(WICK_ERR_FORMAT, "%s: tensor %s: shape byte size overflows", path, name);

    const cJSON *joff = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    int64_t begin, end;
    if (!cJSON_IsArray(joff) || cJSON_GetArraySize(joff) != 2 ||
        !json_uint(joff->child, &begin) || !json_uint(joff->child->next, &end))
        return err_set(WICK_ERR_FORMAT,
                       "%s: tensor %s: data_offsets is not two non-negative integers", path, name);
    if (begin > end)
        return err_set(WICK_ERR_FORMAT, "%s: tensor %s: data_offsets begin %lld > end %lld",
                       path, name, (long long)begin, (long long)end);
    if ((uint64_t)end > data_len)
        return err_set(WICK_ERR_FORMAT,
                       "%s: tensor %s: data_offsets [%lld, %lld] outside the data section "
                       "(%llu bytes)", path, name, (long long)begin, (long long)end,
                       (unsigned long long)data_len);
    if (end - begin != nbytes)
        return err_set(WICK_ERR_FORMAT,
                       "%s: tensor %s: shape and dtype %s need %lld bytes but data_offsets "
                       "span %lld", path, name, dtype_name(t->dt), (long long)nbytes,
                       (long long)(end - begin));
    t->nbytes = (size_t)nbytes;
    t->data = nbytes ? data + begin : NULL;
    return WICK_OK;
}

static wick_status grow_tensors(st_set *s, int extra) {
    if (s->n_tensors + extra <= s->cap_tensors) return WICK_OK;
    int cap = s->cap_tensors ? s->cap_tensors : 64;
    while (cap < s->n_tensors + extra) cap *= 2;
    st_tensor *nt = realloc(s->tensors, (size_t)cap * sizeof *nt);
    if (!nt) return err_set(WICK_ERR_NOMEM, "safetensors: out of memory (tensor table)");
    s->tensors = nt;
    s->cap_tensors = cap;
    return WICK_OK;
}

/* Maps `path` (or, with mem != NULL, views the caller's mem_len bytes under that name),
 * validates it and appends its tensors to the set as file number s->n_files. On failure the
 * set holds whatever was added so far (all owned by it) and is only fit for st_close, which
 * every caller does. */
static wick_status add_file(st_set *s, const char *path, const void *mem, size_t mem_len) {
    mapfile *nf = realloc(s->files, (size_t)(s->n_files + 1) * sizeof *nf);
    if (!nf) return err_set(WICK_ERR_NOMEM, "%s: out of memory", path);
    s->files = nf;
    int fi = s->n_files;
    mapfile *mf = &s->files[fi];
    wick_status st = mem ? mapfile_borrow(mem, mem_len, path, mf) : mapfile_open(path, mf);
    if (st) return st;
    s->n_files++;   /* from here on st_close unmaps it */

    if (mf->size < 8)
        return err_set(WICK_ERR_FORMAT, "%s: truncated: %zu bytes, shorter than the 8-byte "
                       "header length", path, mf->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | mf->data[i];
    if (hlen > (uint64_t)mf->size - 8)
        return err_set(WICK_ERR_FORMAT, "%s: header length %llu larger than the file (%zu bytes)"
                       " - truncated?", path, (unsigned long long)hlen, mf->size);
    const unsigned char *data = mf->data + 8 + hlen;
    uint64_t data_len = (uint64_t)mf->size - 8 - hlen;

    /* cJSON wants a NUL-terminated string; copying the header also keeps the parser from
     * ever looking past it into tensor data. */
    char *hdr = malloc((size_t)hlen + 1);
    if (!hdr) return err_set(WICK_ERR_NOMEM, "%s: out of memory (header of %llu bytes)", path,
                             (unsigned long long)hlen);
    memcpy(hdr, mf->data + 8, (size_t)hlen);
    hdr[hlen] = '\0';
    const char *endp = NULL;
    cJSON *root = cJSON_ParseWithOpts(hdr, &endp, 0);
    bool trailing = false; /* parsed, but followed by something other than padding */
    if (root && endp) {   /* only whitespace (the writer's padding) may follow the object */
        for (const char *p = endp; p < hdr + hlen; p++)
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
                cJSON_Delete(root);
                root = NULL;
                trailing = true;
                break;
            }
    }
    if (!root) {
        size_t at = endp ? (size_t)(endp - hdr) : 0;
        /* valid JSON that cJSON could not build: out of memory (json_parse_error says so) */
        wick_status pe = !trailing && json_valid(hdr, (size_t)hlen) == 0
                              ? json_parse_error(hdr, (size_t)hlen, path)
                              : err_set(WICK_ERR_FORMAT, "%s: header is not valid JSON (near byte "
                                        "%zu of %llu)", path, at, (unsigned long long)hlen);
        free(hdr);
        return pe;
    }
    free(hdr);
    span *spans = NULL;
    int first = s->n_tensors;
    if (!cJSON_IsObject(root)) {
        st = err_set(WICK_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto fail;
    }
    int n = 0, n_meta_entries = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, META_KEY) == 0) {
            if (++n_meta_entries > 1) {
                st = err_set(WICK_ERR_FORMAT, "%s: duplicate %s", path, META_KEY);
                goto fail;
            }
            if ((st = parse_metadata(s, path, e, fi == 0))) goto fail;
        } else {
            n++;
        }
    }
    if ((st = grow_tensors(s, n))) goto fail;
    spans = malloc((size_t)(n ? n : 1) * sizeof *spans);
    if (!spans) {
        st = err_set(WICK_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    int ns = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, META_KEY) == 0) continue;
        st_tensor *t = &s->tensors[s->n_tensors];
        memset(t, 0, sizeof *t);
        if ((st = parse_entry(path, e, data, data_len, t))) goto fail;
        t->file = fi;
        t->name = strdup(e->string);
        if (!t->name) {
            st = err_set(WICK_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        s->n_tensors++;
        if (t->nbytes) {
            int64_t b = (int64_t)((const unsigned char *)t->data - data);
            spans[ns++] = (span){b, b + (int64_t)t->nbytes, s->n_tensors - 1};
        }
    }
    /* Overlap: after sorting by begin, each non-empty tensor must start at or after the end of
     * the one before it. Empty tensors occupy no bytes and cannot overlap anything. */
    qsort(spans, (size_t)ns, sizeof *spans, span_cmp);
    for (int i = 1; i < ns; i++)
        if (spans[i].begin < spans[i - 1].end) {
            st = err_set(WICK_ERR_FORMAT, "%s: tensors %s [%lld, %lld] and %s [%lld, %lld] "
                         "overlap", path, s->tensors[spans[i - 1].idx].name,
                         (long long)spans[i - 1].begin, (long long)spans[i - 1].end,
                         s->tensors[spans[i].idx].name, (long long)spans[i].begin,
                         (long long)spans[i].end);
            goto fail;
        }
    free(spans);
    spans = NULL;
    cJSON_Delete(root);
    root = NULL;

    /* Names: duplicates inside this file or across the files of the set. */
    if (2 * (size_t)s->n_tensors > s->n_slots) {
        if ((st = hash_rebuild(s, (size_t)s->n_tensors))) goto fail;
        first = 0;   /* re-insert everything into the new table ... */
    }
    int keep = s->n_tensors;
    for (int i = first; i < keep; i++) {
        size_t slot = hash_probe(s, s->tensors[i].name);
        int j = s->slots[slot];
        if (j >= 0) {
            const st_tensor *a = &s->tensors[j];
            if (a->file == fi)
                st = err_set(WICK_ERR_FORMAT, "%s: tensor %s: duplicate name", path, a->name);
            else
                st = err_set(WICK_ERR_FORMAT, "tensor %s: duplicate, in both %s and %s", a->name,
                             s->files[a->file].path, path);
            goto fail;
        }
        s->slots[slot] = i;
    }
    return WICK_OK;

fail:
    cJSON_Delete(root);
    free(spans);
    return st;
}

void st_release_pages(const st_set *s, const void *p, size_t n) {
    if (!s || !p || !n) return;
    const uintptr_t a = (uintptr_t)p, ps = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < s->n_files; i++) {
        const mapfile *mf = &s->files[i];
        if (mf->borrowed || !mf->data || a < (uintptr_t)mf->data ||
            a + n > (uintptr_t)mf->data + mf->size || ps == 0)
            continue;
        const uintptr_t lo = (a + ps - 1) / ps * ps, hi = (a + n) / ps * ps;
        if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
        return;
    }
}

void st_close(st_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n_tensors; i++) free((char *)s->tensors[i].name);
    for (int i = 0; i < s->n_files; i++) mapfile_close(&s->files[i]);
    free(s->files);
    free(s->tensors);
    free(s->slots);
    free_meta(s);
    free(s);
}

wick_status st_open(const char *path, st_set **out) {
    *out = NULL;
    if (!path) return err_set(WICK_ERR_INVALID_ARG, "st_open: path is NULL");
    st_set *s = calloc(1, sizeof *s);
    if (!s) return err_set(WICK_ERR_NOMEM, "%s: out of memory", path);
    wick_status st = add_file(s, path, NULL, 0);
    if (st) {
        st_close(s);
        return st;
    }
    *out = s;
    return WICK_OK;
}

wick_status st_open_mem(const void *data, size_t len, const char *name, st_set **out) {
    *out = NULL;
    if (!data && len) return err_set(WICK_ERR_INVALID_ARG, "st_open_mem: NULL buffer");
    if (!name) name = "safetensors (in memory)";
    st_set *s = calloc(1, sizeof *s);
    if (!s) return err_set(WICK_ERR_NOMEM, "%s: out of memory", name);
    /* an empty buffer still goes through the parser (which reports the truncation); a
       non-NULL pointer marks the memory variant */
    static const unsigned char empty[1];
    wick_status st = add_file(s, name, data ? data : empty, len);
    if (st) {
        st_close(s);
        return st;
    }
    *out = s;
    return WICK_OK;
}

/* ---------- sharded folders ---------- */

static int str_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A shard name from the index must stay inside the folder: no absolute path, no "..". */
static bool shard_name_ok(const char *f) {
    if (!*f || f[0] == '/') return false;
    for (const char *p = f; *p;) {
        const char *q = strchr(p, '/');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') return false;
        p += n + (q ? 1 : 0);
    }
    return true;
}

/* Opens the shards named by the index at `ipath`. Shards are opened once each, in sorted file
 * name order (so "model-00001-of-00002" comes first whatever the weight_map order is), which
 * is the file order st_at() iterates in. Tensors present in a shard but absent from the
 * weight_map are kept: the index is checked for consistency, not used as a filter. */
static wick_status open_index(st_set *s, const char *dir, const char *ipath) {
    char *text = NULL;
    const char **names = NULL;
    char *fpath = NULL;
    cJSON *root = NULL;
    wick_status st = file_read_all(ipath, &text, NULL);
    if (st) return st;
    st = json_parse(text, strlen(text), ipath, &root);
    free(text);
    if (st) goto done;
    if (!cJSON_IsObject(root)) {
        st = err_set(WICK_ERR_FORMAT, "%s: not a JSON object", ipath);
        goto done;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        st = err_set(WICK_ERR_FORMAT, "%s: field weight_map is missing or not an object", ipath);
        goto done;
    }
    int n = cJSON_GetArraySize(wm), nn = 0;
    names = malloc((size_t)(n ? n : 1) * sizeof *names);
    if (!names) {
        st = err_set(WICK_ERR_NOMEM, "%s: out of memory", ipath);
        goto done;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring)) {
            st = err_set(WICK_ERR_FORMAT, "%s: weight_map entry %s: shard is not a file name "
                         "inside the folder", ipath, e->string);
            goto done;
        }
        names[nn++] = e->valuestring;
    }
    if (nn == 0) {
        st = err_set(WICK_ERR_FORMAT, "%s: weight_map is empty", ipath);
        goto done;
    }
    qsort(names, (size_t)nn, sizeof *names, str_cmp);
    int nu = 0;
    for (int i = 0; i < nn; i++)
        if (nu == 0 || strcmp(names[nu - 1], names[i]) != 0) names[nu++] = names[i];
    for (int i = 0; i < nu; i++) {
        fpath = path_join(dir, names[i]);
        if (!fpath) {
            st = err_set(WICK_ERR_NOMEM, "%s: out of memory", ipath);
            goto done;
        }
        if ((st = add_file(s, fpath, NULL, 0))) {
            err_wrap(st, "%s", ipath);
            goto done;
        }
        free(fpath);
        fpath = NULL;
    }
    /* Every weight_map entry must be found in the shard it names. A name listed twice (cJSON
     * keeps duplicate keys) is accepted only if both entries name the same shard. */
    for (const cJSON *e = wm->child; e; e = e->next) {
        const st_tensor *t = st_find(s, e->string);
        if (!t) {
            st = err_set(WICK_ERR_FORMAT, "%s: tensor %s: listed in shard %s but not found in "
                         "any shard", ipath, e->string, e->valuestring);
            goto done;
        }
        const char *in = s->files[t->file].path;
        size_t li = strlen(in), le = strlen(e->valuestring);
        bool same = li >= le && strcmp(in + li - le, e->valuestring) == 0 &&
                    (li == le || in[li - le - 1] == '/');
        if (!same) {
            st = err_set(WICK_ERR_FORMAT, "%s: tensor %s: index names shard %s but it is in %s",
                         ipath, e->string, e->valuestring, in);
            goto done;
        }
    }
done:
    free(fpath);
    free(names);
    cJSON_Delete(root);
    return st;
}

wick_status st_open_dir(const char *dir, st_set **out) {
    *out = NULL;
    if (!dir) return err_set(WICK_ERR_INVALID_ARG, "st_open_dir: dir is NULL");
    char *single = path_join(dir, "model.safetensors");
    char *index = path_join(dir, "model.safetensors.index.json");
    st_set *s = calloc(1, sizeof *s);
    wick_status st;
    if (!single || !index || !s) {
        st = err_set(WICK_ERR_NOMEM, "%s: out of memory", dir);
    } else if (file_exists(single)) {
        st = add_file(s, single, NULL, 0);
    } else if (file_exists(index)) {
        st = open_index(s, dir, index);
    } else {
        st = err_set(WICK_ERR_IO, "%s: neither %s nor %s exists", dir, single, index);
    }
    free(single);
    free(index);
    if (st) {
        st_close(s);
        return st;
    }
    *out = s;
    return WICK_OK;
}

/* ---------- accessors ---------- */

int st_count(const st_set *s) { return s ? s->n_tensors : 0; }

const st_tensor *st_at(const st_set *s, int i) {
    return s && i >= 0 && i < s->n_tensors ? &s->tensors[i] : NULL;
}

const st_tensor *st_find(const st_set *s, const char *name) {
    if (!s || !name || s->n_slots == 0) return NULL;
    int j = s->slots[hash_probe(s, name)];
    return j >= 0 ? &s->tensors[j] : NULL;
}

const char *st_metadata(const st_set *s, const char *key) {
    if (!s || !key) return NULL;
    for (int i = 0; i < s->n_meta; i++)
        if (strcmp(s->meta_keys[i], key) == 0) return s->meta_vals[i];
    return NULL;
}

const char *st_file_path(const st_set *s, int i) {
    return s && i >= 0 && i < s->n_files ? s->files[i].path : NULL;
}

/* ---------- writing ---------- */

typedef struct { char *p; size_t n, cap; bool oom; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + n + 1 > cap) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_i64(sbuf *b, int64_t v) {
    char tmp[32];
    int k = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    sb_put(b, tmp, (size_t)k);
}

/* JSON string literal: quotes, backslashes and control bytes escaped; other bytes (UTF-8)
 * pass through unchanged. */
static void sb_json_str(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            sb_put(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

/* Checks one tensor to write and returns its byte size in *nbytes. */
static wick_status check_write_tensor(const char *path, const st_write_tensor *t, int i,
                                      int64_t *nbytes) {
    if (!t->name)
        return err_set(WICK_ERR_INVALID_ARG, "%s: tensor #%d has no name", path, i);
    if (strcmp(t->name, META_KEY) == 0)
        return err_set(WICK_ERR_INVALID_ARG, "%s: tensor #%d: name %s is reserved", path, i,
                       META_KEY);
    if ((unsigned)t->dt >= DT_COUNT_)
        return err_set(WICK_ERR_INVALID_ARG, "%s: tensor %s: bad dtype %d", path, t->name,
                       (int)t->dt);
    if (dtype_is_quant(t->dt))
        return err_set(WICK_ERR_INVALID_ARG, "%s: tensor %s: block-quantized dtype %s cannot be "
                       "stored in safetensors", path, t->name, dtype_name(t->dt));
    if (t->ndim < 0 || t->ndim > ST_MAX_DIMS)
        return err_set(WICK_ERR_INVALID_ARG, "%s: tensor %s: ndim %d outside [0, %d]", path,
                       t->name, t->ndim, ST_MAX_DIMS);
    int64_t n = (int64_t)dtype_size(t->dt);
    for (int k = 0; k < t->ndim; k++) {
        if (t->shape[k] < 0)
            return err_set(WICK_ERR_INVALID_ARG, "%s: tensor %s: shape[%d] = %lld is negative",
                           path, t->name, k, (long long)t->shape[k]);
        if (__builtin_mul_overflow(n, t->shape[k], &n))
            return err_set(WICK_ERR_INVALID_ARG, "%s: tensor %s: byte size overflows", path,
                           t->name);
    }
    if (n > 0 && !t->data)
        return err_set(WICK_ERR_INVALID_ARG, "%s: tensor %s: data is NULL for %lld bytes", path,
                       t->name, (long long)n);
    *nbytes = n;
    return WICK_OK;
}

/* Builds the header (without padding); offsets are back to back in the given order. */
static wick_status build_header(const char *path, const st_write_tensor *tensors, int n,
                                const char *const *mk, const char *const *mv, int n_meta,
                                sbuf *b, int64_t *sizes) {
    int64_t off = 0;
    sb_str(b, "{");
    if (n_meta > 0) {
        sb_json_str(b, META_KEY);
        sb_str(b, ":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) sb_str(b, ",");
            sb_json_str(b, mk[i]);
            sb_str(b, ":");
            sb_json_str(b, mv[i]);
        }
        sb_str(b, "}");
    }
    for (int i = 0; i < n; i++) {
        const st_write_tensor *t = &tensors[i];
        int64_t nb = 0;
        wick_status st = check_write_tensor(path, t, i, &nb);
        if (st) return st;
        sizes[i] = nb;
        if (i || n_meta > 0) sb_str(b, ",");
        sb_json_str(b, t->name);
        sb_str(b, ":{\"dtype\":");
        sb_json_str(b, dtype_name(t->dt));
        sb_str(b, ",\"shape\":[");
        for (int k = 0; k < t->ndim; k++) {
            if (k) sb_str(b, ",");
            sb_i64(b, t->shape[k]);
        }
        sb_str(b, "],\"data_offsets\":[");
        sb_i64(b, off);
        sb_str(b, ",");
        if (__builtin_add_overflow(off, nb, &off))
            return err_set(WICK_ERR_INVALID_ARG, "%s: total data size overflows", path);
        sb_i64(b, off);
        sb_str(b, "]}");
    }
    sb_str(b, "}");
    if (b->oom) return err_set(WICK_ERR_NOMEM, "%s: out of memory (header)", path);
    return WICK_OK;
}

wick_status st_write(const char *path, const st_write_tensor *tensors, int n,
                     const char *const *meta_keys, const char *const *meta_values, int n_meta) {
    if (!path) return err_set(WICK_ERR_INVALID_ARG, "st_write: path is NULL");
    if (n < 0 || (n > 0 && !tensors))
        return err_set(WICK_ERR_INVALID_ARG, "%s: bad tensor list (n = %d)", path, n);
    if (n_meta < 0 || (n_meta > 0 && (!meta_keys || !meta_values)))
        return err_set(WICK_ERR_INVALID_ARG, "%s: bad metadata list (n_meta = %d)", path, n_meta);
    for (int i = 0; i < n_meta; i++) {
        if (!meta_keys[i] || !meta_values[i])
            return err_set(WICK_ERR_INVALID_ARG, "%s: metadata entry #%d is NULL", path, i);
        for (int j = 0; j < i; j++)
            if (strcmp(meta_keys[i], meta_keys[j]) == 0)
                return err_set(WICK_ERR_INVALID_ARG, "%s: metadata key %s given twice", path,
                               meta_keys[i]);
    }

    sbuf b = {0};
    const char **names = malloc((size_t)(n ? n : 1) * sizeof *names);
    int64_t *sizes = malloc((size_t)(n ? n : 1) * sizeof *sizes);   /* (n) bytes per tensor */
    wick_status st;
    if (!names || !sizes) {
        st = err_set(WICK_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if ((st = build_header(path, tensors, n, meta_keys, meta_values, n_meta, &b, sizes)))
        goto done;
    /* Duplicate names: sort a copy of the name pointers and compare neighbours. */
    for (int i = 0; i < n; i++) names[i] = tensors[i].name;
    qsort(names, (size_t)n, sizeof *names, str_cmp);
    for (int i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) {
            st = err_set(WICK_ERR_INVALID_ARG, "%s: tensor %s: duplicate name", path, names[i]);
            goto done;
        }
    /* Pad the header with spaces so the data section starts at a multiple of 8. */
    while ((8 + b.n) % 8) sb_put(&b, " ", 1);
    if (b.oom) {
        st = err_set(WICK_ERR_NOMEM, "%s: out of memory (header)", path);
        goto done;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)b.n >> (8 * i));

    atomic_file af;
    if ((st = atomic_file_open(path, &af))) goto done;
    st = atomic_file_write(&af, len8, 8);
    if (!st) st = atomic_file_write(&af, b.p, b.n);
    for (int i = 0; i < n && !st; i++)
        st = atomic_file_write(&af, tensors[i].data, (size_t)sizes[i]);
    if (st)
        atomic_file_abort(&af);
    else
        st = atomic_file_commit(&af);
done:
    free(sizes);
    free(names);
    free(b.p);
    return st;
}
