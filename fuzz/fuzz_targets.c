/* fuzz_targets.c — harness bodies for every loader of untrusted files (see fuzz_targets.h).
 * Each target feeds the bytes to the in-memory entry point of a loader — the same code the
 * path-based loader runs after mapping the file — and, when the parse succeeds, walks what it
 * produced so the sanitizers see any pointer that escaped the input. Not here: the libFuzzer
 * mains (fuzz_<name>.c), corpus making (gen_corpus.c). */
#include "fuzz/fuzz_targets.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed/embed.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "lora/lora.h"
#include "model/config.h"
#include "model/encoder.h"
#include "model/gguf_tok.h"
#include "model/model.h"
#include "model/model_gguf.h"

/* A broken invariant of a successful parse: report and abort, so libFuzzer keeps the input. */
#define FUZZ_CHECK(cond)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "fuzz invariant failed at %s:%d: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                               \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

/* Reads every byte of [p, p+n) so ASan reports a view that leaves its buffer. */
static unsigned touch(const void *p, size_t n) {
    const volatile unsigned char *b = p;
    unsigned s = 0;
    if (n) s = b[0] + b[n - 1];
    return s;
}

/* ---- the fixed tiny model and adapter ---- */

typedef struct spec {
    const char *name;
    int64_t r, c;   /* c = 0: a vector of r values */
} spec;

static const spec k_model[] = {
    {"model.embed_tokens.weight", 16, 8},
    {"model.layers.0.self_attn.q_proj.weight", 8, 8},
    {"model.layers.0.self_attn.k_proj.weight", 4, 8},
    {"model.layers.0.self_attn.v_proj.weight", 4, 8},
    {"model.layers.0.self_attn.o_proj.weight", 8, 8},
    {"model.layers.0.mlp.gate_proj.weight", 12, 8},
    {"model.layers.0.mlp.up_proj.weight", 12, 8},
    {"model.layers.0.mlp.down_proj.weight", 8, 12},
    {"model.layers.0.input_layernorm.weight", 8, 0},
    {"model.layers.0.post_attention_layernorm.weight", 8, 0},
    {"model.norm.weight", 8, 0},
    {"lm_head.weight", 16, 8},
};

