/* test_quant.c — block-quantized weights: the layouts (dequantize checked against an
 * independently written formula per type, over random block bytes), quantize → dequantize
 * error bounds, the activation quantization and integer dot product, and parity of every CPU
 * kernel table (generic, AVX2, AVX-512; pools of 1, 2 and 3 threads) against ref for matmul
 * and embed with Q8_0, Q4_0, Q4_K and Q6_K weights over odd, tiny, empty and large shapes.
 * Also each ISA's integer inner loops called directly (quant_x byte-identical to quant_x_row,
 * matvec_q against quant_dot_q8x on raw random blocks), and the interleaved rope.
 *
 * Tolerances: the integer kernels differ from quant_dot_q8x (their definition) only by f32
 * summation order: ≤ k·ε·Σ|terms| as in test_kernels.c. Against the exact f32 reference they
 * also carry the activation rounding: |Σ w·(x − x̂)| ≤ Σ_blocks (d_x/2)·Σ|w| in that block. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "kernels/cpu/cpu_internal.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "testutil.h"

static const char *k_isas[] = {"generic", "avx2", "avx512"};
#define N_ISAS 3
static const int k_threads[] = {1, 2, 3};
#define N_POOLS 3
static wk_pool *g_pools[N_POOLS];
static wk_ctx g_ctxs[N_POOLS];
static const dtype k_qtypes[] = {DT_Q8_0, DT_Q4_0, DT_Q4_K, DT_Q6_K, DT_Q5_0};
#define N_QT 5

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}
static float frand(void) { return (float)((rnd() >> 40) * (1.0 / 8388608.0)) - 1.0f; }
static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

static int setup(void **state) {
    for (int i = 0; i < N_POOLS; i++) {
        if (!(g_pools[i] = pool_create(k_threads[i]))) return -1;
        g_ctxs[i].pool = g_pools[i];
    }
    return 0;
}
static int teardown(void **state) {
    for (int i = 0; i < N_POOLS; i++) pool_free(g_pools[i]);
    return 0;
}

static void test_sizes(void **state) {
    assert_int_equal(dtype_block_size(DT_Q8_0), 32);
    assert_int_equal(dtype_block_size(DT_Q4_K), 256);
    assert_int_equal(dtype_row_bytes(DT_Q8_0, 64), 68);
    assert_int_equal(dtype_row_bytes(DT_Q4_0, 32), 18);
    assert_int_equal(dtype_row_bytes(DT_Q4_K, 512), 288);
    assert_int_equal(dtype_row_bytes(DT_Q6_K, 256), 210);
    assert_int_equal(dtype_row_bytes(DT_Q6_K, 100), 0); /* not a whole number of blocks */
    assert_int_equal(dtype_row_bytes(DT_F16, 3), 6);
    assert_int_equal(dtype_size(DT_Q8_0), 0);
    assert_string_equal(dtype_name(DT_Q6_K), "Q6_K");
    assert_int_equal(dtype_parse("Q8_0"), -1); /* not a safetensors dtype */
    assert_true(dtype_is_quant(DT_Q4_0));
    assert_false(dtype_is_quant(DT_BF16));
}

/* ---- layouts: an independent formulation of each format's dequantization ---- */

static float h2f(const uint8_t *p) { return f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

/* Expected values of one block from its raw bytes, written from the format description in a
 * different order than kernels/ref/quant.c (byte-driven instead of element-driven). */
static void expect_block(dtype dt, const uint8_t *p, float *y) {
    if (dt == DT_Q8_0) {
        for (int i = 0; i < 32; i++) y[i] = h2f(p) * (int8_t)p[2 + i];
    } else if (dt == DT_Q4_0) {
        for (int i = 0; i < 16; i++) {
            y[i] = h2f(p) * ((p[2 + i] & 15) - 8);
            y[16 + i] = h2f(p) * ((p[2 + i] >> 4) - 8);
        }
    } else if (dt == DT_Q5_0) { /* byte k of qh holds the fifth bits of elements 8k..8k+7 */
        for (int i = 0; i < 16; i++) {
            const int h0 = (p[2 + i / 8] >> (i % 8)) & 1, h1 = (p[2 + 2 + i / 8] >> (i % 8)) & 1;
            y[i] = h2f(p) * (((p[6 + i] & 15) | h0 << 4) - 16);
            y[16 + i] = h2f(p) * (((p[6 + i] >> 4) | h1 << 4) - 16);
        }
    } else if (dt == DT_Q4_K) {
        const float d = h2f(p), dmin = h2f(p + 2);
        const uint8_t *s = p + 4, *q = p + 16;
        for (int c = 0; c < 4; c++) {          /* 4 chunks of 64 values, 32 bytes each */
            for (int half = 0; half < 2; half++) {
                int j = 2 * c + half, sc, m;
                if (j < 4) { sc = s[j] & 63; m = s[j + 4] & 63; }
                else { sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4); m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4); }
                for (int l = 0; l < 32; l++) {
                    int v = half ? q[32 * c + l] >> 4 : q[32 * c + l] & 15;
                    y[64 * c + 32 * half + l] = d * sc * v - dmin * m;
                }
            }
        }
    } else { /* Q6_K */
        const uint8_t *ql = p, *qh = p + 128;
        const int8_t *sc = (const int8_t *)(p + 192);
        const float d = h2f(p + 208);
        for (int n = 0; n < 2; n++) {
            for (int l = 0; l < 32; l++) {
                const uint8_t L0 = ql[64 * n + l], L1 = ql[64 * n + 32 + l], H = qh[32 * n + l];
                const int is = 8 * n + l / 16;
                y[128 * n + l] = d * sc[is] * (((L0 & 15) | ((H & 3) << 4)) - 32);
                y[128 * n + 32 + l] = d * sc[is + 2] * (((L1 & 15) | (((H >> 2) & 3) << 4)) - 32);
                y[128 * n + 64 + l] = d * sc[is + 4] * (((L0 >> 4) | (((H >> 4) & 3) << 4)) - 32);
                y[128 * n + 96 + l] = d * sc[is + 6] * (((L1 >> 4) | (((H >> 6) & 3) << 4)) - 32);
            }
        }
    }
}

