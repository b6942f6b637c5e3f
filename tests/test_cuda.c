/* test_cuda.c — parity of every op of the CUDA kernel table (cuda:0) against the scalar
 * reference, with the shapes of test_kernels.c and test_quant.c: odd, tiny, empty and larger
 * shapes, every weight dtype (F32, BF16, F16, Q8_0, Q4_0, Q5_0, Q4_K, Q6_K), several spans
 * with scattered block tables, every KV element type, sliding windows and GQA; also the
 * table's buffers and its failure reporting (sync). The models on the GPU (goldens, engine
 * against the CPU) are in test_cuda_model.c.
 *
 * Tolerances are derived as in test_kernels.c (bounds for f32 evaluation in another order,
 * Higham). The CUDA matmul computes the exact f32 product of the dequantized weight with the
 * f32 activations for every dtype, so quantized weights get the f32 bound too — except Q4_0
 * and Q8_0 decode (n <= 8), which quantizes the activations to 8-bit blocks as the CPU tables
 * do: those are checked against quant_dot_q8x (unless WICK_CUDA_Q8X=0). Ops that compute each element with the reference's own operations (embed,
 * add, axpy, gather, both ropes, kv_store's conversions, softmax) must match bit for bit:
 * the CUDA build passes -fmad=false so nothing is fused behind the code's back.
 *
 * Without a CUDA build or a usable GPU the program prints a SKIP line and exits 0 (CI has no
 * GPU); with WICK_REQUIRE_CUDA=1 (scripts/cuda-check.sh) that is a failure instead. */
#include <float.h>
#include <math.h>

#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "testutil.h"

static const kernel_table *K; /* the CUDA table */
static wk_ctx C;              /* default stream */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}
static float frand(void) { return (float)((rnd() >> 40) * (1.0 / 8388608.0)) - 1.0f; }
static void fill(float *x, long n, float scale) {
    for (long i = 0; i < n; i++) x[i] = frand() * scale;
}
static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* ---- device buffers ---- */

static void synced(const char *what) {
    const wick_status st = K->sync(&C);
    if (st) fail_msg("%s: %s", what, wick_last_error());
}
static void *dput(const void *h, size_t bytes) {
    void *d = K->buf_alloc(&C, bytes);
    assert_non_null(d);
    K->buf_copy(&C, d, h, bytes);
    return d;
}
static void dget(void *h, const void *d, size_t bytes) { K->buf_copy(&C, h, d, bytes); }
static void dfree(void *d, size_t bytes) { K->buf_free(&C, d, bytes); }

/* W on the device in the table's layout (weight_upload), as model_device.c puts it there */
static wk_weight dweight(const wk_weight *W) {
    wk_weight D = *W;
    const size_t bytes = dtype_row_bytes(W->dt, W->cols) * (size_t)W->rows;
    void *d = K->buf_alloc(&C, bytes);
    assert_non_null(d);
    if (K->weight_upload) K->weight_upload(&C, d, W);
    else K->buf_copy(&C, d, W->data, bytes);
    D.data = d;
    return D;
}
static void dweight_free(wk_weight *D) {
    dfree((void *)D->data, dtype_row_bytes(D->dt, D->cols) * (size_t)D->rows);
}

static void check_close(const char *what, const float *got, const float *want, const float *tol,
                        long n) {
    for (long i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= tol[i])) /* also catches NaN */
            fail_msg("%s: element %ld: got %.9g want %.9g (|diff| %.3g > tol %.3g)", what, i,
                     got[i], want[i], d, tol[i]);
    }
}

static void check_equal(const char *what, const void *got, const void *want, size_t bytes) {
    const unsigned char *g = got, *w = want;
    for (size_t i = 0; i < bytes; i++)
        if (g[i] != w[i]) fail_msg("%s: byte %zu differs (%d vs %d)", what, i, g[i], w[i]);
}

/* ---- buffers and failure reporting ---- */

static void test_buffers(void **state) {
    assert_string_equal(K->name, "cuda:0");
    assert_false(kernels_is_host(K));
    /* zeroed, copies both ways and on the device */
    const size_t n = 3000;
    unsigned char *h = xmalloc(n), *back = xmalloc(n);
    unsigned char *d = K->buf_alloc(&C, n), *d2 = K->buf_alloc(&C, n);
    assert_non_null(d);
    assert_non_null(d2);
    dget(back, d, n);
    for (size_t i = 0; i < n; i++) assert_int_equal(back[i], 0);
    for (size_t i = 0; i < n; i++) h[i] = (unsigned char)rnd();
    K->buf_copy(&C, d, h, n);
    K->buf_copy(&C, d2 + 7, d + 3, n - 10);
    dget(back, d2, n);
    for (size_t i = 0; i < 7; i++) assert_int_equal(back[i], 0);
    check_equal("device copy", back + 7, h + 3, n - 10);
    synced("buffers");
    dfree(d, n), dfree(d2, n);
    free(h), free(back);
    /* a failed allocation is a NULL, not a pending failure */
    assert_null(K->buf_alloc(&C, (size_t)1 << 60));
    synced("after a failed allocation");
    /* a failure inside an op is reported by the next sync, with a message, once */
    float dummy[4] = {0};
    wk_kv_layer kv = {dummy, dummy, DT_F32, 16, 4, 64};
    const int32_t blk[1] = {0};
    const wk_span sp = {0, 1, 0, blk};
    K->attention(&C, dummy, dummy, &kv, &sp, 1, 1, 1, 2000, 0, 1.0f, 0.0f); /* head_dim > 1024 */
    assert_int_equal(K->sync(&C), WICK_ERR_UNSUPPORTED);
    assert_non_null(strstr(wick_last_error(), "head_dim"));
    synced("the sync after a reported failure");
}

/* ---- matmul ---- */

static void make_weight(wk_weight *W, void *buf, dtype dt, int64_t rows, int64_t cols) {
    *W = (wk_weight){buf, dt, rows, cols, NULL};
    if (dtype_is_quant(dt)) {
        const size_t rb = dtype_row_bytes(dt, cols);
        float *row = xmalloc(sizeof(float) * (size_t)cols);
        for (int64_t r = 0; r < rows; r++) {
            fill(row, cols, 1.0f);
            quant_quantize_row(dt, (char *)buf + r * rb, row, cols);
        }
        free(row);
        return;
    }
    for (int64_t i = 0; i < rows * cols; i++) {
        const float v = frand();
        if (dt == DT_F32) ((float *)buf)[i] = v;
        else if (dt == DT_BF16) ((uint16_t *)buf)[i] = f32_to_bf16(v);
        else ((uint16_t *)buf)[i] = f32_to_f16(v);
    }
}

/* Does the CUDA matmul take the 8-bit activation path for (dt, n)? (cuda_matmul.cu) */
static bool q8x_path(dtype dt, int n) {
    const char *v = getenv("WICK_CUDA_Q8X"), *m = getenv("WICK_CUDA_QMV");
    return (dt == DT_Q4_0 || dt == DT_Q8_0 || dt == DT_Q4_K || dt == DT_Q6_K) && n >= 1 &&
           n <= 8 && !(v && !strcmp(v, "0")) && !(m && !strcmp(m, "0"));
}

/* Σ |terms| of quant_dot_q8x(W row, xb) over the row's n values (its f32 additions add terms
 * of at most these magnitudes): per 32-value activation block, |d_x|·Σ_j |w_j·q_x,j| with w_j
 * the weight's value (Q4_K: its two parts d·sc·q and dmin·m counted apart). */
