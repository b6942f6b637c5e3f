/* server.h — internals of `wick serve`, the OpenAI-compatible HTTP server, built on the
 * public API alone (wick.h: a wick_engine advances every request together):
 *   serve_main.c  options, model and engine, the engine's driver thread, signals, draining
 *   serve_http.c  libmicrohttpd: routing, bodies, suspend/resume, JSON and SSE responses
 *   serve_req.c   request JSON -> prompt ids and wick_gen_params
 *   serve_admin.c access keys, the run-time adapter table, /metrics counters
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

typedef struct cJSON cJSON;

#define SERVE_MAX_STOPS 16
#define SERVE_MAX_ADAPTERS 32
#define SERVE_MAX_BODY_DEFAULT (8u << 20)
#define SERVE_NAME_MAX 128 /* adapter names (bytes, NUL included) */
/* Output bytes a streaming client may leave unread before its generation is paused (default
 * of --stream-buffer). */
#define SERVE_OUT_BOUND (256u << 10)

typedef struct job job;

/* Prometheus histogram with fixed bounds in milliseconds (the last bucket is +Inf). */
#define SERVE_HIST_N 12
typedef struct serve_hist {
    const double *le;                 /* SERVE_HIST_N - 1 upper bounds */
    atomic_uint_fast64_t bucket[SERVE_HIST_N];
    atomic_uint_fast64_t sum_us;
} serve_hist;

/* Routes counted by /metrics. */
enum { SR_COMPLETIONS, SR_CHAT, SR_MODELS, SR_HEALTH, SR_ADAPTERS, SR_TOKENIZE, SR_DETOKENIZE,
       SR_METRICS, SR_EMBEDDINGS, SR_PAGE, SR_OTHER, SR_N };
#define SERVE_N_STATUS 14 /* counted status codes, see serve_admin.c */

typedef struct serve_metrics {
    atomic_uint_fast64_t requests[SR_N][SERVE_N_STATUS];
    atomic_uint_fast64_t prompt_tokens, completion_tokens;
    serve_hist ttft, itl, latency;
} serve_metrics;

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
    bool log_requests;             /* one line per request on stderr (default; -q turns off) */
    int n_ctx;                     /* positions per sequence (0: unknown; no early prompt check) */
    /* ids that end a chat reply: the model's EOS ids plus the end-of-turn tokens of the
       common chat formats found in the vocabulary (<|im_end|>, <|eot_id|>, <end_of_turn>...),
       since generation_config.json often lists only <|endoftext|> */
    int32_t chat_eos[16];
    int n_chat_eos;
    /* API keys (--api-key, --api-key-file); none: every request is served */
    int n_keys;
    char **keys;
    /* LoRA adapters (--adapter at start, POST/DELETE /v1/adapters at run time); each is
     * served as its own model id and applied per request by the engine (mixed adapters share
     * a batch). Guarded by adapters_mu. A generation takes its own reference at submission, so
     * an adapter unloaded meanwhile stays alive until those finish. */
    pthread_mutex_t adapters_mu;
    bool adapter_api;              /* POST/DELETE /v1/adapters allowed (--no-adapter-api) */
    int n_adapters;
    char *adapter_names[SERVE_MAX_ADAPTERS];
    char *adapter_paths[SERVE_MAX_ADAPTERS];
    float adapter_scales[SERVE_MAX_ADAPTERS];
    long long adapter_created[SERVE_MAX_ADAPTERS];
    serve_metrics metrics;
    /* embeddings (POST /v1/embeddings): an encoder from --embedding-model, or -m itself when
       it names an encoder (then eng and model are NULL and only the embedding, tokenizer,
       model and operations endpoints serve). One request embeds at a time (emb_mu). */
    wick_embedder *emb;
    const char *emb_id;            /* its model id */
    pthread_mutex_t emb_mu;
} serve_ctx;

enum { SERVE_TOOLS_NONE, SERVE_TOOLS_AUTO, SERVE_TOOLS_REQUIRED, SERVE_TOOLS_NAMED };
/* How a model writes a call: <tool_call>{"name", "arguments"}</tool_call> (Qwen 2.5/3, Hermes),
   or a bare {"name", "parameters"} object (Llama 3.1+). */
enum { SERVE_TOOLFMT_NONE, SERVE_TOOLFMT_TAGGED, SERVE_TOOLFMT_JSON };

/* serve_tools.c: a reply's tool calls. Text is streamed as it comes except what may begin a
 * call; a call goes out whole (one tool_calls item: index, id, type, function {name,
 * arguments as a JSON string}) once complete. Forced calls (required / named) and the JSON
 * format are decided on the whole reply. */
