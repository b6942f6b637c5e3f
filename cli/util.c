/* util.c — small option-parsing helpers shared by the commands. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/fileio.h"
#include "cli/cli.h"

int cli_fail(const char *cmd, const char *what) {
    cli_status_clear();
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

int cli_tokenizer_dash_t(const char *cmd, const char *opt, const char *v) {
    bool count = *v != 0;
    for (const char *p = v; *p; p++) count &= *p >= '0' && *p <= '9';
    if (count && !file_exists(v) && !dir_exists(v)) {
        fprintf(stderr, "wick %s: note: %s %s has no effect: %s runs on one thread\n", cmd, opt,
                v, cmd);
        return 0;
    }
    if (strcmp(opt, "-t")) {
        fprintf(stderr, "wick %s: %s expects a thread count, got '%s' (the tokenizer is "
                        "-T/--tokenizer PATH)\n", cmd, opt, v);
        return -1;
    }
    fprintf(stderr, "wick %s: note: -t PATH is deprecated, use -T/--tokenizer PATH (-t is "
                    "--threads in every command)\n", cmd);
    return 1;
}

void cli_warn_ctx(const char *cmd, const wick_model *m, long ctx) {
    wick_model_info in;
    wick_model_get_info(m, &in);
    if (ctx > 0 && in.n_ctx_train > 0 && ctx > in.n_ctx_train)
        fprintf(stderr, "wick %s: warning: --ctx %ld is above the model's maximum of %d "
                        "positions (max_position_embeddings): text past position %d runs on "
                        "positions it was never trained on and usually degrades\n", cmd, ctx,
                in.n_ctx_train, in.n_ctx_train);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 when it is not one. */
static int utf8_len(const unsigned char *s, size_t n) {
    const unsigned c = s[0];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || (size_t)len > n) return 0;
    for (int i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    const unsigned cp = len == 1 ? c : len == 2 ? (c & 31u) << 6 | (s[1] & 63u)
                      : len == 3 ? (c & 15u) << 12 | (s[1] & 63u) << 6 | (s[2] & 63u)
                                 : (c & 7u) << 18 | (s[1] & 63u) << 12 | (s[2] & 63u) << 6 | (s[3] & 63u);
    const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return 0;   /* overlong, surrogate */
    return len;
}

bool cli_check_utf8(const char *cmd, const char *what, const char *s, size_t n) {
    long line = 1;
    for (size_t i = 0; i < n;) {
        const int k = utf8_len((const unsigned char *)s + i, n - i);
        if (!k) {
            char where[48] = "";
            if (memchr(s, '\n', n)) snprintf(where, sizeof where, " (line %ld)", line);
            /* a lead byte whose continuation bytes run into the end: a character cut short */
            const unsigned char c = (unsigned char)s[i];
            bool cut = c >= 0xC2 && c <= 0xF4 && n - i < (size_t)(c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4);
            for (size_t j = i + 1; cut && j < n; j++) cut = ((unsigned char)s[j] & 0xC0) == 0x80;
            fprintf(stderr, "wick %s: %s is not valid UTF-8 at byte %zu%s: 0x%02X%s\n", cmd,
                    what, i, where, c, cut ? " (a character cut off at the end)" : "");
            return false;
        }
        line += s[i] == '\n';
        i += (size_t)k;
    }
    return true;
}