static double q8x_terms(const wk_weight *W, const uint8_t *row, const blk_q8x *xb) {
    const int64_t nb = W->cols / QK;
    double T = 0;
    for (int64_t b = 0; b < nb; b++) {
        double a = 0;
        if (W->dt == DT_Q4_0) {
            const blk_q4_0 *w = (const blk_q4_0 *)row + b;
            const double d = fabs((double)f16_to_f32(w->d));
            for (int j = 0; j < QK / 2; j++)
                a += d * (abs(((w->qs[j] & 0xF) - 8) * xb[b].qs[j]) +
                          abs(((w->qs[j] >> 4) - 8) * xb[b].qs[j + QK / 2]));
        } else if (W->dt == DT_Q8_0) {
            const blk_q8_0 *w = (const blk_q8_0 *)row + b;
            for (int j = 0; j < QK; j++) a += fabs((double)f16_to_f32(w->d)) * abs(w->qs[j] * xb[b].qs[j]);
        } else if (W->dt == DT_Q4_K) {
            const blk_q4_k *w = (const blk_q4_k *)row + b / 8;
            const int j = (int)(b % 8);
            int sc, m;
            quant_q4k_scale(w->scales, j, &sc, &m);
            const uint8_t *q = w->qs + 32 * (j / 2);
            const double d = fabs((double)f16_to_f32(w->d)), dm = fabs((double)f16_to_f32(w->dmin));
            for (int l = 0; l < QK; l++)
                a += (d * sc * ((j & 1) ? q[l] >> 4 : q[l] & 0xF) + dm * m) * abs(xb[b].qs[l]);
        } else { /* Q6_K */
            const blk_q6_k *w = (const blk_q6_k *)row + b / 8;
            const double d = fabs((double)f16_to_f32(w->d));
            for (int l = 0; l < QK; l++) {
                const int e = 32 * (int)(b % 8) + l, h = e / 128, i = e % 128, ll = i % 32, k = i / 32;
                const uint8_t ql = w->ql[64 * h + ll + 32 * (k & 1)];
                const int q = (k >= 2 ? ql >> 4 : ql & 0xF) | (((w->qh[32 * h + ll] >> (2 * k)) & 3) << 4);
                a += d * abs(w->scales[e / 16] * (q - 32) * xb[b].qs[l]);
            }
        }
        T += a * fabs((double)xb[b].d);
    }
    return T;
}

/* want = quant_dot_q8x(W row r, x row i quantized) + bias, and its tolerance: the GPU adds
 * the row's partial sums (a few a block) in another order — at most 4 + 2 terms a 32-value
 * block whose magnitudes add to at most q8x_terms (T) — plus the bias add. */
static void q8x_reference(float *want, float *tol, const wk_weight *W, const float *x,
                          const float *bias, int n) {
    const int64_t cols = W->cols, nb = cols / QK;
    const size_t rb = dtype_row_bytes(W->dt, cols);
    blk_q8x *xq = xmalloc(sizeof(blk_q8x) * (size_t)(n * nb));
    for (int i = 0; i < n; i++) quant_x_row(xq + i * nb, x + i * cols, cols);
    const double k = fmin((double)(6 * nb + 2), 8.0 * sqrt((double)(6 * nb + 2)));
    for (int64_t r = 0; r < W->rows; r++) {
        const uint8_t *row = (const uint8_t *)W->data + r * rb;
        for (int i = 0; i < n; i++) {
            const blk_q8x *xb = xq + i * nb;
            float y = quant_dot_q8x(W->dt, row, xb, cols);
            const double T = q8x_terms(W, row, xb);
            if (bias) y = y + bias[r];
            want[i * W->rows + r] = y;
            tol[i * W->rows + r] = (float)(k * FLT_EPSILON * T + FLT_EPSILON * fabs(y) + 1e-30);
        }
    }
    free(xq);
}

static void matmul_case(int64_t rows, int64_t cols, int n, dtype dt, int with_bias) {
    const size_t wbytes = dtype_is_quant(dt) ? dtype_row_bytes(dt, cols) * (size_t)rows
                                             : (size_t)(rows * cols) * 4;
    void *wbuf = xmalloc(wbytes);
    wk_weight W;
    make_weight(&W, wbuf, dt, rows, cols);
    float *x = xmalloc((size_t)(n * cols) * 4), *bias = xmalloc((size_t)rows * 4 + 4);
    fill(x, n * cols, dtype_is_quant(dt) ? 2.0f : 1.0f);
    fill(bias, rows, 1.0f);
    float *want = xmalloc((size_t)(n * rows) * 4), *got = xmalloc((size_t)(n * rows) * 4);
    float *tol = xmalloc((size_t)(n * rows) * 4), *wrow = xmalloc((size_t)cols * 4 + 4);
    kernels_ref()->matmul(NULL, want, x, &W, with_bias ? bias : NULL, n);
    /* two summation orders differ by ≤ min(cols+1, 8·√(cols+1))·ε·Σ|x·w| (the worst case, and
       Higham & Mary's probabilistic bound with λ = 8), plus ε·|y| for the bias add */
    for (int64_t r = 0; r < rows; r++) {
        kernels_row_to_f32(wrow, &W, r);
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int64_t c = 0; c < cols; c++) s += fabs((double)x[i * cols + c] * wrow[c]);
            const double k = fmin((double)(cols + 1), 8.0 * sqrt((double)(cols + 1)));
            tol[i * rows + r] = (float)(k * FLT_EPSILON * s + FLT_EPSILON * fabs(want[i * rows + r]) + 1e-30);
        }
    }
    if (q8x_path(dt, n) && cols > 0) q8x_reference(want, tol, &W, x, with_bias ? bias : NULL, n);
    wk_weight D = dweight(&W);
    float *dx = dput(x, (size_t)(n * cols) * 4), *db = dput(bias, (size_t)rows * 4);
    float *dy = K->buf_alloc(&C, (size_t)(n * rows) * 4);
    assert_non_null(dy);
    for (long i = 0; i < n * rows; i++) got[i] = NAN;
    K->buf_copy(&C, dy, got, (size_t)(n * rows) * 4);
    K->matmul(&C, dy, dx, &D, with_bias ? db : NULL, n);
    dget(got, dy, (size_t)(n * rows) * 4);
    char what[128];
    snprintf(what, sizeof what, "matmul %s rows=%ld cols=%ld n=%d bias=%d", dtype_name(dt),
             (long)rows, (long)cols, n, with_bias);
    synced(what);
    check_close(what, got, want, tol, n * rows);
    dweight_free(&D);
    dfree(dx, (size_t)(n * cols) * 4), dfree(db, (size_t)rows * 4), dfree(dy, (size_t)(n * rows) * 4);
    free(wbuf), free(x), free(bias), free(want), free(got), free(tol), free(wrow);
}

static void test_matmul(void **state) {
    static const int64_t rows[] = {1, 7, 33, 257};
    static const int64_t cols[] = {1, 5, 64, 67, 896};
    static const int ns[] = {0, 1, 3, 7, 13, 17, 64}; /* up to 8: matvec; above: cuBLAS */
    static const dtype dts[] = {DT_F32, DT_BF16, DT_F16};
    int k = 0;
    for (int d = 0; d < 3; d++)
        for (int a = 0; a < 4; a++)
            for (int c = 0; c < 5; c++)
                for (int i = 0; i < 7; i++) matmul_case(rows[a], cols[c], ns[i], dts[d], k++ & 1);
    for (int d = 0; d < 3; d++) { /* no rows; no columns (y = bias) */
        matmul_case(0, 16, 3, dts[d], 1);
        matmul_case(9, 0, 3, dts[d], 1);
        matmul_case(9, 0, 20, dts[d], 1);
        matmul_case(9, 0, 2, dts[d], 0);
    }
    matmul_case(300, 1000, 6, DT_BF16, 1);
    matmul_case(64, 4864, 2, DT_F16, 0);
    matmul_case(64, 4864, 9, DT_F16, 1);
    /* 2 and 4 warps a row (mv_lanes: 2048+ and 4096+ values), with ragged row counts */
    matmul_case(33, 2048, 3, DT_BF16, 1);
    matmul_case(7, 2056, 8, DT_F32, 0);
    matmul_case(17, 4096, 1, DT_F32, 1);
    matmul_case(9, 8960, 5, DT_BF16, 1);
    matmul_case(5, 8963, 2, DT_F16, 0);
    matmul_case(40, 8, 8, DT_F32, 0); /* the 16-byte load paths with every row count */
    matmul_case(40, 8, 5, DT_BF16, 1);
}

/* Precision "fast" (WK_CTX_FAST): BF16 weights with more than 8 activation rows (the GEMM
 * path) meet activations rounded to bf16 (nearest even) on the tensor cores: the result must be
 * the reference product of the rounded activations, up to summation order. Fewer rows (the
 * matvec) and other weight types stay exact: the reference product of x itself. */
