/* test_encoder_arch.c — the encoder families beside BERT against tests/data/arch goldens
 * (transformers 5.17.0, sentence-transformers 6.0.1; tests/golden/arch_goldens.py):
 *   mpnet: MPNetModel (relative position bias, positions from padding_idx + 1, no token
 *          types) + mean pooling + Dense 64→32 Tanh + Normalize, end to end from text;
 *   xlmr:  XLMRobertaModel (positions from pad_token_id + 1) + mean pooling + Normalize,
 *          driven by the golden token ids (its Unigram tokenizer is not wick's yet, and the
 *          golden's tokenizer maps every word to <unk>).
 * Checked: every layer's hidden state of one sentence, the last hidden state of each
 * sentence alone and packed together, the padded batch through wick_embed_ids, mean pooling,
 * Dense before and after Normalize, sentence-transformers embeddings, MPNet's buckets, and
 * clear errors for configs and Dense modules wick cannot run. Tolerance 1e-5 as the BERT
 * goldens (test_embed.c); the worst error of each comparison is printed. */
#include <cjson/cJSON.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "embed/embed.h"
#include "formats/safetensors.h"
#include "kernels/kernels.h"
#include "model/encoder.h"
#include "testutil.h"

#define TOL 1e-5
#define NS 9
#define D 64

static char *join(const char *a, const char *b) {
    char *p = malloc(strlen(a) + strlen(b) + 2);
    sprintf(p, "%s/%s", a, b);
    return p;
}

static char *arch_dir(const char *fam) {
    return join(WICK_SOURCE_DIR "/tests/data/arch", fam);
}

/* golden.json: the texts and their token ids. */
typedef struct golden {
    char *text[NS];
    int32_t *ids[NS];
    int len[NS];
} golden;

static void golden_load(const char *dir, golden *g) {
    char *gp = join(dir, "golden.json"), *txt = tu_read_text(gp);
    assert_non_null(txt);
    cJSON *root = cJSON_Parse(txt);
    assert_non_null(root);
    cJSON *sents = cJSON_GetObjectItem(root, "sentences");
    assert_int_equal(cJSON_GetArraySize(sents), NS);
    for (int i = 0; i < NS; i++) {
        cJSON *s = cJSON_GetArrayItem(sents, i), *ids = cJSON_GetObjectItem(s, "ids");
        g->text[i] = strdup(cJSON_GetObjectItem(s, "text")->valuestring);
        g->len[i] = cJSON_GetArraySize(ids);
        g->ids[i] = malloc(sizeof(int32_t) * (size_t)g->len[i]);
        for (int j = 0; j < g->len[i]; j++)
            g->ids[i][j] = (int32_t)cJSON_GetArrayItem(ids, j)->valuedouble;
    }
    cJSON_Delete(root);
    free(txt);
    free(gp);
}

static void golden_free(golden *g) {
    for (int i = 0; i < NS; i++) {
        free(g->text[i]);
        free(g->ids[i]);
    }
}

static double check(const char *what, const float *got, const float *want, int64_t n) {
    double d = tu_max_abs_diff(got, want, n);
    fprintf(stderr, "  %-40s max abs diff %.3g\n", what, d);
    assert_true(d <= TOL);
    return d;
}

/* ---- MPNet's buckets by hand from the formula ------------------------------------------- */

static void test_mpnet_buckets(void **state) {
    (void)state;
    /* rel = key - query; keys before the query take buckets [0, 16), after it [16, 32) */
    static const int cases[][2] = {
        {0, 0},    {-1, 1},   {-7, 7},    {1, 17},    {7, 23},    {-8, 8},    {8, 24},
        {-11, 8},  {-12, 9},  {-16, 10},  {-32, 12},  {-64, 14},  {-127, 15}, {-128, 15},
        {-500, 15}, {127, 31}, {500, 31},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = encoder_mpnet_bucket(cases[i][0]);
        if (got != cases[i][1])
            fail_msg("bucket(%d) = %d, expected %d", cases[i][0], got, cases[i][1]);
    }
}

