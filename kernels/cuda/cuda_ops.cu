/* cuda_ops.cu — the row-wise and elementwise ops of the CUDA table (rmsnorm, both RoPE
 * layouts, silu_mul, add, axpy, gather_rows) and unmerged LoRA.
 *
 * Elementwise ops compute each element with the reference's operations in its order
 * (-fmad=false keeps a·b + c two roundings), so add, axpy, gather and the RoPE rotation are
 * bit-identical to kernels/ref; silu_mul differs only by CUDA's expf (within 2 ulp of libm's);
 * rmsnorm only by the order of its sum of squares.
 *
 * LoRA: the run descriptors (device pointers of A, B and t, scale, shapes) are packed on the
 * host and uploaded per call (cu_upload), then two kernels cover every run at once: t = x·Aᵀ
 * (one warp per (run, row, rank index)) and y += scale·(t·Bᵀ) (one thread per (run, row,
 * output)), the product rounded before its add as PEFT does. Runs must cover disjoint rows
 * (the forward pass builds them so). A run without its own t gets a region of the thread's
 * device scratch (CU_SLOT_LORA_T), one after another, instead of the caller's scratch: that
 * one is laid out as row0·r per run, and two runs of different ranks can overlap there
 * (rows 0..47 at r = 8 take floats 0..383, rows 48.. at r = 4 start at float 192). The
 * reference finishes each run before the next, so that is harmless there; here every run's
 * t is written before any is read. Not here: matmul, attention. */
#include "kernels/cuda/cuda_internal.cuh"

/* ---- rmsnorm: one block per row ---- */

__global__ void k_rmsnorm(float *out, const float *x, const float *w, int n, int d, float eps) {
    __shared__ float part[CU_THREADS / 32];
    for (long long i = blockIdx.x; i < n; i += gridDim.x) {
        const float *xi = x + i * d;
        float *oi = out + i * d;
        float ss = 0.0f;
        for (int j = threadIdx.x; j < d; j += blockDim.x) ss = fmaf(xi[j], xi[j], ss);
        ss = cu_warp_sum(ss);
        if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
        __syncthreads();
        float tot = 0.0f;
        for (int k = 0; k < (int)(blockDim.x / 32); k++) tot += part[k];
        const float inv = 1.0f / sqrtf(tot / (float)d + eps);
        /* out may equal x: each element is read and written by the same thread, after every
           thread's reads of the sum above */
        for (int j = threadIdx.x; j < d; j += blockDim.x) oi[j] = w[j] * (xi[j] * inv);
        __syncthreads(); /* part[] is rewritten by the next row */
    }
}

void cu_rmsnorm(const cu_run *r, float *out, const float *x, const float *w, int n, int d,
                float eps) {
    if (n <= 0 || d <= 0) return;
    const unsigned grid = n < (1 << 20) ? (unsigned)n : (1u << 20);
    cu_launch(r, "rmsnorm", k_rmsnorm, grid, CU_THREADS, 0, out, x, w, n, d, eps);
}

/* ---- RoPE: one thread per rotated pair ---- */

template <bool IL>
__global__ void k_rope(float *x, long long pairs, int heads, int hd, int rot, const int32_t *pos,
                       const float *cs, const float *sn) {
    const int half = rot / 2;
    for (long long it = (long long)blockIdx.x * blockDim.x + threadIdx.x; it < pairs;
         it += (long long)gridDim.x * blockDim.x) {
        const long long rh = it / half; /* row · heads + head */
        const int j = (int)(it % half);
        const long long i = rh / heads;
        const float c = cs[(long long)pos[i] * half + j], s = sn[(long long)pos[i] * half + j];
        float *v = x + rh * hd;
        const int ia = IL ? 2 * j : j, ib = IL ? 2 * j + 1 : j + half;
        const float a = v[ia], b = v[ib];
        v[ia] = a * c - b * s;
        v[ib] = b * c + a * s;
    }
}

