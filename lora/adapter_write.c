/* adapter_write.c — writing an in-memory adapter as a PEFT folder, and making random
 * adapters (benchmarks, tests).
 *
 * adapter_model.safetensors: one lora_A / lora_B pair per adapted module under PEFT's key
 * names ("base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight"), in the dtype the
 * adapter was loaded with (f32 values widened from bf16/f16 narrow back exactly, so a
 * load -> save round trip is bit-exact), tensors sorted by name (a deterministic order; PEFT's
 * writer keeps its state_dict order, and readers do not depend on it), metadata
 * {"format": "pt"} as PEFT writes it.
 *
 * adapter_config.json: the config the adapter was read with, with every field PEFT requires
 * filled in where it was missing (peft_type LORA, task_type CAUSAL_LM, r, lora_alpha,
 * target_modules, base_model_name_or_path, bias, fan_in_fan_out, use_rslora, use_dora,
 * rank_pattern, alpha_pattern, modules_to_save, lora_dropout, inference_mode, ...).
 * fan_in_fan_out is written false: wick ignores it (see adapter_read.c), as PEFT does for
 * nn.Linear targets, and then saves false too. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "formats/safetensors.h"
#include "lora/lora.h"
#include "model/family.h"
#include "model/model.h"

static void ensure(cJSON *o, const char *key, cJSON *v) {
    if (cJSON_GetObjectItemCaseSensitive(o, key)) cJSON_Delete(v);
    else cJSON_AddItemToObject(o, key, v);
}

static void replace(cJSON *o, const char *key, cJSON *v) {
    if (cJSON_GetObjectItemCaseSensitive(o, key)) cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
    else cJSON_AddItemToObject(o, key, v);
}

/* Sorts an object's members by key (PEFT writes json.dumps(sort_keys=True)): detach all,
 * sort, re-append (cJSON_AddItemToArray keeps each member's key). */
static int cmp_keys(const void *x, const void *y) {
    return strcmp((*(cJSON *const *)x)->string, (*(cJSON *const *)y)->string);
}

static bool sort_keys(cJSON *o) {
    int n = cJSON_GetArraySize(o);
    cJSON **items = malloc(sizeof *items * (size_t)(n ? n : 1));
    if (!items) return false;
    for (int i = 0; i < n; i++) items[i] = cJSON_DetachItemFromArray(o, 0);
    qsort(items, (size_t)n, sizeof *items, cmp_keys);
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(o, items[i]);
    free(items);
    return true;
}

static int cmp_names(const void *x, const void *y) {
    return strcmp(((const st_write_tensor *)x)->name, ((const st_write_tensor *)y)->name);
}

wick_status lora_adapter_write(const wick_adapter *a, const char *out_dir, const char *base_name) {
    /* built beside out_dir and swapped in whole (base/fileio.h dir_txn) */
    dir_txn t;
    wick_status st = dir_txn_begin(out_dir, &t);
    if (st) return st;
    st = lora_adapter_write_files(a, t.stage, base_name);
    if (st) {
        dir_txn_abort(&t);
        return st;
    }
    return dir_txn_commit(&t);
}

