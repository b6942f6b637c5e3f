/* model_gguf.c — a decoder model (the GGUF architectures of family.h: `llama`, `qwen2`, `qwen3`) from a GGUF file, and a
 * loaded model written back as GGUF.
 *
 * Loading: config from `{arch}.*` metadata; matrices are zero-copy views into the mapping in
 * their file type (F32/F16/BF16/Q8_0/Q4_0/Q4_K/Q6_K); norms and biases become f32 copies;
 * the tokenizer stored in `tokenizer.ggml.*` is rewritten as tokenizer.json +
 * tokenizer_config.json (gguf_tok_json.c) and loaded with wick_tokenizer_load_mem.
 *
 * llama.cpp's converter permutes the q/k projection rows of `llama` models (not `qwen2`) so
 * that RoPE rotates adjacent pairs; this file keeps those rows as they are (zero-copy) and
 * reports it through *rope_interleaved, so the decoder calls kernel_table.rope_interleaved.
 *
 * Not here: the GGUF container (formats/gguf.c), the forward pass, the CLI tools. */
#include "model/family.h"
#include "model/model_gguf.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "kernels/quant.h"

typedef struct gl {
    wick_model *m;
    const gguf_file *g;
    const char *path;
} gl;

/* A matrix [rows, cols] (GGUF ne = [cols, rows]) as a zero-copy view. */
static wick_status get_matrix(gl *L, const char *name, int64_t rows, int64_t cols, wk_weight *w,
                              bool optional) {
    const gguf_tensor *t = gguf_find_tensor(L->g, name);
    if (!t) {
        if (optional) return WICK_OK;
        return err_set(WICK_ERR_SHAPE, "%s: missing tensor %s (expected [%lld, %lld])", L->path,
                       name, (long long)rows, (long long)cols);
    }
    if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != 1 || t->ne[3] != 1)
        return err_set(WICK_ERR_SHAPE, "%s: tensor %s has ne [%lld, %lld, %lld, %lld], expected "
                       "[%lld, %lld] (cols, rows)", L->path, name, (long long)t->ne[0],
                       (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                       (long long)cols, (long long)rows);
    *w = (wk_weight){.data = t->data, .dt = t->dt, .rows = rows, .cols = cols}; /* packed NULL */
    L->m->n_params += rows * cols;
    L->m->weight_bytes += (int64_t)t->nbytes;
    const char *dn = dtype_name(t->dt);
    if (!L->m->weight_dtype[0]) snprintf(L->m->weight_dtype, sizeof L->m->weight_dtype, "%s", dn);
    else if (strcmp(L->m->weight_dtype, dn) != 0) strcpy(L->m->weight_dtype, "mixed");
    return WICK_OK;
}

/* A vector of n values as a private f32 copy; *out stays NULL when optional and absent. */
static wick_status get_vector(gl *L, const char *name, int64_t n, float **out, bool optional) {
    const gguf_tensor *t = gguf_find_tensor(L->g, name);
    if (!t) {
        if (optional) return WICK_OK;
        return err_set(WICK_ERR_SHAPE, "%s: missing tensor %s (expected [%lld])", L->path, name,
                       (long long)n);
    }
    if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return err_set(WICK_ERR_SHAPE, "%s: tensor %s has ne [%lld, %lld], expected [%lld]",
                       L->path, name, (long long)t->ne[0], (long long)t->ne[1], (long long)n);
    float *v = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!v) return err_set(WICK_ERR_NOMEM, "%s: out of memory for %s", L->path, name);
    wk_weight w = {.data = t->data, .dt = t->dt, .rows = 1, .cols = n};
    kernels_row_to_f32(v, &w, 0);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            free(v);
            return err_set(WICK_ERR_FORMAT, "%s: tensor %s holds a non-finite value at [%lld]",
                           L->path, name, (long long)i);
        }
    *out = v;
    L->m->n_params += n;
    L->m->weight_bytes += (int64_t)t->nbytes;
    return WICK_OK;
}

