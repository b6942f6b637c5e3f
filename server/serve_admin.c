/* serve_admin.c — the parts of `wick serve` that are not generation: API-key checks, the
 * run-time adapter table (POST/DELETE /v1/adapters), and the counters and histograms that
 * /metrics prints in Prometheus' text format.
 *
 * Keys are compared in time that depends only on the presented key's length and on how many
 * keys there are, never on their bytes or on where a mismatch is. Metrics are lock-free
 * atomics updated by libmicrohttpd's threads and the engine's callbacks. */
#include "server/server.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- API keys ----------------------------------------------------------------------------- */

bool serve_keys_add(serve_ctx *c, const char *key) {
    if (!key || !*key) {
        fprintf(stderr, "wick serve: an API key may not be empty\n");
        return false;
    }
    char **k = realloc(c->keys, sizeof *k * (size_t)(c->n_keys + 1));
    if (!k) return false;
    c->keys = k;
    if (!(k[c->n_keys] = strdup(key))) return false;
    c->n_keys++;
    return true;
}

bool serve_keys_from_file(serve_ctx *c, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "wick serve: --api-key-file %s: %s\n", path, strerror(errno));
        return false;
    }
    char line[4096];
    int n = 0, lineno = 0;
    bool ok = true;
    while (ok && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)) {
            fprintf(stderr, "wick serve: --api-key-file %s line %d: longer than %zu bytes\n",
                    path, lineno, sizeof line - 2);
            ok = false;
            break;
        }
        char *s = line, *e = line + len;
        while (s < e && isspace((unsigned char)*s)) s++;
        while (e > s && isspace((unsigned char)e[-1])) e--;
        *e = 0;
        if (!*s || *s == '#') continue;
        ok = serve_keys_add(c, s);
        n++;
    }
    if (ferror(f)) {
        fprintf(stderr, "wick serve: --api-key-file %s: read error\n", path);
        ok = false;
    }
    fclose(f);
    if (ok && n == 0) {
        fprintf(stderr, "wick serve: --api-key-file %s holds no key (one per line; '#' starts a "
                        "comment)\n", path);
        ok = false;
    }
    return ok;
}

bool serve_authorized(const serve_ctx *c, const char *auth) {
    if (c->n_keys == 0) return true;
    if (!auth) return false;
    /* "Bearer" is case-insensitive (RFC 7235); one or more spaces follow */
    if (strncasecmp(auth, "Bearer ", 7) != 0) return false;
    const char *p = auth + 7;
    while (*p == ' ') p++;
    const size_t lp = strlen(p);
    unsigned ok = 0;
    for (int k = 0; k < c->n_keys; k++) {
        const char *key = c->keys[k];
        const size_t lk = strlen(key); /* keys are never empty */
        unsigned diff = lk != lp;
        for (size_t i = 0; i < lp; i++) diff |= (unsigned char)p[i] ^ (unsigned char)key[i % lk];
        ok |= diff == 0;
    }
    return ok != 0;
}

/* ---- adapters ----------------------------------------------------------------------------- */

bool serve_adapter_name_ok(const serve_ctx *c, const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n >= SERVE_NAME_MAX || !strcmp(name, c->model_id)) return false;
    for (size_t i = 0; i < n; i++) {
        const unsigned char ch = (unsigned char)name[i];
        if (!isalnum(ch) && ch != '.' && ch != '_' && ch != '-' && ch != ':') return false;
    }
    return strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

static int adapter_index(const serve_ctx *c, const char *name) {
    for (int i = 0; i < c->n_adapters; i++)
        if (!strcmp(c->adapter_names[i], name)) return i;
    return -1;
}

/* Frees entry i of the adapter table and closes the gap (adapters_mu held). */
static void drop_entry(serve_ctx *c, int i) {
    free(c->adapter_names[i]);
    free(c->adapter_paths[i]);
    for (int k = i + 1; k < c->n_adapters; k++) {
        c->adapter_names[k - 1] = c->adapter_names[k];
        c->adapter_paths[k - 1] = c->adapter_paths[k];
        c->adapter_scales[k - 1] = c->adapter_scales[k];
        c->adapter_created[k - 1] = c->adapter_created[k];
    }
    c->n_adapters--;
}

