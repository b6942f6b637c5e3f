/* sampler_avx512.c — AVX-512 versions of the sampler's whole-vocabulary scans: the max/NaN scan
 * and the candidate gather (compress of the tokens above a threshold). Compiled with AVX-512
 * flags (see CMakeLists.txt) and only called after a run-time CPU check in sampler_select.c.
 *
 * Both are exact (comparisons and copies only), so they return bit-identical results to the
 * baseline loops; the exp pass deliberately stays on the AVX2 path so that weights, and hence
 * sampled ids, do not depend on which of the two a CPU gets.
 */
#include <immintrin.h>
#include <math.h>

#include "infer/sampler.h"

int sampler_scan_max_avx512(const float *x, int n, float *xmax) {
    /* Four independent max chains; NaN/+inf detected by (v != v) | (v == inf). */
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    const __m512 inf = _mm512_set1_ps(INFINITY);
    __mmask16 bad = 0;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        __m512 c = _mm512_loadu_ps(x + i + 32), d = _mm512_loadu_ps(x + i + 48);
        bad |= _mm512_cmp_ps_mask(a, inf, _CMP_EQ_UQ) | _mm512_cmp_ps_mask(b, inf, _CMP_EQ_UQ) |
               _mm512_cmp_ps_mask(c, inf, _CMP_EQ_UQ) | _mm512_cmp_ps_mask(d, inf, _CMP_EQ_UQ);
        m0 = _mm512_max_ps(m0, a);
        m1 = _mm512_max_ps(m1, b);
        m2 = _mm512_max_ps(m2, c);
        m3 = _mm512_max_ps(m3, d);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 a = _mm512_loadu_ps(x + i);
        bad |= _mm512_cmp_ps_mask(a, inf, _CMP_EQ_UQ);
        m0 = _mm512_max_ps(m0, a);
    }
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        __m512 a = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x + i);
        bad |= _mm512_cmp_ps_mask(a, inf, _CMP_EQ_UQ);
        m0 = _mm512_max_ps(m0, a);
    }
    /* EQ_UQ is true for NaN lanes and for +inf; NaN never enters a max below because
     * the result is discarded whenever bad is set. */
    *xmax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
    return bad != 0;
}

/* Sixteen {key, d, w, id} structs from four 16-lane vectors: a 4x4 transpose of 32-bit lanes
 * inside each 128-bit lane, then a 4x4 transpose of the 128-bit lanes. */
static inline void store_structs(sampler_cand *c, __m512 a, __m512 b, __m512 cc, __m512 d) {
    __m512 ab_lo = _mm512_unpacklo_ps(a, b), ab_hi = _mm512_unpackhi_ps(a, b);
    __m512 cd_lo = _mm512_unpacklo_ps(cc, d), cd_hi = _mm512_unpackhi_ps(cc, d);
    __m512 r0 = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab_lo), _mm512_castps_pd(cd_lo)));
    __m512 r1 = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab_lo), _mm512_castps_pd(cd_lo)));
    __m512 r2 = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab_hi), _mm512_castps_pd(cd_hi)));
    __m512 r3 = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab_hi), _mm512_castps_pd(cd_hi)));
    /* r0 = structs 0,4,8,12; r1 = 1,5,9,13; r2 = 2,6,10,14; r3 = 3,7,11,15 */
    __m512 t0 = _mm512_shuffle_f32x4(r0, r1, 0x44), t1 = _mm512_shuffle_f32x4(r0, r1, 0xEE);
    __m512 t2 = _mm512_shuffle_f32x4(r2, r3, 0x44), t3 = _mm512_shuffle_f32x4(r2, r3, 0xEE);
    float *o = (float *)c;
    _mm512_storeu_ps(o, _mm512_shuffle_f32x4(t0, t2, 0x88));
    _mm512_storeu_ps(o + 16, _mm512_shuffle_f32x4(t0, t2, 0xDD));
    _mm512_storeu_ps(o + 32, _mm512_shuffle_f32x4(t1, t3, 0x88));
    _mm512_storeu_ps(o + 48, _mm512_shuffle_f32x4(t1, t3, 0xDD));
}

int sampler_gather_avx512(const float *d, const float *w, int n, float thr, sampler_cand *c) {
    const __m512 vthr = _mm512_set1_ps(thr), ninf = _mm512_set1_ps(-INFINITY);
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512i step = _mm512_set1_epi32(16);
    __m512i ids = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    int m = 0, i = 0;
    /* Full chunks while 16 whole structs fit behind m (m <= i, so m + 16 <= n holds). */
    for (; i + 16 <= n; i += 16, ids = _mm512_add_epi32(ids, step)) {
        __m512 dv = _mm512_loadu_ps(d + i);
        __mmask16 k = _mm512_cmp_ps_mask(dv, vthr, _CMP_GE_OQ) &
                      _mm512_cmp_ps_mask(dv, ninf, _CMP_GT_OQ);
        if (!k) continue;
        __m512 wv = _mm512_maskz_compress_ps(k, _mm512_loadu_ps(w + i));
        dv = _mm512_maskz_compress_ps(k, dv);
        __m512 iv = _mm512_castsi512_ps(_mm512_maskz_compress_epi32(k, ids));
        store_structs(c + m, _mm512_xor_ps(dv, sign), dv, wv, iv); /* key = -d, bitwise */
        m += __builtin_popcount((unsigned)k);
    }
    for (; i < n; i++) {
        float di = d[i];
        if (di >= thr && di > -INFINITY) c[m++] = (sampler_cand){-di, di, w[i], i};
    }
    return m;
}

int sampler_find_first_avx512(const float *x, int n, float v) {
    const __m512 vv = _mm512_set1_ps(v);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __mmask16 k = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + i), vv, _CMP_EQ_OQ);
        if (k) return i + __builtin_ctz((unsigned)k);
    }
    for (; i < n; i++)
        if (x[i] == v) return i;
    return -1;
}