static void test_layouts(void **state) {
    for (int t = 0; t < N_QT; t++) {
        const dtype dt = k_qtypes[t];
        const int bs = dtype_block_size(dt);
        const size_t bb = dtype_block_bytes(dt);
        uint8_t raw[3 * 210];
        float got[3 * 256], want[256];
        for (int trial = 0; trial < 50; trial++) {
            for (size_t i = 0; i < sizeof raw; i++) raw[i] = (uint8_t)rnd();
            /* keep the f16 scales finite and small: exponent bits from a safe range */
            for (int b = 0; b < 3; b++) {
                uint8_t *blk = raw + b * bb;
                size_t off[2] = {0, 2};
                int nd = dt == DT_Q4_K ? 2 : 1;
                if (dt == DT_Q6_K) { off[0] = 208; }
                for (int k = 0; k < nd; k++) blk[off[k] + 1] = (uint8_t)(0x20 | (blk[off[k] + 1] & 0x83));
            }
            quant_dequantize_row(dt, got, raw, 3 * bs);
            for (int b = 0; b < 3; b++) {
                expect_block(dt, raw + b * bb, want);
                for (int i = 0; i < bs; i++)
                    if (got[b * bs + i] != want[i])
                        fail_msg("%s block %d element %d: got %g want %g", dtype_name(dt), b, i,
                                 got[b * bs + i], want[i]);
            }
        }
    }
}

/* ---- quantize → dequantize error ---- */

static void test_roundtrip_error(void **state) {
    /* RMS error relative to RMS(x) for uniform [-1,1) data: a b-bit uniform grid over the
     * block's range has error step/√12 with step ≈ 2/(2^b − 1); ratio ≈ 2/(2^b−1)/√12/0.577.
     * Bounds are 1.5x that (the K-quants also round their scales): Q8_0 8 bits → 0.0045,
     * Q4_0 4 bits (16 levels, one wasted) → 0.072, Q4_K 4 bits with fitted scale/min, Q6_K. */
    const double bound[N_QT] = {0.0045 * 1.5, 0.072 * 1.5, 0.0667 * 1.5, 0.0159 * 1.5,
                                0.0345 * 1.5 /* Q5_0: 5 bits, one level wasted */};
    const int64_t n = 256 * 64;
    float *x = xmalloc(n * 4), *y = xmalloc(n * 4);
    for (int64_t i = 0; i < n; i++) x[i] = frand();
    for (int t = 0; t < N_QT; t++) {
        const dtype dt = k_qtypes[t];
        void *q = xmalloc(dtype_row_bytes(dt, n));
        quant_quantize_row(dt, q, x, n);
        quant_dequantize_row(dt, y, q, n);
        double se = 0, sx = 0;
        for (int64_t i = 0; i < n; i++) {
            se += (double)(x[i] - y[i]) * (x[i] - y[i]);
            sx += (double)x[i] * x[i];
        }
        double rel = sqrt(se / sx);
        fprintf(stderr, "%s: relative RMS error %.5f (bound %.5f)\n", dtype_name(dt), rel, bound[t]);
        assert_true(rel < bound[t]);
        /* per-block maximum error for the plain round-to-nearest types */
        if (dt == DT_Q8_0 || dt == DT_Q4_0 || dt == DT_Q5_0) {
            const size_t bb = dtype_block_bytes(dt);
            for (int64_t b = 0; b < n / 32; b++) {
                const float d = fabsf(f16_to_f32(*(const uint16_t *)((char *)q + b * bb)));
                /* Q8_0 rounds with the stored d: ≤ d/2. Q4_0 maps the extreme to −8; its
                 * mirror image may clamp at +7: ≤ d·(8·(1 + 2⁻¹¹) − 7), the f16 rounding of d
                 * (relative ≤ 2⁻¹¹) stretching the extreme beyond 8 steps. */
                const float lim = dt == DT_Q8_0 ? d / 2
                                : dt == DT_Q4_0 ? d * (1.0f + 8.0f / 2048.0f)
                                                : d * (1.0f + 16.0f / 2048.0f); /* Q5_0: −16..15 */
                for (int i = 0; i < 32; i++)
                    if (fabsf(x[b * 32 + i] - y[b * 32 + i]) > lim * (1 + 1e-6f))
                        fail_msg("%s block %lld: error %g > %g", dtype_name(dt), (long long)b,
                                 fabsf(x[b * 32 + i] - y[b * 32 + i]), lim);
            }
        }
        free(q);
    }
    /* zeros and a constant block quantize without NaN */
    float z[256] = {0}, zz[256];
    for (int t = 0; t < N_QT; t++) {
        uint8_t q[210];
        quant_quantize_row(k_qtypes[t], q, z, dtype_block_size(k_qtypes[t]));
        quant_dequantize_row(k_qtypes[t], zz, q, dtype_block_size(k_qtypes[t]));
        for (int i = 0; i < dtype_block_size(k_qtypes[t]); i++) assert_true(zz[i] == 0.0f);
    }
    free(x);
    free(y);
}

/* ---- activation quantization and the integer dot ---- */

