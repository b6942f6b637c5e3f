/* trainlog.c — the data order, progress line, training_log.jsonl, loss.svg and summary shared
 * by `wick train` and `wick pretrain` (see trainlog.h). Display goes to stderr so stdout keeps
 * only what a command reports as its result; nothing here changes what is trained. */
#include "cli/trainlog.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fileio.h"
#include "cli/cli.h"

uint64_t cli_rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void cli_shuffle(int *order, int n, uint64_t *rng) {
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(cli_rng_next(rng) % (uint64_t)(i + 1)), x = order[i];
        order[i] = order[j];
        order[j] = x;
    }
}

static void curve_add(cli_curve *c, int64_t step, double v) {
    if (c->n == c->cap) {
        int nc = c->cap ? 2 * c->cap : 1024;
        int64_t *s = realloc(c->step, sizeof *s * (size_t)nc);
        if (s) c->step = s;
        double *x = s ? realloc(c->v, sizeof *x * (size_t)nc) : NULL;
        if (x) c->v = x;
        if (!s || !x) return;
        c->cap = nc;
    }
    c->step[c->n] = step;
    c->v[c->n++] = v;
}

static void curve_free(cli_curve *c) {
    free(c->step);
    free(c->v);
    *c = (cli_curve){0};
}

int cli_trainlog_open(cli_trainlog *l, const char *cmd, const char *dir, int64_t resume_step,
                      int64_t total, long print_every, bool quiet) {
    *l = (cli_trainlog){.cmd = cmd, .quiet = quiet, .total = total, .last_eval = NAN,
                        .start_step = resume_step > 0 ? resume_step : 0, .first = NAN,
                        .last = NAN, .best = NAN};
    l->tty = !quiet && isatty(2);
    l->print_every = print_every > 0 ? print_every : 1;
    l->dir = strdup(dir);
    char *path = path_join(dir, "training_log.jsonl");
    if (!l->dir || !path) {
        free(path);
        fprintf(stderr, "wick %s: out of memory\n", cmd);
        return 1;
    }
    if (resume_step >= 0) {   /* keep the lines of the steps this run continues from */
        char *old = NULL;
        size_t n = 0;
        if (file_read_all(path, &old, &n) == WICK_OK) {
            size_t w = 0;
            for (char *line = strtok(old, "\n"); line; line = strtok(NULL, "\n")) {
                long long st = -1;
                if (sscanf(line, "{\"step\": %lld", &st) != 1 || st > resume_step) continue;
                size_t k = strlen(line);
                memmove(old + w, line, k);   /* the kept text never overtakes the reader */
                old[w + k] = '\n';
                w += k + 1;
            }
            if (file_write_atomic(path, old, w) != WICK_OK)
                fprintf(stderr, "wick %s: warning: %s\n", cmd, wick_last_error());
        }
        free(old);
    }
    l->log = fopen(path, resume_step >= 0 ? "ab" : "wb");
    if (!l->log) {
        fprintf(stderr, "wick %s: cannot write %s: %s\n", cmd, path, strerror(errno));
        free(path);
        return 1;
    }
    free(path);
    l->t0 = cli_now_s();
    return 0;
}

double cli_trainlog_elapsed(const cli_trainlog *l) { return cli_now_s() - l->t0; }

