/* config.c — Hugging Face config.json / generation_config.json -> model_config.
 * Accepts both transformers 4 layouts (top-level rope_theta, rope_scaling) and transformers 5
 * (rope_parameters). Fields the architecture needs but the file lacks are errors naming the
 * field; fields transformers gives a class default to take that default. */
#include "model/config.h"
#include "model/family.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json_parse.h"
#include "base/fileio.h"
#include "base/json_num.h"

static wick_status get_int(const cJSON *o, const char *key, const char *where, bool required,
                           int def, int lo, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return err_set(WICK_ERR_FORMAT, "%s: missing field \"%s\"", where, key);
        *out = def;
        return WICK_OK;
    }
    return json_get_int32(v, lo, INT_MAX, where, key, out);
}

/* A float field: finite and within float range (the conversion of a larger double is UB). */
static wick_status get_float(const cJSON *o, const char *key, const char *where, bool required,
                             float def, float *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return err_set(WICK_ERR_FORMAT, "%s: missing field \"%s\"", where, key);
        *out = def;
        return WICK_OK;
    }
    return json_get_float(v, -FLT_MAX, FLT_MAX, where, key, out);
}

static wick_status get_bool(const cJSON *o, const char *key, const char *where, bool def,
                            bool *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return WICK_OK;
    }
    if (!cJSON_IsBool(v))
        return err_set(WICK_ERR_FORMAT, "%s: field \"%s\" must be true or false", where, key);
    *out = cJSON_IsTrue(v);
    return WICK_OK;
}

/* One token id of `field` (named as given, e.g. eos_token_id[1]): an integer in [0, n_vocab),
 * since generation indexes the logits (n_vocab of them) with it. c->n_vocab must be set. */
static wick_status get_id(const cJSON *v, const char *where, const char *field,
                          const model_config *c, int32_t *out) {
    int64_t id;
    if (!json_num_int(v, 0, INT32_MAX, &id))
        return err_set(WICK_ERR_FORMAT, "%s: field \"%s\" must be a non-negative integer token id",
                       where, field);
    if (id >= c->n_vocab)
        return err_set(WICK_ERR_FORMAT, "%s: field \"%s\" = %lld is not a token id of the model "
                       "(vocab_size %d: ids are in [0, %d))", where, field, (long long)id,
                       c->n_vocab, c->n_vocab);
    *out = (int32_t)id;
    return WICK_OK;
}

/* Reads bos/eos/pad token ids; eos may be an int or a list of ints. Absent keys leave the
 * current values untouched (so generation_config.json can override config.json). Every id is
 * checked against c->n_vocab. */
static wick_status get_special_ids(const cJSON *o, const char *where, model_config *c) {
    wick_status st;
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "bos_token_id")) && !cJSON_IsNull(v))
        if ((st = get_id(v, where, "bos_token_id", c, &c->bos_id))) return st;
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "pad_token_id")) && !cJSON_IsNull(v))
        if ((st = get_id(v, where, "pad_token_id", c, &c->pad_id))) return st;
    v = cJSON_GetObjectItemCaseSensitive(o, "eos_token_id");
    if (!v || cJSON_IsNull(v)) return WICK_OK;
    if (!cJSON_IsArray(v)) {
        int32_t id;
        if ((st = get_id(v, where, "eos_token_id", c, &id))) return st;
        c->eos_ids[0] = id;
        c->n_eos = 1;
        return WICK_OK;
    }
    int32_t ids[CONFIG_MAX_EOS];
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v) {
        if (n == CONFIG_MAX_EOS)
            return err_set(WICK_ERR_UNSUPPORTED, "%s: more than %d eos_token_id values", where,
                           CONFIG_MAX_EOS);
        char field[32];
        snprintf(field, sizeof field, "eos_token_id[%d]", n);
        if ((st = get_id(e, where, field, c, &ids[n]))) return st;
        n++;
    }
    memcpy(c->eos_ids, ids, sizeof ids[0] * (size_t)n);
    c->n_eos = n;
    return WICK_OK;
}

/* rope_parameters (transformers 5) or rope_scaling (transformers 4); theta may live in either
 * the top level or rope_parameters. */
static wick_status parse_rope_in(const cJSON *root, const cJSON *rp, const cJSON *rs,
                                  const char *where, model_config *c);

