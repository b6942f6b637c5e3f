/* gemm_amx.c — BF16, F16 (and quantized prefill) matmuls in precision fast on Intel AMX (AMX-TILE + AMX-BF16):
 * TDPBF16PS multiplies a 16×32 bf16 tile by a 32×16 one into 16×16 f32 sums, 16 384 flops in
 * one instruction (a core's vdpbf16ps does 64 a cycle; a tile op about 8× that).
 *
 * Definition (the same as gemm_f_avx512.c's bf16 kernel): activations rounded to bf16 (round
 * to nearest even), each product of two bf16 values exact in f32, summed in f32 (AMX treats
 * bf16 inputs below 2^-126 as zero and flushes f32 results of that size: far below what a
 * model's sums hold). So the error against the reference is the activations' rounding
 * (relative 2^-9 per element) plus summation order.
 *   BF16 weights: the tiles are read straight from the weight rows in their file layout.
 *   F16 weights: each weight w is split into hi = w with its f32 significand cut to 8 bits and
 *     lo = w - hi; an f16 has 11 significant bits, so lo has at most 3 and both are exact
 *     bf16 values with hi + lo = w. The pair (hi, lo) meets the pair (x̂, x̂) in one dot
 *     step, so the weights enter exactly: the only rounding is x's, as for BF16.
 *
 *   Quantized weights (Q4_0, Q8_0, Q4_K, ..., prefill only): each row dequantized with the
 *     reference formulas and rounded to bf16 (relative 2^-9 per weight on top of the
 *     activations' rounding) — the CUDA backend's fast definition for its tensor-core GEMMs,
 *     and finer than the 8-bit activations of the integer GEMM it replaces there.
 *
 * Roles: tile A = 16 weight rows × 32 bf16 (one K chunk), tile B = the activations in the
 * layout TDPBF16PS wants for its second operand — row q of a B tile holds, for each of 16
 * tokens, the dword (x̂[2q], x̂[2q+1]) (F16: (x̂[q], x̂[q])) — made once per call by
 * cpu_amx_make_xv (a 16×16 dword transpose per chunk). C = 16 weight rows × 16 tokens is
 * stored, transposed in registers and written to y's token rows (+ bias after the sum, ref's
 * order). Weights are never repacked, so a decode step of a few tokens reads each weight
 * once, as the matvec does.
 *
 * Blocking: 2 A tiles (32 weight rows) × 2 B tiles (32 tokens) → 4 C tiles, all 8 tiles in
 * use, 4 loads per 4 tile products. A group of 32-row blocks (about GROUP_BYTES of weights,
 * kept in L2) runs for each 32-token slice in turn, so the activations are read once per
 * group rather than once per 32 rows.
 *
 * Not here: threading and the activation buffer (cpu.c), the choice of path (cpu.c's
 * cpu_matmul). Only called after cpu_amx_init() returned 1; cols % 32 == 0. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/tp16_avx512.h"

#define AI static inline __attribute__((always_inline))
#define GROUP_BYTES (768u << 10)
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

typedef struct tile_cfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_cfg;

int cpu_amx_init(void) {
    unsigned a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
    const int tile = (d >> 24) & 1, bf16 = (d >> 22) & 1;
    if (!tile || !bf16) return 0;
    /* Linux hands out the 8 KiB tile state only to processes that ask for it */
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

/* K chunks of 32 bf16 per weight row: BF16 cols/32, F16 (hi, lo pairs) cols/16. */
static int64_t n_chunks(const wk_weight *W) { return W->dt == DT_F16 ? W->cols / 16 : W->cols / 32; }

size_t cpu_amx_xv_bytes(int n, int64_t cols, dtype dt) {
    const int64_t pairs = dt == DT_F16 ? cols : cols / 2;
    return (size_t)((n + 15) / 16) * (size_t)pairs * 64;
}

/* Token blocks [b0, b1) (16 tokens each; tokens >= n are zero) of x (n rows of cols f32,
 * stride ldx) into xv: block b, pair q at xv + (b·pairs + q)·16 dwords, one dword per token. */
