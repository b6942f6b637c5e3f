/* cuda_table.cu — the CUDA kernel table: one kernel_table per device (cuda:0 .. cuda:15),
 * its buffers (cudaMalloc / cudaMemcpyAsync), failure collection and sync, the per-thread
 * device scratch and cuBLAS handle, and kernels_cuda_open.
 *
 * kernel_table entries carry no device, so each device gets its own table of thin wrappers
 * (a template over the device index) that select the device on the calling thread and call
 * the device-independent op functions of cuda_matmul.cu / cuda_attn.cu / cuda_ops.cu.
 *
 * Failures: ops return nothing, so every CUDA / cuBLAS status is handed to cu_note*, which
 * keeps the first failure of the thread (thread-local, like wick_last_error) until the
 * table's sync entry turns it into a wick_status with its message. Nothing here prints,
 * exits or aborts.
 *
 * Per-thread state (per device): the scratch slots of cuda_internal.cuh, the last upload of
 * each slot (to skip identical re-uploads), a cuBLAS handle, and the recorded passes (CUDA
 * graphs, below). It is created on a thread's first op and freed when the thread exits (a
 * pthread key destructor); the main thread's is left for process exit to reclaim.
 *
 * Recorded passes (graph_begin / graph_end, kernels.h): a small decode step is ~15 kernels a
 * layer, each too short to hide its launch, so the host's launch rate bounds it. The first
 * pass of a key runs eagerly (it also grows every scratch slot to what the shape needs), the
 * second is captured on the thread's capture stream into a CUDA graph, later ones replay it:
 * the ops only pack their uploads into the graph's pinned staging memory (which the graph's
 * copy nodes read when it runs) and fold every launch into a fingerprint, and graph_end
 * launches the graph when the fingerprint equals the capture's. Otherwise (or when a pass did
 * something a graph cannot hold) nothing of the pass ran and the caller runs it again
 * eagerly; a key that fails CU_GRAPH_FAILS times in a row is not recorded again. The capture
 * stream is ordered after the context's stream by an event before each launch, and the
 * context's stream waits for the graph's end, so callers see one stream as before.
 * WICK_CUDA_GRAPHS=0 turns recorded passes off.
 *
 * Not here: the kernels. */
#include <pthread.h>

#include <atomic>
#include <mutex>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/cuda_internal.cuh"

/* ---- failure collection ---- */

static thread_local wick_status t_err_st;
static thread_local char t_err_msg[512];

static wick_status status_of(cudaError_t e) {
    switch (e) {
    case cudaErrorMemoryAllocation: return WICK_ERR_NOMEM;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion: return WICK_ERR_UNSUPPORTED;
    default: return WICK_ERR_INTERNAL;
    }
}

static int current_device(void) {
    int d = -1;
    if (cudaGetDevice(&d) != cudaSuccess) d = -1;
    return d;
}

void cu_note(cudaError_t e, const char *what) {
    if (e == cudaSuccess || t_err_st != WICK_OK) return;
    t_err_st = status_of(e);
    snprintf(t_err_msg, sizeof t_err_msg, "CUDA error on cuda:%d in %s: %s (%s)",
             current_device(), what, cudaGetErrorString(e), cudaGetErrorName(e));
}

void cu_note_blas(cublasStatus_t s, const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS || t_err_st != WICK_OK) return;
    t_err_st = s == CUBLAS_STATUS_ALLOC_FAILED ? WICK_ERR_NOMEM : WICK_ERR_INTERNAL;
    snprintf(t_err_msg, sizeof t_err_msg, "cuBLAS error on cuda:%d in %s: %s (%s)",
             current_device(), what, cublasGetStatusString(s), cublasGetStatusName(s));
}

void cu_note_fail(wick_status st, const char *what) {
    if (st == WICK_OK || t_err_st != WICK_OK) return;
    t_err_st = st;
    snprintf(t_err_msg, sizeof t_err_msg, "CUDA backend on cuda:%d: %s", current_device(), what);
}

/* ---- the graph pass of this thread (none when mode == CU_EAGER) ---- */

struct cu_graph;

typedef struct cu_pass {
    int mode;              /* CU_EAGER (no pass), CU_CAPTURE or CU_REPLAY */
    int dev;
    cudaStream_t user;     /* the context's stream */
    cudaStream_t gs;       /* the capture stream the ops see */
    struct cu_graph *g;
    uint64_t fp;           /* fingerprint of what the ops did so far */
    uint64_t epoch;        /* g_epoch when the pass began */
    size_t off;            /* staging bytes taken so far */
    bool bad;              /* an op did what a graph cannot hold */
    struct {
        size_t off, n;
        bool ok;
    } last[CU_SLOTS];      /* each slot's last upload in this pass (equal ones share it) */
} cu_pass;

static thread_local cu_pass t_pass;

cu_run cu_begin(int dev, wk_ctx *ctx) {
    cu_note(cudaSetDevice(dev), "cudaSetDevice");
    cu_run r = {dev, ctx ? (cudaStream_t)ctx->stream : (cudaStream_t)0, CU_EAGER,
                ctx ? ctx->flags : 0u};
    if (t_pass.mode != CU_EAGER && dev == t_pass.dev && r.s == t_pass.user) {
        r.s = t_pass.gs;
        r.mode = t_pass.mode;
    }
    return r;
}

void cu_graph_note(const void *p, size_t n) {
    if (t_pass.mode == CU_EAGER) return;
    const uint8_t *b = (const uint8_t *)p;
    uint64_t h = t_pass.fp;
    for (;;) {
        uint64_t v = 0;
        const size_t k = n < 8 ? n : 8;
        memcpy(&v, b, k);
        h = ((h << 5 | h >> 59) ^ v ^ (uint64_t)k << 59) * 0x9e3779b97f4a7c15ull;
        if (n <= 8) break;
        b += 8, n -= 8;
    }
    t_pass.fp = h;
}

void cu_graph_bad(const char *why) {
    (void)why;
    if (t_pass.mode != CU_EAGER) t_pass.bad = true;
}

/* ---- per-thread state ---- */

