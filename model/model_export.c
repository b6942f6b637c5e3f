/* model_export.c — a loaded decoder model written as a Hugging Face model folder.
 *
 * Tensor names and layout are those transformers' Qwen2/Llama/Mistral/Qwen3 classes load:
 * model.embed_tokens.weight, model.layers.N.{self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj}
 * .weight (+ .bias where the model has biases, + self_attn.{q,k}_norm.weight for Qwen3),
 * model.layers.N.{input,post_attention}_layernorm
 * .weight, model.norm.weight and lm_head.weight (only when untied). Matrices go out in the
 * requested scalar type; a matrix already in that type and in HF row order is written
 * straight from the mapping (no copy). GGUF `llama` files hold q/k rows permuted for
 * interleaved RoPE (GGUF row h·hd + 2j + t = HF row h·hd + t·half + j); those rows and their
 * biases are put back into rotate-half order here.
 *
 * Not here: quantized output (safetensors has no block types), sharding into several files
 * (one model.safetensors, whatever the size), tokenizers the GGUF reader cannot rebuild
 * (model_gguf_tokenizer_json reports those), copying tokenizer files of folder-loaded models. */
#include "model/model_export.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "model/family.h"
#include "model/model_gguf.h"

/* The tensors to write, with the names and buffers they own. */
typedef struct tlist {
    st_write_tensor *t;
    char **names;
    void **bufs;          /* owned conversion buffers, NULL for zero-copy entries */
    int n, cap;
} tlist;

static void tl_free(tlist *L) {
    for (int i = 0; i < L->n; i++) { free(L->names[i]); free(L->bufs[i]); }
    free(L->t); free(L->names); free(L->bufs);
}

/* Appends a tensor; takes ownership of buf (freed on failure too). 0 on success. */
static int tl_push(tlist *L, const char *name, dtype dt, int ndim, int64_t d0, int64_t d1,
                   const void *data, void *buf) {
    if (L->n == L->cap) {
        int cap = L->cap ? 2 * L->cap : 64;
        st_write_tensor *t = realloc(L->t, sizeof *t * (size_t)cap);
        if (t) L->t = t;
        char **nm = realloc(L->names, sizeof *nm * (size_t)cap);
        if (nm) L->names = nm;
        void **b = realloc(L->bufs, sizeof *b * (size_t)cap);
        if (b) L->bufs = b;
        if (!t || !nm || !b) { free(buf); return -1; }
        L->cap = cap;
    }
    char *nm = strdup(name);
    if (!nm) { free(buf); return -1; }
    L->names[L->n] = nm;
    L->bufs[L->n] = buf;
    st_write_tensor *t = &L->t[L->n++];
    memset(t, 0, sizeof *t);
    t->name = nm;
    t->dt = dt;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->data = data;
    return 0;
}

/* Source row (in the file's order) of HF row r of a q/k projection, for permuted sources. */
static int64_t src_row(int64_t r, int hd, bool unperm) {
    if (!unperm) return r;
    const int64_t h = r / hd, j = r % hd, half = hd / 2;
    return h * hd + 2 * (j % half) + j / half;
}

/* Matrix W (rows, cols) as dt in HF row order. */
static int add_matrix(tlist *L, const char *name, const wk_weight *W, dtype dt, bool unperm,
                      int hd) {
    if (W->dt == dt && !unperm) return tl_push(L, name, dt, 2, W->rows, W->cols, W->data, NULL);
    const int64_t rows = W->rows, cols = W->cols;
    const size_t es = dtype_size(dt), numel = (size_t)(rows * cols);
    unsigned char *out = malloc(es * (numel ? numel : 1));
    float *row = malloc(sizeof(float) * (size_t)(cols ? cols : 1));
    if (!out || !row) { free(out); free(row); return -1; }
    for (int64_t r = 0; r < rows; r++) {
        kernels_row_to_f32(row, W, src_row(r, hd, unperm));
        unsigned char *o = out + (size_t)(r * cols) * es;
        if (dt == DT_F32) {
            memcpy(o, row, sizeof(float) * (size_t)cols);
            continue;
        }
        for (int64_t c = 0; c < cols; c++) {
            uint16_t h = dt == DT_F16 ? f32_to_f16(row[c]) : f32_to_bf16(row[c]);
            memcpy(o + 2 * c, &h, 2);
        }
    }
    free(row);
    return tl_push(L, name, dt, 2, rows, cols, out, out);
}

