/* gemmq_avx512.c — prefill matmul for Q8_0 / Q4_0 / Q5_0 / Q4_K / Q6_K weights with AVX-512 VNNI integer
 * dot products (vpdpbusd on zmm), for many activation rows at once.
 *
 * Why a separate path from decode: the decode kernels (cpu_avx512.c) reduce one 32-value
 * block per (weight row, activation row) pair horizontally, which is fine when memory is the
 * limit but wastes most of the ALU when the same weights meet hundreds of activation rows.
 * Here each zmm lane belongs to a different weight row, so nothing is reduced horizontally:
 *
 *   panel  = 16 weight rows, repacked once per call into the caller's scratch: for each
 *            32-value block, 8 zmm of "4 consecutive values of each of the 16 rows" (u8),
 *            then the 16 row scales dw (f32) and, for Q4_K, the 16 row mins mn (f32).
 *   kernel = for up to 8 activation rows, per block: 8 vpdpbusd with the row's 4 activation
 *            bytes broadcast, then y += f32(isum) · (dw · dx) [ − mn · dx · Σx for Q4_K ].
 *
 * Weights must be the unsigned operand of vpdpbusd, so they are stored with an offset and
 * the offset is removed through the activation block sums (quant.h keeps them per block):
 * Q4_0 nibbles q (value q − 8) start the integer sum at −8·Σx, Q5_0 values (q − 16) at −16·Σx; Q8_0 bytes w are stored as
 * w + 128 (w ^ 0x80) and start at −128·Σx. Each block's integer sum is exactly the one of
 * quant_dot_q8x, and blocks are combined in f32 in the same order, so the result equals that
 * definition up to the rounding of one fused multiply-add per block.
 *
 * Q6_K (values 0..63, zero point 32, one int8 scale per 16 values) keeps two integer sums per
 * block, one per 16-value group, each with its own f32 scale (the panel's dw and mn slots)
 * and its half of the activation sums for the zero point.
 *
 * Not here: threading and activation quantization (cpu.c). Only called after cpu.c has
 * checked for AVX-512 VNNI. */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/gemmq_pack.h"

#define AI static inline __attribute__((always_inline))
#define PR 16 /* weight rows per panel (zmm lanes) */

/* Bytes of one repacked 32-value block: 8 zmm of values, dw[16], mn[16]. */
#define PBLK (8 * 64 + 2 * 64)

size_t cpu_a5_gemm_q_scratch(int64_t cols) { return (size_t)(cols / QK) * PBLK + PR * (size_t)cols + 64; }

int cpu_a5_gemm_q_supports(dtype dt) {
    return dt == DT_Q8_0 || dt == DT_Q4_0 || dt == DT_Q5_0 || dt == DT_Q4_K || dt == DT_Q6_K;
}

/* Repacks weight rows [r, r + nr) (nr <= 16; missing rows are zero) into panel p, through
 * tmp (16·cols bytes): rows are unpacked contiguously, then each zmm of the panel gathers
 * the same 4 bytes of the 16 rows. */
static void repack(uint8_t *p, uint8_t *tmp, const wk_weight *W, int64_t r, int nr) {
    const int64_t nb = W->cols / QK, cols = W->cols;
    gemmq_unpack_rows(p, tmp, W, r, nr, PR, PBLK, 512, 576);
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                             11, 12, 13, 14, 15),
                                           _mm512_set1_epi32((int)cols));
    for (int64_t b = 0; b < nb; b++)
        for (int g = 0; g < 8; g++)
            _mm512_store_si512((void *)(p + b * PBLK + 64 * g),
                               _mm512_i32gather_epi32(idx, (const void *)(tmp + QK * b + 4 * g), 1));
}

