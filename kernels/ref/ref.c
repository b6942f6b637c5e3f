/* ref.c — the scalar reference kernels: the definition of every op in kernel_table.
 * Written for clarity, single-threaded, double accumulation is NOT used on purpose: the
 * reference computes in f32 exactly as the equations in kernels.h say, in the order a
 * straightforward loop would, so faster tables can be checked against it with small
 * tolerances. Speed is not a goal here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/quant.h"

void kernels_row_to_f32(float *out, const wk_weight *W, int64_t row) {
    const int64_t c = W->cols;
    if (dtype_is_quant(W->dt)) {
        quant_dequantize_row(W->dt, out, (const char *)W->data + row * dtype_row_bytes(W->dt, c),
                             c);
        return;
    }
    switch (W->dt) {
    case DT_F32:
        memcpy(out, (const float *)W->data + row * c, (size_t)c * sizeof(float));
        break;
    case DT_BF16: {
        const uint16_t *p = (const uint16_t *)W->data + row * c;
        for (int64_t i = 0; i < c; i++) out[i] = bf16_to_f32(p[i]);
        break;
    }
    case DT_F16: {
        const uint16_t *p = (const uint16_t *)W->data + row * c;
        for (int64_t i = 0; i < c; i++) out[i] = f16_to_f32(p[i]);
        break;
    }
    default: /* weights of other types never reach the kernels: model loading rejects them */
        memset(out, 0, (size_t)c * sizeof(float));
        break;
    }
}

#define REF_CHUNK 256 /* a multiple of every block size */

/* Weight row r, columns [c0, c0+n) as f32 (n ≤ REF_CHUNK; c0 and, unless it ends the row,
 * n are multiples of REF_CHUNK, hence of the block size). */
static void weight_chunk(float *w, const wk_weight *W, int64_t r, int64_t c0, int64_t n) {
    if (dtype_is_quant(W->dt)) {
        quant_dequantize_range(W->dt, w, (const char *)W->data + r * dtype_row_bytes(W->dt, W->cols),
                               c0, n);
        return;
    }
    const int64_t i = r * W->cols + c0;
    for (int64_t k = 0; k < n; k++) {
        switch (W->dt) {
        case DT_F32: w[k] = ((const float *)W->data)[i + k]; break;
        case DT_BF16: w[k] = bf16_to_f32(((const uint16_t *)W->data)[i + k]); break;
        case DT_F16: w[k] = f16_to_f32(((const uint16_t *)W->data)[i + k]); break;
        default: w[k] = 0.0f; break;
        }
    }
}

static void ref_embed(wk_pool *pool, float *out, const wk_weight *W, const int32_t *ids, int n) {
    for (int i = 0; i < n; i++) kernels_row_to_f32(out + (int64_t)i * W->cols, W, ids[i]);
}

static void ref_rmsnorm(wk_pool *pool, float *out, const float *x, const float *w, int n, int d,
                        float eps) {
    for (int i = 0; i < n; i++) {
        const float *xi = x + (int64_t)i * d;
        float *oi = out + (int64_t)i * d;
        float ss = 0.0f;
        for (int j = 0; j < d; j++) ss += xi[j] * xi[j];
        float inv = 1.0f / sqrtf(ss / (float)d + eps);
        for (int j = 0; j < d; j++) oi[j] = w[j] * (xi[j] * inv);
    }
}

static void ref_matmul(wk_pool *pool, float *y, const float *x, const wk_weight *W,
                       const float *bias, int n) {
    for (int i = 0; i < n; i++) {
        const float *xi = x + (int64_t)i * W->cols;
        for (int64_t r = 0; r < W->rows; r++) {
            float acc = 0.0f, w[REF_CHUNK];
            for (int64_t c0 = 0; c0 < W->cols; c0 += REF_CHUNK) {
                const int64_t m = W->cols - c0 < REF_CHUNK ? W->cols - c0 : REF_CHUNK;
                weight_chunk(w, W, r, c0, m);
                for (int64_t c = 0; c < m; c++) acc += xi[c0 + c] * w[c];
            }
            y[(int64_t)i * W->rows + r] = acc + (bias ? bias[r] : 0.0f);
        }
    }
}

static void ref_rope(wk_pool *pool, float *x, int n, int n_heads, int head_dim, const float *cos,
                     const float *sin) {
    const int half = head_dim / 2;
    for (int i = 0; i < n; i++) {
        const float *c = cos + (int64_t)i * half, *s = sin + (int64_t)i * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((int64_t)i * n_heads + h) * head_dim;
            for (int j = 0; j < half; j++) {
                float a = v[j], b = v[j + half];
                v[j] = a * c[j] - b * s[j];
                v[j + half] = b * c[j] + a * s[j];
            }
        }
    }
}

static void ref_rope_interleaved(wk_pool *pool, float *x, int n, int n_heads, int head_dim,
                                 const float *cos, const float *sin) {
    const int half = head_dim / 2;
    for (int i = 0; i < n; i++) {
        const float *c = cos + (int64_t)i * half, *s = sin + (int64_t)i * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((int64_t)i * n_heads + h) * head_dim;
            for (int j = 0; j < half; j++) {
                float a = v[2 * j], b = v[2 * j + 1];
                v[2 * j] = a * c[j] - b * s[j];
                v[2 * j + 1] = b * c[j] + a * s[j];
            }
        }
    }
}

static void ref_softmax(float *x, int n) {
    if (n <= 0) return;
    float m = x[0];
    for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

static void ref_attention(wk_pool *pool, float *out, const float *q, const float *kcache,
                          const float *vcache, int n, int pos0, int n_head, int n_kv,
                          int head_dim, int kv_cap, int window, float scale, float *scratch) {
    const int group = n_head / n_kv;
    for (int i = 0; i < n; i++) {
        const int p = pos0 + i;
        const int j0 = (window > 0 && p - window + 1 > 0) ? p - window + 1 : 0;
        for (int h = 0; h < n_head; h++) {
            const int kvh = h / group;
            const float *qh = q + ((int64_t)i * n_head + h) * head_dim;
            const float *K = kcache + (int64_t)kvh * kv_cap * head_dim;
            const float *V = vcache + (int64_t)kvh * kv_cap * head_dim;
            float *sc = scratch;
            for (int j = j0; j <= p; j++) {
                float d = 0.0f;
                for (int t = 0; t < head_dim; t++) d += qh[t] * K[(int64_t)j * head_dim + t];
                sc[j - j0] = d * scale;
            }
            ref_softmax(sc, p - j0 + 1);
            float *o = out + ((int64_t)i * n_head + h) * head_dim;
            for (int t = 0; t < head_dim; t++) o[t] = 0.0f;
            for (int j = j0; j <= p; j++) {
                const float w = sc[j - j0];
                for (int t = 0; t < head_dim; t++) o[t] += w * V[(int64_t)j * head_dim + t];
            }
        }
    }
}

static void ref_silu_mul(wk_pool *pool, float *out, const float *gate, const float *up, long n) {
    for (long i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

static void ref_add(wk_pool *pool, float *y, const float *x, long n) {
    for (long i = 0; i < n; i++) y[i] += x[i];
}

static const kernel_table k_ref = {
    .name = "ref",
    .embed = ref_embed,
    .rmsnorm = ref_rmsnorm,
    .matmul = ref_matmul,
    .rope = ref_rope,
    .attention = ref_attention,
    .softmax = ref_softmax,
    .silu_mul = ref_silu_mul,
    .add = ref_add,
    .rope_interleaved = ref_rope_interleaved,
};

const kernel_table *kernels_ref(void) { return &k_ref; }
