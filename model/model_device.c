/* model_device.c — putting a loaded model on a device: choosing the device's kernel table
 * (wick_model_params.device or WICK_DEVICE) and copying every weight the forward pass reads —
 * matrices in their file dtype, norm weights, biases — into device memory once. A tied
 * lm_head shares tok_embd's copy; matrices go through the table's weight_upload where it has
 * one (its device layout). The host weights stay: saving, merging and the adapter
 * shape checks read them, and the mapping costs no memory that is not paged in.
 * Not here: loading files (model.c, model_gguf.c), the kernels (kernels/cuda). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/error.h"
#include "base/pool.h"
#include "formats/gguf.h"
#include "model/model.h"

typedef struct uploader {
    wick_model *m;
    const kernel_table *K;
    model_dev *d;
} uploader;

/* A device copy of `bytes` of host memory at src, recorded for model_device_free. */
static wick_status upload(uploader *u, const void *src, size_t bytes, void **out,
                          const char *what, int layer, const wk_weight *w) {
    model_dev *d = u->d;
    if (d->n_bufs == d->cap_bufs) {
        const int cap = d->cap_bufs ? 2 * d->cap_bufs : 64;
        void **b = realloc(d->bufs, sizeof *b * (size_t)cap);
        if (b) d->bufs = b;
        size_t *s = realloc(d->buf_bytes, sizeof *s * (size_t)cap);
        if (s) d->buf_bytes = s;
        if (!b || !s) return err_set(WICK_ERR_NOMEM, "out of memory");
        d->cap_bufs = cap;
    }
    void *p = u->K->buf_alloc(NULL, bytes);
    if (!p) {
        if (layer >= 0)
            return err_set(WICK_ERR_NOMEM, "%s: out of %s memory for layer %d %s (%zu bytes)",
                           u->m->path ? u->m->path : "model", u->K->name, layer, what, bytes);
        return err_set(WICK_ERR_NOMEM, "%s: out of %s memory for %s (%zu bytes)",
                       u->m->path ? u->m->path : "model", u->K->name, what, bytes);
    }
    d->bufs[d->n_bufs] = p;
    d->buf_bytes[d->n_bufs++] = bytes;
    if (w && u->K->weight_upload) u->K->weight_upload(NULL, p, w); /* the table's layout */
    else u->K->buf_copy(NULL, p, src, bytes);
    *out = p;
    return WICK_OK;
}

static wick_status up_matrix(uploader *u, const wk_weight *w, wk_weight *out, const char *what,
                             int layer) {
    *out = *w;
    out->packed = NULL; /* a host table's layout */
    if (!w->data) return WICK_OK; /* absent (a MoE layer's dense MLP) */
    const size_t bytes = dtype_row_bytes(w->dt, w->cols) * (size_t)w->rows;
    void *p = NULL;
    wick_status st = upload(u, w->data, bytes, &p, what, layer, w);
    out->data = p;
    return st;
}

/* A NULL vector (an absent bias) stays NULL. */
static wick_status up_vector(uploader *u, const float *v, int64_t n, float **out,
                             const char *what, int layer) {
    *out = NULL;
    if (!v) return WICK_OK;
    void *p = NULL;
    wick_status st = upload(u, v, sizeof(float) * (size_t)n, &p, what, layer, NULL);
    *out = p;
    return st;
}

