/* membw.c — threaded streaming read of a large buffer (see membw.h). Eight independent
 * 64-bit accumulators keep the loop load-bound rather than add-latency-bound. */
#include "base/membw.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct job {
    const uint64_t *buf;
    size_t n;                /* uint64 words */
    uint64_t sink[64];       /* per-thread result so the reads are not optimised away */
} job;

static void read_part(void *ctx, int tid, int nt) {
    job *j = ctx;
    long lo, hi;
    pool_split((long)j->n, nt, tid, 64, &lo, &hi);
    const uint64_t *p = j->buf;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (long i = lo; i + 8 <= hi; i += 8) {
        a0 += p[i]; a1 += p[i + 1]; a2 += p[i + 2]; a3 += p[i + 3];
        a4 += p[i + 4]; a5 += p[i + 5]; a6 += p[i + 6]; a7 += p[i + 7];
    }
    j->sink[tid & 63] = a0 ^ a1 ^ a2 ^ a3 ^ a4 ^ a5 ^ a6 ^ a7;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double membw_read_gbs(wk_pool *pool, size_t bytes, int reps) {
    if (reps < 1) reps = 1;
    if (reps > 64) reps = 64;
    job j = {0};
    j.n = bytes / sizeof(uint64_t);
    uint64_t *buf = malloc(j.n * sizeof(uint64_t));
    if (!buf) return 0.0;
    for (size_t i = 0; i < j.n; i++) buf[i] = i * 0x9e3779b97f4a7c15ull;
    j.buf = buf;
    double t[64];
    pool_run(pool, read_part, &j); /* warm-up */
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        pool_run(pool, read_part, &j);
        t[r] = now_s() - t0;
    }
    free(buf);
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    return (double)(j.n * sizeof(uint64_t)) / t[0] / 1e9;
}
