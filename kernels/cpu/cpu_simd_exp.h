/* cpu_simd_exp.h — vectorised expf for the AVX2 and AVX-512 inner loops (included only by the
 * ISA files, which are compiled with the matching -m flags).
 *
 * Method: n = round(x·log2 e); r = x − n·ln2 in two pieces (Cody–Waite, exact with FMA for
 * |n| ≤ 150); e^r on |r| ≤ ln2/2 by a degree-7 polynomial with the classic Cephes expf
 * coefficients (about 1 ulp); then scaled by 2^n as two factors 2^(n/2)·2^(n−n/2) so results
 * in the subnormal range and up to FLT_MAX come out right. Matches expf's edges: +inf above
 * ln(FLT_MAX), 0 below −104 (where expf rounds to 0), NaN stays NaN. */
#ifndef WICK_KERNELS_CPU_SIMD_EXP_H
#define WICK_KERNELS_CPU_SIMD_EXP_H
#include <immintrin.h>

#define CPU_EXP_HI 88.72283935546875f
#define CPU_EXP_LO -104.0f
#define CPU_LOG2E 1.44269504088896341f
#define CPU_LN2_HI 0.693359375f
#define CPU_LN2_LO -2.12194440e-4f
#define CPU_EXP_P0 1.9875691500e-4f
#define CPU_EXP_P1 1.3981999507e-3f
#define CPU_EXP_P2 8.3334519073e-3f
#define CPU_EXP_P3 4.1665795894e-2f
#define CPU_EXP_P4 1.6666665459e-1f
#define CPU_EXP_P5 5.0000001201e-1f

#if defined(__AVX2__) && defined(__FMA__)
static inline __m256 exp256(__m256 x) {
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(CPU_EXP_LO)),
                              _mm256_set1_ps(CPU_EXP_HI));
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(CPU_LOG2E)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(CPU_LN2_HI), xc);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(CPU_LN2_LO), r);
    __m256 p = _mm256_set1_ps(CPU_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(CPU_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(CPU_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(CPU_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(CPU_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(CPU_EXP_P5));
    __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    __m256i n = _mm256_cvtps_epi32(fx);
    __m256i n1 = _mm256_srai_epi32(n, 1), n2 = _mm256_sub_epi32(n, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    y = _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
    y = _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()),
                         _mm256_cmp_ps(x, _mm256_set1_ps(CPU_EXP_HI), _CMP_GT_OQ));
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(),
                         _mm256_cmp_ps(x, _mm256_set1_ps(CPU_EXP_LO), _CMP_LT_OQ));
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}
#endif

#if defined(__AVX512F__)
static inline __m512 exp512(__m512 x) {
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(CPU_EXP_LO)),
                              _mm512_set1_ps(CPU_EXP_HI));
    __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(CPU_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(CPU_LN2_HI), xc);
    r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(CPU_LN2_LO), r);
    __m512 p = _mm512_set1_ps(CPU_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(CPU_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(CPU_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(CPU_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(CPU_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(CPU_EXP_P5));
    __m512 y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    __m512i n = _mm512_cvtps_epi32(fx);
    __m512i n1 = _mm512_srai_epi32(n, 1), n2 = _mm512_sub_epi32(n, n1);
    const __m512i bias = _mm512_set1_epi32(127);
    __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n1, bias), 23));
    __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n2, bias), 23));
    y = _mm512_mul_ps(_mm512_mul_ps(y, s1), s2);
    y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(CPU_EXP_HI), _CMP_GT_OQ), y,
                             _mm512_set1_ps(__builtin_inff()));
    y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(CPU_EXP_LO), _CMP_LT_OQ), y,
                             _mm512_setzero_ps());
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), y, x);
}
#endif

#endif