static void matmul_fast_case(int64_t rows, int64_t cols, int n, dtype dt, int with_bias) {
    void *wbuf = xmalloc((size_t)(rows * cols) * 4);
    wk_weight W;
    make_weight(&W, wbuf, dt, rows, cols);
    float *x = xmalloc((size_t)(n * cols) * 4), *xr = xmalloc((size_t)(n * cols) * 4);
    fill(x, n * cols, 1.0f);
    const int quant = dtype_is_quant(dt) != 0;
    const int rounded = (dt == DT_BF16 || quant) && n > 8;
    for (long i = 0; i < n * cols; i++) xr[i] = rounded ? bf16_to_f32(f32_to_bf16(x[i])) : x[i];
    float *want = xmalloc((size_t)(n * rows) * 4), *got = xmalloc((size_t)(n * rows) * 4);
    float *tol = xmalloc((size_t)(n * rows) * 4), *wrow = xmalloc((size_t)cols * 4);
    float *bias = xmalloc((size_t)rows * 4);
    fill(bias, rows, 1.0f);
    /* quantized weights in the GEMM path: the reference takes them dequantized and rounded
       to bf16, as the kernel multiplies them */
    uint16_t *wr = xmalloc((size_t)(rows * cols) * 2 + 2);
    wk_weight R = W;
    if (quant && rounded) {
        for (int64_t r = 0; r < rows; r++) {
            kernels_row_to_f32(wrow, &W, r);
            for (int64_t c = 0; c < cols; c++) wr[r * cols + c] = f32_to_bf16(wrow[c]);
        }
        R = (wk_weight){wr, DT_BF16, rows, cols, NULL};
    }
    kernels_ref()->matmul(NULL, want, xr, &R, with_bias ? bias : NULL, n);
    for (int64_t r = 0; r < rows; r++) { /* the summation-order bound of matmul_case */
        kernels_row_to_f32(wrow, &R, r);
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int64_t c = 0; c < cols; c++) s += fabs((double)xr[i * cols + c] * wrow[c]);
            const double k = fmin((double)(cols + 1), 8.0 * sqrt((double)(cols + 1)));
            tol[i * rows + r] = (float)(k * FLT_EPSILON * s + FLT_EPSILON * fabs(want[i * rows + r]) +
                                        1e-30);
        }
    }
    const bool q8 = q8x_path(dt, n) && cols > 0; /* decode of Q4_0/Q8_0: 8-bit activations */
    if (q8) q8x_reference(want, tol, &W, x, with_bias ? bias : NULL, n);
    wk_ctx fast = C;
    fast.flags = WK_CTX_FAST;
    wk_weight D = dweight(&W);
    float *dx = dput(x, (size_t)(n * cols) * 4), *dy = K->buf_alloc(&C, (size_t)(n * rows) * 4);
    float *db = dput(bias, (size_t)rows * 4);
    assert_non_null(dy);
    K->matmul(&fast, dy, dx, &D, with_bias ? db : NULL, n);
    dget(got, dy, (size_t)(n * rows) * 4);
    char what[128];
    snprintf(what, sizeof what, "matmul fast %s rows=%ld cols=%ld n=%d bias=%d (%s x)",
             dtype_name(dt), (long)rows, (long)cols, n, with_bias,
             q8 ? "8-bit" : rounded ? "bf16-rounded" : "f32");
    synced(what);
    check_close(what, got, want, tol, n * rows);
    dweight_free(&D);
    dfree(dx, (size_t)(n * cols) * 4), dfree(dy, (size_t)(n * rows) * 4), dfree(db, (size_t)rows * 4);
    free(wbuf), free(x), free(xr), free(want), free(got), free(tol), free(wrow), free(bias);
    free(wr);
}

static int64_t dt_block(dtype dt) { return dt == DT_Q4_K || dt == DT_Q6_K ? 256 : 32; }

static void test_matmul_fast(void **state) {
    static const int64_t rows[] = {1, 31, 257};
    static const int64_t cols[] = {64, 67, 896};
    static const int ns[] = {3, 8, 9, 64, 130};
    for (int a = 0; a < 3; a++)
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 5; i++) {
                matmul_fast_case(rows[a], cols[c], ns[i], DT_BF16, (a + i) & 1);
                if (i == 3) matmul_fast_case(rows[a], cols[c], ns[i], DT_F16, 1);
            }
    matmul_fast_case(1000, 896, 300, DT_BF16, 1); /* a prefill shape */
    static const dtype qt[] = {DT_Q4_0, DT_Q8_0, DT_Q4_K, DT_Q6_K, DT_Q5_0};
    for (int t = 0; t < 5; t++) { /* quantized: exact matvec, bf16 tensor-core GEMM */
        const int64_t qc = dt_block(qt[t]) * 3;
        matmul_fast_case(31, qc, 3, qt[t], 1);
        matmul_fast_case(257, qc, 9, qt[t], 0);
        matmul_fast_case(65, qc, 130, qt[t], 1);
    }
}

/* test_quant.c's cases, every block type */
static void test_quant_matmul(void **state) {
    static const dtype qt[] = {DT_Q8_0, DT_Q4_0, DT_Q4_K, DT_Q6_K, DT_Q5_0};
    for (int t = 0; t < 5; t++) {
        const dtype dt = qt[t];
        const int64_t bs = dtype_block_size(dt);
        matmul_case(0, bs, 1, dt, 0);
        matmul_case(5, bs, 0, dt, 1);
        matmul_case(1, bs, 1, dt, 0);
        matmul_case(3, 3 * bs, 2, dt, 1);
        matmul_case(17, 2 * bs, 3, dt, 1);
        matmul_case(67, 5 * bs, 7, dt, 0);
        matmul_case(33, 4 * bs, 8, dt, 1);
        matmul_case(21, 2 * bs, 19, dt, 1);
        matmul_case(50, 3 * bs, 45, dt, 0);
        matmul_case(301, dt == DT_Q8_0 || dt == DT_Q4_0 ? 2048 : 1024, 1, dt, 0);
        matmul_case(5, 17408, 1, dt, 1);
        matmul_case(37, 2048, 8, dt, 0);
        matmul_case(6, 8960, 3, dt, 1);
    }
}

/* ---- embed (bit-exact, every dtype) ---- */

static void test_embed(void **state) {
    static const dtype dts[] = {DT_F32, DT_BF16, DT_F16, DT_Q8_0, DT_Q4_0, DT_Q4_K, DT_Q6_K, DT_Q5_0};
    static const int64_t cols_f[] = {0, 1, 7, 64, 896};
    static const int ns[] = {0, 1, 5, 40};
    int32_t ids[40];
    for (int d = 0; d < 8; d++)
        for (int c = 0; c < 5; c++)
            for (int k = 0; k < 4; k++) {
                const dtype dt = dts[d];
                int64_t cols = cols_f[c];
                if (dtype_is_quant(dt)) {
                    if (c == 1 || c == 2) continue; /* not a whole number of blocks */
                    cols = c == 0 ? 0 : (c == 3 ? 1 : 2) * dtype_block_size(dt);
                }
                const int n = ns[k];
                wk_weight W;
                void *buf = xmalloc(dtype_is_quant(dt) ? dtype_row_bytes(dt, cols) * 50 + 1
                                                       : (size_t)(50 * cols) * 4);
                make_weight(&W, buf, dt, 50, cols);
                for (int i = 0; i < n; i++) ids[i] = (int32_t)((i * 37 + 11) % 50);
                const size_t ob = (size_t)(n * cols) * 4;
                float *want = xmalloc(ob), *got = xmalloc(ob);
                kernels_ref()->embed(NULL, want, &W, ids, n);
                wk_weight D = dweight(&W);
                int32_t *dids = dput(ids, sizeof(int32_t) * (size_t)n);
                float *dout = K->buf_alloc(&C, ob);
                assert_non_null(dout);
                K->embed(&C, dout, &D, dids, n);
                memset(got, 0xff, ob);
                dget(got, dout, ob);
                char what[96];
                snprintf(what, sizeof what, "embed %s cols=%ld n=%d", dtype_name(dt), (long)cols, n);
                synced(what);
                check_equal(what, got, want, ob);
                dweight_free(&D), dfree(dids, sizeof(int32_t) * (size_t)n), dfree(dout, ob);
                free(buf), free(want), free(got);
            }
}

/* ---- paged KV cache ---- */

typedef struct kv_fixture {
    wk_kv_layer kv;  /* host view */
    char *k, *v;
    size_t bytes;
} kv_fixture;

static void kv_fixture_init(kv_fixture *f, dtype dt, int bs, int n_kv, int hd, int n_blocks) {
    f->kv.dt = dt;
    f->kv.block_size = bs;
    f->kv.row_bytes = dtype_row_bytes(dt, hd);
    f->kv.block_bytes = (size_t)n_kv * bs * f->kv.row_bytes;
    f->bytes = f->kv.block_bytes * (size_t)n_blocks;
    f->k = xmalloc(f->bytes), f->v = xmalloc(f->bytes);
    memset(f->k, 0, f->bytes), memset(f->v, 0, f->bytes);
    f->kv.k = f->k, f->kv.v = f->v;
}

/* The same cache on the device (contents copied); free with dkv_free. */
static wk_kv_layer dkv(const kv_fixture *f) {
    wk_kv_layer d = f->kv;
    d.k = dput(f->k, f->bytes);
    d.v = dput(f->v, f->bytes);
    return d;
}
static void dkv_free(wk_kv_layer *d, size_t bytes) { dfree(d->k, bytes), dfree(d->v, bytes); }

