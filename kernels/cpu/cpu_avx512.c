/* cpu_avx512.c — AVX-512 (F/BW/VL/DQ) inner loops for the threaded CPU table; only called
 * after cpu.c has checked the CPU. Single-threaded, each on a range; cpu.c does the threading.
 * Tails use masked loads and stores (no scalar code), except where a generic helper already
 * does the job.
 *
 * Weights are widened in registers: bf16 by zero-extending to 32 bits and shifting left 16,
 * f16 with vcvtph2ps — both exact. vdpbf16ps is deliberately NOT used: it would round the f32
 * activations to bf16 and break parity with the reference.
 *
 * Quantized weights: integer dot products of one 32-value block at a time in a ymm register,
 * unsigned weight bytes × signed activation bytes with vpdpbusd (AVX-512 VNNI, checked at run
 * time) or vpmaddubsw + vpmaddwd where VNNI is missing (no saturation is possible: every
 * product pair stays below 2·128·127 = 32512). Signed Q8_0 weights use |w| and move the sign
 * onto the activation; Q4_0/Q4_K/Q6_K nibbles are unsigned already and their zero points are
 * applied through the activation block sums. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/cpu_simd_exp.h"
#include "kernels/cpu/tp16_avx512.h"

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

/* vcvtps2ph rounds to nearest even like f32_to_f16, including overflow to inf and the
   subnormal range; only a NaN keeps (part of) its payload in hardware, so NaN lanes are
   redone by the scalar conversion. */
static void a5_f16_row(uint16_t *dst, const float *x, int n) {
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        _mm256_mask_storeu_epi16(dst + i, m, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __mmask16 nan = _mm512_mask_cmp_ps_mask(m, v, v, _CMP_UNORD_Q);
        for (; nan; nan &= (__mmask16)(nan - 1)) {
            const int j = i + __builtin_ctz(nan);
            dst[j] = f32_to_f16(x[j]);
        }
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

/* ---- quantized weights ---- */

static int g_vnni = -1; /* -1 unknown, then 0/1 */

AI __m256i dot_u8s8(__m256i acc, __m256i u, __m256i v, const int VNNI) {
    if (VNNI) return _mm256_dpbusd_epi32(acc, u, v);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, v), _mm256_set1_epi16(1)));
}

AI float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AI float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* Same bytes as quant_x_row: amax, d = amax/127, q = round-to-nearest-even(x·(1/d)). */
static void a5_quant_x(blk_q8x *dst, const float *x, int64_t n) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / QK; b++) {
        __m512 v0 = _mm512_loadu_ps(x + b * QK), v1 = _mm512_loadu_ps(x + b * QK + 16);
        __m512 a = _mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1));
        const float amax = _mm512_reduce_max_ps(a);
        const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid));
        __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
        blk_q8x *o = &dst[b];
        o->d = d;
        o->sum[0] = (int16_t)_mm512_reduce_add_epi32(q0);
        o->sum[1] = (int16_t)_mm512_reduce_add_epi32(q1);
        _mm_storeu_si128((__m128i *)o->qs, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(o->qs + 16), _mm512_cvtepi32_epi8(q1));
    }
}

AI __m256i load_x(const blk_q8x *b) { return _mm256_loadu_si256((const __m256i *)b->qs); }

/* One activation row (decode) of Q4_0/Q5_0/Q4_K/Q6_K: the shared kernels of quant_row1.h, with
 * vpdpbusd where the CPU has VNNI. */
#define ROW1_DOT(u, x, VNNI) dot_u8s8(_mm256_setzero_si256(), (u), (x), (VNNI))
#include "kernels/cpu/quant_row1.h"