/* RoPE settings: rope_parameters (transformers 5) or rope_theta + rope_scaling. Gemma 3 gives
 * one set per layer type ({"full_attention": {...}, "sliding_attention": {...}}; older files:
 * rope_local_base_freq beside rope_theta): the full layers' set is the model's, the sliding
 * layers' base goes to rope_theta_local (default rope only). */
static wick_status parse_rope(const cJSON *root, const char *where, model_config *c) {
    wick_status st;
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (rp && !cJSON_IsNull(rp) && !cJSON_IsObject(rp))
        return err_set(WICK_ERR_FORMAT, "%s: \"rope_parameters\" must be an object", where);
    if (rs && !cJSON_IsNull(rs) && !cJSON_IsObject(rs))
        return err_set(WICK_ERR_FORMAT, "%s: \"rope_scaling\" must be an object or null", where);
    if (rp && cJSON_IsNull(rp)) rp = NULL;
    if (rs && cJSON_IsNull(rs)) rs = NULL;
    const cJSON *full = rp ? cJSON_GetObjectItemCaseSensitive(rp, "full_attention") : NULL;
    const cJSON *loc = rp ? cJSON_GetObjectItemCaseSensitive(rp, "sliding_attention") : NULL;
    c->rope_theta_local = 0;
    if (full || loc) {
        if (!cJSON_IsObject(full) || (loc && !cJSON_IsObject(loc)))
            return err_set(WICK_ERR_FORMAT, "%s: rope_parameters.full_attention and .sliding_attention "
                           "must be objects", where);
        if ((st = parse_rope_in(root, full, NULL, where, c))) return st;
        if (loc) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(loc, "rope_type");
            if (t && !(cJSON_IsString(t) && strcmp(t->valuestring, "default") == 0))
                return err_set(WICK_ERR_UNSUPPORTED, "%s: rope_parameters.sliding_attention.rope_type "
                               "must be \"default\"", where);
            if ((st = get_float(loc, "rope_theta", where, true, 0, &c->rope_theta_local))) return st;
            if (!(c->rope_theta_local > 0))
                return err_set(WICK_ERR_FORMAT, "%s: sliding_attention.rope_theta must be positive", where);
        }
        return WICK_OK;
    }
    if ((st = get_float(root, "rope_local_base_freq", where, false, 0, &c->rope_theta_local))) return st;
    return parse_rope_in(root, rp, rs, where, c);
}