AI int32_t load4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* y[i*ldy + lane] for i < NX, lanes in mask m, from one repacked panel. */
AI void kernel(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, const uint8_t *p,
               int64_t nb, __mmask16 m, const int NX, const int OFF, const int MIN) {
    __m512 acc[8];
    for (int i = 0; i < NX; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *pb = p + b * PBLK;
        __m512i s[8];
        for (int i = 0; i < NX; i++) {
            const blk_q8x *xb = xq + i * ldxq + b;
            s[i] = _mm512_set1_epi32(-OFF * (xb->sum[0] + xb->sum[1]));
        }
        for (int g = 0; g < 8; g++) {
            const __m512i w = _mm512_load_si512((const void *)(pb + 64 * g));
            for (int i = 0; i < NX; i++)
                s[i] = _mm512_dpbusd_epi32(s[i], w,
                                           _mm512_set1_epi32(load4(xq[i * ldxq + b].qs + 4 * g)));
        }
        const __m512 dw = _mm512_load_ps((const float *)(pb + 512));
        for (int i = 0; i < NX; i++) {
            const blk_q8x *xb = xq + i * ldxq + b;
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[i]), _mm512_mul_ps(dw, _mm512_set1_ps(xb->d)),
                                     acc[i]);
            if (MIN) {
                const __m512 mn = _mm512_load_ps((const float *)(pb + 576));
                acc[i] = _mm512_fnmadd_ps(mn, _mm512_set1_ps(xb->d * (float)(xb->sum[0] + xb->sum[1])),
                                          acc[i]);
            }
        }
    }
    for (int i = 0; i < NX; i++) _mm512_mask_storeu_ps(y + i * ldy, m, acc[i]);
}

/* Q6_K: the two 16-value groups of a block have their own scales (dw, mn slots) and the −32
 * zero point uses each half's activation sum, so the integer sums are kept per group. */
AI void kernel_q6(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, const uint8_t *p,
                  int64_t nb, __mmask16 m, const int NX) {
    __m512 acc[8];
    for (int i = 0; i < NX; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *pb = p + b * PBLK;
        __m512i s0[8], s1[8];
        for (int i = 0; i < NX; i++) {
            const blk_q8x *xb = xq + i * ldxq + b;
            s0[i] = _mm512_set1_epi32(-32 * xb->sum[0]);
            s1[i] = _mm512_set1_epi32(-32 * xb->sum[1]);
        }
        for (int g = 0; g < 4; g++) {
            const __m512i w0 = _mm512_load_si512((const void *)(pb + 64 * g));
            const __m512i w1 = _mm512_load_si512((const void *)(pb + 64 * (g + 4)));
            for (int i = 0; i < NX; i++) {
                const int8_t *q = xq[i * ldxq + b].qs;
                s0[i] = _mm512_dpbusd_epi32(s0[i], w0, _mm512_set1_epi32(load4(q + 4 * g)));
                s1[i] = _mm512_dpbusd_epi32(s1[i], w1, _mm512_set1_epi32(load4(q + 16 + 4 * g)));
            }
        }
        const __m512 d0 = _mm512_load_ps((const float *)(pb + 512));
        const __m512 d1 = _mm512_load_ps((const float *)(pb + 576));
        for (int i = 0; i < NX; i++) {
            const __m512 dx = _mm512_set1_ps(xq[i * ldxq + b].d);
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0[i]), _mm512_mul_ps(d0, dx), acc[i]);
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1[i]), _mm512_mul_ps(d1, dx), acc[i]);
        }
    }
    for (int i = 0; i < NX; i++) _mm512_mask_storeu_ps(y + i * ldy, m, acc[i]);
}

AI void kernel_dt(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, const uint8_t *p,
                  int64_t nb, __mmask16 m, const int NX, dtype dt) {
    if (dt == DT_Q6_K) kernel_q6(y, ldy, xq, ldxq, p, nb, m, NX);
    else if (dt == DT_Q8_0) kernel(y, ldy, xq, ldxq, p, nb, m, NX, 128, 0);
    else if (dt == DT_Q4_0) kernel(y, ldy, xq, ldxq, p, nb, m, NX, 8, 0);
    else if (dt == DT_Q5_0) kernel(y, ldy, xq, ldxq, p, nb, m, NX, 16, 0);
    else kernel(y, ldy, xq, ldxq, p, nb, m, NX, 0, 1);
}

