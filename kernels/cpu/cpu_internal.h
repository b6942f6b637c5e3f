/* cpu_internal.h — the per-ISA inner loops behind the threaded CPU kernel table.
 *
 * kernels/cpu is split in two layers. cpu.c (built for baseline x86-64, no ISA flags) owns
 * threading, the BLAS prefill path, dispatch and the generic C inner loops. Each ISA file
 * (cpu_avx2.c, cpu_avx512.c) only fills a `cpu_isa` with single-threaded inner loops over a
 * range; cpu.c never calls one of them unless __builtin_cpu_supports says the CPU can run it.
 * The generic loops here double as the scalar tails of the SIMD files, so tail handling is
 * written once. Nothing in this layer allocates. */
#ifndef WICK_KERNELS_CPU_INTERNAL_H
#define WICK_KERNELS_CPU_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "kernels/quant.h"

#define CPU_ATT_MAX_HD 256
#define CPU_ATT_MAX_R 64
#define CPU_ATT_WIDE_MAX_HD 128 /* attn_wide_avx512.c: head_dim (a multiple of 16) at most */
#define CPU_ATT_WIDE_MAX_R 128  /* attn_wide_avx512.c: query vectors per block at most */
#define ATT_RB 4 /* query vectors a tiled-attention step computes together (attn_tile.h) */

/* Most activation rows one matvec pass handles per read of a weight row. */
#define CPU_MV_NX 8

/* The arguments of kernels.h attention_enc, shared by the (sequence, head) items. */
typedef struct cpu_enc_attn {
    float *out;
    const float *q, *k, *v;
    const int *lens;
    int n_seq, n_head, head_dim, max_tokens;
    float scale;
    const float *rel_bias;
    const int32_t *rel_bucket;
} cpu_enc_attn;

typedef struct cpu_isa {
    const char *name; /* "avx512", "avx2", "generic" */
    /* y[i*ldy + r] = Σ_c x[i*ldx + c]·W[r, c] for i < nx (1..CPU_MV_NX), r in [r0, r1).
     * Each weight row is read once per call for all nx activation rows. No bias. */
    void (*matvec)(float *y, int64_t ldy, const float *x, int64_t ldx, int nx,
                   const wk_weight *W, int64_t r0, int64_t r1);
    /* out[0..W.cols) = row r of W as f32 (exact widening). */
    void (*row_to_f32)(float *out, const wk_weight *W, int64_t r);
    /* Σ a[i]·b[i], i < n. */
    float (*dot)(const float *a, const float *b, int n);
    /* y[i] += a·x[i], i < n. */
    void (*axpy)(float *y, float a, const float *x, int n);
    /* Σ x[i]², i < n. */
    float (*sumsq)(const float *x, int n);
    /* out[i] = w[i]·(x[i]·inv), i < n (the rmsnorm output step; out may equal x). */
    void (*scale_mul)(float *out, const float *x, const float *w, float inv, int n);
    /* One head of rotate-half rope: pairs (j, j+half) for j < half. */
    void (*rope_head)(float *v, const float *c, const float *s, int half);
    /* Ops of kernels.h on a range [0, n). */
    void (*silu_mul)(float *out, const float *gate, const float *up, long n);
    void (*add)(float *y, const float *x, long n);
    void (*softmax)(float *x, int n);
    /* x[i] = 0.5·x·(1 + erf(x/√2)), i < n (AVX2/AVX-512: glibc's libmvec erff, ≤ 4 ulp). */
    void (*gelu)(float *x, long n);
    /* One row of kernels.h layernorm: x (+= r when r), statistics in double, then
     * x = (x − mean)·inv·w + b in f32 (ref's expression and order). */
    void (*layernorm_row)(float *x, const float *r, const float *w, const float *b, int d, float eps);
    /* One (sequence s, head h) item of attention_enc; the sequence's rows start at row off;
     * sc: 4·len16 floats, kt: head_dim·len16 floats of scratch, len16 = len rounded up to 16
     * (enc_attn.h). */
    void (*enc_attn_item)(const cpu_enc_attn *a, int s, int h, long off, float *sc, float *kt);
    /* Quantized weights (W.dt a block type): activations as blk_q8x blocks (quant.h).
     * quant_x: n activations (multiple of QK) -> n/QK blocks, same bytes as quant_x_row.
     * matvec_q: y[i*ldy + r] = quant_dot_q8x(W row r, xq + i*ldxq) for i < nx, r in [r0, r1)
     * (ldxq in blocks); equal to the scalar definition up to f32 summation order. */
    void (*quant_x)(blk_q8x *dst, const float *x, int64_t n);
    void (*matvec_q)(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int nx,
                     const wk_weight *W, int64_t r0, int64_t r1);
    /* Optional (NULL where absent; needs AVX-512 VNNI, which cpu.c checks): prefill matmul
     * for any n with quantized activations, same definition as matvec_q; see gemmq_avx512.c.
     * gemm_q_supports(dt) says which weight types it takes; scratch is
     * gemm_q_scratch(cols) bytes per calling thread. */
    void (*gemm_q)(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int n,
                   const wk_weight *W, int64_t r0, int64_t r1, void *scratch);
    int (*gemm_q_supports)(dtype dt);
    /* Tiled causal attention of rows [i0, i1) of one span (relative to its row0) for the
     * query heads of KV head kvh, with kernels.h's attention arguments (attn_tile.h);
     * head_dim <= CPU_ATT_MAX_HD and (i1 − i0)·(n_head/n_kv) <= CPU_ATT_MAX_R. */
    void (*attn_block)(float *out, const float *q, const wk_kv_layer *kv, const wk_span *sp,
                       int i0, int i1, int kvh, int n_head, int group, int hd, int window,
                       float scale, float softcap);
    size_t (*gemm_q_scratch)(int64_t cols);
    /* Optional: dst[i] = f32_to_f16(x[i]), i < n, the same bits as base/dtype.c's conversion
       (round to nearest even; a NaN becomes the sign with 0x7e00), for the f16 KV cache. */
    void (*f16_row)(uint16_t *dst, const float *x, int n);
} cpu_isa;

