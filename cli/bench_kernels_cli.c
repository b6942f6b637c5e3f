/* bench_kernels_cli.c — timing table for the CPU kernel table (`wick bench kernels` and the
 * bench/bench_kernels program, which includes this file so both run the same measurements),
 * with the machine's limits measured in the same run: decode matvec in GB/s of weight bytes
 * against the read bandwidth of a 512 MB buffer summed with the same thread count; prefill
 * matmul in GFLOP/s against OpenBLAS sgemm called directly with its own threads (the
 * alternative threading design); small ops against the scalar reference table. Weight types
 * F32, BF16, F16 and the quantized Q8_0, Q4_0, Q4_K, Q6_K.
 *
 * usage: [-t threads] [--isa avx512|avx2|generic] [--quick]
 *   --quick (-q): skip the 151936-row shapes and n=512
 * Times are the median of repeats (at least 3, until ~0.3 s per row). Not a test: it checks
 * nothing; tests/test_kernels.c and tests/test_quant.c own correctness. */
#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/pool.h"
#include "kernels/kernels.h"
#include "kernels/quant.h"

int bench_kernels_run(int argc, char **argv);

const kernel_table *kernels_cpu_variant(const char *isa); /* kernels/cpu/cpu.c */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds per call of fn(ctx): one warm-up call, then at least 3 repeats and up to
 * ~0.3 s (at most 200). */
typedef void (*bench_fn)(void *ctx);
static double time_median(bench_fn fn, void *ctx) {
    double t[200];
    int n = 0;
    fn(ctx);
    double start = now_s();
    while (n < 200 && (n < 3 || now_s() - start < 0.3)) {
        double t0 = now_s();
        fn(ctx);
        t[n++] = now_s() - t0;
    }
    qsort(t, (size_t)n, sizeof t[0], cmp_d);
    return t[n / 2];
}

/* ---- memory read bandwidth ---- */

typedef struct bw_ctx { const float *buf; long n; double part[64]; } bw_ctx;

/* Sums with 8 independent 8-float vectors (GCC vector extension; SSE2 at baseline flags)
 * so the loop is bound by memory, not by add latency. */
typedef float v8f __attribute__((vector_size(32)));
static inline __attribute__((always_inline)) void bw_body(void *vctx, int tid, int nt) {
    bw_ctx *c = vctx;
    long lo, hi;
    pool_split(c->n, nt, tid, 1024, &lo, &hi);
    v8f s[8] = {{0}};
    for (long i = lo; i + 64 <= hi; i += 64)
        for (int k = 0; k < 8; k++) {
            v8f v;
            memcpy(&v, c->buf + i + 8 * k, sizeof v);
            s[k] += v;
        }
    double tot = 0;
    for (int k = 0; k < 8; k++)
        for (int j = 0; j < 8; j++) tot += s[k][j];
    c->part[tid & 63] = tot;
}

static void bw_task(void *vctx, int tid, int nt) { bw_body(vctx, tid, nt); }

/* The same loop with AVX2 loads where the CPU has them (the bench is built for baseline
 * x86-64, so this is chosen at run time); the faster of the two is the bandwidth. */
__attribute__((target("avx2"))) static void bw_task_avx2(void *vctx, int tid, int nt) {
    bw_body(vctx, tid, nt);
}

static wk_pool *g_pool;
static wk_ctx g_ctx;
static const kernel_table *g_t;

static void bw_call_avx2(void *ctx) { pool_run(g_pool, bw_task_avx2, ctx); }
static void bw_call(void *ctx) { pool_run(g_pool, bw_task, ctx); }

/* ---- matmul ---- */

typedef struct mm_b { const kernel_table *t; float *y; const float *x; wk_weight W; int n; } mm_b;
static void mm_call(void *v) {
    mm_b *c = v;
    c->t->matmul(&g_ctx, c->y, c->x, &c->W, NULL, c->n);
}
static void sgemm_call(void *v) { /* OpenBLAS threading instead of the pool */
    mm_b *c = v;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->n, (int)c->W.rows, (int)c->W.cols,
                1.0f, c->x, (int)c->W.cols, c->W.data, (int)c->W.cols, 0.0f, c->y,
                (int)c->W.rows);
}

