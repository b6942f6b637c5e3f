/* test_kernels.c — parity of every CPU kernel table available on this machine (cpu-generic,
 * cpu-avx2, cpu-avx512) against the scalar reference, for every op, with odd, tiny, empty and
 * larger shapes, all weight dtypes, and pools of 1, 2 and 3 threads.
 *
 * Tolerances are error bounds for f32 evaluation in a different order, not fudge factors:
 * a sum of n products evaluated in any order differs from the exact sum by at most
 * γ_n·Σ|aᵢbᵢ| with γ_n ≈ n·u (u = FLT_EPSILON/2, Higham, "Accuracy and Stability", §3.1), so
 * two orders differ by at most n·FLT_EPSILON·Σ|aᵢbᵢ|. Each test computes that Σ|·| for the
 * element it checks. Ops with no reordering (add, embed) must match exactly. The vectorised
 * exp is allowed 2 ulp against libm's expf, which is within the bounds used below. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "base/pool.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"
#include "kernels/cpu/cpu_internal.h"
#include "testutil.h"

/* Exported by kernels/cpu/cpu.c: one table per ISA, NULL when the CPU lacks it. */
const kernel_table *kernels_cpu_variant(const char *isa);

static const char *k_isas[] = {"generic", "avx2", "avx512"};
#define N_ISAS 3
static const int k_threads[] = {1, 2, 3};
#define N_POOLS 3
static wk_pool *g_pools[N_POOLS];
static wk_ctx g_ctxs[N_POOLS];

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}
static void fill(float *x, long n, float scale) {
    for (long i = 0; i < n; i++) x[i] = frand() * scale;
}
static void *xmalloc(size_t n) { /* never NULL, even for n == 0, so kernels get valid pointers */
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* Calls body(table, pool) for each available table and pool size. */
#define FOR_EACH_TABLE_POOL(T, P)                                                              \
    for (int ti_ = 0; ti_ < N_ISAS; ti_++)                                                     \
        for (const kernel_table *T = kernels_cpu_variant(k_isas[ti_]); T; T = NULL)            \
            for (int pi_ = 0; pi_ < N_POOLS; pi_++)                                            \
                for (wk_ctx *P = &g_ctxs[pi_]; P; P = NULL)

static int setup(void **state) {
    for (int i = 0; i < N_POOLS; i++) {
        g_pools[i] = pool_create(k_threads[i]);
        if (!g_pools[i]) return -1;
        g_ctxs[i].pool = g_pools[i];
    }
    return 0;
}
static int teardown(void **state) {
    for (int i = 0; i < N_POOLS; i++) pool_free(g_pools[i]);
    return 0;
}

static void check_close(const char *what, const kernel_table *t, int pool_n, const float *got,
                        const float *want, const float *tol, long n) {
    for (long i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= tol[i])) /* also catches NaN */
            fail_msg("%s: table %s, %d threads, element %ld: got %.9g want %.9g (|diff| %.3g > tol %.3g)",
                     what, t->name, pool_n, i, got[i], want[i], d, tol[i]);
    }
}

static void test_tables_exist(void **state) {
    const kernel_table *best = kernels_cpu();
    assert_non_null(best);
    assert_non_null(kernels_cpu_variant("generic"));
    assert_null(kernels_cpu_variant("nope"));
    assert_null(kernels_cpu_variant(NULL));
    int found = 0;
    for (int i = 0; i < N_ISAS; i++) found |= kernels_cpu_variant(k_isas[i]) == best;
    assert_true(found);
    fprintf(stderr, "kernels_cpu() = %s\n", best->name);
}

/* ---- matmul ---- */

static void make_weight(wk_weight *W, void *buf, dtype dt, int64_t rows, int64_t cols) {
    *W = (wk_weight){.data = buf, .dt = dt, .rows = rows, .cols = cols};
    for (int64_t i = 0; i < rows * cols; i++) {
        float v = frand();
        if (dt == DT_F32) ((float *)buf)[i] = v;
        else if (dt == DT_BF16) ((uint16_t *)buf)[i] = f32_to_bf16(v);
        else ((uint16_t *)buf)[i] = f32_to_f16(v);
    }
}

/* Every table (and its packed layout, where it has one) against ref: matmul, or with gelu = 1
   matmul_gelu (ref's matmul then gelu: the matmul's bound below carried through GELU,
   |gelu'| < 1.13, plus gelu's own few ulp of |y|). */
static void mm_case(int64_t rows, int64_t cols, int n, dtype dt, int with_bias, int gelu) {
    void *wbuf = xmalloc((size_t)(rows * cols) * 4);
    wk_weight W;
    make_weight(&W, wbuf, dt, rows, cols);
    float *x = xmalloc((size_t)(n * cols) * 4), *bias = xmalloc((size_t)rows * 4);
    fill(x, n * cols, 1.0f);
    fill(bias, rows, 1.0f);
    const float *b = with_bias ? bias : NULL;
    float *want = xmalloc((size_t)(n * rows) * 4), *got = xmalloc((size_t)(n * rows) * 4);
    float *tol = xmalloc((size_t)(n * rows) * 4), *wrow = xmalloc((size_t)cols * 4);
    kernels_ref()->matmul(NULL, want, x, &W, b, n);
    /* Two summation orders differ by ≤ min(cols+1, 8·√(cols+1))·ε·Σ|x·w|: the first is the
     * worst case; the second the probabilistic bound λ√n·u of Higham & Mary (SIAM J. Sci.
     * Comput. 2019) with λ = 8 (failure odds ~1e-14 per element), for each of the two orders.
     * Plus ε·|y| for the bias add. */
    for (int64_t r = 0; r < rows; r++) {
        kernels_row_to_f32(wrow, &W, r);
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int64_t c = 0; c < cols; c++) s += fabs((double)x[i * cols + c] * wrow[c]);
            double k = fmin((double)(cols + 1), 8.0 * sqrt((double)(cols + 1)));
            const double t = k * FLT_EPSILON * s + FLT_EPSILON * fabs(want[i * rows + r]);
            tol[i * rows + r] = (float)((gelu ? 1.13 * t + 8 * FLT_EPSILON * fabs(want[i * rows + r])
                                              : t) + 1e-30);
        }
    }
    if (gelu) kernels_ref()->matmul_gelu(NULL, want, x, &W, b, n);
    char what[96];
    snprintf(what, sizeof what, "matmul%s %s rows=%ld cols=%ld n=%d bias=%d", gelu ? "_gelu" : "",
             dtype_name(dt), (long)rows, (long)cols, n, with_bias);
    FOR_EACH_TABLE_POOL(t, p) {
        void (*mm)(wk_ctx *, float *, const float *, const wk_weight *, const float *, int) =
            gelu ? t->matmul_gelu : t->matmul;
        assert_non_null(mm);
        for (long i = 0; i < n * rows; i++) got[i] = NAN;
        mm(p, got, x, &W, b, n);
        check_close(what, t, pool_size(p->pool), got, want, tol, n * rows);
        /* and through the table's packed layout where it has one for this type (the f32
           panels of the AVX-512 table), packed by this pool's threads */
        size_t pk_bytes = 0;
        wk_weight Wp = W;
        Wp.packed = t->pack_weight ? t->pack_weight(p, &W, &pk_bytes) : NULL;
        if (Wp.packed) {
            char wp[128];
            snprintf(wp, sizeof wp, "%s (packed)", what);
            for (long i = 0; i < n * rows; i++) got[i] = NAN;
            mm(p, got, x, &Wp, b, n);
            check_close(wp, t, pool_size(p->pool), got, want, tol, n * rows);
            t->buf_free(NULL, (void *)Wp.packed, pk_bytes);
        }
    }
    free(wbuf), free(x), free(bias), free(want), free(got), free(tol), free(wrow);
}
static void matmul_case(int64_t rows, int64_t cols, int n, dtype dt, int with_bias) {
    mm_case(rows, cols, n, dt, with_bias, 0);
}

