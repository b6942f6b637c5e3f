/* random.h — seeded random model folders of real shapes, for benchmarks and tests.
 * The weights are N(0, 0.02) (norm weights 1 + N(0, 0.1), biases N(0, 0.02)), drawn from a
 * splitmix64-seeded xoshiro256** stream in tensor order, so a (shape, seed, dtype) triple
 * always gives the same bytes. */
#ifndef WICK_MODEL_RANDOM_H
#define WICK_MODEL_RANDOM_H
#include <stdint.h>

#include "base/dtype.h"
#include "wick.h"

/* Names accepted by random_model_write: "qwen2.5-0.5b", "qwen2.5-1.5b", "llama-3.2-1b",
 * "tinyllama", and "tiny" (a 2-layer test model). NULL-terminated list. */
extern const char *const random_model_shapes[];

/* Writes config.json, generation_config.json and model.safetensors of a random model shaped
 * like `like` into `out_dir` (created if missing). dt: DT_F32, DT_BF16 or DT_F16.
 * tokenizer (optional): a tokenizer.json file or a folder; tokenizer.json and
 * tokenizer_config.json are copied beside the weights. The folder is replaced as a whole
 * (base/fileio.h dir_txn). */
wick_status random_model_write(const char *like, const char *out_dir, uint64_t seed, dtype dt,
                               const char *tokenizer);

#endif
