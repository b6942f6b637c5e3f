/* test_gguf.c — GGUF writer/reader round trip (every value type, nested arrays, every tensor
 * dtype, default and custom alignment) and the reader's validation: every truncation of a
 * valid file, flipped bytes, bad magic/version/type/offset/alignment, each with an error
 * that names the file and, where there is one, the key or tensor. */
#include <math.h>

#include "formats/gguf.h"
#include "kernels/quant.h"
#include "testutil.h"

static char *g_dir;

static int setup(void **state) { g_dir = tu_mkdtemp(); return g_dir ? 0 : -1; }
static int teardown(void **state) { tu_rmdir_rf(g_dir); free(g_dir); return 0; }

static char *tmp_path(const char *name) { return path_join(g_dir, name); }

#define N_T 7
static const dtype k_dts[N_T] = {DT_F32, DT_F16, DT_BF16, DT_Q8_0, DT_Q4_0, DT_Q4_K, DT_Q6_K};

typedef struct fixture {
    gguf_kv kv[16];
    int n_kv;
    gguf_value arr_items[3], nested_items[2], inner0[2], inner1[1], str_items[3];
    gguf_write_tensor t[N_T];
    void *data[N_T];
} fixture;

static void build(fixture *f, uint32_t align) {
    memset(f, 0, sizeof *f);
    int k = 0;
    gguf_value v;
#define KV(name, val) (f->kv[k].key = (char *)(name), f->kv[k].v = (val), k++)
    v = (gguf_value){.type = GGUF_U8}; v.u = 200; KV("t.u8", v);
    v = (gguf_value){.type = GGUF_I8}; v.i = -100; KV("t.i8", v);
    v = (gguf_value){.type = GGUF_U16}; v.u = 60000; KV("t.u16", v);
    v = (gguf_value){.type = GGUF_I16}; v.i = -30000; KV("t.i16", v);
    KV("t.u32", gguf_v_u32(4000000000u));
    KV("t.i32", gguf_v_i32(-2000000000));
    v = (gguf_value){.type = GGUF_U64}; v.u = 1ull << 60; KV("t.u64", v);
    v = (gguf_value){.type = GGUF_I64}; v.i = -(1ll << 60); KV("t.i64", v);
    KV("t.f32", gguf_v_f32(1.5f));
    v = (gguf_value){.type = GGUF_F64}; v.f = 1e-300; KV("t.f64", v);
    KV("t.bool", gguf_v_bool(true));
    KV("t.str", gguf_v_str("héllo"));
    for (int i = 0; i < 3; i++) f->arr_items[i] = gguf_v_i32(i * 7 - 3);
    v = (gguf_value){.type = GGUF_ARRAY};
    v.arr.type = GGUF_I32; v.arr.n = 3; v.arr.items = f->arr_items; KV("t.arr", v);
    f->inner0[0] = gguf_v_str("a"); f->inner0[1] = gguf_v_str("");
    f->inner1[0] = gguf_v_str("bc");
    f->nested_items[0] = (gguf_value){.type = GGUF_ARRAY};
    f->nested_items[0].arr.type = GGUF_STRING; f->nested_items[0].arr.n = 2; f->nested_items[0].arr.items = f->inner0;
    f->nested_items[1] = (gguf_value){.type = GGUF_ARRAY};
    f->nested_items[1].arr.type = GGUF_STRING; f->nested_items[1].arr.n = 1; f->nested_items[1].arr.items = f->inner1;
    v = (gguf_value){.type = GGUF_ARRAY};
    v.arr.type = GGUF_ARRAY; v.arr.n = 2; v.arr.items = f->nested_items; KV("t.nested", v);
    if (align) KV("general.alignment", gguf_v_u32(align));
#undef KV
    f->n_kv = k;
    for (int i = 0; i < N_T; i++) {
        gguf_write_tensor *t = &f->t[i];
        static char names[N_T][16];
        snprintf(names[i], sizeof names[i], "w.%s", dtype_name(k_dts[i]));
        t->name = names[i];
        t->dt = k_dts[i];
        t->n_dims = 2;
        t->ne[0] = dtype_block_size(k_dts[i]) == 1 ? 5 : 2 * dtype_block_size(k_dts[i]);
        t->ne[1] = 3;
        size_t nb = dtype_row_bytes(t->dt, t->ne[0]) * 3;
        unsigned char *d = malloc(nb);
        assert_non_null(d);
        for (size_t j = 0; j < nb; j++) d[j] = (unsigned char)(j * 31 + i);
        t->data = f->data[i] = d;
    }
}

