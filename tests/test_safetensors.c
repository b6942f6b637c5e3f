/* test_safetensors.c — safetensors reader/writer: malformed files (each its own test, checking
 * the status and that the message names the field/tensor), write->read round trips, sharded
 * folders with an index, and the golden model files of the fixtures.
 * Not covered here: allocation-failure injection (no hook for it in base/ yet). */
#include "testutil.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "formats/safetensors.h"

/* ---------- helpers ---------- */

typedef struct {
    char *dir;
    char path[4096];
} tmpf;

static tmpf tmp_new(const char *name) {
    tmpf t;
    t.dir = tu_mkdtemp();
    snprintf(t.path, sizeof t.path, "%s/%s", t.dir, name);
    return t;
}

static void tmp_free(tmpf *t) {
    tu_rmdir_rf(t->dir);
    free(t->dir);
}

/* Writes 8-byte length + header + `data_len` bytes of data (values 0,1,2,...). */
static void write_raw(const char *path, const char *header, size_t data_len) {
    size_t hl = strlen(header);
    unsigned char *buf = malloc(8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) buf[8 + hl + i] = (unsigned char)i;
    tu_write_file(path, buf, 8 + hl + data_len);
    free(buf);
}

/* Opens a file built from `header` + data and expects `want`, with every string of the
 * NULL-terminated `needles` in the message, plus the file path. */
static void expect_fail_hdr(const char *header, size_t data_len, wick_status want,
                            const char *needle1, const char *needle2) {
    tmpf t = tmp_new("bad.safetensors");
    write_raw(t.path, header, data_len);
    st_set *s = (st_set *)0x1;
    wick_status st = st_open(t.path, &s);
    const char *msg = wick_last_error();
    if (st != want) fail_msg("status %d (want %d): %s", st, want, msg);
    assert_null(s);
    if (!strstr(msg, t.path)) fail_msg("message lacks the path: %s", msg);
    if (needle1 && !strstr(msg, needle1)) fail_msg("message lacks '%s': %s", needle1, msg);
    if (needle2 && !strstr(msg, needle2)) fail_msg("message lacks '%s': %s", needle2, msg);
    tmp_free(&t);
}

static void assert_msg_has(const char *needle) {
    const char *msg = wick_last_error();
    if (!strstr(msg, needle)) fail_msg("message lacks '%s': %s", needle, msg);
}

static bool dir_is_empty_except(const char *dir, const char *keep) {
    DIR *d = opendir(dir);
    struct dirent *e;
    bool empty = true;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (keep && !strcmp(e->d_name, keep)) continue;
        empty = false;
    }
    closedir(d);
    return empty;
}

/* ---------- malformed files ---------- */

static void test_truncated_short(void **state) {
    tmpf t = tmp_new("short.safetensors");
    tu_write_file(t.path, "\x10\0\0", 3);
    st_set *s = NULL;
    assert_int_equal(st_open(t.path, &s), WICK_ERR_FORMAT);
    assert_null(s);
    assert_msg_has(t.path);
    assert_msg_has("truncated");
    tmp_free(&t);
}

static void test_empty_file(void **state) {
    tmpf t = tmp_new("empty.safetensors");
    tu_write_file(t.path, "", 0);
    st_set *s = NULL;
    assert_int_equal(st_open(t.path, &s), WICK_ERR_FORMAT);
    assert_msg_has("truncated");
    tmp_free(&t);
}

/* A valid file cut in the middle of its header. */
static void test_truncated_header(void **state) {
    tmpf t = tmp_new("cut.safetensors");
    float v[4] = {1, 2, 3, 4};
    st_write_tensor w = {.name = "w", .dt = DT_F32, .ndim = 1, .shape = {4}, .data = v};
    assert_int_equal(st_write(t.path, &w, 1, NULL, NULL, 0), WICK_OK);
    struct stat sb;
    assert_int_equal(stat(t.path, &sb), 0);
    assert_int_equal(truncate(t.path, 20), 0);
    st_set *s = NULL;
    assert_int_equal(st_open(t.path, &s), WICK_ERR_FORMAT);
    assert_msg_has("header length");
    assert_msg_has("truncated");
    tmp_free(&t);
}

