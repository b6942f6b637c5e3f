/* test_convert.c — `wick convert MODEL.gguf OUT_DIR` (model/model_export.c): GGUF back to a
 * Hugging Face folder.
 *   - tiny-llama / tiny-qwen2: folder -> GGUF F32 -> folder F32 gives the original's logits
 *     on p1 (≤ 1e-6) and every original tensor byte for byte (q/k rows of llama un-permuted);
 *   - Q8_0 GGUF -> folder (default BF16) loads and stays within 5e-2 of the original logits;
 *   - a random tiny model with the qwen3 tokenizer: the exported tokenizer.json gives the same
 *     ids as the source tokenizer;
 *   - bad output paths and arguments give errors naming the path, and leave no file. */
#include <cjson/cJSON.h>
#include <math.h>
#include <sys/stat.h>

#include "base/fileio.h"
#include "model/gguf_tok.h"
#include "model/model_export.h"
#include "model/model_gguf.h"
#include "model/random.h"
#include "testutil.h"

static float *logits_of(const wick_model *m, const int32_t *ids, int n) {
    float *out = malloc(sizeof(float) * (size_t)n * (size_t)m->cfg.n_vocab);
    assert_non_null(out);
    wick_session_params sp = wick_session_params_default();
    wick_session *s = NULL;
    assert_int_equal(wick_session_create(m, &sp, &s), WICK_OK);
    if (wick_session_eval(s, ids, n, WICK_LOGITS_ALL, out) != WICK_OK) fail_msg("%s", wick_last_error());
    wick_session_free(s);
    return out;
}

static wick_model *load_or_fail(const char *path, bool tokenizer) {
    wick_model_params mp = wick_model_params_default();
    mp.load_tokenizer = tokenizer;
    wick_model *m = NULL;
    if (wick_model_load(path, &mp, &m)) fail_msg("%s: %s", path, wick_last_error());
    return m;
}

/* Every tensor of the original file is in the exported one with the same dtype, shape and
 * bytes; *n_qk counts the q_proj/k_proj weights among them. */
static void check_tensors_equal(const char *orig_dir, const char *out_dir, int *n_qk) {
    st_set *a = NULL, *b = NULL;
    assert_int_equal(st_open_dir(orig_dir, &a), WICK_OK);
    assert_int_equal(st_open_dir(out_dir, &b), WICK_OK);
    assert_int_equal(st_count(a), st_count(b));
    *n_qk = 0;
    for (int i = 0; i < st_count(a); i++) {
        const st_tensor *ta = st_at(a, i), *tb = st_find(b, ta->name);
        if (!tb) fail_msg("exported folder lacks %s", ta->name);
        assert_int_equal(ta->dt, tb->dt);
        assert_int_equal(ta->ndim, tb->ndim);
        assert_memory_equal(ta->shape, tb->shape, sizeof(int64_t) * (size_t)ta->ndim);
        assert_int_equal(ta->nbytes, tb->nbytes);
        if (memcmp(ta->data, tb->data, ta->nbytes) != 0) fail_msg("tensor %s differs", ta->name);
        *n_qk += strstr(ta->name, "q_proj.weight") || strstr(ta->name, "k_proj.weight");
    }
    st_close(a);
    st_close(b);
}