static void attention_case_sc(int n_seq, const int *ns, const int *pos0s, int n_kv, int group,
                              int hd, int window, dtype dt, int bs, float softcap) {
    const int n_head = n_kv * group;
    const float scale = 1.0f / sqrtf((float)hd);
    int rows = 0, blocks_needed = 0;
    for (int s = 0; s < n_seq; s++) {
        rows += ns[s];
        blocks_needed += (pos0s[s] + ns[s] + bs - 1) / bs;
    }
    const int n_blocks = blocks_needed + 3;
    kv_fixture f;
    kv_fixture_init(&f, dt, bs, n_kv, hd, n_blocks);
    int32_t *perm = xmalloc(sizeof(int32_t) * n_blocks);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = (int)((frand() + 1.0f) * 0.5f * (float)(i + 1));
        if (j > i) j = i;
        const int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    wk_span sp[4];
    int r0 = 0, b0 = 0;
    float *row = xmalloc(sizeof(float) * hd);
    for (int s = 0; s < n_seq; s++) {
        sp[s] = (wk_span){r0, ns[s], pos0s[s], perm + b0};
        for (int p = 0; p < pos0s[s] + ns[s]; p++)
            for (int h = 0; h < n_kv; h++) {
                fill(row, hd, 2.0f);
                kernels_kv_row_from_f32(dt, (void *)kv_row(&f.kv, f.k, sp[s].blocks, h, p), row, hd);
                fill(row, hd, 1.0f);
                kernels_kv_row_from_f32(dt, (void *)kv_row(&f.kv, f.v, sp[s].blocks, h, p), row, hd);
            }
        r0 += ns[s];
        b0 += (pos0s[s] + ns[s] + bs - 1) / bs;
    }
    const long qn = (long)rows * n_head * hd;
    float *q = xmalloc(qn * 4), *want = xmalloc(qn * 4), *got = xmalloc(qn * 4), *tol = xmalloc(qn * 4);
    float *kr = xmalloc(sizeof(float) * hd), *vr = xmalloc(sizeof(float) * hd);
    fill(q, qn, 2.0f);
    kernels_ref()->attention(NULL, want, q, &f.kv, sp, n_seq, n_head, n_kv, hd, window, scale,
                             softcap);
    /* as test_kernels.c: score error hd·ε·S shifts each weight by that relative amount; exp,
       the sum over len keys and the weighted sum of V add ≈ (2·len + 8)·ε, times max|V| */
    for (int s = 0; s < n_seq; s++)
        for (int i = 0; i < ns[s]; i++) {
            const int rw = sp[s].row0 + i, p = pos0s[s] + i;
            const int j0 = (window > 0 && p - window + 1 > 0) ? p - window + 1 : 0;
            const int len = p - j0 + 1;
            for (int h = 0; h < n_head; h++) {
                const float *qh = q + ((long)rw * n_head + h) * hd;
                const int kvh = h / group;
                double S = 0, vmax = 0;
                for (int j = j0; j <= p; j++) {
                    kernels_kv_row_to_f32(dt, kr, kv_row(&f.kv, f.k, sp[s].blocks, kvh, j), hd);
                    kernels_kv_row_to_f32(dt, vr, kv_row(&f.kv, f.v, sp[s].blocks, kvh, j), hd);
                    double sum = 0;
                    for (int t = 0; t < hd; t++) {
                        sum += fabs((double)qh[t] * kr[t]);
                        vmax = fmax(vmax, fabs(vr[t]));
                    }
                    S = fmax(S, sum * scale);
                }
                for (int t = 0; t < hd; t++)
                    tol[((long)rw * n_head + h) * hd + t] =
                        (float)(FLT_EPSILON * vmax * (2.0 * hd * S + 2.0 * len + 16) + 1e-30);
            }
        }
    wk_kv_layer d = dkv(&f);
    float *dq = dput(q, qn * 4), *dout = K->buf_alloc(&C, qn * 4);
    assert_non_null(dout);
    for (long i = 0; i < qn; i++) got[i] = NAN;
    K->buf_copy(&C, dout, got, qn * 4);
    K->attention(&C, dout, dq, &d, sp, n_seq, n_head, n_kv, hd, window, scale, softcap);
    dget(got, dout, qn * 4);
    char what[180];
    snprintf(what, sizeof what, "attention seqs=%d n0=%d pos0=%d n_kv=%d group=%d hd=%d window=%d "
             "kv=%s bs=%d softcap=%g", n_seq, ns[0], pos0s[0], n_kv, group, hd, window,
             dtype_name(dt), bs, softcap);
    synced(what);
    check_close(what, got, want, tol, qn);
    dkv_free(&d, f.bytes), dfree(dq, qn * 4), dfree(dout, qn * 4);
    free(q), free(want), free(got), free(tol), free(kr), free(vr), free(row), free(perm);
    free(f.k), free(f.v);
}

static void attention_case(int n_seq, const int *ns, const int *pos0s, int n_kv, int group,
                           int hd, int window, dtype dt, int bs) {
    attention_case_sc(n_seq, ns, pos0s, n_kv, group, hd, window, dt, bs, 0.0f);
}

static void test_attention(void **state) {
    static const int np[][2] = {{1, 0}, {1, 9}, {5, 0}, {4, 13}, {17, 3}, {1, 100}, {70, 30}, {33, 0}};
    static const int hds[] = {5, 16, 64, 128};
    static const int groups[] = {1, 2, 7};
    static const int windows[] = {0, 3, 8, 20};
    for (int a = 0; a < 8; a++)
        for (int kv = 1; kv <= 2; kv++)
            for (int g = 0; g < 3; g++)
                for (int h = 0; h < 4; h++)
                    for (int w = 0; w < 4; w++)
                        attention_case(1, &np[a][0], &np[a][1], kv, groups[g], hds[h], windows[w],
                                       DT_F32, (a + h) % 2 ? 32 : 16);
    static const dtype dts[] = {DT_F32, DT_F16, DT_BF16, DT_Q8_0};
    static const int ns3[] = {1, 1, 1}, pos3[] = {40, 3, 17};
    static const int nm[] = {1, 20, 1}, posm[] = {50, 0, 7};
    for (int d = 0; d < 4; d++)
        for (int b = 16; b <= 32; b += 16)
            for (int w = 0; w < 2; w++) {
                attention_case(3, ns3, pos3, 2, 7, 64, w ? 8 : 0, dts[d], b);
                attention_case(3, nm, posm, 2, 2, 64, w ? 20 : 0, dts[d], b);
                attention_case(1, &nm[1], &posm[0], 1, 1, 32, 0, dts[d], b);
                if (dts[d] != DT_Q8_0) attention_case(3, nm, posm, 2, 1, 6, 0, dts[d], b);
            }
    const int z = 0, four = 4, big = 1, bigpos = 700;
    attention_case(1, &z, &four, 2, 7, 64, 0, DT_F32, 16);       /* no query rows */
    attention_case(1, &big, &bigpos, 2, 7, 1024, 0, DT_BF16, 16); /* the widest head */
    /* long rows: the keys split over several blocks (decode) or many tiles (prefill), every
       instance of the tiled kernel (head widths 32·{1,2,3,4,8}, groups up to 16), windows
       and Gemma 2's soft-cap */
    static const int nd[] = {1, 1, 1}, posd[] = {2000, 700, 300};
    static const int np2[] = {300, 1, 40}, posp[] = {0, 1500, 77};
    for (int d = 0; d < 4; d++) {
        attention_case(3, nd, posd, 2, 7, 64, 0, dts[d], 16);
        attention_case(3, nd, posd, 2, 7, 64, 512, dts[d], 32);
        attention_case(3, np2, posp, 1, 4, 128, 0, dts[d], 16);
    }
    static const int hw[] = {32, 64, 96, 128, 256}, gw[] = {1, 2, 3, 4, 5, 8, 9, 16};
    for (int h = 0; h < 5; h++)
        for (int g = 0; g < 8; g++) attention_case(3, nd, posd, 1, gw[g], hw[h], 0, DT_BF16, 16);
    static const int pose[] = {2000, 3, 0}; /* rows whose later splits are empty */
    attention_case(3, nd, pose, 2, 7, 64, 0, DT_BF16, 16);
    attention_case_sc(3, nd, posd, 4, 2, 256, 0, DT_BF16, 16, 30.0f);
    attention_case_sc(3, np2, posp, 2, 4, 256, 100, DT_F32, 16, 50.0f);
    attention_case_sc(3, ns3, pos3, 2, 7, 64, 0, DT_F32, 16, 5.0f);
}

