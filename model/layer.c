/* layer.c — the decoder layer of layer.h, through the kernel table. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/layer.h"

void layer_emit_trace(const wick_model *m, wk_ctx *ctx, layer_trace_fn fn, void *user,
                      const char *name, int l, const float *d, int rows, int cols) {
    if (!fn) return;
    if (kernels_is_host(m->kern)) {
        fn(user, name, l, d, rows, cols);
        return;
    }
    /* a device buffer: staged through host memory (tests only; allocates per call) */
    const size_t bytes = sizeof(float) * (size_t)rows * (size_t)cols;
    float *h = malloc(bytes ? bytes : 1);
    if (!h) return; /* tracing is best effort: the callback sees nothing */
    m->kern->buf_copy(ctx, h, d, bytes);
    fn(user, name, l, h, rows, cols);
    free(h);
}

static void trace(const layer_ctx *lc, const char *name, int l, const float *d, int rows,
                  int cols) {
    if (lc->trace) layer_emit_trace(lc->m, lc->ctx, lc->trace, lc->trace_user, name, l, d, rows, cols);
}

/* Every run's LoRA of (l, proj) added to y's rows in one kernel call (x the projection's
 * input). */
static void lora_add(const layer_ctx *lc, layer_bufs *b, int l, int p, float *y, const float *x) {
    const kernel_table *K = lc->m->kern;
    wk_lora_run runs[64];
    int nr = 0;
    for (int r = 0; r < lc->n_runs; r++) {
        const lora_run *run = &lc->runs[r];
        const lora_pair *pr = &run->pairs[(size_t)l * LORA_N_PROJ + p];
        if (!pr->A.data || run->n <= 0) continue;
        float *keep = b->lora_keep && b->lora_keep[p]
                          ? b->lora_keep[p] + (size_t)run->row0 * (size_t)pr->A.rows
                          : NULL;
        runs[nr++] = (wk_lora_run){run->row0, run->n, &pr->A, &pr->B, pr->scale * run->mult, keep};
        if (nr == 64) {
            K->lora(lc->ctx, y, x, runs, nr, b->lora_t);
            nr = 0;
        }
    }
    if (nr) K->lora(lc->ctx, y, x, runs, nr, b->lora_t);
}

/* y (n, W.rows) = x·Wᵀ + bias, then every run's LoRA of (l, proj). */
static void proj(const layer_ctx *lc, layer_bufs *b, int l, int p, const wk_weight *W,
                 const float *bias, float *y, const float *x, int n) {
    lc->m->kern->matmul(lc->ctx, y, x, W, bias, n);
    lora_add(lc, b, l, p, y, x);
}

/* No run of the pass has a LoRA pair on (l, p). */
static bool no_lora(const layer_ctx *lc, int l, int p) {
    for (int r = 0; r < lc->n_runs; r++)
        if (lc->runs[r].n > 0 && lc->runs[r].pairs[(size_t)l * LORA_N_PROJ + p].A.data) return false;
    return true;
}

/* A pass whose intermediate values nobody reads: not traced, nothing kept for a backward pass
 * (the table's fusions skip the gate, up and projection buffers). */
static bool plain(const layer_ctx *lc, const layer_bufs *b) {
    return !lc->trace && !b->x_in && !b->x_mid && !b->lora_keep && !b->q_raw && !b->k_raw &&
           !b->o_raw && !b->d_raw;
}

/* A mixture-of-experts MLP on xn2 → tmp: router logits (read back to the host on a device
 * table), softmax in f32, the n_expert_used largest per row (earlier expert first on ties),
 * renormalized where the model says; then a plan on the host — each expert's rows, their
 * weights, and where each output goes — uploaded once, and expert by expert over the rows that
 * chose it (gathered, so only chosen experts' matrices are read) each output times its weight
 * added into its row in expert order (scatter_rows; a row's first term is written, the rest
 * added), as transformers' sparse blocks accumulate. */
