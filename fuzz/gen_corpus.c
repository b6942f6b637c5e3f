/* gen_corpus.c — writes the seed corpus of every harness under <out>/corpus/<name>/:
 * small valid inputs made with wick's own writers (the tiny model of fuzz_targets.c as
 * safetensors and GGUF with byte-level BPE, SentencePiece and embedded-JSON tokenizers; its
 * adapter as PEFT config and GGUF LoRA; GGUF metadata of every value type) and, when
 * $WICK_FIXTURES is set, the fixtures' configs and the PEFT adapter weights (each < 100 KB);
 * and, under <out>/regressions/<name>/, inputs for the defects fixed before the harnesses
 * existed (fuzz_targets.c aborts or a sanitizer reports on each with the old loaders).
 *
 * Usage: gen_corpus <fuzz-dir>. Build it like a harness without -fsanitize=fuzzer (it has its
 * own main; see fuzz_targets.h). The files it writes are committed; rerun it only to refresh
 * them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fileio.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "fuzz/fuzz_targets.h"
#include "lora/lora.h"
#include "model/model.h"
#include "model/model_gguf.h"

static const char *g_root;
static char g_tmp[256];

static void die(const char *what) {
    fprintf(stderr, "gen_corpus: %s: %s\n", what, wick_last_error());
    exit(1);
}

static const char *g_kind = "corpus";   /* or "regressions" */

static void put(const char *name, const char *file, const void *data, size_t n) {
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/%s", g_root, g_kind);
    mkdir(dir, 0755);
    snprintf(dir, sizeof dir, "%s/%s/%s", g_root, g_kind, name);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (n > 100 * 1024) {
        fprintf(stderr, "gen_corpus: %s is %zu bytes, over the 100 KB limit\n", path, n);
        exit(1);
    }
    if (file_write_atomic(path, data, n) != WICK_OK) die(path);
    printf("%8zu  %s\n", n, path);
}

static void put_file(const char *name, const char *file, const char *src) {
    char *text = NULL;
    size_t n = 0;
    if (file_read_all(src, &text, &n) != WICK_OK) die(src);
    put(name, file, text, n);
    free(text);
}

/* config.json text, a NUL, generation_config.json text (gen may be NULL). */
static void put_config(const char *file, const char *cfg, const char *gen) {
    size_t a = strlen(cfg), b = gen ? strlen(gen) : 0;
    char *buf = malloc(a + b + 2);
    memcpy(buf, cfg, a);
    buf[a] = 0;
    if (gen) memcpy(buf + a + 1, gen, b);
    put("config", file, buf, gen ? a + 1 + b : a);
    free(buf);
}

/* out = src with the first `from` replaced by `to`. */
static void subst(char *out, size_t cap, const char *src, const char *from, const char *to) {
    const char *at = strstr(src, from);
    if (!at) {
        fprintf(stderr, "gen_corpus: '%s' not found\n", from);
        exit(1);
    }
    snprintf(out, cap, "%.*s%s%s", (int)(at - src), src, to, at + strlen(from));
}

static char *tmp_path(const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", g_tmp, name);
    return p;
}

static void put_tmp(const char *name, const char *file, const char *tmp) {
    put_file(name, file, tmp);
    unlink(tmp);
}

/* ---- tokenizer metadata for the 16-token tiny model ---- */

static gguf_value arr(gguf_type t, gguf_value *items, uint64_t n) {
    gguf_value v = {.type = GGUF_ARRAY};
    v.arr.type = t;
    v.arr.n = n;
    v.arr.items = items;
    return v;
}

/* Tiny models of the families with their own GGUF layout, written as GGUF seeds: Phi-3
 * (fused attn_qkv / ffn_up, partial rotary, longrope factors) and Qwen3-MoE (router and 3-D
 * expert tensors, q/k norms). */
