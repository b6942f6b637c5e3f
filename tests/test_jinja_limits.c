/* test_jinja_limits.c — hostile-template tests of the Jinja engine (tokenizer/jinja*.c).
 *
 * Chat templates come from downloaded files, so the engine must survive any template:
 *   - integer edge cases (INT64_MIN/MAX in slices, indexes, **, //, %, range(), |int, |abs,
 *     |sum, repetition) either compute what jinja2 computes or fail with an "integer
 *     overflow" error where Python's unbounded ints would go past 64 bits — never wrap,
 *     trap or loop. Expected strings were produced by jinja2 3.1.6 configured as
 *     transformers does (see test_jinja.c), not written by hand;
 *   - the limits stated in include/wick.h (steps, nesting depth, output size, memory) stop
 *     every runaway template with an error, quickly;
 *   - every input in fuzz/regressions/jinja/ (crashes, hangs and leaks found by fuzzing
 *     fuzz/fuzz_jinja.c, body in fuzz/jinja_targets.c) is replayed through the fuzz harness itself: each must compile and
 *     render or fail cleanly, within a time bound. Run under ASan/UBSan for the "no crash"
 *     half. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include "tokenizer/jinja.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LSAN 1
#endif
#endif
#ifdef HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* The fuzz harness itself, so replayed inputs see exactly the fuzzer's context. */
#include "../fuzz/jinja_targets.c"

typedef struct okcase {
    const char *tpl, *ctx, *want;
} okcase;

static const okcase int_cases[] = {
    {"{{ [1,2,3][1::9223372036854775807] }}", NULL, "[2]"},
    {"{{ [1,2,3][::-9223372036854775807-1] }}", NULL, "[3]"},
    {"{{ 'abc'[1::9223372036854775807] }}", NULL, "b"},
    {"{{ s[::-9223372036854775807-1] }}", "{\"s\": \"h\\u00e9llo\"}", "o"},
    {"{{ s[9223372036854775807:-9223372036854775807-1:-2] }}", "{\"s\": \"h\\u00e9llo\"}", "olh"},
    {"{{ [1,2,3][-9223372036854775807-1:9223372036854775807] }}|{{ [1,2,3][9223372036854775807:-9223372036854775807-1:-1] }}|{{ [1,2,3][-4:-9223372036854775807:-1] }}",
     NULL, "[1, 2, 3]|[3, 2, 1]|[]"},
    {"{{ 'ab'[-9223372036854775807-1] }}|{{ 'ab'[9223372036854775807] }}|{{ [1][-9223372036854775807-1] }}|{{ [1,2][-2] }}",
     NULL, "|||1"},
    {"{{ 1 ** 9223372036854775807 }} {{ 0 ** 9223372036854775807 }} {{ (-1) ** 9223372036854775807 }} {{ (-1) ** 9223372036854775806 }} {{ 0 ** 0 }} {{ 5 ** 0 }}",
     NULL, "1 0 -1 1 1 1"},
    {"{{ 2 ** 62 }} {{ (-2) ** 63 }} {{ 3 ** 39 }} {{ 10 ** 18 }} {{ 2 ** -2 }} {{ (-2) ** -1 }} {{ 2 ** -1075 }} {{ 2 ** 0.5 }}",
     NULL, "4611686018427387904 -9223372036854775808 4052555153018976267 1000000000000000000 0.25 -0.5 0.0 1.4142135623730951"},
    {"{{ (-9223372036854775807-1) % -1 }} {{ (-9223372036854775807-1) // 3 }} {{ (-9223372036854775807-1) % 3 }} {{ 7 % -3 }} {{ -7 // 2 }} {{ 7 // -2 }} {{ -7 % -3 }} {{ 9223372036854775807 % (-9223372036854775807-1) }}",
     NULL, "0 -3074457345618258603 1 -2 -4 -4 -1 -1"},
    {"{{ (-9223372036854775807-1) is divisibleby(-1) }}{{ 9 is divisibleby(-9223372036854775807-1) }}",
     NULL, "TrueFalse"},
    {"{{ range(0, 10, -9223372036854775807-1)|list }}|{{ range(-9223372036854775807-1, 9223372036854775807, 4611686018427387904)|list }}|{{ range(9223372036854775807, -9223372036854775807-1, -9223372036854775807-1)|list }}|{{ range(9223372036854775807-2, 9223372036854775807)|list }}",
     NULL, "[]|[-9223372036854775808, -4611686018427387904, 0, 4611686018427387904]|[9223372036854775807, -1]|[9223372036854775805, 9223372036854775806]"},
    {"{{ 9223372036854775807|abs }} {{ '-9223372036854775808'|int }} {{ ' 12 '|int }} {{ '1e5'|int }} {{ 'nan'|int }} {{ 'inf'|int(7) }} {{ -9.2233720368547758e18|int }} {{ 1e18|int }} {{ -3.9|int }}",
     NULL, "9223372036854775807 -9223372036854775808 12 100000 0 7 -9223372036854775808 1000000000000000000 -3"},
    {"{% set x = b * 10 %}{{ (x - x)|int(3) }} {{ x ** 2 }} {{ 2 ** x }} {{ (x - x) ** 2 }}",
     "{\"b\": 1e308}", "3 inf inf nan"},
    {"{{ 'a' * -9223372036854775807 }}|{{ [1] * -5 }}|{{ (-9223372036854775807-1) * 'ab' }}|{{ 'ab' * 0 }}",
     NULL, "|[]||"},
    {"{{ [9223372036854775806, 1]|sum }} {{ [-9223372036854775807, -1]|sum }} {{ [1, 2.5]|sum }}",
     NULL, "9223372036854775807 -9223372036854775808 3.5"},
    {"{{ 'a b c'.split(' ', -9223372036854775807-1) }}|{{ 'aaa'.replace('a', 'b', -9223372036854775807-1) }}|{{ 'aaa'|replace('a', 'b', 9223372036854775807) }}",
     NULL, "['a', 'b', 'c']|bbb|bbb"},
};

