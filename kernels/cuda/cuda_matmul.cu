/* cuda_matmul.cu — embed and matmul of the CUDA table, for every weight type (F32, F16, BF16,
 * Q8_0, Q4_0, Q5_0, Q4_K, Q6_K).
 *
 * matmul y (n, rows) = x (n, cols) · Wᵀ + bias:
 *   n <= CU_MV_NX (decode): a memory-bound matvec, one warp per weight row, which streams the
 *     row once for all n activation rows (16-byte loads of weights and activations where the
 *     shapes and pointers allow; quantized rows are decoded 32 values at a time, one unit per
 *     lane). The dot product is the exact f32 product of the dequantized weight with the f32
 *     activations (no activation quantization), accumulated with FMAs in lane order, then
 *     reduced across the warp.
 *   larger n (prefill): BF16 weights under WK_CTX_FAST (precision "fast", the default):
 *     the activations are rounded to bf16 (nearest even, as the CPU's fast path) and cuBLAS
 *     multiplies them with the stored weights on the tensor cores, products exact and sums in
 *     f32 (CUBLAS_COMPUTE_32F), i.e. the reference product of the rounded activations up to
 *     summation order. Otherwise cuBLAS sgemm, FP32 compute with TF32 off (cuda_table.cu sets
 *     the math mode): F32 weights are used in place; other types are widened to f32 into
 *     per-thread device scratch, CU_WIDE_FLOATS at most at a time, with the reference
 *     formulas, and each tile multiplied as it is widened.
 * The bias is added after the product, as kernels/ref does (acc + bias).
 *
 * Not here: attention and the elementwise ops. */
#include "kernels/cuda/cuda_internal.cuh"

#define CU_MV_NX 8                 /* activation rows of the matvec path */
#define CU_MV_WARPS 4              /* weight rows (warps) per block */
#define CU_MV_LOADS 4              /* 16-byte weight loads a lane has in flight */
#define CU_WIDE_FLOATS (16L << 20) /* widened weight tile: 64 MiB of f32 */

/* ---- embed ---- */

__global__ void k_embed(float *out, const uint8_t *W, int dt, size_t rb, long long cols,
                        const int32_t *ids, long long total) {
    for (long long it = (long long)blockIdx.x * blockDim.x + threadIdx.x; it < total;
         it += (long long)gridDim.x * blockDim.x) {
        const long long i = it / cols, c = it % cols;
        out[it] = cu_weight(dt, W + (size_t)ids[i] * rb, c);
    }
}

void cu_embed(const cu_run *r, float *out, const wk_weight *W, const int32_t *ids, int n) {
    const long long total = (long long)n * W->cols;
    if (n <= 0 || W->cols <= 0) return;
    const size_t rb = dtype_row_bytes(W->dt, W->cols);
    cu_launch(r, "embed", k_embed, cu_grid(total, CU_THREADS), CU_THREADS, 0, out,
              (const uint8_t *)W->data, W->dt, rb, W->cols, ids, total);
}

/* ---- matvec (n <= CU_MV_NX) ---- */

/* acc[i] += Σ_t w[t]·x_i[t] over 8 consecutive values (x_i = row i of x at that column). */
template <bool VX>
__device__ __forceinline__ void mv_acc8(float acc[CU_MV_NX], const float w[8], const float *x,
                                        long long cols, int n) {
#pragma unroll
    for (int i = 0; i < CU_MV_NX; i++) {
        if (i >= n) break;
        const float *xi = x + (long long)i * cols;
        float a = acc[i];
        if (VX) {
            const float4 u = *(const float4 *)xi, v = *(const float4 *)(xi + 4);
            a = fmaf(w[0], u.x, a), a = fmaf(w[1], u.y, a), a = fmaf(w[2], u.z, a);
            a = fmaf(w[3], u.w, a), a = fmaf(w[4], v.x, a), a = fmaf(w[5], v.y, a);
            a = fmaf(w[6], v.z, a), a = fmaf(w[7], v.w, a);
        } else {
#pragma unroll
            for (int t = 0; t < 8; t++) a = fmaf(w[t], xi[t], a);
        }
        acc[i] = a;
    }
}