static void family_gguf_seed(const char *config, const char *const *names, const int64_t *rows,
                             const int64_t *cols, int n, const char *file) {
    size_t len;
    unsigned char *st = fuzz_build_st(names, rows, cols, n, &len);
    wick_model_params mp = wick_model_params_default();
    mp.kernels = "ref";
    wick_model *m = NULL;
    if (model_load_mem(config, NULL, st, len, &mp, &m) != WICK_OK) {
        fprintf(stderr, "%s: %s\n", file, wick_last_error());
        die("family seed model");
    }
    if (model_gguf_save(m, tmp_path("f.gguf"), DT_F32, NULL, 0)) die("family seed gguf");
    put_tmp("gguf", file, tmp_path("f.gguf"));
    wick_model_free(m);
    free(st);
}

static void family_gguf_seeds(void) {
    if (model_gguf_save(fuzz_tiny_phi3_model(), tmp_path("f.gguf"), DT_F32, NULL, 0)) die("phi3 seed gguf");
    put_tmp("gguf", "tiny_phi3_f32.gguf", tmp_path("f.gguf"));

    static const char moe[] =
        "{\"architectures\": [\"Qwen3MoeForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 12,"
        " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1,"
        " \"head_dim\": 4, \"vocab_size\": 16, \"max_position_embeddings\": 32,"
        " \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, \"tie_word_embeddings\": false,"
        " \"hidden_act\": \"silu\", \"num_experts\": 3, \"num_experts_per_tok\": 2,"
        " \"moe_intermediate_size\": 4, \"norm_topk_prob\": true}";
    const char *mn[32];
    int64_t mr[32], mc[32];
    char buf[16][80];
    int k = 0, b = 0;
#define T(name, r, c) (mn[k] = (name), mr[k] = (r), mc[k] = (c), k++)
    T("model.embed_tokens.weight", 16, 8);
    T("model.layers.0.self_attn.q_proj.weight", 8, 8);
    T("model.layers.0.self_attn.k_proj.weight", 4, 8);
    T("model.layers.0.self_attn.v_proj.weight", 4, 8);
    T("model.layers.0.self_attn.o_proj.weight", 8, 8);
    T("model.layers.0.self_attn.q_norm.weight", 4, 0);
    T("model.layers.0.self_attn.k_norm.weight", 4, 0);
    T("model.layers.0.mlp.gate.weight", 3, 8);
    for (int e = 0; e < 3; e++) {
        static const char *const part[3] = {"gate_proj", "up_proj", "down_proj"};
        for (int p = 0; p < 3; p++) {
            snprintf(buf[b], sizeof buf[b], "model.layers.0.mlp.experts.%d.%s.weight", e, part[p]);
            T(buf[b], p < 2 ? 4 : 8, p < 2 ? 8 : 4);
            b++;
        }
    }
    T("model.layers.0.input_layernorm.weight", 8, 0);
    T("model.layers.0.post_attention_layernorm.weight", 8, 0);
    T("model.norm.weight", 8, 0);
    T("lm_head.weight", 16, 8);
#undef T
    family_gguf_seed(moe, mn, mr, mc, k, "tiny_qwen3moe_f32.gguf");
}