typedef struct errcase {
    const char *tpl, *ctx;
    wick_status st;
    const char *needle;
} errcase;

/* jinja2 computes these with unbounded ints (wick reports the overflow: UNSUPPORTED) or
 * raises itself (INVALID_ARG), checked with jinja2 3.1.6. */
static const errcase int_errors[] = {
    {"{{ 2 ** 63 }}", NULL, WICK_ERR_UNSUPPORTED, "overflow"},
    {"{{ 3 ** 40 }}", NULL, WICK_ERR_UNSUPPORTED, "overflow"},
    {"{{ 2 ** 9223372036854775807 }}", NULL, WICK_ERR_UNSUPPORTED, "overflow"},
    {"{{ (-9223372036854775807-1) // -1 }}", NULL, WICK_ERR_UNSUPPORTED, "overflow"},
    {"{{ -(-9223372036854775807-1) }}", NULL, WICK_ERR_UNSUPPORTED, "overflow"},
    {"{{ (-9223372036854775807-1) * -1 }}", NULL, WICK_ERR_UNSUPPORTED, "overflow"},
    {"{{ 0 ** -1 }}", NULL, WICK_ERR_INVALID_ARG, "negative power"},
    {"{{ 0.0 ** -1 }}", NULL, WICK_ERR_INVALID_ARG, "negative power"},
    {"{{ b ** 2 }}", "{\"b\": 1e308}", WICK_ERR_INVALID_ARG, "out of range"},
    {"{{ 1.5 ** 1e10 }}", NULL, WICK_ERR_INVALID_ARG, "out of range"},
    {"{{ (-8) ** 0.5 }}", NULL, WICK_ERR_UNSUPPORTED, "complex"}, /* Python: a complex */
    {"{{ 1e300|int }}", NULL, WICK_ERR_UNSUPPORTED, "overflow"},
    {"{{ '1e300'|int }}", NULL, WICK_ERR_UNSUPPORTED, "overflow"},
    {"{{ 9.2233720368547758e18|int }}", NULL, WICK_ERR_UNSUPPORTED, "overflow"},
    {"{{ '99999999999999999999'|int }}", NULL, WICK_ERR_UNSUPPORTED, "overflow"},
    {"{% set x = b * 10 %}{{ x|int }}", "{\"b\": 1e308}", WICK_ERR_INVALID_ARG, "infinity"},
    {"{% set x = b * 10 %}{{ x|int(7) }}", "{\"b\": 1e308}", WICK_ERR_INVALID_ARG, "infinity"},
    {"{{ (-9223372036854775807-1)|abs }}", NULL, WICK_ERR_UNSUPPORTED, "overflow"},
    {"{{ [9223372036854775807, 1]|sum }}", NULL, WICK_ERR_UNSUPPORTED, "overflow"},
    {"{{ range(-9223372036854775807-1, 9223372036854775807)|length }}", NULL,
     WICK_ERR_INVALID_ARG, "range"},
    {"{{ range(9223372036854775807, -9223372036854775807-1, -1)|length }}", NULL,
     WICK_ERR_INVALID_ARG, "range"},
};

