/* model.c — loading a decoder model folder: config, memory-mapped weights, shape checks,
 * RoPE frequencies, and the tokenizer beside it. Large matrices stay in the mapping in their
 * file dtype (zero-copy); only the small vectors (norm weights, biases) are converted to f32.
 * Not here: the forward pass (forward.c), sessions (infer/session.c), the copies of the
 * weights on a device (model_device.c). */
#include "model/model.h"
#include "model/family.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "model/model_gguf.h"

wick_model_params wick_model_params_default(void) {
    wick_model_params p = {.kernels = "auto", .load_tokenizer = true};
    return p;
}

typedef struct loader {
    wick_model *m;
    const char *dir;
    /* A base-model checkpoint (XModel.save_pretrained, as embedding models ship): tensor names
       without the "model." prefix, often without lm_head. find_tensor drops the prefix. */
    bool bare;
} loader;

static const st_tensor *find_tensor(loader *L, const char *name, int64_t rows, int64_t cols,
                                    wick_status *st) {
    if (L->bare && strncmp(name, "model.", 6) == 0) name += 6;
    const st_tensor *t = st_find(L->m->st, name);
    if (!t) {
        if (cols)
            *st = err_set(WICK_ERR_SHAPE, "%s: missing tensor %s (expected shape [%lld, %lld])",
                          L->dir, name, (long long)rows, (long long)cols);
        else
            *st = err_set(WICK_ERR_SHAPE, "%s: missing tensor %s (expected shape [%lld])", L->dir,
                          name, (long long)rows);
        return NULL;
    }
    bool ok = cols ? (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols)
                   : (t->ndim == 1 && t->shape[0] == rows);
    if (!ok) {
        char found[128] = "[";
        for (int i = 0; i < t->ndim; i++) {
            char b[32];
            snprintf(b, sizeof b, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
            strncat(found, b, sizeof found - strlen(found) - 2);
        }
        strcat(found, "]");
        if (cols)
            *st = err_set(WICK_ERR_SHAPE, "%s: tensor %s has shape %s, expected [%lld, %lld]",
                          L->dir, name, found, (long long)rows, (long long)cols);
        else
            *st = err_set(WICK_ERR_SHAPE, "%s: tensor %s has shape %s, expected [%lld]", L->dir,
                          name, found, (long long)rows);
        return NULL;
    }
    if (t->dt != DT_F32 && t->dt != DT_BF16 && t->dt != DT_F16) {
        *st = err_set(WICK_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s (supported: F32, BF16, F16)",
                      L->dir, name, dtype_name(t->dt));
        return NULL;
    }
    return t;
}

/* Matrix weight: zero-copy view into the mapping. */
static wick_status load_matrix(loader *L, const char *name, int64_t rows, int64_t cols,
                               wk_weight *w) {
    wick_status st = WICK_OK;
    const st_tensor *t = find_tensor(L, name, rows, cols, &st);
    if (!t) return st;
    /* the whole struct: `packed` too (a caller's stack variable would otherwise carry garbage
       into the row views made from it, which the matmul reads as a packed layout) */
    *w = (wk_weight){.data = t->data, .dt = t->dt, .rows = rows, .cols = cols};
    L->m->n_params += t->numel;
    L->m->weight_bytes += (int64_t)t->nbytes;
    const char *dn = dtype_name(t->dt);
    if (!L->m->weight_dtype[0]) snprintf(L->m->weight_dtype, sizeof L->m->weight_dtype, "%s", dn);
    else if (strcmp(L->m->weight_dtype, dn) != 0) strcpy(L->m->weight_dtype, "mixed");
    return WICK_OK;
}

/* Vector weight (norm, bias): converted to a private f32 copy. */
static wick_status load_vector(loader *L, const char *name, int64_t n, float **out) {
    wick_status st = WICK_OK;
    const st_tensor *t = find_tensor(L, name, n, 0, &st);
    if (!t) return st;
    float *v = malloc(sizeof(float) * (size_t)n);
    if (!v) return err_set(WICK_ERR_NOMEM, "%s: out of memory for %s", L->dir, name);
    wk_weight w = {.data = t->data, .dt = t->dt, .rows = 1, .cols = n};
    kernels_row_to_f32(v, &w, 0);
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            free(v);
            return err_set(WICK_ERR_FORMAT, "%s: tensor %s holds a non-finite value at [%lld]",
                           L->dir, name, (long long)i);
        }
    }
    *out = v;
    L->m->n_params += t->numel;
    L->m->weight_bytes += (int64_t)t->nbytes;
    return WICK_OK;
}

