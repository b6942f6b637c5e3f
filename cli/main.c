/* main.c — `wick <command> [options]`: dispatches to cli/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

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
    {"serve", cmd_serve, "OpenAI-compatible HTTP server (completions, chat, streaming)"},
    {"quantize", cmd_quantize, "quantize a model folder or GGUF to a GGUF (q8_0, q4_0, q4_k, q6_k, ...)"},
    {"convert", cmd_convert, "convert a model folder to GGUF, or a GGUF to a model folder"},
    {"create-random", cmd_create_random, "write a seeded random model folder of a real shape"},
    {"embed", cmd_embed, "sentence embeddings (BERT/E5/MiniLM/BGE) or a similarity matrix"},
    {"merge", cmd_merge, "fold a LoRA adapter into a model and write a new model folder"},
    {"train", cmd_train, "LoRA fine-tuning on a text or JSONL file (AdamW, schedules, checkpoints)"},
    {"pretrain", cmd_pretrain, "train a fresh model from scratch on a text corpus (full parameters)"},
    {"tokenizer-train", cmd_tokenizer_train, "train a byte-level BPE tokenizer.json on text files"},
    {"pull", cmd_pull, "download a model from the Hugging Face Hub into its shared cache"},
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
            return k_commands[i].fn(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "wick: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
