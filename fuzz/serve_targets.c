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
#include <cjson/cJSON.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz/fuzz_targets.h"
#include "infer/json_schema.h"
#include "server/server.h"
#include "train/data.h"
#include "hub/hub_internal.h"

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

int fuzz_target_hub(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *body = (const char *)data + 1;
    const size_t n = size - 1;
    if (data[0] % 2 == 0) {
        static const char *const inc[] = {"*.json", "model-*.safetensors"};
        for (int k = 0; k < 2; k++) {
            wick_hub_params p = wick_hub_params_default();
            if (k) p.include = inc, p.n_include = 2;
            char commit[64], **files = NULL;
            int nf = 0;
            if (hub_parse_revision(body, n, &p, "fuzz", commit, &files, &nf) == WICK_OK) {
                if (strlen(commit) != 40) abort();
                for (int i = 0; i < nf; i++) { /* every component non-empty, not . or .. */
                    const char *c = files[i];
                    if (*c == '/') abort();
                    while (*c) {
                        size_t l = strcspn(c, "/");
                        if (l == 0 || (l == 1 && c[0] == '.') || (l == 2 && c[0] == '.' && c[1] == '.'))
                            abort();
                        c += l + (c[l] == '/');
                    }
                    free(files[i]);
                }
                free(files);
            }
        }
    } else { /* header lines, split at '\n' as libcurl hands them over */
        hub_hdrs h;
        memset(&h, 0, sizeof h);
        char *copy = malloc(n + 1);
        if (!copy) return 0;
        memcpy(copy, body, n);
        size_t i = 0;
        while (i < n) {
            size_t j = i;
            while (j < n && copy[j] != '\n') j++;
            if (j < n) j++;
            hub_header_line(copy + i, 1, j - i, &h);
            i = j;
        }
        if (strnlen(h.etag, sizeof h.etag) == sizeof h.etag || strnlen(h.location, sizeof h.location) ==
            sizeof h.location) abort();
        free(copy);
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

/* ---- structured output ---- */

/* (fuzz_targets.c's FUZZ_CHECK is not visible here when this file is built on its own) */
#define SERVE_FUZZ_CHECK(cond)                                                                  \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "fuzz invariant failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

/* A byte-level BPE vocabulary: <eos> = 0, every byte of the GPT-2 byte alphabet, and a few
   multi-byte JSON pieces (as real vocabularies have), for the token-mask path. */
static const char k_bl_tok_json[] =
    "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":0,\"content\":\"<eos>\",\"single_word\":fal"
    "se,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}],\"normalizer\""
    ":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\""
    ":true,\"use_regex\":true},\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\",\"ad"
    "d_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true},\"model\":{\"type\":\"BPE\""
    ",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,\"end_of_word_suff"
    "ix\":null,\"fuse_unk\":false,\"byte_fallback\":false,\"vocab\":{\"<eos>\":0,\"\\u0100\":1,"
    "\"\\u0101\":2,\"\\u0102\":3,\"\\u0103\":4,\"\\u0104\":5,\"\\u0105\":6,\"\\u0106\":7,\"\\u0"
    "107\":8,\"\\u0108\":9,\"\\u0109\":10,\"\\u010a\":11,\"\\u010b\":12,\"\\u010c\":13,\"\\u010"
    "d\":14,\"\\u010e\":15,\"\\u010f\":16,\"\\u0110\":17,\"\\u0111\":18,\"\\u0112\":19,\"\\u011"
    "3\":20,\"\\u0114\":21,\"\\u0115\":22,\"\\u0116\":23,\"\\u0117\":24,\"\\u0118\":25,\"\\u011"
    "9\":26,\"\\u011a\":27,\"\\u011b\":28,\"\\u011c\":29,\"\\u011d\":30,\"\\u011e\":31,\"\\u011"
    "f\":32,\"\\u0120\":33,\"!\":34,\"\\\"\":35,\"#\":36,\"$\":37,\"%\":38,\"&\":39,\"'\":40,\""
    "(\":41,\")\":42,\"*\":43,\"+\":44,\",\":45,\"-\":46,\".\":47,\"/\":48,\"0\":49,\"1\":50,\""
    "2\":51,\"3\":52,\"4\":53,\"5\":54,\"6\":55,\"7\":56,\"8\":57,\"9\":58,\":\":59,\";\":60,\""
    "<\":61,\"=\":62,\">\":63,\"?\":64,\"@\":65,\"A\":66,\"B\":67,\"C\":68,\"D\":69,\"E\":70,\""
    "F\":71,\"G\":72,\"H\":73,\"I\":74,\"J\":75,\"K\":76,\"L\":77,\"M\":78,\"N\":79,\"O\":80,\""
    "P\":81,\"Q\":82,\"R\":83,\"S\":84,\"T\":85,\"U\":86,\"V\":87,\"W\":88,\"X\":89,\"Y\":90,\""
    "Z\":91,\"[\":92,\"\\\\\":93,\"]\":94,\"^\":95,\"_\":96,\"`\":97,\"a\":98,\"b\":99,\"c\":10"
    "0,\"d\":101,\"e\":102,\"f\":103,\"g\":104,\"h\":105,\"i\":106,\"j\":107,\"k\":108,\"l\":10"
    "9,\"m\":110,\"n\":111,\"o\":112,\"p\":113,\"q\":114,\"r\":115,\"s\":116,\"t\":117,\"u\":11"
    "8,\"v\":119,\"w\":120,\"x\":121,\"y\":122,\"z\":123,\"{\":124,\"|\":125,\"}\":126,\"~\":12"
    "7,\"\\u0121\":128,\"\\u0122\":129,\"\\u0123\":130,\"\\u0124\":131,\"\\u0125\":132,\"\\u012"
    "6\":133,\"\\u0127\":134,\"\\u0128\":135,\"\\u0129\":136,\"\\u012a\":137,\"\\u012b\":138,\""
    "\\u012c\":139,\"\\u012d\":140,\"\\u012e\":141,\"\\u012f\":142,\"\\u0130\":143,\"\\u0131\":"
    "144,\"\\u0132\":145,\"\\u0133\":146,\"\\u0134\":147,\"\\u0135\":148,\"\\u0136\":149,\"\\u0"
    "137\":150,\"\\u0138\":151,\"\\u0139\":152,\"\\u013a\":153,\"\\u013b\":154,\"\\u013c\":155,"
    "\"\\u013d\":156,\"\\u013e\":157,\"\\u013f\":158,\"\\u0140\":159,\"\\u0141\":160,\"\\u0142\""
    ":161,\"\\u00a1\":162,\"\\u00a2\":163,\"\\u00a3\":164,\"\\u00a4\":165,\"\\u00a5\":166,\"\\u"
    "00a6\":167,\"\\u00a7\":168,\"\\u00a8\":169,\"\\u00a9\":170,\"\\u00aa\":171,\"\\u00ab\":172"
    ",\"\\u00ac\":173,\"\\u0143\":174,\"\\u00ae\":175,\"\\u00af\":176,\"\\u00b0\":177,\"\\u00b1"
    "\":178,\"\\u00b2\":179,\"\\u00b3\":180,\"\\u00b4\":181,\"\\u00b5\":182,\"\\u00b6\":183,\"\\"
    "u00b7\":184,\"\\u00b8\":185,\"\\u00b9\":186,\"\\u00ba\":187,\"\\u00bb\":188,\"\\u00bc\":18"
    "9,\"\\u00bd\":190,\"\\u00be\":191,\"\\u00bf\":192,\"\\u00c0\":193,\"\\u00c1\":194,\"\\u00c"
    "2\":195,\"\\u00c3\":196,\"\\u00c4\":197,\"\\u00c5\":198,\"\\u00c6\":199,\"\\u00c7\":200,\""
    "\\u00c8\":201,\"\\u00c9\":202,\"\\u00ca\":203,\"\\u00cb\":204,\"\\u00cc\":205,\"\\u00cd\":"
    "206,\"\\u00ce\":207,\"\\u00cf\":208,\"\\u00d0\":209,\"\\u00d1\":210,\"\\u00d2\":211,\"\\u0"
    "0d3\":212,\"\\u00d4\":213,\"\\u00d5\":214,\"\\u00d6\":215,\"\\u00d7\":216,\"\\u00d8\":217,"
    "\"\\u00d9\":218,\"\\u00da\":219,\"\\u00db\":220,\"\\u00dc\":221,\"\\u00dd\":222,\"\\u00de\""
    ":223,\"\\u00df\":224,\"\\u00e0\":225,\"\\u00e1\":226,\"\\u00e2\":227,\"\\u00e3\":228,\"\\u"
    "00e4\":229,\"\\u00e5\":230,\"\\u00e6\":231,\"\\u00e7\":232,\"\\u00e8\":233,\"\\u00e9\":234"
    ",\"\\u00ea\":235,\"\\u00eb\":236,\"\\u00ec\":237,\"\\u00ed\":238,\"\\u00ee\":239,\"\\u00ef"
    "\":240,\"\\u00f0\":241,\"\\u00f1\":242,\"\\u00f2\":243,\"\\u00f3\":244,\"\\u00f4\":245,\"\\"
    "u00f5\":246,\"\\u00f6\":247,\"\\u00f7\":248,\"\\u00f8\":249,\"\\u00f9\":250,\"\\u00fa\":25"
    "1,\"\\u00fb\":252,\"\\u00fc\":253,\"\\u00fd\":254,\"\\u00fe\":255,\"\\u00ff\":256,\"\\\":\""
    ":257,\"\\\",\\\"\":258,\"true\":259,\"null\":260,\"{\\\"\":261,\"\\u00c3\\u00a9\":262,\"x\\"
    "\\\\\"y\":263,\"false\":264,\"\\\"]}\":265,\"12\":266,\"e+\":267},\"merges\":[]}}";

static wick_tokenizer *g_bl_tok;

int fuzz_target_json_schema(const uint8_t *data, size_t size) {
    /* schema text [NUL document bytes]; the document's bytes also pick tokens below */
    const uint8_t *nul = memchr(data, 0, size);
    const size_t n1 = nul ? (size_t)(nul - data) : size;
    char *schema = malloc(n1 + 1);
    if (!schema) return 0;
    memcpy(schema, data, n1);
    schema[n1] = 0;
    js_schema *s = NULL;
    if (js_compile(schema, &s) != WICK_OK) {
        free(schema);
        return 0;
    }
    const uint8_t *doc = nul ? nul + 1 : data + size;
    const size_t n2 = nul ? size - n1 - 1 : 0;
    int r = js_match_bytes(s, (const char *)doc, n2);
    SERVE_FUZZ_CHECK(r >= -1 && r <= 1);
    if (!g_bl_tok && wick_tokenizer_load_mem(k_bl_tok_json, sizeof k_bl_tok_json - 1, NULL, &g_bl_tok) != WICK_OK) {
        fprintf(stderr, "fuzz: the byte-level tokenizer does not load: %s\n", wick_last_error());
        abort();
    }
    js_matcher *m = NULL;
    const int32_t nv = wick_tokenizer_vocab_size(g_bl_tok), eos = 0;
    if (js_matcher_create(s, g_bl_tok, nv, &m) == WICK_OK) {
        /* walk: every step some token (or the end) is allowed, and an allowed token is accepted */
        float logits[512];
        SERVE_FUZZ_CHECK(nv <= 512);
        for (size_t step = 0; step < 64 && !js_done(m); step++) {
            for (int32_t i = 0; i < nv; i++) logits[i] = 0.0f;
            js_mask(m, logits, &eos, 1);
            int32_t allowed[512], na = 0;
            for (int32_t i = 0; i < nv; i++)
                if (logits[i] == 0.0f) allowed[na++] = i;
            SERVE_FUZZ_CHECK(na > 0);
            const int32_t id = allowed[(n2 ? doc[step % n2] : step) % (size_t)na];
            if (id == eos) {
                SERVE_FUZZ_CHECK(js_can_end(m));
                break;
            }
            SERVE_FUZZ_CHECK(js_accept(m, id));
        }
        js_matcher_free(m);
    }
    js_schema_free(s);
    free(schema);
    return 0;
}

/* ---- tool calls in a model's reply ---- */

typedef struct tools_sink { char *text; size_t len, cap; cJSON *calls; } tools_sink;

static void tools_text(void *u, const char *p, size_t n) {
    tools_sink *k = u;
    if (k->len + n + 1 > k->cap) {
        size_t cap = (k->len + n + 1) * 2;
        char *q = realloc(k->text, cap);
        SERVE_FUZZ_CHECK(q != NULL);
        k->text = q, k->cap = cap;
    }
    memcpy(k->text + k->len, p, n);
    k->len += n;
    k->text[k->len] = 0;
}

static void tools_call(void *u, cJSON *c) { cJSON_AddItemToArray(((tools_sink *)u)->calls, c); }

int fuzz_target_serve_tools(const uint8_t *data, size_t size) {
    /* byte 0: mode (bits 0-1) and format (bit 2), byte 1: a cut stride; the rest: the reply */
    if (size < 2) return 0;
    const int mode = 1 + data[0] % 3, fmt = data[0] & 4 ? SERVE_TOOLFMT_JSON : SERVE_TOOLFMT_TAGGED;
    const size_t stride = 1 + data[1] % 17;
    const char *reply = (const char *)data + 2;
    /* replies are text: the server handles them as C strings, so a NUL ends one */
    const size_t n = strnlen(reply, size - 2);
    cJSON *calls = cJSON_CreateArray();
    char *whole = serve_tools_split(mode, fmt, "f", reply, n, calls);
    SERVE_FUZZ_CHECK(whole != NULL);
    /* the same reply streamed in pieces of `stride` bytes: the same calls, the same text */
    serve_tool_stream ts;
    serve_tools_init(&ts, mode, fmt, "f");
    tools_sink k = {.calls = cJSON_CreateArray()};
    for (size_t i = 0; i < n; i += stride)
        serve_tools_feed(&ts, reply + i, i + stride < n ? stride : n - i, false, tools_text, tools_call, &k);
    serve_tools_feed(&ts, "", 0, true, tools_text, tools_call, &k);
    size_t a = 0, e = k.len;
    while (a < e && strchr(" \n\r\t", k.text[a]) && k.text[a]) a++;
    while (e > a && strchr(" \n\r\t", k.text[e - 1]) && k.text[e - 1]) e--;
    SERVE_FUZZ_CHECK(e - a == strlen(whole) && (e == a || !memcmp(k.text + a, whole, e - a)));
    SERVE_FUZZ_CHECK(cJSON_Compare(k.calls, calls, true));
    serve_tools_free(&ts);
    free(k.text);
    cJSON_Delete(k.calls);
    cJSON_Delete(calls);
    free(whole);
    return 0;
}
