/* test_train.c — the LoRA trainer against the PyTorch + PEFT training golden in
 * $WICK_FIXTURES/tiny-qwen2-lora (README "Training golden"): loss before step 1, all 28
 * gradients at the initial weights, params and AdamW moments after step 1, losses of steps
 * 1-5, params after step 5 and the loss after the last step, each within the README's
 * tolerances; a finite-difference check of the backward on a random model (with a loss mask);
 * checkpoint save -> load -> continue equals an uninterrupted run bit for bit; a saved adapter
 * loaded with wick_adapter_load gives the trainer's logits; schedules; bad arguments.
 * Full-parameter training against tests/data/full_train_golden.safetensors (made by
 * tests/golden/full_train.py with transformers from the same fixtures): gradients of all 26
 * tensors, 5 AdamW steps with decay / no-decay groups, the same with clipping and a warmup +
 * cosine schedule, gradient accumulation, and a saved model folder + state resuming exactly. */
#include "testutil.h"

#include <cjson/cJSON.h>

#include "base/fileio.h"

#include <math.h>
#include <unistd.h>
#include <sys/stat.h>

#include "formats/safetensors.h"
#include "lora/lora.h"
#include "model/model.h"
#include "model/random.h"
#include "train/train.h"

static char *cat2(const char *a, const char *b) {
    char *s = malloc(strlen(a) + strlen(b) + 2);
    sprintf(s, "%s/%s", a, b);
    return s;
}

typedef struct fx {
    char *base, *lora, *golden, *dir_a;
} fx;

static bool fx_get(fx *f) {
    if (!tu_fixture_exists("tiny-qwen2-lora") || !tu_fixture_exists("tiny-qwen2")) return false;
    f->base = tu_fixture_path("tiny-qwen2");
    f->lora = tu_fixture_path("tiny-qwen2-lora");
    f->golden = cat2(f->lora, "golden.safetensors");
    f->dir_a = cat2(f->lora, "adapter_a");
    return true;
}

static void fx_free(fx *f) {
    free(f->base); free(f->lora); free(f->golden); free(f->dir_a);
}

static wick_model *load_model(const char *dir) {
    wick_model *m = NULL;
    wick_model_params mp = wick_model_params_default();
    mp.load_tokenizer = false;
    if (wick_model_load(dir, &mp, &m) != WICK_OK) fail_msg("load %s: %s", dir, wick_last_error());
    return m;
}

static wick_train_params golden_params(void) {
    wick_train_params p = wick_train_params_default();
    p.lr = 1e-3f;
    p.weight_decay = 0.01f;
    p.n_threads = 1;
    return p;
}

/* Compares the trainer's block (params, grads or a moment) with the 28 tensors of `file`
 * named PEFT key + suffix: |a - b| <= atol + rtol·|b|. */
static void check_block(const wick_trainer *tr, const float *block, const char *file,
                        const char *suffix, double atol, double rtol, const char *what) {
    st_set *s = NULL;
    assert_int_equal(st_open(file, &s), WICK_OK);
    /* 28 tensors, or 56 in the AdamW state file (two moments each) */
    const int per = strstr(suffix, "exp_avg") ? 2 : 1;
    assert_int_equal(st_count(s), 2 * per * tr->n_slots);
    double worst = 0;
    int beyond_rtol = 0;   /* entries outside rtol alone (they pass on the absolute floor) */
    for (int i = 0; i < tr->n_slots; i++) {
        const train_slot *sl = &tr->slots[i];
        for (int h = 0; h < 2; h++) {
            char nm[220];
            snprintf(nm, sizeof nm, "base_model.model.model.layers.%d.%s.lora_%c.weight%s",
                     sl->layer, lora_module_path[sl->proj], h ? 'B' : 'A', suffix);
            const st_tensor *t = st_find(s, nm);
            if (!t) fail_msg("%s: %s missing", file, nm);
            assert_int_equal(t->dt, DT_F32);
            const size_t n = (size_t)sl->r * (h ? sl->out : sl->in);
            assert_int_equal(t->numel, (int64_t)n);
            const float *a = block + (h ? sl->off_b : sl->off_a);
            for (size_t j = 0; j < n; j++) {
                float want;
                memcpy(&want, (const char *)t->data + 4 * j, 4);
                double err = fabs((double)a[j] - want), lim = atol + rtol * fabs(want);
                if (atol < 0) {
                    /* exp_avg_sq = 0.001·g²: the gradient tolerance tg carried through */
                    const double g = sqrt(fabs(want) / 1e-3), tg = 1e-6 + 1e-4 * g;
                    lim = rtol * fabs(want) + 1e-3 * (2 * g * tg + tg * tg);
                }
                if (!(err <= lim))
                    fail_msg("%s: %s[%zu] = %.9g, want %.9g (err %.3g > %.3g)", what, nm, j,
                             a[j], want, err, lim);
                if (err / lim > worst) worst = err / lim;
                beyond_rtol += err > rtol * fabs(want);
            }
        }
    }
    print_message("  %-22s worst err/tolerance %.3f (%d entries beyond the relative term "
                  "alone)\n", what, worst, beyond_rtol);
    st_close(s);
}

static void test_golden(void **state) {
    (void)state;
    fx f;
    if (!fx_get(&f)) {
        TU_REQUIRE_FIXTURE(p, "tiny-qwen2-lora");
        free(p);
    }
    wick_model *m = load_model(f.base);
    assert_int_equal(wick_adapter_load(m, f.dir_a, "a"), WICK_OK);
    int64_t n_ids = 0;
    int32_t *ids = tu_load_ids(f.golden, "train_input_ids", &n_ids);
    assert_int_equal(n_ids, 66);
    float *losses = tu_load_f32(f.golden, "train_losses", NULL, NULL, NULL);
    float *after = tu_load_f32(f.golden, "train_loss_after_last_step", NULL, NULL, NULL);

    wick_train_params p = golden_params();
    wick_trainer *tr = NULL;
    assert_int_equal(wick_trainer_create(m, "a", &p, &tr), WICK_OK);
    assert_int_equal(tr->n_slots, 14);
    assert_int_equal((int)tr->n_params, 18688);
    char *g1 = cat2(f.lora, "train_grads_step1.safetensors");
    char *p1 = cat2(f.lora, "train_params_after_step1.safetensors");
    char *p5 = cat2(f.lora, "train_params_after_step5.safetensors");
    char *s1 = cat2(f.lora, "train_adamw_state_after_step1.safetensors");
    for (int step = 0; step < 5; step++) {
        float loss = 0;
        assert_int_equal(wick_train_step(tr, ids, NULL, 2, 33, &loss), WICK_OK);
        print_message("  step %d loss %.7f (torch %.7f)\n", step + 1, loss, losses[step]);
        assert_true(fabs(loss - losses[step]) <= 1e-5);
        if (step == 0) {
            /* the step leaves its (unclipped) gradient in tr->grad */
            check_block(tr, tr->grad, g1, ".grad", 1e-6, 1e-4, "grads step 1");
            check_block(tr, tr->params, p1, "", 1e-5, 0, "params step 1");
            /* moments: relative 1e-4, with an absolute floor = the gradient tolerance's 1e-6
             * carried through the update (exp_avg = 0.1·g, exp_avg_sq = 0.001·g², whose
             * relative error is twice g's): entries
             * of gradients near 1e-8 cannot be closer than the gradients themselves */
            check_block(tr, tr->m, s1, ".exp_avg", 1e-7, 1e-4, "exp_avg step 1");
            check_block(tr, tr->v, s1, ".exp_avg_sq", -1, 1e-4, "exp_avg_sq step 1");
        }
    }
    check_block(tr, tr->params, p5, "", 1e-5, 0, "params step 5");
    float loss = 0;
    assert_int_equal(wick_train_eval(tr, ids, NULL, 2, 33, &loss), WICK_OK);
    print_message("  after step 5 loss %.7f (torch %.7f)\n", loss, after[0]);
    assert_true(fabs(loss - after[0]) <= 1e-5);
    wick_train_state ts;
    assert_int_equal(wick_trainer_get_state(tr, &ts), WICK_OK);
    assert_int_equal(ts.step, 5);
    assert_true(ts.lr == 1e-3f);
    wick_trainer_free(tr);
    wick_model_free(m);
    free(g1); free(p1); free(p5); free(s1);
    free(ids); free(losses); free(after);
    fx_free(&f);
}

