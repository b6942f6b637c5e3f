/* adapter_gguf.c — LoRA adapters in llama.cpp's GGUF LoRA layout: reading one into a
 * wick_adapter (checked against the base model) and writing a loaded adapter as one.
 *
 * The layout (facts of the format): general.architecture names the base architecture
 * ("llama", "qwen2"), general.type = "adapter", adapter.type = "lora", adapter.lora.alpha
 * (f32, optional). Each adapted matrix "blk.N.<proj>.weight" has two tensors,
 * "blk.N.<proj>.weight.lora_a" with ne = [in, r] (row-major (r, in), PEFT's lora_A) and
 * ".lora_b" with ne = [r, out] (row-major (out, r), PEFT's lora_B). One alpha serves every
 * module: scale = alpha / r, or 1 when alpha is absent or 0 (as llama.cpp applies it).
 *
 * Row order: for `llama` files the converter permutes the rows of lora_b of attn_q / attn_k
 * exactly as it permutes the base q/k weights (within each head, row 2j+t holds HF row
 * t·hd/2 + j), so that RoPE may rotate adjacent pairs. An in-memory adapter always follows
 * its base model's layout: permuted when the base was loaded from a llama GGUF
 * (model->rope_interleaved), Hugging Face order otherwise. Reading un-permutes when needed;
 * writing permutes when needed. `qwen2` files are never permuted.
 *
 * Checks, each failing before the model changes, naming the file, the tensor and both shapes:
 * general.type / adapter.type, architecture against the base, tensor names (layer in range,
 * one of the 7 projections), 2-D shapes against the base weight, rank agreement of the halves,
 * both halves present, a rank of at least 1, all values finite.
 *
 * Not here: LoRA on token_embd / output (rejected with a message), aLoRA invocation tokens
 * (rejected), PEFT folders (adapter_read.c / adapter_write.c). The reader copies every
 * tensor to f32 (adapters are small) rather than keeping the GGUF mapping open. */
#include <cjson/cJSON.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json_num.h"
#include "formats/gguf.h"
#include "lora/lora.h"
#include "model/family.h"
#include "model/model.h"

/* GGUF names of the projections, in LORA_Q ... LORA_DOWN order. */
static const char *const gguf_proj[LORA_N_PROJ] = {"attn_q",   "attn_k", "attn_v", "attn_output",
                                                   "ffn_gate", "ffn_up", "ffn_down"};

int64_t lora_qk_row(int64_t row, int head_dim, bool to_gguf) {
    const int64_t hd = head_dim, half = hd / 2, h = row / hd, i = row % hd;
    /* GGUF row h·hd + 2j + t holds HF row h·hd + t·half + j */
    if (to_gguf) return h * hd + (i % 2) * half + i / 2;
    return h * hd + 2 * (i % half) + i / half;
}

static const wk_weight *base_weight(const wick_model *m, int l, int p) {
    const layer_weights *w = &m->layers[l];
    const wk_weight *ws[LORA_N_PROJ] = {&w->wq, &w->wk, &w->wv, &w->wo,
                                        &w->w_gate, &w->w_up, &w->w_down};
    return ws[p];
}

static const char *arch_name(const wick_model *m) {
    return family_get(m->cfg.arch)->gguf_arch;
}

/* "blk.N.<proj>.weight.lora_a|b" -> (layer, proj, is_b). The layer is plain decimal digits. */
static bool parse_name(const char *nm, int *layer, int *proj, int *is_b) {
    if (strncmp(nm, "blk.", 4) != 0) return false;
    const char *s = nm + 4;
    long l = 0;
    int nd = 0;
    for (; *s >= '0' && *s <= '9'; s++, nd++) {
        if (l > 1000000) return false;
        l = l * 10 + (*s - '0');
    }
    if (nd == 0 || *s != '.') return false;
    s++;
    for (int p = 0; p < LORA_N_PROJ; p++) {
        size_t pl = strlen(gguf_proj[p]);
        if (strncmp(s, gguf_proj[p], pl) != 0) continue;
        if (!strcmp(s + pl, ".weight.lora_a")) *is_b = 0;
        else if (!strcmp(s + pl, ".weight.lora_b")) *is_b = 1;
        else continue;
        *layer = (int)l;
        *proj = p;
        return true;
    }
    return false;
}

