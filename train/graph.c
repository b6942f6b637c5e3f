/* graph.c — the training forward and backward of the decoder with unmerged LoRA, over a batch
 * of sequences, and the causal-LM cross-entropy.
 *
 * Forward (per layer, rows N = batch·T, full causal attention inside each sequence from
 * position 0, no KV cache):
 *   xn1 = rmsnorm(x)·w1;  q,k,v = xn1·Wᵀ + b + s·(xn1·Aᵀ)·Bᵀ;  rope(q), rope(k)
 *   att = softmax(q·kᵀ/√hd + causal) · v  (GQA);  x += att·Woᵀ (+ LoRA)
 *   xn2 = rmsnorm(x)·w2;  h = silu(gate(xn2))·up(xn2);  x += down(h)
 *   logits = rmsnorm(x)·wf · lm_headᵀ
 * Everything the backward needs is kept (train_layer_acts); nothing is recomputed but the
 * per-row RMS. The base projections of the forward go through the model's kernel table (any
 * weight dtype); the backward's products with frozen weights (dx = dy·W) use sgemm on f32
 * rows (converted 64 rows at a time for non-f32 weights); LoRA products use sgemm.
 *
 * Backward: gradients flow through every op to every trained tensor (grad_scale·dL/dθ is
 * accumulated into tr->grad; the scale enters once, in dlogits). LoRA mode: lora_A / lora_B
 * only, and the gradient is not carried below layer 0's norm (the embedding is frozen). Full
 * mode (tr->full, every matrix f32): dW += dyᵀ·x for every projection and the LM head,
 * column sums of dy for biases, the norms' weights, and rows of the embedding scattered from
 * the gradient at layer 0's input (a tied head adds its product to the same rows).
 * Not here: dropout, gradient checkpointing, KV caching, a fused (flash) attention: the T×T
 * probabilities of every head are kept, B·n_head·T² floats per layer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "base/error.h"
#include "model/layer.h"
#include "train/train.h"

/* ---- arena --------------------------------------------------------------------------- */

static float *take(float **cur, size_t n) {
    float *p = *cur;
    *cur += (n + 15) & ~(size_t)15;   /* 64-byte steps keep every buffer aligned */
    return p;
}

