/* testutil.h — shared helpers for the cmocka test programs.
 *
 * Fixtures: tu_fixture_path("tiny-qwen2") returns "$WICK_FIXTURES/tiny-qwen2" (default
 * WICK_FIXTURES = <source>/../shared/fixtures). TU_REQUIRE_FIXTURE(var, "sub") sets var to that
 * path; when the folder is absent it skips the test with a message, except under CI=true,
 * where absence is a failure. */
#ifndef WICK_TESTUTIL_H
#define WICK_TESTUTIL_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "wick.h"

/* malloc'd "$WICK_FIXTURES/sub" (sub may be "" for the root). */
char *tu_fixture_path(const char *sub);
bool tu_fixture_exists(const char *sub);
bool tu_ci(void);

#define TU_REQUIRE_FIXTURE(var, sub)                                                   \
    char *var = tu_fixture_path(sub);                                                  \
    do {                                                                               \
        if (!tu_fixture_exists(sub)) {                                                 \
            if (tu_ci()) {                                                             \
                fail_msg("golden fixture %s is missing (CI=true: this is a failure)", var); \
            }                                                                          \
            fprintf(stderr, "SKIP: golden fixture %s not found (set WICK_FIXTURES)\n", var); \
            free(var);                                                                 \
            skip();                                                                    \
        }                                                                              \
    } while (0)

/* Reads a tensor of a safetensors file converted to a malloc'd array. Fails the test when the
 * file or tensor is missing. numel (optional) receives the element count; shape (optional,
 * 8 entries) and ndim (optional) receive the shape. */
float *tu_load_f32(const char *file, const char *name, int64_t *numel, int64_t *shape, int *ndim);
int32_t *tu_load_ids(const char *file, const char *name, int64_t *numel);  /* I64 -> int32 */

/* Max |a-b| over n elements; also fails on NaN. */
double tu_max_abs_diff(const float *a, const float *b, int64_t n);

/* A fresh temp directory (malloc'd path), removed with tu_rmdir_rf. */
char *tu_mkdtemp(void);
void tu_rmdir_rf(const char *path);
/* Writes a file (non-atomic, for building test inputs). */
void tu_write_file(const char *path, const void *data, size_t n);
/* The whole file as a NUL-terminated malloc'd string, or NULL when it cannot be read. */
char *tu_read_text(const char *path);

#endif
