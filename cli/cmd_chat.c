/* cmd_chat.c — `wick chat`: an interactive multi-turn chat using the model's chat template.
 * Each turn renders the whole conversation with add_generation_prompt and streams the reply.
 * Ctrl-C stops the current reply (the conversation keeps what was said so far) and never the
 * program; Ctrl-D or /exit quits. Commands: /help, /reset, /system TEXT, /save FILE, /load FILE
 * (the conversation as a JSON array of {"role", "content"}, the format `wick template
 * --messages` reads), /params [NAME=VALUE ...] (sampling between replies), /adapter NAME|none
 * [scale], /adapters, /exit. Each reply ends with its token count and speed on stderr. Adapters given with --adapter [NAME=]DIR[:scale] are all loaded at start
 * (sharing the base weights); the first one is active, and /adapter switches between them
 * mid-conversation without reloading anything.
 * A model whose tokenizer has no chat template (a base model, such as the demo model trained
 * on the King James Bible) gets completion mode instead: the conversation is one text, each
 * line typed is appended to it on a new line and the model continues the whole text (the
 * system prompt, when given, is its first line). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <editline/readline.h>
#include <unistd.h>

#include "base/fileio.h"
#include "cli/gen_opts.h"

/* ---- input: libedit on a terminal (arrows, history, Ctrl-R search), plain lines otherwise ----
 * A line ending in a backslash continues on the next one (multi-line input). History is kept
 * in $WICK_HISTORY, else ~/.wick_history (last 1000 entries). */
static bool g_edit;
static char *g_hist_path;

static void input_open(void) {
    const char *term = getenv("TERM");
    g_edit = isatty(0) && isatty(1) && !(term && !strcmp(term, "dumb")) && !getenv("WICK_NO_EDIT");
    if (!g_edit) return;
    const char *h = getenv("WICK_HISTORY"), *home = getenv("HOME");
    if (h && *h) g_hist_path = strdup(h);
    else if (home && *home) g_hist_path = path_join(home, ".wick_history");
    using_history();
    stifle_history(1000);
    if (g_hist_path) read_history(g_hist_path);
}

static void input_close(void) {
    if (g_edit && g_hist_path) write_history(g_hist_path);
    free(g_hist_path);
    g_hist_path = NULL;
}

/* One logical line (continuations joined with '\n') into line; false at end of input.
 * *interrupted: Ctrl-C at the prompt (the line is dropped). */
static bool input_read(char *line, size_t cap, volatile sig_atomic_t *interrupted, bool *eintr) {
    size_t len = 0;
    *eintr = false;
    line[0] = 0;
    for (bool first = true;; first = false) {
        char buf[16384];
        const char *got = NULL;
        char *owned = NULL;
        if (g_edit) {
            owned = readline(first ? "> " : "... ");
            got = owned;
        } else {
            if (!first) fputs("... ", stdout), fflush(stdout);
            got = fgets(buf, sizeof buf, stdin);
        }
        if (!got) {
            if (*interrupted || errno == EINTR) {
                *eintr = true;
                clearerr(stdin);
                return true;
            }
            return len > 0; /* end of input; a pending continuation is taken as it is */
        }
        size_t n = strlen(got);
        while (n && (got[n - 1] == '\n' || got[n - 1] == '\r')) n--;
        const bool more = n && got[n - 1] == '\\';
        if (more) n--;
        if (len + n + 2 > cap) n = cap - len - 2;
        memcpy(line + len, got, n);
        len += n;
        line[len] = 0;
        free(owned);
        if (!more) break;
        line[len++] = '\n';
        line[len] = 0;
    }
    if (g_edit && len) add_history(line);
    return true;
}

static wick_gen *volatile g_active;
static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig) {
    (void)sig;
    wick_gen *g = g_active;
    if (g) wick_gen_cancel(g);
    g_interrupted = 1;
}

