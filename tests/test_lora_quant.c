/* test_lora_quant.c — merging a LoRA adapter into a base loaded from GGUF, quantized or not
 * (wick_model_merge_adapter dequantizes each adapted row, adds s·B·A in f32 and requantizes
 * to the base's block type), and writing the merged model as GGUF or as a Hugging Face
 * folder (wick_model_save): the GGUF keeps the merged bytes, the folder holds them as BF16.
 *
 * Bases: tiny-qwen2 (f32 fixture) and small-qwen2 (bf16 fixture, whose 256-wide rows let
 * Q4_K / Q6_K really be K-quants; tiny-qwen2's 64-wide rows fall back to Q5_0 / Q8_0 as
 * llama.cpp does) written as GGUF in each type wick quantizes to, then loaded back.
 *
 * Tolerance (see check_merge): merged logits are compared with the *unmerged* adapter on the
 * same quantized base. Unmerged computes with W* = deq(Q(W)) + s·B·A exactly (the adapter is
 * applied in f32 beside the quantized matmul); merged computes with deq(Q_T(W*)), so the two
 * differ by one more rounding of the adapted matrices at the base's type T. The error bound we
 * derive it from is that of the standard alternative, merged-then-requantized: merge into the
 * full-precision base, then quantize the merged model to T, i.e. round W + s·B·A once at T.
 * Its logits error R (max |logits(Q_T(W + sBA)) - logits(W + sBA)|) is measured here. Both
 * are one rounding at type T of matrices with the same block magnitudes (|s·B·A| << |W|, so
 * the blocks' absmax and hence their quantization steps are the same; R also rounds the
 * embedding), i.e. two draws of the same error: their maxima over a prompt differ by tens of
 * percent (measured D/R: 0.86-1.30 over the types below), so the merge must stay within 2R
 * (+1e-4 of f32 summation slack, which is all that is left for F32 bases). A merge that
 * drops or doubles the delta, writes another block type or garbage bytes lands far outside
 * (the adapter moves these logits 0.25-1.7). The adapter must also have taken effect: merged
 * is 4x closer to unmerged than the quantized base without the adapter is. All logits use
 * the ref kernels, so activations are not quantized * and only the weights differ. */
#include <math.h>

#include "base/fileio.h"
#include "kernels/quant.h"
#include "lora/lora.h"
#include "model/model.h"
#include "model/model_gguf.h"
#include "testutil.h"

static wick_model *load(const char *path) {
    wick_model_params mp = wick_model_params_default();
    mp.kernels = "ref";
    mp.precision = "exact"; /* the unmerged adapter in f32 (fast would apply bf16 copies) */
    mp.load_tokenizer = false;
    wick_model *m = NULL;
    if (wick_model_load(path, &mp, &m) != WICK_OK) fail_msg("load %s: %s", path, wick_last_error());
    return m;
}

/* Logits (n, vocab) of ids with `adapter` (NULL = none) applied unmerged; malloc'd. */
static float *logits(const wick_model *m, const char *adapter, const int32_t *ids, int n) {
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = 1;
    wick_session *s = NULL;
    if (wick_session_create(m, &sp, &s) != WICK_OK) fail_msg("session: %s", wick_last_error());
    if (adapter) assert_int_equal(wick_session_set_adapter(s, adapter, 1.0f), WICK_OK);
    float *out = malloc(sizeof(float) * (size_t)n * (size_t)m->cfg.n_vocab);
    if (wick_session_eval(s, ids, n, WICK_LOGITS_ALL, out) != WICK_OK)
        fail_msg("eval: %s", wick_last_error());
    wick_session_free(s);
    return out;
}

static double maxdiff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as "huge" */
    }
    return m;
}

static const wk_weight *proj(const wick_model *m, int l, int p) {
    const layer_weights *w = &m->layers[l];
    const wk_weight *ws[LORA_N_PROJ] = {&w->wq, &w->wk, &w->wv, &w->wo,
                                        &w->w_gate, &w->w_up, &w->w_down};
    return ws[p];
}

/* Registers the adapter used for `fixture` on m as "a": the PEFT fixture adapter_a for
 * tiny-qwen2, a seeded random r=8 adapter on all 7 projections for other fixtures. */
static void add_adapter(wick_model *m, const char *fixture) {
    if (!strcmp(fixture, "tiny-qwen2")) {
        char *dir = tu_fixture_path("tiny-qwen2-lora/adapter_a");
        if (wick_adapter_load(m, dir, "a") != WICK_OK) fail_msg("%s", wick_last_error());
        free(dir);
        return;
    }
    /* alpha 128 (scale 16): B ~ U(-0.02, 0.02) alone moves these logits too little to tell
       "merged" from "not merged" next to 4-bit rounding */
    wick_adapter *a = NULL;
    assert_int_equal(lora_adapter_random(m, 8, 128.0f, (1u << LORA_N_PROJ) - 1, 11, &a), WICK_OK);
    assert_int_equal(lora_registry_add(m, a, "a"), WICK_OK);
}

