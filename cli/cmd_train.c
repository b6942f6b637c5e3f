/* cmd_train.c — `wick train`: LoRA fine-tuning of a model on a text or JSONL file.
 *
 * Data (parsed by train/data.c): FILE.jsonl with one object per line, {"text": ...} (loss on
 * every token) or {"prompt": ..., "completion": ...} (loss on the completion only; the prompt's
 * labels are -100); any other file is plain text, tokenized as one stream and cut into seq_len
 * windows. JSONL examples get the model's first EOS id appended (when it has one) and are
 * truncated to seq_len; a batch is padded to its longest example with labels -100 (padding sits after the
 * real tokens, so with causal attention it changes nothing they see). Examples are shuffled
 * per epoch with --seed.
 *
 * Output: checkpoint-STEP/ folders every --save-every steps and the final adapter in --out,
 * each a PEFT folder plus trainer_state.safetensors (see wick_trainer_save), each folder
 * replaced as a whole (a kill leaves the previous complete checkpoint or adapter; the final
 * save keeps the checkpoint-STEP folders already in --out). --adapter DIR continues from a PEFT folder and, when DIR holds
 * trainer_state.safetensors, from its optimizer state and step count.
 * --full trains every weight of the model instead (wick_trainer_create_full): --out and the
 * checkpoints are model folders (f32) with the optimizer state; --resume DIR continues a
 * full-training checkpoint (the model is loaded from DIR).
 * Not here: validation sets, chat-template rendering of conversations, multiple files. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/fileio.h"
#include "cli/cli.h"
#include "train/data.h"

typedef train_data dataset;

/* Reads --data and parses it (train/data.c); prints the error and returns 1 on failure. */
static int load_data(const char *path, const wick_tokenizer *tok, int32_t eos, int seq_len,
                     dataset *d) {
    char *buf = NULL;
    size_t len = 0;
    if (file_read_all(path, &buf, &len) != WICK_OK) return cli_fail("train", "cannot read --data");
    const size_t pl = strlen(path);
    const bool jsonl = pl > 6 && !strcmp(path + pl - 6, ".jsonl");
    wick_status st = train_data_parse(buf, len, jsonl, path, tok, eos, seq_len, d);
    free(buf);
    return st ? cli_fail("train", "cannot use the training data") : 0;
}

static uint64_t mix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Picks the next `batch` examples (reshuffling at each epoch end) into pick; returns the
 * longest length among them. */