AI void mvq_q4_k(float *out, const blk_q8x *xq, int64_t ldxq, const void *row, int64_t nb,
                 const int NX, const int VNNI) {
    const blk_q4_k *w = row;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[CPU_MV_NX], acc1[CPU_MV_NX]; /* acc1: odd sub-blocks where NX <= 2 (see mvq_blocks32) */
    float mins[CPU_MV_NX] = {0};
    for (int i = 0; i < NX; i++) acc[i] = acc1[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const float d = h2f(w[b].d), dmin = h2f(w[b].dmin);
        int sc[8], m[8];
        for (int j = 0; j < 8; j++) quant_q4k_scale(w[b].scales, j, &sc[j], &m[j]);
        for (int j2 = 0; j2 < 4; j2++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * j2));
            const __m256i lo = _mm256_and_si256(q, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            for (int i = 0; i < NX; i++) {
                const blk_q8x *x0 = xq + i * ldxq + 8 * b + 2 * j2, *x1 = x0 + 1;
                const __m256i p0 = dot_u8s8(_mm256_setzero_si256(), lo, load_x(x0), VNNI);
                const __m256i p1 = dot_u8s8(_mm256_setzero_si256(), hi, load_x(x1), VNNI);
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0),
                                         _mm256_set1_ps(d * (float)sc[2 * j2] * x0->d), acc[i]);
                const __m256 v1 = _mm256_cvtepi32_ps(p1);
                const __m256 s1 = _mm256_set1_ps(d * (float)sc[2 * j2 + 1] * x1->d);
                if (NX <= 2) acc1[i] = _mm256_fmadd_ps(v1, s1, acc1[i]);
                else acc[i] = _mm256_fmadd_ps(v1, s1, acc[i]);
                mins[i] += dmin * (x0->d * (float)(m[2 * j2] * (x0->sum[0] + x0->sum[1])) +
                                   x1->d * (float)(m[2 * j2 + 1] * (x1->sum[0] + x1->sum[1])));
            }
        }
    }
    for (int i = 0; i < NX; i++) out[i] = hsum256(_mm256_add_ps(acc[i], acc1[i])) - mins[i];
}

AI void mvq_q6_k(float *out, const blk_q8x *xq, int64_t ldxq, const void *row, int64_t nb,
                 const int NX, const int VNNI) {
    const blk_q6_k *w = row;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    __m256 acc[CPU_MV_NX];
    float corr[CPU_MV_NX] = {0};
    for (int i = 0; i < NX; i++) acc[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const float d = h2f(w[b].d);
        for (int j = 0; j < 8; j++) {
            const int h = j / 4, k = j % 4;
            const __m256i l = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h + 32 * (k & 1)));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h));
            const __m256i lo = k >= 2 ? _mm256_and_si256(_mm256_srli_epi16(l, 4), m4)
                                      : _mm256_and_si256(l, m4);
            const __m256i hb = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * k)), m2);
            const __m256i q = _mm256_or_si256(lo, _mm256_slli_epi16(hb, 4));
            const int s0 = w[b].scales[2 * j], s1 = w[b].scales[2 * j + 1];
            for (int i = 0; i < NX; i++) {
                const blk_q8x *xb = xq + i * ldxq + 8 * b + j;
                const __m256i p = dot_u8s8(_mm256_setzero_si256(), q, load_x(xb), VNNI);
                const float f = d * xb->d;
                const __m256 sv = _mm256_set_m128(_mm_set1_ps(f * (float)s1), _mm_set1_ps(f * (float)s0));
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sv, acc[i]);
                corr[i] += f * (float)(32 * (s0 * xb->sum[0] + s1 * xb->sum[1]));
            }
        }
    }
    for (int i = 0; i < NX; i++) out[i] = hsum256(acc[i]) - corr[i];
}


AI void mvq_range(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, const wk_weight *W,
                  int64_t r0, int64_t r1, const int NX, const int DT, const int VNNI) {
    const size_t rb = dtype_row_bytes((dtype)DT, W->cols);
    const int64_t nb = W->cols / dtype_block_size((dtype)DT);
    for (int64_t r = r0; r < r1; r++) {
        const void *row = (const char *)W->data + r * rb;
        float out[CPU_MV_NX];
        if (DT == DT_Q8_0 || DT == DT_Q4_0 || DT == DT_Q5_0) mvq_blocks32(out, xq, ldxq, row, nb, NX, VNNI, DT);
        else if (DT == DT_Q4_K) mvq_q4_k(out, xq, ldxq, row, nb, NX, VNNI);
        else mvq_q6_k(out, xq, ldxq, row, nb, NX, VNNI);
        for (int i = 0; i < NX; i++) y[i * ldy + r] = out[i];
    }
}