unsigned serve_adapter_add(serve_ctx *c, const char *name, const char *path, float scale,
                           char *msg, size_t cap) {
    if (!serve_adapter_name_ok(c, name)) {
        snprintf(msg, cap, "'name' must be 1-%d letters, digits or ._-: and differ from the "
                           "model id '%.100s'", SERVE_NAME_MAX - 1, c->model_id);
        return 400;
    }
    if (!(scale == scale) || scale < -1e6f || scale > 1e6f) {
        snprintf(msg, cap, "'scale' must be a finite number in [-1e6, 1e6]");
        return 400;
    }
    char *nm = strdup(name), *pa = strdup(path);
    if (!nm || !pa) {
        free(nm), free(pa);
        snprintf(msg, cap, "out of memory");
        return 500;
    }
    /* the name is reserved under the lock (an entry without a path: loading), the files are
       read without it, so that requests naming other adapters, /v1/models and /metrics do
       not wait for a slow disk; a second request for the same name gets 409 meanwhile */
    pthread_mutex_lock(&c->adapters_mu);
    unsigned st = 200;
    if (adapter_index(c, name) >= 0) {
        snprintf(msg, cap, "an adapter named '%.100s' is already loaded (DELETE /v1/adapters/%.100s "
                           "first)", name, name);
        st = 409;
    } else if (c->n_adapters == SERVE_MAX_ADAPTERS) {
        snprintf(msg, cap, "at most %d adapters may be loaded at once", SERVE_MAX_ADAPTERS);
        st = 409;
    } else {
        const int i = c->n_adapters++;
        c->adapter_names[i] = nm, c->adapter_paths[i] = NULL, nm = NULL;
        c->adapter_scales[i] = scale;
        c->adapter_created[i] = 0;
    }
    pthread_mutex_unlock(&c->adapters_mu);
    if (st != 200) {
        free(nm), free(pa);
        return st;
    }
    wick_status ws = wick_adapter_load(c->model, path, name);
    pthread_mutex_lock(&c->adapters_mu);
    const int i = adapter_index(c, name); /* still ours: a loading entry cannot be deleted */
    if (ws != WICK_OK) {
        snprintf(msg, cap, "cannot load the adapter at '%.200s': %s", path, wick_last_error());
        st = ws == WICK_ERR_NOMEM ? 507 : 400;
        drop_entry(c, i);
    } else {
        c->adapter_paths[i] = pa, pa = NULL;
        c->adapter_created[i] = (long long)time(NULL);
    }
    pthread_mutex_unlock(&c->adapters_mu);
    free(pa);
    return st;
}

unsigned serve_adapter_remove(serve_ctx *c, const char *name, char *msg, size_t cap) {
    pthread_mutex_lock(&c->adapters_mu);
    const int i = adapter_index(c, name);
    unsigned st = 200;
    if (i < 0 || !c->adapter_paths[i]) {
        snprintf(msg, cap, i < 0 ? "no adapter named '%.100s' is loaded (see /v1/models)"
                                 : "the adapter '%.100s' is still loading", name);
        st = i < 0 ? 404 : 409;
    } else {
        /* generations that hold it keep their reference and finish with it */
        (void)wick_adapter_unload(c->model, name);
        drop_entry(c, i);
    }
    pthread_mutex_unlock(&c->adapters_mu);
    return st;
}

bool serve_adapter_find(serve_ctx *c, const char *name, float *scale) {
    pthread_mutex_lock(&c->adapters_mu);
    int i = adapter_index(c, name);
    if (i >= 0 && !c->adapter_paths[i]) i = -1; /* still loading */
    if (i >= 0 && scale) *scale = c->adapter_scales[i];
    pthread_mutex_unlock(&c->adapters_mu);
    return i >= 0;
}

/* ---- metrics ------------------------------------------------------------------------------ */

static const double k_ttft_le[SERVE_HIST_N - 1] = {10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000};
static const double k_itl_le[SERVE_HIST_N - 1] = {2.5, 5, 10, 20, 40, 80, 160, 320, 640, 1280, 5000};
static const double k_lat_le[SERVE_HIST_N - 1] = {1, 5, 25, 100, 250, 1000, 2500, 10000, 30000, 60000, 300000};
static const unsigned k_status[SERVE_N_STATUS - 1] = {200, 201, 204, 400, 401, 404, 405, 409, 413, 429, 500, 503, 507};
static const char *const k_route[SR_N] = {"/v1/completions", "/v1/chat/completions", "/v1/models",
                                          "/health", "/v1/adapters", "/tokenize", "/detokenize",
                                          "/metrics", "/v1/embeddings", "/", "other"};