/* Loss in double-free form for the FD check: forward only at the current params. */
static double fd_loss(wick_trainer *tr, const int32_t *ids, const int32_t *labels, int B,
                      int T) {
    float l = 0;
    assert_int_equal(train_forward_backward(tr, ids, labels, B, T, false, 1, &l, NULL, NULL),
                     WICK_OK);
    return l;
}

/* LoRA on every projection of the model in `dir` (vocabulary V): analytic gradients of A and
 * B against central differences. */
/* T tokens per sequence; the random adapter has alpha `alpha` (r 4) and B scaled by bmul */
/* mask: the projections adapted (bit p = LORA_p) */
static void fd_check_lora_m(const char *dir, int V, int T, float alpha, float bmul, unsigned mask);
static void fd_check_lora_t(const char *dir, int V, int T, float alpha, float bmul) {
    fd_check_lora_m(dir, V, T, alpha, bmul, 0x7f);
}
static void fd_check_lora(const char *dir, int V) { fd_check_lora_t(dir, V, 7, 64.0f, 10.0f); }

/* The expert choices of the last forward pass (n_layer × nsel; nsel 0 without experts), to
   tell a perturbation that changes them (routes_moved). */
static int32_t *routes_record(const wick_trainer *tr, int n_layer, size_t nsel) {
    int32_t *routes = calloc((size_t)n_layer * (nsel ? nsel : 1), sizeof *routes);
    assert_non_null(routes);
    for (int l = 0; l < n_layer && nsel; l++)
        if (tr->acts[l].moe_sel) memcpy(routes + l * nsel, tr->acts[l].moe_sel, sizeof *routes * nsel);
    return routes;
}

/* Whether the last forward pass chose other experts than `routes` (n_layer × nsel choices). */
static bool routes_moved(const wick_trainer *tr, const int32_t *routes, int n_layer, size_t nsel) {
    for (int l = 0; l < n_layer && nsel; l++)
        if (tr->acts[l].moe_sel && memcmp(routes + l * nsel, tr->acts[l].moe_sel, sizeof *routes * nsel))
            return true;
    return false;
}

static void fd_check_lora_m(const char *dir, int V, int T, float alpha, float bmul, unsigned mask) {
    wick_model *m = load_model(dir);
    wick_adapter *a = NULL;
    /* nonzero B so every A has a gradient; large scale to make them visible */
    assert_int_equal(lora_adapter_random(m, 4, alpha, mask, 11, &a), WICK_OK);
    for (int i = 0; i < a->n_layer * LORA_N_PROJ; i++) {
        lora_pair *pr = &a->pairs[i];
        if (!pr->B.data) continue;
        float *b = (float *)pr->B.data;
        for (int64_t j = 0; j < pr->B.rows * pr->B.cols; j++) b[j] *= bmul;
    }
    assert_int_equal(lora_registry_add(m, a, "fd"), WICK_OK);
    wick_train_params p = wick_train_params_default();
    p.n_threads = 1;
    wick_trainer *tr = NULL;
    assert_int_equal(wick_trainer_create(m, "fd", &p, &tr), WICK_OK);
    const int B = 2;
    int32_t ids[128], labels[128];
    assert_true(B * T <= 128);
    uint64_t x = 99;
    for (int i = 0; i < B * T; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((x >> 33) % (uint64_t)V);
        labels[i] = (i % 3 == 1) ? -100 : ids[i];   /* masked targets too */
    }
    memset(tr->grad, 0, sizeof(float) * tr->n_params);
    float l0 = 0;
    int64_t cnt = 0;
    assert_int_equal(train_forward_backward(tr, ids, labels, B, T, true, 1, &l0, &cnt, NULL),
                     WICK_OK);
    assert_true(cnt > 0 && cnt < (B * (T - 1)));
    /* mixture of experts: the loss jumps where a perturbation changes an expert choice (no
       derivative there); such entries are skipped, the choices at the point being recorded */
    const model_config *c = &m->cfg;
    const size_t nsel = c->n_expert ? (size_t)B * T * c->n_expert_used : 0;
    int32_t *routes = routes_record(tr, c->n_layer, nsel);
    /* per slot: the largest |grad| entry of A and of B, plus one fixed entry */
    int checked = 0, skipped = 0;
    double worst = 0;
    for (int s = 0; s < tr->n_slots; s++) {
        const train_slot *sl = &tr->slots[s];
        for (int h = 0; h < 2; h++) {
            const size_t off = h ? sl->off_b : sl->off_a, n = (size_t)sl->r * (h ? sl->out : sl->in);
            size_t best = 0;
            for (size_t j = 1; j < n; j++)
                if (fabsf(tr->grad[off + j]) > fabsf(tr->grad[off + best])) best = j;
            size_t picks[2] = {best, (n / 3) % n};
            for (int k = 0, tries = 0; k < 2; k++) { /* tries: replacements of pick k */
                const size_t at = off + picks[k];
                const float save = tr->params[at];
                const float hstep = 2e-3f;
                bool moved = false;
                tr->params[at] = save + hstep;
                double lp = fd_loss(tr, ids, labels, B, T);
                moved |= routes_moved(tr, routes, c->n_layer, nsel);
                tr->params[at] = save - hstep;
                double lm = fd_loss(tr, ids, labels, B, T);
                moved |= routes_moved(tr, routes, c->n_layer, nsel);
                tr->params[at] = save;
                if (moved) { /* another entry of the same tensor instead (at most 16 tries) */
                    skipped++;
                    assert_true(++tries <= 16);
                    picks[k] = (picks[k] + 7) % n;
                    k--;
                    continue;
                }
                const double fd = (lp - lm) / (2.0 * (double)hstep), an = tr->grad[at];
                const double err = fabs(fd - an), lim = 2e-4 + 2e-2 * fabs(an);
                if (!(err <= lim))
                    fail_msg("slot %d (layer %d %s) %c[%zu]: analytic %.6g, finite difference "
                             "%.6g", s, sl->layer, lora_proj_name[sl->proj], h ? 'B' : 'A',
                             picks[k], an, fd);
                if (err / lim > worst) worst = err / lim;
                checked++;
                tries = 0;
            }
        }
    }
    if (skipped) print_message("  %d entries replaced: the step changed an expert choice\n", skipped);
    print_message("  %d entries, worst err/tolerance %.3f\n", checked, worst);
    free(routes);
    wick_trainer_free(tr);
    wick_model_free(m);
}

static void test_finite_differences(void **state) {
    (void)state;
    char *dir = tu_mkdtemp();
    assert_int_equal(random_model_write("tiny", dir, 7, DT_F32, NULL), WICK_OK);
    fd_check_lora(dir, 151936);
    tu_rmdir_rf(dir);
    free(dir);
}

static wick_train_params full_params(void);
static int fd_check_full(const char *dir, int V, int T, const char *const *only, const char *count_tag);

