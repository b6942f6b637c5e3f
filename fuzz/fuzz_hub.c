/* fuzz_hub.c — libFuzzer entry point: what a Hub server (or a mirror, HF_ENDPOINT) sends to
 * wick pull: byte 0 even = a revision JSON (hub_parse_revision, with and without include
 * patterns), odd = response header lines (hub_header_line).
 * The body is fuzz_target_hub in serve_targets.c (shared with tests/test_fuzz_replay.c).
 * Corpus: fuzz/corpus/hub/. */
#include "fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_target_hub(data, size);
}