static void unbuild(fixture *f) {
    for (int i = 0; i < N_T; i++) free(f->data[i]);
}

static void check_same_value(const gguf_value *a, const gguf_value *b) {
    assert_int_equal(a->type, b->type);
    switch (a->type) {
    case GGUF_STRING:
        assert_int_equal(a->str.len, b->str.len);
        assert_memory_equal(a->str.s, b->str.s, a->str.len);
        break;
    case GGUF_ARRAY:
        assert_int_equal(a->arr.type, b->arr.type);
        assert_int_equal(a->arr.n, b->arr.n);
        for (uint64_t i = 0; i < a->arr.n; i++) check_same_value(&a->arr.items[i], &b->arr.items[i]);
        break;
    case GGUF_F32: case GGUF_F64: assert_true(a->f == b->f); break;
    case GGUF_I8: case GGUF_I16: case GGUF_I32: case GGUF_I64: assert_int_equal(a->i, b->i); break;
    default: assert_int_equal(a->u, b->u); break;
    }
}

static void roundtrip(uint32_t align) {
    fixture f;
    build(&f, align);
    char *p = tmp_path("rt.gguf");
    assert_int_equal(gguf_write(p, f.kv, f.n_kv, f.t, N_T), WICK_OK);
    gguf_file *g = NULL;
    wick_status st = gguf_open(p, &g);
    if (st) fail_msg("%s", wick_last_error());
    assert_int_equal(g->version, 3);
    assert_int_equal(g->n_kv, f.n_kv);
    assert_int_equal(g->alignment, align ? align : 32);
    for (int i = 0; i < f.n_kv; i++) {
        const gguf_kv *kv = gguf_find_kv(g, f.kv[i].key);
        assert_non_null(kv);
        check_same_value(&f.kv[i].v, &kv->v);
    }
    assert_int_equal(g->n_tensors, N_T);
    for (int i = 0; i < N_T; i++) {
        const gguf_tensor *t = gguf_find_tensor(g, f.t[i].name);
        assert_non_null(t);
        assert_int_equal(t->dt, f.t[i].dt);
        assert_int_equal(t->n_dims, 2);
        assert_int_equal(t->ne[0], f.t[i].ne[0]);
        assert_int_equal(t->ne[1], 3);
        assert_int_equal(((uintptr_t)t->data - (uintptr_t)g->mf.data) % g->alignment, 0);
        assert_int_equal(t->nbytes, dtype_row_bytes(t->dt, t->ne[0]) * 3);
        assert_memory_equal(t->data, f.data[i], t->nbytes);
    }
    int64_t iv;
    double fv;
    char *s;
    assert_true(gguf_get_int(g, "t.u32", &iv, NULL) && iv == 4000000000ll);
    assert_true(gguf_get_int(g, "t.i8", &iv, NULL) && iv == -100);
    assert_true(gguf_get_float(g, "t.f32", &fv, NULL) && fv == 1.5);
    assert_true(gguf_get_str(g, "t.str", &s, NULL));
    assert_string_equal(s, "héllo");
    free(s);
    st = WICK_OK;
    assert_false(gguf_get_int(g, "t.str", &iv, &st));
    assert_int_equal(st, WICK_ERR_FORMAT);
    assert_non_null(strstr(wick_last_error(), "t.str"));
    assert_null(gguf_find_kv(g, "nope"));
    gguf_close(g);
    free(p);
    unbuild(&f);
}

static void test_roundtrip(void **state) {
    roundtrip(0);
    roundtrip(64);
    roundtrip(1);
}

static void test_write_rejects(void **state) {
    fixture f;
    build(&f, 0);
    char *p = tmp_path("bad.gguf");
    f.t[3].ne[0] = 33; /* not a Q8_0 block multiple */
    assert_int_equal(gguf_write(p, f.kv, f.n_kv, f.t, N_T), WICK_ERR_INVALID_ARG);
    assert_false(file_exists(p));
    f.t[3].ne[0] = 64;
    f.t[2].name = f.t[1].name; /* duplicate */
    assert_int_equal(gguf_write(p, f.kv, f.n_kv, f.t, N_T), WICK_ERR_INVALID_ARG);
    assert_false(file_exists(p));
    free(p);
    unbuild(&f);
}

static unsigned char *read_file(const char *p, size_t *n) {
    char *d;
    assert_int_equal(file_read_all(p, &d, n), WICK_OK);
    return (unsigned char *)d;
}

