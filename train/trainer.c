/* trainer.c — the public training API: fresh PEFT-style adapters, the trainer over a
 * registered adapter or over every weight of the model, micro-batch accumulation and
 * optimizer steps, and checkpoints (a PEFT folder or a model folder, plus
 * trainer_state.safetensors with the AdamW moments) for exact resumption.
 *
 * A LoRA trainer trains the registered adapter in place: at creation every A/B of the adapter
 * is copied into one f32 block that the adapter owns from then on (a->data), so the parameters
 * stay valid for sessions after the trainer is freed, and a file mapping is never written.
 * A full trainer converts the model's matrices to one f32 block the model owns
 * (wick_model.train_block) and trains them, the norms and the biases in place.
 * Not here: the math (graph.c, optim.c), data loading (cli/cmd_train.c). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "formats/safetensors.h"
#include "model/family.h"
#include "model/model_export.h"
#include "train/train.h"

#define STATE_FILE "trainer_state.safetensors"
#define STATE_FORMAT "wick-trainer"
#define STATE_VERSION "1"

wick_train_params wick_train_params_default(void) {
    return (wick_train_params){.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                               .weight_decay = 0.01f, .schedule = WICK_LR_CONSTANT,
                               .warmup_steps = 0, .total_steps = 0, .max_grad_norm = 0.0f,
                               .grad_accum = 1, .n_threads = 0, .seed = 0};
}

/* "q,v" / "q_proj,v_proj" -> bit mask; 0 on an unknown name (message set). A fused base
 * (Phi-3) names its fused modules: "qkv" / "qkv_proj" (q, k and v), "gate_up" /
 * "gate_up_proj"; their members alone are refused. */
static unsigned parse_targets(const char *s, const wick_model *m) {
    const bool fused = family_get(m->cfg.arch)->fused;
    if (!strcmp(s, "default")) /* PEFT's default target_modules for the family */
        s = fused ? "qkv" : "q,v";
    unsigned mask = 0;
    const char *p = s;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        unsigned found = 0;
        for (int i = 0; i < LORA_N_PROJ; i++) {
            const char *full = NULL; /* the module's name: "q_proj", "qkv_proj"; NULL for a
                                        later member of a fused module */
            const int g = lora_group(fused, i, NULL, &full);
            const char *own = lora_proj_name[i];
            if (g && ((n == strlen(full) && !strncmp(p, full, n)) ||
                      (n == strlen(full) - 5 && !strncmp(p, full, n)))) /* "q", "qkv" */
                found = ((1u << g) - 1) << i;
            else if (g != 1 && ((n == strlen(own) && !strncmp(p, own, n)) ||
                                (n == strlen(own) - 5 && !strncmp(p, own, n)))) {
                /* a member of a fused module, named alone */
                const char *mod = NULL;
                lora_group(true, i <= LORA_V ? LORA_Q : LORA_GATE, NULL, &mod);
                err_set(WICK_ERR_INVALID_ARG, "targets: '%.*s' is one projection of %s's fused "
                        "%s, which is adapted whole: target '%s'", (int)n, p, m->cfg.architecture,
                        mod, mod);
                return 0;
            }
        }
        if (!found) {
            err_set(WICK_ERR_INVALID_ARG, "targets: unknown projection '%.*s' (use %s or their "
                    "*_proj names)", (int)n, p, fused ? "qkv, o, gate_up, down" : "q, k, v, o, gate, up, down");
            return 0;
        }
        mask |= found;
        if (!e) break;
        p = e + 1;
    }
    if (!mask) err_set(WICK_ERR_INVALID_ARG, "targets: no projection given");
    return mask;
}

static void peft_key(char *buf, size_t cap, const train_slot *s, int is_b, bool fused);

wick_status wick_adapter_create(wick_model *model, const char *name, int r, float alpha,
                                const char *targets, uint64_t seed) {
    if (!model || !name || !*name || !targets)
        return err_set(WICK_ERR_INVALID_ARG, "wick_adapter_create: NULL model, name or targets");
    if (r < 1 || r > 4096 || !(alpha > 0))
        return err_set(WICK_ERR_INVALID_ARG, "wick_adapter_create: need 1 <= r <= 4096 and "
                                             "alpha > 0 (got r %d, alpha %g)", r, alpha);
    unsigned mask = parse_targets(targets, model);
    if (!mask) return WICK_ERR_INVALID_ARG;
    wick_adapter *a = NULL;
    /* A ~ U(-1/sqrt(in), 1/sqrt(in)) is PEFT's kaiming_uniform_(a=sqrt(5)) bound; B = 0 */
    wick_status st = lora_adapter_random(model, r, alpha, mask, seed, &a);
    if (st) return st;
    for (int i = 0; i < a->n_layer * LORA_N_PROJ; i++) {
        lora_pair *p = &a->pairs[i];
        if (p->A.data) memset((float *)p->B.data, 0, sizeof(float) * (size_t)(p->B.rows * p->B.cols));
    }
    st = lora_registry_add(model, a, name);
    if (st) lora_adapter_release(a);
    return st;
}