static wick_status need_int(gl *L, const char *arch, const char *suffix, int64_t lo, int64_t hi,
                            bool required, int64_t dflt, int *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v;
    wick_status st = WICK_OK;
    if (!gguf_get_int(L->g, key, &v, &st)) {
        if (st) return st;
        if (required) return err_set(WICK_ERR_FORMAT, "%s: missing key %s", L->path, key);
        v = dflt;
    }
    if (v < lo || v > hi)
        return err_set(WICK_ERR_FORMAT, "%s: key %s = %lld outside [%lld, %lld]", L->path, key,
                       (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return WICK_OK;
}

/* A float key (f32, f64 or an integer), `dflt` when absent. A value a float cannot hold (an f64
 * beyond FLT_MAX, inf, NaN) is an error: converting it would be undefined. */
static wick_status get_f32(gl *L, const char *key, float dflt, float *out) {
    double f;
    wick_status st = WICK_OK;
    if (!gguf_get_float(L->g, key, &f, &st)) {
        if (!st) *out = dflt;
        return st;
    }
    if (!(fabs(f) <= FLT_MAX))
        return err_set(WICK_ERR_FORMAT, "%s: key %s = %g is not a finite 32-bit float", L->path,
                       key, f);
    *out = (float)f;
    return WICK_OK;
}

/* Every tokenizer.ggml.*_token_id key must be a token id of the model, in [0, n_vocab): the
 * tokenizer and generation (logits[eos] for min_tokens) index with them. Reads bos, eos
 * (+ eot as a second eos) and padding into the config. */
static wick_status read_special_ids(gl *L, model_config *c) {
    static const char pre[] = "tokenizer.ggml.", suf[] = "_token_id";
    for (int64_t i = 0; i < L->g->n_kv; i++) {
        const char *k = L->g->kv[i].key;
        const size_t n = strlen(k);
        if (strncmp(k, pre, sizeof pre - 1) != 0 || n < sizeof pre - 1 + sizeof suf - 1 ||
            strcmp(k + n - (sizeof suf - 1), suf) != 0)
            continue;
        int64_t id;
        wick_status st = WICK_OK;
        if (!gguf_get_int(L->g, k, &id, &st)) return st;
        if (id < 0 || id >= c->n_vocab)
            return err_set(WICK_ERR_FORMAT, "%s: key %s = %lld is not a token id of the model "
                           "(token_embd.weight has %d rows: ids are in [0, %d))", L->path, k,
                           (long long)id, c->n_vocab, c->n_vocab);
    }
    int64_t id;
    c->bos_id = gguf_get_int(L->g, "tokenizer.ggml.bos_token_id", &id, NULL) ? (int32_t)id : -1;
    c->pad_id = gguf_get_int(L->g, "tokenizer.ggml.padding_token_id", &id, NULL) ? (int32_t)id : -1;
    if (gguf_get_int(L->g, "tokenizer.ggml.eos_token_id", &id, NULL)) c->eos_ids[c->n_eos++] = (int32_t)id;
    if (gguf_get_int(L->g, "tokenizer.ggml.eot_token_id", &id, NULL) &&
        (c->n_eos == 0 || c->eos_ids[0] != id))
        c->eos_ids[c->n_eos++] = (int32_t)id;
    /* wick writes the whole list when a model has more than two eos ids (model_gguf_save) */
    const gguf_kv *el = gguf_find_kv(L->g, "tokenizer.wick.eos_token_ids");
    if (el && el->v.type == GGUF_ARRAY && el->v.arr.n > 2 && el->v.arr.n <= CONFIG_MAX_EOS &&
        (el->v.arr.type == GGUF_U32 || el->v.arr.type == GGUF_I32)) {
        for (uint64_t i = 0; i < el->v.arr.n; i++) {
            const gguf_value *x = &el->v.arr.items[i];
            const int64_t v = x->type == GGUF_U32 ? (int64_t)x->u : x->i;
            if (v < 0 || v >= c->n_vocab)
                return err_set(WICK_ERR_FORMAT, "%s: tokenizer.wick.eos_token_ids[%llu] = %lld "
                               "is not a token id of the model (ids are in [0, %d))", L->path,
                               (unsigned long long)i, (long long)v, c->n_vocab);
            c->eos_ids[i] = (int32_t)v;
        }
        c->n_eos = (int)el->v.arr.n;
    }
    return WICK_OK;
}

/* Gemma 2 / 3 as llama.cpp defines them in GGUF (it stores only some of the settings and
 * fixes the rest by architecture): GELU-tanh MLP, embeddings times √hidden, norm weights
 * stored as 1 + w already, sliding window (attention.sliding_window) on every layer but each
 * pattern-th (2 for Gemma 2, 6 for Gemma 3), the sliding layers' RoPE base 10000 (Gemma 3),
 * soft-caps from their keys (Gemma 2), scores scaled by 1/√head_dim except for the 27B
 * shapes (46 / 62 layers), which use 1/√(hidden/heads). model_gguf_save refuses models these
 * rules cannot describe. */
static wick_status read_gemma(gl *L, const char *arch, const model_family *fam, model_config *c) {
    wick_status st;
    const bool g3 = fam->id == ARCH_GEMMA3;
    c->act = ACT_GELU_TANH;
    c->embed_scale = (float)sqrt((double)c->n_embd);
    c->tie_embd = gguf_find_tensor(L->g, "output.weight") == NULL;
    if ((st = need_int(L, arch, "attention.sliding_window", 0, 1 << 24, false, 0, &c->sliding_window)))
        return st;
    const int pat = fam->swa_pattern;
    memset(c->layer_sliding, 0, sizeof c->layer_sliding);
    if (c->n_layer > CONFIG_MAX_LAYER_TYPES)
        return err_set(WICK_ERR_UNSUPPORTED, "%s: %d blocks: at most %d for %s", L->path, c->n_layer,
                       CONFIG_MAX_LAYER_TYPES, arch);
    for (int l = 0; l < c->n_layer; l++)
        if ((l + 1) % pat) c->layer_sliding[l / 64] |= 1ull << (l % 64);
    c->rope_theta_local = g3 ? 10000.0f : 0.0f;
    const bool big = c->n_layer == (g3 ? 62 : 46);
    c->attn_scale = 1.0f / sqrtf(big ? (float)(c->n_embd / c->n_head) : (float)c->head_dim);
    if (!g3) {
        char key[128];
        snprintf(key, sizeof key, "%s.attn_logit_softcapping", arch);
        if ((st = get_f32(L, key, 0.0f, &c->attn_softcap))) return st;
        snprintf(key, sizeof key, "%s.final_logit_softcapping", arch);
        if ((st = get_f32(L, key, 0.0f, &c->final_softcap))) return st;
    }
    return WICK_OK;
}

/* Phi-3 / Phi-4-mini as llama.cpp's `phi3` stores them: a sliding window on every layer
 * (attention.sliding_window, 0 or absent: none), and longrope as the tensors
 * rope_factors_short.weight / rope_factors_long.weight (one divisor per rotated frequency)
 * with rope.scaling.original_context_length and rope.scaling.attn_factor (transformers'
 * default, sqrt(1 + ln(ctx / original) / ln(original)), when absent). */
static wick_status read_phi3(gl *L, const char *arch, model_config *c) {
    wick_status st;
    if ((st = need_int(L, arch, "attention.sliding_window", 0, 1 << 24, false, 0, &c->sliding_window)))
        return st;
    const int half = c->rot_dim / 2;
    const bool has_s = gguf_find_tensor(L->g, "rope_factors_short.weight") != NULL;
    const bool has_l = gguf_find_tensor(L->g, "rope_factors_long.weight") != NULL;
    if (!has_s && !has_l) return WICK_OK;
    if (!has_s || !has_l)
        return err_set(WICK_ERR_FORMAT, "%s: longrope needs both rope_factors_short.weight and "
                       "rope_factors_long.weight (found only %s)", L->path,
                       has_s ? "the short one" : "the long one");
    if (half > CONFIG_MAX_ROPE_FACTORS)
        return err_set(WICK_ERR_UNSUPPORTED, "%s: longrope with %d frequencies (at most %d)", L->path,
                       half, CONFIG_MAX_ROPE_FACTORS);
    for (int k = 0; k < 2; k++) {
        const char *name = k ? "rope_factors_long.weight" : "rope_factors_short.weight";
        float *f = NULL;
        if ((st = get_vector(L, name, half, &f, false))) return st;
        L->m->n_params -= half; /* not a model parameter */
        for (int i = 0; i < half; i++) {
            if (!(f[i] > 0) || f[i] > 1e30f) {
                st = err_set(WICK_ERR_FORMAT, "%s: %s[%d] = %g: expected a positive divisor",
                             L->path, name, i, (double)f[i]);
                free(f);
                return st;
            }
            (k ? c->rope_long : c->rope_short)[i] = f[i];
        }
        free(f);
    }
    c->rope = ROPE_LONGROPE;
    if ((st = need_int(L, arch, "rope.scaling.original_context_length", 1, 1 << 24, true, 0,
                       &c->rope_orig_ctx)))
        return st;
    const double f = (double)c->n_ctx_train / c->rope_orig_ctx;
    const float af = f <= 1.0 ? 1.0f : (float)sqrt(1.0 + log(f) / log((double)c->rope_orig_ctx));
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.attn_factor", arch);
    if ((st = get_f32(L, key, af, &c->rope_attn_factor))) return st;
    if (!(c->rope_attn_factor > 0) || c->rope_attn_factor > 1e6f)
        return err_set(WICK_ERR_FORMAT, "%s: %s = %g: expected a positive factor", L->path, key,
                       (double)c->rope_attn_factor);
    return WICK_OK;
}

/* Mixture of experts as llama.cpp stores it: expert_count and expert_used_count; every block a
 * MoE block (llama.cpp's MoE architectures have no dense ones); the experts' width is
 * expert_feed_forward_length for qwen3moe and feed_forward_length for llama (Mixtral) and
 * olmoe; the chosen experts' weights are renormalized for llama and qwen3moe, not for olmoe
 * (llama.cpp fixes this per architecture). A llama file with experts is Mixtral. */
static wick_status read_moe(gl *L, const char *arch, model_config *c) {
    wick_status st;
    int ne = 0, nu = 0;
    if ((st = need_int(L, arch, "expert_count", 0, 1024, false, 0, &ne))) return st;
    const model_family *fam = family_get(c->arch);
    const bool moe_arch = fam->moe_router != NULL;
    if (ne == 0) {
        if (moe_arch)
            return err_set(WICK_ERR_FORMAT, "%s: %s.expert_count is missing: %s is a "
                           "mixture-of-experts architecture", L->path, arch, arch);
        return WICK_OK;
    }
    if (c->arch == ARCH_LLAMA) c->arch = ARCH_MIXTRAL, fam = family_get(ARCH_MIXTRAL);
    else if (!moe_arch)
        return err_set(WICK_ERR_UNSUPPORTED, "%s: %s.expert_count is %d, but wick reads experts "
                       "only for llama (Mixtral), qwen3moe and olmoe", L->path, arch, ne);
    snprintf(c->architecture, sizeof c->architecture, "%s", fam->hf_arch);
    if ((st = need_int(L, arch, "expert_used_count", 1, ne, true, 0, &nu))) return st;
    c->n_expert = ne, c->n_expert_used = nu;
    c->n_ff_expert = c->n_ff;
    if (fam->moe_qwen_keys &&
        (st = need_int(L, arch, "expert_feed_forward_length", 1, 1 << 24, true, 0, &c->n_ff_expert)))
        return st;
    c->norm_topk = c->arch != ARCH_OLMOE;
    memset(c->layer_moe, 0, sizeof c->layer_moe);
    if (c->n_layer > CONFIG_MAX_LAYER_TYPES)
        return err_set(WICK_ERR_UNSUPPORTED, "%s: %d blocks: at most %d for a mixture of experts",
                       L->path, c->n_layer, CONFIG_MAX_LAYER_TYPES);
    for (int l = 0; l < c->n_layer; l++) c->layer_moe[l / 64] |= 1ull << (l % 64);
    c->qk_norm_full = fam->qk_norm_full;
    return WICK_OK;
}

static wick_status read_config(gl *L, model_config *c, bool *interleaved) {
    wick_status st = WICK_OK;
    char *arch = NULL;
    if (!gguf_get_str(L->g, "general.architecture", &arch, &st))
        return st ? st : err_set(WICK_ERR_FORMAT, "%s: missing key general.architecture", L->path);
    memset(c, 0, sizeof *c);
    const model_family *fam = family_by_gguf(arch);
    if (!fam) {
        st = err_set(WICK_ERR_UNSUPPORTED, "%s: general.architecture '%s' is not supported "
                     "(supported: %s)", L->path, arch, family_list(true));
        free(arch);
        return st;
    }
    c->arch = fam->id;
    snprintf(c->architecture, sizeof c->architecture, "%s", fam->hf_arch);
    c->qk_norm = fam->qk_norm;
    *interleaved = fam->gguf_permuted;
    const int M = 1 << 20;
    if ((st = need_int(L, arch, "embedding_length", 1, M, true, 0, &c->n_embd)) ||
        (st = need_int(L, arch, "feed_forward_length", 1, M, true, 0, &c->n_ff)) ||
        (st = need_int(L, arch, "block_count", 1, 4096, true, 0, &c->n_layer)) ||
        (st = need_int(L, arch, "attention.head_count", 1, 4096, true, 0, &c->n_head)) ||
        (st = need_int(L, arch, "attention.head_count_kv", 1, 4096, false, c->n_head, &c->n_kv_head)) ||
        (st = need_int(L, arch, "context_length", 1, 1 << 24, false, 4096, &c->n_ctx_train)) ||
        (st = need_int(L, arch, "attention.key_length", 2, 4096, false, c->n_embd / c->n_head,
                       &c->head_dim))) {
        free(arch);
        return st;
    }
    int rope_dim;
    if ((st = need_int(L, arch, "rope.dimension_count", 2, 4096, false, c->head_dim, &rope_dim))) {
        free(arch);
        return st;
    }
    /* partial rotary only where the family has it (Phi-3 / Phi-4-mini) */
    const bool partial_ok = fam->fused && rope_dim % 2 == 0 && rope_dim <= c->head_dim;
    if ((rope_dim != c->head_dim && !partial_ok) || c->head_dim % 2 || c->n_head % c->n_kv_head) {
        st = err_set(WICK_ERR_UNSUPPORTED, "%s: head_dim %d, rope.dimension_count %d, %d heads on "
                     "%d KV heads: partial rotary (outside Phi-3), odd head_dim or uneven grouping "
                     "is not supported", L->path, c->head_dim, rope_dim, c->n_head, c->n_kv_head);
        free(arch);
        return st;
    }
    c->rot_dim = rope_dim;
    char key[128];
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    st = get_f32(L, key, 1e-6f, &c->norm_eps);
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    if (!st) st = get_f32(L, key, 10000.0f, &c->rope_theta);
    char *stype = NULL;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    c->rope = ROPE_DEFAULT;
    c->rope_factor = 1.0f;
    if (!st && gguf_get_str(L->g, key, &stype, &st) && strcmp(stype, "linear") == 0) {
        snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
        float f = 0;
        if (!(st = get_f32(L, key, 0.0f, &f)) && f > 0) {
            c->rope = ROPE_LINEAR;
            c->rope_factor = f;
        }
    }
    free(stype);
    if (!st && fam->gemma) st = read_gemma(L, arch, fam, c);
    if (!st && fam->fused) st = read_phi3(L, arch, c);
    if (!st) st = read_moe(L, arch, c);
    free(arch);
    if (st) return st;
    if (!(c->norm_eps > 0) || !(c->rope_theta > 0))
        return err_set(WICK_ERR_FORMAT, "%s: rms epsilon and rope.freq_base must be positive", L->path);
    const gguf_tensor *emb = gguf_find_tensor(L->g, "token_embd.weight");
    if (!emb) return err_set(WICK_ERR_SHAPE, "%s: missing tensor token_embd.weight", L->path);
    if (emb->ne[1] < 1 || emb->ne[1] > INT32_MAX)
        return err_set(WICK_ERR_SHAPE, "%s: token_embd.weight has %lld rows", L->path,
                       (long long)emb->ne[1]);
    c->n_vocab = (int)emb->ne[1];
    const gguf_value *toks = gguf_get_arr(L->g, "tokenizer.ggml.tokens", GGUF_STRING, NULL);
    if (toks && toks->arr.n > (uint64_t)c->n_vocab)
        return err_set(WICK_ERR_SHAPE, "%s: tokenizer.ggml.tokens holds %llu tokens but "
                       "token_embd.weight only %d rows", L->path,
                       (unsigned long long)toks->arr.n, c->n_vocab);
    c->tie_embd = gguf_find_tensor(L->g, "output.weight") == NULL;
    c->attn_bias = gguf_find_tensor(L->g, "blk.0.attn_q.bias") != NULL;
    c->o_bias = gguf_find_tensor(L->g, "blk.0.attn_output.bias") != NULL;
    c->mlp_bias = gguf_find_tensor(L->g, "blk.0.ffn_gate.bias") != NULL;
    if (!family_get(c->arch)->gemma) c->attn_scale = 1.0f / sqrtf((float)c->head_dim);
    return read_special_ids(L, c);
}

/* The E matrices (rows, cols) of a 3-D expert tensor ne = [cols, rows, E], as views. */
static wick_status get_stack3(gl *L, const char *name, int64_t rows, int64_t cols, int64_t E,
                              wk_weight *out) {
    const gguf_tensor *t = gguf_find_tensor(L->g, name);
    if (!t) return err_set(WICK_ERR_SHAPE, "%s: missing tensor %s (expected [%lld, %lld, %lld])",
                           L->path, name, (long long)cols, (long long)rows, (long long)E);
    if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != E || t->ne[3] != 1)
        return err_set(WICK_ERR_SHAPE, "%s: tensor %s has ne [%lld, %lld, %lld, %lld], expected "
                       "[%lld, %lld, %lld] (cols, rows, experts)", L->path, name, (long long)t->ne[0],
                       (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
                       (long long)cols, (long long)rows, (long long)E);
    const size_t mb = dtype_row_bytes(t->dt, cols) * (size_t)rows;
    for (int64_t e = 0; e < E; e++)
        out[e] = (wk_weight){.data = (const uint8_t *)t->data + (size_t)e * mb, .dt = t->dt,
                             .rows = rows, .cols = cols};
    L->m->n_params += rows * cols * E;
    L->m->weight_bytes += (int64_t)t->nbytes;
    L->m->expert_bytes += (int64_t)t->nbytes;
    const char *dn = dtype_name(t->dt);
    if (!L->m->weight_dtype[0]) snprintf(L->m->weight_dtype, sizeof L->m->weight_dtype, "%s", dn);
    else if (strcmp(L->m->weight_dtype, dn) != 0) strcpy(L->m->weight_dtype, "mixed");
    return WICK_OK;
}

/* A MoE block's router (ffn_gate_inp, [d, E]) and experts (ffn_{gate,up,down}_exps). */
static wick_status get_experts(gl *L, int i, layer_weights *w) {
    const model_config *c = &L->m->cfg;
    const int64_t d = c->n_embd, fe = c->n_ff_expert, E = c->n_expert;
    char n[96];
    wick_status st;
    w->exp_gate = calloc((size_t)E, sizeof *w->exp_gate);
    w->exp_up = calloc((size_t)E, sizeof *w->exp_up);
    w->exp_down = calloc((size_t)E, sizeof *w->exp_down);
    if (!w->exp_gate || !w->exp_up || !w->exp_down) return err_set(WICK_ERR_NOMEM, "out of memory");
#define N(s) (snprintf(n, sizeof n, "blk.%d.%s", i, s), n)
    if ((st = get_matrix(L, N("ffn_gate_inp.weight"), E, d, &w->router, false)) ||
        (st = get_stack3(L, N("ffn_gate_exps.weight"), fe, d, E, w->exp_gate)) ||
        (st = get_stack3(L, N("ffn_up_exps.weight"), fe, d, E, w->exp_up)) ||
        (st = get_stack3(L, N("ffn_down_exps.weight"), d, fe, E, w->exp_down)))
        return st;
#undef N
    return WICK_OK;
}

static wick_status load_layer(gl *L, int i, layer_weights *w) {
    const model_config *c = &L->m->cfg;
    const int64_t d = c->n_embd, qd = (int64_t)c->n_head * c->head_dim,
                  kvd = (int64_t)c->n_kv_head * c->head_dim, ff = c->n_ff;
    char n[96];
    wick_status st;
#define N(s) (snprintf(n, sizeof n, "blk.%d.%s", i, s), n)
    if (family_get(c->arch)->fused) { /* Phi-3: q/k/v and gate/up are row ranges of one tensor */
        wk_weight qkv = {0}, gu = {0};
        if ((st = get_matrix(L, N("attn_qkv.weight"), qd + 2 * kvd, d, &qkv, false)) ||
            (st = get_matrix(L, N("attn_output.weight"), d, qd, &w->wo, false)) ||
            (st = get_matrix(L, N("ffn_up.weight"), 2 * ff, d, &gu, false)) ||
            (st = get_matrix(L, N("ffn_down.weight"), d, ff, &w->w_down, false)) ||
            (st = get_vector(L, N("attn_norm.weight"), d, &w->attn_norm, false)) ||
            (st = get_vector(L, N("ffn_norm.weight"), d, &w->mlp_norm, false)))
            return st;
        w->wq = model_row_range(&qkv, 0, qd), w->wk = model_row_range(&qkv, qd, kvd);
        w->wv = model_row_range(&qkv, qd + kvd, kvd);
        w->w_gate = model_row_range(&gu, 0, ff), w->w_up = model_row_range(&gu, ff, ff);
        w->window = c->sliding_window;
        return WICK_OK;
    }
    const bool moe = c->n_expert > 0;
    const int64_t qn = c->qk_norm_full ? qd : c->head_dim, kn = c->qk_norm_full ? kvd : c->head_dim;
    if ((st = get_matrix(L, N("attn_q.weight"), qd, d, &w->wq, false)) ||
        (st = get_matrix(L, N("attn_k.weight"), kvd, d, &w->wk, false)) ||
        (st = get_matrix(L, N("attn_v.weight"), kvd, d, &w->wv, false)) ||
        (st = get_matrix(L, N("attn_output.weight"), d, qd, &w->wo, false)) ||
        (moe && (st = get_experts(L, i, w))) ||
        (!moe && (st = get_matrix(L, N("ffn_gate.weight"), ff, d, &w->w_gate, false))) ||
        (!moe && (st = get_matrix(L, N("ffn_up.weight"), ff, d, &w->w_up, false))) ||
        (!moe && (st = get_matrix(L, N("ffn_down.weight"), d, ff, &w->w_down, false))) ||
        (st = get_vector(L, N("attn_norm.weight"), d, &w->attn_norm, false)) ||
        (st = get_vector(L, N("ffn_norm.weight"), d, &w->mlp_norm, false)) ||
        (st = get_vector(L, N("attn_q.bias"), qd, &w->bq, !c->attn_bias)) ||
        (st = get_vector(L, N("attn_k.bias"), kvd, &w->bk, !c->attn_bias)) ||
        (st = get_vector(L, N("attn_v.bias"), kvd, &w->bv, !c->attn_bias)) ||
        (st = get_vector(L, N("attn_output.bias"), d, &w->bo, true)) ||
        (st = get_vector(L, N("attn_q_norm.weight"), qn, &w->q_norm, !c->qk_norm)) ||
        (st = get_vector(L, N("attn_k_norm.weight"), kn, &w->k_norm, !c->qk_norm)) ||
        (st = get_vector(L, N("ffn_gate.bias"), ff, &w->b_gate, true)) ||
        (st = get_vector(L, N("ffn_up.bias"), ff, &w->b_up, true)) ||
        (st = get_vector(L, N("ffn_down.bias"), d, &w->b_down, true)))
        return st;
    const bool gemma = family_get(c->arch)->gemma;
    if (gemma && ((st = get_vector(L, N("post_attention_norm.weight"), d, &w->post_attn_norm, false)) ||
                  (st = get_vector(L, N("post_ffw_norm.weight"), d, &w->post_mlp_norm, false))))
        return st;
#undef N
    w->window = 0;
    if (gemma && i < CONFIG_MAX_LAYER_TYPES && (c->layer_sliding[i / 64] >> (i % 64) & 1)) {
        w->window = c->sliding_window;
        w->rope_local = c->rope_theta_local > 0;
    }
    return WICK_OK;
}

/* inv_freq[i] = 1/θ^(2i/hd) in f32 as transformers computes it; linear scaling divides by the
 * factor; a rope_freqs.weight tensor (llama 3 style scaling baked by the converter) divides
 * each frequency by its factor. */
static wick_status rope_freqs(gl *L, float *inv) {
    const model_config *c = &L->m->cfg;
    const int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)c->head_dim;
        inv[i] = 1.0f / (float)pow((double)c->rope_theta, (double)e);
        if (c->rope == ROPE_LINEAR) inv[i] /= c->rope_factor;
    }
    float *fac = NULL;
    wick_status st = get_vector(L, "rope_freqs.weight", half, &fac, true);
    if (st) return st;
    if (fac) {
        for (int i = 0; i < half; i++) inv[i] /= fac[i];
        L->m->n_params -= half; /* not a model parameter */
        free(fac);
    }
    return WICK_OK;
}

