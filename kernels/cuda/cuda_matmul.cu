/* cuda_matmul.cu — embed and matmul of the CUDA table, for every weight type (F32, F16, BF16,
 * Q8_0, Q4_0, Q5_0, Q4_K, Q6_K).
 *
 * matmul y (n, rows) = x (n, cols) · Wᵀ + bias:
 *   n <= CU_MV_NX (decode): a memory-bound matvec, one warp per weight row (2-4 for rows of
 *     2048+ values, mv_lanes), which streams the row once for all n activation rows (16-byte
 *     loads of weights and activations where the shapes and pointers allow). Q4_0, Q8_0,
 *     Q4_K and Q6_K take the CPU tables' decode contract (kernels.h): the activations are
 *     quantized to 8-bit blocks (k_quant_x8, quant_x_row's bytes) and the integer sums come
 *     from dp4a, i.e. quant_dot_q8x up to f32 summation order (WICK_CUDA_Q8X=0: f32
 *     activations); their weights are read with aligned 16-byte loads (Q4_0, Q8_0, Q6_K from
 *     the device's split layout, cuda_internal.cuh; Q4_K from its 144-byte blocks), a block
 *     or a 16-byte slice of a super-block per lane. The other types take the exact f32
 *     product of the dequantized weight with the f32 activations (Q5_0 and the quantized
 *     types under WICK_CUDA_Q8X=0 / WICK_CUDA_QMV=0: 32 values a lane), accumulated with
 *     FMAs in lane order; then the warp reduces.
 *   larger n (prefill): BF16 weights under WK_CTX_FAST (precision "fast", the default):
 *     the activations are rounded to bf16 (nearest even, as the CPU's fast path) and cuBLAS
 *     multiplies them with the stored weights on the tensor cores, products exact and sums in
 *     f32 (CUBLAS_COMPUTE_32F), i.e. the reference product of the rounded activations up to
 *     summation order. Quantized weights under WK_CTX_FAST: each tile dequantized with the
 *     reference formulas and rounded to bf16, then the same tensor-core product (the
 *     reference product of the rounded weights and activations). Otherwise cuBLAS sgemm,
 *     FP32 compute with TF32 off (cuda_table.cu sets
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

__global__ void k_embed(float *out, const uint8_t *W, int dt, size_t rb, long long rows,
                        long long cols, const int32_t *ids, long long total) {
    for (long long it = (long long)blockIdx.x * blockDim.x + threadIdx.x; it < total;
         it += (long long)gridDim.x * blockDim.x) {
        const long long i = it / cols, c = it % cols;
        out[it] = cu_wel(dt, W, rows, cols, rb, ids[i], c);
    }
}

void cu_embed(const cu_run *r, float *out, const wk_weight *W, const int32_t *ids, int n) {
    const long long total = (long long)n * W->cols;
    if (n <= 0 || W->cols <= 0) return;
    const size_t rb = dtype_row_bytes(W->dt, W->cols);
    cu_launch(r, "embed", k_embed, cu_grid(total, CU_THREADS), CU_THREADS, 0, out,
              (const uint8_t *)W->data, W->dt, rb, W->rows, W->cols, ids, total);
}

/* ---- matvec (n <= CU_MV_NX) ---- */

/* acc[i] += Σ_t w[t]·x_i[t] over 4 consecutive values (x_i = row i of x at that column). */
template <bool VX>
__device__ __forceinline__ void mv_acc4(float acc[CU_MV_NX], const float w[4], const float *x,
                                        long long cols, int n) {
#pragma unroll
    for (int i = 0; i < CU_MV_NX; i++) {
        if (i >= n) break;
        const float *xi = x + (long long)i * cols;
        float a = acc[i];
        if (VX) {
            const float4 u = *(const float4 *)xi;
            a = fmaf(w[0], u.x, a), a = fmaf(w[1], u.y, a), a = fmaf(w[2], u.z, a);
            a = fmaf(w[3], u.w, a);
        } else {
#pragma unroll
            for (int t = 0; t < 4; t++) a = fmaf(w[t], xi[t], a);
        }
        acc[i] = a;
    }
}

/* The same over 8 consecutive values: each row's FMAs in the same order as one pass of 8. */
template <bool VX>
__device__ __forceinline__ void mv_acc8(float acc[CU_MV_NX], const float w[8], const float *x,
                                        long long cols, int n) {
    mv_acc4<VX>(acc, w, x, cols, n);
    mv_acc4<VX>(acc, w + 4, x + 4, cols, n);
}

/* What a matvec launch computes: `count` products of the same x (n <= CU_MV_NX rows) with
 * weights of one dt and cols, written per `mode`:
 *   MV_STORE  y[s] (n, rows[s]) = x·W[s]ᵀ + bias[s], for every product s (matmul, matmul_multi)
 *   MV_ADD    y[0] += x·W[0]ᵀ + bias[0] (matmul_add)
 *   MV_SILU / MV_GELU  y[0] = act(x·W[0]ᵀ + bias[0]) ⊙ (x·W[1]ᵀ + bias[1]) (matmul_glu; one
 *             warp computes row r of both products) */
enum { MV_STORE, MV_ADD, MV_SILU, MV_GELU };
#define CU_MV_SEGS WK_MULTI_MAX

typedef struct mv_job {
    const uint8_t *W[CU_MV_SEGS];
    float *y[CU_MV_SEGS];
    const float *bias[CU_MV_SEGS];
    long long rows[CU_MV_SEGS];
    const float *x;
    const int8_t *xq; /* KIND 6/7: x quantized to 8-bit blocks (n rows of cols bytes) */
    const float *xd;  /* ... and their scales (n rows of cols/32) */
    long long cols;
    size_t rb; /* bytes of a weight row */
    int n, dt, count, mode;
} mv_job;

