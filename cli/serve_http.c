/* serve_http.c — the HTTP side of `wick serve` over libmicrohttpd: routing, request bodies
 * (capped), generation slots, and OpenAI-shaped responses, plain JSON or Server-Sent Events.
 *
 * Threads: libmicrohttpd runs one thread per connection, and a request's generation runs in
 * that thread (the pull API, one wick_gen_step per token). A request takes a free slot (a
 * wick_session on the shared model), waiting up to queue_ms, else it gets 503.
 * Streams produce one SSE event per token from the response's content reader; when the
 * client goes away libmicrohttpd frees the response and the free callback cancels and frees
 * the generation and hands the slot back. Non-streamed requests check the socket for a hang-up
 * every few tokens and cancel the same way.
 * Deliberately not here: batching several sequences in one forward pass (each slot decodes on
 * its own), prompt caching across requests, TLS, authentication. */
#include "cli/serve_http.h"

#ifdef WICK_HAVE_MHD /* defined by the build where the wick tool links libmicrohttpd */
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- small growable buffer --------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static bool sb_add(sbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return true;
}

/* ---- responses ---------------------------------------------------------------------------- */

static enum MHD_Result send_buf(struct MHD_Connection *conn, unsigned status, const char *type,
                                char *body, size_t len) {
    /* MHD_RESPMEM_MUST_FREE hands `body` (malloc'd) to libmicrohttpd */
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return MHD_NO;
    return send_buf(conn, status, "application/json", s, strlen(s));
}

static cJSON *error_json(const char *msg, const char *type, const char *param, const char *code) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type);
    if (param && *param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    if (code) cJSON_AddStringToObject(e, "code", code);
    else cJSON_AddNullToObject(e, "code");
    return root;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status, const char *msg,
                                  const char *param, const char *code) {
    const char *type = status >= 500 ? "server_error" : "invalid_request_error";
    return send_json(conn, status, error_json(msg, type, param, code));
}

/* ---- slots -------------------------------------------------------------------------------- */

/* Takes a free slot, waiting up to queue_ms; -1 when none frees up in time or at shutdown. */
static int slot_acquire(serve_ctx *c) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += c->queue_ms / 1000;
    until.tv_nsec += (long)(c->queue_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    int got = -1;
    for (;;) {
        if (atomic_load(&c->stopping)) break;
        for (int i = 0; i < c->n_slots && got < 0; i++)
            if (!c->slots[i].busy) got = i;
        if (got >= 0 || c->queue_ms <= 0) break;
        if (pthread_cond_timedwait(&c->freed, &c->mu, &until) == ETIMEDOUT) {
            for (int i = 0; i < c->n_slots && got < 0; i++)
                if (!c->slots[i].busy) got = i;
            break;
        }
    }
    if (got >= 0) c->slots[got].busy = true;
    pthread_mutex_unlock(&c->mu);
    return got;
}

static void slot_release(serve_ctx *c, int i) {
    pthread_mutex_lock(&c->mu);
    c->slots[i].busy = false;
    pthread_cond_signal(&c->freed);
    pthread_mutex_unlock(&c->mu);
}

/* ---- one generation ----------------------------------------------------------------------- */

typedef struct job {
    serve_ctx *c;
    serve_req req;
    int slot;                  /* -1 once released */
    wick_gen *gen;             /* NULL once finished */
    int fd;                    /* client socket, for hang-up checks */
    char id[48];
    long long created;
    /* non-streamed: the whole text and logprobs */
    sbuf text;
    cJSON *lp;                 /* completions: {tokens,...}; chat: {content: [...]} */
    /* streamed: pending bytes of SSE events and where the stream is */
    sbuf out;
    size_t out_pos;
    int phase;                 /* 0 before the first event, 1 generating, 2 ended */
    /* filled from the last token */
    wick_finish_reason finish;
    int prompt_tokens, completion_tokens;
} job;

static void job_end_gen(job *j) {
    if (j->gen) {
        wick_gen_cancel(j->gen);
        wick_gen_free(j->gen);
        j->gen = NULL;
    }
    if (j->slot >= 0) {
        slot_release(j->c, j->slot);
        j->slot = -1;
    }
}

static void job_free(job *j) {
    if (!j) return;
    job_end_gen(j);
    serve_req_free(&j->req);
    free(j->text.p);
    free(j->out.p);
    cJSON_Delete(j->lp);
    free(j);
}