void cpu_amx_make_xv(uint32_t *xv, const float *x, int64_t ldx, int n, int64_t cols, dtype dt,
                     int b0, int b1) {
    const int f16 = dt == DT_F16;
    const int64_t pairs = f16 ? cols : cols / 2, step = f16 ? 16 : 32; /* x values per chunk */
    for (int b = b0; b < b1; b++) {
        uint32_t *blk = xv + (size_t)b * (size_t)pairs * 16;
        for (int64_t c0 = 0; c0 < cols; c0 += step) {
            __m512i a[16];
            for (int j = 0; j < 16; j++) {
                const int t = 16 * b + j;
                if (t >= n) {
                    a[j] = _mm512_setzero_si512();
                    continue;
                }
                const float *xr = x + (size_t)t * (size_t)ldx + c0;
                if (f16) { /* (x̂, x̂) per value */
                    const __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(xr));
                    const __m512i v = _mm512_cvtepu16_epi32((__m256i)h);
                    a[j] = _mm512_or_si512(v, _mm512_slli_epi32(v, 16));
                } else {
                    a[j] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(xr + 16), _mm512_loadu_ps(xr));
                }
            }
            tp16(a);
            const int64_t q0 = f16 ? c0 : c0 / 2;
            for (int q = 0; q < 16; q++) _mm512_storeu_si512((void *)(blk + (q0 + q) * 16), a[q]);
        }
    }
}

size_t cpu_amx_scratch(int64_t cols, dtype dt) {
    const size_t block = (size_t)32 * (size_t)cols * (dt == DT_F16 ? 4 : 2);
    const size_t group = block > GROUP_BYTES ? block : GROUP_BYTES / block * block;
    return group + 4096 + (size_t)cols * 4 + 64;
}

/* Rows [r, r + nr) (nr <= 32; missing rows zero) as 32 rows of n_chunks(W)·64 bytes at dst:
 * F16 as (hi, lo) bf16 pairs, BF16 copied (the tail block of a matrix), quantized types
 * dequantized (to_f32, the table's row_to_f32, into the cols floats at f) and rounded to
 * bf16, nearest even. */
static void convert_block(uint8_t *dst, const wk_weight *W, int64_t r, int nr, float *f,
                          void (*to_f32)(float *, const wk_weight *, int64_t)) {
    const int64_t cols = W->cols, rb_out = n_chunks(W) * 64;
    const size_t rb = dtype_row_bytes(W->dt, cols);
    for (int i = 0; i < 32; i++) {
        uint8_t *o = dst + i * rb_out;
        if (i >= nr) {
            memset(o, 0, (size_t)rb_out);
            continue;
        }
        const uint8_t *row = (const uint8_t *)W->data + (size_t)(r + i) * rb;
        if (W->dt == DT_BF16) {
            memcpy(o, row, (size_t)rb_out);
            continue;
        }
        if (W->dt != DT_F16) {
            to_f32(f, W, r + i);
            cpu_a5_x_to_bf16((uint16_t *)o, f, cols);
            continue;
        }
        for (int64_t c = 0; c < cols; c += 16) {
            const __m512 w = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + c)));
            const __m512i hi = _mm512_and_si512(_mm512_castps_si512(w), _mm512_set1_epi32((int)0xFFFF0000u));
            __m512 lo = _mm512_sub_ps(w, _mm512_castsi512_ps(hi)); /* exact, <= 3 bits */
            lo = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(lo, lo, _CMP_ORD_Q), lo); /* ±inf, NaN: in hi */
            const __m512i d = _mm512_or_si512(_mm512_srli_epi32(hi, 16),
                                              _mm512_and_si512(_mm512_castps_si512(lo),
                                                               _mm512_set1_epi32((int)0xFFFF0000u)));
            _mm512_storeu_si512((void *)(o + c * 4), d);
        }
    }
}

/* The 16×16 sums in buf (row i = weight row r + i, column j = token t + j) to y, + bias. */
AI void store_c(float *y, int64_t ldy, const float *buf, int64_t r, int nr, int t, int n,
                const float *bias) {
    __m512i a[16];
    for (int i = 0; i < 16; i++) a[i] = _mm512_load_si512((const void *)(buf + 16 * i));
    tp16(a);
    const __mmask16 m = (__mmask16)(nr >= 16 ? 0xFFFFu : nr > 0 ? (1u << nr) - 1u : 0u);
    if (!m) return;
    const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + r) : _mm512_setzero_ps();
    for (int j = 0; j < 16 && t + j < n; j++) {
        __m512 v = _mm512_castsi512_ps(a[j]);
        if (bias) v = _mm512_add_ps(v, b);
        _mm512_mask_storeu_ps(y + (size_t)(t + j) * (size_t)ldy + r, m, v);
    }
}

/* One 32-row block (A rows at a0 and a0 + 16 rows, stride sa bytes) × one 32-token slice
 * (B tiles of blocks b and b + 1 of xv; NB = 1 when the slice has one block). */