/* Gemma 2 (soft-capped scores and logits, sandwich norms, GELU-tanh, sqrt(d) embeddings) and
 * Gemma 3 (q/k norms, a second RoPE base on sliding layers): LoRA on every projection against
 * central differences, 12 tokens so the window of 8 applies; full training of every tensor too. The
 * adapter is gentler (scale 2) than the Qwen checks': Gemma 2's caps (1.5 on logits, 2 on
 * scores) saturate under large updates, where a 2e-3 step no longer resolves the curvature. */
static void test_gemma_finite_differences(void **state) {
    (void)state;
    fd_check_lora_t(WICK_SOURCE_DIR "/tests/data/arch/gemma3", 512, 12, 8.0f, 10.0f);
    fd_check_lora_t(WICK_SOURCE_DIR "/tests/data/arch/gemma2", 512, 12, 8.0f, 10.0f);
    /* the golden's score cap (2) hardly bends these small scores: a copy capped at 0.05, where
       tanh saturates, checks the caps' derivative in the attention backward */
    char *tmp = tu_mkdtemp(), p[4200], q[4200];
    static const char *const files[] = {"generation_config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", WICK_SOURCE_DIR "/tests/data/arch/gemma2", files[i]);
        snprintf(q, sizeof q, "%s/%s", tmp, files[i]);
        char *buf = NULL;
        size_t n = 0;
        assert_int_equal(file_read_all(p, &buf, &n), WICK_OK);
        tu_write_file(q, buf, n);
        free(buf);
    }
    char *cfg = NULL;
    size_t n = 0;
    assert_int_equal(file_read_all(WICK_SOURCE_DIR "/tests/data/arch/gemma2/config.json", &cfg, &n), WICK_OK);
    cJSON *j = cJSON_Parse(cfg);
    cJSON_ReplaceItemInObject(j, "attn_logit_softcapping", cJSON_CreateNumber(0.05));
    char *out = cJSON_Print(j);
    snprintf(q, sizeof q, "%s/config.json", tmp);
    tu_write_file(q, out, strlen(out));
    fd_check_lora_t(tmp, 512, 12, 8.0f, 10.0f);
    /* full training: every tensor, incl. the four (1 + w) norms a layer, Gemma 3's q/k norms,
       the √d-scaled (and tied) embedding, through both caps */
    assert_int_equal(fd_check_full(WICK_SOURCE_DIR "/tests/data/arch/gemma3", 512, 12, NULL,
                                   "feedforward_layernorm"), 2 * 4);
    assert_int_equal(fd_check_full(WICK_SOURCE_DIR "/tests/data/arch/gemma2", 512, 12, NULL,
                                   "feedforward_layernorm"), 2 * 4);
    assert_true(fd_check_full(tmp, 512, 12, NULL, NULL) > 0);
    free(out), cJSON_Delete(j), free(cfg);
    tu_rmdir_rf(tmp);
    free(tmp);
}

/* Full training of the model in `dir` (vocabulary V, B = 2 sequences of T tokens): the
 * analytic gradient of every tensor whose name contains one of `only` (NULL: every tensor)
 * against central differences, at its largest entry and one fixed entry. Returns the number of
 * tensors checked whose name contains `count_tag` (NULL: all checked). */
static int fd_check_full(const char *dir, int V, int T, const char *const *only, const char *count_tag) {
    wick_model *m = load_model(dir);
    wick_train_params p = full_params();
    p.n_threads = 1;
    wick_trainer *tr = NULL;
    assert_int_equal(wick_trainer_create_full(m, &p, &tr), WICK_OK);
    const int B = 2;
    int32_t ids[128];
    assert_true(B * T <= 128);
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)((i * 37 + 11) % V);
    memset(tr->grad, 0, sizeof(float) * tr->n_params);
    float l0 = 0;
    assert_int_equal(train_forward_backward(tr, ids, NULL, B, T, true, 1, &l0, NULL, NULL), WICK_OK);
    /* mixture of experts: entries whose step changes an expert choice are replaced, as in
       fd_check_lora_m */
    const model_config *c = &m->cfg;
    const size_t nsel = c->n_expert ? (size_t)B * T * c->n_expert_used : 0;
    int32_t *routes = routes_record(tr, c->n_layer, nsel);
    int checked = 0, tagged = 0, skipped = 0;
    double worst = 0;
    for (int i = 0; i < tr->n_tensors; i++) {
        const train_tensor *t = &tr->tensors[i];
        bool want = !only;
        for (int k = 0; only && only[k]; k++) want |= strstr(t->name, only[k]) != NULL;
        if (!want) continue;
        tagged += !count_tag || strstr(t->name, count_tag);
        size_t best = 0;
        for (size_t j = 1; j < t->n; j++)
            if (fabsf(tr->grad[t->off + j]) > fabsf(tr->grad[t->off + best])) best = j;
        size_t picks[2] = {best, (t->n / 3) % t->n};
        for (int k = 0, tries = 0; k < 2; k++) {
            float *w = t->p + picks[k];
            const float save = *w, h = 2e-3f;
            *w = save + h;
            const double lp = fd_loss(tr, ids, NULL, B, T);
            bool moved = routes_moved(tr, routes, c->n_layer, nsel);
            *w = save - h;
            const double lm = fd_loss(tr, ids, NULL, B, T);
            moved |= routes_moved(tr, routes, c->n_layer, nsel);
            *w = save;
            if (moved) { /* another entry of the same tensor instead (at most 16 tries) */
                skipped++;
                assert_true(++tries <= 16);
                picks[k] = (picks[k] + 7) % t->n;
                k--;
                continue;
            }
            tries = 0;
            const double fd = (lp - lm) / (2.0 * (double)h), an = tr->grad[t->off + picks[k]];
            const double err = fabs(fd - an), lim = 2e-4 + 2e-2 * fabs(an);
            if (!(err <= lim)) fail_msg("%s: %s[%zu]: analytic %.6g, finite difference %.6g", dir, t->name, picks[k], an, fd);
            worst = err / lim > worst ? err / lim : worst;
            checked++;
        }
    }
    if (skipped) print_message("  %d entries replaced: the step changed an expert choice\n", skipped);
    print_message("  full: %d entries of %d tensors, worst err/tolerance %.3f\n", checked,
                  checked / 2, worst);
    free(routes);
    wick_trainer_free(tr);
    wick_model_free(m);
    return tagged;
}

/* Qwen3 (per-head q/k RMSNorm before RoPE): the LoRA backward through the norms, and in full
 * mode the gradients of the norm weights and of q/k_proj, against central differences on
 * tests/data/arch/qwen3 (transformers' tiny random Qwen3; its forward matches the goldens in
 * test_arch_golden). */
static void test_qwen3_finite_differences(void **state) {
    (void)state;
    const char *dir = WICK_SOURCE_DIR "/tests/data/arch/qwen3";
    fd_check_lora(dir, 512);
    static const char *const qk[] = {"q_norm", "k_norm", "q_proj.weight", "k_proj.weight", NULL};
    assert_int_equal(fd_check_full(dir, 512, 7, qk, "_norm"), 2 * 2); /* two layers, q and k */
}

/* The training forward (one sequence, no KV cache) on the golden's 40-token prompt against
 * transformers' logits at every position (tests/data/arch/NAME/golden.safetensors), 1e-4 as
 * test_arch_golden: Phi-3's long factors, Gemma's caps, norms and sliding windows in training. */
