/* serverutil.h — helpers for tests that run the `wick` binary as a child process (a server on
 * a free loopback port) and speak HTTP/1.1 to it over plain sockets. Every wait is bounded. */
#ifndef WICK_TESTS_SERVERUTIL_H
#define WICK_TESTS_SERVERUTIL_H
#include <cjson/cJSON.h>
#include <sys/types.h>

#include "testutil.h"

#define WICK_BIN WICK_BINARY_DIR "/wick"

/* Starts argv with stdout on a pipe (*out_fd); stderr is inherited for diagnostics. */
pid_t su_spawn(char *const argv[], int *out_fd);
/* Reads fd to EOF (bounded by timeout_ms between reads) into a malloc'd string. */
char *su_read_to_eof(int fd, int timeout_ms);
/* Waits up to timeout_ms for pid; returns its wait status, or -1 after killing it. */
int su_wait_child(pid_t pid, int timeout_ms);
/* Starts `wick serve -m model --port 0 -t 1 extra...`; returns the pid and sets *port, or -1
 * when the server did not come up. */
/* A random tiny model with the Qwen3 tokenizer fixture, written by `wick create-random` into a
 * new temporary folder: *dir (remove it when done) and *model (its model folder). NULL on
 * success, else why the tests must skip (the fixture is missing, or the command failed). */
const char *su_tiny_model(char **dir, char **model);
pid_t su_start_server(const char *model, const char *const extra[], int *port);

int su_connect_port(int port);
void su_send_all(int fd, const char *s, size_t n);
/* One request with Connection: close. */
void su_send_request(int fd, const char *method, const char *path, const char *body);
/* The same with extra header lines ("Name: value\r\n" each; NULL for none). */
void su_send_request_h(int fd, const char *method, const char *path, const char *body,
                       const char *headers);
/* Decodes a chunked body in place. */
void su_dechunk(char *b);

typedef struct su_resp {
    int status;
    char *raw;   /* whole response (free it) */
    char *body;  /* into raw, de-chunked */
} su_resp;

su_resp su_http(int port, const char *method, const char *path, const char *body);
su_resp su_http_h(int port, const char *method, const char *path, const char *body,
                  const char *headers);
cJSON *su_json_of(const su_resp *r);
const char *su_jstr(const cJSON *o, const char *path1, const char *path2);
/* choices[0] of a response or chunk. */
const cJSON *su_choice0(const cJSON *j);
/* Non-streamed request: choices[0].text (or message.content), malloc'd; *finish (16 bytes) and
 * *completion_tokens optional. */
char *su_complete(int port, const char *path, const char *body, char *finish, int *ntok);
/* Streamed request: the concatenated text deltas; checks the SSE framing, the chat role chunk,
 * exactly one finish_reason and the final [DONE]. */
char *su_complete_stream(int port, const char *path, const char *body, char *finish);

#endif
