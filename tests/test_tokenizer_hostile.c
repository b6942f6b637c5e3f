/* test_tokenizer_hostile.c — regression tests for hostile tokenizer.json files (most found by
 * fuzz/fuzz_tokenizer.c): each once hung, crashed, hit undefined behaviour or made a tiny file
 * cost gigabytes. The inputs live in fuzz/regressions/tokenizer/ (or are built inline);
 * every one must now load or fail with a message naming the field, quickly, and a loaded one
 * must encode and decode without trouble. A watchdog (SIGALRM) turns a hang into a failure
 * instead of a stalled test run. */
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include "testutil.h"

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "test_tokenizer_hostile: timed out (a hang)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(1);
}

/* Runs the rest of the test under a watchdog of `seconds`. */
static void watchdog(unsigned seconds) {
    signal(SIGALRM, on_alarm);
    alarm(seconds);
}

static char *read_regression(const char *name, size_t *len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/fuzz/regressions/tokenizer/%s", WICK_SOURCE_DIR, name);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return s;
}

/* Encodes and decodes a little with a loaded tokenizer (what the fuzzer does). */
static void exercise(const wick_tokenizer *t) {
    static const char *texts[] = {"", "a", "Hello world!  \n\tx", "caf\xC3\xA9 \xE4\xBD\xA0 123",
                                  "\xFF\xFE"};
    int32_t ids[256];
    char buf[4096];
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        int32_t n = wick_tokenize(t, texts[i], strlen(texts[i]), true, ids, 256);
        assert_true(n >= 0);
        assert_int_equal(wick_detokenize(t, ids, (size_t)n, false, buf, sizeof buf, NULL), WICK_OK);
    }
}

/* Loads `json` (len bytes) from memory: expects status `want`, and when it fails a message
 * containing `needle`. */
static void expect_mem(const char *json, size_t len, wick_status want, const char *needle) {
    wick_tokenizer *t = NULL;
    wick_status st = wick_tokenizer_load_mem(json, len, NULL, &t);
    if (st != want)
        fail_msg("status %d, want %d (%s)", st, want, st ? wick_last_error() : "loaded");
    if (st) {
        assert_null(t);
        if (needle && !strstr(wick_last_error(), needle))
            fail_msg("message '%s' lacks '%s'", wick_last_error(), needle);
        return;
    }
    exercise(t);
    wick_tokenizer_free(t);
}

static void expect_file(const char *name, wick_status want, const char *needle) {
    size_t len;
    char *s = read_regression(name, &len);
    expect_mem(s, len, want, needle);
    free(s);
}

/* tok_json.c skip_value took a NUL byte for a delimiter (strchr matches the terminator) and
 * looped forever on {"a":[1\0]}. cJSON, which reads the file when the streaming reader gives
 * up, treats control bytes as whitespace, so the second document loads. */
static void test_nul_in_skipped_value(void **st) {
    (void)st;
    watchdog(20);
    expect_file("tok_json_nul_in_array.json", WICK_ERR_FORMAT, "model: missing");
    static const char nul_model[] =
        "{\"a\":[1\0],\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}";
    expect_mem(nul_model, sizeof nul_model - 1, WICK_OK, NULL);
    static const char nul_value[] = "{\"x\":\0, \"model\":{\"vocab\":{\"a\":0}}}";
    expect_mem(nul_value, sizeof nul_value - 1, WICK_ERR_FORMAT, "not valid JSON");
    alarm(0);
}

/* A tokenizer.json with `prefix` + n copies of `item` (comma-separated) + `suffix`. */
static char *repeat_json(const char *prefix, const char *item, size_t n, const char *suffix) {
    size_t pl = strlen(prefix), il = strlen(item), sl = strlen(suffix);
    char *s = malloc(pl + n * (il + 1) + sl + 1);
    assert_non_null(s);
    char *w = s;
    memcpy(w, prefix, pl);
    w += pl;
    for (size_t i = 0; i < n; i++) {
        if (i) *w++ = ',';
        memcpy(w, item, il);
        w += il;
    }
    memcpy(w, suffix, sl + 1);
    return s;
}

