/* jinja.h — wick's Jinja-subset template engine, used for tokenizer chat templates.
 *
 * It renders the templates published with Hugging Face models (Qwen2.5/3, Llama 3.x, Mistral,
 * Gemma, Phi-3, ChatML) exactly as transformers' apply_chat_template does, i.e. jinja2 with
 * trim_blocks=True, lstrip_blocks=True, the loopcontrols extension, the default (non-strict)
 * Undefined, an immutable sandbox (range() capped at 100000 items), and the globals
 * raise_exception(msg) and strftime_now(fmt). Template variables come from a cJSON object.
 *
 * Errors: a construct outside the subset fails at compile time with WICK_ERR_UNSUPPORTED naming
 * it and its line; syntax errors give WICK_ERR_FORMAT; raise_exception() and other run-time
 * errors (undefined arithmetic, type errors) give WICK_ERR_INVALID_ARG with the message.
 * Parsing and evaluation depth, value nesting, work (steps), memory and output size are
 * bounded (the numbers are in include/wick.h beside wick_chat_render and in
 * jinja_internal.h), so a hostile template fails with an error instead of exhausting the
 * stack, memory or time.
 *
 * Thread safety: a compiled template is read-only during rendering, so one template may be
 * rendered by many threads at once. */
#ifndef WICK_TOKENIZER_JINJA_H
#define WICK_TOKENIZER_JINJA_H
#include <cjson/cJSON.h>

#include "wick.h"

typedef struct jinja_template jinja_template;

/* Parses `src` (NUL-terminated) once. *out is freed with jinja_free. */
wick_status jinja_compile(const char *src, jinja_template **out);
void jinja_free(jinja_template *t);

/* Renders with the variables of `context` (a JSON object, or NULL for none). *out is a
 * malloc'd, NUL-terminated string (free with free/wick_free); NULL after a failure. */
wick_status jinja_render_compiled(const jinja_template *t, const cJSON *context, char **out);

/* compile + render + free in one call. */
wick_status jinja_render(const char *src, const cJSON *context, char **out);

#endif
