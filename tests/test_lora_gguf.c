/* test_lora_gguf.c — LoRA adapters in llama.cpp's GGUF LoRA layout.
 *
 * (1) the PEFT fixture adapters of tiny-qwen2-lora, converted with wick_adapter_save_gguf and
 *     loaded back through wick_adapter_load, reproduce the PEFT golden logits (README: 1e-4);
 * (2) llama: a random adapter on tiny-llama saved as PEFT and as GGUF, each applied to the
 *     safetensors base and to a GGUF conversion of it (q/k rows permuted, interleaved RoPE):
 *     all four give the in-memory adapter's logits (1e-5), and the GGUF lora_b rows of q/k
 *     are permuted exactly as the GGUF base's q/k rows;
 * (3) F16 / BF16 / Q8_0 halves load to the same numbers as F32 when the values are exact;
 * (4) malformed files: each check fails with a message naming the file and tensor, and the
 *     model is left without the adapter and with its base logits. */
#include "testutil.h"

#include <math.h>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/quant.h"
#include "lora/lora.h"
#include "model/model.h"
#include "model/model_gguf.h"

static char *cat2(const char *a, const char *b) {
    char *s = malloc(strlen(a) + strlen(b) + 2);
    sprintf(s, "%s/%s", a, b);
    return s;
}

static wick_model *load_model(const char *path) {
    wick_model *m = NULL;
    if (wick_model_load(path, NULL, &m) != WICK_OK) fail_msg("load %s: %s", path, wick_last_error());
    return m;
}

/* Logits of every position of ids with adapter `name` (NULL = base). */
static float *logits(const wick_model *m, const char *name, const int32_t *ids, int T) {
    wick_session_params sp = wick_session_params_default();
    wick_session *s = NULL;
    assert_int_equal(wick_session_create(m, &sp, &s), WICK_OK);
    if (name && wick_session_set_adapter(s, name, 1.0f) != WICK_OK)
        fail_msg("set adapter %s: %s", name, wick_last_error());
    float *lg = malloc(sizeof(float) * (size_t)T * (size_t)m->cfg.n_vocab);
    if (wick_session_eval(s, ids, T, WICK_LOGITS_ALL, lg) != WICK_OK)
        fail_msg("eval: %s", wick_last_error());
    wick_session_free(s);
    return lg;
}

/* ---- (1) PEFT fixtures -> GGUF -> golden ---- */

