/* test_lora.c — LoRA adapters against the PEFT goldens in $WICK_FIXTURES/tiny-qwen2-lora:
 * unmerged logits with adapter A and B (every position of p0..p2, ref and fast kernels),
 * a swap sequence A -> B -> none -> A in one session, merged A, save -> load round trip
 * (bit-exact tensors and files, PEFT config fields), config variants (rsLoRA, alpha/rank
 * patterns, regex target_modules), bad adapters (clear error, base untouched), registry rules
 * and unloading an adapter a session still uses. Tolerance: the fixture README's 1e-4.
 * Also the bf16 copies precision fast applies on non-F32 bases (test_bf16_copies). */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <math.h>

#include "formats/safetensors.h"
#include "lora/lora.h"
#include "model/model.h"

#define TOL 1e-4

typedef struct fx {
    char *base, *lora, *golden, *base_golden, *dir_a, *dir_b;
} fx;

static void fx_free(fx *f) {
    free(f->base); free(f->lora); free(f->golden); free(f->base_golden);
    free(f->dir_a); free(f->dir_b);
}

static char *cat2(const char *a, const char *b) {
    char *s = malloc(strlen(a) + strlen(b) + 2);
    sprintf(s, "%s/%s", a, b);
    return s;
}

static bool fx_get(fx *f) {
    if (!tu_fixture_exists("tiny-qwen2-lora") || !tu_fixture_exists("tiny-qwen2")) return false;
    f->base = tu_fixture_path("tiny-qwen2");
    f->lora = tu_fixture_path("tiny-qwen2-lora");
    f->golden = cat2(f->lora, "golden.safetensors");
    f->base_golden = cat2(f->base, "golden.safetensors");
    f->dir_a = cat2(f->lora, "adapter_a");
    f->dir_b = cat2(f->lora, "adapter_b");
    return true;
}

#define REQUIRE_FX(f)                          \
    fx f;                                      \
    do {                                       \
        TU_REQUIRE_FIXTURE(probe_, "tiny-qwen2-lora"); \
        free(probe_);                          \
        assert_true(fx_get(&f));               \
    } while (0)

static wick_model *load_model(const char *dir, const char *kern) {
    wick_model_params mp = wick_model_params_default();
    mp.kernels = kern;
    wick_model *m = NULL;
    if (wick_model_load(dir, &mp, &m) != WICK_OK) fail_msg("load %s: %s", dir, wick_last_error());
    return m;
}

static wick_session *new_session(const wick_model *m, int threads) {
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = threads;
    wick_session *s = NULL;
    if (wick_session_create(m, &sp, &s) != WICK_OK) fail_msg("session: %s", wick_last_error());
    return s;
}

/* Evaluates prompt p<pi> from position 0 and returns the max abs error against `key`
 * (formatted with pi) of `file`. */
static double prompt_err(wick_session *s, const fx *f, const char *file, const char *fmt, int pi) {
    char key[64];
    int64_t T, n;
    snprintf(key, sizeof key, "p%d_input_ids", pi);
    int32_t *ids = tu_load_ids(f->golden, key, &T);
    snprintf(key, sizeof key, fmt, pi);
    float *ref = tu_load_f32(file, key, &n, NULL, NULL);
    assert_int_equal(n, T * 1024);
    float *lg = malloc(sizeof(float) * (size_t)n);
    wick_session_reset(s);
    if (wick_session_eval(s, ids, (int)T, WICK_LOGITS_ALL, lg) != WICK_OK)
        fail_msg("eval: %s", wick_last_error());
    double e = tu_max_abs_diff(lg, ref, n);
    free(lg); free(ref); free(ids);
    return e;
}

static void test_unmerged_golden(void **state) {
    REQUIRE_FX(f);
    const char *tables[] = {"ref", "auto"};
    for (int k = 0; k < 2; k++) {
        wick_model *m = load_model(f.base, tables[k]);
        assert_int_equal(wick_adapter_load(m, f.dir_a, NULL), WICK_OK);
        assert_int_equal(wick_adapter_load(m, f.dir_b, "b"), WICK_OK);
        wick_session *s = new_session(m, k ? 2 : 1);
        for (int p = 0; p < 3; p++) {
            assert_int_equal(wick_session_set_adapter(s, "adapter_a", 1.0f), WICK_OK);
            assert_string_equal(wick_session_adapter(s), "adapter_a");
            double ea = prompt_err(s, &f, f.golden, "p%d_logits_adapter_a", p);
            assert_int_equal(wick_session_set_adapter(s, "b", 1.0f), WICK_OK);
            double eb = prompt_err(s, &f, f.golden, "p%d_logits_adapter_b", p);
            printf("[%s] p%d: adapter_a max err %.3g, adapter_b max err %.3g\n", tables[k], p, ea,
                   eb);
            assert_true(ea <= TOL);
            assert_true(eb <= TOL);
        }
        wick_session_free(s);
        wick_model_free(m);
    }
    fx_free(&f);
}