/* kv_store writes exactly the reference's bytes, rows of several spans. */
/* Recorded passes (graph_begin / graph_end): a decode pass of ns sequences over 40 steps
 * (token rows uploaded with buf_copy inside the pass, kv_store, attention, a matmul: the
 * matvec for up to 8 rows, cuBLAS above) gives bit for bit what the same ops give run
 * eagerly, while positions cross block boundaries and the attention's split count changes (a
 * replay that differs from its recording must be redone, not launched stale). With `strict`,
 * most steps must replay, a device allocation between steps must make the next pass capture
 * anew (a recording holds the addresses of its moment), and a pass that copies device data to
 * the host is refused (redo) and leaves no failure behind. */
static void graph_case(int ns, bool strict) {
    const char *off = getenv("WICK_CUDA_GRAPHS");
    const bool on = !(off && strcmp(off, "0") == 0);
    enum { MAXS = 12, NKV = 2, G = 7, HD = 64, BS = 16, STEPS = 40, OUT = 50 };
    assert_true(ns <= MAXS);
    const int nh = NKV * G;
    int pos0[MAXS], nb[MAXS], n_blocks = 0;
    for (int s = 0; s < ns; s++) {
        pos0[s] = s == 0 ? 250 : (s * 37 + 5) % 90;
        n_blocks += nb[s] = (pos0[s] + STEPS) / BS + 1;
    }
    int32_t *perm = xmalloc(sizeof(int32_t) * (size_t)n_blocks);
    for (int i = 0; i < n_blocks; i++) perm[i] = (int32_t)((i * 7 + 3) % n_blocks);
    kv_fixture fa, fb;
    kv_fixture_init(&fa, DT_BF16, BS, NKV, HD, n_blocks);
    kv_fixture_init(&fb, DT_BF16, BS, NKV, HD, n_blocks);
    /* earlier positions: the same random keys and values in both caches */
    float row[HD];
    int b0 = 0;
    for (int s = 0; s < ns; s++) {
        for (int p = 0; p < pos0[s]; p++)
            for (int h = 0; h < NKV; h++)
                for (int kv = 0; kv < 2; kv++) {
                    fill(row, HD, 1.0f);
                    char *ba = kv ? fa.v : fa.k, *bb = kv ? fb.v : fb.k;
                    kernels_kv_row_from_f32(DT_BF16, (void *)kv_row(&fa.kv, ba, perm + b0, h, p),
                                            row, HD);
                    kernels_kv_row_from_f32(DT_BF16, (void *)kv_row(&fb.kv, bb, perm + b0, h, p),
                                            row, HD);
                }
        b0 += nb[s];
    }
    wk_kv_layer da = dkv(&fa), db = dkv(&fb);
    float *wh = xmalloc(sizeof(float) * OUT * nh * HD);
    fill(wh, (long)OUT * nh * HD, 0.5f);
    wk_weight W = {.data = wh, .dt = DT_F32, .rows = OUT, .cols = nh * HD};
    wk_weight DW = dweight(&W);
    const size_t qb = sizeof(float) * (size_t)ns * nh * HD, kb = sizeof(float) * (size_t)ns * NKV * HD;
    const size_t yb = sizeof(float) * (size_t)ns * OUT;
    float *q = xmalloc(qb), *k = xmalloc(kb), *v = xmalloc(kb);
    float *ga = xmalloc(qb), *gb = xmalloc(qb), *ya = xmalloc(yb), *yb_ = xmalloc(yb);
    float *dq = K->buf_alloc(&C, qb), *dk = K->buf_alloc(&C, kb), *dv = K->buf_alloc(&C, kb);
    float *aa = K->buf_alloc(&C, qb), *ab = K->buf_alloc(&C, qb);
    float *dya = K->buf_alloc(&C, yb), *dyb = K->buf_alloc(&C, yb);
    assert_true(dq && dk && dv && aa && ab && dya && dyb);
    const uint64_t key = 42 + (uint64_t)ns;
    int replays = 0, redos = 0;
    wk_span sp[MAXS];
    for (int t = 0; t <= STEPS; t++) {
        const bool last = t == STEPS; /* after a buffer came and went */
        if (last && strict) {
            void *tmp = K->buf_alloc(&C, 4096);
            assert_non_null(tmp);
            K->buf_free(&C, tmp, 4096);
        }
        fill(q, (long)ns * nh * HD, 1.0f), fill(k, (long)ns * NKV * HD, 1.0f);
        fill(v, (long)ns * NKV * HD, 1.0f);
        b0 = 0;
        for (int s = 0; s < ns; s++) {
            sp[s] = (wk_span){s, 1, pos0[s] + (last ? STEPS - 1 : t), perm + b0};
            b0 += nb[s];
        }
        /* eager */
        K->buf_copy(&C, dq, q, qb), K->buf_copy(&C, dk, k, kb), K->buf_copy(&C, dv, v, kb);
        K->kv_store(&C, &da, dk, dv, sp, ns, NKV, HD);
        K->attention(&C, aa, dq, &da, sp, ns, nh, NKV, HD, 0, 0.125f, 0.0f);
        K->matmul(&C, dya, aa, &DW, NULL, ns);
        /* recorded */
        int mode = K->graph_begin(&C, key);
        if (last && strict && on) assert_int_equal(mode, WK_GRAPH_CAPTURE);
        for (;;) {
            K->buf_copy(&C, dq, q, qb), K->buf_copy(&C, dk, k, kb), K->buf_copy(&C, dv, v, kb);
            K->kv_store(&C, &db, dk, dv, sp, ns, NKV, HD);
            K->attention(&C, ab, dq, &db, sp, ns, nh, NKV, HD, 0, 0.125f, 0.0f);
            K->matmul(&C, dyb, ab, &DW, NULL, ns);
            if (mode == WK_GRAPH_OFF) break;
            bool redo = true;
            K->graph_end(&C, &redo);
            if (!redo) {
                replays += mode == WK_GRAPH_REPLAY;
                break;
            }
            redos++;
            mode = WK_GRAPH_OFF;
        }
        dget(ga, aa, qb), dget(gb, ab, qb), dget(ya, dya, yb), dget(yb_, dyb, yb);
        char what[64];
        snprintf(what, sizeof what, "graph rows=%d step %d", ns, t);
        synced(what);
        check_equal(what, gb, ga, qb);
        check_equal(what, yb_, ya, yb);
    }
    if (on && strict) {
        /* 40 steps: one warm-up, one capture, a redo and a capture where the split changes */
        if (replays < STEPS - 6)
            fail_msg("only %d of %d steps replayed (%d redone)", replays, STEPS, redos);
        const int mode = K->graph_begin(&C, key);
        assert_int_not_equal(mode, WK_GRAPH_OFF);
        K->matmul(&C, dyb, ab, &DW, NULL, ns);
        dget(yb_, dyb, yb); /* device to host inside the pass */
        bool redo = false;
        K->graph_end(&C, &redo);
        assert_true(redo);
        synced("graph pass with a device-to-host copy");
    }
    printf("graph rows=%d: %d of %d steps replayed, %d redone\n", ns, replays, STEPS + 1, redos);
    dkv_free(&da, fa.bytes), dkv_free(&db, fb.bytes), dweight_free(&DW);
    dfree(dq, qb), dfree(dk, kb), dfree(dv, kb), dfree(aa, qb), dfree(ab, qb);
    dfree(dya, yb), dfree(dyb, yb);
    free(q), free(k), free(v), free(ga), free(gb), free(ya), free(yb_), free(wh), free(perm);
    free(fa.k), free(fa.v), free(fb.k), free(fb.v);
}

static void test_graph(void **state) {
    (void)state;
    assert_non_null(K->graph_begin);
    assert_non_null(K->graph_end);
    graph_case(3, true);
    graph_case(12, false); /* cuBLAS inside the recording: equal results, replays reported */
}

