/* cmd_search.c — `wick search --index DIR "query"...`: exact (brute-force) nearest texts of an
 * index written by `wick embed --index DIR`. Each query is embedded with the index's model and
 * settings (its own prefix: --prefix, e.g. "query: " for E5), cut to the index's dim, and
 * scored against every stored row with one matrix product of the kernel table (the F32
 * matvec/GEMM, threaded), which on normalised vectors is the cosine. The top k per query come
 * from a k-element min-heap. Only the chosen texts are parsed from texts.jsonl. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/fileio.h"
#include "base/pool.h"
#include "cli/cli.h"
#include "formats/safetensors.h"
#include "kernels/kernels.h"

static int usage(FILE *f) {
    fprintf(f,
            "usage: wick search --index DIR [options] QUERY...\n"
            "  --index DIR      an index written by `wick embed --index DIR --file F`\n"
            "  -k N             results per query (default 10)\n"
            "  -m MODEL_DIR     embed the queries with this folder instead of the index's model\n"
            "  --prefix S       prepended to each query, e.g. \"query: \" for E5 models\n"
            "  --prompt-name P  prepend the model folder's prompt P to each query (e.g. \"query\"\n"
            "                   for Qwen3-Embedding: config_sentence_transformers.json)\n"
            "  -t, --threads N  threads (default: all CPUs)\n"
            "  --json           one JSON object per result: query, rank, row, score, text\n"
            "Scores are dot products with the stored rows (cosine similarity when the model\n"
            "normalises); timings of the search itself go to stderr.\n");
    return f == stdout ? 0 : 2;
}

typedef struct hit { float score; int row; } hit;

/* k-element min-heap on score (ties: the lower row ranks higher, so kept) */
static bool worse(hit a, hit b) { return a.score < b.score || (a.score == b.score && a.row > b.row); }

static void heap_push(hit *h, int *n, int k, hit x) {
    if (*n == k) {
        if (!worse(h[0], x)) return;
        h[0] = x; /* replace the worst, sift down */
        for (int i = 0;;) {
            int l = 2 * i + 1, r = l + 1, m = i;
            if (l < k && worse(h[l], h[m])) m = l;
            if (r < k && worse(h[r], h[m])) m = r;
            if (m == i) break;
            hit t = h[i];
            h[i] = h[m], h[m] = t, i = m;
        }
        return;
    }
    int i = (*n)++;
    h[i] = x;
    while (i > 0 && worse(h[i], h[(i - 1) / 2])) {
        hit t = h[i];
        h[i] = h[(i - 1) / 2], h[(i - 1) / 2] = t, i = (i - 1) / 2;
    }
}

static int by_rank(const void *a, const void *b) {
    const hit *x = a, *y = b;
    return worse(*y, *x) ? -1 : worse(*x, *y) ? 1 : 0;
}

/* j is a number with no fraction in [lo, hi] */
static bool json_whole(const cJSON *j, double lo, double hi) {
    return cJSON_IsNumber(j) && j->valuedouble >= lo && j->valuedouble <= hi &&
           j->valuedouble == floor(j->valuedouble);
}

/* the text of row `row`: line `row` of texts.jsonl (offsets found once), parsed as a JSON string */
static char *text_of(const char *buf, const size_t *line, int row) {
    const char *s = buf + line[row];
    size_t n = line[row + 1] - line[row];
    char *tmp = malloc(n + 1);
    if (!tmp) return NULL;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    cJSON *j = cJSON_Parse(tmp);
    free(tmp);
    char *out = cJSON_IsString(j) ? strdup(j->valuestring) : NULL;
    cJSON_Delete(j);
    return out;
}