/* fixture: the name printed; dir: the model folder (freed here) */
static void roundtrip_dir(const char *fixture, char *dir) {
    char *golden = path_join(dir, "golden.safetensors");
    int64_t n;
    int32_t *ids = tu_load_ids(golden, "p1_input_ids", &n);
    wick_model *ref = load_or_fail(dir, false);
    const int64_t nl = n * ref->cfg.n_vocab;
    float *want = logits_of(ref, ids, (int)n);
    char *tmp = tu_mkdtemp(), *gpath = path_join(tmp, "m.gguf"), *out = path_join(tmp, "out");

    /* F32 all the way: exact */
    assert_int_equal(model_gguf_save(ref, gpath, DT_F32, NULL, 0), WICK_OK);
    wick_model *g = load_or_fail(gpath, false);
    assert_int_equal(g->rope_interleaved, ref->cfg.arch == ARCH_LLAMA);
    assert_int_equal(model_export_default_dtype(g), DT_F32);
    if (model_export_folder(g, out, DT_F32)) fail_msg("%s", wick_last_error());
    wick_model_free(g);
    wick_model *back = load_or_fail(out, false);
    float *got = logits_of(back, ids, (int)n);
    double d = tu_max_abs_diff(want, got, nl);
    fprintf(stderr, "%s: GGUF F32 -> folder F32: max |logit diff| %.3g\n", fixture, d);
    assert_true(d <= 1e-6);
    int n_qk = 0;
    check_tensors_equal(dir, out, &n_qk);
    assert_int_equal(n_qk, 2 * ref->cfg.n_layer);
    model_config c2;
    assert_int_equal(config_load(out, &c2), WICK_OK);
    assert_true(c2.norm_eps == ref->cfg.norm_eps && c2.rope_theta == ref->cfg.rope_theta);
    assert_int_equal(c2.tie_embd, ref->cfg.tie_embd);
    assert_string_equal(c2.architecture, ref->cfg.architecture);
    free(got);
    wick_model_free(back);

    /* Q8_0 GGUF -> folder in the default type (BF16) */
    assert_int_equal(model_gguf_save(ref, gpath, DT_Q8_0, NULL, 0), WICK_OK);
    g = load_or_fail(gpath, false);
    assert_int_equal(model_export_default_dtype(g), DT_BF16);
    char *out8 = path_join(tmp, "out8");
    if (model_export_folder(g, out8, model_export_default_dtype(g))) fail_msg("%s", wick_last_error());
    wick_model_free(g);
    back = load_or_fail(out8, false);
    assert_string_equal(back->weight_dtype, "BF16");
    got = logits_of(back, ids, (int)n);
    d = tu_max_abs_diff(want, got, nl);
    fprintf(stderr, "%s: GGUF Q8_0 -> folder BF16: max |logit diff| %.3g\n", fixture, d);
    assert_true(d <= 5e-2);
    free(got);
    wick_model_free(back);

    wick_model_free(ref);
    tu_rmdir_rf(tmp);
    free(want); free(ids); free(golden); free(dir); free(tmp); free(gpath); free(out); free(out8);
}

static void roundtrip(const char *fixture) {
    TU_REQUIRE_FIXTURE(dir, fixture);
    roundtrip_dir(fixture, dir);
}

static void test_tiny_llama(void **state) { (void)state; roundtrip("tiny-llama"); }
/* Qwen3 (GGUF architecture qwen3, blk.N.attn_{q,k}_norm.weight; HF self_attn.{q,k}_norm) */
static void test_qwen3(void **state) {
    (void)state;
    roundtrip_dir("arch/qwen3", strdup(WICK_SOURCE_DIR "/tests/data/arch/qwen3"));
}
static void test_tiny_qwen2(void **state) { (void)state; roundtrip("tiny-qwen2"); }

static void test_tokenizer(void **state) {
    (void)state;
    TU_REQUIRE_FIXTURE(tokdir, "tokenizers/qwen3");
    char *tmp = tu_mkdtemp(), *src = path_join(tmp, "src"), *gpath = path_join(tmp, "m.gguf"),
         *out = path_join(tmp, "out");
    assert_int_equal(random_model_write("tiny", src, 7, DT_F32, tokdir), WICK_OK);
    wick_model *ref = load_or_fail(src, true);
    gguf_tok_meta tm;
    assert_int_equal(gguf_tok_meta_from_folder(src, &tm), WICK_OK);
    assert_true(tm.n > 0);
    if (model_gguf_save(ref, gpath, DT_F32, tm.kv, tm.n)) fail_msg("%s", wick_last_error());
    gguf_tok_meta_free(&tm);
    wick_model *g = load_or_fail(gpath, false);
    if (model_export_folder(g, out, DT_F16)) fail_msg("%s", wick_last_error());
    const model_config gcfg = g->cfg;
    wick_model_free(g);
    char *tj = path_join(out, "tokenizer.json"), *tc = path_join(out, "tokenizer_config.json");
    assert_true(file_exists(tj));
    assert_true(file_exists(tc));
    wick_model *back = load_or_fail(out, true);
    assert_string_equal(back->weight_dtype, "F16");
    const wick_tokenizer *a = wick_model_tokenizer(ref), *b = wick_model_tokenizer(back);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(wick_tokenizer_vocab_size(a), wick_tokenizer_vocab_size(b));
    static const char *texts[] = {"Hello, world!", "  spaces\tand\nnewlines  ",
                                  "naïve café — 日本語 🙂", "<|im_start|>user\nhi<|im_end|>",
                                  "x = f(1234567) + 0.5e-3;"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t ia[256], ib[256];
        int32_t na = wick_tokenize(a, texts[i], strlen(texts[i]), true, ia, 256);
        int32_t nb = wick_tokenize(b, texts[i], strlen(texts[i]), true, ib, 256);
        assert_true(na > 0);
        assert_int_equal(na, nb);
        assert_memory_equal(ia, ib, sizeof(int32_t) * (size_t)na);
    }
    /* the GGUF's bos/eos ids travel into config.json / generation_config.json (they are the
     * tokenizer's, which model_gguf_save stores, not necessarily the source config's) */
    assert_int_equal(back->cfg.bos_id, gcfg.bos_id);
    assert_int_equal(back->cfg.n_eos, gcfg.n_eos);
    assert_true(gcfg.n_eos >= 1);
    assert_memory_equal(back->cfg.eos_ids, gcfg.eos_ids, sizeof(int32_t) * (size_t)gcfg.n_eos);
    /* the weights too: same logits as the source folder (F32 -> F16 matrices) */
    {
        const int32_t ids[] = {9707, 11, 1879, 0, 151643, 42};
        float *la = logits_of(ref, ids, 6), *lb = logits_of(back, ids, 6);
        double d = tu_max_abs_diff(la, lb, 6 * (int64_t)ref->cfg.n_vocab);
        fprintf(stderr, "random tiny: GGUF F32 -> folder F16: max |logit diff| %.3g\n", d);
        assert_true(d <= 5e-2);
        free(la); free(lb);
    }
    wick_model_free(back);
    wick_model_free(ref);
    tu_rmdir_rf(tmp);
    free(tj); free(tc); free(tmp); free(src); free(gpath); free(out); free(tokdir);
}