void cu_rope(const cu_run *r, float *x, int n, int n_heads, int head_dim, int rot_dim,
             const int32_t *pos, const float *cos, const float *sin, bool interleaved) {
    if (n <= 0 || n_heads <= 0 || rot_dim < 2) return;
    const long long pairs = (long long)n * n_heads * (rot_dim / 2);
    if (interleaved)
        cu_launch(r, "rope", k_rope<true>, cu_grid(pairs, CU_THREADS), CU_THREADS, 0,
                  x, pairs, n_heads, head_dim, rot_dim, pos, cos, sin);
    else
        cu_launch(r, "rope", k_rope<false>, cu_grid(pairs, CU_THREADS), CU_THREADS, 0,
                  x, pairs, n_heads, head_dim, rot_dim, pos, cos, sin);
}

/* rope_qk: the pairs of q, then those of k, in one launch (rotate-half layout; the
 * formulas of k_rope). */
__global__ void k_rope_qk(float *q, float *k, long long pairs_q, long long pairs, int n_head,
                          int n_kv, int hd, int rot, const int32_t *pos, const float *cs,
                          const float *sn) {
    const int half = rot / 2;
    for (long long it = (long long)blockIdx.x * blockDim.x + threadIdx.x; it < pairs;
         it += (long long)gridDim.x * blockDim.x) {
        const bool isq = it < pairs_q;
        const long long t = isq ? it : it - pairs_q;
        const int heads = isq ? n_head : n_kv;
        const long long rh = t / half;
        const int j = (int)(t % half);
        const long long i = rh / heads;
        const float c = cs[(long long)pos[i] * half + j], s = sn[(long long)pos[i] * half + j];
        float *v = (isq ? q : k) + rh * hd;
        const float a = v[j], b = v[j + half];
        v[j] = a * c - b * s;
        v[j + half] = b * c + a * s;
    }
}

void cu_rope_qk(const cu_run *r, float *q, float *k, int n, int n_head, int n_kv, int head_dim,
                int rot_dim, const int32_t *pos, const float *cos, const float *sin) {
    if (n <= 0 || rot_dim < 2) return;
    const long long pq = (long long)n * n_head * (rot_dim / 2);
    const long long pairs = pq + (long long)n * n_kv * (rot_dim / 2);
    if (pairs <= 0) return;
    cu_launch(r, "rope_qk", k_rope_qk, cu_grid(pairs, CU_THREADS), CU_THREADS, 0, q, k, pq,
              pairs, n_head, n_kv, head_dim, rot_dim, pos, cos, sin);
}

/* ---- elementwise ---- */

__global__ void k_silu_mul(float *out, const float *gate, const float *up, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

__global__ void k_gelu_tanh_mul(float *out, const float *gate, const float *up, long long n) {
    const float beta = 0.7978845608028654f, kappa = 0.044715f;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const float g = gate[i], inner = beta * (g + kappa * g * g * g);
        out[i] = 0.5f * g * (1.0f + tanhf(inner)) * up[i];
    }
}

__global__ void k_softcap(float *x, long long n, float cap) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        x[i] = tanhf(x[i] / cap) * cap;
}

__global__ void k_add(float *y, const float *x, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        y[i] = y[i] + x[i];
}

__global__ void k_axpy(float *y, float a, const float *x, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        y[i] = y[i] + a * x[i]; /* the product rounded, then the sum (-fmad=false) */
}

__global__ void k_gather(float *dst, const float *src, const int32_t *idx, long long total,
                         int cols) {
    for (long long it = (long long)blockIdx.x * blockDim.x + threadIdx.x; it < total;
         it += (long long)gridDim.x * blockDim.x) {
        const long long i = it / cols, c = it % cols;
        dst[it] = src[(long long)idx[i] * cols + c];
    }
}

