/* test_json_num.c — JSON (and GGUF) numbers reach C integers and floats only through a range
 * check. Regression: adapter_config.json "r": 1e10 or 3.3e73 and a rank_pattern value of 1e300
 * were cast to int / int64_t (undefined behaviour, caught by clang's
 * -fsanitize=float-cast-overflow), and float fields such as rope_theta, rms_norm_eps,
 * layer_norm_eps, GGUF f64 keys and adapter.lora.alpha of 1e300 were narrowed to float (also
 * undefined; in practice inf, and the model or adapter loaded with an infinite value). Each
 * case must now fail with a message naming the file and the field. */
#include "testutil.h"

#include <float.h>
#include <unistd.h>

#include "base/json_num.h"
#include "formats/gguf.h"
#include "model/encoder.h"
#include "model/gguf_tok.h"
#include "model/model_gguf.h"

static void test_json_num_int(void **state) {
    static const struct { const char *text; int64_t lo, hi; bool ok; int64_t want; } cases[] = {
        {"7", 0, 10, true, 7},
        {"7.0", 0, 10, true, 7},
        {"-0", 0, 10, true, 0},
        {"7.5", 0, 10, false, 0},
        {"11", 0, 10, false, 0},
        {"-1", 0, 10, false, 0},
        {"1e10", 1, INT32_MAX, false, 0},
        {"3.3e73", 1, INT32_MAX, false, 0},
        {"1e300", INT64_MIN, INT64_MAX, false, 0},
        {"-1e300", INT64_MIN, INT64_MAX, false, 0},
        {"1e400", INT64_MIN, INT64_MAX, false, 0},            /* cJSON: inf */
        {"9223372036854775808", INT64_MIN, INT64_MAX, false, 0}, /* 2^63 */
        {"-9223372036854775808", INT64_MIN, INT64_MAX, true, INT64_MIN},
        {"4611686018427387904", 0, INT64_MAX, true, 4611686018427387904LL}, /* 2^62 */
        {"\"7\"", 0, 10, false, 0},
        {"null", 0, 10, false, 0},
        {"[7]", 0, 10, false, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *v = cJSON_Parse(cases[i].text);
        assert_non_null(v);
        int64_t out = -12345;
        bool ok = json_num_int(v, cases[i].lo, cases[i].hi, &out);
        if (ok != cases[i].ok) fail_msg("%s: json_num_int gave %d", cases[i].text, ok);
        if (ok) assert_true(out == cases[i].want);
        else assert_true(out == -12345);
        cJSON_Delete(v);
    }
    cJSON *v = cJSON_Parse("1e10");
    int x = 0;
    assert_int_equal(json_get_int32(v, 1, INT32_MAX, "f.json", "r", &x), WICK_ERR_FORMAT);
    assert_non_null(strstr(wick_last_error(), "f.json"));
    assert_non_null(strstr(wick_last_error(), "\"r\""));
    cJSON_Delete(v);
}

static void test_json_num_float(void **state) {
    static const struct { const char *text; bool ok; } cases[] = {
        {"1e-6", true}, {"-2.5", true}, {"3.4e38", true}, {"3.5e38", false}, {"1e300", false},
        {"-1e300", false}, {"1e400", false}, {"true", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *v = cJSON_Parse(cases[i].text);
        float f = 0;
        bool ok = json_num_float(v, -FLT_MAX, FLT_MAX, &f);
        if (ok != cases[i].ok) fail_msg("%s: json_num_float gave %d", cases[i].text, ok);
        cJSON_Delete(v);
    }
}

/* ---- adapter_config.json through wick_adapter_load ---- */

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *t = calloc(1, 1 << 16);
    size_t n = fread(t, 1, (1 << 16) - 1, f);
    fclose(f);
    t[n] = 0;
    return t;
}

/* A copy of adapter_a (weights symlinked) with `from` in its config replaced by `to`. */
static char *adapter_variant(const char *dir_a, const char *from, const char *to) {
    char *dir = tu_mkdtemp(), p[2100], q[2100];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir_a);
    snprintf(q, sizeof q, "%s/adapter_model.safetensors", dir);
    assert_int_equal(symlink(p, q), 0);
    snprintf(p, sizeof p, "%s/adapter_config.json", dir_a);
    char *cfg = read_text(p);
    char *at = strstr(cfg, from);
    assert_non_null(at);
    char *out = calloc(1, strlen(cfg) + strlen(to) + 1);
    sprintf(out, "%.*s%s%s", (int)(at - cfg), cfg, to, at + strlen(from));
    snprintf(q, sizeof q, "%s/adapter_config.json", dir);
    tu_write_file(q, out, strlen(out));
    free(out);
    free(cfg);
    return dir;
}

