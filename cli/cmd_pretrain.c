/* cmd_pretrain.c — `wick pretrain`: a fresh Qwen2-architecture model trained from scratch on a
 * text corpus with full-parameter training (wick_trainer_create_full).
 *
 * Steps: the shape (a config.json-style SHAPE.json) and the tokenizer give OUT/init, a model
 * folder initialised as transformers initialises one (matrices N(0, initializer_range), norms
 * 1, biases 0; seeded, wick's own generator); the corpus is tokenized as one stream and cut
 * into windows of --seq-len tokens (a last shorter window is dropped), shuffled per epoch with
 * --seed; every step trains on --batch windows (HF causal-LM loss); --valid is cut the same
 * way and its mean loss (and perplexity) reported every --eval-every steps, next to a unigram
 * and a bigram baseline fitted on the training tokens and scored on exactly the same held-out
 * targets (unigram add-one; bigram interpolated absolute discounting, d = 0.75, over the
 * add-one unigram — the usual count baselines, nothing tuned on the held-out split).
 *
 * Output in OUT: the model (config.json, model.safetensors f32, tokenizer files), init/,
 * training_log.jsonl (one line per step, one per evaluation), loss.svg (cli/trainlog.c, shared
 * with `wick train`, as are the progress line and the summary), eval.json (final figures),
 * checkpoint-STEP/ folders with --save-every (model + optimizer state; --resume DIR continues
 * one exactly, replaying the data order). Every file is written atomically.
 * Not here: multiple corpus files, document separators (the corpus is one stream). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/fileio.h"
#include "cli/cli.h"
#include "cli/trainlog.h"
#include "model/random.h"
#include "train/data.h"

static int usage(FILE *f) {
    fprintf(f,
            "usage: wick pretrain --config SHAPE.json --tokenizer TOK --data TRAIN.txt -o DIR [options]\n"
            "       wick pretrain --resume DIR/checkpoint-N --data TRAIN.txt -o DIR [same options]\n"
            "  --config FILE        shape, config.json style: hidden_size, intermediate_size,\n"
            "                       num_hidden_layers, num_attention_heads, num_key_value_heads,\n"
            "                       max_position_embeddings, rope_theta, rms_norm_eps,\n"
            "                       tie_word_embeddings, initializer_range (vocab = the tokenizer's)\n"
            "  -T, --tokenizer PATH tokenizer.json or a folder holding one (wick tokenizer-train)\n"
            "  --data FILE          training text (one stream)\n"
            "  --valid FILE         held-out text: loss, perplexity and baselines\n"
            "  --steps N            optimizer steps (required)\n"
            "  --batch B            windows per step (default 16)\n"
            "  --seq-len L          tokens per window (default 128)\n"
            "  --lr X               peak learning rate (default 2e-3), --warmup N (default steps/20)\n"
            "  --schedule S         constant|linear|cosine (default cosine)\n"
            "  --weight-decay X     on matrices only (default 0.1); --grad-clip X (default 1.0)\n"
            "  --eval-every N       evaluate on --valid every N steps (default 200)\n"
            "  --save-every N       write DIR/checkpoint-STEP every N steps (default 0 = off)\n"
            "  --save-total-limit N keep only the newest N checkpoints (default 0 = all)\n"
            "  --log-every N        a progress line every N steps when stderr is not a\n"
            "                       terminal (default 10)\n"
            "  --seed S             init and data order (default 0)\n"
            "  -t, --threads N      threads (default: all CPUs)\n"
            "  --force              replace an existing DIR\n"
            "  -q, --quiet          no progress and no summary; warnings and errors only\n"
            "Ctrl-C saves DIR/checkpoint-STEP of the last completed step and exits (a second\n"
            "Ctrl-C exits at once); --resume continues it.\n");
    return f == stdout ? 0 : 2;
}

/* Reads SHAPE.json into s (vocab from the tokenizer). 0 or an exit code (message printed). */
static int read_shape(const char *path, int vocab, random_shape *s) {
    char *buf = NULL;
    size_t n = 0;
    if (file_read_all(path, &buf, &n) != WICK_OK) return cli_fail("pretrain", "cannot read --config");
    cJSON *j = cJSON_ParseWithLength(buf, n);
    free(buf);
    if (!cJSON_IsObject(j)) {
        fprintf(stderr, "wick pretrain: %s: not a JSON object\n", path);
        cJSON_Delete(j);
        return 1;
    }
    struct {
        const char *key;
        int *dst;
        int def;   /* -1 = required */
    } ints[] = {{"hidden_size", &s->d, -1},          {"intermediate_size", &s->ff, -1},
                {"num_hidden_layers", &s->layers, -1}, {"num_attention_heads", &s->heads, -1},
                {"num_key_value_heads", &s->kv, 0},  {"max_position_embeddings", &s->max_pos, 2048}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, ints[i].key);
        if (!v && ints[i].def >= 0) {
            *ints[i].dst = ints[i].def;
            continue;
        }
        if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 1 << 20 ||
            v->valuedouble != (int)v->valuedouble) {
            fprintf(stderr, "wick pretrain: %s: \"%s\" must be a positive integer%s\n", path,
                    ints[i].key, v ? "" : " (missing)");
            cJSON_Delete(j);
            return 1;
        }
        *ints[i].dst = v->valueint;
    }
    if (!s->kv) s->kv = s->heads;
    const cJSON *v;
    s->theta = cJSON_IsNumber(v = cJSON_GetObjectItem(j, "rope_theta")) ? v->valuedouble : 10000.0;
    s->eps = cJSON_IsNumber(v = cJSON_GetObjectItem(j, "rms_norm_eps")) ? v->valuedouble : 1e-6;
    s->init_std = cJSON_IsNumber(v = cJSON_GetObjectItem(j, "initializer_range")) ? v->valuedouble
                                                                                 : 0.02;
    v = cJSON_GetObjectItem(j, "tie_word_embeddings");
    s->tied = v ? cJSON_IsTrue(v) : 1;
    v = cJSON_GetObjectItem(j, "vocab_size");
    if (v && (!cJSON_IsNumber(v) || v->valueint < vocab)) {
        fprintf(stderr, "wick pretrain: %s: vocab_size %d is smaller than the tokenizer's %d\n",
                path, v->valueint, vocab);
        cJSON_Delete(j);
        return 1;
    }
    s->vocab = v ? v->valueint : vocab;
    cJSON_Delete(j);
    s->name = path;
    s->arch = "Qwen2ForCausalLM";
    s->model_type = "qwen2";
    s->bias = 1;
    s->hf_init = 1;
    return 0;
}

