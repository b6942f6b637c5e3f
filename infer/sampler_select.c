/* sampler_select.c — the fast inner parts of the sampler: a vectorised exp() pass over the whole
 * vocabulary and an exact prefix selection (top-k / top-p / typical boundaries) that never sorts
 * the full vocabulary.
 *
 * It deliberately knows nothing about sampler parameters or penalties (sampler.c owns those).
 * Vector code uses GCC/Clang vector extensions on 4 floats, which compile to SSE2 on baseline
 * x86-64 (and NEON elsewhere) without per-ISA files; the exp is a Cody-Waite reduction plus a
 * degree-7 Taylor polynomial (relative error ~3e-8 on [-87, 0], the only range we need).
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "infer/sampler.h"

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
_Static_assert(sizeof(sampler_cand) == 16, "select_rec copies a candidate as one 16-byte vector");

/* Thresholds on d = (logit - max) / T, highest first. The exp pass counts tokens and sums mass
 * above each, so that a later gather can pick the tightest threshold that provably contains the
 * top-k / top-p set. Beyond the last one, a gather takes every non-banned token. */
const float sampler_ladder[SAMPLER_LADDER] = {-0.5f, -1.0f, -2.0f, -3.0f, -4.5f, -6.5f, -9.5f, -14.0f};

static inline v4f v4f_splat(float a) { return (v4f){a, a, a, a}; }
static inline v4i v4i_splat(int32_t a) { return (v4i){a, a, a, a}; }
static inline v4f v4f_select(v4i m, v4f a, v4f b) { return (v4f)((m & (v4i)a) | (~m & (v4i)b)); }

/* exp(v) for v <= 0; lanes below -87 (including -inf) give exactly 0. */
static inline v4f v4f_exp(v4f v) {
    const v4f lo = v4f_splat(-87.0f);
    v4i under = v < lo;
    v = v4f_select(under, lo, v);
    /* n = round(v / ln2) by the 1.5*2^23 trick (exact for |v/ln2| < 2^22). */
    const v4f magic = v4f_splat(12582912.0f);
    v4f n = (v * v4f_splat(1.44269504088896341f) + magic) - magic;
    /* r = v - n*ln2 in two pieces so that r keeps full precision (|r| <= ln2/2). */
    v4f r = v - n * v4f_splat(0.693145751953125f);
    r = r - n * v4f_splat(1.428606765330187045e-06f);
    /* Taylor to degree 7: truncation error r^8/8! < 3e-8 relative for |r| <= 0.347.
     * Evaluated in Estrin form: a shorter dependency chain than Horner's rule. */
    v4f r2 = r * r, r4 = r2 * r2;
    v4f p01 = v4f_splat(1.0f) + r;
    v4f p23 = v4f_splat(0.5f) + r * v4f_splat(1.0f / 6.0f);
    v4f p45 = v4f_splat(1.0f / 24.0f) + r * v4f_splat(1.0f / 120.0f);
    v4f p67 = v4f_splat(1.0f / 720.0f) + r * v4f_splat(1.0f / 5040.0f);
    v4f p = (p01 + r2 * p23) + r4 * (p45 + r2 * p67);
    /* 2^n as float bits; n is in [-126, 0] here so the exponent field stays normal. */
    v4i ni = __builtin_convertvector(n, v4i);
    v4f scale = (v4f)((ni + v4i_splat(127)) << 23);
    v4f e = p * scale;
    return (v4f)(~under & (v4i)e);
}