/* Sizes (and, when base != NULL, carves) every buffer for B sequences of T tokens. */
static size_t layout(wick_trainer *tr, int B, int T, float *base) {
    const model_config *c = &tr->model->cfg;
    const size_t N = (size_t)B * T, d = c->n_embd, hd = c->head_dim;
    const size_t qd = (size_t)c->n_head * hd, kvd = (size_t)c->n_kv_head * hd, ff = c->n_ff;
    const size_t V = c->n_vocab;
    const int r_max = tr->adapter ? tr->adapter->r_max : 0;
    /* experts: E of them, k chosen per row, each fe wide; the MLP buffers hold either width */
    const size_t E = (size_t)c->n_expert, kk = (size_t)c->n_expert_used, fe = (size_t)c->n_ff_expert;
    const size_t ffm = E && fe > ff ? fe : ff;
    float dummy_mem = 0, *cur = base ? base : &dummy_mem;
    float *start = cur;
    size_t total = 0;
#define TAKE(dst, n)                                   \
    do {                                               \
        size_t n_ = (n);                               \
        float *p_ = take(&cur, n_);                    \
        if (base) (dst) = p_;                          \
        total += (n_ + 15) & ~(size_t)15;              \
    } while (0)
    float *ignore = NULL;
    for (int l = 0; l < c->n_layer; l++) {
        train_layer_acts *a = base ? &tr->acts[l] : NULL;
        TAKE(*(a ? &a->x_in : &ignore), N * d);
        TAKE(*(a ? &a->xn1 : &ignore), N * d);
        TAKE(*(a ? &a->q : &ignore), N * qd);
        TAKE(*(a ? &a->k : &ignore), N * kvd);
        TAKE(*(a ? &a->v : &ignore), N * kvd);
        if (a) a->q_raw = a->k_raw = a->o_raw = a->d_raw = NULL;
        if (tr->model->layers[l].post_attn_norm) {
            TAKE(*(a ? &a->o_raw : &ignore), N * d);
            TAKE(*(a ? &a->d_raw : &ignore), N * d);
        }
        if (c->qk_norm) {
            TAKE(*(a ? &a->q_raw : &ignore), N * qd);
            TAKE(*(a ? &a->k_raw : &ignore), N * kvd);
        }
        TAKE(*(a ? &a->p : &ignore), (size_t)B * c->n_head * T * T);
        TAKE(*(a ? &a->att : &ignore), N * qd);
        TAKE(*(a ? &a->x_mid : &ignore), N * d);
        TAKE(*(a ? &a->xn2 : &ignore), N * d);
        TAKE(*(a ? &a->g : &ignore), N * ffm);
        TAKE(*(a ? &a->u : &ignore), N * ffm);
        TAKE(*(a ? &a->h : &ignore), N * ffm);
        if (a) a->moe_p = a->moe_w = a->moe_g = a->moe_u = a->moe_y = NULL, a->moe_sel = NULL;
        if (tr->model->layers[l].exp_gate) {
            float *sel = NULL; /* int32 choices, stored in float slots of the same size */
            TAKE(*(a ? &a->moe_p : &ignore), N * E);
            TAKE(*(a ? &a->moe_w : &ignore), N * kk);
            TAKE(*(a ? &sel : &ignore), N * kk);
            TAKE(*(a ? &a->moe_g : &ignore), N * kk * fe);
            TAKE(*(a ? &a->moe_u : &ignore), N * kk * fe);
            TAKE(*(a ? &a->moe_y : &ignore), N * kk * d);
            if (a) a->moe_sel = (int32_t *)sel;
        }
        for (int p = 0; p < LORA_N_PROJ && tr->adapter; p++) {
            const lora_pair *pr = lora_get(tr->adapter, l, p);
            if (a) a->t[p] = NULL;
            if (pr->A.data) TAKE(*(a ? &a->t[p] : &ignore), N * (size_t)pr->A.rows);
        }
    }
    size_t maxw = d > qd ? d : qd;
    if (ffm > maxw) maxw = ffm;
    TAKE(tr->x_final, N * d);
    TAKE(tr->xn_final, N * d);
    TAKE(tr->logits, N * V);
    TAKE(tr->rope_cos, (size_t)T * hd / 2);
    TAKE(tr->rope_sin, (size_t)T * hd / 2);
    TAKE(tr->rope_nsin, (size_t)T * hd / 2);
    TAKE(tr->dx, N * d);
    TAKE(tr->dxn, N * d);
    TAKE(tr->dq, N * qd);
    TAKE(tr->dk, N * kvd);
    TAKE(tr->dv, N * kvd);
    TAKE(tr->datt, N * qd);
    TAKE(tr->dg, N * ffm);
    TAKE(tr->du, N * ffm);
    TAKE(tr->dh, N * ffm);
    if (base) tr->moe_x = tr->moe_y = tr->moe_wrow = tr->moe_dx = tr->moe_dy = tr->moe_dw = tr->moe_dl = NULL;
    if (base) tr->moe_rows = tr->moe_sidx = tr->moe_choice = tr->moe_off = NULL;
    if (E) { /* int32 arrays in float slots of the same size */
        float *rows = NULL, *sidx = NULL, *choice = NULL, *off = NULL;
        TAKE(tr->moe_x, N * d);
        TAKE(tr->moe_y, N * d);
        TAKE(tr->moe_wrow, N * kk);
        TAKE(rows, N * kk);
        TAKE(sidx, N * kk);
        TAKE(choice, N * kk);
        TAKE(off, E + 1);
        TAKE(tr->moe_dx, N * d);
        TAKE(tr->moe_dy, N * d);
        TAKE(tr->moe_dw, N * kk);
        TAKE(tr->moe_dl, N * E);
        if (base) {
            tr->moe_rows = (int32_t *)rows, tr->moe_sidx = (int32_t *)sidx;
            tr->moe_choice = (int32_t *)choice, tr->moe_off = (int32_t *)off;
        }
    }
    TAKE(tr->dt, N * (size_t)(r_max ? r_max : 1));
    TAKE(tr->ds, (size_t)T * T);
    if (base) tr->dk_raw = tr->ds2 = tr->rope_cos_l = tr->rope_sin_l = tr->rope_nsin_l = NULL;
    if (c->qk_norm) TAKE(tr->dk_raw, N * kvd);
    if (c->attn_softcap > 0) TAKE(tr->ds2, (size_t)T * T);
    if (tr->model->rope_inv_freq_local) {
        TAKE(tr->rope_cos_l, (size_t)T * hd / 2);
        TAKE(tr->rope_sin_l, (size_t)T * hd / 2);
        TAKE(tr->rope_nsin_l, (size_t)T * hd / 2);
    }
    TAKE(tr->wrow, 64 * maxw);
    float *pos_mem = NULL;          /* int32 positions, stored in the float arena (same size) */
    TAKE(pos_mem, N);
    if (base) tr->pos = (int32_t *)pos_mem;
#undef TAKE
    (void)start;
    return total;
}

