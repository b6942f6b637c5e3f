/* embed.c — the public embedding API (wick.h "Embeddings"): loading an encoder folder (or a
 * decoder one, embed_decoder.c) with its tokenizer and sentence-transformers settings,
 * tokenizing + truncating texts like HF, packing them into batches for encoder_forward /
 * embed_decoder_run, pooling, the folder's Dense modules and normalisation.
 *
 * An embedder owns its thread pool and scratch (single-threaded use, see wick.h). Buffers
 * grow to the largest batch seen and are then reused: steady-state calls allocate nothing.
 * Not here: the network (model/encoder*.c), the folder description (st_config.c). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "base/json_parse.h"
#include "embed/embed.h"
#include "model/config.h"
#include "model/encoder.h"
#include "model/family.h"
#include "tokenizer/tokenizer_internal.h"

struct wick_embedder {
    encoder_model *m;        /* the encoder, or NULL when dec runs */
    embed_decoder *dec;      /* a decoder model (causal; no padding, no pooler) */
    int d, n_vocab;          /* hidden size, vocabulary */
    int max_tokens, n_pos;   /* positions a text may have; max_position_embeddings */
    const char *dir;         /* the folder (owned by m or dup'ed for dec) */
    char *dir_own;
    int n_post;              /* ids the tokenizer's post-processor appends (kept on truncation) */
    float *hbuf;             /* decoder states of one batch (cap_h floats) */
    size_t cap_h;
    const kernel_table *k;
    wk_pool *pool;
    wick_tokenizer *tok;
    wick_pooling pooling;
    bool normalize;
    embed_st_config sc;      /* the folder's description; owns the Dense modules */
    int dim;                 /* embedding length: the last Dense's out_features, else d */
    int max_len;
    int batch;
    char *prefix;
    size_t prefix_len;
    encoder_scratch s;
    int32_t *ids;            /* packed ids of one batch (cap_ids) */
    int cap_ids;
    int *lens;               /* (batch) */
    int32_t *tok_buf;        /* one text's ids before truncation (cap_tok) */
    int cap_tok;
    char *text;              /* prefix + text (cap_text) */
    size_t cap_text;
    float *tmp;              /* (batch, d): CLS rows for the pooler */
    float *dbuf[2];          /* (batch, max(d, Dense widths)) each: pooled vectors through
                                the Dense chain; NULL without Dense */
};

wick_embedder_params wick_embedder_params_default(void) {
    wick_embedder_params p = {.kernels = "auto", .n_threads = 0,
                              .pooling = WICK_POOLING_DEFAULT, .normalize = -1,
                              .max_length = 0, .prefix = NULL, .batch_size = 32};
    return p;
}

void wick_embedder_free(wick_embedder *e) {
    if (!e) return;
    encoder_free(e->m);
    embed_decoder_free(e->dec);
    free(e->dir_own);
    free(e->hbuf);
    pool_free(e->pool);
    wick_tokenizer_free(e->tok);
    encoder_scratch_free(&e->s);
    free(e->prefix);
    free(e->ids);
    free(e->lens);
    free(e->tok_buf);
    free(e->text);
    free(e->tmp);
    free(e->dbuf[0]);
    free(e->dbuf[1]);
    embed_st_config_free(&e->sc);
    free(e);
}

/* config.json's architectures name a decoder family (model/family.c): embed_decoder runs it.
 * Anything else, unreadable configs included, goes to the encoder loader, which names what
 * it cannot run. */
static bool is_decoder(const char *path) {
    char *cp = path_join(path, "config.json"), *json = NULL;
    bool dec = false;
    if (cp && file_exists(cp) && file_read_all(cp, &json, NULL) == WICK_OK) {
        cJSON *root = NULL;
        if (json_parse(json, strlen(json), cp, &root) == WICK_OK && cJSON_IsObject(root)) {
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "architectures");
            const cJSON *a0 = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, 0) : NULL;
            dec = cJSON_IsString(a0) && family_by_hf(a0->valuestring) != NULL;
        }
        cJSON_Delete(root);
        err_clear();
    }
    free(json);
    free(cp);
    return dec;
}