typedef struct cu_slot {
    void *dev;             /* device scratch */
    size_t cap;
    void *last;            /* host copy of the last upload (CU_SLOT_SPANS, CU_SLOT_LORA) */
    size_t last_len, last_cap;
    bool last_ok;          /* `last` is what dev holds */
    cudaStream_t stream;   /* stream of the last call that used the slot */
} cu_slot;

#define CU_GRAPHS 32                 /* recorded passes kept per (thread, device) */
#define CU_GRAPH_STAGE (256u << 10)  /* staging bytes of a first capture */
#define CU_GRAPH_ALIGN 4096u         /* upload regions are rounded up to this */
#define CU_GRAPH_FAILS 3             /* failures in a row after which a key runs eagerly */

typedef struct cu_graph {
    uint64_t key;
    bool used;
    int seen;              /* eager passes of the key so far */
    int fails;             /* failed captures / replays in a row */
    cudaGraphExec_t exec;  /* NULL until captured */
    uint64_t fp;           /* fingerprint of the capture */
    uint8_t *h, *d;        /* pinned host staging and its device twin (cap bytes each) */
    size_t cap, need;      /* need: the most staging a pass of the key has taken */
    uint64_t epoch;        /* g_epoch when it was captured */
    cudaEvent_t done;      /* recorded after the graph's last launch */
    bool done_ok, launched;
    uint64_t stamp;        /* last use, for replacement */
} cu_graph;

typedef struct cu_state {
    int dev;
    cu_slot slot[CU_SLOTS];
    cublasHandle_t blas;
    bool blas_ok;
    cudaStream_t blas_stream;
    cu_graph graph[CU_GRAPHS];
    cudaStream_t gs;       /* capture stream (non-blocking) */
    cudaEvent_t ev_in;     /* orders the capture stream after the context's stream */
    bool gs_ok;
    uint64_t clock;
} cu_state;

typedef struct cu_thread {
    cu_state *st[KERNELS_CUDA_MAX_DEVICES];
    void *pack;            /* host packing buffer */
    size_t pack_cap;
} cu_thread;

static pthread_key_t g_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;
static bool g_key_ok;

/* Counts device allocations and frees (buffers, scratch slots), process-wide. A recording
 * holds the device addresses of its moment, and a later buffer at a reused address is not the
 * allocation the driver saw at capture (launching such a graph crashed the driver in
 * cuGraphLaunch on an H100, in tests that free one model and load the next): a recording is
 * replayed only while no allocation has come or gone since its capture, i.e. in the steady
 * state of a decode loop, and is captured anew otherwise. */
static std::atomic<uint64_t> g_epoch{1};

/* Waits for the graph's last launch (its staging may still be read), then drops its
 * recording; the staging memory stays for the next key. */
static void graph_drop(cu_graph *g) {
    if (g->launched) (void)cudaEventSynchronize(g->done);
    g->launched = false;
    if (g->exec) (void)cudaGraphExecDestroy(g->exec);
    g->exec = NULL;
}

static void graph_free(cu_graph *g) {
    graph_drop(g);
    if (g->h) (void)cudaFreeHost(g->h);
    if (g->d) (void)cudaFree(g->d);
    if (g->done_ok) (void)cudaEventDestroy(g->done);
    memset(g, 0, sizeof *g);
}

static void thread_free(void *p) {
    cu_thread *t = (cu_thread *)p;
    if (!t) return;
    for (int d = 0; d < KERNELS_CUDA_MAX_DEVICES; d++) {
        cu_state *s = t->st[d];
        if (!s) continue;
        /* errors here have nobody to report to (the thread is ending): ignored */
        if (cudaSetDevice(d) == cudaSuccess) {
            /* the recordings first: graph_free waits for a launch still reading the slots */
            for (int i = 0; i < CU_GRAPHS; i++) graph_free(&s->graph[i]);
            for (int i = 0; i < CU_SLOTS; i++) {
                if (s->slot[i].dev) (void)cudaFree(s->slot[i].dev);
                free(s->slot[i].last);
            }
            if (s->blas_ok) (void)cublasDestroy(s->blas);
            if (s->gs_ok) {
                (void)cudaStreamDestroy(s->gs);
                (void)cudaEventDestroy(s->ev_in);
            }
        }
        free(s);
    }
    free(t->pack);
    free(t);
}

static void key_init(void) { g_key_ok = pthread_key_create(&g_key, thread_free) == 0; }

static cu_thread *thread_get(void) {
    pthread_once(&g_key_once, key_init);
    if (!g_key_ok) return NULL;
    cu_thread *t = (cu_thread *)pthread_getspecific(g_key);
    if (!t) {
        t = (cu_thread *)calloc(1, sizeof *t);
        if (!t || pthread_setspecific(g_key, t) != 0) {
            free(t);
            return NULL;
        }
    }
    return t;
}

static cu_state *state_get(int dev) {
    cu_thread *t = thread_get();
    if (!t || dev < 0 || dev >= KERNELS_CUDA_MAX_DEVICES) {
        cu_note_fail(WICK_ERR_NOMEM, "out of host memory for the thread's CUDA state");
        return NULL;
    }
    if (!t->st[dev]) {
        t->st[dev] = (cu_state *)calloc(1, sizeof(cu_state));
        if (!t->st[dev]) {
            cu_note_fail(WICK_ERR_NOMEM, "out of host memory for the thread's CUDA state");
            return NULL;
        }
        t->st[dev]->dev = dev;
    }
    return t->st[dev];
}

/* Makes the slot safe to rewrite from stream s: a kernel queued on its previous stream may
 * still be reading it. */
static void slot_claim(cu_slot *sl, cudaStream_t s) {
    if (sl->stream != s) {
        if (sl->dev) cu_note(cudaStreamSynchronize(sl->stream), "cudaStreamSynchronize (scratch)");
        sl->stream = s;
        sl->last_ok = false;
    }
}