void wick_trainer_free(wick_trainer *tr) {
    if (!tr) return;
    lora_adapter_release(tr->adapter);
    pool_free(tr->pool);
    free(tr->slots);
    free(tr->tensors);
    for (int l = 0; tr->lg && l < tr->model->cfg.n_layer; l++) free(tr->lg[l].exp);
    free(tr->lg);
    free(tr->grad);
    free(tr->m);
    free(tr->v);
    free(tr->arena);
    free(tr->acts);
    free(tr);
}

static wick_status check_params(const wick_train_params *p) {
    if (!(p->lr >= 0) || !(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1) ||
        !(p->eps > 0) || !(p->weight_decay >= 0) || p->warmup_steps < 0 || p->total_steps < 0 ||
        !(p->max_grad_norm >= 0) || p->grad_accum < 1 || p->n_threads < 0 ||
        (unsigned)p->schedule > WICK_LR_COSINE)
        return err_set(WICK_ERR_INVALID_ARG, "wick_train_params: need lr >= 0, 0 <= betas < 1, "
                                             "eps > 0, weight_decay >= 0, warmup/total >= 0, "
                                             "max_grad_norm >= 0, grad_accum >= 1, a known "
                                             "schedule");
    if (p->schedule != WICK_LR_CONSTANT && p->total_steps <= 0)
        return err_set(WICK_ERR_INVALID_ARG, "wick_train_params: a linear or cosine schedule "
                                             "needs total_steps > 0");
    return WICK_OK;
}

