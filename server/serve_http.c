/* serve_http.c — the HTTP side of `wick serve` over libmicrohttpd: routing, request bodies
 * (capped), jobs, and OpenAI-shaped responses, plain JSON or Server-Sent Events.
 *
 * A generation request becomes a job submitted to the engine; its connection is then
 * suspended (it holds no thread) until the engine's callback has something for it: the
 * first token of a stream (the 200 and the SSE headers go out then), or the whole answer of
 * a non-streamed request. While streaming, the content reader takes what the callback
 * appended and suspends the connection again when it has caught up. A client that stops
 * reading lets its job's output grow to out_bound (--stream-buffer), then the generation is paused (it
 * keeps its KV blocks, takes no compute) and, after stall_ms, cancelled. Requests that find
 * the queue full, or wait in it longer than queue_ms, get 503 with Retry-After.
 *
 * Job lifetime: one reference for the engine side (dropped after the final token), one for
 * the request (dropped when libmicrohttpd completes it) and one for a streaming response
 * object (dropped when libmicrohttpd frees it). Locking: job->mu guards a job's output and
 * flags; suspending happens under it (on a libmicrohttpd thread), resuming after it. */
#include "server/server.h"

#ifdef WICK_HAVE_MHD /* defined by the build where the wick tool links libmicrohttpd */
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- jobs --------------------------------------------------------------------------------- */

enum { CANCEL_NONE, CANCEL_QUEUE, CANCEL_STALLED, CANCEL_GONE, CANCEL_SHUTDOWN };

struct job {
    atomic_int refs;
    serve_ctx *c;
    serve_req req;
    struct MHD_Connection *conn;
    int fd;                    /* client socket, for hang-up checks while suspended */
    uint64_t gen;              /* engine generation id */
    char id[48];
    long long created;
    double t_submit;
    pthread_mutex_t mu;
    /* under mu */
    bool started;              /* first token in: a stream's headers may go out */
    bool done;                 /* the engine side has ended: no more output */
    bool suspended;            /* we suspended the connection */
    bool paused;               /* we paused the generation (client not reading) */
    bool http_gone;            /* the request is over on the HTTP side */
    double t_paused;
    int cancel_reason;
    sbuf out;                  /* stream: SSE bytes not yet sent */
    size_t out_pos;
    unsigned status;           /* non-stream (or failed stream): response ready when != 0 */
    char *body;                /* its JSON, malloc'd */
    /* engine thread only */
    sbuf text;
    cJSON *lp;
    wick_finish_reason finish;
    int prompt_tokens, completion_tokens;
    int seen_tokens;           /* generated tokens seen so far (for the latency histograms) */
    serve_tool_stream ts;      /* tools, streamed (engine thread) */
    double t_last;             /* when the last of them arrived */
    job *next;                 /* serve_ctx.jobs list */
};

