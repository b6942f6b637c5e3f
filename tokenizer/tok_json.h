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

/* Walks a whole tokenizer.json text, decoding model.vocab (an object; num = id) into jv and
 * model.merges (optional; merge k is entries 2k, 2k+1) into jm, and giving their spans (the
 * value is text[a, b)). False when the document is not in the handled shape: the caller then
 * frees jv/jm and uses cJSON for everything. */
bool tok_json_read_model(const char *text, size_t n, tok_span *vocab, tok_jstrs *jv,
                         tok_span *merges, tok_jstrs *jm);

#endif
