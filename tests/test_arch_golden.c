/* test_arch_golden.c — decoder families of issue 16 against transformers / peft goldens in
 * tests/data/arch/<family>/ (made by tests/golden/arch_goldens.py; its docstring gives the
 * layout): logits at every position of three prompts, greedy ids and the logits of each
 * cached decode step, and the logits of a PEFT LoRA on all projections. Tolerance 1e-4 on
 * logits (f32), exact ids, as issue 16 sets. Every check runs on the reference table
 * (1 thread) and the default table (2 threads), in exact precision.
 * Families wick does not run yet are checked to be refused with a message that names the
 * architecture, so a half-supported family cannot load silently. */
#include "testutil.h"

#include <math.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "formats/safetensors.h"
#include "model/model_gguf.h"
#include "kernels/kernels.h"

#define TOL_LOGITS 1e-4

static char *arch_dir(const char *fam) {
    size_t n = strlen(WICK_SOURCE_DIR) + strlen(fam) + 32;
    char *p = malloc(n);
    snprintf(p, n, "%s/tests/data/arch/%s", WICK_SOURCE_DIR, fam);
    return p;
}

static wick_model *load(const char *dir, const char *kern) {
    wick_model_params mp = wick_model_params_default();
    mp.kernels = kern;
    mp.precision = "exact";
    wick_model *m = NULL;
    if (wick_model_load(dir, &mp, &m) != WICK_OK) fail_msg("load %s: %s", dir, wick_last_error());
    return m;
}

static wick_session *session(const wick_model *m, int n_threads) {
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = n_threads;
    wick_session *s = NULL;
    if (wick_session_create(m, &sp, &s) != WICK_OK) fail_msg("session: %s", wick_last_error());
    return s;
}

