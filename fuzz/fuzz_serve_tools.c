/* fuzz_serve_tools.c — libFuzzer entry point for the server's tool-call parser: a model's reply
 * (which a client's prompt can steer) parsed whole and streamed in pieces; both must agree.
 * The body is fuzz_target_serve_tools in serve_targets.c (shared with the replay test); see
 * fuzz_targets.h for how to build and run it. Corpus: fuzz/corpus/serve_tools/, crashes found
 * so far: fuzz/regressions/serve_tools/. */
#include "fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_target_serve_tools(data, size);
}