typedef struct prompt { int32_t *ids; int n; } prompt;

/* The first max_n ids of the fixture's prompt p0 (the ref kernels are slow on quantized
 * weights: they dequantize each row for every token). */
static prompt get_prompt(const char *fixture, int max_n) {
    char *dir = tu_fixture_path(fixture), *g = path_join(dir, "golden.safetensors");
    int64_t n;
    int32_t *ids = tu_load_ids(g, "p0_input_ids", &n);
    free(dir);
    free(g);
    return (prompt){ids, n > max_n ? max_n : (int)n};
}

/* One base type: see the file comment for the tolerance. */
static void check_merge(const char *fixture, dtype T) {
    TU_REQUIRE_FIXTURE(dir, fixture);
    char *tmp = tu_mkdtemp();
    char *qpath = path_join(tmp, "base.gguf"), *rpath = path_join(tmp, "ref.gguf");
    prompt p = get_prompt(fixture, strcmp(fixture, "tiny-qwen2") ? 16 : 32);

    /* the full-precision base: reference "merged then requantized" */
    wick_model *full = load(dir);
    add_adapter(full, fixture);
    if (model_gguf_save(full, qpath, T, NULL, 0)) fail_msg("%s", wick_last_error());
    wick_model *full_merged = NULL;
    assert_int_equal(wick_model_merge_adapter(full, "a", 1.0f, &full_merged), WICK_OK);
    if (model_gguf_save(full_merged, rpath, T, NULL, 0)) fail_msg("%s", wick_last_error());
    wick_model *requant = load(rpath);
    const size_t nl = (size_t)p.n * (size_t)full->cfg.n_vocab;
    float *l_fm = logits(full_merged, NULL, p.ids, p.n), *l_rq = logits(requant, NULL, p.ids, p.n);
    const double bound = maxdiff(l_fm, l_rq, nl);

    /* the quantized base: unmerged adapter vs merged */
    wick_model *q = load(qpath);
    add_adapter(q, fixture);
    wick_model *qm = NULL;
    if (wick_model_merge_adapter(q, "a", 1.0f, &qm) != WICK_OK) fail_msg("%s", wick_last_error());
    /* every adapted matrix keeps the base's type (and so its size and speed) */
    for (int l = 0; l < q->cfg.n_layer; l++)
        for (int j = 0; j < LORA_N_PROJ; j++) {
            assert_int_equal(proj(qm, l, j)->dt, proj(q, l, j)->dt);
            assert_true(proj(qm, l, j)->data != proj(q, l, j)->data);
        }
    float *l_base = logits(q, NULL, p.ids, p.n), *l_un = logits(q, "a", p.ids, p.n);
    float *l_mg = logits(qm, NULL, p.ids, p.n);
    const double d = maxdiff(l_mg, l_un, nl), effect = maxdiff(l_base, l_un, nl);
    fprintf(stderr, "%s %s (q_proj %s): merged vs unmerged %.3g, merged-then-requantized bound "
            "%.3g, adapter effect %.3g\n", fixture, dtype_name(T), dtype_name(q->layers[0].wq.dt),
            d, bound, effect);
    assert_true(d <= 2 * bound + 1e-4);
    assert_true(d < 0.5 * effect);
    /* the base is untouched */
    float *l_base2 = logits(q, NULL, p.ids, p.n);
    assert_memory_equal(l_base, l_base2, sizeof(float) * nl);

    free(l_fm); free(l_rq); free(l_base); free(l_un); free(l_mg); free(l_base2);
    wick_model_free(qm);
    wick_model_free(q);
    wick_model_free(requant);
    wick_model_free(full_merged);
    wick_model_free(full);
    free(p.ids);
    tu_rmdir_rf(tmp);
    free(tmp); free(qpath); free(rpath); free(dir);
}

/* Regression: merging into a Q4_0 base sized its buffer with dtype_size (0 for block types)
 * and wrote 2-byte values into it (heap-buffer-overflow under ASan, "free(): invalid next
 * size" in `wick merge` / `wick bench adapters`). */
static void test_merge_q4_0_overflow(void **state) { check_merge("tiny-qwen2", DT_Q4_0); }

static void test_merge_tiny_types(void **state) {
    /* (Q4_K / Q6_K of these 64-wide rows would be Q5_0 / Q8_0 again: small-qwen2 has them) */
    const dtype types[] = {DT_Q8_0, DT_Q5_0, DT_F16, DT_BF16, DT_F32};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) check_merge("tiny-qwen2", types[i]);
}