static void check_train_forward(const char *name) {
    char dir[512], gp[600];
    snprintf(dir, sizeof dir, "%s/tests/data/arch/%s", WICK_SOURCE_DIR, name);
    snprintf(gp, sizeof gp, "%s/golden.safetensors", dir);
    int64_t T = 0, n_ref = 0;
    int32_t *ids = tu_load_ids(gp, "p2_input_ids", &T);
    float *ref = tu_load_f32(gp, "p2_logits", &n_ref, NULL, NULL);
    wick_model *m = load_model(dir);
    wick_train_params p = full_params();
    p.n_threads = 1;
    wick_trainer *tr = NULL;
    assert_int_equal(wick_trainer_create_full(m, &p, &tr), WICK_OK);
    float *lg = malloc(sizeof(float) * (size_t)n_ref), loss = 0;
    assert_int_equal(train_forward_backward(tr, ids, NULL, 1, (int)T, false, 1, &loss, NULL, lg), WICK_OK);
    const double e = tu_max_abs_diff(lg, ref, (size_t)n_ref);
    print_message("  %s: training forward vs transformers, %lld tokens: max |diff| %.3g\n", name,
                  (long long)T, e);
    assert_true(e <= 1e-4);
    wick_trainer_free(tr);
    wick_model_free(m);
    free(lg), free(ref), free(ids);
}

/* Phi-3 (q/k/v and gate/up fused, partial rotary 0.75, longrope): LoRA on the fused modules
 * (one A per module, shared by its members) and full training of every tensor, against central
 * differences, at 12 tokens (short factors) and 40 (past original_max_position_embeddings 32:
 * long factors and the attention factor). */
static void test_phi3_finite_differences(void **state) {
    (void)state;
    const char *dir = WICK_SOURCE_DIR "/tests/data/arch/phi3";
    check_train_forward("phi3");
    check_train_forward("gemma2");
    check_train_forward("gemma3");
    fd_check_lora_t(dir, 512, 12, 8.0f, 10.0f);
    fd_check_lora_t(dir, 512, 40, 8.0f, 10.0f);
    fd_check_full(dir, 512, 12, NULL, NULL);
    assert_int_equal(fd_check_full(dir, 512, 40, NULL, "qkv_proj"), 2);
}

/* On a fused base an adapter whose fused module's members have different A (as
 * wick_adapter_create could not make them, but code holding the struct can) is refused by the
 * trainer and by the PEFT writer, naming the module; nothing is written. */
static void test_phi3_fused_one_a(void **state) {
    (void)state;
    wick_model *m = load_model(WICK_SOURCE_DIR "/tests/data/arch/phi3");
    wick_adapter *a = NULL;
    const unsigned qkv = (1u << LORA_Q) | (1u << LORA_K) | (1u << LORA_V);
    assert_int_equal(lora_adapter_random(m, 4, 8.0f, qkv, 5, &a), WICK_OK);
    lora_pair *k1 = &a->pairs[1 * LORA_N_PROJ + LORA_K]; /* layer 1's k: its own A now */
    const size_t nA = (size_t)(k1->A.rows * k1->A.cols);
    float *own = malloc(sizeof(float) * nA);
    assert_non_null(own);
    memcpy(own, k1->A.data, sizeof(float) * nA);
    own[3] += 0.5f;
    const void *shared = k1->A.data;
    k1->A.data = own;
    char *tmp = tu_mkdtemp(), out[4200];
    snprintf(out, sizeof out, "%s/adapter", tmp);
    assert_int_equal(lora_adapter_write_files(a, out, "phi3"), WICK_ERR_UNSUPPORTED);
    assert_non_null(strstr(wick_last_error(), "self_attn.qkv_proj"));
    assert_non_null(strstr(wick_last_error(), "separate projections"));
    assert_int_equal(access(out, F_OK), -1);
    assert_int_equal(lora_registry_add(m, a, "split"), WICK_OK);
    wick_train_params p = wick_train_params_default();
    wick_trainer *tr = NULL;
    assert_int_equal(wick_trainer_create(m, "split", &p, &tr), WICK_ERR_UNSUPPORTED);
    assert_non_null(strstr(wick_last_error(), "self_attn.qkv_proj"));
    assert_null(tr);
    k1->A.data = shared; /* the adapter frees its own block, not this copy */
    wick_model_free(m);
    free(own);
    tu_rmdir_rf(tmp);
    free(tmp);
}

/* Mixture of experts (Mixtral: renormalized top-2 of 4; Qwen3-MoE: 8 experts, norm_topk_prob;
 * OLMoE: no renormalization, q/k norms over the whole projection): LoRA on the attention
 * projections, whose gradients reach layer 0 through every expert MLP and router above it,
 * and full training of every tensor (routers and experts too), against central differences;
 * adapters on experts are refused. */
static void test_moe_finite_differences(void **state) {
    (void)state;
    static const char *const fams[] = {"mixtral", "qwen3_moe", "olmoe"};
    for (int i = 0; i < 3; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/tests/data/arch/%s", WICK_SOURCE_DIR, fams[i]);
        print_message("  %s\n", fams[i]);
        fd_check_lora_m(dir, 512, 8, 8.0f, 10.0f, 0xf);
        wick_model *m = load_model(dir);
        wick_adapter *a = NULL;
        assert_int_equal(lora_adapter_random(m, 4, 8.0f, 0x7f, 1, &a), WICK_ERR_INVALID_ARG);
        assert_non_null(strstr(wick_last_error(), "mixture of experts"));
        wick_model_free(m);
        /* full training: every tensor, the routers ("….gate.weight") and each expert's
           matrices included */
        assert_true(fd_check_full(dir, 512, 8, NULL, "gate.weight") >= 1);
    }
}

/* Runs `n` steps of a cosine schedule with warmup and clipping on the golden batch. */
static void run_steps(wick_trainer *tr, const int32_t *ids, int n) {
    for (int i = 0; i < n; i++) assert_int_equal(wick_train_step(tr, ids, NULL, 2, 33, NULL), WICK_OK);
}