static wick_status parse_rope_in(const cJSON *root, const cJSON *rp, const cJSON *rs,
                                  const char *where, model_config *c) {
    wick_status st;

    c->rope_theta = 10000.0f; /* transformers' class default for all three families */
    if (rp && cJSON_GetObjectItemCaseSensitive(rp, "rope_theta")) {
        if ((st = get_float(rp, "rope_theta", where, true, 0, &c->rope_theta))) return st;
    } else if ((st = get_float(root, "rope_theta", where, false, 10000.0f, &c->rope_theta))) {
        return st;
    }
    if (!(c->rope_theta > 0))
        return err_set(WICK_ERR_FORMAT, "%s: rope_theta must be positive", where);

    const cJSON *sc = rp ? rp : rs;
    c->rope = ROPE_DEFAULT;
    c->rope_factor = 1.0f;
    c->rope_attn_factor = 1.0f;
    if (!sc) return WICK_OK;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(sc, "rope_type");
    if (!t) t = cJSON_GetObjectItemCaseSensitive(sc, "type");
    const char *name = rp ? "rope_parameters" : "rope_scaling";
    if (!t || !cJSON_IsString(t)) {
        if (!rp) return err_set(WICK_ERR_FORMAT, "%s: %s.rope_type missing", where, name);
        return WICK_OK; /* rope_parameters with only a theta */
    }
    const char *type = t->valuestring;
    if (strcmp(type, "default") == 0) return WICK_OK;
    if (strcmp(type, "linear") == 0) {
        c->rope = ROPE_LINEAR;
        if ((st = get_float(sc, "factor", where, true, 1, &c->rope_factor))) return st;
    } else if (strcmp(type, "llama3") == 0) {
        c->rope = ROPE_LLAMA3;
        if ((st = get_float(sc, "factor", where, true, 1, &c->rope_factor)) ||
            (st = get_float(sc, "low_freq_factor", where, true, 1, &c->rope_low_freq_factor)) ||
            (st = get_float(sc, "high_freq_factor", where, true, 4, &c->rope_high_freq_factor)) ||
            (st = get_int(sc, "original_max_position_embeddings", where, true, 8192, 1,
                          &c->rope_orig_ctx)))
            return err_wrap(st, "%s (llama3 rope)", name);
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
            return err_set(WICK_ERR_FORMAT, "%s: %s: high_freq_factor must exceed low_freq_factor",
                           where, name);
    } else if (strcmp(type, "longrope") == 0) {
        c->rope = ROPE_LONGROPE;
        const int half = c->rot_dim / 2;
        if (half > CONFIG_MAX_ROPE_FACTORS)
            return err_set(WICK_ERR_UNSUPPORTED, "%s: %s: longrope with %d frequencies (at most %d)",
                           where, name, half, CONFIG_MAX_ROPE_FACTORS);
        static const char *const keys[2] = {"short_factor", "long_factor"};
        for (int k = 0; k < 2; k++) {
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(sc, keys[k]);
            if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != half)
                return err_set(WICK_ERR_FORMAT, "%s: %s.%s must be a list of %d numbers (rotated values / 2)",
                               where, name, keys[k], half);
            for (int i = 0; i < half; i++) {
                const cJSON *e = cJSON_GetArrayItem(a, i);
                if (!cJSON_IsNumber(e) || !(e->valuedouble > 0) || e->valuedouble > 1e30)
                    return err_set(WICK_ERR_FORMAT, "%s: %s.%s[%d] must be a positive number", where, name,
                                   keys[k], i);
                (k ? c->rope_long : c->rope_short)[i] = (float)e->valuedouble;
            }
        }
        const cJSON *oc = cJSON_GetObjectItemCaseSensitive(sc, "original_max_position_embeddings");
        if ((st = get_int(oc ? sc : root, "original_max_position_embeddings", where, true, 0, 1,
                          &c->rope_orig_ctx)))
            return err_wrap(st, "%s (longrope)", name);
        /* transformers: attention_factor if given, else sqrt(1 + ln(factor) / ln(original))
           with factor = max_position_embeddings / original (1 when not above it) */
        const double f = (double)c->n_ctx_train / c->rope_orig_ctx;
        float af = f <= 1.0 ? 1.0f : (float)sqrt(1.0 + log(f) / log((double)c->rope_orig_ctx));
        if ((st = get_float(sc, "attention_factor", where, false, af, &c->rope_attn_factor))) return st;
        return WICK_OK;
    } else {
        return err_set(WICK_ERR_UNSUPPORTED,
                       "%s: %s.rope_type \"%s\" is not supported (supported: default, linear, "
                       "llama3, longrope)", where, name, type);
    }
    if (!(c->rope_factor > 0))
        return err_set(WICK_ERR_FORMAT, "%s: %s.factor must be positive", where, name);
    return WICK_OK;
}

/* Mixture-of-experts keys: num_local_experts (or num_experts), num_experts_per_tok, the
 * experts' width (Qwen3-MoE: moe_intermediate_size, else intermediate_size), norm_topk_prob
 * (Mixtral: always), and which layers are sparse (Qwen3-MoE: not in mlp_only_layers and every
 * decoder_sparse_step-th; the others: all). */
