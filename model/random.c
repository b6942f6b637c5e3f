/* random.c — writes seeded random model folders (see random.h). Everything is generated in
 * memory and written with st_write; a 0.5B f32 model needs ~2 GB of RAM while writing. */
#include "model/random.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "formats/safetensors.h"

typedef random_shape shape;

static const shape k_shapes[] = {
    {"qwen2.5-0.5b", "Qwen2ForCausalLM", "qwen2", 896, 4864, 24, 14, 2, 151936, 32768, 1e6, 1e-6,
     1, 1, 151643, 151643, 0, 0.02, 0, 0, 0, 0, 0, 0},
    {"qwen2.5-1.5b", "Qwen2ForCausalLM", "qwen2", 1536, 8960, 28, 12, 2, 151936, 32768, 1e6, 1e-6,
     1, 1, 151643, 151643, 0, 0.02, 0, 0, 0, 0, 0, 0},
    {"llama-3.2-1b", "LlamaForCausalLM", "llama", 2048, 8192, 16, 32, 8, 128256, 131072, 500000.0,
     1e-5, 1, 0, 128000, 128001, 1, 0.02, 0, 0, 0, 0, 0, 0},
    {"tinyllama", "LlamaForCausalLM", "llama", 2048, 5632, 22, 32, 4, 32000, 2048, 10000.0, 1e-5,
     0, 0, 1, 2, 0, 0.02, 0, 0, 0, 0, 0, 0},
    {"tiny", "Qwen2ForCausalLM", "qwen2", 64, 176, 2, 4, 2, 151936, 4096, 1e6, 1e-6, 1, 1, 151643,
     151643, 0, 0.02, 0, 0, 0, 0, 0, 0},
    {"qwen3-0.6b", "Qwen3ForCausalLM", "qwen3", 1024, 3072, 28, 16, 8, 151936, 40960, 1e6, 1e-6,
     1, 0, 151643, 151645, 0, 0.02, 0, 128, 1, 0, 0, 0},
    {"tiny-qwen3", "Qwen3ForCausalLM", "qwen3", 64, 176, 2, 4, 2, 151936, 4096, 1e6, 1e-6, 1, 0,
     151643, 151645, 0, 0.02, 0, 32, 1, 0, 0, 0},
    /* Qwen3-MoE-style models for measuring what a decoded token reads: 64 experts of which 8
       are chosen (1.1B parameters, 0.36B active), and the same model with only the 8 (every
       expert chosen: the same active parameters, nothing left unread) */
    {"qwen3-moe-64x8", "Qwen3MoeForCausalLM", "qwen3_moe", 1024, 3072, 16, 16, 4, 151936, 40960,
     1e6, 1e-6, 1, 0, 151643, 151645, 0, 0.02, 0, 64, 1, 64, 8, 256},
    {"qwen3-moe-8x8", "Qwen3MoeForCausalLM", "qwen3_moe", 1024, 3072, 16, 16, 4, 151936, 40960,
     1e6, 1e-6, 1, 0, 151643, 151645, 0, 0.02, 0, 64, 1, 8, 8, 256},
};

const char *const random_model_shapes[] = {"qwen2.5-0.5b", "qwen2.5-1.5b", "llama-3.2-1b",
                                           "tinyllama", "tiny", "qwen3-0.6b", "tiny-qwen3",
                                           "qwen3-moe-64x8", "qwen3-moe-8x8", NULL};

