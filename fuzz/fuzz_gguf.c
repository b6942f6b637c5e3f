/* fuzz_gguf.c — libFuzzer entry point for GGUF model files: the container (gguf_open_mem), the
 * tokenizer in its metadata (model/gguf_tok.c, model/gguf_tok_json.c, then tokenizer/) and the
 * whole model loader (model_load_gguf_mem).
 * The body is fuzz_target_gguf in fuzz_targets.c (shared with the replay test); see
 * fuzz_targets.h for how to build and run it. Corpus: fuzz/corpus/gguf/, dictionary:
 * fuzz/dict/gguf.dict, crashes found so far: fuzz/regressions/gguf/. */
#include "fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_target_gguf(data, size);
}