wick_status wick_trainer_create(wick_model *model, const char *adapter_name,
                                const wick_train_params *params, wick_trainer **out) {
    if (!out) return err_set(WICK_ERR_INVALID_ARG, "wick_trainer_create: NULL out");
    *out = NULL;
    if (!model || !adapter_name)
        return err_set(WICK_ERR_INVALID_ARG, "wick_trainer_create: NULL model or adapter name");
    if (!kernels_is_host(model->kern))
        return err_set(WICK_ERR_UNSUPPORTED, "wick_trainer_create: the model is on %s; training "
                       "runs on the CPU only in this version (load the model with device cpu)",
                       model->kern->name);
    wick_train_params p = params ? *params : wick_train_params_default();
    wick_status st = check_params(&p);
    if (st) return st;
    wick_adapter *a = lora_registry_get(model, adapter_name);
    if (!a) return err_set(WICK_ERR_NOT_FOUND, "wick_trainer_create: no adapter named '%s' is "
                                               "loaded", adapter_name);
    wick_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) {
        lora_adapter_release(a);
        return err_set(WICK_ERR_NOMEM, "out of memory");
    }
    tr->model = model;
    lora_adapter_full_precision(a); /* its f32 A/B change from here on */
    tr->adapter = a;
    tr->p = p;
    const int L = a->n_layer, n_slots_max = L * LORA_N_PROJ;
    tr->slots = calloc((size_t)n_slots_max, sizeof *tr->slots);
    tr->acts = calloc((size_t)model->cfg.n_layer, sizeof *tr->acts);
    tr->pool = pool_create(p.n_threads ? p.n_threads : pool_cpu_count());
    tr->ctx.pool = tr->pool;
    if (!tr->slots || !tr->acts || !tr->pool) goto nomem;
    /* the MoE backward (train/graph.c moe_bwd) takes the block's output gradient as is: no
       family norms a MoE block's output */
    for (int l = 0; l < model->cfg.n_layer; l++)
        if (model->layers[l].exp_gate && model->layers[l].post_mlp_norm) {
            wick_trainer_free(tr);
            return err_set(WICK_ERR_UNSUPPORTED, "wick_trainer_create: layer %d is a mixture of "
                           "experts with a norm on its output, which training does not handle", l);
        }
    /* a fused base's modules must be adapted whole, with one A (as the reader and
       wick_adapter_create make them) */
    for (int i = 0; i < n_slots_max && a->fused; i++) {
        const char *path = NULL;
        const int g = lora_group(true, i % LORA_N_PROJ, &path, NULL);
        if (g > 1 && !lora_module_one_a(&a->pairs[i], g, NULL)) {
            wick_trainer_free(tr);
            return err_set(WICK_ERR_UNSUPPORTED, "wick_trainer_create: adapter '%s' adapts "
                           "layer %d's %s as separate projections; %s trains it as one "
                           "module (one A)", adapter_name, i / LORA_N_PROJ, path,
                           model->cfg.architecture);
        }
    }
    size_t total = 0;
    for (int i = 0; i < n_slots_max; i++) {
        const lora_pair *pr = &a->pairs[i];
        if (!pr->A.data) continue;
        train_slot *s = &tr->slots[tr->n_slots++];
        s->layer = i / LORA_N_PROJ;
        s->proj = i % LORA_N_PROJ;
        s->r = (int)pr->A.rows;
        s->in = (int)pr->A.cols;
        s->out = (int)pr->B.rows;
        s->group = lora_group(a->fused, s->proj, NULL, NULL);
        if (s->group) {
            s->off_a = total;
            total += (size_t)s->r * s->in;
        } else { /* a fused module's later member (the reader keeps modules whole) */
            s->off_a = s[-1].off_a;
        }
        s->off_b = total;
        total += (size_t)s->out * s->r;
    }
    if (!tr->n_slots) {
        wick_trainer_free(tr);
        return err_set(WICK_ERR_INVALID_ARG, "adapter '%s' adapts no projection: nothing to "
                                             "train", adapter_name);
    }
    tr->n_params = total;
    tr->tensors = calloc((size_t)tr->n_slots * 2, sizeof *tr->tensors);
    if (!tr->tensors) goto nomem;
    float *block = malloc(sizeof(float) * total);
    tr->grad = calloc(total, sizeof(float));
    tr->m = calloc(total, sizeof(float));
    tr->v = calloc(total, sizeof(float));
    if (!block || !tr->grad || !tr->m || !tr->v) {
        free(block);
        goto nomem;
    }
    /* copy, then repoint: from here the adapter owns `block` and never the mapping's bytes */
    for (int i = 0; i < tr->n_slots; i++) {
        const train_slot *s = &tr->slots[i];
        lora_pair *pr = &a->pairs[(size_t)s->layer * LORA_N_PROJ + s->proj];
        memcpy(block + s->off_a, pr->A.data, sizeof(float) * (size_t)s->r * s->in);
        memcpy(block + s->off_b, pr->B.data, sizeof(float) * (size_t)s->out * s->r);
    }
    for (int i = 0; i < tr->n_slots; i++) {
        const train_slot *s = &tr->slots[i];
        lora_pair *pr = &a->pairs[(size_t)s->layer * LORA_N_PROJ + s->proj];
        pr->A.data = block + s->off_a;
        pr->B.data = block + s->off_b;
        pr->file_dt = DT_F32;
    }
    free(a->data);
    a->data = block;
    tr->params = block;
    for (int i = 0; i < tr->n_slots; i++) {
        const train_slot *s = &tr->slots[i];
        if (!s->group) continue;
        int64_t out = 0; /* a fused module's B: its members' rows */
        for (int m = 0; m < s->group; m++) out += s[m].out;
        for (int h = 0; h < 2; h++) {
            train_tensor *t = &tr->tensors[tr->n_tensors++];
            t->off = h ? s->off_b : s->off_a;
            t->p = block + t->off;
            t->rows = h ? out : s->r;
            t->cols = h ? s->r : s->in;
            t->n = (size_t)(t->rows * t->cols);
            t->decay = true;
            peft_key(t->name, sizeof t->name, s, h, a->fused);
        }
    }
    *out = tr;
    return WICK_OK;
nomem:
    wick_trainer_free(tr);
    return err_set(WICK_ERR_NOMEM, "out of memory creating a trainer for adapter '%s'",
                   adapter_name);
}

/* ---- full-parameter training ---------------------------------------------------------- */

static wk_weight *layer_proj(layer_weights *w, int p) {
    wk_weight *ws[LORA_N_PROJ] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->w_gate, &w->w_up,
                                  &w->w_down};
    return ws[p];
}

static float *layer_bias(layer_weights *w, int p) {
    float *bs[LORA_N_PROJ] = {w->bq, w->bk, w->bv, w->bo, w->b_gate, w->b_up, w->b_down};
    return bs[p];
}

/* Adds a tensor of the full trainer (values at p, decay or not) at offset *off; *g will point
 * at its gradient. */
