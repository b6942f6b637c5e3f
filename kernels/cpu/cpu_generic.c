/* cpu_generic.c — plain C inner loops for the threaded CPU table (no intrinsics, baseline
 * x86-64 flags). They serve two roles: the "cpu-generic" table for CPUs without AVX2, and
 * the scalar tails of the SIMD files (which call these on the leftover elements instead of
 * repeating the scalar code). Written so the compiler can vectorise with SSE2: independent
 * accumulators, no aliasing surprises. Threading lives in cpu.c, not here. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

#define CHUNK 256 /* weight elements widened to f32 at a time on the stack (1 KiB) */

static void widen(float *out, const wk_weight *W, int64_t r, int64_t c0, int64_t n) {
    const int64_t base = r * W->cols + c0;
    if (dtype_is_quant(W->dt)) { /* c0 is a multiple of CHUNK, hence of every block size */
        quant_dequantize_range(W->dt, out, (const char *)W->data + r * dtype_row_bytes(W->dt, W->cols),
                               c0, n);
        return;
    }
    switch (W->dt) {
    case DT_F32: memcpy(out, (const float *)W->data + base, (size_t)n * sizeof(float)); break;
    case DT_BF16: {
        const uint16_t *p = (const uint16_t *)W->data + base;
        for (int64_t i = 0; i < n; i++) out[i] = bf16_to_f32(p[i]);
        break;
    }
    case DT_F16: {
        const uint16_t *p = (const uint16_t *)W->data + base;
        for (int64_t i = 0; i < n; i++) out[i] = f16_to_f32(p[i]);
        break;
    }
    default: memset(out, 0, (size_t)n * sizeof(float)); break; /* rejected at model load */
    }
}

void cpu_g_dot_w(float *out, const float *x, int64_t ldx, int nx, const wk_weight *W, int64_t r,
                 int64_t c0, int64_t c1) {
    float w[CHUNK];
    for (int64_t c = c0; c < c1; c += CHUNK) {
        int64_t m = c1 - c < CHUNK ? c1 - c : CHUNK;
        widen(w, W, r, c, m);
        for (int i = 0; i < nx; i++) out[i] += cpu_g_dot(x + i * ldx + c, w, (int)m);
    }
}

void cpu_g_matvec(float *y, int64_t ldy, const float *x, int64_t ldx, int nx, const wk_weight *W,
                  int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        float acc[CPU_MV_NX] = {0};
        cpu_g_dot_w(acc, x, ldx, nx, W, r, 0, W->cols);
        for (int i = 0; i < nx; i++) y[i * ldy + r] = acc[i];
    }
}

void cpu_g_matvec_q(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int nx,
                    const wk_weight *W, int64_t r0, int64_t r1) {
    const size_t rb = dtype_row_bytes(W->dt, W->cols);
    for (int64_t r = r0; r < r1; r++)
        for (int i = 0; i < nx; i++)
            y[i * ldy + r] = quant_dot_q8x(W->dt, (const char *)W->data + r * rb, xq + i * ldxq,
                                           W->cols);
}

static void g_row_to_f32(float *out, const wk_weight *W, int64_t r) {
    widen(out, W, r, 0, W->cols);
}

float cpu_g_dot(const float *a, const float *b, int n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

void cpu_g_axpy(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

float cpu_g_sumsq(const float *x, int n) { return cpu_g_dot(x, x, n); }

void cpu_g_scale_mul(float *out, const float *x, const float *w, float inv, int n) {
    for (int i = 0; i < n; i++) out[i] = w[i] * (x[i] * inv);
}

void cpu_g_rope_pairs(float *v, const float *c, const float *s, int j0, int half) {
    for (int j = j0; j < half; j++) {
        float a = v[j], b = v[j + half];
        v[j] = a * c[j] - b * s[j];
        v[j + half] = b * c[j] + a * s[j];
    }
}

static void g_rope_head(float *v, const float *c, const float *s, int half) {
    cpu_g_rope_pairs(v, c, s, 0, half);
}

void cpu_g_silu_mul(float *out, const float *gate, const float *up, long n) {
    for (long i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void cpu_g_add(float *y, const float *x, long n) {
    for (long i = 0; i < n; i++) y[i] += x[i];
}

float cpu_g_max(const float *x, int n) {
    float m = x[0];
    for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

float cpu_g_exp_sum(float *x, int n, float m) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        sum += x[i];
    }
    return sum;
}

void cpu_g_scale(float *x, float s, int n) {
    for (int i = 0; i < n; i++) x[i] *= s;
}

static void g_softmax(float *x, int n) {
    if (n <= 0) return;
    float m = cpu_g_max(x, n);
    cpu_g_scale(x, 1.0f / cpu_g_exp_sum(x, n, m), n);
}

/* ---- tiled attention (attn_tile.h) ---- */
static inline float att_exp_sum16(float *s, float m) { return cpu_g_exp_sum(s, 16, m); }
#define ATT_ROW_TO_F32 g_row_to_f32
#define ATT_FN g_attn_block
#include "kernels/cpu/attn_tile.h"

void cpu_g_gelu(float *x, long n) {
    for (long i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

void cpu_g_layernorm_row(float *x, const float *r, const float *w, const float *b, int d, float eps) {
    if (r)
        for (int j = 0; j < d; j++) x[j] += r[j];
    double mean = 0, var = 0;
    for (int j = 0; j < d; j++) mean += x[j];
    mean /= d;
    for (int j = 0; j < d; j++) {
        const double c = x[j] - mean;
        var += c * c;
    }
    var /= d;
    const float inv = (float)(1.0 / sqrt(var + (double)eps)), m = (float)mean;
    for (int j = 0; j < d; j++) x[j] = (x[j] - m) * inv * w[j] + b[j];
}

#define ENC_ATTN_FN g_enc_attn_item
#define ENC_SOFTMAX g_softmax
#include "kernels/cpu/enc_attn.h"

const cpu_isa cpu_isa_generic = {
    .name = "generic",
    .matvec = cpu_g_matvec,
    .row_to_f32 = g_row_to_f32,
    .dot = cpu_g_dot,
    .axpy = cpu_g_axpy,
    .sumsq = cpu_g_sumsq,
    .scale_mul = cpu_g_scale_mul,
    .rope_head = g_rope_head,
    .silu_mul = cpu_g_silu_mul,
    .add = cpu_g_add,
    .softmax = g_softmax,
    .gelu = cpu_g_gelu,
    .layernorm_row = cpu_g_layernorm_row,
    .enc_attn_item = g_enc_attn_item,
    .quant_x = quant_x_row,
    .matvec_q = cpu_g_matvec_q,
    .attn_block = g_attn_block,
};
