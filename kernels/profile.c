/* profile.c — WICK_PROFILE=1: a kernel table that times every op of the host table it wraps
 * and prints, when the process exits, where the time of the forward passes went (per op; the
 * matmul also per weight type and number of activation rows), next to the process's wall
 * time, so that the time spent outside the table (sampling, scheduling, the HTTP server)
 * shows as the difference. For finding what to optimize, not for benchmarks: the timer adds
 * ~50 ns per op.
 *
 * Only host tables are wrapped (their ops return when done); a device table is returned as
 * it is (its ops are asynchronous: use the vendor's profiler). One inner table per process:
 * the first one wrapped; another one asked for later is returned unwrapped. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/dtype.h"
#include "kernels/kernels.h"

enum { P_EMBED, P_RMSNORM, P_ROPE, P_ROPE_I, P_KV_STORE, P_ATTENTION, P_SOFTMAX, P_SILU_MUL,
       P_GELU_MUL, P_SOFTCAP, P_ADD, P_AXPY, P_LORA, P_GATHER, P_GELU, P_LN, P_ATT_ENC, P_MM_GELU,
       P_SCATTER, P_N_OPS };
static const char *const op_names[P_N_OPS] = {
    "embed", "rmsnorm", "rope", "rope_interleaved", "kv_store", "attention", "softmax",
    "silu_mul", "gelu_tanh_mul", "softcap", "add", "axpy", "lora", "gather_rows", "gelu",
    "layernorm", "attention_enc", "matmul_gelu", "scatter_rows"};

/* matmul buckets: weight type × activation rows 1, 2-4, 5-8, 9-16, 17-32, 33-64, 65-256, 257+ */
#define P_DT 16
#define P_NB 8
static const char *const nb_names[P_NB] = {"1", "2-4", "5-8", "9-16", "17-32", "33-64", "65-256", "257+"};

typedef struct { _Atomic long long ns, calls, flop; } slot;
static slot g_ops[P_N_OPS], g_mm[P_DT][P_NB];

/* WICK_PROFILE=shapes: the matmul also per weight shape (type, rows × cols, row bucket), in
   the first P_NSHAPE distinct ones met; a slot's key is claimed once, by compare-and-swap. */
#define P_NSHAPE 64
static int g_by_shape;
static _Atomic long long g_shape_key[P_NSHAPE];
static slot g_shape[P_NSHAPE];

static slot *shape_slot(int dt, int b, long long rows, long long cols) {
    const long long key = ((rows << 24 | cols) << 8 | dt << 3 | b) + 1; /* never 0 */
    for (int i = 0; i < P_NSHAPE; i++) {
        long long k = atomic_load_explicit(&g_shape_key[i], memory_order_acquire);
        if (k == 0) {
            long long zero = 0;
            if (atomic_compare_exchange_strong(&g_shape_key[i], &zero, key)) return &g_shape[i];
            k = zero; /* another thread claimed it first: its key */
        }
        if (k == key) return &g_shape[i];
    }
    return NULL; /* more shapes than slots: only the buckets count it */
}
static const kernel_table *g_inner;
static kernel_table g_wrap;
static struct timespec g_t0;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void note(slot *s, long long t0, long long flop) {
    atomic_fetch_add_explicit(&s->ns, now_ns() - t0, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->calls, 1, memory_order_relaxed);
    if (flop) atomic_fetch_add_explicit(&s->flop, flop, memory_order_relaxed);
}

static int n_bucket(int n) {
    static const int top[P_NB - 1] = {1, 4, 8, 16, 32, 64, 256};
    int b = 0;
    while (b < P_NB - 1 && n > top[b]) b++;
    return b;
}

#define TIMED(op, call) \
    do { const long long t0_ = now_ns(); call; note(&g_ops[op], t0_, 0); } while (0)

