/* st_dense.c — sentence-transformers Dense modules (models.Dense): reading a module folder
 * (config.json: in_features, out_features, bias, activation_function; model.safetensors:
 * linear.weight (out, in), linear.bias (out)) and applying y = act(x · Wᵀ + b) to pooled
 * vectors.
 *
 * The weight stays zero-copy in the module's mapping (F32, BF16 or F16); the bias becomes an
 * f32 copy. Activations: Identity, Tanh, ReLU, Sigmoid; any other is refused by name.
 * Not here: where Dense sits in the pipeline (st_config.c), running it per batch (embed.c);
 * pytorch_model.bin weights (older sentence-transformers saves) are refused. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/fileio.h"
#include "base/json_num.h"
#include "base/json_parse.h"
#include "embed/embed.h"

static const struct {
    const char *name;  /* the class name sentence-transformers writes, after the module path */
    embed_act act;
} acts[] = {
    {"Identity", EMBED_ACT_IDENTITY},
    {"Tanh", EMBED_ACT_TANH},
    {"ReLU", EMBED_ACT_RELU},
    {"Sigmoid", EMBED_ACT_SIGMOID},
};

/* activation_function is a dotted class path, e.g. "torch.nn.modules.activation.Tanh". */
static bool parse_act(const char *s, embed_act *out) {
    const char *dot = strrchr(s, '.');
    const char *cls = dot ? dot + 1 : s;
    if (dot && strncmp(s, "torch.nn.", 9) != 0) return false;
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        if (strcmp(cls, acts[i].name) == 0) {
            *out = acts[i].act;
            return true;
        }
    }
    return false;
}

static wick_status read_config(const char *path, const char *text, embed_dense *m,
                               bool *has_bias) {
    cJSON *root = NULL;
    wick_status st = json_parse(text, strlen(text), path, &root);
    if (st) return st;
    if (!cJSON_IsObject(root)) {
        st = err_set(WICK_ERR_FORMAT, "%s: expected a JSON object", path);
        goto done;
    }
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(root, "in_features");
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(root, "out_features");
    if (!in || !out) {
        st = err_set(WICK_ERR_FORMAT, "%s: missing field \"%s\"", path,
                     in ? "out_features" : "in_features");
        goto done;
    }
    if ((st = json_get_int32(in, 1, 1 << 20, path, "in_features", &m->in)) ||
        (st = json_get_int32(out, 1, 1 << 20, path, "out_features", &m->out)))
        goto done;
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "bias");
    *has_bias = true;  /* Dense's default */
    if (b && !cJSON_IsNull(b)) {
        if (!cJSON_IsBool(b)) {
            st = err_set(WICK_ERR_FORMAT, "%s: field \"bias\" must be true or false", path);
            goto done;
        }
        *has_bias = cJSON_IsTrue(b);
    }
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "activation_function");
    m->act = EMBED_ACT_TANH;  /* Dense's default */
    if (a && !cJSON_IsNull(a)) {
        if (!cJSON_IsString(a)) {
            st = err_set(WICK_ERR_FORMAT, "%s: field \"activation_function\" must be a string",
                         path);
            goto done;
        }
        if (!parse_act(a->valuestring, &m->act))
            st = err_set(WICK_ERR_UNSUPPORTED, "%s: field \"activation_function\" is \"%s\" "
                         "(supported: torch.nn Identity, Tanh, ReLU, Sigmoid)", path,
                         a->valuestring);
    }
done:
    cJSON_Delete(root);
    return st;
}

static void dense_free(embed_dense *m) {
    free(m->b);
    st_close(m->st);
    memset(m, 0, sizeof *m);
}

