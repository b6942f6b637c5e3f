/* test_tokenizer_train.c — wick_tokenizer_train_bpe against Hugging Face tokenizers:
 * tests/data/bpe_small.json is what tokenizers 0.23.2 trained on tests/data/bpe_corpus.txt
 * with vocab 700 (tests/golden/tokenizer_train.py: KJV verses, Greek, Japanese, Cyrillic,
 * Arabic, code, tabs, CRLF lines, decomposed accents for NFC). wick's file must hold the same
 * vocabulary (string -> id) and the same merges in the same order, load in wick, and encode
 * every line of the corpus to the ids HF's trained tokenizer gave (bpe_small_ids.json).
 * Also: a vocabulary smaller than the alphabet, a missing file and invalid UTF-8 are errors
 * naming what is wrong, and a failed run leaves no output file. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <unistd.h>

static char *src_path(const char *rel) {
    char *p = malloc(strlen(WICK_SOURCE_DIR) + strlen(rel) + 2);
    sprintf(p, "%s/%s", WICK_SOURCE_DIR, rel);
    return p;
}

/* The whole file, NUL-terminated (malloc'd). */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static cJSON *read_json(const char *path) {
    char *buf = slurp(path);
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    if (!j) fail_msg("%s: not JSON", path);
    return j;
}

static void test_matches_hf(void **state) {
    (void)state;
    char *corpus = src_path("tests/data/bpe_corpus.txt");
    char *gold = src_path("tests/data/bpe_small.json");
    char *gids = src_path("tests/data/bpe_small_ids.json");
    char *dir = tu_mkdtemp();
    char out[4096];
    snprintf(out, sizeof out, "%s/tokenizer.json", dir);
    wick_bpe_train_params p = wick_bpe_train_params_default();
    p.vocab_size = 700;
    wick_bpe_train_stats stats;
    const char *files[] = {corpus};
    assert_int_equal(wick_tokenizer_train_bpe(files, 1, &p, out, &stats), WICK_OK);
    print_message("  %lld bytes, %lld distinct words, vocab %d, %d merges\n",
                  (long long)stats.bytes, (long long)stats.words, stats.vocab_size, stats.merges);

    cJSON *mine = read_json(out), *ref = read_json(gold);
    const cJSON *mv = cJSON_GetObjectItem(cJSON_GetObjectItem(mine, "model"), "vocab");
    const cJSON *rv = cJSON_GetObjectItem(cJSON_GetObjectItem(ref, "model"), "vocab");
    assert_int_equal(cJSON_GetArraySize(mv), cJSON_GetArraySize(rv));
    const cJSON *e;
    cJSON_ArrayForEach(e, rv) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(mv, e->string);
        if (!m || m->valueint != e->valueint)
            fail_msg("vocab entry \"%s\": HF id %d, wick %d", e->string, e->valueint,
                     m ? m->valueint : -1);
    }
    const cJSON *mm = cJSON_GetObjectItem(cJSON_GetObjectItem(mine, "model"), "merges");
    const cJSON *rm = cJSON_GetObjectItem(cJSON_GetObjectItem(ref, "model"), "merges");
    assert_int_equal(cJSON_GetArraySize(mm), cJSON_GetArraySize(rm));
    for (int i = 0; i < cJSON_GetArraySize(rm); i++) {
        const cJSON *a = cJSON_GetArrayItem(rm, i), *b = cJSON_GetArrayItem(mm, i);
        const char *a0 = cJSON_GetArrayItem(a, 0)->valuestring;
        const char *a1 = cJSON_GetArrayItem(a, 1)->valuestring;
        const char *b0 = cJSON_GetArrayItem(b, 0)->valuestring;
        const char *b1 = cJSON_GetArrayItem(b, 1)->valuestring;
        if (strcmp(a0, b0) || strcmp(a1, b1))
            fail_msg("merge %d: HF (%s, %s), wick (%s, %s)", i, a0, a1, b0, b1);
    }
    /* the component JSON equals HF's, so HF loads it with the same behaviour */
    const char *keys[] = {"added_tokens", "normalizer", "pre_tokenizer", "decoder"};
    for (int k = 0; k < 4; k++)
        if (!cJSON_Compare(cJSON_GetObjectItem(mine, keys[k]), cJSON_GetObjectItem(ref, keys[k]),
                           true))
            fail_msg("%s differs from HF's", keys[k]);
    cJSON_Delete(mine);
    cJSON_Delete(ref);

    /* encode every line as HF's trained tokenizer did */
    wick_tokenizer *tok = NULL;
    assert_int_equal(wick_tokenizer_load(out, &tok), WICK_OK);
    cJSON *ids = read_json(gids);
    char *text = slurp(corpus);
    int line = 0, checked = 0;
    int32_t buf[4096];
    for (char *s = text;; line++) {
        char *nl = strchr(s, '\n');
        if (nl) *nl = 0;
        const cJSON *want = cJSON_GetArrayItem(ids, line);
        assert_non_null(want);
        const int32_t got = wick_tokenize(tok, s, strlen(s), false, buf, 4096);
        assert_true(got >= 0 && got <= 4096);
        if (got != cJSON_GetArraySize(want)) fail_msg("line %d: %d ids, HF %d", line, got,
                                                      cJSON_GetArraySize(want));
        for (int i = 0; i < got; i++)
            if (buf[i] != cJSON_GetArrayItem(want, i)->valueint)
                fail_msg("line %d id %d: %d, HF %d", line, i, buf[i],
                         cJSON_GetArrayItem(want, i)->valueint);
        checked++;
        if (!nl) break;
        s = nl + 1;
    }
    assert_int_equal(checked, cJSON_GetArraySize(ids));
    print_message("  %d lines encode to HF's ids\n", checked);
    free(text);
    cJSON_Delete(ids);
    wick_tokenizer_free(tok);
    tu_rmdir_rf(dir);
    free(dir);
    free(corpus);
    free(gold);
    free(gids);
}