/* One warp per weight row r; lane-strided over the row. KIND: 0 = F32, 1 = F16, 2 = BF16,
 * 3 = block-quantized (dt says which). VW: 16-byte weight loads of 8 values (cols % 8 == 0,
 * aligned rows); VX: 16-byte activation loads (x aligned, cols % 4 == 0). */
template <int KIND, bool VW, bool VX>
__global__ void __launch_bounds__(CU_MV_WARPS * 32)
    k_matvec(float *y, const float *x, int n, const uint8_t *W, int dt, long long rows,
             long long cols, size_t rb, const float *bias) {
    const int lane = threadIdx.x & 31;
    const long long r = (long long)blockIdx.x * CU_MV_WARPS + (threadIdx.x >> 5);
    if (r >= rows) return; /* whole warps leave together: no shuffle is left waiting */
    const uint8_t *row = W + (size_t)r * rb;
    float acc[CU_MV_NX];
#pragma unroll
    for (int i = 0; i < CU_MV_NX; i++) acc[i] = 0.0f;

    if (KIND == 3) {
        const long long nu = cols / 32;
        for (long long u = lane; u < nu; u += 32) {
            float w[32];
            cu_unit32(dt, row, u, w);
#pragma unroll
            for (int q = 0; q < 4; q++) mv_acc8<VX>(acc, w + 8 * q, x + 32 * u + 8 * q, cols, n);
        }
    } else if (VW) {
        /* CU_MV_LOADS steps of the lane's walk are loaded before any is used, so that many
           16-byte loads are in flight per lane (the rows of a small model are a few KiB:
           one load at a time leaves the memory system idle); the sums keep their order */
        const long long n8 = cols / 8;
        for (long long c0 = lane; c0 < n8; c0 += 32 * CU_MV_LOADS) {
            uint4 raw[CU_MV_LOADS][KIND == 0 ? 2 : 1];
#pragma unroll
            for (int u = 0; u < CU_MV_LOADS; u++) {
                const long long c8 = c0 + 32 * u;
                if (c8 >= n8) break;
                if (KIND == 0) {
                    raw[u][0] = ((const uint4 *)row)[2 * c8];
                    raw[u][KIND == 0 ? 1 : 0] = ((const uint4 *)row)[2 * c8 + 1];
                } else {
                    raw[u][0] = ((const uint4 *)row)[c8];
                }
            }
#pragma unroll
            for (int u = 0; u < CU_MV_LOADS; u++) {
                const long long c8 = c0 + 32 * u;
                if (c8 >= n8) break;
                float w[8];
                if (KIND == 0) {
                    const uint4 a = raw[u][0], b = raw[u][KIND == 0 ? 1 : 0];
                    w[0] = __uint_as_float(a.x), w[1] = __uint_as_float(a.y);
                    w[2] = __uint_as_float(a.z), w[3] = __uint_as_float(a.w);
                    w[4] = __uint_as_float(b.x), w[5] = __uint_as_float(b.y);
                    w[6] = __uint_as_float(b.z), w[7] = __uint_as_float(b.w);
                } else {
                    const uint4 v = raw[u][0];
                    const uint32_t p[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                    for (int k = 0; k < 4; k++) {
                        const uint16_t lo = (uint16_t)(p[k] & 0xffffu), hi = (uint16_t)(p[k] >> 16);
                        w[2 * k] = KIND == 1 ? cu_h2f(lo) : cu_bf2f(lo);
                        w[2 * k + 1] = KIND == 1 ? cu_h2f(hi) : cu_bf2f(hi);
                    }
                }
                mv_acc8<VX>(acc, w, x + 8 * c8, cols, n);
            }
        }
    } else {
        for (long long c = lane; c < cols; c += 32) {
            const float w = cu_weight(KIND == 0 ? DT_F32 : KIND == 1 ? DT_F16 : DT_BF16, row, c);
#pragma unroll
            for (int i = 0; i < CU_MV_NX; i++)
                if (i < n) acc[i] = fmaf(w, x[(long long)i * cols + c], acc[i]);
        }
    }
#pragma unroll
    for (int i = 0; i < CU_MV_NX; i++) {
        if (i >= n) break; /* n is the same in every lane: no shuffle is left waiting */
        const float s = cu_warp_sum(acc[i]);
        if (lane == 0) y[(long long)i * rows + r] = s + (bias ? bias[r] : 0.0f);
    }
}

template <int KIND>
static void launch_matvec(const cu_run *r, float *y, const float *x, const wk_weight *W,
                          const float *bias, int n, bool vw, bool vx) {
    const unsigned grid = (unsigned)((W->rows + CU_MV_WARPS - 1) / CU_MV_WARPS);
    const size_t rb = dtype_row_bytes(W->dt, W->cols);
    const uint8_t *w = (const uint8_t *)W->data;
#define MV(VW, VX)                                                                             \
    cu_launch(r, "matmul (matvec)", k_matvec<KIND, VW, VX>, grid, CU_MV_WARPS * 32, 0, y, x, n,  \
              w, W->dt, W->rows, W->cols, rb, bias)
    if (vw && vx) MV(true, true);
    else if (vw) MV(true, false);
    else if (vx) MV(false, true);
    else MV(false, false);
#undef MV
}

static void matvec(const cu_run *r, float *y, const float *x, const wk_weight *W,
                   const float *bias, int n) {
    const bool quant = dtype_is_quant(W->dt) != 0;
    const bool vx = (uintptr_t)x % 16 == 0 && W->cols % 4 == 0;
    const bool vw = !quant && W->cols % 8 == 0 && (uintptr_t)W->data % 16 == 0;
    switch (W->dt) {
    case DT_F32: launch_matvec<0>(r, y, x, W, bias, n, vw, vx); break;
    case DT_F16: launch_matvec<1>(r, y, x, W, bias, n, vw, vx); break;
    case DT_BF16: launch_matvec<2>(r, y, x, W, bias, n, vw, vx); break;
    default: launch_matvec<3>(r, y, x, W, bias, n, false, vx); break;
    }
}

/* ---- prefill: widen + cuBLAS ---- */

/* out (m, cols) = rows [r0, r0 + m) of W as f32, with the reference formulas. */
__global__ void k_widen(float *out, const uint8_t *W, int dt, size_t rb, long long r0,
                        long long cols, long long total) {
    for (long long it = (long long)blockIdx.x * blockDim.x + threadIdx.x; it < total;
         it += (long long)gridDim.x * blockDim.x) {
        const long long i = it / cols, c = it % cols;
        out[it] = cu_weight(dt, W + (size_t)(r0 + i) * rb, c);
    }
}

__global__ void k_add_bias(float *y, const float *bias, long long rows, long long total) {
    for (long long it = (long long)blockIdx.x * blockDim.x + threadIdx.x; it < total;
         it += (long long)gridDim.x * blockDim.x)
        y[it] = y[it] + bias[it % rows];
}

__global__ void k_fill_bias(float *y, const float *bias, long long rows, long long total) {
    for (long long it = (long long)blockIdx.x * blockDim.x + threadIdx.x; it < total;
         it += (long long)gridDim.x * blockDim.x)
        y[it] = bias ? 0.0f + bias[it % rows] : 0.0f;
}

/* y[:, r0 .. r0+m) (row stride ldy) = x (n, cols) · A (m, cols)ᵀ, A row-major. In cuBLAS's
 * column-major terms: Yᵀ (m × n, ld ldy) = Aᵀ·X with A seen as (cols × m) and X as (cols × n). */
static bool sgemm(const cu_run *r, cublasHandle_t h, float *y, long long ldy, const float *x,
                  const float *A, long long m, long long n, long long cols) {
    const float one = 1.0f, zero = 0.0f;
    if (r->mode != CU_EAGER) { /* a graph pass: the call's arguments join the fingerprint */
        const long long a[4] = {ldy, m, n, cols};
        const void *p[4] = {(const void *)h, y, x, A};
        cu_graph_note(a, sizeof a);
        cu_graph_note(p, sizeof p);
        if (r->mode == CU_REPLAY) return true;
    }
    cublasStatus_t s = cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)m, (int)n, (int)cols, &one,
                                   A, (int)cols, x, (int)cols, &zero, y, (int)ldy);
    cu_note_blas(s, "cublasSgemm (matmul)");
    return s == CUBLAS_STATUS_SUCCESS;
}

