/* cpu.c — the threaded CPU kernel table: threading, the prefill paths and run-time ISA
 * dispatch. Built for baseline x86-64 (no -m flags): it only reads the ISA files' `cpu_isa`
 * tables and calls through them after __builtin_cpu_supports has said the CPU can run them.
 *
 * Threading: matmul, attention and activation quantization cut their work into chunks that
 * threads claim from an atomic counter under pool_run_dyn, so both cores finish together and
 * a descheduled worker never holds the caller up (base/pool.h). Small ops run on the caller
 * alone, because waking workers costs more than the work (see SMALL_WORK); the elementwise
 * ops split statically with pool_run.
 *
 * Matmul paths, by batch size n and weight type:
 *   n <= CPU_MV_NX (decode): the ISA's matvec streams each weight row once for all n rows;
 *     quantized weights take the integer matvec_q on activations quantized once per call
 *     (by the caller or all threads, into the caller's TL_XQ buffer, shared read-only).
 *   larger n, Q8_0/Q4_0/Q4_K/Q6_K with AVX-512 VNNI, or Q4_0/Q4_K/Q6_K from 16 rows on the
 *     AVX2 table (and on the AVX-512 one where VNNI is missing): gemm_q (gemmq_avx512.c,
 *     gemmq_avx2.c) on the same shared quantized activations.
 *   larger n, other types (Q8_0 on AVX2: its unsigned-offset bytes would overflow
 *     vpmaddubsw): OpenBLAS sgemm per chunk of output rows (OpenBLAS set to one
 *     thread, so it never competes with the pool); bf16/f16/quantized rows are widened to
 *     f32 up to 8 MiB at a time into a per-thread buffer. Where OpenBLAS lacks fast kernels for this
 *     CPU (see tl_buf_init) the tiled matvec serves prefill too.
 * Attention: the tiled online-softmax kernel of attn_tile.h per (KV head, block of query
 * rows); the row-at-a-time kernel remains for head_dim > CPU_ATT_MAX_HD.
 *
 * Not here: the inner SIMD loops (cpu_avx2.c, cpu_avx512.c, cpu_generic.c, gemmq_avx512.c). */
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kernels/cpu/cpu_internal.h"

#define SMALL_WORK (1L << 14) /* elements below which an elementwise op stays on the caller */
#define BLAS_MIN_N 16         /* default: activation rows from which matmul uses sgemm */
/* F16/BF16 (and quantized types without an integer GEMM) are widened to f32 for sgemm on
 * every call, a full pass of writes over the matrix: with few rows that costs more than the
 * 8-row matvec tiles re-reading each block from L2. 0.5B BF16, 2 threads: pp16 65 vs 121
 * tok/s, pp32 87 vs 131, pp64 121 vs 115 (sgemm vs tiles); decode of 16 streams in one
 * engine fell below one stream's speed. */
#define BLAS_MIN_N_WIDEN 64
#define MV_BLOCK_BYTES (256L << 10) /* weight bytes per decode block (stays in L2 across x groups) */

/* ---- per-thread buffers ----
 * Kernels must not allocate per call. The pool's workers are persistent, so buffers kept per
 * thread and grown only when a larger matrix shows up are a one-time cost per thread and
 * shape. They are freed by the pthread key destructor when the thread exits. If one cannot
 * be allocated the caller falls back to a path that needs no memory (exact f32 matvec).
 * Slot TL_XQ of the calling thread holds a matmul's quantized activations, which every
 * thread of that call reads; slot TL_WORK is private to each thread (widened rows for sgemm,
 * repacked panels for gemm_q). */
enum { TL_XQ, TL_WORK, TL_SLOTS };
static pthread_key_t g_buf_key;
static pthread_once_t g_buf_once = PTHREAD_ONCE_INIT;
static int g_buf_key_ok;
static int g_vnni;       /* AVX-512 VNNI present: the avx512 table's gemm_q may run */
static int g_gemmq_off;  /* WICK_CPU_GEMMQ=0: no integer prefill GEMM (for comparisons) */
/* Activation rows for which Q4_0/Q8_0 use the direct (no-repack) kernel on AVX-512 VNNI
   (0.5B, 2 threads, pp-n tok/s, direct vs before: Q4_0 pp8 333 vs 223-235, pp16 444-452 vs
   259-298, pp32 593-623 vs 431-452, pp64 484-617 vs 618-651 (gemm_q's repack pays from
   there); Q8_0 pp2 94-98 vs 105-140 and pp4 159-160 vs 185-188 (the row tiles win),
   pp8 266-270 vs 236-244, pp16 248-380 vs 207-253). WICK_CPU_DIRECT_MAX=N moves the upper
   bound (1 turns it off), for comparisons. */
#define DIRECT_MIN_N 5
#define DIRECT_MAX_N 32
static int g_direct_max = DIRECT_MAX_N;
/* Weights packed at load (W.packed, cpu_pack_weight) run the packed kernel for every n up to
   this; WICK_CPU_PACKED_MAX=N moves it, WICK_CPU_PACK=0 packs nothing (for comparisons). */
#define PACKED_MAX_N 1000000
static int g_packed_max = PACKED_MAX_N;
/* Own F32/F16/BF16 GEMM (gemm_f_avx512.c) from these activation rows; AVX512_BF16 present.
   WICK_CPU_GEMMF_MIN_N / WICK_CPU_BF16_MIN_N move them (a large value turns one off).
   0.5B BF16, 2 threads, best of 3 rounds, GEMM vs the 8-row matvec tiles: fast pp6 149 vs 133,
   pp8 200 vs 142, pp16 326 vs 184, pp32 496 vs 294; exact pp8 115 vs 134, pp12 164 vs 132,
   pp64 377 vs 192 (sgemm on widened rows, its old path from 64). */
#define GEMMF_MIN_N 12
#define GEMM_BF16_MIN_N 6
static int g_gemmf_min_n = GEMMF_MIN_N, g_gemm_bf16_min_n = GEMM_BF16_MIN_N, g_bf16;
/* F32/F16/BF16 packed at load (f32 panels, made for encoders: embed.c packs them) run the
   packed exact GEMM from this many activation rows; WICK_CPU_FPACKED_MIN_N moves it. */
#define FPACKED_MIN_N 1
static int g_fpacked_min_n = FPACKED_MIN_N;
static int g_fuse = 1; /* WICK_CPU_FUSE=0: matmul_multi / _glu / _add run the plain ops (to compare) */
/* BF16 / F16 weights in precision fast on CPUs with AMX-BF16 (gemm_amx.c): from this many
   activation rows (WICK_CPU_AMX_MIN_N / WICK_CPU_AMX_F16_MIN_N move them; WICK_CPU_AMX=0
   turns AMX off, for comparisons). BF16 from one row: the tiles stream the weights faster
   than the f32 matvec (0.5B BF16 tg64 22.0-22.3 vs 17.8-17.9 tok/s, 2026-12-07). F16 pays a
   conversion of every weight per call (hi/lo split): 0.5B F16 pp4 45-49 vs 63 tok/s, pp8
   95-96 vs 94-97, pp16 185-186 vs 119-120, tg64 10.8 vs 19.1-19.5 without AMX. */
#define AMX_MIN_N 1
#define AMX_F16_MIN_N 8
/* Quantized weights, dequantized to bf16 per call (prefill; WICK_CPU_AMX_Q_MIN_N) */
#define AMX_Q_MIN_N 64
/* Attention of spans (one sequence's rows of a step) of at least this many rows, in
   precision fast (attn_amx.c; WICK_CPU_AMX_ATT_MIN_N, 0 turns it off) */
#define AMX_ATT_MIN_N 2
static int g_amx, g_amx_min_n = AMX_MIN_N, g_amx_f16_min_n = AMX_F16_MIN_N, g_amx_q_min_n = AMX_Q_MIN_N;
static int g_amx_att_min_n = AMX_ATT_MIN_N;
static int g_att_wide = 1; /* WICK_CPU_ATT_WIDE=0: prefill attention on attn_block only */

typedef struct tl_buf { size_t cap[TL_SLOTS]; void *data[TL_SLOTS]; } tl_buf;

static void tl_buf_free(void *p) {
    tl_buf *b = p;
    for (int i = 0; b && i < TL_SLOTS; i++) free(b->data[i]);
    free(b);
}

static int g_blas_min_n = BLAS_MIN_N, g_blas_min_n_widen = BLAS_MIN_N_WIDEN;

/* One-time set-up, on the first matmul. WICK_CPU_BLAS_MIN_N (a tuning knob for benchmarks)
 * moves the sgemm threshold; 0 or junk keeps the default. WICK_CPU_GEMMQ=0 turns the integer
 * prefill GEMM off (to compare against dequantize + sgemm). */
static void tl_buf_init(void) {
    g_buf_key_ok = pthread_key_create(&g_buf_key, tl_buf_free) == 0;
    /* One OpenBLAS thread per caller: the pool provides the parallelism. */
    openblas_set_num_threads(1);
    /* OpenBLAS picks its kernels from CPUID; where it does not recognise the CPU (seen on
     * a Sapphire Rapids VM: core "Prescott", SSE3 only) its sgemm ran at ~15 GFLOP/s per
     * thread, 2.5x slower than our own 8-row tiled matvec. So sgemm is used only behind
     * cores known to have AVX2/AVX-512 kernels. */
    const char *core = openblas_get_corename();
    static const char *good[] = {"haswell", "zen", "skylakex", "cooperlake", "sapphire"};
    int ok = 0;
    for (size_t i = 0; core && i < sizeof good / sizeof good[0]; i++)
        ok |= strcasestr(core, good[i]) != NULL;
    if (!ok) g_blas_min_n = g_blas_min_n_widen = INT_MAX;
    const char *e = getenv("WICK_CPU_BLAS_MIN_N");
    if (e && atoi(e) > 0) g_blas_min_n = g_blas_min_n_widen = atoi(e);
    __builtin_cpu_init();
    g_vnni = __builtin_cpu_supports("avx512vnni");
    e = getenv("WICK_CPU_GEMMQ");
    if (e && strcmp(e, "0") == 0) g_gemmq_off = 1;
    e = getenv("WICK_CPU_DIRECT_MAX");
    if (e && atoi(e) > 0) g_direct_max = atoi(e);
    e = getenv("WICK_CPU_PACKED_MAX");
    if (e && atoi(e) > 0) g_packed_max = atoi(e);
    g_bf16 = __builtin_cpu_supports("avx512bf16");
    e = getenv("WICK_CPU_GEMMF_MIN_N");
    if (e && atoi(e) > 0) g_gemmf_min_n = atoi(e);
    e = getenv("WICK_CPU_BF16_MIN_N");
    if (e && atoi(e) > 0) g_gemm_bf16_min_n = atoi(e);
    e = getenv("WICK_CPU_FPACKED_MIN_N");
    if (e && atoi(e) > 0) g_fpacked_min_n = atoi(e);
    e = getenv("WICK_CPU_AMX");
    g_amx = g_bf16 && !(e && strcmp(e, "0") == 0) && cpu_amx_init();
    e = getenv("WICK_CPU_AMX_MIN_N");
    if (e && atoi(e) > 0) g_amx_min_n = atoi(e);
    e = getenv("WICK_CPU_AMX_F16_MIN_N");
    if (e && atoi(e) > 0) g_amx_f16_min_n = atoi(e);
    e = getenv("WICK_CPU_AMX_Q_MIN_N");
    if (e && atoi(e) > 0) g_amx_q_min_n = atoi(e);
    e = getenv("WICK_CPU_ATT_WIDE");
    if (e && strcmp(e, "0") == 0) g_att_wide = 0;
    e = getenv("WICK_CPU_AMX_ATT_MIN_N");
    if (e && atoi(e) >= 0 && (*e >= '0' && *e <= '9')) g_amx_att_min_n = atoi(e);
    e = getenv("WICK_CPU_FUSE");
    if (e && strcmp(e, "0") == 0) g_fuse = 0;
}

