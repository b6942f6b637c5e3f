/* serve_tools.c — tool calls in a chat reply (see server.h): the call formats of the common
 * chat templates, parsed from a whole reply or from the stream of its text.
 *
 *   tagged (Qwen 2.5/3, Hermes): <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>,
 *       possibly several, with text around them;
 *   JSON (Llama 3.1+): the reply is one {"name": ..., "parameters": {...}} object.
 * A forced call (tool_choice required / named) is generated under a JSON Schema after the
 * opening tag (tagged) or from the start (JSON), so the whole reply is the call's object.
 * What looks like a call but does not parse as one stays text. */
#include "server/server.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char k_open[] = "<tool_call>", k_close[] = "</tool_call>";
#define OPEN_LEN (sizeof k_open - 1)
#define CLOSE_LEN (sizeof k_close - 1)

static bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

/* One call's JSON as an OpenAI tool_calls item, or NULL when it is not one. */
static cJSON *call_json(const char *id, const char *s, size_t n, int index) {
    while (n && is_space(*s)) s++, n--;
    while (n && (is_space(s[n - 1]) || s[n - 1] == ';')) n--;
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(s, n, &end, false);
    if (o && end != s + n) { /* text after the object: not (only) a call */
        cJSON_Delete(o);
        return NULL;
    }
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(o, "name");
    const cJSON *ar = cJSON_GetObjectItemCaseSensitive(o, "arguments");
    if (!ar) ar = cJSON_GetObjectItemCaseSensitive(o, "parameters");
    if (!cJSON_IsObject(o) || !cJSON_IsString(nm) || !nm->valuestring[0] ||
        (ar && !cJSON_IsObject(ar) && !cJSON_IsString(ar))) {
        cJSON_Delete(o);
        return NULL;
    }
    char *args = !ar ? strdup("{}") : cJSON_IsString(ar) ? strdup(ar->valuestring) : cJSON_PrintUnformatted(ar);
    cJSON *c = cJSON_CreateObject();
    char cid[96];
    snprintf(cid, sizeof cid, "call_%.60s_%d", id ? id : "", index);
    cJSON_AddNumberToObject(c, "index", index);
    cJSON_AddStringToObject(c, "id", cid);
    cJSON_AddStringToObject(c, "type", "function");
    cJSON *fn = cJSON_AddObjectToObject(c, "function");
    cJSON_AddStringToObject(fn, "name", nm->valuestring);
    cJSON_AddStringToObject(fn, "arguments", args ? args : "{}");
    free(args);
    cJSON_Delete(o);
    return c;
}

static bool whole_reply(int mode, int format) {
    return mode == SERVE_TOOLS_REQUIRED || mode == SERVE_TOOLS_NAMED || format == SERVE_TOOLFMT_JSON;
}

typedef struct obuf { char *p; size_t len, cap; bool oom; } obuf;