/* ---- small batches (a few activation rows): Q4_0 and Q8_0 without the repack ----
 *
 * With a few activation rows the repack above costs more than the products it feeds (at 16
 * rows, most of the call's time was unpacking, f16 conversion and gathers into the panel).
 * These kernels read the 16 weight rows' blocks straight from the file layout and transpose
 * them in registers: each row's 16 bytes of values go into one 128-bit lane of four zmm
 * (rows q, 4+q, 8+q, 12+q), and a 4×4 dword transpose inside the lanes leaves zmm g with
 * dword g of every row in lane = row. For Q4_0 the low nibbles of dword g are values
 * 4g..4g+3 and the high nibbles values 16+4g.., i.e. groups g and g+4 of the block, which is
 * the panel layout the kernel above uses; Q8_0 does the same with its two 16-byte halves.
 * The 16 f16 scales come from one gather. Rows past the end of the range repeat the last row
 * (no read outside the weight) and are masked out of the store. Same integer block sums and
 * f32 combination as kernel(), so the same definition holds. */

/* 16 row streams at once are more than the hardware prefetcher follows: each row's line
   PF_AHEAD bytes ahead is requested once per 64 bytes of the row (0.5B Q4_0, pp4..pp32:
   256 and 1024 measured slower than 512) */
#ifndef PF_AHEAD
#define PF_AHEAD 512
#endif

/* In-lane 4×4 transpose of dwords: a[q] lane L = row 4L+q's dwords 0..3 → a[g] lane L = dword
   g of rows 4L..4L+3 (so dword position 4L+q = row). */
AI void tp4x4(__m512i *a) {
    const __m512i t0 = _mm512_unpacklo_epi32(a[0], a[1]), t1 = _mm512_unpackhi_epi32(a[0], a[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(a[2], a[3]), t3 = _mm512_unpackhi_epi32(a[2], a[3]);
    a[0] = _mm512_unpacklo_epi64(t0, t2), a[1] = _mm512_unpackhi_epi64(t0, t2);
    a[2] = _mm512_unpacklo_epi64(t1, t3), a[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* 16 bytes at byte offset off of each of the 16 rows' block (row j at rp[j]) → a[0..4). */
AI void load16x16(__m512i *a, const uint8_t *const *rp, size_t off) {
    for (int q = 0; q < 4; q++) {
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(rp[q] + off)));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rp[4 + q] + off)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rp[8 + q] + off)), 2);
        a[q] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(rp[12 + q] + off)), 3);
    }
    tp4x4(a);
}

/* One 32-value block of 16 weight rows (w: zmm g = values 4g..4g+3 of each row, unsigned,
   offset OFF; dw: the rows' scales) against NX activation rows: acc[i] += f32(Σ) · dw · dx_i.
   Rows go in groups of 8 with their products interleaved (g outer, rows inner), so 8
   independent dot-product chains are in flight at once instead of one row's chain of 8
   dependent instructions at a time (+3-10% at 16 rows, `wick bench kernels --rows 16`).
   Each row's sums are the same integers in the same float order as one row at a time.
   Shared by the direct and the packed kernels. */
AI void block_rows(__m512 *acc, const blk_q8x *xq, int64_t ldxq, int64_t b, const __m512i *w,
                   __m512 dw, const int NX, const int OFF) {
    for (int i0 = 0; i0 < NX; i0 += 8) {
        const int n = NX - i0 < 8 ? NX - i0 : 8;
        __m512i s[8];
        for (int i = 0; i < n; i++) {
            const blk_q8x *xb = xq + (i0 + i) * ldxq + b;
            s[i] = _mm512_set1_epi32(-OFF * (xb->sum[0] + xb->sum[1]));
        }
        for (int g = 0; g < 8; g++)
            for (int i = 0; i < n; i++) {
                const blk_q8x *xb = xq + (i0 + i) * ldxq + b;
                s[i] = _mm512_dpbusd_epi32(s[i], w[g], _mm512_set1_epi32(load4(xb->qs + 4 * g)));
            }
        for (int i = 0; i < n; i++) {
            const blk_q8x *xb = xq + (i0 + i) * ldxq + b;
            acc[i0 + i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[i]),
                                          _mm512_mul_ps(dw, _mm512_set1_ps(xb->d)), acc[i0 + i]);
        }
    }
}