/* WICK_DEVICE names a GPU (scripts/cuda-check.sh runs this test so) */
static bool on_gpu(void) {
    const char *dev = getenv("WICK_DEVICE");
    return dev && *dev && strncmp(dev, "cpu", 3) != 0;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Prompt p<pi>: logits at every position, greedy ids, per-step logits. */
static void check_prompt(const char *fam, const char *kern, int pi, int n_threads) {
    char *dir = arch_dir(fam), golden[4200], key[64];
    snprintf(golden, sizeof golden, "%s/golden.safetensors", dir);
    wick_model *m = load(dir, kern);
    wick_model_info info;
    wick_model_get_info(m, &info);
    const int V = info.n_vocab;
    int64_t T, n_ref, n_steps, n_step;
    snprintf(key, sizeof key, "p%d_input_ids", pi);
    int32_t *ids = tu_load_ids(golden, key, &T);
    snprintf(key, sizeof key, "p%d_logits", pi);
    float *ref = tu_load_f32(golden, key, &n_ref, NULL, NULL);
    assert_int_equal(n_ref, T * V);
    snprintf(key, sizeof key, "p%d_greedy_ids", pi);
    int32_t *greedy = tu_load_ids(golden, key, &n_steps);
    snprintf(key, sizeof key, "p%d_step_logits", pi);
    float *step_ref = tu_load_f32(golden, key, &n_step, NULL, NULL);
    assert_int_equal(n_step, n_steps * V);

    wick_session *s = session(m, n_threads);
    float *logits = malloc(sizeof(float) * (size_t)T * V), *last = malloc(sizeof(float) * V);
    assert_int_equal(wick_session_eval(s, ids, (int)T, WICK_LOGITS_ALL, logits), WICK_OK);
    const double err = tu_max_abs_diff(logits, ref, T * V);
    memcpy(last, logits + (size_t)(T - 1) * V, sizeof(float) * V);
    double step_err = 0;
    for (int t = 0; t < n_steps; t++) {
        const double e = tu_max_abs_diff(last, step_ref + (size_t)t * V, V);
        step_err = e > step_err ? e : step_err;
        int tok = argmax(last, V);
        assert_int_equal(tok, greedy[t]);
        if (t + 1 < n_steps) assert_int_equal(wick_session_eval(s, &tok, 1, WICK_LOGITS_LAST, last), WICK_OK);
    }
    printf("%s [%s, %d thr] p%d (%lld tokens): logits max abs err %.3g, %lld greedy ids match, "
           "step logits %.3g\n", fam, kern, n_threads, pi, (long long)T, err, (long long)n_steps, step_err);
    assert_true(err <= TOL_LOGITS);
    assert_true(step_err <= TOL_LOGITS);
    free(last), free(logits), free(ids), free(ref), free(greedy), free(step_ref);
    wick_session_free(s);
    wick_model_free(m);
    free(dir);
}

/* p2 with the PEFT adapter of lora/ (r 4 on all seven projections). */
static void check_lora(const char *fam, const char *kern, int n_threads) {
    char *dir = arch_dir(fam), golden[4200], ad[4200];
    snprintf(golden, sizeof golden, "%s/golden.safetensors", dir);
    snprintf(ad, sizeof ad, "%s/lora", dir);
    wick_model *m = load(dir, kern);
    wick_model_info info;
    wick_model_get_info(m, &info);
    const int V = info.n_vocab;
    int64_t T, n_ref;
    int32_t *ids = tu_load_ids(golden, "p2_input_ids", &T);
    float *ref = tu_load_f32(golden, "lora_p2_logits", &n_ref, NULL, NULL);
    assert_int_equal(n_ref, T * V);
    if (wick_adapter_load(m, ad, "golden") != WICK_OK) fail_msg("adapter %s: %s", ad, wick_last_error());
    wick_session *s = session(m, n_threads);
    assert_int_equal(wick_session_set_adapter(s, "golden", 1.0f), WICK_OK);
    float *logits = malloc(sizeof(float) * (size_t)T * V);
    assert_int_equal(wick_session_eval(s, ids, (int)T, WICK_LOGITS_ALL, logits), WICK_OK);
    const double err = tu_max_abs_diff(logits, ref, T * V);
    printf("%s [%s] PEFT LoRA p2: logits max abs err %.3g\n", fam, kern, err);
    assert_true(err <= TOL_LOGITS);
    free(logits), free(ids), free(ref);
    wick_session_free(s);
    wick_model_free(m);
    free(dir);
}

static void check_family(const char *fam, bool lora) {
    static const char *const tables[] = {"ref", "auto"};
    for (int k = 0; k < 2; k++) {
        for (int p = 0; p < 3; p++) check_prompt(fam, tables[k], p, k ? 2 : 1);
        if (lora) check_lora(fam, tables[k], k ? 2 : 1);
    }
}

/* Llama 3.2 / SmolLM shape: tied embeddings, llama3 rope scaling, explicit head_dim. */
static void test_llama32(void **state) {
    (void)state;
    check_family("llama32", false); /* the script makes no adapter for it */
}

/* Qwen3: per-head q/k RMSNorm, explicit head_dim (32, not hidden/heads = 16), no biases. */
static void test_qwen3(void **state) {
    (void)state;
    check_family("qwen3", true);
}

/* Gemma 3 text: (1 + w) RMSNorms, sandwich norms, √d embedding scale, GELU-tanh, q/k norms,
   query_pre_attn_scalar, sliding/full layers alternating with their own RoPE bases. */
static void test_gemma3(void **state) {
    (void)state;
    check_family("gemma3", false); /* the script makes no adapter for it */
    /* saved as a folder (the source tensors, stored w of (1 + w)) it loads back the same;
       a GGUF of this shape is refused, nothing written */
    char *dir = arch_dir("gemma3"), *tmp = tu_mkdtemp(), out[4200], gg[4200];
    wick_model *m = load(dir, "auto");
    snprintf(out, sizeof out, "%s/saved", tmp);
    snprintf(gg, sizeof gg, "%s/m.gguf", tmp);
    assert_int_equal(wick_model_save(m, out), WICK_OK);
    /* query_pre_attn_scalar stays an integer, as in the source (transformers 5 types it int
       and refuses 24.0) */
    char cfgp[4300];
    snprintf(cfgp, sizeof cfgp, "%s/config.json", out);
    char *cfg = tu_read_text(cfgp);
    assert_non_null(cfg);
    const char *qs = strstr(cfg, "\"query_pre_attn_scalar\": ");
    assert_non_null(qs);
    qs += strlen("\"query_pre_attn_scalar\": ");
    assert_true(qs[strspn(qs, "0123456789")] == ',');
    free(cfg);
    wick_model *back = load(out, "auto");
    const int32_t ids[5] = {5, 77, 300, 2, 41};
    float *a = malloc(sizeof(float) * 512), *b = malloc(sizeof(float) * 512);
    wick_session *s1 = session(m, 2), *s2 = session(back, 2);
    assert_int_equal(wick_session_eval(s1, ids, 5, WICK_LOGITS_LAST, a), WICK_OK);
    assert_int_equal(wick_session_eval(s2, ids, 5, WICK_LOGITS_LAST, b), WICK_OK);
    assert_true(tu_max_abs_diff(a, b, 512) == 0);
    wick_session_free(s1), wick_session_free(s2), wick_model_free(back), free(a), free(b);
    assert_int_equal(wick_model_save(m, gg), WICK_ERR_UNSUPPORTED);
    assert_non_null(strstr(wick_last_error(), "Gemma3ForCausalLM"));
    struct stat sb;
    assert_int_not_equal(stat(gg, &sb), 0);
    /* full training (tests/test_train.c checks it against transformers): on a GPU the
       trainer refuses the device (training runs on the CPU) */
    wick_trainer *tr = NULL;
    assert_int_equal(wick_trainer_create_full(m, NULL, &tr), on_gpu() ? WICK_ERR_UNSUPPORTED : WICK_OK);
    if (on_gpu()) assert_null(tr);
    wick_trainer_free(tr);
    wick_model_free(m);
    tu_rmdir_rf(tmp);
    free(tmp), free(dir);
}

/* Gemma 2: Gemma 3's layer without q/k norms, one RoPE base, soft-capped attention scores
   and final logits (caps 2 and 1.5 here, so both bend), PEFT LoRA on all projections. */
static void test_gemma2(void **state) {
    (void)state;
    check_family("gemma2", true);
}

/* Phi-3 / Phi-4-mini shape: fused qkv_proj and gate_up_proj, partial rotary (0.75), longrope
   with short and long factors (original context 32: prompt 2's 40 tokens take the long ones),
   PEFT LoRA on the fused modules as PEFT names them. */
static void test_phi3(void **state) {
    (void)state;
    check_family("phi3", true);
    /* PEFT's fused modules survive a save: the adapter of lora/ (qkv_proj, gate_up_proj, o, down)
       is written back under the same keys with the same values; a new adapter targets the fused
       modules by name, and naming one of their projections alone is refused with the module */
    char *dir = arch_dir("phi3"), *tmp = tu_mkdtemp(), src[4200], out[4200], wp[4300];
    wick_model *m = load(dir, "cpu");
    snprintf(src, sizeof src, "%s/lora", dir);
    snprintf(out, sizeof out, "%s/saved", tmp);
    assert_int_equal(wick_adapter_load(m, src, "a"), WICK_OK);
    assert_int_equal(wick_adapter_save(m, "a", out), WICK_OK);
    st_set *x = NULL, *y = NULL;
    snprintf(wp, sizeof wp, "%s/adapter_model.safetensors", src);
    assert_int_equal(st_open(wp, &x), WICK_OK);
    snprintf(wp, sizeof wp, "%s/adapter_model.safetensors", out);
    assert_int_equal(st_open(wp, &y), WICK_OK);
    assert_int_equal(st_count(x), st_count(y));
    assert_int_equal(st_count(x), 2 * 2 * 4); /* 2 layers x 4 modules x (A, B) */
    for (int i = 0; i < st_count(x); i++) {
        const st_tensor *a = st_at(x, i), *b = st_find(y, a->name);
        if (!b) fail_msg("saved adapter lacks %s", a->name);
        assert_int_equal(a->nbytes, b->nbytes);
        assert_int_equal(a->dt, b->dt);
        assert_memory_equal(a->data, b->data, a->nbytes);
    }
    st_close(x), st_close(y);
    assert_int_equal(wick_adapter_create(m, "new", 4, 8.0f, "qkv,o,gate_up_proj,down", 3), WICK_OK);
    assert_int_equal(wick_adapter_create(m, "bad", 4, 8.0f, "q,v", 3), WICK_ERR_INVALID_ARG);
    assert_non_null(strstr(wick_last_error(), "qkv_proj"));
    assert_int_equal(wick_adapter_create(m, "bad", 4, 8.0f, "o,up", 3), WICK_ERR_INVALID_ARG);
    assert_non_null(strstr(wick_last_error(), "gate_up_proj"));
    snprintf(out, sizeof out, "%s/new", tmp);
    assert_int_equal(wick_adapter_save(m, "new", out), WICK_OK);
    snprintf(wp, sizeof wp, "%s/adapter_model.safetensors", out);
    assert_int_equal(st_open(wp, &y), WICK_OK);
    const st_tensor *qb = st_find(y, "base_model.model.model.layers.1.self_attn.qkv_proj.lora_B.weight");
    assert_non_null(qb);
    assert_int_equal(qb->shape[0], 64 + 2 * 32); /* q (4 heads) and k, v (2 heads) of 16 */
    assert_non_null(st_find(y, "base_model.model.model.layers.0.mlp.gate_up_proj.lora_A.weight"));
    assert_null(st_find(y, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
    st_close(y);
    assert_int_equal(wick_adapter_load(m, out, "back"), WICK_OK);
    wick_model_free(m);
    tu_rmdir_rf(tmp);
    free(tmp), free(dir);
}

/* Phi-3 to GGUF as llama.cpp's phi3 names it: fused attn_qkv, ffn_up = gate ‖ up, no ffn_gate,
   rope.dimension_count = the rotated values (partial rotary), longrope as rope_factors_short /
   rope_factors_long with rope.scaling.original_context_length and attn_factor. F32 gives the
   folder's logits bit for bit at every position of prompt 2 (40 tokens: the long factors),
   hence the goldens, and so does that GGUF written back as a folder (qkv_proj, gate_up_proj,
   partial_rotary_factor, longrope rope_scaling); Q8_0 stays close; Q4_0 runs; and the names
   llama.cpp reads are there. */
static void test_phi3_gguf(void **state) {
    (void)state;
    char *dir = arch_dir("phi3"), *tmp = tu_mkdtemp(), gg[4200], gp[4200];
    snprintf(gg, sizeof gg, "%s/m.gguf", tmp);
    snprintf(gp, sizeof gp, "%s/golden.safetensors", dir);
    int64_t T;
    int32_t *ids = tu_load_ids(gp, "p2_input_ids", &T);
    wick_model *m = load(dir, "auto");
    wick_model_info info;
    wick_model_get_info(m, &info);
    const int V = info.n_vocab;
    float *a = malloc(sizeof(float) * (size_t)T * V), *b = malloc(sizeof(float) * (size_t)T * V);
    wick_session *s = session(m, 2);
    assert_int_equal(wick_session_eval(s, ids, (int)T, WICK_LOGITS_ALL, a), WICK_OK);
    wick_session_free(s);
    static const dtype qt[3] = {DT_F32, DT_Q8_0, DT_Q4_0};
    for (int q = 0; q < 3; q++) {
        if (model_gguf_save(m, gg, qt[q], NULL, 0)) fail_msg("%s", wick_last_error());
        if (q == 0) { /* what llama.cpp's phi3 loader looks up */
            gguf_file *g = NULL;
            assert_int_equal(gguf_open(gg, &g), WICK_OK);
            const gguf_tensor *t = gguf_find_tensor(g, "blk.1.attn_qkv.weight");
            assert_non_null(t);
            assert_int_equal(t->ne[0], 64);
            assert_int_equal(t->ne[1], 64 + 2 * 32); /* 4 heads and 2 KV heads of 16 */
            assert_non_null(t = gguf_find_tensor(g, "blk.1.ffn_up.weight"));
            assert_int_equal(t->ne[1], 2 * 128);
            assert_null(gguf_find_tensor(g, "blk.1.ffn_gate.weight"));
            assert_non_null(t = gguf_find_tensor(g, "rope_factors_long.weight"));
            assert_int_equal(t->ne[0], 6);
            assert_non_null(gguf_find_tensor(g, "rope_factors_short.weight"));
            int64_t v = 0;
            wick_status st = WICK_OK;
            assert_true(gguf_get_int(g, "phi3.rope.dimension_count", &v, &st) && v == 12);
            assert_true(gguf_get_int(g, "phi3.rope.scaling.original_context_length", &v, &st) &&
                        v == 32);
            assert_true(gguf_get_int(g, "phi3.context_length", &v, &st) && v == 128);
            double af = 0;
            assert_true(gguf_get_float(g, "phi3.rope.scaling.attn_factor", &af, &st) && af > 1);
            gguf_close(g);
        }
        wick_model *gm = load(gg, "auto");
        s = session(gm, 2);
        assert_int_equal(wick_session_eval(s, ids, (int)T, WICK_LOGITS_ALL, b), WICK_OK);
        const double e = tu_max_abs_diff(a, b, T * V);
        printf("phi3: folder vs GGUF %s: logits max abs diff %.3g\n", dtype_name(qt[q]), e);
        if (q == 0) { /* and back to a Hugging Face folder (wick convert): the same again */
            assert_true(e == 0);
            char out[4200];
            snprintf(out, sizeof out, "%s/folder", tmp);
            assert_int_equal(wick_model_save(gm, out), WICK_OK);
            wick_model *fm = load(out, "auto");
            wick_session *s2 = session(fm, 2);
            float *c2 = malloc(sizeof(float) * (size_t)T * V);
            assert_int_equal(wick_session_eval(s2, ids, (int)T, WICK_LOGITS_ALL, c2), WICK_OK);
            printf("phi3: folder -> GGUF F32 -> folder: logits max abs diff %.3g\n",
                   tu_max_abs_diff(a, c2, T * V));
            assert_true(tu_max_abs_diff(a, c2, T * V) == 0);
            wick_session_free(s2), wick_model_free(fm), free(c2);
        } else if (q == 1) {
            assert_true(e < 5e-2);
        }
        else assert_true(e == e && e < 1e30); /* finite */
        wick_session_free(s);
        wick_model_free(gm);
    }
    wick_model_free(m);
    tu_rmdir_rf(tmp);
    free(dir), free(tmp), free(a), free(b), free(ids);
}

/* A copy of golden folder `fam` with config keys changed (edit(cfg)), for GGUF round trips. */
static char *edited_copy(const char *fam, void (*edit)(cJSON *)) {
    char *src = arch_dir(fam), *dst = tu_mkdtemp(), a[4200], b[4200];
    static const char *const files[] = {"config.json", "generation_config.json", "model.safetensors"};
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof a, "%s/%s", src, files[i]);
        snprintf(b, sizeof b, "%s/%s", dst, files[i]);
        FILE *f = fopen(a, "rb");
        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *buf = malloc((size_t)n + 1);
        assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
        fclose(f);
        buf[n] = 0;
        if (i == 0) {
            cJSON *j = cJSON_Parse(buf);
            edit(j);
            free(buf);
            buf = cJSON_Print(j);
            n = (long)strlen(buf);
            cJSON_Delete(j);
        }
        tu_write_file(b, buf, (size_t)n);
        free(buf);
    }
    free(src);
    return dst;
}

static void scalar_is_head_dim(cJSON *j) {
    cJSON_ReplaceItemInObject(j, "query_pre_attn_scalar", cJSON_CreateNumber(16));
}

static void all_sliding(cJSON *j) { /* 4 layers, llama.cpp's pattern 6: all sliding */
    scalar_is_head_dim(j);
    cJSON *lt = cJSON_CreateArray();
    for (int i = 0; i < 4; i++) cJSON_AddItemToArray(lt, cJSON_CreateString("sliding_attention"));
    cJSON_ReplaceItemInObject(j, "layer_types", lt);
}

/* folder -> GGUF (F32: the same logits; Q8_0: close) for a Gemma shape llama.cpp's fixed
   rules describe; the golden shapes themselves (query_pre_attn_scalar 24, Gemma 3 layers
   alternating) are refused with the reason. */
static void gemma_gguf(const char *fam, void (*edit)(cJSON *)) {
    char *dir = edited_copy(fam, edit), gg[4200], *gold = arch_dir(fam), gp[4200];
    snprintf(gg, sizeof gg, "%s/m.gguf", dir);
    snprintf(gp, sizeof gp, "%s/golden.safetensors", gold);
    int64_t T;
    int32_t *ids = tu_load_ids(gp, "p2_input_ids", &T);
    wick_model *m = load(dir, "auto");
    wick_model_info info;
    wick_model_get_info(m, &info);
    const int V = info.n_vocab;
    float *a = malloc(sizeof(float) * (size_t)T * V), *b = malloc(sizeof(float) * (size_t)T * V);
    wick_session *s = session(m, 2);
    assert_int_equal(wick_session_eval(s, ids, (int)T, WICK_LOGITS_ALL, a), WICK_OK);
    wick_session_free(s);
    for (int q = 0; q < 2; q++) {
        if (model_gguf_save(m, gg, q ? DT_Q8_0 : DT_F32, NULL, 0)) fail_msg("%s", wick_last_error());
        wick_model *g = load(gg, "auto");
        s = session(g, 2);
        assert_int_equal(wick_session_eval(s, ids, (int)T, WICK_LOGITS_ALL, b), WICK_OK);
        const double e = tu_max_abs_diff(a, b, T * V);
        printf("%s: folder vs GGUF %s: logits max abs diff %.3g\n", fam, q ? "Q8_0" : "F32", e);
        assert_true(q ? e < 5e-2 : e == 0);
        wick_session_free(s);
        if (q == 0) { /* and back to a Hugging Face folder (config.json rebuilt with Gemma's
                         keys, the norms written as w rather than 1 + w): the same again */
            char out[4200];
            snprintf(out, sizeof out, "%s/folder", dir);
            if (wick_model_save(g, out) != WICK_OK) fail_msg("%s: %s", fam, wick_last_error());
            wick_model *fm = load(out, "auto");
            s = session(fm, 2);
            assert_int_equal(wick_session_eval(s, ids, (int)T, WICK_LOGITS_ALL, b), WICK_OK);
            const double e2 = tu_max_abs_diff(a, b, T * V);
            printf("%s: folder -> GGUF F32 -> folder: logits max abs diff %.3g\n", fam, e2);
            assert_true(e2 == 0);
            wick_session_free(s), wick_model_free(fm);
        }
        wick_model_free(g);
    }
    wick_model_free(m);
    /* the golden shape: refused with the reason, nothing written */
    m = load(gold, "auto");
    snprintf(gg, sizeof gg, "%s/refused.gguf", dir);
    assert_int_equal(model_gguf_save(m, gg, DT_F32, NULL, 0), WICK_ERR_UNSUPPORTED);
    printf("%s golden shape: %s\n", fam, wick_last_error());
    struct stat sb;
    assert_int_not_equal(stat(gg, &sb), 0);
    wick_model_free(m);
    tu_rmdir_rf(dir);
    free(dir), free(gold), free(a), free(b), free(ids);
}

static void test_gemma_gguf(void **state) {
    (void)state;
    gemma_gguf("gemma2", scalar_is_head_dim);
    gemma_gguf("gemma3", all_sliding);
}

/* Mixtral (router + 4 experts, top-2 renormalized, untied head; PEFT LoRA on q/k/v/o),
   Qwen3-MoE (8 experts of moe_intermediate_size, norm_topk_prob, q/k norms per head) and
   OLMoE (8 experts, weights not renormalized, q/k norms over the whole projection). */
static void test_mixtral(void **state) {
    (void)state;
    check_family("mixtral", true);
    /* an adapter on an expert layer's MLP is refused by name (attention ones load above) */
    char *dir = arch_dir("mixtral"), *tmp = tu_mkdtemp(), p[4200];
    wick_model *m = load(dir, "auto");
    static const char cfg[] = "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, "
                              "\"target_modules\": [\"gate_proj\"]}";
    snprintf(p, sizeof p, "%s/adapter_config.json", tmp);
    tu_write_file(p, cfg, strlen(cfg));
    float a[2 * 64] = {0}, b[96 * 2] = {0};
    st_write_tensor t[2] = {
        {.name = "base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight", .dt = DT_F32, .ndim = 2,
         .shape = {2, 64}, .data = a},
        {.name = "base_model.model.model.layers.0.mlp.gate_proj.lora_B.weight", .dt = DT_F32, .ndim = 2,
         .shape = {96, 2}, .data = b}};
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", tmp);
    assert_int_equal(st_write(p, t, 2, NULL, NULL, 0), WICK_OK);
    assert_int_equal(wick_adapter_load(m, tmp, "experts"), WICK_ERR_UNSUPPORTED);
    printf("mixtral: %s\n", wick_last_error());
    assert_non_null(strstr(wick_last_error(), "mixture of experts"));
    wick_model_info info;
    wick_model_get_info(m, &info);
    /* decode reads 2 of 4 experts: the byte count says so */
    printf("mixtral: %lld weight bytes, %lld read per decoded token\n", (long long)info.weight_bytes,
           (long long)info.decode_bytes);
    assert_true(info.decode_bytes < info.weight_bytes);
    wick_model_free(m);
    tu_rmdir_rf(tmp);
    free(tmp), free(dir);
}

static void test_qwen3_moe(void **state) {
    (void)state;
    check_family("qwen3_moe", false);
}

static void test_olmoe(void **state) {
    (void)state;
    check_family("olmoe", false);
}

/* Families not run yet: loading fails and the message names the architecture. */
/* Mixture of experts to GGUF as llama.cpp names it (llama with experts for Mixtral, qwen3moe,
   olmoe): ffn_gate_inp (the router, kept F32), ffn_{gate,up,down}_exps as 3-D tensors [cols,
   rows, experts], expert_count / expert_used_count (and expert_feed_forward_length for
   qwen3moe), OLMoE's full-width q/k norms. F32 reproduces the folder's logits at every position
   of prompt 2, and so does that GGUF written back as a folder (Mixtral's q/k rows are permuted as llama.cpp's converter does, so its attention
   sums in another order: 1e-6), Q8_0 stays close; shapes llama.cpp's rules cannot describe
   (a renormalization the architecture does not do, Mixtral with a sliding window; dense
   blocks too, which no fixture has) are refused, nothing written. */
static void with_window(cJSON *j) {
    cJSON_DeleteItemFromObject(j, "sliding_window");
    cJSON_AddNumberToObject(j, "sliding_window", 16);
}
static void renorm(cJSON *j) { cJSON_ReplaceItemInObject(j, "norm_topk_prob", cJSON_CreateTrue()); }
static void no_renorm(cJSON *j) { cJSON_ReplaceItemInObject(j, "norm_topk_prob", cJSON_CreateFalse()); }

static void moe_gguf(const char *fam, const char *arch, void (*bad)(cJSON *), const char *why) {
    char *dir = arch_dir(fam), *tmp = tu_mkdtemp(), gg[4200], gp[4200], key[96];
    snprintf(gg, sizeof gg, "%s/m.gguf", tmp);
    snprintf(gp, sizeof gp, "%s/golden.safetensors", dir);
    int64_t T;
    int32_t *ids = tu_load_ids(gp, "p2_input_ids", &T);
    wick_model *m = load(dir, "auto");
    wick_model_info info;
    wick_model_get_info(m, &info);
    const int V = info.n_vocab;
    float *a = malloc(sizeof(float) * (size_t)T * V), *b = malloc(sizeof(float) * (size_t)T * V);
    wick_session *s = session(m, 2);
    assert_int_equal(wick_session_eval(s, ids, (int)T, WICK_LOGITS_ALL, a), WICK_OK);
    wick_session_free(s);
    for (int q = 0; q < 2; q++) {
        if (model_gguf_save(m, gg, q ? DT_Q8_0 : DT_F32, NULL, 0)) fail_msg("%s", wick_last_error());
        if (q == 0) {
            gguf_file *g = NULL;
            assert_int_equal(gguf_open(gg, &g), WICK_OK);
            char *got = NULL;
            wick_status st = WICK_OK;
            assert_true(gguf_get_str(g, "general.architecture", &got, &st));
            assert_string_equal(got, arch);
            free(got);
            int64_t E = 0, used = 0;
            snprintf(key, sizeof key, "%s.expert_count", arch);
            assert_true(gguf_get_int(g, key, &E, &st) && E > 1);
            snprintf(key, sizeof key, "%s.expert_used_count", arch);
            assert_true(gguf_get_int(g, key, &used, &st) && used >= 1 && used <= E);
            const gguf_tensor *t = gguf_find_tensor(g, "blk.1.ffn_gate_exps.weight");
            assert_non_null(t);
            assert_int_equal(t->ne[2], E);
            const gguf_tensor *dn = gguf_find_tensor(g, "blk.1.ffn_down_exps.weight");
            assert_non_null(dn);
            assert_true(dn->ne[0] == t->ne[1] && dn->ne[1] == t->ne[0] && dn->ne[2] == E);
            assert_non_null(t = gguf_find_tensor(g, "blk.1.ffn_gate_inp.weight"));
            assert_int_equal(t->ne[1], E);
            assert_int_equal(t->dt, DT_F32);
            assert_null(gguf_find_tensor(g, "blk.1.ffn_gate.weight"));
            gguf_close(g);
        }
        wick_model *gm = load(gg, "auto");
        wick_model_info gi;
        wick_model_get_info(gm, &gi);
        assert_string_equal(gi.architecture, info.architecture);
        s = session(gm, 2);
        assert_int_equal(wick_session_eval(s, ids, (int)T, WICK_LOGITS_ALL, b), WICK_OK);
        const double e = tu_max_abs_diff(a, b, T * V);
        printf("%s: folder vs GGUF %s: logits max abs diff %.3g\n", fam, q ? "Q8_0" : "F32", e);
        assert_true(q ? e < 5e-2 : e <= (strcmp(arch, "llama") ? 0 : 1e-6));
        if (q == 0) { /* and back to a Hugging Face folder (the family's expert names and keys) */
            char out[4200];
            snprintf(out, sizeof out, "%s/folder", tmp);
            assert_int_equal(wick_model_save(gm, out), WICK_OK);
            wick_model *fm = load(out, "auto");
            wick_session *s2 = session(fm, 2);
            float *c2 = malloc(sizeof(float) * (size_t)T * V);
            assert_int_equal(wick_session_eval(s2, ids, (int)T, WICK_LOGITS_ALL, c2), WICK_OK);
            const double e2 = tu_max_abs_diff(a, c2, T * V);
            printf("%s: folder -> GGUF F32 -> folder: logits max abs diff %.3g\n", fam, e2);
            assert_true(e2 == 0);
            wick_session_free(s2), wick_model_free(fm), free(c2);
        }
        wick_session_free(s);
        wick_model_free(gm);
    }
    wick_model_free(m);
    free(dir), free(a), free(b), free(ids);
    /* a shape the architecture cannot hold: refused with the reason, nothing written */
    dir = edited_copy(fam, bad);
    m = load(dir, "auto");
    snprintf(gg, sizeof gg, "%s/refused.gguf", tmp);
    assert_int_equal(model_gguf_save(m, gg, DT_F32, NULL, 0), WICK_ERR_UNSUPPORTED);
    printf("%s edited: %s\n", fam, wick_last_error());
    assert_non_null(strstr(wick_last_error(), why));
    struct stat sb;
    assert_int_not_equal(stat(gg, &sb), 0);
    wick_model_free(m);
    tu_rmdir_rf(dir);
    tu_rmdir_rf(tmp);
    free(dir), free(tmp);
}

static void test_moe_gguf(void **state) {
    (void)state;
    moe_gguf("mixtral", "llama", with_window, "sliding window");
    moe_gguf("qwen3_moe", "qwen3moe", no_renorm, "norm_topk_prob is false");
    moe_gguf("olmoe", "olmoe", renorm, "norm_topk_prob is true");
}

static void test_refused(void **state) {
    (void)state;
    static const char *const fams[][2] = {{"", ""}};
    for (size_t i = 0; i < sizeof fams / sizeof fams[0] && fams[i][0][0]; i++) {
        char *dir = arch_dir(fams[i][0]);
        wick_model *m = NULL;
        wick_model_params mp = wick_model_params_default();
        assert_int_not_equal(wick_model_load(dir, &mp, &m), WICK_OK);
        assert_null(m);
        printf("%s: %s\n", fams[i][0], wick_last_error());
        assert_non_null(strstr(wick_last_error(), fams[i][1]));
        free(dir);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama32),
        cmocka_unit_test(test_qwen3),
        cmocka_unit_test(test_gemma2),
        cmocka_unit_test(test_gemma3),
        cmocka_unit_test(test_phi3),
        cmocka_unit_test(test_gemma_gguf),  cmocka_unit_test(test_phi3_gguf),
        cmocka_unit_test(test_mixtral),
        cmocka_unit_test(test_qwen3_moe),
        cmocka_unit_test(test_olmoe),
        cmocka_unit_test(test_moe_gguf),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
