/* test_tokenizer.c — golden tests of the byte-level BPE tokenizers (Qwen3, Llama 3) against
 * Hugging Face `tokenizers` outputs in fixtures/tokenizers/<name>/golden_encode.json: ids of
 * encode(add_special_tokens=False), decode with and without skip_special, and the streaming
 * detokenizer fed one id at a time. */
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

static unsigned char *unhex(const char *h, size_t *n) {
    size_t l = strlen(h) / 2;
    unsigned char *b = malloc(l + 1);
    for (size_t i = 0; i < l; i++) sscanf(h + 2 * i, "%2hhx", &b[i]);
    *n = l;
    return b;
}

static void stream_check(const wick_tokenizer *t, const int32_t *ids, int n, bool skip,
                         const char *want) {
    wick_detok *d = NULL;
    assert_int_equal(wick_detok_create(t, skip, &d), WICK_OK);
    char *acc = calloc(1, strlen(want) * 2 + 64);
    size_t al = 0;
    for (int i = 0; i < n; i++) {
        const char *s;
        size_t l;
        assert_int_equal(wick_detok_push(d, ids[i], &s, &l), WICK_OK);
        memcpy(acc + al, s, l);
        al += l;
    }
    const char *s;
    size_t l;
    assert_int_equal(wick_detok_flush(d, &s, &l), WICK_OK);
    memcpy(acc + al, s, l);
    al += l;
    acc[al] = 0;
    assert_string_equal(acc, want);
    free(acc);
    wick_detok_free(d);
}

static void run_golden(const char *name) {
    char sub[64];
    snprintf(sub, sizeof sub, "tokenizers/%s", name);
    TU_REQUIRE_FIXTURE(dir, sub);
    wick_tokenizer *t = NULL;
    if (wick_tokenizer_load(dir, &t) != WICK_OK) fail_msg("load %s: %s", dir, wick_last_error());
    char *gp = malloc(strlen(dir) + 32);
    sprintf(gp, "%s/golden_encode.json", dir);
    char *js = read_text(gp);
    assert_non_null(js);
    cJSON *root = cJSON_Parse(js);
    assert_non_null(root);
    assert_int_equal(wick_tokenizer_vocab_size(t),
                     cJSON_GetObjectItem(root, "vocab_size_with_added")->valueint);
    cJSON *cases = cJSON_GetObjectItem(root, "cases");
    int nfail = 0, ncase = 0;
    for (cJSON *c = cases->child; c; c = c->next, ncase++) {
        const char *cname = cJSON_GetObjectItem(c, "name")->valuestring;
        size_t tl;
        unsigned char *text = unhex(cJSON_GetObjectItem(c, "text_utf8_hex")->valuestring, &tl);
        cJSON *jids = cJSON_GetObjectItem(c, "ids");
        int nw = cJSON_GetArraySize(jids);
        int32_t *want = malloc(sizeof(int32_t) * (nw + 1));
        for (int i = 0; i < nw; i++) want[i] = cJSON_GetArrayItem(jids, i)->valueint;
        int32_t cap = (int32_t)tl + 16;
        int32_t *got = malloc(sizeof(int32_t) * cap);
        int32_t n = wick_tokenize(t, (const char *)text, tl, false, got, cap);
        bool same = n == nw && (nw == 0 || memcmp(got, want, sizeof(int32_t) * nw) == 0);
        if (!same) {
            nfail++;
            fprintf(stderr, "%s/%s: ids differ (got %d, want %d)\n", name, cname, n, nw);
            for (int i = 0; i < n && i < 40; i++) fprintf(stderr, "%d%s", got[i], i + 1 < n ? "," : "\n");
            for (int i = 0; i < nw && i < 40; i++) fprintf(stderr, "%d%s", want[i], i + 1 < nw ? "," : "\n");
        }
        /* decode the golden ids both ways */
        for (int skip = 0; skip < 2; skip++) {
            const char *wd = cJSON_GetObjectItem(c, skip ? "decoded_skip_special" : "decoded")->valuestring;
            size_t cap2 = strlen(wd) * 2 + 64, ol = 0;
            char *buf = malloc(cap2);
            assert_int_equal(wick_detokenize(t, want, nw, skip, buf, cap2, &ol), WICK_OK);
            if (strcmp(buf, wd) != 0) {
                nfail++;
                fprintf(stderr, "%s/%s: decode(skip=%d) differs:\n got  '%s'\n want '%s'\n", name, cname, skip, buf, wd);
            }
            stream_check(t, want, nw, skip, wd);
            free(buf);
        }
        free(text);
        free(want);
        free(got);
    }
    fprintf(stderr, "%s: %d cases, %d mismatches\n", name, ncase, nfail);
    assert_int_equal(nfail, 0);
    cJSON_Delete(root);
    free(js);
    free(gp);
    free(dir);
    wick_tokenizer_free(t);
}

static void test_qwen3_golden(void **st) { (void)st; run_golden("qwen3"); }
static void test_llama3_golden(void **st) { (void)st; run_golden("llama3"); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen3_golden),
        cmocka_unit_test(test_llama3_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
