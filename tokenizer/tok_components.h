/* tok_components.h — tokenizer.json component readers (tok_components.c). Each returns
 * WICK_OK or an error naming `file` and the JSON `path`; on error the partly filled struct
 * may still own memory and must be released with its free function. */
#ifndef WICK_TOK_COMPONENTS_H
#define WICK_TOK_COMPONENTS_H
#include <cjson/cJSON.h>

#include "tokenizer/tok_impl.h"

/* True when v is a JSON number holding an integer in [lo, hi] (|lo|, |hi| < 2^53), stored in
 * *out. Every id and count read from JSON goes through it: converting a double that is out of
 * range, fractional or not finite to an integer type is undefined behaviour in C. */
bool tok_json_int(const cJSON *v, int64_t lo, int64_t hi, int64_t *out);

wick_status tok_read_norm(const char *file, const char *path, const cJSON *o, tok_norm *nm);
wick_status tok_read_pre(const char *file, const char *path, const cJSON *o, tok_pre *pre);
/* Appends to a flat decoder list (Sequences are flattened). */
wick_status tok_read_dec(const char *file, const char *path, const cJSON *o, tok_dec **list, int *n);
/* Accumulates into pp (Sequence processors wrap one another). */
wick_status tok_read_post(const char *file, const char *path, const cJSON *o, tok_post *pp);

/* tok_unigram.c: reads model (type Unigram) into t: vocab, scores, piece trie, unk_id,
 * byte_fallback. n_added: entries of added_tokens; *limit receives tok_id_limit. */
wick_status tok_unigram_load(wick_tokenizer *t, const char *file, const cJSON *model,
                             size_t n_added, int64_t *limit);

#endif
