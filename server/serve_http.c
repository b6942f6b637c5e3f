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
    cJSON_AddStringToObject(e, "message", msg);
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
    cJSON_AddStringToObject(r, "model", j->req.adapter >= 0 ? j->c->adapter_names[j->req.adapter]
                                                           : j->c->model_id);
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

/* ---- the engine's callback (driver thread) ------------------------------------------------ */

static void on_final_nonstream(job *j, const wick_token *t) {
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
    cJSON_AddStringToObject(ch, "finish_reason", finish_str(t->finish));
    cJSON_AddItemToArray(choices, ch);
    cJSON_AddItemToObject(r, "usage", usage_json(j));
    set_response(j, 200, r);
}

static bool on_token(const wick_token *t, void *user) {
    job *j = user;
    serve_ctx *c = j->c;
    const bool last = t->finish != WICK_FINISH_NONE;
    if (last) {
        j->finish = t->finish;
        j->prompt_tokens = t->prompt_tokens;
        j->completion_tokens = t->generated_tokens;
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
    } else if (last && t->finish == WICK_FINISH_ERROR && !j->started) {
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
        if (!last) {
            if (t->text_len || lp) sse_chunk(j, t->text, lp, NULL, false);
        } else {
            if (t->finish == WICK_FINISH_ERROR)
                sse_event(j, error_json(t->error ? t->error : "generation failed",
                                        "server_error", NULL, NULL));
            if (j->req.chat) { /* content delta, then an empty delta with the finish reason */
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
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
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
typedef struct body_state {
    sbuf body;
    bool too_big;
    job *j;                    /* the request's job (one reference) once submitted */
} body_state;

static enum MHD_Result start_generation(serve_ctx *c, struct MHD_Connection *conn,
                                        body_state *b, bool chat) {
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
    pthread_mutex_lock(&c->jobs_mu);
    j->next = c->jobs;
    c->jobs = j;
    pthread_mutex_unlock(&c->jobs_mu);
    wick_request rq = {.prompt = j->req.prompt, .n_prompt = j->req.n_prompt, .params = &j->req.p,
                       .adapter = j->req.adapter >= 0 ? c->adapter_names[j->req.adapter] : NULL,
                       .adapter_scale = j->req.adapter >= 0 ? c->adapter_scales[j->req.adapter]
                                                            : 0,
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
        return send_error(conn, 500, msg, NULL, NULL);
    }
    j->suspended = true;
    MHD_suspend_connection(conn);
    pthread_mutex_unlock(&j->mu);
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
        enum MHD_Result ret = MHD_queue_response(conn, 200, r);
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

static enum MHD_Result handle_models(serve_ctx *c, struct MHD_Connection *conn) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(r, "data"), *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", c->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)c->id_base);
    cJSON_AddStringToObject(m, "owned_by", "wick");
    cJSON_AddItemToArray(data, m);
    for (int i = 0; i < c->n_adapters; i++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "id", c->adapter_names[i]);
        cJSON_AddStringToObject(a, "object", "model");
        cJSON_AddNumberToObject(a, "created", (double)c->id_base);
        cJSON_AddStringToObject(a, "owned_by", "wick");
        cJSON_AddStringToObject(a, "parent", c->model_id);
        cJSON_AddStringToObject(a, "type", "lora");
        cJSON_AddItemToArray(data, a);
    }
    return send_json(conn, 200, r);
}

static enum MHD_Result handle_health(serve_ctx *c, struct MHD_Connection *conn) {
    wick_engine_stats st;
    wick_engine_get_stats(c->eng, &st);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "status", atomic_load(&c->draining) ? "draining" : "ok");
    cJSON_AddNumberToObject(r, "running", st.running);
    cJSON_AddNumberToObject(r, "waiting", st.waiting);
    cJSON_AddNumberToObject(r, "kv_blocks_used", st.kv_used);
    cJSON_AddNumberToObject(r, "kv_blocks_total", st.kv_blocks);
    return send_json(conn, 200, r);
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
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > c->max_body) {
            b->too_big = true;
            return send_error(conn, 413, "the request body is too large", NULL, NULL);
        }
        return MHD_YES;
    }
    if (b->j) return continue_generation(conn, b->j);
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
        if (get) return handle_health(c, conn);
        allow = "GET";
    } else if (!strcmp(path, "/models")) {
        if (get) return handle_models(c, conn);
        allow = "GET";
    } else if (!strcmp(path, "/completions") || !strcmp(path, "/chat/completions")) {
        bool chat = !strcmp(path, "/chat/completions");
        if (post) return start_generation(c, conn, b, chat);
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

/* The request is over (answered, or the client went away): a generation still running for
 * it is cancelled, and the request's reference is dropped. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **state,
                         enum MHD_RequestTerminationCode code) {
    (void)conn, (void)code;
    serve_ctx *c = cls;
    body_state *b = *state;
    if (!b) return;
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