/* One session: A -> B -> none -> A, each checked on every prompt; also a chunked prefill. */
static void test_swap_sequence(void **state) {
    REQUIRE_FX(f);
    wick_model *m = load_model(f.base, "auto");
    assert_int_equal(wick_adapter_load(m, f.dir_a, "a"), WICK_OK);
    assert_int_equal(wick_adapter_load(m, f.dir_b, "b"), WICK_OK);
    wick_session *s = new_session(m, 2);
    const char *seq[] = {"a", "b", NULL, "a"};
    const char *keys[] = {"p%d_logits_adapter_a", "p%d_logits_adapter_b", "p%d_logits",
                          "p%d_logits_adapter_a"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(wick_session_set_adapter(s, seq[i], 1.0f), WICK_OK);
        for (int p = 0; p < 3; p++) {
            double e = prompt_err(s, &f, seq[i] ? f.golden : f.base_golden, keys[i], p);
            printf("swap step %d (%s) p%d: max err %.3g\n", i, seq[i] ? seq[i] : "none", p, e);
            assert_true(e <= TOL);
        }
    }
    /* scale 0 is the base model */
    assert_int_equal(wick_session_set_adapter(s, "a", 0.0f), WICK_OK);
    assert_true(prompt_err(s, &f, f.base_golden, "p%d_logits", 2) <= TOL);
    assert_int_equal(wick_session_set_adapter(s, "nope", 1.0f), WICK_ERR_NOT_FOUND);
    assert_string_equal(wick_session_adapter(s), "a"); /* unchanged after the failure */
    wick_session_free(s);
    wick_model_free(m);
    fx_free(&f);
}

static void test_merged(void **state) {
    REQUIRE_FX(f);
    wick_model *m = load_model(f.base, "auto");
    assert_int_equal(wick_adapter_load(m, f.dir_a, "a"), WICK_OK);
    wick_model *mm = NULL;
    assert_int_equal(wick_model_merge_adapter(m, "a", 1.0f, &mm), WICK_OK);
    wick_session *s = new_session(mm, 2);
    for (int p = 0; p < 3; p++) {
        double e = prompt_err(s, &f, f.golden, "p%d_logits_merged_a", p);
        printf("merged a p%d: max err %.3g\n", p, e);
        assert_true(e <= TOL);
    }
    wick_session_free(s);
    /* the base is untouched while and after the merged model exists ("unmerge" = free) */
    wick_session *sb = new_session(m, 2);
    assert_true(prompt_err(sb, &f, f.base_golden, "p%d_logits", 2) <= TOL);
    wick_model_free(mm);
    assert_true(prompt_err(sb, &f, f.base_golden, "p%d_logits", 1) <= TOL);
    wick_session_free(sb);
    assert_int_equal(wick_model_merge_adapter(m, "zzz", 1.0f, &mm), WICK_ERR_NOT_FOUND);
    assert_null(mm);

    /* merged folder written by wick_model_save loads with the merged logits */
    char *tmp = tu_mkdtemp();
    assert_int_equal(wick_model_merge_adapter(m, "a", 1.0f, &mm), WICK_OK);
    assert_int_equal(wick_model_save(mm, tmp), WICK_OK);
    wick_model_free(mm);
    wick_model *re = load_model(tmp, "auto");
    wick_session *sr = new_session(re, 2);
    for (int p = 0; p < 3; p++) assert_true(prompt_err(sr, &f, f.golden, "p%d_logits_merged_a", p) <= TOL);
    wick_session_free(sr);
    wick_model_free(re);
    tu_rmdir_rf(tmp);
    free(tmp);
    wick_model_free(m);
    fx_free(&f);
}

static void *read_file(const char *dir, const char *name, size_t *len) {
    char *p = cat2(dir, name);
    FILE *fp = fopen(p, "rb");
    if (!fp) fail_msg("cannot open %s", p);
    fseek(fp, 0, SEEK_END);
    *len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc(*len + 1);
    assert_int_equal(fread(b, 1, *len, fp), *len);
    b[*len] = 0;
    fclose(fp);
    free(p);
    return b;
}