/* Windows of exactly seq_len tokens of a text file. */
static int load_windows(const char *path, const wick_tokenizer *tok, int seq_len, train_data *d,
                        int64_t *n_tokens) {
    char *buf = NULL;
    size_t len = 0;
    if (file_read_all(path, &buf, &len) != WICK_OK) return cli_fail("pretrain", "cannot read the data");
    wick_status st = train_data_parse(buf, len, false, path, tok, -1, seq_len, d);
    free(buf);
    if (st) return cli_fail("pretrain", "cannot use the data");
    while (d->n && d->ex[d->n - 1].n < seq_len) {   /* the short tail */
        d->n--;
        free(d->ex[d->n].ids);
        free(d->ex[d->n].labels);
    }
    if (!d->n) {
        fprintf(stderr, "wick pretrain: %s holds fewer than %d tokens\n", path, seq_len);
        return 1;
    }
    *n_tokens = (int64_t)d->n * seq_len;
    return 0;
}

/* Unigram (add-one) and bigram (interpolated absolute discounting) perplexities of the held-out
 * windows' targets, fitted on the training windows. */
static void baselines(const train_data *tr, const train_data *va, int V, double *ppl_uni,
                      double *ppl_bi) {
    double *uni = calloc((size_t)V, sizeof *uni);
    int64_t total = 0;
    for (int w = 0; w < tr->n; w++)
        for (int t = 0; t < tr->ex[w].n; t++) uni[tr->ex[w].ids[t]] += 1, total++;
    /* bigram counts in a hash of (prev, next) pairs */
    size_t cap = 1;
    while (cap < (size_t)total * 2) cap <<= 1;
    uint64_t *keys = calloc(cap, sizeof *keys);
    uint32_t *cnt = calloc(cap, sizeof *cnt);
    double *ctx = calloc((size_t)V, sizeof *ctx), *types = calloc((size_t)V, sizeof *types);
    if (!uni || !keys || !cnt || !ctx || !types) {
        *ppl_uni = *ppl_bi = NAN;
        goto out;
    }
    for (int w = 0; w < tr->n; w++)
        for (int t = 1; t < tr->ex[w].n; t++) {
            const int32_t a = tr->ex[w].ids[t - 1], b = tr->ex[w].ids[t];
            const uint64_t k = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
            size_t s = (size_t)((k * 0x9e3779b97f4a7c15ull) >> 20) & (cap - 1);
            while (keys[s] && keys[s] != k) s = (s + 1) & (cap - 1);
            if (!keys[s]) keys[s] = k, types[a] += 1;
            cnt[s]++;
            ctx[a] += 1;
        }
    double nll_u = 0, nll_b = 0;
    int64_t n = 0;
    const double d = 0.75;
    for (int w = 0; w < va->n; w++)
        for (int t = 1; t < va->ex[w].n; t++) {
            const int32_t a = va->ex[w].ids[t - 1], b = va->ex[w].ids[t];
            const double pu = (uni[b] + 1) / ((double)total + V);
            const uint64_t k = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
            size_t s = (size_t)((k * 0x9e3779b97f4a7c15ull) >> 20) & (cap - 1);
            while (keys[s] && keys[s] != k) s = (s + 1) & (cap - 1);
            const double c = keys[s] ? cnt[s] : 0;
            const double pb = ctx[a] > 0 ? fmax(c - d, 0) / ctx[a] + d * types[a] / ctx[a] * pu : pu;
            nll_u -= log(pu);
            nll_b -= log(pb);
            n++;
        }
    *ppl_uni = exp(nll_u / (double)n);
    *ppl_bi = exp(nll_b / (double)n);
out:
    free(uni);
    free(keys);
    free(cnt);
    free(ctx);
    free(types);
}

