/* adapter_read.c — loading a PEFT LoRA folder (adapter_config.json + adapter_model.safetensors)
 * and checking it against the base model before anything becomes visible.
 *
 * adapter_config.json is parsed and checked by adapter_config.c (which modules are targeted,
 * their rank and scale, as PEFT applies them). fan_in_fan_out is accepted and ignored: every
 * projection wick adapts is an nn.Linear, for which PEFT itself resets it to false.
 *
 * Tensor checks, each failing with the key and both shapes named: the key names a module of
 * the model (layer index in range, one of the 7 projections), the module is targeted,
 * lora_A is (r, in) and lora_B is (out, r) with r from config/rank_pattern and in/out from the
 * base weight, both halves present, float dtype, all values finite.
 *
 * On a base loaded from a llama GGUF (q/k rows permuted, model->rope_interleaved) the rows of
 * q/k lora_B are permuted the same way while converting, so the adapter follows the base.
 * The base named by base_model_name_or_path, when it is a model folder that can be found (as
 * written, then beside the adapter folder, then beside its parent: PEFT writes the path the
 * training run was given), must have the model's architecture, hidden size and layer count:
 * a Qwen2 adapter would otherwise apply to a LLaMA base of the same shape without complaint.
 * A hub id or a path that no longer exists is not checked (the tensor checks still are).
 * A path naming a regular file is read as a llama.cpp GGUF LoRA file (adapter_gguf.c).
 * lora_adapter_read_mem runs the same checks on a config text and a safetensors image held
 * in memory (for the fuzz harnesses).
 *
 * Not here: .bin (pickle) adapters, DoRA, modules_to_save, trainable biases. */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "base/json_parse.h"
#include "formats/safetensors.h"
#include "lora/lora.h"
#include "model/family.h"
#include "model/model.h"

const char *const lora_module_path[LORA_N_PROJ] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
const char *const lora_proj_name[LORA_N_PROJ] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                 "gate_proj", "up_proj", "down_proj"};

#define KEY_PREFIX "base_model.model."

static const wk_weight *base_weight(const wick_model *m, int l, int p) {
    const layer_weights *w = &m->layers[l];
    const wk_weight *ws[LORA_N_PROJ] = {&w->wq, &w->wk, &w->wv, &w->wo,
                                        &w->w_gate, &w->w_up, &w->w_down};
    return ws[p];
}

/* Fused modules (family.h `fused`): their PEFT names, and the projections their B rows feed */
static const char *const k_fused[2] = {"self_attn.qkv_proj", "mlp.gate_up_proj"};

static bool ends_with_module(const char *name, const char *entry) {
    size_t n = strlen(name), e = strlen(entry);
    if (n == e) return strcmp(name, entry) == 0;
    return n > e && name[n - e - 1] == '.' && strcmp(name + n - e, entry) == 0;
}

static void shape_str(char *buf, size_t cap, const st_tensor *t) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Every list entry of target_modules must name a module wick adapts. */
static wick_status check_targets(const wick_model *m, const cJSON *tm, const char *where) {
    if (!tm) return WICK_OK;   /* a regex: matched per module */
    const cJSON *e;
    cJSON_ArrayForEach(e, tm) {
        bool found = false;
        char name[96];
        /* Phi-3's fused modules, which the reader splits into q/k/v and gate/up */
        if (family_get(m->cfg.arch)->fused)
            for (int f = 0; f < 2 && !found; f++) {
                snprintf(name, sizeof name, "model.layers.0.%s", k_fused[f]);
                found = ends_with_module(name, e->valuestring) ||
                        (strstr(e->valuestring, "layers.") && strstr(e->valuestring, k_fused[f]));
            }
        for (int p = 0; p < LORA_N_PROJ && !found; p++) {
            snprintf(name, sizeof name, "model.layers.0.%s", lora_module_path[p]);
            found = ends_with_module(name, e->valuestring);
            /* entries naming a specific layer ("model.layers.5.self_attn.q_proj") */
            for (int l = 1; l < m->cfg.n_layer && !found && strstr(e->valuestring, "layers."); l++) {
                snprintf(name, sizeof name, "model.layers.%d.%s", l, lora_module_path[p]);
                found = ends_with_module(name, e->valuestring);
            }
        }
        if (!found)
            return err_set(WICK_ERR_UNSUPPORTED,
                           "%s: target module '%.200s' is not a module wick can adapt (q_proj, "
                           "k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)",
                           where, e->valuestring);
    }
    return WICK_OK;
}

