/* bench_kernels.c — the kernel timing table as a stand-alone program. The measurements live
 * in cli/bench_kernels_cli.c (also `wick bench kernels`); this file only includes them, so
 * the two can never drift apart. usage: bench_kernels [-t threads] [-isa NAME] [-q] */
#include "../cli/bench_kernels_cli.c"

int main(int argc, char **argv) { return bench_kernels_run(argc, argv); }
