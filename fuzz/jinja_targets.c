/* jinja_targets.c — body of the Jinja harness (fuzz_target_jinja): the input is a chat
 * template (raw template text, as found in tokenizer_config.json's "chat_template" or GGUF's
 * tokenizer.chat_template). It is compiled once and rendered with two fixed contexts like the
 * ones wick_chat_render builds (text messages with a system prompt, tool calls and a tool
 * result, a tools list, special tokens, add_generation_prompt; and multimodal messages whose
 * content is a list of parts). Compile and render must either succeed with an output or fail
 * with a status and a message; crashes, sanitizer reports, leaks and slow inputs are the
 * findings. The engine's own limits (steps, depth, output, memory) keep every input bounded,
 * so libFuzzer's -timeout and -rss_limit_mb catch a limit that does not cover some loop.
 * Shared by fuzz/fuzz_jinja.c, tests/test_fuzz_replay.c (corpus) and tests/test_jinja_limits.c
 * (fuzz/regressions/jinja/, each input in its own process with a time limit). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz/fuzz_targets.h"
#include "tokenizer/jinja.h"

/* Two contexts: text messages with a tool call and its result (what Qwen, Llama 3 and
 * Mistral templates expect), and multimodal messages whose content is a list of parts. */
static const char context_json[] =
    "{\"messages\": ["
    "{\"role\": \"system\", \"content\": \"You are helpful.\"},"
    "{\"role\": \"user\", \"content\": \"What is the weather in Paris? <b>\\u00e9</b>\"},"
    "{\"role\": \"assistant\", \"content\": \"<think>\\nlook it up\\n</think>\\n\\n\","
    " \"reasoning_content\": \"look it up\", \"tool_calls\": [{\"type\": \"function\", \"function\":"
    " {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": [1, 2.5, null]}}}]},"
    "{\"role\": \"tool\", \"name\": \"get_weather\", \"content\": \"{\\\"temp\\\": 21}\"},"
    "{\"role\": \"assistant\", \"content\": \"It is 21 C.\"},"
    "{\"role\": \"user\", \"content\": \"Thanks!\"}],"
    "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\","
    " \"description\": \"Weather for a city\", \"parameters\": {\"type\": \"object\","
    " \"properties\": {\"city\": {\"type\": \"string\"}, \"days\": {\"type\": \"integer\"}},"
    " \"required\": [\"city\"]}}}],"
    "\"documents\": null, \"add_generation_prompt\": true, \"enable_thinking\": false,"
    "\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"pad_token\": \"<pad>\"}";

static const char context_parts_json[] =
    "{\"messages\": ["
    "{\"role\": \"user\", \"content\": [{\"type\": \"image\"}, {\"type\": \"text\","
    " \"text\": \"Describe it.\"}]},"
    "{\"role\": \"assistant\", \"content\": [{\"type\": \"text\", \"text\": \"A cat.\"}]}],"
    "\"tools\": null, \"documents\": null, \"add_generation_prompt\": false,"
    "\"bos_token\": \"<|begin_of_text|>\", \"eos_token\": \"<|eot_id|>\"}";

static cJSON *context, *context_parts;

int fuzz_target_jinja(const uint8_t *data, size_t size) {
    if (!context && !(context = cJSON_Parse(context_json))) abort(); /* harness bug */
    if (!context_parts && !(context_parts = cJSON_Parse(context_parts_json))) abort();
    char *src = malloc(size + 1);
    if (!src) return 0;
    memcpy(src, data, size);
    src[size] = 0; /* templates are C strings: an embedded NUL ends them */
    jinja_template *t = NULL;
    if (jinja_compile(src, &t) == WICK_OK) {
        if (!t) abort();
        const cJSON *ctxs[2] = {context, context_parts};
        for (int i = 0; i < 2; i++) {
            char *out = NULL;
            wick_status st = jinja_render_compiled(t, ctxs[i], &out);
            if ((st == WICK_OK) != (out != NULL)) abort(); /* status and output disagree */
            free(out);
        }
        jinja_free(t);
    } else if (t) {
        abort(); /* a failed compile must not hand out a template */
    }
    free(src);
    return 0;
}
