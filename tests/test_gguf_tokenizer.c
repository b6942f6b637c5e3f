/* test_gguf_tokenizer.c — a model written as GGUF carries its tokenizer: loading the .gguf
 * alone gives the same ids, the same decoded text and the same chat template rendering as
 * the source folder (Qwen3 tokenizer on a seeded random model), and the standard
 * tokenizer.ggml.* keys describe the same vocabulary. */
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_carries_tokenizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
