/* test_tokenizer_props.c — property and failure-path tests of the tokenizer:
 *  - byte-level BPE round trip: decode(encode(x)) == x for random valid UTF-8 (Llama 3: no
 *    normalizer), and == lossy(x) for random bytes, where lossy() replaces each maximal invalid
 *    UTF-8 subpart with U+FFFD (what HF's String::from_utf8_lossy does);
 *  - streaming detokenizer == batch detokenize for random id sequences (every tokenizer kind);
 *  - out-of-range ids fail with WICK_ERR_INVALID_ARG, small buffers report the needed size;
 *  - a SentencePiece-style BPE (Prepend/Replace normalizer, byte_fallback, Metaspace decoder
 *    chain) and a Metaspace pre-tokenizer round trip;
 *  - malformed tokenizer.json files fail to load with messages naming the problem. */
#include "testutil.h"

static uint64_t rng = 0x1234567;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static size_t enc_cp(uint32_t c, char *o) {
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | c >> 6); o[1] = (char)(0x80 | (c & 63)); return 2; }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | c >> 12); o[1] = (char)(0x80 | ((c >> 6) & 63)); o[2] = (char)(0x80 | (c & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | c >> 18); o[1] = (char)(0x80 | ((c >> 12) & 63));
    o[2] = (char)(0x80 | ((c >> 6) & 63)); o[3] = (char)(0x80 | (c & 63));
    return 4;
}

/* Independent from_utf8_lossy: decode greedily with explicit range tables. */
static size_t lossy(const unsigned char *s, size_t n, char *o) {
    size_t i = 0, w = 0;
    while (i < n) {
        unsigned c = s[i];
        int need = c < 0x80 ? 0 : (c >= 0xC2 && c <= 0xDF) ? 1 : (c >= 0xE0 && c <= 0xEF) ? 2
                 : (c >= 0xF0 && c <= 0xF4) ? 3 : -1;
        if (need == 0) { o[w++] = (char)c; i++; continue; }
        size_t k = 1;
        if (need > 0) {
            for (; k <= (size_t)need && i + k < n; k++) {
                unsigned b = s[i + k];
                unsigned lo = 0x80, hi = 0xBF;
                if (k == 1 && c == 0xE0) lo = 0xA0;
                if (k == 1 && c == 0xED) hi = 0x9F;
                if (k == 1 && c == 0xF0) lo = 0x90;
                if (k == 1 && c == 0xF4) hi = 0x8F;
                if (b < lo || b > hi) break;
            }
            if (k == (size_t)need + 1) { memcpy(o + w, s + i, k); w += k; i += k; continue; }
        }
        memcpy(o + w, "\xEF\xBF\xBD", 3);
        w += 3;
        i += k;
    }
    o[w] = 0;
    return w;
}

static wick_tokenizer *load_fixture(const char *sub) {
    char *p = tu_fixture_path(sub);
    wick_tokenizer *t = NULL;
    if (!tu_fixture_exists(sub)) { free(p); return NULL; }
    if (wick_tokenizer_load(p, &t) != WICK_OK) fail_msg("load %s: %s", p, wick_last_error());
    free(p);
    return t;
}

static void roundtrip(const wick_tokenizer *t, const char *x, size_t n, const char *want, size_t wl) {
    int32_t cap = (int32_t)n + 8;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap);
    int32_t k = wick_tokenize(t, x, n, false, ids, cap);
    assert_true(k >= 0);
    size_t bc = n * 3 + 16, ol;
    char *buf = malloc(bc);
    assert_int_equal(wick_detokenize(t, ids, (size_t)k, false, buf, bc, &ol), WICK_OK);
    assert_int_equal(ol, wl);
    assert_memory_equal(buf, want, ol);
    free(buf);
    free(ids);
}

