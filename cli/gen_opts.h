/* gen_opts.h — generation options shared by `wick generate` and `wick chat`: parsing the
 * sampling / stop flags into wick_gen_params, and printing tokens as JSON. */
#ifndef WICK_CLI_GEN_OPTS_H
#define WICK_CLI_GEN_OPTS_H
#include <stdio.h>

#include "cli/cli.h"

#define GEN_OPTS_MAX_STOPS 16

typedef struct gen_opts {
    wick_gen_params p;
    const char *stops[GEN_OPTS_MAX_STOPS];
    int32_t stop_ids[GEN_OPTS_MAX_STOPS];
    long threads, ctx;
    const char *kernels;
    const char *device;      /* --device: NULL (cpu), "cuda", "cuda:N" */
    const char *precision;   /* --precision fast|exact (NULL: the library's default) */
    const char *draft_model; /* --draft-model: speculative decoding with this model */
    wick_kv_type kv_type;
    bool raw;                /* --raw: no escape processing in -p / --stop / --system */
    char *owned[GEN_OPTS_MAX_STOPS];   /* unescaped --stop values */
} gen_opts;

void gen_opts_init(gen_opts *o);

/* Tries to consume argv[*i] (and its value) as a generation option. Returns 1 when consumed,
 * 0 when it is not a generation option, -1 on a bad value (message printed). */
int gen_opts_parse(gen_opts *o, const char *cmd, int argc, char **argv, int *i);

/* After parsing: the --stop values with their escapes processed (unless --raw). False when
 * out of memory (message printed). gen_opts_free releases them. */
bool gen_opts_finish(gen_opts *o, const char *cmd);
void gen_opts_free(gen_opts *o);

/* Help text for the shared options. */
void gen_opts_usage(FILE *f);

/* Prints one token as a JSON object line (id, text, logit, prob, logprob, top_logprobs), and
 * on the last token a second line with finish_reason and the counts/timings. */
void gen_print_json(FILE *f, const wick_token *t, const wick_tokenizer *tok, bool raw_tokens);

/* Prints the speed summary of a finished generation to stderr. */
void gen_print_speed(const wick_token *last);

#endif
