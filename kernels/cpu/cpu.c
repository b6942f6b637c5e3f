/* cpu.c — placeholder: the threaded CPU table is not built yet, so "cpu" means "ref". */
#include "kernels/kernels.h"

const kernel_table *kernels_cpu(void) { return NULL; }
