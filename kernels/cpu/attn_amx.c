/* attn_amx.c — causal attention of prefill rows in precision fast on AMX tiles (AMX-BF16).
 *
 * Definition (precision fast; exact keeps attn_tile.h's f32 path): the query rows, the cached
 * keys and values (widened from the cache's type with the reference conversion) and the
 * softmax weights are rounded to bf16 (nearest even); scores = Σ q̂·k̂ in f32 (each product
 * exact), then · scale, softcap, masking and the online softmax in f32 exactly as kernels.h
 * states them; out = Σ p̂·v̂ / Σ p, the sum of the unrounded weights. This is what flash
 * attention does in bf16 on GPUs; tests/test_kernels checks it against the reference run on
 * the rounded q, k and v with a bound for the rounding of p.
 *
 * Work item: one KV head and a block of query rows; its R = rows · group query vectors (the
 * heads sharing the KV head) are cut into blocks of 16, one tile's rows. Keys are visited in
 * chunks of 32: each chunk's K and V are widened, rounded and laid out once for the item —
 * K as 2 tiles per 32 dimensions (tile row = a pair of dimensions, column = key: TDPBF16PS's
 * second operand), V as key pairs × dimensions — and then every vector block of the item
 * runs: S = Q·Kᵀ into 2 tiles (16 vectors × 32 keys), the online softmax on AVX-512 (the
 * running max and sum per vector, p rounded to bf16 into one tile), then P·V into up to 4
 * tiles at a time (16 dimensions each) added to the f32 accumulators after they are scaled
 * by the max's correction. Chunks wholly above every vector's position (causal) or below
 * the window are skipped; masking is computed only where a chunk crosses a vector's limits.
 *
 * Not here: threading and the choice of path (cpu.c). Only called after cpu_amx_init()
 * returned 1; head_dim % 32 == 0, head_dim <= CPU_AMX_ATT_MAX_HD, the cache's block size a
 * multiple of 16. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"
#include "kernels/cpu/tp16_avx512.h"
#include "kernels/cpu/cpu_simd_exp.h"

#define AI static inline __attribute__((always_inline))
#define KC 32 /* keys per chunk */

typedef struct tile_cfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_cfg;

/* Scratch layout (64-byte aligned pieces), for R <= CPU_AMX_ATT_MAX_R vectors. */
static size_t al64(size_t b) { return (b + 63) & ~(size_t)63; }

size_t cpu_amx_attn_scratch(int hd) {
    const size_t R = CPU_AMX_ATT_MAX_R;
    return al64(R * hd * 2)             /* Q, bf16, R rows of hd */
           + al64(R * hd * 4)           /* O accumulators */
           + al64(R * 4) * 3            /* running max, sum, correction */
           + al64((size_t)KC * hd * 2)  /* K chunk in tile layout */
           + al64((size_t)KC * hd * 2)  /* V chunk in tile layout */
           + al64((size_t)KC * hd * 4)  /* a chunk's rows widened to f32 */
           + al64(16 * KC * 4)          /* S */
           + al64(16 * KC * 2)          /* P */
           + al64((size_t)16 * hd * 4)  /* P·V of one vector block */
           + 64;
}

/* 32 f32 → 32 bf16 (nearest even) as one vector, element order kept. */
AI __m512i bf16x32(const float *v) {
    return (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(v + 16), _mm512_loadu_ps(v));
}

/* Keys [j0, j0 + 32) of KV head kvh, those < jend (others zero), widened into f (32 rows of
 * hd f32) then laid out: Kt (per 32 dimensions c, per 16 keys h: 16 rows of dimension pairs
 * × 16 keys, 1 KiB), Vt (16 rows of key pairs × hd dimensions, as dwords of the pair). */