void cu_silu_mul(const cu_run *r, float *out, const float *gate, const float *up, long n) {
    if (n <= 0) return;
    cu_launch(r, "silu_mul", k_silu_mul, cu_grid(n, CU_THREADS), CU_THREADS, 0, out, gate, up, n);
}

void cu_gelu_tanh_mul(const cu_run *r, float *out, const float *gate, const float *up, long n) {
    if (n <= 0) return;
    cu_launch(r, "gelu_tanh_mul", k_gelu_tanh_mul, cu_grid(n, CU_THREADS), CU_THREADS, 0, out,
              gate, up, n);
}

void cu_softcap(const cu_run *r, float *x, long n, float cap) {
    if (n <= 0) return;
    cu_launch(r, "softcap", k_softcap, cu_grid(n, CU_THREADS), CU_THREADS, 0, x, n, cap);
}

void cu_add(const cu_run *r, float *y, const float *x, long n) {
    if (n <= 0) return;
    cu_launch(r, "add", k_add, cu_grid(n, CU_THREADS), CU_THREADS, 0, y, x, n);
}

void cu_axpy(const cu_run *r, float *y, float a, const float *x, long n) {
    if (n <= 0) return;
    cu_launch(r, "axpy", k_axpy, cu_grid(n, CU_THREADS), CU_THREADS, 0, y, a, x, n);
}

void cu_gather_rows(const cu_run *r, float *dst, const float *src, const int32_t *idx, int n,
                    int cols) {
    const long long total = (long long)n * cols;
    if (n <= 0 || cols <= 0) return;
    cu_launch(r, "gather_rows", k_gather, cu_grid(total, CU_THREADS), CU_THREADS, 0, dst, src,
              idx, total, cols);
}

/* y row of idx[i] (+)= w[i]·src row i (kernels.h scatter_rows); one thread per element, the
   rows of one call being distinct */
__global__ void k_scatter(float *y, const float *src, const int32_t *idx, const float *w,
                          long long total, int cols) {
    for (long long it = (long long)blockIdx.x * blockDim.x + threadIdx.x; it < total;
         it += (long long)gridDim.x * blockDim.x) {
        const long long i = it / cols, c = it % cols;
        const int32_t r = idx[i];
        const float t = __fmul_rn(src[it], w[i]); /* rounded before the add, as ref */
        float *yr = y + (long long)(r < 0 ? -(r + 1) : r) * cols + c;
        *yr = r < 0 ? t : __fadd_rn(*yr, t);
    }
}

void cu_scatter_rows(const cu_run *r, float *y, const float *src, const int32_t *idx,
                     const float *w, int n, int cols) {
    const long long total = (long long)n * cols;
    if (n <= 0 || cols <= 0) return;
    cu_launch(r, "scatter_rows", k_scatter, cu_grid(total, CU_THREADS), CU_THREADS, 0, y, src,
              idx, w, total, cols);
}

/* ---- LoRA ---- */

typedef struct cu_lrun {
    const float *A, *B;     /* (r, in), (out, r) device */
    float *t;               /* (n, r) device: the run's own t or its place in the scratch */
    float scale;
    int row0, n, r, in, out;
    long long off_t, off_y; /* first work item of this run in each kernel */
} cu_lrun;

/* The run whose items [off, next run's off) contain `it` (offsets ascending). */
__device__ __forceinline__ int lrun_find(const cu_lrun *runs, int n_runs, long long it, bool y) {
    int lo = 0, hi = n_runs - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if ((y ? runs[mid].off_y : runs[mid].off_t) <= it) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* t[i][j] = Σ_c x[row0 + i][c] · A[j][c]: one warp per (run, i, j). */
__global__ void k_lora_t(const float *x, const cu_lrun *runs, int n_runs, long long total) {
    const int lane = threadIdx.x & 31;
    const long long warps = (long long)gridDim.x * (blockDim.x / 32);
    for (long long it = (long long)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5); it < total;
         it += warps) {
        const cu_lrun ru = runs[lrun_find(runs, n_runs, it, false)];
        const long long local = it - ru.off_t;
        const int i = (int)(local / ru.r), j = (int)(local % ru.r);
        const float *xi = x + (long long)(ru.row0 + i) * ru.in, *aj = ru.A + (long long)j * ru.in;
        float s = 0.0f;
        for (int c = lane; c < ru.in; c += 32) s = fmaf(xi[c], aj[c], s);
        s = cu_warp_sum(s);
        if (lane == 0) ru.t[(long long)i * ru.r + j] = s;
    }
}

