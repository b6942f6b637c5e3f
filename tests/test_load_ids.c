/* test_load_ids.c — token ids that cross files are checked against the model's vocabulary at
 * load time, with a message naming the file and the field: bos/eos/pad of config.json and
 * generation_config.json, GGUF tokenizer.ggml.*_token_id keys, and the tokenizer's own ids.
 * Regression: an eos id of 1024 on a 1024-token model loaded fine and `--min-tokens` then wrote
 * logits[1024] (heap overflow); a GGUF eos of -4096 or 100000 did the same. The generator also
 * range-checks the ids it writes, so a path that forgets the load-time check cannot overflow. */
#include "testutil.h"

#include <unistd.h>

#include "model/model.h"
#include "model/model_gguf.h"

/* A temp folder holding tiny-qwen2's weights (symlinked) and the given config texts
 * (gen may be NULL: no generation_config.json; tok may be NULL: no tokenizer.json). */
static char *make_folder(const char *fixture, const char *config, const char *gen,
                         const char *tok) {
    char *dir = tu_mkdtemp(), path[1024], src[1024];
    snprintf(src, sizeof src, "%s/model.safetensors", fixture);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(symlink(src, path), 0);
    snprintf(path, sizeof path, "%s/config.json", dir);
    tu_write_file(path, config, strlen(config));
    if (gen) {
        snprintf(path, sizeof path, "%s/generation_config.json", dir);
        tu_write_file(path, gen, strlen(gen));
    }
    if (tok) {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        tu_write_file(path, tok, strlen(tok));
    }
    return dir;
}

/* The fixture's config.json with `"key": null` replaced by `"key": value`. */
static char *patched_config(const char *fixture, const char *key, const char *value) {
    char path[1024], *text;
    snprintf(path, sizeof path, "%s/config.json", fixture);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    text = calloc(1, 65536);
    size_t n = fread(text, 1, 65535, f);
    fclose(f);
    text[n] = 0;
    if (!key) return text;
    char needle[128];
    snprintf(needle, sizeof needle, "\"%s\": null", key);
    char *at = strstr(text, needle);
    assert_non_null(at);
    char *out = calloc(1, n + strlen(value) + 64);
    snprintf(out, n + strlen(value) + 64, "%.*s\"%s\": %s%s", (int)(at - text), text, key, value,
             at + strlen(needle));
    free(text);
    return out;
}

static void expect_load_fail(const char *dir, const char *file, const char *field) {
    wick_model_params mp = wick_model_params_default();
    wick_model *m = NULL;
    wick_status st = wick_model_load(dir, &mp, &m);
    printf("  -> %s: %s\n", wick_status_str(st), wick_last_error());
    if (st == WICK_OK) {
        wick_model_free(m);
        fail_msg("%s loaded although %s %s is outside the vocabulary", dir, file, field);
    }
    assert_null(m);
    if (!strstr(wick_last_error(), file) || !strstr(wick_last_error(), field))
        fail_msg("message '%s' names neither %s nor %s", wick_last_error(), file, field);
}

static void test_config_ids_out_of_vocab(void **state) {
    TU_REQUIRE_FIXTURE(fx, "tiny-qwen2");
    static const struct { const char *key, *value, *field; } cases[] = {
        {"eos_token_id", "1024", "eos_token_id"},        /* vocab_size is 1024 */
        {"eos_token_id", "[3, 1024]", "eos_token_id[1]"},
        {"eos_token_id", "100000", "eos_token_id"},
        {"bos_token_id", "1024", "bos_token_id"},
        {"pad_token_id", "4096", "pad_token_id"},
        {"eos_token_id", "-1", "eos_token_id"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *cfg = patched_config(fx, cases[i].key, cases[i].value);
        char *dir = make_folder(fx, cfg, NULL, NULL);
        printf("config.json %s = %s:", cases[i].key, cases[i].value);
        expect_load_fail(dir, "config.json", cases[i].field);
        tu_rmdir_rf(dir);
        free(dir);
        free(cfg);
    }
    /* the largest valid id still loads */
    char *cfg = patched_config(fx, "eos_token_id", "1023");
    char *dir = make_folder(fx, cfg, NULL, NULL);
    wick_model_params mp = wick_model_params_default();
    wick_model *m = NULL;
    assert_int_equal(wick_model_load(dir, &mp, &m), WICK_OK);
    wick_model_info in;
    assert_int_equal(wick_model_get_info(m, &in), WICK_OK);
    assert_int_equal(in.n_eos, 1);
    assert_int_equal(in.eos_ids[0], 1023);
    wick_model_free(m);
    tu_rmdir_rf(dir);
    free(dir);
    free(cfg);
    free(fx);
}

static void test_generation_config_ids_out_of_vocab(void **state) {
    TU_REQUIRE_FIXTURE(fx, "tiny-qwen2");
    static const struct { const char *gen, *field; } cases[] = {
        {"{\"eos_token_id\": 1024}", "eos_token_id"},
        {"{\"eos_token_id\": [1, 2, 1024]}", "eos_token_id[2]"},
        {"{\"bos_token_id\": 7, \"pad_token_id\": 99999}", "pad_token_id"},
        {"{\"eos_token_id\": 1e300}", "eos_token_id"},
    };
    char *cfg = patched_config(fx, NULL, NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = make_folder(fx, cfg, cases[i].gen, NULL);
        printf("generation_config.json %s:", cases[i].gen);
        expect_load_fail(dir, "generation_config.json", cases[i].field);
        tu_rmdir_rf(dir);
        free(dir);
    }
    free(cfg);
    free(fx);
}

/* A tokenizer whose ids go past the model's rows: an added token at id 2000 on a 1024-row
 * embedding would be looked up out of bounds, so loading fails naming the tokenizer. */
static void test_tokenizer_ids_out_of_vocab(void **state) {
    TU_REQUIRE_FIXTURE(fx, "tiny-qwen2");
    const char *tok =
        "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 2000, \"content\": \"<x>\", "
        "\"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
        "\"special\": true}], \"normalizer\": null, \"pre_tokenizer\": null, "
        "\"post_processor\": null, \"decoder\": null, \"model\": {\"type\": \"BPE\", "
        "\"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": []}}";
    char *cfg = patched_config(fx, NULL, NULL);
    char *dir = make_folder(fx, cfg, NULL, tok);
    printf("tokenizer.json with id 2000:");
    expect_load_fail(dir, "tokenizer", "2000");
    tu_rmdir_rf(dir);
    free(dir);
    free(cfg);
    free(fx);
}