int cmd_search(int argc, char **argv) {
    const char *dir = NULL, *model = NULL, *prefix = NULL, *prompt_name = NULL;
    long k = 10, threads = 0;
    bool json = false;
    const char **queries = calloc((size_t)argc + 1, sizeof *queries);
    int nq = 0, rc = 2;
    if (!queries) return cli_fail("search", "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            free(queries);
            return usage(stdout);
        } else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--index") && has) dir = argv[++i];
        else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) model = argv[++i];
        else if (!strcmp(a, "--prefix") && has) prefix = argv[++i];
        else if (!strcmp(a, "--prompt-name") && has) prompt_name = argv[++i];
        else if (!strcmp(a, "-k") && has) {
            if (!cli_parse_int("search", a, argv[++i], 1, 100000, &k)) goto out;
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has) {
            if (!cli_parse_int("search", a, argv[++i], 1, 1024, &threads)) goto out;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "wick search: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            goto out;
        } else {
            if (!cli_check_utf8("search", "the query", a, strlen(a))) goto out;
            queries[nq++] = a;
        }
    }
    if (!dir || nq == 0) {
        fprintf(stderr, "wick search: need --index DIR and at least one query\n");
        usage(stderr);
        goto out;
    }
    rc = 1;
    /* index.json */
    char *p = path_join(dir, "index.json"), *js = NULL;
    size_t n = 0;
    if (!p || file_read_all(p, &js, &n) != WICK_OK) {
        fprintf(stderr, "wick search: cannot read %s (is %s an index of `wick embed --index`?)\n",
                p ? p : dir, dir);
        free(p);
        goto out;
    }
    cJSON *ix = cJSON_Parse(js);
    free(js);
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(ix, "model"),
                *jd = cJSON_GetObjectItemCaseSensitive(ix, "dim"),
                *jc = cJSON_GetObjectItemCaseSensitive(ix, "count"),
                *jp = cJSON_GetObjectItemCaseSensitive(ix, "pooling"),
                *jn = cJSON_GetObjectItemCaseSensitive(ix, "normalize"),
                *jl = cJSON_GetObjectItemCaseSensitive(ix, "max_length");
    /* every number is checked to be a whole number in range before it becomes an int (a
       hostile or damaged index.json must get an error, not an out-of-range conversion) */
    if (!cJSON_IsString(jm) || !json_whole(jd, 1, 1 << 20) || !json_whole(jc, 0, INT32_MAX - 1) ||
        !json_whole(jp, 0, 64) || !cJSON_IsBool(jn) || !json_whole(jl, 0, 1 << 24)) {
        fprintf(stderr, "wick search: %s: expected fields model (string), dim (1..1048576), count "
                        "(0..2147483646), pooling (0..64), max_length (0..16777216) as whole "
                        "numbers and normalize (bool)\n", p);
        cJSON_Delete(ix);
        free(p);
        goto out;
    }
    free(p);
    const int dim = (int)jd->valuedouble, count = (int)jc->valuedouble;
    wick_embedder_params ep = wick_embedder_params_default();
    ep.pooling = (wick_pooling)(int)jp->valuedouble;
    ep.normalize = cJSON_IsTrue(jn);
    ep.max_length = (int)jl->valuedouble;
    ep.prefix = prefix;
    ep.prompt_name = prompt_name;
    if (threads) ep.n_threads = (int)threads;
    char *mpath = strdup(model ? model : jm->valuestring);
    cJSON_Delete(ix);
    /* embeddings and the texts' line offsets */
    st_set *st = NULL;
    p = path_join(dir, "embeddings.safetensors");
    const st_tensor *E = NULL;
    if (!p || st_open(p, &st) != WICK_OK || !(E = st_find(st, "embeddings")) || E->dt != DT_F32 ||
        E->ndim != 2 || E->shape[0] != count || E->shape[1] != dim) {
        fprintf(stderr, "wick search: %s: expected a tensor \"embeddings\" F32 [%d, %d] (%s)\n",
                p ? p : dir, count, dim, wick_last_error());
        free(p), free(mpath);
        st_close(st);
        goto out;
    }
    free(p);
    char *tb = NULL;
    size_t tn = 0, *line = malloc(sizeof(size_t) * ((size_t)count + 1));
    p = path_join(dir, "texts.jsonl");
    int lines = 0;
    if (line && p && file_read_all(p, &tb, &tn) == WICK_OK) {
        line[0] = 0;
        for (size_t i = 0; i < tn && lines < count; i++)
            if (tb[i] == '\n') line[++lines] = i + 1;
    }
    if (lines != count) {
        fprintf(stderr, "wick search: %s: expected %d lines (one JSON string per row)\n", p ? p : dir, count);
        free(p), free(mpath), free(tb), free(line);
        st_close(st);
        goto out;
    }
    free(p);
    wick_embedder *e = NULL;
    if (wick_embedder_load(mpath, &ep, &e) != WICK_OK) {
        cli_fail("search", "loading the index's model");
        free(mpath), free(tb), free(line);
        st_close(st);
        goto out;
    }
    free(mpath);
    const int md = wick_embedder_dim(e);
    float *q = malloc(sizeof(float) * (size_t)nq * (size_t)(md > dim ? md : dim));
    float *scores = malloc(sizeof(float) * (size_t)nq * (size_t)(count ? count : 1));
    hit *h = malloc(sizeof(hit) * (size_t)k);
    wk_pool *pool = pool_create(threads ? (int)threads : pool_cpu_count());
    const kernel_table *K = kernels_select("auto");
    if (!q || !scores || !h || !pool || !K || md < dim) {
        fprintf(stderr, "wick search: %s\n", md < dim ? "the model gives fewer values than the index holds"
                                                       : "out of memory");
    } else if (wick_embed(e, queries, nq, q) != WICK_OK) {
        cli_fail("search", "embedding the queries");
    } else {
        /* the index's Matryoshka cut, normalised again like the rows */
        for (int i = 0; i < nq && dim < md; i++) {
            float *dst = q + (size_t)i * dim;
            memmove(dst, q + (size_t)i * md, sizeof(float) * (size_t)dim);
            double ss = 0;
            for (int j = 0; j < dim && ep.normalize; j++) ss += (double)dst[j] * dst[j];
            for (int j = 0; j < dim && ss > 0; j++) dst[j] *= (float)(1.0 / sqrt(ss));
        }
        wk_ctx ctx = {.pool = pool};
        const wk_weight W = {.data = E->data, .dt = DT_F32, .rows = count, .cols = dim};
        const double t0 = cli_now_s();
        if (count) K->matmul(&ctx, scores, q, &W, NULL, nq);
        const double t1 = cli_now_s();
        rc = 0;
        for (int qi = 0; qi < nq && rc == 0; qi++) {
            int nh = 0;
            const float *s = scores + (size_t)qi * count;
            for (int r = 0; r < count; r++) heap_push(h, &nh, (int)k, (hit){s[r], r});
            qsort(h, (size_t)nh, sizeof *h, by_rank);
            if (!json) printf("%s%s\n", qi ? "\n" : "", queries[qi]);
            for (int r = 0; r < nh; r++) {
                char *txt = text_of(tb, line, h[r].row);
                if (!txt) {
                    fprintf(stderr, "wick search: texts.jsonl line %d is not a JSON string\n", h[r].row + 1);
                    rc = 1;
                    break;
                }
                if (json) {
                    cJSON *o = cJSON_CreateObject();
                    cJSON_AddStringToObject(o, "query", queries[qi]);
                    cJSON_AddNumberToObject(o, "rank", r + 1);
                    cJSON_AddNumberToObject(o, "row", h[r].row);
                    cJSON_AddNumberToObject(o, "score", h[r].score);
                    cJSON_AddStringToObject(o, "text", txt);
                    char *out = cJSON_PrintUnformatted(o);
                    if (out) puts(out);
                    free(out);
                    cJSON_Delete(o);
                } else {
                    printf("%3d  %.4f  %s\n", r + 1, h[r].score, txt);
                }
                free(txt);
            }
        }
        fprintf(stderr, "wick search: %d queries over %d rows of %d values: %.2f ms scoring (%.2f ms per "
                        "query), %ld threads\n", nq, count, dim, (t1 - t0) * 1e3, (t1 - t0) * 1e3 / nq,
                (long)pool_size(pool));
    }
    pool_free(pool);
    free(q), free(scores), free(h), free(tb), free(line);
    wick_embedder_free(e);
    st_close(st);
    if (fflush(stdout) != 0) rc = 1;
out:
    free(queries);
    return rc;
}
