/* embed_decoder.c — hidden states of a decoder (causal) language model for embeddings:
 * Qwen3-Embedding, gte-Qwen, SGPT-style models are a decoder family wick already runs,
 * saved as the base model (XModel: no "model." prefix, often no lm_head) and pooled by
 * their last token (or a (weighted) mean) in sentence-transformers.
 *
 * Each text is its own sequence of the batched forward pass (model/forward.h): one pass over
 * the weights for many texts, attention per text over its own keys (varlen, causal, no
 * padding), so a text's states do not depend on the others in its batch. Texts are packed
 * into forward calls of up to EMBED_DEC_ROWS rows; a longer text continues in the next call
 * on its own KV blocks, which are released when the batch is done. KV in f32: exact.
 * Not here: tokenizing, pooling and the public API (embed.c). */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "embed/embed.h"
#include "kv/kv.h"
#include "model/forward.h"
#include "model/model.h"

/* rows per forward call: bounds the activations (~(6d + 2ff)·4 bytes a row) */
#define EMBED_DEC_ROWS 1024

struct embed_decoder {
    wick_model *m;
    wk_ctx ctx;
    fwd_state fwd;
    bool fwd_ok;
    kv_pool *kv;
    int kv_blocks;           /* blocks of the current pool (grown to the largest batch) */
    kv_seq *seqs;            /* (cap_seqs) each able to hold seq_cap positions, empty
                                between calls */
    wk_span *spans;
    int cap_seqs, seq_cap;
    int32_t *ids, *pos, *out_rows; /* (EMBED_DEC_ROWS) one forward call */
};

wick_status embed_decoder_load(const char *path, const char *kernels, wk_pool *pool,
                               embed_decoder **out) {
    *out = NULL;
    embed_decoder *d = calloc(1, sizeof *d);
    if (!d) return err_set(WICK_ERR_NOMEM, "out of memory");
    wick_model_params mp = wick_model_params_default();
    mp.kernels = kernels;
    mp.load_tokenizer = false; /* the embedder loads its own (embed.c) */
    /* embeddings are compared with sentence-transformers' f32 vectors: exact, as the encoders
       are (WICK_PRECISION=fast still overrides; fast rounds GEMM and attention inputs to bf16
       on CPUs with AMX, which moved these hidden states by ~1e-2) */
    mp.precision = "exact";
    wick_status st = model_load_headless(path, &mp, &d->m);
    if (st == WICK_OK && !kernels_is_host(d->m->kern))
        st = err_set(WICK_ERR_UNSUPPORTED, "%s: embeddings run on the CPU only in this version",
                     path);
    if (st == WICK_OK) {
        d->ctx.pool = pool;
        d->ctx.flags = d->m->fast ? WK_CTX_FAST : 0;
        const size_t ib = sizeof(int32_t) * EMBED_DEC_ROWS;
        d->ids = malloc(ib), d->pos = malloc(ib), d->out_rows = malloc(ib);
        if (!d->ids || !d->pos || !d->out_rows) st = err_set(WICK_ERR_NOMEM, "out of memory");
    }
    if (st) {
        embed_decoder_free(d);
        return st;
    }
    *out = d;
    return WICK_OK;
}

void embed_decoder_free(embed_decoder *d) {
    if (!d) return;
    for (int i = 0; i < d->cap_seqs; i++) kv_seq_free(d->kv, &d->seqs[i]);
    free(d->seqs);
    free(d->spans);
    kv_pool_free(d->kv);
    if (d->fwd_ok) fwd_free(&d->fwd);
    free(d->ids);
    free(d->pos);
    free(d->out_rows);
    wick_model_free(d->m);
    free(d);
}

const model_config *embed_decoder_config(const embed_decoder *d) { return &d->m->cfg; }

