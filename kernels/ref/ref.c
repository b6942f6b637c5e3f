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

static void ref_embed(wk_ctx *ctx, float *out, const wk_weight *W, const int32_t *ids, int n) {
    for (int i = 0; i < n; i++) kernels_row_to_f32(out + (int64_t)i * W->cols, W, ids[i]);
}

static void ref_rmsnorm(wk_ctx *ctx, float *out, const float *x, const float *w, int n, int d,
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

static void ref_matmul(wk_ctx *ctx, float *y, const float *x, const wk_weight *W,
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

static void ref_rope(wk_ctx *ctx, float *x, int n, int n_heads, int head_dim, int rot_dim,
                     const int32_t *pos, const float *cos, const float *sin) {
    const int half = rot_dim / 2;
    for (int i = 0; i < n; i++) {
        const float *c = cos + (int64_t)pos[i] * half, *s = sin + (int64_t)pos[i] * half;
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

static void ref_rope_interleaved(wk_ctx *ctx, float *x, int n, int n_heads, int head_dim,
                                 int rot_dim, const int32_t *pos, const float *cos, const float *sin) {
    const int half = rot_dim / 2;
    for (int i = 0; i < n; i++) {
        const float *c = cos + (int64_t)pos[i] * half, *s = sin + (int64_t)pos[i] * half;
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

/* ---- KV cache ---- */

void kernels_kv_row_from_f32(dtype dt, void *dst, const float *x, int n) {
    switch (dt) {
    case DT_F32: memcpy(dst, x, sizeof(float) * (size_t)n); break;
    case DT_F16:
        for (int i = 0; i < n; i++) ((uint16_t *)dst)[i] = f32_to_f16(x[i]);
        break;
    case DT_BF16:
        for (int i = 0; i < n; i++) ((uint16_t *)dst)[i] = f32_to_bf16(x[i]);
        break;
    case DT_Q8_0: quant_quantize_row(DT_Q8_0, dst, x, n); break;
    default: break; /* engines accept only the four types above */
    }
}

void kernels_kv_row_to_f32(dtype dt, float *out, const void *src, int n) {
    switch (dt) {
    case DT_F32: memcpy(out, src, sizeof(float) * (size_t)n); break;
    case DT_F16:
        for (int i = 0; i < n; i++) out[i] = f16_to_f32(((const uint16_t *)src)[i]);
        break;
    case DT_BF16:
        for (int i = 0; i < n; i++) out[i] = bf16_to_f32(((const uint16_t *)src)[i]);
        break;
    case DT_Q8_0: quant_dequantize_row(DT_Q8_0, out, src, n); break;
    default: memset(out, 0, sizeof(float) * (size_t)n); break;
    }
}

static void ref_kv_store(wk_ctx *ctx, const wk_kv_layer *kv, const float *k, const float *v,
                         const wk_span *spans, int n_spans, int n_kv, int head_dim) {
    const size_t kvd = (size_t)n_kv * head_dim;
    for (int s = 0; s < n_spans; s++) {
        const wk_span *sp = &spans[s];
        for (int i = 0; i < sp->n; i++) {
            const int row = sp->row0 + i, p = sp->pos0 + i;
            for (int h = 0; h < n_kv; h++) {
                kernels_kv_row_from_f32(kv->dt, (void *)kv_row(kv, kv->k, sp->blocks, h, p),
                                        k + row * kvd + (size_t)h * head_dim, head_dim);
                kernels_kv_row_from_f32(kv->dt, (void *)kv_row(kv, kv->v, sp->blocks, h, p),
                                        v + row * kvd + (size_t)h * head_dim, head_dim);
            }
        }
    }
}

/* Three passes per query (max, sum of exponentials, weighted sum of values) perform exactly
 * the operations of "scores -> softmax -> Σ p·v" without a score buffer: each exponential is
 * recomputed from the same operands, so the values are those of a stored-score version. */
/* score after Gemma 2's soft-capping (none when cap <= 0): (s / cap), tanh, times cap */
static inline float capped(float s, float cap) { return cap > 0 ? tanhf(s / cap) * cap : s; }

static void ref_attention(wk_ctx *ctx, float *out, const float *q, const wk_kv_layer *kv,
                          const wk_span *spans, int n_spans, int n_head, int n_kv, int head_dim,
                          int window, float scale, float softcap) {
    const int group = n_head / n_kv;
    float kf[1024], vf[1024]; /* one head row as f32; head_dim <= 1024 (model loading checks) */
    for (int s = 0; s < n_spans; s++) {
        const wk_span *sp = &spans[s];
        for (int i = 0; i < sp->n; i++) {
            const int row = sp->row0 + i, p = sp->pos0 + i;
            const int j0 = (window > 0 && p - window + 1 > 0) ? p - window + 1 : 0;
            for (int h = 0; h < n_head; h++) {
                const int kvh = h / group;
                const float *qh = q + ((int64_t)row * n_head + h) * head_dim;
                float m = -INFINITY;
                for (int j = j0; j <= p; j++) {
                    kernels_kv_row_to_f32(kv->dt, kf, kv_row(kv, kv->k, sp->blocks, kvh, j),
                                          head_dim);
                    float d = 0.0f;
                    for (int t = 0; t < head_dim; t++) d += qh[t] * kf[t];
                    d = capped(d * scale, softcap);
                    m = d > m ? d : m;
                }
                float sum = 0.0f;
                for (int j = j0; j <= p; j++) {
                    kernels_kv_row_to_f32(kv->dt, kf, kv_row(kv, kv->k, sp->blocks, kvh, j),
                                          head_dim);
                    float d = 0.0f;
                    for (int t = 0; t < head_dim; t++) d += qh[t] * kf[t];
                    sum += expf(capped(d * scale, softcap) - m);
                }
                const float inv = 1.0f / sum;
                float *o = out + ((int64_t)row * n_head + h) * head_dim;
                for (int t = 0; t < head_dim; t++) o[t] = 0.0f;
                for (int j = j0; j <= p; j++) {
                    kernels_kv_row_to_f32(kv->dt, kf, kv_row(kv, kv->k, sp->blocks, kvh, j),
                                          head_dim);
                    kernels_kv_row_to_f32(kv->dt, vf, kv_row(kv, kv->v, sp->blocks, kvh, j),
                                          head_dim);
                    float d = 0.0f;
                    for (int t = 0; t < head_dim; t++) d += qh[t] * kf[t];
                    const float w = expf(capped(d * scale, softcap) - m) * inv;
                    for (int t = 0; t < head_dim; t++) o[t] += w * vf[t];
                }
            }
        }
    }
}

static void ref_silu_mul(wk_ctx *ctx, float *out, const float *gate, const float *up, long n) {
    for (long i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

static void ref_gelu_tanh_mul(wk_ctx *ctx, float *out, const float *gate, const float *up, long n) {
    const float beta = 0.7978845608028654f, kappa = 0.044715f; /* √(2/π) */
    for (long i = 0; i < n; i++) {
        const float g = gate[i], inner = beta * (g + kappa * g * g * g);
        out[i] = 0.5f * g * (1.0f + tanhf(inner)) * up[i];
    }
}

static void ref_softcap(wk_ctx *ctx, float *x, long n, float cap) {
    for (long i = 0; i < n; i++) x[i] = tanhf(x[i] / cap) * cap;
}

static void ref_add(wk_ctx *ctx, float *y, const float *x, long n) {
    for (long i = 0; i < n; i++) y[i] += x[i];
}

static void ref_axpy(wk_ctx *ctx, float *y, float a, const float *x, long n) {
    for (long i = 0; i < n; i++) y[i] += a * x[i]; /* baseline x86-64: no FMA to fuse into */
}

/* Element i of a LoRA matrix: f32, or bf16 widened (exact). */
static inline float lora_w(const wk_weight *W, int64_t i) {
    return W->dt == DT_BF16 ? bf16_to_f32(((const uint16_t *)W->data)[i])
                            : ((const float *)W->data)[i];
}

static void ref_lora(wk_ctx *ctx, float *y, const float *x, const wk_lora_run *runs, int n_runs,
                     float *scratch) {
    int64_t r_max = 0;
    for (int k = 0; k < n_runs; k++) r_max = runs[k].A->rows > r_max ? runs[k].A->rows : r_max;
    for (int k = 0; k < n_runs; k++) {
        const wk_lora_run *ru = &runs[k];
        const int64_t r = ru->A->rows, in = ru->A->cols, out = ru->B->rows;
        float *t = ru->t ? ru->t : scratch + (size_t)ru->row0 * (size_t)r_max;
        for (int i = 0; i < ru->n; i++) {
            const float *xi = x + (size_t)(ru->row0 + i) * in;
            for (int64_t j = 0; j < r; j++) {
                float acc = 0.0f;
                for (int64_t c = 0; c < in; c++) acc += xi[c] * lora_w(ru->A, j * in + c);
                t[(size_t)i * r + j] = acc;
            }
            float *yi = y + (size_t)(ru->row0 + i) * out;
            for (int64_t o = 0; o < out; o++) {
                float u = 0.0f;
                for (int64_t j = 0; j < r; j++) u += t[(size_t)i * r + j] * lora_w(ru->B, o * r + j);
                yi[o] += ru->scale * u;
            }
        }
    }
}

static void ref_gelu(wk_ctx *ctx, float *x, long n) {
    (void)ctx;
    for (long i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

static void ref_matmul_gelu(wk_ctx *ctx, float *y, const float *x, const wk_weight *W,
                            const float *bias, int n) {
    ref_matmul(ctx, y, x, W, bias, n);
    ref_gelu(ctx, y, (long)n * W->rows);
}

/* layernorm of kernels.h, one row at a time. */
static void ref_layernorm(wk_ctx *ctx, float *x, const float *r, const float *w, const float *b,
                          int n, int d, float eps) {
    (void)ctx;
    for (long i = 0; i < n; i++) {
        float *xi = x + i * d;
        if (r)
            for (int j = 0; j < d; j++) xi[j] += r[i * d + j];
        double mean = 0, var = 0;
        for (int j = 0; j < d; j++) mean += xi[j];
        mean /= d;
        for (int j = 0; j < d; j++) {
            const double c = xi[j] - mean;
            var += c * c;
        }
        var /= d;
        const float inv = (float)(1.0 / sqrt(var + (double)eps)), m = (float)mean;
        for (int j = 0; j < d; j++) xi[j] = (xi[j] - m) * inv * w[j] + b[j];
    }
}

/* One score of attention_enc: the dot product, scaled, plus the relative bias. */
static float enc_score(const float *q, const float *k, int hd, float scale, const float *rel_bias,
                       const int32_t *rel_bucket, int max_tokens, int n_head, int h, int i, int j) {
    float dot = 0.0f;
    for (int e = 0; e < hd; e++) dot += q[e] * k[e];
    float s = dot * scale;
    if (rel_bias) s += rel_bias[rel_bucket[j - i + max_tokens - 1] * n_head + h];
    return s;
}

/* Without scratch: each query row's scores are computed three times (max, sum, weights). */
static void ref_attention_enc(wk_ctx *ctx, float *out, const float *q, const float *k,
                              const float *v, const int *lens, int n_seq, int n_head, int hd,
                              float scale, const float *rel_bias, const int32_t *rel_bucket,
                              int max_tokens) {
    (void)ctx;
    const int ld = n_head * hd;
    long off = 0;
    for (int s = 0; s < n_seq; off += lens[s], s++) {
        const int len = lens[s];
        for (int h = 0; h < n_head; h++)
            for (int i = 0; i < len; i++) {
                const float *qi = q + (off + i) * ld + h * hd;
#define SCORE(j) enc_score(qi, k + (off + (j)) * ld + h * hd, hd, scale, rel_bias, rel_bucket, \
                           max_tokens, n_head, h, i, (j))
                float m = -INFINITY, sum = 0.0f;
                for (int j = 0; j < len; j++) m = fmaxf(m, SCORE(j));
                for (int j = 0; j < len; j++) sum += expf(SCORE(j) - m);
                float *o = out + (off + i) * ld + h * hd;
                for (int e = 0; e < hd; e++) o[e] = 0.0f;
                for (int j = 0; j < len; j++) {
                    const float p = expf(SCORE(j) - m) * (1.0f / sum), *vj = v + (off + j) * ld + h * hd;
                    for (int e = 0; e < hd; e++) o[e] += p * vj[e];
                }
#undef SCORE
            }
    }
}

static void ref_gather_rows(wk_ctx *ctx, float *dst, const float *src, const int32_t *idx, int n,
                            int cols) {
    for (int i = 0; i < n; i++)
        memcpy(dst + (size_t)i * cols, src + (size_t)idx[i] * cols, sizeof(float) * (size_t)cols);
}

static void ref_scatter_rows(wk_ctx *ctx, float *y, const float *src, const int32_t *idx,
                             const float *w, int n, int cols) {
    (void)ctx;
    for (int i = 0; i < n; i++) {
        const bool first = idx[i] < 0;
        float *yr = y + (size_t)(first ? -(idx[i] + 1) : idx[i]) * cols;
        const float *s = src + (size_t)i * cols;
        for (int c = 0; c < cols; c++) {
            const float t = s[c] * w[i];
            yr[c] = first ? t : yr[c] + t;
        }
    }
}

static const kernel_table k_ref = {
    .name = "ref",
    .buf_alloc = kernels_host_alloc,
    .buf_free = kernels_host_free,
    .buf_copy = kernels_host_copy,
    .sync = kernels_host_sync,
    .embed = ref_embed,
    .rmsnorm = ref_rmsnorm,
    .matmul = ref_matmul,
    .rope = ref_rope,
    .rope_interleaved = ref_rope_interleaved,
    .kv_store = ref_kv_store,
    .attention = ref_attention,
    .softmax = ref_softmax,
    .silu_mul = ref_silu_mul,
    .gelu_tanh_mul = ref_gelu_tanh_mul,
    .softcap = ref_softcap,
    .add = ref_add,
    .axpy = ref_axpy,
    .lora = ref_lora,
    .gather_rows = ref_gather_rows,
    .scatter_rows = ref_scatter_rows,
    .gelu = ref_gelu,
    .matmul_gelu = ref_matmul_gelu,
    .layernorm = ref_layernorm,
    .attention_enc = ref_attention_enc,
};

const kernel_table *kernels_ref(void) { return &k_ref; }