#define MODEL_A "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[]}"

/* Component lists were walked with cJSON_GetArrayItem(i) (a list walk each: O(n²), minutes for a
 * 2 MB file), and the decoder chain, which decoding runs as nested calls, had no length limit. */
static void test_long_component_lists(void **st) {
    (void)st;
    watchdog(120);
    char *js = repeat_json("{" MODEL_A ",\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[",
                           "{\"type\":\"Lowercase\"}", 100000, "]}}");
    expect_mem(js, strlen(js), WICK_OK, NULL);
    free(js);
    js = repeat_json("{" MODEL_A ",\"decoder\":{\"type\":\"Sequence\",\"decoders\":[",
                     "{\"type\":\"Fuse\"}", 100000, "]}}");
    expect_mem(js, strlen(js), WICK_ERR_FORMAT, "decoder.decoders[64]: more than 64 decoders");
    free(js);
    alarm(0);
}

/* Sequences nested without limit made every reader, the encoder and the free functions recurse
 * as deep as cJSON allows (about 500 Sequence levels). */
static void test_deep_sequences(void **st) {
    (void)st;
    watchdog(60);
    static const char *kinds[][3] = {
        {"normalizer", "normalizers", "{\"type\":\"Lowercase\"}"},
        {"pre_tokenizer", "pretokenizers", "{\"type\":\"Digits\"}"},
        {"decoder", "decoders", "{\"type\":\"Fuse\"}"},
        {"post_processor", "processors", "{\"type\":\"ByteLevel\"}"},
    };
    for (int k = 0; k < 4; k++) {
        for (int depth = 16; depth <= 17; depth++) {  /* 16 Sequences in a chain load, 17 fail */
            char js[8192];
            int w = snprintf(js, sizeof js, "{" MODEL_A ",\"%s\":", kinds[k][0]);
            for (int d = 0; d < depth; d++)
                w += snprintf(js + w, sizeof js - (size_t)w, "{\"type\":\"Sequence\",\"%s\":[", kinds[k][1]);
            w += snprintf(js + w, sizeof js - (size_t)w, "%s", kinds[k][2]);
            for (int d = 0; d < depth; d++) w += snprintf(js + w, sizeof js - (size_t)w, "]}");
            snprintf(js + w, sizeof js - (size_t)w, "}");
            expect_mem(js, strlen(js), depth == 16 ? WICK_OK : WICK_ERR_FORMAT,
                       "Sequences nested deeper than 16 levels");
        }
    }
    alarm(0);
}

/* Ids were only checked against 1e8 (a 62-byte file with the id 1e8 sized the id tables to 1.3
 * GB), fractions were truncated, and max_input_chars_per_word was taken as cJSON's clamped int. */