static char *render(const char *tpl, const char *ctx_json, wick_status *st) {
    cJSON *ctx = ctx_json ? cJSON_Parse(ctx_json) : NULL;
    if (ctx_json) assert_non_null(ctx);
    char *out = NULL;
    *st = jinja_render(tpl, ctx, &out);
    cJSON_Delete(ctx);
    if (*st == WICK_OK) assert_non_null(out);
    else assert_null(out);
    return out;
}

static void test_integer_edges(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof int_cases / sizeof *int_cases; i++) {
        wick_status st;
        char *out = render(int_cases[i].tpl, int_cases[i].ctx, &st);
        if (st) fail_msg("case %zu (%s): %s", i, int_cases[i].tpl, wick_last_error());
        if (strcmp(out, int_cases[i].want))
            fail_msg("case %zu: %s\n want [%s]\n got  [%s]", i, int_cases[i].tpl,
                     int_cases[i].want, out);
        free(out);
    }
}

static void test_integer_errors(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof int_errors / sizeof *int_errors; i++) {
        const errcase *e = &int_errors[i];
        wick_status st;
        char *out = render(e->tpl, e->ctx, &st);
        if (st != e->st)
            fail_msg("%s: expected status %d, got %d (%s) [%s]", e->tpl, e->st, st,
                     wick_last_error(), out ? out : "");
        if (!strstr(wick_last_error(), e->needle))
            fail_msg("%s: message '%s' lacks '%s'", e->tpl, wick_last_error(), e->needle);
    }
}

/* A filter block or set block with a chain of 71 filters applies all of them (the first 7
 * were dropped by a fixed 64-entry array). Expected output from jinja2 3.1.6. */
static void test_long_filter_chain(void **state) {
    (void)state;
    char tpl[2048];
    size_t k = (size_t)sprintf(tpl, "{%% filter upper");
    for (int i = 0; i < 70; i++) k += (size_t)sprintf(tpl + k, "|trim");
    k += (size_t)sprintf(tpl + k, " %%} ab {%% endfilter %%}{%% set x | upper");
    for (int i = 0; i < 70; i++) k += (size_t)sprintf(tpl + k, "|trim");
    sprintf(tpl + k, " %%} cd {%% endset %%}{{ x }}");
    wick_status st;
    char *out = render(tpl, NULL, &st);
    assert_int_equal(st, WICK_OK);
    assert_string_equal(out, "ABCD");
    free(out);
}

/* ---- hostile templates, each rendered in a child process ----
 * A crash, a hang or a memory blow-up must not take the test program down with it (and
 * before the fixes these did crash, hang or allocate gigabytes), so each case runs in a
 * fork with an alarm, and the parent checks the outcome, the time and the peak memory. */

typedef struct outcome {
    int sig;            /* the signal that ended the child (SIGALRM: over time), or 0 */
    bool leaked;        /* LeakSanitizer found leaks in the child (sanitizer builds) */
    wick_status st;
    size_t out_len;
    char text[240];     /* start of the output (OK) or the message (error) */
    double seconds;
    long rss_mib;       /* the child's peak resident memory beyond the parent's at fork */
} outcome;

