/* adapter_config.c — PEFT adapter_config.json: parsing and checking it without a model, and
 * answering, per module name, whether it is targeted and with which rank and scale.
 *
 * Rules (as PEFT applies them): a module is targeted when target_modules is a string and the
 * module's full name ("model.layers.3.self_attn.q_proj") fully matches it as a regex, or when
 * it is a list and the name equals an entry or ends with "." + entry. rank_pattern /
 * alpha_pattern keys match a module when the name matches "(.*\.)?KEY$"; the first matching
 * key (file order) wins. scale = α/r, or α/√r with use_rslora.
 *
 * Every number is range-checked here, before any conversion: r and rank_pattern values are
 * integers in [1, INT_MAX] (a double such as 1e10 or 1e300 cast to int is undefined), lora_alpha
 * and alpha_pattern values are finite with |α| <= FLT_MAX, so every scale fits a float.
 * Regexes are compiled once, at parse time, and matched with a step limit: a pattern that
 * backtracks catastrophically on a module name fails with a message instead of stalling.
 *
 * Not here: the tensors (adapter_read.c), which modules wick adapts for a given model. */
#include <cjson/cJSON.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "base/error.h"
#include "base/json_parse.h"
#include "base/json_num.h"
#include "lora/lora.h"

/* Steps pcre2 may take matching one module name (~40 bytes); ordinary patterns need a few
 * hundred. */
#define REGEX_MATCH_LIMIT 200000

typedef struct pattern {
    const char *key;        /* owned by root */
    pcre2_code *re;
    double value;           /* rank (an integer) or alpha */
} pattern;

struct lora_config {
    cJSON *root;
    char *where;
    int r;
    double alpha;
    bool rslora;
    const cJSON *targets;   /* array of strings, or NULL when target_re is set */
    pcre2_code *target_re;
    pattern *ranks, *alphas;
    int n_ranks, n_alphas;
    pcre2_match_context *mctx;
    pcre2_match_data *md;   /* sized for the largest pattern; matching is single-threaded */
    uint32_t md_pairs;
};

void lora_config_free(lora_config *c) {
    if (!c) return;
    for (int i = 0; i < c->n_ranks; i++) pcre2_code_free(c->ranks[i].re);
    for (int i = 0; i < c->n_alphas; i++) pcre2_code_free(c->alphas[i].re);
    free(c->ranks);
    free(c->alphas);
    pcre2_code_free(c->target_re);
    pcre2_match_data_free(c->md);
    pcre2_match_context_free(c->mctx);
    cJSON_Delete(c->root);
    free(c->where);
    free(c);
}

/* Compiles "prefix(?:pattern)\z", anchored: Python's re.fullmatch for the common subset. */
static wick_status compile(lora_config *c, const char *pattern, const char *prefix,
                           const char *field, pcre2_code **out) {
    size_t n = strlen(pattern) + strlen(prefix) + 16;
    char *wrapped = malloc(n);
    if (!wrapped) return err_set(WICK_ERR_NOMEM, "out of memory");
    snprintf(wrapped, n, "%s(?:%s)\\z", prefix, pattern);
    int errcode;
    PCRE2_SIZE erroff;
    *out = pcre2_compile((PCRE2_SPTR)wrapped, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, &errcode,
                         &erroff, NULL);
    free(wrapped);
    if (!*out) {
        char msg[128];
        pcre2_get_error_message(errcode, (PCRE2_UCHAR *)msg, sizeof msg);
        return err_set(WICK_ERR_FORMAT, "%s: %s: bad regular expression '%.200s': %s", c->where,
                       field, pattern, msg);
    }
    uint32_t pairs = 0;
    pcre2_pattern_info(*out, PCRE2_INFO_CAPTURECOUNT, &pairs);
    if (pairs + 1 > c->md_pairs) c->md_pairs = pairs + 1;
    return WICK_OK;
}

/* Reads rank_pattern / alpha_pattern: an object (or null / absent) of regex -> number. */
static wick_status read_patterns(lora_config *c, const char *field, bool rank, pattern **out,
                                 int *n_out) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(c->root, field);
    if (!o || cJSON_IsNull(o)) return WICK_OK;
    if (!cJSON_IsObject(o))
        return err_set(WICK_ERR_FORMAT, "%s: %s must be an object (module regex -> %s)", c->where,
                       field, rank ? "rank" : "alpha");
    const int n = cJSON_GetArraySize(o);
    if (n == 0) return WICK_OK;
    if (!(*out = calloc((size_t)n, sizeof **out))) return err_set(WICK_ERR_NOMEM, "out of memory");
    const cJSON *e;
    cJSON_ArrayForEach(e, o) {
        pattern *p = &(*out)[*n_out];
        char name[64 + 128];
        snprintf(name, sizeof name, "%s[\"%.128s\"]", field, e->string);
        if (rank) {
            int r;
            wick_status st = json_get_int32(e, 1, INT_MAX, c->where, name, &r);
            if (st) return st;
            p->value = r;
        } else {
            float f;
            wick_status st = json_get_float(e, -FLT_MAX, FLT_MAX, c->where, name, &f);
            if (st) return st;
            p->value = e->valuedouble;   /* in float range: checked just above */
        }
        p->key = e->string;
        wick_status st = compile(c, e->string, "(?:.*\\.)?", field, &p->re);
        if (st) return st;
        (*n_out)++;
    }
    return WICK_OK;
}