void serve_metrics_init(serve_metrics *m) {
    m->ttft.le = k_ttft_le;
    m->itl.le = k_itl_le;
    m->latency.le = k_lat_le;
}

void serve_hist_add(serve_hist *h, double ms) {
    if (!h->le) return; /* serve_metrics_init was not called: nothing is recorded */
    if (!(ms >= 0)) ms = 0;
    int b = 0;
    while (b < SERVE_HIST_N - 1 && ms > h->le[b]) b++;
    atomic_fetch_add_explicit(&h->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (uint_fast64_t)(ms * 1000.0), memory_order_relaxed);
}

void serve_count_request(serve_ctx *c, int route, unsigned status) {
    if (route < 0 || route >= SR_N) route = SR_OTHER;
    int s = SERVE_N_STATUS - 1;
    for (int i = 0; i < SERVE_N_STATUS - 1; i++)
        if (k_status[i] == status) s = i;
    atomic_fetch_add_explicit(&c->metrics.requests[route][s], 1, memory_order_relaxed);
}

typedef struct tbuf { char *p; size_t len, cap; bool oom; } tbuf;

static void tb_printf(tbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(tbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        const int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n + 1;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p, b->cap = cap;
    }
}

static void hist_text(tbuf *b, const char *name, const char *help, const serve_hist *h) {
    if (!h->le) return;
    tb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint_fast64_t cum = 0;
    for (int i = 0; i < SERVE_HIST_N; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        if (i < SERVE_HIST_N - 1) tb_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->le[i] / 1000.0, (unsigned long long)cum);
        else tb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    }
    tb_printf(b, "%s_sum %.6f\n%s_count %llu\n", name,
              (double)atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6, name,
              (unsigned long long)cum);
}