static void test_kv_store(void **state) {
    static const dtype dts[] = {DT_F32, DT_F16, DT_BF16, DT_Q8_0};
    const int n_kv = 2, hd = 64, bs = 16, n_blocks = 12;
    for (int d = 0; d < 4; d++) {
        kv_fixture want, got;
        kv_fixture_init(&want, dts[d], bs, n_kv, hd, n_blocks);
        kv_fixture_init(&got, dts[d], bs, n_kv, hd, n_blocks);
        int32_t bt[3][4] = {{5, 2, 9, 0}, {1, 7, 3, 11}, {4, 6, 8, 10}};
        const wk_span sp[3] = {{0, 1, 37, bt[0]}, {1, 30, 5, bt[1]}, {31, 2, 0, bt[2]}};
        const int rows = 33;
        const size_t xb = sizeof(float) * rows * n_kv * hd;
        float *k = xmalloc(xb), *v = xmalloc(xb);
        fill(k, (long)rows * n_kv * hd, 3.0f), fill(v, (long)rows * n_kv * hd, 1.0f);
        k[5] = 1e30f, k[70] = -70000.0f, v[3] = 3e-39f; /* f16 overflow, a subnormal */
        for (int t = 64; t < 96; t++) k[t] = 0.0f;     /* an all-zero Q8_0 block */
        kernels_ref()->kv_store(NULL, &want.kv, k, v, sp, 3, n_kv, hd);
        wk_kv_layer dk = dkv(&got);
        float *dkk = dput(k, xb), *dvv = dput(v, xb);
        K->kv_store(&C, &dk, dkk, dvv, sp, 3, n_kv, hd);
        dget(got.k, dk.k, got.bytes);
        dget(got.v, dk.v, got.bytes);
        char what[64];
        snprintf(what, sizeof what, "kv_store %s", dtype_name(dts[d]));
        synced(what);
        check_equal(what, got.k, want.k, want.bytes);
        check_equal(what, got.v, want.v, want.bytes);
        dkv_free(&dk, got.bytes), dfree(dkk, xb), dfree(dvv, xb);
        free(k), free(v), free(want.k), free(want.v), free(got.k), free(got.v);
    }
}

/* ---- rmsnorm, rope, softmax, silu_mul, add, axpy, gather_rows, lora ---- */

static void rmsnorm_case(int n, int d, int in_place) {
    const long m = (long)n * d;
    float *x = xmalloc(m * 4), *w = xmalloc((size_t)d * 4), *want = xmalloc(m * 4);
    float *got = xmalloc(m * 4), *tol = xmalloc(m * 4);
    fill(x, m, 3.0f), fill(w, d, 1.0f);
    kernels_ref()->rmsnorm(NULL, want, x, w, n, d, 1e-6f);
    /* Σx² reordered: relative error ≤ d·ε, halved by the square root, plus ~6 roundings */
    for (long i = 0; i < m; i++) tol[i] = (float)((d / 2.0 + 8) * FLT_EPSILON * fabs(want[i]) + 1e-30);
    float *dx = dput(x, m * 4), *dw = dput(w, (size_t)d * 4), *dout = in_place ? dx : K->buf_alloc(&C, m * 4);
    assert_non_null(dout);
    K->rmsnorm(&C, dout, dx, dw, n, d, 1e-6f);
    dget(got, dout, m * 4);
    synced("rmsnorm");
    check_close(in_place ? "rmsnorm in place" : "rmsnorm", got, want, tol, m);
    dfree(dx, m * 4), dfree(dw, (size_t)d * 4);
    if (!in_place) dfree(dout, m * 4);
    free(x), free(w), free(want), free(got), free(tol);
}

static void test_rmsnorm(void **state) {
    static const int s[][2] = {{0, 8}, {3, 0}, {1, 1}, {3, 7}, {2, 896}, {33, 64}, {40, 896}, {5, 4864}};
    for (int i = 0; i < 8; i++) {
        rmsnorm_case(s[i][0], s[i][1], 0);
        rmsnorm_case(s[i][0], s[i][1], 1);
    }
}

/* Both layouts, bit for bit (the same two products and one add/sub per element). */
static void rope_case(int n, int heads, int hd) {
    const long m = (long)n * heads * hd, half = hd / 2;
    float *x = xmalloc(m * 4), *c = xmalloc(n * half * 4 + 4), *s = xmalloc(n * half * 4 + 4);
    int32_t *pos = xmalloc(sizeof(int32_t) * (n + 1));
    for (int i = 0; i < n; i++) pos[i] = (i * 7 + 3) % n;
    float *want = xmalloc(m * 4), *got = xmalloc(m * 4);
    fill(x, m, 2.0f);
    for (long i = 0; i < n * half; i++) {
        const float a = frand() * 50.0f;
        c[i] = cosf(a), s[i] = sinf(a);
    }
    float *dc = dput(c, n * half * 4 + 4), *ds = dput(s, n * half * 4 + 4);
    int32_t *dpos = dput(pos, sizeof(int32_t) * (n + 1));
    for (int il = 0; il < 2; il++) {
        memcpy(want, x, m * 4);
        (il ? kernels_ref()->rope_interleaved : kernels_ref()->rope)(NULL, want, n, heads, hd, hd, pos, c, s);
        float *dx = dput(x, m * 4);
        (il ? K->rope_interleaved : K->rope)(&C, dx, n, heads, hd, hd, dpos, dc, ds);
        dget(got, dx, m * 4);
        char what[80];
        snprintf(what, sizeof what, "%s n=%d heads=%d hd=%d", il ? "rope_interleaved" : "rope", n,
                 heads, hd);
        synced(what);
        check_equal(what, got, want, m * 4);
        dfree(dx, m * 4);
    }
    dfree(dc, n * half * 4 + 4), dfree(ds, n * half * 4 + 4), dfree(dpos, sizeof(int32_t) * (n + 1));
    free(x), free(c), free(s), free(want), free(got), free(pos);
}

/* ---- the layer fusions (matmul_multi, matmul_glu, matmul_add, rope_qk) ----
 * Each must equal, bit for bit, the plain ops of this table that it replaces (which the cases
 * above hold to the reference): the fused matvec computes every row's sum exactly as the
 * plain matvec does and applies the same formulas; above 8 rows the ops run the plain ops. */
static size_t wbytes_of(dtype dt, int64_t rows, int64_t cols) {
    return dtype_is_quant(dt) ? dtype_row_bytes(dt, cols) * (size_t)rows : (size_t)(rows * cols) * 4;
}

static void fused_case(dtype dt, int64_t cols, int n, int with_bias) {
    const int64_t rq = 64, rk = 16, ff = 96;
    const int64_t rs[3] = {rq, rk, rk};
    wk_weight W[3], Dw[3], G, U, Dg, Du, O, Do;
    void *buf[3];
    for (int i = 0; i < 3; i++) {
        buf[i] = xmalloc(wbytes_of(dt, rs[i], cols));
        make_weight(&W[i], buf[i], dt, rs[i], cols);
        Dw[i] = dweight(&W[i]);
    }
    void *gb = xmalloc(wbytes_of(dt, ff, cols)), *ub = xmalloc(wbytes_of(dt, ff, cols));
    void *ob = xmalloc(wbytes_of(dt, ff, cols));
    make_weight(&G, gb, dt, ff, cols), make_weight(&U, ub, dt, ff, cols);
    make_weight(&O, ob, dt, ff, cols);
    Dg = dweight(&G), Du = dweight(&U), Do = dweight(&O);
    float *x = xmalloc((size_t)(n * cols) * 4 + 4), *bias = xmalloc((size_t)ff * 4);
    fill(x, n * cols, 1.0f), fill(bias, ff, 1.0f);
    float *dx = dput(x, (size_t)(n * cols) * 4 + 4), *db = dput(bias, (size_t)ff * 4);
    const size_t ob_ = (size_t)(n * ff) * 4 + 4;
    float *a = xmalloc(ob_), *b = xmalloc(ob_);
    float *y1[3], *y2[3];
    for (int i = 0; i < 3; i++) {
        y1[i] = K->buf_alloc(&C, ob_), y2[i] = K->buf_alloc(&C, ob_);
        assert_non_null(y1[i]), assert_non_null(y2[i]);
    }
    char what[160];
    /* matmul_multi: q, k, v against three matmuls */
    const wk_weight *Wp[3] = {&Dw[0], &Dw[1], &Dw[2]};
    const float *bp[3] = {with_bias ? db : NULL, NULL, with_bias ? db : NULL};
    for (int i = 0; i < 3; i++) K->matmul(&C, y1[i], dx, &Dw[i], bp[i], n);
    K->matmul_multi(&C, 3, y2, dx, Wp, bp, n);
    for (int i = 0; i < 3; i++) {
        dget(a, y1[i], (size_t)(n * rs[i]) * 4), dget(b, y2[i], (size_t)(n * rs[i]) * 4);
        snprintf(what, sizeof what, "matmul_multi %s cols=%ld n=%d bias=%d product %d",
                 dtype_name(dt), (long)cols, n, with_bias, i);
        synced(what);
        check_equal(what, b, a, (size_t)(n * rs[i]) * 4);
    }
    /* matmul_glu, both activations, against matmul, matmul, silu_mul / gelu_tanh_mul */
    for (int gt = 0; gt < 2; gt++) {
        K->matmul(&C, y1[0], dx, &Dg, with_bias ? db : NULL, n);
        K->matmul(&C, y1[1], dx, &Du, NULL, n);
        (gt ? K->gelu_tanh_mul : K->silu_mul)(&C, y1[2], y1[0], y1[1], (long)n * ff);
        K->matmul_glu(&C, y2[2], y2[0], y2[1], dx, &Dg, &Du, with_bias ? db : NULL, NULL, gt != 0, n);
        dget(a, y1[2], (size_t)(n * ff) * 4), dget(b, y2[2], (size_t)(n * ff) * 4);
        snprintf(what, sizeof what, "matmul_glu %s %s cols=%ld n=%d bias=%d", gt ? "gelu" : "silu",
                 dtype_name(dt), (long)cols, n, with_bias);
        synced(what);
        check_equal(what, b, a, (size_t)(n * ff) * 4);
    }
    /* matmul_add: y += x·Wᵀ + bias against matmul into tmp, then add */
    float *r0 = xmalloc(ob_);
    fill(r0, n * ff, 3.0f);
    K->buf_copy(&C, y1[0], r0, (size_t)(n * ff) * 4), K->buf_copy(&C, y2[0], r0, (size_t)(n * ff) * 4);
    K->matmul(&C, y1[1], dx, &Do, with_bias ? db : NULL, n);
    K->add(&C, y1[0], y1[1], (long)n * ff);
    K->matmul_add(&C, y2[0], y2[1], dx, &Do, with_bias ? db : NULL, n);
    dget(a, y1[0], (size_t)(n * ff) * 4), dget(b, y2[0], (size_t)(n * ff) * 4);
    snprintf(what, sizeof what, "matmul_add %s cols=%ld n=%d bias=%d", dtype_name(dt), (long)cols,
             n, with_bias);
    synced(what);
    check_equal(what, b, a, (size_t)(n * ff) * 4);
    for (int i = 0; i < 3; i++) K->buf_free(&C, y1[i], ob_), K->buf_free(&C, y2[i], ob_), dweight_free(&Dw[i]), free(buf[i]);
    dweight_free(&Dg), dweight_free(&Du), dweight_free(&Do);
    dfree(dx, (size_t)(n * cols) * 4 + 4), dfree(db, (size_t)ff * 4);
    free(gb), free(ub), free(ob), free(x), free(bias), free(a), free(b), free(r0);
}

