/* adapter_read.c — loading a PEFT LoRA folder (adapter_config.json + adapter_model.safetensors)
 * and checking it against the base model before anything becomes visible.
 *
 * Config rules (as PEFT applies them): a module is targeted when target_modules is a string
 * and the module's full name ("model.layers.3.self_attn.q_proj") fully matches it as a regex,
 * or when it is a list and the name equals an entry or ends with "." + entry. rank_pattern /
 * alpha_pattern keys match a module when the name matches "(.*\.)?KEY$". scale = α/r, or
 * α/√r with use_rslora. fan_in_fan_out is accepted and ignored: every projection wick adapts is
 * an nn.Linear, for which PEFT itself resets it to false.
 *
 * Tensor checks, each failing with the key and both shapes named: the key names a module of
 * the model (layer index in range, one of the 7 projections), the module is targeted,
 * lora_A is (r, in) and lora_B is (out, r) with r from config/rank_pattern and in/out from the
 * base weight, both halves present, float dtype, all values finite.
 *
 * On a base loaded from a llama GGUF (q/k rows permuted, model->rope_interleaved) the rows of
 * q/k lora_B are permuted the same way while converting, so the adapter follows the base.
 * A path naming a regular file is read as a llama.cpp GGUF LoRA file (adapter_gguf.c).
 *
 * Not here: .bin (pickle) adapters, DoRA, modules_to_save, trainable biases. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "base/error.h"
#include "base/fileio.h"
#include "formats/safetensors.h"
#include "lora/lora.h"
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

/* Full regex match of `subject` against `pattern` (Python re.fullmatch semantics for the
 * common subset). Returns 1 match, 0 no match, -1 bad pattern (message set). */
static int regex_full(const char *pattern, const char *prefix, const char *subject,
                      const char *where, const char *field) {
    char *wrapped = malloc(strlen(pattern) + strlen(prefix) + 16);
    if (!wrapped) return err_set(WICK_ERR_NOMEM, "out of memory"), -1;
    sprintf(wrapped, "%s(?:%s)\\z", prefix, pattern);
    int errcode;
    PCRE2_SIZE erroff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)wrapped, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED,
                                   &errcode, &erroff, NULL);
    free(wrapped);
    if (!re) {
        char msg[128];
        pcre2_get_error_message(errcode, (PCRE2_UCHAR *)msg, sizeof msg);
        err_set(WICK_ERR_FORMAT, "%s: %s: bad regular expression '%s': %s", where, field,
                pattern, msg);
        return -1;
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = md ? pcre2_match(re, (PCRE2_SPTR)subject, strlen(subject), 0, 0, md, NULL) : -1;
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

static bool ends_with_module(const char *name, const char *entry) {
    size_t n = strlen(name), e = strlen(entry);
    if (n == e) return strcmp(name, entry) == 0;
    return n > e && name[n - e - 1] == '.' && strcmp(name + n - e, entry) == 0;
}

/* Is module `name` targeted? 1 yes, 0 no, -1 error. */
static int targeted(const cJSON *tm, const char *name, const char *where) {
    if (cJSON_IsString(tm)) return regex_full(tm->valuestring, "", name, where, "target_modules");
    const cJSON *e;
    cJSON_ArrayForEach(e, tm) if (ends_with_module(name, e->valuestring)) return 1;
    return 0;
}

/* Value of the first rank_pattern / alpha_pattern key matching `name`, else `dflt`. */
static int pattern_value(const cJSON *pat, const char *name, double dflt, double *out,
                         const char *where, const char *field) {
    *out = dflt;
    if (!cJSON_IsObject(pat)) return 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, pat) {
        if (!cJSON_IsNumber(e))
            return err_set(WICK_ERR_FORMAT, "%s: %s[\"%s\"] is not a number", where, field,
                           e->string), -1;
        int r = regex_full(e->string, "(?:.*\\.)?", name, where, field);
        if (r < 0) return -1;
        if (r) {
            *out = e->valuedouble;
            return 0;
        }
    }
    return 0;
}