static void test_checkpoint_resume(void **state) {
    (void)state;
    fx f;
    if (!fx_get(&f)) {
        TU_REQUIRE_FIXTURE(p, "tiny-qwen2-lora");
        free(p);
    }
    wick_model *m = load_model(f.base);
    int32_t *ids = tu_load_ids(f.golden, "train_input_ids", NULL);
    wick_train_params p = golden_params();
    p.schedule = WICK_LR_COSINE;
    p.warmup_steps = 2;
    p.total_steps = 6;
    p.max_grad_norm = 0.5f;
    char *tmp = tu_mkdtemp();
    char *ck = cat2(tmp, "ck");

    /* uninterrupted: 3 + 3 steps; a checkpoint after step 3 */
    assert_int_equal(wick_adapter_load(m, f.dir_a, "run"), WICK_OK);
    wick_trainer *tr = NULL;
    assert_int_equal(wick_trainer_create(m, "run", &p, &tr), WICK_OK);
    run_steps(tr, ids, 3);
    assert_int_equal(wick_trainer_save(tr, ck), WICK_OK);
    run_steps(tr, ids, 3);

    /* resumed: a fresh trainer on the saved folder */
    assert_int_equal(wick_adapter_load(m, ck, "resumed"), WICK_OK);
    wick_trainer *tr2 = NULL;
    assert_int_equal(wick_trainer_create(m, "resumed", &p, &tr2), WICK_OK);
    assert_int_equal(wick_trainer_load_checkpoint(tr2, ck), WICK_OK);
    assert_int_equal(tr2->step, 3);
    run_steps(tr2, ids, 3);
    assert_int_equal(tr2->n_params, tr->n_params);
    assert_memory_equal(tr2->params, tr->params, sizeof(float) * tr->n_params);
    assert_memory_equal(tr2->m, tr->m, sizeof(float) * tr->n_params);
    assert_memory_equal(tr2->v, tr->v, sizeof(float) * tr->n_params);

    /* the saved adapter, loaded for inference, gives the trainer's logits */
    char *fin = cat2(tmp, "final");
    assert_int_equal(wick_trainer_save(tr2, fin), WICK_OK);
    assert_int_equal(wick_adapter_load(m, fin, "final"), WICK_OK);
    wick_session *s = NULL;
    wick_session_params sp = wick_session_params_default();
    sp.n_ctx = 64;
    sp.n_threads = 1;
    assert_int_equal(wick_session_create(m, &sp, &s), WICK_OK);
    assert_int_equal(wick_session_set_adapter(s, "final", 1.0f), WICK_OK);
    float *want = malloc(sizeof(float) * 33 * 1024), *got = malloc(sizeof(float) * 33 * 1024);
    assert_int_equal(wick_session_eval(s, ids + 33, 33, WICK_LOGITS_ALL, want), WICK_OK);
    assert_int_equal(train_forward_backward(tr2, ids + 33, NULL, 1, 33, false, 1, NULL, NULL, got),
                     WICK_OK);
    double diff = tu_max_abs_diff(want, got, 33 * 1024);
    print_message("  session vs trainer logits max |diff| %.3g\n", diff);
    assert_true(diff <= 1e-4);

    /* a checkpoint of another shape is refused and changes nothing */
    assert_int_equal(wick_adapter_create(m, "other", 4, 8.0f, "q,v", 1), WICK_OK);
    wick_trainer *tr3 = NULL;
    assert_int_equal(wick_trainer_create(m, "other", &p, &tr3), WICK_OK);
    float before = tr3->params[0];
    assert_int_equal(wick_trainer_load_checkpoint(tr3, ck), WICK_ERR_SHAPE);
    assert_true(tr3->params[0] == before && tr3->step == 0);
    char *missing = cat2(tmp, "nope");
    assert_int_not_equal(wick_trainer_load_checkpoint(tr3, missing), WICK_OK);

    wick_session_free(s);
    wick_trainer_free(tr);
    wick_trainer_free(tr2);
    wick_trainer_free(tr3);
    wick_model_free(m);
    tu_rmdir_rf(tmp);
    free(missing); free(fin); free(want); free(got); free(ck); free(tmp); free(ids);
    fx_free(&f);
}

static void test_schedules(void **state) {
    (void)state;
    wick_train_params p = wick_train_params_default();
    p.lr = 1.0f;
    p.warmup_steps = 4;
    p.total_steps = 12;
    p.schedule = WICK_LR_LINEAR;
    assert_true(train_lr_at(&p, 0) == 0.0f);
    assert_true(fabsf(train_lr_at(&p, 2) - 0.5f) < 1e-7f);
    assert_true(fabsf(train_lr_at(&p, 4) - 1.0f) < 1e-7f);
    assert_true(fabsf(train_lr_at(&p, 8) - 0.5f) < 1e-7f);
    assert_true(train_lr_at(&p, 12) == 0.0f && train_lr_at(&p, 20) == 0.0f);
    p.schedule = WICK_LR_COSINE;
    assert_true(fabsf(train_lr_at(&p, 8) - 0.5f) < 1e-6f);
    assert_true(fabsf(train_lr_at(&p, 6) - (float)(0.5 * (1 + cos(M_PI * 0.25)))) < 1e-6f);
    p.schedule = WICK_LR_CONSTANT;
    assert_true(train_lr_at(&p, 100) == 1.0f);
}

static void test_bad_args(void **state) {
    (void)state;
    fx f;
    if (!fx_get(&f)) {
        TU_REQUIRE_FIXTURE(p, "tiny-qwen2-lora");
        free(p);
    }
    wick_model *m = load_model(f.base);
    wick_trainer *tr = NULL;
    wick_train_params p = golden_params();
    assert_int_equal(wick_trainer_create(m, "absent", &p, &tr), WICK_ERR_NOT_FOUND);
    assert_null(tr);
    assert_int_equal(wick_adapter_create(m, "x", 8, 16, "q,bogus", 1), WICK_ERR_INVALID_ARG);
    assert_non_null(strstr(wick_last_error(), "bogus"));
    assert_int_equal(wick_adapter_create(m, "x", 0, 16, "q", 1), WICK_ERR_INVALID_ARG);
    assert_int_equal(wick_adapter_create(m, "x", 8, 16, "q,v", 1), WICK_OK);
    assert_int_equal(wick_adapter_create(m, "x", 8, 16, "q,v", 1), WICK_ERR_INVALID_ARG);
    p.schedule = WICK_LR_COSINE;   /* without total_steps */
    assert_int_equal(wick_trainer_create(m, "x", &p, &tr), WICK_ERR_INVALID_ARG);
    p = golden_params();
    p.grad_accum = 2;
    assert_int_equal(wick_trainer_create(m, "x", &p, &tr), WICK_OK);
    int32_t ids[4] = {1, 2, 3, 4}, bad[4] = {1, 2, 5000, 4}, none[4] = {-100, -100, -100, -100};
    float loss;
    assert_int_equal(wick_train_step(tr, bad, NULL, 1, 4, &loss), WICK_ERR_INVALID_ARG);
    assert_non_null(strstr(wick_last_error(), "5000"));
    assert_int_equal(wick_train_step(tr, ids, none, 1, 4, &loss), WICK_ERR_INVALID_ARG);
    assert_int_equal(wick_train_step(tr, ids, NULL, 0, 4, &loss), WICK_ERR_INVALID_ARG);
    /* a pending micro-batch blocks saving; the second completes the step */
    assert_int_equal(wick_train_step(tr, ids, NULL, 1, 4, &loss), WICK_OK);
    assert_int_equal(tr->step, 0);
    char *tmp = tu_mkdtemp();
    assert_int_equal(wick_trainer_save(tr, tmp), WICK_ERR_INVALID_ARG);
    assert_int_equal(wick_train_step(tr, ids, NULL, 1, 4, &loss), WICK_OK);
    assert_int_equal(tr->step, 1);
    assert_int_equal(wick_trainer_save(tr, tmp), WICK_OK);
    tu_rmdir_rf(tmp);
    free(tmp);
    wick_trainer_free(tr);
    wick_model_free(m);
    fx_free(&f);
}

/* ---- full-parameter training -------------------------------------------------------- */

static char *full_golden(void) {
    char *p = cat2(WICK_SOURCE_DIR, "tests/data/full_train_golden.safetensors");
    if (access(p, R_OK)) fail_msg("%s: missing (tests/golden/full_train.py makes it)", p);
    return p;
}

/* Every tensor of the trainer against golden key prefix + name + suffix: |a - b| <= atol +
 * rtol·|b|. ill (params after AdamW steps): entries whose initial gradient (golden
 * name + ".grad") is below 10·eps = 1e-7 are ill-conditioned — AdamW's first update is
 * lr·g/(|g| + eps), so a gradient that both implementations compute in f32 to a few percent
 * (sums of terms ~1e-4 cancelling to ~1e-9: the k biases on slow RoPE dimensions) moves such
 * an entry by up to ~lr·(relative error) per step. Those 46 of 158272 entries are held to
 * the bound an update can have, 2·lr per step, and reported apart. */
static void check_full_g(const wick_trainer *tr, const float *grads, const char *golden,
                         const char *prefix, const char *suffix, const char *gprefix, double atol,
                         double rtol, double trel, const char *what, int ill_steps);
static void check_full(const wick_trainer *tr, const float *grads, const char *golden,
                       const char *prefix, const char *suffix, double atol, double rtol,
                       const char *what, int ill_steps) {
    check_full_g(tr, grads, golden, prefix, suffix, "", atol, rtol, 0, what, ill_steps);
}

