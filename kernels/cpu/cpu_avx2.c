/* cpu_avx2.c — AVX2 + FMA + F16C inner loops for the threaded CPU table (compiled with
 * -mavx2 -mfma -mf16c; only called after cpu.c has checked the CPU). Single-threaded, each on
 * a range; cpu.c does the threading. Leftover elements (< 8) go to the generic C loops of
 * cpu_generic.c, so scalar code exists once.
 *
 * Weights are widened in registers: bf16 by zero-extending to 32 bits and shifting left 16
 * (exact), f16 with vcvtph2ps (exact). Activations stay f32 throughout: no bf16 dot-product
 * instructions, which would round the activations. */
#include <immintrin.h>
#include <math.h>

#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/cpu_simd_exp.h"

#define AI static inline __attribute__((always_inline))

AI __m256 load_w(const void *base, int dt, int64_t i) {
    if (dt == DT_F32) return _mm256_loadu_ps((const float *)base + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)base + i));
    if (dt == DT_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

AI float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One weight row against NX activation rows, U vectors of 8 per step (NX, U, DT constant
 * after inlining, so each instantiation is a tight loop with NX*U accumulators). */
AI void mv_row(float *out, const float *x, int64_t ldx, const wk_weight *W, int64_t r,
               const int NX, const int U, const int DT) {
    const int64_t cols = W->cols;
    const void *base = (const char *)W->data + (size_t)(r * cols) * dtype_size((dtype)DT);
    __m256 acc[CPU_MV_NX][4];
    for (int i = 0; i < NX; i++)
        for (int u = 0; u < U; u++) acc[i][u] = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 8 * U <= cols; c += 8 * U) {
        for (int u = 0; u < U; u++) {
            __m256 w = load_w(base, DT, c + 8 * u);
            for (int i = 0; i < NX; i++)
                acc[i][u] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i * ldx + c + 8 * u), w, acc[i][u]);
        }
    }
    for (; c + 8 <= cols; c += 8) {
        __m256 w = load_w(base, DT, c);
        for (int i = 0; i < NX; i++)
            acc[i][0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i * ldx + c), w, acc[i][0]);
    }
    for (int i = 0; i < NX; i++) {
        for (int u = 1; u < U; u++) acc[i][0] = _mm256_add_ps(acc[i][0], acc[i][u]);
        out[i] = hsum(acc[i][0]);
    }
    if (c < cols) cpu_g_dot_w(out, x, ldx, NX, W, r, c, cols);
}

AI void mv_range(float *y, int64_t ldy, const float *x, int64_t ldx, const wk_weight *W,
                 int64_t r0, int64_t r1, const int NX, const int DT) {
    for (int64_t r = r0; r < r1; r++) {
        float out[CPU_MV_NX];
        mv_row(out, x, ldx, W, r, NX, NX <= 2 ? 4 : NX <= 4 ? 2 : 1, DT); /* ≤ 8 acc of 16 ymm */
        for (int i = 0; i < NX; i++) y[i * ldy + r] = out[i];
    }
}

#define MV_DT(NX)                                                                          \
    switch (W->dt) {                                                                       \
    case DT_F32: mv_range(y, ldy, x, ldx, W, r0, r1, NX, DT_F32); return;                  \
    case DT_BF16: mv_range(y, ldy, x, ldx, W, r0, r1, NX, DT_BF16); return;                \
    case DT_F16: mv_range(y, ldy, x, ldx, W, r0, r1, NX, DT_F16); return;                  \
    default: cpu_g_matvec(y, ldy, x, ldx, NX, W, r0, r1); return;                          \
    }

static void a2_matvec(float *y, int64_t ldy, const float *x, int64_t ldx, int nx,
                      const wk_weight *W, int64_t r0, int64_t r1) {
    switch (nx) {
    case 1: MV_DT(1)
    case 2: MV_DT(2)
    case 3: MV_DT(3)
    case 4: MV_DT(4)
    case 5: MV_DT(5)
    case 6: MV_DT(6)
    case 7: MV_DT(7)
    default: MV_DT(8)
    }
}

static void a2_row_to_f32(float *out, const wk_weight *W, int64_t r) {
    const int64_t cols = W->cols;
    const void *base = (const char *)W->data + (size_t)(r * cols) * dtype_size(W->dt);
    int64_t c = 0;
    if (W->dt == DT_BF16)
        for (; c + 8 <= cols; c += 8) _mm256_storeu_ps(out + c, load_w(base, DT_BF16, c));
    else if (W->dt == DT_F16)
        for (; c + 8 <= cols; c += 8) _mm256_storeu_ps(out + c, load_w(base, DT_F16, c));
    if (c == 0) { kernels_row_to_f32(out, W, r); return; } /* f32 (memcpy) or tiny rows */
    for (; c < cols; c++)
        out[c] = W->dt == DT_BF16 ? bf16_to_f32(((const uint16_t *)base)[c])
                                  : f16_to_f32(((const uint16_t *)base)[c]);
}

static float a2_dot(const float *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    return hsum(_mm256_add_ps(s0, s1)) + cpu_g_dot(a + i, b + i, n - i);
}