static void test_save_roundtrip(void **state) {
    REQUIRE_FX(f);
    wick_model *m = load_model(f.base, "auto");
    assert_int_equal(wick_adapter_load(m, f.dir_a, "a"), WICK_OK);
    char *t1 = tu_mkdtemp(), *t2 = tu_mkdtemp();
    assert_int_equal(wick_adapter_save(m, "a", t1), WICK_OK);
    assert_int_equal(wick_adapter_load(m, t1, "a2"), WICK_OK);
    wick_adapter *a = lora_registry_get(m, "a"), *a2 = lora_registry_get(m, "a2");
    int pairs = 0;
    for (int l = 0; l < a->n_layer; l++)
        for (int p = 0; p < LORA_N_PROJ; p++) {
            const lora_pair *x = lora_get(a, l, p), *y = lora_get(a2, l, p);
            assert_true((x->A.data == NULL) == (y->A.data == NULL));
            if (!x->A.data) continue;
            pairs++;
            assert_int_equal(x->A.rows * x->A.cols, y->A.rows * y->A.cols);
            assert_memory_equal(x->A.data, y->A.data, sizeof(float) * x->A.rows * x->A.cols);
            assert_memory_equal(x->B.data, y->B.data, sizeof(float) * x->B.rows * x->B.cols);
            assert_true(x->scale == y->scale);
        }
    assert_int_equal(pairs, 14);
    lora_adapter_release(a);
    lora_adapter_release(a2);
    /* same logits from the re-read folder */
    wick_session *s = new_session(m, 2);
    assert_int_equal(wick_session_set_adapter(s, "a2", 1.0f), WICK_OK);
    for (int p = 0; p < 3; p++) assert_true(prompt_err(s, &f, f.golden, "p%d_logits_adapter_a", p) <= TOL);
    wick_session_free(s);
    /* saving the re-read adapter gives byte-identical files */
    assert_int_equal(wick_adapter_save(m, "a2", t2), WICK_OK);
    size_t n1, n2;
    char *w1 = read_file(t1, "adapter_model.safetensors", &n1);
    char *w2 = read_file(t2, "adapter_model.safetensors", &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(w1, w2, n1);
    /* the tensors equal the fixture's, name by name, bit for bit */
    st_set *orig = NULL, *mine = NULL;
    char *po = cat2(f.dir_a, "adapter_model.safetensors"), *pm = cat2(t1, "adapter_model.safetensors");
    assert_int_equal(st_open(po, &orig), WICK_OK);
    assert_int_equal(st_open(pm, &mine), WICK_OK);
    assert_int_equal(st_count(orig), st_count(mine));
    for (int i = 0; i < st_count(orig); i++) {
        const st_tensor *x = st_at(orig, i), *y = st_find(mine, x->name);
        assert_non_null(y);
        assert_int_equal(x->dt, y->dt);
        assert_int_equal(x->nbytes, y->nbytes);
        assert_memory_equal(x->data, y->data, x->nbytes);
        if (i) assert_true(strcmp(st_at(mine, i - 1)->name, st_at(mine, i)->name) < 0);
    }
    st_close(orig);
    st_close(mine);
    /* config: every field PEFT requires */
    size_t cl;
    char *cj = read_file(t1, "adapter_config.json", &cl);
    cJSON *c = cJSON_Parse(cj);
    assert_non_null(c);
    const char *req[] = {"peft_type", "task_type", "r", "lora_alpha", "target_modules",
                         "base_model_name_or_path", "bias", "fan_in_fan_out", "use_rslora",
                         "use_dora", "rank_pattern", "alpha_pattern", "modules_to_save",
                         "lora_dropout", "inference_mode", "init_lora_weights",
                         "layers_to_transform", "layers_pattern", "revision"};
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
        if (!cJSON_GetObjectItemCaseSensitive(c, req[i])) fail_msg("missing field %s", req[i]);
    assert_string_equal(cJSON_GetObjectItem(c, "peft_type")->valuestring, "LORA");
    assert_string_equal(cJSON_GetObjectItem(c, "task_type")->valuestring, "CAUSAL_LM");
    assert_int_equal(cJSON_GetObjectItem(c, "r")->valueint, 8);
    assert_true(cJSON_GetObjectItem(c, "lora_alpha")->valuedouble == 16);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(c, "modules_to_save")));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(c, "target_modules")), 7);
    cJSON_Delete(c);
    free(cj); free(w1); free(w2); free(po); free(pm);
    /* an adapter made in memory (no config read) saves with a complete config and reloads */
    wick_adapter *rnd = NULL;
    assert_int_equal(lora_adapter_random(m, 3, 6.0f, (1u << LORA_K) | (1u << LORA_DOWN), 7, &rnd),
                     WICK_OK);
    assert_int_equal(lora_registry_add(m, rnd, "rnd"), WICK_OK);
    char *t3 = tu_mkdtemp();
    assert_int_equal(wick_adapter_save(m, "rnd", t3), WICK_OK);
    if (wick_adapter_load(m, t3, "rnd2") != WICK_OK) fail_msg("reload: %s", wick_last_error());
    wick_adapter *r2 = lora_registry_get(m, "rnd2");
    const lora_pair *pa = lora_get(rnd, 1, LORA_DOWN), *pb = lora_get(r2, 1, LORA_DOWN);
    assert_non_null(pb->A.data);
    assert_null(lora_get(r2, 1, LORA_Q)->A.data);
    assert_memory_equal(pa->A.data, pb->A.data, sizeof(float) * 3 * 176);
    assert_memory_equal(pa->B.data, pb->B.data, sizeof(float) * 64 * 3);
    assert_true(pb->scale == 2.0f);
    lora_adapter_release(r2);
    cj = read_file(t3, "adapter_config.json", &cl);
    c = cJSON_Parse(cj);
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
        if (!cJSON_GetObjectItemCaseSensitive(c, req[i])) fail_msg("missing field %s", req[i]);
    cJSON_Delete(c);
    free(cj);
    tu_rmdir_rf(t3);
    free(t3);
    /* save of an unknown name */
    assert_int_equal(wick_adapter_save(m, "nope", t2), WICK_ERR_NOT_FOUND);
    tu_rmdir_rf(t1); tu_rmdir_rf(t2);
    free(t1); free(t2);
    wick_model_free(m);
    fx_free(&f);
}