/* GGUF: the fixture converted with extra tokenizer.ggml.*_token_id keys. */
static void test_gguf_ids_out_of_vocab(void **state) {
    TU_REQUIRE_FIXTURE(fx, "tiny-qwen2");
    wick_model_params mp = wick_model_params_default();
    wick_model *ref = NULL;
    assert_int_equal(wick_model_load(fx, &mp, &ref), WICK_OK);
    char *dir = tu_mkdtemp(), path[1024];
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    static const struct { const char *key; int64_t id; bool u32; } cases[] = {
        {"tokenizer.ggml.eos_token_id", -4096, false},
        {"tokenizer.ggml.eos_token_id", 100000, true},
        {"tokenizer.ggml.eos_token_id", 1024, true},
        {"tokenizer.ggml.eot_token_id", 5000, true},
        {"tokenizer.ggml.bos_token_id", -1, false},
        {"tokenizer.ggml.padding_token_id", 1 << 30, true},
        {"tokenizer.ggml.unknown_token_id", 70000, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gguf_kv kv = {.key = (char *)cases[i].key};
        kv.v = cases[i].u32 ? gguf_v_u32((uint32_t)cases[i].id) : gguf_v_i32((int32_t)cases[i].id);
        if (model_gguf_save(ref, path, DT_F32, &kv, 1)) fail_msg("%s", wick_last_error());
        printf("GGUF %s = %lld:", cases[i].key, (long long)cases[i].id);
        expect_load_fail(path, "m.gguf", cases[i].key);
    }
    /* a valid id loads and becomes the model's eos */
    gguf_kv kv = {.key = (char *)"tokenizer.ggml.eos_token_id", .v = gguf_v_u32(1023)};
    assert_int_equal(model_gguf_save(ref, path, DT_F32, &kv, 1), WICK_OK);
    wick_model *m = NULL;
    assert_int_equal(wick_model_load(path, &mp, &m), WICK_OK);
    wick_model_info in;
    assert_int_equal(wick_model_get_info(m, &in), WICK_OK);
    assert_int_equal(in.n_eos, 1);
    assert_int_equal(in.eos_ids[0], 1023);
    wick_model_free(m);
    wick_model_free(ref);
    tu_rmdir_rf(dir);
    free(dir);
    free(fx);
}

static bool count_tokens(const wick_token *t, void *user) {
    (*(int *)user)++;
    return true;
}

/* The use site: with an eos id that slipped past every loader (set directly here), min_tokens
 * must neither write outside the logits nor fail. Under ASan, the write before the fix was a
 * heap-buffer-overflow. */
static void test_generate_ignores_out_of_range_eos(void **state) {
    TU_REQUIRE_FIXTURE(fx, "tiny-qwen2");
    wick_model_params mp = wick_model_params_default();
    wick_model *m = NULL;
    assert_int_equal(wick_model_load(fx, &mp, &m), WICK_OK);
    m->cfg.n_eos = 3;
    m->cfg.eos_ids[0] = 1024;
    m->cfg.eos_ids[1] = -4096;
    m->cfg.eos_ids[2] = 100000;
    wick_session_params sp = wick_session_params_default();
    sp.n_ctx = 32;
    sp.n_threads = 1;
    wick_session *s = NULL;
    assert_int_equal(wick_session_create(m, &sp, &s), WICK_OK);
    wick_gen_params gp = wick_gen_params_default();
    gp.min_tokens = 4;
    gp.max_tokens = 4;
    gp.temperature = 0;
    const int32_t prompt[3] = {1, 2, 3};
    int n = 0;
    assert_int_equal(wick_generate(s, prompt, 3, &gp, count_tokens, &n), WICK_OK);
    assert_int_equal(n, 4);
    wick_session_free(s);
    wick_model_free(m);
    free(fx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_ids_out_of_vocab),
        cmocka_unit_test(test_generation_config_ids_out_of_vocab),
        cmocka_unit_test(test_tokenizer_ids_out_of_vocab),
        cmocka_unit_test(test_gguf_ids_out_of_vocab),
        cmocka_unit_test(test_generate_ignores_out_of_range_eos),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