static void test_fixture_roundtrip(void **state) {
    (void)state;
    TU_REQUIRE_FIXTURE(lora, "tiny-qwen2-lora");
    TU_REQUIRE_FIXTURE(basedir, "tiny-qwen2");
    char *golden = cat2(lora, "golden.safetensors");
    char *tmp = tu_mkdtemp();
    wick_model *m = load_model(basedir);
    const char *ad[2] = {"adapter_a", "adapter_b"};
    for (int k = 0; k < 2; k++) {
        char *dir = cat2(lora, ad[k]);
        char gname[32], file[16];
        snprintf(file, sizeof file, "%s.gguf", ad[k]);
        char *gpath = cat2(tmp, file);
        assert_int_equal(wick_adapter_load(m, dir, ad[k]), WICK_OK);
        assert_int_equal(wick_adapter_save_gguf(m, ad[k], gpath), WICK_OK);
        snprintf(gname, sizeof gname, "g_%s", ad[k]);
        if (wick_adapter_load(m, gpath, gname) != WICK_OK) fail_msg("%s", wick_last_error());
        /* the file says what llama.cpp expects */
        gguf_file *g = NULL;
        assert_int_equal(gguf_open(gpath, &g), WICK_OK);
        char *s = NULL;
        assert_true(gguf_get_str(g, "general.type", &s, NULL));
        assert_string_equal(s, "adapter");
        free(s);
        assert_true(gguf_get_str(g, "general.architecture", &s, NULL));
        assert_string_equal(s, "qwen2");
        free(s);
        assert_true(gguf_get_str(g, "adapter.type", &s, NULL));
        assert_string_equal(s, "lora");
        free(s);
        double alpha = 0;
        assert_true(gguf_get_float(g, "adapter.lora.alpha", &alpha, NULL));
        assert_true(alpha == (k == 0 ? 16.0 : 8.0));
        const gguf_tensor *ta = gguf_find_tensor(g, "blk.0.attn_q.weight.lora_a");
        const gguf_tensor *tb = gguf_find_tensor(g, "blk.0.attn_q.weight.lora_b");
        assert_non_null(ta);
        assert_non_null(tb);
        assert_int_equal(ta->ne[0], m->layers[0].wq.cols);
        assert_int_equal(ta->ne[1], k == 0 ? 8 : 4);
        assert_int_equal(tb->ne[0], k == 0 ? 8 : 4);
        assert_int_equal(tb->ne[1], m->layers[0].wq.rows);
        assert_int_equal(g->n_tensors, k == 0 ? 28 : 8);
        gguf_close(g);
        for (int p = 0; p < 3; p++) {
            char key[64];
            int64_t T, n;
            snprintf(key, sizeof key, "p%d_input_ids", p);
            int32_t *ids = tu_load_ids(golden, key, &T);
            snprintf(key, sizeof key, "p%d_logits_%s", p, ad[k]);
            float *ref = tu_load_f32(golden, key, &n, NULL, NULL);
            float *lg = logits(m, gname, ids, (int)T);
            double e = tu_max_abs_diff(lg, ref, n);
            printf("%s via GGUF p%d: max err %.3g\n", ad[k], p, e);
            assert_true(e <= 1e-4);
            free(ids); free(ref); free(lg);
        }
        free(dir);
        free(gpath);
    }
    wick_model_free(m);
    tu_rmdir_rf(tmp);
    free(tmp); free(golden); free(lora); free(basedir);
}

/* ---- (2) llama: four combinations of base and adapter format ---- */