AI void block_slice(float *y, int64_t ldy, const uint8_t *a0, size_t sa, const uint32_t *xv,
                    int64_t pairs, int b, int n, int64_t nk, int64_t r, int nr, const float *bias,
                    float *buf, const int NB) {
    const uint8_t *a1 = a0 + 16 * sa;
    const uint32_t *x0 = xv + (size_t)b * (size_t)pairs * 16, *x1 = x0 + (size_t)pairs * 16;
    _tile_zero(0);
    _tile_zero(2);
    if (NB == 2) {
        _tile_zero(1);
        _tile_zero(3);
    }
    for (int64_t k = 0; k < nk; k++) {
        _tile_loadd(4, a0 + k * 64, (long)sa);
        _tile_loadd(5, a1 + k * 64, (long)sa);
        _tile_loadd(6, x0 + k * 256, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(2, 5, 6);
        if (NB == 2) {
            _tile_loadd(7, x1 + k * 256, 64);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(3, 5, 7);
        }
    }
    const int t = 16 * b;
    _tile_stored(0, buf, 64);
    store_c(y, ldy, buf, r, nr, t, n, bias);
    _tile_stored(2, buf, 64);
    store_c(y, ldy, buf, r + 16, nr - 16, t, n, bias);
    if (NB == 2) {
        _tile_stored(1, buf, 64);
        store_c(y, ldy, buf, r, nr, t + 16, n, bias);
        _tile_stored(3, buf, 64);
        store_c(y, ldy, buf, r + 16, nr - 16, t + 16, n, bias);
    }
}

/* y[i, r] (+ bias[r]) for the n tokens of xv (cpu_amx_make_xv) and weight rows [r0, r1);
 * W BF16, F16 or quantized (to_f32: the table's row_to_f32), cols % 32 == 0; scratch
 * cpu_amx_scratch(cols, dt) bytes, this thread's. */
void cpu_amx_gemm(float *y, int64_t ldy, const uint32_t *xv, int n, const wk_weight *W,
                  const float *bias, int64_t r0, int64_t r1, void *scratch,
                  void (*to_f32)(float *, const wk_weight *, int64_t)) {
    if (n <= 0 || r1 <= r0) return;
    tile_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; i++) cfg.colsb[i] = 64, cfg.rows[i] = 16;
    _tile_loadconfig(&cfg);
    uint8_t *sc = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    float *buf = (float *)sc;            /* 16×16 f32 staging (1 KiB of the 4 KiB) */
    float *frow = (float *)(sc + 4096);  /* one dequantized row */
    uint8_t *conv = sc + 4096 + (((size_t)W->cols * 4 + 63) & ~(size_t)63); /* the group's blocks */
    const int conv_all = W->dt != DT_BF16; /* every block converted (F16, quantized) */
    const int64_t nk = n_chunks(W), pairs = nk * 16;
    const size_t rb = dtype_row_bytes(W->dt, W->cols), cb = (size_t)nk * 64;
    const size_t block_bytes = 32 * (conv_all ? cb : rb);
    int64_t gb = GROUP_BYTES / block_bytes; /* 32-row blocks per group */
    if (gb < 1) gb = 1;
    const int nb = (n + 15) / 16;
    for (int64_t g0 = r0; g0 < r1; g0 += 32 * gb) {
        const int64_t g1 = g0 + 32 * gb < r1 ? g0 + 32 * gb : r1;
        /* F16 and quantized blocks and a BF16 tail (< 32 rows) are converted into the scratch */
        for (int64_t r = g0; r < g1; r += 32) {
            const int nr = g1 - r < 32 ? (int)(g1 - r) : 32;
            if (conv_all || nr < 32) convert_block(conv + (size_t)((r - g0) / 32) * 32 * cb, W, r, nr, frow, to_f32);
        }
        for (int b = 0; b < nb; b += 2)
            for (int64_t r = g0; r < g1; r += 32) {
                const int nr = g1 - r < 32 ? (int)(g1 - r) : 32;
                const uint8_t *a0;
                size_t sa;
                if (conv_all || nr < 32) a0 = conv + (size_t)((r - g0) / 32) * 32 * cb, sa = cb;
                else a0 = (const uint8_t *)W->data + (size_t)r * rb, sa = rb;
                if (b + 1 < nb)
                    block_slice(y, ldy, a0, sa, xv, pairs, b, n, nk, r, nr, bias, buf, 2);
                else
                    block_slice(y, ldy, a0, sa, xv, pairs, b, n, nk, r, nr, bias, buf, 1);
            }
    }
    _tile_release();
}
