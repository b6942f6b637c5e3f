/* cmd_generate.c — `wick generate`: one prompt (text, chat-templated text, or ids) in, tokens
 * streamed out as they are produced (flushed per token), speed on stderr. Ctrl-C ends the
 * generation cleanly (finish "cancelled"). Built on the pull API (wick_gen_*). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/gen_opts.h"

static wick_gen *volatile g_active;

static void on_sigint(int sig) {
    (void)sig;
    wick_gen *g = g_active;
    if (g) wick_gen_cancel(g); /* an atomic store: async-signal-safe */
}

static int usage(FILE *f) {
    fprintf(f, "usage: wick generate -m MODEL_DIR (-p TEXT | --prompt-ids IDS) [--chat]\n"
               "                     [--system TEXT] [--json] [generation options]\n"
               "Streams the generated text to stdout; --json prints one JSON object per token\n"
               "and a final object with finish_reason, counts and speeds.\n"
               "  --chat     render the tokenizer's chat template around the prompt (user turn)\n"
               "  --raw-tokens  top_logprobs tokens as the vocabulary stores them (Ġ, Ċ ...)\n"
               "             instead of their decoded text\n"
               "  -a, --adapter DIR[:scale]  apply a PEFT LoRA folder (unmerged; scale x alpha/r)\n\n");
    gen_opts_usage(f);
    return f == stdout ? 0 : 2;
}