/* Precision fast on a base whose projections are not F32 (small-qwen2, BF16): the forward
 * pass applies bf16 copies of A and B (lora_adapter_compact: half the bytes a decode step
 * reads per adapter). Exact precision and F32 bases keep f32; a trainer on the adapter sends
 * the forward pass back to its f32 matrices. The copies are the f32 values rounded to nearest
 * even; their logits equal (to 1e-6) those of the f32 path run on f32 matrices holding the
 * rounded values, and (a sanity bound) differ from the unrounded adapter's by under 3% of the
 * adapter's own effect on the logits (measured 0.82%: 2^-9 relative rounding per element). */
static void test_bf16_copies(void **state) {
    TU_REQUIRE_FIXTURE(dir, "small-qwen2");
    const unsigned all = (1u << LORA_N_PROJ) - 1u;
    const int32_t ids[12] = {5, 77, 301, 1024, 9, 13, 640, 2000, 42, 7, 128, 999};
    for (int fast = 0; fast < 2; fast++) {
        wick_model_params mp = wick_model_params_default();
        mp.precision = fast ? "fast" : "exact";
        mp.load_tokenizer = false;
        wick_model *m = NULL;
        if (wick_model_load(dir, &mp, &m) != WICK_OK) fail_msg("load: %s", wick_last_error());
        wick_adapter *a = NULL;
        assert_int_equal(lora_adapter_random(m, 8, 16.0f, all, 11, &a), WICK_OK);
        assert_int_equal(lora_registry_add(m, a, "r"), WICK_OK);
        lora_adapter_compact_wait(a);
        if (!fast) {
            assert_null(a->half_pairs);
            assert_ptr_equal(lora_adapter_kpairs(a), a->pairs);
            wick_model_free(m);
            continue;
        }
        assert_non_null(a->half_pairs);
        assert_ptr_equal(lora_adapter_kpairs(a), a->half_pairs);
        const lora_pair *h = &a->half_pairs[1 * LORA_N_PROJ + LORA_UP], *f = lora_get(a, 1, LORA_UP);
        assert_int_equal(h->A.dt, DT_BF16);
        assert_int_equal(h->B.dt, DT_BF16);
        assert_true(h->scale == f->scale);
        for (int64_t i = 0; i < f->A.rows * f->A.cols; i++)
            assert_int_equal(((const uint16_t *)h->A.data)[i],
                             f32_to_bf16(((const float *)f->A.data)[i]));
        for (int64_t i = 0; i < f->B.rows * f->B.cols; i++)
            assert_int_equal(((const uint16_t *)h->B.data)[i],
                             f32_to_bf16(((const float *)f->B.data)[i]));
        const int V = 2048;
        float *lg0 = malloc(sizeof(float) * V), *lgh = malloc(sizeof(float) * V),
              *lgf = malloc(sizeof(float) * V);
        wick_session *s = new_session(m, 2);
        assert_int_equal(wick_session_eval(s, ids, 12, WICK_LOGITS_LAST, lg0), WICK_OK);
        assert_int_equal(wick_session_set_adapter(s, "r", 1.0f), WICK_OK);
        wick_session_reset(s);
        assert_int_equal(wick_session_eval(s, ids, 12, WICK_LOGITS_LAST, lgh), WICK_OK);
        /* a trainer on the adapter: f32 from now on */
        wick_trainer *tr = NULL;
        if (wick_trainer_create(m, "r", NULL, &tr) != WICK_OK)
            fail_msg("trainer: %s", wick_last_error());
        assert_ptr_equal(lora_adapter_kpairs(a), a->pairs);
        wick_session_reset(s);
        assert_int_equal(wick_session_eval(s, ids, 12, WICK_LOGITS_LAST, lgf), WICK_OK);
        const double eff = tu_max_abs_diff(lgf, lg0, V), dh = tu_max_abs_diff(lgh, lgf, V);
        printf("bf16 copies: the adapter moves the logits by %.3g, its bf16 copies by %.3g from "
               "f32 (%.2f%%)\n", eff, dh, 100 * dh / eff);
        assert_true(eff > 0.05);
        assert_true(dh > 0); /* the copies were what ran */
        assert_true(dh <= 0.03 * eff);
        /* the f32 matrices rounded in place to the copies' values: the f32 path must now give
           the copies' logits (same kernels, same order; only the loads differ) */
        for (int i = 0; i < a->n_layer * LORA_N_PROJ; i++) {
            lora_pair *p = &a->pairs[i];
            if (!p->A.data) continue;
            float *w[2] = {(float *)p->A.data, (float *)p->B.data};
            const int64_t n[2] = {p->A.rows * p->A.cols, p->B.rows * p->B.cols};
            for (int k = 0; k < 2; k++)
                for (int64_t j = 0; j < n[k]; j++) w[k][j] = bf16_to_f32(f32_to_bf16(w[k][j]));
        }
        wick_session_reset(s);
        assert_int_equal(wick_session_eval(s, ids, 12, WICK_LOGITS_LAST, lgf), WICK_OK);
        const double dr = tu_max_abs_diff(lgh, lgf, V);
        printf("bf16 copies vs f32 matrices of the rounded values: %.3g\n", dr);
        assert_true(dr <= 1e-6);
        wick_trainer_free(tr);
        wick_session_free(s);
        free(lg0), free(lgh), free(lgf);
        wick_model_free(m);
    }
    free(dir);
    /* an F32 base keeps f32 matrices in fast precision */
    TU_REQUIRE_FIXTURE(tiny, "tiny-qwen2");
    wick_model *m = load_model(tiny, "auto");
    wick_adapter *a = NULL;
    assert_int_equal(lora_adapter_random(m, 4, 8.0f, all, 5, &a), WICK_OK);
    assert_int_equal(lora_registry_add(m, a, "r"), WICK_OK);
    lora_adapter_compact_wait(a);
    assert_null(a->half_pairs);
    wick_model_free(m);
    free(tiny);
}