static void gguf_seeds(wick_model *m) {
    /* byte-level BPE (gpt2) */
    static const char *bpe_tok[16] = {"a", "b", "c", "ab", "bc", "abc", "\xc4\xa0", "\xc4\xa0" "a",
                                      "!", "1", "2", "H", "e", "l", "<|endoftext|>", "<|im_end|>"};
    static const char *bpe_merges[4] = {"a b", "b c", "ab c", "\xc4\xa0 a"};
    gguf_value toks[16], types[16], merges[4], scores[16];
    for (int i = 0; i < 16; i++) {
        toks[i] = gguf_v_str(bpe_tok[i]);
        types[i] = gguf_v_i32(i >= 14 ? 3 : 1);
    }
    for (int i = 0; i < 4; i++) merges[i] = gguf_v_str(bpe_merges[i]);
    gguf_kv kv[16];
    int k = 0;
    kv[k++] = (gguf_kv){.key = "tokenizer.ggml.model", .v = gguf_v_str("gpt2")};
    kv[k++] = (gguf_kv){.key = "tokenizer.ggml.pre", .v = gguf_v_str("qwen2")};
    kv[k++] = (gguf_kv){.key = "tokenizer.ggml.tokens", .v = arr(GGUF_STRING, toks, 16)};
    kv[k++] = (gguf_kv){.key = "tokenizer.ggml.token_type", .v = arr(GGUF_I32, types, 16)};
    kv[k++] = (gguf_kv){.key = "tokenizer.ggml.merges", .v = arr(GGUF_STRING, merges, 4)};
    kv[k++] = (gguf_kv){.key = "tokenizer.ggml.eos_token_id", .v = gguf_v_u32(14)};
    kv[k++] = (gguf_kv){.key = "tokenizer.ggml.eot_token_id", .v = gguf_v_u32(15)};
    kv[k++] = (gguf_kv){.key = "tokenizer.ggml.add_bos_token", .v = gguf_v_bool(false)};
    kv[k++] = (gguf_kv){.key = "tokenizer.chat_template",
                        .v = gguf_v_str("{% for m in messages %}{{ m.content }}{% endfor %}")};
    if (model_gguf_save(m, tmp_path("a.gguf"), DT_F32, kv, k)) die("gpt2 gguf");
    put_tmp("gguf", "tiny_gpt2_f32.gguf", tmp_path("a.gguf"));

    /* SentencePiece BPE (llama): pieces, scores and types, no merges */
    static const char *spm_tok[16] = {"<unk>", "<s>", "</s>", "<0x41>", "\xe2\x96\x81", "a", "b",
                                      "\xe2\x96\x81" "a", "ab", "\xe2\x96\x81" "ab", "c", "bc",
                                      "abc", "\xe2\x96\x81" "abc", "d", "e"};
    for (int i = 0; i < 16; i++) {
        toks[i] = gguf_v_str(spm_tok[i]);
        types[i] = gguf_v_i32(i == 0 ? 2 : i < 3 ? 3 : i == 3 ? 6 : 1);
        scores[i] = gguf_v_f32(i < 4 ? 0.0f : -(float)i);
    }
    k = 0;
    kv[k++] = (gguf_kv){.key = "tokenizer.ggml.model", .v = gguf_v_str("llama")};
    kv[k++] = (gguf_kv){.key = "tokenizer.ggml.tokens", .v = arr(GGUF_STRING, toks, 16)};
    kv[k++] = (gguf_kv){.key = "tokenizer.ggml.token_type", .v = arr(GGUF_I32, types, 16)};
    kv[k++] = (gguf_kv){.key = "tokenizer.ggml.scores", .v = arr(GGUF_F32, scores, 16)};
    kv[k++] = (gguf_kv){.key = "tokenizer.ggml.bos_token_id", .v = gguf_v_u32(1)};
    kv[k++] = (gguf_kv){.key = "tokenizer.ggml.eos_token_id", .v = gguf_v_u32(2)};
    kv[k++] = (gguf_kv){.key = "tokenizer.ggml.unknown_token_id", .v = gguf_v_u32(0)};
    kv[k++] = (gguf_kv){.key = "tokenizer.ggml.add_space_prefix", .v = gguf_v_bool(true)};
    if (model_gguf_save(m, tmp_path("b.gguf"), DT_Q8_0, kv, k)) die("llama gguf");
    put_tmp("gguf", "tiny_spm_q8_0.gguf", tmp_path("b.gguf"));

    /* the whole tokenizer.json in the metadata, as wick writes it */
    static const char *tj =
        "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 15, \"content\": \"<x>\", "
        "\"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
        "\"special\": true}], \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", "
        "\"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true}, "
        "\"post_processor\": null, \"decoder\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": "
        "\"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"c\": 3}, \"merges\": [\"a b\"]}}";
    k = 0;
    kv[k++] = (gguf_kv){.key = "tokenizer.ggml.model", .v = gguf_v_str("gpt2")};
    kv[k++] = (gguf_kv){.key = "tokenizer.huggingface.json", .v = gguf_v_str(tj)};
    kv[k++] = (gguf_kv){.key = "tokenizer.wick.config_json",
                        .v = gguf_v_str("{\"eos_token\": \"<x>\", \"chat_template\": \"{{ x }}\"}")};
    if (model_gguf_save(m, tmp_path("c.gguf"), DT_F16, kv, k)) die("hf json gguf");
    put_tmp("gguf", "tiny_hfjson_f16.gguf", tmp_path("c.gguf"));

    /* the container: every value type, nested arrays, a custom alignment, tensors of each
       supported type */
    gguf_value ints[3] = {gguf_v_i32(-1), gguf_v_i32(0), gguf_v_i32(7)};
    gguf_value inner[2] = {arr(GGUF_I32, ints, 3), arr(GGUF_I32, ints, 0)};
    gguf_value u64 = {.type = GGUF_U64}, i64 = {.type = GGUF_I64}, f64 = {.type = GGUF_F64};
    gguf_value u8 = {.type = GGUF_U8}, i16 = {.type = GGUF_I16};
    u64.u = 1ull << 40;
    i64.i = -5;
    f64.f = 0.25;
    u8.u = 200;
    i16.i = -300;
    k = 0;
    kv[k++] = (gguf_kv){.key = "general.architecture", .v = gguf_v_str("llama")};
    kv[k++] = (gguf_kv){.key = "general.alignment", .v = gguf_v_u32(64)};
    kv[k++] = (gguf_kv){.key = "t.u64", .v = u64};
    kv[k++] = (gguf_kv){.key = "t.i64", .v = i64};
    kv[k++] = (gguf_kv){.key = "t.f64", .v = f64};
    kv[k++] = (gguf_kv){.key = "t.u8", .v = u8};
    kv[k++] = (gguf_kv){.key = "t.i16", .v = i16};
    kv[k++] = (gguf_kv){.key = "t.bool", .v = gguf_v_bool(true)};
    kv[k++] = (gguf_kv){.key = "t.nested", .v = arr(GGUF_ARRAY, inner, 2)};
    static float f32[64];
    static unsigned char q[256];
    for (int i = 0; i < 64; i++) f32[i] = (float)i / 8 - 4;
    gguf_write_tensor t[3] = {
        {.name = "f32", .dt = DT_F32, .n_dims = 2, .ne = {8, 8, 1, 1}, .data = f32},
        {.name = "q8_0", .dt = DT_Q8_0, .n_dims = 1, .ne = {32, 1, 1, 1}, .data = q},
        {.name = "empty", .dt = DT_F16, .n_dims = 2, .ne = {4, 0, 1, 1}, .data = NULL},
    };
    if (gguf_write(tmp_path("d.gguf"), kv, k, t, 3)) die("container gguf");
    put_tmp("gguf", "container_types.gguf", tmp_path("d.gguf"));
}

