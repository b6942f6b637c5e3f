/* cmd_template.c — `wick template`: renders a tokenizer's chat template for a conversation,
 * like transformers' apply_chat_template(tokenize=False), and prints the prompt to stdout
 * (no newline added, so the bytes are exactly the prompt).
 * The messages file is a JSON array of message objects ({"role": ..., "content": "..."}, and
 * whatever else the template reads, e.g. tool_calls), passed to the template as written
 * ("-" reads stdin);
 * content must be a string or null (multimodal content lists are not handled). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"

static int usage(FILE *f) {
    fprintf(f, "usage: wick template -T PATH --messages FILE.json [--add-generation-prompt] "
               "[--kwargs JSON]\n"
               "  -T, --tokenizer PATH     tokenizer.json or a model folder (with "
               "tokenizer_config.json;\n"
               "                           -t PATH still works, with a note: -t is --threads)\n"
               "  --messages FILE          JSON array of {\"role\", \"content\"} ('-': stdin)\n"
               "  --add-generation-prompt  end with the assistant turn header\n"
               "  --kwargs JSON            extra template variables, e.g. "
               "'{\"enable_thinking\": false}'\n");
    return f == stderr ? 2 : 0;
}

static char *slurp(const char *path) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return NULL;
    size_t cap = 1 << 14, n = 0;
    char *b = malloc(cap);
    while (b) {
        if (n + 1 >= cap) {
            char *nb = realloc(b, cap * 2);
            if (!nb) break;
            b = nb;
            cap *= 2;
        }
        size_t k = fread(b + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0) {
            b[n] = 0;
            if (f != stdin) fclose(f);
            return b;
        }
    }
    free(b);
    if (f != stdin) fclose(f);
    return NULL;
}

int cmd_template(int argc, char **argv) {
    const char *path = NULL, *msgs_path = NULL, *kwargs = NULL;
    bool agp = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout);
        if (!strcmp(a, "--add-generation-prompt")) { agp = true; continue; }
        if (i + 1 >= argc) {
            fprintf(stderr, "wick template: unknown option or missing value: %s\n", a);
            return usage(stderr);
        }
        if (!strcmp(a, "-T") || !strcmp(a, "--tokenizer")) path = argv[++i];
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            const int k = cli_tokenizer_dash_t("template", a, argv[++i]);
            if (k < 0) return 2;
            if (k) path = argv[i];
        }
        else if (!strcmp(a, "--messages")) msgs_path = argv[++i];
        else if (!strcmp(a, "--kwargs")) kwargs = argv[++i];
        else {
            fprintf(stderr, "wick template: unknown option %s\n", a);
            return usage(stderr);
        }
    }
    if (!path || !msgs_path) return usage(stderr);
    char *text = slurp(msgs_path);
    if (!text) {
        fprintf(stderr, "wick template: cannot read %s: %s\n", msgs_path, strerror(errno));
        return 1;
    }
    cJSON *arr = cJSON_Parse(text);
    int rc = 1;
    wick_tokenizer *tok = NULL;
    char *out = NULL;
    if (!cJSON_IsArray(arr)) {
        fprintf(stderr, "wick template: %s: expected a JSON array of {\"role\", \"content\"}\n",
                msgs_path);
        goto done;
    }
    for (int i = 0; i < cJSON_GetArraySize(arr); i++) {
        cJSON *x = cJSON_GetArrayItem(arr, i), *r = cJSON_GetObjectItem(x, "role");
        if (!cJSON_IsObject(x) || !cJSON_IsString(r)) {
            fprintf(stderr, "wick template: %s: message %d needs a string \"role\"\n", msgs_path, i);
            goto done;
        }
    }
    if (wick_tokenizer_load(path, &tok)) {
        rc = cli_fail("template", "loading the tokenizer");
        goto done;
    }
    /* messages go to the template as written: tool_calls, tool messages, reasoning_content */
    if (wick_chat_render_json(tok, text, agp, kwargs, &out)) {
        rc = cli_fail("template", "rendering the chat template");
        goto done;
    }
    fwrite(out, 1, strlen(out), stdout);
    rc = fflush(stdout) ? 1 : 0;
done:
    wick_free(out);
    wick_tokenizer_free(tok);
    cJSON_Delete(arr);
    free(text);
    return rc;
}
