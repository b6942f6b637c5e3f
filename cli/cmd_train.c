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
 * save keeps the checkpoint-STEP folders already in --out). --resume DIR continues from a PEFT
 * folder and, when DIR holds trainer_state.safetensors, from its optimizer state and step count
 * (--adapter DIR is the old spelling, accepted with a note).
 * --full trains every weight of the model instead (wick_trainer_create_full): --out and the
 * checkpoints are model folders (f32) with the optimizer state; --resume DIR continues a
 * full-training checkpoint (the model is loaded from DIR).
 * Beside the result, --out gets training_log.jsonl (a line per step and per evaluation) and
 * loss.svg; --eval-data FILE (same formats as --data) is scored every --eval-every steps and
 * at the end. Progress and the final summary go to stderr (cli/trainlog.c, shared with
 * `wick pretrain`).
 * Not here: chat-template rendering of conversations, multiple files. */
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
#include "cli/trainlog.h"
#include "train/data.h"

typedef train_data dataset;

/* Reads --data and parses it (train/data.c); prints the error and returns 1 on failure. */
static int load_data(const char *opt, const char *path, const wick_tokenizer *tok, int32_t eos,
                     int seq_len, dataset *d) {
    char *buf = NULL;
    size_t len = 0;
    if (file_read_all(path, &buf, &len) != WICK_OK) return cli_fail("train", opt);
    const size_t pl = strlen(path);
    const bool jsonl = pl > 6 && !strcmp(path + pl - 6, ".jsonl");
    wick_status st = train_data_parse(buf, len, jsonl, path, tok, eos, seq_len, d);
    free(buf);
    return st ? cli_fail("train", "cannot use the training data") : 0;
}

/* Picks the next `batch` examples (reshuffling at each epoch end) into pick; returns the
 * longest length among them. */
static int next_batch(const dataset *ds, int *order, long *pos, uint64_t *rng, int batch,
                      int *pick) {
    int T = 0;
    for (int b = 0; b < batch; b++) {
        if (*pos >= ds->n) {
            cli_shuffle(order, ds->n, rng);
            *pos = 0;
        }
        pick[b] = order[(*pos)++];
        if (ds->ex[pick[b]].n > T) T = ds->ex[pick[b]].n;
    }
    return T;
}

/* Copies the examples pick[0..B) into ids/labels (B x T, padded with `pad`, labels -100). */
static void fill_batch(const dataset *ds, const int *pick, int B, int T, int32_t pad,
                       int32_t *ids, int32_t *labels) {
    for (int b = 0; b < B; b++) {
        const train_example *e = &ds->ex[pick[b]];
        for (int t = 0; t < T; t++) {
            ids[(size_t)b * T + t] = t < e->n ? e->ids[t] : pad;
            labels[(size_t)b * T + t] = t < e->n ? e->labels[t] : -100;
        }
    }
}

/* Tokens of the batch that are text, not padding (the figure tokens/s counts). */
static int64_t batch_tokens(const dataset *ds, const int *pick, int B, int T) {
    int64_t n = 0;
    for (int b = 0; b < B; b++) n += ds->ex[pick[b]].n < T ? ds->ex[pick[b]].n : T;
    return n;
}

/* Mean loss per target token over every example of `ev`, in batches of B (a batch's mean is
 * weighted by its target count, so the figure does not depend on B). Batches without a target
 * are skipped. 0 or an exit code (message printed). */