static wick_status ensure_arena(wick_trainer *tr, int B, int T) {
    if (tr->arena && B == tr->cap_B && T == tr->cap_T) return WICK_OK;
    const size_t need = layout(tr, B, T, NULL);
    if (need > tr->arena_floats) {
        free(tr->arena);
        tr->arena = aligned_alloc(64, need * sizeof(float));
        if (!tr->arena) {
            tr->arena_floats = 0;
            tr->cap_B = tr->cap_T = 0;
            return err_set(WICK_ERR_NOMEM, "out of memory for training activations (%d x %d "
                                           "tokens: %.1f MiB)", B, T,
                           (double)need * 4 / (1 << 20));
        }
        tr->arena_floats = need;
    }
    layout(tr, B, T, tr->arena);
    tr->cap_B = B;
    tr->cap_T = T;
    const model_config *c = &tr->model->cfg;
    const wick_model *m = tr->model;
    const int half = c->rot_dim / 2;  /* rotated pairs (Phi-3: partial rotary) */
    for (int i = 0; i < B * T; i++) tr->pos[i] = i % T;   /* each sequence from position 0 */
    for (int t = 0; t < 2; t++) {
        const float *inv = t ? m->rope_inv_freq_local : m->rope_inv_freq;
        if (!inv) continue;
        /* longrope as the forward decides it: sequences past the original context use the long
           factors, and cos/sin carry the attention factor (model/forward.c) */
        float af = 1.0f;
        if (!t && m->rope_inv_freq_long) {
            af = c->rope_attn_factor;
            if (T > c->rope_orig_ctx) inv = m->rope_inv_freq_long;
        }
        float *cs = t ? tr->rope_cos_l : tr->rope_cos, *sn = t ? tr->rope_sin_l : tr->rope_sin;
        float *ns = t ? tr->rope_nsin_l : tr->rope_nsin;
        for (int pos = 0; pos < T; pos++)
            for (int i = 0; i < half; i++) {
                float ang = (float)pos * inv[i];   /* as the session does */
                cs[(size_t)pos * half + i] = cosf(ang) * af;
                sn[(size_t)pos * half + i] = sinf(ang) * af;
                ns[(size_t)pos * half + i] = -sinf(ang) * af;
            }
    }
    return WICK_OK;
}

/* ---- building blocks ----------------------------------------------------------------- */

/* dx (n, W.cols) += dy (n, W.rows) · W, W in any dtype. */
static void frozen_bwd(wick_trainer *tr, float *dx, const float *dy, int n, const wk_weight *W) {
    const int out = (int)W->rows, in = (int)W->cols;
    if (W->dt == DT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out,
                    W->data, in, 1.0f, dx, in);
        return;
    }
    for (int o0 = 0; o0 < out; o0 += 64) {
        const int rows = out - o0 < 64 ? out - o0 : 64;
        for (int r = 0; r < rows; r++) kernels_row_to_f32(tr->wrow + (size_t)r * in, W, o0 + r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, rows, 1.0f, dy + o0, out,
                    tr->wrow, in, 1.0f, dx, in);
    }
}

/* Backward of a projection y = x·Wᵀ + b (+ LoRA): dx += dy·W (+ LoRA path); in full mode
 * dW += dyᵀ·x and db += Σ rows of dy, in LoRA mode the grads of A and B. dy already carries
 * the gradient scale. */
static void proj_bwd(wick_trainer *tr, int l, int p, const wk_weight *W, float *dx,
                     const float *dy, const float *x, const float *t, int n) {
    frozen_bwd(tr, dx, dy, n, W);
    if (tr->full) {
        const train_layer_grads *g = &tr->lg[l];
        const int out = (int)W->rows, in = (int)W->cols;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in,
                    1.0f, g->w[p], in);
        if (g->b[p])
            for (int i = 0; i < n; i++) {
                const float *di = dy + (size_t)i * out;
                for (int o = 0; o < out; o++) g->b[p][o] += di[o];
            }
        return;
    }
    const lora_pair *pr = lora_get(tr->adapter, l, p);
    if (!pr->A.data) return;
    const train_slot *sl = NULL;
    for (int i = 0; i < tr->n_slots; i++)
        if (tr->slots[i].layer == l && tr->slots[i].proj == p) sl = &tr->slots[i];
    const int r = (int)pr->A.rows, in = (int)pr->A.cols, out = (int)pr->B.rows;
    const float s = pr->scale;
    /* dB (out, r) += s · dyᵀ·t */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, r, n, s, dy, out, t, r, 1.0f,
                tr->grad + sl->off_b, r);
    /* dt (n, r) = s · dy·B */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, r, out, s, dy, out, pr->B.data, r,
                0.0f, tr->dt, r);
    /* dA (r, in) += dtᵀ·x */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, in, n, 1.0f, tr->dt, r, x, in, 1.0f,
                tr->grad + sl->off_a, in);
    /* dx (n, in) += dt·A */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, r, 1.0f, tr->dt, r,
                pr->A.data, in, 1.0f, dx, in);
}

/* dx (n, d) += backward of y = x / rms(x) · w given dy; x is the norm's input. dw (optional):
 * dw[j] += Σ_i dy_ij · x_ij / rms(x_i). */
static void rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w,
                        int n, int d, float eps) {
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d, *gi = dy + (size_t)i * d;
        float *o = dx + (size_t)i * d;
        double ss = 0, dot = 0;
        for (int j = 0; j < d; j++) {
            ss += (double)xi[j] * xi[j];
            dot += (double)gi[j] * w[j] * xi[j];
        }
        const double rinv = 1.0 / sqrt(ss / d + eps);
        const double c = dot * rinv * rinv * rinv / d;
        for (int j = 0; j < d; j++) o[j] += (float)(rinv * gi[j] * w[j] - c * xi[j]);
        if (dw)
            for (int j = 0; j < d; j++) dw[j] += (float)(gi[j] * xi[j] * rinv);
    }
}

/* Causal attention of one sequence (T rows starting at row 0 of q/k/v) with GQA, saving the
 * probabilities P (n_head, T, T). Per head, two products through sgemm: S = scale·Q·Kᵀ (the
 * full T×T, then the causal / sliding-window mask and the softmax per row), O = P·V. */
