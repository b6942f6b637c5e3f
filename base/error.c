/* error.c — status names and the thread-local error message. */
#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char g_msg[2048];

static const char *const k_status_names[WICK_STATUS_COUNT_] = {
    [WICK_OK] = "ok",
    [WICK_ERR_INVALID_ARG] = "invalid argument",
    [WICK_ERR_IO] = "i/o error",
    [WICK_ERR_FORMAT] = "malformed file",
    [WICK_ERR_UNSUPPORTED] = "unsupported",
    [WICK_ERR_SHAPE] = "wrong or missing tensor",
    [WICK_ERR_NOMEM] = "out of memory",
    [WICK_ERR_CONTEXT_FULL] = "context full",
    [WICK_ERR_BUFFER_TOO_SMALL] = "buffer too small",
    [WICK_ERR_NOT_FOUND] = "not found",
    [WICK_ERR_CANCELLED] = "cancelled",
    [WICK_ERR_TIMEOUT] = "timeout",
    [WICK_ERR_INTERNAL] = "internal error",
    [WICK_DONE] = "done",
    [WICK_ERR_BUSY] = "busy",
};

const char *wick_status_str(wick_status st) {
    if ((int)st < 0 || st >= WICK_STATUS_COUNT_) return "unknown status";
    return k_status_names[st];
}

const char *wick_last_error(void) { return g_msg; }

const char *wick_version(void) { return "0.1.0"; }

void wick_free(void *p) { free(p); }

wick_status err_set(wick_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return st;
}

wick_status err_wrap(wick_status st, const char *fmt, ...) {
    char prefix[512], old[sizeof g_msg - 520];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_msg, sizeof old - 1);
    old[sizeof old - 1] = '\0';
    snprintf(g_msg, sizeof g_msg, "%s: %s", prefix, old);
    return st;
}

void err_clear(void) { g_msg[0] = '\0'; }