/* The config fields wick cannot honour. */
static wick_status check_unsupported(const cJSON *c, const char *where) {
    const cJSON *v;
    v = cJSON_GetObjectItemCaseSensitive(c, "peft_type");
    if (v && !(cJSON_IsString(v) && !strcmp(v->valuestring, "LORA")))
        return err_set(WICK_ERR_UNSUPPORTED, "%s: peft_type is %s, only \"LORA\" is supported",
                       where, cJSON_IsString(v) ? v->valuestring : "not a string");
    v = cJSON_GetObjectItemCaseSensitive(c, "use_dora");
    if (cJSON_IsTrue(v))
        return err_set(WICK_ERR_UNSUPPORTED, "%s: use_dora is true: DoRA adapters are not "
                                             "supported", where);
    v = cJSON_GetObjectItemCaseSensitive(c, "modules_to_save");
    if (v && !cJSON_IsNull(v) && !(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0))
        return err_set(WICK_ERR_UNSUPPORTED, "%s: modules_to_save is set: fully trained extra "
                                             "modules are not supported", where);
    v = cJSON_GetObjectItemCaseSensitive(c, "bias");
    if (v && !(cJSON_IsString(v) && !strcmp(v->valuestring, "none")))
        return err_set(WICK_ERR_UNSUPPORTED, "%s: bias is %s: only \"none\" is supported", where,
                       cJSON_IsString(v) ? v->valuestring : "not a string");
    v = cJSON_GetObjectItemCaseSensitive(c, "lora_bias");
    if (cJSON_IsTrue(v))
        return err_set(WICK_ERR_UNSUPPORTED, "%s: lora_bias is true: not supported", where);
    v = cJSON_GetObjectItemCaseSensitive(c, "trainable_token_indices");
    if (v && !cJSON_IsNull(v))
        return err_set(WICK_ERR_UNSUPPORTED, "%s: trainable_token_indices is set: not supported",
                       where);
    v = cJSON_GetObjectItemCaseSensitive(c, "target_parameters");
    if (v && !cJSON_IsNull(v) && !(cJSON_IsArray(v) && cJSON_GetArraySize(v) == 0))
        return err_set(WICK_ERR_UNSUPPORTED, "%s: target_parameters is set: not supported", where);
    v = cJSON_GetObjectItemCaseSensitive(c, "layer_replication");
    if (v && !cJSON_IsNull(v))
        return err_set(WICK_ERR_UNSUPPORTED, "%s: layer_replication is set: not supported", where);
    return WICK_OK;
}

static wick_status parse(lora_config *c) {
    if (!cJSON_IsObject(c->root))
        return err_set(WICK_ERR_FORMAT, "%s: not a JSON object", c->where);
    wick_status st = check_unsupported(c->root, c->where);
    if (st) return st;
    const cJSON *root = c->root;
    if ((st = json_get_int32(cJSON_GetObjectItemCaseSensitive(root, "r"), 1, INT_MAX, c->where,
                             "r", &c->r)))
        return st;
    const cJSON *ja = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");
    c->alpha = 8.0;   /* PEFT's LoraConfig default */
    if (ja) {
        float f;
        if ((st = json_get_float(ja, -FLT_MAX, FLT_MAX, c->where, "lora_alpha", &f))) return st;
        c->alpha = ja->valuedouble;
    }
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "use_rslora");
    if (rs && !cJSON_IsNull(rs) && !cJSON_IsBool(rs))
        return err_set(WICK_ERR_FORMAT, "%s: use_rslora must be true or false", c->where);
    c->rslora = cJSON_IsTrue(rs);
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(root, "target_modules");
    if (cJSON_IsString(tm)) {
        if ((st = compile(c, tm->valuestring, "", "target_modules", &c->target_re))) return st;
    } else {
        if (!cJSON_IsArray(tm) || cJSON_GetArraySize(tm) == 0)
            return err_set(WICK_ERR_FORMAT, "%s: target_modules must be a non-empty list of "
                                            "names or a regex string", c->where);
        const cJSON *e;
        cJSON_ArrayForEach(e, tm) if (!cJSON_IsString(e))
            return err_set(WICK_ERR_FORMAT, "%s: target_modules holds a non-string", c->where);
        c->targets = tm;
    }
    if ((st = read_patterns(c, "rank_pattern", true, &c->ranks, &c->n_ranks)) ||
        (st = read_patterns(c, "alpha_pattern", false, &c->alphas, &c->n_alphas)))
        return st;
    c->mctx = pcre2_match_context_create(NULL);
    c->md = c->md_pairs ? pcre2_match_data_create(c->md_pairs, NULL) : NULL;
    if (!c->mctx || (c->md_pairs && !c->md)) return err_set(WICK_ERR_NOMEM, "out of memory");
    pcre2_set_match_limit(c->mctx, REGEX_MATCH_LIMIT);
    pcre2_set_depth_limit(c->mctx, REGEX_MATCH_LIMIT);
    return WICK_OK;
}