__global__ void k_to_bf16(uint16_t *out, const float *x, long long total) {
    for (long long it = (long long)blockIdx.x * blockDim.x + threadIdx.x; it < total;
         it += (long long)gridDim.x * blockDim.x)
        out[it] = cu_f2bf(x[it]);
}

/* y (n, m; row stride ldy) = xb (n, cols) · A (m, cols)ᵀ, both bf16, on the tensor cores with
 * f32 sums; the layout of sgemm's call. */
static bool gemm_bf16(const cu_run *r, cublasHandle_t h, float *y, long long ldy,
                      const uint16_t *xb, const uint16_t *A, long long m, long long n,
                      long long cols) {
    const float one = 1.0f, zero = 0.0f;
    if (r->mode != CU_EAGER) {
        const long long a[5] = {ldy, m, n, cols, 16};
        const void *p[4] = {(const void *)h, y, xb, A};
        cu_graph_note(a, sizeof a);
        cu_graph_note(p, sizeof p);
        if (r->mode == CU_REPLAY) return true;
    }
    cublasStatus_t s = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)m, (int)n, (int)cols, &one,
                                    A, CUDA_R_16BF, (int)cols, xb, CUDA_R_16BF, (int)cols, &zero,
                                    y, CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT);
    cu_note_blas(s, "cublasGemmEx bf16 (matmul)");
    return s == CUBLAS_STATUS_SUCCESS;
}

