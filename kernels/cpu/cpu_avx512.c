/* cpu_avx512.c — AVX-512 (F/BW/VL/DQ) inner loops for the threaded CPU table; only called
 * after cpu.c has checked the CPU. Single-threaded, each on a range; cpu.c does the threading.
 * Tails use masked loads and stores (no scalar code), except where a generic helper already
 * does the job.
 *
 * Weights are widened in registers: bf16 by zero-extending to 32 bits and shifting left 16,
 * f16 with vcvtph2ps — both exact. vdpbf16ps is deliberately NOT used: it would round the f32
 * activations to bf16 and break parity with the reference. */
#include <immintrin.h>
#include <math.h>

#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/cpu_simd_exp.h"

#define AI static inline __attribute__((always_inline))

AI __mmask16 tail_mask(int64_t left) {
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
}

AI __m512 load_w(const void *base, int dt, int64_t i) {
    if (dt == DT_F32) return _mm512_loadu_ps((const float *)base + i);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)base + i));
    if (dt == DT_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

AI __m512 load_w_mask(const void *base, int dt, int64_t i, __mmask16 m) {
    if (dt == DT_F32) return _mm512_maskz_loadu_ps(m, (const float *)base + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)base + i);
    if (dt == DT_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

/* One weight row against NX activation rows, U vectors of 16 per step; NX, U, DT are
 * constants after inlining (NX*U ≤ 16 accumulators of the 32 zmm registers). */
AI void mv_row(float *out, const float *x, int64_t ldx, const wk_weight *W, int64_t r,
               const int NX, const int U, const int DT) {
    const int64_t cols = W->cols;
    const void *base = (const char *)W->data + (size_t)(r * cols) * dtype_size((dtype)DT);
    __m512 acc[CPU_MV_NX][4];
    for (int i = 0; i < NX; i++)
        for (int u = 0; u < U; u++) acc[i][u] = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 16 * U <= cols; c += 16 * U) {
        for (int u = 0; u < U; u++) {
            __m512 w = load_w(base, DT, c + 16 * u);
            for (int i = 0; i < NX; i++)
                acc[i][u] = _mm512_fmadd_ps(_mm512_loadu_ps(x + i * ldx + c + 16 * u), w, acc[i][u]);
        }
    }
    for (; c < cols; c += 16) {
        __mmask16 m = tail_mask(cols - c);
        __m512 w = load_w_mask(base, DT, c, m);
        for (int i = 0; i < NX; i++)
            acc[i][0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i * ldx + c), w, acc[i][0]);
    }
    for (int i = 0; i < NX; i++) {
        for (int u = 1; u < U; u++) acc[i][0] = _mm512_add_ps(acc[i][0], acc[i][u]);
        out[i] = _mm512_reduce_add_ps(acc[i][0]);
    }
}

AI void mv_range(float *y, int64_t ldy, const float *x, int64_t ldx, const wk_weight *W,
                 int64_t r0, int64_t r1, const int NX, const int DT) {
    for (int64_t r = r0; r < r1; r++) {
        float out[CPU_MV_NX];
        mv_row(out, x, ldx, W, r, NX, NX <= 4 ? 4 : 2, DT);
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

static void a5_matvec(float *y, int64_t ldy, const float *x, int64_t ldx, int nx,
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

static void a5_row_to_f32(float *out, const wk_weight *W, int64_t r) {
    const int64_t cols = W->cols;
    if (W->dt != DT_BF16 && W->dt != DT_F16) { kernels_row_to_f32(out, W, r); return; }
    const void *base = (const uint16_t *)W->data + r * cols;
    for (int64_t c = 0; c < cols; c += 16) {
        __mmask16 m = tail_mask(cols - c);
        _mm512_mask_storeu_ps(out + c, m, load_w_mask(base, W->dt, c, m));
    }
}

static float a5_dot(const float *a, const float *b, int n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

static void a5_axpy(float *y, float a, const float *x, int n) {
    __m512 va = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i),
                                                        _mm512_maskz_loadu_ps(m, y + i)));
    }
}

static float a5_sumsq(const float *x, int n) { return a5_dot(x, x, n); }

static void a5_scale_mul(float *out, const float *x, const float *w, float inv, int n) {
    __m512 vi = _mm512_set1_ps(inv);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 t = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vi);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w + i), t));
    }
}

static void a5_rope_head(float *v, const float *c, const float *s, int half) {
    for (int j = 0; j < half; j += 16) {
        __mmask16 m = tail_mask(half - j);
        __m512 a = _mm512_maskz_loadu_ps(m, v + j), b = _mm512_maskz_loadu_ps(m, v + j + half);
        __m512 vc = _mm512_maskz_loadu_ps(m, c + j), vs = _mm512_maskz_loadu_ps(m, s + j);
        _mm512_mask_storeu_ps(v + j, m, _mm512_sub_ps(_mm512_mul_ps(a, vc), _mm512_mul_ps(b, vs)));
        _mm512_mask_storeu_ps(v + j + half, m,
                              _mm512_add_ps(_mm512_mul_ps(b, vc), _mm512_mul_ps(a, vs)));
    }
}

static void a5_silu_mul(float *out, const float *gate, const float *up, long n) {
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    for (long i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
        __m512 e = exp512(_mm512_sub_ps(zero, g));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)),
                                                        _mm512_maskz_loadu_ps(m, up + i)));
    }
}

static void a5_add(float *y, const float *x, long n) {
    for (long i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i),
                                                      _mm512_maskz_loadu_ps(m, x + i)));
    }
}

static void a5_softmax(float *x, int n) {
    if (n <= 0) return;
    __m512 vm = _mm512_set1_ps(x[0]);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        vm = _mm512_mask_max_ps(vm, m, vm, _mm512_maskz_loadu_ps(m, x + i));
    }
    const float mx = _mm512_reduce_max_ps(vm);
    vm = _mm512_set1_ps(mx);
    __m512 vs = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm));
        _mm512_mask_storeu_ps(x + i, m, e);
        vs = _mm512_mask_add_ps(vs, m, vs, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vs));
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
    }
}

const cpu_isa cpu_isa_avx512 = {
    .name = "avx512",
    .matvec = a5_matvec,
    .row_to_f32 = a5_row_to_f32,
    .dot = a5_dot,
    .axpy = a5_axpy,
    .sumsq = a5_sumsq,
    .scale_mul = a5_scale_mul,
    .rope_head = a5_rope_head,
    .silu_mul = a5_silu_mul,
    .add = a5_add,
    .softmax = a5_softmax,
};