/* rows [r0, r0 + n) of W as a matrix of their own (row-major rows are whole blocks) */
wk_weight model_row_range(const wk_weight *W, int64_t r0, int64_t n) {
    wk_weight w = *W;
    w.data = (const uint8_t *)W->data + (size_t)r0 * dtype_row_bytes(W->dt, W->cols);
    w.rows = n;
    w.packed = NULL;
    return w;
}

wk_weight model_stack_rows(const wk_weight *const *parts, int n, void **owned) {
    *owned = NULL;
    const wk_weight *p0 = parts[0];
    const size_t rb = dtype_row_bytes(p0->dt, p0->cols);
    wk_weight all = *p0;
    all.packed = NULL;
    bool consecutive = true;
    for (int i = 1; i < n; i++) {
        if (parts[i]->dt != p0->dt || parts[i]->cols != p0->cols) return (wk_weight){0};
        consecutive &= (const uint8_t *)parts[i]->data ==
                       (const uint8_t *)p0->data + (size_t)all.rows * rb;
        all.rows += parts[i]->rows;
    }
    if (consecutive) return all;
    uint8_t *cat = malloc(rb * (size_t)(all.rows ? all.rows : 1));
    if (!cat) return (wk_weight){0};
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        memcpy(cat + off, parts[i]->data, rb * (size_t)parts[i]->rows);
        off += rb * (size_t)parts[i]->rows;
    }
    all.data = cat;
    *owned = cat;
    return all;
}

static void norm_plus_one(float *w, int64_t n) {
    for (int64_t i = 0; w && i < n; i++) w[i] = 1.0f + w[i];
}

/* The router and experts of MoE layer i (names from the family table). */
static wick_status load_experts(loader *L, int i, layer_weights *lw) {
    const model_config *c = &L->m->cfg;
    const model_family *fam = family_get(c->arch);
    const int64_t d = c->n_embd, fe = c->n_ff_expert, E = c->n_expert;
    char name[192];
    wick_status st;
    snprintf(name, sizeof name, fam->moe_router, i);
    if ((st = load_matrix(L, name, E, d, &lw->router))) return st;
    lw->exp_gate = calloc((size_t)E, sizeof *lw->exp_gate);
    lw->exp_up = calloc((size_t)E, sizeof *lw->exp_up);
    lw->exp_down = calloc((size_t)E, sizeof *lw->exp_down);
    if (!lw->exp_gate || !lw->exp_up || !lw->exp_down) return err_set(WICK_ERR_NOMEM, "out of memory");
    const int64_t before = L->m->weight_bytes;
    for (int e = 0; e < E; e++) {
        snprintf(name, sizeof name, fam->moe_gate, i, e);
        if ((st = load_matrix(L, name, fe, d, &lw->exp_gate[e]))) return st;
        snprintf(name, sizeof name, fam->moe_up, i, e);
        if ((st = load_matrix(L, name, fe, d, &lw->exp_up[e]))) return st;
        snprintf(name, sizeof name, fam->moe_down, i, e);
        if ((st = load_matrix(L, name, d, fe, &lw->exp_down[e]))) return st;
    }
    L->m->expert_bytes += L->m->weight_bytes - before;
    return WICK_OK;
}