static void job_release(job *j) {
    if (atomic_fetch_sub(&j->refs, 1) != 1) return;
    serve_ctx *c = j->c;
    pthread_mutex_lock(&c->jobs_mu);
    for (job **pp = &c->jobs; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    pthread_mutex_unlock(&c->jobs_mu);
    serve_req_free(&j->req);
    free(j->out.p);
    free(j->text.p);
    serve_tools_free(&j->ts);
    free(j->body);
    cJSON_Delete(j->lp);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

/* Takes the "we suspended it" mark (job->mu held): the caller resumes the connection after
 * unlocking, so no libmicrohttpd lock is ever taken under job->mu from the engine's side. A
 * connection we suspended stays alive (libmicrohttpd neither times it out nor closes it)
 * until we resume it, so the unlocked resume is safe. */
static bool take_wake(job *j) {
    const bool w = j->suspended;
    j->suspended = false;
    return w;
}

/* ---- JSON pieces -------------------------------------------------------------------------- */

static cJSON *error_json(const char *msg, const char *type, const char *param, const char *code) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    /* messages echo what the client sent (names, file paths): never invalid UTF-8 in JSON */
    char clean[1024];
    serve_utf8_clean(msg, clean, sizeof clean);
    cJSON_AddStringToObject(e, "message", clean);
    cJSON_AddStringToObject(e, "type", type);
    if (param && *param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    if (code) cJSON_AddStringToObject(e, "code", code);
    else cJSON_AddNullToObject(e, "code");
    return root;
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

/* A JSON string where s is valid UTF-8, else its bytes as an array of numbers. */
static cJSON *text_or_bytes(const char *s) {
    return serve_utf8_valid(s, strlen(s)) ? cJSON_CreateString(s) : bytes_json(s);
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

/* OpenAI knows "stop" and "length"; a cancelled or failed generation ends as "stop". */
static const char *finish_str(wick_finish_reason f) {
    return f == WICK_FINISH_LENGTH ? "length" : "stop";
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
    cJSON_AddStringToObject(r, "model", j->req.adapter[0] ? j->req.adapter : j->c->model_id);
    return r;
}

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

/* A finished JSON response for the job (job->mu held). */
static void set_response(job *j, unsigned status, cJSON *json) {
    free(j->body);
    j->body = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    j->status = j->body ? status : 500;
}

static void set_error(job *j, unsigned status, const char *msg, const char *code) {
    set_response(j, status, error_json(msg, status >= 500 ? "server_error" : "invalid_request_error",
                                       NULL, code));
}

/* ---- tool calls (serve_tools.c parses; these send) ------------------------------------------ */

/* A chunk whose delta carries one tool call (taken over). */
static void sse_tool_call(void *u, cJSON *call) {
    job *j = u;
    cJSON *ev = envelope(j, "chat.completion.chunk");
    cJSON *choices = cJSON_AddArrayToObject(ev, "choices"), *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", 0);
    cJSON *d = cJSON_AddObjectToObject(ch, "delta"), *arr = cJSON_AddArrayToObject(d, "tool_calls");
    cJSON_AddItemToArray(arr, call);
    cJSON_AddNullToObject(ch, "logprobs");
    cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(choices, ch);
    sse_event(j, ev);
}

static void sse_text(void *u, const char *p, size_t n) {
    job *j = u;
    if (!n) return;
    char *t = malloc(n + 1);
    if (!t) return;
    memcpy(t, p, n);
    t[n] = 0;
    sse_chunk(j, t, NULL, NULL, false);
    free(t);
}

/* ---- the engine's callback (driver thread) ------------------------------------------------ */

static void on_final_nonstream(job *j, const wick_token *t) {
    cJSON *r = envelope(j, j->req.chat ? "chat.completion" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(r, "choices"), *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", 0);
    bool called = false;
    if (j->req.chat && j->req.tool_mode != SERVE_TOOLS_NONE) {
        cJSON *m = cJSON_AddObjectToObject(ch, "message"), *calls = cJSON_CreateArray();
        char *content = serve_tools_split(j->req.tool_mode, j->req.tool_format, j->id,
                                          j->text.p ? j->text.p : "", j->text.len, calls);
        cJSON_AddStringToObject(m, "role", "assistant");
        called = cJSON_GetArraySize(calls) > 0;
        if (content && *content) cJSON_AddStringToObject(m, "content", content);
        else if (called) cJSON_AddNullToObject(m, "content");
        else cJSON_AddStringToObject(m, "content", "");
        if (called) cJSON_AddItemToObject(m, "tool_calls", calls);
        else cJSON_Delete(calls);
        free(content);
    } else if (j->req.chat) {
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
    cJSON_AddStringToObject(ch, "finish_reason", called ? "tool_calls" : finish_str(t->finish));
    cJSON_AddItemToArray(choices, ch);
    cJSON_AddItemToObject(r, "usage", usage_json(j));
    set_response(j, 200, r);
}

static bool on_token(const wick_token *t, void *user) {
    job *j = user;
    serve_ctx *c = j->c;
    const bool last = t->finish != WICK_FINISH_NONE;
    if (t->generated_tokens > j->seen_tokens) {
        const double tn = now_ms();
        if (j->seen_tokens == 0) serve_hist_add(&c->metrics.ttft, tn - j->t_submit);
        else serve_hist_add(&c->metrics.itl, tn - j->t_last);
        j->seen_tokens = t->generated_tokens;
        j->t_last = tn;
    }
    if (last) {
        j->finish = t->finish;
        j->prompt_tokens = t->prompt_tokens;
        j->completion_tokens = t->generated_tokens;
        atomic_fetch_add_explicit(&c->metrics.prompt_tokens, (uint_fast64_t)t->prompt_tokens,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&c->metrics.completion_tokens,
                                  (uint_fast64_t)t->generated_tokens, memory_order_relaxed);
    }
    pthread_mutex_lock(&j->mu);
    if (j->http_gone) { /* nobody to answer: drop the generation */
        j->done = true;
        pthread_mutex_unlock(&j->mu);
        atomic_fetch_sub(&c->inflight, 1);
        job_release(j);
        return false;
    }
    if (last && !j->started && t->generated_tokens == 0 && j->cancel_reason == CANCEL_QUEUE) {
        set_error(j, 503, "the server is busy: the request waited too long in the queue; retry "
                          "later", "server_busy");
    } else if (last && t->finish == WICK_FINISH_ERROR && (!j->started || !j->req.stream)) {
        set_error(j, 500, t->error ? t->error : "generation failed", NULL);
    } else if (!j->req.stream) {
        if (j->req.logprobs) lp_append(j, &j->lp, t, j->text.len);
        sb_add(&j->text, t->text, t->text_len);
        if (last) on_final_nonstream(j, t);
    } else {
        if (!j->started && j->req.chat) sse_chunk(j, NULL, NULL, NULL, true);
        cJSON *lp = NULL;
        if (j->req.logprobs) lp_append(j, &lp, t, j->text.len);
        j->text.len += t->text_len; /* only the offset is needed for text_offset */
        const bool tools = j->req.chat && j->req.tool_mode != SERVE_TOOLS_NONE;
        if (!last) {
            if (tools) {
                if (lp) sse_chunk(j, "", lp, NULL, false); /* logprobs ride on empty deltas */
                serve_tools_feed(&j->ts, t->text, t->text_len, false, sse_text, sse_tool_call, j);
            } else if (t->text_len || lp) {
                sse_chunk(j, t->text, lp, NULL, false);
            }
        } else {
            if (t->finish == WICK_FINISH_ERROR)
                sse_event(j, error_json(t->error ? t->error : "generation failed",
                                        "server_error", NULL, NULL));
            if (tools) {
                if (lp) sse_chunk(j, "", lp, NULL, false);
                serve_tools_feed(&j->ts, t->text, t->text_len, true, sse_text, sse_tool_call, j);
                sse_chunk(j, NULL, NULL, j->ts.n_calls ? "tool_calls" : finish_str(t->finish), false);
            } else if (j->req.chat) { /* content delta, then an empty delta with the finish reason */
                if (t->text_len || lp) sse_chunk(j, t->text, lp, NULL, false);
                sse_chunk(j, NULL, NULL, finish_str(t->finish), false);
            } else {
                sse_chunk(j, t->text, lp, finish_str(t->finish), false);
            }
            if (j->req.include_usage) {
                cJSON *ev = envelope(j, j->req.chat ? "chat.completion.chunk" : "text_completion");
                cJSON_AddArrayToObject(ev, "choices");
                cJSON_AddItemToObject(ev, "usage", usage_json(j));
                sse_event(j, ev);
            }
            sb_add(&j->out, "data: [DONE]\n\n", 14);
        }
        /* a client that reads nothing: stop computing for it once its backlog is large */
        if (!last && !j->paused && j->out.len - j->out_pos > c->out_bound) {
            j->paused = true;
            j->t_paused = now_ms();
            wick_engine_pause(c->eng, j->gen);
        }
    }
    j->started = true;
    if (last) j->done = true;
    struct MHD_Connection *conn = take_wake(j) ? j->conn : NULL;
    pthread_mutex_unlock(&j->mu);
    /* the slot is free before the last chunk can reach the client: a client that sends its
       next request as soon as it reads [DONE] must not find the slot still counted (with
       --queue 0 that was a 503) */
    if (last) atomic_fetch_sub(&c->inflight, 1);
    if (conn) MHD_resume_connection(conn);
    if (last) job_release(j);
    return true;
}

/* ---- sweeps (driver thread) --------------------------------------------------------------- */

/* True when the peer closed its side of the connection. */
static bool peer_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

void serve_sweep(serve_ctx *c) {
    const double t = now_ms();
    pthread_mutex_lock(&c->jobs_mu);
    for (job *j = c->jobs; j; j = j->next) {
        pthread_mutex_lock(&j->mu);
        int why = CANCEL_NONE;
        if (!j->done && !j->cancel_reason) {
            if (!j->started && c->queue_ms > 0 && t - j->t_submit > c->queue_ms) why = CANCEL_QUEUE;
            else if (j->paused && t - j->t_paused > c->stall_ms) why = CANCEL_STALLED;
            else if (j->suspended && !j->req.stream && peer_gone(j->fd)) why = CANCEL_GONE;
        }
        if (why) j->cancel_reason = why;
        pthread_mutex_unlock(&j->mu);
        if (why) wick_engine_cancel(c->eng, j->gen);
    }
    pthread_mutex_unlock(&c->jobs_mu);
}

void serve_cancel_all(serve_ctx *c) {
    pthread_mutex_lock(&c->jobs_mu);
    for (job *j = c->jobs; j; j = j->next) {
        pthread_mutex_lock(&j->mu);
        const bool live = !j->done;
        if (live && !j->cancel_reason) j->cancel_reason = CANCEL_SHUTDOWN;
        pthread_mutex_unlock(&j->mu);
        if (live) wick_engine_cancel(c->eng, j->gen);
    }
    pthread_mutex_unlock(&c->jobs_mu);
}

/* ---- responses ---------------------------------------------------------------------------- */

/* Per request state; the libmicrohttpd thread handling a request points tl_req at it so that
   every response queued records its status (for /metrics and the request log). */
typedef struct body_state {
    sbuf body;
    bool too_big;
    job *j;                    /* the request's job (one reference) once submitted */
    int route;                 /* SR_* */
    unsigned status;           /* status of the response queued (0 before) */
    double t0;
    char method[8];
    char path[96];
} body_state;

static __thread body_state *tl_req;

static enum MHD_Result queue(struct MHD_Connection *conn, unsigned status, struct MHD_Response *r) {
    if (tl_req) tl_req->status = status;
    return MHD_queue_response(conn, status, r);
}

static enum MHD_Result send_buf(struct MHD_Connection *conn, unsigned status, const char *type,
                                char *body, size_t len, const char *retry_after) {
    /* MHD_RESPMEM_MUST_FREE hands `body` (malloc'd) to libmicrohttpd */
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result ret = queue(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, cJSON *j) {
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return MHD_NO;
    return send_buf(conn, status, "application/json", s, strlen(s),
                    status == 503 || status == 429 ? "1" : NULL);
}

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status, const char *msg,
                                  const char *param, const char *code) {
    const char *type = status >= 500 ? "server_error" : "invalid_request_error";
    return send_json(conn, status, error_json(msg, type, param, code));
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    job *j = cls;
    (void)pos;
    pthread_mutex_lock(&j->mu);
    ssize_t n;
    if (j->out_pos < j->out.len) {
        size_t k = j->out.len - j->out_pos;
        if (k > max) k = max;
        memcpy(buf, j->out.p + j->out_pos, k);
        j->out_pos += k;
        if (j->out_pos == j->out.len) j->out.len = j->out_pos = 0;
        /* the client reads again: let its generation go on */
        if (j->paused && j->out.len - j->out_pos < j->c->out_bound / 2) {
            j->paused = false;
            wick_engine_resume(j->c->eng, j->gen);
        }
        n = (ssize_t)k;
    } else if (j->done) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else { /* nothing yet: sleep until the engine's callback wakes us */
        j->suspended = true;
        MHD_suspend_connection(j->conn);
        n = 0;
    }
    pthread_mutex_unlock(&j->mu);
    return n;
}

static void stream_free(void *cls) { job_release(cls); }

/* ---- generation requests ------------------------------------------------------------------ */

/* Request state kept across libmicrohttpd's calls for one request. */
static enum MHD_Result start_generation(serve_ctx *c, struct MHD_Connection *conn,
                                        body_state *b, bool chat) {
    if (!c->eng)
        return send_error(conn, 400, "this server serves an embedding model only: use "
                                     "/v1/embeddings", "model", "model_not_found");
    if (atomic_load(&c->draining))
        return send_error(conn, 503, "the server is shutting down", NULL, "server_shutting_down");
    job *j = calloc(1, sizeof *j);
    if (!j) return send_error(conn, 500, "out of memory", NULL, NULL);
    j->c = c;
    pthread_mutex_init(&j->mu, NULL);
    if (!serve_req_parse(c, b->body.p ? b->body.p : "", b->body.len, chat, &j->req)) {
        enum MHD_Result r = send_error(conn, (unsigned)j->req.err_status, j->req.err_msg,
                                       j->req.err_param, j->req.err_code);
        atomic_store(&j->refs, 1);
        job_release(j);
        return r;
    }
    /* capacity: running generations plus the queue */
    if (atomic_fetch_add(&c->inflight, 1) >= c->parallel + c->queue) {
        atomic_fetch_sub(&c->inflight, 1);
        atomic_store(&j->refs, 1);
        job_release(j);
        return send_error(conn, 503, "the server is busy: every generation slot and the queue "
                                     "are taken; retry later", NULL, "server_busy");
    }
    serve_tools_init(&j->ts, j->req.tool_mode, j->req.tool_format, j->id);
    snprintf(j->id, sizeof j->id, "%s-%llx-%llu", chat ? "chatcmpl" : "cmpl",
             (unsigned long long)c->id_base,
             (unsigned long long)atomic_fetch_add(&c->next_id, 1));
    j->created = (long long)time(NULL);
    j->t_submit = now_ms();
    j->conn = conn;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->fd = ci ? ci->connect_fd : -1;
    atomic_store(&j->refs, 2); /* the engine side and the request */
    wick_request rq = {.prompt = j->req.prompt, .n_prompt = j->req.n_prompt, .params = &j->req.p,
                       .adapter = j->req.adapter[0] ? j->req.adapter : NULL,
                       .adapter_scale = j->req.adapter_scale,
                       .on_token = on_token, .user = j};
    b->j = j;
    pthread_mutex_lock(&j->mu); /* the callback may run before we suspend */
    wick_status st = wick_engine_submit(c->eng, &rq, &j->gen);
    if (st != WICK_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", wick_last_error());
        j->done = true;
        pthread_mutex_unlock(&j->mu);
        atomic_fetch_sub(&c->inflight, 1);
        job_release(j); /* the engine side that never was */
        const char *param = chat ? "messages" : "prompt";
        if (st == WICK_ERR_CONTEXT_FULL)
            return send_error(conn, 400, msg, param, "context_length_exceeded");
        if (st == WICK_ERR_INVALID_ARG) return send_error(conn, 400, msg, NULL, NULL);
        if (st == WICK_ERR_BUSY) return send_error(conn, 503, msg, NULL, "server_busy");
        if (st == WICK_ERR_UNSUPPORTED || st == WICK_ERR_FORMAT) /* e.g. structured output on a tokenizer it cannot use */
            return send_error(conn, 400, msg, j->req.schema ? (j->req.tool_mode ? "tools" : "response_format") : NULL, NULL);
        /* unloaded between parsing and submission */
        if (st == WICK_ERR_NOT_FOUND) return send_error(conn, 404, msg, "model", "model_not_found");
        return send_error(conn, 500, msg, NULL, NULL);
    }
    j->suspended = true;
    MHD_suspend_connection(conn);
    pthread_mutex_unlock(&j->mu);
    /* on the sweep's list only now: the submission above may take long the first time
       (structured output builds its token table) and the sweep locks every listed job; the
       request's reference keeps the job alive even if it already finished */
    pthread_mutex_lock(&c->jobs_mu);
    j->next = c->jobs;
    c->jobs = j;
    pthread_mutex_unlock(&c->jobs_mu);
    return MHD_YES;
}

/* Called again for a submitted request once its connection was resumed. */
static enum MHD_Result continue_generation(struct MHD_Connection *conn, job *j) {
    pthread_mutex_lock(&j->mu);
    if (j->status) { /* a whole answer (or an error before any token) */
        const unsigned st = j->status;
        char *body = j->body;
        j->body = NULL;
        j->status = 0;
        pthread_mutex_unlock(&j->mu);
        if (!body) return MHD_NO;
        return send_buf(conn, st, "application/json", body, strlen(body),
                        st == 503 ? "1" : NULL);
    }
    if (j->req.stream && j->started) {
        pthread_mutex_unlock(&j->mu);
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, j, stream_free);
        if (!r) return MHD_NO;
        atomic_fetch_add(&j->refs, 1); /* the response's */
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
        enum MHD_Result ret = queue(conn, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    /* woken with nothing to send yet: wait again */
    j->suspended = true;
    MHD_suspend_connection(conn);
    pthread_mutex_unlock(&j->mu);
    return MHD_YES;
}

/* ---- other endpoints ---------------------------------------------------------------------- */

static cJSON *model_json(serve_ctx *c, int i) { /* i < 0: the base model; adapters_mu held */
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", i < 0 ? c->model_id : c->adapter_names[i]);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)(i < 0 ? c->id_base : c->adapter_created[i]));
    cJSON_AddStringToObject(m, "owned_by", "wick");
    if (i >= 0) {
        cJSON_AddStringToObject(m, "parent", c->model_id);
        cJSON_AddStringToObject(m, "type", "lora");
        cJSON_AddNumberToObject(m, "scale", c->adapter_scales[i]);
        if (c->adapter_paths[i]) cJSON_AddStringToObject(m, "path", c->adapter_paths[i]);
    }
    return m;
}

static enum MHD_Result handle_models(serve_ctx *c, struct MHD_Connection *conn, bool lora_only) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(r, "data");
    pthread_mutex_lock(&c->adapters_mu);
    for (int i = lora_only ? 0 : -1; i < c->n_adapters; i++)
        if (i < 0 || c->adapter_paths[i]) cJSON_AddItemToArray(data, model_json(c, i)); /* not while loading */
    pthread_mutex_unlock(&c->adapters_mu);
    if (!lora_only && c->emb && strcmp(c->emb_id, c->model_id) != 0) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", c->emb_id);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", (double)c->id_base);
        cJSON_AddStringToObject(m, "owned_by", "wick");
        cJSON_AddStringToObject(m, "type", "embedding");
        cJSON_AddItemToArray(data, m);
    }
    return send_json(conn, 200, r);
}

/* GET /v1/models/{id}: ids may contain '/' (folder-style model ids), so the rest of the path
   is the id. */
static enum MHD_Result handle_model(serve_ctx *c, struct MHD_Connection *conn, const char *id) {
    cJSON *m = NULL;
    pthread_mutex_lock(&c->adapters_mu);
    if (!strcmp(id, c->model_id)) m = model_json(c, -1);
    else if (c->emb && !strcmp(id, c->emb_id)) {
        m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", c->emb_id);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", (double)c->id_base);
        cJSON_AddStringToObject(m, "owned_by", "wick");
        cJSON_AddStringToObject(m, "type", "embedding");
    }
    for (int i = 0; !m && i < c->n_adapters; i++)
        if (c->adapter_paths[i] && !strcmp(id, c->adapter_names[i])) m = model_json(c, i);
    pthread_mutex_unlock(&c->adapters_mu);
    if (m) return send_json(conn, 200, m);
    char msg[200];
    snprintf(msg, sizeof msg, "the model '%.100s' does not exist (see /v1/models)", id);
    return send_error(conn, 404, msg, "model", "model_not_found");
}

static enum MHD_Result handle_health(serve_ctx *c, struct MHD_Connection *conn) {
    wick_engine_stats st;
    memset(&st, 0, sizeof st);
    if (c->eng) wick_engine_get_stats(c->eng, &st);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "status", atomic_load(&c->draining) ? "draining" : "ok");
    cJSON_AddNumberToObject(r, "running", st.running);
    cJSON_AddNumberToObject(r, "waiting", st.waiting);
    cJSON_AddNumberToObject(r, "kv_blocks_used", st.kv_used);
    cJSON_AddNumberToObject(r, "kv_blocks_total", st.kv_blocks);
    return send_json(conn, 200, r);
}

/* A JSON object body, or an error response already queued (*ret set) and NULL. */
static cJSON *parse_object(struct MHD_Connection *conn, const body_state *b, enum MHD_Result *ret) {
    const char *end = NULL;
    cJSON *root = b->body.p ? cJSON_ParseWithLengthOpts(b->body.p, b->body.len, &end, false) : NULL;
    if (root && end && (size_t)(end - b->body.p) < b->body.len) { /* only spaces may follow */
        for (const char *q = end; q < b->body.p + b->body.len; q++)
            if (*q != ' ' && *q != '\t' && *q != '\r' && *q != '\n') {
                cJSON_Delete(root);
                root = NULL;
                break;
            }
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        *ret = send_error(conn, 400, "the request body must be one JSON object", NULL, NULL);
        return NULL;
    }
    return root;
}

/* POST /v1/adapters {"name", "path", "scale"}: loads a PEFT folder or GGUF LoRA file. */
static enum MHD_Result handle_adapter_post(serve_ctx *c, struct MHD_Connection *conn, body_state *b) {
    enum MHD_Result ret;
    cJSON *root = parse_object(conn, b, &ret);
    if (!root) return ret;
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(root, "name");
    const cJSON *pa = cJSON_GetObjectItemCaseSensitive(root, "path");
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(root, "scale");
    char msg[600];
    if (!cJSON_IsString(pa) || !pa->valuestring[0]) {
        cJSON_Delete(root);
        return send_error(conn, 400, "'path' (a PEFT adapter folder or a GGUF LoRA file on the "
                                     "server's disk) is required", "path", NULL);
    }
    if (nm && !cJSON_IsString(nm)) {
        cJSON_Delete(root);
        return send_error(conn, 400, "'name' must be a string", "name", NULL);
    }
    if (sc && !cJSON_IsNull(sc) && !cJSON_IsNumber(sc)) {
        cJSON_Delete(root);
        return send_error(conn, 400, "'scale' must be a number", "scale", NULL);
    }
    char name[SERVE_NAME_MAX];
    if (nm) {
        snprintf(name, sizeof name, "%s", nm->valuestring);
        if (strlen(nm->valuestring) >= sizeof name) name[0] = 0; /* refused below */
    } else { /* the folder's (or file's) name, as --adapter does */
        const char *p = pa->valuestring, *e = p + strlen(p);
        while (e > p && e[-1] == '/') e--;
        const char *s0 = e;
        while (s0 > p && s0[-1] != '/') s0--;
        size_t n = (size_t)(e - s0);
        if (n > 5 && !strncmp(e - 5, ".gguf", 5)) n -= 5;
        snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : 0), s0);
    }
    const float scale = sc && cJSON_IsNumber(sc) ? (float)sc->valuedouble : 1.0f;
    const unsigned st = serve_adapter_add(c, name, pa->valuestring, scale, msg, sizeof msg);
    if (st == 200 && c->log_requests)
        fprintf(stderr, "wick serve: adapter '%s' loaded from %s\n", name, pa->valuestring);
    cJSON_Delete(root);
    if (st != 200)
        return send_error(conn, st, msg, st == 400 && !strstr(msg, "cannot load") ? "name" : "path",
                          st == 409 ? "adapter_exists" : NULL);
    pthread_mutex_lock(&c->adapters_mu);
    cJSON *m = NULL;
    for (int i = 0; i < c->n_adapters && !m; i++)
        if (!strcmp(c->adapter_names[i], name)) m = model_json(c, i);
    pthread_mutex_unlock(&c->adapters_mu);
    if (!m) m = cJSON_CreateObject(); /* unloaded again meanwhile */
    return send_json(conn, 200, m);
}