static bool ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

/* "[ne0, ne1]" or "[ne0, ne1, ne2, ne3]" as far as n_dims goes. */
static void ne_str(char *buf, size_t cap, const gguf_tensor *t) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->n_dims && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)t->ne[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Checks general.type, adapter.type, the architecture and unsupported extensions; *alpha is
 * 0 when the file has none. */
static wick_status check_header(const wick_model *m, const gguf_file *g, const char *path,
                                double *alpha) {
    wick_status st = WICK_OK;
    char *s = NULL;
    if (!gguf_get_str(g, "general.type", &s, &st)) {
        return st ? st : err_set(WICK_ERR_FORMAT, "%s: missing key general.type (a LoRA adapter "
                                 "has general.type = \"adapter\"; is this a model file?)", path);
    }
    if (strcmp(s, "adapter") != 0) {
        st = err_set(WICK_ERR_FORMAT, "%s: general.type is \"%s\", expected \"adapter\" (a model "
                     "file cannot be loaded as a LoRA adapter)", path, s);
        free(s);
        return st;
    }
    free(s);
    s = NULL;
    if (!gguf_get_str(g, "adapter.type", &s, &st))
        return st ? st : err_set(WICK_ERR_FORMAT, "%s: missing key adapter.type", path);
    if (strcmp(s, "lora") != 0) {
        st = err_set(WICK_ERR_UNSUPPORTED, "%s: adapter.type is \"%s\" (only \"lora\" is "
                     "supported)", path, s);
        free(s);
        return st;
    }
    free(s);
    s = NULL;
    if (!gguf_get_str(g, "general.architecture", &s, &st))
        return st ? st : err_set(WICK_ERR_FORMAT, "%s: missing key general.architecture", path);
    if (strcmp(s, arch_name(m)) != 0) {
        st = err_set(WICK_ERR_INVALID_ARG, "%s: the adapter is for architecture \"%s\" but the "
                     "base model %s is \"%s\"", path, s, m->path ? m->path : "(unnamed)",
                     arch_name(m));
        free(s);
        return st;
    }
    free(s);
    if (gguf_find_kv(g, "adapter.alora.invocation_tokens"))
        return err_set(WICK_ERR_UNSUPPORTED, "%s: adapter.alora.invocation_tokens is set: "
                       "activated LoRA (aLoRA) is not supported", path);
    *alpha = 0;
    /* |alpha| <= FLT_MAX keeps every scale alpha / r (r >= 1) inside float range: converting a
       larger double (an f64 key of 1e300) to float would be undefined */
    if (gguf_get_float(g, "adapter.lora.alpha", alpha, &st) && !(fabs(*alpha) <= FLT_MAX))
        return err_set(WICK_ERR_FORMAT, "%s: adapter.lora.alpha = %g is not a finite 32-bit float",
                       path, *alpha);
    return st;
}

/* Index of the first non-finite value of x[0..n), or -1. */
static int64_t first_non_finite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return -1;
}

/* A PEFT-style config describing the adapter, so wick_adapter_save can write it as a PEFT
 * folder: r = the largest rank, lora_alpha = alpha (or, with no alpha, the rank: scale 1),
 * rank_pattern / alpha_pattern for modules of another rank, target_modules = the projections
 * present. */