static void test_matmul_gelu(void **state) {
    (void)state;
    mm_case(1, 5, 1, DT_F32, 1, 1);
    mm_case(33, 64, 3, DT_F32, 0, 1);
    mm_case(257, 896, 17, DT_F32, 1, 1);  /* own GEMM, packed and not */
    mm_case(200, 384, 130, DT_F32, 1, 1); /* several activation chunks of the packed GEMM */
    mm_case(40, 3072, 14, DT_F32, 1, 1);  /* an FFN's long down-projection rows */
    mm_case(67, 64, 13, DT_BF16, 1, 1);
    mm_case(40, 96, 70, DT_F16, 0, 1);
}

/* Precision "fast" (WK_CTX_FAST): on the AVX-512 table, BF16 weights (AVX512_BF16, n >= 6
 * activation rows) and BF16 / F16 weights (AMX-BF16, n >= 1 / 8) with cols % 32 == 0 meet
 * activations rounded to bf16 (nearest even) — cpu_fast_rounds_x says where: the result must
 * be the reference product of the rounded activations (up to summation order). Everywhere
 * else fast is exact: the reference product of x itself. */
static void matmul_fast_case(int64_t rows, int64_t cols, int n, dtype dt) {
    void *wbuf = xmalloc((size_t)(rows * cols) * 2);
    wk_weight W;
    make_weight(&W, wbuf, dt, rows, cols);
    float *x = xmalloc((size_t)(n * cols) * 4), *xr = xmalloc((size_t)(n * cols) * 4);
    fill(x, n * cols, 1.0f);
    for (long i = 0; i < n * cols; i++) xr[i] = bf16_to_f32(f32_to_bf16(x[i]));
    float *want[2] = {xmalloc((size_t)(n * rows) * 4), xmalloc((size_t)(n * rows) * 4)};
    float *got = xmalloc((size_t)(n * rows) * 4), *tol = xmalloc((size_t)(n * rows) * 4);
    float *wrow = xmalloc((size_t)cols * 4);
    kernels_ref()->matmul(NULL, want[0], x, &W, NULL, n);
    kernels_ref()->matmul(NULL, want[1], xr, &W, NULL, n);
    for (int64_t r = 0; r < rows; r++) { /* the summation-order bound of matmul_case */
        kernels_row_to_f32(wrow, &W, r);
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int64_t c = 0; c < cols; c++) s += fabs((double)xr[i * cols + c] * wrow[c]);
            double k = fmin((double)(cols + 1), 8.0 * sqrt((double)(cols + 1)));
            tol[i * rows + r] = (float)(k * FLT_EPSILON * s + 1e-30);
        }
    }
    char what[96];
    FOR_EACH_TABLE_POOL(t, p) {
        wk_ctx fast = *p;
        fast.flags = WK_CTX_FAST;
        const int rounded = strcmp(t->name, "cpu-avx512") == 0 && cpu_fast_rounds_x(dt, cols, n);
        snprintf(what, sizeof what, "matmul fast %s rows=%ld cols=%ld n=%d (%s x)",
                 dt == DT_F16 ? "f16" : "bf16", (long)rows, (long)cols, n,
                 rounded ? "bf16-rounded" : "f32");
        for (long i = 0; i < n * rows; i++) got[i] = NAN;
        t->matmul(&fast, got, x, &W, NULL, n);
        check_close(what, t, pool_size(p->pool), got, want[rounded], tol, n * rows);
    }
    free(wbuf), free(x), free(xr), free(want[0]), free(want[1]), free(got), free(tol), free(wrow);
}

static void test_matmul_fast(void **state) {
    static const int64_t rows[] = {1, 31, 33, 257};
    static const int64_t cols[] = {64, 67, 896};
    static const int ns[] = {1, 2, 3, 8, 16, 29, 64};
    for (int d = 0; d < 2; d++)
        for (int a = 0; a < 4; a++)
            for (int c = 0; c < 3; c++)
                for (int i = 0; i < 7; i++) matmul_fast_case(rows[a], cols[c], ns[i], d ? DT_F16 : DT_BF16);
    /* AMX: row groups of several 32-row blocks with a tail, 2 token slices, a wide input */
    matmul_fast_case(1000, 256, 40, DT_BF16);
    matmul_fast_case(1000, 256, 40, DT_F16);
    matmul_fast_case(96, 4864, 7, DT_F16);
}

static void test_matmul(void **state) {
    static const int64_t rows[] = {1, 7, 33, 257};
    static const int64_t cols[] = {1, 5, 64, 67, 896};
    static const int ns[] = {0, 1, 3, 7, 13, 17, 64}; /* 13: two matvec passes */
    static const dtype dts[] = {DT_F32, DT_BF16, DT_F16};
    int k = 0;
    for (int d = 0; d < 3; d++)
        for (int a = 0; a < 4; a++)
            for (int c = 0; c < 5; c++)
                for (int i = 0; i < 7; i++) matmul_case(rows[a], cols[c], ns[i], dts[d], k++ & 1);
    /* empty matrices: no rows, and no columns (y = bias) */
    for (int d = 0; d < 3; d++) {
        matmul_case(0, 16, 3, dts[d], 1);
        matmul_case(9, 0, 3, dts[d], 1);
        matmul_case(9, 0, 20, dts[d], 1);
        matmul_case(9, 0, 2, dts[d], 0);
    }
    /* decode with more rows than one activation pass holds, and a wide input */
    matmul_case(300, 1000, 6, DT_BF16, 1);
    matmul_case(64, 4864, 2, DT_F16, 0);
    /* the packed GEMM's 2-D split: row blocks of several panels (cols 1536: 2 per block),
       activation chunks of 96 rows, row tails; rows so long that a block is one panel (3072,
       2080) */
    matmul_case(200, 1536, 30, DT_F32, 1);
    matmul_case(97, 3072, 13, DT_F32, 0);
    matmul_case(70, 2080, 30, DT_F32, 1);
}

/* ---- the layer fusions: matmul_multi, matmul_glu, matmul_add ----
 * Each must equal, bit for bit, the plain ops of the same table it replaces (test_matmul holds
 * those to the reference): the fused job runs the same kernels on the same operands, only
 * with one pool job for all its products and the activation / residual add per item. Plain
 * and packed weights (the AVX-512 table's panels), float and quantized types, activation
 * rows across every path's threshold (matvec, direct, packed, GEMM, 96-row chunks). */
