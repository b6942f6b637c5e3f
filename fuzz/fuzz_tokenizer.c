/* fuzz_tokenizer.c — libFuzzer entry point: a tokenizer.json (optionally "\n#TEXT#\n" and a
 * text) loaded and used every way a hostile file can reach (fuzz_target_tokenizer in
 * tok_targets.c, shared with tests/test_fuzz_replay.c). Corpus: fuzz/corpus/tokenizer/ (small
 * real and synthetic tokenizers), dictionary: fuzz/dict/tokenizer.dict, past failures:
 * fuzz/regressions/tokenizer/ (also loaded by tests/test_tokenizer_hostile.c). */
#include "fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_target_tokenizer(data, size);
}
