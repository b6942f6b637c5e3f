/* fuzz_json_schema.c — libFuzzer entry point for structured output: a JSON Schema (as a client
 * sends it in response_format), compiled, matched against the bytes after a NUL, and walked
 * token by token over a small byte-level vocabulary (every step must allow something, every
 * allowed token must be accepted).
 * The body is fuzz_target_json_schema in serve_targets.c (shared with the replay test); see
 * fuzz_targets.h for how to build and run it. Corpus: fuzz/corpus/json_schema/, crashes found
 * so far: fuzz/regressions/json_schema/. */
#include "fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_target_json_schema(data, size);
}