wick_status lora_config_parse(const char *json, size_t len, const char *where,
                              lora_config **out) {
    *out = NULL;
    lora_config *c = calloc(1, sizeof *c);
    if (!c || !(c->where = strdup(where ? where : "adapter_config.json"))) {
        free(c);
        return err_set(WICK_ERR_NOMEM, "out of memory");
    }
    c->root = cJSON_ParseWithLength(json, len);
    wick_status st = c->root ? parse(c) : json_parse_error(json, len, c->where);
    if (st) {
        lora_config_free(c);
        return st;
    }
    *out = c;
    return WICK_OK;
}

/* 1 match, 0 no match, -1 error (message set: the step limit was hit). */
static int full_match(const lora_config *c, const pcre2_code *re, const char *field,
                      const char *key, const char *name) {
    int rc = pcre2_match(re, (PCRE2_SPTR)name, strlen(name), 0, 0, c->md, c->mctx);
    if (rc >= 0) return 1;
    if (rc == PCRE2_ERROR_NOMATCH || rc == PCRE2_ERROR_PARTIAL) return 0;
    char msg[128];
    pcre2_get_error_message(rc, (PCRE2_UCHAR *)msg, sizeof msg);
    err_set(WICK_ERR_FORMAT, "%s: %s: regular expression '%.200s' cannot be matched against %s: "
            "%s", c->where, field, key, name, msg);
    return -1;
}

static bool ends_with_module(const char *name, const char *entry) {
    size_t n = strlen(name), e = strlen(entry);
    if (n == e) return strcmp(name, entry) == 0;
    return n > e && name[n - e - 1] == '.' && strcmp(name + n - e, entry) == 0;
}

int lora_config_targets(const lora_config *c, const char *name) {
    if (c->target_re) {
        const cJSON *tm = cJSON_GetObjectItemCaseSensitive(c->root, "target_modules");
        return full_match(c, c->target_re, "target_modules", tm->valuestring, name);
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, c->targets) if (ends_with_module(name, e->valuestring)) return 1;
    return 0;
}

const cJSON *lora_config_target_list(const lora_config *c) { return c->targets; }

/* Value of the first pattern matching `name`: 1 found, 0 none, -1 error. */
static int lookup(const lora_config *c, const pattern *p, int n, const char *field,
                  const char *name, double *out) {
    for (int i = 0; i < n; i++) {
        int m = full_match(c, p[i].re, field, p[i].key, name);
        if (m) {
            if (m > 0) *out = p[i].value;
            return m;
        }
    }
    return 0;
}

wick_status lora_config_module(const lora_config *c, const char *name, int *rank,
                               bool *from_pattern) {
    double r = c->r;
    int m = lookup(c, c->ranks, c->n_ranks, "rank_pattern", name, &r);
    if (m < 0) return WICK_ERR_FORMAT;
    *rank = (int)r;   /* an integer in [1, INT_MAX]: checked by read_patterns */
    if (from_pattern) *from_pattern = m > 0;
    return WICK_OK;
}

wick_status lora_config_scale(const lora_config *c, const char *name, int rank, float *scale) {
    double alpha = c->alpha;
    if (lookup(c, c->alphas, c->n_alphas, "alpha_pattern", name, &alpha) < 0)
        return WICK_ERR_FORMAT;
    /* |alpha| <= FLT_MAX and rank >= 1, so the quotient fits a float */
    const double r = rank;
    *scale = (float)(c->rslora ? alpha / sqrt(r) : alpha / r);
    return WICK_OK;
}

cJSON *lora_config_take_json(lora_config *c) {
    cJSON *j = c->root;
    c->root = NULL;
    c->targets = NULL;
    return j;
}

const char *lora_config_where(const lora_config *c) { return c->where; }
