/* cli.h — the `wick` command-line tool: one file per command (cli/cmd_<name>.c), each
 * exporting `int cmd_<name>(int argc, char **argv)` where argv[0] is the command name.
 * Commands print results to stdout, errors to stderr, and return the process exit code
 * (0 ok, 1 runtime error, 2 usage error). Shared option parsing helpers live in cli/util.c. */
#ifndef WICK_CLI_H
#define WICK_CLI_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wick.h"

int cmd_info(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_create_random(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_pretrain(int argc, char **argv);
int cmd_tokenizer_train(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int bench_stream(int argc, char **argv); /* cli/bench_stream.c */

/* Prints "wick <cmd>: <msg>: <wick_last_error()>" to stderr and returns 1. */
int cli_fail(const char *cmd, const char *what);
/* Parses "1,2,3" into a malloc'd array; returns count or -1 (message printed). */
int cli_parse_ids(const char *cmd, const char *s, int32_t **out);
/* Parses an int option value, printing a usage error on failure. */
bool cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
bool cli_parse_float(const char *cmd, const char *opt, const char *s, double *out);

/* Seconds on the monotonic clock. */
double cli_now_s(void);
/* Summary of n samples (n <= 128): mean, sample standard deviation, median, range. */
typedef struct cli_stats { double mean, sd, median, min, max; } cli_stats;
cli_stats cli_stats_of(const double *x, int n);
/* "812 B", "3.4 KiB", "1.2 GiB" into b. */
void cli_fmt_bytes(char *b, size_t n, double bytes);
/* Bytes of a file, or of the regular files directly in a folder (a training output's
 * checkpoint-N/ subfolders are not the result); -1 when `path` cannot be read. */
long long cli_path_bytes(const char *path);
/* The summary line of a writing command, on stderr: "wick CMD: wrote PATH (SIZE, WHAT) in
 * T s". what may be NULL. Silent when cli_quiet. */
void cli_wrote(const char *cmd, const char *path, const char *what, double seconds);

/* A transient status line on stderr ("loading IN …", "writing OUT …"), drawn only when
 * stderr is a terminal and cli_quiet is false; replaced by the next status, removed by
 * cli_status_clear (and before cli_wrote prints). */
extern bool cli_quiet;
/* "loading PATH (SIZE) …" on the status line (SIZE: the file, or the folder's files). */
void cli_status_loading(const char *cmd, const char *path);
void cli_status(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_status_clear(void);

/* Commands that take a tokenizer path (tokenize, detokenize, template) spell it -T/--tokenizer;
 * -t means --threads in every command. For `-t VALUE` or `--threads VALUE` (opt) there:
 * returns 1 when VALUE is the old spelling of -T VALUE (-t and not a thread count; a
 * deprecation note is printed), 0 for a thread count (noted: the command runs on one thread),
 * -1 for a usage error (printed). */
int cli_tokenizer_dash_t(const char *cmd, const char *opt, const char *value);

/* --ctx N above the model's trained maximum (max_position_embeddings) is allowed but stated:
 * a warning naming both numbers. Nothing is printed otherwise. */
void cli_warn_ctx(const char *cmd, const wick_model *m, long ctx);

/* How a token is shown in --json top_logprobs and logits' top-5: its decoded text (Ġ and Ċ
 * of byte-level vocabularies become " " and "\n"; bytes that are not complete UTF-8 on their
 * own — half of a character split over tokens — become U+FFFD, as transformers' decode
 * shows them), or with raw (--raw-tokens) the vocabulary string as stored. Written into buf
 * (n bytes); NULL when there is no tokenizer or the id is out of range. */
const char *cli_token_text(const wick_tokenizer *tok, int32_t id, bool raw, char *buf, size_t n);

/* Text given to a command must be UTF-8 (as HF's tokenizers require: Python strings cannot
 * hold anything else). Returns true when s[0..n) is valid; otherwise prints "wick CMD: WHAT
 * is not valid UTF-8 at byte OFFSET (line L): 0xNN" (the line only for multi-line text) and
 * returns false. wick refuses rather
 * than replacing with U+FFFD, so ids never silently depend on a replacement. */
bool cli_check_utf8(const char *cmd, const char *what, const char *s, size_t n);

/* "DIR[:scale]" -> malloc'd DIR and scale (1 when absent). false on a usage error (printed). */
bool cli_parse_adapter(const char *cmd, const char *spec, char **dir, float *scale);
/* Loads the adapter spec into `m` (registered as "cli") and selects it on `s`. Returns an exit
 * code (0 ok). */
int cli_use_adapter(const char *cmd, wick_model *m, wick_session *s, const char *spec);

/* The escapes of -p, --stop and --system values (unless --raw): \n \t \r \\ \" \' and
 * \uXXXX (a surrogate pair is one character), as UTF-8; anything else after a backslash is
 * kept as typed. malloc'd; NULL when out of memory. */
char *cli_unescape(const char *s);

/* Training runs (train, pretrain): after cli_train_sigint_install, the first Ctrl-C sets a flag
 * the step loop reads with cli_train_interrupted (it saves a checkpoint of the last completed
 * step, says where, and exits 130); a second Ctrl-C exits at once. */
void cli_train_sigint_install(void);
bool cli_train_interrupted(void);
/* Removes all but the newest `keep` OUT/checkpoint-STEP folders (keep <= 0: none removed). */
void cli_prune_checkpoints(const char *out, long keep);

#endif