static void gemm(const cu_run *r, float *y, const float *x, const wk_weight *W, const float *bias,
                 int n) {
    const long long rows = W->rows, cols = W->cols;
    if (rows > INT32_MAX || cols > INT32_MAX) {
        cu_note_fail(WICK_ERR_UNSUPPORTED, "matmul: a dimension exceeds cuBLAS's int range");
        return;
    }
    cublasHandle_t h = cu_blas(r);
    if (!h) return;
    if (W->dt == DT_BF16 && (r->flags & WK_CTX_FAST)) {
        const long long total = (long long)n * cols;
        uint16_t *xb = (uint16_t *)cu_scratch(r, CU_SLOT_XB, sizeof(uint16_t) * (size_t)total);
        if (!xb) return;
        cu_launch(r, "matmul (x to bf16)", k_to_bf16, cu_grid(total, CU_THREADS), CU_THREADS, 0,
                  xb, x, total);
        if (!gemm_bf16(r, h, y, rows, xb, (const uint16_t *)W->data, rows, n, cols)) return;
    } else if (W->dt == DT_F32) {
        if (!sgemm(r, h, y, rows, x, (const float *)W->data, rows, n, cols)) return;
    } else {
        long long blk = CU_WIDE_FLOATS / cols;
        if (blk < 1) blk = 1;
        if (blk > rows) blk = rows;
        float *tile = (float *)cu_scratch(r, CU_SLOT_WIDE, sizeof(float) * (size_t)(blk * cols));
        if (!tile) return;
        const size_t rb = dtype_row_bytes(W->dt, cols);
        for (long long r0 = 0; r0 < rows; r0 += blk) {
            const long long m = r0 + blk < rows ? blk : rows - r0;
            /* the previous sgemm read `tile` on this same stream, so this overwrite waits */
            cu_launch(r, "matmul (widen)", k_widen, cu_grid(m * cols, CU_THREADS), CU_THREADS,
                      0, tile, (const uint8_t *)W->data, W->dt, rb, r0, cols, m * cols);
            if (!sgemm(r, h, y + r0, rows, x, tile, m, n, cols)) return;
        }
    }
    if (bias) {
        cu_launch(r, "matmul (bias)", k_add_bias, cu_grid(n * rows, CU_THREADS), CU_THREADS, 0,
                  y, bias, rows, n * rows);
    }
}

void cu_matmul(const cu_run *r, float *y, const float *x, const wk_weight *W, const float *bias,
               int n) {
    if (n <= 0 || W->rows <= 0) return;
    if (W->cols <= 0) { /* an empty product: y = bias (or 0) */
        const long long total = (long long)n * W->rows;
        cu_launch(r, "matmul (empty)", k_fill_bias, cu_grid(total, CU_THREADS), CU_THREADS, 0, y,
                  bias, W->rows, total);
        return;
    }
    if (n <= CU_MV_NX) matvec(r, y, x, W, bias, n);
    else gemm(r, y, x, W, bias, n);
}
