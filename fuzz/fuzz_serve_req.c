/* fuzz_serve_req.c — libFuzzer entry point: a /v1/completions or /v1/chat/completions body (first byte 0 = completions) through serve_req_parse.
 * The body is fuzz_target_serve_req in serve_targets.c (shared with tests/test_fuzz_replay.c).
 * Corpus: fuzz/corpus/serve_req/, dictionary: fuzz/dict/serve_req.dict. */
#include "fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_target_serve_req(data, size);
}
