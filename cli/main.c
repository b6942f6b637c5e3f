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
    {"embed", cmd_embed, "sentence embeddings (BERT/E5/MiniLM/BGE/MPNet/XLM-R), similarity, an index"},
    {"search", cmd_search, "nearest texts of an index written by `wick embed --index`"},
    {"merge", cmd_merge, "fold a LoRA adapter into a model and write a new model folder"},
    {"train", cmd_train, "LoRA fine-tuning on a text or JSONL file (AdamW, schedules, checkpoints)"},
    {"pretrain", cmd_pretrain, "train a fresh model from scratch on a text corpus (full parameters)"},
    {"tokenizer-train", cmd_tokenizer_train, "train a byte-level BPE tokenizer.json on text files"},
    {"pull", cmd_pull, "download a model from the Hugging Face Hub into its shared cache"},
    {"bench", cmd_bench, "benchmarks (bench generate|adapters|...)"},
};

/* `wick help flags`: the options that mean the same thing in every command, written once. */
static const char k_flags[] =
    "Options that mean the same in every command that takes them:\n"
    "  -m, --model PATH       a model: a Hugging Face folder (config.json, *.safetensors,\n"
    "                         tokenizer.json) or a .gguf file\n"
    "  -o, --out PATH         what the command writes (quantize and convert also take it as\n"
    "                         their second positional argument)\n"
    "  --force                replace an existing output; without it a writing command\n"
    "                         refuses one (the input itself is never replaced)\n"
    "  -t, --threads N        worker threads (default: all CPUs)\n"
    "  -T, --tokenizer PATH   a tokenizer.json, vocab.txt or a folder holding one (tokenize,\n"
    "                         detokenize, template, pretrain, create-random); -t PATH, the old\n"
    "                         spelling, still works in tokenize/detokenize/template with a note\n"
    "  -a, --adapter PATH[:scale]\n"
    "                         apply a LoRA adapter (PEFT folder or GGUF LoRA) to the model\n"
    "                         (generate, chat, logits, serve, merge)\n"
    "  --resume DIR           continue training from a checkpoint (train, pretrain); in train,\n"
    "                         --adapter DIR is its old spelling, accepted with a note\n"
    "  -q, --quiet            no progress and no summary line; warnings and errors stay\n"
    "  --json                 stdout is JSON only (messages stay on stderr)\n"
    "  --skip-special, --keep-special\n"
    "                         drop or keep special tokens in decoded text (generate and chat\n"
    "                         skip by default, detokenize keeps, as transformers' decode)\n"
    "  --raw                  take \\n, \\t, \\uXXXX ... in -p/--stop/--system literally\n"
    "  -h, --help             the command's usage, on stdout, exit 0\n"
    "\n"
    "Output: results on stdout; progress, notes, warnings, errors and the one-line summary of\n"
    "a writing command on stderr. Progress is drawn only when stderr is a terminal (plain\n"
    "lines otherwise, where a command has them). An option that does not apply is an error\n"
    "or a stated warning, never silently ignored.\n"
    "Exit codes: 0 success, 1 runtime error (a file, a model, a write), 2 usage error, 130\n"
    "interrupted (Ctrl-C; training saves a checkpoint of the last completed step first).\n";

static void usage(FILE *f) {
    fprintf(f, "usage: wick <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        fprintf(f, "  %-14s %s\n", k_commands[i].name, k_commands[i].help);
    fprintf(f, "\n`wick <command> --help` (or `wick help <command>`) shows a command's options;\n"
               "`wick help flags` the options shared by every command. wick %s\n", wick_version());
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "help") == 0 && argc > 2) {
        if (strcmp(argv[2], "flags") == 0) {
            fputs(k_flags, stdout);
            return 0;
        }
        for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
            if (strcmp(argv[2], k_commands[i].name) == 0) {
                char *hv[] = {argv[2], "--help", NULL};
                return k_commands[i].fn(2, hv);
            }
        fprintf(stderr, "wick help: no command or topic '%s' (try `wick help` or `wick help "
                        "flags`)\n", argv[2]);
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
