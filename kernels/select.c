/* select.c — choosing a kernel table by name or by the WICK_ISA environment variable. */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

const kernel_table *kernels_select(const char *name) {
    const char *env = getenv("WICK_ISA");
    if (env && *env) name = env;
    if (!name || !*name || strcmp(name, "auto") == 0 || strcmp(name, "cpu") == 0)
        return kernels_cpu() ? kernels_cpu() : kernels_ref();
    if (strcmp(name, "ref") == 0) return kernels_ref();
    return kernels_cpu_variant(name);
}