/* Text of one token id as OpenAI reports it in logprobs (special tokens included). */
static void token_piece(const wick_tokenizer *tok, int32_t id, char *buf, size_t cap) {
    size_t n = 0;
    if (wick_detokenize(tok, &id, 1, false, buf, cap, &n) != WICK_OK) buf[0] = 0;
}

static cJSON *bytes_json(const char *s) {
    cJSON *a = cJSON_CreateArray();
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(*p));
    return a;
}

/* Appends the logprobs of token t to `lp`, creating it in the shape of the endpoint:
 * completions {tokens, token_logprobs, top_logprobs, text_offset}, chat {content: [...]}. */
static void lp_append(const job *j, cJSON **lp, const wick_token *t, size_t text_offset) {
    if (t->id < 0) return;
    const wick_tokenizer *tok = j->c->tok;
    char piece[512], alt[512];
    token_piece(tok, t->id, piece, sizeof piece);
    if (!*lp) {
        *lp = cJSON_CreateObject();
        if (j->req.chat) {
            cJSON_AddArrayToObject(*lp, "content");
        } else {
            cJSON_AddArrayToObject(*lp, "tokens");
            cJSON_AddArrayToObject(*lp, "token_logprobs");
            cJSON_AddArrayToObject(*lp, "top_logprobs");
            cJSON_AddArrayToObject(*lp, "text_offset");
        }
    }
    if (j->req.chat) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "token", piece);
        cJSON_AddNumberToObject(e, "logprob", t->logprob);
        cJSON_AddItemToObject(e, "bytes", bytes_json(piece));
        cJSON *top = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int i = 0; i < t->n_top; i++) {
            cJSON *a = cJSON_CreateObject();
            token_piece(tok, t->top[i].id, alt, sizeof alt);
            cJSON_AddStringToObject(a, "token", alt);
            cJSON_AddNumberToObject(a, "logprob", t->top[i].logprob);
            cJSON_AddItemToObject(a, "bytes", bytes_json(alt));
            cJSON_AddItemToArray(top, a);
        }
        cJSON_AddItemToArray(cJSON_GetObjectItem(*lp, "content"), e);
        return;
    }
    cJSON_AddItemToArray(cJSON_GetObjectItem(*lp, "tokens"), cJSON_CreateString(piece));
    cJSON_AddItemToArray(cJSON_GetObjectItem(*lp, "token_logprobs"),
                         cJSON_CreateNumber(t->logprob));
    cJSON *top = cJSON_CreateObject();
    for (int i = 0; i < t->n_top; i++) {
        token_piece(tok, t->top[i].id, alt, sizeof alt);
        if (!cJSON_GetObjectItemCaseSensitive(top, alt))
            cJSON_AddNumberToObject(top, alt, t->top[i].logprob);
    }
    cJSON_AddItemToArray(cJSON_GetObjectItem(*lp, "top_logprobs"), top);
    cJSON_AddItemToArray(cJSON_GetObjectItem(*lp, "text_offset"),
                         cJSON_CreateNumber((double)text_offset));
}

static const char *finish_str(wick_finish_reason f) {
    return f == WICK_FINISH_LENGTH ? "length" : "stop";
}

/* True when the peer closed its side of the connection. */
static bool peer_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* One step (cancelled first at shutdown); the last token's finish and counts are recorded.
 * Callers release the slot (job_end_gen) as soon as the last token is out, before the final
 * bytes are sent, so a client that reads [DONE] and sends its next request finds it free. */
static wick_status job_step(job *j, wick_token *t) {
    if (atomic_load(&j->c->stopping)) wick_gen_cancel(j->gen);
    wick_status st = wick_gen_step(j->gen, t);
    if (st == WICK_OK && t->finish != WICK_FINISH_NONE) {
        j->finish = t->finish;
        j->prompt_tokens = t->prompt_tokens;
        j->completion_tokens = t->generated_tokens;
    }
    return st;
}

static cJSON *usage_json(const job *j) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", j->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", j->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", j->prompt_tokens + j->completion_tokens);
    return u;
}

