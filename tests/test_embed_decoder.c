/* test_embed_decoder.c — decoder models as embedders against tests/data/arch/qwen3_embed
 * (transformers 5.17.0, sentence-transformers 6.0.1; tests/golden/arch_goldens.py
 * fam_qwen3_embed): a Qwen3-Embedding-shaped folder — the base Qwen3Model saved without the
 * "model." prefix and without lm_head, a byte-level BPE whose post-processor appends
 * <|endoftext|>, last-token pooling + Normalize, a "query" instruction prompt.
 * Checked: token ids with truncation to max_seq_length (the appended <|endoftext|> stays
 * last), the last hidden state of each text alone, packed together and split over forward
 * calls, sentence-transformers embeddings with last-token, weighted-mean and mean pooling,
 * with the prompt, and the errors around prompts, the pooler and headless checkpoints.
 * Tolerance 1e-5 as the other embedding goldens; the worst error of each check is printed. */
#include <cjson/cJSON.h>
#include <math.h>
#include <sys/stat.h>

#include "embed/embed.h"
#include "testutil.h"

#define TOL 1e-5
#define NS 9
#define D 64

static char *dir_path(void) { return strdup(WICK_SOURCE_DIR "/tests/data/arch/qwen3_embed"); }
static char *golden_file(void) {
    return strdup(WICK_SOURCE_DIR "/tests/data/arch/qwen3_embed/golden.safetensors");
}

/* the golden texts (golden.json) */
static void texts_load(char **t) {
    char *txt = tu_read_text(WICK_SOURCE_DIR "/tests/data/arch/qwen3_embed/golden.json");
    assert_non_null(txt);
    cJSON *root = cJSON_Parse(txt), *s = cJSON_GetObjectItem(root, "sentences");
    assert_int_equal(cJSON_GetArraySize(s), NS);
    for (int i = 0; i < NS; i++)
        t[i] = strdup(cJSON_GetObjectItem(cJSON_GetArrayItem(s, i), "text")->valuestring);
    cJSON_Delete(root);
    free(txt);
}

static void texts_free(char **t) {
    for (int i = 0; i < NS; i++) free(t[i]);
}

static double check(const char *what, const float *got, const float *want, int64_t n) {
    double d = tu_max_abs_diff(got, want, n);
    fprintf(stderr, "  %-44s max abs diff %.3g\n", what, d);
    assert_true(d <= TOL);
    return d;
}

static wick_embedder *load(const wick_embedder_params *p) {
    char *dir = dir_path();
    wick_embedder *e = NULL;
    if (wick_embedder_load(dir, p, &e) != WICK_OK) fail_msg("load %s: %s", dir, wick_last_error());
    free(dir);
    return e;
}

static void test_tokenize(void **state) {
    (void)state;
    wick_embedder *e = load(NULL);
    assert_int_equal(wick_embedder_max_length(e), 64);
    assert_int_equal(wick_embedder_pooling(e), WICK_POOLING_LAST_TOKEN);
    assert_true(wick_embedder_normalize(e));
    assert_int_equal(wick_embedder_dim(e), D);
    char *t[NS], *gf = golden_file();
    texts_load(t);
    int truncated = 0;
    for (int i = 0; i < NS; i++) {
        char key[32];
        snprintf(key, sizeof key, "s%d_input_ids", i);
        int64_t n = 0;
        int32_t *want = tu_load_ids(gf, key, &n);
        int32_t got[128];
        int len = 0;
        assert_int_equal(wick_embedder_tokenize(e, t[i], got, 128, &len), WICK_OK);
        assert_int_equal(len, n);
        for (int j = 0; j < len; j++)
            if (got[j] != want[j]) fail_msg("text %d: id %d is %d, expected %d", i, j, got[j], want[j]);
        assert_int_equal(got[len - 1], 0); /* <|endoftext|> */
        truncated += len == 64;
        free(want);
    }
    assert_true(truncated >= 1); /* the long text was cut and kept its <|endoftext|> */
    texts_free(t);
    free(gf);
    wick_embedder_free(e);
}

