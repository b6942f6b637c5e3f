/* fuzz_safetensors.c — libFuzzer entry point for safetensors files (header, offsets, dtypes,
 * shapes), through st_open_mem.
 * The body is fuzz_target_safetensors in fuzz_targets.c (shared with the replay test); see
 * fuzz_targets.h for how to build and run it. Corpus: fuzz/corpus/safetensors/, dictionary:
 * fuzz/dict/safetensors.dict, crashes found so far: fuzz/regressions/safetensors/. */
#include "fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_target_safetensors(data, size);
}
