/* test_hub.c — wick_hub_download / wick pull / hf:// against a loopback server with the Hub's
 * URL layout and headers (these machines reach no real hub): the revision API, resolve URLs,
 * LFS files behind a 302 to a "CDN" path with X-Linked-Etag (sha256) and X-Linked-Size,
 * ordinary files with a git-sha1 ETag, 206 ranges. Faults: a connection dropped mid-file
 * (resumed with Range), a corrupted body (checksum refused, nothing published), a gated repo
 * (401 without the token), a missing repo (404), a file list that escapes the folder, the
 * cache reused (nothing fetched twice), offline mode, include patterns, hf:// in
 * wick_model_load. The repository's files are the tiny-qwen2 fixture's. */
#include "testutil.h"

#include <microhttpd.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fileio.h"

#define COMMIT "0123456789abcdef0123456789abcdef01234567"

typedef struct hfile { const char *name; char *data; size_t len; char etag[80]; bool lfs; } hfile;
static hfile g_files[3];
static int g_nfiles;
static atomic_int g_cdn_gets, g_range_gets, g_drop_once, g_corrupt;
static struct MHD_Daemon *g_d;
static int g_port;

static void hexdig(const EVP_MD *md, const char *pre, size_t pl, const char *d, size_t n, char *out) {
    unsigned char h[64];
    unsigned hl = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_DigestInit_ex(c, md, NULL);
    if (pre) EVP_DigestUpdate(c, pre, pl);
    EVP_DigestUpdate(c, d, n);
    EVP_DigestFinal_ex(c, h, &hl);
    EVP_MD_CTX_free(c);
    for (unsigned i = 0; i < hl; i++) sprintf(out + 2 * i, "%02x", h[i]);
}

typedef struct body { const hfile *f; size_t off; bool drop; bool corrupt; } body;

