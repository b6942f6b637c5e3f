/* fuzz_adapter.c — libFuzzer entry point for PEFT adapter tensors (adapter_model.safetensors):
 * lora_adapter_read_mem against the tiny model or the tiny fused Phi-3.
 * The body is fuzz_target_adapter in fuzz_targets.c (shared with the replay test); see
 * fuzz_targets.h for how to build and run it. Corpus: fuzz/corpus/adapter/, crashes found so
 * far: fuzz/regressions/adapter/. */
#include "fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_target_adapter(data, size);
}
