/* test_gguf_spm.c — SentencePiece-style (`llama`) tokenizers in GGUF metadata, as llama.cpp
 * writes them for Llama 2 / Mistral / TinyLlama: pieces + scores + types, no merges.
 *
 * The Llama 2 tokenizer (scripts/fetch-tokenizers.sh puts it in third_party/tokenizers/llama2;
 * WICK_LLAMA2_TOKENIZER overrides) goes folder -> GGUF metadata with only the tokenizer.ggml.*
 * keys (tokenizer.huggingface.json, which wick would otherwise use, is dropped) -> a .gguf
 * file -> model_gguf_tokenizer_json -> tokenizer. Checked:
 *  - the merge list rebuilt from scores equals the 58980 merges of tokenizer.json, in order;
 *  - encode (with and without BOS) and decode of 48 texts equal the reference ids/texts of
 *    tests/data/llama2_encode_golden.json (transformers.js, see gen_llama2_golden.js), and
 *    equal what the tokenizer.json tokenizer gives;
 *  - a model .gguf whose only tokenizer is those keys loads with it (wick_model_load), tokenizes
 *    like tokenizer.json (BOS first) and evaluates;
 *  - malformed metadata (scores of the wrong length, a repeated piece, an unknown tokenizer
 *    model) is refused with the key named. */
#include <cjson/cJSON.h>
#include <math.h>

#include "base/fileio.h"
#include "model/gguf_tok.h"
#include "model/model_gguf.h"
#include "model/random.h"
#include "testutil.h"

static char *llama2_dir(void) {
    const char *e = getenv("WICK_LLAMA2_TOKENIZER");
    char *d = e ? strdup(e) : path_join(WICK_SOURCE_DIR, "third_party/tokenizers/llama2");
    char *tj = path_join(d, "tokenizer.json");
    bool ok = file_exists(tj);
    free(tj);
    if (ok) return d;
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0)
        fail_msg("%s/tokenizer.json missing under CI=true (run scripts/fetch-tokenizers.sh)", d);
    fprintf(stderr, "SKIP: %s/tokenizer.json not found (run scripts/fetch-tokenizers.sh)\n", d);
    free(d);
    return NULL;
}

/* Writes the folder's tokenizer as a GGUF holding only tokenizer.ggml.* keys. */
static char *write_ggml_only(const char *tokdir, const char *tmp) {
    gguf_tok_meta tm;
    if (gguf_tok_meta_from_folder(tokdir, &tm)) fail_msg("%s", wick_last_error());
    gguf_kv kv[32];
    int n = 0;
    for (int i = 0; i < tm.n; i++)
        if (strncmp(tm.kv[i].key, "tokenizer.ggml.", 15) == 0) kv[n++] = tm.kv[i];
    assert_true(n >= 8);
    char *path = path_join(tmp, "tok.gguf");
    if (gguf_write(path, kv, n, NULL, 0)) fail_msg("%s", wick_last_error());
    gguf_tok_meta_free(&tm);
    return path;
}

static cJSON *load_json(const char *path) {
    char *text = NULL;
    if (file_read_all(path, &text, NULL)) fail_msg("%s", wick_last_error());
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_non_null(j);
    return j;
}