static int usage(FILE *f) {
    fprintf(f, "usage: wick chat -m MODEL_DIR [--system TEXT] [--adapter [NAME=]DIR[:scale]]...\n"
               "                 [generation options]\n"
               "Interactive chat with the model's chat template. Ctrl-C stops the reply,\n"
               "Ctrl-D or /exit quits, /reset forgets the conversation, /system TEXT sets the\n"
               "system prompt, /save FILE and /load FILE keep the conversation (a JSON array of\n"
               "{\"role\", \"content\"}), /params NAME=VALUE ... changes sampling (temp, top_k,\n"
               "top_p, min_p, ...), /adapter NAME [scale] switches LoRA adapter (/adapter none:\n"
               "base model), /adapters lists them, /help lists the commands.\n"
               "On a terminal the input line is edited with libedit: arrows, Ctrl-A/E, history\n"
               "(up/down, Ctrl-R to search; kept in $WICK_HISTORY or ~/.wick_history); a line\n"
               "ending in a backslash continues on the next (multi-line input).\n"
               "In chat a reply is at most 1024 tokens unless -n says otherwise (the option list\n"
               "below gives generate's default, 256).\n\n");
    gen_opts_usage(f);
    return f == stdout ? 0 : 2;
}

typedef struct convo {
    wick_chat_message *msgs;
    char **owned;      /* strdup'ed contents, parallel to msgs */
    size_t n, cap;
} convo;

/* Appends sep (when text is not empty) and s to the malloc'd text *t of *n bytes. */
static bool text_append(char **t, size_t *n, const char *sep, const char *s) {
    const size_t ls = strlen(s), lsep = *n && sep ? strlen(sep) : 0;
    char *nt = realloc(*t, *n + lsep + ls + 1);
    if (!nt) return false;
    memcpy(nt + *n, sep ? sep : "", lsep);
    memcpy(nt + *n + lsep, s, ls + 1);
    *t = nt;
    *n += lsep + ls;
    return true;
}

static bool convo_add(convo *c, const char *role, const char *content) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        wick_chat_message *m = realloc(c->msgs, cap * sizeof *m);
        if (!m) return false;
        c->msgs = m;
        char **o = realloc(c->owned, cap * sizeof *o);
        if (!o) return false;
        c->owned = o;
        c->cap = cap;
    }
    char *dup = strdup(content);
    if (!dup) return false;
    c->owned[c->n] = dup;
    c->msgs[c->n] = (wick_chat_message){role, dup};
    c->n++;
    return true;
}

static void convo_clear(convo *c, size_t keep) {
    while (c->n > keep) free(c->owned[--c->n]);
}

/* ---- /params: the sampling settings that may change between replies ---- */

static const struct param {
    const char *name;
    char kind;      /* 'f' float, 'i' int, 'u' uint64 */
    size_t off;
    double lo, hi;  /* accepted range */
} k_params[] = {
    {"temp", 'f', offsetof(wick_gen_params, temperature), 0, 100},
    {"top_k", 'i', offsetof(wick_gen_params, top_k), 0, 1 << 24},
    {"top_p", 'f', offsetof(wick_gen_params, top_p), 1e-9, 1},
    {"min_p", 'f', offsetof(wick_gen_params, min_p), 0, 1},
    {"typical_p", 'f', offsetof(wick_gen_params, typical_p), 1e-9, 1},
    {"repeat_penalty", 'f', offsetof(wick_gen_params, repetition_penalty), 1e-9, 100},
    {"repeat_last_n", 'i', offsetof(wick_gen_params, repetition_last_n), 0, 1 << 24},
    {"frequency_penalty", 'f', offsetof(wick_gen_params, frequency_penalty), -2, 2},
    {"presence_penalty", 'f', offsetof(wick_gen_params, presence_penalty), -2, 2},
    {"max_tokens", 'i', offsetof(wick_gen_params, max_tokens), 0, 1 << 24},
    {"seed", 'u', offsetof(wick_gen_params, seed), 0, 9007199254740992.0},
};
#define N_PARAMS (sizeof k_params / sizeof k_params[0])

static void params_show(const wick_gen_params *p) {
    fprintf(stdout, "(");
    for (size_t i = 0; i < N_PARAMS; i++) {
        const char *at = (const char *)p + k_params[i].off;
        fprintf(stdout, i ? ", " : "");
        if (k_params[i].kind == 'f') fprintf(stdout, "%s=%g", k_params[i].name, *(const float *)at);
        else if (k_params[i].kind == 'i') fprintf(stdout, "%s=%d", k_params[i].name, *(const int *)at);
        else fprintf(stdout, "%s=%llu", k_params[i].name, (unsigned long long)*(const uint64_t *)at);
    }
    fprintf(stdout, ")");
}