static enum MHD_Result handle_adapter_delete(serve_ctx *c, struct MHD_Connection *conn, const char *name) {
    char msg[300];
    const unsigned st = serve_adapter_remove(c, name, msg, sizeof msg);
    if (st != 200) return send_error(conn, st, msg, "model", "model_not_found");
    if (c->log_requests) fprintf(stderr, "wick serve: adapter '%s' unloaded\n", name);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", name);
    cJSON_AddStringToObject(r, "object", "model");
    cJSON_AddBoolToObject(r, "deleted", true);
    return send_json(conn, 200, r);
}

/* POST /tokenize {"content", "add_special", "with_pieces"} → {"tokens": [...]} (llama-server's
   shape; with_pieces gives [{"id", "piece"}]). */
static enum MHD_Result handle_tokenize(serve_ctx *c, struct MHD_Connection *conn, body_state *b) {
    enum MHD_Result ret;
    cJSON *root = parse_object(conn, b, &ret);
    if (!root) return ret;
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(root, "content");
    const cJSON *as = cJSON_GetObjectItemCaseSensitive(root, "add_special");
    const cJSON *wp = cJSON_GetObjectItemCaseSensitive(root, "with_pieces");
    if (!cJSON_IsString(ct) || (as && !cJSON_IsBool(as)) || (wp && !cJSON_IsBool(wp))) {
        cJSON_Delete(root);
        return send_error(conn, 400, "expected {\"content\": string, \"add_special\": bool, "
                                     "\"with_pieces\": bool}", "content", NULL);
    }
    const size_t len = strlen(ct->valuestring);
    const int32_t cap = len + 8 < (size_t)INT32_MAX ? (int32_t)len + 8 : INT32_MAX;
    int32_t *ids = malloc(sizeof *ids * (size_t)cap);
    int32_t n = ids ? wick_tokenize(c->tok, ct->valuestring, len, cJSON_IsTrue(as), ids, cap) : INT32_MIN;
    if (n < 0) {
        free(ids);
        cJSON_Delete(root);
        char msg[300];
        snprintf(msg, sizeof msg, "cannot tokenize: %s", ids ? wick_last_error() : "out of memory");
        return send_error(conn, 400, msg, "content", NULL);
    }
    cJSON *r = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(r, "tokens");
    for (int32_t i = 0; i < n; i++) {
        if (cJSON_IsTrue(wp)) {
            char piece[256];
            token_piece(c->tok, ids[i], piece, sizeof piece);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "id", ids[i]);
            cJSON_AddItemToObject(o, "piece", text_or_bytes(piece));
            cJSON_AddItemToArray(arr, o);
        } else {
            cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i]));
        }
    }
    free(ids);
    cJSON_Delete(root);
    return send_json(conn, 200, r);
}