static void add_tensor(wick_trainer *tr, size_t *off, float *p, float **g, int64_t rows,
                       int64_t cols, bool decay, const char *fmt, int layer) {
    train_tensor *t = &tr->tensors[tr->n_tensors++];
    t->p = p;
    t->g = g;
    t->rows = rows;
    t->cols = cols;
    t->n = (size_t)(rows * (cols ? cols : 1));
    t->off = *off;
    t->decay = decay;
    snprintf(t->name, sizeof t->name, fmt, layer);
    *off += t->n;
}

/* Converts every matrix of m to f32 in one block the model owns (once: a second full trainer
 * on the same model finds them converted). */
static wick_status to_f32_block(wick_model *m) {
    if (m->train_block) return WICK_OK;
    const model_config *c = &m->cfg;
    const bool tied = m->lm_head.data == m->tok_embd.data;
    /* the embedding, an untied head, each layer's projections and, with experts, its router
       and every expert's three matrices */
    const size_t cap = 2 + (size_t)c->n_layer * (LORA_N_PROJ + 1 + 3 * (size_t)c->n_expert);
    wk_weight **mats = malloc(sizeof *mats * cap);
    if (!mats) return err_set(WICK_ERR_NOMEM, "out of memory");
    size_t nm = 0;
    mats[nm++] = &m->tok_embd;
    if (!tied) mats[nm++] = &m->lm_head;
    for (int l = 0; l < c->n_layer; l++) {
        layer_weights *w = &m->layers[l];
        for (int p = 0; p < LORA_N_PROJ; p++) mats[nm++] = layer_proj(w, p);
        if (!w->exp_gate) continue;
        mats[nm++] = &w->router;
        for (int e = 0; e < c->n_expert; e++) {
            mats[nm++] = &w->exp_gate[e];
            mats[nm++] = &w->exp_up[e];
            mats[nm++] = &w->exp_down[e];
        }
    }
    size_t total = 0;
    for (size_t i = 0; i < nm; i++) total += (size_t)(mats[i]->rows * mats[i]->cols);
    float *block = malloc(sizeof(float) * (total ? total : 1));
    if (!block) {
        free(mats);
        return err_set(WICK_ERR_NOMEM, "out of memory for an f32 copy of the model's weights "
                                       "(%.1f MiB)", (double)total * 4 / (1 << 20));
    }
    size_t off = 0;
    for (size_t i = 0; i < nm; i++) {
        wk_weight *W = mats[i];
        if (!W->data) continue; /* a MoE layer has no dense gate / up / down */
        for (int64_t r = 0; r < W->rows; r++)
            kernels_row_to_f32(block + off + (size_t)(r * W->cols), W, r);
        W->data = block + off;
        W->dt = DT_F32;
        off += (size_t)(W->rows * W->cols);
    }
    free(mats);
    if (tied) m->lm_head = m->tok_embd;
    m->train_block = block;
    snprintf(m->weight_dtype, sizeof m->weight_dtype, "%s", dtype_name(DT_F32));
    return WICK_OK;
}

