/* fuzz_gguf_lora.c — libFuzzer entry point for llama.cpp GGUF LoRA files:
 * lora_adapter_read_gguf_mem against a tiny model.
 * The body is fuzz_target_gguf_lora in fuzz_targets.c (shared with the replay test); see
 * fuzz_targets.h for how to build and run it. Corpus: fuzz/corpus/gguf_lora/, dictionary:
 * fuzz/dict/gguf_lora.dict, crashes found so far: fuzz/regressions/gguf_lora/. */
#include "fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_target_gguf_lora(data, size);
}
