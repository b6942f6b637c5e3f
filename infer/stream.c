/* stream.c — asynchronous streaming: a worker thread steps the pull generator and hands
 * tokens to one consumer through a bounded ring.
 *
 * Readiness is an eventfd in semaphore mode: the worker adds 1 per queued entry (tokens and
 * the terminal entry), the consumer takes 1 per entry, so the fd is readable exactly while an
 * entry waits — wick_stream_next itself waits with poll() on it, so nothing busy-waits. When
 * the ring is full the worker blocks on a condition variable until the consumer makes room
 * (or the stream is cancelled). Each slot owns its text buffer, which only grows, so the
 * steady state allocates nothing. */
#include <errno.h>
#include <stdio.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"
#include "infer/generate.h"

#define RING 128   /* tokens queued before the worker waits for the consumer */
#define SLOTS (RING + 2) /* + room for the final token and the terminal entry, always */

typedef struct slot {
    wick_token tok;
    char *text;
    size_t cap;
    wick_top_logprob top[GEN_MAX_TOP];
    wick_status status;   /* WICK_OK: a token; WICK_DONE: normal end; else: the error */
    char err[512];        /* message of an error entry */
} slot;

struct wick_stream {
    wick_gen *gen;
    pthread_t thread;
    bool thread_started;
    int efd;
    pthread_mutex_t mu;
    pthread_cond_t space;
    slot ring[SLOTS];
    int head, count;      /* consumer reads ring[head]; count entries queued */
    atomic_int cancel;
    bool finished;        /* consumer has taken the terminal entry */
    slot current;         /* the entry last returned to the consumer (owns its text) */
};

/* Copies a token into a slot (deep copy of text and alternatives). */
static bool slot_set(slot *sl, const wick_token *t) {
    if (t->text_len + 1 > sl->cap) {
        size_t c = sl->cap ? sl->cap : 64;
        while (c < t->text_len + 1) c *= 2;
        char *nb = realloc(sl->text, c);
        if (!nb) return false;
        sl->text = nb;
        sl->cap = c;
    }
    sl->tok = *t;
    if (t->text_len) memcpy(sl->text, t->text, t->text_len);
    sl->text[t->text_len] = '\0';
    sl->tok.text = sl->text;
    int n = t->n_top < GEN_MAX_TOP ? t->n_top : GEN_MAX_TOP;
    if (n > 0) memcpy(sl->top, t->top, sizeof(wick_top_logprob) * (size_t)n);
    sl->tok.top = sl->top;
    sl->status = WICK_OK;
    return true;
}

/* Blocks until the ring has room (or the stream is cancelled); false when cancelled. */
static bool wait_space(wick_stream *s) {
    while (s->count >= RING) {
        if (atomic_load(&s->cancel)) return false;
        pthread_cond_wait(&s->space, &s->mu);
    }
    return true;
}

static void signal_ready(wick_stream *s) {
    uint64_t one = 1;
    ssize_t r;
    do r = write(s->efd, &one, sizeof one);
    while (r < 0 && errno == EINTR);
}

/* Pushes a token or a terminal entry (st != WICK_OK). Ordinary tokens wait for room; the
 * final token and the terminal entry use the two reserved slots, so they are always
 * delivered, even when the stream was cancelled while the ring was full. */
static void push(wick_stream *s, const wick_token *t, wick_status st) {
    pthread_mutex_lock(&s->mu);
    bool reserved = st != WICK_OK || t->finish != WICK_FINISH_NONE;
    if (!reserved && !wait_space(s)) {
        pthread_mutex_unlock(&s->mu);
        return; /* cancelled while full: the final "cancelled" token follows */
    }
    slot *sl = &s->ring[(s->head + s->count) % SLOTS];
    if (st == WICK_OK && !slot_set(sl, t)) st = err_set(WICK_ERR_NOMEM, "out of memory queuing a token");
    if (st != WICK_OK) {
        sl->status = st;
        snprintf(sl->err, sizeof sl->err, "%s", st == WICK_DONE ? "" : wick_last_error());
    }
    s->count++;
    pthread_mutex_unlock(&s->mu);
    signal_ready(s);
}

