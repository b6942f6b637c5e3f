/* encoder.c — loading a BERT, XLM-RoBERTa or MPNet encoder folder: config.json fields,
 * memory-mapped weights under their Hugging Face names (with or without the "bert." /
 * "roberta." / "mpnet." prefix that *ForMaskedLM / *ForXxx checkpoints carry), shape and
 * dtype checks naming each tensor, and MPNet's table of relative position buckets.
 * Matrices stay zero-copy in the mapping; LayerNorm weights and biases and MPNet's relative
 * bias become f32 copies.
 * Not here: the forward pass (encoder_forward.c), tokenizer and pooling (embed/). */
#include "model/encoder.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json_parse.h"
#include "base/fileio.h"
#include "base/json_num.h"

/* ---- config ---------------------------------------------------------------------------- */

static wick_status cfg_int(const cJSON *o, const char *key, const char *where, bool required,
                           int def, int lo, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return err_set(WICK_ERR_FORMAT, "%s: missing field \"%s\"", where, key);
        *out = def;
        return WICK_OK;
    }
    return json_get_int32(v, lo, 1000000000, where, key, out);
}

static const char *cfg_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

wick_status encoder_config_parse(const char *json, const char *where, encoder_config *c) {
    memset(c, 0, sizeof *c);
    cJSON *root = NULL;
    wick_status st = json_parse(json, strlen(json), where, &root);
    if (st) return st;
    if (!cJSON_IsObject(root)) {
        st = err_set(WICK_ERR_FORMAT, "%s: expected a JSON object", where);
        goto done;
    }
    /* BERT, XLM-R and MPNet share the post-LN layer; they differ in position ids, token
       types and MPNet's relative bias (see encoder.h). Anything else (RoBERTa is XLM-R's
       layout but has no golden here, DeBERTa, rotary / ALiBi encoders) would load under the
       same tensor names or fail confusingly, so it is refused by name. */
    const char *mt = cfg_str(root, "model_type");
    if (!mt || strcmp(mt, "bert") == 0) c->arch = ENC_BERT;
    else if (strcmp(mt, "xlm-roberta") == 0) c->arch = ENC_XLMR;
    else if (strcmp(mt, "mpnet") == 0) c->arch = ENC_MPNET;
    else {
        st = err_set(WICK_ERR_UNSUPPORTED,
                     "%s: model_type \"%s\" is not supported (wick's encoder runs \"bert\", "
                     "\"xlm-roberta\" and \"mpnet\")", where, mt);
        goto done;
    }
    static const char *const default_arch[] = {"BertModel", "XLMRobertaModel", "MPNetModel"};
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *a0 = cJSON_IsArray(arch) ? cJSON_GetArrayItem(arch, 0) : NULL;
    snprintf(c->architecture, sizeof c->architecture, "%s",
             cJSON_IsString(a0) ? a0->valuestring : default_arch[c->arch]);
    if (!mt && !strstr(c->architecture, "Bert")) {
        st = err_set(WICK_ERR_UNSUPPORTED, "%s: architecture \"%s\" is not a BERT model", where,
                     c->architecture);
        goto done;
    }
    const char *act = cfg_str(root, "hidden_act");
    if (act && strcmp(act, "gelu") != 0) {
        st = err_set(WICK_ERR_UNSUPPORTED,
                     "%s: field \"hidden_act\" is \"%s\" (supported: \"gelu\", exact erf)", where,
                     act);
        goto done;
    }
    const char *pet = cfg_str(root, "position_embedding_type");
    if (pet && strcmp(pet, "absolute") != 0) {
        st = err_set(WICK_ERR_UNSUPPORTED,
                     "%s: field \"position_embedding_type\" is \"%s\" (supported: \"absolute\")",
                     where, pet);
        goto done;
    }
    if ((st = cfg_int(root, "vocab_size", where, true, 0, 1, &c->n_vocab)) ||
        (st = cfg_int(root, "hidden_size", where, true, 0, 1, &c->n_embd)) ||
        (st = cfg_int(root, "num_hidden_layers", where, true, 0, 1, &c->n_layer)) ||
        (st = cfg_int(root, "num_attention_heads", where, true, 0, 1, &c->n_head)) ||
        (st = cfg_int(root, "intermediate_size", where, true, 0, 1, &c->n_ff)) ||
        (st = cfg_int(root, "max_position_embeddings", where, false, 512, 1, &c->n_pos)) ||
        (st = cfg_int(root, "type_vocab_size", where, false, 2, 1, &c->n_types)) ||
        (st = cfg_int(root, "pad_token_id", where, false, -1, 0, &c->pad_id)))
        goto done;
    c->pos_pad = -1;
    c->max_tokens = c->n_pos;
    if (c->arch == ENC_XLMR) {
        /* positions start at padding_idx + 1 = pad_token_id + 1: without it the offset is
           unknown */
        if (c->pad_id < 0) {
            st = err_set(WICK_ERR_FORMAT, "%s: missing field \"pad_token_id\" (XLM-R positions "
                         "start after it)", where);
            goto done;
        }
        c->pos_pad = c->pad_id;
    } else if (c->arch == ENC_MPNET) {
        c->pos_pad = 1;  /* HF's MPNetEmbeddings fixes padding_idx at 1 */
        c->n_types = 0;
        if ((st = cfg_int(root, "relative_attention_num_buckets", where, false, 32, 1,
                          &c->n_buckets)))
            goto done;
        if (c->n_buckets < ENCODER_MPNET_BUCKETS) {
            st = err_set(WICK_ERR_UNSUPPORTED, "%s: field \"relative_attention_num_buckets\" is "
                         "%d; MPNet looks up %d buckets", where, c->n_buckets,
                         ENCODER_MPNET_BUCKETS);
            goto done;
        }
    }
    if (c->pos_pad >= 0) {
        c->max_tokens = c->n_pos - c->pos_pad - 1;
        if (c->max_tokens < 2) {
            st = err_set(WICK_ERR_FORMAT, "%s: field \"max_position_embeddings\" %d leaves no "
                         "room for positions after padding index %d", where, c->n_pos,
                         (int)c->pos_pad);
            goto done;
        }
    }
    if (c->n_embd % c->n_head != 0) {
        st = err_set(WICK_ERR_FORMAT,
                     "%s: hidden_size %d is not a multiple of num_attention_heads %d", where,
                     c->n_embd, c->n_head);
        goto done;
    }
    c->head_dim = c->n_embd / c->n_head;
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_eps");
    c->ln_eps = 1e-12f;  /* BertConfig's default */
    if (eps && !cJSON_IsNull(eps)) {
        /* a float, and positive after rounding (1e-50 would round to 0) */
        if ((st = json_get_float(eps, 0, FLT_MAX, where, "layer_norm_eps", &c->ln_eps)))
            goto done;
        if (!(c->ln_eps > 0)) {
            st = err_set(WICK_ERR_FORMAT, "%s: field \"layer_norm_eps\" must be a positive number",
                         where);
            goto done;
        }
    }
done:
    cJSON_Delete(root);
    return st;
}

