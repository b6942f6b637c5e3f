/* select.c — choosing a kernel table: a CPU table by name or by the WICK_ISA environment
 * variable, and a device table (CUDA) by device name. */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "kernels/kernels.h"
#ifdef WICK_HAVE_CUDA
#include "kernels/cuda/cuda.h"
#endif

static const kernel_table *select_host(const char *name) {
    const char *env = getenv("WICK_ISA");
    if (env && *env) name = env;
    if (!name || !*name || strcmp(name, "auto") == 0 || strcmp(name, "cpu") == 0)
        return kernels_cpu() ? kernels_cpu() : kernels_ref();
    if (strcmp(name, "ref") == 0) return kernels_ref();
    return kernels_cpu_variant(name);
}

const kernel_table *kernels_select(const char *name) { return kernels_profiled(select_host(name)); }

wick_status kernels_select_device(const char *device, const kernel_table **out) {
    *out = NULL;
    if (!device || !*device || strcmp(device, "cpu") == 0) return WICK_OK;
    int n = 0;
    if (strcmp(device, "cuda") != 0) {
        /* "cuda:N": N decimal, at most 3 digits */
        const char *d = device + 5;
        size_t len = strlen(device);
        bool ok = strncmp(device, "cuda:", 5) == 0 && len > 5 && len <= 8;
        for (const char *c = d; ok && *c; c++) ok = *c >= '0' && *c <= '9';
        if (!ok)
            return err_set(WICK_ERR_INVALID_ARG,
                           "device '%s': expected cpu, cuda or cuda:N (N = device index)", device);
        n = atoi(d);
    }
#ifdef WICK_HAVE_CUDA
    return kernels_cuda_open(n, out);
#else
    (void)n;
    return err_set(WICK_ERR_UNSUPPORTED,
                   "device '%s': this build of wick has no CUDA backend (configure with "
                   "-DWICK_CUDA=ON on a machine with nvcc and cuBLAS)", device);
#endif
}