wick_status wick_trainer_create_full(wick_model *model, const wick_train_params *params,
                                     wick_trainer **out) {
    if (!out) return err_set(WICK_ERR_INVALID_ARG, "wick_trainer_create_full: NULL out");
    *out = NULL;
    if (!model) return err_set(WICK_ERR_INVALID_ARG, "wick_trainer_create_full: NULL model");
    if (!kernels_is_host(model->kern))
        return err_set(WICK_ERR_UNSUPPORTED, "wick_trainer_create_full: the model is on %s; "
                       "training runs on the CPU only in this version", model->kern->name);
    if (model->free_self)
        return err_set(WICK_ERR_UNSUPPORTED, "wick_trainer_create_full: a merged-adapter handle "
                       "borrows its base's weights; save it and load the result to train it");
    if (model->rope_interleaved)
        return err_set(WICK_ERR_UNSUPPORTED, "wick_trainer_create_full: %s holds q/k rows in "
                       "GGUF llama order; convert it to a folder first (wick convert)",
                       model->path ? model->path : "the model");
    const model_config *c = &model->cfg;
    if (c->n_layer > 512)
        return err_set(WICK_ERR_UNSUPPORTED, "wick_trainer_create_full: %d layers (at most 512)",
                       c->n_layer);
    wick_train_params p = params ? *params : wick_train_params_default();
    wick_status st = check_params(&p);
    if (st) return st;
    if ((st = to_f32_block(model))) return st;
    wick_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) return err_set(WICK_ERR_NOMEM, "out of memory");
    tr->model = model;
    tr->full = true;
    tr->p = p;
    const int L = c->n_layer;
    const bool tied = model->lm_head.data == model->tok_embd.data;
    tr->tensors = calloc((size_t)(3 + L * (2 * LORA_N_PROJ + 6 + 1 + 3 * c->n_expert)), sizeof *tr->tensors);
    tr->lg = calloc((size_t)L, sizeof *tr->lg);
    tr->acts = calloc((size_t)L, sizeof *tr->acts);
    tr->pool = pool_create(p.n_threads ? p.n_threads : pool_cpu_count());
    tr->ctx.pool = tr->pool;
    if (!tr->tensors || !tr->lg || !tr->acts || !tr->pool) goto nomem;
    /* Hugging Face names; matrices decay, norms and biases do not */
    size_t off = 0;
    const int64_t d = c->n_embd;
    add_tensor(tr, &off, (float *)model->tok_embd.data, &tr->g_embd, model->tok_embd.rows, d,
               true, "model.embed_tokens.weight", 0);
    /* Gemma: four norms a layer under its own names, each held as 1 + w (files hold w) */
    const bool gemma = family_get(c->arch)->gemma, fused = family_get(c->arch)->fused;
    for (int l = 0; l < L; l++) {
        layer_weights *w = &model->layers[l];
        train_layer_grads *lg = &tr->lg[l];
        add_tensor(tr, &off, w->attn_norm, &lg->attn_norm, d, 0, false,
                   "model.layers.%d.input_layernorm.weight", l);
        for (int q = 0; q < LORA_N_PROJ; q++) {
            char fmt[96];
            wk_weight *W = layer_proj(w, q);
            const char *path = NULL;
            /* Phi-3: q/k/v and gate/up are one tensor each (to_f32_block laid the members'
               rows out one after another) */
            const int g = lora_group(fused, q, &path, NULL);
            int64_t rows = 0;
            for (int m = 0; m < g; m++) rows += layer_proj(w, q + m)->rows;
            if (g && W->data) { /* (a MoE layer has no dense MLP) */
                snprintf(fmt, sizeof fmt, "model.layers.%%d.%s.weight", path);
                add_tensor(tr, &off, (float *)W->data, &lg->w[q], rows, W->cols, true, fmt, l);
            }
            if (layer_bias(w, q)) {
                snprintf(fmt, sizeof fmt, "model.layers.%%d.%s.bias", lora_module_path[q]);
                add_tensor(tr, &off, layer_bias(w, q), &lg->b[q], W->rows, 0, false, fmt, l);
            }
            if (q == LORA_K && w->q_norm) { /* Qwen3's per-head norms (OLMoE's over the whole
                                               projection), named as transformers does */
                const int64_t fq = c->qk_norm_full ? c->n_head : 1, fk = c->qk_norm_full ? c->n_kv_head : 1;
                add_tensor(tr, &off, w->q_norm, &lg->q_norm, fq * c->head_dim, 0, false,
                           "model.layers.%d.self_attn.q_norm.weight", l);
                add_tensor(tr, &off, w->k_norm, &lg->k_norm, fk * c->head_dim, 0, false,
                           "model.layers.%d.self_attn.k_norm.weight", l);
            }
            if (q == LORA_O && gemma) {
                add_tensor(tr, &off, w->post_attn_norm, &lg->post_attn_norm, d, 0, false,
                           "model.layers.%d.post_attention_layernorm.weight", l);
                add_tensor(tr, &off, w->mlp_norm, &lg->mlp_norm, d, 0, false,
                           "model.layers.%d.pre_feedforward_layernorm.weight", l);
            } else if (q == LORA_O) {
                add_tensor(tr, &off, w->mlp_norm, &lg->mlp_norm, d, 0, false,
                           "model.layers.%d.post_attention_layernorm.weight", l);
            }
            if (q == LORA_DOWN && gemma)
                add_tensor(tr, &off, w->post_mlp_norm, &lg->post_mlp_norm, d, 0, false,
                           "model.layers.%d.post_feedforward_layernorm.weight", l);
        }
        if (w->exp_gate) { /* a mixture of experts: the router, then expert by expert */
            const model_family *fd = family_get(c->arch);
            if (!(lg->exp = calloc(3 * (size_t)c->n_expert, sizeof *lg->exp))) goto nomem;
            add_tensor(tr, &off, (float *)w->router.data, &lg->router, w->router.rows,
                       w->router.cols, true, fd->moe_router, l);
            const char *fmts[3] = {fd->moe_gate, fd->moe_up, fd->moe_down};
            for (int e = 0; e < c->n_expert; e++) {
                const wk_weight *ws[3] = {&w->exp_gate[e], &w->exp_up[e], &w->exp_down[e]};
                for (int j = 0; j < 3; j++) { /* lg->exp: gates, then ups, then downs */
                    add_tensor(tr, &off, (float *)ws[j]->data, &lg->exp[j * c->n_expert + e],
                               ws[j]->rows, ws[j]->cols, true, "", 0);
                    train_tensor *t = &tr->tensors[tr->n_tensors - 1];
                    snprintf(t->name, sizeof t->name, fmts[j], l, e);
                }
            }
        }
    }
    add_tensor(tr, &off, model->final_norm, &tr->g_final_norm, d, 0, false, "model.norm.weight",
               0);
    for (int i = 0; i < tr->n_tensors && gemma; i++) /* its norms (biases stay as they are) */
        tr->tensors[i].plus_one = tr->tensors[i].cols == 0 && strstr(tr->tensors[i].name, "norm.weight");
    if (!tied)
        add_tensor(tr, &off, (float *)model->lm_head.data, &tr->g_head, model->lm_head.rows, d,
                   true, "lm_head.weight", 0);
    tr->n_params = off;
    tr->grad = calloc(off, sizeof(float));
    tr->m = calloc(off, sizeof(float));
    tr->v = calloc(off, sizeof(float));
    if (!tr->grad || !tr->m || !tr->v) goto nomem;
    for (int i = 0; i < tr->n_tensors; i++) /* gradient destinations */
        if (tr->tensors[i].g) *tr->tensors[i].g = tr->grad + tr->tensors[i].off;
    for (int l = 0; l < L && fused; l++) /* a fused tensor's later members: their rows of it */
        for (int q = 1; q < LORA_N_PROJ; q++)
            if (!lora_group(true, q, NULL, NULL)) {
                const wk_weight *prev = layer_proj(&model->layers[l], q - 1);
                tr->lg[l].w[q] = tr->lg[l].w[q - 1] + (size_t)(prev->rows * prev->cols);
            }
    *out = tr;
    return WICK_OK;
