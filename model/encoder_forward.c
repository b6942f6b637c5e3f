/* encoder_forward.c — the BERT / XLM-R / MPNet forward pass over a packed batch (encoder.h):
 *   x = LN(word[id] + pos[p] + type[t])          (no type term for MPNet)
 *   per layer:  x = LN(x + (attn(x·Wqᵀ+bq, x·Wkᵀ+bk, x·Wvᵀ+bv))·Woᵀ + bo)
 *               x = LN(x + gelu(x·W1ᵀ + b1)·W2ᵀ + b2)
 * with bidirectional attention inside each sequence and exact erf GELU. MPNet's scores get
 * rel_bias[bucket(j - i)][head] added before the softmax, the same table in every layer.
 *
 * Matrix products, embedding gathers, residual adds and softmax go through the kernel table.
 * LayerNorm (with residual), GELU and non-causal attention over a packed batch are not in the
 * table yet; they are written here as plain threaded loops (static helpers) and are the
 * candidates to move into kernels/ref + kernels/cpu. Not here: loading (encoder.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "model/encoder.h"

/* ---- scratch --------------------------------------------------------------------------- */

void encoder_scratch_free(encoder_scratch *s) {
    free(s->x); free(s->q); free(s->k); free(s->v); free(s->a); free(s->t);
    free(s->f); free(s->pos); free(s->types); free(s->scores);
    memset(s, 0, sizeof *s);
}

static wick_status grow(void **p, size_t bytes) {
    void *n = realloc(*p, bytes ? bytes : 1);
    if (!n) return err_set(WICK_ERR_NOMEM, "encoder: out of memory for %zu bytes of scratch",
                           bytes);
    *p = n;
    return WICK_OK;
}

wick_status encoder_scratch_reserve(encoder_scratch *s, const encoder_config *c, int n_tok,
                                    int max_len, int n_threads) {
    if (n_threads < 1) n_threads = 1;
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
    if (max_len > s->cap_len || n_threads > s->cap_threads) {
        int len = max_len > s->cap_len ? max_len : s->cap_len;
        int th = n_threads > s->cap_threads ? n_threads : s->cap_threads;
        if ((st = grow((void **)&s->scores, (size_t)len * (size_t)th * sizeof(float)))) return st;
        s->cap_len = len;
        s->cap_threads = th;
    }
    return WICK_OK;
}

/* ---- LayerNorm with residual: x = LN(x + r) (r may be NULL) ------------------------------ */

typedef struct ln_job {
    float *x;
    const float *r, *w, *b;
    int n, d;
    float eps;
} ln_job;

static void ln_rows(void *ctx, int tid, int nt) {
    const ln_job *J = ctx;
    long lo, hi;
    pool_split(J->n, nt, tid, 1, &lo, &hi);
    for (long i = lo; i < hi; i++) {
        float *x = J->x + i * J->d;
        if (J->r) {
            const float *r = J->r + i * J->d;
            for (int j = 0; j < J->d; j++) x[j] += r[j];
        }
        /* Two passes in double: the golden tolerance is 1e-5 after several layers, and the
           variance of a residual stream with a large mean loses bits in one-pass f32. */
        double mean = 0, var = 0;
        for (int j = 0; j < J->d; j++) mean += x[j];
        mean /= J->d;
        for (int j = 0; j < J->d; j++) {
            double c = x[j] - mean;
            var += c * c;
        }
        var /= J->d;
        float inv = (float)(1.0 / sqrt(var + (double)J->eps)), m = (float)mean;
        for (int j = 0; j < J->d; j++) x[j] = (x[j] - m) * inv * J->w[j] + J->b[j];
    }
}

/* Below this many elements an elementwise op runs on the calling thread: waking the pool
 * (and waiting for every worker) costs more than the work, badly so on a loaded machine. */
#define SMALL_OP (1L << 16)

static void layernorm(wk_pool *pool, float *x, const float *r, const float *w, const float *b,
                      int n, int d, float eps) {
    ln_job J = {x, r, w, b, n, d, eps};
    pool_run((long)n * d < SMALL_OP ? NULL : pool, ln_rows, &J);
}

/* ---- exact GELU: 0.5·x·(1 + erf(x/√2)), in place -------------------------------------- */

typedef struct gelu_job {
    float *x;
    long n;
} gelu_job;