/* llama.cpp refuses a GGUF whose token list is shorter than the embedding (Qwen's 151936 rows
 * for 151669 tokens): the written list is padded with "[PAD<id>]" entries of type unused. */
static void test_tokens_padded_to_embedding(void **state) {
    (void)state;
    TU_REQUIRE_FIXTURE(tokdir, "tokenizers/qwen3");
    char *tmp = tu_mkdtemp(), *src = path_join(tmp, "src"), *gpath = path_join(tmp, "m.gguf"),
         *gpath2 = path_join(tmp, "m2.gguf");
    assert_int_equal(random_model_write("tiny", src, 7, DT_F32, tokdir), WICK_OK);
    wick_model *ref = load_or_fail(src, true);
    const int64_t rows = ref->tok_embd.rows;
    gguf_tok_meta tm;
    assert_int_equal(gguf_tok_meta_from_folder(src, &tm), WICK_OK);
    int64_t before = -1;
    for (int i = 0; i < tm.n; i++)
        if (!strcmp(tm.kv[i].key, "tokenizer.ggml.tokens")) before = (int64_t)tm.kv[i].v.arr.n;
    assert_true(before > 0 && before < rows); /* the case this test is for */
    assert_int_equal(gguf_tok_meta_pad(&tm, before - 1), WICK_ERR_FORMAT); /* ids it cannot embed */
    assert_int_equal(gguf_tok_meta_pad(&tm, rows), WICK_OK);
    if (model_gguf_save(ref, gpath, DT_F32, tm.kv, tm.n)) fail_msg("%s", wick_last_error());
    /* and a file without tokenizer.huggingface.json, read through the tokenizer.ggml.* keys */
    gguf_kv kv2[64];
    int n2 = 0;
    for (int i = 0; i < tm.n && n2 < 64; i++)
        if (strcmp(tm.kv[i].key, "tokenizer.huggingface.json")) kv2[n2++] = tm.kv[i];
    assert_true(n2 == tm.n - 1);
    if (model_gguf_save(ref, gpath2, DT_F32, kv2, n2)) fail_msg("%s", wick_last_error());
    gguf_tok_meta_free(&tm);
    gguf_file *g = NULL;
    assert_int_equal(gguf_open(gpath, &g), WICK_OK);
    const gguf_kv *tk = gguf_find_kv(g, "tokenizer.ggml.tokens");
    const gguf_kv *ty = gguf_find_kv(g, "tokenizer.ggml.token_type");
    assert_non_null(tk);
    assert_non_null(ty);
    assert_int_equal(tk->v.arr.n, rows);
    assert_int_equal(ty->v.arr.n, rows);
    char want[32];
    snprintf(want, sizeof want, "[PAD%lld]", (long long)(rows - 1));
    const gguf_value *last = &tk->v.arr.items[rows - 1];
    assert_int_equal(last->str.len, strlen(want));
    assert_memory_equal(last->str.s, want, strlen(want));
    assert_int_equal(ty->v.arr.items[rows - 1].i, 5);
    gguf_close(g);
    /* the real tokens are untouched: both files tokenize like the folder */
    const char *paths[2] = {gpath, gpath2};
    for (int f = 0; f < 2; f++) {
        wick_model *back = load_or_fail(paths[f], true);
        static const char *texts[] = {"Hello, world! naïve café", "<|im_start|>user\nhi<|im_end|>"};
        for (int t = 0; t < 2; t++) {
            int32_t ia[64], ib[64];
            int32_t na = wick_tokenize(wick_model_tokenizer(ref), texts[t], strlen(texts[t]), true, ia, 64);
            int32_t nb = wick_tokenize(wick_model_tokenizer(back), texts[t], strlen(texts[t]), true, ib, 64);
            if (nb < 0) fail_msg("%s: %s", paths[f], wick_last_error());
            assert_true(na > 0);
            assert_int_equal(na, nb);
            assert_memory_equal(ia, ib, sizeof(int32_t) * (size_t)na);
        }
        wick_model_free(back);
    }
    wick_model_free(ref);
    tu_rmdir_rf(tmp);
    free(tmp); free(src); free(gpath); free(gpath2); free(tokdir);
}