/* Builds tokenizer.json / tokenizer_config.json documents from the metadata and loads them
 * from memory. */
static wick_status load_tokenizer(gl *L) {
    char *tj = NULL, *tc = NULL;
    wick_status st = model_gguf_tokenizer_json(L->g, &tj, &tc);
    if (st) return st;
    st = wick_tokenizer_load_mem(tj, strlen(tj), tc, &L->m->tok);
    if (st) err_wrap(st, "%s: the tokenizer in the GGUF metadata", L->path);
    free(tj);
    free(tc);
    return st;
}

wick_status model_gguf_load(const char *path, const wick_model_params *params, wick_model *m,
                            gguf_file **file, bool *rope_interleaved) {
    *file = NULL;
    *rope_interleaved = false;
    gguf_file *g = NULL;
    wick_status st = gguf_open(path, &g);
    if (st) return st;
    *file = g;
    return model_gguf_build(g, params, m, rope_interleaved);
}

/* Every block has at least this many tensors (q, k, v, output, gate, up, down, two norms). */
#define MIN_TENSORS_PER_BLOCK 9

wick_status model_gguf_build(const gguf_file *g, const wick_model_params *params, wick_model *m,
                             bool *rope_interleaved) {
    *rope_interleaved = false;
    wick_model_params defaults = wick_model_params_default();
    if (!params) params = &defaults;
    const char *path = g->mf.path;
    wick_status st;
    gl L = {m, g, path};
    if (!m->path && !(m->path = strdup(path))) return err_set(WICK_ERR_NOMEM, "out of memory");
    if ((st = read_config(&L, &m->cfg, rope_interleaved))) return st;
    const model_config *c = &m->cfg;
    if (!m->kern) {
        m->kern = kernels_select(params->kernels);
        if (!m->kern)
            return err_set(WICK_ERR_INVALID_ARG, "kernel table '%s' is unknown or not supported "
                           "by this CPU", params->kernels ? params->kernels : "(null)");
    }
    if ((st = get_matrix(&L, "token_embd.weight", c->n_vocab, c->n_embd, &m->tok_embd, false)))
        return st;
    /* 6 where q/k/v and gate/up are fused (Phi-3) */
    const int min_t = family_get(c->arch)->fused ? 6 : MIN_TENSORS_PER_BLOCK;
    if (c->n_layer > g->n_tensors / min_t)
        return err_set(WICK_ERR_SHAPE, "%s: block_count %d is more than the file's %lld tensors "
                       "can hold (at least %d per block)", path, c->n_layer,
                       (long long)g->n_tensors, min_t);
    if (!(m->layers = calloc((size_t)c->n_layer, sizeof *m->layers)))
        return err_set(WICK_ERR_NOMEM, "out of memory");
    for (int i = 0; i < c->n_layer; i++)
        if ((st = load_layer(&L, i, &m->layers[i]))) return st;
    if ((st = get_vector(&L, "output_norm.weight", c->n_embd, &m->final_norm, false))) return st;
    if (c->tie_embd) m->lm_head = m->tok_embd;
    else if ((st = get_matrix(&L, "output.weight", c->n_vocab, c->n_embd, &m->lm_head, false)))
        return st;
    if (!(m->rope_inv_freq = malloc(sizeof(float) * (size_t)(c->head_dim / 2))))
        return err_set(WICK_ERR_NOMEM, "out of memory");
    if (c->rope == ROPE_LONGROPE || c->rot_dim != c->head_dim) { /* Phi-3: as from a folder */
        model_rope_freqs(c, m->rope_inv_freq, false);
        if (c->rope == ROPE_LONGROPE) {
            if (!(m->rope_inv_freq_long = malloc(sizeof(float) * (size_t)(c->head_dim / 2))))
                return err_set(WICK_ERR_NOMEM, "out of memory");
            model_rope_freqs(c, m->rope_inv_freq_long, true);
        }
    } else if ((st = rope_freqs(&L, m->rope_inv_freq))) {
        return st;
    }
    if (c->rope_theta_local > 0) { /* Gemma 3's sliding layers: their own base, no scaling */
        if (!(m->rope_inv_freq_local = malloc(sizeof(float) * (size_t)(c->head_dim / 2))))
            return err_set(WICK_ERR_NOMEM, "out of memory");
        for (int i = 0; i < c->head_dim / 2; i++)
            m->rope_inv_freq_local[i] =
                1.0f / (float)pow((double)c->rope_theta_local, (double)((float)(2 * i) / (float)c->head_dim));
    }
    if (params->load_tokenizer && gguf_find_kv(g, "tokenizer.ggml.model"))
        st = load_tokenizer(&L);
    return st;
}