static wick_status parse_moe(const cJSON *root, const char *where, const model_family *fam,
                             model_config *c) {
    wick_status st;
    const char *ne = cJSON_GetObjectItemCaseSensitive(root, "num_local_experts") ? "num_local_experts"
                                                                                : "num_experts";
    if ((st = get_int(root, ne, where, true, 0, 1, &c->n_expert)) ||
        (st = get_int(root, "num_experts_per_tok", where, true, 0, 1, &c->n_expert_used)))
        return st;
    if (c->n_expert > 1024 || c->n_expert_used > c->n_expert)
        return err_set(WICK_ERR_FORMAT, "%s: %s %d and num_experts_per_tok %d: expected at most 1024 "
                       "experts and no more chosen than there are", where, ne, c->n_expert,
                       c->n_expert_used);
    c->n_ff_expert = c->n_ff;
    if (fam->moe_qwen_keys &&
        (st = get_int(root, "moe_intermediate_size", where, true, 0, 1, &c->n_ff_expert)))
        return st;
    c->norm_topk = true;
    if (!fam->moe_norm_always && (st = get_bool(root, "norm_topk_prob", where, false, &c->norm_topk)))
        return st;
    const cJSON *clip = cJSON_GetObjectItemCaseSensitive(root, "clip_qkv");
    if (clip && !cJSON_IsNull(clip))
        return err_set(WICK_ERR_UNSUPPORTED, "%s: clip_qkv is set: not supported yet (only null)", where);
    if (c->n_layer > CONFIG_MAX_LAYER_TYPES)
        return err_set(WICK_ERR_UNSUPPORTED, "%s: %d layers: at most %d for a mixture of experts",
                       where, c->n_layer, CONFIG_MAX_LAYER_TYPES);
    memset(c->layer_moe, 0, sizeof c->layer_moe);
    int step = 1;
    if (fam->moe_qwen_keys && (st = get_int(root, "decoder_sparse_step", where, false, 1, 1, &step)))
        return st;
    for (int l = 0; l < c->n_layer; l++)
        if ((l + 1) % step == 0) c->layer_moe[l / 64] |= 1ull << (l % 64);
    const cJSON *only = fam->moe_qwen_keys ? cJSON_GetObjectItemCaseSensitive(root, "mlp_only_layers") : NULL;
    if (only && !cJSON_IsNull(only)) {
        if (!cJSON_IsArray(only))
            return err_set(WICK_ERR_FORMAT, "%s: mlp_only_layers must be a list of layer indices", where);
        const cJSON *e;
        cJSON_ArrayForEach(e, only) {
            if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= c->n_layer ||
                e->valuedouble != (int)e->valuedouble)
                return err_set(WICK_ERR_FORMAT, "%s: mlp_only_layers: expected layer indices in [0, %d)",
                               where, c->n_layer);
            const int l = (int)e->valuedouble;
            c->layer_moe[l / 64] &= ~(1ull << (l % 64));
        }
    }
    return WICK_OK;
}