wick_status lora_adapter_write_files(const wick_adapter *a, const char *out_dir,
                                     const char *base_name) {
    wick_status st = WICK_OK;
    const int n_slots = a->n_layer * LORA_N_PROJ;
    int n = 0;
    for (int i = 0; i < n_slots; i++)
        n += a->pairs[i].A.data && lora_group(a->fused, i % LORA_N_PROJ, NULL, NULL) ? 2 : 0;
    st_write_tensor *t = calloc((size_t)(n ? n : 1), sizeof *t);
    char **names = calloc((size_t)(n ? n : 1), sizeof *names);
    void **bufs = calloc((size_t)(n ? n : 1), sizeof *bufs);
    cJSON *cfg = NULL;
    char *json = NULL, *cpath = NULL, *wpath = NULL;
    if (!t || !names || !bufs) {
        st = err_set(WICK_ERR_NOMEM, "out of memory");
        goto out;
    }
    int k = 0;
    for (int i = 0; i < n_slots && !st; i++) {
        const lora_pair *p = &a->pairs[i];
        const int l = i / LORA_N_PROJ, proj = i % LORA_N_PROJ;
        const char *path = NULL;
        const int g = lora_group(a->fused, proj, &path, NULL);
        if (!g) continue;
        /* a fused module (Phi-3's qkv_proj, gate_up_proj): its members' equal A once, their B
           rows stacked in member order */
        float *stack = NULL;
        wk_weight Bw = p->B;
        int m = 0;
        if (g > 1 && !lora_module_one_a(p, g, &m)) {
            st = err_set(WICK_ERR_UNSUPPORTED, "adapter: layer %d: %s is adapted as separate "
                         "projections (%s vs %s), which PEFT cannot store in the fused "
                         "module", l, path, lora_proj_name[proj], lora_proj_name[proj + m]);
            break;
        }
        if (!st && g > 1 && p->A.data && a->qk_gguf_hd > 0) { /* no fused family is permuted */
            st = err_set(WICK_ERR_UNSUPPORTED, "adapter: layer %d: %s with q/k rows in GGUF "
                         "order cannot be written as PEFT's fused module", l, path);
            break;
        }
        if (st || !p->A.data) continue;
        if (g > 1) {
            int64_t rows = 0;
            for (int m = 0; m < g; m++) rows += a->pairs[i + m].B.rows;
            stack = malloc(sizeof(float) * (size_t)(rows * p->B.cols));
            if (!stack) {
                st = err_set(WICK_ERR_NOMEM, "out of memory");
                break;
            }
            size_t at = 0;
            for (int m = 0; m < g; m++) {
                const wk_weight *b = &a->pairs[i + m].B;
                memcpy(stack + at, b->data, sizeof(float) * (size_t)(b->rows * b->cols));
                at += (size_t)(b->rows * b->cols);
            }
            Bw.rows = rows;
            Bw.data = stack;
        }
        const wk_weight *ws[2] = {&p->A, &Bw};
        for (int h = 0; h < 2; h++) {
            char nm[160];
            snprintf(nm, sizeof nm, "base_model.model.model.layers.%d.%s.lora_%c.weight", l, path,
                     h ? 'B' : 'A');
            names[k] = strdup(nm);
            const size_t numel = (size_t)(ws[h]->rows * ws[h]->cols);
            const float *src = ws[h]->data;
            float *perm = NULL;
            if (h == 1 && a->qk_gguf_hd > 0 && (proj == LORA_Q || proj == LORA_K)) {
                /* PEFT files are in Hugging Face row order: undo llama.cpp's q/k order */
                perm = malloc(sizeof(float) * (numel ? numel : 1));
                if (perm)
                    for (int64_t r = 0; r < ws[h]->rows; r++)
                        memcpy(perm + r * ws[h]->cols,
                               src + lora_qk_row(r, a->qk_gguf_hd, false) * ws[h]->cols,
                               sizeof(float) * (size_t)ws[h]->cols);
                src = perm;
            }
            const void *data = src;
            if (src && p->file_dt != DT_F32) {
                uint16_t *b = malloc(2 * (numel ? numel : 1));
                if (b)
                    for (size_t j = 0; j < numel; j++)
                        b[j] = p->file_dt == DT_BF16 ? f32_to_bf16(src[j]) : f32_to_f16(src[j]);
                free(perm);
                bufs[k] = b;
                data = b;
            } else if (h == 1 && stack) {
                bufs[k] = stack; /* written as is; freed with the others */
                stack = NULL;
            } else {
                bufs[k] = perm;
            }
            if (!names[k] || !data) {
                st = err_set(WICK_ERR_NOMEM, "out of memory");
                break;
            }
            t[k] = (st_write_tensor){.name = names[k], .dt = p->file_dt, .ndim = 2,
                                     .shape = {ws[h]->rows, ws[h]->cols}, .data = data};
            k++;
        }
        free(stack);
    }
    if (st) goto out;
    qsort(t, (size_t)n, sizeof *t, cmp_names);

    /* config: what was read, completed */
    cfg = a->config ? cJSON_Duplicate(a->config, 1) : cJSON_CreateObject();
    if (!cfg) {
        st = err_set(WICK_ERR_NOMEM, "out of memory");
        goto out;
    }
    ensure(cfg, "alpha_pattern", cJSON_CreateObject());
    ensure(cfg, "auto_mapping", cJSON_CreateNull());
    ensure(cfg, "base_model_name_or_path",
           base_name ? cJSON_CreateString(base_name) : cJSON_CreateNull());
    replace(cfg, "bias", cJSON_CreateString("none"));
    replace(cfg, "fan_in_fan_out", cJSON_CreateFalse());
    replace(cfg, "inference_mode", cJSON_CreateTrue());
    ensure(cfg, "init_lora_weights", cJSON_CreateTrue());
    ensure(cfg, "layer_replication", cJSON_CreateNull());
    ensure(cfg, "layers_pattern", cJSON_CreateNull());
    ensure(cfg, "layers_to_transform", cJSON_CreateNull());
    ensure(cfg, "loftq_config", cJSON_CreateObject());
    ensure(cfg, "lora_alpha", cJSON_CreateNumber(8));
    ensure(cfg, "lora_bias", cJSON_CreateFalse());
    ensure(cfg, "lora_dropout", cJSON_CreateNumber(0.0));
    ensure(cfg, "megatron_config", cJSON_CreateNull());
    ensure(cfg, "megatron_core", cJSON_CreateString("megatron.core"));
    replace(cfg, "modules_to_save", cJSON_CreateNull());
    replace(cfg, "peft_type", cJSON_CreateString("LORA"));
    ensure(cfg, "r", cJSON_CreateNumber(a->r_max ? a->r_max : 8));
    ensure(cfg, "rank_pattern", cJSON_CreateObject());
    ensure(cfg, "revision", cJSON_CreateNull());
    if (!cJSON_GetObjectItemCaseSensitive(cfg, "target_modules")) {
        /* modules present in the adapter, sorted like the fixtures (PEFT writes a set) */
        const char *sorted[LORA_N_PROJ];
        int ns = 0;
        for (int p = 0; p < LORA_N_PROJ; p++) {
            bool used = false;
            const char *nm = NULL;
            if (!lora_group(a->fused, p, NULL, &nm)) continue;
            for (int l = 0; l < a->n_layer; l++) used |= lora_get(a, l, p)->A.data != NULL;
            if (used) sorted[ns++] = nm;
        }
        for (int i = 1; i < ns; i++)
            for (int j = i; j > 0 && strcmp(sorted[j - 1], sorted[j]) > 0; j--) {
                const char *x = sorted[j];
                sorted[j] = sorted[j - 1];
                sorted[j - 1] = x;
            }
        cJSON_AddItemToObject(cfg, "target_modules", cJSON_CreateStringArray(sorted, ns));
    }
    ensure(cfg, "task_type", cJSON_CreateString("CAUSAL_LM"));
    replace(cfg, "use_dora", cJSON_CreateFalse());
    ensure(cfg, "use_rslora", cJSON_CreateFalse());
    json = sort_keys(cfg) ? cJSON_Print(cfg) : NULL;
    cpath = path_join(out_dir, "adapter_config.json");
    wpath = path_join(out_dir, "adapter_model.safetensors");
    if (!json || !cpath || !wpath) {
        st = err_set(WICK_ERR_NOMEM, "out of memory");
        goto out;
    }
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    if ((st = st_write(wpath, t, n, mk, mv, 1))) goto out;
    st = file_write_atomic(cpath, json, strlen(json));
out:
    for (int i = 0; i < n && names; i++) free(names[i]);
    for (int i = 0; i < n && bufs; i++) free(bufs[i]);
    free(names);
    free(bufs);
    free(t);
    cJSON_Delete(cfg);
    free(json);
    free(cpath);
    free(wpath);
    return st;
}