/* The golden values of wick tensor `name` (prefix + name + suffix in s), with their count.
 * transformers 5 holds a mixture of experts' matrices fused: mlp.experts.gate_up_proj (E,
 * 2·fe, d), gate rows first, and mlp.experts.down_proj (E, d, fe), and names Mixtral's router
 * mlp.gate; wick's per-expert tensors (the checkpoints' names, block_sparse_moe.experts.E.w1 /
 * w3 / w2 or mlp.experts.E.gate_proj / up_proj / down_proj) are slices of those. NULL if
 * absent. */
static const float *golden_of(const st_set *s, const char *prefix, const char *name,
                              const char *suffix, int64_t *numel) {
    char key[256];
    snprintf(key, sizeof key, "%s%s%s", prefix, name, suffix);
    const st_tensor *t = st_find(s, key);
    if (t) {
        *numel = t->numel;
        return (const float *)t->data;
    }
    int layer = -1, e = -1, n = 0;
    char rest[64] = "";
    if (sscanf(name, "model.layers.%d.block_sparse_moe.gate.weight%n", &layer, &n) == 1 && !name[n]) {
        snprintf(key, sizeof key, "%smodel.layers.%d.mlp.gate.weight%s", prefix, layer, suffix);
        t = st_find(s, key);
        if (t) *numel = t->numel;
        return t ? (const float *)t->data : NULL;
    }
    if (sscanf(name, "model.layers.%d.block_sparse_moe.experts.%d.%63s", &layer, &e, rest) != 3 &&
        sscanf(name, "model.layers.%d.mlp.experts.%d.%63s", &layer, &e, rest) != 3)
        return NULL;
    const bool gate = !strcmp(rest, "w1.weight") || !strcmp(rest, "gate_proj.weight");
    const bool up = !strcmp(rest, "w3.weight") || !strcmp(rest, "up_proj.weight");
    const bool down = !strcmp(rest, "w2.weight") || !strcmp(rest, "down_proj.weight");
    if (!gate && !up && !down) return NULL;
    snprintf(key, sizeof key, "%smodel.layers.%d.mlp.experts.%s%s", prefix, layer,
             down ? "down_proj" : "gate_up_proj", suffix);
    t = st_find(s, key);
    if (!t || t->ndim != 3 || e >= t->shape[0]) return NULL;
    const int64_t per = t->shape[1] * t->shape[2]; /* one expert's block */
    *numel = down ? per : per / 2;
    return (const float *)t->data + e * per + (up ? per / 2 : 0);
}

/* Compares every tensor of tr (its gradients `grads`, or with NULL its values; a tensor held
 * as 1 + w is compared as w) with golden's prefix + name + suffix; the initial gradient under
 * gprefix + name + ".grad" tells the ill-conditioned entries (see test_full_golden). Each entry
 * within atol + rtol·|want| + trel·max|want of its tensor| (trel: float32 sums err with the
 * size of their largest terms, which a small entry of a tensor of large ones does not show). */
static void check_full_g(const wick_trainer *tr, const float *grads, const char *golden,
                         const char *prefix, const char *suffix, const char *gprefix, double atol,
                         double rtol, double trel, const char *what, int ill_steps) {
    st_set *s = NULL;
    assert_int_equal(st_open(golden, &s), WICK_OK);
    double worst = 0, worst_ill = 0;
    int n_ill = 0;
    for (int i = 0; i < tr->n_tensors; i++) {
        const train_tensor *t = &tr->tensors[i];
        char nm[200];
        snprintf(nm, sizeof nm, "%s%s%s", prefix, t->name, suffix);
        int64_t ng = 0, ng0 = 0;
        const float *g = golden_of(s, prefix, t->name, suffix, &ng);
        const float *g0 = golden_of(s, gprefix, t->name, ".grad", &ng0);
        if (!g || !g0) fail_msg("%s: %s or its %s….grad missing", golden, nm, gprefix);
        assert_int_equal(ng, (int64_t)t->n);
        assert_int_equal(ng0, (int64_t)t->n);
        const float *a = grads ? grads + t->off : t->p;
        float gmax = 0.0f;
        for (size_t j = 0; trel > 0 && j < t->n; j++) gmax = fabsf(g[j]) > gmax ? fabsf(g[j]) : gmax;
        for (size_t j = 0; j < t->n; j++) {
            float want, grad0;
            memcpy(&want, g + j, 4);
            memcpy(&grad0, g0 + j, 4);
            const double have = !grads && t->plus_one ? (double)a[j] - 1.0 : (double)a[j];
            const double err = fabs(have - want);
            if (ill_steps && fabsf(grad0) < 1e-7f) {
                const double lim = atol + 2 * ill_steps * 1e-3;
                if (!(err <= lim))
                    fail_msg("%s: ill-conditioned %s[%zu] = %.9g, want %.9g (err %.3g > %.3g)",
                             what, nm, j, have, want, err, lim);
                n_ill++;
                if (err > worst_ill) worst_ill = err;
                continue;
            }
            const double lim = atol + rtol * fabs(want) + trel * gmax;
            if (!(err <= lim))
                fail_msg("%s: %s[%zu] = %.9g, want %.9g (err %.3g > %.3g)", what, nm, j, have,
                         want, err, lim);
            if (err / lim > worst) worst = err / lim;
        }
    }
    print_message("  %-28s %d tensors, worst err/tolerance %.3f", what, tr->n_tensors, worst);
    if (n_ill) print_message(" (%d ill-conditioned entries: worst |err| %.3g)", n_ill, worst_ill);
    print_message("\n");
    st_close(s);
}

static wick_train_params full_params(void) {
    wick_train_params p = golden_params();
    return p;
}

static void test_full_golden(void **state) {
    (void)state;
    fx f;
    if (!fx_get(&f)) {
        TU_REQUIRE_FIXTURE(p, "tiny-qwen2-lora");
        free(p);
    }
    char *gold = full_golden();
    int64_t n_ids = 0;
    int32_t *ids = tu_load_ids(f.golden, "train_input_ids", &n_ids);
    float *loss0 = tu_load_f32(gold, "loss0", NULL, NULL, NULL);

    /* gradients at the initial weights */
    wick_model *m = load_model(f.base);
    wick_train_params p = full_params();
    wick_trainer *tr = NULL;
    assert_int_equal(wick_trainer_create_full(m, &p, &tr), WICK_OK);
    assert_int_equal(tr->n_tensors, 26);
    float loss = 0;
    int64_t cnt = 0;
    memset(tr->grad, 0, sizeof(float) * tr->n_params);
    assert_int_equal(train_forward_backward(tr, ids, NULL, 2, 33, true, 1.0f, &loss, &cnt, NULL),
                     WICK_OK);
    assert_int_equal(cnt, 64);
    print_message("  loss %.7f, transformers %.7f\n", loss, loss0[0]);
    assert_true(fabsf(loss - loss0[0]) <= 1e-5f);
    check_full(tr, tr->grad, gold, "", ".grad", 1e-6, 1e-4, "gradients", 0);
    wick_trainer_free(tr);
    wick_model_free(m);

    /* 5 steps, constant lr, no clipping; and with clipping + warmup/cosine */
    for (int v = 0; v < 2; v++) {
        const char *tag = v ? "clip." : "const.";
        char key[32];
        snprintf(key, sizeof key, "%slosses", tag);
        float *want = tu_load_f32(gold, key, NULL, NULL, NULL);
        m = load_model(f.base);
        p = full_params();
        if (v) {
            p.max_grad_norm = 0.5f;
            p.schedule = WICK_LR_COSINE;
            p.warmup_steps = 2;
            p.total_steps = 5;
        }
        assert_int_equal(wick_trainer_create_full(m, &p, &tr), WICK_OK);
        for (int s = 0; s < 5; s++) {
            assert_int_equal(wick_train_step(tr, ids, NULL, 2, 33, &loss), WICK_OK);
            if (!(fabsf(loss - want[s]) <= 1e-5f))
                fail_msg("%s step %d loss %.7f, want %.7f", tag, s + 1, loss, want[s]);
        }
        check_full(tr, NULL, gold, tag, "", 1e-5, 0, v ? "params, clip + cosine" : "params, 5 steps",
                   5);
        wick_trainer_free(tr);
        wick_model_free(m);
        free(want);
    }

    /* two micro-batches of the same batch accumulate the same mean gradient */
    m = load_model(f.base);
    p = full_params();
    p.grad_accum = 2;
    assert_int_equal(wick_trainer_create_full(m, &p, &tr), WICK_OK);
    assert_int_equal(wick_train_step(tr, ids, NULL, 2, 33, &loss), WICK_OK);
    assert_int_equal(wick_train_step(tr, ids, NULL, 2, 33, &loss), WICK_OK);
    assert_int_equal(tr->step, 1);
    check_full(tr, tr->grad, gold, "", ".grad", 1e-6, 1e-4, "accumulated gradients", 0);
    wick_trainer_free(tr);
    wick_model_free(m);

    free(ids);
    free(loss0);
    free(gold);
    fx_free(&f);
}