static wick_status load_layer(loader *L, int i, layer_weights *lw) {
    const model_config *c = &L->m->cfg;
    const int64_t d = c->n_embd, qd = (int64_t)c->n_head * c->head_dim,
                  kvd = (int64_t)c->n_kv_head * c->head_dim, ff = c->n_ff;
    char name[160];
    wick_status st;
    const bool moe = c->n_expert > 0 && i < CONFIG_MAX_LAYER_TYPES && (c->layer_moe[i / 64] >> (i % 64) & 1);
#define NAME(suffix) (snprintf(name, sizeof name, "model.layers.%d.%s", i, suffix), name)
    if (family_get(c->arch)->fused) { /* Phi-3: row ranges of the fused tensors */
        wk_weight qkv = {0}, gu = {0};
        if ((st = load_matrix(L, NAME("self_attn.qkv_proj.weight"), qd + 2 * kvd, d, &qkv)) ||
            (st = load_matrix(L, NAME("self_attn.o_proj.weight"), d, qd, &lw->wo)) ||
            (st = load_matrix(L, NAME("mlp.gate_up_proj.weight"), 2 * ff, d, &gu)) ||
            (st = load_matrix(L, NAME("mlp.down_proj.weight"), d, ff, &lw->w_down)) ||
            (st = load_vector(L, NAME("input_layernorm.weight"), d, &lw->attn_norm)) ||
            (st = load_vector(L, NAME("post_attention_layernorm.weight"), d, &lw->mlp_norm)))
            return st;
        lw->wq = model_row_range(&qkv, 0, qd), lw->wk = model_row_range(&qkv, qd, kvd);
        lw->wv = model_row_range(&qkv, qd + kvd, kvd);
        lw->w_gate = model_row_range(&gu, 0, ff), lw->w_up = model_row_range(&gu, ff, ff);
        lw->window = c->sliding_window;
        return WICK_OK;
    }
    if ((st = load_matrix(L, NAME("self_attn.q_proj.weight"), qd, d, &lw->wq)) ||
        (st = load_matrix(L, NAME("self_attn.k_proj.weight"), kvd, d, &lw->wk)) ||
        (st = load_matrix(L, NAME("self_attn.v_proj.weight"), kvd, d, &lw->wv)) ||
        (st = load_matrix(L, NAME("self_attn.o_proj.weight"), d, qd, &lw->wo)) ||
        (moe && (st = load_experts(L, i, lw))) ||
        (!moe && (st = load_matrix(L, NAME("mlp.gate_proj.weight"), ff, d, &lw->w_gate))) ||
        (!moe && (st = load_matrix(L, NAME("mlp.up_proj.weight"), ff, d, &lw->w_up))) ||
        (!moe && (st = load_matrix(L, NAME("mlp.down_proj.weight"), d, ff, &lw->w_down))) ||
        (st = load_vector(L, NAME("input_layernorm.weight"), d, &lw->attn_norm)) ||
        (st = load_vector(L, NAME("post_attention_layernorm.weight"), d, &lw->mlp_norm)))
        return st;
    if (c->attn_bias) {
        if ((st = load_vector(L, NAME("self_attn.q_proj.bias"), qd, &lw->bq)) ||
            (st = load_vector(L, NAME("self_attn.k_proj.bias"), kvd, &lw->bk)) ||
            (st = load_vector(L, NAME("self_attn.v_proj.bias"), kvd, &lw->bv)))
            return st;
    }
    if (c->o_bias && (st = load_vector(L, NAME("self_attn.o_proj.bias"), d, &lw->bo))) return st;
    /* per head (hd values), or OLMoE's over the whole q / k projection */
    if (c->qk_norm && ((st = load_vector(L, NAME("self_attn.q_norm.weight"), c->qk_norm_full ? qd : c->head_dim,
                                         &lw->q_norm)) ||
                       (st = load_vector(L, NAME("self_attn.k_norm.weight"), c->qk_norm_full ? kvd : c->head_dim,
                                         &lw->k_norm))))
        return st;
    const model_family *fam = family_get(c->arch);
    if (fam->gemma) {
        /* Gemma's names: post_attention_layernorm is the attention block's output norm, the
           MLP's input norm is pre_feedforward_layernorm */
        float *t = lw->mlp_norm;
        lw->mlp_norm = NULL;
        lw->post_attn_norm = t;
        if ((st = load_vector(L, NAME("pre_feedforward_layernorm.weight"), d, &lw->mlp_norm)) ||
            (st = load_vector(L, NAME("post_feedforward_layernorm.weight"), d, &lw->post_mlp_norm)))
            return st;
        /* (1 + w) in float32, as transformers computes it for each forward */
        norm_plus_one(lw->attn_norm, d), norm_plus_one(lw->mlp_norm, d);
        norm_plus_one(lw->post_attn_norm, d), norm_plus_one(lw->post_mlp_norm, d);
        norm_plus_one(lw->q_norm, c->head_dim), norm_plus_one(lw->k_norm, c->head_dim);
    }
    if (c->mlp_bias) {
        if ((st = load_vector(L, NAME("mlp.gate_proj.bias"), ff, &lw->b_gate)) ||
            (st = load_vector(L, NAME("mlp.up_proj.bias"), ff, &lw->b_up)) ||
            (st = load_vector(L, NAME("mlp.down_proj.bias"), d, &lw->b_down)))
            return st;
    }
#undef NAME
    lw->window = (c->sliding_window > 0 && i >= c->n_swa_layers_from) ? c->sliding_window : 0;
    if (fam->swa == SWA_LAYER_TYPES) {
        const bool sl = i < CONFIG_MAX_LAYER_TYPES && (c->layer_sliding[i / 64] >> (i % 64) & 1);
        lw->window = sl ? c->sliding_window : 0;
        lw->rope_local = sl && c->rope_theta_local > 0;
    }
    return WICK_OK;
}

