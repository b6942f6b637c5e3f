/* test_embed.c — sentence embeddings against fixtures/tiny-bert (BertModel goldens made with
 * transformers and sentence-transformers; tolerance 1e-5 as its README recommends):
 * token ids incl. truncation, unpadded and batched hidden states, pooler output, mean / CLS
 * pooling with and without normalisation, the sentence-transformers folder path end to end,
 * batching and threading invariance, the "bert." name prefix, and clear errors for broken
 * folders and bad arguments. */
#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/safetensors.h"
#include "testutil.h"

#define TOL 1e-5
#define NS 8
#define L 128
#define D 64

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

static char *join(const char *a, const char *b) {
    char *p = malloc(strlen(a) + strlen(b) + 2);
    sprintf(p, "%s/%s", a, b);
    return p;
}

/* The 8 golden texts (malloc'd array of malloc'd strings). */
static char **golden_texts(const char *dir) {
    char *gp = join(dir, "golden.json"), *txt = read_text(gp);
    assert_non_null(txt);
    cJSON *root = cJSON_Parse(txt);
    assert_non_null(root);
    cJSON *sents = cJSON_GetObjectItem(root, "sentences");
    assert_int_equal(cJSON_GetArraySize(sents), NS);
    char **t = calloc(NS, sizeof *t);
    for (int i = 0; i < NS; i++)
        t[i] = strdup(cJSON_GetObjectItem(cJSON_GetArrayItem(sents, i), "text")->valuestring);
    cJSON_Delete(root);
    free(txt);
    free(gp);
    return t;
}

static void free_texts(char **t) {
    for (int i = 0; i < NS; i++) free(t[i]);
    free(t);
}

static wick_embedder *load(const char *dir, const wick_embedder_params *p) {
    wick_embedder *e = NULL;
    if (wick_embedder_load(dir, p, &e) != WICK_OK) fail_msg("load %s: %s", dir, wick_last_error());
    return e;
}

/* Golden batch: ids and mask as int32 (8 x 128). */
static void golden_batch(const char *gf, int32_t **ids, int32_t **mask) {
    int64_t n = 0;
    *ids = tu_load_ids(gf, "input_ids", &n);
    assert_int_equal(n, NS * L);
    *mask = tu_load_ids(gf, "attention_mask", &n);
    assert_int_equal(n, NS * L);
}

static int row_len(const int32_t *mask, int i) {
    int n = 0;
    for (int j = 0; j < L; j++) n += mask[i * L + j];
    return n;
}

