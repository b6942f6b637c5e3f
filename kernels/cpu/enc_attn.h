/* enc_attn.h — one (sequence, head) item of the encoders' bidirectional attention
 * (kernels.h attention_enc), in plain C laid out for the compiler's vectorizer: included by
 * each ISA file (cpu_generic.c, cpu_avx2.c, cpu_avx512.c) so it is compiled with that file's
 * flags. Keys are first copied transposed (kt: head_dim rows of len), so the scores of a
 * query row are head_dim axpys over contiguous keys instead of len dot products with a
 * horizontal sum each; the output row is len axpys over head_dim values. Every sum runs in
 * the ref definition's order (no reassociation); only fused multiply-adds, where the ISA has
 * them, round differently, so results agree with ref to f32 rounding.
 *
 * Define ENC_ATTN_FN (the function's name) and ENC_SOFTMAX (this file's softmax) first. */
static void ENC_ATTN_FN(const cpu_enc_attn *a, int s, int h, long off, float *sc, float *kt) {
    const int len = a->lens[s], hd = a->head_dim, ld = a->n_head * hd;
    for (int j = 0; j < len; j++) {
        const float *kj = a->k + (off + j) * ld + h * hd;
        for (int e = 0; e < hd; e++) kt[(size_t)e * len + j] = kj[e];
    }
    for (int i = 0; i < len; i++) {
        const float *qi = a->q + (off + i) * ld + h * hd;
        for (int j = 0; j < len; j++) sc[j] = 0.0f;
        for (int e = 0; e < hd; e++) {
            const float qe = qi[e], *kr = kt + (size_t)e * len;
            for (int j = 0; j < len; j++) sc[j] += qe * kr[j];
        }
        for (int j = 0; j < len; j++) sc[j] *= a->scale;
        if (a->rel_bias) {
            const int32_t *bk = a->rel_bucket + (a->max_tokens - 1 - i); /* j − i */
            for (int j = 0; j < len; j++) sc[j] += a->rel_bias[bk[j] * a->n_head + h];
        }
        ENC_SOFTMAX(sc, len);
        float *o = a->out + (off + i) * ld + h * hd;
        for (int e = 0; e < hd; e++) o[e] = 0.0f;
        for (int j = 0; j < len; j++) {
            const float p = sc[j], *vj = a->v + (off + j) * ld + h * hd;
            for (int e = 0; e < hd; e++) o[e] += p * vj[e];
        }
    }
}