static wick_status up_layer(uploader *u, int l) {
    const model_config *c = &u->m->cfg;
    const layer_weights *h = &u->m->layers[l];
    layer_weights *g = &u->d->layers[l];
    const int64_t d = c->n_embd, qd = (int64_t)c->n_head * c->head_dim,
                  kvd = (int64_t)c->n_kv_head * c->head_dim, ff = c->n_ff;
    *g = *h;
    wick_status st;
    if ((st = up_matrix(u, &h->wq, &g->wq, "q_proj", l)) ||
        (st = up_matrix(u, &h->wk, &g->wk, "k_proj", l)) ||
        (st = up_matrix(u, &h->wv, &g->wv, "v_proj", l)) ||
        (st = up_matrix(u, &h->wo, &g->wo, "o_proj", l)) ||
        (st = up_matrix(u, &h->w_gate, &g->w_gate, "gate_proj", l)) ||
        (st = up_matrix(u, &h->w_up, &g->w_up, "up_proj", l)) ||
        (st = up_matrix(u, &h->w_down, &g->w_down, "down_proj", l)) ||
        (st = up_vector(u, h->bq, qd, &g->bq, "q_proj bias", l)) ||
        (st = up_vector(u, h->bk, kvd, &g->bk, "k_proj bias", l)) ||
        (st = up_vector(u, h->bv, kvd, &g->bv, "v_proj bias", l)) ||
        (st = up_vector(u, h->bo, d, &g->bo, "o_proj bias", l)) ||
        (st = up_vector(u, h->b_gate, ff, &g->b_gate, "gate_proj bias", l)) ||
        (st = up_vector(u, h->b_up, ff, &g->b_up, "up_proj bias", l)) ||
        (st = up_vector(u, h->b_down, d, &g->b_down, "down_proj bias", l)) ||
        (st = up_vector(u, h->attn_norm, d, &g->attn_norm, "input_layernorm", l)) ||
        (st = up_vector(u, h->mlp_norm, d, &g->mlp_norm, "post_attention_layernorm", l)) ||
        (st = up_vector(u, h->q_norm, c->qk_norm_full ? qd : c->head_dim, &g->q_norm, "q_norm", l)) ||
        (st = up_vector(u, h->k_norm, c->qk_norm_full ? kvd : c->head_dim, &g->k_norm, "k_norm", l)) ||
        (st = up_vector(u, h->post_attn_norm, d, &g->post_attn_norm, "post_attention_layernorm", l)) ||
        (st = up_vector(u, h->post_mlp_norm, d, &g->post_mlp_norm, "post_feedforward_layernorm", l)))
        return st;
    if (!h->exp_gate) return WICK_OK;
    /* a mixture of experts: the router and every expert (all of them: routing picks per row) */
    const int E = c->n_expert;
    wk_weight *ex = u->d->experts + (size_t)l * 3 * E;
    g->exp_gate = ex, g->exp_up = ex + E, g->exp_down = ex + 2 * E;
    if ((st = up_matrix(u, &h->router, &g->router, "router", l))) return st;
    for (int e = 0; e < E; e++)
        if ((st = up_matrix(u, &h->exp_gate[e], &g->exp_gate[e], "expert gate_proj", l)) ||
            (st = up_matrix(u, &h->exp_up[e], &g->exp_up[e], "expert up_proj", l)) ||
            (st = up_matrix(u, &h->exp_down[e], &g->exp_down[e], "expert down_proj", l)))
            return st;
    return WICK_OK;
}

static void dev_free(const kernel_table *K, model_dev *d) {
    if (!d) return;
    for (int i = 0; i < d->n_bufs; i++) K->buf_free(NULL, d->bufs[i], d->buf_bytes[i]);
    free(d->bufs);
    free(d->buf_bytes);
    free(d->layers);
    free(d->experts);
    free(d);
}

wick_status model_set_precision(wick_model *m, const wick_model_params *params) {
    const char *env = getenv("WICK_PRECISION");
    const bool from_env = env && *env;
    const char *p = from_env ? env : params ? params->precision : NULL;
    if (!p || strcmp(p, "fast") == 0) m->fast = true;
    else if (strcmp(p, "exact") == 0) m->fast = false;
    else
        return err_set(WICK_ERR_INVALID_ARG, "precision '%s' (from %s) is unknown: expected "
                       "\"fast\" or \"exact\"", p, from_env ? "WICK_PRECISION" : "params");
    return WICK_OK;
}

wick_status model_device_init(wick_model *m, const wick_model_params *params) {
    wick_status pst = model_set_precision(m, params);
    if (pst) return pst;
    const char *env = getenv("WICK_DEVICE");
    const bool from_env = env && *env;
    const char *name = from_env ? env : params ? params->device : NULL;
    const kernel_table *K = NULL;
    wick_status st = kernels_select_device(name, &K);
    if (st) return from_env ? err_wrap(st, "WICK_DEVICE") : st;
    if (!K) return WICK_OK;
    const model_config *c = &m->cfg;
    /* a mixture of experts: routing on the host, the plan uploaded, experts through
       gather_rows / scatter_rows (model/layer.c); up_layer below uploads the router and every
       expert */
    uploader u = {m, K, calloc(1, sizeof(model_dev))};
    if (!u.d || !(u.d->layers = calloc((size_t)(c->n_layer ? c->n_layer : 1), sizeof *u.d->layers)) ||
        (c->n_expert > 0 &&
         !(u.d->experts = calloc((size_t)c->n_layer * 3 * (size_t)c->n_expert, sizeof *u.d->experts)))) {
        if (u.d) free(u.d->layers);
        free(u.d);
        return err_set(WICK_ERR_NOMEM, "out of memory");
    }
    st = up_matrix(&u, &m->tok_embd, &u.d->tok_embd, "embed_tokens", -1);
    if (!st) {
        if (m->lm_head.data == m->tok_embd.data && m->lm_head.dt == m->tok_embd.dt)
            u.d->lm_head = u.d->tok_embd; /* tied: one copy */
        else
            st = up_matrix(&u, &m->lm_head, &u.d->lm_head, "lm_head", -1);
    }
    if (!st) st = up_vector(&u, m->final_norm, c->n_embd, &u.d->final_norm, "final norm", -1);
    for (int l = 0; !st && l < c->n_layer; l++) st = up_layer(&u, l);
    if (!st) st = K->sync(NULL); /* a copy that failed is reported here */
    if (st) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", wick_last_error());
        dev_free(K, u.d);
        (void)K->sync(NULL); /* drain what the frees noted, keeping the first message */
        return err_set(st, "%s", msg);
    }
    m->dev = u.d;
    m->kern = K;
    return WICK_OK;
}