/* f32 vector v (n) or nothing when v is NULL; q/k biases of permuted sources are reordered
 * like their rows. */
static int add_vector(tlist *L, const char *name, const float *v, int64_t n, bool unperm,
                      int hd) {
    if (!v) return 0;
    if (!unperm) return tl_push(L, name, DT_F32, 1, n, 0, v, NULL);
    float *b = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!b) return -1;
    for (int64_t r = 0; r < n; r++) b[r] = v[src_row(r, hd, true)];
    return tl_push(L, name, DT_F32, 1, n, 0, b, b);
}

/* Gemma's norm weights: the model holds 1 + w (model.c norm_plus_one), the file w. For a
 * stored value s in [0.5, 2] (every trained Gemma norm we know of) s − 1 is exact, so a reload
 * computes 1 + (s − 1) = s again. */
static int add_vector_m1(tlist *L, const char *name, const float *v, int64_t n) {
    if (!v) return 0;
    float *b = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!b) return -1;
    for (int64_t r = 0; r < n; r++) b[r] = v[r] - 1.0f;
    return tl_push(L, name, DT_F32, 1, n, 0, b, b);
}

/* parts[0..n) stacked by rows as one tensor (model_stack_rows). */
static int add_stacked(tlist *L, const char *name, const wk_weight *const *parts, int n,
                       dtype dt, int hd) {
    void *cat = NULL;
    const wk_weight all = model_stack_rows(parts, n, &cat);
    if (!all.data) return -1;
    if (cat && all.dt == dt) return tl_push(L, name, dt, 2, all.rows, all.cols, cat, cat);
    const int rc = add_matrix(L, name, &all, dt, false, hd);
    free(cat);
    return rc;
}