wick_status embed_dense_load(const char *dir, const char *sub, embed_dense *m) {
    memset(m, 0, sizeof *m);
    char *mdir = path_join(dir, sub);
    char *cpath = mdir ? path_join(mdir, "config.json") : NULL;
    char *wpath = mdir ? path_join(mdir, "model.safetensors") : NULL;
    char *text = NULL;
    bool has_bias = true;
    wick_status st = WICK_OK;
    if (!cpath || !wpath) {
        st = err_set(WICK_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!file_exists(cpath)) {
        st = err_set(WICK_ERR_FORMAT, "%s: missing (modules.json names a Dense module there)",
                     cpath);
        goto done;
    }
    if ((st = file_read_all(cpath, &text, NULL)) ||
        (st = read_config(cpath, text, m, &has_bias)))
        goto done;
    if (!file_exists(wpath)) {
        st = err_set(WICK_ERR_UNSUPPORTED, "%s: missing (wick reads Dense weights from "
                     "model.safetensors only, not pytorch_model.bin)", wpath);
        goto done;
    }
    if ((st = st_open(wpath, &m->st))) goto done;
    const st_tensor *w = st_find(m->st, "linear.weight");
    const st_tensor *b = st_find(m->st, "linear.bias");
    if (!w || w->ndim != 2 || w->shape[0] != m->out || w->shape[1] != m->in) {
        st = err_set(WICK_ERR_SHAPE, "%s: tensor linear.weight is %s, expected shape [%d, %d] "
                     "(out_features, in_features of config.json)", wpath,
                     w ? "of another shape" : "missing", m->out, m->in);
        goto done;
    }
    if (has_bias && (!b || b->ndim != 1 || b->shape[0] != m->out)) {
        st = err_set(WICK_ERR_SHAPE, "%s: tensor linear.bias is %s, expected shape [%d]", wpath,
                     b ? "of another shape" : "missing", m->out);
        goto done;
    }
    if (!has_bias && b) {
        st = err_set(WICK_ERR_FORMAT, "%s: holds linear.bias but config.json says \"bias\": "
                     "false", wpath);
        goto done;
    }
    for (int i = 0; i < 1 + has_bias; i++) {
        const st_tensor *t = i ? b : w;
        if (t->dt != DT_F32 && t->dt != DT_BF16 && t->dt != DT_F16) {
            st = err_set(WICK_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s (supported: F32, "
                         "BF16, F16)", wpath, i ? "linear.bias" : "linear.weight",
                         dtype_name(t->dt));
            goto done;
        }
    }
    m->w = (wk_weight){.data = w->data, .dt = w->dt, .rows = m->out, .cols = m->in};
    if (has_bias) {
        m->b = malloc(sizeof(float) * (size_t)m->out);
        if (!m->b) {
            st = err_set(WICK_ERR_NOMEM, "out of memory");
            goto done;
        }
        wk_weight bw = {.data = b->data, .dt = b->dt, .rows = 1, .cols = m->out};
        kernels_row_to_f32(m->b, &bw, 0);
        for (int i = 0; i < m->out; i++) {
            if (!isfinite(m->b[i])) {
                st = err_set(WICK_ERR_FORMAT, "%s: tensor linear.bias holds a non-finite value "
                             "at [%d]", wpath, i);
                goto done;
            }
        }
    }
done:
    if (st) dense_free(m);
    free(text);
    free(cpath);
    free(wpath);
    free(mdir);
    return st;
}

void embed_st_config_free(embed_st_config *c) {
    if (!c) return;
    for (int i = 0; i < c->n_dense; i++) dense_free(&c->dense[i]);
    c->n_dense = 0;
    for (int i = 0; i < c->n_prompts; i++) free(c->prompt_name[i]), free(c->prompt_text[i]);
    free(c->prompt_name);
    free(c->prompt_text);
    free(c->default_prompt);
    c->prompt_name = c->prompt_text = NULL;
    c->default_prompt = NULL;
    c->n_prompts = 0;
}

void embed_dense_apply(const embed_dense *m, const kernel_table *k, wk_pool *pool, float *y,
                       const float *x, int n) {
    wk_ctx kc = {.pool = pool};
    k->matmul(&kc, y, x, &m->w, m->b, n);
    const long total = (long)n * m->out;
    switch (m->act) {
    case EMBED_ACT_IDENTITY: break;
    case EMBED_ACT_TANH:
        for (long i = 0; i < total; i++) y[i] = tanhf(y[i]);
        break;
    case EMBED_ACT_RELU:
        for (long i = 0; i < total; i++) y[i] = y[i] > 0 ? y[i] : 0;
        break;
    case EMBED_ACT_SIGMOID:
        for (long i = 0; i < total; i++) y[i] = 1.0f / (1.0f + expf(-y[i]));
        break;
    }
}