void model_device_free(wick_model *m) {
    if (!m->dev) return;
    dev_free(m->kern, m->dev);
    m->dev = NULL;
}

/* ---- packed layouts of a host table ---- */

static void pack_one(wick_model *m, wk_ctx *ctx, wk_weight *W, int *cap) {
    /* decoders: the quantized types only. f32 panels of a float decoder would double its
       memory (the file layout stays in use: training, merges, other tables) and have not been
       measured against the per-call repack for decode yet; encoders pack them (embed.c). */
    if (!W->data || W->packed || !dtype_is_quant(W->dt)) return;
    size_t bytes = 0;
    void *p = m->kern->pack_weight(ctx, W, &bytes);
    if (!p) return;
    if (m->n_packs == *cap) {
        const int nc = *cap ? 2 * *cap : 64;
        void **b = realloc(m->packs, sizeof *b * (size_t)nc);
        if (b) m->packs = b;
        size_t *z = realloc(m->pack_bytes, sizeof *z * (size_t)nc);
        if (z) m->pack_bytes = z;
        if (!b || !z) {
            m->kern->buf_free(NULL, p, bytes);
            return;
        }
        *cap = nc;
    }
    m->packs[m->n_packs] = p;
    m->pack_bytes[m->n_packs++] = bytes;
    W->packed = p;
    /* the file's pages under it: back to the page cache (whole pages inside the matrix only) */
    const mapfile *mf = m->gguf ? &m->gguf->mf : NULL;
    const size_t n = dtype_row_bytes(W->dt, W->cols) * (size_t)W->rows;
    const uintptr_t a = (uintptr_t)W->data, ps = (uintptr_t)sysconf(_SC_PAGESIZE);
    if (mf && !mf->borrowed && mf->data && a >= (uintptr_t)mf->data &&
        a + n <= (uintptr_t)mf->data + mf->size && ps > 0) {
        const uintptr_t lo = (a + ps - 1) / ps * ps, hi = (a + n) / ps * ps;
        if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
    }
}

void model_pack_weights(wick_model *m) {
    if (m->dev || !m->kern || !m->kern->pack_weight || !kernels_is_host(m->kern)) return;
    /* large models: the panels are written by one thread per core (up to 8) for the length
       of the load; small ones (tests, fuzzing) are not worth starting threads for */
    int64_t quant_bytes = 0;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const layer_weights *L = &m->layers[l];
        const wk_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            if (ws[i]->data && dtype_is_quant(ws[i]->dt))
                quant_bytes += (int64_t)dtype_row_bytes(ws[i]->dt, ws[i]->cols) * ws[i]->rows;
    }
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    wk_pool *pool = quant_bytes >= (32 << 20) && nc > 1 ? pool_create(nc > 8 ? 8 : (int)nc) : NULL;
    wk_ctx ctx = {.pool = pool};
    int cap = m->n_packs;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        layer_weights *L = &m->layers[l];
        wk_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) pack_one(m, pool ? &ctx : NULL, ws[i], &cap);
    }
    pack_one(m, pool ? &ctx : NULL, &m->lm_head, &cap);
    pool_free(pool);
}

void model_pack_free(wick_model *m) {
    for (int i = 0; i < m->n_packs; i++) m->kern->buf_free(NULL, m->packs[i], m->pack_bytes[i]);
    free(m->packs);
    free(m->pack_bytes);
    m->packs = NULL, m->pack_bytes = NULL, m->n_packs = 0;
}