static void fused_weight(wk_weight *W, void **buf, dtype dt, int64_t rows, int64_t cols,
                         const kernel_table *t, wk_ctx *p, size_t *pk) {
    if (dtype_is_quant(dt)) {
        const size_t rb = dtype_row_bytes(dt, cols);
        *buf = xmalloc(rb * (size_t)rows);
        float *row = xmalloc((size_t)cols * 4);
        for (int64_t r = 0; r < rows; r++) {
            fill(row, cols, 1.0f);
            quant_quantize_row(dt, (char *)*buf + (size_t)r * rb, row, cols);
        }
        free(row);
        *W = (wk_weight){.data = *buf, .dt = dt, .rows = rows, .cols = cols};
    } else {
        *buf = xmalloc((size_t)(rows * cols) * 4);
        make_weight(W, *buf, dt, rows, cols);
    }
    *pk = 0;
    W->packed = t->pack_weight ? t->pack_weight(p, W, pk) : NULL;
}

static void check_same(const char *what, const kernel_table *t, int threads, const float *got,
                       const float *want, long n) {
    if (memcmp(got, want, (size_t)n * 4) == 0) return;
    for (long i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], 4) != 0)
            fail_msg("%s: table %s, %d threads, element %ld: fused %.9g, plain ops %.9g", what,
                     t->name, threads, i, got[i], want[i]);
}

static void fused_case(dtype dt, int64_t cols, int n, int with_bias) {
    const int64_t rs[3] = {96, 32, 32}, ff = 160;
    FOR_EACH_TABLE_POOL(t, p) {
        if (!t->matmul_multi || !t->matmul_glu || !t->matmul_add) continue;
        const int th = pool_size(p->pool);
        wk_weight W[3], G, U, O;
        void *wb[3], *gb, *ub, *ob;
        size_t pk[3], pg, pu, po;
        for (int i = 0; i < 3; i++) fused_weight(&W[i], &wb[i], dt, rs[i], cols, t, p, &pk[i]);
        fused_weight(&G, &gb, dt, ff, cols, t, p, &pg);
        fused_weight(&U, &ub, dt, ff, cols, t, p, &pu);
        fused_weight(&O, &ob, dt, ff, cols, t, p, &po);
        float *x = xmalloc((size_t)(n * cols) * 4), *bias = xmalloc((size_t)ff * 4);
        fill(x, n * cols, 1.0f), fill(bias, ff, 1.0f);
        const size_t ob_ = (size_t)(n * ff) * 4;
        float *y1[3], *y2[3], *r0 = xmalloc(ob_);
        for (int i = 0; i < 3; i++) y1[i] = xmalloc(ob_), y2[i] = xmalloc(ob_);
        char what[160];
        const wk_weight *Wp[3] = {&W[0], &W[1], &W[2]};
        const float *bp[3] = {with_bias ? bias : NULL, NULL, with_bias ? bias : NULL};
        for (int i = 0; i < 3; i++) t->matmul(p, y1[i], x, &W[i], bp[i], n);
        t->matmul_multi(p, 3, y2, x, Wp, bp, n);
        for (int i = 0; i < 3; i++) {
            snprintf(what, sizeof what, "matmul_multi %s cols=%ld n=%d bias=%d product %d",
                     dtype_name(dt), (long)cols, n, with_bias, i);
            check_same(what, t, th, y2[i], y1[i], (long)n * rs[i]);
        }
        for (int gt = 0; gt < 2; gt++) {
            t->matmul(p, y1[0], x, &G, with_bias ? bias : NULL, n);
            t->matmul(p, y1[1], x, &U, NULL, n);
            (gt ? t->gelu_tanh_mul : t->silu_mul)(p, y1[2], y1[0], y1[1], (long)n * ff);
            t->matmul_glu(p, y2[2], y2[0], y2[1], x, &G, &U, with_bias ? bias : NULL, NULL, gt != 0, n);
            snprintf(what, sizeof what, "matmul_glu %s %s cols=%ld n=%d bias=%d",
                     gt ? "gelu_tanh" : "silu", dtype_name(dt), (long)cols, n, with_bias);
            check_same(what, t, th, y2[2], y1[2], (long)n * ff);
        }
        fill(r0, (long)n * ff, 3.0f);
        memcpy(y1[0], r0, ob_), memcpy(y2[0], r0, ob_);
        t->matmul(p, y1[1], x, &O, with_bias ? bias : NULL, n);
        t->add(p, y1[0], y1[1], (long)n * ff);
        t->matmul_add(p, y2[0], y2[1], x, &O, with_bias ? bias : NULL, n);
        snprintf(what, sizeof what, "matmul_add %s cols=%ld n=%d bias=%d", dtype_name(dt),
                 (long)cols, n, with_bias);
        check_same(what, t, th, y2[0], y1[0], (long)n * ff);
        for (int i = 0; i < 3; i++) {
            if (W[i].packed) t->buf_free(NULL, (void *)W[i].packed, pk[i]);
            free(wb[i]), free(y1[i]), free(y2[i]);
        }
        if (G.packed) t->buf_free(NULL, (void *)G.packed, pg);
        if (U.packed) t->buf_free(NULL, (void *)U.packed, pu);
        if (O.packed) t->buf_free(NULL, (void *)O.packed, po);
        free(gb), free(ub), free(ob), free(x), free(bias), free(r0);
    }
}

static void test_fused(void **state) {
    (void)state;
    static const dtype dts[] = {DT_F32, DT_BF16, DT_F16, DT_Q8_0, DT_Q4_0};
    static const int ns[] = {1, 4, 5, 8, 9, 16, 17, 33, 68, 100};
    for (int d = 0; d < 5; d++)
        for (int i = 0; i < 10; i++) fused_case(dts[d], dtype_is_quant(dts[d]) ? 256 : 96, ns[i], i & 1);
    fused_case(DT_F32, 768, 68, 1); /* the mpnet-shaped encoder's q, k, v */
    fused_case(DT_Q4_0, 896, 16, 0);
}

/* ---- paged KV cache: kv_store and attention ---- */

