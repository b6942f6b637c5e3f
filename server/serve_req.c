/* serve_req.c — turns the JSON body of an OpenAI /v1/completions or /v1/chat/completions
 * request into prompt ids and wick_gen_params, naming the field of every rejected value.
 *
 * Accepted: prompt (string, [string], or [int ids]), messages (role + string content, or an
 * array of {"type":"text"} parts), max_tokens / max_completion_tokens, temperature, top_p,
 * top_k, min_p, typical_p, seed, stop (string or array), presence_penalty, frequency_penalty,
 * repetition_penalty, logit_bias, logprobs (int for completions; bool + top_logprobs for chat),
 * n (1 only), stream, stream_options.include_usage, ignore_eos, chat_template_kwargs.
 * Deliberately rejected instead of silently ignored: n > 1, best_of > 1, echo true, several
 * prompts in one request. Unknown fields (user, model, ...) are ignored as OpenAI does. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/json_num.h"
#include "base/json_parse.h"
#include "server/server.h"

/* The server ran out of memory reading the request: 503 (try again), not the client's fault. */
static bool oom(serve_req *r) {
    snprintf(r->err_msg, sizeof r->err_msg, "the server is out of memory; retry later");
    r->err_param[0] = 0;
    r->err_status = 503;
    r->err_code = "server_busy";
    return false;
}

static bool fail(serve_req *r, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err_msg, sizeof r->err_msg, fmt, ap);
    va_end(ap);
    snprintf(r->err_param, sizeof r->err_param, "%s", param ? param : "");
    r->err_status = 400;
    return false;
}

/* Reads an optional number field into *out, checking [lo, hi]. null counts as absent. */
static bool get_num(serve_req *r, const cJSON *o, const char *name, double lo, double hi,
                    double *out, bool *present) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (present) *present = false;
    if (!v || cJSON_IsNull(v)) return true;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return fail(r, name, "'%s' must be a number", name);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return fail(r, name, "'%s' must be between %g and %g, got %g", name, lo, hi, v->valuedouble);
    *out = v->valuedouble;
    if (present) *present = true;
    return true;
}

static bool get_float(serve_req *r, const cJSON *o, const char *name, double lo, double hi,
                      float *out) {
    double d = *out;
    if (!get_num(r, o, name, lo, hi, &d, NULL)) return false;
    *out = (float)d;
    return true;
}

/* An optional integer field in [lo, hi]: get_num's checks and messages, then json_num_int for
 * the integer conversion. */
static bool get_int(serve_req *r, const cJSON *o, const char *name, int lo, int hi, int *out,
                    bool *present) {
    double d = 0;
    bool has = false;
    if (!get_num(r, o, name, lo, hi, &d, &has)) return false;
    if (present) *present = has;
    if (!has) return true;
    int64_t i;
    if (!json_num_int(cJSON_GetObjectItemCaseSensitive(o, name), lo, hi, &i))
        return fail(r, name, "'%s' must be an integer, got %g", name, d);
    *out = (int)i;
    return true;
}

static bool get_bool(serve_req *r, const cJSON *o, const char *name, bool *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return true;
    if (!cJSON_IsBool(v)) return fail(r, name, "'%s' must be true or false", name);
    *out = cJSON_IsTrue(v);
    return true;
}

