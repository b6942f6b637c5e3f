/* tokenizer_internal.h — accessors shared inside the tokenizer layer (for the chat-template
 * code in tokenizer/chat.c) and with the embedder. Not part of the public API. Every returned string is owned by the
 * tokenizer and lives as long as it does. */
#ifndef WICK_TOKENIZER_INTERNAL_H
#define WICK_TOKENIZER_INTERNAL_H
#include "wick.h"

/* tokenizer_config.json "chat_template": the string, or, when it is a list of
 * {name, template} objects, the template named "default". NULL when absent. */
const char *tokenizer_chat_template(const wick_tokenizer *t);

/* tokenizer_config.json "bos_token", "eos_token", "pad_token", "unk_token" (any key really) as a
 * string; the JSON value may be a string or an object with "content". NULL when absent. */
const char *tokenizer_special_str(const wick_tokenizer *t, const char *key);

/* Ids the post-processor puts after a single sequence when specials are added (the
 * embedder keeps them on truncation, as HF's truncation does). 0 without a post-processor. */
int tokenizer_post_count(const wick_tokenizer *t);

/* Frees the compiled chat template cached in the tokenizer (chat.c; called by
 * wick_tokenizer_free). */
void tokenizer_chat_free(wick_tokenizer *t);

#endif