/* The envelope every response and chunk shares. */
static cJSON *envelope(const job *j, const char *object) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", j->id);
    cJSON_AddStringToObject(r, "object", object);
    cJSON_AddNumberToObject(r, "created", (double)j->created);
    cJSON_AddStringToObject(r, "model", j->req.adapter >= 0 ? j->c->adapter_names[j->req.adapter]
                                                           : j->c->model_id);
    return r;
}

/* ---- streamed responses (SSE) ------------------------------------------------------------- */

static void sse_event(job *j, cJSON *ev) {
    char *s = cJSON_PrintUnformatted(ev);
    cJSON_Delete(ev);
    if (!s) return;
    sb_add(&j->out, "data: ", 6);
    sb_add(&j->out, s, strlen(s));
    sb_add(&j->out, "\n\n", 2);
    free(s);
}

/* A chunk carrying `text` (may be empty), logprobs of one token (may be NULL) and a finish
 * reason (NULL while generating); for chat, role_only sends the opening {"role":"assistant"}. */
static void sse_chunk(job *j, const char *text, cJSON *lp, const char *finish, bool role_only) {
    cJSON *ev = envelope(j, j->req.chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(ev, "choices"), *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", 0);
    if (j->req.chat) {
        cJSON *d = cJSON_AddObjectToObject(ch, "delta");
        if (role_only) {
            cJSON_AddStringToObject(d, "role", "assistant");
            cJSON_AddStringToObject(d, "content", "");
        } else if (text) {
            cJSON_AddStringToObject(d, "content", text);
        }
    } else {
        cJSON_AddStringToObject(ch, "text", text ? text : "");
    }
    if (lp) cJSON_AddItemToObject(ch, "logprobs", lp);
    else cJSON_AddNullToObject(ch, "logprobs");
    if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish);
    else cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(choices, ch);
    sse_event(j, ev);
}

/* Appends the next event(s) of the stream to j->out. */
static void stream_produce(job *j) {
    if (j->phase == 0) {
        j->phase = 1;
        if (j->req.chat) {
            sse_chunk(j, NULL, NULL, NULL, true);
            return;
        }
    }
    wick_token t;
    wick_status st = job_step(j, &t);
    if (st == WICK_OK) {
        cJSON *lp = NULL;
        if (j->req.logprobs) lp_append(j, &lp, &t, j->text.len);
        sb_add(&j->text, t.text, t.text_len); /* only for text_offset */
        bool last = t.finish != WICK_FINISH_NONE;
        if (!last) {
            if (t.text_len || lp) sse_chunk(j, t.text, lp, NULL, false);
            return;
        }
        if (j->req.chat) { /* content delta, then an empty delta carrying the finish reason */
            if (t.text_len || lp) sse_chunk(j, t.text, lp, NULL, false);
            sse_chunk(j, NULL, NULL, finish_str(t.finish), false);
        } else {
            sse_chunk(j, t.text, lp, finish_str(t.finish), false);
        }
        job_end_gen(j);
        if (j->req.include_usage) {
            cJSON *ev = envelope(j, j->req.chat ? "chat.completion.chunk" : "text_completion");
            cJSON_AddArrayToObject(ev, "choices");
            cJSON_AddItemToObject(ev, "usage", usage_json(j));
            sse_event(j, ev);
        }
    } else if (st != WICK_DONE) { /* an error mid-stream: report it in-band, then end */
        sse_event(j, error_json(wick_last_error(), "server_error", NULL, NULL));
        job_end_gen(j);
    }
    sb_add(&j->out, "data: [DONE]\n\n", 14);
    j->phase = 2;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    job *j = cls;
    (void)pos;
    while (j->out_pos == j->out.len) {
        j->out.len = j->out_pos = 0;
        if (j->phase == 2) return MHD_CONTENT_READER_END_OF_STREAM;
        stream_produce(j);
    }
    size_t n = j->out.len - j->out_pos;
    if (n > max) n = max;
    memcpy(buf, j->out.p + j->out_pos, n);
    j->out_pos += n;
    return (ssize_t)n;
}

/* Called by libmicrohttpd when the response is done or the client went away. */
static void stream_free(void *cls) { job_free(cls); }

/* ---- non-streamed responses --------------------------------------------------------------- */

