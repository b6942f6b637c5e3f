/* json_parse.h — parsing JSON text with cJSON, reporting an allocation failure as
 * WICK_ERR_NOMEM and a malformed text as WICK_ERR_FORMAT (cJSON alone cannot tell them apart). */
#ifndef WICK_BASE_JSON_PARSE_H
#define WICK_BASE_JSON_PARSE_H
#include <cjson/cJSON.h>
#include <stddef.h>

#include "wick.h"

/* 0 when s[0, n) holds a syntactically valid JSON value (trailing bytes ignored, as cJSON
 * does), else 1 + the offset of the first error. Allocates nothing. */
size_t json_valid(const char *s, size_t n);

/* Parses `len` bytes of text into *out (free with cJSON_Delete). On failure *out is NULL and
 * the status is WICK_ERR_NOMEM (the text is valid: cJSON ran out of memory) or
 * WICK_ERR_FORMAT ("<where>: not valid JSON (at byte N)"). */
wick_status json_parse(const char *text, size_t len, const char *where, cJSON **out);

/* The status for text that cJSON failed to parse: WICK_ERR_NOMEM when it is valid JSON (with
 * the message set), else WICK_ERR_FORMAT "<where>: not valid JSON (at byte N)". */
wick_status json_parse_error(const char *text, size_t len, const char *where);

#endif