static void test_roundtrip_random(void **st) {
    (void)st;
    wick_tokenizer *t = load_fixture("tokenizers/llama3");
    if (!t) skip();
    char x[600], want[2000];
    static const uint32_t ranges[][2] = {{0x20, 0x7E}, {0, 0x7F}, {0xA0, 0x7FF}, {0x800, 0xD7FF},
                                         {0xE000, 0xFFFD}, {0x10000, 0x10FFFF}, {0x4E00, 0x9FFF}};
    for (int it = 0; it < 300; it++) {
        size_t n = 0;
        int len = (int)(rnd() % 120);
        for (int i = 0; i < len; i++) {
            const uint32_t *r = ranges[rnd() % 7];
            n += enc_cp(r[0] + rnd() % (r[1] - r[0] + 1), x + n);
        }
        roundtrip(t, x, n, x, n);
    }
    for (int it = 0; it < 300; it++) {  /* arbitrary bytes, mostly invalid UTF-8 */
        size_t n = rnd() % 200;
        for (size_t i = 0; i < n; i++) x[i] = (char)(rnd() & 0xFF);
        size_t wl = lossy((const unsigned char *)x, n, want);
        roundtrip(t, x, n, want, wl);
    }
    wick_tokenizer_free(t);
}

static void stream_vs_batch(const wick_tokenizer *t, const int32_t *ids, size_t n, bool skip) {
    size_t cap = 1 << 16, bl;
    char *batch = malloc(cap), *acc = malloc(cap);
    assert_int_equal(wick_detokenize(t, ids, n, skip, batch, cap, &bl), WICK_OK);
    wick_detok *d = NULL;
    assert_int_equal(wick_detok_create(t, skip, &d), WICK_OK);
    size_t al = 0;
    for (size_t i = 0; i <= n; i++) {
        const char *s;
        size_t l;
        if (i < n) assert_int_equal(wick_detok_push(d, ids[i], &s, &l), WICK_OK);
        else assert_int_equal(wick_detok_flush(d, &s, &l), WICK_OK);
        assert_true(al + l < cap);
        memcpy(acc + al, s, l);
        al += l;
        /* each piece is complete UTF-8 */
        char tmp[4096];
        if (l < 1000) assert_int_equal(lossy((const unsigned char *)s, l, tmp), l);
    }
    assert_int_equal(al, bl);
    assert_memory_equal(acc, batch, bl);
    wick_detok_free(d);
    free(batch);
    free(acc);
}

static void random_streams(const wick_tokenizer *t) {
    int32_t V = wick_tokenizer_vocab_size(t), ids[64];
    for (int it = 0; it < 200; it++) {
        size_t n = rnd() % 64;
        for (size_t i = 0; i < n; i++) {
            uint32_t r = rnd() % 8;
            ids[i] = r == 0 ? (int32_t)(rnd() % (uint32_t)(V < 300 ? V : 300)) : (int32_t)(rnd() % (uint32_t)V);  /* bytes/<0xNN> often */
        }
        stream_vs_batch(t, ids, n, false);
        stream_vs_batch(t, ids, n, true);
    }
    /* out-of-range ids: an error, never a crash */
    char buf[64];
    int32_t bad[3] = {1, V, 2};
    assert_int_equal(wick_detokenize(t, bad, 3, false, buf, sizeof buf, NULL), WICK_ERR_INVALID_ARG);
    bad[1] = -5;
    assert_int_equal(wick_detokenize(t, bad, 3, false, buf, sizeof buf, NULL), WICK_ERR_INVALID_ARG);
    wick_detok *d = NULL;
    const char *s;
    size_t l;
    assert_int_equal(wick_detok_create(t, false, &d), WICK_OK);
    assert_int_equal(wick_detok_push(d, V + 7, &s, &l), WICK_ERR_INVALID_ARG);
    assert_int_equal(wick_detok_push(d, INT32_MIN, &s, &l), WICK_ERR_INVALID_ARG);
    wick_detok_free(d);
    assert_null(wick_token_str(t, V));
    assert_null(wick_token_str(t, -1));
}

