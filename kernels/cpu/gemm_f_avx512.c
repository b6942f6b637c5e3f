/* gemm_f_avx512.c — prefill matmul for F32, F16 and BF16 weights with AVX-512, our own packed
 * GEMM in place of widening + OpenBLAS sgemm (Debian's OpenBLAS runs its AVX2 "Haswell"
 * kernels on CPUs it does not know, Zen 5 included, and needed a full widening pass per call).
 *
 * Two definitions:
 *   exact (cpu_a5_gemm_f): y[i, r] = Σ_c f32(W[r, c])·x[i, c], f32 FMAs in column order — the
 *     reference's product up to summation order (the same as sgemm's contract).
 *   bf16 (cpu_a5_gemm_bf16, BF16 weights only, needs AVX512_BF16): the activations are
 *     rounded to bf16 (round to nearest even, cpu_a5_x_to_bf16) and vdpbf16ps accumulates
 *     W[r, c]·x̂[c] + W[r, c+1]·x̂[c+1] per f32 lane: each product of two bf16 values is
 *     exact in f32, so the only error against exact is the rounding of x (relative 2^-9 per
 *     element) plus summation order. This is what llama.cpp and PyTorch's bf16 matmul do;
 *     the caller chooses it only when the context allows (WK_CTX_FAST, see kernels.h).
 *
 * Layout: weight rows are taken 32 at a time (two zmm of 16 lanes, lane = weight row) and
 * repacked per call into the caller's scratch: for exact, column c's 32 values as 2 zmm of
 * f32; for bf16, column pair p's 32 dwords (2 bf16 each) as 2 zmm. The repack is a 16×16
 * dword transpose of 16 rows' 64-byte pieces (f32: 16 columns, widened first; bf16: 32
 * columns). Then for up to 12 activation rows at once: per column (pair) 2 panel loads, one
 * broadcast per activation row, two FMAs (vdpbf16ps) per activation row — 24 accumulators.
 * Nothing is reduced horizontally; missing weight rows are zero in the panel and masked out
 * of the stores.
 *
 * Packed at load (cpu_a5_fpack_panel, the table's pack_weight): the exact layout of every panel
 * made once, panel after panel (cols·128 bytes each), so a call does no repack at all; the
 * matmul over it (cpu_a5_gemm_f_packed) takes a block of panels that stays in L2 and runs
 * every group of activation rows over it before the next block, so x is read once per block
 * rather than once per panel. Same kernel, same column order: bit-identical to cpu_a5_gemm_f.
 *
 * Not here: threading, activation conversion buffers (cpu.c). Only called after cpu.c has
 * checked AVX-512 (and AVX512_BF16 for the bf16 kernel); cols % 32 == 0. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/tp16_avx512.h"

#define AI static inline __attribute__((always_inline))
#define NXMAX 12
/* Software prefetch of a packed panel ahead of the kernel (bytes; the per-call panels are in
   L2 already): into L1 a few columns ahead,
   into L2 further on. An encoder's matrices come from L3 or memory one text after another;
   the hardware prefetchers alone left the b1 embedding latency ~15% higher (MiniLM-L6 9.5-10.0
   vs 7.9-8.5 ms per text, mpnet-sized 69.9 vs 57.3; 1 KiB / 16 KiB ahead was the best of
   the distances tried, 0.5-32 KiB, on a Xeon of 2026-12-06). */
#define PF_L1 1024
#define PF_L2 16384

size_t cpu_a5_gemm_f_scratch(int64_t cols) { return (size_t)cols * 128 + 64; }