/* ---- the network on golden ids ---------------------------------------------------------- */

/* Runs m over the packed ids of sequences [0, n) of g (all layers, or the first n_layer). */
static void forward(encoder_model *m, encoder_scratch *s, const golden *g, const int *which,
                    int n, int n_layer) {
    int T = 0, lens[NS];
    for (int i = 0; i < n; i++) {
        lens[i] = g->len[which[i]];
        T += lens[i];
    }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
    for (int i = 0, o = 0; i < n; o += lens[i], i++)
        memcpy(ids + o, g->ids[which[i]], sizeof(int32_t) * (size_t)lens[i]);
    assert_int_equal(encoder_scratch_reserve(s, &m->cfg, T), WICK_OK);
    const int saved = m->cfg.n_layer;
    m->cfg.n_layer = n_layer;  /* the hidden state after n_layer layers */
    encoder_forward(m, kernels_select("ref"), NULL, s, ids, NULL, lens, n);
    m->cfg.n_layer = saved;
    free(ids);
}

static double model_goldens(const char *fam) {
    char *dir = arch_dir(fam), *gf = join(dir, "golden.safetensors");
    golden g;
    golden_load(dir, &g);
    encoder_model *m = NULL;
    if (encoder_load(dir, &m) != WICK_OK) fail_msg("load %s: %s", dir, wick_last_error());
    encoder_scratch s = {0};
    double worst = 0, err_last = 0;
    char name[64];
    fprintf(stderr, "%s (%s):\n", fam, m->cfg.architecture);
    /* sentence 1 after the embeddings and after each layer */
    for (int L = 0; L <= m->cfg.n_layer; L++) {
        int one = 1;
        forward(m, &s, &g, &one, 1, L);
        snprintf(name, sizeof name, "s1_hidden%d", L);
        int64_t n = 0;
        float *want = tu_load_f32(gf, name, &n, NULL, NULL);
        assert_int_equal(n, (int64_t)g.len[1] * D);
        double d = check(name, s.x, want, n);
        worst = d > worst ? d : worst;
        free(want);
    }
    /* each sentence alone, then all packed in one batch (in reverse order) */
    int all[NS];
    for (int i = 0; i < NS; i++) all[i] = NS - 1 - i;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) forward(m, &s, &g, all, NS, m->cfg.n_layer);
        long off = 0;
        for (int k = 0; k < NS; k++) {
            int i = pass ? all[k] : k;
            if (pass == 0) forward(m, &s, &g, &i, 1, m->cfg.n_layer);
            snprintf(name, sizeof name, "s%d_last_hidden_state%s", i, pass ? " (packed)" : "");
            int64_t n = 0;
            char key[64];
            snprintf(key, sizeof key, "s%d_last_hidden_state", i);
            float *want = tu_load_f32(gf, key, &n, NULL, NULL);
            assert_int_equal(n, (int64_t)g.len[i] * D);
            double d = check(name, s.x + (pass ? off * D : 0), want, n);
            worst = d > worst ? d : worst;
            if (i == NS - 1 && pass == 0) err_last = d;
            /* mean pooling of wick's own hidden state against the golden's */
            float pooled[D];
            embed_pool(s.x + (pass ? off * D : 0), g.len[i], D, WICK_POOLING_MEAN, false, pooled);
            snprintf(key, sizeof key, "s%d_mean_pooled", i);
            float *wp = tu_load_f32(gf, key, NULL, NULL, NULL);
            if (pass == 0) check(key, pooled, wp, D);
            free(wp);
            free(want);
            off += g.len[i];
        }
    }
    /* The golden must see what makes this family differ from BERT: without MPNet's relative
       bias, or with BERT's positions from 0, the longest sentence must be off by far more
       than wick's error. (The goldens' 0.02·randn weights keep the attention branch small
       beside the residual stream, so MPNet's bias moves the output by only ~2e-6: below the
       1e-5 tolerance, but ~100 times wick's error, which is what this asserts.) */
    if (m->rel_bias) memset(m->rel_bias, 0, sizeof(float) * (size_t)(m->cfg.n_buckets *
                                                                      m->cfg.n_head));
    else m->cfg.pos_pad = -1;
    int last = NS - 1;
    forward(m, &s, &g, &last, 1, m->cfg.n_layer);
    float *want = tu_load_f32(gf, "s8_last_hidden_state", NULL, NULL, NULL);
    double off_by = tu_max_abs_diff(s.x, want, (int64_t)g.len[last] * D);
    fprintf(stderr, "  without the %s: max abs diff %.3g\n",
            m->rel_bias ? "relative bias" : "position offset", off_by);
    assert_true(off_by > 20 * err_last);
    free(want);
    encoder_scratch_free(&s);
    encoder_free(m);
    golden_free(&g);
    free(gf);
    free(dir);
    return worst;
}