static void test_llama_four_ways(void **state) {
    (void)state;
    TU_REQUIRE_FIXTURE(dir, "tiny-llama");
    char *golden = cat2(dir, "golden.safetensors");
    char *tmp = tu_mkdtemp();
    char *peft = cat2(tmp, "peft"), *ggad = cat2(tmp, "ad.gguf"), *ggbase = cat2(tmp, "base.gguf");
    wick_model *st = load_model(dir);
    assert_false(st->rope_interleaved);
    wick_adapter *a = NULL;
    assert_int_equal(lora_adapter_random(st, 4, 8.0f, (1u << LORA_N_PROJ) - 1, 77, &a), WICK_OK);
    assert_int_equal(lora_registry_add(st, a, "rand"), WICK_OK);
    assert_int_equal(wick_adapter_save(st, "rand", peft), WICK_OK);
    assert_int_equal(wick_adapter_save_gguf(st, "rand", ggad), WICK_OK);
    assert_int_equal(model_gguf_save(st, ggbase, DT_F32, NULL, 0), WICK_OK);
    wick_model *gb = load_model(ggbase);
    assert_true(gb->rope_interleaved);

    /* the adapter file permutes q/k lora_b rows exactly as the base file permutes q/k */
    char *peft_w = cat2(peft, "adapter_model.safetensors");
    gguf_file *ga = NULL, *gbf = NULL;
    assert_int_equal(gguf_open(ggad, &ga), WICK_OK);
    assert_int_equal(gguf_open(ggbase, &gbf), WICK_OK);
    const int hd = st->cfg.head_dim;
    const char *gq[2] = {"attn_q", "attn_k"}, *hq[2] = {"q_proj", "k_proj"};
    for (int w = 0; w < 2; w++) {
        char nm[128];
        snprintf(nm, sizeof nm, "base_model.model.model.layers.1.self_attn.%s.lora_B.weight", hq[w]);
        int64_t shp[8];
        float *B = tu_load_f32(peft_w, nm, NULL, shp, NULL);
        snprintf(nm, sizeof nm, "blk.1.%s.weight.lora_b", gq[w]);
        const gguf_tensor *tb = gguf_find_tensor(ga, nm);
        snprintf(nm, sizeof nm, "blk.1.%s.weight", gq[w]);
        const gguf_tensor *tw = gguf_find_tensor(gbf, nm);
        assert_non_null(tb);
        assert_non_null(tw);
        assert_int_equal(tb->dt, DT_F32);
        assert_int_equal(tw->dt, DT_F32);
        const wk_weight *W = w ? &st->layers[1].wk : &st->layers[1].wq;
        const float *gB = tb->data, *gW = tw->data;
        float *row = malloc(sizeof(float) * (size_t)W->cols);
        for (int64_t r = 0; r < shp[0]; r++) {
            /* which HF row does GGUF row r of the base hold? */
            int64_t src = -1;
            for (int64_t c = 0; c < W->rows && src < 0; c++) {
                kernels_row_to_f32(row, W, c);
                if (!memcmp(row, gW + r * W->cols, sizeof(float) * (size_t)W->cols)) src = c;
            }
            assert_int_equal(src, lora_qk_row(r, hd, true));
            assert_memory_equal(gB + r * shp[1], B + src * shp[1], sizeof(float) * (size_t)shp[1]);
        }
        free(row);
        free(B);
    }
    gguf_close(ga);
    gguf_close(gbf);
    free(peft_w);

    assert_int_equal(wick_adapter_load(st, peft, "peft"), WICK_OK);
    assert_int_equal(wick_adapter_load(st, ggad, "gguf"), WICK_OK);
    assert_int_equal(wick_adapter_load(gb, peft, "peft"), WICK_OK);
    assert_int_equal(wick_adapter_load(gb, ggad, "gguf"), WICK_OK);
    /* saved as PEFT from the GGUF base (rows in llama.cpp order in memory), loaded on the
       safetensors base: the writer must restore Hugging Face row order */
    char *back = cat2(tmp, "back");
    assert_int_equal(wick_adapter_save(gb, "gguf", back), WICK_OK);
    assert_int_equal(wick_adapter_load(st, back, "back"), WICK_OK);
    free(back);
    for (int p = 0; p < 3; p++) {
        char key[32];
        int64_t T;
        snprintf(key, sizeof key, "p%d_input_ids", p);
        int32_t *ids = tu_load_ids(golden, key, &T);
        const int64_t n = T * st->cfg.n_vocab;
        float *ref = logits(st, "rand", ids, (int)T);
        float *base = logits(st, NULL, ids, (int)T);
        const double moved = tu_max_abs_diff(ref, base, n);
        const wick_model *ms[5] = {st, st, gb, gb, st};
        const char *as[5] = {"peft", "gguf", "peft", "gguf", "back"};
        const char *what[5] = {"st+peft", "st+gguf", "gguf+peft", "gguf+gguf", "st+(gguf->peft)"};
        printf("p%d: adapter moves logits by %.3g;", p, moved);
        assert_true(moved > 1e-3);
        for (int c = 0; c < 5; c++) {
            float *lg = logits(ms[c], as[c], ids, (int)T);
            double e = tu_max_abs_diff(lg, ref, n);
            printf(" %s %.3g", what[c], e);
            assert_true(e <= 1e-5);
            free(lg);
        }
        printf("\n");
        free(ids); free(ref); free(base);
    }
    wick_model_free(gb);
    wick_model_free(st);
    tu_rmdir_rf(tmp);
    free(tmp); free(peft); free(ggad); free(ggbase); free(golden); free(dir);
}

/* ---- hand-made files ---- */

typedef struct tspec {
    const char *name;
    dtype dt;
    int n_dims;
    int64_t ne[4];
    const float *vals; /* ne0*ne1*ne2 values, converted to dt */
} tspec;