/* Tokenizes text into a fresh r->prompt. */
static bool tokenize(const serve_ctx *c, serve_req *r, const char *text, bool add_special,
                     const char *param) {
    size_t len = strlen(text);
    /* a prompt far over the context (a 7 MB paste) is refused after tokenizing a prefix of it,
       not all of it: a cut changes only the tokens of the last pre-token, so a prefix that is
       already n_ctx + 64 tokens long proves the whole one does not fit */
    const size_t probe = (size_t)c->n_ctx * 16;
    if (c->n_ctx > 0 && len > probe) {
        int32_t pre = wick_tokenize(c->tok, text, probe, add_special, NULL, 0);
        if (pre == INT32_MIN && strstr(wick_last_error(), "out of memory")) return oom(r);
        if (pre < 0 && pre != INT32_MIN && -pre > c->n_ctx + 64) {
            fail(r, param, "'%s' is longer than the context: its first %zu of %zu bytes are "
                           "already %d tokens, the context holds %d", param, probe, len, -pre, c->n_ctx);
            r->err_code = "context_length_exceeded";
            return false;
        }
    }
    int32_t need = wick_tokenize(c->tok, text, len, add_special, NULL, 0);
    if (need == INT32_MIN && strstr(wick_last_error(), "out of memory")) return oom(r);
    if (need == INT32_MIN) return fail(r, param, "cannot tokenize: %s", wick_last_error());
    if (need < 0) need = -need;
    free(r->prompt);
    r->prompt = malloc(sizeof(int32_t) * (size_t)(need ? need : 1));
    if (!r->prompt) return oom(r);
    r->n_prompt = wick_tokenize(c->tok, text, len, add_special, r->prompt, need);
    if (r->n_prompt == INT32_MIN && strstr(wick_last_error(), "out of memory")) return oom(r);
    if (r->n_prompt == INT32_MIN) return fail(r, param, "cannot tokenize: %s", wick_last_error());
    if (r->n_prompt <= 0) return fail(r, param, "'%s' is empty after tokenization", param);
    return true;
}

static bool parse_prompt(const serve_ctx *c, serve_req *r, const cJSON *root) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!p) return fail(r, "prompt", "'prompt' is required");
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 && cJSON_IsString(p->child))
        p = p->child; /* ["text"]: one prompt written as a batch of one */
    if (cJSON_IsString(p)) return tokenize(c, r, p->valuestring, true, "prompt");
    if (!cJSON_IsArray(p))
        return fail(r, "prompt", "'prompt' must be a string or an array of token ids");
    int n = cJSON_GetArraySize(p);
    if (n == 0) return fail(r, "prompt", "'prompt' is empty");
    r->prompt = malloc(sizeof(int32_t) * (size_t)n);
    if (!r->prompt) return oom(r);
    const cJSON *e;
    int i = 0;
    cJSON_ArrayForEach(e, p) {
        if (cJSON_IsString(e))
            return fail(r, "prompt", "several prompts in one request are not supported");
        int64_t id;
        if (!json_num_int(e, 0, (int64_t)c->n_vocab - 1, &id))
            return fail(r, "prompt", "prompt[%d] is not a token id in [0, %d)", i, c->n_vocab);
        r->prompt[i++] = (int32_t)id;
    }
    r->n_prompt = n;
    return true;
}

/* Copies `messages` with each content flattened to a string (text parts joined), renders the
 * chat template with the generation prompt and tokenizes the result. */
/* Rewrites every "$ref": "#/$defs/X" (or #/definitions/X) under j to "#/$defs/fN_X". */
static void rename_refs(cJSON *j, int fn) {
    if (!j) return;
    cJSON *ref = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "$ref") : NULL;
    if (cJSON_IsString(ref)) {
        const char *r = ref->valuestring;
        const char *name = !strncmp(r, "#/$defs/", 8) ? r + 8 : !strncmp(r, "#/definitions/", 14) ? r + 14 : NULL;
        if (name) {
            char buf[300];
            snprintf(buf, sizeof buf, "#/$defs/f%d_%.250s", fn, name);
            cJSON_SetValuestring(ref, buf);
        }
    }
    for (cJSON *c = j->child; c; c = c->next) rename_refs(c, fn);
}

/* Moves args' $defs / definitions into root's $defs as fN_NAME and renames the references. */
static void hoist_defs(cJSON *root, cJSON *args, int fn) {
    if (!cJSON_IsObject(args)) return;
    rename_refs(args, fn);
    static const char *const keys[] = {"$defs", "definitions"};
    for (int k = 0; k < 2; k++) {
        cJSON *defs = cJSON_DetachItemFromObjectCaseSensitive(args, keys[k]);
        if (!cJSON_IsObject(defs)) {
            cJSON_Delete(defs);
            continue;
        }
        cJSON *dst = cJSON_GetObjectItemCaseSensitive(root, "$defs");
        if (!dst) dst = cJSON_AddObjectToObject(root, "$defs");
        while (defs->child) {
            cJSON *d = cJSON_DetachItemViaPointer(defs, defs->child);
            char name[300];
            snprintf(name, sizeof name, "f%d_%.250s", fn, d->string ? d->string : "");
            cJSON_AddItemToObject(dst, name, d);
        }
        cJSON_Delete(defs);
    }
}