static void test_fused(void **state) {
    if (!K->matmul_multi || !K->matmul_glu || !K->matmul_add || !K->rope_qk) {
        print_message("test_fused: the table's fusions are off (WICK_CUDA_FUSE=0)\n");
        skip();
    }
    static const dtype dts[] = {DT_F32, DT_BF16, DT_F16, DT_Q8_0, DT_Q4_0, DT_Q4_K};
    static const int ns[] = {1, 3, 8, 9, 20};
    for (int d = 0; d < 6; d++) {
        const int64_t cols = dtype_is_quant(dts[d]) ? (dts[d] == DT_Q4_K ? 256 : 96) : 67;
        for (int i = 0; i < 5; i++) fused_case(dts[d], cols, ns[i], i & 1);
        if (!dtype_is_quant(dts[d])) fused_case(dts[d], 896, 1, 1); /* the 16-byte load paths */
        /* rows of 2048+ values: 2 and 4 warps a row (mv_lanes), fused = plain still */
        fused_case(dts[d], 2048, 3, 0);
        fused_case(dts[d], 4608, 1, 1);
    }
    /* rope_qk against the reference rope of q and of k, bit for bit, partial rotary too */
    static const int s[][4] = {{1, 14, 2, 64}, {5, 8, 8, 128}, {3, 4, 1, 32}, {0, 2, 1, 16}};
    for (int t = 0; t < 4; t++) {
        const int n = s[t][0], nh = s[t][1], nk = s[t][2], hd = s[t][3];
        for (int partial = 0; partial < 2; partial++) {
            const int rot = partial ? hd / 2 : hd, half = rot / 2;
            const long mq = (long)n * nh * hd, mk = (long)n * nk * hd;
            float *q = xmalloc(mq * 4 + 4), *k = xmalloc(mk * 4 + 4), *c = xmalloc(n * half * 4 + 4);
            float *sn = xmalloc(n * half * 4 + 4), *gq = xmalloc(mq * 4 + 4), *gk = xmalloc(mk * 4 + 4);
            int32_t *pos = xmalloc(sizeof(int32_t) * (n + 1));
            for (int i = 0; i < n; i++) pos[i] = (i * 5 + 1) % n;
            fill(q, mq, 2.0f), fill(k, mk, 2.0f);
            for (long i = 0; i < n * half; i++) {
                const float a = frand() * 50.0f;
                c[i] = cosf(a), sn[i] = sinf(a);
            }
            float *dq = dput(q, mq * 4 + 4), *dk = dput(k, mk * 4 + 4), *dc = dput(c, n * half * 4 + 4);
            float *ds = dput(sn, n * half * 4 + 4);
            int32_t *dp = dput(pos, sizeof(int32_t) * (n + 1));
            kernels_ref()->rope(NULL, q, n, nh, hd, rot, pos, c, sn);
            kernels_ref()->rope(NULL, k, n, nk, hd, rot, pos, c, sn);
            K->rope_qk(&C, dq, dk, n, nh, nk, hd, rot, dp, dc, ds);
            dget(gq, dq, mq * 4), dget(gk, dk, mk * 4);
            char what[96];
            snprintf(what, sizeof what, "rope_qk n=%d heads=%d/%d hd=%d rot=%d", n, nh, nk, hd, rot);
            synced(what);
            check_equal(what, gq, q, mq * 4);
            check_equal(what, gk, k, mk * 4);
            dfree(dq, mq * 4 + 4), dfree(dk, mk * 4 + 4), dfree(dc, n * half * 4 + 4);
            dfree(ds, n * half * 4 + 4), dfree(dp, sizeof(int32_t) * (n + 1));
            free(q), free(k), free(c), free(sn), free(gq), free(gk), free(pos);
        }
    }
}

static void test_rope(void **state) {
    static const int s[][3] = {{0, 2, 16}, {1, 1, 2}, {3, 2, 6}, {1, 14, 64}, {9, 14, 128},
                               {20, 14, 64}, {2, 3, 10}, {4, 2, 40}, {3, 2, 7}};
    for (int i = 0; i < 9; i++) rope_case(s[i][0], s[i][1], s[i][2]);
}

/* softmax is a host op on every table (kernels.h): the CUDA table's is the reference. */
static void test_softmax(void **state) {
    float x[100], want[100];
    fill(x, 100, 30.0f);
    memcpy(want, x, sizeof x);
    kernels_ref()->softmax(want, 100);
    K->softmax(x, 100);
    check_equal("softmax", x, want, sizeof x);
    K->softmax(x, 0);
}

static void test_elementwise(void **state) {
    static const long ns[] = {0, 1, 7, 16, 33, 1000, 70001};
    for (int k = 0; k < 7; k++) {
        const long n = ns[k];
        float *g = xmalloc(n * 4), *u = xmalloc(n * 4), *want = xmalloc(n * 4);
        float *got = xmalloc(n * 4), *tol = xmalloc(n * 4);
        fill(g, n, 10.0f), fill(u, n, 2.0f);
        static const float edge[] = {-110.f, -89.f, -88.7f, -87.f, 0.f, 87.f, 88.7f, 89.f, 104.f, 110.f};
        for (long i = 0; i < n && i < 10; i++) g[i] = edge[i];
        float *dg = dput(g, n * 4), *du = dput(u, n * 4), *dy = dput(g, n * 4);
        /* silu_mul in place (out aliases gate): CUDA's expf within 2 ulp of libm's, plus 1 + e,
           the division and the product: ≤ 6 roundings */
        kernels_ref()->silu_mul(NULL, want, g, u, n);
        for (long i = 0; i < n; i++) tol[i] = (float)(6 * FLT_EPSILON * fabs(want[i]) + 1e-37);
        K->silu_mul(&C, dy, dy, du, n);
        dget(got, dy, n * 4);
        synced("silu_mul");
        check_close("silu_mul", got, want, tol, n);
        /* add and axpy: the same operations, bit for bit */
        memcpy(want, u, n * 4);
        kernels_ref()->add(NULL, want, g, n);
        K->buf_copy(&C, dy, u, n * 4);
        K->add(&C, dy, dg, n);
        dget(got, dy, n * 4);
        synced("add");
        check_equal("add", got, want, n * 4);
        memcpy(want, u, n * 4);
        kernels_ref()->axpy(NULL, want, 0.37f, g, n);
        K->buf_copy(&C, dy, u, n * 4);
        K->axpy(&C, dy, 0.37f, dg, n);
        dget(got, dy, n * 4);
        synced("axpy");
        check_equal("axpy", got, want, n * 4);
        dfree(dg, n * 4), dfree(du, n * 4), dfree(dy, n * 4);
        free(g), free(u), free(want), free(got), free(tol);
    }
}

