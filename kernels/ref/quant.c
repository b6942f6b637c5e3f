/* quant.c — scalar definitions of the block-quantized formats of quant.h: quantize (with a
 * small scale search for the K-quants), dequantize, activation quantization and the
 * integer dot product. Clarity over speed: the fast versions are in kernels/cpu and are
 * tested against these. Not here: threading, SIMD, file I/O. */
#include "kernels/quant.h"

#include <math.h>
#include <string.h>

/* ---- Q8_0 / Q4_0 / Q5_0 ---- */

static void q8_0_quant(blk_q8_0 *b, const float *x) {
    float amax = 0.0f;
    for (int i = 0; i < QK; i++) amax = fmaxf(amax, fabsf(x[i]));
    /* Quantize with the stored (f16-rounded) scale, so |x − d·q| ≤ d/2 holds for the d
     * that is actually stored. */
    b->d = f32_to_f16(amax / 127.0f);
    const float d = f16_to_f32(b->d), id = d > 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < QK; i++) {
        float q = nearbyintf(x[i] * id);
        b->qs[i] = (int8_t)(q > 127.0f ? 127 : q < -127.0f ? -127 : q);
    }
}

static void q4_0_quant(blk_q4_0 *b, const float *x) {
    /* The value of largest magnitude maps to −8 (the level without a positive twin), so
     * d = that value / −8 and both signs get their full range. */
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < QK; i++)
        if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); vmax = x[i]; }
    b->d = f32_to_f16(vmax / -8.0f);
    const float d = f16_to_f32(b->d), id = d != 0.0f ? 1.0f / d : 0.0f;
    uint8_t q[QK];
    for (int i = 0; i < QK; i++) {
        float v = nearbyintf(x[i] * id) + 8.0f;
        q[i] = (uint8_t)(v < 0.0f ? 0 : v > 15.0f ? 15 : v);
    }
    for (int j = 0; j < QK / 2; j++) b->qs[j] = (uint8_t)(q[j] | (q[j + QK / 2] << 4));
}

/* As Q4_0 with 32 levels: the extreme maps to −16, d = that value / −16. */
static void q5_0_quant(blk_q5_0 *b, const float *x) {
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < QK; i++)
        if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); vmax = x[i]; }
    b->d = f32_to_f16(vmax / -16.0f);
    const float d = f16_to_f32(b->d), id = d != 0.0f ? 1.0f / d : 0.0f;
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; j++) {
        int q[2];
        for (int k = 0; k < 2; k++) {
            float v = nearbyintf(x[j + 16 * k] * id) + 16.0f;
            q[k] = v < 0.0f ? 0 : v > 31.0f ? 31 : (int)v;
            qh |= (uint32_t)(q[k] >> 4) << (j + 16 * k);
        }
        b->qs[j] = (uint8_t)((q[0] & 0xF) | (q[1] & 0xF) << 4);
    }
    for (int k = 0; k < 4; k++) b->qh[k] = (uint8_t)(qh >> (8 * k));
}

static inline uint32_t q5_0_hbits(const blk_q5_0 *b) {
    return (uint32_t)b->qh[0] | (uint32_t)b->qh[1] << 8 | (uint32_t)b->qh[2] << 16 |
           (uint32_t)b->qh[3] << 24;
}

/* ---- K-quant helpers ---- */

/* Fits x[i] ≈ scale·q[i] − m, q in [0, nmax], m ≥ 0, for n values. Tries a ladder of
 * quantization steps around (max − min)/nmax; for each, rounds, refits (scale, m) by least
 * squares and keeps the lowest squared error. */
static void fit_scale_min(const float *x, int n, int nmax, float *scale, float *m) {
    float lo = x[0], hi = x[0];
    for (int i = 1; i < n; i++) { lo = fminf(lo, x[i]); hi = fmaxf(hi, x[i]); }
    if (lo > 0.0f) lo = 0.0f;  /* the min is a zero point below 0 (m ≥ 0) */
    if (hi <= lo) { *scale = 0.0f; *m = -lo; return; }
    float best_err = INFINITY, best_s = (hi - lo) / nmax, best_m = -lo;
    for (int t = -6; t <= 6; t++) {
        float iscale = ((float)nmax + 0.1f * t) / (hi - lo);
        float sq = 0, sqx = 0, sx = 0, sqq = 0;
        int q[QKK];
        for (int i = 0; i < n; i++) {
            float v = nearbyintf(iscale * (x[i] - lo));
            q[i] = v < 0 ? 0 : v > nmax ? nmax : (int)v;
            sq += q[i]; sqq += (float)q[i] * q[i]; sqx += q[i] * x[i]; sx += x[i];
        }
        /* least squares for x ≈ s·q + b */
        float det = n * sqq - sq * sq, s, b;
        if (det > 0.0f) {
            s = (n * sqx - sq * sx) / det;
            b = (sx - s * sq) / n;
        } else { s = 0.0f; b = sx / n; }
        if (b > 0.0f) { b = 0.0f; s = sqq > 0.0f ? sqx / sqq : 0.0f; }
        if (s < 0.0f) s = 0.0f;
        float err = 0.0f;
        for (int i = 0; i < n; i++) {
            float e = x[i] - (s * q[i] + b);
            err += e * e;
        }
        if (err < best_err) { best_err = err; best_s = s; best_m = -b; }
    }
    *scale = best_s;
    *m = best_m;
}