/* Activations for max_len positions, a pool of blocks for the batch, n_seq sequence slots. */
static wick_status reserve(embed_decoder *d, const int *lens, int n_seq, int max_len) {
    const model_config *c = &d->m->cfg;
    wick_status st;
    if (!d->fwd_ok || d->fwd.max_pos < max_len) {
        if (d->fwd_ok) fwd_free(&d->fwd);
        d->fwd_ok = false;
        if ((st = fwd_init(&d->fwd, d->m, &d->ctx, EMBED_DEC_ROWS, max_len))) return st;
        d->fwd_ok = true;
    }
    if (n_seq > d->cap_seqs || max_len > d->seq_cap) {
        /* sequences hold no blocks between calls: free and make them again, larger */
        for (int i = 0; i < d->cap_seqs; i++) kv_seq_free(d->kv, &d->seqs[i]);
        const int ns = n_seq > d->cap_seqs ? n_seq : d->cap_seqs;
        const int cap = max_len > d->seq_cap ? max_len : d->seq_cap;
        d->cap_seqs = 0;
        kv_seq *q = realloc(d->seqs, sizeof *q * (size_t)ns);
        if (!q) return err_set(WICK_ERR_NOMEM, "out of memory");
        d->seqs = q;
        wk_span *sp = realloc(d->spans, sizeof *sp * (size_t)ns);
        if (!sp) return err_set(WICK_ERR_NOMEM, "out of memory");
        d->spans = sp;
        for (; d->cap_seqs < ns; d->cap_seqs++)
            if ((st = kv_seq_init(&d->seqs[d->cap_seqs], cap, 0))) return st;
        d->seq_cap = cap;
    }
    const int bs = 16;
    long need = 0;
    for (int i = 0; i < n_seq; i++) need += (lens[i] + bs - 1) / bs;
    if (need > d->kv_blocks) {
        kv_pool_free(d->kv);
        d->kv = NULL;
        d->kv_blocks = 0;
        if ((st = kv_pool_create(d->m->kern, &d->ctx, DT_F32, c->n_layer, c->n_kv_head,
                                 c->head_dim, bs, (int)need, false, &d->kv)))
            return st;
        d->kv_blocks = (int)need;
    }
    return WICK_OK;
}

wick_status embed_decoder_run(embed_decoder *d, const int32_t *ids, const int *lens, int n_seq,
                              bool all_rows, float *h) {
    const int dm = d->m->cfg.n_embd;
    int max_len = 1;
    for (int i = 0; i < n_seq; i++) max_len = lens[i] > max_len ? lens[i] : max_len;
    wick_status st = reserve(d, lens, n_seq, max_len);
    if (st) return st;
    /* walk the texts in order, filling forward calls of up to EMBED_DEC_ROWS rows */
    long src = 0;          /* next id of ids to feed */
    long out_done = 0;     /* rows (all_rows) or sequences (last) written to h */
    int s = 0, done_in_s = 0;
    while (st == WICK_OK && s < n_seq) {
        int n = 0, n_spans = 0, n_out = 0;
        const int s0 = s;
        while (s < n_seq && n < EMBED_DEC_ROWS) {
            kv_seq *q = &d->seqs[s];
            const int take = lens[s] - done_in_s < EMBED_DEC_ROWS - n ? lens[s] - done_in_s
                                                                      : EMBED_DEC_ROWS - n;
            if ((st = kv_seq_reserve(d->kv, q, take))) break;
            d->spans[n_spans++] = (wk_span){n, take, done_in_s, q->blocks};
            for (int j = 0; j < take; j++) {
                d->ids[n + j] = ids[src + j];
                d->pos[n + j] = done_in_s + j;
                if (all_rows) d->out_rows[n_out++] = n + j;
            }
            src += take;
            n += take;
            done_in_s += take;
            if (done_in_s == lens[s]) {
                if (!all_rows) d->out_rows[n_out++] = n - 1;
                s++;
                done_in_s = 0;
            }
        }
        if (st) break;
        fwd_batch b = {.n = n, .ids = d->ids, .pos = d->pos, .spans = d->spans,
                       .n_spans = n_spans, .out_rows = d->out_rows, .n_out = n_out,
                       .hidden = n_out ? h + out_done * dm : NULL};
        model_forward(&d->fwd, d->kv, &b);
        out_done += n_out;
        /* commit what each span wrote (ids only feed the prefix cache, which is off) */
        for (int k = 0; k < n_spans; k++) {
            const int si = s0 + k;
            kv_seq_commit(d->kv, &d->seqs[si], d->ids + d->spans[k].row0, d->spans[k].n);
        }
    }
    for (int i = 0; i < n_seq; i++) kv_seq_truncate(d->kv, &d->seqs[i], 0);
    return st;
}
