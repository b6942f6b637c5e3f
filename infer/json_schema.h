/* json_schema.h — structured output: a JSON Schema compiled into a byte-level pushdown
 * matcher, and the per-step mask of the tokens that keep the output a valid prefix of a JSON
 * value that validates against the schema.
 *
 * Supported (everything else that constrains values is refused with WICK_ERR_UNSUPPORTED
 * naming the keyword and where it is; annotations such as title, description, default,
 * examples, format, $schema, $id, $comment are ignored as JSON Schema allows):
 *   type (a name or a list of names), properties + required (objects with other keys are not
 *   generated; with no properties any object), additionalProperties, items, minItems,
 *   maxItems, minLength, maxLength, enum, const, anyOf / oneOf whose branches start with
 *   different characters (e.g. a string or null) or are objects whose first property is
 *   required and holds a different constant in each (a discriminator), $ref to #/$defs/NAME or
 *   #/definitions/NAME (recursion allowed), boolean schemas (true).
 * Output form: compact JSON (no whitespace between tokens), object keys in the schema's
 * order (optional ones may be skipped), numbers of at most 15 integer, 10 fraction and 3
 * exponent digits, \u escapes other than surrogates. The value is complete when its last
 * byte is matched; nothing may follow it.
 *
 * Cost per generated token: the tokens allowed inside a free string (no quote, backslash or
 * control byte, whole UTF-8 characters) are a precomputed list; every other state walks a
 * trie of the vocabulary's byte strings, pruned at the first refused byte. The token table
 * (bytes, trie) is built once per tokenizer on first use. */
#ifndef WICK_INFER_JSON_SCHEMA_H
#define WICK_INFER_JSON_SCHEMA_H
#include <stdbool.h>
#include <stdint.h>

#include "wick.h"

typedef struct js_schema js_schema;   /* compiled schema: immutable */
typedef struct js_matcher js_matcher; /* one generation's state over a schema */

/* Compiles schema text (a JSON Schema object, or true). Errors say which keyword at which
 * path (WICK_ERR_FORMAT: not JSON / not a schema; WICK_ERR_UNSUPPORTED: a keyword above). */
wick_status js_compile(const char *schema_json, js_schema **out);
void js_schema_free(js_schema *s);

/* A matcher for `s` (which must outlive it) over tokenizer `tok`'s vocabulary (n_vocab ids;
 * ids beyond the tokenizer's are never allowed). Builds the token table on first use. */
wick_status js_matcher_create(const js_schema *s, const wick_tokenizer *tok, int32_t n_vocab,
                              js_matcher **out);
void js_matcher_free(js_matcher *m);

/* Sets logits[id] = -inf for every id that may not come next. The ids in eos (n_eos) stay
 * allowed exactly when the value may end here. Special tokens are never allowed. Returns
 * false when nothing is allowed (the value is complete as far as it can go with no EOS id to
 * end it, or the schema needs more nesting than the matcher holds, or the vocabulary cannot
 * write what comes next). */
bool js_mask(js_matcher *m, float *logits, const int32_t *eos, int n_eos);
/* Advances over token id's bytes; false (state unchanged) if they are not allowed. */
bool js_accept(js_matcher *m, int32_t id);
/* The value is complete: nothing more may follow. */
bool js_done(const js_matcher *m);
/* The value may end here (complete, or a top-level number or literal that could go on). */
bool js_can_end(const js_matcher *m);

/* For tests: feeds raw bytes to a fresh matcher state of `s` without a tokenizer; returns 1
 * when all bytes are accepted and the value is complete, 0 when accepted but incomplete, -1
 * when a byte is refused. */
int js_match_bytes(const js_schema *s, const char *bytes, size_t n);

#endif
