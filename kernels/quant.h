/* quant.h — block-quantized weight formats (the GGUF/ggml layouts) and their scalar
 * definitions: quantize, dequantize, and the integer dot product against activations that are
 * themselves quantized to 8-bit blocks on the fly.
 *
 * Layouts (little-endian, packed; f16 = IEEE half):
 *   Q8_0  32 values : d(f16), qs[32] int8                         x = d·q
 *   Q4_0  32 values : d(f16), qs[16]: element j in the low nibble of qs[j], element j+16
 *                     in the high nibble                          x = d·(q − 8)
 *   Q4_K 256 values : d(f16), dmin(f16), scales[12] (eight 6-bit scales sc and eight 6-bit
 *                     mins m, packed, see quant_q4k_scale), qs[128]. Sub-block s (32 values)
 *                     lives in qs[32·(s/2) .. +32), low nibbles for even s, high for odd s.
 *                                                                 x = d·sc·q − dmin·m
 *   Q6_K 256 values : ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] int8 (one per
 *                     16 values), d(f16). In each half h (128 values), element i < 128 has
 *                     l = i % 32, k = i / 32: low bits = nibble (k ≥ 2 ? high : low) of
 *                     ql[64h + l + 32·(k & 1)], high bits = bits 2k..2k+1 of qh[32h + l].
 *                                                                 x = d·scales[e/16]·(q − 32)
 *   Q5_0  32 values : d(f16), qh[4] (a little-endian 32-bit word: bit j is the fifth bit of
 *                     element j), qs[16] nibbles laid out as in Q4_0   x = d·(q − 16)
 *                     (llama.cpp falls back to it for K-quant rows not a multiple of 256)
 *
 * Activation blocks (blk_q8x, wick-internal, never stored in files): 32 values per block,
 * f32 scale d = max|x|/127, q = nearbyint(x / d) (computed as x · (1/d)), plus the sums of q
 * over each half (16 values), which the Q4_0 / Q5_0 / Q4_K / Q6_K dot products need to apply their
 * zero points without touching every element twice. SIMD versions produce the same bytes.
 *
 * Not here: threading, SIMD (kernels/cpu), the file format (formats/gguf). */
#ifndef WICK_KERNELS_QUANT_H
#define WICK_KERNELS_QUANT_H
#include <stdint.h>

#include "base/dtype.h"

#define QK 32    /* values per Q8_0 / Q4_0 block and per activation block */
#define QKK 256  /* values per K-quant super-block */

typedef struct blk_q8_0 { uint16_t d; int8_t qs[QK]; } blk_q8_0;
typedef struct blk_q4_0 { uint16_t d; uint8_t qs[QK / 2]; } blk_q4_0;
typedef struct blk_q4_k { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[QKK / 2]; } blk_q4_k;
typedef struct blk_q6_k { uint8_t ql[QKK / 2]; uint8_t qh[QKK / 4]; int8_t scales[16]; uint16_t d; } blk_q6_k;
typedef struct blk_q5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[QK / 2]; } blk_q5_0;
typedef struct blk_q8x { float d; int16_t sum[2]; int8_t qs[QK]; } blk_q8x;

_Static_assert(sizeof(blk_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(blk_q4_0) == 18, "Q4_0 block is 18 bytes");
_Static_assert(sizeof(blk_q4_k) == 144, "Q4_K block is 144 bytes");
_Static_assert(sizeof(blk_q6_k) == 210, "Q6_K block is 210 bytes");
_Static_assert(sizeof(blk_q5_0) == 22, "Q5_0 block is 22 bytes");

/* Scale and min (6 bits each) of sub-block j (0..7) of a Q4_K super-block. */
static inline void quant_q4k_scale(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Quantizes n values (n a multiple of the block size of dt) into row bytes of dt.
 * Round-to-nearest per block; the K-quants search their sub-block scales to minimise the
 * squared error. dt must be a quantized type. */
void quant_quantize_row(dtype dt, void *dst, const float *x, int64_t n);
/* Dequantizes n values (a multiple of the block size) of a quantized row. */
void quant_dequantize_row(dtype dt, float *out, const void *src, int64_t n);
/* Dequantizes n values starting at element c0 (both multiples of the block size). */
void quant_dequantize_range(dtype dt, float *out, const void *row, int64_t c0, int64_t n);

/* Quantizes n activations (n a multiple of QK) into n/QK activation blocks. */
void quant_x_row(blk_q8x *dst, const float *x, int64_t n);
/* Σ_c W[c]·x[c] over a weight row of n values (multiple of dt's block) with x given as
 * activation blocks; integer sums per block, combined in f32 in block order. This is the
 * definition the SIMD integer kernels are checked against. */
float quant_dot_q8x(dtype dt, const void *wrow, const blk_q8x *xq, int64_t n);

#endif
