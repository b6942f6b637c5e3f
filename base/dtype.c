/* dtype.c — dtype names, sizes (scalar and block-quantized) and IEEE half-precision
 * conversion. Not here: the quantized block layouts themselves (kernels/quant.h). */
#include "base/dtype.h"

#include <math.h>

/* block = elements per block, bytes = bytes per block (for scalars: 1 and the element size) */
static const struct { const char *name; int block; size_t bytes; } k_dtypes[DT_COUNT_] = {
    [DT_F32] = {"F32", 1, 4}, [DT_F16] = {"F16", 1, 2}, [DT_BF16] = {"BF16", 1, 2},
    [DT_F64] = {"F64", 1, 8}, [DT_I64] = {"I64", 1, 8}, [DT_I32] = {"I32", 1, 4},
    [DT_I16] = {"I16", 1, 2}, [DT_I8] = {"I8", 1, 1}, [DT_U8] = {"U8", 1, 1},
    [DT_BOOL] = {"BOOL", 1, 1},
    [DT_Q8_0] = {"Q8_0", 32, 34}, [DT_Q4_0] = {"Q4_0", 32, 18},
    [DT_Q4_K] = {"Q4_K", 256, 144}, [DT_Q6_K] = {"Q6_K", 256, 210},
    [DT_Q5_0] = {"Q5_0", 32, 22},
};

size_t dtype_size(dtype dt) {
    return (unsigned)dt < DT_COUNT_ && k_dtypes[dt].block == 1 ? k_dtypes[dt].bytes : 0;
}

const char *dtype_name(dtype dt) { return (unsigned)dt < DT_COUNT_ ? k_dtypes[dt].name : "?"; }

int dtype_parse(const char *s) {
    for (int i = 0; i < DT_COUNT_; i++)
        if (k_dtypes[i].block == 1 && strcmp(s, k_dtypes[i].name) == 0) return i;
    return -1;
}

int dtype_is_quant(dtype dt) { return (unsigned)dt < DT_COUNT_ && k_dtypes[dt].block > 1; }

int dtype_block_size(dtype dt) { return (unsigned)dt < DT_COUNT_ ? k_dtypes[dt].block : 0; }

size_t dtype_block_bytes(dtype dt) { return (unsigned)dt < DT_COUNT_ ? k_dtypes[dt].bytes : 0; }

size_t dtype_row_bytes(dtype dt, int64_t n) {
    if ((unsigned)dt >= DT_COUNT_ || n < 0 || n % k_dtypes[dt].block != 0) return 0;
    return (size_t)(n / k_dtypes[dt].block) * k_dtypes[dt].bytes;
}

float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: value = man * 2^-24 */
            float f = (float)man * 5.9604644775390625e-8f;
            memcpy(&u, &f, 4);
            u |= sign;
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u;          /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00u;         /* overflow (>= 65520) -> inf */
    if (a < 0x38800000u) {                               /* result is subnormal or zero */
        float af;
        memcpy(&af, &a, 4);
        /* nearbyint rounds half to even in the default rounding mode */
        return sign | (uint16_t)nearbyintf(af * 16777216.0f);
    }
    uint32_t mant_odd = (a >> 13) & 1u;
    a += 0xfffu + mant_odd;                              /* round to nearest even */
    return sign | (uint16_t)((a - 0x38000000u) >> 13);
}