/* save after 2 steps -> load the folder -> 3 more steps equals 5 uninterrupted steps */
static void test_full_resume(void **state) {
    (void)state;
    fx f;
    if (!fx_get(&f)) {
        TU_REQUIRE_FIXTURE(p, "tiny-qwen2-lora");
        free(p);
    }
    int64_t n_ids = 0;
    int32_t *ids = tu_load_ids(f.golden, "train_input_ids", &n_ids);
    wick_train_params p = full_params();
    p.schedule = WICK_LR_LINEAR;
    p.total_steps = 5;
    wick_model *m = load_model(f.base);
    wick_trainer *tr = NULL;
    float loss;
    assert_int_equal(wick_trainer_create_full(m, &p, &tr), WICK_OK);
    char *tmp = tu_mkdtemp(), *ck = cat2(tmp, "ck");
    for (int s = 0; s < 5; s++) {
        assert_int_equal(wick_train_step(tr, ids, NULL, 2, 33, &loss), WICK_OK);
        if (s == 1) assert_int_equal(wick_trainer_save(tr, ck), WICK_OK);
    }
    wick_model *m2 = load_model(ck);
    wick_trainer *tr2 = NULL;
    assert_int_equal(wick_trainer_create_full(m2, &p, &tr2), WICK_OK);
    assert_int_equal(wick_trainer_load_checkpoint(tr2, ck), WICK_OK);
    assert_int_equal(tr2->step, 2);
    for (int s = 2; s < 5; s++)
        assert_int_equal(wick_train_step(tr2, ids, NULL, 2, 33, &loss), WICK_OK);
    assert_int_equal(tr2->n_params, tr->n_params);
    for (int i = 0; i < tr->n_tensors; i++)
        if (memcmp(tr->tensors[i].p, tr2->tensors[i].p, sizeof(float) * tr->tensors[i].n))
            fail_msg("resumed %s differs from the uninterrupted run", tr->tensors[i].name);
    /* a LoRA state cannot resume full training, and the reverse */
    assert_int_equal(wick_adapter_load(m2, f.dir_a, "a"), WICK_OK);
    wick_trainer *lt = NULL;
    assert_int_equal(wick_trainer_create(m2, "a", &p, &lt), WICK_OK);
    assert_int_not_equal(wick_trainer_load_checkpoint(lt, ck), WICK_OK);
    wick_trainer_free(lt);
    wick_trainer_free(tr2);
    wick_trainer_free(tr);
    wick_model_free(m2);
    wick_model_free(m);
    tu_rmdir_rf(tmp);
    free(ck);
    free(tmp);
    free(ids);
    fx_free(&f);
}

/* tests/data/arch/FAMILY/train_golden.safetensors (tests/golden/train_families.py: transformers
 * + peft on the CPU, f32): full training (gradients of every tensor at the start, three AdamW
 * steps) and LoRA training with the family's PEFT adapter (lora/, or train_lora/ which the
 * script made), each against the same quantities here. Tolerances as test_full_golden. */
static void family_golden(const char *fam) {
    char dir[512], gold[600], ad[600];
    snprintf(dir, sizeof dir, "%s/tests/data/arch/%s", WICK_SOURCE_DIR, fam);
    snprintf(gold, sizeof gold, "%s/train_golden.safetensors", dir);
    struct stat sb;
    if (stat(gold, &sb)) fail_msg("%s is missing (make it with tests/golden/train_families.py)", gold);
    int64_t n_ids = 0;
    int32_t *ids = tu_load_ids(gold, "ids", &n_ids);
    st_set *s = NULL;
    assert_int_equal(st_open(gold, &s), WICK_OK);
    const st_tensor *it = st_find(s, "ids");
    assert_non_null(it);
    const int B = (int)it->shape[0], T = (int)it->shape[1];
    const bool full = st_find(s, "full.loss0") != NULL, lora = st_find(s, "lora.loss0") != NULL;
    st_close(s);
    for (int mode = 0; mode < 2; mode++) {
        if (mode == 0 ? !full : !lora) continue;
        const char *pre = mode == 0 ? "full." : "lora.";
        char key[256];
        wick_model *m = load_model(dir);
        wick_train_params p = golden_params();
        wick_trainer *tr = NULL;
        if (mode == 0) {
            assert_int_equal(wick_trainer_create_full(m, &p, &tr), WICK_OK);
        } else {
            snprintf(ad, sizeof ad, "%s/lora", dir);
            if (stat(ad, &sb)) snprintf(ad, sizeof ad, "%s/train_lora", dir);
            assert_int_equal(wick_adapter_load(m, ad, "g"), WICK_OK);
            assert_int_equal(wick_trainer_create(m, "g", &p, &tr), WICK_OK);
        }
        snprintf(key, sizeof key, "%sloss0", pre);
        float *loss0 = tu_load_f32(gold, key, NULL, NULL, NULL), loss = 0;
        memset(tr->grad, 0, sizeof(float) * tr->n_params);
        const int64_t nl = (int64_t)B * T * m->cfg.n_vocab;
        float *lg = malloc(sizeof(float) * (size_t)nl);
        assert_int_equal(train_forward_backward(tr, ids, NULL, B, T, true, 1.0f, &loss, NULL, lg), WICK_OK);
        if (mode == 1) { /* the PEFT adapter's logits at every position, as test_arch_golden */
            int64_t n_ref = 0;
            float *ref = tu_load_f32(gold, "lora.logits", &n_ref, NULL, NULL);
            assert_int_equal(n_ref, nl);
            const double e = tu_max_abs_diff(lg, ref, nl);
            print_message("  %s PEFT LoRA logits (%d x %d tokens): max |diff| %.3g\n", fam, B, T, e);
            assert_true(e <= 1e-4);
            free(ref);
        }
        free(lg);
        print_message("  %s %s: loss %.7f, transformers %.7f\n", fam, mode ? "LoRA" : "full", loss, loss0[0]);
        assert_true(fabsf(loss - loss0[0]) <= 1e-5f);
        char what[64];
        snprintf(what, sizeof what, "%s %s gradients", fam, mode ? "LoRA" : "full");
        /* + 1e-5 of each tensor's largest gradient: Gemma 3's layer-0 LoRA gradients (a
           random B on all seven projections, scale 2, up to 1.4 in size) miss by up to 3.5e-6
           of that in their small entries, with the reference kernels too; every other family
           and mode is within 1e-6 + 1e-4·|g| */
        check_full_g(tr, tr->grad, gold, pre, ".grad", pre, 1e-6, 1e-4, 1e-5, what, 0);
        wick_trainer_free(tr);
        wick_model_free(m);
        /* three AdamW steps from the start */
        m = load_model(dir);
        if (mode == 0) {
            assert_int_equal(wick_trainer_create_full(m, &p, &tr), WICK_OK);
        } else {
            assert_int_equal(wick_adapter_load(m, ad, "g"), WICK_OK);
            assert_int_equal(wick_trainer_create(m, "g", &p, &tr), WICK_OK);
        }
        snprintf(key, sizeof key, "%slosses", pre);
        float *want = tu_load_f32(gold, key, NULL, NULL, NULL);
        for (int st = 0; st < 3; st++) {
            assert_int_equal(wick_train_step(tr, ids, NULL, B, T, &loss), WICK_OK);
            if (!(fabsf(loss - want[st]) <= 1e-5f))
                fail_msg("%s %s step %d loss %.7f, want %.7f", fam, pre, st + 1, loss, want[st]);
        }
        /* the parameters after the steps (kept in the goldens of llama32 and mixtral for full
           training, of every family for LoRA; the losses above check the others' steps) */
        st_set *gs = NULL;
        assert_int_equal(st_open(gold, &gs), WICK_OK);
        snprintf(key, sizeof key, "%s%s", pre, tr->tensors[0].name);
        const bool have_params = st_find(gs, key) != NULL;
        st_close(gs);
        snprintf(what, sizeof what, "%s %s params, 3 steps", fam, mode ? "LoRA" : "full");
        if (have_params) check_full_g(tr, NULL, gold, pre, "", pre, 1e-5, 0, 0, what, 3);
        wick_trainer_free(tr);
        wick_model_free(m);
        free(want), free(loss0);
    }
    free(ids);
}