/* Q4_0 and Q8_0 rows in the device's split layout (cu_split_dt): one lane a block, its quants
 * in one 16-byte load (Q4_0) or two (Q8_0) and its f16 scale in a 2-byte one, so the warp's
 * step reads 32 consecutive blocks' quants (512 or 1024 bytes) and their 64 bytes of scales,
 * coalesced; CU_MV_QSTEPS steps are loaded before any is used. q = the row's quants, sc = its
 * scales. The quants come back as 8 words of 4 values: word k < 4 holds values 4k..4k+3,
 * word 4 + k values 16+4k..16+4k+3 (Q4_0: bytes 4k..4k+3 of the block, low nibbles then high
 * nibbles; Q8_0: the bytes in order). */
#define CU_MV_QSTEPS 4
template <int QB>
__device__ __forceinline__ void mv_q_words(const uint4 (&qv)[QB / 16], unsigned w[8]) {
    if (QB == 16) {
        const unsigned p[4] = {qv[0].x, qv[0].y, qv[0].z, qv[0].w};
#pragma unroll
        for (int k = 0; k < 4; k++) w[k] = p[k] & 0x0F0F0F0Fu, w[4 + k] = (p[k] >> 4) & 0x0F0F0F0Fu;
    } else {
        w[0] = qv[0].x, w[1] = qv[0].y, w[2] = qv[0].z, w[3] = qv[0].w;
        w[4] = qv[QB / 16 - 1].x, w[5] = qv[QB / 16 - 1].y, w[6] = qv[QB / 16 - 1].z;
        w[7] = qv[QB / 16 - 1].w;
    }
}

/* The lane's CU_MV_QSTEPS blocks b0, b0 + NL, ... (those < nb) of a split Q4_0 / Q8_0 row:
 * quants into qv, f16 scales into dh, every load issued before any is used. */
template <int QB, int NL>
__device__ __forceinline__ void mv_q_load(uint4 (&qv)[CU_MV_QSTEPS][QB / 16],
                                          uint16_t (&dh)[CU_MV_QSTEPS], const uint4 *qp,
                                          const uint16_t *sc, long long b0, long long nb) {
#pragma unroll
    for (int u = 0; u < CU_MV_QSTEPS; u++) {
        const long long b = b0 + (long long)NL * u;
        if (b >= nb) break;
#pragma unroll
        for (int k = 0; k < QB / 16; k++) qv[u][k] = __ldg(qp + b * (QB / 16) + k);
        dh[u] = __ldg(sc + b);
    }
}

/* KIND 4 (Q4_0) and 5 (Q8_0) against f32 activations: each value dequantized with the
 * reference's formula, d·(q − 8) or d·q, as f32, then FMAs in value order. */
template <int KIND, bool VX, int NL>
__device__ __forceinline__ void mv_row_q(float acc[CU_MV_NX], const uint8_t *q,
                                         const uint16_t *sc, const float *x, int n,
                                         long long cols, int lane) {
    constexpr int QB = KIND == 4 ? 16 : 32;
    const long long nb = cols / 32;
    const uint4 *qp = (const uint4 *)q;
    for (long long b0 = lane; b0 < nb; b0 += (long long)NL * CU_MV_QSTEPS) {
        uint4 qv[CU_MV_QSTEPS][QB / 16];
        uint16_t dh[CU_MV_QSTEPS];
        mv_q_load<QB, NL>(qv, dh, qp, sc, b0, nb);
#pragma unroll
        for (int u = 0; u < CU_MV_QSTEPS; u++) {
            const long long b = b0 + (long long)NL * u;
            if (b >= nb) break;
            const float d = cu_h2f(dh[u]);
            unsigned w[8];
            mv_q_words<QB>(qv[u], w);
#pragma unroll
            for (int h = 0; h < 2; h++) {
                float v[16];
#pragma unroll
                for (int k = 0; k < 4; k++)
#pragma unroll
                    for (int t = 0; t < 4; t++) {
                        const unsigned byte = (w[4 * h + k] >> (8 * t)) & 0xFFu;
                        v[4 * k + t] = KIND == 4 ? d * (float)((int)byte - 8)
                                                 : d * (float)(int8_t)byte;
                    }
                mv_acc8<VX>(acc, v, x + 32 * b + 16 * h, cols, n);
                mv_acc8<VX>(acc, v + 8, x + 32 * b + 16 * h + 8, cols, n);
            }
        }
    }
}

/* KIND 6 (Q4_0) and 7 (Q8_0) against activations quantized to 8-bit blocks (the CPU tables'
 * decode contract, kernels/quant.h: quant_dot_q8x): the block's integer sum from 8 dp4a
 * (Q4_0: nibbles re-centred to −8..7 bytewise, so no zero-point term is left), then
 * acc += s·(d_w·d_x) in f32 as the reference does per block — the same sum up to f32
 * summation order. The activation block is two 16-byte loads (xq rows are cols bytes, cols a
 * multiple of 32, in 64-byte aligned scratch). */