static cJSON *make_config(const wick_adapter *a, double alpha) {
    cJSON *c = cJSON_CreateObject(), *rp = cJSON_CreateObject(), *ap = cJSON_CreateObject();
    const char *names[LORA_N_PROJ];
    int nn = 0;
    bool used[LORA_N_PROJ] = {0};
    if (!c || !rp || !ap) goto fail;
    for (int l = 0; l < a->n_layer; l++)
        for (int p = 0; p < LORA_N_PROJ; p++) {
            const lora_pair *pr = lora_get(a, l, p);
            if (!pr->A.data) continue;
            used[p] = true;
            if (pr->A.rows == a->r_max) continue;
            char key[96];
            snprintf(key, sizeof key, "model.layers.%d.%s", l, lora_module_path[p]);
            if (!cJSON_AddNumberToObject(rp, key, (double)pr->A.rows)) goto fail;
            if (alpha == 0 && !cJSON_AddNumberToObject(ap, key, (double)pr->A.rows)) goto fail;
        }
    for (int p = 0; p < LORA_N_PROJ; p++)
        if (used[p]) names[nn++] = lora_proj_name[p];
    if (!cJSON_AddNumberToObject(c, "r", a->r_max ? a->r_max : 8) ||
        !cJSON_AddNumberToObject(c, "lora_alpha", alpha != 0 ? alpha : (a->r_max ? a->r_max : 8)))
        goto fail;
    if (nn) cJSON_AddItemToObject(c, "target_modules", cJSON_CreateStringArray(names, nn));
    cJSON_AddItemToObject(c, "rank_pattern", rp);
    cJSON_AddItemToObject(c, "alpha_pattern", ap);
    return c;
fail:
    cJSON_Delete(c);
    cJSON_Delete(rp);
    cJSON_Delete(ap);
    return NULL;
}

typedef struct gpair {
    const gguf_tensor *a, *b;
} gpair;

/* Checks an open GGUF LoRA file against the model and builds the adapter (every tensor is
 * copied to f32: the adapter never points into g). g stays the caller's. */