/* (model.h) */
void model_rope_freqs(const model_config *c, float *inv, bool long_f) {
    const int half = c->rot_dim / 2;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)c->rot_dim;
        float p = (float)pow((double)c->rope_theta, (double)e);
        inv[i] = c->rope == ROPE_LONGROPE ? 1.0f / ((long_f ? c->rope_long : c->rope_short)[i] * p) : 1.0f / p;
    }
    if (c->rope == ROPE_LINEAR) {
        for (int i = 0; i < half; i++) inv[i] = inv[i] / c->rope_factor;
    } else if (c->rope == ROPE_LLAMA3) {
        const float pi = 3.14159265358979323846f;
        const float old_ctx = (float)c->rope_orig_ctx;
        const float low_wl = old_ctx / c->rope_low_freq_factor;
        const float high_wl = old_ctx / c->rope_high_freq_factor;
        for (int i = 0; i < half; i++) {
            float wl = 2.0f * pi / inv[i];
            float f = wl > low_wl ? inv[i] / c->rope_factor : inv[i];
            if (!(wl < high_wl) && !(wl > low_wl)) {
                float smooth = (old_ctx / wl - c->rope_low_freq_factor) /
                               (c->rope_high_freq_factor - c->rope_low_freq_factor);
                f = (1.0f - smooth) * f / c->rope_factor + smooth * f;
            }
            inv[i] = f;
        }
    }
}

void model_ext_init(wick_model *m) {
    m->ext_mu_init = pthread_mutex_init(&m->ext_mu, NULL) == 0;
    m->lora = NULL;
    m->lora_free = NULL;
}

void model_ext_destroy(wick_model *m) {
    if (m->lora_free && m->lora) m->lora_free(m->lora);
    m->lora = NULL;
    if (m->ext_mu_init) pthread_mutex_destroy(&m->ext_mu);
    m->ext_mu_init = false;
}

