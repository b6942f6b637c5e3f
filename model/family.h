/* family.h — what differs between the decoder families wick runs, in one table (family.c):
 * the names a family goes by (Hugging Face architecture and model_type, GGUF architecture),
 * which bias and norm tensors it has, how its config.json switches sliding windows on, and
 * how its GGUF files store q/k rows. The loaders, the exporters and the layer read these
 * flags instead of comparing architecture names; a family that fits the layer of layer.h is
 * one row here.
 * Not here: hyper-parameters (config.h), tensor loading (model.c, model_gguf.c). */
#ifndef WICK_MODEL_FAMILY_H
#define WICK_MODEL_FAMILY_H
#include <stdbool.h>
#include <stddef.h>

#include "model/config.h"

typedef enum swa_rule {
    SWA_NONE,        /* never (LLaMA: no such key) */
    SWA_ALL,         /* every layer when "sliding_window" is set (Mistral) */
    SWA_FROM_LAYER,  /* with "use_sliding_window", layers >= "max_window_layers" (Qwen2/3) */
    SWA_LAYER_TYPES, /* "layer_types" (or every layer but each "sliding_window_pattern"th) */
} swa_rule;

typedef struct model_family {
    arch id;
    const char *hf_arch;      /* config.json "architectures"[0] */
    const char *model_type;   /* config.json "model_type" (written on export) */
    const char *gguf_arch;    /* GGUF general.architecture, written and read */
    bool qkv_bias;            /* q/k/v biases by architecture, no config key (Qwen2) */
    bool attention_bias_key;  /* "attention_bias" puts biases on q, k, v and o (LLaMA, Qwen3) */
    bool mlp_bias_key;        /* "mlp_bias" puts biases on gate, up and down (LLaMA) */
    bool qk_norm;             /* RMSNorm over each head of q and k before RoPE (Qwen3) */
    bool gguf_permuted;       /* GGUF q/k rows permuted for adjacent-pair RoPE (llama) */
    swa_rule swa;
    /* Gemma: RMSNorm weights stored as w of (1 + w) (folded to 1 + w at load), norms after
       the attention and MLP blocks too (sandwich), embeddings times √hidden_size, GELU-tanh
       MLP, query_pre_attn_scalar, a second RoPE base for sliding layers */
    bool gemma;
    bool softcaps;            /* attn_logit_softcapping / final_logit_softcapping (Gemma 2) */
    int swa_pattern;          /* SWA_LAYER_TYPES without layer_types: every Nth layer is global */
    bool no_gguf;             /* GGUF reading/writing not written yet */
    bool no_export;           /* HF folder export (and merge) not written yet */
    /* mixture of experts: tensor names of the router and of expert E's three matrices
       (printf formats with the layer, then the expert), Mixtral's always-renormalized
       weights, Qwen3-MoE's moe_intermediate_size / decoder_sparse_step / mlp_only_layers,
       OLMoE's q/k norms over the whole projection */
    const char *moe_router, *moe_gate, *moe_up, *moe_down;
    bool moe_norm_always, moe_qwen_keys, qk_norm_full;
    /* Phi-3: q, k, v in one self_attn.qkv_proj and gate, up in one mlp.gate_up_proj (rows in
       that order); wick reads them as row ranges of the one tensor */
    bool fused;
} model_family;

/* The family of `id` (always found). */
const model_family *family_get(arch id);
/* By config.json architecture or GGUF architecture name; NULL when wick has no such family. */
const model_family *family_by_hf(const char *hf_arch);
const model_family *family_by_gguf(const char *gguf_arch);
/* "Qwen2ForCausalLM, LlamaForCausalLM, ..." (or the GGUF names), for messages. */
const char *family_list(bool gguf);

#endif