void *cu_scratch(const cu_run *r, int slot, size_t bytes) {
    cu_state *st = state_get(r->dev);
    if (!st) return NULL;
    cu_slot *sl = &st->slot[slot];
    if (bytes == 0) bytes = 1;
    if (r->mode != CU_EAGER) {
        /* the pass is ordered after the context's stream and before its next work, so a slot
           last used on that stream needs no claim; one last used on another stream may still
           be in use there (no sync inside a capture: the pass runs eagerly instead, and the
           eager run claims it); growing it would free memory a recording may hold */
        if (sl->stream != t_pass.user) {
            cu_graph_bad("scratch slot last used on another stream");
            return NULL;
        }
        if (sl->cap >= bytes) return sl->dev;
        cu_graph_bad("scratch too small");
        return NULL;
    }
    slot_claim(sl, r->s);
    if (sl->cap < bytes) {
        /* the old block may still be read by queued kernels of this stream */
        if (sl->dev) {
            cu_note(cudaStreamSynchronize(r->s), "cudaStreamSynchronize (scratch)");
            cu_note(cudaFree(sl->dev), "cudaFree (scratch)");
        }
        sl->dev = NULL;
        sl->cap = 0;
        sl->last_ok = false;
        g_epoch.fetch_add(1);
        size_t want = bytes + bytes / 4; /* some headroom: shapes grow a little at a time */
        void *p = NULL;
        cudaError_t e = cudaMalloc(&p, want);
        if (e != cudaSuccess) {
            (void)cudaGetLastError(); /* an allocation failure is not sticky: clear it */
            e = cudaMalloc(&p, bytes);
            want = bytes;
        }
        if (e != cudaSuccess) {
            cu_note(e, "cudaMalloc (scratch)");
            return NULL;
        }
        sl->dev = p;
        sl->cap = want;
    }
    return sl->dev;
}

/* Staging bytes for `bytes` in the pass's graph (offset), or SIZE_MAX when they do not fit
 * (the pass is then unusable; the total is kept so that the next capture has room). */
static size_t graph_take(size_t bytes, size_t align) {
    cu_pass *P = &t_pass;
    const size_t off = (P->off + CU_GRAPH_ALIGN - 1) / CU_GRAPH_ALIGN * CU_GRAPH_ALIGN;
    const size_t n = (bytes + align - 1) / align * align;
    P->off = off + (n ? n : align);
    if (P->off > P->g->need) P->g->need = P->off;
    if (P->off > P->g->cap) {
        cu_graph_bad("staging too small");
        return SIZE_MAX;
    }
    return off;
}

static const void *graph_upload(const cu_run *r, int slot, const void *host, size_t bytes) {
    cu_pass *P = &t_pass;
    cu_graph *g = P->g;
    if (P->last[slot].ok && P->last[slot].n == bytes &&
        memcmp(g->h + P->last[slot].off, host, bytes) == 0) {
        const size_t rec[3] = {(size_t)slot, P->last[slot].off, 0};
        cu_graph_note(rec, sizeof rec);
        return g->d + P->last[slot].off;
    }
    /* the region is rounded up: a pack that grows by a few bytes keeps the same layout, and
       the copy node moves the whole region */
    const size_t off = graph_take(bytes, CU_GRAPH_ALIGN);
    if (off == SIZE_MAX) return NULL;
    const size_t n = (bytes + CU_GRAPH_ALIGN - 1) / CU_GRAPH_ALIGN * CU_GRAPH_ALIGN;
    memcpy(g->h + off, host, bytes);
    P->last[slot].off = off, P->last[slot].n = bytes, P->last[slot].ok = true;
    const size_t rec[3] = {(size_t)slot, off, n ? n : CU_GRAPH_ALIGN};
    cu_graph_note(rec, sizeof rec);
    if (r->mode == CU_CAPTURE)
        cu_note(cudaMemcpyAsync(g->d + off, g->h + off, rec[2], cudaMemcpyHostToDevice, r->s),
                "cudaMemcpyAsync (graph upload)");
    return g->d + off;
}

const void *cu_upload(const cu_run *r, int slot, const void *host, size_t bytes) {
    if (r->mode != CU_EAGER) return graph_upload(r, slot, host, bytes);
    cu_state *st = state_get(r->dev);
    if (!st) return NULL;
    cu_slot *sl = &st->slot[slot];
    slot_claim(sl, r->s);
    if (sl->last_ok && sl->last_len == bytes && sl->dev && memcmp(sl->last, host, bytes) == 0)
        return sl->dev;
    void *d = cu_scratch(r, slot, bytes);
    if (!d) return NULL;
    sl->last_ok = false;
    /* pageable source: the call returns once the bytes are staged, so `host` may be reused */
    cudaError_t e = cudaMemcpyAsync(d, host, bytes, cudaMemcpyHostToDevice, r->s);
    cu_note(e, "cudaMemcpyAsync (upload)");
    if (e != cudaSuccess) return NULL;
    if (sl->last_cap < bytes) {
        void *p = realloc(sl->last, bytes);
        if (!p) return d; /* only the cache is lost */
        sl->last = p;
        sl->last_cap = bytes;
    }
    memcpy(sl->last, host, bytes);
    sl->last_len = bytes;
    sl->last_ok = true;
    return d;
}

void *cu_pack_buf(size_t bytes) {
    cu_thread *t = thread_get();
    if (!t) {
        cu_note_fail(WICK_ERR_NOMEM, "out of host memory for the thread's CUDA state");
        return NULL;
    }
    if (t->pack_cap < bytes) {
        void *p = realloc(t->pack, bytes);
        if (!p) {
            cu_note_fail(WICK_ERR_NOMEM, "out of host memory packing a CUDA upload");
            return NULL;
        }
        t->pack = p;
        t->pack_cap = bytes;
    }
    return t->pack;
}

cublasHandle_t cu_blas(const cu_run *r) {
    cu_state *st = state_get(r->dev);
    if (!st) return NULL;
    if (!st->blas_ok) {
        cublasStatus_t s = cublasCreate(&st->blas);
        cu_note_blas(s, "cublasCreate");
        if (s != CUBLAS_STATUS_SUCCESS) return NULL;
        /* FP32 compute without TF32: CUBLAS_DEFAULT_MATH keeps at least the requested
           precision, so sgemm never rounds its inputs to TF32's 10-bit mantissa */
        s = cublasSetMathMode(st->blas, CUBLAS_DEFAULT_MATH);
        cu_note_blas(s, "cublasSetMathMode");
        st->blas_ok = true;
        st->blas_stream = (cudaStream_t)0;
    }
    if (st->blas_stream != r->s) {
        cublasStatus_t s = cublasSetStream(st->blas, r->s);
        cu_note_blas(s, "cublasSetStream");
        if (s != CUBLAS_STATUS_SUCCESS) return NULL;
        st->blas_stream = r->s;
    }
    return st->blas;
}

