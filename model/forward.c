/* forward.c — the batched inference forward of forward.h:
 *   x = embed(ids)
 *   per layer: layer_forward (layer.c) with attention = kv_store + paged attention per span
 *   logits[out_rows] = lm_head(rmsnorm(x[out_rows]))
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "model/forward.h"

static float *take(fwd_state *f, size_t floats, bool *ok) {
    const size_t bytes = sizeof(float) * (floats ? floats : 1);
    float *p = f->m->kern->buf_alloc(f->ctx, bytes);
    if (!p) *ok = false;
    f->bytes += bytes;
    return p;
}

static void give(fwd_state *f, float *p, size_t floats) {
    if (p) f->m->kern->buf_free(f->ctx, p, sizeof(float) * (floats ? floats : 1));
}

/* Buffer sizes in floats, in one place for init and free. */
enum { B_X, B_XN, B_Q, B_K, B_V, B_ATT, B_TMP, B_GATE, B_UP, B_COS, B_SIN, B_COSL, B_SINL,
       B_MX, B_MY, B_ML, B_MWR, B_MROWS, B_MSIDX, B_RPOS, B_N };

static void sizes(const fwd_state *f, size_t *sz) {
    const model_config *c = &f->m->cfg;
    const size_t R = (size_t)f->cap_rows, d = (size_t)c->n_embd;
    const size_t qd = (size_t)c->n_head * c->head_dim, kvd = (size_t)c->n_kv_head * c->head_dim;
    sz[B_X] = sz[B_XN] = sz[B_TMP] = R * d;
    sz[B_Q] = sz[B_ATT] = R * qd;
    sz[B_K] = sz[B_V] = R * kvd;
    sz[B_GATE] = sz[B_UP] = R * (size_t)(c->n_ff > c->n_ff_expert ? c->n_ff : c->n_ff_expert);
    /* mixture of experts (int32 arrays stored in float slots of the same size) */
    const size_t E = (size_t)c->n_expert, k = (size_t)c->n_expert_used;
    sz[B_MX] = sz[B_MY] = E ? R * d : 0;
    sz[B_ML] = R * E;
    sz[B_MWR] = sz[B_MROWS] = sz[B_MSIDX] = R * k; /* the plan: one entry per choice */
    /* longrope: the short factors' rows, then the long factors' (rope_pos picks) */
    sz[B_COS] = sz[B_SIN] = (size_t)f->max_pos * (size_t)(c->rot_dim / 2) * (f->m->rope_inv_freq_long ? 2 : 1);
    sz[B_RPOS] = f->m->rope_inv_freq_long ? R : 0;
    sz[B_COSL] = sz[B_SINL] = f->m->rope_inv_freq_local ? sz[B_COS] : 0;
}

static float **slot(fwd_state *f, int i) {
    float **s[B_N] = {&f->x, &f->xn, &f->q, &f->k, &f->v, &f->att, &f->tmp, &f->gate, &f->up,
                      &f->rope_cos, &f->rope_sin, &f->rope_cos_l, &f->rope_sin_l,
                      &f->moe_x, &f->moe_y, &f->moe_logits, &f->moe_wrow, &f->moe_rows,
                      &f->moe_sidx, &f->rope_pos};
    return s[i];
}