static void test_ids(void **st) {
    (void)st;
    watchdog(60);
    expect_file("tok_vocab_id_1e8.json", WICK_ERR_FORMAT,
                "model.vocab[\"a\"]: id 100000000 is not an integer in [0, 1026)");
    /* the same through cJSON (the streaming reader leaves exponents to it) */
    const char *big = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1e300},\"merges\":[]}}";
    expect_mem(big, strlen(big), WICK_ERR_FORMAT, "model.vocab[\"a\"]: id 1.0000000000000001e+300 is not");
    const char *frac = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1.5},\"merges\":[]}}";
    expect_mem(frac, strlen(frac), WICK_ERR_FORMAT, "model.vocab[\"b\"]: id 1.5 is not an integer");
    const char *str = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"},\"merges\":[]}}";
    expect_mem(str, strlen(str), WICK_ERR_FORMAT, "model.vocab[\"a\"]: expected an integer id");
    const char *added = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                        "\"added_tokens\":[{\"id\":1e19,\"content\":\"x\"}]}";
    expect_mem(added, strlen(added), WICK_ERR_FORMAT, "added_tokens[0].id: id 1e+19 is not an integer in [0, 1028)");
    /* holes are fine within the limit: one vocab entry + one added token allow ids up to 1027 */
    const char *holes = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},"
                        "\"added_tokens\":[{\"id\":1027,\"content\":\"x\"}]}";
    wick_tokenizer *t = NULL;
    assert_int_equal(wick_tokenizer_load_mem(holes, strlen(holes), NULL, &t), WICK_OK);
    assert_int_equal(wick_tokenizer_vocab_size(t), 1028);
    assert_string_equal(wick_token_str(t, 500), "");
    int32_t ids[2] = {0, 1027};
    char buf[16];
    assert_int_equal(wick_detokenize(t, ids, 2, false, buf, sizeof buf, NULL), WICK_OK);
    wick_tokenizer_free(t);
    const char *wp = "{\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"a\",\"vocab\":{\"a\":0},"
                     "\"max_input_chars_per_word\":-1e300}}";
    expect_mem(wp, strlen(wp), WICK_ERR_FORMAT, "model.max_input_chars_per_word: expected a non-negative integer");
    alarm(0);
}

/* Strip decoder start/stop were taken as cJSON's clamped ints: stop -1e10 overflowed (held -
 * INT_MIN), stop -3e8 made detokenizing two ids write 300 MB (1.2 GB, a minute). */
