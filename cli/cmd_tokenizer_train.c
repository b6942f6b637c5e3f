/* cmd_tokenizer_train.c — `wick tokenizer-train`: a byte-level BPE tokenizer.json trained on
 * text files as Hugging Face tokenizers trains one (wick_tokenizer_train_bpe). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/fileio.h"
#include "cli/cli.h"

static int usage(FILE *f) {
    fprintf(f,
            "usage: wick tokenizer-train --vocab N --data FILE [--data FILE ...] -o tokenizer.json\n"
            "  --vocab N            vocabulary size incl. special tokens and 256 bytes (default 8192)\n"
            "  --data FILE          UTF-8 text; every line (with its ending) is one training sequence\n"
            "  -o, --out FILE       the tokenizer.json to write (refused if it exists, unless --force)\n"
            "  --special A,B,...    special tokens, ids 0.. (default <|endoftext|>,<|im_start|>,<|im_end|>)\n"
            "  --min-frequency N    never merge pairs seen fewer than N times (default 0)\n"
            "  --force              replace an existing output\n"
            "  -q, --quiet          no progress or summary line\n"
            "Byte-level BPE with Qwen2's pre-tokenizer (NFC, Qwen2's split regex, ByteLevel), merges\n"
            "by frequency with Hugging Face's tie-breaking: HF tokenizers trained on the same files\n"
            "gives the same vocabulary and merges.\n");
    return f == stdout ? 0 : 2;
}

typedef struct prog {
    bool tty;
    double t0, last;
} prog;

static void on_progress(void *user, int now, int target) {
    prog *p = user;
    const double t = cli_now_s();
    if (t - p->last < 0.2 && now < target) return;
    p->last = t;
    fprintf(stderr, "\rtokenizer-train: vocab %d/%d  %.1f s", now, target, t - p->t0);
    fflush(stderr);
}

int cmd_tokenizer_train(int argc, char **argv) {
    const char *out = NULL, *special = NULL;
    const char **files = calloc((size_t)argc, sizeof *files);
    int n_files = 0, rc = 0;
    long vocab = 8192, minf = 0;
    bool force = false, quiet = false;
    if (!files) return cli_fail("tokenizer-train", "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const bool has = i + 1 < argc;
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            free(files);
            return usage(stdout);
        } else if (!strcmp(a, "--data") && has) files[n_files++] = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && has) out = argv[++i];
        else if (!strcmp(a, "--special") && has) special = argv[++i];
        else if (!strcmp(a, "--vocab") && has)
            ok = cli_parse_int("tokenizer-train", a, argv[++i], 259, 1 << 24, &vocab);
        else if (!strcmp(a, "--min-frequency") && has)
            ok = cli_parse_int("tokenizer-train", a, argv[++i], 0, 1L << 30, &minf);
        else if (!strcmp(a, "--force")) force = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = true;
        else {
            fprintf(stderr, "wick tokenizer-train: unknown or incomplete option '%s'\n", a);
            free(files);
            return usage(stderr);
        }
        if (!ok) {
            free(files);
            return 2;
        }
    }
    if (!out || !n_files) {
        free(files);
        return usage(stderr);
    }
    if (!force && file_exists(out)) {
        fprintf(stderr, "wick tokenizer-train: %s exists (use --force to replace it)\n", out);
        free(files);
        return 1;
    }
    wick_bpe_train_params p = wick_bpe_train_params_default();
    p.vocab_size = (int)vocab;
    p.min_frequency = (int)minf;
    char *sp_copy = NULL;
    const char *sp[1024];
    if (special) {
        sp_copy = strdup(special);
        int n = 0;
        for (char *tok = strtok(sp_copy, ","); tok && n < 1024; tok = strtok(NULL, ","))
            sp[n++] = tok;
        p.special = sp;
        p.n_special = n;
    }
    prog pg = {isatty(2) && !quiet, cli_now_s(), 0};
    if (pg.tty) {
        p.progress = on_progress;
        p.progress_user = &pg;
    }
    wick_bpe_train_stats stats;
    if (wick_tokenizer_train_bpe(files, n_files, &p, out, &stats) != WICK_OK) {
        if (pg.tty) fputs("\r\033[K", stderr);
        rc = cli_fail("tokenizer-train", "training failed");
    } else {
        if (pg.tty) fputs("\r\033[K", stderr);
        char what[160];
        snprintf(what, sizeof what, "vocab %d, %d merges, from %lld bytes, %lld words (%lld "
                 "distinct)", stats.vocab_size, stats.merges, (long long)stats.bytes,
                 (long long)stats.word_occurrences, (long long)stats.words);
        cli_quiet = quiet;
        cli_wrote("tokenizer-train", out, what, cli_now_s() - pg.t0);
    }
    free(sp_copy);
    free(files);
    return rc;
}