/* ---- the rest ---- */

static void safetensors_seeds(const char *fx) {
    size_t n;
    const unsigned char *b = fuzz_tiny_safetensors(&n);
    put("safetensors", "tiny_model.safetensors", b, n);
    b = fuzz_tiny_adapter_safetensors(&n);
    put("safetensors", "tiny_adapter.safetensors", b, n);
    /* other dtypes, a scalar, an empty tensor, metadata */
    static const unsigned char raw[64] = {1, 2, 3, 4, 5, 6, 7, 8};
    st_write_tensor t[5] = {
        {.name = "bf16", .dt = DT_BF16, .ndim = 2, .shape = {2, 3}, .data = raw},
        {.name = "i64", .dt = DT_I64, .ndim = 1, .shape = {2}, .data = raw},
        {.name = "scalar", .dt = DT_F16, .ndim = 0, .data = raw},
        {.name = "empty", .dt = DT_U8, .ndim = 2, .shape = {0, 5}, .data = NULL},
        {.name = "b", .dt = DT_BOOL, .ndim = 1, .shape = {3}, .data = raw},
    };
    const char *mk[2] = {"format", "step"}, *mv[2] = {"pt", "3"};
    if (st_write(tmp_path("a.safetensors"), t, 5, mk, mv, 2)) die("safetensors");
    put_tmp("safetensors", "dtypes_meta.safetensors", tmp_path("a.safetensors"));
    if (fx) {
        char p[1024];
        snprintf(p, sizeof p, "%s/tiny-qwen2-lora/adapter_a/adapter_model.safetensors", fx);
        if (access(p, R_OK) == 0) put_file("safetensors", "peft_adapter_a.safetensors", p);
    }
}

