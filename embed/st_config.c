/* st_config.c — reading a sentence-transformers folder description: modules.json (the module
 * pipeline), the Pooling module's config.json (the pooling_mode_* flags of older saves or the
 * single "pooling_mode" string of newer ones) and sentence_bert_config.json (max_seq_length),
 * plus pooling of one sequence (embed_pool), which implements what those files select.
 *
 * Supported pipelines: Transformer (at the folder root) → Pooling → Dense × 0..4 → optional
 * Normalize (Dense modules are read by st_dense.c), and config_sentence_transformers.json's
 * prompts. Several pooling modes concatenated, include_prompt=false and modules after
 * Normalize are refused by name rather than silently computing something else.
 * sentence_bert_config.json's do_lower_case is not applied: BERT tokenizers that need it
 * lowercase in their own normalizer. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json_parse.h"
#include "base/fileio.h"
#include "base/json_num.h"
#include "embed/embed.h"

/* Reads and parses dir/name when it exists. *root NULL (and WICK_OK) when absent. */
static wick_status read_json(const char *dir, const char *name, cJSON **root, char **path) {
    *root = NULL;
    *path = path_join(dir, name);
    if (!*path) return err_set(WICK_ERR_NOMEM, "out of memory");
    if (!file_exists(*path)) return WICK_OK;
    char *text = NULL;
    wick_status st = file_read_all(*path, &text, NULL);
    if (st) return st;
    st = json_parse(text, strlen(text), *path, root);
    free(text);
    return st;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static wick_status read_pooling(const char *dir, const char *sub, embed_st_config *c) {
    char *pdir = path_join(dir, sub), *path = NULL;
    if (!pdir) return err_set(WICK_ERR_NOMEM, "out of memory");
    cJSON *root = NULL;
    wick_status st = read_json(pdir, "config.json", &root, &path);
    free(pdir);
    if (st == WICK_OK && !root)
        st = err_set(WICK_ERR_FORMAT, "%s: missing (modules.json names a Pooling module there)",
                     path);
    if (st == WICK_OK && !cJSON_IsObject(root))
        st = err_set(WICK_ERR_FORMAT, "%s: expected a JSON object", path);
    if (st) goto done;
    static const struct {
        const char *key;
        wick_pooling mode;  /* DEFAULT = unsupported */
    } modes[] = {
        {"pooling_mode_cls_token", WICK_POOLING_CLS},
        {"pooling_mode_mean_tokens", WICK_POOLING_MEAN},
        {"pooling_mode_max_tokens", WICK_POOLING_MAX},
        {"pooling_mode_mean_sqrt_len_tokens", WICK_POOLING_MEAN_SQRT_LEN},
        {"pooling_mode_weightedmean_tokens", WICK_POOLING_WEIGHTED_MEAN},
        {"pooling_mode_lasttoken", WICK_POOLING_LAST_TOKEN},
    };
    int n_on = 0;
    /* newer sentence-transformers (6.0.1 made tests/data/arch) write one "pooling_mode"
       string instead of the flags */
    static const struct {
        const char *name;
        wick_pooling mode;  /* DEFAULT = unsupported */
    } names[] = {
        {"cls", WICK_POOLING_CLS},
        {"mean", WICK_POOLING_MEAN},
        {"max", WICK_POOLING_MAX},
        {"mean_sqrt_len_tokens", WICK_POOLING_MEAN_SQRT_LEN},
        {"weightedmean", WICK_POOLING_WEIGHTED_MEAN},
        {"lasttoken", WICK_POOLING_LAST_TOKEN},
    };
    const cJSON *pm = cJSON_GetObjectItemCaseSensitive(root, "pooling_mode");
    if (pm && !cJSON_IsNull(pm)) {
        if (!cJSON_IsString(pm)) {
            st = err_set(WICK_ERR_UNSUPPORTED, "%s: field \"pooling_mode\" must be one string "
                         "(several pooling modes at once are not supported)", path);
            goto done;
        }
        size_t i = 0;
        while (i < sizeof names / sizeof names[0] && strcmp(names[i].name, pm->valuestring))
            i++;
        if (i == sizeof names / sizeof names[0] || names[i].mode == WICK_POOLING_DEFAULT) {
            st = err_set(WICK_ERR_UNSUPPORTED, "%s: field \"pooling_mode\" is \"%s\" (wick "
                         "pools by cls, mean, max, mean_sqrt_len_tokens, weightedmean or "
                         "lasttoken)", path,
                         pm->valuestring);
            goto done;
        }
        c->pooling = names[i].mode;
        n_on++;
    }
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, modes[i].key);
        if (!v || cJSON_IsNull(v)) continue;
        if (!cJSON_IsBool(v)) {
            st = err_set(WICK_ERR_FORMAT, "%s: field \"%s\" must be true or false", path,
                         modes[i].key);
            goto done;
        }
        if (!cJSON_IsTrue(v)) continue;
        if (modes[i].mode == WICK_POOLING_DEFAULT) {
            st = err_set(WICK_ERR_UNSUPPORTED, "%s: \"%s\" is not supported (wick pools by "
                                               "cls, mean, max or mean_sqrt_len)",
                         path, modes[i].key);
            goto done;
        }
        c->pooling = modes[i].mode;
        n_on++;
    }
    if (n_on == 0) {
        st = err_set(WICK_ERR_FORMAT, "%s: no pooling_mode_* field is true", path);
        goto done;
    }
    if (n_on > 1) {
        st = err_set(WICK_ERR_UNSUPPORTED,
                     "%s: several pooling modes at once (concatenated outputs, or \"pooling_mode\" "
                     "beside pooling_mode_* flags) are not supported", path);
        goto done;
    }
    const cJSON *ip = cJSON_GetObjectItemCaseSensitive(root, "include_prompt");
    if (cJSON_IsFalse(ip))
        st = err_set(WICK_ERR_UNSUPPORTED, "%s: \"include_prompt\": false is not supported",
                     path);