/* hidden states of the golden ids through wick_embed_ids: alone, then all in one call */
static void test_hidden_states(void **state) {
    (void)state;
    wick_embedder_params p = wick_embedder_params_default();
    p.n_threads = 2;
    wick_embedder *e = load(&p);
    char *gf = golden_file();
    int32_t *ids[NS];
    int64_t len[NS];
    int maxl = 0;
    for (int i = 0; i < NS; i++) {
        char key[32];
        snprintf(key, sizeof key, "s%d_input_ids", i);
        ids[i] = tu_load_ids(gf, key, &len[i]);
        maxl = len[i] > maxl ? (int)len[i] : maxl;
    }
    fprintf(stderr, "qwen3_embed hidden states:\n");
    /* a padded batch of all texts (right padding with mask) and each text alone */
    int32_t *pad = calloc((size_t)NS * maxl, sizeof(int32_t)), *mask = calloc((size_t)NS * maxl, sizeof(int32_t));
    for (int i = 0; i < NS; i++)
        for (int j = 0; j < len[i]; j++) pad[i * maxl + j] = ids[i][j], mask[i * maxl + j] = 1;
    float *hb = malloc(sizeof(float) * (size_t)NS * maxl * D);
    assert_int_equal(wick_embed_ids(e, pad, mask, NS, maxl, NULL, hb, NULL), WICK_OK);
    for (int i = 0; i < NS; i++) {
        char key[48], name[64];
        snprintf(key, sizeof key, "s%d_last_hidden_state", i);
        int64_t n = 0;
        float *want = tu_load_f32(gf, key, &n, NULL, NULL);
        assert_int_equal(n, len[i] * D);
        float *h = malloc(sizeof(float) * (size_t)n);
        assert_int_equal(wick_embed_ids(e, ids[i], NULL, 1, (int)len[i], NULL, h, NULL), WICK_OK);
        check(key, h, want, n);
        snprintf(name, sizeof name, "%s (batch of %d)", key, NS);
        check(name, hb + (size_t)i * maxl * D, want, n);
        for (int64_t k = n; k < (int64_t)maxl * D; k++) assert_true(hb[(size_t)i * maxl * D + k] == 0);
        free(h);
        free(want);
    }
    /* no pooler in a decoder */
    float pooler[D];
    assert_int_equal(wick_embed_ids(e, ids[0], NULL, 1, (int)len[0], NULL, NULL, pooler),
                     WICK_ERR_NOT_FOUND);
    for (int i = 0; i < NS; i++) free(ids[i]);
    free(pad), free(mask), free(hb), free(gf);
    wick_embedder_free(e);
}

/* 40 texts of up to 64 ids in one run: more rows than one forward call takes, so texts are
   split across calls and continue on their KV blocks. The last-token states must equal the
   texts run alone (bit for bit is not required: the row count changes the kernels' split). */
static void test_split_calls(void **state) {
    (void)state;
    char *dir = dir_path();
    wk_pool *pool = pool_create(2);
    embed_decoder *d = NULL;
    assert_int_equal(embed_decoder_load(dir, "auto", pool, &d), WICK_OK);
    char *gf = golden_file();
    enum { N = 40 };
    int lens[N], T = 0;
    int32_t *all = malloc(sizeof(int32_t) * N * 64);
    float *want = malloc(sizeof(float) * N * D), *got = malloc(sizeof(float) * N * D);
    for (int i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof key, "s%d_input_ids", i % NS);
        int64_t n = 0;
        int32_t *ids = tu_load_ids(gf, key, &n);
        lens[i] = (int)n - (i / NS) * 3; /* varied lengths */
        if (lens[i] < 1) lens[i] = 1;
        memcpy(all + T, ids, sizeof(int32_t) * (size_t)lens[i]);
        assert_int_equal(embed_decoder_run(d, ids, &lens[i], 1, false, want + (size_t)i * D), WICK_OK);
        T += lens[i];
        free(ids);
    }
    assert_true(T > 1024);
    assert_int_equal(embed_decoder_run(d, all, lens, N, false, got), WICK_OK);
    check("last rows, 40 texts over several calls", got, want, (int64_t)N * D);
    /* every row too */
    float *rows = malloc(sizeof(float) * (size_t)T * D);
    assert_int_equal(embed_decoder_run(d, all, lens, N, true, rows), WICK_OK);
    double worst = 0;
    for (int i = 0, off = 0; i < N; off += lens[i], i++) {
        double x = tu_max_abs_diff(rows + (size_t)(off + lens[i] - 1) * D, want + (size_t)i * D, D);
        worst = x > worst ? x : worst;
    }
    fprintf(stderr, "  all rows: last row of each text           max abs diff %.3g\n", worst);
    assert_true(worst <= TOL);
    free(rows), free(all), free(want), free(got), free(gf), free(dir);
    embed_decoder_free(d);
    pool_free(pool);
}

static void embed_check(const char *what, wick_pooling pooling, const char *prompt_name,
                        int batch, const char *key) {
    wick_embedder_params p = wick_embedder_params_default();
    p.pooling = pooling;
    p.prompt_name = prompt_name;
    p.batch_size = batch;
    p.n_threads = 2;
    wick_embedder *e = load(&p);
    char *t[NS], *gf = golden_file();
    texts_load(t);
    float out[NS * D];
    assert_int_equal(wick_embed(e, (const char *const *)t, NS, out), WICK_OK);
    int64_t n = 0;
    float *want = tu_load_f32(gf, key, &n, NULL, NULL);
    assert_int_equal(n, NS * D);
    check(what, out, want, n);
    free(want);
    texts_free(t);
    free(gf);
    wick_embedder_free(e);
}

