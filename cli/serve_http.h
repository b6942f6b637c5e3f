/* serve_http.h — internals of `wick serve`, the OpenAI-compatible HTTP server
 * (cli/cmd_serve.c: options and lifetime; cli/serve_req.c: request JSON to generation
 * parameters; cli/serve_http.c: routing, slots, generation and responses over libmicrohttpd).
 * Lives in cli/ only because the build compiles every cli .c file into the `wick` tool; nothing here is
 * public API. */
#ifndef WICK_CLI_SERVE_HTTP_H
#define WICK_CLI_SERVE_HTTP_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wick.h"

#define SERVE_MAX_STOPS 16
#define SERVE_MAX_ADAPTERS 32
#define SERVE_MAX_BODY_DEFAULT (8u << 20)

/* One generation slot: a session on the shared model, used by one request at a time. */
typedef struct serve_slot {
    wick_session *session;
    bool busy;
} serve_slot;

typedef struct serve_ctx {
    wick_model *model;
    const wick_tokenizer *tok;     /* never NULL: the server refuses models without one */
    const char *model_id;          /* name reported by /v1/models and in responses */
    int n_vocab;
    int n_slots;
    serve_slot *slots;
    pthread_mutex_t mu;            /* guards slots[].busy */
    pthread_cond_t freed;          /* signalled when a slot is released or on shutdown */
    int queue_ms;                  /* how long a request waits for a slot before 503 */
    size_t max_body;               /* request bodies above this get 413 */
    bool verbose;                  /* one log line per request on stderr */
    atomic_bool stopping;          /* set at shutdown: running generations cancel themselves */
    atomic_uint_fast64_t next_id;  /* request ids ("cmpl-N") */
    /* LoRA adapters loaded at start (--adapter); each is served as its own model id and
     * applied per request on the slot's session (a pointer swap, no reload) */
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

/* Starts the daemon on an already listening socket. Returns NULL on failure (printed). */
struct MHD_Daemon *serve_http_start(serve_ctx *c, int listen_fd, int max_conns);

/* Cancels running generations, stops accepting, closes connections and joins their threads. */
void serve_http_stop(serve_ctx *c, struct MHD_Daemon *d);

#endif
