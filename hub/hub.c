/* hub.c — wick_hub_download: a model repository of the Hugging Face Hub (or a server with its
 * URL layout) into the cache layout huggingface_hub uses, so Python and wick share one cache:
 *
 *   CACHE/models--ORG--NAME/blobs/ETAG              file contents, named by their ETag
 *   CACHE/models--ORG--NAME/snapshots/COMMIT/FILE   relative symlink to ../../blobs/ETAG
 *   CACHE/models--ORG--NAME/refs/REVISION           the commit hash the revision resolved to
 *
 * Protocol (as huggingface_hub speaks it): GET ENDPOINT/api/models/REPO/revision/REV gives the
 * commit ("sha") and the file list ("siblings"[].rfilename); for each wanted file a HEAD of
 * ENDPOINT/REPO/resolve/COMMIT/FILE without following redirects gives its ETag (X-Linked-Etag
 * for LFS files: their sha256; ETag otherwise: the git blob sha1) and size (X-Linked-Size or
 * Content-Length); then a GET that follows redirects (LFS files live on a CDN) writes
 * blobs/ETAG.incomplete, resuming with a Range request where a previous attempt stopped. The
 * finished blob is checked — size, then sha256 (LFS) or the git blob sha1 — before it is
 * renamed into place, so a blob name always means verified contents.
 *
 * Environment, as huggingface_hub reads it: HF_ENDPOINT, HF_TOKEN (then HF_HOME/token),
 * HF_HUB_OFFLINE=1, HF_HUB_CACHE, HF_HOME (default ~/.cache/huggingface). */
#include <ctype.h>
#include <stdarg.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/error.h"
#include "base/fileio.h"
#include "hub/hub_internal.h"
#include "wick.h"

static void curl_global_init_void(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

#define HUB_MAX_FILES 4096
#define HUB_MAX_API_BYTES (16L << 20) /* the revision JSON */
#define HUB_TRIES 5                   /* attempts per file (resumed where the last one stopped) */

wick_hub_params wick_hub_params_default(void) {
    wick_hub_params p;
    memset(&p, 0, sizeof p);
    p.n_parallel = 4;
    return p;
}

/* ---- small helpers ---- */

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

static bool env_true(const char *name) {
    const char *v = getenv(name);
    return v && (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"));
}

static wick_status mkdirs(const char *path) {
    char *p = strdup(path);
    if (!p) return err_set(WICK_ERR_NOMEM, "out of memory");
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            wick_status st = err_set(WICK_ERR_IO, "cannot create folder %s: %s", p, strerror(errno));
            free(p);
            return st;
        }
        *s = '/';
    }
    wick_status st = WICK_OK;
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        st = err_set(WICK_ERR_IO, "cannot create folder %s: %s", p, strerror(errno));
    free(p);
    return st;
}

/* ORG/NAME: letters, digits, '-', '_', '.'; neither part empty, "." or "..". */
static bool repo_ok(const char *r) {
    const char *slash = strchr(r, '/');
    if (!slash || strchr(slash + 1, '/') || slash == r || !slash[1]) return false;
    for (const char *c = r; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("-_./", *c)) return false;
    size_t a = (size_t)(slash - r);
    if ((a == 1 && r[0] == '.') || (a == 2 && !strncmp(r, "..", 2))) return false;
    return strcmp(slash + 1, ".") && strcmp(slash + 1, "..");
}

/* A file name from the server: relative, no "..", no empty component, no control bytes. */
static bool rel_path_ok(const char *f) {
    if (!*f || *f == '/' || strlen(f) > 1024) return false;
    for (const char *c = f; *c; c++)
        if ((unsigned char)*c < 0x20) return false;
    const char *s = f;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && !strncmp(s, "..", 2))) return false;
        s += n + (e ? 1 : 0);
    }
    return true;
}

static bool hex_ok(const char *s, size_t n) {
    if (strlen(s) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i])) return false;
    return true;
}

