/* fuzz_bpe_train.c — libFuzzer entry point: the BPE tokenizer trainer on a text.
 * The body is fuzz_target_bpe_train in tok_targets.c (shared with tests/test_fuzz_replay.c).
 * Corpus: fuzz/corpus/bpe_train/. */
#include "fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_target_bpe_train(data, size);
}