static void moe_block(const layer_ctx *lc, const layer_weights *w, layer_bufs *b, int n) {
    const model_config *c = &lc->m->cfg;
    const kernel_table *K = lc->m->kern;
    const int E = c->n_expert, k = c->n_expert_used, d = c->n_embd, fe = c->n_ff_expert;
    K->matmul(lc->ctx, b->moe_logits, b->xn2, &w->router, NULL, n);
    float *lg = b->moe_logits;
    if (b->moe_hlogits) { /* a device table: the router's logits come to the host */
        K->buf_copy(lc->ctx, b->moe_hlogits, b->moe_logits, sizeof(float) * (size_t)n * E);
        lg = b->moe_hlogits;
    }
    for (int i = 0; i < n; i++) {
        float *p = lg + (size_t)i * E, mx = p[0], sum = 0.0f;
        for (int e = 1; e < E; e++) mx = p[e] > mx ? p[e] : mx;
        for (int e = 0; e < E; e++) sum += p[e] = expf(p[e] - mx);
        for (int e = 0; e < E; e++) p[e] /= sum;
        int32_t *sel = b->moe_sel + (size_t)i * k;
        float *wt = b->moe_w + (size_t)i * k, tot = 0.0f;
        for (int t = 0; t < k; t++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                bool taken = false;
                for (int u = 0; u < t; u++) taken |= sel[u] == e;
                if (!taken && (best < 0 || p[e] > p[best])) best = e;
            }
            sel[t] = best, wt[t] = p[best], tot += p[best];
        }
        if (c->norm_topk)
            for (int t = 0; t < k; t++) wt[t] /= tot;
    }
    /* the plan, expert by expert: choice i·k + t of row i; a row's first term (its lowest
       expert, run first) written as -(i + 1) */
    int32_t *off = b->moe_off, *ch = b->moe_hchoice;
    int at = 0;
    for (int e = 0; e < E; e++) {
        off[e] = at;
        for (int i = 0; i < n; i++)
            for (int t = 0; t < k; t++)
                if (b->moe_sel[(size_t)i * k + t] == e) ch[at++] = i * k + t;
    }
    off[E] = at;
    for (int j = 0; j < at; j++) {
        const int i = ch[j] / k, e = b->moe_sel[ch[j]];
        int lowest = E;
        for (int t = 0; t < k; t++) lowest = b->moe_sel[(size_t)i * k + t] < lowest ? b->moe_sel[(size_t)i * k + t] : lowest;
        b->moe_hrows[j] = i;
        b->moe_hwrow[j] = b->moe_w[ch[j]];
        b->moe_hsidx[j] = lowest == e ? -(i + 1) : i;
    }
    if (b->moe_rows != b->moe_hrows) { /* a device table: one upload of the plan */
        K->buf_copy(lc->ctx, b->moe_rows, b->moe_hrows, sizeof(int32_t) * (size_t)at);
        K->buf_copy(lc->ctx, b->moe_sidx, b->moe_hsidx, sizeof(int32_t) * (size_t)at);
        K->buf_copy(lc->ctx, b->moe_wrow, b->moe_hwrow, sizeof(float) * (size_t)at);
    }
    for (int e = 0; e < E; e++) {
        const int o = off[e], ne = off[e + 1] - o;
        if (!ne) continue;
        K->gather_rows(lc->ctx, b->moe_x, b->xn2, b->moe_rows + o, ne, d);
        K->matmul(lc->ctx, b->gate, b->moe_x, &w->exp_gate[e], NULL, ne);
        K->matmul(lc->ctx, b->up, b->moe_x, &w->exp_up[e], NULL, ne);
        if (b->moe_keep_g) /* training (host): before silu_mul, which may write h over gate */
            for (int r = 0; r < ne; r++) {
                const size_t q = (size_t)ch[o + r];
                memcpy(b->moe_keep_g + q * fe, b->gate + (size_t)r * fe, sizeof(float) * (size_t)fe);
                memcpy(b->moe_keep_u + q * fe, b->up + (size_t)r * fe, sizeof(float) * (size_t)fe);
            }
        K->silu_mul(lc->ctx, b->h, b->gate, b->up, (long)ne * fe);
        K->matmul(lc->ctx, b->moe_y, b->h, &w->exp_down[e], NULL, ne);
        for (int r = 0; b->moe_keep_y && r < ne; r++)
            memcpy(b->moe_keep_y + (size_t)ch[o + r] * d, b->moe_y + (size_t)r * d,
                   sizeof(float) * (size_t)d);
        K->scatter_rows(lc->ctx, b->tmp, b->moe_y, b->moe_sidx + o, b->moe_wrow + o, ne, d);
    }
}