static void a2_axpy(float *y, float a, const float *x, int n) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    cpu_g_axpy(y + i, a, x + i, n - i);
}

static float a2_sumsq(const float *x, int n) { return a2_dot(x, x, n); }

static void a2_scale_mul(float *out, const float *x, const float *w, float inv, int n) {
    __m256 vi = _mm256_set1_ps(inv);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i,
                         _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), vi)));
    cpu_g_scale_mul(out + i, x + i, w + i, inv, n - i);
}

static void a2_rope_head(float *v, const float *c, const float *s, int half) {
    int j = 0;
    for (; j + 8 <= half; j += 8) {
        __m256 a = _mm256_loadu_ps(v + j), b = _mm256_loadu_ps(v + j + half);
        __m256 vc = _mm256_loadu_ps(c + j), vs = _mm256_loadu_ps(s + j);
        _mm256_storeu_ps(v + j, _mm256_sub_ps(_mm256_mul_ps(a, vc), _mm256_mul_ps(b, vs)));
        _mm256_storeu_ps(v + j + half, _mm256_add_ps(_mm256_mul_ps(b, vc), _mm256_mul_ps(a, vs)));
    }
    cpu_g_rope_pairs(v, c, s, j, half);
}

static void a2_silu_mul(float *out, const float *gate, const float *up, long n) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = exp256(_mm256_sub_ps(zero, g));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)),
                                                _mm256_loadu_ps(up + i)));
    }
    cpu_g_silu_mul(out + i, gate + i, up + i, n - i);
}

static void a2_add(float *y, const float *x, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    cpu_g_add(y + i, x + i, n - i);
}

static void a2_softmax(float *x, int n) {
    if (n <= 0) return;
    int i = 0;
    float m = x[0];
    if (n >= 8) {
        __m256 vm = _mm256_loadu_ps(x);
        for (i = 8; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(vm), _mm256_extractf128_ps(vm, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        m = _mm_cvtss_f32(h);
    }
    if (i < n) { float t = cpu_g_max(x + i, n - i); m = t > m ? t : m; }
    __m256 vm = _mm256_set1_ps(m), vs = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        vs = _mm256_add_ps(vs, e);
    }
    float sum = hsum(vs) + cpu_g_exp_sum(x + i, n - i, m);
    __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    cpu_g_scale(x + i, 1.0f / sum, n - i);
}

/* ---- tiled attention (attn_tile.h) ---- */
static inline float att_exp_sum16(float *s, float m) {
    const __m256 vm = _mm256_set1_ps(m);
    __m256 a = exp256(_mm256_sub_ps(_mm256_loadu_ps(s), vm));
    __m256 b = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + 8), vm));
    _mm256_storeu_ps(s, a);
    _mm256_storeu_ps(s + 8, b);
    return hsum(_mm256_add_ps(a, b));
}
#define ATT_ROW_TO_F32 a2_row_to_f32
#define ATT_FN a2_attn_block
#include "kernels/cpu/attn_tile.h"

/* glibc's libmvec (GLIBC_2.35): erff over 8 lanes, ≤ 4 ulp */
__m256 _ZGVdN8v_erff(__m256 x);

static void a2_gelu(float *x, long n) {
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f),
                 r2 = _mm256_set1_ps((float)M_SQRT1_2);
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 e = _ZGVdN8v_erff(_mm256_mul_ps(v, r2));
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, e)));
    }
    cpu_g_gelu(x + i, n - i);
}

#define ENC_ATTN_FN a2_enc_attn_item
#define ENC_SOFTMAX a2_softmax
#include "kernels/cpu/enc_attn.h"

/* As a5_f16_row (cpu_avx512.c): F16C's rounding is f32_to_f16's; NaN lanes go through it. */
static void a2_f16_row(uint16_t *dst, const float *x, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        int nan = _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        for (; nan; nan &= nan - 1) dst[i + __builtin_ctz((unsigned)nan)] = f32_to_f16(x[i + __builtin_ctz((unsigned)nan)]);
    }
    for (; i < n; i++) dst[i] = f32_to_f16(x[i]);
}

const cpu_isa cpu_isa_avx2 = {
    .name = "avx2",
    .matvec = a2_matvec,
    .row_to_f32 = a2_row_to_f32,
    .dot = a2_dot,
    .axpy = a2_axpy,
    .sumsq = a2_sumsq,
    .scale_mul = a2_scale_mul,
    .rope_head = a2_rope_head,
    .silu_mul = a2_silu_mul,
    .add = a2_add,
    .softmax = a2_softmax,
    .gelu = a2_gelu,
    .layernorm_row = cpu_g_layernorm_row,
    .enc_attn_item = a2_enc_attn_item,
    .quant_x = cpu_a2_quant_x, /* quant_avx2.c */
    .matvec_q = cpu_a2_matvec_q,
    .gemm_q = cpu_a2_gemm_q, /* gemmq_avx2.c */
    .gemm_q_supports = cpu_a2_gemm_q_supports,
    .gemm_q_scratch = cpu_a2_gemm_q_scratch,
    .attn_block = a2_attn_block,
    .f16_row = a2_f16_row,
};