/* tools + tool_choice: checks their shape, decides the mode, and returns the tools array
   (borrowed from root) to pass to the template, or NULL. For required/named calls it also
   sets the JSON Schema the call must follow (*forced_prefix: what the prompt must end with so
   that the model writes just the JSON). */
static bool parse_tools(const serve_ctx *c, serve_req *r, const cJSON *root, const cJSON **tools_out,
                        const char **forced_prefix) {
    *tools_out = NULL;
    *forced_prefix = NULL;
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    const cJSON *choice = cJSON_GetObjectItemCaseSensitive(root, "tool_choice");
    if (!tools || cJSON_IsNull(tools)) {
        if (choice && !cJSON_IsNull(choice) && !(cJSON_IsString(choice) && !strcmp(choice->valuestring, "none")))
            return fail(r, "tool_choice", "'tool_choice' needs 'tools'");
        return true;
    }
    if (!cJSON_IsArray(tools)) return fail(r, "tools", "'tools' must be an array");
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(t, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *pa = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        if (!cJSON_IsObject(t) || !cJSON_IsString(ty) || strcmp(ty->valuestring, "function") != 0 ||
            !cJSON_IsObject(fn) || !cJSON_IsString(nm) || !nm->valuestring[0] || (pa && !cJSON_IsObject(pa)))
            return fail(r, "tools", "tools[%d] must be {\"type\": \"function\", \"function\": {\"name\", "
                                    "\"description\", \"parameters\": {...}}}", i);
        i++;
    }
    r->tool_mode = i ? SERVE_TOOLS_AUTO : SERVE_TOOLS_NONE;
    const char *named = NULL;
    if (choice && !cJSON_IsNull(choice)) {
        if (cJSON_IsString(choice) && !strcmp(choice->valuestring, "none")) r->tool_mode = SERVE_TOOLS_NONE;
        else if (cJSON_IsString(choice) && !strcmp(choice->valuestring, "auto")) ;
        else if (cJSON_IsString(choice) && !strcmp(choice->valuestring, "required")) r->tool_mode = SERVE_TOOLS_REQUIRED;
        else {
            const cJSON *fn = cJSON_GetObjectItemCaseSensitive(choice, "function");
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(fn, "name");
            if (!cJSON_IsObject(choice) || !cJSON_IsString(nm))
                return fail(r, "tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                                              "{\"type\": \"function\", \"function\": {\"name\": ...}}");
            named = nm->valuestring;
            bool found = false;
            cJSON_ArrayForEach(t, tools) found |= !strcmp(
                cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name")->valuestring, named);
            if (!found) return fail(r, "tool_choice", "tool_choice names '%.60s', which is not in 'tools'", named);
            r->tool_mode = SERVE_TOOLS_NAMED;
        }
    }
    if (r->tool_mode == SERVE_TOOLS_NONE || i == 0) {
        r->tool_mode = SERVE_TOOLS_NONE;
        return true;
    }
    /* the model's call format, from its vocabulary */
    if (wick_token_id(c->tok, "<tool_call>") >= 0) r->tool_format = SERVE_TOOLFMT_TAGGED;
    else if (wick_token_id(c->tok, "<|python_tag|>") >= 0) r->tool_format = SERVE_TOOLFMT_JSON;
    else return fail(r, "tools", "this model's vocabulary has no known tool-call format (<tool_call> or "
                                 "<|python_tag|>)");
    *tools_out = tools;
    if (r->tool_mode == SERVE_TOOLS_AUTO) return true;
    if (r->schema)
        return fail(r, "tool_choice", "a required or named tool_choice cannot be combined with response_format");
    /* required / named: the call is the whole reply, constrained to the JSON of a call: one
       {"name": const, "arguments": that function's parameters} object per allowed function,
       told apart by the name (a discriminated union when there are several) */
    const char *argkey = r->tool_format == SERVE_TOOLFMT_JSON ? "parameters" : "arguments";
    cJSON *sch = cJSON_CreateObject(), *alts = cJSON_AddArrayToObject(sch, "anyOf");
    int nfn = 0;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const char *fname = cJSON_GetObjectItemCaseSensitive(fn, "name")->valuestring;
        if (named && strcmp(fname, named) != 0) continue;
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        cJSON *args = params ? cJSON_Duplicate(params, true) : cJSON_CreateObject();
        if (args && !params) cJSON_AddStringToObject(args, "type", "object");
        /* the function's own definitions move to the wrapper's root, renamed per function, so
           that its "#/$defs/X" references still resolve there */
        hoist_defs(sch, args, ++nfn);
        cJSON *o = cJSON_CreateObject(), *props;
        cJSON_AddStringToObject(o, "type", "object");
        props = cJSON_AddObjectToObject(o, "properties");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(props, "name"), "const", fname);
        cJSON_AddItemToObject(props, argkey, args);
        cJSON *req = cJSON_AddArrayToObject(o, "required");
        cJSON_AddItemToArray(req, cJSON_CreateString("name"));
        cJSON_AddItemToArray(req, cJSON_CreateString(argkey));
        cJSON_AddFalseToObject(o, "additionalProperties");
        cJSON_AddItemToArray(alts, o);
    }
    free(r->schema);
    r->schema = cJSON_PrintUnformatted(sch);
    cJSON_Delete(sch);
    if (!r->schema) return oom(r);
    wick_status st = wick_json_schema_check(r->schema);
    if (st == WICK_ERR_NOMEM) return oom(r);
    if (st) return fail(r, "tools", "the parameters of the function to call cannot be enforced: %s", wick_last_error());
    r->p.json_schema = r->schema;
    if (r->tool_format == SERVE_TOOLFMT_TAGGED) *forced_prefix = "<tool_call>\n";
    return true;
}