template <int KIND, int NL>
__device__ __forceinline__ void mv_row_q8(float acc[CU_MV_NX], const uint8_t *q,
                                          const uint16_t *sc, const int8_t *xq, const float *xd,
                                          int n, long long cols, int lane) {
    constexpr int QB = KIND == 6 ? 16 : 32;
    const long long nb = cols / 32;
    const uint4 *qp = (const uint4 *)q;
    for (long long b0 = lane; b0 < nb; b0 += (long long)NL * CU_MV_QSTEPS) {
        uint4 qv[CU_MV_QSTEPS][QB / 16];
        uint16_t dh[CU_MV_QSTEPS];
        mv_q_load<QB, NL>(qv, dh, qp, sc, b0, nb);
#pragma unroll
        for (int u = 0; u < CU_MV_QSTEPS; u++) {
            const long long b = b0 + (long long)NL * u;
            if (b >= nb) break;
            const float dw = cu_h2f(dh[u]);
            unsigned w[8];
            mv_q_words<QB>(qv[u], w);
            if (KIND == 6) {
#pragma unroll
                for (int k = 0; k < 8; k++) w[k] = __vsub4(w[k], 0x08080808u);
            }
#pragma unroll
            for (int i = 0; i < CU_MV_NX; i++) {
                if (i >= n) break;
                const int4 *xb = (const int4 *)(xq + (long long)i * cols + 32 * b);
                const int4 x0 = __ldg(xb), x1 = __ldg(xb + 1);
                int si = __dp4a((int)w[0], x0.x, 0);
                si = __dp4a((int)w[1], x0.y, si), si = __dp4a((int)w[2], x0.z, si);
                si = __dp4a((int)w[3], x0.w, si), si = __dp4a((int)w[4], x1.x, si);
                si = __dp4a((int)w[5], x1.y, si), si = __dp4a((int)w[6], x1.z, si);
                si = __dp4a((int)w[7], x1.w, si);
                acc[i] = acc[i] + (float)si * (dw * __ldg(xd + (long long)i * nb + b));
            }
        }
    }
}

/* The byte at index i (0..11) of the 12 bytes held in words a, b, c (little-endian). */
__device__ __forceinline__ int cu_byte12(unsigned a, unsigned b, unsigned c, int i) {
    const unsigned w = i < 4 ? a : i < 8 ? b : c;
    return (int)((w >> (8 * (i & 3))) & 0xFFu);
}

/* KIND 8: Q4_K rows (the file's 144-byte super-blocks = 9 aligned 16-byte words: the header
 * d, dmin, scales[12], then qs[128]) against 8-bit activations (quant_dot_q8x's contract).
 * A lane's item is 16 bytes of qs, qs[32p + 16t ..], i.e. values 16t..16t+15 of sub-blocks
 * 2p (low nibbles) and 2p+1 (high nibbles): two 16-byte weight loads (the header and the qs)
 * and two activation loads; the sums Σq·x_q and Σx_q of each half come from dp4a, then
 * acc += d·(dx·sc·Σq·x_q) − dmin·(dx·m·Σx_q) for both sub-blocks: the reference's terms in
 * another order. */
template <int NL>
__device__ __forceinline__ void mv_row_q4k(float acc[CU_MV_NX], const uint8_t *row,
                                           const int8_t *xq, const float *xd, int n,
                                           long long cols, int lane) {
    const long long nsb = cols / 256, ni = nsb * 8, nb = cols / 32;
    const uint4 *rp = (const uint4 *)row;
    for (long long i0 = lane; i0 < ni; i0 += (long long)NL * CU_MV_QSTEPS) {
        uint4 hv[CU_MV_QSTEPS], qv[CU_MV_QSTEPS];
#pragma unroll
        for (int u = 0; u < CU_MV_QSTEPS; u++) {
            const long long it = i0 + (long long)NL * u;
            if (it >= ni) break;
            hv[u] = __ldg(rp + 9 * (it >> 3));
            qv[u] = __ldg(rp + 9 * (it >> 3) + 1 + (it & 7));
        }
#pragma unroll
        for (int u = 0; u < CU_MV_QSTEPS; u++) {
            const long long it = i0 + (long long)NL * u;
            if (it >= ni) break;
            const long long sb = it >> 3;
            const int p = (int)(it >> 1) & 3, t = (int)it & 1, j0 = 2 * p, j1 = 2 * p + 1;
            const float d = cu_h2f((uint16_t)(hv[u].x & 0xFFFFu));
            const float dmin = cu_h2f((uint16_t)(hv[u].x >> 16));
            const unsigned a = hv[u].y, b = hv[u].z, c = hv[u].w;
            int sc0, m0, sc1, m1; /* quant_q4k_scale of sub-blocks j0 (< 8) and j1 */
            if (j0 < 4) {
                sc0 = cu_byte12(a, b, c, j0) & 63, m0 = cu_byte12(a, b, c, j0 + 4) & 63;
                sc1 = cu_byte12(a, b, c, j1) & 63, m1 = cu_byte12(a, b, c, j1 + 4) & 63;
            } else {
                sc0 = (cu_byte12(a, b, c, j0 + 4) & 0xF) | ((cu_byte12(a, b, c, j0 - 4) >> 6) << 4);
                m0 = (cu_byte12(a, b, c, j0 + 4) >> 4) | ((cu_byte12(a, b, c, j0) >> 6) << 4);
                sc1 = (cu_byte12(a, b, c, j1 + 4) & 0xF) | ((cu_byte12(a, b, c, j1 - 4) >> 6) << 4);
                m1 = (cu_byte12(a, b, c, j1 + 4) >> 4) | ((cu_byte12(a, b, c, j1) >> 6) << 4);
            }
            const unsigned wq[4] = {qv[u].x, qv[u].y, qv[u].z, qv[u].w};
#pragma unroll
            for (int i = 0; i < CU_MV_NX; i++) {
                if (i >= n) break;
                const long long xb = (long long)i * nb + 8 * sb + j0;
                const int4 *xp = (const int4 *)(xq + 32 * xb + 16 * t);
                const int4 xa = __ldg(xp), xo = __ldg(xp + 2);
                const int xav[4] = {xa.x, xa.y, xa.z, xa.w}, xov[4] = {xo.x, xo.y, xo.z, xo.w};
                int s0 = 0, s1 = 0, z0 = 0, z1 = 0;
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    s0 = __dp4a((int)(wq[k] & 0x0F0F0F0Fu), xav[k], s0);
                    s1 = __dp4a((int)((wq[k] >> 4) & 0x0F0F0F0Fu), xov[k], s1);
                    z0 = __dp4a(0x01010101, xav[k], z0);
                    z1 = __dp4a(0x01010101, xov[k], z1);
                }
                const float dx0 = __ldg(xd + xb), dx1 = __ldg(xd + xb + 1);
                const float sp = dx0 * (float)(sc0 * s0) + dx1 * (float)(sc1 * s1);
                const float mp = dx0 * (float)(m0 * z0) + dx1 * (float)(m1 * z1);
                acc[i] = acc[i] + (d * sp - dmin * mp);
            }
        }
    }
}

