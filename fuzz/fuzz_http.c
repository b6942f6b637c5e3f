/* fuzz_http.c — libFuzzer entry point: raw bytes to a running wick server (libmicrohttpd, routing, parsing, the engine) over loopback.
 * The body is fuzz_target_http in serve_targets.c (shared with tests/test_fuzz_replay.c).
 * Corpus: fuzz/corpus/http/, dictionary: fuzz/dict/http.dict. */
#include "fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_target_http(data, size);
}