static int eval_loss(wick_trainer *tr, const dataset *ev, int B, int32_t pad, int32_t *ids,
                     int32_t *labels, double *out) {
    double sum = 0;
    long n = 0;
    int pick[4096];
    for (int e0 = 0; e0 < ev->n; e0 += B) {
        const int b = ev->n - e0 < B ? ev->n - e0 : B;
        int T = 0;
        long targets = 0;
        for (int i = 0; i < b; i++) {
            pick[i] = e0 + i;
            const train_example *e = &ev->ex[e0 + i];
            if (e->n > T) T = e->n;
            for (int t = 1; t < e->n; t++) targets += e->labels[t] != -100;
        }
        if (!targets) continue;
        fill_batch(ev, pick, b, T, pad, ids, labels);
        float loss = 0;
        if (wick_train_eval(tr, ids, labels, b, T, &loss) != WICK_OK)
            return cli_fail("train", "evaluation on --eval-data failed");
        sum += (double)loss * targets;
        n += targets;
    }
    if (!n) {
        fprintf(stderr, "wick train: --eval-data has no token to score\n");
        return 1;
    }
    *out = sum / (double)n;
    return 0;
}

static int usage(FILE *f) {
    fprintf(f,
            "usage: wick train -m MODEL --data FILE.jsonl|FILE.txt -o DIR [options]\n"
            "  -o, --out DIR        the adapter (or, with --full, the model) and its logs\n"
            "  --resume DIR         continue: a PEFT folder or checkpoint-STEP (its optimizer\n"
            "                       state too, when it has one); with --full a model checkpoint\n"
            "  --full               train every weight (full fine-tuning); --out is a model folder\n"
            "  -r N                 LoRA rank of a new adapter (default 8)\n"
            "  --alpha A            lora_alpha (default 16)\n"
            "  --targets LIST       projections: q,k,v,o,gate,up,down (default q,v); on Phi-3\n"
            "                       its fused modules qkv,o,gate_up,down (default qkv)\n"
            "  --lr X               peak learning rate (default 1e-4)\n"
            "  --epochs N | --steps N   length of training (default 1 epoch)\n"
            "  --batch B            sequences per step (default 1)\n"
            "  --seq-len L          max tokens per sequence (default 256)\n"
            "  --warmup N           linear warmup steps (default 0)\n"
            "  --schedule S         constant|linear|cosine (default constant)\n"
            "  --weight-decay X     (default 0.01)   --grad-clip X  (default 0 = off)\n"
            "  --eval-data FILE     held-out examples (same formats as --data): eval loss\n"
            "  --eval-every N       evaluate every N steps and at the end (default: steps/10)\n"
            "  --save-every N       write DIR/checkpoint-STEP every N steps (default 0 = off)\n"
            "  --save-total-limit N keep only the newest N checkpoints (default 0 = all)\n"
            "  --log-every N        a progress line every N steps when stderr is not a terminal\n"
            "                       (default: about 50 lines per run)\n"
            "  --seed S             adapter init and data order (default 0)\n"
            "  -t, --threads N      threads (default: all CPUs)\n"
            "  -q, --quiet          no progress and no summary; warnings and errors only\n"
            "JSONL lines: {\"text\": ...} or {\"prompt\": ..., \"completion\": ...} (loss on the\n"
            "completion only); other files are plain text.\n"
            "DIR also gets training_log.jsonl (one JSON line per step and per evaluation) and\n"
            "loss.svg. Progress is on stderr: one line redrawn in place on a terminal (step,\n"
            "loss, smoothed loss, tokens/s, lr, elapsed, ETA), plain lines otherwise.\n"
            "Ctrl-C saves DIR/checkpoint-STEP of the last completed step and exits (a second\n"
            "Ctrl-C exits at once); continue with --resume on it.\n");
    return f == stdout ? 0 : 2;
}

/* Writes DIR/checkpoint-STEP; 0 or an exit code. */
static int save_checkpoint(wick_trainer *tr, cli_trainlog *lg, const char *out, int64_t step,
                           long keep, char *dir, size_t dir_n) {
    snprintf(dir, dir_n, "%s/checkpoint-%lld", out, (long long)step);
    cli_trainlog_flush(lg);
    if (wick_trainer_save(tr, dir) != WICK_OK)
        return cli_fail("train", "cannot write a checkpoint");
    cli_prune_checkpoints(out, keep);
    return 0;
}