/* ---- variants and bad adapters built from adapter_a ---- */

typedef void (*mutate_fn)(st_write_tensor *t, int *n, float *buf);

/* Writes a copy of adapter_a into a temp dir: config text with `from` replaced by `to`
 * (when from != NULL), tensors passed through `mut` (may be NULL). */
static char *variant(const fx *f, const char *from, const char *to, mutate_fn mut) {
    char *dir = tu_mkdtemp();
    size_t cl;
    char *cfg = read_file(f->dir_a, "adapter_config.json", &cl);
    if (from) {
        char *at = strstr(cfg, from);
        if (!at) fail_msg("'%s' not in config", from);
        char *nc = malloc(cl + strlen(to) + 1);
        sprintf(nc, "%.*s%s%s", (int)(at - cfg), cfg, to, at + strlen(from));
        free(cfg);
        cfg = nc;
    }
    char *cp = cat2(dir, "adapter_config.json");
    tu_write_file(cp, cfg, strlen(cfg));
    free(cp);
    free(cfg);
    char *src = cat2(f->dir_a, "adapter_model.safetensors");
    st_set *st = NULL;
    assert_int_equal(st_open(src, &st), WICK_OK);
    int n = st_count(st);
    st_write_tensor t[64];
    size_t total = 0;
    for (int i = 0; i < n; i++) total += st_at(st, i)->nbytes;
    float *buf = malloc(total);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const st_tensor *x = st_at(st, i);
        memcpy((char *)buf + off, x->data, x->nbytes);
        t[i] = (st_write_tensor){.name = strdup(x->name), .dt = x->dt, .ndim = x->ndim,
                                 .data = (char *)buf + off};
        memcpy(t[i].shape, x->shape, sizeof x->shape);
        off += x->nbytes;
    }
    char *names[64];
    for (int i = 0; i < n; i++) names[i] = (char *)t[i].name;
    int n0 = n;
    if (mut) mut(t, &n, buf);
    char *wp = cat2(dir, "adapter_model.safetensors");
    assert_int_equal(st_write(wp, t, n, NULL, NULL, 0), WICK_OK);
    for (int i = 0; i < n0; i++) free(names[i]);
    free(wp); free(buf); free(src);
    st_close(st);
    return dir;
}

