/* bench_sampler.c — microseconds per sampler_sample() on a 151936-token vocabulary (Qwen2's),
 * one row per sampler configuration, median of many runs, beside the cost of one plain pass
 * over the logits (memcpy of the vector) measured in the same run as the machine's floor.
 *
 * Logits: two shapes. "peaked" mimics an LLM (a few tokens 10-20 above a N(0, 2) crowd);
 * "flat" is N(0, 1), the worst case for top-p / typical (their kept set is most of the vocab).
 * Not a test: it checks nothing, it prints a table.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/sampler.h"

#define N_VOCAB 151936
#define REPS 101

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t g_rng = 88172645463325252ull;
static double urand(void) { /* xorshift64, bench-only */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) * 0x1.0p-53;
}
static float nrand(void) {
    double u = urand() + 1e-300, v = urand();
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    return t[n / 2];
}

static double bench_one(const sampler_params *p, const float *src, float *work) {
    sampler *s = NULL;
    if (sampler_create(p, N_VOCAB, &s) != WICK_OK) {
        fprintf(stderr, "%s\n", wick_last_error());
        exit(1);
    }
    double t[REPS];
    for (int r = 0; r < REPS; r++) {
        memcpy(work, src, sizeof(float) * N_VOCAB);
        double t0 = now_us();
        sampled_token tok;
        if (sampler_sample(s, work, &tok) != WICK_OK) {
            fprintf(stderr, "%s\n", wick_last_error());
            exit(1);
        }
        t[r] = now_us() - t0;
    }
    sampler_free(s);
    return median(t, REPS);
}

int main(void) {
    float *peaked = malloc(sizeof(float) * N_VOCAB), *flat = malloc(sizeof(float) * N_VOCAB);
    float *work = malloc(sizeof(float) * N_VOCAB);
    for (int i = 0; i < N_VOCAB; i++) {
        peaked[i] = 2.0f * nrand();
        flat[i] = nrand();
    }
    for (int i = 0; i < 20; i++) peaked[(int)(urand() * N_VOCAB)] = 10.0f + 10.0f * (float)urand();

    double tc[REPS];
    for (int r = 0; r < REPS; r++) {
        double t0 = now_us();
        memcpy(work, flat, sizeof(float) * N_VOCAB);
        tc[r] = now_us() - t0;
        if (work[r] == 12345.f) puts(""); /* keep the copy */
    }
    double floor_us = median(tc, REPS);

    struct { const char *name; sampler_params p; } rows[16];
    int nr = 0;
#define ROW(nm, ...) do { sampler_params q = sampler_params_default(); __VA_ARGS__; rows[nr].name = nm; rows[nr].p = q; nr++; } while (0)
    ROW("greedy", q.temperature = 0.0f);
    ROW("temperature 0.8", q.temperature = 0.8f);
    ROW("top_k 40", q.top_k = 40);
    ROW("top_p 0.9", q.top_p = 0.9f);
    ROW("min_p 0.05", q.min_p = 0.05f);
    ROW("typical_p 0.9", q.typical_p = 0.9f);
    ROW("top_k 40 + top_p 0.9", q.top_k = 40; q.top_p = 0.9f);
    ROW("k40 p0.95 minp0.05 t0.7", q.top_k = 40; q.top_p = 0.95f; q.min_p = 0.05f; q.temperature = 0.7f);
    ROW("temperature + 20 logprobs", q.n_logprobs = 20);
    ROW("rep pen 1.1 (512 hist)", q.repetition_penalty = 1.1f);

    printf("sampler_sample on %d logits, median of %d runs (memcpy of the logits: %.1f us)\n",
           N_VOCAB, REPS, floor_us);
    printf("%-28s %12s %12s\n", "sampler", "peaked us", "flat us");
    for (int r = 0; r < nr; r++) {
        double a, b;
        if (rows[r].p.repetition_penalty != 1.0f) {
            /* history of 512 tokens: accept them once per fresh sampler inside bench_one is
             * not possible, so time through a sampler with a prompt. */
            sampler *s = NULL;
            sampler_create(&rows[r].p, N_VOCAB, &s);
            int32_t ids[512];
            for (int i = 0; i < 512; i++) ids[i] = (int32_t)(urand() * N_VOCAB);
            sampler_accept_prompt(s, ids, 512);
            double t[REPS];
            for (int k = 0; k < REPS; k++) {
                memcpy(work, peaked, sizeof(float) * N_VOCAB);
                double t0 = now_us();
                sampled_token tok;
                sampler_sample(s, work, &tok);
                t[k] = now_us() - t0;
            }
            a = median(t, REPS);
            b = a;
            sampler_free(s);
        } else {
            a = bench_one(&rows[r].p, peaked, work);
            b = bench_one(&rows[r].p, flat, work);
        }
        printf("%-28s %12.1f %12.1f\n", rows[r].name, a, b);
    }
    free(peaked);
    free(flat);
    free(work);
    return 0;
}