/* Tokenizes `text` (or the chat-templated version of it) into *ids. */
static int tokenize_prompt(const wick_tokenizer *tok, const char *text, bool chat,
                           const char *system, int32_t **ids) {
    char *rendered = NULL;
    if (chat) {
        wick_chat_message msgs[2];
        size_t n = 0;
        if (system) msgs[n++] = (wick_chat_message){"system", system};
        msgs[n++] = (wick_chat_message){"user", text};
        if (wick_chat_render(tok, msgs, n, true, NULL, &rendered) != WICK_OK)
            return cli_fail("generate", "cannot render the chat template"), -1;
        text = rendered;
    }
    /* plain text gets the post-processor's special tokens (e.g. BOS) like HF's
       tokenizer(text); a rendered chat template already contains them */
    size_t len = strlen(text);
    int32_t need = wick_tokenize(tok, text, len, !chat, NULL, 0);
    if (need == INT32_MIN) {
        wick_free(rendered);
        return cli_fail("generate", "cannot tokenize the prompt"), -1;
    }
    if (need < 0) need = -need;
    *ids = malloc(sizeof(int32_t) * (size_t)(need ? need : 1));
    int32_t n = wick_tokenize(tok, text, len, !chat, *ids, need);
    wick_free(rendered);
    return n;
}

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *ids_s = NULL, *text = NULL, *system = NULL, *adapter = NULL;
    bool json = false, chat = false, raw_tokens = false;
    gen_opts o;
    gen_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        int r = gen_opts_parse(&o, "generate", argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout);
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model = argv[++i];
        else if (!strcmp(a, "--prompt-ids") && has) ids_s = argv[++i];
        else if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && has) text = argv[++i];
        else if (!strcmp(a, "--system") && has) system = argv[++i];
        else if ((!strcmp(a, "--adapter") || !strcmp(a, "-a")) && has) adapter = argv[++i];
        else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--raw-tokens")) raw_tokens = true;
        else if (!strcmp(a, "--chat")) chat = true;
        else {
            fprintf(stderr, "wick generate: unknown or incomplete option '%s'\n", a);
            return usage(stderr);
        }
    }
    if (!model || (!ids_s == !text)) {
        fprintf(stderr, "wick generate: give -m MODEL and exactly one of -p TEXT or --prompt-ids\n");
        return usage(stderr);
    }
    if (chat && !text) {
        fprintf(stderr, "wick generate: --chat needs a text prompt (-p)\n");
        return 2;
    }
    if (system && !chat) {
        fprintf(stderr, "wick generate: --system applies to --chat prompts (add --chat, or put "
                        "the text into -p)\n");
        return 2;
    }
    if (o.p.n_logprobs && !json)
        fprintf(stderr, "wick generate: note: --logprobs is reported with --json only\n");
    if (raw_tokens && !(json && o.p.n_logprobs))
        fprintf(stderr, "wick generate: note: --raw-tokens changes only --json --logprobs "
                        "output\n");
    if ((text && !cli_check_utf8("generate", "-p", text, strlen(text))) ||
        (system && !cli_check_utf8("generate", "--system", system, strlen(system))))
        return 2;
    if (!gen_opts_finish(&o, "generate")) return 1;
    char *text_u = NULL, *system_u = NULL;   /* escapes processed (unless --raw) */
    if (!o.raw && ((text && !(text_u = cli_unescape(text))) ||
                   (system && !(system_u = cli_unescape(system))))) {
        free(text_u);
        gen_opts_free(&o);
        fprintf(stderr, "wick generate: out of memory\n");
        return 1;
    }
    if (text_u) text = text_u;
    if (system_u) system = system_u;
    int32_t *ids = NULL;
    int n = 0;
    wick_model_params mp = wick_model_params_default();
    mp.kernels = o.kernels;
    mp.device = o.device;
    mp.precision = o.precision;
    wick_model *m = NULL, *dm = NULL;
    wick_session *ds = NULL;
    wick_session *s = NULL;
    wick_gen *g = NULL;
    int rc = 0;
    if (ids_s && (n = cli_parse_ids("generate", ids_s, &ids)) <= 0) {
        if (n == 0) fprintf(stderr, "wick generate: --prompt-ids is empty\n");
        free(ids);
        ids = NULL;
        rc = 2;
        goto out;
    }
    cli_status_loading("generate", model);
    if (wick_model_load(model, &mp, &m) != WICK_OK) {
        rc = cli_fail("generate", "cannot load model");
        goto out;
    }
    cli_status_clear();
    const wick_tokenizer *tok = wick_model_tokenizer(m);
    if (text) {
        if (!tok) {
            fprintf(stderr, "wick generate: %s has no tokenizer.json or vocab.txt; use "
                            "--prompt-ids\n", model);
            rc = 1;
            goto out;
        }
        if ((n = tokenize_prompt(tok, text, chat, system, &ids)) < 0) {
            rc = 1;
            goto out;
        }
        if (n == 0) {
            fprintf(stderr, "wick generate: the prompt tokenizes to nothing\n");
            rc = 2;
            goto out;
        }
    }
    wick_session_params sp = wick_session_params_default();
    sp.n_threads = (int)o.threads;
    sp.n_ctx = (int)o.ctx;
    cli_warn_ctx("generate", m, o.ctx);
    sp.kv_type = o.kv_type;
    if (wick_session_create(m, &sp, &s) != WICK_OK) {
        rc = cli_fail("generate", "cannot create session");
        goto out;
    }
    if (adapter && (rc = cli_use_adapter("generate", m, s, adapter))) goto out;
    if (o.draft_model) { /* speculative decoding: the draft's session, as long as ours */
        cli_status_loading("generate", o.draft_model);
        if (wick_model_load(o.draft_model, &mp, &dm) != WICK_OK) {
            rc = cli_fail("generate", "cannot load the draft model");
            goto out;
        }
        cli_status_clear();
        if (wick_model_tokenizer(dm) && tok &&
            wick_tokenizer_vocab_size(wick_model_tokenizer(dm)) != wick_tokenizer_vocab_size(tok))
            fprintf(stderr, "wick generate: warning: the draft model's tokenizer has %d ids, the "
                            "model's %d: proposals will rarely be accepted\n",
                    wick_tokenizer_vocab_size(wick_model_tokenizer(dm)), wick_tokenizer_vocab_size(tok));
        wick_session_params dsp = sp;
        dsp.n_ctx = wick_session_n_ctx(s);
        if (wick_session_create(dm, &dsp, &ds) != WICK_OK) {
            rc = cli_fail("generate", "cannot create the draft session");
            goto out;
        }
        o.p.draft = ds;
    }
    if (wick_gen_start(s, ids, n, &o.p, &g) != WICK_OK) {
        rc = cli_fail("generate", "cannot start generation");
        goto out;
    }
    g_active = g;
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    wick_token t;
    wick_status st;
    while ((st = wick_gen_step(g, &t)) == WICK_OK) {
        if (json) {
            gen_print_json(stdout, &t, tok, raw_tokens);
        } else if (!tok) {
            if (t.id >= 0) printf("%s%d", t.generated_tokens || t.finish ? "" : "", t.id);
            if (t.id >= 0 && t.finish == WICK_FINISH_NONE) printf(",");
            fflush(stdout);
        } else {
            fwrite(t.text, 1, t.text_len, stdout);
            fflush(stdout);
        }
        if (t.finish != WICK_FINISH_NONE) {
            if (!json) printf("\n");
            gen_print_speed(&t);
        }
    }
    g_active = NULL;
    sigaction(SIGINT, &old, NULL);
    if (st != WICK_DONE) rc = cli_fail("generate", "generation failed");
out:
    wick_gen_free(g);
    free(ids);
    wick_session_free(s);
    wick_session_free(ds);
    wick_model_free(dm);
    wick_model_free(m);
    free(text_u);
    free(system_u);
    gen_opts_free(&o);
    return rc;
}