nomem:
    wick_trainer_free(tr);
    return err_set(WICK_ERR_NOMEM, "out of memory creating a full trainer");
}

wick_status wick_train_step(wick_trainer *tr, const int32_t *ids, const int32_t *labels,
                            int batch, int seq_len, float *loss) {
    if (!tr) return err_set(WICK_ERR_INVALID_ARG, "wick_train_step: NULL trainer");
    if (tr->micro == 0) memset(tr->grad, 0, sizeof(float) * tr->n_params);
    float l = 0;
    int64_t cnt = 0;
    wick_status st = train_forward_backward(tr, ids, labels, batch, seq_len, true,
                                            1.0f / (float)tr->p.grad_accum, &l, &cnt, NULL);
    if (st) return st;
    if (cnt == 0)
        return err_set(WICK_ERR_INVALID_ARG, "wick_train_step: the batch has no target token "
                                             "(every label is -100 or seq_len is 1)");
    if (loss) *loss = l;
    if (++tr->micro < tr->p.grad_accum) return WICK_OK;
    tr->micro = 0;
    const float lr = train_lr_at(&tr->p, tr->step);
    tr->last_grad_norm = train_adamw_step(tr, lr);
    tr->last_lr = lr;
    if (tr->adapter) tr->adapter->uid = lora_next_uid();  /* sessions must not reuse its KV */
    return WICK_OK;
}

wick_status wick_train_eval(wick_trainer *tr, const int32_t *ids, const int32_t *labels,
                            int batch, int seq_len, float *loss) {
    if (!tr) return err_set(WICK_ERR_INVALID_ARG, "wick_train_eval: NULL trainer");
    return train_forward_backward(tr, ids, labels, batch, seq_len, false, 1.0f, loss, NULL,
                                  NULL);
}

wick_status wick_trainer_get_state(const wick_trainer *tr, wick_train_state *out) {
    if (!tr || !out) return err_set(WICK_ERR_INVALID_ARG, "wick_trainer_get_state: NULL argument");
    *out = (wick_train_state){.step = tr->step, .lr = tr->last_lr,
                              .grad_norm = tr->last_grad_norm, .n_params = (int64_t)tr->n_params};
    return WICK_OK;
}

/* PEFT key of a slot's A (is_b 0) or B. */
static void peft_key(char *buf, size_t cap, const train_slot *s, int is_b, bool fused) {
    const char *path = NULL;
    lora_group(fused, s->proj, &path, NULL);
    snprintf(buf, cap, "base_model.model.model.layers.%d.%s.lora_%c.weight", s->layer,
             path, is_b ? 'B' : 'A');
}