wick_status wick_embedder_load(const char *path, const wick_embedder_params *params,
                               wick_embedder **out) {
    if (!out) return err_set(WICK_ERR_INVALID_ARG, "wick_embedder_load: out is NULL");
    *out = NULL;
    if (!path) return err_set(WICK_ERR_INVALID_ARG, "wick_embedder_load: path is NULL");
    wick_embedder_params defaults = wick_embedder_params_default();
    const wick_embedder_params *p = params ? params : &defaults;
    if (p->pooling < WICK_POOLING_DEFAULT || p->pooling > WICK_POOLING_LAST_TOKEN)
        return err_set(WICK_ERR_INVALID_ARG, "wick_embedder_load: pooling %d is unknown",
                       (int)p->pooling);
    if (p->normalize < -1 || p->normalize > 1)
        return err_set(WICK_ERR_INVALID_ARG, "wick_embedder_load: normalize must be -1, 0 or 1");
    if (p->max_length < 0 || p->max_length == 1 || p->batch_size < 0 || p->n_threads < 0)
        return err_set(WICK_ERR_INVALID_ARG, "wick_embedder_load: max_length must be 0 or >= 2, "
                                             "batch_size and n_threads >= 0");
    if (p->prefix && p->prompt_name)
        return err_set(WICK_ERR_INVALID_ARG, "wick_embedder_load: prefix and prompt_name are "
                                             "exclusive (a prompt is a prefix)");
    wick_embedder *e = calloc(1, sizeof *e);
    if (!e) return err_set(WICK_ERR_NOMEM, "out of memory");
    embed_st_config *sc = &e->sc;
    wick_status st = WICK_OK;
    const bool dec = is_decoder(path);
    if (dec) {
        int nt = p->n_threads ? p->n_threads : pool_cpu_count();
        if (!(e->pool = pool_create(nt)) && nt > 1)
            st = err_set(WICK_ERR_NOMEM, "could not start %d threads", nt);
        if (st == WICK_OK && p->kernels && strncmp(p->kernels, "cuda", 4) == 0)
            st = err_set(WICK_ERR_UNSUPPORTED, "kernel table '%s': embeddings run on the CPU "
                         "only in this version", p->kernels);
        if (st == WICK_OK)
            st = embed_decoder_load(path, p->kernels ? p->kernels : "auto", e->pool, &e->dec);
        if (st == WICK_OK) {
            const model_config *c = embed_decoder_config(e->dec);
            e->d = c->n_embd, e->n_vocab = c->n_vocab;
            e->max_tokens = e->n_pos = c->n_ctx_train;
            e->dir = e->dir_own = strdup(path);
            if (!e->dir_own) st = err_set(WICK_ERR_NOMEM, "out of memory");
        }
    } else {
        st = encoder_load(path, &e->m);
        if (st == WICK_OK) {
            e->d = e->m->cfg.n_embd, e->n_vocab = e->m->cfg.n_vocab;
            e->max_tokens = e->m->cfg.max_tokens, e->n_pos = e->m->cfg.n_pos;
            e->dir = e->m->dir;
        }
    }
    if (st == WICK_OK) st = embed_st_config_load(path, sc);
    if (st == WICK_OK) {
        e->dim = e->d;
        if (sc->n_dense && sc->dense[0].in != e->dim)
            st = err_set(WICK_ERR_SHAPE, "%s: the first Dense module's in_features %d differs "
                         "from config.json hidden_size %d", path, sc->dense[0].in, e->dim);
        if (sc->n_dense) e->dim = sc->dense[sc->n_dense - 1].out;
    }
    if (st == WICK_OK) {
        e->k = kernels_select(p->kernels ? p->kernels : "auto");
        if (dec) e->k = e->k ? e->k : kernels_select("auto");
        if (p->kernels && strncmp(p->kernels, "cuda", 4) == 0)
            st = err_set(WICK_ERR_UNSUPPORTED, "kernel table '%s': embeddings run on the CPU "
                         "only in this version", p->kernels);
        else if (!e->k)
            st = err_set(WICK_ERR_INVALID_ARG, "kernel table '%s' (or WICK_ISA) is unknown or not "
                         "supported by this CPU (known: auto, ref, generic, avx2, avx512)",
                         p->kernels ? p->kernels : "auto");
    }
    if (st == WICK_OK) {
        e->pooling = p->pooling != WICK_POOLING_DEFAULT ? p->pooling : sc->pooling;
        e->normalize = p->normalize >= 0 ? p->normalize == 1 : sc->normalize;
        e->max_len = p->max_length ? p->max_length : sc->max_seq_length ? sc->max_seq_length
                                                                        : e->max_tokens;
        /* max_tokens: max_position_embeddings less the padding offset of XLM-R / MPNet */
        if (e->max_len > e->max_tokens) {
            if (p->max_length)
                st = err_set(WICK_ERR_INVALID_ARG, "max_length %d exceeds the %d tokens that "
                             "%s/config.json max_position_embeddings %d holds", e->max_len,
                             e->max_tokens, path, e->n_pos);
            e->max_len = e->max_tokens;  /* sentence-transformers clamps the same way */
        }
        e->batch = p->batch_size ? p->batch_size : 32;
        int nt = p->n_threads ? p->n_threads : pool_cpu_count();
        if (st == WICK_OK && !e->pool && !(e->pool = pool_create(nt)) && nt > 1)
            st = err_set(WICK_ERR_NOMEM, "could not start %d threads", nt);
    }
    /* the prefix: given, or a prompt of the folder (named, else its default) */
    const char *prefix = p->prefix;
    if (st == WICK_OK && !prefix) {
        const char *pn = p->prompt_name ? p->prompt_name : sc->default_prompt;
        if (pn && pn[0] && !(prefix = embed_st_prompt(sc, pn))) {
            char names[256] = "";
            for (int i = 0; i < sc->n_prompts; i++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s\"%s\"",
                         i ? ", " : "", sc->prompt_name[i]);
            st = err_set(WICK_ERR_NOT_FOUND, "%s: no prompt named \"%s\" in "
                         "config_sentence_transformers.json (it has: %s)", path, pn,
                         sc->n_prompts ? names : "none");
        }
    }
    if (st == WICK_OK && prefix && prefix[0]) {
        e->prefix = strdup(prefix);
        e->prefix_len = strlen(prefix);
        if (!e->prefix) st = err_set(WICK_ERR_NOMEM, "out of memory");
    }
    if (st == WICK_OK) {
        char *tj = path_join(path, "tokenizer.json"), *vt = path_join(path, "vocab.txt");
        if (!tj || !vt) st = err_set(WICK_ERR_NOMEM, "out of memory");
        else if (file_exists(tj) || file_exists(vt)) {
            st = wick_tokenizer_load(path, &e->tok);
            if (st) err_wrap(st, "%s: loading the tokenizer", path);
        }
        free(tj);
        free(vt);
        e->n_post = tokenizer_post_count(e->tok);
    }
    if (st == WICK_OK) {
        e->lens = malloc(sizeof(int) * (size_t)e->batch);
        e->tmp = malloc(sizeof(float) * (size_t)e->batch * (size_t)e->d);
        if (!e->lens || !e->tmp) st = err_set(WICK_ERR_NOMEM, "out of memory");
    }
    if (st == WICK_OK && sc->n_dense) {
        int w = e->d;
        for (int i = 0; i < sc->n_dense; i++) w = sc->dense[i].out > w ? sc->dense[i].out : w;
        for (int i = 0; i < 2; i++)
            if (!(e->dbuf[i] = malloc(sizeof(float) * (size_t)e->batch * (size_t)w)))
                st = err_set(WICK_ERR_NOMEM, "out of memory");
    }
    /* the encoder's matrices in the table's packed layout (no repack per forward call) */
    if (st == WICK_OK && e->m) encoder_pack_weights(e->m, e->k, e->pool);
    if (st != WICK_OK) {
        wick_embedder_free(e);
        return st;
    }
    *out = e;
    return WICK_OK;
}