static void attn_fwd(const model_config *c, int window, int T, const float *q, const float *k,
                     const float *v, float *P, float *out) {
    const int hd = c->head_dim, nh = c->n_head, nkv = c->n_kv_head, grp = nh / nkv;
    const int qd = nh * hd, kvd = nkv * hd;
    const float scale = c->attn_scale, cap = c->attn_softcap;
    for (int h = 0; h < nh; h++) {
        const int g = h / grp;
        float *S = P + (size_t)h * T * T;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q + (size_t)h * hd,
                    qd, k + (size_t)g * hd, kvd, 0.0f, S, T);
        for (int i = 0; i < T; i++) {
            float *pr = S + (size_t)i * T;
            const int j0 = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
            if (cap > 0) /* Gemma 2: (s / cap), tanh, times cap */
                for (int j = j0; j <= i; j++) pr[j] = tanhf(pr[j] / cap) * cap;
            float mx = -INFINITY;
            for (int j = j0; j <= i; j++) mx = pr[j] > mx ? pr[j] : mx;
            float sum = 0;
            for (int j = 0; j < T; j++) {
                const float e = j >= j0 && j <= i ? expf(pr[j] - mx) : 0.0f;
                pr[j] = e;
                sum += e;
            }
            const float inv = 1.0f / sum;
            for (int j = j0; j <= i; j++) pr[j] *= inv;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, S, T,
                    v + (size_t)g * hd, kvd, 0.0f, out + (size_t)h * hd, qd);
    }
}

/* Backward of attn_fwd for one sequence: dq, dk, dv (written, not accumulated); scratch
 * (T, T). Per head: dP = dO·Vᵀ, dV += Pᵀ·dO, dS = P∘(dP − rowsum(P∘dP))·scale,
 * dQ = dS·K, dK += dSᵀ·Q. Soft-capped scores (Gemma 2) also multiply dS by 1 − tanh²(s/cap),
 * with s recomputed into scratch2 (T, T). */
static void attn_bwd(const model_config *c, int T, const float *q, const float *k,
                     const float *v, const float *P, const float *dout, float *dq, float *dk,
                     float *dv, float *scratch, float *scratch2) {
    const int hd = c->head_dim, nh = c->n_head, nkv = c->n_kv_head, grp = nh / nkv;
    const int qd = nh * hd, kvd = nkv * hd;
    const float scale = c->attn_scale, cap = c->attn_softcap;
    memset(dk, 0, sizeof(float) * (size_t)T * kvd);
    memset(dv, 0, sizeof(float) * (size_t)T * kvd);
    for (int h = 0; h < nh; h++) {
        const int g = h / grp;
        const float *Ph = P + (size_t)h * T * T, *dOh = dout + (size_t)h * hd;
        float *dS = scratch;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, dOh, qd,
                    v + (size_t)g * hd, kvd, 0.0f, dS, T);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, Ph, T, dOh, qd,
                    1.0f, dv + (size_t)g * hd, kvd);
        if (cap > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q + (size_t)h * hd,
                        qd, k + (size_t)g * hd, kvd, 0.0f, scratch2, T);
        for (int i = 0; i < T; i++) {
            const float *pr = Ph + (size_t)i * T;
            float *ds = dS + (size_t)i * T;
            float Di = 0;
            for (int j = 0; j <= i; j++) Di += pr[j] * ds[j];
            for (int j = 0; j < T; j++) ds[j] = pr[j] * (ds[j] - Di) * scale;
            if (cap > 0)
                for (int j = 0; j <= i; j++) {
                    const float th = tanhf(scratch2[(size_t)i * T + j] / cap);
                    ds[j] *= 1.0f - th * th;
                }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, dS, T,
                    k + (size_t)g * hd, kvd, 0.0f, dq + (size_t)h * hd, qd);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, dS, T,
                    q + (size_t)h * hd, qd, 1.0f, dk + (size_t)g * hd, kvd);
    }
}

/* The training forward's attention (layer_attend_fn): whole sequences of T rows, causal
 * from position 0, probabilities kept for the backward. */
typedef struct train_attend_ctx {
    wick_trainer *tr;
    int B, T;
} train_attend_ctx;

static void train_attend(void *user, int l, layer_bufs *lb, int n) {
    const train_attend_ctx *ta = user;
    const model_config *c = &ta->tr->model->cfg;
    const int T = ta->T, qd = c->n_head * c->head_dim, kvd = c->n_kv_head * c->head_dim;
    float *P = ta->tr->acts[l].p;
    (void)n;
    for (int b = 0; b < ta->B; b++)
        attn_fwd(c, ta->tr->model->layers[l].window, T, lb->q + (size_t)b * T * qd,
                 lb->k + (size_t)b * T * kvd, lb->v + (size_t)b * T * kvd,
                 P + (size_t)b * c->n_head * T * T, lb->att + (size_t)b * T * qd);
}