/* ---- WICK_CUDA_PROFILE=1: GPU time of every op by name and shape, printed at exit ----
 * Each op of an eager pass is bracketed by two events on its stream; the table's sync reads
 * their elapsed times into a process-wide table, printed to stderr at exit (largest first).
 * Recorded passes are off while profiling (a replay would hide its ops). A developer's tool
 * for GPU machines without nsys; it costs two event records an op. */

static bool prof_on(void) {
    static const bool on = [] {
        const char *v = getenv("WICK_CUDA_PROFILE");
        return v && *v && strcmp(v, "0") != 0;
    }();
    return on;
}

#define PROF_KEYS 512
#define PROF_PENDING 4096
typedef struct prof_ent {
    char key[96];
    long long calls;
    double ms;
} prof_ent;
static prof_ent g_prof[PROF_KEYS];
static int g_prof_n;
static pthread_mutex_t g_prof_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_prof_once = PTHREAD_ONCE_INIT;

typedef struct prof_pend {
    cudaEvent_t a, b;
    bool made;
    int ent;
} prof_pend;
static thread_local prof_pend *t_pend; /* PROF_PENDING, made on first use */
static thread_local int t_npend;

static int prof_cmp(const void *x, const void *y) {
    const double a = ((const prof_ent *)x)->ms, b = ((const prof_ent *)y)->ms;
    return a < b ? 1 : a > b ? -1 : 0;
}

static void prof_print(void) {
    pthread_mutex_lock(&g_prof_mu);
    qsort(g_prof, (size_t)g_prof_n, sizeof *g_prof, prof_cmp);
    double tot = 0;
    for (int i = 0; i < g_prof_n; i++) tot += g_prof[i].ms;
    fprintf(stderr, "\nWICK_CUDA_PROFILE: GPU time by op and shape (%.3f ms in all)\n"
                    "%-60s %9s %11s %9s %6s\n", tot, "op", "calls", "total ms", "mean us", "share");
    for (int i = 0; i < g_prof_n; i++)
        fprintf(stderr, "%-60s %9lld %11.3f %9.2f %5.1f%%\n", g_prof[i].key, g_prof[i].calls,
                g_prof[i].ms, 1e3 * g_prof[i].ms / (double)(g_prof[i].calls ? g_prof[i].calls : 1),
                tot > 0 ? 100.0 * g_prof[i].ms / tot : 0.0);
    pthread_mutex_unlock(&g_prof_mu);
}

static void prof_init(void) { atexit(prof_print); }

static int prof_entry(const char *key) {
    pthread_once(&g_prof_once, prof_init);
    pthread_mutex_lock(&g_prof_mu);
    int i = 0;
    while (i < g_prof_n && strcmp(g_prof[i].key, key) != 0) i++;
    if (i == g_prof_n) {
        if (g_prof_n == PROF_KEYS) i = -1;
        else snprintf(g_prof[g_prof_n++].key, sizeof g_prof[0].key, "%s", key);
    }
    pthread_mutex_unlock(&g_prof_mu);
    return i;
}

/* Reads the elapsed times of this thread's bracketed ops (their stream was just synced). */
static void prof_resolve(void) {
    for (int i = 0; i < t_npend; i++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, t_pend[i].a, t_pend[i].b) != cudaSuccess) {
            (void)cudaGetLastError();
            continue;
        }
        pthread_mutex_lock(&g_prof_mu);
        g_prof[t_pend[i].ent].calls++;
        g_prof[t_pend[i].ent].ms += ms;
        pthread_mutex_unlock(&g_prof_mu);
    }
    t_npend = 0;
}

/* Brackets one op call of an eager pass (no-op unless WICK_CUDA_PROFILE is set). */
struct cu_prof {
    int slot = -1;
    cudaStream_t s = 0;
    cu_prof(int dev, wk_ctx *c, const char *fmt, ...) {
        if (!prof_on() || t_pass.mode != CU_EAGER) return;
        if (!t_pend && !(t_pend = (prof_pend *)calloc(PROF_PENDING, sizeof *t_pend))) return;
        if (t_npend >= PROF_PENDING) return; /* a pass this long is timed in part */
        char key[96];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(key, sizeof key, fmt, ap);
        va_end(ap);
        const int e = prof_entry(key);
        if (e < 0) return;
        prof_pend *p = &t_pend[t_npend];
        if (cudaSetDevice(dev) != cudaSuccess) return;
        if (!p->made) {
            if (cudaEventCreate(&p->a) != cudaSuccess || cudaEventCreate(&p->b) != cudaSuccess) {
                (void)cudaGetLastError();
                return;
            }
            p->made = true;
        }
        s = c ? (cudaStream_t)c->stream : (cudaStream_t)0;
        p->ent = e;
        if (cudaEventRecord(p->a, s) != cudaSuccess) return;
        slot = t_npend++;
    }
    ~cu_prof() {
        if (slot >= 0 && cudaEventRecord(t_pend[slot].b, s) != cudaSuccess) {
            (void)cudaGetLastError();
            t_npend = slot; /* drop it */
        }
    }
};

/* ---- buffers and sync ---- */

static void *buf_alloc(int dev, wk_ctx *ctx, size_t bytes) {
    cu_graph_bad("buf_alloc inside a graph pass");
    g_epoch.fetch_add(1);
    cu_run r = cu_begin(dev, ctx);
    if (bytes == 0) bytes = 1;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        /* callers report a NULL buffer as out of memory themselves; an allocation failure
           is not sticky, so clear it rather than fail every later op of this thread */
        (void)cudaGetLastError();
        return NULL;
    }
    e = cudaMemsetAsync(p, 0, bytes, r.s);
    if (e == cudaSuccess) e = cudaStreamSynchronize(r.s);
    if (e != cudaSuccess) {
        cu_note(e, "cudaMemset (buf_alloc)");
        (void)cudaFree(p);
        return NULL;
    }
    return p;
}