done:
    cJSON_Delete(root);
    free(path);
    return st;
}

static wick_status read_modules(const char *dir, embed_st_config *c) {
    cJSON *root = NULL;
    char *path = NULL;
    wick_status st = read_json(dir, "modules.json", &root, &path);
    if (st || !root) goto done;
    c->has_modules = true;
    c->normalize = false;  /* only a Normalize module turns it on */
    if (!cJSON_IsArray(root)) {
        st = err_set(WICK_ERR_FORMAT, "%s: expected a JSON array of modules", path);
        goto done;
    }
    bool have_tr = false, have_pool = false, have_norm = false;
    int i = 0;
    const cJSON *mod;
    cJSON_ArrayForEach(mod, root) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(mod, "type");
        const cJSON *mpath = cJSON_GetObjectItemCaseSensitive(mod, "path");
        if (!cJSON_IsObject(mod) || !cJSON_IsString(type)) {
            st = err_set(WICK_ERR_FORMAT, "%s: module %d: missing string field \"type\"", path, i);
            goto done;
        }
        const char *sub = cJSON_IsString(mpath) ? mpath->valuestring : "";
        const char *t = type->valuestring;
        if (have_norm) {
            st = err_set(WICK_ERR_UNSUPPORTED,
                         "%s: module %d (%s): modules after Normalize are not supported", path, i,
                         t);
            goto done;
        }
        /* a module's folder must stay inside the model folder */
        const bool bad_path = !cJSON_IsString(mpath) || !sub[0] || strstr(sub, "..") ||
                              sub[0] == '/';
        if (ends_with(t, "models.Transformer")) {
            if (have_tr || have_pool || sub[0]) {
                st = err_set(WICK_ERR_UNSUPPORTED,
                             "%s: module %d (%s, path \"%s\"): only one Transformer, first, at "
                             "the folder root is supported", path, i, t, sub);
                goto done;
            }
            have_tr = true;
        } else if (ends_with(t, "models.Pooling")) {
            if (!have_tr || have_pool) {
                st = err_set(WICK_ERR_UNSUPPORTED,
                             "%s: module %d (%s): Pooling must follow the Transformer, once",
                             path, i, t);
                goto done;
            }
            if (bad_path) {
                st = err_set(WICK_ERR_FORMAT, "%s: module %d (%s): bad \"path\"", path, i, t);
                goto done;
            }
            if ((st = read_pooling(dir, sub, c))) goto done;
            have_pool = true;
        } else if (ends_with(t, "models.Dense")) {
            if (!have_pool || c->n_dense == EMBED_MAX_DENSE) {
                st = err_set(WICK_ERR_UNSUPPORTED, "%s: module %d (%s): Dense is supported after "
                             "Pooling, at most %d times", path, i, t, EMBED_MAX_DENSE);
                goto done;
            }
            if (bad_path) {
                st = err_set(WICK_ERR_FORMAT, "%s: module %d (%s): bad \"path\"", path, i, t);
                goto done;
            }
            embed_dense *dn = &c->dense[c->n_dense];
            if ((st = embed_dense_load(dir, sub, dn))) goto done;
            c->n_dense++;
            if (c->n_dense > 1 && dn->in != dn[-1].out) {
                st = err_set(WICK_ERR_SHAPE, "%s: module %d (%s, path \"%s\"): in_features %d "
                             "differs from the previous Dense's out_features %d", path, i, t,
                             sub, dn->in, dn[-1].out);
                goto done;
            }
        } else if (ends_with(t, "models.Normalize")) {
            if (!have_pool) {
                st = err_set(WICK_ERR_UNSUPPORTED,
                             "%s: module %d (%s): Normalize before Pooling is not supported",
                             path, i, t);
                goto done;
            }
            c->normalize = true;
            have_norm = true;
        } else {
            st = err_set(WICK_ERR_UNSUPPORTED,
                         "%s: module %d: type \"%s\" is not supported (wick runs Transformer → "
                         "Pooling → Dense → Normalize)", path, i, t);
            goto done;
        }
        i++;
    }
    if (!have_tr || !have_pool)
        st = err_set(WICK_ERR_UNSUPPORTED, "%s: no %s module (wick needs Transformer and Pooling)",
                     path, have_tr ? "Pooling" : "Transformer");