static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max) {
    body *b = cls;
    size_t at = b->off + (size_t)pos;
    if (b->drop && pos >= (b->f->len - b->off) / 2) return MHD_CONTENT_READER_END_WITH_ERROR;
    if (at >= b->f->len) return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = b->f->len - at < max ? b->f->len - at : max;
    if (b->drop && pos + n > (b->f->len - b->off) / 2) n = (b->f->len - b->off) / 2 - (size_t)pos;
    memcpy(buf, b->f->data + at, n);
    if (b->corrupt && at <= 100 && 100 < at + n) buf[100 - at] ^= 1;
    return (ssize_t)n;
}

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned code, const char *t) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(t), (void *)t, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ok = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *ver, const char *up, size_t *upn, void **state) {
    (void)cls, (void)ver, (void)up, (void)upn, (void)state;
    const bool head = !strcmp(method, "HEAD");
    char repo[64] = "";
    const char *rest = NULL;
    if (!strncmp(url, "/api/models/", 12)) {
        const char *p = url + 12, *r = strstr(p, "/revision/");
        if (!r) return send_text(c, 404, "{}");
        snprintf(repo, sizeof repo, "%.*s", (int)(r - p), p);
        if (!strcmp(repo, "org/gated")) {
            const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
            if (!a || strcmp(a, "Bearer secret")) return send_text(c, 401, "{\"error\":\"gated\"}");
        }
        if (!strcmp(repo, "org/evil"))
            return send_text(c, 200, "{\"sha\":\"" COMMIT "\",\"siblings\":[{\"rfilename\":\"../../x\"}]}");
        if (strcmp(repo, "org/tiny") && strcmp(repo, "org/gated")) return send_text(c, 404, "{}");
        char js[1024];
        int n = snprintf(js, sizeof js, "{\"sha\":\"%s\",\"siblings\":[", COMMIT);
        for (int i = 0; i < g_nfiles; i++)
            n += snprintf(js + n, sizeof js - n, "%s{\"rfilename\":\"%s\"}", i ? "," : "", g_files[i].name);
        snprintf(js + n, sizeof js - n, "]}");
        return send_text(c, 200, js);
    }
    if (!strncmp(url, "/cdn/", 5)) {
        const hfile *f = NULL;
        for (int i = 0; i < g_nfiles; i++)
            if (!strcmp(url + 5, g_files[i].etag)) f = &g_files[i];
        if (!f) return send_text(c, 404, "no");
        if (head) return send_text(c, 200, "");
        atomic_fetch_add(&g_cdn_gets, 1);
        body *b = calloc(1, sizeof *b);
        b->f = f;
        const char *rg = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
        unsigned code = 200;
        if (rg && !strncmp(rg, "bytes=", 6)) {
            b->off = strtoull(rg + 6, NULL, 10);
            code = 206;
            atomic_fetch_add(&g_range_gets, 1);
        }
        int one = 1;
        b->drop = atomic_compare_exchange_strong(&g_drop_once, &one, 0);
        b->corrupt = atomic_load(&g_corrupt) != 0;
        struct MHD_Response *r = MHD_create_response_from_callback(f->len - b->off, 1 << 14, reader, b, free);
        if (code == 206) {
            char cr[96];
            snprintf(cr, sizeof cr, "bytes %zu-%zu/%zu", b->off, f->len - 1, f->len);
            MHD_add_response_header(r, "Content-Range", cr);
        }
        enum MHD_Result ok = MHD_queue_response(c, code, r);
        MHD_destroy_response(r);
        return ok;
    }
    /* /ORG/NAME/resolve/COMMIT/FILE */
    const char *rs = strstr(url, "/resolve/");
    if (!rs) return send_text(c, 404, "no");
    snprintf(repo, sizeof repo, "%.*s", (int)(rs - url - 1), url + 1);
    rest = rs + 9;
    if (strncmp(rest, COMMIT "/", 41)) return send_text(c, 404, "no such revision");
    const char *name = rest + 41;
    const hfile *f = NULL;
    for (int i = 0; i < g_nfiles; i++)
        if (!strcmp(name, g_files[i].name)) f = &g_files[i];
    if (!f) return send_text(c, 404, "no such file");
    if (!strcmp(repo, "org/gated")) {
        const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        if (!a || strcmp(a, "Bearer secret")) return send_text(c, 401, "gated");
    }
    struct MHD_Response *r;
    unsigned code;
    char q[96];
    if (f->lfs) {
        r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        char loc[128], size[32];
        snprintf(loc, sizeof loc, "/cdn/%s", f->etag);
        snprintf(size, sizeof size, "%zu", f->len);
        snprintf(q, sizeof q, "\"%s\"", f->etag);
        MHD_add_response_header(r, "Location", loc);
        MHD_add_response_header(r, "X-Linked-Etag", q);
        MHD_add_response_header(r, "X-Linked-Size", size);
        MHD_add_response_header(r, "ETag", "\"not-the-lfs-etag\"");
        code = 302;
    } else {
        r = MHD_create_response_from_buffer(f->len, f->data, MHD_RESPMEM_PERSISTENT);
        snprintf(q, sizeof q, "\"%s\"", f->etag);
        MHD_add_response_header(r, "ETag", q);
        code = 200;
    }
    MHD_add_response_header(r, "X-Repo-Commit", COMMIT);
    enum MHD_Result ok = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ok;
}

static int setup(void **state) {
    (void)state;
    if (!tu_fixture_exists("tiny-qwen2")) return 0;
    static const char *names[] = {"config.json", "generation_config.json", "model.safetensors"};
    char *dir = tu_fixture_path("tiny-qwen2");
    for (int i = 0; i < 3; i++) {
        char p[4300];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        FILE *f = fopen(p, "rb");
        if (!f) continue;
        hfile *h = &g_files[g_nfiles++];
        fseek(f, 0, SEEK_END);
        h->len = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        h->data = malloc(h->len);
        if (fread(h->data, 1, h->len, f) != h->len) return -1;
        fclose(f);
        h->name = names[i];
        h->lfs = strstr(names[i], ".safetensors") != NULL;
        if (h->lfs) hexdig(EVP_sha256(), NULL, 0, h->data, h->len, h->etag);
        else {
            char pre[64];
            int pl = snprintf(pre, sizeof pre, "blob %zu", h->len);
            hexdig(EVP_sha1(), pre, (size_t)pl + 1, h->data, h->len, h->etag);
        }
    }
    free(dir);
    g_d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
                           handler, NULL, MHD_OPTION_END);
    if (!g_d) return -1;
    g_port = MHD_get_daemon_info(g_d, MHD_DAEMON_INFO_BIND_PORT)->port;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    if (g_d) MHD_stop_daemon(g_d);
    for (int i = 0; i < g_nfiles; i++) free(g_files[i].data);
    return 0;
}