#define MVQ_DT(NX, VNNI)                                                                    \
    switch (W->dt) {                                                                        \
    case DT_Q8_0: mvq_range(y, ldy, xq, ldxq, W, r0, r1, NX, DT_Q8_0, VNNI); return;        \
    case DT_Q4_0: mvq_range(y, ldy, xq, ldxq, W, r0, r1, NX, DT_Q4_0, VNNI); return;        \
    case DT_Q5_0: mvq_range(y, ldy, xq, ldxq, W, r0, r1, NX, DT_Q5_0, VNNI); return;        \
    case DT_Q4_K: mvq_range(y, ldy, xq, ldxq, W, r0, r1, NX, DT_Q4_K, VNNI); return;        \
    case DT_Q6_K: mvq_range(y, ldy, xq, ldxq, W, r0, r1, NX, DT_Q6_K, VNNI); return;        \
    default: cpu_g_matvec_q(y, ldy, xq, ldxq, NX, W, r0, r1); return;                       \
    }

/* Row tiles of 1, 2, 4 and 8 activation rows; other counts are split into those. */
#define MVQ_NX(VNNI)                                                                        \
    while (nx > 0) {                                                                        \
        int t = nx >= 8 ? 8 : nx >= 4 ? 4 : nx >= 2 ? 2 : 1;                                \
        mvq_tile(y, ldy, xq, ldxq, t, W, r0, r1, VNNI);                                    \
        y += t * ldy;                                                                       \
        xq += t * ldxq;                                                                     \
        nx -= t;                                                                            \
    }

static void mvq_tile(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int nx,
                     const wk_weight *W, int64_t r0, int64_t r1, int vnni) {
    if (vnni) {
        switch (nx) {
        case 1: MVQ_DT(1, 1)
        case 2: MVQ_DT(2, 1)
        case 4: MVQ_DT(4, 1)
        default: MVQ_DT(8, 1)
        }
    } else {
        switch (nx) {
        case 1: MVQ_DT(1, 0)
        case 2: MVQ_DT(2, 0)
        case 4: MVQ_DT(4, 0)
        default: MVQ_DT(8, 0)
        }
    }
}

static void a5_matvec_q(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int nx,
                        const wk_weight *W, int64_t r0, int64_t r1) {
    int vnni = __atomic_load_n(&g_vnni, __ATOMIC_RELAXED);
    if (vnni < 0) { /* every thread that gets here computes and stores the same value */
        __builtin_cpu_init();
        vnni = __builtin_cpu_supports("avx512vnni") ? 1 : 0;
        __atomic_store_n(&g_vnni, vnni, __ATOMIC_RELAXED);
    }
    if (nx == 1 && (vnni ? row1_run(y, xq, W, r0, r1, 1) : row1_run(y, xq, W, r0, r1, 0))) return;
    /* Q6_K with several rows: the AVX2 kernel (group scales as vpmaddwd multipliers, zero
       point folded in as an integer) measured 1.5x faster than this file's float path */
    if (W->dt == DT_Q6_K) {
        cpu_a2_matvec_q(y, ldy, xq, ldxq, nx, W, r0, r1);
        return;
    }
    MVQ_NX(vnni)
}

/* ---- tiled attention (attn_tile.h) ---- */
static inline float att_exp_sum16(float *s, float m) {
    __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(s), _mm512_set1_ps(m)));
    _mm512_storeu_ps(s, e);
    return _mm512_reduce_add_ps(e);
}
/* Four query vectors' 16 scores in four registers across all of head_dim. */
static inline void att_scores(float s[][16], const float *const *qp, const float *Kt, int hd) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int d = 0; d < hd; d++) {
        const __m512 k = _mm512_load_ps(Kt + 16 * d);
        a0 = _mm512_fmadd_ps(_mm512_set1_ps(qp[0][d]), k, a0);
        a1 = _mm512_fmadd_ps(_mm512_set1_ps(qp[1][d]), k, a1);
        a2 = _mm512_fmadd_ps(_mm512_set1_ps(qp[2][d]), k, a2);
        a3 = _mm512_fmadd_ps(_mm512_set1_ps(qp[3][d]), k, a3);
    }
    _mm512_store_ps(s[0], a0), _mm512_store_ps(s[1], a1);
    _mm512_store_ps(s[2], a2), _mm512_store_ps(s[3], a3);
}
/* op[u][d0 + 16c ...] += ... for the 4 query vectors and W 16-wide pieces of d: 4·W
   independent FMA chains over the tile's keys (one piece at a time left 4 chains, which the
   FMA latency bounded: half of a decode step's attention time at 4k keys) */