static void test_dot_definition(void **state) {
    const int64_t n = 512;
    float x[512], w[512], xd[512], wd[512];
    blk_q8x xq[512 / 32];
    for (int i = 0; i < n; i++) { x[i] = frand() * 3; w[i] = frand(); }
    quant_x_row(xq, x, n);
    for (int b = 0; b < n / 32; b++) {
        int s0 = 0, s1 = 0;
        for (int i = 0; i < 32; i++) {
            xd[b * 32 + i] = xq[b].d * xq[b].qs[i];
            assert_true(fabsf(xd[b * 32 + i] - x[b * 32 + i]) <= xq[b].d / 2 * (1 + 1e-6f));
            if (i < 16) s0 += xq[b].qs[i]; else s1 += xq[b].qs[i];
        }
        assert_int_equal(s0, xq[b].sum[0]);
        assert_int_equal(s1, xq[b].sum[1]);
    }
    for (int t = 0; t < N_QT; t++) {
        uint8_t q[2 * 288];
        quant_quantize_row(k_qtypes[t], q, w, n);
        quant_dequantize_row(k_qtypes[t], wd, q, n);
        double exact = 0, mag = 0;
        for (int i = 0; i < n; i++) { exact += (double)wd[i] * xd[i]; mag += fabs((double)wd[i] * xd[i]); }
        float got = quant_dot_q8x(k_qtypes[t], q, xq, n);
        assert_true(fabs(got - exact) <= 64 * FLT_EPSILON * mag);
    }
}

/* ---- CPU tables against ref ---- */

static void quant_matmul_case(dtype dt, int64_t rows, int64_t cols, int n, int with_bias) {
    const size_t rb = dtype_row_bytes(dt, cols);
    float *wf = xmalloc((size_t)(rows * cols) * 4);
    for (int64_t i = 0; i < rows * cols; i++) wf[i] = frand();
    uint8_t *wq = xmalloc(rb * (size_t)rows);
    for (int64_t r = 0; r < rows; r++) quant_quantize_row(dt, wq + r * rb, wf + r * cols, cols);
    wk_weight W = {.data = wq, .dt = dt, .rows = rows, .cols = cols};
    float *x = xmalloc((size_t)(n * cols) * 4), *bias = xmalloc((size_t)rows * 4 + 4);
    for (int64_t i = 0; i < n * cols; i++) x[i] = frand() * 2;
    for (int64_t i = 0; i < rows; i++) bias[i] = frand();
    const float *b = with_bias ? bias : NULL;
    float *want = xmalloc((size_t)(n * rows) * 4), *got = xmalloc((size_t)(n * rows) * 4);
    float *qdef = xmalloc((size_t)(n * rows) * 4), *tq = xmalloc((size_t)(n * rows) * 4);
    float *tf = xmalloc((size_t)(n * rows) * 4), *wrow = xmalloc((size_t)cols * 4);
    blk_q8x *xq = xmalloc((size_t)(n * cols / 32) * sizeof(blk_q8x));
    for (int i = 0; i < n; i++) quant_x_row(xq + i * cols / 32, x + i * cols, cols);
    kernels_ref()->matmul(NULL, want, x, &W, b, n);
    for (int64_t r = 0; r < rows; r++) {
        kernels_row_to_f32(wrow, &W, r);
        for (int i = 0; i < n; i++) {
            const blk_q8x *xi = xq + i * cols / 32;
            double mag = 0, act = 0;
            for (int64_t c = 0; c < cols; c++) {
                mag += fabs((double)x[i * cols + c] * wrow[c]);
                act += xi[c / 32].d / 2 * fabs((double)wrow[c]);
            }
            const double k = fmin((double)(cols + 1), 8.0 * sqrt((double)(cols + 1)));
            const float y0 = quant_dot_q8x(dt, wq + r * rb, xi, cols) + (b ? b[r] : 0.0f);
            qdef[i * rows + r] = y0;
            tq[i * rows + r] = (float)(k * FLT_EPSILON * (mag + act) + FLT_EPSILON * fabs(y0) * 2);
            tf[i * rows + r] = (float)(act + 2 * k * FLT_EPSILON * mag + FLT_EPSILON * fabs(y0) * 2);
        }
    }
    __builtin_cpu_init();
    const int gemmq_on = !(getenv("WICK_CPU_GEMMQ") && strcmp(getenv("WICK_CPU_GEMMQ"), "0") == 0);
    const int vnni = __builtin_cpu_supports("avx512vnni") && gemmq_on;
    for (int ti = 0; ti < N_ISAS; ti++) {
        const kernel_table *T = kernels_cpu_variant(k_isas[ti]);
        if (!T) continue;
        /* and with the table's packed layout, where it has one for this type */
        size_t pk_bytes = 0;
        void *pk = T->pack_weight ? T->pack_weight(NULL, &W, &pk_bytes) : NULL;
        for (int pi = 0; pi < N_POOLS * (pk ? 2 : 1); pi++) {
            for (long i = 0; i < (long)n * rows; i++) got[i] = NAN;
            wk_weight Wp = W;
            if (pi >= N_POOLS) Wp.packed = pk;
            T->matmul(&g_ctxs[pi % N_POOLS], got, x, &Wp, b, n);
            for (long i = 0; i < (long)n * rows; i++) {
                /* every result is within the activation-rounding bound of exact f32 */
                double df = fabs((double)got[i] - want[i]);
                if (!(df <= tf[i]))
                    fail_msg("%s %s %d thr [%lld x %lld] n=%d elem %ld: got %.9g f32 ref %.9g (|d| %.3g > %.3g)",
                             T->name, dtype_name(dt), k_threads[pi % N_POOLS], (long long)rows,
                             (long long)cols, n, i, got[i], want[i], df, tf[i]);
                /* decode-sized batches take the integer path, and so do prefill batches of
                   every type on AVX-512 VNNI and all but Q8_0 on AVX2 (gemm_q):
                   match its definition tightly */
                /* (the avx512 table uses the AVX2 GEMM where VNNI is missing) */
                const bool a5 = strcmp(k_isas[ti], "avx512") == 0, a2 = strcmp(k_isas[ti], "avx2") == 0;
                const bool a2_type = dt != DT_Q8_0;
                if (n <= 8 || (vnni && a5) ||
                    (gemmq_on && (a2 || a5) && a2_type && (n >= 16 || (a5 && vnni)))) {
                    double dq = fabs((double)got[i] - qdef[i]);
                    if (!(dq <= tq[i]))
                        fail_msg("%s %s %d thr [%lld x %lld] n=%d elem %ld: got %.9g q8 def %.9g (|d| %.3g > %.3g)",
                                 T->name, dtype_name(dt), k_threads[pi % N_POOLS], (long long)rows,
                                 (long long)cols, n, i, got[i], qdef[i], dq, tq[i]);
                }
            }
        }
        if (pk) T->buf_free(NULL, pk, pk_bytes);
    }
    free(wf); free(wq); free(x); free(bias); free(want); free(got); free(qdef); free(tq);
    free(tf); free(wrow); free(xq);
}