static void *tl_buffer(int slot, size_t bytes) {
    pthread_once(&g_buf_once, tl_buf_init);
    if (!g_buf_key_ok) return NULL;
    tl_buf *b = pthread_getspecific(g_buf_key);
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b || pthread_setspecific(g_buf_key, b) != 0) {
            free(b);
            return NULL;
        }
    }
    if (b->cap[slot] < bytes) {
        void *d = malloc(bytes);
        if (!d) return NULL;
        free(b->data[slot]);
        b->data[slot] = d;
        b->cap[slot] = bytes;
    }
    return b->data[slot];
}

/* ---- matmul ----
 * Output rows are cut into chunks (multiples of 16 rows, so no two threads write one cache
 * line) that threads claim from an atomic counter under pool_run_dyn: whoever runs takes the
 * next chunk, so both cores finish together even when one was descheduled for a while, and a
 * worker that wakes after the work is gone does not hold the caller up. */

enum { MM_MATVEC, MM_BLAS, MM_GEMMQ, MM_DIRECT, MM_GEMMF, MM_BF16, MM_PACKED, MM_FPACKED, MM_AMX };
static const uint8_t *packed_panels(const wk_weight *W); /* W.packed's panels if made for W */
static void amx_row_to_f32(float *out, const wk_weight *W, int64_t r);

typedef struct mm_ctx {
    const cpu_isa *isa;
    const cpu_isa *gq; /* table whose gemm_q runs MM_GEMMQ (avx2's on AVX-512 without VNNI) */
    float *y;
    const float *x;
    const wk_weight *W;
    const float *bias;
    const blk_q8x *xq; /* quantized activations (n rows of nbx blocks) or NULL */
    const uint16_t *xb; /* MM_BF16: activations rounded to bf16 (n rows of cols) */
    const uint32_t *xv; /* MM_AMX: activations in tile layout (cpu_amx_make_xv) */
    int n, mode;
    long chunk, n_chunks;
    int gelu;          /* matmul_gelu: GELU on each block of y after the bias */
    int xchunk;        /* MM_FPACKED: activation rows per item (items: row block × x chunk) */
    long n_x;          /* MM_FPACKED: x chunks per row block */
    long next;         /* next chunk to claim (atomic) */
} mm_ctx;

/* Decode: rows [r0, r1) for all n activation rows. Weight rows are taken in blocks of about
 * MV_BLOCK_BYTES so that, when n > CPU_MV_NX, the block is re-read from cache, not memory. */
static void mm_rows_matvec(const mm_ctx *c, int64_t r0, int64_t r1) {
    const wk_weight *W = c->W;
    const int64_t rows = W->rows, cols = W->cols;
    int64_t row_bytes = (int64_t)dtype_row_bytes(W->dt, cols);
    int64_t blk = row_bytes > 0 ? MV_BLOCK_BYTES / row_bytes : r1 - r0;
    if (blk < 4) blk = 4;
    if (c->n <= CPU_MV_NX) blk = r1 - r0; /* one pass reads every row once anyway */
    const int64_t nbx = cols / QK; /* activation blocks per row */
    for (int64_t b0 = r0; b0 < r1; b0 += blk) {
        int64_t b1 = b0 + blk < r1 ? b0 + blk : r1;
        for (int i0 = 0; i0 < c->n; i0 += CPU_MV_NX) {
            int nx = c->n - i0 < CPU_MV_NX ? c->n - i0 : CPU_MV_NX;
            /* without quantized activations (no buffer) the f32 matvec is still exact */
            if (c->xq)
                c->isa->matvec_q(c->y + (int64_t)i0 * rows, rows, c->xq + (int64_t)i0 * nbx,
                                 nbx, nx, W, b0, b1);
            else
                c->isa->matvec(c->y + (int64_t)i0 * rows, rows, c->x + (int64_t)i0 * cols, cols,
                               nx, W, b0, b1);
        }
    }
}

/* Prefill: sgemm on rows [r0, r1); false if the widening buffer was unavailable. */
static int mm_rows_blas(const mm_ctx *c, int64_t r0, int64_t r1) {
    const wk_weight *W = c->W;
    const int64_t rows = W->rows, cols = W->cols;
    if (W->dt == DT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->n, (int)(r1 - r0), (int)cols,
                    1.0f, c->x, (int)cols, (const float *)W->data + r0 * cols, (int)cols, 0.0f,
                    c->y + r0, (int)rows);
        return 1;
    }
    /* up to 8 MiB of widened rows per sgemm. sgemm re-packs all n rows of x on every call,
       so the block must be tall: with 1 MiB blocks the down projection (4864 columns) went
       53 rows at a time and F16 prefill ran 20% slower than F32; at 8 MiB it is within
       noise of F32 (the widened block is read back from L3, which costs less than that) */
    int64_t blk = (1L << 21) / cols;
    if (blk < 16) blk = 16;
    if (blk > 512) blk = 512;
    if (blk > r1 - r0) blk = r1 - r0;
    float *buf = tl_buffer(TL_WORK, (size_t)(blk * cols) * sizeof(float));
    if (!buf) return 0;
    for (int64_t b0 = r0; b0 < r1; b0 += blk) {
        const int64_t m = b0 + blk < r1 ? blk : r1 - b0;
        for (int64_t r = 0; r < m; r++) c->isa->row_to_f32(buf + r * cols, W, b0 + r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->n, (int)m, (int)cols, 1.0f, c->x,
                    (int)cols, buf, (int)cols, 0.0f, c->y + b0, (int)rows);
    }
    return 1;
}

/* MM_GEMMF / MM_BF16 (gemm_f_avx512.c); false if the panel buffer was unavailable. */
static int mm_rows_gemmf(const mm_ctx *c, int64_t r0, int64_t r1) {
    void *ws = tl_buffer(TL_WORK, cpu_a5_gemm_f_scratch(c->W->cols));
    if (!ws) return 0;
    if (c->mode == MM_BF16)
        cpu_a5_gemm_bf16(c->y, c->W->rows, c->xb, c->W->cols, c->n, c->W, c->bias, r0, r1, ws);
    else
        cpu_a5_gemm_f(c->y, c->W->rows, c->x, c->W->cols, c->n, c->W, c->bias, r0, r1, ws);
    return 1;
}

static int mm_rows_gemmq(const mm_ctx *c, int64_t r0, int64_t r1) {
    void *ws = tl_buffer(TL_WORK, c->gq->gemm_q_scratch(c->W->cols));
    if (!ws) return 0;
    c->gq->gemm_q(c->y, c->W->rows, c->xq, c->W->cols / QK, c->n, c->W, r0, r1, ws);
    return 1;
}

/* Item k of c (rows and activation rows as c's mode splits them), bias and GELU included. */
static void mm_item(const mm_ctx *c, long k) {
    const long rows = (long)c->W->rows;
    if (c->mode == MM_FPACKED) { /* item k: row block k / n_x, activation rows chunk k % n_x */
        const long lo = k / c->n_x * c->chunk, hi = lo + c->chunk < rows ? lo + c->chunk : rows;
        const int i0 = (int)(k % c->n_x) * c->xchunk;
        const int nx = c->n - i0 < c->xchunk ? c->n - i0 : c->xchunk;
        float *y = c->y + (int64_t)i0 * rows;
        cpu_a5_gemm_f_packed(y, rows, c->x + (int64_t)i0 * c->W->cols, c->W->cols, nx, c->W,
                             packed_panels(c->W), c->bias, lo, hi); /* bias in the stores */
        for (int i = 0; c->gelu && i < nx; i++) c->isa->gelu(y + (int64_t)i * rows + lo, hi - lo);
        return;
    }
    const long lo = k * c->chunk, hi = lo + c->chunk < rows ? lo + c->chunk : rows;
    int done = 0;
    if (c->mode == MM_DIRECT) {
        cpu_a5_gemm_q_direct(c->y, rows, c->xq, c->W->cols / QK, c->n, c->W, lo, hi);
        done = 1;
    } else if (c->mode == MM_PACKED) {
        cpu_a5_gemm_q_packed(c->y, rows, c->xq, c->W->cols / QK, c->n, c->W, packed_panels(c->W), lo, hi);
        done = 1;
    } else if (c->mode == MM_AMX) {
        void *ws = tl_buffer(TL_WORK, cpu_amx_scratch(c->W->cols, c->W->dt));
        if (ws) cpu_amx_gemm(c->y, rows, c->xv, c->n, c->W, c->bias, lo, hi, ws, amx_row_to_f32), done = 2;
    } else if (c->mode == MM_GEMMQ) done = mm_rows_gemmq(c, lo, hi);
    else if (c->mode == MM_GEMMF || c->mode == MM_BF16) done = 2 * mm_rows_gemmf(c, lo, hi);
    else if (c->mode == MM_BLAS) done = mm_rows_blas(c, lo, hi);
    if (!done) mm_rows_matvec(c, lo, hi);
    if (c->bias && done != 2) { /* 2: the GEMM added it in its stores */
        for (int i = 0; i < c->n; i++) {
            float *yi = c->y + (int64_t)i * rows;
            for (long r = lo; r < hi; r++) yi[r] += c->bias[r];
        }
    }
    for (int i = 0; c->gelu && i < c->n; i++) c->isa->gelu(c->y + (int64_t)i * rows + lo, hi - lo);
}