/* A pool of n_blocks blocks for n_kv heads of hd values of dt, K and V. */
typedef struct kv_fixture {
    wk_kv_layer kv;
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

/* Spans of several sequences with scattered block tables: sequence s has rows ns[s] at pos0s[s]
 * and owns blocks taken from a shuffled list, so no two sequences share a block. */
/* fast = 1: every table runs in precision fast (WK_CTX_FAST). Where cpu_fast_attn_rounds says
 * the AVX-512 table rounds (AMX), its result must be the reference attention of q, K and V
 * rounded to bf16 (nearest even; K and V as widened from the cache), with the bound below
 * plus the rounding of the softmax weights to bf16: out = Σ p̂·v / Σ p, |p̂ − p| ≤ 2^-9·p, so
 * at most 2^-9·max|v| more. Every other table must give the exact result. */
static void attention_case_fast(int n_seq, const int *ns, const int *pos0s, int n_kv, int group,
                                int hd, int window, dtype dt, int bs, float softcap, int fast) {
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
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    wk_span sp[4];
    int r0 = 0, b0 = 0;
    float *row = xmalloc(sizeof(float) * hd);
    for (int s = 0; s < n_seq; s++) {
        sp[s] = (wk_span){r0, ns[s], pos0s[s], perm + b0};
        /* every position the sequence holds: random keys/values stored in dt */
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
    long qn = (long)rows * n_head * hd;
    float *q = xmalloc(qn * 4), *want = xmalloc(qn * 4), *got = xmalloc(qn * 4), *tol = xmalloc(qn * 4);
    float *kr = xmalloc(sizeof(float) * hd), *vr = xmalloc(sizeof(float) * hd);
    fill(q, qn, 2.0f);
    kernels_ref()->attention(NULL, want, q, &f.kv, sp, n_seq, n_head, n_kv, hd, window, scale, softcap);
    /* the rounded problem: q, and K, V in an f32 cache of the same block tables */
    float *qr = NULL, *want_r = NULL, *tol_r = NULL;
    kv_fixture fr;
    if (fast) {
        qr = xmalloc(qn * 4), want_r = xmalloc(qn * 4), tol_r = xmalloc(qn * 4);
        for (long i = 0; i < qn; i++) qr[i] = bf16_to_f32(f32_to_bf16(q[i]));
        kv_fixture_init(&fr, DT_F32, bs, n_kv, hd, n_blocks);
        for (int s = 0; s < n_seq; s++)
            for (int p = 0; p < pos0s[s] + ns[s]; p++)
                for (int h = 0; h < n_kv; h++)
                    for (int w = 0; w < 2; w++) {
                        kernels_kv_row_to_f32(dt, row, kv_row(&f.kv, w ? f.v : f.k, sp[s].blocks, h, p), hd);
                        float *dst = (float *)kv_row(&fr.kv, w ? fr.v : fr.k, sp[s].blocks, h, p);
                        for (int t = 0; t < hd; t++) dst[t] = bf16_to_f32(f32_to_bf16(row[t]));
                    }
        kernels_ref()->attention(NULL, want_r, qr, &fr.kv, sp, n_seq, n_head, n_kv, hd, window, scale,
                                 softcap);
    }
    /* score error ≤ hd·ε·S (S = scale·Σ|q·k|) shifts each softmax weight by that relative
     * amount; exp, the sum over len keys and the weighted sum of V add ≈ (2·len + 8)·ε, all
     * times max|V| (the output is a convex combination of V rows). K and V are the stored
     * values widened to f32, which both sides read identically. */
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
                /* soft-capping: tanh's slope is at most 1, plus its own rounding (≈ 4ε·cap) */
                const double b = FLT_EPSILON * vmax * (2.0 * hd * S + 2.0 * len + 16 + 8.0 * softcap);
                for (int t = 0; t < hd; t++) {
                    tol[((long)rw * n_head + h) * hd + t] = (float)(b + 1e-30);
                    /* the rounded problem's magnitudes are these within 2^-8 */
                    if (fast) tol_r[((long)rw * n_head + h) * hd + t] =
                        (float)(b * 1.01 + ldexp(vmax, -9) * (1 + ldexp(1.0, -8)) + 1e-30);
                }
            }
        }
    char what[160];
    snprintf(what, sizeof what, "attention seqs=%d n0=%d pos0=%d n_kv=%d group=%d hd=%d window=%d "
             "kv=%s bs=%d softcap=%g", n_seq, ns[0], pos0s[0], n_kv, group, hd, window, dtype_name(dt),
             bs, softcap);
    /* per span: rounded (its rows against the rounded problem) or exact */
    float *want_m = fast ? xmalloc(qn * 4) : NULL, *tol_m = fast ? xmalloc(qn * 4) : NULL;
    FOR_EACH_TABLE_POOL(t, pl) {
        for (long i = 0; i < qn; i++) got[i] = NAN;
        wk_ctx c = *pl;
        if (fast) c.flags = WK_CTX_FAST;
        t->attention(&c, got, q, &f.kv, sp, n_seq, n_head, n_kv, hd, window, scale, softcap);
        int any = 0;
        for (int s = 0; fast && s < n_seq; s++) {
            const int r = strcmp(t->name, "cpu-avx512") == 0 && cpu_fast_attn_rounds(hd, group, bs, ns[s]);
            const long a = (long)sp[s].row0 * n_head * hd, b = a + (long)ns[s] * n_head * hd;
            for (long i = a; i < b; i++) want_m[i] = r ? want_r[i] : want[i], tol_m[i] = r ? tol_r[i] : tol[i];
            any |= r;
        }
        char w2[200];
        snprintf(w2, sizeof w2, "%s%s", what, any ? " fast (bf16-rounded spans)" : fast ? " fast (exact)" : "");
        check_close(w2, t, pool_size(pl->pool), got, fast ? want_m : want, fast ? tol_m : tol, qn);
    }
    free(want_m), free(tol_m);
    free(q), free(want), free(got), free(tol), free(kr), free(vr), free(row), free(perm);
    free(f.k), free(f.v);
    if (fast) free(qr), free(want_r), free(tol_r), free(fr.k), free(fr.v);
}

static void attention_case_cap(int n_seq, const int *ns, const int *pos0s, int n_kv, int group,
                               int hd, int window, dtype dt, int bs, float softcap) {
    attention_case_fast(n_seq, ns, pos0s, n_kv, group, hd, window, dt, bs, softcap, 0);
}

static void attention_case(int n_seq, const int *ns, const int *pos0s, int n_kv, int group,
                           int hd, int window, dtype dt, int bs) {
    attention_case_cap(n_seq, ns, pos0s, n_kv, group, hd, window, dt, bs, 0.0f);
}

static void test_attention(void **state) {
    /* (n, pos0): decode, short and long prefills, blocks and 16-key tiles cut mid-way */
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
    /* several sequences in one call (a decode batch, and prefill chunks beside decode rows),
       every KV element type, both block sizes */
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
    const int z = 0, four = 4;
    attention_case(1, &z, &four, 2, 7, 64, 0, DT_F32, 16); /* no query rows */
    /* Gemma 2's soft-capped scores (cap 2 bends most of these scores; 50 barely does) */
    static const float caps[] = {2.0f, 50.0f};
    for (int c = 0; c < 2; c++)
        for (int a = 0; a < 8; a++)
            attention_case_cap(1, &np[a][0], &np[a][1], 2, 2, a % 2 ? 64 : 16, a % 3 ? 0 : 8, DT_F32,
                               16, caps[c]);
    attention_case_cap(3, nm, posm, 2, 2, 64, 20, DT_F16, 32, 2.0f);
}

/* Precision fast: prefill spans on AMX (where the CPU has it) against the rounded reference;
 * decode rows (spans of 1) and other tables exact. */
static void test_attention_fast(void **state) {
    (void)state;
    static const int np[][2] = {{1, 40}, {2, 0}, {17, 3}, {70, 30}, {33, 0}, {100, 200}};
    static const int hds[] = {32, 64, 128, 16};
    static const int groups[] = {1, 7, 16};
    static const int windows[] = {0, 20};
    static const dtype dts[] = {DT_F16, DT_F32, DT_BF16, DT_Q8_0};
    for (int a = 0; a < 6; a++)
        for (int g = 0; g < 3; g++)
            for (int h = 0; h < 4; h++)
                for (int w = 0; w < 2; w++)
                    attention_case_fast(1, &np[a][0], &np[a][1], 2, groups[g], hds[h], windows[w],
                                        hds[h] % 32 ? DT_F16 : dts[(a + h) % 4], (a + g) % 2 ? 32 : 16,
                                        0.0f, 1);
    static const int n2[] = {20, 20}, p2[] = {50, 0};
    attention_case_fast(2, n2, p2, 2, 7, 64, 0, DT_F16, 16, 0.0f, 1);
    attention_case_fast(1, &np[3][0], &np[3][1], 2, 2, 64, 8, DT_F16, 16, 2.0f, 1); /* softcap */
    attention_case_fast(1, &np[2][0], &np[2][1], 1, 8, 256, 0, DT_BF16, 16, 0.0f, 1); /* Gemma's hd */
    /* a prefill chunk beside decode rows (the spans of one row keep the exact path) */
    static const int n3[] = {1, 24, 1}, p3[] = {60, 10, 5};
    attention_case_fast(3, n3, p3, 2, 7, 64, 0, DT_F16, 16, 0.0f, 1);
}

