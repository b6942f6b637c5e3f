/* cmd_pull.c — `wick pull ORG/NAME[@REV] [--include PATTERN]... [--file NAME]`: a model
 * repository of the Hugging Face Hub into huggingface_hub's cache (wick_hub_download); prints
 * the snapshot folder on stdout, progress per file on stderr when it is a terminal. */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

static const char k_usage[] =
    "usage: wick pull ORG/NAME[@REVISION] [--include PATTERN]... [--file NAME] [--token T]\n"
    "                 [--endpoint URL] [--cache DIR] [--offline] [-j N] [-q]\n"
    "Downloads a model repository into the cache huggingface_hub uses\n"
    "($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub) and prints its snapshot folder.\n"
    "Files already cached are not fetched again; an interrupted download resumes; every file\n"
    "is checked against the server's sha256 / git sha1 before it is kept.\n"
    "  --include PATTERN  only files matching the glob (repeatable), e.g. '*.json' '*.safetensors'\n"
    "  --file NAME        a GGUF repository: the .gguf whose name contains NAME (e.g. Q4_K_M),\n"
    "                     printed as the path of that file\n"
    "  --token T          access token for gated/private repositories (default $HF_TOKEN)\n"
    "  --endpoint URL     another server with the Hub's layout (default $HF_ENDPOINT)\n"
    "  --cache DIR        cache folder (default as above)\n"
    "  --offline          only the cache (as HF_HUB_OFFLINE=1)\n"
    "  -j N               files downloaded at once (1..16, default 4)\n"
    "  -q, --quiet        no progress\n"
    "Every model path of wick also takes hf://ORG/NAME[@REV] (and hf://ORG/NAME/FILE.gguf).\n";

typedef struct prog { double last; bool tty; } prog;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void on_progress(void *user, const char *file, long long done, long long total) {
    prog *p = user;
    const double t = now_s();
    if (done != total && t - p->last < 0.2) return;
    p->last = t;
    if (total > 0)
        fprintf(stderr, "%s%s: %.1f / %.1f MiB (%.0f%%)%s", p->tty ? "\r\033[K" : "", file, done / 1048576.0,
                total / 1048576.0, 100.0 * done / total, p->tty && done != total ? "" : "\n");
    else fprintf(stderr, "%s%s: %.1f MiB%s", p->tty ? "\r\033[K" : "", file, done / 1048576.0, p->tty ? "" : "\n");
}

int cmd_pull(int argc, char **argv) {
    wick_hub_params hp = wick_hub_params_default();
    const char *repo = NULL, *file = NULL;
    const char **inc = calloc((size_t)argc + 1, sizeof *inc);
    int n_inc = 0;
    bool quiet = false;
    if (!inc) return cli_fail("pull", "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_usage, stdout);
            free(inc);
            return 0;
        }
        if (!strcmp(a, "--offline")) hp.offline = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = true;
        else if (!strcmp(a, "--include") || !strcmp(a, "--token") || !strcmp(a, "--endpoint") ||
                 !strcmp(a, "--cache") || !strcmp(a, "--file") || !strcmp(a, "-j")) {
            if (!v) {
                fprintf(stderr, "wick pull: %s needs a value\n%s", a, k_usage);
                free(inc);
                return 2;
            }
            i++;
            if (!strcmp(a, "--include")) inc[n_inc++] = v;
            else if (!strcmp(a, "--token")) hp.token = v;
            else if (!strcmp(a, "--endpoint")) hp.endpoint = v;
            else if (!strcmp(a, "--cache")) hp.cache_dir = v;
            else if (!strcmp(a, "--file")) file = v;
            else {
                long j;
                if (!cli_parse_int("pull", "-j", v, 1, 16, &j)) {
                    free(inc);
                    return 2;
                }
                hp.n_parallel = (int)j;
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "wick pull: unknown option %s\n%s", a, k_usage);
            free(inc);
            return 2;
        } else if (!repo) repo = a;
        else {
            fprintf(stderr, "wick pull: one repository at a time (got '%s' and '%s')\n", repo, a);
            free(inc);
            return 2;
        }
    }
    if (!repo) {
        fprintf(stderr, "wick pull: which repository? (ORG/NAME)\n%s", k_usage);
        free(inc);
        return 2;
    }
    char *pat = NULL;
    if (file) { /* GGUF repositories: the one file whose name holds NAME (any case) */
        pat = malloc(strlen(file) * 4 + 16);
        if (!pat) {
            free(inc);
            return cli_fail("pull", "out of memory");
        }
        char *o = pat;
        *o++ = '*';
        for (const char *c = file; *c; c++) {
            if (strchr("*?[]\\", *c)) *o++ = '\\', *o++ = *c;
            else if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z'))
                o += sprintf(o, "[%c%c]", *c | 0x20, *c & ~0x20);
            else *o++ = *c;
        }
        strcpy(o, strstr(file, ".gguf") ? "*" : "*.gguf");
        inc[n_inc++] = pat;
    }
    hp.include = inc, hp.n_include = n_inc;
    prog pg = {0, isatty(2) != 0};
    if (!quiet) hp.on_progress = on_progress, hp.user = &pg;
    char *dir = NULL;
    wick_status st = wick_hub_download(repo, &hp, &dir);
    free(inc);
    if (st) {
        free(pat);
        return cli_fail("pull", repo);
    }
    int rc = 0;
    if (pat) { /* --file: the path of the one .gguf it matched */
        size_t n = strlen(dir) + strlen(pat) + 2;
        char *spec = malloc(n);
        glob_t gl;
        memset(&gl, 0, sizeof gl);
        if (spec) snprintf(spec, n, "%s/%s", dir, pat);
        if (spec && glob(spec, 0, NULL, &gl) == 0 && gl.gl_pathc == 1) printf("%s\n", gl.gl_pathv[0]);
        else {
            fprintf(stderr, "wick pull: %zu .gguf files of %s match '%s' (expected one; use a longer "
                    "--file)\n", (size_t)gl.gl_pathc, repo, file);
            for (size_t i = 0; i < gl.gl_pathc; i++) fprintf(stderr, "  %s\n", gl.gl_pathv[i]);
            rc = 1;
        }
        globfree(&gl);
        free(spec);
    } else printf("%s\n", dir);
    free(pat);
    free(dir);
    return rc;
}
