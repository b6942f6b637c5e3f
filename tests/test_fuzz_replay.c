/* test_fuzz_replay.c — replays every seed under fuzz/corpus/<name>/ and every input that once
 * crashed a harness, under fuzz/regressions/<name>/, through the harness bodies themselves
 * (fuzz/fuzz_targets.c is compiled into this test), so each fixed crash stays fixed in the
 * normal test run and under ASan/UBSan. A harness aborts on a broken invariant; a sanitizer
 * report fails the sanitizer build. Also feeds each target the empty input and every prefix of
 * one seed. */
#include "testutil.h"

#include <dirent.h>
#include <sys/stat.h>

/* The harness bodies, built here because fuzz/ is not part of the CMake build. */
#include "../fuzz/fuzz_targets.c"
#include "../fuzz/serve_targets.c"
#include "../fuzz/jinja_targets.c"
#include "../fuzz/tok_targets.c"

typedef int (*target_fn)(const uint8_t *, size_t);

static const struct {
    const char *name;
    target_fn fn;
    int regressions_elsewhere; /* replayed, one process each with a time limit, by another test */
} k_targets[] = {
    {"safetensors", fuzz_target_safetensors, 0}, {"gguf", fuzz_target_gguf, 0},
    {"config", fuzz_target_config, 0}, {"adapter_config", fuzz_target_adapter_config, 0},
    {"gguf_lora", fuzz_target_gguf_lora, 0}, {"adapter", fuzz_target_adapter, 0},
    {"serve_req", fuzz_target_serve_req, 0},
    {"http", fuzz_target_http, 0}, {"train_data", fuzz_target_train_data, 0},
    {"tokenizer", fuzz_target_tokenizer, 0}, {"json_schema", fuzz_target_json_schema, 0},
    {"serve_tools", fuzz_target_serve_tools, 0}, {"bpe_train", fuzz_target_bpe_train, 0},
    {"hub", fuzz_target_hub, 0},
    {"jinja", fuzz_target_jinja, 1}, /* tests/test_jinja_limits.c */
};

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    /* an exact-size heap copy: ASan then catches a read one byte past the input */
    unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* Runs every file of WICK_SOURCE_DIR/fuzz/<kind>/<name>/ through fn; returns how many. */
static int replay_dir(const char *kind, const char *name, target_fn fn) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/fuzz/%s/%s", WICK_SOURCE_DIR, kind, name);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[2048];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        size_t len;
        unsigned char *b = slurp(path, &len);
        printf("  %s/%s/%s (%zu bytes)\n", kind, name, e->d_name, len);
        assert_int_equal(fn(b, len), 0);
        free(b);
        n++;
    }
    closedir(d);
    return n;
}

static void test_corpus(void **state) {
    for (size_t i = 0; i < sizeof k_targets / sizeof k_targets[0]; i++) {
        int n = replay_dir("corpus", k_targets[i].name, k_targets[i].fn);
        if (n == 0) fail_msg("fuzz/corpus/%s holds no seeds", k_targets[i].name);
    }
}

static void test_regressions(void **state) {
    int total = 0;
    for (size_t i = 0; i < sizeof k_targets / sizeof k_targets[0]; i++)
        if (!k_targets[i].regressions_elsewhere)
            total += replay_dir("regressions", k_targets[i].name, k_targets[i].fn);
    printf("%d regression inputs replayed\n", total);
}

/* Every prefix of the first seed of each harness (the cheapest way to hit every "truncated
 * here" path), and the empty input. */
static void test_prefixes(void **state) {
    for (size_t i = 0; i < sizeof k_targets / sizeof k_targets[0]; i++) {
        assert_int_equal(k_targets[i].fn((const uint8_t *)"", 0), 0);
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/fuzz/corpus/%s", WICK_SOURCE_DIR, k_targets[i].name);
        DIR *d = opendir(dir);
        assert_non_null(d);
        struct dirent *e;
        char path[2048] = "";
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') {
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
                break;
            }
        closedir(d);
        size_t len;
        unsigned char *b = slurp(path, &len);
        /* an HTTP exchange waits for the server (up to 200 ms): fewer prefixes there */
        const size_t cap = !strcmp(k_targets[i].name, "http") ? 24 : 512;
        const size_t step = len > cap ? (len + cap - 1) / cap : 1;
        printf("  %s: %zu prefixes of %s\n", k_targets[i].name, (len + step - 1) / step, path);
        fflush(stdout);
        for (size_t cut = 0; cut < len; cut += step) {
            unsigned char *p = malloc(cut ? cut : 1);
            memcpy(p, b, cut);
            assert_int_equal(k_targets[i].fn(p, cut), 0);
            free(p);
        }
        free(b);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus),
        cmocka_unit_test(test_regressions),
        cmocka_unit_test(test_prefixes),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    wick_model_free(g_model);   /* the harnesses' tiny model, kept for the process */
    free(g_model_st);
    free(g_adapter_st);
    return rc;
}