/* Percent-encodes a path (keeps '/'). */
static char *url_path(const char *p) {
    char *out = malloc(strlen(p) * 3 + 1), *o = out;
    if (!out) return NULL;
    for (const unsigned char *s = (const unsigned char *)p; *s; s++) {
        if (isalnum(*s) || strchr("-_.~/", *s)) *o++ = (char)*s;
        else o += sprintf(o, "%%%02X", *s);
    }
    *o = 0;
    return out;
}

/* ---- settings ---- */

typedef struct hub {
    const char *repo;
    char *endpoint, *token, *cache, *repo_dir;
    const wick_hub_params *p;
    pthread_mutex_t mu;
} hub;

static char *read_token_file(void) {
    const char *home = getenv("HF_HOME");
    char *path = home && *home ? str_printf("%s/token", home)
                               : str_printf("%s/.cache/huggingface/token", getenv("HOME") ? getenv("HOME") : "");
    char *data = NULL;
    size_t n = 0;
    if (path && file_exists(path) && file_read_all(path, &data, &n) == WICK_OK) {
        while (n && isspace((unsigned char)data[n - 1])) data[--n] = 0;
    }
    err_clear();
    free(path);
    return data;
}

static wick_status hub_init(hub *h, const char *repo, const wick_hub_params *p) {
    memset(h, 0, sizeof *h);
    h->p = p;
    h->repo = repo;
    const char *ep = p->endpoint ? p->endpoint : getenv("HF_ENDPOINT");
    h->endpoint = strdup(ep && *ep ? ep : "https://huggingface.co");
    if (h->endpoint) {
        size_t n = strlen(h->endpoint);
        while (n && h->endpoint[n - 1] == '/') h->endpoint[--n] = 0;
    }
    const char *tok = p->token ? p->token : getenv("HF_TOKEN");
    h->token = tok && *tok ? strdup(tok) : read_token_file();
    const char *cache = p->cache_dir ? p->cache_dir : getenv("HF_HUB_CACHE");
    if (cache && *cache) h->cache = strdup(cache);
    else if (getenv("HF_HOME") && *getenv("HF_HOME")) h->cache = str_printf("%s/hub", getenv("HF_HOME"));
    else h->cache = str_printf("%s/.cache/huggingface/hub", getenv("HOME") ? getenv("HOME") : ".");
    char *flat = strdup(repo);
    if (flat) *strchr(flat, '/') = 0;
    h->repo_dir = flat && h->cache ? str_printf("%s/models--%s--%s", h->cache, flat, flat + strlen(flat) + 1) : NULL;
    free(flat);
    pthread_mutex_init(&h->mu, NULL);
    if (!h->endpoint || !h->cache || !h->repo_dir) return err_set(WICK_ERR_NOMEM, "out of memory");
    return WICK_OK;
}

static void hub_free(hub *h) {
    free(h->endpoint), free(h->token), free(h->cache), free(h->repo_dir);
    pthread_mutex_destroy(&h->mu);
}

/* ---- HTTP ---- */

typedef struct membuf { char *p; size_t n, cap; bool too_big; } membuf;