/* The generic (plain C) inner loops; also the scalar tails of the SIMD files. Each works on
 * any subrange, e.g. cpu_g_dot(a + k, b + k, n - k) finishes a vector loop. */
void cpu_g_matvec(float *y, int64_t ldy, const float *x, int64_t ldx, int nx, const wk_weight *W,
                  int64_t r0, int64_t r1);
/* Dot of x[c0..c1) with weight row r over columns [c0, c1), for nx rows: out[i] += ... */
void cpu_g_dot_w(float *out, const float *x, int64_t ldx, int nx, const wk_weight *W, int64_t r,
                 int64_t c0, int64_t c1);
float cpu_g_dot(const float *a, const float *b, int n);
void cpu_g_axpy(float *y, float a, const float *x, int n);
float cpu_g_sumsq(const float *x, int n);
void cpu_g_scale_mul(float *out, const float *x, const float *w, float inv, int n);
void cpu_g_rope_pairs(float *v, const float *c, const float *s, int j0, int half);
void cpu_g_silu_mul(float *out, const float *gate, const float *up, long n);
void cpu_g_add(float *y, const float *x, long n);
void cpu_g_gelu(float *x, long n);
void cpu_g_layernorm_row(float *x, const float *r, const float *w, const float *b, int d, float eps);
/* Scalar pieces of softmax, so a SIMD softmax can finish its tails with them. */
float cpu_g_max(const float *x, int n);
/* x[i] = expf(x[i] − m), returns the sum. */
float cpu_g_exp_sum(float *x, int n, float m);
void cpu_g_scale(float *x, float s, int n);
void cpu_g_matvec_q(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int nx,
                    const wk_weight *W, int64_t r0, int64_t r1);

/* quant_avx2.c (AVX2): the quant_x and matvec_q entries of the avx2 table, same contracts
 * as cpu_isa's. */
void cpu_a2_quant_x(blk_q8x *dst, const float *x, int64_t n);
void cpu_a2_matvec_q(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int nx,
                     const wk_weight *W, int64_t r0, int64_t r1);

/* gemmq_avx2.c (AVX2; Q4_0/Q4_K/Q6_K). */
void cpu_a2_gemm_q(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int n,
                   const wk_weight *W, int64_t r0, int64_t r1, void *scratch);
int cpu_a2_gemm_q_supports(dtype dt);
size_t cpu_a2_gemm_q_scratch(int64_t cols);