static bool parse_messages(const serve_ctx *c, serve_req *r, const cJSON *root) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
        return fail(r, "messages", "'messages' must be a non-empty array");
    cJSON *copy = cJSON_Duplicate(msgs, true);
    if (!copy) return oom(r);
    int i = 0;
    cJSON *m;
    bool ok = true;
    char param[48];
    cJSON_ArrayForEach(m, copy) {
        snprintf(param, sizeof param, "messages[%d]", i);
        if (!cJSON_IsObject(m)) {
            ok = fail(r, param, "%s must be an object", param);
            break;
        }
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsString(role)) {
            ok = fail(r, param, "%s.role must be a string", param);
            break;
        }
        static const char *const roles[] = {"system", "developer", "user", "assistant", "tool", "function"};
        bool known = false;
        for (size_t k = 0; k < sizeof roles / sizeof roles[0]; k++) known |= !strcmp(role->valuestring, roles[k]);
        if (!known) {
            char rp[64];
            snprintf(rp, sizeof rp, "%s.role", param);
            ok = fail(r, rp, "%s.role '%.40s' is not one of system, developer, user, assistant, "
                             "tool, function", param, role->valuestring);
            break;
        }
        cJSON *ct = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (cJSON_IsArray(ct)) {
            size_t cap = 1, len = 0;
            const cJSON *part;
            cJSON_ArrayForEach(part, ct) {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
                if (!cJSON_IsString(t)) {
                    ok = fail(r, param, "%s.content parts must be {\"type\":\"text\",\"text\":...}",
                              param);
                    break;
                }
                cap += strlen(t->valuestring);
            }
            if (!ok) break;
            char *s = malloc(cap);
            if (!s) {
                ok = oom(r);
                break;
            }
            cJSON_ArrayForEach(part, ct) {
                const char *t = cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring;
                memcpy(s + len, t, strlen(t));
                len += strlen(t);
            }
            s[len] = 0;
            cJSON_ReplaceItemInObjectCaseSensitive(m, "content", cJSON_CreateString(s));
            free(s);
        } else if (ct && !cJSON_IsString(ct) && !cJSON_IsNull(ct)) {
            ok = fail(r, param, "%s.content must be a string, null or an array of text parts",
                      param);
            break;
        }
        /* OpenAI sends a call's arguments as a JSON string; chat templates (as transformers
           feeds them) expect the object */
        cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls"), *call;
        if (!cJSON_IsArray(calls)) calls = NULL;
        /* an assistant turn that only calls tools has content null; templates test its
           content as a string (Qwen3's fails on null even in transformers): "" */
        if (calls && !ct) cJSON_AddStringToObject(m, "content", "");
        else if (calls && cJSON_IsNull(ct)) cJSON_ReplaceItemInObjectCaseSensitive(m, "content", cJSON_CreateString(""));
        cJSON_ArrayForEach(call, calls) {
            cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
            cJSON *ar = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
            if (!cJSON_IsString(ar)) continue;
            cJSON *obj = cJSON_Parse(ar->valuestring);
            if (obj) cJSON_ReplaceItemInObjectCaseSensitive(fn, "arguments", obj);
        }
        i++;
    }
    char *json = ok ? cJSON_PrintUnformatted(copy) : NULL;
    cJSON_Delete(copy);
    if (!ok) return false;
    char *extra = NULL;
    const cJSON *kw = cJSON_GetObjectItemCaseSensitive(root, "chat_template_kwargs");
    if (kw && !cJSON_IsNull(kw) && !cJSON_IsObject(kw)) {
        free(json);
        return fail(r, "chat_template_kwargs", "'chat_template_kwargs' must be an object");
    }
    const cJSON *tools = NULL;
    const char *prefix = NULL;
    if (!parse_tools(c, r, root, &tools, &prefix)) {
        free(json);
        return false;
    }
    if ((kw && !cJSON_IsNull(kw)) || tools) {
        cJSON *x = kw && cJSON_IsObject(kw) ? cJSON_Duplicate(kw, true) : cJSON_CreateObject();
        if (x && tools) {
            cJSON_DeleteItemFromObjectCaseSensitive(x, "tools");
            cJSON_AddItemToObject(x, "tools", cJSON_Duplicate(tools, true));
        }
        extra = x ? cJSON_PrintUnformatted(x) : NULL;
        cJSON_Delete(x);
        if (!extra) {
            free(json);
            return oom(r);
        }
    }
    char *text = NULL;
    wick_status st = json ? wick_chat_render_json(c->tok, json, true, extra, &text) : WICK_ERR_NOMEM;
    free(json);
    free(extra);
    if (st == WICK_ERR_NOMEM) return oom(r);
    if (st != WICK_OK) {
        if (st == WICK_ERR_NOT_FOUND || st == WICK_ERR_UNSUPPORTED) r->err_code = "template_error";
        return fail(r, "messages", "cannot render the chat template: %s", wick_last_error());
    }
    /* the rendered template already holds BOS and every special token it needs */
    if (prefix) { /* a forced call: the reply starts inside the call's tag */
        size_t tl = strlen(text), pl = strlen(prefix);
        char *t2 = malloc(tl + pl + 1);
        if (!t2) {
            wick_free(text);
            return oom(r);
        }
        memcpy(t2, text, tl);
        memcpy(t2 + tl, prefix, pl + 1);
        ok = tokenize(c, r, t2, false, "messages");
        free(t2);
    } else {
        ok = tokenize(c, r, text, false, "messages");
    }
    wick_free(text);
    return ok;
}

