/* model_gguf.h — building a wick_model from a GGUF file (llama / qwen2), and writing one.
 * Not here: the GGUF container (formats/gguf.h), the forward pass (decoder.c). */
#ifndef WICK_MODEL_GGUF_H
#define WICK_MODEL_GGUF_H
#include <stdbool.h>

#include "formats/gguf.h"
#include "model/model.h"

/* Fills `m` (calloc'd by the caller, freed by it with wick_model_free on failure too) from the
 * GGUF file at `path`: config from metadata, zero-copy matrix views into the mapping, f32
 * copies of norms/biases, RoPE frequencies, the tokenizer stored in the metadata (when
 * params->load_tokenizer). *file receives the open mapping, which must outlive `m`'s weights
 * (close it with gguf_close after wick_model_free). *rope_interleaved is true for `llama`
 * files: their q/k rows are permuted so RoPE must rotate adjacent pairs
 * (kernel_table.rope_interleaved) instead of rotate-half. */
wick_status model_gguf_load(const char *path, const wick_model_params *params, wick_model *m,
                            gguf_file **file, bool *rope_interleaved);

/* The same from a GGUF file already open (from a path or gguf_open_mem): g must outlive m's
 * weights and stays the caller's. Messages name g->mf.path. */
wick_status model_gguf_build(const gguf_file *g, const wick_model_params *params, wick_model *m,
                             bool *rope_interleaved);

/* Tokenizer of a GGUF file as Hugging Face tokenizer.json / tokenizer_config.json texts
 * (malloc'd, free them); gguf_tok_json.c. `gpt2` (byte-level BPE) and `llama` (SentencePiece
 * BPE, merges rebuilt from the scores) are supported; other tokenizer models give
 * WICK_ERR_UNSUPPORTED. */
wick_status model_gguf_tokenizer_json(const gguf_file *g, char **tokenizer_json,
                                      char **tokenizer_config_json);

/* Writes the weights of a loaded decoder model as GGUF with matrices in `qtype` (a quantized
 * type, DT_F16, DT_BF16 or DT_F32; matrices whose row length is not a multiple of the block
 * fall back — Q4_K to Q5_0 as llama.cpp does, others to Q8_0 — and then to F16), norms and
 * biases as F32. q/k rows are permuted for `llama` as llama.cpp's converter does (not again
 * for a model loaded from GGUF, whose rows already are). `extra` key/values (tokenizer metadata) are appended. The
 * output head of a Q4 model is written as Q6_K (as llama.cpp's Q4_K_M does) when possible. */
/* qtype for model_gguf_save: every matrix keeps the type it has in memory (a quantized or
 * merged-into-quantized model is written without requantizing; llama q/k rows of a folder
 * model are still permuted, exactly, as they are F32/F16/BF16). */
#define MODEL_GGUF_KEEP DT_COUNT_

/* Progress of the model_gguf_save calls made on this thread: fn(user, matrices converted,
 * matrices in all) after each matrix, then once more before the file is written; NULL: none. */
void model_gguf_set_progress(void (*fn)(void *user, int done, int total), void *user);

wick_status model_gguf_save(const wick_model *m, const char *path, dtype qtype,
                            const gguf_kv *extra, int n_extra);

#endif