void wick_model_free(wick_model *m) {
    if (!m) return;
    if (m->free_self) {  /* a merged handle borrows all but its layers and merged matrices */
        m->free_self(m);
        return;
    }
    model_ext_destroy(m); /* adapters first: their device copies use m->kern */
    model_device_free(m);
    model_pack_free(m);
    if (m->layers) {
        for (int i = 0; i < m->cfg.n_layer; i++) {
            layer_weights *l = &m->layers[i];
            free(l->bq); free(l->bk); free(l->bv); free(l->bo);
            free(l->b_gate); free(l->b_up); free(l->b_down);
            free(l->attn_norm); free(l->mlp_norm);
            free(l->q_norm); free(l->k_norm);
            free(l->post_attn_norm); free(l->post_mlp_norm);
            free(l->exp_gate); free(l->exp_up); free(l->exp_down);
        }
        free(m->layers);
    }
    free(m->final_norm);
    free(m->rope_inv_freq);
    free(m->rope_inv_freq_local);
    free(m->rope_inv_freq_long);
    free(m->train_block);
    wick_tokenizer_free(m->tok);
    st_close(m->st);
    gguf_close(m->gguf);
    free(m->path);
    free(m);
}

/* Every id the tokenizer can produce (vocabulary, added tokens, the special tokens its config
 * and chat template name) must be a row of the embedding. A tokenizer may know fewer ids than
 * the model has rows (padded embeddings), never more. */
static wick_status check_tokenizer_ids(const wick_model *m, const char *path) {
    const int32_t n = wick_tokenizer_vocab_size(m->tok);
    if (!m->tok || n <= m->cfg.n_vocab) return WICK_OK;
    const char *s = wick_token_str(m->tok, n - 1);
    return err_set(WICK_ERR_FORMAT, "%s: the tokenizer has token id %d ('%.64s') but the model's "
                   "vocabulary holds %d ids (vocab_size / token_embd.weight rows): every token id "
                   "must be a row of the embedding", path, n - 1, s ? s : "", m->cfg.n_vocab);
}

static wick_status select_kernels(wick_model *m, const wick_model_params *params) {
    m->kern = kernels_select(params->kernels);
    if (m->kern) return WICK_OK;
    return err_set(WICK_ERR_INVALID_ARG,
                   "kernel table '%s' (from %s) is unknown or not supported by this CPU "
                   "(known: auto, ref, generic, avx2, avx512)",
                   getenv("WICK_ISA") && *getenv("WICK_ISA") ? getenv("WICK_ISA")
                                                             : params->kernels,
                   getenv("WICK_ISA") && *getenv("WICK_ISA") ? "WICK_ISA" : "params");
}

/* Every layer has at least this many tensors (q, k, v, o, gate, up, down, two norms). */
#define MIN_TENSORS_PER_LAYER 9

/* The weights of m->st for the config in m->cfg: shapes are checked against the config, and
 * nothing sized by a config number is allocated before a tensor of the file vouches for it
 * (the embedding for vocab_size and hidden_size, the tensor count for num_hidden_layers).
 * `where` names the folder (or buffer) in messages, `cfg_where` the config. */