static bool parse_stop(serve_req *r, const cJSON *root) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (!s || cJSON_IsNull(s)) return true;
    if (cJSON_IsString(s)) {
        if (*s->valuestring) r->stops[r->n_stops++] = strdup(s->valuestring);
        return true;
    }
    if (!cJSON_IsArray(s)) return fail(r, "stop", "'stop' must be a string or an array of strings");
    if (cJSON_GetArraySize(s) > SERVE_MAX_STOPS)
        return fail(r, "stop", "'stop' holds more than %d strings", SERVE_MAX_STOPS);
    const cJSON *e;
    cJSON_ArrayForEach(e, s) {
        if (!cJSON_IsString(e)) return fail(r, "stop", "'stop' must hold only strings");
        if (*e->valuestring) r->stops[r->n_stops++] = strdup(e->valuestring);
    }
    return true;
}

static bool parse_bias(const serve_ctx *c, serve_req *r, const cJSON *root) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(root, "logit_bias");
    if (!b || cJSON_IsNull(b)) return true;
    if (!cJSON_IsObject(b)) return fail(r, "logit_bias", "'logit_bias' must be an object");
    int n = cJSON_GetArraySize(b);
    r->bias = calloc((size_t)(n ? n : 1), sizeof *r->bias);
    if (!r->bias) return oom(r);
    const cJSON *e;
    cJSON_ArrayForEach(e, b) {
        char *end = NULL;
        long id = strtol(e->string, &end, 10);
        if (!*e->string || *end || id < 0 || id >= c->n_vocab)
            return fail(r, "logit_bias", "logit_bias key '%s' is not a token id in [0, %d)",
                        e->string, c->n_vocab);
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) || fabs(e->valuedouble) > 100)
            return fail(r, "logit_bias", "logit_bias[%s] must be a number in [-100, 100]",
                        e->string);
        /* -100 is how OpenAI clients ban a token: make it a true ban */
        float v = e->valuedouble <= -100 ? -INFINITY : (float)e->valuedouble;
        r->bias[r->n_bias++] = (wick_logit_bias){(int32_t)id, v};
    }
    return true;
}