/* ---- weights --------------------------------------------------------------------------- */

typedef struct loader {
    encoder_model *m;
    const char *prefix;  /* "" or "bert." */
} loader;

static void shape_str(const st_tensor *t, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* Finds prefix+name with shape [rows] (cols == 0) or [rows, cols]. */
static wick_status find(loader *L, const char *name, int64_t rows, int64_t cols,
                        const st_tensor **out) {
    char full[200];
    snprintf(full, sizeof full, "%s%s", L->prefix, name);
    const st_tensor *t = st_find(L->m->st, full);
    char want[64];
    if (cols) snprintf(want, sizeof want, "[%lld, %lld]", (long long)rows, (long long)cols);
    else snprintf(want, sizeof want, "[%lld]", (long long)rows);
    if (!t)
        return err_set(WICK_ERR_SHAPE, "%s: missing tensor %s (expected shape %s)", L->m->dir,
                       full, want);
    bool ok = cols ? (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols)
                   : (t->ndim == 1 && t->shape[0] == rows);
    if (!ok) {
        char found[96];
        shape_str(t, found, sizeof found);
        return err_set(WICK_ERR_SHAPE, "%s: tensor %s has shape %s, expected %s", L->m->dir,
                       full, found, want);
    }
    if (t->dt != DT_F32 && t->dt != DT_BF16 && t->dt != DT_F16)
        return err_set(WICK_ERR_UNSUPPORTED,
                       "%s: tensor %s has dtype %s (supported: F32, BF16, F16)", L->m->dir, full,
                       dtype_name(t->dt));
    L->m->n_params += t->numel;
    *out = t;
    return WICK_OK;
}

static wick_status matrix(loader *L, const char *name, int64_t rows, int64_t cols,
                          wk_weight *w) {
    const st_tensor *t;
    wick_status st = find(L, name, rows, cols, &t);
    if (st) return st;
    *w = (wk_weight){.data = t->data, .dt = t->dt, .rows = rows, .cols = cols};
    return WICK_OK;
}

static wick_status vector(loader *L, const char *name, int64_t n, float **out) {
    const st_tensor *t;
    wick_status st = find(L, name, n, 0, &t);
    if (st) return st;
    float *v = malloc(sizeof(float) * (size_t)n);
    if (!v) return err_set(WICK_ERR_NOMEM, "%s: out of memory for %s", L->m->dir, name);
    wk_weight w = {.data = t->data, .dt = t->dt, .rows = 1, .cols = n};
    kernels_row_to_f32(v, &w, 0);
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            free(v);
            return err_set(WICK_ERR_FORMAT, "%s: tensor %s%s holds a non-finite value at [%lld]",
                           L->m->dir, L->prefix, name, (long long)i);
        }
    }
    *out = v;
    return WICK_OK;
}