/* Writes a GGUF with the given string keys (NULL value = key left out) and tensors. */
static void write_adapter(const char *path, const char *arch, const char *gtype,
                          const char *atype, float alpha, const tspec *ts, int nt) {
    gguf_kv kv[4];
    int nk = 0;
    if (arch) { kv[nk].key = "general.architecture"; kv[nk].v = gguf_v_str(arch); nk++; }
    if (gtype) { kv[nk].key = "general.type"; kv[nk].v = gguf_v_str(gtype); nk++; }
    if (atype) { kv[nk].key = "adapter.type"; kv[nk].v = gguf_v_str(atype); nk++; }
    kv[nk].key = "adapter.lora.alpha"; kv[nk].v = gguf_v_f32(alpha); nk++;
    gguf_write_tensor *wt = calloc((size_t)nt + 1, sizeof *wt);
    void **bufs = calloc((size_t)nt + 1, sizeof *bufs);
    for (int i = 0; i < nt; i++) {
        const int64_t rows = ts[i].ne[1] * ts[i].ne[2] * ts[i].ne[3], cols = ts[i].ne[0];
        const size_t rb = dtype_row_bytes(ts[i].dt, cols);
        unsigned char *b = malloc(rb * (size_t)rows + 1);
        for (int64_t r = 0; r < rows; r++) {
            const float *x = ts[i].vals + r * cols;
            unsigned char *o = b + rb * (size_t)r;
            if (ts[i].dt == DT_F32) memcpy(o, x, sizeof(float) * (size_t)cols);
            else if (ts[i].dt == DT_F16 || ts[i].dt == DT_BF16)
                for (int64_t c = 0; c < cols; c++) {
                    uint16_t h = ts[i].dt == DT_F16 ? f32_to_f16(x[c]) : f32_to_bf16(x[c]);
                    memcpy(o + 2 * c, &h, 2);
                }
            else quant_quantize_row(ts[i].dt, o, x, cols);
        }
        bufs[i] = b;
        wt[i] = (gguf_write_tensor){.name = ts[i].name, .dt = ts[i].dt, .n_dims = ts[i].n_dims,
                                    .data = b};
        memcpy(wt[i].ne, ts[i].ne, sizeof wt[i].ne);
    }
    if (gguf_write(path, kv, nk, wt, nt) != WICK_OK) fail_msg("write: %s", wick_last_error());
    for (int i = 0; i < nt; i++) free(bufs[i]);
    free(bufs);
    free(wt);
}

/* Values k/1024 with |k| <= 127 (exact in f16, bf16 and, with one ±127 per 32-block, Q8_0). */
static float *exact_vals(int64_t n, unsigned seed) {
    float *v = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        int k = (int)((seed >> 16) % 255) - 127;
        v[i] = (i % 32 == 0 ? 127.0f : (float)k) / 1024.0f;
    }
    return v;
}

/* (3) the same exact values in F32, F16/BF16 and Q8_0 give identical logits. */
static void test_dtypes(void **state) {
    (void)state;
    TU_REQUIRE_FIXTURE(basedir, "tiny-qwen2");
    wick_model *m = load_model(basedir);
    char *tmp = tu_mkdtemp();
    const int64_t in = m->layers[0].wv.cols, out = m->layers[0].wv.rows, r = 32;
    float *A = exact_vals(r * in, 1), *B = exact_vals(out * r, 2);
    const dtype da[3] = {DT_F32, DT_F16, DT_Q8_0}, db[3] = {DT_F32, DT_BF16, DT_Q8_0};
    const int32_t ids[5] = {1, 5, 9, 200, 17};
    float *lg[3];
    for (int k = 0; k < 3; k++) {
        tspec ts[2] = {{"blk.0.attn_v.weight.lora_a", da[k], 2, {in, r, 1, 1}, A},
                       {"blk.0.attn_v.weight.lora_b", db[k], 2, {r, out, 1, 1}, B}};
        char nm[16];
        snprintf(nm, sizeof nm, "d%d.gguf", k);
        char *path = cat2(tmp, nm);
        write_adapter(path, "qwen2", "adapter", "lora", 16.0f, ts, 2);
        if (wick_adapter_load(m, path, nm) != WICK_OK) fail_msg("%s", wick_last_error());
        lg[k] = logits(m, nm, ids, 5);
        free(path);
    }
    float *base = logits(m, NULL, ids, 5);
    const int64_t n = 5 * (int64_t)m->cfg.n_vocab;
    printf("dtypes: moved %.3g, f16/bf16 %.3g, q8_0 %.3g\n", tu_max_abs_diff(lg[0], base, n),
           tu_max_abs_diff(lg[1], lg[0], n), tu_max_abs_diff(lg[2], lg[0], n));
    assert_true(tu_max_abs_diff(lg[0], base, n) > 1e-3);
    assert_true(tu_max_abs_diff(lg[1], lg[0], n) == 0);
    assert_true(tu_max_abs_diff(lg[2], lg[0], n) == 0);
    for (int k = 0; k < 3; k++) free(lg[k]);
    free(base); free(A); free(B);
    wick_model_free(m);
    tu_rmdir_rf(tmp);
    free(tmp); free(basedir);
}