static enum MHD_Result run_blocking(struct MHD_Connection *conn, job *j) {
    wick_token t;
    wick_status st;
    int k = 0;
    while ((st = job_step(j, &t)) == WICK_OK) {
        if (j->req.logprobs) lp_append(j, &j->lp, &t, j->text.len);
        if (!sb_add(&j->text, t.text, t.text_len)) {
            job_free(j);
            return send_error(conn, 500, "out of memory", NULL, NULL);
        }
        if (t.finish != WICK_FINISH_NONE) break;
        if (++k % 8 == 0 && peer_gone(j->fd)) wick_gen_cancel(j->gen);
    }
    if (st != WICK_OK && st != WICK_DONE) {
        char msg[400];
        snprintf(msg, sizeof msg, "generation failed: %s", wick_last_error());
        job_free(j);
        return send_error(conn, 500, msg, NULL, NULL);
    }
    job_end_gen(j);
    if (j->finish == WICK_FINISH_CANCELLED && peer_gone(j->fd)) {
        job_free(j);
        return MHD_NO; /* nobody to answer: close the connection */
    }
    cJSON *r = envelope(j, j->req.chat ? "chat.completion" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(r, "choices"), *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", 0);
    if (j->req.chat) {
        cJSON *m = cJSON_AddObjectToObject(ch, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", j->text.p ? j->text.p : "");
    } else {
        cJSON_AddStringToObject(ch, "text", j->text.p ? j->text.p : "");
    }
    if (j->lp) {
        cJSON_AddItemToObject(ch, "logprobs", j->lp);
        j->lp = NULL;
    } else {
        cJSON_AddNullToObject(ch, "logprobs");
    }
    cJSON_AddStringToObject(ch, "finish_reason", finish_str(j->finish));
    cJSON_AddItemToArray(choices, ch);
    cJSON_AddItemToObject(r, "usage", usage_json(j));
    job_free(j);
    return send_json(conn, 200, r);
}

/* ---- endpoints ---------------------------------------------------------------------------- */

static enum MHD_Result handle_generate(serve_ctx *c, struct MHD_Connection *conn,
                                       const char *body, size_t len, bool chat) {
    job *j = calloc(1, sizeof *j);
    if (!j) return send_error(conn, 500, "out of memory", NULL, NULL);
    j->c = c;
    j->slot = -1;
    if (!serve_req_parse(c, body ? body : "", len, chat, &j->req)) {
        enum MHD_Result r = send_error(conn, (unsigned)j->req.err_status, j->req.err_msg,
                                       j->req.err_param, j->req.err_code);
        job_free(j);
        return r;
    }
    snprintf(j->id, sizeof j->id, "%s-%llu", chat ? "chatcmpl" : "cmpl",
             (unsigned long long)atomic_fetch_add(&c->next_id, 1));
    j->created = (long long)time(NULL);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->fd = ci ? ci->connect_fd : -1;
    if ((j->slot = slot_acquire(c)) < 0) {
        job_free(j);
        return send_error(conn, 503, "all generation slots are busy; retry later", NULL,
                          "server_busy");
    }
    wick_session *ses = c->slots[j->slot].session;
    wick_status st = j->req.adapter >= 0
                         ? wick_session_set_adapter(ses, c->adapter_names[j->req.adapter],
                                                    c->adapter_scales[j->req.adapter])
                         : wick_session_set_adapter(ses, NULL, 0);
    if (st == WICK_OK)
        st = wick_gen_start(ses, j->req.prompt, j->req.n_prompt, &j->req.p, &j->gen);
    if (st != WICK_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", wick_last_error());
        job_free(j);
        const char *param = chat ? "messages" : "prompt";
        if (st == WICK_ERR_CONTEXT_FULL)
            return send_error(conn, 400, msg, param, "context_length_exceeded");
        if (st == WICK_ERR_INVALID_ARG) return send_error(conn, 400, msg, NULL, NULL);
        return send_error(conn, 500, msg, NULL, NULL);
    }
    if (!j->req.stream) return run_blocking(conn, j);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, j, stream_free);
    if (!r) {
        job_free(j);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    enum MHD_Result ret = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r); /* frees the job through stream_free when it is done */
    return ret;
}

static enum MHD_Result handle_models(serve_ctx *c, struct MHD_Connection *conn) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(r, "data"), *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", c->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", 0);
    cJSON_AddStringToObject(m, "owned_by", "wick");
    cJSON_AddItemToArray(data, m);
    for (int i = 0; i < c->n_adapters; i++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "id", c->adapter_names[i]);
        cJSON_AddStringToObject(a, "object", "model");
        cJSON_AddNumberToObject(a, "created", 0);
        cJSON_AddStringToObject(a, "owned_by", "wick");
        cJSON_AddStringToObject(a, "parent", c->model_id);
        cJSON_AddStringToObject(a, "type", "lora");
        cJSON_AddItemToArray(data, a);
    }
    return send_json(conn, 200, r);
}