static void test_llama2_from_gguf(void **state) {
    (void)state;
    char *dir = llama2_dir();
    if (!dir) return;
    char *tmp = tu_mkdtemp();
    char *gpath = write_ggml_only(dir, tmp);
    gguf_file *g = NULL;
    assert_int_equal(gguf_open(gpath, &g), WICK_OK);
    assert_null(gguf_find_kv(g, "tokenizer.huggingface.json"));
    assert_null(gguf_find_kv(g, "tokenizer.ggml.merges"));
    assert_non_null(gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_F32, NULL));
    char *tj = NULL, *tc = NULL;
    if (model_gguf_tokenizer_json(g, &tj, &tc)) fail_msg("%s", wick_last_error());

    /* merges rebuilt from the scores == tokenizer.json's list, in order */
    char *src_tj = path_join(dir, "tokenizer.json");
    cJSON *src = load_json(src_tj), *got = cJSON_Parse(tj);
    assert_non_null(got);
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(src, "model"), "merges");
    const cJSON *mg = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(got, "model"), "merges");
    assert_int_equal(cJSON_GetArraySize(ms), 58980);
    assert_int_equal(cJSON_GetArraySize(mg), cJSON_GetArraySize(ms));
    const cJSON *a = ms->child, *b = mg->child;
    for (int i = 0; a && b; i++, a = a->next, b = b->next) {
        char joined[512];
        snprintf(joined, sizeof joined, "%s %s", b->child->valuestring, b->child->next->valuestring);
        if (strcmp(a->valuestring, joined) != 0)
            fail_msg("merge %d: tokenizer.json '%s', rebuilt '%s'", i, a->valuestring, joined);
    }
    cJSON_Delete(got);
    cJSON_Delete(src);

    wick_tokenizer *tg = NULL, *tf = NULL;
    if (wick_tokenizer_load_mem(tj, strlen(tj), tc, &tg)) fail_msg("%s", wick_last_error());
    assert_int_equal(wick_tokenizer_load(dir, &tf), WICK_OK);
    assert_int_equal(wick_tokenizer_vocab_size(tg), 32000);

    char *gold_path = path_join(WICK_SOURCE_DIR, "tests/data/llama2_encode_golden.json");
    cJSON *gold = load_json(gold_path);
    const cJSON *c;
    int n_cases = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(gold, "cases")) {
        const char *name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
        const char *hex = cJSON_GetObjectItemCaseSensitive(c, "text_utf8_hex")->valuestring;
        const size_t len = strlen(hex) / 2;
        char *text = malloc(len + 1);
        for (size_t i = 0; i < len; i++) {
            unsigned v;
            assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
            text[i] = (char)v;
        }
        text[len] = 0;
        const int cap = (int)len * 4 + 16;
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap), *idf = malloc(sizeof(int32_t) * (size_t)cap);
        for (int special = 0; special < 2; special++) {
            const cJSON *want = cJSON_GetObjectItemCaseSensitive(c, special ? "ids_with_special" : "ids");
            int32_t n = wick_tokenize(tg, text, len, special, ids, cap);
            int32_t nf = wick_tokenize(tf, text, len, special, idf, cap);
            if (n != cJSON_GetArraySize(want))
                fail_msg("%s (special=%d): %d ids, reference %d", name, special, n, cJSON_GetArraySize(want));
            int i = 0;
            const cJSON *w;
            cJSON_ArrayForEach(w, want) {
                if (ids[i] != (int32_t)w->valuedouble)
                    fail_msg("%s (special=%d): id %d is %d, reference %d", name, special, i, ids[i],
                             (int)w->valuedouble);
                i++;
            }
            assert_int_equal(n, nf);
            assert_memory_equal(ids, idf, sizeof(int32_t) * (size_t)n);
            if (!special) {
                size_t need = 0;
                char *buf = malloc(len * 4 + 64);
                assert_int_equal(wick_detokenize(tg, ids, (size_t)n, false, buf, len * 4 + 64, &need), WICK_OK);
                /* decoded texts with NUL cannot be compared through cJSON strings */
                const char *dec = cJSON_GetObjectItemCaseSensitive(c, "decoded")->valuestring;
                if (memchr(text, 0, len) == NULL && strcmp(buf, dec) != 0)
                    fail_msg("%s: decoded '%s', reference '%s'", name, buf, dec);
                free(buf);
            }
        }
        free(ids);
        free(idf);
        free(text);
        n_cases++;
    }
    assert_int_equal(n_cases, 48);
    cJSON_Delete(gold);
    wick_tokenizer_free(tg);
    wick_tokenizer_free(tf);
    free(tj);
    free(tc);
    gguf_close(g);
    tu_rmdir_rf(tmp);
    free(tmp); free(gpath); free(src_tj); free(gold_path); free(dir);
}

/* A model GGUF whose only tokenizer is the tokenizer.ggml.* keys of Llama 2 loads with that
 * tokenizer through wick_model_load (a .gguf alone is enough), tokenizes like tokenizer.json,
 * and evaluates the ids. */
static void test_model_gguf_alone(void **state) {
    (void)state;
    char *dir = llama2_dir();
    if (!dir) return;
    char *tmp = tu_mkdtemp(), *src = path_join(tmp, "src"), *gpath = path_join(tmp, "m.gguf");
    assert_int_equal(random_model_write("tiny", src, 5, DT_F32, NULL), WICK_OK);
    wick_model *m = NULL, *g = NULL;
    wick_model_params mp = wick_model_params_default();
    mp.load_tokenizer = false;
    assert_int_equal(wick_model_load(src, &mp, &m), WICK_OK);
    gguf_tok_meta tm;
    if (gguf_tok_meta_from_folder(dir, &tm)) fail_msg("%s", wick_last_error());
    gguf_kv kv[32];
    int n = 0;
    for (int i = 0; i < tm.n; i++)
        if (strncmp(tm.kv[i].key, "tokenizer.ggml.", 15) == 0) kv[n++] = tm.kv[i];
    if (model_gguf_save(m, gpath, DT_Q8_0, kv, n)) fail_msg("%s", wick_last_error());
    gguf_tok_meta_free(&tm);
    if (wick_model_load(gpath, NULL, &g)) fail_msg("%s", wick_last_error());
    const wick_tokenizer *tg = wick_model_tokenizer(g);
    assert_non_null(tg);
    wick_tokenizer *tf = NULL;
    assert_int_equal(wick_tokenizer_load(dir, &tf), WICK_OK);
    const char *texts[] = {"Hello world", "  two  spaces\nand a newline", "naïve café 東京 🙂"};
    for (int t = 0; t < 3; t++) {
        int32_t a[64], b[64];
        int32_t na = wick_tokenize(tg, texts[t], strlen(texts[t]), true, a, 64);
        int32_t nb = wick_tokenize(tf, texts[t], strlen(texts[t]), true, b, 64);
        assert_true(na > 1 && a[0] == 1); /* BOS first */
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, sizeof(int32_t) * (size_t)na);
        wick_session *s = NULL;
        float *logits = malloc(sizeof(float) * (size_t)g->cfg.n_vocab);
        assert_int_equal(wick_session_create(g, NULL, &s), WICK_OK);
        if (wick_session_eval(s, a, na, WICK_LOGITS_LAST, logits)) fail_msg("%s", wick_last_error());
        assert_true(isfinite(logits[0]));
        wick_session_free(s);
        free(logits);
    }
    wick_tokenizer_free(tf);
    wick_model_free(g);
    wick_model_free(m);
    tu_rmdir_rf(tmp);
    free(tmp); free(src); free(gpath); free(dir);
}