/* y[row0 + i][o] += scale · Σ_j t[i][j] · B[o][j]: one thread per (run, i, o). */
__global__ void k_lora_y(float *y, const cu_lrun *runs, int n_runs, long long total) {
    for (long long it = (long long)blockIdx.x * blockDim.x + threadIdx.x; it < total;
         it += (long long)gridDim.x * blockDim.x) {
        const cu_lrun ru = runs[lrun_find(runs, n_runs, it, true)];
        const long long local = it - ru.off_y;
        const int i = (int)(local / ru.out), o = (int)(local % ru.out);
        const float *ti = ru.t + (long long)i * ru.r, *bo = ru.B + (long long)o * ru.r;
        float u = 0.0f;
        for (int j = 0; j < ru.r; j++) u = fmaf(ti[j], bo[j], u);
        float *yo = y + (long long)(ru.row0 + i) * ru.out + o;
        *yo = *yo + ru.scale * u;
    }
}

void cu_lora(const cu_run *r, float *y, const float *x, const wk_lora_run *runs, int n_runs,
             float *scratch) {
    if (n_runs <= 0) return;
    (void)scratch; /* see the comment at the top: its row0·r layout may overlap across runs */
    long long n_scr = 0; /* floats of t in the thread's scratch, for runs without their own */
    for (int i = 0; i < n_runs; i++)
        if (!runs[i].t && runs[i].n > 0 && runs[i].A->rows > 0 && runs[i].B->rows > 0)
            n_scr += (long long)runs[i].n * runs[i].A->rows;
    float *tscr = NULL;
    if (n_scr > 0 && !(tscr = (float *)cu_scratch(r, CU_SLOT_LORA_T, sizeof(float) * (size_t)n_scr)))
        return;
    cu_lrun *pk = (cu_lrun *)cu_pack_buf(sizeof(cu_lrun) * (size_t)n_runs);
    if (!pk) return;
    long long nt = 0, ny = 0, off_scr = 0;
    int k = 0;
    for (int i = 0; i < n_runs; i++) {
        const wk_lora_run *ru = &runs[i];
        const int rk = (int)ru->A->rows;
        if (ru->n <= 0 || rk <= 0 || ru->B->rows <= 0) continue;
        cu_lrun *d = &pk[k++];
        d->A = (const float *)ru->A->data;
        d->B = (const float *)ru->B->data;
        d->t = ru->t ? ru->t : tscr + off_scr;
        if (!ru->t) off_scr += (long long)ru->n * rk;
        d->scale = ru->scale;
        d->row0 = ru->row0, d->n = ru->n, d->r = rk;
        d->in = (int)ru->A->cols, d->out = (int)ru->B->rows;
        d->off_t = nt, d->off_y = ny;
        nt += (long long)ru->n * rk;
        ny += (long long)ru->n * d->out;
    }
    if (k == 0) return;
    const cu_lrun *dev = (const cu_lrun *)cu_upload(r, CU_SLOT_LORA, pk, sizeof(cu_lrun) * (size_t)k);
    if (!dev) return;
    cu_launch(r, "lora (x·Aᵀ)", k_lora_t, cu_grid(nt, CU_THREADS / 32), CU_THREADS, 0, x, dev, k,
              nt);
    cu_launch(r, "lora (t·Bᵀ)", k_lora_y, cu_grid(ny, CU_THREADS), CU_THREADS, 0, y, dev, k, ny);
}
