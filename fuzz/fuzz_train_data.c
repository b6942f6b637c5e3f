/* fuzz_train_data.c — libFuzzer entry point: a training data file (first byte 0 = plain text, else JSONL) through train_data_parse.
 * The body is fuzz_target_train_data in serve_targets.c (shared with tests/test_fuzz_replay.c).
 * Corpus: fuzz/corpus/train_data/, dictionary: fuzz/dict/train_data.dict. */
#include "fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_target_train_data(data, size);
}