/* "temp=0.7 top_p=0.9": every pair checked before any is applied. False (message printed)
 * on an unknown name, a value that is not a number or one out of range. */
static bool params_set(wick_gen_params *p, const char *args) {
    wick_gen_params np = *p;
    char *buf = strdup(args);
    bool ok = buf != NULL;
    for (char *kv = ok ? strtok(buf, " \t") : NULL; kv && ok; kv = strtok(NULL, " \t")) {
        char *eq = strchr(kv, '=');
        size_t i = 0;
        if (eq) *eq = 0;
        while (i < N_PARAMS && strcmp(k_params[i].name, kv)) i++;
        if (!eq || i == N_PARAMS) {
            fprintf(stdout, "(usage: /params NAME=VALUE ...; names:");
            for (size_t j = 0; j < N_PARAMS; j++) fprintf(stdout, " %s", k_params[j].name);
            fprintf(stdout, ")");
            ok = false;
            break;
        }
        char *end;
        const double v = strtod(eq + 1, &end);
        if (end == eq + 1 || *end || !(v >= k_params[i].lo && v <= k_params[i].hi) ||
            (k_params[i].kind != 'f' && v != (double)(long long)v)) {
            fprintf(stdout, "(%s expects %s in [%g, %g], got '%s')", kv,
                    k_params[i].kind == 'f' ? "a number" : "an integer", k_params[i].lo,
                    k_params[i].hi, eq + 1);
            ok = false;
            break;
        }
        char *at = (char *)&np + k_params[i].off;
        if (k_params[i].kind == 'f') *(float *)at = (float)v;
        else if (k_params[i].kind == 'i') *(int *)at = (int)v;
        else *(uint64_t *)at = (uint64_t)v;
    }
    free(buf);
    if (ok) *p = np;
    return ok;
}

/* ---- /save and /load ---- */

/* Writes the conversation (completion mode: one {"role": "text"} message) as a JSON array,
 * atomically. */
static void convo_save(const convo *c, const char *text, bool completion, const char *path) {
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < (completion ? 1 : c->n); i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "role", completion ? "text" : c->msgs[i].role);
        cJSON_AddStringToObject(o, "content", completion ? (text ? text : "") : c->msgs[i].content);
        cJSON_AddItemToArray(arr, o);
    }
    char *js = arr ? cJSON_Print(arr) : NULL;
    cJSON_Delete(arr);
    if (!js) fprintf(stdout, "(out of memory)");
    else if (file_write_atomic(path, js, strlen(js)) != WICK_OK)
        fprintf(stdout, "(cannot save: %s)", wick_last_error());
    else fprintf(stdout, "(saved %s: %zu messages)", path, completion ? (size_t)1 : c->n);
    free(js);
}

/* Reads a conversation saved by /save (or any JSON array of {"role", "content"} with roles
 * system, user, assistant, tool; "text" too in completion mode). Replaces *c (chat) or *text (completion: the contents joined
 * by newlines) only when the whole file is valid. */
static void convo_load(convo *c, size_t *base, char **text, size_t *text_len, bool completion,
                       const char *path) {
    static const char *const roles[] = {"system", "user", "assistant", "tool", "text"};
    char *buf = NULL;
    size_t n = 0;
    if (file_read_all(path, &buf, &n) != WICK_OK) {
        fprintf(stdout, "(cannot load: %s)", wick_last_error());
        return;
    }
    cJSON *arr = cJSON_ParseWithLength(buf, n);
    free(buf);
    int i = 0, bad = -1;
    const char *role[4096];
    const cJSON *e, *list = cJSON_IsArray(arr) ? arr : NULL;
    cJSON_ArrayForEach(e, list) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(e, "role");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "content");
        size_t k = 0;
        while (cJSON_IsString(r) && k < 5 && strcmp(roles[k], r->valuestring)) k++;
        if (i == 4096 || !cJSON_IsString(t) || !cJSON_IsString(r) || k == 5 ||
            (k == 4 && !completion)) {
            bad = i;
            break;
        }
        role[i++] = roles[k];
    }
    if (!cJSON_IsArray(arr) || bad >= 0) {
        if (!cJSON_IsArray(arr)) fprintf(stdout, "(%s: not a JSON array of messages)", path);
        else fprintf(stdout, "(%s: message %d needs a string \"content\" and a \"role\" of system, "
                             "user, assistant or tool)", path, bad);
        cJSON_Delete(arr);
        return;
    }
    convo_clear(c, 0);
    *text_len = 0;
    if (*text) (*text)[0] = 0;
    i = 0;
    cJSON_ArrayForEach(e, arr) {
        const char *t = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
        if (completion) text_append(text, text_len, "\n", t);
        else convo_add(c, role[i], t);
        i++;
    }
    *base = !completion && c->n && !strcmp(c->msgs[0].role, "system");
    fprintf(stdout, "(loaded %s: %d messages)", path, i);
    cJSON_Delete(arr);
}

