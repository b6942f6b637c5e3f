/* test_load_bounds.c — loaders believe a count only as far as the file can back it, and every
 * file, however short, fails cleanly.
 * Regressions: config.json "num_hidden_layers": 1000000000 made wick_model_load allocate ~300 GB
 * of per-layer structs before looking at a single layer tensor (a BERT config did the same in
 * the encoder); a 0-byte .gguf did pointer arithmetic on NULL (UBSan: "applying zero offset to
 * null pointer"). */
#include "testutil.h"

#include <unistd.h>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/encoder.h"

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *t = calloc(1, 1 << 16);
    size_t n = fread(t, 1, (1 << 16) - 1, f);
    fclose(f);
    t[n] = 0;
    return t;
}

/* A temp copy of fixture folder `fx`: every file symlinked except config.json, whose `from` is
 * replaced by `to`. */
static char *variant(const char *fx, const char *from, const char *to) {
    static const char *files[] = {"model.safetensors", "tokenizer.json", "tokenizer_config.json",
                                  "vocab.txt"};
    char *dir = tu_mkdtemp(), p[2100], q[2100];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", fx, files[i]);
        snprintf(q, sizeof q, "%s/%s", dir, files[i]);
        if (access(p, R_OK) == 0) assert_int_equal(symlink(p, q), 0);
    }
    snprintf(p, sizeof p, "%s/config.json", fx);
    char *cfg = read_text(p);
    char *at = strstr(cfg, from);
    assert_non_null(at);
    char *text = calloc(1, strlen(cfg) + strlen(to) + 1);
    sprintf(text, "%.*s%s%s", (int)(at - cfg), cfg, to, at + strlen(from));
    snprintf(q, sizeof q, "%s/config.json", dir);
    tu_write_file(q, text, strlen(text));
    free(text);
    free(cfg);
    return dir;
}

static void test_decoder_layer_count(void **state) {
    TU_REQUIRE_FIXTURE(fx, "tiny-qwen2");
    static const char *counts[] = {"\"num_hidden_layers\": 1000000000",
                                   "\"num_hidden_layers\": 2147483647",
                                   "\"num_hidden_layers\": 5000"};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        char *dir = variant(fx, "\"num_hidden_layers\": 2", counts[i]);
        wick_model_params mp = wick_model_params_default();
        wick_model *m = NULL;
        wick_status st = wick_model_load(dir, &mp, &m);
        printf("%s -> %s: %s\n", counts[i], wick_status_str(st), wick_last_error());
        assert_int_equal(st, WICK_ERR_SHAPE);
        assert_null(m);
        assert_non_null(strstr(wick_last_error(), "num_hidden_layers"));
        assert_non_null(strstr(wick_last_error(), "config.json"));
        tu_rmdir_rf(dir);
        free(dir);
    }
    free(fx);
}

static void test_encoder_layer_count(void **state) {
    TU_REQUIRE_FIXTURE(fx, "tiny-bert");
    char *dir = variant(fx, "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1000000000");
    encoder_model *m = NULL;
    wick_status st = encoder_load(dir, &m);
    printf("BERT num_hidden_layers 1e9 -> %s: %s\n", wick_status_str(st), wick_last_error());
    assert_int_equal(st, WICK_ERR_SHAPE);
    assert_null(m);
    assert_non_null(strstr(wick_last_error(), "num_hidden_layers"));
    tu_rmdir_rf(dir);
    free(dir);
    free(fx);
}

/* Files of 0..11 bytes: nothing to parse, each a clean error naming the file. */
static void test_tiny_files(void **state) {
    char *dir = tu_mkdtemp(), p[2100];
    static const unsigned char bytes[16] = "GGUF\3\0\0\0\0\0\0\0";
    for (size_t n = 0; n < 12; n++) {
        snprintf(p, sizeof p, "%s/t.gguf", dir);
        tu_write_file(p, bytes, n);
        gguf_file *g = (gguf_file *)1;
        assert_int_equal(gguf_open(p, &g), WICK_ERR_FORMAT);
        assert_null(g);
        assert_non_null(strstr(wick_last_error(), "t.gguf"));
        snprintf(p, sizeof p, "%s/t.safetensors", dir);
        tu_write_file(p, bytes, n);
        st_set *s = (st_set *)1;
        assert_int_equal(st_open(p, &s), WICK_ERR_FORMAT);
        assert_null(s);
        assert_non_null(strstr(wick_last_error(), "t.safetensors"));
    }
    /* a 0-byte .gguf through the model loader */
    snprintf(p, sizeof p, "%s/empty.gguf", dir);
    tu_write_file(p, "", 0);
    wick_model_params mp = wick_model_params_default();
    wick_model *m = NULL;
    assert_int_equal(wick_model_load(p, &mp, &m), WICK_ERR_FORMAT);
    assert_non_null(strstr(wick_last_error(), "empty.gguf"));
    tu_rmdir_rf(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoder_layer_count),
        cmocka_unit_test(test_encoder_layer_count),
        cmocka_unit_test(test_tiny_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