AI void att_pv_w(float *const *op, const float *corr, float s[][16], const float *vj, int nk,
                 int hd, int d0, const int W) {
    __m512 a[4][4];
    for (int u = 0; u < 4; u++) {
        const __m512 cu = _mm512_set1_ps(corr[u]);
        for (int c = 0; c < W; c++) a[u][c] = _mm512_mul_ps(_mm512_loadu_ps(op[u] + d0 + 16 * c), cu);
    }
    for (int t = 0; t < nk; t++) {
        __m512 v[4];
        for (int c = 0; c < W; c++) v[c] = _mm512_loadu_ps(vj + (size_t)t * hd + d0 + 16 * c);
        for (int u = 0; u < 4; u++) {
            const __m512 p = _mm512_set1_ps(s[u][t]);
            for (int c = 0; c < W; c++) a[u][c] = _mm512_fmadd_ps(p, v[c], a[u][c]);
        }
    }
    for (int u = 0; u < 4; u++)
        for (int c = 0; c < W; c++) _mm512_storeu_ps(op[u] + d0 + 16 * c, a[u][c]);
}
static inline void att_pv(float *const *op, const float *corr, float s[][16], const float *vj,
                          int nk, int hd) {
    for (int d0 = 0; d0 < hd; d0 += 64) {
        switch ((hd - d0) / 16) {
        case 1: att_pv_w(op, corr, s, vj, nk, hd, d0, 1); break;
        case 2: att_pv_w(op, corr, s, vj, nk, hd, d0, 2); break;
        case 3: att_pv_w(op, corr, s, vj, nk, hd, d0, 3); break;
        default: att_pv_w(op, corr, s, vj, nk, hd, d0, 4); break;
        }
    }
}
/* Kt[d·16 + t] = K row t's element d as f32 (rows t >= nk zero), straight from the cache rows
   (F32 / F16 / BF16, hd % 16 == 0) through 16×16 register transposes; 0 for other element
   types, which take attn_tile.h's widening and scalar transpose. */
static inline int att_load_kt(float *Kt, const char *Kb, size_t row_bytes, dtype dt, int nk,
                              int hd) {
    if ((dt != DT_F32 && dt != DT_F16 && dt != DT_BF16) || hd % 16) return 0;
    for (int d0 = 0; d0 < hd; d0 += 16) {
        __m512i a[16];
        for (int t = 0; t < 16; t++) {
            const char *row = Kb + (size_t)t * row_bytes;
            a[t] = t >= nk ? _mm512_setzero_si512() : _mm512_castps_si512(load_w_mask(row, dt, d0, 0xFFFF));
        }
        tp16(a);
        for (int k = 0; k < 16; k++) _mm512_store_si512((void *)(Kt + 16 * (d0 + k)), a[k]);
    }
    return 1;
}
#define ATT_HAVE_KT
#define ATT_HAVE_HOOKS
#define ATT_ROW_TO_F32 a5_row_to_f32
#define ATT_FN a5_attn_block
#include "kernels/cpu/attn_tile.h"

/* glibc's libmvec (GLIBC_2.35): erff over 16 lanes, ≤ 4 ulp */
__m512 _ZGVeN16v_erff(__m512 x);

static void a5_gelu(float *x, long n) {
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f),
                 r2 = _mm512_set1_ps((float)M_SQRT1_2);
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        const __m512 e = _ZGVeN16v_erff(_mm512_mul_ps(v, r2));
        _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, e)));
    }
    cpu_g_gelu(x + i, n - i);
}

/* layernorm_row: the statistics in double, 8 lanes × 2 accumulators (a different order of
   double additions than ref's: the f32 results agree up to the final rounding); the output
   step is ref's f32 expression in its order (the compiler may fuse its last multiply-add,
   one rounding fewer than ref; test_kernels allows 2 ulp). */