static void load_chunk(uint16_t *Kt, uint16_t *Vt, float *f, const wk_kv_layer *kv,
                       const wk_span *sp, int kvh, int j0, int jend, int hd,
                       void (*to_f32)(float *, const wk_weight *, int64_t)) {
    const int bs = kv->block_size;
    for (int w = 0; w < 2; w++) { /* 0: K, 1: V */
        for (int t = 0; t < KC; t++) {
            float *o = f + (size_t)t * hd;
            const int j = j0 + t;
            if (j >= jend) {
                memset(o, 0, sizeof(float) * (size_t)hd);
                continue;
            }
            const size_t off = (size_t)sp->blocks[j / bs] * kv->block_bytes +
                               ((size_t)kvh * bs + (size_t)(j % bs)) * kv->row_bytes;
            const void *src = (const char *)(w ? kv->v : kv->k) + off;
            if (kv->dt == DT_F32) memcpy(o, src, sizeof(float) * (size_t)hd);
            else {
                const wk_weight row = {src, kv->dt, 1, hd, NULL};
                to_f32(o, &row, 0);
            }
        }
        if (w == 0) {
            for (int c = 0; c < hd / 32; c++)
                for (int h = 0; h < 2; h++) {
                    __m512i a[16];
                    for (int t = 0; t < 16; t++) a[t] = bf16x32(f + (size_t)(16 * h + t) * hd + 32 * c);
                    tp16(a); /* a[q] = pair q of the 16 keys */
                    uint16_t *dst = Kt + ((size_t)c * 2 + h) * 512;
                    for (int q = 0; q < 16; q++) _mm512_store_si512((void *)(dst + 32 * q), a[q]);
                }
        } else {
            /* row kp: for each dimension d the pair (v[2kp][d], v[2kp+1][d]) */
            const __m512i lo = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                                39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
            const __m512i hi = _mm512_set_epi16(63, 31, 62, 30, 61, 29, 60, 28, 59, 27, 58, 26, 57, 25, 56, 24,
                                                55, 23, 54, 22, 53, 21, 52, 20, 51, 19, 50, 18, 49, 17, 48, 16);
            for (int kp = 0; kp < KC / 2; kp++)
                for (int d = 0; d < hd; d += 32) {
                    const __m512i a = bf16x32(f + (size_t)(2 * kp) * hd + d);
                    const __m512i b = bf16x32(f + (size_t)(2 * kp + 1) * hd + d);
                    uint16_t *dst = Vt + (size_t)kp * hd * 2 + 2 * d;
                    _mm512_store_si512((void *)dst, _mm512_permutex2var_epi16(a, lo, b));
                    _mm512_store_si512((void *)(dst + 32), _mm512_permutex2var_epi16(a, hi, b));
                }
        }
    }
}