/* ---- writing ---- */

typedef struct wlist {
    gguf_write_tensor *t;
    int n, cap;
    char **names;
    void **bufs;
} wlist;

/* Appends a tensor whose bytes are `data`; `buf` (owned, freed with the list) is either
 * data itself or NULL when data is borrowed from the model. */
static int wl_push(wlist *w, const char *name, dtype dt, int64_t rows, int64_t cols,
                   const void *data, void *buf) {
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        gguf_write_tensor *t = realloc(w->t, sizeof *t * cap);
        if (t) w->t = t;
        char **nm = realloc(w->names, sizeof *nm * cap);
        if (nm) w->names = nm;
        void **b = realloc(w->bufs, sizeof *b * cap);
        if (b) w->bufs = b;
        if (!t || !nm || !b) {
            free(buf);
            return -1;
        }
        w->cap = cap;
    }
    w->names[w->n] = strdup(name);
    w->bufs[w->n] = buf;
    gguf_write_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = w->names[w->n];
    t->dt = dt;
    t->n_dims = rows > 1 ? 2 : 1;
    t->ne[0] = cols;
    t->ne[1] = rows;
    t->data = data;
    w->n++;
    return t->name ? 0 : -1;
}

/* Dequantizes/widens W to f32 row by row, permutes rows of q/k heads for llama (row 2j+t of a
 * head takes row t·half + j), and stores as dt. */