static void test_errors(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    char out[4096], bad[4096];
    snprintf(out, sizeof out, "%s/tok.json", dir);
    snprintf(bad, sizeof bad, "%s/bad.txt", dir);
    wick_bpe_train_params p = wick_bpe_train_params_default();
    char *corpus = src_path("tests/data/bpe_corpus.txt");
    const char *files[] = {corpus};
    p.vocab_size = 100;   /* below 3 specials + 256 bytes */
    assert_int_equal(wick_tokenizer_train_bpe(files, 1, &p, out, NULL), WICK_ERR_INVALID_ARG);
    assert_non_null(strstr(wick_last_error(), "256"));
    p.vocab_size = 400;
    const char *missing[] = {"/nonexistent/corpus.txt"};
    assert_int_not_equal(wick_tokenizer_train_bpe(missing, 1, &p, out, NULL), WICK_OK);
    assert_non_null(strstr(wick_last_error(), "/nonexistent/corpus.txt"));
    FILE *f = fopen(bad, "wb");
    fputs("fine line\nbad \xff\xfe line\n", f);
    fclose(f);
    const char *bf[] = {bad};
    assert_int_equal(wick_tokenizer_train_bpe(bf, 1, &p, out, NULL), WICK_ERR_FORMAT);
    assert_non_null(strstr(wick_last_error(), "line 2"));
    assert_int_not_equal(access(out, F_OK), 0);   /* nothing written */
    const char *dup[] = {"<x>", "<x>"};
    p.special = dup;
    p.n_special = 2;
    assert_int_equal(wick_tokenizer_train_bpe(files, 1, &p, out, NULL), WICK_ERR_INVALID_ARG);
    tu_rmdir_rf(dir);
    free(dir);
    free(corpus);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_hf),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