/* Parses "model.layers.N.<module>.lora_X.weight" (after KEY_PREFIX). N is plain decimal digits,
 * read without sscanf("%d"), whose behaviour on overflow is undefined. *proj: a LORA_* index,
 * or LORA_N_PROJ + f for fused module f (only when `fused`). */
static bool parse_key_any(const char *k, bool fused, int *layer, int *proj, int *is_b) {
    static const char pre[] = "model.layers.";
    if (strncmp(k, pre, sizeof pre - 1) != 0) return false;
    k += sizeof pre - 1;
    long l = 0;
    int nd = 0;
    for (; *k >= '0' && *k <= '9'; k++, nd++) {
        if (l > 1000000) return false;
        l = l * 10 + (*k - '0');
    }
    if (nd == 0 || *k != '.') return false;
    k++;
    for (int p = 0; p < LORA_N_PROJ + (fused ? 2 : 0); p++) {
        const char *mp = p < LORA_N_PROJ ? lora_module_path[p] : k_fused[p - LORA_N_PROJ];
        size_t pl = strlen(mp);
        if (strncmp(k, mp, pl) != 0) continue;
        if (!strcmp(k + pl, ".lora_A.weight")) *is_b = 0;
        else if (!strcmp(k + pl, ".lora_B.weight")) *is_b = 1;
        else return false;
        *layer = (int)l;
        *proj = p;
        return true;
    }
    return false;
}

uint64_t lora_next_uid(void) {
    static atomic_ullong next = 1;
    return atomic_fetch_add(&next, 1);
}

wick_adapter *lora_adapter_new(const wick_model *m, int n_layer, size_t n_floats, int r_max) {
    wick_adapter *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->pairs = calloc((size_t)n_layer * LORA_N_PROJ, sizeof *a->pairs);
    a->data = malloc(sizeof(float) * (n_floats ? n_floats : 1));
    if (!a->pairs || !a->data) {
        free(a->pairs);
        free(a->data);
        free(a);
        return NULL;
    }
    atomic_init(&a->refs, 1);
    a->uid = lora_next_uid();
    a->qk_gguf_hd = m->rope_interleaved ? m->cfg.head_dim : 0;
    a->fused = family_get(m->cfg.arch)->fused;
    a->n_layer = n_layer;
    a->r_max = r_max;
    return a;
}

void lora_adapter_retain(wick_adapter *a) {
    atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
}

/* Values in all of a's A and B matrices (the upload and the bf16 copies size their blocks). */
static size_t pairs_values(const wick_adapter *a) {
    size_t n = 0;
    for (size_t i = 0; i < (size_t)a->n_layer * LORA_N_PROJ; i++)
        if (a->pairs[i].A.data)
            n += (size_t)(a->pairs[i].A.rows * a->pairs[i].A.cols +
                          a->pairs[i].B.rows * a->pairs[i].B.cols);
    return n;
}