wick_status fwd_init(fwd_state *f, const wick_model *m, wk_ctx *ctx, int cap_rows, int max_pos) {
    memset(f, 0, sizeof *f);
    f->m = m;
    f->ctx = ctx;
    f->cap_rows = cap_rows < 1 ? 1 : cap_rows;
    f->max_pos = max_pos < 1 ? 1 : max_pos;
    size_t sz[B_N];
    sizes(f, sz);
    bool ok = true;
    for (int i = 0; i < B_N; i++) *slot(f, i) = take(f, sz[i], &ok);
    if (m->rope_inv_freq_long && !(f->rope_pos_host = malloc(sizeof(int32_t) * (size_t)f->cap_rows)))
        ok = false;
    const size_t R = (size_t)f->cap_rows, E = (size_t)m->cfg.n_expert, nk = R * (size_t)m->cfg.n_expert_used;
    if (E && ok) { /* routing and the plan on the host (layer.h) */
        const bool host = kernels_is_host(m->kern);
        const size_t words = (host ? 0 : R * E + 3 * nk) + 3 * nk + E + 1;
        uint32_t *h = f->moe_host = malloc(sizeof(uint32_t) * words);
        if (!h) {
            ok = false;
        } else {
            f->moe_sel = (int32_t *)h, h += nk;
            f->moe_w = (float *)h, h += nk;
            f->moe_hchoice = (int32_t *)h, h += nk;
            f->moe_off = (int32_t *)h, h += E + 1;
            if (host) {
                f->moe_hlogits = NULL;
                f->moe_hrows = (int32_t *)f->moe_rows, f->moe_hsidx = (int32_t *)f->moe_sidx;
                f->moe_hwrow = f->moe_wrow;
            } else {
                f->moe_hlogits = (float *)h, h += R * E;
                f->moe_hrows = (int32_t *)h, h += nk;
                f->moe_hsidx = (int32_t *)h, h += nk;
                f->moe_hwrow = (float *)h;
            }
        }
    }
    if (!ok) {
        fwd_free(f);
        return err_set(WICK_ERR_NOMEM, "out of memory for activations of %d rows", cap_rows);
    }
    /* cos/sin of pos * inv_freq with the angle rounded to f32 first, as transformers does;
       built on the host and copied to the backend */
    const int half = m->cfg.rot_dim / 2;
    const size_t nt = (size_t)f->max_pos * (size_t)half * (m->rope_inv_freq_long ? 2 : 1);
    float *cs = malloc(sizeof(float) * (nt ? nt : 1)), *sn = malloc(sizeof(float) * (nt ? nt : 1));
    if (!cs || !sn) {
        free(cs), free(sn);
        fwd_free(f);
        return err_set(WICK_ERR_NOMEM, "out of memory for RoPE tables of %d positions", max_pos);
    }
    const float af = m->cfg.rope_attn_factor;
    for (int t = 0; t < 2; t++) {
        const float *inv = t ? m->rope_inv_freq_local : m->rope_inv_freq;
        if (!inv) continue;
        for (int pos = 0; pos < f->max_pos; pos++)
            for (int i = 0; i < half; i++) {
                const float ang = (float)pos * inv[i];
                cs[(size_t)pos * half + i] = cosf(ang);
                sn[(size_t)pos * half + i] = sinf(ang);
            }
        if (!t && m->rope_inv_freq_long) /* longrope: the long rows, and both times the factor */
            for (size_t row = 0; row < 2 * (size_t)f->max_pos; row++)
                for (int i = 0; i < half; i++) {
                    const size_t o = row * half + i;
                    if (row >= (size_t)f->max_pos) {
                        const float ang = (float)(row - (size_t)f->max_pos) * m->rope_inv_freq_long[i];
                        cs[o] = cosf(ang), sn[o] = sinf(ang);
                    }
                    cs[o] *= af, sn[o] *= af;
                }
        m->kern->buf_copy(ctx, t ? f->rope_cos_l : f->rope_cos, cs, sizeof(float) * nt);
        m->kern->buf_copy(ctx, t ? f->rope_sin_l : f->rope_sin, sn, sizeof(float) * nt);
    }
    free(cs), free(sn);
    wick_status st = m->kern->sync(ctx); /* a device copy that failed shows up here */
    if (st) fwd_free(f);
    return st;
}

wick_status fwd_reserve_rank(fwd_state *f, int r) {
    if (r <= f->cap_rank) return WICK_OK;
    bool ok = true;
    float *t = take(f, (size_t)f->cap_rows * (size_t)r, &ok);
    if (!ok) return err_set(WICK_ERR_NOMEM, "out of memory for the LoRA scratch of rank %d", r);
    give(f, f->lora_t, (size_t)f->cap_rows * (size_t)f->cap_rank);
    f->bytes -= sizeof(float) * (size_t)f->cap_rows * (size_t)(f->cap_rank ? f->cap_rank : 0);
    f->lora_t = t;
    f->cap_rank = r;
    return WICK_OK;
}

void fwd_free(fwd_state *f) {
    if (!f->m) return;
    size_t sz[B_N];
    sizes(f, sz);
    for (int i = 0; i < B_N; i++) give(f, *slot(f, i), sz[i]);
    free(f->rope_pos_host);
    free(f->moe_host);
    if (f->lora_t) give(f, f->lora_t, (size_t)f->cap_rows * (size_t)f->cap_rank);
    memset(f, 0, sizeof *f);
}

typedef struct attend_ctx {
    fwd_state *f;
    kv_pool *kv;
    const fwd_batch *b;
} attend_ctx;

