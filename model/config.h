/* config.h — a decoder model's hyper-parameters, read from a Hugging Face config.json (and
 * generation_config.json). One struct drives one code path for the families of family.h
 * (Qwen2, LLaMA, Mistral, Qwen3).
 * Not here: weights (model.c), tokenizer settings (tokenizer/). */
#ifndef WICK_MODEL_CONFIG_H
#define WICK_MODEL_CONFIG_H
#include <stdbool.h>
#include <stdint.h>

#include "wick.h"

typedef enum arch {
    ARCH_QWEN2, ARCH_LLAMA, ARCH_MISTRAL, ARCH_QWEN3, ARCH_GEMMA3, ARCH_MIXTRAL, ARCH_QWEN3_MOE,
    ARCH_OLMOE, ARCH_GEMMA2, ARCH_PHI3
} arch;

typedef enum act_kind { ACT_SILU, ACT_GELU_TANH } act_kind;

typedef enum rope_kind { ROPE_DEFAULT, ROPE_LINEAR, ROPE_LLAMA3, ROPE_LONGROPE } rope_kind;

#define CONFIG_MAX_ROPE_FACTORS 256

#define CONFIG_MAX_EOS 8

typedef struct model_config {
    arch arch;
    char architecture[64];      /* as written in "architectures"[0] */
    int n_embd;                 /* hidden_size */
    int n_ff;                   /* intermediate_size */
    int n_layer;                /* num_hidden_layers */
    int n_head;                 /* num_attention_heads */
    int n_kv_head;              /* num_key_value_heads (defaults to n_head) */
    int head_dim;               /* head_dim, or hidden_size / num_attention_heads */
    int rot_dim;                /* values of each head that RoPE rotates (partial_rotary_factor) */
    int n_vocab;                /* vocab_size */
    int n_ctx_train;            /* max_position_embeddings */
    float norm_eps;             /* rms_norm_eps */
    float rope_theta;           /* rope_theta or rope_parameters.rope_theta */
    rope_kind rope;
    float rope_factor;          /* linear / llama3 factor */
    float rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
    int rope_orig_ctx;          /* llama3 / longrope original_max_position_embeddings */
    /* longrope (Phi-3): per-frequency divisors, short while a forward's positions stay within
       rope_orig_ctx, long beyond; cos and sin times rope_attn_factor */
    float rope_short[CONFIG_MAX_ROPE_FACTORS], rope_long[CONFIG_MAX_ROPE_FACTORS];
    float rope_attn_factor;
    bool tie_embd;              /* tie_word_embeddings */
    bool attn_bias;             /* q/k/v biases (Qwen2 always; LLaMA attention_bias) */
    bool o_bias;                /* o_proj bias (LLaMA attention_bias puts one on o_proj too) */
    bool mlp_bias;              /* LLaMA mlp_bias */
    bool qk_norm;               /* per-head RMSNorm of q and k before RoPE (Qwen3, Gemma 3) */
    act_kind act;               /* MLP activation of gate (hidden_act / hidden_activation) */
    float attn_scale;           /* attention scores' scale: 1/√head_dim, or Gemma's
                                   query_pre_attn_scalar^-0.5 */
    float embed_scale;          /* embedding rows times this (Gemma: √hidden_size), 0 = none */
    float attn_softcap;         /* Gemma 2: scores → cap·tanh(score/cap); 0 = none */
    float final_softcap;        /* Gemma 2: logits → cap·tanh(logit/cap); 0 = none */
    float rope_theta_local;     /* sliding layers' RoPE base when it differs (Gemma 3), else 0 */
    uint64_t layer_sliding[8];  /* Gemma 3: bit l set = layer l uses the sliding window */
    bool qk_norm_full;          /* OLMoE: q and k normed over the whole projection, not per head */
    /* mixture of experts (Mixtral, Qwen3-MoE, OLMoE): layers whose bit is set in layer_moe
       route each row to n_expert_used of n_expert SwiGLU experts of width n_ff_expert */
    int n_expert, n_expert_used, n_ff_expert;
    bool norm_topk;             /* the chosen experts' softmax weights renormalized to sum 1 */
    uint64_t layer_moe[8];
    int sliding_window;         /* 0 = none */
#define CONFIG_MAX_LAYER_TYPES 512
    int n_swa_layers_from;      /* layers >= this index use the window (Qwen2 max_window_layers) */
    int32_t bos_id, pad_id;     /* -1 when unknown */
    int32_t eos_ids[CONFIG_MAX_EOS];
    int n_eos;
} model_config;

/* Parses `dir`/config.json (required) and `dir`/generation_config.json (optional; its
 * bos/eos/pad ids take precedence, as transformers' generate() does). Messages name the file
 * and the field that is missing, mistyped, out of range or unsupported. Every bos/eos/pad id
 * must be a token id of the model, in [0, vocab_size): generation writes logits[id]. */
wick_status config_load(const char *dir, model_config *cfg);

/* Parses config.json text (already read) — used by config_load and by tests. `where` names
 * the source in messages. */
wick_status config_parse(const char *json, const char *where, model_config *cfg);

/* Applies generation_config.json text to a config already parsed by config_parse (its ids
 * override, and are checked against cfg->n_vocab). On failure cfg's ids are unchanged. */
wick_status config_parse_generation(const char *json, const char *where, model_config *cfg);

#endif