static void *convert_matrix(const wk_weight *W, dtype dt, int permute_heads, int hd) {
    const int64_t rows = W->rows, cols = W->cols;
    const size_t rb = dtype_row_bytes(dt, cols);
    unsigned char *out = malloc(rb * (size_t)(rows ? rows : 1));
    float *row = malloc(sizeof(float) * (size_t)(cols ? cols : 1));
    if (!out || !row) { free(out); free(row); return NULL; }
    for (int64_t r = 0; r < rows; r++) {
        int64_t src = r;
        if (permute_heads) {
            const int64_t h = r / hd, i = r % hd, half = hd / 2;
            src = h * hd + (i % 2) * half + i / 2;
        }
        kernels_row_to_f32(row, W, src);
        unsigned char *o = out + (size_t)r * rb;
        if (dtype_is_quant(dt)) quant_quantize_row(dt, o, row, cols);
        else if (dt == DT_F32) memcpy(o, row, sizeof(float) * (size_t)cols);
        else
            for (int64_t c = 0; c < cols; c++) {
                uint16_t h = dt == DT_F16 ? f32_to_f16(row[c]) : f32_to_bf16(row[c]);
                memcpy(o + 2 * c, &h, 2);
            }
    }
    free(row);
    return out;
}

static __thread void (*g_progress)(void *, int, int);
static __thread void *g_progress_user;
static __thread int g_progress_done, g_progress_total;