static void test_strip_bounds(void **st) {
    (void)st;
    watchdog(60);
    expect_file("tok_strip_stop_negative.json", WICK_ERR_FORMAT,
                "decoder.decoders[1].stop: expected an integer in [0, 1024]");
    static const char *bad[][2] = {
        {"\"start\":0,\"stop\":-1e10", "decoder.stop: expected an integer in [0, 1024]"},
        {"\"start\":1e300,\"stop\":0", "decoder.start: expected an integer in [0, 1024]"},
        {"\"start\":1025,\"stop\":0", "decoder.start: expected an integer in [0, 1024]"},
        {"\"start\":0.5,\"stop\":0", "decoder.start: expected an integer in [0, 1024]"},
        {"\"start\":\"1\",\"stop\":0", "decoder.start: expected an integer in [0, 1024]"},
        {"\"start\":1,\"stop\":0,\"content\":\"\"", "decoder.content: expected one character"},
        {"\"start\":1,\"stop\":0,\"content\":\"ab\"", "decoder.content: expected one character"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char js[512];
        snprintf(js, sizeof js, "{" MODEL_A ",\"decoder\":{\"type\":\"Strip\",%s}}", bad[i][0]);
        expect_mem(js, strlen(js), WICK_ERR_FORMAT, bad[i][1]);
    }
    /* within the bounds: a fused Strip holds back trailing spaces, stop drops the last ones */
    const char *ok = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\" \":1},\"merges\":[]},"
                     "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Fuse\"},"
                     "{\"type\":\"Strip\",\"content\":\" \",\"start\":1024,\"stop\":1024}]}}";
    wick_tokenizer *t = NULL;
    assert_int_equal(wick_tokenizer_load_mem(ok, strlen(ok), NULL, &t), WICK_OK);
    int32_t ids[] = {1, 1, 0, 1, 0, 1, 1};
    char buf[32];
    assert_int_equal(wick_detokenize(t, ids, 7, false, buf, sizeof buf, NULL), WICK_OK);
    assert_string_equal(buf, "a a");
    wick_tokenizer_free(t);
    alarm(0);
}

/* A Metaspace pre-tokenizer with replacement "" and split true looped forever on the first
 * character (an empty match never advanced). */
static void test_metaspace_empty_replacement(void **st) {
    (void)st;
    watchdog(30);
    expect_file("tok_metaspace_empty_replacement.json", WICK_ERR_FORMAT,
                "pre_tokenizer.replacement: expected one character");
    const char *two = "{" MODEL_A ",\"decoder\":{\"type\":\"Metaspace\",\"replacement\":\"ab\"}}";
    expect_mem(two, strlen(two), WICK_ERR_FORMAT, "decoder.replacement: expected one character");
    alarm(0);
}

/* Post-processor ids were cJSON's clamped ints, never checked: -1 or 1e300 (INT_MAX) came out of
 * wick_tokenize as token ids; 100k ids in a 200 KB file took a minute to load (O(n²) walk). */
static void test_post_processor_ids(void **st) {
    (void)st;
    watchdog(60);
    static const char *bad[][2] = {
        {"{\"type\":\"BertProcessing\",\"cls\":[\"a\",-1],\"sep\":[\"b\",1]}",
         "post_processor: expected cls/sep as [token, id]"},
        {"{\"type\":\"RobertaProcessing\",\"cls\":[\"a\",0],\"sep\":[\"b\",1e300]}",
         "post_processor: expected cls/sep as [token, id]"},
        {"{\"type\":\"BertProcessing\",\"cls\":[\"a\",0],\"sep\":[\"b\",2]}",
         "post_processor: special token id 2 is not in the vocabulary (2 ids)"},
        {"{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"a\"}},"
         "{\"Sequence\":{\"id\":\"A\"}}],\"special_tokens\":{\"a\":{\"ids\":[0.5]}}}",
         "post_processor.special_tokens['a'].ids: expected non-negative integer ids"},
        {"{\"type\":\"TemplateProcessing\",\"single\":[{\"Sequence\":{\"id\":\"A\"}},"
         "{\"SpecialToken\":{\"id\":\"a\"}}],\"special_tokens\":{\"a\":{\"ids\":[7]}}}",
         "post_processor: special token id 7 is not in the vocabulary (2 ids)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char js[1024];
        snprintf(js, sizeof js, "{" MODEL_A ",\"post_processor\":%s}", bad[i][0]);
        expect_mem(js, strlen(js), WICK_ERR_FORMAT, bad[i][1]);
    }
    char *js = repeat_json("{" MODEL_A ",\"post_processor\":{\"type\":\"TemplateProcessing\","
                           "\"single\":[{\"SpecialToken\":{\"id\":\"a\"}},{\"Sequence\":{\"id\":\"A\"}}],"
                           "\"special_tokens\":{\"a\":{\"ids\":[", "0", 100000, "]}}}}");
    expect_mem(js, strlen(js), WICK_ERR_FORMAT, "more than 256 special tokens or template items");
    free(js);
    /* 256 ids are fine */
    js = repeat_json("{" MODEL_A ",\"post_processor\":{\"type\":\"TemplateProcessing\","
                     "\"single\":[{\"SpecialToken\":{\"id\":\"a\"}},{\"Sequence\":{\"id\":\"A\"}}],"
                     "\"special_tokens\":{\"a\":{\"ids\":[", "1", 256, "]}}}}");
    wick_tokenizer *t = NULL;
    assert_int_equal(wick_tokenizer_load_mem(js, strlen(js), NULL, &t), WICK_OK);
    int32_t ids[300];
    assert_int_equal(wick_tokenize(t, "a", 1, true, ids, 300), 257);
    assert_int_equal(ids[255], 1);
    assert_int_equal(ids[256], 0);
    wick_tokenizer_free(t);
    free(js);
    alarm(0);
}

/* WordPiece tried every end of the rest of the word at each step, hashing each candidate: a word
 * of n characters cost O(n³) once max_input_chars_per_word let it through (8 KB: 19 s). The
 * greedy longest-match result is unchanged: candidates longer than any vocabulary string were
 * never matches. */
static void test_wordpiece_long_word(void **st) {
    (void)st;
    watchdog(60);
    const char *js = "{\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\","
                     "\"continuing_subword_prefix\":\"##\",\"max_input_chars_per_word\":1000000000,"
                     "\"vocab\":{\"[UNK]\":0,\"a\":1,\"##a\":2,\"\u00e9\":3,\"##\u00e9a\":4,\"##\u00e9\":5}},"
                     "\"pre_tokenizer\":{\"type\":\"WhitespaceSplit\"}}";
    wick_tokenizer *t = NULL;
    assert_int_equal(wick_tokenizer_load_mem(js, strlen(js), NULL, &t), WICK_OK);
    enum { N = 32768 };
    char *w = malloc(N);
    for (int i = 0; i < N; i++) w[i] = 'a';
    int32_t *ids = malloc(N * sizeof *ids);
    assert_int_equal(wick_tokenize(t, w, N, false, ids, N), N);
    assert_int_equal(ids[0], 1);
    for (int i = 1; i < N; i++) assert_int_equal(ids[i], 2);
    /* multi-byte characters: candidates are cut at character boundaries only */
    const char *mixed = "\xC3\xA9" "\xC3\xA9" "a" "\xC3\xA9" "\xC3\xA9" "a";  /* é éa é éa */
    int32_t want[] = {3, 4, 5, 4};
    assert_int_equal(wick_tokenize(t, mixed, strlen(mixed), false, ids, N), 4);
    assert_memory_equal(ids, want, sizeof want);
    wick_tokenizer_free(t);
    free(ids);
    free(w);
    alarm(0);
}

/* wick_tokenize refused only texts over 1 GiB, past which 32-bit piece offsets could wrap after
 * normalization, and a 1 GiB word needed ~35 GiB of scratch. The limit is now
 * WICK_TOKENIZE_MAX_BYTES and checked before the text is read (the calloc'd pages stay
 * untouched). Within it, one huge word costs O(n log n): 1 MB of one letter through a BPE whose
 * merges build ever longer runs. */
static void test_tokenize_length_limit(void **st) {
    (void)st;
    watchdog(60);
    const char *js = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"aa\":1,\"aaaa\":2,\"aaaaaaaa\":3},"
                     "\"merges\":[\"a a\",\"aa aa\",\"aaaa aaaa\"]}}";
    wick_tokenizer *t = NULL;
    assert_int_equal(wick_tokenizer_load_mem(js, strlen(js), NULL, &t), WICK_OK);
    char *big = calloc(WICK_TOKENIZE_MAX_BYTES + 1, 1);
    assert_non_null(big);
    int32_t ids[8];
    assert_int_equal(wick_tokenize(t, big, WICK_TOKENIZE_MAX_BYTES + 1, false, ids, 8), INT32_MIN);
    assert_non_null(strstr(wick_last_error(), "longer than WICK_TOKENIZE_MAX_BYTES"));
    free(big);
    enum { N = 1 << 20 };
    char *w = malloc(N);
    memset(w, 'a', N);
    int32_t *out = malloc(N / 8 * sizeof *out);
    assert_int_equal(wick_tokenize(t, w, N, false, out, N / 8), N / 8);
    for (int i = 0; i < N / 8; i++) assert_int_equal(out[i], 3);
    free(out);
    free(w);
    wick_tokenizer_free(t);
    alarm(0);
}

/* A Sequence of 40 Replace "a" -> "aa" normalizers (a 2.8 KB file) doubled the text 40 times:
 * encoding "a" wanted 2^40 bytes (28 steps: 5.7 GB and almost 5 minutes). The same chain of
 * decoders did it to one decoded token. Both now stop at 64 bytes per input byte (+ 4096). */
static void test_replace_growth(void **st) {
    (void)st;
    watchdog(60);
    const char *rep = "{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"},\"content\":\"aa\"}";
    char *js = repeat_json("{" MODEL_A ",\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[", rep, 40, "]}}");
    wick_tokenizer *t = NULL;
    assert_int_equal(wick_tokenizer_load_mem(js, strlen(js), NULL, &t), WICK_OK);
    int32_t ids[64];
    assert_int_equal(wick_tokenize(t, "a", 1, false, ids, 64), INT32_MIN);
    if (!strstr(wick_last_error(), "normalizer makes the text more than 64 times longer"))
        fail_msg("%s", wick_last_error());
    assert_int_equal(wick_tokenize(t, "b", 1, false, ids, 64), 1);  /* no growth: fine */
    wick_tokenizer_free(t);
    free(js);
    /* the same growth within the limit still works: 5 doublings of 100 bytes */
    js = repeat_json("{" MODEL_A ",\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[", rep, 5, "]}}");
    assert_int_equal(wick_tokenizer_load_mem(js, strlen(js), NULL, &t), WICK_OK);
    char text[100];
    memset(text, 'a', sizeof text);
    int32_t *many = malloc(3200 * sizeof *many);
    assert_int_equal(wick_tokenize(t, text, sizeof text, false, many, 3200), 3200);
    free(many);
    wick_tokenizer_free(t);
    free(js);

    js = repeat_json("{" MODEL_A ",\"decoder\":{\"type\":\"Sequence\",\"decoders\":[", rep, 40, "]}}");
    assert_int_equal(wick_tokenizer_load_mem(js, strlen(js), NULL, &t), WICK_OK);
    char buf[64];
    int32_t a = 0, b = 1;
    assert_int_equal(wick_detokenize(t, &a, 1, false, buf, sizeof buf, NULL), WICK_ERR_FORMAT);
    if (!strstr(wick_last_error(), "decoder 12 (Replace) writes more than 64 bytes per byte"))
        fail_msg("%s", wick_last_error());
    size_t ol;
    assert_int_equal(wick_detokenize(t, &b, 1, false, buf, sizeof buf, &ol), WICK_OK);
    assert_string_equal(buf, "b");
    wick_detok *d = NULL;
    assert_int_equal(wick_detok_create(t, false, &d), WICK_OK);
    const char *out;
    assert_int_equal(wick_detok_push(d, 0, &out, &ol), WICK_ERR_FORMAT);
    wick_detok_free(d);
    wick_tokenizer_free(t);
    free(js);
    alarm(0);
}

/* A PCRE2 error (here the match limit of a catastrophically backtracking pattern) was taken for
 * "no more matches": the rest of the text became one piece and was tokenized differently from
 * the pattern's meaning, silently. It is now an error naming PCRE2's reason, in the pre-tokenizer,
 * the normalizer and the decoder. */
static void test_regex_failure_reported(void **st) {
    (void)st;
    watchdog(60);
    static const char *where[] = {
        "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a|a?)+x|.\"},\"behavior\":\"Isolated\"}",
        "\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"(a|a?)+x|c\"},\"content\":\"c\"}",
        "\"decoder\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"(a|a?)+x|c\"},\"content\":\"c\"}",
    };
    const char *text = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";  /* 30: far past PCRE2's match limit */
    for (int k = 0; k < 3; k++) {
        char js[1024];
        snprintf(js, sizeof js, "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"c\":1,\"%s\":2},"
                 "\"merges\":[]},%s}", text, where[k]);
        wick_tokenizer *t = NULL;
        if (wick_tokenizer_load_mem(js, strlen(js), NULL, &t) != WICK_OK) fail_msg("%s", wick_last_error());
        int32_t ids[64];
        if (k < 2) {
            assert_int_equal(wick_tokenize(t, text, strlen(text), false, ids, 64), INT32_MIN);
            if (!strstr(wick_last_error(), "wick_tokenize: a regex of the tokenizer failed: match limit"))
                fail_msg("%s", wick_last_error());
            assert_int_equal(wick_tokenize(t, "c", 1, false, ids, 64), 1);  /* short texts still work */
            assert_int_equal(ids[0], 1);
        } else {
            char buf[64];
            int32_t id = 2;
            assert_int_equal(wick_detokenize(t, &id, 1, false, buf, sizeof buf, NULL), WICK_ERR_FORMAT);
            if (!strstr(wick_last_error(), "detokenize: a regex of the tokenizer failed: match limit"))
                fail_msg("%s", wick_last_error());
            id = 1;
            assert_int_equal(wick_detokenize(t, &id, 1, false, buf, sizeof buf, NULL), WICK_OK);
            assert_string_equal(buf, "c");
        }
        wick_tokenizer_free(t);
    }
    alarm(0);
}

/* BPE looks every character of a word up with continuing_subword_prefix / end_of_word_suffix
 * attached: a 1 MB prefix made each input byte cost 0.8 ms (1 MB of text: 13 minutes). */
static void test_bpe_affix_length(void **st) {
    (void)st;
    watchdog(60);
    enum { L = 1 << 20 };
    for (int k = 0; k < 2; k++) {
        char *js = malloc(L + 256);
        int w = sprintf(js, "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],\"%s\":\"",
                        k ? "end_of_word_suffix" : "continuing_subword_prefix");
        memset(js + w, '#', L);
        strcpy(js + w + L, "\"}}");
        expect_mem(js, strlen(js), WICK_ERR_FORMAT, k ? "model.end_of_word_suffix: longer than 64 bytes"
                                                      : "model.continuing_subword_prefix: longer than 64 bytes");
        free(js);
    }
    alarm(0);
}

/* Added tokens were found by comparing every token that starts with the text's next byte: with
 * 30k added tokens starting alike (a 1.7 MB file) each byte cost up to 30k comparisons (0.35 ms;
 * 1 MB of "a": minutes). The trie finds the same leftmost-longest tokens. */
static void test_many_added_tokens(void **st) {
    (void)st;
    watchdog(60);
    enum { NA = 30000, TL = 1 << 20 };
    char *js = malloc(NA * 64 + 256), *w = js;
    w += sprintf(w, "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"z\":1},\"merges\":[]},\"added_tokens\":[");
    for (int i = 0; i < NA; i++)  /* "a<hex>!" = id i + 2 */
        w += sprintf(w, "%s{\"id\":%d,\"content\":\"a%x!\",\"normalized\":false}", i ? "," : "", i + 2, i);
    strcpy(w, "]}");
    wick_tokenizer *t = NULL;
    assert_int_equal(wick_tokenizer_load_mem(js, strlen(js), NULL, &t), WICK_OK);
    /* "z" (no added token: the model's z = 1), then "a<hex>!" tokens, cycling */
    char *text = malloc(TL + 16);
    int32_t *want = malloc(TL * sizeof *want), *got = malloc(TL * sizeof *got);
    size_t n = 0;
    int nw = 0;
    for (int k = 0; n + 16 < TL; k++) {
        int tok = (k * 7919) % NA;
        text[n++] = 'z';
        want[nw++] = 1;
        n += (size_t)sprintf(text + n, "a%x!", tok);
        want[nw++] = tok + 2;
    }
    assert_int_equal(wick_tokenize(t, text, n, false, got, TL), nw);
    assert_memory_equal(got, want, (size_t)nw * sizeof *want);
    /* the worst case of the old scan: every byte starts 30k candidates, none matches */
    memset(text, 'a', TL);
    assert_int_equal(wick_tokenize(t, text, TL, false, got, TL), TL);
    for (int i = 0; i < TL; i++) assert_int_equal(got[i], 0);
    /* no token starts "a8a" (hex 8a.. is past 30000): a, then "a10!" */
    int32_t ids[8];
    assert_int_equal(wick_tokenize(t, "a8a10!", 6, false, ids, 8), 2);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 0x10 + 2);
    wick_tokenizer_free(t);
    /* nested tokens: the longest wins, a dead end falls back to the last token passed */
    const char *nest = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"x\":0},\"merges\":[]},\"added_tokens\":["
                       "{\"id\":1,\"content\":\"ab\"},{\"id\":2,\"content\":\"abcd\"},{\"id\":3,\"content\":\"b\"},"
                       "{\"id\":4,\"content\":\"ab\"}]}";
    assert_int_equal(wick_tokenizer_load_mem(nest, strlen(nest), NULL, &t), WICK_OK);
    assert_int_equal(wick_tokenize(t, "abcdabcxbab", 11, false, ids, 8), 5);
    int32_t want2[] = {2, 1, 0, 3, 1};  /* abcd | ab c x | b | ab; the first "ab" (id 1) wins */
    assert_memory_equal(ids, want2, sizeof want2);
    free(got);
    free(want);
    free(text);
    wick_tokenizer_free(t);
    free(js);
    alarm(0);
}