static void test_mpnet_model(void **state) {
    (void)state;
    fprintf(stderr, "worst %.3g\n", model_goldens("mpnet"));
}

static void test_xlmr_model(void **state) {
    (void)state;
    fprintf(stderr, "worst %.3g\n", model_goldens("xlmr"));
}

/* Position ids of XLM-R with a padding id inside a sequence: it keeps padding_idx and does
 * not advance the count (HF's create_position_ids_from_input_ids); BERT counts from 0. */
static void test_position_ids(void **state) {
    (void)state;
    char *dir = arch_dir("xlmr");
    encoder_model *m = NULL;
    if (encoder_load(dir, &m) != WICK_OK) fail_msg("load %s: %s", dir, wick_last_error());
    assert_int_equal(m->cfg.pos_pad, 1);
    encoder_scratch s = {0};
    const int32_t ids[] = {0, 3, 1, 3, 2, /* second sequence */ 0, 1, 2};
    const int lens[] = {5, 3};
    assert_int_equal(encoder_scratch_reserve(&s, &m->cfg, 8), WICK_OK);
    encoder_forward(m, kernels_select("ref"), NULL, &s, ids, NULL, lens, 2);
    const int32_t want[] = {2, 3, 1, 4, 5, 2, 1, 3};
    assert_memory_equal(s.pos, want, sizeof want);
    m->cfg.pos_pad = -1;  /* BERT's scheme */
    encoder_forward(m, kernels_select("ref"), NULL, &s, ids, NULL, lens, 2);
    const int32_t bert[] = {0, 1, 2, 3, 4, 0, 1, 2};
    assert_memory_equal(s.pos, bert, sizeof bert);
    encoder_scratch_free(&s);
    encoder_free(m);
    free(dir);
}

/* ---- the padded golden batch through the public API -------------------------------------- */

/* y = tanh(W x + b) in double from 2_Dense/model.safetensors, then optionally normalised. */
static void dense_ref(const char *dir, const float *x, float *y, int dout, bool normalize) {
    char *wf = join(dir, "2_Dense/model.safetensors");
    float *w = tu_load_f32(wf, "linear.weight", NULL, NULL, NULL);
    float *b = tu_load_f32(wf, "linear.bias", NULL, NULL, NULL);
    double ss = 0;
    for (int o = 0; o < dout; o++) {
        double acc = b[o];
        for (int j = 0; j < D; j++) acc += (double)w[o * D + j] * x[j];
        y[o] = (float)tanh(acc);
        ss += (double)y[o] * y[o];
    }
    if (normalize)
        for (int o = 0; o < dout; o++) y[o] = (float)(y[o] / sqrt(ss));
    free(w);
    free(b);
    free(wf);
}

/* A temp folder of links to the files of arch/fam, leaving out `skip` (NULL: none); `rel`
 * (when not NULL) is written with `text` instead. */