char *serve_metrics_text(serve_ctx *c) {
    tbuf b = {malloc(4096), 0, 4096, false};
    if (!b.p) return NULL;
    b.p[0] = 0;
    serve_metrics *m = &c->metrics;
    tb_printf(&b, "# HELP wick_requests_total HTTP requests answered, by endpoint and status.\n"
                  "# TYPE wick_requests_total counter\n");
    for (int r = 0; r < SR_N; r++)
        for (int s = 0; s < SERVE_N_STATUS; s++) {
            const unsigned long long v = atomic_load_explicit(&m->requests[r][s], memory_order_relaxed);
            if (!v) continue;
            if (s < SERVE_N_STATUS - 1)
                tb_printf(&b, "wick_requests_total{endpoint=\"%s\",status=\"%u\"} %llu\n", k_route[r], k_status[s], v);
            else tb_printf(&b, "wick_requests_total{endpoint=\"%s\",status=\"other\"} %llu\n", k_route[r], v);
        }
    tb_printf(&b, "# HELP wick_prompt_tokens_total Prompt tokens of finished generations.\n"
                  "# TYPE wick_prompt_tokens_total counter\nwick_prompt_tokens_total %llu\n",
              (unsigned long long)atomic_load(&m->prompt_tokens));
    tb_printf(&b, "# HELP wick_completion_tokens_total Tokens generated.\n"
                  "# TYPE wick_completion_tokens_total counter\nwick_completion_tokens_total %llu\n",
              (unsigned long long)atomic_load(&m->completion_tokens));
    hist_text(&b, "wick_time_to_first_token_seconds", "From submission to the first generated token.", &m->ttft);
    hist_text(&b, "wick_inter_token_seconds", "Between consecutive generated tokens of a stream.", &m->itl);
    hist_text(&b, "wick_request_duration_seconds", "From the request's arrival to its end.", &m->latency);
    wick_engine_stats st;
    if (c->eng && wick_engine_get_stats(c->eng, &st) == WICK_OK) {
        tb_printf(&b, "# HELP wick_generations_running Generations admitted to the engine (paused included).\n"
                      "# TYPE wick_generations_running gauge\nwick_generations_running %d\n", st.running);
        tb_printf(&b, "# HELP wick_generations_waiting Generations queued for admission.\n"
                      "# TYPE wick_generations_waiting gauge\nwick_generations_waiting %d\n", st.waiting);
        tb_printf(&b, "# HELP wick_kv_blocks_used KV cache blocks held by sequences.\n"
                      "# TYPE wick_kv_blocks_used gauge\nwick_kv_blocks_used %d\n", st.kv_used);
        tb_printf(&b, "# HELP wick_kv_blocks_cached Unreferenced KV blocks kept for prefix reuse.\n"
                      "# TYPE wick_kv_blocks_cached gauge\nwick_kv_blocks_cached %d\n", st.kv_cached);
        tb_printf(&b, "# HELP wick_kv_blocks_total KV cache blocks in the pool.\n"
                      "# TYPE wick_kv_blocks_total gauge\nwick_kv_blocks_total %d\n", st.kv_blocks);
        tb_printf(&b, "# HELP wick_prefix_cache_hit_tokens_total Prompt positions reused from the prefix cache.\n"
                      "# TYPE wick_prefix_cache_hit_tokens_total counter\nwick_prefix_cache_hit_tokens_total %lld\n",
                  (long long)st.prefix_hit_tokens);
        tb_printf(&b, "# HELP wick_preemptions_total Generations preempted for KV space.\n"
                      "# TYPE wick_preemptions_total counter\nwick_preemptions_total %lld\n",
                  (long long)st.preemptions);
        tb_printf(&b, "# HELP wick_engine_steps_total Engine steps (one forward pass each).\n"
                      "# TYPE wick_engine_steps_total counter\nwick_engine_steps_total %lld\n",
                  (long long)st.steps);
    }
    pthread_mutex_lock(&c->adapters_mu);
    const int na = c->n_adapters;
    pthread_mutex_unlock(&c->adapters_mu);
    tb_printf(&b, "# HELP wick_adapters_loaded LoRA adapters served as models.\n"
                  "# TYPE wick_adapters_loaded gauge\nwick_adapters_loaded %d\n", na);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- text hygiene and chat stops ------------------------------------------------------------ */

/* Length of the valid UTF-8 character at p (n bytes left), 0 if invalid, -1 if p holds only a
   valid beginning cut short by the end. */
static int utf8_char(const unsigned char *p, size_t n) {
    const unsigned c = p[0];
    int k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!k || (k == 2 && c < 0xC2) || c > 0xF4) return 0;
    uint32_t cp = k == 1 ? c : k == 2 ? c & 0x1F : k == 3 ? c & 0x0F : c & 0x07;
    for (int j = 1; j < k; j++) {
        if ((size_t)j >= n) return -1;
        if ((p[j] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (p[j] & 0x3F);
        /* reject overlongs and surrogates as soon as the second byte shows them */
        if (j == 1 && ((k == 3 && c == 0xE0 && p[1] < 0xA0) || (k == 3 && c == 0xED && p[1] >= 0xA0) ||
                       (k == 4 && c == 0xF0 && p[1] < 0x90) || (k == 4 && c == 0xF4 && p[1] >= 0x90)))
            return 0;
    }
    return k;
}

bool serve_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        const int k = utf8_char(p + i, n - i);
        if (k <= 0) return false;
        i += (size_t)k;
    }
    return true;
}

void serve_utf8_clean(const char *s, char *out, size_t cap) {
    if (!cap) return;
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), o = 0;
    for (size_t i = 0; i < n;) {
        int k = utf8_char(p + i, n - i);
        if (k < 0) break; /* a character cut short at the very end */
        const char *src = k ? (const char *)p + i : "\xEF\xBF\xBD";
        const size_t len = k ? (size_t)k : 3;
        if (o + len + 1 > cap) break;
        memcpy(out + o, src, len);
        o += len;
        i += k ? (size_t)k : 1;
    }
    out[o] = 0;
}

void serve_chat_eos_init(serve_ctx *c, const int32_t *eos, int n_eos) {
    static const char *const turn_ends[] = {"<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>",
                                            "<|endoftext|>", "<|end_of_text|>", "</s>", "<|eom_id|>"};
    c->n_chat_eos = 0;
    for (int i = 0; i < n_eos && c->n_chat_eos < 16; i++) c->chat_eos[c->n_chat_eos++] = eos[i];
    for (size_t t = 0; t < sizeof turn_ends / sizeof turn_ends[0] && c->n_chat_eos < 16; t++) {
        const int32_t id = wick_token_id(c->tok, turn_ends[t]);
        if (id < 0 || id >= c->n_vocab) continue;
        bool dup = false;
        for (int i = 0; i < c->n_chat_eos; i++) dup |= c->chat_eos[i] == id;
        if (!dup) c->chat_eos[c->n_chat_eos++] = id;
    }
}