/* kv_store: every table writes exactly the reference's bytes (the same conversions). */
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
        float *k = xmalloc(sizeof(float) * rows * n_kv * hd), *v = xmalloc(sizeof(float) * rows * n_kv * hd);
        fill(k, (long)rows * n_kv * hd, 3.0f), fill(v, (long)rows * n_kv * hd, 1.0f);
        if (dts[d] == DT_F16) { /* the edges of the conversion: rounding ties, overflow, subnormals, NaN */
            static const uint32_t bits[] = {
                0x7fc00000u, 0xffc00001u, 0x7f800001u, 0x7fffffffu, 0xff812345u, 0x7f800000u, 0xff800000u, 0x80000000u,
                0x00000001u, 0x807fffffu, 0x477fefffu, 0x477ff000u, 0x477fe000u, 0xc77ff000u,
                0x38800000u, 0x387fffffu, 0x33800000u, 0x33000000u, 0x33000001u, 0xb3400000u,
                0x3f801000u, 0x3f803000u, 0x3f800fffu, 0x3f801001u, 0x34fff000u, 0x35000800u};
            const int nb = (int)(sizeof bits / sizeof bits[0]);
            for (long i = 0; i < (long)rows * n_kv * hd; i += 7) {
                memcpy(&k[i], &bits[(i / 7) % nb], 4);
                if (i % 3 == 0) memcpy(&v[i], &bits[(i / 7 + 5) % nb], 4);
            }
        }
        kernels_ref()->kv_store(NULL, &want.kv, k, v, sp, 3, n_kv, hd);
        FOR_EACH_TABLE_POOL(t, p) {
            memset(got.k, 0, got.bytes), memset(got.v, 0, got.bytes);
            t->kv_store(p, &got.kv, k, v, sp, 3, n_kv, hd);
            assert_memory_equal(got.k, want.k, want.bytes);
            assert_memory_equal(got.v, want.v, want.bytes);
        }
        /* f32 stores exactly what was given */
        if (dts[d] == DT_F32)
            for (int h = 0; h < n_kv; h++)
                assert_memory_equal(kv_row(&want.kv, want.k, bt[1], h, 5 + 3),
                                    k + ((size_t)(1 + 3) * n_kv + h) * hd, sizeof(float) * hd);
        free(k), free(v), free(want.k), free(want.v), free(got.k), free(got.v);
    }
}

/* ---- rmsnorm, rope, softmax, silu_mul, add, embed ---- */

static void rmsnorm_case(int n, int d, int in_place) {
    long m = (long)n * d;
    float *x = xmalloc(m * 4), *w = xmalloc((size_t)d * 4), *want = xmalloc(m * 4);
    float *got = xmalloc(m * 4), *tol = xmalloc(m * 4);
    fill(x, m, 3.0f), fill(w, d, 1.0f);
    kernels_ref()->rmsnorm(NULL, want, x, w, n, d, 1e-6f);
    /* Σx² reordered: relative error ≤ d·ε, halved by the square root, plus ~6 roundings */
    for (long i = 0; i < m; i++) tol[i] = (float)((d / 2.0 + 8) * FLT_EPSILON * fabs(want[i]) + 1e-30);
    FOR_EACH_TABLE_POOL(t, p) {
        float *o = got;
        if (in_place) memcpy(got, x, m * 4);
        else for (long i = 0; i < m; i++) got[i] = NAN;
        t->rmsnorm(p, o, in_place ? got : x, w, n, d, 1e-6f);
        check_close(in_place ? "rmsnorm in place" : "rmsnorm", t, pool_size(p->pool), got, want, tol, m);
    }
    free(x), free(w), free(want), free(got), free(tol);
}

static void test_rmsnorm(void **state) {
    static const int s[][2] = {{0, 8}, {3, 0}, {1, 1}, {3, 7}, {2, 896}, {33, 64}, {40, 896}, {5, 4864}};
    for (int i = 0; i < 8; i++) {
        rmsnorm_case(s[i][0], s[i][1], 0);
        rmsnorm_case(s[i][0], s[i][1], 1);
    }
}

/* rot: rotated values per head (rot = hd: the whole head; less: partial rotary, the rest of
   each head must come back unchanged) */
static void rope_case_rot(int n, int heads, int hd, int rot) {
    long m = (long)n * heads * hd, half = rot / 2;
    float *x = xmalloc(m * 4), *c = xmalloc(n * half * 4 + 4), *s = xmalloc(n * half * 4 + 4);
    int32_t *pos = xmalloc(sizeof(int32_t) * (n + 1));
    for (int i = 0; i < n; i++) pos[i] = (i * 7 + 3) % n; /* rows at scattered positions */
    float *want = xmalloc(m * 4), *got = xmalloc(m * 4), *tol = xmalloc(m * 4);
    fill(x, m, 2.0f);
    for (long i = 0; i < n * half; i++) {
        float a = frand() * 50.0f;
        c[i] = cosf(a), s[i] = sinf(a);
    }
    memcpy(want, x, m * 4);
    kernels_ref()->rope(NULL, want, n, heads, hd, rot, pos, c, s);
    /* the same two products and one add/sub per element; only contraction into an FMA could
     * differ, by ≤ 2 roundings of terms bounded by |a|+|b|; values past rot: exact */
    for (long i = 0; i < m; i++) tol[i] = 0;
    for (long r = 0; r < (long)n * heads; r++)
        for (long j = 0; j < half; j++) {
            float e = 2 * FLT_EPSILON * (fabsf(x[r * hd + j]) + fabsf(x[r * hd + j + half])) + 1e-30f;
            tol[r * hd + j] = tol[r * hd + j + half] = e;
        }
    for (long r = 0; r < (long)n * heads; r++)
        for (long j = rot; j < hd; j++)
            if (want[r * hd + j] != x[r * hd + j]) fail_msg("ref rope changed value %ld past rot %d", j, rot);
    FOR_EACH_TABLE_POOL(t, p) {
        memcpy(got, x, m * 4);
        t->rope(p, got, n, heads, hd, rot, pos, c, s);
        check_close("rope", t, pool_size(p->pool), got, want, tol, m);
    }
    free(x), free(c), free(s), free(want), free(got), free(tol), free(pos);
}

static void rope_case(int n, int heads, int hd) { rope_case_rot(n, heads, hd, hd & ~1); }

static void test_rope(void **state) {
    static const int s[][3] = {{0, 2, 16}, {1, 1, 2}, {3, 2, 6}, {1, 14, 64}, {9, 14, 128},
                               {20, 14, 64}, {2, 3, 10}, {4, 2, 40}};
    for (int i = 0; i < 8; i++) rope_case(s[i][0], s[i][1], s[i][2]);
    /* partial rotary (Phi-4-mini: 0.75 of 128) */
    rope_case_rot(5, 3, 128, 96);
    rope_case_rot(7, 2, 16, 12);
    rope_case_rot(3, 4, 64, 2);
}