/* A valid file cut in its data section: the tensor's range leaves the file. */
static void test_truncated_data(void **state) {
    tmpf t = tmp_new("cutdata.safetensors");
    float v[4] = {1, 2, 3, 4};
    st_write_tensor w = {.name = "w.cut", .dt = DT_F32, .ndim = 1, .shape = {4}, .data = v};
    assert_int_equal(st_write(t.path, &w, 1, NULL, NULL, 0), WICK_OK);
    struct stat sb;
    assert_int_equal(stat(t.path, &sb), 0);
    assert_int_equal(truncate(t.path, sb.st_size - 1), 0);
    st_set *s = NULL;
    assert_int_equal(st_open(t.path, &s), WICK_ERR_FORMAT);
    assert_msg_has("w.cut");
    assert_msg_has("outside the data section");
    tmp_free(&t);
}

static void test_header_len_too_large(void **state) {
    tmpf t = tmp_new("hlen.safetensors");
    unsigned char buf[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    tu_write_file(t.path, buf, 10);
    st_set *s = NULL;
    assert_int_equal(st_open(t.path, &s), WICK_ERR_FORMAT);
    assert_msg_has("header length 18446744073709551615 larger than the file");
    buf[0] = 3;   /* 3 bytes of header, 2 present */
    memset(buf + 1, 0, 7);
    tu_write_file(t.path, buf, 10);
    assert_int_equal(st_open(t.path, &s), WICK_ERR_FORMAT);
    assert_msg_has("header length 3");
    tmp_free(&t);
}

static void test_not_json(void **state) {
    expect_fail_hdr("{\"a\": {\"dtype\": \"F32\", ", 0, WICK_ERR_FORMAT, "not valid JSON", NULL);
}

static void test_trailing_garbage(void **state) {
    expect_fail_hdr("{}  x", 0, WICK_ERR_FORMAT, "not valid JSON", NULL);
}

static void test_not_object(void **state) {
    expect_fail_hdr("[1, 2]", 0, WICK_ERR_FORMAT, "not a JSON object", NULL);
}

static void test_entry_not_object(void **state) {
    expect_fail_hdr("{\"t.x\": 5}", 0, WICK_ERR_FORMAT, "tensor t.x", "not an object");
}

static void test_unknown_dtype(void **state) {
    expect_fail_hdr("{\"t.q\": {\"dtype\": \"Q4\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1,
                    WICK_ERR_FORMAT, "tensor t.q", "unknown dtype Q4");
}

static void test_missing_dtype(void **state) {
    expect_fail_hdr("{\"t.m\": {\"shape\": [1], \"data_offsets\": [0, 1]}}", 1, WICK_ERR_FORMAT,
                    "tensor t.m", "missing dtype");
}

static void test_shape_bytes_mismatch(void **state) {
    expect_fail_hdr("{\"t.s\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 20]}}",
                    24, WICK_ERR_FORMAT, "tensor t.s", "need 24 bytes but data_offsets span 20");
}

static void test_offsets_outside(void **state) {
    expect_fail_hdr("{\"t.o\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [4, 12]}}", 10,
                    WICK_ERR_FORMAT, "tensor t.o", "outside the data section");
}

static void test_offsets_reversed(void **state) {
    expect_fail_hdr("{\"t.r\": {\"dtype\": \"U8\", \"shape\": [0], \"data_offsets\": [4, 2]}}", 10,
                    WICK_ERR_FORMAT, "tensor t.r", "begin 4 > end 2");
}

static void test_offsets_not_integers(void **state) {
    expect_fail_hdr("{\"t.i\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0.5, 1]}}", 4,
                    WICK_ERR_FORMAT, "tensor t.i", "data_offsets");
    expect_fail_hdr("{\"t.j\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0]}}", 4,
                    WICK_ERR_FORMAT, "tensor t.j", "data_offsets");
}

static void test_overlap(void **state) {
    expect_fail_hdr("{\"t.a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
                    " \"t.b\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [8, 12]},"
                    " \"t.c\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [2, 6]}}",
                    12, WICK_ERR_FORMAT, "t.a [0, 4] and t.c [2, 6] overlap", NULL);
}

static void test_duplicate_names(void **state) {
    expect_fail_hdr("{\"t.d\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
                    " \"t.d\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [4, 8]}}",
                    8, WICK_ERR_FORMAT, "tensor t.d", "duplicate name");
}

static void test_bad_metadata(void **state) {
    expect_fail_hdr("{\"__metadata__\": {\"format\": \"pt\", \"n\": 3}}", 0, WICK_ERR_FORMAT,
                    "__metadata__ entry \"n\"", "not a string");
    expect_fail_hdr("{\"__metadata__\": [\"pt\"]}", 0, WICK_ERR_FORMAT, "__metadata__",
                    "not an object");
}

static void test_negative_shape(void **state) {
    expect_fail_hdr("{\"t.n\": {\"dtype\": \"F32\", \"shape\": [-1, 4], \"data_offsets\": [0, 0]}}",
                    0, WICK_ERR_FORMAT, "tensor t.n", "shape[0] is not a non-negative integer");
}

static void test_shape_not_array(void **state) {
    expect_fail_hdr("{\"t.p\": {\"dtype\": \"F32\", \"shape\": 4, \"data_offsets\": [0, 16]}}",
                    16, WICK_ERR_FORMAT, "tensor t.p", "shape");
}

static void test_overflow_shape(void **state) {
    /* 2^32 * 2^32 elements overflows int64 */
    expect_fail_hdr("{\"t.big\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296],"
                    " \"data_offsets\": [0, 0]}}", 0, WICK_ERR_FORMAT, "tensor t.big",
                    "overflows");
    /* 2^62 elements fit in int64, but 2^62 * 4 bytes does not */
    expect_fail_hdr("{\"t.big2\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904],"
                    " \"data_offsets\": [0, 0]}}", 0, WICK_ERR_FORMAT, "tensor t.big2",
                    "overflows");
}

static void test_too_many_dims(void **state) {
    expect_fail_hdr("{\"t.dims\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1],"
                    " \"data_offsets\": [0, 1]}}", 1, WICK_ERR_FORMAT, "tensor t.dims",
                    "9 dims");
}

/* ---------- round trips ---------- */

static void test_roundtrip(void **state) {
    tmpf t = tmp_new("rt.safetensors");
    float f32[6] = {1.5f, -2, 3, 0.25f, 1e-3f, -7};
    uint16_t bf[3] = {0x3f80, 0xc000, 0x7fc0};
    int64_t i64[2] = {-5, INT64_MAX};
    uint8_t u8[5] = {1, 2, 3, 4, 250};
    double f64 = 3.25;
    st_write_tensor w[] = {
        {.name = "a.f32", .dt = DT_F32, .ndim = 2, .shape = {2, 3}, .data = f32},
        {.name = "b.bf16", .dt = DT_BF16, .ndim = 1, .shape = {3}, .data = bf},
        {.name = "c.empty", .dt = DT_F16, .ndim = 2, .shape = {0, 7}, .data = NULL},
        {.name = "d.i64", .dt = DT_I64, .ndim = 1, .shape = {2}, .data = i64},
        {.name = "e.u8", .dt = DT_U8, .ndim = 3, .shape = {5, 1, 1}, .data = u8},
        {.name = "f.scalar \"quoted\"", .dt = DT_F64, .ndim = 0, .shape = {0}, .data = &f64},
    };
    int n = (int)(sizeof w / sizeof w[0]);
    assert_int_equal(st_write(t.path, w, n, NULL, NULL, 0), WICK_OK);
    assert_true(dir_is_empty_except(t.dir, "rt.safetensors"));

    st_set *s = NULL;
    if (st_open(t.path, &s) != WICK_OK) fail_msg("%s", wick_last_error());
    assert_int_equal(st_count(s), n);
    assert_null(st_at(s, n));
    assert_null(st_at(s, -1));
    assert_null(st_metadata(s, "format"));
    assert_string_equal(st_file_path(s, 0), t.path);
    assert_null(st_file_path(s, 1));
    for (int i = 0; i < n; i++) {
        const st_tensor *r = st_at(s, i);
        assert_string_equal(r->name, w[i].name);   /* header order preserved */
        assert_ptr_equal(st_find(s, w[i].name), r);
        assert_int_equal(r->dt, w[i].dt);
        assert_int_equal(r->ndim, w[i].ndim);
        int64_t numel = 1;
        for (int k = 0; k < r->ndim; k++) {
            assert_int_equal(r->shape[k], w[i].shape[k]);
            numel *= w[i].shape[k];
        }
        assert_int_equal(r->numel, numel);
        assert_int_equal(r->nbytes, (size_t)numel * dtype_size(w[i].dt));
        assert_int_equal(r->file, 0);
        if (r->nbytes)
            assert_memory_equal(r->data, w[i].data, r->nbytes);
        else
            assert_null(r->data);
    }
    /* the data section starts 8-aligned, so the first tensor is 8-aligned in memory */
    assert_int_equal((uintptr_t)st_at(s, 0)->data % 8, 0);
    assert_int_equal(st_find(s, "f.scalar \"quoted\"")->numel, 1);
    assert_null(st_find(s, "missing"));
    assert_null(st_find(s, ""));
    st_close(s);
    tmp_free(&t);
}

static void test_roundtrip_empty_file(void **state) {
    tmpf t = tmp_new("none.safetensors");
    assert_int_equal(st_write(t.path, NULL, 0, NULL, NULL, 0), WICK_OK);
    st_set *s = NULL;
    assert_int_equal(st_open(t.path, &s), WICK_OK);
    assert_int_equal(st_count(s), 0);
    assert_null(st_find(s, "x"));
    st_close(s);
    tmp_free(&t);
}

static void test_metadata_roundtrip(void **state) {
    tmpf t = tmp_new("meta.safetensors");
    int32_t v[2] = {7, -8};
    st_write_tensor w = {.name = "x", .dt = DT_I32, .ndim = 1, .shape = {2}, .data = v};
    const char *keys[] = {"format", "note"};
    const char *vals[] = {"pt", "line\nbreak \"q\" \\ \xc3\xa9"};
    assert_int_equal(st_write(t.path, &w, 1, keys, vals, 2), WICK_OK);
    st_set *s = NULL;
    if (st_open(t.path, &s) != WICK_OK) fail_msg("%s", wick_last_error());
    assert_string_equal(st_metadata(s, "format"), "pt");
    assert_string_equal(st_metadata(s, "note"), vals[1]);
    assert_null(st_metadata(s, "absent"));
    assert_int_equal(st_count(s), 1);
    assert_memory_equal(st_find(s, "x")->data, v, sizeof v);
    st_close(s);
    tmp_free(&t);
}

static void test_write_errors(void **state) {
    tmpf t = tmp_new("w.safetensors");
    float v[2] = {1, 2};
    st_write_tensor nodata = {.name = "nd", .dt = DT_F32, .ndim = 1, .shape = {2}, .data = NULL};
    assert_int_equal(st_write(t.path, &nodata, 1, NULL, NULL, 0), WICK_ERR_INVALID_ARG);
    assert_msg_has("tensor nd");
    assert_msg_has("NULL");
    st_write_tensor dup[2] = {
        {.name = "same", .dt = DT_F32, .ndim = 1, .shape = {2}, .data = v},
        {.name = "same", .dt = DT_F32, .ndim = 1, .shape = {1}, .data = v},
    };
    assert_int_equal(st_write(t.path, dup, 2, NULL, NULL, 0), WICK_ERR_INVALID_ARG);
    assert_msg_has("tensor same: duplicate name");
    st_write_tensor baddt = {.name = "bd", .dt = (dtype)99, .ndim = 1, .shape = {2}, .data = v};
    assert_int_equal(st_write(t.path, &baddt, 1, NULL, NULL, 0), WICK_ERR_INVALID_ARG);
    assert_msg_has("tensor bd: bad dtype");
    st_write_tensor neg = {.name = "ng", .dt = DT_F32, .ndim = 1, .shape = {-2}, .data = v};
    assert_int_equal(st_write(t.path, &neg, 1, NULL, NULL, 0), WICK_ERR_INVALID_ARG);
    assert_msg_has("tensor ng");
    st_write_tensor dims = {.name = "dm", .dt = DT_F32, .ndim = 9, .data = v};
    assert_int_equal(st_write(t.path, &dims, 1, NULL, NULL, 0), WICK_ERR_INVALID_ARG);
    assert_msg_has("tensor dm: ndim 9");
    const char *k[] = {"a", "a"}, *val[] = {"1", "2"};
    assert_int_equal(st_write(t.path, dup, 1, k, val, 2), WICK_ERR_INVALID_ARG);
    assert_msg_has("metadata key a");
    /* nothing was created, not even a temp file */
    assert_true(dir_is_empty_except(t.dir, NULL));
    /* unwritable location: IO error, nothing left */
    char bad[4200];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.safetensors", t.dir);
    assert_int_equal(st_write(bad, dup, 1, NULL, NULL, 0), WICK_ERR_IO);
    assert_true(dir_is_empty_except(t.dir, NULL));
    tmp_free(&t);
}

/* ---------- folders ---------- */

static void write_index(const char *dir, const char *weight_map) {
    char p[4200], text[4096];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    snprintf(text, sizeof text, "{\"metadata\": {\"total_size\": 40}, \"weight_map\": {%s}}",
             weight_map);
    tu_write_file(p, text, strlen(text));
}

/* Two shards: shard 1 holds "a" (F32 [2]) and "b" (U8 [3]); shard 2 holds "c" (BF16 [2,2]). */
static char *make_shards(void) {
    char *dir = tu_mkdtemp();
    char p[4200];
    float a[2] = {1, 2};
    uint8_t b[3] = {9, 8, 7};
    uint16_t c[4] = {0x3f80, 0x4000, 0x4040, 0x4080};
    st_write_tensor s1[] = {
        {.name = "a", .dt = DT_F32, .ndim = 1, .shape = {2}, .data = a},
        {.name = "b", .dt = DT_U8, .ndim = 1, .shape = {3}, .data = b},
    };
    st_write_tensor s2[] = {{.name = "c", .dt = DT_BF16, .ndim = 2, .shape = {2, 2}, .data = c}};
    const char *k[] = {"format"}, *v1[] = {"shard1"}, *v2[] = {"shard2"};
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    assert_int_equal(st_write(p, s1, 2, k, v1, 1), WICK_OK);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    assert_int_equal(st_write(p, s2, 1, k, v2, 1), WICK_OK);
    return dir;
}

static void test_sharded_dir(void **state) {
    char *dir = make_shards();
    /* weight_map order puts shard 2 first; file order must still follow the shard names */
    write_index(dir, "\"c\": \"model-00002-of-00002.safetensors\","
                     "\"a\": \"model-00001-of-00002.safetensors\","
                     "\"b\": \"model-00001-of-00002.safetensors\"");
    st_set *s = NULL;
    if (st_open_dir(dir, &s) != WICK_OK) fail_msg("%s", wick_last_error());
    assert_int_equal(st_count(s), 3);
    assert_string_equal(st_at(s, 0)->name, "a");
    assert_string_equal(st_at(s, 1)->name, "b");
    assert_string_equal(st_at(s, 2)->name, "c");
    const st_tensor *c = st_find(s, "c");
    assert_non_null(c);
    assert_int_equal(c->file, 1);
    assert_int_equal(c->dt, DT_BF16);
    assert_int_equal(c->shape[1], 2);
    assert_int_equal(((const uint16_t *)c->data)[3], 0x4080);
    assert_int_equal(st_find(s, "b")->file, 0);
    assert_int_equal(((const uint8_t *)st_find(s, "b")->data)[2], 7);
    assert_non_null(strstr(st_file_path(s, 1), "model-00002-of-00002.safetensors"));
    assert_string_equal(st_metadata(s, "format"), "shard1");   /* first file's metadata */
    st_close(s);
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_single_file_dir(void **state) {
    char *dir = tu_mkdtemp();
    char p[4200];
    float a[1] = {4};
    st_write_tensor w = {.name = "only", .dt = DT_F32, .ndim = 1, .shape = {1}, .data = a};
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    assert_int_equal(st_write(p, &w, 1, NULL, NULL, 0), WICK_OK);
    st_set *s = NULL;
    assert_int_equal(st_open_dir(dir, &s), WICK_OK);
    assert_int_equal(st_count(s), 1);
    assert_non_null(st_find(s, "only"));
    st_close(s);
    tu_rmdir_rf(dir);
    free(dir);
}

static void expect_dir_fail(const char *dir, wick_status want, const char *n1, const char *n2) {
    st_set *s = (st_set *)0x1;
    wick_status st = st_open_dir(dir, &s);
    if (st != want) fail_msg("status %d (want %d): %s", st, want, wick_last_error());
    assert_null(s);
    if (n1) assert_msg_has(n1);
    if (n2) assert_msg_has(n2);
}

static void test_index_missing_tensor(void **state) {
    char *dir = make_shards();
    write_index(dir, "\"a\": \"model-00001-of-00002.safetensors\","
                     "\"zz\": \"model-00002-of-00002.safetensors\"");
    expect_dir_fail(dir, WICK_ERR_FORMAT, "tensor zz", "model-00002-of-00002.safetensors");
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_index_wrong_shard(void **state) {
    char *dir = make_shards();
    write_index(dir, "\"a\": \"model-00002-of-00002.safetensors\","
                     "\"c\": \"model-00001-of-00002.safetensors\"");
    expect_dir_fail(dir, WICK_ERR_FORMAT, "tensor a: index names shard "
                    "model-00002-of-00002.safetensors", NULL);
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_index_missing_shard(void **state) {
    char *dir = make_shards();
    write_index(dir, "\"a\": \"model-00001-of-00002.safetensors\","
                     "\"q\": \"model-00003-of-00002.safetensors\"");
    expect_dir_fail(dir, WICK_ERR_IO, "model-00003-of-00002.safetensors", "index.json");
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_index_escapes_dir(void **state) {
    char *dir = make_shards();
    write_index(dir, "\"a\": \"../model-00001-of-00002.safetensors\"");
    expect_dir_fail(dir, WICK_ERR_FORMAT, "weight_map entry a", NULL);
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_index_duplicate_across_shards(void **state) {
    char *dir = make_shards();
    char p[4200];
    float a[2] = {5, 6};
    st_write_tensor w = {.name = "a", .dt = DT_F32, .ndim = 1, .shape = {2}, .data = a};
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    assert_int_equal(st_write(p, &w, 1, NULL, NULL, 0), WICK_OK);
    write_index(dir, "\"a\": \"model-00001-of-00002.safetensors\","
                     "\"b\": \"model-00002-of-00002.safetensors\"");
    expect_dir_fail(dir, WICK_ERR_FORMAT, "tensor a: duplicate", "model-00002-of-00002");
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_index_bad_json(void **state) {
    char *dir = tu_mkdtemp();
    char p[4200];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    tu_write_file(p, "{\"weight_map\": [", 16);
    expect_dir_fail(dir, WICK_ERR_FORMAT, "index.json", "JSON");
    tu_write_file(p, "{\"weight_map\": 3}", 17);
    expect_dir_fail(dir, WICK_ERR_FORMAT, "weight_map", NULL);
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_dir_neither(void **state) {
    char *dir = tu_mkdtemp();
    expect_dir_fail(dir, WICK_ERR_IO, "model.safetensors ", "model.safetensors.index.json");
    tu_rmdir_rf(dir);
    free(dir);
}

static void test_open_missing_file(void **state) {
    st_set *s = NULL;
    assert_int_equal(st_open("/nonexistent/wick/x.safetensors", &s), WICK_ERR_IO);
    assert_null(s);
    assert_msg_has("/nonexistent/wick/x.safetensors");
}

/* ---------- golden files ---------- */

static void test_golden_tiny_qwen2(void **state) {
    TU_REQUIRE_FIXTURE(dir, "tiny-qwen2");
    st_set *s = NULL;
    if (st_open_dir(dir, &s) != WICK_OK) fail_msg("%s", wick_last_error());
    assert_int_equal(st_count(s), 26);   /* README: 26 float32 tensors, no lm_head */
    const st_tensor *e = st_find(s, "model.embed_tokens.weight");
    assert_non_null(e);
    assert_int_equal(e->dt, DT_F32);
    assert_int_equal(e->ndim, 2);
    assert_int_equal(e->shape[0], 1024);
    assert_int_equal(e->shape[1], 64);
    assert_null(st_find(s, "lm_head.weight"));
    const st_tensor *qb = st_find(s, "model.layers.1.self_attn.q_proj.bias");
    assert_non_null(qb);
    assert_int_equal(qb->ndim, 1);
    assert_int_equal(qb->shape[0], 64);
    for (int i = 0; i < st_count(s); i++) assert_int_equal(st_at(s, i)->dt, DT_F32);
    st_close(s);
    free(dir);
}

static void test_golden_small_qwen2(void **state) {
    TU_REQUIRE_FIXTURE(dir, "small-qwen2");
    char *p = malloc(strlen(dir) + 32);
    sprintf(p, "%s/model.safetensors", dir);
    st_set *s = NULL;
    if (st_open(p, &s) != WICK_OK) fail_msg("%s", wick_last_error());
    assert_true(st_count(s) > 0);
    for (int i = 0; i < st_count(s); i++) assert_int_equal(st_at(s, i)->dt, DT_BF16);
    assert_non_null(st_find(s, "model.norm.weight"));
    st_close(s);
    free(p);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncated_short),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_truncated_header),
        cmocka_unit_test(test_truncated_data),
        cmocka_unit_test(test_header_len_too_large),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_trailing_garbage),
        cmocka_unit_test(test_not_object),
        cmocka_unit_test(test_entry_not_object),
        cmocka_unit_test(test_unknown_dtype),
        cmocka_unit_test(test_missing_dtype),
        cmocka_unit_test(test_shape_bytes_mismatch),
        cmocka_unit_test(test_offsets_outside),
        cmocka_unit_test(test_offsets_reversed),
        cmocka_unit_test(test_offsets_not_integers),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_duplicate_names),
        cmocka_unit_test(test_bad_metadata),
        cmocka_unit_test(test_negative_shape),
        cmocka_unit_test(test_shape_not_array),
        cmocka_unit_test(test_overflow_shape),
        cmocka_unit_test(test_too_many_dims),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_roundtrip_empty_file),
        cmocka_unit_test(test_metadata_roundtrip),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_sharded_dir),
        cmocka_unit_test(test_single_file_dir),
        cmocka_unit_test(test_index_missing_tensor),
        cmocka_unit_test(test_index_wrong_shard),
        cmocka_unit_test(test_index_missing_shard),
        cmocka_unit_test(test_index_escapes_dir),
        cmocka_unit_test(test_index_duplicate_across_shards),
        cmocka_unit_test(test_index_bad_json),
        cmocka_unit_test(test_dir_neither),
        cmocka_unit_test(test_open_missing_file),
        cmocka_unit_test(test_golden_tiny_qwen2),
        cmocka_unit_test(test_golden_small_qwen2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