/* Backward of a mixture-of-experts MLP (model/layer.c moe_block) given dy at its output:
 * adds the gradient at its input xn2 to tr->dxn. Output_i = Σ_t w_it · E_(s_it)(xn2_i), so
 * dw_it = dy_i · E_(s_it)(xn2_i) and each expert's rows get w_it · dy_i, back through its down,
 * SiLU-gated and gate/up products (frozen); the weights are the router's softmax at the chosen
 * experts, divided by their sum where the family renormalizes, whose backward reaches the
 * router logits and through the router's matrix xn2. The choice itself has no gradient. In
 * full mode also d(router) = dlogitsᵀ·xn2 and each expert's d(gate), d(up), d(down) from the
 * rows that chose it (layer l's train_layer_grads). */
static void moe_bwd(wick_trainer *tr, const layer_weights *w, const train_layer_acts *a,
                    const float *dy, int N, int l) {
    const model_config *c = &tr->model->cfg;
    const train_layer_grads *g = tr->full ? &tr->lg[l] : NULL; /* full: the weights' grads too */
    const int E = c->n_expert, k = c->n_expert_used, d = c->n_embd, fe = c->n_ff_expert;
    for (int i = 0; i < N; i++)
        for (int t = 0; t < k; t++) {
            const float *y = a->moe_y + ((size_t)i * k + t) * d, *g = dy + (size_t)i * d;
            float sum = 0.0f;
            for (int j = 0; j < d; j++) sum += g[j] * y[j];
            tr->moe_dw[(size_t)i * k + t] = sum;
        }
    for (int e = 0; e < E; e++) {
        int ne = 0;
        for (int i = 0; i < N * k; i++)
            if (a->moe_sel[i] == e) tr->moe_rows[ne++] = i;   /* choice index i·k + t */
        if (!ne) continue;
        for (int j = 0; j < ne; j++) {
            const int at = tr->moe_rows[j];
            const float s = a->moe_w[at], *g = dy + (size_t)(at / k) * d;
            float *o = tr->moe_dy + (size_t)j * d;
            for (int q = 0; q < d; q++) o[q] = s * g[q];
        }
        memset(tr->dh, 0, sizeof(float) * (size_t)ne * fe);
        frozen_bwd(tr, tr->dh, tr->moe_dy, ne, &w->exp_down[e]);
        for (int j = 0; j < ne; j++) {
            const size_t at = (size_t)tr->moe_rows[j] * fe, o = (size_t)j * fe;
            for (int f = 0; f < fe; f++) {
                const float g = a->moe_g[at + f], u = a->moe_u[at + f], sg = 1.0f / (1.0f + expf(-g));
                tr->du[o + f] = tr->dh[o + f] * g * sg;
                tr->dg[o + f] = tr->dh[o + f] * u * sg * (1.0f + g * (1.0f - sg));
            }
        }
        memset(tr->moe_dx, 0, sizeof(float) * (size_t)ne * d);
        frozen_bwd(tr, tr->moe_dx, tr->dg, ne, &w->exp_gate[e]);
        frozen_bwd(tr, tr->moe_dx, tr->du, ne, &w->exp_up[e]);
        if (g) { /* full: the expert's matrices, from its rows only */
            for (int j = 0; j < ne; j++) { /* its input rows (xn2) and h = silu(g)·u (over dh) */
                const int at = tr->moe_rows[j];
                memcpy(tr->moe_x + (size_t)j * d, a->xn2 + (size_t)(at / k) * d, sizeof(float) * (size_t)d);
                const float *gg = a->moe_g + (size_t)at * fe, *uu = a->moe_u + (size_t)at * fe;
                float *hh = tr->dh + (size_t)j * fe;
                for (int f = 0; f < fe; f++) hh[f] = gg[f] / (1.0f + expf(-gg[f])) * uu[f];
            }
            /* d(gate) (fe, d) += dgᵀ·x, d(up) likewise with du, d(down) (d, fe) += (w·dy)ᵀ·h */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, fe, d, ne, 1.0f, tr->dg, fe,
                        tr->moe_x, d, 1.0f, g->exp[e], d);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, fe, d, ne, 1.0f, tr->du, fe,
                        tr->moe_x, d, 1.0f, g->exp[E + e], d);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, fe, ne, 1.0f, tr->moe_dy, d,
                        tr->dh, fe, 1.0f, g->exp[2 * E + e], fe);
        }
        for (int j = 0; j < ne; j++) {
            float *o = tr->dxn + (size_t)(tr->moe_rows[j] / k) * d;
            const float *g = tr->moe_dx + (size_t)j * d;
            for (int q = 0; q < d; q++) o[q] += g[q];
        }
    }
    for (int i = 0; i < N; i++) {
        const float *p = a->moe_p + (size_t)i * E, *wt = a->moe_w + (size_t)i * k;
        const float *dw = tr->moe_dw + (size_t)i * k;
        const int32_t *sel = a->moe_sel + (size_t)i * k;
        float *dl = tr->moe_dl + (size_t)i * E;
        memset(dl, 0, sizeof(float) * (size_t)E);  /* dl holds d(loss)/dp first */
        if (c->norm_topk) { /* w_t = p_t / S, S = Σ chosen p: dp_t = (dw_t − Σ_u dw_u w_u) / S */
            float S = 0.0f, dot = 0.0f;
            for (int t = 0; t < k; t++) S += p[sel[t]], dot += dw[t] * wt[t];
            for (int t = 0; t < k; t++) dl[sel[t]] = (dw[t] - dot) / S;
        } else {
            for (int t = 0; t < k; t++) dl[sel[t]] = dw[t];
        }
        float dot = 0.0f; /* softmax: dlogit_e = p_e (dp_e − Σ p·dp) */
        for (int q = 0; q < E; q++) dot += p[q] * dl[q];
        for (int q = 0; q < E; q++) dl[q] = p[q] * (dl[q] - dot);
    }
    frozen_bwd(tr, tr->dxn, tr->moe_dl, N, &w->router);
    if (g) /* full: d(router) (E, d) += dlogitsᵀ·xn2 */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, E, d, N, 1.0f, tr->moe_dl, E,
                    a->xn2, d, 1.0f, g->router, d);
}