/* "1:05:09", "4:07", "12.3 s" */
static void fmt_dur(char *b, size_t n, double s) {
    if (!isfinite(s) || s < 0) snprintf(b, n, "?");
    else if (s < 60) snprintf(b, n, "%.1f s", s);
    else if (s < 3600) snprintf(b, n, "%d:%02d", (int)s / 60, (int)s % 60);
    else snprintf(b, n, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
}

static void clear_line(cli_trainlog *l) {
    if (!l->line_open) return;
    fputs("\r\033[K", stderr);
    l->line_open = false;
}

void cli_trainlog_step(cli_trainlog *l, int64_t step, double loss, double lr, double grad_norm,
                       int64_t tokens_total, int64_t step_tokens) {
    const double el = cli_now_s() - l->t0;
    if (l->log)
        fprintf(l->log, "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6g, "
                        "\"tokens\": %lld, \"elapsed_s\": %.3f}\n", (long long)step, loss, lr,
                grad_norm, (long long)tokens_total, el);
    l->tokens += step_tokens;
    l->steps++;
    l->last_step = step;
    if (l->steps == 1) l->first = loss;
    l->last = loss;
    if (!(loss >= l->best)) l->best = loss, l->best_step = step;   /* NaN best: the first */
    l->ema_raw = 0.9 * l->ema_raw + 0.1 * loss;
    l->ema_w = 0.9 * l->ema_w + 0.1;
    l->ema = l->ema_raw / l->ema_w;
    l->win_loss += loss;
    l->win_n++;
    if (l->quiet) return;
    const double train_s = el - l->eval_s;
    const double tps = train_s > 0 ? (double)l->tokens / train_s : 0;
    const double eta = (double)(l->total - step) * (el / (double)l->steps);
    char e1[32], e2[32];
    fmt_dur(e1, sizeof e1, el);
    fmt_dur(e2, sizeof e2, eta);
    const bool last = step >= l->total;
    if (l->tty) {
        const double t = cli_now_s();
        if (!last && t - l->t_drawn < 0.1) return;
        l->t_drawn = t;
        fprintf(stderr, "\r\033[K%s: step %lld/%lld  loss %.4f  avg %.4f  %.0f tok/s  lr %.2e  "
                        "%s  ETA %s", l->cmd, (long long)step, (long long)l->total, loss, l->ema,
                tps, lr, e1, e2);
        l->line_open = true;
        if (last) clear_line(l);
        fflush(stderr);
        return;
    }
    if (step % l->print_every && !last) return;
    fprintf(stderr, "step %lld/%lld  loss %.4f  avg %.4f  lr %.2e  |g| %.3f  %.0f tok/s  %s  "
                    "eta %s\n", (long long)step, (long long)l->total, l->win_loss / l->win_n,
            l->ema, lr, grad_norm, tps, e1, e2);
    l->win_loss = 0;
    l->win_n = 0;
}

void cli_trainlog_eval(cli_trainlog *l, int64_t step, double eval_loss, double eval_s) {
    if (l->log)
        fprintf(l->log, "{\"step\": %lld, \"eval_loss\": %.6f, \"eval_ppl\": %.4f}\n",
                (long long)step, eval_loss, exp(eval_loss));
    l->last_eval = eval_loss;
    l->last_eval_step = step;
    l->eval_s += eval_s;
}

void cli_trainlog_say(cli_trainlog *l, FILE *f, const char *fmt, ...) {
    clear_line(l);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fflush(f);
}

void cli_trainlog_flush(cli_trainlog *l) {
    if (l->log) fflush(l->log);
}

/* The SVG text of the curves; NULL when out of memory. */
static char *svg_text(const cli_curve *tl, const cli_curve *el, double base_u, double base_b,
                      size_t *len) {
    const double W = 720, H = 400, x0 = 60, y0 = 20, pw = W - 80, ph = H - 60;
    double lo = 1e30, hi = -1e30;
    for (int i = 0; i < tl->n; i++) lo = fmin(lo, tl->v[i]), hi = fmax(hi, tl->v[i]);
    for (int i = 0; i < el->n; i++) lo = fmin(lo, el->v[i]), hi = fmax(hi, el->v[i]);
    if (base_b > 0 && isfinite(base_b)) lo = fmin(lo, log(base_b));
    lo = floor(lo * 2) / 2, hi = ceil(hi * 2) / 2;
    if (hi <= lo) hi = lo + 1;
    const double smax = (double)tl->step[tl->n - 1] > 0 ? (double)tl->step[tl->n - 1] : 1;
#define X(s) (x0 + pw * (double)(s) / smax)
#define Y(v) (y0 + ph * (1 - ((v) - lo) / (hi - lo)))
    size_t cap = 4096 + (size_t)tl->n * 64 + (size_t)el->n * 96;
    char *b = malloc(cap);
    if (!b) return NULL;
    size_t o = 0;
#define P(...) (o += (size_t)snprintf(b + o, o < cap ? cap - o : 0, __VA_ARGS__))
    P("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" "
      "fill=\"white\"/>\n", W, H);
    for (double v = lo; v <= hi + 1e-9; v += (hi - lo) / 8)
        P("<line x1=\"%g\" x2=\"%g\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/><text x=\"%g\" "
          "y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n", x0, x0 + pw, Y(v), Y(v), x0 - 6,
          Y(v) + 4, v);
    P("<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">step (0 … %lld)</text>\n", x0 + pw / 2,
      H - 12, (long long)tl->step[tl->n - 1]);
    P("<polyline fill=\"none\" stroke=\"#9ecae1\" stroke-width=\"1\" points=\"");
    for (int i = 0; i < tl->n && o < cap; i++) P("%.1f,%.1f ", X(tl->step[i]), Y(tl->v[i]));
    P("\"/>\n<polyline fill=\"none\" stroke=\"#08519c\" stroke-width=\"2\" points=\"");
    double ema = tl->v[0];
    for (int i = 0; i < tl->n && o < cap; i++) {
        ema = 0.95 * ema + 0.05 * tl->v[i];
        P("%.1f,%.1f ", X(tl->step[i]), Y(ema));
    }
    P("\"/>\n");
    for (int i = 0; i < el->n && o < cap; i++)
        P("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"#e6550d\"/>\n", X(el->step[i]),
          Y(el->v[i]));
    const double bl[2] = {base_u, base_b};
    const char *bn[2] = {"unigram", "bigram"};
    for (int k = 0; k < 2; k++)
        if (bl[k] > 0 && isfinite(bl[k]) && log(bl[k]) <= hi && log(bl[k]) >= lo)
            P("<line x1=\"%g\" x2=\"%g\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#777\" "
              "stroke-dasharray=\"5,4\"/><text x=\"%g\" y=\"%.1f\" text-anchor=\"end\" "
              "fill=\"#555\">%s baseline</text>\n", x0, x0 + pw, Y(log(bl[k])), Y(log(bl[k])),
              x0 + pw - 4, Y(log(bl[k])) - 4, bn[k]);
    P("<text x=\"%g\" y=\"14\">training loss (thin: per step, thick: smoothed), "
      "<tspan fill=\"#e6550d\">held-out loss</tspan>, nats/token</text>\n</svg>\n", x0);
#undef P
#undef X
#undef Y
    if (o >= cap) {
        free(b);
        return NULL;
    }
    *len = o;
    return b;
}

void cli_trainlog_plot(cli_trainlog *l, double base_u, double base_b) {
    cli_trainlog_flush(l);
    char *lp = path_join(l->dir, "training_log.jsonl"), *svg = path_join(l->dir, "loss.svg");
    char *lt = NULL, *b = NULL;
    size_t ll = 0, n = 0;
    cli_curve tl = {0}, el = {0};
    if (lp && file_read_all(lp, &lt, &ll) == WICK_OK) {
        for (char *line = strtok(lt, "\n"); line; line = strtok(NULL, "\n")) {
            long long st = -1;
            const char *v;
            if (sscanf(line, "{\"step\": %lld", &st) != 1) continue;
            if ((v = strstr(line, "\"loss\": "))) curve_add(&tl, st, atof(v + 8));
            else if ((v = strstr(line, "\"eval_loss\": "))) curve_add(&el, st, atof(v + 13));
        }
    }
    if (svg && tl.n && (b = svg_text(&tl, &el, base_u, base_b, &n)) &&
        file_write_atomic(svg, b, n) != WICK_OK)
        fprintf(stderr, "wick %s: warning: loss.svg: %s\n", l->cmd, wick_last_error());
    free(b);
    free(lt);
    free(lp);
    free(svg);
    curve_free(&tl);
    curve_free(&el);
}

void cli_trainlog_summary(cli_trainlog *l) {
    clear_line(l);
    if (l->quiet) return;
    const double el = cli_now_s() - l->t0, train_s = el - l->eval_s;
    char d[32], ev[96] = "";
    fmt_dur(d, sizeof d, el);
    if (isfinite(l->last_eval))
        snprintf(ev, sizeof ev, "; eval loss %.4f (step %lld)", l->last_eval,
                 (long long)l->last_eval_step);
    if (!l->steps) {
        fprintf(stderr, "%s: no step ran (already at step %lld of %lld)%s\n", l->cmd,
                (long long)l->start_step, (long long)l->total, ev);
        return;
    }
    fprintf(stderr, "%s: %lld steps (%lld → %lld) in %s: loss first %.4f, last %.4f (avg %.4f), "
                    "best %.4f at step %lld%s; %.0f tok/s\n", l->cmd, (long long)l->steps,
            (long long)l->start_step, (long long)l->last_step, d, l->first, l->last,
            l->ema, l->best, (long long)l->best_step, ev,
            train_s > 0 ? (double)l->tokens / train_s : 0.0);
}

void cli_trainlog_close(cli_trainlog *l) {
    clear_line(l);
    if (l->log) fclose(l->log);
    l->log = NULL;
    free(l->dir);
    l->dir = NULL;
}