/* 16 values of row `row` from column c as f32 (exact widening). */
AI __m512 load_f32(const uint8_t *row, dtype dt, int64_t c) {
    if (dt == DT_F32) return _mm512_loadu_ps((const float *)row + c);
    const __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + c));
    if (dt == DT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Weight rows [r, r + nr) (nr <= 32) into panel p. BF16 = 1: column pairs of bf16 (the
 * kernel's dpbf16 layout), else columns of f32. */
static void pack(uint8_t *p, const wk_weight *W, int64_t r, int nr, const int BF16) {
    const int64_t cols = W->cols;
    const size_t rb = dtype_row_bytes(W->dt, cols);
    const int64_t step = BF16 ? 32 : 16; /* columns per 16×16 dword tile */
    for (int h = 0; h < 2; h++)
        for (int64_t c0 = 0; c0 < cols; c0 += step) {
            __m512i a[16];
            for (int j = 0; j < 16; j++) {
                const int rr = 16 * h + j;
                if (rr >= nr) {
                    a[j] = _mm512_setzero_si512();
                    continue;
                }
                const uint8_t *row = (const uint8_t *)W->data + (size_t)(r + rr) * rb;
                a[j] = BF16 ? _mm512_loadu_si512((const void *)((const uint16_t *)row + c0))
                            : _mm512_castps_si512(load_f32(row, W->dt, c0));
            }
            tp16(a);
            /* dword column q of this tile is column (pair) c0/(step/16) + q of the panel */
            const int64_t q0 = BF16 ? c0 / 2 : c0;
            for (int q = 0; q < 16; q++)
                _mm512_store_si512((void *)(p + ((q0 + q) * 2 + h) * 64), a[q]);
        }
}

/* y rows i < NX (stride ldy), 32 weight rows (masks m0, m1) from panel p over nq columns
 * (exact: f32 x, ldx floats) or column pairs (bf16: x as dwords of 2 bf16, ldx dwords). */
AI void kernel(float *y, int64_t ldy, const void *xv, int64_t ldx, const uint8_t *p, int64_t nq,
               __mmask16 m0, __mmask16 m1, const int NX, const int BF16, const int PF,
               const float *bias) {
    __m512 a0[NXMAX], a1[NXMAX];
    for (int i = 0; i < NX; i++) a0[i] = a1[i] = _mm512_setzero_ps();
    for (int64_t q = 0; q < nq; q++) {
        const uint8_t *pq = p + q * 128;
        if (PF) {
            _mm_prefetch((const char *)pq + PF_L1, _MM_HINT_T0);
            _mm_prefetch((const char *)pq + PF_L1 + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)pq + PF_L2, _MM_HINT_T1);
            _mm_prefetch((const char *)pq + PF_L2 + 64, _MM_HINT_T1);
        }
        if (BF16) {
            const __m512bh w0 = (__m512bh)_mm512_load_si512((const void *)pq);
            const __m512bh w1 = (__m512bh)_mm512_load_si512((const void *)(pq + 64));
            const uint32_t *x = (const uint32_t *)xv + q;
            for (int i = 0; i < NX; i++) {
                const __m512bh b = (__m512bh)_mm512_set1_epi32((int)x[i * ldx]);
                a0[i] = _mm512_dpbf16_ps(a0[i], w0, b);
                a1[i] = _mm512_dpbf16_ps(a1[i], w1, b);
            }
        } else {
            const __m512 w0 = _mm512_load_ps((const void *)pq);
            const __m512 w1 = _mm512_load_ps((const void *)(pq + 64));
            const float *x = (const float *)xv + q;
            for (int i = 0; i < NX; i++) {
                const __m512 b = _mm512_set1_ps(x[i * ldx]);
                a0[i] = _mm512_fmadd_ps(w0, b, a0[i]);
                a1[i] = _mm512_fmadd_ps(w1, b, a1[i]);
            }
        }
    }
    if (bias) { /* the sum, then + bias: ref's order */
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, bias), b1 = _mm512_maskz_loadu_ps(m1, bias + 16);
        for (int i = 0; i < NX; i++) a0[i] = _mm512_add_ps(a0[i], b0), a1[i] = _mm512_add_ps(a1[i], b1);
    }
    for (int i = 0; i < NX; i++) {
        _mm512_mask_storeu_ps(y + i * ldy, m0, a0[i]);
        _mm512_mask_storeu_ps(y + i * ldy + 16, m1, a1[i]);
    }
}

#define NX_CASE(k)                                                                             \
    case k: kernel(y, ldy, xv, ldx, p, nq, m0, m1, k, BF16, PF, bias); break;
AI void kernel_nx(float *y, int64_t ldy, const void *xv, int64_t ldx, const uint8_t *p, int64_t nq,
                  __mmask16 m0, __mmask16 m1, int nx, const int BF16, const int PF,
                  const float *bias) {
    switch (nx) {
    NX_CASE(1) NX_CASE(2) NX_CASE(3) NX_CASE(4) NX_CASE(5) NX_CASE(6)
    NX_CASE(7) NX_CASE(8) NX_CASE(9) NX_CASE(10) NX_CASE(11)
    default: kernel(y, ldy, xv, ldx, p, nq, m0, m1, 12, BF16, PF, bias); break;
    }
}

