/* gguf_tok.h — tokenizer metadata for GGUF files that wick writes, so a .gguf file alone is
 * enough to tokenize and chat.
 *
 * Written keys: the standard llama.cpp ones (tokenizer.ggml.model, .pre, .tokens,
 * .token_type, .merges, .bos/eos/padding_token_id, .add_bos_token, tokenizer.chat_template),
 * plus tokenizer.huggingface.json (defined by the GGUF spec: the whole tokenizer.json) and
 * tokenizer.wick.config_json (tokenizer_config.json, wick's own key). When reading, wick
 * prefers tokenizer.huggingface.json, which reproduces the source tokenizer exactly; files
 * from llama.cpp without it go through the tokenizer.ggml.* reconstruction (model_gguf.c). */
#ifndef WICK_MODEL_GGUF_TOK_H
#define WICK_MODEL_GGUF_TOK_H
#include "formats/gguf.h"

typedef struct gguf_tok_meta {
    gguf_kv *kv;      /* n key/values, pointing into the storage below */
    int n;
    void *storage_;   /* owned arrays and strings */
} gguf_tok_meta;

/* Builds the key/values from `dir`/tokenizer.json (+ tokenizer_config.json when present).
 * A folder without tokenizer.json gives an empty set (n = 0) and WICK_OK. */
wick_status gguf_tok_meta_from_folder(const char *dir, gguf_tok_meta *out);

/* Copies every "tokenizer.*" key/value of an open GGUF file (values still point into g's
 * mapping, which must stay open while the result is used). */
wick_status gguf_tok_meta_from_gguf(const gguf_file *g, gguf_tok_meta *out);

/* Removes the special-id keys (tokenizer.ggml.bos/eos/eot/padding_token_id,
 * tokenizer.wick.eos_token_ids), so that model_gguf_save writes the model's own ids — those
 * of its config.json / generation_config.json, which the tokenizer files may not match
 * (wick convert/quantize/merge do this: a folder -> GGUF -> folder round trip keeps them). */
void gguf_tok_meta_drop_ids(gguf_tok_meta *m);

/* Pads tokenizer.ggml.tokens (and .token_type, .scores when present) to n_vocab entries, the
 * rows of the model's embedding: Qwen2's embedding has 151936 rows for 151665 tokens, and
 * llama.cpp refuses a file whose token list is shorter than the embedding. The added ids get
 * the names "[PAD<id>]", type 5 (unused) and score -1000, as Hugging Face's converter writes
 * them. A list already as long is left alone; a longer one is an error (an id the model cannot
 * embed). */
wick_status gguf_tok_meta_pad(gguf_tok_meta *m, int64_t n_vocab);

void gguf_tok_meta_free(gguf_tok_meta *m);

#endif