typedef struct serve_tool_stream {
    int mode, format;
    const char *id;                /* the response's id, for the calls' ids (not owned) */
    char *hold;                    /* held-back text */
    size_t len, cap;
    bool in_call, passthrough;
    int n_calls;
} serve_tool_stream;
void serve_tools_init(serve_tool_stream *ts, int mode, int format, const char *id);
void serve_tools_free(serve_tool_stream *ts);
/* Feeds the next text (last: the reply ends here); emit_text gets text to send, emit_call one
   call (taken over). */
void serve_tools_feed(serve_tool_stream *ts, const char *text, size_t n, bool last,
                      void (*emit_text)(void *, const char *, size_t), void (*emit_call)(void *, cJSON *),
                      void *user);
/* A whole reply: its calls appended to `calls` (a cJSON array), the rest returned (malloc'd,
   trimmed of the blank lines around calls; NULL when out of memory). */
char *serve_tools_split(int mode, int format, const char *id, const char *text, size_t n, cJSON *calls);

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
    char *schema;                  /* response_format's JSON Schema (malloc'd) or NULL */
    /* tools: the model may (auto), must (required), must call this one (named) or may not
       (none / no tools) call a function; the output's calls are parsed back into tool_calls */
    int tool_mode;                 /* SERVE_TOOLS_* */
    int tool_format;               /* SERVE_TOOLFMT_* of the model's chat format */
    char adapter[SERVE_NAME_MAX];  /* adapter applied ("" = the base model) */
    float adapter_scale;
    /* set when parsing fails: HTTP status, the offending field (or "") and the message */
    int err_status;
    char err_param[64];
    char err_msg[320];
    const char *err_code;          /* OpenAI "code" or NULL */
} serve_req;

/* Parses a request body (`len` bytes, not NUL-terminated) into *r. Returns true on success;
 * on failure r->err_* describe the problem (400 with the field named). Always call
 * serve_req_free afterwards. */
bool serve_req_parse(serve_ctx *c, const char *body, size_t len, bool chat, serve_req *r);
void serve_req_free(serve_req *r);

/* serve_admin.c */
/* Copies s into out (cap bytes, NUL-terminated) as valid UTF-8: invalid bytes become U+FFFD,
   and text is cut only at a character boundary (a character cut short at the end of s, as
   "%.100s" can leave it, is dropped). */
void serve_utf8_clean(const char *s, char *out, size_t cap);
/* Strict UTF-8 (no overlongs, surrogates, code points above U+10FFFF or cut characters). */
bool serve_utf8_valid(const char *s, size_t n);
/* Fills c->chat_eos from the model's EOS ids and the vocabulary. */
void serve_chat_eos_init(serve_ctx *c, const int32_t *eos, int n_eos);
/* Initialises the metrics' histogram bounds. */
void serve_metrics_init(serve_metrics *m);
void serve_hist_add(serve_hist *h, double ms);
/* Counts one finished request of route `route` with HTTP status `status`. */
void serve_count_request(serve_ctx *c, int route, unsigned status);
/* /metrics body (Prometheus text format 0.0.4), malloc'd; NULL when out of memory. */
char *serve_metrics_text(serve_ctx *c);
/* True when `auth` (the Authorization header, may be NULL) carries one of c->keys as
 * "Bearer KEY" (or there are no keys). Compares in time independent of the keys' bytes. */
bool serve_authorized(const serve_ctx *c, const char *auth);
/* Reads API keys from a file (one per line; blank lines and lines starting with '#'
 * ignored; surrounding spaces trimmed) and appends them to c->keys. False (printed) on an
 * unreadable file or one without keys. */
bool serve_keys_from_file(serve_ctx *c, const char *path);
bool serve_keys_add(serve_ctx *c, const char *key);
/* Adapter table (each takes adapters_mu). serve_adapter_add loads `path` into the model and
 * registers it as `name`; on failure returns the HTTP status for the error and writes the
 * message (which names the file and field) into msg. */
unsigned serve_adapter_add(serve_ctx *c, const char *name, const char *path, float scale,
                           char *msg, size_t cap);
unsigned serve_adapter_remove(serve_ctx *c, const char *name, char *msg, size_t cap);
/* Copies the adapter's scale into *scale; false when no adapter has that name. */
bool serve_adapter_find(serve_ctx *c, const char *name, float *scale);
/* A valid adapter name: 1..SERVE_NAME_MAX-1 bytes of letters, digits and "._-:" (it is also a
 * URL path segment), not the model id. */
bool serve_adapter_name_ok(const serve_ctx *c, const char *name);

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
