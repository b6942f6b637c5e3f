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

/* A decoder's shape. name: for messages; arch / model_type as config.json spells them
 * ("Qwen2ForCausalLM" / "qwen2", "LlamaForCausalLM" / "llama"). bias: q/k/v biases (Qwen2).
 * init_std: the matrices' standard deviation (0 = 0.02). hf_init: norm weights exactly 1 and
 * biases 0, as transformers initialises a fresh model (else norms 1 + N(0, 0.1) and biases
 * N(0, 0.02), so tests see them matter). */
typedef struct random_shape {
    const char *name, *arch, *model_type;
    int d, ff, layers, heads, kv, vocab, max_pos;
    double theta, eps;
    int tied, bias;
    int bos, eos;
    int llama3_rope;
    double init_std;
    int hf_init;
    int head_dim;   /* 0: hidden_size / heads */
    int qk_norm;    /* per-head q/k norm weights (Qwen3) */
    /* mixture of experts (Qwen3-MoE layout, every layer sparse): experts, chosen per token,
       each expert's width; 0 experts = a dense MLP of width ff */
    int n_expert, n_expert_used, ff_expert;
} random_shape;

/* Writes config.json, generation_config.json and model.safetensors of a random model shaped
 * like `like` into `out_dir` (created if missing). dt: DT_F32, DT_BF16 or DT_F16.
 * tokenizer (optional): a tokenizer.json file or a folder; tokenizer.json and
 * tokenizer_config.json are copied beside the weights. The folder is replaced as a whole
 * (base/fileio.h dir_txn). */
wick_status random_model_write(const char *like, const char *out_dir, uint64_t seed, dtype dt,
                               const char *tokenizer);
/* Same for any shape (sizes checked: heads divide hidden_size into an even head size, kv
 * heads divide heads). */
wick_status random_model_write_shape(const random_shape *s, const char *out_dir, uint64_t seed,
                                     dtype dt, const char *tokenizer);

#endif