int cmd_train(int argc, char **argv) {
    const char *model_dir = NULL, *data = NULL, *out = NULL, *adapter = NULL, *resume = NULL;
    const char *eval_data = NULL;
    bool full = false, quiet = false, set_r = false, set_targets = false;
    const char *targets = "default", *sched = "constant";
    long r = 8, epochs = 0, steps = 0, batch = 1, seq_len = 256, warmup = 0, save_every = 0;
    long seed = 0, threads = 0, keep = 0, eval_every = 0, log_every = 0;
    double alpha = 16, lr = 1e-4, wd = 0.01, clip = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const bool has = i + 1 < argc;
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout);
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model_dir = argv[++i];
        else if (!strcmp(a, "--data") && has) data = argv[++i];
        else if (!strcmp(a, "--eval-data") && has) eval_data = argv[++i];
        else if ((!strcmp(a, "--out") || !strcmp(a, "-o")) && has) out = argv[++i];
        else if (!strcmp(a, "--adapter") && has) adapter = argv[++i];
        else if (!strcmp(a, "--resume") && has) resume = argv[++i];
        else if (!strcmp(a, "--full")) full = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = cli_quiet = true;
        else if (!strcmp(a, "--targets") && has) targets = argv[++i], set_targets = true;
        else if (!strcmp(a, "--schedule") && has) sched = argv[++i];
        else if (!strcmp(a, "-r") && has) ok = cli_parse_int("train", a, argv[++i], 1, 4096, &r), set_r = true;
        else if (!strcmp(a, "--epochs") && has) ok = cli_parse_int("train", a, argv[++i], 1, 1000000, &epochs);
        else if (!strcmp(a, "--steps") && has) ok = cli_parse_int("train", a, argv[++i], 1, 100000000, &steps);
        else if (!strcmp(a, "--batch") && has) ok = cli_parse_int("train", a, argv[++i], 1, 4096, &batch);
        else if (!strcmp(a, "--seq-len") && has) ok = cli_parse_int("train", a, argv[++i], 2, 1 << 20, &seq_len);
        else if (!strcmp(a, "--warmup") && has) ok = cli_parse_int("train", a, argv[++i], 0, 100000000, &warmup);
        else if (!strcmp(a, "--save-every") && has) ok = cli_parse_int("train", a, argv[++i], 0, 100000000, &save_every);
        else if (!strcmp(a, "--save-total-limit") && has) ok = cli_parse_int("train", a, argv[++i], 0, 1000000, &keep);
        else if (!strcmp(a, "--eval-every") && has) ok = cli_parse_int("train", a, argv[++i], 1, 100000000, &eval_every);
        else if (!strcmp(a, "--log-every") && has) ok = cli_parse_int("train", a, argv[++i], 1, 100000000, &log_every);
        else if (!strcmp(a, "--seed") && has) ok = cli_parse_int("train", a, argv[++i], 0, 0x7fffffffL, &seed);
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has) ok = cli_parse_int("train", a, argv[++i], 0, 1024, &threads);
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
    if (adapter && resume) {
        fprintf(stderr, "wick train: give --resume DIR (or its old spelling --adapter DIR), not "
                        "both\n");
        return 2;
    }
    if (full && adapter) {
        fprintf(stderr, "wick train: --adapter applies to LoRA training; with --full use "
                        "--resume DIR to continue a checkpoint\n");
        return 2;
    }
    if (adapter)   /* the old spelling: --adapter means "apply" everywhere else */
        fprintf(stderr, "wick train: note: --adapter DIR is now --resume DIR (continue training "
                        "an adapter); --adapter still works here\n");
    if (resume && !full) adapter = resume;   /* LoRA: resuming is continuing the adapter folder */
    if (full && resume) {
        if (model_dir)
            fprintf(stderr, "wick train: note: --resume loads the model from %s; -m is not "
                            "used\n", resume);
        model_dir = resume;
    }
    if (!model_dir || !data || !out) return usage(stderr);
    if (epochs && steps) {
        fprintf(stderr, "wick train: give --epochs or --steps, not both\n");
        return 2;
    }
    /* options that shape a new adapter do not apply to one that exists */
    if ((full || adapter) && (set_r || set_targets))
        fprintf(stderr, "wick train: warning: %s%s%s ignored: %s\n", set_r ? "-r" : "",
                set_r && set_targets ? " and " : "", set_targets ? "--targets" : "",
                full ? "--full trains every weight, there is no adapter"
                     : "a resumed adapter keeps the rank and targets it was created with");
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
    cli_status_loading("train", model_dir);
    if (wick_model_load(model_dir, &mp, &m) != WICK_OK) return cli_fail("train", "cannot load the model");
    cli_status("train", "reading %s …", data);
    const wick_tokenizer *tok = wick_model_tokenizer(m);
    if (!tok) {
        cli_status_clear();
        fprintf(stderr, "wick train: %s has no tokenizer\n", model_dir);
        wick_model_free(m);
        return 1;
    }
    wick_model_info info;
    wick_model_get_info(m, &info);
    const int32_t eos = info.n_eos ? info.eos_ids[0] : -1;
    dataset ds = {0}, ev = {0};
    int rc = load_data("cannot read --data", data, tok, eos, (int)seq_len, &ds);
    if (!rc && eval_data)
        rc = load_data("cannot read --eval-data", eval_data, tok, eos, (int)seq_len, &ev);
    cli_status_clear();
    if (rc) {
        train_data_free(&ds);
        train_data_free(&ev);
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
        train_data_free(&ev);
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
    if (!eval_every) eval_every = total / 10 > 0 ? total / 10 : 1;
    if (!log_every) log_every = total / 50 > 0 ? total / 50 : 1;
    tp.lr = (float)lr;
    tp.weight_decay = (float)wd;
    tp.max_grad_norm = (float)clip;
    tp.warmup_steps = (int)warmup;
    tp.total_steps = (int)total;
    tp.n_threads = (int)threads;
    tp.seed = (uint64_t)seed;

    wick_trainer *tr = NULL;
    int32_t *ids = NULL, *labels = NULL;
    int *order = NULL;
    cli_trainlog lg = {0};
    wick_status st = full      ? WICK_OK
                     : adapter ? wick_adapter_load(m, adapter, "train")
                               : wick_adapter_create(m, "train", (int)r, (float)alpha, targets,
                                                     (uint64_t)seed);
    if (st) {
        rc = cli_fail("train", adapter ? "cannot load --resume's adapter" : "cannot create the adapter");
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
        bool has_state = sp && file_exists(sp);
        free(sp);
        if (has_state && wick_trainer_load_checkpoint(tr, adapter) != WICK_OK) {
            rc = cli_fail("train", "cannot resume from --resume's trainer_state");
            goto out;
        }
    }
    wick_train_state ts;
    wick_trainer_get_state(tr, &ts);
    cli_status_clear();
    if (!quiet)
        printf("training %lld %s parameters on %d examples, %ld steps (batch %ld, from step "
               "%lld)%s\n", (long long)ts.n_params, full ? "model" : "LoRA", ds.n, total, batch,
               (long long)ts.step, eval_data ? ", evaluating on --eval-data" : "");
    fflush(stdout);
    ids = malloc(sizeof(int32_t) * (size_t)(batch * seq_len));
    labels = malloc(sizeof(int32_t) * (size_t)(batch * seq_len));
    order = malloc(sizeof(int) * (size_t)ds.n);
    if (!ids || !labels || !order) {
        fprintf(stderr, "wick train: out of memory\n");
        rc = 1;
        goto out;
    }
    if (mkdir(out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "wick train: cannot create %s: %s\n", out, strerror(errno));
        rc = 1;
        goto out;
    }
    if ((rc = cli_trainlog_open(&lg, "train", out, ts.step > 0 ? ts.step : -1, total, log_every,
                                quiet)))
        goto out;
    uint64_t rng = (uint64_t)seed * 0x2545f4914f6cdd1dull + 1;
    long pos = ds.n;   /* forces a shuffle before the first batch */
    const int pad = info.pad_id >= 0 ? info.pad_id : info.n_eos ? info.eos_ids[0] : 0;
    int pick[4096];
    long skipped = 0;
    int64_t tokens = 0;
    cli_train_sigint_install();
    /* a resumed run replays the data order of the steps already taken, so it sees the same
     * batches as an uninterrupted one */
    for (int64_t s = 0; s < ts.step; s++) {
        const int T = next_batch(&ds, order, &pos, &rng, (int)batch, pick);
        tokens += batch_tokens(&ds, pick, (int)batch, T);
    }
    char dir[4096];
    for (long s = ts.step; s < total; s++) {
        int B = (int)batch, T = next_batch(&ds, order, &pos, &rng, B, pick);
        fill_batch(&ds, pick, B, T, pad, ids, labels);
        float loss = 0;
        if (wick_train_step(tr, ids, labels, B, T, &loss) != WICK_OK) {
            if (strstr(wick_last_error(), "no target token")) {   /* an all-prompt batch */
                skipped++;
                continue;
            }
            rc = cli_fail("train", "training step failed");
            goto out;
        }
        const int64_t real = batch_tokens(&ds, pick, B, T); /* padding is not counted */
        tokens += real;
        wick_trainer_get_state(tr, &ts);
        cli_trainlog_step(&lg, ts.step, loss, ts.lr, ts.grad_norm, tokens, real);
        if (eval_data && (ts.step % eval_every == 0 || ts.step == total)) {
            const double t0 = cli_now_s();
            double el = 0;
            if ((rc = eval_loss(tr, &ev, B, pad, ids, labels, &el))) goto out;
            cli_trainlog_eval(&lg, ts.step, el, cli_now_s() - t0);
            if (!quiet)
                cli_trainlog_say(&lg, stderr, "eval at step %lld: loss %.4f, perplexity %.2f\n",
                                 (long long)ts.step, el, exp(el));
        }
        if (save_every && ts.step % save_every == 0 && ts.step < total) {
            if ((rc = save_checkpoint(tr, &lg, out, ts.step, keep, dir, sizeof dir))) goto out;
            if (!quiet) cli_trainlog_say(&lg, stdout, "saved %s\n", dir);
        }
        if (cli_train_interrupted()) {
            if ((rc = save_checkpoint(tr, &lg, out, ts.step, keep, dir, sizeof dir))) goto out;
            cli_trainlog_say(&lg, stderr, "interrupted after step %lld: saved %s (continue "
                             "with --resume %s)\n", (long long)ts.step, dir, dir);
            rc = 130;
            goto out;
        }
    }
    if (skipped)
        fprintf(stderr, "wick train: %ld of %ld steps were skipped: every example of their batch "
                        "had no token to learn\n", skipped, total - lg.start_step);
    if (skipped && skipped == total - lg.start_step) {
        fprintf(stderr, "wick train: no step could run: nothing was trained or written\n");
        rc = 1;
        goto out;
    }
    cli_trainlog_flush(&lg);
    if (wick_trainer_save(tr, out) != WICK_OK) {
        rc = cli_fail("train", full ? "cannot write the model" : "cannot write the adapter");
        goto out;
    }
    cli_trainlog_plot(&lg, NAN, NAN);
    cli_trainlog_summary(&lg);
    {
        char what[96];
        snprintf(what, sizeof what, "%s, step %lld", full ? "model folder" : "PEFT adapter",
                 (long long)ts.step);
        cli_wrote("train", out, what, cli_trainlog_elapsed(&lg));
    }
out:
    cli_trainlog_close(&lg);
    free(order);
    free(ids);
    free(labels);
    wick_trainer_free(tr);
    train_data_free(&ds);
    train_data_free(&ev);
    wick_model_free(m);
    return rc;
}