/* A layer's tensor names (under "encoder.layer.N.") in BERT / XLM-R and in MPNet order:
 * q, k, v, o, LN after attention, intermediate, output, LN after the MLP. */
static const char *const layer_names[2][8] = {
    {"attention.self.query", "attention.self.key", "attention.self.value",
     "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
     "output.dense", "output.LayerNorm"},
    {"attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o",
     "attention.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"},
};

static wick_status load_layer(loader *L, int i, encoder_layer *l) {
    const encoder_config *c = &L->m->cfg;
    const int64_t d = c->n_embd, ff = c->n_ff;
    const char *const *nm = layer_names[c->arch == ENC_MPNET];
    char n[160];
    wick_status st;
#define NM(k, s) (snprintf(n, sizeof n, "encoder.layer.%d.%s.%s", i, nm[k], s), n)
    if ((st = matrix(L, NM(0, "weight"), d, d, &l->wq)) ||
        (st = vector(L, NM(0, "bias"), d, &l->bq)) ||
        (st = matrix(L, NM(1, "weight"), d, d, &l->wk)) ||
        (st = vector(L, NM(1, "bias"), d, &l->bk)) ||
        (st = matrix(L, NM(2, "weight"), d, d, &l->wv)) ||
        (st = vector(L, NM(2, "bias"), d, &l->bv)) ||
        (st = matrix(L, NM(3, "weight"), d, d, &l->wo)) ||
        (st = vector(L, NM(3, "bias"), d, &l->bo)) ||
        (st = vector(L, NM(4, "weight"), d, &l->ln1_w)) ||
        (st = vector(L, NM(4, "bias"), d, &l->ln1_b)) ||
        (st = matrix(L, NM(5, "weight"), ff, d, &l->w_up)) ||
        (st = vector(L, NM(5, "bias"), ff, &l->b_up)) ||
        (st = matrix(L, NM(6, "weight"), d, ff, &l->w_down)) ||
        (st = vector(L, NM(6, "bias"), d, &l->b_down)) ||
        (st = vector(L, NM(7, "weight"), d, &l->ln2_w)) ||
        (st = vector(L, NM(7, "bias"), d, &l->ln2_b)))
        return st;
#undef NM
    return WICK_OK;
}

/* ---- MPNet's relative position buckets --------------------------------------------------- */

int encoder_mpnet_bucket(int rel) {
    /* HF negates the distance first: n = query - key, so keys after the query (rel > 0,
       n < 0) take the upper half of the buckets. */
    const int half = ENCODER_MPNET_BUCKETS / 2, exact = half / 2, max_distance = 128;
    int n = -rel, b = 0;
    if (n < 0) {
        b = half;
        n = -n;
    }
    if (n < exact) return b + n;
    /* the log scale in f32 as torch evaluates it (n / exact, then divided by
       log(max_distance / exact) rounded to f32), truncated toward zero */
    float v = logf((float)n / (float)exact) / (float)log((double)max_distance / exact) *
              (float)(half - exact);
    int large = exact + (int)v;
    return b + (large < half - 1 ? large : half - 1);
}