/* NX (1..16) activation rows against 16 weight rows of Q4_0 (Q8 = 0) or Q8_0 (Q8 = 1); idx
   holds the rows' byte offsets from rp[0] for the scale gather. */
AI void direct_kernel(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, const uint8_t *const *rp,
                      __m512i idx, int64_t nb, __mmask16 m, const int NX, const int Q8) {
    const size_t bb = Q8 ? sizeof(blk_q8_0) : sizeof(blk_q4_0);
    const int OFF = Q8 ? 128 : 8;
    const __m512i m4 = _mm512_set1_epi8(0x0F), flip = _mm512_set1_epi8((char)0x80);
    const uint8_t *base = rp[0];
    __m512 acc[16];
    for (int i = 0; i < NX; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t o = (size_t)b * bb;
        if ((o & ~(size_t)63) != ((o + bb) & ~(size_t)63))
            for (int j = 0; j < 16; j++) _mm_prefetch((const char *)rp[j] + o + PF_AHEAD, _MM_HINT_T0);
        __m512i w[8];
        if (Q8) {
            load16x16(w, rp, o + 2);
            load16x16(w + 4, rp, o + 18);
            for (int g = 0; g < 8; g++) w[g] = _mm512_xor_si512(w[g], flip);
        } else {
            load16x16(w, rp, o + 2);
            for (int g = 0; g < 4; g++) {
                w[g + 4] = _mm512_and_si512(_mm512_srli_epi16(w[g], 4), m4);
                w[g] = _mm512_and_si512(w[g], m4);
            }
        }
        const __m512i d16 = _mm512_i32gather_epi32(idx, (const void *)(base + o), 1);
        const __m512 dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d16));
        block_rows(acc, xq, ldxq, b, w, dw, NX, OFF);
    }
    for (int i = 0; i < NX; i++) _mm512_mask_storeu_ps(y + i * ldy, m, acc[i]);
}

AI void direct_nx(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, const uint8_t *const *rp,
                  __m512i idx, int64_t nb, __mmask16 m, int nx, const int Q8) {
    switch (nx) {
    case 1: direct_kernel(y, ldy, xq, ldxq, rp, idx, nb, m, 1, Q8); break;
    case 2: direct_kernel(y, ldy, xq, ldxq, rp, idx, nb, m, 2, Q8); break;
    case 3: direct_kernel(y, ldy, xq, ldxq, rp, idx, nb, m, 3, Q8); break;
    case 4: direct_kernel(y, ldy, xq, ldxq, rp, idx, nb, m, 4, Q8); break;
    case 5: direct_kernel(y, ldy, xq, ldxq, rp, idx, nb, m, 5, Q8); break;
    case 6: direct_kernel(y, ldy, xq, ldxq, rp, idx, nb, m, 6, Q8); break;
    case 7: direct_kernel(y, ldy, xq, ldxq, rp, idx, nb, m, 7, Q8); break;
    case 8: direct_kernel(y, ldy, xq, ldxq, rp, idx, nb, m, 8, Q8); break;
    case 9: direct_kernel(y, ldy, xq, ldxq, rp, idx, nb, m, 9, Q8); break;
    case 10: direct_kernel(y, ldy, xq, ldxq, rp, idx, nb, m, 10, Q8); break;
    case 11: direct_kernel(y, ldy, xq, ldxq, rp, idx, nb, m, 11, Q8); break;
    case 12: direct_kernel(y, ldy, xq, ldxq, rp, idx, nb, m, 12, Q8); break;
    case 13: direct_kernel(y, ldy, xq, ldxq, rp, idx, nb, m, 13, Q8); break;
    case 14: direct_kernel(y, ldy, xq, ldxq, rp, idx, nb, m, 14, Q8); break;
    case 15: direct_kernel(y, ldy, xq, ldxq, rp, idx, nb, m, 15, Q8); break;
    default: direct_kernel(y, ldy, xq, ldxq, rp, idx, nb, m, 16, Q8); break;
    }
}