/* A rows x cols weight of dt with small pseudo-random values; NULL when out of memory. */
static void *make_weight(dtype dt, long rows, long cols, size_t *bytes) {
    *bytes = dtype_is_quant(dt) ? dtype_row_bytes(dt, cols) * (size_t)rows
                                : (size_t)rows * cols * dtype_size(dt);
    void *buf = malloc(*bytes);
    float *row = malloc((size_t)cols * sizeof(float));
    if (!buf || !row) {
        free(buf), free(row);
        return NULL;
    }
    uint32_t s = 12345;
    for (long r = 0; r < rows; r++) {
        for (long c = 0; c < cols; c++) {
            s = s * 1664525u + 1013904223u;
            row[c] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.1f;
        }
        if (dtype_is_quant(dt)) {
            quant_quantize_row(dt, (char *)buf + dtype_row_bytes(dt, cols) * (size_t)r, row, cols);
            continue;
        }
        for (long c = 0; c < cols; c++) {
            const long i = r * cols + c;
            if (dt == DT_F32) ((float *)buf)[i] = row[c];
            else if (dt == DT_BF16) ((uint16_t *)buf)[i] = f32_to_bf16(row[c]);
            else ((uint16_t *)buf)[i] = f32_to_f16(row[c]);
        }
    }
    free(row);
    return buf;
}

/* ---- other ops (decode-sized, one row) ---- */

typedef struct op_b {
    const kernel_table *t;
    int which;
    float *a, *b, *c, *scratch;
    int n;
} op_b;

enum { OP_RMS, OP_SILU, OP_ADD, OP_SOFTMAX, OP_ATT, OP_ROPE, OP_ATT_PREFILL };
static int32_t g_blocks[8192 / 16]; /* identity block table over the K/V buffer */
static const int32_t g_pos0 = 0;
static void op_call(void *v) {
    op_b *o = v;
    /* K and V (f32, 2 heads of 64, blocks of 16) both read from o->c */
    const wk_kv_layer kv = {o->c, o->c, DT_F32, 16, 64 * sizeof(float), 2 * 16 * 64 * sizeof(float)};
    switch (o->which) {
    case OP_RMS: o->t->rmsnorm(&g_ctx, o->a, o->b, o->c, 1, o->n, 1e-6f); break;
    case OP_SILU: o->t->silu_mul(&g_ctx, o->a, o->b, o->c, o->n); break;
    case OP_ADD: o->t->add(&g_ctx, o->a, o->b, o->n); break;
    case OP_SOFTMAX: memcpy(o->a, o->b, (size_t)o->n * 4); o->t->softmax(o->a, o->n); break;
    case OP_ATT: { /* decode: 1 query row at position n-1, 14 heads, 2 KV heads, head_dim 64 */
        const wk_span sp = {0, 1, o->n - 1, g_blocks};
        o->t->attention(&g_ctx, o->a, o->b, &kv, &sp, 1, 14, 2, 64, 0, 0.125f, 0.0f);
        break;
    }
    case OP_ROPE: o->t->rope(&g_ctx, o->a, 1, 14, 64, 64, &g_pos0, o->b, o->c); break;
    case OP_ATT_PREFILL: { /* a 512-token prompt: q (512, 14*64) */
        const wk_span sp = {0, o->n, 0, g_blocks};
        o->t->attention(&g_ctx, o->a, o->b, &kv, &sp, 1, 14, 2, 64, 0, 0.125f, 0.0f);
        break;
    }
    }
}

