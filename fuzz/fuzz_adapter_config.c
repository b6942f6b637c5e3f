/* fuzz_adapter_config.c — libFuzzer entry point for PEFT adapter_config.json: lora_config_parse
 * and its per-module queries, then lora_adapter_read_mem with a tiny adapter against a tiny model.
 * The body is fuzz_target_adapter_config in fuzz_targets.c (shared with the replay test); see
 * fuzz_targets.h for how to build and run it. Corpus: fuzz/corpus/adapter_config/, dictionary:
 * fuzz/dict/adapter_config.dict, crashes found so far: fuzz/regressions/adapter_config/. */
#include "fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_target_adapter_config(data, size);
}