int cpu_a5_gemm_q_direct_supports(dtype dt) { return dt == DT_Q4_0 || dt == DT_Q8_0; }

/* Same contract as cpu_a5_gemm_q for W.dt in {Q4_0, Q8_0}, any n, no scratch; meant for small
   n (the panel is transposed again for every 16 activation rows). row bytes · 15 < 2^31. */
void cpu_a5_gemm_q_direct(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int n,
                          const wk_weight *W, int64_t r0, int64_t r1) {
    const int64_t nb = W->cols / QK;
    const size_t rb = dtype_row_bytes(W->dt, W->cols);
    const int q8 = W->dt == DT_Q8_0;
    for (int64_t r = r0; r < r1; r += 16) {
        const int nr = r1 - r < 16 ? (int)(r1 - r) : 16;
        const __mmask16 m = (__mmask16)((1u << nr) - 1u);
        const __m512i lane = _mm512_min_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                              _mm512_set1_epi32(nr - 1));
        const __m512i idx = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)rb));
        const uint8_t *rp[16];
        for (int j = 0; j < 16; j++) rp[j] = (const uint8_t *)W->data + (size_t)(r + (j < nr ? j : nr - 1)) * rb;
        for (int i = 0; i < n; i += 16) {
            const int nx = n - i < 16 ? n - i : 16;
            if (q8) direct_nx(y + i * ldy + r, ldy, xq + i * ldxq, ldxq, rp, idx, nb, m, nx, 1);
            else direct_nx(y + i * ldy + r, ldy, xq + i * ldxq, ldxq, rp, idx, nb, m, nx, 0);
        }
    }
}

/* y[i*ldy + r] = Σ_c W[r, c]·x̂_i[c] for i < n, r in [r0, r1) (see the file comment).
 * scratch: cpu_a5_gemm_q_scratch(W.cols) bytes, any alignment. cols < 2^31 / 16. */
void cpu_a5_gemm_q(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int n,
                   const wk_weight *W, int64_t r0, int64_t r1, void *scratch) {
    const int64_t nb = W->cols / QK;
    uint8_t *p = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    for (int64_t r = r0; r < r1; r += PR) {
        const int nr = r1 - r < PR ? (int)(r1 - r) : PR;
        const __mmask16 m = (__mmask16)((1u << nr) - 1u);
        repack(p, p + nb * PBLK, W, r, nr);
        int i = 0;
        for (; i + 8 <= n; i += 8)
            kernel_dt(y + i * ldy + r, ldy, xq + i * ldxq, ldxq, p, nb, m, 8, W->dt);
        for (; i + 4 <= n; i += 4)
            kernel_dt(y + i * ldy + r, ldy, xq + i * ldxq, ldxq, p, nb, m, 4, W->dt);
        for (; i < n; i++)
            kernel_dt(y + i * ldy + r, ldy, xq + i * ldxq, ldxq, p, nb, m, 1, W->dt);
    }
}

/* ---- packed weights: Q4_0 / Q8_0 laid out once, at load, for this kernel ----
 *
 * The direct kernel above reads 16 row streams and transposes them for every call; from
 * DRAM that is latency-bound (16 short streams per thread outrun the prefetchers). Packed,
 * each panel of 16 rows is one sequential stream in the order the kernel consumes it:
 *   for each block b: VB bytes of values — zmm g holds bytes 4g..4g+3 of the block's values
 *   of each of the 16 rows (lane = row): Q4_0 4 zmm of nibble bytes (the low nibbles of zmm
 *   g are values 4g.., the high ones 16+4g..), Q8_0 8 zmm of value bytes stored as w ^ 0x80
 *   (unsigned, the −128 offset removed through the activation sums as above);
 *   then for each block b: the 16 rows' f16 scales (32 bytes);
 *   the panel padded to 64 bytes. Rows past the matrix are zero (scale 0) and never stored.
 * Same integer block sums and f32 combination as kernel(), so the same definition holds:
 * results are bit-identical to the direct kernel's. */