int bench_kernels_run(int argc, char **argv) {
    int threads = 2, quick = 0;
    const char *isa = NULL, *only_dt = NULL;
    int ns[16] = {64, 128, 512}, n_ns = 3;
    bool rows_set = false;
    long shapes[8][2] = {{896, 896}, {4864, 896}, {896, 4864}, {151936, 896}};
    int n_shapes = 4, shapes_set = 0;
    for (int i = 1; i < argc; i++) {
        const bool help = !strcmp(argv[i], "-h") || !strcmp(argv[i], "--help");
        if ((!strcmp(argv[i], "-t") || !strcmp(argv[i], "--threads")) && i + 1 < argc) {
            char *end;
            long t = strtol(argv[i + 1], &end, 10);
            if (end == argv[i + 1] || *end || t < 1 || t > 1024) {
                fprintf(stderr, "wick bench kernels: %s expects an integer in [1, 1024], got "
                                "'%s'\n", argv[i], argv[i + 1]);
                return 2;
            }
            threads = (int)t;
            i++;
        } else if ((!strcmp(argv[i], "-isa") || !strcmp(argv[i], "--isa")) && i + 1 < argc)
            isa = argv[++i];
        else if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            only_dt = argv[++i];
            static const char *const known[] = {"f32", "bf16", "f16", "q8_0", "q4_0", "q5_0", "q4_k", "q6_k"};
            bool ok = false;
            for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) ok |= !strcasecmp(only_dt, known[k]);
            if (!ok) {
                fprintf(stderr, "wick bench kernels: --dtype '%s' is not a weight type (f32, bf16, "
                                "f16, q8_0, q4_0, q5_0, q4_k, q6_k)\n", only_dt);
                return 2;
            }
        } else if (!strcmp(argv[i], "--rows") && i + 1 < argc) {
            /* activation rows of the matmul table: a comma list of 1..512, at most 16 */
            const char *p = argv[++i];
            n_ns = 0;
            rows_set = true;
            for (;;) {
                char *end;
                long v = strtol(p, &end, 10);
                if (end == p || v < 1 || v > 512 || n_ns == 16 || (*end && *end != ',')) {
                    fprintf(stderr, "wick bench kernels: --rows expects a comma list of up to 16 "
                                    "integers in [1, 512], got '%s'\n", argv[i]);
                    return 2;
                }
                ns[n_ns++] = (int)v;
                if (!*end) break;
                p = end + 1;
            }
        } else if (!strcmp(argv[i], "--shapes") && i + 1 < argc) {
            /* weight shapes ROWSxCOLS, a comma list of at most 8 (e.g. an encoder's) */
            const char *p = argv[++i];
            n_shapes = 0;
            shapes_set = 1;
            for (;;) {
                char *end, *end2 = NULL;
                long r = strtol(p, &end, 10), c = *end == 'x' ? strtol(end + 1, &end2, 10) : 0;
                if (end == p || *end != 'x' || end2 == end + 1 || r < 1 || r > 262144 || c < 1 ||
                    c > 8192 || n_shapes == 8 || (*end2 && *end2 != ',')) {
                    fprintf(stderr, "wick bench kernels: --shapes expects a comma list of up to 8 "
                                    "ROWSxCOLS (rows 1..262144, cols 1..8192), got '%s'\n", argv[i]);
                    return 2;
                }
                shapes[n_shapes][0] = r, shapes[n_shapes][1] = c;
                n_shapes++;
                if (!*end2) break;
                p = end2 + 1;
            }
        } else {
            FILE *f = help ? stdout : stderr;
            if (!help) fprintf(stderr, "wick bench kernels: unknown option '%s'\n", argv[i]);
            fprintf(f, "usage: wick bench kernels [-t|--threads N] [--isa avx512|avx2|generic] "
                       "[--quick]\n                          [--dtype TYPE] [--rows N,N,...] [--shapes RxC,...]\n"
                       "  per-kernel GB/s (decode) and GFLOP/s (prefill) against this machine's "
                       "limits\n  (-isa and -q, the old spellings, still work; -q here means "
                       "--quick)\n  --dtype: only that weight type; --rows: the matmul table's "
                       "activation rows\n  (default 64,128,512; --quick drops 512); --shapes: the weight shapes (default\n  the 0.5B's 896x896,4864x896,896x4864 and its LM head 151936x896; a shape of more than\n  100000 rows is an LM head: decode table only)\n");
            return help ? 0 : 2;
        }
    }
    if (threads < 1) threads = 1;
    g_t = isa ? kernels_cpu_variant(isa) : kernels_cpu();
    if (!g_t) {
        fprintf(stderr, "ISA %s is not available on this CPU\n", isa);
        return 1;
    }
    g_pool = pool_create(threads);
    if (!g_pool) return 1;
    g_ctx.pool = g_pool;
    for (int i = 0; i < 8192 / 16; i++) g_blocks[i] = i;

    /* read bandwidth with the same threads */
    long bw_n = (512L << 20) / 4;
    float *bw_buf = malloc((size_t)bw_n * 4);
    if (!bw_buf) return 1;
    for (long i = 0; i < bw_n; i++) bw_buf[i] = (float)(i & 7);
    bw_ctx bc = {bw_buf, bw_n, {0}};
    double bw = (double)bw_n * 4 / time_median(bw_call, &bc) / 1e9;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) {
        double b2 = (double)bw_n * 4 / time_median(bw_call_avx2, &bc) / 1e9;
        bw = b2 > bw ? b2 : bw;
    }
    free(bw_buf);
    printf("table %s, %d threads, measured read bandwidth %.1f GB/s (512 MB sum)\n", g_t->name,
           threads, bw);
    printf("OpenBLAS: %s, core %s\n\n", openblas_get_config(), openblas_get_corename());

    static const dtype dts[] = {DT_F32, DT_BF16, DT_F16, DT_Q8_0, DT_Q4_0, DT_Q5_0, DT_Q4_K, DT_Q6_K};
    const int n_dts = (int)(sizeof dts / sizeof dts[0]);
    if (quick && !shapes_set) n_shapes = 3;
    long max_cols = 4864, y_len = 0; /* y: one row of every shape, n rows of prefill shapes */
    for (int s = 0; s < n_shapes; s++) {
        const long yl = shapes[s][0] > 100000 ? shapes[s][0] : 512L * shapes[s][0];
        y_len = yl > y_len ? yl : y_len;
        max_cols = shapes[s][1] > max_cols ? shapes[s][1] : max_cols;
    }
    float *x = malloc(512L * max_cols * 4), *y = malloc((size_t)y_len * 4);
    if (!x || !y) return 1;
    for (long i = 0; i < 512L * max_cols; i++) x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;

    printf("decode matvec (n=1): weight bytes streamed per call\n");
    printf("%-8s %-14s %12s %10s %9s\n", "dtype", "rows x cols", "us/call", "GB/s", "% of BW");
    for (int d = 0; d < n_dts; d++)
        for (int s = 0; s < n_shapes; s++) {
            long rows = shapes[s][0], cols = shapes[s][1];
            size_t bytes;
            if (cols % dtype_block_size(dts[d])) continue; /* not a whole number of blocks */
            if (only_dt && strcasecmp(only_dt, dtype_name(dts[d]))) continue;
            void *w = make_weight(dts[d], rows, cols, &bytes);
            if (!w) return 1;
            mm_b c = {g_t, y, x, {w, dts[d], rows, cols, NULL}, 1};
            double t = time_median(mm_call, &c);
            printf("%-8s %6ld x %-5ld %12.1f %10.1f %8.0f%%\n", dtype_name(dts[d]), rows, cols,
                   t * 1e6, bytes / t / 1e9, 100.0 * bytes / t / 1e9 / bw);
            free(w);
        }

    printf("\nprefill matmul: GFLOP/s (2·n·rows·cols per call); 'sgemm-T' = OpenBLAS sgemm on\n"
           "f32 weights with OpenBLAS's own %d threads instead of the pool (same run)\n", threads);
    printf("'packed' = the same weights in the table's layout made at load (pack_weight), where\n"
           "it has one for the type\n");
    printf("%-8s %-14s %5s %12s %10s %12s %12s\n", "dtype", "rows x cols", "n", "ms/call", "GFLOP/s",
           "sgemm-T", "packed");
    if (quick && !rows_set) n_ns = 2;
    for (int d = 0; d < n_dts; d++)
        for (int s = 0; s < n_shapes; s++) {
            long rows = shapes[s][0], cols = shapes[s][1];
            size_t bytes;
            if (shapes[s][0] > 100000) continue; /* an LM head: only ever multiplied by the last row */
            if (cols % dtype_block_size(dts[d])) continue;
            if (only_dt && strcasecmp(only_dt, dtype_name(dts[d]))) continue;
            void *w = make_weight(dts[d], rows, cols, &bytes);
            if (!w) return 1;
            const wk_weight W0 = {w, dts[d], rows, cols, NULL};
            size_t pk_bytes = 0;
            void *pk = g_t->pack_weight ? g_t->pack_weight(&g_ctx, &W0, &pk_bytes) : NULL;
            for (int k = 0; k < n_ns; k++) {
                mm_b c = {g_t, y, x, {w, dts[d], rows, cols, NULL}, ns[k]};
                double flop = 2.0 * ns[k] * rows * cols;
                double t = time_median(mm_call, &c);
                char alt[32] = "";
                if (dts[d] == DT_F32) {
                    openblas_set_num_threads(threads);
                    double t2 = time_median(sgemm_call, &c);
                    openblas_set_num_threads(1); /* back to what kernels/cpu expects */
                    snprintf(alt, sizeof alt, "%.1f", flop / t2 / 1e9);
                }
                char pks[32] = "";
                if (pk) {
                    mm_b cp = c;
                    cp.W.packed = pk;
                    snprintf(pks, sizeof pks, "%.1f", flop / time_median(mm_call, &cp) / 1e9);
                }
                printf("%-8s %6ld x %-5ld %5d %12.2f %10.1f %12s %12s\n", dtype_name(dts[d]), rows,
                       cols, ns[k], t * 1e3, flop / t / 1e9, alt, pks);
            }
            if (pk) g_t->buf_free(NULL, pk, pk_bytes);
            free(w);
        }

    printf("\nother ops (decode sizes): us/call, and speed-up over the scalar ref table\n");
    printf("%-34s %10s %10s %8s\n", "op", "us/call", "ref us", "x");
    static const struct { const char *name; int which, n; } ops[] = {
        {"rmsnorm d=896", OP_RMS, 896},
        {"silu_mul n=4864", OP_SILU, 4864},
        {"add n=896", OP_ADD, 896},
        {"softmax n=151936", OP_SOFTMAX, 151936},
        {"rope 14 heads x 64", OP_ROPE, 64},
        {"attention 14/2 heads hd64 pos=1024", OP_ATT, 1024},
        {"attention 14/2 heads hd64 pos=8192", OP_ATT, 8192},
        {"attention prefill n=512 14/2 hd64", OP_ATT_PREFILL, 512},
    };
    const long big = 2L * 8192 * 64 + 151936;
    float *a = malloc(big * 4), *b = malloc(big * 4), *cc = malloc(big * 4);
    float *scr = malloc((size_t)threads * 8192 * 4);
    if (!a || !b || !cc || !scr) return 1;
    for (long i = 0; i < big; i++) a[i] = b[i] = cc[i] = (float)((i * 31) % 97) / 97.0f - 0.5f;
    for (long i = 0; i < 32; i++) b[i] = cosf(0.1f * i), cc[i] = sinf(0.1f * i); /* rope: a
        true rotation, so repeated calls keep |x| and never reach subnormals */
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        op_b o = {g_t, ops[k].which, a, b, cc, scr, ops[k].n};
        double t = time_median(op_call, &o);
        o.t = kernels_ref();
        double tr = time_median(op_call, &o);
        printf("%-34s %10.2f %10.2f %8.1f\n", ops[k].name, t * 1e6, tr * 1e6, tr / t);
    }
    free(a), free(b), free(cc), free(scr), free(x), free(y);
    pool_free(g_pool);
    return 0;
}
