/* bpe_train.h — the byte-level BPE trainer on texts in memory (bpe_train.c), behind
 * wick_tokenizer_train_bpe (which reads the files) and the fuzz harness. */
#ifndef WICK_TOKENIZER_BPE_TRAIN_H
#define WICK_TOKENIZER_BPE_TRAIN_H
#include <stddef.h>

#include "wick.h"

/* Trains on n_texts texts (lens[i] bytes each, not NUL-terminated; names[i] for messages) and
 * returns the tokenizer.json text in *json_out (malloc'd; NULL on failure). Same rules and
 * errors as wick_tokenizer_train_bpe. */
wick_status bpe_train_mem(const char *const *texts, const size_t *lens, const char *const *names,
                          int n_texts, const wick_bpe_train_params *params, char **json_out,
                          wick_bpe_train_stats *stats);

#endif