/* POST /detokenize {"tokens": [...]} → {"content": text}. */
static enum MHD_Result handle_detokenize(serve_ctx *c, struct MHD_Connection *conn, body_state *b) {
    enum MHD_Result ret;
    cJSON *root = parse_object(conn, b, &ret);
    if (!root) return ret;
    const cJSON *tk = cJSON_GetObjectItemCaseSensitive(root, "tokens");
    const int n = cJSON_IsArray(tk) ? cJSON_GetArraySize(tk) : -1;
    int32_t *ids = n > 0 ? malloc(sizeof *ids * (size_t)n) : NULL;
    char msg[200] = "";
    if (n < 0) snprintf(msg, sizeof msg, "expected {\"tokens\": [ids]}");
    else if (n > 0 && !ids) snprintf(msg, sizeof msg, "out of memory");
    int k = 0;
    for (const cJSON *e = tk ? tk->child : NULL; !msg[0] && e; e = e->next, k++) {
        if (!cJSON_IsNumber(e) || e->valuedouble != (double)(int64_t)e->valuedouble ||
            e->valuedouble < 0 || e->valuedouble >= c->n_vocab)
            snprintf(msg, sizeof msg, "tokens[%d] is not a token id in [0, %d)", k, c->n_vocab);
        else ids[k] = (int32_t)e->valuedouble;
    }
    cJSON_Delete(root);
    if (msg[0]) {
        free(ids);
        return send_error(conn, 400, msg, "tokens", NULL);
    }
    size_t cap = 64 + (size_t)n * 16, len = 0;
    char *text = malloc(cap);
    wick_status st = text ? wick_detokenize(c->tok, ids, (size_t)n, false, text, cap, &len) : WICK_ERR_NOMEM;
    if (st == WICK_ERR_BUFFER_TOO_SMALL) { /* len is the size needed */
        free(text);
        cap = len + 1;
        text = malloc(cap);
        st = text ? wick_detokenize(c->tok, ids, (size_t)n, false, text, cap, &len) : WICK_ERR_NOMEM;
    }
    free(ids);
    if (st != WICK_OK) {
        free(text);
        return send_error(conn, 400, st == WICK_ERR_NOMEM ? "out of memory" : wick_last_error(), "tokens", NULL);
    }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddItemToObject(r, "content", text_or_bytes(text));
    free(text);
    return send_json(conn, 200, r);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 (with padding) of n bytes, malloc'd. */
static char *base64(const unsigned char *p, size_t n) {
    char *o = malloc((n + 2) / 3 * 4 + 1), *q = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        const unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                           (i + 2 < n ? p[i + 2] : 0);
        *q++ = b64[v >> 18 & 63];
        *q++ = b64[v >> 12 & 63];
        *q++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
        *q++ = i + 2 < n ? b64[v & 63] : '=';
    }
    *q = 0;
    return o;
}