void model_gguf_set_progress(void (*fn)(void *user, int done, int total), void *user) {
    g_progress = fn;
    g_progress_user = user;
}

/* Pushes matrix W as `dt`: borrowed as it is when it already is dt in the wanted row order
 * (no copy, and no requantization of quantized rows), converted otherwise. 0 on success. */
static int push_matrix(wlist *w, const char *name, const wk_weight *W, dtype dt, int perm,
                       int hd) {
    int rc;
    if (W->dt == dt && !perm) rc = wl_push(w, name, dt, W->rows, W->cols, W->data, NULL);
    else {
        void *b = convert_matrix(W, dt, perm, hd);
        rc = !b || wl_push(w, name, dt, W->rows, W->cols, b, b);
    }
    if (g_progress) g_progress(g_progress_user, ++g_progress_done, g_progress_total);
    return rc;
}

static dtype pick_type(dtype want, int64_t cols) {
    if (cols % dtype_block_size(want) == 0) return want;
    /* as llama.cpp: Q4_K rows that are not whole super-blocks become Q5_0, others Q8_0 */
    if (want == DT_Q4_K && cols % 32 == 0) return DT_Q5_0;
    if (dtype_is_quant(want) && cols % 32 == 0) return DT_Q8_0;
    return dtype_is_quant(want) ? DT_F16 : want;
}

/* Pushes parts[0..n) stacked by rows as one tensor (model_stack_rows). 0 on success. */
static int push_stacked(wlist *w, const char *name, const wk_weight *const *parts, int n,
                        dtype dt, int hd) {
    void *cat = NULL;
    const wk_weight all = model_stack_rows(parts, n, &cat);
    if (!all.data) return -1;
    if (cat && all.dt == dt) return wl_push(w, name, dt, all.rows, all.cols, cat, cat);
    const int rc = push_matrix(w, name, &all, dt, 0, hd);
    free(cat);
    return rc;
}

/* The E expert matrices (rows, cols) as one 3-D tensor ne = [cols, rows, E], as dt. */
static int push_experts(wlist *w, const char *name, const wk_weight *ex, int64_t E, dtype dt,
                        int hd) {
    const wk_weight **parts = malloc(sizeof *parts * (size_t)(E ? E : 1));
    if (!parts) return -1;
    for (int64_t e = 0; e < E; e++) parts[e] = &ex[e];
    const int rc = push_stacked(w, name, parts, (int)E, dt, hd);
    free(parts);
    if (rc) return rc;
    gguf_write_tensor *t = &w->t[w->n - 1];
    t->n_dims = 3;
    t->ne[1] = ex[0].rows;
    t->ne[2] = E;
    return 0;
}

/* Why llama.cpp's MoE architecture for this model cannot describe it, or NULL. */
static const char *moe_unwritable(const model_config *c) {
    for (int l = 0; l < c->n_layer; l++)
        if (l >= CONFIG_MAX_LAYER_TYPES || !(c->layer_moe[l / 64] >> (l % 64) & 1))
            return "it has dense blocks (llama.cpp's MoE architectures make every block MoE)";
    if (c->arch == ARCH_OLMOE && c->norm_topk)
        return "norm_topk_prob is true (llama.cpp's olmoe never renormalizes the chosen experts)";
    if (c->arch != ARCH_OLMOE && !c->norm_topk)
        return "norm_topk_prob is false (llama.cpp renormalizes the chosen experts here)";
    if (c->arch == ARCH_MIXTRAL && c->sliding_window > 0)
        return "it has a sliding window (llama.cpp's llama architecture has none)";
    return NULL;
}