#define MAX_ADAPTERS 16

/* "[NAME=]DIR[:scale]": loads DIR under NAME (default: the folder's base name). */
static int load_adapter_spec(wick_model *m, const char *spec, char *name_out, size_t cap,
                             float *scale) {
    const char *eq = strchr(spec, '=');
    char name[256] = "";
    if (eq && (size_t)(eq - spec) < sizeof name) {
        memcpy(name, spec, (size_t)(eq - spec));
        name[eq - spec] = '\0';
        spec = eq + 1;
    }
    char *dir;
    if (!cli_parse_adapter("chat", spec, &dir, scale)) return 2;
    int rc = 0;
    if (wick_adapter_load(m, dir, name[0] ? name : NULL) != WICK_OK) {
        rc = cli_fail("chat", "cannot load the adapter");
    } else if (!name[0]) {
        const char *base = strrchr(dir, '/');
        size_t len = strlen(dir);
        while (len > 1 && dir[len - 1] == '/') dir[--len] = '\0'; /* "dir/" -> "dir" */
        base = strrchr(dir, '/');
        snprintf(name, sizeof name, "%s", base ? base + 1 : dir);
    }
    snprintf(name_out, cap, "%s", name);
    free(dir);
    return rc;
}

static int chat_run(gen_opts *op, const char *model, const char *system,
                    const char *const *adapter_specs, int n_adapters);

int cmd_chat(int argc, char **argv) {
    const char *model = NULL, *system = NULL;
    const char *adapter_specs[MAX_ADAPTERS];
    int n_adapters = 0;
    gen_opts o;
    gen_opts_init(&o);
    o.p.max_tokens = 1024;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        int r = gen_opts_parse(&o, "chat", argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout);
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model = argv[++i];
        else if (!strcmp(a, "--system") && has) system = argv[++i];
        else if ((!strcmp(a, "--adapter") || !strcmp(a, "-a")) && has) {
            if (n_adapters == MAX_ADAPTERS) {
                fprintf(stderr, "wick chat: at most %d adapters\n", MAX_ADAPTERS);
                return 2;
            }
            adapter_specs[n_adapters++] = argv[++i];
        } else {
            fprintf(stderr, "wick chat: unknown or incomplete option '%s'\n", a);
            return usage(stderr);
        }
    }
    if (!model) return usage(stderr);
    int rc = 1;
    char *system_u = NULL;   /* --system with its escapes processed (unless --raw) */
    if (gen_opts_finish(&o, "chat")) {
        if (system && !o.raw && !(system_u = cli_unescape(system)))
            rc = cli_fail("chat", "out of memory");
        else rc = chat_run(&o, model, system_u ? system_u : system, adapter_specs, n_adapters);
    }
    free(system_u);
    gen_opts_free(&o);
    return rc;
}