static void *worker(void *arg) {
    wick_stream *s = arg;
    wick_token tok;
    wick_status st;
    while ((st = wick_gen_step(s->gen, &tok)) == WICK_OK) {
        push(s, &tok, WICK_OK);
        if (tok.finish != WICK_FINISH_NONE) {
            st = WICK_DONE;
            break;
        }
    }
    push(s, NULL, st);
    return NULL;
}

wick_status wick_stream_open(wick_session *session, const int32_t *prompt, int n,
                             const wick_gen_params *params, wick_stream **out) {
    if (!out) return err_set(WICK_ERR_INVALID_ARG, "wick_stream_open: out is NULL");
    *out = NULL;
    wick_stream *s = calloc(1, sizeof *s);
    if (!s) return err_set(WICK_ERR_NOMEM, "out of memory");
    s->efd = -1;
    wick_status st = wick_gen_start(session, prompt, n, params, &s->gen);
    if (st) {
        free(s);
        return st;
    }
    s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
    if (s->efd < 0) {
        wick_gen_free(s->gen);
        free(s);
        return err_set(WICK_ERR_IO, "wick_stream_open: eventfd failed: %s", strerror(errno));
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->space, NULL);
    if (pthread_create(&s->thread, NULL, worker, s) != 0) {
        wick_stream_close(s);
        return err_set(WICK_ERR_NOMEM, "wick_stream_open: cannot start the worker thread");
    }
    s->thread_started = true;
    *out = s;
    return WICK_OK;
}

int wick_stream_fd(const wick_stream *s) { return s ? s->efd : -1; }

void wick_stream_cancel(wick_stream *s) {
    if (!s) return;
    atomic_store(&s->cancel, 1);
    wick_gen_cancel(s->gen);
    pthread_mutex_lock(&s->mu);
    pthread_cond_broadcast(&s->space);
    pthread_mutex_unlock(&s->mu);
}

wick_status wick_stream_next(wick_stream *s, wick_token *tok, int timeout_ms) {
    if (!s || !tok) return err_set(WICK_ERR_INVALID_ARG, "wick_stream_next: NULL argument");
    if (s->finished) return WICK_DONE;
    struct pollfd pfd = {.fd = s->efd, .events = POLLIN};
    for (;;) {
        uint64_t v;
        if (read(s->efd, &v, sizeof v) == sizeof v) break; /* took one entry's credit */
        if (errno != EAGAIN && errno != EINTR)
            return err_set(WICK_ERR_IO, "wick_stream_next: eventfd read failed: %s",
                           strerror(errno));
        int r = poll(&pfd, 1, timeout_ms);
        if (r == 0) return WICK_ERR_TIMEOUT;
        if (r < 0 && errno != EINTR)
            return err_set(WICK_ERR_IO, "wick_stream_next: poll failed: %s", strerror(errno));
        /* the wait budget is not recomputed after EINTR: a signal restarts the wait */
    }
    pthread_mutex_lock(&s->mu);
    slot *sl = &s->ring[s->head];
    /* swap buffers with `current` so the returned text stays valid until the next call */
    slot tmp = s->current;
    s->current = *sl;
    *sl = tmp;
    s->head = (s->head + 1) % SLOTS;
    s->count--;
    pthread_cond_signal(&s->space);
    pthread_mutex_unlock(&s->mu);
    slot *cur = &s->current;
    if (cur->status != WICK_OK) {
        s->finished = true;
        if (cur->status == WICK_DONE) return WICK_DONE;
        return err_set(cur->status, "%s", cur->err);
    }
    *tok = cur->tok;
    tok->text = cur->text;
    tok->top = cur->top;
    return WICK_OK;
}

void wick_stream_close(wick_stream *s) {
    if (!s) return;
    if (s->thread_started) {
        wick_stream_cancel(s);
        pthread_join(s->thread, NULL);
    }
    if (s->efd >= 0) close(s->efd);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->space);
    for (int i = 0; i < SLOTS; i++) free(s->ring[i].text);
    free(s->current.text);
    wick_gen_free(s->gen);
    free(s);
}