/* rel_bucket[r + max_tokens - 1] for every distance r a sequence can have. */
static wick_status mpnet_buckets(encoder_model *m) {
    const int n = m->cfg.max_tokens;
    m->rel_bucket = malloc(sizeof(int32_t) * (size_t)(2 * n - 1));
    if (!m->rel_bucket) return err_set(WICK_ERR_NOMEM, "out of memory");
    for (int r = -(n - 1); r <= n - 1; r++) m->rel_bucket[r + n - 1] = encoder_mpnet_bucket(r);
    return WICK_OK;
}

/* f32 copy of a small 2-D tensor (the relative bias table). */
static wick_status f32_matrix(loader *L, const char *name, int64_t rows, int64_t cols,
                              float **out) {
    wk_weight w;
    wick_status st = matrix(L, name, rows, cols, &w);
    if (st) return st;
    float *v = malloc(sizeof(float) * (size_t)(rows * cols));
    if (!v) return err_set(WICK_ERR_NOMEM, "%s: out of memory for %s", L->m->dir, name);
    for (int64_t r = 0; r < rows; r++) kernels_row_to_f32(v + r * cols, &w, r);
    for (int64_t i = 0; i < rows * cols; i++) {
        if (!isfinite(v[i])) {
            free(v);
            return err_set(WICK_ERR_FORMAT, "%s: tensor %s%s holds a non-finite value at [%lld]",
                           L->m->dir, L->prefix, name, (long long)i);
        }
    }
    *out = v;
    return WICK_OK;
}

void encoder_pack_weights(encoder_model *m, const kernel_table *k, wk_pool *pool) {
    if (!m || !k || !k->pack_weight || m->pack_kern) return;
    const int n = 6 * m->cfg.n_layer + 1;
    if (!(m->packs = calloc((size_t)n, sizeof *m->packs)) ||
        !(m->pack_bytes = calloc((size_t)n, sizeof *m->pack_bytes))) {
        free(m->packs);
        m->packs = NULL;
        return;
    }
    m->pack_kern = k;
    wk_ctx ctx = {.pool = pool};
    for (int i = 0; i <= m->cfg.n_layer; i++) {
        encoder_layer *l = i < m->cfg.n_layer ? &m->layers[i] : NULL;
        wk_weight *ws[6] = {NULL};
        if (l) {
            ws[0] = &l->wq, ws[1] = &l->wk, ws[2] = &l->wv, ws[3] = &l->wo;
            ws[4] = &l->w_up, ws[5] = &l->w_down;
        } else if (m->has_pooler) {
            ws[0] = &m->pool_w;
        }
        for (int j = 0; j < 6; j++) {
            if (!ws[j] || !ws[j]->data || ws[j]->packed) continue;
            size_t bytes = 0;
            void *p = k->pack_weight(&ctx, ws[j], &bytes);
            if (!p) continue;
            m->packs[m->n_packs] = p;
            m->pack_bytes[m->n_packs++] = bytes;
            ws[j]->packed = p;
            /* only the panels are read from now on: the file's pages under the matrix go back
               to the page cache (one copy of the weights in memory, not two or three) */
            st_release_pages(m->st, ws[j]->data,
                             dtype_row_bytes(ws[j]->dt, ws[j]->cols) * (size_t)ws[j]->rows);
        }
    }
}

void encoder_free(encoder_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_packs; i++) m->pack_kern->buf_free(NULL, m->packs[i], m->pack_bytes[i]);
    free(m->packs);
    free(m->pack_bytes);
    if (m->layers) {
        for (int i = 0; i < m->cfg.n_layer; i++) {
            encoder_layer *l = &m->layers[i];
            free(l->bq); free(l->bk); free(l->bv); free(l->bo);
            free(l->b_up); free(l->b_down);
            free(l->ln1_w); free(l->ln1_b); free(l->ln2_w); free(l->ln2_b);
        }
        free(m->layers);
    }
    free(m->emb_ln_w);
    free(m->emb_ln_b);
    free(m->pool_b);
    free(m->rel_bias);
    free(m->rel_bucket);
    st_close(m->st);
    free(m->dir);
    free(m);
}