static void test_adapter_config_numbers(void **state) {
    TU_REQUIRE_FIXTURE(base, "tiny-qwen2");
    TU_REQUIRE_FIXTURE(lora, "tiny-qwen2-lora");
    char dir_a[1024];
    snprintf(dir_a, sizeof dir_a, "%s/adapter_a", lora);
    wick_model_params mp = wick_model_params_default();
    wick_model *m = NULL;
    assert_int_equal(wick_model_load(base, &mp, &m), WICK_OK);
    static const struct { const char *from, *to, *field; } cases[] = {
        {"\"r\": 8", "\"r\": 1e10", "\"r\""},
        {"\"r\": 8", "\"r\": 3.3e73", "\"r\""},
        {"\"r\": 8", "\"r\": 8.5", "\"r\""},
        {"\"rank_pattern\": {}", "\"rank_pattern\": {\"q_proj\": 1e300}", "rank_pattern[\"q_proj\"]"},
        {"\"rank_pattern\": {}", "\"rank_pattern\": {\"q_proj\": -3}", "rank_pattern[\"q_proj\"]"},
        {"\"lora_alpha\": 16", "\"lora_alpha\": 1e300", "lora_alpha"},
        {"\"alpha_pattern\": {}", "\"alpha_pattern\": {\"v_proj\": 1e39}", "alpha_pattern[\"v_proj\"]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = adapter_variant(dir_a, cases[i].from, cases[i].to);
        wick_status st = wick_adapter_load(m, dir, "x");
        printf("%-40s -> %s: %s\n", cases[i].to, wick_status_str(st), wick_last_error());
        if (st == WICK_OK) fail_msg("%s loaded", cases[i].to);
        assert_int_equal(st, WICK_ERR_FORMAT);
        if (!strstr(wick_last_error(), "adapter_config.json") ||
            !strstr(wick_last_error(), cases[i].field))
            fail_msg("message does not name adapter_config.json and %s", cases[i].field);
        assert_int_equal(wick_adapters_list(m, NULL, 0), 0);
        tu_rmdir_rf(dir);
        free(dir);
    }
    wick_model_free(m);
    free(base);
    free(lora);
}

/* ---- float fields of model configs ---- */

static void test_config_floats(void **state) {
    TU_REQUIRE_FIXTURE(fx, "tiny-qwen2");
    char p[1024];
    snprintf(p, sizeof p, "%s/config.json", fx);
    char *cfg = read_text(p);
    static const struct { const char *from, *to, *field; } cases[] = {
        {"\"rope_theta\": 1000000.0", "\"rope_theta\": 1e300", "rope_theta"},
        {"\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 1e300", "rms_norm_eps"},
        {"\"hidden_size\": 64", "\"hidden_size\": 1e10", "hidden_size"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *at = strstr(cfg, cases[i].from);
        assert_non_null(at);
        char *text = calloc(1, strlen(cfg) + 64);
        sprintf(text, "%.*s%s%s", (int)(at - cfg), cfg, cases[i].to, at + strlen(cases[i].from));
        char *dir = tu_mkdtemp(), q[1024];
        snprintf(p, sizeof p, "%s/model.safetensors", fx);
        snprintf(q, sizeof q, "%s/model.safetensors", dir);
        assert_int_equal(symlink(p, q), 0);
        snprintf(q, sizeof q, "%s/config.json", dir);
        tu_write_file(q, text, strlen(text));
        wick_model_params mp = wick_model_params_default();
        wick_model *m = NULL;
        wick_status st = wick_model_load(dir, &mp, &m);
        printf("%-28s -> %s: %s\n", cases[i].to, wick_status_str(st), wick_last_error());
        if (st == WICK_OK) {
            wick_model_free(m);
            fail_msg("%s loaded", cases[i].to);
        }
        if (!strstr(wick_last_error(), "config.json") || !strstr(wick_last_error(), cases[i].field))
            fail_msg("message does not name config.json and %s", cases[i].field);
        tu_rmdir_rf(dir);
        free(dir);
        free(text);
    }
    free(cfg);
    free(fx);
    /* the BERT encoder's float field */
    encoder_config ec;
    const char *bert = "{\"model_type\": \"bert\", \"vocab_size\": 8, \"hidden_size\": 4, "
                       "\"num_hidden_layers\": 1, \"num_attention_heads\": 1, "
                       "\"intermediate_size\": 8, \"layer_norm_eps\": 1e300}";
    assert_int_equal(encoder_config_parse(bert, "bert/config.json", &ec), WICK_ERR_FORMAT);
    assert_non_null(strstr(wick_last_error(), "layer_norm_eps"));
}

/* tokenizer.json ids read by `wick convert` (gguf_tok.c) */
static void test_tokenizer_json_ids(void **state) {
    char *dir = tu_mkdtemp(), p[1024];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    const char *tok = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1e300}, "
                      "\"merges\": []}, \"added_tokens\": []}";
    tu_write_file(p, tok, strlen(tok));
    gguf_tok_meta tm;
    wick_status st = gguf_tok_meta_from_folder(dir, &tm);
    printf("vocab id 1e300 -> %s: %s\n", wick_status_str(st), wick_last_error());
    assert_int_equal(st, WICK_ERR_FORMAT);
    assert_non_null(strstr(wick_last_error(), "model.vocab"));
    tok = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, "
          "\"added_tokens\": [{\"id\": -1e300, \"content\": \"<x>\"}]}";
    tu_write_file(p, tok, strlen(tok));
    st = gguf_tok_meta_from_folder(dir, &tm);
    printf("added id -1e300 -> %s: %s\n", wick_status_str(st), wick_last_error());
    assert_int_equal(st, WICK_ERR_FORMAT);
    assert_non_null(strstr(wick_last_error(), "added_tokens"));
    tu_rmdir_rf(dir);
    free(dir);
}

/* ---- GGUF f64 keys that a float cannot hold ---- */

static void test_gguf_f64_keys(void **state) {
    TU_REQUIRE_FIXTURE(fx, "tiny-qwen2");
    TU_REQUIRE_FIXTURE(lora, "tiny-qwen2-lora");
    wick_model_params mp = wick_model_params_default();
    wick_model *m = NULL;
    assert_int_equal(wick_model_load(fx, &mp, &m), WICK_OK);
    char *dir = tu_mkdtemp(), path[1024];
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    gguf_value big = {.type = GGUF_F64};
    big.f = 1e300;
    gguf_kv kv[2] = {{.key = (char *)"qwen2.rope.scaling.type", .v = gguf_v_str("linear")},
                     {.key = (char *)"qwen2.rope.scaling.factor", .v = big}};
    assert_int_equal(model_gguf_save(m, path, DT_F32, kv, 2), WICK_OK);
    wick_model *g = NULL;
    wick_status st = wick_model_load(path, &mp, &g);
    printf("rope.scaling.factor 1e300 -> %s: %s\n", wick_status_str(st), wick_last_error());
    if (st == WICK_OK) {
        wick_model_free(g);
        fail_msg("a GGUF with rope.scaling.factor = 1e300 loaded");
    }
    assert_non_null(strstr(wick_last_error(), "qwen2.rope.scaling.factor"));

    /* a GGUF LoRA whose adapter.lora.alpha is an f64 of 1e300 */
    char dir_a[1024], lpath[1024], bpath[1024];
    snprintf(dir_a, sizeof dir_a, "%s/adapter_a", lora);
    snprintf(lpath, sizeof lpath, "%s/a.gguf", dir);
    snprintf(bpath, sizeof bpath, "%s/bad.gguf", dir);
    assert_int_equal(wick_adapter_load(m, dir_a, "a"), WICK_OK);
    assert_int_equal(wick_adapter_save_gguf(m, "a", lpath), WICK_OK);
    assert_int_equal(wick_adapter_unload(m, "a"), WICK_OK);
    gguf_file *gf = NULL;
    assert_int_equal(gguf_open(lpath, &gf), WICK_OK);
    gguf_kv *kvs = calloc((size_t)gf->n_kv, sizeof *kvs);
    gguf_write_tensor *ts = calloc((size_t)gf->n_tensors, sizeof *ts);
    for (int64_t i = 0; i < gf->n_kv; i++) {
        kvs[i] = gf->kv[i];
        if (!strcmp(kvs[i].key, "adapter.lora.alpha")) kvs[i].v = big;
    }
    for (int64_t i = 0; i < gf->n_tensors; i++) {
        const gguf_tensor *t = &gf->tensors[i];
        ts[i] = (gguf_write_tensor){.name = t->name, .dt = t->dt, .n_dims = t->n_dims,
                                    .data = t->data};
        memcpy(ts[i].ne, t->ne, sizeof t->ne);
    }
    assert_int_equal(gguf_write(bpath, kvs, (int)gf->n_kv, ts, (int)gf->n_tensors), WICK_OK);
    gguf_close(gf);
    free(kvs);
    free(ts);
    st = wick_adapter_load(m, bpath, "bad");
    printf("adapter.lora.alpha 1e300 -> %s: %s\n", wick_status_str(st), wick_last_error());
    if (st == WICK_OK) fail_msg("a GGUF LoRA with adapter.lora.alpha = 1e300 loaded");
    assert_non_null(strstr(wick_last_error(), "adapter.lora.alpha"));
    wick_model_free(m);
    tu_rmdir_rf(dir);
    free(dir);
    free(fx);
    free(lora);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_num_int),
        cmocka_unit_test(test_json_num_float),
        cmocka_unit_test(test_adapter_config_numbers),
        cmocka_unit_test(test_config_floats),
        cmocka_unit_test(test_tokenizer_json_ids),
        cmocka_unit_test(test_gguf_f64_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
