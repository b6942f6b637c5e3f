/* model_export.h — writing a loaded decoder model as a Hugging Face model folder
 * (config.json, generation_config.json, model.safetensors, tokenizer files), the way
 * transformers' save_pretrained lays one out. Used by `wick convert MODEL.gguf OUT_DIR`.
 * Not here: GGUF writing (model_gguf.h), merged-adapter saving (lora/merge.c). */
#ifndef WICK_MODEL_EXPORT_H
#define WICK_MODEL_EXPORT_H
#include "base/dtype.h"
#include "model/model.h"

/* Writes `m` into `out_dir` (created when missing; its parent must exist; existing files of
 * the same names are replaced). Matrices are stored in `dt` (DT_F32, DT_F16 or DT_BF16;
 * quantized weights are dequantized), norm weights and biases as F32, with Hugging Face
 * tensor names; lm_head.weight only when the head is not tied. For a llama GGUF source
 * (m->rope_interleaved) the q/k rows and biases are put back into rotate-half order.
 * config.json and generation_config.json are built from m->cfg; tokenizer.json and
 * tokenizer_config.json come from the GGUF metadata when the model has a GGUF tokenizer, or are
 * copied from the model's folder when it was loaded from one.
 * The folder is replaced as a whole (base/fileio.h dir_txn: built beside out_dir, swapped in
 * with one rename; other files already in out_dir are kept), so out_dir is at every moment
 * the complete previous folder or the complete new one, even if the process is killed; the
 * tokenizer is converted before anything is written. Errors name the path
 * (WICK_ERR_INVALID_ARG, WICK_ERR_IO, WICK_ERR_NOMEM, WICK_ERR_UNSUPPORTED). */
wick_status model_export_folder(const wick_model *m, const char *out_dir, dtype dt);

/* Same, and `extra` (when set) writes more files into the staging folder before the swap, so
 * they land in the same transaction (the trainer's optimizer state beside its weights). */
typedef wick_status (*model_export_extra_fn)(void *user, const char *stage_dir);
wick_status model_export_folder_with(const wick_model *m, const char *out_dir, dtype dt,
                                     model_export_extra_fn extra, void *user);

/* The matrix type an export keeps by default: the source type when every matrix is F32, F16
 * or BF16 of one type, F32 when they mix scalar types, BF16 when any is quantized. */
dtype model_export_default_dtype(const wick_model *m);

#endif