static const spec k_adapter[] = {
    {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", 2, 8},
    {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", 8, 2},
    {"base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight", 2, 8},
    {"base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight", 4, 2},
};

static const char k_config[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 12,"
    " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1,"
    " \"vocab_size\": 16, \"max_position_embeddings\": 32, \"rms_norm_eps\": 1e-5,"
    " \"rope_theta\": 10000.0, \"tie_word_embeddings\": false, \"hidden_act\": \"silu\","
    " \"bos_token_id\": 1, \"eos_token_id\": 2}";

static const char k_adapter_config[] =
    "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": [\"q_proj\", "
    "\"v_proj\"], \"rank_pattern\": {}, \"alpha_pattern\": {}, \"use_rslora\": false, "
    "\"bias\": \"none\"}";

/* A tiny Phi-3 (fused qkv_proj / gate_up_proj, partial rotary, longrope): the fused base of
   fuzz_target_adapter's second model, and a GGUF seed of gen_corpus. */
static const spec k_phi3_model[] = {
    {"model.embed_tokens.weight", 16, 8},
    {"model.layers.0.self_attn.qkv_proj.weight", 16, 8},
    {"model.layers.0.self_attn.o_proj.weight", 8, 8},
    {"model.layers.0.mlp.gate_up_proj.weight", 24, 8},
    {"model.layers.0.mlp.down_proj.weight", 8, 12},
    {"model.layers.0.input_layernorm.weight", 8, 0},
    {"model.layers.0.post_attention_layernorm.weight", 8, 0},
    {"model.norm.weight", 8, 0},
    {"lm_head.weight", 16, 8},
};

static const char k_phi3_config[] =
    "{\"architectures\": [\"Phi3ForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 12,"
    " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1,"
    " \"vocab_size\": 16, \"max_position_embeddings\": 32, \"rms_norm_eps\": 1e-5,"
    " \"rope_theta\": 10000.0, \"tie_word_embeddings\": false, \"hidden_act\": \"silu\","
    " \"partial_rotary_factor\": 0.5, \"original_max_position_embeddings\": 16,"
    " \"rope_scaling\": {\"rope_type\": \"longrope\", \"short_factor\": [1.0],"
    " \"long_factor\": [2.5]}, \"sliding_window\": 8}";

/* fuzz_target_adapter's configs: every projection of each base, as PEFT names its modules */
static const char k_adapter_config_all[] =
    "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": [\"q_proj\", "
    "\"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\", \"down_proj\"]}";
static const char k_adapter_config_fused[] =
    "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"target_modules\": "
    "[\"qkv_proj\", \"o_proj\", \"gate_up_proj\", \"down_proj\"]}";

/* A safetensors image of F32 tensors with small finite values: the header written by hand
 * (8-byte length, JSON padded with spaces to a multiple of 8), then the data back to back. */
static unsigned char *build_st(const spec *t, int n, size_t *len) {
    char hdr[4096];
    size_t h = 0;
    int64_t off = 0;
    h += (size_t)snprintf(hdr + h, sizeof hdr - h, "{");
    for (int i = 0; i < n; i++) {
        const int64_t numel = t[i].c ? t[i].r * t[i].c : t[i].r;
        char shape[48];
        if (t[i].c) snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)t[i].r, (long long)t[i].c);
        else snprintf(shape, sizeof shape, "[%lld]", (long long)t[i].r);
        h += (size_t)snprintf(hdr + h, sizeof hdr - h,
                              "%s\"%s\": {\"dtype\": \"F32\", \"shape\": %s, "
                              "\"data_offsets\": [%lld, %lld]}", i ? ", " : "", t[i].name, shape,
                              (long long)off, (long long)(off + 4 * numel));
        off += 4 * numel;
    }
    h += (size_t)snprintf(hdr + h, sizeof hdr - h, "}");
    while (h % 8) hdr[h++] = ' ';
    *len = 8 + h + (size_t)off;
    unsigned char *b = malloc(*len);
    if (!b) abort();
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, hdr, h);
    float *d = (float *)(b + 8 + h);
    for (int64_t i = 0; i < off / 4; i++) {
        float v = 0.05f * (float)((i * 7) % 11) - 0.2f;
        memcpy(&d[i], &v, 4);
    }
    return b;
}

static unsigned char *g_model_st, *g_adapter_st, *g_phi3_st;
static size_t g_model_len, g_adapter_len, g_phi3_len;
static wick_model *g_model, *g_phi3;

const char *fuzz_tiny_config(void) { return k_config; }
const char *fuzz_tiny_adapter_config(void) { return k_adapter_config; }

unsigned char *fuzz_build_st(const char *const *names, const int64_t *rows, const int64_t *cols,
                             int n, size_t *len) {
    spec *t = malloc(sizeof *t * (size_t)(n ? n : 1));
    if (!t) abort();
    for (int i = 0; i < n; i++) t[i] = (spec){names[i], rows[i], cols[i]};
    unsigned char *b = build_st(t, n, len);
    free(t);
    return b;
}

const unsigned char *fuzz_tiny_safetensors(size_t *len) {
    if (!g_model_st) g_model_st = build_st(k_model, sizeof k_model / sizeof k_model[0], &g_model_len);
    *len = g_model_len;
    return g_model_st;
}

const unsigned char *fuzz_tiny_adapter_safetensors(size_t *len) {
    if (!g_adapter_st)
        g_adapter_st = build_st(k_adapter, sizeof k_adapter / sizeof k_adapter[0], &g_adapter_len);
    *len = g_adapter_len;
    return g_adapter_st;
}

/* A tiny model from its config and safetensors, on the reference kernels, once (*slot). */
static wick_model *load_tiny(wick_model **slot, const char *config, const unsigned char *st,
                             size_t len, const char *what) {
    if (*slot) return *slot;
    wick_model_params mp = wick_model_params_default();
    mp.kernels = "ref";
    if (model_load_mem(config, NULL, st, len, &mp, slot) != WICK_OK) {
        fprintf(stderr, "fuzz: %s does not load: %s\n", what, wick_last_error());
        abort();
    }
    return *slot;
}

wick_model *fuzz_tiny_model(void) {
    size_t len;
    const unsigned char *st = fuzz_tiny_safetensors(&len);
    return load_tiny(&g_model, k_config, st, len, "the tiny model");
}

wick_model *fuzz_tiny_phi3_model(void) {
    if (!g_phi3_st) g_phi3_st = build_st(k_phi3_model, sizeof k_phi3_model / sizeof k_phi3_model[0], &g_phi3_len);
    return load_tiny(&g_phi3, k_phi3_config, g_phi3_st, g_phi3_len, "the tiny Phi-3");
}

/* ---- targets ---- */

int fuzz_target_safetensors(const uint8_t *data, size_t size) {
    st_set *s = NULL;
    if (st_open_mem(data, size, "fuzz.safetensors", &s) != WICK_OK) return 0;
    const unsigned char *lo = data, *hi = data + size;
    for (int i = 0; i < st_count(s); i++) {
        const st_tensor *t = st_at(s, i);
        FUZZ_CHECK(t && t->name && t->ndim >= 0 && t->ndim <= ST_MAX_DIMS);
        FUZZ_CHECK(st_find(s, t->name) == t);
        if (t->nbytes) {
            const unsigned char *p = t->data;
            FUZZ_CHECK(p >= lo && p <= hi && t->nbytes <= (size_t)(hi - p));
            touch(p, t->nbytes);
        }
        FUZZ_CHECK(t->nbytes == (size_t)t->numel * dtype_size(t->dt));
    }
    (void)st_metadata(s, "format");
    st_close(s);
    return 0;
}

/* The tokenizer of the metadata: both GGUF -> tokenizer.json routes of model/, then, unless
 * WICK_FUZZ_NO_TOKENIZER is set, the tokenizer itself (tokenizer/) on the result. */
static void gguf_tokenizer(const gguf_file *g) {
    gguf_tok_meta tm;
    if (gguf_tok_meta_from_gguf(g, &tm) == WICK_OK) gguf_tok_meta_free(&tm);
    char *tj = NULL, *tc = NULL;
    if (model_gguf_tokenizer_json(g, &tj, &tc) != WICK_OK) return;
    const char *skip = getenv("WICK_FUZZ_NO_TOKENIZER");
    if (!(skip && *skip && *skip != '0')) {
        wick_tokenizer *tok = NULL;
        if (wick_tokenizer_load_mem(tj, strlen(tj), tc, &tok) == WICK_OK) {
            int32_t ids[64];
            int32_t n = wick_tokenize(tok, "Hello wick, 12 3!", 17, true, ids, 64);
            const int32_t nv = wick_tokenizer_vocab_size(tok);
            for (int32_t i = 0; i < n; i++) FUZZ_CHECK(ids[i] >= 0 && ids[i] < nv);
            wick_tokenizer_free(tok);
        }
    }
    free(tj);
    free(tc);
}

int fuzz_target_gguf(const uint8_t *data, size_t size) {
    gguf_file *g = NULL;
    if (gguf_open_mem(data, size, "fuzz.gguf", &g) != WICK_OK) return 0;
    const unsigned char *lo = data, *hi = data + size;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        FUZZ_CHECK(gguf_find_tensor(g, t->name) != NULL);
        if (t->nbytes) {
            const unsigned char *p = t->data;
            FUZZ_CHECK(p >= lo && p <= hi && t->nbytes <= (size_t)(hi - p));
            FUZZ_CHECK(((uintptr_t)(p - lo) - g->data_offset) % g->alignment == 0);
            touch(p, t->nbytes);
        }
    }
    for (int64_t i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        FUZZ_CHECK(gguf_find_kv(g, kv->key) != NULL);
        int64_t x;
        double f;
        bool b;
        char *s = NULL;
        (void)gguf_get_int(g, kv->key, &x, NULL);
        (void)gguf_get_float(g, kv->key, &f, NULL);
        (void)gguf_get_bool(g, kv->key, &b, NULL);
        if (gguf_get_str(g, kv->key, &s, NULL)) free(s);
        if (kv->v.type == GGUF_STRING) touch(kv->v.str.s, (size_t)kv->v.str.len);
    }
    gguf_tokenizer(g);
    gguf_close(g);

    /* the whole model loader: metadata, every tensor against it, the tokenizer */
    wick_model_params mp = wick_model_params_default();
    mp.kernels = "ref";
    const char *skip = getenv("WICK_FUZZ_NO_TOKENIZER");
    mp.load_tokenizer = !(skip && *skip && *skip != '0');
    wick_model *m = NULL;
    if (model_load_gguf_mem(data, size, &mp, &m) == WICK_OK) {
        wick_model_info in;
        FUZZ_CHECK(wick_model_get_info(m, &in) == WICK_OK);
        FUZZ_CHECK(in.bos_id < in.n_vocab && in.pad_id < in.n_vocab);
        for (int i = 0; i < in.n_eos; i++) FUZZ_CHECK(in.eos_ids[i] >= 0 && in.eos_ids[i] < in.n_vocab);
        const wick_tokenizer *tok = wick_model_tokenizer(m);
        FUZZ_CHECK(!tok || wick_tokenizer_vocab_size(tok) <= in.n_vocab);
        wick_model_free(m);
    }
    return 0;
}

static bool count_token(const wick_token *t, void *user) {
    (*(int *)user)++;
    return true;
}

int fuzz_target_config(const uint8_t *data, size_t size) {
    /* config.json [NUL generation_config.json] */
    const uint8_t *nul = memchr(data, 0, size);
    const size_t n1 = nul ? (size_t)(nul - data) : size;
    char *cfg = malloc(n1 + 1), *gen = NULL;
    if (!cfg) return 0;
    memcpy(cfg, data, n1);
    cfg[n1] = 0;
    if (nul) {
        const size_t n2 = size - n1 - 1;
        if (!(gen = malloc(n2 + 1))) {
            free(cfg);
            return 0;
        }
        memcpy(gen, nul + 1, n2);
        gen[n2] = 0;
    }
    model_config c;
    if (config_parse(cfg, "config.json", &c) == WICK_OK) {
        if (gen && config_parse_generation(gen, "generation_config.json", &c) == WICK_OK) {
            FUZZ_CHECK(c.bos_id < c.n_vocab && c.pad_id < c.n_vocab);
            for (int i = 0; i < c.n_eos; i++)
                FUZZ_CHECK(c.eos_ids[i] >= 0 && c.eos_ids[i] < c.n_vocab);
        }
    }
    encoder_config ec;
    (void)encoder_config_parse(cfg, "config.json", &ec);
    /* the same text as config_sentence_transformers.json (prompts) */
    embed_st_config sc;
    memset(&sc, 0, sizeof sc);
    if (embed_st_prompts_parse(cfg, "config_sentence_transformers.json", &sc) == WICK_OK) {
        for (int i = 0; i < sc.n_prompts; i++)
            FUZZ_CHECK(embed_st_prompt(&sc, sc.prompt_name[i]) != NULL);
        FUZZ_CHECK(!sc.default_prompt || embed_st_prompt(&sc, sc.default_prompt));
    }
    embed_st_config_free(&sc);

    /* the fuzzed config against the tiny model's weights; when it fits, generate a few tokens
       with min_tokens so the config's eos ids reach the logits */
    size_t len;
    const unsigned char *st = fuzz_tiny_safetensors(&len);
    wick_model_params mp = wick_model_params_default();
    mp.kernels = "ref";
    wick_model *m = NULL;
    if (model_load_mem(cfg, gen, st, len, &mp, &m) == WICK_OK) {
        wick_session_params sp = wick_session_params_default();
        sp.n_ctx = 8;
        sp.n_threads = 1;
        wick_session *s = NULL;
        if (wick_session_create(m, &sp, &s) == WICK_OK) {
            wick_gen_params gp = wick_gen_params_default();
            gp.min_tokens = 2;
            gp.max_tokens = 3;
            gp.temperature = 0;
            const int32_t prompt[2] = {1, 3};
            int n = 0;
            (void)wick_generate(s, prompt, 2, &gp, count_token, &n);
            wick_session_free(s);
        }
        wick_model_free(m);
    }
    free(cfg);
    free(gen);
    return 0;
}

int fuzz_target_adapter_config(const uint8_t *data, size_t size) {
    lora_config *c = NULL;
    if (lora_config_parse((const char *)data, size, "adapter_config.json", &c) == WICK_OK) {
        for (int l = 0; l < 2; l++)
            for (int p = 0; p < LORA_N_PROJ; p++) {
                char name[96];
                snprintf(name, sizeof name, "model.layers.%d.%s", l, lora_module_path[p]);
                int rank = 0;
                float scale = 0;
                (void)lora_config_targets(c, name);
                if (lora_config_module(c, name, &rank, NULL) == WICK_OK) {
                    FUZZ_CHECK(rank >= 1);
                    if (lora_config_scale(c, name, rank, &scale) == WICK_OK)
                        FUZZ_CHECK(isfinite(scale));
                }
            }
        lora_config_free(c);
    }
    /* the fuzzed config with the tiny adapter's tensors, against the tiny model */
    size_t len;
    const unsigned char *st = fuzz_tiny_adapter_safetensors(&len);
    wick_adapter *a = NULL;
    if (lora_adapter_read_mem(fuzz_tiny_model(), (const char *)data, size, st, len, &a) == WICK_OK) {
        FUZZ_CHECK(a->r_max >= 1);
        lora_adapter_release(a);
    }
    return 0;
}

/* Byte 0 bit 0: the base (0 the tiny Llama, 1 the tiny Phi-3 with its fused modules); the
   rest: the adapter's safetensors, copied to an aligned buffer as a mapped file would be. */
int fuzz_target_adapter(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const int phi3 = data[0] & 1;
    wick_model *m = phi3 ? fuzz_tiny_phi3_model() : fuzz_tiny_model();
    const char *cfg = phi3 ? k_adapter_config_fused : k_adapter_config_all;
    unsigned char *st = malloc(size > 1 ? size - 1 : 1);
    if (!st) return 0;
    if (size > 1) memcpy(st, data + 1, size - 1);
    wick_adapter *a = NULL;
    if (lora_adapter_read_mem(m, cfg, strlen(cfg), st, size - 1, &a) == WICK_OK) {
        FUZZ_CHECK(a->n_layer == 1 && a->fused == (bool)phi3);
        for (int i = 0; i < a->n_layer * LORA_N_PROJ; i++) {
            const lora_pair *p = &a->pairs[i];
            if (!p->A.data) continue;
            FUZZ_CHECK(p->A.rows >= 1 && p->A.rows <= a->r_max && p->B.cols == p->A.rows &&
                       isfinite(p->scale));
            touch(p->A.data, sizeof(float) * (size_t)(p->A.rows * p->A.cols));
            touch(p->B.data, sizeof(float) * (size_t)(p->B.rows * p->B.cols));
            /* a fused module is adapted whole, with one A */
            const int g = lora_group(a->fused, i % LORA_N_PROJ, NULL, NULL);
            if (g > 1) FUZZ_CHECK(lora_module_one_a(p, g, NULL));
        }
        lora_adapter_release(a);
    }
    free(st);
    return 0;
}

int fuzz_target_gguf_lora(const uint8_t *data, size_t size) {
    wick_adapter *a = NULL;
    if (lora_adapter_read_gguf_mem(fuzz_tiny_model(), data, size, &a) == WICK_OK) {
        for (int i = 0; i < a->n_layer * LORA_N_PROJ; i++) {
            const lora_pair *p = &a->pairs[i];
            if (!p->A.data) continue;
            FUZZ_CHECK(p->A.rows >= 1 && p->A.rows <= a->r_max && isfinite(p->scale));
            touch(p->A.data, sizeof(float) * (size_t)(p->A.rows * p->A.cols));
            touch(p->B.data, sizeof(float) * (size_t)(p->B.rows * p->B.cols));
        }
        lora_adapter_release(a);
    }
    return 0;
}
