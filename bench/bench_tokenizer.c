/* bench_tokenizer.c — tokenizer throughput and load time.
 * Usage: bench_tokenizer [TOKENIZER_PATH] (default: $WICK_FIXTURES or ../shared/fixtures,
 * tokenizers/qwen3). Builds >= 1 MB of text by repeating a set of English, code and Unicode
 * paragraphs, then reports the median of several runs: load time (ms), encode MB/s, decode
 * MB/s (batch), and streaming-detokenizer MB/s. The baseline printed beside encode is a plain
 * memcpy-free byte scan of the same text (MB/s of counting newlines), so the ratio is
 * comparable across machines. When Node.js and the npm package @huggingface/tokenizers are
 * present, the same text is also encoded by it in the same run and the ratio printed. */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "wick.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[n / 2];
}

static const char *k_paras[] = {
    "The quick brown fox jumps over the lazy dog. In 2024, researchers published 1,234 papers "
    "on tokenization; don't expect that number to shrink. She said: \"It's the model's job!\"\n\n",
    "def tokenize(text: str) -> list[int]:\n    ids = []\n    for word in text.split():\n"
    "        if word in vocab:\n            ids.append(vocab[word])\n    return ids  # TODO\n\n",
    "#include <stdio.h>\nint main(int argc, char **argv) {\n\tfor (int i = 0; i < argc; i++)\n"
    "\t\tprintf(\"%d: %s\\n\", i, argv[i]);\n\treturn 0;\n}\n",
    "Unicode: 你好，世界！こんにちは世界。안녕하세요. Привет, мир! مرحبا بالعالم. "
    "Café crème brûlée, naïve façade — 👍🏽 👨‍👩‍👧 🏳️‍🌈 ∑ₖ xₖ² ≤ ∞.\n",
    "{\"name\": \"wick\", \"version\": \"0.1.0\", \"tags\": [\"llm\", \"cpu\"], \"size\": 3.14159e+10}\n"
    "https://example.com/path/to/page?query=value&other=123#fragment\n",
};

/* Times @huggingface/tokenizers (npm, the JS implementation) on the same tokenizer and text
 * when Node.js and the package are present ($WICK_NODE_MODULES, ./node_modules or
 * ../node_modules holding it). Fills *mbs (encode MB/s) and *load_ms; false when not timed. */
static bool node_encode(const char *tok_dir, const char *text, size_t len, double *mbs,
                        double *load_ms) {
    static const char *const k_dirs[] = {"node_modules", "../node_modules"};
    const char *env = getenv("WICK_NODE_MODULES");
    char mod[PATH_MAX] = "";
    for (int i = -1; i < 2 && !mod[0]; i++) {
        const char *d = i < 0 ? env : k_dirs[i];
        char probe[PATH_MAX + 64];
        if (!d) continue;
        snprintf(probe, sizeof probe, "%s/@huggingface/tokenizers/package.json", d);
        if (access(probe, R_OK) == 0 && !realpath(d, mod)) mod[0] = 0;
    }
    if (!mod[0] || system("node --version >/dev/null 2>&1") != 0) return false;
    char tdir[] = "/tmp/wick-bench-node-XXXXXX";
    if (!mkdtemp(tdir)) return false;
    char js[PATH_MAX], txt[PATH_MAX], cmd[3 * PATH_MAX + 128];
    snprintf(js, sizeof js, "%s/bench.cjs", tdir);
    snprintf(txt, sizeof txt, "%s/text.txt", tdir);
    FILE *f = fopen(txt, "wb");
    bool ok = f && fwrite(text, 1, len, f) == len;
    if (f && fclose(f) != 0) ok = false;
    f = ok ? fopen(js, "w") : NULL;
    if (f) {
        fputs("const { Tokenizer } = require('@huggingface/tokenizers');\n"
              "const fs = require('fs');\n"
              "const [dir, file] = process.argv.slice(2);\n"
              "let t0 = performance.now();\n"
              "const tok = new Tokenizer(JSON.parse(fs.readFileSync(dir + '/tokenizer.json', 'utf8')),\n"
              "  JSON.parse(fs.readFileSync(dir + '/tokenizer_config.json', 'utf8')));\n"
              "const load = performance.now() - t0;\n"
              "const text = fs.readFileSync(file, 'utf8');\n"
              "const bytes = Buffer.byteLength(text, 'utf8');\n"
              "tok.encode(text, { add_special_tokens: false });\n"
              "const ts = [];\n"
              "for (let r = 0; r < 5; r++) { t0 = performance.now();\n"
              "  tok.encode(text, { add_special_tokens: false }); ts.push(performance.now() - t0); }\n"
              "ts.sort((a, b) => a - b);\n"
              "console.log(load.toFixed(1), (bytes / 1e6 / (ts[2] / 1e3)).toFixed(2));\n", f);
        ok = fclose(f) == 0;
    }
    bool got = false;
    if (ok) {
        snprintf(cmd, sizeof cmd, "NODE_PATH='%s' node '%s' '%s' '%s' 2>/dev/null", mod, js,
                 tok_dir, txt);
        FILE *p = popen(cmd, "r");
        if (p) {
            got = fscanf(p, "%lf %lf", load_ms, mbs) == 2;
            pclose(p);
        }
    }
    unlink(js);
    unlink(txt);
    rmdir(tdir);
    return got;
}

