/* json_parse.c — parsing JSON text with cJSON and telling a malformed file from a failed
 * allocation.
 *
 * cJSON returns NULL both for a syntax error and for an allocation that failed mid-way, and
 * its error pointer cannot tell them apart. When it fails, json_parse re-reads the text with
 * json_valid — a syntax check that allocates nothing — to decide: valid text means the parse
 * ran out of memory (WICK_ERR_NOMEM), anything else is a malformed file (WICK_ERR_FORMAT,
 * with the byte offset of the first error). json_valid is never more lenient than cJSON (strict
 * JSON numbers, no raw control characters in strings, paired surrogate escapes, nesting at most
 * CJSON_NESTING_LIMIT), so "valid" reliably means cJSON would have parsed it. */
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/json_parse.h"

static size_t ws(const char *s, size_t n, size_t i) {
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    return i;
}

static int hexv(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* A string starting at s[i] == '"'; returns the index after it, or n + 1 on an error. */
static size_t str_end(const char *s, size_t n, size_t i) {
    for (i++; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c == '"') return i + 1;
        if (c < 0x20) return n + 1; /* raw control characters are not allowed (cJSON agrees) */
        if (c == '\\') {
            if (++i >= n) return n + 1;
            if (s[i] == 'u') {
                unsigned u = 0;
                for (int k = 1; k <= 4; k++) {
                    if (i + k >= n || hexv(s[i + k]) < 0) return n + 1;
                    u = u * 16 + (unsigned)hexv(s[i + k]);
                }
                i += 4;
                /* cJSON refuses a lone low surrogate and a high one without its low half */
                if (u >= 0xDC00 && u <= 0xDFFF) return n + 1;
                if (u >= 0xD800 && u <= 0xDBFF) {
                    if (i + 6 >= n || s[i + 1] != '\\' || s[i + 2] != 'u') return n + 1;
                    unsigned lo = 0;
                    for (int k = 3; k <= 6; k++) {
                        if (hexv(s[i + k]) < 0) return n + 1;
                        lo = lo * 16 + (unsigned)hexv(s[i + k]);
                    }
                    if (lo < 0xDC00 || lo > 0xDFFF) return n + 1;
                    i += 6;
                }
            } else if (!strchr("\"\\/bfnrt", s[i]) || !s[i]) {
                return n + 1;
            }
        }
    }
    return n + 1;
}

/* A number in JSON's own grammar, -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, which cJSON
 * (strtod) always accepts; returns the index after it or n + 1. */
static size_t num_end(const char *s, size_t n, size_t i) {
    if (i < n && s[i] == '-') i++;
    if (i >= n || s[i] < '0' || s[i] > '9') return n + 1;
    if (s[i] == '0') i++;
    else while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    if (i < n && s[i] == '.') {
        const size_t d = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        if (i == d) return n + 1;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+')) i++;
        const size_t d = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        if (i == d) return n + 1;
    }
    return i;
}

size_t json_valid(const char *s, size_t n) {
    unsigned char stack[CJSON_NESTING_LIMIT]; /* '{' or '[' per open container */
    int depth = 0;
    size_t i = ws(s, n, 0);
    bool want_value = true;
    for (;;) {
        if (want_value) {
            if (i >= n) return i + 1;
            const char c = s[i];
            if (c == '{' || c == '[') {
                if (depth >= CJSON_NESTING_LIMIT) return i + 1;
                stack[depth++] = (unsigned char)c;
                i = ws(s, n, i + 1);
                if (i < n && s[i] == (c == '{' ? '}' : ']')) { /* empty container */
                    depth--;
                    i++;
                    want_value = false;
                    continue;
                }
                if (c == '{') { /* a key, then ':' */
                    if (i >= n || s[i] != '"') return i + 1;
                    if ((i = str_end(s, n, i)) > n) return i;
                    i = ws(s, n, i);
                    if (i >= n || s[i] != ':') return i + 1;
                    i = ws(s, n, i + 1);
                }
                continue;
            }
            if (c == '"') i = str_end(s, n, i);
            else if (!strncmp(s + i, "null", n - i < 4 ? n - i : 4) && n - i >= 4) i += 4;
            else if (!strncmp(s + i, "true", n - i < 4 ? n - i : 4) && n - i >= 4) i += 4;
            else if (!strncmp(s + i, "false", n - i < 5 ? n - i : 5) && n - i >= 5) i += 5;
            else i = num_end(s, n, i);
            if (i > n) return n + 1;
            want_value = false;
            continue;
        }
        i = ws(s, n, i);
        if (depth == 0) return 0; /* cJSON ignores what follows the first value */
        const char close = stack[depth - 1] == '{' ? '}' : ']';
        if (i < n && s[i] == close) {
            depth--;
            i++;
            continue;
        }
        if (i >= n || s[i] != ',') return i + 1;
        i = ws(s, n, i + 1);
        if (stack[depth - 1] == '{') {
            if (i >= n || s[i] != '"') return i + 1;
            if ((i = str_end(s, n, i)) > n) return i;
            i = ws(s, n, i);
            if (i >= n || s[i] != ':') return i + 1;
            i = ws(s, n, i + 1);
        }
        want_value = true;
    }
}

wick_status json_parse(const char *text, size_t len, const char *where, cJSON **out) {
    *out = cJSON_ParseWithLength(text, len);
    return *out ? WICK_OK : json_parse_error(text, len, where);
}

wick_status json_parse_error(const char *text, size_t len, const char *where) {
    const size_t bad = json_valid(text, len);
    if (bad == 0)
        return err_set(WICK_ERR_NOMEM, "%s: out of memory while parsing JSON (%zu bytes)", where,
                       len);
    return err_set(WICK_ERR_FORMAT, "%s: not valid JSON (at byte %zu)", where, bad - 1);
}
