/* fuzz_targets.h — the bodies of wick's libFuzzer harnesses, one function per parser of
 * untrusted input, shared by the harness mains (fuzz/fuzz_<name>.c), the corpus generator
 * (fuzz/gen_corpus.c) and the replay test (tests/test_fuzz_replay.c), so a crashing input
 * saved under fuzz/regressions/<name>/ is replayed through exactly the code that found it.
 *
 * Each target takes any bytes, must never crash, hang, leak or trip a sanitizer, and returns
 * 0. Library failures (bad input) are expected and ignored; a broken invariant of a successful
 * parse (a tensor pointing outside the input, an id outside the vocabulary) aborts.
 *
 * Build (by hand until fuzz/ is wired into CMake), with a library built by clang under
 * -DWICK_SANITIZE=ON:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I include -I . \
 *       fuzz/fuzz_gguf.c fuzz/fuzz_targets.c build-fuzz/libwick.a \
 *       $(pkg-config --libs libcjson libpcre2-8 libutf8proc openblas) -lpthread -lm
 * Environment: WICK_FUZZ_NO_TOKENIZER=1 skips the tokenizer (tokenizer/) in fuzz_gguf. */
#ifndef WICK_FUZZ_TARGETS_H
#define WICK_FUZZ_TARGETS_H
#include <stddef.h>
#include <stdint.h>

#include "wick.h"

int fuzz_target_safetensors(const uint8_t *data, size_t size);
int fuzz_target_gguf(const uint8_t *data, size_t size);
/* config.json bytes, optionally followed by a NUL byte and generation_config.json bytes. */
int fuzz_target_config(const uint8_t *data, size_t size);
int fuzz_target_adapter_config(const uint8_t *data, size_t size);
int fuzz_target_gguf_lora(const uint8_t *data, size_t size);
/* A PEFT adapter's safetensors (byte 0 bit 0 picks the base: the tiny Llama, or the tiny
   Phi-3 whose q/k/v and gate/up are fused modules), every projection targeted. */
int fuzz_target_adapter(const uint8_t *data, size_t size);
/* tok_targets.c: a tokenizer.json, optionally "\n#TEXT#\n" and a text to encode. */
int fuzz_target_tokenizer(const uint8_t *data, size_t size);
/* tok_targets.c: byte 0 a vocabulary size, then a text: the BPE trainer; what it writes must
   load and round-trip ASCII lines. */
int fuzz_target_bpe_train(const uint8_t *data, size_t size);
/* jinja_targets.c: a chat template, compiled and rendered with two chat contexts. */
int fuzz_target_jinja(const uint8_t *data, size_t size);
/* serve_targets.c: a request body (first byte 0 = completions, else chat); raw bytes to a
 * running server over loopback; a training data file (first byte 0 = text, else JSONL). */
int fuzz_target_serve_req(const uint8_t *data, size_t size);
int fuzz_target_http(const uint8_t *data, size_t size);
int fuzz_target_train_data(const uint8_t *data, size_t size);
/* serve_targets.c: byte 0 even = a Hub revision JSON, odd = HTTP header lines (wick pull). */
int fuzz_target_hub(const uint8_t *data, size_t size);
/* serve_targets.c: a JSON Schema for structured output [NUL a document]: compile, match the
   document's bytes, and walk the token mask over a small byte-level vocabulary. */
int fuzz_target_json_schema(const uint8_t *data, size_t size);
/* serve_targets.c: a model's reply with tool calls (byte 0: mode and format, byte 1: how the
   stream is cut), parsed whole and streamed: both must give the same calls and text. */
int fuzz_target_serve_tools(const uint8_t *data, size_t size);

/* The fixed inputs the targets check fuzzed files against, built in memory on first use and
 * kept for the life of the process: a 1-layer LLaMA (d 8, 2 heads on 1 KV head, ff 12,
 * vocab 16) as config.json text + model.safetensors image, the model loaded from them, and a
 * rank-2 adapter on its q_proj and v_proj as adapter_config.json text + safetensors image. */
const char *fuzz_tiny_config(void);
const unsigned char *fuzz_tiny_safetensors(size_t *len);
/* A safetensors image of n F32 tensors (cols 0: a vector of rows values) with small finite
 * values, as the tiny model's (malloc'd; the caller frees it). */
unsigned char *fuzz_build_st(const char *const *names, const int64_t *rows, const int64_t *cols,
                             int n, size_t *len);
wick_model *fuzz_tiny_model(void);
wick_model *fuzz_tiny_phi3_model(void);
const char *fuzz_tiny_adapter_config(void);
const unsigned char *fuzz_tiny_adapter_safetensors(size_t *len);

#endif