static void exp_pass_sse(const float *x, int n, float xmax, float inv_t, float *d, float *w,
                         double *block, sampler_exp_stats *st) {
    memset(st, 0, sizeof *st);
    const v4f vmax = v4f_splat(xmax), vinv = v4f_splat(inv_t), dlo = v4f_splat(-87.0f);
    double z = 0.0, s = 0.0;
    int nb = (n + SAMPLER_BLOCK - 1) / SAMPLER_BLOCK;
    for (int b = 0; b < nb; b++) {
        int i0 = b * SAMPLER_BLOCK;
        int i1 = i0 + SAMPLER_BLOCK < n ? i0 + SAMPLER_BLOCK : n;
        v4f zacc = v4f_splat(0.0f), sacc = v4f_splat(0.0f), zacc2 = zacc, sacc2 = sacc;
        int i = i0;
        for (; i + 8 <= i1; i += 8) { /* two independent vectors per step for more ILP */
            v4f xa, xb;
            memcpy(&xa, x + i, sizeof xa);
            memcpy(&xb, x + i + 4, sizeof xb);
            v4f da = (xa - vmax) * vinv, db = (xb - vmax) * vinv;
            v4f ea = v4f_exp(da), eb = v4f_exp(db);
            /* e * d with d clamped so that banned tokens give 0 * -87 = 0, not 0*-inf = NaN */
            v4f ca = v4f_select(da < dlo, dlo, da), cb = v4f_select(db < dlo, dlo, db);
            zacc += ea;
            zacc2 += eb;
            sacc += ea * ca;
            sacc2 += eb * cb;
            memcpy(d + i, &da, sizeof da);
            memcpy(d + i + 4, &db, sizeof db);
            memcpy(w + i, &ea, sizeof ea);
            memcpy(w + i + 4, &eb, sizeof eb);
        }
        for (; i < i1; i += 4) {
            int m = i1 - i < 4 ? i1 - i : 4;
            v4f xv = v4f_splat(-INFINITY); /* tail padding contributes nothing anywhere */
            memcpy(&xv, x + i, (size_t)m * sizeof(float));
            v4f dv = (xv - vmax) * vinv;
            v4f e = v4f_exp(dv);
            v4f dc = v4f_select(dv < dlo, dlo, dv);
            zacc += e;
            sacc += e * dc;
            memcpy(d + i, &dv, (size_t)m * sizeof(float));
            memcpy(w + i, &e, (size_t)m * sizeof(float));
        }
        zacc += zacc2;
        sacc += sacc2;
        double bz = ((double)zacc[0] + zacc[1]) + ((double)zacc[2] + zacc[3]);
        block[b] = bz;
        z += bz;
        s += ((double)sacc[0] + sacc[1]) + ((double)sacc[2] + sacc[3]);
    }
    st->z = z;
    st->s = s;
}

#if defined(__x86_64__) && defined(__GNUC__)
#define SAMPLER_HAVE_AVX2 1
#endif

/* Which vector paths this CPU may take: bit 0 AVX2+FMA, bit 1 AVX-512 (F, BW, VL, DQ; the
 * flags its file is compiled with that the code uses). WICK_SAMPLER_SSE=1 forces neither.
 * Computed once; the race on first use is benign (every thread computes the same value). */
static int cpu_paths(void) {
    static int paths = -1;
    if (paths < 0) {
        int p = 0;
#ifdef SAMPLER_HAVE_AVX2
        if (!getenv("WICK_SAMPLER_SSE")) {
            if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) p |= 1;
            if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
                p |= 2;
        }
#endif
        paths = p;
    }
    return paths;
}

int sampler_gather_fast(const float *d, const float *w, int n, float thr, sampler_cand *c,
                        int *m) {
#ifdef SAMPLER_HAVE_AVX2
    if (cpu_paths() & 2) {
        *m = sampler_gather_avx512(d, w, n, thr, c);
        return 1;
    }
#endif
    (void)d, (void)w, (void)n, (void)thr, (void)c, (void)m;
    return 0;
}

void sampler_exp_pass(const float *x, int n, float xmax, float inv_t, float *d, float *w,
                      double *block, sampler_exp_stats *st) {
#ifdef SAMPLER_HAVE_AVX2
    if (cpu_paths() & 1) {
        sampler_exp_pass_avx2(x, n, xmax, inv_t, d, w, block, st);
        return;
    }
#endif
    exp_pass_sse(x, n, xmax, inv_t, d, w, block, st);
}

void sampler_ladder_pass(const float *d, const float *w, int n, int stride, sampler_exp_stats *st) {
    /* Per sampled element: its level (how many thresholds it passes), then a 9-bin histogram,
     * turned into cumulative counts/masses at the end. */
    double mass[SAMPLER_LADDER + 1] = {0};
    int64_t cnt[SAMPLER_LADDER + 1] = {0};
    for (int i = 0; i < n; i += stride) {
        float di = d[i];
        int lvl = 0;
        for (int j = 0; j < SAMPLER_LADDER; j++) lvl += di < sampler_ladder[j];
        cnt[lvl] += stride;
        mass[lvl] += (double)w[i] * stride;
    }
    double cm = 0;
    int64_t cc = 0;
    for (int j = 0; j < SAMPLER_LADDER; j++) {
        cm += mass[j];
        cc += cnt[j];
        st->mass[j] = cm;
        st->count[j] = cc;
    }
}

