/* fuzz_config.c — libFuzzer entry point for config.json (+ generation_config.json after a NUL
 * byte): config_parse, config_parse_generation, the BERT config, the prompts of
 * config_sentence_transformers.json, and model_load_mem against a tiny model.
 * The body is fuzz_target_config in fuzz_targets.c (shared with the replay test); see
 * fuzz_targets.h for how to build and run it. Corpus: fuzz/corpus/config/, dictionary:
 * fuzz/dict/config.dict, crashes found so far: fuzz/regressions/config/. */
#include "fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_target_config(data, size);
}