/* llama GGUF with q/k biases (model_gguf_save cannot write those yet, so they are attached to
 * a loaded GGUF model): each exported bias element must follow its weight row. Bias value k
 * marks GGUF row k; the exported row r must equal GGUF row bias[r]. */
static void test_llama_bias_follows_rows(void **state) {
    (void)state;
    TU_REQUIRE_FIXTURE(dir, "tiny-llama");
    wick_model *ref = load_or_fail(dir, false);
    char *tmp = tu_mkdtemp(), *gpath = path_join(tmp, "m.gguf"), *out = path_join(tmp, "out");
    assert_int_equal(model_gguf_save(ref, gpath, DT_F32, NULL, 0), WICK_OK);
    wick_model_free(ref);
    wick_model *g = load_or_fail(gpath, false);
    assert_true(g->rope_interleaved);
    layer_weights *l = &g->layers[0];
    l->bq = malloc(sizeof(float) * (size_t)l->wq.rows);
    l->bk = malloc(sizeof(float) * (size_t)l->wk.rows);
    assert_true(l->bq && l->bk);
    for (int64_t r = 0; r < l->wq.rows; r++) l->bq[r] = (float)r;
    for (int64_t r = 0; r < l->wk.rows; r++) l->bk[r] = (float)r;
    if (model_export_folder(g, out, DT_F32)) fail_msg("%s", wick_last_error());
    st_set *s = NULL;
    assert_int_equal(st_open_dir(out, &s), WICK_OK);
    const char *names[2][2] = {{"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.bias"},
                               {"model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.k_proj.bias"}};
    const wk_weight *src[2] = {&l->wq, &l->wk};
    float *row = malloc(sizeof(float) * (size_t)l->wq.cols);
    for (int p = 0; p < 2; p++) {
        const st_tensor *w = st_find(s, names[p][0]), *b = st_find(s, names[p][1]);
        assert_non_null(w);
        assert_non_null(b);
        assert_int_equal(b->dt, DT_F32);
        assert_int_equal(b->numel, src[p]->rows);
        const float *bv = b->data, *wv = w->data;
        int moved = 0;
        for (int64_t r = 0; r < src[p]->rows; r++) {
            const int64_t k = (int64_t)bv[r];
            assert_true(k >= 0 && k < src[p]->rows);
            kernels_row_to_f32(row, src[p], k);
            assert_memory_equal(row, wv + r * src[p]->cols, sizeof(float) * (size_t)src[p]->cols);
            moved += k != r;
        }
        assert_true(moved > 0);  /* the permutation is not the identity */
    }
    /* only the biases the model has are written */
    assert_null(st_find(s, "model.layers.0.self_attn.v_proj.bias"));
    st_close(s);
    free(row);
    wick_model_free(g);
    tu_rmdir_rf(tmp);
    free(tmp); free(gpath); free(out); free(dir);
}

/* the folder holds exactly the files named, nothing else (no temp leftovers) */
static int count_entries(const char *dir) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int k = -1;
    if (p) { if (fscanf(p, "%d", &k) != 1) k = -1; pclose(p); }
    return k;
}