static void test_softmax(void **state) {
    static const int ns[] = {1, 2, 7, 16, 17, 33, 100, 1000, 4099};
    float *x = xmalloc(4099 * 4), *want = xmalloc(4099 * 4), *got = xmalloc(4099 * 4);
    float *tol = xmalloc(4099 * 4);
    for (int i = 0; i < 9; i++)
        for (int sc = 0; sc < 3; sc++) {
            int n = ns[i];
            fill(x, n, sc == 0 ? 1.0f : sc == 1 ? 30.0f : 200.0f);
            memcpy(want, x, n * 4);
            kernels_ref()->softmax(want, n);
            /* exp ≤ 2 ulp apart; the sum of n terms ≤ n·ε; the final scale 1 rounding */
            for (int j = 0; j < n; j++) tol[j] = (float)((n + 8) * FLT_EPSILON * fabs(want[j]) + 1e-37);
            for (int ti = 0; ti < N_ISAS; ti++) {
                const kernel_table *t = kernels_cpu_variant(k_isas[ti]);
                if (!t) continue;
                memcpy(got, x, n * 4);
                t->softmax(got, n);
                check_close("softmax", t, 1, got, want, tol, n);
            }
        }
    FOR_EACH_TABLE_POOL(t, p) t->softmax(x, 0); /* empty: must not touch x */
    free(x), free(want), free(got), free(tol);
}

static void test_silu_add(void **state) {
    static const long ns[] = {0, 1, 7, 16, 33, 1000, 70001};
    for (int k = 0; k < 7; k++) {
        long n = ns[k];
        float *g = xmalloc(n * 4), *u = xmalloc(n * 4), *want = xmalloc(n * 4);
        float *got = xmalloc(n * 4), *tol = xmalloc(n * 4);
        fill(g, n, 10.0f), fill(u, n, 2.0f);
        /* exp's edges: overflow, subnormal results, exact zero */
        static const float edge[] = {-110.f, -89.f, -88.7f, -87.f, 0.f, 87.f, 88.7f, 89.f, 104.f, 110.f};
        for (long i = 0; i < n && i < 10; i++) g[i] = edge[i];
        kernels_ref()->silu_mul(NULL, want, g, u, n);
        /* exp within 2 ulp plus 1 + e, the division and the product: ≤ 6 roundings */
        for (long i = 0; i < n; i++) tol[i] = (float)(6 * FLT_EPSILON * fabs(want[i]) + 1e-37);
        FOR_EACH_TABLE_POOL(t, p) {
            memcpy(got, g, n * 4); /* in place: out aliases gate */
            t->silu_mul(p, got, got, u, n);
            check_close("silu_mul", t, pool_size(p->pool), got, want, tol, n);
        }
        kernels_ref()->gelu_tanh_mul(NULL, want, g, u, n);
        /* the same formula in every table (tanhf, products): equal up to a few roundings */
        for (long i = 0; i < n; i++) tol[i] = (float)(8 * FLT_EPSILON * fabs(want[i]) + 1e-37);
        FOR_EACH_TABLE_POOL(t, p) {
            memcpy(got, g, n * 4);
            t->gelu_tanh_mul(p, got, got, u, n);
            check_close("gelu_tanh_mul", t, pool_size(p->pool), got, want, tol, n);
        }
        memcpy(want, g, n * 4);
        kernels_ref()->softcap(NULL, want, n, 3.0f);
        for (long i = 0; i < n; i++) tol[i] = (float)(4 * FLT_EPSILON * fabs(want[i]) + 1e-37);
        FOR_EACH_TABLE_POOL(t, p) {
            memcpy(got, g, n * 4);
            t->softcap(p, got, n, 3.0f);
            check_close("softcap", t, pool_size(p->pool), got, want, tol, n);
        }
        memcpy(want, u, n * 4);
        kernels_ref()->add(NULL, want, g, n);
        FOR_EACH_TABLE_POOL(t, p) {
            memcpy(got, u, n * 4);
            t->add(p, got, g, n);
            assert_memory_equal(got, want, n * 4);
        }
        /* axpy: the product rounded, then the sum, in every table */
        memcpy(want, u, n * 4);
        kernels_ref()->axpy(NULL, want, 0.37f, g, n);
        FOR_EACH_TABLE_POOL(t, p) {
            memcpy(got, u, n * 4);
            t->axpy(p, got, 0.37f, g, n);
            assert_memory_equal(got, want, n * 4);
        }
        free(g), free(u), free(want), free(got), free(tol);
    }
}

/* Encoder ops: exact GELU (libmvec's erff on AVX2/AVX-512, ≤ 4 ulp, against libm's), LayerNorm and
   bidirectional attention over packed sequences, with and without MPNet's relative bias,
   lengths 1..80 (odd, below and above a vector), head_dim 8, 32, 64. */
static void test_encoder_ops(void **state) {
    (void)state;
    static const long ns[] = {0, 1, 15, 16, 17, 1000, 70001};
    for (int k = 0; k < 7; k++) {
        const long n = ns[k];
        float *x = xmalloc(n * 4), *want = xmalloc(n * 4), *got = xmalloc(n * 4), *tol = xmalloc(n * 4);
        fill(x, n, 6.0f);
        static const float edge[] = {-10.f, -5.5f, -1e-20f, 0.f, 1e-20f, 0.5f, 3.9f, 10.f, -0.f};
        for (long i = 0; i < n && i < 9; i++) x[i] = edge[i];
        memcpy(want, x, n * 4);
        kernels_ref()->gelu(NULL, want, n);
        /* erf within 4 ulp of libm's, times x/2 (≤ 1): a few ulp of |x| at most */
        for (long i = 0; i < n; i++) tol[i] = (float)(8 * FLT_EPSILON * fabs(x[i]) + 1e-37);
        FOR_EACH_TABLE_POOL(t, p) {
            memcpy(got, x, n * 4);
            t->gelu(p, got, n);
            check_close("gelu", t, pool_size(p->pool), got, want, tol, n);
        }
        free(x), free(want), free(got), free(tol);
    }
    /* layernorm with and without the residual, rows with a large mean (the statistics are
       double in every table, in the same order: equal up to the f32 output rounding) */
    static const int lnd[][2] = {{0, 8}, {1, 1}, {3, 384}, {67, 768}, {5, 33}};
    for (int c = 0; c < 5; c++) {
        const int n = lnd[c][0], d = lnd[c][1];
        for (int res = 0; res < 2; res++) {
            float *x = xmalloc((long)n * d * 4), *r = xmalloc((long)n * d * 4), *w = xmalloc(d * 4),
                  *b = xmalloc(d * 4), *want = xmalloc((long)n * d * 4), *got = xmalloc((long)n * d * 4),
                  *tol = xmalloc((long)n * d * 4);
            fill(x, (long)n * d, 3.0f), fill(r, (long)n * d, 1.0f), fill(w, d, 1.0f), fill(b, d, 0.5f);
            for (long i = 0; i < (long)n * d; i++) x[i] += 1000.0f;
            memcpy(want, x, (long)n * d * 4);
            kernels_ref()->layernorm(NULL, want, res ? r : NULL, w, b, n, d, 1e-12f);
            for (long i = 0; i < (long)n * d; i++) tol[i] = (float)(2 * FLT_EPSILON * fabs(want[i]) + 1e-6);
            FOR_EACH_TABLE_POOL(t, p) {
                memcpy(got, x, (long)n * d * 4);
                t->layernorm(p, got, res ? r : NULL, w, b, n, d, 1e-12f);
                check_close("layernorm", t, pool_size(p->pool), got, want, tol, (long)n * d);
            }
            free(x), free(r), free(w), free(b), free(want), free(got), free(tol);
        }
    }
    static const int hds[] = {8, 32, 64};
    static const int lens_all[] = {1, 7, 16, 17, 80, 3, 33};
    for (int hi = 0; hi < 3; hi++)
        for (int bias = 0; bias < 2; bias++)
            for (int ns_ = 0; ns_ <= 7; ns_ += 7) { /* no sequence, then seven */
                const int hd = hds[hi], nh = 3, ld = nh * hd, max_tokens = 80, nb = 8;
                long T = 0;
                for (int i = 0; i < ns_; i++) T += lens_all[i];
                float *q = xmalloc(T * ld * 4), *kk = xmalloc(T * ld * 4), *v = xmalloc(T * ld * 4);
                float *want = xmalloc(T * ld * 4), *got = xmalloc(T * ld * 4), *tol = xmalloc(T * ld * 4);
                float rb[nb * 3];
                int32_t bucket[2 * 80 - 1];
                fill(q, T * ld, 1.0f), fill(kk, T * ld, 1.0f), fill(v, T * ld, 1.0f), fill(rb, nb * 3, 2.0f);
                for (int r = 0; r < 2 * max_tokens - 1; r++) bucket[r] = (r * 7) % nb;
                const float scale = 1.0f / sqrtf((float)hd);
                kernels_ref()->attention_enc(NULL, want, q, kk, v, lens_all, ns_, nh, hd, scale,
                                             bias ? rb : NULL, bucket, max_tokens);
                /* outputs are convex mixes of v (|v| < 1): the scores' rounding moves them by
                   a few ulp of 1 */
                for (long i = 0; i < T * ld; i++) tol[i] = 3e-6f;
                FOR_EACH_TABLE_POOL(t, p) {
                    memset(got, 0xff, T * ld * 4); /* NaN: every output must be written */
                    t->attention_enc(p, got, q, kk, v, lens_all, ns_, nh, hd, scale,
                                     bias ? rb : NULL, bucket, max_tokens);
                    check_close(bias ? "attention_enc (bias)" : "attention_enc", t,
                                pool_size(p->pool), got, want, tol, T * ld);
                }
                free(q), free(kk), free(v), free(want), free(got), free(tol);
            }
}