static void config_seeds(const char *fx) {
    put_config("tiny_llama.json", fuzz_tiny_config(), "{\"eos_token_id\": [2, 3], \"pad_token_id\": 0}");
    put_config("llama3_rope.json",
               "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, "
               "\"intermediate_size\": 12, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, "
               "\"num_key_value_heads\": 1, \"vocab_size\": 16, \"max_position_embeddings\": 32, "
               "\"rms_norm_eps\": 1e-5, \"eos_token_id\": [1, 2, 3], \"rope_parameters\": "
               "{\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, \"factor\": 32.0, "
               "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
               "\"original_max_position_embeddings\": 8192}}", NULL);
    put_config("mistral_linear.json",
               "{\"architectures\": [\"MistralForCausalLM\"], \"hidden_size\": 8, "
               "\"intermediate_size\": 12, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, "
               "\"num_key_value_heads\": 1, \"vocab_size\": 16, \"max_position_embeddings\": 32, "
               "\"rms_norm_eps\": 1e-5, \"rope_theta\": 1e6, \"sliding_window\": 4, "
               "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}, "
               "\"tie_word_embeddings\": false}", "{\"bos_token_id\": 1, \"eos_token_id\": 2}");
    if (!fx) return;
    static const char *dirs[] = {"tiny-qwen2", "tiny-llama", "small-qwen2", "tiny-bert"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char p[1024], file[128];
        char *cfg = NULL, *gen = NULL;
        snprintf(p, sizeof p, "%s/%s/config.json", fx, dirs[i]);
        if (file_read_all(p, &cfg, NULL) != WICK_OK) continue;
        snprintf(p, sizeof p, "%s/%s/generation_config.json", fx, dirs[i]);
        if (file_exists(p) && file_read_all(p, &gen, NULL) != WICK_OK) die(p);
        snprintf(file, sizeof file, "%s.json", dirs[i]);
        put_config(file, cfg, gen);
        free(cfg);
        free(gen);
    }
}

static void adapter_seeds(const char *fx, wick_model *m) {
    const char *c = fuzz_tiny_adapter_config();
    put("adapter_config", "tiny.json", c, strlen(c));
    const char *rx = "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": "
                     "\".*\\\\.(q_proj|v_proj)\", \"rank_pattern\": {\"q_proj\": 2, "
                     "\"model.layers.0.self_attn.v_proj\": 2}, \"alpha_pattern\": {\"v_proj\": 3.5}, "
                     "\"use_rslora\": true, \"bias\": \"none\", \"modules_to_save\": null}";
    put("adapter_config", "regex_patterns.json", rx, strlen(rx));
    if (fx) {
        char p[1024];
        snprintf(p, sizeof p, "%s/tiny-qwen2-lora/adapter_a/adapter_config.json", fx);
        if (access(p, R_OK) == 0) put_file("adapter_config", "peft_adapter_a.json", p);
        snprintf(p, sizeof p, "%s/tiny-qwen2-lora/adapter_b/adapter_config.json", fx);
        if (access(p, R_OK) == 0) put_file("adapter_config", "peft_adapter_b.json", p);
    }
    /* the tiny adapter as a llama.cpp GGUF LoRA */
    size_t n;
    const unsigned char *st = fuzz_tiny_adapter_safetensors(&n);
    wick_adapter *a = NULL;
    if (lora_adapter_read_mem(m, c, strlen(c), st, n, &a)) die("tiny adapter");
    if (lora_adapter_write_gguf(m, a, tmp_path("l.gguf"))) die("gguf lora");
    put_tmp("gguf_lora", "tiny_lora.gguf", tmp_path("l.gguf"));
    lora_adapter_release(a);
}

/* fuzz_target_adapter: byte 0 picks the base (0 the tiny Llama, 1 the tiny Phi-3), then the
   adapter's safetensors. */
static void adapter_tensor_seed(const char *file, int base, const char *const *names,
                                const int64_t *rows, const int64_t *cols, int n) {
    size_t len;
    unsigned char *st = fuzz_build_st(names, rows, cols, n, &len);
    unsigned char *b = malloc(len + 1);
    if (!b) die("out of memory");
    b[0] = (unsigned char)base;
    memcpy(b + 1, st, len);
    put("adapter", file, b, len + 1);
    free(b);
    free(st);
}