wick_status model_gguf_save(const wick_model *m, const char *path, dtype qtype,
                            const gguf_kv *extra, int n_extra) {
    if (!(dtype_is_quant(qtype) || qtype == DT_F32 || qtype == DT_F16 || qtype == DT_BF16 ||
          qtype == MODEL_GGUF_KEEP))
        return err_set(WICK_ERR_INVALID_ARG, "%s: cannot write matrices as %s", path, dtype_name(qtype));
    const model_config *c = &m->cfg;
    const model_family *fam = family_get(c->arch);
    if (fam->no_gguf)
        return err_set(WICK_ERR_UNSUPPORTED, "%s: writing %s models to GGUF is not supported yet",
                       path, fam->hf_arch);
    if (fam->gemma) { /* only what llama.cpp's fixed Gemma rules (read_gemma) describe */
        const bool g3 = fam->id == ARCH_GEMMA3, big = c->n_layer == (g3 ? 62 : 46);
        const float want = 1.0f / sqrtf(big ? (float)(c->n_embd / c->n_head) : (float)c->head_dim);
        bool pattern_ok = c->n_layer <= CONFIG_MAX_LAYER_TYPES;
        for (int l = 0; l < c->n_layer && pattern_ok; l++)
            pattern_ok = (bool)(c->layer_sliding[l / 64] >> (l % 64) & 1) == ((l + 1) % fam->swa_pattern != 0);
        const char *why = !pattern_ok ? "its sliding layers are not every layer but each pattern-th"
                          : fabsf(c->attn_scale - want) > 1e-6f * want ? "query_pre_attn_scalar differs from llama.cpp's rule"
                          : g3 && c->rope_theta_local != 10000.0f ? "the sliding layers' RoPE base is not 10000"
                          : c->act != ACT_GELU_TANH ? "its activation is not gelu_pytorch_tanh" : NULL;
        if (why)
            return err_set(WICK_ERR_UNSUPPORTED, "%s: this %s model cannot be written to GGUF: %s (llama.cpp "
                           "fixes these for %s: every %d%s layer global, 1/sqrt(head_dim) scores)", path,
                           fam->hf_arch, why, fam->gguf_arch, fam->swa_pattern, fam->swa_pattern == 2 ? "nd" : "th");
    }
    if (c->n_expert > 0) {
        const char *why = moe_unwritable(c);
        if (why)
            return err_set(WICK_ERR_UNSUPPORTED, "%s: this %s model cannot be written to GGUF: %s",
                           path, fam->hf_arch, why);
    }
    const char *arch = fam->gguf_arch;
    /* q/k rows are permuted for llama unless they came from a GGUF file already permuted */
    const bool perm = fam->gguf_permuted && !m->rope_interleaved;
    wlist w = {0};
    wick_status st = WICK_OK;
    int fail = 0;
    const bool keep = qtype == MODEL_GGUF_KEEP;
    g_progress_done = 0;
    g_progress_total = (fam->fused ? 4 : 7) * c->n_layer + 1 + (m->lm_head.data != m->tok_embd.data);
    /* the type matrix W is written in: its own with MODEL_GGUF_KEEP */
#define TYPE_OF(W, want) (keep ? (W)->dt : pick_type((want), (W)->cols))
#define MAT(name, W, perm)                                                                     \
    fail |= push_matrix(&w, (name), (W), TYPE_OF(W, qtype), (perm), c->head_dim)
#define VEC(name, v, nn)                                                                       \
    do {                                                                                       \
        if (v) {                                                                               \
            float *b_ = malloc(sizeof(float) * (size_t)(nn));                                  \
            if (b_) memcpy(b_, (v), sizeof(float) * (size_t)(nn));                             \
            fail |= !b_ || wl_push(&w, (name), DT_F32, 1, (nn), b_, b_);                       \
        }                                                                                      \
    } while (0)
    {
        /* For 4-bit targets the token embedding keeps more precision: Q8_0 when it is only
           looked up row by row, Q6_K (Q8_0 when the row length does not allow it) when it is
           tied to the output head, whose rounding every logit feels — as llama.cpp does for
           its output tensor. */
        dtype et = !dtype_is_quant(qtype) || qtype == DT_Q8_0 || qtype == DT_Q6_K ? qtype
                   : c->tie_embd ? DT_Q6_K : DT_Q8_0;
        fail |= push_matrix(&w, "token_embd.weight", &m->tok_embd, TYPE_OF(&m->tok_embd, et), 0,
                            c->head_dim);
    }
    char n[96];
    const int64_t d = c->n_embd, qd = (int64_t)c->n_head * c->head_dim,
                  kvd = (int64_t)c->n_kv_head * c->head_dim, ff = c->n_ff;
    for (int i = 0; i < c->n_layer && !fail; i++) {
        const layer_weights *l = &m->layers[i];
#define N(s) (snprintf(n, sizeof n, "blk.%d.%s", i, s), n)
        if (fam->fused) { /* Phi-3, as llama.cpp names it: fused attn_qkv, ffn_up = gate ‖ up */
            const wk_weight *qkv[3] = {&l->wq, &l->wk, &l->wv}, *gu[2] = {&l->w_gate, &l->w_up};
            fail |= push_stacked(&w, N("attn_qkv.weight"), qkv, 3, TYPE_OF(&l->wq, qtype),
                                 c->head_dim);
            MAT(N("attn_output.weight"), &l->wo, 0);
            fail |= push_stacked(&w, N("ffn_up.weight"), gu, 2, TYPE_OF(&l->w_gate, qtype),
                                 c->head_dim);
            MAT(N("ffn_down.weight"), &l->w_down, 0);
            VEC(N("attn_norm.weight"), l->attn_norm, d);
            VEC(N("ffn_norm.weight"), l->mlp_norm, d);
            if (l->bq || l->bk || l->bv || l->bo || l->b_gate || l->b_up || l->b_down) {
                for (int j = 0; j < w.n; j++) { free(w.names[j]); free(w.bufs[j]); }
                free(w.t); free(w.names); free(w.bufs);
                return err_set(WICK_ERR_UNSUPPORTED, "%s: Phi-3 models with biases cannot be "
                               "written to GGUF (llama.cpp's phi3 has none)", path);
            }
            continue;
        }
        MAT(N("attn_q.weight"), &l->wq, perm);
        MAT(N("attn_k.weight"), &l->wk, perm);
        MAT(N("attn_v.weight"), &l->wv, 0);
        MAT(N("attn_output.weight"), &l->wo, 0);
        if (l->exp_gate) { /* the router stays F32 (as llama.cpp's quantizer leaves it) */
            const int64_t E = c->n_expert;
            fail |= push_matrix(&w, N("ffn_gate_inp.weight"), &l->router,
                                keep ? l->router.dt : DT_F32, 0, c->head_dim);
            fail |= push_experts(&w, N("ffn_gate_exps.weight"), l->exp_gate, E,
                                 TYPE_OF(&l->exp_gate[0], qtype), c->head_dim);
            fail |= push_experts(&w, N("ffn_up_exps.weight"), l->exp_up, E,
                                 TYPE_OF(&l->exp_up[0], qtype), c->head_dim);
            fail |= push_experts(&w, N("ffn_down_exps.weight"), l->exp_down, E,
                                 TYPE_OF(&l->exp_down[0], qtype), c->head_dim);
        } else {
            MAT(N("ffn_gate.weight"), &l->w_gate, 0);
            MAT(N("ffn_up.weight"), &l->w_up, 0);
            MAT(N("ffn_down.weight"), &l->w_down, 0);
        }
        VEC(N("attn_norm.weight"), l->attn_norm, d);
        VEC(N("ffn_norm.weight"), l->mlp_norm, d);
        VEC(N("attn_output.bias"), l->bo, d);
        VEC(N("ffn_gate.bias"), l->b_gate, ff);
        VEC(N("ffn_up.bias"), l->b_up, ff);
        VEC(N("ffn_down.bias"), l->b_down, d);
        if ((l->bq || l->bk) && perm) { /* would need the same row permutation as q/k: not written yet */
            for (int j = 0; j < w.n; j++) { free(w.names[j]); free(w.bufs[j]); }
            free(w.t); free(w.names); free(w.bufs);
            return err_set(WICK_ERR_UNSUPPORTED, "%s: llama models with attention biases cannot "
                           "be written to GGUF yet", path);
        }
        VEC(N("post_attention_norm.weight"), l->post_attn_norm, d); /* Gemma, stored 1 + w */
        VEC(N("post_ffw_norm.weight"), l->post_mlp_norm, d);
        VEC(N("attn_q_norm.weight"), l->q_norm, c->qk_norm_full ? qd : c->head_dim); /* OLMoE: full */
        VEC(N("attn_k_norm.weight"), l->k_norm, c->qk_norm_full ? kvd : c->head_dim);
        VEC(N("attn_q.bias"), l->bq, qd);
        VEC(N("attn_k.bias"), l->bk, kvd);
        VEC(N("attn_v.bias"), l->bv, kvd);
#undef N
    }
    VEC("output_norm.weight", m->final_norm, d);
    if (c->rope == ROPE_LONGROPE) { /* llama.cpp's phi3: the divisors as two tensors */
        VEC("rope_factors_long.weight", c->rope_long, c->rot_dim / 2);
        VEC("rope_factors_short.weight", c->rope_short, c->rot_dim / 2);
    }
    if (!c->tie_embd && !fail) {
        dtype ht = qtype == DT_Q4_0 || qtype == DT_Q4_K ? DT_Q6_K : qtype;
        fail |= push_matrix(&w, "output.weight", &m->lm_head, TYPE_OF(&m->lm_head, ht), 0,
                            c->head_dim);
    }
#undef MAT
#undef TYPE_OF
#undef VEC
    gguf_kv kv[24 + 64];
    int k = 0;
    char keys[24][96];
#define KEY(s) (snprintf(keys[k], sizeof keys[k], "%s.%s", arch, s), keys[k])
    kv[k].key = "general.architecture"; kv[k].v = gguf_v_str(arch); k++;
    kv[k].key = KEY("embedding_length"); kv[k].v = gguf_v_u32((uint32_t)c->n_embd); k++;
    kv[k].key = KEY("feed_forward_length"); kv[k].v = gguf_v_u32((uint32_t)c->n_ff); k++;
    kv[k].key = KEY("block_count"); kv[k].v = gguf_v_u32((uint32_t)c->n_layer); k++;
    kv[k].key = KEY("attention.head_count"); kv[k].v = gguf_v_u32((uint32_t)c->n_head); k++;
    kv[k].key = KEY("attention.head_count_kv"); kv[k].v = gguf_v_u32((uint32_t)c->n_kv_head); k++;
    kv[k].key = KEY("attention.key_length"); kv[k].v = gguf_v_u32((uint32_t)c->head_dim); k++;
    /* llama.cpp sizes v (and, for some architectures, k) rows by value_length, which
       defaults to hidden / heads: needed wherever head_dim is not that (Qwen3) */
    kv[k].key = KEY("attention.value_length"); kv[k].v = gguf_v_u32((uint32_t)c->head_dim); k++;
    kv[k].key = KEY("rope.dimension_count"); kv[k].v = gguf_v_u32((uint32_t)c->rot_dim); k++;
    kv[k].key = KEY("context_length"); kv[k].v = gguf_v_u32((uint32_t)c->n_ctx_train); k++;
    kv[k].key = KEY("attention.layer_norm_rms_epsilon"); kv[k].v = gguf_v_f32(c->norm_eps); k++;
    kv[k].key = KEY("rope.freq_base"); kv[k].v = gguf_v_f32(c->rope_theta); k++;
    if (c->rope == ROPE_LINEAR) {
        kv[k].key = KEY("rope.scaling.type"); kv[k].v = gguf_v_str("linear"); k++;
        kv[k].key = KEY("rope.scaling.factor"); kv[k].v = gguf_v_f32(c->rope_factor); k++;
    }
    if (c->n_expert > 0) {
        kv[k].key = KEY("expert_count"); kv[k].v = gguf_v_u32((uint32_t)c->n_expert); k++;
        kv[k].key = KEY("expert_used_count"); kv[k].v = gguf_v_u32((uint32_t)c->n_expert_used); k++;
        if (fam->moe_qwen_keys) {
            kv[k].key = KEY("expert_feed_forward_length");
            kv[k].v = gguf_v_u32((uint32_t)c->n_ff_expert); k++;
        }
    }
    if (c->rope == ROPE_LONGROPE) {
        kv[k].key = KEY("rope.scaling.original_context_length");
        kv[k].v = gguf_v_u32((uint32_t)c->rope_orig_ctx); k++;
        kv[k].key = KEY("rope.scaling.attn_factor"); kv[k].v = gguf_v_f32(c->rope_attn_factor); k++;
    }
    if ((fam->gemma || fam->fused) && c->sliding_window > 0) {
        kv[k].key = KEY("attention.sliding_window"); kv[k].v = gguf_v_u32((uint32_t)c->sliding_window); k++;
    }
    if (c->attn_softcap > 0) {
        kv[k].key = KEY("attn_logit_softcapping"); kv[k].v = gguf_v_f32(c->attn_softcap); k++;
    }
    if (c->final_softcap > 0) {
        kv[k].key = KEY("final_logit_softcapping"); kv[k].v = gguf_v_f32(c->final_softcap); k++;
    }
#undef KEY
    /* the special ids are the model's (config.json / generation_config.json, or the GGUF it
     * came from), so folder -> GGUF -> folder keeps bos, eos and pad exactly; an id key in
     * `extra` is written as given instead */
    static const char *const id_keys[] = {"tokenizer.ggml.bos_token_id",
                                          "tokenizer.ggml.eos_token_id",
                                          "tokenizer.ggml.eot_token_id",
                                          "tokenizer.ggml.padding_token_id",
                                          "tokenizer.wick.eos_token_ids"};
    bool given[5] = {false};
    for (int i = 0; i < n_extra && k < (int)(sizeof kv / sizeof kv[0]) - 5; i++) {
        for (int j = 0; j < 5; j++) given[j] |= !strcmp(extra[i].key, id_keys[j]);
        kv[k++] = extra[i];
    }
    gguf_value eos_list[CONFIG_MAX_EOS];
    const int64_t ids[4] = {c->bos_id, c->n_eos >= 1 ? c->eos_ids[0] : -1,
                            c->n_eos >= 2 ? c->eos_ids[1] : -1, c->pad_id};
    for (int j = 0; j < 4; j++)
        if (ids[j] >= 0 && !given[j]) {
            kv[k].key = (char *)id_keys[j];
            kv[k].v = gguf_v_u32((uint32_t)ids[j]);
            k++;
        }
    if (c->n_eos > 2 && !given[1] && !given[4]) {   /* llama.cpp has keys for two */
        for (int i = 0; i < c->n_eos; i++) eos_list[i] = gguf_v_u32((uint32_t)c->eos_ids[i]);
        kv[k].key = (char *)id_keys[4];
        kv[k].v.type = GGUF_ARRAY;
        kv[k].v.arr.type = GGUF_U32;
        kv[k].v.arr.n = (uint64_t)c->n_eos;
        kv[k].v.arr.items = eos_list;
        k++;
    }
    if (c->rope != ROPE_DEFAULT && c->rope != ROPE_LINEAR && !(c->rope == ROPE_LONGROPE && fam->fused))
        st = err_set(WICK_ERR_UNSUPPORTED, "%s: rope scaling of this model cannot be written to "
                     "GGUF yet", path);
    else if (fail)
        st = err_set(WICK_ERR_NOMEM, "%s: out of memory converting the weights", path);
    else
        st = gguf_write(path, kv, k, w.t, w.n);
    for (int i = 0; i < w.n; i++) { free(w.names[i]); free(w.bufs[i]); }
    free(w.t); free(w.names); free(w.bufs);
    return st;
}
