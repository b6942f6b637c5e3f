/* test_chat_template.c — chat templates of real tokenizers rendered exactly as transformers.
 *
 * - qwen3/golden_chat.json: 15 renderings made by transformers' apply_chat_template (see the
 *   fixture README); each is rendered twice: through jinja_render with the template read from
 *   tokenizer_config.json, and through wick_tokenizer_load + wick_chat_render.
 * - llama3: the Llama 3 template of llama3/tokenizer_config.json on three conversations. The
 *   expected strings were produced by jinja2 3.1.6 in transformers' configuration
 *   (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks) and agree with a hand trace:
 *   bos_token on the first message, `content | trim` (the filter binds tighter than +), and the
 *   assistant header appended whatever add_generation_prompt says. */
#include "testutil.h"

#include <cjson/cJSON.h>

#include "tokenizer/jinja.h"

static cJSON *load_json(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(b);
    free(b);
    if (!j) fail_msg("bad JSON in %s", path);
    return j;
}

static char *join(const char *a, const char *b) {
    char *p = malloc(strlen(a) + strlen(b) + 2);
    sprintf(p, "%s/%s", a, b);
    return p;
}

static void test_qwen3_golden_engine(void **state) {
    (void)state;
    TU_REQUIRE_FIXTURE(dir, "tokenizers/qwen3");
    char *cfgp = join(dir, "tokenizer_config.json"), *goldp = join(dir, "golden_chat.json");
    cJSON *cfg = load_json(cfgp), *gold = load_json(goldp);
    const char *tpl = cJSON_GetObjectItem(cfg, "chat_template")->valuestring;
    jinja_template *t;
    assert_int_equal(jinja_compile(tpl, &t), WICK_OK);
    cJSON *cases = cJSON_GetObjectItem(gold, "cases");
    int n = 0;
    for (cJSON *c = cases->child; c; c = c->next, n++) {
        cJSON *ctx = cJSON_CreateObject();
        cJSON_AddItemToObject(ctx, "messages", cJSON_Duplicate(cJSON_GetObjectItem(c, "messages"), 1));
        cJSON_AddItemToObject(ctx, "add_generation_prompt",
                              cJSON_Duplicate(cJSON_GetObjectItem(c, "add_generation_prompt"), 1));
        cJSON_AddStringToObject(ctx, "eos_token", "<|im_end|>");
        cJSON_AddStringToObject(ctx, "pad_token", "<|endoftext|>");
        cJSON_AddNullToObject(ctx, "tools");
        cJSON_AddNullToObject(ctx, "documents");
        for (cJSON *k = cJSON_GetObjectItem(c, "template_kwargs")->child; k; k = k->next)
            cJSON_AddItemToObject(ctx, k->string, cJSON_Duplicate(k, 1));
        char *out;
        wick_status st = jinja_render_compiled(t, ctx, &out);
        if (st) fail_msg("case %s: %s", cJSON_GetObjectItem(c, "name")->valuestring, wick_last_error());
        assert_string_equal(out, cJSON_GetObjectItem(c, "text")->valuestring);
        free(out);
        cJSON_Delete(ctx);
    }
    assert_int_equal(n, 15);
    jinja_free(t);
    cJSON_Delete(cfg);
    cJSON_Delete(gold);
    free(cfgp);
    free(goldp);
    free(dir);
}