static void a5_layernorm_row(float *x, const float *r, const float *w, const float *b, int d, float eps) {
    if (d % 16) {
        cpu_g_layernorm_row(x, r, w, b, d, eps);
        return;
    }
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    for (int j = 0; j < d; j += 16) {
        __m512 v = _mm512_loadu_ps(x + j);
        if (r) {
            v = _mm512_add_ps(v, _mm512_loadu_ps(r + j));
            _mm512_storeu_ps(x + j, v);
        }
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
    }
    const double mean = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)) / d;
    const __m512d vm = _mm512_set1_pd(mean);
    s0 = s1 = _mm512_setzero_pd();
    for (int j = 0; j < d; j += 16) {
        const __m512 v = _mm512_loadu_ps(x + j);
        const __m512d c0 = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), vm);
        const __m512d c1 = _mm512_sub_pd(
            _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))), vm);
        s0 = _mm512_add_pd(s0, _mm512_mul_pd(c0, c0));
        s1 = _mm512_add_pd(s1, _mm512_mul_pd(c1, c1));
    }
    const double var = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)) / d;
    const __m512 inv = _mm512_set1_ps((float)(1.0 / sqrt(var + (double)eps))),
                 m = _mm512_set1_ps((float)mean);
    for (int j = 0; j < d; j += 16) {
        const __m512 t = _mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + j), m), inv),
                                       _mm512_loadu_ps(w + j));
        _mm512_storeu_ps(x + j, _mm512_add_ps(t, _mm512_loadu_ps(b + j)));
    }
}

#define ENC_ATTN_FN a5_enc_attn_plain
#define ENC_SOFTMAX a5_softmax
#include "kernels/cpu/enc_attn.h"

/* attention_enc's item with explicit registers (the vectorizer kept enc_attn.h's 16-lane
   sums in 16 scalar registers), four query rows at a time so that every load of K and V
   feeds four rows: scores of 64 keys × 4 rows in 16 named accumulators sharing each K load,
   outputs of 32 values × 4 rows in 8 sharing each V load (one row at a time, the chains of
   two to four dependent FMAs left the FMA units idle half the time or more). Named
   accumulators: a loop over an array of them was spilled to the stack. head_dim % 16 == 0
   (BERT's 32 and 64), else the plain loops. Every sum in ref's order; in the text's last
   group, rows past its end compute on the group's first row again and are never stored.
   sc: 4·len16 floats. */
#define FMA4(c, k)                                                                              \
    c##0 = _mm512_fmadd_ps(b0, k, c##0), c##1 = _mm512_fmadd_ps(b1, k, c##1),                  \
    c##2 = _mm512_fmadd_ps(b2, k, c##2), c##3 = _mm512_fmadd_ps(b3, k, c##3)
