/* encoder_forward.c — the BERT / XLM-R / MPNet forward pass over a packed batch (encoder.h):
 *   x = LN(word[id] + pos[p] + type[t])          (no type term for MPNet)
 *   per layer:  x = LN(x + (attn(x·Wqᵀ+bq, x·Wkᵀ+bk, x·Wvᵀ+bv))·Woᵀ + bo)
 *               x = LN(x + gelu(x·W1ᵀ + b1)·W2ᵀ + b2)
 * with bidirectional attention inside each sequence and exact erf GELU. MPNet's scores get
 * rel_bias[bucket(j - i)][head] added before the softmax, the same table in every layer.
 *
 * Every op goes through the kernel table (embed, add, matmul, layernorm, gelu,
 * attention_enc: kernels/ref defines them, kernels/cpu runs them). Not here: loading
 * (encoder.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "model/encoder.h"

/* ---- scratch --------------------------------------------------------------------------- */

void encoder_scratch_free(encoder_scratch *s) {
    free(s->x); free(s->q); free(s->k); free(s->v); free(s->a); free(s->t);
    free(s->f); free(s->pos); free(s->types);
    memset(s, 0, sizeof *s);
}

static wick_status grow(void **p, size_t bytes) {
    void *n = realloc(*p, bytes ? bytes : 1);
    if (!n) return err_set(WICK_ERR_NOMEM, "encoder: out of memory for %zu bytes of scratch",
                           bytes);
    *p = n;
    return WICK_OK;
}

wick_status encoder_scratch_reserve(encoder_scratch *s, const encoder_config *c, int n_tok) {
    wick_status st = WICK_OK;
    if (n_tok > s->cap_tok) {
        size_t d = (size_t)n_tok * (size_t)c->n_embd * sizeof(float);
        if ((st = grow((void **)&s->x, d)) || (st = grow((void **)&s->q, d)) ||
            (st = grow((void **)&s->k, d)) || (st = grow((void **)&s->v, d)) ||
            (st = grow((void **)&s->a, d)) || (st = grow((void **)&s->t, d)) ||
            (st = grow((void **)&s->f, (size_t)n_tok * (size_t)c->n_ff * sizeof(float))) ||
            (st = grow((void **)&s->pos, (size_t)n_tok * sizeof(int32_t))) ||
            (st = grow((void **)&s->types, (size_t)n_tok * sizeof(int32_t))))
            return st;
        s->cap_tok = n_tok;
    }
    return WICK_OK;
}

/* Below this many elements the embedding gathers and adds run on the calling thread: waking
 * the pool (and waiting for every worker) costs more than the work. */
#define SMALL_OP (1L << 16)

/* ---- forward --------------------------------------------------------------------------- */

void encoder_forward(const encoder_model *m, const kernel_table *k, wk_pool *pool,
                     encoder_scratch *s, const int32_t *ids, const int32_t *type_ids,
                     const int *lens, int n_seq) {
    const encoder_config *c = &m->cfg;
    const int d = c->n_embd;
    int T = 0;
    for (int i = 0; i < n_seq; i++) {
        if (c->pos_pad < 0) {
            for (int p = 0; p < lens[i]; p++) s->pos[T + p] = p;
        } else {
            /* HF's create_position_ids_from_input_ids: a padding token keeps padding_idx and
               does not advance the count, the others count on from padding_idx + 1 */
            int32_t next = c->pos_pad;
            for (int p = 0; p < lens[i]; p++)
                s->pos[T + p] = ids[T + p] == c->pos_pad ? c->pos_pad : ++next;
        }
        for (int p = 0; p < lens[i]; p++) s->types[T + p] = type_ids ? type_ids[T + p] : 0;
        T += lens[i];
    }
    /* embeddings: x (T, d); gathers and adds are memory-bound, threads only for big batches */
    wk_ctx kc = {.pool = pool}, ec = {.pool = (long)T * d < SMALL_OP ? NULL : pool};
    wk_ctx *ep = &ec;
    k->embed(ep, s->x, &m->tok_embd, ids, T);
    k->embed(ep, s->t, &m->pos_embd, s->pos, T);
    k->add(ep, s->x, s->t, (long)T * d);
    if (c->n_types) {
        k->embed(ep, s->t, &m->type_embd, s->types, T);
        k->add(ep, s->x, s->t, (long)T * d);
    }
    k->layernorm(&kc, s->x, NULL, m->emb_ln_w, m->emb_ln_b, T, d, c->ln_eps);

    for (int li = 0; li < c->n_layer; li++) {
        const encoder_layer *l = &m->layers[li];
        if (k->matmul_multi) { /* one job for the three products (the same sums) */
            float *const ys[3] = {s->q, s->k, s->v};
            const wk_weight *const Ws[3] = {&l->wq, &l->wk, &l->wv};
            const float *const bs[3] = {l->bq, l->bk, l->bv};
            k->matmul_multi(&kc, 3, ys, s->x, Ws, bs, T);
        } else {
            k->matmul(&kc, s->q, s->x, &l->wq, l->bq, T);
            k->matmul(&kc, s->k, s->x, &l->wk, l->bk, T);
            k->matmul(&kc, s->v, s->x, &l->wv, l->bv, T);
        }
        k->attention_enc(&kc, s->a, s->q, s->k, s->v, lens, n_seq, c->n_head, c->head_dim,
                         1.0f / sqrtf((float)c->head_dim), m->rel_bias, m->rel_bucket,
                         c->max_tokens);
        k->matmul(&kc, s->t, s->a, &l->wo, l->bo, T);
        k->layernorm(&kc, s->x, s->t, l->ln1_w, l->ln1_b, T, d, c->ln_eps);
        if (k->matmul_gelu) {
            k->matmul_gelu(&kc, s->f, s->x, &l->w_up, l->b_up, T);
        } else {
            k->matmul(&kc, s->f, s->x, &l->w_up, l->b_up, T);
            k->gelu(&kc, s->f, (long)T * c->n_ff);
        }
        k->matmul(&kc, s->t, s->f, &l->w_down, l->b_down, T);
        k->layernorm(&kc, s->x, s->t, l->ln2_w, l->ln2_b, T, d, c->ln_eps);
    }
}

void encoder_pooler(const encoder_model *m, const kernel_table *k, wk_pool *pool, float *out,
                    const float *cls, int n, long stride, float *tmp) {
    const int d = m->cfg.n_embd;
    wk_ctx kc = {.pool = pool};
    for (int i = 0; i < n; i++) memcpy(tmp + (size_t)i * d, cls + i * stride, sizeof(float) * d);
    k->matmul(&kc, out, tmp, &m->pool_w, m->pool_b, n);
    for (long i = 0; i < (long)n * d; i++) out[i] = tanhf(out[i]);
}