/* Precision fast (WK_CTX_FAST) on the AVX-512 table where cpu_fast_rounds_x says so (AMX-BF16,
 * prefill-sized n): the weights are dequantized with the reference formulas and rounded to
 * bf16, and so are the activations; the result must be the reference product of those rounded
 * matrices (a BF16 weight of the rounded values), up to summation order — with and without the
 * packed layout (whose rows are dequantized from the panels). Elsewhere fast runs the exact
 * paths test_quant_matmul checks. */
static void quant_matmul_fast_case(dtype dt, int64_t rows, int64_t cols, int n) {
    const kernel_table *T = kernels_cpu_variant("avx512");
    if (!T || !cpu_fast_rounds_x(dt, cols, n)) {
        printf("(fast %s [%lld x %lld] n=%d: no rounding path on this CPU, skipped)\n",
               dtype_name(dt), (long long)rows, (long long)cols, n);
        return;
    }
    const size_t rb = dtype_row_bytes(dt, cols);
    float *wf = xmalloc((size_t)(rows * cols) * 4);
    for (int64_t i = 0; i < rows * cols; i++) wf[i] = frand();
    uint8_t *wq = xmalloc(rb * (size_t)rows);
    for (int64_t r = 0; r < rows; r++) quant_quantize_row(dt, wq + r * rb, wf + r * cols, cols);
    wk_weight W = {.data = wq, .dt = dt, .rows = rows, .cols = cols};
    uint16_t *wh = xmalloc((size_t)(rows * cols) * 2);
    float *wrow = xmalloc((size_t)cols * 4);
    for (int64_t r = 0; r < rows; r++) {
        kernels_row_to_f32(wrow, &W, r);
        for (int64_t c = 0; c < cols; c++) wh[r * cols + c] = f32_to_bf16(wrow[c]);
    }
    const wk_weight Wh = {.data = wh, .dt = DT_BF16, .rows = rows, .cols = cols};
    float *x = xmalloc((size_t)(n * cols) * 4), *xr = xmalloc((size_t)(n * cols) * 4);
    float *bias = xmalloc((size_t)rows * 4 + 4);
    for (int64_t i = 0; i < n * cols; i++) x[i] = frand() * 2, xr[i] = bf16_to_f32(f32_to_bf16(x[i]));
    for (int64_t i = 0; i < rows; i++) bias[i] = frand();
    float *want = xmalloc((size_t)(n * rows) * 4), *got = xmalloc((size_t)(n * rows) * 4);
    float *tol = xmalloc((size_t)(n * rows) * 4);
    kernels_ref()->matmul(NULL, want, xr, &Wh, bias, n);
    for (int64_t r = 0; r < rows; r++) {
        for (int i = 0; i < n; i++) {
            double mag = 0;
            for (int64_t c = 0; c < cols; c++)
                mag += fabs((double)xr[i * cols + c] * bf16_to_f32(wh[r * cols + c]));
            const double k = fmin((double)(cols + 1), 8.0 * sqrt((double)(cols + 1)));
            tol[i * rows + r] = (float)(k * FLT_EPSILON * mag + 2 * FLT_EPSILON * fabs(want[i * rows + r]));
        }
    }
    size_t pk_bytes = 0;
    void *pk = T->pack_weight ? T->pack_weight(NULL, &W, &pk_bytes) : NULL;
    for (int pi = 0; pi < N_POOLS * (pk ? 2 : 1); pi++) {
        wk_ctx fast = g_ctxs[pi % N_POOLS];
        fast.flags = WK_CTX_FAST;
        wk_weight Wp = W;
        if (pi >= N_POOLS) Wp.packed = pk;
        for (long i = 0; i < (long)n * rows; i++) got[i] = NAN;
        T->matmul(&fast, got, x, &Wp, bias, n);
        for (long i = 0; i < (long)n * rows; i++) {
            const double d = fabs((double)got[i] - want[i]);
            if (!(d <= tol[i]))
                fail_msg("fast %s %s %d thr [%lld x %lld] n=%d elem %ld: got %.9g want %.9g (|d| %.3g > %.3g)",
                         dtype_name(dt), pi >= N_POOLS ? "packed" : "file", k_threads[pi % N_POOLS],
                         (long long)rows, (long long)cols, n, i, got[i], want[i], d, tol[i]);
        }
    }
    if (pk) T->buf_free(NULL, pk, pk_bytes);
    free(wf), free(wq), free(wh), free(wrow), free(x), free(xr), free(bias), free(want), free(got), free(tol);
}