static void test_embed(void **state) {
    static const int64_t cols[] = {0, 1, 7, 64, 896};
    static const int ns[] = {0, 1, 5, 40};
    static const dtype dts[] = {DT_F32, DT_BF16, DT_F16};
    int32_t ids[40];
    for (int d = 0; d < 3; d++)
        for (int c = 0; c < 5; c++)
            for (int k = 0; k < 4; k++) {
                int n = ns[k];
                wk_weight W;
                void *buf = xmalloc((size_t)(50 * cols[c]) * 4);
                make_weight(&W, buf, dts[d], 50, cols[c]);
                for (int i = 0; i < n; i++) ids[i] = (int32_t)((i * 37 + 11) % 50);
                float *want = xmalloc((size_t)(n * cols[c]) * 4), *got = xmalloc((size_t)(n * cols[c]) * 4);
                kernels_ref()->embed(NULL, want, &W, ids, n);
                FOR_EACH_TABLE_POOL(t, p) {
                    memset(got, 0xff, (size_t)(n * cols[c]) * 4);
                    t->embed(p, got, &W, ids, n);
                    assert_memory_equal(got, want, (size_t)(n * cols[c]) * 4);
                }
                free(buf), free(want), free(got);
            }
}

/* LoRA over several runs (different ranks, rows, a kept t): every table within the bound of
 * two f32 dot products in another order (t: in terms; u: r terms), times |scale|. With bf16,
 * A and B are bf16 matrices (lora/'s copies in precision fast): ref must give bit for bit what
 * it gives for f32 matrices holding the same (rounded) values, and every table the same bound. */
static void lora_case(bool bf16) {
    const int in = 67, out = 300, rows = 23;
    float *x = xmalloc(sizeof(float) * rows * in), *y0 = xmalloc(sizeof(float) * rows * out);
    float *want = xmalloc(sizeof(float) * rows * out), *got = xmalloc(sizeof(float) * rows * out);
    float *tol = xmalloc(sizeof(float) * rows * out);
    float *A[3], *B[3], *scr = xmalloc(sizeof(float) * rows * 40), *keep = xmalloc(sizeof(float) * 9 * 5);
    float *keep_ref = xmalloc(sizeof(float) * 9 * 5);
    const int rk[3] = {8, 40, 5}; /* 40: two whole 16-column chunks of B and a part (cpu_a5_lora_u) */
    wk_weight WA[3], WB[3], FA[3], FB[3];
    uint16_t *Ah[3] = {NULL}, *Bh[3] = {NULL};
    fill(x, (long)rows * in, 1.0f), fill(y0, (long)rows * out, 1.0f);
    for (int k = 0; k < 3; k++) {
        A[k] = xmalloc(sizeof(float) * rk[k] * in), B[k] = xmalloc(sizeof(float) * out * rk[k]);
        fill(A[k], (long)rk[k] * in, 0.2f), fill(B[k], (long)out * rk[k], 0.05f);
        WA[k] = FA[k] = (wk_weight){A[k], DT_F32, rk[k], in, NULL};
        WB[k] = FB[k] = (wk_weight){B[k], DT_F32, out, rk[k], NULL};
        if (bf16) { /* A[k], B[k] keep the rounded values, for the bounds and the f32 twin */
            Ah[k] = xmalloc(sizeof(uint16_t) * rk[k] * in), Bh[k] = xmalloc(sizeof(uint16_t) * out * rk[k]);
            for (long i = 0; i < (long)rk[k] * in; i++)
                Ah[k][i] = f32_to_bf16(A[k][i]), A[k][i] = bf16_to_f32(Ah[k][i]);
            for (long i = 0; i < (long)out * rk[k]; i++)
                Bh[k][i] = f32_to_bf16(B[k][i]), B[k][i] = bf16_to_f32(Bh[k][i]);
            WA[k] = (wk_weight){Ah[k], DT_BF16, rk[k], in, NULL};
            WB[k] = (wk_weight){Bh[k], DT_BF16, out, rk[k], NULL};
        }
    }
    wk_lora_run runs[3] = {{0, 3, &WA[0], &WB[0], 2.0f, NULL},
                           {5, 9, &WA[2], &WB[2], -0.5f, keep_ref},
                           {14, 9, &WA[1], &WB[1], 1.25f, NULL}};
    memcpy(want, y0, sizeof(float) * rows * out);
    kernels_ref()->lora(NULL, want, x, runs, 3, scr);
    if (bf16) { /* the reference on bf16 matrices = on f32 matrices of the same values */
        wk_lora_run twin[3] = {{0, 3, &FA[0], &FB[0], 2.0f, NULL},
                               {5, 9, &FA[2], &FB[2], -0.5f, NULL},
                               {14, 9, &FA[1], &FB[1], 1.25f, NULL}};
        memcpy(got, y0, sizeof(float) * rows * out);
        kernels_ref()->lora(NULL, got, x, twin, 3, scr);
        assert_memory_equal(got, want, sizeof(float) * rows * out);
    }
    for (long i = 0; i < (long)rows * out; i++) tol[i] = 1e-30f;
    for (int k = 0; k < 3; k++)
        for (int i = runs[k].row0; i < runs[k].row0 + runs[k].n; i++)
            for (int o = 0; o < out; o++) {
                double su = 0;
                for (int j = 0; j < rk[k]; j++) {
                    double st = 0;
                    for (int c = 0; c < in; c++) st += fabs((double)x[i * in + c] * A[k][j * in + c]);
                    su += (in + 2) * FLT_EPSILON * st * fabs(B[k][o * rk[k] + j]) + FLT_EPSILON * st * fabs(B[k][o * rk[k] + j]) * (rk[k] + 2);
                }
                tol[i * out + o] = (float)(fabs(runs[k].scale) * su + 2 * FLT_EPSILON * fabs(want[i * out + o]) + 1e-30);
            }
    runs[1].t = keep;
    FOR_EACH_TABLE_POOL(t, p) {
        memcpy(got, y0, sizeof(float) * rows * out);
        t->lora(p, got, x, runs, 3, scr);
        check_close("lora", t, pool_size(p->pool), got, want, tol, (long)rows * out);
        for (int i = 0; i < 9 * 5; i++) assert_true(fabsf(keep[i] - keep_ref[i]) <= 1e-5f * (1 + fabsf(keep_ref[i])));
        t->lora(p, got, x, runs, 0, scr); /* no runs: nothing */
    }
    /* adjacent runs whose ranks fall (40, then 8, then 5): every run's x·Aᵀ must have its
       own scratch rows, however the ranks differ (row0·r_max, not row0·r) */
    wk_lora_run adj[3] = {{0, 6, &WA[1], &WB[1], 1.0f, NULL},
                          {6, 7, &WA[0], &WB[0], 0.75f, NULL},
                          {13, 10, &WA[2], &WB[2], -1.5f, NULL}};
    memcpy(want, y0, sizeof(float) * rows * out);
    kernels_ref()->lora(NULL, want, x, adj, 3, scr);
    for (long i = 0; i < (long)rows * out; i++) tol[i] = 1e-4f * (1 + fabsf(want[i]));
    FOR_EACH_TABLE_POOL(t, p) {
        memcpy(got, y0, sizeof(float) * rows * out);
        t->lora(p, got, x, adj, 3, scr);
        check_close("lora, adjacent runs of falling rank", t, pool_size(p->pool), got, want, tol,
                    (long)rows * out);
    }
    for (int k = 0; k < 3; k++) free(A[k]), free(B[k]), free(Ah[k]), free(Bh[k]);
    free(x), free(y0), free(want), free(got), free(tol), free(scr), free(keep), free(keep_ref);
}