static size_t pk_vb(dtype dt) { return dt == DT_Q8_0 ? 512 : 256; }

size_t cpu_a5_pack_panel_bytes(dtype dt, int64_t cols) {
    const size_t nb = (size_t)(cols / QK);
    return (nb * (pk_vb(dt) + 32) + 63) & ~(size_t)63;
}

int cpu_a5_pack_supports(const wk_weight *W) {
    return (W->dt == DT_Q4_0 || W->dt == DT_Q8_0) && W->cols > 0 && W->cols % QK == 0 &&
           W->rows > 0 && W->cols / QK < (1 << 24);
}

/* Writes panel p (rows 16p .. 16p + 15) of W into dst (cpu_a5_pack_panel_bytes bytes, zeroed
   beforehand: rows past the matrix and the padding are left as they are). */
void cpu_a5_pack_panel(uint8_t *dst, const wk_weight *W, int64_t p) {
    const int64_t nb = W->cols / QK;
    const size_t rb = dtype_row_bytes(W->dt, W->cols), vb = pk_vb(W->dt);
    const int q8 = W->dt == DT_Q8_0;
    uint8_t *sc = dst + (size_t)nb * vb;
    int nr = 0;
    const uint8_t *rowp[16];
    for (; nr < 16 && 16 * p + nr < W->rows; nr++) rowp[nr] = (const uint8_t *)W->data + (size_t)(16 * p + nr) * rb;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *v = dst + (size_t)b * vb;
        for (int j = 0; j < nr; j++) {
            uint32_t w[8];
            if (q8) {
                const blk_q8_0 *blk = (const blk_q8_0 *)rowp[j] + b;
                memcpy(w, blk->qs, 32);
                for (int g = 0; g < 8; g++) {
                    w[g] ^= 0x80808080u;
                    memcpy(v + 64 * g + 4 * j, &w[g], 4);
                }
                memcpy(sc + 32 * b + 2 * j, &blk->d, 2);
            } else {
                const blk_q4_0 *blk = (const blk_q4_0 *)rowp[j] + b;
                memcpy(w, blk->qs, 16);
                for (int g = 0; g < 4; g++) memcpy(v + 64 * g + 4 * j, &w[g], 4);
                memcpy(sc + 32 * b + 2 * j, &blk->d, 2);
            }
        }
    }
}

/* Row r of W dequantized (the reference formulas, quant_dequantize_row) from its packed panel
   (cpu_a5_pack_panel): the file's pages under a packed matrix were given back, and reading
   them again would fault the whole matrix back in. */
void cpu_a5_packed_row_to_f32(float *out, const wk_weight *W, const uint8_t *panels, int64_t r) {
    const int64_t nb = W->cols / QK;
    const size_t vb = pk_vb(W->dt);
    const uint8_t *pv = panels + (size_t)(r / 16) * cpu_a5_pack_panel_bytes(W->dt, W->cols);
    const uint8_t *sc = pv + (size_t)nb * vb;
    const int j = (int)(r % 16);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *v = pv + (size_t)b * vb;
        if (W->dt == DT_Q8_0) {
            blk_q8_0 blk;
            memcpy(&blk.d, sc + 32 * b + 2 * j, 2);
            for (int g = 0; g < 8; g++) {
                uint32_t w;
                memcpy(&w, v + 64 * g + 4 * j, 4);
                w ^= 0x80808080u;
                memcpy(blk.qs + 4 * g, &w, 4);
            }
            quant_dequantize_row(DT_Q8_0, out + QK * b, &blk, QK);
        } else {
            blk_q4_0 blk;
            memcpy(&blk.d, sc + 32 * b + 2 * j, 2);
            for (int g = 0; g < 4; g++) memcpy(blk.qs + 4 * g, v + 64 * g + 4 * j, 4);
            quant_dequantize_row(DT_Q4_0, out + QK * b, &blk, QK);
        }
    }
}