static long rss_kib(void) {
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

typedef void (*child_fn)(const void *arg, outcome *o);

static outcome run_isolated(child_fn fn, const void *arg, unsigned timeout_s) {
    outcome o = {0};
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    long base = rss_kib();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* cmocka's handlers would report a crash and run on: restore them */
        int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
        for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) signal(sigs[i], SIG_DFL);
        close(fd[0]);
        alarm(timeout_s);
        fn(arg, &o);
#ifdef HAVE_LSAN /* _exit skips LeakSanitizer's exit check: run it here */
        o.leaked = __lsan_do_recoverable_leak_check() != 0;
#endif
        ssize_t w = write(fd[1], &o, sizeof o);
        _exit(w == (ssize_t)sizeof o ? 0 : 1);
    }
    close(fd[1]);
    outcome got;
    ssize_t r = read(fd[0], &got, sizeof got);
    close(fd[0]);
    int status = 0;
    struct rusage ru;
    assert_true(wait4(pid, &status, 0, &ru) == pid);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (r == (ssize_t)sizeof got) o = got;
    if (WIFSIGNALED(status)) o.sig = WTERMSIG(status);
    else if (r != (ssize_t)sizeof got) o.sig = -1;
    o.seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    o.rss_mib = (ru.ru_maxrss - base) / 1024;
    return o;
}

typedef struct hostile {
    const char *name, *tpl;
    const char *want;   /* expected output, or NULL for an error */
    const char *needle; /* in the error message (want == NULL) */
    long max_mib;       /* peak memory bound, 0 = only the engine's own limits */
} hostile;

static cJSON *big_context(void) { /* {"d": {"k0": 0, ..., "k299999": 299999}} */
    cJSON *ctx = cJSON_CreateObject(), *d = cJSON_AddObjectToObject(ctx, "d");
    char k[32];
    for (int i = 0; i < 300000; i++) {
        snprintf(k, sizeof k, "k%d", i);
        cJSON_AddNumberToObject(d, k, i);
    }
    return ctx;
}

static void render_child(const void *arg, outcome *o) {
    const hostile *h = arg;
    cJSON *ctx = strstr(h->tpl, "{{ d") ? big_context() : NULL;
    char *out = NULL;
    o->st = jinja_render(h->tpl, ctx, &out);
    o->out_len = out ? strlen(out) : 0;
    snprintf(o->text, sizeof o->text, "%s", out ? out : wick_last_error());
    free(out);
    cJSON_Delete(ctx);
}

/* Expected outputs are jinja2's (3.1.6, same context). Checked against the code before the
 * fixes: each crashed (SIGSEGV: stack overflow),
 * ran for minutes (quadratic or exponential work) or held gigabytes. */
static const hostile hostiles[] = {
    /* value walks: bounded depth, cycles, work */
    {"namespace holding itself", "{% set ns = namespace() %}{% set ns.x = ns %}{{ ns }}", NULL,
     "nested deeper", 0},
    {"200000-deep list printed",
     "{% set ns = namespace(a=0) %}{% for i in range(400) %}{% for j in range(500) %}"
     "{% set ns.a = [ns.a] %}{% endfor %}{% endfor %}{{ ns.a }}", NULL, "nested deeper", 0},
    {"200000-deep lists compared",
     "{% set ns = namespace(a=0, b=0) %}{% for i in range(400) %}{% for j in range(500) %}"
     "{% set ns.a = [ns.a] %}{% set ns.b = [ns.b] %}{% endfor %}{% endfor %}{{ ns.a == ns.b }}",
     NULL, "nested deeper", 0},
    {"2^64-node shared lists compared",
     "{% set ns = namespace(a=[0], b=[0]) %}{% for i in range(64) %}{% set ns.a = [ns.a, ns.a] %}"
     "{% set ns.b = [ns.b, ns.b] %}{% endfor %}{{ ns.a == ns.b }}", NULL, "step limit", 0},
    {"map('map', ...) 100000 deep", NULL /* built in test_hostile */, NULL, "nested too deeply", 0},
    /* quadratic algorithms */
    {"unique of 100000 items", "{{ range(100000)|unique|list|length }}", "100000", NULL, 0},
    {"rfind of a 1 MB needle", "{% set s = 'ab' * 1000000 %}{{ s.rfind(s[:1000000] ~ 'c') }}",
     "-1", NULL, 0},
    {"strip with a 1 MB argument",
     "{% set s = 'a' * 1000000 %}{{ s.strip('b' * 1000000 ~ 'a')|length }}", "0", NULL, 0},
    {"dict of 300000 keys from the context", "{{ d|length }}", "300000", NULL, 0},
    {"tojson(sort_keys) of 300000 keys",
     "{{ d|tojson(sort_keys=true)|length }} {{ (d|tojson(sort_keys=true))[:40] }}",
     "5477780 {\"k0\": 0, \"k1\": 1, \"k10\": 10, \"k100\": 10", NULL, 0},
    /* memory: 40 nested macro calls, each holding a 30 MB render buffer */
    {"nested render buffers",
     "{% set s = 'x' * 30000000 %}{% macro f(n) %}{{ s }}{% if n %}{{ f(n - 1) }}{% endif %}"
     "{% endmacro %}{{ f(40)|length }}", NULL, "output exceeds", 600},
    /* the step limit covers loops that allocate nothing */
    {"10^8 loop iterations",
     "{% set r = range(1000) %}{% for i in range(100000) %}{% for j in r %}{% if j %}{% endif %}"
     "{% endfor %}{% endfor %}", NULL, "step limit", 0},
};