static wick_status write_weights(const wick_model *m, const char *out_dir, dtype dt) {
    const model_config *c = &m->cfg;
    const int hd = c->head_dim;
    const bool up = m->rope_interleaved;
    const int64_t d = c->n_embd, qd = (int64_t)c->n_head * hd, kvd = (int64_t)c->n_kv_head * hd,
                  ff = c->n_ff;
    tlist L = {0};
    int fail = add_matrix(&L, "model.embed_tokens.weight", &m->tok_embd, dt, false, hd);
    char n[128];
    for (int i = 0; i < c->n_layer && !fail; i++) {
        const layer_weights *l = &m->layers[i];
#define N(s) (snprintf(n, sizeof n, "model.layers.%d.%s", i, s), n)
        if (family_get(c->arch)->fused) { /* Phi-3: qkv_proj = q ‖ k ‖ v, gate_up_proj = gate ‖ up */
            const wk_weight *qkv[3] = {&l->wq, &l->wk, &l->wv}, *gu[2] = {&l->w_gate, &l->w_up};
            fail |= add_stacked(&L, N("self_attn.qkv_proj.weight"), qkv, 3, dt, hd);
            fail |= add_matrix(&L, N("self_attn.o_proj.weight"), &l->wo, dt, false, hd);
            fail |= add_stacked(&L, N("mlp.gate_up_proj.weight"), gu, 2, dt, hd);
            fail |= add_matrix(&L, N("mlp.down_proj.weight"), &l->w_down, dt, false, hd);
            fail |= add_vector(&L, N("input_layernorm.weight"), l->attn_norm, d, false, hd);
            fail |= add_vector(&L, N("post_attention_layernorm.weight"), l->mlp_norm, d, false, hd);
            if (l->bq || l->bk || l->bv || l->bo || l->b_gate || l->b_up || l->b_down) fail = 1;
            continue;
        }
        if (l->exp_gate) { /* a MoE block: the router and each expert, as the family names them */
            const model_family *fam = family_get(c->arch);
            fail |= add_matrix(&L, (snprintf(n, sizeof n, fam->moe_router, i), n), &l->router,
                               l->router.dt == DT_F32 ? DT_F32 : dt, false, hd);
            for (int e = 0; e < c->n_expert && !fail; e++) {
                fail |= add_matrix(&L, (snprintf(n, sizeof n, fam->moe_gate, i, e), n),
                                   &l->exp_gate[e], dt, false, hd);
                fail |= add_matrix(&L, (snprintf(n, sizeof n, fam->moe_up, i, e), n),
                                   &l->exp_up[e], dt, false, hd);
                fail |= add_matrix(&L, (snprintf(n, sizeof n, fam->moe_down, i, e), n),
                                   &l->exp_down[e], dt, false, hd);
            }
        }
        fail |= add_matrix(&L, N("self_attn.q_proj.weight"), &l->wq, dt, up, hd);
        fail |= add_vector(&L, N("self_attn.q_proj.bias"), l->bq, qd, up, hd);
        fail |= add_matrix(&L, N("self_attn.k_proj.weight"), &l->wk, dt, up, hd);
        fail |= add_vector(&L, N("self_attn.k_proj.bias"), l->bk, kvd, up, hd);
        fail |= add_matrix(&L, N("self_attn.v_proj.weight"), &l->wv, dt, false, hd);
        fail |= add_vector(&L, N("self_attn.v_proj.bias"), l->bv, kvd, false, hd);
        fail |= add_matrix(&L, N("self_attn.o_proj.weight"), &l->wo, dt, false, hd);
        fail |= add_vector(&L, N("self_attn.o_proj.bias"), l->bo, d, false, hd);
        if (!l->exp_gate) {
            fail |= add_matrix(&L, N("mlp.gate_proj.weight"), &l->w_gate, dt, false, hd);
            fail |= add_vector(&L, N("mlp.gate_proj.bias"), l->b_gate, ff, false, hd);
            fail |= add_matrix(&L, N("mlp.up_proj.weight"), &l->w_up, dt, false, hd);
            fail |= add_vector(&L, N("mlp.up_proj.bias"), l->b_up, ff, false, hd);
            fail |= add_matrix(&L, N("mlp.down_proj.weight"), &l->w_down, dt, false, hd);
            fail |= add_vector(&L, N("mlp.down_proj.bias"), l->b_down, d, false, hd);
        }
        if (family_get(c->arch)->gemma) { /* four norms a layer, stored as w (not 1 + w) */
            fail |= add_vector_m1(&L, N("input_layernorm.weight"), l->attn_norm, d);
            fail |= add_vector_m1(&L, N("post_attention_layernorm.weight"), l->post_attn_norm, d);
            fail |= add_vector_m1(&L, N("pre_feedforward_layernorm.weight"), l->mlp_norm, d);
            fail |= add_vector_m1(&L, N("post_feedforward_layernorm.weight"), l->post_mlp_norm, d);
            fail |= add_vector_m1(&L, N("self_attn.q_norm.weight"), l->q_norm, hd);
            fail |= add_vector_m1(&L, N("self_attn.k_norm.weight"), l->k_norm, hd);
            continue;
        }
        fail |= add_vector(&L, N("input_layernorm.weight"), l->attn_norm, d, false, hd);
        fail |= add_vector(&L, N("post_attention_layernorm.weight"), l->mlp_norm, d, false, hd);
        /* per head (Qwen3), or over all heads (OLMoE) */
        fail |= add_vector(&L, N("self_attn.q_norm.weight"), l->q_norm, c->qk_norm_full ? qd : hd,
                           false, hd);
        fail |= add_vector(&L, N("self_attn.k_norm.weight"), l->k_norm, c->qk_norm_full ? kvd : hd,
                           false, hd);
#undef N
    }
    if (!fail && family_get(c->arch)->gemma)
        fail |= add_vector_m1(&L, "model.norm.weight", m->final_norm, d);
    else if (!fail)
        fail |= add_vector(&L, "model.norm.weight", m->final_norm, d, false, hd);
    if (!fail && !c->tie_embd) fail |= add_matrix(&L, "lm_head.weight", &m->lm_head, dt, false, hd);
    wick_status st;
    char *path = path_join(out_dir, "model.safetensors");
    if (fail || !path) {
        st = err_set(WICK_ERR_NOMEM, "%s: out of memory converting the weights", out_dir);
    } else {
        const char *mk[] = {"format"}, *mv[] = {"pt"};
        st = st_write(path, L.t, L.n, mk, mv, 1);
    }
    free(path);
    tl_free(&L);
    return st;
}