/* Prefetch distance in the panel's stream: DRAM on this VM needs more than 1 KB ahead (0.5B
   Q4_0 4864×896, one thread: 4096 bytes 157 µs/call, 1024 210, 512 268); 8192 gave 16
   streams of `bench batch` a further 3-8% over 4096 (2026-12-06, two rounds; 16384 no more) */
#ifndef PK_AHEAD
#define PK_AHEAD 8192
#endif
/* Blocks per chunk when n > 8 rows take several passes: every pass runs over one chunk of the
   panel (in L1) before the next chunk, and only the first pass prefetches, so the weights
   stream from memory once, spread over all passes. The f32 sums are stored and taken up
   again between chunks (exact: same order, bit-identical). 0.5B Q4_0, `WICK_PROFILE=1 wick
   bench batch -s 16 -n 64 --no-mix`, four alternating rounds (2026-12-07, EPYC VM): the Q8_0
   LM head at 16 rows 6.2-6.5 → 5.9-6.1 ms, Q4_0 layers 95.4-97.4 → 93.0-96.1 µs a call,
   16 streams 536-541 → 541-557 tok/s. */
#ifndef PK_CHUNK
#define PK_CHUNK 16
#endif

/* NX (1..8) activation rows against one packed panel. The block's weights are loaded (for
   Q4_0 unpacked) one zmm at a time and met by every row's integer sum at once, so the 8 sums,
   the 8 f32 accumulators and the weights stay in registers: the earlier kernel held all 8
   weight zmm of a block and took up to 16 rows, and spilled from 9 rows on (16 rows of Q4_0
   4864×896, one thread, in cache: 2.9 G vpdpbusd/s, this one in passes of 8: 3.8). */
AI void packed_kernel(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, const uint8_t *pv,
                      int64_t nb, int64_t b0, int64_t b1, __mmask16 m, const int NX, const int Q8,
                      const int PF) {
    const size_t vb = Q8 ? 512 : 256;
    const int OFF = Q8 ? 128 : 8;
    const uint8_t *ps = pv + (size_t)nb * vb;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc[8];
    if (b0) /* a later chunk of blocks: go on from the stored partial sums (f32: exact) */
        for (int i = 0; i < NX; i++) acc[i] = _mm512_maskz_loadu_ps(m, y + i * ldy);
    else
        for (int i = 0; i < NX; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t b = b0; b < b1; b++) {
        const uint8_t *v = pv + (size_t)b * vb;
        if (PF) {
            for (size_t o = 0; o < vb; o += 64) _mm_prefetch((const char *)v + PK_AHEAD + o, _MM_HINT_T0);
            if (!(b & 1)) _mm_prefetch((const char *)(ps + 32 * b) + PK_AHEAD / 8, _MM_HINT_T0);
        }
        const blk_q8x *xr = xq + b;
        __m512i s[8];
        for (int i = 0; i < NX; i++)
            s[i] = _mm512_set1_epi32(-OFF * (xr[i * ldxq].sum[0] + xr[i * ldxq].sum[1]));
        if (Q8) {
            for (int g = 0; g < 8; g++) {
                const __m512i w = _mm512_load_si512((const void *)(v + 64 * g));
                for (int i = 0; i < NX; i++)
                    s[i] = _mm512_dpbusd_epi32(s[i], w, _mm512_set1_epi32(load4(xr[i * ldxq].qs + 4 * g)));
            }
        } else {
            for (int g = 0; g < 4; g++) {
                const __m512i t = _mm512_load_si512((const void *)(v + 64 * g));
                const __m512i lo = _mm512_and_si512(t, m4), hi = _mm512_and_si512(_mm512_srli_epi16(t, 4), m4);
                for (int i = 0; i < NX; i++)
                    s[i] = _mm512_dpbusd_epi32(s[i], lo, _mm512_set1_epi32(load4(xr[i * ldxq].qs + 4 * g)));
                for (int i = 0; i < NX; i++)
                    s[i] = _mm512_dpbusd_epi32(s[i], hi, _mm512_set1_epi32(load4(xr[i * ldxq].qs + 16 + 4 * g)));
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(ps + 32 * b)));
        for (int i = 0; i < NX; i++)
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[i]), _mm512_mul_ps(dw, _mm512_set1_ps(xr[i * ldxq].d)),
                                     acc[i]);
    }
    for (int i = 0; i < NX; i++) _mm512_mask_storeu_ps(y + i * ldy, m, acc[i]);
}

