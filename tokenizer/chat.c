/* chat.c — wick_chat_render / wick_chat_render_json: a tokenizer's chat template rendered like
 * transformers' apply_chat_template(tokenize=False).
 *
 * The variables are those transformers passes to the template: `messages`, `add_generation_prompt`,
 * `tools` and `documents` (None unless given), the special token strings of
 * tokenizer_config.json (bos_token, eos_token, unk_token, pad_token, sep_token, cls_token,
 * mask_token; absent ones stay undefined), and every key of extra_json, which overrides the
 * others (e.g. {"enable_thinking": false, "tools": [...]}). wick_chat_render builds messages
 * from {role, content} pairs; wick_chat_render_json takes the messages array as JSON and hands
 * it to the template untouched, so tool_calls, reasoning_content and tool messages work.
 *
 * The template is compiled once per tokenizer, on first use, and kept in the tokenizer behind
 * an atomic pointer: threads sharing a tokenizer may race to compile, the first published
 * template wins and the others free theirs. A template that does not compile is not cached, so
 * each call reports the error again (tokenizing never depends on the template). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json_parse.h"
#include "tokenizer/jinja.h"
#include "tokenizer/tok_impl.h"
#include "tokenizer/tokenizer_internal.h"

static const char *const special_keys[] = {"bos_token", "eos_token", "unk_token", "pad_token",
                                           "sep_token", "cls_token", "mask_token"};

/* The tokenizer's compiled template, compiling and publishing it on first use. */
static wick_status chat_template(const wick_tokenizer *tok, const jinja_template **out) {
    wick_tokenizer *t = (wick_tokenizer *)tok;  /* only the atomic cache slot is written */
    jinja_template *cur = atomic_load_explicit(&t->chat_tpl, memory_order_acquire);
    if (cur) {
        *out = cur;
        return WICK_OK;
    }
    const char *src = tokenizer_chat_template(tok);
    if (!src)
        return err_set(WICK_ERR_NOT_FOUND, "wick_chat_render: the tokenizer has no chat_template "
                       "(tokenizer_config.json)");
    jinja_template *mine = NULL;
    wick_status st = jinja_compile(src, &mine);
    if (st) return err_wrap(st, "chat template");
    jinja_template *expected = NULL;
    if (atomic_compare_exchange_strong_explicit(&t->chat_tpl, &expected, mine,
                                                memory_order_acq_rel, memory_order_acquire)) {
        *out = mine;
    } else {  /* another thread published first */
        jinja_free(mine);
        *out = expected;
    }
    return WICK_OK;
}

void tokenizer_chat_free(wick_tokenizer *t) {
    jinja_free(atomic_load_explicit(&t->chat_tpl, memory_order_acquire));
}

