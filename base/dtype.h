/* dtype.h — element types of weight tensors and scalar conversions between them.
 * The conversions are the definitions used by kernels/ref: bf16 and f16 widen to f32 exactly;
 * narrowing rounds to nearest even (NaN stays NaN). */
#ifndef WICK_BASE_DTYPE_H
#define WICK_BASE_DTYPE_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum dtype {
    DT_F32 = 0, DT_F16, DT_BF16, DT_F64, DT_I64, DT_I32, DT_I16, DT_I8, DT_U8, DT_BOOL,
    DT_COUNT_
} dtype;

/* Bytes per element (all types here are byte-addressable scalars). */
size_t dtype_size(dtype dt);
/* safetensors spelling: "F32", "BF16", ... */
const char *dtype_name(dtype dt);
/* Parses a safetensors dtype string; returns -1 when unknown. */
int dtype_parse(const char *s);

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