static void buf_free(int dev, wk_ctx *ctx, void *p, size_t bytes) {
    (void)bytes;
    if (!p) return;
    cu_graph_bad("buf_free inside a graph pass");
    g_epoch.fetch_add(1);
    cu_begin(dev, ctx);
    cu_note(cudaFree(p), "cudaFree");
}

static bool is_device_ptr(const void *p) {
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

/* Copies in any direction (cudaMemcpyDefault: unified addressing tells host from device).
 * A copy that touches host memory is waited for, so the host side may be read or reused as
 * soon as buf_copy returns; device-to-device copies stay queued on the stream. */
static void buf_copy(int dev, wk_ctx *ctx, void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return;
    cu_run r = cu_begin(dev, ctx);
    if (r.mode != CU_EAGER) {
        /* a graph pass: host data goes through the staging memory (copied now, moved to dst
           when the graph runs); device-to-device copies are recorded; nothing can come back
           to the host before the graph runs */
        const bool dd = is_device_ptr(dst), sd = is_device_ptr(src);
        if (!dd) {
            cu_graph_bad("device-to-host copy inside a graph pass");
            return;
        }
        const void *from = src;
        if (!sd) {
            const size_t off = graph_take(bytes, 16);
            if (off == SIZE_MAX) return;
            memcpy(t_pass.g->h + off, src, bytes);
            from = t_pass.g->h + off;
        }
        const void *rec[2] = {dst, sd ? src : (const void *)0};
        const size_t rn[2] = {bytes, sd ? 0 : (size_t)((const uint8_t *)from - t_pass.g->h)};
        cu_graph_note(rec, sizeof rec);
        cu_graph_note(rn, sizeof rn);
        if (r.mode == CU_CAPTURE)
            cu_note(cudaMemcpyAsync(dst, from, bytes, sd ? cudaMemcpyDeviceToDevice :
                                    cudaMemcpyHostToDevice, r.s), "cudaMemcpyAsync (graph copy)");
        return;
    }
    cu_note(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, r.s), "cudaMemcpyAsync (buf_copy)");
    if (!is_device_ptr(dst) || !is_device_ptr(src))
        cu_note(cudaStreamSynchronize(r.s), "cudaStreamSynchronize (buf_copy)");
}

/* weight_upload: host matrix W into dst in the device layout (cuda_internal.cuh): Q4_0, Q8_0
 * and Q6_K split into quants and scales, a few MiB of rows at a time through a host buffer;
 * the other types copied as they are. */
static void weight_upload(int dev, wk_ctx *ctx, void *dst, const wk_weight *W) {
    const size_t rb = dtype_row_bytes(W->dt, W->cols), rows = (size_t)W->rows;
    if (!cu_split_dt(W->dt) || rows == 0 || W->cols <= 0) {
        buf_copy(dev, ctx, dst, W->data, rb * rows);
        return;
    }
    const size_t qb = (size_t)cu_split_qb(W->dt), sb = (size_t)cu_split_sb(W->dt), bb = qb + sb;
    const size_t qo = (size_t)cu_split_qoff(W->dt), so = (size_t)cu_split_soff(W->dt);
    const size_t nb = rb / bb;
    size_t chunk = ((size_t)8 << 20) / rb;
    if (chunk < 1) chunk = 1;
    if (chunk > rows) chunk = rows;
    uint8_t *h = (uint8_t *)malloc(chunk * rb);
    if (!h) {
        cu_note_fail(WICK_ERR_NOMEM, "out of host memory laying out a weight for the device");
        return;
    }
    uint8_t *d = (uint8_t *)dst;
    for (size_t r0 = 0; r0 < rows; r0 += chunk) {
        const size_t m = r0 + chunk < rows ? chunk : rows - r0, k = m * nb;
        const uint8_t *src = (const uint8_t *)W->data + r0 * rb;
        uint8_t *hq = h, *hs = h + k * qb;
        for (size_t i = 0; i < k; i++) {
            memcpy(hq + i * qb, src + i * bb + qo, qb);
            memcpy(hs + i * sb, src + i * bb + so, sb);
        }
        buf_copy(dev, ctx, d + r0 * nb * qb, hq, k * qb);
        buf_copy(dev, ctx, d + rows * nb * qb + r0 * nb * sb, hs, k * sb);
    }
    free(h);
}

static wick_status table_sync(int dev, wk_ctx *ctx) {
    if (t_pass.mode != CU_EAGER) { /* the caller's mistake: graph_end first */
        cu_graph_bad("sync inside a graph pass");
        return WICK_OK;
    }
    cu_run r = cu_begin(dev, ctx);
    cu_note(cudaStreamSynchronize(r.s), "cudaStreamSynchronize");
    cu_note(cudaGetLastError(), "a kernel launch");
    if (prof_on()) prof_resolve();
    if (t_err_st == WICK_OK) return WICK_OK;
    wick_status st = err_set(t_err_st, "%s", t_err_msg);
    t_err_st = WICK_OK;
    t_err_msg[0] = '\0';
    return st;
}

/* ---- recorded passes ---- */

static bool graphs_on(void) {
    static const bool on = [] {
        const char *v = getenv("WICK_CUDA_GRAPHS");
        return !(v && strcmp(v, "0") == 0) && !prof_on();
    }();
    return on;
}

static cu_graph *graph_find(cu_state *st, uint64_t key) {
    cu_graph *free_g = NULL, *old = NULL;
    for (int i = 0; i < CU_GRAPHS; i++) {
        cu_graph *g = &st->graph[i];
        if (g->used && g->key == key) return g;
        if (!g->used && !free_g) free_g = g;
        if (g->used && (!old || g->stamp < old->stamp)) old = g;
    }
    cu_graph *g = free_g ? free_g : old;
    graph_drop(g);
    g->key = key, g->used = true, g->seen = 0, g->fails = 0, g->fp = 0, g->need = 0;
    return g;
}

