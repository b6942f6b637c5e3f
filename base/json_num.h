/* json_num.h — the one way wick turns a JSON number (a cJSON double) into a C integer or float.
 *
 * Converting a double that is out of range for the target type is undefined behaviour in C
 * (1e10 -> int, 1e300 -> int64_t or float), and JSON files are user input, so every number read
 * from config.json, generation_config.json, adapter_config.json, tokenizer files, request bodies
 * and safetensors headers goes through these helpers: they check the type, integrality and the
 * range [lo, hi] first, and convert only a value that fits.
 * Not here: parsing (cJSON), what the fields mean (their readers). */
#ifndef WICK_BASE_JSON_NUM_H
#define WICK_BASE_JSON_NUM_H
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "wick.h"

/* True when v is a JSON number holding an exact integer in [lo, hi]; *out receives it. Does
 * not touch the error message (for callers that word their own). */
bool json_num_int(const cJSON *v, int64_t lo, int64_t hi, int64_t *out);

/* True when v is a finite JSON number in [lo, hi] that a float can hold (|v| <= FLT_MAX, so the
 * conversion is defined); *out receives it rounded to float. */
bool json_num_float(const cJSON *v, double lo, double hi, float *out);

/* json_num_int for a field: on failure sets WICK_ERR_FORMAT "<where>: field "<field>" must be
 * an integer in [lo, hi] (got ...)" and returns it. */
wick_status json_get_int(const cJSON *v, int64_t lo, int64_t hi, const char *where,
                         const char *field, int64_t *out);
/* Same, for an int field: [lo, hi] must lie inside the int range. */
wick_status json_get_int32(const cJSON *v, int lo, int hi, const char *where, const char *field,
                           int *out);
/* json_num_float for a field, with a WICK_ERR_FORMAT message like json_get_int's. */
wick_status json_get_float(const cJSON *v, double lo, double hi, const char *where,
                           const char *field, float *out);

#endif