/* ---- (4) malformed files ---- */

typedef struct bad_case {
    const char *what;
    wick_status want;
    const char *needles[3]; /* substrings the message must hold (besides the path) */
} bad_case;

static void test_malformed(void **state) {
    (void)state;
    TU_REQUIRE_FIXTURE(basedir, "tiny-qwen2");
    wick_model *m = load_model(basedir);
    char *tmp = tu_mkdtemp();
    const int64_t in = m->layers[0].wq.cols, out = m->layers[0].wq.rows, r = 4;
    float *A = exact_vals(4 * (in + 1) * r, 3), *B = exact_vals(2 * out * (r + 4), 4);
    float *Anan = exact_vals(in * r, 5), *Binf = exact_vals(out * r, 6);
    Anan[in + 3] = NAN;
    Binf[7 * r + 2] = INFINITY;
    const int32_t ids[4] = {3, 1, 4, 1};
    float *before = logits(m, NULL, ids, 4);
    const char *qa = "blk.0.attn_q.weight.lora_a", *qb = "blk.0.attn_q.weight.lora_b";
    tspec good_a = {qa, DT_F32, 2, {in, r, 1, 1}, A}, good_b = {qb, DT_F32, 2, {r, out, 1, 1}, B};
    enum { N = 15 };
    bad_case cases[N] = {
        {"general.type model", WICK_ERR_FORMAT, {"general.type", "\"model\""}},
        {"general.type missing", WICK_ERR_FORMAT, {"missing key general.type"}},
        {"adapter.type ia3", WICK_ERR_UNSUPPORTED, {"adapter.type", "ia3"}},
        {"arch mismatch", WICK_ERR_INVALID_ARG, {"\"llama\"", "\"qwen2\""}},
        {"unknown tensor", WICK_ERR_FORMAT, {"blk.0.attn_x.weight.lora_a", "not a LoRA tensor"}},
        {"lora on output", WICK_ERR_UNSUPPORTED, {"output.weight.lora_a", "not supported"}},
        {"layer out of range", WICK_ERR_SHAPE, {"blk.99.attn_q.weight.lora_a", "layer 99"}},
        {"missing lora_b", WICK_ERR_SHAPE, {qa, "blk.0.attn_q.weight.lora_b"}},
        {"missing lora_a", WICK_ERR_SHAPE, {qb, "blk.0.attn_q.weight.lora_a"}},
        {"lora_a in mismatch", WICK_ERR_SHAPE, {qa, "expected [", "base weight blk.0.attn_q"}},
        {"lora_b out mismatch", WICK_ERR_SHAPE, {qb, "expected [", "base weight blk.0.attn_q"}},
        {"rank mismatch", WICK_ERR_SHAPE, {qb, "ranks of lora_a and lora_b differ"}},
        {"nan in lora_a", WICK_ERR_FORMAT, {qa, "non-finite", "row 1, column 3"}},
        {"inf in lora_b", WICK_ERR_FORMAT, {qb, "non-finite", "row 7, column 2"}},
        {"3-d tensor", WICK_ERR_SHAPE, {qa, "2 dimensions"}},
    };
    for (int c = 0; c < N; c++) {
        char nm[32];
        snprintf(nm, sizeof nm, "bad%d.gguf", c);
        char *path = cat2(tmp, nm);
        tspec ts[2] = {good_a, good_b};
        int nt = 2;
        const char *arch = "qwen2", *gtype = "adapter", *atype = "lora";
        char buf[64];
        switch (c) {
        case 0: gtype = "model"; break;
        case 1: gtype = NULL; break;
        case 2: atype = "ia3"; break;
        case 3: arch = "llama"; break;
        case 4: ts[0].name = "blk.0.attn_x.weight.lora_a"; break;
        case 5: ts[1] = (tspec){"output.weight.lora_a", DT_F32, 2, {in, r, 1, 1}, A}; break;
        case 6: ts[0].name = "blk.99.attn_q.weight.lora_a"; break;
        case 7: nt = 1; break;
        case 8: ts[0] = good_b; nt = 1; break;
        case 9: ts[0].ne[0] = in + 1; break;
        case 10: ts[1].ne[1] = out + 1; break;
        case 11: ts[1].ne[0] = r + 4; break;
        case 12: ts[0].vals = Anan; break;
        case 13: ts[1].vals = Binf; break;
        case 14: ts[0].n_dims = 3; ts[0].ne[1] = 2; ts[0].ne[2] = 2; break;
        }
        (void)buf;
        write_adapter(path, arch, gtype, atype, 8.0f, ts, nt);
        wick_status st = wick_adapter_load(m, path, "bad");
        const char *msg = wick_last_error();
        printf("%-20s -> %s\n", cases[c].what, msg);
        if (st != cases[c].want) fail_msg("%s: status %d, want %d (%s)", cases[c].what, st,
                                          cases[c].want, msg);
        assert_non_null(strstr(msg, path));
        for (int k = 0; k < 3 && cases[c].needles[k]; k++)
            if (!strstr(msg, cases[c].needles[k]))
                fail_msg("%s: message lacks '%s': %s", cases[c].what, cases[c].needles[k], msg);
        assert_int_equal(wick_adapters_list(m, NULL, 0), 0);
        free(path);
    }
    /* not GGUF at all, and a truncated copy of a good file */
    char *junk = cat2(tmp, "junk.gguf"), *good = cat2(tmp, "good.gguf");
    tu_write_file(junk, "this is not gguf", 16);
    assert_int_equal(wick_adapter_load(m, junk, "bad"), WICK_ERR_FORMAT);
    assert_non_null(strstr(wick_last_error(), "not a GGUF file"));
    tspec ts[2] = {good_a, good_b};
    write_adapter(good, "qwen2", "adapter", "lora", 8.0f, ts, 2);
    FILE *f = fopen(good, "rb");
    unsigned char *bytes = malloc(1 << 20);
    size_t nb = fread(bytes, 1, 1 << 20, f);
    fclose(f);
    for (size_t cut = 0; cut < nb; cut += nb / 23 + 1) {
        tu_write_file(junk, bytes, cut);
        wick_status st = wick_adapter_load(m, junk, "bad");
        assert_int_not_equal(st, WICK_OK);
        assert_non_null(strstr(wick_last_error(), junk));
    }
    free(bytes);
    assert_int_equal(wick_adapters_list(m, NULL, 0), 0);
    float *after = logits(m, NULL, ids, 4);
    assert_true(tu_max_abs_diff(before, after, 4 * (int64_t)m->cfg.n_vocab) == 0);
    /* the good file does load */
    assert_int_equal(wick_adapter_load(m, good, NULL), WICK_OK);
    const char *names[2];
    assert_int_equal(wick_adapters_list(m, names, 2), 1);
    printf("default name of %s: %s\n", good, names[0]);
    free(before); free(after); free(junk); free(good);
    free(A); free(B); free(Anan); free(Binf);
    wick_model_free(m);
    tu_rmdir_rf(tmp);
    free(tmp); free(basedir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_roundtrip),
        cmocka_unit_test(test_llama_four_ways),
        cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