/* Every prefix of a valid file fails cleanly (ASan/UBSan check the reader's bounds). */
static void test_truncations(void **state) {
    fixture f;
    build(&f, 0);
    char *p = tmp_path("full.gguf"), *q = tmp_path("cut.gguf");
    assert_int_equal(gguf_write(p, f.kv, f.n_kv, f.t, N_T), WICK_OK);
    size_t n;
    unsigned char *d = read_file(p, &n);
    for (size_t cut = 0; cut < n; cut += (cut < 600 ? 1 : 97)) {
        tu_write_file(q, d, cut);
        gguf_file *g = (gguf_file *)1;
        wick_status st = gguf_open(q, &g);
        if (st == WICK_OK) fail_msg("prefix of %zu of %zu bytes was accepted", cut, n);
        assert_null(g);
        assert_non_null(strstr(wick_last_error(), "cut.gguf"));
    }
    /* flipped bytes: either a clean error or a file that still validates */
    for (size_t i = 0; i < n && i < 900; i++) {
        unsigned char save = d[i];
        d[i] ^= 0xA5;
        tu_write_file(q, d, n);
        gguf_file *g = NULL;
        if (gguf_open(q, &g) == WICK_OK) gguf_close(g);
        d[i] = save;
    }
    free(d);
    free(p);
    free(q);
    unbuild(&f);
}

static void put32(unsigned char *b, uint32_t v) { memcpy(b, &v, 4); }
static void put64(unsigned char *b, uint64_t v) { memcpy(b, &v, 8); }

/* A minimal file: no kvs, one F32 tensor "x" of 8 values; returns its size. */
static size_t minimal(unsigned char *b, uint32_t version, uint32_t type, uint64_t offset,
                      uint64_t ne0) {
    size_t n = 0;
    memcpy(b, "GGUF", 4); n += 4;
    put32(b + n, version); n += 4;
    put64(b + n, 1); n += 8;
    put64(b + n, 0); n += 8;
    put64(b + n, 1); n += 8;
    b[n++] = 'x';
    put32(b + n, 1); n += 4;
    put64(b + n, ne0); n += 8;
    put32(b + n, type); n += 4;
    put64(b + n, offset); n += 8;
    while (n % 32) b[n++] = 0;
    memset(b + n, 0, 64);
    return n + 64;
}

static void expect_error(const unsigned char *b, size_t n, wick_status want, const char *needle) {
    char *q = tmp_path("m.gguf");
    tu_write_file(q, b, n);
    gguf_file *g = NULL;
    wick_status st = gguf_open(q, &g);
    if (st != want) fail_msg("status %d, want %d (%s)", st, want, wick_last_error());
    if (needle && !strstr(wick_last_error(), needle))
        fail_msg("message '%s' lacks '%s'", wick_last_error(), needle);
    free(q);
}

static void test_bad_fields(void **state) {
    unsigned char b[256];
    size_t n = minimal(b, 3, 0, 0, 8);
    char *q = tmp_path("m.gguf");
    tu_write_file(q, b, n);
    gguf_file *g = NULL;
    assert_int_equal(gguf_open(q, &g), WICK_OK);
    assert_int_equal(g->tensors[0].nbytes, 32);
    gguf_close(g);
    free(q);
    n = minimal(b, 3, 0, 0, 8); b[0] = 'X';
    expect_error(b, n, WICK_ERR_FORMAT, "magic");
    n = minimal(b, 9, 0, 0, 8);
    expect_error(b, n, WICK_ERR_UNSUPPORTED, "version 9");
    n = minimal(b, 3, 7, 0, 8);   /* Q5_1: not supported */
    expect_error(b, n, WICK_ERR_UNSUPPORTED, "tensor x");
    n = minimal(b, 3, 0, 4, 8);   /* misaligned */
    expect_error(b, n, WICK_ERR_FORMAT, "alignment");
    n = minimal(b, 3, 0, 32, 16); /* 64 bytes at 32: past the end */
    expect_error(b, n, WICK_ERR_FORMAT, "tensor x");
    n = minimal(b, 3, 8, 0, 40);  /* Q8_0 row of 40 values */
    expect_error(b, n, WICK_ERR_FORMAT, "blocks");
    n = minimal(b, 3, 0, 0, 1ull << 62);
    expect_error(b, n, WICK_ERR_FORMAT, "tensor x");
    /* huge counts are refused before allocating */
    n = minimal(b, 3, 0, 0, 8); put64(b + 8, 1ull << 60);
    expect_error(b, n, WICK_ERR_FORMAT, "tensor count");
    n = minimal(b, 3, 0, 0, 8); put64(b + 16, 1ull << 60);
    expect_error(b, n, WICK_ERR_FORMAT, "key/value count");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_write_rejects),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_bad_fields),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
