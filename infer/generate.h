/* generate.h — internal view of the pull generator for the stream layer and benchmarks. */
#ifndef WICK_INFER_GENERATE_H
#define WICK_INFER_GENERATE_H
#include "wick.h"

/* Largest number of top-logprob alternatives a token can carry. */
#define GEN_MAX_TOP 20

#endif