/* The weight rows item k of c covers: [*lo, *hi). */
static void mm_item_rows(const mm_ctx *c, long k, long *lo, long *hi) {
    const long rows = (long)c->W->rows;
    *lo = (c->mode == MM_FPACKED ? k / c->n_x : k) * c->chunk;
    *hi = *lo + c->chunk < rows ? *lo + c->chunk : rows;
}

static void mm_task(void *vctx, int tid, int nt) {
    (void)tid, (void)nt;
    mm_ctx *c = vctx;
    for (long k; (k = pool_claim(&c->next)) < c->n_chunks;) mm_item(c, k);
}

/* Activation quantization for a large batch, rows claimed in chunks of 8. */
typedef struct qx_ctx { const cpu_isa *isa; blk_q8x *xq; const float *x; int64_t cols; int n; long next; } qx_ctx;

static void qx_task(void *vctx, int tid, int nt) {
    (void)tid, (void)nt;
    qx_ctx *c = vctx;
    const long nch = (c->n + 7) / 8;
    for (long k; (k = pool_claim(&c->next)) < nch;)
        for (long i = 8 * k; i < 8 * k + 8 && i < c->n; i++)
            c->isa->quant_x(c->xq + i * (c->cols / QK), c->x + i * c->cols, c->cols);
}

/* Activation rounding to bf16 for MM_BF16, rows claimed in chunks of 8. */
typedef struct xb_ctx { uint16_t *xb; const float *x; int64_t cols; int n; long next; } xb_ctx;

static void xb_task(void *vctx, int tid, int nt) {
    (void)tid, (void)nt;
    xb_ctx *c = vctx;
    const long nch = (c->n + 7) / 8;
    for (long k; (k = pool_claim(&c->next)) < nch;)
        for (long i = 8 * k; i < 8 * k + 8 && i < c->n; i++)
            cpu_a5_x_to_bf16(c->xb + i * c->cols, c->x + i * c->cols, c->cols);
}

/* Activations in AMX tile layout for MM_AMX, token blocks of 16 claimed one at a time. */
typedef struct xv_ctx { uint32_t *xv; const float *x; int64_t cols; dtype dt; int n; long next; } xv_ctx;

static void xv_task(void *vctx, int tid, int nt) {
    (void)tid, (void)nt;
    xv_ctx *c = vctx;
    const long nb = (c->n + 15) / 16;
    for (long k; (k = pool_claim(&c->next)) < nb;)
        cpu_amx_make_xv(c->xv, c->x, c->cols, c->n, c->cols, c->dt, (int)k, (int)k + 1);
}

/* A quantized row for gemm_amx.c: from the packed panels where W has them (the file's pages
   under them were given back), else from W.data. */
static void amx_row_to_f32(float *out, const wk_weight *W, int64_t r) {
    const uint8_t *panels = packed_panels(W);
    if (panels) cpu_a5_packed_row_to_f32(out, W, panels, r);
    else cpu_isa_avx512.row_to_f32(out, W, r);
}

static int amx_applies(unsigned flags, const wk_weight *W, int n) {
    if (!g_amx || !(flags & WK_CTX_FAST) || W->cols <= 0 || W->cols % 32 != 0) return 0;
    if (W->dt == DT_BF16) return n >= g_amx_min_n;
    if (W->dt == DT_F16) return n >= g_amx_f16_min_n;
    return dtype_is_quant(W->dt) && n >= g_amx_q_min_n;
}

int cpu_fast_rounds_x(dtype dt, int64_t cols, int n) {
    pthread_once(&g_buf_once, tl_buf_init);
    const wk_weight W = {.dt = dt, .rows = 1, .cols = cols};
    if (amx_applies(WK_CTX_FAST, &W, n)) return 1;
    return dt == DT_BF16 && g_bf16 && n >= g_gemm_bf16_min_n && cols % 32 == 0;
}

/* WICK_CPU_FLASH=0 keeps the row-at-a-time attention kernel (to compare) */
static int flash_on(void) {
    static int flash = -1;
    if (flash < 0) {
        const char *e = getenv("WICK_CPU_FLASH");
        flash = !(e && strcmp(e, "0") == 0);
    }
    return flash;
}

int cpu_fast_attn_rounds(int hd, int group, int block_size, int n) {
    pthread_once(&g_buf_once, tl_buf_init);
    return flash_on() && g_amx && g_amx_att_min_n && n >= g_amx_att_min_n && hd % 32 == 0 &&
           hd <= CPU_AMX_ATT_MAX_HD && group <= CPU_AMX_ATT_MAX_R && group <= CPU_ATT_MAX_R &&
           block_size % 16 == 0;
}

static long round16(long v) { return v < 16 ? 16 : (v + 15) / 16 * 16; }

/* The plan of one matmul into *out: its path, chunks and prepared activations (quantized,
 * bf16 or tile layout, in the calling thread's TL_XQ buffer). */
static void mm_setup(mm_ctx *out, const cpu_isa *isa, wk_pool *pool, unsigned flags, float *y,
                     const float *x, const wk_weight *W, const float *bias, int n, int gelu) {
    pthread_once(&g_buf_once, tl_buf_init);
    const int nt = pool_size(pool);
    const long rows = (long)W->rows;
    /* the avx512 table's gemm_q needs VNNI; without it the avx2 one (plain AVX2) serves */
    const cpu_isa *gq = isa == &cpu_isa_avx512 && !g_vnni ? &cpu_isa_avx2 : isa;
    mm_ctx c = {.isa = isa, .gq = gq, .y = y, .x = x, .W = W, .bias = bias, .n = n, .mode = MM_MATVEC,
                .gelu = gelu};
    int blas = n >= (W->dt == DT_F32 ? g_blas_min_n : g_blas_min_n_widen) && W->cols > 0;
    /* AMX tiles (gemm_amx.c): BF16 / F16 and quantized prefill in precision fast */
    if (isa == &cpu_isa_avx512 && amx_applies(flags, W, n)) {
        uint32_t *xv = tl_buffer(TL_XQ, cpu_amx_xv_bytes(n, W->cols, W->dt));
        if (xv) {
            xv_ctx q = {xv, x, W->cols, W->dt, n, 0};
            pool_run_dyn((long)n * W->cols < (1L << 16) ? NULL : pool, xv_task, &q);
            c.xv = xv, c.mode = MM_AMX, blas = 0;
        }
    }
    if (c.mode == MM_MATVEC && dtype_is_quant(W->dt) && W->cols > 0) {
        /* AVX2's GEMM from 16 rows: below, the integer matvec tiles measured faster
           (Q4_0 0.5B pp12 166-192 vs 122 tok/s; pp16 148-158 vs sgemm's 70) */
        const int min_n = gq == &cpu_isa_avx2 ? 16 : CPU_MV_NX + 1;
        int gemmq = n >= min_n && !g_gemmq_off && gq->gemm_q && gq->gemm_q_supports(W->dt);
        /* 5..32 rows of Q4_0/Q8_0 (a batch of decode rows, short prefills): the direct
           kernel, which skips gemm_q's repack (see gemmq_avx512.c) */
        const int direct = isa == &cpu_isa_avx512 && g_vnni && n >= DIRECT_MIN_N && n <= g_direct_max &&
                           !g_gemmq_off && cpu_a5_gemm_q_direct_supports(W->dt);
        /* weights packed at load (cpu_pack_weight): one kernel for every n up to g_packed_max */
        const uint8_t *panels = isa == &cpu_isa_avx512 && g_vnni && !g_gemmq_off && n <= g_packed_max
                                    ? packed_panels(W) : NULL;
        const int packed = panels != NULL;
        if (direct || packed) gemmq = 1;
        if (gemmq || !blas) { /* integer paths: quantize the activations once, shared */
            const int64_t nbx = W->cols / QK;
            blk_q8x *xq = tl_buffer(TL_XQ, (size_t)n * (size_t)nbx * sizeof(blk_q8x));
            if (xq) {
                qx_ctx q = {isa, xq, x, W->cols, n, 0};
                pool_run_dyn((long)n * W->cols < (1L << 16) ? NULL : pool, qx_task, &q);
                c.xq = xq;
                if (gemmq) c.mode = packed ? MM_PACKED : direct ? MM_DIRECT : MM_GEMMQ, blas = 0;
            }
        }
    }
    /* F32/F16/BF16 on AVX-512: our own packed GEMM in place of widening + sgemm; BF16 against
       bf16-rounded activations where the context allows (gemm_f_avx512.c) */
    if (isa == &cpu_isa_avx512 && c.mode == MM_MATVEC && W->cols % 32 == 0 &&
        (W->dt == DT_F32 || W->dt == DT_F16 || W->dt == DT_BF16)) {
        if (c.mode == MM_MATVEC && W->dt == DT_BF16 && (flags & WK_CTX_FAST) && g_bf16 && n >= g_gemm_bf16_min_n) {
            uint16_t *xb = tl_buffer(TL_XQ, (size_t)n * (size_t)W->cols * sizeof(uint16_t));
            if (xb) {
                xb_ctx q = {xb, x, W->cols, n, 0};
                pool_run_dyn((long)n * W->cols < (1L << 16) ? NULL : pool, xb_task, &q);
                c.xb = xb, c.mode = MM_BF16, blas = 0;
            }
        }
        /* f32 panels made at load: no repack per call, so from g_fpacked_min_n rows */
        if (c.mode == MM_MATVEC && n >= g_fpacked_min_n && packed_panels(W))
            c.mode = MM_FPACKED, blas = 0;
        if (c.mode == MM_MATVEC && n >= g_gemmf_min_n) c.mode = MM_GEMMF, blas = 0;
    }
    if (blas && c.mode == MM_MATVEC) c.mode = MM_BLAS;
    /* chunk sizes: a few per thread for balance, large enough for each path's efficiency */
    /* sgemm packs all of x on every call, so its chunks are few and large (two per thread) */
    const int per = c.mode == MM_MATVEC || c.mode == MM_DIRECT || c.mode == MM_PACKED ? 4
                    : c.mode == MM_BLAS ? 2 : 3;
    c.chunk = round16(rows / ((long)nt * per));
    if (c.mode == MM_GEMMF || c.mode == MM_BF16 || c.mode == MM_FPACKED || c.mode == MM_AMX)
        c.chunk = (c.chunk + 31) / 32 * 32; /* 32-row panels */
    if (c.mode == MM_GEMMQ && c.chunk > 128) c.chunk = 128;
    c.n_chunks = (rows + c.chunk - 1) / c.chunk;
    if (c.mode == MM_FPACKED) {
        /* items of (row block, activation chunk), row block major: a row block's panels stay
           in each thread's L2 while every thread runs its own activation rows over them, so
           x is read once per row block, and a large n splits over x too (see
           gemm_f_avx512.c); at least 3 items per thread where the rows allow */
        const int xc = 96;
        c.xchunk = xc, c.n_x = (n + xc - 1) / xc;
        long rb = cpu_a5_fpack_block_rows(W->cols);
        const long want_blocks = (3L * nt + c.n_x - 1) / c.n_x;
        const long even = (rows + want_blocks - 1) / want_blocks;
        if (even < rb) rb = even < 32 ? 32 : (even + 31) / 32 * 32;
        c.chunk = rb;
        c.n_chunks = (rows + rb - 1) / rb * c.n_x;
    }
    *out = c;
}