wick_status config_parse(const char *json, const char *where, model_config *c) {
    memset(c, 0, sizeof *c);
    c->bos_id = c->pad_id = -1;
    cJSON *root = NULL;
    wick_status st = json_parse(json, strlen(json), where, &root);
    if (st) return st;
    if (!cJSON_IsObject(root)) {
        st = err_set(WICK_ERR_FORMAT, "%s: top level must be a JSON object", where);
        goto done;
    }
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    const char *arch = cJSON_IsString(a0) ? a0->valuestring : NULL;
    if (!arch) {
        st = err_set(WICK_ERR_FORMAT, "%s: missing field \"architectures\" (a list of strings)",
                     where);
        goto done;
    }
    snprintf(c->architecture, sizeof c->architecture, "%s", arch);
    const model_family *fam = family_by_hf(arch);
    if (!fam) {
        st = err_set(WICK_ERR_UNSUPPORTED, "%s: architecture \"%s\" is not supported (supported: %s)",
                     where, arch, family_list(false));
        goto done;
    }
    c->arch = fam->id;
    c->qk_norm = fam->qk_norm;
    c->qk_norm_full = fam->qk_norm_full;
    if ((st = get_int(root, "hidden_size", where, true, 0, 1, &c->n_embd)) ||
        (st = get_int(root, "intermediate_size", where, true, 0, 1, &c->n_ff)) ||
        (st = get_int(root, "num_hidden_layers", where, true, 0, 1, &c->n_layer)) ||
        (st = get_int(root, "num_attention_heads", where, true, 0, 1, &c->n_head)) ||
        (st = get_int(root, "num_key_value_heads", where, false, c->n_head, 1, &c->n_kv_head)) ||
        (st = get_int(root, "vocab_size", where, true, 0, 1, &c->n_vocab)) ||
        (st = get_int(root, "max_position_embeddings", where, true, 0, 1, &c->n_ctx_train)) ||
        (st = get_float(root, "rms_norm_eps", where, true, 0, &c->norm_eps)) ||
        (st = get_bool(root, "tie_word_embeddings", where, fam->gemma, &c->tie_embd)))
        goto done;
    if ((st = get_int(root, "head_dim", where, false, 0, 1, &c->head_dim))) goto done;
    if (c->head_dim == 0) {
        if (c->n_embd % c->n_head) {
            st = err_set(WICK_ERR_FORMAT,
                         "%s: hidden_size %d is not divisible by num_attention_heads %d and no "
                         "head_dim is given", where, c->n_embd, c->n_head);
            goto done;
        }
        c->head_dim = c->n_embd / c->n_head;
    }
    if (c->head_dim % 2) {
        st = err_set(WICK_ERR_FORMAT, "%s: head_dim %d must be even for RoPE", where, c->head_dim);
        goto done;
    }
    { /* partial rotary (Phi-4-mini): int(head_dim · partial_rotary_factor) values rotate */
        const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
        const cJSON *src = cJSON_IsObject(rp) && cJSON_GetObjectItemCaseSensitive(rp, "partial_rotary_factor") ? rp : root;
        float prf = 1.0f;
        if ((st = get_float(src, "partial_rotary_factor", where, false, 1.0f, &prf))) goto done;
        c->rot_dim = (int)((double)c->head_dim * (double)prf);
        if (!(prf > 0 && prf <= 1) || c->rot_dim < 2 || c->rot_dim % 2) {
            st = err_set(WICK_ERR_FORMAT, "%s: partial_rotary_factor %g gives %d rotated values of head_dim "
                         "%d: expected an even count in [2, head_dim]", where, prf, c->rot_dim, c->head_dim);
            goto done;
        }
    }
    if (c->n_head % c->n_kv_head) {
        st = err_set(WICK_ERR_FORMAT,
                     "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                     where, c->n_head, c->n_kv_head);
        goto done;
    }
    if (!(c->norm_eps > 0)) {
        st = err_set(WICK_ERR_FORMAT, "%s: rms_norm_eps must be positive", where);
        goto done;
    }
    /* the MLP's activation: silu, or Gemma's gelu_pytorch_tanh (its key: hidden_activation) */
    const cJSON *act = fam->gemma ? cJSON_GetObjectItemCaseSensitive(root, "hidden_activation") : NULL;
    if (!act || cJSON_IsNull(act)) act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    const char *want_act = fam->gemma ? "gelu_pytorch_tanh" : "silu";
    if (act && !(cJSON_IsString(act) && strcmp(act->valuestring, want_act) == 0)) {
        st = err_set(WICK_ERR_UNSUPPORTED, "%s: hidden_act%s \"%s\" is not supported (%s: only %s)",
                     where, fam->gemma ? "ivation" : "", cJSON_IsString(act) ? act->valuestring : "?",
                     arch, want_act);
        goto done;
    }
    c->act = fam->gemma ? ACT_GELU_TANH : ACT_SILU;
    c->attn_scale = 1.0f / sqrtf((float)c->head_dim);
    if (fam->gemma) {
        /* scores scaled by query_pre_attn_scalar^-0.5 (transformers' class default 256),
           embeddings by √hidden_size (both as float32, as transformers rounds them) */
        float qs = 0;
        if ((st = get_float(root, "query_pre_attn_scalar", where, false, 256.0f, &qs))) goto done;
        if (!(qs > 0)) {
            st = err_set(WICK_ERR_FORMAT, "%s: query_pre_attn_scalar must be positive", where);
            goto done;
        }
        c->attn_scale = (float)pow((double)qs, -0.5);
        c->embed_scale = (float)sqrt((double)c->n_embd);
        if (fam->softcaps && ((st = get_float(root, "attn_logit_softcapping", where, false, 0, &c->attn_softcap)) ||
                              (st = get_float(root, "final_logit_softcapping", where, false, 0, &c->final_softcap))))
            goto done;
        if (c->attn_softcap < 0 || c->final_softcap < 0) {
            st = err_set(WICK_ERR_FORMAT, "%s: soft-capping values must be positive (or null)", where);
            goto done;
        }
        static const char *const off[] = {"use_bidirectional_attention", "attn_logit_softcapping",
                                          "final_logit_softcapping"};
        for (int i = 0; i < (fam->softcaps ? 1 : 3); i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, off[i]);
            if (v && !cJSON_IsNull(v) && !cJSON_IsFalse(v)) {
                st = err_set(WICK_ERR_UNSUPPORTED, "%s: %s is set: not supported yet (only null/false)",
                             where, off[i]);
                goto done;
            }
        }
    }
    if (fam->moe_router && (st = parse_moe(root, where, fam, c))) goto done;
    c->attn_bias = fam->qkv_bias;
    if (fam->attention_bias_key && (st = get_bool(root, "attention_bias", where, false, &c->attn_bias)))
        goto done;
    c->o_bias = fam->attention_bias_key && c->attn_bias;
    if (fam->mlp_bias_key && (st = get_bool(root, "mlp_bias", where, false, &c->mlp_bias))) goto done;
    if ((st = parse_rope(root, where, c))) goto done;

    /* Sliding-window attention, by the family's rule (family.h): Mistral every layer when
     * sliding_window is set; Qwen2/3 only with use_sliding_window, and only layers >=
     * max_window_layers (transformers' rule); LLaMA never. */
    int window = 0;
    if ((st = get_int(root, "sliding_window", where, false, 0, 0, &window))) goto done;
    c->n_swa_layers_from = 0;
    if (fam->swa == SWA_FROM_LAYER) {
        bool use = false;
        if ((st = get_bool(root, "use_sliding_window", where, false, &use))) goto done;
        if (!use) window = 0;
        if ((st = get_int(root, "max_window_layers", where, false, 28, 0, &c->n_swa_layers_from)))
            goto done;
    } else if (fam->swa == SWA_NONE) {
        window = 0;
    } else if (fam->swa == SWA_LAYER_TYPES) {
        memset(c->layer_sliding, 0, sizeof c->layer_sliding);
        const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
        if (c->n_layer > CONFIG_MAX_LAYER_TYPES) {
            st = err_set(WICK_ERR_UNSUPPORTED, "%s: %d layers: at most %d supported for this family",
                         where, c->n_layer, CONFIG_MAX_LAYER_TYPES);
            goto done;
        }
        if (lt && !cJSON_IsNull(lt)) {
            if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->n_layer) {
                st = err_set(WICK_ERR_FORMAT, "%s: layer_types must be a list of %d strings", where,
                             c->n_layer);
                goto done;
            }
            for (int l = 0; l < c->n_layer; l++) {
                const cJSON *e = cJSON_GetArrayItem(lt, l);
                const bool sl = cJSON_IsString(e) && strcmp(e->valuestring, "sliding_attention") == 0;
                if (!sl && !(cJSON_IsString(e) && strcmp(e->valuestring, "full_attention") == 0)) {
                    st = err_set(WICK_ERR_FORMAT, "%s: layer_types[%d]: expected \"sliding_attention\" "
                                 "or \"full_attention\"", where, l);
                    goto done;
                }
                if (sl) c->layer_sliding[l / 64] |= 1ull << (l % 64);
            }
        } else { /* older files: every pattern-th layer is global (transformers' default 6) */
            int pat = fam->swa_pattern;
            if ((st = get_int(root, "sliding_window_pattern", where, false, pat, 1, &pat))) goto done;
            for (int l = 0; l < c->n_layer; l++)
                if ((l + 1) % pat) c->layer_sliding[l / 64] |= 1ull << (l % 64);
        }
    }
    c->sliding_window = window;
    if ((st = get_special_ids(root, where, c))) goto done;
