/* tok_json.h — streaming reader for model.vocab and model.merges of tokenizer.json
 * (tok_json.c). Internal to the tokenizer. */
#ifndef WICK_TOK_JSON_H
#define WICK_TOK_JSON_H
#include "tokenizer/tok_impl.h"

typedef struct tok_span {
    size_t a, b;               /* the value is text[a, b) */
    bool found;
} tok_span;

/* Decoded strings in one arena: entry k is arena.p + e[k].off, e[k].len bytes (NUL after). */
typedef struct tok_jent {
    uint32_t off, len;
    int64_t num;               /* vocab: the id */
} tok_jent;
typedef struct tok_jstrs {
    tok_buf arena;
    tok_jent *e;
    size_t n, cap;
} tok_jstrs;
void tok_jstrs_free(tok_jstrs *js);

/* Locates the values of model.vocab (an object) and model.merges (an array, optional) in the
 * text of a whole tokenizer.json. False when the document is not in the handled shape. */
bool tok_json_find_sections(const char *text, size_t n, tok_span *vocab, tok_span *merges);
/* Decodes {"token": id, ...} into out (num = id). False: not handled, use cJSON. */
bool tok_json_read_vocab(const char *text, const tok_span *vocab, tok_jstrs *out);
/* Decodes the merges; merge k is entries 2k (left) and 2k+1 (right). */
bool tok_json_read_merges(const char *text, const tok_span *merges, tok_jstrs *out);

#endif
