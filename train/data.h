/* data.h — training examples from the bytes of a data file (wick train --data), parsed in
 * memory so the same code serves the CLI and the fuzz harness.
 *
 * JSONL: one object per line, {"text": ...} (loss on every token) or {"prompt": ...,
 * "completion": ...} (the prompt's labels are -100); blank lines are skipped. Each example gets
 * `eos` appended (when >= 0) and is truncated to seq_len; one-token examples predict nothing
 * and are skipped. Plain text: tokenized as one stream and cut into seq_len windows.
 * Limits: a plain-text file up to 2^31 − 16 bytes; every count is bounded by the input size. */
#ifndef WICK_TRAIN_DATA_H
#define WICK_TRAIN_DATA_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wick.h"

typedef struct train_example {
    int32_t *ids, *labels;
    int n;
} train_example;

typedef struct train_data {
    train_example *ex;
    int n, cap;
} train_data;

/* Parses len bytes (not NUL-terminated) into d (empty on entry). `where` names the file in
 * messages ("FILE:LINE: ..."). WICK_ERR_FORMAT for a malformed JSONL line or data holding no
 * example, WICK_ERR_NOMEM, or the tokenizer's error. On failure d is emptied. */
wick_status train_data_parse(const char *buf, size_t len, bool jsonl, const char *where,
                             const wick_tokenizer *tok, int32_t eos, int seq_len, train_data *d);

void train_data_free(train_data *d);

#endif