static char *variant_of(const char *fam, const char *skip, const char *rel, const char *text) {
    char *src = arch_dir(fam), *t = tu_mkdtemp();
    static const char *const files[] = {"config.json", "model.safetensors", "tokenizer.json",
                                        "modules.json", "sentence_bert_config.json",
                                        "1_Pooling/config.json", "2_Dense/config.json",
                                        "2_Dense/model.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char *a = join(src, files[i]), *b = join(t, files[i]);
        struct stat sb;
        if ((skip && strcmp(files[i], skip) == 0) || stat(a, &sb) != 0) {
            free(a);
            free(b);
            continue;
        }
        char *slash = strchr(files[i], '/');
        if (slash) {
            char *sub = strndup(b, strlen(t) + 1 + (size_t)(slash - files[i]));
            mkdir(sub, 0755);
            free(sub);
        }
        if (rel && strcmp(files[i], rel) == 0) tu_write_file(b, text, strlen(text));
        else assert_int_equal(symlink(a, b), 0);
        free(a);
        free(b);
    }
    free(src);
    return t;
}

static void api_batch(const char *fam, int dim) {
    char *gdir = arch_dir(fam), *gf = join(gdir, "golden.safetensors");
    /* the XLM-R folder's Unigram tokenizer.json is not wick's to read yet: ids only */
    char *dir = variant_of(fam, "tokenizer.json", NULL, NULL);
    int64_t n = 0, shape[8];
    int32_t *ids = tu_load_ids(gf, "input_ids", &n);
    int32_t *mask = tu_load_ids(gf, "attention_mask", NULL);
    const int L = (int)(n / NS);
    float *want_h = tu_load_f32(gf, "batch_last_hidden_state", NULL, shape, NULL);
    float *want_st = tu_load_f32(gf, "st_embeddings", NULL, shape, NULL);
    assert_int_equal(shape[1], dim);
    fprintf(stderr, "%s through wick_embed_ids (batch of %d, padded to %d):\n", fam, NS, L);
    for (int norm = 0; norm < 2; norm++) {
        wick_embedder_params p = wick_embedder_params_default();
        p.batch_size = 4;  /* as the golden's encode: several batches */
        p.n_threads = 2;
        p.normalize = norm;
        wick_embedder *e = NULL;
        if (wick_embedder_load(dir, &p, &e) != WICK_OK)
            fail_msg("load %s: %s", dir, wick_last_error());
        assert_int_equal(wick_embedder_dim(e), dim);
        float *h = calloc((size_t)NS * L * D, sizeof(float));
        float *emb = calloc((size_t)NS * dim, sizeof(float));
        assert_int_equal(wick_embed_ids(e, ids, mask, NS, L, emb, h, NULL), WICK_OK);
        for (int i = 0; i < NS; i++) {
            int len = 0;
            while (len < L && mask[i * L + len]) len++;
            char what[64];
            snprintf(what, sizeof what, "batch row %d hidden (%d tokens)", i, len);
            if (norm) check(what, h + (size_t)i * L * D, want_h + (size_t)i * L * D,
                            (int64_t)len * D);
            float want[D];
            const float *pooled = tu_load_f32(gf, (snprintf(what, sizeof what,
                                                            "s%d_mean_pooled", i), what),
                                              NULL, NULL, NULL);
            if (dim != D) {
                dense_ref(gdir, pooled, want, dim, norm);
            } else {
                memcpy(want, pooled, sizeof want);
                if (norm) embed_normalize(want, D);
            }
            free((void *)pooled);
            snprintf(what, sizeof what, "row %d %s%s", i, dim != D ? "Dense " : "pooled",
                     norm ? " normalised" : "");
            check(what, emb + (size_t)i * dim, want, dim);
            if (norm) {
                snprintf(what, sizeof what, "row %d vs st_embeddings", i);
                check(what, emb + (size_t)i * dim, want_st + (size_t)i * dim, dim);
            }
        }
        free(h);
        free(emb);
        wick_embedder_free(e);
    }
    free(want_h);
    free(want_st);
    free(ids);
    free(mask);
    free(gf);
    tu_rmdir_rf(dir);
    free(dir);
    free(gdir);
}

static void test_mpnet_api(void **state) {
    (void)state;
    api_batch("mpnet", 32);
}

static void test_xlmr_api(void **state) {
    (void)state;
    api_batch("xlmr", D);
}

/* ---- MPNet from text: WordPiece, the "<s> $A </s>" template, truncation, the folder ------ */