static wick_status read_gguf(const wick_model *m, const gguf_file *g, wick_adapter **out) {
    *out = NULL;
    const char *path = g->mf.path;
    const int L = m->cfg.n_layer;
    gpair *fp = NULL;
    wick_adapter *a = NULL;
    double alpha = 0;
    wick_status rc;
    if ((rc = check_header(m, g, path, &alpha))) goto done;
    fp = calloc((size_t)L * LORA_N_PROJ, sizeof *fp);
    if (!fp) {
        rc = err_set(WICK_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* pass 1: names, layers, dtypes, dimensionality */
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        int l, p, is_b;
        if (!parse_name(t->name, &l, &p, &is_b)) {
            const bool known = !strncmp(t->name, "token_embd.weight.lora_", 23) ||
                               !strncmp(t->name, "output.weight.lora_", 19);
            if (known && (ends_with(t->name, ".lora_a") || ends_with(t->name, ".lora_b")))
                rc = err_set(WICK_ERR_UNSUPPORTED, "%s: tensor %s: LoRA on this weight is not "
                             "supported (wick adapts blk.N.attn_q|attn_k|attn_v|attn_output|"
                             "ffn_gate|ffn_up|ffn_down.weight)", path, t->name);
            else
                rc = err_set(WICK_ERR_FORMAT, "%s: tensor %s is not a LoRA tensor of a weight "
                             "wick knows (expected "
                             "blk.N.<attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down>"
                             ".weight.lora_a|lora_b)", path, t->name);
            goto done;
        }
        if (l >= L) {
            rc = err_set(WICK_ERR_SHAPE, "%s: tensor %s: layer %d does not exist (the base model "
                         "has %d layers)", path, t->name, l, L);
            goto done;
        }
        char sh[96];
        ne_str(sh, sizeof sh, t);
        if (t->n_dims != 2 || t->ne[2] != 1 || t->ne[3] != 1) {
            rc = err_set(WICK_ERR_SHAPE, "%s: tensor %s has ne %s, expected 2 dimensions", path,
                         t->name, sh);
            goto done;
        }
        gpair *f = &fp[(size_t)l * LORA_N_PROJ + p];
        if (is_b) f->b = t;
        else f->a = t;
    }
    /* pass 2: shapes against the base weights and each other */
    size_t total = 0;
    int r_max = 0;
    for (int l = 0; l < L; l++)
        for (int p = 0; p < LORA_N_PROJ; p++) {
            const gpair *f = &fp[(size_t)l * LORA_N_PROJ + p];
            if (!f->a && !f->b) continue;
            const wk_weight *W = base_weight(m, l, p);
            char sa[96] = "", sb[96] = "";
            if (f->a) ne_str(sa, sizeof sa, f->a);
            if (f->b) ne_str(sb, sizeof sb, f->b);
            if (!f->a || !f->b) {
                rc = err_set(WICK_ERR_SHAPE, "%s: tensor %s (ne %s) has no partner "
                             "blk.%d.%s.weight.lora_%c", path, f->a ? f->a->name : f->b->name,
                             f->a ? sa : sb, l, gguf_proj[p], f->a ? 'b' : 'a');
                goto done;
            }
            const int64_t r = f->a->ne[1];
            const bool ok_a = f->a->ne[0] == W->cols && r >= 1 && r <= INT_MAX;
            const bool ok_b = f->b->ne[0] == r && f->b->ne[1] == W->rows;
            if (!ok_a || !ok_b) {
                const bool rank_only = ok_a && f->b->ne[1] == W->rows;
                rc = err_set(WICK_ERR_SHAPE,
                             "%s: tensor %s has ne %s, expected [%lld, %lld]%s (lora_a ne %s, "
                             "lora_b ne %s; base weight blk.%d.%s.weight is ne [%lld, %lld])",
                             path, ok_a ? f->b->name : f->a->name, ok_a ? sb : sa,
                             (long long)(ok_a ? r : W->cols),
                             (long long)(ok_a ? W->rows : (r >= 1 ? r : 1)),
                             rank_only ? ": the ranks of lora_a and lora_b differ" : "", sa, sb,
                             l, gguf_proj[p], (long long)W->cols, (long long)W->rows);
                goto done;
            }
            total += (size_t)(f->a->ne[0] * f->a->ne[1] + f->b->ne[0] * f->b->ne[1]);
            if (r > r_max) r_max = (int)r;
        }
    if (!(a = lora_adapter_new(m, L, total, r_max))) {
        rc = err_set(WICK_ERR_NOMEM, "%s: out of memory for %zu LoRA numbers", path, total);
        goto done;
    }
    /* llama files hold q/k lora_b rows in llama.cpp's order; the base may be in HF order */
    const bool unpermute = !strcmp(arch_name(m), "llama") && !m->rope_interleaved;
    /* pass 3: convert to f32 (un-permuting q/k lora_b where needed), check values */
    float *dst = a->data;
    for (int l = 0; l < L; l++)
        for (int p = 0; p < LORA_N_PROJ; p++) {
            const gpair *f = &fp[(size_t)l * LORA_N_PROJ + p];
            if (!f->a) continue;
            lora_pair *pr = &a->pairs[(size_t)l * LORA_N_PROJ + p];
            const gguf_tensor *ts[2] = {f->a, f->b};
            wk_weight *ws[2] = {&pr->A, &pr->B};
            for (int h = 0; h < 2; h++) {
                const gguf_tensor *t = ts[h];
                const wk_weight src = {.data = t->data, .dt = t->dt, .rows = t->ne[1],
                                       .cols = t->ne[0]};
                const bool perm = h == 1 && unpermute && (p == LORA_Q || p == LORA_K);
                for (int64_t row = 0; row < src.rows; row++)
                    kernels_row_to_f32(dst + row * src.cols, &src,
                                       perm ? lora_qk_row(row, m->cfg.head_dim, false) : row);
                const int64_t n = src.rows * src.cols, i = first_non_finite(dst, n);
                if (i >= 0) {
                    /* report the position in the file's row order */
                    int64_t row = i / src.cols;
                    if (perm) row = lora_qk_row(row, m->cfg.head_dim, false);
                    rc = err_set(WICK_ERR_FORMAT, "%s: tensor %s (ne [%lld, %lld]) holds a "
                                 "non-finite value (%g) at row %lld, column %lld", path, t->name,
                                 (long long)t->ne[0], (long long)t->ne[1], dst[i],
                                 (long long)row, (long long)(i % src.cols));
                    goto done;
                }
                *ws[h] = (wk_weight){.data = dst, .dt = DT_F32, .rows = src.rows,
                                     .cols = src.cols};
                dst += n;
            }
            /* F16/BF16 are written back as read; anything else (F32, quantized) as F32 */
            pr->file_dt = f->a->dt == f->b->dt && (f->a->dt == DT_F16 || f->a->dt == DT_BF16)
                              ? f->a->dt : DT_F32;
            pr->scale = alpha != 0 ? (float)(alpha / (double)pr->A.rows) : 1.0f;
        }
    if (!(a->config = make_config(a, alpha))) {
        rc = err_set(WICK_ERR_NOMEM, "out of memory");
        goto done;
    }
    *out = a;
    a = NULL;
done:
    if (a) lora_adapter_release(a);
    free(fp);
    return rc;
}

wick_status lora_adapter_read_gguf(const wick_model *m, const char *path, wick_adapter **out) {
    *out = NULL;
    gguf_file *g = NULL;
    wick_status rc = gguf_open(path, &g);
    if (!rc) rc = read_gguf(m, g, out);
    gguf_close(g);
    return rc;
}

wick_status lora_adapter_read_gguf_mem(const wick_model *m, const void *data, size_t len,
                                       wick_adapter **out) {
    *out = NULL;
    gguf_file *g = NULL;
    wick_status rc = gguf_open_mem(data, len, "LoRA GGUF (in memory)", &g);
    if (!rc) rc = read_gguf(m, g, out);
    gguf_close(g);
    return rc;
}

/* The single alpha to write: the config's lora_alpha when it reproduces every module's scale,
 * else the first module's scale·r. Modules whose scale·r differs (rsLoRA, alpha_pattern) get
 * the ratio folded into lora_b, so every module computes the same product as before. */
static double pick_alpha(const wick_adapter *a) {
    const cJSON *ja = a->config ? cJSON_GetObjectItemCaseSensitive(a->config, "lora_alpha") : NULL;
    double first = 0;
    float fa;   /* the config's alpha only when a float holds it, so the casts below are defined */
    bool cfg_ok = json_num_float(ja, -FLT_MAX, FLT_MAX, &fa) && ja->valuedouble != 0;
    for (int i = 0; i < a->n_layer * LORA_N_PROJ; i++) {
        const lora_pair *p = &a->pairs[i];
        if (!p->A.data) continue;
        const double am = (double)p->scale * (double)p->A.rows;
        if (first == 0) first = am;
        if (cfg_ok && (float)(ja->valuedouble / (double)p->A.rows) != p->scale) cfg_ok = false;
    }
    if (cfg_ok) return ja->valuedouble;
    return first != 0 ? (double)(float)first : 1.0;
}

wick_status lora_adapter_write_gguf(const wick_model *m, const wick_adapter *a, const char *path) {
    const int n_slots = a->n_layer * LORA_N_PROJ;
    int n = 0;
    for (int i = 0; i < n_slots; i++) n += a->pairs[i].A.data ? 2 : 0;
    gguf_write_tensor *t = calloc((size_t)(n ? n : 1), sizeof *t);
    char **names = calloc((size_t)(n ? n : 1), sizeof *names);
    void **bufs = calloc((size_t)(n ? n : 1), sizeof *bufs);
    wick_status st = WICK_OK;
    if (!t || !names || !bufs) {
        st = err_set(WICK_ERR_NOMEM, "out of memory");
        goto out;
    }
    const double alpha = pick_alpha(a);
    const bool llama = !strcmp(arch_name(m), "llama");
    const bool permute = llama && !m->rope_interleaved; /* the file wants llama.cpp's order */
    int k = 0;
    for (int i = 0; i < n_slots; i++) {
        const lora_pair *pr = &a->pairs[i];
        if (!pr->A.data) continue;
        const int l = i / LORA_N_PROJ, p = i % LORA_N_PROJ;
        double fold = (double)pr->scale * (double)pr->A.rows / alpha;
        if (fabs(fold - 1.0) <= 1e-6) fold = 1.0;
        const dtype dt = pr->file_dt == DT_F16 || pr->file_dt == DT_BF16 ? pr->file_dt : DT_F32;
        const wk_weight *ws[2] = {&pr->A, &pr->B};
        for (int h = 0; h < 2; h++) {
            const wk_weight *w = ws[h];
            char nm[96];
            snprintf(nm, sizeof nm, "blk.%d.%s.weight.lora_%c", l, gguf_proj[p], h ? 'b' : 'a');
            const bool perm = h == 1 && permute && (p == LORA_Q || p == LORA_K);
            const size_t es = dt == DT_F32 ? 4 : 2;
            const size_t numel = (size_t)(w->rows * w->cols);
            unsigned char *buf = malloc(es * (numel ? numel : 1));
            names[k] = strdup(nm);
            bufs[k] = buf;
            if (!buf || !names[k]) {
                st = err_set(WICK_ERR_NOMEM, "out of memory");
                goto out;
            }
            const float *src = w->data;
            for (int64_t r = 0; r < w->rows; r++) {
                const float *row = src + (perm ? lora_qk_row(r, m->cfg.head_dim, true) : r) * w->cols;
                for (int64_t c = 0; c < w->cols; c++) {
                    float v = row[c];
                    if (h == 1 && fold != 1.0) v = (float)((double)v * fold);
                    unsigned char *o = buf + es * (size_t)(r * w->cols + c);
                    if (dt == DT_F32) {
                        memcpy(o, &v, 4);
                    } else {
                        uint16_t x = dt == DT_F16 ? f32_to_f16(v) : f32_to_bf16(v);
                        memcpy(o, &x, 2);
                    }
                }
            }
            t[k] = (gguf_write_tensor){.name = names[k], .dt = dt, .n_dims = 2,
                                       .ne = {w->cols, w->rows, 1, 1}, .data = buf};
            k++;
        }
    }
    gguf_kv kv[5];
    int nk = 0;
    kv[nk].key = "general.architecture"; kv[nk].v = gguf_v_str(arch_name(m)); nk++;
    kv[nk].key = "general.type"; kv[nk].v = gguf_v_str("adapter"); nk++;
    kv[nk].key = "adapter.type"; kv[nk].v = gguf_v_str("lora"); nk++;
    kv[nk].key = "adapter.lora.alpha"; kv[nk].v = gguf_v_f32((float)alpha); nk++;
    if (a->name) { kv[nk].key = "general.name"; kv[nk].v = gguf_v_str(a->name); nk++; }
    st = gguf_write(path, kv, nk, t, n);
out:
    for (int i = 0; i < n && names; i++) free(names[i]);
    for (int i = 0; i < n && bufs; i++) free(bufs[i]);
    free(names);
    free(bufs);
    free(t);
    return st;
}

wick_status wick_adapter_save_gguf(const wick_model *m, const char *name, const char *path) {
    if (!m || !name || !path)
        return err_set(WICK_ERR_INVALID_ARG, "wick_adapter_save_gguf: NULL argument");
    wick_adapter *a = lora_registry_get(m, name);
    if (!a) return err_set(WICK_ERR_NOT_FOUND, "no adapter named '%s' is loaded", name);
    const wick_model *base = m->merge_base ? m->merge_base : m;
    wick_status st = lora_adapter_write_gguf(base, a, path);
    lora_adapter_release(a);
    return st;
}