/* ---- the pass ------------------------------------------------------------------------ */

wick_status train_forward_backward(wick_trainer *tr, const int32_t *ids, const int32_t *labels,
                                   int B, int T, bool backward, float gs, float *loss_out,
                                   int64_t *n_targets, float *logits_out) {
    const wick_model *m = tr->model;
    const model_config *c = &m->cfg;
    const kernel_table *K = m->kern;
    wk_ctx *ctx = &tr->ctx;
    if (!ids || B < 1 || T < 1 || (int64_t)B * T > (1 << 24))
        return err_set(WICK_ERR_INVALID_ARG, "training batch: need ids, batch >= 1 and "
                                             "seq_len >= 1 (got batch %d, seq_len %d)", B, T);
    for (int64_t i = 0; i < (int64_t)B * T; i++) {
        if (ids[i] < 0 || ids[i] >= c->n_vocab)
            return err_set(WICK_ERR_INVALID_ARG, "training batch: id %d at index %lld is outside "
                                                 "the vocabulary [0, %d)", ids[i], (long long)i,
                           c->n_vocab);
        if (labels && labels[i] != -100 && (labels[i] < 0 || labels[i] >= c->n_vocab))
            return err_set(WICK_ERR_INVALID_ARG, "training batch: label %d at index %lld is "
                                                 "neither -100 nor a vocabulary id", labels[i],
                           (long long)i);
    }
    wick_status st = ensure_arena(tr, B, T);
    if (st) return st;
    const int N = B * T, d = c->n_embd, hd = c->head_dim;
    const int qd = c->n_head * hd, kvd = c->n_kv_head * hd, ff = c->n_ff;
    const int64_t V = c->n_vocab;
    void (*rope)(wk_ctx *, float *, int, int, int, int, const int32_t *, const float *,
                 const float *) = m->rope_interleaved ? K->rope_interleaved : K->rope;

    /* forward: the inference layer (model/layer.c) over all B·T rows with one adapter run,
       every activation kept in this layer's acts, attention per sequence saving P */
    float *x = tr->x_final;  /* running residual; each layer copies its input into acts */
    K->embed(ctx, x, &m->tok_embd, ids, N);
    if (c->embed_scale > 0) K->axpy(ctx, x, c->embed_scale - 1.0f, x, (long)N * d); /* as forward.c */
    train_attend_ctx ta = {tr, B, T};
    const lora_run run = {0, N, tr->adapter ? tr->adapter->pairs : NULL, 1.0f};
    const layer_ctx lc = {.m = m, .ctx = ctx, .pos = tr->pos, .rope_cos = tr->rope_cos,
                          .rope_sin = tr->rope_sin, .runs = &run, .n_runs = tr->adapter ? 1 : 0,
                          .rope_cos_local = tr->rope_cos_l, .rope_sin_local = tr->rope_sin_l,
                          .attend = train_attend, .attend_user = &ta};
    for (int l = 0; l < c->n_layer; l++) {
        train_layer_acts *a = &tr->acts[l];
        layer_bufs lb = {.x = x, .x_in = a->x_in, .x_mid = a->x_mid, .xn1 = a->xn1,
                         .xn2 = a->xn2, .q = a->q, .k = a->k, .v = a->v, .att = a->att,
                         .q_raw = a->q_raw, .k_raw = a->k_raw, .o_raw = a->o_raw, .d_raw = a->d_raw,
                         .gate = a->g, .up = a->u, .h = a->h, .tmp = tr->dxn,
                         .lora_keep = a->t, .lora_t = tr->dt,
                         .moe_x = tr->moe_x, .moe_y = tr->moe_y, .moe_logits = a->moe_p,
                         .moe_wrow = tr->moe_wrow, .moe_rows = tr->moe_rows,
                         .moe_sidx = tr->moe_sidx, .moe_w = a->moe_w, .moe_hwrow = tr->moe_wrow,
                         .moe_sel = a->moe_sel, .moe_hrows = tr->moe_rows,
                         .moe_hsidx = tr->moe_sidx, .moe_hchoice = tr->moe_choice,
                         .moe_off = tr->moe_off, .moe_keep_g = a->moe_g, .moe_keep_u = a->moe_u,
                         .moe_keep_y = a->moe_y};
        layer_forward(&lc, l, &lb, N);
    }
    K->rmsnorm(ctx, tr->xn_final, x, m->final_norm, N, d, c->norm_eps);
    K->matmul(ctx, tr->logits, tr->xn_final, &m->lm_head, NULL, N);
    if (c->final_softcap > 0) K->softcap(ctx, tr->logits, (long)N * V, c->final_softcap);
    if (logits_out) memcpy(logits_out, tr->logits, sizeof(float) * (size_t)N * V);

    /* loss: row (b, t) predicts label (b, t+1); dlogits overwrite the logits */
    int64_t cnt = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < T; t++) {
            const int32_t y = labels ? labels[(size_t)b * T + t + 1] : ids[(size_t)b * T + t + 1];
            cnt += y != -100;
        }
    double sum = 0;
    const float inv_cnt = cnt ? 1.0f / (float)cnt : 0.0f;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *row = tr->logits + ((size_t)b * T + t) * V;
            const int32_t y = t + 1 >= T ? -100
                              : labels   ? labels[(size_t)b * T + t + 1]
                                         : ids[(size_t)b * T + t + 1];
            if (y == -100) {
                memset(row, 0, sizeof(float) * V);
                continue;
            }
            float mx = row[0];
            for (int64_t j = 1; j < V; j++) mx = row[j] > mx ? row[j] : mx;
            /* f32 exponentials (the vocabulary is large), summed in double */
            double se = 0;
            for (int64_t j = 0; j < V; j++) se += expf(row[j] - mx);
            const double lse = mx + log(se);
            sum += lse - row[y];
            /* d(mean CE)/dlogit = (softmax − onehot) / cnt, times the caller's scale */
            const float f = gs * inv_cnt, lsef = (float)lse, cap = c->final_softcap;
                    for (int64_t j = 0; j < V; j++) {
                float g = expf(row[j] - lsef) * f - (j == y ? f : 0.0f);
                if (cap > 0) { /* through Gemma 2's final cap: y = cap·tanh(z/cap), dy/dz = 1 − (y/cap)² */
                    const float r = row[j] / cap;
                    g *= 1.0f - r * r;
                }
                row[j] = g;
            }
        }
    if (loss_out) *loss_out = cnt ? (float)(sum / (double)cnt) : 0.0f;
    if (n_targets) *n_targets = cnt;
    if (!backward || cnt == 0) return WICK_OK;

    /* backward: dx = d(loss)/d(residual stream) */
    float *dx = tr->dx;
    memset(tr->dxn, 0, sizeof(float) * (size_t)N * d);
    frozen_bwd(tr, tr->dxn, tr->logits, N, &m->lm_head);
    if (tr->full) /* d(lm_head) (V, d) += dlogitsᵀ · xn_final; a tied head is the embedding */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)V, d, N, 1.0f, tr->logits,
                    (int)V, tr->xn_final, d, 1.0f, tr->g_head ? tr->g_head : tr->g_embd, d);
    memset(dx, 0, sizeof(float) * (size_t)N * d);
    rmsnorm_bwd(dx, tr->g_final_norm, tr->dxn, x, m->final_norm, N, d, c->norm_eps);
    for (int l = c->n_layer - 1; l >= 0; l--) {
        const layer_weights *w = &m->layers[l];
        const train_layer_acts *a = &tr->acts[l];
        /* MLP block: x_out = x_mid + down(h) (Gemma: + rmsnorm(down(h))) */
        const float *dy = dx;
        if (w->post_mlp_norm) {
            memset(tr->dxn, 0, sizeof(float) * (size_t)N * d);
            rmsnorm_bwd(tr->dxn, tr->full ? tr->lg[l].post_mlp_norm : NULL, dx, a->d_raw,
                        w->post_mlp_norm, N, d, c->norm_eps);
            dy = tr->dxn;
        }
        if (w->exp_gate) { /* no MoE family norms its block output: dy is dx, not dxn */
            memset(tr->dxn, 0, sizeof(float) * (size_t)N * d);
            moe_bwd(tr, w, a, dy, N, l);
        } else {
            memset(tr->dh, 0, sizeof(float) * (size_t)N * ff);
            proj_bwd(tr, l, LORA_DOWN, &w->w_down, tr->dh, dy, a->h, a->t[LORA_DOWN], N);
            if (c->act == ACT_GELU_TANH) {
                /* h = gelu(g)·u, gelu(g) = g/2·(1 + tanh(β(g + κg³))) */
                const float beta = 0.7978845608028654f, kappa = 0.044715f;
                for (size_t i = 0; i < (size_t)N * ff; i++) {
                    const float g = a->g[i], th = tanhf(beta * (g + kappa * g * g * g));
                    const float ge = 0.5f * g * (1.0f + th);
                    const float dge = 0.5f * (1.0f + th) + 0.5f * g * (1.0f - th * th) * beta * (1.0f + 3.0f * kappa * g * g);
                    tr->du[i] = tr->dh[i] * ge;
                    tr->dg[i] = tr->dh[i] * a->u[i] * dge;
                }
            } else {
                for (size_t i = 0; i < (size_t)N * ff; i++) {
                    const float g = a->g[i], sg = 1.0f / (1.0f + expf(-g));
                    tr->du[i] = tr->dh[i] * g * sg;
                    tr->dg[i] = tr->dh[i] * a->u[i] * sg * (1.0f + g * (1.0f - sg));
                }
            }
            memset(tr->dxn, 0, sizeof(float) * (size_t)N * d);
            proj_bwd(tr, l, LORA_GATE, &w->w_gate, tr->dxn, tr->dg, a->xn2, a->t[LORA_GATE], N);
            proj_bwd(tr, l, LORA_UP, &w->w_up, tr->dxn, tr->du, a->xn2, a->t[LORA_UP], N);
        }
        rmsnorm_bwd(dx, tr->full ? tr->lg[l].mlp_norm : NULL, tr->dxn, a->x_mid, w->mlp_norm, N,
                    d, c->norm_eps);
        /* attention block: x_mid = x_in + o(att) (Gemma: + rmsnorm(o(att))) */
        dy = dx;
        if (w->post_attn_norm) {
            memset(tr->dxn, 0, sizeof(float) * (size_t)N * d);
            rmsnorm_bwd(tr->dxn, tr->full ? tr->lg[l].post_attn_norm : NULL, dx, a->o_raw,
                        w->post_attn_norm, N, d, c->norm_eps);
            dy = tr->dxn;
        }
        memset(tr->datt, 0, sizeof(float) * (size_t)N * qd);
        proj_bwd(tr, l, LORA_O, &w->wo, tr->datt, dy, a->att, a->t[LORA_O], N);
        for (int b = 0; b < B; b++) {
            const size_t oq = (size_t)b * T * qd, ok = (size_t)b * T * kvd;
            attn_bwd(c, T, a->q + oq, a->k + ok, a->v + ok, a->p + (size_t)b * c->n_head * T * T,
                     tr->datt + oq, tr->dq + oq, tr->dk + ok, tr->dv + ok, tr->ds, tr->ds2);
            /* RoPE is a rotation: its transpose rotates by −angle (Gemma 3's sliding layers:
               their own tables) */
            const bool loc = w->rope_local && tr->rope_cos_l;
            const float *rc = loc ? tr->rope_cos_l : tr->rope_cos, *rn = loc ? tr->rope_nsin_l : tr->rope_nsin;
            rope(ctx, tr->dq + oq, T, c->n_head, hd, c->rot_dim, tr->pos, rc, rn);
            rope(ctx, tr->dk + ok, T, c->n_kv_head, hd, c->rot_dim, tr->pos, rc, rn);
        }
        /* per-head q/k norm (Qwen3): back to the projections' outputs; datt is free again */
        float *dq = tr->dq, *dk = tr->dk;
        if (c->qk_norm) { /* per head, or over the whole projection (OLMoE) */
            const int f = c->qk_norm_full;
            memset(tr->datt, 0, sizeof(float) * (size_t)N * qd);
            memset(tr->dk_raw, 0, sizeof(float) * (size_t)N * kvd);
            rmsnorm_bwd(tr->datt, tr->full ? tr->lg[l].q_norm : NULL, tr->dq, a->q_raw, w->q_norm,
                        f ? N : N * c->n_head, f ? qd : hd, c->norm_eps);
            rmsnorm_bwd(tr->dk_raw, tr->full ? tr->lg[l].k_norm : NULL, tr->dk, a->k_raw, w->k_norm,
                        f ? N : N * c->n_kv_head, f ? kvd : hd, c->norm_eps);
            dq = tr->datt, dk = tr->dk_raw;
        }
        memset(tr->dxn, 0, sizeof(float) * (size_t)N * d);
        proj_bwd(tr, l, LORA_Q, &w->wq, tr->dxn, dq, a->xn1, a->t[LORA_Q], N);
        proj_bwd(tr, l, LORA_K, &w->wk, tr->dxn, dk, a->xn1, a->t[LORA_K], N);
        proj_bwd(tr, l, LORA_V, &w->wv, tr->dxn, tr->dv, a->xn1, a->t[LORA_V], N);
        if (l > 0 || tr->full)
            rmsnorm_bwd(dx, tr->full ? tr->lg[l].attn_norm : NULL, tr->dxn, a->x_in,
                        w->attn_norm, N, d, c->norm_eps);
    }
    if (tr->full) { /* dx is now the gradient at the embedding's output rows (Gemma: x·√d) */
        const float es = c->embed_scale > 0 ? c->embed_scale : 1.0f;
        for (int i = 0; i < N; i++) {
            /* transformers' decoders build their embedding with padding_idx = pad_token_id:
               the lookup of the pad token passes no gradient to its row (a tied head's use
               of that row still does, above) */
            if (ids[i] == c->pad_id) continue;
            float *ge = tr->g_embd + (size_t)ids[i] * d;
            const float *di = dx + (size_t)i * d;
            for (int j = 0; j < d; j++) ge[j] += di[j] * es;
        }
    }
    return WICK_OK;
}