static void test_merge_small_kquants(void **state) {
    const dtype types[] = {DT_Q4_K, DT_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) check_merge("small-qwen2", types[i]);
}

/* Rows of two matrices of the same shape, as f32 after `round` (NULL = none), are equal. */
static void assert_rows_equal(const wk_weight *a, const wk_weight *b, uint16_t (*round)(float)) {
    assert_int_equal(a->rows, b->rows);
    assert_int_equal(a->cols, b->cols);
    float *ra = malloc(sizeof(float) * (size_t)a->cols), *rb = malloc(sizeof(float) * (size_t)a->cols);
    for (int64_t r = 0; r < a->rows; r++) {
        kernels_row_to_f32(ra, a, r);
        kernels_row_to_f32(rb, b, r);
        if (round)
            for (int64_t c = 0; c < a->cols; c++) ra[c] = bf16_to_f32(round(ra[c]));
        assert_memory_equal(ra, rb, sizeof(float) * (size_t)a->cols);
    }
    free(ra);
    free(rb);
}

/* wick_model_save of a model merged into a Q4_0 GGUF base (before: "base.gguf/config.json:
 * missing" after an empty 40-byte model.safetensors): to .gguf, the base's tensor types and
 * the merged bytes exactly (same logits); to a folder, a Hugging Face folder with BF16
 * matrices = bf16(dequantized merged rows) that loads and gives the merged model. */
static void test_save_merged_gguf_base(void **state) {
    TU_REQUIRE_FIXTURE(dir, "tiny-qwen2");
    char *tmp = tu_mkdtemp(), *qpath = path_join(tmp, "base.gguf");
    char *gout = path_join(tmp, "merged.gguf"), *fout = path_join(tmp, "merged");
    prompt p = get_prompt("tiny-qwen2", 32);
    wick_model *full = load(dir);
    if (model_gguf_save(full, qpath, DT_Q4_0, NULL, 0)) fail_msg("%s", wick_last_error());
    wick_model_free(full);
    wick_model *q = load(qpath), *qm = NULL;
    add_adapter(q, "tiny-qwen2");
    assert_int_equal(wick_model_merge_adapter(q, "a", 1.0f, &qm), WICK_OK);
    const size_t nl = (size_t)p.n * (size_t)q->cfg.n_vocab;
    float *l_mg = logits(qm, NULL, p.ids, p.n), *l_base = logits(q, NULL, p.ids, p.n);

    if (wick_model_save(qm, gout) != WICK_OK) fail_msg("%s", wick_last_error());
    wick_model *g = load(gout);
    for (int l = 0; l < q->cfg.n_layer; l++)
        for (int j = 0; j < LORA_N_PROJ; j++) {
            assert_int_equal(proj(g, l, j)->dt, proj(q, l, j)->dt);
            assert_rows_equal(proj(qm, l, j), proj(g, l, j), NULL);
        }
    assert_int_equal(g->tok_embd.dt, q->tok_embd.dt);
    float *l_g = logits(g, NULL, p.ids, p.n);
    assert_memory_equal(l_g, l_mg, sizeof(float) * nl);
    wick_model_free(g);

    if (wick_model_save(qm, fout) != WICK_OK) fail_msg("%s", wick_last_error());
    wick_model *f = load(fout);
    for (int l = 0; l < q->cfg.n_layer; l++)
        for (int j = 0; j < LORA_N_PROJ; j++) {
            assert_int_equal(proj(f, l, j)->dt, DT_BF16);
            assert_rows_equal(proj(qm, l, j), proj(f, l, j), f32_to_bf16);
        }
    assert_rows_equal(&q->tok_embd, &f->tok_embd, f32_to_bf16);
    /* the folder is the merged model up to bf16 rounding: much closer to it than the base */
    float *l_f = logits(f, NULL, p.ids, p.n);
    const double d = maxdiff(l_f, l_mg, nl), effect = maxdiff(l_base, l_mg, nl);
    fprintf(stderr, "folder (BF16) vs merged Q4_0: %.3g (adapter effect %.3g)\n", d, effect);
    assert_true(d < 0.25 * effect);
    wick_model_free(f);

    free(l_mg); free(l_base); free(l_g); free(l_f); free(p.ids);
    wick_model_free(qm);
    wick_model_free(q);
    tu_rmdir_rf(tmp);
    free(tmp); free(qpath); free(gout); free(fout); free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_q4_0_overflow),
        cmocka_unit_test(test_merge_tiny_types),
        cmocka_unit_test(test_merge_small_kquants),
        cmocka_unit_test(test_save_merged_gguf_base),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