static int find_t(st_write_tensor *t, int n, const char *suffix) {
    for (int i = 0; i < n; i++) {
        size_t a = strlen(t[i].name), b = strlen(suffix);
        if (a >= b && !strcmp(t[i].name + a - b, suffix)) return i;
    }
    fail_msg("no tensor %s", suffix);
    return -1;
}

static void mut_in_dim(st_write_tensor *t, int *n, float *buf) {
    int i = find_t(t, *n, "layers.0.self_attn.q_proj.lora_A.weight");
    t[i].shape[1] = 32;  /* [8, 32] instead of [8, 64]: the first half of the data */
}
static void mut_out_dim(st_write_tensor *t, int *n, float *buf) {
    int i = find_t(t, *n, "layers.1.mlp.down_proj.lora_B.weight");
    t[i].shape[0] = 32;
}
static void mut_drop_b(st_write_tensor *t, int *n, float *buf) {
    int i = find_t(t, *n, "layers.1.self_attn.v_proj.lora_B.weight");
    t[i] = t[--*n];
}
static void mut_nan(st_write_tensor *t, int *n, float *buf) {
    int i = find_t(t, *n, "layers.0.mlp.up_proj.lora_B.weight");
    ((float *)t[i].data)[37] = NAN;
}
static void mut_layer(st_write_tensor *t, int *n, float *buf) {
    int i = find_t(t, *n, "layers.1.self_attn.q_proj.lora_A.weight");
    static char nm[] = "base_model.model.model.layers.5.self_attn.q_proj.lora_A.weight";
    t[i].name = nm;
}
static void mut_dora(st_write_tensor *t, int *n, float *buf) {
    static char nm[] = "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector";
    t[*n] = t[0];
    t[*n].name = nm;
    (*n)++;
}

typedef struct bad_case {
    const char *what, *from, *to;
    mutate_fn mut;
    wick_status want;
    const char *msg1, *msg2;   /* substrings the message must contain */
} bad_case;