static size_t mem_write(char *d, size_t sz, size_t nm, void *u) {
    membuf *b = u;
    size_t n = sz * nm;
    if (b->n + n + 1 > HUB_MAX_API_BYTES) {
        b->too_big = true;
        return 0;
    }
    if (b->n + n + 1 > b->cap) {
        size_t c = (b->n + n + 1) * 2;
        char *q = realloc(b->p, c);
        if (!q) return 0;
        b->p = q, b->cap = c;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = 0;
    return n;
}


static void hdr_value(char *dst, size_t cap, const char *v, size_t n) {
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ')) n--;
    while (n && *v == ' ') v++, n--;
    if (n >= 2 && v[0] == 'W' && v[1] == '/') v += 2, n -= 2;
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') v++, n -= 2;
    if (n >= cap) n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = 0;
}

size_t hub_header_line(char *d, size_t sz, size_t nm, void *u) {
    hub_hdrs *h = u;
    size_t n = sz * nm;
    const char *colon = memchr(d, ':', n);
    if (!colon) return n;
    size_t kl = (size_t)(colon - d), vl = n - kl - 1;
    const char *v = colon + 1;
    char tmp[64];
#define KEY(s) (kl == strlen(s) && !strncasecmp(d, s, kl))
    if (KEY("etag")) hdr_value(h->etag, sizeof h->etag, v, vl);
    else if (KEY("x-linked-etag")) hdr_value(h->linked_etag, sizeof h->linked_etag, v, vl);
    else if (KEY("x-repo-commit")) hdr_value(h->commit, sizeof h->commit, v, vl);
    else if (KEY("location")) hdr_value(h->location, sizeof h->location, v, vl);
    else if (KEY("content-length")) hdr_value(tmp, sizeof tmp, v, vl), h->size = atoll(tmp);
    else if (KEY("x-linked-size")) hdr_value(tmp, sizeof tmp, v, vl), h->linked_size = atoll(tmp);
#undef KEY
    return n;
}

static struct curl_slist *auth_headers(const hub *h) {
    struct curl_slist *l = curl_slist_append(NULL, "User-Agent: wick/0.1; hf_hub-compatible");
    if (h->token) {
        char *a = str_printf("Authorization: Bearer %s", h->token);
        if (a) l = curl_slist_append(l, a);
        free(a);
    }
    return l;
}

static wick_status http_error(const hub *h, long code, const char *what, const char *url) {
    if (code == 401 || code == 403)
        return err_set(WICK_ERR_IO, "%s: HTTP %ld from %s: the repository is gated or private — "
                       "set HF_TOKEN (or --token) to a token that has access%s", what, code, url,
                       h->token ? " (the token given was refused)" : "");
    if (code == 404)
        return err_set(WICK_ERR_NOT_FOUND, "%s: HTTP 404 from %s: no such repository, revision or file",
                       what, url);
    return err_set(WICK_ERR_IO, "%s: HTTP %ld from %s", what, code, url);
}

/* ---- hashing (OpenSSL's EVP) ---- */

static void to_hex(const unsigned char *d, unsigned n, char *out) {
    for (unsigned i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

/* sha256 of the file (LFS etags) or the git blob sha1 ("blob SIZE\0" + contents). */
static wick_status file_digest(const char *path, bool git_sha1, char *hex) {
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(WICK_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    wick_status st = WICK_OK;
    if (!c || !EVP_DigestInit_ex(c, git_sha1 ? EVP_sha1() : EVP_sha256(), NULL)) {
        st = err_set(WICK_ERR_INTERNAL, "OpenSSL digest unavailable");
        goto out;
    }
    if (git_sha1) {
        struct stat sb;
        fstat(fileno(f), &sb);
        char head[64];
        int hl = snprintf(head, sizeof head, "blob %lld", (long long)sb.st_size);
        EVP_DigestUpdate(c, head, (size_t)hl + 1); /* with its NUL */
    }
    static __thread unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) EVP_DigestUpdate(c, buf, n);
    if (ferror(f)) st = err_set(WICK_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned ml = 0;
    EVP_DigestFinal_ex(c, md, &ml);
    to_hex(md, ml, hex);
out:
    EVP_MD_CTX_free(c);
    fclose(f);
    return st;
}

/* ---- one file ---- */

typedef struct job {
    hub *h;
    const char *commit;
    char **files;
    int n_files;
    atomic_int next;
    wick_status st;      /* first failure (under h->mu) */
    char err[1024];
} job;

static void progress(hub *h, const char *file, long long done, long long total) {
    if (!h->p->on_progress) return;
    pthread_mutex_lock(&h->mu);
    h->p->on_progress(h->p->user, file, done, total);
    pthread_mutex_unlock(&h->mu);
}

typedef struct dl { FILE *f; hub *h; const char *file; long long base, total, last; bool bad_status; long code; } dl;

static size_t dl_write(char *d, size_t sz, size_t nm, void *u) {
    dl *x = u;
    return fwrite(d, sz, nm, x->f) * sz;
}

static int dl_progress(void *u, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    (void)dt, (void)ut, (void)un;
    dl *x = u;
    if (x->base + dn - x->last >= (1 << 20) || x->base + dn == x->total) {
        x->last = x->base + dn;
        progress(x->h, x->file, x->base + dn, x->total);
    }
    return 0;
}

/* Symlink snapshots/COMMIT/FILE -> ../../blobs/ETAG (one ../ more per folder in FILE). */
static wick_status link_snapshot(hub *h, const char *commit, const char *file, const char *etag) {
    char *snap = str_printf("%s/snapshots/%s/%s", h->repo_dir, commit, file);
    if (!snap) return err_set(WICK_ERR_NOMEM, "out of memory");
    char *dir = path_dirname(snap);
    wick_status st = dir ? mkdirs(dir) : err_set(WICK_ERR_NOMEM, "out of memory");
    free(dir);
    int depth = 0;
    for (const char *c = file; *c; c++) depth += *c == '/';
    char target[4096] = "";
    for (int i = 0; i < depth + 2; i++) strcat(target, "../");
    snprintf(target + strlen(target), sizeof target - strlen(target), "blobs/%s", etag);
    if (!st) {
        char *tmp = str_printf("%s.wick-link-%d", snap, (int)getpid());
        if (!tmp) st = err_set(WICK_ERR_NOMEM, "out of memory");
        else {
            unlink(tmp);
            if (symlink(target, tmp) != 0 || rename(tmp, snap) != 0) {
                st = err_set(WICK_ERR_IO, "cannot link %s: %s", snap, strerror(errno));
                unlink(tmp);
            }
            free(tmp);
        }
    }
    free(snap);
    return st;
}

static wick_status fetch_file(hub *h, CURL *c, const char *commit, const char *file) {
    char *ufile = url_path(file);
    char *url = ufile ? str_printf("%s/%s/resolve/%s/%s", h->endpoint, h->repo, commit, ufile) : NULL;
    free(ufile);
    if (!url) return err_set(WICK_ERR_NOMEM, "out of memory");
    struct curl_slist *hl = auth_headers(h);
    hub_hdrs hd;
    memset(&hd, 0, sizeof hd);
    wick_status st = WICK_OK;
    /* HEAD, redirects not followed: the metadata of the file itself */
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, hub_header_line);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &hd);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (rc != CURLE_OK) st = err_set(WICK_ERR_IO, "%s: %s", url, curl_easy_strerror(rc));
    else if (code >= 400) st = http_error(h, code, file, url);
    char etag[160] = "";
    long long size = -1;
    bool lfs = false;
    if (!st) {
        lfs = hd.linked_etag[0] != 0;
        snprintf(etag, sizeof etag, "%s", lfs ? hd.linked_etag : hd.etag);
        size = hd.linked_size > 0 || lfs ? hd.linked_size : (code >= 300 && code < 400 ? -1 : hd.size);
        if (!(hex_ok(etag, 64) || hex_ok(etag, 40)))
            st = err_set(WICK_ERR_FORMAT, "%s: the server gave no usable ETag for %s ('%s'; expected the "
                         "file's sha256 or git sha1)", url, file, etag);
    }
    char *blob = NULL, *part = NULL;
    if (!st) {
        blob = str_printf("%s/blobs/%s", h->repo_dir, etag);
        part = str_printf("%s/blobs/%s.incomplete", h->repo_dir, etag);
        if (!blob || !part) st = err_set(WICK_ERR_NOMEM, "out of memory");
    }
    if (!st && !file_exists(blob)) {
        for (int attempt = 0; attempt < HUB_TRIES; attempt++) {
            FILE *f = fopen(part, "ab");
            if (!f) {
                st = err_set(WICK_ERR_IO, "cannot write %s: %s", part, strerror(errno));
                break;
            }
            long long have = ftell(f);
            if (size >= 0 && have > size) { /* longer than the file: start over */
                fclose(f);
                f = fopen(part, "wb");
                have = 0;
                if (!f) {
                    st = err_set(WICK_ERR_IO, "cannot write %s: %s", part, strerror(errno));
                    break;
                }
            }
            if (size >= 0 && have == size) {
                fclose(f);
                st = WICK_OK;
                break;
            }
            dl x = {f, h, file, have, size, have, false, 0};
            curl_easy_reset(c);
            curl_easy_setopt(c, CURLOPT_URL, url);
            curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
            curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
            /* the token goes to the Hub, not to the CDN a redirect points at */
            curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
            curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
            curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, dl_write);
            curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
            curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
            curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, dl_progress);
            curl_easy_setopt(c, CURLOPT_XFERINFODATA, &x);
            curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
            curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
            curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
            curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
            /* resume where the last attempt stopped; curl refuses (CURLE_RANGE_ERROR) a
               server that answers a range request with the whole file */
            if (have > 0) curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)have);
            rc = curl_easy_perform(c);
            code = 0;
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
            bool flushed = fflush(f) == 0 && fsync(fileno(f)) == 0;
            fclose(f);
            if (rc == CURLE_RANGE_ERROR) { /* no ranges here: start over */
                unlink(part);
                st = err_set(WICK_ERR_IO, "%s: the server cannot resume a download", url);
                continue;
            }
            if (rc == CURLE_OK && flushed) {
                st = WICK_OK;
                break;
            }
            if (rc == CURLE_HTTP_RETURNED_ERROR && code != 416) {
                st = http_error(h, code, file, url);
                if (code < 500) break; /* 4xx: retrying will not help */
                continue;
            }
            if (code == 416) { /* range not satisfiable: the partial copy is useless */
                unlink(part);
                st = err_set(WICK_ERR_IO, "%s: range not satisfiable", url);
                continue;
            }
            st = err_set(WICK_ERR_IO, "%s: %s (after %lld bytes; attempt %d of %d)", url,
                         rc != CURLE_OK ? curl_easy_strerror(rc) : strerror(errno), have,
                         attempt + 1, HUB_TRIES);
        }
        if (!st) { /* verify, then publish under the blob name */
            struct stat sb;
            if (stat(part, &sb) != 0) st = err_set(WICK_ERR_IO, "cannot read %s: %s", part, strerror(errno));
            else if (size >= 0 && sb.st_size != size) {
                st = err_set(WICK_ERR_IO, "%s: got %lld bytes, the server announced %lld", file,
                             (long long)sb.st_size, size);
                unlink(part);
            }
            char hex[EVP_MAX_MD_SIZE * 2 + 1];
            if (!st && !(st = file_digest(part, strlen(etag) == 40, hex)) && strcasecmp(hex, etag) != 0) {
                st = err_set(WICK_ERR_FORMAT, "%s: checksum mismatch: the downloaded file's %s is %s, "
                             "the server's ETag %s (the copy was deleted; run again to retry)", file,
                             strlen(etag) == 40 ? "git sha1" : "sha256", hex, etag);
                unlink(part);
            }
            if (!st && rename(part, blob) != 0)
                st = err_set(WICK_ERR_IO, "cannot rename %s: %s", part, strerror(errno));
        }
    }
    if (!st) st = link_snapshot(h, commit, file, etag);
    if (!st && size >= 0) progress(h, file, size, size);
    free(blob), free(part), free(url);
    curl_slist_free_all(hl);
    return st;
}

