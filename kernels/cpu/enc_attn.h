/* enc_attn.h — one (sequence, head) item of the encoders' bidirectional attention
 * (kernels.h attention_enc), in plain C laid out for the compiler's vectorizer: included by
 * each ISA file (cpu_generic.c, cpu_avx2.c, cpu_avx512.c) so it is compiled with that file's
 * flags. Keys are first copied transposed (kt: head_dim rows of len16 = len rounded up to 16,
 * zero-padded), so the scores of 16 keys are one register of sums over head_dim broadcast
 * multiply-adds (fixed-size 16-lane loops the vectorizer maps to registers) instead of 16 dot
 * products with a horizontal sum each; the output row is 16 values at a time, summed over the
 * keys in a register. Every sum runs in the ref definition's order (no reassociation); only
 * fused multiply-adds, where the ISA has them, round differently, so results agree with ref
 * to f32 rounding. head_dim not a multiple of 16 takes the same loops on 1 lane.
 *
 * Define ENC_ATTN_FN (the function's name) and ENC_SOFTMAX (this file's softmax) first. */
static void ENC_ATTN_FN(const cpu_enc_attn *a, int s, int h, long off, float *sc_, float *kt_) {
    const int len = a->lens[s], hd = a->head_dim, ld = a->n_head * hd;
    const int len16 = (len + 15) / 16 * 16, eb = hd % 16 == 0 ? 16 : 1;
    float *restrict sc = sc_, *restrict kt = kt_;
    const float scale = a->scale;
    for (int e = 0; e < hd; e++)
        for (int j = len; j < len16; j++) kt[(size_t)e * len16 + j] = 0.0f;
    for (int j = 0; j < len; j++) {
        const float *restrict kj = a->k + (off + j) * ld + h * hd;
        for (int e = 0; e < hd; e++) kt[(size_t)e * len16 + j] = kj[e];
    }
    for (int i = 0; i < len; i++) {
        const float *restrict qi = a->q + (off + i) * ld + h * hd;
        for (int j0 = 0; j0 < len16; j0 += 16) {
            float acc[16] = {0};
            for (int e = 0; e < hd; e++) {
                const float qe = qi[e];
                const float *restrict kr = kt + (size_t)e * len16 + j0;
                for (int jj = 0; jj < 16; jj++) acc[jj] += qe * kr[jj];
            }
            for (int jj = 0; jj < 16; jj++) sc[j0 + jj] = acc[jj] * scale;
        }
        if (a->rel_bias) {
            const int32_t *bk = a->rel_bucket + (a->max_tokens - 1 - i); /* j − i */
            for (int j = 0; j < len; j++) sc[j] += a->rel_bias[bk[j] * a->n_head + h];
        }
        ENC_SOFTMAX(sc, len);
        float *restrict o = a->out + (off + i) * ld + h * hd;
        if (eb == 16) {
            for (int e0 = 0; e0 < hd; e0 += 16) {
                float acc[16] = {0};
                for (int j = 0; j < len; j++) {
                    const float p = sc[j];
                    const float *restrict vj = a->v + (off + j) * ld + h * hd + e0;
                    for (int ee = 0; ee < 16; ee++) acc[ee] += p * vj[ee];
                }
                for (int ee = 0; ee < 16; ee++) o[e0 + ee] = acc[ee];
            }
        } else {
            for (int e = 0; e < hd; e++) {
                float acc = 0.0f;
                for (int j = 0; j < len; j++) acc += sc[j] * a->v[(off + j) * ld + h * hd + e];
                o[e] = acc;
            }
        }
    }
}