static void test_bad_adapters(void **state) {
    REQUIRE_FX(f);
    const bad_case cases[] = {
        {"rank mismatch", "\"r\": 8", "\"r\": 4", NULL, WICK_ERR_SHAPE, "lora_A.weight", "[8, 64]"},
        {"rank_pattern mismatch", "\"rank_pattern\": {}", "\"rank_pattern\": {\"o_proj\": 6}", NULL,
         WICK_ERR_SHAPE, "o_proj.lora_A.weight", "rank_pattern"},
        {"wrong in dim", NULL, NULL, mut_in_dim, WICK_ERR_SHAPE, "q_proj.lora_A.weight", "[8, 32]"},
        {"wrong out dim", NULL, NULL, mut_out_dim, WICK_ERR_SHAPE, "down_proj.lora_B.weight",
         "[32, 8]"},
        {"unknown target", "\"down_proj\",", "\"down_proj\", \"foo_proj\",", NULL,
         WICK_ERR_UNSUPPORTED, "foo_proj", "target module"},
        {"untargeted tensor", "\"down_proj\",", "", NULL, WICK_ERR_FORMAT, "down_proj",
         "target_modules"},
        {"missing lora_B", NULL, NULL, mut_drop_b, WICK_ERR_SHAPE, "v_proj", "lora_B"},
        {"NaN", NULL, NULL, mut_nan, WICK_ERR_FORMAT, "up_proj.lora_B.weight", "non-finite"},
        {"layer out of range", NULL, NULL, mut_layer, WICK_ERR_SHAPE, "layers.5", "2 layers"},
        {"DoRA config", "\"use_dora\": false", "\"use_dora\": true", NULL, WICK_ERR_UNSUPPORTED,
         "use_dora", "DoRA"},
        {"DoRA tensor", NULL, NULL, mut_dora, WICK_ERR_UNSUPPORTED, "lora_magnitude_vector", "DoRA"},
        {"modules_to_save", "\"modules_to_save\": null", "\"modules_to_save\": [\"lm_head\"]", NULL,
         WICK_ERR_UNSUPPORTED, "modules_to_save", "adapter_config.json"},
        {"bias", "\"bias\": \"none\"", "\"bias\": \"all\"", NULL, WICK_ERR_UNSUPPORTED, "bias",
         "all"},
        {"bad regex", "\"target_modules\": [", "\"target_modules\": \"(q_proj\", \"x\": [", NULL,
         WICK_ERR_FORMAT, "target_modules", "regular expression"},
    };
    wick_model *m = load_model(f.base, "auto");
    wick_session *s = new_session(m, 2);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        char *dir = variant(&f, c->from, c->to, c->mut);
        wick_status st = wick_adapter_load(m, dir, "bad");
        const char *msg = wick_last_error();
        printf("%-22s -> %s: %s\n", c->what, wick_status_str(st), msg);
        assert_int_equal(st, c->want);
        if (!strstr(msg, c->msg1) || !strstr(msg, c->msg2))
            fail_msg("%s: message lacks '%s' / '%s'", c->what, c->msg1, c->msg2);
        assert_int_equal(wick_adapters_list(m, NULL, 0), 0);
        tu_rmdir_rf(dir);
        free(dir);
    }
    /* truncated safetensors */
    char *dir = variant(&f, NULL, NULL, NULL);
    char *wp = cat2(dir, "adapter_model.safetensors");
    size_t n;
    char *w = read_file(dir, "adapter_model.safetensors", &n);
    tu_write_file(wp, w, n - 100);
    wick_status st = wick_adapter_load(m, dir, "bad");
    printf("%-22s -> %s: %s\n", "truncated file", wick_status_str(st), wick_last_error());
    assert_int_equal(st, WICK_ERR_FORMAT);
    assert_non_null(strstr(wick_last_error(), "adapter_model.safetensors"));
    free(w); free(wp);
    tu_rmdir_rf(dir);
    free(dir);
    assert_int_equal(wick_adapter_load(m, "/nonexistent/adapter", NULL), WICK_ERR_IO);
    /* the base is unaffected and still usable */
    for (int p = 0; p < 3; p++) assert_true(prompt_err(s, &f, f.base_golden, "p%d_logits", p) <= TOL);
    /* and a good adapter still loads afterwards */
    assert_int_equal(wick_adapter_load(m, f.dir_a, "bad"), WICK_OK);
    wick_session_free(s);
    wick_model_free(m);
    fx_free(&f);
}

/* Accepted config variants: scales from rsLoRA and alpha_pattern, regex targets, rank_pattern
 * that agrees with the tensors. */