static void a5_enc_attn_item(const cpu_enc_attn *a, int s, int h, long off, float *sc, float *kt) {
    const int len = a->lens[s], hd = a->head_dim, ld = a->n_head * hd;
    if (hd % 16) {
        a5_enc_attn_plain(a, s, h, off, sc, kt);
        return;
    }
    const int len16 = (len + 15) / 16 * 16;
    for (int e = 0; e < hd; e++)
        for (int j = len; j < len16; j++) kt[(size_t)e * len16 + j] = 0.0f;
    for (int j = 0; j < len; j++) {
        const float *kj = a->k + (off + j) * ld + h * hd;
        for (int e = 0; e < hd; e++) kt[(size_t)e * len16 + j] = kj[e];
    }
    const __m512 vscale = _mm512_set1_ps(a->scale);
    const float *vb = a->v + off * ld + h * hd;
    for (int i0 = 0; i0 < len; i0 += 4) {
        const int ni = len - i0 < 4 ? len - i0 : 4;
        const float *q0 = a->q + (off + i0) * ld + h * hd;
        const float *q1 = q0 + (ni > 1 ? ld : 0), *q2 = q0 + (ni > 2 ? 2 * ld : 0),
                    *q3 = q0 + (ni > 3 ? 3 * ld : 0);
        float *s0 = sc, *s1 = sc + len16, *s2 = sc + 2 * len16, *s3 = sc + 3 * len16;
        int j0 = 0;
        for (; j0 + 64 <= len16; j0 += 64) { /* 64 keys × 4 rows */
            __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
            __m512 c10 = c00, c11 = c00, c12 = c00, c13 = c00;
            __m512 c20 = c00, c21 = c00, c22 = c00, c23 = c00;
            __m512 c30 = c00, c31 = c00, c32 = c00, c33 = c00;
            for (int e = 0; e < hd; e++) {
                const float *kr = kt + (size_t)e * len16 + j0;
                const __m512 b0 = _mm512_set1_ps(q0[e]), b1 = _mm512_set1_ps(q1[e]),
                             b2 = _mm512_set1_ps(q2[e]), b3 = _mm512_set1_ps(q3[e]);
                const __m512 k0 = _mm512_loadu_ps(kr), k1 = _mm512_loadu_ps(kr + 16),
                             k2 = _mm512_loadu_ps(kr + 32), k3 = _mm512_loadu_ps(kr + 48);
                /* c<key vector><row> */
                FMA4(c0, k0);
                FMA4(c1, k1);
                FMA4(c2, k2);
                FMA4(c3, k3);
            }
#define ST4(k, c)                                                                               \
    _mm512_storeu_ps(s0 + j0 + 16 * k, _mm512_mul_ps(c##0, vscale)),                             \
    _mm512_storeu_ps(s1 + j0 + 16 * k, _mm512_mul_ps(c##1, vscale)),                             \
    _mm512_storeu_ps(s2 + j0 + 16 * k, _mm512_mul_ps(c##2, vscale)),                             \
    _mm512_storeu_ps(s3 + j0 + 16 * k, _mm512_mul_ps(c##3, vscale))
            ST4(0, c0);
            ST4(1, c1);
            ST4(2, c2);
            ST4(3, c3);
        }
        for (; j0 < len16; j0 += 16) { /* 16 keys × 4 rows */
            __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
            for (int e = 0; e < hd; e++) {
                const __m512 b0 = _mm512_set1_ps(q0[e]), b1 = _mm512_set1_ps(q1[e]),
                             b2 = _mm512_set1_ps(q2[e]), b3 = _mm512_set1_ps(q3[e]);
                const __m512 k0 = _mm512_loadu_ps(kt + (size_t)e * len16 + j0);
                FMA4(c0, k0);
            }
            ST4(0, c0);
#undef ST4
        }
        for (int r = 0; r < ni; r++) {
            float *sr = sc + (size_t)r * len16;
            if (a->rel_bias) {
                const int32_t *bk = a->rel_bucket + (a->max_tokens - 1 - (i0 + r)); /* j − i */
                for (int j = 0; j < len; j++) sr[j] += a->rel_bias[bk[j] * a->n_head + h];
            }
            a5_softmax(sr, len);
        }
        float *o0 = a->out + (off + i0) * ld + h * hd;
        int e0 = 0;
        for (; e0 + 32 <= hd; e0 += 32) { /* 32 outputs × 4 rows */
            __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
            __m512 c10 = c00, c11 = c00, c12 = c00, c13 = c00;
            for (int j = 0; j < len; j++) {
                const __m512 b0 = _mm512_set1_ps(s0[j]), b1 = _mm512_set1_ps(s1[j]),
                             b2 = _mm512_set1_ps(s2[j]), b3 = _mm512_set1_ps(s3[j]);
                const float *vj = vb + (size_t)j * ld + e0;
                const __m512 v0 = _mm512_loadu_ps(vj), v1 = _mm512_loadu_ps(vj + 16);
                FMA4(c0, v0);
                FMA4(c1, v1);
            }
            const __m512 r0[4] = {c00, c01, c02, c03}, r1[4] = {c10, c11, c12, c13};
            for (int r = 0; r < ni; r++) {
                _mm512_storeu_ps(o0 + (size_t)r * ld + e0, r0[r]);
                _mm512_storeu_ps(o0 + (size_t)r * ld + e0 + 16, r1[r]);
            }
        }
        for (; e0 < hd; e0 += 16) { /* 16 outputs × 4 rows */
            __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
            for (int j = 0; j < len; j++) {
                const __m512 b0 = _mm512_set1_ps(s0[j]), b1 = _mm512_set1_ps(s1[j]),
                             b2 = _mm512_set1_ps(s2[j]), b3 = _mm512_set1_ps(s3[j]);
                const __m512 v0 = _mm512_loadu_ps(vb + (size_t)j * ld + e0);
                FMA4(c0, v0);
            }
            const __m512 r0[4] = {c00, c01, c02, c03};
            for (int r = 0; r < ni; r++) _mm512_storeu_ps(o0 + (size_t)r * ld + e0, r0[r]);
        }
    }
}
#undef FMA4

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
    .gelu = a5_gelu,
    .layernorm_row = a5_layernorm_row,
    .enc_attn_item = a5_enc_attn_item,
    .quant_x = a5_quant_x,
    .matvec_q = a5_matvec_q,
    .gemm_q = cpu_a5_gemm_q,
    .gemm_q_supports = cpu_a5_gemm_q_supports,
    .gemm_q_scratch = cpu_a5_gemm_q_scratch,
    .attn_block = a5_attn_block,
    .f16_row = a5_f16_row,
};

/* ---- LoRA's second product ----
 * u[i·ldu + o] = Σ_k t[i·ldt + k] · B[o·r + k] for i < nx, o < n_out: the rank-r rows of B are
 * short (r = 4..64), so a dot product per output spent most of its time reducing one zmm
 * horizontally. Here 16 outputs at a time: their B rows (16 columns of them at a time, the
 * rest masked to zero) are transposed in registers so that zmm k holds column k of the 16
 * rows, and each activation row adds t[i][k] · that, k in order, into one zmm of 16 outputs. */
static inline void tp16x16_ps(__m512 *r) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    /* r[4q + j] lane 4L + m = row 4L + ... : now exchange the 128-bit lanes */
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
        t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xDD);
        t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
        t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xDD);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);
        r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
        r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xDD);
    }
}

/* 16 values of a LoRA matrix (f32, or bf16 widened exactly) under mask m. */
static inline __m512 lora_ld(const void *M, int bf16, int64_t i, __mmask16 m) {
    if (!bf16) return _mm512_maskz_loadu_ps(m, (const float *)M + i);
    const __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)M + i);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