/* ---- exact prefix selection ------------------------------------------------------------- */

static int cand_cmp(const void *pa, const void *pb) {
    const sampler_cand *a = pa, *b = pb;
    if (a->key < b->key) return -1;
    if (a->key > b->key) return 1;
    return (a->id > b->id) - (a->id < b->id);
}

static int cand_cmp_id(const void *pa, const void *pb) {
    const sampler_cand *a = pa, *b = pb;
    return (a->id > b->id) - (a->id < b->id);
}

void sampler_sort_cands(sampler_cand *c, int n) {
    if (n > 1) qsort(c, (size_t)n, sizeof *c, cand_cmp);
}

/* Walks c in its current order (already sorted by (key, id)) until the criterion holds. */
static int walk_prefix(const sampler_cand *c, int n, bool by_mass, double target) {
    double cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += by_mass ? (double)c[i].w : 1.0;
        if (cum >= target) return i + 1;
    }
    return n;
}

#define SEL_BUCKETS 256
#define SEL_SMALL 48

static int select_rec(sampler_cand *c, sampler_cand *tmp, int n, bool by_mass, double target,
                      int depth) {
    if (n <= SEL_SMALL || depth > 16) {
        sampler_sort_cands(c, n);
        return walk_prefix(c, n, by_mass, target);
    }
    /* Two independent min/max chains per loop step (n > SEL_SMALL here). */
    float lo = c[0].key, hi = c[0].key, lo2 = lo, hi2 = hi;
    for (int i = 1; i + 1 < n; i += 2) {
        float k = c[i].key, k2 = c[i + 1].key;
        lo = k < lo ? k : lo;
        hi = k > hi ? k : hi;
        lo2 = k2 < lo2 ? k2 : lo2;
        hi2 = k2 > hi2 ? k2 : hi2;
    }
    lo = lo2 < lo ? lo2 : lo;
    hi = hi2 > hi ? hi2 : hi;
    if (n % 2 == 0) { /* the loop stopped before the last entry */
        lo = c[n - 1].key < lo ? c[n - 1].key : lo;
        hi = c[n - 1].key > hi ? c[n - 1].key : hi;
    }
    float scale = (float)SEL_BUCKETS / (hi - lo);
    if (lo == hi) {
        /* All keys equal: order is by id alone. Usually already so, since gathers run in id
         * order and partitions are stable; sort only when an earlier stage reordered. */
        for (int i = 1; i < n; i++) {
            if (c[i].id < c[i - 1].id) {
                qsort(c, (size_t)n, sizeof *c, cand_cmp_id);
                break;
            }
        }
        return walk_prefix(c, n, by_mass, target);
    }
    if (!(scale < FLT_MAX)) { /* keys too close to bucket (denormal range): plain sort */
        sampler_sort_cands(c, n);
        return walk_prefix(c, n, by_mass, target);
    }
    /* (k - lo) * scale is monotone in k (each rounding step is), so bucket order never
     * contradicts key order: all of bucket b < c precede all of bucket c. */
    /* Four interleaved sub-histograms: a run of equal buckets (common in flat logits) would
     * otherwise chain every double add through one memory slot (store-forwarding latency). */
    int cnt4[4][SEL_BUCKETS];
    double mass4[4][SEL_BUCKETS];
    memset(cnt4, 0, sizeof cnt4);
    memset(mass4, 0, sizeof mass4);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        for (int u = 0; u < 4; u++) {
            int b = (int)((c[i + u].key - lo) * scale);
            b = b < SEL_BUCKETS - 1 ? b : SEL_BUCKETS - 1;
            cnt4[u][b]++;
            mass4[u][b] += c[i + u].w;
        }
    }
    for (; i < n; i++) {
        int b = (int)((c[i].key - lo) * scale);
        b = b < SEL_BUCKETS - 1 ? b : SEL_BUCKETS - 1;
        cnt4[0][b]++;
        mass4[0][b] += c[i].w;
    }
    int cnt[SEL_BUCKETS];
    double mass[SEL_BUCKETS];
    for (int b = 0; b < SEL_BUCKETS; b++) {
        cnt[b] = cnt4[0][b] + cnt4[1][b] + cnt4[2][b] + cnt4[3][b];
        mass[b] = (mass4[0][b] + mass4[1][b]) + (mass4[2][b] + mass4[3][b]);
    }
    double cum = 0.0;
    int cb = -1;
    for (int b = 0; b < SEL_BUCKETS; b++) {
        double add = by_mass ? mass[b] : (double)cnt[b];
        if (cnt[b] > 0 && cum + add >= target) {
            cb = b;
            break;
        }
        cum += add;
    }
    if (cb < 0) return n; /* the whole set falls short of the target: keep everything */
    /* Stable partition: buckets < cb, then bucket cb; the rest is dropped. */
    int na = 0;
    for (int b = 0; b < cb; b++) na += cnt[b];
    /* Buckets < cb are compacted in place (ia <= i, so nothing unread is overwritten), bucket
     * cb goes to tmp and is copied back behind them; branch-free since in flat logits the
     * two outcomes are mixed at random. */
    int ia = 0, ic = 0;
    for (i = 0; i < n; i++) {
        int b = (int)((c[i].key - lo) * scale);
        b = b < SEL_BUCKETS - 1 ? b : SEL_BUCKETS - 1;
        v4f ci; /* the 16-byte struct as one vector: one load, two stores */
        memcpy(&ci, &c[i], sizeof ci);
        memcpy(&c[ia], &ci, sizeof ci);
        ia += b < cb;
        memcpy(&tmp[ic], &ci, sizeof ci);
        ic += b == cb;
    }
    memcpy(c + na, tmp, (size_t)ic * sizeof *c);
    int r = select_rec(c + na, tmp, ic, by_mass, target - cum, depth + 1);
    return na + r;
}

