/* util.c — small option-parsing helpers shared by the commands. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

int cli_fail(const char *cmd, const char *what) {
    fprintf(stderr, "wick %s: %s: %s\n", cmd, what, wick_last_error());
    return 1;
}

int cli_parse_ids(const char *cmd, const char *s, int32_t **out) {
    *out = NULL;
    size_t cap = 16, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return -1;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == '[') p++;
        if (*p == ']' || !*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) {
            fprintf(stderr, "wick %s: bad token id list '%s': expected comma-separated "
                            "non-negative integers\n", cmd, s);
            free(ids);
            return -1;
        }
        if (n == cap) {
            cap *= 2;
            int32_t *ni = realloc(ids, cap * sizeof *ids);
            if (!ni) {
                free(ids);
                return -1;
            }
            ids = ni;
        }
        ids[n++] = (int32_t)v;
        p = end;
        while (*p == ' ' || *p == ']') p++;
        if (*p == ',') p++;
        else if (*p) {
            fprintf(stderr, "wick %s: bad token id list '%s' near '%s'\n", cmd, s, p);
            free(ids);
            return -1;
        }
    }
    *out = ids;
    return (int)n;
}

bool cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "wick %s: %s expects an integer in [%ld, %ld], got '%s'\n", cmd, opt, lo,
                hi, s ? s : "(nothing)");
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_float(const char *cmd, const char *opt, const char *s, double *out) {
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || end == s || *end || errno) {
        fprintf(stderr, "wick %s: %s expects a number, got '%s'\n", cmd, opt, s ? s : "(nothing)");
        return false;
    }
    *out = v;
    return true;
}
