/* family.c — the decoder families of family.h. */
#include "model/family.h"

#include <string.h>

static const model_family k_families[] = {
    {ARCH_QWEN2, "Qwen2ForCausalLM", "qwen2", "qwen2", .qkv_bias = true, .swa = SWA_FROM_LAYER},
    {ARCH_LLAMA, "LlamaForCausalLM", "llama", "llama", .attention_bias_key = true,
     .mlp_bias_key = true, .gguf_permuted = true, .swa = SWA_NONE},
    /* llama.cpp stores Mistral models under the llama architecture */
    {ARCH_MISTRAL, "MistralForCausalLM", "mistral", "llama", .gguf_permuted = true, .swa = SWA_ALL},
    {ARCH_QWEN3, "Qwen3ForCausalLM", "qwen3", "qwen3", .attention_bias_key = true, .qk_norm = true,
     .swa = SWA_FROM_LAYER},
    {ARCH_GEMMA3, "Gemma3ForCausalLM", "gemma3_text", "gemma3", .attention_bias_key = true,
     .qk_norm = true, .swa = SWA_LAYER_TYPES, .gemma = true,
     .swa_pattern = 6},
    {ARCH_GEMMA2, "Gemma2ForCausalLM", "gemma2", "gemma2", .attention_bias_key = true,
     .swa = SWA_LAYER_TYPES, .gemma = true, .softcaps = true,
     .swa_pattern = 2},
    {ARCH_PHI3, "Phi3ForCausalLM", "phi3", "phi3", .swa = SWA_ALL, .fused = true},
    {ARCH_MIXTRAL, "MixtralForCausalLM", "mixtral", "llama", .gguf_permuted = true, .swa = SWA_ALL,
     /* GGUF: llama with experts (read as the first llama) */
     .moe_router = "model.layers.%d.block_sparse_moe.gate.weight",
     .moe_gate = "model.layers.%d.block_sparse_moe.experts.%d.w1.weight",
     .moe_up = "model.layers.%d.block_sparse_moe.experts.%d.w3.weight",
     .moe_down = "model.layers.%d.block_sparse_moe.experts.%d.w2.weight", .moe_norm_always = true},
    {ARCH_QWEN3_MOE, "Qwen3MoeForCausalLM", "qwen3_moe", "qwen3moe", .attention_bias_key = true,
     .qk_norm = true, .swa = SWA_FROM_LAYER,
     .moe_router = "model.layers.%d.mlp.gate.weight",
     .moe_gate = "model.layers.%d.mlp.experts.%d.gate_proj.weight",
     .moe_up = "model.layers.%d.mlp.experts.%d.up_proj.weight",
     .moe_down = "model.layers.%d.mlp.experts.%d.down_proj.weight", .moe_qwen_keys = true},
    {ARCH_OLMOE, "OlmoeForCausalLM", "olmoe", "olmoe", .attention_bias_key = true, .qk_norm = true,
     .qk_norm_full = true, .swa = SWA_NONE,
     .moe_router = "model.layers.%d.mlp.gate.weight",
     .moe_gate = "model.layers.%d.mlp.experts.%d.gate_proj.weight",
     .moe_up = "model.layers.%d.mlp.experts.%d.up_proj.weight",
     .moe_down = "model.layers.%d.mlp.experts.%d.down_proj.weight"},
};
#define N_FAMILIES (sizeof k_families / sizeof k_families[0])

const model_family *family_get(arch id) {
    for (size_t i = 0; i < N_FAMILIES; i++)
        if (k_families[i].id == id) return &k_families[i];
    return &k_families[0];
}

const model_family *family_by_hf(const char *name) {
    for (size_t i = 0; name && i < N_FAMILIES; i++)
        if (strcmp(k_families[i].hf_arch, name) == 0) return &k_families[i];
    /* the base model of a family ("Qwen3Model": saved without the LM head, as embedding
       models are) is the family's "...ForCausalLM" */
    const size_t n = name ? strlen(name) : 0;
    if (n > 5 && strcmp(name + n - 5, "Model") == 0)
        for (size_t i = 0; i < N_FAMILIES; i++) {
            const char *h = k_families[i].hf_arch, *tail = strstr(h, "ForCausalLM");
            if (tail && (size_t)(tail - h) == n - 5 && strncmp(h, name, n - 5) == 0 &&
                tail[11] == 0)
                return &k_families[i];
        }
    return NULL;
}

/* the first family stored under a GGUF name (Mistral files read back as llama) */
const model_family *family_by_gguf(const char *name) {
    for (size_t i = 0; name && i < N_FAMILIES; i++)
        if (!k_families[i].no_gguf && strcmp(k_families[i].gguf_arch, name) == 0) return &k_families[i];
    return NULL;
}

const char *family_list(bool gguf) {
    return gguf ? "llama (with experts: Mixtral), qwen2, qwen3, gemma2, gemma3, phi3, qwen3moe, olmoe"
                : "Qwen2ForCausalLM, LlamaForCausalLM, MistralForCausalLM, Qwen3ForCausalLM, "
                  "Gemma2ForCausalLM, Gemma3ForCausalLM, Phi3ForCausalLM, MixtralForCausalLM, "
                  "Qwen3MoeForCausalLM, OlmoeForCausalLM";
}