static void test_gather_rows(void **state) {
    float src[7 * 5], want[4 * 5], got[4 * 5];
    fill(src, 35, 1.0f);
    const int32_t idx[4] = {6, 0, 6, 3};
    kernels_ref()->gather_rows(NULL, want, src, idx, 4, 5);
    float *ds = dput(src, sizeof src), *dd = K->buf_alloc(&C, sizeof got);
    int32_t *di = dput(idx, sizeof idx);
    K->gather_rows(&C, dd, ds, di, 4, 5);
    K->gather_rows(&C, dd, ds, di, 0, 5);
    dget(got, dd, sizeof got);
    synced("gather_rows");
    check_equal("gather_rows", got, want, sizeof want);
    dfree(ds, sizeof src), dfree(dd, sizeof got), dfree(di, sizeof idx);
}

static void test_scatter_rows(void **state) {
    float src[4 * 5], y0[7 * 5], want[7 * 5], got[7 * 5];
    fill(src, 20, 1.0f);
    fill(y0, 35, 2.0f);
    const int32_t idx[4] = {-7, 2, -1, 5};
    const float w[4] = {0.25f, -1.5f, 0.7f, 3.0f};
    memcpy(want, y0, sizeof want);
    kernels_ref()->scatter_rows(NULL, want, src, idx, w, 4, 5);
    float *ds = dput(src, sizeof src), *dy = dput(y0, sizeof y0), *dw = dput(w, sizeof w);
    int32_t *di = dput(idx, sizeof idx);
    K->scatter_rows(&C, dy, ds, di, dw, 4, 5);
    K->scatter_rows(&C, dy, ds, di, dw, 0, 5);
    dget(got, dy, sizeof got);
    synced("scatter_rows");
    check_equal("scatter_rows", got, want, sizeof want);
    dfree(ds, sizeof src), dfree(dy, sizeof y0), dfree(dw, sizeof w), dfree(di, sizeof idx);
}

/* LoRA over several runs (ranks 8, 5, 16; one keeps its t): within the bound of two f32 dot
 * products in another order, times |scale|, as test_kernels.c. */
/* One lora call of three runs (rank rk[k], rows row0[k] .. row0[k] + n[k], scale sc[k]) against
 * the reference; run `keep` (or none, -1) brings its own t, the others use the scratch. */
static void check_lora(const char *what, const int rk[3], const int row0[3], const int nr[3],
                       const float sc[3], int keep_run) {
    const int in = 67, out = 300, rows = 23;
    float *x = xmalloc(sizeof(float) * rows * in), *y0 = xmalloc(sizeof(float) * rows * out);
    float *want = xmalloc(sizeof(float) * rows * out), *got = xmalloc(sizeof(float) * rows * out);
    float *tol = xmalloc(sizeof(float) * rows * out);
    float *A[3], *B[3], *scr = xmalloc(sizeof(float) * rows * 16);
    float *keep = xmalloc(sizeof(float) * rows * 16), *keep_ref = xmalloc(sizeof(float) * rows * 16);
    wk_weight WA[3], WB[3], DA[3], DB[3];
    fill(x, (long)rows * in, 1.0f), fill(y0, (long)rows * out, 1.0f);
    for (int k = 0; k < 3; k++) {
        A[k] = xmalloc(sizeof(float) * rk[k] * in), B[k] = xmalloc(sizeof(float) * out * rk[k]);
        fill(A[k], (long)rk[k] * in, 0.2f), fill(B[k], (long)out * rk[k], 0.05f);
        WA[k] = (wk_weight){A[k], DT_F32, rk[k], in, NULL};
        WB[k] = (wk_weight){B[k], DT_F32, out, rk[k], NULL};
        DA[k] = dweight(&WA[k]), DB[k] = dweight(&WB[k]);
    }
    wk_lora_run runs[3], druns[3];
    for (int k = 0; k < 3; k++) {
        runs[k] = (wk_lora_run){row0[k], nr[k], &WA[k], &WB[k], sc[k], k == keep_run ? keep_ref : NULL};
        druns[k] = runs[k];
        druns[k].A = &DA[k], druns[k].B = &DB[k];
    }
    memcpy(want, y0, sizeof(float) * rows * out);
    kernels_ref()->lora(NULL, want, x, runs, 3, scr);
    for (long i = 0; i < (long)rows * out; i++) tol[i] = 1e-30f;
    for (int k = 0; k < 3; k++)
        for (int i = runs[k].row0; i < runs[k].row0 + runs[k].n; i++)
            for (int o = 0; o < out; o++) {
                double su = 0;
                for (int j = 0; j < rk[k]; j++) {
                    double st = 0;
                    for (int c = 0; c < in; c++) st += fabs((double)x[i * in + c] * A[k][j * in + c]);
                    su += (in + 2) * FLT_EPSILON * st * fabs(B[k][o * rk[k] + j]) +
                          FLT_EPSILON * st * fabs(B[k][o * rk[k] + j]) * (rk[k] + 2);
                }
                tol[i * out + o] = (float)(fabs(runs[k].scale) * su + 2 * FLT_EPSILON * fabs(want[i * out + o]) + 1e-30);
            }
    float *dx = dput(x, sizeof(float) * rows * in), *dy = dput(y0, sizeof(float) * rows * out);
    float *dscr = K->buf_alloc(&C, sizeof(float) * rows * 16), *dkeep = K->buf_alloc(&C, sizeof(float) * rows * 16);
    if (keep_run >= 0) druns[keep_run].t = dkeep;
    K->lora(&C, dy, dx, druns, 3, dscr);
    K->lora(&C, dy, dx, druns, 0, dscr); /* no runs: nothing */
    dget(got, dy, sizeof(float) * rows * out);
    dget(keep, dkeep, sizeof(float) * rows * 16);
    synced(what);
    check_close(what, got, want, tol, (long)rows * out);
    if (keep_run >= 0)
        for (int i = 0; i < nr[keep_run] * rk[keep_run]; i++)
            assert_true(fabsf(keep[i] - keep_ref[i]) <= 1e-5f * (1 + fabsf(keep_ref[i])));
    for (int k = 0; k < 3; k++) dweight_free(&DA[k]), dweight_free(&DB[k]), free(A[k]), free(B[k]);
    dfree(dx, sizeof(float) * rows * in), dfree(dy, sizeof(float) * rows * out);
    dfree(dscr, sizeof(float) * rows * 16), dfree(dkeep, sizeof(float) * rows * 16);
    free(x), free(y0), free(want), free(got), free(tol), free(scr), free(keep), free(keep_ref);
}

static void test_lora(void **state) {
    /* a run with its own t between two scratch runs */
    check_lora("lora", (const int[]){8, 5, 16}, (const int[]){0, 5, 14}, (const int[]){3, 9, 9},
               (const float[]){2.0f, -0.5f, 1.25f}, 1);
    /* scratch regions (row0·r) that overlap: later runs of smaller rank, as a batch that mixes
       adapters of different ranks makes them (the engine test found this) */
    check_lora("lora, overlapping scratch", (const int[]){16, 5, 8}, (const int[]){0, 12, 18},
               (const int[]){12, 6, 5}, (const float[]){0.5f, 1.0f, -2.0f}, -1);
}

int main(void) {
    unsetenv("WICK_DEVICE");
    const wick_status st = kernels_select_device("cuda", &K);
    if (st) {
        const char *req = getenv("WICK_REQUIRE_CUDA");
        if (st != WICK_ERR_UNSUPPORTED || (req && strcmp(req, "1") == 0)) {
            fprintf(stderr, "FAIL: test_cuda: no CUDA table: %s\n", wick_last_error());
            return 1;
        }
        printf("SKIP: test_cuda: %s\n", wick_last_error());
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buffers),     cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_quant_matmul), cmocka_unit_test(test_embed),
        cmocka_unit_test(test_attention),   cmocka_unit_test(test_kv_store),
        cmocka_unit_test(test_rmsnorm),     cmocka_unit_test(test_rope),
        cmocka_unit_test(test_softmax),     cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_gather_rows), cmocka_unit_test(test_scatter_rows),
        cmocka_unit_test(test_lora),
        cmocka_unit_test(test_graph),       cmocka_unit_test(test_matmul_fast),
        cmocka_unit_test(test_fused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