static void test_stream_random(void **st) {
    (void)st;
    const char *subs[] = {"tokenizers/qwen3", "tokenizers/llama3", "tiny-bert"};
    for (int i = 0; i < 3; i++) {
        wick_tokenizer *t = load_fixture(subs[i]);
        if (!t) continue;
        random_streams(t);
        wick_tokenizer_free(t);
    }
}

static void test_small_buffers(void **st) {
    (void)st;
    wick_tokenizer *t = load_fixture("tokenizers/qwen3");
    if (!t) skip();
    const char *x = "Hello world, this is a test.";
    int32_t ids[64];
    int32_t n = wick_tokenize(t, x, strlen(x), false, ids, 64);
    assert_true(n > 2);
    assert_int_equal(wick_tokenize(t, x, strlen(x), false, ids, 2), -n);
    assert_int_equal(wick_tokenize(t, x, strlen(x), false, NULL, 0), -n);
    assert_int_equal(wick_tokenize(NULL, x, 3, false, ids, 64), INT32_MIN);
    char buf[8];
    size_t need = 0;
    assert_int_equal(wick_detokenize(t, ids, (size_t)n, false, buf, sizeof buf, &need), WICK_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(need, strlen(x));  /* bytes without the NUL */
    /* exactly need bytes is still one short (no room for the NUL); need + 1 fits */
    char *big = malloc(need + 1);
    assert_non_null(big);
    size_t got = 0;
    assert_int_equal(wick_detokenize(t, ids, (size_t)n, false, big, need, &got), WICK_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(got, need);
    assert_int_equal(wick_detokenize(t, ids, (size_t)n, false, big, need + 1, &got), WICK_OK);
    assert_int_equal(got, need);
    assert_string_equal(big, x);
    free(big);
    assert_int_equal(wick_tokenize(t, "", 0, false, ids, 64), 0);
    assert_int_equal(wick_token_id(t, "<|im_end|>"), 151645);
    assert_true(wick_token_is_special(t, 151645));
    assert_false(wick_token_is_special(t, 100));
    assert_int_equal(wick_tokenizer_special(t, WICK_SPECIAL_EOS), 151645);
    wick_tokenizer_free(t);
}

static char *write_tmp(const char *dir, const char *name, const char *text) {
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    tu_write_file(p, text, strlen(text));
    return p;
}

/* SentencePiece-converted BPE in miniature: vocab of ▁, letters, a few merges, <0xNN>. */
static char *spm_json(const char *norm, const char *pre, const char *dec) {
    static char js[40000];
    int w = sprintf(js, "{\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true,\"normalized\":false},"
                        "{\"id\":1,\"content\":\"<s>\",\"special\":true,\"normalized\":false}],"
                        "\"normalizer\":%s,\"pre_tokenizer\":%s,\"decoder\":%s,"
                        "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],"
                        "\"pair\":[],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}}},"
                        "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true,\"vocab\":{\"<unk>\":0,\"<s>\":1",
                    norm, pre, dec);
    int id = 2;
    for (int b = 0; b < 256; b++) w += sprintf(js + w, ",\"<0x%02X>\":%d", b, id++);
    const char *pieces[] = {"\xE2\x96\x81", "h", "e", "l", "o", "w", "r", "d", "\xE2\x96\x81h", "he", "ll", "llo", "\xE2\x96\x81he", "\xE2\x96\x81hello"};
    for (int i = 0; i < 14; i++) w += sprintf(js + w, ",\"%s\":%d", pieces[i], id++);
    sprintf(js + w, "},\"merges\":[\"l l\",\"ll o\",\"h e\",\"\xE2\x96\x81 he\",\"\xE2\x96\x81he llo\"]}}");
    return js;
}

static void spm_roundtrip(const char *norm, const char *pre, const char *dec) {
    char *dir = tu_mkdtemp();
    char *p = write_tmp(dir, "tokenizer.json", spm_json(norm, pre, dec));
    wick_tokenizer *t = NULL;
    if (wick_tokenizer_load(p, &t) != WICK_OK) fail_msg("%s", wick_last_error());
    const char *x = "hello w\xC3\xB6rld \xE4\xBD\xA0 hello";
    int32_t ids[128];
    int32_t n = wick_tokenize(t, x, strlen(x), true, ids, 128);
    assert_true(n > 3);
    assert_int_equal(ids[0], 1);                         /* <s> from TemplateProcessing */
    assert_int_equal(ids[1], wick_token_id(t, "\xE2\x96\x81hello"));
    assert_int_equal(ids[2], wick_token_id(t, "\xE2\x96\x81"));
    char buf[256];
    assert_int_equal(wick_detokenize(t, ids, (size_t)n, true, buf, sizeof buf, NULL), WICK_OK);
    assert_string_equal(buf, x);
    stream_vs_batch(t, ids, (size_t)n, true);
    stream_vs_batch(t, ids, (size_t)n, false);
    random_streams(t);
    wick_tokenizer_free(t);
    free(p);
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_sentencepiece_style(void **st) {
    (void)st;
    /* Llama 2 style: normalizer does the ▁ work, decoder strips the first space */
    spm_roundtrip("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\xE2\x96\x81\"},"
                  "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xE2\x96\x81\"}]}",
                  "null",
                  "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xE2\x96\x81\"},\"content\":\" \"},"
                  "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}");
    /* newer style: Metaspace pre-tokenizer and decoder */
    spm_roundtrip("null",
                  "{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\",\"prepend_scheme\":\"first\",\"split\":false}",
                  "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteFallback\"},{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\",\"prepend_scheme\":\"first\"}]}");
}

static void expect_load_error(const char *json, wick_status want, const char *needle) {
    char *dir = tu_mkdtemp();
    char *p = write_tmp(dir, "tokenizer.json", json);
    wick_tokenizer *t = NULL;
    wick_status st = wick_tokenizer_load(p, &t);
    assert_null(t);
    assert_int_equal(st, want);
    if (!strstr(wick_last_error(), needle)) fail_msg("message '%s' lacks '%s'", wick_last_error(), needle);
    free(p);
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_malformed(void **st) {
    (void)st;
    expect_load_error("{not json", WICK_ERR_FORMAT, "not valid JSON");
    expect_load_error("[1,2]", WICK_ERR_FORMAT, "top level");
    expect_load_error("{\"added_tokens\":[]}", WICK_ERR_FORMAT, "model: missing");
    expect_load_error("{\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"vocab\":[]}}", WICK_ERR_FORMAT, "model.vocab: empty");
    expect_load_error("{\"model\":{\"type\":\"Foo\",\"vocab\":[]}}", WICK_ERR_UNSUPPORTED, "model: unsupported type 'Foo'");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}", WICK_ERR_FORMAT, "model.merges[0]");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\"},{\"type\":\"UnicodeScripts\"}]}}",
                      WICK_ERR_UNSUPPORTED, "pre_tokenizer.pretokenizers[1]: unsupported type 'UnicodeScripts'");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":\"Precompiled\"}}",
                      WICK_ERR_FORMAT, "normalizer.precompiled_charsmap: expected a base64 string");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"decoder\":{\"type\":\"CTC\"}}",
                      WICK_ERR_UNSUPPORTED, "decoder: unsupported type 'CTC'");
    expect_load_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                      "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"}}",
                      WICK_ERR_FORMAT, "pre_tokenizer.pattern");
    wick_tokenizer *t = NULL;
    assert_int_equal(wick_tokenizer_load("/nonexistent/dir/tokenizer.json", &t), WICK_ERR_IO);
    char *dir = tu_mkdtemp();
    assert_int_equal(wick_tokenizer_load(dir, &t), WICK_ERR_NOT_FOUND);
    tu_rmdir_rf(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_random),   cmocka_unit_test(test_stream_random),
        cmocka_unit_test(test_small_buffers),      cmocka_unit_test(test_sentencepiece_style),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
