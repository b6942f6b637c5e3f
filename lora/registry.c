/* registry.c — the per-model adapter registry.
 *
 * The registry is a small array of (name, adapter) in the model's extension slot, guarded by
 * the model's ext_mu; it is touched only by load / unload / list / lookup, never by the
 * forward pass. Users (sessions, engine generations) hold their own reference to the adapter
 * they apply, so selecting one is: lock, linear name lookup, atomic increment, unlock.
 *
 * Not here: reading/writing PEFT files (adapter_read.c, adapter_write.c), the math
 * (model/layer.c), per-session selection (infer/session.c), merging (merge.c). */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "lora/lora.h"
#include "model/model.h"

/* The registry: (name, adapter) pairs in load order, in the model's extension slot. */
typedef struct lora_registry {
    wick_adapter **adapters;
    int n, cap;
} lora_registry;

/* The registry lives in a model that callers see as const (it is shared read-only by
 * threads); the lock and the list are its one mutable part. */
static wick_model *mut(const wick_model *m) { return (wick_model *)m; }

static void registry_free(lora_registry *r) {
    for (int i = 0; i < r->n; i++) lora_adapter_release(r->adapters[i]);
    free(r->adapters);
    free(r);
}

static int find_locked(const lora_registry *r, const char *name) {
    for (int i = 0; r && i < r->n; i++)
        if (!strcmp(r->adapters[i]->name, name)) return i;
    return -1;
}

wick_status lora_registry_add(wick_model *m, wick_adapter *a, const char *name) {
    if (!m->ext_mu_init) return err_set(WICK_ERR_INTERNAL, "adapter registry not initialised");
    wick_status ust = lora_adapter_upload(a, m->kern);
    if (ust) return err_wrap(ust, "adapter '%s'", name);
    char *nm = strdup(name);
    if (!nm) return err_set(WICK_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&m->ext_mu);
    wick_status st = WICK_OK;
    if (!m->lora) {
        m->lora = calloc(1, sizeof *m->lora);
        if (m->lora) m->lora_free = registry_free;
    }
    lora_registry *r = m->lora;
    if (!r) {
        st = err_set(WICK_ERR_NOMEM, "out of memory");
    } else if (find_locked(r, name) >= 0) {
        st = err_set(WICK_ERR_INVALID_ARG, "an adapter named '%s' is already loaded (unload it "
                                           "first or pick another name)", name);
    } else if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 8;
        wick_adapter **p = realloc(r->adapters, sizeof *p * (size_t)cap);
        if (!p) st = err_set(WICK_ERR_NOMEM, "out of memory");
        else {
            r->adapters = p;
            r->cap = cap;
        }
    }
    if (st == WICK_OK) {
        free(a->name);
        a->name = nm;
        nm = NULL;
        r->adapters[r->n++] = a;
        lora_adapter_compact(a, m); /* before anyone else can unload it */
    }
    pthread_mutex_unlock(&m->ext_mu);
    free(nm);
    return st;
}

wick_adapter *lora_registry_get(const wick_model *cm, const char *name) {
    wick_model *m = mut(cm);
    if (!m->ext_mu_init) return NULL;
    pthread_mutex_lock(&m->ext_mu);
    int i = find_locked(m->lora, name);
    wick_adapter *a = i >= 0 ? m->lora->adapters[i] : NULL;
    if (a) lora_adapter_retain(a);
    pthread_mutex_unlock(&m->ext_mu);
    return a;
}

int lora_registry_max_rank(const wick_model *cm) {
    wick_model *m = mut(cm);
    if (!m->ext_mu_init) return 0;
    pthread_mutex_lock(&m->ext_mu);
    int r = 0;
    for (int i = 0; m->lora && i < m->lora->n; i++)
        if (m->lora->adapters[i]->r_max > r) r = m->lora->adapters[i]->r_max;
    pthread_mutex_unlock(&m->ext_mu);
    return r;
}

/* "dir/sub/" -> "sub", "dir/x.gguf" -> "x" */
static char *base_name(const char *dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && dir[b - 1] != '/') b--;
    if (n - b > 5 && !strncmp(dir + n - 5, ".gguf", 5)) n -= 5; /* "x.gguf" -> "x" */
    char *s = malloc(n - b + 1);
    if (s) {
        memcpy(s, dir + b, n - b);
        s[n - b] = 0;
    }
    return s;
}

wick_status wick_adapter_load(wick_model *m, const char *dir, const char *name) {
    if (!m || !dir) return err_set(WICK_ERR_INVALID_ARG, "wick_adapter_load: NULL model or dir");
    char *nm = name ? strdup(name) : base_name(dir);
    if (!nm) return err_set(WICK_ERR_NOMEM, "out of memory");
    if (!*nm) {
        free(nm);
        return err_set(WICK_ERR_INVALID_ARG, "wick_adapter_load: empty adapter name");
    }
    wick_adapter *probe = lora_registry_get(m, nm);
    if (probe) {
        lora_adapter_release(probe);
        wick_status st = err_set(WICK_ERR_INVALID_ARG, "an adapter named '%s' is already loaded "
                                                       "(unload it first or pick another name)",
                                 nm);
        free(nm);
        return st;
    }
    wick_adapter *a = NULL;
    wick_status st = lora_adapter_read(m, dir, &a);
    if (st == WICK_OK) {
        st = lora_registry_add(m, a, nm);
        if (st) lora_adapter_release(a);
    }
    free(nm);
    return st;
}

wick_status wick_adapter_unload(wick_model *m, const char *name) {
    if (!m || !name) return err_set(WICK_ERR_INVALID_ARG, "wick_adapter_unload: NULL argument");
    if (!m->ext_mu_init) return err_set(WICK_ERR_NOT_FOUND, "no adapter named '%s'", name);
    pthread_mutex_lock(&m->ext_mu);
    lora_registry *r = m->lora;
    int i = find_locked(r, name);
    wick_adapter *a = NULL;
    if (i >= 0) {
        a = r->adapters[i];
        memmove(r->adapters + i, r->adapters + i + 1,
                sizeof *r->adapters * (size_t)(r->n - i - 1));
        r->n--;
    }
    pthread_mutex_unlock(&m->ext_mu);
    if (!a) return err_set(WICK_ERR_NOT_FOUND, "no adapter named '%s' is loaded", name);
    lora_adapter_release(a);
    return WICK_OK;
}

int wick_adapters_list(const wick_model *cm, const char **names, int cap) {
    if (!cm || !cm->ext_mu_init) return 0;
    wick_model *m = mut(cm);
    pthread_mutex_lock(&m->ext_mu);
    int n = m->lora ? m->lora->n : 0;
    for (int i = 0; i < n && i < cap && names; i++) names[i] = m->lora->adapters[i]->name;
    pthread_mutex_unlock(&m->ext_mu);
    return n;
}

wick_status wick_adapter_save(const wick_model *m, const char *name, const char *out_dir) {
    if (!m || !name || !out_dir)
        return err_set(WICK_ERR_INVALID_ARG, "wick_adapter_save: NULL argument");
    wick_adapter *a = lora_registry_get(m, name);
    if (!a) return err_set(WICK_ERR_NOT_FOUND, "no adapter named '%s' is loaded", name);
    const wick_model *base = m->merge_base ? m->merge_base : m;
    wick_status st = lora_adapter_write(a, out_dir, base->path);
    lora_adapter_release(a);
    return st;
}
