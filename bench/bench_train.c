/* bench_train.c — LoRA training throughput (tokens/s) on a random model of a real shape.
 *
 * Writes (or reuses, --model DIR) a seeded random Qwen2.5-0.5B-shaped model, then for each
 * adapter configuration (r=8 on q,v; r=16 on all seven projections) times full optimizer
 * steps (forward + backward + AdamW) on batch × tokens random ids, and, as the baseline of the
 * same run, the forward alone (wick_train_eval: the same activations, no backward). The ratio
 * step/forward shows what the backward costs; ~3x is the textbook figure for full training,
 * LoRA's is lower in FLOPs but our backward's attention loops are scalar.
 *
 * usage: bench_train [--model DIR] [--like SHAPE] [--dtype bf16|f32] [--tokens N]
 *                    [--batch B] [--threads N] [--steps N]
 * The numbers depend on how busy the machine is; run it on an idle one for figures to quote. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "model/random.h"
#include "wick.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int fail(const char *what) {
    fprintf(stderr, "bench_train: %s: %s\n", what, wick_last_error());
    return 1;
}

int main(int argc, char **argv) {
    const char *model_dir = NULL, *like = "qwen2.5-0.5b", *dts = "bf16";
    int tokens = 128, batch = 1, threads = 2, steps = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model_dir = argv[i + 1];
        else if (!strcmp(argv[i], "--like")) like = argv[i + 1];
        else if (!strcmp(argv[i], "--dtype")) dts = argv[i + 1];
        else if (!strcmp(argv[i], "--tokens")) tokens = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "bench_train: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (tokens < 2 || batch < 1 || threads < 1 || steps < 1) {
        fprintf(stderr, "bench_train: --tokens >= 2, --batch, --threads, --steps >= 1\n");
        return 2;
    }
    char tmp[] = "/tmp/wick-bench-train-XXXXXX";
    if (!model_dir) {
        if (!mkdtemp(tmp)) {
            perror("mkdtemp");
            return 1;
        }
        double t0 = now_s();
        if (random_model_write(like, tmp, 1, strcmp(dts, "f32") ? DT_BF16 : DT_F32, NULL))
            return fail("random model");
        fprintf(stderr, "wrote a random %s (%s) in %.1f s\n", like, dts, now_s() - t0);
        model_dir = tmp;
    }
    wick_model *m = NULL;
    wick_model_params mp = wick_model_params_default();
    mp.load_tokenizer = false;
    if (wick_model_load(model_dir, &mp, &m)) return fail("load");
    wick_model_info info;
    wick_model_get_info(m, &info);

    const int n = batch * tokens;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n);
    uint64_t x = 12345;
    for (int i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((x >> 33) % (uint64_t)info.n_vocab);
    }
    printf("LoRA training, %s (%s weights, %s kernels), batch %d x %d tokens, %d threads, "
           "%d timed steps (shared machine: figures are indicative)\n",
           like, info.weight_dtype, info.kernels, batch, tokens, threads, steps);
    printf("%-16s %10s %12s %12s %12s %12s %8s\n", "adapter", "params", "step ms", "train tok/s",
           "fwd ms", "fwd tok/s", "step/fwd");
    const struct {
        const char *name, *targets;
        int r;
    } cfgs[] = {{"r8 q,v", "q,v", 8}, {"r16 all", "q,k,v,o,gate,up,down", 16}};
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        if (wick_adapter_create(m, cfgs[c].name, cfgs[c].r, 2.0f * cfgs[c].r, cfgs[c].targets, 1))
            return fail("adapter");
        wick_train_params tp = wick_train_params_default();
        tp.n_threads = threads;
        wick_trainer *tr = NULL;
        if (wick_trainer_create(m, cfgs[c].name, &tp, &tr)) return fail("trainer");
        float loss;
        if (wick_train_step(tr, ids, NULL, batch, tokens, &loss)) return fail("warm-up step");
        double t0 = now_s();
        for (int s = 0; s < steps; s++)
            if (wick_train_step(tr, ids, NULL, batch, tokens, &loss)) return fail("step");
        const double step_s = (now_s() - t0) / steps;
        t0 = now_s();
        for (int s = 0; s < steps; s++)
            if (wick_train_eval(tr, ids, NULL, batch, tokens, &loss)) return fail("eval");
        const double fwd_s = (now_s() - t0) / steps;
        wick_train_state ts;
        wick_trainer_get_state(tr, &ts);
        printf("%-16s %10lld %12.1f %12.1f %12.1f %12.1f %8.2f\n", cfgs[c].name,
               (long long)ts.n_params, step_s * 1e3, n / step_s, fwd_s * 1e3, n / fwd_s,
               step_s / fwd_s);
        fflush(stdout);
        wick_trainer_free(tr);
    }
    free(ids);
    wick_model_free(m);
    if (model_dir == tmp) {
        const char *files[] = {"config.json", "generation_config.json", "model.safetensors"};
        char path[256];
        for (int i = 0; i < 3; i++) {
            snprintf(path, sizeof path, "%s/%s", tmp, files[i]);
            unlink(path);
        }
        rmdir(tmp);
    }
    return 0;
}