/* A small SentencePiece vocabulary, written with chosen keys, for the error paths. */
static wick_status spm_json_of(const char *tmp, const char *model, const char *const *pieces,
                               int n, int n_scores, char **tj, char **tc) {
    gguf_value toks[8], scores[8], types[8];
    for (int i = 0; i < n; i++) {
        /* "a\0b" (written as "a@b") is a piece with a NUL byte */
        toks[i] = (gguf_value){.type = GGUF_STRING, .str = {pieces[i], strlen(pieces[i])}};
        if (strcmp(pieces[i], "a@b") == 0) toks[i].str.s = "a\0b";
        scores[i] = gguf_v_f32(strcmp(pieces[i], "ab") == 0 ? NAN : (float)-i);
        types[i] = gguf_v_i32(i == 0 ? 2 : 1);
    }
    gguf_kv kv[4] = {{"tokenizer.ggml.model", gguf_v_str(model)}};
    kv[1].key = "tokenizer.ggml.tokens";
    kv[1].v = (gguf_value){.type = GGUF_ARRAY, .arr = {GGUF_STRING, (uint64_t)n, toks}};
    kv[2].key = "tokenizer.ggml.scores";
    kv[2].v = (gguf_value){.type = GGUF_ARRAY, .arr = {GGUF_F32, (uint64_t)n_scores, scores}};
    kv[3].key = "tokenizer.ggml.token_type";
    kv[3].v = (gguf_value){.type = GGUF_ARRAY, .arr = {GGUF_I32, (uint64_t)n, types}};
    char *path = path_join(tmp, "small.gguf");
    assert_int_equal(gguf_write(path, kv, 4, NULL, 0), WICK_OK);
    gguf_file *g = NULL;
    assert_int_equal(gguf_open(path, &g), WICK_OK);
    wick_status st = model_gguf_tokenizer_json(g, tj, tc);
    gguf_close(g);
    free(path);
    return st;
}

static void test_bad_metadata(void **state) {
    (void)state;
    char *tmp = tu_mkdtemp(), *tj = NULL, *tc = NULL;
    const char *ok[] = {"<unk>", "a", "b", "ab", "\xe2\x96\x81" "ab"};
    assert_int_equal(spm_json_of(tmp, "llama", ok, 5, 5, &tj, &tc), WICK_OK);
    wick_tokenizer *t = NULL;
    if (wick_tokenizer_load_mem(tj, strlen(tj), tc, &t)) fail_msg("%s", wick_last_error());
    assert_int_equal(wick_tokenizer_vocab_size(t), 5);
    wick_tokenizer_free(t);
    free(tj);
    free(tc);
    assert_int_equal(spm_json_of(tmp, "llama", ok, 5, 4, &tj, &tc), WICK_ERR_FORMAT);
    assert_non_null(strstr(wick_last_error(), "tokenizer.ggml.scores"));
    assert_null(tj);
    const char *dup[] = {"<unk>", "a", "b", "a"};
    assert_int_equal(spm_json_of(tmp, "llama", dup, 4, 4, &tj, &tc), WICK_ERR_FORMAT);
    assert_non_null(strstr(wick_last_error(), "tokenizer.ggml.tokens[3]"));
    const char *nul[] = {"<unk>", "a", "a@b"};
    assert_int_equal(spm_json_of(tmp, "llama", nul, 3, 3, &tj, &tc), WICK_ERR_FORMAT);
    assert_non_null(strstr(wick_last_error(), "tokenizer.ggml.tokens[2] contains a NUL"));
    assert_int_equal(spm_json_of(tmp, "t5", ok, 5, 5, &tj, &tc), WICK_ERR_UNSUPPORTED);
    assert_non_null(strstr(wick_last_error(), "'t5'"));
    tu_rmdir_rf(tmp);
    free(tmp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama2_from_gguf),
        cmocka_unit_test(test_model_gguf_alone),
        cmocka_unit_test(test_bad_metadata),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