static void test_quant_matmul_fast(void **state) {
    (void)state;
    for (int t = 0; t < N_QT; t++) {
        const dtype dt = k_qtypes[t];
        const int64_t bs = dtype_block_size(dt);
        quant_matmul_fast_case(dt, 67, 4 * bs, 70);   /* row tail, 5 token blocks */
        quant_matmul_fast_case(dt, 300, 2 * bs, 64);  /* several row blocks per group */
    }
}

static void test_quant_matmul(void **state) {
    for (int t = 0; t < N_QT; t++) {
        const dtype dt = k_qtypes[t];
        const int64_t bs = dtype_block_size(dt);
        quant_matmul_case(dt, 0, bs, 1, 0);       /* empty */
        quant_matmul_case(dt, 5, bs, 0, 1);       /* no activation rows */
        quant_matmul_case(dt, 1, bs, 1, 0);       /* tiny */
        quant_matmul_case(dt, 3, 3 * bs, 2, 1);
        quant_matmul_case(dt, 17, 2 * bs, 3, 1);  /* odd rows, n not a tile size */
        quant_matmul_case(dt, 67, 5 * bs, 7, 0);
        quant_matmul_case(dt, 33, 4 * bs, 8, 1);
        quant_matmul_case(dt, 21, 2 * bs, 19, 1); /* prefill-sized (sgemm or gemm_q path) */
        quant_matmul_case(dt, 50, 3 * bs, 45, 0); /* several panels and row tiles, tails */
        quant_matmul_case(dt, 301, dt == DT_Q8_0 || dt == DT_Q4_0 ? 2048 : 1024, 1, 0); /* large */
        quant_matmul_case(dt, 5, 17408, 1, 1);    /* rows longer than the Q4_K decode kernel's stack arrays */
    }
}

static void test_quant_embed(void **state) {
    for (int t = 0; t < N_QT; t++) {
        const dtype dt = k_qtypes[t];
        const int64_t rows = 9, cols = 2 * dtype_block_size(dt);
        const size_t rb = dtype_row_bytes(dt, cols);
        float *wf = xmalloc((size_t)(rows * cols) * 4);
        for (int64_t i = 0; i < rows * cols; i++) wf[i] = frand();
        uint8_t *wq = xmalloc(rb * rows);
        for (int64_t r = 0; r < rows; r++) quant_quantize_row(dt, wq + r * rb, wf + r * cols, cols);
        wk_weight W = {.data = wq, .dt = dt, .rows = rows, .cols = cols};
        int32_t ids[5] = {8, 0, 3, 3, 7};
        float want[5 * 512], got[5 * 512];
        kernels_ref()->embed(NULL, want, &W, ids, 5);
        for (int ti = 0; ti < N_ISAS; ti++) {
            const kernel_table *T = kernels_cpu_variant(k_isas[ti]);
            for (int pi = 0; T && pi < N_POOLS; pi++) {
                T->embed(&g_ctxs[pi], got, &W, ids, 5);
                assert_memory_equal(got, want, sizeof(float) * 5 * cols);
            }
        }
        free(wf);
        free(wq);
    }
}

/* ---- each ISA's integer inner loops, called directly ----
 * The table test above goes through cpu.c; this one calls the cpu_isa entries themselves with
 * raw random block bytes (so Q8_0 weights include −128, Q6_K scales are negative, every
 * nibble value and 6-bit scale occurs, which quantize does not produce), every activation tile
 * count 1..8, activation and output strides larger than a row, and a subrange of rows. */

static const cpu_isa *isa_by_name(const char *name) {
    if (!kernels_cpu_variant(name)) return NULL; /* this CPU cannot run it */
    if (strcmp(name, "avx512") == 0) return &cpu_isa_avx512;
    if (strcmp(name, "avx2") == 0) return &cpu_isa_avx2;
    return &cpu_isa_generic;
}

/* Fills one block of dt with random bytes, its f16 scales finite and within 2^-7..2^1. */
static void random_block(dtype dt, uint8_t *blk) {
    const size_t bb = dtype_block_bytes(dt);
    for (size_t i = 0; i < bb; i++) blk[i] = (uint8_t)rnd();
    size_t off[2] = {0, 2};
    const int nd = dt == DT_Q4_K ? 2 : 1;
    if (dt == DT_Q6_K) off[0] = 208;
    for (int k = 0; k < nd; k++) {
        const uint16_t h = (uint16_t)((rnd() & 0x83ff) | ((8 + rnd() % 8) << 10));
        blk[off[k]] = (uint8_t)h;
        blk[off[k] + 1] = (uint8_t)(h >> 8);
    }
}

static void test_isa_quant_x(void **state) {
    const int64_t n = 32 * 41;
    float *x = xmalloc(n * 4);
    blk_q8x *want = xmalloc((n / 32) * sizeof(blk_q8x)), *got = xmalloc((n / 32) * sizeof(blk_q8x));
    for (int64_t b = 0; b < n / 32; b++) {
        const float scale = ldexpf(1.0f, (int)(rnd() % 24) - 12);
        for (int i = 0; i < 32; i++) x[b * 32 + i] = frand() * scale;
    }
    for (int i = 0; i < 32; i++) x[i] = 0.0f;                       /* all-zero block */
    for (int i = 0; i < 32; i++) x[32 + i] = (float)(i - 16) * 0.5f; /* exact .5 ties */
    x[64 + 5] = 1e30f;                                              /* one huge value */
    x[96 + 31] = -3.0f;                                             /* extreme last, negative */
    for (int ti = 0; ti < N_ISAS; ti++) {
        const cpu_isa *isa = isa_by_name(k_isas[ti]);
        if (!isa) continue;
        const int64_t lens[] = {0, 32, 64, 32 * 7, n};
        for (int k = 0; k < 5; k++) {
            memset(want, 0x5a, (n / 32) * sizeof(blk_q8x));
            memset(got, 0x5a, (n / 32) * sizeof(blk_q8x));
            quant_x_row(want, x, lens[k]);
            isa->quant_x(got, x, lens[k]);
            for (int64_t b = 0; b < n / 32; b++)
                if (memcmp(&got[b], &want[b], sizeof(blk_q8x)) != 0)
                    fail_msg("%s quant_x n=%lld: block %lld differs (d %g vs %g)", isa->name,
                             (long long)lens[k], (long long)b, got[b].d, want[b].d);
        }
    }
    free(x);
    free(want);
    free(got);
}