/* ---- the repository ---- */

static bool wanted(const wick_hub_params *p, const char *file) {
    if (p->n_include <= 0) return true;
    for (int i = 0; i < p->n_include; i++)
        if (p->include[i] && fnmatch(p->include[i], file, 0) == 0) return true;
    return false;
}

wick_status hub_parse_revision(const char *json, size_t n, const wick_hub_params *p,
                               const char *url, char commit[64], char ***files_out, int *n_out) {
    *files_out = NULL;
    *n_out = 0;
    cJSON *js = cJSON_ParseWithLength(json, n);
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(js, "sha");
    const cJSON *sib = cJSON_GetObjectItemCaseSensitive(js, "siblings");
    wick_status st = WICK_OK;
    if (!cJSON_IsString(sha) || !hex_ok(sha->valuestring, 40) || !cJSON_IsArray(sib))
        st = err_set(WICK_ERR_FORMAT, "%s: expected a JSON object with \"sha\" (40 hex digits) and "
                     "\"siblings\" (an array)", url);
    else snprintf(commit, 64, "%s", sha->valuestring);
    int total = st ? 0 : cJSON_GetArraySize(sib), k = 0;
    char **files = NULL;
    if (total > HUB_MAX_FILES)
        st = err_set(WICK_ERR_FORMAT, "%s: %d files (at most %d)", url, total, HUB_MAX_FILES);
    if (!st && !(files = calloc((size_t)(total ? total : 1), sizeof *files)))
        st = err_set(WICK_ERR_NOMEM, "out of memory");
    for (int i = 0; !st && i < total; i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(sib, i), "rfilename");
        if (!cJSON_IsString(f) || !rel_path_ok(f->valuestring))
            st = err_set(WICK_ERR_FORMAT, "%s: siblings[%d].rfilename is not a relative file name", url, i);
        else if (wanted(p, f->valuestring) && !(files[k++] = strdup(f->valuestring)))
            st = err_set(WICK_ERR_NOMEM, "out of memory");
    }
    cJSON_Delete(js);
    if (st) {
        for (int i = 0; i < k; i++) free(files[i]);
        free(files);
        return st;
    }
    *files_out = files;
    *n_out = k;
    return WICK_OK;
}

