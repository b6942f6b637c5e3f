/* trainlog.h — what `wick train` and `wick pretrain` share around the step loop: the data
 * order (a seeded shuffle per epoch), the progress line, training_log.jsonl, loss.svg and the
 * end-of-run summary. The trainer itself is the library's (wick_trainer_*); nothing here
 * touches weights. */
#ifndef WICK_CLI_TRAINLOG_H
#define WICK_CLI_TRAINLOG_H
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* One splitmix64 step: the data order's generator (both commands, so a seed means the same). */
uint64_t cli_rng_next(uint64_t *state);
/* order[0..n) = a Fisher–Yates permutation of 0..n-1 drawn from rng. */
void cli_shuffle(int *order, int n, uint64_t *rng);

/* (step, value) points, grown as needed (a failed allocation drops the point). */
typedef struct cli_curve {
    int64_t *step;
    double *v;
    int n, cap;
} cli_curve;

/* The run's log and display. Fields are private to trainlog.c except where noted. */
typedef struct cli_trainlog {
    const char *cmd;       /* "train" / "pretrain", for messages */
    char *dir;             /* the output folder (owned copy) */
    FILE *log;             /* DIR/training_log.jsonl, appended to */
    bool tty, quiet;       /* stderr is a terminal; --quiet */
    bool line_open;        /* a progress line without its newline is on the terminal */
    int64_t start_step;    /* the step this run started from (0, or a resumed checkpoint's) */
    int64_t total;         /* the last step */
    long print_every;      /* a plain line every N steps when stderr is not a terminal */
    double t0, t_drawn;    /* start of the step loop; last redraw of the progress line */
    double eval_s;         /* seconds spent evaluating (not training throughput) */
    int64_t tokens;        /* tokens trained in this run */
    double ema;            /* smoothed loss (bias-corrected exponential average, 0.9) */
    double ema_raw, ema_w;
    double first, last, best;
    int64_t best_step, steps, last_step;
    double win_loss;       /* plain lines show the mean loss since the previous line */
    int win_n;
    double last_eval;      /* NaN until an evaluation ran */
    int64_t last_eval_step;
} cli_trainlog;

/* Opens DIR/training_log.jsonl: a fresh run (resume_step < 0) truncates it; a resumed one
 * keeps the lines of steps up to resume_step (a run that went further and was rolled back
 * loses its later lines) and appends. quiet silences the progress and step lines and the
 * summary (not warnings or errors). Returns 0, or 1 with a message naming the file printed. */
int cli_trainlog_open(cli_trainlog *l, const char *cmd, const char *dir, int64_t resume_step,
                      int64_t total, long print_every, bool quiet);
/* Records one optimizer step: a log line {"step", "loss", "lr", "grad_norm", "tokens",
 * "elapsed_s"} (tokens: cumulative, counted by the caller) and the display: on a terminal one
 * line redrawn in place (at most 10 times a second) with step/total, loss, smoothed loss,
 * tokens/s, lr, elapsed and ETA; otherwise a plain line every print_every steps and at the
 * last one. step_tokens: tokens this step computed (for tokens/s). */
void cli_trainlog_step(cli_trainlog *l, int64_t step, double loss, double lr, double grad_norm,
                       int64_t tokens_total, int64_t step_tokens);
/* Records a held-out evaluation: a log line {"step", "eval_loss", "eval_ppl"}; eval_s: the
 * seconds it took (left out of tokens/s). The caller prints its own message through
 * cli_trainlog_say. */
void cli_trainlog_eval(cli_trainlog *l, int64_t step, double eval_loss, double eval_s);
/* printf to `f` without garbling the progress line (it is cleared first and redrawn by the
 * next step). */
void cli_trainlog_say(cli_trainlog *l, FILE *f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Flushes the log to disk (before a checkpoint, so the log and the checkpoint agree). */
void cli_trainlog_flush(cli_trainlog *l);
/* After the last step: DIR/loss.svg drawn from the whole log (a resumed run's earlier steps
 * too): per-step loss, smoothed loss, held-out points, and dashed baselines at the log of the
 * perplexities base_uni / base_bi where they are finite (NaN: none). Best effort (a failed
 * write is a warning). */
void cli_trainlog_plot(cli_trainlog *l, double base_uni, double base_bi);
/* The end-of-run summary on stderr: steps, first/last/best loss of this run, the last eval
 * loss, tokens/s, time. Nothing with quiet. */
void cli_trainlog_summary(cli_trainlog *l);
/* Seconds since the step loop started. */
double cli_trainlog_elapsed(const cli_trainlog *l);
void cli_trainlog_close(cli_trainlog *l);

#endif