#define REQUIRE_SERVER()                                                                  \
    do {                                                                                  \
        if (!g_d) {                                                                       \
            if (tu_ci()) fail_msg("tiny-qwen2 fixture missing under CI=true");           \
            skip();                                                                       \
        }                                                                                 \
    } while (0)

static wick_hub_params params(const char *cache, char *ep) {
    snprintf(ep, 64, "http://127.0.0.1:%d", g_port);
    wick_hub_params p = wick_hub_params_default();
    p.endpoint = ep;
    p.cache_dir = cache;
    p.token = "";
    return p;
}

static void check_snapshot(const char *dir, int want_files) {
    int found = 0;
    for (int i = 0; i < g_nfiles; i++) {
        char p[4300];
        snprintf(p, sizeof p, "%s/%s", dir, g_files[i].name);
        struct stat sb, lb;
        if (stat(p, &sb) != 0) continue;
        assert_int_equal(lstat(p, &lb), 0);
        assert_true(S_ISLNK(lb.st_mode)); /* into ../../blobs, as huggingface_hub lays it out */
        char t[4300];
        ssize_t n = readlink(p, t, sizeof t - 1);
        assert_true(n > 0);
        t[n] = 0;
        assert_non_null(strstr(t, "../../blobs/"));
        assert_non_null(strstr(t, g_files[i].etag));
        assert_int_equal((size_t)sb.st_size, g_files[i].len);
        found++;
    }
    assert_int_equal(found, want_files);
}

static void test_download_and_cache(void **state) {
    REQUIRE_SERVER();
    char *cache = tu_mkdtemp(), ep[64];
    wick_hub_params p = params(cache, ep);
    char *dir = NULL;
    int gets0 = atomic_load(&g_cdn_gets);
    assert_int_equal(wick_hub_download("org/tiny", &p, &dir), WICK_OK);
    assert_non_null(strstr(dir, "models--org--tiny/snapshots/" COMMIT));
    check_snapshot(dir, g_nfiles);
    char ref[4300], *data = NULL;
    size_t n;
    snprintf(ref, sizeof ref, "%s/models--org--tiny/refs/main", cache);
    assert_int_equal(file_read_all(ref, &data, &n), WICK_OK);
    assert_int_equal(n, 40);
    assert_memory_equal(data, COMMIT, 40);
    free(data);
    wick_model *m = NULL;
    assert_int_equal(wick_model_load(dir, NULL, &m), WICK_OK);
    wick_model_free(m);
    assert_int_equal(atomic_load(&g_cdn_gets), gets0 + 1);
    /* again: everything is cached, nothing is fetched */
    char *dir2 = NULL;
    assert_int_equal(wick_hub_download("org/tiny@main", &p, &dir2), WICK_OK);
    assert_string_equal(dir, dir2);
    assert_int_equal(atomic_load(&g_cdn_gets), gets0 + 1);
    /* offline: the cache alone, by revision name or commit */
    free(dir2);
    p.offline = true;
    p.endpoint = "http://127.0.0.1:1"; /* nothing listens: must not be asked */
    assert_int_equal(wick_hub_download("org/tiny", &p, &dir2), WICK_OK);
    assert_string_equal(dir, dir2);
    free(dir2);
    assert_int_equal(wick_hub_download("org/tiny@" COMMIT, &p, &dir2), WICK_OK);
    free(dir2);
    assert_int_equal(wick_hub_download("org/other", &p, &dir2), WICK_ERR_NOT_FOUND);
    assert_non_null(strstr(wick_last_error(), "not in the cache"));
    /* no server at all, not offline: the cached snapshot serves (as huggingface_hub does) */
    p.offline = false;
    assert_int_equal(wick_hub_download("org/tiny", &p, &dir2), WICK_OK);
    free(dir2);
    /* hf:// through the environment */
    setenv("HF_ENDPOINT", ep, 1);
    setenv("HF_HUB_CACHE", cache, 1);
    assert_int_equal(wick_model_load("hf://org/tiny", NULL, &m), WICK_OK);
    wick_model_free(m);
    assert_int_equal(wick_model_load("hf://org/tiny/model.safetensors.nope", NULL, &m), WICK_ERR_NOT_FOUND);
    unsetenv("HF_ENDPOINT");
    unsetenv("HF_HUB_CACHE");
    free(dir);
    tu_rmdir_rf(cache);
    free(cache);
}

