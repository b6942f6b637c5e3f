/* server.h — internals of `wick serve`, the OpenAI-compatible HTTP server, built on the
 * public API alone (wick.h: a wick_engine advances every request together):
 *   serve_main.c  options, model and engine, the engine's driver thread, signals, draining
 *   serve_http.c  libmicrohttpd: routing, bodies, suspend/resume, JSON and SSE responses
 *   serve_req.c   request JSON -> prompt ids and wick_gen_params
 *
 * Threads: libmicrohttpd's few polling threads parse, submit and write; they never compute.
 * One driver thread steps the engine; the engine's per-token callbacks append output to a
 * job and wake its (suspended) connection. A connection is not a generation slot: requests
 * wait in the engine's queue (first come, first served) and get 503 + Retry-After when the
 * queue is full or they waited too long. */
#ifndef WICK_SERVER_SERVER_H
#define WICK_SERVER_SERVER_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wick.h"

#define SERVE_MAX_STOPS 16
#define SERVE_MAX_ADAPTERS 32
#define SERVE_MAX_BODY_DEFAULT (8u << 20)
/* Output bytes a streaming client may leave unread before its generation is paused (default
 * of --stream-buffer). */
#define SERVE_OUT_BOUND (256u << 10)

typedef struct job job;

typedef struct serve_ctx {
    wick_model *model;
    const wick_tokenizer *tok;     /* never NULL: the server refuses models without one */
    const char *model_id;          /* name reported by /v1/models and in responses */
    int n_vocab;
    wick_engine *eng;
    int parallel;                  /* generations decoded together (engine max_seqs) */
    int queue;                     /* requests that may wait beyond those */
    int queue_ms;                  /* longest wait in the queue before 503 (0 = no limit) */
    int stall_ms;                  /* a paused stream whose client reads nothing this long
                                      is cancelled */
    int timeout_s;                 /* idle connections are closed after this */
    size_t max_body;               /* request bodies above this get 413 */
    size_t out_bound;              /* unread stream bytes before the generation is paused */
    bool verbose;                  /* one log line per request on stderr */
    atomic_int inflight;           /* submitted generations not yet finished */
    atomic_bool draining;          /* SIGTERM: no new requests */
    atomic_uint_fast64_t next_id;  /* response ids ("cmpl-N") */
    long long id_base;             /* start time: ids do not repeat across restarts */
    pthread_mutex_t jobs_mu;       /* guards the list of live jobs */
    job *jobs;
    /* LoRA adapters loaded at start (--adapter); each is served as its own model id and
     * applied per request by the engine (mixed adapters share a batch) */
    int n_adapters;
    char *adapter_names[SERVE_MAX_ADAPTERS];
    float adapter_scales[SERVE_MAX_ADAPTERS];
} serve_ctx;

/* A parsed /v1/completions or /v1/chat/completions request. */
typedef struct serve_req {
    bool chat, stream, include_usage;
    int32_t *prompt;               /* malloc'd prompt ids */
    int n_prompt;
    wick_gen_params p;             /* points into stops / bias below */
    char *stops[SERVE_MAX_STOPS];
    int n_stops;
    wick_logit_bias *bias;
    int n_bias;
    bool logprobs;                 /* report per-token logprobs */
    int adapter;                   /* index into serve_ctx.adapter_names, -1 = base model */
    /* set when parsing fails: HTTP status, the offending field (or "") and the message */
    int err_status;
    char err_param[64];
    char err_msg[320];
    const char *err_code;          /* OpenAI "code" or NULL */
} serve_req;

/* Parses a request body (`len` bytes, not NUL-terminated) into *r. Returns true on success;
 * on failure r->err_* describe the problem (400 with the field named). Always call
 * serve_req_free afterwards. */
bool serve_req_parse(const serve_ctx *c, const char *body, size_t len, bool chat, serve_req *r);
void serve_req_free(serve_req *r);

/* Starts the daemon (a few polling threads, epoll) on an already listening socket; NULL on
 * failure (printed). */
struct MHD_Daemon *serve_http_start(serve_ctx *c, int listen_fd, int max_conns, int threads);

/* Periodic work of the driver thread: requests that waited too long, streams whose client
 * stopped reading, non-streamed requests whose client hung up. Cheap; call every ~100 ms. */
void serve_sweep(serve_ctx *c);

/* Cancels every running or waiting generation (their clients get a proper end). */
void serve_cancel_all(serve_ctx *c);

/* Stops listening (the socket is closed); connections already open are served on. */
void serve_http_quiesce(struct MHD_Daemon *d);
void serve_http_stop(struct MHD_Daemon *d);

#endif
