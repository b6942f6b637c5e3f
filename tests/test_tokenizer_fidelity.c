/* test_tokenizer_fidelity.c — Hugging Face `tokenizers` semantics at the edges that plausible
 * inputs reach: added tokens (lstrip/rstrip over Unicode whitespace, single_word over Unicode
 * letters/numbers, the scan resuming after a rejected match), the Lowercase normalizer,
 * Metaspace prepend_scheme "first", and the NFC fast path against plain utf8proc.
 *
 * The tokenizers here are miniature BPE models without merges, so every character is its own
 * token and the expected ids can be read off the rules. The rules are those of HF's Rust code:
 * - added_vocabulary.rs find_matches: Aho-Corasick LeftmostLongest, non-overlapping
 *   find_iter; a single_word match whose neighbour char is_alphanumeric() or '_' is skipped
 *   (`continue`), so scanning resumes after it; lstrip/rstrip extend over chars with
 *   char::is_whitespace().
 * - NormalizedString::lowercase maps char by char with char::to_lowercase (so 'İ' becomes
 *   "i\u0307" and 'Σ' always 'σ': there is no word-final sigma rule at char level).
 * - Metaspace with prepend_scheme "first" prepends only to the split whose offset in the
 *   original text is 0.
 * (Python `tokenizers` is not installed here, so no ids come from running it.) */
#include "testutil.h"

#include <pthread.h>
#include <utf8proc.h>

#include "tokenizer/tok_impl.h"

/* Vocab: a-z = 0..25, ' ' 26, '_' 27, 'é' 28, NBSP 29, U+3000 30, '1' 31, 'Σ' 32, 'σ' 33,
 * 'ς' 34, 'i' is 8, U+0307 36, '▁' 40. Added (all normalized=false, so one matching pass):
 * "<m>" 100 (lstrip+rstrip), "ab" 101 (single_word), "bc" 103, plus extra_added. */
static char *mini_json(const char *norm, const char *pre, const char *extra_added) {
    static char js[8000];
    int w = sprintf(js, "{\"normalizer\":%s,\"pre_tokenizer\":%s,\"decoder\":null,"
                        "\"added_tokens\":[{\"id\":100,\"content\":\"<m>\",\"lstrip\":true,\"rstrip\":true,"
                        "\"special\":true,\"normalized\":false},"
                        "{\"id\":101,\"content\":\"ab\",\"single_word\":true,\"special\":false,\"normalized\":false},"
                        "{\"id\":103,\"content\":\"bc\",\"special\":false,\"normalized\":false}%s],"
                        "\"model\":{\"type\":\"BPE\",\"merges\":[],\"vocab\":{",
                    norm, pre, extra_added);
    for (int c = 0; c < 26; c++) w += sprintf(js + w, "\"%c\":%d,", 'a' + c, c);
    sprintf(js + w, "\" \":26,\"_\":27,\"\xC3\xA9\":28,\"\xC2\xA0\":29,\"\xE3\x80\x80\":30,\"1\":31,"
                    "\"\xCE\xA3\":32,\"\xCF\x83\":33,\"\xCF\x82\":34,\"\xCC\x87\":36,\"\xE2\x96\x81\":40}}}");
    return js;
}

static wick_tokenizer *load_json(const char *json, char **dir) {
    *dir = tu_mkdtemp();
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizer.json", *dir);
    tu_write_file(p, json, strlen(json));
    wick_tokenizer *t = NULL;
    if (wick_tokenizer_load(p, &t) != WICK_OK) fail_msg("%s", wick_last_error());
    return t;
}