static void test_qwen3_golden_chat_render(void **state) {
    (void)state;
    TU_REQUIRE_FIXTURE(dir, "tokenizers/qwen3");
    char *goldp = join(dir, "golden_chat.json");
    cJSON *gold = load_json(goldp);
    wick_tokenizer *tok;
    if (wick_tokenizer_load(dir, &tok)) fail_msg("load: %s", wick_last_error());
    int n = 0;
    for (cJSON *c = cJSON_GetObjectItem(gold, "cases")->child; c; c = c->next, n++) {
        cJSON *msgs = cJSON_GetObjectItem(c, "messages");
        int nm = cJSON_GetArraySize(msgs);
        wick_chat_message m[16];
        assert_true(nm <= 16);
        for (int i = 0; i < nm; i++) {
            cJSON *x = cJSON_GetArrayItem(msgs, i);
            m[i].role = cJSON_GetObjectItem(x, "role")->valuestring;
            m[i].content = cJSON_GetObjectItem(x, "content")->valuestring;
        }
        char *kw = cJSON_PrintUnformatted(cJSON_GetObjectItem(c, "template_kwargs"));
        char *out;
        wick_status st = wick_chat_render(tok, m, (size_t)nm,
                                          cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt")),
                                          kw, &out);
        if (st) fail_msg("case %s: %s", cJSON_GetObjectItem(c, "name")->valuestring, wick_last_error());
        assert_string_equal(out, cJSON_GetObjectItem(c, "text")->valuestring);
        wick_free(out);
        free(kw);
    }
    assert_int_equal(n, 15);
    /* bad extra_json, NULL arguments */
    char *out = (char *)1;
    wick_chat_message one = {"user", "hi"};
    assert_int_equal(wick_chat_render(tok, &one, 1, true, "[1]", &out), WICK_ERR_INVALID_ARG);
    assert_null(out);
    assert_int_equal(wick_chat_render(tok, &one, 1, true, "{bad", &out), WICK_ERR_INVALID_ARG);
    assert_int_equal(wick_chat_render(NULL, &one, 1, true, NULL, &out), WICK_ERR_INVALID_ARG);
    /* extra_json keys reach the template: tools switches Qwen3 to its tool preamble */
    assert_int_equal(wick_chat_render(tok, &one, 1, false,
                                      "{\"tools\": [{\"type\": \"function\", \"function\": "
                                      "{\"name\": \"f\", \"parameters\": {}}}]}", &out), WICK_OK);
    assert_non_null(strstr(out, "<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"f\", "
                                "\"parameters\": {}}}\n</tools>"));
    wick_free(out);
    wick_tokenizer_free(tok);
    cJSON_Delete(gold);
    free(goldp);
    free(dir);
}

static const struct {
    const char *msgs, *want;
} llama_cases[] = {
    {"[{\"role\":\"system\",\"content\":\"  You are helpful.\\n\"},{\"role\":\"user\",\"content\":\"Hi!\"}]",
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant"
     "<|end_header_id|>\n\n"},
    {"[{\"role\":\"user\",\"content\":\"What is 2+2?\"},{\"role\":\"assistant\",\"content\":\" 4 \"},"
     "{\"role\":\"user\",\"content\":\"\\tThanks\\n\\n\"}]",
     "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
     "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|><|start_header_id|>user"
     "<|end_header_id|>\n\nThanks<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"[{\"role\":\"user\",\"content\":\"h\\u00e9llo \\ud83d\\udc4b \\u2014 \\u00fcn\\u00efcode\"}]",
     "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nh\xc3\xa9llo \xf0\x9f\x91\x8b "
     "\xe2\x80\x94 \xc3\xbcn\xc3\xaf" "code<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
};

static void test_llama3(void **state) {
    (void)state;
    TU_REQUIRE_FIXTURE(dir, "tokenizers/llama3");
    char *cfgp = join(dir, "tokenizer_config.json");
    cJSON *cfg = load_json(cfgp);
    const char *tpl = cJSON_GetObjectItem(cfg, "chat_template")->valuestring;
    for (size_t i = 0; i < sizeof llama_cases / sizeof *llama_cases; i++) {
        for (int agp = 0; agp < 2; agp++) {
            cJSON *ctx = cJSON_CreateObject();
            cJSON_AddItemToObject(ctx, "messages", cJSON_Parse(llama_cases[i].msgs));
            cJSON_AddBoolToObject(ctx, "add_generation_prompt", agp);
            cJSON_AddStringToObject(ctx, "bos_token", "<|begin_of_text|>");
            cJSON_AddStringToObject(ctx, "eos_token", "<|end_of_text|>");
            char *out;
            if (jinja_render(tpl, ctx, &out)) fail_msg("case %zu: %s", i, wick_last_error());
            assert_string_equal(out, llama_cases[i].want);
            free(out);
            cJSON_Delete(ctx);
        }
    }
    /* and through the tokenizer, which supplies bos_token from tokenizer_config.json */
    wick_tokenizer *tok;
    if (wick_tokenizer_load(dir, &tok)) fail_msg("load: %s", wick_last_error());
    wick_chat_message m[2] = {{"system", "  You are helpful.\n"}, {"user", "Hi!"}};
    char *out;
    assert_int_equal(wick_chat_render(tok, m, 2, true, NULL, &out), WICK_OK);
    assert_string_equal(out, llama_cases[0].want);
    wick_free(out);
    wick_tokenizer_free(tok);
    cJSON_Delete(cfg);
    free(cfgp);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen3_golden_engine),
        cmocka_unit_test(test_qwen3_golden_chat_render),
        cmocka_unit_test(test_llama3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