#define PK_CASES(Q8, PF)                                                                           \
    switch (nx) {                                                                                  \
    case 1: packed_kernel(y, ldy, xq, ldxq, pv, nb, b0, b1, m, 1, Q8, PF); break;                  \
    case 2: packed_kernel(y, ldy, xq, ldxq, pv, nb, b0, b1, m, 2, Q8, PF); break;                  \
    case 3: packed_kernel(y, ldy, xq, ldxq, pv, nb, b0, b1, m, 3, Q8, PF); break;                  \
    case 4: packed_kernel(y, ldy, xq, ldxq, pv, nb, b0, b1, m, 4, Q8, PF); break;                  \
    case 5: packed_kernel(y, ldy, xq, ldxq, pv, nb, b0, b1, m, 5, Q8, PF); break;                  \
    case 6: packed_kernel(y, ldy, xq, ldxq, pv, nb, b0, b1, m, 6, Q8, PF); break;                  \
    case 7: packed_kernel(y, ldy, xq, ldxq, pv, nb, b0, b1, m, 7, Q8, PF); break;                  \
    default: packed_kernel(y, ldy, xq, ldxq, pv, nb, b0, b1, m, 8, Q8, PF); break;                 \
    }

static void packed_nx(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, const uint8_t *pv,
                      int64_t nb, int64_t b0, int64_t b1, __mmask16 m, int nx, int q8, int pf) {
    if (q8) {
        if (pf) PK_CASES(1, 1) else PK_CASES(1, 0)
    } else {
        if (pf) PK_CASES(0, 1) else PK_CASES(0, 0)
    }
}

/* y[i*ldy + r] = Σ_c W[r, c]·x̂_i[c] for i < n, r in [r0, r1) from `panels` (W's panels one
   after another, made by cpu_a5_pack_panel); r0 a multiple of 16. Any n: every 8 activation rows
   read the panel again, a chunk of PK_CHUNK blocks at a time from 9 rows on (from cache once
   the first pass brought it in). */
void cpu_a5_gemm_q_packed(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int n,
                          const wk_weight *W, const uint8_t *panels, int64_t r0, int64_t r1) {
    const int64_t nb = W->cols / QK;
    const size_t pb = cpu_a5_pack_panel_bytes(W->dt, W->cols);
    const int q8 = W->dt == DT_Q8_0;
    for (int64_t r = r0; r < r1; r += 16) {
        const int nr = r1 - r < 16 ? (int)(r1 - r) : 16;
        const __mmask16 m = (__mmask16)((1u << nr) - 1u);
        const uint8_t *pv = panels + (size_t)(r / 16) * pb;
        const int64_t ch = n > 8 ? PK_CHUNK : nb;
        for (int64_t b0 = 0; b0 < nb; b0 += ch) {
            const int64_t b1 = b0 + ch < nb ? b0 + ch : nb;
            for (int i = 0; i < n; i += 8) {
                const int nx = n - i < 8 ? n - i : 8;
                packed_nx(y + i * ldy + r, ldy, xq + i * ldxq, ldxq, pv, nb, b0, b1, m, nx, q8, i == 0);
            }
        }
    }
}