static void q4_k_quant(blk_q4_k *b, const float *x) {
    float sc[8], mn[8], smax = 0.0f, mmax = 0.0f;
    for (int j = 0; j < 8; j++) {
        fit_scale_min(x + 32 * j, 32, 15, &sc[j], &mn[j]);
        smax = fmaxf(smax, sc[j]);
        mmax = fmaxf(mmax, mn[j]);
    }
    b->d = f32_to_f16(smax / 63.0f);
    b->dmin = f32_to_f16(mmax / 63.0f);
    const float d = f16_to_f32(b->d), dmin = f16_to_f32(b->dmin);
    uint8_t isc[8], imn[8];
    for (int j = 0; j < 8; j++) {
        float a = d > 0 ? nearbyintf(sc[j] / d) : 0, c = dmin > 0 ? nearbyintf(mn[j] / dmin) : 0;
        isc[j] = (uint8_t)(a > 63 ? 63 : a < 0 ? 0 : a);
        imn[j] = (uint8_t)(c > 63 ? 63 : c < 0 ? 0 : c);
    }
    for (int j = 0; j < 4; j++) {
        b->scales[j] = (uint8_t)(isc[j] | ((isc[j + 4] >> 4) << 6));
        b->scales[j + 4] = (uint8_t)(imn[j] | ((imn[j + 4] >> 4) << 6));
        b->scales[j + 8] = (uint8_t)((isc[j + 4] & 0xF) | ((imn[j + 4] & 0xF) << 4));
    }
    memset(b->qs, 0, sizeof b->qs);
    for (int j = 0; j < 8; j++) {
        const float s = d * isc[j], m = dmin * imn[j], is = s > 0 ? 1.0f / s : 0.0f;
        for (int l = 0; l < 32; l++) {
            float v = nearbyintf((x[32 * j + l] + m) * is);
            uint8_t q = (uint8_t)(v < 0 ? 0 : v > 15 ? 15 : v);
            b->qs[32 * (j / 2) + l] |= (uint8_t)(j & 1 ? q << 4 : q);
        }
    }
}

/* Signed scale for 16 values with q in [−32, 31]: the largest-magnitude value maps near −32,
 * a few steps around that are tried and the lowest squared error kept. */
static float fit_scale_q6(const float *x) {
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < 16; i++)
        if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); vmax = x[i]; }
    if (amax == 0.0f) return 0.0f;
    float best_err = INFINITY, best = vmax / -32.0f;
    for (int t = -4; t <= 4; t++) {
        float iscale = -(32.0f + 0.25f * t) / vmax, sqx = 0, sqq = 0;
        int q[16];
        for (int i = 0; i < 16; i++) {
            float v = nearbyintf(iscale * x[i]);
            q[i] = v < -32 ? -32 : v > 31 ? 31 : (int)v;
            sqx += q[i] * x[i];
            sqq += (float)q[i] * q[i];
        }
        float s = sqq > 0 ? sqx / sqq : 0.0f, err = 0.0f;
        for (int i = 0; i < 16; i++) err += (x[i] - s * q[i]) * (x[i] - s * q[i]);
        if (err < best_err) { best_err = err; best = s; }
    }
    return best;
}

static void q6_k_quant(blk_q6_k *b, const float *x) {
    float sc[16], smax = 0.0f;
    for (int j = 0; j < 16; j++) {
        sc[j] = fit_scale_q6(x + 16 * j);
        smax = fmaxf(smax, fabsf(sc[j]));
    }
    b->d = f32_to_f16(smax / 127.0f);
    const float d = f16_to_f32(b->d);
    for (int j = 0; j < 16; j++) {
        float a = d > 0 ? nearbyintf(sc[j] / d) : 0;
        b->scales[j] = (int8_t)(a > 127 ? 127 : a < -127 ? -127 : a);
    }
    memset(b->ql, 0, sizeof b->ql);
    memset(b->qh, 0, sizeof b->qh);
    for (int e = 0; e < QKK; e++) {
        const float s = d * b->scales[e / 16], is = s != 0 ? 1.0f / s : 0.0f;
        float v = nearbyintf(x[e] * is);
        int q = (v < -32 ? -32 : v > 31 ? 31 : (int)v) + 32;
        const int h = e / 128, i = e % 128, l = i % 32, k = i / 32;
        uint8_t *ql = &b->ql[64 * h + l + 32 * (k & 1)];
        *ql |= (uint8_t)(k >= 2 ? (q & 0xF) << 4 : q & 0xF);
        b->qh[32 * h + l] |= (uint8_t)((q >> 4) << (2 * k));
    }
}

