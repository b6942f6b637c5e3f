/* json_num.c — range-checked JSON number -> integer / float conversions (see json_num.h). */
#include "base/json_num.h"

#include <float.h>
#include <math.h>
#include <stdio.h>

#include "base/error.h"

bool json_num_int(const cJSON *v, int64_t lo, int64_t hi, int64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    const double d = v->valuedouble;
    /* [-2^63, 2^63) is exactly the doubles an int64_t holds; NaN fails both comparisons.
       Only then is the cast defined, and the range check is done on the integer. */
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || floor(d) != d)
        return false;
    const int64_t i = (int64_t)d;
    if (i < lo || i > hi) return false;
    *out = i;
    return true;
}

bool json_num_float(const cJSON *v, double lo, double hi, float *out) {
    if (!cJSON_IsNumber(v)) return false;
    const double d = v->valuedouble;
    if (!(d >= lo && d <= hi) || !(fabs(d) <= FLT_MAX)) return false;
    *out = (float)d;
    return true;
}

/* The value as written, for messages: %g of a double is always defined. */
static void show(const cJSON *v, char *buf, size_t cap) {
    if (cJSON_IsNumber(v)) snprintf(buf, cap, "%g", v->valuedouble);
    else if (cJSON_IsString(v)) snprintf(buf, cap, "a string");
    else if (cJSON_IsBool(v)) snprintf(buf, cap, "a bool");
    else if (cJSON_IsNull(v)) snprintf(buf, cap, "null");
    else if (!v) snprintf(buf, cap, "nothing");
    else snprintf(buf, cap, "an array or object");
}

wick_status json_get_int(const cJSON *v, int64_t lo, int64_t hi, const char *where,
                         const char *field, int64_t *out) {
    if (json_num_int(v, lo, hi, out)) return WICK_OK;
    char got[48];
    show(v, got, sizeof got);
    return err_set(WICK_ERR_FORMAT, "%s: field \"%s\" must be an integer in [%lld, %lld] (got %s)",
                   where, field, (long long)lo, (long long)hi, got);
}

wick_status json_get_int32(const cJSON *v, int lo, int hi, const char *where, const char *field,
                           int *out) {
    int64_t x;
    wick_status st = json_get_int(v, lo, hi, where, field, &x);
    if (st == WICK_OK) *out = (int)x;
    return st;
}

wick_status json_get_float(const cJSON *v, double lo, double hi, const char *where,
                           const char *field, float *out) {
    if (json_num_float(v, lo, hi, out)) return WICK_OK;
    char got[48];
    show(v, got, sizeof got);
    if (lo <= -FLT_MAX && hi >= FLT_MAX)
        return err_set(WICK_ERR_FORMAT, "%s: field \"%s\" must be a number of magnitude at most "
                       "%g (got %s)", where, field, (double)FLT_MAX, got);
    return err_set(WICK_ERR_FORMAT, "%s: field \"%s\" must be a number in [%g, %g] (got %s)",
                   where, field, lo, hi, got);
}