done:
    cJSON_Delete(root);
    return st;
}

wick_status config_parse_generation(const char *json, const char *where, model_config *cfg) {
    cJSON *root = NULL;
    model_config tmp = *cfg;   /* applied only when every id is valid */
    wick_status st = json_parse(json, strlen(json), where, &root);
    if (!st && !cJSON_IsObject(root))
        st = err_set(WICK_ERR_FORMAT, "%s: not a valid JSON object", where);
    else if (!st)
        st = get_special_ids(root, where, &tmp);
    cJSON_Delete(root);
    if (st == WICK_OK) *cfg = tmp;
    return st;
}

wick_status config_load(const char *dir, model_config *cfg) {
    char *path = path_join(dir, "config.json");
    if (!path) return err_set(WICK_ERR_NOMEM, "out of memory");
    char *text = NULL;
    wick_status st = file_read_all(path, &text, NULL);
    if (st == WICK_OK) st = config_parse(text, path, cfg);
    free(text);
    free(path);
    if (st) return st;

    path = path_join(dir, "generation_config.json");
    if (!path) return err_set(WICK_ERR_NOMEM, "out of memory");
    if (file_exists(path)) {
        st = file_read_all(path, &text, NULL);
        if (st == WICK_OK) st = config_parse_generation(text, path, cfg);
        free(text);
    }
    free(path);
    return st;
}