static int chat_run(gen_opts *op, const char *model, const char *system,
                    const char *const *adapter_specs, int n_adapters) {
    gen_opts o = *op;   /* its pointers stay owned by the caller */
    if (o.draft_model) {
        fprintf(stderr, "wick chat: --draft-model is for wick generate in this version (chat takes "
                        "--spec-ngram)\n");
        return 2;
    }
    wick_model_params mp = wick_model_params_default();
    mp.kernels = o.kernels;
    mp.device = o.device;
    mp.precision = o.precision;
    wick_model *m = NULL;
    cli_status_loading("chat", model);
    if (wick_model_load(model, &mp, &m) != WICK_OK) return cli_fail("chat", "cannot load model");
    cli_status_clear();
    const wick_tokenizer *tok = wick_model_tokenizer(m);
    if (!tok) {
        fprintf(stderr, "wick chat: %s has no tokenizer\n", model);
        wick_model_free(m);
        return 1;
    }
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = (int)o.threads;
    sp.n_ctx = (int)o.ctx;
    cli_warn_ctx("chat", m, o.ctx);
    sp.kv_type = o.kv_type;
    wick_session *s = NULL;
    if (wick_session_create(m, &sp, &s) != WICK_OK) {
        wick_model_free(m);
        return cli_fail("chat", "cannot create session");
    }
    for (int i = 0; i < n_adapters; i++) {
        char name[256];
        float scale;
        int arc = load_adapter_spec(m, adapter_specs[i], name, sizeof name, &scale);
        if (arc == 0 && i == 0 && wick_session_set_adapter(s, name, scale) != WICK_OK)
            arc = cli_fail("chat", "cannot use the adapter");
        if (arc) {
            wick_session_free(s);
            wick_model_free(m);
            return arc;
        }
        fprintf(stderr, "adapter '%s' loaded%s\n", name, i == 0 ? " (active)" : "");
    }
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint; /* no SA_RESTART: a Ctrl-C at the prompt interrupts fgets */
    sigaction(SIGINT, &sa, &old);
    convo c = {0};
    size_t base = 0;
    if (system) {
        convo_add(&c, "system", system);
        base = 1;
    }
    char line[16384];
    int rc = 0;
    /* a tokenizer without a chat template: completion mode (see the header comment) */
    char *text = NULL, *probe = NULL;
    size_t text_len = 0;
    const wick_chat_message hello = {"user", "hi"};
    const bool completion = wick_chat_render(tok, &hello, 1, true, NULL, &probe) ==
                            WICK_ERR_NOT_FOUND;
    wick_free(probe);
    if (completion && system && !text_append(&text, &text_len, NULL, system)) return 1;
    fprintf(stderr, "wick chat — %s. Ctrl-C stops a reply, Ctrl-D quits.\n", model);
    if (completion)
        fprintf(stderr, "(no chat template: completion mode — each line you type is added to "
                        "the text so far and the model continues it; /reset starts over)\n");
    input_open();
    for (;;) {
        fprintf(stdout, g_edit ? "\n" : "\n> ");
        fflush(stdout);
        g_interrupted = 0;
        bool eintr = false;
        if (!input_read(line, sizeof line, &g_interrupted, &eintr)) break;
        if (eintr) {
            fprintf(stdout, "\n(Ctrl-D or /exit quits)");
            continue;
        }
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (!len) continue;
        if (!cli_check_utf8("chat", "the input", line, len)) continue;   /* retype it */
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            convo_clear(&c, base);
            text_len = 0;
            if (completion && system) text_append(&text, &text_len, NULL, system);
            fprintf(stdout, "(conversation cleared)");
            continue;
        }
        if (!strcmp(line, "/help")) {
            fprintf(stdout, "(/reset forgets the conversation; /system TEXT sets the system "
                            "prompt; /save FILE, /load FILE keep the conversation as JSON; /params "
                            "shows sampling, /params NAME=VALUE ... changes it; /adapter NAME|none "
                            "[scale], /adapters; /exit or Ctrl-D quits; Ctrl-C stops a reply)");
            continue;
        }
        if (!strncmp(line, "/save ", 6)) {
            convo_save(&c, text, completion, line + 6);
            continue;
        }
        if (!strncmp(line, "/load ", 6)) {
            convo_load(&c, &base, &text, &text_len, completion, line + 6);
            continue;
        }
        if (!strcmp(line, "/params") || !strncmp(line, "/params ", 8)) {
            if (!line[7] || params_set(&o.p, line + 8)) params_show(&o.p);
            continue;
        }
        if (!strncmp(line, "/system ", 8)) {
            convo_clear(&c, 0);
            convo_add(&c, "system", line + 8);
            base = 1;
            text_len = 0;
            if (completion) text_append(&text, &text_len, NULL, line + 8);
            fprintf(stdout, "(system prompt set; conversation cleared)");
            continue;
        }
        if (!strcmp(line, "/adapters")) {
            const char *names[64];
            int n = wick_adapters_list(m, names, 64);
            const char *cur = wick_session_adapter(s);
            fprintf(stdout, "(adapters:");
            for (int i = 0; i < n && i < 64; i++)
                fprintf(stdout, " %s%s", names[i], cur && !strcmp(cur, names[i]) ? "*" : "");
            fprintf(stdout, "%s)", n ? "" : " none loaded");
            continue;
        }
        if (!strncmp(line, "/adapter ", 9)) {
            char name[256];
            double scale = 1.0;
            int got = sscanf(line + 9, "%255s %lf", name, &scale);
            const char *nm = got >= 1 && strcmp(name, "none") ? name : NULL;
            if (got < 1) fprintf(stdout, "(usage: /adapter NAME|none [scale])");
            else if (wick_session_set_adapter(s, nm, (float)scale) != WICK_OK)
                fprintf(stdout, "(%s)", wick_last_error());
            else if (nm) fprintf(stdout, "(adapter %s active, scale %g)", nm, scale);
            else fprintf(stdout, "(base model, no adapter)");
            continue;
        }
        if (line[0] == '/') {
            fprintf(stdout, "(unknown command; /help lists them: /reset, /system TEXT, /save FILE, "
                            "/load FILE, /params, /adapter NAME|none [scale], /adapters, /exit)");
            continue;
        }
        char *prompt = NULL;
        const size_t text_before = text_len;
        if (completion) {
            if (!text_append(&text, &text_len, "\n", line)) break;
        } else {
            if (!convo_add(&c, "user", line)) break;
            if (wick_chat_render(tok, c.msgs, c.n, true, NULL, &prompt) != WICK_OK) {
                cli_fail("chat", "cannot render the chat template");
                convo_clear(&c, c.n - 1);
                continue;
            }
        }
        const char *ptext = completion ? text : prompt;
        size_t plen = strlen(ptext);
        int32_t need = wick_tokenize(tok, ptext, plen, false, NULL, 0);
        need = need < 0 ? -need : need;
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)(need ? need : 1));
        int32_t n = ids ? wick_tokenize(tok, ptext, plen, false, ids, need) : -1;
        wick_free(prompt);
        wick_gen *g = NULL;
        if (n <= 0 || wick_gen_start(s, ids, n, &o.p, &g) != WICK_OK) {
            cli_fail("chat", "cannot start the reply");
            free(ids);
            if (completion) text_len = text_before, text[text_len] = '\0';
            else convo_clear(&c, c.n - 1);
            continue;
        }
        if (completion) fprintf(stdout, "%s", line);
        g_active = g;
        char *reply = NULL;
        size_t rlen = 0, rcap = 0;
        wick_token t = {0};
        wick_status st;
        while ((st = wick_gen_step(g, &t)) == WICK_OK) {
            fwrite(t.text, 1, t.text_len, stdout);
            fflush(stdout);
            if (rlen + t.text_len + 1 > rcap) {
                rcap = (rlen + t.text_len + 1) * 2;
                char *nr = realloc(reply, rcap);
                if (!nr) break;
                reply = nr;
            }
            memcpy(reply + rlen, t.text, t.text_len);
            rlen += t.text_len;
            reply[rlen] = '\0';
            if (t.finish == WICK_FINISH_CANCELLED) fprintf(stdout, " [stopped]");
            if (t.finish == WICK_FINISH_LENGTH) fprintf(stdout, " [length limit]");
        }
        g_active = NULL;
        if (st != WICK_DONE) cli_fail("chat", "generation failed");
        else if (t.generated_tokens > 0) {   /* the reply's speed, off the transcript */
            fflush(stdout);
            const double ds = t.decode_ms / 1e3;
            fprintf(stderr, "\n[%d tokens, %.1f tok/s]", t.generated_tokens,
                    ds > 0 && t.generated_tokens > 1 ? (t.generated_tokens - 1) / ds : 0.0);
        }
        if (completion) text_append(&text, &text_len, NULL, reply ? reply : "");
        else convo_add(&c, "assistant", reply ? reply : "");
        free(reply);
        free(ids);
        wick_gen_free(g);
    }
    fprintf(stdout, "\n");
    input_close();
    sigaction(SIGINT, &old, NULL);
    convo_clear(&c, 0);
    free(text);
    free(c.msgs);
    free(c.owned);
    wick_session_free(s);
    wick_model_free(m);
    return rc;
}
