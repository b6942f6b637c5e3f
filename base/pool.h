/* pool.h — a persistent thread pool for data-parallel kernels.
 * pool_run(fn) runs fn(ctx, tid, n) on every thread of the pool (tid 0 is the caller) and
 * returns when all have finished. Workers spin briefly on an atomic generation counter (so
 * back-to-back kernels in a forward pass cost well under a microsecond to dispatch) and then
 * sleep on a futex, so an idle pool uses no CPU. One pool is driven by one thread at a time.
 * pool_run_dyn is the variant for self-scheduled work, which never waits for a late worker. */
#ifndef WICK_BASE_POOL_H
#define WICK_BASE_POOL_H

typedef struct wk_pool wk_pool;
typedef void (*pool_fn)(void *ctx, int tid, int n_threads);

/* n_threads counts the caller; n_threads <= 1 creates no worker. NULL on failure. */
wk_pool *pool_create(int n_threads);
void pool_free(wk_pool *p);
/* Number of threads including the caller; 1 for a NULL pool. */
int pool_size(const wk_pool *p);
/* Runs fn on all threads; a NULL pool runs fn(ctx, 0, 1) inline. */
void pool_run(wk_pool *p, pool_fn fn, void *ctx);

/* Like pool_run, for work that fn claims itself in chunks (an atomic counter in ctx) and
 * that is complete when ANY subset of the threads, the caller included, has run fn: returns
 * as soon as the caller has finished its fn and every worker that had already joined has
 * finished; a worker that wakes later skips the job instead of running it. On a busy machine
 * a descheduled worker thus never holds the caller up: its chunks are taken by whoever is
 * running. Each tid still runs fn at most once per job (per-tid scratch stays private). */
void pool_run_dyn(wk_pool *p, pool_fn fn, void *ctx);

/* Claims the next chunk index from *next; returns >= count when all have been taken. */
static inline long pool_claim(long *next) { return __atomic_fetch_add(next, 1, __ATOMIC_RELAXED); }

/* Splits [0, n) into `parts` near-equal ranges, rounded to multiples of `align` (except the
 * last); writes the range of part `i` to [*lo, *hi). */
void pool_split(long n, int parts, int i, long align, long *lo, long *hi);

/* Jobs (pool_run / pool_run_dyn calls that woke workers) started by all pools of the process
 * so far: each is one fork-join synchronisation. Inline runs (NULL or 1-thread pool) are not
 * counted. */
unsigned long pool_jobs_total(void);

/* Number of online CPUs (>= 1). */
int pool_cpu_count(void);

#endif