/* KIND 9: Q6_K rows in the split layout (q = the row's quants, 192 bytes a super-block: ql
 * then qh; s = its scales, 18 bytes a super-block: scales[16] then d) against 8-bit
 * activations. A lane's item is (half h, t) of a super-block: the 16 bytes ql[64h + 16t ..],
 * ql[64h + 32 + 16t ..] and qh[32h + 16t ..], i.e. values 16t..16t+15 of the four 32-value
 * blocks 4h + k (k = 0..3), each 16 of one scale; q − 32 bytewise (−32..31) against the
 * activations with dp4a, then acc += d·Σ_k dx·(scale·Σ). */
template <int NL>
__device__ __forceinline__ void mv_row_q6k(float acc[CU_MV_NX], const uint8_t *q,
                                           const uint8_t *s, const int8_t *xq, const float *xd,
                                           int n, long long cols, int lane) {
    const long long nsb = cols / 256, ni = nsb * 4, nb = cols / 32;
    const uint4 *qp = (const uint4 *)q;
    for (long long i0 = lane; i0 < ni; i0 += (long long)NL * CU_MV_QSTEPS) {
        uint4 va[CU_MV_QSTEPS], vb[CU_MV_QSTEPS], vh[CU_MV_QSTEPS];
#pragma unroll
        for (int u = 0; u < CU_MV_QSTEPS; u++) {
            const long long it = i0 + (long long)NL * u;
            if (it >= ni) break;
            const long long sb = it >> 2;
            const int h = (int)(it >> 1) & 1, t = (int)it & 1;
            va[u] = __ldg(qp + 12 * sb + 4 * h + t);
            vb[u] = __ldg(qp + 12 * sb + 4 * h + 2 + t);
            vh[u] = __ldg(qp + 12 * sb + 8 + 2 * h + t);
        }
#pragma unroll
        for (int u = 0; u < CU_MV_QSTEPS; u++) {
            const long long it = i0 + (long long)NL * u;
            if (it >= ni) break;
            const long long sb = it >> 2;
            const int h = (int)(it >> 1) & 1, t = (int)it & 1;
            const uint8_t *ss = s + 18 * sb;
            const float d = cu_h2f(cu_ld16(ss + 16));
            int sc[4];
#pragma unroll
            for (int k = 0; k < 4; k++) sc[k] = (int)(int8_t)__ldg(ss + 8 * h + 2 * k + t);
            const unsigned A[4] = {va[u].x, va[u].y, va[u].z, va[u].w};
            const unsigned B[4] = {vb[u].x, vb[u].y, vb[u].z, vb[u].w};
            const unsigned H[4] = {vh[u].x, vh[u].y, vh[u].z, vh[u].w};
            int cw[4][4]; /* cw[k][w]: word w of the 16 centred values of block 4h + k */
#pragma unroll
            for (int w = 0; w < 4; w++) {
                const unsigned lo[4] = {A[w] & 0x0F0F0F0Fu, B[w] & 0x0F0F0F0Fu,
                                        (A[w] >> 4) & 0x0F0F0F0Fu, (B[w] >> 4) & 0x0F0F0F0Fu};
#pragma unroll
                for (int k = 0; k < 4; k++)
                    cw[k][w] = (int)__vsub4(lo[k] | (((H[w] >> (2 * k)) & 0x03030303u) << 4),
                                            0x20202020u);
            }
#pragma unroll
            for (int i = 0; i < CU_MV_NX; i++) {
                if (i >= n) break;
                const long long xb = (long long)i * nb + 8 * sb + 4 * h;
                float part = 0.0f;
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    const int4 xv = __ldg((const int4 *)(xq + 32 * (xb + k) + 16 * t));
                    int sk = __dp4a(cw[k][0], xv.x, 0);
                    sk = __dp4a(cw[k][1], xv.y, sk), sk = __dp4a(cw[k][2], xv.z, sk);
                    sk = __dp4a(cw[k][3], xv.w, sk);
                    part = part + __ldg(xd + xb + k) * (float)(sc[k] * sk);
                }
                acc[i] = acc[i] + d * part;
            }
        }
    }
}

/* x (n, cols) into 8-bit blocks of 32 with quant_x_row's formulas (the same bytes): one warp
 * per block, d = max|x|/127, q = round-half-even(x·(1/d)). */
