/* sampler_hist.c — exact truncation of the whole vocabulary without materialising it: bucket
 * histograms over a sort key, gathers of single buckets, and a draw over an implicit kept set
 * described by a "keep rule" (see sampler_keep in sampler.h).
 *
 * The idea: top-p / typical-p keep a prefix of the vocabulary in (key asc, id asc) order. A
 * histogram of count and mass per key bucket (buckets monotone in the key) says in which bucket
 * the prefix ends; every token of a better bucket is kept, and only the boundary bucket's few
 * tokens need an exact selection. The kept set is then "key < K, or key == K and id <= I", which
 * the draw tests on the fly while walking the vocabulary in id order.
 *
 * It deliberately knows nothing about sampler parameters (sampler.c decides which stage runs
 * where); it does not compute exp() (sampler_select.c / sampler_avx2.c do).
 *
 * Keys: mode 0 is key = -d (top-k, top-p: ascending key = descending probability), mode 1 is
 * key = |d - center| (typical-p). Both are computed with the same float operations everywhere
 * in this file, so a token's key (and bucket) never differs between the passes.
 */
#include <math.h>
#include <string.h>

#include "infer/sampler.h"

/* 4 lanes: SSE2 on baseline x86-64 (no per-ISA file needed, no AVX ABI issues). */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

/* Keys are in [0, SAMPLER_HIST_RANGE) for every token that can carry weight (d >= -87 for
 * mode 0; |d - center| <= 87 + |center| for mode 1); larger keys share the last bucket. */
#define SAMPLER_HIST_RANGE 88.0f

int sampler_hist_buckets(int n) {
    int nb = 16;
    while (nb < SAMPLER_HIST_MAX && nb * 8 < n) nb *= 2;
    return nb;
}

float sampler_hist_scale(int nb) { return (float)nb / SAMPLER_HIST_RANGE; }

static inline float key_of(float d, int mode, float center) {
    return mode ? fabsf(d - center) : -d;
}

/* Monotone (non-decreasing) in key: one rounded multiply, then truncation. Banned tokens
 * (d = -inf) are not routed here. */
static inline int bucket_of(float key, float scale, int nb) {
    float f = key * scale;
    return f < (float)(nb - 1) ? (int)f : nb - 1;
}

/* Buckets of 4 tokens at once (banned -> nb), with the same float operations as bucket_of. */
static inline v4i buckets4(v4f dv, int mode, float center, float scale, int nb) {
    v4f key = mode ? (v4f)((v4i)(dv - center) & 0x7fffffff) : -dv;
    v4f f = key * scale;
    v4i lim = (v4i){nb - 1, nb - 1, nb - 1, nb - 1};
    v4i fin = f < (float)(nb - 1);
    v4f fs = (v4f)(fin & (v4i)f); /* lanes at/over the limit (inf too) converted as 0 */
    v4i b = __builtin_convertvector(fs, v4i);
    b = (fin & b) | (~fin & lim);
    v4i banned = dv == -INFINITY;
    return (banned & (v4i){nb, nb, nb, nb}) | (~banned & b);
}

void sampler_hist(const float *d, const float *w, int n, int mode, float center, float scale,
                  int nb, double *mass, int32_t *cnt) {
    if (mass) memset(mass, 0, (size_t)(nb + 1) * sizeof *mass);
    if (cnt) memset(cnt, 0, (size_t)(nb + 1) * sizeof *cnt);
    int i = 0;
    /* Bucket indices are computed 4 at a time; the scatter-adds stay scalar. */
    for (; i + 4 <= n; i += 4) {
        v4f dv;
        memcpy(&dv, d + i, sizeof dv);
        v4i b = buckets4(dv, mode, center, scale, nb);
        if (mass) {
            mass[b[0]] += w[i];
            mass[b[1]] += w[i + 1];
            mass[b[2]] += w[i + 2];
            mass[b[3]] += w[i + 3];
        }
        if (cnt) {
            cnt[b[0]]++;
            cnt[b[1]]++;
            cnt[b[2]]++;
            cnt[b[3]]++;
        }
    }
    for (; i < n; i++) {
        float di = d[i];
        int b = di > -INFINITY ? bucket_of(key_of(di, mode, center), scale, nb) : nb;
        if (cnt) cnt[b]++;
        if (mass) mass[b] += w[i];
    }
}

