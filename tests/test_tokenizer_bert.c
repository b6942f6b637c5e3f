/* test_tokenizer_bert.c — WordPiece/BERT tokenization against fixtures/tiny-bert/golden.json
 * (ids with [CLS]/[SEP], made by HF `tokenizers`), loading both the folder's tokenizer.json and
 * the bare vocab.txt (+ tokenizer_config.json). The golden applies truncation to 128 ids
 * (127 tokens + [SEP]); wick_tokenize never truncates, so for a truncated sentence the test
 * compares the first 127 ids and checks that the golden's last id is our final [SEP]. */
#include <cjson/cJSON.h>

#include "testutil.h"

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    s[n] = 0;
    fclose(f);
    return s;
}

static void check_all(const char *load_path, cJSON *sentences) {
    wick_tokenizer *t = NULL;
    if (wick_tokenizer_load(load_path, &t) != WICK_OK) fail_msg("load %s: %s", load_path, wick_last_error());
    assert_int_equal(wick_tokenizer_vocab_size(t), 30522);
    assert_int_equal(wick_tokenizer_special(t, WICK_SPECIAL_CLS), 101);
    assert_int_equal(wick_tokenizer_special(t, WICK_SPECIAL_SEP), 102);
    assert_int_equal(wick_tokenizer_special(t, WICK_SPECIAL_PAD), 0);
    assert_int_equal(wick_tokenizer_special(t, WICK_SPECIAL_UNK), 100);
    int nfail = 0;
    for (cJSON *s = sentences->child; s; s = s->next) {
        const char *text = cJSON_GetObjectItem(s, "text")->valuestring;
        cJSON *jids = cJSON_GetObjectItem(s, "input_ids");
        bool trunc = cJSON_IsTrue(cJSON_GetObjectItem(s, "truncated"));
        int nw = cJSON_GetArraySize(jids);
        int32_t got[4096];
        int32_t n = wick_tokenize(t, text, strlen(text), true, got, 4096);
        assert_true(n > 0);
        int cmp = trunc ? nw - 1 : nw;
        bool same = trunc ? n > nw : n == nw;
        for (int i = 0; same && i < cmp; i++) same = got[i] == cJSON_GetArrayItem(jids, i)->valueint;
        if (trunc) same = same && got[n - 1] == 102 && cJSON_GetArrayItem(jids, nw - 1)->valueint == 102;
        if (!same) {
            nfail++;
            fprintf(stderr, "%s: '%s' differs (got %d ids, golden %d)\n", load_path, text, n, nw);
            for (int i = 0; i < n; i++) fprintf(stderr, "%d ", got[i]);
            fprintf(stderr, "\n");
        }
        /* without add_special: the same ids minus [CLS]/[SEP] */
        int32_t plain[4096];
        int32_t m = wick_tokenize(t, text, strlen(text), false, plain, 4096);
        assert_int_equal(m, n - 2);
        assert_memory_equal(plain, got + 1, sizeof(int32_t) * (size_t)m);
    }
    assert_int_equal(nfail, 0);
    /* [CLS]/[SEP] written in the text are matched as special tokens */
    int32_t ids[16];
    int32_t n = wick_tokenize(t, "[CLS] hi [SEP]", 14, false, ids, 16);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 101);
    assert_int_equal(ids[2], 102);
    /* decode: WordPiece decoder joins ## pieces and cleans up spaces before punctuation */
    const char *txt = "Hello, world! Tokenization works.";
    n = wick_tokenize(t, txt, strlen(txt), true, ids, 16);
    assert_true(n > 0);
    char buf[256];
    assert_int_equal(wick_detokenize(t, ids, (size_t)n, true, buf, sizeof buf, NULL), WICK_OK);
    assert_string_equal(buf, "hello, world! tokenization works.");
    wick_tokenizer_free(t);
}

static void test_bert_golden(void **st) {
    (void)st;
    TU_REQUIRE_FIXTURE(dir, "tiny-bert");
    char path[4096];
    snprintf(path, sizeof path, "%s/golden.json", dir);
    char *js = read_text(path);
    assert_non_null(js);
    cJSON *root = cJSON_Parse(js);
    cJSON *sentences = cJSON_GetObjectItem(root, "sentences");
    assert_int_equal(cJSON_GetArraySize(sentences), 8);
    check_all(dir, sentences);                        /* folder: tokenizer.json */
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    check_all(path, sentences);                       /* vocab.txt + tokenizer_config.json */
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    check_all(path, sentences);
    cJSON_Delete(root);
    free(js);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_bert_golden)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