/* Request body collected across libmicrohttpd's upload calls. */
typedef struct body_state {
    sbuf body;
    bool too_big;
} body_state;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **state) {
    serve_ctx *c = cls;
    body_state *b = *state;
    if (!b) { /* first call: headers only */
        if (!(b = calloc(1, sizeof *b))) return MHD_NO;
        *state = b;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > c->max_body) {
            b->too_big = true;
            return send_error(conn, 413, "the request body is too large", NULL, NULL);
        }
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body */
        if (!b->too_big && b->body.len + *upload_size > c->max_body) {
            b->too_big = true;
            free(b->body.p);
            b->body = (sbuf){0};
        }
        if (!b->too_big && !sb_add(&b->body, upload, *upload_size)) return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    if (b->too_big) return send_error(conn, 413, "the request body is too large", NULL, NULL);
    if (c->verbose) fprintf(stderr, "wick serve: %s %s\n", method, url);
    const char *path = url;
    if (!strncmp(path, "/v1/", 4)) path += 3;
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    bool post = !strcmp(method, "POST");
    if (!strcmp(method, "OPTIONS")) { /* CORS preflight */
        struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Content-Type, Authorization");
        enum MHD_Result ret = MHD_queue_response(conn, 204, r);
        MHD_destroy_response(r);
        return ret;
    }
    const char *allow = NULL;
    if (!strcmp(path, "/health")) {
        if (get) {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "status", "ok");
            return send_json(conn, 200, r);
        }
        allow = "GET";
    } else if (!strcmp(path, "/models")) {
        if (get) return handle_models(c, conn);
        allow = "GET";
    } else if (!strcmp(path, "/completions") || !strcmp(path, "/chat/completions")) {
        bool chat = !strcmp(path, "/chat/completions");
        if (post) return handle_generate(c, conn, b->body.p, b->body.len, chat);
        allow = "POST";
    }
    char msg[300];
    if (!allow) {
        snprintf(msg, sizeof msg, "unknown endpoint: %s %.200s", method, url);
        return send_error(conn, 404, msg, NULL, "not_found");
    }
    snprintf(msg, sizeof msg, "%.200s accepts %s only, not %s", url, allow, method);
    cJSON *e = error_json(msg, "invalid_request_error", NULL, "method_not_allowed");
    char *s = cJSON_PrintUnformatted(e);
    cJSON_Delete(e);
    if (!s) return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Allow", allow);
    enum MHD_Result ret = MHD_queue_response(conn, 405, r);
    MHD_destroy_response(r);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **state,
                         enum MHD_RequestTerminationCode code) {
    body_state *b = *state;
    if (b) {
        free(b->body.p);
        free(b);
        *state = NULL;
    }
}

struct MHD_Daemon *serve_http_start(serve_ctx *c, int listen_fd, int max_conns) {
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, c, MHD_OPTION_LISTEN_SOCKET, listen_fd,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, c, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)max_conns, MHD_OPTION_CONNECTION_TIMEOUT, 600u, MHD_OPTION_END);
    if (!d) fprintf(stderr, "wick serve: libmicrohttpd could not start\n");
    return d;
}

void serve_http_stop(serve_ctx *c, struct MHD_Daemon *d) {
    atomic_store(&c->stopping, true);
    pthread_mutex_lock(&c->mu);
    pthread_cond_broadcast(&c->freed);
    pthread_mutex_unlock(&c->mu);
    if (d) MHD_stop_daemon(d);
}

#else /* built without libmicrohttpd: `wick serve` reports it instead of failing to link */
#include <stdio.h>

struct MHD_Daemon *serve_http_start(serve_ctx *c, int listen_fd, int max_conns) {
    (void)c, (void)listen_fd, (void)max_conns;
    fprintf(stderr, "wick serve: this build of wick has no libmicrohttpd\n");
    return NULL;
}

void serve_http_stop(serve_ctx *c, struct MHD_Daemon *d) {
    (void)c, (void)d;
}
#endif
