/* main.c — `wick <command> [options]`: dispatches to cli/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

/* Commands still being built are weak so the tool links while they land one by one;
 * a missing one reports itself instead of crashing. */
#pragma weak cmd_tokenize
#pragma weak cmd_detokenize
#pragma weak cmd_template
#pragma weak cmd_create_random
#pragma weak cmd_bench
#pragma weak cmd_info
#pragma weak cmd_logits
#pragma weak cmd_generate
#pragma weak cmd_merge

static const struct command {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} k_commands[] = {
    {"info", cmd_info, "show a model's architecture, sizes, dtypes and special ids"},
    {"logits", cmd_logits, "run a forward pass and write logits to a .safetensors file"},
    {"generate", cmd_generate, "generate text from a prompt (streams tokens)"},
    {"chat", cmd_chat, "interactive multi-turn chat with the model's chat template"},
    {"tokenize", cmd_tokenize, "text -> token ids (JSON array)"},
    {"detokenize", cmd_detokenize, "token ids -> text"},
    {"template", cmd_template, "render a chat template for a list of messages"},
    {"create-random", cmd_create_random, "write a seeded random model folder of a real shape"},
    {"merge", cmd_merge, "fold a LoRA adapter into a model and write a new model folder"},
    {"bench", cmd_bench, "benchmarks (bench generate|adapters|...)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: wick <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        fprintf(f, "  %-14s %s\n", k_commands[i].name, k_commands[i].help);
    fprintf(f, "\n`wick <command> --help` shows a command's options. wick %s\n", wick_version());
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("wick %s\n", wick_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++) {
        if (strcmp(argv[1], k_commands[i].name) == 0) {
            if (!k_commands[i].fn) {
                fprintf(stderr, "wick: command '%s' is not available in this build\n", argv[1]);
                return 2;
            }
            return k_commands[i].fn(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "wick: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