/* Linear RoPE scaling survives folder -> GGUF -> GGUF (rope.scaling.type/factor written). */
static void test_linear_rope_kept(void **state) {
    (void)state;
    char *tmp = tu_mkdtemp(), *src = path_join(tmp, "src");
    assert_int_equal(random_model_write("tiny", src, 11, DT_F32, NULL), WICK_OK);
    char *cfg_path = path_join(src, "config.json"), *text = NULL;
    assert_int_equal(file_read_all(cfg_path, &text, NULL), WICK_OK);
    cJSON *cfg = cJSON_Parse(text);
    assert_non_null(cfg);
    cJSON *rs = cJSON_AddObjectToObject(cfg, "rope_scaling");
    cJSON_AddStringToObject(rs, "type", "linear");
    cJSON_AddNumberToObject(rs, "factor", 2.0);
    char *patched = cJSON_PrintUnformatted(cfg);
    tu_write_file(cfg_path, patched, strlen(patched));
    wick_model *ref = load_or_fail(src, false);
    assert_int_equal(ref->cfg.rope, ROPE_LINEAR);
    const int32_t ids[] = {1, 5, 9, 2, 7, 3, 8, 4, 6, 10, 12, 11};
    float *want = logits_of(ref, ids, 12);
    char *g1 = path_join(tmp, "a.gguf"), *g2 = path_join(tmp, "b.gguf");
    assert_int_equal(model_gguf_save(ref, g1, DT_F32, NULL, 0), WICK_OK);
    wick_model *a = load_or_fail(g1, false);
    if (model_gguf_save(a, g2, DT_F32, NULL, 0)) fail_msg("%s", wick_last_error());
    wick_model *b = load_or_fail(g2, false);
    for (int k = 0; k < 2; k++) {
        const wick_model *m = k ? b : a;
        assert_int_equal(m->cfg.rope, ROPE_LINEAR);
        assert_true(m->cfg.rope_factor == 2.0f);
        float *got = logits_of(m, ids, 12);
        assert_true(tu_max_abs_diff(want, got, 12 * (int64_t)ref->cfg.n_vocab) <= 1e-5);
        free(got);
    }
    wick_model_free(a); wick_model_free(b); wick_model_free(ref);
    cJSON_Delete(cfg);
    free(patched); free(text); free(cfg_path); free(want); free(g1); free(g2);
    tu_rmdir_rf(tmp);
    free(tmp); free(src);
}

static void test_bad_paths(void **state) {
    (void)state;
    TU_REQUIRE_FIXTURE(dir, "tiny-qwen2");
    wick_model *m = load_or_fail(dir, false);
    char *tmp = tu_mkdtemp(), *file = path_join(tmp, "afile"), *under = path_join(file, "x"),
         *missing = path_join(tmp, "no/such/dir"), *ok = path_join(tmp, "ok");
    tu_write_file(file, "x", 1);
    /* output is an existing file */
    assert_int_equal(model_export_folder(m, file, DT_F32), WICK_ERR_IO);
    assert_non_null(strstr(wick_last_error(), file));
    assert_non_null(strstr(wick_last_error(), "not a folder"));
    /* output below a file, and below a missing parent */
    assert_int_equal(model_export_folder(m, under, DT_F32), WICK_ERR_IO);
    assert_non_null(strstr(wick_last_error(), under));
    assert_int_equal(model_export_folder(m, missing, DT_F32), WICK_ERR_IO);
    assert_non_null(strstr(wick_last_error(), missing));
    /* bad type and arguments: nothing is created */
    assert_int_equal(model_export_folder(m, ok, DT_Q8_0), WICK_ERR_INVALID_ARG);
    assert_non_null(strstr(wick_last_error(), "Q8_0"));
    assert_false(dir_exists(ok));
    assert_int_equal(model_export_folder(NULL, ok, DT_F32), WICK_ERR_INVALID_ARG);
    assert_int_equal(model_export_folder(m, NULL, DT_F32), WICK_ERR_INVALID_ARG);
    assert_int_equal(model_export_folder(m, "", DT_F32), WICK_ERR_INVALID_ARG);
    assert_int_equal(count_entries(tmp), 1);
    /* a good export into an existing folder writes exactly the expected files */
    assert_int_equal(mkdir(ok, 0777), 0);
    assert_int_equal(model_export_folder(m, ok, DT_BF16), WICK_OK);
    assert_int_equal(count_entries(ok), 3); /* model.safetensors, config.json, generation_config.json */
    wick_model_free(m);
    tu_rmdir_rf(tmp);
    free(tmp); free(file); free(under); free(missing); free(ok); free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_llama),
        cmocka_unit_test(test_tiny_qwen2),
        cmocka_unit_test(test_qwen3),
        cmocka_unit_test(test_tokenizer),
        cmocka_unit_test(test_tokens_padded_to_embedding),
        cmocka_unit_test(test_llama_bias_follows_rows),
        cmocka_unit_test(test_linear_rope_kept),
        cmocka_unit_test(test_bad_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