static void run(float *y, int64_t ldy, const void *xv, int64_t ldx, int n, const wk_weight *W,
                const float *bias, int64_t r0, int64_t r1, void *scratch, const int BF16) {
    uint8_t *p = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    const int64_t nq = BF16 ? W->cols / 2 : W->cols;
    for (int64_t r = r0; r < r1; r += 32) {
        const int nr = r1 - r < 32 ? (int)(r1 - r) : 32;
        const __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFFu : (1u << nr) - 1u);
        const __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xFFFFu : nr > 16 ? (1u << (nr - 16)) - 1u : 0u);
        pack(p, W, r, nr, BF16);
        for (int i = 0; i < n; i += NXMAX) {
            const int nx = n - i < NXMAX ? n - i : NXMAX;
            kernel_nx(y + i * ldy + r, ldy, (const uint8_t *)xv + (size_t)i * ldx * 4 /* f32 or a bf16 pair */, ldx, p, nq, m0,
                      m1, nx, BF16, 0, bias ? bias + r : NULL);
        }
    }
}

/* Exact: x (n rows of W.cols f32, stride ldx floats), W in {F32, F16, BF16}; + bias (or NULL). */
void cpu_a5_gemm_f(float *y, int64_t ldy, const float *x, int64_t ldx, int n, const wk_weight *W,
                   const float *bias, int64_t r0, int64_t r1, void *scratch) {
    run(y, ldy, x, ldx, n, W, bias, r0, r1, scratch, 0);
}

int cpu_a5_fpack_supports(const wk_weight *W) {
    return (W->dt == DT_F32 || W->dt == DT_F16 || W->dt == DT_BF16) && W->rows > 0 &&
           W->cols > 0 && W->cols % 32 == 0;
}

size_t cpu_a5_fpack_panel_bytes(int64_t cols) { return (size_t)cols * 128; }

/* Panel p (rows 32p .. 32p + 31; rows past the matrix zero) into dst, 64-byte aligned. */
void cpu_a5_fpack_panel(uint8_t *dst, const wk_weight *W, int64_t p) {
    const int64_t r = 32 * p;
    pack(dst, W, r, W->rows - r < 32 ? (int)(W->rows - r) : 32, 0);
}

/* Panels per block: the block (read once per group of activation rows) stays in L2 (1 MiB per
   core on Zen 5, 2 MiB on recent Xeons) next to a group's x rows. */
#define FP_BLOCK_BYTES (512u << 10)

int64_t cpu_a5_fpack_block_rows(int64_t cols) {
    const int64_t k = (int64_t)(FP_BLOCK_BYTES / cpu_a5_fpack_panel_bytes(cols));
    return 32 * (k > 0 ? k : 1);
}

/* Exact product from panels (cpu_a5_fpack_panel, one after another), plus bias (NULL for
   none) added to each sum as it is stored; r0 a multiple of 32. */
void cpu_a5_gemm_f_packed(float *y, int64_t ldy, const float *x, int64_t ldx, int n,
                          const wk_weight *W, const uint8_t *panels, const float *bias,
                          int64_t r0, int64_t r1) {
    const int64_t cols = W->cols;
    const size_t pb = cpu_a5_fpack_panel_bytes(cols);
    const int64_t blk = cpu_a5_fpack_block_rows(cols);
    for (int64_t b0 = r0; b0 < r1; b0 += blk) {
        const int64_t b1 = b0 + blk < r1 ? b0 + blk : r1;
        for (int i = 0; i < n; i += NXMAX) {
            const int nx = n - i < NXMAX ? n - i : NXMAX;
            for (int64_t r = b0; r < b1; r += 32) {
                const int nr = b1 - r < 32 ? (int)(b1 - r) : 32;
                const __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFFu : (1u << nr) - 1u);
                const __mmask16 m1 =
                    (__mmask16)(nr >= 32 ? 0xFFFFu : nr > 16 ? (1u << (nr - 16)) - 1u : 0u);
                kernel_nx(y + i * ldy + r, ldy, x + (size_t)i * ldx, ldx,
                          panels + (size_t)(r / 32) * pb, cols, m0, m1, nx, 0, 1,
                          bias ? bias + r : NULL);
            }
        }
    }
}

/* bf16: xb = n rows of W.cols bf16 (from cpu_a5_x_to_bf16), stride ldx bf16 (even); W BF16. */
void cpu_a5_gemm_bf16(float *y, int64_t ldy, const uint16_t *xb, int64_t ldx, int n,
                      const wk_weight *W, const float *bias, int64_t r0, int64_t r1, void *scratch) {
    run(y, ldy, xb, ldx / 2, n, W, bias, r0, r1, scratch, 1);
}

/* out[0..n) = x rounded to bf16, nearest even (n % 32 == 0). */
void cpu_a5_x_to_bf16(uint16_t *out, const float *x, int64_t n) {
    for (int64_t c = 0; c < n; c += 32) {
        const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + c + 16), _mm512_loadu_ps(x + c));
        _mm512_storeu_si512((void *)(out + c), (__m512i)v);
    }
}