static wick_status load_st_weights(wick_model *m, const char *where, const char *cfg_where) {
    loader L = {.m = m, .dir = where};
    L.bare = !st_find(m->st, "model.embed_tokens.weight") && st_find(m->st, "embed_tokens.weight");
    const model_config *c = &m->cfg;
    wick_status st = load_matrix(&L, "model.embed_tokens.weight", c->n_vocab, c->n_embd,
                                 &m->tok_embd);
    if (st) return st;
    /* 9 tensors a layer at least; 6 where q/k/v and gate/up are fused (Phi-3) */
    const int min_t = family_get(c->arch)->fused ? 6 : MIN_TENSORS_PER_LAYER;
    if (c->n_layer > st_count(m->st) / min_t)
        return err_set(WICK_ERR_SHAPE, "%s: num_hidden_layers %d is more than the weights can hold "
                       "(%d tensors, at least %d per layer)", cfg_where, c->n_layer,
                       st_count(m->st), min_t);
    m->layers = calloc((size_t)c->n_layer, sizeof *m->layers);
    if (!m->layers) return err_set(WICK_ERR_NOMEM, "out of memory");
    for (int i = 0; i < c->n_layer; i++)
        if ((st = load_layer(&L, i, &m->layers[i]))) return st;
    if ((st = load_vector(&L, "model.norm.weight", c->n_embd, &m->final_norm))) return st;
    if (family_get(c->arch)->gemma) norm_plus_one(m->final_norm, c->n_embd);
    if (c->tie_embd) {
        m->lm_head = m->tok_embd;  /* lm_head.weight, if present, is ignored as HF does */
    } else {
        if (m->headless_ok && L.bare && !st_find(m->st, "lm_head.weight")) {
            /* an embedding checkpoint: the head is never read (model_load_headless) */
            m->lm_head = m->tok_embd;
            m->headless = true;
        } else
            st = load_matrix(&L, "lm_head.weight", c->n_vocab, c->n_embd, &m->lm_head);
        if (st == WICK_ERR_SHAPE && !st_find(m->st, "lm_head.weight"))
            err_wrap(st, "config has tie_word_embeddings=false");
        if (st) return st;
    }
    /* head_dim is vouched for by q_proj's rows (n_head * head_dim) */
    m->rope_inv_freq = malloc(sizeof(float) * (size_t)(c->head_dim / 2));
    if (!m->rope_inv_freq) return err_set(WICK_ERR_NOMEM, "out of memory");
    model_rope_freqs(c, m->rope_inv_freq, false);
    if (c->rope_theta_local > 0) { /* the sliding layers' base, default rope */
        model_config lc = *c;
        lc.rope_theta = c->rope_theta_local;
        lc.rope = ROPE_DEFAULT;
        if (!(m->rope_inv_freq_local = malloc(sizeof(float) * (size_t)(c->head_dim / 2))))
            return err_set(WICK_ERR_NOMEM, "out of memory");
        model_rope_freqs(&lc, m->rope_inv_freq_local, false);
    }
    if (c->rope == ROPE_LONGROPE) {
        if (!(m->rope_inv_freq_long = malloc(sizeof(float) * (size_t)(c->head_dim / 2))))
            return err_set(WICK_ERR_NOMEM, "out of memory");
        model_rope_freqs(c, m->rope_inv_freq_long, true);
    }
    return WICK_OK;
}

static wick_model *model_new(void) {
    wick_model *m = calloc(1, sizeof *m);
    if (m) model_ext_init(m);
    return m;
}

/* A GGUF model from an open file (taken over: closed with the model, also on failure). */
static wick_status load_gguf(gguf_file *g, const wick_model_params *params, wick_model **out) {
    wick_model *m = model_new();
    if (!m) {
        gguf_close(g);
        return err_set(WICK_ERR_NOMEM, "out of memory");
    }
    m->gguf = g;
    wick_status st = model_gguf_build(g, params, m, &m->rope_interleaved);
    if (!st) st = check_tokenizer_ids(m, g->mf.path);
    if (!st) st = model_device_init(m, params);
    if (st) {
        wick_model_free(m);
        return st;
    }
    model_pack_weights(m);
    *out = m;
    return WICK_OK;
}

/* hf://ORG/NAME[@REV][/FILE]: the repository (or only FILE, e.g. a .gguf) through the Hub
 * cache (wick_hub_download, with the environment's settings), then that folder or file. */
static wick_status load_hub(const char *spec, const wick_model_params *params, wick_model **out) {
    const char *s1 = strchr(spec, '/'), *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
    char *repo = s2 ? strndup(spec, (size_t)(s2 - spec)) : strdup(spec);
    if (!repo) return err_set(WICK_ERR_NOMEM, "out of memory");
    const char *file = s2 && s2[1] ? s2 + 1 : NULL;
    wick_hub_params hp = wick_hub_params_default();
    if (file) hp.include = &file, hp.n_include = 1;
    char *dir = NULL;
    wick_status st = wick_hub_download(repo, &hp, &dir);
    free(repo);
    if (st) return err_wrap(st, "hf://%s", spec);
    char *path = file ? path_join(dir, file) : NULL;
    st = file && !path ? err_set(WICK_ERR_NOMEM, "out of memory")
                       : wick_model_load(file ? path : dir, params, out);
    free(path);
    free(dir);
    return st;
}