static void p_embed(wk_ctx *c, float *out, const wk_weight *W, const int32_t *ids, int n) {
    TIMED(P_EMBED, g_inner->embed(c, out, W, ids, n));
}
static void p_rmsnorm(wk_ctx *c, float *out, const float *x, const float *w, int n, int d, float eps) {
    TIMED(P_RMSNORM, g_inner->rmsnorm(c, out, x, w, n, d, eps));
}
static void p_matmul(wk_ctx *c, float *y, const float *x, const wk_weight *W, const float *bias, int n) {
    const long long t0 = now_ns();
    g_inner->matmul(c, y, x, W, bias, n);
    const int dt = (int)W->dt >= 0 && (int)W->dt < P_DT ? (int)W->dt : 0;
    note(&g_mm[dt][n_bucket(n)], t0, 2LL * n * W->rows * W->cols);
    if (g_by_shape && W->rows < (1LL << 30) && W->cols < (1LL << 24)) {
        slot *s = shape_slot(dt, n_bucket(n), W->rows, W->cols);
        if (s) note(s, t0, 2LL * n * W->rows * W->cols);
    }
}
static void p_rope(wk_ctx *c, float *x, int n, int nh, int hd, int rd, const int32_t *pos,
                   const float *cs, const float *sn) {
    TIMED(P_ROPE, g_inner->rope(c, x, n, nh, hd, rd, pos, cs, sn));
}
static void p_rope_i(wk_ctx *c, float *x, int n, int nh, int hd, int rd, const int32_t *pos,
                     const float *cs, const float *sn) {
    TIMED(P_ROPE_I, g_inner->rope_interleaved(c, x, n, nh, hd, rd, pos, cs, sn));
}
static void p_kv_store(wk_ctx *c, const wk_kv_layer *kv, const float *k, const float *v,
                       const wk_span *sp, int ns, int n_kv, int hd) {
    TIMED(P_KV_STORE, g_inner->kv_store(c, kv, k, v, sp, ns, n_kv, hd));
}
static void p_attention(wk_ctx *c, float *out, const float *q, const wk_kv_layer *kv,
                        const wk_span *sp, int ns, int nh, int n_kv, int hd, int window,
                        float scale, float cap) {
    TIMED(P_ATTENTION, g_inner->attention(c, out, q, kv, sp, ns, nh, n_kv, hd, window, scale, cap));
}
static void p_softmax(float *x, int n) { TIMED(P_SOFTMAX, g_inner->softmax(x, n)); }
static void p_silu_mul(wk_ctx *c, float *out, const float *g, const float *u, long n) {
    TIMED(P_SILU_MUL, g_inner->silu_mul(c, out, g, u, n));
}
static void p_gelu_mul(wk_ctx *c, float *out, const float *g, const float *u, long n) {
    TIMED(P_GELU_MUL, g_inner->gelu_tanh_mul(c, out, g, u, n));
}
static void p_softcap(wk_ctx *c, float *x, long n, float cap) { TIMED(P_SOFTCAP, g_inner->softcap(c, x, n, cap)); }
static void p_gelu(wk_ctx *c, float *x, long n) { TIMED(P_GELU, g_inner->gelu(c, x, n)); }
static void p_ln(wk_ctx *c, float *x, const float *r, const float *w, const float *b, int n,
                 int d, float eps) {
    TIMED(P_LN, g_inner->layernorm(c, x, r, w, b, n, d, eps));
}
static void p_att_enc(wk_ctx *c, float *o, const float *q, const float *k, const float *v,
                      const int *lens, int ns, int nh, int hd, float sc, const float *rb,
                      const int32_t *bk, int mt) {
    TIMED(P_ATT_ENC, g_inner->attention_enc(c, o, q, k, v, lens, ns, nh, hd, sc, rb, bk, mt));
}
static void p_mm_gelu(wk_ctx *c, float *y, const float *x, const wk_weight *W, const float *b, int n) {
    TIMED(P_MM_GELU, g_inner->matmul_gelu(c, y, x, W, b, n));
}
static void p_add(wk_ctx *c, float *y, const float *x, long n) { TIMED(P_ADD, g_inner->add(c, y, x, n)); }
static void p_axpy(wk_ctx *c, float *y, float a, const float *x, long n) {
    TIMED(P_AXPY, g_inner->axpy(c, y, a, x, n));
}
static void p_lora(wk_ctx *c, float *y, const float *x, const wk_lora_run *runs, int n_runs, float *scr) {
    TIMED(P_LORA, g_inner->lora(c, y, x, runs, n_runs, scr));
}
static void p_gather(wk_ctx *c, float *dst, const float *src, const int32_t *idx, int n, int cols) {
    TIMED(P_GATHER, g_inner->gather_rows(c, dst, src, idx, n, cols));
}

static void p_scatter(wk_ctx *c, float *y, const float *src, const int32_t *idx, const float *w,
                      int n, int cols) {
    TIMED(P_SCATTER, g_inner->scatter_rows(c, y, src, idx, w, n, cols));
}