static void expect_ids(const wick_tokenizer *t, const char *text, const int32_t *want, int nw) {
    int32_t ids[64];
    int32_t n = wick_tokenize(t, text, strlen(text), false, ids, 64);
    if (n != nw) fail_msg("'%s': %d ids, want %d", text, n, nw);
    for (int i = 0; i < nw; i++)
        if (ids[i] != want[i]) fail_msg("'%s': id[%d] = %d, want %d", text, i, ids[i], want[i]);
}
#define EXPECT(t, text, ...)                                                                 \
    do {                                                                                     \
        const int32_t w_[] = {__VA_ARGS__};                                                  \
        expect_ids(t, text, w_, (int)(sizeof w_ / sizeof *w_));                              \
    } while (0)

static void finish(wick_tokenizer *t, char *dir) {
    wick_tokenizer_free(t);
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_added_tokens(void **st) {
    (void)st;
    char *dir;
    wick_tokenizer *t = load_json(mini_json("null", "null", ""), &dir);
    /* lstrip/rstrip take Unicode whitespace: NBSP before, ideographic space after */
    EXPECT(t, "y\xC2\xA0<m>\xE3\x80\x80z", 24, 100, 25);
    EXPECT(t, "y <m>  z", 24, 100, 25);
    /* single_word: NBSP is not a word character, so "ab" stands alone */
    EXPECT(t, "\xC2\xA0" "ab\xC2\xA0", 29, 101, 29);
    /* ... but 'é' is a letter and '1' a number */
    EXPECT(t, "\xC3\xA9" "ab", 28, 0, 1);
    EXPECT(t, "ab1", 0, 1, 31);
    EXPECT(t, "_ab", 27, 0, 1);
    EXPECT(t, "ab ab", 101, 26, 101);
    /* a rejected "ab" is skipped whole: "bc" inside it is not matched afterwards */
    EXPECT(t, "zabc", 25, 0, 1, 2);
    EXPECT(t, "abc", 0, 1, 2);
    finish(t, dir);
    /* a rejected longest match does not fall back to a shorter token at the same place */
    t = load_json(mini_json("null", "null", ",{\"id\":105,\"content\":\"a\",\"normalized\":false}"), &dir);
    EXPECT(t, "zab", 25, 0, 1);
    EXPECT(t, "za", 25, 105);
    finish(t, dir);
}

static void test_lowercase(void **st) {
    (void)st;
    char *dir;
    wick_tokenizer *t = load_json(mini_json("{\"type\":\"Lowercase\"}", "null", ""), &dir);
    EXPECT(t, "\xC4\xB0", 8, 36);                 /* İ -> i + U+0307 */
    EXPECT(t, "A\xCE\xA3", 0, 33);                /* word-final Σ -> σ (char-wise) */
    EXPECT(t, "\xCE\xA3" "A", 33, 0);
    finish(t, dir);
}

static void test_metaspace_first(void **st) {
    (void)st;
    char *dir;
    const char *first = "{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\",\"prepend_scheme\":\"first\",\"split\":true}";
    const char *always = "{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\",\"prepend_scheme\":\"always\",\"split\":true}";
    wick_tokenizer *t = load_json(mini_json("null", first, ""), &dir);
    EXPECT(t, "a<m>b", 40, 0, 100, 1);            /* only the split at offset 0 gets ▁ */
    EXPECT(t, "<m>b c", 100, 1, 40, 2);           /* the text starts with the token: no ▁ on b */
    finish(t, dir);
    t = load_json(mini_json("null", always, ""), &dir);
    EXPECT(t, "a<m>b", 40, 0, 100, 40, 1);
    finish(t, dir);
}

/* The NFC/NFD/NFKC/NFKD segmenting fast path equals utf8proc on the whole string. */
static void test_normal_forms_fast_path(void **st) {
    (void)st;
    static const uint32_t pool[] = {'a', 'e', 'A', ' ', 0x301, 0x308, 0x327, 0x9C7, 0x9BE, 0xB47,
                                    0xB3E, 0x1100, 0x1161, 0x11A8, 0xAC00, 0xAC01, 0x4F60, 0x3099,
                                    0x306F, 0xFC, 0xE9, 0x212B, 0x1E0B, 0x323, 0x1D15E, 0x2126,
                                    0xFB01, 0x2460, 0x345, 0x3B1, 0x1F00, 0xF73, 0xF71, 0xF72};
    static const tok_norm_kind kinds[] = {NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD};
    static const int opts[] = {UTF8PROC_COMPOSE, UTF8PROC_DECOMPOSE, UTF8PROC_COMPOSE | UTF8PROC_COMPAT,
                               UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT};
    uint64_t r = 0x9E3779B97F4A7C15ull;
    for (int it = 0; it < 20000; it++) {
        char s[128];
        size_t n = 0;
        int k = (int)(r % 10);
        for (int j = 0; j < k; j++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            uint32_t c = (r >> 8) % 4 ? pool[(r >> 16) % (sizeof pool / sizeof *pool)]
                                      : (uint32_t)((r >> 20) % 0x30000);
            if ((c >= 0xD800 && c < 0xE000) || c == 0) c = 'x';
            n += tok_utf8_encode(c, s + n);
        }
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        for (int f = 0; f < 4; f++) {
            tok_norm nm = {.kind = kinds[f]};
            tok_buf o = {0};
            bool over = false;
            assert_true(tok_normalize(&nm, s, n, &o, SIZE_MAX, &over));
            utf8proc_uint8_t *d = NULL;
            utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &d,
                                              (utf8proc_option_t)(UTF8PROC_STABLE | opts[f]));
            assert_true(m >= 0);
            assert_int_equal((size_t)m, o.len);
            assert_memory_equal(d, o.len ? o.p : "", o.len);
            free(d);
            tok_buf_free(&o);
        }
    }
}