static wick_status load_folder(const char *path, const wick_model_params *params, bool headless,
                               wick_model **out);

wick_status wick_model_load(const char *path, const wick_model_params *params, wick_model **out) {
    if (!out) return err_set(WICK_ERR_INVALID_ARG, "wick_model_load: out is NULL");
    *out = NULL;
    if (!path) return err_set(WICK_ERR_INVALID_ARG, "wick_model_load: path is NULL");
    if (strncmp(path, "hf://", 5) == 0) return load_hub(path + 5, params, out);
    wick_model_params defaults = wick_model_params_default();
    if (!params) params = &defaults;
    size_t pl = strlen(path);
    if (pl > 5 && strcmp(path + pl - 5, ".gguf") == 0 && !dir_exists(path)) {
        gguf_file *g = NULL;
        wick_status st = gguf_open(path, &g);
        return st ? st : load_gguf(g, params, out);
    }
    return load_folder(path, params, false, out);
}

wick_status model_load_headless(const char *path, const wick_model_params *params,
                                wick_model **out) {
    if (!out || !path || !params)
        return err_set(WICK_ERR_INVALID_ARG, "model_load_headless: NULL argument");
    *out = NULL;
    return load_folder(path, params, true, out);
}

static wick_status load_folder(const char *path, const wick_model_params *params, bool headless,
                               wick_model **out) {
    if (!dir_exists(path))
        return err_set(WICK_ERR_IO, "%s: not a model folder (expected a directory holding "
                                    "config.json and model.safetensors)", path);
    wick_model *m = model_new();
    if (!m) return err_set(WICK_ERR_NOMEM, "out of memory");
    m->headless_ok = headless;
    m->path = strdup(path);
    char *cpath = path_join(path, "config.json");
    wick_status st = m->path && cpath ? WICK_OK : err_set(WICK_ERR_NOMEM, "out of memory");
    if (st == WICK_OK) st = config_load(path, &m->cfg);
    if (st == WICK_OK) st = select_kernels(m, params);
    if (st == WICK_OK) st = st_open_dir(path, &m->st);
    if (st == WICK_OK) st = load_st_weights(m, path, cpath);
    free(cpath);
    if (st == WICK_OK && params->load_tokenizer) {
        char *tj = path_join(path, "tokenizer.json"), *vt = path_join(path, "vocab.txt");
        if (tj && vt && (file_exists(tj) || file_exists(vt))) {
            st = wick_tokenizer_load(path, &m->tok);
            if (st) err_wrap(st, "%s: loading the tokenizer", path);
            else st = check_tokenizer_ids(m, file_exists(tj) ? tj : vt);
        }
        free(tj);
        free(vt);
    }
    if (st == WICK_OK) st = model_device_init(m, params);
    if (st != WICK_OK) {
        wick_model_free(m);
        return st;
    }
    model_pack_weights(m);
    *out = m;
    return WICK_OK;
}