done:
    cJSON_Delete(root);
    free(path);
    return st;
}

/* "prompts": {name: text, ...} and "default_prompt_name": name or null. */
static wick_status read_prompts(const cJSON *root, const char *path, embed_st_config *c) {
    if (!cJSON_IsObject(root)) return err_set(WICK_ERR_FORMAT, "%s: expected a JSON object", path);
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(root, "prompts");
    if (pr && !cJSON_IsNull(pr)) {
        if (!cJSON_IsObject(pr))
            return err_set(WICK_ERR_FORMAT, "%s: field \"prompts\" must be an object of strings",
                           path);
        const int n = cJSON_GetArraySize(pr);
        c->prompt_name = calloc((size_t)(n ? n : 1), sizeof(char *));
        c->prompt_text = calloc((size_t)(n ? n : 1), sizeof(char *));
        if (!c->prompt_name || !c->prompt_text) return err_set(WICK_ERR_NOMEM, "out of memory");
        for (const cJSON *it = pr->child; it; it = it->next) {
            if (!cJSON_IsString(it) || !it->string)
                return err_set(WICK_ERR_FORMAT, "%s: prompts.%s must be a string", path,
                               it->string ? it->string : "?");
            c->prompt_name[c->n_prompts] = strdup(it->string);
            c->prompt_text[c->n_prompts] = strdup(it->valuestring);
            if (!c->prompt_name[c->n_prompts] || !c->prompt_text[c->n_prompts]) {
                free(c->prompt_name[c->n_prompts]);
                free(c->prompt_text[c->n_prompts]);
                return err_set(WICK_ERR_NOMEM, "out of memory");
            }
            c->n_prompts++;
        }
    }
    const cJSON *dp = cJSON_GetObjectItemCaseSensitive(root, "default_prompt_name");
    if (dp && !cJSON_IsNull(dp)) {
        if (!cJSON_IsString(dp))
            return err_set(WICK_ERR_FORMAT, "%s: field \"default_prompt_name\" must be a string "
                           "or null", path);
        if (!embed_st_prompt(c, dp->valuestring))
            return err_set(WICK_ERR_FORMAT, "%s: default_prompt_name \"%s\" is not one of "
                           "\"prompts\"", path, dp->valuestring);
        if (!(c->default_prompt = strdup(dp->valuestring)))
            return err_set(WICK_ERR_NOMEM, "out of memory");
    }
    return WICK_OK;
}

