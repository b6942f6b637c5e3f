/* error.h — setting the thread-local error message behind wick_last_error().
 * Every fallible internal function returns a wick_status; the place that first detects a
 * failure calls err_set() with a message naming the file, field or tensor, and callers
 * higher up may prefix context with err_wrap(). Nothing here prints. */
#ifndef WICK_BASE_ERROR_H
#define WICK_BASE_ERROR_H
#include "wick.h"

/* Sets the calling thread's message (printf format) and returns `st`, so that
 * `return err_set(WICK_ERR_FORMAT, "%s: bad header", path);` reads naturally. */
wick_status err_set(wick_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes the current message with a formatted context ("loading X: <old message>"),
 * and returns `st` unchanged. */
wick_status err_wrap(wick_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears the calling thread's message. */
void err_clear(void);

#endif