/* A word that gives no ids (unknown characters, no unk token) was cached with
 * memcpy(NULL + 0, ...), and a repeat copied from NULL + 0: undefined behaviour that clang's
 * UBSan reports (found by fuzz/fuzz_tokenizer.c; gcc's sanitizer does not flag it). The file's
 * text after "#TEXT#" is what the fuzzer encoded. */
static void test_word_without_ids(void **st) {
    (void)st;
    watchdog(30);
    size_t len;
    char *s = read_regression("tok_encode_word_without_ids.json", &len);
    char *text = strstr(s, "\n#TEXT#\n");
    assert_non_null(text);
    wick_tokenizer *t = NULL;
    assert_int_equal(wick_tokenizer_load_mem(s, (size_t)(text - s), NULL, &t), WICK_OK);
    text += 8;
    int32_t ids[8];
    for (int k = 0; k < 2; k++) {  /* the second call finds the words in the cache */
        assert_int_equal(wick_tokenize(t, text, strlen(text), false, ids, 8), 1);
        assert_int_equal(ids[0], 0);
        assert_int_equal(wick_tokenize(t, "b", 1, false, ids, 8), 0);
    }
    wick_tokenizer_free(t);
    free(s);
    alarm(0);
}

/* Every file of fuzz/regressions/tokenizer/ (new ones included) goes through what the
 * fuzzer does: load (failing is fine), then encode the text after "\n#TEXT#\n" or the fixed
 * texts, and decode. */