wick_status embed_st_prompts_parse(const char *json, const char *where, embed_st_config *c) {
    cJSON *root = NULL;
    wick_status st = json_parse(json, strlen(json), where, &root);
    if (st == WICK_OK) st = read_prompts(root, where, c);
    cJSON_Delete(root);
    return st;
}

wick_status embed_st_config_load(const char *dir, embed_st_config *c) {
    memset(c, 0, sizeof *c);
    c->pooling = WICK_POOLING_MEAN;
    c->normalize = true;
    wick_status st = read_modules(dir, c);
    if (st) {
        embed_st_config_free(c);
        return st;
    }
    cJSON *root = NULL;
    char *path = NULL;
    st = read_json(dir, "sentence_bert_config.json", &root, &path);
    if (st == WICK_OK && root) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "max_seq_length");
        if (v && !cJSON_IsNull(v))
            st = json_get_int32(v, 2, 10000000, path, "max_seq_length", &c->max_seq_length);
    }
    cJSON_Delete(root);
    free(path);
    root = NULL, path = NULL;
    if (st == WICK_OK) st = read_json(dir, "config_sentence_transformers.json", &root, &path);
    if (st == WICK_OK && root) st = read_prompts(root, path, c);
    cJSON_Delete(root);
    free(path);
    if (st) embed_st_config_free(c);
    return st;
}

const char *embed_st_prompt(const embed_st_config *c, const char *name) {
    for (int i = 0; i < c->n_prompts; i++)
        if (strcmp(c->prompt_name[i], name) == 0) return c->prompt_text[i];
    return NULL;
}

/* ---- pooling --------------------------------------------------------------------------- */

void embed_normalize(float *x, int d) {
    double ss = 0;
    for (int j = 0; j < d; j++) ss += (double)x[j] * x[j];
    double nrm = sqrt(ss);
    float inv = (float)(1.0 / (nrm > 1e-12 ? nrm : 1e-12));
    for (int j = 0; j < d; j++) x[j] *= inv;
}

void embed_pool(const float *h, int len, int d, wick_pooling mode, bool normalize, float *out) {
    if (mode == WICK_POOLING_CLS) {
        memcpy(out, h, sizeof(float) * (size_t)d);
    } else if (mode == WICK_POOLING_LAST_TOKEN) {
        memcpy(out, h + (size_t)(len - 1) * d, sizeof(float) * (size_t)d);
    } else if (mode == WICK_POOLING_WEIGHTED_MEAN) {
        /* sentence-transformers: weights 1..len (positions of an unpadded text) */
        const double wsum = 0.5 * (double)len * (len + 1);
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int i = 0; i < len; i++) s += (double)(i + 1) * h[(size_t)i * d + j];
            out[j] = (float)(s / wsum);
        }
    } else if (mode == WICK_POOLING_MAX) {
        memcpy(out, h, sizeof(float) * (size_t)d);
        for (int i = 1; i < len; i++)
            for (int j = 0; j < d; j++)
                if (h[(size_t)i * d + j] > out[j]) out[j] = h[(size_t)i * d + j];
    } else {
        /* Sum in double so the result is the mean rounded once to f32, independent of the
           token order; torch's f32 sum differs from it by a few ulp at most. */
        double div = mode == WICK_POOLING_MEAN_SQRT_LEN ? sqrt((double)len) : (double)len;
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int i = 0; i < len; i++) s += h[(size_t)i * d + j];
            out[j] = (float)(s / div);
        }
    }
    if (normalize) embed_normalize(out, d);
}