wick_status lora_adapter_upload(wick_adapter *a, const kernel_table *K) {
    if (!K || kernels_is_host(K) || a->dev_pairs) return WICK_OK;
    const size_t np = (size_t)a->n_layer * LORA_N_PROJ;
    const size_t floats = pairs_values(a);
    lora_pair *dp = malloc(sizeof *dp * (np ? np : 1));
    if (!dp) return err_set(WICK_ERR_NOMEM, "out of memory");
    const size_t bytes = sizeof(float) * (floats ? floats : 1);
    float *d = K->buf_alloc(NULL, bytes);
    if (!d) {
        free(dp);
        return err_set(WICK_ERR_NOMEM, "out of %s memory for the adapter's matrices (%zu bytes)",
                       K->name, bytes);
    }
    size_t off = 0;
    for (size_t i = 0; i < np; i++) {
        dp[i] = a->pairs[i];
        if (!a->pairs[i].A.data) continue;
        const wk_weight *w[2] = {&a->pairs[i].A, &a->pairs[i].B};
        wk_weight *o[2] = {&dp[i].A, &dp[i].B};
        for (int k = 0; k < 2; k++) {
            const size_t n = (size_t)(w[k]->rows * w[k]->cols);
            K->buf_copy(NULL, d + off, w[k]->data, sizeof(float) * n);
            o[k]->data = d + off;
            off += n;
        }
    }
    wick_status st = K->sync(NULL);
    if (st) {
        K->buf_free(NULL, d, bytes);
        free(dp);
        return st;
    }
    a->dev_kern = K;
    a->dev_data = d;
    a->dev_bytes = bytes;
    a->dev_pairs = dp;
    return WICK_OK;
}

/* The bf16 copies of every A and B of `a`, published in a->half_pairs; the state says how it
 * ended. */
static void compact_now(wick_adapter *a) {
    const size_t np = (size_t)a->n_layer * LORA_N_PROJ;
    const size_t n = pairs_values(a);
    lora_pair *hp = n ? malloc(sizeof *hp * np) : NULL;
    uint16_t *h = n ? malloc(sizeof *h * n) : NULL;
    if (!hp || !h) {
        free(hp), free(h);
        atomic_store_explicit(&a->half_state, LORA_HALF_FAILED, memory_order_release);
        return;
    }
    size_t off = 0;
    for (size_t i = 0; i < np; i++) {
        hp[i] = a->pairs[i];
        if (!a->pairs[i].A.data) continue;
        const wk_weight *w[2] = {&a->pairs[i].A, &a->pairs[i].B};
        wk_weight *o[2] = {&hp[i].A, &hp[i].B};
        for (int k = 0; k < 2; k++) {
            const size_t cnt = (size_t)(w[k]->rows * w[k]->cols);
            const float *src = w[k]->data;
            for (size_t j = 0; j < cnt; j++) h[off + j] = f32_to_bf16(src[j]);
            o[k]->data = h + off;
            o[k]->dt = DT_BF16;
            off += cnt;
        }
    }
    a->half_data = h; /* read only by the last release, after the refcount's acq_rel */
    atomic_store_explicit(&a->half_pairs, hp, memory_order_release);
    atomic_store_explicit(&a->half_state, LORA_HALF_DONE, memory_order_release);
}

static void *compact_main(void *arg) {
    wick_adapter *a = arg;
    compact_now(a);
    lora_adapter_release(a); /* the reference lora_adapter_compact took for this thread */
    return NULL;
}

void lora_adapter_compact(wick_adapter *a, const wick_model *m) {
    const char *env = getenv("WICK_LORA_BF16"); /* "0": keep f32 (a developer's A/B switch) */
    if (env && !strcmp(env, "0")) return;
    if (!m || !m->fast || !kernels_is_host(m->kern) || a->dev_pairs || !m->layers ||
        m->cfg.n_layer < 1 || m->layers[0].wq.dt == DT_F32)
        return;
    int none = LORA_HALF_NONE;
    if (!atomic_compare_exchange_strong(&a->half_state, &none, LORA_HALF_RUNNING)) return;
    lora_adapter_retain(a);
    pthread_attr_t at;
    pthread_t t;
    bool started = false;
    if (pthread_attr_init(&at) == 0) {
        if (pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED) == 0)
            started = pthread_create(&t, &at, compact_main, a) == 0;
        pthread_attr_destroy(&at);
    }
    if (!started) compact_main(a); /* no thread: here, once */
}