static bool parse_sampling(const serve_ctx *c, serve_req *r, const cJSON *root) {
    wick_gen_params *p = &r->p;
    bool has_max = false;
    /* OpenAI defaults: 16 new tokens for completions, up to the context for chat */
    /* (0 inside means no limit; a client asks for that by leaving the field out) */
    p->max_tokens = r->chat ? 0 : 16;
    if (!get_int(r, root, "max_tokens", 1, 1 << 24, &p->max_tokens, &has_max)) return false;
    if (r->chat && !get_int(r, root, "max_completion_tokens", 1, 1 << 24, &p->max_tokens, NULL))
        return false;
    p->temperature = 1.0f; /* OpenAI default; top_k/min_p off unless asked */
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    if (!get_float(r, root, "temperature", 0, 100, &p->temperature) ||
        !get_float(r, root, "top_p", 0, 1, &p->top_p) ||
        !get_int(r, root, "top_k", 0, 1 << 30, &p->top_k, NULL) ||
        !get_float(r, root, "min_p", 0, 1, &p->min_p) ||
        !get_float(r, root, "typical_p", 0, 1, &p->typical_p) ||
        !get_float(r, root, "presence_penalty", -2, 2, &p->presence_penalty) ||
        !get_float(r, root, "frequency_penalty", -2, 2, &p->frequency_penalty) ||
        !get_float(r, root, "repetition_penalty", 0, 100, &p->repetition_penalty) ||
        !get_int(r, root, "min_tokens", 0, 1 << 24, &p->min_tokens, NULL))
        return false;
    if (p->top_p <= 0) return fail(r, "top_p", "'top_p' must be in (0, 1]");
    if (p->typical_p <= 0) return fail(r, "typical_p", "'typical_p' must be in (0, 1]");
    if (p->repetition_penalty <= 0)
        return fail(r, "repetition_penalty", "'repetition_penalty' must be positive");
    double seed = 0;
    bool has_seed = false;
    if (!get_num(r, root, "seed", -9007199254740992.0, 9007199254740992.0, &seed, &has_seed))
        return false;
    int64_t iseed = 0;
    if (has_seed && !json_num_int(cJSON_GetObjectItemCaseSensitive(root, "seed"), INT64_MIN,
                                  INT64_MAX, &iseed))
        return fail(r, "seed", "'seed' must be an integer");
    if (has_seed) {
        p->seed = (uint64_t)iseed;
    } else { /* a fresh seed per request, as OpenAI samples differently each call */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        p->seed = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec;
    }
    bool ignore_eos = false;
    if (!get_bool(r, root, "ignore_eos", &ignore_eos)) return false;
    p->stop_on_eos = !ignore_eos;
    if (r->chat && c->n_chat_eos > 0) { /* the template's end of turn ends a reply */
        p->eos_ids = c->chat_eos;
        p->n_eos_ids = c->n_chat_eos;
    }
    if (!parse_stop(r, root) || !parse_bias(c, r, root)) return false;
    p->stop_strings = (const char *const *)r->stops;
    p->n_stop_strings = r->n_stops;
    p->logit_bias = r->bias;
    p->n_logit_bias = r->n_bias;
    (void)has_max;
    return true;
}

