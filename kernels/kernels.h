/* kernels.h — the kernel table: every numeric op the models use, as function pointers.
 *
 * A backend is one `kernel_table`. kernels/ref fills it with plain scalar C that is the
 * definition of each op (tests compare every other table with it); kernels/cpu fills it with
 * threaded, vectorised versions chosen at run time from the CPU's features. Models call only
 * through the table and never touch SIMD or threads themselves.
 *
 * Conventions: activations are f32, row-major. A weight matrix `wk_weight` is [rows, cols] =
 * [out_features, in_features] in its file dtype, as PyTorch's nn.Linear stores it, so
 * y = x·Wᵀ + b. Quantized weights: ref dequantizes them to f32 (the exact definition); the
 * CPU tables quantize the activations to 8-bit blocks for an integer dot product in decode
 * (see kernels/quant.h: quant_dot_q8x defines that result). `pool` may be NULL (single-threaded); ref kernels ignore it. Shapes with a
 * zero dimension are valid and do nothing. No kernel allocates memory. */
#ifndef WICK_KERNELS_H
#define WICK_KERNELS_H
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/pool.h"

typedef struct wk_weight {
    const void *data;   /* rows * cols elements of dt, row-major, rows contiguous; for a
                           block-quantized dt (kernels/quant.h) row r starts at byte
                           r * dtype_row_bytes(dt, cols) and cols is a multiple of the block */
    dtype dt;           /* DT_F32, DT_F16, DT_BF16, DT_Q8_0, DT_Q4_0, DT_Q4_K or DT_Q6_K */
    int64_t rows, cols; /* (out_features, in_features) */
} wk_weight;

typedef struct kernel_table {
    const char *name;

    /* out (n, W.cols) = W[ids[i], :] converted to f32. ids are already range-checked. */
    void (*embed)(wk_pool *pool, float *out, const wk_weight *W, const int32_t *ids, int n);

    /* out (n, d) = x / sqrt(mean(x²) + eps) * w, per row; out may equal x. */
    void (*rmsnorm)(wk_pool *pool, float *out, const float *x, const float *w, int n, int d,
                    float eps);

    /* y (n, W.rows) = x (n, W.cols) · Wᵀ + bias (bias may be NULL). y must not alias x. */
    void (*matmul)(wk_pool *pool, float *y, const float *x, const wk_weight *W, const float *bias,
                   int n);

    /* Rotary embedding, rotate-half layout (Hugging Face): x holds n rows of n_heads heads of
     * head_dim (row stride n_heads*head_dim). Row i is rotated with cos[i*half + j],
     * sin[i*half + j] (half = head_dim/2) for pair (j, j+half):
     *   x'[j] = x[j]·c − x[j+half]·s ;  x'[j+half] = x[j+half]·c + x[j]·s. */
    void (*rope)(wk_pool *pool, float *x, int n, int n_heads, int head_dim, const float *cos,
                 const float *sin);

    /* Causal attention of n new query rows at absolute positions pos0 .. pos0+n−1 over the
     * KV cache, which already holds positions 0 .. pos0+n−1.
     *   q   (n, n_head*head_dim)
     *   k,v cache: [n_kv][kv_cap][head_dim] (head-major), positions 0..pos0+n−1 valid
     *   out (n, n_head*head_dim)
     * Query head h uses KV head h / (n_head/n_kv). Query at position p sees positions j with
     * j <= p and, when window > 0, j > p − window. scores = q·k · scale, softmax in f32.
     * scratch: at least pool_size(pool) * kv_cap floats. */
    void (*attention)(wk_pool *pool, float *out, const float *q, const float *kcache,
                      const float *vcache, int n, int pos0, int n_head, int n_kv, int head_dim,
                      int kv_cap, int window, float scale, float *scratch);

    /* In-place numerically stable softmax of x[0..n). */
    void (*softmax)(float *x, int n);

    /* out[i] = silu(gate[i]) * up[i], silu(z) = z / (1 + e^−z); for i < n. out may alias. */
    void (*silu_mul)(wk_pool *pool, float *out, const float *gate, const float *up, long n);

    /* y[i] += x[i] for i < n. */
    void (*add)(wk_pool *pool, float *y, const float *x, long n);

    /* Rotary embedding, interleaved layout (GGUF llama: llama.cpp's converter permutes the
     * q/k rows so each rotated pair is adjacent). Same arguments as rope; pair (2j, 2j+1):
     *   x'[2j] = x[2j]·c − x[2j+1]·s ;  x'[2j+1] = x[2j+1]·c + x[2j]·s. */
    void (*rope_interleaved)(wk_pool *pool, float *x, int n, int n_heads, int head_dim,
                             const float *cos, const float *sin);
} kernel_table;

/* The scalar reference table. */
const kernel_table *kernels_ref(void);
/* The threaded CPU table, best ISA for this machine (NULL if not built). */
const kernel_table *kernels_cpu(void);
/* One CPU variant by ISA name: "avx512", "avx2" or "generic"; NULL when this CPU cannot run
 * it or the name is unknown. */
const kernel_table *kernels_cpu_variant(const char *isa);
/* Picks a table by name: "auto"/"cpu" -> kernels_cpu, "ref" -> kernels_ref, "avx512" /
 * "avx2" / "generic" -> that CPU variant. The WICK_ISA environment variable, when set,
 * overrides `name`. NULL for an unknown name or a variant this CPU cannot run. */
const kernel_table *kernels_select(const char *name);

/* Converts one weight row to f32 (reference semantics, used by every table's tails). */
void kernels_row_to_f32(float *out, const wk_weight *W, int64_t row);

#endif