void cpu_amx_attn_block(float *out, const float *q, const wk_kv_layer *kv, const wk_span *sp,
                        int i0, int i1, int kvh, int n_head, int group, int hd, int window,
                        float scale, float softcap, void *scratch,
                        void (*to_f32)(float *, const wk_weight *, int64_t)) {
    const int R = (i1 - i0) * group, VB = (R + 15) / 16;
    uint8_t *p8 = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
#define TAKE(T, n) ((T *)(p8 += al64(n), p8 - al64(n)))
    uint16_t *Q = TAKE(uint16_t, (size_t)VB * 16 * hd * 2);
    float *O = TAKE(float, (size_t)VB * 16 * hd * 4);
    float *mx = TAKE(float, (size_t)VB * 16 * 4), *sum = TAKE(float, (size_t)VB * 16 * 4);
    float *corr = TAKE(float, (size_t)VB * 16 * 4);
    uint16_t *Kt = TAKE(uint16_t, (size_t)KC * hd * 2), *Vt = TAKE(uint16_t, (size_t)KC * hd * 2);
    float *f = TAKE(float, (size_t)KC * hd * 4), *S = TAKE(float, 16 * KC * 4);
    uint16_t *P = TAKE(uint16_t, 16 * KC * 2);
    float *PV = TAKE(float, (size_t)16 * hd * 4);
#undef TAKE
    int pos[CPU_AMX_ATT_MAX_R + 16], lo[CPU_AMX_ATT_MAX_R + 16];
    for (int r = 0; r < VB * 16; r++) {
        uint16_t *qr = Q + (size_t)r * hd;
        mx[r] = -INFINITY, sum[r] = 0.0f;
        memset(O + (size_t)r * hd, 0, sizeof(float) * (size_t)hd);
        if (r >= R) { /* padding vector: sees nothing */
            memset(qr, 0, (size_t)hd * 2);
            pos[r] = -1, lo[r] = 0;
            continue;
        }
        const int i = i0 + r / group, h = kvh * group + r % group;
        const float *qs = q + ((size_t)(sp->row0 + i) * n_head + h) * hd;
        for (int d = 0; d < hd; d += 32) _mm512_store_si512((void *)(qr + d), bf16x32(qs + d));
        pos[r] = sp->pos0 + i;
        lo[r] = window > 0 && pos[r] - window + 1 > 0 ? pos[r] - window + 1 : 0;
    }
    tile_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.colsb[t] = 64, cfg.rows[t] = 16;
    _tile_loadconfig(&cfg);
    const int plast = sp->pos0 + i1 - 1, pfirst = sp->pos0 + i0;
    int jlo = 0;
    if (window > 0 && pfirst - window + 1 > 0) jlo = (pfirst - window + 1) / KC * KC;
    const size_t qstride = (size_t)hd * 2, vstride = (size_t)hd * 4;
    for (int j0 = jlo; j0 <= plast; j0 += KC) {
        load_chunk(Kt, Vt, f, kv, sp, kvh, j0, plast + 1, hd, to_f32);
        for (int vb = 0; vb < VB; vb++) {
            const int r0 = 16 * vb;
            /* vectors of this block that see some key of the chunk; masking needed? */
            int any = 0, full = 1;
            for (int u = 0; u < 16; u++) {
                const int r = r0 + u;
                if (pos[r] < 0) continue;
                if (j0 <= pos[r] && j0 + KC > lo[r]) any = 1;
                if (j0 + KC - 1 > pos[r] || j0 < lo[r]) full = 0;
            }
            if (!any) continue;
            /* S = Q·Kᵀ: tiles 0, 1 (keys 0-15, 16-31) */
            _tile_zero(0);
            _tile_zero(1);
            for (int c = 0; c < hd / 32; c++) {
                _tile_loadd(2, Q + (size_t)r0 * hd + 32 * c, (long)qstride);
                _tile_loadd(3, Kt + (size_t)c * 2 * 512, 64);
                _tile_loadd(4, Kt + ((size_t)c * 2 + 1) * 512, 64);
                _tile_dpbf16ps(0, 2, 3);
                _tile_dpbf16ps(1, 2, 4);
            }
            _tile_stored(0, S, KC * 4);
            _tile_stored(1, S + 16, KC * 4);
            /* online softmax, 32 scores per vector */
            for (int u = 0; u < 16; u++) {
                const int r = r0 + u;
                __m512 s0 = _mm512_mul_ps(_mm512_loadu_ps(S + u * KC), _mm512_set1_ps(scale));
                __m512 s1 = _mm512_mul_ps(_mm512_loadu_ps(S + u * KC + 16), _mm512_set1_ps(scale));
                if (softcap > 0) {
                    float t[KC];
                    _mm512_storeu_ps(t, s0), _mm512_storeu_ps(t + 16, s1);
                    for (int k = 0; k < KC; k++) t[k] = tanhf(t[k] / softcap) * softcap; /* Gemma 2 */
                    s0 = _mm512_loadu_ps(t), s1 = _mm512_loadu_ps(t + 16);
                }
                if (!full) {
                    __mmask32 vis = 0;
                    if (pos[r] >= 0)
                        for (int k = 0; k < KC; k++) {
                            const int j = j0 + k;
                            if (j <= pos[r] && j >= lo[r]) vis |= 1u << k;
                        }
                    s0 = _mm512_mask_blend_ps((__mmask16)vis, _mm512_set1_ps(-INFINITY), s0);
                    s1 = _mm512_mask_blend_ps((__mmask16)(vis >> 16), _mm512_set1_ps(-INFINITY), s1);
                }
                const float cm = _mm512_reduce_max_ps(_mm512_max_ps(s0, s1));
                const float m = cm > mx[r] ? cm : mx[r];
                if (m == -INFINITY) { /* nothing visible yet: weights 0, state unchanged */
                    _mm256_store_si256((__m256i *)(P + u * KC), _mm256_setzero_si256());
                    _mm256_store_si256((__m256i *)(P + u * KC + 16), _mm256_setzero_si256());
                    corr[r] = 1.0f;
                    continue;
                }
                const __m512 e0 = exp512(_mm512_sub_ps(s0, _mm512_set1_ps(m)));
                const __m512 e1 = exp512(_mm512_sub_ps(s1, _mm512_set1_ps(m)));
                corr[r] = expf(mx[r] - m); /* 0 on the first visible chunk */
                sum[r] = sum[r] * corr[r] + _mm512_reduce_add_ps(_mm512_add_ps(e0, e1));
                mx[r] = m;
                _mm512_store_si512((void *)(P + u * KC), (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
            }
            /* P·V, 4 tiles of 16 dimensions at a time, then O = O·corr + P·V */
            _tile_loadd(5, P, KC * 2);
            for (int d0 = 0; d0 < hd; d0 += 64) {
                const int nt = (hd - d0) / 16 < 4 ? (hd - d0) / 16 : 4;
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                _tile_loadd(6, Vt + 2 * d0, (long)vstride);
                _tile_dpbf16ps(0, 5, 6);
                if (nt > 1) {
                    _tile_loadd(7, Vt + 2 * (d0 + 16), (long)vstride);
                    _tile_dpbf16ps(1, 5, 7);
                }
                if (nt > 2) {
                    _tile_loadd(6, Vt + 2 * (d0 + 32), (long)vstride);
                    _tile_dpbf16ps(2, 5, 6);
                }
                if (nt > 3) {
                    _tile_loadd(7, Vt + 2 * (d0 + 48), (long)vstride);
                    _tile_dpbf16ps(3, 5, 7);
                }
                _tile_stored(0, PV + d0, (long)vstride);
                if (nt > 1) _tile_stored(1, PV + d0 + 16, (long)vstride);
                if (nt > 2) _tile_stored(2, PV + d0 + 32, (long)vstride);
                if (nt > 3) _tile_stored(3, PV + d0 + 48, (long)vstride);
            }
            for (int u = 0; u < 16; u++) {
                const int r = r0 + u;
                if (pos[r] < 0) continue;
                const __m512 cr = _mm512_set1_ps(corr[r]);
                float *o = O + (size_t)r * hd;
                const float *pv = PV + (size_t)u * hd;
                for (int d = 0; d < hd; d += 16)
                    _mm512_store_ps(o + d, _mm512_fmadd_ps(_mm512_load_ps(o + d), cr, _mm512_load_ps(pv + d)));
            }
        }
    }
    _tile_release();
    for (int r = 0; r < R; r++) {
        const int i = i0 + r / group, h = kvh * group + r % group;
        float *o = out + ((size_t)(sp->row0 + i) * n_head + h) * hd;
        const float inv = sum[r] > 0.0f ? 1.0f / sum[r] : 0.0f;
        const __m512 iv = _mm512_set1_ps(inv);
        for (int d = 0; d < hd; d += 16)
            _mm512_storeu_ps(o + d, _mm512_mul_ps(_mm512_load_ps(O + (size_t)r * hd + d), iv));
    }
}