__global__ void k_quant_x8(int8_t *xq, float *xd, const float *x, long long blocks) {
    const long long b = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (b >= blocks) return; /* whole warps leave together */
    const float v = x[32 * b + lane];
    float amax = fabsf(v);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
    xq[32 * b + lane] = (int8_t)(int)rintf(v * id);
    if (lane == 0) xd[b] = d;
}

/* acc[i] = Σ over the lane's share of row r of weight matrix W (rows × cols, rb bytes a row
 * as in the file) of w·x_i, i < n. KIND: 0 = F32, 1 = F16, 2 = BF16, 3 = the other
 * block-quantized types (dt says which; any layout, cu_unit32m), 4 = Q4_0, 5 = Q8_0 (f32
 * activations), 6 = Q4_0, 7 = Q8_0, 8 = Q4_K, 9 = Q6_K (8-bit activations xq, xd); 4-7 and
 * 9 read the split layout, 8 the file's rows (16-byte aligned).
 * VW: 16-byte weight loads of 8 values (cols % 8 == 0, aligned rows); VX: 16-byte activation
 * loads (x aligned, cols % 4 == 0). */
template <int KIND, bool VW, bool VX, int NL>
__device__ __forceinline__ void mv_row(float acc[CU_MV_NX], const uint8_t *W, long long rows,
                                       long long r, size_t rb, const float *x, const int8_t *xq,
                                       const float *xd, int n, int dt, long long cols, int lane) {
#pragma unroll
    for (int i = 0; i < CU_MV_NX; i++) acc[i] = 0.0f;
    const uint8_t *row = W + (size_t)r * rb;
    if (KIND == 8) {
        mv_row_q4k<NL>(acc, row, xq, xd, n, cols, lane);
    } else if (KIND == 9) {
        const long long nsb = cols / 256;
        mv_row_q6k<NL>(acc, W + (size_t)r * nsb * 192, W + (size_t)rows * nsb * 192 + r * nsb * 18,
                       xq, xd, n, cols, lane);
    } else if (KIND >= 4) {
        constexpr int QB = KIND == 4 || KIND == 6 ? 16 : 32;
        const long long nb = cols / 32;
        const uint8_t *q = W + (size_t)r * nb * QB;
        const uint16_t *sc = (const uint16_t *)(W + (size_t)rows * nb * QB) + r * nb;
        if (KIND >= 6) mv_row_q8<KIND, NL>(acc, q, sc, xq, xd, n, cols, lane);
        else mv_row_q<KIND, VX, NL>(acc, q, sc, x, n, cols, lane);
    } else if (KIND == 3) {
        const long long nu = cols / 32;
        for (long long u = lane; u < nu; u += NL) {
            float w[32];
            cu_unit32m(dt, W, rows, cols, rb, r, u, w);
#pragma unroll
            for (int q = 0; q < 4; q++) mv_acc8<VX>(acc, w + 8 * q, x + 32 * u + 8 * q, cols, n);
        }
    } else if (VW) {
        /* CU_MV_LOADS steps of the lane's walk are loaded before any is used, so that many
           16-byte loads are in flight per lane (the rows of a small model are a few KiB:
           one load at a time leaves the memory system idle); the sums keep their order */
        const long long n8 = cols / 8;
        for (long long c0 = lane; c0 < n8; c0 += NL * CU_MV_LOADS) {
            uint4 raw[CU_MV_LOADS][KIND == 0 ? 2 : 1];
#pragma unroll
            for (int u = 0; u < CU_MV_LOADS; u++) {
                const long long c8 = c0 + NL * u;
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
                const long long c8 = c0 + NL * u;
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
        for (long long c = lane; c < cols; c += NL) {
            const float w = cu_weight(KIND == 0 ? DT_F32 : KIND == 1 ? DT_F16 : DT_BF16, row, c);
#pragma unroll
            for (int i = 0; i < CU_MV_NX; i++)
                if (i < n) acc[i] = fmaf(w, x[(long long)i * cols + c], acc[i]);
        }
    }
}

/* What k_matvec writes for activation row i of output row r of product sg, from the row's
 * sums s (and s2, the up product, for the GLU modes); see mv_job. */
__device__ __forceinline__ void mv_store(const mv_job &J, int sg, long long r, int i, float s,
                                         float s2) {
    const long long rows = J.rows[sg];
    const float *bias = J.bias[sg];
    const float v = s + (bias ? bias[r] : 0.0f);
    float *o = J.y[sg] + (long long)i * rows + r;
    if (J.mode == MV_STORE) {
        *o = v;
    } else if (J.mode == MV_ADD) {
        *o = *o + v;
    } else { /* the formulas of k_silu_mul / k_gelu_tanh_mul, on the same values */
        const float u = s2 + (J.bias[1] ? J.bias[1][r] : 0.0f);
        if (J.mode == MV_SILU) {
            *o = v / (1.0f + expf(-v)) * u;
        } else {
            const float beta = 0.7978845608028654f, kappa = 0.044715f;
            const float inner = beta * (v + kappa * v * v * v);
            *o = 0.5f * v * (1.0f + tanhf(inner)) * u;
        }
    }
}

/* NL/32 warps per output row (the rows of every product one after the other), NL lanes
 * strided over the weight row; each warp reduces its lanes, then (NL > 32) the row's first
 * warp adds the other warps' sums in warp order through shared memory. NL depends only on
 * the row length (mv_lanes), so fused and plain launches of a matrix sum in the same order. */
template <int KIND, bool VW, bool VX, int NL>
__global__ void __launch_bounds__(CU_MV_WARPS * 32) k_matvec(mv_job J) {
    constexpr int SPLIT = NL / 32, ROWS = CU_MV_WARPS / SPLIT;
    const int warp = threadIdx.x >> 5, wl = threadIdx.x & 31;
    const int lane = (warp % SPLIT) * 32 + wl;
    long long r = (long long)blockIdx.x * ROWS + warp / SPLIT;
    const bool glu = J.mode == MV_SILU || J.mode == MV_GELU;
    int sg = 0;
    bool ok;
    if (glu) {
        ok = r < J.rows[0];
    } else {
        while (sg < J.count && r >= J.rows[sg]) r -= J.rows[sg++];
        ok = sg < J.count;
    }
    /* whole warps leave together: no shuffle is left waiting; with SPLIT > 1 every warp
       reaches the barrier below */
    if constexpr (SPLIT == 1) {
        if (!ok) return;
    }
    float acc[CU_MV_NX], acc2[CU_MV_NX];
#pragma unroll
    for (int i = 0; i < CU_MV_NX; i++) acc[i] = acc2[i] = 0.0f;
    if (ok) {
        mv_row<KIND, VW, VX, NL>(acc, J.W[sg], J.rows[sg], r, J.rb, J.x, J.xq, J.xd, J.n, J.dt,
                                 J.cols, lane);
        if (glu)
            mv_row<KIND, VW, VX, NL>(acc2, J.W[1], J.rows[1], r, J.rb, J.x, J.xq, J.xd, J.n,
                                     J.dt, J.cols, lane);
    }
    if constexpr (SPLIT == 1) {
#pragma unroll
        for (int i = 0; i < CU_MV_NX; i++) {
            if (i >= J.n) break; /* n is the same in every lane: no shuffle is left waiting */
            const float s = cu_warp_sum(acc[i]);
            const float s2 = glu ? cu_warp_sum(acc2[i]) : 0.0f;
            if (wl == 0) mv_store(J, sg, r, i, s, s2);
        }
    } else {
        __shared__ float red[CU_MV_WARPS][2][CU_MV_NX];
#pragma unroll
        for (int i = 0; i < CU_MV_NX; i++) {
            if (i >= J.n) break;
            const float s = cu_warp_sum(acc[i]);
            const float s2 = glu ? cu_warp_sum(acc2[i]) : 0.0f;
            if (wl == 0) red[warp][0][i] = s, red[warp][1][i] = s2;
        }
        __syncthreads();
        if (!ok || wl != 0 || warp % SPLIT != 0) return;
#pragma unroll
        for (int i = 0; i < CU_MV_NX; i++) {
            if (i >= J.n) break;
            float s = red[warp][0][i], s2 = red[warp][1][i];
#pragma unroll
            for (int k = 1; k < SPLIT; k++)
                s = s + red[warp + k][0][i], s2 = s2 + red[warp + k][1][i];
            mv_store(J, sg, r, i, s, s2);
        }
    }
}

/* Lanes per weight row: one warp, or 2-4 for long rows (a warp alone would walk a 4096+ value
 * row in many dependent steps: the down projection of a small model is a few rows of
 * thousands of values each). A function of cols alone, see k_matvec. */
static int mv_lanes(long long cols) {
    static const bool split = [] { /* WICK_CUDA_MV_SPLIT=0: one warp a row (an A/B switch) */
        const char *v = getenv("WICK_CUDA_MV_SPLIT");
        return !(v && strcmp(v, "0") == 0);
    }();
    if (!split) return 32;
    return cols >= 4096 ? 128 : cols >= 2048 ? 64 : 32;
}

template <int KIND, int NL>
static void launch_matvec_nl(const cu_run *r, const mv_job &J, long long rows, bool vw, bool vx) {
    const long long per_block = CU_MV_WARPS / (NL / 32);
    const unsigned grid = (unsigned)((rows + per_block - 1) / per_block);
#define MV(VW, VX) cu_launch(r, "matmul (matvec)", k_matvec<KIND, VW, VX, NL>, grid, CU_MV_WARPS * 32, 0, J)
    if (vw && vx) MV(true, true);
    else if (vw) MV(true, false);
    else if (vx) MV(false, true);
    else MV(false, false);
#undef MV
}

template <int KIND>
static void launch_matvec(const cu_run *r, const mv_job &J, long long rows, bool vw, bool vx) {
    switch (mv_lanes(J.cols)) {
    case 128: launch_matvec_nl<KIND, 128>(r, J, rows, vw, vx); break;
    case 64: launch_matvec_nl<KIND, 64>(r, J, rows, vw, vx); break;
    default: launch_matvec_nl<KIND, 32>(r, J, rows, vw, vx); break;
    }
}

/* WICK_CUDA_QMV=0: Q4_0 and Q8_0 rows take the generic unit path (a developer's A/B switch). */
static bool qmv_on(void) {
    static const bool on = [] {
        const char *v = getenv("WICK_CUDA_QMV");
        return !(v && strcmp(v, "0") == 0);
    }();
    return on;
}

/* WICK_CUDA_Q8X=0: Q4_0 and Q8_0 decode keeps f32 activations (KIND 4/5) instead of 8-bit
 * blocks and dp4a (KIND 6/7). */
static bool q8x_on(void) {
    static const bool on = [] {
        const char *v = getenv("WICK_CUDA_Q8X");
        return !(v && strcmp(v, "0") == 0);
    }();
    return on;
}

/* J.xq / J.xd = x (n, cols) quantized to 8-bit blocks in scratch; false (noted) when the
 * scratch is missing. */
static bool quant_x8(const cu_run *r, mv_job &J, const float *x, int n, long long cols) {
    const long long blocks = (long long)n * (cols / 32);
    uint8_t *m = (uint8_t *)cu_scratch(r, CU_SLOT_XQ, (size_t)(n * cols) + 4 * (size_t)blocks);
    if (!m) return false;
    J.xq = (const int8_t *)m, J.xd = (const float *)(m + n * cols);
    cu_launch(r, "matmul (x to 8-bit)", k_quant_x8, cu_grid(blocks * 32, CU_THREADS), CU_THREADS,
              0, (int8_t *)m, (float *)(m + n * cols), x, blocks);
    return true;
}

/* WICK_CUDA_QGEMM=0: quantized prefill GEMMs in precision fast keep the f32 sgemm (an A/B
   switch for the bf16 tensor-core path). */
static bool qgemm_on(void) {
    static const bool on = [] {
        const char *v = getenv("WICK_CUDA_QGEMM");
        return !(v && strcmp(v, "0") == 0);
    }();
    return on;
}

/* Runs job J (its W, y, bias, rows, count and mode filled) over the count products of W[]. */
static void matvec_job(const cu_run *r, mv_job &J, const wk_weight *const *W, const float *x,
                       int n) {
    const wk_weight *W0 = W[0];
    const bool quant = dtype_is_quant(W0->dt) != 0;
    bool vw = !quant && W0->cols % 8 == 0;
    long long warps = 0;
    for (int s = 0; s < J.count; s++) {
        vw = vw && (uintptr_t)W[s]->data % 16 == 0;
        if (J.mode == MV_STORE || s == 0) warps += W[s]->rows;
    }
    J.x = x, J.n = n, J.dt = W0->dt, J.cols = W0->cols, J.rb = dtype_row_bytes(W0->dt, W0->cols);
    const bool vx = (uintptr_t)x % 16 == 0 && W0->cols % 4 == 0;
    switch (W0->dt) {
    case DT_F32: launch_matvec<0>(r, J, warps, vw, vx); break;
    case DT_F16: launch_matvec<1>(r, J, warps, vw, vx); break;
    case DT_BF16: launch_matvec<2>(r, J, warps, vw, vx); break;
    case DT_Q4_0:
        if (qmv_on() && q8x_on()) {
            if (quant_x8(r, J, x, n, W0->cols)) launch_matvec<6>(r, J, warps, false, vx);
        } else if (qmv_on()) launch_matvec<4>(r, J, warps, false, vx);
        else launch_matvec<3>(r, J, warps, false, vx);
        break;
    case DT_Q8_0:
        if (qmv_on() && q8x_on()) {
            if (quant_x8(r, J, x, n, W0->cols)) launch_matvec<7>(r, J, warps, false, vx);
        } else if (qmv_on()) launch_matvec<5>(r, J, warps, false, vx);
        else launch_matvec<3>(r, J, warps, false, vx);
        break;
    case DT_Q4_K: /* 16-byte loads of the file's rows: aligned matrices only */
    case DT_Q6_K: {
        bool al = true;
        for (int s = 0; s < J.count; s++) al = al && (uintptr_t)W[s]->data % 16 == 0;
        if (qmv_on() && q8x_on() && (al || W0->dt == DT_Q6_K)) {
            if (quant_x8(r, J, x, n, W0->cols)) {
                if (W0->dt == DT_Q4_K) launch_matvec<8>(r, J, warps, false, vx);
                else launch_matvec<9>(r, J, warps, false, vx);
            }
        } else launch_matvec<3>(r, J, warps, false, vx);
        break;
    }
    default: launch_matvec<3>(r, J, warps, false, vx); break;
    }
}

static void matvec(const cu_run *r, float *y, const float *x, const wk_weight *W,
                   const float *bias, int n) {
    mv_job J;
    memset(&J, 0, sizeof J); /* a graph pass's fingerprint reads the padding */
    J.W[0] = (const uint8_t *)W->data, J.y[0] = y, J.bias[0] = bias, J.rows[0] = W->rows;
    J.count = 1, J.mode = MV_STORE;
    matvec_job(r, J, &W, x, n);
}

/* ---- prefill: widen + cuBLAS ---- */

/* out (m, cols) = rows [r0, r0 + m) of W as f32, with the reference formulas. */
__global__ void k_widen(float *out, const uint8_t *W, int dt, size_t rb, long long rows,
                        long long r0, long long cols, long long total) {
    for (long long it = (long long)blockIdx.x * blockDim.x + threadIdx.x; it < total;
         it += (long long)gridDim.x * blockDim.x) {
        const long long i = it / cols, c = it % cols;
        out[it] = cu_wel(dt, W, rows, cols, rb, r0 + i, c);
    }
}

/* out (m, cols) = rows [r0, r0 + m) of W widened with the reference formulas, then rounded to
 * bf16 (nearest even). */
__global__ void k_widen_bf16(uint16_t *out, const uint8_t *W, int dt, size_t rb, long long rows,
                             long long r0, long long cols, long long total) {
    for (long long it = (long long)blockIdx.x * blockDim.x + threadIdx.x; it < total;
         it += (long long)gridDim.x * blockDim.x) {
        const long long i = it / cols, c = it % cols;
        out[it] = cu_f2bf(cu_wel(dt, W, rows, cols, rb, r0 + i, c));
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

/* x rounded to bf16 (nearest even) in per-thread scratch, or NULL (noted). */
static const uint16_t *x_bf16(const cu_run *r, const float *x, long long total) {
    uint16_t *xb = (uint16_t *)cu_scratch(r, CU_SLOT_XB, sizeof(uint16_t) * (size_t)total);
    if (xb)
        cu_launch(r, "matmul (x to bf16)", k_to_bf16, cu_grid(total, CU_THREADS), CU_THREADS, 0,
                  xb, x, total);
    return xb;
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
        const uint16_t *xb = x_bf16(r, x, (long long)n * cols);
        if (!xb) return;
        if (!gemm_bf16(r, h, y, rows, xb, (const uint16_t *)W->data, rows, n, cols)) return;
    } else if (dtype_is_quant(W->dt) && (r->flags & WK_CTX_FAST) && qgemm_on()) {
        /* quantized weights in precision fast: each tile dequantized (the reference formulas)
           and rounded to bf16, times the bf16-rounded activations on the tensor cores */
        const uint16_t *xb = x_bf16(r, x, (long long)n * cols);
        if (!xb) return;
        long long blk = 2 * CU_WIDE_FLOATS / cols; /* the same 64 MiB, as bf16 */
        if (blk < 1) blk = 1;
        if (blk > rows) blk = rows;
        uint16_t *tile =
            (uint16_t *)cu_scratch(r, CU_SLOT_WIDE, sizeof(uint16_t) * (size_t)(blk * cols));
        if (!tile) return;
        const size_t rb = dtype_row_bytes(W->dt, cols);
        for (long long r0 = 0; r0 < rows; r0 += blk) {
            const long long m = r0 + blk < rows ? blk : rows - r0;
            cu_launch(r, "matmul (widen bf16)", k_widen_bf16, cu_grid(m * cols, CU_THREADS),
                      CU_THREADS, 0, tile, (const uint8_t *)W->data, W->dt, rb, rows, r0, cols,
                      m * cols);
            if (!gemm_bf16(r, h, y + r0, rows, xb, tile, m, n, cols)) return;
        }
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
                      0, tile, (const uint8_t *)W->data, W->dt, rb, rows, r0, cols, m * cols);
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

/* ---- fusions of a decoder layer's products (kernels.h: matmul_multi, _glu, _add) ----
 * Decode-sized n runs one matvec launch with the fused epilogue, computing exactly what the
 * plain ops compute (the same per-row sums, then the same formulas); larger n runs the plain
 * ops one after another. */

static bool same_shape(const wk_weight *a, const wk_weight *b) {
    return a->dt == b->dt && a->cols == b->cols;
}

void cu_matmul_multi(const cu_run *r, int count, float *const *y, const float *x,
                     const wk_weight *const *W, const float *const *bias, int n) {
    if (n <= 0 || count <= 0) return;
    bool fuse = n <= CU_MV_NX && count <= CU_MV_SEGS;
    for (int s = 0; fuse && s < count; s++)
        fuse = W[s]->rows > 0 && W[s]->cols > 0 && same_shape(W[0], W[s]);
    if (!fuse) {
        for (int s = 0; s < count; s++) cu_matmul(r, y[s], x, W[s], bias ? bias[s] : NULL, n);
        return;
    }
    mv_job J;
    memset(&J, 0, sizeof J);
    for (int s = 0; s < count; s++) {
        J.W[s] = (const uint8_t *)W[s]->data, J.y[s] = y[s], J.rows[s] = W[s]->rows;
        J.bias[s] = bias ? bias[s] : NULL;
    }
    J.count = count, J.mode = MV_STORE;
    matvec_job(r, J, W, x, n);
}

void cu_matmul_glu(const cu_run *r, float *h, float *gate, float *up, const float *x,
                   const wk_weight *Wg, const wk_weight *Wu, const float *bg, const float *bu,
                   bool gelu_tanh, int n) {
    if (n <= 0 || Wg->rows <= 0) return;
    if (n > CU_MV_NX || Wg->cols <= 0 || !same_shape(Wg, Wu) || Wg->rows != Wu->rows) {
        cu_matmul(r, gate, x, Wg, bg, n);
        cu_matmul(r, up, x, Wu, bu, n);
        const long total = (long)n * Wg->rows;
        if (gelu_tanh) cu_gelu_tanh_mul(r, h, gate, up, total);
        else cu_silu_mul(r, h, gate, up, total);
        return;
    }
    mv_job J;
    memset(&J, 0, sizeof J);
    J.W[0] = (const uint8_t *)Wg->data, J.W[1] = (const uint8_t *)Wu->data;
    J.y[0] = h, J.bias[0] = bg, J.bias[1] = bu, J.rows[0] = J.rows[1] = Wg->rows;
    J.count = 2, J.mode = gelu_tanh ? MV_GELU : MV_SILU;
    const wk_weight *W[2] = {Wg, Wu};
    matvec_job(r, J, W, x, n);
}

void cu_matmul_add(const cu_run *r, float *y, float *tmp, const float *x, const wk_weight *W,
                   const float *bias, int n) {
    if (n <= 0 || W->rows <= 0) return;
    if (n > CU_MV_NX || W->cols <= 0) {
        cu_matmul(r, tmp, x, W, bias, n);
        cu_add(r, y, tmp, (long)n * W->rows);
        return;
    }
    mv_job J;
    memset(&J, 0, sizeof J);
    J.W[0] = (const uint8_t *)W->data, J.y[0] = y, J.bias[0] = bias, J.rows[0] = W->rows;
    J.count = 1, J.mode = MV_ADD;
    matvec_job(r, J, &W, x, n);
}