static void text_case(const char *fam, int dim);
static void test_mpnet_text(void **state) {
    (void)state;
    text_case("mpnet", 32);
}

/* XLM-R from text: the Unigram tokenizer with its Precompiled normalizer and Metaspace */
static void test_xlmr_text(void **state) {
    (void)state;
    text_case("xlmr", 64);
}

static void text_case(const char *fam, int dim) {
    char *dir = arch_dir(fam), *gf = join(dir, "golden.safetensors");
    golden g;
    golden_load(dir, &g);
    wick_embedder *e = NULL;
    if (wick_embedder_load(dir, NULL, &e) != WICK_OK)
        fail_msg("load %s: %s", dir, wick_last_error());
    assert_int_equal(wick_embedder_dim(e), dim);
    assert_int_equal(wick_embedder_pooling(e), WICK_POOLING_MEAN);
    assert_true(wick_embedder_normalize(e));
    assert_int_equal(wick_embedder_max_length(e), 128);
    int32_t ids[256];
    for (int i = 0; i < NS; i++) {
        int n = 0;
        if (wick_embedder_tokenize(e, g.text[i], ids, 256, &n) != WICK_OK)
            fail_msg("tokenize %d: %s", i, wick_last_error());
        assert_int_equal(n, g.len[i]);
        assert_memory_equal(ids, g.ids[i], sizeof(int32_t) * (size_t)n);
    }
    float emb[NS * 64];
    assert_int_equal(wick_embed(e, (const char *const *)g.text, NS, emb), WICK_OK);
    float *want = tu_load_f32(gf, "st_embeddings", NULL, NULL, NULL);
    fprintf(stderr, "%s from text:\n", fam);
    check("wick_embed vs st_embeddings", emb, want, NS * dim);
    free(want);
    wick_embedder_free(e);
    golden_free(&g);
    free(gf);
    free(dir);
}

/* ---- errors ----------------------------------------------------------------------------- */

static void expect_cfg(const char *json, wick_status want, const char *needle) {
    encoder_config c;
    wick_status st = encoder_config_parse(json, "cfg.json", &c);
    if (st != want || !strstr(wick_last_error(), needle))
        fail_msg("config %s: status %d, error \"%s\" (wanted %d with \"%s\")", json, (int)st,
                 wick_last_error(), (int)want, needle);
}

static void test_bad_configs(void **state) {
    (void)state;
#define BASE "\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":1," \
             "\"num_attention_heads\":2,\"intermediate_size\":16,\"max_position_embeddings\":20"
    expect_cfg("{\"model_type\":\"roberta\"," BASE "}", WICK_ERR_UNSUPPORTED, "\"roberta\"");
    expect_cfg("{\"model_type\":\"deberta-v2\"," BASE "}", WICK_ERR_UNSUPPORTED, "model_type");
    expect_cfg("{\"model_type\":\"xlm-roberta\"," BASE "}", WICK_ERR_FORMAT, "pad_token_id");
    expect_cfg("{\"model_type\":\"xlm-roberta\",\"pad_token_id\":18," BASE "}", WICK_ERR_FORMAT,
               "max_position_embeddings");
    expect_cfg("{\"model_type\":\"mpnet\",\"relative_attention_num_buckets\":16," BASE "}",
               WICK_ERR_UNSUPPORTED, "relative_attention_num_buckets");
    expect_cfg("{\"model_type\":\"mpnet\",\"hidden_act\":\"relu\"," BASE "}",
               WICK_ERR_UNSUPPORTED, "hidden_act");
    encoder_config c;
    assert_int_equal(encoder_config_parse("{\"model_type\":\"mpnet\"," BASE "}", "x", &c),
                     WICK_OK);
    assert_int_equal(c.arch, ENC_MPNET);
    assert_int_equal(c.max_tokens, 18);
    assert_int_equal(c.n_types, 0);
    assert_int_equal(encoder_config_parse("{\"model_type\":\"xlm-roberta\",\"pad_token_id\":1,"
                                          BASE "}", "x", &c), WICK_OK);
    assert_int_equal(c.arch, ENC_XLMR);
    assert_int_equal(c.pos_pad, 1);
    assert_int_equal(c.max_tokens, 18);
#undef BASE
}

