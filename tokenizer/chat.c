/* chat.c — wick_chat_render: a tokenizer's chat template rendered like transformers'
 * apply_chat_template(tokenize=False).
 *
 * The variables are those transformers passes to the template: `messages` (a list of
 * {role, content} dicts), `add_generation_prompt`, `tools` and `documents` (None unless given),
 * the special token strings of tokenizer_config.json (bos_token, eos_token, unk_token,
 * pad_token, sep_token, cls_token, mask_token; absent ones stay undefined), and every key of
 * extra_json, which overrides the others (e.g. {"enable_thinking": false, "tools": [...]}).
 * The template is compiled on every call; callers rendering often may keep a compiled
 * template through tokenizer/jinja.h. Not here: tool-call message fields beyond
 * role/content (pass whole conversations through jinja_render for those). */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tokenizer/jinja.h"
#include "tokenizer/tokenizer_internal.h"

static const char *const special_keys[] = {"bos_token", "eos_token", "unk_token", "pad_token",
                                           "sep_token", "cls_token", "mask_token"};

wick_status wick_chat_render(const wick_tokenizer *tok, const wick_chat_message *msgs, size_t n,
                             bool add_generation_prompt, const char *extra_json, char **out) {
    if (out) *out = NULL;
    if (!tok || !out || (n && !msgs))
        return err_set(WICK_ERR_INVALID_ARG, "wick_chat_render: NULL tokenizer, messages or out");
    const char *tpl = tokenizer_chat_template(tok);
    if (!tpl)
        return err_set(WICK_ERR_NOT_FOUND, "wick_chat_render: the tokenizer has no chat_template "
                       "(tokenizer_config.json)");
    cJSON *extra = NULL;
    if (extra_json) {
        extra = cJSON_Parse(extra_json);
        if (!extra || !cJSON_IsObject(extra)) {
            cJSON_Delete(extra);
            return err_set(WICK_ERR_INVALID_ARG, "wick_chat_render: extra_json is not a JSON "
                           "object: %.60s", extra_json);
        }
    }
    wick_status st = WICK_ERR_NOMEM;
    cJSON *ctx = cJSON_CreateObject(), *list = cJSON_CreateArray();
    if (!ctx || !list) goto done;
    cJSON_AddItemToObject(ctx, "messages", list);
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role) {
            st = err_set(WICK_ERR_INVALID_ARG, "wick_chat_render: message %zu has no role", i);
            goto done;
        }
        cJSON *m = cJSON_CreateObject();
        if (!m) goto done;
        cJSON_AddItemToArray(list, m);
        if (!cJSON_AddStringToObject(m, "role", msgs[i].role)) goto done;
        if (!(msgs[i].content ? cJSON_AddStringToObject(m, "content", msgs[i].content)
                              : cJSON_AddNullToObject(m, "content")))
            goto done;
    }
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
        if (cJSON_GetObjectItemCaseSensitive(ctx, e->string))
            cJSON_ReplaceItemInObjectCaseSensitive(ctx, e->string, dup);
        else
            cJSON_AddItemToObject(ctx, e->string, dup);
    }
    st = jinja_render(tpl, ctx, out);
    if (st) err_wrap(st, "chat template");
done:
    if (st == WICK_ERR_NOMEM && !*out && !strstr(wick_last_error(), "memory"))
        err_set(WICK_ERR_NOMEM, "wick_chat_render: out of memory");
    if (!ctx) cJSON_Delete(list);
    cJSON_Delete(ctx);
    cJSON_Delete(extra);
    return st;
}