static void adapter_tensor_seeds(void) {
#define PFX "base_model.model.model.layers.0."
    static const char *const qv[] = {PFX "self_attn.q_proj.lora_A.weight", PFX "self_attn.q_proj.lora_B.weight",
                                     PFX "self_attn.v_proj.lora_A.weight", PFX "self_attn.v_proj.lora_B.weight"};
    static const int64_t qv_r[] = {2, 8, 2, 4}, qv_c[] = {8, 2, 8, 2};
    adapter_tensor_seed("llama_q_v.st", 0, qv, qv_r, qv_c, 4);
    static const char *const all[] = {
        PFX "self_attn.q_proj.lora_A.weight", PFX "self_attn.q_proj.lora_B.weight",
        PFX "self_attn.k_proj.lora_A.weight", PFX "self_attn.k_proj.lora_B.weight",
        PFX "self_attn.v_proj.lora_A.weight", PFX "self_attn.v_proj.lora_B.weight",
        PFX "self_attn.o_proj.lora_A.weight", PFX "self_attn.o_proj.lora_B.weight",
        PFX "mlp.gate_proj.lora_A.weight", PFX "mlp.gate_proj.lora_B.weight",
        PFX "mlp.up_proj.lora_A.weight", PFX "mlp.up_proj.lora_B.weight",
        PFX "mlp.down_proj.lora_A.weight", PFX "mlp.down_proj.lora_B.weight"};
    static const int64_t all_r[] = {2, 8, 2, 4, 2, 4, 2, 8, 2, 12, 2, 12, 2, 8},
                         all_c[] = {8, 2, 8, 2, 8, 2, 8, 2, 8, 2, 8, 2, 12, 2};
    adapter_tensor_seed("llama_all.st", 0, all, all_r, all_c, 14);
    /* Phi-3's fused modules: one A, B rows q ‖ k ‖ v (8 + 4 + 4) and gate ‖ up (12 + 12) */
    static const char *const fu[] = {
        PFX "self_attn.qkv_proj.lora_A.weight", PFX "self_attn.qkv_proj.lora_B.weight",
        PFX "self_attn.o_proj.lora_A.weight", PFX "self_attn.o_proj.lora_B.weight",
        PFX "mlp.gate_up_proj.lora_A.weight", PFX "mlp.gate_up_proj.lora_B.weight",
        PFX "mlp.down_proj.lora_A.weight", PFX "mlp.down_proj.lora_B.weight"};
    static const int64_t fu_r[] = {2, 16, 2, 8, 2, 24, 2, 8}, fu_c[] = {8, 2, 8, 2, 8, 2, 12, 2};
    adapter_tensor_seed("phi3_fused.st", 1, fu, fu_r, fu_c, 8);
    /* a member of a fused module on its own: refused by name */
    adapter_tensor_seed("phi3_split_q.st", 1, qv, qv_r, qv_c, 2);
#undef PFX
}

/* ---- regressions: inputs for the defects fixed before the harnesses existed, each of which
 * the old code accepted and then overflowed, allocated without bound or converted with
 * undefined behaviour ---- */