int wick_embedder_dim(const wick_embedder *e) { return e ? e->dim : 0; }
wick_pooling wick_embedder_pooling(const wick_embedder *e) {
    return e ? e->pooling : WICK_POOLING_DEFAULT;
}
bool wick_embedder_normalize(const wick_embedder *e) { return e && e->normalize; }
int wick_embedder_max_length(const wick_embedder *e) { return e ? e->max_len : 0; }
const wick_tokenizer *wick_embedder_tokenizer(const wick_embedder *e) {
    return e ? e->tok : NULL;
}

static wick_status grow_ids(wick_embedder *e, int need) {
    if (need <= e->cap_ids) return WICK_OK;
    int cap = need > 2 * e->cap_ids ? need : 2 * e->cap_ids;
    int32_t *n = realloc(e->ids, sizeof(int32_t) * (size_t)cap);
    if (!n) return err_set(WICK_ERR_NOMEM, "out of memory");
    e->ids = n;
    e->cap_ids = cap;
    return WICK_OK;
}

/* Runs the packed batch in e->ids / e->lens (n_seq sequences) and writes, for sequence i,
 * the embedding (pooled, through the Dense modules, normalised) to emb + i*dim, the hidden
 * rows to hidden + i*hstride (hstride floats per sequence; padded rows zeroed up to hrows
 * rows) and the pooler output to pooler + i*d. */