static void test_all_regressions(void **st) {
    (void)st;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/fuzz/regressions/tokenizer", WICK_SOURCE_DIR);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        watchdog(30);
        size_t len;
        char *s = read_regression(e->d_name, &len);
        char *text = memmem(s, len, "\n#TEXT#\n", 8);
        wick_tokenizer *t = NULL;
        if (wick_tokenizer_load_mem(s, text ? (size_t)(text - s) : len, NULL, &t) == WICK_OK) {
            exercise(t);
            if (text) {
                int32_t ids[1024];
                int32_t k = wick_tokenize(t, text + 8, len - (size_t)(text + 8 - s), true, ids, 1024);
                char buf[4096];
                if (k > 0) wick_detokenize(t, ids, (size_t)k, false, buf, sizeof buf, NULL);
            }
            wick_tokenizer_free(t);
        }
        free(s);
        alarm(0);
        n++;
    }
    closedir(d);
    assert_true(n >= 5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nul_in_skipped_value),
        cmocka_unit_test(test_long_component_lists),
        cmocka_unit_test(test_deep_sequences),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_strip_bounds),
        cmocka_unit_test(test_metaspace_empty_replacement),
        cmocka_unit_test(test_post_processor_ids),
        cmocka_unit_test(test_wordpiece_long_word),
        cmocka_unit_test(test_tokenize_length_limit),
        cmocka_unit_test(test_replace_growth),
        cmocka_unit_test(test_regex_failure_reported),
        cmocka_unit_test(test_bpe_affix_length),
        cmocka_unit_test(test_many_added_tokens),
        cmocka_unit_test(test_word_without_ids),
        cmocka_unit_test(test_all_regressions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