/* gemmq_avx512.c (AVX-512 VNNI). */
void cpu_a5_gemm_q(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int n,
                   const wk_weight *W, int64_t r0, int64_t r1, void *scratch);
int cpu_a5_gemm_q_supports(dtype dt);
size_t cpu_a5_gemm_q_scratch(int64_t cols);
/* gemmq_avx512.c: the same product for Q4_0 / Q8_0 read from the file layout without the
 * repack (supports: which types), for a few activation rows; AVX-512 VNNI. */
void cpu_a5_gemm_q_direct(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int n,
                          const wk_weight *W, int64_t r0, int64_t r1);
int cpu_a5_gemm_q_direct_supports(dtype dt);
/* gemmq_avx512.c: Q4_0 / Q8_0 packed once into 16-row panels (cpu_a5_pack_panel, one
 * sequential stream per panel) and the matmul that reads W->packed; AVX-512 VNNI. */
int cpu_a5_pack_supports(const wk_weight *W);
size_t cpu_a5_pack_panel_bytes(dtype dt, int64_t cols);
void cpu_a5_pack_panel(uint8_t *dst, const wk_weight *W, int64_t p); /* dst zeroed */
void cpu_a5_gemm_q_packed(float *y, int64_t ldy, const blk_q8x *xq, int64_t ldxq, int n,
                          const wk_weight *W, const uint8_t *panels, int64_t r0, int64_t r1);
/* Row r of a packed Q4_0 / Q8_0 matrix, dequantized as quant_dequantize_row does. */
void cpu_a5_packed_row_to_f32(float *out, const wk_weight *W, const uint8_t *panels, int64_t r);
/* gemm_f_avx512.c (AVX-512; the bf16 entries also AVX512_BF16): prefill matmul for F32/F16/BF16
 * weights, cols % 32 == 0, rows [r0, r1), scratch cpu_a5_gemm_f_scratch(cols) bytes per thread.
 * gemm_f: exact (f32 x, stride ldx floats); gemm_bf16: BF16 weights against x rounded to bf16
 * by x_to_bf16 (stride ldx bf16 values, even). See the file comment for both definitions.
 * bias (NULL: none) is added to each sum as it is stored, the sum first as ref does. */
void cpu_a5_gemm_f(float *y, int64_t ldy, const float *x, int64_t ldx, int n, const wk_weight *W,
                   const float *bias, int64_t r0, int64_t r1, void *scratch);
void cpu_a5_gemm_bf16(float *y, int64_t ldy, const uint16_t *xb, int64_t ldx, int n,
                      const wk_weight *W, const float *bias, int64_t r0, int64_t r1, void *scratch);
void cpu_a5_x_to_bf16(uint16_t *out, const float *x, int64_t n);
/* gemm_amx.c (AVX-512 + AMX-TILE + AMX-BF16): BF16 / F16 / quantized weights (the last
 * dequantized and rounded to bf16) against activations rounded to bf16, cols % 32 == 0. cpu_amx_init (once per process) checks CPUID and asks Linux for the
 * tile state; xv = the activations in tile layout (cpu_amx_xv_bytes, token blocks of 16 made
 * by cpu_amx_make_xv, shared read-only); the gemm runs rows [r0, r1) with its thread's scratch
 * (cpu_amx_scratch bytes). bias (NULL: none) added after each sum. See the file comment. */
int cpu_amx_init(void);
size_t cpu_amx_xv_bytes(int n, int64_t cols, dtype dt);
void cpu_amx_make_xv(uint32_t *xv, const float *x, int64_t ldx, int n, int64_t cols, dtype dt,
                     int b0, int b1);
size_t cpu_amx_scratch(int64_t cols, dtype dt);
void cpu_amx_gemm(float *y, int64_t ldy, const uint32_t *xv, int n, const wk_weight *W,
                  const float *bias, int64_t r0, int64_t r1, void *scratch,
                  void (*to_f32)(float *, const wk_weight *, int64_t));
/* attn_amx.c (AMX-BF16): one work item of prefill attention in precision fast — KV head kvh,
 * query rows [i0, i1) of span sp, (i1 − i0)·group <= CPU_AMX_ATT_MAX_R vectors, head_dim % 32
 * == 0 and <= CPU_AMX_ATT_MAX_HD, the cache's block size % 16 == 0; scratch
 * cpu_amx_attn_scratch(hd) bytes, this thread's; to_f32 widens a cache row. */