/* Σ of the magnitudes of the f32 terms quant_dot_q8x adds for one weight row: the summation
 * order bound is a multiple of ε times this. */
static double dot_magnitude(dtype dt, const uint8_t *row, const blk_q8x *xq, int64_t cols) {
    const int bs = dtype_block_size(dt);
    const size_t bb = dtype_block_bytes(dt);
    float w[256];
    double mag = 0;
    for (int64_t b = 0; b < cols / bs; b++) {
        const uint8_t *blk = row + b * bb;
        quant_dequantize_row(dt, w, blk, bs);
        for (int i = 0; i < bs; i++) {
            const blk_q8x *xb = &xq[(b * bs + i) / 32];
            const double xv = fabs((double)xb->d * xb->qs[i % 32]);
            if (dt == DT_Q4_K) { /* d·sc·q and dmin·m are summed separately */
                const blk_q4_k *k = (const blk_q4_k *)blk;
                int sc, m;
                quant_q4k_scale(k->scales, i / 32, &sc, &m);
                const int q = (i / 32) & 1 ? k->qs[32 * (i / 64) + i % 32] >> 4
                                            : k->qs[32 * (i / 64) + i % 32] & 15;
                mag += xv * (fabs((double)f16_to_f32(k->d) * sc * q) +
                             fabs((double)f16_to_f32(k->dmin) * m));
            } else {
                mag += xv * fabs((double)w[i]);
            }
        }
    }
    return mag;
}

static void test_isa_matvec_q(void **state) {
    const int64_t rows = 13, ldy = rows + 3;
    for (int t = 0; t < N_QT; t++) {
        const dtype dt = k_qtypes[t];
        const int64_t bs = dtype_block_size(dt), cols = (dt == DT_Q8_0 || dt == DT_Q4_0 ? 37 : 5) * bs;
        const size_t rb = dtype_row_bytes(dt, cols);
        const int64_t nbx = cols / 32, ldxq = nbx + 2;
        uint8_t *wq = xmalloc(rb * rows);
        for (int64_t b = 0; b < (int64_t)(rb * rows / dtype_block_bytes(dt)); b++)
            random_block(dt, wq + b * dtype_block_bytes(dt));
        float *x = xmalloc((size_t)cols * 4);
        blk_q8x *xq = xmalloc((size_t)(CPU_MV_NX * ldxq) * sizeof(blk_q8x));
        for (int i = 0; i < CPU_MV_NX; i++) {
            for (int64_t c = 0; c < cols; c++) x[c] = frand() * (float)(i + 1);
            quant_x_row(xq + i * ldxq, x, cols);
        }
        wk_weight W = {.data = wq, .dt = dt, .rows = rows, .cols = cols};
        float *y = xmalloc((size_t)(CPU_MV_NX * ldy) * 4);
        for (int ti = 0; ti < N_ISAS; ti++) {
            const cpu_isa *isa = isa_by_name(k_isas[ti]);
            if (!isa) continue;
            for (int nx = 1; nx <= CPU_MV_NX; nx++) {
                const int64_t r0 = 2, r1 = rows - 1;
                for (int64_t i = 0; i < CPU_MV_NX * ldy; i++) y[i] = -7.0f; /* sentinel */
                isa->matvec_q(y, ldy, xq, ldxq, nx, &W, r0, r1);
                for (int i = 0; i < CPU_MV_NX; i++)
                    for (int64_t r = 0; r < ldy; r++) {
                        const float got = y[i * ldy + r];
                        if (i >= nx || r < r0 || r >= r1) {
                            if (got != -7.0f)
                                fail_msg("%s %s nx=%d: wrote outside its range at (%d, %lld)",
                                         isa->name, dtype_name(dt), nx, i, (long long)r);
                            continue;
                        }
                        const uint8_t *row = wq + r * rb;
                        const float want = quant_dot_q8x(dt, row, xq + i * ldxq, cols);
                        const double tol = 2.0 * (double)(nbx + 8) * FLT_EPSILON *
                                           dot_magnitude(dt, row, xq + i * ldxq, cols);
                        if (!(fabs((double)got - want) <= tol))
                            fail_msg("%s %s nx=%d row %lld act %d: got %.9g def %.9g (tol %.3g)",
                                     isa->name, dtype_name(dt), nx, (long long)r, i, got, want, tol);
                    }
            }
        }
        free(wq);
        free(x);
        free(xq);
        free(y);
    }
}

/* The AVX-512 VNNI direct kernel (Q4_0/Q8_0, no repack) on its own: every activation count
   from 1 to 20 (several 8-row passes, tails), weight ranges that start inside a 16-row panel
   and end in a partial one, strided y and xq; untouched elsewhere. */
/* Random blocks of dt for a rows × cols matrix (*wq) and nx quantized activation rows of
   growing scale, ldxq blocks apart (*xq), for the kernel tests below. */
