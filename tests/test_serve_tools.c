/* test_serve_tools.c — the server's tool-call parsing (server/serve_tools.c): a reply parsed
 * whole and the same reply streamed in every way it can be cut into pieces give the same
 * calls and the same text; things that look like calls but are not stay text. */
#include <cjson/cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/server.h"

typedef struct sink { char text[4096]; size_t len; cJSON *calls; } sink;

static void on_text(void *u, const char *p, size_t n) {
    sink *s = u;
    assert_true(s->len + n < sizeof s->text);
    memcpy(s->text + s->len, p, n);
    s->len += n;
    s->text[s->len] = 0;
}

static void on_call(void *u, cJSON *c) { cJSON_AddItemToArray(((sink *)u)->calls, c); }

static void trim(char *s) {
    size_t n = strlen(s), a = 0;
    while (n && strchr(" \n\r\t", s[n - 1])) n--;
    while (a < n && strchr(" \n\r\t", s[a])) a++;
    memmove(s, s + a, n - a);
    s[n - a] = 0;
}

/* Whole vs streamed (cut at i and j, for every i <= j) must agree; returns the calls. */
static cJSON *check(int mode, int fmt, const char *reply, const char *want_text, int want_calls) {
    cJSON *calls = cJSON_CreateArray();
    char *content = serve_tools_split(mode, fmt, "r1", reply, strlen(reply), calls);
    assert_non_null(content);
    if (strcmp(content, want_text) != 0) fail_msg("split text '%s', wanted '%s' (reply %s)", content, want_text, reply);
    assert_int_equal(cJSON_GetArraySize(calls), want_calls);
    const size_t n = strlen(reply);
    for (size_t i = 0; i <= n; i++)
        for (size_t j = i; j <= n; j++) {
            serve_tool_stream ts;
            serve_tools_init(&ts, mode, fmt, "r1");
            sink s = {.calls = cJSON_CreateArray()};
            serve_tools_feed(&ts, reply, i, false, on_text, on_call, &s);
            serve_tools_feed(&ts, reply + i, j - i, false, on_text, on_call, &s);
            serve_tools_feed(&ts, reply + j, n - j, true, on_text, on_call, &s);
            trim(s.text);
            if (strcmp(s.text, content) != 0)
                fail_msg("cut at %zu,%zu: streamed text '%s', whole '%s'", i, j, s.text, content);
            if (!cJSON_Compare(s.calls, calls, true)) {
                char *a = cJSON_PrintUnformatted(s.calls), *b = cJSON_PrintUnformatted(calls);
                fail_msg("cut at %zu,%zu: streamed calls %s, whole %s", i, j, a, b);
            }
            cJSON_Delete(s.calls);
            serve_tools_free(&ts);
        }
    free(content);
    return calls;
}

static void test_tagged(void **state) {
    (void)state;
    cJSON *c = check(SERVE_TOOLS_AUTO, SERVE_TOOLFMT_TAGGED,
                     "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
                     "</tool_call>\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": 3}}\n</tool_call>",
                     "Let me check.", 2);
    const cJSON *c0 = cJSON_GetArrayItem(c, 0), *c1 = cJSON_GetArrayItem(c, 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "function"), "name")->valuestring, "get_weather");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "function"), "arguments")->valuestring,
                        "{\"city\":\"Paris\"}");
    assert_string_equal(cJSON_GetObjectItem(c0, "type")->valuestring, "function");
    assert_int_equal((int)cJSON_GetObjectItem(c1, "index")->valuedouble, 1);
    assert_string_not_equal(cJSON_GetObjectItem(c0, "id")->valuestring, cJSON_GetObjectItem(c1, "id")->valuestring);
    cJSON_Delete(c);
    /* no call; a "<" that is not a tag; a tag whose body is not a call; an unterminated call */
    cJSON_Delete(check(SERVE_TOOLS_AUTO, SERVE_TOOLFMT_TAGGED, "a < b and <tool_c", "a < b and <tool_c", 0));
    cJSON_Delete(check(SERVE_TOOLS_AUTO, SERVE_TOOLFMT_TAGGED, "x <tool_call>not json</tool_call> y",
                       "x <tool_call>not json</tool_call> y", 0));
    cJSON_Delete(check(SERVE_TOOLS_AUTO, SERVE_TOOLFMT_TAGGED, "<tool_call>{\"name\":\"f\",\"arguments\":{}}", "", 1));
    cJSON_Delete(check(SERVE_TOOLS_AUTO, SERVE_TOOLFMT_TAGGED, "<tool_call>{\"arguments\":{}}</tool_call>",
                       "<tool_call>{\"arguments\":{}}</tool_call>", 0)); /* no name */
}

static void test_forced_and_json(void **state) {
    (void)state;
    /* forced (the opening tag was in the prompt): the reply is the object */
    cJSON_Delete(check(SERVE_TOOLS_NAMED, SERVE_TOOLFMT_TAGGED, "{\"name\":\"f\",\"arguments\":{\"x\":1}}", "", 1));
    cJSON_Delete(check(SERVE_TOOLS_REQUIRED, SERVE_TOOLFMT_JSON, "{\"name\":\"f\",\"parameters\":{\"x\":[1]}}", "", 1));
    /* Llama 3 format, auto: an object with a name is a call, other replies are text */
    cJSON *c = check(SERVE_TOOLS_AUTO, SERVE_TOOLFMT_JSON, " {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}", "", 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(c, 0), "function"), "arguments")->valuestring,
                        "{\"city\":\"Oslo\"}");
    cJSON_Delete(c);
    cJSON_Delete(check(SERVE_TOOLS_AUTO, SERVE_TOOLFMT_JSON, "Hello {there}", "Hello {there}", 0));
    cJSON_Delete(check(SERVE_TOOLS_AUTO, SERVE_TOOLFMT_JSON, "{\"x\": 1}", "{\"x\": 1}", 0));
    /* an object followed by more text is not a call */
    cJSON_Delete(check(SERVE_TOOLS_AUTO, SERVE_TOOLFMT_JSON, "{\"name\":\"f\",\"parameters\":{}} and more",
                       "{\"name\":\"f\",\"parameters\":{}} and more", 0));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tagged),
        cmocka_unit_test(test_forced_and_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