static void test_token_ids(void **state) {
    TU_REQUIRE_FIXTURE(dir, "tiny-bert");
    char *gf = join(dir, "golden.safetensors");
    int32_t *ids, *mask;
    golden_batch(gf, &ids, &mask);
    char **texts = golden_texts(dir);
    wick_embedder *e = load(dir, NULL);
    assert_int_equal(wick_embedder_max_length(e), 128);
    assert_int_equal(wick_embedder_pooling(e), WICK_POOLING_MEAN);
    assert_true(wick_embedder_normalize(e));
    assert_int_equal(wick_embedder_dim(e), D);
    int32_t got[L];
    for (int i = 0; i < NS; i++) {
        int n = 0;
        if (wick_embedder_tokenize(e, texts[i], got, L, &n)) fail_msg("%s", wick_last_error());
        assert_int_equal(n, row_len(mask, i));
        assert_memory_equal(got, ids + i * L, sizeof(int32_t) * (size_t)n);
    }
    assert_int_equal(row_len(mask, 7), 128);  /* the truncated one */
    /* too small a buffer reports the count */
    int n = 0;
    assert_int_equal(wick_embedder_tokenize(e, texts[0], got, 3, &n), WICK_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(n, 11);
    wick_embedder_free(e);
    free_texts(texts);
    free(ids);
    free(mask);
    free(gf);
    free(dir);
}

static void check_unpadded(wick_embedder *e, const char *gf, const int32_t *ids,
                           const int32_t *mask, int i, const char *name) {
    int64_t numel = 0;
    float *want = tu_load_f32(gf, name, &numel, NULL, NULL);
    int len = row_len(mask, i);
    assert_int_equal(numel, (int64_t)len * D);
    float *h = malloc(sizeof(float) * (size_t)numel);
    if (wick_embed_ids(e, ids + i * L, NULL, 1, len, NULL, h, NULL))
        fail_msg("%s", wick_last_error());
    double diff = tu_max_abs_diff(h, want, numel);
    fprintf(stderr, "%s: max abs diff %.3g\n", name, diff);
    assert_true(diff <= TOL);
    free(h);
    free(want);
}

static void test_hidden_and_pooling(void **state) {
    TU_REQUIRE_FIXTURE(dir, "tiny-bert");
    char *gf = join(dir, "golden.safetensors");
    int32_t *ids, *mask;
    golden_batch(gf, &ids, &mask);
    wick_embedder *e = load(dir, NULL);
    check_unpadded(e, gf, ids, mask, 0, "s0_last_hidden_state");
    check_unpadded(e, gf, ids, mask, 1, "s1_last_hidden_state");

    /* padded batch: hidden states at valid positions, default embedding, pooler */
    float *h = malloc(sizeof(float) * NS * L * D), *emb = malloc(sizeof(float) * NS * D),
          *pool = malloc(sizeof(float) * NS * D);
    if (wick_embed_ids(e, ids, mask, NS, L, emb, h, pool)) fail_msg("%s", wick_last_error());
    float *want_h = tu_load_f32(gf, "batch_last_hidden_state", NULL, NULL, NULL);
    double worst = 0;
    for (int i = 0; i < NS; i++) {
        int len = row_len(mask, i);
        double dd = tu_max_abs_diff(h + (size_t)i * L * D, want_h + (size_t)i * L * D,
                                    (int64_t)len * D);
        if (dd > worst) worst = dd;
        for (int j = len * D; j < L * D; j++) assert_true(h[(size_t)i * L * D + j] == 0.0f);
    }
    fprintf(stderr, "batch_last_hidden_state (valid rows): max abs diff %.3g\n", worst);
    assert_true(worst <= TOL);
    float *want = tu_load_f32(gf, "mean_pooled_normalized", NULL, NULL, NULL);
    double de = tu_max_abs_diff(emb, want, NS * D);
    free(want);
    want = tu_load_f32(gf, "pooler_output", NULL, NULL, NULL);
    double dp = tu_max_abs_diff(pool, want, NS * D);
    free(want);
    fprintf(stderr, "mean_pooled_normalized %.3g, pooler_output %.3g\n", de, dp);
    assert_true(de <= TOL);
    assert_true(dp <= TOL);
    wick_embedder_free(e);

    /* pooling / normalisation overrides */
    static const struct {
        wick_pooling mode;
        int normalize;
        const char *golden;
    } cases[] = {
        {WICK_POOLING_MEAN, 0, "mean_pooled"},
        {WICK_POOLING_CLS, 0, "cls_pooled"},
        {WICK_POOLING_CLS, 1, "cls_pooled_normalized"},
        {WICK_POOLING_MEAN, 1, "mean_pooled_normalized"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        wick_embedder_params p = wick_embedder_params_default();
        p.pooling = cases[c].mode;
        p.normalize = cases[c].normalize;
        p.batch_size = 3;  /* 8 sequences in 3 batches */
        p.n_threads = 1 + (int)(c % 2);
        e = load(dir, &p);
        if (wick_embed_ids(e, ids, mask, NS, L, emb, NULL, NULL)) fail_msg("%s", wick_last_error());
        want = tu_load_f32(gf, cases[c].golden, NULL, NULL, NULL);
        double d = tu_max_abs_diff(emb, want, NS * D);
        fprintf(stderr, "%s: max abs diff %.3g\n", cases[c].golden, d);
        assert_true(d <= TOL);
        free(want);
        wick_embedder_free(e);
    }
    free(want_h);
    free(h);
    free(emb);
    free(pool);
    free(ids);
    free(mask);
    free(gf);
    free(dir);
}

/* wick_embed on the texts through the sentence-transformers folder description. */
static void test_sentence_transformers(void **state) {
    TU_REQUIRE_FIXTURE(dir, "tiny-bert");
    char *gf = join(dir, "golden_sentence_transformers.safetensors");
    float *want = tu_load_f32(gf, "st_mean_normalized", NULL, NULL, NULL);
    char **texts = golden_texts(dir);
    float *emb = malloc(sizeof(float) * NS * D);
    for (int variant = 0; variant < 3; variant++) {
        wick_embedder_params p = wick_embedder_params_default();
        if (variant == 1) p.batch_size = 1;
        if (variant == 2) {
            p.batch_size = 5;
            p.n_threads = 2;
            p.kernels = "ref";
        }
        wick_embedder *e = load(dir, &p);
        memset(emb, 0, sizeof(float) * NS * D);
        if (wick_embed(e, (const char *const *)texts, NS, emb)) fail_msg("%s", wick_last_error());
        double d = tu_max_abs_diff(emb, want, NS * D);
        fprintf(stderr, "st_mean_normalized (variant %d): max abs diff %.3g\n", variant, d);
        assert_true(d <= TOL);
        /* a second call reuses the scratch and gives the same bits */
        float *again = malloc(sizeof(float) * NS * D);
        assert_int_equal(wick_embed(e, (const char *const *)texts, NS, again), WICK_OK);
        assert_memory_equal(again, emb, sizeof(float) * NS * D);
        free(again);
        assert_int_equal(wick_embed(e, NULL, 0, NULL), WICK_OK);
        wick_embedder_free(e);
    }
    /* a prefix changes the ids exactly by the prefix's tokens */
    wick_embedder_params p = wick_embedder_params_default();
    p.prefix = "query: ";
    wick_embedder *e = load(dir, &p);
    int32_t ids[L];
    int n = 0;
    assert_int_equal(wick_embedder_tokenize(e, "hello", ids, L, &n), WICK_OK);
    int32_t want_ids[] = {101, 23032, 1024, 7592, 102};  /* [CLS] query : hello [SEP] */
    int32_t q = wick_token_id(wick_embedder_tokenizer(e), "query");
    assert_int_equal(q, 23032);
    assert_int_equal(n, 5);
    assert_memory_equal(ids, want_ids, sizeof want_ids);
    wick_embedder_free(e);
    /* max_length override truncates and keeps [SEP] */
    p = wick_embedder_params_default();
    p.max_length = 4;
    e = load(dir, &p);
    assert_int_equal(wick_embedder_tokenize(e, texts[0], ids, L, &n), WICK_OK);
    int32_t cut[] = {101, 7592, 1010, 102};
    assert_int_equal(n, 4);
    assert_memory_equal(ids, cut, sizeof cut);
    wick_embedder_free(e);
    free(emb);
    free_texts(texts);
    free(want);
    free(gf);
    free(dir);
}

/* ---- broken folders -------------------------------------------------------------------- */

static void link_into(const char *src_dir, const char *dst_dir, const char *name) {
    char *a = join(src_dir, name), *b = join(dst_dir, name);
    assert_int_equal(symlink(a, b), 0);
    free(a);
    free(b);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char *p = join(dir, name);
    tu_write_file(p, text, strlen(text));
    free(p);
}

/* Copies the fixture's tensors into dir/model.safetensors, renamed with `prefix`, leaving out
 * names containing `drop` (may be NULL). */
static void write_model(const char *src_dir, const char *dir, const char *prefix,
                        const char *drop, bool drop_pooler) {
    char *sp = join(src_dir, "model.safetensors");
    st_set *s = NULL;
    assert_int_equal(st_open(sp, &s), WICK_OK);
    st_write_tensor *w = calloc((size_t)st_count(s), sizeof *w);
    char **names = calloc((size_t)st_count(s), sizeof *names);
    int n = 0;
    for (int i = 0; i < st_count(s); i++) {
        const st_tensor *t = st_at(s, i);
        if (drop && strcmp(t->name, drop) == 0) continue;
        if (drop_pooler && strncmp(t->name, "pooler.", 7) == 0) continue;
        names[n] = malloc(strlen(prefix) + strlen(t->name) + 1);
        sprintf(names[n], "%s%s", prefix, t->name);
        w[n] = (st_write_tensor){.name = names[n], .dt = t->dt, .ndim = t->ndim, .data = t->data};
        memcpy(w[n].shape, t->shape, sizeof t->shape);
        n++;
    }
    char *dp = join(dir, "model.safetensors");
    assert_int_equal(st_write(dp, w, n, NULL, NULL, 0), WICK_OK);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    free(w);
    free(dp);
    free(sp);
    st_close(s);
}

static void expect_fail(const char *dir, wick_status want, const char *needle) {
    wick_embedder *e = (wick_embedder *)1;
    wick_status st = wick_embedder_load(dir, NULL, &e);
    fprintf(stderr, "expected failure: %s\n", wick_last_error());
    assert_int_equal(st, want);
    assert_null(e);
    if (!strstr(wick_last_error(), needle)) fail_msg("'%s' lacks '%s'", wick_last_error(), needle);
}

static void test_bad_folders(void **state) {
    TU_REQUIRE_FIXTURE(dir, "tiny-bert");
    char *gf = join(dir, "golden.safetensors");
    char *tmp = tu_mkdtemp();
    char *cfg = join(dir, "config.json"), *cfg_text = read_text(cfg);

    /* "bert." prefix, no pooler, vocab.txt only: loads and matches; pooler is NOT_FOUND */
    char *a = join(tmp, "a");
    mkdir(a, 0755);
    write_text(a, "config.json", cfg_text);
    link_into(dir, a, "vocab.txt");
    write_model(dir, a, "bert.", NULL, true);
    wick_embedder *e = load(a, NULL);
    int32_t *ids, *mask;
    golden_batch(gf, &ids, &mask);
    check_unpadded(e, gf, ids, mask, 0, "s0_last_hidden_state");
    float out[D];
    assert_int_equal(wick_embed_ids(e, ids, mask, 1, L, NULL, NULL, out), WICK_ERR_NOT_FOUND);
    /* argument errors: bad mask, id out of range, seq too long */
    int32_t badmask[4] = {1, 0, 1, 0}, id4[4] = {101, 7592, 1010, 102};
    assert_int_equal(wick_embed_ids(e, id4, badmask, 1, 4, out, NULL, NULL), WICK_ERR_INVALID_ARG);
    assert_non_null(strstr(wick_last_error(), "mask row 0"));
    int32_t zero[4] = {0};
    assert_int_equal(wick_embed_ids(e, id4, zero, 1, 4, out, NULL, NULL), WICK_ERR_INVALID_ARG);
    int32_t big[2] = {101, 30522};
    assert_int_equal(wick_embed_ids(e, big, NULL, 1, 2, out, NULL, NULL), WICK_ERR_INVALID_ARG);
    assert_non_null(strstr(wick_last_error(), "30522"));
    int32_t *longids = calloc(200, sizeof *longids);
    assert_int_equal(wick_embed_ids(e, longids, NULL, 1, 200, out, NULL, NULL),
                     WICK_ERR_INVALID_ARG);
    free(longids);
    /* the folder has no modules.json: mean + normalise, max_length = max_position_embeddings */
    const char *t1[] = {"Hello, world! This is a test."};
    assert_int_equal(wick_embed(e, t1, 1, out), WICK_OK);
    float *want = tu_load_f32(gf, "mean_pooled_normalized", NULL, NULL, NULL);
    assert_true(tu_max_abs_diff(out, want, D) <= TOL);
    free(want);
    wick_embedder_free(e);

    /* missing tensor, named with its prefix */
    char *b = join(tmp, "b");
    mkdir(b, 0755);
    write_text(b, "config.json", cfg_text);
    write_model(dir, b, "bert.", "encoder.layer.1.output.dense.bias", false);
    expect_fail(b, WICK_ERR_SHAPE, "missing tensor bert.encoder.layer.1.output.dense.bias");

    /* wrong shape: config says intermediate_size 100 */
    char *c = join(tmp, "c");
    mkdir(c, 0755);
    link_into(dir, c, "model.safetensors");
    char *cfg2 = strdup(cfg_text);
    char *at = strstr(cfg2, "\"intermediate_size\": 128");
    assert_non_null(at);
    memcpy(at + strlen("\"intermediate_size\": "), "100", 3);
    write_text(c, "config.json", cfg2);
    expect_fail(c, WICK_ERR_SHAPE,
                "tensor encoder.layer.0.intermediate.dense.weight has shape [128, 64], "
                "expected [100, 64]");
    /* unsupported architecture (XLM-R and MPNet are test_encoder_arch's) */
    write_text(c, "config.json", "{\"model_type\": \"roberta\", \"hidden_size\": 64}");
    expect_fail(c, WICK_ERR_UNSUPPORTED, "\"roberta\"");
    write_text(c, "config.json", "{\"model_type\": \"bert\", \"hidden_size\": 64}");
    expect_fail(c, WICK_ERR_FORMAT, "vocab_size");

    /* sentence-transformers description errors */
    write_text(c, "config.json", cfg_text);
    write_text(c, "modules.json", "[{\"type\": ");
    expect_fail(c, WICK_ERR_FORMAT, "modules.json: not valid JSON");
    write_text(c, "modules.json",
               "[{\"idx\":0,\"name\":\"0\",\"path\":\"\",\"type\":\"sentence_transformers.models."
               "Transformer\"},{\"idx\":1,\"name\":\"1\",\"path\":\"1_Pooling\",\"type\":"
               "\"sentence_transformers.models.Pooling\"},{\"idx\":2,\"name\":\"2\",\"path\":"
               "\"2_Dense\",\"type\":\"sentence_transformers.models.Dense\"}]");
    char *pd = join(c, "1_Pooling");
    mkdir(pd, 0755);
    expect_fail(c, WICK_ERR_FORMAT, "1_Pooling/config.json: missing");
    write_text(pd, "config.json", "{\"pooling_mode_weightedmean_tokens\": true, "
                                  "\"pooling_mode_mean_tokens\": true}");
    expect_fail(c, WICK_ERR_UNSUPPORTED, "several pooling modes");
    write_text(pd, "config.json", "{\"pooling_mode_cls_token\": true}");
    /* a Dense module is read from its folder (test_encoder_arch checks one that works) */
    expect_fail(c, WICK_ERR_FORMAT, "2_Dense/config.json: missing");
    write_text(c, "modules.json", "{\"a\": 1}");
    expect_fail(c, WICK_ERR_FORMAT, "expected a JSON array");
    write_text(c, "modules.json",
               "[{\"path\":\"\",\"type\":\"sentence_transformers.models.Transformer\"},"
               "{\"path\":\"1_Pooling\",\"type\":\"sentence_transformers.models.Pooling\"}]");
    write_text(c, "sentence_bert_config.json", "{\"max_seq_length\": \"x\"}");
    expect_fail(c, WICK_ERR_FORMAT, "max_seq_length");
    /* a valid folder: CLS pooling without Normalize, max_seq_length 16 */
    write_text(c, "sentence_bert_config.json", "{\"max_seq_length\": 16}");
    e = load(c, NULL);
    assert_int_equal(wick_embedder_pooling(e), WICK_POOLING_CLS);
    assert_false(wick_embedder_normalize(e));
    assert_int_equal(wick_embedder_max_length(e), 16);
    /* no tokenizer in this folder */
    assert_int_equal(wick_embed(e, t1, 1, out), WICK_ERR_UNSUPPORTED);
    wick_embedder_free(e);
    expect_fail("/nonexistent/wick-embed", WICK_ERR_IO, "/nonexistent/wick-embed");

    free(pd);
    free(cfg2);
    free(ids);
    free(mask);
    free(a);
    free(b);
    free(c);
    free(cfg_text);
    free(cfg);
    tu_rmdir_rf(tmp);
    free(tmp);
    free(gf);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_ids),
        cmocka_unit_test(test_hidden_and_pooling),
        cmocka_unit_test(test_sentence_transformers),
        cmocka_unit_test(test_bad_folders),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