static void random_case(dtype dt, int64_t rows, int64_t cols, int nx, int64_t ldxq, uint8_t **wq,
                        blk_q8x **xq) {
    const size_t rb = dtype_row_bytes(dt, cols);
    *wq = xmalloc(rb * rows);
    for (int64_t b = 0; b < (int64_t)(rb * rows / dtype_block_bytes(dt)); b++)
        random_block(dt, *wq + b * dtype_block_bytes(dt));
    float *x = xmalloc((size_t)cols * 4);
    *xq = xmalloc((size_t)(nx * ldxq) * sizeof(blk_q8x));
    for (int i = 0; i < nx; i++) {
        for (int64_t c = 0; c < cols; c++) x[c] = frand() * (float)(i + 1);
        quant_x_row(*xq + i * ldxq, x, cols);
    }
    free(x);
}

static void test_a5_gemm_q_direct(void **state) {
    (void)state;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512vnni")) {
        print_message("skipped: no AVX-512 VNNI here\n");
        return;
    }
    const int NXMAX = 20;
    const int64_t rows = 53, ldy = rows + 5;
    const dtype types[2] = {DT_Q4_0, DT_Q8_0};
    for (int t = 0; t < 4; t++) { /* 9 blocks a row, and 37 */
        const dtype dt = types[t % 2];
        const int64_t cols = (t < 2 ? 9 : 37) * 32, nbx = cols / 32, ldxq = nbx + 1;
        const size_t rb = dtype_row_bytes(dt, cols);
        uint8_t *wq = NULL;
        blk_q8x *xq = NULL;
        random_case(dt, rows, cols, NXMAX, ldxq, &wq, &xq);
        wk_weight W = {.data = wq, .dt = dt, .rows = rows, .cols = cols};
        float *y = xmalloc((size_t)(NXMAX * ldy) * 4);
        const int64_t ranges[4][2] = {{0, rows}, {3, 20}, {17, 18}, {32, rows}};
        for (int ri = 0; ri < 4; ri++)
            for (int nx = 1; nx <= NXMAX; nx++) {
                const int64_t r0 = ranges[ri][0], r1 = ranges[ri][1];
                for (int64_t i = 0; i < NXMAX * ldy; i++) y[i] = -7.0f;
                cpu_a5_gemm_q_direct(y, ldy, xq, ldxq, nx, &W, r0, r1);
                for (int i = 0; i < NXMAX; i++)
                    for (int64_t r = 0; r < ldy; r++) {
                        const float got = y[i * ldy + r];
                        if (i >= nx || r < r0 || r >= r1) {
                            if (got != -7.0f)
                                fail_msg("direct %s nx=%d [%lld,%lld): wrote outside at (%d, %lld)",
                                         dtype_name(dt), nx, (long long)r0, (long long)r1, i, (long long)r);
                            continue;
                        }
                        const uint8_t *row = wq + r * rb;
                        const float want = quant_dot_q8x(dt, row, xq + i * ldxq, cols);
                        const double tol = 2.0 * (double)(nbx + 8) * FLT_EPSILON *
                                           dot_magnitude(dt, row, xq + i * ldxq, cols);
                        if (!(fabs((double)got - want) <= tol))
                            fail_msg("direct %s nx=%d row %lld act %d: got %.9g def %.9g (tol %.3g)",
                                     dtype_name(dt), nx, (long long)r, i, got, want, tol);
                    }
            }
        free(wq);
        free(xq);
        free(y);
    }
}

/* The packed layout (cpu_a5_pack_panel) gives the direct kernel's results bit for bit, for
   ranges of whole panels and a ragged end, rows of 9 and 37 blocks, and writes nothing outside
   [r0, r1) × nx. */
static void test_a5_gemm_q_packed(void **state) {
    (void)state;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512vnni")) {
        print_message("skipped: no AVX-512 VNNI here\n");
        return;
    }
    const int NXMAX = 35; /* two passes of 16 and a tail */
    const int64_t rows = 53, ldy = rows + 5;
    const dtype types[2] = {DT_Q4_0, DT_Q8_0};
    for (int t = 0; t < 4; t++) { /* 9 blocks a row, and 37 */
        const dtype dt = types[t % 2];
        const int64_t cols = (t < 2 ? 9 : 37) * 32, nbx = cols / 32, ldxq = nbx + 1;
        uint8_t *wq = NULL;
        blk_q8x *xq = NULL;
        random_case(dt, rows, cols, NXMAX, ldxq, &wq, &xq);
        wk_weight W = {.data = wq, .dt = dt, .rows = rows, .cols = cols};
        const size_t pb = cpu_a5_pack_panel_bytes(dt, cols);
        uint8_t *pk = aligned_alloc(64, pb * 4);
        memset(pk, 0, pb * 4);
        for (int p = 0; p < 4; p++) cpu_a5_pack_panel(pk + p * pb, &W, p);
        float *y = xmalloc((size_t)(NXMAX * ldy) * 4), *yd = xmalloc((size_t)(NXMAX * ldy) * 4);
        const int64_t ranges[4][2] = {{0, rows}, {16, 20}, {48, 49}, {32, rows}};
        for (int ri = 0; ri < 4; ri++)
            for (int nx = 1; nx <= NXMAX; nx++) {
                const int64_t r0 = ranges[ri][0], r1 = ranges[ri][1];
                for (int64_t i = 0; i < NXMAX * ldy; i++) y[i] = yd[i] = -7.0f;
                cpu_a5_gemm_q_packed(y, ldy, xq, ldxq, nx, &W, pk, r0, r1);
                cpu_a5_gemm_q_direct(yd, ldy, xq, ldxq, nx, &W, r0, r1);
                for (int i = 0; i < NXMAX; i++)
                    for (int64_t r = 0; r < ldy; r++) {
                        const float got = y[i * ldy + r];
                        if (i >= nx || r < r0 || r >= r1) {
                            if (got != -7.0f)
                                fail_msg("packed %s nx=%d [%lld,%lld): wrote outside at (%d, %lld)",
                                         dtype_name(dt), nx, (long long)r0, (long long)r1, i, (long long)r);
                            continue;
                        }
                        if (memcmp(&got, &yd[i * ldy + r], 4) != 0)
                            fail_msg("packed %s nx=%d row %lld act %d: %.9g, direct kernel %.9g",
                                     dtype_name(dt), nx, (long long)r, i, got, yd[i * ldy + r]);
                    }
            }
        free(wq), free(xq), free(y), free(yd), free(pk);
    }
}