static int graph_begin(int dev, wk_ctx *ctx, uint64_t key) {
    if (!graphs_on() || t_pass.mode != CU_EAGER || t_err_st != WICK_OK) return WK_GRAPH_OFF;
    cu_run r = cu_begin(dev, ctx);
    cu_state *st = state_get(dev);
    if (!st || t_err_st != WICK_OK) return WK_GRAPH_OFF; /* the failure is reported at sync */
    if (!st->gs_ok) {
        if (cudaStreamCreateWithFlags(&st->gs, cudaStreamNonBlocking) != cudaSuccess) {
            (void)cudaGetLastError();
            return WK_GRAPH_OFF;
        }
        if (cudaEventCreateWithFlags(&st->ev_in, cudaEventDisableTiming) != cudaSuccess) {
            (void)cudaGetLastError();
            (void)cudaStreamDestroy(st->gs);
            return WK_GRAPH_OFF;
        }
        st->gs_ok = true;
    }
    cu_graph *g = graph_find(st, key);
    g->stamp = ++st->clock;
    if (g->exec && g->epoch != g_epoch.load()) graph_drop(g); /* captured anew below */
    if (g->fails >= CU_GRAPH_FAILS) return WK_GRAPH_OFF;
    if (!g->exec && g->seen < 1) { /* warm-up: scratch slots grow to this shape eagerly */
        g->seen++;
        return WK_GRAPH_OFF;
    }
    if (g->launched) { /* its staging is rewritten below: the last launch must be done */
        cu_note(cudaEventSynchronize(g->done), "cudaEventSynchronize (graph)");
        g->launched = false;
        if (t_err_st != WICK_OK) return WK_GRAPH_OFF;
    }
    if (!g->done_ok) {
        if (cudaEventCreateWithFlags(&g->done, cudaEventDisableTiming) != cudaSuccess) {
            (void)cudaGetLastError();
            g->fails = CU_GRAPH_FAILS;
            return WK_GRAPH_OFF;
        }
        g->done_ok = true;
    }
    int mode = CU_REPLAY;
    if (!g->exec) {
        const size_t want = g->need * 2 > CU_GRAPH_STAGE ? g->need * 2 : CU_GRAPH_STAGE;
        if (g->cap < want) {
            if (g->h) (void)cudaFreeHost(g->h);
            if (g->d) (void)cudaFree(g->d);
            g->h = g->d = NULL, g->cap = 0;
            if (cudaHostAlloc((void **)&g->h, want, cudaHostAllocDefault) != cudaSuccess ||
                cudaMalloc((void **)&g->d, want) != cudaSuccess) {
                (void)cudaGetLastError();
                if (g->h) (void)cudaFreeHost(g->h);
                g->h = g->d = NULL;
                g->fails = CU_GRAPH_FAILS;
                return WK_GRAPH_OFF;
            }
            g->cap = want;
        }
        if (cudaStreamBeginCapture(st->gs, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
            (void)cudaGetLastError();
            g->fails++;
            return WK_GRAPH_OFF;
        }
        mode = CU_CAPTURE;
    }
    memset(&t_pass, 0, sizeof t_pass);
    t_pass.mode = mode, t_pass.dev = dev, t_pass.user = r.s, t_pass.gs = st->gs, t_pass.g = g;
    t_pass.epoch = g_epoch.load();
    return mode == CU_CAPTURE ? WK_GRAPH_CAPTURE : WK_GRAPH_REPLAY;
}

static void graph_end(int dev, wk_ctx *ctx, bool *redo) {
    *redo = false;
    (void)ctx;
    if (t_pass.mode == CU_EAGER) return;
    const cu_pass P = t_pass;
    t_pass.mode = CU_EAGER;
    cu_graph *g = P.g;
    cu_note(cudaSetDevice(dev), "cudaSetDevice");
    bool ok = !P.bad && t_err_st == WICK_OK;
    if (P.mode == CU_CAPTURE) {
        cudaGraph_t graph = NULL;
        if (cudaStreamEndCapture(P.gs, &graph) != cudaSuccess || !graph) ok = false;
        if (ok && cudaGraphInstantiate(&g->exec, graph, 0) != cudaSuccess) {
            g->exec = NULL;
            ok = false;
        }
        if (graph) (void)cudaGraphDestroy(graph);
        if (ok) g->fp = P.fp, g->epoch = P.epoch;
    } else if (P.fp != g->fp) {
        ok = false;
    }
    if (!ok) {
        /* nothing of the pass ran; what it noted (a capture's refusals, a replay that
           differs) goes with it: the eager run meets any real failure again */
        (void)cudaGetLastError();
        t_err_st = WICK_OK;
        t_err_msg[0] = '\0';
        graph_drop(g);
        g->fails++;
        *redo = true;
        return;
    }
    cu_state *st = state_get(dev); /* made by graph_begin */
    if (!st) return;
    cu_note(cudaEventRecord(st->ev_in, P.user), "cudaEventRecord (graph)");
    cu_note(cudaStreamWaitEvent(P.gs, st->ev_in, 0), "cudaStreamWaitEvent (graph)");
    cu_note(cudaGraphLaunch(g->exec, P.gs), "cudaGraphLaunch");
    cu_note(cudaEventRecord(g->done, P.gs), "cudaEventRecord (graph)");
    cu_note(cudaStreamWaitEvent(P.user, g->done, 0), "cudaStreamWaitEvent (graph)");
    g->launched = true;
    g->fails = 0;
}

/* softmax is a host op by the table's contract (sampling runs on the host in this version) */
static void host_softmax(float *x, int n) { kernels_ref()->softmax(x, n); }

/* ---- one table per device ---- */

/* A count as its profile bucket: "=1", "<=8", "<=64", "<=512", ">512". */
static const char *nb(long long n) {
    return n <= 1 ? "=1" : n <= 8 ? "<=8" : n <= 64 ? "<=64" : n <= 512 ? "<=512" : ">512";
}

template <int D> struct dev_ops {
    static void *alloc(wk_ctx *c, size_t b) { return buf_alloc(D, c, b); }
    static void free_(wk_ctx *c, void *p, size_t b) { buf_free(D, c, p, b); }
    static void copy(wk_ctx *c, void *d, const void *s, size_t b) {
        cu_prof P(D, c, "buf_copy %s", b <= 4096 ? "<=4KiB" : b <= (1 << 20) ? "<=1MiB" : ">1MiB");
        buf_copy(D, c, d, s, b);
    }
    static void wup(wk_ctx *c, void *d, const wk_weight *W) { weight_upload(D, c, d, W); }
    static wick_status sync(wk_ctx *c) { return table_sync(D, c); }
    static int gbegin(wk_ctx *c, uint64_t key) { return graph_begin(D, c, key); }
    static void gend(wk_ctx *c, bool *redo) { graph_end(D, c, redo); }
    static void embed(wk_ctx *c, float *o, const wk_weight *W, const int32_t *ids, int n) {
        cu_prof P(D, c, "embed %s n%s", dtype_name(W->dt), nb(n));
        cu_run r = cu_begin(D, c);
        cu_embed(&r, o, W, ids, n);
    }
    static void rmsnorm(wk_ctx *c, float *o, const float *x, const float *w, int n, int d,
                        float eps) {
        cu_prof P(D, c, "rmsnorm d=%d n%s", d, nb(n));
        cu_run r = cu_begin(D, c);
        cu_rmsnorm(&r, o, x, w, n, d, eps);
    }
    static void matmul(wk_ctx *c, float *y, const float *x, const wk_weight *W, const float *b,
                       int n) {
        cu_prof P(D, c, "matmul %lldx%lld %s n%s", (long long)W->rows, (long long)W->cols,
                  dtype_name(W->dt), nb(n));
        cu_run r = cu_begin(D, c);
        cu_matmul(&r, y, x, W, b, n);
    }
    static void rope(wk_ctx *c, float *x, int n, int nh, int hd, int rd, const int32_t *pos,
                     const float *cs, const float *sn) {
        cu_prof P(D, c, "rope n%s", nb(n));
        cu_run r = cu_begin(D, c);
        cu_rope(&r, x, n, nh, hd, rd, pos, cs, sn, false);
    }
    static void rope_il(wk_ctx *c, float *x, int n, int nh, int hd, int rd, const int32_t *pos,
                        const float *cs, const float *sn) {
        cu_prof P(D, c, "rope (interleaved) n%s", nb(n));
        cu_run r = cu_begin(D, c);
        cu_rope(&r, x, n, nh, hd, rd, pos, cs, sn, true);
    }
    static void kv_store(wk_ctx *c, const wk_kv_layer *kv, const float *k, const float *v,
                         const wk_span *sp, int ns, int nkv, int hd) {
        cu_prof P(D, c, "kv_store %s spans%s", dtype_name(kv->dt), nb(ns));
        cu_run r = cu_begin(D, c);
        cu_kv_store(&r, kv, k, v, sp, ns, nkv, hd);
    }
    static void attention(wk_ctx *c, float *o, const float *q, const wk_kv_layer *kv,
                          const wk_span *sp, int ns, int nh, int nkv, int hd, int win, float sc,
                          float cap) {
        int rows = 0, keys = 0;
        for (int i = 0; i < ns && prof_on(); i++) {
            rows += sp[i].n;
            keys = sp[i].pos0 + sp[i].n > keys ? sp[i].pos0 + sp[i].n : keys;
        }
        cu_prof P(D, c, "attention %s rows%s keys%s", dtype_name(kv->dt), nb(rows), nb(keys));
        cu_run r = cu_begin(D, c);
        cu_attention(&r, o, q, kv, sp, ns, nh, nkv, hd, win, sc, cap);
    }
    static void mm_multi(wk_ctx *c, int count, float *const *y, const float *x,
                         const wk_weight *const *W, const float *const *b, int n) {
        cu_prof P(D, c, "matmul_multi %d x %lldx%lld %s n%s", count, (long long)W[0]->rows,
                  (long long)W[0]->cols, dtype_name(W[0]->dt), nb(n));
        cu_run r = cu_begin(D, c);
        cu_matmul_multi(&r, count, y, x, W, b, n);
    }
    static void mm_glu(wk_ctx *c, float *h, float *g, float *u, const float *x,
                       const wk_weight *Wg, const wk_weight *Wu, const float *bg, const float *bu,
                       bool gt, int n) {
        cu_prof P(D, c, "matmul_glu %lldx%lld %s n%s", (long long)Wg->rows, (long long)Wg->cols,
                  dtype_name(Wg->dt), nb(n));
        cu_run r = cu_begin(D, c);
        cu_matmul_glu(&r, h, g, u, x, Wg, Wu, bg, bu, gt, n);
    }
    static void mm_add(wk_ctx *c, float *y, float *t, const float *x, const wk_weight *W,
                       const float *b, int n) {
        cu_prof P(D, c, "matmul_add %lldx%lld %s n%s", (long long)W->rows, (long long)W->cols,
                  dtype_name(W->dt), nb(n));
        cu_run r = cu_begin(D, c);
        cu_matmul_add(&r, y, t, x, W, b, n);
    }
    static void rope_qk(wk_ctx *c, float *q, float *k, int n, int nh, int nkv, int hd, int rd,
                        const int32_t *pos, const float *cs, const float *sn) {
        cu_prof P(D, c, "rope_qk n%s", nb(n));
        cu_run r = cu_begin(D, c);
        cu_rope_qk(&r, q, k, n, nh, nkv, hd, rd, pos, cs, sn);
    }
    static void silu_mul(wk_ctx *c, float *o, const float *g, const float *u, long n) {
        cu_prof P(D, c, "silu_mul");
        cu_run r = cu_begin(D, c);
        cu_silu_mul(&r, o, g, u, n);
    }
    static void gelu_tanh_mul(wk_ctx *c, float *o, const float *g, const float *u, long n) {
        cu_prof P(D, c, "gelu_tanh_mul");
        cu_run r = cu_begin(D, c);
        cu_gelu_tanh_mul(&r, o, g, u, n);
    }
    static void softcap(wk_ctx *c, float *x, long n, float cap) {
        cu_prof P(D, c, "softcap");
        cu_run r = cu_begin(D, c);
        cu_softcap(&r, x, n, cap);
    }
    static void add(wk_ctx *c, float *y, const float *x, long n) {
        cu_prof P(D, c, "add");
        cu_run r = cu_begin(D, c);
        cu_add(&r, y, x, n);
    }
    static void axpy(wk_ctx *c, float *y, float a, const float *x, long n) {
        cu_prof P(D, c, "axpy");
        cu_run r = cu_begin(D, c);
        cu_axpy(&r, y, a, x, n);
    }
    static void lora(wk_ctx *c, float *y, const float *x, const wk_lora_run *ru, int nr,
                     float *scr) {
        cu_prof P(D, c, "lora runs%s", nb(nr));
        cu_run r = cu_begin(D, c);
        cu_lora(&r, y, x, ru, nr, scr);
    }
    static void gather(wk_ctx *c, float *dst, const float *src, const int32_t *idx, int n,
                       int cols) {
        cu_prof P(D, c, "gather_rows");
        cu_run r = cu_begin(D, c);
        cu_gather_rows(&r, dst, src, idx, n, cols);
    }
    static void scatter(wk_ctx *c, float *y, const float *src, const int32_t *idx, const float *w,
                        int n, int cols) {
        cu_prof P(D, c, "scatter_rows");
        cu_run r = cu_begin(D, c);
        cu_scatter_rows(&r, y, src, idx, w, n, cols);
    }
};

#define CU_TABLE(D)                                                                            \
    {                                                                                          \
        .name = "cuda:" #D, .buf_alloc = dev_ops<D>::alloc, .buf_free = dev_ops<D>::free_,    \
        .buf_copy = dev_ops<D>::copy, .sync = dev_ops<D>::sync,                                \
        .graph_begin = dev_ops<D>::gbegin, .graph_end = dev_ops<D>::gend,                      \
        .pack_weight = nullptr, .weight_upload = dev_ops<D>::wup,                              \
        .embed = dev_ops<D>::embed,                                                            \
        .rmsnorm = dev_ops<D>::rmsnorm, .matmul = dev_ops<D>::matmul,                          \
        .rope = dev_ops<D>::rope, .rope_interleaved = dev_ops<D>::rope_il,                     \
        .kv_store = dev_ops<D>::kv_store, .attention = dev_ops<D>::attention,                  \
        .softmax = host_softmax, .silu_mul = dev_ops<D>::silu_mul,                              \
        .gelu_tanh_mul = dev_ops<D>::gelu_tanh_mul, .softcap = dev_ops<D>::softcap,           \
        .gelu = nullptr, .layernorm = nullptr, .attention_enc = nullptr, /* encoders: CPU */  \
        .matmul_gelu = nullptr,                                                                \
        .add = dev_ops<D>::add,                                                                \
        .axpy = dev_ops<D>::axpy, .lora = dev_ops<D>::lora,                                    \
        .gather_rows = dev_ops<D>::gather, .scatter_rows = dev_ops<D>::scatter,                \
        .matmul_multi = dev_ops<D>::mm_multi, .matmul_glu = dev_ops<D>::mm_glu,                \
        .matmul_add = dev_ops<D>::mm_add, .rope_qk = dev_ops<D>::rope_qk,                      \
    }

static kernel_table g_tables[KERNELS_CUDA_MAX_DEVICES] = { /* fusions cleared at open by WICK_CUDA_FUSE=0 */
    CU_TABLE(0),  CU_TABLE(1),  CU_TABLE(2),  CU_TABLE(3),  CU_TABLE(4),  CU_TABLE(5),
    CU_TABLE(6),  CU_TABLE(7),  CU_TABLE(8),  CU_TABLE(9),  CU_TABLE(10), CU_TABLE(11),
    CU_TABLE(12), CU_TABLE(13), CU_TABLE(14), CU_TABLE(15),
};

extern "C" wick_status kernels_cuda_open(int device, const kernel_table **out) {
    *out = NULL;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return err_set(WICK_ERR_UNSUPPORTED, "cuda:%d: no usable CUDA device (%s: %s)", device,
                       cudaGetErrorName(e), cudaGetErrorString(e));
    }
    if (count == 0) return err_set(WICK_ERR_UNSUPPORTED, "cuda:%d: no CUDA device found", device);
    if (device < 0 || device >= count)
        return err_set(WICK_ERR_INVALID_ARG, "cuda:%d: this machine has %d CUDA device%s "
                       "(cuda:0 .. cuda:%d)", device, count, count == 1 ? "" : "s", count - 1);
    if (device >= KERNELS_CUDA_MAX_DEVICES)
        return err_set(WICK_ERR_UNSUPPORTED, "cuda:%d: wick addresses at most %d devices", device,
                       KERNELS_CUDA_MAX_DEVICES);
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, device);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return err_set(WICK_ERR_UNSUPPORTED, "cuda:%d: cannot read the device properties (%s)",
                       device, cudaGetErrorString(e));
    }
    if (prop.major < 9)
        return err_set(WICK_ERR_UNSUPPORTED, "cuda:%d is %s (compute capability %d.%d); this "
                       "build of wick has code for compute capability 9.0 and newer (H100, H200)",
                       device, prop.name, prop.major, prop.minor);
    /* create the context now, so a broken driver fails here rather than in the first op */
    e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaFree(0);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return err_set(status_of(e), "cuda:%d: cannot initialise the device (%s: %s)", device,
                       cudaGetErrorName(e), cudaGetErrorString(e));
    }
    /* WICK_CUDA_FUSE=0: the layer runs the plain ops (a developer's A/B switch) */
    static const bool fuse_off = [] {
        const char *v = getenv("WICK_CUDA_FUSE");
        return v && strcmp(v, "0") == 0;
    }();
    if (fuse_off) {
        static std::once_flag once;
        std::call_once(once, [] {
            for (auto &t : g_tables)
                t.matmul_multi = nullptr, t.matmul_glu = nullptr, t.matmul_add = nullptr,
                t.rope_qk = nullptr;
        });
    }
    *out = &g_tables[device];
    return WICK_OK;
}