int sampler_gather_buckets(const float *d, const float *w, int n, int mode, float center,
                           float scale, int nb, int bmin, int bmax, sampler_cand *c) {
    int m = 0, i = 0;
    const v4i vmin = {bmin, bmin, bmin, bmin}, vmax = {bmax, bmax, bmax, bmax};
    for (; i + 8 <= n; i += 8) { /* skip 8 tokens at a time when none is in range */
        v4f da, db;
        memcpy(&da, d + i, sizeof da);
        memcpy(&db, d + i + 4, sizeof db);
        v4i ba = buckets4(da, mode, center, scale, nb), bb = buckets4(db, mode, center, scale, nb);
        v4i in = ((ba >= vmin) & (ba <= vmax) & (ba < nb)) | ((bb >= vmin) & (bb <= vmax) & (bb < nb));
        if (!(in[0] | in[1] | in[2] | in[3])) continue;
        for (int j = i; j < i + 8; j++) {
            float dj = d[j];
            if (!(dj > -INFINITY)) continue;
            float k = key_of(dj, mode, center);
            int b = bucket_of(k, scale, nb);
            if (b >= bmin && b <= bmax) c[m++] = (sampler_cand){k, dj, w[j], j};
        }
    }
    for (; i < n; i++) {
        float di = d[i];
        if (!(di > -INFINITY)) continue;
        float k = key_of(di, mode, center);
        int b = bucket_of(k, scale, nb);
        if (b >= bmin && b <= bmax) c[m++] = (sampler_cand){k, di, w[i], i};
    }
    return m;
}

void sampler_keep_all(sampler_keep *k) {
    k->mode = 0;
    k->center = 0.0f;
    k->key = INFINITY;
    k->id = INT32_MAX;
}

static inline bool keeps(const sampler_keep *k, float di, int32_t i) {
    float key = key_of(di, k->mode, k->center);
    return key < k->key || (key == k->key && i <= k->id);
}

/* Vector form of keeps(): lanes of d, ids; all-ones where kept. */
static inline v4i keeps4(const sampler_keep *k, v4f dv, v4i iv) {
    v4f key;
    if (k->mode) {
        v4f t = dv - k->center;
        key = (v4f)((v4i)t & 0x7fffffff); /* fabsf, bitwise as in key_of */
    } else {
        key = -dv;
    }
    return (key < k->key) | ((key == k->key) & (iv <= k->id));
}

int sampler_gather_kept(const float *d, const float *w, int n, const sampler_keep *ka,
                        const sampler_keep *kb, float dmin, sampler_cand *c) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        float di = d[i];
        if (di >= dmin && di > -INFINITY && keeps(ka, di, i) && keeps(kb, di, i))
            c[m++] = (sampler_cand){-di, di, w[i], i};
    }
    return m;
}

int sampler_draw_kept(const float *d, const float *w, int n, const sampler_keep *ka,
                      const sampler_keep *kb, double x) {
    /* Chunks of 64: a masked vector sum decides whether the draw falls inside; only that chunk
     * is walked token by token. The rounding fallback is the last kept token of positive
     * weight seen. */
    const v4i lane = {0, 1, 2, 3};
    double acc = 0.0;
    int last_chunk = -1, i0 = 0;
    for (; i0 + 64 <= n; i0 += 64) {
        v4f s0 = {0}, s1 = {0};
        for (int j = 0; j < 64; j += 8) {
            v4f da, db, wa, wb;
            memcpy(&da, d + i0 + j, sizeof da);
            memcpy(&db, d + i0 + j + 4, sizeof db);
            memcpy(&wa, w + i0 + j, sizeof wa);
            memcpy(&wb, w + i0 + j + 4, sizeof wb);
            v4i ia = lane + (i0 + j), ib = lane + (i0 + j + 4);
            /* banned tokens have w = 0: they add nothing whatever the mask says */
            v4i ma = keeps4(ka, da, ia) & keeps4(kb, da, ia);
            v4i mb = keeps4(ka, db, ib) & keeps4(kb, db, ib);
            s0 += (v4f)(ma & (v4i)wa);
            s1 += (v4f)(mb & (v4i)wb);
        }
        s0 += s1;
        double cs = ((double)s0[0] + s0[1]) + ((double)s0[2] + s0[3]);
        if (x < acc + cs) break;
        if (cs > 0.0) last_chunk = i0;
        acc += cs;
    }
    int last = -1;
    for (int i = i0; i < n; i++) {
        float di = d[i];
        if (!(w[i] > 0.0f) || !keeps(ka, di, i) || !keeps(kb, di, i)) continue;
        last = i;
        acc += w[i];
        if (x < acc) return i;
    }
    /* x at or beyond the walked total (rounding): the last kept token of positive weight. */
    if (last < 0 && last_chunk >= 0)
        for (int i = last_chunk + 63; i >= last_chunk && last < 0; i--)
            if (w[i] > 0.0f && keeps(ka, d[i], i) && keeps(kb, d[i], i)) last = i;
    return last;
}
