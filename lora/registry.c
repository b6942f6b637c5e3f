/* registry.c — the per-model adapter registry and per-session adapter selection.
 *
 * The registry is a small array of (name, adapter) guarded by the model's lora_mu; it is
 * touched only by load / unload / list / lookup, never by the forward pass. A session holds a
 * reference to its current adapter, so wick_session_set_adapter is: lock, linear name lookup,
 * atomic increment, unlock, pointer swap, release of the previous one — well under a
 * microsecond for a handful of adapters, and no allocation once the session's LoRA scratch is
 * large enough (it grows here, never in the per-token path).
 *
 * Not here: reading/writing PEFT files (adapter_read.c, adapter_write.c), the math
 * (model/decoder.c), merging (merge.c). */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "lora/lora.h"
#include "model/model.h"

/* The registry lives in a model that callers see as const (it is shared read-only by threads);
 * the lock and the list are its one mutable part. */
static wick_model *mut(const wick_model *m) { return (wick_model *)m; }

void lora_registry_init(wick_model *m) {
    m->lora_mu_init = pthread_mutex_init(&m->lora_mu, NULL) == 0;
}

void lora_registry_destroy(wick_model *m) {
    for (int i = 0; i < m->n_adapters; i++) lora_adapter_release(m->adapters[i]);
    free(m->adapters);
    m->adapters = NULL;
    m->n_adapters = m->cap_adapters = 0;
    if (m->lora_mu_init) pthread_mutex_destroy(&m->lora_mu);
    m->lora_mu_init = false;
}

static int find_locked(const wick_model *m, const char *name) {
    for (int i = 0; i < m->n_adapters; i++)
        if (!strcmp(m->adapters[i]->name, name)) return i;
    return -1;
}

wick_status lora_registry_add(wick_model *m, wick_adapter *a, const char *name) {
    if (!m->lora_mu_init) return err_set(WICK_ERR_INTERNAL, "adapter registry not initialised");
    char *nm = strdup(name);
    if (!nm) return err_set(WICK_ERR_NOMEM, "out of memory");
    pthread_mutex_lock(&m->lora_mu);
    wick_status st = WICK_OK;
    if (find_locked(m, name) >= 0) {
        st = err_set(WICK_ERR_INVALID_ARG, "an adapter named '%s' is already loaded (unload it "
                                           "first or pick another name)", name);
    } else if (m->n_adapters == m->cap_adapters) {
        int cap = m->cap_adapters ? 2 * m->cap_adapters : 8;
        wick_adapter **p = realloc(m->adapters, sizeof *p * (size_t)cap);
        if (!p) st = err_set(WICK_ERR_NOMEM, "out of memory");
        else {
            m->adapters = p;
            m->cap_adapters = cap;
        }
    }
    if (st == WICK_OK) {
        free(a->name);
        a->name = nm;
        nm = NULL;
        m->adapters[m->n_adapters++] = a;
    }
    pthread_mutex_unlock(&m->lora_mu);
    free(nm);
    return st;
}

wick_adapter *lora_registry_get(const wick_model *cm, const char *name) {
    wick_model *m = mut(cm);
    if (!m->lora_mu_init) return NULL;
    pthread_mutex_lock(&m->lora_mu);
    int i = find_locked(m, name);
    wick_adapter *a = i >= 0 ? m->adapters[i] : NULL;
    if (a) lora_adapter_retain(a);
    pthread_mutex_unlock(&m->lora_mu);
    return a;
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
    if (!m->lora_mu_init) return err_set(WICK_ERR_NOT_FOUND, "no adapter named '%s'", name);
    pthread_mutex_lock(&m->lora_mu);
    int i = find_locked(m, name);
    wick_adapter *a = NULL;
    if (i >= 0) {
        a = m->adapters[i];
        memmove(m->adapters + i, m->adapters + i + 1,
                sizeof *m->adapters * (size_t)(m->n_adapters - i - 1));
        m->n_adapters--;
    }
    pthread_mutex_unlock(&m->lora_mu);
    if (!a) return err_set(WICK_ERR_NOT_FOUND, "no adapter named '%s' is loaded", name);
    lora_adapter_release(a);
    return WICK_OK;
}

int wick_adapters_list(const wick_model *cm, const char **names, int cap) {
    if (!cm || !cm->lora_mu_init) return 0;
    wick_model *m = mut(cm);
    pthread_mutex_lock(&m->lora_mu);
    int n = m->n_adapters;
    for (int i = 0; i < n && i < cap && names; i++) names[i] = m->adapters[i]->name;
    pthread_mutex_unlock(&m->lora_mu);
    return n;
}

/* Grows a scratch buffer to `need` floats (contents need not survive). */
static bool grow(float **buf, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    float *p = malloc(sizeof(float) * need);
    if (!p) return false;
    free(*buf);
    *buf = p;
    *cap = need;
    return true;
}

wick_status wick_session_set_adapter(wick_session *s, const char *name, float scale) {
    if (!s) return err_set(WICK_ERR_INVALID_ARG, "wick_session_set_adapter: session is NULL");
    if (!name) {
        lora_session_clear(s);
        return WICK_OK;
    }
    if (!(scale == scale) || scale > 1e30f || scale < -1e30f)
        return err_set(WICK_ERR_INVALID_ARG, "wick_session_set_adapter: scale %g is not finite",
                       (double)scale);
    wick_adapter *a = lora_registry_get(s->model, name);
    if (!a) return err_set(WICK_ERR_NOT_FOUND, "no adapter named '%s' is loaded", name);
    const model_config *c = &s->model->cfg;
    size_t out_max = (size_t)c->n_embd;
    size_t qd = (size_t)c->n_head * c->head_dim, ff = (size_t)c->n_ff;
    if (qd > out_max) out_max = qd;
    if (ff > out_max) out_max = ff;
    if (!grow(&s->lora_t, &s->lora_t_cap, (size_t)s->n_batch * (size_t)a->r_max) ||
        !grow(&s->lora_u, &s->lora_u_cap, (size_t)s->n_batch * out_max)) {
        lora_adapter_release(a);
        return err_set(WICK_ERR_NOMEM, "out of memory for the LoRA scratch of adapter '%s'",
                       name);
    }
    wick_adapter *old = s->adapter;
    s->adapter = a;
    s->adapter_scale = scale;
    lora_adapter_release(old);
    return WICK_OK;
}

const char *wick_session_adapter(const wick_session *s) {
    return s && s->adapter ? s->adapter->name : NULL;
}

void lora_session_clear(wick_session *s) {
    wick_adapter *old = s->adapter;
    s->adapter = NULL;
    s->adapter_scale = 0;
    lora_adapter_release(old);
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