/* ---- JSON texts ---- */

typedef struct sbuf { char *s; size_t n, cap; bool oom; } sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = true; return; }
        if (b->s && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t cap = (b->cap ? 2 * b->cap : 1024) + (size_t)k;
        char *s = realloc(b->s, cap);
        if (!s) { b->oom = true; return; }
        b->s = s;
        b->cap = cap;
    }
}

/* Shortest decimal text that reads back as the same float (1e-05, not 9.99999975e-06), so
 * config.json shows the values a person wrote and parses back to the identical float. */
static void fmt_float(char out[32], float f) {
    for (int p = 6; p <= 9; p++) {
        snprintf(out, 32, "%.*g", p, (double)f);
        if (strtof(out, NULL) == f) break;
    }
    if (!strpbrk(out, ".eEn")) strcat(out, ".0"); /* keep it a JSON float: 10000.0 */
}

static void sb_id(sbuf *b, const char *key, int32_t id) {
    if (id >= 0) sb_printf(b, "  \"%s\": %d,\n", key, (int)id);
    else sb_printf(b, "  \"%s\": null,\n", key);
}

static void sb_eos(sbuf *b, const model_config *c) {
    if (c->n_eos == 0) { sb_printf(b, "  \"eos_token_id\": null"); return; }
    if (c->n_eos == 1) { sb_printf(b, "  \"eos_token_id\": %d", (int)c->eos_ids[0]); return; }
    sb_printf(b, "  \"eos_token_id\": [");
    for (int i = 0; i < c->n_eos; i++) sb_printf(b, "%s%d", i ? ", " : "", (int)c->eos_ids[i]);
    sb_printf(b, "]");
}

static const char *torch_dtype(dtype dt) {
    return dt == DT_F32 ? "float32" : dt == DT_F16 ? "float16" : "bfloat16";
}