int sampler_select_prefix(sampler_cand *c, sampler_cand *tmp, int n, bool by_mass, double target) {
    if (n <= 0) return 0;
    if (!by_mass) {
        if (target >= (double)n) return n;
        if (target < 1.0) return 0;
        target = floor(target);
    }
    int r = select_rec(c, tmp, n, by_mass, target, 0);
    return r < 1 ? 1 : r;
}

void sampler_exp_pass_sums(const float *x, int n, float xmax, float inv_t, float *d, float *w,
                           double *block, sampler_exp_stats *st) {
#ifdef SAMPLER_HAVE_AVX2
    if (cpu_paths() & 1) {
        sampler_exp_pass_avx2(x, n, xmax, inv_t, NULL, NULL, block, st);
        return;
    }
#endif
    exp_pass_sse(x, n, xmax, inv_t, d, w, block, st); /* the baseline path stores anyway */
}

int sampler_find_first(const float *x, int n, float v) {
#ifdef SAMPLER_HAVE_AVX2
    if (cpu_paths() & 2) return sampler_find_first_avx512(x, n, v);
#endif
    for (int i = 0; i < n; i++)
        if (x[i] == v) return i;
    return -1;
}

int sampler_scan_max(const float *x, int n, float *xmax) {
#ifdef SAMPLER_HAVE_AVX2
    if (cpu_paths() & 2) return sampler_scan_max_avx512(x, n, xmax);
#endif
    v4f mx = v4f_splat(-INFINITY), inf = v4f_splat(INFINITY);
    v4i bad = v4i_splat(0);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        v4f v;
        memcpy(&v, x + i, sizeof v);
        bad |= (v != v) | (v == inf);
        mx = v4f_select(v > mx, v, mx);
    }
    float m = -INFINITY;
    int b = (bad[0] | bad[1] | bad[2] | bad[3]) != 0;
    for (int l = 0; l < 4; l++) m = mx[l] > m ? mx[l] : m;
    for (; i < n; i++) {
        b |= (x[i] != x[i]) | (x[i] == INFINITY);
        m = x[i] > m ? x[i] : m;
    }
    *xmax = m;
    return b;
}