/* response_format: {"type": "text"}, {"type": "json_object"} (any object), or
   {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}. */
static bool parse_response_format(serve_req *r, const cJSON *root) {
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(root, "response_format");
    if (!rf || cJSON_IsNull(rf)) return true;
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rf, "type");
    if (!cJSON_IsObject(rf) || !cJSON_IsString(ty))
        return fail(r, "response_format", "'response_format' must be {\"type\": \"text\" | \"json_object\" | \"json_schema\", ...}");
    if (!strcmp(ty->valuestring, "text")) return true;
    if (!strcmp(ty->valuestring, "json_object")) {
        if (!(r->schema = strdup("{\"type\":\"object\"}"))) return oom(r);
    } else if (!strcmp(ty->valuestring, "json_schema")) {
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(js, "schema");
        if (!cJSON_IsObject(js) || !sc)
            return fail(r, "response_format", "response_format.json_schema.schema is required");
        if (!(r->schema = cJSON_PrintUnformatted(sc))) return oom(r);
        wick_status st = wick_json_schema_check(r->schema);
        if (st == WICK_ERR_NOMEM) return oom(r);
        if (st) return fail(r, "response_format", "response_format.json_schema.schema: %s", wick_last_error());
    } else {
        return fail(r, "response_format", "response_format.type '%.40s' is not one of text, json_object, json_schema",
                    ty->valuestring);
    }
    r->p.json_schema = r->schema;
    return true;
}