static void shape_str(char *buf, size_t cap, const st_tensor *t) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Checks the config fields wick cannot honour; `where` is the config path. */
static wick_status check_unsupported(const cJSON *c, const char *where) {
    const cJSON *v;
    v = cJSON_GetObjectItemCaseSensitive(c, "peft_type");
    if (v && !(cJSON_IsString(v) && !strcmp(v->valuestring, "LORA")))
        return err_set(WICK_ERR_UNSUPPORTED, "%s: peft_type is %s, only \"LORA\" is supported",
                       where, cJSON_IsString(v) ? v->valuestring : "not a string");
    v = cJSON_GetObjectItemCaseSensitive(c, "use_dora");
    if (cJSON_IsTrue(v))
        return err_set(WICK_ERR_UNSUPPORTED, "%s: use_dora is true: DoRA adapters are not "
                                             "supported", where);
    v = cJSON_GetObjectItemCaseSensitive(c, "modules_to_save");
    if (v && !cJSON_IsNull(v) && !(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0))
        return err_set(WICK_ERR_UNSUPPORTED, "%s: modules_to_save is set: fully trained extra "
                                             "modules are not supported", where);
    v = cJSON_GetObjectItemCaseSensitive(c, "bias");
    if (v && !(cJSON_IsString(v) && !strcmp(v->valuestring, "none")))
        return err_set(WICK_ERR_UNSUPPORTED, "%s: bias is %s: only \"none\" is supported", where,
                       cJSON_IsString(v) ? v->valuestring : "not a string");
    v = cJSON_GetObjectItemCaseSensitive(c, "lora_bias");
    if (cJSON_IsTrue(v))
        return err_set(WICK_ERR_UNSUPPORTED, "%s: lora_bias is true: not supported", where);
    v = cJSON_GetObjectItemCaseSensitive(c, "trainable_token_indices");
    if (v && !cJSON_IsNull(v))
        return err_set(WICK_ERR_UNSUPPORTED, "%s: trainable_token_indices is set: not supported",
                       where);
    v = cJSON_GetObjectItemCaseSensitive(c, "target_parameters");
    if (v && !cJSON_IsNull(v) && !(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0))
        return err_set(WICK_ERR_UNSUPPORTED, "%s: target_parameters is set: not supported", where);
    v = cJSON_GetObjectItemCaseSensitive(c, "layer_replication");
    if (v && !cJSON_IsNull(v))
        return err_set(WICK_ERR_UNSUPPORTED, "%s: layer_replication is set: not supported", where);
    return WICK_OK;
}

/* Every list entry of target_modules must name a module wick adapts. */
static wick_status check_targets(const wick_model *m, const cJSON *tm, const char *where) {
    if (cJSON_IsString(tm)) return WICK_OK;
    if (!cJSON_IsArray(tm) || cJSON_GetArraySize(tm) == 0)
        return err_set(WICK_ERR_FORMAT, "%s: target_modules must be a non-empty list of names "
                                        "or a regex string", where);
    const cJSON *e;
    cJSON_ArrayForEach(e, tm) {
        if (!cJSON_IsString(e))
            return err_set(WICK_ERR_FORMAT, "%s: target_modules holds a non-string", where);
        bool found = false;
        char name[96];
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
                           "%s: target module '%s' is not a module wick can adapt (q_proj, "
                           "k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)",
                           where, e->valuestring);
    }
    return WICK_OK;
}

/* Parses "model.layers.N.<module>.lora_X.weight" (after KEY_PREFIX). */
static bool parse_key(const char *k, int *layer, int *proj, int *is_b) {
    int n = 0, l = -1;
    if (sscanf(k, "model.layers.%d.%n", &l, &n) != 1 || n == 0 || l < 0) return false;
    k += n;
    for (int p = 0; p < LORA_N_PROJ; p++) {
        size_t pl = strlen(lora_module_path[p]);
        if (strncmp(k, lora_module_path[p], pl) != 0) continue;
        if (!strcmp(k + pl, ".lora_A.weight")) *is_b = 0;
        else if (!strcmp(k + pl, ".lora_B.weight")) *is_b = 1;
        else return false;
        *layer = l;
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
    a->n_layer = n_layer;
    a->r_max = r_max;
    return a;
}

void lora_adapter_retain(wick_adapter *a) {
    atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
}

wick_status lora_adapter_upload(wick_adapter *a, const kernel_table *K) {
    if (!K || kernels_is_host(K) || a->dev_pairs) return WICK_OK;
    const size_t np = (size_t)a->n_layer * LORA_N_PROJ;
    size_t floats = 0;
    for (size_t i = 0; i < np; i++)
        if (a->pairs[i].A.data)
            floats += (size_t)(a->pairs[i].A.rows * a->pairs[i].A.cols +
                               a->pairs[i].B.rows * a->pairs[i].B.cols);
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

void lora_adapter_release(wick_adapter *a) {
    if (!a) return;
    if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) != 1) return;
    if (a->dev_data) a->dev_kern->buf_free(NULL, a->dev_data, a->dev_bytes);
    free(a->dev_pairs);
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
} found_pair;

