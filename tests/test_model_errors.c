/* test_model_errors.c — every bad model folder or bad call gives a specific error, a non-zero
 * status and no crash (run under ASan/UBSan in CI): config.json problems, missing and
 * mis-shaped tensors, unsupported dtypes, context overflow, out-of-range ids. The folders are
 * built in a temp dir from a tiny synthetic model written with st_write. */
#include "testutil.h"

#include <unistd.h>

#include "formats/safetensors.h"
#include "model/config.h"

/* A valid tiny LLaMA: d=8, 2 heads (hd 4), 1 kv head, ff 12, vocab 16, 1 layer. */
static const char *k_config =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 12,"
    " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1,"
    " \"vocab_size\": 16, \"max_position_embeddings\": 32, \"rms_norm_eps\": 1e-5,"
    " \"rope_theta\": 10000.0, \"tie_word_embeddings\": false, \"hidden_act\": \"silu\"}";

typedef struct spec {
    const char *name;
    int64_t r, c; /* c = 0: vector */
} spec;

static const spec k_tensors[] = {
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
#define N_TENSORS (int)(sizeof k_tensors / sizeof k_tensors[0])

/* Writes config + weights into a fresh dir; `skip` drops a tensor, `reshape` gives one a
 * wrong first dimension, `dt` sets the dtype of every tensor. */
static char *make_model(const char *config, const char *skip, const char *reshape, dtype dt) {
    char *dir = tu_mkdtemp();
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    tu_write_file(path, config, strlen(config));
    st_write_tensor t[N_TENSORS];
    static float data[16 * 12 * 2];
    for (size_t i = 0; i < sizeof data / sizeof data[0]; i++) data[i] = 0.01f * (float)(i % 7);
    int n = 0;
    for (int i = 0; i < N_TENSORS; i++) {
        if (skip && strcmp(skip, k_tensors[i].name) == 0) continue;
        t[n].name = k_tensors[i].name;
        t[n].dt = dt;
        t[n].ndim = k_tensors[i].c ? 2 : 1;
        t[n].shape[0] = k_tensors[i].r + (reshape && !strcmp(reshape, k_tensors[i].name));
        t[n].shape[1] = k_tensors[i].c;
        t[n].data = data;
        n++;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (st_write(path, t, n, NULL, NULL, 0) != WICK_OK) fail_msg("%s", wick_last_error());
    return dir;
}

static wick_status try_load(const char *dir, wick_model **m) {
    wick_model_params mp = wick_model_params_default();
    *m = NULL;
    return wick_model_load(dir, &mp, m);
}

static void expect_fail(const char *dir, wick_status want, const char *needle) {
    wick_model *m;
    wick_status st = try_load(dir, &m);
    printf("  -> %s: %s\n", wick_status_str(st), wick_last_error());
    assert_int_equal(st, want);
    assert_null(m);
    if (!strstr(wick_last_error(), needle))
        fail_msg("message '%s' does not mention '%s'", wick_last_error(), needle);
}

static void test_valid_model_loads(void **state) {
    char *dir = make_model(k_config, NULL, NULL, DT_F32);
    wick_model *m;
    assert_int_equal(try_load(dir, &m), WICK_OK);
    wick_model_info in;
    assert_int_equal(wick_model_get_info(m, &in), WICK_OK);
    assert_int_equal(in.n_layer, 1);
    assert_int_equal(in.head_dim, 4);
    assert_int_equal(in.n_params, 16 * 8 * 2 + 8 * 8 * 2 + 4 * 8 * 2 + 12 * 8 * 3 + 8 * 3);
    wick_model_free(m);
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_missing_tensor(void **state) {
    char *dir = make_model(k_config, "model.layers.0.mlp.up_proj.weight", NULL, DT_F32);
    expect_fail(dir, WICK_ERR_SHAPE, "model.layers.0.mlp.up_proj.weight");
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_missing_lm_head_untied(void **state) {
    char *dir = make_model(k_config, "lm_head.weight", NULL, DT_F32);
    expect_fail(dir, WICK_ERR_SHAPE, "lm_head.weight");
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_wrong_shape(void **state) {
    char *dir = make_model(k_config, NULL, "model.layers.0.self_attn.k_proj.weight", DT_F32);
    expect_fail(dir, WICK_ERR_SHAPE, "[5, 8], expected [4, 8]");
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_wrong_norm_shape(void **state) {
    char *dir = make_model(k_config, NULL, "model.norm.weight", DT_F32);
    expect_fail(dir, WICK_ERR_SHAPE, "model.norm.weight has shape [9], expected [8]");
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_unsupported_dtype(void **state) {
    char *dir = make_model(k_config, NULL, NULL, DT_I32);
    expect_fail(dir, WICK_ERR_UNSUPPORTED, "I32");
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_config_missing_field(void **state) {
    const char *fields[] = {"hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads", "vocab_size", "max_position_embeddings",
                            "rms_norm_eps", "architectures"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        /* drop `"field": value,` from the config text */
        char cfg[1024], key[64];
        snprintf(key, sizeof key, "\"%s\"", fields[i]);
        const char *at = strstr(k_config, key);
        const char *end = strchr(strchr(at, ':'), ',');
        if (fields[i][0] == 'a') end = strchr(at, ']') + 1;
        snprintf(cfg, sizeof cfg, "%.*s%s", (int)(at - k_config), k_config,
                 *end == ',' ? end + 1 : end + 1);
        char *dir = make_model(cfg, NULL, NULL, DT_F32);
        printf("without %s:", fields[i]);
        expect_fail(dir, WICK_ERR_FORMAT, fields[i]);
        tu_rmdir_rf(dir);
        free(dir);
    }
}

static void test_config_unsupported_arch(void **state) {
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "%s", k_config);
    char *p = strstr(cfg, "LlamaForCausalLM");
    memcpy(p, "GPTJForCausalLM\"", 16);
    memmove(p + 15, p + 16, strlen(p + 16) + 1);
    char *dir = make_model(cfg, NULL, NULL, DT_F32);
    expect_fail(dir, WICK_ERR_UNSUPPORTED, "GPTJForCausalLM");
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_config_bad_json_and_types(void **state) {
    const char *bad[] = {"{\"architectures\": [\"LlamaForCausalLM\"], ", "[1, 2]", "",
                         "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": \"8\"}",
                         "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8.5}"};
    const char *want[] = {"not valid JSON", "object", "not valid JSON", "hidden_size",
                          "hidden_size"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *dir = make_model(bad[i], NULL, NULL, DT_F32);
        expect_fail(dir, WICK_ERR_FORMAT, want[i]);
        tu_rmdir_rf(dir);
        free(dir);
    }
}

static void test_config_rope_variants(void **state) {
    model_config c;
    /* transformers 5 layout with llama3 scaling */
    const char *t5 =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 12,"
        " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 16,"
        " \"max_position_embeddings\": 32, \"rms_norm_eps\": 1e-5, \"eos_token_id\": [1, 2, 3],"
        " \"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, \"factor\": 32.0,"
        " \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
        " \"original_max_position_embeddings\": 8192}}";
    assert_int_equal(config_parse(t5, "t5", &c), WICK_OK);
    assert_int_equal(c.rope, ROPE_LLAMA3);
    assert_true(c.rope_theta == 500000.0f);
    assert_int_equal(c.n_eos, 3);
    assert_int_equal(c.n_kv_head, 2);
    /* transformers 4 layout with linear scaling */
    const char *t4 =
        "{\"architectures\": [\"MistralForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 12,"
        " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 16,"
        " \"max_position_embeddings\": 32, \"rms_norm_eps\": 1e-5, \"rope_theta\": 1e6,"
        " \"sliding_window\": 4, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}";
    assert_int_equal(config_parse(t4, "t4", &c), WICK_OK);
    assert_int_equal(c.rope, ROPE_LINEAR);
    assert_true(c.rope_factor == 2.0f);
    assert_int_equal(c.sliding_window, 4);
    const char *yarn =
        "{\"architectures\": [\"Qwen2ForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 12,"
        " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 16,"
        " \"max_position_embeddings\": 32, \"rms_norm_eps\": 1e-5,"
        " \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0}}";
    assert_int_equal(config_parse(yarn, "yarn", &c), WICK_ERR_UNSUPPORTED);
    assert_non_null(strstr(wick_last_error(), "yarn"));
}

static void test_not_a_folder(void **state) {
    wick_model *m;
    assert_int_equal(try_load("/nonexistent/model", &m), WICK_ERR_IO);
    assert_non_null(strstr(wick_last_error(), "/nonexistent/model"));
    char *dir = tu_mkdtemp(); /* empty folder: no config.json */
    expect_fail(dir, WICK_ERR_IO, "config.json");
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_no_weights(void **state) {
    char *dir = tu_mkdtemp();
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    tu_write_file(path, k_config, strlen(k_config));
    expect_fail(dir, WICK_ERR_IO, "model.safetensors");
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_truncated_weights(void **state) {
    char *dir = make_model(k_config, NULL, NULL, DT_F32);
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(truncate(path, 200), 0);
    wick_model *m;
    assert_int_equal(try_load(dir, &m), WICK_ERR_FORMAT);
    assert_non_null(strstr(wick_last_error(), "model.safetensors"));
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_context_overflow_and_bad_ids(void **state) {
    char *dir = make_model(k_config, NULL, NULL, DT_F32);
    wick_model *m;
    assert_int_equal(try_load(dir, &m), WICK_OK);
    wick_session_params sp = wick_session_params_default();
    sp.n_ctx = 8;
    sp.n_threads = 2;
    wick_session *s;
    assert_int_equal(wick_session_create(m, &sp, &s), WICK_OK);
    int32_t ids[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float logits[16];
    assert_int_equal(wick_session_eval(s, ids, 9, WICK_LOGITS_LAST, logits), WICK_ERR_CONTEXT_FULL);
    assert_non_null(strstr(wick_last_error(), "n_ctx 8"));
    assert_int_equal(wick_session_pos(s), 0);
    assert_int_equal(wick_session_eval(s, ids, 6, WICK_LOGITS_LAST, logits), WICK_OK);
    assert_int_equal(wick_session_eval(s, ids, 3, WICK_LOGITS_LAST, logits), WICK_ERR_CONTEXT_FULL);
    assert_int_equal(wick_session_pos(s), 6);
    assert_int_equal(wick_session_eval(s, ids, 2, WICK_LOGITS_LAST, logits), WICK_OK);
    assert_int_equal(wick_session_pos(s), 8);
    int32_t one = 1;
    assert_int_equal(wick_session_eval(s, &one, 1, WICK_LOGITS_LAST, logits), WICK_ERR_CONTEXT_FULL);
    /* truncate and continue */
    assert_int_equal(wick_session_truncate(s, 3), WICK_OK);
    assert_int_equal(wick_session_eval(s, &one, 1, WICK_LOGITS_LAST, logits), WICK_OK);
    assert_int_equal(wick_session_truncate(s, 9), WICK_ERR_INVALID_ARG);
    /* ids outside the vocabulary */
    int32_t bad[2] = {3, 16};
    assert_int_equal(wick_session_eval(s, bad, 2, WICK_LOGITS_LAST, logits), WICK_ERR_INVALID_ARG);
    assert_non_null(strstr(wick_last_error(), "16"));
    bad[1] = -1;
    assert_int_equal(wick_session_eval(s, bad, 2, WICK_LOGITS_LAST, logits), WICK_ERR_INVALID_ARG);
    assert_int_equal(wick_session_eval(s, bad, 0, WICK_LOGITS_LAST, logits), WICK_ERR_INVALID_ARG);
    assert_int_equal(wick_session_eval(s, ids, 1, WICK_LOGITS_LAST, NULL), WICK_ERR_INVALID_ARG);
    assert_int_equal(wick_session_eval(NULL, ids, 1, WICK_LOGITS_LAST, logits), WICK_ERR_INVALID_ARG);
    wick_session_free(s);
    wick_model_free(m);
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_status_strings(void **state) {
    for (int i = 0; i < WICK_STATUS_COUNT_; i++) assert_non_null(wick_status_str((wick_status)i));
    assert_string_equal(wick_status_str(WICK_OK), "ok");
    assert_string_equal(wick_status_str((wick_status)999), "unknown status");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_model_loads),
        cmocka_unit_test(test_missing_tensor),
        cmocka_unit_test(test_missing_lm_head_untied),
        cmocka_unit_test(test_wrong_shape),
        cmocka_unit_test(test_wrong_norm_shape),
        cmocka_unit_test(test_unsupported_dtype),
        cmocka_unit_test(test_config_missing_field),
        cmocka_unit_test(test_config_unsupported_arch),
        cmocka_unit_test(test_config_bad_json_and_types),
        cmocka_unit_test(test_config_rope_variants),
        cmocka_unit_test(test_not_a_folder),
        cmocka_unit_test(test_no_weights),
        cmocka_unit_test(test_truncated_weights),
        cmocka_unit_test(test_context_overflow_and_bad_ids),
        cmocka_unit_test(test_status_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