static void print_profile(void) {
    const double wall = (double)(now_ns() - ((long long)g_t0.tv_sec * 1000000000LL + g_t0.tv_nsec)) / 1e6;
    double total = 0;
    for (int i = 0; i < P_N_OPS; i++) total += (double)g_ops[i].ns / 1e6;
    for (int d = 0; d < P_DT; d++)
        for (int b = 0; b < P_NB; b++) total += (double)g_mm[d][b].ns / 1e6;
    if (total <= 0) return;
    fprintf(stderr, "\nWICK_PROFILE (table %s): %.1f ms in kernel ops of %.1f ms since the table was "
                    "chosen (%.0f%%)\n", g_inner->name, total, wall, 100.0 * total / wall);
    fprintf(stderr, "%-26s %10s %11s %7s %10s %9s\n", "op", "calls", "ms", "% ops", "us/call", "GFLOP/s");
    for (int d = 0; d < P_DT; d++)
        for (int b = 0; b < P_NB; b++) {
            const slot *s = &g_mm[d][b];
            if (!s->calls) continue;
            char nm[48];
            snprintf(nm, sizeof nm, "matmul %s n=%s", dtype_name((dtype)d), nb_names[b]);
            const double ms = (double)s->ns / 1e6;
            fprintf(stderr, "%-26s %10lld %11.1f %6.1f%% %10.1f %9.1f\n", nm, (long long)s->calls, ms,
                    100.0 * ms / total, 1e3 * ms / (double)s->calls, (double)s->flop / (ms * 1e6));
        }
    for (int i = 0; g_by_shape && i < P_NSHAPE; i++) {
        const long long k = g_shape_key[i] - 1;
        if (k < 0 || !g_shape[i].calls) continue;
        const slot *s = &g_shape[i];
        char nm[64];
        snprintf(nm, sizeof nm, "  %s %lldx%lld n=%s", dtype_name((dtype)(k >> 3 & 31)), k >> 32,
                 k >> 8 & 0xffffff, nb_names[k & 7]);
        const double ms = (double)s->ns / 1e6;
        fprintf(stderr, "%-26s %10lld %11.1f %6.1f%% %10.1f %9.1f\n", nm, (long long)s->calls, ms,
                100.0 * ms / total, 1e3 * ms / (double)s->calls, (double)s->flop / (ms * 1e6));
    }
    for (int i = 0; i < P_N_OPS; i++) {
        const slot *s = &g_ops[i];
        if (!s->calls) continue;
        const double ms = (double)s->ns / 1e6;
        fprintf(stderr, "%-26s %10lld %11.1f %6.1f%% %10.1f\n", op_names[i], (long long)s->calls, ms,
                100.0 * ms / total, 1e3 * ms / (double)s->calls);
    }
}

static const kernel_table *g_first;

static void wrap_once(void) {
    g_inner = g_first;
    g_wrap = *g_inner; /* buffers, sync: passed through (kernels_is_host still holds) */
    g_wrap.embed = p_embed, g_wrap.rmsnorm = p_rmsnorm, g_wrap.matmul = p_matmul;
    g_wrap.rope = p_rope, g_wrap.rope_interleaved = p_rope_i, g_wrap.kv_store = p_kv_store;
    g_wrap.attention = p_attention, g_wrap.softmax = p_softmax, g_wrap.silu_mul = p_silu_mul;
    g_wrap.gelu_tanh_mul = p_gelu_mul, g_wrap.softcap = p_softcap, g_wrap.add = p_add;
    g_wrap.axpy = p_axpy, g_wrap.lora = p_lora, g_wrap.gather_rows = p_gather;
    g_wrap.scatter_rows = p_scatter;
    if (g_inner->gelu) g_wrap.gelu = p_gelu;
    if (g_inner->layernorm) g_wrap.layernorm = p_ln;
    if (g_inner->attention_enc) g_wrap.attention_enc = p_att_enc;
    if (g_inner->matmul_gelu) g_wrap.matmul_gelu = p_mm_gelu;
    /* the fusions would hide their ops from the counts: callers run the plain ops instead */
    g_wrap.matmul_multi = NULL, g_wrap.matmul_glu = NULL, g_wrap.matmul_add = NULL;
    g_wrap.rope_qk = NULL;
    const char *env = getenv("WICK_PROFILE");
    g_by_shape = env && strcmp(env, "shapes") == 0;
    clock_gettime(CLOCK_MONOTONIC, &g_t0);
    atexit(print_profile);
}

const kernel_table *kernels_profiled(const kernel_table *K) {
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    const char *env = getenv("WICK_PROFILE");
    if (!K || !env || !*env || strcmp(env, "0") == 0 || !kernels_is_host(K)) return K;
    pthread_mutex_lock(&mu);
    if (!g_first) g_first = K;
    pthread_mutex_unlock(&mu);
    if (K != g_first && K != &g_wrap) return K;
    pthread_once(&g_once, wrap_once);
    return &g_wrap;
}
