/* bench_embed_ids.c — wick's side of bench/embed_compare/run.sh: embeds the texts of an
 * ids.json (token ids made by bench/embed_compare/make_model.py) with the encoder folder
 * beside it, mean pooling + L2 normalisation, and prints the throughput; the PyTorch and ONNX
 * Runtime scripts there do the same on the same file and ids.
 *
 *   bench_embed_ids DIR THREADS BATCH REPEATS OUT.f32
 *
 * BATCH 32: texts in batches of 32 in file order (wick packs each batch without padding);
 * prints "sentences/s X" for the best-of-REPEATS pass over all texts. BATCH 1: one text per
 * call; prints "latency_ms X" (median over the texts of the best-of-REPEATS). OUT.f32: the
 * embeddings (texts x dim, f32 little-endian) for the agreement check. Tokenization is not
 * timed here (nor in the other two): all three start from the same ids. Not a test. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wick.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: bench_embed_ids DIR THREADS BATCH REPEATS OUT.f32\n");
        return 2;
    }
    const char *dir = argv[1], *out = argv[5];
    const int threads = atoi(argv[2]), batch = atoi(argv[3]), reps = atoi(argv[4]);
    char path[4096];
    snprintf(path, sizeof path, "%s/ids.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return perror(path), 1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *txt = malloc((size_t)n + 1);
    if (!txt || fread(txt, 1, (size_t)n, f) != (size_t)n) return fprintf(stderr, "read %s\n", path), 1;
    txt[n] = 0;
    fclose(f);
    cJSON *root = cJSON_Parse(txt), *texts = cJSON_GetObjectItem(root, "texts");
    const int nt = cJSON_GetArraySize(texts);
    int *len = malloc(sizeof(int) * (size_t)nt), maxl = 0;
    int32_t **ids = malloc(sizeof(int32_t *) * (size_t)nt);
    for (int i = 0; i < nt; i++) {
        cJSON *t = cJSON_GetArrayItem(texts, i);
        len[i] = cJSON_GetArraySize(t);
        ids[i] = malloc(sizeof(int32_t) * (size_t)len[i]);
        for (int j = 0; j < len[i]; j++) ids[i][j] = (int32_t)cJSON_GetArrayItem(t, j)->valuedouble;
        maxl = len[i] > maxl ? len[i] : maxl;
    }
    cJSON_Delete(root);
    free(txt);
    wick_embedder_params p = wick_embedder_params_default();
    p.n_threads = threads;
    p.pooling = WICK_POOLING_MEAN;
    p.normalize = 1;
    p.batch_size = batch;
    wick_embedder *e = NULL;
    if (wick_embedder_load(dir, &p, &e) != WICK_OK) return fprintf(stderr, "%s\n", wick_last_error()), 1;
    const int dim = wick_embedder_dim(e);
    float *emb = malloc(sizeof(float) * (size_t)nt * dim);
    int32_t *pad = calloc((size_t)batch * maxl, sizeof(int32_t)), *mask = calloc((size_t)batch * maxl, sizeof(int32_t));
    double best = 1e30, *lat = malloc(sizeof(double) * (size_t)nt);
    for (int i = 0; i < nt; i++) lat[i] = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
        for (int b0 = 0; b0 < nt; b0 += batch) {
            const int nb = nt - b0 < batch ? nt - b0 : batch;
            int T = 0;
            for (int i = 0; i < nb; i++) T = len[b0 + i] > T ? len[b0 + i] : T;
            for (int i = 0; i < nb; i++)
                for (int j = 0; j < T; j++) {
                    pad[i * T + j] = j < len[b0 + i] ? ids[b0 + i][j] : 0;
                    mask[i * T + j] = j < len[b0 + i];
                }
            const double c0 = now();
            if (wick_embed_ids(e, pad, mask, nb, T, emb + (size_t)b0 * dim, NULL, NULL) != WICK_OK)
                return fprintf(stderr, "%s\n", wick_last_error()), 1;
            const double c1 = now() - c0;
            if (batch == 1 && c1 < lat[b0]) lat[b0] = c1;
        }
        const double t = now() - t0;
        best = t < best ? t : best;
    }
    if (batch == 1) {
        qsort(lat, (size_t)nt, sizeof *lat, cmp);
        printf("latency_ms %.3f\n", 1e3 * lat[nt / 2]);
    } else {
        printf("sentences/s %.1f\n", nt / best);
    }
    FILE *o = fopen(out, "wb");
    if (!o || fwrite(emb, sizeof(float), (size_t)nt * dim, o) != (size_t)nt * dim) return perror(out), 1;
    fclose(o);
    wick_embedder_free(e);
    for (int i = 0; i < nt; i++) free(ids[i]);
    free(ids), free(len), free(emb), free(pad), free(mask), free(lat);
    return 0;
}