static void test_lora(void **state) {
    lora_case(false);
    lora_case(true);
}

static void test_gather_rows(void **state) {
    float src[7 * 5], want[4 * 5], got[4 * 5];
    fill(src, 35, 1.0f);
    const int32_t idx[4] = {6, 0, 6, 3};
    kernels_ref()->gather_rows(NULL, want, src, idx, 4, 5);
    for (int i = 0; i < 4; i++) assert_memory_equal(want + 5 * i, src + 5 * idx[i], 20);
    FOR_EACH_TABLE_POOL(t, p) {
        memset(got, 0, sizeof got);
        t->gather_rows(p, got, src, idx, 4, 5);
        assert_memory_equal(got, want, sizeof want);
        t->gather_rows(p, got, src, idx, 0, 5);
    }
}

/* scatter_rows: first terms written, later ones added (rounded products), on every table as
   the reference; and the reference against its definition */
static void test_scatter_rows(void **state) {
    float src[4 * 5], y0[7 * 5], want[7 * 5], got[7 * 5];
    fill(src, 20, 1.0f);
    fill(y0, 35, 2.0f);
    const int32_t idx[4] = {-7, 2, -1, 5}; /* rows 6 and 0 written, 2 and 5 added */
    const float w[4] = {0.25f, -1.5f, 0.7f, 3.0f};
    memcpy(want, y0, sizeof want);
    kernels_ref()->scatter_rows(NULL, want, src, idx, w, 4, 5);
    for (int r = 0; r < 7; r++)
        for (int c = 0; c < 5; c++) {
            float e = y0[r * 5 + c];
            for (int i = 0; i < 4; i++) {
                const int row = idx[i] < 0 ? -(idx[i] + 1) : idx[i];
                const float t = src[i * 5 + c] * w[i];
                if (row == r) e = idx[i] < 0 ? t : e + t;
            }
            assert_true(want[r * 5 + c] == e);
        }
    FOR_EACH_TABLE_POOL(t, p) {
        memcpy(got, y0, sizeof got);
        t->scatter_rows(p, got, src, idx, w, 4, 5);
        assert_memory_equal(got, want, sizeof want);
        t->scatter_rows(p, got, src, idx, w, 0, 5);
        assert_memory_equal(got, want, sizeof want);
    }
}

/* WICK_PROFILE: the timing table forwards every op unchanged (same results as the table it
   wraps), stays a host table, and is not applied without the variable. */
static void test_profiled(void **state) {
    (void)state;
    const kernel_table *ref = kernels_ref();
    unsetenv("WICK_PROFILE");
    assert_ptr_equal(kernels_profiled(ref), ref);
    setenv("WICK_PROFILE", "1", 1);
    const kernel_table *t = kernels_profiled(ref);
    unsetenv("WICK_PROFILE");
    assert_ptr_not_equal(t, ref);
    assert_true(kernels_is_host(t));
    float w[6 * 64], x[3 * 64], want[3 * 6], got[3 * 6], g[5 * 64], u[5 * 64], o1[5 * 64], o2[5 * 64];
    fill(w, 6 * 64, 0.5f), fill(x, 3 * 64, 1.0f), fill(g, 5 * 64, 2.0f), fill(u, 5 * 64, 1.0f);
    const wk_weight W = {w, DT_F32, 6, 64, NULL};
    ref->matmul(NULL, want, x, &W, NULL, 3);
    t->matmul(NULL, got, x, &W, NULL, 3);
    assert_memory_equal(got, want, sizeof want);
    ref->silu_mul(NULL, o1, g, u, 5 * 64);
    t->silu_mul(NULL, o2, g, u, 5 * 64);
    assert_memory_equal(o1, o2, sizeof o1);
    ref->rmsnorm(NULL, o1, g, u, 5, 64, 1e-6f);
    t->rmsnorm(NULL, o2, g, u, 5, 64, 1e-6f);
    assert_memory_equal(o1, o2, sizeof o1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_profiled),
        cmocka_unit_test(test_tables_exist), cmocka_unit_test(test_matmul), cmocka_unit_test(test_matmul_fast), cmocka_unit_test(test_matmul_gelu),
        cmocka_unit_test(test_fused),
        cmocka_unit_test(test_attention),    cmocka_unit_test(test_attention_fast),
        cmocka_unit_test(test_kv_store),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),         cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_silu_add),     cmocka_unit_test(test_embed),
        cmocka_unit_test(test_encoder_ops),
        cmocka_unit_test(test_gather_rows), cmocka_unit_test(test_scatter_rows),
        cmocka_unit_test(test_lora),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