/* POST /v1/embeddings {"input": string | [string], "model", "encoding_format": "float" |
   "base64", "dimensions"}: OpenAI's shape. base64 is the little-endian float32 array, which
   the official SDKs request by default. dimensions cuts each vector to its first N values
   and normalises again where the model normalises (Matryoshka-trained models). */
static enum MHD_Result handle_embeddings(serve_ctx *c, struct MHD_Connection *conn, body_state *b) {
    if (!c->emb)
        return send_error(conn, 404, "this server has no embedding model (start it with "
                                     "--embedding-model DIR, or -m an encoder folder)", "model",
                          "model_not_found");
    enum MHD_Result ret;
    cJSON *root = parse_object(conn, b, &ret);
    if (!root) return ret;
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(root, "input");
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *ef = cJSON_GetObjectItemCaseSensitive(root, "encoding_format");
    const cJSON *dm = cJSON_GetObjectItemCaseSensitive(root, "dimensions");
    const int dim = wick_embedder_dim(c->emb);
    char msg[300] = "", param[32] = "input";
    int n = 0, out_dim = dim;
    bool b64out = false;
    const char **texts = NULL;
    if (mo && !cJSON_IsNull(mo) && (!cJSON_IsString(mo) || (strcmp(mo->valuestring, c->emb_id) != 0))) {
        snprintf(msg, sizeof msg, "the embedding model is '%.100s'", c->emb_id);
        snprintf(param, sizeof param, "model");
    } else if (ef && !cJSON_IsNull(ef) && (!cJSON_IsString(ef) || (strcmp(ef->valuestring, "float") != 0 &&
                                                                  strcmp(ef->valuestring, "base64") != 0))) {
        snprintf(msg, sizeof msg, "'encoding_format' must be \"float\" or \"base64\"");
        snprintf(param, sizeof param, "encoding_format");
    } else if (dm && !cJSON_IsNull(dm) && (!cJSON_IsNumber(dm) || dm->valuedouble != (double)(int)dm->valuedouble ||
                                           dm->valuedouble < 1 || dm->valuedouble > dim)) {
        snprintf(msg, sizeof msg, "'dimensions' must be an integer in [1, %d]", dim);
        snprintf(param, sizeof param, "dimensions");
    } else if (cJSON_IsString(in)) {
        n = 1;
    } else if (cJSON_IsArray(in)) {
        n = cJSON_GetArraySize(in);
        if (n == 0 || n > 2048) snprintf(msg, sizeof msg, "'input' must hold 1 to 2048 texts");
        int k = 0;
        for (const cJSON *e = in->child; !msg[0] && e; e = e->next, k++)
            if (!cJSON_IsString(e))
                snprintf(msg, sizeof msg, "input[%d] is not a string (token-id input is not "
                                          "supported: send text)", k);
    } else {
        snprintf(msg, sizeof msg, "'input' must be a string or an array of strings");
    }
    if (!msg[0]) {
        b64out = cJSON_IsString(ef) && !strcmp(ef->valuestring, "base64");
        if (cJSON_IsNumber(dm)) out_dim = (int)dm->valuedouble;
        if (!(texts = malloc(sizeof *texts * (size_t)n))) snprintf(msg, sizeof msg, "out of memory");
        int k = 0;
        for (const cJSON *e = cJSON_IsString(in) ? in : in->child; !msg[0] && k < n; e = e->next, k++) {
            texts[k] = e->valuestring;
            if (!*texts[k]) snprintf(msg, sizeof msg, "input[%d] is empty", k);
        }
    }
    if (msg[0]) {
        free(texts);
        cJSON_Delete(root);
        return send_error(conn, strstr(msg, "out of memory") ? 500 : 400, msg, param, NULL);
    }
    float *v = malloc(sizeof(float) * (size_t)n * (size_t)dim);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(wick_embedder_max_length(c->emb) + 8));
    long long tokens = 0;
    wick_status st = v && ids ? WICK_OK : WICK_ERR_NOMEM;
    pthread_mutex_lock(&c->emb_mu);
    for (int k = 0; !st && k < n; k++) {
        int m = 0;
        st = wick_embedder_tokenize(c->emb, texts[k], ids, wick_embedder_max_length(c->emb) + 8, &m);
        tokens += m;
    }
    if (!st) st = wick_embed(c->emb, texts, n, v);
    if (st) snprintf(msg, sizeof msg, "%s", st == WICK_ERR_NOMEM ? "out of memory" : wick_last_error());
    pthread_mutex_unlock(&c->emb_mu);
    free(ids);
    free(texts);
    if (st) {
        free(v);
        cJSON_Delete(root);
        return send_error(conn, st == WICK_ERR_NOMEM ? 500 : 400, msg, "input", NULL);
    }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(r, "data");
    const bool renorm = out_dim < dim && wick_embedder_normalize(c->emb);
    for (int k = 0; k < n; k++) {
        float *row = v + (size_t)k * dim;
        if (renorm) {
            double ss = 0;
            for (int i = 0; i < out_dim; i++) ss += (double)row[i] * row[i];
            const float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
            for (int i = 0; i < out_dim; i++) row[i] *= inv;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "object", "embedding");
        cJSON_AddNumberToObject(o, "index", k);
        if (b64out) { /* little-endian f32, as the SDKs decode it */
            unsigned char *bytes = malloc(4 * (size_t)out_dim);
            char *enc = NULL;
            if (bytes) {
                for (int i = 0; i < out_dim; i++) {
                    uint32_t u;
                    memcpy(&u, &row[i], 4);
                    bytes[4 * i] = (unsigned char)u, bytes[4 * i + 1] = (unsigned char)(u >> 8);
                    bytes[4 * i + 2] = (unsigned char)(u >> 16), bytes[4 * i + 3] = (unsigned char)(u >> 24);
                }
                enc = base64(bytes, 4 * (size_t)out_dim);
                free(bytes);
            }
            cJSON_AddStringToObject(o, "embedding", enc ? enc : "");
            free(enc);
        } else {
            cJSON *a = cJSON_AddArrayToObject(o, "embedding");
            for (int i = 0; i < out_dim; i++) {
                /* %.9g round-trips a float; cJSON would print 17 digits of the double */
                char num[32];
                snprintf(num, sizeof num, "%.9g", (double)row[i]);
                cJSON_AddItemToArray(a, cJSON_CreateRaw(num));
            }
        }
        cJSON_AddItemToArray(data, o);
    }
    free(v);
    cJSON_AddStringToObject(r, "model", c->emb_id);
    cJSON *u = cJSON_AddObjectToObject(r, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)tokens);
    cJSON_AddNumberToObject(u, "total_tokens", (double)tokens);
    cJSON_Delete(root);
    return send_json(conn, 200, r);
}

