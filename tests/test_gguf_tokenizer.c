/* test_gguf_tokenizer.c — a model written as GGUF carries its tokenizer: loading the .gguf
 * alone gives the same ids, the same decoded text and the same chat template rendering as
 * the source folder (Qwen3 tokenizer on a seeded random model), and the standard
 * tokenizer.ggml.* keys describe the same vocabulary. Token ids of a hostile tokenizer.json are
 * refused by field before any conversion to an integer. */
#include "testutil.h"

#include "model/gguf_tok.h"
#include "model/model_gguf.h"
#include "model/random.h"

static const char *const k_texts[] = {
    "Hello world", "  leading spaces and\ttabs\n\n", "<|im_start|>user\nhi<|im_end|>",
    "数字 12345 and émojis 😀👍🏽", "def f(x):\n    return x**2  # comment",
};

static void test_gguf_carries_tokenizer(void **state) {
    TU_REQUIRE_FIXTURE(tokdir, "tokenizers/qwen3");
    char *dir = tu_mkdtemp();
    assert_int_equal(random_model_write("tiny", dir, 3, DT_F32, tokdir), WICK_OK);
    wick_model *src = NULL, *gm = NULL;
    assert_int_equal(wick_model_load(dir, NULL, &src), WICK_OK);
    gguf_tok_meta tm;
    assert_int_equal(gguf_tok_meta_from_folder(dir, &tm), WICK_OK);
    assert_true(tm.n >= 8);
    char path[600];
    snprintf(path, sizeof path, "%s/model-q8_0.gguf", dir);
    assert_int_equal(model_gguf_save(src, path, DT_Q8_0, tm.kv, tm.n), WICK_OK);
    gguf_tok_meta_free(&tm);
    if (wick_model_load(path, NULL, &gm) != WICK_OK) fail_msg("%s", wick_last_error());
    const wick_tokenizer *a = wick_model_tokenizer(src), *b = wick_model_tokenizer(gm);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(wick_tokenizer_vocab_size(a), wick_tokenizer_vocab_size(b));
    for (size_t i = 0; i < sizeof k_texts / sizeof k_texts[0]; i++) {
        int32_t ia[256], ib[256];
        int32_t na = wick_tokenize(a, k_texts[i], strlen(k_texts[i]), true, ia, 256);
        int32_t nb = wick_tokenize(b, k_texts[i], strlen(k_texts[i]), true, ib, 256);
        assert_true(na > 0);
        assert_int_equal(na, nb);
        assert_memory_equal(ia, ib, sizeof(int32_t) * (size_t)na);
    }
    wick_chat_message msgs[] = {{"system", "Be brief."}, {"user", "Hi!"}};
    char *ra = NULL, *rb = NULL;
    assert_int_equal(wick_chat_render(a, msgs, 2, true, NULL, &ra), WICK_OK);
    assert_int_equal(wick_chat_render(b, msgs, 2, true, NULL, &rb), WICK_OK);
    assert_string_equal(ra, rb);
    wick_free(ra);
    wick_free(rb);
    /* the llama.cpp keys: tokens match the vocabulary, special tokens are "control" (3) */
    gguf_file *g = NULL;
    assert_int_equal(gguf_open(path, &g), WICK_OK);
    const gguf_value *toks = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_STRING, NULL);
    const gguf_value *types = gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_I32, NULL);
    assert_non_null(toks);
    assert_non_null(types);
    assert_int_equal(toks->arr.n, (uint64_t)wick_tokenizer_vocab_size(a));
    int32_t im_start = wick_token_id(a, "<|im_start|>");
    assert_true(im_start > 0);
    assert_int_equal(types->arr.items[im_start].i, 3);
    assert_int_equal(toks->arr.items[im_start].str.len, strlen("<|im_start|>"));
    assert_memory_equal(toks->arr.items[im_start].str.s, "<|im_start|>", 12);
    gguf_close(g);
    wick_model_free(gm);
    wick_model_free(src);
    tu_rmdir_rf(dir);
    free(dir);
    free(tokdir);
}

/* gguf_tok_meta_from_folder (used by wick convert) converted vocab and added-token ids from
 * double to int64 unchecked: 1e300 or 1e19 is undefined behaviour (it reported "vocabulary
 * size -9223372036854775807"); fractions and negative ids were dropped silently. */
static void test_gguf_tok_meta_bad_ids(void **state) {
    (void)state;
    static const char *cases[][2] = {
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1e300},\"merges\":[]}}",
         "model.vocab[\"a\"]: expected an integer id in [0, 1026)"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
         "\"added_tokens\":[{\"id\":1e19,\"content\":\"x\"}]}",
         "added_tokens[0].id: expected an integer id in [0, 1028)"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":-1},\"merges\":[]}}",
         "model.vocab[\"b\"]: expected an integer id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
         "\"added_tokens\":[{\"id\":0.5,\"content\":\"x\"}]}",
         "added_tokens[0].id: expected an integer id"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":100000000},\"merges\":[]}}",
         "model.vocab[\"a\"]: expected an integer id in [0, 1026)"},
    };
    char *dir = tu_mkdtemp();
    char path[600];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tu_write_file(path, cases[i][0], strlen(cases[i][0]));
        gguf_tok_meta tm;
        assert_int_equal(gguf_tok_meta_from_folder(dir, &tm), WICK_ERR_FORMAT);
        if (!strstr(wick_last_error(), cases[i][1]) || !strstr(wick_last_error(), "tokenizer.json"))
            fail_msg("case %zu: message '%s' lacks '%s'", i, wick_last_error(), cases[i][1]);
    }
    /* an added token's id that is not an array entry is never converted either */
    const char *cfg = "{\"bos_token\":\"x\"}";
    const char *obj = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"added_tokens\":{\"k\":{\"id\":1e300,\"content\":\"x\"}}}";
    char cpath[600];
    snprintf(cpath, sizeof cpath, "%s/tokenizer_config.json", dir);
    tu_write_file(cpath, cfg, strlen(cfg));
    tu_write_file(path, obj, strlen(obj));
    gguf_tok_meta tm;
    assert_int_equal(gguf_tok_meta_from_folder(dir, &tm), WICK_OK);
    for (int k = 0; k < tm.n; k++) assert_string_not_equal(tm.kv[k].key, "tokenizer.ggml.bos_token_id");
    gguf_tok_meta_free(&tm);
    tu_rmdir_rf(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_carries_tokenizer),
        cmocka_unit_test(test_gguf_tok_meta_bad_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
