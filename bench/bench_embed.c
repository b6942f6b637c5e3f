/* bench_embed.c — sentence-embedding throughput of a MiniLM-L6-shaped BERT encoder (hidden 384,
 * 6 layers, 12 heads, intermediate 1536, vocab 30522; random seeded F32 weights written with
 * st_write into a temp folder) at batch 1 and 32, 2 threads, sentences of 24 tokens.
 * Beside each figure: the model's GFLOP/s and, as the machine's limit measured in the same
 * run, the GFLOP/s of the kernel table's matmul alone on the FFN-up shape of that batch.
 * Usage: bench_embed [seconds per row, default 1.5]. Not a test: no assertions. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/fileio.h"
#include "formats/safetensors.h"
#include "kernels/kernels.h"
#include "wick.h"

enum { D = 384, NL = 6, NH = 12, FF = 1536, V = 30522, NPOS = 512, SEQ = 24, THREADS = 2 };

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) {  /* uniform in [-1, 1) from splitmix64 */
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct tensors {
    st_write_tensor t[8 + NL * 16];
    char names[8 + NL * 16][96];
    float *data[8 + NL * 16];
    int n;
} tensors;

static void add(tensors *T, const char *name, int64_t r, int64_t c, float base, float scale) {
    int i = T->n++;
    snprintf(T->names[i], sizeof T->names[i], "%s", name);
    int64_t n = r * (c ? c : 1);
    float *d = malloc(sizeof(float) * (size_t)n);
    for (int64_t k = 0; k < n; k++) d[k] = base + scale * frand();
    T->data[i] = d;
    T->t[i] = (st_write_tensor){.name = T->names[i], .dt = DT_F32, .ndim = c ? 2 : 1,
                                .shape = {r, c}, .data = d};
}

static int write_model(const char *dir) {
    static tensors T;
    add(&T, "embeddings.word_embeddings.weight", V, D, 0, 0.035f);
    add(&T, "embeddings.position_embeddings.weight", NPOS, D, 0, 0.035f);
    add(&T, "embeddings.token_type_embeddings.weight", 2, D, 0, 0.035f);
    add(&T, "embeddings.LayerNorm.weight", D, 0, 1, 0.1f);
    add(&T, "embeddings.LayerNorm.bias", D, 0, 0, 0.02f);
    for (int l = 0; l < NL; l++) {
        char n[96];
#define L(s, r, c, b, sc) (snprintf(n, sizeof n, "encoder.layer.%d.%s", l, s), add(&T, n, r, c, b, sc))
        L("attention.self.query.weight", D, D, 0, 0.035f);
        L("attention.self.query.bias", D, 0, 0, 0.02f);
        L("attention.self.key.weight", D, D, 0, 0.035f);
        L("attention.self.key.bias", D, 0, 0, 0.02f);
        L("attention.self.value.weight", D, D, 0, 0.035f);
        L("attention.self.value.bias", D, 0, 0, 0.02f);
        L("attention.output.dense.weight", D, D, 0, 0.035f);
        L("attention.output.dense.bias", D, 0, 0, 0.02f);
        L("attention.output.LayerNorm.weight", D, 0, 1, 0.1f);
        L("attention.output.LayerNorm.bias", D, 0, 0, 0.02f);
        L("intermediate.dense.weight", FF, D, 0, 0.035f);
        L("intermediate.dense.bias", FF, 0, 0, 0.02f);
        L("output.dense.weight", D, FF, 0, 0.035f);
        L("output.dense.bias", D, 0, 0, 0.02f);
        L("output.LayerNorm.weight", D, 0, 1, 0.1f);
        L("output.LayerNorm.bias", D, 0, 0, 0.02f);
#undef L
    }
    add(&T, "pooler.dense.weight", D, D, 0, 0.035f);
    add(&T, "pooler.dense.bias", D, 0, 0, 0.02f);
    char *p = path_join(dir, "model.safetensors");
    wick_status st = st_write(p, T.t, T.n, NULL, NULL, 0);
    free(p);
    for (int i = 0; i < T.n; i++) free(T.data[i]);
    if (st) return fprintf(stderr, "bench_embed: %s\n", wick_last_error()), 1;
    char cfg[512];
    snprintf(cfg, sizeof cfg,
             "{\"architectures\": [\"BertModel\"], \"model_type\": \"bert\", \"vocab_size\": %d, "
             "\"hidden_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
             "\"intermediate_size\": %d, \"max_position_embeddings\": %d, "
             "\"type_vocab_size\": 2, \"layer_norm_eps\": 1e-12, \"hidden_act\": \"gelu\"}\n",
             V, D, NL, NH, FF, NPOS);
    p = path_join(dir, "config.json");
    st = file_write_atomic(p, cfg, strlen(cfg));
    free(p);
    if (st) return fprintf(stderr, "bench_embed: %s\n", wick_last_error()), 1;
    return 0;
}