/* Renders with `messages` (a cJSON array, taken over: freed here in every case). */
static wick_status render(const wick_tokenizer *tok, cJSON *messages, bool add_generation_prompt,
                          const char *extra_json, char **out) {
    const jinja_template *tpl = NULL;
    cJSON *extra = NULL, *ctx = NULL;
    wick_status st = chat_template(tok, &tpl);
    if (st) goto done;
    if (extra_json) {
        extra = cJSON_Parse(extra_json);
        if (!extra && json_valid(extra_json, strlen(extra_json)) == 0) {
            st = err_set(WICK_ERR_NOMEM, "wick_chat_render: out of memory parsing extra_json");
            goto done;
        }
        if (!extra || !cJSON_IsObject(extra)) {
            st = err_set(WICK_ERR_INVALID_ARG, "wick_chat_render: extra_json is not a JSON "
                         "object: %.60s", extra_json);
            goto done;
        }
    }
    st = WICK_ERR_NOMEM;
    if (!(ctx = cJSON_CreateObject())) goto done;
    /* cJSON_AddItemTo* can fail (copying the key) and then leave the item to the caller: an
       unchecked add rendered the template without "messages" under memory pressure */
    if (!cJSON_AddItemToObject(ctx, "messages", messages)) goto done;
    messages = NULL;  /* owned by ctx now */
    if (!cJSON_AddBoolToObject(ctx, "add_generation_prompt", add_generation_prompt) ||
        !cJSON_AddNullToObject(ctx, "tools") || !cJSON_AddNullToObject(ctx, "documents"))
        goto done;
    for (size_t k = 0; k < sizeof special_keys / sizeof *special_keys; k++) {
        const char *s = tokenizer_special_str(tok, special_keys[k]);
        if (s && !cJSON_AddStringToObject(ctx, special_keys[k], s)) goto done;
    }
    for (cJSON *e = extra ? extra->child : NULL; e; e = e->next) {
        cJSON *dup = cJSON_Duplicate(e, true);
        if (!dup) goto done;
        const bool added = cJSON_GetObjectItemCaseSensitive(ctx, e->string)
                               ? cJSON_ReplaceItemInObjectCaseSensitive(ctx, e->string, dup)
                               : cJSON_AddItemToObject(ctx, e->string, dup);
        if (!added) {
            cJSON_Delete(dup);
            goto done;
        }
    }
    st = jinja_render_compiled(tpl, ctx, out);
    if (st) err_wrap(st, "chat template");
done:
    if (st == WICK_ERR_NOMEM && !*out && !strstr(wick_last_error(), "memory"))
        err_set(WICK_ERR_NOMEM, "wick_chat_render: out of memory");
    cJSON_Delete(messages);
    cJSON_Delete(ctx);
    cJSON_Delete(extra);
    return st;
}

wick_status wick_chat_render(const wick_tokenizer *tok, const wick_chat_message *msgs, size_t n,
                             bool add_generation_prompt, const char *extra_json, char **out) {
    if (out) *out = NULL;
    if (!tok || !out || (n && !msgs))
        return err_set(WICK_ERR_INVALID_ARG, "wick_chat_render: NULL tokenizer, messages or out");
    cJSON *list = cJSON_CreateArray();
    if (!list) return err_set(WICK_ERR_NOMEM, "wick_chat_render: out of memory");
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role) {
            cJSON_Delete(list);
            return err_set(WICK_ERR_INVALID_ARG, "wick_chat_render: message %zu has no role", i);
        }
        cJSON *m = cJSON_CreateObject();
        bool ok = m && cJSON_AddItemToArray(list, m) && cJSON_AddStringToObject(m, "role", msgs[i].role) &&
                  (msgs[i].content ? cJSON_AddStringToObject(m, "content", msgs[i].content) != NULL
                                   : cJSON_AddNullToObject(m, "content") != NULL);
        if (!ok) {
            if (m && !cJSON_GetArrayItem(list, (int)i)) cJSON_Delete(m);
            cJSON_Delete(list);
            return err_set(WICK_ERR_NOMEM, "wick_chat_render: out of memory");
        }
    }
    return render(tok, list, add_generation_prompt, extra_json, out);
}

wick_status wick_chat_render_json(const wick_tokenizer *tok, const char *messages_json,
                                  bool add_generation_prompt, const char *extra_json, char **out) {
    if (out) *out = NULL;
    if (!tok || !out || !messages_json)
        return err_set(WICK_ERR_INVALID_ARG, "wick_chat_render_json: NULL tokenizer, messages or out");
    cJSON *list = cJSON_Parse(messages_json);
    if (!list && json_valid(messages_json, strlen(messages_json)) == 0)
        return err_set(WICK_ERR_NOMEM, "wick_chat_render_json: out of memory parsing the messages");
    if (!list || !cJSON_IsArray(list)) {
        cJSON_Delete(list);
        return err_set(WICK_ERR_INVALID_ARG, "wick_chat_render_json: messages_json is not a JSON "
                       "array: %.60s", messages_json);
    }
    int i = 0;
    for (const cJSON *m = list->child; m; m = m->next, i++)
        if (!cJSON_IsObject(m)) {
            cJSON_Delete(list);
            return err_set(WICK_ERR_INVALID_ARG, "wick_chat_render_json: messages[%d] is not an object", i);
        }
    return render(tok, list, add_generation_prompt, extra_json, out);
}