/* model.vocab / model.merges are streamed from the text (tok_json.c): escapes decode as cJSON
 * decodes them, both merge forms work, and shapes outside the fast path still load (or fail)
 * through cJSON. */
static void test_streamed_sections(void **st) {
    (void)st;
    char *dir;
    /* \u escapes (BMP and a surrogate pair), \" and \\ in keys; merges as pairs */
    const char *js =
        "{\"added_tokens\":[],\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,"
        "\"\\u00e9\":3,\"\\ud83d\\ude00\":4,\"\\\"\":5,\"\\\\\":6,\"\\\"\\\\\":7},"
        "\"merges\":[[\"a\",\"b\"],[\"\\\"\",\"\\\\\"]]},\"normalizer\":null,\"pre_tokenizer\":null}";
    wick_tokenizer *t = load_json(js, &dir);
    assert_int_equal(wick_token_id(t, "\xC3\xA9"), 3);
    assert_int_equal(wick_token_id(t, "\xF0\x9F\x98\x80"), 4);
    assert_string_equal(wick_token_str(t, 7), "\"\\");
    EXPECT(t, "ab\xC3\xA9\"\\", 2, 3, 7);
    finish(t, dir);
    /* merges as "a b" strings, whitespace everywhere the grammar allows it */
    js = "{ \"model\" : { \"merges\" : [ \"a b\" ] ,\n\"vocab\" : { \"a\" : 0 , \"b\" : 1 , \"ab\" : 2 } ,"
         " \"type\" : \"BPE\" } }";
    t = load_json(js, &dir);
    EXPECT(t, "abba", 2, 1, 0);
    finish(t, dir);
    /* not the fast shape (a float id): cJSON reads it; a negative id still fails */
    t = load_json("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0.0,\"b\":1},\"merges\":[]}}", &dir);
    EXPECT(t, "ab", 0, 1);
    finish(t, dir);
    dir = tu_mkdtemp();
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    static const char *bad[] = {
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a c\"]}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"ac\"]}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[[\"a\"]]}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\\ud800\":0},\"merges\":[]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tu_write_file(p, bad[i], strlen(bad[i]));
        wick_tokenizer *b = NULL;
        assert_int_equal(wick_tokenizer_load(p, &b), WICK_ERR_FORMAT);
        assert_null(b);
        assert_non_null(strstr(wick_last_error(), "tokenizer.json"));
    }
    tu_rmdir_rf(dir);
    free(dir);
}