/* tiny matrices are not worth waking the workers */
static int mm_small(const mm_ctx *c) {
    return c->W->rows * c->W->cols * (int64_t)c->n < SMALL_WORK || c->n_chunks < 2;
}

static void cpu_matmul(const cpu_isa *isa, wk_pool *pool, unsigned flags, float *y,
                       const float *x, const wk_weight *W, const float *bias, int n, int gelu) {
    if (n <= 0 || W->rows <= 0) return;
    mm_ctx c;
    mm_setup(&c, isa, pool, flags, y, x, W, bias, n, gelu);
    pool_run_dyn(mm_small(&c) ? NULL : pool, mm_task, &c);
}



/* ---- attention ---- */

typedef struct att_ctx {
    const cpu_isa *isa;
    float *out;
    const float *q;
    const wk_kv_layer *kv;
    const wk_span *spans;
    int n_spans, n_head, n_kv, head_dim, window;
    float scale, softcap;
    int qb;           /* query rows per tiled block */
    long n_items, next;
    int amx_min_n;    /* spans of at least this many rows run on AMX (attn_amx.c); 0: none */
    int qb_amx;       /* query rows per block of those spans */
    int wide_min_n;   /* other spans of at least this many rows run attn_wide_avx512.c; 0: none */
    int qb_wide;      /* query rows per block of those spans */
} att_ctx;

/* Query rows per block of span sp: the AMX kernel's blocks, the wide kernel's or attn_block's. */
static int att_span_qb(const att_ctx *c, const wk_span *sp) {
    if (c->amx_min_n && sp->n >= c->amx_min_n) return c->qb_amx;
    return c->wide_min_n && sp->n >= c->wide_min_n ? c->qb_wide : c->qb;
}

/* Items per span in the tiled path: (KV head, block of qb query rows) pairs. */
static long att_span_items(const att_ctx *c, const wk_span *sp) {
    const int qb = att_span_qb(c, sp);
    return (long)c->n_kv * ((sp->n + qb - 1) / qb);
}

/* Tiled path: items are numbered span by span; inside a span, blocks are claimed last rows
 * first (the last rows of a causal prompt see the most keys), so threads finish together.
 * One item runs all query heads of its KV head, reading each K/V tile once for all of them.
 * Claimed numbers only grow, so each thread walks the spans with its own cursor. */
static void att_tile_task(void *vctx, int tid, int nt) {
    (void)tid, (void)nt;
    att_ctx *c = vctx;
    const int group = c->n_head / c->n_kv;
    int s = 0;
    long base = 0;
    for (long it; (it = pool_claim(&c->next)) < c->n_items;) {
        while (it >= base + att_span_items(c, &c->spans[s])) base += att_span_items(c, &c->spans[s++]);
        const wk_span *sp = &c->spans[s];
        const int qb = att_span_qb(c, sp);
        const long local = it - base, nblk = (sp->n + qb - 1) / qb;
        const long blk = nblk - 1 - local / c->n_kv;
        const int kvh = (int)(local % c->n_kv);
        const int i0 = (int)(blk * qb), i1 = i0 + qb < sp->n ? i0 + qb : sp->n;
        if (c->amx_min_n && sp->n >= c->amx_min_n) {
            void *ws = tl_buffer(TL_WORK, cpu_amx_attn_scratch(c->head_dim));
            if (ws) {
                cpu_amx_attn_block(c->out, c->q, c->kv, sp, i0, i1, kvh, c->n_head, group,
                                   c->head_dim, c->window, c->scale, c->softcap, ws,
                                   cpu_isa_avx512.row_to_f32);
                continue;
            }
            /* no scratch: attn_block in its own (smaller) blocks of this item's rows */
            for (int a = i0; a < i1; a += c->qb)
                c->isa->attn_block(c->out, c->q, c->kv, sp, a, a + c->qb < i1 ? a + c->qb : i1, kvh,
                                   c->n_head, group, c->head_dim, c->window, c->scale, c->softcap);
            continue;
        }
        if (c->wide_min_n && sp->n >= c->wide_min_n) {
            void *ws = tl_buffer(TL_WORK, cpu_a5_attn_wide_scratch(c->head_dim));
            if (ws) {
                cpu_a5_attn_wide(c->out, c->q, c->kv, sp, i0, i1, kvh, c->n_head, group,
                                 c->head_dim, c->window, c->scale, cpu_isa_avx512.row_to_f32, ws);
                continue;
            }
            for (int a = i0; a < i1; a += c->qb) /* no scratch: attn_block's blocks */
                c->isa->attn_block(c->out, c->q, c->kv, sp, a, a + c->qb < i1 ? a + c->qb : i1, kvh,
                                   c->n_head, group, c->head_dim, c->window, c->scale, c->softcap);
            continue;
        }
        c->isa->attn_block(c->out, c->q, c->kv, sp, i0, i1, kvh, c->n_head, group, c->head_dim,
                           c->window, c->scale, c->softcap);
    }
}

/* Row-at-a-time fallback (head_dim > CPU_ATT_MAX_HD or a huge group): (row, head) pairs
 * claimed in order, online softmax over the visible keys (no score buffer). */
static void att_task(void *vctx, int tid, int nt) {
    (void)tid, (void)nt;
    att_ctx *c = vctx;
    const cpu_isa *isa = c->isa;
    const int hd = c->head_dim, group = c->n_head / c->n_kv;
    float kf[1024], vf[1024];
    int s = 0;
    long base = 0;
    for (long it; (it = pool_claim(&c->next)) < c->n_items;) {
        while (it >= base + (long)c->spans[s].n * c->n_head) base += (long)c->spans[s++].n * c->n_head;
        const wk_span *sp = &c->spans[s];
        const int i = (int)((it - base) / c->n_head), h = (int)((it - base) % c->n_head);
        const int row = sp->row0 + i, p = sp->pos0 + i;
        const int j0 = (c->window > 0 && p - c->window + 1 > 0) ? p - c->window + 1 : 0;
        const int kvh = h / group;
        const float *qh = c->q + ((int64_t)row * c->n_head + h) * hd;
        float *o = c->out + ((int64_t)row * c->n_head + h) * hd;
        memset(o, 0, (size_t)hd * sizeof(float));
        float m = -INFINITY, l = 0.0f;
        for (int j = j0; j <= p; j++) {
            wk_weight wk = {kv_row(c->kv, c->kv->k, sp->blocks, kvh, j), c->kv->dt, 1, hd, NULL};
            wk_weight wv = {kv_row(c->kv, c->kv->v, sp->blocks, kvh, j), c->kv->dt, 1, hd, NULL};
            isa->row_to_f32(kf, &wk, 0);
            isa->row_to_f32(vf, &wv, 0);
            float sc = isa->dot(qh, kf, hd) * c->scale;
            if (c->softcap > 0) sc = tanhf(sc / c->softcap) * c->softcap; /* Gemma 2 */
            if (sc > m) { /* rescale what was accumulated under the old max */
                const float corr = expf(m - sc);
                for (int t = 0; t < hd; t++) o[t] *= corr;
                l *= corr;
                m = sc;
            }
            const float w = expf(sc - m);
            l += w;
            isa->axpy(o, w, vf, hd);
        }
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        for (int t = 0; t < hd; t++) o[t] *= inv;
    }
}

static void cpu_attention(const cpu_isa *isa, wk_pool *pool, unsigned flags, float *out,
                          const float *q, const wk_kv_layer *kv, const wk_span *spans,
                          int n_spans, int n_head, int n_kv, int head_dim, int window,
                          float scale, float softcap) {
    if (n_spans <= 0 || n_head <= 0 || n_kv <= 0 || head_dim <= 0) return;
    pthread_once(&g_buf_once, tl_buf_init);
    att_ctx c = {isa, out, q, kv, spans, n_spans, n_head, n_kv, head_dim, window, scale, softcap, 0, 0, 0, 0, 0, 0, 0};
    long work = 0, rows = 0;
    for (int s = 0; s < n_spans; s++) {
        work += (long)spans[s].n * n_head * head_dim * (spans[s].pos0 + spans[s].n);
        rows += spans[s].n;
    }
    wk_pool *p = work < SMALL_WORK ? NULL : pool;
    const int group = n_head / n_kv;
    const int flash = flash_on();
    /* precision fast with AMX: spans of g_amx_att_min_n+ rows on the tiles (attn_amx.c) */
    const int amx = isa == &cpu_isa_avx512 && g_amx && g_amx_att_min_n && (flags & WK_CTX_FAST) &&
                    head_dim % 32 == 0 && head_dim <= CPU_AMX_ATT_MAX_HD && group <= CPU_AMX_ATT_MAX_R &&
                    kv->block_size % 16 == 0;
    if (flash && isa->attn_block && head_dim <= CPU_ATT_MAX_HD && group <= CPU_ATT_MAX_R) {
        /* blocks of up to 8 rows: enough to reuse each K/V tile, small enough to balance */
        int qb = CPU_ATT_MAX_R / group;
        if (qb > 8) qb = 8;
        if (amx) { /* AMX: one K/V chunk's layout serves up to 128 query vectors */
            int any = 0;
            for (int s = 0; s < n_spans; s++) any |= spans[s].n >= g_amx_att_min_n;
            if (any) {
                c.amx_min_n = g_amx_att_min_n;
                c.qb_amx = CPU_AMX_ATT_MAX_R / group < 16 ? CPU_AMX_ATT_MAX_R / group : 16;
            }
        }
        /* AVX-512, many query vectors (prefill): the query vectors in the lanes (attn_wide_avx512.c),
           blocks of up to CPU_ATT_WIDE_MAX_R vectors, a whole number of 16-lane groups where
           the group size allows; spans too short to fill 16 lanes stay on attn_block */
        if (isa == &cpu_isa_avx512 && g_att_wide && softcap == 0.0f && head_dim % 16 == 0 &&
            head_dim <= CPU_ATT_WIDE_MAX_HD && group <= CPU_ATT_WIDE_MAX_R) {
            int qw = CPU_ATT_WIDE_MAX_R / group;
            if (qw > 64) qw = 64;
            for (int r = qw; r >= 1; r--)
                if (r * group % 16 == 0) { qw = r; break; }
            c.qb_wide = qw;
            c.wide_min_n = (16 + group - 1) / group;
        }
        c.qb = qb;
        for (int s = 0; s < n_spans; s++) c.n_items += att_span_items(&c, &spans[s]);
        pool_run_dyn(p, att_tile_task, &c);
    } else {
        c.n_items = rows * n_head;
        pool_run_dyn(p, att_task, &c);
    }
}