static void test_hostile(void **state) {
    (void)state;
    /* {{ 'a'|map('map', 'map', ...) }}: one nested filter call per argument */
    size_t nmap = 100000;
    char *deep_map = malloc(nmap * 6 + 64);
    assert_non_null(deep_map);
    size_t k = (size_t)sprintf(deep_map, "{{ 'a'|map(");
    for (size_t i = 0; i < nmap; i++) k += (size_t)sprintf(deep_map + k, "%s'map'", i ? "," : "");
    strcpy(deep_map + k, ")|list }}");
    for (size_t i = 0; i < sizeof hostiles / sizeof *hostiles; i++) {
        hostile h = hostiles[i];
        if (!h.tpl) h.tpl = deep_map;
        outcome o = run_isolated(render_child, &h, 120);
        if (o.sig)
            fail_msg("%s: killed by signal %d after %.1f s (%s)", h.name, o.sig, o.seconds,
                     o.sig == SIGALRM ? "over 120 s" : "crash");
        if (h.want && (o.st || strcmp(o.text, h.want)))
            fail_msg("%s: status %d [%s], want [%s]", h.name, o.st, o.text, h.want);
        if (!h.want && (!o.st || !strstr(o.text, h.needle)))
            fail_msg("%s: status %d [%s], want an error with '%s'", h.name, o.st, o.text, h.needle);
        if (o.leaked) fail_msg("%s: leaks (see LeakSanitizer's report above)", h.name);
        if (h.max_mib && o.rss_mib > h.max_mib)
            fail_msg("%s: peak memory %ld MiB over %ld MiB", h.name, o.rss_mib, h.max_mib);
        print_message("%-40s %6.2f s %5ld MiB  %.70s\n", h.name, o.seconds, o.rss_mib, o.text);
    }
    free(deep_map);
}

/* ---- the deepest nesting each limit allows fits in a small thread stack ---- */

#ifdef HAVE_LSAN
#define STACK_KIB 4096 /* sanitizer frames are several times larger */
#else
#define STACK_KIB 1024 /* what wick.h promises is enough */
#endif

/* `head` n times, then `mid`, then `tail` n times. */
static char *repeat3(const char *head, int n, const char *mid, const char *tail) {
    size_t lh = strlen(head), lm = strlen(mid), lt = strlen(tail);
    char *s = malloc(lh * (size_t)n + lm + lt * (size_t)n + 1), *p = s;
    assert_non_null(s);
    for (int i = 0; i < n; i++, p += lh) memcpy(p, head, lh);
    memcpy(p, mid, lm);
    p += lm;
    for (int i = 0; i < n; i++, p += lt) memcpy(p, tail, lt);
    *p = 0;
    return s;
}

typedef struct deep { const char *tpl; wick_status st; char msg[200]; } deep;

static void *render_thread(void *arg) {
    deep *d = arg;
    char *out = NULL;
    d->st = jinja_render(d->tpl, NULL, &out);
    snprintf(d->msg, sizeof d->msg, "%s", d->st ? wick_last_error() : ""); /* thread-local */
    free(out);
    return NULL;
}

