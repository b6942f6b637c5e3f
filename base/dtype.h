/* dtype.h — element types of weight tensors and scalar conversions between them.
 * The conversions are the definitions used by kernels/ref: bf16 and f16 widen to f32 exactly;
 * narrowing rounds to nearest even (NaN stays NaN).
 *
 * Besides byte-addressable scalars there are block-quantized types (the GGUF/ggml layouts):
 * a row of n elements is n / block_size blocks of block_bytes each, and n must be a multiple
 * of the block size. Their layouts and arithmetic live in kernels/quant.h; this header only
 * knows their sizes. */
#ifndef WICK_BASE_DTYPE_H
#define WICK_BASE_DTYPE_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum dtype {
    DT_F32 = 0, DT_F16, DT_BF16, DT_F64, DT_I64, DT_I32, DT_I16, DT_I8, DT_U8, DT_BOOL,
    /* block-quantized (GGUF): values are appended so the scalar ids never change */
    DT_Q8_0,  /* 32 values: f16 d, 32 x int8                          (34 bytes)  */
    DT_Q4_0,  /* 32 values: f16 d, 16 bytes of nibbles                (18 bytes)  */
    DT_Q4_K,  /* 256 values: f16 d, f16 dmin, 12 B scales, 128 B nibbles (144 bytes) */
    DT_Q6_K,  /* 256 values: 128 B low bits, 64 B high bits, 16 int8 scales, f16 d (210) */
    DT_Q5_0,  /* 32 values: f16 d, 4 B fifth bits, 16 bytes of nibbles (22 bytes)  */
    DT_COUNT_
} dtype;

/* Bytes per element of a scalar type; 0 for block-quantized types (an element has no whole
 * size there: use dtype_row_bytes) and for unknown values. */
size_t dtype_size(dtype dt);
/* safetensors spelling: "F32", "BF16", ...; GGUF spelling for quantized: "Q8_0", "Q4_K". */
const char *dtype_name(dtype dt);
/* Parses a safetensors dtype string (scalar types only: safetensors has no block types);
 * returns -1 when unknown. */
int dtype_parse(const char *s);
/* True for the block-quantized types. */
int dtype_is_quant(dtype dt);
/* Elements per block: 1 for scalars, 32 for Q8_0/Q4_0/Q5_0, 256 for the K-quants; 0 if unknown. */
int dtype_block_size(dtype dt);
/* Bytes per block (= dtype_size for scalars); 0 if unknown. */
size_t dtype_block_bytes(dtype dt);
/* Bytes of a row of n elements; 0 when n is not a multiple of the block size (callers that
 * accept user shapes check dtype_block_size first) or the type is unknown. */
size_t dtype_row_bytes(dtype dt, int64_t n);

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);  /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

#endif