/* A packed layout serves only the matrix it was made from: a struct copy whose data or shape
   changed (a merged matrix, an f32 copy, a view of some rows) gets the file layout's result. */
static void test_packed_stale(void **state) {
    (void)state;
    const kernel_table *T = kernels_cpu_variant("avx512");
    if (!T || !T->pack_weight) {
        print_message("skipped: no packed layout here\n");
        return;
    }
    const int64_t rows = 40, cols = 128;
    const size_t rb = dtype_row_bytes(DT_Q4_0, cols);
    uint8_t *a = xmalloc(rb * rows), *b = xmalloc(rb * rows);
    for (int64_t i = 0; i < (int64_t)(rb * rows / sizeof(blk_q4_0)); i++) {
        random_block(DT_Q4_0, a + i * sizeof(blk_q4_0));
        random_block(DT_Q4_0, b + i * sizeof(blk_q4_0));
    }
    float x[3 * 128], want[3 * 40], got[3 * 40];
    for (int i = 0; i < 3 * 128; i++) x[i] = frand();
    wk_weight W = {.data = a, .dt = DT_Q4_0, .rows = rows, .cols = cols};
    size_t bytes = 0;
    W.packed = T->pack_weight(NULL, &W, &bytes);
    if (!W.packed) {
        print_message("skipped: no VNNI here\n");
        free(a), free(b);
        return;
    }
    wk_weight other = W, plain = W;
    other.data = b, plain.data = b, plain.packed = NULL; /* replaced data */
    T->matmul(NULL, want, x, &plain, NULL, 3);
    T->matmul(NULL, got, x, &other, NULL, 3);
    assert_memory_equal(got, want, sizeof want);
    wk_weight view = W, vplain = W; /* the first 24 rows */
    view.rows = vplain.rows = 24, vplain.packed = NULL;
    T->matmul(NULL, want, x, &vplain, NULL, 3);
    T->matmul(NULL, got, x, &view, NULL, 3);
    assert_memory_equal(got, want, sizeof(float) * 3 * 24);
    T->buf_free(NULL, (void *)W.packed, bytes);
    free(a), free(b);
}

/* ---- interleaved rope ---- */

static void test_rope_interleaved(void **state) {
    const int n = 3, nh = 5, hd = 10, half = hd / 2;
    float x[3 * 5 * 10], perm[3 * 5 * 10], want[3 * 5 * 10], got[3 * 5 * 10];
    float cs[3 * 5], sn[3 * 5];
    const int32_t pos[3] = {0, 1, 2};
    for (int i = 0; i < n * nh * hd; i++) x[i] = frand();
    for (int i = 0; i < n * half; i++) { float a = frand() * 3; cs[i] = cosf(a); sn[i] = sinf(a); }
    /* the interleaved layout of a head is the rotate-half layout with rows permuted:
     * position 2j holds j, 2j+1 holds j+half (what llama.cpp's converter does to q/k) */
    for (int h = 0; h < n * nh; h++)
        for (int j = 0; j < half; j++) {
            perm[h * hd + 2 * j] = x[h * hd + j];
            perm[h * hd + 2 * j + 1] = x[h * hd + j + half];
        }
    memcpy(want, x, sizeof x);
    kernels_ref()->rope(NULL, want, n, nh, hd, hd, pos, cs, sn);
    memcpy(got, perm, sizeof x);
    kernels_ref()->rope_interleaved(NULL, got, n, nh, hd, hd, pos, cs, sn);
    for (int h = 0; h < n * nh; h++)
        for (int j = 0; j < half; j++) {
            assert_float_equal(got[h * hd + 2 * j], want[h * hd + j], 0);
            assert_float_equal(got[h * hd + 2 * j + 1], want[h * hd + j + half], 0);
        }
    float ref_il[3 * 5 * 10];
    memcpy(ref_il, got, sizeof got);
    for (int ti = 0; ti < N_ISAS; ti++) {
        const kernel_table *T = kernels_cpu_variant(k_isas[ti]);
        for (int pi = 0; T && pi < N_POOLS; pi++) {
            memcpy(got, perm, sizeof x);
            assert_non_null(T->rope_interleaved);
            T->rope_interleaved(&g_ctxs[pi], got, n, nh, hd, hd, pos, cs, sn);
            assert_memory_equal(got, ref_il, sizeof got);
            T->rope_interleaved(&g_ctxs[pi], got, 0, nh, hd, hd, pos, cs, sn); /* empty: no-op */
            assert_memory_equal(got, ref_il, sizeof got);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_layouts),
        cmocka_unit_test(test_roundtrip_error),
        cmocka_unit_test(test_dot_definition),
        cmocka_unit_test(test_quant_matmul),
        cmocka_unit_test(test_quant_matmul_fast),
        cmocka_unit_test(test_quant_embed),
        cmocka_unit_test(test_isa_quant_x),
        cmocka_unit_test(test_isa_matvec_q),
        cmocka_unit_test(test_a5_gemm_q_direct),
        cmocka_unit_test(test_a5_gemm_q_packed),
        cmocka_unit_test(test_packed_stale),
        cmocka_unit_test(test_rope_interleaved),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