/* {{ <inner> }} */
static char *in_output(char *inner) {
    char *s = repeat3("{{ ", 1, inner, " }}");
    free(inner);
    return s;
}

static void test_stack_bounded(void **state) {
    (void)state;
    struct { char *tpl; bool ok; } cases[] = {
        {in_output(repeat3("not ", 195, "1", "")), true},           /* parse depth 200 */
        {in_output(repeat3("1 if 1 else ", 195, "1", "")), true},
        {in_output(repeat3("[", 95, "1", "]")), true},
        {repeat3("{% if 1 %}", 195, "x", "{% endif %}"), true},
        {repeat3("{% for a in [1] %}", 195, "x", "{% endfor %}"), true},
        {in_output(repeat3("(", 100000, "1", ")")), false},            /* over it */
        /* macro recursion up to the call limit, each level inside a loop and an if */
        {strdup("{% macro f(n) %}{% if n %}{% for a in [1] %}{% if 1 %}{{ [f(n - 1)]|first|trim }}"
                "{% endif %}{% endfor %}{% endif %}{% endmacro %}{{ f(200) }}"), false},
        /* 998-deep values printed, compared, sorted and serialized below 95 macro calls */
        {strdup("{% set ns = namespace(a=1) %}{% for i in range(998) %}{% set ns.a = [ns.a] %}"
                "{% endfor %}{% macro f(n) %}{% if n %}{{ f(n - 1) }}{% else %}{{ ns.a|length }}"
                "{{ ns.a == ns.a[0:] }}{{ ns.a|string|length }}{{ ns.a|tojson|length }}"
                "{{ [ns.a, ns.a]|sort|length }}{% endif %}{% endmacro %}{{ f(95) }}"), true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        deep d = {cases[i].tpl, WICK_ERR_INTERNAL, ""};
        pthread_attr_t at;
        pthread_t th;
        assert_int_equal(pthread_attr_init(&at), 0);
        assert_int_equal(pthread_attr_setstacksize(&at, (size_t)STACK_KIB << 10), 0);
        assert_int_equal(pthread_create(&th, &at, render_thread, &d), 0);
        assert_int_equal(pthread_join(th, NULL), 0);
        pthread_attr_destroy(&at);
        if (cases[i].ok && d.st) fail_msg("case %zu: %s", i, d.msg);
        if (!cases[i].ok && (d.st == WICK_OK || d.st == WICK_ERR_INTERNAL))
            fail_msg("case %zu: expected a limit error, got status %d", i, d.st);
        free(cases[i].tpl);
    }
}

/* ---- fuzz/regressions/jinja, replayed by the harness ----
 * One file per defect: the fuzzer's finds (crash, slow units) and the reported and audited
 * defects as minimal templates. Before the fixes each crashed, tripped UBSan, or ran past 30 s
 * under ASan; a Release build catches the crashes and hangs, a sanitizer build the rest. */

typedef struct input { const uint8_t *p; size_t n; } input;

static void fuzz_child(const void *arg, outcome *o) {
    const input *in = arg;
    fuzz_target_jinja(in->p, in->n); /* aborts itself on an inconsistent result */
    o->st = WICK_OK;
}

static void test_fuzz_regressions(void **state) {
    (void)state;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/fuzz/regressions/jinja", WICK_SOURCE_DIR);
    DIR *d = opendir(dir);
    if (!d) fail_msg("%s: %s", dir, strerror(errno));
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        uint8_t *buf = malloc(1 << 20);
        assert_non_null(buf);
        input in = {buf, fread(buf, 1, 1 << 20, f)};
        fclose(f);
        outcome o = run_isolated(fuzz_child, &in, 120);
        free(buf);
        if (o.sig)
            fail_msg("%s: killed by signal %d after %.1f s", e->d_name, o.sig, o.seconds);
        if (o.leaked) fail_msg("%s: leaks (see LeakSanitizer's report above)", e->d_name);
        print_message("%-50s %6.2f s %5ld MiB\n", e->d_name, o.seconds, o.rss_mib);
        n++;
    }
    closedir(d);
    assert_true(n > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integer_edges),
        cmocka_unit_test(test_integer_errors),
        cmocka_unit_test(test_long_filter_chain),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_stack_bounded),
        cmocka_unit_test(test_fuzz_regressions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
