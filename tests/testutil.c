/* testutil.c — fixture lookup, golden tensor loading and temp dirs for tests. */

#include "testutil.h"

#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/safetensors.h"

bool tu_ci(void) {
    const char *ci = getenv("CI");
    return ci && (strcmp(ci, "true") == 0 || strcmp(ci, "1") == 0);
}

char *tu_fixture_path(const char *sub) {
    const char *root = getenv("WICK_FIXTURES");
    char buf[4096];
    if (root && *root)
        snprintf(buf, sizeof buf, "%s/%s", root, sub);
    else
        snprintf(buf, sizeof buf, "%s/../shared/fixtures/%s", WICK_SOURCE_DIR, sub);
    return strdup(buf);
}

bool tu_fixture_exists(const char *sub) {
    char *p = tu_fixture_path(sub);
    struct stat st;
    bool ok = stat(p, &st) == 0;
    free(p);
    return ok;
}

static const st_tensor *open_tensor(const char *file, const char *name, st_set **set) {
    if (st_open(file, set) != WICK_OK) fail_msg("cannot open %s: %s", file, wick_last_error());
    const st_tensor *t = st_find(*set, name);
    if (!t) fail_msg("%s: no tensor %s", file, name);
    return t;
}

float *tu_load_f32(const char *file, const char *name, int64_t *numel, int64_t *shape, int *ndim) {
    st_set *set = NULL;
    const st_tensor *t = open_tensor(file, name, &set);
    float *out = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    for (int64_t i = 0; i < t->numel; i++) {
        switch (t->dt) {
        case DT_F32: out[i] = ((const float *)t->data)[i]; break;
        case DT_BF16: out[i] = bf16_to_f32(((const uint16_t *)t->data)[i]); break;
        case DT_F16: out[i] = f16_to_f32(((const uint16_t *)t->data)[i]); break;
        default: fail_msg("%s: tensor %s is not a float tensor", file, name);
        }
    }
    if (numel) *numel = t->numel;
    if (shape) memcpy(shape, t->shape, sizeof(int64_t) * ST_MAX_DIMS);
    if (ndim) *ndim = t->ndim;
    st_close(set);
    return out;
}

int32_t *tu_load_ids(const char *file, const char *name, int64_t *numel) {
    st_set *set = NULL;
    const st_tensor *t = open_tensor(file, name, &set);
    if (t->dt != DT_I64) fail_msg("%s: tensor %s is not I64", file, name);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)(t->numel ? t->numel : 1));
    for (int64_t i = 0; i < t->numel; i++) {
        int64_t v;
        memcpy(&v, (const char *)t->data + 8 * i, 8);
        out[i] = (int32_t)v;
    }
    if (numel) *numel = t->numel;
    st_close(set);
    return out;
}

double tu_max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) return INFINITY;
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m) m = d;
    }
    return m;
}

char *tu_mkdtemp(void) {
    char tmpl[] = "/tmp/wick-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    if (!d) fail_msg("mkdtemp failed");
    return strdup(d);
}

void tu_rmdir_rf(const char *path) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", path);
}

void tu_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot write %s", path);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

char *tu_read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (s) s[n] = 0;
    fclose(f);
    return s;
}