typedef struct rng {
    uint64_t s[4];
    int has_spare;
    float spare;
} rng;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(rng *r) {
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

/* Standard normal via Box-Muller (both outputs used). */
static float next_normal(rng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u1 = ((next_u64(r) >> 11) + 1) * (1.0 / 9007199254740993.0);
    double u2 = (next_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    double rad = sqrt(-2.0 * log(u1)), ang = 2.0 * M_PI * u2;
    r->spare = (float)(rad * sin(ang));
    r->has_spare = 1;
    return (float)(rad * cos(ang));
}

static void fill(rng *r, void *dst, int64_t n, dtype dt, float mean, float sd) {
    for (int64_t i = 0; i < n; i++) {
        float v = mean + sd * next_normal(r);
        if (dt == DT_F32) ((float *)dst)[i] = v;
        else if (dt == DT_BF16) ((uint16_t *)dst)[i] = f32_to_bf16(v);
        else ((uint16_t *)dst)[i] = f32_to_f16(v);
    }
}

static wick_status copy_file(const char *src, const char *dst) {
    char *buf;
    size_t n;
    wick_status st = file_read_all(src, &buf, &n);
    if (st) return st;
    st = file_write_atomic(dst, buf, n);
    free(buf);
    return st;
}

static wick_status write_config(const shape *s, const char *dir, dtype dt) {
    char cfg[2048], rope[512];
    int hd = s->head_dim ? s->head_dim : s->d / s->heads;
    /* Qwen2 has q/k/v biases by architecture; "attention_bias" is LLaMA's switch */
    const bool llama_bias = s->bias && strcmp(s->model_type, "qwen2") != 0;
    if (s->llama3_rope)
        snprintf(rope, sizeof rope,
                 "\"rope_theta\": %.1f,\n  \"rope_scaling\": {\"rope_type\": \"llama3\", "
                 "\"factor\": 32.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                 "\"original_max_position_embeddings\": 8192}", s->theta);
    else
        snprintf(rope, sizeof rope, "\"rope_theta\": %.1f", s->theta);
    char moe[512] = "";
    if (s->n_expert)
        snprintf(moe, sizeof moe,
                 "  \"num_experts\": %d,\n  \"num_experts_per_tok\": %d,\n"
                 "  \"moe_intermediate_size\": %d,\n  \"norm_topk_prob\": true,\n"
                 "  \"decoder_sparse_step\": 1,\n  \"mlp_only_layers\": [],\n",
                 s->n_expert, s->n_expert_used, s->ff_expert);
    snprintf(cfg, sizeof cfg,
             "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n"
             "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
             "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
             "  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n  \"vocab_size\": %d,\n"
             "  \"max_position_embeddings\": %d,\n  \"rms_norm_eps\": %g,\n  %s,\n"
             "  \"tie_word_embeddings\": %s,\n  \"hidden_act\": \"silu\",\n"
             "  \"attention_bias\": %s,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n"
             "  \"initializer_range\": %g,\n%s"
             "  \"torch_dtype\": \"%s\"\n}\n",
             s->arch, s->model_type, s->d, s->ff, s->layers, s->heads, s->kv, hd, s->vocab,
             s->max_pos, s->eps, rope, s->tied ? "true" : "false", llama_bias ? "true" : "false",
             s->bos, s->eos, s->init_std > 0 ? s->init_std : 0.02, moe,
             dt == DT_F32 ? "float32" : dt == DT_BF16 ? "bfloat16" : "float16");
    char *p = path_join(dir, "config.json");
    wick_status st = p ? file_write_atomic(p, cfg, strlen(cfg)) : err_set(WICK_ERR_NOMEM, "oom");
    free(p);
    if (st) return st;
    snprintf(cfg, sizeof cfg, "{\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d\n}\n", s->bos,
             s->eos);
    p = path_join(dir, "generation_config.json");
    st = p ? file_write_atomic(p, cfg, strlen(cfg)) : err_set(WICK_ERR_NOMEM, "oom");
    free(p);
    return st;
}


wick_status random_model_write(const char *like, const char *out_dir, uint64_t seed, dtype dt,
                               const char *tokenizer) {
    const shape *s = NULL;
    for (size_t i = 0; i < sizeof k_shapes / sizeof k_shapes[0]; i++)
        if (strcmp(like, k_shapes[i].name) == 0) s = &k_shapes[i];
    if (!s)
        return err_set(WICK_ERR_INVALID_ARG, "unknown model shape '%s' (known: qwen2.5-0.5b, "
                       "qwen2.5-1.5b, llama-3.2-1b, tinyllama, tiny, qwen3-0.6b, tiny-qwen3, "
                       "qwen3-moe-64x8, qwen3-moe-8x8)", like);
    return random_model_write_shape(s, out_dir, seed, dt, tokenizer);
}

wick_status random_model_write_shape(const random_shape *s, const char *out_dir, uint64_t seed,
                                     dtype dt, const char *tokenizer) {
    if (dt != DT_F32 && dt != DT_BF16 && dt != DT_F16)
        return err_set(WICK_ERR_INVALID_ARG, "random models are f32, bf16 or f16");
    if (s->d < 1 || s->heads < 1 || s->kv < 1 || s->heads % s->kv || s->head_dim < 0 ||
        (!s->head_dim && s->d % s->heads) || (s->head_dim ? s->head_dim : s->d / s->heads) % 2 || s->ff < 1 || s->layers < 1 || s->layers > 256 || s->vocab < 1 ||
        s->max_pos < 1)
        return err_set(WICK_ERR_INVALID_ARG, "model shape: need hidden_size divisible by "
                       "num_attention_heads into an even head size, heads divisible by "
                       "num_key_value_heads, and positive sizes (at most 256 layers)");
    /* "hf": transformers' _init_weights (N(0, initializer_range) matrices, norms 1, biases 0) */
    const float sd = s->init_std > 0 ? (float)s->init_std : 0.02f;
    const float norm_sd = s->hf_init ? 0.0f : 0.1f, bias_sd = s->hf_init ? 0.0f : 0.02f;

    const int hd = s->head_dim ? s->head_dim : s->d / s->heads, qd = s->heads * hd, kvd = s->kv * hd;
    /* at most 14 tensors a dense layer (biases and q/k norms), 12 + 3 per expert a sparse
       one (router), and 3 more */
    const int max_t = 3 + s->layers * (s->n_expert ? 12 + 3 * s->n_expert : 14);
    st_write_tensor *t = calloc((size_t)max_t, sizeof *t);
    char **names = calloc((size_t)max_t, sizeof *names);
    int n = 0;
    wick_status st = WICK_OK;
    rng r = {0};
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r.s[i] = splitmix64(&x);
    if (!t || !names) {
        st = err_set(WICK_ERR_NOMEM, "out of memory");
        goto out;
    }
#define ADD(nm, rows, cols, mean, sd)                                                       \
    do {                                                                                     \
        int64_t numel_ = (int64_t)(rows) * ((cols) ? (cols) : 1);                            \
        void *buf_ = malloc((size_t)numel_ * dtype_size(dt));                                \
        names[n] = strdup(nm);                                                               \
        if (!buf_ || !names[n]) {                                                            \
            free(buf_);                                                                      \
            st = err_set(WICK_ERR_NOMEM, "out of memory generating %s", nm);                 \
            goto out;                                                                        \
        }                                                                                    \
        fill(&r, buf_, numel_, dt, mean, sd);                                                \
        t[n] = (st_write_tensor){.name = names[n], .dt = dt, .ndim = (cols) ? 2 : 1,         \
                                 .shape = {(rows), (cols)}, .data = buf_};                  \
        n++;                                                                                 \
    } while (0)
    char nm[160];
    ADD("model.embed_tokens.weight", s->vocab, s->d, 0.0f, sd);
    for (int l = 0; l < s->layers; l++) {
#define L(suffix) (snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix), nm)
        ADD(L("input_layernorm.weight"), s->d, 0, 1.0f, norm_sd);
        ADD(L("self_attn.q_proj.weight"), qd, s->d, 0.0f, sd);
        ADD(L("self_attn.k_proj.weight"), kvd, s->d, 0.0f, sd);
        ADD(L("self_attn.v_proj.weight"), kvd, s->d, 0.0f, sd);
        if (s->bias) {
            ADD(L("self_attn.q_proj.bias"), qd, 0, 0.0f, bias_sd);
            ADD(L("self_attn.k_proj.bias"), kvd, 0, 0.0f, bias_sd);
            ADD(L("self_attn.v_proj.bias"), kvd, 0, 0.0f, bias_sd);
        }
        if (s->qk_norm) {
            ADD(L("self_attn.q_norm.weight"), hd, 0, 1.0f, norm_sd);
            ADD(L("self_attn.k_norm.weight"), hd, 0, 1.0f, norm_sd);
        }
        ADD(L("self_attn.o_proj.weight"), s->d, qd, 0.0f, sd);
        ADD(L("post_attention_layernorm.weight"), s->d, 0, 1.0f, norm_sd);
        if (s->n_expert) { /* the router, then each expert's three matrices */
            ADD(L("mlp.gate.weight"), s->n_expert, s->d, 0.0f, sd);
            for (int e = 0; e < s->n_expert; e++) {
                char ex[96];
                const char *const parts[3] = {"gate_proj", "up_proj", "down_proj"};
                for (int q = 0; q < 3; q++) {
                    snprintf(ex, sizeof ex, "mlp.experts.%d.%s.weight", e, parts[q]);
                    ADD(L(ex), q == 2 ? s->d : s->ff_expert, q == 2 ? s->ff_expert : s->d, 0.0f, sd);
                }
            }
            continue;
        }
        ADD(L("mlp.gate_proj.weight"), s->ff, s->d, 0.0f, sd);
        ADD(L("mlp.up_proj.weight"), s->ff, s->d, 0.0f, sd);
        ADD(L("mlp.down_proj.weight"), s->d, s->ff, 0.0f, sd);
#undef L
    }
    ADD("model.norm.weight", s->d, 0, 1.0f, norm_sd);
    if (!s->tied) ADD("lm_head.weight", s->vocab, s->d, 0.0f, sd);
#undef ADD
    /* the folder is built beside out_dir and swapped in whole (base/fileio.h dir_txn) */
    dir_txn txn;
    if ((st = dir_txn_begin(out_dir, &txn))) goto out;
    char *wpath = path_join(txn.stage, "model.safetensors");
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    st = wpath ? st_write(wpath, t, n, mk, mv, 1) : err_set(WICK_ERR_NOMEM, "out of memory");
    free(wpath);
    if (!st) st = write_config(s, txn.stage, dt);
    if (!st && tokenizer) {
        /* a folder: its tokenizer.json (+ tokenizer_config.json); a file: that file as
           tokenizer.json (+ the tokenizer_config.json beside it, if any) */
        const char *files[] = {"tokenizer.json", "tokenizer_config.json"};
        const bool is_dir = dir_exists(tokenizer);
        char *src_dir = is_dir ? strdup(tokenizer) : path_dirname(tokenizer);
        for (int i = 0; i < 2 && st == WICK_OK; i++) {
            char *src = i == 0 && !is_dir ? strdup(tokenizer) : path_join(src_dir, files[i]);
            char *dst = path_join(txn.stage, files[i]);
            if (!src || !dst) st = err_set(WICK_ERR_NOMEM, "out of memory");
            else if (i == 0 || file_exists(src)) st = copy_file(src, dst);
            free(src);
            free(dst);
        }
        free(src_dir);
    }
    if (st) dir_txn_abort(&txn);
    else st = dir_txn_commit(&txn);
out:
    for (int i = 0; i < n; i++) free((void *)t[i].data);
    for (int i = 0; i < max_t && names; i++) free(names[i]);
    free(names);
    free(t);
    return st;
}