static void attend(void *user, int l, layer_bufs *lb, int n) {
    const attend_ctx *a = user;
    const wick_model *m = a->f->m;
    const model_config *c = &m->cfg;
    wk_kv_layer view;
    kv_pool_layer(a->kv, l, &view);
    m->kern->kv_store(a->f->ctx, &view, lb->k, lb->v, a->b->spans, a->b->n_spans, c->n_kv_head,
                      c->head_dim);
    m->kern->attention(a->f->ctx, lb->att, lb->q, &view, a->b->spans, a->b->n_spans, c->n_head,
                       c->n_kv_head, c->head_dim, m->layers[l].window, c->attn_scale,
                       c->attn_softcap);
    (void)n;
}

void model_forward(fwd_state *f, kv_pool *kv, const fwd_batch *b) {
    const wick_model *m = f->m;
    const model_config *c = &m->cfg;
    const kernel_table *K = m->kern;
    const int n = b->n, d = c->n_embd;
    if (n <= 0) return;
    attend_ctx ac = {f, kv, b};
    if (m->rope_inv_freq_long) {
        /* longrope, as transformers decides it per forward: a sequence whose rows here reach
           past original_max_position_embeddings uses the long factors (table rows max_pos..) */
        for (int s = 0; s < b->n_spans; s++) {
            const wk_span *sp = &b->spans[s];
            const bool lng = sp->pos0 + sp->n > c->rope_orig_ctx;
            for (int i = 0; i < sp->n; i++)
                f->rope_pos_host[sp->row0 + i] = sp->pos0 + i + (lng ? f->max_pos : 0);
        }
        K->buf_copy(f->ctx, f->rope_pos, f->rope_pos_host, sizeof(int32_t) * (size_t)n);
    }
    layer_ctx lc = {.m = m, .ctx = f->ctx, .pos = b->pos, .rope_cos = f->rope_cos,
                    .rope_sin = f->rope_sin, .runs = b->runs, .n_runs = b->n_runs,
                    .rope_cos_local = m->rope_inv_freq_local ? f->rope_cos_l : NULL,
                    .rope_pos = m->rope_inv_freq_long ? (const int32_t *)f->rope_pos : NULL,
                    .rope_sin_local = m->rope_inv_freq_local ? f->rope_sin_l : NULL,
                    .attend = attend, .attend_user = &ac, .trace = f->trace,
                    .trace_user = f->trace_user};
    layer_bufs lb = {.x = f->x, .xn1 = f->xn, .xn2 = f->xn, .q = f->q, .k = f->k, .v = f->v,
                     .att = f->att, .gate = f->gate, .up = f->up, .h = f->gate, .tmp = f->tmp,
                     .lora_t = f->lora_t, .moe_x = f->moe_x, .moe_y = f->moe_y,
                     .moe_logits = f->moe_logits, .moe_wrow = f->moe_wrow,
                     .moe_rows = (int32_t *)f->moe_rows, .moe_sidx = (int32_t *)f->moe_sidx,
                     .moe_hlogits = f->moe_hlogits, .moe_w = f->moe_w, .moe_hwrow = f->moe_hwrow,
                     .moe_sel = f->moe_sel, .moe_hrows = f->moe_hrows, .moe_hsidx = f->moe_hsidx,
                     .moe_hchoice = f->moe_hchoice, .moe_off = f->moe_off};
    K->embed(f->ctx, f->x, model_ktok_embd(m), b->ids, n);
    /* Gemma: rows times √hidden; x + (s − 1)·x is x·s (s − 1 is exact for s ≥ 1; with a
       fused multiply-add, one rounding) */
    if (c->embed_scale > 0) K->axpy(f->ctx, f->x, c->embed_scale - 1.0f, f->x, (long)n * d);
    layer_emit_trace(m, f->ctx, f->trace, f->trace_user, "embed", -1, f->x, n, d);
    for (int l = 0; l < c->n_layer; l++) layer_forward(&lc, l, &lb, n);
    if (b->n_out <= 0) return;
    /* only the wanted rows go through the final norm and the LM head */
    K->gather_rows(f->ctx, f->tmp, f->x, b->out_rows, b->n_out, d);
    float *xn = b->hidden ? b->hidden : f->xn;
    K->rmsnorm(f->ctx, xn, f->tmp, model_kfinal_norm(m), b->n_out, d, c->norm_eps);
    layer_emit_trace(m, f->ctx, f->trace, f->trace_user, "final_norm", -1, xn, b->n_out, d);
    if (b->logits) K->matmul(f->ctx, b->logits, xn, model_klm_head(m), NULL, b->n_out);
    if (b->logits && c->final_softcap > 0) /* Gemma 2 */
        K->softcap(f->ctx, b->logits, (long)b->n_out * c->n_vocab, c->final_softcap);
}