static wick_status run_batch(wick_embedder *e, int n_seq, float *emb, float *hidden,
                             int hrows, float *pooler) {
    const int d = e->d;
    int T = 0;
    for (int i = 0; i < n_seq; i++) T += e->lens[i];
    wick_status st;
    const float *states;     /* the final hidden states, T rows (or one per text: last_only) */
    bool last_only = false;
    if (e->dec) {
        /* a decoder: only the last rows when they are all the pooling reads */
        last_only = !hidden && e->pooling == WICK_POOLING_LAST_TOKEN;
        const size_t need = (size_t)(last_only ? n_seq : T) * (size_t)d;
        if (need > e->cap_h) {
            float *nh = realloc(e->hbuf, sizeof(float) * need);
            if (!nh) return err_set(WICK_ERR_NOMEM, "out of memory");
            e->hbuf = nh;
            e->cap_h = need;
        }
        if ((st = embed_decoder_run(e->dec, e->ids, e->lens, n_seq, !last_only, e->hbuf)))
            return st;
        states = e->hbuf;
    } else {
        st = encoder_scratch_reserve(&e->s, &e->m->cfg, T);
        if (st) return st;
        encoder_forward(e->m, e->k, e->pool, &e->s, e->ids, NULL, e->lens, n_seq);
        states = e->s.x;
    }
    long off = 0;
    for (int i = 0; i < n_seq; i++) {
        const float *h = states + (last_only ? i : off) * d;
        const int len = last_only ? 1 : e->lens[i];
        if (emb && !e->sc.n_dense)
            embed_pool(h, len, d, e->pooling, e->normalize, emb + (size_t)i * d);
        if (emb && e->sc.n_dense)
            embed_pool(h, len, d, e->pooling, false, e->dbuf[0] + (size_t)i * d);
        if (hidden) {
            float *hd = hidden + (size_t)i * hrows * d;
            memcpy(hd, h, sizeof(float) * (size_t)e->lens[i] * d);
            memset(hd + (size_t)e->lens[i] * d, 0,
                   sizeof(float) * (size_t)(hrows - e->lens[i]) * d);
        }
        off += e->lens[i];
    }
    if (emb && e->sc.n_dense) {
        /* sentence-transformers order: Pooling → Dense ... → Normalize */
        const float *x = e->dbuf[0];
        for (int j = 0; j < e->sc.n_dense; j++) {
            float *y = j == e->sc.n_dense - 1 ? emb : e->dbuf[(j + 1) % 2];
            embed_dense_apply(&e->sc.dense[j], e->k, e->pool, y, x, n_seq);
            x = y;
        }
        if (e->normalize)
            for (int i = 0; i < n_seq; i++) embed_normalize(emb + (size_t)i * e->dim, e->dim);
    }
    if (pooler) {
        /* gather CLS rows: the first row of each sequence */
        long o = 0;
        for (int i = 0; i < n_seq; i++) {
            memcpy(e->tmp + (size_t)i * d, e->s.x + o * d, sizeof(float) * d);
            o += e->lens[i];
        }
        /* s->t is free after the forward pass: use it as the gathered input's copy */
        encoder_pooler(e->m, e->k, e->pool, pooler, e->tmp, n_seq, d, e->s.t);
    }
    return WICK_OK;
}