static enum MHD_Result handle_metrics(serve_ctx *c, struct MHD_Connection *conn) {
    char *t = serve_metrics_text(c);
    if (!t) return send_error(conn, 500, "out of memory", NULL, NULL);
    return send_buf(conn, 200, "text/plain; version=0.0.4; charset=utf-8", t, strlen(t), NULL);
}

extern const unsigned char wick_chat_page[];
extern const unsigned long wick_chat_page_len;

/* GET /: the chat page (server/chat_page.html, compiled in). Static, so it needs no key; the
   API calls it makes do. */
static enum MHD_Result handle_page(struct MHD_Connection *conn) {
    struct MHD_Response *r = MHD_create_response_from_buffer(
        (size_t)wick_chat_page_len, (void *)wick_chat_page, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8");
    /* no third-party resources, no framing by other sites */
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                            "frame-ancestors 'none'");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ret = queue(conn, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static int route_of(const char *path) {
    if (!strcmp(path, "/completions")) return SR_COMPLETIONS;
    if (!strcmp(path, "/chat/completions")) return SR_CHAT;
    if (!strcmp(path, "/models") || !strncmp(path, "/models/", 8)) return SR_MODELS;
    if (!strcmp(path, "/health")) return SR_HEALTH;
    if (!strcmp(path, "/adapters") || !strncmp(path, "/adapters/", 10)) return SR_ADAPTERS;
    if (!strcmp(path, "/tokenize")) return SR_TOKENIZE;
    if (!strcmp(path, "/detokenize")) return SR_DETOKENIZE;
    if (!strcmp(path, "/metrics")) return SR_METRICS;
    if (!strcmp(path, "/embeddings")) return SR_EMBEDDINGS;
    if (!strcmp(path, "/") || !strcmp(path, "/index.html")) return SR_PAGE;
    return SR_OTHER;
}

/* CORS preflight: any origin; the methods we serve; the request headers the browser asks
   for are echoed back (the OpenAI JS SDK sends Authorization, x-stainless-* and others),
   as long as they are plain header names. */
static enum MHD_Result preflight(struct MHD_Connection *conn) {
    struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    const char *want = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Access-Control-Request-Headers");
    bool plain = want && strlen(want) < 2048;
    for (const char *q = want; plain && *q; q++)
        plain = (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
                *q == '-' || *q == '_' || *q == ',' || *q == ' ';
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
    MHD_add_response_header(r, "Access-Control-Allow-Headers",
                            plain ? want : "Authorization, Content-Type");
    MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    enum MHD_Result ret = queue(conn, 204, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result method_not_allowed(struct MHD_Connection *conn, const char *url,
                                          const char *method, const char *allow) {
    char msg[300];
    snprintf(msg, sizeof msg, "%.200s accepts %s only, not %.16s", url, allow, method);
    cJSON *e = error_json(msg, "invalid_request_error", NULL, "method_not_allowed");
    char *s = cJSON_PrintUnformatted(e);
    cJSON_Delete(e);
    if (!s) return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(s);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
    MHD_add_response_header(r, "Allow", allow);
    enum MHD_Result ret = queue(conn, 405, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result route(serve_ctx *c, struct MHD_Connection *conn, body_state *b,
                             const char *url, const char *method) {
    const char *path = url;
    if (!strncmp(path, "/v1/", 4)) path += 3;
    const bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    const bool post = !strcmp(method, "POST"), del = !strcmp(method, "DELETE");
    if (!strcmp(method, "OPTIONS")) return preflight(conn);
    const char *allow = NULL;
    if (url[0] == '/' && (!url[1] || !strcmp(url, "/index.html"))) {
        if (get) return handle_page(conn);
        allow = "GET";
    } else if (!strcmp(path, "/health")) {
        if (get) return handle_health(c, conn);
        allow = "GET";
    } else if (!strcmp(path, "/models")) {
        if (get) return handle_models(c, conn, false);
        allow = "GET";
    } else if (!strncmp(path, "/models/", 8) && path[8]) {
        if (get) return handle_model(c, conn, path + 8);
        allow = "GET";
    } else if (!strcmp(path, "/completions") || !strcmp(path, "/chat/completions")) {
        if (post) return start_generation(c, conn, b, !strcmp(path, "/chat/completions"));
        allow = "POST";
    } else if (!strcmp(path, "/adapters")) {
        if (get) return handle_models(c, conn, true);
        if (post && !c->adapter_api)
            return send_error(conn, 403, "loading adapters at run time is turned off "
                                         "(--no-adapter-api)", NULL, "adapter_api_disabled");
        if (post) return handle_adapter_post(c, conn, b);
        allow = "GET, POST";
    } else if (!strncmp(path, "/adapters/", 10) && path[10]) {
        if (del && !c->adapter_api)
            return send_error(conn, 403, "unloading adapters at run time is turned off "
                                         "(--no-adapter-api)", NULL, "adapter_api_disabled");
        if (del) return handle_adapter_delete(c, conn, path + 10);
        allow = "DELETE";
    } else if (!strcmp(path, "/tokenize")) {
        if (post) return handle_tokenize(c, conn, b);
        allow = "POST";
    } else if (!strcmp(path, "/detokenize")) {
        if (post) return handle_detokenize(c, conn, b);
        allow = "POST";
    } else if (!strcmp(path, "/metrics")) {
        if (get) return handle_metrics(c, conn);
        allow = "GET";
    } else if (!strcmp(path, "/embeddings")) {
        if (post) return handle_embeddings(c, conn, b);
        allow = "POST";
    }
    if (allow) return method_not_allowed(conn, url, method, allow);
    char msg[300];
    snprintf(msg, sizeof msg, "unknown endpoint: %.16s %.200s", method, url);
    return send_error(conn, 404, msg, NULL, "not_found");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **state) {
    serve_ctx *c = cls;
    body_state *b = *state;
    (void)version;
    if (!b) { /* first call: headers only */
        if (!(b = calloc(1, sizeof *b))) return MHD_NO;
        *state = b;
        b->t0 = now_ms();
        const char *path = !strncmp(url, "/v1/", 4) ? url + 3 : url;
        b->route = route_of(path);
        snprintf(b->method, sizeof b->method, "%s", method);
        snprintf(b->path, sizeof b->path, "%s", url);
        tl_req = b;
        enum MHD_Result ret = MHD_YES;
        /* every endpoint but /health and CORS preflights needs a key when keys are set;
           refused before the body is read */
        if (b->route != SR_HEALTH && b->route != SR_PAGE && strcmp(method, "OPTIONS") != 0 &&
            !serve_authorized(c, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"))) {
            b->too_big = true; /* drop whatever body follows */
            ret = send_error(conn, 401, "invalid or missing API key (send it as 'Authorization: "
                                        "Bearer KEY')", NULL, "invalid_api_key");
        } else {
            const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
            if (cl && strtoull(cl, NULL, 10) > c->max_body) {
                b->too_big = true;
                ret = send_error(conn, 413, "the request body is too large", NULL, NULL);
            }
        }
        tl_req = NULL;
        return ret;
    }
    if (b->status) { /* answered already (401, 413): discard the rest of the body */
        *upload_size = 0;
        return MHD_YES;
    }
    tl_req = b;
    enum MHD_Result ret = MHD_YES;
    if (b->j) {
        ret = continue_generation(conn, b->j);
    } else if (*upload_size) { /* a piece of the body */
        if (!b->too_big && b->body.len + *upload_size > c->max_body) {
            b->too_big = true;
            free(b->body.p);
            b->body = (sbuf){0};
        }
        if (!b->too_big && !sb_add(&b->body, upload, *upload_size)) ret = MHD_NO;
        *upload_size = 0;
    } else if (b->too_big) {
        ret = send_error(conn, 413, "the request body is too large", NULL, NULL);
    } else {
        if (c->verbose) fprintf(stderr, "wick serve: %s %s\n", method, url);
        ret = route(c, conn, b, url, method);
    }
    tl_req = NULL;
    return ret;
}

/* The request is over (answered, or the client went away): a generation still running for
 * it is cancelled, and the request's reference is dropped. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **state,
                         enum MHD_RequestTerminationCode code) {
    (void)conn;
    serve_ctx *c = cls;
    body_state *b = *state;
    if (!b) return;
    const double ms = now_ms() - b->t0;
    serve_count_request(c, b->route, b->status);
    serve_hist_add(&c->metrics.latency, ms);
    if (c->log_requests) {
        /* the request's line: status (0 = the client left before an answer), the model or
           adapter and token counts of a generation, wall time */
        char extra[200] = "";
        if (b->j) {
            const job *j = b->j; /* its counters are final once the engine side is done */
            pthread_mutex_lock(&b->j->mu);
            const bool done = j->done;
            pthread_mutex_unlock(&b->j->mu);
            if (done)
                snprintf(extra, sizeof extra, " model=%s prompt=%d completion=%d",
                         j->req.adapter[0] ? j->req.adapter : c->model_id, j->prompt_tokens,
                         j->completion_tokens);
        }
        fprintf(stderr, "wick serve: %s %s %u%s %.1f ms%s\n", b->method, b->path, b->status, extra,
                ms, code == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection ended early)");
    }
    if (b->j) {
        job *j = b->j;
        pthread_mutex_lock(&j->mu);
        j->http_gone = true;
        const bool cancel = !j->done;
        if (cancel && !j->cancel_reason) j->cancel_reason = CANCEL_GONE;
        pthread_mutex_unlock(&j->mu);
        if (cancel) wick_engine_cancel(c->eng, j->gen);
        job_release(j);
    }
    free(b->body.p);
    free(b);
    *state = NULL;
}

/* New connections get a fixed 64 KiB send buffer (the kernel would grow it to megabytes): what
 * a client leaves unread then piles up in the job's output, where out_bound sees it. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    (void)cls, (void)socket_context;
    if (code != MHD_CONNECTION_NOTIFY_STARTED) return;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    int sz = 64 << 10;
    if (ci) setsockopt(ci->connect_fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
}

struct MHD_Daemon *serve_http_start(serve_ctx *c, int listen_fd, int max_conns, int threads) {
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, c, MHD_OPTION_LISTEN_SOCKET, listen_fd,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, c, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, c, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)max_conns, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->timeout_s,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(threads > 0 ? threads : 1),
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
    if (!d) fprintf(stderr, "wick serve: libmicrohttpd could not start\n");
    return d;
}

void serve_http_quiesce(struct MHD_Daemon *d) {
    if (!d) return;
    MHD_socket fd = MHD_quiesce_daemon(d);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void serve_http_stop(struct MHD_Daemon *d) {
    if (d) MHD_stop_daemon(d);
}

#else /* built without libmicrohttpd: `wick serve` reports it instead of failing to link */
#include <stdio.h>

struct MHD_Daemon *serve_http_start(serve_ctx *c, int listen_fd, int max_conns, int threads) {
    (void)c, (void)listen_fd, (void)max_conns, (void)threads;
    fprintf(stderr, "wick serve: this build of wick has no libmicrohttpd\n");
    return NULL;
}
void serve_sweep(serve_ctx *c) { (void)c; }
void serve_cancel_all(serve_ctx *c) { (void)c; }
void serve_http_quiesce(struct MHD_Daemon *d) { (void)d; }
void serve_http_stop(struct MHD_Daemon *d) { (void)d; }
#endif