static void expect_load(const char *rel, const char *text, wick_status want,
                        const char *needle) {
    char *t = variant_of("mpnet", NULL, rel, text);
    wick_embedder *e = NULL;
    wick_status st = wick_embedder_load(t, NULL, &e);
    if (st != want || !strstr(wick_last_error(), needle))
        fail_msg("%s = %s: status %d, error \"%s\" (wanted %d with \"%s\")", rel, text, (int)st,
                 wick_last_error(), (int)want, needle);
    assert_null(e);
    tu_rmdir_rf(t);
    free(t);
}

static void test_bad_dense(void **state) {
    (void)state;
    expect_load("2_Dense/config.json",
                "{\"in_features\":64,\"out_features\":32,\"activation_function\":"
                "\"torch.nn.modules.activation.GELU\"}",
                WICK_ERR_UNSUPPORTED, "activation_function");
    expect_load("2_Dense/config.json", "{\"in_features\":64,\"out_features\":16}", WICK_ERR_SHAPE,
                "linear.weight");
    expect_load("2_Dense/config.json", "{\"in_features\":64}", WICK_ERR_FORMAT, "out_features");
    expect_load("2_Dense/config.json", "{\"in_features\":64,\"out_features\":32,\"bias\":false}",
                WICK_ERR_FORMAT, "linear.bias");
    expect_load("1_Pooling/config.json", "{\"pooling_mode\":\"median\"}",
                WICK_ERR_UNSUPPORTED, "pooling_mode");
    expect_load("modules.json",
                "[{\"type\":\"sentence_transformers.models.Transformer\",\"path\":\"\"},"
                "{\"type\":\"sentence_transformers.models.Pooling\",\"path\":\"1_Pooling\"},"
                "{\"type\":\"sentence_transformers.models.Dense\",\"path\":\"2_Dense\"},"
                "{\"type\":\"sentence_transformers.models.Dense\",\"path\":\"2_Dense\"}]",
                WICK_ERR_SHAPE, "in_features");
    expect_load("modules.json",
                "[{\"type\":\"sentence_transformers.models.Transformer\",\"path\":\"\"},"
                "{\"type\":\"sentence_transformers.models.Dense\",\"path\":\"2_Dense\"}]",
                WICK_ERR_UNSUPPORTED, "Dense");
    expect_load("modules.json",
                "[{\"type\":\"sentence_transformers.models.Transformer\",\"path\":\"\"},"
                "{\"type\":\"sentence_transformers.models.Pooling\",\"path\":\"1_Pooling\"},"
                "{\"type\":\"sentence_transformers.models.Dense\",\"path\":\"../x\"}]",
                WICK_ERR_FORMAT, "path");
    /* a sequence too long for the position table (MPNet holds 130 - 2 = 128 tokens) */
    char *dir = arch_dir("mpnet");
    wick_embedder *e = NULL;
    assert_int_equal(wick_embedder_load(dir, NULL, &e), WICK_OK);
    int32_t ids[129];
    for (int i = 0; i < 129; i++) ids[i] = 5;
    float emb[32];
    assert_int_equal(wick_embed_ids(e, ids, NULL, 1, 129, emb, NULL, NULL),
                     WICK_ERR_INVALID_ARG);
    assert_non_null(strstr(wick_last_error(), "128 tokens"));
    assert_int_equal(wick_embed_ids(e, ids, NULL, 1, 128, emb, NULL, NULL), WICK_OK);
    wick_embedder_free(e);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mpnet_buckets), cmocka_unit_test(test_mpnet_model),
        cmocka_unit_test(test_xlmr_model),    cmocka_unit_test(test_position_ids),
        cmocka_unit_test(test_mpnet_api),
        cmocka_unit_test(test_xlmr_api),      cmocka_unit_test(test_mpnet_text),
        cmocka_unit_test(test_xlmr_text),
        cmocka_unit_test(test_bad_configs),   cmocka_unit_test(test_bad_dense),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