wick_status wick_embed_ids(wick_embedder *e, const int32_t *ids, const int32_t *mask, int n,
                           int seq_len, float *embeddings, float *hidden, float *pooler) {
    if (!e || n < 0 || (n > 0 && (!ids || seq_len < 1)))
        return err_set(WICK_ERR_INVALID_ARG, "wick_embed_ids: NULL embedder or ids, or a "
                                             "negative count / non-positive seq_len");
    if (n == 0) return WICK_OK;
    if (seq_len > e->max_tokens)
        return err_set(WICK_ERR_INVALID_ARG, "wick_embed_ids: seq_len %d exceeds the %d tokens "
                       "max_position_embeddings %d holds", seq_len, e->max_tokens, e->n_pos);
    if (pooler && (!e->m || !e->m->has_pooler))
        return err_set(WICK_ERR_NOT_FOUND, "%s: the checkpoint has no pooler.dense weights",
                       e->dir);
    /* validate everything before running anything */
    for (int i = 0; i < n; i++) {
        const int32_t *mr = mask ? mask + (size_t)i * seq_len : NULL;
        int len = seq_len;
        if (mr) {
            len = 0;
            while (len < seq_len && mr[len] == 1) len++;
            for (int j = len; j < seq_len; j++)
                if (mr[j] != 0)
                    return err_set(WICK_ERR_INVALID_ARG, "wick_embed_ids: mask row %d is not "
                                   "1s followed by 0s (position %d is %d)", i, j, (int)mr[j]);
            if (len == 0)
                return err_set(WICK_ERR_INVALID_ARG, "wick_embed_ids: mask row %d is empty", i);
        }
        for (int j = 0; j < len; j++) {
            int32_t id = ids[(size_t)i * seq_len + j];
            if (id < 0 || id >= e->n_vocab)
                return err_set(WICK_ERR_INVALID_ARG, "wick_embed_ids: id %d at [%d, %d] is "
                               "outside [0, %d)", (int)id, i, j, e->n_vocab);
        }
    }
    const int d = e->d;
    wick_status st = grow_ids(e, e->batch * seq_len);
    for (int b0 = 0; st == WICK_OK && b0 < n; b0 += e->batch) {
        int nb = n - b0 < e->batch ? n - b0 : e->batch, T = 0;
        for (int i = 0; i < nb; i++) {
            const int32_t *row = ids + (size_t)(b0 + i) * seq_len;
            const int32_t *mr = mask ? mask + (size_t)(b0 + i) * seq_len : NULL;
            int len = seq_len;
            if (mr) for (len = 0; len < seq_len && mr[len] == 1;) len++;
            memcpy(e->ids + T, row, sizeof(int32_t) * (size_t)len);
            e->lens[i] = len;
            T += len;
        }
        st = run_batch(e, nb, embeddings ? embeddings + (size_t)b0 * e->dim : NULL,
                       hidden ? hidden + (size_t)b0 * seq_len * d : NULL, seq_len,
                       pooler ? pooler + (size_t)b0 * d : NULL);
    }
    return st;
}

