/* test_pretrain.c — the commands of training from scratch, run as a user runs them (the wick
 * binary): `wick tokenizer-train` on tests/data/bpe_corpus.txt, `wick pretrain` of a small
 * shape on the same text with a held-out file; then:
 *  - the training loss falls, eval.json holds the held-out figures and the baselines,
 *    training_log.jsonl one line per step (+ evaluations), loss.svg exists, the model loads
 *    and generates;
 *  - reproducibility: a second run with the same seed gives the same loss curve, and
 *    --resume from a checkpoint continues it exactly (same losses after the checkpoint,
 *    bit-identical weights at the end);
 *  - `wick train --full` fine-tunes the result and writes a model folder;
 *  - bad inputs are refused with a message: an existing output without --force, a shape with
 *    heads not dividing hidden_size. */
#include "testutil.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_wick[4096];

/* Starts wick with argv (NULL-terminated, argv[0] ignored) in the background, stdin from `in`
 * (NULL: none), stdout+stderr to `log`; its pid. */
static pid_t spawn_in(const char *log, const char *in, const char *const *args) {
    const char *argv[64];
    int n = 0;
    argv[n++] = g_wick;
    for (int i = 0; args[i]; i++) argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        int ifd = open(in ? in : "/dev/null", O_RDONLY);
        if (ifd >= 0) dup2(ifd, 0);
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
        execv(g_wick, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static pid_t spawn(const char *log, const char *const *args) { return spawn_in(log, NULL, args); }

/* Runs it to the end; the exit code (128 when killed). */
static int run_in(const char *log, const char *in, const char *const *args) {
    int status = 0;
    waitpid(spawn_in(log, in, args), &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static int run(const char *log, const char *const *args) { return run_in(log, NULL, args); }

/* Lines in a file (0 when absent). */
static int count_lines(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    b[got] = 0;
    fclose(f);
    return b;
}

/* The "loss" of every step line of a training_log.jsonl, in order; count in *n. */
static double *losses(const char *log_path, int *n) {
    char *s = slurp(log_path);
    assert_non_null(s);
    double *v = malloc(sizeof *v * 100000);
    *n = 0;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        const char *p = strstr(line, "\"loss\": ");
        if (p) v[(*n)++] = atof(p + 8);
    }
    free(s);
    return v;
}

static void test_pretrain_end_to_end(void **state) {
    (void)state;
    snprintf(g_wick, sizeof g_wick, "%s/wick", WICK_BINARY_DIR);
    if (access(g_wick, X_OK)) fail_msg("%s is missing", g_wick);
    char *d = tu_mkdtemp();
    char corpus[4096], valid[4096], tok[4096], shape[4096], out[4096], out2[4096], out3[4096];
    char log[4096], p[8192], ck[8192], ft[4096], bad[4096];
    snprintf(corpus, sizeof corpus, "%s/tests/data/bpe_corpus.txt", WICK_SOURCE_DIR);
    snprintf(valid, sizeof valid, "%s/valid.txt", d);
    snprintf(tok, sizeof tok, "%s/tok.json", d);
    snprintf(shape, sizeof shape, "%s/shape.json", d);
    snprintf(out, sizeof out, "%s/m", d);
    snprintf(out2, sizeof out2, "%s/m2", d);
    snprintf(out3, sizeof out3, "%s/m3", d);
    snprintf(log, sizeof log, "%s/log.txt", d);
    /* held-out: the corpus's last 60 lines (seen in training too: the test checks plumbing) */
    {
        char *all = slurp(corpus);
        int lines = 0;
        for (char *c = all; *c; c++) lines += *c == '\n';
        char *c = all;
        for (int k = 0; k < lines - 60; c++) k += *c == '\n';
        FILE *f = fopen(valid, "wb");
        fputs(c, f);
        fclose(f);
        free(all);
    }
    FILE *f = fopen(shape, "wb");
    fputs("{\"hidden_size\": 32, \"intermediate_size\": 64, \"num_hidden_layers\": 2, "
          "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"rope_theta\": 10000.0, "
          "\"tie_word_embeddings\": true, \"initializer_range\": 0.02}", f);
    fclose(f);
    const char *tt[] = {"tokenizer-train", "--vocab", "400", "--data", corpus, "-o", tok, NULL};
    assert_int_equal(run(log, tt), 0);
    assert_int_equal(run(log, tt), 1);   /* exists: refused without --force */
    char *msg = slurp(log);
    assert_non_null(strstr(msg, "--force"));
    free(msg);

    const char *pt[] = {"pretrain", "--config", shape, "--tokenizer", tok, "--data", corpus,
                        "--valid", valid, "-o", out, "--steps", "40", "--batch", "4",
                        "--seq-len", "32", "--lr", "3e-3", "--eval-every", "20",
                        "--save-every", "20", "--seed", "5", "-t", "1", NULL};
    if (run(log, pt)) {
        msg = slurp(log);
        fail_msg("wick pretrain failed:\n%s", msg);
    }
    snprintf(p, sizeof p, "%s/training_log.jsonl", out);
    int n = 0;
    double *l1 = losses(p, &n);
    assert_int_equal(n, 40);
    double first = (l1[0] + l1[1] + l1[2]) / 3, last = (l1[37] + l1[38] + l1[39]) / 3;
    print_message("  loss %.3f -> %.3f over 40 steps\n", first, last);
    assert_true(last < first - 0.5);
    snprintf(p, sizeof p, "%s/eval.json", out);
    char *ej = slurp(p);
    assert_non_null(ej);
    assert_non_null(strstr(ej, "\"heldout_ppl\""));
    assert_non_null(strstr(ej, "\"bigram_ppl\""));
    assert_null(strstr(ej, "null"));
    free(ej);
    snprintf(p, sizeof p, "%s/loss.svg", out);
    char *svg = slurp(p);
    assert_non_null(svg);
    assert_non_null(strstr(svg, "<svg"));
    free(svg);
    const char *gen[] = {"generate", "-m", out, "-p", "And God said", "-n", "8", "--temp", "0",
                         NULL};
    assert_int_equal(run(log, gen), 0);
    /* escapes: -p "a\\nb" is two lines unless --raw; --system needs --chat */
    {
        const char *e1[] = {"generate", "-m", out, "-p", "And\\u0020God\\nsaid", "-n", "1",
                            "--temp", "0", "--json", NULL};
        const char *e2[] = {"generate", "-m", out, "-p", "And God\nsaid", "-n", "1", "--temp",
                            "0", "--json", NULL};
        const char *e3[] = {"generate", "-m", out, "-p", "And\\u0020God\\nsaid", "-n", "1",
                            "--temp", "0", "--json", "--raw", NULL};
        char *r[3];
        const char *const *ee[3] = {e1, e2, e3};
        for (int k = 0; k < 3; k++) {
            assert_int_equal(run(log, ee[k]), 0);
            msg = slurp(log);
            const char *pt2 = strstr(msg, "\"prompt_tokens\"");
            assert_non_null(pt2);
            r[k] = strndup(pt2, 24);
            free(msg);
        }
        assert_string_equal(r[0], r[1]);   /* escaped = the real characters */
        assert_string_not_equal(r[0], r[2]);
        for (int k = 0; k < 3; k++) free(r[k]);
        const char *e4[] = {"generate", "-m", out, "-p", "x", "--system", "s", NULL};
        assert_int_equal(run(log, e4), 2);
        msg = slurp(log);
        assert_non_null(strstr(msg, "--chat"));
        free(msg);
    }
    /* chat on a model without a chat template: completion mode, the text continued */
    snprintf(p, sizeof p, "%s/chat_in.txt", d);
    f = fopen(p, "wb");
    fputs("And God said\n/reset\nIn the beginning\n", f);
    fclose(f);
    const char *chat[] = {"chat", "-m", out, "-n", "5", "--temp", "0", NULL};
    assert_int_equal(run_in(log, p, chat), 0);
    msg = slurp(log);
    assert_non_null(strstr(msg, "completion mode"));
    assert_non_null(strstr(msg, "> And God said"));
    assert_non_null(strstr(msg, "> In the beginning"));
    assert_null(strstr(msg, "cannot"));
    free(msg);

    /* same seed, same curve */
    pt[10] = out2;
    assert_int_equal(run(log, pt), 0);
    snprintf(p, sizeof p, "%s/training_log.jsonl", out2);
    int n2 = 0;
    double *l2 = losses(p, &n2);
    assert_int_equal(n2, 40);
    for (int i = 0; i < 40; i++)
        if (l1[i] != l2[i]) fail_msg("step %d: loss %.6f then %.6f with the same seed", i + 1,
                                     l1[i], l2[i]);
    /* resume from checkpoint-20 into a third folder: the same last 20 losses, same weights */
    snprintf(ck, sizeof ck, "%s/checkpoint-20", out);
    const char *rs[] = {"pretrain", "--resume", ck, "--data", corpus, "--valid", valid, "-o", out3,
                        "--steps", "40", "--batch", "4", "--seq-len", "32", "--lr", "3e-3",
                        "--eval-every", "20", "--seed", "5", "-t", "1", NULL};
    if (run(log, rs)) {
        msg = slurp(log);
        fail_msg("wick pretrain --resume failed:\n%s", msg);
    }
    snprintf(p, sizeof p, "%s/training_log.jsonl", out3);
    int n3 = 0;
    double *l3 = losses(p, &n3);
    assert_int_equal(n3, 20);
    for (int i = 0; i < 20; i++)
        if (l3[i] != l1[20 + i]) fail_msg("resumed step %d: loss %.6f, uninterrupted %.6f",
                                          21 + i, l3[i], l1[20 + i]);
    char a[8192], b[8192];
    snprintf(a, sizeof a, "%s/model.safetensors", out);
    snprintf(b, sizeof b, "%s/model.safetensors", out3);
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    assert_non_null(fa);
    assert_non_null(fb);
    int ca, cb;
    long pos = 0;
    do {   /* every byte */
        ca = fgetc(fa);
        cb = fgetc(fb);
        if (ca != cb) fail_msg("resumed weights differ at byte %ld", pos);
        pos++;
    } while (ca != EOF);
    fclose(fa);
    fclose(fb);

    /* full fine-tuning of the result */
    snprintf(ft, sizeof ft, "%s/ft", d);
    const char *tf[] = {"train", "--full", "-m", out, "--data", valid, "--out", ft, "--steps",
                        "3", "--seq-len", "32", "-t", "1", NULL};
    if (run(log, tf)) {
        msg = slurp(log);
        fail_msg("wick train --full failed:\n%s", msg);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", ft);
    assert_int_equal(access(p, R_OK), 0);
    snprintf(p, sizeof p, "%s/trainer_state.safetensors", ft);
    assert_int_equal(access(p, R_OK), 0);
    const char *tfa[] = {"train", "--full", "--adapter", ft, "-m", out, "--data", valid, "--out",
                         ft, NULL};
    assert_int_equal(run(log, tfa), 2);

    /* Ctrl-C: a checkpoint of the last completed step, exit 130, and it loads */
    {
        char o4[4096], lp[8192], ckp[8192];
        snprintf(o4, sizeof o4, "%s/m4", d);
        const char *pi[] = {"pretrain", "--config", shape, "--tokenizer", tok, "--data", corpus,
                            "-o", o4, "--steps", "100000", "--batch", "4", "--seq-len", "32",
                            "-t", "1", NULL};
        pid_t pid = spawn(log, pi);
        snprintf(lp, sizeof lp, "%s/training_log.jsonl", o4);
        for (int i = 0; i < 600 && count_lines(lp) < 3; i++) usleep(50000);
        assert_true(count_lines(lp) >= 3);
        kill(pid, SIGINT);
        int status = 0;
        waitpid(pid, &status, 0);
        msg = slurp(log);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 130)
            fail_msg("interrupted pretrain: status %d\n%s", status, msg);
        const char *at = strstr(msg, "saved ");
        assert_non_null(at);
        assert_non_null(strstr(msg, "--resume"));
        sscanf(at + 6, "%8191s", ckp);
        free(msg);
        const char *g2[] = {"generate", "-m", ckp, "-p", "And", "-n", "4", "--temp", "0", NULL};
        assert_int_equal(run(log, g2), 0);
    }
    /* train refuses data with nothing to learn */
    {
        char jl[4096], o5[4096];
        snprintf(jl, sizeof jl, "%s/long.jsonl", d);
        snprintf(o5, sizeof o5, "%s/lora", d);
        f = fopen(jl, "wb");
        fputs("{\"prompt\": \"And God said unto Moses, I AM THAT I AM: and he said, Thus shalt "
              "thou say\", \"completion\": \" unto the children of Israel\"}\n", f);
        fclose(f);
        const char *tl2[] = {"train", "-m", out, "--data", jl, "--out", o5, "--seq-len", "4",
                             "--steps", "2", NULL};
        assert_int_equal(run(log, tl2), 1);
        msg = slurp(log);
        assert_non_null(strstr(msg, "--seq-len"));
        free(msg);
        assert_int_not_equal(access(o5, F_OK), 0);
    }
    /* a shape that cannot be built */
    snprintf(bad, sizeof bad, "%s/bad.json", d);
    f = fopen(bad, "wb");
    fputs("{\"hidden_size\": 30, \"intermediate_size\": 64, \"num_hidden_layers\": 2, "
          "\"num_attention_heads\": 4}", f);
    fclose(f);
    pt[2] = bad;
    pt[10] = out3;
    const char *pb[] = {"pretrain", "--config", bad, "--tokenizer", tok, "--data", corpus, "-o",
                        out3, "--steps", "2", "--force", NULL};
    assert_int_equal(run(log, pb), 1);
    msg = slurp(log);
    assert_non_null(strstr(msg, "num_attention_heads"));
    free(msg);
    free(l1);
    free(l2);
    free(l3);
    tu_rmdir_rf(d);
    free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pretrain_end_to_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