void layer_forward(const layer_ctx *lc, int l, layer_bufs *b, int n) {
    const wick_model *m = lc->m;
    const model_config *c = &m->cfg;
    const kernel_table *K = m->kern;
    const layer_weights *w = model_klayer(m, l);
    const int d = c->n_embd, hd = c->head_dim;
    void (*rope)(wk_ctx *, float *, int, int, int, int, const int32_t *, const float *,
                 const float *) = m->rope_interleaved ? K->rope_interleaved : K->rope;

    /* attention block */
    if (b->x_in) memcpy(b->x_in, b->x, sizeof(float) * (size_t)n * d);
    K->rmsnorm(lc->ctx, b->xn1, b->x, w->attn_norm, n, d, c->norm_eps);
    trace(lc, "attn_norm", l, b->xn1, n, d);
    if (K->matmul_multi) { /* q, k and v in one pass over xn1 */
        float *const ys[3] = {b->q, b->k, b->v};
        const wk_weight *const Ws[3] = {&w->wq, &w->wk, &w->wv};
        const float *const bs[3] = {w->bq, w->bk, w->bv};
        K->matmul_multi(lc->ctx, 3, ys, b->xn1, Ws, bs, n);
        lora_add(lc, b, l, LORA_Q, b->q, b->xn1);
        lora_add(lc, b, l, LORA_K, b->k, b->xn1);
        lora_add(lc, b, l, LORA_V, b->v, b->xn1);
    } else {
        proj(lc, b, l, LORA_Q, &w->wq, w->bq, b->q, b->xn1, n);
        proj(lc, b, l, LORA_K, &w->wk, w->bk, b->k, b->xn1, n);
        proj(lc, b, l, LORA_V, &w->wv, w->bv, b->v, b->xn1, n);
    }
    if (w->q_norm) { /* Qwen3: RMSNorm over each head's hd values, rows = n·heads; OLMoE:
                        over the whole projection */
        if (b->q_raw) memcpy(b->q_raw, b->q, sizeof(float) * (size_t)n * c->n_head * hd);
        if (b->k_raw) memcpy(b->k_raw, b->k, sizeof(float) * (size_t)n * c->n_kv_head * hd);
        const int f = c->qk_norm_full;
        K->rmsnorm(lc->ctx, b->q, b->q, w->q_norm, f ? n : n * c->n_head, f ? c->n_head * hd : hd, c->norm_eps);
        K->rmsnorm(lc->ctx, b->k, b->k, w->k_norm, f ? n : n * c->n_kv_head, f ? c->n_kv_head * hd : hd,
                   c->norm_eps);
    }
    const bool loc = w->rope_local && lc->rope_cos_local;
    const float *rc = loc ? lc->rope_cos_local : lc->rope_cos, *rs = loc ? lc->rope_sin_local : lc->rope_sin;
    const int32_t *rp = lc->rope_pos ? lc->rope_pos : lc->pos;
    if (K->rope_qk && !m->rope_interleaved) {
        K->rope_qk(lc->ctx, b->q, b->k, n, c->n_head, c->n_kv_head, hd, c->rot_dim, rp, rc, rs);
    } else {
        rope(lc->ctx, b->q, n, c->n_head, hd, c->rot_dim, rp, rc, rs);
        rope(lc->ctx, b->k, n, c->n_kv_head, hd, c->rot_dim, rp, rc, rs);
    }
    lc->attend(lc->attend_user, l, b, n);
    const bool fuse = plain(lc, b);
    if (K->matmul_add && fuse && !w->post_attn_norm && no_lora(lc, l, LORA_O)) {
        K->matmul_add(lc->ctx, b->x, b->tmp, b->att, &w->wo, w->bo, n); /* x += o-proj */
    } else {
        proj(lc, b, l, LORA_O, &w->wo, w->bo, b->tmp, b->att, n);
        if (w->post_attn_norm) {
            if (b->o_raw) memcpy(b->o_raw, b->tmp, sizeof(float) * (size_t)n * d);
            K->rmsnorm(lc->ctx, b->tmp, b->tmp, w->post_attn_norm, n, d, c->norm_eps);
        }
        trace(lc, "attn_out", l, b->tmp, n, d);
        K->add(lc->ctx, b->x, b->tmp, (long)n * d);
    }

    /* MLP block */
    if (b->x_mid) memcpy(b->x_mid, b->x, sizeof(float) * (size_t)n * d);
    K->rmsnorm(lc->ctx, b->xn2, b->x, w->mlp_norm, n, d, c->norm_eps);
    trace(lc, "mlp_norm", l, b->xn2, n, d);
    if (w->exp_gate) {
        moe_block(lc, w, b, n);
    } else {
        const bool gelu = c->act == ACT_GELU_TANH;
        if (K->matmul_glu && fuse && no_lora(lc, l, LORA_GATE) && no_lora(lc, l, LORA_UP)) {
            K->matmul_glu(lc->ctx, b->h, b->gate, b->up, b->xn2, &w->w_gate, &w->w_up, w->b_gate,
                          w->b_up, gelu, n);
        } else {
            proj(lc, b, l, LORA_GATE, &w->w_gate, w->b_gate, b->gate, b->xn2, n);
            proj(lc, b, l, LORA_UP, &w->w_up, w->b_up, b->up, b->xn2, n);
            if (gelu) K->gelu_tanh_mul(lc->ctx, b->h, b->gate, b->up, (long)n * c->n_ff);
            else K->silu_mul(lc->ctx, b->h, b->gate, b->up, (long)n * c->n_ff);
        }
        if (K->matmul_add && fuse && !w->post_mlp_norm && no_lora(lc, l, LORA_DOWN)) {
            K->matmul_add(lc->ctx, b->x, b->tmp, b->h, &w->w_down, w->b_down, n); /* x += down */
            return;
        }
        proj(lc, b, l, LORA_DOWN, &w->w_down, w->b_down, b->tmp, b->h, n);
    }
    if (w->post_mlp_norm) {
        if (b->d_raw) memcpy(b->d_raw, b->tmp, sizeof(float) * (size_t)n * d);
        K->rmsnorm(lc->ctx, b->tmp, b->tmp, w->post_mlp_norm, n, d, c->norm_eps);
    }
    trace(lc, "mlp_out", l, b->tmp, n, d);
    K->add(lc->ctx, b->x, b->tmp, (long)n * d);
    trace(lc, "out", l, b->x, n, d);
}