void cpu_a5_lora_u(float *u, int64_t ldu, const float *t, int64_t ldt, int nx, const void *B,
                   int bf16, int64_t r, int64_t n_out) {
    const size_t es = bf16 ? 2 : 4;
    for (int64_t o = 0; o < n_out; o += 16) {
        const int no = n_out - o < 16 ? (int)(n_out - o) : 16;
        __m512 acc[8];
        for (int i = 0; i < nx; i++) acc[i] = _mm512_setzero_ps();
        for (int64_t k0 = 0; k0 < r; k0 += 16) {
            const int nk = r - k0 < 16 ? (int)(r - k0) : 16;
            const __mmask16 km = (__mmask16)((1u << nk) - 1u);
            __m512 c[16];
            /* the adapter's rows are cold in decode (every adapter's B read once a step) */
            for (int j = 0; j < 16; j++)
                _mm_prefetch((const char *)B + ((o + 64 + j) * r + k0) * es, _MM_HINT_T0);
            for (int j = 0; j < 16; j++)
                c[j] = j < no ? lora_ld(B, bf16, (o + j) * r + k0, km) : _mm512_setzero_ps();
            tp16x16_ps(c); /* c[k] lane j = B[o + j][k0 + k] */
            for (int i = 0; i < nx; i++)
                for (int k = 0; k < nk; k++)
                    acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(t[i * ldt + k0 + k]), c[k], acc[i]);
        }
        const __mmask16 om = (__mmask16)((1u << no) - 1u);
        for (int i = 0; i < nx; i++) _mm512_mask_storeu_ps(u + i * ldu + o, om, acc[i]);
    }
}

/* LoRA's first product: t[i·ldt + k] = Σ_c x[i·ldx + c] · A[k·in + c] for i < nx (<= 8), k < r.
 * A's rows are read one after another (one stream, prefetched 1 KB ahead: the adapter is cold
 * in decode) against the nx activation rows, which stay in L1/L2. */
void cpu_a5_lora_t(float *t, int64_t ldt, const float *x, int64_t ldx, int nx, const void *A,
                   int bf16, int64_t r, int64_t in) {
    const int64_t in16 = in / 16 * 16;
    const __mmask16 tm = (__mmask16)((1u << (in - in16)) - 1u);
    const size_t es = bf16 ? 2 : 4;
    for (int64_t k = 0; k < r; k++) {
        __m512 acc[8];
        for (int i = 0; i < nx; i++) acc[i] = _mm512_setzero_ps();
        for (int64_t c = 0; c < in16; c += 16) {
            _mm_prefetch((const char *)A + (k * in + c) * es + 1024, _MM_HINT_T0);
            const __m512 w = lora_ld(A, bf16, k * in + c, 0xFFFF);
            for (int i = 0; i < nx; i++) acc[i] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + i * ldx + c), acc[i]);
        }
        if (tm) {
            const __m512 w = lora_ld(A, bf16, k * in + in16, tm);
            for (int i = 0; i < nx; i++)
                acc[i] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(tm, x + i * ldx + in16), acc[i]);
        }
        for (int i = 0; i < nx; i++) t[i * ldt + k] = _mm512_reduce_add_ps(acc[i]);
    }
}
