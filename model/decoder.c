/* decoder.c — the forward pass of a pre-norm decoder (Qwen2 / LLaMA / Mistral), one
 * config-driven code path through the kernel table:
 *   x = embed(ids)
 *   per layer:  x += o_proj(attn(rope(q), rope(k), v | KV cache))   with RMSNorm before
 *               x += down(silu(gate(xn)) * up(xn))                   with RMSNorm before
 *   logits = lm_head(rmsnorm(x))
 * It processes a chunk of n <= n_batch tokens at the session's position and appends their
 * keys/values to the cache. Nothing here allocates.
 *
 * LoRA (unmerged): when the session has an adapter, every adapted projection y = x·Wᵀ + b
 * gets y += s·(x·Aᵀ)·Bᵀ as two skinny matmuls through the same kernel table into the session's
 * LoRA scratch (t: (n, r), u: (n, out)), with s = the module's α/r × the session's multiplier.
 * The adapter pointer is read once per chunk, so a switch takes effect at the next chunk. */
#include <math.h>
#include <string.h>

#include "lora/lora.h"
#include "model/model.h"

static void trace(wick_session *s, const char *name, int layer, const float *data, int rows,
                  int cols) {
    if (s->trace) s->trace(s->trace_user, name, layer, data, rows, cols);
}

/* Copies this chunk's keys/values (n, n_kv*hd) into the head-major cache of one layer. */
static void store_kv(wick_session *s, int layer, int n) {
    const model_config *c = &s->model->cfg;
    const int hd = c->head_dim, nkv = c->n_kv_head;
    const size_t layer_off = (size_t)layer * nkv * s->n_ctx * hd;
    for (int h = 0; h < nkv; h++) {
        float *K = s->k_cache + layer_off + (size_t)h * s->n_ctx * hd;
        float *V = s->v_cache + layer_off + (size_t)h * s->n_ctx * hd;
        for (int i = 0; i < n; i++) {
            memcpy(K + (size_t)(s->pos + i) * hd, s->k + ((size_t)i * nkv + h) * hd,
                   sizeof(float) * hd);
            memcpy(V + (size_t)(s->pos + i) * hd, s->v + ((size_t)i * nkv + h) * hd,
                   sizeof(float) * hd);
        }
    }
}

/* y (n, out) += s · (x·Aᵀ)·Bᵀ for the adapter's (layer, proj) pair, if it has one. */
static inline void lora_add(wick_session *s, const kernel_table *K, const wick_adapter *ad,
                            float mult, int layer, int proj, float *y, const float *x, int n) {
    const lora_pair *p = lora_get(ad, layer, proj);
    if (!p->A.data) return;
    const float sc = p->scale * mult;
    const long nr = (long)n * p->A.rows;
    K->matmul(s->pool, s->lora_t, x, &p->A, NULL, n);          /* (n, r) */
    for (long i = 0; i < nr; i++) s->lora_t[i] *= sc;
    K->matmul(s->pool, s->lora_u, s->lora_t, &p->B, NULL, n);  /* (n, out) */
    K->add(s->pool, y, s->lora_u, (long)n * p->B.rows);
}

