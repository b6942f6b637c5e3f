/* cmd_create_random.c — `wick create-random`: a seeded random model folder of a real shape. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"
#include "cli/cli.h"
#include "model/random.h"

static int usage(FILE *f) {
    fprintf(f, "usage: wick create-random --like SHAPE -o DIR [--seed S] [--dtype f32|bf16|f16]\n"
               "                          [--tokenizer PATH] [--force] [-q]\n"
               "SHAPE: qwen2.5-0.5b, qwen2.5-1.5b, llama-3.2-1b, tinyllama, tiny, qwen3-0.6b, tiny-qwen3,\n"
               "qwen3-moe-64x8, qwen3-moe-8x8 (Qwen3-MoE, 64 or 8 experts, 8 chosen).\n"
               "Writes config.json, generation_config.json, model.safetensors (and copies\n"
               "tokenizer.json + tokenizer_config.json from PATH). An existing DIR is refused\n"
               "unless --force; the folder is built beside DIR and moved into place whole, so a\n"
               "failure leaves no partial DIR. Ends with one line on stderr: what was written,\n"
               "its size and the time taken (-q, --quiet: none).\n");
    return f == stdout ? 0 : 2;
}

int cmd_create_random(int argc, char **argv) {
    const char *like = NULL, *out = NULL, *tok = NULL, *dts = "f32";
    long seed = 1;
    bool force = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout);
        else if (!strcmp(a, "--like") && has) like = argv[++i];
        else if ((!strcmp(a, "--out") || !strcmp(a, "-o")) && has) out = argv[++i];
        else if ((!strcmp(a, "--tokenizer") || !strcmp(a, "-T")) && has) tok = argv[++i];
        else if (!strcmp(a, "--dtype") && has) dts = argv[++i];
        else if (!strcmp(a, "--force")) force = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) cli_quiet = true;
        else if (!strcmp(a, "--seed") && has) {
            if (!cli_parse_int("create-random", a, argv[++i], 0, 0x7fffffffL, &seed)) return 2;
        } else {
            fprintf(stderr, "wick create-random: unknown or incomplete option '%s'\n", a);
            return usage(stderr);
        }
    }
    if (!like || !out) return usage(stderr);
    dtype dt;
    if (!strcmp(dts, "f32")) dt = DT_F32;
    else if (!strcmp(dts, "bf16")) dt = DT_BF16;
    else if (!strcmp(dts, "f16")) dt = DT_F16;
    else {
        fprintf(stderr, "wick create-random: --dtype must be f32, bf16 or f16, got '%s'\n", dts);
        return 2;
    }
    if (!force && (file_exists(out) || dir_exists(out))) {
        fprintf(stderr, "wick create-random: %s exists (use --force to replace it)\n", out);
        return 1;
    }
    const double t0 = cli_now_s();
    cli_status("create-random", "writing %s …", out);
    if (random_model_write(like, out, (uint64_t)seed, dt, tok) != WICK_OK)
        return cli_fail("create-random", "cannot write the model");
    char what[128];
    snprintf(what, sizeof what, "%s shape, %s, seed %ld%s", like, dts, seed,
             tok ? ", tokenizer" : ", no tokenizer");
    cli_wrote("create-random", out, what, cli_now_s() - t0);
    return 0;
}
