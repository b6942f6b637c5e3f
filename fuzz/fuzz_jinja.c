/* fuzz_jinja.c — libFuzzer entry point: a chat template compiled and rendered with two chat
 * contexts (fuzz_target_jinja in jinja_targets.c). Corpus: fuzz/corpus/jinja/ (the fixture
 * chat templates and snippets), dictionary: fuzz/dict/jinja.dict, past failures:
 * fuzz/regressions/jinja/ (replayed by tests/test_jinja_limits.c). A render may legitimately
 * use the engine's 512 MiB arena plus 64 MiB of output, so scripts/fuzz.sh gives this harness
 * a larger RSS limit than the loaders'. */
#include "fuzz/fuzz_targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_target_jinja(data, size);
}
