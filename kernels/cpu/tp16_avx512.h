/* tp16_avx512.h — a 16×16 transpose of 32-bit elements in 16 AVX-512 registers, shared by the
 * packed GEMM's weight panels (gemm_f_avx512.c), the attention tiles' Kᵀ (cpu_avx512.c) and the
 * AMX files' tile layouts (gemm_amx.c, attn_amx.c). Include only from files compiled with
 * AVX-512 (*_avx512.c, *_amx.c). */
#ifndef WICK_TP16_AVX512_H
#define WICK_TP16_AVX512_H
#include <immintrin.h>

/* 16×16 transpose of dwords: a[j] = 16 dwords of row j → a[c] = dword c of rows 0..15. */
static inline __attribute__((always_inline)) void tp16(__m512i *a) {
    __m512i t[16], u[16];
    for (int k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_epi32(a[2 * k], a[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_epi32(a[2 * k], a[2 * k + 1]);
    }
    /* u[4k + j], 128-bit lane L: rows 4k..4k+3 at column 4L + j */
    for (int k = 0; k < 4; k++) {
        u[4 * k + 0] = _mm512_unpacklo_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 1] = _mm512_unpackhi_epi64(t[4 * k], t[4 * k + 2]);
        u[4 * k + 2] = _mm512_unpacklo_epi64(t[4 * k + 1], t[4 * k + 3]);
        u[4 * k + 3] = _mm512_unpackhi_epi64(t[4 * k + 1], t[4 * k + 3]);
    }
    /* a 4×4 transpose of 128-bit lanes per j: column 4L + j = lane L of u[j], u[4+j], ... */
    for (int j = 0; j < 4; j++) {
        const __m512i x0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x44);
        const __m512i x1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xEE);
        const __m512i x2 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x44);
        const __m512i x3 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xEE);
        a[j] = _mm512_shuffle_i32x4(x0, x2, 0x88);
        a[4 + j] = _mm512_shuffle_i32x4(x0, x2, 0xDD);
        a[8 + j] = _mm512_shuffle_i32x4(x1, x3, 0x88);
        a[12 + j] = _mm512_shuffle_i32x4(x1, x3, 0xDD);
    }
}

#endif