static int next_batch(const dataset *ds, int *order, long *pos, uint64_t *rng, int batch,
                      int *pick) {
    int T = 0;
    for (int b = 0; b < batch; b++) {
        if (*pos >= ds->n) {
            for (int i = 0; i < ds->n; i++) order[i] = i;
            for (int i = ds->n - 1; i > 0; i--) {
                int j = (int)(mix(rng) % (uint64_t)(i + 1)), x = order[i];
                order[i] = order[j];
                order[j] = x;
            }
            *pos = 0;
        }
        pick[b] = order[(*pos)++];
        if (ds->ex[pick[b]].n > T) T = ds->ex[pick[b]].n;
    }
    return T;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int usage(FILE *f) {
    fprintf(f,
            "usage: wick train -m MODEL --data FILE.jsonl|FILE.txt --out DIR [options]\n"
            "  --adapter DIR        continue from a PEFT folder (and its trainer_state, if any)\n"
            "  --full               train every weight (full fine-tuning); --out is a model folder\n"
            "  --resume DIR         continue a --full checkpoint (model and optimizer state)\n"
            "  -r N                 LoRA rank of a new adapter (default 8)\n"
            "  --alpha A            lora_alpha (default 16)\n"
            "  --targets LIST       projections: q,k,v,o,gate,up,down (default q,v)\n"
            "  --lr X               peak learning rate (default 1e-4)\n"
            "  --epochs N | --steps N   length of training (default 1 epoch)\n"
            "  --batch B            sequences per step (default 1)\n"
            "  --seq-len L          max tokens per sequence (default 256)\n"
            "  --warmup N           linear warmup steps (default 0)\n"
            "  --schedule S         constant|linear|cosine (default constant)\n"
            "  --weight-decay X     (default 0.01)   --grad-clip X  (default 0 = off)\n"
            "  --save-every N       write DIR/checkpoint-STEP every N steps (default 0 = off)\n"
            "  --save-total-limit N keep only the newest N checkpoints (default 0 = all)\n"
            "  --seed S             adapter init and data order (default 0)\n"
            "  -t N                 threads (default: all CPUs)\n"
            "JSONL lines: {\"text\": ...} or {\"prompt\": ..., \"completion\": ...} (loss on the\n"
            "completion only); other files are plain text.\n"
            "Ctrl-C saves DIR/checkpoint-STEP of the last completed step and exits (a second\n"
            "Ctrl-C exits at once); continue with --adapter (LoRA) or --resume (--full) on it.\n");
    return f == stdout ? 0 : 2;
}

int cmd_train(int argc, char **argv) {
    const char *model_dir = NULL, *data = NULL, *out = NULL, *adapter = NULL, *resume = NULL;
    bool full = false;
    const char *targets = "q,v", *sched = "constant";
    long r = 8, epochs = 0, steps = 0, batch = 1, seq_len = 256, warmup = 0, save_every = 0;
    long seed = 0, threads = 0, keep = 0;
    double alpha = 16, lr = 1e-4, wd = 0.01, clip = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const bool has = i + 1 < argc;
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout);
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model_dir = argv[++i];
        else if (!strcmp(a, "--data") && has) data = argv[++i];
        else if ((!strcmp(a, "--out") || !strcmp(a, "-o")) && has) out = argv[++i];
        else if (!strcmp(a, "--adapter") && has) adapter = argv[++i];
        else if (!strcmp(a, "--resume") && has) resume = argv[++i];
        else if (!strcmp(a, "--full")) full = true;
        else if (!strcmp(a, "--targets") && has) targets = argv[++i];
        else if (!strcmp(a, "--schedule") && has) sched = argv[++i];
        else if (!strcmp(a, "-r") && has) ok = cli_parse_int("train", a, argv[++i], 1, 4096, &r);
        else if (!strcmp(a, "--epochs") && has) ok = cli_parse_int("train", a, argv[++i], 1, 1000000, &epochs);
        else if (!strcmp(a, "--steps") && has) ok = cli_parse_int("train", a, argv[++i], 1, 100000000, &steps);
        else if (!strcmp(a, "--batch") && has) ok = cli_parse_int("train", a, argv[++i], 1, 4096, &batch);
        else if (!strcmp(a, "--seq-len") && has) ok = cli_parse_int("train", a, argv[++i], 2, 1 << 20, &seq_len);
        else if (!strcmp(a, "--warmup") && has) ok = cli_parse_int("train", a, argv[++i], 0, 100000000, &warmup);
        else if (!strcmp(a, "--save-every") && has) ok = cli_parse_int("train", a, argv[++i], 0, 100000000, &save_every);
        else if (!strcmp(a, "--save-total-limit") && has) ok = cli_parse_int("train", a, argv[++i], 0, 1000000, &keep);
        else if (!strcmp(a, "--seed") && has) ok = cli_parse_int("train", a, argv[++i], 0, 0x7fffffffL, &seed);
        else if (!strcmp(a, "-t") && has) ok = cli_parse_int("train", a, argv[++i], 0, 1024, &threads);
        else if (!strcmp(a, "--alpha") && has) ok = cli_parse_float("train", a, argv[++i], &alpha);
        else if (!strcmp(a, "--lr") && has) ok = cli_parse_float("train", a, argv[++i], &lr);
        else if (!strcmp(a, "--weight-decay") && has) ok = cli_parse_float("train", a, argv[++i], &wd);
        else if (!strcmp(a, "--grad-clip") && has) ok = cli_parse_float("train", a, argv[++i], &clip);
        else {
            fprintf(stderr, "wick train: unknown or incomplete option '%s'\n", a);
            return usage(stderr);
        }
        if (!ok) return 2;
    }
    if (resume && !full) {
        if (adapter) {
            fprintf(stderr, "wick train: give --adapter or --resume, not both\n");
            return 2;
        }
        adapter = resume;   /* LoRA: resuming is continuing from the adapter folder */
    }
    if (full && resume) {
        if (model_dir)
            fprintf(stderr, "wick train: note: --resume loads the model from %s; -m is not "
                            "used\n", resume);
        model_dir = resume;
    }
    if (!model_dir || !data || !out) return usage(stderr);
    if (full && adapter) {
        fprintf(stderr, "wick train: --adapter applies to LoRA training; with --full use "
                        "--resume DIR to continue a checkpoint\n");
        return 2;
    }
    if (epochs && steps) {
        fprintf(stderr, "wick train: give --epochs or --steps, not both\n");
        return 2;
    }
    wick_train_params tp = wick_train_params_default();
    if (!strcmp(sched, "constant")) tp.schedule = WICK_LR_CONSTANT;
    else if (!strcmp(sched, "linear")) tp.schedule = WICK_LR_LINEAR;
    else if (!strcmp(sched, "cosine")) tp.schedule = WICK_LR_COSINE;
    else {
        fprintf(stderr, "wick train: --schedule must be constant, linear or cosine\n");
        return 2;
    }

    wick_model *m = NULL;
    wick_model_params mp = wick_model_params_default();
    if (wick_model_load(model_dir, &mp, &m) != WICK_OK) return cli_fail("train", "cannot load the model");
    const wick_tokenizer *tok = wick_model_tokenizer(m);
    if (!tok) {
        fprintf(stderr, "wick train: %s has no tokenizer\n", model_dir);
        wick_model_free(m);
        return 1;
    }
    wick_model_info info;
    wick_model_get_info(m, &info);
    dataset ds = {0};
    int rc = load_data(data, tok, info.n_eos ? info.eos_ids[0] : -1, (int)seq_len, &ds);
    if (rc) {
        train_data_free(&ds);
        wick_model_free(m);
        return rc;
    }
    /* examples with no target token (a prompt as long as --seq-len cuts the completion away)
       are reported; if none has one, nothing could be trained */
    int empty = 0, first_empty = -1;
    for (int e = 0; e < ds.n; e++) {
        bool any = false;
        for (int t = 1; t < ds.ex[e].n && !any; t++) any = ds.ex[e].labels[t] != -100;
        if (!any && first_empty < 0) first_empty = e;
        empty += !any;
    }
    if (empty == ds.n) {
        fprintf(stderr, "wick train: none of the %d examples of %s has a token to learn (each "
                        "completion starts after --seq-len %ld tokens, or is empty): raise "
                        "--seq-len or shorten the prompts\n", ds.n, data, seq_len);
        train_data_free(&ds);
        wick_model_free(m);
        return 1;
    }
    if (empty)
        fprintf(stderr, "wick train: warning: %d of %d examples (the first: example %d) have "
                        "no token to learn — their completion starts after --seq-len %ld "
                        "tokens; they only add compute (raise --seq-len to use them)\n", empty,
                ds.n, first_empty + 1, seq_len);
    const long per_epoch = (ds.n + batch - 1) / batch;
    const long total = steps ? steps : per_epoch * (epochs ? epochs : 1);
    tp.lr = (float)lr;
    tp.weight_decay = (float)wd;
    tp.max_grad_norm = (float)clip;
    tp.warmup_steps = (int)warmup;
    tp.total_steps = (int)total;
    tp.n_threads = (int)threads;
    tp.seed = (uint64_t)seed;

    wick_trainer *tr = NULL;
    int32_t *ids = NULL, *labels = NULL;
    wick_status st = full      ? WICK_OK
                     : adapter ? wick_adapter_load(m, adapter, "train")
                               : wick_adapter_create(m, "train", (int)r, (float)alpha, targets,
                                                     (uint64_t)seed);
    if (st) {
        rc = cli_fail("train", adapter ? "cannot load --adapter" : "cannot create the adapter");
        goto out;
    }
    st = full ? wick_trainer_create_full(m, &tp, &tr) : wick_trainer_create(m, "train", &tp, &tr);
    if (st != WICK_OK) {
        rc = cli_fail("train", "cannot start training");
        goto out;
    }
    if (full && resume && wick_trainer_load_checkpoint(tr, resume) != WICK_OK) {
        rc = cli_fail("train", "cannot resume from --resume's trainer_state");
        goto out;
    }
    if (adapter) {
        char *sp = path_join(adapter, "trainer_state.safetensors");
        bool resume = sp && file_exists(sp);
        free(sp);
        if (resume && wick_trainer_load_checkpoint(tr, adapter) != WICK_OK) {
            rc = cli_fail("train", "cannot resume from --adapter's trainer_state");
            goto out;
        }
    }
    wick_train_state ts;
    wick_trainer_get_state(tr, &ts);
    printf("training %lld %s parameters on %d examples, %ld steps (batch %ld, from step %lld)\n",
           (long long)ts.n_params, full ? "model" : "LoRA", ds.n, total, batch,
           (long long)ts.step);
    ids = malloc(sizeof(int32_t) * (size_t)(batch * seq_len));
    labels = malloc(sizeof(int32_t) * (size_t)(batch * seq_len));
    int *order = malloc(sizeof(int) * (size_t)ds.n);
    if (!ids || !labels || !order) {
        free(order);
        fprintf(stderr, "wick train: out of memory\n");
        rc = 1;
        goto out;
    }
    if (mkdir(out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "wick train: cannot create %s: %s\n", out, strerror(errno));
        rc = 1;
        goto out_order;
    }
    uint64_t rng = (uint64_t)seed * 0x2545f4914f6cdd1dull + 1;
    long pos = ds.n;   /* forces a shuffle before the first batch */
    const int pad = info.pad_id >= 0 ? info.pad_id : info.n_eos ? info.eos_ids[0] : 0;
    int pick[4096];
    long skipped = 0;
    cli_train_sigint_install();
    /* a resumed run replays the data order of the steps already taken, so it sees the same
     * batches as an uninterrupted one */
    for (int64_t s = 0; s < ts.step; s++) next_batch(&ds, order, &pos, &rng, (int)batch, pick);
    for (long s = ts.step; s < total; s++) {
        int B = (int)batch, T = next_batch(&ds, order, &pos, &rng, B, pick);
        for (int b = 0; b < B; b++) {
            const train_example *e = &ds.ex[pick[b]];
            for (int t = 0; t < T; t++) {
                ids[(size_t)b * T + t] = t < e->n ? e->ids[t] : pad;
                labels[(size_t)b * T + t] = t < e->n ? e->labels[t] : -100;
            }
        }
        float loss = 0;
        double t0 = now_s();
        if (wick_train_step(tr, ids, labels, B, T, &loss) != WICK_OK) {
            if (strstr(wick_last_error(), "no target token")) {   /* an all-prompt batch */
                skipped++;
                continue;
            }
            rc = cli_fail("train", "training step failed");
            goto out_order;
        }
        double dt = now_s() - t0;
        wick_trainer_get_state(tr, &ts);
        printf("step %lld/%ld  loss %.4f  lr %.3e  %.1f tok/s\n", (long long)ts.step, total, loss,
               ts.lr, (double)B * T / (dt > 0 ? dt : 1e-9));
        fflush(stdout);
        if (save_every && ts.step % save_every == 0 && ts.step < total) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/checkpoint-%lld", out, (long long)ts.step);
            if (wick_trainer_save(tr, dir) != WICK_OK) {
                rc = cli_fail("train", "cannot write a checkpoint");
                goto out_order;
            }
            printf("saved %s\n", dir);
            cli_prune_checkpoints(out, keep);
        }
        if (cli_train_interrupted()) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/checkpoint-%lld", out, (long long)ts.step);
            if (wick_trainer_save(tr, dir) != WICK_OK) {
                rc = cli_fail("train", "cannot write the checkpoint");
                goto out_order;
            }
            cli_prune_checkpoints(out, keep);
            fprintf(stderr, "interrupted after step %lld: saved %s (continue with %s %s)\n",
                    (long long)ts.step, dir, full ? "--resume" : "--adapter", dir);
            rc = 130;
            goto out_order;
        }
    }
    if (skipped)
        fprintf(stderr, "wick train: %ld of %ld steps were skipped: every example of their batch "
                        "had no token to learn\n", skipped, total - ts.step);
    if (skipped && skipped == total - ts.step) {
        fprintf(stderr, "wick train: no step could run: nothing was trained or written\n");
        rc = 1;
        goto out_order;
    }
    if (wick_trainer_save(tr, out) != WICK_OK) {
        rc = cli_fail("train", full ? "cannot write the model" : "cannot write the adapter");
        goto out_order;
    }
    printf("saved %s\n", out);
out_order:
    free(order);
out:
    free(ids);
    free(labels);
    wick_trainer_free(tr);
    train_data_free(&ds);
    wick_model_free(m);
    return rc;
}