/* The per-thread encoding context keeps a word cache across calls: it must never hand one
 * tokenizer's ids to another (two tokenizers alternated, and a freed tokenizer whose memory a new
 * one may reuse), and threads encoding with one shared tokenizer agree. */
static const char *k_text = "The quick brown fox's 12345 jumps; def f(x): return x**2 # done\n"
                            "Caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD the quick brown fox";

static int32_t enc(const wick_tokenizer *t, int32_t *ids) {
    int32_t n = wick_tokenize(t, k_text, strlen(k_text), false, ids, 256);
    assert_true(n > 0);
    return n;
}

static void test_cache_across_tokenizers(void **st) {
    (void)st;
    TU_REQUIRE_FIXTURE(q, "tokenizers/qwen3");
    TU_REQUIRE_FIXTURE(l, "tokenizers/llama3");
    wick_tokenizer *tq, *tl;
    if (wick_tokenizer_load(q, &tq) || wick_tokenizer_load(l, &tl)) fail_msg("%s", wick_last_error());
    int32_t a[256], b[256], x[256];
    int32_t na = enc(tq, a), nb = enc(tl, b);
    for (int r = 0; r < 3; r++) {
        assert_int_equal(enc(tq, x), na);
        assert_memory_equal(x, a, (size_t)na * 4);
        assert_int_equal(enc(tl, x), nb);
        assert_memory_equal(x, b, (size_t)nb * 4);
    }
    bool differ = na != nb || memcmp(a, b, (size_t)na * 4) != 0;
    assert_true(differ);  /* otherwise this test proves nothing */
    for (int r = 0; r < 4; r++) {  /* free + load: the allocator may hand back the same address */
        wick_tokenizer_free(tq);
        if (wick_tokenizer_load(r % 2 ? q : l, &tq)) fail_msg("%s", wick_last_error());
        assert_int_equal(enc(tq, x), r % 2 ? na : nb);
        assert_memory_equal(x, r % 2 ? a : b, (size_t)(r % 2 ? na : nb) * 4);
    }
    wick_tokenizer_free(tq);
    wick_tokenizer_free(tl);
    free(q);
    free(l);
}

typedef struct enc_job {
    const wick_tokenizer *t;
    const int32_t *want;
    int32_t n;
    bool ok;
} enc_job;

static void *enc_thread(void *p) {
    enc_job *j = p;
    int32_t x[256];
    j->ok = true;
    for (int r = 0; r < 50 && j->ok; r++)
        j->ok = wick_tokenize(j->t, k_text, strlen(k_text), false, x, 256) == j->n &&
                memcmp(x, j->want, (size_t)j->n * 4) == 0;
    return NULL;
}

static void test_threads_share_tokenizer(void **st) {
    (void)st;
    TU_REQUIRE_FIXTURE(q, "tokenizers/qwen3");
    wick_tokenizer *t;
    if (wick_tokenizer_load(q, &t)) fail_msg("%s", wick_last_error());
    int32_t want[256];
    int32_t n = enc(t, want);
    enum { NT = 4 };
    pthread_t th[NT];
    enc_job jobs[NT];
    for (int i = 0; i < NT; i++) {
        jobs[i] = (enc_job){t, want, n, false};
        assert_int_equal(pthread_create(&th[i], NULL, enc_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        assert_true(jobs[i].ok);
    }
    wick_tokenizer_free(t);
    free(q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_added_tokens),
        cmocka_unit_test(test_lowercase),
        cmocka_unit_test(test_metaspace_first),
        cmocka_unit_test(test_normal_forms_fast_path),
        cmocka_unit_test(test_streamed_sections),
        cmocka_unit_test(test_cache_across_tokenizers),
        cmocka_unit_test(test_threads_share_tokenizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