static void *worker(void *arg) {
    job *j = arg;
    CURL *c = curl_easy_init();
    for (int k; (k = atomic_fetch_add(&j->next, 1)) < j->n_files;) {
        pthread_mutex_lock(&j->h->mu);
        bool failed = j->st != WICK_OK;
        pthread_mutex_unlock(&j->h->mu);
        if (failed) break;
        wick_status st = c ? fetch_file(j->h, c, j->commit, j->files[k])
                           : err_set(WICK_ERR_NOMEM, "cannot start libcurl");
        if (st) {
            pthread_mutex_lock(&j->h->mu);
            if (!j->st) {
                j->st = st;
                snprintf(j->err, sizeof j->err, "%s", wick_last_error());
            }
            pthread_mutex_unlock(&j->h->mu);
        }
    }
    if (c) curl_easy_cleanup(c);
    return NULL;
}


/* Offline: refs/REV (or REV itself when it is a commit) -> an existing snapshot folder that
 * holds the wanted files of the list it had (all its entries when no list is known). */
static wick_status resolve_offline(hub *h, const char *rev, char **out) {
    char commit[64] = "";
    if (hex_ok(rev, 40)) snprintf(commit, sizeof commit, "%s", rev);
    else {
        char *ref = str_printf("%s/refs/%s", h->repo_dir, rev), *data = NULL;
        size_t n = 0;
        if (ref && file_exists(ref) && file_read_all(ref, &data, &n) == WICK_OK) {
            while (n && isspace((unsigned char)data[n - 1])) data[--n] = 0;
            if (hex_ok(data, 40)) snprintf(commit, sizeof commit, "%s", data);
        }
        free(ref), free(data);
    }
    char *snap = commit[0] ? str_printf("%s/snapshots/%s", h->repo_dir, commit) : NULL;
    if (!snap || !dir_exists(snap)) {
        free(snap);
        return err_set(WICK_ERR_NOT_FOUND, "%s@%s is not in the cache (%s) and downloads are off "
                       "(HF_HUB_OFFLINE / offline): run `wick pull %s` while online", h->repo, rev,
                       h->repo_dir, h->repo);
    }
    *out = snap;
    return WICK_OK;
}