static char *config_json(const model_config *c, dtype dt) {
    sbuf b = {0};
    const model_family *fam = family_get(c->arch);
    const char *mt = fam->model_type;
    const char *an = c->architecture[0] ? c->architecture : fam->hf_arch;
    char eps[32], theta[32], f0[32], f1[32], f2[32];
    fmt_float(eps, c->norm_eps);
    fmt_float(theta, c->rope_theta);
    sb_printf(&b, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n", an, mt);
    sb_printf(&b, "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
                  "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
                  "  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n  \"vocab_size\": %d,\n"
                  "  \"max_position_embeddings\": %d,\n  \"rms_norm_eps\": %s,\n"
                  "  \"rope_theta\": %s,\n",
              c->n_embd, c->n_ff, c->n_layer, c->n_head, c->n_kv_head, c->head_dim, c->n_vocab,
              c->n_ctx_train, eps, theta);
    if (c->rope == ROPE_LINEAR) {
        fmt_float(f0, c->rope_factor);
        sb_printf(&b, "  \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": %s},\n", f0);
    } else if (c->rope == ROPE_LLAMA3) {
        fmt_float(f0, c->rope_factor);
        fmt_float(f1, c->rope_low_freq_factor);
        fmt_float(f2, c->rope_high_freq_factor);
        sb_printf(&b, "  \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": %s, "
                      "\"low_freq_factor\": %s, \"high_freq_factor\": %s, "
                      "\"original_max_position_embeddings\": %d},\n", f0, f1, f2, c->rope_orig_ctx);
    } else if (c->rope == ROPE_LONGROPE) { /* Phi-3: the divisors and the factor, as read */
        sb_printf(&b, "  \"rope_scaling\": {\"rope_type\": \"longrope\", \"short_factor\": [");
        for (int k = 0; k < 2; k++) {
            const float *f = k ? c->rope_long : c->rope_short;
            if (k) sb_printf(&b, "], \"long_factor\": [");
            for (int i = 0; i < c->rot_dim / 2; i++) {
                fmt_float(f0, f[i]);
                sb_printf(&b, "%s%s", i ? ", " : "", f0);
            }
        }
        fmt_float(f0, c->rope_attn_factor);
        sb_printf(&b, "], \"attention_factor\": %s, \"original_max_position_embeddings\": %d},\n"
                      "  \"original_max_position_embeddings\": %d,\n", f0, c->rope_orig_ctx,
                  c->rope_orig_ctx);
    } else {
        sb_printf(&b, "  \"rope_scaling\": null,\n");
    }
    if (c->rot_dim != c->head_dim) { /* partial rotary: the fraction that gives rot_dim back */
        char pf[32];
        float f = (float)c->rot_dim / (float)c->head_dim; /* read back as (int)(head_dim · f) */
        while ((int)((double)c->head_dim * (double)f) < c->rot_dim) f = nextafterf(f, 2.0f);
        fmt_float(pf, f);
        sb_printf(&b, "  \"partial_rotary_factor\": %s,\n", pf);
    }
    if (c->n_expert > 0) { /* mixture of experts: the family's own keys (config.c parse_moe) */
        sb_printf(&b, "  \"%s\": %d,\n  \"num_experts_per_tok\": %d,\n",
                  fam->moe_qwen_keys || fam->qk_norm_full ? "num_experts" : "num_local_experts",
                  c->n_expert, c->n_expert_used);
        if (!fam->moe_norm_always)
            sb_printf(&b, "  \"norm_topk_prob\": %s,\n", c->norm_topk ? "true" : "false");
        if (fam->moe_qwen_keys) {
            sb_printf(&b, "  \"moe_intermediate_size\": %d,\n  \"decoder_sparse_step\": 1,\n"
                          "  \"mlp_only_layers\": [", c->n_ff_expert);
            bool first = true;
            for (int l = 0; l < c->n_layer; l++)
                if (!(l < CONFIG_MAX_LAYER_TYPES && (c->layer_moe[l / 64] >> (l % 64) & 1))) {
                    sb_printf(&b, "%s%d", first ? "" : ", ", l);
                    first = false;
                }
            sb_printf(&b, "],\n");
        }
    }
    /* the family's switches (Qwen2 has q/k/v biases by architecture and no such keys) */
    if (fam->attention_bias_key)
        sb_printf(&b, "  \"attention_bias\": %s,\n", c->attn_bias ? "true" : "false");
    if (fam->mlp_bias_key) sb_printf(&b, "  \"mlp_bias\": %s,\n", c->mlp_bias ? "true" : "false");
    if (fam->swa == SWA_FROM_LAYER)
        sb_printf(&b, "  \"use_sliding_window\": %s,\n  \"sliding_window\": %d,\n"
                      "  \"max_window_layers\": %d,\n", c->sliding_window ? "true" : "false",
                  c->sliding_window ? c->sliding_window : c->n_ctx_train,
                  c->sliding_window ? c->n_swa_layers_from : c->n_layer);
    else if (fam->swa == SWA_ALL && c->sliding_window)
        sb_printf(&b, "  \"sliding_window\": %d,\n", c->sliding_window);
    else if (fam->swa == SWA_LAYER_TYPES) { /* Gemma: which layers slide, by name */
        sb_printf(&b, "  \"sliding_window\": %d,\n  \"layer_types\": [",
                  c->sliding_window ? c->sliding_window : c->n_ctx_train);
        for (int l = 0; l < c->n_layer; l++)
            sb_printf(&b, "%s\"%s\"", l ? ", " : "",
                      c->layer_sliding[l / 64] >> (l % 64) & 1 ? "sliding_attention" : "full_attention");
        sb_printf(&b, "],\n");
    }
    if (fam->gemma) {
        /* query_pre_attn_scalar: the value q whose (float)q^-0.5 is the model's score scale
           (an integer where one gives it back, as in every published config) */
        const double qd = 1.0 / ((double)c->attn_scale * (double)c->attn_scale);
        float q = (float)nearbyint(qd);
        if ((float)pow((double)q, -0.5) != c->attn_scale) {
            q = (float)qd;
            for (int k = 0; k < 8 && (float)pow((double)q, -0.5) != c->attn_scale; k++)
                q = nextafterf(q, (float)pow((double)q, -0.5) > c->attn_scale ? INFINITY : 0.0f);
        }
        /* an integer written as one: transformers 5's Gemma configs type it int and refuse
           16.0 (a trained Gemma 3 folder failed to load there, tests/golden/check_trained.py) */
        if (q == nearbyintf(q) && fabsf(q) < 1e9f) snprintf(f0, sizeof f0, "%d", (int)q);
        else fmt_float(f0, q);
        sb_printf(&b, "  \"query_pre_attn_scalar\": %s,\n", f0);
        if (fam->softcaps) {
            if (c->attn_softcap > 0) fmt_float(f1, c->attn_softcap);
            if (c->final_softcap > 0) fmt_float(f2, c->final_softcap);
            sb_printf(&b, "  \"attn_logit_softcapping\": %s,\n  \"final_logit_softcapping\": %s,\n",
                      c->attn_softcap > 0 ? f1 : "null", c->final_softcap > 0 ? f2 : "null");
        }
        if (c->rope_theta_local > 0) {
            fmt_float(f0, c->rope_theta_local);
            sb_printf(&b, "  \"rope_local_base_freq\": %s,\n", f0);
        }
        sb_printf(&b, "  \"hidden_activation\": \"gelu_pytorch_tanh\",\n");
    }
    sb_printf(&b, "  \"tie_word_embeddings\": %s,\n  \"hidden_act\": \"%s\",\n",
              c->tie_embd ? "true" : "false", fam->gemma ? "gelu_pytorch_tanh" : "silu");
    sb_id(&b, "bos_token_id", c->bos_id);
    if (c->pad_id >= 0) sb_id(&b, "pad_token_id", c->pad_id);
    sb_eos(&b, c);
    sb_printf(&b, ",\n  \"torch_dtype\": \"%s\"\n}\n", torch_dtype(dt));
    if (b.oom) { free(b.s); return NULL; }
    return b.s;
}

static char *generation_config_json(const model_config *c) {
    sbuf b = {0};
    sb_printf(&b, "{\n");
    sb_id(&b, "bos_token_id", c->bos_id);
    if (c->pad_id >= 0) sb_id(&b, "pad_token_id", c->pad_id);
    sb_eos(&b, c);
    sb_printf(&b, "\n}\n");
    if (b.oom) { free(b.s); return NULL; }
    return b.s;
}

static wick_status write_text(const char *dir, const char *name, const char *text) {
    char *p = path_join(dir, name);
    wick_status st = p ? file_write_atomic(p, text, strlen(text))
                       : err_set(WICK_ERR_NOMEM, "out of memory");
    free(p);
    return st;
}

/* ---- entry points ---- */

dtype model_export_default_dtype(const wick_model *m) {
    const wk_weight *ws[2] = {&m->tok_embd, &m->lm_head};
    dtype first = m->tok_embd.dt;
    bool mixed = false;
    for (int i = 0; i < 2; i++) {
        if (dtype_is_quant(ws[i]->dt)) return DT_BF16;
        mixed |= ws[i]->dt != first;
    }
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const layer_weights *w = &m->layers[l];
        const wk_weight *ls[7] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->w_gate, &w->w_up, &w->w_down};
        for (int i = 0; i < 7; i++) {
            if (dtype_is_quant(ls[i]->dt)) return DT_BF16;
            mixed |= ls[i]->dt != first;
        }
    }
    if (mixed || (first != DT_F16 && first != DT_BF16)) return DT_F32;
    return first;
}