const char *cli_token_text(const wick_tokenizer *tok, int32_t id, bool raw, char *buf, size_t n) {
    if (!tok || n < 4) return NULL;
    const char *s = wick_token_str(tok, id);
    if (raw || !s) return s;
    char dec[256];
    size_t len = 0;
    if (wick_detokenize(tok, &id, 1, false, dec, sizeof dec, &len) != WICK_OK) return s;
    size_t o = 0;
    for (size_t i = 0; i < len && o + 4 < n;) {
        const int k = utf8_len((const unsigned char *)dec + i, len - i);
        if (k) {
            memcpy(buf + o, dec + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else {   /* U+FFFD */
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    buf[o] = 0;
    return buf;
}

/* ---- time, sizes and the summary line of writing commands ---- */

double cli_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void cli_fmt_bytes(char *b, size_t n, double bytes) {
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) bytes /= 1024, u++;
    if (u == 0) snprintf(b, n, "%.0f B", bytes);
    else snprintf(b, n, "%.1f %s", bytes, unit[u]);
}

long long cli_path_bytes(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    if (!S_ISDIR(st.st_mode)) return (long long)st.st_size;
    DIR *d = opendir(path);
    if (!d) return -1;
    long long sum = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *p = path_join(path, e->d_name);
        if (p && lstat(p, &st) == 0 && S_ISREG(st.st_mode)) sum += (long long)st.st_size;
        free(p);
    }
    closedir(d);
    return sum;
}

bool cli_quiet;
static bool g_status_open;

void cli_status(const char *cmd, const char *fmt, ...) {
    if (cli_quiet || !isatty(2)) return;
    fprintf(stderr, "\r\033[Kwick %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
    g_status_open = true;
}

void cli_status_loading(const char *cmd, const char *path) {
    char sz[32] = "";
    const long long n = strncmp(path, "hf://", 5) ? cli_path_bytes(path) : -1;
    if (n >= 0) cli_fmt_bytes(sz, sizeof sz, (double)n);
    if (n >= 0) cli_status(cmd, "loading %s (%s) …", path, sz);
    else cli_status(cmd, "loading %s …", path);
}

void cli_status_clear(void) {
    if (!g_status_open) return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    g_status_open = false;
}

void cli_wrote(const char *cmd, const char *path, const char *what, double seconds) {
    cli_status_clear();
    if (cli_quiet) return;
    char sz[32] = "?";
    long long n = cli_path_bytes(path);
    if (n >= 0) cli_fmt_bytes(sz, sizeof sz, (double)n);
    fprintf(stderr, "wick %s: wrote %s (%s%s%s) in %.2f s\n", cmd, path, sz, what ? ", " : "",
            what ? what : "", seconds);
}

/* ---- training runs: Ctrl-C and checkpoint pruning (train, pretrain) ---- */

static volatile sig_atomic_t g_train_sigint;

static void on_train_sigint(int sig) {
    (void)sig;
    if (g_train_sigint) _exit(130);   /* the second Ctrl-C: at once (folders are swapped whole) */
    g_train_sigint = 1;
    static const char msg[] = "\n(interrupted: finishing the current step, then saving a "
                              "checkpoint; Ctrl-C again exits at once)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
}

void cli_train_sigint_install(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_train_sigint;
    sigaction(SIGINT, &sa, NULL);
}

bool cli_train_interrupted(void) { return g_train_sigint != 0; }

static int cmp_long(const void *a, const void *b) {
    const long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

void cli_prune_checkpoints(const char *out, long keep) {
    if (keep <= 0) return;
    DIR *d = opendir(out);
    if (!d) return;
    long steps[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        char *end = NULL;
        if (strncmp(e->d_name, "checkpoint-", 11)) continue;
        long s = strtol(e->d_name + 11, &end, 10);
        if (end && !*end && s >= 0) steps[n++] = s;
    }
    closedir(d);
    qsort(steps, (size_t)n, sizeof *steps, cmp_long);
    for (int i = 0; i + keep < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/checkpoint-%ld", out, steps[i]);
        fileio_remove_tree(path);
    }
}

/* ---- escapes in option values (-p, --stop, --system) ---- */

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* 4 hex digits at s, or -1. */
static long hex4(const char *s) {
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(s[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

char *cli_unescape(const char *s) {
    const size_t n = strlen(s);
    char *o = malloc(n + 1), *w = o;   /* every escape shrinks or keeps the length */
    if (!o) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            *w++ = s[i];
            continue;
        }
        const char c = s[i + 1];
        long cp = -1;
        size_t used = 2;
        switch (c) {
        case 'n': cp = '\n'; break;
        case 't': cp = '\t'; break;
        case 'r': cp = '\r'; break;
        case '\\': cp = '\\'; break;
        case '"': cp = '"'; break;
        case '\'': cp = '\''; break;
        case 'u':
            if (i + 6 <= n && (cp = hex4(s + i + 2)) >= 0) {
                used = 6;
                /* a surrogate pair \uD83D\uDE00 is one character */
                if (cp >= 0xD800 && cp < 0xDC00 && i + 12 <= n && s[i + 6] == '\\' &&
                    s[i + 7] == 'u') {
                    long lo = hex4(s + i + 8);
                    if (lo >= 0xDC00 && lo < 0xE000) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        used = 12;
                    }
                }
                if (cp >= 0xD800 && cp < 0xE000) cp = -1;   /* a lone surrogate: kept as typed */
            }
            break;
        default: break;   /* an unknown escape is kept as typed */
        }
        if (cp < 0) {
            *w++ = s[i];
            continue;
        }
        if (cp < 0x80) *w++ = (char)cp;
        else if (cp < 0x800) *w++ = (char)(0xC0 | cp >> 6), *w++ = (char)(0x80 | (cp & 63));
        else if (cp < 0x10000)
            *w++ = (char)(0xE0 | cp >> 12), *w++ = (char)(0x80 | (cp >> 6 & 63)),
            *w++ = (char)(0x80 | (cp & 63));
        else
            *w++ = (char)(0xF0 | cp >> 18), *w++ = (char)(0x80 | (cp >> 12 & 63)),
            *w++ = (char)(0x80 | (cp >> 6 & 63)), *w++ = (char)(0x80 | (cp & 63));
        i += used - 1;
    }
    *w = 0;
    return o;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

cli_stats cli_stats_of(const double *x, int n) {
    cli_stats s = {0};
    if (n <= 0) return s;
    if (n > 128) n = 128;
    double v[128], sum = 0, ss = 0;
    for (int i = 0; i < n; i++) v[i] = x[i], sum += x[i];
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    s.mean = sum / n;
    for (int i = 0; i < n; i++) ss += (x[i] - s.mean) * (x[i] - s.mean);
    s.sd = n > 1 ? sqrt(ss / (n - 1)) : 0.0;
    s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    s.min = v[0], s.max = v[n - 1];
    return s;
}