wick_status wick_hub_download(const char *repo_at, const wick_hub_params *params, char **out_dir) {
    if (!repo_at || !out_dir) return err_set(WICK_ERR_INVALID_ARG, "wick_hub_download: NULL argument");
    *out_dir = NULL;
    wick_hub_params defaults = wick_hub_params_default();
    const wick_hub_params *p = params ? params : &defaults;
    char *repo = strdup(repo_at);
    if (!repo) return err_set(WICK_ERR_NOMEM, "out of memory");
    char *at = strchr(repo, '@');
    const char *rev = p->revision ? p->revision : "main";
    if (at) *at = 0, rev = at + 1;
    if (!repo_ok(repo) || !*rev || strchr(rev, '/') || strstr(rev, "..")) {
        wick_status st = err_set(WICK_ERR_INVALID_ARG, "'%s' is not a repository name: expected ORG/NAME "
                                 "or ORG/NAME@REVISION (letters, digits, '-', '_', '.')", repo_at);
        free(repo);
        return st;
    }
    hub h;
    wick_status st = hub_init(&h, repo, p);
    if (!st && (p->offline || env_true("HF_HUB_OFFLINE"))) {
        st = resolve_offline(&h, rev, out_dir);
        hub_free(&h);
        free(repo);
        return st;
    }
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, (void (*)(void))curl_global_init_void);
    membuf api = {0};
    char **files = NULL;
    int n_files = 0;
    char commit[64] = "";
    char *url = NULL;
    if (!st) {
        url = str_printf("%s/api/models/%s/revision/%s", h.endpoint, repo, rev);
        if (!url) st = err_set(WICK_ERR_NOMEM, "out of memory");
    }
    CURL *c = st ? NULL : curl_easy_init();
    if (!st && !c) st = err_set(WICK_ERR_NOMEM, "cannot start libcurl");
    if (!st) {
        struct curl_slist *hl = auth_headers(&h);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &api);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        CURLcode rc = curl_easy_perform(c);
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        if (rc != CURLE_OK && api.too_big)
            st = err_set(WICK_ERR_FORMAT, "%s: the answer is larger than %ld MiB", url, HUB_MAX_API_BYTES >> 20);
        else if (rc != CURLE_OK) {
            /* no network: fall back to the cache, as huggingface_hub does */
            char *snap = NULL;
            if (resolve_offline(&h, rev, &snap) == WICK_OK) *out_dir = snap, err_clear();
            else st = err_set(WICK_ERR_IO, "%s: %s (and %s@%s is not in the cache)", url,
                              curl_easy_strerror(rc), repo, rev);
        } else if (code >= 400) st = http_error(&h, code, repo, url);
        curl_slist_free_all(hl);
        curl_easy_cleanup(c);
    }
    if (!st && !*out_dir)
        st = hub_parse_revision(api.p ? api.p : "", api.n, p, url, commit, &files, &n_files);
    if (!st && !*out_dir && n_files == 0)
        st = err_set(WICK_ERR_NOT_FOUND, "%s@%s: no file matches the include patterns", repo, rev);
    if (!st && !*out_dir) {
        st = mkdirs(h.repo_dir);
        char *blobs = str_printf("%s/blobs", h.repo_dir), *refs = str_printf("%s/refs", h.repo_dir);
        if (!st) st = blobs && refs ? mkdirs(blobs) : err_set(WICK_ERR_NOMEM, "out of memory");
        if (!st) st = mkdirs(refs);
        free(blobs), free(refs);
    }
    if (!st && !*out_dir) {
        job j;
        memset(&j, 0, sizeof j);
        j.h = &h, j.commit = commit, j.files = files, j.n_files = n_files;
        int nt = p->n_parallel > 0 ? p->n_parallel : 1;
        if (nt > 16) nt = 16;
        if (nt > n_files) nt = n_files;
        pthread_t th[16];
        int started = 0;
        for (int i = 1; i < nt; i++)
            if (pthread_create(&th[i], NULL, worker, &j) == 0) started++;
            else break;
        worker(&j);
        for (int i = 1; i <= started; i++) pthread_join(th[i], NULL);
        if (j.st) st = err_set(j.st, "%s", j.err);
    }
    if (!st && !*out_dir) {
        if (strcmp(rev, commit) != 0) {
            char *ref = str_printf("%s/refs/%s", h.repo_dir, rev);
            st = ref ? file_write_atomic(ref, commit, strlen(commit)) : err_set(WICK_ERR_NOMEM, "out of memory");
            free(ref);
        }
        if (!st && !(*out_dir = str_printf("%s/snapshots/%s", h.repo_dir, commit)))
            st = err_set(WICK_ERR_NOMEM, "out of memory");
    }
    if (st) {
        free(*out_dir);
        *out_dir = NULL;
    }
    for (int i = 0; i < n_files; i++) free(files[i]);
    free(files);
    free(api.p), free(url);
    hub_free(&h);
    free(repo);
    return st;
}