static void test_resume_after_drop(void **state) {
    REQUIRE_SERVER();
    char *cache = tu_mkdtemp(), ep[64];
    wick_hub_params p = params(cache, ep);
    char *dir = NULL;
    int r0 = atomic_load(&g_range_gets);
    atomic_store(&g_drop_once, 1);
    assert_int_equal(wick_hub_download("org/tiny", &p, &dir), WICK_OK);
    assert_int_equal(atomic_load(&g_drop_once), 0);
    assert_int_equal(atomic_load(&g_range_gets), r0 + 1); /* the second attempt asked for the rest */
    check_snapshot(dir, g_nfiles);
    free(dir);
    tu_rmdir_rf(cache);
    free(cache);
}

static int count_dir(const char *d) {
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "ls -A '%s' 2>/dev/null | wc -l", d);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f && fscanf(f, "%d", &n) != 1) n = -1;
    if (f) pclose(f);
    return n;
}

static void test_bad_checksum(void **state) {
    REQUIRE_SERVER();
    char *cache = tu_mkdtemp(), ep[64];
    wick_hub_params p = params(cache, ep);
    p.n_parallel = 1;
    char *dir = NULL;
    atomic_store(&g_corrupt, 1);
    assert_int_equal(wick_hub_download("org/tiny", &p, &dir), WICK_ERR_FORMAT);
    atomic_store(&g_corrupt, 0);
    assert_null(dir);
    assert_non_null(strstr(wick_last_error(), "checksum mismatch"));
    assert_non_null(strstr(wick_last_error(), "model.safetensors"));
    char blobs[4300], snap[4300];
    snprintf(blobs, sizeof blobs, "%s/models--org--tiny/blobs", cache);
    snprintf(snap, sizeof snap, "%s/models--org--tiny/snapshots/" COMMIT "/model.safetensors", cache);
    struct stat sb;
    assert_int_not_equal(lstat(snap, &sb), 0);           /* never published */
    int before = count_dir(blobs);
    assert_true(before <= 2);                             /* the two JSON files at most */
    /* the next run (server healthy) completes */
    assert_int_equal(wick_hub_download("org/tiny", &p, &dir), WICK_OK);
    check_snapshot(dir, g_nfiles);
    free(dir);
    tu_rmdir_rf(cache);
    free(cache);
}

static void test_errors(void **state) {
    REQUIRE_SERVER();
    char *cache = tu_mkdtemp(), ep[64];
    wick_hub_params p = params(cache, ep);
    char *dir = NULL;
    assert_int_equal(wick_hub_download("org/gated", &p, &dir), WICK_ERR_IO);
    assert_non_null(strstr(wick_last_error(), "401"));
    assert_non_null(strstr(wick_last_error(), "HF_TOKEN"));
    p.token = "secret";
    assert_int_equal(wick_hub_download("org/gated", &p, &dir), WICK_OK);
    free(dir);
    p.token = "";
    assert_int_equal(wick_hub_download("org/missing", &p, &dir), WICK_ERR_NOT_FOUND);
    assert_non_null(strstr(wick_last_error(), "404"));
    assert_int_equal(wick_hub_download("org/evil", &p, &dir), WICK_ERR_FORMAT);
    static const char *bad[] = {"tiny", "org/", "/tiny", "org/tiny/x", "../x", "org/..", "org/a b",
                                "org/tiny@", "org/tiny@a/b"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(wick_hub_download(bad[i], &p, &dir), WICK_ERR_INVALID_ARG);
    /* include patterns: only the JSON files */
    const char *inc[] = {"*.json"};
    p.include = inc, p.n_include = 1;
    assert_int_equal(wick_hub_download("org/tiny", &p, &dir), WICK_OK);
    check_snapshot(dir, 2);
    free(dir);
    const char *none[] = {"*.gguf"};
    p.include = none;
    assert_int_equal(wick_hub_download("org/tiny", &p, &dir), WICK_ERR_NOT_FOUND);
    tu_rmdir_rf(cache);
    free(cache);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_download_and_cache),
        cmocka_unit_test(test_resume_after_drop),
        cmocka_unit_test(test_bad_checksum),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
