/* host.c — buffers of the host kernel tables (ref and cpu): the buf_alloc / buf_free /
 * buf_copy / sync entries of kernels.h.
 *
 * Small buffers come from aligned_alloc and are zeroed. Buffers of 1 MiB and more are private
 * anonymous mappings with MAP_NORESERVE: the kernel hands out zero pages and commits memory
 * page by page as it is first written, so a KV block pool sized for the worst case costs
 * only the pages its sequences actually touched (the paged cache hands out low block numbers
 * first to keep that set compact). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kernels/kernels.h"

#define MAP_MIN (1u << 20)

void *kernels_host_alloc(wk_ctx *ctx, size_t bytes) {
    (void)ctx;
    if (bytes == 0) bytes = 1;
    if (bytes >= MAP_MIN) {
        void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    const size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded);
    if (p) memset(p, 0, rounded);
    return p;
}

void kernels_host_free(wk_ctx *ctx, void *p, size_t bytes) {
    (void)ctx;
    if (!p) return;
    if (bytes == 0) bytes = 1;
    if (bytes >= MAP_MIN) munmap(p, bytes);
    else free(p);
}

void kernels_host_copy(wk_ctx *ctx, void *dst, const void *src, size_t bytes) {
    (void)ctx;
    if (bytes) memmove(dst, src, bytes);
}

wick_status kernels_host_sync(wk_ctx *ctx) {
    (void)ctx; /* host ops run to completion inside their call and cannot fail */
    return WICK_OK;
}

bool kernels_is_host(const kernel_table *K) { return K && K->buf_alloc == kernels_host_alloc; }