static void ob_add(obuf *b, const char *s, size_t n) {
    if (b->oom || !n) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

char *serve_tools_split(int mode, int format, const char *id, const char *text, size_t n, cJSON *calls) {
    obuf out = {0};
    if (whole_reply(mode, format)) {
        size_t k = 0;
        while (k < n && is_space(text[k])) k++;
        cJSON *c = mode != SERVE_TOOLS_AUTO || (k < n && text[k] == '{') ? call_json(id, text, n, 0) : NULL;
        if (c) cJSON_AddItemToArray(calls, c);
        else ob_add(&out, text, n);
    } else {
        const char *p = text, *end = text + n;
        while (p < end) {
            const char *o = memmem(p, (size_t)(end - p), k_open, OPEN_LEN);
            if (!o) break;
            const char *b = o + OPEN_LEN;
            const char *e = memmem(b, (size_t)(end - b), k_close, CLOSE_LEN);
            cJSON *c = call_json(id, b, (size_t)((e ? e : end) - b), cJSON_GetArraySize(calls));
            ob_add(&out, p, (size_t)(o - p));
            if (c) cJSON_AddItemToArray(calls, c);
            else ob_add(&out, o, (size_t)((e ? e + CLOSE_LEN : end) - o)); /* not a call: text */
            p = e ? e + CLOSE_LEN : end;
        }
        ob_add(&out, p, (size_t)(end - p));
    }
    if (out.oom) {
        free(out.p);
        return NULL;
    }
    /* without the blank lines around calls */
    size_t a = 0, e = out.len;
    while (a < e && is_space(out.p[a])) a++;
    while (e > a && is_space(out.p[e - 1])) e--;
    char *r = malloc(e - a + 1);
    if (r) {
        if (e > a) memcpy(r, out.p + a, e - a);
        r[e - a] = 0;
    }
    free(out.p);
    return r;
}

void serve_tools_init(serve_tool_stream *ts, int mode, int format, const char *id) {
    memset(ts, 0, sizeof *ts);
    ts->mode = mode;
    ts->format = format;
    ts->id = id;
}

void serve_tools_free(serve_tool_stream *ts) {
    free(ts->hold);
    ts->hold = NULL;
    ts->len = ts->cap = 0;
}

static bool hold_add(serve_tool_stream *ts, const char *s, size_t n) {
    if (ts->len + n + 1 > ts->cap) {
        size_t cap = ts->cap ? ts->cap : 256;
        while (cap < ts->len + n + 1) cap *= 2;
        char *p = realloc(ts->hold, cap);
        if (!p) return false;
        ts->hold = p, ts->cap = cap;
    }
    if (n) memcpy(ts->hold + ts->len, s, n);
    ts->len += n;
    ts->hold[ts->len] = 0;
    return true;
}

static void hold_drop(serve_tool_stream *ts, size_t k) {
    memmove(ts->hold, ts->hold + k, ts->len - k);
    ts->len -= k;
}

void serve_tools_feed(serve_tool_stream *ts, const char *text, size_t n, bool last,
                      void (*emit_text)(void *, const char *, size_t), void (*emit_call)(void *, cJSON *),
                      void *user) {
    if (ts->passthrough) {
        emit_text(user, text, n);
        return;
    }
    if (!hold_add(ts, text, n)) { /* out of memory: what cannot be held goes out as text */
        emit_text(user, ts->hold, ts->len);
        emit_text(user, text, n);
        ts->len = 0;
        ts->passthrough = true;
        return;
    }
    if (whole_reply(ts->mode, ts->format)) {
        if (ts->mode == SERVE_TOOLS_AUTO) { /* JSON format: a reply not starting with '{' is text */
            size_t k = 0;
            while (k < ts->len && is_space(ts->hold[k])) k++;
            if (k < ts->len && ts->hold[k] != '{') {
                ts->passthrough = true;
                emit_text(user, ts->hold, ts->len);
                ts->len = 0;
                return;
            }
        }
        if (!last) return;
        cJSON *calls = cJSON_CreateArray();
        char *rest = serve_tools_split(ts->mode, ts->format, ts->id, ts->hold, ts->len, calls);
        if (rest && *rest) emit_text(user, rest, strlen(rest));
        while (cJSON_GetArraySize(calls)) {
            emit_call(user, cJSON_DetachItemFromArray(calls, 0));
            ts->n_calls++;
        }
        cJSON_Delete(calls);
        free(rest);
        ts->len = 0;
        return;
    }
    for (;;) {
        if (!ts->in_call) {
            const char *o = ts->len ? memmem(ts->hold, ts->len, k_open, OPEN_LEN) : NULL;
            if (o) {
                emit_text(user, ts->hold, (size_t)(o - ts->hold));
                hold_drop(ts, (size_t)(o - ts->hold) + OPEN_LEN);
                ts->in_call = true;
                continue;
            }
            size_t keep = 0; /* a tail that may be the start of "<tool_call>" waits */
            for (size_t k = OPEN_LEN - 1; !last && k > 0 && !keep; k--)
                if (ts->len >= k && !memcmp(ts->hold + ts->len - k, k_open, k)) keep = k;
            emit_text(user, ts->hold, ts->len - keep);
            hold_drop(ts, ts->len - keep);
            return;
        }
        const char *e = ts->len ? memmem(ts->hold, ts->len, k_close, CLOSE_LEN) : NULL;
        if (!e && !last) return;
        const size_t blen = e ? (size_t)(e - ts->hold) : ts->len, used = blen + (e ? CLOSE_LEN : 0);
        cJSON *c = call_json(ts->id, ts->hold, blen, ts->n_calls);
        if (c) {
            emit_call(user, c);
            ts->n_calls++;
        } else { /* not a call: what was held goes out as text */
            emit_text(user, k_open, OPEN_LEN);
            emit_text(user, ts->hold, used);
        }
        hold_drop(ts, used);
        ts->in_call = false;
        if (!e) return;
    }
}