/* kv_store: span rows split over threads; each row converted with the reference conversion,
 * or for f16 the ISA's F16C one (same bits; the scalar one cost ~3% of a 16-stream step). */
typedef struct kvs_ctx {
    const wk_kv_layer *kv;
    const float *k, *v;
    const wk_span *spans;
    int n_spans, n_kv, hd;
    long rows;
    void (*f16_row)(uint16_t *dst, const float *x, int n); /* the ISA's, or NULL */
} kvs_ctx;

static void kvs_task(void *vctx, int tid, int nt) {
    const kvs_ctx *c = vctx;
    long lo, hi;
    pool_split(c->rows, nt, tid, 1, &lo, &hi);
    const size_t kvd = (size_t)c->n_kv * c->hd;
    int s = 0;
    for (long row = lo; row < hi; row++) {
        while (row >= c->spans[s].row0 + c->spans[s].n) s++;
        const wk_span *sp = &c->spans[s];
        if (row < sp->row0) continue;
        const int p = sp->pos0 + (int)(row - sp->row0);
        for (int h = 0; h < c->n_kv; h++) {
            void *kd = (void *)kv_row(c->kv, c->kv->k, sp->blocks, h, p);
            void *vd = (void *)kv_row(c->kv, c->kv->v, sp->blocks, h, p);
            const float *ks = c->k + row * kvd + (size_t)h * c->hd, *vs = c->v + row * kvd + (size_t)h * c->hd;
            if (c->f16_row && c->kv->dt == DT_F16) { /* F16C: ~20x the scalar conversion */
                c->f16_row(kd, ks, c->hd);
                c->f16_row(vd, vs, c->hd);
            } else {
                kernels_kv_row_from_f32(c->kv->dt, kd, ks, c->hd);
                kernels_kv_row_from_f32(c->kv->dt, vd, vs, c->hd);
            }
        }
    }
}

/* Spans must be in row order (as batches lay them out); rows between spans are skipped. */
static void cpu_kv_store(const cpu_isa *isa, wk_pool *pool, const wk_kv_layer *kv,
                         const float *k, const float *v, const wk_span *spans, int n_spans,
                         int n_kv, int head_dim) {
    if (n_spans <= 0 || n_kv <= 0 || head_dim <= 0) return;
    const long rows = spans[n_spans - 1].row0 + spans[n_spans - 1].n;
    kvs_ctx c = {kv, k, v, spans, n_spans, n_kv, head_dim, rows, isa->f16_row};
    pool_run(rows * n_kv * head_dim < SMALL_WORK ? NULL : pool, kvs_task, &c);
}

/* ---- row-wise and elementwise ops ---- */

typedef struct ew_ctx {
    const cpu_isa *isa;
    float *out;
    const float *a, *b;
    const float *cos, *sin;
    const int32_t *pos;
    long n;                 /* elements or rows */
    int d, heads, rot;      /* rot: rotated values per head (rope) */
    float eps;
} ew_ctx;

static void run_split(wk_pool *pool, long work, pool_fn fn, ew_ctx *c) {
    pool_run(work < SMALL_WORK ? NULL : pool, fn, c);
}

static void rms_task(void *vctx, int tid, int nt) {
    const ew_ctx *c = vctx;
    long lo, hi;
    pool_split(c->n, nt, tid, 1, &lo, &hi);
    for (long i = lo; i < hi; i++) {
        const float *xi = c->a + i * c->d;
        float ss = c->isa->sumsq(xi, c->d);
        float inv = 1.0f / sqrtf(ss / (float)c->d + c->eps);
        c->isa->scale_mul(c->out + i * c->d, xi, c->b, inv, c->d);
    }
}

static void cpu_rmsnorm(const cpu_isa *isa, wk_pool *pool, float *out, const float *x,
                        const float *w, int n, int d, float eps) {
    if (n <= 0 || d <= 0) return;
    ew_ctx c = {.isa = isa, .out = out, .a = x, .b = w, .n = n, .d = d, .eps = eps};
    run_split(pool, (long)n * d, rms_task, &c);
}

static void rope_task(void *vctx, int tid, int nt) {
    const ew_ctx *c = vctx;
    const int half = c->rot / 2;
    long lo, hi;
    pool_split(c->n * c->heads, nt, tid, 1, &lo, &hi);
    for (long it = lo; it < hi; it++) {
        long i = it / c->heads, h = it % c->heads;
        c->isa->rope_head(c->out + (i * c->heads + h) * c->d, c->cos + (long)c->pos[i] * half,
                          c->sin + (long)c->pos[i] * half, half);
    }
}

/* Interleaved rope (pairs 2j, 2j+1): a strided pattern that gains little from SIMD and is a
 * tiny share of a token's time, so one plain loop serves every ISA. */
static void rope_il_task(void *vctx, int tid, int nt) {
    const ew_ctx *c = vctx;
    const int half = c->rot / 2;
    long lo, hi;
    pool_split(c->n * c->heads, nt, tid, 1, &lo, &hi);
    for (long it = lo; it < hi; it++) {
        long i = it / c->heads, h = it % c->heads;
        float *v = c->out + (i * c->heads + h) * c->d;
        const float *cs = c->cos + (long)c->pos[i] * half, *sn = c->sin + (long)c->pos[i] * half;
        for (int j = 0; j < half; j++) {
            float a = v[2 * j], b = v[2 * j + 1];
            v[2 * j] = a * cs[j] - b * sn[j];
            v[2 * j + 1] = b * cs[j] + a * sn[j];
        }
    }
}

static void cpu_rope_il(wk_ctx *ctx, float *x, int n, int n_heads, int head_dim, int rot_dim,
                        const int32_t *pos, const float *cos, const float *sin) {
    if (n <= 0 || n_heads <= 0 || rot_dim < 2) return;
    wk_pool *pool = ctx ? ctx->pool : NULL;
    ew_ctx c = {.out = x, .cos = cos, .sin = sin, .pos = pos, .n = n, .d = head_dim,
                .heads = n_heads, .rot = rot_dim};
    run_split(pool, (long)n * n_heads * head_dim, rope_il_task, &c);
}

static void cpu_rope(const cpu_isa *isa, wk_pool *pool, float *x, int n, int n_heads,
                     int head_dim, int rot_dim, const int32_t *pos, const float *cos,
                     const float *sin) {
    if (n <= 0 || n_heads <= 0 || rot_dim < 2) return;
    ew_ctx c = {.isa = isa, .out = x, .cos = cos, .sin = sin, .pos = pos, .n = n, .d = head_dim,
                .heads = n_heads, .rot = rot_dim};
    run_split(pool, (long)n * n_heads * head_dim, rope_task, &c);
}

static void silu_task(void *vctx, int tid, int nt) {
    const ew_ctx *c = vctx;
    long lo, hi;
    pool_split(c->n, nt, tid, 16, &lo, &hi);
    if (lo < hi) c->isa->silu_mul(c->out + lo, c->a + lo, c->b + lo, hi - lo);
}

/* the reference formula, split over the pool (Gemma's MLP; not vectorized yet) */
static void gelu_tanh_task(void *vctx, int tid, int nt) {
    const ew_ctx *c = vctx;
    long lo, hi;
    pool_split(c->n, nt, tid, 16, &lo, &hi);
    const float beta = 0.7978845608028654f, kappa = 0.044715f;
    for (long i = lo; i < hi; i++) {
        const float g = c->a[i], inner = beta * (g + kappa * g * g * g);
        c->out[i] = 0.5f * g * (1.0f + tanhf(inner)) * c->b[i];
    }
}

static void cpu_gelu_tanh_mul(wk_ctx *x, float *out, const float *gate, const float *up, long n) {
    if (n <= 0) return;
    ew_ctx c = {.out = out, .a = gate, .b = up, .n = n};
    run_split(x ? x->pool : NULL, n * 8, gelu_tanh_task, &c); /* tanh: ~8x an add */
}

/* ---- encoder ops ---- */

static void gelu_task(void *vctx, int tid, int nt) {
    const ew_ctx *c = vctx;
    long lo, hi;
    pool_split(c->n, nt, tid, 16, &lo, &hi);
    if (lo < hi) c->isa->gelu(c->out + lo, hi - lo);
}

static void cpu_gelu(const cpu_isa *isa, wk_pool *pool, float *x, long n) {
    if (n <= 0) return;
    ew_ctx c = {.isa = isa, .out = x, .n = n};
    run_split(pool, n * 8, gelu_task, &c); /* erf: ~8x an add */
}

/* layernorm: kernels/ref's arithmetic (double statistics; the AVX-512 row sums them in
   another order), rows split over the pool. Scalar double it was ~5% of an encoder's time. */
typedef struct ln_ctx {
    const cpu_isa *isa;
    float *x;
    const float *r, *w, *b;
    int n, d;
    float eps;
} ln_ctx;

static void ln_task(void *vctx, int tid, int nt) {
    const ln_ctx *c = vctx;
    long lo, hi;
    pool_split(c->n, nt, tid, 1, &lo, &hi);
    const int d = c->d;
    for (long i = lo; i < hi; i++)
        c->isa->layernorm_row(c->x + i * d, c->r ? c->r + i * d : NULL, c->w, c->b, d, c->eps);
}