/* Mean loss over every held-out window (each predicts seq_len − 1 tokens). */
static int eval_loss(wick_trainer *tr, const train_data *va, int B, int L, int32_t *ids,
                     double *out) {
    double sum = 0;
    int n = 0;
    for (int w0 = 0; w0 < va->n; w0 += B) {
        const int b = va->n - w0 < B ? va->n - w0 : B;
        for (int i = 0; i < b; i++) memcpy(ids + (size_t)i * L, va->ex[w0 + i].ids, sizeof(int32_t) * L);
        float loss = 0;
        if (wick_train_eval(tr, ids, NULL, b, L, &loss) != WICK_OK)
            return cli_fail("pretrain", "evaluation failed");
        sum += (double)loss * b;
        n += b;
    }
    *out = sum / n;
    return 0;
}

int cmd_pretrain(int argc, char **argv) {
    const char *config = NULL, *tokp = NULL, *data = NULL, *valid = NULL, *out = NULL;
    const char *resume = NULL, *sched = "cosine";
    long steps = 0, batch = 16, seq_len = 128, warmup = -1, eval_every = 200, save_every = 0;
    long log_every = 10, seed = 0, threads = 0, keep = 0;
    double lr = 2e-3, wd = 0.1, clip = 1.0;
    bool force = false, quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const bool has = i + 1 < argc;
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout);
        else if (!strcmp(a, "--config") && has) config = argv[++i];
        else if ((!strcmp(a, "--tokenizer") || !strcmp(a, "-T")) && has) tokp = argv[++i];
        else if (!strcmp(a, "--data") && has) data = argv[++i];
        else if (!strcmp(a, "--valid") && has) valid = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && has) out = argv[++i];
        else if (!strcmp(a, "--resume") && has) resume = argv[++i];
        else if (!strcmp(a, "--schedule") && has) sched = argv[++i];
        else if (!strcmp(a, "--steps") && has) ok = cli_parse_int("pretrain", a, argv[++i], 1, 100000000, &steps);
        else if (!strcmp(a, "--batch") && has) ok = cli_parse_int("pretrain", a, argv[++i], 1, 4096, &batch);
        else if (!strcmp(a, "--seq-len") && has) ok = cli_parse_int("pretrain", a, argv[++i], 2, 1 << 16, &seq_len);
        else if (!strcmp(a, "--warmup") && has) ok = cli_parse_int("pretrain", a, argv[++i], 0, 100000000, &warmup);
        else if (!strcmp(a, "--eval-every") && has) ok = cli_parse_int("pretrain", a, argv[++i], 1, 100000000, &eval_every);
        else if (!strcmp(a, "--save-every") && has) ok = cli_parse_int("pretrain", a, argv[++i], 0, 100000000, &save_every);
        else if (!strcmp(a, "--save-total-limit") && has) ok = cli_parse_int("pretrain", a, argv[++i], 0, 1000000, &keep);
        else if (!strcmp(a, "--log-every") && has) ok = cli_parse_int("pretrain", a, argv[++i], 1, 100000000, &log_every);
        else if (!strcmp(a, "--seed") && has) ok = cli_parse_int("pretrain", a, argv[++i], 0, 0x7fffffffL, &seed);
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has) ok = cli_parse_int("pretrain", a, argv[++i], 0, 1024, &threads);
        else if (!strcmp(a, "--lr") && has) ok = cli_parse_float("pretrain", a, argv[++i], &lr);
        else if (!strcmp(a, "--weight-decay") && has) ok = cli_parse_float("pretrain", a, argv[++i], &wd);
        else if (!strcmp(a, "--grad-clip") && has) ok = cli_parse_float("pretrain", a, argv[++i], &clip);
        else if (!strcmp(a, "--force")) force = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = cli_quiet = true;
        else {
            fprintf(stderr, "wick pretrain: unknown or incomplete option '%s'\n", a);
            return usage(stderr);
        }
        if (!ok) return 2;
    }
    if (!data || !out || !steps || (!resume && (!config || !tokp))) return usage(stderr);
    if (resume && (config || tokp))
        fprintf(stderr, "wick pretrain: note: --resume takes the shape and tokenizer from %s; "
                        "--config/--tokenizer are ignored\n", resume);
    wick_train_params tp = wick_train_params_default();
    if (!strcmp(sched, "constant")) tp.schedule = WICK_LR_CONSTANT;
    else if (!strcmp(sched, "linear")) tp.schedule = WICK_LR_LINEAR;
    else if (!strcmp(sched, "cosine")) tp.schedule = WICK_LR_COSINE;
    else {
        fprintf(stderr, "wick pretrain: --schedule must be constant, linear or cosine\n");
        return 2;
    }
    if (!resume && !force && dir_exists(out)) {
        fprintf(stderr, "wick pretrain: %s exists (use --force to replace it, or --resume a "
                        "checkpoint in it)\n", out);
        return 1;
    }
    if (mkdir(out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "wick pretrain: cannot create %s: %s\n", out, strerror(errno));
        return 1;
    }
    const double t_start = cli_now_s();
    char *init = path_join(out, "init");
    const char *model_dir = resume ? resume : init;
    int rc = 0;
    if (!resume) {
        /* the tokenizer first: the vocabulary sizes the embedding */
        wick_tokenizer *tk = NULL;
        char *tj = dir_exists(tokp) ? path_join(tokp, "tokenizer.json") : strdup(tokp);
        if (wick_tokenizer_load(tj, &tk) != WICK_OK) {
            free(tj);
            free(init);
            return cli_fail("pretrain", "cannot load --tokenizer");
        }
        random_shape s = {0};
        rc = read_shape(config, wick_tokenizer_vocab_size(tk), &s);
        wick_tokenizer_free(tk);
        /* specials: id 0 ends a text (bos = eos = 0, as Qwen2 uses one id for both) */
        s.bos = s.eos = 0;
        if (!rc && random_model_write_shape(&s, init, (uint64_t)seed, DT_F32, tj) != WICK_OK)
            rc = cli_fail("pretrain", "cannot write the initial model");
        free(tj);
        if (!rc) {   /* a chat-free tokenizer_config: eos, no template, no BOS added */
            const char *tc = "{\n  \"eos_token\": \"<|endoftext|>\",\n  \"pad_token\": "
                             "\"<|endoftext|>\",\n  \"bos_token\": null,\n  \"add_bos_token\": "
                             "false,\n  \"model_max_length\": 2048,\n  \"tokenizer_class\": "
                             "\"PreTrainedTokenizerFast\"\n}\n";
            char *p = path_join(init, "tokenizer_config.json");
            if (!p || file_write_atomic(p, tc, strlen(tc)) != WICK_OK)
                rc = cli_fail("pretrain", "cannot write tokenizer_config.json");
            free(p);
        }
        if (rc) {
            free(init);
            return rc;
        }
    }
    wick_model *m = NULL;
    wick_model_params mp = wick_model_params_default();
    if (wick_model_load(model_dir, &mp, &m) != WICK_OK) {
        free(init);
        return cli_fail("pretrain", "cannot load the model");
    }
    const wick_tokenizer *tok = wick_model_tokenizer(m);
    wick_model_info info;
    wick_model_get_info(m, &info);
    train_data tr_d = {0}, va_d = {0};
    int64_t n_train = 0, n_valid = 0;
    wick_trainer *tr = NULL;
    int32_t *ids = NULL;
    int *order = NULL;
    cli_trainlog lg = {0};
    double ppl_u = NAN, ppl_b = NAN, last_eval = NAN;
    if (!tok) {
        fprintf(stderr, "wick pretrain: %s has no tokenizer\n", model_dir);
        rc = 1;
        goto out;
    }
    if ((rc = load_windows(data, tok, (int)seq_len, &tr_d, &n_train))) goto out;
    if (valid && (rc = load_windows(valid, tok, (int)seq_len, &va_d, &n_valid))) goto out;
    if (valid) baselines(&tr_d, &va_d, (int)info.n_vocab, &ppl_u, &ppl_b);

    tp.lr = (float)lr;
    tp.weight_decay = (float)wd;
    tp.max_grad_norm = (float)clip;
    tp.total_steps = (int)steps;
    tp.warmup_steps = (int)(warmup >= 0 ? warmup : steps / 20);
    tp.n_threads = (int)threads;
    tp.seed = (uint64_t)seed;
    if (wick_trainer_create_full(m, &tp, &tr) != WICK_OK) {
        rc = cli_fail("pretrain", "cannot start training");
        goto out;
    }
    if (resume && wick_trainer_load_checkpoint(tr, resume) != WICK_OK) {
        rc = cli_fail("pretrain", "cannot resume");
        goto out;
    }
    wick_train_state ts;
    wick_trainer_get_state(tr, &ts);
    if (!quiet)
        printf("pretraining %.2fM parameters (d %lld, %lld layers, vocab %lld) on %lld tokens "
           "(%d windows of %ld), %ld steps of %ld windows = %.1f epochs, from step %lld\n",
           (double)ts.n_params / 1e6, (long long)info.n_embd, (long long)info.n_layer,
           (long long)info.n_vocab, (long long)n_train, tr_d.n, seq_len, steps, batch,
           (double)steps * batch / tr_d.n, (long long)ts.step);
    if (valid && !quiet)
        printf("held-out: %lld tokens; baselines: unigram perplexity %.2f, bigram %.2f\n",
               (long long)n_valid, ppl_u, ppl_b);
    fflush(stdout);
    ids = malloc(sizeof(int32_t) * (size_t)(batch * seq_len));
    order = malloc(sizeof(int) * (size_t)tr_d.n);
    if (!ids || !order) {
        fprintf(stderr, "wick pretrain: out of memory\n");
        rc = 1;
        goto out;
    }
    /* a resumed run keeps the log lines of the steps it resumes from */
    if ((rc = cli_trainlog_open(&lg, "pretrain", out, resume ? ts.step : -1, steps, log_every,
                                quiet)))
        goto out;
    uint64_t rng = (uint64_t)seed * 0x2545f4914f6cdd1dull + 7;
    long pos = tr_d.n;
    /* the order of windows: a fresh shuffle per epoch; a resumed run replays the steps taken */
    cli_train_sigint_install();
    for (int64_t s = 0; s < steps; s++) {
        for (int b = 0; b < batch; b++) {
            if (pos >= tr_d.n) {
                cli_shuffle(order, tr_d.n, &rng);
                pos = 0;
            }
            memcpy(ids + (size_t)b * seq_len, tr_d.ex[order[pos++]].ids, sizeof(int32_t) * seq_len);
        }
        if (s < ts.step) continue;
        float loss = 0;
        if (wick_train_step(tr, ids, NULL, (int)batch, (int)seq_len, &loss) != WICK_OK) {
            rc = cli_fail("pretrain", "training step failed");
            goto out;
        }
        wick_train_state now;
        wick_trainer_get_state(tr, &now);
        cli_trainlog_step(&lg, now.step, loss, now.lr, now.grad_norm,
                          (int64_t)(now.step * batch * seq_len), (int64_t)(batch * seq_len));
        if (valid && (now.step % eval_every == 0 || now.step == steps)) {
            const double te = cli_now_s();
            if ((rc = eval_loss(tr, &va_d, (int)batch, (int)seq_len, ids, &last_eval))) goto out;
            cli_trainlog_eval(&lg, now.step, last_eval, cli_now_s() - te);
            if (!quiet)
                cli_trainlog_say(&lg, stderr, "eval at step %lld: held-out loss %.4f, perplexity "
                                 "%.2f (unigram %.2f, bigram %.2f)\n", (long long)now.step,
                                 last_eval, exp(last_eval), ppl_u, ppl_b);
        }
        if (save_every && now.step % save_every == 0 && now.step < steps) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/checkpoint-%lld", out, (long long)now.step);
            cli_trainlog_flush(&lg);
            if (wick_trainer_save(tr, dir) != WICK_OK) {
                rc = cli_fail("pretrain", "cannot write a checkpoint");
                goto out;
            }
            if (!quiet) cli_trainlog_say(&lg, stdout, "saved %s\n", dir);
            cli_prune_checkpoints(out, keep);
        }
        if (cli_train_interrupted()) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/checkpoint-%lld", out, (long long)now.step);
            cli_trainlog_flush(&lg);
            if (wick_trainer_save(tr, dir) != WICK_OK) {
                rc = cli_fail("pretrain", "cannot write the checkpoint");
                goto out;
            }
            cli_prune_checkpoints(out, keep);
            cli_trainlog_say(&lg, stderr, "interrupted after step %lld: saved %s (continue with "
                             "--resume %s and the same options)\n", (long long)now.step, dir, dir);
            rc = 130;
            goto out;
        }
    }
    cli_trainlog_flush(&lg);
    if (wick_trainer_save(tr, out) != WICK_OK) {
        rc = cli_fail("pretrain", "cannot write the model");
        goto out;
    }
    {
        /* the picture from the whole log (a resumed run's too) */
        cli_trainlog_plot(&lg, ppl_u, ppl_b);
        char *ej = path_join(out, "eval.json");
        wick_train_state fin;
        wick_trainer_get_state(tr, &fin);
        const double secs = cli_trainlog_elapsed(&lg);
        char buf[1024], hl[32], hp[32], pu[32], pb[32];
        /* JSON has no NaN: a figure that was not measured (no --valid) is null */
#define NUM(dst, v) (isfinite(v) ? snprintf(dst, sizeof dst, "%.6f", (double)(v)) \
                                 : snprintf(dst, sizeof dst, "null"))
        NUM(hl, valid ? last_eval : NAN);
        NUM(hp, valid ? exp(last_eval) : NAN);
        NUM(pu, ppl_u);
        NUM(pb, ppl_b);