static void test_config_variants(void **state) {
    REQUIRE_FX(f);
    wick_model *m = load_model(f.base, "auto");
    char *d1 = variant(&f, "\"use_rslora\": false", "\"use_rslora\": true", NULL);
    assert_int_equal(wick_adapter_load(m, d1, "rs"), WICK_OK);
    wick_adapter *a = lora_registry_get(m, "rs");
    assert_true(fabsf(lora_get(a, 0, LORA_Q)->scale - (float)(16.0 / sqrt(8.0))) < 1e-6f);
    lora_adapter_release(a);
    char *d2 = variant(&f, "\"alpha_pattern\": {}",
                       "\"alpha_pattern\": {\"model.layers.1.mlp.up_proj\": 32, \"q_proj\": 4}",
                       NULL);
    assert_int_equal(wick_adapter_load(m, d2, "ap"), WICK_OK);
    a = lora_registry_get(m, "ap");
    assert_true(lora_get(a, 0, LORA_Q)->scale == 0.5f);
    assert_true(lora_get(a, 1, LORA_UP)->scale == 4.0f);
    assert_true(lora_get(a, 0, LORA_UP)->scale == 2.0f);
    lora_adapter_release(a);
    char *d3 = variant(&f, "\"rank_pattern\": {}", "\"rank_pattern\": {\"k_proj\": 8}", NULL);
    assert_int_equal(wick_adapter_load(m, d3, "rp"), WICK_OK);
    /* regex target_modules selecting all 7 projections gives adapter_a's logits */
    char *d4 = variant(&f, "\"target_modules\": [",
                       "\"target_modules\": \"model\\\\.layers\\\\.\\\\d+\\\\.(self_attn|mlp)\\\\."
                       "\\\\w+_proj\", \"unused\": [", NULL);
    if (wick_adapter_load(m, d4, "re") != WICK_OK) fail_msg("regex: %s", wick_last_error());
    wick_session *s = new_session(m, 2);
    assert_int_equal(wick_session_set_adapter(s, "re", 1.0f), WICK_OK);
    for (int p = 0; p < 3; p++) assert_true(prompt_err(s, &f, f.golden, "p%d_logits_adapter_a", p) <= TOL);
    /* regex that misses a module that has tensors */
    char *d5 = variant(&f, "\"target_modules\": [", "\"target_modules\": \".*q_proj\", \"u\": [",
                       NULL);
    assert_int_equal(wick_adapter_load(m, d5, "re2"), WICK_ERR_FORMAT);
    const char *names[8];
    assert_int_equal(wick_adapters_list(m, names, 8), 4);
    assert_string_equal(names[0], "rs");
    assert_string_equal(names[3], "re");
    wick_session_free(s);
    char *ds[] = {d1, d2, d3, d4, d5};
    for (int i = 0; i < 5; i++) {
        tu_rmdir_rf(ds[i]);
        free(ds[i]);
    }
    wick_model_free(m);
    fx_free(&f);
}

static void test_registry_and_unload_in_use(void **state) {
    REQUIRE_FX(f);
    wick_model *m = load_model(f.base, "auto");
    assert_int_equal(wick_adapter_load(m, f.dir_a, "a"), WICK_OK);
    assert_int_equal(wick_adapter_load(m, f.dir_b, "a"), WICK_ERR_INVALID_ARG);
    assert_int_equal(wick_adapter_load(m, f.dir_b, NULL), WICK_OK);
    const char *names[4];
    assert_int_equal(wick_adapters_list(m, names, 4), 2);
    assert_string_equal(names[1], "adapter_b");
    wick_session *s = new_session(m, 2);
    assert_int_equal(wick_session_set_adapter(s, "a", 1.0f), WICK_OK);
    /* unload while the session uses it: the session keeps working with it */
    assert_int_equal(wick_adapter_unload(m, "a"), WICK_OK);
    assert_int_equal(wick_adapter_unload(m, "a"), WICK_ERR_NOT_FOUND);
    assert_int_equal(wick_adapters_list(m, names, 4), 1);
    assert_true(prompt_err(s, &f, f.golden, "p%d_logits_adapter_a", 1) <= TOL);
    assert_string_equal(wick_session_adapter(s), "a");
    assert_int_equal(wick_session_set_adapter(s, "a", 1.0f), WICK_ERR_NOT_FOUND);
    /* switching away frees it (ASan checks) */
    assert_int_equal(wick_session_set_adapter(s, "adapter_b", 1.0f), WICK_OK);
    assert_true(prompt_err(s, &f, f.golden, "p%d_logits_adapter_b", 2) <= TOL);
    /* the same name can be loaded again */
    assert_int_equal(wick_adapter_load(m, f.dir_a, "a"), WICK_OK);
    assert_int_equal(wick_session_set_adapter(s, "a", 1.0f), WICK_OK);
    assert_int_equal(wick_adapter_unload(m, "a"), WICK_OK);
    wick_session_free(s);  /* drops the last reference */
    /* a model freed with adapters still registered and a session freed holding one */
    wick_session *s2 = new_session(m, 1);
    assert_int_equal(wick_session_set_adapter(s2, "adapter_b", 1.0f), WICK_OK);
    assert_int_equal(wick_session_set_adapter(NULL, "x", 1.0f), WICK_ERR_INVALID_ARG);
    assert_int_equal(wick_session_set_adapter(s2, "adapter_b", NAN), WICK_ERR_INVALID_ARG);
    wick_session_free(s2);
    wick_model_free(m);
    fx_free(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unmerged_golden),
        cmocka_unit_test(test_swap_sequence),
        cmocka_unit_test(test_merged),
        cmocka_unit_test(test_save_roundtrip),
        cmocka_unit_test(test_bad_adapters),
        cmocka_unit_test(test_config_variants),
        cmocka_unit_test(test_registry_and_unload_in_use),
        cmocka_unit_test(test_bf16_copies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