/* ---- dequantize one block ---- */

static void deq_block(dtype dt, float *y, const void *blk) {
    switch (dt) {
    case DT_Q8_0: {
        const blk_q8_0 *b = blk;
        const float d = f16_to_f32(b->d);
        for (int i = 0; i < QK; i++) y[i] = d * b->qs[i];
        break;
    }
    case DT_Q4_0: {
        const blk_q4_0 *b = blk;
        const float d = f16_to_f32(b->d);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = d * ((b->qs[j] & 0xF) - 8);
            y[j + QK / 2] = d * ((b->qs[j] >> 4) - 8);
        }
        break;
    }
    case DT_Q5_0: {
        const blk_q5_0 *b = blk;
        const float d = f16_to_f32(b->d);
        const uint32_t qh = q5_0_hbits(b);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = d * ((int)((b->qs[j] & 0xF) | ((qh >> j) & 1) << 4) - 16);
            y[j + QK / 2] = d * ((int)((b->qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16);
        }
        break;
    }
    case DT_Q4_K: {
        const blk_q4_k *b = blk;
        const float d = f16_to_f32(b->d), dmin = f16_to_f32(b->dmin);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            quant_q4k_scale(b->scales, j, &sc, &m);
            const float s = d * sc, mm = dmin * m;
            const uint8_t *q = b->qs + 32 * (j / 2);
            for (int l = 0; l < 32; l++)
                y[32 * j + l] = s * ((j & 1) ? q[l] >> 4 : q[l] & 0xF) - mm;
        }
        break;
    }
    case DT_Q6_K: {
        const blk_q6_k *b = blk;
        const float d = f16_to_f32(b->d);
        for (int e = 0; e < QKK; e++) {
            const int h = e / 128, i = e % 128, l = i % 32, k = i / 32;
            const uint8_t ql = b->ql[64 * h + l + 32 * (k & 1)];
            const int q = ((k >= 2 ? ql >> 4 : ql & 0xF) | (((b->qh[32 * h + l] >> (2 * k)) & 3) << 4));
            y[e] = d * b->scales[e / 16] * (q - 32);
        }
        break;
    }
    default: memset(y, 0, sizeof(float) * (size_t)dtype_block_size(dt)); break;
    }
}

void quant_quantize_row(dtype dt, void *dst, const float *x, int64_t n) {
    const int bs = dtype_block_size(dt);
    const size_t bb = dtype_block_bytes(dt);
    if (!dtype_is_quant(dt)) return;
    for (int64_t b = 0; b < n / bs; b++) {
        void *blk = (char *)dst + b * bb;
        const float *xb = x + b * bs;
        switch (dt) {
        case DT_Q8_0: q8_0_quant(blk, xb); break;
        case DT_Q4_0: q4_0_quant(blk, xb); break;
        case DT_Q5_0: q5_0_quant(blk, xb); break;
        case DT_Q4_K: q4_k_quant(blk, xb); break;
        case DT_Q6_K: q6_k_quant(blk, xb); break;
        default: break;
        }
    }
}

void quant_dequantize_range(dtype dt, float *out, const void *row, int64_t c0, int64_t n) {
    const int bs = dtype_block_size(dt);
    const size_t bb = dtype_block_bytes(dt);
    if (!dtype_is_quant(dt)) return;
    for (int64_t b = 0; b < n / bs; b++)
        deq_block(dt, out + b * bs, (const char *)row + (c0 / bs + b) * bb);
}

void quant_dequantize_row(dtype dt, float *out, const void *src, int64_t n) {
    quant_dequantize_range(dt, out, src, 0, n);
}

/* ---- activations and the integer dot product ---- */

void quant_x_row(blk_q8x *dst, const float *x, int64_t n) {
    for (int64_t b = 0; b < n / QK; b++) {
        const float *xb = x + b * QK;
        float amax = 0.0f;
        for (int i = 0; i < QK; i++) amax = fmaxf(amax, fabsf(xb[i]));
        const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        blk_q8x *o = &dst[b];
        o->d = d;
        int s0 = 0, s1 = 0;
        for (int i = 0; i < QK; i++) {
            int q = (int)nearbyintf(xb[i] * id);
            o->qs[i] = (int8_t)q;
            if (i < 16) s0 += q; else s1 += q;
        }
        o->sum[0] = (int16_t)s0;
        o->sum[1] = (int16_t)s1;
    }
}

