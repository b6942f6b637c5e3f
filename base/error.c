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

/* Messages name the path a writer is producing, never its temporary: a path component
 * ".NAME.wick-tmp-PID-SEQ" (or ".wick-old-", base/fileio.h) is shown as NAME, so a failed
 * write inside a staged folder names OUT/model.safetensors, the file the user asked for. */
static void untemp(char *m) {
    static const char *const tags[] = {".wick-tmp-", ".wick-old-"};
    for (int k = 0; k < 2; k++) {
        char *p;
        size_t from = 0;
        while ((p = strstr(m + from, tags[k]))) {
            char *s = p;
            while (s > m && s[-1] != '/' && s[-1] != ' ' && s[-1] != '\'') s--;
            char *e = p + strlen(tags[k]);
            while ((*e >= '0' && *e <= '9') || *e == '-') e++;
            if (*s != '.' || s + 1 >= p) {   /* not a writer's temporary name */
                from = (size_t)(e - m);
                continue;
            }
            const size_t name = (size_t)(p - s - 1);
            memmove(s, s + 1, name);
            memmove(s + name, e, strlen(e) + 1);
            from = (size_t)(s + name - m);
        }
    }
}

wick_status err_set(wick_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    untemp(g_msg);
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
    untemp(g_msg);
    return st;
}

void err_clear(void) { g_msg[0] = '\0'; }