static void gelu_part(void *ctx, int tid, int nt) {
    const gelu_job *J = ctx;
    long lo, hi;
    pool_split(J->n, nt, tid, 16, &lo, &hi);
    for (long i = lo; i < hi; i++) {
        float v = J->x[i];
        J->x[i] = 0.5f * v * (1.0f + erff(v * (float)M_SQRT1_2));
    }
}

static void gelu(wk_pool *pool, float *x, long n) {
    gelu_job J = {x, n};
    pool_run(n < SMALL_OP / 4 ? NULL : pool, gelu_part, &J);
}

/* ---- bidirectional attention inside each sequence of a packed batch --------------------- */

typedef struct attn_job {
    const kernel_table *k;
    float *out;                 /* (T, d) */
    const float *q, *kk, *v;    /* (T, d) each, head h at columns [h*hd, (h+1)*hd) */
    const int *lens;
    int n_seq, n_head, hd, d;
    float scale;
    const float *rel_bias;      /* MPNet: (n_buckets, n_head), else NULL */
    const int32_t *rel_bucket;  /* bucket of distance r at [r + max_tokens - 1] */
    int max_tokens;
    float *scores;              /* per thread: cap_len floats */
    int cap_len;
    long next;                  /* work counter: item = seq * n_head + head */
} attn_job;

static void attn_items(void *ctx, int tid, int nt) {
    attn_job *J = ctx;
    float *sc = J->scores + (size_t)tid * J->cap_len;
    const long n_items = (long)J->n_seq * J->n_head;
    const int hd = J->hd, d = J->d;
    for (long it; (it = pool_claim(&J->next)) < n_items;) {
        int s = (int)(it / J->n_head), h = (int)(it % J->n_head);
        long off = 0;
        for (int i = 0; i < s; i++) off += J->lens[i];
        const int len = J->lens[s];
        for (int i = 0; i < len; i++) {
            const float *qi = J->q + (off + i) * d + h * hd;
            for (int j = 0; j < len; j++) {
                const float *kj = J->kk + (off + j) * d + h * hd;
                float dot = 0;
                for (int e = 0; e < hd; e++) dot += qi[e] * kj[e];
                sc[j] = dot * J->scale;
            }
            if (J->rel_bias) {
                const int32_t *bk = J->rel_bucket + (J->max_tokens - 1 - i);  /* j - i */
                for (int j = 0; j < len; j++) sc[j] += J->rel_bias[bk[j] * J->n_head + h];
            }
            J->k->softmax(sc, len);
            float *o = J->out + (off + i) * d + h * hd;
            memset(o, 0, sizeof(float) * (size_t)hd);
            for (int j = 0; j < len; j++) {
                const float *vj = J->v + (off + j) * d + h * hd;
                const float p = sc[j];
                for (int e = 0; e < hd; e++) o[e] += p * vj[e];
            }
        }
    }
}

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
    layernorm(pool, s->x, NULL, m->emb_ln_w, m->emb_ln_b, T, d, c->ln_eps);

    for (int li = 0; li < c->n_layer; li++) {
        const encoder_layer *l = &m->layers[li];
        k->matmul(&kc, s->q, s->x, &l->wq, l->bq, T);
        k->matmul(&kc, s->k, s->x, &l->wk, l->bk, T);
        k->matmul(&kc, s->v, s->x, &l->wv, l->bv, T);
        attn_job J = {.k = k, .out = s->a, .q = s->q, .kk = s->k, .v = s->v, .lens = lens,
                      .n_seq = n_seq, .n_head = c->n_head, .hd = c->head_dim, .d = d,
                      .scale = 1.0f / sqrtf((float)c->head_dim), .rel_bias = m->rel_bias,
                      .rel_bucket = m->rel_bucket, .max_tokens = c->max_tokens,
                      .scores = s->scores,
                      .cap_len = s->cap_len, .next = 0};
        pool_run_dyn(pool, attn_items, &J);
        k->matmul(&kc, s->t, s->a, &l->wo, l->bo, T);
        layernorm(pool, s->x, s->t, l->ln1_w, l->ln1_b, T, d, c->ln_eps);
        k->matmul(&kc, s->f, s->x, &l->w_up, l->b_up, T);
        gelu(pool, s->f, (long)T * c->n_ff);
        k->matmul(&kc, s->t, s->f, &l->w_down, l->b_down, T);
        layernorm(pool, s->x, s->t, l->ln2_w, l->ln2_b, T, d, c->ln_eps);
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