wick_status model_export_folder_with(const wick_model *m, const char *out_dir, dtype dt,
                                     model_export_extra_fn extra, void *user) {
    if (!m || !out_dir || !out_dir[0])
        return err_set(WICK_ERR_INVALID_ARG, "model_export_folder: NULL model or empty path");
    if (dt != DT_F32 && dt != DT_F16 && dt != DT_BF16)
        return err_set(WICK_ERR_INVALID_ARG, "%s: cannot write matrices as %s (safetensors "
                       "export takes F32, F16 or BF16)", out_dir, dtype_name(dt));
    if (family_get(m->cfg.arch)->no_export)
        return err_set(WICK_ERR_UNSUPPORTED, "%s: writing %s models as a Hugging Face folder is not "
                       "supported yet", out_dir, family_get(m->cfg.arch)->hf_arch);
    if (m->rope_interleaved && m->cfg.head_dim % 2)
        return err_set(WICK_ERR_UNSUPPORTED, "%s: odd head_dim %d with permuted q/k rows",
                       out_dir, m->cfg.head_dim);
    /* everything that can fail without touching the disk happens first */
    char *tj = NULL, *tc = NULL, *cfg = NULL, *gen = NULL;
    wick_status st = WICK_OK;
    if (m->gguf && (gguf_find_kv(m->gguf, "tokenizer.ggml.model") ||
                    gguf_find_kv(m->gguf, "tokenizer.huggingface.json"))) {
        st = model_gguf_tokenizer_json(m->gguf, &tj, &tc);
        if (st) st = err_wrap(st, "%s: cannot export the tokenizer", out_dir);
    } else if (m->path && dir_exists(m->path)) {  /* a folder model: its tokenizer files */
        size_t n = 0;
        char *p = path_join(m->path, "tokenizer.json");
        if (p && file_exists(p) && (st = file_read_all(p, &tj, &n))) tj = NULL;
        free(p);
        p = path_join(m->path, "tokenizer_config.json");
        if (!st && p && file_exists(p) && (st = file_read_all(p, &tc, &n))) tc = NULL;
        free(p);
    }
    if (!st) {
        cfg = config_json(&m->cfg, dt);
        gen = generation_config_json(&m->cfg);
        if (!cfg || !gen) st = err_set(WICK_ERR_NOMEM, "out of memory");
    }
    /* the folder is built beside out_dir and swapped in whole (base/fileio.h dir_txn) */
    dir_txn t;
    if (!st && !(st = dir_txn_begin(out_dir, &t))) {
        st = write_weights(m, t.stage, dt);
        if (!st) st = write_text(t.stage, "config.json", cfg);
        if (!st) st = write_text(t.stage, "generation_config.json", gen);
        if (!st && tj) st = write_text(t.stage, "tokenizer.json", tj);
        if (!st && tc) st = write_text(t.stage, "tokenizer_config.json", tc);
        if (!st && extra) st = extra(user, t.stage);
        if (st) dir_txn_abort(&t);
        else st = dir_txn_commit(&t);
    }
    free(tj); free(tc); free(cfg); free(gen);
    return st;
}

wick_status model_export_folder(const wick_model *m, const char *out_dir, dtype dt) {
    return model_export_folder_with(m, out_dir, dt, NULL, NULL);
}