#undef NUM
        snprintf(buf, sizeof buf,
                 "{\n  \"steps\": %lld,\n  \"params\": %lld,\n  \"train_tokens\": %lld,\n"
                 "  \"heldout_tokens\": %lld,\n  \"heldout_loss\": %s,\n  \"heldout_ppl\": %s,\n"
                 "  \"unigram_ppl\": %s,\n  \"bigram_ppl\": %s,\n  \"seq_len\": %ld,\n"
                 "  \"batch\": %ld,\n  \"seconds_this_run\": %.1f,\n  \"tokens_per_s\": %.1f\n}\n",
                 (long long)fin.step, (long long)fin.n_params, (long long)n_train,
                 (long long)n_valid, hl, hp, pu, pb, seq_len, batch, secs,
                 (double)(fin.step - ts.step) * batch * seq_len / (secs > 0 ? secs : 1));
        if (ej) file_write_atomic(ej, buf, strlen(buf));
        free(ej);
        cli_trainlog_summary(&lg);
        char what[96];
        snprintf(what, sizeof what, "%.2fM parameters, step %lld", (double)fin.n_params / 1e6,
                 (long long)fin.step);
        cli_wrote("pretrain", out, what, cli_now_s() - t_start);
    }
out:
    cli_trainlog_close(&lg);
    free(ids);
    free(order);
    wick_trainer_free(tr);
    train_data_free(&tr_d);
    train_data_free(&va_d);
    wick_model_free(m);
    free(init);
    return rc;
}