int main(int argc, char **argv) {
    char def[4096];
    const char *path = argc > 1 ? argv[1] : NULL;
    if (!path) {
        const char *fx = getenv("WICK_FIXTURES");
        snprintf(def, sizeof def, "%s/tokenizers/qwen3", fx ? fx : "../shared/fixtures");
        path = def;
    }
    enum { RUNS = 5 };
    double t_load[RUNS];
    wick_tokenizer *t = NULL;
    for (int r = 0; r < RUNS; r++) {
        double t0 = now_s();
        if (wick_tokenizer_load(path, &t) != WICK_OK) {
            fprintf(stderr, "bench_tokenizer: %s\n", wick_last_error());
            return 1;
        }
        t_load[r] = (now_s() - t0) * 1e3;
        if (r + 1 < RUNS) wick_tokenizer_free(t);
    }
    /* >= 1 MB of mixed text */
    size_t cap = 1 << 21, len = 0;
    char *text = malloc(cap);
    for (int i = 0; len < (1u << 20); i++) {
        const char *p = k_paras[i % 5];
        size_t l = strlen(p);
        memcpy(text + len, p, l);
        len += l;
    }
    int32_t *ids = malloc(sizeof(int32_t) * len);
    double t_enc[RUNS], t_dec[RUNS], t_stream[RUNS], t_scan[RUNS];
    int32_t n = 0;
    volatile size_t sink = 0;
    for (int r = 0; r < RUNS; r++) {
        double t0 = now_s();
        size_t nl = 0;
        for (size_t i = 0; i < len; i++) nl += text[i] == '\n';
        sink += nl;
        t_scan[r] = now_s() - t0;
        t0 = now_s();
        n = wick_tokenize(t, text, len, false, ids, (int32_t)len);
        t_enc[r] = now_s() - t0;
        if (n < 0) {
            fprintf(stderr, "bench_tokenizer: encode failed: %s\n", wick_last_error());
            return 1;
        }
        char *out = malloc(len * 2 + 16);
        size_t ol;
        t0 = now_s();
        if (wick_detokenize(t, ids, (size_t)n, false, out, len * 2 + 16, &ol) != WICK_OK) return 1;
        t_dec[r] = now_s() - t0;
        free(out);
        wick_detok *d = NULL;
        wick_detok_create(t, false, &d);
        t0 = now_s();
        for (int32_t i = 0; i < n; i++) {
            const char *s;
            size_t l;
            wick_detok_push(d, ids[i], &s, &l);
            sink += l;
        }
        t_stream[r] = now_s() - t0;
        wick_detok_free(d);
    }
    double mb = (double)len / 1e6;
    printf("tokenizer: %s\n", path);
    printf("text: %.2f MB, %d ids (%.2f bytes/id), median of %d runs, 1 thread\n", mb, n,
           (double)len / n, RUNS);
    printf("%-22s %12s %14s\n", "metric", "value", "baseline");
    printf("%-22s %9.1f ms %14s\n", "load", median(t_load, RUNS), "goal < 150 ms");
    double scan = mb / median(t_scan, RUNS);
    double enc = mb / median(t_enc, RUNS);
    printf("%-22s %7.1f MB/s %9.0f MB/s byte scan (ratio %.3f), goal >= 30 MB/s\n", "encode", enc, scan, enc / scan);
    printf("%-22s %7.1f MB/s\n", "decode (batch)", mb / median(t_dec, RUNS));
    printf("%-22s %7.1f MB/s\n", "decode (stream)", mb / median(t_stream, RUNS));
    double node_mbs, node_load;
    if (node_encode(path, text, len, &node_mbs, &node_load))
        printf("%-22s %7.1f MB/s (load %.1f ms): wick/node encode %.2fx, load %.2fx faster\n",
               "node tokenizers.js", node_mbs, node_load, enc / node_mbs,
               node_load / median(t_load, RUNS));
    else
        printf("(node @huggingface/tokenizers not timed: needs node and `npm install --no-save "
               "@huggingface/tokenizers` in the repo root, or WICK_NODE_MODULES)\n");
    wick_tokenizer_free(t);
    free(ids);
    free(text);
    return 0;
}
