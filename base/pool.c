/* pool.c — persistent worker threads with a spin-then-futex start signal and an atomic
 * completion counter. No per-call allocation, no thread creation after pool_create.
 *
 * Jobs are numbered by `gen`: even numbers are static jobs (pool_run: every worker must run
 * fn once, the caller waits on `pending`), odd numbers are dynamic jobs (pool_run_dyn).
 * A dynamic job is open while `open_gen` holds its number: a worker joins by incrementing
 * `active` and then checking open_gen (both seq_cst); the caller closes the job by clearing
 * open_gen after its own fn and waits only for `active` to drain. Either the worker's
 * increment comes before the close in the single seq_cst order (then the caller waits for
 * it), or the worker sees the job closed and skips it without touching fn/ctx. A static job
 * cannot be skipped: gen does not move past it until every worker has run it. */
#include "base/pool.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SPIN_ITERS 200000  /* ~ tens of microseconds of spinning before sleeping */

struct wk_pool {
    int n;                       /* threads incl. caller */
    pthread_t *threads;
    _Atomic unsigned gen;        /* bumped to start a job; futex word */
    _Atomic int pending;         /* workers still running the current job */
    _Atomic int quit;
    _Atomic int sleepers;        /* workers inside FUTEX_WAIT (or about to be) */
    _Atomic unsigned open_gen;   /* the dynamic job accepting workers, 0 when none */
    _Atomic int active;          /* workers inside a dynamic job's fn */
    pool_fn fn;
    void *ctx;
    struct worker_arg { wk_pool *p; int tid; } *args;
};

/* Jobs handed to workers, all pools of the process (benchmarks report synchronisations per
   token from it); relaxed: a statistic, not an ordering. */
static _Atomic unsigned long g_jobs;

unsigned long pool_jobs_total(void) { return atomic_load_explicit(&g_jobs, memory_order_relaxed); }

static long futex(_Atomic unsigned *addr, int op, unsigned val) {
    return syscall(SYS_futex, (unsigned *)addr, op, val, NULL, NULL, 0);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *arg) {
    struct worker_arg *wa = arg;
    wk_pool *p = wa->p;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (++spins < SPIN_ITERS) {
                cpu_relax();
            } else {
                atomic_fetch_add_explicit(&p->sleepers, 1, memory_order_seq_cst);
                /* returns at once if gen already moved on, so no wake-up is lost */
                futex(&p->gen, FUTEX_WAIT_PRIVATE, seen);
                atomic_fetch_sub_explicit(&p->sleepers, 1, memory_order_seq_cst);
                spins = 0;
            }
        }
        seen = g;
        if (atomic_load_explicit(&p->quit, memory_order_acquire)) break;
        if (g & 1u) { /* dynamic: join only while the job is still open */
            atomic_fetch_add_explicit(&p->active, 1, memory_order_seq_cst);
            if (atomic_load_explicit(&p->open_gen, memory_order_seq_cst) == g)
                p->fn(p->ctx, wa->tid, p->n);
            atomic_fetch_sub_explicit(&p->active, 1, memory_order_release);
            continue;
        }
        p->fn(p->ctx, wa->tid, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
    return NULL;
}

wk_pool *pool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    wk_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads, sizeof *p->threads);
        p->args = calloc((size_t)n_threads, sizeof *p->args);
        if (!p->threads || !p->args) {
            free(p->threads);
            free(p->args);
            free(p);
            return NULL;
        }
        for (int i = 1; i < n_threads; i++) {
            p->args[i].p = p;
            p->args[i].tid = i;
            if (pthread_create(&p->threads[i], NULL, worker_main, &p->args[i]) != 0) {
                p->n = i; /* shut down the ones that started */
                pool_free(p);
                return NULL;
            }
        }
    }
    return p;
}

void pool_free(wk_pool *p) {
    if (!p) return;
    if (p->n > 1) {
        atomic_store_explicit(&p->quit, 1, memory_order_release);
        atomic_fetch_add_explicit(&p->gen, 1, memory_order_acq_rel);
        futex(&p->gen, FUTEX_WAKE_PRIVATE, 0x7fffffff);
        for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    }
    free(p->threads);
    free(p->args);
    free(p);
}

int pool_size(const wk_pool *p) { return p ? p->n : 1; }

void pool_run(wk_pool *p, pool_fn fn, void *ctx) {
    if (!p || p->n <= 1) {
        fn(ctx, 0, 1);
        return;
    }
    atomic_fetch_add_explicit(&g_jobs, 1, memory_order_relaxed);
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    unsigned g = atomic_load_explicit(&p->gen, memory_order_relaxed);
    atomic_store_explicit(&p->gen, g + 2 - (g & 1u), memory_order_seq_cst); /* next even */
    if (atomic_load_explicit(&p->sleepers, memory_order_seq_cst) > 0)
        futex(&p->gen, FUTEX_WAKE_PRIVATE, 0x7fffffff);
    fn(ctx, 0, p->n);
    /* Spin while the workers finish (they normally finish together with us); yield the CPU
       when that takes long, so an oversubscribed machine does not starve them. */
    for (int spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++) {
        if (spins < 20000) cpu_relax();
        else sched_yield();
    }
}

void pool_run_dyn(wk_pool *p, pool_fn fn, void *ctx) {
    if (!p || p->n <= 1) {
        fn(ctx, 0, 1);
        return;
    }
    /* No worker is inside fn here: the last job's caller drained `active` after closing it,
       and a late joiner only reads open_gen before leaving again. */
    atomic_fetch_add_explicit(&g_jobs, 1, memory_order_relaxed);
    p->fn = fn;
    p->ctx = ctx;
    unsigned g = atomic_load_explicit(&p->gen, memory_order_relaxed);
    g += (g & 1u) ? 2 : 1; /* next odd */
    atomic_store_explicit(&p->open_gen, g, memory_order_seq_cst);
    atomic_store_explicit(&p->gen, g, memory_order_seq_cst);
    if (atomic_load_explicit(&p->sleepers, memory_order_seq_cst) > 0)
        futex(&p->gen, FUTEX_WAKE_PRIVATE, 0x7fffffff);
    fn(ctx, 0, p->n);
    atomic_store_explicit(&p->open_gen, 0, memory_order_seq_cst);
    for (int spins = 0; atomic_load_explicit(&p->active, memory_order_acquire) > 0; spins++) {
        if (spins < 20000) cpu_relax();
        else sched_yield();
    }
}

void pool_split(long n, int parts, int i, long align, long *lo, long *hi) {
    if (align < 1) align = 1;
    long blocks = (n + align - 1) / align;
    long b0 = blocks * i / parts, b1 = blocks * (i + 1) / parts;
    long l = b0 * align, h = b1 * align;
    if (l > n) l = n;
    if (h > n) h = n;
    *lo = l;
    *hi = h;
}

int pool_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}