static void regression_seeds(wick_model *m) {
    g_kind = "regressions";
    const char *tiny = fuzz_tiny_config();
    /* eos = vocab_size (16): min_tokens wrote logits[16] */
    char cfg[2048];
    subst(cfg, sizeof cfg, tiny, "\"eos_token_id\": 2", "\"eos_token_id\": 16");
    put_config("eos_token_id_equals_vocab_size.json", cfg, NULL);
    put_config("generation_eos_token_id_100000.json", tiny, "{\"eos_token_id\": [2, 100000]}");
    /* 1e9 layers: ~300 GB of per-layer structs before any tensor was checked */
    subst(cfg, sizeof cfg, tiny, "\"num_hidden_layers\": 1,", "\"num_hidden_layers\": 1e9,");
    put_config("num_hidden_layers_1e9.json", cfg, NULL);
    subst(cfg, sizeof cfg, tiny, "\"rope_theta\": 10000.0", "\"rope_theta\": 1e300");
    put_config("rope_theta_1e300.json", cfg, NULL);
    /* adapter_config.json numbers cast to int unchecked */
    static const char *acfg[][2] = {
        {"r_1e10.json", "{\"r\": 1e10, \"lora_alpha\": 4, \"target_modules\": [\"q_proj\"]}"},
        {"r_3.3e73.json", "{\"r\": 3.3e73, \"target_modules\": [\"q_proj\", \"v_proj\"]}"},
        {"rank_pattern_1e300.json", "{\"r\": 2, \"lora_alpha\": 4, \"target_modules\": "
                                    "[\"q_proj\", \"v_proj\"], \"rank_pattern\": {\"q_proj\": 1e300}}"},
        {"lora_alpha_1e300.json", "{\"r\": 2, \"lora_alpha\": 1e300, \"target_modules\": "
                                  "[\"q_proj\", \"v_proj\"]}"},
    };
    for (size_t i = 0; i < sizeof acfg / sizeof acfg[0]; i++)
        put("adapter_config", acfg[i][0], acfg[i][1], strlen(acfg[i][1]));
    /* GGUF: the empty file (pointer arithmetic on NULL), eos ids outside the vocabulary */
    put("gguf", "empty_file.gguf", "", 0);
    gguf_kv kv = {.key = "tokenizer.ggml.eos_token_id", .v = gguf_v_i32(-4096)};
    if (model_gguf_save(m, tmp_path("e.gguf"), DT_F32, &kv, 1)) die("eos gguf");
    put_tmp("gguf", "eos_token_id_minus_4096.gguf", tmp_path("e.gguf"));
    kv.v = gguf_v_u32(100000);
    if (model_gguf_save(m, tmp_path("e.gguf"), DT_F32, &kv, 1)) die("eos gguf");
    put_tmp("gguf", "eos_token_id_100000.gguf", tmp_path("e.gguf"));
    /* a GGUF LoRA whose f64 alpha no float holds */
    size_t n;
    const char *c = fuzz_tiny_adapter_config();
    const unsigned char *st = fuzz_tiny_adapter_safetensors(&n);
    wick_adapter *a = NULL;
    if (lora_adapter_read_mem(m, c, strlen(c), st, n, &a)) die("tiny adapter");
    if (lora_adapter_write_gguf(m, a, tmp_path("l.gguf"))) die("gguf lora");
    lora_adapter_release(a);
    gguf_file *g = NULL;
    if (gguf_open(tmp_path("l.gguf"), &g)) die("gguf lora");
    gguf_kv kvs[16];
    gguf_write_tensor ts[16];
    if (g->n_kv > 16 || g->n_tensors > 16) die("gguf lora too big");
    for (int64_t i = 0; i < g->n_kv; i++) {
        kvs[i] = g->kv[i];
        if (!strcmp(kvs[i].key, "adapter.lora.alpha")) {
            kvs[i].v = (gguf_value){.type = GGUF_F64};
            kvs[i].v.f = 1e300;
        }
    }
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        ts[i] = (gguf_write_tensor){.name = t->name, .dt = t->dt, .n_dims = t->n_dims, .data = t->data};
        memcpy(ts[i].ne, t->ne, sizeof t->ne);
    }
    if (gguf_write(tmp_path("m.gguf"), kvs, (int)g->n_kv, ts, (int)g->n_tensors)) die("alpha gguf");
    gguf_close(g);
    unlink(tmp_path("l.gguf"));
    put_tmp("gguf_lora", "alpha_f64_1e300.gguf", tmp_path("m.gguf"));
    g_kind = "corpus";
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus <fuzz-dir>\n");
        return 2;
    }
    g_root = argv[1];
    snprintf(g_tmp, sizeof g_tmp, "/tmp/wick-gen-corpus-XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    const char *fx = getenv("WICK_FIXTURES");
    wick_model *m = fuzz_tiny_model();
    safetensors_seeds(fx);
    gguf_seeds(m);
    family_gguf_seeds();
    config_seeds(fx);
    adapter_seeds(fx, m);
    adapter_tensor_seeds();
    regression_seeds(m);
    rmdir(g_tmp);
    return 0;
}