void decoder_forward(wick_session *s, const int32_t *ids, int n, float *logits, bool all_rows) {
    const wick_model *m = s->model;
    const model_config *c = &m->cfg;
    const kernel_table *K = m->kern;
    wk_pool *pool = s->pool;
    const int d = c->n_embd, hd = c->head_dim, half = hd / 2;
    const float scale = 1.0f / sqrtf((float)hd);
    /* GGUF llama files carry q/k rows permuted for adjacent-pair RoPE */
    void (*rope)(wk_pool *, float *, int, int, int, const float *, const float *) =
        m->rope_interleaved ? K->rope_interleaved : K->rope;
    const float *cos = s->rope_cos + (size_t)s->pos * half;
    const float *sin = s->rope_sin + (size_t)s->pos * half;

    const wick_adapter *ad = s->adapter;  /* read once: a switch applies from the next chunk */
    const float mult = s->adapter_scale;
    /* remember which ids (and adapter settings) the cache holds, for prefix reuse */
    const uint64_t uid = ad ? ad->uid : 0;
    if (s->pos == 0) {
        s->kv_mixed = false;
        s->kv_adapter_uid = uid;
        s->kv_adapter_scale = ad ? mult : 0.0f;
    } else if (uid != s->kv_adapter_uid || (ad ? mult : 0.0f) != s->kv_adapter_scale) {
        s->kv_mixed = true;
    }
    memcpy(s->hist + s->pos, ids, sizeof(int32_t) * (size_t)n);
#define LORA(proj, y, xin) \
    if (ad) lora_add(s, K, ad, mult, l, proj, y, xin, n)

    K->embed(pool, s->x, &m->tok_embd, ids, n);
    trace(s, "embed", -1, s->x, n, d);

    for (int l = 0; l < c->n_layer; l++) {
        const layer_weights *w = &m->layers[l];
        const size_t layer_off = (size_t)l * c->n_kv_head * s->n_ctx * hd;

        /* attention block */
        K->rmsnorm(pool, s->xn, s->x, w->attn_norm, n, d, c->norm_eps);
        trace(s, "attn_norm", l, s->xn, n, d);
        K->matmul(pool, s->q, s->xn, &w->wq, w->bq, n);
        LORA(LORA_Q, s->q, s->xn);
        K->matmul(pool, s->k, s->xn, &w->wk, w->bk, n);
        LORA(LORA_K, s->k, s->xn);
        K->matmul(pool, s->v, s->xn, &w->wv, w->bv, n);
        LORA(LORA_V, s->v, s->xn);
        rope(pool, s->q, n, c->n_head, hd, cos, sin);
        rope(pool, s->k, n, c->n_kv_head, hd, cos, sin);
        store_kv(s, l, n);
        K->attention(pool, s->att, s->q, s->k_cache + layer_off, s->v_cache + layer_off, n,
                     s->pos, c->n_head, c->n_kv_head, hd, s->n_ctx, w->window, scale,
                     s->attn_scratch);
        K->matmul(pool, s->tmp, s->att, &w->wo, w->bo, n);
        LORA(LORA_O, s->tmp, s->att);
        trace(s, "attn_out", l, s->tmp, n, d);
        K->add(pool, s->x, s->tmp, (long)n * d);

        /* MLP block */
        K->rmsnorm(pool, s->xn, s->x, w->mlp_norm, n, d, c->norm_eps);
        trace(s, "mlp_norm", l, s->xn, n, d);
        K->matmul(pool, s->gate, s->xn, &w->w_gate, w->b_gate, n);
        LORA(LORA_GATE, s->gate, s->xn);
        K->matmul(pool, s->up, s->xn, &w->w_up, w->b_up, n);
        LORA(LORA_UP, s->up, s->xn);
        K->silu_mul(pool, s->gate, s->gate, s->up, (long)n * c->n_ff);
        K->matmul(pool, s->tmp, s->gate, &w->w_down, w->b_down, n);
        LORA(LORA_DOWN, s->tmp, s->gate);
        trace(s, "mlp_out", l, s->tmp, n, d);
        K->add(pool, s->x, s->tmp, (long)n * d);
        trace(s, "out", l, s->x, n, d);
    }
#undef LORA
    s->pos += n;

    if (!logits && !s->trace) return;
    /* Only the rows whose logits are wanted go through the final norm and the LM head. */
    const int first = all_rows ? 0 : n - 1, rows = all_rows ? n : 1;
    K->rmsnorm(pool, s->xn, s->x + (size_t)first * d, m->final_norm, rows, d, c->norm_eps);
    trace(s, "final_norm", -1, s->xn, rows, d);
    if (logits) K->matmul(pool, logits, s->xn, &m->lm_head, NULL, rows);
}