void lora_adapter_compact_wait(wick_adapter *a) {
    const struct timespec ts = {0, 200000};
    while (atomic_load_explicit(&a->half_state, memory_order_acquire) == LORA_HALF_RUNNING)
        nanosleep(&ts, NULL);
}

void lora_adapter_release(wick_adapter *a) {
    if (!a) return;
    if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) != 1) return;
    if (a->dev_data) a->dev_kern->buf_free(NULL, a->dev_data, a->dev_bytes);
    free(a->dev_pairs);
    free(atomic_load_explicit(&a->half_pairs, memory_order_acquire));
    free(a->half_data);
    free(a->name);
    free(a->pairs);
    free(a->data);
    st_close(a->st);
    cJSON_Delete(a->config);
    free(a);
}

/* F32 tensors aligned in the mapping are used in place (zero-copy); others are converted. */
static bool in_place(const st_tensor *t) {
    return t->dt == DT_F32 && ((uintptr_t)t->data % sizeof(float)) == 0;
}

/* Index of the first non-finite value of x[0..n), or -1. The scan is branch-free so the
 * compiler vectorises it; the position is looked up only on failure. */
static int64_t first_non_finite(const float *x, int64_t n) {
    const uint32_t *u = (const uint32_t *)x;
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad |= (u[i] & 0x7f800000u) == 0x7f800000u;
    if (!bad) return -1;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

typedef struct found_pair {
    const st_tensor *a, *b;
    const char *cfg_module;  /* fused: the module the config names (qkv_proj...), else NULL */
} found_pair;

/* A fused module's pair split by B rows into its projections' pairs (A shared; B row ranges
 * as tensors of their own in synth, which must hold 3 more entries). */
static wick_status split_fused(const wick_model *m, const found_pair *fu, int l, int f,
                               st_tensor *synth, int *n_synth, found_pair *fp, const char *wpath) {
    const model_config *c = &m->cfg;
    const int64_t qd = (int64_t)c->n_head * c->head_dim, kvd = (int64_t)c->n_kv_head * c->head_dim;
    const int64_t rows[2][3] = {{qd, kvd, kvd}, {c->n_ff, c->n_ff, 0}};
    const int proj[2][3] = {{LORA_Q, LORA_K, LORA_V}, {LORA_GATE, LORA_UP, -1}};
    const int64_t total = f ? 2 * (int64_t)c->n_ff : qd + 2 * kvd;
    if (!fu->a || !fu->b)
        return err_set(WICK_ERR_SHAPE, "%s: module model.layers.%d.%s has only its lora_%c", wpath, l,
                       k_fused[f], fu->a ? 'A' : 'B');
    if (fu->b->ndim != 2 || fu->b->shape[0] != total)
        return err_set(WICK_ERR_SHAPE, "%s: tensor %s: expected %lld rows (the fused module's outputs)",
                       wpath, fu->b->name, (long long)total);
    int64_t r0 = 0;
    for (int i = 0; i < 3 && proj[f][i] >= 0; i++) {
        found_pair *d = &fp[(size_t)l * LORA_N_PROJ + proj[f][i]];
        if (d->a || d->b)
            return err_set(WICK_ERR_FORMAT, "%s: layer %d has both %s and %s", wpath, l, k_fused[f],
                           lora_module_path[proj[f][i]]);
        st_tensor *t = &synth[(*n_synth)++];
        *t = *fu->b;
        const size_t rb = (size_t)fu->b->shape[1] * dtype_size(fu->b->dt);
        t->data = (const uint8_t *)fu->b->data + (size_t)r0 * rb;
        t->shape[0] = rows[f][i];
        t->numel = rows[f][i] * fu->b->shape[1];
        t->nbytes = (size_t)rows[f][i] * rb;
        *d = (found_pair){fu->a, t, k_fused[f]};
        r0 += rows[f][i];
    }
    return WICK_OK;
}

/* Checks `st` (the adapter's tensors, named by wpath) against `cfg` and the model and builds the
 * adapter. Takes over st: kept by the adapter when some F32 tensor is used in place, closed
 * otherwise (always on failure). copy_all: convert every tensor, never point into st (for sets
 * over a caller's buffer). cfg stays the caller's; its JSON moves to the adapter on success. */
static wick_status read_peft(const wick_model *m, lora_config *cfg, st_set *st, const char *wpath,
                             bool copy_all, wick_adapter **out) {
    const int L = m->cfg.n_layer;
    const char *cpath = lora_config_where(cfg);
    found_pair *fp = NULL, *fu = NULL;
    st_tensor *synth = NULL;
    int n_synth = 0;
    wick_adapter *a = NULL;
    wick_status rc;
    const bool fused = family_get(m->cfg.arch)->fused;
    if ((rc = check_targets(m, lora_config_target_list(cfg), cpath))) goto done;
    fp = calloc((size_t)L * LORA_N_PROJ, sizeof *fp);
    fu = calloc((size_t)L * 2, sizeof *fu);
    synth = calloc((size_t)L * 5 + 1, sizeof *synth);
    if (!fp || !fu || !synth) {
        rc = err_set(WICK_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* pass 1: every key maps to a targeted (layer, proj) */
    for (int i = 0; i < st_count(st); i++) {
        const st_tensor *t = st_at(st, i);
        int l, p, is_b;
        const char *k = t->name;
        if (strncmp(k, KEY_PREFIX, strlen(KEY_PREFIX)) != 0 ||
            !parse_key_any(k + strlen(KEY_PREFIX), fused, &l, &p, &is_b)) {
            if (strstr(k, "lora_magnitude_vector"))
                rc = err_set(WICK_ERR_UNSUPPORTED, "%s: tensor %s: DoRA magnitudes are not "
                                                   "supported", wpath, k);
            else
                rc = err_set(WICK_ERR_FORMAT,
                             "%s: tensor %s is not a LoRA weight of a module wick adapts "
                             "(expected " KEY_PREFIX "model.layers.N.<self_attn|mlp>.<proj>"
                             ".lora_A|lora_B.weight)", wpath, k);
            goto done;
        }
        if (l >= L) {
            rc = err_set(WICK_ERR_SHAPE, "%s: tensor %s: layer %d does not exist (the model has "
                                         "%d layers)", wpath, k, l, L);
            goto done;
        }
        char mod[96];
        snprintf(mod, sizeof mod, "model.layers.%d.%s", l,
                 p < LORA_N_PROJ ? lora_module_path[p] : k_fused[p - LORA_N_PROJ]);
        int tg = lora_config_targets(cfg, mod);
        if (tg < 0) {
            rc = WICK_ERR_FORMAT;
            goto done;
        }
        if (!tg) {
            rc = err_set(WICK_ERR_FORMAT, "%s: tensor %s: module %s is not in target_modules",
                         wpath, k, mod);
            goto done;
        }
        if (t->dt != DT_F32 && t->dt != DT_BF16 && t->dt != DT_F16) {
            rc = err_set(WICK_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s (supported: F32, "
                                               "BF16, F16)", wpath, k, dtype_name(t->dt));
            goto done;
        }
        found_pair *f = p < LORA_N_PROJ ? &fp[(size_t)l * LORA_N_PROJ + p] : &fu[(size_t)l * 2 + p - LORA_N_PROJ];
        if (is_b) f->b = t;
        else f->a = t;
    }
    for (int l = 0; l < L && fused; l++)
        for (int f = 0; f < 2; f++)
            if ((fu[l * 2 + f].a || fu[l * 2 + f].b) &&
                (rc = split_fused(m, &fu[l * 2 + f], l, f, synth, &n_synth, fp, wpath)))
                goto done;
    /* pass 2: shapes against config and base weights; count storage */
    size_t total = 0;
    int r_max = 0;
    bool any_in_place = false;
    for (int l = 0; l < L; l++) {
        for (int p = 0; p < LORA_N_PROJ; p++) {
            found_pair *f = &fp[(size_t)l * LORA_N_PROJ + p];
            if (!f->a && !f->b) continue;
            const wk_weight *W = base_weight(m, l, p);
            char mod[96], sa[64] = "", sb[64] = "";
            snprintf(mod, sizeof mod, "model.layers.%d.%s", l, lora_module_path[p]);
            if (f->a) shape_str(sa, sizeof sa, f->a);
            if (f->b) shape_str(sb, sizeof sb, f->b);
            if (!f->a || !f->b) {
                rc = err_set(WICK_ERR_SHAPE, "%s: module %s has %s %s but no " KEY_PREFIX
                             "%s.lora_%c.weight", wpath, mod, f->a ? f->a->name : f->b->name,
                             f->a ? sa : sb, mod, f->a ? 'B' : 'A');
                goto done;
            }
            if (!W->data) { /* a mixture-of-experts layer has a router and experts instead */
                rc = err_set(WICK_ERR_UNSUPPORTED, "%s: module %s: layer %d of this %s model is a "
                             "mixture of experts; adapters on its experts are not supported (attention "
                             "projections are)", wpath, mod, l, m->cfg.architecture);
                goto done;
            }
            int ri;
            bool from_pattern;
            char cmod[96];
            snprintf(cmod, sizeof cmod, "model.layers.%d.%s", l, f->cfg_module ? f->cfg_module : lora_module_path[p]);
            if ((rc = lora_config_module(cfg, cmod, &ri, &from_pattern))) goto done;
            const bool ok_a = f->a->ndim == 2 && f->a->shape[0] == ri && f->a->shape[1] == W->cols;
            const bool ok_b = f->b->ndim == 2 && f->b->shape[0] == W->rows && f->b->shape[1] == ri;
            if (!ok_a || !ok_b) {
                rc = err_set(WICK_ERR_SHAPE,
                             "%s: tensor %s has shape %s, expected [%lld, %lld] (lora_A is %s, "
                             "lora_B is %s; rank %d from %s; base weight %s.weight is "
                             "[%lld, %lld])",
                             wpath, ok_a ? f->b->name : f->a->name, ok_a ? sb : sa,
                             (long long)(ok_a ? W->rows : ri), (long long)(ok_a ? ri : W->cols),
                             sa, sb, ri, from_pattern ? "rank_pattern" : "r", mod,
                             (long long)W->rows, (long long)W->cols);
                goto done;
            }
            const bool perm_b = m->rope_interleaved && (p == LORA_Q || p == LORA_K);
            const bool keep_a = !copy_all && in_place(f->a);
            const bool keep_b = !copy_all && in_place(f->b) && !perm_b;
            total += (keep_a ? 0 : (size_t)f->a->numel) + (keep_b ? 0 : (size_t)f->b->numel);
            any_in_place |= keep_a || keep_b;
            if (ri > r_max) r_max = ri;
        }
    }
    if (!(a = lora_adapter_new(m, L, total, r_max))) {
        rc = err_set(WICK_ERR_NOMEM, "%s: out of memory for %zu LoRA numbers", wpath, total);
        goto done;
    }
    /* pass 3: convert to f32, check values, compute scales */
    float *dst = a->data;
    for (int l = 0; l < L; l++) {
        for (int p = 0; p < LORA_N_PROJ; p++) {
            found_pair *f = &fp[(size_t)l * LORA_N_PROJ + p];
            if (!f->a) continue;
            lora_pair *pr = &a->pairs[(size_t)l * LORA_N_PROJ + p];
            const st_tensor *ts[2] = {f->a, f->b};
            wk_weight *ws[2] = {&pr->A, &pr->B};
            for (int h = 0; h < 2; h++) {
                const st_tensor *t = ts[h];
                wk_weight src = {.data = t->data, .dt = t->dt, .rows = t->shape[0],
                                 .cols = t->shape[1]};
                float *vals = (float *)t->data;
                const bool perm = h == 1 && m->rope_interleaved && (p == LORA_Q || p == LORA_K);
                if (copy_all || !in_place(t) || perm) {
                    vals = dst;
                    dst += t->numel;
                    for (int64_t row = 0; row < src.rows; row++)
                        kernels_row_to_f32(vals + row * src.cols, &src,
                                           perm ? lora_qk_row(row, m->cfg.head_dim, true) : row);
                }
                int64_t i = first_non_finite(vals, t->numel);
                if (i >= 0) {
                    rc = err_set(WICK_ERR_FORMAT,
                                 "%s: tensor %s holds a non-finite value (%g) at [%lld, %lld]",
                                 wpath, t->name, vals[i], (long long)(i / src.cols),
                                 (long long)(i % src.cols));
                    goto done;
                }
                *ws[h] = (wk_weight){.data = vals, .dt = DT_F32, .rows = src.rows,
                                     .cols = src.cols};
            }
            if (f->a->dt != f->b->dt) {
                rc = err_set(WICK_ERR_FORMAT, "%s: %s is %s but %s is %s (PEFT writes one dtype)",
                             wpath, f->a->name, dtype_name(f->a->dt), f->b->name,
                             dtype_name(f->b->dt));
                goto done;
            }
            pr->file_dt = f->a->dt;
            char mod[96];
            snprintf(mod, sizeof mod, "model.layers.%d.%s", l, f->cfg_module ? f->cfg_module : lora_module_path[p]);
            if ((rc = lora_config_scale(cfg, mod, (int)pr->A.rows, &pr->scale))) goto done;
        }
    }
    a->config = lora_config_take_json(cfg);
    if (any_in_place) {
        a->st = st; /* the in-place tensors live in this mapping */
        st = NULL;
    }
    *out = a;
    a = NULL;
done:
    if (a) {
        atomic_store(&a->refs, 1);
        lora_adapter_release(a);
    }
    free(fp);
    free(fu);
    free(synth);
    st_close(st);
    return rc;
}

/* config.json of the adapter's base (see the file comment), or NULL; malloc'd path in *where. */
static cJSON *base_config(const char *dir, const char *name, char **where) {
    char *parent = path_dirname(dir);
    char *cands[3] = {strdup(name), path_join(dir, name), parent ? path_join(parent, name) : NULL};
    free(parent);
    cJSON *cfg = NULL;
    *where = NULL;
    for (int i = 0; i < 3 && !cfg; i++) {
        if (!cands[i] || (i && name[0] == '/') || !dir_exists(cands[i])) continue;
        char *p = path_join(cands[i], "config.json"), *text = NULL;
        size_t n = 0;
        if (p && file_read_all(p, &text, &n) == WICK_OK &&
            json_parse(text, n, p, &cfg) == WICK_OK && cJSON_IsObject(cfg)) {
            *where = p;
            p = NULL;
        } else {
            cJSON_Delete(cfg);
            cfg = NULL;
        }
        free(p);
        free(text);
    }
    for (int i = 0; i < 3; i++) free(cands[i]);
    err_clear();   /* an unreadable candidate is not this adapter's error */
    return cfg;
}

/* Refuses an adapter whose base (when it can be found) differs from the model in architecture,
 * hidden size or layer count, naming both. */
static wick_status check_base(const wick_model *m, const char *dir, const char *text, size_t len) {
    cJSON *a = NULL;
    if (json_parse(text, len, dir, &a) != WICK_OK) {
        err_clear();
        return WICK_OK;   /* lora_config_parse reported it already */
    }
    const cJSON *bn = cJSON_GetObjectItemCaseSensitive(a, "base_model_name_or_path");
    char *where = NULL;
    cJSON *b = cJSON_IsString(bn) && *bn->valuestring ? base_config(dir, bn->valuestring, &where)
                                                       : NULL;
    wick_status st = WICK_OK;
    if (b) {
        const cJSON *archs = cJSON_GetObjectItemCaseSensitive(b, "architectures");
        const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(b, "hidden_size");
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(b, "num_hidden_layers");
        const char *arch = cJSON_IsString(a0) ? a0->valuestring : NULL;
        const int hid = cJSON_IsNumber(h) ? h->valueint : 0, lay = cJSON_IsNumber(l) ? l->valueint : 0;
        if ((arch && strcmp(arch, m->cfg.architecture)) || (hid && hid != m->cfg.n_embd) ||
            (lay && lay != m->cfg.n_layer))
            st = err_set(WICK_ERR_INVALID_ARG,
                         "%s: the adapter's base \"%s\" (%s) is %s, hidden %d, %d layers, but "
                         "the model %s is %s, hidden %d, %d layers: an adapter only fits the "
                         "base it was trained on", dir, bn->valuestring, where,
                         arch ? arch : "(no architectures)", hid, lay, m->path ? m->path : "",
                         m->cfg.architecture, m->cfg.n_embd, m->cfg.n_layer);
    }
    free(where);
    cJSON_Delete(b);
    cJSON_Delete(a);
    return st;
}

wick_status lora_adapter_read(const wick_model *m, const char *dir, wick_adapter **out) {
    *out = NULL;
    const size_t dl = strlen(dir);
    if (file_exists(dir) || (dl > 5 && !strcmp(dir + dl - 5, ".gguf") && !dir_exists(dir)))
        return lora_adapter_read_gguf(m, dir, out);
    char *cpath = path_join(dir, "adapter_config.json");
    char *wpath = path_join(dir, "adapter_model.safetensors");
    char *text = NULL;
    lora_config *cfg = NULL;
    st_set *st = NULL;
    wick_status rc = WICK_OK;
    if (!cpath || !wpath) {
        rc = err_set(WICK_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!dir_exists(dir)) {
        rc = err_set(WICK_ERR_IO, "%s: not an adapter folder (expected a directory holding "
                                  "adapter_config.json and adapter_model.safetensors)", dir);
        goto done;
    }
    size_t len;
    if ((rc = file_read_all(cpath, &text, &len))) goto done;
    if ((rc = lora_config_parse(text, len, cpath, &cfg))) goto done;
    if ((rc = check_base(m, dir, text, len))) goto done;
    if (!file_exists(wpath)) {
        char *bin = path_join(dir, "adapter_model.bin");
        bool has_bin = bin && file_exists(bin);
        free(bin);
        rc = has_bin ? err_set(WICK_ERR_UNSUPPORTED, "%s: only adapter_model.safetensors is "
                                                     "read (adapter_model.bin is a pickle)", dir)
                     : err_set(WICK_ERR_IO, "%s: missing adapter_model.safetensors", dir);
        goto done;
    }
    if ((rc = st_open(wpath, &st))) goto done;
    rc = read_peft(m, cfg, st, wpath, false, out);
done:
    lora_config_free(cfg);
    free(text);
    free(cpath);
    free(wpath);
    return rc;
}

wick_status lora_adapter_read_mem(const wick_model *m, const char *config_json, size_t config_len,
                                  const void *st_data, size_t st_len, wick_adapter **out) {
    *out = NULL;
    if (!m || !config_json || (!st_data && st_len))
        return err_set(WICK_ERR_INVALID_ARG, "lora_adapter_read_mem: NULL argument");
    lora_config *cfg = NULL;
    st_set *st = NULL;
    wick_status rc = lora_config_parse(config_json, config_len, "adapter_config.json (in memory)",
                                       &cfg);
    if (!rc) rc = st_open_mem(st_data, st_len, "adapter_model.safetensors (in memory)", &st);
    if (!rc) rc = read_peft(m, cfg, st, "adapter_model.safetensors (in memory)", true, out);
    else st_close(st);
    lora_config_free(cfg);
    return rc;
}
