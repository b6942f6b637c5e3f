/* membw.h — measuring this machine's memory read bandwidth, so benchmarks can report what
 * fraction of the hardware limit a bandwidth-bound kernel (decode) reaches. */
#ifndef WICK_BASE_MEMBW_H
#define WICK_BASE_MEMBW_H
#include <stddef.h>

#include "base/pool.h"

/* Reads a `bytes`-sized buffer (allocated and touched first) with all threads of `pool`,
 * `reps` times; returns the best read bandwidth seen in GB/s (1e9 bytes/s), or 0 when the
 * buffer cannot be allocated. The best, not the median: it is used as the limit a
 * bandwidth-bound kernel can reach, and on a shared (virtual) machine the typical figure
 * swings with the neighbours' traffic. */
double membw_read_gbs(wk_pool *pool, size_t bytes, int reps);

#endif