/* splitmix64 -> uniform float in [-1, 1) */
static float rnd(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

wick_status lora_adapter_random(const wick_model *m, int r, float alpha, unsigned mask,
                                uint64_t seed, wick_adapter **out) {
    *out = NULL;
    if (r < 1 || !(mask & ((1u << LORA_N_PROJ) - 1)))
        return err_set(WICK_ERR_INVALID_ARG, "lora_adapter_random: r must be >= 1 and at least "
                                             "one projection chosen");
    const int L = m->cfg.n_layer;
    /* a fused base (Phi-3): whole modules only, one A each (lora_group) */
    const bool fused = family_get(m->cfg.arch)->fused;
    for (int p = 0; p < LORA_N_PROJ; p++) {
        const char *nm = NULL;
        const int g = lora_group(fused, p, NULL, &nm);
        const unsigned want = ((1u << g) - 1) << p;
        if (g > 1 && (mask & want) && (mask & want) != want)
            return err_set(WICK_ERR_INVALID_ARG, "%s fuses %s: adapt the whole module (target %s), "
                           "not some of its projections", m->cfg.architecture, nm, nm);
    }
    for (int l = 0; l < L && (mask & (7u << LORA_GATE)); l++)
        if (m->layers[l].exp_gate)
            return err_set(WICK_ERR_INVALID_ARG, "%s: layer %d's MLP is a mixture of experts; "
                           "adapters on experts are not supported (target q, k, v, o)",
                           m->cfg.architecture, l);
    size_t total = 0;
    for (int l = 0; l < L; l++)
        for (int p = 0; p < LORA_N_PROJ; p++)
            if (mask & (1u << p)) {
                const layer_weights *w = &m->layers[l];
                const wk_weight *ws[] = {&w->wq, &w->wk, &w->wv, &w->wo,
                                         &w->w_gate, &w->w_up, &w->w_down};
                const bool own_a = lora_group(fused, p, NULL, NULL) > 0;
                total += (size_t)r * (size_t)(ws[p]->rows + (own_a ? ws[p]->cols : 0));
            }
    wick_adapter *a = lora_adapter_new(m, L, total, r);
    cJSON *cfg = cJSON_CreateObject();
    if (!a || !cfg) {
        lora_adapter_release(a);
        cJSON_Delete(cfg);
        return err_set(WICK_ERR_NOMEM, "out of memory for a random adapter");
    }
    float *dst = a->data;
    for (int l = 0; l < L; l++) {
        const layer_weights *w = &m->layers[l];
        const wk_weight *ws[] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->w_gate, &w->w_up, &w->w_down};
        for (int p = 0; p < LORA_N_PROJ; p++) {
            if (!(mask & (1u << p))) continue;
            lora_pair *pr = &a->pairs[(size_t)l * LORA_N_PROJ + p];
            const int64_t in = ws[p]->cols, o = ws[p]->rows;
            const float ba = 1.0f / sqrtf((float)in);
            if (lora_group(fused, p, NULL, NULL)) {
                pr->A = (wk_weight){.data = dst, .dt = DT_F32, .rows = r, .cols = in};
                for (int64_t i = 0; i < r * in; i++) dst[i] = ba * rnd(&seed);
                dst += r * in;
            } else { /* a later member of a fused module: the module's A (B rows follow) */
                pr->A = pr[-1].A;
            }
            pr->B = (wk_weight){.data = dst, .dt = DT_F32, .rows = o, .cols = r};
            for (int64_t i = 0; i < o * r; i++) dst[i] = 0.02f * rnd(&seed);
            dst += o * r;
            pr->scale = alpha / (float)r;
            pr->file_dt = DT_F32;
        }
    }
    cJSON_AddNumberToObject(cfg, "r", r);
    cJSON_AddNumberToObject(cfg, "lora_alpha", alpha);
    a->config = cfg;
    *out = a;
    return WICK_OK;
}