static float dot_q8_0(const blk_q8_0 *w, const blk_q8x *x, int64_t nb) {
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int s = 0;
        for (int i = 0; i < QK; i++) s += w[b].qs[i] * x[b].qs[i];
        acc += (float)s * (f16_to_f32(w[b].d) * x[b].d);
    }
    return acc;
}

static float dot_q4_0(const blk_q4_0 *w, const blk_q8x *x, int64_t nb) {
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        int s = 0;
        for (int j = 0; j < QK / 2; j++)
            s += (w[b].qs[j] & 0xF) * x[b].qs[j] + (w[b].qs[j] >> 4) * x[b].qs[j + QK / 2];
        s -= 8 * (x[b].sum[0] + x[b].sum[1]);
        acc += (float)s * (f16_to_f32(w[b].d) * x[b].d);
    }
    return acc;
}

static float dot_q5_0(const blk_q5_0 *w, const blk_q8x *x, int64_t nb) {
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const uint32_t qh = q5_0_hbits(&w[b]);
        int s = 0;
        for (int j = 0; j < QK / 2; j++)
            s += (int)((w[b].qs[j] & 0xF) | ((qh >> j) & 1) << 4) * x[b].qs[j] +
                 (int)((w[b].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) * x[b].qs[j + QK / 2];
        s -= 16 * (x[b].sum[0] + x[b].sum[1]);
        acc += (float)s * (f16_to_f32(w[b].d) * x[b].d);
    }
    return acc;
}

/* Per super-block: Σ_j d·sc_j·dx_j·Σq·qx − dmin·m_j·dx_j·Σqx. */
static float dot_q4_k(const blk_q4_k *w, const blk_q8x *x, int64_t nb) {
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const float d = f16_to_f32(w[b].d), dmin = f16_to_f32(w[b].dmin);
        const blk_q8x *xb = x + b * 8;
        float sb = 0.0f, mb = 0.0f;
        for (int j = 0; j < 8; j++) {
            int sc, m, s = 0;
            quant_q4k_scale(w[b].scales, j, &sc, &m);
            const uint8_t *q = w[b].qs + 32 * (j / 2);
            for (int l = 0; l < 32; l++) s += ((j & 1) ? q[l] >> 4 : q[l] & 0xF) * xb[j].qs[l];
            sb += xb[j].d * (float)(sc * s);
            mb += xb[j].d * (float)(m * (xb[j].sum[0] + xb[j].sum[1]));
        }
        acc += d * sb - dmin * mb;
    }
    return acc;
}

/* Per super-block: d·Σ_j dx_j·Σ_{g=0,1} sc_{2j+g}·(Σ q·qx − 32·Σqx) over 16-value groups. */
static float dot_q6_k(const blk_q6_k *w, const blk_q8x *x, int64_t nb) {
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const blk_q8x *xb = x + b * 8;
        float sb = 0.0f;
        for (int j = 0; j < 8; j++) {
            int tot = 0;
            for (int g = 0; g < 2; g++) {
                int s = 0;
                for (int l = 0; l < 16; l++) {
                    const int e = 32 * j + 16 * g + l, h = e / 128, i = e % 128, ll = i % 32,
                              k = i / 32;
                    const uint8_t ql = w[b].ql[64 * h + ll + 32 * (k & 1)];
                    const int q = (k >= 2 ? ql >> 4 : ql & 0xF) |
                                  (((w[b].qh[32 * h + ll] >> (2 * k)) & 3) << 4);
                    s += q * xb[j].qs[16 * g + l];
                }
                tot += w[b].scales[2 * j + g] * (s - 32 * xb[j].sum[g]);
            }
            sb += xb[j].d * (float)tot;
        }
        acc += f16_to_f32(w[b].d) * sb;
    }
    return acc;
}

float quant_dot_q8x(dtype dt, const void *wrow, const blk_q8x *xq, int64_t n) {
    switch (dt) {
    case DT_Q8_0: return dot_q8_0(wrow, xq, n / QK);
    case DT_Q4_0: return dot_q4_0(wrow, xq, n / QK);
    case DT_Q5_0: return dot_q5_0(wrow, xq, n / QK);
    case DT_Q4_K: return dot_q4_k(wrow, xq, n / QKK);
    case DT_Q6_K: return dot_q6_k(wrow, xq, n / QKK);
    default: return 0.0f;
    }
}