static void test_embeddings(void **state) {
    (void)state;
    fprintf(stderr, "qwen3_embed sentence-transformers embeddings:\n");
    embed_check("last token (folder), batch 32", WICK_POOLING_DEFAULT, NULL, 32, "st_embeddings");
    embed_check("last token, batch 4 (st: left padding)", WICK_POOLING_LAST_TOKEN, NULL, 4,
                "st_embeddings_batch4");
    embed_check("last token, batch 1", WICK_POOLING_LAST_TOKEN, "", 1, "st_embeddings");
    embed_check("query prompt", WICK_POOLING_DEFAULT, "query", 3, "st_query_embeddings");
    embed_check("weighted mean", WICK_POOLING_WEIGHTED_MEAN, NULL, 32, "st_weightedmean_embeddings");
    embed_check("mean", WICK_POOLING_MEAN, NULL, 32, "st_mean_embeddings");
}

static void test_errors(void **state) {
    (void)state;
    char *dir = dir_path();
    wick_embedder *e = NULL;
    wick_embedder_params p = wick_embedder_params_default();
    p.prompt_name = "passage";
    assert_int_equal(wick_embedder_load(dir, &p, &e), WICK_ERR_NOT_FOUND);
    assert_null(e);
    assert_non_null(strstr(wick_last_error(), "\"passage\""));
    assert_non_null(strstr(wick_last_error(), "\"query\""));
    p.prompt_name = "query";
    p.prefix = "x: ";
    assert_int_equal(wick_embedder_load(dir, &p, &e), WICK_ERR_INVALID_ARG);
    p = wick_embedder_params_default();
    p.pooling = (wick_pooling)99;
    assert_int_equal(wick_embedder_load(dir, &p, &e), WICK_ERR_INVALID_ARG);
    p = wick_embedder_params_default();
    p.max_length = 300; /* max_position_embeddings 256 */
    assert_int_equal(wick_embedder_load(dir, &p, &e), WICK_ERR_INVALID_ARG);
    assert_non_null(strstr(wick_last_error(), "256"));

    /* the tied base model loads for generation too; untied without lm_head only embeds */
    wick_model *m = NULL;
    assert_int_equal(wick_model_load(dir, NULL, &m), WICK_OK);
    wick_model_free(m);
    char *tmp = tu_mkdtemp(), cmd[1024];
    snprintf(cmd, sizeof cmd, "cp -r %s/. %s/ && sed -i 's/\"tie_word_embeddings\": true/"
             "\"tie_word_embeddings\": false/' %s/config.json", dir, tmp, tmp);
    assert_int_equal(system(cmd), 0);
    assert_int_not_equal(wick_model_load(tmp, NULL, &m), WICK_OK);
    assert_null(m);
    assert_non_null(strstr(wick_last_error(), "lm_head.weight"));
    assert_int_equal(wick_embedder_load(tmp, NULL, &e), WICK_OK);
    const char *t = "Hello, world! This is a test.";
    float a[D], b[D];
    assert_int_equal(wick_embed(e, &t, 1, a), WICK_OK);
    wick_embedder_free(e);
    assert_int_equal(wick_embedder_load(dir, NULL, &e), WICK_OK);
    assert_int_equal(wick_embed(e, &t, 1, b), WICK_OK);
    assert_memory_equal(a, b, sizeof a);
    wick_embedder_free(e);
    /* a prompt file with a bad field */
    snprintf(cmd, sizeof cmd, "%s/config_sentence_transformers.json", tmp);
    const char *bad = "{\"prompts\": {\"query\": 3}}";
    tu_write_file(cmd, bad, strlen(bad));
    assert_int_equal(wick_embedder_load(tmp, NULL, &e), WICK_ERR_FORMAT);
    assert_non_null(strstr(wick_last_error(), "prompts.query"));
    const char *bad2 = "{\"prompts\": {\"query\": \"q: \"}, \"default_prompt_name\": \"doc\"}";
    tu_write_file(cmd, bad2, strlen(bad2));
    assert_int_equal(wick_embedder_load(tmp, NULL, &e), WICK_ERR_FORMAT);
    assert_non_null(strstr(wick_last_error(), "default_prompt_name"));
    tu_rmdir_rf(tmp);
    free(tmp);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenize),    cmocka_unit_test(test_hidden_states),
        cmocka_unit_test(test_split_calls), cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