#define CPU_AMX_ATT_MAX_R 128
#define CPU_AMX_ATT_MAX_HD 256
size_t cpu_amx_attn_scratch(int hd);
void cpu_amx_attn_block(float *out, const float *q, const wk_kv_layer *kv, const wk_span *sp,
                        int i0, int i1, int kvh, int n_head, int group, int hd, int window,
                        float scale, float softcap, void *scratch,
                        void (*to_f32)(float *, const wk_weight *, int64_t));
/* cpu.c: whether the AVX-512 table in precision fast rounds the activations of a matmul of
 * n rows by W (dt, cols) to bf16 on this CPU (AMX or AVX512_BF16 paths), for tests. */
int cpu_fast_rounds_x(dtype dt, int64_t cols, int n);
/* cpu.c: whether the AVX-512 table's attention in precision fast rounds to bf16 (AMX) for a
 * span of n rows, for tests. */
int cpu_fast_attn_rounds(int hd, int group, int block_size, int n);
/* attn_wide_avx512.c: attn_block's result (without soft-capping) for 16 or more query vectors
 * ((i1 − i0)·group <= CPU_ATT_WIDE_MAX_R), head_dim % 16 == 0 and <= CPU_ATT_WIDE_MAX_HD; K/V
 * rows widened with row_to_f32; scratch of cpu_a5_attn_wide_scratch(hd) bytes. */
size_t cpu_a5_attn_wide_scratch(int hd);
void cpu_a5_attn_wide(float *out, const float *q, const wk_kv_layer *kv, const wk_span *sp,
                      int i0, int i1, int kvh, int n_head, int group, int hd, int window,
                      float scale, void (*row_to_f32)(float *, const wk_weight *, int64_t),
                      void *scratch);
/* gemm_f_avx512.c: F32/F16/BF16 packed once into 32-row panels of f32 (cpu_a5_fpack_panel,
 * cpu_a5_fpack_panel_bytes each, 64-byte aligned) and the exact matmul that reads them
 * (r0 % 32 == 0); bit-identical to cpu_a5_gemm_f followed by the bias add. */
int cpu_a5_fpack_supports(const wk_weight *W);
size_t cpu_a5_fpack_panel_bytes(int64_t cols);
void cpu_a5_fpack_panel(uint8_t *dst, const wk_weight *W, int64_t p);
/* Weight rows (a multiple of 32) whose panels make one L2-sized block of gemm_f_packed. */
int64_t cpu_a5_fpack_block_rows(int64_t cols);
void cpu_a5_gemm_f_packed(float *y, int64_t ldy, const float *x, int64_t ldx, int n,
                          const wk_weight *W, const uint8_t *panels, const float *bias,
                          int64_t r0, int64_t r1); /* bias[r] added to y[., r], NULL: none */
/* cpu_avx512.c: LoRA's u = t·Bᵀ for nx <= 8 rows: u[i·ldu + o] = Σ_k t[i·ldt + k]·B[o·r + k],
 * o < n_out (B rows of rank r, f32 or, bf16 != 0, bf16 widened exactly), k summed in order
 * with fused multiply-adds. */
void cpu_a5_lora_u(float *u, int64_t ldu, const float *t, int64_t ldt, int nx, const void *B,
                   int bf16, int64_t r, int64_t n_out);
/* cpu_avx512.c: LoRA's t = x·Aᵀ for nx <= 8 rows: t[i·ldt + k] = Σ_c x[i·ldx + c]·A[k·in + c]
 * (A f32 or bf16 as B above). */
void cpu_a5_lora_t(float *t, int64_t ldt, const float *x, int64_t ldx, int nx, const void *A,
                   int bf16, int64_t r, int64_t in);
size_t cpu_a5_gemm_f_scratch(int64_t cols);

/* ISA tables (the SIMD ones are defined in the ISA files and only called after a CPU feature
 * check). */
extern const cpu_isa cpu_isa_generic;
extern const cpu_isa cpu_isa_avx2;
extern const cpu_isa cpu_isa_avx512;

#endif
