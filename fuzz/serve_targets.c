/* serve_targets.c — harness bodies for the server and the training data (see fuzz_targets.h):
 *   serve_req   a request body (first byte: 0 = /v1/completions, else chat) through
 *               serve_req_parse, as the server parses every POST;
 *   http        raw bytes sent to a running server (the real libmicrohttpd daemon, routing,
 *               parsing, the engine with the tiny model) over a loopback connection, read back
 *               to the end: the whole HTTP layer;
 *   train_data  a training data file (first byte: 0 = plain text, else JSONL) through
 *               train_data_parse.
 * The tokenizer is a tiny WordPiece (16 ids, like the tiny model) with a ChatML template,
 * written here. Not here: the loaders (fuzz_targets.c). */
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz/fuzz_targets.h"
#include "server/server.h"
#include "train/data.h"

static const char k_tok_json[] =
    "{\"version\":\"1.0\",\"added_tokens\":["
    "{\"id\":0,\"content\":\"[PAD]\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
    "\"normalized\":false,\"special\":true},"
    "{\"id\":1,\"content\":\"[UNK]\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
    "\"normalized\":false,\"special\":true},"
    "{\"id\":12,\"content\":\"<|im_start|>\",\"single_word\":false,\"lstrip\":false,"
    "\"rstrip\":false,\"normalized\":false,\"special\":true},"
    "{\"id\":13,\"content\":\"<|im_end|>\",\"single_word\":false,\"lstrip\":false,"
    "\"rstrip\":false,\"normalized\":false,\"special\":true}],"
    "\"normalizer\":{\"type\":\"BertNormalizer\",\"clean_text\":true,\"handle_chinese_chars\":true,"
    "\"strip_accents\":null,\"lowercase\":true},"
    "\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},\"post_processor\":null,"
    "\"decoder\":{\"type\":\"WordPiece\",\"prefix\":\"##\",\"cleanup\":true},"
    "\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\",\"continuing_subword_prefix\":\"##\","
    "\"max_input_chars_per_word\":100,\"vocab\":{\"[PAD]\":0,\"[UNK]\":1,\"[CLS]\":2,\"[SEP]\":3,"
    "\"a\":4,\"b\":5,\"c\":6,\"d\":7,\"e\":8,\"hello\":9,\"world\":10,\"##s\":11,"
    "\"<|im_start|>\":12,\"<|im_end|>\":13,\"user\":14,\"assistant\":15}}}";

static const char k_tok_config[] =
    "{\"chat_template\":\"{% for m in messages %}<|im_start|>{{ m.role }}\\n{{ m.content }}"
    "<|im_end|>\\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\\n{% endif %}\","
    "\"eos_token\":\"<|im_end|>\"}";

static wick_tokenizer *g_tok;

static const wick_tokenizer *tiny_tokenizer(void) {
    if (!g_tok && wick_tokenizer_load_mem(k_tok_json, sizeof k_tok_json - 1, k_tok_config,
                                          &g_tok) != WICK_OK) {
        fprintf(stderr, "fuzz: the tiny tokenizer does not load: %s\n", wick_last_error());
        abort();
    }
    return g_tok;
}

static serve_ctx g_srv; /* tok, n_vocab, model id, one adapter name */

static serve_ctx *tiny_server_ctx(void) {
    if (!g_srv.tok) {
        g_srv.tok = tiny_tokenizer();
        g_srv.n_vocab = 16;
        g_srv.model_id = "tiny";
        g_srv.n_adapters = 1;
        g_srv.adapter_names[0] = (char *)"ad";
        g_srv.adapter_scales[0] = 1.0f;
    }
    return &g_srv;
}

int fuzz_target_serve_req(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    serve_req r;
    memset(&r, 0, sizeof r);
    serve_req_parse(tiny_server_ctx(), (const char *)data + 1, size - 1, data[0] != 0, &r);
    serve_req_free(&r);
    return 0;
}

int fuzz_target_train_data(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    train_data d;
    if (train_data_parse((const char *)data + 1, size - 1, data[0] != 0, "fuzz.jsonl",
                         tiny_tokenizer(), 13, 16, &d) == WICK_OK) {
        for (int i = 0; i < d.n; i++)
            for (int k = 0; k < d.ex[i].n; k++)
                if (d.ex[i].ids[k] < 0 || d.ex[i].ids[k] >= 16) abort();
        train_data_free(&d);
    }
    return 0;
}

/* ---- a running server ---- */

static int g_port;
static atomic_bool g_stop;
static serve_ctx g_http; /* the running server's: the tiny model, no adapter */

static void *drive(void *arg) {
    (void)arg;
    while (!atomic_load(&g_stop)) {
        int active = 0;
        wick_engine_step(g_http.eng, &active);
        serve_sweep(&g_http);
        if (!active) wick_engine_wait(g_http.eng, 20);
    }
    return NULL;
}

static void start_server(void) {
    serve_ctx *c = &g_http;
    c->tok = tiny_tokenizer();
    c->n_vocab = 16;
    c->model_id = "tiny";
    c->model = fuzz_tiny_model();
    serve_metrics_init(&c->metrics); /* adapter_api stays off: no file loads from fuzz input */
    wick_engine_params ep = wick_engine_params_default();
    ep.n_threads = 1;
    ep.max_seqs = 2;
    ep.n_ctx = 32;
    ep.n_batch = 8;
    if (wick_engine_create(c->model, &ep, &c->eng) != WICK_OK) abort();
    c->parallel = 2;
    c->queue = 2;
    c->queue_ms = 2000;
    c->stall_ms = 1000;
    c->timeout_s = 2;
    c->max_body = 1 << 16;
    c->out_bound = 4096;
    pthread_mutex_init(&c->jobs_mu, NULL);
    pthread_t th;
    if (pthread_create(&th, NULL, drive, NULL)) abort();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 64) ||
        getsockname(fd, (struct sockaddr *)&a, &al))
        abort();
    g_port = ntohs(a.sin_port);
    if (!serve_http_start(c, fd, 64, 1)) abort();
}

int fuzz_target_http(const uint8_t *data, size_t size) {
    if (!g_port) start_server();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) abort();
    for (size_t off = 0; off < size;) {
        ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (w <= 0) break; /* the server may answer and close early (413, 400) */
        off += (size_t)w;
    }
    shutdown(fd, SHUT_WR);
    char buf[16384];
    /* read until the server closes or stays silent for 200 ms (libmicrohttpd may keep a
       connection whose client half-closed until its timeout; the server cleans it up then) */
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) <= 0 || recv(fd, buf, sizeof buf, 0) <= 0) break;
    }
    close(fd);
    return 0;
}