static bool parse_logprobs(serve_req *r, const cJSON *root) {
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(root, "logprobs");
    const cJSON *tl = cJSON_GetObjectItemCaseSensitive(root, "top_logprobs");
    if (r->chat && tl && !cJSON_IsNull(tl) && !cJSON_IsTrue(lp))
        return fail(r, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
    if (!lp || cJSON_IsNull(lp)) return true;
    if (r->chat) { /* chat: logprobs is a bool, top_logprobs the number of alternatives */
        if (!get_bool(r, root, "logprobs", &r->logprobs)) return false;
        if (!get_int(r, root, "top_logprobs", 0, 20, &r->p.n_logprobs, NULL)) return false;
        if (!r->logprobs) r->p.n_logprobs = 0;
        return true;
    }
    if (cJSON_IsBool(lp)) {
        r->logprobs = cJSON_IsTrue(lp);
        return true;
    }
    if (!get_int(r, root, "logprobs", 0, 20, &r->p.n_logprobs, NULL)) return false;
    r->logprobs = true;
    return true;
}

static int hex4(const char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        const char ch = p[i];
        const int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                    : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* A copy of the body where every \uD800-\uDFFF escape that is not half of a surrogate pair
   reads \uFFFD (the same length): JavaScript strings cut inside an emoji carry such escapes,
   JSON allows them, and JSON.parse + TextEncoder turn them into U+FFFD; cJSON would refuse
   the body. NULL when out of memory; the body itself when there is nothing to change. */
static char *fix_lone_surrogates(const char *body, size_t len, bool *copied) {
    *copied = false;
    char *out = (char *)body;
    for (size_t i = 0; i + 1 < len; i++) {
        if (body[i] != '\\') continue;
        if (body[i + 1] != 'u' || i + 6 > len) {
            i++; /* an escaped character: skip it (so \\u is not an escape) */
            continue;
        }
        const int v = hex4(body + i + 2);
        if (v < 0xD800 || v > 0xDFFF) {
            i += 5;
            continue;
        }
        if (v <= 0xDBFF && i + 12 <= len && body[i + 6] == '\\' && body[i + 7] == 'u') {
            const int lo = hex4(body + i + 8);
            if (lo >= 0xDC00 && lo <= 0xDFFF) { /* a proper pair */
                i += 11;
                continue;
            }
        }
        if (!*copied) {
            if (!(out = malloc(len + 1))) return NULL;
            memcpy(out, body, len);
            out[len] = 0;
            *copied = true;
        }
        memcpy(out + i + 2, "FFFD", 4);
        i += 5;
    }
    return out;
}

bool serve_req_parse(serve_ctx *c, const char *body, size_t len, bool chat, serve_req *r) {
    memset(r, 0, sizeof *r);
    r->chat = chat;
    r->p = wick_gen_params_default();
    bool copied = false;
    char *fixed = fix_lone_surrogates(body, len, &copied);
    if (!fixed) return oom(r);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(fixed, len, &end, false);
    if (!root) {
        const bool nomem = json_valid(fixed, len) == 0; /* valid JSON cJSON could not build */
        size_t at = end && end >= fixed ? (size_t)(end - fixed) : 0;
        if (copied) free(fixed);
        if (nomem) return oom(r);
        return fail(r, NULL, "the request body is not valid JSON (error near byte %zu)", at);
    }
    size_t tail = end && end >= fixed ? (size_t)(end - fixed) : len;
    while (tail < len && (fixed[tail] == ' ' || fixed[tail] == '\t' || fixed[tail] == '\r' ||
                          fixed[tail] == '\n'))
        tail++;
    if (copied) free(fixed);
    bool ok = false;
    if (tail < len) {
        fail(r, NULL, "the request body has text after its JSON value (at byte %zu)", tail);
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        fail(r, NULL, "the request body must be a JSON object");
        goto out;
    }
    /* "model": the base model's id (or absent) or the name of a loaded adapter */
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (mo && !cJSON_IsNull(mo)) {
        if (!cJSON_IsString(mo)) {
            fail(r, "model", "'model' must be a string");
            goto out;
        }
        if (strcmp(mo->valuestring, c->model_id) != 0 && mo->valuestring[0]) {
            if (strlen(mo->valuestring) >= sizeof r->adapter ||
                !serve_adapter_find(c, mo->valuestring, &r->adapter_scale)) {
                fail(r, "model", "the model '%.100s' does not exist (see /v1/models)",
                     mo->valuestring);
                r->err_status = 404;
                r->err_code = "model_not_found";
                goto out;
            }
            snprintf(r->adapter, sizeof r->adapter, "%s", mo->valuestring);
        }
    }
    int n = 1, best_of = 1;
    bool echo = false;
    if (!get_int(r, root, "n", 1, 1 << 20, &n, NULL) ||
        !get_int(r, root, "best_of", 1, 1 << 20, &best_of, NULL) ||
        !get_bool(r, root, "echo", &echo) || !get_bool(r, root, "stream", &r->stream))
        goto out;
    if (n != 1) {
        fail(r, "n", "only n = 1 is supported");
        goto out;
    }
    if (best_of != 1) {
        fail(r, "best_of", "only best_of = 1 is supported");
        goto out;
    }
    if (echo) {
        fail(r, "echo", "echo is not supported");
        goto out;
    }
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) {
            fail(r, "stream_options", "'stream_options' must be an object");
            goto out;
        }
        if (!get_bool(r, so, "include_usage", &r->include_usage)) goto out;
    }
    if (!parse_sampling(c, r, root) || !parse_logprobs(r, root) || !parse_response_format(r, root)) goto out;
    ok = chat ? parse_messages(c, r, root) : parse_prompt(c, r, root);
out:
    cJSON_Delete(root);
    return ok;
}

void serve_req_free(serve_req *r) {
    free(r->prompt);
    free(r->schema);
    for (int i = 0; i < r->n_stops; i++) free(r->stops[i]);
    free(r->bias);
    memset(r, 0, sizeof *r);
}
