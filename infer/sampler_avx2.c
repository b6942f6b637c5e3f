/* sampler_avx2.c — sampler_exp_pass for CPUs with AVX2 + FMA: the same arithmetic as the
 * baseline version in sampler_select.c on 8 lanes instead of 4 (this file is compiled with
 * -mavx2 -mfma, see CMakeLists.txt, and is only called after a run-time CPU check).
 *
 * Results may differ from the SSE2 path in the last bit (FMA contraction); one process always
 * uses one path, so a seed still reproduces its tokens on a given machine.
 */
#include <math.h>
#include <string.h>

#include "infer/sampler.h"

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

static inline v8f splat(float a) { return (v8f){a, a, a, a, a, a, a, a}; }
static inline v8f select8(v8i m, v8f a, v8f b) { return (v8f)((m & (v8i)a) | (~m & (v8i)b)); }

/* exp(v) for v <= 0; lanes below -87 (including -inf) give exactly 0. See sampler_select.c. */
static inline v8f exp8(v8f v) {
    const v8f lo = splat(-87.0f);
    v8i under = v < lo;
    v = select8(under, lo, v);
    const v8f magic = splat(12582912.0f);
    v8f n = (v * splat(1.44269504088896341f) + magic) - magic;
    v8f r = v - n * splat(0.693145751953125f);
    r = r - n * splat(1.428606765330187045e-06f);
    v8f r2 = r * r, r4 = r2 * r2;
    v8f p01 = splat(1.0f) + r;
    v8f p23 = splat(0.5f) + r * splat(1.0f / 6.0f);
    v8f p45 = splat(1.0f / 24.0f) + r * splat(1.0f / 120.0f);
    v8f p67 = splat(1.0f / 720.0f) + r * splat(1.0f / 5040.0f);
    v8f p = (p01 + r2 * p23) + r4 * (p45 + r2 * p67);
    v8i ni = __builtin_convertvector(n, v8i);
    v8i bias = {127, 127, 127, 127, 127, 127, 127, 127};
    v8f scale = (v8f)((ni + bias) << 23);
    return (v8f)(~under & (v8i)(p * scale));
}

void sampler_exp_pass_avx2(const float *x, int n, float xmax, float inv_t, float *d, float *w,
                           double *block, sampler_exp_stats *st) {
    memset(st, 0, sizeof *st);
    const v8f vmax = splat(xmax), vinv = splat(inv_t), dlo = splat(-87.0f);
    double z = 0.0, s = 0.0;
    int nb = (n + SAMPLER_BLOCK - 1) / SAMPLER_BLOCK;
    for (int b = 0; b < nb; b++) {
        int i0 = b * SAMPLER_BLOCK;
        int i1 = i0 + SAMPLER_BLOCK < n ? i0 + SAMPLER_BLOCK : n;
        v8f zacc = splat(0.0f), sacc = splat(0.0f);
        for (int i = i0; i < i1; i += 8) {
            int m = i1 - i < 8 ? i1 - i : 8;
            v8f xv;
            if (m == 8) {
                memcpy(&xv, x + i, sizeof xv);
            } else { /* tail padding contributes nothing anywhere */
                xv = splat(-INFINITY);
                memcpy(&xv, x + i, (size_t)m * sizeof(float));
            }
            v8f dv = (xv - vmax) * vinv;
            v8f e = exp8(dv);
            v8f dc = select8(dv < dlo, dlo, dv); /* 0 * -87, not 0 * -inf = NaN */
            zacc += e;
            sacc += e * dc;
            if (!d) { /* sums only (greedy without alternatives) */
            } else if (m == 8) {
                memcpy(d + i, &dv, sizeof dv);
                memcpy(w + i, &e, sizeof e);
            } else {
                memcpy(d + i, &dv, (size_t)m * sizeof(float));
                memcpy(w + i, &e, (size_t)m * sizeof(float));
            }
        }
        double bz = 0.0, bs = 0.0;
        for (int l = 0; l < 8; l++) {
            bz += zacc[l];
            bs += sacc[l];
        }
        block[b] = bz;
        z += bz;
        s += bs;
    }
    st->z = z;
    st->s = s;
}