wick_status model_load_mem(const char *config_json, const char *generation_json,
                           const void *st_data, size_t st_len, const wick_model_params *params,
                           wick_model **out) {
    if (!out) return err_set(WICK_ERR_INVALID_ARG, "model_load_mem: out is NULL");
    *out = NULL;
    if (!config_json || (!st_data && st_len))
        return err_set(WICK_ERR_INVALID_ARG, "model_load_mem: NULL argument");
    wick_model_params defaults = wick_model_params_default();
    if (!params) params = &defaults;
    wick_model *m = model_new();
    if (!m) return err_set(WICK_ERR_NOMEM, "out of memory");
    const char *where = "model (in memory)", *cwhere = "config.json (in memory)";
    m->path = strdup(where);
    wick_status st = m->path ? WICK_OK : err_set(WICK_ERR_NOMEM, "out of memory");
    if (st == WICK_OK) st = config_parse(config_json, cwhere, &m->cfg);
    if (st == WICK_OK && generation_json)
        st = config_parse_generation(generation_json, "generation_config.json (in memory)",
                                     &m->cfg);
    if (st == WICK_OK) st = select_kernels(m, params);
    if (st == WICK_OK) st = model_set_precision(m, params);
    if (st == WICK_OK) st = st_open_mem(st_data, st_len, "model.safetensors (in memory)", &m->st);
    if (st == WICK_OK) st = load_st_weights(m, where, cwhere);
    if (st != WICK_OK) {
        wick_model_free(m);
        return st;
    }
    *out = m;
    return WICK_OK;
}

wick_status model_load_gguf_mem(const void *data, size_t len, const wick_model_params *params,
                                wick_model **out) {
    if (!out) return err_set(WICK_ERR_INVALID_ARG, "model_load_gguf_mem: out is NULL");
    *out = NULL;
    wick_model_params defaults = wick_model_params_default();
    gguf_file *g = NULL;
    wick_status st = gguf_open_mem(data, len, "model.gguf (in memory)", &g);
    return st ? st : load_gguf(g, params ? params : &defaults, out);
}

const wick_tokenizer *wick_model_tokenizer(const wick_model *m) { return m ? m->tok : NULL; }

static const char *rope_name(rope_kind k) {
    return k == ROPE_LINEAR ? "linear" : k == ROPE_LLAMA3 ? "llama3" : k == ROPE_LONGROPE ? "longrope" : "none";
}

wick_status wick_model_get_info(const wick_model *m, wick_model_info *info) {
    if (!m || !info) return err_set(WICK_ERR_INVALID_ARG, "wick_model_get_info: NULL argument");
    const model_config *c = &m->cfg;
    memset(info, 0, sizeof *info);
    info->architecture = c->architecture;
    info->weight_dtype = m->weight_dtype;
    info->kernels = m->kern->name;
    info->n_params = m->n_params;
    info->weight_bytes = m->weight_bytes;
    /* every matrix is read once per token, except the embedding table: one row, unless it is
       also the (tied) LM head */
    int64_t embd_bytes = (int64_t)dtype_row_bytes(m->tok_embd.dt, m->tok_embd.cols) * m->tok_embd.rows;
    info->decode_bytes = m->weight_bytes - (c->tie_embd ? 0 : embd_bytes);
    /* a mixture of experts reads the chosen experts: n_expert_used of n_expert on average */
    if (c->n_expert > 0)
        info->decode_bytes -= m->expert_bytes * (c->n_expert - c->n_expert_used) / c->n_expert;
    info->n_vocab = c->n_vocab;
    info->n_embd = c->n_embd;
    info->n_layer = c->n_layer;
    info->n_head = c->n_head;
    info->n_kv_head = c->n_kv_head;
    info->head_dim = c->head_dim;
    info->n_ff = c->n_ff;
    info->n_ctx_train = c->n_ctx_train;
    info->sliding_window = c->sliding_window;
    info->rope_theta = c->rope_theta;
    info->norm_eps = c->norm_eps;
    info->rope_scaling = rope_name(c->rope);
    info->tied_embeddings = c->tie_embd;
    info->attn_bias = c->attn_bias;
    info->bos_id = c->bos_id;
    info->pad_id = c->pad_id;
    info->n_eos = c->n_eos;
    memcpy(info->eos_ids, c->eos_ids, sizeof info->eos_ids);
    info->n_expert = c->n_expert;
    info->n_expert_used = c->n_expert_used;
    info->n_ff_expert = c->n_expert > 0 ? c->n_ff_expert : 0;
    info->rot_dim = c->rot_dim;
    return WICK_OK;
}