#define N_META 14

/* trainer_state.safetensors at `path`: exp_avg / exp_avg_sq of every tensor under its name +
 * ".exp_avg" / ".exp_avg_sq", and the step count and hyper-parameters as metadata. */
static wick_status write_state(const wick_trainer *tr, const char *path) {
    const int n = 2 * tr->n_tensors;
    st_write_tensor *t = calloc((size_t)n, sizeof *t);
    char (*names)[160] = calloc((size_t)n, sizeof *names);
    if (!t || !names) {
        free(t);
        free(names);
        return err_set(WICK_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < tr->n_tensors; i++) {
        const train_tensor *tt = &tr->tensors[i];
        for (int mv = 0; mv < 2; mv++) {
            const int k = 2 * i + mv;
            snprintf(names[k], sizeof names[k], "%s.%s", tt->name, mv ? "exp_avg_sq" : "exp_avg");
            t[k] = (st_write_tensor){.name = names[k], .dt = DT_F32, .ndim = tt->cols ? 2 : 1,
                                     .shape = {tt->rows, tt->cols},
                                     .data = (mv ? tr->v : tr->m) + tt->off};
        }
    }
    char vals[N_META][48];
    const char *keys[N_META] = {"format", "version", "step", "lr", "beta1", "beta2", "eps",
                                "weight_decay", "schedule", "warmup_steps", "total_steps",
                                "max_grad_norm", "grad_accum", "mode"};
    const char *mv[N_META];
    snprintf(vals[0], 48, STATE_FORMAT);
    snprintf(vals[1], 48, STATE_VERSION);
    snprintf(vals[2], 48, "%" PRId64, tr->step);
    snprintf(vals[3], 48, "%.9g", tr->p.lr);
    snprintf(vals[4], 48, "%.9g", tr->p.beta1);
    snprintf(vals[5], 48, "%.9g", tr->p.beta2);
    snprintf(vals[6], 48, "%.9g", tr->p.eps);
    snprintf(vals[7], 48, "%.9g", tr->p.weight_decay);
    snprintf(vals[8], 48, "%s", tr->p.schedule == WICK_LR_LINEAR   ? "linear"
                                : tr->p.schedule == WICK_LR_COSINE ? "cosine"
                                                                   : "constant");
    snprintf(vals[9], 48, "%d", tr->p.warmup_steps);
    snprintf(vals[10], 48, "%d", tr->p.total_steps);
    snprintf(vals[11], 48, "%.9g", tr->p.max_grad_norm);
    snprintf(vals[12], 48, "%d", tr->p.grad_accum);
    snprintf(vals[13], 48, "%s", tr->full ? "full" : "lora");
    for (int i = 0; i < N_META; i++) mv[i] = vals[i];
    wick_status st = st_write(path, t, n, keys, mv, N_META);
    free(t);
    free(names);
    return st;
}

static wick_status write_state_into(void *user, const char *stage) {
    char *path = path_join(stage, STATE_FILE);
    if (!path) return err_set(WICK_ERR_NOMEM, "out of memory");
    wick_status st = write_state(user, path);
    free(path);
    return st;
}

wick_status wick_trainer_save(const wick_trainer *tr, const char *dir) {
    if (!tr || !dir) return err_set(WICK_ERR_INVALID_ARG, "wick_trainer_save: NULL argument");
    if (tr->micro)
        return err_set(WICK_ERR_INVALID_ARG, "wick_trainer_save: %d micro-batch(es) of the next "
                                             "step are pending; save after an optimizer step",
                       tr->micro);
    /* weights and optimizer state are one checkpoint: built beside `dir` and swapped in whole
       (base/fileio.h dir_txn), so a kill never pairs new weights with an old state */
    if (tr->full)   /* a Hugging Face model folder, f32 matrices (resumption is exact) */
        return model_export_folder_with(tr->model, dir, DT_F32, write_state_into, (void *)tr);
    dir_txn txn;
    wick_status st = dir_txn_begin(dir, &txn);
    if (st) return st;
    st = lora_adapter_write_files(tr->adapter, txn.stage, tr->model->path);
    if (!st) st = write_state_into((void *)tr, txn.stage);
    if (st) dir_txn_abort(&txn);
    else st = dir_txn_commit(&txn);
    return st;
}

/* The F32 tensor `name` of shape (rows, cols) — (rows) when cols is 0 — from `s`, or NULL
 * with a message. */
static const float *find_f32(const st_set *s, const char *file, const char *name, int64_t rows,
                             int64_t cols, wick_status *st) {
    const st_tensor *t = st_find(s, name);
    if (!t) {
        *st = err_set(WICK_ERR_SHAPE, "%s: tensor %s is missing", file, name);
        return NULL;
    }
    const bool ok = cols ? t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols
                         : t->ndim == 1 && t->shape[0] == rows;
    if (t->dt != DT_F32 || !ok) {
        if (cols)
            *st = err_set(WICK_ERR_SHAPE, "%s: tensor %s must be F32 [%lld, %lld] to match the "
                                          "trained parameters", file, name, (long long)rows,
                          (long long)cols);
        else
            *st = err_set(WICK_ERR_SHAPE, "%s: tensor %s must be F32 [%lld] to match the "
                                          "trained parameters", file, name, (long long)rows);
        return NULL;
    }
    return t->data;
}

wick_status wick_trainer_load_checkpoint(wick_trainer *tr, const char *dir) {
    if (!tr || !dir)
        return err_set(WICK_ERR_INVALID_ARG, "wick_trainer_load_checkpoint: NULL argument");
    char *wpath = path_join(dir, tr->full ? "model.safetensors" : "adapter_model.safetensors");
    char *spath = path_join(dir, STATE_FILE);
    st_set *ws = NULL, *ss = NULL;
    const float **src = calloc((size_t)tr->n_tensors * 3, sizeof *src);
    wick_status st = WICK_OK;
    if (!wpath || !spath || !src) {
        st = err_set(WICK_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((st = st_open(wpath, &ws)) || (st = st_open(spath, &ss))) goto out;
    const char *fmt = st_metadata(ss, "format"), *ver = st_metadata(ss, "version");
    const char *step_s = st_metadata(ss, "step"), *mode = st_metadata(ss, "mode");
    if (!fmt || strcmp(fmt, STATE_FORMAT) || !ver || strcmp(ver, STATE_VERSION)) {
        st = err_set(WICK_ERR_FORMAT, "%s: not a wick trainer state (metadata format \"%s\" "
                                      "version %s, want \"%s\" %s)", spath, fmt ? fmt : "",
                     ver ? ver : "none", STATE_FORMAT, STATE_VERSION);
        goto out;
    }
    if (strcmp(mode ? mode : "lora", tr->full ? "full" : "lora")) {
        st = err_set(WICK_ERR_INVALID_ARG, "%s: a %s-training state cannot resume %s training",
                     spath, mode ? mode : "lora", tr->full ? "full" : "LoRA");
        goto out;
    }
    char *end = NULL;
    errno = 0;
    long long step = step_s ? strtoll(step_s, &end, 10) : -1;
    if (!step_s || errno || *end || step < 0) {
        st = err_set(WICK_ERR_FORMAT, "%s: metadata \"step\" is missing or not a count", spath);
        goto out;
    }
    for (int i = 0; i < tr->n_tensors && !st; i++) {
        const train_tensor *tt = &tr->tensors[i];
        char nm[192];
        src[3 * i] = find_f32(ws, wpath, tt->name, tt->rows, tt->cols, &st);
        if (st) break;
        snprintf(nm, sizeof nm, "%s.exp_avg", tt->name);
        src[3 * i + 1] = find_f32(ss, spath, nm, tt->rows, tt->cols, &st);
        if (st) break;
        snprintf(nm, sizeof nm, "%s.exp_avg_sq", tt->name);
        src[3 * i + 2] = find_f32(ss, spath, nm, tt->rows, tt->cols, &st);
    }
    if (st) goto out;
    /* everything checked: now change the trainer */
    for (int i = 0; i < tr->n_tensors; i++) {
        const train_tensor *tt = &tr->tensors[i];
        if (src[3 * i] != tt->p) {
            memcpy(tt->p, src[3 * i], sizeof(float) * tt->n);
            for (size_t j = 0; tt->plus_one && j < tt->n; j++) tt->p[j] += 1.0f; /* w -> 1 + w */
        }
        memcpy(tr->m + tt->off, src[3 * i + 1], sizeof(float) * tt->n);
        memcpy(tr->v + tt->off, src[3 * i + 2], sizeof(float) * tt->n);
    }
    tr->step = step;
    tr->micro = 0;
    if (tr->adapter) tr->adapter->uid = lora_next_uid();
out:
    st_close(ws);
    st_close(ss);
    free(src);
    free(wpath);
    free(spath);
    return st;
}