static void cpu_layernorm(const cpu_isa *isa, wk_pool *pool, float *x, const float *r,
                          const float *w, const float *b, int n, int d, float eps) {
    if (n <= 0) return;
    ln_ctx c = {isa, x, r, w, b, n, d, eps};
    pool_run((long)n * d * 4 < SMALL_WORK ? NULL : pool, ln_task, &c);
}

typedef struct enc_att_ctx {
    const cpu_isa *isa;
    cpu_enc_attn a;
    int max_len;
    long next;         /* work counter: item = seq · n_head + head */
} enc_att_ctx;

/* One item without scratch (when the thread's buffer cannot grow): each score computed
   three times, as the ref definition does. */
static void enc_item_noscratch(const cpu_enc_attn *a, int s, int h, long off) {
    const int len = a->lens[s], hd = a->head_dim, ld = a->n_head * hd;
    for (int i = 0; i < len; i++) {
        const float *qi = a->q + (off + i) * ld + h * hd;
        float m = -INFINITY, sum = 0.0f;
        for (int pass = 0; pass < 3; pass++) {
            float *o = a->out + (off + i) * ld + h * hd;
            if (pass == 2) memset(o, 0, sizeof(float) * (size_t)hd);
            for (int j = 0; j < len; j++) {
                const float *kj = a->k + (off + j) * ld + h * hd;
                float dot = 0.0f;
                for (int e = 0; e < hd; e++) dot += qi[e] * kj[e];
                float sc = dot * a->scale;
                if (a->rel_bias) sc += a->rel_bias[a->rel_bucket[j - i + a->max_tokens - 1] * a->n_head + h];
                if (pass == 0) m = fmaxf(m, sc);
                else if (pass == 1) sum += expf(sc - m);
                else {
                    const float p = expf(sc - m) * (1.0f / sum), *vj = a->v + (off + j) * ld + h * hd;
                    for (int e = 0; e < hd; e++) o[e] += p * vj[e];
                }
            }
        }
    }
}

static void enc_att_task(void *vctx, int tid, int nt) {
    (void)tid, (void)nt;
    enc_att_ctx *c = vctx;
    const long n_items = (long)c->a.n_seq * c->a.n_head;
    const size_t len16 = (size_t)(c->max_len + 15) / 16 * 16;
    float *sc = tl_buffer(TL_WORK, sizeof(float) * len16 * (size_t)(c->a.head_dim + 4));
    for (long it; (it = pool_claim(&c->next)) < n_items;) {
        const int s = (int)(it / c->a.n_head), h = (int)(it % c->a.n_head);
        long off = 0;
        for (int i = 0; i < s; i++) off += c->a.lens[i];
        if (sc) c->isa->enc_attn_item(&c->a, s, h, off, sc, sc + 4 * len16);
        else enc_item_noscratch(&c->a, s, h, off);
    }
}

static void cpu_attention_enc(const cpu_isa *isa, wk_pool *pool, float *out, const float *q,
                              const float *k, const float *v, const int *lens, int n_seq,
                              int n_head, int head_dim, float scale, const float *rel_bias,
                              const int32_t *rel_bucket, int max_tokens) {
    if (n_seq <= 0) return;
    enc_att_ctx c = {isa, {out, q, k, v, lens, n_seq, n_head, head_dim, max_tokens, scale,
                           rel_bias, rel_bucket}, 1, 0};
    for (int s = 0; s < n_seq; s++) c.max_len = lens[s] > c.max_len ? lens[s] : c.max_len;
    pool_run_dyn(pool, enc_att_task, &c);
}

static void softcap_task(void *vctx, int tid, int nt) {
    const ew_ctx *c = vctx;
    long lo, hi;
    pool_split(c->n, nt, tid, 16, &lo, &hi);
    for (long i = lo; i < hi; i++) c->out[i] = tanhf(c->out[i] / c->eps) * c->eps;
}

static void cpu_softcap(wk_ctx *x, float *v, long n, float cap) {
    if (n <= 0) return;
    ew_ctx c = {.out = v, .n = n, .eps = cap};
    run_split(x ? x->pool : NULL, n * 8, softcap_task, &c);
}

static void add_task(void *vctx, int tid, int nt) {
    const ew_ctx *c = vctx;
    long lo, hi;
    pool_split(c->n, nt, tid, 16, &lo, &hi);
    if (lo < hi) c->isa->add(c->out + lo, c->a + lo, hi - lo);
}

static void cpu_silu_mul(const cpu_isa *isa, wk_pool *pool, float *out, const float *gate,
                         const float *up, long n) {
    if (n <= 0) return;
    ew_ctx c = {.isa = isa, .out = out, .a = gate, .b = up, .n = n};
    run_split(pool, n * 4, silu_task, &c); /* exp makes each element ~4x an add */
}

static void cpu_add(const cpu_isa *isa, wk_pool *pool, float *y, const float *x, long n) {
    if (n <= 0) return;
    ew_ctx c = {.isa = isa, .out = y, .a = x, .n = n};
    run_split(pool, n, add_task, &c);
}

/* y += a·x with the product rounded before the add, as PEFT computes
 * result + lora_B(lora_A(x))·scaling: this file is built for baseline x86-64, which has no
 * FMA instruction to fuse the two into. */
static void axpy_task(void *vctx, int tid, int nt) {
    const ew_ctx *c = vctx;
    long lo, hi;
    pool_split(c->n, nt, tid, 16, &lo, &hi);
    const float a = c->eps; /* the factor travels in eps */
    for (long i = lo; i < hi; i++) {
        c->out[i] += a * c->a[i];
    }
}

static void cpu_axpy(wk_ctx *ctx, float *y, float a, const float *x, long n) {
    if (n <= 0) return;
    ew_ctx c = {.out = y, .a = x, .n = n, .eps = a};
    run_split(ctx ? ctx->pool : NULL, n, axpy_task, &c);
}

/* LoRA: two dispatches per call whatever the number of runs. Phase 1 computes t = x·Aᵀ for
 * every run in items of 8 rows (one read of A per item); phase 2 adds scale·(t·Bᵀ) in items
 * of (8 rows, 256 outputs), the product computed by the ISA's matvec into a stack buffer. */
#define LORA_OC 256
typedef struct lora_ctx {
    const cpu_isa *isa;
    float *y;
    const float *x;
    const wk_lora_run *runs;
    int n_runs;
    float *scratch;
    int64_t r_max;     /* largest rank of the call: scratch row stride */
    long n_items, next;
} lora_ctx;

/* Row i of run ru's t = x·Aᵀ is at t + i·r (r: the run's rank). In the shared scratch each run
   starts at row0·r_max: with row0·r, a run of lower rank after one of higher rank would start
   inside it, and phase 1 writes every run's t before phase 2 reads any. */
static float *lora_t(const lora_ctx *c, const wk_lora_run *ru) {
    return ru->t ? ru->t : c->scratch + (size_t)ru->row0 * (size_t)c->r_max;
}

static void lora_t_task(void *vctx, int tid, int nt) {
    (void)tid, (void)nt;
    lora_ctx *c = vctx;
    for (long it; (it = pool_claim(&c->next)) < c->n_items;) {
        long base = 0;
        int k = 0;
        while (it >= base + (c->runs[k].n + 7) / 8) base += (c->runs[k++].n + 7) / 8;
        const wk_lora_run *ru = &c->runs[k];
        const int i0 = (int)(it - base) * 8, nx = ru->n - i0 < 8 ? ru->n - i0 : 8;
        const int64_t in = ru->A->cols, r = ru->A->rows;
        if (c->isa == &cpu_isa_avx512) /* A's rows one stream at a time, prefetched */
            cpu_a5_lora_t(lora_t(c, ru) + (size_t)i0 * r, r, c->x + (size_t)(ru->row0 + i0) * in, in,
                          nx, ru->A->data, ru->A->dt == DT_BF16, r, in);
        else
            c->isa->matvec(lora_t(c, ru) + (size_t)i0 * r, r, c->x + (size_t)(ru->row0 + i0) * in, in,
                           nx, ru->A, 0, r);
    }
}

static long lora_out_items(const wk_lora_run *ru) {
    return (long)((ru->n + 7) / 8) * ((ru->B->rows + LORA_OC - 1) / LORA_OC);
}

static void lora_y_task(void *vctx, int tid, int nt) {
    (void)tid, (void)nt;
    lora_ctx *c = vctx;
    float u[8 * LORA_OC];
    for (long it; (it = pool_claim(&c->next)) < c->n_items;) {
        long base = 0;
        int k = 0;
        while (it >= base + lora_out_items(&c->runs[k])) base += lora_out_items(&c->runs[k++]);
        const wk_lora_run *ru = &c->runs[k];
        const int64_t out = ru->B->rows, r = ru->A->rows;
        const long n_oc = (out + LORA_OC - 1) / LORA_OC, local = it - base;
        const int i0 = (int)(local / n_oc) * 8, nx = ru->n - i0 < 8 ? ru->n - i0 : 8;
        const int64_t o0 = (local % n_oc) * LORA_OC, o1 = o0 + LORA_OC < out ? o0 + LORA_OC : out;
        /* u[i][o - o0] for the 8 rows and this block of outputs (B's rows o0.. as a view) */
        if (c->isa == &cpu_isa_avx512) { /* short rows: 16 outputs per zmm, not a dot each */
            cpu_a5_lora_u(u, LORA_OC, lora_t(c, ru) + (size_t)i0 * r, r, nx,
                          (const char *)ru->B->data + (size_t)(o0 * r) * dtype_size(ru->B->dt),
                          ru->B->dt == DT_BF16, r, o1 - o0);
        } else {
            const wk_weight Bv = {(const char *)ru->B->data + (size_t)(o0 * r) * dtype_size(ru->B->dt),
                                  ru->B->dt, o1 - o0, r, NULL};
            c->isa->matvec(u, LORA_OC, lora_t(c, ru) + (size_t)i0 * r, r, nx, &Bv, 0, o1 - o0);
        }
        for (int i = 0; i < nx; i++) {
            float *yi = c->y + (size_t)(ru->row0 + i0 + i) * out + o0;
            const float *ui = u + (size_t)i * LORA_OC;
            for (int64_t o = 0; o < o1 - o0; o++) yi[o] += ru->scale * ui[o];
        }
    }
}