wick_status encoder_load(const char *dir, encoder_model **out) {
    *out = NULL;
    if (!dir_exists(dir))
        return err_set(WICK_ERR_IO, "%s: not a model folder (expected a directory holding "
                                    "config.json and model.safetensors)", dir);
    encoder_model *m = calloc(1, sizeof *m);
    if (!m || !(m->dir = strdup(dir))) {
        free(m);
        return err_set(WICK_ERR_NOMEM, "out of memory");
    }
    char *cfg_path = path_join(dir, "config.json"), *json = NULL;
    wick_status st = cfg_path ? file_read_all(cfg_path, &json, NULL)
                              : err_set(WICK_ERR_NOMEM, "out of memory");
    if (st == WICK_OK) st = encoder_config_parse(json, cfg_path, &m->cfg);
    free(json);
    free(cfg_path);
    if (st == WICK_OK) st = st_open_dir(dir, &m->st);
    const encoder_config *c = &m->cfg;
    loader L = {.m = m, .prefix = ""};
    /* *ForMaskedLM / *ForSequenceClassification checkpoints nest the model under the HF
       base_model_prefix of their family */
    static const char *const prefixes[] = {"bert.", "roberta.", "mpnet."};
    if (st == WICK_OK && !st_find(m->st, "embeddings.word_embeddings.weight")) {
        for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
            char name[64];
            snprintf(name, sizeof name, "%sembeddings.word_embeddings.weight", prefixes[i]);
            if (st_find(m->st, name)) {
                L.prefix = prefixes[i];
                break;
            }
        }
    }
    const int64_t d = c->n_embd;
    if (st == WICK_OK)
        (void)((st = matrix(&L, "embeddings.word_embeddings.weight", c->n_vocab, d,
                            &m->tok_embd)) ||
               (st = matrix(&L, "embeddings.position_embeddings.weight", c->n_pos, d,
                            &m->pos_embd)) ||
               (c->n_types &&
                (st = matrix(&L, "embeddings.token_type_embeddings.weight", c->n_types, d,
                             &m->type_embd))) ||
               (st = vector(&L, "embeddings.LayerNorm.weight", d, &m->emb_ln_w)) ||
               (st = vector(&L, "embeddings.LayerNorm.bias", d, &m->emb_ln_b)));
    if (st == WICK_OK && c->arch == ENC_MPNET &&
        !(st = f32_matrix(&L, "encoder.relative_attention_bias.weight", c->n_buckets,
                          c->n_head, &m->rel_bias)))
        st = mpnet_buckets(m);
    /* num_hidden_layers is believed only as far as the file can hold the layers (16 tensors
       each), before anything is allocated per layer */
    if (st == WICK_OK && c->n_layer > st_count(m->st) / 16)
        st = err_set(WICK_ERR_SHAPE, "%s: config.json: num_hidden_layers %d is more than the "
                     "weights can hold (%d tensors, 16 per layer)", dir, c->n_layer,
                     st_count(m->st));
    if (st == WICK_OK) {
        m->layers = calloc((size_t)c->n_layer, sizeof *m->layers);
        if (!m->layers) st = err_set(WICK_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; st == WICK_OK && i < c->n_layer; i++) st = load_layer(&L, i, &m->layers[i]);
    /* The pooler is optional (sentence-transformers exports often drop it); when one half of
       it is present the other must be too. */
    if (st == WICK_OK) {
        char w[64], b[64];
        snprintf(w, sizeof w, "%spooler.dense.weight", L.prefix);
        snprintf(b, sizeof b, "%spooler.dense.bias", L.prefix);
        if (st_find(m->st, w) || st_find(m->st, b)) {
            if (!(st = matrix(&L, "pooler.dense.weight", d, d, &m->pool_w)) &&
                !(st = vector(&L, "pooler.dense.bias", d, &m->pool_b)))
                m->has_pooler = true;
        }
    }
    if (st != WICK_OK) {
        encoder_free(m);
        return st;
    }
    *out = m;
    return WICK_OK;
}