wick_status lora_adapter_read(const wick_model *m, const char *dir, wick_adapter **out) {
    *out = NULL;
    const size_t dl = strlen(dir);
    if (file_exists(dir) || (dl > 5 && !strcmp(dir + dl - 5, ".gguf") && !dir_exists(dir)))
        return lora_adapter_read_gguf(m, dir, out);
    const int L = m->cfg.n_layer;
    char *cpath = path_join(dir, "adapter_config.json");
    char *wpath = path_join(dir, "adapter_model.safetensors");
    char *text = NULL;
    cJSON *cfg = NULL;
    st_set *st = NULL;
    found_pair *fp = NULL;
    wick_adapter *a = NULL;
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
    cfg = cJSON_Parse(text);
    if (!cJSON_IsObject(cfg)) {
        rc = err_set(WICK_ERR_FORMAT, "%s: not a JSON object", cpath);
        goto done;
    }
    if ((rc = check_unsupported(cfg, cpath))) goto done;
    const cJSON *jr = cJSON_GetObjectItemCaseSensitive(cfg, "r");
    const cJSON *jalpha = cJSON_GetObjectItemCaseSensitive(cfg, "lora_alpha");
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(cfg, "target_modules");
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(cfg, "rank_pattern");
    const cJSON *ap = cJSON_GetObjectItemCaseSensitive(cfg, "alpha_pattern");
    const bool rs = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "use_rslora"));
    if (!cJSON_IsNumber(jr) || jr->valuedouble < 1 || jr->valuedouble != (int)jr->valuedouble) {
        rc = err_set(WICK_ERR_FORMAT, "%s: r must be a positive integer", cpath);
        goto done;
    }
    if (jalpha && !cJSON_IsNumber(jalpha)) {
        rc = err_set(WICK_ERR_FORMAT, "%s: lora_alpha must be a number", cpath);
        goto done;
    }
    const double r0 = jr->valuedouble, alpha0 = jalpha ? jalpha->valuedouble : 8.0;
    if ((rc = check_targets(m, tm, cpath))) goto done;

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
    fp = calloc((size_t)L * LORA_N_PROJ, sizeof *fp);
    if (!fp) {
        rc = err_set(WICK_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* pass 1: every key maps to a targeted (layer, proj) */
    for (int i = 0; i < st_count(st); i++) {
        const st_tensor *t = st_at(st, i);
        int l, p, is_b;
        const char *k = t->name;
        if (strncmp(k, KEY_PREFIX, strlen(KEY_PREFIX)) != 0 ||
            !parse_key(k + strlen(KEY_PREFIX), &l, &p, &is_b)) {
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
        snprintf(mod, sizeof mod, "model.layers.%d.%s", l, lora_module_path[p]);
        int tg = targeted(tm, mod, cpath);
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
        found_pair *f = &fp[(size_t)l * LORA_N_PROJ + p];
        if (is_b) f->b = t;
        else f->a = t;
    }
    /* pass 2: shapes against config and base weights; count storage */
    size_t total = 0;
    int r_max = 0;
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
            double r;
            if (pattern_value(rp, mod, r0, &r, cpath, "rank_pattern") < 0) {
                rc = WICK_ERR_FORMAT;
                goto done;
            }
            const int64_t ri = (int64_t)r;
            const bool ok_a = f->a->ndim == 2 && f->a->shape[0] == ri && f->a->shape[1] == W->cols;
            const bool ok_b = f->b->ndim == 2 && f->b->shape[0] == W->rows && f->b->shape[1] == ri;
            if (!ok_a || !ok_b) {
                rc = err_set(WICK_ERR_SHAPE,
                             "%s: tensor %s has shape %s, expected [%lld, %lld] (lora_A is %s, "
                             "lora_B is %s; rank %lld from %s; base weight %s.weight is "
                             "[%lld, %lld])",
                             wpath, ok_a ? f->b->name : f->a->name, ok_a ? sb : sa,
                             (long long)(ok_a ? W->rows : ri), (long long)(ok_a ? ri : W->cols),
                             sa, sb, (long long)ri, r == r0 ? "r" : "rank_pattern", mod,
                             (long long)W->rows, (long long)W->cols);
                goto done;
            }
            const bool perm_b = m->rope_interleaved && (p == LORA_Q || p == LORA_K);
            total += (in_place(f->a) ? 0 : (size_t)f->a->numel) +
                     (in_place(f->b) && !perm_b ? 0 : (size_t)f->b->numel);
            if (ri > r_max) r_max = (int)ri;
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
                if (!in_place(t) || perm) {
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
            snprintf(mod, sizeof mod, "model.layers.%d.%s", l, lora_module_path[p]);
            double alpha;
            if (pattern_value(ap, mod, alpha0, &alpha, cpath, "alpha_pattern") < 0) {
                rc = WICK_ERR_FORMAT;
                goto done;
            }
            const double r = (double)pr->A.rows;
            pr->scale = (float)(rs ? alpha / sqrt(r) : alpha / r);
        }
    }
    a->config = cfg;
    cfg = NULL;
    a->st = st; /* the in-place tensors live in this mapping */
    st = NULL;
    *out = a;
    a = NULL;
done:
    if (a) {
        atomic_store(&a->refs, 1);
        lora_adapter_release(a);
    }
    free(fp);
    st_close(st);
    cJSON_Delete(cfg);
    free(text);
    free(cpath);
    free(wpath);
    return rc;
}