static void cpu_lora(const cpu_isa *isa, wk_pool *pool, float *y, const float *x,
                     const wk_lora_run *runs, int n_runs, float *scratch) {
    if (n_runs <= 0) return;
    lora_ctx c = {isa, y, x, runs, n_runs, scratch, 0, 0, 0};
    long work = 0;
    for (int k = 0; k < n_runs; k++) {
        if (runs[k].A->rows > c.r_max) c.r_max = runs[k].A->rows;
        c.n_items += (runs[k].n + 7) / 8;
        work += (long)runs[k].n * runs[k].A->rows * (runs[k].A->cols + runs[k].B->rows);
    }
    wk_pool *p = work < SMALL_WORK ? NULL : pool;
    pool_run_dyn(p, lora_t_task, &c);
    c.n_items = c.next = 0;
    for (int k = 0; k < n_runs; k++) c.n_items += lora_out_items(&runs[k]);
    pool_run_dyn(p, lora_y_task, &c);
}

static void cpu_gather_rows(wk_ctx *ctx, float *dst, const float *src, const int32_t *idx, int n,
                            int cols) {
    (void)ctx; /* a few rows per step (the rows whose logits are wanted): not worth threads */
    for (int i = 0; i < n; i++)
        memcpy(dst + (size_t)i * cols, src + (size_t)idx[i] * cols, sizeof(float) * (size_t)cols);
}

static void cpu_scatter_rows(wk_ctx *ctx, float *y, const float *src, const int32_t *idx,
                             const float *w, int n, int cols) {
    (void)ctx; /* the chosen rows of one expert: a few per decode step */
    for (int i = 0; i < n; i++) {
        const bool first = idx[i] < 0;
        float *yr = y + (size_t)(first ? -(idx[i] + 1) : idx[i]) * cols;
        const float *s = src + (size_t)i * cols, wi = w[i];
        if (first)
            for (int c = 0; c < cols; c++) yr[c] = s[c] * wi;
        else
            for (int c = 0; c < cols; c++) {
                const float t = s[c] * wi; /* rounded before the add, as ref */
                yr[c] += t;
            }
    }
}

/* embed: rows of W picked by id, split over threads by output row. */
typedef struct emb_ctx {
    const cpu_isa *isa;
    float *out;
    const wk_weight *W;
    const int32_t *ids;
    int n;
} emb_ctx;

static void emb_task(void *vctx, int tid, int nt) {
    const emb_ctx *c = vctx;
    long lo, hi;
    pool_split(c->n, nt, tid, 1, &lo, &hi);
    for (long i = lo; i < hi; i++) c->isa->row_to_f32(c->out + i * c->W->cols, c->W, c->ids[i]);
}

static void cpu_embed(const cpu_isa *isa, wk_pool *pool, float *out, const wk_weight *W,
                      const int32_t *ids, int n) {
    if (n <= 0 || W->cols <= 0) return;
    emb_ctx c = {isa, out, W, ids, n};
    pool_run((long)n * W->cols < SMALL_WORK ? NULL : pool, emb_task, &c);
}

/* ---- one table per ISA ----
 * kernel_table entries carry no ISA pointer, so each ISA gets its own set of thin wrappers
 * that bind the `cpu_isa` and forward to the shared threaded code above. */
#define POOL(ctx) ((ctx) ? (ctx)->pool : NULL)
/* pack_weight of the AVX-512 table: Q4_0 / Q8_0 in 16-row panels (gemmq_avx512.c; VNNI
   present), F32 / F16 / BF16 in 32-row panels of f32 (gemm_f_avx512.c; cols % 32 == 0), the
   panels written by the pool's threads when ctx has a pool. */
typedef struct pack_ctx { const wk_weight *W; uint8_t *dst; size_t pb; long n_panels, next; int fl; } pack_ctx;

/* A packed buffer starts with the description of the matrix it was made from; the panels
   follow. The matmul uses it only while W still is that matrix, so a weight whose data was
   replaced (a merge, full training's f32 copy) or a view of some of its rows copied with the
   struct falls back to the file layout by itself. */
typedef struct pack_head { const void *data; int64_t rows, cols; int dt; } pack_head;
#define PACK_HEAD 64

static const uint8_t *packed_panels(const wk_weight *W) {
    if (!W->packed) return NULL;
    const pack_head *h = W->packed;
    return h->data == W->data && h->rows == W->rows && h->cols == W->cols && h->dt == (int)W->dt
               ? (const uint8_t *)W->packed + PACK_HEAD : NULL;
}

static void pack_task(void *vctx, int tid, int nt) {
    (void)tid, (void)nt;
    pack_ctx *c = vctx;
    for (long p; (p = pool_claim(&c->next)) < c->n_panels;) {
        if (c->fl) cpu_a5_fpack_panel(c->dst + (size_t)p * c->pb, c->W, p);
        else cpu_a5_pack_panel(c->dst + (size_t)p * c->pb, c->W, p);
    }
}

static void *cpu_pack_weight(wk_ctx *ctx, const wk_weight *W, size_t *bytes) {
    *bytes = 0;
    pthread_once(&g_buf_once, tl_buf_init);
    const char *e = getenv("WICK_CPU_PACK");
    const int fl = cpu_a5_fpack_supports(W);
    if ((e && strcmp(e, "0") == 0) || (!fl && (!g_vnni || g_gemmq_off || !cpu_a5_pack_supports(W))))
        return NULL;
    pack_ctx c = {W, NULL, 0, 0, 0, fl};
    if (fl) c.pb = cpu_a5_fpack_panel_bytes(W->cols), c.n_panels = (long)((W->rows + 31) / 32);
    else c.pb = cpu_a5_pack_panel_bytes(W->dt, W->cols), c.n_panels = (long)((W->rows + 15) / 16);
    const size_t n = PACK_HEAD + c.pb * (size_t)c.n_panels;
    /* written at once: populated in one go rather than a page fault per page (a third of
       the packing time on this VM); small ones as buf_alloc makes them (buf_free frees both) */
    if (n >= (1u << 20)) {
        void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        c.dst = p == MAP_FAILED ? NULL : p;
    } else {
        c.dst = kernels_host_alloc(ctx, n);
    }
    if (!c.dst) return NULL;
    pack_head *h = (pack_head *)c.dst;
    *h = (pack_head){W->data, W->rows, W->cols, (int)W->dt};
    c.dst += PACK_HEAD;
    pool_run_dyn(ctx ? ctx->pool : NULL, pack_task, &c);
    *bytes = n;
    return h;
}

/* ---- fused matmuls (kernel_table's matmul_multi, matmul_glu, matmul_add) ----
 *
 * Each runs its products as one job over the pool instead of one job per op: the items of
 * every product are claimed from one counter, and what follows a product (the GLU's
 * activation, the residual add) is done per item on the rows that item just wrote, while
 * they are in cache. Per element the same kernels run on the same operands as the plain
 * ops, so the results are bit-identical to them (test_kernels checks this). */
typedef struct mmf_ctx {
    mm_ctx *c;        /* the products' plans */
    int count;
    long total;       /* items over all plans (glu: items of one plan) */
    int kind;         /* 0 multi, 1 glu (c[0] gate, c[1] up), 2 add (c[0] into tmp) */
    int gelu_tanh;    /* glu: GELU's tanh form instead of SiLU */
    float *h;         /* glu: output (n, rows) */
    float *acc;       /* add: y (n, rows) += tmp */
    long next;
} mmf_ctx;

static void glu_rows(const cpu_isa *isa, float *h, const float *g, const float *u, long n,
                     int gelu_tanh) {
    if (!gelu_tanh) {
        isa->silu_mul(h, g, u, n);
        return;
    }
    const float beta = 0.7978845608028654f, kappa = 0.044715f; /* as gelu_tanh_task */
    for (long i = 0; i < n; i++) {
        const float v = g[i], inner = beta * (v + kappa * v * v * v);
        h[i] = 0.5f * v * (1.0f + tanhf(inner)) * u[i];
    }
}

static void mmf_task(void *vctx, int tid, int nt) {
    (void)tid, (void)nt;
    mmf_ctx *f = vctx;
    for (long k; (k = pool_claim(&f->next)) < f->total;) {
        if (f->kind == 0) {
            int i = 0;
            while (k >= f->c[i].n_chunks) k -= f->c[i++].n_chunks;
            mm_item(&f->c[i], k);
            continue;
        }
        const mm_ctx *c = &f->c[0];
        const long rows = (long)c->W->rows;
        long lo, hi;
        mm_item_rows(c, k, &lo, &hi);
        int i0 = 0, nx = c->n;
        if (c->mode == MM_FPACKED) {
            i0 = (int)(k % c->n_x) * c->xchunk;
            nx = c->n - i0 < c->xchunk ? c->n - i0 : c->xchunk;
        }
        mm_item(c, k);
        if (f->kind == 1) {
            mm_item(&f->c[1], k);
            for (int i = i0; i < i0 + nx; i++) {
                const size_t o = (size_t)i * (size_t)rows + (size_t)lo;
                glu_rows(c->isa, f->h + o, c->y + o, f->c[1].y + o, hi - lo, f->gelu_tanh);
            }
        } else {
            for (int i = i0; i < i0 + nx; i++) {
                const size_t o = (size_t)i * (size_t)rows + (size_t)lo;
                c->isa->add(f->acc + o, c->y + o, hi - lo);
            }
        }
    }
}

static void mmf_run(wk_pool *pool, mmf_ctx *f) {
    int small = 1;
    for (int i = 0; i < f->count; i++) small &= mm_small(&f->c[i]);
    pool_run_dyn(small ? NULL : pool, mmf_task, f);
}

/* Plans that can share one job: the same prepared activations (one TL_XQ buffer, written
   once per plan with the same contents, since x, n, dt and cols are the same) */
static int mm_compatible(const mm_ctx *a, const mm_ctx *b) {
    return a->mode == b->mode && a->xq == b->xq && a->xb == b->xb && a->xv == b->xv;
}

static void cpu_matmul_multi(const cpu_isa *isa, wk_pool *pool, unsigned flags, int count,
                             float *const *y, const float *x, const wk_weight *const *W,
                             const float *const *bias, int n) {
    if (n <= 0 || count <= 0) return;
    pthread_once(&g_buf_once, tl_buf_init);
    if (!g_fuse) {
        for (int j = 0; j < count; j++)
            cpu_matmul(isa, pool, flags, y[j], x, W[j], bias ? bias[j] : NULL, n, 0);
        return;
    }
    mm_ctx c[WK_MULTI_MAX];
    mmf_ctx f = {.c = c, .count = 0, .kind = 0};
    for (int i = 0; i < count && i < WK_MULTI_MAX; i++) {
        if (W[i]->rows <= 0) continue;
        mm_setup(&c[f.count], isa, pool, flags, y[i], x, W[i], bias ? bias[i] : NULL, n, 0);
        if (f.count > 0 && !mm_compatible(&c[0], &c[f.count])) { /* run one at a time */
            for (int j = 0; j < count; j++)
                cpu_matmul(isa, pool, flags, y[j], x, W[j], bias ? bias[j] : NULL, n, 0);
            return;
        }
        f.total += c[f.count++].n_chunks;
    }
    mmf_run(pool, &f);
}