/* Tokenizes texts[i] (with the prefix) into e->tok_buf; *len receives the truncated length. */
static wick_status tokenize_one(wick_embedder *e, const char *text, int i, int *len) {
    size_t tl = strlen(text), need = e->prefix_len + tl + 1;
    const char *src = text;
    if (e->prefix) {
        if (need > e->cap_text) {
            char *nt = realloc(e->text, need);
            if (!nt) return err_set(WICK_ERR_NOMEM, "out of memory");
            e->text = nt;
            e->cap_text = need;
        }
        memcpy(e->text, e->prefix, e->prefix_len);
        memcpy(e->text + e->prefix_len, text, tl + 1);
        src = e->text;
        tl += e->prefix_len;
    }
    int32_t n;
    for (;;) {
        n = wick_tokenize(e->tok, src, tl, true, e->tok_buf, e->cap_tok);
        if (n == INT32_MIN) return err_wrap(WICK_ERR_INVALID_ARG, "text %d", i);
        if (n >= 0) break;
        int32_t *nb = realloc(e->tok_buf, sizeof(int32_t) * (size_t)(-n));
        if (!nb) return err_set(WICK_ERR_NOMEM, "out of memory");
        e->tok_buf = nb;
        e->cap_tok = -n;
    }
    if (n == 0) return err_set(WICK_ERR_INVALID_ARG, "text %d produced no tokens", i);
    /* HF truncation of a single sequence: cut the content and keep what the post-processor
       appends ([SEP], </s>, <|endoftext|>) last. */
    if (n > e->max_len) {
        const int k = e->n_post < e->max_len ? e->n_post : 0;
        memmove(e->tok_buf + e->max_len - k, e->tok_buf + n - k, sizeof(int32_t) * (size_t)k);
        n = e->max_len;
    }
    for (int j = 0; j < n; j++)
        if (e->tok_buf[j] < 0 || e->tok_buf[j] >= e->n_vocab)
            return err_set(WICK_ERR_FORMAT, "text %d: token id %d is outside the model's "
                           "vocab_size %d (tokenizer and model disagree)", i, (int)e->tok_buf[j],
                           e->n_vocab);
    *len = n;
    return WICK_OK;
}

wick_status wick_embedder_tokenize(wick_embedder *e, const char *text, int32_t *ids, int cap,
                                   int *n) {
    if (!e || !text || !n || cap < 0 || (cap > 0 && !ids))
        return err_set(WICK_ERR_INVALID_ARG, "wick_embedder_tokenize: NULL argument");
    if (!e->tok)
        return err_set(WICK_ERR_UNSUPPORTED, "%s: no tokenizer.json or vocab.txt in the folder",
                       e->dir);
    int len = 0;
    wick_status st = tokenize_one(e, text, 0, &len);
    if (st) return st;
    *n = len;
    if (len > cap)
        return err_set(WICK_ERR_BUFFER_TOO_SMALL, "wick_embedder_tokenize: %d ids, cap %d", len,
                       cap);
    memcpy(ids, e->tok_buf, sizeof(int32_t) * (size_t)len);
    return WICK_OK;
}

wick_status wick_embed(wick_embedder *e, const char *const *texts, int n, float *out) {
    if (!e || n < 0 || (n > 0 && (!texts || !out)))
        return err_set(WICK_ERR_INVALID_ARG, "wick_embed: NULL argument or negative count");
    if (n == 0) return WICK_OK;
    if (!e->tok)
        return err_set(WICK_ERR_UNSUPPORTED, "%s: no tokenizer.json or vocab.txt in the folder; "
                       "use wick_embed_ids", e->dir);
    for (int i = 0; i < n; i++)
        if (!texts[i]) return err_set(WICK_ERR_INVALID_ARG, "wick_embed: texts[%d] is NULL", i);
    wick_status st = grow_ids(e, e->batch * e->max_len);
    for (int b0 = 0; st == WICK_OK && b0 < n; b0 += e->batch) {
        int nb = n - b0 < e->batch ? n - b0 : e->batch, T = 0;
        for (int i = 0; i < nb; i++) {
            int len = 0;
            if ((st = tokenize_one(e, texts[b0 + i], b0 + i, &len))) return st;
            memcpy(e->ids + T, e->tok_buf, sizeof(int32_t) * (size_t)len);
            e->lens[i] = len;
            T += len;
        }
        st = run_batch(e, nb, out + (size_t)b0 * e->dim, NULL, 0, NULL);
    }
    return st;
}