/* Save after 1 of 3 steps, load the checkpoint and resume: the same tensors as 3 uninterrupted
 * steps, bit for bit. Full: Gemma's norms go out as w and come back as 1 + w; Phi-3's fused
 * tensors. LoRA: Phi-3's fused modules through the PEFT folder and trainer_state. */
static void resume_check(const char *fam, bool full) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/data/arch/%s", WICK_SOURCE_DIR, fam);
    int32_t ids[24];
    for (int i = 0; i < 24; i++) ids[i] = (int32_t)((i * 53 + 7) % 512);
    wick_train_params p = golden_params();
    char *tmp = tu_mkdtemp(), *ck = cat2(tmp, "ck");
    wick_model *m = load_model(dir), *m2 = NULL;
    wick_trainer *tr = NULL, *tr2 = NULL;
    if (full) {
        assert_int_equal(wick_trainer_create_full(m, &p, &tr), WICK_OK);
    } else {
        assert_int_equal(wick_adapter_create(m, "a", 4, 8.0f, "default", 5), WICK_OK);
        assert_int_equal(wick_trainer_create(m, "a", &p, &tr), WICK_OK);
    }
    float loss;
    for (int st = 0; st < 3; st++) {
        assert_int_equal(wick_train_step(tr, ids, NULL, 2, 12, &loss), WICK_OK);
        if (st == 0) assert_int_equal(wick_trainer_save(tr, ck), WICK_OK);
    }
    /* WICK_INTEROP_OUT=DIR: the trained model (or adapter) as saved, its ids and wick's logits
       after the 3 steps, for tests/golden/check_trained.py to load in transformers / peft */
    const char *io = getenv("WICK_INTEROP_OUT");
    if (io && *io) {
        char od[1024], lp[1100];
        snprintf(od, sizeof od, "%s/%s_%s", io, fam, full ? "full" : "lora");
        assert_int_equal(wick_trainer_save(tr, od), WICK_OK);
        const int64_t V = m->cfg.n_vocab;
        float *lg = malloc(sizeof(float) * (size_t)(24 * V));
        assert_int_equal(train_forward_backward(tr, ids, NULL, 2, 12, false, 1, &loss, NULL, lg), WICK_OK);
        snprintf(lp, sizeof lp, "%s/wick_logits.f32", od);
        tu_write_file(lp, (const char *)lg, sizeof(float) * (size_t)(24 * V));
        char js[512];
        int n = snprintf(js, sizeof js, "{\"base\": \"%s\", \"mode\": \"%s\", \"shape\": [2, 12, %lld], \"ids\": [",
                         fam, full ? "full" : "lora", (long long)V);
        for (int i = 0; i < 24; i++) n += snprintf(js + n, sizeof js - (size_t)n, "%s%d", i ? ", " : "", ids[i]);
        snprintf(js + n, sizeof js - (size_t)n, "]}\n");
        snprintf(lp, sizeof lp, "%s/wick_logits.json", od);
        tu_write_file(lp, js, strlen(js));
        free(lg);
    }
    if (full) {
        m2 = load_model(ck);
        assert_int_equal(wick_trainer_create_full(m2, &p, &tr2), WICK_OK);
    } else {
        m2 = load_model(dir);
        assert_int_equal(wick_adapter_load(m2, ck, "a"), WICK_OK);
        assert_int_equal(wick_trainer_create(m2, "a", &p, &tr2), WICK_OK);
    }
    assert_int_equal(wick_trainer_load_checkpoint(tr2, ck), WICK_OK);
    for (int st = 1; st < 3; st++) assert_int_equal(wick_train_step(tr2, ids, NULL, 2, 12, &loss), WICK_OK);
    assert_int_equal(tr2->n_tensors, tr->n_tensors);
    for (int i = 0; i < tr->n_tensors; i++)
        if (strcmp(tr->tensors[i].name, tr2->tensors[i].name) ||
            memcmp(tr->tensors[i].p, tr2->tensors[i].p, sizeof(float) * tr->tensors[i].n))
            fail_msg("%s %s: resumed %s differs from the uninterrupted run", fam, full ? "full" : "LoRA",
                     tr->tensors[i].name);
    print_message("  %s %s: resumed = uninterrupted (%d tensors)\n", fam, full ? "full" : "LoRA", tr->n_tensors);
    wick_trainer_free(tr2), wick_trainer_free(tr);
    wick_model_free(m2), wick_model_free(m);
    tu_rmdir_rf(tmp);
    free(ck), free(tmp);
}

static void test_family_resume(void **state) {
    (void)state;
    resume_check("gemma2", true);
    resume_check("gemma3", true);
    resume_check("phi3", true);
    resume_check("phi3", false);
    resume_check("mixtral", false);
    resume_check("qwen3_moe", false);
    resume_check("olmoe", false);
    resume_check("mixtral", true);
    resume_check("qwen3_moe", true);
    resume_check("olmoe", true);
}

static void test_family_goldens(void **state) {
    (void)state;
    static const char *const fams[] = {"gemma2", "gemma3", "llama32", "phi3", "mixtral", "qwen3_moe", "olmoe"};
    for (int i = 0; i < 7; i++) family_golden(fams[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_qwen3_finite_differences),
        cmocka_unit_test(test_gemma_finite_differences),
        cmocka_unit_test(test_phi3_finite_differences),
        cmocka_unit_test(test_phi3_fused_one_a),
        cmocka_unit_test(test_moe_finite_differences),
        cmocka_unit_test(test_family_resume),
        cmocka_unit_test(test_family_goldens),
        cmocka_unit_test(test_checkpoint_resume),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_full_golden),
        cmocka_unit_test(test_full_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