static void cpu_matmul_glu(const cpu_isa *isa, wk_pool *pool, unsigned flags, float *h,
                           float *gate, float *up, const float *x, const wk_weight *Wg,
                           const wk_weight *Wu, const float *bg, const float *bu, int gelu_tanh,
                           int n) {
    if (n <= 0 || Wg->rows <= 0) return;
    pthread_once(&g_buf_once, tl_buf_init);
    mm_ctx c[2];
    if (g_fuse) {
        mm_setup(&c[0], isa, pool, flags, gate, x, Wg, bg, n, 0);
        mm_setup(&c[1], isa, pool, flags, up, x, Wu, bu, n, 0);
    }
    if (!g_fuse || !mm_compatible(&c[0], &c[1]) || c[0].chunk != c[1].chunk || c[0].n_x != c[1].n_x ||
        c[0].n_chunks != c[1].n_chunks || Wg->rows != Wu->rows) {
        cpu_matmul(isa, pool, flags, gate, x, Wg, bg, n, 0);
        cpu_matmul(isa, pool, flags, up, x, Wu, bu, n, 0);
        const long all = (long)n * Wg->rows;
        if (gelu_tanh) {
            wk_ctx kc = {.pool = pool, .flags = flags};
            cpu_gelu_tanh_mul(&kc, h, gate, up, all);
        } else {
            cpu_silu_mul(isa, pool, h, gate, up, all);
        }
        return;
    }
    mmf_ctx f = {.c = c, .count = 2, .total = c[0].n_chunks, .kind = 1, .gelu_tanh = gelu_tanh, .h = h};
    mmf_run(pool, &f);
}

static void cpu_matmul_add(const cpu_isa *isa, wk_pool *pool, unsigned flags, float *y,
                           float *tmp, const float *x, const wk_weight *W, const float *bias,
                           int n) {
    if (n <= 0 || W->rows <= 0) return;
    pthread_once(&g_buf_once, tl_buf_init);
    if (!g_fuse) {
        cpu_matmul(isa, pool, flags, tmp, x, W, bias, n, 0);
        cpu_add(isa, pool, y, tmp, (long)n * W->rows);
        return;
    }
    mm_ctx c;
    mm_setup(&c, isa, pool, flags, tmp, x, W, bias, n, 0);
    mmf_ctx f = {.c = &c, .count = 1, .total = c.n_chunks, .kind = 2, .acc = y};
    mmf_run(pool, &f);
}

#define CPU_TABLE(tag, ISA, NAME, PACK)                                                              \
    static void tag##_embed(wk_ctx *x_, float *o, const wk_weight *W, const int32_t *ids,      \
                            int n) { cpu_embed(&ISA, POOL(x_), o, W, ids, n); }                \
    static void tag##_rmsnorm(wk_ctx *x_, float *o, const float *x, const float *w, int n,     \
                              int d, float e) { cpu_rmsnorm(&ISA, POOL(x_), o, x, w, n, d, e); } \
    static void tag##_matmul(wk_ctx *x_, float *y, const float *x, const wk_weight *W,         \
                             const float *b, int n) {                                          \
        cpu_matmul(&ISA, POOL(x_), x_ ? x_->flags : 0u, y, x, W, b, n, 0);                     \
    }                                                                                          \
    static void tag##_matmul_gelu(wk_ctx *x_, float *y, const float *x, const wk_weight *W,    \
                                  const float *b, int n) {                                     \
        cpu_matmul(&ISA, POOL(x_), x_ ? x_->flags : 0u, y, x, W, b, n, 1);                     \
    }                                                                                          \
    static void tag##_rope(wk_ctx *x_, float *x, int n, int nh, int hd, int rd, const int32_t *pos, \
                           const float *c, const float *s) {                                   \
        cpu_rope(&ISA, POOL(x_), x, n, nh, hd, rd, pos, c, s);                                 \
    }                                                                                          \
    static void tag##_kv_store(wk_ctx *x_, const wk_kv_layer *kv, const float *k,              \
                               const float *v, const wk_span *sp, int ns, int nkv, int hd) {   \
        cpu_kv_store(&ISA, POOL(x_), kv, k, v, sp, ns, nkv, hd);                               \
    }                                                                                          \
    static void tag##_attention(wk_ctx *x_, float *o, const float *q, const wk_kv_layer *kv,   \
                                const wk_span *sp, int ns, int nh, int nkv, int hd, int win,   \
                                float sc, float cap) {                                         \
        cpu_attention(&ISA, POOL(x_), x_ ? x_->flags : 0u, o, q, kv, sp, ns, nh, nkv, hd, win,  \
                      sc, cap);                                                                \
    }                                                                                          \
    static void tag##_lora(wk_ctx *x_, float *y, const float *x, const wk_lora_run *ru, int nr,  \
                           float *scr) { cpu_lora(&ISA, POOL(x_), y, x, ru, nr, scr); }         \
    static void tag##_softmax(float *x, int n) { ISA.softmax(x, n); }                          \
    static void tag##_silu_mul(wk_ctx *x_, float *o, const float *g, const float *u, long n) { \
        cpu_silu_mul(&ISA, POOL(x_), o, g, u, n);                                              \
    }                                                                                          \
    static void tag##_add(wk_ctx *x_, float *y, const float *x, long n) {                      \
        cpu_add(&ISA, POOL(x_), y, x, n);                                                      \
    }                                                                                          \
    static void tag##_gelu(wk_ctx *x_, float *x, long n) { cpu_gelu(&ISA, POOL(x_), x, n); }    \
    static void tag##_layernorm(wk_ctx *x_, float *x, const float *r, const float *w,          \
                                const float *b, int n, int d, float e) {                       \
        cpu_layernorm(&ISA, POOL(x_), x, r, w, b, n, d, e);                                    \
    }                                                                                          \
    static void tag##_attention_enc(wk_ctx *x_, float *o, const float *q, const float *k,      \
                                    const float *v, const int *lens, int ns, int nh, int hd,   \
                                    float sc, const float *rb, const int32_t *bk, int mt) {    \
        cpu_attention_enc(&ISA, POOL(x_), o, q, k, v, lens, ns, nh, hd, sc, rb, bk, mt);       \
    }                                                                                          \
    static void tag##_matmul_multi(wk_ctx *x_, int cnt, float *const *y, const float *x,        \
                                   const wk_weight *const *W, const float *const *b, int n) {  \
        cpu_matmul_multi(&ISA, POOL(x_), x_ ? x_->flags : 0u, cnt, y, x, W, b, n);              \
    }                                                                                          \
    static void tag##_matmul_glu(wk_ctx *x_, float *h, float *g, float *u, const float *x,      \
                                 const wk_weight *Wg, const wk_weight *Wu, const float *bg,    \
                                 const float *bu, bool gt, int n) {                            \
        cpu_matmul_glu(&ISA, POOL(x_), x_ ? x_->flags : 0u, h, g, u, x, Wg, Wu, bg, bu, gt, n); \
    }                                                                                          \
    static void tag##_matmul_add(wk_ctx *x_, float *y, float *t, const float *x,               \
                                 const wk_weight *W, const float *b, int n) {                  \
        cpu_matmul_add(&ISA, POOL(x_), x_ ? x_->flags : 0u, y, t, x, W, b, n);                  \
    }                                                                                          \
    static const kernel_table tag##_table = {                                                  \
        .name = NAME, .buf_alloc = kernels_host_alloc, .buf_free = kernels_host_free,          \
        .buf_copy = kernels_host_copy, .sync = kernels_host_sync, .embed = tag##_embed,        \
        .rmsnorm = tag##_rmsnorm,                                                              \
        .matmul = tag##_matmul, .rope = tag##_rope, .rope_interleaved = cpu_rope_il,           \
        .kv_store = tag##_kv_store, .attention = tag##_attention, .softmax = tag##_softmax,    \
        .silu_mul = tag##_silu_mul, .gelu_tanh_mul = cpu_gelu_tanh_mul, .softcap = cpu_softcap, \
        .add = tag##_add, .axpy = cpu_axpy, .lora = tag##_lora,                               \
        .gather_rows = cpu_gather_rows, .scatter_rows = cpu_scatter_rows, .pack_weight = PACK, .gelu = tag##_gelu,                \
        .layernorm = tag##_layernorm, .matmul_gelu = tag##_matmul_gelu, .attention_enc = tag##_attention_enc,                      \
        .matmul_multi = tag##_matmul_multi, .matmul_glu = tag##_matmul_glu, .matmul_add = tag##_matmul_add, \
    };

CPU_TABLE(gen, cpu_isa_generic, "cpu-generic", NULL)
CPU_TABLE(avx2, cpu_isa_avx2, "cpu-avx2", NULL)
CPU_TABLE(avx512, cpu_isa_avx512, "cpu-avx512", cpu_pack_weight)

/* The AVX-512 file is compiled with F/BW/VL/DQ (and VNNI/BF16 flags: vpdpbusd runs only
 * behind a run-time VNNI check, BF16 instructions are not used), so all four are required. */
static int has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static int has_avx2(void) {
    __builtin_cpu_init();
    /* F16C has no __builtin_cpu_supports name in every GCC; every AVX2 CPU shipped has it. */
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* Table for one ISA by name ("avx512", "avx2", "generic"); NULL when unknown or when this
 * CPU cannot run it. Meant for kernels_select (WICK_ISA) and the parity test. */
const kernel_table *kernels_cpu_variant(const char *isa) {
    if (!isa) return NULL;
    if (strcmp(isa, "avx512") == 0) return has_avx512() ? &avx512_table : NULL;
    if (strcmp(isa, "avx2") == 0) return has_avx2() ? &avx2_table : NULL;
    if (strcmp(isa, "generic") == 0) return &gen_table;
    return NULL;
}

const kernel_table *kernels_cpu(void) {
    if (has_avx512()) return &avx512_table;
    if (has_avx2()) return &avx2_table;
    return &gen_table;
}