/* FLOPs of one sentence of `len` tokens (matmuls + attention). */
static double flops_per_sentence(int len) {
    return NL * (2.0 * len * (4.0 * D * D + 2.0 * D * FF) + 4.0 * len * len * D);
}

/* GFLOP/s of the kernel table's matmul alone: (rows, D) · (FF, D)ᵀ, same thread count. */
static double matmul_ceiling(int rows, double secs) {
    const kernel_table *k = kernels_select("auto");
    wk_pool *pool = pool_create(THREADS);
    wk_ctx kc = {.pool = pool};
    float *w = malloc(sizeof(float) * FF * D), *x = malloc(sizeof(float) * (size_t)rows * D),
          *y = malloc(sizeof(float) * (size_t)rows * FF);
    for (int i = 0; i < FF * D; i++) w[i] = frand();
    for (int i = 0; i < rows * D; i++) x[i] = frand();
    wk_weight W = {.data = w, .dt = DT_F32, .rows = FF, .cols = D};
    k->matmul(&kc, y, x, &W, NULL, rows);
    int it = 0;
    double t0 = now(), t;
    do {
        k->matmul(&kc, y, x, &W, NULL, rows);
        it++;
    } while ((t = now() - t0) < secs);
    free(w);
    free(x);
    free(y);
    pool_free(pool);
    return 2.0 * rows * D * FF * it / t * 1e-9;
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 1.5;
    if (!(secs > 0)) secs = 1.5;
    char tmpl[] = "/tmp/wick-bench-embed-XXXXXX";
    if (!mkdtemp(tmpl)) return perror("mkdtemp"), 1;
    if (write_model(tmpl)) return 1;
    wick_embedder_params p = wick_embedder_params_default();
    p.n_threads = THREADS;
    p.batch_size = 32;
    wick_embedder *e = NULL;
    if (wick_embedder_load(tmpl, &p, &e)) {
        fprintf(stderr, "bench_embed: %s\n", wick_last_error());
        return 1;
    }
    enum { MAXB = 32 };
    int32_t *ids = malloc(sizeof(int32_t) * MAXB * SEQ);
    for (int i = 0; i < MAXB; i++) {
        ids[i * SEQ] = 101;
        for (int j = 1; j < SEQ - 1; j++) ids[i * SEQ + j] = 1000 + (int)((frand() + 1) * 14000);
        ids[i * SEQ + SEQ - 1] = 102;
    }
    float *out = malloc(sizeof(float) * MAXB * D);
    printf("bench_embed: MiniLM-L6 shape (d=%d, %d layers, %d heads, ff=%d), F32, %d threads, "
           "%d tokens/sentence, kernels %s\n\n", D, NL, NH, FF, THREADS, SEQ,
           kernels_select("auto")->name);
    printf("| batch | sentences/s | tokens/s | model GFLOP/s | matmul-only GFLOP/s | ratio |\n");
    printf("|------:|------------:|---------:|--------------:|--------------------:|------:|\n");
    const int batches[] = {1, 32};
    for (int bi = 0; bi < 2; bi++) {
        int b = batches[bi];
        wick_embed_ids(e, ids, NULL, b, SEQ, out, NULL, NULL);  /* warm-up, sizes scratch */
        int it = 0;
        double t0 = now(), t;
        do {
            if (wick_embed_ids(e, ids, NULL, b, SEQ, out, NULL, NULL)) {
                fprintf(stderr, "bench_embed: %s\n", wick_last_error());
                return 1;
            }
            it++;
        } while ((t = now() - t0) < secs);
        double sps = (double)b * it / t, gf = sps * flops_per_sentence(SEQ) * 1e-9;
        double ceil = matmul_ceiling(b * SEQ, secs / 2);
        printf("| %5d | %11.1f | %8.0f | %13.1f | %19.1f | %5.2f |\n", b, sps, sps * SEQ, gf,
               ceil, gf / ceil);
    }
    wick_embedder_free(e);
    free(ids);
    free(out);
    char *f = path_join(tmpl, "model.safetensors");
    unlink(f);
    free(f);
    f = path_join(tmpl, "config.json");
    unlink(f);
    free(f);
    rmdir(tmpl);
    return 0;
}
